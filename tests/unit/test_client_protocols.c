/* Tests of the latency probes, the ndt7 client and the /ws transfer against a scripted
 * server on a loopback port: the requests they send, the figures they compute, and how
 * they fail. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include <errno.h>
#include <unistd.h>

#include "client/legacy_client.h"
#include "client/ndt7_client.h"
#include "client/probe.h"
#include "client/wsclient.h"
#include "test_client_mock.h"

#define UPGRADE_NDT7                                                                               \
    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"            \
    "Sec-WebSocket-Accept: %s\r\nSec-WebSocket-Protocol: net.measurementlab.ndt.v7\r\n\r\n"

#define MEASUREMENT                                                                                \
    "{\"AppInfo\":{\"ElapsedTime\":1000000,\"NumBytes\":24576},\"Origin\":\"server\","             \
    "\"Test\":\"download\",\"TCPInfo\":{\"MinRTT\":1500,\"RTT\":2500}}"

static const uint8_t close_1000[] = {0x03, 0xe8};

static void target_for(const struct mock *mock, struct client_target *target)
{
    memset(target, 0, sizeof(*target));
    snprintf(target->base_url, sizeof(target->base_url), "http://127.0.0.1:%d", mock->port);
    target->timeout_s = 2;
}

/* ---- ndt7 ---- */

static void script_ndt7_download(struct mock *mock, int fd)
{
    static uint8_t payload[8192];

    send_server_frame(fd, 0x82, payload, sizeof(payload));
    /* A message in two frames with a ping between them. */
    send_server_frame(fd, 0x02, payload, 4096);
    send_server_frame(fd, 0x89, "m1", 2);
    send_server_frame(fd, 0x80, payload, 4096);
    send_server_frame(fd, 0x81, MEASUREMENT, strlen(MEASUREMENT));
    send_server_frame(fd, 0x81, "not json", 8);
    send_server_frame(fd, 0x82, payload, sizeof(payload));
    send_server_frame(fd, 0x88, close_1000, sizeof(close_1000));
    mock_drain_until_close(mock, fd);
}

static void ndt7_download_counts_and_parses(void **state)
{
    struct mock mock;
    struct client_target target;
    struct ndt7_result result;
    struct client_error err;

    (void)state;
    mock_start(&mock, UPGRADE_NDT7, script_ndt7_download);
    target_for(&mock, &target);
    assert_int_equal(ndt7_client_run(&target, CLIENT_DOWNLOAD, NULL, NULL, NULL, &result, &err), 0);
    mock_finish(&mock);

    assert_non_null(strstr(mock.request, "GET /ndt/v7/download?client_name=linkspeed HTTP/1.1"));
    assert_non_null(strstr(mock.request, "Sec-WebSocket-Protocol: net.measurementlab.ndt.v7"));
    assert_int_equal(result.throughput.bytes, 3 * 8192);
    assert_int_equal(result.throughput.server_bytes, 0);
    assert_int_equal(result.throughput.streams, 1);
    assert_true(result.throughput.bps > 0);
    assert_true(result.has_server_measurement);
    assert_int_equal(result.server_measurements, 1);
    assert_true(result.server_bps == 24576 * 8);
    assert_true(result.server_min_rtt_ms == 1.5);
    assert_true(result.server_rtt_ms == 2.5);
    assert_int_equal(result.close_code, 1000);
    assert_true(result.throughput.tcp.available);
    assert_int_equal(result.throughput.tcp.connections, 1);
    assert_int_equal(mock.pongs, 1);
    assert_int_equal(mock.close_code, 1000);
    assert_int_equal(mock.unmasked_frames, 0);
}

