/* HTTP request state and response helpers shared by the HTTP routes (http.c, bulk.c). */
#ifndef LINKSPEED_HTTP_H
#define LINKSPEED_HTTP_H

#include "server.h"
#include "../core/chunked.h"

enum http_route {
    HTTP_ROUTE_STATIC = 0, /* sent from memory: pages, /healthz, errors */
    HTTP_ROUTE_DOWN,       /* GET /__down streams payload bytes */
    HTTP_ROUTE_UP,         /* POST /__up counts the request body */
};

/* Per-request state, reset at each request of a keep-alive connection. */
struct http_session {
    char method[8];
    char path[256]; /* control characters replaced, for the access log */
    uint64_t start_us;
    unsigned status;
    enum http_route route;
    const uint8_t *body;
    uint64_t body_size;
    uint64_t body_sent;
    uint8_t *owned_body;
    char route_path[256];         /* the request path, kept until a request body has been read */
    uint64_t body_received_bytes; /* of a chunked body, its decoded bytes */
    size_t next_fragment;         /* /__down: next payload fragment to send */
    size_t fragment_offset;       /* /__down over HTTP/2: bytes of that fragment already sent */
    struct chunked_decoder chunked;
    uint64_t body_stream_bytes; /* bytes of a chunked body as received, framing included */
    struct lws *body_reader;    /* /__up: reader of a chunked body on the socket, see bulk.c */
    int is_chunked;             /* flag: the request body uses the chunked transfer coding */
    int body_ended;             /* flag: a chunked body ended or failed, so a response is due */
    int body_status;            /* 0, or the negative errno a chunked body failed with */
    int awaiting_body;
    int holds_ip_slot;   /* a --max-transfers-per-ip slot, released when the response ends */
    int counts_transfer; /* counted in /healthz transfers until the response ends */
    int close_after;     /* end the connection once the response is out */
    int active;          /* a response was started and not yet logged */
};

/* Sends the status line and headers; content_length is the body size that will follow.
 * extra_headers is a NULL-terminated list of name/value pairs ("name:", "value"). */
int http_write_headers(struct lws *wsi, struct http_session *s, unsigned status,
                       const char *content_type, uint64_t content_length,
                       const char *const *extra_headers);

/* Sends a whole response from memory. Takes ownership of `owned` (freed when the response
 * ends). Returns 0, or -1 to close the connection. */
int http_respond(struct lws *wsi, struct http_session *s, unsigned status, const char *content_type,
                 const uint8_t *body, size_t size, uint8_t *owned,
                 const char *const *extra_headers);

int http_respond_text(struct lws *wsi, struct http_session *s, unsigned status, const char *text,
                      const char *const *extra_headers);

/* Ends a response: logs its access line with `note`, gives back its transfer slot, then
 * keeps the connection for the next request or returns -1 to close it. */
int http_finish(struct lws *wsi, struct http_session *s, const char *note);

/* Returns the request's Content-Length, 0 when absent, or -1 when it is not a number. */
long long http_content_length(struct lws *wsi);

/* Takes a --max-transfers-per-ip slot for the request; returns 0, or -1 after logging. */
int http_acquire_transfer(struct lws *wsi, struct http_session *s);

/* Gives back what http_acquire_transfer() took; safe to call more than once. */
void http_release_transfer(struct lws *wsi, struct http_session *s);

/* Decodes bytes of a chunked request body and counts its data. Once the body ended or
 * failed, it sets s->body_ended and s->body_status, and http_respond_chunked() must follow. */
void http_decode_chunked(struct http_session *s, const uint8_t *data, size_t len);

/* Sends the response to a request whose chunked body ended or failed. Returns 0, or -1 to
 * close the connection. */
int http_respond_chunked(struct lws *wsi, struct http_session *s);

/* The bulk routes, in bulk.c: bulk_route() handles every method on /__down and /__up. */
int bulk_route(struct lws *wsi, struct http_session *s, const char *path);
int bulk_down_start(struct lws *wsi, struct http_session *s);
int bulk_down_writeable(struct lws *wsi, struct http_session *s);
int bulk_up_start(struct lws *wsi, struct http_session *s);
int bulk_up_complete(struct lws *wsi, struct http_session *s);

/* Takes over reading a chunked /__up body from the socket; see bulk.c for why. Returns 0,
 * or -1 when it cannot, and then lws goes on delivering the body up to its limit. */
int bulk_up_read_socket(struct lws *wsi, struct http_session *s);

/* Reads the next part of a chunked /__up body from the socket that `reader`, the
 * descriptor bulk_up_read_socket() adopted, watches. Returns -1 when the reader is done. */
int bulk_up_reader_readable(struct lws *reader, struct http_session *s);

/* Headers every bulk response carries, for cross-origin clients and their timing APIs. */
#define BULK_CORS_HEADERS                                                                          \
    "cache-control:", "no-store", "access-control-allow-origin:", "*",                             \
        "timing-allow-origin:", "*", "access-control-expose-headers:", "server-timing"

#endif
