/*
 * wsread: single-connection WebSocket download benchmark client for linkspeed.
 *
 * It connects to a /ws endpoint, sends a text message, reads the binary message
 * that the server sends in response, and repeats until the duration has passed.
 * Each binary message must have exactly --payload-size bytes. The result is the
 * payload bytes received per second, in Gbit/s (1 Gbit = 10^9 bit).
 *
 * The client needs only libc: the handshake (RFC 6455 section 4), SHA-1 for the
 * Sec-WebSocket-Accept check and the frame parser are written here. It reads with
 * large recv() buffers and only counts payload bytes, so that the client is not
 * the bottleneck of the measurement.
 *
 * Build: cc -O2 -o wsread bench/wsread.c
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

enum {
    OPCODE_CONTINUATION = 0x0,
    OPCODE_TEXT = 0x1,
    OPCODE_BINARY = 0x2,
    OPCODE_CLOSE = 0x8,
    OPCODE_PING = 0x9,
    OPCODE_PONG = 0xA,
};

/* Maximum payload size of a control frame (RFC 6455 section 5.5). */
#define CONTROL_PAYLOAD_MAX 125
/* Maximum size of the HTTP response to the upgrade request. */
#define HANDSHAKE_RESPONSE_MAX 16384
/* Timeout of one blocking recv(), so that the deadline is checked at least this often. */
#define RECV_TIMEOUT_MS 100
/* Maximum time to wait for the server's close frame after the measurement. */
#define CLOSE_WAIT_SECONDS 3.0

static const char WEBSOCKET_GUID[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
static const char REQUEST_TEXT[] = "next";

struct options {
    char host[256];
    char port[16];
    char path[1024];
    double duration_s;
    uint64_t payload_size;
    size_t buffer_size;
    unsigned inflight;
    double timeout_s;
    bool json;
};

/* Frame parser state. It survives across recv() calls, so a frame header or a
 * control payload may be split at any byte. */
struct parser {
    unsigned char header[14];
    size_t header_len;
    size_t header_need;
    bool in_payload;
    bool fin;
    int opcode;
    uint64_t frame_remaining;
    unsigned char control[CONTROL_PAYLOAD_MAX];
    size_t control_len;

    int message_opcode; /* 0 while no data message is open */
    uint64_t message_bytes;

    uint64_t payload_bytes; /* data frame payload bytes of all messages */
    uint64_t messages;      /* complete binary messages of the expected size */
    bool close_received;
    int close_code; /* 1005 (no status) when the close frame has no code */
};

struct connection {
    int fd;
    struct options *options;
    struct parser parser;
    uint64_t wire_bytes;
};

static void fail(const char *format, ...) __attribute__((noreturn, format(printf, 1, 2)));

static void fail(const char *format, ...)
{
    va_list args;
    va_start(args, format);
    fputs("wsread: ", stderr);
    vfprintf(stderr, format, args);
    fputc('\n', stderr);
    va_end(args);
    exit(1);
}

static double monotonic_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void fill_random(void *buffer, size_t length)
{
    unsigned char *out = buffer;
    while (length > 0) {
        ssize_t n = getrandom(out, length, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            fail("getrandom() failed: %s", strerror(errno));
        }
        out += n;
        length -= (size_t)n;
    }
}

/* ---- SHA-1 (FIPS 180-4), used only for the Sec-WebSocket-Accept check ---- */

struct sha1 {
    uint32_t state[5];
    uint64_t length_bits;
    unsigned char block[64];
    size_t block_len;
};

static uint32_t rotate_left(uint32_t value, unsigned bits)
{
    return (value << bits) | (value >> (32 - bits));
}

static void sha1_transform(struct sha1 *ctx, const unsigned char *block)
{
    uint32_t w[80];
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)block[4 * i] << 24 | (uint32_t)block[4 * i + 1] << 16 |
               (uint32_t)block[4 * i + 2] << 8 | (uint32_t)block[4 * i + 3];
    for (int i = 16; i < 80; i++)
        w[i] = rotate_left(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);

    uint32_t a = ctx->state[0], b = ctx->state[1], c = ctx->state[2];
    uint32_t d = ctx->state[3], e = ctx->state[4];
    for (int i = 0; i < 80; i++) {
        uint32_t f, k;
        if (i < 20) {
            f = (b & c) | (~b & d);
            k = 0x5A827999;
        } else if (i < 40) {
            f = b ^ c ^ d;
            k = 0x6ED9EBA1;
        } else if (i < 60) {
            f = (b & c) | (b & d) | (c & d);
            k = 0x8F1BBCDC;
        } else {
            f = b ^ c ^ d;
            k = 0xCA62C1D6;
        }
        uint32_t temp = rotate_left(a, 5) + f + e + k + w[i];
        e = d;
        d = c;
        c = rotate_left(b, 30);
        b = a;
        a = temp;
    }
    ctx->state[0] += a;
    ctx->state[1] += b;
    ctx->state[2] += c;
    ctx->state[3] += d;
    ctx->state[4] += e;
}

