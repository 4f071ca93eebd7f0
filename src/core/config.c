/* Settings of `linkspeed serve`; see config.h. */
#include "config.h"
#include "tcpinfo.h"
#include "utf8.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum flag_kind { FLAG_UINT, FLAG_SECONDS_MS, FLAG_STRING, FLAG_LISTEN, FLAG_LOG_LEVEL, FLAG_BOOL };

struct flag {
    const char *name; /* without the leading "--" */
    enum flag_kind kind;
    size_t offset; /* of the field in struct config */
    int width;     /* FLAG_UINT: 32 or 64 bits */
    double min, max;
    const char *value_name;
    const char *help;
};

#define FIELD(f) offsetof(struct config, f)

static const struct flag flags[] = {
    {"listen", FLAG_LISTEN, 0, 0, 0, 0, "ADDR:PORT",
     "address to listen on, repeatable; [::1]:8080 for IPv6, port 0 picks a free one "
     "(default: 0.0.0.0:8080 and [::]:8080)"},
    {"workers", FLAG_UINT, FIELD(workers), 32, 1, CONFIG_MAX_WORKERS, "N",
     "worker processes (default: number of cores)"},
    {"web-root", FLAG_STRING, FIELD(web_root), 0, 0, 0, "DIR",
     "serve the web UI from DIR instead of the embedded copy"},
    {"name", FLAG_STRING, FIELD(name), 0, 0, 0, "NAME",
     "server name shown on the page and in /api/v1/info (default: the host name)"},
    {"tls-cert", FLAG_STRING, FIELD(tls_cert), 0, 0, 0, "FILE",
     "PEM certificate chain; with --tls-key, serve HTTPS and WSS on every --listen address"},
    {"tls-key", FLAG_STRING, FIELD(tls_key), 0, 0, 0, "FILE", "PEM private key of --tls-cert"},
    {"http2", FLAG_BOOL, FIELD(http2), 0, 0, 0, "",
     "offer HTTP/2 over TLS; without it ALPN offers only HTTP/1.1, so each measurement "
     "stream has its own TCP connection (the variable takes true or false)"},
    {"payload-size", FLAG_UINT, FIELD(payload_size_bytes), 64, 1, 1073741824.0, "BYTES",
     "size of the binary message /ws sends per request (default: 10485760)"},
    {"fragment-size", FLAG_UINT, FIELD(fragment_size_bytes), 32, 4096, 16777216, "BYTES",
     "size of the WebSocket fragments a payload is sent in (default: 1048576)"},
    {"heartbeat-interval", FLAG_SECONDS_MS, FIELD(heartbeat_interval_ms), 0, 0.05, 3600, "SECONDS",
     "interval between the server's pings on /ws (default: 5)"},
    {"client-timeout", FLAG_SECONDS_MS, FIELD(client_timeout_ms), 0, 0.1, 3600, "SECONDS",
     "drop a /ws client with no pong or other sign of life for this long (default: 10)"},
    {"max-connections", FLAG_UINT, FIELD(max_connections), 32, 1, 1000000, "N",
     "open connections across all workers; beyond it new ones get 503 (default: 10000)"},
    {"max-transfers-per-ip", FLAG_UINT, FIELD(max_transfers_per_ip), 32, 1, 100000, "N",
     "open measurement connections per client IP; beyond it upgrades get 429 (default: 32)"},
    {"max-queued-requests", FLAG_UINT, FIELD(max_queued_requests), 32, 1, 1024, "N",
     "requests a /ws connection may have waiting; beyond it close 1008 (default: 16)"},
    {"ws-max-message", FLAG_UINT, FIELD(ws_max_message_bytes), 32, 1, 16777216, "BYTES",
     "largest message a client may send on /ws; beyond it close 1009 (default: 65536)"},
    {"max-download-bytes", FLAG_UINT, FIELD(max_download_bytes), 64, 1, 1099511627776.0, "BYTES",
     "largest N that GET /__down?bytes=N sends; beyond it 400 (default: 1073741824)"},
    {"max-upload-bytes", FLAG_UINT, FIELD(max_upload_bytes), 64, 1, 1099511627776.0, "BYTES",
     "largest body POST /__up reads; beyond it 413 (default: 1073741824)"},
    {"handshake-timeout", FLAG_UINT, FIELD(handshake_timeout_s), 32, 1, 3600, "SECONDS",
     "time a new connection has to send its request headers, and a /__down response may wait "
     "for its client to read (default: 10)"},
    {"idle-timeout", FLAG_UINT, FIELD(idle_timeout_s), 32, 1, 3600, "SECONDS",
     "time an idle HTTP keep-alive connection stays open (default: 60)"},
    {"shutdown-grace", FLAG_UINT, FIELD(shutdown_grace_s), 32, 0, 600, "SECONDS",
     "time running transfers get to finish after SIGINT or SIGTERM (default: 5)"},
    {"congestion", FLAG_STRING, FIELD(congestion), 0, 0, 0, "NAME",
     "TCP congestion control of every accepted connection, such as bbr or cubic (default: bbr "
     "when the kernel offers it, else the system default)"},
    {"log-level", FLAG_LOG_LEVEL, FIELD(log_level), 0, 0, 0, "LEVEL",
     "error, warn, info or debug (default: info)"},
};

