/*
 * httpread: parallel HTTP download or upload client for the benchmarks, built on
 * libcurl's multi interface.
 *
 * Each of --streams streams sends one request after another to URL (GET, or a POST of
 * --upload-bytes bytes) on its own connection, until --duration seconds have passed.
 * It prints one JSON object with the payload bytes of every stream, the elapsed time,
 * the rate in Gbit/s (10^9 bit/s) and this process's CPU seconds.
 *
 * It reads the same way for linkspeed's /__down and for a file that nginx serves, so
 * the two rows of the benchmark differ only in the server. Response bodies are counted
 * and dropped. Upload bodies are copied into libcurl's buffer from one random buffer.
 *
 * Build: cc -O2 -o httpread bench/httpread.c $(pkg-config --cflags --libs libcurl)
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <time.h>

enum {
    STREAMS_MAX = 256,
    /* Size of the random buffer that upload bodies cycle through. */
    UPLOAD_SOURCE_BYTES = 1 << 20,
    /* libcurl's largest upload buffer, so that one send() can carry up to 2 MiB rather
     * than the default 64 KiB. */
    UPLOAD_BUFFER_BYTES = 2 << 20,
    POLL_INTERVAL_MS = 20,
    ERROR_MAX = 1024,
};

struct options {
    const char *url;
    unsigned streams;
    double duration_s;
    uint64_t upload_bytes; /* 0: download with GET */
    double timeout_s;
};

struct stream {
    CURL *easy;
    struct run *run;
    uint64_t bytes;         /* payload bytes of every request of this stream */
    uint64_t requests;      /* requests completed with status 200 */
    uint64_t upload_offset; /* bytes of the current upload body handed to libcurl */
    char error[CURL_ERROR_SIZE];
};

struct run {
    const struct options *options;
    CURLM *multi;
    struct stream streams[STREAMS_MAX];
    unsigned char *upload_source;
    struct curl_slist *headers;
    double elapsed_s;
    char error[ERROR_MAX];
};

static double monotonic_seconds(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)now.tv_sec + (double)now.tv_nsec / 1e9;
}

static double cpu_seconds(void)
{
    struct rusage usage;
    getrusage(RUSAGE_SELF, &usage);
    return (double)usage.ru_utime.tv_sec + (double)usage.ru_utime.tv_usec / 1e6 +
           (double)usage.ru_stime.tv_sec + (double)usage.ru_stime.tv_usec / 1e6;
}

static int fill_random(unsigned char *buffer, size_t length)
{
    while (length > 0) {
        ssize_t n = getrandom(buffer, length, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        buffer += n;
        length -= (size_t)n;
    }
    return 0;
}

static size_t count_body(char *data, size_t size, size_t count, void *context)
{
    struct stream *stream = context;
    (void)data;
    if (stream->run->options->upload_bytes == 0)
        stream->bytes += size * count;
    return size * count;
}

/* Hands libcurl the next part of the upload body, cycling through the random buffer. */
static size_t read_upload(char *buffer, size_t size, size_t count, void *context)
{
    struct stream *stream = context;
    uint64_t rest = stream->run->options->upload_bytes - stream->upload_offset;
    size_t offset = (size_t)(stream->upload_offset % UPLOAD_SOURCE_BYTES);
    size_t length = size * count;

    if (length > UPLOAD_SOURCE_BYTES - offset)
        length = UPLOAD_SOURCE_BYTES - offset;
    if (length > rest)
        length = (size_t)rest;
    memcpy(buffer, stream->run->upload_source + offset, length);
    stream->upload_offset += length;
    stream->bytes += length;
    return length;
}

static int setup_stream(struct run *run, struct stream *stream)
{
    const struct options *options = run->options;
    CURL *easy = curl_easy_init();

    if (easy == NULL)
        return -ENOMEM;
    stream->easy = easy;
    stream->run = run;
    curl_easy_setopt(easy, CURLOPT_URL, options->url);
    curl_easy_setopt(easy, CURLOPT_PRIVATE, stream);
    curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, stream->error);
    curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, count_body);
    curl_easy_setopt(easy, CURLOPT_WRITEDATA, stream);
    curl_easy_setopt(easy, CURLOPT_FAILONERROR, 1L);
    curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS, (long)(options->timeout_s * 1000));
    /* A stream that moves less than 1 byte/s for timeout_s fails instead of hanging. */
    curl_easy_setopt(easy, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(easy, CURLOPT_LOW_SPEED_TIME, (long)(options->timeout_s + 0.999));
    curl_easy_setopt(easy, CURLOPT_HTTP_VERSION, CURL_HTTP_VERSION_1_1);
    curl_easy_setopt(easy, CURLOPT_ACCEPT_ENCODING, NULL);
    if (options->upload_bytes > 0) {
        curl_easy_setopt(easy, CURLOPT_POST, 1L);
        curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)options->upload_bytes);
        curl_easy_setopt(easy, CURLOPT_READFUNCTION, read_upload);
        curl_easy_setopt(easy, CURLOPT_READDATA, stream);
        curl_easy_setopt(easy, CURLOPT_UPLOAD_BUFFERSIZE, (long)UPLOAD_BUFFER_BYTES);
        curl_easy_setopt(easy, CURLOPT_HTTPHEADER, run->headers);
    }
    if (curl_multi_add_handle(run->multi, easy) != CURLM_OK)
        return -ENOMEM;
    return 0;
}