static void sha1_init(struct sha1 *ctx)
{
    static const uint32_t initial[5] = {0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0};
    memcpy(ctx->state, initial, sizeof initial);
    ctx->length_bits = 0;
    ctx->block_len = 0;
}

static void sha1_update(struct sha1 *ctx, const void *data, size_t length)
{
    const unsigned char *bytes = data;
    ctx->length_bits += (uint64_t)length * 8;
    for (size_t i = 0; i < length; i++) {
        ctx->block[ctx->block_len++] = bytes[i];
        if (ctx->block_len == 64) {
            sha1_transform(ctx, ctx->block);
            ctx->block_len = 0;
        }
    }
}

static void sha1_final(struct sha1 *ctx, unsigned char digest[20])
{
    uint64_t length_bits = ctx->length_bits;
    unsigned char pad = 0x80;
    sha1_update(ctx, &pad, 1);
    pad = 0;
    while (ctx->block_len != 56)
        sha1_update(ctx, &pad, 1);
    unsigned char length_be[8];
    for (int i = 0; i < 8; i++)
        length_be[i] = (unsigned char)(length_bits >> (56 - 8 * i));
    sha1_update(ctx, length_be, 8);
    for (int i = 0; i < 5; i++) {
        digest[4 * i] = (unsigned char)(ctx->state[i] >> 24);
        digest[4 * i + 1] = (unsigned char)(ctx->state[i] >> 16);
        digest[4 * i + 2] = (unsigned char)(ctx->state[i] >> 8);
        digest[4 * i + 3] = (unsigned char)ctx->state[i];
    }
}

/* Writes the base64 encoding of data, NUL-terminated, to out (4 * ceil(length / 3) + 1 bytes). */
static void base64_encode(const unsigned char *data, size_t length, char *out)
{
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t i = 0;
    for (; i + 3 <= length; i += 3) {
        uint32_t v = (uint32_t)data[i] << 16 | (uint32_t)data[i + 1] << 8 | data[i + 2];
        *out++ = alphabet[v >> 18];
        *out++ = alphabet[(v >> 12) & 63];
        *out++ = alphabet[(v >> 6) & 63];
        *out++ = alphabet[v & 63];
    }
    if (length - i == 1) {
        uint32_t v = (uint32_t)data[i] << 16;
        *out++ = alphabet[v >> 18];
        *out++ = alphabet[(v >> 12) & 63];
        *out++ = '=';
        *out++ = '=';
    } else if (length - i == 2) {
        uint32_t v = (uint32_t)data[i] << 16 | (uint32_t)data[i + 1] << 8;
        *out++ = alphabet[v >> 18];
        *out++ = alphabet[(v >> 12) & 63];
        *out++ = alphabet[(v >> 6) & 63];
        *out++ = '=';
    }
    *out = '\0';
}

/* ---- Sending ---- */

static void send_all(int fd, const void *data, size_t length)
{
    const unsigned char *bytes = data;
    while (length > 0) {
        ssize_t n = send(fd, bytes, length, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            fail("send() failed: %s", strerror(errno));
        }
        bytes += n;
        length -= (size_t)n;
    }
}

/* Sends one unfragmented frame with a payload of at most 125 bytes, masked with a
 * fresh random key as RFC 6455 section 5.3 requires of every client frame. */
static void send_masked_frame(int fd, int opcode, const void *payload, size_t length)
{
    unsigned char frame[2 + 4 + CONTROL_PAYLOAD_MAX];
    if (length > CONTROL_PAYLOAD_MAX)
        fail("internal error: frame payload of %zu bytes exceeds %d", length, CONTROL_PAYLOAD_MAX);
    frame[0] = (unsigned char)(0x80 | opcode);
    frame[1] = (unsigned char)(0x80 | length);
    fill_random(frame + 2, 4);
    const unsigned char *in = payload;
    for (size_t i = 0; i < length; i++)
        frame[6 + i] = in[i] ^ frame[2 + (i & 3)];
    send_all(fd, frame, 6 + length);
}