/* Reads upload messages until about 200 kB arrived, sends a measurement, then closes. */
static void script_ndt7_upload(struct mock *mock, int fd)
{
    static uint8_t discard[65536];

    while (mock->data_bytes < 200000) {
        uint8_t header[14];
        uint64_t length;

        if (!read_exact(fd, header, 2))
            return;
        length = header[1] & 0x7f;
        size_t extra = 0;
        if (length == 126)
            extra = 2;
        else if (length == 127)
            extra = 8;
        if (!read_exact(fd, header + 2, extra + 4))
            return;
        if (extra > 0) {
            length = 0;
            for (size_t i = 0; i < extra; i++)
                length = length << 8 | header[2 + i];
        }
        if (mock->frame_count < 4)
            mock->frames[mock->frame_count++].length = (size_t)length;
        mock->data_bytes += length;
        while (length > 0) {
            size_t piece = length < sizeof(discard) ? (size_t)length : sizeof(discard);
            if (!read_exact(fd, discard, piece))
                return;
            length -= piece;
        }
    }
    send_server_frame(fd, 0x81, MEASUREMENT, strlen(MEASUREMENT));
    send_server_frame(fd, 0x88, close_1000, sizeof(close_1000));
    mock_drain_until_close(mock, fd);
}

static void ndt7_upload_grows_messages(void **state)
{
    struct mock mock;
    struct client_target target;
    struct ndt7_result result;
    struct client_error err;

    (void)state;
    mock_start(&mock, UPGRADE_NDT7, script_ndt7_upload);
    target_for(&mock, &target);
    assert_int_equal(ndt7_client_run(&target, CLIENT_UPLOAD, NULL, NULL, NULL, &result, &err), 0);
    mock_finish(&mock);

    assert_non_null(strstr(mock.request, "GET /ndt/v7/upload?client_name=linkspeed HTTP/1.1"));
    /* The spec's first size, then the same until a message is 1/16 of the bytes sent. */
    assert_int_equal(mock.frames[0].length, 8192);
    assert_int_equal(mock.frames[1].length, 8192);
    assert_true(result.throughput.bytes >= mock.data_bytes);
    assert_int_equal(result.server_measurements, 1);
    assert_int_equal(result.throughput.server_bytes, 24576);
    assert_int_equal(result.close_code, 1000);
    assert_int_equal(mock.close_code, 1000);
}

static void script_binary_in_upload(struct mock *mock, int fd)
{
    send_server_frame(fd, 0x82, "x", 1);
    mock_drain_until_close(mock, fd);
}

static void ndt7_upload_rejects_server_binary(void **state)
{
    struct mock mock;
    struct client_target target;
    struct ndt7_result result;
    struct client_error err;

    (void)state;
    mock_start(&mock, UPGRADE_NDT7, script_binary_in_upload);
    target_for(&mock, &target);
    assert_int_equal(ndt7_client_run(&target, CLIENT_UPLOAD, NULL, NULL, NULL, &result, &err),
                     -EPROTO);
    mock_finish(&mock);
    assert_non_null(strstr(err.message, "ndt7 upload: ws://127.0.0.1:"));
    assert_non_null(strstr(err.message, "binary message during the upload"));
}

static void ndt7_requires_subprotocol(void **state)
{
    struct mock mock;
    struct client_target target;
    struct ndt7_result result;
    struct client_error err;

    (void)state;
    mock_start(&mock,
               "HTTP/1.1 101 OK\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               "Sec-WebSocket-Accept: %s\r\n\r\n",
               NULL);
    target_for(&mock, &target);
    assert_int_equal(ndt7_client_run(&target, CLIENT_DOWNLOAD, NULL, NULL, NULL, &result, &err),
                     -EPROTO);
    mock_finish(&mock);
    assert_non_null(strstr(err.message, "net.measurementlab.ndt.v7"));
}

static void script_download_then_hang_up(struct mock *mock, int fd)
{
    static uint8_t payload[8192];

    (void)mock;
    send_server_frame(fd, 0x82, payload, sizeof(payload));
}

/* A connection that ends without a close frame long before the 10 s are over fails the
 * test, with the URL and the time in the message. */
