/* The throughput method's arithmetic, without I/O; see method.h. It follows web/measure.js
 * step by step so that the command-line client and the page report the same figure. */
#include "method.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

double method_bps(uint64_t bytes, double duration_ms)
{
    if (duration_ms <= 0)
        return 0;
    return (double)bytes * 8.0 * 1000.0 / duration_ms;
}

/* Grows *array of element_size elements to room for at least count + 1 of them. */
static int reserve(void **array, size_t *capacity, size_t count, size_t element_size)
{
    size_t new_capacity;
    void *grown;

    if (count < *capacity)
        return 0;
    new_capacity = *capacity ? *capacity * 2 : 128;
    grown = realloc(*array, new_capacity * element_size);
    if (grown == NULL)
        return -ENOMEM;
    *array = grown;
    *capacity = new_capacity;
    return 0;
}

static int push_sample(struct method_phase *phase, struct method_sample sample)
{
    void *history = phase->history;
    int rc =
        reserve(&history, &phase->history_capacity, phase->history_count, sizeof(*phase->history));

    phase->history = history;
    if (rc != 0)
        return rc;
    phase->history[phase->history_count++] = sample;
    return 0;
}

static int push_window(struct method_phase *phase, double bps)
{
    void *windows = phase->window_bps;
    int rc =
        reserve(&windows, &phase->window_capacity, phase->window_count, sizeof(*phase->window_bps));

    phase->window_bps = windows;
    if (rc != 0)
        return rc;
    phase->window_bps[phase->window_count++] = bps;
    return 0;
}

int method_phase_init(struct method_phase *phase, unsigned streams, unsigned max_streams,
                      double max_duration_ms, bool stop_when_stable, double start_ms)
{
    struct method_sample start = {.time_ms = start_ms, .bytes = 0};

    memset(phase, 0, sizeof(*phase));
    phase->automatic = streams == 0;
    phase->max_streams = max_streams > 0 ? max_streams : 1;
    phase->max_duration_ms = max_duration_ms;
    phase->min_duration_ms = max_duration_ms;
    if (stop_when_stable && max_duration_ms > METHOD_MIN_DURATION_MS)
        phase->min_duration_ms = METHOD_MIN_DURATION_MS;
    phase->streams = phase->automatic ? 1 : streams;
    phase->ramping = true;
    phase->start = start;
    phase->window_start = start;
    phase->ramp_step_start = start;
    if (push_sample(phase, start) != 0)
        return -ENOMEM;
    return (int)phase->streams;
}

void method_phase_free(struct method_phase *phase)
{
    free(phase->history);
    free(phase->window_bps);
    phase->history = NULL;
    phase->window_bps = NULL;
    phase->history_count = 0;
    phase->window_count = 0;
}

/* True when the last METHOD_STABLE_WINDOWS windows are within METHOD_STABLE_TOLERANCE of
 * their mean, and that mean is above zero. */
static bool windows_stable(const double *window_bps, size_t count)
{
    const double *last;
    double mean = 0;

    if (count < METHOD_STABLE_WINDOWS)
        return false;
    last = window_bps + count - METHOD_STABLE_WINDOWS;
    for (size_t i = 0; i < METHOD_STABLE_WINDOWS; i++)
        mean += last[i];
    mean /= METHOD_STABLE_WINDOWS;
    if (mean <= 0)
        return false;
    for (size_t i = 0; i < METHOD_STABLE_WINDOWS; i++) {
        double deviation = last[i] > mean ? last[i] - mean : mean - last[i];
        if (deviation > METHOD_STABLE_TOLERANCE * mean)
            return false;
    }
    return true;
}

/* Ends a ramp step: adds a stream while the rate still grows, else ends the ramp-up. */
static enum method_decision step_ramp(struct method_phase *phase, struct method_sample now)
{
    double step_bps = method_bps(now.bytes - phase->ramp_step_start.bytes,
                                 now.time_ms - phase->ramp_step_start.time_ms);
    bool growing = step_bps > phase->previous_step_bps * (1 + METHOD_RAMP_GROWTH);
    enum method_decision decision = METHOD_CONTINUE;

    if (phase->automatic && growing && phase->streams < phase->max_streams) {
        phase->streams++;
        decision = METHOD_ADD_STREAM;
    } else {
        phase->ramping = false;
        phase->stable_start = now;
        phase->windows_at_stable_start = phase->window_count;
    }
    phase->previous_step_bps = step_bps;
    phase->ramp_step_start = now;
    return decision;
}

