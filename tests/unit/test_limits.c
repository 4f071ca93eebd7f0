/* Unit tests of the shared connection and per-IP limits, including a dead worker's reset. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "core/limits.h"

static void make_ip(uint8_t ip[16], uint32_t n)
{
    memset(ip, 0, 16);
    ip[10] = 0xff;
    ip[11] = 0xff;
    memcpy(ip + 12, &n, 4);
}

static void connections_capped(void **state)
{
    struct limits *l = limits_create(3, 10);
    (void)state;

    assert_non_null(l);
    assert_int_equal(limits_conn_acquire(l, 0), 0);
    assert_int_equal(limits_conn_acquire(l, 1), 0);
    assert_int_equal(limits_conn_acquire(l, 1), 0);
    assert_int_equal(limits_conn_acquire(l, 0), -1);
    assert_int_equal(limits_connections(l), 3);
    limits_conn_release(l, 1);
    assert_int_equal(limits_conn_acquire(l, 0), 0);
    limits_destroy(l);
}

static void per_ip_capped_across_workers(void **state)
{
    struct limits *l = limits_create(100, 2);
    uint8_t a[16], b[16];
    (void)state;

    make_ip(a, 1);
    make_ip(b, 2);
    assert_int_equal(limits_ip_acquire(l, 0, a), 0);
    assert_int_equal(limits_ip_acquire(l, 1, a), 0);
    assert_int_equal(limits_ip_acquire(l, 0, a), -1);
    assert_int_equal(limits_ip_acquire(l, 1, b), 0);
    limits_ip_release(l, 1, a);
    assert_int_equal(limits_ip_count(l, a), 1);
    assert_int_equal(limits_ip_acquire(l, 1, a), 0);
    limits_destroy(l);
}

/* Many addresses colliding in the table, released in mixed order: every count stays exact. */
static void table_survives_churn(void **state)
{
    struct limits *l = limits_create(600, 3);
    uint8_t ip[16];
    (void)state;

    for (uint32_t round = 0; round < 5; round++) {
        for (uint32_t n = 0; n < 1500; n++) {
            make_ip(ip, n * 7919 + round);
            assert_int_equal(limits_ip_acquire(l, (int)(n % 4), ip), 0);
        }
        for (uint32_t n = 0; n < 1500; n += 2) {
            make_ip(ip, n * 7919 + round);
            limits_ip_release(l, (int)(n % 4), ip);
        }
        for (uint32_t n = 1; n < 1500; n += 2) {
            make_ip(ip, n * 7919 + round);
            assert_int_equal(limits_ip_count(l, ip), 1);
            limits_ip_release(l, (int)(n % 4), ip);
            assert_int_equal(limits_ip_count(l, ip), 0);
        }
    }
    limits_destroy(l);
}

static void dead_worker_share_released(void **state)
{
    struct limits *l = limits_create(10, 5);
    uint8_t a[16], b[16];
    (void)state;

    make_ip(a, 1);
    make_ip(b, 2);
    limits_conn_acquire(l, 0);
    limits_conn_acquire(l, 1);
    limits_conn_acquire(l, 1);
    limits_ip_acquire(l, 0, a);
    limits_ip_acquire(l, 1, a);
    limits_ip_acquire(l, 1, b);
    limits_transfer_add(l, 1, 1);
    limits_transfer_add(l, 0, 1);

    limits_worker_reset(l, 1);
    assert_int_equal(limits_connections(l), 1);
    assert_int_equal(limits_ip_count(l, a), 1);
    assert_int_equal(limits_ip_count(l, b), 0);
    assert_int_equal(limits_transfers(l), 1);

    /* Releases by the dead worker's old index no longer underflow the counts. */
    limits_ip_release(l, 1, a);
    assert_int_equal(limits_ip_count(l, a), 1);
    limits_destroy(l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(connections_capped),
        cmocka_unit_test(per_ip_capped_across_workers),
        cmocka_unit_test(table_survives_churn),
        cmocka_unit_test(dead_worker_share_released),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
