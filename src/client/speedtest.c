/* `linkspeed test [URL]`: parses the flags and the URL, runs the phases in order (server
 * info, idle latency, then download and upload with latency probes beside them) through the
 * client modules, and writes the result in the output mode the flags select. report.c
 * formats; the modules measure; this file decides what runs, what a failure means and the
 * exit code. */
#include "speedtest.h"

#include "client.h"
#include "legacy_client.h"
#include "ndt7_client.h"
#include "probe.h"
#include "report.h"
#include "transfer.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_URL "http://localhost:8080"

#define DURATION_DEFAULT_S 10.0
#define DURATION_MIN_S     1.0
#define DURATION_MAX_S     60.0
#define TIMEOUT_DEFAULT_S  10.0
#define TIMEOUT_MIN_S      0.1
#define TIMEOUT_MAX_S      600.0

enum {
    EXIT_COMPLETE = 0,
    EXIT_FAILED = 1,
    EXIT_USAGE = 2,
    /* Idle and loaded probes follow docs/methodology.md: 10 probes 50 ms apart after a
     * warm-up, and one probe every 200 ms beside a transfer. */
    IDLE_PROBES = 10,
    IDLE_PROBE_GAP_MS = 50,
    LOADED_PROBE_INTERVAL_MS = 200,
    LEGACY_TRANSFERS = 10,
    /* A transfer rejected with HTTP 429 is tried again without loaded probes, up to 3 times,
     * 100, 200 and 300 ms after the previous try. */
    RETRY_ATTEMPTS = 3,
    RETRY_GAP_MS = 100,
    INFO_MAX_BODY_BYTES = 16384,
    USAGE_MESSAGE_MAX = CLIENT_URL_MAX + 256,
};

enum output_mode { OUTPUT_TEXT, OUTPUT_JSON, OUTPUT_CSV };

struct speedtest_options {
    struct client_target target;
    enum speedtest_method method;
    unsigned streams; /* 1..CLIENT_MAX_STREAMS, or 0 for automatic */
    bool streams_set;
    double duration_s; /* maximum per direction */
    bool duration_set;
    bool stop_when_stable; /* end a direction before duration_s once its rate is stable */
    bool run_latency;
    bool run_download;
    bool run_upload;
    enum output_mode output;
    bool csv_header;
    bool quiet;
};

/* State that the phases share while the test runs. */
struct run_state {
    const struct speedtest_options *options;
    struct speedtest_report *report;
    bool live_line;   /* redraw a progress line on stderr (a terminal) */
    bool phase_lines; /* one plain line per finished phase on stdout (not a terminal) */
    bool latency_endpoint_missing;
    int latency_endpoint_status; /* the HTTP status the latency upgrade got instead of 101 */
    double ndt7_min_rtt_ms;      /* smallest TCPInfo.MinRTT the ndt7 server sent, 0 if none */
};

/* The number of the signal that cancels the run, 0 until one arrives. The modules read it
 * through their cancel pointer and stop with -ECANCELED. */
static volatile sig_atomic_t cancel_signal;

static void handle_cancel_signal(int signal_number)
{
    cancel_signal = signal_number;
}

static int usage_error(char *message, size_t size, const char *format, ...)
    __attribute__((format(printf, 3, 4)));

static int usage_error(char *message, size_t size, const char *format, ...)
{
    va_list args;

    va_start(args, format);
    vsnprintf(message, size, format, args);
    va_end(args);
    return -EINVAL;
}

static void print_help(FILE *out)
{
    fputs("Usage: linkspeed test [FLAGS] [URL]\n"
          "\n"
          "Measures idle latency, download, upload and latency under load against a\n"
          "linkspeed server. URL is http://, https://, ws:// or wss:// with a host, an\n"
          "optional port and an optional path (default " DEFAULT_URL ").\n"
          "\n"
          "  --streams N|auto  parallel streams per direction, 1 to 16; auto (the default)\n"
          "                    adds streams while the rate grows\n"
          "  --duration S      maximum seconds per direction, 1 to 60 (default 10); a\n"
          "                    stable rate ends a direction sooner\n"
          "  --no-early-stop   run each direction for the whole --duration, as iperf3 does;\n"
          "                    the ramp-up is still left out of the result\n"
          "  --timeout S       fail a connection or transfer that makes no progress for\n"
          "                    S seconds, 0.1 to 600 (default 10)\n"
          "  --no-latency      skip idle latency and latency under load\n"
          "  --no-download     skip the download\n"
          "  --no-upload       skip the upload\n"
          "  --ndt7            run M-Lab's ndt7 protocol instead (10 s per direction, set\n"
          "                    by the protocol)\n"
          "  --legacy          run the tutorial's 10 transfers over /ws instead (download\n"
          "                    only)\n"
          "  -4, -6            connect over IPv4 only or IPv6 only\n"
          "  --insecure        accept any TLS certificate (a self-signed test server)\n"
          "  --json            write one JSON object (fields: docs/result.schema.json)\n"
          "  --csv             write one CSV line: the JSON fields in the same order\n"
          "  --csv-header      write the CSV header line, then the CSV line\n"
          "  -q, --quiet       write only the result and errors\n"
          "  -h, --help        show this help\n"
          "\n"
          "Exit status: 0 complete, 1 the test failed or was cancelled (what completed is\n"
          "still written), 2 usage error.\n",
          out);
}

