/* Download and upload throughput of `linkspeed test` over the bulk HTTP endpoints, with
 * libcurl's multi interface on the calling thread.
 *
 * Each stream is one easy handle that runs its requests one after another over HTTP/1.1, on
 * its own keep-alive TCP connection. Downloads run `GET /__down?bytes=N` and drop the body,
 * after checking that the response declares Content-Length N, so that a captive portal's page
 * or a truncated body counts as a failed stream, not as throughput.
 * Uploads run `POST /__up` with a Content-Length body taken from one buffer of random bytes.
 * The upload result counts the bytes the server confirmed in each response, spread over each
 * request's span (method_attribute_bytes), because bytes handed to the socket run ahead of
 * the server by the socket buffers. The method's decisions are in method.c. */
#include "transfer.h"

#include "method.h"

#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <linux/tcp.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* Each download request is for 1 GiB, the server's default --max-download-bytes. A server
 * whose maximum is lower responds with 400, and the size is halved, down to 1 MiB. On
 * loopback, one stream moved about 8% more with 1 GiB than with the page's 256 MiB, because
 * the gap between two responses (each 50 ms at 40 Gbit/s) leaves the connection idle. */
#define DOWNLOAD_REQUEST_BYTES     (1024ull * 1024 * 1024)
#define DOWNLOAD_MIN_REQUEST_BYTES (1024ull * 1024)
/* Receive buffer of each easy handle. Against curl's 16 KiB default it cut the client's CPU
 * time per GB received from about 0.26 to 0.18 s (loopback, 2-core VM, other load running,
 * median of 6), so the estimate is rough. */
#define DOWNLOAD_CURL_BUFFER_BYTES (512L * 1024)
/* Upload bodies are read from this many random bytes over and over. */
#define UPLOAD_BODY_BYTES (4u * 1024 * 1024)
/* The maximum upload buffer of libcurl 7.88. On loopback on a 2-core VM, uploads reached
 * 24.8 Gbit/s with it against 11.8 with curl's 64 KiB default. */
#define UPLOAD_CURL_BUFFER_BYTES (2L * 1024 * 1024)
/* After the phase decides to stop, upload requests in flight get this long to finish so
 * that their confirmed bytes count; then they are aborted. */
#define UPLOAD_DRAIN_MS 2000.0
/* Response bodies kept: the server's response to POST /__up is `{"bytes":N,"duration_ms":T}`,
 * and longer bodies only appear in error messages. */
#define RESPONSE_MAX_BYTES 1024
/* An error response's reason, the first line of its text/plain body, is added to the message
 * only when the whole body is at most this long. The server's reasons are one short line. */
#define REASON_BODY_MAX_BYTES 200
/* Upper bound of each wait of the loop, so that cancel and progress are handled within
 * 100 ms. */
#define POLL_MAX_MS 100

struct phase;

/* One stream: an easy handle and the request it runs now. */
struct stream {
    struct phase *phase;
    CURL *easy;
    bool active; /* a request is in the multi handle */
    bool failed;
    uint64_t request_bytes;  /* the N of a download, or the body size of an upload */
    uint64_t body_offset;    /* body bytes of this upload handed to curl so far */
    uint64_t sent_bytes;     /* body bytes of this upload written to the socket and counted */
    uint64_t received_bytes; /* body bytes of this download's 200 response so far */
    bool performed;          /* curl_multi_perform ran since the request was added */
    double request_start_ms;
    long status; /* HTTP status of the response, 0 until its body starts */
    char response[RESPONSE_MAX_BYTES + 1];
    size_t response_size;
    /* Stall detection, once connected: a count of bytes moved either way, and when it last
     * changed. Before that, curl's connect timeout applies. */
    bool connected;
    uint64_t activity_bytes;
    uint64_t activity_seen_bytes;
    double activity_ms;
    /* Confirmed bytes and span of the previous upload request, for sizing the next one. */
    uint64_t previous_bytes;
    double previous_ms;
    char curl_error[CURL_ERROR_SIZE];
    /* Why a write callback aborted the request, "" when none did. curl then ends the request
     * with CURLE_WRITE_ERROR, and this becomes the stream's error. */
    char abort_reason[128];
};

struct phase {
    const struct client_target *target;
    const struct transfer_options *options;
    bool upload;
    const char *name; /* "download" or "upload", the start of every message */
    CURLM *multi;
    struct curl_slist *upload_headers;
    struct stream streams[CLIENT_MAX_STREAMS];
    unsigned stream_count; /* started, failed ones included */
    unsigned failed_count;
    bool stopping; /* the phase decided to stop, so no new requests start */

