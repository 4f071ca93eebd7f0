/*
 * ndt7bench: single-connection ndt7 client for benchmarks, libc only.
 *
 * It runs one ndt7 download or upload (M-Lab ndt7 protocol v0.11) against a
 * server over plain WebSocket and prints one JSON object. The object contains
 * the payload bytes of every message received (download) or sent (upload), the
 * seconds from the end of the handshake to the server's close frame, the rate in
 * Gbit/s (10^9 bit/s), this process's CPU seconds, and the server's last
 * measurement message as the server sent it.
 *
 * It reads with 1 MiB recv() calls and sends 1 MiB binary messages from one
 * buffer, so that, unlike a JavaScript client, it is not the bottleneck on
 * loopback. It checks the 101 status and the subprotocol, but not
 * Sec-WebSocket-Accept: it is a benchmark client for a server you started.
 *
 * Build: cc -O2 -o ndt7bench bench/ndt7bench.c
 * Usage: ndt7bench download|upload HOST PORT
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum {
    BUFFER_BYTES = 1 << 20,
    UPLOAD_MESSAGE_BYTES = 1 << 20,
    TEXT_MAX_BYTES = 65536,
    /* The server ends a test after 10 s and cuts the connection after 15 s. */
    TIMEOUT_MS = 20000,
};

static void fail(const char *format, ...)
{
    va_list args;
    va_start(args, format);
    fputs("ndt7bench: ", stderr);
    vfprintf(stderr, format, args);
    fputc('\n', stderr);
    va_end(args);
    exit(1);
}

static double monotonic_seconds(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)now.tv_sec + (double)now.tv_nsec / 1e9;
}

static void send_all(int fd, const void *data, size_t length)
{
    const char *cursor = data;
    while (length > 0) {
        ssize_t sent = send(fd, cursor, length, MSG_NOSIGNAL);
        if (sent < 0 && errno == EINTR)
            continue;
        if (sent < 0)
            fail("send() failed: %s", strerror(errno));
        cursor += sent;
        length -= (size_t)sent;
    }
}

/* Frame parser state: the header being read, then the rest of the payload. */
struct parser {
    unsigned char header[14];
    size_t header_length;
    size_t header_needed;
    int opcode;
    uint64_t payload_remaining;
    uint64_t data_bytes;           /* payload bytes of binary and text messages */
    char text[TEXT_MAX_BYTES + 1]; /* the text message being received */
    size_t text_length;
    char last_text[TEXT_MAX_BYTES + 1];
    int close_code; /* -1 until a close frame has arrived */
};

static void finish_frame(struct parser *parser)
{
    if (parser->opcode == 0x1) {
        parser->text[parser->text_length] = '\0';
        memcpy(parser->last_text, parser->text, parser->text_length + 1);
        parser->text_length = 0;
    } else if (parser->opcode == 0x8) {
        unsigned char *payload = (unsigned char *)parser->text;
        parser->close_code = parser->text_length >= 2 ? (payload[0] << 8 | payload[1]) : 1005;
        parser->text_length = 0;
    }
}

/* Parses received bytes. Text and close payloads are kept, binary payloads only counted.
 * Fragmented messages are not expected from an ndt7 server and are rejected. */
static void parse_bytes(struct parser *parser, const unsigned char *data, size_t length)
{
    size_t position = 0;
    while (position < length) {
        if (parser->header_length < parser->header_needed) {
            parser->header[parser->header_length++] = data[position++];
            if (parser->header_length == 2) {
                if ((parser->header[0] & 0x80) == 0)
                    fail("server sent a fragmented message, which ndt7bench does not support");
                if (parser->header[1] & 0x80)
                    fail("server sent a masked frame");
                unsigned length7 = parser->header[1] & 0x7f;
                if (length7 == 126)
                    parser->header_needed = 4;
                else if (length7 == 127)
                    parser->header_needed = 10;
            }
            if (parser->header_length < parser->header_needed)
                continue;
            parser->opcode = parser->header[0] & 0x0f;
            unsigned length7 = parser->header[1] & 0x7f;
            uint64_t payload_length = length7;
            if (length7 >= 126) {
                payload_length = 0;
                for (size_t i = 2; i < parser->header_needed; i++)
                    payload_length = payload_length << 8 | parser->header[i];
            }
            if (parser->opcode != 0x2 && payload_length > TEXT_MAX_BYTES)
                fail("server sent a %d frame of %llu bytes, more than %d", parser->opcode,
                     (unsigned long long)payload_length, TEXT_MAX_BYTES);
            parser->payload_remaining = payload_length;
            if (payload_length == 0) {
                finish_frame(parser);
                parser->header_length = 0;
                parser->header_needed = 2;
            }
            continue;
        }
        size_t available = length - position;
        size_t take =
            parser->payload_remaining < available ? (size_t)parser->payload_remaining : available;
        if (parser->opcode == 0x1 || parser->opcode == 0x8 || parser->opcode == 0x9) {
            memcpy(parser->text + parser->text_length, data + position, take);
            parser->text_length += take;
        }
        if (parser->opcode == 0x1 || parser->opcode == 0x2)
            parser->data_bytes += take;
        position += take;
        parser->payload_remaining -= take;
        if (parser->payload_remaining == 0) {
            finish_frame(parser);
            parser->text_length = parser->opcode == 0x9 ? 0 : parser->text_length;
            parser->header_length = 0;
            parser->header_needed = 2;
        }
    }
}