/* Parses seconds with decimals in [min_s, max_s]. */
static int parse_seconds(const char *flag, const char *text, double min_s, double max_s,
                         double *out, char *message, size_t size)
{
    char *end = NULL;
    double value;

    errno = 0;
    value = strtod(text, &end);
    if (text[0] == '\0' || strspn(text, "0123456789.") != strlen(text) || *end != '\0' ||
        errno != 0 || !isfinite(value) || value < min_s || value > max_s)
        return usage_error(message, size,
                           "invalid value \"%s\" for %s: expected seconds from %g to %g", text,
                           flag, min_s, max_s);
    *out = value;
    return 0;
}

static int parse_streams(const char *text, unsigned *out, char *message, size_t size)
{
    char *end = NULL;
    unsigned long value;

    if (strcmp(text, "auto") == 0) {
        *out = 0;
        return 0;
    }
    errno = 0;
    value = strtoul(text, &end, 10);
    if (text[0] < '0' || text[0] > '9' || *end != '\0' || errno != 0 || value < 1 ||
        value > CLIENT_MAX_STREAMS)
        return usage_error(message, size,
                           "invalid value \"%s\" for --streams: expected auto or a whole number "
                           "from 1 to %d",
                           text, CLIENT_MAX_STREAMS);
    *out = (unsigned)value;
    return 0;
}

/* Rejects an IP literal of the other family than -4 or -6 requests, which could never
 * connect. Host names are resolved by the modules with the family set. */
static int check_literal_family(const char *text, const char *host, int ip_version, char *message,
                                size_t size)
{
    char literal[64];
    unsigned char address[16];
    size_t length = strlen(host);
    bool is_v4;
    bool is_v6 = false;

    is_v4 = inet_pton(AF_INET, host, address) == 1;
    if (length >= 2 && length < sizeof(literal) && host[0] == '[') {
        memcpy(literal, host + 1, length - 2);
        literal[length - 2] = '\0';
        is_v6 = inet_pton(AF_INET6, literal, address) == 1;
    }
    if (ip_version == 4 && is_v6)
        return usage_error(message, size, "-4 requests IPv4 but URL \"%s\" has an IPv6 address",
                           text);
    if (ip_version == 6 && is_v4)
        return usage_error(message, size, "-6 requests IPv6 but URL \"%s\" has an IPv4 address",
                           text);
    return 0;
}

/* Turns the parts of a URL that libcurl parsed into the target's base URL: http or https
 * (ws and wss map to them), the host, the port when given and the path without its trailing
 * slash. A path is kept because a server behind a reverse proxy may live under one. */
static int build_base_url(const char *text, CURLU *url, struct client_target *target, char *message,
                          size_t size)
{
    char *scheme = NULL;
    char *host = NULL;
    char *port = NULL;
    char *path = NULL;
    char *user = NULL;
    char *query = NULL;
    char *fragment = NULL;
    const char *http_scheme = NULL;
    size_t path_length;
    int written;
    int rc = 0;

    curl_url_get(url, CURLUPART_SCHEME, &scheme, 0);
    curl_url_get(url, CURLUPART_HOST, &host, 0);
    curl_url_get(url, CURLUPART_PORT, &port, 0);
    curl_url_get(url, CURLUPART_PATH, &path, 0);
    curl_url_get(url, CURLUPART_USER, &user, 0);
    curl_url_get(url, CURLUPART_QUERY, &query, 0);
    curl_url_get(url, CURLUPART_FRAGMENT, &fragment, 0);

    if (scheme != NULL && (strcmp(scheme, "http") == 0 || strcmp(scheme, "ws") == 0))
        http_scheme = "http";
    else if (scheme != NULL && (strcmp(scheme, "https") == 0 || strcmp(scheme, "wss") == 0))
        http_scheme = "https";
    if (http_scheme == NULL) {
        rc = usage_error(message, size,
                         "invalid URL \"%s\": unsupported scheme \"%s\"; expected http, https, "
                         "ws or wss",
                         text, scheme ? scheme : "");
        goto out;
    }
    if (host == NULL || host[0] == '\0') {
        rc = usage_error(message, size, "invalid URL \"%s\": missing host", text);
        goto out;
    }
    if (port != NULL && strcmp(port, "0") == 0) {
        rc = usage_error(message, size, "invalid URL \"%s\": invalid port 0; expected 1 to 65535",
                         text);
        goto out;
    }
    if (user != NULL || query != NULL || fragment != NULL) {
        rc = usage_error(message, size,
                         "invalid URL \"%s\": user names, queries and fragments are not "
                         "supported; give only scheme, host, port and path",
                         text);
        goto out;
    }
    rc = check_literal_family(text, host, target->ip_version, message, size);
    if (rc < 0)
        goto out;

    path_length = path ? strlen(path) : 0;
    while (path_length > 0 && path[path_length - 1] == '/')
        path_length--;
    written = snprintf(target->base_url, sizeof(target->base_url), "%s://%s%s%s%.*s", http_scheme,
                       host, port ? ":" : "", port ? port : "", (int)path_length, path ? path : "");
    if (written < 0 || (size_t)written >= sizeof(target->base_url))
        rc = usage_error(message, size, "invalid URL \"%.64s...\": longer than %d bytes", text,
                         CLIENT_URL_MAX - 1);
out:
    curl_free(scheme);
    curl_free(host);
    curl_free(port);
    curl_free(path);
    curl_free(user);
    curl_free(query);
    curl_free(fragment);
    return rc;
}

