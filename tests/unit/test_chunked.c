/* Unit tests of the chunked transfer coding decoder: valid streams fed at every split,
 * chunk extensions, trailers, malformed streams, size overflow, line bounds and the body cap. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "core/chunked.h"

/* Collects the decoded chunk data. */
struct sink {
    uint8_t data[65536];
    size_t len;
    size_t calls;
};

static void collect(void *user, const uint8_t *data, size_t len)
{
    struct sink *sink = user;

    assert_true(sink->len + len <= sizeof(sink->data));
    memcpy(sink->data + sink->len, data, len);
    sink->len += len;
    sink->calls++;
}

/* Feeds `stream` in pieces that end at each offset of `cuts` (ascending, the last one the
 * stream's length) and returns the first error, or 0. Stores the total consumed bytes. */
static int decode_in_pieces(struct chunked_decoder *d, const char *stream, const size_t *cuts,
                            size_t cut_count, struct sink *sink, size_t *consumed_total)
{
    size_t start = 0;

    *consumed_total = 0;
    for (size_t i = 0; i < cut_count; i++) {
        size_t consumed = 0;
        int rc = chunked_decode(d, (const uint8_t *)stream + start, cuts[i] - start, &consumed,
                                collect, sink);
        *consumed_total += consumed;
        if (rc != 0)
            return rc;
        start = cuts[i];
    }
    return 0;
}

struct valid_case {
    const char *name;
    const char *stream;
    const char *data; /* the decoded body */
    size_t body_len;  /* bytes of the stream that belong to the body */
};

#define WHOLE(s) sizeof(s) - 1

static const struct valid_case valid_cases[] = {
    {"empty body", "0\r\n\r\n", "", WHOLE("0\r\n\r\n")},
    {"one byte", "1\r\na\r\n0\r\n\r\n", "a", WHOLE("1\r\na\r\n0\r\n\r\n")},
    {"three chunks", "3\r\nabc\r\n1\r\nd\r\n5\r\nefghi\r\n0\r\n\r\n", "abcdefghi",
     WHOLE("3\r\nabc\r\n1\r\nd\r\n5\r\nefghi\r\n0\r\n\r\n")},
    {"hex sizes in both cases", "A\r\n0123456789\r\nb\r\nabcdefghijk\r\n0\r\n\r\n",
     "0123456789abcdefghijk", WHOLE("A\r\n0123456789\r\nb\r\nabcdefghijk\r\n0\r\n\r\n")},
    {"leading zeros", "0005\r\nhello\r\n000\r\n\r\n", "hello",
     WHOLE("0005\r\nhello\r\n000\r\n\r\n")},
    {"data with CR and LF", "4\r\n\r\n\r\n\r\n0\r\n\r\n", "\r\n\r\n",
     WHOLE("4\r\n\r\n\r\n\r\n0\r\n\r\n")},
    {"extensions", "5;name=value\r\nhello\r\n5 ; a=\"q;x\" ;b\t\r\nworld\r\n0;last\r\n\r\n",
     "helloworld", WHOLE("5;name=value\r\nhello\r\n5 ; a=\"q;x\" ;b\t\r\nworld\r\n0;last\r\n\r\n")},
    {"trailers", "2\r\nhi\r\n0\r\nDigest: sha-256=abc\r\nX-Empty:\r\n\r\n", "hi",
     WHOLE("2\r\nhi\r\n0\r\nDigest: sha-256=abc\r\nX-Empty:\r\n\r\n")},
    {"next request after the body", "2\r\nhi\r\n0\r\n\r\nGET / HTTP/1.1\r\n\r\n", "hi",
     WHOLE("2\r\nhi\r\n0\r\n\r\n")},
};