/* Reads and parses what is left in the receive queue of a connection the server has
 * closed, until the end of the stream or an error. */
static void read_until_closed(int fd, unsigned char *buffer, struct parser *parser)
{
    for (;;) {
        ssize_t count = recv(fd, buffer, BUFFER_BYTES, MSG_DONTWAIT);
        if (count < 0 && errno == EINTR)
            continue;
        if (count <= 0)
            return;
        parse_bytes(parser, buffer, (size_t)count);
    }
}

static int connect_tcp(const char *host, const char *port)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *addresses;
    int rc = getaddrinfo(host, port, &hints, &addresses);
    if (rc != 0)
        fail("cannot resolve %s:%s: %s", host, port, gai_strerror(rc));
    int fd = -1;
    for (struct addrinfo *address = addresses; address != NULL && fd < 0;
         address = address->ai_next) {
        fd = socket(address->ai_family, address->ai_socktype | SOCK_CLOEXEC, address->ai_protocol);
        if (fd >= 0 && connect(fd, address->ai_addr, address->ai_addrlen) != 0) {
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(addresses);
    if (fd < 0)
        fail("connect to %s:%s failed: %s", host, port, strerror(errno));
    return fd;
}

/* Sends the upgrade request and reads the response head. Returns the bytes after the head. */
static size_t perform_handshake(int fd, const char *host, const char *port, const char *direction,
                                unsigned char *buffer)
{
    char request[1024];
    int length = snprintf(request, sizeof request,
                          "GET /ndt/v7/%s HTTP/1.1\r\nHost: %s:%s\r\nUpgrade: websocket\r\n"
                          "Connection: Upgrade\r\nSec-WebSocket-Key: bmR0N2JlbmNoLWtleS0xMg==\r\n"
                          "Sec-WebSocket-Version: 13\r\n"
                          "Sec-WebSocket-Protocol: net.measurementlab.ndt.v7\r\n"
                          "User-Agent: linkspeed-ndt7bench\r\n\r\n",
                          direction, host, port);
    send_all(fd, request, (size_t)length);
    size_t received = 0;
    char *head_end = NULL;
    while (head_end == NULL) {
        if (received >= 8192)
            fail("upgrade response head is longer than 8192 bytes");
        ssize_t count = recv(fd, buffer + received, 8192 - received, 0);
        if (count <= 0)
            fail("connection closed or failed during the upgrade: %s",
                 count < 0 ? strerror(errno) : "EOF");
        received += (size_t)count;
        buffer[received] = '\0';
        head_end = strstr((char *)buffer, "\r\n\r\n");
    }
    if (strncmp((char *)buffer, "HTTP/1.1 101", 12) != 0)
        fail("upgrade rejected: %.*s", (int)strcspn((char *)buffer, "\r\n"), (char *)buffer);
    if (strcasestr((char *)buffer, "\r\nSec-WebSocket-Protocol: net.measurementlab.ndt.v7\r\n") ==
        NULL)
        fail("upgrade response does not name the subprotocol net.measurementlab.ndt.v7");
    size_t head_length = (size_t)(head_end - (char *)buffer) + 4;
    memmove(buffer, buffer + head_length, received - head_length);
    return received - head_length;
}

static void print_json_string(const char *text)
{
    putchar('"');
    for (const char *c = text; *c != '\0'; c++) {
        if (*c == '"' || *c == '\\')
            printf("\\%c", *c);
        else if ((unsigned char)*c < 0x20)
            printf("\\u%04x", *c);
        else
            putchar(*c);
    }
    putchar('"');
}

int main(int argc, char **argv)
{
    if (argc != 4 || (strcmp(argv[1], "download") != 0 && strcmp(argv[1], "upload") != 0)) {
        fprintf(stderr, "usage: ndt7bench download|upload HOST PORT\n");
        return 2;
    }
    bool upload = strcmp(argv[1], "upload") == 0;
    int fd = connect_tcp(argv[2], argv[3]);
    static unsigned char buffer[BUFFER_BYTES + 1];
    static struct parser parser = {.header_needed = 2, .close_code = -1};
    size_t leftover = perform_handshake(fd, argv[2], argv[3], argv[1], buffer);
    double start = monotonic_seconds();
    parse_bytes(&parser, buffer, leftover);

    /* One upload message, masked once: its payload is random, so the same masked
     * bytes with the same key are as good as fresh ones, and no per-message XOR is needed. */
    static unsigned char message[14 + UPLOAD_MESSAGE_BYTES];
    unsigned char mask[4];
    if (getrandom(mask, sizeof mask, 0) != sizeof mask)
        fail("getrandom() failed: %s", strerror(errno));
    message[0] = 0x82;
    message[1] = 0x80 | 127;
    for (int i = 0; i < 8; i++)
        message[2 + i] = (unsigned char)((uint64_t)UPLOAD_MESSAGE_BYTES >> (56 - 8 * i));
    memcpy(message + 10, mask, 4);
    for (size_t offset = 0; offset < UPLOAD_MESSAGE_BYTES; offset += 256)
        if (getrandom(message + 14 + offset, 256, 0) != 256)
            fail("getrandom() failed: %s", strerror(errno));
    size_t message_offset = 0;
    uint64_t sent_bytes = 0;
    bool reset = false;

    while (parser.close_code < 0) {
        struct pollfd descriptor = {.fd = fd, .events = POLLIN | (upload ? POLLOUT : 0)};
        int ready = poll(&descriptor, 1, TIMEOUT_MS);
        if (ready == 0)
            fail("no data from the server for %d ms", TIMEOUT_MS);
        if (ready < 0 && errno != EINTR)
            fail("poll() failed: %s", strerror(errno));
        if (descriptor.revents & (POLLIN | POLLHUP | POLLERR)) {
            ssize_t count = recv(fd, buffer, BUFFER_BYTES, MSG_DONTWAIT);
            if (count == 0)
                fail("server closed the connection without a close frame");
            if (count < 0 && errno != EAGAIN && errno != EINTR)
                fail("recv() failed: %s", strerror(errno));
            if (count > 0)
                parse_bytes(&parser, buffer, (size_t)count);
        }
        if (upload && (descriptor.revents & POLLOUT) && parser.close_code < 0) {
            ssize_t sent = send(fd, message + message_offset, sizeof message - message_offset,
                                MSG_DONTWAIT | MSG_NOSIGNAL);
            if (sent < 0 && (errno == EPIPE || errno == ECONNRESET)) {
                /* The server ends the test with a close frame and then closes its socket
                 * with upload bytes still unread, which sends a reset. What arrived before
                 * the reset, the close frame included, can still be read. */
                reset = true;
                read_until_closed(fd, buffer, &parser);
                if (parser.close_code < 0)
                    fail("connection reset by the server before its close frame");
                break;
            }
            if (sent < 0 && errno != EAGAIN && errno != EINTR)
                fail("send() failed: %s", strerror(errno));
            if (sent > 0) {
                message_offset += (size_t)sent;
                if (message_offset == sizeof message) {
                    message_offset = 0;
                    sent_bytes += UPLOAD_MESSAGE_BYTES;
                }
            }
        }
    }
    double seconds = monotonic_seconds() - start;
    /* A close frame may only follow a whole message. After an upload cut short in
     * the middle of a message, the client closes the TCP connection without one. The
     * server may have closed its socket already, so a failed send is no error here. */
    if (message_offset == 0 && !reset) {
        unsigned char close_frame[8] = {0x88, 0x82, mask[0], mask[1], mask[2], mask[3]};
        close_frame[6] = (unsigned char)(0x03 ^ mask[0]);
        close_frame[7] = (unsigned char)(0xe8 ^ mask[1]);
        (void)send(fd, close_frame, sizeof close_frame, MSG_NOSIGNAL);
    }
    close(fd);

    uint64_t bytes = upload ? sent_bytes : parser.data_bytes;
    struct rusage usage;
    getrusage(RUSAGE_SELF, &usage);
    double cpu_seconds = (double)usage.ru_utime.tv_sec + (double)usage.ru_utime.tv_usec / 1e6 +
                         (double)usage.ru_stime.tv_sec + (double)usage.ru_stime.tv_usec / 1e6;
    printf("{\"direction\":\"%s\",\"bytes\":%llu,\"seconds\":%.6f,\"gbit_per_s\":%.4f,\"close_"
           "code\":%d,"
           "\"cpu_s\":%.3f,\"last_server_measurement\":",
           argv[1], (unsigned long long)bytes, seconds, (double)bytes * 8 / seconds / 1e9,
           parser.close_code, cpu_seconds);
    print_json_string(parser.last_text);
    printf("}\n");
    return 0;
}
