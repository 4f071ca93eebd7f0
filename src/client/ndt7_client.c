/* The client side of M-Lab's ndt7 protocol, specification v0.11 (m-lab/ndt-server,
 * spec/ndt7-protocol.md), over wsclient.c.
 *
 * Download: binary messages are counted, not copied. Text messages are the server's
 * measurements (JSON), read for the figures of struct ndt7_result.
 *
 * Upload: binary messages of random bytes, 8 KiB first and doubled while a message is
 * under 1/16 of the bytes sent so far, as the spec's appendix suggests. They grow up to
 * 8 MiB, the size M-Lab's JavaScript client sends, while the spec allows 16 MiB. The
 * client stops after 10 s and closes with 1000 unless the server closed first.
 *
 * In both directions the rate is the client's count of binary payload bytes over the time
 * from the end of the handshake to the last of them. */
#include "ndt7_client.h"
#include "wsclient.h"
#include "core/tcpinfo.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <openssl/rand.h>
#include <stdlib.h>
#include <string.h>

#define NDT7_SUBPROTOCOL "net.measurementlab.ndt.v7"
/* ndt7 servers store the query string as the client's metadata. */
#define NDT7_QUERY "?client_name=linkspeed"

enum {
    NDT7_MAX_MESSAGE_BYTES = 1 << 24, /* the spec's limit, which a receiver must accept */
    NDT7_FIRST_UPLOAD_BYTES = 1 << 13,
    NDT7_MAX_UPLOAD_BYTES = 1 << 23,
    NDT7_SCALING_FRACTION = 16,
    /* Uploads go out in frames of at most this size, so that a pong or the close frame
     * waits behind at most one frame, not a whole message. */
    NDT7_UPLOAD_FRAME_BYTES = 1 << 20,
    NDT7_TEST_MS = 10000,
    /* A connection that ends without a close frame from this time on ends the test, and
     * earlier it fails the test (see finish_abrupt_end()). */
    NDT7_MIN_ABRUPT_END_MS = 9000,
    /* The spec lets either side end a test still running after 13 s. */
    NDT7_MAX_TEST_MS = 13000,
    NDT7_PROGRESS_INTERVAL_MS = 100,
    NDT7_SERVICE_SLICE_MS = 100,
};

struct ndt7_run {
    enum client_direction direction;
    const char *phase;
    struct ws_client *ws;
    struct ndt7_result *result;
    uint64_t bytes;
    double last_byte_ms;
    bool binary_during_upload;

    client_progress_fn progress;
    void *progress_context;
    struct ws_rate_window rate_window;
    double next_progress_ms;
};

static double json_number(json_t *object, const char *name)
{
    return json_number_value(json_object_get(object, name));
}

/* Reads a server measurement; text that is not a JSON object is ignored, as the spec
 * makes measurements optional. */
static int on_text(void *context, const char *text, size_t length)
{
    struct ndt7_run *run = context;
    struct ndt7_result *result = run->result;
    json_t *root = json_loadb(text, length, 0, NULL);

    if (!json_is_object(root))
        goto out;
    const char *origin = json_string_value(json_object_get(root, "Origin"));
    if (origin != NULL && strcmp(origin, "server") != 0)
        goto out;

    json_t *app_info = json_object_get(root, "AppInfo");
    json_t *tcp_info = json_object_get(root, "TCPInfo");
    if (!json_is_object(app_info) && !json_is_object(tcp_info))
        goto out;
    result->server_measurements++;
    result->has_server_measurement = true;
    double elapsed_us = json_number(app_info, "ElapsedTime");
    double num_bytes = json_number(app_info, "NumBytes");
    if (elapsed_us > 0)
        result->server_bps = num_bytes * 8 / (elapsed_us / 1e6);
    /* In an upload, the server's count is the bytes it confirmed receiving. */
    if (run->direction == CLIENT_UPLOAD && num_bytes > 0)
        result->throughput.server_bytes = (uint64_t)num_bytes;
    if (json_number(tcp_info, "MinRTT") > 0)
        result->server_min_rtt_ms = json_number(tcp_info, "MinRTT") / 1e3;
    if (json_number(tcp_info, "RTT") > 0)
        result->server_rtt_ms = json_number(tcp_info, "RTT") / 1e3;
out:
    json_decref(root);
    return 0;
}

