/* Logging: one call with a level check before formatting, one line per event on stderr.
 *
 * Every line starts with the UTC time in milliseconds, the level and a subsystem tag:
 *   2026-12-04T16:40:00.123Z info  server: listening on 127.0.0.1:8080
 * libwebsockets' own lines are routed through log_lws_emit() at matching levels. */
#ifndef LINKSPEED_LOG_H
#define LINKSPEED_LOG_H

#include <stdint.h>

enum log_level { LOG_ERROR = 0, LOG_WARN = 1, LOG_INFO = 2, LOG_DEBUG = 3 };

/* Parses "error", "warn", "info" or "debug"; returns 0 or -1 for anything else. */
int log_parse_level(const char *name, enum log_level *out);

void log_set_level(enum log_level level);
int log_enabled(enum log_level level);

/* Sets a short prefix for this process ("w0", "w1" for workers), or NULL for none. */
void log_set_process(const char *name);

void log_msg(enum log_level level, const char *tag, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Receives libwebsockets' lines (its lwsl emit callback signature). */
void log_lws_emit(int lws_level, const char *line);

/* The libwebsockets level mask matching the current level. */
int log_lws_mask(void);

/* State of a rate limit for one kind of line that a client can repeat at will. */
struct log_rate {
    uint64_t window_start_ms;
    unsigned logged;
    unsigned suppressed;
};

#define LOG_RATE_LINES_PER_SECOND 10

/* Returns 1 if a line of this kind may be logged now, at most LOG_RATE_LINES_PER_SECOND per
 * second; when a new second starts after suppressed lines, it first logs how many. */
int log_rate_allow(struct log_rate *rate, const char *tag);

#define log_error(tag, ...) log_msg(LOG_ERROR, tag, __VA_ARGS__)
#define log_warn(tag, ...)  log_msg(LOG_WARN, tag, __VA_ARGS__)
#define log_info(tag, ...)                                                                         \
    do {                                                                                           \
        if (log_enabled(LOG_INFO))                                                                 \
            log_msg(LOG_INFO, tag, __VA_ARGS__);                                                   \
    } while (0)
#define log_debug(tag, ...)                                                                        \
    do {                                                                                           \
        if (log_enabled(LOG_DEBUG))                                                                \
            log_msg(LOG_DEBUG, tag, __VA_ARGS__);                                                  \
    } while (0)

#endif