/* Parses and checks URL text with libcurl's URL parser. */
static int parse_url(const char *text, struct client_target *target, char *message, size_t size)
{
    CURLU *url = NULL;
    CURLUcode parsed;
    int rc;

    /* Spaces, controls and other bytes outside printable ASCII must be percent-encoded. The
     * message shows the URL with controls and bytes that are not UTF-8 escaped. */
    for (const unsigned char *c = (const unsigned char *)text; *c != '\0'; c++) {
        if (*c <= 0x20 || *c >= 0x7f) {
            char shown[CLIENT_URL_MAX];

            snprintf(shown, sizeof(shown), "%s", text);
            client_escape_controls(shown, sizeof(shown));
            return usage_error(message, size,
                               "invalid URL \"%s\": byte 0x%02x at offset %zu; percent-encode "
                               "spaces, controls and characters outside ASCII",
                               shown, *c, (size_t)(c - (const unsigned char *)text));
        }
    }
    if (strstr(text, "://") == NULL) {
        rc = usage_error(message, size,
                         "invalid URL \"%s\": missing scheme; expected http://, https://, ws:// "
                         "or wss://, as in http://%s",
                         text, text);
        goto out;
    }
    url = curl_url();
    if (url == NULL) {
        rc = usage_error(message, size, "cannot parse URL \"%s\": out of memory", text);
        goto out;
    }
    parsed = curl_url_set(url, CURLUPART_URL, text, CURLU_NON_SUPPORT_SCHEME);
    if (parsed == CURLUE_NO_HOST) {
        rc = usage_error(message, size, "invalid URL \"%s\": missing host", text);
        goto out;
    }
    if (parsed == CURLUE_BAD_PORT_NUMBER) {
        rc = usage_error(message, size, "invalid URL \"%s\": invalid port; expected 1 to 65535",
                         text);
        goto out;
    }
    if (parsed != CURLUE_OK) {
        rc = usage_error(message, size, "invalid URL \"%s\": %s", text, curl_url_strerror(parsed));
        goto out;
    }
    rc = build_base_url(text, url, target, message, size);
out:
    curl_url_cleanup(url);
    return rc;
}

enum {
    OPTION_STREAMS = 256,
    OPTION_DURATION,
    OPTION_TIMEOUT,
    OPTION_NO_LATENCY,
    OPTION_NO_DOWNLOAD,
    OPTION_NO_UPLOAD,
    OPTION_NO_EARLY_STOP,
    OPTION_NDT7,
    OPTION_LEGACY,
    OPTION_INSECURE,
    OPTION_JSON,
    OPTION_CSV,
    OPTION_CSV_HEADER,
};