static void send_request(struct connection *conn)
{
    send_masked_frame(conn->fd, OPCODE_TEXT, REQUEST_TEXT, sizeof REQUEST_TEXT - 1);
}

/* ---- Frame parsing ---- */

static const char *opcode_name(int opcode)
{
    switch (opcode) {
    case OPCODE_CONTINUATION:
        return "continuation";
    case OPCODE_TEXT:
        return "text";
    case OPCODE_BINARY:
        return "binary";
    case OPCODE_CLOSE:
        return "close";
    case OPCODE_PING:
        return "ping";
    case OPCODE_PONG:
        return "pong";
    default:
        return "reserved";
    }
}

/* Validates the complete header in parser->header and prepares the payload state. */
static void start_frame(struct parser *p)
{
    const unsigned char *h = p->header;
    p->fin = (h[0] & 0x80) != 0;
    p->opcode = h[0] & 0x0F;
    if (h[0] & 0x70)
        fail("server frame has RSV bits 0x%02x set, but no extension was negotiated", h[0] & 0x70);
    if (h[1] & 0x80)
        fail("server frame is masked, which RFC 6455 forbids for server frames");

    uint64_t length = h[1] & 0x7F;
    if (length == 126) {
        length = (uint64_t)h[2] << 8 | h[3];
    } else if (length == 127) {
        length = 0;
        for (int i = 0; i < 8; i++)
            length = length << 8 | h[2 + i];
        if (length >> 63)
            fail("server frame length has the most significant bit set");
    }

    switch (p->opcode) {
    case OPCODE_BINARY:
    case OPCODE_TEXT:
        if (p->message_opcode != 0)
            fail("server started a %s message inside an unfinished message",
                 opcode_name(p->opcode));
        if (p->opcode == OPCODE_TEXT)
            fail("server sent a text message, expected only binary messages");
        p->message_opcode = p->opcode;
        p->message_bytes = 0;
        break;
    case OPCODE_CONTINUATION:
        if (p->message_opcode == 0)
            fail("server sent a continuation frame outside a message");
        break;
    case OPCODE_CLOSE:
    case OPCODE_PING:
    case OPCODE_PONG:
        if (!p->fin)
            fail("server sent a fragmented %s frame", opcode_name(p->opcode));
        if (length > CONTROL_PAYLOAD_MAX)
            fail("server sent a %s frame of %" PRIu64 " bytes, maximum is %d",
                 opcode_name(p->opcode), length, CONTROL_PAYLOAD_MAX);
        p->control_len = 0;
        break;
    default:
        fail("server sent a frame with reserved opcode 0x%x", p->opcode);
    }
    p->frame_remaining = length;
    p->in_payload = true;
}

/* Handles the end of a frame. Returns the number of binary messages completed (0 or 1). */
static unsigned finish_frame(struct connection *conn)
{
    struct parser *p = &conn->parser;
    p->in_payload = false;
    p->header_len = 0;
    p->header_need = 2;

    switch (p->opcode) {
    case OPCODE_BINARY:
    case OPCODE_CONTINUATION:
        if (!p->fin)
            return 0;
        if (p->message_bytes != conn->options->payload_size)
            fail("binary message %" PRIu64 " has %" PRIu64 " bytes, expected %" PRIu64,
                 p->messages + 1, p->message_bytes, conn->options->payload_size);
        p->messages++;
        p->message_opcode = 0;
        return 1;
    case OPCODE_PING:
        send_masked_frame(conn->fd, OPCODE_PONG, p->control, p->control_len);
        return 0;
    case OPCODE_PONG:
        return 0;
    case OPCODE_CLOSE:
        p->close_received = true;
        p->close_code = 1005;
        if (p->control_len >= 2)
            p->close_code = p->control[0] << 8 | p->control[1];
        return 0;
    default:
        return 0;
    }
}

