/* Tests of transfer_measure (src/client/transfer.c) against a mock bulk server that runs in a
 * thread of the test on a free loopback port. They cover rates on a paced link, the halving
 * of a request over the server's limit, HTTP errors and their reasons, and download bodies of
 * the wrong length. They also cover uploads the server confirms no bytes of, refused,
 * timed-out and closed connections, stalls, partial failures and cancel. Each test runs for
 * about 2.5 s at most. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "transfer.h"

#define MOCK_MAX_CONNECTIONS 64
#define MOCK_HEADER_MAX      8192
#define MOCK_CHUNK_BYTES     (64 * 1024)
#define MIB                  (1024u * 1024u)

enum mock_mode {
    MOCK_SERVE,          /* /__down and /__up, as the real server serves them */
    MOCK_ERROR,          /* error_status with error_body to every request */
    MOCK_STALL,          /* headers and a little data, then nothing */
    MOCK_CLOSE,          /* headers and a little data, then close */
    MOCK_RAW_DOWNLOAD,   /* download_response to GET /__down, then close */
    MOCK_ZERO_CONFIRMED, /* /__up reads the body and responds {"bytes":0} */
};

struct mock {
    enum mock_mode mode;
    bool first_request_only; /* the mode applies to the first request, MOCK_SERVE to others */
    uint64_t max_download_bytes;
    uint64_t max_upload_bytes;
    double bytes_per_second; /* pacing per connection, 0 for none */
    int error_status;
    const char *error_content_type; /* NULL for no Content-Type header */
    const char *error_body;
    const char *download_response; /* status line, headers and body start, sent as is */
    size_t download_padding_bytes; /* zero bytes sent after download_response */
    int listener;
    int port;
    atomic_bool stop;
    pthread_t acceptor;
    pthread_t handlers[MOCK_MAX_CONNECTIONS];
    atomic_int connection_count;
    atomic_uint request_count;
    atomic_uint rejected_downloads;             /* 400 responses to a bytes=N over the limit */
    atomic_uint_fast64_t smallest_download;     /* the smallest N served with 200 */
    atomic_uint_fast64_t confirmed_bytes;       /* sum of the bytes of every /__up response */
    atomic_uint rejected_uploads;               /* 413 responses to a body over the limit */
    atomic_uint_fast64_t largest_upload;        /* the largest body answered with 200 */
    atomic_uint_fast64_t served_download_bytes; /* body bytes sent in responses to bytes=N */
    atomic_uint finished_uploads;               /* /__up requests that got a 200 response */
    atomic_uint_fast64_t finished_upload_bytes; /* their body bytes */
};

struct connection {
    struct mock *mock;
    int fd;
    int index;
};

static double seconds_now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Waits up to 50 ms for fd to become readable (or writable); false once the mock stops. */
static bool mock_wait(struct mock *mock, int fd, short events)
{
    struct pollfd pfd = {.fd = fd, .events = events};

    if (atomic_load(&mock->stop))
        return false;
    poll(&pfd, 1, 50);
    return !atomic_load(&mock->stop);
}

/* Reads one request's headers into buffer. Returns the header length (up to the blank line)
 * and stores the bytes read so far in *read_bytes, or returns -1 when the peer is gone. */
static int mock_read_headers(struct mock *mock, int fd, char *buffer, size_t *read_bytes)
{
    *read_bytes = 0;
    for (;;) {
        char *end;
        ssize_t n;

        buffer[*read_bytes] = '\0';
        end = strstr(buffer, "\r\n\r\n");
        if (end != NULL)
            return (int)(end + 4 - buffer);
        if (*read_bytes == MOCK_HEADER_MAX || !mock_wait(mock, fd, POLLIN))
            return -1;
        n = recv(fd, buffer + *read_bytes, MOCK_HEADER_MAX - *read_bytes, MSG_DONTWAIT);
        if (n == 0 || (n < 0 && errno != EAGAIN))
            return -1;
        if (n > 0)
            *read_bytes += (size_t)n;
    }
}

static bool mock_send_all(struct mock *mock, int fd, const char *data, size_t length)
{
    while (length > 0) {
        ssize_t n;

        if (!mock_wait(mock, fd, POLLOUT))
            return false;
        n = send(fd, data, length, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0 && errno != EAGAIN)
            return false;
        if (n > 0) {
            data += n;
            length -= (size_t)n;
        }
    }
    return true;
}

/* Sends a response with body, typed content_type unless that is NULL. Head and body go out
 * in one send: a second small send would wait for the client's delayed ACK (Nagle). */
