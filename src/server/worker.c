/* One worker process: a libwebsockets context that accepts connections from the listening
 * sockets it shares with the other workers.
 *
 * The vhost does not listen itself. Each shared listening socket is adopted as a raw file
 * descriptor; when it turns readable the worker accepts until EAGAIN (bounded per wake-up so
 * one worker cannot take a whole burst) and hands each socket to lws as an HTTP connection. */
#include "server.h"
#include "../core/log.h"
#include "../core/tcpinfo.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define ACCEPTS_PER_WAKEUP 32
#define STOP_CHECK_US      (50 * LWS_US_PER_MS)
/* Time ndt7 tests get to close with 1001 once the grace period is over. */
#define NDT7_STOP_CLOSE_US (1 * LWS_US_PER_SEC)

static volatile sig_atomic_t stop_requested;
static struct lws_context *signal_context;

uint64_t now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void on_stop_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
    if (signal_context != NULL)
        lws_cancel_service(signal_context);
}

/* Fills conn->peer and conn->ip from an accepted peer address. */
static void describe_peer(const struct sockaddr_storage *ss, struct conn *c)
{
    char host[INET6_ADDRSTRLEN];

    memset(c->ip, 0, sizeof(c->ip));
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)ss;
        inet_ntop(AF_INET, &sin->sin_addr, host, sizeof(host));
        snprintf(c->peer, sizeof(c->peer), "%s:%u", host, ntohs(sin->sin_port));
        snprintf(c->host, sizeof(c->host), "%s", host);
        c->ip[10] = 0xff;
        c->ip[11] = 0xff;
        memcpy(c->ip + 12, &sin->sin_addr, 4);
    } else {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)ss;
        inet_ntop(AF_INET6, &sin6->sin6_addr, host, sizeof(host));
        snprintf(c->peer, sizeof(c->peer), "[%s]:%u", host, ntohs(sin6->sin6_port));
        snprintf(c->host, sizeof(c->host), "%s", host);
        memcpy(c->ip, &sin6->sin6_addr, 16);
    }
}

static void reject_at_capacity(int fd)
{
    static const char response[] = "HTTP/1.1 503 Service Unavailable\r\n"
                                   "Content-Type: text/plain\r\n"
                                   "Content-Length: 32\r\n"
                                   "Retry-After: 5\r\n"
                                   "Connection: close\r\n\r\n"
                                   "server at capacity, retry later\n";
    /* Best effort: the socket is new, so its send buffer has room for these bytes. */
    ssize_t n = send(fd, response, sizeof(response) - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
    (void)n;
    close(fd);
}

/* Uses --congestion, or BBR when the kernel offers it, for every connection: any of them
 * may carry a measurement, and the algorithm must be set before data flows. */
static void set_congestion(struct worker *w, int fd, const char *peer)
{
    const char *configured = w->cfg->congestion;
    int rc = tcpinfo_set_congestion(fd, configured ? configured : "bbr");

    if (rc != 0 && configured != NULL) {
        static struct log_rate rate;
        if (log_rate_allow(&rate, "server"))
            log_warn("server", "%s setting --congestion %s failed: %s", peer, configured,
                     strerror(-rc));
    }
}

static void accept_ready(struct worker *w, int listen_fd)
{
    for (int i = 0; i < ACCEPTS_PER_WAKEUP; i++) {
        struct sockaddr_storage ss;
        socklen_t ss_len = sizeof(ss);
        struct conn *c;
        struct lws *wsi;
        int one = 1;

        int fd = accept4(listen_fd, (struct sockaddr *)&ss, &ss_len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                log_error("server", "accept failed: %s", strerror(errno));
            return;
        }

        c = calloc(1, sizeof(*c));
        if (c == NULL) {
            log_error("server", "out of memory for a new connection");
            close(fd);
            continue;
        }
        describe_peer(&ss, c);

        if (w->stopping) {
            free(c);
            close(fd);
            continue;
        }
        if (limits_conn_acquire(w->limits, w->index) != 0) {
            static struct log_rate rate;
            if (log_rate_allow(&rate, "limits"))
                log_warn("limits", "%s rejected with 503: %u connections open (--max-connections)",
                         c->peer, w->cfg->max_connections);
            free(c);
            reject_at_capacity(fd);
            continue;
        }

        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        set_congestion(w, fd, c->peer);
        wsi = lws_adopt_socket_vhost(w->vhost, fd);
        if (wsi == NULL) {
            /* lws closes the descriptor when adoption fails. */
            log_error("server", "%s could not be adopted by libwebsockets", c->peer);
            limits_conn_release(w->limits, w->index);
            free(c);
            continue;
        }
        lws_set_opaque_user_data(wsi, c);
        log_debug("server", "%s connected", c->peer);
    }
}

static int accept_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                           size_t len)
{
    (void)user;
    (void)in;
    (void)len;

    if (reason == LWS_CALLBACK_RAW_RX_FILE)
        accept_ready(worker_of(wsi), lws_get_socket_fd(wsi));
    return 0;
}