/* Checks one valid case decoded with the given cuts. */
static void check_valid(const struct valid_case *c, const size_t *cuts, size_t cut_count,
                        const char *how)
{
    struct chunked_decoder d;
    struct sink sink = {.len = 0};
    size_t consumed;
    int rc;

    chunked_init(&d, 1024);
    rc = decode_in_pieces(&d, c->stream, cuts, cut_count, &sink, &consumed);
    if (rc != 0 || !chunked_is_done(&d) || consumed != c->body_len || sink.len != strlen(c->data) ||
        memcmp(sink.data, c->data, sink.len) != 0)
        fail_msg("%s, %s: rc %d (%s), done %d, consumed %zu of %zu, data %zu bytes", c->name, how,
                 rc, chunked_error(&d) ? chunked_error(&d) : "no error", chunked_is_done(&d),
                 consumed, c->body_len, sink.len);
    assert_int_equal(d.body_bytes, strlen(c->data));
}

static void valid_streams_whole(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(valid_cases) / sizeof(valid_cases[0]); i++) {
        size_t cut = strlen(valid_cases[i].stream);
        check_valid(&valid_cases[i], &cut, 1, "whole");
    }
}

static void valid_streams_byte_by_byte(void **state)
{
    size_t cuts[256];
    (void)state;

    for (size_t i = 0; i < sizeof(valid_cases) / sizeof(valid_cases[0]); i++) {
        size_t len = strlen(valid_cases[i].stream);
        assert_true(len <= 256);
        for (size_t k = 0; k < len; k++)
            cuts[k] = k + 1;
        check_valid(&valid_cases[i], cuts, len, "one byte at a time");
    }
}

/* Every split into two and three pieces, empty pieces included. */
static void valid_streams_every_split(void **state)
{
    char how[64];
    (void)state;

    for (size_t i = 0; i < sizeof(valid_cases) / sizeof(valid_cases[0]); i++) {
        size_t len = strlen(valid_cases[i].stream);
        for (size_t a = 0; a <= len; a++) {
            for (size_t b = a; b <= len; b++) {
                size_t cuts[3] = {a, b, len};
                snprintf(how, sizeof(how), "split at %zu and %zu", a, b);
                check_valid(&valid_cases[i], cuts, 3, how);
            }
        }
    }
}

/* Chunk data arrives in runs as large as each piece allows, not byte by byte. */
static void data_passed_in_runs(void **state)
{
    static const char stream[] = "10\r\n0123456789abcdef\r\n0\r\n\r\n";
    struct chunked_decoder d;
    struct sink sink = {.len = 0};
    size_t consumed;
    (void)state;

    chunked_init(&d, 100);
    assert_int_equal(
        chunked_decode(&d, (const uint8_t *)stream, sizeof(stream) - 1, &consumed, collect, &sink),
        0);
    assert_true(chunked_is_done(&d));
    assert_int_equal(sink.calls, 1);
    assert_int_equal(sink.len, 16);
}

/* Decoding without a callback counts the data all the same. */
static void counts_without_callback(void **state)
{
    static const char stream[] = "3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
    struct chunked_decoder d;
    size_t consumed;
    (void)state;

    chunked_init(&d, 100);
    assert_int_equal(
        chunked_decode(&d, (const uint8_t *)stream, sizeof(stream) - 1, &consumed, NULL, NULL), 0);
    assert_true(chunked_is_done(&d));
    assert_int_equal(consumed, sizeof(stream) - 1);
    assert_int_equal(d.body_bytes, 5);
}

struct invalid_case {
    const char *stream;
    const char *error; /* a part of the expected chunked_error() */
};