static bool mock_respond_typed(struct mock *mock, int fd, int status, const char *content_type,
                               const char *body)
{
    char response[1024];
    int length;

    if (content_type != NULL)
        length = snprintf(response, sizeof(response),
                          "HTTP/1.1 %d Mock\r\nContent-Type: %s\r\nContent-Length: %zu\r\n\r\n%s",
                          status, content_type, strlen(body), body);
    else
        length = snprintf(response, sizeof(response),
                          "HTTP/1.1 %d Mock\r\nContent-Length: %zu\r\n\r\n%s", status, strlen(body),
                          body);
    if (length < 0 || (size_t)length >= sizeof(response))
        return false;
    return mock_send_all(mock, fd, response, (size_t)length);
}

/* Sends a plain text response, as the server's http_respond_text does. */
static bool mock_respond(struct mock *mock, int fd, int status, const char *body)
{
    return mock_respond_typed(mock, fd, status, "text/plain; charset=utf-8", body);
}

/* Returns the N of a GET /__down?bytes=N request, or 0 for any other request. */
static uint64_t mock_requested_bytes(const char *headers)
{
    const char *argument = strstr(headers, "bytes=");

    if (strncmp(headers, "GET /__down", 11) != 0 || argument == NULL)
        return 0;
    return strtoull(argument + 6, NULL, 10);
}

/* Returns the Content-Length of a request, 0 when it has none. */
static uint64_t mock_content_length(const char *headers)
{
    const char *field = strcasestr(headers, "content-length:");

    return field ? strtoull(field + 15, NULL, 10) : 0;
}

/* Sleeps while the connection is ahead of the mock's pace. */
static void mock_pace(const struct mock *mock, double start_s, uint64_t moved_bytes)
{
    if (mock->bytes_per_second <= 0)
        return;
    while ((double)moved_bytes > (seconds_now() - start_s) * mock->bytes_per_second) {
        struct timespec pause = {.tv_sec = 0, .tv_nsec = 1000000};
        nanosleep(&pause, NULL);
    }
}

static bool mock_download(struct mock *mock, int fd, const char *headers)
{
    static const char zeros[MOCK_CHUNK_BYTES];
    uint64_t bytes = mock_requested_bytes(headers);
    uint64_t sent = 0;
    uint_fast64_t smallest = atomic_load(&mock->smallest_download);
    double start_s = seconds_now();
    char head[128];

    if (bytes > mock->max_download_bytes) {
        char message[128];

        atomic_fetch_add(&mock->rejected_downloads, 1);
        snprintf(message, sizeof(message),
                 "bytes=N is required: a whole number from 0 to %llu (--max-download-bytes)\n",
                 (unsigned long long)mock->max_download_bytes);
        return mock_respond(mock, fd, 400, message);
    }
    while (bytes < smallest &&
           !atomic_compare_exchange_weak(&mock->smallest_download, &smallest, bytes))
        ;
    snprintf(head, sizeof(head), "HTTP/1.1 200 OK\r\nContent-Length: %llu\r\n\r\n",
             (unsigned long long)bytes);
    if (!mock_send_all(mock, fd, head, strlen(head)))
        return false;
    while (sent < bytes) {
        size_t chunk = bytes - sent < MOCK_CHUNK_BYTES ? (size_t)(bytes - sent) : MOCK_CHUNK_BYTES;

        mock_pace(mock, start_s, sent);
        if (!mock_send_all(mock, fd, zeros, chunk))
            return false;
        sent += chunk;
        atomic_fetch_add(&mock->served_download_bytes, chunk);
    }
    return true;
}

/* Sends download_response and download_padding_bytes zero bytes, whatever N was requested. */
static void mock_raw_download(struct mock *mock, int fd)
{
    static const char zeros[MOCK_CHUNK_BYTES];
    size_t left = mock->download_padding_bytes;

    if (!mock_send_all(mock, fd, mock->download_response, strlen(mock->download_response)))
        return;
    while (left > 0) {
        size_t chunk = left < MOCK_CHUNK_BYTES ? left : MOCK_CHUNK_BYTES;

        if (!mock_send_all(mock, fd, zeros, chunk))
            return;
        left -= chunk;
    }
}

/* Reads a request body of length bytes, body_read of them read with the headers, paced as
 * the mock is. Returns false when the peer is gone. */
static bool mock_receive_body(struct mock *mock, int fd, uint64_t length, size_t body_read)
{
    static char sink[MOCK_CHUNK_BYTES];
    uint64_t received = body_read;
    double start_s = seconds_now();
    /* Each read takes at most 10 ms of a paced link's bytes, so that a slow pace holds back
     * even a small body. */
    size_t read_max = sizeof(sink);

    if (mock->bytes_per_second > 0 && mock->bytes_per_second / 100 < (double)read_max)
        read_max = mock->bytes_per_second >= 100 ? (size_t)(mock->bytes_per_second / 100) : 1;
    while (received < length) {
        uint64_t left = length - received;
        ssize_t n;

        mock_pace(mock, start_s, received);
        if (!mock_wait(mock, fd, POLLIN))
            return false;
        n = recv(fd, sink, left < read_max ? (size_t)left : read_max, MSG_DONTWAIT);
        if (n == 0 || (n < 0 && errno != EAGAIN))
            return false;
        if (n > 0)
            received += (uint64_t)n;
    }
    return true;
}

