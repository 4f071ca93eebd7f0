/* A scripted WebSocket server on a loopback port for the client's unit tests: it reads
 * the upgrade request, sends a given response with the right Sec-WebSocket-Accept, then
 * runs a script on its own thread. Include after <cmocka.h>. */
#ifndef LINKSPEED_TEST_CLIENT_MOCK_H
#define LINKSPEED_TEST_CLIENT_MOCK_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

enum { MAX_FRAME_PAYLOAD = 4096 };

/* A frame as the mock server read it from the client, unmasked. */
struct client_frame {
    int opcode;
    bool final;
    bool masked;
    size_t length;
    uint8_t payload[MAX_FRAME_PAYLOAD];
};

struct mock;
typedef void (*mock_script)(struct mock *mock, int fd);

struct mock {
    int listener;
    int port;
    pthread_t thread;
    const char *response; /* upgrade response; "%s" receives the Sec-WebSocket-Accept value */
    mock_script script;   /* runs after the response, then the socket is closed */
    char request[4096];
    char accept[64]; /* the Sec-WebSocket-Accept value for the request's key */
    struct client_frame frames[4];
    size_t frame_count;
    /* Counts of mock_drain_until_close(). */
    uint64_t data_bytes;
    unsigned data_frames;
    unsigned unmasked_frames;
    unsigned pongs;
    int close_code;
    void *context;        /* for the script */
    atomic_bool released; /* set by mock_release() */
};

static inline void write_all(int fd, const void *data, size_t length)
{
    const uint8_t *cursor = data;

    while (length > 0) {
        ssize_t sent = send(fd, cursor, length, MSG_NOSIGNAL);
        if (sent <= 0)
            return; /* the client went away, which the test's own checks detect */
        cursor += sent;
        length -= (size_t)sent;
    }
}

static inline bool read_exact(int fd, void *data, size_t length)
{
    uint8_t *cursor = data;

    while (length > 0) {
        ssize_t count = recv(fd, cursor, length, 0);
        if (count <= 0)
            return false;
        cursor += count;
        length -= (size_t)count;
    }
    return true;
}

/* Reads one client frame into the mock's list; returns false at end of stream. */
static inline bool read_client_frame(struct mock *mock, int fd)
{
    struct client_frame *frame = &mock->frames[mock->frame_count];
    uint8_t header[2], extended[8], key[4];
    uint64_t length;

    if (mock->frame_count == sizeof(mock->frames) / sizeof(mock->frames[0]) ||
        !read_exact(fd, header, 2))
        return false;
    frame->opcode = header[0] & 0x0f;
    frame->final = (header[0] & 0x80) != 0;
    frame->masked = (header[1] & 0x80) != 0;
    length = header[1] & 0x7f;
    if (length == 126 || length == 127) {
        size_t size = length == 126 ? 2 : 8;
        if (!read_exact(fd, extended, size))
            return false;
        length = 0;
        for (size_t i = 0; i < size; i++)
            length = length << 8 | extended[i];
    }
    if (length > MAX_FRAME_PAYLOAD || (frame->masked && !read_exact(fd, key, 4)) ||
        !read_exact(fd, frame->payload, (size_t)length))
        return false;
    for (size_t i = 0; frame->masked && i < length; i++)
        frame->payload[i] ^= key[i % 4];
    frame->length = (size_t)length;
    mock->frame_count++;
    return true;
}

static inline void send_server_frame(int fd, uint8_t first_byte, const void *payload, size_t length)
{
    uint8_t header[4] = {first_byte, (uint8_t)length};
    size_t header_length = 2;

    if (length >= 126) {
        header[1] = 126;
        header[2] = (uint8_t)(length >> 8);
        header[3] = (uint8_t)length;
        header_length = 4;
    }
    write_all(fd, header, header_length);
    write_all(fd, payload, length);
}

static inline void *mock_thread(void *argument)
{
    struct mock *mock = argument;
    char response[1024];
    size_t received = 0;
    int fd = accept4(mock->listener, NULL, NULL, SOCK_CLOEXEC);

    if (fd < 0)
        return NULL;
    while (strstr(mock->request, "\r\n\r\n") == NULL && received < sizeof(mock->request) - 1) {
        ssize_t count = recv(fd, mock->request + received, sizeof(mock->request) - 1 - received, 0);
        if (count <= 0)
            break;
        received += (size_t)count;
    }
    const char *key = strstr(mock->request, "Sec-WebSocket-Key: ");
    if (key != NULL) {
        char input[128];
        unsigned char digest[SHA_DIGEST_LENGTH];

        snprintf(input, sizeof(input), "%.*s258EAFA5-E914-47DA-95CA-C5AB0DC85B11",
                 (int)strcspn(key + 19, "\r"), key + 19);
        SHA1((const unsigned char *)input, strlen(input), digest);
        EVP_EncodeBlock((unsigned char *)mock->accept, digest, SHA_DIGEST_LENGTH);
    }
    if (mock->response != NULL) {
        const char *slot = strstr(mock->response, "%s");
        if (slot == NULL)
            snprintf(response, sizeof(response), "%s", mock->response);
        else
            snprintf(response, sizeof(response), "%.*s%s%s", (int)(slot - mock->response),
                     mock->response, mock->accept, slot + 2);
        write_all(fd, response, strlen(response));
    }
    if (mock->script != NULL)
        mock->script(mock, fd);
    close(fd);
    return NULL;
}

