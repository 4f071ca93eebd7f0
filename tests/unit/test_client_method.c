/* Unit tests of the throughput method's arithmetic (src/client/method.c), driven by made-up
 * clocks and byte counts: ramp-up, stop rule, stable window and its fallback, upload
 * attribution and upload request sizing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "method.h"

#define MBPS 1e6

/* A phase fed with a simulated clock, one tick every METHOD_TICK_MS. */
struct simulation {
    struct method_phase phase;
    double now_ms;
    uint64_t bytes;
};

static void simulation_start_with(struct simulation *sim, unsigned streams, unsigned max_streams,
                                  double max_duration_ms, bool stop_when_stable,
                                  int expected_streams)
{
    sim->now_ms = 0;
    sim->bytes = 0;
    assert_int_equal(
        method_phase_init(&sim->phase, streams, max_streams, max_duration_ms, stop_when_stable, 0),
        expected_streams);
}

/* Starts a phase that stops once the rate is stable, as the client does by default. */
static void simulation_start(struct simulation *sim, unsigned streams, unsigned max_streams,
                             double max_duration_ms, int expected_streams)
{
    simulation_start_with(sim, streams, max_streams, max_duration_ms, true, expected_streams);
}

/* Moves the clock one tick on, with the phase moving data at bps meanwhile. */
static int simulation_tick(struct simulation *sim, double bps)
{
    sim->now_ms += METHOD_TICK_MS;
    sim->bytes += (uint64_t)(bps / 8.0 * METHOD_TICK_MS / 1000.0);
    return method_phase_tick(&sim->phase, sim->now_ms, sim->bytes);
}

/* Ticks until the phase stops and returns the time of the stop. Each running stream moves
 * per_stream_bps, but no more than saturated_streams of them add to the rate. */
static double simulate_ramp(struct simulation *sim, double per_stream_bps,
                            unsigned saturated_streams)
{
    unsigned streams = sim->phase.streams;

    for (int i = 0; i < 1000; i++) {
        unsigned moving = streams < saturated_streams ? streams : saturated_streams;
        int decision = simulation_tick(sim, per_stream_bps * moving);

        assert_true(decision >= 0);
        if (decision == METHOD_STOP)
            return sim->now_ms;
        if (decision == METHOD_ADD_STREAM)
            streams++;
    }
    fail_msg("the phase never stopped");
    return 0;
}

static void test_bps_units(void **state)
{
    (void)state;
    assert_float_equal(method_bps(1000000, 1000), 8e6, 1e-6);
    assert_float_equal(method_bps(125, 1), 1e6, 1e-6);
    assert_float_equal(method_bps(1000, 0), 0, 0);
    assert_float_equal(method_bps(1000, -5), 0, 0);
}

static void test_fixed_stable_stops_at_minimum(void **state)
{
    struct simulation sim;
    struct method_window window;
    int decision = METHOD_CONTINUE;

    (void)state;
    simulation_start(&sim, 4, 16, 10000, 4);
    while (decision == METHOD_CONTINUE)
        decision = simulation_tick(&sim, 800 * MBPS);

    /* Stable from 2.5 s (three windows after the first second), but never before 4 s. */
    assert_int_equal(decision, METHOD_STOP);
    assert_float_equal(sim.now_ms, 4000, 1e-9);
    assert_false(sim.phase.ramping);
    assert_true(sim.phase.stable);
    assert_int_equal(sim.phase.streams, 4);

    window = method_phase_window(&sim.phase, sim.now_ms, sim.bytes);
    assert_float_equal(window.start.time_ms, 1000, 1e-9);
    assert_float_equal(window.end.time_ms, 4000, 1e-9);
    assert_float_equal(method_bps(window.end.bytes - window.start.bytes, 3000), 800 * MBPS,
                       800 * MBPS * 1e-6);
    method_phase_free(&sim.phase);
}