static int on_binary(void *context, const uint8_t *payload, size_t length, bool final)
{
    struct ndt7_run *run = context;

    (void)payload;
    (void) final;
    if (run->direction == CLIENT_UPLOAD) {
        /* The spec forbids binary messages from the server during an upload. */
        run->binary_during_upload = true;
        return -EPROTO;
    }
    run->bytes += length;
    if (length > 0)
        run->last_byte_ms = ws_monotonic_ms();
    return 0;
}

static void report_progress(struct ndt7_run *run, double now_ms)
{
    struct client_progress progress = {
        .phase = client_direction_name(run->direction),
        .streams = 1,
    };

    if (run->progress == NULL || now_ms < run->next_progress_ms)
        return;
    run->next_progress_ms = now_ms + NDT7_PROGRESS_INTERVAL_MS;
    progress.elapsed_ms = now_ms - ws_client_open_ms(run->ws);
    progress.bytes = run->bytes;
    progress.current_bps = ws_rate_window_add(&run->rate_window, now_ms, run->bytes);
    run->progress(run->progress_context, &progress);
}

static bool cancelled(const volatile sig_atomic_t *cancel)
{
    return cancel != NULL && *cancel != 0;
}

/* Decides how a test ends whose connection ended without a close frame (close 1006, an
 * EOF or a reset). The spec recommends that clients tolerate an abrupt end, and some
 * servers reset the connection at the end of their 10 s instead of closing it. So an end
 * at or after NDT7_MIN_ABRUPT_END_MS from the handshake ends the test, and the caller sees
 * it as result->close_code 1006. An earlier end fails the test. */
static int finish_abrupt_end(struct ndt7_run *run, struct client_error *err)
{
    double elapsed_ms = ws_monotonic_ms() - ws_client_open_ms(run->ws);

    if (elapsed_ms >= NDT7_MIN_ABRUPT_END_MS)
        return 0;
    err->status = WS_CLOSE_ABNORMAL;
    /* Rounded down, so that an end just before 9 s does not read as 9.0 s. */
    client_fail(err,
                "%s: %s: the connection ended after %.1f s, before the %d s test was over "
                "(close %d)",
                run->phase, ws_client_url(run->ws), floor(elapsed_ms / 100) / 10,
                NDT7_TEST_MS / 1000, WS_CLOSE_ABNORMAL);
    return -ECONNRESET;
}

/* Returns the test's result from the value its loop stopped with: rc is 0, 1 when the
 * connection ended, or a negative code with *err filled. A close frame from the server,
 * with any code and at any time, ends the test. */
static int finish_test(struct ndt7_run *run, int rc, struct client_error *err)
{
    int close_code = ws_client_close_code(run->ws);

    if (close_code == WS_CLOSE_ABNORMAL)
        return finish_abrupt_end(run, err);
    if (rc == 1)
        return 0;
    /* A send that failed after the server's close frame arrived is the end of an upload. */
    if (rc < 0 && close_code != 0 && run->direction == CLIENT_UPLOAD)
        return 0;
    return rc;
}

static int run_download(struct ndt7_run *run, const volatile sig_atomic_t *cancel,
                        struct client_error *err)
{
    double open_ms = ws_client_open_ms(run->ws);
    double progress_ms = open_ms;
    uint64_t progress_bytes = 0;

    for (;;) {
        int rc = ws_client_service(run->ws, NDT7_SERVICE_SLICE_MS, err);
        double now_ms = ws_monotonic_ms();

        if (rc != 0)
            return finish_test(run, rc, err);
        if (cancelled(cancel)) {
            client_fail(err, "%s: %s: cancelled", run->phase, ws_client_url(run->ws));
            return -ECANCELED;
        }
        if (now_ms - open_ms >= NDT7_MAX_TEST_MS)
            return 0; /* the caller closes with 1000, as the spec allows after 13 s */
        if (run->bytes != progress_bytes) {
            progress_bytes = run->bytes;
            progress_ms = now_ms;
        }
        if (now_ms - progress_ms >= ws_client_timeout_ms(run->ws)) {
            client_fail(err, "%s: %s: timed out: no data for %g s", run->phase,
                        ws_client_url(run->ws), ws_client_timeout_ms(run->ws) / 1e3);
            return -ETIMEDOUT;
        }
        report_progress(run, now_ms);
    }
}

