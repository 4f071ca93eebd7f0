/* Unit tests of the payload layout: sizes, header room, and random content. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "core/payload.h"

static void fragments_cover_exact_size(void **state)
{
    struct payload p;
    uint64_t total = 0;
    (void)state;

    assert_int_equal(payload_create(&p, 10 * 1048576 + 5, 1048576, 16), 0);
    assert_int_equal(p.fragment_count, 11);
    for (size_t i = 0; i < p.fragment_count; i++) {
        size_t len;
        payload_fragment(&p, i, &len);
        total += len;
    }
    assert_int_equal(total, 10 * 1048576 + 5);
    payload_destroy(&p);
}

/* Header room before each fragment is separate memory: writing there changes no payload byte. */
static void headroom_does_not_overlap(void **state)
{
    struct payload p;
    size_t len0, len1;
    uint8_t copy[4096];
    (void)state;

    assert_int_equal(payload_create(&p, 8192, 4096, 32), 0);
    uint8_t *f0 = payload_fragment(&p, 0, &len0);
    uint8_t *f1 = payload_fragment(&p, 1, &len1);
    memcpy(copy, f0, sizeof(copy));
    memset(f1 - 32, 0xAA, 32);
    assert_memory_equal(copy, f0, sizeof(copy));
    assert_true(f1 >= f0 + len0 + 32);
    payload_destroy(&p);
}

static void content_is_random(void **state)
{
    struct payload p;
    size_t counts[256] = {0}, len;
    (void)state;

    assert_int_equal(payload_create(&p, 1048576, 65536, 16), 0);
    for (size_t i = 0; i < p.fragment_count; i++) {
        const uint8_t *f = payload_fragment(&p, i, &len);
        for (size_t j = 0; j < len; j++)
            counts[f[j]]++;
    }
    /* Uniform bytes give about 4096 of each value; zeros or a pattern would not. */
    for (int v = 0; v < 256; v++) {
        assert_true(counts[v] > 3500);
        assert_true(counts[v] < 4700);
    }
    payload_destroy(&p);
}

/* Byte streams cycle through the fragments that fit in PAYLOAD_STREAM_BYTES, at least one. */
static void stream_fragments_fit_in_a_mebibyte(void **state)
{
    static const struct {
        uint64_t size_bytes;
        size_t fragment_bytes;
        size_t expected;
    } cases[] = {
        {10485760, 1048576, 1}, /* the defaults */
        {10485760, 65536, 16},  /* small fragments: 1 MiB of them */
        {10485760, 400000, 2},  /* only whole fragments count */
        {10485760, 4194304, 1}, /* a fragment over 1 MiB: that one fragment */
        {100000, 4096, 25},     /* a payload under 1 MiB: all of it */
        {64, 4096, 1},          /* one short fragment */
    };
    (void)state;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct payload p;

        assert_int_equal(payload_create(&p, cases[i].size_bytes, cases[i].fragment_bytes, 16), 0);
        assert_int_equal(payload_stream_fragments(&p), cases[i].expected);
        payload_destroy(&p);
    }
}

static void zero_size_rejected(void **state)
{
    struct payload p;
    (void)state;

    assert_int_not_equal(payload_create(&p, 0, 4096, 16), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(fragments_cover_exact_size),
        cmocka_unit_test(headroom_does_not_overlap),
        cmocka_unit_test(content_is_random),
        cmocka_unit_test(stream_fragments_fit_in_a_mebibyte),
        cmocka_unit_test(zero_size_rejected),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
