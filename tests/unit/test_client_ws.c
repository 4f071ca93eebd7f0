/* Unit tests of the client's WebSocket frame parser and framing helpers (wsclient.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include <stdlib.h>

#include "client/wsclient.h"

enum { MAX_EVENTS = 32, ARENA_BYTES = 100000 };

/* One whole message or control frame as the parser handed it on; its payload is at
 * offset in the transcript's arena. */
struct event {
    int opcode;
    size_t offset;
    size_t length;
};

struct transcript {
    struct event events[MAX_EVENTS];
    size_t count;
    uint8_t arena[ARENA_BYTES];
    size_t arena_length;
    size_t message_offset; /* where the data message being assembled starts */
    size_t pieces;
    int stop_after; /* nonzero: the data callback returns -125 after this many events */
};

static void reset_transcript(struct transcript *t)
{
    t->count = 0;
    t->arena_length = 0;
    t->message_offset = 0;
    t->pieces = 0;
    t->stop_after = 0;
}

static void append(struct transcript *t, const uint8_t *payload, size_t length)
{
    assert_true(length <= ARENA_BYTES - t->arena_length);
    if (length > 0)
        memcpy(t->arena + t->arena_length, payload, length);
    t->arena_length += length;
}

static int record_data(void *context, enum ws_opcode opcode, const uint8_t *payload, size_t length,
                       bool final)
{
    struct transcript *t = context;

    assert_true(opcode == WS_OPCODE_TEXT || opcode == WS_OPCODE_BINARY);
    append(t, payload, length);
    t->pieces++;
    if (!final)
        return 0;
    assert_true(t->count < MAX_EVENTS);
    t->events[t->count++] = (struct event){.opcode = opcode,
                                           .offset = t->message_offset,
                                           .length = t->arena_length - t->message_offset};
    t->message_offset = t->arena_length;
    if (t->stop_after != 0 && (int)t->count >= t->stop_after)
        return -125;
    return 0;
}

/* A control frame may arrive between the fragments of a data message, so its payload
 * goes to the arena's end and the message's pieces so far move after it. */
static int record_control(void *context, enum ws_opcode opcode, const uint8_t *payload,
                          size_t length)
{
    struct transcript *t = context;
    size_t partial = t->arena_length - t->message_offset;
    uint8_t saved[256];

    assert_true(partial <= sizeof(saved));
    memcpy(saved, t->arena + t->message_offset, partial);
    t->arena_length = t->message_offset;
    assert_true(t->count < MAX_EVENTS);
    t->events[t->count++] =
        (struct event){.opcode = opcode, .offset = t->arena_length, .length = length};
    append(t, payload, length);
    t->message_offset = t->arena_length;
    append(t, saved, partial);
    return 0;
}

static const struct ws_parser_handler recorder = {.data = record_data, .control = record_control};

/* Appends a server frame (unmasked) to buffer at *length. */
static void put_frame(uint8_t *buffer, size_t *length, uint8_t first_byte, const uint8_t *payload,
                      size_t payload_length)
{
    uint8_t *out = buffer + *length;
    size_t header = 2;

    out[0] = first_byte;
    if (payload_length < 126) {
        out[1] = (uint8_t)payload_length;
    } else if (payload_length <= 0xffff) {
        out[1] = 126;
        out[2] = (uint8_t)(payload_length >> 8);
        out[3] = (uint8_t)payload_length;
        header = 4;
    } else {
        out[1] = 127;
        for (int i = 0; i < 8; i++)
            out[2 + i] = (uint8_t)((uint64_t)payload_length >> (56 - 8 * i));
        header = 10;
    }
    if (payload_length > 0)
        memcpy(out + header, payload, payload_length);
    *length += header + payload_length;
}

static int feed_all(struct ws_parser *parser, const uint8_t *data, size_t length,
                    struct transcript *t)
{
    return ws_parser_feed(parser, data, length, &recorder, t);
}

