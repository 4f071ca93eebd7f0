/* The legacy /ws protocol: every text message is answered with one binary message of
 * --payload-size random bytes.
 *
 * The payload goes out as fragments of one message (first frame binary without FIN, then
 * continuations) so the server's pings can go out between them. Requests that arrive during
 * a payload wait in a bounded queue. The heartbeat is ours, not lws' validity policy: a ping
 * every --heartbeat-interval, and a client is dropped after --client-timeout without a sign
 * of life. A pong, a received frame, or a fragment that went out all count as life, because
 * a slow reader's pongs can wait behind megabytes already queued to it. */
#include "server.h"
#include "../core/log.h"

#include <string.h>
#include <sys/socket.h>

enum ws_close {
    WS_CLOSE_NORMAL = 1000,
    WS_CLOSE_GOING_AWAY = 1001,
    WS_CLOSE_UNSUPPORTED = 1003,
    WS_CLOSE_ABNORMAL = 1006, /* never sent: reported when the connection just ended */
    WS_CLOSE_POLICY = 1008,
    WS_CLOSE_TOO_BIG = 1009,
};

struct ws_session {
    struct lws *wsi;
    struct lws_dll2 list; /* in worker->ws_sessions */
    lws_sorted_usec_list_t sul_ping;
    lws_sorted_usec_list_t sul_timeout;
    uint64_t start_us;
    uint64_t last_alive_us;
    uint64_t message_bytes; /* of the text message being received */
    uint64_t bytes_sent;
    uint64_t bytes_received;
    uint32_t requests;
    uint32_t pending; /* requests not yet fully answered, the one being sent included */
    size_t next_fragment;
    uint32_t ping_count;
    int sending;
    int want_ping;
    int stopping;
    int close_code; /* what the log line reports; 0 while open */
    const char *close_note;
};

size_t ws_legacy_session_size(void)
{
    return sizeof(struct ws_session);
}

static void ping_due(lws_sorted_usec_list_t *sul)
{
    struct ws_session *s = lws_container_of(sul, struct ws_session, sul_ping);
    struct worker *w = worker_of(s->wsi);

    s->want_ping = 1;
    lws_callback_on_writable(s->wsi);
    lws_sul_schedule(w->context, 0, &s->sul_ping, ping_due,
                     (lws_usec_t)w->cfg->heartbeat_interval_ms * LWS_US_PER_MS);
}