static const struct option LONG_OPTIONS[] = {
    {"streams", required_argument, NULL, OPTION_STREAMS},
    {"duration", required_argument, NULL, OPTION_DURATION},
    {"timeout", required_argument, NULL, OPTION_TIMEOUT},
    {"no-latency", no_argument, NULL, OPTION_NO_LATENCY},
    {"no-download", no_argument, NULL, OPTION_NO_DOWNLOAD},
    {"no-upload", no_argument, NULL, OPTION_NO_UPLOAD},
    {"no-early-stop", no_argument, NULL, OPTION_NO_EARLY_STOP},
    {"ndt7", no_argument, NULL, OPTION_NDT7},
    {"legacy", no_argument, NULL, OPTION_LEGACY},
    {"insecure", no_argument, NULL, OPTION_INSECURE},
    {"json", no_argument, NULL, OPTION_JSON},
    {"csv", no_argument, NULL, OPTION_CSV},
    {"csv-header", no_argument, NULL, OPTION_CSV_HEADER},
    {"quiet", no_argument, NULL, 'q'},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

static void set_defaults(struct speedtest_options *options)
{
    memset(options, 0, sizeof(*options));
    options->target.timeout_s = TIMEOUT_DEFAULT_S;
    options->method = SPEEDTEST_METHOD_BULK;
    options->duration_s = DURATION_DEFAULT_S;
    options->stop_when_stable = true;
    options->run_latency = true;
    options->run_download = true;
    options->run_upload = true;
    options->output = OUTPUT_TEXT;
}

/* Applies one flag that getopt_long returned. */
static int apply_flag(struct speedtest_options *options, int flag, const char *value, bool *json,
                      bool *csv, char *message, size_t size)
{
    switch (flag) {
    case OPTION_STREAMS:
        options->streams_set = true;
        return parse_streams(value, &options->streams, message, size);
    case OPTION_DURATION:
        options->duration_set = true;
        return parse_seconds("--duration", value, DURATION_MIN_S, DURATION_MAX_S,
                             &options->duration_s, message, size);
    case OPTION_TIMEOUT:
        return parse_seconds("--timeout", value, TIMEOUT_MIN_S, TIMEOUT_MAX_S,
                             &options->target.timeout_s, message, size);
    case OPTION_NO_LATENCY:
        options->run_latency = false;
        return 0;
    case OPTION_NO_DOWNLOAD:
        options->run_download = false;
        return 0;
    case OPTION_NO_UPLOAD:
        options->run_upload = false;
        return 0;
    case OPTION_NO_EARLY_STOP:
        options->stop_when_stable = false;
        return 0;
    case OPTION_NDT7:
        if (options->method == SPEEDTEST_METHOD_LEGACY)
            return usage_error(message, size, "--ndt7 and --legacy cannot be combined");
        options->method = SPEEDTEST_METHOD_NDT7;
        return 0;
    case OPTION_LEGACY:
        if (options->method == SPEEDTEST_METHOD_NDT7)
            return usage_error(message, size, "--ndt7 and --legacy cannot be combined");
        options->method = SPEEDTEST_METHOD_LEGACY;
        return 0;
    case OPTION_INSECURE:
        options->target.insecure = true;
        return 0;
    case OPTION_JSON:
        *json = true;
        return 0;
    case OPTION_CSV_HEADER:
        options->csv_header = true;
        *csv = true;
        return 0;
    case OPTION_CSV:
        *csv = true;
        return 0;
    case 'q':
        options->quiet = true;
        return 0;
    case '4':
    case '6': {
        int version = flag == '4' ? 4 : 6;

        if (options->target.ip_version != 0 && options->target.ip_version != version)
            return usage_error(message, size, "-4 and -6 cannot be combined");
        options->target.ip_version = version;
        return 0;
    }
    }
    return usage_error(message, size, "internal error: unhandled flag %d", flag);
}

/* Checks the combinations of flags that single flags cannot see. */
static int check_combinations(const struct speedtest_options *options, bool json, bool csv,
                              char *message, size_t size)
{
    const char *method_flag = options->method == SPEEDTEST_METHOD_NDT7 ? "--ndt7" : "--legacy";

    if (json && csv)
        return usage_error(message, size, "--json and %s cannot be combined",
                           options->csv_header ? "--csv-header" : "--csv");
    if (options->method != SPEEDTEST_METHOD_BULK && options->streams_set)
        return usage_error(message, size,
                           "--streams cannot be used with %s: it runs one connection per "
                           "direction",
                           method_flag);
    /* --ndt7 and --legacy fix how long they run, so the flags about duration do not apply. */
    if (options->method != SPEEDTEST_METHOD_BULK &&
        (options->duration_set || !options->stop_when_stable)) {
        char reason[64];

        if (options->method == SPEEDTEST_METHOD_NDT7)
            snprintf(reason, sizeof(reason), "the protocol fixes 10 s per direction");
        else
            snprintf(reason, sizeof(reason), "it runs %d transfers", LEGACY_TRANSFERS);
        return usage_error(message, size, "%s cannot be used with %s: %s",
                           options->duration_set ? "--duration" : "--no-early-stop", method_flag,
                           reason);
    }
    if (options->method == SPEEDTEST_METHOD_LEGACY && !options->run_download)
        return usage_error(message, size,
                           "--no-download cannot be used with --legacy: /ws measures only "
                           "download");
    if (!options->run_latency && !options->run_download && !options->run_upload)
        return usage_error(message, size,
                           "--no-latency, --no-download and --no-upload leave nothing to "
                           "measure");
    return 0;
}

/* Parses argv into *options. Returns 0, 1 when --help was given, or -EINVAL with the
 * problem in message. */
static int parse_arguments(int argc, char **argv, struct speedtest_options *options, char *message,
                           size_t size)
{
    const char *url_text = DEFAULT_URL;
    bool json = false;
    bool csv = false;
    int flag;
    int rc;

    set_defaults(options);
    opterr = 0;
    optind = 1;
    while ((flag = getopt_long(argc, argv, ":46hq", LONG_OPTIONS, NULL)) != -1) {
        if (flag == 'h')
            return 1;
        if (flag == '?') {
            /* getopt_long sets optopt to the short flag, to the long flag's value when that
             * flag got a value it does not take, or to 0 for an unknown long flag. */
            if (optopt >= OPTION_STREAMS)
                return usage_error(message, size, "flag %s takes no value", argv[optind - 1]);
            if (optopt != 0)
                return usage_error(message, size, "unknown flag -%c", optopt);
            return usage_error(message, size, "unknown flag %s", argv[optind - 1]);
        }
        if (flag == ':')
            return usage_error(message, size, "missing value for %s", argv[optind - 1]);
        rc = apply_flag(options, flag, optarg, &json, &csv, message, size);
        if (rc < 0)
            return rc;
    }
    if (argc - optind > 1)
        return usage_error(message, size, "unexpected argument \"%s\": give at most one URL",
                           argv[optind + 1]);
    if (argc - optind == 1)
        url_text = argv[optind];

    rc = check_combinations(options, json, csv, message, size);
    if (rc < 0)
        return rc;
    if (json)
        options->output = OUTPUT_JSON;
    else if (csv)
        options->output = OUTPUT_CSV;
    else
        options->output = OUTPUT_TEXT;
    return parse_url(url_text, &options->target, message, size);
}

/* Returns whether --json appears before "--", so that even a usage error found before
 * getopt reaches it is written as JSON. */
static bool wants_json(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0)
            break;
        if (strcmp(argv[i], "--json") == 0)
            return true;
    }
    return false;
}

static double monotonic_ms(void)
{
    struct timespec now;

    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)now.tv_sec * 1000.0 + (double)now.tv_nsec / 1e6;
}

static void format_timestamp(char *buffer, size_t size)
{
    struct timespec now;
    struct tm utc;
    char seconds[24];

    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &utc);
    strftime(seconds, sizeof(seconds), "%Y-%m-%dT%H:%M:%S", &utc);
    snprintf(buffer, size, "%s.%03uZ", seconds, (unsigned)(now.tv_nsec / 1000000L) % 1000u);
}

struct info_body {
    char data[INFO_MAX_BODY_BYTES + 1];
    size_t size;
    bool too_large;
};

static size_t collect_info_body(char *data, size_t size, size_t count, void *user)
{
    struct info_body *body = user;
    size_t length = size * count;

    if (length > INFO_MAX_BODY_BYTES - body->size) {
        /* /api/v1/info is a few hundred bytes; a larger body is not ours and is ignored. */
        body->too_large = true;
        return 0;
    }
    memcpy(body->data + body->size, data, length);
    body->size += length;
    body->data[body->size] = '\0';
    return length;
}