/* Checks a finished request and starts the stream's next one on the same connection. */
static int restart_stream(struct run *run, CURLMsg *message)
{
    struct stream *stream = NULL;
    long status = 0;

    curl_easy_getinfo(message->easy_handle, CURLINFO_PRIVATE, (char **)&stream);
    curl_easy_getinfo(message->easy_handle, CURLINFO_RESPONSE_CODE, &status);
    if (message->data.result != CURLE_OK) {
        /* With CURLOPT_FAILONERROR the message names an HTTP status of 400 or above. */
        snprintf(run->error, sizeof(run->error), "request to %s failed: %s", run->options->url,
                 stream->error[0] ? stream->error : curl_easy_strerror(message->data.result));
        return -EIO;
    }
    if (status != 200) {
        snprintf(run->error, sizeof(run->error), "request to %s returned HTTP %ld, expected 200",
                 run->options->url, status);
        return -EIO;
    }
    stream->requests++;
    stream->upload_offset = 0;
    curl_multi_remove_handle(run->multi, stream->easy);
    if (curl_multi_add_handle(run->multi, stream->easy) != CURLM_OK) {
        snprintf(run->error, sizeof(run->error), "curl_multi_add_handle failed");
        return -ENOMEM;
    }
    return 0;
}

/* Runs every stream until the deadline. Returns 0 or a negative errno-style code with
 * run->error set. */
static int run_streams(struct run *run)
{
    const struct options *options = run->options;
    double start = monotonic_seconds();
    double deadline = start + options->duration_s;
    int running = 0;

    for (unsigned i = 0; i < options->streams; i++) {
        if (setup_stream(run, &run->streams[i]) != 0) {
            snprintf(run->error, sizeof(run->error), "setting up stream %u failed", i + 1);
            return -ENOMEM;
        }
    }
    for (;;) {
        CURLMcode code = curl_multi_perform(run->multi, &running);
        CURLMsg *message;
        int queued;

        if (code != CURLM_OK) {
            snprintf(run->error, sizeof(run->error), "curl_multi_perform failed: %s",
                     curl_multi_strerror(code));
            return -EIO;
        }
        while ((message = curl_multi_info_read(run->multi, &queued)) != NULL) {
            if (message->msg != CURLMSG_DONE)
                continue;
            int rc = restart_stream(run, message);
            if (rc != 0)
                return rc;
        }
        if (monotonic_seconds() >= deadline)
            break;
        code = curl_multi_poll(run->multi, NULL, 0, POLL_INTERVAL_MS, NULL);
        if (code != CURLM_OK) {
            snprintf(run->error, sizeof(run->error), "curl_multi_poll failed: %s",
                     curl_multi_strerror(code));
            return -EIO;
        }
    }
    run->elapsed_s = monotonic_seconds() - start;
    return 0;
}

static void print_result(const struct run *run, double cpu_s)
{
    const struct options *options = run->options;
    uint64_t total_bytes = 0;
    uint64_t requests = 0;

    for (unsigned i = 0; i < options->streams; i++) {
        total_bytes += run->streams[i].bytes;
        requests += run->streams[i].requests;
    }
    printf("{\"direction\":\"%s\",\"streams\":%u,\"duration_s\":%.6f,\"bytes\":%" PRIu64
           ",\"requests_completed\":%" PRIu64 ",\"gbit_per_s\":%.6f,\"cpu_s\":%.3f,"
           "\"stream_bytes\":[",
           options->upload_bytes > 0 ? "upload" : "download", options->streams, run->elapsed_s,
           total_bytes, requests, (double)total_bytes * 8 / run->elapsed_s / 1e9, cpu_s);
    for (unsigned i = 0; i < options->streams; i++)
        printf("%s%" PRIu64, i > 0 ? "," : "", run->streams[i].bytes);
    printf("]}\n");
}

static void print_usage(FILE *out)
{
    fputs("usage: httpread [options] URL\n"
          "\n"
          "Sends requests to URL one after another on each of N connections for a fixed\n"
          "time and prints the bytes moved as JSON. Every response must have status 200.\n"
          "\n"
          "options:\n"
          "  --streams N            parallel connections, 1 to 256 (default 1)\n"
          "  --duration SECONDS     measurement time, 0.1 to 3600 (default 10)\n"
          "  --upload-bytes BYTES   POST bodies of this size instead of GET requests,\n"
          "                         1 to 1099511627776\n"
          "  --timeout SECONDS      fail a connection that moves nothing for this long,\n"
          "                         1 to 600 (default 10)\n"
          "  --help                 print this help\n",
          out);
}

