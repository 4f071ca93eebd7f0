/* Latency probes over the server's WebSocket echo, /api/v1/latency.
 *
 * A probe is a binary message of 8 bytes that contain its sequence number, and the server
 * echoes it unchanged. The round trip is the time from handing the probe to the socket to
 * reading the echo (CLOCK_MONOTONIC). The server takes at most 256 bytes per message and
 * 200 messages per second, counted in fixed one-second windows. So probes are never sent
 * less than PROBE_MIN_SPACING_MS apart, because at 5 ms 201 could fall into one window. */
#include "probe.h"
#include "wsclient.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define PROBE_PATH "/api/v1/latency"

enum {
    PROBE_MESSAGE_BYTES = 8,
    PROBE_MAX_ECHO_BYTES = 256, /* the server's limit, so a longer echo is an error */
    PROBE_LOSS_MS = 2000,       /* an echo later than this counts as lost */
    PROBE_MIN_SPACING_MS = 6,
    PROBE_SERVICE_SLICE_MS = 50, /* how often the loaded thread looks at its stop flag */
};

/* Probes of one connection, indexed by sequence number. */
struct probe_series {
    double *sent_ms;
    double *round_trip_ms; /* < 0 while no echo came back in time */
    size_t count;
    size_t capacity;
};

struct probe_connection {
    struct ws_client *ws;
    struct probe_series series;
    uint8_t echo[PROBE_MAX_ECHO_BYTES];
    size_t echo_length;
    uint64_t echoes; /* echoes matched to a probe */
    /* When the first probe since the last echo was sent, 0 while none is awaited. No echo
     * for the connection's timeout from then on means the server is stalled. */
    double waiting_since_ms;
};

struct probe_loaded {
    struct probe_connection connection;
    unsigned interval_ms;
    pthread_t thread;
    atomic_bool stop;
    int thread_rc; /* why the thread stopped probing early, 0 if it did not */
};

static int series_add(struct probe_series *series, double sent_ms)
{
    if (series->count == series->capacity) {
        size_t capacity = series->capacity ? series->capacity * 2 : 64;
        double *sent = realloc(series->sent_ms, capacity * sizeof(double));

        if (sent == NULL)
            return -ENOMEM;
        series->sent_ms = sent;
        double *round_trip = realloc(series->round_trip_ms, capacity * sizeof(double));
        if (round_trip == NULL)
            return -ENOMEM;
        series->round_trip_ms = round_trip;
        series->capacity = capacity;
    }
    series->sent_ms[series->count] = sent_ms;
    series->round_trip_ms[series->count] = -1;
    series->count++;
    return 0;
}

static void series_free(struct probe_series *series)
{
    free(series->sent_ms);
    free(series->round_trip_ms);
    memset(series, 0, sizeof(*series));
}

/* Collects an echo, which may arrive in pieces, and matches it to its probe. */
static int on_binary(void *context, const uint8_t *payload, size_t length, bool final)
{
    struct probe_connection *connection = context;
    double arrival_ms = ws_monotonic_ms();

    if (length > sizeof(connection->echo) - connection->echo_length)
        return -EPROTO;
    memcpy(connection->echo + connection->echo_length, payload, length);
    connection->echo_length += length;
    if (!final)
        return 0;

    size_t echo_length = connection->echo_length;
    connection->echo_length = 0;
    if (echo_length != PROBE_MESSAGE_BYTES)
        return 0; /* not one of ours */

    uint64_t sequence = 0;
    for (size_t i = 0; i < PROBE_MESSAGE_BYTES; i++)
        sequence = sequence << 8 | connection->echo[i];
    struct probe_series *series = &connection->series;
    if (sequence >= series->count)
        return 0;
    connection->waiting_since_ms = 0; /* even a late echo shows the server is not stalled */
    if (series->round_trip_ms[sequence] >= 0)
        return 0;
    double round_trip_ms = arrival_ms - series->sent_ms[sequence];
    if (round_trip_ms <= PROBE_LOSS_MS) {
        series->round_trip_ms[sequence] = round_trip_ms;
        connection->echoes++;
    }
    return 0;
}

