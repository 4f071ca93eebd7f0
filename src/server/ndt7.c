/* The ndt7 protocol (M-Lab ndt7 specification v0.11): /ndt/v7/download and /ndt/v7/upload.
 *
 * Both paths share one lws protocol, bound by the subprotocol net.measurementlab.ndt.v7;
 * the path is copied while the request headers still exist and selects the test. A test
 * runs 10 s from the end of the handshake, then the server sends a last measurement and
 * closes with 1000. A connection still open 15 s after the handshake is cut.
 *
 * Download: binary messages of random bytes from the shared payload, 8 KiB first, doubled
 * whenever a message is at most 1/16 of the bytes sent so far, up to 1 MiB. A message is
 * sent as frames that each start at a payload fragment, so lws writes the frame header
 * into the fragment's headroom and no client needs a copy. Upload: binary messages of up
 * to 16 MiB are counted and dropped. In both tests the server sends a measurement (JSON
 * text) and a ping at random intervals averaging 250 ms. */
#include "server.h"
#include "../core/log.h"
#include "../core/tcpinfo.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <arpa/inet.h>

#define NDT7_DOWNLOAD_PATH "/ndt/v7/download"
#define NDT7_UPLOAD_PATH   "/ndt/v7/upload"

#define NDT7_MAX_QUERY_BYTES     4096
#define NDT7_MAX_MESSAGE_BYTES   (1u << 24)
#define NDT7_FIRST_MESSAGE_BYTES (1u << 13)
#define NDT7_MAX_SENT_MESSAGE    (1u << 20)
#define NDT7_SCALING_FRACTION    16
/* early_exit=250 ends a download once the kernel reports 250 MB acknowledged, as in
 * ndt-server; it accepts no other value. */
#define NDT7_EARLY_EXIT_VALUE "250"
#define NDT7_EARLY_EXIT_BYTES 250000000u

#define NDT7_TEST_US       (10 * LWS_US_PER_SEC)
#define NDT7_HARD_LIMIT_US (15 * LWS_US_PER_SEC)
/* Measurement intervals: exponential with this mean, clamped, as ndt-server draws them. */
#define NDT7_MEASURE_MEAN_US (250 * LWS_US_PER_MS)
#define NDT7_MEASURE_MIN_US  (25 * LWS_US_PER_MS)
#define NDT7_MEASURE_MAX_US  (625 * LWS_US_PER_MS)

enum ndt7_close {
    NDT7_CLOSE_NORMAL = 1000,
    NDT7_CLOSE_GOING_AWAY = 1001,
    NDT7_CLOSE_UNSUPPORTED = 1003,
    NDT7_CLOSE_ABNORMAL = 1006, /* never sent: reported when the connection just ended */
    NDT7_CLOSE_TOO_BIG = 1009,
};

enum ndt7_test { NDT7_DOWNLOAD, NDT7_UPLOAD };

struct ndt7_session {
    struct lws *wsi;
    struct lws_dll2 list; /* in worker->ndt7_sessions */
    lws_sorted_usec_list_t sul_measure;
    lws_sorted_usec_list_t sul_end;
    lws_sorted_usec_list_t sul_hard_limit;
    enum ndt7_test test;
    uint64_t early_exit_bytes; /* 0: no early exit */
    uint64_t start_us;         /* end of the handshake */
    uint64_t last_data_us;     /* last binary bytes sent or received */
    uint64_t bytes;            /* binary message bytes sent (download) or received (upload) */
    uint64_t message_bytes;    /* of the message being received */
    uint32_t send_size_bytes;  /* download: size of the message being sent */
    uint32_t send_done_bytes;  /* download: bytes of it already written */
    size_t next_fragment;
    uint32_t min_rtt_us; /* from the last TCP_INFO sample */
    int established;
    int want_measurement;
    int want_ping;
    int closing;
    int closing_code; /* the code the close frame will carry once closing */
    int close_code;   /* what the log line reports; 0 while open */
    const char *close_note;
    char server[64];     /* local address, "192.0.2.1:8080" or "[2001:db8::1]:8080" */
    char start_time[48]; /* UTC, RFC 3339 with microseconds */
};

size_t ndt7_session_size(void)
{
    return sizeof(struct ndt7_session);
}

int ndt7_is_path(const char *path)
{
    return strcmp(path, NDT7_DOWNLOAD_PATH) == 0 || strcmp(path, NDT7_UPLOAD_PATH) == 0;
}

static const char *test_name(const struct ndt7_session *s)
{
    return s->test == NDT7_DOWNLOAD ? "download" : "upload";
}

