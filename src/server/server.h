/* The server: a supervising parent process and its worker processes.
 *
 * The parent opens the listening sockets, makes the payload and the shared limits, forks
 * one worker per --workers and restarts a worker that dies. Each worker runs one
 * libwebsockets context that accepts from the shared listening sockets. */
#ifndef LINKSPEED_SERVER_H
#define LINKSPEED_SERVER_H

#include <libwebsockets.h>
#include <stdint.h>

#include "../core/config.h"
#include "../core/limits.h"
#include "../core/payload.h"

#define LINKSPEED_VERSION "0.1.0"

/* One per worker process, reached from any callback with worker_of(wsi). */
struct worker {
    const struct config *cfg;
    struct limits *limits;
    const struct payload *payload;
    int index;
    const int *listen_fds;
    int listen_count;
    uint64_t server_start_us; /* when the parent started, for uptime */
    const char *server_name;  /* --name, or the host name */

    struct lws_context *context;
    struct lws_vhost *vhost;
    struct lws *listen_wsi[CONFIG_MAX_LISTEN];
    lws_sorted_usec_list_t sul_stop;
    lws_sorted_usec_list_t sul_alive;
    uint64_t stop_deadline_us;
    int stopping;
    int ndt7_stopped; /* ndt7 tests were asked to close at the end of the grace period */
    int done;
    struct lws_dll2_owner ws_sessions;
    struct lws_dll2_owner ndt7_sessions;
};

/* A TCP connection accepted by a worker, attached to its wsi as opaque user data. */
struct conn {
    char peer[64];  /* "192.0.2.1:5000" or "[2001:db8::1]:5000" */
    char host[48];  /* the address alone: "192.0.2.1" or "2001:db8::1" */
    uint8_t ip[16]; /* IPv4 as v4-mapped IPv6, for per-IP limits */
    int holds_ip_slot;
};

/* Runs `linkspeed serve`; returns the process exit status. */
int server_main(int argc, char **argv);

/* Adds the --tls-cert and --tls-key settings, if any, to a context's creation info. */
void worker_apply_tls(const struct config *cfg, struct lws_context_creation_info *info);

/* Installs a worker's signal handlers; called in the child before it unblocks signals. */
void worker_install_signals(void);

/* Runs one worker until it receives SIGTERM; returns its exit status. */
int worker_run(struct worker *w);

static inline struct worker *worker_of(struct lws *wsi)
{
    return lws_context_user(lws_get_context(wsi));
}

static inline struct conn *conn_of(struct lws *wsi)
{
    return lws_get_opaque_user_data(lws_get_network_wsi(wsi));
}

uint64_t now_us(void);

/* Returns the status code of a received close frame's payload, or 1005 (no status) when
 * the payload has none, as RFC 6455 reports it. */
static inline int ws_close_code_of(const void *payload, size_t len)
{
    const uint8_t *bytes = payload;

    return len >= 2 ? (bytes[0] << 8 | bytes[1]) : 1005;
}

/* A worker reports that its event loop runs this often; the parent kills one that has not
 * reported for WORKER_STALL_MS, because a worker stuck in a loop serves no one. */
#define WORKER_ALIVE_INTERVAL_MS 1000u
#define WORKER_STALL_MS          10000u

/* Gives back the limits a closed connection held and frees it. */
void worker_release_conn(struct worker *w, struct conn *c);

/* Starts the graceful stop if a stop signal arrived; called when lws wakes up. */
void worker_check_stop(struct worker *w);

/* Handlers of the routes, one file each. */
int http_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                  size_t len);
int ws_legacy_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                       size_t len);
/* Decides whether a WebSocket upgrade may go ahead; a refusal sends its HTTP status here.
 * lws asks the protocol the connection is bound to, which may be any of ours. */
int http_confirm_upgrade(struct lws *wsi, const char *upgrade);
/* Asks every /ws session of this worker to finish its payload and close. */
void ws_legacy_stop_all(struct worker *w);

size_t http_session_size(void);
size_t ws_legacy_session_size(void);

/* The latency probe endpoint, /api/v1/latency. */
int ws_latency_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                        size_t len);
size_t ws_latency_session_size(void);

/* The default WebSocket protocol: routes upgrades without a subprotocol by path. */
int ws_route_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                      size_t len);
size_t ws_route_session_size(void);
/* Tells whether path is a WebSocket endpoint that takes no subprotocol. */
int ws_route_exists(const char *path);

/* The ndt7 protocol (/ndt/v7/download and /ndt/v7/upload), bound by its subprotocol name. */
#define NDT7_SUBPROTOCOL "net.measurementlab.ndt.v7"
/* Largest part of a received frame that lws hands over per callback. lws allocates it for
 * every ndt7 connection, but a smaller one costs fast uploads more callbacks per byte. */
#define NDT7_RX_BUFFER_BYTES (1024 * 1024)
int ndt7_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                  size_t len);
size_t ndt7_session_size(void);
/* Tells whether path (without its query string) is an ndt7 endpoint. */
int ndt7_is_path(const char *path);
/* Checks the ndt7 parts of an upgrade to an ndt7 path: subprotocol and query string.
 * Returns 0 to go on, or 1 after sending a 400 and logging why. */
int ndt7_confirm_upgrade(struct lws *wsi, const char *peer);
/* Ends every ndt7 test of this worker early: a last measurement, then close 1001. */
void ndt7_stop_all(struct worker *w);

#endif
