/* The outputs of `linkspeed test`: JSON, CSV, the readable summary, plain phase lines and
 * the live progress line. The JSON object is the one source of field names and order: the
 * CSV columns are derived from it, so the two cannot drift apart. */
#include "report.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

/* Enough significant digits for every value we emit (rates are integers, times are
 * rounded to microseconds), without the noise of jansson's default 17. */
#define REPORT_JSON_FLAGS (JSON_COMPACT | JSON_REAL_PRECISION(15))

void report_add_note(struct speedtest_report *report, const char *format, ...)
{
    va_list args;

    if (report->note_count >= REPORT_MAX_NOTES)
        return;
    va_start(args, format);
    vsnprintf(report->notes[report->note_count], REPORT_NOTE_MAX, format, args);
    va_end(args);
    report->note_count++;
}

static const char *method_name(enum speedtest_method method)
{
    switch (method) {
    case SPEEDTEST_METHOD_NDT7:
        return "ndt7";
    case SPEEDTEST_METHOD_LEGACY:
        return "legacy";
    case SPEEDTEST_METHOD_BULK:
        break;
    }
    return "bulk";
}

static json_t *milliseconds_json(double ms)
{
    return json_real(round(ms * 1000.0) / 1000.0);
}

static json_t *optional_ms(bool available, double ms)
{
    return available ? milliseconds_json(ms) : json_null();
}

static json_t *optional_integer(bool available, double value)
{
    return available ? json_integer((json_int_t)llround(value)) : json_null();
}

static json_t *optional_string(const char *text)
{
    return text[0] != '\0' ? json_string(text) : json_null();
}

static bool direction_done(const struct direction_report *direction)
{
    return direction->state == PHASE_DONE;
}

static bool jitter_available(const struct latency_summary *latency)
{
    return latency->available && latency->source != NULL &&
           strcmp(latency->source, "websocket") == 0 && latency->samples >= 2;
}

static json_t *tcp_json(const struct direction_report *direction)
{
    const struct tcp_summary *tcp = &direction->throughput.tcp;
    bool available = direction_done(direction) && tcp->available;
    json_t *object = json_object();

    json_object_set_new(object, "connections", optional_integer(available, tcp->connections));
    json_object_set_new(object, "min_rtt_ms", optional_ms(available, tcp->min_rtt_ms));
    json_object_set_new(object, "rtt_ms", optional_ms(available, tcp->rtt_ms));
    json_object_set_new(object, "bytes_acked", optional_integer(available, tcp->bytes_acked));
    json_object_set_new(object, "bytes_received", optional_integer(available, tcp->bytes_received));
    json_object_set_new(object, "bytes_retrans", optional_integer(available, tcp->bytes_retrans));
    json_object_set_new(object, "retransmits", optional_integer(available, tcp->retransmits));
    return object;
}

static json_t *error_json(const char *phase, const char *message, int status)
{
    json_t *object = json_object();

    json_object_set_new(object, "phase", phase ? json_string(phase) : json_null());
    json_object_set_new(object, "message", message ? json_string(message) : json_null());
    json_object_set_new(object, "status", status != 0 ? json_integer(status) : json_null());
    return object;
}

static void set_latency_fields(json_t *root, const struct speedtest_report *report)
{
    const struct latency_summary *latency = &report->latency;

    json_object_set_new(root, "latency_ms", optional_ms(latency->available, latency->median_ms));
    json_object_set_new(root, "latency_min_ms", optional_ms(latency->available, latency->min_ms));
    json_object_set_new(root, "jitter_ms",
                        optional_ms(jitter_available(latency), latency->jitter_ms));
    json_object_set_new(
        root, "latency_source",
        json_string(latency->available && latency->source ? latency->source : "none"));
    json_object_set_new(root, "latency_samples", json_integer(latency->samples));
    json_object_set_new(root, "latency_lost", json_integer(latency->lost));
    json_object_set_new(
        root, "loaded_latency_download_ms",
        optional_ms(report->download.loaded.available, report->download.loaded.median_ms));
    json_object_set_new(
        root, "loaded_latency_upload_ms",
        optional_ms(report->upload.loaded.available, report->upload.loaded.median_ms));
}

