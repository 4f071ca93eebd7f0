/* The tutorial's transfer over /ws: one text message per transfer, each answered with one
 * binary message (10 MiB by default), run one after another on one connection. */
#ifndef LINKSPEED_LEGACY_CLIENT_H
#define LINKSPEED_LEGACY_CLIENT_H

#include "client.h"

#include <signal.h>

enum { LEGACY_MAX_TRANSFERS = 100 };

struct legacy_result {
    unsigned transfers;
    uint64_t bytes;                           /* binary payload bytes received */
    double duration_ms;                       /* from the first request to the last byte */
    double bps;                               /* bytes * 8 over duration_ms */
    double transfer_ms[LEGACY_MAX_TRANSFERS]; /* each request to its message's last byte */
};

/* Runs `transfers` (1..LEGACY_MAX_TRANSFERS) transfers on base_url + /ws. Returns 0 with
 * *result filled, or a negative code with *err. */
int legacy_client_run(const struct client_target *target, unsigned transfers,
                      client_progress_fn progress, void *progress_context,
                      const volatile sig_atomic_t *cancel, struct legacy_result *result,
                      struct client_error *err);

#endif