static const struct invalid_case invalid_cases[] = {
    {"x\r\n", "not a hexadecimal number"},
    {";ext\r\n", "not a hexadecimal number"},
    {"\r\n", "not a hexadecimal number"},
    {"-1\r\n", "not a hexadecimal number"},
    {"0x5\r\nhello\r\n0\r\n\r\n", "not a hexadecimal number"},
    {"5x\r\nhello\r\n0\r\n\r\n", "not a hexadecimal number"},
    {"5 \r\nhello\r\n0\r\n\r\n", "not followed by ';'"},
    {"5 6\r\nhello\r\n0\r\n\r\n", "not followed by ';'"},
    {"5\nhello\r\n0\r\n\r\n", "does not end in CRLF"},
    {"5;a\nhello\r\n0\r\n\r\n", "does not end in CRLF"},
    {"5\rhello\r\n0\r\n\r\n", "does not end in CRLF"},
    {"5;a\x01\r\nhello\r\n0\r\n\r\n", "control character in a chunk extension"},
    {"5;a\x7f\r\nhello\r\n0\r\n\r\n", "control character in a chunk extension"},
    {"5\r\nhelloX\r\n0\r\n\r\n", "chunk data not followed by CRLF"},
    {"5\r\nhello\n0\r\n\r\n", "chunk data not followed by CRLF"},
    {"5\r\nhello\rX0\r\n\r\n", "chunk data not followed by CRLF"},
    {"0\r\nX-A: 1\nX-B: 2\r\n\r\n", "invalid trailer field line"},
    {"0\r\nX-A: 1\rX\r\n\r\n", "trailer field line does not end in CRLF"},
    {"0\r\nno colon\r\n\r\n", "without ':'"},
    {"0\r\n: no name\r\n\r\n", "invalid trailer field line"},
    {"0\r\n folded: x\r\n\r\n", "invalid trailer field line"},
    {"0\r\n\rX", "chunked body does not end in CRLF"},
    {"0\r\n\n", "invalid trailer field line"},
    {"0\n\r\n", "does not end in CRLF"},
};

/* Each malformed stream fails with its reason however it is split. */
static void malformed_streams_rejected(void **state)
{
    size_t cuts[256];
    (void)state;

    for (size_t i = 0; i < sizeof(invalid_cases) / sizeof(invalid_cases[0]); i++) {
        const struct invalid_case *c = &invalid_cases[i];
        size_t len = strlen(c->stream);

        for (size_t piece = 1; piece <= len; piece++) {
            struct chunked_decoder d;
            struct sink sink = {.len = 0};
            size_t consumed, count = 0;

            for (size_t end = piece; end < len + piece; end += piece)
                cuts[count++] = end < len ? end : len;
            chunked_init(&d, 1024);
            int rc = decode_in_pieces(&d, c->stream, cuts, count, &sink, &consumed);
            if (rc != -EBADMSG || chunked_error(&d) == NULL ||
                strstr(chunked_error(&d), c->error) == NULL)
                fail_msg("stream %zu in pieces of %zu: rc %d, error \"%s\", expected \"%s\"", i,
                         piece, rc, chunked_error(&d) ? chunked_error(&d) : "none", c->error);
            assert_false(chunked_is_done(&d));
        }
    }
}

/* A stream that ends early is not done and not failed: more may come. */
static void truncated_stream_waits(void **state)
{
    static const char *const prefixes[] = {"",
                                           "5",
                                           "5;x",
                                           "5\r",
                                           "5\r\nhel",
                                           "5\r\nhello",
                                           "5\r\nhello\r",
                                           "5\r\nhello\r\n0\r\n",
                                           "5\r\nhello\r\n0\r\nX: 1",
                                           "5\r\nhello\r\n0\r\n\r"};
    (void)state;

    for (size_t i = 0; i < sizeof(prefixes) / sizeof(prefixes[0]); i++) {
        struct chunked_decoder d;
        size_t consumed;

        chunked_init(&d, 1024);
        assert_int_equal(chunked_decode(&d, (const uint8_t *)prefixes[i], strlen(prefixes[i]),
                                        &consumed, NULL, NULL),
                         0);
        assert_int_equal(consumed, strlen(prefixes[i]));
        assert_false(chunked_is_done(&d));
        assert_null(chunked_error(&d));
    }
}

static int decode_string(struct chunked_decoder *d, const char *stream, size_t *consumed)
{
    return chunked_decode(d, (const uint8_t *)stream, strlen(stream), consumed, NULL, NULL);
}

