/* WebSocket endpoints that take no subprotocol, routed by path.
 *
 * lws binds an upgrade without Sec-WebSocket-Protocol to the vhost's default protocol
 * whatever its path, so that protocol is this dispatcher: it copies the path while the
 * request headers still exist (FILTER_PROTOCOL_CONNECTION) and hands every later callback
 * to the endpoint's adapter, whose state lives in the same per-session allocation. */
#include "server.h"

#include <stdalign.h>
#include <stddef.h>
#include <string.h>

typedef int (*ws_adapter_fn)(struct lws *wsi, enum lws_callback_reasons reason, void *user,
                             void *in, size_t len);

static const struct ws_route {
    const char *path;
    ws_adapter_fn callback;
    size_t (*session_size)(void);
} routes[] = {
    {"/ws", ws_legacy_callback, ws_legacy_session_size},
    {"/api/v1/latency", ws_latency_callback, ws_latency_session_size},
};

#define ROUTE_COUNT (sizeof(routes) / sizeof(routes[0]))

struct ws_route_session {
    const struct ws_route *route; /* NULL until the path is known; then routes[i] */
    alignas(max_align_t) unsigned char adapter[];
};

int ws_route_exists(const char *path)
{
    for (size_t i = 0; i < ROUTE_COUNT; i++) {
        if (strcmp(routes[i].path, path) == 0)
            return 1;
    }
    return 0;
}

size_t ws_route_session_size(void)
{
    size_t largest = 0;

    for (size_t i = 0; i < ROUTE_COUNT; i++) {
        size_t size = routes[i].session_size();
        if (size > largest)
            largest = size;
    }
    return offsetof(struct ws_route_session, adapter) + largest;
}

/* Chooses the adapter by the request path; http_confirm_upgrade() already checked it. */
static void bind_route(struct lws *wsi, struct ws_route_session *s)
{
    char path[128];

    s->route = &routes[0];
    if (lws_hdr_copy(wsi, path, sizeof(path), WSI_TOKEN_GET_URI) <= 0)
        return;
    for (size_t i = 0; i < ROUTE_COUNT; i++) {
        if (strcmp(routes[i].path, path) == 0)
            s->route = &routes[i];
    }
}

int ws_route_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                      size_t len)
{
    struct ws_route_session *s = user;

    switch (reason) {
    case LWS_CALLBACK_HTTP_CONFIRM_UPGRADE:
        return http_confirm_upgrade(wsi, in ? (const char *)in : "");
    case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
        if (s != NULL)
            bind_route(wsi, s);
        return 0;
    default:
        if (s == NULL || s->route == NULL)
            return 0;
        return s->route->callback(wsi, reason, s->adapter, in, len);
    }
}
