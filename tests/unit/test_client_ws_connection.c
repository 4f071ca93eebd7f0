/* Tests of the client WebSocket connection (wsclient.c) against a scripted server on a
 * loopback port: upgrade checks, masking, pings, the close handshake and protocol errors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <unistd.h>

#include "client/wsclient.h"
#include "test_client_mock.h"

/* What the client callbacks saw. */
struct received {
    uint8_t binary[MAX_FRAME_PAYLOAD];
    size_t binary_length;
    unsigned binary_messages;
    char text[MAX_FRAME_PAYLOAD];
    unsigned text_messages;
};

static int on_binary(void *context, const uint8_t *payload, size_t length, bool final)
{
    struct received *received = context;

    assert_true(received->binary_length + length <= sizeof(received->binary));
    memcpy(received->binary + received->binary_length, payload, length);
    received->binary_length += length;
    if (final)
        received->binary_messages++;
    return 0;
}

static int on_text(void *context, const char *text, size_t length)
{
    struct received *received = context;

    assert_true(length < sizeof(received->text));
    memcpy(received->text, text, length + 1);
    received->text_messages++;
    return 0;
}

static int connect_with_timeout(struct mock *mock, double timeout_s, const char *subprotocol,
                                struct received *received, struct ws_client **client,
                                struct client_error *err)
{
    struct client_target target = {.timeout_s = timeout_s};
    struct ws_client_options options = {
        .target = &target,
        .phase = "test",
        .path = "/echo",
        .subprotocol = subprotocol,
        .max_message_bytes = 1000,
        .handler = {.binary = on_binary, .text = on_text},
        .context = received,
    };

    snprintf(target.base_url, sizeof(target.base_url), "http://127.0.0.1:%d", mock->port);
    memset(err, 0, sizeof(*err));
    return ws_client_connect(&options, client, err);
}

static int connect_to(struct mock *mock, const char *subprotocol, struct received *received,
                      struct ws_client **client, struct client_error *err)
{
    return connect_with_timeout(mock, 2, subprotocol, received, client, err);
}

/* Serves the client until it has seen `count` binary messages or the connection ended. */
static int serve_until_binary(struct ws_client *client, struct received *received, unsigned count,
                              struct client_error *err)
{
    int rc = 0;

    for (int i = 0; i < 100 && rc == 0 && received->binary_messages < count; i++)
        rc = ws_client_service(client, 50, err);
    return rc;
}

static void script_echo_ping_close(struct mock *mock, int fd)
{
    static const uint8_t close_payload[] = {0x03, 0xe8, 'd', 'o', 'n', 'e'};

    if (!read_client_frame(mock, fd))
        return;
    send_server_frame(fd, 0x82, mock->frames[0].payload, mock->frames[0].length);
    send_server_frame(fd, 0x89, "abc", 3);
    if (!read_client_frame(mock, fd))
        return;
    send_server_frame(fd, 0x88, close_payload, sizeof(close_payload));
    read_client_frame(mock, fd);
}

/* A masked probe goes out, its echo comes back, a ping gets its pong with the same
 * payload, and the server's close is echoed with its code. */
