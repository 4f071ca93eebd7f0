/* linkspeed: a self-hosted network speed test. This file only dispatches subcommands. */
#include "server/server.h"
#include "healthcheck.h"
#include "speedtest.h"

#include <stdio.h>
#include <string.h>

static void print_usage(FILE *out)
{
    fprintf(out, "Usage: linkspeed COMMAND [FLAGS]\n\n"
                 "Commands:\n"
                 "  serve         run the speed test server (see linkspeed serve --help)\n"
                 "  test          measure latency, download and upload against the server at URL\n"
                 "                (default URL: http://localhost:8080; see linkspeed test --help)\n"
                 "  healthcheck   exit 0 if the server at URL answers /healthz with status ok\n"
                 "                (default URL: http://127.0.0.1:8080)\n\n"
                 "  --help        show this help\n"
                 "  --version     show the version\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        print_usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        print_usage(stdout);
        printf("\n");
        config_print_help(stdout);
        return 0;
    }
    if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "version") == 0) {
        printf("linkspeed %s\n", LINKSPEED_VERSION);
        return 0;
    }
    if (strcmp(argv[1], "serve") == 0)
        return server_main(argc - 2, argv + 2);
    if (strcmp(argv[1], "test") == 0)
        return speedtest_main(argc - 1, argv + 1);
    if (strcmp(argv[1], "healthcheck") == 0)
        return healthcheck_main(argc - 2, argv + 2);

    fprintf(stderr, "linkspeed: unknown command \"%s\"; see linkspeed --help\n", argv[1]);
    return 2;
}