    uint64_t bytes; /* received, or written to the sockets for an upload */
    uint64_t confirmed_bytes;
    uint64_t finished_bytes; /* body bytes of the upload requests that got a 200 response */
    uint64_t download_request_bytes;
    uint64_t upload_max_request_bytes; /* lowered when the server responds with 413 */
    unsigned char *body;
    struct method_request *requests;
    size_t request_count;
    size_t request_capacity;
    struct method_phase method;

    struct tcp_summary tcp;
    double rtt_sum_ms;

    bool has_error;
    struct client_error error; /* the first stream failure */
};

static double now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

/* Writes the URL of the stream's current request into url. */
static void format_url(const struct phase *phase, const struct stream *stream, char *url,
                       size_t size)
{
    if (phase->upload)
        snprintf(url, size, "%s/__up", phase->target->base_url);
    else
        snprintf(url, size, "%s/__down?bytes=%llu", phase->target->base_url,
                 (unsigned long long)stream->request_bytes);
}

/* Records the stream as failed; the first failure of the phase becomes its error, as
 * "download: GET URL: detail". */
__attribute__((format(printf, 4, 5))) static void
fail_stream(struct phase *phase, struct stream *stream, int status, const char *format, ...)
{
    char url[CLIENT_URL_MAX + 64];
    char detail[CLIENT_ERROR_MAX];
    va_list args;

    if (stream->active) {
        curl_multi_remove_handle(phase->multi, stream->easy);
        stream->active = false;
    }
    if (stream->failed)
        return;
    stream->failed = true;
    phase->failed_count++;
    if (phase->has_error)
        return;

    va_start(args, format);
    vsnprintf(detail, sizeof(detail), format, args);
    va_end(args);
    format_url(phase, stream, url, sizeof(url));
    client_fail(&phase->error, "%s: %s %s: %s", phase->name, phase->upload ? "POST" : "GET", url,
                detail);
    phase->error.status = status;
    phase->has_error = true;
}

/* Appends data to stream->response, which keeps the first RESPONSE_MAX_BYTES of the body. */
static void keep_response(struct stream *stream, const char *data, size_t length)
{
    size_t room = RESPONSE_MAX_BYTES - stream->response_size;
    size_t kept = length < room ? length : room;

    memcpy(stream->response + stream->response_size, data, kept);
    stream->response_size += kept;
    stream->response[stream->response_size] = '\0';
}

/* Checks that the 200 response to the stream's GET /__down?bytes=N declares Content-Length N.
 * Otherwise writes the mismatch into stream->abort_reason and returns false. */
static bool check_content_length(struct stream *stream)
{
    curl_off_t length = -1;
    unsigned long long expected = stream->request_bytes;

    if (curl_easy_getinfo(stream->easy, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &length) != CURLE_OK)
        length = -1;
    if (length >= 0 && (uint64_t)length == stream->request_bytes)
        return true;
    if (length < 0)
        snprintf(stream->abort_reason, sizeof(stream->abort_reason),
                 "no Content-Length, expected %llu bytes", expected);
    else
        snprintf(stream->abort_reason, sizeof(stream->abort_reason),
                 "Content-Length %lld, expected %llu", (long long)length, expected);
    return false;
}

/* Counts the body of a 200 response, at most the N requested, and keeps the start of any
 * other response for the error message. Returning less than the length given aborts the
 * request. */
static size_t receive_download(char *data, size_t size, size_t count, void *user)
{
    struct stream *stream = user;
    size_t length = size * count;
    uint64_t left;

    if (stream->status == 0)
        curl_easy_getinfo(stream->easy, CURLINFO_RESPONSE_CODE, &stream->status);
    stream->activity_bytes += length;
    if (stream->status != 200) {
        keep_response(stream, data, length);
        return length;
    }
    if (stream->received_bytes == 0 && !check_content_length(stream))
        return 0;

    /* A safeguard: curl delivers at most the Content-Length, which was checked to be N. */
    left = stream->request_bytes - stream->received_bytes;
    if (length > left) {
        stream->phase->bytes += left;
        stream->received_bytes += length;
        snprintf(stream->abort_reason, sizeof(stream->abort_reason),
                 "expected %llu bytes, got at least %llu",
                 (unsigned long long)stream->request_bytes,
                 (unsigned long long)stream->received_bytes);
        return 0;
    }
    stream->received_bytes += length;
    stream->phase->bytes += length;
    return length;
}

/* Keeps the start of an upload's response body: the server's JSON, or an error text. */
static size_t receive_response(char *data, size_t size, size_t count, void *user)
{
    struct stream *stream = user;
    size_t length = size * count;

    keep_response(stream, data, length);
    stream->activity_bytes += length;
    return length;
}