static void assert_event(const struct transcript *t, size_t index, int opcode, const void *payload,
                         size_t length)
{
    const struct event *event = &t->events[index];

    assert_int_equal(event->opcode, opcode);
    assert_int_equal(event->length, length);
    if (length > 0)
        assert_memory_equal(t->arena + event->offset, payload, length);
}

/* A stream with every kind of frame: lengths in 7, 16 and 64 bits, a text message in three
 * fragments with a ping and a pong between them, empty messages, and a close frame. */
static size_t build_stream(uint8_t *stream, uint8_t *large, size_t large_length)
{
    static const uint8_t close_payload[] = {0x03, 0xe8, 'b', 'y', 'e'};
    uint8_t medium[300];
    size_t length = 0;

    for (size_t i = 0; i < sizeof(medium); i++)
        medium[i] = (uint8_t)(i * 7);
    for (size_t i = 0; i < large_length; i++)
        large[i] = (uint8_t)(i * 13 + 5);
    put_frame(stream, &length, 0x81, (const uint8_t *)"hello", 5);
    put_frame(stream, &length, 0x82, medium, sizeof(medium));
    put_frame(stream, &length, 0x01, (const uint8_t *)"frag", 4);
    put_frame(stream, &length, 0x89, (const uint8_t *)"p1", 2);
    put_frame(stream, &length, 0x00, (const uint8_t *)"ment", 4);
    put_frame(stream, &length, 0x8a, NULL, 0);
    put_frame(stream, &length, 0x80, (const uint8_t *)"ed", 2);
    put_frame(stream, &length, 0x82, large, large_length);
    put_frame(stream, &length, 0x82, NULL, 0);
    put_frame(stream, &length, 0x02, NULL, 0);
    put_frame(stream, &length, 0x80, (const uint8_t *)"x", 1);
    put_frame(stream, &length, 0x88, close_payload, sizeof(close_payload));
    return length;
}

static void assert_stream_events(const struct transcript *t, const uint8_t *large,
                                 size_t large_length)
{
    static const uint8_t close_payload[] = {0x03, 0xe8, 'b', 'y', 'e'};
    uint8_t medium[300];

    for (size_t i = 0; i < sizeof(medium); i++)
        medium[i] = (uint8_t)(i * 7);
    assert_int_equal(t->count, 9);
    assert_event(t, 0, WS_OPCODE_TEXT, "hello", 5);
    assert_event(t, 1, WS_OPCODE_BINARY, medium, sizeof(medium));
    assert_event(t, 2, WS_OPCODE_PING, "p1", 2);
    assert_event(t, 3, WS_OPCODE_PONG, NULL, 0);
    assert_event(t, 4, WS_OPCODE_TEXT, "fragmented", 10);
    assert_event(t, 5, WS_OPCODE_BINARY, large, large_length);
    assert_event(t, 6, WS_OPCODE_BINARY, NULL, 0);
    assert_event(t, 7, WS_OPCODE_BINARY, "x", 1);
    assert_event(t, 8, WS_OPCODE_CLOSE, close_payload, sizeof(close_payload));
}

static void parser_whole_stream(void **state)
{
    static uint8_t stream[100000], large[70000];
    static struct transcript t;
    struct ws_parser parser;
    size_t length = build_stream(stream, large, sizeof(large));

    (void)state;
    reset_transcript(&t);
    ws_parser_init(&parser, 1 << 20);
    assert_int_equal(feed_all(&parser, stream, length, &t), 0);
    assert_stream_events(&t, large, sizeof(large));
}

/* The stream split in two at every byte gives the same messages as fed whole. */
static void parser_every_split(void **state)
{
    static uint8_t stream[100000], large[70000];
    static struct transcript t;
    size_t length = build_stream(stream, large, sizeof(large));

    (void)state;
    for (size_t split = 0; split <= length; split++) {
        struct ws_parser parser;

        reset_transcript(&t);
        ws_parser_init(&parser, 1 << 20);
        assert_int_equal(feed_all(&parser, stream, split, &t), 0);
        assert_int_equal(feed_all(&parser, stream + split, length - split, &t), 0);
        assert_stream_events(&t, large, sizeof(large));
    }
}