void worker_release_conn(struct worker *w, struct conn *c)
{
    if (c->holds_ip_slot)
        limits_ip_release(w->limits, w->index, c->ip);
    limits_conn_release(w->limits, w->index);
    log_debug("server", "%s disconnected", c->peer);
    free(c);
}

static void report_alive(lws_sorted_usec_list_t *sul)
{
    struct worker *w = lws_container_of(sul, struct worker, sul_alive);

    limits_worker_alive(w->limits, w->index, now_us() / 1000u);
    lws_sul_schedule(w->context, 0, &w->sul_alive, report_alive,
                     (lws_usec_t)WORKER_ALIVE_INTERVAL_MS * LWS_US_PER_MS);
}

static void stop_check(lws_sorted_usec_list_t *sul)
{
    struct worker *w = lws_container_of(sul, struct worker, sul_stop);
    int sessions = w->ws_sessions.count + w->ndt7_sessions.count;

    /* ndt7 tests run 10 s, longer than the default grace: at its end they get a moment to
     * send their last measurement and close with 1001 instead of being cut. */
    if (w->ndt7_sessions.count > 0 && !w->ndt7_stopped && now_us() >= w->stop_deadline_us) {
        w->ndt7_stopped = 1;
        ndt7_stop_all(w);
        w->stop_deadline_us += NDT7_STOP_CLOSE_US;
    }
    if (sessions == 0 || now_us() >= w->stop_deadline_us) {
        if (sessions > 0)
            log_warn("server", "grace period over: closing %d WebSocket sessions", sessions);
        w->done = 1;
        lws_cancel_service(w->context);
        return;
    }
    lws_sul_schedule(w->context, 0, &w->sul_stop, stop_check, STOP_CHECK_US);
}