static size_t send_upload(char *buffer, size_t size, size_t count, void *user)
{
    struct stream *stream = user;
    size_t room = size * count;
    uint64_t left = stream->request_bytes - stream->body_offset;
    size_t body_offset = (size_t)(stream->body_offset % UPLOAD_BODY_BYTES);
    size_t length = UPLOAD_BODY_BYTES - body_offset;

    if (length > room)
        length = room;
    if (length > left)
        length = (size_t)left;
    memcpy(buffer, stream->phase->body + body_offset, length);
    stream->body_offset += length;
    return length;
}

/* Rewinds the body when curl sends the request again, after the server closed a keep-alive
 * connection. */
static int seek_upload(void *user, curl_off_t offset, int origin)
{
    struct stream *stream = user;

    if (origin != SEEK_SET || offset < 0 || (uint64_t)offset > stream->body_offset)
        return CURL_SEEKFUNC_CANTSEEK;
    stream->body_offset = (uint64_t)offset;
    return CURL_SEEKFUNC_OK;
}

/* Adds the upload bytes curl wrote to the stream's socket since the last call to the phase's
 * count. curl takes up to UPLOAD_CURL_BUFFER_BYTES from send_upload at once, so counting
 * there would run ahead of the link by that much on top of the socket buffer. */
static void count_sent_bytes(struct phase *phase, struct stream *stream)
{
    curl_off_t sent = 0;

    /* Until curl_multi_perform runs a request added again, CURLINFO_SIZE_UPLOAD_T still
     * returns the previous request's total (libcurl 7.88.1). */
    if (!stream->performed)
        return;
    if (curl_easy_getinfo(stream->easy, CURLINFO_SIZE_UPLOAD_T, &sent) != CURLE_OK || sent < 0)
        return;
    if ((uint64_t)sent > stream->sent_bytes) {
        phase->bytes += (uint64_t)sent - stream->sent_bytes;
        stream->activity_bytes += (uint64_t)sent - stream->sent_bytes;
    }
    /* A request sent again starts its count from zero. */
    stream->sent_bytes = (uint64_t)sent;
}

/* curl calls this once the request's connection is ready (new or reused), before sending. */
static int mark_connected(void *user, char *primary_ip, char *local_ip, int primary_port,
                          int local_port)
{
    struct stream *stream = user;

    (void)primary_ip;
    (void)local_ip;
    (void)primary_port;
    (void)local_port;
    stream->connected = true;
    stream->activity_bytes++; /* restarts the stall timer from here */
    return CURL_PREREQFUNC_OK;
}

/* Adds the TCP_INFO of a connection about to close to the phase's summary. */
static void add_tcp_info(struct phase *phase, curl_socket_t fd)
{
    struct tcp_info info;
    socklen_t length = sizeof(info);
    struct tcp_summary *tcp = &phase->tcp;
    double min_rtt_ms;

    memset(&info, 0, sizeof(info));
    if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &length) != 0)
        return;
    /* A socket that never connected (refused, or the loser of a dual-stack race) moved
     * nothing and does not count, and neither does one whose kernel returns a struct tcp_info
     * too old to have the byte counts. */
    if (length < offsetof(struct tcp_info, tcpi_bytes_received) + sizeof(info.tcpi_bytes_received))
        return;
    if (info.tcpi_bytes_acked == 0 && info.tcpi_bytes_received == 0)
        return;

    min_rtt_ms = info.tcpi_min_rtt / 1000.0;
    if (!tcp->available || min_rtt_ms < tcp->min_rtt_ms)
        tcp->min_rtt_ms = min_rtt_ms;
    tcp->available = true;
    tcp->connections++;
    phase->rtt_sum_ms += info.tcpi_rtt / 1000.0;
    tcp->rtt_ms = phase->rtt_sum_ms / tcp->connections;
    tcp->bytes_acked += info.tcpi_bytes_acked;
    tcp->bytes_received += info.tcpi_bytes_received;
    tcp->bytes_retrans += info.tcpi_bytes_retrans;
    tcp->retransmits += info.tcpi_total_retrans;
}

/* curl calls this for every socket it closes, including those still open at
 * curl_multi_cleanup, so each connection is sampled once before it goes away. */
static int close_socket(void *user, curl_socket_t fd)
{
    add_tcp_info(user, fd);
    return close(fd);
}