#define FLAG_COUNT (sizeof(flags) / sizeof(flags[0]))

void config_defaults(struct config *cfg)
{
    long cores = sysconf(_SC_NPROCESSORS_ONLN);

    memset(cfg, 0, sizeof(*cfg));
    config_parse_listen("0.0.0.0:8080", &cfg->listen[0]);
    config_parse_listen("[::]:8080", &cfg->listen[1]);
    cfg->listen_count = 2;
    cfg->workers = cores < 1                    ? 1
                   : cores > CONFIG_MAX_WORKERS ? CONFIG_MAX_WORKERS
                                                : (uint32_t)cores;
    cfg->payload_size_bytes = 10485760;
    cfg->fragment_size_bytes = 1048576;
    cfg->heartbeat_interval_ms = 5000;
    cfg->client_timeout_ms = 10000;
    cfg->max_connections = 10000;
    cfg->max_transfers_per_ip = 32;
    cfg->max_queued_requests = 16;
    cfg->ws_max_message_bytes = 65536;
    cfg->max_download_bytes = 1073741824;
    cfg->max_upload_bytes = 1073741824;
    cfg->handshake_timeout_s = 10;
    cfg->idle_timeout_s = 60;
    cfg->shutdown_grace_s = 5;
    cfg->log_level = LOG_INFO;
}

int config_parse_listen(const char *text, struct listen_addr *out)
{
    char host[INET6_ADDRSTRLEN + 1];
    const char *colon, *port_text;
    size_t host_len;
    char *end;
    unsigned long port;

    memset(out, 0, sizeof(*out));
    if (text[0] == '[') {
        const char *close = strchr(text, ']');
        if (close == NULL || close[1] != ':')
            return -1;
        host_len = (size_t)(close - text - 1);
        if (host_len == 0 || host_len >= sizeof(host))
            return -1;
        memcpy(host, text + 1, host_len);
        port_text = close + 2;
    } else {
        colon = strrchr(text, ':');
        if (colon == NULL || strchr(text, ':') != colon)
            return -1;
        host_len = (size_t)(colon - text);
        if (host_len == 0 || host_len >= sizeof(host))
            return -1;
        memcpy(host, text, host_len);
        port_text = colon + 1;
    }
    host[host_len] = '\0';

    if (!isdigit((unsigned char)port_text[0]))
        return -1;
    errno = 0;
    port = strtoul(port_text, &end, 10);
    if (errno != 0 || *end != '\0' || port > 65535)
        return -1;

    if (text[0] == '[') {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&out->addr;
        if (inet_pton(AF_INET6, host, &sin6->sin6_addr) != 1)
            return -1;
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons((uint16_t)port);
        out->addr_len = sizeof(*sin6);
        snprintf(out->text, sizeof(out->text), "[%s]:%lu", host, port);
    } else {
        struct sockaddr_in *sin = (struct sockaddr_in *)&out->addr;
        if (inet_pton(AF_INET, host, &sin->sin_addr) != 1)
            return -1;
        sin->sin_family = AF_INET;
        sin->sin_port = htons((uint16_t)port);
        out->addr_len = sizeof(*sin);
        snprintf(out->text, sizeof(out->text), "%s:%lu", host, port);
    }
    return 0;
}