static inline void mock_start(struct mock *mock, const char *response, mock_script script)
{
    struct sockaddr_in address = {.sin_family = AF_INET};
    socklen_t length = sizeof(address);

    memset(mock, 0, sizeof(*mock));
    atomic_init(&mock->released, false);
    mock->response = response;
    mock->script = script;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    mock->listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(mock->listener >= 0);
    assert_int_equal(bind(mock->listener, (struct sockaddr *)&address, sizeof(address)), 0);
    assert_int_equal(listen(mock->listener, 1), 0);
    assert_int_equal(getsockname(mock->listener, (struct sockaddr *)&address, &length), 0);
    mock->port = ntohs(address.sin_port);
    assert_int_equal(pthread_create(&mock->thread, NULL, mock_thread, mock), 0);
}

static inline void mock_finish(struct mock *mock)
{
    pthread_join(mock->thread, NULL);
    close(mock->listener);
}

#define UPGRADE_OK                                                                                 \
    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"            \
    "Sec-WebSocket-Accept: %s\r\n\r\n"

/* Reads client frames until a close frame or the end of the stream. It counts data frames,
 * their payload bytes and pongs, and stores the close code. */
static inline void mock_drain_until_close(struct mock *mock, int fd)
{
    static uint8_t discard[65536];

    for (;;) {
        uint8_t header[2], extended[8], key[4];
        uint64_t length;

        if (!read_exact(fd, header, 2))
            return;
        length = header[1] & 0x7f;
        if (length == 126 || length == 127) {
            size_t size = length == 126 ? 2 : 8;
            if (!read_exact(fd, extended, size))
                return;
            length = 0;
            for (size_t i = 0; i < size; i++)
                length = length << 8 | extended[i];
        }
        if ((header[1] & 0x80) == 0)
            mock->unmasked_frames++;
        if ((header[1] & 0x80) != 0 && !read_exact(fd, key, 4))
            return;
        int opcode = header[0] & 0x0f;
        if (opcode < 0x8) {
            mock->data_frames++;
            mock->data_bytes += length;
            while (length > 0) {
                size_t piece = length < sizeof(discard) ? (size_t)length : sizeof(discard);
                if (!read_exact(fd, discard, piece))
                    return;
                length -= piece;
            }
            continue;
        }
        if (length > MAX_FRAME_PAYLOAD || !read_exact(fd, discard, (size_t)length))
            return;
        for (size_t i = 0; i < length; i++)
            discard[i] ^= key[i % 4];
        if (opcode == 0xa)
            mock->pongs++;
        if (opcode == 0x8) {
            mock->close_code = length >= 2 ? (discard[0] << 8 | discard[1]) : 1005;
            return;
        }
    }
}

/* A stalled server that still reads: it drops what the client sends and sends nothing
 * until the client hangs up. mock_drain_until_close() counts the data frames and stores
 * the code of the client's close frame. */
static inline void mock_stall_reading(struct mock *mock, int fd)
{
    uint8_t discard[4096];

    mock_drain_until_close(mock, fd);
    while (recv(fd, discard, sizeof(discard), 0) > 0)
        continue;
}

/* A stalled server that reads nothing, so the client's sends fill the socket. It waits
 * until the test calls mock_release(), or 10 s so that a failed test does not hang. */
static inline void mock_stall_without_reading(struct mock *mock, int fd)
{
    (void)fd;
    for (int i = 0; i < 1000 && !atomic_load(&mock->released); i++)
        usleep(10000);
}

static inline void mock_release(struct mock *mock)
{
    atomic_store(&mock->released, true);
}

/* Fails the test when text contains an ASCII control character, which would reach the
 * terminal as it is. */
static inline void assert_no_control_characters(const char *text)
{
    for (const char *c = text; *c != '\0'; c++) {
        if ((unsigned char)*c < 0x20 || *c == 0x7f)
            fail_msg("byte 0x%02x at offset %td of \"%s\"", (unsigned char)*c, c - text, text);
    }
}

#endif
