/* Decoder of the chunked transfer coding of HTTP/1.1; chunked.h states the contract.
 *
 * Grammar (RFC 9112 section 7.1):
 *   chunked-body = *chunk last-chunk trailer-section CRLF
 *   chunk        = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
 *   last-chunk   = 1*"0" [ chunk-ext ] CRLF
 *   chunk-ext    = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )
 * Size lines and trailer fields are read one byte at a time; chunk data is passed on in
 * runs as large as the input allows. */
#include "chunked.h"

#include <errno.h>
#include <string.h>

void chunked_init(struct chunked_decoder *d, uint64_t max_body_bytes)
{
    memset(d, 0, sizeof(*d));
    d->state = CHUNKED_SIZE;
    d->max_body_bytes = max_body_bytes;
}

int chunked_is_done(const struct chunked_decoder *d)
{
    return d->state == CHUNKED_DONE;
}

const char *chunked_error(const struct chunked_decoder *d)
{
    return d->state == CHUNKED_FAILED ? d->error : NULL;
}

static int fail(struct chunked_decoder *d, int status, const char *error)
{
    d->state = CHUNKED_FAILED;
    d->status = status;
    d->error = error;
    return status;
}

/* Stores the value of a hexadecimal digit in *value; returns 0 when c is not one. */
static int hex_digit(uint8_t c, unsigned *value)
{
    if (c >= '0' && c <= '9')
        *value = c - '0';
    else if (c >= 'a' && c <= 'f')
        *value = c - 'a' + 10;
    else if (c >= 'A' && c <= 'F')
        *value = c - 'A' + 10;
    else
        return 0;
    return 1;
}

/* Tells whether c is a control character, which neither extensions nor trailer fields may
 * contain (HTAB excepted). */
static int is_control(uint8_t c)
{
    return (c < 0x20 && c != '\t') || c == 0x7f;
}

/* Ends a size line: starts the chunk's data, or the trailer section after the last chunk. */
static int end_size_line(struct chunked_decoder *d)
{
    d->line_bytes = 0;
    d->size_digits = 0;
    if (d->chunk_size_bytes == 0) {
        d->state = CHUNKED_TRAILER;
        return 0;
    }
    /* body_bytes never exceeds max_body_bytes, so the difference cannot wrap. */
    if (d->chunk_size_bytes > d->max_body_bytes - d->body_bytes)
        return fail(d, -EFBIG, "a chunk takes the body over its maximum size");
    d->chunk_left_bytes = d->chunk_size_bytes;
    d->chunk_size_bytes = 0;
    d->state = CHUNKED_DATA;
    return 0;
}

static int decode_size_line_byte(struct chunked_decoder *d, uint8_t c)
{
    unsigned digit;

    if (++d->line_bytes > CHUNKED_MAX_SIZE_LINE_BYTES)
        return fail(d, -EBADMSG, "chunk size line longer than 4096 bytes");
    if (c == '\n' && d->state != CHUNKED_SIZE_LF)
        return fail(d, -EBADMSG, "chunk size line does not end in CRLF");

    switch (d->state) {
    case CHUNKED_SIZE:
        if (hex_digit(c, &digit)) {
            if (d->chunk_size_bytes > UINT64_MAX >> 4)
                return fail(d, -EBADMSG, "chunk size does not fit in 64 bits");
            d->chunk_size_bytes = d->chunk_size_bytes << 4 | digit;
            d->size_digits++;
            return 0;
        }
        if (d->size_digits == 0)
            return fail(d, -EBADMSG, "chunk size is not a hexadecimal number");
        if (c == ' ' || c == '\t')
            d->state = CHUNKED_SIZE_WS;
        else if (c == ';')
            d->state = CHUNKED_EXTENSION;
        else if (c == '\r')
            d->state = CHUNKED_SIZE_LF;
        else
            return fail(d, -EBADMSG, "chunk size is not a hexadecimal number");
        return 0;
    case CHUNKED_SIZE_WS:
        if (c == ';')
            d->state = CHUNKED_EXTENSION;
        else if (c != ' ' && c != '\t')
            return fail(d, -EBADMSG, "whitespace after a chunk size is not followed by ';'");
        return 0;
    case CHUNKED_EXTENSION:
        if (c == '\r')
            d->state = CHUNKED_SIZE_LF;
        else if (is_control(c))
            return fail(d, -EBADMSG, "control character in a chunk extension");
        return 0;
    case CHUNKED_SIZE_LF:
        if (c != '\n')
            return fail(d, -EBADMSG, "chunk size line does not end in CRLF");
        return end_size_line(d);
    default:
        return fail(d, -EBADMSG, "decoder in an unexpected state");
    }
}