static void set_transfer_fields(json_t *root, const struct speedtest_report *report)
{
    const struct direction_report *down = &report->download;
    const struct direction_report *up = &report->upload;
    bool down_done = direction_done(down);
    bool up_done = direction_done(up);
    unsigned max_streams = 0;

    if (down_done)
        max_streams = down->throughput.streams;
    if (up_done && up->throughput.streams > max_streams)
        max_streams = up->throughput.streams;

    json_object_set_new(root, "bytes_received",
                        optional_integer(down_done, (double)down->throughput.bytes));
    json_object_set_new(root, "bytes_sent",
                        optional_integer(up_done, (double)up->throughput.bytes));
    json_object_set_new(root, "upload_server_bytes",
                        optional_integer(up_done && report->method == SPEEDTEST_METHOD_BULK,
                                         (double)up->throughput.server_bytes));
    json_object_set_new(root, "streams", optional_integer(down_done || up_done, max_streams));
    json_object_set_new(root, "download_streams",
                        optional_integer(down_done, down->throughput.streams));
    json_object_set_new(root, "upload_streams", optional_integer(up_done, up->throughput.streams));
    json_object_set_new(root, "duration_ms", milliseconds_json(report->duration_ms));
    json_object_set_new(root, "download_duration_ms",
                        optional_ms(down_done, down->throughput.duration_ms));
    json_object_set_new(root, "upload_duration_ms",
                        optional_ms(up_done, up->throughput.duration_ms));
    json_object_set_new(root, "download_stable_window_ms",
                        optional_ms(down_done, down->throughput.stable_window_ms));
    json_object_set_new(root, "upload_stable_window_ms",
                        optional_ms(up_done, up->throughput.stable_window_ms));
    json_object_set_new(root, "download_server_bps",
                        optional_integer(down_done && down->has_server_bps, down->server_bps));
    json_object_set_new(root, "upload_server_bps",
                        optional_integer(up_done && up->has_server_bps, up->server_bps));
    json_object_set_new(root, "tcp_download", tcp_json(down));
    json_object_set_new(root, "tcp_upload", tcp_json(up));
}

/* Builds the result object in the documented field order. With `template`, the error object
 * is present with null fields even without an error, so that the CSV columns are the same
 * in every run. */
static json_t *build_json(const struct speedtest_report *report, bool template)
{
    json_t *root = json_object();
    json_t *notes = json_array();

    json_object_set_new(root, "exit_code", json_integer(report->exit_code));
    json_object_set_new(root, "timestamp", json_string(report->timestamp));
    json_object_set_new(root, "url", json_string(report->url));
    json_object_set_new(root, "method", json_string(method_name(report->method)));
    json_object_set_new(root, "server", optional_string(report->server_name));
    json_object_set_new(root, "client_ip", optional_string(report->client_ip));
    json_object_set_new(
        root, "download_bps",
        optional_integer(direction_done(&report->download), report->download.throughput.bps));
    json_object_set_new(
        root, "upload_bps",
        optional_integer(direction_done(&report->upload), report->upload.throughput.bps));
    set_latency_fields(root, report);
    set_transfer_fields(root, report);

    for (unsigned i = 0; i < report->note_count; i++)
        json_array_append_new(notes, json_string(report->notes[i]));
    json_object_set_new(root, "notes", notes);

    if (report->error_phase != NULL)
        json_object_set_new(
            root, "error",
            error_json(report->error_phase, report->error.message, report->error.status));
    else if (template)
        json_object_set_new(root, "error", error_json(NULL, NULL, 0));
    else
        json_object_set_new(root, "error", json_null());
    return root;
}

static int write_json_line(FILE *out, json_t *root)
{
    int rc = 0;

    if (root == NULL)
        return -ENOMEM;
    if (json_dumpf(root, out, REPORT_JSON_FLAGS) != 0 || fputc('\n', out) == EOF)
        rc = -EIO;
    json_decref(root);
    return rc;
}

int report_write_json(FILE *out, const struct speedtest_report *report)
{
    return write_json_line(out, build_json(report, false));
}

int report_write_usage_error_json(FILE *out, const char *message)
{
    json_t *root = json_object();

    json_object_set_new(root, "exit_code", json_integer(2));
    json_object_set_new(root, "error", error_json("usage", message, 0));
    return write_json_line(out, root);
}

/* Writes one CSV field by RFC 4180: quoted when it contains a comma, a quote or a line
 * break, with quotes doubled. */
static void write_csv_text(FILE *out, const char *text)
{
    if (strpbrk(text, ",\"\r\n") == NULL) {
        fputs(text, out);
        return;
    }
    fputc('"', out);
    for (const char *c = text; *c != '\0'; c++) {
        if (*c == '"')
            fputc('"', out);
        fputc(*c, out);
    }
    fputc('"', out);
}

