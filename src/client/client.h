/* Types shared by the modules of `linkspeed test`, the command-line client.
 *
 * The client measures a server with the method of docs/methodology.md: idle latency over
 * the latency WebSocket, download and upload over the bulk HTTP endpoints with parallel
 * streams, and latency under load on a second probe connection. `--ndt7` runs M-Lab's
 * ndt7 protocol instead and `--legacy` the tutorial's /ws transfer.
 *
 * Every measuring function returns 0 or a negative errno-style code and, on failure, fills
 * a struct client_error whose message says what failed and on which URL. None of them
 * prints: speedtest.c decides what the user sees. */
#ifndef LINKSPEED_CLIENT_H
#define LINKSPEED_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum {
    CLIENT_URL_MAX = 2048,
    CLIENT_ERROR_MAX = 2048,
    CLIENT_MAX_STREAMS = 16,
};

/* The server to measure and how to reach it. base_url has a scheme of http or https, a
 * host, an optional port and no trailing slash ("http://localhost:8080"); the modules add
 * the endpoint's path and turn http into ws for WebSockets. */
struct client_target {
    char base_url[CLIENT_URL_MAX];
    int ip_version;   /* 0: either, 4: IPv4 only, 6: IPv6 only */
    bool insecure;    /* accept any TLS certificate (self-signed test servers) */
    double timeout_s; /* a connection or transfer that makes no progress for this long fails */
};

/* What went wrong, for the user: "download: GET http://h:8080/__down?bytes=...: HTTP 404".
 * status is the HTTP status or WebSocket close code when one explains the failure, else 0. */
struct client_error {
    char message[CLIENT_ERROR_MAX];
    int status;
};

/* Replaces each control character of the string text (a buffer of size bytes, at most
 * CLIENT_ERROR_MAX) with \xNN, so that text from a server cannot steer a terminal or split
 * a CSV line. What no longer fits is cut. */
void client_escape_controls(char *text, size_t size);

/* Fills err->message from a printf format, control characters escaped; returns -EIO so
 * callers can `return client_fail(...)`. */
int client_fail(struct client_error *err, const char *format, ...)
    __attribute__((format(printf, 2, 3)));

enum client_direction { CLIENT_DOWNLOAD, CLIENT_UPLOAD };

/* Returns "download" or "upload". */
const char *client_direction_name(enum client_direction direction);

/* A live figure for the progress line, reported about every 100 ms. */
struct client_progress {
    const char *phase; /* "latency", "download", "upload" */
    double elapsed_ms;
    uint64_t bytes;     /* payload bytes moved in this phase so far */
    double current_bps; /* rate over the last second or so */
    unsigned streams;   /* streams running now */
};

typedef void (*client_progress_fn)(void *context, const struct client_progress *progress);

/* Round-trip statistics of a set of latency probes. */
struct latency_summary {
    bool available;     /* false: no figures (see source for why) */
    const char *source; /* "websocket" (echo probes), "tcp_info" (kernel MinRTT), "none" */
    unsigned samples;   /* probes answered */
    unsigned lost;      /* probes without an answer in time */
    double median_ms;
    double min_ms;
    double jitter_ms; /* mean absolute difference of consecutive round trips */
};

/* Kernel TCP_INFO figures of one side of a measurement, summed or taken over its
 * connections. */
struct tcp_summary {
    bool available;
    unsigned connections;
    double min_rtt_ms; /* lowest tcpi_min_rtt of the connections */
    double rtt_ms;     /* mean smoothed RTT at the end */
    uint64_t bytes_acked;
    uint64_t bytes_received;
    uint64_t bytes_retrans;
    uint64_t retransmits; /* segments retransmitted (tcpi_total_retrans) */
};

/* The result of one bulk direction, by the method of docs/methodology.md. */
struct throughput_result {
    double bps;              /* rate over the stable window at the receiving side */
    uint64_t bytes;          /* payload bytes moved over the whole phase */
    uint64_t server_bytes;   /* upload: bytes the server confirmed; download: 0 */
    unsigned streams;        /* streams used at the end */
    double duration_ms;      /* whole phase */
    double stable_window_ms; /* the part the rate is computed over */
    struct tcp_summary tcp;  /* the client's sockets */
    unsigned failed_streams; /* streams that failed while the others went on */
    char stream_error[512];  /* the first of their errors, "" when none failed */
};

#endif