/* Fills a buffer with random bytes for the upload messages.
 * NOTE: every message sends bytes of this one buffer, so over plain ws a deduplicating
 * middlebox could find repeated content; over wss TLS makes every record differ. */
static uint8_t *random_payload(size_t length)
{
    uint8_t *payload = malloc(length);

    if (payload != NULL && RAND_bytes(payload, (int)length) != 1) {
        free(payload);
        payload = NULL;
    }
    return payload;
}

/* Sends one message of `size` bytes as frames of at most NDT7_UPLOAD_FRAME_BYTES. Returns
 * 1 when it stopped early because the server closed or the test time ran out.
 *
 * The frames skip the XOR pass of masking (WS_SEND_RANDOM_PAYLOAD, see wsclient.c for why
 * that is sound). Measured on loopback against `linkspeed serve --workers 1` on a shared
 * 2-core VM, 3 uploads each way: the client used 0.17 to 0.18 s of CPU per GB sent
 * without the pass and 0.24 to 0.31 s with it. */
static int send_message(struct ndt7_run *run, const uint8_t *payload, size_t size, double end_ms,
                        struct client_error *err)
{
    size_t offset = 0;
    bool first = true;

    while (offset < size) {
        size_t frame =
            size - offset < NDT7_UPLOAD_FRAME_BYTES ? size - offset : NDT7_UPLOAD_FRAME_BYTES;
        unsigned flags = WS_SEND_RANDOM_PAYLOAD | (offset + frame < size ? WS_SEND_MORE : 0);
        int rc = ws_client_send_frame(run->ws, first ? WS_OPCODE_BINARY : WS_OPCODE_CONTINUATION,
                                      payload + offset, frame, flags, &run->bytes, err);

        if (rc != 0)
            return rc;
        run->last_byte_ms = ws_monotonic_ms();
        offset += frame;
        first = false;
        /* A close frame may follow any frame, so a long message is not finished first. */
        if (ws_client_close_code(run->ws) != 0 || run->last_byte_ms >= end_ms)
            return 1;
    }
    return 0;
}

static int run_upload(struct ndt7_run *run, const volatile sig_atomic_t *cancel,
                      struct client_error *err)
{
    double end_ms = ws_client_open_ms(run->ws) + NDT7_TEST_MS;
    uint8_t *payload = random_payload(NDT7_MAX_UPLOAD_BYTES);
    size_t size = NDT7_FIRST_UPLOAD_BYTES;
    int rc = 0;

    if (payload == NULL) {
        client_fail(err, "%s: no memory or random bytes for a %d-byte upload message", run->phase,
                    NDT7_MAX_UPLOAD_BYTES);
        return -ENOMEM;
    }
    while (rc == 0) {
        rc = send_message(run, payload, size, end_ms, err);
        if (rc == 0 && size < NDT7_MAX_UPLOAD_BYTES && size < run->bytes / NDT7_SCALING_FRACTION)
            size *= 2;
        if (rc == 0)
            rc = ws_client_service(run->ws, 0, err); /* sends pongs, reads measurements */
        if (rc == 0 && cancelled(cancel)) {
            client_fail(err, "%s: %s: cancelled", run->phase, ws_client_url(run->ws));
            rc = -ECANCELED;
        }
        if (rc == 0)
            report_progress(run, ws_monotonic_ms());
    }
    free(payload);
    if (run->binary_during_upload) {
        client_fail(err, "%s: %s: the server sent a binary message during the upload", run->phase,
                    ws_client_url(run->ws));
        return -EPROTO;
    }
    return finish_test(run, rc, err);
}