/* Describes the accepted range of a numeric flag for error messages. */
static void describe_range(const struct flag *flag, char *buf, size_t size)
{
    if (flag->kind == FLAG_SECONDS_MS)
        snprintf(buf, size, "a number of seconds from %g to %g", flag->min, flag->max);
    else
        snprintf(buf, size, "an integer from %.0f to %.0f", flag->min, flag->max);
}

static int parse_uint_flag(const struct flag *flag, const char *value, struct config *cfg)
{
    char *end;
    unsigned long long parsed;

    if (!isdigit((unsigned char)value[0]))
        return -1;
    errno = 0;
    parsed = strtoull(value, &end, 10);
    if (errno != 0 || *end != '\0' || (double)parsed < flag->min || (double)parsed > flag->max)
        return -1;

    if (flag->width == 64)
        *(uint64_t *)((char *)cfg + flag->offset) = parsed;
    else
        *(uint32_t *)((char *)cfg + flag->offset) = (uint32_t)parsed;
    return 0;
}

static int parse_seconds_flag(const struct flag *flag, const char *value, struct config *cfg)
{
    char *end;
    double seconds;

    if (!isdigit((unsigned char)value[0]) && value[0] != '.')
        return -1;
    errno = 0;
    seconds = strtod(value, &end);
    if (errno != 0 || *end != '\0' || !isfinite(seconds) || seconds < flag->min ||
        seconds > flag->max)
        return -1;
    *(uint32_t *)((char *)cfg + flag->offset) = (uint32_t)lround(seconds * 1000.0);
    return 0;
}

/* Parses a comma-separated list of listen addresses, replacing the current ones. */
static int parse_listen_list(const char *value, struct config *cfg, char *message, size_t size)
{
    char item[128];
    const char *start = value;

    cfg->listen_count = 0;
    while (*start != '\0') {
        const char *comma = strchr(start, ',');
        size_t len = comma ? (size_t)(comma - start) : strlen(start);

        if (cfg->listen_count == CONFIG_MAX_LISTEN) {
            snprintf(message, size, "--listen: at most %d addresses", CONFIG_MAX_LISTEN);
            return -1;
        }
        int valid = len > 0 && len < sizeof(item);
        if (valid) {
            memcpy(item, start, len);
            item[len] = '\0';
            valid = config_parse_listen(item, &cfg->listen[cfg->listen_count]) == 0;
        }
        if (!valid) {
            snprintf(message, size,
                     "--listen: invalid address \"%.*s\"; expected a numeric ADDR:PORT such as "
                     "127.0.0.1:8080 or [::1]:8080, port 0 to 65535",
                     (int)(len < 100 ? len : 100), start);
            return -1;
        }
        cfg->listen_count++;
        start = comma ? comma + 1 : start + len;
    }
    if (cfg->listen_count == 0) {
        snprintf(message, size, "--listen: no address given");
        return -1;
    }
    return 0;
}

static int apply_flag(const struct flag *flag, const char *value, struct config *cfg,
                      const char *source, char *message, size_t size)
{
    char range[96];

    switch (flag->kind) {
    case FLAG_UINT:
    case FLAG_SECONDS_MS:
        if ((flag->kind == FLAG_UINT ? parse_uint_flag : parse_seconds_flag)(flag, value, cfg) == 0)
            return 0;
        describe_range(flag, range, sizeof(range));
        snprintf(message, size, "--%s%s: invalid value \"%.64s\"; expected %s", flag->name, source,
                 value, range);
        return -1;
    case FLAG_STRING:
        if (value[0] == '\0') {
            snprintf(message, size, "--%s%s: expected a non-empty value", flag->name, source);
            return -1;
        }
        *(const char **)((char *)cfg + flag->offset) = value;
        return 0;
    case FLAG_LOG_LEVEL:
        if (log_parse_level(value, &cfg->log_level) == 0)
            return 0;
        snprintf(message, size,
                 "--%s%s: invalid value \"%.64s\"; expected error, warn, info or debug", flag->name,
                 source, value);
        return -1;
    case FLAG_LISTEN:
        return parse_listen_list(value, cfg, message, size);
    case FLAG_BOOL:
        if (strcmp(value, "true") == 0 || strcmp(value, "1") == 0 || strcmp(value, "yes") == 0) {
            *(int *)((char *)cfg + flag->offset) = 1;
            return 0;
        }
        if (strcmp(value, "false") == 0 || strcmp(value, "0") == 0 || strcmp(value, "no") == 0) {
            *(int *)((char *)cfg + flag->offset) = 0;
            return 0;
        }
        snprintf(message, size, "--%s%s: invalid value \"%.64s\"; expected true or false",
                 flag->name, source, value);
        return -1;
    }
    return -1;
}

