/* The download payload: random bytes made once at start and shared by every client.
 *
 * The bytes are stored as fragments, each preceded by `headroom` spare bytes, because
 * libwebsockets writes a frame header into the bytes just before the data it sends. With
 * that gap a header never lands on payload bytes, so no client needs its own copy. */
#ifndef LINKSPEED_PAYLOAD_H
#define LINKSPEED_PAYLOAD_H

#include <stddef.h>
#include <stdint.h>

struct payload {
    uint8_t *memory;
    size_t memory_size;
    uint64_t size_bytes;   /* logical payload size */
    size_t fragment_bytes; /* size of every fragment but maybe the last */
    size_t headroom_bytes; /* writable bytes before each fragment */
    size_t fragment_count;
};

/* Byte streams that have no message of a set size (the HTTP downloads, ndt7) repeat the
 * payload's first PAYLOAD_STREAM_BYTES rather than all of it. A source that small stays in
 * the CPU's cache while the kernel copies it into the socket: on loopback, sending from all
 * 10 MiB cost about 10% more CPU per GB and 10% of the rate. iperf3 (one buffer of -l bytes)
 * and LibreSpeed (one random MiB) repeat their data the same way. A compressor with a window
 * below 1 MiB still finds nothing to shrink. */
#define PAYLOAD_STREAM_BYTES 1048576u

/* Allocates and fills the payload from getrandom(); returns 0 or a negative errno. */
int payload_create(struct payload *p, uint64_t size_bytes, size_t fragment_bytes,
                   size_t headroom_bytes);

/* Returns the start of fragment `index` and stores its length in *len. */
uint8_t *payload_fragment(const struct payload *p, size_t index, size_t *len);

/* Returns how many leading fragments a byte stream cycles through: as many whole fragments as
 * fit in PAYLOAD_STREAM_BYTES, at least one. */
size_t payload_stream_fragments(const struct payload *p);

void payload_destroy(struct payload *p);

#endif
