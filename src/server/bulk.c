/* Bulk HTTP endpoints for measuring throughput, in the form Cloudflare's speed test uses:
 *
 *   GET /__down?bytes=N   N bytes from the shared random payload, exact Content-Length
 *   POST /__up            reads and counts the whole body, then returns the count
 *
 * Both count as a transfer for /healthz and take a --max-transfers-per-ip slot while they
 * run. The download is written straight from the payload fragments, whose header room lets
 * lws frame them, so no client gets a copy. */
#include "http.h"
#include "../core/log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

/* Largest HTTP/2 DATA frame a peer must accept (SETTINGS_MAX_FRAME_SIZE default). */
#define H2_CHUNK_BYTES 16384
/* Size of one read of a chunked /__up body from the socket, the same as lws' reads. */
#define UP_READ_BYTES (1024 * 1024)

static const char *const bulk_error_headers[] = {BULK_CORS_HEADERS, NULL};

/* Parses the bytes=N query argument: decimal digits only, at most `max`. Returns 0 or -1. */
static int parse_bytes_arg(struct lws *wsi, uint64_t max, uint64_t *out)
{
    char arg[48];
    char *end;
    unsigned long long parsed;
    const char *value = lws_get_urlarg_by_name(wsi, "bytes=", arg, (int)sizeof(arg));

    if (value == NULL || value[0] < '0' || value[0] > '9')
        return -1;
    errno = 0;
    parsed = strtoull(value, &end, 10);
    if (errno != 0 || *end != '\0' || parsed > max)
        return -1;
    *out = parsed;
    return 0;
}

int bulk_down_start(struct lws *wsi, struct http_session *s)
{
    static const char *const headers[] = {BULK_CORS_HEADERS, NULL};
    struct worker *w = worker_of(wsi);
    uint64_t bytes;
    char message[128];

    if (parse_bytes_arg(wsi, w->cfg->max_download_bytes, &bytes) != 0) {
        snprintf(message, sizeof(message),
                 "bytes=N is required: a whole number from 0 to %llu (--max-download-bytes)\n",
                 (unsigned long long)w->cfg->max_download_bytes);
        return http_respond_text(wsi, s, 400, message, bulk_error_headers);
    }
    if (http_acquire_transfer(wsi, s) != 0)
        return http_respond_text(wsi, s, 429, "too many transfers from this address\n",
                                 bulk_error_headers);

    s->route = HTTP_ROUTE_DOWN;
    s->body_size = bytes;
    s->body_sent = 0;
    s->next_fragment = 0;
    s->fragment_offset = 0;
    if (http_write_headers(wsi, s, 200, "application/octet-stream", bytes, headers) != 0)
        return -1;
    if (strcmp(s->method, "HEAD") == 0 || bytes == 0)
        return http_finish(wsi, s, "");
    lws_callback_on_writable(wsi);
    return 0;
}

/* Writes part of the next HTTP/2 DATA frame. An HTTP/2 stream may send only what the peer's
 * flow-control window allows, in frames of at most 16 KiB, and lws writes the frame header
 * in front of the data: so the bytes go through a bounce buffer rather than being framed in
 * place, which would overwrite payload bytes other streams still send. */
static int write_h2_chunk(struct lws *wsi, struct http_session *s, const uint8_t *data, size_t len,
                          size_t *written)
{
    static uint8_t buf[LWS_PRE + H2_CHUNK_BYTES];
    lws_fileofs_t allowance = lws_get_peer_write_allowance(wsi);
    uint64_t rest = s->body_size - s->body_sent;

    if (allowance == 0) {
        *written = 0;
        return 0; /* lws calls back when the peer's window opens */
    }
    if (len > H2_CHUNK_BYTES)
        len = H2_CHUNK_BYTES;
    if (allowance > 0 && (uint64_t)allowance < len)
        len = (size_t)allowance;
    memcpy(buf + LWS_PRE, data, len);
    *written = len;
    return lws_write(wsi, buf + LWS_PRE, len, len == rest ? LWS_WRITE_HTTP_FINAL : LWS_WRITE_HTTP);
}

/* Writes the next fragment of the payload, or over HTTP/2 the next part of it, cycling
 * through the payload's stream fragments until N bytes went out. */