static void test_stable_without_early_stop_runs_to_maximum(void **state)
{
    struct simulation sim;
    struct method_window window;
    int decision = METHOD_CONTINUE;

    (void)state;
    simulation_start_with(&sim, 4, 16, 10000, false, 4);
    while (decision == METHOD_CONTINUE)
        decision = simulation_tick(&sim, 800 * MBPS);

    assert_int_equal(decision, METHOD_STOP);
    assert_float_equal(sim.now_ms, 10000, 1e-9);
    assert_true(sim.phase.stable);

    /* The window still leaves the first second, the ramp-up, out. */
    window = method_phase_window(&sim.phase, sim.now_ms, sim.bytes);
    assert_float_equal(window.start.time_ms, 1000, 1e-9);
    assert_float_equal(window.end.time_ms, 10000, 1e-9);
    method_phase_free(&sim.phase);
}

static void test_unstable_runs_to_maximum(void **state)
{
    struct simulation sim;
    int decision = METHOD_CONTINUE;
    unsigned tick = 0;

    (void)state;
    simulation_start(&sim, 2, 16, 8000, 2);
    while (decision == METHOD_CONTINUE) {
        /* Windows alternate between 100 and 130 Mbit/s: 13% apart, never within 5%. */
        double bps = (tick / 5) % 2 == 0 ? 100 * MBPS : 130 * MBPS;
        decision = simulation_tick(&sim, bps);
        tick++;
    }
    assert_int_equal(decision, METHOD_STOP);
    assert_float_equal(sim.now_ms, 8000, 1e-9);
    assert_false(sim.phase.stable);
    method_phase_free(&sim.phase);
}

static void test_stability_tolerance(void **state)
{
    /* Rates of the three windows after the ramp-up, and whether they count as stable. */
    static const struct {
        double bps[3];
        bool stable;
    } cases[] = {
        {{100, 104, 96}, true},   {{100, 100, 100}, true}, {{100, 106, 94}, false},
        {{100, 100, 120}, false}, {{0, 0, 0}, false},
    };

    (void)state;
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        struct simulation sim;
        int decision = METHOD_CONTINUE;

        simulation_start(&sim, 1, 16, 10000, 1);
        for (int i = 0; i < 10; i++)
            decision = simulation_tick(&sim, 100 * MBPS);
        assert_int_equal(decision, METHOD_CONTINUE);
        for (int w = 0; w < 3; w++) {
            for (int i = 0; i < 5; i++)
                decision = simulation_tick(&sim, cases[c].bps[w] * MBPS);
        }
        assert_int_equal(decision, METHOD_CONTINUE); /* 2.5 s is before the 4 s minimum */
        assert_int_equal(sim.phase.stable, cases[c].stable);
        method_phase_free(&sim.phase);
    }
}

static void test_short_maximum_wins(void **state)
{
    struct simulation sim;
    int decision = METHOD_CONTINUE;

    (void)state;
    simulation_start(&sim, 1, 16, 2000, 1);
    while (decision == METHOD_CONTINUE)
        decision = simulation_tick(&sim, 50 * MBPS);
    assert_int_equal(decision, METHOD_STOP);
    assert_float_equal(sim.now_ms, 2000, 1e-9);
    method_phase_free(&sim.phase);
}

static void test_ramp_stops_when_rate_flattens(void **state)
{
    struct simulation sim;
    struct method_window window;
    double stop_ms;

    (void)state;
    simulation_start(&sim, 0, 16, 10000, 1);
    /* The rate grows with each stream up to 3 streams, so streams are added at 1, 2 and 3 s.
     * The step ending at 4 s grew by 0%, which ends the ramp-up with 4 streams. */
    stop_ms = simulate_ramp(&sim, 100 * MBPS, 3);

    assert_int_equal(sim.phase.streams, 4);
    assert_false(sim.phase.ramping);
    assert_float_equal(sim.phase.stable_start.time_ms, 4000, 1e-9);
    assert_float_equal(stop_ms, 5500, 1e-9); /* three stable windows after 4 s */

    window = method_phase_window(&sim.phase, stop_ms, sim.bytes);
    assert_float_equal(window.start.time_ms, 4000, 1e-9);
    assert_float_equal(method_bps(window.end.bytes - window.start.bytes, 1500), 300 * MBPS,
                       300 * MBPS * 1e-6);
    method_phase_free(&sim.phase);
}