static const struct flag *find_flag(const char *name, size_t len)
{
    for (size_t i = 0; i < FLAG_COUNT; i++) {
        if (strlen(flags[i].name) == len && strncmp(flags[i].name, name, len) == 0)
            return &flags[i];
    }
    return NULL;
}

/* Builds "LINKSPEED_PAYLOAD_SIZE" from "payload-size". */
static void env_name(const struct flag *flag, char *buf, size_t size)
{
    size_t n = (size_t)snprintf(buf, size, "LINKSPEED_");

    for (const char *c = flag->name; *c != '\0' && n + 1 < size; c++)
        buf[n++] = *c == '-' ? '_' : (char)toupper((unsigned char)*c);
    buf[n] = '\0';
}

/* Tells whether argv sets the flag, so its environment variable is not even parsed. */
/* Checks that the server name is printable UTF-8. It goes into the page, JSON responses and
 * log lines, none of which should carry a line break, a terminal escape or a reordering of
 * the text around it. */
static int check_name(const char *name, char *message, size_t size)
{
    const uint8_t *text = (const uint8_t *)name;
    size_t length = strlen(name);
    const char *source = name == getenv("LINKSPEED_NAME") ? " (from LINKSPEED_NAME)" : "";

    for (size_t i = 0; i < length;) {
        uint32_t code_point;
        size_t sequence = utf8_decode(text + i, length - i, &code_point);

        if (sequence == 0) {
            snprintf(message, size, "--name%s: invalid UTF-8 at byte %zu (0x%02x)", source, i,
                     text[i]);
            return -1;
        }
        if (utf8_is_control(code_point)) {
            snprintf(message, size,
                     "--name%s: invalid control character U+%04X at byte %zu; use printable "
                     "text",
                     source, (unsigned)code_point, i);
            return -1;
        }
        i += sequence;
    }
    return 0;
}

static int flag_in_args(const struct flag *flag, int argc, char **argv)
{
    size_t len = strlen(flag->name);

    for (int i = 0; i < argc; i++) {
        const char *arg = argv[i];
        if (strncmp(arg, "--", 2) == 0 && strncmp(arg + 2, flag->name, len) == 0 &&
            (arg[2 + len] == '\0' || arg[2 + len] == '='))
            return 1;
    }
    return 0;
}

static int apply_environment(struct config *cfg, int argc, char **argv, char *message, size_t size)
{
    char name[64], source[80];

    for (size_t i = 0; i < FLAG_COUNT; i++) {
        if (flag_in_args(&flags[i], argc, argv))
            continue;
        env_name(&flags[i], name, sizeof(name));
        const char *value = getenv(name);
        if (value == NULL)
            continue;
        snprintf(source, sizeof(source), " (from %s)", name);
        if (apply_flag(&flags[i], value, cfg, source, message, size) != 0)
            return -1;
    }
    return 0;
}

