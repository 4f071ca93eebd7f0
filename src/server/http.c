/* HTTP routes: the web UI, /healthz, and the answers for unknown paths and wrong methods.
 *
 * This is protocols[0], so it also receives what lws sends there for every connection:
 * WebSocket upgrade checks (the one place a clean HTTP status can refuse an upgrade) and
 * the destruction of each connection, where the connection's limits are given back. */
#include "http.h"
#include "webfiles.h"
#include "../core/log.h"

#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define HTTP_CHUNK_BYTES (64 * 1024)
/* Request bodies sent to routes that take none are read and dropped up to this size. */
#define HTTP_DISCARD_MAX_BYTES (1024 * 1024)
/* libwebsockets 4.1.6 takes a POST, PUT or PATCH without Content-Length to have a body of
 * this size, framing included (rx_content_length in lib/roles/http/server/server.c). */
#define LWS_UNSIZED_BODY_BYTES (100 * 1024 * 1024)

size_t http_session_size(void)
{
    return sizeof(struct http_session);
}

static const struct {
    enum lws_token_indexes token;
    const char *name;
} methods[] = {
    {WSI_TOKEN_GET_URI, "GET"},       {WSI_TOKEN_POST_URI, "POST"},
    {WSI_TOKEN_HEAD_URI, "HEAD"},     {WSI_TOKEN_OPTIONS_URI, "OPTIONS"},
    {WSI_TOKEN_PUT_URI, "PUT"},       {WSI_TOKEN_PATCH_URI, "PATCH"},
    {WSI_TOKEN_DELETE_URI, "DELETE"},
};

static const char *request_method(struct lws *wsi)
{
    for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
        if (lws_hdr_total_length(wsi, methods[i].token) > 0)
            return methods[i].name;
    }
    return "?";
}

static void copy_printable(char *dst, size_t size, const char *src)
{
    size_t i = 0;

    for (; src[i] != '\0' && i + 1 < size; i++)
        dst[i] = (unsigned char)src[i] < 0x20 || src[i] == 0x7f ? '?' : src[i];
    dst[i] = '\0';
}

static void log_access(struct lws *wsi, struct http_session *s, const char *note)
{
    struct conn *c = conn_of(wsi);
    uint64_t elapsed_us = now_us() - s->start_us;

    if (!s->active)
        return;
    s->active = 0;
    log_info("http", "%s %s %s %u %llu bytes %.1f ms%s", c ? c->peer : "?", s->method, s->path,
             s->status, (unsigned long long)s->body_sent, (double)elapsed_us / 1000.0, note);
}

long long http_content_length(struct lws *wsi)
{
    char text[24];
    char *end;
    long long value;

    if (lws_hdr_copy(wsi, text, sizeof(text), WSI_TOKEN_HTTP_CONTENT_LENGTH) <= 0)
        return 0;
    errno = 0;
    value = strtoll(text, &end, 10);
    if (errno != 0 || *end != '\0' || value < 0)
        return -1;
    return value;
}

int http_acquire_transfer(struct lws *wsi, struct http_session *s)
{
    struct worker *w = worker_of(wsi);
    struct conn *c = conn_of(wsi);

    if (c == NULL)
        return -1;
    if (limits_ip_acquire(w->limits, w->index, c->ip) != 0) {
        static struct log_rate rate;
        if (log_rate_allow(&rate, "limits"))
            log_warn("limits",
                     "%s %s %s rejected with 429: %u measurement connections open from this "
                     "address (--max-transfers-per-ip)",
                     c->peer, s->method, s->path, w->cfg->max_transfers_per_ip);
        return -1;
    }
    s->holds_ip_slot = 1;
    s->counts_transfer = 1;
    limits_transfer_add(w->limits, w->index, 1);
    return 0;
}