/* Parses length bytes of the stream. Returns the number of binary messages completed. */
static unsigned parse_bytes(struct connection *conn, const unsigned char *data, size_t length)
{
    struct parser *p = &conn->parser;
    unsigned completed = 0;
    size_t pos = 0;

    while (pos < length && !p->close_received) {
        if (!p->in_payload) {
            while (p->header_len < p->header_need && pos < length)
                p->header[p->header_len++] = data[pos++];
            if (p->header_len < p->header_need)
                break;
            if (p->header_need == 2) {
                /* The second byte gives the size of the extended length and mask key. */
                size_t extra = 0;
                unsigned short_length = p->header[1] & 0x7F;
                if (short_length == 126)
                    extra = 2;
                else if (short_length == 127)
                    extra = 8;
                if (p->header[1] & 0x80)
                    extra += 4;
                if (extra > 0) {
                    p->header_need = 2 + extra;
                    continue;
                }
            }
            start_frame(p);
            if (p->frame_remaining == 0)
                completed += finish_frame(conn);
            continue;
        }

        size_t available = length - pos;
        size_t take = p->frame_remaining < available ? (size_t)p->frame_remaining : available;
        if (p->opcode == OPCODE_BINARY || p->opcode == OPCODE_CONTINUATION) {
            p->message_bytes += take;
            p->payload_bytes += take;
        } else {
            memcpy(p->control + p->control_len, data + pos, take);
            p->control_len += take;
        }
        pos += take;
        p->frame_remaining -= take;
        if (p->frame_remaining == 0)
            completed += finish_frame(conn);
    }
    return completed;
}

/* ---- Connection and handshake ---- */