static void ndt7_download_fails_on_early_end(void **state)
{
    struct mock mock;
    struct client_target target;
    struct ndt7_result result;
    struct client_error err;
    char expected[256];

    (void)state;
    mock_start(&mock, UPGRADE_NDT7, script_download_then_hang_up);
    target_for(&mock, &target);
    assert_int_equal(ndt7_client_run(&target, CLIENT_DOWNLOAD, NULL, NULL, NULL, &result, &err),
                     -ECONNRESET);
    mock_finish(&mock);
    snprintf(expected, sizeof(expected),
             "ndt7 download: ws://127.0.0.1:%d/ndt/v7/download?client_name=linkspeed: the "
             "connection ended after 0.0 s, before the 10 s test was over (close 1006)",
             mock.port);
    assert_string_equal(err.message, expected);
    assert_int_equal(err.status, WS_CLOSE_ABNORMAL);
}

/* Reads about 100 kB of upload, then hangs up without a close frame. The unread data
 * makes the close a reset. */
static void script_upload_then_hang_up(struct mock *mock, int fd)
{
    static uint8_t discard[65536];
    size_t received = 0;

    (void)mock;
    while (received < 100000) {
        ssize_t count = recv(fd, discard, sizeof(discard), 0);
        if (count <= 0)
            return;
        received += (size_t)count;
    }
}

static void ndt7_upload_fails_on_early_end(void **state)
{
    struct mock mock;
    struct client_target target;
    struct ndt7_result result;
    struct client_error err;
    char expected[256];

    (void)state;
    mock_start(&mock, UPGRADE_NDT7, script_upload_then_hang_up);
    target_for(&mock, &target);
    assert_int_equal(ndt7_client_run(&target, CLIENT_UPLOAD, NULL, NULL, NULL, &result, &err),
                     -ECONNRESET);
    mock_finish(&mock);
    snprintf(expected, sizeof(expected),
             "ndt7 upload: ws://127.0.0.1:%d/ndt/v7/upload?client_name=linkspeed: the "
             "connection ended after ",
             mock.port);
    assert_memory_equal(err.message, expected, strlen(expected));
    assert_non_null(strstr(err.message, " s, before the 10 s test was over (close 1006)"));
    assert_int_equal(err.status, WS_CLOSE_ABNORMAL);
}

/* Receives some upload data, sends a close frame and resets the connection with the rest
 * of the client's data unread, as a server may at the end of its test. */
static void script_close_then_reset(struct mock *mock, int fd)
{
    static uint8_t discard[65536];
    static const uint8_t close_frame[] = {0x88, 0x02, 0x03, 0xe8};
    struct linger reset = {.l_onoff = 1, .l_linger = 0};
    size_t received = 0;

    (void)mock;
    while (received < 100000) {
        ssize_t count = recv(fd, discard, sizeof(discard), 0);
        if (count <= 0)
            return;
        received += (size_t)count;
    }
    /* One write: a second small one could still wait behind Nagle's algorithm when the
     * reset discards the send queue. */
    send(fd, close_frame, sizeof(close_frame), MSG_NOSIGNAL);
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &reset, sizeof(reset));
}

static void ndt7_upload_reads_close_before_reset(void **state)
{
    struct mock mock;
    struct client_target target;
    struct ndt7_result result;
    struct client_error err;

    (void)state;
    mock_start(&mock, UPGRADE_NDT7, script_close_then_reset);
    target_for(&mock, &target);
    assert_int_equal(ndt7_client_run(&target, CLIENT_UPLOAD, NULL, NULL, NULL, &result, &err), 0);
    mock_finish(&mock);
    assert_int_equal(result.close_code, 1000);
}

/* Sends 8 KiB every 500 ms for 9.2 s, then hangs up without a close frame, as servers do
 * that reset at the end of their test. */
static void script_download_until_near_end(struct mock *mock, int fd)
{
    static uint8_t payload[8192];
    double start_ms = ws_monotonic_ms();

    (void)mock;
    while (ws_monotonic_ms() - start_ms < 9200) {
        send_server_frame(fd, 0x82, payload, sizeof(payload));
        usleep(500000);
    }
}

/* The spec recommends that clients tolerate an abrupt end, and near the end of the test
 * it ends the test. This test takes 9.2 s. */