int method_phase_tick(struct method_phase *phase, double now_ms, uint64_t bytes)
{
    struct method_sample now = {.time_ms = now_ms, .bytes = bytes};
    enum method_decision decision = METHOD_CONTINUE;
    double elapsed_ms = now_ms - phase->start.time_ms;

    if (push_sample(phase, now) != 0)
        return -ENOMEM;

    if (now_ms - phase->window_start.time_ms >= METHOD_WINDOW_MS) {
        double bps =
            method_bps(bytes - phase->window_start.bytes, now_ms - phase->window_start.time_ms);
        if (push_window(phase, bps) != 0)
            return -ENOMEM;
        phase->window_start = now;
    }

    if (phase->ramping && now_ms - phase->ramp_step_start.time_ms >= METHOD_RAMP_STEP_MS)
        decision = step_ramp(phase, now);

    phase->stable = !phase->ramping &&
                    phase->window_count - phase->windows_at_stable_start >= METHOD_STABLE_WINDOWS &&
                    windows_stable(phase->window_bps, phase->window_count);

    if ((phase->stable && elapsed_ms >= phase->min_duration_ms) ||
        elapsed_ms >= phase->max_duration_ms)
        return METHOD_STOP;
    return decision;
}

struct method_window method_phase_window(const struct method_phase *phase, double end_ms,
                                         uint64_t end_bytes)
{
    struct method_window window = {
        .start = phase->ramping ? phase->ramp_step_start : phase->stable_start,
        .end = {.time_ms = end_ms, .bytes = end_bytes},
    };

    if (end_ms - window.start.time_ms < METHOD_WINDOW_MS) {
        /* The window starts at the first tick at or after the middle of the phase. */
        double middle_ms = phase->start.time_ms + (end_ms - phase->start.time_ms) / 2;

        for (size_t i = 0; i < phase->history_count; i++) {
            if (phase->history[i].time_ms >= middle_ms) {
                window.start = phase->history[i];
                break;
            }
        }
    }
    return window;
}

double method_recent_bps(const struct method_phase *phase, double span_ms)
{
    const struct method_sample *last;
    const struct method_sample *first;

    if (phase->history_count < 2)
        return 0;
    last = &phase->history[phase->history_count - 1];
    first = &phase->history[0];
    for (size_t i = phase->history_count - 1; i-- > 0;) {
        first = &phase->history[i];
        if (last->time_ms - first->time_ms >= span_ms)
            break;
    }
    return method_bps(last->bytes - first->bytes, last->time_ms - first->time_ms);
}

double method_attribute_bytes(const struct method_request *requests, size_t count,
                              double window_start_ms, double window_end_ms)
{
    double total = 0;

    for (size_t i = 0; i < count; i++) {
        const struct method_request *r = &requests[i];
        double span_ms = r->end_ms - r->start_ms;
        double overlap_start = r->start_ms > window_start_ms ? r->start_ms : window_start_ms;
        double overlap_end = r->end_ms < window_end_ms ? r->end_ms : window_end_ms;

        if (span_ms <= 0) {
            if (r->start_ms >= window_start_ms && r->start_ms <= window_end_ms)
                total += (double)r->bytes;
            continue;
        }
        if (overlap_end > overlap_start)
            total += (double)r->bytes * (overlap_end - overlap_start) / span_ms;
    }
    return total;
}

uint64_t method_upload_request_bytes(uint64_t previous_bytes, double previous_ms)
{
    double bytes;

    if (previous_bytes == 0)
        return METHOD_UPLOAD_FIRST_BYTES;
    bytes = (double)previous_bytes * METHOD_UPLOAD_MAX_GROWTH;
    if (previous_ms > 0 && (double)previous_bytes * METHOD_UPLOAD_REQUEST_MS / previous_ms < bytes)
        bytes = (double)previous_bytes * METHOD_UPLOAD_REQUEST_MS / previous_ms;
    if (bytes < METHOD_UPLOAD_MIN_REQUEST_BYTES)
        return METHOD_UPLOAD_MIN_REQUEST_BYTES;
    if (bytes > METHOD_UPLOAD_MAX_REQUEST_BYTES)
        return METHOD_UPLOAD_MAX_REQUEST_BYTES;
    return (uint64_t)bytes;
}