/* Finds the first query parameter `name` (lws has split the query at '&' and decoded it).
 * Returns 1 with its value in `value` (empty for a key without '='), 0 if absent, or -1
 * if the value does not fit. */
static int find_query_value(struct lws *wsi, const char *name, char *value, size_t size)
{
    char arg[NDT7_MAX_QUERY_BYTES + 1];
    size_t name_len = strlen(name);

    for (int i = 0; lws_hdr_copy_fragment(wsi, arg, sizeof(arg), WSI_TOKEN_HTTP_URI_ARGS, i) >= 0;
         i++) {
        if (strncmp(arg, name, name_len) != 0 || (arg[name_len] != '=' && arg[name_len] != '\0'))
            continue;
        const char *found = arg[name_len] == '=' ? arg + name_len + 1 : "";
        if (strlen(found) >= size)
            return -1;
        strcpy(value, found);
        return 1;
    }
    return 0;
}

static int reject_upgrade(struct lws *wsi, const char *peer, const char *reason)
{
    log_warn("http", "%s upgrade rejected with 400: %s", peer, reason);
    lws_return_http_status(wsi, HTTP_STATUS_BAD_REQUEST, NULL);
    return 1;
}

int ndt7_confirm_upgrade(struct lws *wsi, const char *peer)
{
    char subprotocol[64], early_exit[8];
    int found;

    /* An exact match, because lws binds a list to its first known name, which could be
     * another of our protocols. */
    if (lws_hdr_copy(wsi, subprotocol, sizeof(subprotocol), WSI_TOKEN_PROTOCOL) <= 0 ||
        strcmp(subprotocol, NDT7_SUBPROTOCOL) != 0)
        return reject_upgrade(wsi, peer, "ndt7 needs the subprotocol " NDT7_SUBPROTOCOL);
    /* NOTE: lws has decoded %XX escapes by now, so this limits the decoded length. */
    if (lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_URI_ARGS) > NDT7_MAX_QUERY_BYTES)
        return reject_upgrade(wsi, peer, "ndt7 query string over 4096 bytes");
    found = find_query_value(wsi, "early_exit", early_exit, sizeof(early_exit));
    if (found != 0 && (found < 0 || strcmp(early_exit, NDT7_EARLY_EXIT_VALUE) != 0))
        return reject_upgrade(wsi, peer, "invalid early_exit value; only 250 is accepted");
    return 0;
}

/* Appends src[0..len) to dst, escaping control characters, DEL and backslashes. */
static size_t append_escaped(char *dst, size_t at, size_t size, const char *src, size_t len)
{
    for (size_t i = 0; i < len && at + 5 < size; i++) {
        unsigned char c = (unsigned char)src[i];
        if (c < 0x20 || c == 0x7f || c == '\\')
            at += (size_t)snprintf(dst + at, size - at, "\\x%02x", c);
        else
            dst[at++] = (char)c;
    }
    dst[at] = '\0';
    return at;
}

/* Logs the query string once as the client's metadata, parameters joined by '&'. */
static void log_client_metadata(struct lws *wsi, const struct ndt7_session *s)
{
    char arg[NDT7_MAX_QUERY_BYTES + 1], text[4 * NDT7_MAX_QUERY_BYTES + 8];
    struct conn *c = conn_of(wsi);
    size_t at = 0;
    int n;

    text[0] = '\0';
    for (int i = 0;
         (n = lws_hdr_copy_fragment(wsi, arg, sizeof(arg), WSI_TOKEN_HTTP_URI_ARGS, i)) >= 0; i++) {
        if (i > 0)
            at = append_escaped(text, at, sizeof(text), "&", 1);
        at = append_escaped(text, at, sizeof(text), arg, (size_t)n);
    }
    log_info("ndt7", "%s %s client metadata: %s", c ? c->peer : "?", test_name(s),
             at > 0 ? text : "(none)");
}

/* Binds the connection to its test while the request headers still exist. */
static int on_filter(struct lws *wsi, struct ndt7_session *s)
{
    char path[64], early_exit[8];

    if (lws_hdr_copy(wsi, path, sizeof(path), WSI_TOKEN_GET_URI) <= 0 || !ndt7_is_path(path))
        return 1; /* http_confirm_upgrade() lets only the ndt7 paths choose this protocol */
    s->test = strcmp(path, NDT7_DOWNLOAD_PATH) == 0 ? NDT7_DOWNLOAD : NDT7_UPLOAD;
    if (s->test == NDT7_DOWNLOAD &&
        find_query_value(wsi, "early_exit", early_exit, sizeof(early_exit)) > 0)
        s->early_exit_bytes = NDT7_EARLY_EXIT_BYTES;
    log_client_metadata(wsi, s);
    return 0;
}