static void size_overflow_rejected(void **state)
{
    struct chunked_decoder d;
    size_t consumed;
    (void)state;

    /* 2^64 - 1 still fits; the decoder then waits for its data. */
    chunked_init(&d, UINT64_MAX);
    assert_int_equal(decode_string(&d, "FFFFFFFFFFFFFFFF\r\n", &consumed), 0);
    assert_int_equal(d.state, CHUNKED_DATA);
    assert_true(d.chunk_left_bytes == UINT64_MAX);

    /* 2^64 does not, nor does any longer size. */
    static const char *const overflowing[] = {"10000000000000000\r\n", "FFFFFFFFFFFFFFFF0\r\n",
                                              "123456789abcdef0123456789\r\n"};
    for (size_t i = 0; i < sizeof(overflowing) / sizeof(overflowing[0]); i++) {
        chunked_init(&d, UINT64_MAX);
        assert_int_equal(decode_string(&d, overflowing[i], &consumed), -EBADMSG);
        assert_non_null(strstr(chunked_error(&d), "64 bits"));
    }

    /* Leading zeros add no value, so many of them do not overflow. */
    chunked_init(&d, 100);
    assert_int_equal(
        decode_string(&d, "00000000000000000000000000000001\r\na\r\n0\r\n\r\n", &consumed), 0);
    assert_true(chunked_is_done(&d));
    assert_int_equal(d.body_bytes, 1);
}

/* Builds "1;" followed by extension bytes up to a size line of `line_bytes` with its CRLF. */
static char *size_line_of(size_t line_bytes)
{
    char *line = malloc(line_bytes + 16);

    assert_non_null(line);
    memcpy(line, "1;", 2);
    memset(line + 2, 'e', line_bytes - 4);
    memcpy(line + line_bytes - 2, "\r\nx\r\n0\r\n\r\n", 11);
    return line;
}

static void size_line_bounded(void **state)
{
    struct chunked_decoder d;
    size_t consumed;
    char *line;
    (void)state;

    line = size_line_of(CHUNKED_MAX_SIZE_LINE_BYTES);
    chunked_init(&d, 100);
    assert_int_equal(decode_string(&d, line, &consumed), 0);
    assert_true(chunked_is_done(&d));
    free(line);

    line = size_line_of(CHUNKED_MAX_SIZE_LINE_BYTES + 1);
    chunked_init(&d, 100);
    assert_int_equal(decode_string(&d, line, &consumed), -EBADMSG);
    assert_non_null(strstr(chunked_error(&d), "longer than 4096 bytes"));
    assert_int_equal(consumed, CHUNKED_MAX_SIZE_LINE_BYTES + 1);
    free(line);

    /* Digits count toward the bound too, even zeros that add no value. */
    line = malloc(CHUNKED_MAX_SIZE_LINE_BYTES + 8);
    assert_non_null(line);
    memset(line, '0', CHUNKED_MAX_SIZE_LINE_BYTES + 1);
    line[CHUNKED_MAX_SIZE_LINE_BYTES + 1] = '\0';
    chunked_init(&d, 100);
    assert_int_equal(decode_string(&d, line, &consumed), -EBADMSG);
    assert_non_null(strstr(chunked_error(&d), "longer than 4096 bytes"));
    free(line);
}

/* Builds a last chunk and a trailer section of `section_bytes`, final CRLF included, from
 * fields "X: vvv...". */
static char *trailer_section_of(size_t section_bytes)
{
    char *stream = malloc(section_bytes + 16);
    size_t pos = 3, left = section_bytes - 2;

    assert_non_null(stream);
    memcpy(stream, "0\r\n", 3);
    while (left > 0) {
        size_t field = left > 1000 ? 1000 : left;
        if (left - field > 0 && left - field < 5)
            field -= 5; /* leave room for one more field of at least "X:\r\n" */
        assert_true(field >= 4);
        memcpy(stream + pos, "X:", 2);
        memset(stream + pos + 2, 'v', field - 4);
        memcpy(stream + pos + field - 2, "\r\n", 2);
        pos += field;
        left -= field;
    }
    memcpy(stream + pos, "\r\n", 3);
    return stream;
}

