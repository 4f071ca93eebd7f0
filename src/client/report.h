/* The outputs of `linkspeed test`: the result of a run as JSON, CSV, a readable summary,
 * plain lines per finished phase and the live progress line. Formatting only: nothing here
 * measures or decides the exit code.
 *
 * Every JSON field name carries its unit (_bps: bits per second, _ms: milliseconds,
 * bytes: payload bytes), and docs/result.schema.json describes each one. The CSV columns
 * are the JSON fields in the same order, nested objects flattened with "_". */
#ifndef LINKSPEED_REPORT_H
#define LINKSPEED_REPORT_H

#include "client.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>

enum {
    REPORT_MAX_NOTES = 8,
    REPORT_NOTE_MAX = 512,
};

enum speedtest_method {
    SPEEDTEST_METHOD_BULK,   /* /__down and /__up with parallel streams */
    SPEEDTEST_METHOD_NDT7,   /* M-Lab's ndt7 protocol */
    SPEEDTEST_METHOD_LEGACY, /* the tutorial's 10 transfers over /ws */
};

enum phase_state {
    PHASE_SKIPPED,     /* turned off by a flag, or the method has no such phase */
    PHASE_NOT_REACHED, /* an earlier phase failed or the test was cancelled */
    PHASE_DONE,
    PHASE_FAILED,
};

struct direction_report {
    enum phase_state state;
    struct throughput_result throughput;
    bool has_server_bps;
    double server_bps;             /* ndt7: the server's own rate from its last measurement */
    struct latency_summary loaded; /* probes during the transfer; available false if none */
};

/* Everything a run of `linkspeed test` measured, for every output mode. */
struct speedtest_report {
    char url[CLIENT_URL_MAX]; /* the base URL measured, "http://host:port" */
    enum speedtest_method method;
    char timestamp[40];    /* start of the run, RFC 3339 in UTC with milliseconds */
    char server_name[256]; /* from /api/v1/info; empty when the server did not send it */
    char client_ip[64];    /* from /api/v1/info; empty when the server did not send it */
    double duration_ms;    /* the whole run */

    enum phase_state latency_state;
    /* Idle latency. source is "websocket" (echo probes), "tcp_info" (the client's TCP_INFO
     * min RTT of the transfers), "server_tcp_info" (ndt7: the server's TCPInfo.MinRTT) or
     * "none". */
    struct latency_summary latency;

    struct direction_report download;
    struct direction_report upload;

    char notes[REPORT_MAX_NOTES][REPORT_NOTE_MAX];
    unsigned note_count;

    int exit_code;           /* 0 complete, 1 failed or partial */
    const char *error_phase; /* NULL when nothing failed: "info", "latency", "download"... */
    struct client_error error;
};

/* Appends a note that every output mode shows (fallbacks and figures left out). */
void report_add_note(struct speedtest_report *report, const char *format, ...)
    __attribute__((format(printf, 2, 3)));

/* Writes the report as one JSON object and a newline. Returns 0 or -EIO. */
int report_write_json(FILE *out, const struct speedtest_report *report);

/* Writes the JSON object of a usage error, {"exit_code":2,"error":{...}}. */
int report_write_usage_error_json(FILE *out, const char *message);

/* Writes the report as one CSV line, after the header line when `header` is set. */
int report_write_csv(FILE *out, const struct speedtest_report *report, bool header);

/* Writes the readable summary: server, latency, download, upload and the notes. */
void report_write_summary(FILE *out, const struct speedtest_report *report);

/* Writes one plain line for a finished phase ("latency", "download" or "upload"). */
void report_write_phase_line(FILE *out, const struct speedtest_report *report, const char *phase);

/* Redraws the live progress line in place on a terminal: phase, rate, elapsed time,
 * bytes and streams. A terminal `columns` wide (0: unknown) gets at most columns - 1
 * characters, because a line that wraps cannot be redrawn in place. The next write must
 * start with report_clear_live_line(). */
void report_write_live_line(FILE *out, const struct client_progress *progress, unsigned columns);

void report_clear_live_line(FILE *out);

/* Formats a rate in Mbit/s or, from 1 Gbit/s up, in Gbit/s (1 Mbit = 10^6 bit). */
void report_format_rate(char *buffer, size_t size, double bps);

#endif