static int configure_stream(struct phase *phase, struct stream *stream)
{
    const struct client_target *target = phase->target;
    long ip_resolve = CURL_IPRESOLVE_WHATEVER;
    CURL *easy = curl_easy_init();

    if (easy == NULL)
        return -ENOMEM;
    stream->easy = easy;
    stream->phase = phase;
    if (target->ip_version == 4)
        ip_resolve = CURL_IPRESOLVE_V4;
    else if (target->ip_version == 6)
        ip_resolve = CURL_IPRESOLVE_V6;

    curl_easy_setopt(easy, CURLOPT_PRIVATE, stream);
    curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, stream->curl_error);
    curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(easy, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
    curl_easy_setopt(easy, CURLOPT_IPRESOLVE, ip_resolve);
    if (target->timeout_s > 0)
        curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS, (long)(target->timeout_s * 1000.0));
    if (target->insecure) {
        curl_easy_setopt(easy, CURLOPT_SSL_VERIFYPEER, 0L);
        curl_easy_setopt(easy, CURLOPT_SSL_VERIFYHOST, 0L);
    }
    curl_easy_setopt(easy, CURLOPT_PREREQFUNCTION, mark_connected);
    curl_easy_setopt(easy, CURLOPT_PREREQDATA, stream);
    curl_easy_setopt(easy, CURLOPT_CLOSESOCKETFUNCTION, close_socket);
    curl_easy_setopt(easy, CURLOPT_CLOSESOCKETDATA, phase);

    if (phase->upload) {
        curl_easy_setopt(easy, CURLOPT_POST, 1L);
        curl_easy_setopt(easy, CURLOPT_HTTPHEADER, phase->upload_headers);
        curl_easy_setopt(easy, CURLOPT_READFUNCTION, send_upload);
        curl_easy_setopt(easy, CURLOPT_READDATA, stream);
        curl_easy_setopt(easy, CURLOPT_SEEKFUNCTION, seek_upload);
        curl_easy_setopt(easy, CURLOPT_SEEKDATA, stream);
        curl_easy_setopt(easy, CURLOPT_UPLOAD_BUFFERSIZE, UPLOAD_CURL_BUFFER_BYTES);
        curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, receive_response);
    } else {
        curl_easy_setopt(easy, CURLOPT_HTTPGET, 1L);
        curl_easy_setopt(easy, CURLOPT_BUFFERSIZE, DOWNLOAD_CURL_BUFFER_BYTES);
        curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, receive_download);
    }
    curl_easy_setopt(easy, CURLOPT_WRITEDATA, stream);
    return 0;
}

/* Sends the stream's next request. */
static int start_request(struct phase *phase, struct stream *stream, double now)
{
    char url[CLIENT_URL_MAX + 64];

    stream->status = 0;
    stream->response_size = 0;
    stream->response[0] = '\0';
    stream->body_offset = 0;
    stream->sent_bytes = 0;
    stream->received_bytes = 0;
    stream->abort_reason[0] = '\0';
    stream->performed = false;
    stream->request_start_ms = now;
    stream->connected = false;
    stream->activity_ms = now;
    stream->activity_seen_bytes = stream->activity_bytes;
    if (phase->upload) {
        stream->request_bytes =
            method_upload_request_bytes(stream->previous_bytes, stream->previous_ms);
        if (stream->request_bytes > phase->upload_max_request_bytes)
            stream->request_bytes = phase->upload_max_request_bytes;
        curl_easy_setopt(stream->easy, CURLOPT_POSTFIELDSIZE_LARGE,
                         (curl_off_t)stream->request_bytes);
    } else {
        stream->request_bytes = phase->download_request_bytes;
    }
    format_url(phase, stream, url, sizeof(url));
    curl_easy_setopt(stream->easy, CURLOPT_URL, url);

    if (curl_multi_add_handle(phase->multi, stream->easy) != CURLM_OK) {
        fail_stream(phase, stream, 0, "libcurl could not add the request");
        return -EIO;
    }
    stream->active = true;
    return 0;
}

static int start_stream(struct phase *phase, double now)
{
    struct stream *stream = &phase->streams[phase->stream_count];
    int rc;

    if (phase->stream_count >= CLIENT_MAX_STREAMS)
        return 0;
    rc = configure_stream(phase, stream);
    if (rc != 0)
        return rc;
    phase->stream_count++;
    start_request(phase, stream, now);
    return 0;
}

/* Describes a failed transfer in the usual words for the error message. */
static void fail_transfer(struct phase *phase, struct stream *stream, CURLcode code)
{
    const char *detail = stream->curl_error[0] ? stream->curl_error : curl_easy_strerror(code);
    long os_errno = 0;

    if (code == CURLE_WRITE_ERROR && stream->abort_reason[0] != '\0') {
        fail_stream(phase, stream, 0, "%s", stream->abort_reason);
        return;
    }
    curl_easy_getinfo(stream->easy, CURLINFO_OS_ERRNO, &os_errno);
    switch (code) {
    case CURLE_COULDNT_CONNECT:
        if (os_errno == ECONNREFUSED)
            fail_stream(phase, stream, 0, "connection refused");
        else
            fail_stream(phase, stream, 0, "connection failed (%s)", detail);
        break;
    case CURLE_OPERATION_TIMEDOUT:
        /* Only the connect timeout is set, because the loop checks stalls itself. */
        fail_stream(phase, stream, 0, "connection timed out after %g s", phase->target->timeout_s);
        break;
    case CURLE_PEER_FAILED_VERIFICATION:
        fail_stream(phase, stream, 0, "TLS certificate verification failed (%s)", detail);
        break;
    case CURLE_PARTIAL_FILE:
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
    case CURLE_GOT_NOTHING:
        fail_stream(phase, stream, 0, "connection closed mid-transfer (%s)", detail);
        break;
    default:
        fail_stream(phase, stream, 0, "%s", detail);
        break;
    }
}

