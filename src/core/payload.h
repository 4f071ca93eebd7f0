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

/* Allocates and fills the payload from getrandom(); returns 0 or a negative errno. */
int payload_create(struct payload *p, uint64_t size_bytes, size_t fragment_bytes,
                   size_t headroom_bytes);

/* Returns the start of fragment `index` and stores its length in *len. */
uint8_t *payload_fragment(const struct payload *p, size_t index, size_t *len);

void payload_destroy(struct payload *p);

#endif
