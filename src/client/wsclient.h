/* A client WebSocket connection (RFC 6455) for the latency probes, ndt7 and the /ws
 * transfer. libcurl opens the TCP or TLS connection, and this module does the upgrade and
 * the framing. Why it is written by hand is in wsclient.c.
 *
 * One connection is used by one thread at a time. Received binary payload is handed to a
 * callback as pointers into the 1 MiB receive buffer, without a copy, and text messages
 * are collected whole. The connection sends a pong for each ping and does the close
 * handshake. */
#ifndef LINKSPEED_WSCLIENT_H
#define LINKSPEED_WSCLIENT_H

#include "client.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum ws_opcode {
    WS_OPCODE_CONTINUATION = 0x0,
    WS_OPCODE_TEXT = 0x1,
    WS_OPCODE_BINARY = 0x2,
    WS_OPCODE_CLOSE = 0x8,
    WS_OPCODE_PING = 0x9,
    WS_OPCODE_PONG = 0xa,
};

/* Close codes of RFC 6455 section 7.4.1 that this client sends or reports. */
enum ws_close_code {
    WS_CLOSE_NORMAL = 1000,
    WS_CLOSE_GOING_AWAY = 1001,
    WS_CLOSE_PROTOCOL_ERROR = 1002,
    WS_CLOSE_UNSUPPORTED_DATA = 1003,
    WS_CLOSE_NO_STATUS = 1005, /* reported only: the close frame had no code */
    WS_CLOSE_ABNORMAL = 1006,  /* reported only: the connection ended without a close frame */
    WS_CLOSE_INVALID_DATA = 1007,
    WS_CLOSE_POLICY_VIOLATION = 1008,
    WS_CLOSE_MESSAGE_TOO_BIG = 1009,
};

enum {
    WS_MAX_CONTROL_PAYLOAD_BYTES = 125,
    WS_MAX_HEADER_BYTES = 14, /* 2 + 8 bytes of extended length + 4 bytes of mask key */
    WS_RECEIVE_BUFFER_BYTES = 1 << 20,
};

/* ---- Frame parser: a pure function over received bytes, no I/O. ---- */

/* Callbacks of the parser. Each returns 0 to go on, or a nonzero value that
 * ws_parser_feed() stops at and returns. */
struct ws_parser_handler {
    /* A piece of a text or binary message's payload, unmasked, pointing into the fed bytes.
     * final is true on the message's last piece, which may be empty. */
    int (*data)(void *context, enum ws_opcode message_opcode, const uint8_t *payload, size_t length,
                bool final);
    /* A whole close, ping or pong frame. A close payload has been checked: empty, or a
     * valid code followed by UTF-8. */
    int (*control)(void *context, enum ws_opcode opcode, const uint8_t *payload, size_t length);
};

/* Parser state, set up by ws_parser_init() and then changed only by ws_parser_feed(). */
struct ws_parser {
    uint64_t max_message_bytes;
    uint8_t header[WS_MAX_HEADER_BYTES];
    size_t header_length;
    size_t header_needed;
    uint8_t frame_opcode;
    bool frame_final;
    uint64_t frame_remaining; /* payload bytes of the current frame not yet seen */
    uint8_t message_opcode;   /* text or binary while a message is open, else 0 */
    uint64_t message_bytes;
    uint8_t control[WS_MAX_CONTROL_PAYLOAD_BYTES];
    size_t control_length;
    int error;          /* the close code of the first protocol error, then sticky */
    const char *reason; /* what that error was, for messages */
};

/* Prepares a parser for a new connection; messages over max_message_bytes are rejected. */
void ws_parser_init(struct ws_parser *parser, uint64_t max_message_bytes);

/* Parses length bytes of frames as received by a client (so masked frames are errors) and
 * calls handler for each piece of payload. Frames may be split anywhere between calls.
 * Returns 0 when every byte was consumed; a close code when the bytes break RFC 6455
 * (1002 protocol error, 1007 invalid UTF-8 in a close reason, 1009 message over the cap),
 * with parser->reason set, and again on every later call; or the first nonzero value a
 * callback returned. */
int ws_parser_feed(struct ws_parser *parser, const uint8_t *data, size_t length,
                   const struct ws_parser_handler *handler, void *context);

/* Returns true when the bytes are valid UTF-8 (RFC 3629: no overlong forms, surrogates or
 * code points past U+10FFFF). */
bool ws_utf8_valid(const uint8_t *text, size_t length);

/* Writes a client frame header with the mask bit and key into header (at least
 * WS_MAX_HEADER_BYTES) and returns its length. final is false for a fragment that more
 * frames of the same message follow. */
size_t ws_frame_header(uint8_t *header, enum ws_opcode opcode, bool final, uint64_t length,
                       const uint8_t mask_key[4]);

/* XORs length bytes of source with the mask key into destination, starting at key byte
 * key_offset % 4. destination may equal source. */
void ws_mask(uint8_t *destination, const uint8_t *source, size_t length, const uint8_t mask_key[4],
             size_t key_offset);

/* ---- Connection ---- */

/* Callbacks of a connection. A callback returns 0, or a negative errno-style
 * code that stops the call in progress and is returned from it as it is: the callback's
 * owner fills its own error message. A callback may send; the connection does not read
 * while a callback runs. */