static bool mock_upload(struct mock *mock, enum mock_mode mode, int fd, const char *headers,
                        size_t body_read)
{
    uint64_t length = mock_content_length(headers);
    uint64_t confirmed = mode == MOCK_ZERO_CONFIRMED ? 0 : length;
    char body[64];

    if (length > mock->max_upload_bytes) {
        char message[128];

        atomic_fetch_add(&mock->rejected_uploads, 1);
        snprintf(message, sizeof(message), "request body over %llu bytes (--max-upload-bytes)\n",
                 (unsigned long long)mock->max_upload_bytes);
        /* As the server does: respond before reading the body, then close. */
        mock_respond(mock, fd, 413, message);
        return false;
    }
    if (!mock_receive_body(mock, fd, length, body_read))
        return false;
    atomic_fetch_add(&mock->confirmed_bytes, confirmed);
    atomic_fetch_add(&mock->finished_uploads, 1);
    atomic_fetch_add(&mock->finished_upload_bytes, length);
    uint_fast64_t largest = atomic_load(&mock->largest_upload);
    while (length > largest &&
           !atomic_compare_exchange_weak(&mock->largest_upload, &largest, length))
        ;
    snprintf(body, sizeof(body), "{\"bytes\":%llu,\"duration_ms\":1}",
             (unsigned long long)confirmed);
    return mock_respond(mock, fd, 200, body);
}

/* Sends a response that never completes: headers and 1000 bytes, then stalls or closes. A
 * download's Content-Length is the N requested, so only the missing bytes are wrong. */
static void mock_break(struct mock *mock, int fd, const char *headers)
{
    static const char data[1000];
    uint64_t length = mock_requested_bytes(headers);
    char head[128];

    snprintf(head, sizeof(head), "HTTP/1.1 200 OK\r\nContent-Length: %llu\r\n\r\n",
             (unsigned long long)(length > 0 ? length : 1000000000));
    mock_send_all(mock, fd, head, strlen(head));
    mock_send_all(mock, fd, data, sizeof(data));
    if (mock->mode == MOCK_CLOSE)
        return;
    while (mock_wait(mock, fd, 0))
        ;
}

static void *mock_connection(void *argument)
{
    struct connection *connection = argument;
    struct mock *mock = connection->mock;
    int fd = connection->fd;
    char headers[MOCK_HEADER_MAX + 1];
    bool keep = true;

    while (keep) {
        size_t read_bytes;
        int header_bytes = mock_read_headers(mock, fd, headers, &read_bytes);
        size_t body_read;
        enum mock_mode mode = mock->mode;

        if (header_bytes < 0)
            break;
        body_read = read_bytes - (size_t)header_bytes;
        headers[header_bytes - 2] = '\0'; /* drops the body bytes read with the headers */
        if (atomic_fetch_add(&mock->request_count, 1) > 0 && mock->first_request_only)
            mode = MOCK_SERVE;

        if (mode == MOCK_ERROR) {
            keep = mock_receive_body(mock, fd, mock_content_length(headers), body_read) &&
                   mock_respond_typed(mock, fd, mock->error_status, mock->error_content_type,
                                      mock->error_body);
        } else if (mode == MOCK_STALL || mode == MOCK_CLOSE) {
            mock_break(mock, fd, headers);
            keep = false;
        } else if (mode == MOCK_RAW_DOWNLOAD && strncmp(headers, "GET /__down", 11) == 0) {
            mock_raw_download(mock, fd);
            keep = false;
        } else if (strncmp(headers, "GET /__down", 11) == 0) {
            keep = mock_download(mock, fd, headers);
        } else if (strncmp(headers, "POST /__up", 10) == 0) {
            keep = mock_upload(mock, mode, fd, headers, body_read);
        } else {
            keep = mock_respond(mock, fd, 404, "not found\n");
        }
    }
    close(fd);
    free(connection);
    return NULL;
}

static void *mock_accept(void *argument)
{
    struct mock *mock = argument;

    while (mock_wait(mock, mock->listener, POLLIN)) {
        int index = atomic_load(&mock->connection_count);
        int fd = accept4(mock->listener, NULL, NULL, SOCK_NONBLOCK);
        struct connection *connection;

        if (fd < 0)
            continue;
        connection = malloc(sizeof(*connection));
        if (index >= MOCK_MAX_CONNECTIONS || connection == NULL) {
            free(connection);
            close(fd);
            continue;
        }
        *connection = (struct connection){.mock = mock, .fd = fd, .index = index};
        pthread_create(&mock->handlers[index], NULL, mock_connection, connection);
        atomic_store(&mock->connection_count, index + 1);
    }
    return NULL;
}

/* Sets the mock's defaults; the caller may change mode, pacing, limits and responses before
 * mock_start. */