/* One byte per call, the worst split of all. */
static void parser_byte_at_a_time(void **state)
{
    static uint8_t stream[100000], large[70000];
    static struct transcript t;
    struct ws_parser parser;
    size_t length = build_stream(stream, large, sizeof(large));

    (void)state;
    reset_transcript(&t);
    ws_parser_init(&parser, 1 << 20);
    for (size_t i = 0; i < length; i++)
        assert_int_equal(feed_all(&parser, stream + i, 1, &t), 0);
    assert_stream_events(&t, large, sizeof(large));
}

/* Payload lengths at the edges of the 7-, 16- and 64-bit encodings. */
static void parser_length_encodings(void **state)
{
    static const size_t lengths[] = {0, 1, 125, 126, 127, 65535, 65536, 70000};
    static uint8_t stream[80000], payload[70000];
    static struct transcript t;

    (void)state;
    for (size_t i = 0; i < sizeof(payload); i++)
        payload[i] = (uint8_t)(i ^ (i >> 8));
    for (size_t i = 0; i < sizeof(lengths) / sizeof(lengths[0]); i++) {
        struct ws_parser parser;
        size_t length = 0;

        reset_transcript(&t);
        put_frame(stream, &length, 0x82, payload, lengths[i]);
        ws_parser_init(&parser, 1 << 20);
        assert_int_equal(feed_all(&parser, stream, length, &t), 0);
        assert_int_equal(t.count, 1);
        assert_event(&t, 0, WS_OPCODE_BINARY, payload, lengths[i]);
    }
}

/* A 64-bit length may also carry a small size, and the parser takes it: RFC 6455 requires
 * the shortest form of senders, not of receivers. */
static void parser_long_form_small_length(void **state)
{
    static const uint8_t frame[] = {0x82, 127, 0, 0, 0, 0, 0, 0, 0, 3, 'a', 'b', 'c'};
    static struct transcript t;
    struct ws_parser parser;

    (void)state;
    reset_transcript(&t);
    ws_parser_init(&parser, 1 << 20);
    assert_int_equal(feed_all(&parser, frame, sizeof(frame), &t), 0);
    assert_int_equal(t.count, 1);
    assert_event(&t, 0, WS_OPCODE_BINARY, "abc", 3);
}

/* Feeds one malformed stream and checks the close code and that the error is sticky. */
static void assert_rejected(const uint8_t *data, size_t length, uint64_t cap, int code)
{
    static struct transcript t;
    struct ws_parser parser;

    reset_transcript(&t);
    ws_parser_init(&parser, cap);
    assert_int_equal(feed_all(&parser, data, length, &t), code);
    assert_non_null(parser.reason);
    assert_int_equal(feed_all(&parser, (const uint8_t *)"\x81\x00", 2, &t), code);
}

static void parser_rejects_bad_opcodes(void **state)
{
    static const uint8_t reserved_data[] = {0x83, 0x00};
    static const uint8_t reserved_control[] = {0x8b, 0x00};
    static const uint8_t opcode_f[] = {0x8f, 0x00};

    (void)state;
    assert_rejected(reserved_data, sizeof(reserved_data), 1024, WS_CLOSE_PROTOCOL_ERROR);
    assert_rejected(reserved_control, sizeof(reserved_control), 1024, WS_CLOSE_PROTOCOL_ERROR);
    assert_rejected(opcode_f, sizeof(opcode_f), 1024, WS_CLOSE_PROTOCOL_ERROR);
}