enum config_result config_parse_serve(struct config *cfg, int argc, char **argv, char *message,
                                      size_t message_size)
{
    int listen_from_args = 0;

    message[0] = '\0';
    if (apply_environment(cfg, argc, argv, message, message_size) != 0)
        return CONFIG_INVALID;

    for (int i = 0; i < argc; i++) {
        const char *arg = argv[i];
        const char *value, *equals;
        const struct flag *flag;

        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0)
            return CONFIG_HELP;
        if (strncmp(arg, "--", 2) != 0) {
            snprintf(message, message_size, "unexpected argument \"%.64s\"; see --help", arg);
            return CONFIG_INVALID;
        }
        equals = strchr(arg, '=');
        flag = find_flag(arg + 2, equals ? (size_t)(equals - arg - 2) : strlen(arg + 2));
        if (flag == NULL) {
            snprintf(message, message_size, "unknown flag \"%.64s\"; see --help", arg);
            return CONFIG_INVALID;
        }
        if (equals != NULL) {
            value = equals + 1;
        } else if (flag->kind == FLAG_BOOL) {
            value = "true"; /* a switch: --http2 alone turns it on */
        } else if (i + 1 < argc) {
            value = argv[++i];
        } else {
            snprintf(message, message_size, "--%s: missing value (%s)", flag->name,
                     flag->value_name);
            return CONFIG_INVALID;
        }

        if (flag->kind == FLAG_LISTEN) {
            /* The first --listen replaces the defaults; later ones add to it. */
            struct listen_addr *slot;
            if (!listen_from_args)
                cfg->listen_count = 0;
            listen_from_args = 1;
            if (cfg->listen_count == CONFIG_MAX_LISTEN) {
                snprintf(message, message_size, "--listen: at most %d addresses",
                         CONFIG_MAX_LISTEN);
                return CONFIG_INVALID;
            }
            slot = &cfg->listen[cfg->listen_count];
            if (config_parse_listen(value, slot) != 0) {
                snprintf(message, message_size,
                         "--listen: invalid address \"%.64s\"; expected a numeric ADDR:PORT such "
                         "as 127.0.0.1:8080 or [::1]:8080, port 0 to 65535",
                         value);
                return CONFIG_INVALID;
            }
            cfg->listen_count++;
            continue;
        }
        if (apply_flag(flag, value, cfg, "", message, message_size) != 0)
            return CONFIG_INVALID;
    }

    if ((cfg->tls_cert == NULL) != (cfg->tls_key == NULL)) {
        snprintf(message, message_size, "--tls-cert and --tls-key must be given together");
        return CONFIG_INVALID;
    }
    const char *tls_files[] = {cfg->tls_cert, cfg->tls_key};
    const char *tls_flags[] = {"--tls-cert", "--tls-key"};
    for (int i = 0; i < 2; i++) {
        if (tls_files[i] != NULL && access(tls_files[i], R_OK) != 0) {
            snprintf(message, message_size, "%s: cannot read \"%.200s\": %s", tls_flags[i],
                     tls_files[i], strerror(errno));
            return CONFIG_INVALID;
        }
    }

    if (cfg->name != NULL && check_name(cfg->name, message, message_size) != 0)
        return CONFIG_INVALID;

    struct stat st;
    if (cfg->web_root != NULL && (stat(cfg->web_root, &st) != 0 || !S_ISDIR(st.st_mode))) {
        snprintf(message, message_size, "--web-root: \"%.200s\" is not a readable directory",
                 cfg->web_root);
        return CONFIG_INVALID;
    }
    int rc = cfg->congestion != NULL ? tcpinfo_congestion_usable(cfg->congestion) : 0;
    if (rc != 0) {
        snprintf(message, message_size,
                 "--congestion: cannot use \"%.32s\": %s; see "
                 "/proc/sys/net/ipv4/tcp_allowed_congestion_control",
                 cfg->congestion, strerror(-rc));
        return CONFIG_INVALID;
    }
    return CONFIG_OK;
}

/* Prints text word-wrapped to 100 columns, continuation lines indented by `indent`. */
static void print_wrapped(FILE *out, const char *text, int indent)
{
    const int width = 100;
    int column = indent;

    while (*text != '\0') {
        int word = (int)strcspn(text, " ");
        if (column > indent && column + 1 + word > width) {
            fprintf(out, "\n%*s", indent, "");
            column = indent;
        } else if (column > indent) {
            fputc(' ', out);
            column++;
        }
        fprintf(out, "%.*s", word, text);
        column += word;
        text += word;
        while (*text == ' ')
            text++;
    }
    fputc('\n', out);
}

void config_print_help(FILE *out)
{
    char name[64], left[64];

    fprintf(out, "Usage: linkspeed serve [FLAGS]\n\n"
                 "Serves the speed test page and its byte streams.\n\nFlags:\n");
    for (size_t i = 0; i < FLAG_COUNT; i++) {
        snprintf(left, sizeof(left), "--%s %s", flags[i].name, flags[i].value_name);
        fprintf(out, "  %-32s ", left);
        print_wrapped(out, flags[i].help, 35);
    }
    fprintf(out, "\nEvery flag can also be set by an environment variable:\n");
    for (size_t i = 0; i < FLAG_COUNT; i++) {
        env_name(&flags[i], name, sizeof(name));
        fprintf(out, "  %-32s --%s%s\n", name, flags[i].name,
                flags[i].kind == FLAG_LISTEN ? " (comma-separated list)" : "");
    }
    fprintf(out, "Flags on the command line override the environment.\n");
}