static void mock_init(struct mock *mock, enum mock_mode mode)
{
    memset(mock, 0, sizeof(*mock));
    mock->mode = mode;
    mock->max_download_bytes = UINT64_MAX;
    mock->max_upload_bytes = UINT64_MAX;
    mock->error_status = 404;
    mock->error_content_type = "text/plain; charset=utf-8";
    mock->error_body = "not found\n";
    atomic_store(&mock->smallest_download, UINT64_MAX);
}

static void mock_start(struct mock *mock)
{
    struct sockaddr_in address = {.sin_family = AF_INET};
    socklen_t length = sizeof(address);

    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    mock->listener = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    assert_true(mock->listener >= 0);
    assert_int_equal(bind(mock->listener, (struct sockaddr *)&address, sizeof(address)), 0);
    assert_int_equal(listen(mock->listener, 64), 0);
    assert_int_equal(getsockname(mock->listener, (struct sockaddr *)&address, &length), 0);
    mock->port = ntohs(address.sin_port);
    assert_int_equal(pthread_create(&mock->acceptor, NULL, mock_accept, mock), 0);
}

static void mock_stop(struct mock *mock)
{
    atomic_store(&mock->stop, true);
    pthread_join(mock->acceptor, NULL);
    for (int i = 0; i < atomic_load(&mock->connection_count); i++)
        pthread_join(mock->handlers[i], NULL);
    close(mock->listener);
}

static void target_for(struct client_target *target, int port)
{
    memset(target, 0, sizeof(*target));
    snprintf(target->base_url, sizeof(target->base_url), "http://127.0.0.1:%d", port);
    target->timeout_s = 2;
}

static struct transfer_options options_for(enum client_direction direction, unsigned streams,
                                           double max_duration_s)
{
    struct transfer_options options = {
        .direction = direction,
        .streams = streams,
        .max_duration_s = max_duration_s,
        .stop_when_stable = true,
    };
    return options;
}

static void test_download_paced_rate(void **state)
{
    struct mock mock;
    struct client_target target;
    struct transfer_options options = options_for(CLIENT_DOWNLOAD, 2, 2);
    struct throughput_result result;
    struct client_error err = {0};

    (void)state;
    mock_init(&mock, MOCK_SERVE);
    mock.bytes_per_second = 10e6; /* 80 Mbit/s per stream */
    mock_start(&mock);
    target_for(&target, mock.port);
    assert_int_equal(transfer_measure(&target, &options, &result, &err), 0);
    mock_stop(&mock);

    assert_float_equal(result.bps, 160e6, 160e6 * 0.05);
    assert_int_equal(result.streams, 2);
    assert_float_equal(result.duration_ms, 2000, 150);
    assert_float_equal(result.stable_window_ms, 1000, 150);
    assert_int_equal(result.server_bytes, 0);
    assert_true(result.tcp.available);
    assert_int_equal(result.tcp.connections, 2);
    assert_true(result.tcp.bytes_received >= result.bytes);
    assert_true(result.tcp.min_rtt_ms > 0);
    assert_int_equal(result.failed_streams, 0);
    assert_string_equal(result.stream_error, "");
}

static void test_upload_counts_confirmed_bytes(void **state)
{
    struct mock mock;
    struct client_target target;
    struct transfer_options options = options_for(CLIENT_UPLOAD, 2, 2);
    struct throughput_result result;
    struct client_error err = {0};

    (void)state;
    mock_init(&mock, MOCK_SERVE);
    mock.bytes_per_second = 10e6;
    mock_start(&mock);
    target_for(&target, mock.port);
    assert_int_equal(transfer_measure(&target, &options, &result, &err), 0);
    mock_stop(&mock);

    /* The bytes sent run ahead of the server by the socket buffers, but the rate counts only
     * confirmed bytes. */
    assert_float_equal(result.bps, 160e6, 160e6 * 0.05);
    assert_int_equal(result.server_bytes, atomic_load(&mock.confirmed_bytes));
    assert_true(result.server_bytes > 0);
    /* Every request finished within the drain, so all bytes sent were confirmed. */
    assert_int_equal(result.bytes, result.server_bytes);
    assert_int_equal(result.streams, 2);
    assert_true(result.tcp.bytes_acked >= result.server_bytes);
    assert_int_equal(result.failed_streams, 0);
    assert_string_equal(result.stream_error, "");
}

static void test_download_halves_request(void **state)
{
    struct mock mock;
    struct client_target target;
    struct transfer_options options = options_for(CLIENT_DOWNLOAD, 1, 1);
    struct throughput_result result;
    struct client_error err = {0};

    (void)state;
    mock_init(&mock, MOCK_SERVE);
    mock.max_download_bytes = 3 * MIB;
    mock.bytes_per_second = 20e6;
    mock_start(&mock);
    target_for(&target, mock.port);
    assert_int_equal(transfer_measure(&target, &options, &result, &err), 0);
    mock_stop(&mock);

    /* 1024, 512, ... 4 MiB are over the limit; 2 MiB is served. */
    assert_int_equal(atomic_load(&mock.rejected_downloads), 9);
    assert_int_equal(atomic_load(&mock.smallest_download), 2 * MIB);
    assert_true(result.bps > 0);
}