static void trailer_section_bounded(void **state)
{
    struct chunked_decoder d;
    size_t consumed;
    char *stream;
    (void)state;

    stream = trailer_section_of(CHUNKED_MAX_TRAILER_BYTES);
    chunked_init(&d, 100);
    assert_int_equal(decode_string(&d, stream, &consumed), 0);
    assert_true(chunked_is_done(&d));
    assert_int_equal(consumed, 3 + CHUNKED_MAX_TRAILER_BYTES);
    free(stream);

    stream = trailer_section_of(CHUNKED_MAX_TRAILER_BYTES + 1);
    chunked_init(&d, 100);
    assert_int_equal(decode_string(&d, stream, &consumed), -EBADMSG);
    assert_non_null(strstr(chunked_error(&d), "longer than 16384 bytes"));
    free(stream);
}

static void body_cap_enforced(void **state)
{
    struct chunked_decoder d;
    size_t consumed;
    (void)state;

    /* Exactly at the cap, in one chunk and in several. */
    chunked_init(&d, 10);
    assert_int_equal(decode_string(&d, "a\r\n0123456789\r\n0\r\n\r\n", &consumed), 0);
    assert_true(chunked_is_done(&d));
    chunked_init(&d, 10);
    assert_int_equal(decode_string(&d, "4\r\nabcd\r\n6\r\nefghij\r\n0\r\n\r\n", &consumed), 0);
    assert_true(chunked_is_done(&d));

    /* One byte over fails as soon as the size line ends, before any of the data arrives. */
    chunked_init(&d, 10);
    assert_int_equal(decode_string(&d, "b\r\n", &consumed), -EFBIG);
    assert_int_equal(consumed, 3);
    assert_non_null(strstr(chunked_error(&d), "maximum size"));
    chunked_init(&d, 10);
    assert_int_equal(decode_string(&d, "5\r\nhello\r\n6\r\n", &consumed), -EFBIG);
    assert_int_equal(d.body_bytes, 5);

    /* A cap of 0 takes only the empty body. */
    chunked_init(&d, 0);
    assert_int_equal(decode_string(&d, "0\r\n\r\n", &consumed), 0);
    assert_true(chunked_is_done(&d));
    chunked_init(&d, 0);
    assert_int_equal(decode_string(&d, "1\r\n", &consumed), -EFBIG);

    /* The largest size that fits in 64 bits is over any smaller cap, not an overflow. */
    chunked_init(&d, (uint64_t)1 << 40);
    assert_int_equal(decode_string(&d, "FFFFFFFFFFFFFFFF\r\n", &consumed), -EFBIG);
}

static void failed_decoder_stays_failed(void **state)
{
    struct chunked_decoder d;
    size_t consumed = 99;
    (void)state;

    chunked_init(&d, 100);
    assert_int_equal(decode_string(&d, "5\r\nhelloXYZ", &consumed), -EBADMSG);
    assert_int_equal(consumed, 9);
    const char *error = chunked_error(&d);
    assert_int_equal(decode_string(&d, "\r\n0\r\n\r\n", &consumed), -EBADMSG);
    assert_int_equal(consumed, 0);
    assert_ptr_equal(chunked_error(&d), error);
    assert_false(chunked_is_done(&d));
}

static void done_decoder_takes_nothing(void **state)
{
    struct chunked_decoder d;
    size_t consumed = 99;
    (void)state;

    chunked_init(&d, 100);
    assert_int_equal(decode_string(&d, "0\r\n\r\n", &consumed), 0);
    assert_true(chunked_is_done(&d));
    assert_int_equal(decode_string(&d, "5\r\nhello\r\n", &consumed), 0);
    assert_int_equal(consumed, 0);
    assert_true(chunked_is_done(&d));
    assert_int_equal(d.body_bytes, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(valid_streams_whole),        cmocka_unit_test(valid_streams_byte_by_byte),
        cmocka_unit_test(valid_streams_every_split),  cmocka_unit_test(data_passed_in_runs),
        cmocka_unit_test(counts_without_callback),    cmocka_unit_test(malformed_streams_rejected),
        cmocka_unit_test(truncated_stream_waits),     cmocka_unit_test(size_overflow_rejected),
        cmocka_unit_test(size_line_bounded),          cmocka_unit_test(trailer_section_bounded),
        cmocka_unit_test(body_cap_enforced),          cmocka_unit_test(failed_decoder_stays_failed),
        cmocka_unit_test(done_decoder_takes_nothing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
