/* /api/v1/latency: a WebSocket that echoes each small message at once, for idle latency and
 * for loaded latency (probes on their own connection while a transfer runs).
 *
 * A probe is a text or binary message of at most LATENCY_MAX_MESSAGE_BYTES; the echo has the
 * same type and payload. Echoes wait in a short queue while the socket is busy, and a full
 * queue pauses reading. A client may
 * send at most LATENCY_MAX_MESSAGES_PER_SECOND; faster probing tells nothing more about the
 * link and only loads it, so it is closed with 1008. A connection without a probe for
 * --idle-timeout seconds is closed. */
#include "server.h"
#include "../core/log.h"

#include <string.h>

#define LATENCY_MAX_MESSAGE_BYTES       256
#define LATENCY_QUEUE_LENGTH            16
#define LATENCY_MAX_MESSAGES_PER_SECOND 200

struct latency_echo {
    uint8_t data[LWS_PRE + LATENCY_MAX_MESSAGE_BYTES];
    size_t len;
    int binary;
};

struct latency_session {
    struct latency_echo queue[LATENCY_QUEUE_LENGTH];
    unsigned head, count;
    uint8_t partial[LATENCY_MAX_MESSAGE_BYTES]; /* a message that arrives in pieces */
    size_t partial_len;
    uint64_t start_us;
    uint64_t window_start_us;
    unsigned window_messages;
    uint64_t messages;
    int close_code;
    const char *close_note;
};

size_t ws_latency_session_size(void)
{
    return sizeof(struct latency_session);
}

static int close_with(struct lws *wsi, struct latency_session *s, int code, const char *reason)
{
    s->close_code = code;
    s->close_note = reason;
    lws_close_reason(wsi, (enum lws_close_status)code, (unsigned char *)reason, strlen(reason));
    return -1;
}

/* Counts a probe against the per-second budget; returns 0, or -1 when over it. */
static int take_rate_token(struct latency_session *s)
{
    uint64_t now = now_us();

    if (now - s->window_start_us >= 1000000u) {
        s->window_start_us = now;
        s->window_messages = 0;
    }
    return ++s->window_messages > LATENCY_MAX_MESSAGES_PER_SECOND ? -1 : 0;
}

static int on_receive(struct lws *wsi, struct latency_session *s, const uint8_t *in, size_t len)
{
    struct latency_echo *echo;

    if (s->partial_len + len > LATENCY_MAX_MESSAGE_BYTES ||
        lws_remaining_packet_payload(wsi) > LATENCY_MAX_MESSAGE_BYTES - s->partial_len - len)
        return close_with(wsi, s, 1009, "probe over 256 bytes");
    memcpy(s->partial + s->partial_len, in, len);
    s->partial_len += len;
    if (!lws_is_final_fragment(wsi) || lws_remaining_packet_payload(wsi) > 0)
        return 0;

    if (take_rate_token(s) != 0)
        return close_with(wsi, s, 1008, "more than 200 probes per second");

    echo = &s->queue[(s->head + s->count) % LATENCY_QUEUE_LENGTH];
    memcpy(echo->data + LWS_PRE, s->partial, s->partial_len);
    echo->len = s->partial_len;
    echo->binary = lws_frame_is_binary(wsi);
    s->count++;
    s->partial_len = 0;
    s->messages++;

    /* A full queue stops reading until an echo went out, so a burst waits in the socket. */
    if (s->count == LATENCY_QUEUE_LENGTH)
        lws_rx_flow_control(wsi, 0);

    lws_set_timeout(wsi, PENDING_TIMEOUT_USER_OK, (int)worker_of(wsi)->cfg->idle_timeout_s);
    lws_callback_on_writable(wsi);
    return 0;
}

static int on_writeable(struct lws *wsi, struct latency_session *s)
{
    struct latency_echo *echo;

    if (s->count == 0)
        return 0;
    echo = &s->queue[s->head];
    if (lws_write(wsi, echo->data + LWS_PRE, echo->len,
                  echo->binary ? LWS_WRITE_BINARY : LWS_WRITE_TEXT) < 0)
        return -1;
    s->head = (s->head + 1) % LATENCY_QUEUE_LENGTH;
    if (s->count-- == LATENCY_QUEUE_LENGTH)
        lws_rx_flow_control(wsi, 1);
    if (s->count > 0)
        lws_callback_on_writable(wsi);
    return 0;
}

static void on_closed(struct lws *wsi, struct latency_session *s)
{
    struct conn *c = conn_of(wsi);

    if (s->close_code == 0) {
        s->close_code = 1006;
        s->close_note = "connection ended without a close frame";
    }
    log_info("ws", "%s /api/v1/latency session ended: %llu probes, %.0f ms, close %d (%s)",
             c ? c->peer : "?", (unsigned long long)s->messages,
             (double)(now_us() - s->start_us) / 1000.0, s->close_code, s->close_note);
}

int ws_latency_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                        size_t len)
{
    struct latency_session *s = user;

    switch (reason) {
    case LWS_CALLBACK_ESTABLISHED:
        memset(s, 0, sizeof(*s));
        s->start_us = now_us();
        s->window_start_us = s->start_us;
        lws_set_timeout(wsi, PENDING_TIMEOUT_USER_OK, (int)worker_of(wsi)->cfg->idle_timeout_s);
        return 0;
    case LWS_CALLBACK_RECEIVE:
        return on_receive(wsi, s, in, len);
    case LWS_CALLBACK_SERVER_WRITEABLE:
        return on_writeable(wsi, s);
    case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
        s->close_code = ws_close_code_of(in, len);
        s->close_note = "closed by the client";
        return 0;
    case LWS_CALLBACK_CLOSED:
        on_closed(wsi, s);
        return 0;
    default:
        return 0;
    }
}