/* Writes the start of a message about a request to the mock: "download: GET URL" for a
 * download of bytes=N, "upload: POST URL" for an upload. */
static void format_request(char *text, size_t size, const struct mock *mock,
                           enum client_direction direction, unsigned long long download_bytes)
{
    if (direction == CLIENT_DOWNLOAD)
        snprintf(text, size, "download: GET http://127.0.0.1:%d/__down?bytes=%llu", mock->port,
                 download_bytes);
    else
        snprintf(text, size, "upload: POST http://127.0.0.1:%d/__up", mock->port);
}

/* Runs a 2-stream phase against the configured mock, which must fail, and checks the error.
 * The expected message is the request (bytes=download_bytes for a download), ": " and
 * expected_detail. When whole_message is false, the message only has to start with it. */
static void expect_mock_failure(struct mock *mock, enum client_direction direction,
                                double timeout_s, unsigned long long download_bytes,
                                const char *expected_detail, bool whole_message,
                                int expected_status)
{
    struct client_target target;
    struct transfer_options options = options_for(direction, 2, 5);
    struct throughput_result result;
    struct client_error err = {0};
    char request[CLIENT_ERROR_MAX];
    char expected[CLIENT_ERROR_MAX + 64];
    double start_s = seconds_now();
    int rc;

    mock_start(mock);
    target_for(&target, mock->port);
    target.timeout_s = timeout_s;
    rc = transfer_measure(&target, &options, &result, &err);
    mock_stop(mock);

    assert_true(rc < 0);
    format_request(request, sizeof(request), mock, direction, download_bytes);
    snprintf(expected, sizeof(expected), "%s: %s", request, expected_detail);
    if (whole_message)
        assert_string_equal(err.message, expected);
    else
        assert_memory_equal(err.message, expected, strlen(expected));
    assert_int_equal(err.status, expected_status);
    assert_true(seconds_now() - start_s < timeout_s + 1);
}

/* Runs a phase against a mock in mode, which must fail with a message that starts with the
 * first request's URL and expected_detail. */
static void expect_failure(enum mock_mode mode, enum client_direction direction, double timeout_s,
                           const char *expected_detail, int expected_status)
{
    struct mock mock;

    mock_init(&mock, mode);
    expect_mock_failure(&mock, direction, timeout_s, 1073741824, expected_detail, false,
                        expected_status);
}

static void test_upload_halves_request(void **state)
{
    struct mock mock;
    struct client_target target;
    struct transfer_options options = options_for(CLIENT_UPLOAD, 1, 2);
    struct throughput_result result;
    struct client_error err = {0};

    (void)state;
    mock_init(&mock, MOCK_SERVE);
    mock.max_upload_bytes = 256 * 1024;
    mock_start(&mock);
    target_for(&target, mock.port);
    assert_int_equal(transfer_measure(&target, &options, &result, &err), 0);
    mock_stop(&mock);

    /* Unpaced, requests grow toward 64 MiB: each 413 halves the largest request. */
    assert_true(atomic_load(&mock.rejected_uploads) > 0);
    assert_true(atomic_load(&mock.largest_upload) <= 256 * 1024);
    assert_true(result.bps > 0);
}

static void test_download_http_404(void **state)
{
    struct mock mock;

    (void)state;
    mock_init(&mock, MOCK_ERROR);
    expect_mock_failure(&mock, CLIENT_DOWNLOAD, 2, 1073741824, "HTTP 404: not found", true, 404);
}

static void test_download_http_400_reason(void **state)
{
    struct mock mock;

    (void)state;
    /* Every N is over the limit, and 1 MiB, the smallest request, is not halved again. */
    mock_init(&mock, MOCK_SERVE);
    mock.max_download_bytes = 1000;
    expect_mock_failure(&mock, CLIENT_DOWNLOAD, 2, MIB,
                        "HTTP 400: bytes=N is required: a whole number from 0 to 1000 "
                        "(--max-download-bytes)",
                        true, 400);
}

static void test_upload_http_413(void **state)
{
    struct mock mock;

    (void)state;
    /* Every body is over the limit, and 64 KiB, the smallest request, is not halved again. */
    mock_init(&mock, MOCK_SERVE);
    mock.max_upload_bytes = 1000;
    expect_mock_failure(&mock, CLIENT_UPLOAD, 2, 0,
                        "HTTP 413: request body over 1000 bytes (--max-upload-bytes)", true, 413);
}