/* Returns the "bytes" field of the server's response to POST /__up, or -1 if it is missing. */
static long long confirmed_bytes(const struct stream *stream)
{
    json_t *root = json_loads(stream->response, 0, NULL);
    json_t *bytes = json_object_get(root, "bytes");
    long long value = json_is_integer(bytes) ? json_integer_value(bytes) : -1;

    json_decref(root);
    return value;
}

static void finish_upload(struct phase *phase, struct stream *stream, double now)
{
    long long bytes = confirmed_bytes(stream);
    struct method_request request = {
        .start_ms = stream->request_start_ms, .end_ms = now, .bytes = (uint64_t)bytes};
    void *grown;

    if (bytes < 0) {
        fail_stream(phase, stream, 0, "invalid response, expected {\"bytes\":N}: %.100s",
                    stream->response);
        return;
    }
    if ((uint64_t)bytes > stream->request_bytes) {
        fail_stream(phase, stream, 0, "invalid response: %lld bytes confirmed of a %llu-byte body",
                    bytes, (unsigned long long)stream->request_bytes);
        return;
    }
    if (phase->request_count == phase->request_capacity) {
        size_t capacity = phase->request_capacity ? phase->request_capacity * 2 : 256;
        grown = realloc(phase->requests, capacity * sizeof(*phase->requests));
        if (grown == NULL) {
            fail_stream(phase, stream, 0, "out of memory");
            return;
        }
        phase->requests = grown;
        phase->request_capacity = capacity;
    }
    phase->requests[phase->request_count++] = request;
    phase->confirmed_bytes += request.bytes;
    phase->finished_bytes += stream->request_bytes;
    stream->previous_bytes = request.bytes;
    stream->previous_ms = request.end_ms - request.start_ms;
    if (!phase->stopping)
        start_request(phase, stream, now);
}

/* Fails the stream unless its download delivered exactly the N bytes requested. A response
 * with no body never reaches receive_download, so its Content-Length is checked here. The
 * byte count is a safeguard, because curl ends a body cut short of its Content-Length with
 * CURLE_PARTIAL_FILE. */
static void finish_download(struct phase *phase, struct stream *stream, double now)
{
    if (!check_content_length(stream)) {
        fail_stream(phase, stream, 0, "%s", stream->abort_reason);
        return;
    }
    if (stream->received_bytes != stream->request_bytes) {
        fail_stream(phase, stream, 0, "expected %llu bytes, got %llu",
                    (unsigned long long)stream->request_bytes,
                    (unsigned long long)stream->received_bytes);
        return;
    }
    if (!phase->stopping)
        start_request(phase, stream, now);
}

/* Writes ": " and the first line of the stream's error response into reason, or "" unless
 * the body is text/plain (or untyped) and at most REASON_BODY_MAX_BYTES long. Control
 * characters (below 0x20, and 0x7f) become \xNN, so that a server cannot put control sequences
 * on the user's terminal. A reason longer than size is cut. */
static void format_reason(const struct stream *stream, char *reason, size_t size)
{
    char *type = NULL;
    size_t length = 0;

    reason[0] = '\0';
    if (size < sizeof(": \\xff") || stream->response_size == 0 ||
        stream->response_size > REASON_BODY_MAX_BYTES)
        return;
    if (curl_easy_getinfo(stream->easy, CURLINFO_CONTENT_TYPE, &type) != CURLE_OK)
        return;
    if (type != NULL && strncasecmp(type, "text/plain", strlen("text/plain")) != 0)
        return;
    if (stream->response[0] == '\r' || stream->response[0] == '\n')
        return;

    reason[length++] = ':';
    reason[length++] = ' ';
    for (size_t i = 0; i < stream->response_size; i++) {
        unsigned char byte = (unsigned char)stream->response[i];

        if (byte == '\r' || byte == '\n' || size - length < sizeof("\\xff"))
            break;
        if (byte >= 0x20 && byte != 0x7f)
            reason[length++] = (char)byte;
        else
            length += (size_t)snprintf(reason + length, size - length, "\\x%02x", byte);
    }
    reason[length] = '\0';
}

/* Handles the end of a stream's request: the next request, a smaller download, or a
 * failure. */
