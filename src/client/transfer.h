/* Download and upload throughput over the bulk HTTP endpoints (GET /__down, POST /__up)
 * with libcurl: parallel streams added while the rate grows, the ramp-up left out, and an
 * early stop once the rate is stable, as docs/methodology.md describes. */
#ifndef LINKSPEED_TRANSFER_H
#define LINKSPEED_TRANSFER_H

#include "client.h"

#include <signal.h>
#include <stdbool.h>

struct transfer_options {
    enum client_direction direction;
    unsigned streams;      /* 1..CLIENT_MAX_STREAMS, or 0 for automatic */
    double max_duration_s; /* the phase ends at this time at the latest */
    bool stop_when_stable; /* end sooner once the rate is stable */
    client_progress_fn progress;
    void *progress_context;
    const volatile sig_atomic_t *cancel; /* nonzero: stop now and fail with -ECANCELED */
};

/* Runs one direction against target. Returns 0 with *result filled, or a negative code
 * with *err filled (all streams failed, the server answered an error, a stall longer than
 * target->timeout_s, or cancel). */
int transfer_measure(const struct client_target *target, const struct transfer_options *options,
                     struct throughput_result *result, struct client_error *err);

#endif