/* Prints a usage error and returns exit status 2. */
static int usage_error(const char *format, ...) __attribute__((format(printf, 1, 2)));

static int usage_error(const char *format, ...)
{
    va_list args;
    va_start(args, format);
    fputs("httpread: ", stderr);
    vfprintf(stderr, format, args);
    fputs("\nRun httpread --help for usage.\n", stderr);
    va_end(args);
    return 2;
}

static bool parse_number(const char *text, double min, double max, double *out)
{
    char *end;
    errno = 0;
    double value = strtod(text, &end);
    if (errno != 0 || end == text || *end != '\0' || !(value >= min && value <= max))
        return false;
    *out = value;
    return true;
}

/* Parses argv into options. Returns 0, or the exit status for main (0 after --help). */
static int parse_options(int argc, char **argv, struct options *options, bool *done)
{
    *done = false;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        double value;

        if (strcmp(arg, "--help") == 0) {
            print_usage(stdout);
            *done = true;
            return 0;
        }
        if (arg[0] != '-') {
            if (options->url != NULL)
                return usage_error("unexpected argument %s", arg);
            options->url = arg;
            continue;
        }
        if (i + 1 >= argc)
            return usage_error("missing value for %s", arg);
        const char *text = argv[++i];
        if (strcmp(arg, "--streams") == 0) {
            if (!parse_number(text, 1, STREAMS_MAX, &value) || value != (unsigned)value)
                return usage_error("invalid %s \"%s\": expected an integer in 1..256", arg, text);
            options->streams = (unsigned)value;
        } else if (strcmp(arg, "--duration") == 0) {
            if (!parse_number(text, 0.1, 3600, &options->duration_s))
                return usage_error("invalid %s \"%s\": expected seconds in 0.1..3600", arg, text);
        } else if (strcmp(arg, "--upload-bytes") == 0) {
            if (!parse_number(text, 1, 1099511627776.0, &value) || value != (uint64_t)value)
                return usage_error("invalid %s \"%s\": expected bytes in 1..1099511627776", arg,
                                   text);
            options->upload_bytes = (uint64_t)value;
        } else if (strcmp(arg, "--timeout") == 0) {
            if (!parse_number(text, 1, 600, &options->timeout_s))
                return usage_error("invalid %s \"%s\": expected seconds in 1..600", arg, text);
        } else {
            return usage_error("unknown option %s", arg);
        }
    }
    if (options->url == NULL)
        return usage_error("missing URL");
    return 0;
}

int main(int argc, char **argv)
{
    struct options options = {.streams = 1, .duration_s = 10, .timeout_s = 10};
    struct run *run = NULL;
    bool done;
    int status = parse_options(argc, argv, &options, &done);
    int rc;

    if (status != 0 || done)
        return status;
    status = 1;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fputs("httpread: curl_global_init failed\n", stderr);
        return 1;
    }
    run = calloc(1, sizeof(*run));
    if (run == NULL) {
        fputs("httpread: out of memory\n", stderr);
        goto out;
    }
    run->options = &options;
    run->multi = curl_multi_init();
    if (run->multi == NULL) {
        fputs("httpread: curl_multi_init failed\n", stderr);
        goto out;
    }
    if (options.upload_bytes > 0) {
        run->upload_source = malloc(UPLOAD_SOURCE_BYTES);
        if (run->upload_source == NULL) {
            fputs("httpread: out of memory\n", stderr);
            goto out;
        }
        rc = fill_random(run->upload_source, UPLOAD_SOURCE_BYTES);
        if (rc != 0) {
            fprintf(stderr, "httpread: getrandom() failed: %s\n", strerror(-rc));
            goto out;
        }
        /* libcurl waits up to a second for "100 Continue" before a large body; the servers
         * here read the body at once, so skip the wait. */
        run->headers = curl_slist_append(NULL, "Expect:");
        if (run->headers == NULL) {
            fputs("httpread: out of memory\n", stderr);
            goto out;
        }
    }
    double cpu_before_s = cpu_seconds();
    rc = run_streams(run);
    if (rc != 0) {
        fprintf(stderr, "httpread: %s\n", run->error);
        goto out;
    }
    print_result(run, cpu_seconds() - cpu_before_s);
    status = 0;
out:
    if (run != NULL) {
        for (unsigned i = 0; i < options.streams; i++) {
            if (run->streams[i].easy == NULL)
                continue;
            if (run->multi != NULL)
                curl_multi_remove_handle(run->multi, run->streams[i].easy);
            curl_easy_cleanup(run->streams[i].easy);
        }
        if (run->multi != NULL)
            curl_multi_cleanup(run->multi);
        curl_slist_free_all(run->headers);
        free(run->upload_source);
        free(run);
    }
    curl_global_cleanup();
    return status;
}