static void parser_rejects_reserved_bits(void **state)
{
    static const uint8_t rsv1[] = {0xc1, 0x01, 'a'};
    static const uint8_t rsv2[] = {0xa2, 0x00};
    static const uint8_t rsv3[] = {0x99, 0x00};

    (void)state;
    assert_rejected(rsv1, sizeof(rsv1), 1024, WS_CLOSE_PROTOCOL_ERROR);
    assert_rejected(rsv2, sizeof(rsv2), 1024, WS_CLOSE_PROTOCOL_ERROR);
    assert_rejected(rsv3, sizeof(rsv3), 1024, WS_CLOSE_PROTOCOL_ERROR);
}

static void parser_rejects_masked_frame(void **state)
{
    /* Read without the mask bit, the key would parse as two more valid empty frames. */
    static const uint8_t masked[] = {0x82, 0x80, 0x82, 0x00, 0x82, 0x00};

    (void)state;
    assert_rejected(masked, sizeof(masked), 1024, WS_CLOSE_PROTOCOL_ERROR);
}

static void parser_rejects_bad_control_frames(void **state)
{
    static uint8_t long_ping[2 + 126];
    static const uint8_t fragmented_ping[] = {0x09, 0x00};
    static const uint8_t one_byte_close[] = {0x88, 0x01, 0x03};
    static const uint8_t close_1005[] = {0x88, 0x02, 0x03, 0xed};
    static const uint8_t close_999[] = {0x88, 0x02, 0x03, 0xe7};
    static const uint8_t close_5000[] = {0x88, 0x02, 0x13, 0x88};
    static const uint8_t close_bad_utf8[] = {0x88, 0x04, 0x03, 0xe8, 0xc3, 0x28};

    (void)state;
    long_ping[0] = 0x89;
    long_ping[1] = 126; /* a 16-bit length is itself over the 125-byte limit */
    assert_rejected(long_ping, 4, 1024, WS_CLOSE_PROTOCOL_ERROR);
    assert_rejected(fragmented_ping, sizeof(fragmented_ping), 1024, WS_CLOSE_PROTOCOL_ERROR);
    assert_rejected(one_byte_close, sizeof(one_byte_close), 1024, WS_CLOSE_PROTOCOL_ERROR);
    assert_rejected(close_1005, sizeof(close_1005), 1024, WS_CLOSE_PROTOCOL_ERROR);
    assert_rejected(close_999, sizeof(close_999), 1024, WS_CLOSE_PROTOCOL_ERROR);
    assert_rejected(close_5000, sizeof(close_5000), 1024, WS_CLOSE_PROTOCOL_ERROR);
    assert_rejected(close_bad_utf8, sizeof(close_bad_utf8), 1024, WS_CLOSE_INVALID_DATA);
}

static void parser_accepts_valid_close_codes(void **state)
{
    static const unsigned codes[] = {1000, 1001, 1003, 1007, 1011, 1013, 1014, 3000, 4999};
    static struct transcript t;

    (void)state;
    for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
        uint8_t frame[] = {0x88, 0x02, (uint8_t)(codes[i] >> 8), (uint8_t)codes[i]};
        struct ws_parser parser;

        reset_transcript(&t);
        ws_parser_init(&parser, 1024);
        assert_int_equal(feed_all(&parser, frame, sizeof(frame), &t), 0);
        assert_int_equal(t.count, 1);
        assert_int_equal(t.events[0].opcode, WS_OPCODE_CLOSE);
    }
}

static void parser_rejects_bad_fragments(void **state)
{
    static const uint8_t lone_continuation[] = {0x80, 0x01, 'a'};
    static const uint8_t interleaved[] = {0x01, 0x01, 'a', 0x82, 0x01, 'b'};

    (void)state;
    assert_rejected(lone_continuation, sizeof(lone_continuation), 1024, WS_CLOSE_PROTOCOL_ERROR);
    assert_rejected(interleaved, sizeof(interleaved), 1024, WS_CLOSE_PROTOCOL_ERROR);
}

static void parser_rejects_64_bit_top_bit(void **state)
{
    static const uint8_t frame[] = {0x82, 127, 0x80, 0, 0, 0, 0, 0, 0, 1};

    (void)state;
    assert_rejected(frame, sizeof(frame), UINT64_MAX, WS_CLOSE_PROTOCOL_ERROR);
}