static int connect_tcp(const struct options *options)
{
    struct addrinfo hints = {0};
    struct addrinfo *addresses;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    int rc = getaddrinfo(options->host, options->port, &hints, &addresses);
    if (rc != 0)
        fail("cannot resolve %s:%s: %s", options->host, options->port, gai_strerror(rc));

    int fd = -1;
    int last_errno = 0;
    for (struct addrinfo *a = addresses; a != NULL; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
        if (fd < 0) {
            last_errno = errno;
            continue;
        }
        if (connect(fd, a->ai_addr, a->ai_addrlen) == 0)
            break;
        last_errno = errno;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(addresses);
    if (fd < 0)
        fail("connect to %s:%s failed: %s", options->host, options->port, strerror(last_errno));

    int enable = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &enable, sizeof enable);
    struct timeval tv = {.tv_sec = 0, .tv_usec = RECV_TIMEOUT_MS * 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    return fd;
}

/* Returns the value of header name in the HTTP response head, or NULL. The value is
 * copied to out without surrounding whitespace. */
static const char *find_header(const char *head, const char *name, char *out, size_t out_size)
{
    size_t name_len = strlen(name);
    const char *line = strstr(head, "\r\n");
    while (line != NULL && line[2] != '\r' && line[2] != '\0') {
        line += 2;
        const char *end = strstr(line, "\r\n");
        if (end == NULL)
            end = line + strlen(line);
        if ((size_t)(end - line) > name_len && strncasecmp(line, name, name_len) == 0 &&
            line[name_len] == ':') {
            const char *value = line + name_len + 1;
            while (value < end && (*value == ' ' || *value == '\t'))
                value++;
            const char *value_end = end;
            while (value_end > value && (value_end[-1] == ' ' || value_end[-1] == '\t'))
                value_end--;
            size_t n = (size_t)(value_end - value);
            if (n >= out_size)
                n = out_size - 1;
            memcpy(out, value, n);
            out[n] = '\0';
            return out;
        }
        line = end;
    }
    return NULL;
}

/* Sends the upgrade request and checks the 101 response. Bytes received after the
 * response head are frame data and go to the parser. */
static void perform_handshake(struct connection *conn)
{
    const struct options *options = conn->options;
    unsigned char key_bytes[16];
    char key[25];
    fill_random(key_bytes, sizeof key_bytes);
    base64_encode(key_bytes, sizeof key_bytes, key);

    bool ipv6_literal = strchr(options->host, ':') != NULL;
    char request[2048];
    int n = snprintf(request, sizeof request,
                     "GET %s HTTP/1.1\r\n"
                     "Host: %s%s%s:%s\r\n"
                     "Upgrade: websocket\r\n"
                     "Connection: Upgrade\r\n"
                     "Sec-WebSocket-Key: %s\r\n"
                     "Sec-WebSocket-Version: 13\r\n"
                     "User-Agent: linkspeed-wsread\r\n"
                     "\r\n",
                     options->path, ipv6_literal ? "[" : "", options->host, ipv6_literal ? "]" : "",
                     options->port, key);
    if (n < 0 || (size_t)n >= sizeof request)
        fail("upgrade request is longer than %zu bytes, shorten --path", sizeof request);
    send_all(conn->fd, request, (size_t)n);

    char response[HANDSHAKE_RESPONSE_MAX + 1];
    size_t received = 0;
    char *head_end = NULL;
    double deadline = monotonic_seconds() + options->timeout_s;
    while (head_end == NULL) {
        if (received == HANDSHAKE_RESPONSE_MAX)
            fail("upgrade response head is longer than %d bytes", HANDSHAKE_RESPONSE_MAX);
        ssize_t r = recv(conn->fd, response + received, HANDSHAKE_RESPONSE_MAX - received, 0);
        if (r == 0)
            fail("server closed the connection during the upgrade (%zu bytes received)", received);
        if (r < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
                fail("recv() failed during the upgrade: %s", strerror(errno));
            if (monotonic_seconds() > deadline)
                fail("upgrade response timed out after %.1f s", options->timeout_s);
            continue;
        }
        received += (size_t)r;
        response[received] = '\0';
        head_end = strstr(response, "\r\n\r\n");
    }
    size_t head_len = (size_t)(head_end - response) + 4;
    head_end[2] = '\0'; /* keep the last header's CRLF for find_header */

    if (strncmp(response, "HTTP/1.1 101", 12) != 0) {
        char *line_end = strstr(response, "\r\n");
        if (line_end != NULL)
            *line_end = '\0';
        fail("upgrade rejected: server responded \"%s\", expected HTTP/1.1 101", response);
    }

    struct sha1 ctx;
    unsigned char digest[20];
    char expected_accept[29];
    sha1_init(&ctx);
    sha1_update(&ctx, key, strlen(key));
    sha1_update(&ctx, WEBSOCKET_GUID, sizeof WEBSOCKET_GUID - 1);
    sha1_final(&ctx, digest);
    base64_encode(digest, sizeof digest, expected_accept);

    char accept[128];
    if (find_header(response, "Sec-WebSocket-Accept", accept, sizeof accept) == NULL)
        fail("upgrade response has no Sec-WebSocket-Accept header");
    if (strcmp(accept, expected_accept) != 0)
        fail("Sec-WebSocket-Accept is \"%s\", expected \"%s\"", accept, expected_accept);

    char extensions[256];
    if (find_header(response, "Sec-WebSocket-Extensions", extensions, sizeof extensions))
        fail("server negotiated extensions \"%s\" that wsread did not offer", extensions);

    if (received > head_len) {
        conn->wire_bytes += received - head_len;
        unsigned completed =
            parse_bytes(conn, (unsigned char *)response + head_len, received - head_len);
        if (completed > 0)
            fail("server sent a binary message before any request");
    }
}

/* ---- Measurement ---- */

struct result {
    double seconds;
    uint64_t payload_bytes;
    uint64_t wire_bytes;
    uint64_t messages;
};

/* Receives into buffer once. Returns the byte count, or 0 when recv() timed out.
 * A closed connection or a failed recv() ends the program with an error. */
static size_t receive_some(struct connection *conn, unsigned char *buffer, size_t size)
{
    ssize_t n = recv(conn->fd, buffer, size, 0);
    if (n > 0)
        return (size_t)n;
    if (n == 0)
        fail("server closed the TCP connection after %" PRIu64 " messages", conn->parser.messages);
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
        return 0;
    fail("recv() failed: %s", strerror(errno));
}

static struct result measure(struct connection *conn, unsigned char *buffer)
{
    const struct options *options = conn->options;
    struct parser *p = &conn->parser;
    double start = monotonic_seconds();
    double deadline = start + options->duration_s;
    double last_data = start;
    double now = start;

    for (unsigned i = 0; i < options->inflight; i++)
        send_request(conn);

    /* Bounded by the deadline: every recv() returns within RECV_TIMEOUT_MS. */
    while (now < deadline) {
        size_t n = receive_some(conn, buffer, options->buffer_size);
        now = monotonic_seconds();
        if (n == 0) {
            if (now - last_data > options->timeout_s)
                fail("no data from the server for %.1f s", options->timeout_s);
            continue;
        }
        last_data = now;
        conn->wire_bytes += n;
        unsigned completed = parse_bytes(conn, buffer, n);
        if (p->close_received)
            fail("server sent close code %d during the measurement", p->close_code);
        for (unsigned i = 0; i < completed && now < deadline; i++)
            send_request(conn);
    }

    struct result result = {
        .seconds = now - start,
        .payload_bytes = p->payload_bytes,
        .wire_bytes = conn->wire_bytes,
        .messages = p->messages,
    };
    return result;
}

/* Sends close 1000 and reads (and validates) the rest of the stream until the
 * server's close frame arrives, for at most CLOSE_WAIT_SECONDS. */
static void close_connection(struct connection *conn, unsigned char *buffer)
{
    const unsigned char close_payload[2] = {1000 >> 8, 1000 & 0xFF};
    send_masked_frame(conn->fd, OPCODE_CLOSE, close_payload, sizeof close_payload);
    double deadline = monotonic_seconds() + CLOSE_WAIT_SECONDS;
    while (!conn->parser.close_received && monotonic_seconds() < deadline) {
        ssize_t n = recv(conn->fd, buffer, conn->options->buffer_size, 0);
        if (n == 0)
            break;
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
                continue;
            break;
        }
        parse_bytes(conn, buffer, (size_t)n);
    }
    if (!conn->parser.close_received)
        fprintf(stderr, "wsread: warning: no close frame from the server within %.0f s\n",
                CLOSE_WAIT_SECONDS);
    else if (conn->parser.close_code != 1000)
        fprintf(stderr, "wsread: warning: server closed with code %d, expected 1000\n",
                conn->parser.close_code);
    close(conn->fd);
}