struct ws_client_handler {
    /* A piece of a binary message, valid only during the call; final on its last piece.
     * NULL: binary messages are dropped. */
    int (*binary)(void *context, const uint8_t *payload, size_t length, bool final);
    /* A whole text message, checked to be UTF-8, with a NUL after its last byte. NULL: text
     * messages are dropped. */
    int (*text)(void *context, const char *text, size_t length);
};

struct ws_client_options {
    const struct client_target *target;
    const char *phase;       /* starts every error message: "latency", "ndt7 download" */
    const char *path;        /* path and query appended to target->base_url */
    const char *subprotocol; /* requested, and required in the response; NULL for none */
    uint64_t max_message_bytes;
    struct ws_client_handler handler;
    void *context;
};

struct ws_client;

/* Connects to target->base_url + path (http becomes ws, https wss) and performs the
 * upgrade within target->timeout_s. Returns 0 with *out set; -ENOENT when the server
 * responded with an HTTP status other than 101 (stored in err->status); another negative
 * code on failure. err->message starts with "<phase>: <URL>: ", where the URL is the ws
 * one once the base URL could be parsed. */
int ws_client_connect(const struct ws_client_options *options, struct ws_client **out,
                      struct client_error *err);

/* Flags of ws_client_send_frame(). */
enum {
    /* More frames of the same message follow (FIN is clear). */
    WS_SEND_MORE = 1u << 0,
    /* The payload is random bytes whose masked form need not be these bytes: they go on
     * the wire as they are, under a fresh mask key (see wsclient.c). */
    WS_SEND_RANDOM_PAYLOAD = 1u << 1,
};

/* Sends one frame, masked, and returns when all of it was handed to the socket. While
 * the socket is full it also receives, so callbacks may run meanwhile. sent_bytes, when
 * not NULL, is raised by payload bytes as they are handed to the socket. Returns 0, a
 * callback's code, or another negative code with *err filled: -ETIMEDOUT after no progress
 * for target->timeout_s, -EIO or -ECONNRESET when the connection broke (it then reads as
 * ended with 1006 unless the server's close frame came first), -EPIPE once the connection
 * is closing or has failed. After a failure nothing more is sent on the connection. */
int ws_client_send_frame(struct ws_client *client, enum ws_opcode opcode, const void *payload,
                         size_t length, unsigned flags, uint64_t *sent_bytes,
                         struct client_error *err);

/* Waits up to timeout_ms for data and processes what arrived. Returns 0 while the
 * connection is open, 1 once the server has closed it (its close code is in
 * ws_client_close_code()), a callback's code, or another negative code with *err filled. */
int ws_client_service(struct ws_client *client, int timeout_ms, struct client_error *err);

/* Starts the close handshake with code (unless the server started it) and waits up to
 * target->timeout_s for the server's close frame and end of connection. Returns 0, or a
 * negative code with *err filled. After a failed send, a receive that failed, or
 * ws_client_abort(), it waits for nothing. It does what ws_client_abort() does and returns
 * -ECONNABORTED, or 0 when the server's close frame and end of connection had come. */
int ws_client_close(struct ws_client *client, int code, struct client_error *err);

/* Gives up on the connection without a close handshake, for a caller whose own timeout
 * ran out. It sends a close frame with code (or the reply to the server's close frame)
 * only if the socket takes it at once, and never waits. No frame is sent after a failed
 * send or receive, or in the middle of a partly sent frame. Later sends fail, and
 * ws_client_free() frees the connection. */
void ws_client_abort(struct ws_client *client, int code);

/* Closes the connection without a handshake if still open, and frees client (NULL is
 * fine). */
void ws_client_free(struct ws_client *client);

/* The TCP socket, for poll() and TCP_INFO. */
int ws_client_socket(const struct ws_client *client);

/* The "ws://host:port/path" the connection was made to. */
const char *ws_client_url(const struct ws_client *client);

/* The close code the server sent: 0 while it has sent none, WS_CLOSE_NO_STATUS for a close
 * frame without a code, WS_CLOSE_ABNORMAL when the connection ended without one. Such an
 * end is an EOF, or a send or receive that failed, such as on a reset. */
int ws_client_close_code(const struct ws_client *client);

/* The reason text of the server's close frame, "" when none. */
const char *ws_client_close_reason(const struct ws_client *client);

/* The no-progress timeout of the connection: target->timeout_s, or 10 s when that is not
 * positive. */
double ws_client_timeout_ms(const struct ws_client *client);

/* The time the upgrade completed, CLOCK_MONOTONIC in milliseconds. */
double ws_client_open_ms(const struct ws_client *client);

/* The current CLOCK_MONOTONIC time in milliseconds. */
double ws_monotonic_ms(void);

/* Byte counts of the last second or so, for the current_bps of a client_progress. */
struct ws_rate_window {
    double time_ms[11];
    uint64_t bytes[11];
    unsigned count;
    unsigned next;
};

/* Adds a sample (a monotonic time and the bytes moved so far, taken about every 100 ms)
 * and returns the rate in bit/s since the oldest sample kept, 0 with fewer than two. */
double ws_rate_window_add(struct ws_rate_window *window, double now_ms, uint64_t bytes);

#endif