static void ndt7_tolerates_abrupt_end_near_end(void **state)
{
    struct mock mock;
    struct client_target target;
    struct ndt7_result result;
    struct client_error err;

    (void)state;
    mock_start(&mock, UPGRADE_NDT7, script_download_until_near_end);
    target_for(&mock, &target);
    assert_int_equal(ndt7_client_run(&target, CLIENT_DOWNLOAD, NULL, NULL, NULL, &result, &err), 0);
    mock_finish(&mock);
    assert_true(result.throughput.bytes >= 18 * 8192);
    assert_int_equal(result.throughput.bytes % 8192, 0);
    assert_true(result.throughput.duration_ms >= 9000);
    assert_int_equal(result.close_code, WS_CLOSE_ABNORMAL);
}

static void script_close_with_reason_before_data(struct mock *mock, int fd)
{
    static const uint8_t close_payload[] = "\x03\xf0\x1b[2Jbusy\r\nretry\x07";

    send_server_frame(fd, 0x88, close_payload, sizeof(close_payload) - 1);
    mock_drain_until_close(mock, fd);
}

/* A close reason with control characters reaches the message escaped. */
static void ndt7_escapes_close_reason(void **state)
{
    struct mock mock;
    struct client_target target;
    struct ndt7_result result;
    struct client_error err;

    (void)state;
    mock_start(&mock, UPGRADE_NDT7, script_close_with_reason_before_data);
    target_for(&mock, &target);
    assert_int_equal(ndt7_client_run(&target, CLIENT_DOWNLOAD, NULL, NULL, NULL, &result, &err),
                     -EIO);
    mock_finish(&mock);
    assert_int_equal(err.status, 1008);
    assert_non_null(strstr(err.message, "before any data moved"));
    assert_non_null(strstr(err.message, "busy"));
    assert_no_control_characters(err.message);
}

/* ---- /ws ---- */

#define UPGRADE_PLAIN                                                                              \
    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"            \
    "Sec-WebSocket-Accept: %s\r\n\r\n"

/* Responds to each text request with a 3000-byte binary message in two frames and a ping
 * between them. The request after `context` of them gets a close with 1008 instead. */
static void script_legacy(struct mock *mock, int fd)
{
    static uint8_t payload[3000];
    unsigned limit = mock->context != NULL ? *(unsigned *)mock->context : 100;

    for (unsigned served = 0;; served++) {
        mock->frame_count = 0;
        if (!read_client_frame(mock, fd))
            return;
        if (mock->frames[0].opcode == WS_OPCODE_CLOSE) {
            mock->close_code = mock->frames[0].payload[0] << 8 | mock->frames[0].payload[1];
            send_server_frame(fd, 0x88, mock->frames[0].payload, 2);
            return;
        }
        if (mock->frames[0].opcode != WS_OPCODE_TEXT || mock->frames[0].length != 5 ||
            memcmp(mock->frames[0].payload, "start", 5) != 0)
            return;
        if (served == limit) {
            static const uint8_t close_1008[] = {0x03, 0xf0, 'q', 'u', 'e', 'u', 'e'};
            send_server_frame(fd, 0x88, close_1008, sizeof(close_1008));
            mock_drain_until_close(mock, fd);
            return;
        }
        mock->data_frames++;
        send_server_frame(fd, 0x02, payload, 1000);
        send_server_frame(fd, 0x89, "hb", 2);
        send_server_frame(fd, 0x80, payload, 2000);
        if (!read_client_frame(mock, fd) || mock->frames[1].opcode != WS_OPCODE_PONG)
            return;
        mock->pongs++;
    }
}