static void finish_request(struct phase *phase, struct stream *stream, CURLcode code)
{
    double now = now_ms();
    long status = 0;

    if (phase->upload)
        count_sent_bytes(phase, stream);
    curl_multi_remove_handle(phase->multi, stream->easy);
    stream->active = false;
    if (code != CURLE_OK) {
        fail_transfer(phase, stream, code);
        return;
    }
    curl_easy_getinfo(stream->easy, CURLINFO_RESPONSE_CODE, &status);

    if (!phase->upload && status == 400 && stream->request_bytes > DOWNLOAD_MIN_REQUEST_BYTES) {
        /* N is over the server's --max-download-bytes, so every stream requests half. */
        if (phase->download_request_bytes >= stream->request_bytes)
            phase->download_request_bytes = stream->request_bytes / 2;
        if (!phase->stopping)
            start_request(phase, stream, now);
        return;
    }
    if (phase->upload && status == 413 && stream->request_bytes > METHOD_UPLOAD_MIN_REQUEST_BYTES) {
        /* The body is over the server's --max-upload-bytes, so no stream sends more than half. */
        if (phase->upload_max_request_bytes >= stream->request_bytes)
            phase->upload_max_request_bytes = stream->request_bytes / 2;
        if (!phase->stopping)
            start_request(phase, stream, now);
        return;
    }
    if (status != 200) {
        char reason[4 * REASON_BODY_MAX_BYTES + 3];

        format_reason(stream, reason, sizeof(reason));
        fail_stream(phase, stream, (int)status, "HTTP %ld%s", status, reason);
        return;
    }
    if (phase->upload)
        finish_upload(phase, stream, now);
    else
        finish_download(phase, stream, now);
}

/* Runs curl on every stream and handles the requests that ended. */
static int run_curl(struct phase *phase)
{
    int running = 0;
    int queued = 0;
    CURLMsg *message;
    CURLMcode code;

    for (unsigned i = 0; i < phase->stream_count; i++)
        phase->streams[i].performed = phase->streams[i].active;
    code = curl_multi_perform(phase->multi, &running);
    if (code != CURLM_OK)
        return client_fail(&phase->error, "%s: libcurl failed: %s", phase->name,
                           curl_multi_strerror(code));
    while ((message = curl_multi_info_read(phase->multi, &queued)) != NULL) {
        struct stream *stream = NULL;

        if (message->msg != CURLMSG_DONE)
            continue;
        curl_easy_getinfo(message->easy_handle, CURLINFO_PRIVATE, (char **)&stream);
        finish_request(phase, stream, message->data.result);
    }
    return 0;
}

/* Counts the upload bytes sent, and fails each connected stream that moved no byte for the
 * target's timeout. A timeout of 0 or less sets no stall limit, and curl's own connect
 * timeout (300 s) applies. */
static void check_streams(struct phase *phase, double now)
{
    double timeout_ms = phase->target->timeout_s * 1000.0;

    for (unsigned i = 0; i < phase->stream_count; i++) {
        struct stream *stream = &phase->streams[i];

        if (!stream->active)
            continue;
        if (phase->upload)
            count_sent_bytes(phase, stream);
        if (!stream->connected)
            continue;
        if (stream->activity_bytes != stream->activity_seen_bytes) {
            stream->activity_seen_bytes = stream->activity_bytes;
            stream->activity_ms = now;
        } else if (timeout_ms > 0 && now - stream->activity_ms >= timeout_ms) {
            fail_stream(phase, stream, 0, "no data for %g s", phase->target->timeout_s);
        }
    }
}

static bool cancelled(const struct phase *phase)
{
    return phase->options->cancel != NULL && *phase->options->cancel != 0;
}

/* Waits for socket activity, at most until deadline_ms and at most POLL_MAX_MS. */
static void wait_curl(struct phase *phase, double now, double deadline_ms)
{
    double wait_ms = deadline_ms - now;

    if (wait_ms > POLL_MAX_MS)
        wait_ms = POLL_MAX_MS;
    if (wait_ms < 0)
        wait_ms = 0;
    curl_multi_poll(phase->multi, NULL, 0, (int)wait_ms, NULL);
}

static void report_progress(struct phase *phase, double now)
{
    struct client_progress progress = {
        .phase = phase->name,
        .elapsed_ms = now - phase->method.start.time_ms,
        .bytes = phase->bytes,
        .current_bps = method_recent_bps(&phase->method, 1000.0),
        .streams = phase->stream_count - phase->failed_count,
    };

    if (phase->options->progress != NULL)
        phase->options->progress(phase->options->progress_context, &progress);
}

static int fail_cancelled(struct phase *phase)
{
    client_fail(&phase->error, "%s: cancelled", phase->name);
    return -ECANCELED;
}