static void test_reason_escapes_control_characters(void **state)
{
    struct mock mock;

    (void)state;
    mock_init(&mock, MOCK_ERROR);
    mock.error_status = 503;
    mock.error_body = "busy\x1b[2J\tnow\x7f\r\nsecond line\n";
    expect_mock_failure(&mock, CLIENT_DOWNLOAD, 2, 1073741824,
                        "HTTP 503: busy\\x1b[2J\\x09now\\x7f", true, 503);
}

static void test_reason_omitted_for_long_body(void **state)
{
    struct mock mock;
    char body[202];

    (void)state;
    memset(body, 'a', sizeof(body) - 1);
    body[sizeof(body) - 1] = '\0';
    mock_init(&mock, MOCK_ERROR);
    mock.error_status = 503;
    mock.error_body = body;
    expect_mock_failure(&mock, CLIENT_DOWNLOAD, 2, 1073741824, "HTTP 503", true, 503);
}

static void test_reason_omitted_for_html(void **state)
{
    struct mock mock;

    (void)state;
    mock_init(&mock, MOCK_ERROR);
    mock.error_status = 503;
    mock.error_content_type = "text/html";
    mock.error_body = "<html>Service Unavailable</html>\n";
    expect_mock_failure(&mock, CLIENT_DOWNLOAD, 2, 1073741824, "HTTP 503", true, 503);
}

static void test_reason_of_untyped_body(void **state)
{
    struct mock mock;

    (void)state;
    mock_init(&mock, MOCK_ERROR);
    mock.error_status = 503;
    mock.error_content_type = NULL;
    mock.error_body = "server at capacity, retry later\n";
    expect_mock_failure(&mock, CLIENT_DOWNLOAD, 2, 1073741824,
                        "HTTP 503: server at capacity, retry later", true, 503);
}

/* Runs a download against a mock that sends response to every GET /__down and checks that
 * the phase fails with expected_detail and without an HTTP status. */
static void expect_download_length_failure(const char *response, size_t padding_bytes,
                                           const char *expected_detail)
{
    struct mock mock;

    mock_init(&mock, MOCK_RAW_DOWNLOAD);
    mock.download_response = response;
    mock.download_padding_bytes = padding_bytes;
    expect_mock_failure(&mock, CLIENT_DOWNLOAD, 2, 1073741824, expected_detail, true, 0);
}

static void test_download_captive_portal(void **state)
{
    (void)state;
    expect_download_length_failure("HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n"
                                   "Content-Length: 27\r\n\r\n"
                                   "<html>Log in first</html>\n\n",
                                   0, "Content-Length 27, expected 1073741824");
}

static void test_download_body_over_content_length(void **state)
{
    (void)state;
    expect_download_length_failure("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", 100000,
                                   "Content-Length 10, expected 1073741824");
}

static void test_download_without_content_length(void **state)
{
    (void)state;
    expect_download_length_failure("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n"
                                   "<html>Log in first</html>\n\n",
                                   0, "no Content-Length, expected 1073741824 bytes");
}

static void test_download_chunked_body(void **state)
{
    (void)state;
    expect_download_length_failure("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                                   "1b\r\n<html>Log in first</html>\n\n\r\n0\r\n\r\n",
                                   0, "no Content-Length, expected 1073741824 bytes");
}

static void test_download_empty_body(void **state)
{
    (void)state;
    expect_download_length_failure("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 0,
                                   "Content-Length 0, expected 1073741824");
}

static void test_download_stall(void **state)
{
    (void)state;
    expect_failure(MOCK_STALL, CLIENT_DOWNLOAD, 0.5, "no data for 0.5 s", 0);
}

static void test_upload_stall(void **state)
{
    (void)state;
    expect_failure(MOCK_STALL, CLIENT_UPLOAD, 0.5, "no data for 0.5 s", 0);
}

static void test_download_closed_mid_transfer(void **state)
{
    (void)state;
    expect_failure(MOCK_CLOSE, CLIENT_DOWNLOAD, 2, "connection closed mid-transfer", 0);
}

static void test_connection_refused(void **state)
{
    struct sockaddr_in address = {.sin_family = AF_INET};
    socklen_t length = sizeof(address);
    struct client_target target;
    struct transfer_options options = options_for(CLIENT_DOWNLOAD, 0, 2);
    struct throughput_result result;
    struct client_error err = {0};
    char expected[CLIENT_ERROR_MAX];
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    (void)state;
    /* A port that was free a moment ago and has no listener. */
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&address, sizeof(address)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&address, &length), 0);
    close(fd);

    target_for(&target, ntohs(address.sin_port));
    assert_true(transfer_measure(&target, &options, &result, &err) < 0);
    snprintf(expected, sizeof(expected),
             "download: GET http://127.0.0.1:%d/__down?bytes=1073741824: connection refused",
             ntohs(address.sin_port));
    assert_string_equal(err.message, expected);
}