/* The cap applies to a whole message and is checked on each frame header, before any of
 * its payload arrives. */
static void parser_rejects_over_cap(void **state)
{
    static const uint8_t single[] = {0x82, 126, 0x04, 0x01};
    static const uint8_t fragments[] = {0x02, 100, [102] = 0x80, 126, 0x03, 0x9d};
    static const uint8_t at_cap[] = {0x82, 126, 0x04, 0x00};
    static struct transcript t;
    struct ws_parser parser;

    (void)state;
    assert_rejected(single, sizeof(single), 1024, WS_CLOSE_MESSAGE_TOO_BIG);
    /* 100 bytes, then a continuation announcing 925: one byte over 1024 together. */
    assert_rejected(fragments, sizeof(fragments), 1024, WS_CLOSE_MESSAGE_TOO_BIG);

    reset_transcript(&t);
    ws_parser_init(&parser, 1024);
    assert_int_equal(feed_all(&parser, at_cap, sizeof(at_cap), &t), 0);
    assert_int_equal(parser.error, 0);
}

/* A nonzero callback result stops parsing and is returned as it is. */
static void parser_stops_on_callback_code(void **state)
{
    static uint8_t stream[16];
    static struct transcript t;
    struct ws_parser parser;
    size_t length = 0;

    (void)state;
    put_frame(stream, &length, 0x82, (const uint8_t *)"a", 1);
    put_frame(stream, &length, 0x82, (const uint8_t *)"b", 1);
    reset_transcript(&t);
    t.stop_after = 1;
    ws_parser_init(&parser, 1024);
    assert_int_equal(feed_all(&parser, stream, length, &t), -125);
    assert_int_equal(t.count, 1);
}

/* Binary payload is handed on in place, as pieces of the fed buffer. */
static void parser_passes_payload_in_place(void **state)
{
    static uint8_t stream[2000];
    static uint8_t payload[1000];
    static struct transcript t;
    struct ws_parser parser;
    size_t length = 0;

    (void)state;
    put_frame(stream, &length, 0x82, payload, sizeof(payload));
    reset_transcript(&t);
    ws_parser_init(&parser, 1 << 20);
    assert_int_equal(feed_all(&parser, stream, length, &t), 0);
    assert_int_equal(t.pieces, 1);
}

static void utf8_validation(void **state)
{
    (void)state;
    assert_true(ws_utf8_valid((const uint8_t *)"", 0));
    assert_true(ws_utf8_valid((const uint8_t *)"plain ascii", 11));
    assert_true(ws_utf8_valid((const uint8_t *)"\xc3\xa9", 2));          /* U+00E9 */
    assert_true(ws_utf8_valid((const uint8_t *)"\xe2\x82\xac", 3));      /* U+20AC */
    assert_true(ws_utf8_valid((const uint8_t *)"\xf0\x9f\x98\x80", 4));  /* U+1F600 */
    assert_true(ws_utf8_valid((const uint8_t *)"\xf4\x8f\xbf\xbf", 4));  /* U+10FFFF */
    assert_false(ws_utf8_valid((const uint8_t *)"\xc3", 1));             /* truncated */
    assert_false(ws_utf8_valid((const uint8_t *)"\xc0\xaf", 2));         /* overlong */
    assert_false(ws_utf8_valid((const uint8_t *)"\xe0\x80\xaf", 3));     /* overlong */
    assert_false(ws_utf8_valid((const uint8_t *)"\xed\xa0\x80", 3));     /* surrogate */
    assert_false(ws_utf8_valid((const uint8_t *)"\xf4\x90\x80\x80", 4)); /* past U+10FFFF */
    assert_false(ws_utf8_valid((const uint8_t *)"\x80", 1));             /* lone continuation */
    assert_false(ws_utf8_valid((const uint8_t *)"\xff", 1));
}