void http_release_transfer(struct lws *wsi, struct http_session *s)
{
    struct worker *w = worker_of(wsi);
    struct conn *c = conn_of(wsi);

    if (s->holds_ip_slot && c != NULL)
        limits_ip_release(w->limits, w->index, c->ip);
    s->holds_ip_slot = 0;
    if (s->counts_transfer)
        limits_transfer_add(w->limits, w->index, -1);
    s->counts_transfer = 0;
}

static void release_body(struct http_session *s)
{
    free(s->owned_body);
    s->owned_body = NULL;
    s->body = NULL;
}

static int write_body_chunk(struct lws *wsi, struct http_session *s)
{
    static uint8_t buf[LWS_PRE + HTTP_CHUNK_BYTES];
    size_t n = s->body_size - s->body_sent;
    int final;

    if (s->body == NULL)
        return 0;
    if (n > HTTP_CHUNK_BYTES)
        n = HTTP_CHUNK_BYTES;
    final = s->body_sent + n == s->body_size;
    memcpy(buf + LWS_PRE, s->body + s->body_sent, n);
    if (lws_write(wsi, buf + LWS_PRE, n, final ? LWS_WRITE_HTTP_FINAL : LWS_WRITE_HTTP) < 0) {
        release_body(s);
        log_access(wsi, s, " (client went away)");
        return -1;
    }
    s->body_sent += n;
    if (!final) {
        lws_callback_on_writable(wsi);
        return 0;
    }

    release_body(s);
    return http_finish(wsi, s, "");
}

int http_finish(struct lws *wsi, struct http_session *s, const char *note)
{
    log_access(wsi, s, note);
    http_release_transfer(wsi, s);
    if (s->close_after)
        return -1;
    return lws_http_transaction_completed(wsi) ? -1 : 0;
}

int http_write_headers(struct lws *wsi, struct http_session *s, unsigned status,
                       const char *content_type, uint64_t content_length,
                       const char *const *extra_headers)
{
    uint8_t buf[LWS_PRE + 2048];
    uint8_t *start = buf + LWS_PRE, *p = start, *end = buf + sizeof(buf) - 1;

    s->status = status;
    if (lws_add_http_common_headers(wsi, status, content_type, (lws_filepos_t)content_length, &p,
                                    end))
        return -1;
    for (int i = 0; extra_headers != NULL && extra_headers[i] != NULL; i += 2) {
        if (lws_add_http_header_by_name(wsi, (const uint8_t *)extra_headers[i],
                                        (const uint8_t *)extra_headers[i + 1],
                                        (int)strlen(extra_headers[i + 1]), &p, end))
            return -1;
    }
    if (s->close_after && lws_add_http_header_by_name(wsi, (const uint8_t *)"connection:",
                                                      (const uint8_t *)"close", 5, &p, end))
        return -1;
    if (lws_finalize_write_http_header(wsi, start, &p, end))
        return -1;
    return 0;
}

int http_respond(struct lws *wsi, struct http_session *s, unsigned status, const char *content_type,
                 const uint8_t *body, size_t size, uint8_t *owned, const char *const *extra_headers)
{
    s->route = HTTP_ROUTE_STATIC;
    s->body = body;
    s->body_size = size;
    s->body_sent = 0;
    s->owned_body = owned;

    if (http_write_headers(wsi, s, status, content_type, size, extra_headers) != 0)
        goto fail;
    if (strcmp(s->method, "HEAD") == 0 || size == 0) {
        release_body(s);
        return http_finish(wsi, s, "");
    }

    /* A small body goes out at once (lws queues what the socket does not take), so the
     * transaction ends inside this callback; see on_body_complete() for why that matters. */
    if (size <= HTTP_CHUNK_BYTES)
        return write_body_chunk(wsi, s);
    lws_callback_on_writable(wsi);
    return 0;

fail:
    release_body(s);
    log_access(wsi, s, " (failed to send headers)");
    http_release_transfer(wsi, s);
    return -1;
}

int http_respond_text(struct lws *wsi, struct http_session *s, unsigned status, const char *text,
                      const char *const *extra_headers)
{
    static const char *const no_store[] = {"cache-control:", "no-store", NULL};

    return http_respond(wsi, s, status, "text/plain; charset=utf-8", (const uint8_t *)text,
                        strlen(text), NULL, extra_headers ? extra_headers : no_store);
}

