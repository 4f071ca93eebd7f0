/* HTTP request state and response helpers shared by the HTTP routes (http.c, bulk.c). */
#ifndef LINKSPEED_HTTP_H
#define LINKSPEED_HTTP_H

#include "server.h"

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
    char route_path[256]; /* the request path, kept until a request body has been read */
    uint64_t body_received_bytes;
    size_t next_fragment;   /* /__down: next payload fragment to send */
    size_t fragment_offset; /* /__down over HTTP/2: bytes of that fragment already sent */
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

/* The bulk routes, in bulk.c: bulk_route() handles every method on /__down and /__up. */
int bulk_route(struct lws *wsi, struct http_session *s, const char *path);
int bulk_down_start(struct lws *wsi, struct http_session *s);
int bulk_down_writeable(struct lws *wsi, struct http_session *s);
int bulk_up_start(struct lws *wsi, struct http_session *s);
int bulk_up_complete(struct lws *wsi, struct http_session *s);

/* Headers every bulk response carries, for cross-origin clients and their timing APIs. */
#define BULK_CORS_HEADERS                                                                          \
    "cache-control:", "no-store", "access-control-allow-origin:", "*",                             \
        "timing-allow-origin:", "*", "access-control-expose-headers:", "server-timing"

#endif
