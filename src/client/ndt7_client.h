/* The client side of M-Lab's ndt7 protocol (spec v0.11): one download or upload test of
 * the fixed length the server sets (10 s), against any ndt7 server. */
#ifndef LINKSPEED_NDT7_CLIENT_H
#define LINKSPEED_NDT7_CLIENT_H

#include "client.h"

#include <signal.h>

struct ndt7_result {
    /* The client's figures: bytes of binary messages received (download) or sent (upload)
     * over the time from the end of the handshake to the last of them. streams is 1 and the
     * stable window is the whole test: ndt7 has no ramp-up rule. */
    struct throughput_result throughput;
    /* From the server's last measurement message, when it sent one. */
    bool has_server_measurement;
    double server_bps;            /* AppInfo.NumBytes over AppInfo.ElapsedTime */
    double server_min_rtt_ms;     /* TCPInfo.MinRTT; 0 when absent */
    double server_rtt_ms;         /* TCPInfo.RTT; 0 when absent */
    unsigned server_measurements; /* measurement messages received */
    /* The server's close code, or 1006 when the connection ended without a close frame at
     * or after 9 s of the 10 s test, which the spec recommends that clients tolerate. */
    int close_code;
};

/* Runs one test on base_url + /ndt/v7/download or /ndt/v7/upload over ws or wss (the
 * target's http or https). Returns 0 with *result filled, or a negative code with *err. */
int ndt7_client_run(const struct client_target *target, enum client_direction direction,
                    client_progress_fn progress, void *progress_context,
                    const volatile sig_atomic_t *cancel, struct ndt7_result *result,
                    struct client_error *err);

#endif