static int abort_on_cancel(void *user, curl_off_t download_total, curl_off_t download_now,
                           curl_off_t upload_total, curl_off_t upload_now)
{
    (void)user;
    (void)download_total;
    (void)download_now;
    (void)upload_total;
    (void)upload_now;
    return cancel_signal != 0;
}

/* Copies the server's name and the client's address from an /api/v1/info body. A body that
 * is not that JSON leaves both empty: servers other than linkspeed need not have it. */
static void read_server_info(const char *body, struct speedtest_report *report)
{
    json_t *root = json_loads(body, 0, NULL);
    const char *name = json_string_value(json_object_get(root, "server_name"));
    const char *client_ip = json_string_value(json_object_get(root, "client_ip"));

    if (name != NULL)
        snprintf(report->server_name, sizeof(report->server_name), "%s", name);
    if (client_ip != NULL)
        snprintf(report->client_ip, sizeof(report->client_ip), "%s", client_ip);
    client_escape_controls(report->server_name, sizeof(report->server_name));
    client_escape_controls(report->client_ip, sizeof(report->client_ip));
    json_decref(root);
}

/* GETs /api/v1/info for the server's name and the client's address. An HTTP error status
 * is not a failure (an ndt7 server has no such endpoint), but a failed connection, TLS
 * handshake or timeout is: every later phase would fail the same way. */
static int fetch_server_info(const struct speedtest_options *options,
                             struct speedtest_report *report)
{
    struct info_body body;
    const struct client_target *target = &options->target;
    char url[CLIENT_URL_MAX + 32];
    char curl_message[CURL_ERROR_SIZE] = "";
    long timeout_ms = lround(target->timeout_s * 1000.0);
    long status = 0;
    CURLcode result;
    CURL *curl;
    int rc = 0;

    memset(&body, 0, sizeof(body));
    snprintf(url, sizeof(url), "%s/api/v1/info", target->base_url);
    curl = curl_easy_init();
    if (curl == NULL)
        return client_fail(&report->error, "server info: GET %s: cannot initialise libcurl", url);

    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, timeout_ms);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, curl_message);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, collect_info_body);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &body);
    curl_easy_setopt(curl, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(curl, CURLOPT_XFERINFOFUNCTION, abort_on_cancel);
    curl_easy_setopt(curl, CURLOPT_IPRESOLVE,
                     target->ip_version == 4   ? CURL_IPRESOLVE_V4
                     : target->ip_version == 6 ? CURL_IPRESOLVE_V6
                                               : CURL_IPRESOLVE_WHATEVER);
    if (target->insecure) {
        curl_easy_setopt(curl, CURLOPT_SSL_VERIFYPEER, 0L);
        curl_easy_setopt(curl, CURLOPT_SSL_VERIFYHOST, 0L);
    }

    result = curl_easy_perform(curl);
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
    if (result == CURLE_WRITE_ERROR && body.too_large)
        goto out;
    if (result == CURLE_PEER_FAILED_VERIFICATION || result == CURLE_SSL_CACERT_BADFILE) {
        rc = client_fail(&report->error,
                         "server info: GET %s: %s; for a self-signed test server, add --insecure",
                         url, curl_message[0] ? curl_message : curl_easy_strerror(result));
        goto out;
    }
    if (result != CURLE_OK) {
        rc = client_fail(&report->error, "server info: GET %s: %s", url,
                         curl_message[0] ? curl_message : curl_easy_strerror(result));
        goto out;
    }
    if (status == 200)
        read_server_info(body.data, report);
out:
    curl_easy_cleanup(curl);
    return rc;
}

static const char *signal_name(int signal_number)
{
    if (signal_number == SIGINT)
        return "SIGINT";
    if (signal_number == SIGTERM)
        return "SIGTERM";
    if (signal_number == SIGHUP)
        return "SIGHUP";
    return "a signal";
}

/* Appends what a 404 from a bulk endpoint most likely means to the error message. */
static void add_not_found_hint(struct speedtest_report *report)
{
    size_t length = strlen(report->error.message);

    snprintf(report->error.message + length, sizeof(report->error.message) - length,
             " (%s is not a linkspeed server, or an older one; for an ndt7 server, add --ndt7)",
             report->url);
}

/* Records a failed phase. A failure during cancel gets the cancel message instead of the
 * module's, which would only report that the transfer stopped. */
static void fail_phase(struct run_state *run, const char *phase)
{
    struct speedtest_report *report = run->report;

    report->error_phase = phase;
    if (cancel_signal != 0) {
        report->error.status = 0;
        client_fail(&report->error, "%s of %s cancelled by %s", phase, report->url,
                    signal_name(cancel_signal));
    } else if (report->error.message[0] == '\0') {
        client_fail(&report->error, "%s of %s failed without a message", phase, report->url);
    } else if (report->error.status == 404 && report->method == SPEEDTEST_METHOD_BULK) {
        add_not_found_hint(report);
    }
    report->exit_code = EXIT_FAILED;
}

/* Returns the width of the terminal on stderr, or 0 when it is unknown. It is read at every
 * redraw, so a resized window takes effect at once. */
static unsigned terminal_columns(void)
{
    struct winsize size;

    if (ioctl(STDERR_FILENO, TIOCGWINSZ, &size) != 0)
        return 0;
    return size.ws_col;
}

static void show_phase_start(struct run_state *run, const char *phase)
{
    struct client_progress start = {.phase = phase};

    if (run->live_line)
        report_write_live_line(stderr, &start, terminal_columns());
}