static void write_csv_value(FILE *out, const json_t *value)
{
    if (value == NULL || json_is_null(value))
        return;
    if (json_is_string(value)) {
        write_csv_text(out, json_string_value(value));
        return;
    }
    if (json_is_array(value)) {
        /* The notes become one cell, joined with "; ". */
        char joined[REPORT_MAX_NOTES * REPORT_NOTE_MAX] = "";
        size_t index;
        json_t *item;

        json_array_foreach(value, index, item)
        {
            if (index > 0)
                strncat(joined, "; ", sizeof(joined) - strlen(joined) - 1);
            strncat(joined, json_string_value(item) ? json_string_value(item) : "",
                    sizeof(joined) - strlen(joined) - 1);
        }
        write_csv_text(out, joined);
        return;
    }
    char *text = json_dumps(value, JSON_ENCODE_ANY | REPORT_JSON_FLAGS);
    if (text != NULL)
        fputs(text, out);
    free(text);
}

/* Walks the template's fields in order and writes, for each scalar (each field of a nested
 * object, named parent_child), its header name or its value in `actual`. */
static void write_csv_fields(FILE *out, const json_t *template, const json_t *actual,
                             const char *prefix, bool header, bool *first)
{
    const char *key;
    json_t *field;

    json_object_foreach((json_t *)template, key, field)
    {
        char name[128];
        const json_t *value = json_is_object(actual) ? json_object_get(actual, key) : NULL;

        snprintf(name, sizeof(name), "%s%s%s", prefix, prefix[0] ? "_" : "", key);
        if (json_is_object(field)) {
            write_csv_fields(out, field, value, name, header, first);
            continue;
        }
        if (!*first)
            fputc(',', out);
        *first = false;
        if (header)
            fputs(name, out);
        else
            write_csv_value(out, value);
    }
}

int report_write_csv(FILE *out, const struct speedtest_report *report, bool header)
{
    json_t *template = build_json(report, true);
    json_t *actual = build_json(report, false);
    bool first;
    int rc = 0;

    if (template == NULL || actual == NULL) {
        rc = -ENOMEM;
        goto out;
    }
    if (header) {
        first = true;
        write_csv_fields(out, template, actual, "", true, &first);
        fputc('\n', out);
    }
    first = true;
    write_csv_fields(out, template, actual, "", false, &first);
    if (fputc('\n', out) == EOF)
        rc = -EIO;
out:
    json_decref(template);
    json_decref(actual);
    return rc;
}

void report_format_rate(char *buffer, size_t size, double bps)
{
    if (bps >= 1e9)
        snprintf(buffer, size, "%.2f Gbit/s", bps / 1e9);
    else if (bps >= 1e7)
        snprintf(buffer, size, "%.1f Mbit/s", bps / 1e6);
    else if (bps >= 1e4 || bps == 0)
        snprintf(buffer, size, "%.2f Mbit/s", bps / 1e6);
    else
        snprintf(buffer, size, "%.1f kbit/s", bps / 1e3); /* a trickle would read 0.00 Mbit/s */
}

/* Formats a byte count with decimal prefixes (1 MB = 10^6 bytes). */
static void format_bytes(char *buffer, size_t size, double bytes)
{
    if (bytes >= 1e9)
        snprintf(buffer, size, "%.2f GB", bytes / 1e9);
    else if (bytes >= 1e6)
        snprintf(buffer, size, "%.1f MB", bytes / 1e6);
    else if (bytes >= 1e3)
        snprintf(buffer, size, "%.1f kB", bytes / 1e3);
    else
        snprintf(buffer, size, "%.0f bytes", bytes);
}

static void format_ms(char *buffer, size_t size, double ms)
{
    if (ms > 0 && ms < 0.01)
        snprintf(buffer, size, "%.0f µs", ms * 1000); /* loopback RTTs read 0.00 ms */
    else
        snprintf(buffer, size, ms < 10 ? "%.2f ms" : "%.1f ms", ms);
}

static const char *phase_state_text(enum phase_state state)
{
    switch (state) {
    case PHASE_SKIPPED:
        return "not run";
    case PHASE_NOT_REACHED:
        return "not run: an earlier phase failed";
    case PHASE_FAILED:
        return "failed";
    case PHASE_DONE:
        break;
    }
    return "done";
}