static void timeout_due(lws_sorted_usec_list_t *sul)
{
    struct ws_session *s = lws_container_of(sul, struct ws_session, sul_timeout);
    struct worker *w = worker_of(s->wsi);
    uint64_t timeout_us = (uint64_t)w->cfg->client_timeout_ms * 1000u;
    uint64_t silent_us = now_us() - s->last_alive_us;

    if (silent_us < timeout_us) {
        lws_sul_schedule(w->context, 0, &s->sul_timeout, timeout_due,
                         (lws_usec_t)(timeout_us - silent_us));
        return;
    }

    /* A close frame would wait behind the data queued to a client that stopped reading, so
     * the connection is cut at the TCP level. */
    s->close_code = WS_CLOSE_ABNORMAL;
    s->close_note = "dropped: no pong within --client-timeout";
    shutdown(lws_get_socket_fd(lws_get_network_wsi(s->wsi)), SHUT_RDWR);
    lws_set_timeout(s->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
}

static void mark_alive(struct ws_session *s)
{
    s->last_alive_us = now_us();
}

static int close_with(struct lws *wsi, struct ws_session *s, int code, const char *reason)
{
    s->close_code = code;
    s->close_note = reason;
    lws_close_reason(wsi, (enum lws_close_status)code, (unsigned char *)reason, strlen(reason));
    return -1;
}

static void on_established(struct lws *wsi, struct ws_session *s)
{
    struct worker *w = worker_of(wsi);

    memset(s, 0, sizeof(*s));
    s->wsi = wsi;
    s->start_us = now_us();
    s->last_alive_us = s->start_us;
    lws_dll2_add_tail(&s->list, &w->ws_sessions);
    lws_sul_schedule(w->context, 0, &s->sul_ping, ping_due,
                     (lws_usec_t)w->cfg->heartbeat_interval_ms * LWS_US_PER_MS);
    lws_sul_schedule(w->context, 0, &s->sul_timeout, timeout_due,
                     (lws_usec_t)w->cfg->client_timeout_ms * LWS_US_PER_MS);
    if (w->stopping) {
        s->stopping = 1;
        lws_callback_on_writable(wsi);
    }
}

static int on_receive(struct lws *wsi, struct ws_session *s, size_t len)
{
    struct worker *w = worker_of(wsi);

    s->bytes_received += len;
    mark_alive(s);
    if (lws_frame_is_binary(wsi))
        return close_with(wsi, s, WS_CLOSE_UNSUPPORTED, "binary messages are not accepted");

    /* The rest of the frame is announced in its header: refuse it before it arrives. */
    s->message_bytes += len;
    if (s->message_bytes + lws_remaining_packet_payload(wsi) > w->cfg->ws_max_message_bytes)
        return close_with(wsi, s, WS_CLOSE_TOO_BIG, "message over the size limit");
    if (!lws_is_final_fragment(wsi) || lws_remaining_packet_payload(wsi) > 0)
        return 0;

    /* A whole text message arrived: it is one request. */
    s->message_bytes = 0;
    s->requests++;
    s->pending++;
    if (s->pending - (uint32_t)s->sending > w->cfg->max_queued_requests)
        return close_with(wsi, s, WS_CLOSE_POLICY, "too many queued requests");
    if (s->stopping)
        return close_with(wsi, s, WS_CLOSE_GOING_AWAY, "server is stopping");
    lws_callback_on_writable(wsi);
    return 0;
}

static int send_ping(struct lws *wsi, struct ws_session *s)
{
    uint8_t buf[LWS_PRE + 4];

    s->want_ping = 0;
    s->ping_count++;
    memcpy(buf + LWS_PRE, &s->ping_count, 4);
    if (lws_write(wsi, buf + LWS_PRE, 4, LWS_WRITE_PING) < 0)
        return -1;
    return 0;
}

/* Sends the next fragment of the payload being answered. */
static int send_fragment(struct lws *wsi, struct ws_session *s)
{
    struct worker *w = worker_of(wsi);
    const struct payload *p = w->payload;
    size_t len;
    uint8_t *fragment;
    int flags, last;

    if (!s->sending) {
        s->sending = 1;
        s->next_fragment = 0;
        limits_transfer_add(w->limits, w->index, 1);
    }

    fragment = payload_fragment(p, s->next_fragment, &len);
    last = s->next_fragment + 1 == p->fragment_count;
    flags = s->next_fragment == 0 ? LWS_WRITE_BINARY : LWS_WRITE_CONTINUATION;
    if (!last)
        flags |= LWS_WRITE_NO_FIN;
    if (lws_write(wsi, fragment, len, (enum lws_write_protocol)flags) < 0)
        return -1;

    /* lws buffers any unsent rest itself and asks for no more until it is flushed, so a
     * fragment accepted here means the client keeps reading. */
    mark_alive(s);
    s->bytes_sent += len;
    s->next_fragment++;
    if (last) {
        s->sending = 0;
        s->pending--;
        limits_transfer_add(w->limits, w->index, -1);
    }
    return 0;
}

static int on_writeable(struct lws *wsi, struct ws_session *s)
{
    if (s->want_ping) {
        if (send_ping(wsi, s) != 0)
            return -1;
    } else if (s->pending > 0) {
        if (send_fragment(wsi, s) != 0)
            return -1;
    } else if (s->stopping) {
        return close_with(wsi, s, WS_CLOSE_GOING_AWAY, "server is stopping");
    }

    if (s->want_ping || s->pending > 0 || s->stopping)
        lws_callback_on_writable(wsi);
    return 0;
}

static void on_closed(struct lws *wsi, struct ws_session *s)
{
    struct worker *w = worker_of(wsi);
    struct conn *c = conn_of(wsi);

    lws_sul_cancel(&s->sul_ping);
    lws_sul_cancel(&s->sul_timeout);
    lws_dll2_remove(&s->list);
    if (s->sending) {
        s->sending = 0;
        limits_transfer_add(w->limits, w->index, -1);
    }
    if (s->close_code == 0) {
        s->close_code = WS_CLOSE_ABNORMAL;
        s->close_note = "connection ended without a close frame";
    }
    log_info("ws",
             "%s /ws session ended: %u requests, %llu bytes sent, %llu bytes received, "
             "%.0f ms, close %d (%s)",
             c ? c->peer : "?", s->requests, (unsigned long long)s->bytes_sent,
             (unsigned long long)s->bytes_received, (double)(now_us() - s->start_us) / 1000.0,
             s->close_code, s->close_note);
}

/* Records the client's close code (first two bytes of the close payload) for the log. */
static void on_peer_close(struct ws_session *s, const uint8_t *in, size_t len)
{
    s->close_code = ws_close_code_of(in, len);
    s->close_note = "closed by the client";
}

int ws_legacy_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                       size_t len)
{
    struct ws_session *s = user;

    switch (reason) {
    case LWS_CALLBACK_ESTABLISHED:
        on_established(wsi, s);
        return 0;
    case LWS_CALLBACK_RECEIVE:
        return on_receive(wsi, s, len);
    case LWS_CALLBACK_RECEIVE_PONG:
        mark_alive(s);
        return 0;
    case LWS_CALLBACK_SERVER_WRITEABLE:
        return on_writeable(wsi, s);
    case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
        on_peer_close(s, in, len);
        return 0;
    case LWS_CALLBACK_CLOSED:
        on_closed(wsi, s);
        return 0;
    default:
        return 0;
    }
}

static int stop_session(struct lws_dll2 *d, void *user)
{
    struct ws_session *s = lws_container_of(d, struct ws_session, list);

    (void)user;
    s->stopping = 1;
    lws_callback_on_writable(s->wsi);
    return 0;
}

void ws_legacy_stop_all(struct worker *w)
{
    lws_dll2_foreach_safe(&w->ws_sessions, NULL, stop_session);
}