static void test_ramp_stops_at_max_streams(void **state)
{
    struct simulation sim;

    (void)state;
    simulation_start(&sim, 0, 3, 10000, 1);
    simulate_ramp(&sim, 100 * MBPS, 100);
    assert_int_equal(sim.phase.streams, 3);
    assert_false(sim.phase.ramping);
    assert_float_equal(sim.phase.stable_start.time_ms, 3000, 1e-9);
    method_phase_free(&sim.phase);
}

static void test_fallback_window_since_last_stream(void **state)
{
    struct simulation sim;
    struct method_window window;
    double stop_ms;

    (void)state;
    /* Still growing at the maximum: the last stream was added at 5 s, 500 ms before the end. */
    simulation_start(&sim, 0, 16, 5500, 1);
    stop_ms = simulate_ramp(&sim, 100 * MBPS, 100);
    assert_true(sim.phase.ramping);
    assert_float_equal(stop_ms, 5500, 1e-9);

    window = method_phase_window(&sim.phase, stop_ms, sim.bytes);
    assert_float_equal(window.start.time_ms, 5000, 1e-9);
    assert_float_equal(window.end.time_ms, 5500, 1e-9);
    assert_float_equal(method_bps(window.end.bytes - window.start.bytes, 500), 600 * MBPS,
                       600 * MBPS * 1e-6);
    method_phase_free(&sim.phase);
}

static void test_fallback_window_second_half(void **state)
{
    struct simulation sim;
    struct method_window window;
    double stop_ms;

    (void)state;
    /* Still growing at the maximum, and a ramp step falls on the last tick: the window since
     * the last stream would be empty, so the second half of the phase is used. */
    simulation_start(&sim, 0, 16, 5000, 1);
    stop_ms = simulate_ramp(&sim, 100 * MBPS, 100);
    assert_true(sim.phase.ramping);
    assert_float_equal(stop_ms, 5000, 1e-9);

    window = method_phase_window(&sim.phase, stop_ms, sim.bytes);
    assert_float_equal(window.start.time_ms, 2500, 1e-9);
    assert_float_equal(window.end.time_ms, 5000, 1e-9);
    method_phase_free(&sim.phase);
}

static void test_recent_rate(void **state)
{
    struct simulation sim;

    (void)state;
    simulation_start(&sim, 1, 16, 10000, 1);
    assert_float_equal(method_recent_bps(&sim.phase, 1000), 0, 0);
    for (int i = 0; i < 20; i++)
        simulation_tick(&sim, i < 10 ? 100 * MBPS : 300 * MBPS);
    assert_float_equal(method_recent_bps(&sim.phase, 1000), 300 * MBPS, 300 * MBPS * 1e-6);
    assert_float_equal(method_recent_bps(&sim.phase, 2000), 200 * MBPS, 200 * MBPS * 1e-6);
    method_phase_free(&sim.phase);
}

static void test_attribution_inside_and_outside(void **state)
{
    const struct method_request requests[] = {
        {.start_ms = 1200, .end_ms = 1450, .bytes = 1000}, /* inside: whole */
        {.start_ms = 100, .end_ms = 900, .bytes = 5000},   /* before the window */
        {.start_ms = 3100, .end_ms = 3300, .bytes = 7000}, /* after the window */
        {.start_ms = 900, .end_ms = 1000, .bytes = 3000},  /* ends at the window start */
    };

    (void)state;
    assert_float_equal(method_attribute_bytes(requests, 4, 1000, 3000), 1000, 1e-9);
    assert_float_equal(method_attribute_bytes(requests, 0, 1000, 3000), 0, 0);
}