/* ---- Command line ---- */

static void print_usage(FILE *out)
{
    fputs("usage: wsread [options] ws://HOST:PORT/PATH\n"
          "\n"
          "Measures single-connection WebSocket download throughput: sends a text\n"
          "message, reads the binary message sent in response, and repeats.\n"
          "\n"
          "options:\n"
          "  --duration SECONDS      measurement time (default 10)\n"
          "  --payload-size BYTES    expected size of every binary message\n"
          "                          (default 10485760)\n"
          "  --buffer-size BYTES     size of each recv() buffer (default 1048576)\n"
          "  --inflight N            text messages outstanding at a time (default 1)\n"
          "  --timeout SECONDS       maximum wait for the upgrade or for any data\n"
          "                          (default 5)\n"
          "  --json                  print the result as one JSON object\n"
          "  --help                  print this help\n",
          out);
}

static void usage_error(const char *format, ...) __attribute__((noreturn, format(printf, 1, 2)));

static void usage_error(const char *format, ...)
{
    va_list args;
    va_start(args, format);
    fputs("wsread: ", stderr);
    vfprintf(stderr, format, args);
    fputs("\nRun wsread --help for usage.\n", stderr);
    va_end(args);
    exit(2);
}

static double parse_seconds(const char *flag, const char *text, double min, double max)
{
    char *end;
    errno = 0;
    double value = strtod(text, &end);
    if (errno != 0 || end == text || *end != '\0' || !(value >= min && value <= max))
        usage_error("invalid %s \"%s\": expected seconds in %g..%g", flag, text, min, max);
    return value;
}

static uint64_t parse_count(const char *flag, const char *text, uint64_t min, uint64_t max)
{
    char *end;
    errno = 0;
    unsigned long long value = strtoull(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || !isdigit((unsigned char)text[0]) ||
        value < min || value > max)
        usage_error("invalid %s \"%s\": expected an integer in %" PRIu64 "..%" PRIu64, flag, text,
                    min, max);
    return value;
}

/* Splits ws://HOST:PORT/PATH into options. HOST may be an IPv6 literal in brackets. */
static void parse_url(const char *url, struct options *options)
{
    const char *prefix = "ws://";
    if (strncmp(url, prefix, strlen(prefix)) != 0)
        usage_error("invalid URL \"%s\": expected ws://HOST:PORT/PATH", url);
    const char *host = url + strlen(prefix);
    const char *host_end;
    const char *after_host;
    if (*host == '[') {
        host++;
        host_end = strchr(host, ']');
        if (host_end == NULL)
            usage_error("invalid URL \"%s\": missing ']' after the IPv6 address", url);
        after_host = host_end + 1;
    } else {
        host_end = host + strcspn(host, ":/");
        after_host = host_end;
    }
    if (host_end == host || (size_t)(host_end - host) >= sizeof options->host)
        usage_error("invalid URL \"%s\": missing or too long host", url);
    memcpy(options->host, host, (size_t)(host_end - host));
    options->host[host_end - host] = '\0';

    if (*after_host != ':')
        usage_error("invalid URL \"%s\": missing port", url);
    const char *port = after_host + 1;
    size_t port_len = strcspn(port, "/");
    if (port_len == 0 || port_len >= sizeof options->port)
        usage_error("invalid URL \"%s\": invalid port", url);
    memcpy(options->port, port, port_len);
    options->port[port_len] = '\0';
    parse_count("port", options->port, 1, 65535);

    const char *path = port + port_len;
    if (*path == '\0')
        path = "/";
    if (strlen(path) >= sizeof options->path)
        usage_error("invalid URL \"%s\": path is longer than %zu bytes", url,
                    sizeof options->path - 1);
    strcpy(options->path, path);
}