static void format_local_address(int fd, char *buf, size_t size)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    char host[INET6_ADDRSTRLEN] = "?";

    snprintf(buf, size, "?");
    if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0)
        return;
    if (ss.ss_family == AF_INET) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)&ss;
        inet_ntop(AF_INET, &sin->sin_addr, host, sizeof(host));
        snprintf(buf, size, "%s:%u", host, ntohs(sin->sin_port));
    } else if (ss.ss_family == AF_INET6) {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&ss;
        inet_ntop(AF_INET6, &sin6->sin6_addr, host, sizeof(host));
        snprintf(buf, size, "[%s]:%u", host, ntohs(sin6->sin6_port));
    }
}

static void format_start_time(char *buf, size_t size)
{
    struct timespec ts;
    struct tm tm;
    char seconds[24];

    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    strftime(seconds, sizeof(seconds), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf, size, "%s.%06dZ", seconds, (int)(ts.tv_nsec / 1000));
}

static int socket_of(struct lws *wsi)
{
    return lws_get_socket_fd(lws_get_network_wsi(wsi));
}

static lws_usec_t next_measurement_delay_us(void)
{
    uint32_t r;
    double u, delay_us;

    if (getrandom(&r, sizeof(r), GRND_NONBLOCK) != (ssize_t)sizeof(r))
        r = (uint32_t)now_us();
    u = ((double)r + 1.0) / 4294967296.0; /* in (0, 1] */
    delay_us = -log(u) * (double)NDT7_MEASURE_MEAN_US;
    if (delay_us < NDT7_MEASURE_MIN_US)
        return NDT7_MEASURE_MIN_US;
    if (delay_us > NDT7_MEASURE_MAX_US)
        return NDT7_MEASURE_MAX_US;
    return (lws_usec_t)delay_us;
}

static void measurement_due(lws_sorted_usec_list_t *sul)
{
    struct ndt7_session *s = lws_container_of(sul, struct ndt7_session, sul_measure);

    if (s->closing)
        return;
    s->want_measurement = 1;
    lws_callback_on_writable(s->wsi);
}

/* Schedules the next measurement from the time this one went out, so that measurements
 * delayed behind a download message still go out at least 25 ms apart. */
static void schedule_measurement(struct ndt7_session *s)
{
    if (s->closing)
        return;
    lws_sul_schedule(lws_get_context(s->wsi), 0, &s->sul_measure, measurement_due,
                     next_measurement_delay_us());
}

static void start_closing(struct ndt7_session *s, int code, const char *note)
{
    if (s->closing)
        return;
    s->closing = 1;
    s->closing_code = code;
    s->close_note = note;
    s->want_measurement = 1; /* the last one, with the final counts */
    lws_sul_cancel(&s->sul_measure);
    lws_callback_on_writable(s->wsi);
}

static void test_time_over(lws_sorted_usec_list_t *sul)
{
    struct ndt7_session *s = lws_container_of(sul, struct ndt7_session, sul_end);

    start_closing(s, NDT7_CLOSE_NORMAL, "test complete");
}

/* Cuts a connection that is still open at the hard limit. A close frame could wait behind
 * data the client does not read, so the TCP connection is shut down instead. */
