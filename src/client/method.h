/* The arithmetic of the throughput method of docs/methodology.md, kept apart from any I/O so
 * that unit tests can drive it with made-up clocks and byte counts. It decides when to add a
 * stream, where the stable window starts and ends, and when the rate is stable. It also
 * spreads the server's confirmed upload bytes over that window and sizes upload requests.
 *
 * Times are milliseconds on any monotonic clock; byte counts are payload bytes. */
#ifndef LINKSPEED_METHOD_H
#define LINKSPEED_METHOD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The rate is sampled every METHOD_TICK_MS and summed into windows of METHOD_WINDOW_MS. */
#define METHOD_TICK_MS   100.0
#define METHOD_WINDOW_MS 500.0
/* An automatic phase adds one stream per ramp step while the step's rate grew by more than
 * METHOD_RAMP_GROWTH over the previous step. */
#define METHOD_RAMP_STEP_MS 1000.0
#define METHOD_RAMP_GROWTH  0.10
/* The rate is stable when the last METHOD_STABLE_WINDOWS windows of the stable window are
 * within METHOD_STABLE_TOLERANCE of their mean. */
#define METHOD_STABLE_WINDOWS   3
#define METHOD_STABLE_TOLERANCE 0.05
/* A phase never stops before this, unless its maximum duration is shorter. */
#define METHOD_MIN_DURATION_MS 4000.0

/* Upload requests are sized to last about METHOD_UPLOAD_REQUEST_MS at the stream's rate, so
 * that the server's per-request confirmations are fine grained enough for the window. */
#define METHOD_UPLOAD_REQUEST_MS 250.0
/* A request is at most this many times the stream's last one, because a small request that
 * fits in the socket buffers finishes at once and shows nothing of the link's rate. */
#define METHOD_UPLOAD_MAX_GROWTH        4.0
#define METHOD_UPLOAD_FIRST_BYTES       (64u * 1024u)
#define METHOD_UPLOAD_MIN_REQUEST_BYTES (64u * 1024u)
#define METHOD_UPLOAD_MAX_REQUEST_BYTES (64u * 1024u * 1024u)

/* Byte count of a phase at one point in time. */
struct method_sample {
    double time_ms;
    uint64_t bytes;
};

/* Action the caller takes after a tick. */
enum method_decision {
    METHOD_CONTINUE,
    METHOD_ADD_STREAM,
    METHOD_STOP,
};

/* State of one download or upload phase. Initialise it with method_phase_init() and release
 * it with method_phase_free(). Callers only read its fields. */
struct method_phase {
    bool automatic; /* streams added while the rate grows, else a fixed count */
    unsigned max_streams;
    double max_duration_ms;
    double min_duration_ms;

    unsigned streams; /* streams started so far, failed ones included */
    bool ramping;
    bool stable; /* the last tick found the rate stable */
    struct method_sample start;
    struct method_sample window_start;
    struct method_sample ramp_step_start;
    struct method_sample stable_start; /* valid once ramping is false */
    double previous_step_bps;

    struct method_sample *history; /* every tick, for the fallback window and recent rates */
    size_t history_count;
    size_t history_capacity;
    double *window_bps; /* the rate of each completed window */
    size_t window_count;
    size_t window_capacity;
    size_t windows_at_stable_start;
};

/* The span the result is computed over. */
struct method_window {
    struct method_sample start;
    struct method_sample end;
};

/* Starts a phase at start_ms with `streams` fixed streams, or automatic streams (starting with
 * one) when streams is 0; max_streams caps the automatic ramp. Without stop_when_stable the
 * phase runs for max_duration_ms whatever the rate does. Returns the number of streams to
 * start now, or -ENOMEM. */
int method_phase_init(struct method_phase *phase, unsigned streams, unsigned max_streams,
                      double max_duration_ms, bool stop_when_stable, double start_ms);

void method_phase_free(struct method_phase *phase);

/* Records the phase's byte count at now_ms (called about every METHOD_TICK_MS) and decides
 * whether to add a stream, stop, or go on. Returns an enum method_decision, or -ENOMEM when
 * the history cannot grow. On METHOD_ADD_STREAM the phase counts the new stream already. */
int method_phase_tick(struct method_phase *phase, double now_ms, uint64_t bytes);

/* Returns the stable window of a phase that stopped at end_ms with end_bytes. When the ramp
 * never ended, the window starts at the last ramp step, where the last stream was added.
 * When that leaves less than METHOD_WINDOW_MS, the second half of the phase is used, as
 * web/measure.js does. */
struct method_window method_phase_window(const struct method_phase *phase, double end_ms,
                                         uint64_t end_bytes);

/* Returns the rate in bit/s over about the last span_ms of ticks, 0 before two ticks. */
double method_recent_bps(const struct method_phase *phase, double span_ms);

/* Returns bytes over milliseconds in bit/s, 0 for an empty or negative span. */
double method_bps(uint64_t bytes, double duration_ms);

/* One upload request: its span, from sending the request to reading the server's response,
 * and the byte count the server confirmed. */
struct method_request {
    double start_ms;
    double end_ms;
    uint64_t bytes;
};

/* Returns the confirmed bytes of `requests` that fall into [window_start_ms, window_end_ms],
 * each request's bytes spread evenly over its span. A request of zero length counts whole
 * when its instant is inside the window. */
double method_attribute_bytes(const struct method_request *requests, size_t count,
                              double window_start_ms, double window_end_ms);

/* Returns the size of a stream's next upload request: METHOD_UPLOAD_REQUEST_MS at the rate
 * of its previous request (previous_bytes in previous_ms), at most METHOD_UPLOAD_MAX_GROWTH
 * times previous_bytes, within the minimum and maximum; METHOD_UPLOAD_FIRST_BYTES when there
 * was none (previous_bytes 0). */
uint64_t method_upload_request_bytes(uint64_t previous_bytes, double previous_ms);

#endif
