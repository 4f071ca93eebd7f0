/* Settings of `linkspeed serve`: defaults, LINKSPEED_* environment variables and flags.
 *
 * One table in config.c describes every flag (name, range, help), so parsing, the
 * environment mapping and the help text cannot drift apart. */
#ifndef LINKSPEED_CONFIG_H
#define LINKSPEED_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>

#include "log.h"

#define CONFIG_MAX_LISTEN  16
#define CONFIG_MAX_WORKERS 64

struct listen_addr {
    struct sockaddr_storage addr;
    socklen_t addr_len;
    char text[64]; /* as given, normalised: "127.0.0.1:8080" or "[::1]:8080" */
};

struct config {
    struct listen_addr listen[CONFIG_MAX_LISTEN];
    int listen_count;
    uint32_t workers;
    const char *web_root; /* NULL serves the copy embedded at build time */
    const char *name;     /* server name shown to clients; NULL means the host name */
    const char *tls_cert; /* PEM certificate chain; with tls_key, serve HTTPS and WSS */
    const char *tls_key;
    int http2; /* offer HTTP/2 by ALPN over TLS; otherwise HTTP/1.1 only */
    uint64_t payload_size_bytes;
    uint32_t fragment_size_bytes;
    uint32_t heartbeat_interval_ms;
    uint32_t client_timeout_ms;
    uint32_t max_connections;
    uint32_t max_transfers_per_ip;
    uint32_t max_queued_requests;
    uint32_t ws_max_message_bytes;
    uint64_t max_download_bytes;
    uint64_t max_upload_bytes;
    uint32_t handshake_timeout_s;
    uint32_t idle_timeout_s;
    uint32_t shutdown_grace_s;
    const char *congestion; /* NULL: bbr when the kernel offers it */
    enum log_level log_level;
};

enum config_result {
    CONFIG_OK = 0,
    CONFIG_HELP = 1,    /* --help was given: print config_print_help() and exit 0 */
    CONFIG_INVALID = -1 /* the message buffer names the flag and the accepted range */
};

/* Fills cfg with the defaults; workers defaults to the number of online cores. */
void config_defaults(struct config *cfg);

/* Applies LINKSPEED_* variables (read with getenv) and then argv[0..argc-1], which holds
 * only the flags after the subcommand. Strings in cfg point into argv or the environment. */
enum config_result config_parse_serve(struct config *cfg, int argc, char **argv, char *message,
                                      size_t message_size);

/* Parses "ADDR:PORT" or "[IPV6]:PORT" with a numeric address; returns 0 or -1. */
int config_parse_listen(const char *text, struct listen_addr *out);

void config_print_help(FILE *out);

#endif