/* Fails with the reason the connection ended or broke. */
static int connection_error(struct probe_connection *connection, int rc, struct client_error *err)
{
    if (rc == -EPROTO && connection->echo_length > 0)
        return client_fail(err, "latency: %s: an echo was longer than %d bytes",
                           ws_client_url(connection->ws), PROBE_MAX_ECHO_BYTES);
    if (rc < 0)
        return rc; /* err was filled by the connection */
    err->status = ws_client_close_code(connection->ws);
    if (err->status == WS_CLOSE_ABNORMAL)
        return client_fail(err,
                           "latency: %s: the server closed the connection without a close frame",
                           ws_client_url(connection->ws));
    client_fail(err, "latency: %s: the server closed the connection with %d%s%s",
                ws_client_url(connection->ws), err->status,
                ws_client_close_reason(connection->ws)[0] ? ": " : "",
                ws_client_close_reason(connection->ws));
    return -ECONNRESET;
}

static int send_probe(struct probe_connection *connection, struct client_error *err)
{
    struct probe_series *series = &connection->series;
    uint8_t message[PROBE_MESSAGE_BYTES];
    uint64_t sequence = series->count;
    int rc;

    for (size_t i = 0; i < PROBE_MESSAGE_BYTES; i++)
        message[i] = (uint8_t)(sequence >> (8 * (PROBE_MESSAGE_BYTES - 1 - i)));
    double now_ms = ws_monotonic_ms();
    rc = series_add(series, now_ms);
    if (rc != 0) {
        client_fail(err, "latency: out of memory");
        return rc;
    }
    if (connection->waiting_since_ms == 0)
        connection->waiting_since_ms = now_ms;
    /* The time is taken before the send: the frame is small and goes out at once. */
    rc = ws_client_send_frame(connection->ws, WS_OPCODE_BINARY, message, sizeof(message), 0, NULL,
                              err);
    return rc;
}

/* Returns true when no echo came back for the connection's timeout since the first probe
 * that is still awaited. */
static bool connection_stalled(const struct probe_connection *connection, double now_ms)
{
    return connection->waiting_since_ms != 0 &&
           now_ms - connection->waiting_since_ms >= ws_client_timeout_ms(connection->ws);
}

static int stall_error(const struct probe_connection *connection, struct client_error *err)
{
    client_fail(err, "latency: %s: timed out: no echo for %g s", ws_client_url(connection->ws),
                ws_client_timeout_ms(connection->ws) / 1e3);
    return -ETIMEDOUT;
}

/* Serves the connection until the echo of probe `sequence` or its loss deadline, which
 * leaves it lost. Fails with -ETIMEDOUT once the connection is stalled. */
static int wait_for_echo(struct probe_connection *connection, size_t sequence,
                         struct client_error *err)
{
    struct probe_series *series = &connection->series;
    double loss_ms = series->sent_ms[sequence] + PROBE_LOSS_MS;

    while (series->round_trip_ms[sequence] < 0) {
        double now_ms = ws_monotonic_ms();
        if (connection_stalled(connection, now_ms))
            return stall_error(connection, err);
        if (now_ms >= loss_ms)
            return 0;
        double deadline_ms = loss_ms;
        if (connection->waiting_since_ms != 0)
            deadline_ms = fmin(deadline_ms,
                               connection->waiting_since_ms + ws_client_timeout_ms(connection->ws));
        int rc = ws_client_service(connection->ws, (int)ceil(deadline_ms - now_ms), err);
        if (rc != 0)
            return connection_error(connection, rc, err);
    }
    return 0;
}

/* Serves the connection, which sends pongs for pings, until the monotonic time until_ms. */
static int wait_until(struct probe_connection *connection, double until_ms,
                      struct client_error *err)
{
    for (;;) {
        double remaining_ms = until_ms - ws_monotonic_ms();
        if (remaining_ms <= 0)
            return 0;
        int rc = ws_client_service(connection->ws, (int)ceil(remaining_ms), err);
        if (rc != 0)
            return connection_error(connection, rc, err);
    }
}