static void show_phase_end(struct run_state *run, const char *phase, enum phase_state state)
{
    if (run->live_line) {
        report_clear_live_line(stderr);
        if (state == PHASE_DONE)
            report_write_phase_line(stderr, run->report, phase);
        else
            fprintf(stderr, "%-9s %s\n", phase, cancel_signal ? "cancelled" : "failed");
    }
    if (run->phase_lines && state == PHASE_DONE)
        report_write_phase_line(stdout, run->report, phase);
}

static void show_progress(void *context, const struct client_progress *progress)
{
    struct run_state *run = context;

    if (run->live_line)
        report_write_live_line(stderr, progress, terminal_columns());
}

static const char *fallback_latency_source(const struct speedtest_options *options)
{
    return options->method == SPEEDTEST_METHOD_NDT7 ? "server_tcp_info" : "tcp_info";
}

static int measure_idle_latency(struct run_state *run)
{
    struct speedtest_report *report = run->report;
    int rc;

    show_phase_start(run, "latency");
    rc = probe_idle(&run->options->target, IDLE_PROBES, IDLE_PROBE_GAP_MS, &report->latency,
                    &report->error);
    if (rc == -ENOENT) {
        /* The server has no latency endpoint: the figure comes from TCP_INFO once the
         * transfers ran (resolve_latency_fallback). A server at its limit (429, 503)
         * rejects the upgrade too; the note then gives its status. */
        run->latency_endpoint_missing = true;
        run->latency_endpoint_status = report->error.status;
        memset(&report->latency, 0, sizeof(report->latency));
        report->latency.source = fallback_latency_source(run->options);
        memset(&report->error, 0, sizeof(report->error));
        rc = 0;
    }
    if (rc < 0) {
        report->latency_state = PHASE_FAILED;
        fail_phase(run, "latency");
    } else {
        report->latency_state = PHASE_DONE;
    }
    show_phase_end(run, "latency", report->latency_state);
    return rc;
}

/* Starts latency probes beside a transfer. A server without the endpoint, or probes that
 * cannot start, leave loaded latency unavailable and are not a failure of the transfer. */
static struct probe_loaded *start_loaded_probes(struct run_state *run, const char *phase)
{
    struct probe_loaded *probes = NULL;
    struct client_error error = {0};
    int rc;

    if (!run->options->run_latency || run->latency_endpoint_missing)
        return NULL;
    rc = probe_loaded_start(&run->options->target, LOADED_PROBE_INTERVAL_MS, &probes, &error);
    if (rc == -ENOENT && (error.status == 0 || error.status == 404)) {
        run->latency_endpoint_missing = true;
        run->latency_endpoint_status = error.status;
        return NULL;
    }
    if (rc < 0) {
        report_add_note(run->report, "latency under load during %s unavailable: %s", phase,
                        error.message);
        return NULL;
    }
    return probes;
}

static int run_bulk(struct run_state *run, enum client_direction direction,
                    struct direction_report *result)
{
    struct transfer_options transfer = {
        .direction = direction,
        .streams = run->options->streams,
        .max_duration_s = run->options->duration_s,
        .stop_when_stable = run->options->stop_when_stable,
        .progress = show_progress,
        .progress_context = run,
        .cancel = &cancel_signal,
    };

    int rc = transfer_measure(&run->options->target, &transfer, &result->throughput,
                              &run->report->error);

    if (rc == 0 && result->throughput.failed_streams > 0)
        report_add_note(run->report, "%u of %u %s streams failed and were left out, the first: %s",
                        result->throughput.failed_streams,
                        result->throughput.failed_streams + result->throughput.streams,
                        client_direction_name(direction), result->throughput.stream_error);
    return rc;
}

static int run_ndt7(struct run_state *run, enum client_direction direction,
                    struct direction_report *result)
{
    struct ndt7_result ndt7 = {0};
    int rc;

    rc = ndt7_client_run(&run->options->target, direction, show_progress, run, &cancel_signal,
                         &ndt7, &run->report->error);
    if (rc < 0)
        return rc;
    result->throughput = ndt7.throughput;
    if (ndt7.close_code != 0 && ndt7.close_code != 1000)
        report_add_note(run->report, "ndt7 %s ended with close %d, not 1000",
                        client_direction_name(direction), ndt7.close_code);
    result->has_server_bps = ndt7.has_server_measurement;
    result->server_bps = ndt7.server_bps;
    if (ndt7.has_server_measurement && ndt7.server_min_rtt_ms > 0 &&
        (run->ndt7_min_rtt_ms == 0 || ndt7.server_min_rtt_ms < run->ndt7_min_rtt_ms))
        run->ndt7_min_rtt_ms = ndt7.server_min_rtt_ms;
    return 0;
}

static int run_legacy(struct run_state *run, struct direction_report *result)
{
    struct legacy_result legacy = {0};
    int rc;

    rc = legacy_client_run(&run->options->target, LEGACY_TRANSFERS, show_progress, run,
                           &cancel_signal, &legacy, &run->report->error);
    if (rc < 0)
        return rc;
    /* The /ws transfers run one after another on one connection, with no ramp-up rule, so
     * the whole run is the window. */
    result->throughput.bps = legacy.bps;
    result->throughput.bytes = legacy.bytes;
    result->throughput.streams = 1;
    result->throughput.duration_ms = legacy.duration_ms;
    result->throughput.stable_window_ms = legacy.duration_ms;
    return 0;
}

/* Runs download or upload with the selected method and loaded-latency probes beside it. */
static int run_method(struct run_state *run, enum client_direction direction,
                      struct direction_report *result)
{
    switch (run->options->method) {
    case SPEEDTEST_METHOD_NDT7:
        return run_ndt7(run, direction, result);
    case SPEEDTEST_METHOD_LEGACY:
        return run_legacy(run, result);
    case SPEEDTEST_METHOD_BULK:
    default:
        return run_bulk(run, direction, result);
    }
}