static void connection_echo_ping_close(void **state)
{
    struct mock mock;
    struct received received = {0};
    struct client_error err;
    struct ws_client *client = NULL;

    (void)state;
    mock_start(&mock, UPGRADE_OK, script_echo_ping_close);
    assert_int_equal(connect_to(&mock, NULL, &received, &client, &err), 0);
    assert_int_equal(ws_client_send_frame(client, WS_OPCODE_BINARY, "probe", 5, 0, NULL, &err), 0);
    assert_int_equal(serve_until_binary(client, &received, 1, &err), 0);
    assert_int_equal(received.binary_length, 5);
    assert_memory_equal(received.binary, "probe", 5);

    int rc = 0;
    for (int i = 0; i < 100 && rc == 0; i++)
        rc = ws_client_service(client, 50, &err);
    assert_int_equal(rc, 1);
    assert_int_equal(ws_client_close_code(client), 1000);
    assert_string_equal(ws_client_close_reason(client), "done");
    assert_int_equal(ws_client_close(client, WS_CLOSE_NORMAL, &err), 0);
    ws_client_free(client);
    mock_finish(&mock);

    assert_non_null(strstr(mock.request, "GET /echo HTTP/1.1\r\n"));
    assert_non_null(strstr(mock.request, "Host: 127.0.0.1:"));
    assert_non_null(strstr(mock.request, "Sec-WebSocket-Version: 13\r\n"));
    assert_null(strstr(mock.request, "Sec-WebSocket-Protocol"));
    assert_int_equal(mock.frame_count, 3);
    assert_true(mock.frames[0].masked);
    assert_int_equal(mock.frames[0].opcode, WS_OPCODE_BINARY);
    assert_true(mock.frames[1].masked);
    assert_int_equal(mock.frames[1].opcode, WS_OPCODE_PONG);
    assert_int_equal(mock.frames[1].length, 3);
    assert_memory_equal(mock.frames[1].payload, "abc", 3);
    assert_true(mock.frames[2].masked);
    assert_int_equal(mock.frames[2].opcode, WS_OPCODE_CLOSE);
    assert_int_equal(mock.frames[2].length, 2);
    assert_int_equal(mock.frames[2].payload[0] << 8 | mock.frames[2].payload[1], 1000);
}