static void test_connect_timeout(void **state)
{
    struct sockaddr_in address = {.sin_family = AF_INET};
    socklen_t length = sizeof(address);
    struct client_target target;
    struct transfer_options options = options_for(CLIENT_DOWNLOAD, 1, 5);
    struct throughput_result result;
    struct client_error err = {0};
    char expected[CLIENT_ERROR_MAX];
    int listener = socket(AF_INET, SOCK_STREAM, 0);
    int filler = socket(AF_INET, SOCK_STREAM, 0);
    double start_s;

    (void)state;
    /* A listener that never accepts, its accept queue filled by one connection: Linux drops
     * further SYNs, so the next connection attempt hangs. */
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(listener, (struct sockaddr *)&address, sizeof(address)), 0);
    assert_int_equal(listen(listener, 0), 0);
    assert_int_equal(getsockname(listener, (struct sockaddr *)&address, &length), 0);
    assert_int_equal(connect(filler, (struct sockaddr *)&address, sizeof(address)), 0);

    target_for(&target, ntohs(address.sin_port));
    target.timeout_s = 0.5;
    start_s = seconds_now();
    assert_true(transfer_measure(&target, &options, &result, &err) < 0);
    close(filler);
    close(listener);

    snprintf(expected, sizeof(expected),
             "download: GET http://127.0.0.1:%d/__down?bytes=1073741824: connection timed out "
             "after 0.5 s",
             ntohs(address.sin_port));
    assert_string_equal(err.message, expected);
    assert_true(seconds_now() - start_s < 1.0);
}

/* Runs a 2-stream phase of 1 s in which the mock fails the first request, and checks
 * that the phase succeeds with one stream and reports the other's error. */
static void expect_one_stream_failure(struct mock *mock, enum client_direction direction,
                                      const char *expected_detail, struct throughput_result *result)
{
    struct client_target target;
    struct transfer_options options = options_for(direction, 2, 1);
    struct client_error err = {0};
    char request[CLIENT_ERROR_MAX];
    char expected[CLIENT_ERROR_MAX + 64];
    int rc;

    mock->first_request_only = true;
    mock->bytes_per_second = 10e6;
    mock_start(mock);
    target_for(&target, mock->port);
    rc = transfer_measure(&target, &options, result, &err);
    mock_stop(mock);

    assert_string_equal(err.message, "");
    assert_int_equal(rc, 0);
    format_request(request, sizeof(request), mock, direction, 1073741824);
    snprintf(expected, sizeof(expected), "%s: %s", request, expected_detail);
    assert_int_equal(result->streams, 1);
    assert_int_equal(result->failed_streams, 1);
    assert_string_equal(result->stream_error, expected);
}

static void test_one_stream_fails_phase_goes_on(void **state)
{
    struct mock mock;
    struct throughput_result result;

    (void)state;
    mock_init(&mock, MOCK_ERROR);
    mock.error_status = 429;
    mock.error_body = "too many transfers from this address\n";
    expect_one_stream_failure(&mock, CLIENT_DOWNLOAD,
                              "HTTP 429: too many transfers from this address", &result);
    assert_float_equal(result.bps, 80e6, 80e6 * 0.1);
}

static void test_upload_one_stream_fails(void **state)
{
    struct mock mock;
    struct throughput_result result;

    (void)state;
    mock_init(&mock, MOCK_ERROR);
    mock.error_status = 429;
    mock.error_body = "too many transfers from this address\n";
    expect_one_stream_failure(&mock, CLIENT_UPLOAD,
                              "HTTP 429: too many transfers from this address", &result);
    assert_true(result.server_bytes > 0);
    assert_float_equal(result.bps, 80e6, 80e6 * 0.1);
}

static void test_captive_portal_bytes_not_counted(void **state)
{
    struct mock mock;
    struct throughput_result result;

    (void)state;
    mock_init(&mock, MOCK_RAW_DOWNLOAD);
    mock.download_response = "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n"
                             "Content-Length: 27\r\n\r\n"
                             "<html>Log in first</html>\n\n";
    expect_one_stream_failure(&mock, CLIENT_DOWNLOAD, "Content-Length 27, expected 1073741824",
                              &result);
    /* The portal's 27 bytes are not payload. */
    assert_true(result.bytes <= atomic_load(&mock.served_download_bytes));
    assert_true(result.bytes > 0);
}

static void test_upload_zero_confirmed(void **state)
{
    struct mock mock;
    struct client_target target;
    struct transfer_options options = options_for(CLIENT_UPLOAD, 1, 1);
    struct throughput_result result;
    struct client_error err = {0};
    char expected[CLIENT_ERROR_MAX];

    (void)state;
    mock_init(&mock, MOCK_ZERO_CONFIRMED);
    mock.bytes_per_second = 10e6;
    mock_start(&mock);
    target_for(&target, mock.port);
    assert_true(transfer_measure(&target, &options, &result, &err) < 0);
    mock_stop(&mock);

    /* Every request finished within the drain, so the client's counts match the mock's. */
    snprintf(expected, sizeof(expected),
             "upload: POST http://127.0.0.1:%d/__up: the server confirmed 0 of %llu bytes in %u "
             "requests",
             mock.port, (unsigned long long)atomic_load(&mock.finished_upload_bytes),
             atomic_load(&mock.finished_uploads));
    assert_true(atomic_load(&mock.finished_uploads) > 0);
    assert_string_equal(err.message, expected);
    assert_int_equal(err.status, 0);
}

