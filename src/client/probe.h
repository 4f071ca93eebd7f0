/* Latency probes over the server's echo WebSocket, /api/v1/latency: idle latency before
 * the transfers and latency under load on a second connection while one runs. */
#ifndef LINKSPEED_PROBE_H
#define LINKSPEED_PROBE_H

#include "client.h"

/* Measures idle latency: one warm-up probe that is not counted, then `count` probes one
 * after another, `gap_ms` apart. Returns 0 with *summary filled; -ENOENT when the server
 * has no latency endpoint (it answered the upgrade with an HTTP status: the caller falls
 * back to TCP_INFO and says so); another negative code with *err filled on failure. */
int probe_idle(const struct client_target *target, unsigned count, unsigned gap_ms,
               struct latency_summary *summary, struct client_error *err);

/* Probes running beside a transfer on their own thread and connection. */
struct probe_loaded;

/* Opens and warms a probe connection, then sends a probe every interval_ms until
 * probe_loaded_stop(). Returns 0 with *out set, -ENOENT as probe_idle, or another negative
 * code with *err filled. */
int probe_loaded_start(const struct client_target *target, unsigned interval_ms,
                       struct probe_loaded **out, struct client_error *err);

/* Stops the probes, fills *summary from those answered within 2 s, and frees probes. */
void probe_loaded_stop(struct probe_loaded *probes, struct latency_summary *summary);

#endif