/* Runs the phase until the method decides to stop; *stop is the time and byte count then. */
static int run_until_stop(struct phase *phase, struct method_sample *stop)
{
    double now = now_ms();
    double next_tick_ms = now + METHOD_TICK_MS;
    int streams = method_phase_init(&phase->method, phase->options->streams, CLIENT_MAX_STREAMS,
                                    phase->options->max_duration_s * 1000.0,
                                    phase->options->stop_when_stable, now);

    if (streams < 0)
        return streams;
    for (int i = 0; i < streams; i++) {
        int rc = start_stream(phase, now);
        if (rc != 0)
            return rc;
    }

    for (;;) {
        int rc = run_curl(phase);
        int decision;

        if (rc != 0)
            return rc;
        now = now_ms();
        if (cancelled(phase))
            return fail_cancelled(phase);
        check_streams(phase, now);
        if (phase->failed_count == phase->stream_count)
            return -EIO;

        if (now >= next_tick_ms) {
            decision = method_phase_tick(&phase->method, now, phase->bytes);
            next_tick_ms += METHOD_TICK_MS;
            if (next_tick_ms < now)
                next_tick_ms = now + METHOD_TICK_MS;
            if (decision < 0)
                return decision;
            report_progress(phase, now);
            if (decision == METHOD_STOP) {
                stop->time_ms = now;
                stop->bytes = phase->bytes;
                return 0;
            }
            if (decision == METHOD_ADD_STREAM) {
                rc = start_stream(phase, now);
                if (rc != 0)
                    return rc;
            }
        }
        wait_curl(phase, now, next_tick_ms);
    }
}

/* Lets the upload requests in flight finish for at most UPLOAD_DRAIN_MS. */
static int drain_uploads(struct phase *phase, double stop_ms)
{
    double deadline_ms = stop_ms + UPLOAD_DRAIN_MS;

    phase->stopping = true;
    for (;;) {
        int rc = run_curl(phase);
        double now = now_ms();
        bool active = false;

        if (rc != 0)
            return rc;
        if (cancelled(phase))
            return fail_cancelled(phase);
        check_streams(phase, now);
        for (unsigned i = 0; i < phase->stream_count; i++)
            active = active || phase->streams[i].active;
        if (!active || now >= deadline_ms)
            return 0;
        wait_curl(phase, now, deadline_ms);
    }
}