int bulk_down_writeable(struct lws *wsi, struct http_session *s)
{
    const struct payload *p = worker_of(wsi)->payload;
    uint64_t rest = s->body_size - s->body_sent;
    size_t fragment_len, len;
    uint8_t *fragment = payload_fragment(p, s->next_fragment, &fragment_len);

    len = fragment_len - s->fragment_offset;
    if (len > rest)
        len = (size_t)rest;

    if (lws_get_network_wsi(wsi) != wsi) {
        if (write_h2_chunk(wsi, s, fragment + s->fragment_offset, len, &len) < 0)
            return -1;
    } else if (lws_write(wsi, fragment, len, len == rest ? LWS_WRITE_HTTP_FINAL : LWS_WRITE_HTTP) <
               0) {
        return -1; /* CLOSED_HTTP logs the access line and gives back the slot */
    }

    /* lws ends a response when its request timeout (--handshake-timeout) runs out. Each
     * write renews it, so only a client that stops reading for that long is cut. */
    lws_set_timeout(wsi, PENDING_TIMEOUT_HTTP_CONTENT,
                    (int)worker_of(wsi)->cfg->handshake_timeout_s);
    s->body_sent += len;
    s->fragment_offset += len;
    if (s->fragment_offset == fragment_len) {
        s->next_fragment = (s->next_fragment + 1) % payload_stream_fragments(p);
        s->fragment_offset = 0;
    }
    if (s->body_sent < s->body_size) {
        lws_callback_on_writable(wsi);
        return 0;
    }
    return http_finish(wsi, s, "");
}

/* Sends the interim response to "Expect: 100-continue", which lws 4.1 leaves to the application:
 * curl waits a second for it before sending a body over 1 MiB. Only HTTP/1.1 connections need it.
 */
static int send_continue(struct lws *wsi)
{
    static const char line[] = "HTTP/1.1 100 Continue\r\n\r\n";
    uint8_t buf[LWS_PRE + sizeof(line)];
    char expect[32];

    if (lws_get_network_wsi(wsi) != wsi ||
        lws_hdr_copy(wsi, expect, sizeof(expect), WSI_TOKEN_HTTP_EXPECT) <= 0 ||
        strcasecmp(expect, "100-continue") != 0)
        return 0;
    memcpy(buf + LWS_PRE, line, sizeof(line) - 1);
    return lws_write(wsi, buf + LWS_PRE, sizeof(line) - 1, LWS_WRITE_HTTP) < 0 ? -1 : 0;
}

/* Starts POST /__up. A chunked body (s->is_chunked) has no length to check up front: its
 * decoder stops it once its chunk sizes announce more than --max-upload-bytes. */
int bulk_up_start(struct lws *wsi, struct http_session *s)
{
    struct worker *w = worker_of(wsi);
    long long length = s->is_chunked ? 0 : http_content_length(wsi);
    char message[128];

    if (length < 0) {
        s->close_after = 1;
        return http_respond_text(wsi, s, 400, "invalid Content-Length\n", bulk_error_headers);
    }
    if ((uint64_t)length > w->cfg->max_upload_bytes) {
        /* The body stays unread, so the connection cannot carry another request. */
        s->close_after = 1;
        snprintf(message, sizeof(message), "request body over %llu bytes (--max-upload-bytes)\n",
                 (unsigned long long)w->cfg->max_upload_bytes);
        return http_respond_text(wsi, s, 413, message, bulk_error_headers);
    }
    if (http_acquire_transfer(wsi, s) != 0) {
        s->close_after = s->close_after || length > 0;
        return http_respond_text(wsi, s, 429, "too many transfers from this address\n",
                                 bulk_error_headers);
    }

    s->route = HTTP_ROUTE_UP;
    s->body_received_bytes = 0;
    if (s->is_chunked) {
        chunked_init(&s->chunked, w->cfg->max_upload_bytes);
    } else if (length == 0) {
        /* TODO: an HTTP/2 body without content-length lands here too and counts as 0 bytes,
         * because lws 4.1.6 does not report where such a body ends. */
        return bulk_up_complete(wsi, s);
    }
    s->awaiting_body = 1;
    return send_continue(wsi);
}

/* Reading a chunked /__up body from the socket.
 *
 * libwebsockets 4.1.6 delivers at most 100 MiB of a body without Content-Length, framing
 * included, and then stops reading it, so a longer chunked upload could not end. Over plain
 * HTTP/1.1 the server therefore reads the rest of a chunked body itself. It stops lws
 * reading the connection and watches a duplicate of the socket's descriptor. lws adopts
 * that as a raw file descriptor, a child of the connection, and closes it along with the
 * connection. The reader starts after the first part of the body that lws delivered, and
 * no body byte stays behind in lws, because lws 4.1.6 passes all that one read returned to
 * HTTP_BODY before it reads again. Over TLS only lws can read the socket, so the 100 MiB
 * limit stays there. */