static int serve_healthz(struct lws *wsi, struct http_session *s)
{
    static const char *const headers[] = {"cache-control:", "no-store", NULL};
    struct worker *w = worker_of(wsi);
    uint32_t connections = limits_connections(w->limits);
    json_t *root;
    char *text;

    /* The connection asking is not counted, so an idle server reports 0. */
    root =
        json_pack("{s:s, s:s, s:f, s:I, s:I}", "status", w->stopping ? "stopping" : "ok", "version",
                  LINKSPEED_VERSION, "uptime_s", (double)(now_us() - w->server_start_us) / 1e6,
                  "connections", (json_int_t)(connections > 0 ? connections - 1 : 0), "transfers",
                  (json_int_t)limits_transfers(w->limits));
    text = root ? json_dumps(root, JSON_COMPACT | JSON_REAL_PRECISION(10)) : NULL;
    json_decref(root);
    if (text == NULL)
        return http_respond_text(wsi, s, 500, "internal error\n", NULL);
    return http_respond(wsi, s, 200, "application/json", (const uint8_t *)text, strlen(text),
                        (uint8_t *)text, headers);
}

/* Returns the server's name and version and the client's address as the server observes it. */
static int serve_info(struct lws *wsi, struct http_session *s)
{
    static const char *const headers[] = {"cache-control:", "no-store", NULL};
    struct worker *w = worker_of(wsi);
    struct conn *c = conn_of(wsi);
    json_t *root;
    char *text;

    root = json_pack("{s:s, s:s, s:s}", "version", LINKSPEED_VERSION, "server_name", w->server_name,
                     "client_ip", c ? c->host : "");
    text = root ? json_dumps(root, JSON_COMPACT) : NULL;
    json_decref(root);
    if (text == NULL)
        return http_respond_text(wsi, s, 500, "internal error\n", NULL);
    return http_respond(wsi, s, 200, "application/json", (const uint8_t *)text, strlen(text),
                        (uint8_t *)text, headers);
}

static int serve_file(struct lws *wsi, struct http_session *s, const char *path)
{
    struct worker *w = worker_of(wsi);
    struct web_file file;
    char if_none_match[128];
    int rc = web_file_find(w->cfg->web_root, path, &file);

    if (rc == -ENOENT)
        return http_respond_text(wsi, s, 404, "not found\n", NULL);
    if (rc != 0) {
        log_error("http", "%s: reading %s from --web-root failed: %s", conn_of(wsi)->peer, path,
                  strerror(-rc));
        return http_respond_text(wsi, s, 500, "internal error\n", NULL);
    }

    const char *headers[] = {
        "etag:",   file.etag, "cache-control:", "no-cache", "x-content-type-options:",
        "nosniff", NULL};
    if (lws_hdr_copy(wsi, if_none_match, sizeof(if_none_match), WSI_TOKEN_HTTP_IF_NONE_MATCH) > 0 &&
        (strstr(if_none_match, file.etag) != NULL || strcmp(if_none_match, "*") == 0)) {
        free(file.owned);
        return http_respond(wsi, s, 304, NULL, NULL, 0, NULL, headers);
    }
    return http_respond(wsi, s, 200, file.content_type, file.data, file.size, file.owned, headers);
}

static int is_page_path(const char *path)
{
    return strcmp(path, "/healthz") == 0 || strcmp(path, "/api/v1/info") == 0 ||
           ws_route_exists(path) || ndt7_is_path(path) || strcmp(path, "/") == 0 ||
           strcmp(path, "/classic") == 0;
}

/* Tells whether a path exists, to choose between 404 and 405 for other methods. */
static int path_exists(struct lws *wsi, const char *path)
{
    struct web_file probe;
    int rc;

    if (is_page_path(path))
        return 1;
    rc = web_file_find(worker_of(wsi)->cfg->web_root, path, &probe);
    free(probe.owned);
    return rc != -ENOENT;
}