static int fill_random(unsigned char *buffer, size_t size)
{
    size_t filled = 0;

    while (filled < size) {
        ssize_t n = getrandom(buffer + filled, size - filled, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        filled += (size_t)n;
    }
    return 0;
}

static int open_phase(struct phase *phase, const struct client_target *target,
                      const struct transfer_options *options)
{
    int rc;

    phase->target = target;
    phase->options = options;
    phase->upload = options->direction == CLIENT_UPLOAD;
    phase->name = phase->upload ? "upload" : "download";
    phase->download_request_bytes = DOWNLOAD_REQUEST_BYTES;
    phase->upload_max_request_bytes = METHOD_UPLOAD_MAX_REQUEST_BYTES;
    if (options->streams > CLIENT_MAX_STREAMS) {
        client_fail(&phase->error,
                    "%s: invalid stream count %u: expected 1 to %d, or 0 for automatic",
                    phase->name, options->streams, CLIENT_MAX_STREAMS);
        return -EINVAL;
    }
    if (!(options->max_duration_s > 0)) {
        client_fail(&phase->error, "%s: invalid maximum duration %g s: expected more than 0",
                    phase->name, options->max_duration_s);
        return -EINVAL;
    }

    phase->multi = curl_multi_init();
    if (phase->multi == NULL)
        return -ENOMEM;
    if (phase->upload) {
        /* Expect: 100-continue would cost a round trip per request. */
        struct curl_slist *headers = curl_slist_append(NULL, "Expect:");
        if (headers == NULL)
            return -ENOMEM;
        phase->upload_headers = headers;
        headers = curl_slist_append(headers, "Content-Type: application/octet-stream");
        if (headers == NULL)
            return -ENOMEM;
        phase->upload_headers = headers;
        phase->body = malloc(UPLOAD_BODY_BYTES);
        if (phase->body == NULL)
            return -ENOMEM;
        rc = fill_random(phase->body, UPLOAD_BODY_BYTES);
        if (rc != 0) {
            client_fail(&phase->error, "%s: getrandom failed: %s", phase->name, strerror(-rc));
            return rc;
        }
    }
    return 0;
}

/* Releases curl's handles; closing the connections adds their TCP_INFO to phase->tcp. */
static void close_phase(struct phase *phase)
{
    for (unsigned i = 0; i < phase->stream_count; i++) {
        struct stream *stream = &phase->streams[i];
        if (stream->active)
            curl_multi_remove_handle(phase->multi, stream->easy);
        curl_easy_cleanup(stream->easy);
    }
    if (phase->multi != NULL)
        curl_multi_cleanup(phase->multi);
    curl_slist_free_all(phase->upload_headers);
    free(phase->body);
    free(phase->requests);
    method_phase_free(&phase->method);
}

static int fill_result(struct phase *phase, struct method_sample stop,
                       struct throughput_result *result)
{
    struct method_window window = method_phase_window(&phase->method, stop.time_ms, stop.bytes);
    double window_ms = window.end.time_ms - window.start.time_ms;

    memset(result, 0, sizeof(*result));
    /* A server that stops sending or reading, while the connection stays open, makes no
     * stream fail before --timeout. When that is longer than the phase, a rate of 0 means
     * it stalled. */
    if (phase->bytes == 0)
        return client_fail(&phase->error, "%s: %s %s/%s: no data %s in %.1f s", phase->name,
                           phase->upload ? "POST" : "GET", phase->target->base_url,
                           phase->upload ? "__up" : "__down",
                           phase->upload ? "could be sent" : "received",
                           (stop.time_ms - phase->method.start.time_ms) / 1000.0);
    if (!phase->upload && window.end.bytes == window.start.bytes)
        return client_fail(&phase->error,
                           "%s: GET %s/__down: no data received in the last %.1f s of the "
                           "phase, after %llu bytes",
                           phase->name, phase->target->base_url, window_ms / 1000.0,
                           (unsigned long long)phase->bytes);
    if (phase->upload) {
        double bytes = method_attribute_bytes(phase->requests, phase->request_count,
                                              window.start.time_ms, window.end.time_ms);
        /* NOTE: requests still running UPLOAD_DRAIN_MS after the stop are aborted, and their
         * bytes are missing from the window. So on links where one request lasts seconds
         * (64 KiB, the smallest, takes 0.5 s at 1 Mbit/s) the rate reads low. */
        if (phase->request_count > 0 && phase->confirmed_bytes == 0)
            return client_fail(&phase->error,
                               "%s: POST %s/__up: the server confirmed 0 of %llu bytes in %zu "
                               "requests",
                               phase->name, phase->target->base_url,
                               (unsigned long long)phase->finished_bytes, phase->request_count);
        if (bytes <= 0 && phase->bytes > 0 && phase->request_count == 0)
            return client_fail(&phase->error,
                               "%s: POST %s/__up: no request finished in time, so the server "
                               "confirmed no bytes; the link is too slow for a %g s phase",
                               phase->name, phase->target->base_url,
                               phase->options->max_duration_s);
        if (bytes <= 0 && phase->bytes > 0)
            return client_fail(&phase->error,
                               "%s: POST %s/__up: no request in the stable window finished in "
                               "time, so the link is too slow for a %g s phase",
                               phase->name, phase->target->base_url,
                               phase->options->max_duration_s);
        result->bps = window_ms > 0 ? bytes * 8.0 * 1000.0 / window_ms : 0;
        result->server_bytes = phase->confirmed_bytes;
    } else {
        result->bps = method_bps(window.end.bytes - window.start.bytes, window_ms);
    }
    result->bytes = phase->bytes;
    result->streams = phase->stream_count - phase->failed_count;
    result->duration_ms = stop.time_ms - phase->method.start.time_ms;
    result->stable_window_ms = window_ms;
    result->failed_streams = phase->failed_count;
    if (phase->has_error) {
        /* A message longer than the field, from a long URL or reason, is cut. */
        size_t length = strnlen(phase->error.message, sizeof(result->stream_error) - 1);

        memcpy(result->stream_error, phase->error.message, length);
        result->stream_error[length] = '\0';
    }
    return 0;
}

int transfer_measure(const struct client_target *target, const struct transfer_options *options,
                     struct throughput_result *result, struct client_error *err)
{
    struct phase *phase = calloc(1, sizeof(*phase));
    struct method_sample stop = {0};
    int rc;

    if (phase == NULL)
        return client_fail(err, "out of memory");
    /* Reference counted. It is thread-safe where curl_version_info() reports
     * CURL_VERSION_THREADSAFE, as Debian's libcurl 7.88.1 does. */
    curl_global_init(CURL_GLOBAL_DEFAULT);
    rc = open_phase(phase, target, options);
    if (rc == 0)
        rc = run_until_stop(phase, &stop);
    if (rc == 0 && phase->upload)
        rc = drain_uploads(phase, stop.time_ms);
    if (rc == 0)
        rc = fill_result(phase, stop, result);
    close_phase(phase);

    if (rc == 0) {
        result->tcp = phase->tcp;
    } else {
        if (phase->error.message[0] == '\0')
            client_fail(&phase->error, "%s: %s", phase->name, strerror(-rc));
        *err = phase->error;
    }
    free(phase);
    curl_global_cleanup();
    return rc;
}