static void test_attribution_straddling_both_ends(void **state)
{
    const struct method_request requests[] = {
        /* 1000 bytes over 800..1200: a half inside a window starting at 1000. */
        {.start_ms = 800, .end_ms = 1200, .bytes = 1000},
        /* 4000 bytes over 2900..3300: a quarter inside a window ending at 3000. */
        {.start_ms = 2900, .end_ms = 3300, .bytes = 4000},
        /* 6000 bytes over 500..3500: the window's 2000 of 3000 ms. */
        {.start_ms = 500, .end_ms = 3500, .bytes = 6000},
    };

    (void)state;
    assert_float_equal(method_attribute_bytes(requests, 1, 1000, 3000), 500, 1e-9);
    assert_float_equal(method_attribute_bytes(requests + 1, 1, 1000, 3000), 1000, 1e-9);
    assert_float_equal(method_attribute_bytes(requests + 2, 1, 1000, 3000), 4000, 1e-9);
    assert_float_equal(method_attribute_bytes(requests, 3, 1000, 3000), 5500, 1e-9);
}

static void test_attribution_zero_length_spans(void **state)
{
    const struct method_request requests[] = {
        {.start_ms = 1500, .end_ms = 1500, .bytes = 700}, /* an instant inside */
        {.start_ms = 500, .end_ms = 500, .bytes = 900},   /* an instant before */
        {.start_ms = 1000, .end_ms = 1000, .bytes = 300}, /* at the window start */
    };
    const struct method_request spanning = {.start_ms = 0, .end_ms = 2000, .bytes = 1000};

    (void)state;
    assert_float_equal(method_attribute_bytes(requests, 2, 1000, 2000), 700, 1e-9);
    assert_float_equal(method_attribute_bytes(requests + 2, 1, 1000, 2000), 300, 1e-9);
    /* A window of zero length spans no time, so a request across it adds nothing. */
    assert_float_equal(method_attribute_bytes(&spanning, 1, 1000, 1000), 0, 0);
}

static void test_upload_request_sizing(void **state)
{
    (void)state;
    assert_int_equal(method_upload_request_bytes(0, 0), 64 * 1024);
    /* 10 MB in 1 s is 2.5 MB in 250 ms. */
    assert_int_equal(method_upload_request_bytes(10000000, 1000), 2500000);
    /* 100 kB in 1 s would be 25 kB: raised to 64 KiB. */
    assert_int_equal(method_upload_request_bytes(100000, 1000), 64 * 1024);
    /* 1 GB in 1 s would be 250 MB: capped at 64 MiB. */
    assert_int_equal(method_upload_request_bytes(1000000000, 1000), 64 * 1024 * 1024);
    /* 64 KiB that the socket buffers took at once: at most four times as much next. */
    assert_int_equal(method_upload_request_bytes(64 * 1024, 0.4), 256 * 1024);
    assert_int_equal(method_upload_request_bytes(64 * 1024, 0), 256 * 1024);
    assert_int_equal(method_upload_request_bytes(32 * 1024 * 1024, 1), 64 * 1024 * 1024);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bps_units),
        cmocka_unit_test(test_fixed_stable_stops_at_minimum),
        cmocka_unit_test(test_stable_without_early_stop_runs_to_maximum),
        cmocka_unit_test(test_unstable_runs_to_maximum),
        cmocka_unit_test(test_stability_tolerance),
        cmocka_unit_test(test_short_maximum_wins),
        cmocka_unit_test(test_ramp_stops_when_rate_flattens),
        cmocka_unit_test(test_ramp_stops_at_max_streams),
        cmocka_unit_test(test_fallback_window_since_last_stream),
        cmocka_unit_test(test_fallback_window_second_half),
        cmocka_unit_test(test_recent_rate),
        cmocka_unit_test(test_attribution_inside_and_outside),
        cmocka_unit_test(test_attribution_straddling_both_ends),
        cmocka_unit_test(test_attribution_zero_length_spans),
        cmocka_unit_test(test_upload_request_sizing),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