static int route_request(struct lws *wsi, struct http_session *s, const char *path)
{
    static const char *const allow_get[] = {"allow:", "GET, HEAD", "cache-control:", "no-store",
                                            NULL};

    if (strcmp(path, "/__down") == 0 || strcmp(path, "/__up") == 0)
        return bulk_route(wsi, s, path);
    if (strcmp(s->method, "GET") != 0 && strcmp(s->method, "HEAD") != 0) {
        if (!path_exists(wsi, path))
            return http_respond_text(wsi, s, 404, "not found\n", NULL);
        return http_respond_text(wsi, s, 405, "method not allowed\n", allow_get);
    }
    if (strcmp(path, "/healthz") == 0)
        return serve_healthz(wsi, s);
    if (strcmp(path, "/api/v1/info") == 0)
        return serve_info(wsi, s);
    if (ws_route_exists(path) || ndt7_is_path(path))
        return http_respond_text(wsi, s, 400, "this endpoint needs a WebSocket upgrade\n", NULL);
    return serve_file(wsi, s, path);
}

/* Logs why a request was rejected, at most 10 times per second. */
static void log_rejection(struct lws *wsi, const struct http_session *s, unsigned status,
                          const char *reason)
{
    static struct log_rate rate;
    struct conn *c = conn_of(wsi);

    if (log_rate_allow(&rate, "http"))
        log_warn("http", "%s %s %s rejected with %u: %s", c ? c->peer : "?", s->method, s->path,
                 status, reason);
}

/* Tells whether an element of a Transfer-Encoding list, `len` bytes at `item`, is empty (1),
 * the chunked coding (2) or another coding (0). Whitespace around it is ignored. */
static int classify_coding(const char *item, size_t len)
{
    while (len > 0 && (*item == ' ' || *item == '\t')) {
        item++;
        len--;
    }
    while (len > 0 && (item[len - 1] == ' ' || item[len - 1] == '\t'))
        len--;
    if (len == 0)
        return 1;
    return len == 7 && strncasecmp(item, "chunked", 7) == 0 ? 2 : 0;
}

/* Returns 0 when a Transfer-Encoding list names chunked alone, or else the status that
 * rejects it. RFC 9112 section 6.3 requires 400 when chunked is not the final coding, and
 * chunked twice is invalid too. Other codings before it get 501, as RFC 9112 section 6.1
 * suggests for codings a server does not implement. */
static unsigned check_transfer_coding(const char *list, const char **reason)
{
    const char *comma = strrchr(list, ',');
    const char *final = comma ? comma + 1 : list;
    int other_coding = 0;

    if (classify_coding(final, strlen(final)) != 2) {
        *reason = "Transfer-Encoding must end in chunked";
        return 400;
    }
    for (const char *item = list; item < final;) {
        size_t len = strcspn(item, ",");
        int kind = classify_coding(item, len);

        if (kind == 2) {
            *reason = "Transfer-Encoding names chunked more than once";
            return 400;
        }
        other_coding |= kind == 0;
        item += len + 1;
    }
    if (other_coding) {
        *reason = "transfer codings other than chunked are not supported";
        return 501;
    }
    return 0;
}

/* Tells whether lws 4.1.6 reads a request body for this method without Content-Length. */
static int method_reads_body(const char *method)
{
    return strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0 ||
           strcmp(method, "PATCH") == 0;
}

/* Starts a request with a Transfer-Encoding. libwebsockets 4.1.6 does not decode chunked
 * bodies. It passes the raw chunked stream to HTTP_BODY, takes a POST, PUT or PATCH without
 * Content-Length to have a body of LWS_UNSIZED_BODY_BYTES, and reports the body complete
 * only once that many bytes arrived. So the server decodes the stream itself and responds
 * at the end of the body. lws still counts the rest of those bytes as body and would read
 * the next request on the connection as more of it, so a chunked request always closes
 * its connection. */