/* Describes idle latency in one line: the figures and where they come from. */
static void format_latency(char *buffer, size_t size, const struct speedtest_report *report)
{
    const struct latency_summary *latency = &report->latency;
    char median[32];
    char min[32];
    char jitter[32];

    if (report->latency_state != PHASE_DONE) {
        snprintf(buffer, size, "%s", phase_state_text(report->latency_state));
        return;
    }
    if (!latency->available) {
        snprintf(buffer, size, "unavailable");
        return;
    }
    format_ms(median, sizeof(median), latency->median_ms);
    format_ms(min, sizeof(min), latency->min_ms);
    if (strcmp(latency->source, "tcp_info") == 0) {
        snprintf(buffer, size, "%s (TCP min RTT of the transfers, from TCP_INFO)", median);
    } else if (strcmp(latency->source, "server_tcp_info") == 0) {
        snprintf(buffer, size, "%s (the server's TCP min RTT, from ndt7's TCPInfo.MinRTT)", median);
    } else {
        format_ms(jitter, sizeof(jitter), latency->jitter_ms);
        snprintf(buffer, size, "%s (min %s, jitter %s, %u probes, %u lost)", median, min,
                 jitter_available(latency) ? jitter : "unavailable", latency->samples,
                 latency->lost);
    }
}

static void format_direction(char *buffer, size_t size, const struct direction_report *direction)
{
    const struct throughput_result *throughput = &direction->throughput;
    char rate[32];
    char bytes[32];
    char loaded[64] = "";
    char server[48] = "";

    if (direction->state != PHASE_DONE) {
        snprintf(buffer, size, "%s", phase_state_text(direction->state));
        return;
    }
    report_format_rate(rate, sizeof(rate), throughput->bps);
    format_bytes(bytes, sizeof(bytes), (double)throughput->bytes);
    if (direction->loaded.available) {
        char median[32];

        format_ms(median, sizeof(median), direction->loaded.median_ms);
        snprintf(loaded, sizeof(loaded), ", loaded latency %s", median);
    }
    if (direction->has_server_bps) {
        char server_rate[32];

        report_format_rate(server_rate, sizeof(server_rate), direction->server_bps);
        snprintf(server, sizeof(server), ", server %s", server_rate);
    }
    snprintf(buffer, size, "%s (%u stream%s, %s in %.1f s%s%s)", rate, throughput->streams,
             throughput->streams == 1 ? "" : "s", bytes, throughput->duration_ms / 1000.0, loaded,
             server);
}

void report_write_summary(FILE *out, const struct speedtest_report *report)
{
    char line[256];

    fprintf(out, "Server        %s%s%s\n", report->server_name,
            report->server_name[0] ? " at " : "", report->url);
    if (report->client_ip[0] != '\0')
        fprintf(out, "Client IP     %s\n", report->client_ip);
    format_latency(line, sizeof(line), report);
    fprintf(out, "Idle latency  %s\n", line);
    format_direction(line, sizeof(line), &report->download);
    fprintf(out, "Download      %s\n", line);
    format_direction(line, sizeof(line), &report->upload);
    fprintf(out, "Upload        %s\n", line);
    for (unsigned i = 0; i < report->note_count; i++)
        fprintf(out, "Note: %s\n", report->notes[i]);
    fflush(out);
}

void report_write_phase_line(FILE *out, const struct speedtest_report *report, const char *phase)
{
    char line[256];

    if (strcmp(phase, "latency") == 0) {
        const struct latency_summary *latency = &report->latency;

        if (!latency->available && latency->source != NULL &&
            strstr(latency->source, "tcp_info") != NULL)
            snprintf(line, sizeof(line),
                     "no latency endpoint on the server: latency comes "
                     "from TCP_INFO once the transfers ran");
        else
            format_latency(line, sizeof(line), report);
    } else {
        format_direction(line, sizeof(line),
                         strcmp(phase, "download") == 0 ? &report->download : &report->upload);
    }
    fprintf(out, "%-9s %s\n", phase, line);
    fflush(out);
}

void report_clear_live_line(FILE *out)
{
    /* Carriage return, then "erase in line" (ECMA-48 EL, ESC [ K). */
    fputs("\r\033[K", out);
}

void report_write_live_line(FILE *out, const struct client_progress *progress, unsigned columns)
{
    char rate[32];
    char bytes[32];
    char line[128];

    if (progress->bytes == 0 && progress->current_bps <= 0) {
        snprintf(line, sizeof(line), "%-9s measuring... %.1f s", progress->phase,
                 progress->elapsed_ms / 1000.0);
    } else {
        report_format_rate(rate, sizeof(rate), progress->current_bps);
        format_bytes(bytes, sizeof(bytes), (double)progress->bytes);
        snprintf(line, sizeof(line), "%-9s %14s  %5.1f s  %10s  %u stream%s", progress->phase, rate,
                 progress->elapsed_ms / 1000.0, bytes, progress->streams,
                 progress->streams == 1 ? "" : "s");
    }
    /* The line is ASCII, so one byte is one column. */
    if (columns > 0 && strlen(line) >= columns)
        line[columns - 1] = '\0';
    report_clear_live_line(out);
    fputs(line, out);
    fflush(out);
}