static void test_upload_too_slow(void **state)
{
    struct mock mock;
    struct client_target target;
    struct transfer_options options = options_for(CLIENT_UPLOAD, 1, 0.5);
    struct throughput_result result;
    struct client_error err = {0};
    char expected[CLIENT_ERROR_MAX];

    (void)state;
    /* The first request, 64 KiB at 20 kB/s, needs 3.3 s: longer than the 0.5 s phase and
     * the 2 s drain after it. */
    mock_init(&mock, MOCK_SERVE);
    mock.bytes_per_second = 20e3;
    mock_start(&mock);
    target_for(&target, mock.port);
    assert_true(transfer_measure(&target, &options, &result, &err) < 0);
    mock_stop(&mock);

    snprintf(expected, sizeof(expected),
             "upload: POST http://127.0.0.1:%d/__up: no request finished in time, so the server "
             "confirmed no bytes; the link is too slow for a 0.5 s phase",
             mock.port);
    assert_string_equal(err.message, expected);
}

struct cancel_state {
    volatile sig_atomic_t cancel;
    double cancel_s;
    unsigned calls;
};

static void cancel_on_fifth_progress(void *context, const struct client_progress *progress)
{
    struct cancel_state *cancel = context;

    assert_string_equal(progress->phase, "download");
    if (++cancel->calls == 5) {
        cancel->cancel = 1;
        cancel->cancel_s = seconds_now();
    }
}

static void test_cancel_stops_promptly(void **state)
{
    struct mock mock;
    struct client_target target;
    struct transfer_options options = options_for(CLIENT_DOWNLOAD, 1, 5);
    struct throughput_result result;
    struct client_error err = {0};
    struct cancel_state cancel = {0};
    int rc;

    (void)state;
    mock_init(&mock, MOCK_SERVE);
    mock.bytes_per_second = 10e6;
    mock_start(&mock);
    target_for(&target, mock.port);
    options.progress = cancel_on_fifth_progress;
    options.progress_context = &cancel;
    options.cancel = &cancel.cancel;
    rc = transfer_measure(&target, &options, &result, &err);
    mock_stop(&mock);

    assert_int_equal(rc, -ECANCELED);
    assert_int_equal(cancel.calls, 5);
    /* The loop polls for at most 100 ms; the rest is margin for a loaded machine. */
    assert_true(seconds_now() - cancel.cancel_s < 0.3);
    assert_string_equal(err.message, "download: cancelled");
}

static void test_invalid_stream_count(void **state)
{
    struct client_target target;
    struct transfer_options options = options_for(CLIENT_UPLOAD, CLIENT_MAX_STREAMS + 1, 2);
    struct throughput_result result;
    struct client_error err = {0};

    (void)state;
    target_for(&target, 9);
    assert_int_equal(transfer_measure(&target, &options, &result, &err), -EINVAL);
    assert_non_null(strstr(err.message, "invalid stream count 17"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_download_paced_rate),
        cmocka_unit_test(test_upload_counts_confirmed_bytes),
        cmocka_unit_test(test_download_halves_request),
        cmocka_unit_test(test_download_http_404),
        cmocka_unit_test(test_download_http_400_reason),
        cmocka_unit_test(test_upload_http_413),
        cmocka_unit_test(test_reason_escapes_control_characters),
        cmocka_unit_test(test_reason_omitted_for_long_body),
        cmocka_unit_test(test_reason_omitted_for_html),
        cmocka_unit_test(test_reason_of_untyped_body),
        cmocka_unit_test(test_download_captive_portal),
        cmocka_unit_test(test_download_body_over_content_length),
        cmocka_unit_test(test_download_without_content_length),
        cmocka_unit_test(test_download_empty_body),
        cmocka_unit_test(test_download_chunked_body),
        cmocka_unit_test(test_upload_halves_request),
        cmocka_unit_test(test_download_stall),
        cmocka_unit_test(test_upload_stall),
        cmocka_unit_test(test_download_closed_mid_transfer),
        cmocka_unit_test(test_connection_refused),
        cmocka_unit_test(test_connect_timeout),
        cmocka_unit_test(test_one_stream_fails_phase_goes_on),
        cmocka_unit_test(test_upload_one_stream_fails),
        cmocka_unit_test(test_captive_portal_bytes_not_counted),
        cmocka_unit_test(test_upload_zero_confirmed),
        cmocka_unit_test(test_upload_too_slow),
        cmocka_unit_test(test_cancel_stops_promptly),
        cmocka_unit_test(test_invalid_stream_count),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
