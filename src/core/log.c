/* Logging to stderr with a fixed prefix; see log.h for the line format. */
#include "log.h"

#include <libwebsockets.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static enum log_level current_level = LOG_INFO;
static char process_name[16];

static const char *const level_names[] = {"error", "warn ", "info ", "debug"};

int log_parse_level(const char *name, enum log_level *out)
{
    static const char *const names[] = {"error", "warn", "info", "debug"};

    for (int i = 0; i < 4; i++) {
        if (strcmp(name, names[i]) == 0) {
            *out = (enum log_level)i;
            return 0;
        }
    }
    return -1;
}

void log_set_level(enum log_level level)
{
    current_level = level;
}

int log_enabled(enum log_level level)
{
    return level <= current_level;
}

void log_set_process(const char *name)
{
    if (name == NULL)
        process_name[0] = '\0';
    else
        snprintf(process_name, sizeof(process_name), "%s", name);
}

/* Writes one whole line with a single write() so lines of several processes do not mix. */
static void log_write(enum log_level level, const char *tag, const char *text, size_t text_len)
{
    char line[2048];
    struct timespec now;
    struct tm tm;
    size_t len;
    int n;

    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &tm);
    n = snprintf(line, sizeof(line),
                 "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s %s%s%s: ", tm.tm_year + 1900,
                 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, now.tv_nsec / 1000000,
                 level_names[level], process_name, process_name[0] ? " " : "", tag);
    if (n < 0)
        return;
    len = (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1;

    while (text_len > 0 && (text[text_len - 1] == '\n' || text[text_len - 1] == '\r'))
        text_len--;
    if (text_len > sizeof(line) - len - 1)
        text_len = sizeof(line) - len - 1;
    /* Lines may quote what a client sent; control and non-ASCII bytes become '?'. */
    for (size_t i = 0; i < text_len; i++) {
        unsigned char c = (unsigned char)text[i];
        line[len++] = c < 0x20 || c >= 0x7f ? '?' : (char)c;
    }
    line[len++] = '\n';

    /* A failed log write has nowhere to be reported. */
    ssize_t written = write(STDERR_FILENO, line, len);
    (void)written;
}

void log_msg(enum log_level level, const char *tag, const char *fmt, ...)
{
    char text[1536];
    va_list ap;
    int n;

    if (!log_enabled(level))
        return;

    va_start(ap, fmt);
    n = vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    log_write(level, tag, text, (size_t)n < sizeof(text) ? (size_t)n : sizeof(text) - 1);
}

static uint64_t monotonic_ms(void)
{
    struct timespec now;

    clock_gettime(CLOCK_MONOTONIC, &now);
    return (uint64_t)now.tv_sec * 1000u + (uint64_t)now.tv_nsec / 1000000u;
}

int log_rate_allow(struct log_rate *rate, const char *tag)
{
    uint64_t now_ms = monotonic_ms();

    if (now_ms - rate->window_start_ms >= 1000u) {
        if (rate->suppressed > 0)
            log_msg(LOG_WARN, tag, "%u similar lines suppressed in the last second",
                    rate->suppressed);
        rate->window_start_ms = now_ms;
        rate->logged = 0;
        rate->suppressed = 0;
    }
    if (rate->logged < LOG_RATE_LINES_PER_SECOND) {
        rate->logged++;
        return 1;
    }
    rate->suppressed++;
    return 0;
}

void log_lws_emit(int lws_level, const char *line)
{
    /* lws logs some client errors without a peer, such as oversized headers. */
    static struct log_rate rate;
    enum log_level level = LOG_DEBUG;

    if (lws_level & LLL_ERR)
        level = LOG_ERROR;
    else if (lws_level & LLL_WARN)
        level = LOG_WARN;
    else if (lws_level & (LLL_NOTICE | LLL_USER))
        level = LOG_INFO;

    /* lws at info level is chatty about normal events; keep it at debug. */
    if (level == LOG_INFO)
        level = LOG_DEBUG;
    if (!log_enabled(level))
        return;
    if (level <= LOG_WARN && !log_rate_allow(&rate, "lws"))
        return;

    /* lws prefixes its own timestamp "[2026/12/04 16:40:00:1234] N: "; drop it. */
    const char *text = line;
    if (text[0] == '[') {
        const char *end = strstr(text, "] ");
        if (end != NULL) {
            text = end + 2;
            if (text[0] != '\0' && text[1] == ':' && text[2] == ' ')
                text += 3;
        }
    }
    log_write(level, "lws", text, strlen(text));
}

int log_lws_mask(void)
{
    int mask = LLL_ERR | LLL_USER;

    if (current_level >= LOG_WARN)
        mask |= LLL_WARN;
    if (current_level >= LOG_DEBUG)
        mask |= LLL_NOTICE | LLL_INFO;
    return mask;
}