int bulk_up_read_socket(struct lws *wsi, struct http_session *s)
{
    lws_sock_file_fd_type fd;
    struct lws *reader;
    const char *reason;

    if (lws_is_ssl(wsi) || lws_get_network_wsi(wsi) != wsi)
        return -1;
    fd.filefd = fcntl(lws_get_socket_fd(wsi), F_DUPFD_CLOEXEC, 0);
    if (fd.filefd < 0) {
        reason = strerror(errno);
        goto fail;
    }
    reader = lws_adopt_descriptor_vhost(lws_get_vhost(wsi), LWS_ADOPT_RAW_FILE_DESC, fd,
                                        lws_get_protocol(wsi)->name, wsi);
    if (reader == NULL) {
        close(fd.filefd); /* lws closes only sockets when an adoption fails */
        reason = "libwebsockets could not adopt it";
        goto fail;
    }

    /* Its callbacks then receive this request's session as their user data. */
    lws_set_wsi_user(reader, s);
    s->body_reader = reader;
    lws_rx_flow_control(wsi, 0);
    return 0;

fail:
    log_warn("http", "%s duplicating the socket to read a chunked body failed: %s",
             conn_of(wsi) ? conn_of(wsi)->peer : "?", reason);
    return -1;
}

int bulk_up_reader_readable(struct lws *reader, struct http_session *s)
{
    /* One read per wake-up, as lws does for its connections, so that one upload cannot
     * starve the others. The worker has one thread, so one buffer serves every reader. */
    static uint8_t buf[UP_READ_BYTES];
    struct lws *wsi = lws_get_parent(reader);
    ssize_t n;

    if (wsi == NULL || s == NULL || s->body_reader != reader)
        return -1;
    n = recv(lws_get_socket_fd(reader), buf, sizeof(buf), 0);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return 0;
    if (n <= 0) {
        /* The client closed or reset the connection before the body ended. */
        lws_set_timeout(wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
        return -1;
    }

    /* As lws does for a body it reads, each read renews the time the client has to send the
     * rest (--handshake-timeout). */
    lws_set_timeout(wsi, PENDING_TIMEOUT_HTTP_CONTENT,
                    (int)worker_of(wsi)->cfg->handshake_timeout_s);
    s->body_stream_bytes += (uint64_t)n;
    http_decode_chunked(s, buf, (size_t)n);
    if (!s->body_ended)
        return 0;

    /* The response goes out from the connection's writeable callback, which lws 4.1.6 skips
     * while the connection's reading is stopped. Any bytes after the body that lws then
     * reads are dropped, and the connection closes after the response. */
    lws_rx_flow_control(wsi, 1);
    lws_callback_on_writable(wsi);
    return -1;
}

/* Responds with the byte count, and with the time the server spent receiving as
 * `server-timing: app;dur=MS` so that a client can tell it from the network's time. */
int bulk_up_complete(struct lws *wsi, struct http_session *s)
{
    double duration_ms = (double)(now_us() - s->start_us) / 1000.0;
    char timing[48], body[96];
    int len;

    snprintf(timing, sizeof(timing), "app;dur=%.3f", duration_ms);
    const char *const headers[] = {BULK_CORS_HEADERS, "server-timing:", timing, NULL};
    len = snprintf(body, sizeof(body), "{\"bytes\":%llu,\"duration_ms\":%.3f}",
                   (unsigned long long)s->body_received_bytes, duration_ms);
    s->route = HTTP_ROUTE_STATIC;
    return http_respond(wsi, s, 200, "application/json", (const uint8_t *)body, (size_t)len, NULL,
                        headers);
}

int bulk_route(struct lws *wsi, struct http_session *s, const char *path)
{
    int down = strcmp(path, "/__down") == 0;
    const char *allowed = down ? "GET, HEAD, OPTIONS" : "POST, OPTIONS";

    if (strcmp(s->method, "OPTIONS") == 0) {
        /* CORS preflight: any origin may measure against this server. */
        const char *const headers[] = {BULK_CORS_HEADERS,
                                       "access-control-allow-methods:",
                                       allowed,
                                       "access-control-allow-headers:",
                                       "*",
                                       "access-control-max-age:",
                                       "86400",
                                       NULL};
        return http_respond(wsi, s, 204, NULL, NULL, 0, NULL, headers);
    }
    if (down && (strcmp(s->method, "GET") == 0 || strcmp(s->method, "HEAD") == 0))
        return bulk_down_start(wsi, s);

    const char *const headers[] = {BULK_CORS_HEADERS, "allow:", allowed, NULL};
    return http_respond_text(wsi, s, 405, "method not allowed\n", headers);
}