static int start_chunked_request(struct lws *wsi, struct http_session *s, const char *path)
{
    char list[128], version[16], message[128];
    const char *reason = NULL;
    unsigned status;

    s->close_after = 1;
    if (lws_get_network_wsi(wsi) != wsi) {
        status = 400;
        reason = "Transfer-Encoding is not allowed in HTTP/2";
    } else if (lws_hdr_copy(wsi, version, sizeof(version), WSI_TOKEN_HTTP) > 0 &&
               strcmp(version, "HTTP/1.0") == 0) {
        /* RFC 9112 section 6.1: the framing of such a message is faulty. */
        status = 400;
        reason = "Transfer-Encoding is not allowed in HTTP/1.0";
    } else if (lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_CONTENT_LENGTH) > 0) {
        /* RFC 9112 section 6.3 lets a server reject both together, because a proxy in front
         * may have framed the body by the other one (request smuggling). Decoding it as
         * chunked is no option here anyway, because lws 4.1.6 reads such a body by its
         * Content-Length. */
        status = 400;
        reason = "a request may not have both Content-Length and Transfer-Encoding";
    } else if (lws_hdr_copy(wsi, list, sizeof(list), WSI_TOKEN_HTTP_TRANSFER_ENCODING) < 0) {
        status = 400;
        reason = "Transfer-Encoding longer than 127 bytes";
    } else {
        status = check_transfer_coding(list, &reason);
    }
    if (status != 0) {
        log_rejection(wsi, s, status, reason);
        snprintf(message, sizeof(message), "%s\n", reason);
        return http_respond_text(wsi, s, status, message, NULL);
    }

    s->is_chunked = 1;
    if (strcmp(path, "/__up") == 0 && strcmp(s->method, "POST") == 0)
        return bulk_up_start(wsi, s);
    if (!method_reads_body(s->method))
        return route_request(wsi, s, path); /* lws reads no body, and the connection closes */

    /* Other routes take no body, so it is read and dropped, up to the same cap as a body
     * with a Content-Length. */
    chunked_init(&s->chunked, HTTP_DISCARD_MAX_BYTES);
    snprintf(s->route_path, sizeof(s->route_path), "%s", path);
    s->awaiting_body = 1;
    return 0;
}

void http_decode_chunked(struct http_session *s, const uint8_t *data, size_t len)
{
    size_t consumed;
    int rc = chunked_decode(&s->chunked, data, len, &consumed, NULL, NULL);

    s->body_received_bytes = s->chunked.body_bytes;
    if (rc == 0 && !chunked_is_done(&s->chunked))
        return;

    /* Bytes after the body would start a pipelined request, which the closing of the
     * connection drops. */
    s->body_status = rc;
    s->body_ended = 1;
    s->awaiting_body = 0;
}

int http_respond_chunked(struct lws *wsi, struct http_session *s)
{
    static const char *const cors_headers[] = {BULK_CORS_HEADERS, NULL};
    const char *const *headers = s->route == HTTP_ROUTE_UP ? cors_headers : NULL;
    char message[192];

    s->body_ended = 0;
    if (s->body_status == -EBADMSG) {
        log_rejection(wsi, s, 400, chunked_error(&s->chunked));
        snprintf(message, sizeof(message), "invalid chunked request body: %s\n",
                 chunked_error(&s->chunked));
        return http_respond_text(wsi, s, 400, message, headers);
    }
    if (s->body_status == -EFBIG && s->route == HTTP_ROUTE_UP) {
        snprintf(message, sizeof(message), "request body over %llu bytes (--max-upload-bytes)\n",
                 (unsigned long long)worker_of(wsi)->cfg->max_upload_bytes);
        return http_respond_text(wsi, s, 413, message, headers);
    }
    if (s->body_status == -EFBIG)
        return http_respond_text(wsi, s, 413,
                                 "request body over 1 MiB on a route that takes none\n", headers);
    if (s->body_status == -EPROTO) {
        log_rejection(wsi, s, 400, "chunked body pipelined behind another request");
        return http_respond_text(wsi, s, 400,
                                 "a chunked request body pipelined behind another request is "
                                 "not supported here; send the request on a new connection\n",
                                 headers);
    }
    if (s->body_status != 0) {
        /* Over TLS, for example, as bulk_up_read_socket() explains. */
        snprintf(message, sizeof(message),
                 "chunked request body over %d bytes with its framing, the most this server "
                 "reads of one on this connection; send a Content-Length instead\n",
                 LWS_UNSIZED_BODY_BYTES);
        log_rejection(wsi, s, 413, "chunked body over the 100 MiB libwebsockets 4.1 reads");
        return http_respond_text(wsi, s, 413, message, headers);
    }
    if (s->route == HTTP_ROUTE_UP)
        return bulk_up_complete(wsi, s);
    return route_request(wsi, s, s->route_path);
}