static void legacy_runs_transfers(void **state)
{
    struct mock mock;
    struct client_target target;
    struct legacy_result result;
    struct client_error err;

    (void)state;
    mock_start(&mock, UPGRADE_PLAIN, script_legacy);
    target_for(&mock, &target);
    assert_int_equal(legacy_client_run(&target, 3, NULL, NULL, NULL, &result, &err), 0);
    mock_finish(&mock);

    assert_non_null(strstr(mock.request, "GET /ws HTTP/1.1"));
    assert_int_equal(result.transfers, 3);
    assert_int_equal(result.bytes, 9000);
    assert_true(result.duration_ms > 0);
    assert_true(result.bps > 0);
    for (int i = 0; i < 3; i++)
        assert_true(result.transfer_ms[i] > 0 && result.transfer_ms[i] <= result.duration_ms);
    assert_int_equal(mock.data_frames, 3);
    assert_int_equal(mock.pongs, 3);
    assert_int_equal(mock.close_code, 1000);
}

static void legacy_reports_server_close(void **state)
{
    struct mock mock;
    struct client_target target;
    struct legacy_result result;
    struct client_error err;
    unsigned limit = 1;

    (void)state;
    mock_start(&mock, UPGRADE_PLAIN, script_legacy);
    mock.context = &limit;
    target_for(&mock, &target);
    assert_int_equal(legacy_client_run(&target, 3, NULL, NULL, NULL, &result, &err), -ECONNRESET);
    mock_finish(&mock);
    assert_int_equal(err.status, 1008);
    assert_non_null(strstr(err.message, "during transfer 2 with 1008: queue"));
}

static void script_legacy_close_with_control_characters(struct mock *mock, int fd)
{
    static const uint8_t close_payload[] = "\x03\xf0\x1b[31mfull\r\nnext\x07";

    if (!read_client_frame(mock, fd))
        return;
    send_server_frame(fd, 0x88, close_payload, sizeof(close_payload) - 1);
    mock_drain_until_close(mock, fd);
}

static void legacy_escapes_close_reason(void **state)
{
    struct mock mock;
    struct client_target target;
    struct legacy_result result;
    struct client_error err;

    (void)state;
    mock_start(&mock, UPGRADE_PLAIN, script_legacy_close_with_control_characters);
    target_for(&mock, &target);
    assert_int_equal(legacy_client_run(&target, 1, NULL, NULL, NULL, &result, &err), -ECONNRESET);
    mock_finish(&mock);
    assert_non_null(strstr(err.message, "during transfer 1 with 1008: "));
    assert_non_null(strstr(err.message, "full"));
    assert_no_control_characters(err.message);
}

static void legacy_rejects_transfer_count(void **state)
{
    struct client_target target = {.base_url = "http://127.0.0.1:1", .timeout_s = 1};
    struct legacy_result result;
    struct client_error err;

    (void)state;
    assert_int_equal(legacy_client_run(&target, 0, NULL, NULL, NULL, &result, &err), -EINVAL);
    assert_int_equal(
        legacy_client_run(&target, LEGACY_MAX_TRANSFERS + 1, NULL, NULL, NULL, &result, &err),
        -EINVAL);
}

/* ---- latency probes ---- */

/* Echoes `context` probes (all when NULL), then closes with 1008. */
static void script_echo(struct mock *mock, int fd)
{
    unsigned limit = mock->context != NULL ? *(unsigned *)mock->context : 1000;

    for (unsigned echoed = 0;; echoed++) {
        mock->frame_count = 0;
        if (!read_client_frame(mock, fd))
            return;
        struct client_frame *frame = &mock->frames[0];
        if (frame->opcode == WS_OPCODE_CLOSE) {
            mock->close_code = frame->payload[0] << 8 | frame->payload[1];
            send_server_frame(fd, 0x88, frame->payload, 2);
            return;
        }
        if (echoed == limit) {
            static const uint8_t close_1008[] = {0x03, 0xf0};
            send_server_frame(fd, 0x88, close_1008, sizeof(close_1008));
            mock_drain_until_close(mock, fd);
            return;
        }
        mock->data_frames++;
        send_server_frame(fd, 0x80 | frame->opcode, frame->payload, frame->length);
    }
}