/* Stops accepting, lets running transfers finish until the grace period ends. */
void worker_check_stop(struct worker *w)
{
    if (!stop_requested || w->stopping)
        return;

    w->stopping = 1;
    for (int i = 0; i < w->listen_count; i++) {
        if (w->listen_wsi[i] != NULL)
            lws_set_timeout(w->listen_wsi[i], PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
    }
    ws_legacy_stop_all(w);
    w->stop_deadline_us = now_us() + (uint64_t)w->cfg->shutdown_grace_s * 1000000u;
    lws_sul_schedule(w->context, 0, &w->sul_stop, stop_check, 1);
}

void worker_install_signals(void)
{
    struct sigaction sa;

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_stop_signal;
    sigaction(SIGTERM, &sa, NULL);
    sa.sa_handler = SIG_IGN;
    /* The parent turns a terminal's Ctrl-C or hang-up into SIGTERM for the workers. */
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    sigaction(SIGPIPE, &sa, NULL);
    sa.sa_handler = SIG_DFL;
    sigaction(SIGCHLD, &sa, NULL);
}

/* Upgrades without a subprotocol go to the path router (ws_routes.c). */
static const struct lws_protocol_vhost_options router_default = {NULL, NULL, "default", ""};
static const struct lws_protocol_vhost_options vhost_options = {NULL, &router_default,
                                                                "linkspeed-ws", ""};

void worker_apply_tls(const struct config *cfg, struct lws_context_creation_info *info)
{
    if (cfg->tls_cert == NULL)
        return;
    info->options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
    info->ssl_cert_filepath = cfg->tls_cert;
    info->ssl_private_key_filepath = cfg->tls_key;
    /* HTTP/2 would put all of a browser's streams on one TCP connection and hide what each
     * stream's connection does. So it is offered only with --http2. */
    info->alpn = cfg->http2 ? "h2,http/1.1" : "http/1.1";
}

static int create_context(struct worker *w, struct lws_protocols *protocols)
{
    struct lws_context_creation_info info;

    memset(&info, 0, sizeof(info));
    info.port = CONTEXT_PORT_NO_LISTEN_SERVER;
    info.protocols = protocols;
    info.pvo = &vhost_options;
    info.user = w;
    info.options = LWS_SERVER_OPTION_VALIDATE_UTF8;
    info.count_threads = 1;
    /* Large buffers let one send() move a whole fragment; lws' defaults cap it near 4 KiB. */
    info.pt_serv_buf_size = 1024 * 1024;
    info.fd_limit_per_thread = w->cfg->max_connections + 256;
    info.timeout_secs = w->cfg->handshake_timeout_s;
    info.timeout_secs_ah_idle = w->cfg->handshake_timeout_s;
    info.keepalive_timeout = (int)w->cfg->idle_timeout_s;
    info.vhost_name = "linkspeed";
    /* lws' default of 4 KiB of headers is less than some browsers send with cookies. */
    info.max_http_header_data = 16384;

    worker_apply_tls(w->cfg, &info);

    w->context = lws_create_context(&info);
    if (w->context == NULL)
        return -1;
    w->vhost = lws_get_vhost_by_name(w->context, "linkspeed");
    if (w->vhost == NULL)
        return -1;
    return 0;
}

static int adopt_listeners(struct worker *w)
{
    for (int i = 0; i < w->listen_count; i++) {
        lws_sock_file_fd_type fd;

        fd.filefd = w->listen_fds[i];
        w->listen_wsi[i] = lws_adopt_descriptor_vhost(w->vhost, LWS_ADOPT_RAW_FILE_DESC, fd,
                                                      "linkspeed-accept", NULL);
        if (w->listen_wsi[i] == NULL) {
            log_error("server", "worker %d could not watch listening socket %d", w->index,
                      w->listen_fds[i]);
            return -1;
        }
    }
    return 0;
}

int worker_run(struct worker *w)
{
    char name[16];
    int status = 0;

    struct lws_protocols protocols[] = {
        {"http", http_callback, http_session_size(), 0, 0, NULL, 0},
        {"linkspeed-ws", ws_route_callback, ws_route_session_size(), 4096, 0, NULL,
         w->cfg->fragment_size_bytes},
        {NDT7_SUBPROTOCOL, ndt7_callback, ndt7_session_size(), NDT7_RX_BUFFER_BYTES, 0, NULL,
         w->cfg->fragment_size_bytes},
        {"linkspeed-accept", accept_callback, 0, 0, 0, NULL, 0},
        {NULL, NULL, 0, 0, 0, NULL, 0},
    };

    snprintf(name, sizeof(name), "w%d", w->index);
    log_set_process(name);
    prctl(PR_SET_PDEATHSIG, SIGTERM);

    lws_set_log_level(log_lws_mask(), log_lws_emit);
    if (create_context(w, protocols) != 0) {
        log_error("server", "worker %d could not create its libwebsockets context", w->index);
        return 1;
    }
    signal_context = w->context;
    if (stop_requested)
        lws_cancel_service(w->context);

    if (adopt_listeners(w) != 0) {
        status = 1;
    } else {
        log_debug("server", "worker %d serving", w->index);
        report_alive(&w->sul_alive);
        while (!w->done && lws_service(w->context, 0) >= 0) {
            if (stop_requested && !w->stopping)
                worker_check_stop(w);
        }
    }

    signal_context = NULL;
    lws_sul_cancel(&w->sul_stop);
    lws_sul_cancel(&w->sul_alive);
    lws_context_destroy(w->context);
    return status;
}