/* Runs the direction again, without loaded probes, after the server rejected it with HTTP
 * 429. The connection that held the address's last slot (a probe, or the previous phase's
 * transfer) is closed now. The server may not have seen that yet, so the direction is tried
 * RETRY_ATTEMPTS times, RETRY_GAP_MS further apart each time. */
static int retry_rejected(struct run_state *run, enum client_direction direction,
                          struct direction_report *result)
{
    int rc = -EIO;

    for (int attempt = 1; attempt <= RETRY_ATTEMPTS && !cancel_signal; attempt++) {
        struct timespec gap = {.tv_nsec = attempt * RETRY_GAP_MS * 1000000L};

        nanosleep(&gap, NULL); /* a signal ends it early, and the loop checks cancel_signal */
        memset(&run->report->error, 0, sizeof(run->report->error));
        memset(result, 0, sizeof(*result));
        rc = run_method(run, direction, result);
        if (rc == 0 || run->report->error.status != 429)
            break;
    }
    return rc;
}

static int measure_direction(struct run_state *run, enum client_direction direction)
{
    struct speedtest_report *report = run->report;
    bool download = direction == CLIENT_DOWNLOAD;
    const char *phase = client_direction_name(direction);
    struct direction_report *result = download ? &report->download : &report->upload;
    struct probe_loaded *probes;
    int rc;

    probes = start_loaded_probes(run, phase);
    show_phase_start(run, phase);
    rc = run_method(run, direction, result);
    if (probes != NULL)
        probe_loaded_stop(probes, &result->loaded);
    if (rc < 0 && report->error.status == 429 && !cancel_signal) {
        /* A server that allows one transfer per address (--max-transfers-per-ip 1) counts
         * the probe connection too, and the rate matters more than loaded latency. */
        if (probes != NULL)
            report_add_note(report,
                            "latency under load during %s left out: with its probes running, "
                            "the server rejected the transfer (%s)",
                            phase, report->error.message);
        rc = retry_rejected(run, direction, result);
    }

    if (rc < 0) {
        result->state = PHASE_FAILED;
        fail_phase(run, phase);
    } else {
        result->state = PHASE_DONE;
    }
    show_phase_end(run, phase, result->state);
    return rc;
}

static void consider_min_rtt(const struct direction_report *direction, double *min_rtt_ms)
{
    const struct tcp_summary *tcp = &direction->throughput.tcp;

    if (direction->state != PHASE_DONE || !tcp->available || tcp->min_rtt_ms <= 0)
        return;
    if (*min_rtt_ms == 0 || tcp->min_rtt_ms < *min_rtt_ms)
        *min_rtt_ms = tcp->min_rtt_ms;
}

/* Without a latency endpoint, idle latency is the lowest TCP min RTT that a transfer saw:
 * the client's TCP_INFO for bulk transfers, the server's TCPInfo.MinRTT for ndt7. It is a
 * minimum, not a median of probes, so jitter stays unavailable. */
/* Writes why the latency endpoint was not used: "has no latency endpoint (...)" for 404. */
static void describe_missing_endpoint(const struct run_state *run, char *buf, size_t size)
{
    int status = run->latency_endpoint_status;

    if (status == 0 || status == 404)
        snprintf(buf, size, "has no latency endpoint (/api/v1/latency)");
    else
        snprintf(buf, size, "answered the latency endpoint (/api/v1/latency) with HTTP %d", status);
}

static void resolve_latency_fallback(struct run_state *run)
{
    struct speedtest_report *report = run->report;
    double min_rtt_ms = 0;
    char reason[96];

    if (!run->latency_endpoint_missing || report->latency_state != PHASE_DONE ||
        report->latency.available)
        return;
    if (run->options->method == SPEEDTEST_METHOD_NDT7) {
        min_rtt_ms = run->ndt7_min_rtt_ms;
    } else {
        consider_min_rtt(&report->download, &min_rtt_ms);
        consider_min_rtt(&report->upload, &min_rtt_ms);
    }
    describe_missing_endpoint(run, reason, sizeof(reason));
    if (min_rtt_ms <= 0) {
        report->latency.source = "none";
        report_add_note(report, "latency unavailable: %s %s and no transfer reported a TCP min RTT",
                        report->url, reason);
        return;
    }
    report->latency.available = true;
    report->latency.median_ms = min_rtt_ms;
    report->latency.min_ms = min_rtt_ms;
    if (run->options->method == SPEEDTEST_METHOD_NDT7)
        report_add_note(report,
                        "latency is the server's TCP min RTT (ndt7 TCPInfo.MinRTT) because %s "
                        "%s, so jitter and latency under load are unavailable",
                        report->url, reason);
    else
        report_add_note(report,
                        "latency is the TCP min RTT of the transfers (TCP_INFO) because %s %s, "
                        "so jitter and latency under load are unavailable",
                        report->url, reason);
}

/* Stops the run before a phase when a cancel signal arrived between phases. */
static bool cancelled_before(struct run_state *run, const char *phase)
{
    if (cancel_signal == 0)
        return false;
    fail_phase(run, phase);
    return true;
}

/* Runs the phases in order and stops at the first that fails; the phases after it are
 * marked as not reached. */