static void parse_options(int argc, char **argv, struct options *options)
{
    options->duration_s = 10;
    options->payload_size = 10485760;
    options->buffer_size = 1048576;
    options->inflight = 1;
    options->timeout_s = 5;
    options->json = false;
    const char *url = NULL;

    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        const char *value = i + 1 < argc ? argv[i + 1] : NULL;
        bool takes_value = true;
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            print_usage(stdout);
            exit(0);
        } else if (strcmp(arg, "--json") == 0) {
            options->json = true;
            takes_value = false;
        } else if (strncmp(arg, "--", 2) == 0 && value == NULL) {
            usage_error("missing value for %s", arg);
        } else if (strcmp(arg, "--duration") == 0) {
            options->duration_s = parse_seconds(arg, value, 0.01, 86400);
        } else if (strcmp(arg, "--payload-size") == 0) {
            options->payload_size = parse_count(arg, value, 1, UINT64_C(1) << 40);
        } else if (strcmp(arg, "--buffer-size") == 0) {
            options->buffer_size = (size_t)parse_count(arg, value, 4096, UINT64_C(1) << 30);
        } else if (strcmp(arg, "--inflight") == 0) {
            options->inflight = (unsigned)parse_count(arg, value, 1, 1024);
        } else if (strcmp(arg, "--timeout") == 0) {
            options->timeout_s = parse_seconds(arg, value, 0.1, 3600);
        } else if (strncmp(arg, "--", 2) == 0) {
            usage_error("unknown option %s", arg);
        } else if (url == NULL) {
            url = arg;
            takes_value = false;
        } else {
            usage_error("unexpected argument \"%s\"", arg);
        }
        if (takes_value)
            i++;
    }
    if (url == NULL)
        usage_error("missing URL, for example ws://127.0.0.1:8080/ws");
    parse_url(url, options);
}

int main(int argc, char **argv)
{
    struct options options;
    parse_options(argc, argv, &options);

    unsigned char *buffer = malloc(options.buffer_size);
    if (buffer == NULL)
        fail("cannot allocate a %zu-byte receive buffer", options.buffer_size);

    struct connection conn = {0};
    conn.options = &options;
    conn.parser.header_need = 2;
    conn.fd = connect_tcp(&options);
    perform_handshake(&conn);

    struct result result = measure(&conn, buffer);
    close_connection(&conn, buffer);
    free(buffer);
    /* Includes the rest of the messages in flight at the deadline, which the server
     * sent but the measurement does not count. */
    uint64_t total_payload_bytes = conn.parser.payload_bytes;

    double gbit_per_s = (double)result.payload_bytes * 8 / result.seconds / 1e9;
    if (options.json) {
        printf("{\"seconds\": %.6f, \"payload_bytes\": %" PRIu64 ", \"wire_bytes\": %" PRIu64
               ", \"messages\": %" PRIu64 ", \"payload_size\": %" PRIu64
               ", \"total_payload_bytes\": %" PRIu64
               ", \"inflight\": %u, \"buffer_size\": %zu, \"gbit_per_s\": %.4f}\n",
               result.seconds, result.payload_bytes, result.wire_bytes, result.messages,
               options.payload_size, total_payload_bytes, options.inflight, options.buffer_size,
               gbit_per_s);
    } else {
        printf("%" PRIu64 " payload bytes (%" PRIu64 " complete messages of %" PRIu64
               " bytes) in %.3f s: %.3f Gbit/s\n",
               result.payload_bytes, result.messages, options.payload_size, result.seconds,
               gbit_per_s);
    }
    return 0;
}