static void frame_header_lengths(void **state)
{
    static const uint8_t key[4] = {0x11, 0x22, 0x33, 0x44};
    uint8_t header[WS_MAX_HEADER_BYTES];

    (void)state;
    assert_int_equal(ws_frame_header(header, WS_OPCODE_TEXT, true, 125, key), 6);
    assert_int_equal(header[0], 0x81);
    assert_int_equal(header[1], 0x80 | 125);
    assert_memory_equal(header + 2, key, 4);

    assert_int_equal(ws_frame_header(header, WS_OPCODE_BINARY, false, 126, key), 8);
    assert_int_equal(header[0], 0x02);
    assert_int_equal(header[1], 0x80 | 126);
    assert_int_equal(header[2], 0);
    assert_int_equal(header[3], 126);

    assert_int_equal(ws_frame_header(header, WS_OPCODE_CONTINUATION, true, 65536, key), 14);
    assert_int_equal(header[0], 0x80);
    assert_int_equal(header[1], 0x80 | 127);
    assert_int_equal(header[7], 1);
    assert_int_equal(header[8], 0);
    assert_int_equal(header[9], 0);
    assert_memory_equal(header + 10, key, 4);
}

/* The word-wise mask equals the byte-wise definition of RFC 6455 section 5.3, from any
 * key offset and for any length, and masking twice restores the data. */
static void mask_matches_definition(void **state)
{
    static const uint8_t key[4] = {0xde, 0xad, 0xbe, 0xef};
    uint8_t source[67], masked[67], again[67];

    (void)state;
    for (size_t i = 0; i < sizeof(source); i++)
        source[i] = (uint8_t)(i * 31 + 1);
    for (size_t offset = 0; offset < 4; offset++) {
        for (size_t length = 0; length <= sizeof(source); length++) {
            ws_mask(masked, source, length, key, offset);
            for (size_t i = 0; i < length; i++)
                assert_int_equal(masked[i], source[i] ^ key[(offset + i) % 4]);
            ws_mask(again, masked, length, key, offset);
            assert_memory_equal(again, source, length);
        }
    }
}

static void rate_window_over_last_second(void **state)
{
    struct ws_rate_window window = {0};

    (void)state;
    assert_true(ws_rate_window_add(&window, 0, 0) == 0);
    /* 1,250,000 bytes per 100 ms is 100 Mbit/s. */
    for (int i = 1; i <= 20; i++) {
        double bps = ws_rate_window_add(&window, i * 100.0, (uint64_t)i * 1250000);
        assert_true(bps > 99.9e6 && bps < 100.1e6);
    }
    /* The window keeps about a second: a stall shows within it. */
    double bps = 0;
    for (int i = 21; i <= 31; i++)
        bps = ws_rate_window_add(&window, i * 100.0, 20 * 1250000);
    assert_true(bps == 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(parser_whole_stream),
        cmocka_unit_test(parser_every_split),
        cmocka_unit_test(parser_byte_at_a_time),
        cmocka_unit_test(parser_length_encodings),
        cmocka_unit_test(parser_long_form_small_length),
        cmocka_unit_test(parser_rejects_bad_opcodes),
        cmocka_unit_test(parser_rejects_reserved_bits),
        cmocka_unit_test(parser_rejects_masked_frame),
        cmocka_unit_test(parser_rejects_bad_control_frames),
        cmocka_unit_test(parser_accepts_valid_close_codes),
        cmocka_unit_test(parser_rejects_bad_fragments),
        cmocka_unit_test(parser_rejects_64_bit_top_bit),
        cmocka_unit_test(parser_rejects_over_cap),
        cmocka_unit_test(parser_stops_on_callback_code),
        cmocka_unit_test(parser_passes_payload_in_place),
        cmocka_unit_test(utf8_validation),
        cmocka_unit_test(frame_header_lengths),
        cmocka_unit_test(mask_matches_definition),
        cmocka_unit_test(rate_window_over_last_second),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