static void probe_idle_summarizes(void **state)
{
    struct mock mock;
    struct client_target target;
    struct latency_summary summary;
    struct client_error err;

    (void)state;
    mock_start(&mock, UPGRADE_PLAIN, script_echo);
    target_for(&mock, &target);
    assert_int_equal(probe_idle(&target, 5, 1, &summary, &err), 0);
    mock_finish(&mock);

    assert_non_null(strstr(mock.request, "GET /api/v1/latency HTTP/1.1"));
    assert_true(summary.available);
    assert_string_equal(summary.source, "websocket");
    assert_int_equal(summary.samples, 5);
    assert_int_equal(summary.lost, 0);
    assert_true(summary.min_ms > 0);
    assert_true(summary.median_ms >= summary.min_ms);
    assert_true(summary.jitter_ms >= 0);
    assert_int_equal(mock.data_frames, 6); /* the warm-up and 5 counted probes */
    assert_int_equal(mock.close_code, 1000);
}

static void probe_missing_endpoint_is_enoent(void **state)
{
    struct mock mock;
    struct client_target target;
    struct latency_summary summary;
    struct client_error err;

    (void)state;
    mock_start(&mock, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n", NULL);
    target_for(&mock, &target);
    assert_int_equal(probe_idle(&target, 5, 1, &summary, &err), -ENOENT);
    mock_finish(&mock);
    assert_int_equal(err.status, 404);
    assert_non_null(strstr(err.message, "latency: ws://127.0.0.1:"));
    assert_false(summary.available);
}

static void probe_reports_server_close(void **state)
{
    struct mock mock;
    struct client_target target;
    struct latency_summary summary;
    struct client_error err;
    unsigned limit = 3;

    (void)state;
    mock_start(&mock, UPGRADE_PLAIN, script_echo);
    mock.context = &limit;
    target_for(&mock, &target);
    assert_int_equal(probe_idle(&target, 5, 1, &summary, &err), -ECONNRESET);
    mock_finish(&mock);
    assert_int_equal(err.status, 1008);
    assert_non_null(strstr(err.message, "closed the connection with 1008"));
}

static void probe_loaded_counts_probes(void **state)
{
    struct mock mock;
    struct client_target target;
    struct latency_summary summary;
    struct probe_loaded *probes = NULL;
    struct client_error err;

    (void)state;
    mock_start(&mock, UPGRADE_PLAIN, script_echo);
    target_for(&mock, &target);
    assert_int_equal(probe_loaded_start(&target, 10, &probes, &err), 0);
    usleep(300000);
    probe_loaded_stop(probes, &summary);
    mock_finish(&mock);

    assert_true(summary.available);
    /* About 30 probes in 300 ms; the bounds leave room for a slow machine. */
    assert_true(summary.samples >= 10 && summary.samples <= 31);
    assert_int_equal(summary.lost, 0);
    assert_int_equal(mock.close_code, 1000);
}

static void probe_loaded_rejects_fast_interval(void **state)
{
    struct client_target target = {.base_url = "http://127.0.0.1:1", .timeout_s = 1};
    struct probe_loaded *probes = NULL;
    struct client_error err;

    (void)state;
    assert_int_equal(probe_loaded_start(&target, 5, &probes, &err), -EINVAL);
    assert_null(probes);
    assert_non_null(strstr(err.message, "200 probes per second"));
}

/* ---- failures against a stalled server ---- */

/* A stalled server is not waited for a second time for the close handshake: each failure
 * ends within the timeout (1 s here) plus 0.5 s. */
enum { STALL_TIMEOUT_S = 1, STALL_MAX_MS = 1500 };

static void script_download_then_stall(struct mock *mock, int fd)
{
    static uint8_t payload[8192];

    send_server_frame(fd, 0x82, payload, sizeof(payload));
    mock_stall_reading(mock, fd);
}

static void ndt7_download_stall_ends_in_time(void **state)
{
    struct mock mock;
    struct client_target target;
    struct ndt7_result result;
    struct client_error err;

    (void)state;
    mock_start(&mock, UPGRADE_NDT7, script_download_then_stall);
    target_for(&mock, &target);
    target.timeout_s = STALL_TIMEOUT_S;
    double start_ms = ws_monotonic_ms();
    assert_int_equal(ndt7_client_run(&target, CLIENT_DOWNLOAD, NULL, NULL, NULL, &result, &err),
                     -ETIMEDOUT);
    double elapsed_ms = ws_monotonic_ms() - start_ms;
    mock_finish(&mock);
    if (elapsed_ms >= STALL_MAX_MS)
        fail_msg("the failure took %.0f ms", elapsed_ms);
    assert_non_null(strstr(err.message, "timed out: no data for 1 s"));
    assert_int_equal(mock.close_code, WS_CLOSE_GOING_AWAY);
}

static void ndt7_upload_stall_ends_in_time(void **state)
{
    struct mock mock;
    struct client_target target;
    struct ndt7_result result;
    struct client_error err;

    (void)state;
    mock_start(&mock, UPGRADE_NDT7, mock_stall_without_reading);
    target_for(&mock, &target);
    target.timeout_s = STALL_TIMEOUT_S;
    double start_ms = ws_monotonic_ms();
    assert_int_equal(ndt7_client_run(&target, CLIENT_UPLOAD, NULL, NULL, NULL, &result, &err),
                     -ETIMEDOUT);
    double elapsed_ms = ws_monotonic_ms() - start_ms;
    mock_release(&mock);
    mock_finish(&mock);
    if (elapsed_ms >= STALL_MAX_MS)
        fail_msg("the failure took %.0f ms", elapsed_ms);
    assert_non_null(strstr(err.message, "timed out: no data could be sent for 1 s"));
}

static void legacy_stall_ends_in_time(void **state)
{
    struct mock mock;
    struct client_target target;
    struct legacy_result result;
    struct client_error err;

    (void)state;
    mock_start(&mock, UPGRADE_PLAIN, mock_stall_reading);
    target_for(&mock, &target);
    target.timeout_s = STALL_TIMEOUT_S;
    double start_ms = ws_monotonic_ms();
    assert_int_equal(legacy_client_run(&target, 1, NULL, NULL, NULL, &result, &err), -ETIMEDOUT);
    double elapsed_ms = ws_monotonic_ms() - start_ms;
    mock_finish(&mock);
    if (elapsed_ms >= STALL_MAX_MS)
        fail_msg("the failure took %.0f ms", elapsed_ms);
    assert_non_null(strstr(err.message, "timed out: no data for 1 s in transfer 1"));
    assert_int_equal(mock.data_frames, 1);
    assert_int_equal(mock.close_code, WS_CLOSE_GOING_AWAY);
}

/* With a timeout under the 2 s a probe may take, a stall fails at the timeout. */
static void probe_stall_ends_in_time(void **state)
{
    struct mock mock;
    struct client_target target;
    struct latency_summary summary;
    struct client_error err;

    (void)state;
    mock_start(&mock, UPGRADE_PLAIN, mock_stall_reading);
    target_for(&mock, &target);
    target.timeout_s = STALL_TIMEOUT_S;
    double start_ms = ws_monotonic_ms();
    assert_int_equal(probe_idle(&target, 5, 1, &summary, &err), -ETIMEDOUT);
    double elapsed_ms = ws_monotonic_ms() - start_ms;
    mock_finish(&mock);
    if (elapsed_ms >= STALL_MAX_MS)
        fail_msg("the failure took %.0f ms", elapsed_ms);
    assert_non_null(strstr(err.message, "latency: ws://127.0.0.1:"));
    assert_non_null(strstr(err.message, "timed out: no echo for 1 s"));
    assert_int_equal(mock.data_frames, 1);
    assert_int_equal(mock.close_code, WS_CLOSE_GOING_AWAY);
}

/* With a timeout over 2 s, the unanswered first probe fails after 2 s, and the close does
 * not wait out the timeout after that. */
static void probe_lost_first_echo_ends_in_time(void **state)
{
    struct mock mock;
    struct client_target target;
    struct latency_summary summary;
    struct client_error err;

    (void)state;
    mock_start(&mock, UPGRADE_PLAIN, mock_stall_reading);
    target_for(&mock, &target);
    target.timeout_s = 5;
    double start_ms = ws_monotonic_ms();
    assert_int_equal(probe_idle(&target, 5, 1, &summary, &err), -ETIMEDOUT);
    double elapsed_ms = ws_monotonic_ms() - start_ms;
    mock_finish(&mock);
    if (elapsed_ms >= 2500)
        fail_msg("the failure took %.0f ms", elapsed_ms);
    assert_non_null(strstr(err.message, "no echo of the first probe within 2000 ms"));
    assert_int_equal(mock.close_code, WS_CLOSE_GOING_AWAY);
}

/* Echoes the warm-up probe, then stalls. */
static void script_echo_once_then_stall(struct mock *mock, int fd)
{
    if (!read_client_frame(mock, fd))
        return;
    send_server_frame(fd, 0x82, mock->frames[0].payload, mock->frames[0].length);
    mock_stall_reading(mock, fd);
}

/* Loaded probes against a server that stalls after the warm-up: the stop does not wait
 * for a close handshake with it. With a 1 s timeout the probes stopped at the timeout.
 * With 5 s the stop comes first, when the last echo is older than the 2 s loss deadline. */
static void probe_loaded_stall_stops_in_time(void **state)
{
    static const struct {
        double timeout_s;
        unsigned stall_us;
    } cases[] = {{1, 1300000}, {5, 2300000}};

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct mock mock;
        struct client_target target;
        struct latency_summary summary;
        struct probe_loaded *probes = NULL;
        struct client_error err;

        mock_start(&mock, UPGRADE_PLAIN, script_echo_once_then_stall);
        target_for(&mock, &target);
        target.timeout_s = cases[i].timeout_s;
        assert_int_equal(probe_loaded_start(&target, 10, &probes, &err), 0);
        usleep(cases[i].stall_us);
        double start_ms = ws_monotonic_ms();
        probe_loaded_stop(probes, &summary);
        double elapsed_ms = ws_monotonic_ms() - start_ms;
        mock_finish(&mock);
        if (elapsed_ms >= 500)
            fail_msg("case %zu: the stop took %.0f ms", i, elapsed_ms);
        assert_false(summary.available);
        assert_int_equal(mock.close_code, WS_CLOSE_GOING_AWAY);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(ndt7_download_counts_and_parses),
        cmocka_unit_test(ndt7_upload_grows_messages),
        cmocka_unit_test(ndt7_upload_rejects_server_binary),
        cmocka_unit_test(ndt7_requires_subprotocol),
        cmocka_unit_test(ndt7_download_fails_on_early_end),
        cmocka_unit_test(ndt7_upload_fails_on_early_end),
        cmocka_unit_test(ndt7_upload_reads_close_before_reset),
        cmocka_unit_test(ndt7_tolerates_abrupt_end_near_end),
        cmocka_unit_test(ndt7_escapes_close_reason),
        cmocka_unit_test(ndt7_download_stall_ends_in_time),
        cmocka_unit_test(ndt7_upload_stall_ends_in_time),
        cmocka_unit_test(legacy_stall_ends_in_time),
        cmocka_unit_test(probe_stall_ends_in_time),
        cmocka_unit_test(probe_lost_first_echo_ends_in_time),
        cmocka_unit_test(probe_loaded_stall_stops_in_time),
        cmocka_unit_test(legacy_runs_transfers),
        cmocka_unit_test(legacy_reports_server_close),
        cmocka_unit_test(legacy_escapes_close_reason),
        cmocka_unit_test(legacy_rejects_transfer_count),
        cmocka_unit_test(probe_idle_summarizes),
        cmocka_unit_test(probe_missing_endpoint_is_enoent),
        cmocka_unit_test(probe_reports_server_close),
        cmocka_unit_test(probe_loaded_counts_probes),
        cmocka_unit_test(probe_loaded_rejects_fast_interval),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
