/* Incremental decoder of the chunked transfer coding of HTTP/1.1 (RFC 9112 section 7.1).
 *
 * The server decodes chunked request bodies itself because libwebsockets 4.1 hands the
 * application the raw chunked stream. The decoder takes that stream in pieces of any size,
 * down to one byte, and keeps no copy of it: chunk data goes to an optional callback, chunk
 * extensions are skipped, and trailer fields are read and dropped. Line ends must be CRLF,
 * because accepting a bare LF where a peer does not is a request smuggling vector. */
#ifndef LINKSPEED_CHUNKED_H
#define LINKSPEED_CHUNKED_H

#include <stddef.h>
#include <stdint.h>

/* Maximum length of a chunk size line, with its extensions and CRLF. */
#define CHUNKED_MAX_SIZE_LINE_BYTES 4096
/* Maximum length of the trailer section with its final CRLF, the same as the 16 KiB of
 * request headers the server accepts. */
#define CHUNKED_MAX_TRAILER_BYTES 16384

enum chunked_state {
    CHUNKED_SIZE,         /* hex digits of a chunk size */
    CHUNKED_SIZE_WS,      /* whitespace after the size, which only a ';' may follow */
    CHUNKED_EXTENSION,    /* a chunk extension, skipped up to CR */
    CHUNKED_SIZE_LF,      /* LF that ends the size line */
    CHUNKED_DATA,         /* chunk data */
    CHUNKED_DATA_CR,      /* CR after chunk data */
    CHUNKED_DATA_LF,      /* LF after chunk data */
    CHUNKED_TRAILER,      /* start of a trailer field line, or CR of the final CRLF */
    CHUNKED_TRAILER_LINE, /* rest of a trailer field line */
    CHUNKED_TRAILER_LF,   /* LF that ends a trailer field line */
    CHUNKED_FINAL_LF,     /* LF of the CRLF that ends the body */
    CHUNKED_DONE,
    CHUNKED_FAILED,
};

struct chunked_decoder {
    enum chunked_state state;
    uint64_t max_body_bytes;
    uint64_t body_bytes;       /* chunk data decoded so far */
    uint64_t chunk_size_bytes; /* size of the current chunk, read from its size line */
    uint64_t chunk_left_bytes; /* data bytes of the current chunk still to come */
    size_t size_digits;        /* hex digits read of the current size line */
    size_t line_bytes;         /* bytes of the current size line, or of the trailer section */
    int trailer_has_colon;     /* flag: the current trailer field line has its ':' */
    int status;                /* 0, or the negative errno the decoder stopped at */
    const char *error;         /* description of what was invalid, when status is not 0 */
};

/* Receives a run of chunk data. The data of one chunk may arrive in several runs. */
typedef void chunked_data_fn(void *user, const uint8_t *data, size_t len);

/* Prepares a decoder for a body of at most max_body_bytes decoded bytes. */
void chunked_init(struct chunked_decoder *d, uint64_t max_body_bytes);

/* Decodes the next len bytes of a chunked body, passing each run of chunk data to on_data
 * unless it is NULL. Stores in *consumed how many of the bytes belong to the body: all of
 * them until it ends, and then only those up to its final CRLF, so that the rest starts the
 * next message. Returns 0, -EBADMSG when the stream is malformed, or -EFBIG when a chunk size
 * takes the body over max_body_bytes. After an error, chunked_error() names what failed and
 * *consumed counts the bytes up to and including the invalid one. A decoder that failed
 * consumes nothing more and returns the same error again. */
int chunked_decode(struct chunked_decoder *d, const uint8_t *in, size_t len, size_t *consumed,
                   chunked_data_fn *on_data, void *user);

/* Tells whether the final CRLF of the body has been decoded. */
int chunked_is_done(const struct chunked_decoder *d);

/* Returns what made the decoder fail, or NULL when it has not failed. */
const char *chunked_error(const struct chunked_decoder *d);

#endif