/* Opens the connection and sends the warm-up probe, which pays for the connection's first
 * use and is not counted. */
static int open_warm(const struct client_target *target, struct probe_connection *connection,
                     struct client_error *err)
{
    struct ws_client_options options = {
        .target = target,
        .phase = "latency",
        .path = PROBE_PATH,
        .max_message_bytes = PROBE_MAX_ECHO_BYTES,
        .handler = {.binary = on_binary},
        .context = connection,
    };
    int rc = ws_client_connect(&options, &connection->ws, err);

    if (rc != 0)
        return rc;
    rc = send_probe(connection, err);
    if (rc == 0)
        rc = wait_for_echo(connection, 0, err);
    if (rc == 0 && connection->series.round_trip_ms[0] < 0) {
        client_fail(err, "latency: %s: timed out: no echo of the first probe within %d ms",
                    ws_client_url(connection->ws), PROBE_LOSS_MS);
        return -ETIMEDOUT;
    }
    return rc;
}

static int compare_doubles(const void *a, const void *b)
{
    double x = *(const double *)a;
    double y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Summarizes probes 1.. of a series (0 is the warm-up); probes sent after ignore_after_ms
 * without an echo are neither samples nor lost. */
static void summarize(const struct probe_series *series, double ignore_after_ms,
                      struct latency_summary *summary)
{
    double *samples = malloc((series->count ? series->count : 1) * sizeof(double));
    unsigned count = 0;
    double jitter_total_ms = 0;

    memset(summary, 0, sizeof(*summary));
    summary->source = "websocket";
    for (size_t i = 1; i < series->count; i++) {
        double round_trip_ms = series->round_trip_ms[i];
        if (round_trip_ms < 0) {
            if (series->sent_ms[i] <= ignore_after_ms)
                summary->lost++;
            continue;
        }
        if (samples == NULL)
            continue;
        if (count > 0)
            jitter_total_ms += fabs(round_trip_ms - samples[count - 1]);
        samples[count++] = round_trip_ms;
    }
    summary->samples = count;
    if (count == 0) {
        free(samples);
        return;
    }
    summary->available = true;
    summary->jitter_ms = count > 1 ? jitter_total_ms / (count - 1) : 0;
    qsort(samples, count, sizeof(double), compare_doubles);
    summary->min_ms = samples[0];
    summary->median_ms =
        count % 2 ? samples[count / 2] : (samples[count / 2 - 1] + samples[count / 2]) / 2;
    free(samples);
}

/* Closes the connection and frees it. rc is how its use ended: after a timeout the server
 * is stalled, so the close frame goes out without waiting for the server's. */
static void close_connection(struct probe_connection *connection, int rc)
{
    struct client_error ignored;

    if (connection->ws != NULL && rc == -ETIMEDOUT)
        ws_client_abort(connection->ws, WS_CLOSE_GOING_AWAY);
    else if (connection->ws != NULL)
        ws_client_close(connection->ws, WS_CLOSE_NORMAL, &ignored);
    ws_client_free(connection->ws);
    connection->ws = NULL;
    series_free(&connection->series);
}

int probe_idle(const struct client_target *target, unsigned count, unsigned gap_ms,
               struct latency_summary *summary, struct client_error *err)
{
    struct probe_connection connection = {0};
    int rc;

    memset(summary, 0, sizeof(*summary));
    summary->source = "websocket";
    err->status = 0;
    if (count == 0) {
        client_fail(err, "latency: the probe count must be at least 1");
        return -EINVAL;
    }

    rc = open_warm(target, &connection, err);
    for (unsigned i = 0; rc == 0 && i < count; i++) {
        struct probe_series *series = &connection.series;
        size_t previous = series->count - 1;
        double previous_done_ms = series->round_trip_ms[previous] >= 0
                                      ? series->sent_ms[previous] + series->round_trip_ms[previous]
                                      : series->sent_ms[previous] + PROBE_LOSS_MS;
        /* The gap runs from the previous echo (or its loss), as the page does it. */
        double next_ms =
            fmax(previous_done_ms + gap_ms, series->sent_ms[previous] + PROBE_MIN_SPACING_MS);

        rc = wait_until(&connection, next_ms, err);
        if (rc == 0)
            rc = send_probe(&connection, err);
        if (rc == 0)
            rc = wait_for_echo(&connection, series->count - 1, err);
    }
    if (rc == 0)
        summarize(&connection.series, INFINITY, summary);
    close_connection(&connection, rc);
    return rc;
}

static void *loaded_thread(void *argument)
{
    struct probe_loaded *probes = argument;
    struct probe_connection *connection = &probes->connection;
    struct client_error err;
    double next_ms = ws_monotonic_ms();

    while (!atomic_load(&probes->stop)) {
        double now_ms = ws_monotonic_ms();
        int rc = 0;

        if (now_ms >= next_ms) {
            rc = send_probe(connection, &err);
            /* After a stall the schedule restarts instead of sending a burst. */
            next_ms = fmax(next_ms + probes->interval_ms, now_ms + PROBE_MIN_SPACING_MS);
        }
        if (rc == 0) {
            double wait_ms = fmin(next_ms - ws_monotonic_ms(), PROBE_SERVICE_SLICE_MS);
            rc = ws_client_service(connection->ws, wait_ms > 0 ? (int)ceil(wait_ms) : 0, &err);
        }
        if (rc == 0 && connection_stalled(connection, ws_monotonic_ms()))
            rc = -ETIMEDOUT;
        /* TODO: struct latency_summary has no field for why probing stopped early, so the
         * caller sees only fewer samples and the unanswered probes as lost. */
        if (rc != 0) {
            probes->thread_rc = rc;
            break;
        }
    }
    return NULL;
}

int probe_loaded_start(const struct client_target *target, unsigned interval_ms,
                       struct probe_loaded **out, struct client_error *err)
{
    struct probe_loaded *probes = calloc(1, sizeof(*probes));
    int rc;

    *out = NULL;
    err->status = 0;
    if (probes == NULL) {
        client_fail(err, "latency: out of memory");
        return -ENOMEM;
    }
    if (interval_ms < PROBE_MIN_SPACING_MS) {
        rc = -EINVAL;
        client_fail(err,
                    "latency: a probe interval of %u ms is below %d ms: the server closes a "
                    "connection that sends over 200 probes per second",
                    interval_ms, PROBE_MIN_SPACING_MS);
        goto out;
    }
    probes->interval_ms = interval_ms;
    atomic_init(&probes->stop, false);
    rc = open_warm(target, &probes->connection, err);
    if (rc != 0)
        goto out;
    rc = -pthread_create(&probes->thread, NULL, loaded_thread, probes);
    if (rc != 0)
        client_fail(err, "latency: cannot start the probe thread: %s", strerror(-rc));
out:
    if (rc != 0) {
        close_connection(&probes->connection, rc);
        free(probes);
    } else {
        *out = probes;
    }
    return rc;
}

void probe_loaded_stop(struct probe_loaded *probes, struct latency_summary *summary)
{
    memset(summary, 0, sizeof(*summary));
    summary->source = "websocket";
    if (probes == NULL)
        return;
    double stop_ms = ws_monotonic_ms();
    atomic_store(&probes->stop, true);
    pthread_join(probes->thread, NULL);
    /* A probe younger than the loss deadline at the stop could still come back, so it is
     * left out rather than counted as lost. */
    summarize(&probes->connection.series, stop_ms - PROBE_LOSS_MS, summary);

    /* A server that has not echoed for the loss deadline, for example one stalled together
     * with the transfer, would not answer a close handshake in time either. */
    int rc = probes->thread_rc;
    double waiting_since_ms = probes->connection.waiting_since_ms;
    if (rc == 0 && waiting_since_ms != 0 && ws_monotonic_ms() - waiting_since_ms >= PROBE_LOSS_MS)
        rc = -ETIMEDOUT;
    close_connection(&probes->connection, rc);
    free(probes);
}