static void script_split_response(struct mock *mock, int fd)
{
    char rest[256];

    /* The head in two writes; a text frame in the same write as its end. */
    write_all(fd, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n", 54);
    usleep(20000);
    int length = snprintf(rest, sizeof(rest),
                          "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n"
                          "Sec-WebSocket-Protocol: test.v1\r\n\r\n\x81\x02hi",
                          mock->accept);
    write_all(fd, rest, (size_t)length);
    read_client_frame(mock, fd);
}

/* Frame bytes that arrive with the end of the upgrade response are not lost. */
static void connection_frame_after_head(void **state)
{
    struct mock mock;
    struct received received = {0};
    struct client_error err;
    struct ws_client *client = NULL;

    (void)state;
    mock_start(&mock, NULL, script_split_response);
    assert_int_equal(connect_to(&mock, "test.v1", &received, &client, &err), 0);
    for (int i = 0; i < 20 && received.text_messages == 0; i++)
        assert_int_equal(ws_client_service(client, 50, &err), 0);
    assert_string_equal(received.text, "hi");
    ws_client_free(client);
    mock_finish(&mock);
    assert_non_null(strstr(mock.request, "Sec-WebSocket-Protocol: test.v1\r\n"));
}

static void connection_404_is_enoent(void **state)
{
    struct mock mock;
    struct received received = {0};
    struct client_error err;
    struct ws_client *client = NULL;
    char url[64];

    (void)state;
    mock_start(&mock, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n", NULL);
    assert_int_equal(connect_to(&mock, NULL, &received, &client, &err), -ENOENT);
    assert_null(client);
    assert_int_equal(err.status, 404);
    snprintf(url, sizeof(url), "test: ws://127.0.0.1:%d/echo: ", mock.port);
    assert_memory_equal(err.message, url, strlen(url));
    assert_non_null(strstr(err.message, "404 Not Found"));
    mock_finish(&mock);
}

/* A base URL with a path, as behind a reverse proxy, keeps it in the request. */
static void connection_keeps_base_path(void **state)
{
    struct mock mock;
    struct client_target target = {.timeout_s = 2};
    struct ws_client_options options = {
        .target = &target,
        .phase = "test",
        .path = "/echo?x=1",
        .max_message_bytes = 1000,
    };
    struct client_error err;
    struct ws_client *client = NULL;

    (void)state;
    mock_start(&mock, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n", NULL);
    snprintf(target.base_url, sizeof(target.base_url), "http://127.0.0.1:%d/speed", mock.port);
    assert_int_equal(ws_client_connect(&options, &client, &err), -ENOENT);
    mock_finish(&mock);
    const char *expected = "GET /speed/echo?x=1 HTTP/1.1\r\n";
    assert_memory_equal(mock.request, expected, strlen(expected));
}

/* Each upgrade response is wrong in one way and must be rejected with a message naming
 * what is wrong. */
static void connection_rejects_bad_upgrades(void **state)
{
    static const struct {
        const char *response;
        const char *subprotocol;
        const char *expected;
    } cases[] = {
        {"HTTP/1.1 101 OK\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         "Sec-WebSocket-Accept: AAAAAAAAAAAAAAAAAAAAAAAAAAA=\r\n\r\n",
         NULL, "Sec-WebSocket-Accept"},
        {"HTTP/1.1 101 OK\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n", NULL,
         "Upgrade: websocket"},
        {"HTTP/1.1 101 OK\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: %s\r\n\r\n", NULL,
         "Connection: Upgrade"},
        {UPGRADE_OK, "test.v1", "subprotocol test.v1"},
        {"HTTP/1.1 101 OK\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         "Sec-WebSocket-Accept: %s\r\nSec-WebSocket-Protocol: other\r\n\r\n",
         "test.v1", "subprotocol test.v1"},
        {"HTTP/1.1 101 OK\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         "Sec-WebSocket-Accept: %s\r\nSec-WebSocket-Protocol: other\r\n\r\n",
         NULL, "not requested"},
        {"HTTP/1.1 101 OK\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         "Sec-WebSocket-Accept: %s\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n",
         NULL, "permessage-deflate"},
        {"SSH-2.0-OpenSSH\r\n\r\n", NULL, "invalid upgrade response"},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct mock mock;
        struct received received = {0};
        struct client_error err;
        struct ws_client *client = NULL;

        mock_start(&mock, cases[i].response, NULL);
        assert_int_equal(connect_to(&mock, cases[i].subprotocol, &received, &client, &err),
                         -EPROTO);
        assert_null(client);
        if (strstr(err.message, cases[i].expected) == NULL)
            fail_msg("case %zu: \"%s\" does not name \"%s\"", i, err.message, cases[i].expected);
        mock_finish(&mock);
    }
}

static void script_send_raw(struct mock *mock, int fd, const void *frame, size_t length)
{
    write_all(fd, frame, length);
    read_client_frame(mock, fd);
}

static void script_masked_frame(struct mock *mock, int fd)
{
    script_send_raw(mock, fd, "\x82\x81\x01\x02\x03\x04\x05", 7);
}

static void script_over_cap(struct mock *mock, int fd)
{
    script_send_raw(mock, fd, "\x82\x7e\x03\xe9", 4); /* announces 1001 bytes */
}

static void script_invalid_utf8(struct mock *mock, int fd)
{
    script_send_raw(mock, fd, "\x81\x02\xc3\x28", 4);
}

/* A protocol error closes with its code (RFC 6455 section 7.4.1) and fails the call. */
static void connection_closes_on_protocol_errors(void **state)
{
    static const struct {
        mock_script script;
        int code;
    } cases[] = {
        {script_masked_frame, WS_CLOSE_PROTOCOL_ERROR},
        {script_over_cap, WS_CLOSE_MESSAGE_TOO_BIG},
        {script_invalid_utf8, WS_CLOSE_INVALID_DATA},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct mock mock;
        struct received received = {0};
        struct client_error err;
        struct ws_client *client = NULL;
        int rc = 0;

        mock_start(&mock, UPGRADE_OK, cases[i].script);
        assert_int_equal(connect_to(&mock, NULL, &received, &client, &err), 0);
        for (int k = 0; k < 40 && rc == 0; k++)
            rc = ws_client_service(client, 50, &err);
        assert_int_equal(rc, -EPROTO);
        assert_non_null(strstr(err.message, "invalid data from the server"));
        ws_client_free(client);
        mock_finish(&mock);
        assert_int_equal(mock.frame_count, 1);
        assert_int_equal(mock.frames[0].opcode, WS_OPCODE_CLOSE);
        assert_int_equal(mock.frames[0].payload[0] << 8 | mock.frames[0].payload[1], cases[i].code);
    }
}

static void script_hang_up(struct mock *mock, int fd)
{
    (void)mock;
    (void)fd;
}

static void connection_reports_abnormal_end(void **state)
{
    struct mock mock;
    struct received received = {0};
    struct client_error err;
    struct ws_client *client = NULL;
    int rc = 0;

    (void)state;
    mock_start(&mock, UPGRADE_OK, script_hang_up);
    assert_int_equal(connect_to(&mock, NULL, &received, &client, &err), 0);
    for (int i = 0; i < 40 && rc == 0; i++)
        rc = ws_client_service(client, 50, &err);
    assert_int_equal(rc, 1);
    assert_int_equal(ws_client_close_code(client), WS_CLOSE_ABNORMAL);
    ws_client_free(client);
    mock_finish(&mock);
}

static void script_silent(struct mock *mock, int fd)
{
    char byte;

    (void)mock;
    recv(fd, &byte, 1, 0); /* returns when the client gives up */
}

static void connection_upgrade_timeout(void **state)
{
    struct mock mock;
    struct received received = {0};
    struct client_error err;
    struct ws_client *client = NULL;
    double start_ms = ws_monotonic_ms();

    (void)state;
    mock_start(&mock, NULL, script_silent);
    assert_int_equal(connect_to(&mock, NULL, &received, &client, &err), -ETIMEDOUT);
    double waited_ms = ws_monotonic_ms() - start_ms;
    assert_true(waited_ms >= 1900 && waited_ms < 4000);
    assert_non_null(strstr(err.message, "timed out"));
    mock_finish(&mock);
}

/* A send to a server that reads nothing times out after timeout_s. Then the close does not
 * wait for that server again: the whole failure ends within timeout_s plus 0.5 s. */
static void connection_send_stall_ends_in_time(void **state)
{
    static uint8_t payload[256 * 1024];
    struct mock mock;
    struct received received = {0};
    struct client_error err;
    struct ws_client *client = NULL;
    int rc = 0;

    (void)state;
    mock_start(&mock, UPGRADE_OK, mock_stall_without_reading);
    assert_int_equal(connect_with_timeout(&mock, 1, NULL, &received, &client, &err), 0);
    double start_ms = ws_monotonic_ms();
    /* Loopback socket buffers take a few MiB before a send blocks. */
    for (int i = 0; i < 1000 && rc == 0; i++)
        rc =
            ws_client_send_frame(client, WS_OPCODE_BINARY, payload, sizeof(payload), 0, NULL, &err);
    assert_int_equal(rc, -ETIMEDOUT);
    assert_non_null(strstr(err.message, "timed out: no data could be sent for 1 s"));
    double close_start_ms = ws_monotonic_ms();
    assert_int_equal(ws_client_close(client, WS_CLOSE_NORMAL, &err), -ECONNABORTED);
    double end_ms = ws_monotonic_ms();
    assert_true(end_ms - close_start_ms < 100);
    assert_true(end_ms - start_ms < 1500);
    ws_client_free(client);
    mock_release(&mock);
    mock_finish(&mock);
}

/* An abort sends the close frame and returns without waiting for the server's. */
static void connection_abort_does_not_wait(void **state)
{
    struct mock mock;
    struct received received = {0};
    struct client_error err;
    struct ws_client *client = NULL;

    (void)state;
    mock_start(&mock, UPGRADE_OK, mock_stall_reading);
    assert_int_equal(connect_to(&mock, NULL, &received, &client, &err), 0);
    double start_ms = ws_monotonic_ms();
    ws_client_abort(client, WS_CLOSE_GOING_AWAY);
    assert_int_equal(ws_client_close(client, WS_CLOSE_NORMAL, &err), -ECONNABORTED);
    assert_true(ws_monotonic_ms() - start_ms < 100);
    assert_int_equal(ws_client_send_frame(client, WS_OPCODE_BINARY, "x", 1, 0, NULL, &err), -EPIPE);
    ws_client_free(client);
    mock_finish(&mock);
    assert_int_equal(mock.close_code, WS_CLOSE_GOING_AWAY);
}

static void script_reset_after_frame(struct mock *mock, int fd)
{
    struct linger reset = {.l_onoff = 1, .l_linger = 0};

    (void)mock;
    send_server_frame(fd, 0x82, "x", 1);
    /* close() with a zero linger time sends a reset in place of a FIN. */
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &reset, sizeof(reset));
}

/* A reset is an end without a close frame (1006), and the close after it waits for
 * nothing. */
static void connection_reset_is_abnormal_end(void **state)
{
    struct mock mock;
    struct received received = {0};
    struct client_error err;
    struct ws_client *client = NULL;
    int rc = 0;

    (void)state;
    mock_start(&mock, UPGRADE_OK, script_reset_after_frame);
    assert_int_equal(connect_to(&mock, NULL, &received, &client, &err), 0);
    mock_finish(&mock);
    for (int i = 0; i < 40 && rc == 0; i++)
        rc = ws_client_service(client, 50, &err);
    assert_int_equal(rc, -ECONNRESET);
    assert_non_null(strstr(err.message, "receiving failed"));
    assert_int_equal(ws_client_close_code(client), WS_CLOSE_ABNORMAL);
    double start_ms = ws_monotonic_ms();
    ws_client_close(client, WS_CLOSE_NORMAL, &err);
    assert_true(ws_monotonic_ms() - start_ms < 100);
    ws_client_free(client);
}

static void script_close_with_control_characters(struct mock *mock, int fd)
{
    static const uint8_t close_payload[] = "\x03\xe8\x1b[2Jgone\r\nfake: line\x07";

    send_server_frame(fd, 0x88, close_payload, sizeof(close_payload) - 1);
    mock_drain_until_close(mock, fd);
}

/* Text from the server (a status line, a close reason) reaches error messages with its
 * control characters escaped. */
static void connection_escapes_server_text(void **state)
{
    struct mock mock;
    struct received received = {0};
    struct client_error err;
    struct ws_client *client = NULL;
    int rc = 0;

    (void)state;
    mock_start(&mock,
               "HTTP/1.1 403 \x1b]0;title\x07"
               "Forbidden\x1b[0m\r\n\r\n",
               NULL);
    assert_int_equal(connect_to(&mock, NULL, &received, &client, &err), -ENOENT);
    mock_finish(&mock);
    assert_non_null(strstr(err.message, "403"));
    assert_non_null(strstr(err.message, "Forbidden"));
    assert_no_control_characters(err.message);

    mock_start(&mock, UPGRADE_OK, script_close_with_control_characters);
    assert_int_equal(connect_to(&mock, NULL, &received, &client, &err), 0);
    for (int i = 0; i < 40 && rc == 0; i++)
        rc = ws_client_service(client, 50, &err);
    assert_int_equal(rc, 1);
    assert_int_equal(ws_client_send_frame(client, WS_OPCODE_BINARY, "x", 1, 0, NULL, &err), -EPIPE);
    assert_non_null(strstr(err.message, "close code 1000"));
    assert_non_null(strstr(err.message, "gone"));
    assert_no_control_characters(err.message);
    ws_client_close(client, WS_CLOSE_NORMAL, &err);
    ws_client_free(client);
    mock_finish(&mock);
}

static void connection_refused(void **state)
{
    struct mock mock;
    struct received received = {0};
    struct client_error err;
    struct ws_client *client = NULL;

    (void)state;
    mock_start(&mock, NULL, NULL);
    /* Connect once so the thread ends, then connect again to the closed listener. */
    connect_to(&mock, NULL, &received, &client, &err);
    mock_finish(&mock);
    assert_int_equal(connect_to(&mock, NULL, &received, &client, &err), -EIO);
    assert_non_null(strstr(err.message, "connection failed"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(connection_echo_ping_close),
        cmocka_unit_test(connection_frame_after_head),
        cmocka_unit_test(connection_404_is_enoent),
        cmocka_unit_test(connection_keeps_base_path),
        cmocka_unit_test(connection_rejects_bad_upgrades),
        cmocka_unit_test(connection_closes_on_protocol_errors),
        cmocka_unit_test(connection_reports_abnormal_end),
        cmocka_unit_test(connection_upgrade_timeout),
        cmocka_unit_test(connection_send_stall_ends_in_time),
        cmocka_unit_test(connection_abort_does_not_wait),
        cmocka_unit_test(connection_reset_is_abnormal_end),
        cmocka_unit_test(connection_escapes_server_text),
        cmocka_unit_test(connection_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