static int on_http(struct lws *wsi, struct http_session *s, const char *path)
{
    memset(s, 0, sizeof(*s));
    s->start_us = now_us();
    s->active = 1;
    snprintf(s->method, sizeof(s->method), "%s", request_method(wsi));
    copy_printable(s->path, sizeof(s->path), path);

    if (lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_TRANSFER_ENCODING) > 0)
        return start_chunked_request(wsi, s, path);
    if (strcmp(path, "/__up") == 0 && strcmp(s->method, "POST") == 0)
        return bulk_up_start(wsi, s);

    /* The answer waits until the body has been read: answering first and closing with
     * unread pipelined bytes makes lws 4.1 spin, and keeping the connection needs the body
     * out of the way anyway. */
    if (http_content_length(wsi) > 0) {
        snprintf(s->route_path, sizeof(s->route_path), "%s", path);
        s->awaiting_body = 1;
        return 0;
    }
    return route_request(wsi, s, path);
}

/* Tells whether a first body chunk is really the start of the request itself, which is
 * how libwebsockets 4.1.6 delivers the body of a request pipelined behind another one. */
static int body_is_misplaced(const struct http_session *s, const char *chunk, size_t len)
{
    size_t method_len = strlen(s->method);
    size_t compared = len < method_len ? len : method_len;

    /* A short body shows only part of the method; a false match only costs keep-alive. */
    if (len == 0 || memcmp(chunk, s->method, compared) != 0)
        return 0;
    return len <= method_len || chunk[method_len] == ' ';
}

/* Decodes a chunked body that lws 4.1.6 delivered behind the head of its request, which it
 * does for a request pipelined behind another one. It then delivers the start of that body
 * once more, from memory it has already freed (AddressSanitizer reports a use after free).
 * So only this first delivery is read, past the head. A /__up body that does not end in it
 * is read from the socket, and where that is not possible the request is rejected. */
static int on_misplaced_chunked_body(struct lws *wsi, struct http_session *s, const uint8_t *data,
                                     size_t len)
{
    const uint8_t *head_end = memmem(data, len, "\r\n\r\n", 4);

    if (head_end != NULL) {
        size_t head_bytes = (size_t)(head_end - data) + 4;

        http_decode_chunked(s, data + head_bytes, len - head_bytes);
        if (s->body_ended)
            return http_respond_chunked(wsi, s);
        if (s->route == HTTP_ROUTE_UP && bulk_up_read_socket(wsi, s) == 0)
            return 0;
    }
    s->body_status = -EPROTO;
    s->body_ended = 1;
    s->awaiting_body = 0;
    return http_respond_chunked(wsi, s);
}

/* Decodes the part of a chunked body that lws delivered. After the first part, a /__up body
 * is read from the socket directly where that works; see bulk_up_read_socket(). */