/* Fills the client's TCP figures from TCP_INFO on its socket. */
static void sample_tcp(struct ndt7_run *run, struct tcp_summary *tcp)
{
    struct tcpinfo_summary summary;
    json_t *tcp_json = NULL;
    json_t *bbr_json = NULL;
    double elapsed_us = (ws_monotonic_ms() - ws_client_open_ms(run->ws)) * 1e3;

    if (tcpinfo_sample(ws_client_socket(run->ws), (uint64_t)elapsed_us, &summary, &tcp_json,
                       &bbr_json) != 0)
        return;
    tcp->available = true;
    tcp->connections = 1;
    tcp->min_rtt_ms = summary.min_rtt_us / 1e3;
    tcp->rtt_ms = summary.rtt_us / 1e3;
    tcp->bytes_acked = summary.bytes_acked;
    tcp->bytes_received = summary.bytes_received;
    tcp->bytes_retrans = (uint64_t)json_integer_value(json_object_get(tcp_json, "BytesRetrans"));
    tcp->retransmits = (uint64_t)json_integer_value(json_object_get(tcp_json, "TotalRetrans"));
    json_decref(tcp_json);
    json_decref(bbr_json);
}

static void fill_throughput(struct ndt7_run *run, double end_ms)
{
    struct throughput_result *throughput = &run->result->throughput;
    double open_ms = ws_client_open_ms(run->ws);
    double active_ms = (run->last_byte_ms > open_ms ? run->last_byte_ms : open_ms) - open_ms;

    throughput->bytes = run->bytes;
    throughput->streams = 1;
    throughput->duration_ms = end_ms - open_ms;
    throughput->stable_window_ms = active_ms;
    throughput->bps = active_ms > 0 ? (double)run->bytes * 8 / (active_ms / 1e3) : 0;
}

int ndt7_client_run(const struct client_target *target, enum client_direction direction,
                    client_progress_fn progress, void *progress_context,
                    const volatile sig_atomic_t *cancel, struct ndt7_result *result,
                    struct client_error *err)
{
    bool download = direction == CLIENT_DOWNLOAD;
    struct ndt7_run run = {
        .direction = direction,
        .phase = download ? "ndt7 download" : "ndt7 upload",
        .result = result,
        .progress = progress,
        .progress_context = progress_context,
    };
    struct ws_client_options options = {
        .target = target,
        .phase = run.phase,
        .path = download ? "/ndt/v7/download" NDT7_QUERY : "/ndt/v7/upload" NDT7_QUERY,
        .subprotocol = NDT7_SUBPROTOCOL,
        .max_message_bytes = NDT7_MAX_MESSAGE_BYTES,
        .handler = {.binary = on_binary, .text = on_text},
        .context = &run,
    };
    int rc;

    memset(result, 0, sizeof(*result));
    err->status = 0;
    rc = ws_client_connect(&options, &run.ws, err);
    if (rc != 0)
        return rc;

    rc = download ? run_download(&run, cancel, err) : run_upload(&run, cancel, err);
    double end_ms = ws_monotonic_ms();
    if (rc == 0) {
        struct client_error close_err;
        /* The server's last measurement may still arrive while the close completes. A
         * failure here changes no figure, so it is not an error of the test. */
        ws_client_close(run.ws, WS_CLOSE_NORMAL, &close_err);
        result->close_code = ws_client_close_code(run.ws);
        fill_throughput(&run, end_ms);
        sample_tcp(&run, &result->throughput.tcp);
        if (run.bytes == 0) {
            err->status = result->close_code;
            rc = client_fail(err,
                             "%s: %s: the test ended with close code %d before any data "
                             "moved%s%s",
                             run.phase, ws_client_url(run.ws), result->close_code,
                             ws_client_close_reason(run.ws)[0] ? ": " : "",
                             ws_client_close_reason(run.ws));
        }
    } else if (rc == -ETIMEDOUT) {
        /* The server is stalled, so waiting for its close frame would only double the
         * time the failure takes. */
        ws_client_abort(run.ws, WS_CLOSE_GOING_AWAY);
    } else {
        struct client_error close_err;
        ws_client_close(run.ws, rc == -ECANCELED ? WS_CLOSE_GOING_AWAY : WS_CLOSE_NORMAL,
                        &close_err);
    }
    ws_client_free(run.ws);
    return rc;
}
