/* The tutorial's transfer over /ws. Each transfer sends the text message "start" and
 * receives the one binary message the server responds with. Transfers run one after
 * another on one connection, as on the classic page, and payload is counted, not copied. */
#include "legacy_client.h"
#include "wsclient.h"

#include <errno.h>
#include <string.h>

#define LEGACY_PATH    "/ws"
#define LEGACY_REQUEST "start"

enum {
    /* The largest --payload-size a linkspeed server sends. */
    LEGACY_MAX_MESSAGE_BYTES = 1 << 30,
    LEGACY_PROGRESS_INTERVAL_MS = 100,
    LEGACY_SERVICE_SLICE_MS = 100,
};

struct legacy_run {
    struct ws_client *ws;
    uint64_t bytes;
    bool message_done;
    double last_byte_ms;
    double first_request_ms;

    client_progress_fn progress;
    void *progress_context;
    struct ws_rate_window rate_window;
    double next_progress_ms;
};

static int on_binary(void *context, const uint8_t *payload, size_t length, bool final)
{
    struct legacy_run *run = context;

    (void)payload;
    run->bytes += length;
    if (length > 0 || final)
        run->last_byte_ms = ws_monotonic_ms();
    if (final)
        run->message_done = true;
    return 0;
}

static void report_progress(struct legacy_run *run, double now_ms)
{
    struct client_progress progress = {.phase = "download", .streams = 1};

    if (run->progress == NULL || now_ms < run->next_progress_ms)
        return;
    run->next_progress_ms = now_ms + LEGACY_PROGRESS_INTERVAL_MS;
    progress.elapsed_ms = now_ms - run->first_request_ms;
    progress.bytes = run->bytes;
    progress.current_bps = ws_rate_window_add(&run->rate_window, now_ms, run->bytes);
    run->progress(run->progress_context, &progress);
}

/* Fails with the close code and reason of a server that ended the session early. */
static int closed_early(struct legacy_run *run, unsigned transfer, struct client_error *err)
{
    int code = ws_client_close_code(run->ws);
    const char *reason = ws_client_close_reason(run->ws);

    err->status = code;
    client_fail(err, "legacy: %s: the server closed the connection during transfer %u with %d%s%s",
                ws_client_url(run->ws), transfer + 1, code, reason[0] ? ": " : "", reason);
    return -ECONNRESET;
}

/* Sends one request and receives its message. */
static int run_transfer(struct legacy_run *run, unsigned transfer,
                        const volatile sig_atomic_t *cancel, double *transfer_ms,
                        struct client_error *err)
{
    double request_ms = ws_monotonic_ms();
    double progress_ms = request_ms;
    uint64_t progress_bytes = run->bytes;
    int rc;

    if (transfer == 0)
        run->first_request_ms = request_ms;
    run->message_done = false;
    rc = ws_client_send_frame(run->ws, WS_OPCODE_TEXT, LEGACY_REQUEST, strlen(LEGACY_REQUEST), 0,
                              NULL, err);
    while (rc == 0 && !run->message_done) {
        double now_ms;

        rc = ws_client_service(run->ws, LEGACY_SERVICE_SLICE_MS, err);
        if (rc == 1 && !run->message_done)
            return closed_early(run, transfer, err);
        if (rc < 0)
            return rc;
        now_ms = ws_monotonic_ms();
        if (cancel != NULL && *cancel != 0) {
            client_fail(err, "legacy: %s: cancelled", ws_client_url(run->ws));
            return -ECANCELED;
        }
        if (run->bytes != progress_bytes) {
            progress_bytes = run->bytes;
            progress_ms = now_ms;
        }
        if (now_ms - progress_ms >= ws_client_timeout_ms(run->ws)) {
            client_fail(err, "legacy: %s: timed out: no data for %g s in transfer %u",
                        ws_client_url(run->ws), ws_client_timeout_ms(run->ws) / 1e3, transfer + 1);
            return -ETIMEDOUT;
        }
        report_progress(run, now_ms);
    }
    *transfer_ms = run->last_byte_ms - request_ms;
    return rc == 1 ? 0 : rc;
}

int legacy_client_run(const struct client_target *target, unsigned transfers,
                      client_progress_fn progress, void *progress_context,
                      const volatile sig_atomic_t *cancel, struct legacy_result *result,
                      struct client_error *err)
{
    struct legacy_run run = {
        .progress = progress,
        .progress_context = progress_context,
    };
    struct ws_client_options options = {
        .target = target,
        .phase = "legacy",
        .path = LEGACY_PATH,
        .max_message_bytes = LEGACY_MAX_MESSAGE_BYTES,
        .handler = {.binary = on_binary},
        .context = &run,
    };
    struct client_error close_err;
    int rc;

    memset(result, 0, sizeof(*result));
    err->status = 0;
    if (transfers < 1 || transfers > LEGACY_MAX_TRANSFERS) {
        client_fail(err, "legacy: the transfer count %u is outside 1 to %d", transfers,
                    LEGACY_MAX_TRANSFERS);
        return -EINVAL;
    }
    rc = ws_client_connect(&options, &run.ws, err);
    if (rc != 0)
        return rc;

    for (unsigned i = 0; rc == 0 && i < transfers; i++) {
        rc = run_transfer(&run, i, cancel, &result->transfer_ms[i], err);
        if (rc == 0)
            result->transfers++;
    }
    if (rc == 0) {
        result->bytes = run.bytes;
        result->duration_ms = run.last_byte_ms - run.first_request_ms;
        result->bps =
            result->duration_ms > 0 ? (double)run.bytes * 8 / (result->duration_ms / 1e3) : 0;
    }
    /* A close handshake that fails changes none of the figures, so it is no error. After a
     * timeout the server is stalled and would not reply to a close frame in time. */
    if (rc == -ETIMEDOUT)
        ws_client_abort(run.ws, WS_CLOSE_GOING_AWAY);
    else
        ws_client_close(run.ws, rc == -ECANCELED ? WS_CLOSE_GOING_AWAY : WS_CLOSE_NORMAL,
                        &close_err);
    ws_client_free(run.ws);
    return rc;
}