/* Reads the trailer section, field lines ending in CRLF up to an empty line, and drops it. */
static int decode_trailer_byte(struct chunked_decoder *d, uint8_t c)
{
    if (++d->line_bytes > CHUNKED_MAX_TRAILER_BYTES)
        return fail(d, -EBADMSG, "trailer section longer than 16384 bytes");

    switch (d->state) {
    case CHUNKED_TRAILER:
        if (c == '\r') {
            d->state = CHUNKED_FINAL_LF;
            return 0;
        }
        /* A line starting with whitespace is an obsolete line folding, which RFC 9112
         * section 5.2 lets a server reject. */
        if (c == ' ' || c == '\t' || c == ':' || is_control(c))
            return fail(d, -EBADMSG, "invalid trailer field line");
        d->trailer_has_colon = 0;
        d->state = CHUNKED_TRAILER_LINE;
        return 0;
    case CHUNKED_TRAILER_LINE:
        if (c == '\r')
            d->state = CHUNKED_TRAILER_LF;
        else if (c == ':')
            d->trailer_has_colon = 1;
        else if (is_control(c))
            return fail(d, -EBADMSG, "invalid trailer field line");
        return 0;
    case CHUNKED_TRAILER_LF:
        if (c != '\n')
            return fail(d, -EBADMSG, "trailer field line does not end in CRLF");
        if (!d->trailer_has_colon)
            return fail(d, -EBADMSG, "trailer field line without ':'");
        d->state = CHUNKED_TRAILER;
        return 0;
    case CHUNKED_FINAL_LF:
        if (c != '\n')
            return fail(d, -EBADMSG, "chunked body does not end in CRLF");
        d->state = CHUNKED_DONE;
        return 0;
    default:
        return fail(d, -EBADMSG, "decoder in an unexpected state");
    }
}

static int decode_byte(struct chunked_decoder *d, uint8_t c)
{
    switch (d->state) {
    case CHUNKED_SIZE:
    case CHUNKED_SIZE_WS:
    case CHUNKED_EXTENSION:
    case CHUNKED_SIZE_LF:
        return decode_size_line_byte(d, c);
    case CHUNKED_DATA_CR:
        if (c != '\r')
            return fail(d, -EBADMSG, "chunk data not followed by CRLF");
        d->state = CHUNKED_DATA_LF;
        return 0;
    case CHUNKED_DATA_LF:
        if (c != '\n')
            return fail(d, -EBADMSG, "chunk data not followed by CRLF");
        d->state = CHUNKED_SIZE;
        return 0;
    default:
        return decode_trailer_byte(d, c);
    }
}

int chunked_decode(struct chunked_decoder *d, const uint8_t *in, size_t len, size_t *consumed,
                   chunked_data_fn *on_data, void *user)
{
    size_t i = 0;
    int rc = 0;

    if (d->state == CHUNKED_FAILED) {
        *consumed = 0;
        return d->status;
    }

    while (i < len && rc == 0 && d->state != CHUNKED_DONE) {
        if (d->state != CHUNKED_DATA) {
            rc = decode_byte(d, in[i]);
            i++;
            continue;
        }

        size_t run = len - i;
        if (run > d->chunk_left_bytes)
            run = (size_t)d->chunk_left_bytes;
        if (on_data != NULL)
            on_data(user, in + i, run);
        d->chunk_left_bytes -= run;
        d->body_bytes += run;
        i += run;
        if (d->chunk_left_bytes == 0)
            d->state = CHUNKED_DATA_CR;
    }

    *consumed = i;
    return rc;
}