static int on_chunked_body(struct lws *wsi, struct http_session *s, const uint8_t *data, size_t len)
{
    int first = s->body_stream_bytes == 0;

    /* Once the socket reader runs, whatever lws still delivers is no part of the body. */
    if (!s->awaiting_body || s->body_reader != NULL)
        return 0;
    s->body_stream_bytes += len;
    if (first && body_is_misplaced(s, (const char *)data, len))
        return on_misplaced_chunked_body(wsi, s, data, len);
    http_decode_chunked(s, data, len);
    if (s->body_ended)
        return http_respond_chunked(wsi, s);
    if (first && s->route == HTTP_ROUTE_UP)
        bulk_up_read_socket(wsi, s); /* when it cannot, lws goes on delivering */
    return 0;
}

/* Counts a body chunk for /__up or drops it; a dropped body over the cap ends the
 * connection. */
static int on_body(struct lws *wsi, struct http_session *s, const char *chunk, size_t len)
{
    if (s->is_chunked)
        return on_chunked_body(wsi, s, (const uint8_t *)chunk, len);
    if (s->body_received_bytes == 0 && body_is_misplaced(s, chunk, len))
        s->close_after = 1;
    s->body_received_bytes += len;
    if (s->route == HTTP_ROUTE_UP)
        return 0;
    if (s->body_received_bytes <= HTTP_DISCARD_MAX_BYTES)
        return 0;
    s->status = 413;
    log_access(wsi, s, " (request body over 1 MiB on a route that takes none; closed)");
    lws_set_timeout(wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
    return 0;
}

/* Answers a request whose body has been read. libwebsockets 4.1.6 mishandles a request
 * with a body that was pipelined behind another one: it hands the start of the request to
 * HTTP_BODY and then reports the body complete again and again without reading on. Such a
 * request is answered and its connection closed, and a completion that belongs to no
 * request closes the connection instead of spinning. */
static int on_body_complete(struct lws *wsi, struct http_session *s)
{
    if (!s->awaiting_body) {
        log_warn("http", "%s closed: request body out of step with the request",
                 conn_of(wsi) ? conn_of(wsi)->peer : "?");
        return -1;
    }
    if (s->is_chunked) {
        /* lws has delivered all it reads of a body without Content-Length, and the chunked
         * body has not ended; see start_chunked_request(). */
        s->body_status = -E2BIG;
        s->body_ended = 1;
        s->awaiting_body = 0;
        return http_respond_chunked(wsi, s);
    }
    s->awaiting_body = 0;
    if (s->route == HTTP_ROUTE_UP)
        return bulk_up_complete(wsi, s);
    return route_request(wsi, s, s->route_path);
}

int http_confirm_upgrade(struct lws *wsi, const char *upgrade)
{
    struct worker *w = worker_of(wsi);
    struct conn *c = conn_of(wsi);
    char path[256];
    const char *peer = c ? c->peer : "?";

    if (strcasecmp(upgrade, "websocket") != 0)
        return 0; /* h2c: lws switches to HTTP/2, whose streams reach the same routes */

    if (lws_hdr_copy(wsi, path, sizeof(path), WSI_TOKEN_GET_URI) <= 0) {
        log_warn("http", "%s upgrade rejected with 400: not a GET request", peer);
        lws_return_http_status(wsi, HTTP_STATUS_BAD_REQUEST, NULL);
        return 1;
    }
    char printable[256];
    copy_printable(printable, sizeof(printable), path);
    int is_ndt7 = ndt7_is_path(path);
    if (!ws_route_exists(path) && !is_ndt7) {
        log_warn("http", "%s upgrade rejected with 404: no WebSocket endpoint at %s", peer,
                 printable);
        lws_return_http_status(wsi, HTTP_STATUS_NOT_FOUND, NULL);
        return 1;
    }
    if (lws_hdr_total_length(wsi, WSI_TOKEN_KEY) <= 0) {
        log_warn("http", "%s upgrade rejected with 400: no Sec-WebSocket-Key", peer);
        lws_return_http_status(wsi, HTTP_STATUS_BAD_REQUEST, NULL);
        return 1;
    }
    char version[8];
    if (lws_hdr_copy(wsi, version, sizeof(version), WSI_TOKEN_VERSION) <= 0 ||
        strcmp(version, "13") != 0) {
        /* lws also accepts the pre-RFC drafts 7 and 8; RFC 6455 clients send 13. */
        log_warn("http", "%s upgrade rejected with 400: Sec-WebSocket-Version is not 13", peer);
        lws_return_http_status(wsi, HTTP_STATUS_BAD_REQUEST, NULL);
        return 1;
    }
    if (is_ndt7 && ndt7_confirm_upgrade(wsi, peer) != 0)
        return 1;
    if (!is_ndt7 && lws_hdr_total_length(wsi, WSI_TOKEN_PROTOCOL) > 0) {
        log_warn("http", "%s upgrade rejected with 400: %s takes no subprotocol", peer, printable);
        lws_return_http_status(wsi, HTTP_STATUS_BAD_REQUEST, NULL);
        return 1;
    }
    if (w->stopping) {
        log_warn("http", "%s upgrade rejected with 503: server is stopping", peer);
        lws_return_http_status(wsi, HTTP_STATUS_SERVICE_UNAVAILABLE, NULL);
        return 1;
    }
    if (c != NULL && !c->holds_ip_slot) {
        if (limits_ip_acquire(w->limits, w->index, c->ip) != 0) {
            static struct log_rate rate;
            if (log_rate_allow(&rate, "limits"))
                log_warn("limits",
                         "%s upgrade rejected with 429: %u measurement connections open from this "
                         "address (--max-transfers-per-ip)",
                         peer, w->cfg->max_transfers_per_ip);
            lws_return_http_status(wsi, 429, NULL);
            return 1;
        }
        c->holds_ip_slot = 1;
    }
    log_info("http", "%s GET %s 101 (WebSocket upgrade)", peer, printable);
    return 0;
}

int http_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                  size_t len)
{
    struct http_session *s = user;

    switch (reason) {
    case LWS_CALLBACK_HTTP:
        return on_http(wsi, s, in ? (const char *)in : "/");
    case LWS_CALLBACK_HTTP_BODY:
        return on_body(wsi, s, in, len);
    case LWS_CALLBACK_HTTP_BODY_COMPLETION:
        return on_body_complete(wsi, s);
    case LWS_CALLBACK_HTTP_WRITEABLE:
        if (s->body_ended)
            return http_respond_chunked(wsi, s);
        if (s->route == HTTP_ROUTE_DOWN)
            return bulk_down_writeable(wsi, s);
        return write_body_chunk(wsi, s);
    case LWS_CALLBACK_HTTP_CONFIRM_UPGRADE:
        return http_confirm_upgrade(wsi, in ? (const char *)in : "");
    case LWS_CALLBACK_CLOSED_HTTP:
        if (s != NULL) {
            release_body(s);
            log_access(wsi, s, " (connection closed before the response ended)");
            http_release_transfer(wsi, s);
        }
        return 0;
    case LWS_CALLBACK_RAW_RX_FILE:
        /* The socket reader of a chunked /__up body, whose user data is the session of its
         * request; the listening sockets belong to another protocol. */
        return bulk_up_reader_readable(wsi, s);
    case LWS_CALLBACK_RAW_CLOSE_FILE:
        if (s != NULL && s->body_reader == wsi)
            s->body_reader = NULL;
        return 0;
    case LWS_CALLBACK_WSI_DESTROY: {
        /* Sent here for every connection whatever protocol it ended on; `user` may belong to
         * another protocol, so only the opaque connection record is used. */
        struct conn *c = lws_get_opaque_user_data(wsi);
        if (c != NULL) {
            lws_set_opaque_user_data(wsi, NULL);
            worker_release_conn(worker_of(wsi), c);
        }
        return 0;
    }
    case LWS_CALLBACK_EVENT_WAIT_CANCELLED:
        worker_check_stop(worker_of(wsi));
        return 0;
    default:
        break;
    }
    return lws_callback_http_dummy(wsi, reason, user, in, len);
}