static void hard_limit_reached(lws_sorted_usec_list_t *sul)
{
    struct ndt7_session *s = lws_container_of(sul, struct ndt7_session, sul_hard_limit);

    s->close_code = NDT7_CLOSE_ABNORMAL;
    s->close_note = "dropped: still open 15 s after the handshake";
    shutdown(socket_of(s->wsi), SHUT_RDWR);
    lws_set_timeout(s->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
}

static void on_established(struct lws *wsi, struct ndt7_session *s)
{
    struct worker *w = worker_of(wsi);
    struct lws_context *context = lws_get_context(wsi);

    s->wsi = wsi;
    s->established = 1;
    s->start_us = now_us();
    s->last_data_us = s->start_us;
    s->send_size_bytes = NDT7_FIRST_MESSAGE_BYTES;
    format_start_time(s->start_time, sizeof(s->start_time));
    format_local_address(socket_of(wsi), s->server, sizeof(s->server));
    lws_dll2_add_tail(&s->list, &w->ndt7_sessions);
    limits_transfer_add(w->limits, w->index, 1);

    schedule_measurement(s);
    lws_sul_schedule(context, 0, &s->sul_end, test_time_over, NDT7_TEST_US);
    lws_sul_schedule(context, 0, &s->sul_hard_limit, hard_limit_reached, NDT7_HARD_LIMIT_US);
    if (s->test == NDT7_DOWNLOAD)
        lws_callback_on_writable(wsi);
}

static int close_with(struct lws *wsi, struct ndt7_session *s, int code, const char *reason)
{
    s->close_code = code;
    if (s->close_note == NULL || code != NDT7_CLOSE_NORMAL)
        s->close_note = reason;
    lws_close_reason(wsi, (enum lws_close_status)code, (unsigned char *)reason, strlen(reason));
    return -1;
}

static int on_receive(struct lws *wsi, struct ndt7_session *s, size_t len)
{
    int binary = lws_frame_is_binary(wsi);

    /* The rest of the frame is announced in its header: refuse it before it arrives. */
    s->message_bytes += len;
    if (s->message_bytes + lws_remaining_packet_payload(wsi) > NDT7_MAX_MESSAGE_BYTES)
        return close_with(wsi, s, NDT7_CLOSE_TOO_BIG, "message over 16 MiB");
    if (binary && s->test == NDT7_DOWNLOAD)
        return close_with(wsi, s, NDT7_CLOSE_UNSUPPORTED,
                          "binary messages are not accepted during a download");
    if (binary) {
        s->bytes += len;
        s->last_data_us = now_us();
    }
    /* Text messages are the client's measurements, which the server does not use. */
    if (lws_is_final_fragment(wsi) && lws_remaining_packet_payload(wsi) == 0)
        s->message_bytes = 0;
    return 0;
}

/* Builds a measurement message; returns NULL when out of memory. */
static json_t *build_measurement(struct lws *wsi, struct ndt7_session *s)
{
    struct conn *c = conn_of(wsi);
    uint64_t elapsed_us = now_us() - s->start_us;
    struct tcpinfo_summary summary;
    json_t *root, *tcp, *bbr;

    root = json_pack("{s:{s:s, s:s, s:s}, s:s, s:s, s:{s:I, s:I}}", "ConnectionInfo", "Client",
                     c ? c->peer : "?", "Server", s->server, "StartTime", s->start_time, "Origin",
                     "server", "Test", test_name(s), "AppInfo", "ElapsedTime",
                     (json_int_t)elapsed_us, "NumBytes", (json_int_t)s->bytes);
    if (root == NULL)
        return NULL;
    if (tcpinfo_sample(socket_of(wsi), elapsed_us, &summary, &tcp, &bbr) != 0)
        return root;

    json_object_set_new(root, "TCPInfo", tcp);
    if (bbr != NULL)
        json_object_set_new(root, "BBRInfo", bbr);
    s->min_rtt_us = summary.min_rtt_us;
    if (s->early_exit_bytes > 0 && summary.bytes_acked >= s->early_exit_bytes)
        start_closing(s, NDT7_CLOSE_NORMAL, "early exit: 250 MB acknowledged");
    return root;
}

static int send_measurement(struct lws *wsi, struct ndt7_session *s)
{
    json_t *root = build_measurement(wsi, s);
    char *text = root ? json_dumps(root, JSON_COMPACT) : NULL;
    size_t len = text ? strlen(text) : 0;
    uint8_t *buf = text ? malloc(LWS_PRE + len) : NULL;
    int rc = 0;

    s->want_measurement = 0;
    if (buf != NULL) {
        memcpy(buf + LWS_PRE, text, len);
        rc = lws_write(wsi, buf + LWS_PRE, len, LWS_WRITE_TEXT) < 0 ? -1 : 0;
    } else {
        log_error("ndt7", "out of memory for a measurement");
    }
    free(buf);
    free(text);
    json_decref(root);
    s->want_ping = !s->closing;
    schedule_measurement(s);
    return rc;
}

/* Sends the server's monotonic clock in microseconds, as decimal text. */
static int send_ping(struct lws *wsi, struct ndt7_session *s)
{
    uint8_t buf[LWS_PRE + 24];
    int len = snprintf((char *)buf + LWS_PRE, 24, "%llu", (unsigned long long)now_us());

    s->want_ping = 0;
    return lws_write(wsi, buf + LWS_PRE, (size_t)len, LWS_WRITE_PING) < 0 ? -1 : 0;
}

/* Sends the next frame of the download message being sent, from the start of a payload
 * fragment, and picks the next message size once the message is complete. */
static int send_frame(struct lws *wsi, struct ndt7_session *s)
{
    const struct payload *p = worker_of(wsi)->payload;
    size_t len;
    uint8_t *data = payload_fragment(p, s->next_fragment, &len);
    uint32_t rest = s->send_size_bytes - s->send_done_bytes;
    int flags = s->send_done_bytes == 0 ? LWS_WRITE_BINARY : LWS_WRITE_CONTINUATION;

    if (len > rest)
        len = rest;
    if (len < rest)
        flags |= LWS_WRITE_NO_FIN;
    if (lws_write(wsi, data, len, (enum lws_write_protocol)flags) < 0)
        return -1;

    s->next_fragment = (s->next_fragment + 1) % payload_stream_fragments(p);
    s->send_done_bytes += (uint32_t)len;
    s->bytes += len;
    s->last_data_us = now_us();
    if (s->send_done_bytes < s->send_size_bytes)
        return 0;
    s->send_done_bytes = 0;
    if (s->send_size_bytes < NDT7_MAX_SENT_MESSAGE &&
        s->send_size_bytes <= s->bytes / NDT7_SCALING_FRACTION)
        s->send_size_bytes *= 2;
    return 0;
}

static int on_writeable(struct lws *wsi, struct ndt7_session *s)
{
    /* Text and close frames wait for the end of a message; a ping may go between frames. */
    int between_messages = s->send_done_bytes == 0;
    int rc = 0;

    if (s->want_measurement && between_messages)
        rc = send_measurement(wsi, s);
    else if (s->want_ping)
        rc = send_ping(wsi, s);
    else if (s->closing && between_messages)
        return close_with(wsi, s, s->closing_code, s->close_note);
    else if (s->test == NDT7_DOWNLOAD)
        rc = send_frame(wsi, s);
    if (rc != 0)
        return -1;

    if (s->want_measurement || s->want_ping || s->closing || s->test == NDT7_DOWNLOAD)
        lws_callback_on_writable(wsi);
    return 0;
}

static void log_test_end(struct lws *wsi, struct ndt7_session *s)
{
    struct conn *c = conn_of(wsi);
    uint64_t duration_us = s->last_data_us - s->start_us;
    double rate_mbps = duration_us > 0 ? (double)s->bytes * 8.0 / (double)duration_us : 0.0;

    log_info("ndt7",
             "%s ndt7 %s ended: %llu bytes %s in %.0f ms, %.1f Mbit/s, MinRTT %.3f ms, "
             "close %d (%s)",
             c ? c->peer : "?", test_name(s), (unsigned long long)s->bytes,
             s->test == NDT7_DOWNLOAD ? "sent" : "received", (double)duration_us / 1000.0,
             rate_mbps, (double)s->min_rtt_us / 1000.0, s->close_code, s->close_note);
}

static void on_closed(struct lws *wsi, struct ndt7_session *s)
{
    struct worker *w = worker_of(wsi);

    if (!s->established)
        return;
    lws_sul_cancel(&s->sul_measure);
    lws_sul_cancel(&s->sul_end);
    lws_sul_cancel(&s->sul_hard_limit);
    lws_dll2_remove(&s->list);
    limits_transfer_add(w->limits, w->index, -1);
    if (s->close_code == 0) {
        s->close_code = NDT7_CLOSE_ABNORMAL;
        s->close_note = "connection ended without a close frame";
    }
    log_test_end(wsi, s);
}

/* Records the client's close code (first two bytes of the close payload) for the log. */
static void on_peer_close(struct ndt7_session *s, const uint8_t *in, size_t len)
{
    if (s->close_code != 0)
        return; /* the client answers the server's close */
    s->close_code = ws_close_code_of(in, len);
    s->close_note = "closed by the client";
}

int ndt7_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                  size_t len)
{
    struct ndt7_session *s = user;

    switch (reason) {
    case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
        return on_filter(wsi, s);
    case LWS_CALLBACK_ESTABLISHED:
        on_established(wsi, s);
        return 0;
    case LWS_CALLBACK_RECEIVE:
        return on_receive(wsi, s, len);
    case LWS_CALLBACK_SERVER_WRITEABLE:
        return on_writeable(wsi, s);
    case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
        on_peer_close(s, in, len);
        return 0;
    case LWS_CALLBACK_CLOSED:
        on_closed(wsi, s);
        return 0;
    case LWS_CALLBACK_HTTP_CONFIRM_UPGRADE:
        return http_confirm_upgrade(wsi, in ? (const char *)in : "");
    default:
        return 0;
    }
}

static int stop_session(struct lws_dll2 *d, void *user)
{
    struct ndt7_session *s = lws_container_of(d, struct ndt7_session, list);

    (void)user;
    start_closing(s, NDT7_CLOSE_GOING_AWAY, "server is stopping");
    return 0;
}

void ndt7_stop_all(struct worker *w)
{
    lws_dll2_foreach_safe(&w->ndt7_sessions, NULL, stop_session);
}