static void run_phases(struct run_state *run)
{
    const struct speedtest_options *options = run->options;
    struct speedtest_report *report = run->report;
    bool has_upload = options->method != SPEEDTEST_METHOD_LEGACY;
    int rc;

    report->latency_state = options->run_latency ? PHASE_NOT_REACHED : PHASE_SKIPPED;
    report->download.state = options->run_download ? PHASE_NOT_REACHED : PHASE_SKIPPED;
    report->upload.state = options->run_upload && has_upload ? PHASE_NOT_REACHED : PHASE_SKIPPED;
    if (!has_upload && options->run_upload)
        report_add_note(report, "upload not measured: the /ws protocol of --legacy only "
                                "downloads");

    rc = fetch_server_info(options, report);
    if (rc < 0) {
        fail_phase(run, "info");
        return;
    }
    if (options->run_latency) {
        if (cancelled_before(run, "latency") || measure_idle_latency(run) < 0)
            return;
    }
    if (options->run_download) {
        if (cancelled_before(run, "download") || measure_direction(run, CLIENT_DOWNLOAD) < 0)
            return;
    }
    if (options->run_upload && has_upload) {
        if (cancelled_before(run, "upload") || measure_direction(run, CLIENT_UPLOAD) < 0)
            return;
    }
}

static void run_test(const struct speedtest_options *options, struct speedtest_report *report)
{
    struct run_state run = {
        .options = options,
        .report = report,
        .live_line = options->output == OUTPUT_TEXT && !options->quiet && isatty(STDERR_FILENO),
        .phase_lines = options->output == OUTPUT_TEXT && !options->quiet && !isatty(STDOUT_FILENO),
    };
    double start_ms = monotonic_ms();

    memset(report, 0, sizeof(*report));
    snprintf(report->url, sizeof(report->url), "%s", options->target.base_url);
    report->method = options->method;
    report->latency.source = "none";
    format_timestamp(report->timestamp, sizeof(report->timestamp));

    run_phases(&run);
    resolve_latency_fallback(&run);
    report->duration_ms = monotonic_ms() - start_ms;
}

static bool any_phase_done(const struct speedtest_report *report)
{
    return report->latency_state == PHASE_DONE || report->download.state == PHASE_DONE ||
           report->upload.state == PHASE_DONE;
}

/* Writes the result in the chosen output and returns 0. When stdout cannot take it (a full
 * disk, a closed pipe), it reports that on stderr and returns -EIO. */
static int write_result(const struct speedtest_options *options,
                        const struct speedtest_report *report)
{
    switch (options->output) {
    case OUTPUT_JSON:
        report_write_json(stdout, report);
        break;
    case OUTPUT_CSV:
        report_write_csv(stdout, report, options->csv_header);
        break;
    case OUTPUT_TEXT:
        /* A run that failed before any phase completed has only its error to show. */
        if (!any_phase_done(report))
            break;
        if (!options->quiet && !isatty(STDOUT_FILENO))
            fputc('\n', stdout);
        report_write_summary(stdout, report);
        break;
    }
    /* In JSON mode the error is inside the object and nothing else is written. */
    if (report->error_phase != NULL && options->output != OUTPUT_JSON)
        fprintf(stderr, "linkspeed test: %s\n", report->error.message);
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "linkspeed test: writing the result to stdout failed: %s\n",
                strerror(errno));
        return -EIO;
    }
    return 0;
}

static void write_usage_error(bool json, const char *message)
{
    if (json) {
        report_write_usage_error_json(stdout, message);
        return;
    }
    fprintf(stderr, "linkspeed test: %s\nSee linkspeed test --help.\n", message);
}

/* Cancels the run on SIGINT, SIGTERM or SIGHUP. SA_RESETHAND restores the default action, so a
 * second signal ends a run that does not stop in time. */
static void install_signal_handlers(struct sigaction *saved_int, struct sigaction *saved_term,
                                    struct sigaction *saved_hup, struct sigaction *saved_pipe)
{
    struct sigaction cancel = {.sa_handler = handle_cancel_signal, .sa_flags = SA_RESETHAND};
    struct sigaction ignore = {.sa_handler = SIG_IGN};

    sigemptyset(&cancel.sa_mask);
    sigemptyset(&ignore.sa_mask);
    cancel_signal = 0;
    sigaction(SIGINT, &cancel, saved_int);
    sigaction(SIGTERM, &cancel, saved_term);
    sigaction(SIGHUP, &cancel, saved_hup);
    /* A closed socket or stdout pipe must come back as EPIPE, not end the process. */
    sigaction(SIGPIPE, &ignore, saved_pipe);
}

int speedtest_main(int argc, char **argv)
{
    struct speedtest_options options;
    struct speedtest_report report;
    char message[USAGE_MESSAGE_MAX];
    struct sigaction saved_int;
    struct sigaction saved_term;
    struct sigaction saved_hup;
    struct sigaction saved_pipe;
    bool json = wants_json(argc, argv);
    int rc;

    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        write_usage_error(json, "cannot initialise libcurl");
        return EXIT_FAILED;
    }
    rc = parse_arguments(argc, argv, &options, message, sizeof(message));
    if (rc == 1) {
        print_help(stdout);
        rc = EXIT_COMPLETE;
        goto out;
    }
    if (rc < 0) {
        write_usage_error(json, message);
        rc = EXIT_USAGE;
        goto out;
    }

    install_signal_handlers(&saved_int, &saved_term, &saved_hup, &saved_pipe);
    run_test(&options, &report);
    rc = write_result(&options, &report) == 0 ? report.exit_code : EXIT_FAILED;
    sigaction(SIGINT, &saved_int, NULL);
    sigaction(SIGTERM, &saved_term, NULL);
    sigaction(SIGHUP, &saved_hup, NULL);
    sigaction(SIGPIPE, &saved_pipe, NULL);
out:
    curl_global_cleanup();
    return rc;
}
