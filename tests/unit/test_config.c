/* Unit tests of flag, environment and listen-address parsing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "core/config.h"

static enum config_result parse(struct config *cfg, char *message, int argc, char **argv)
{
    config_defaults(cfg);
    return config_parse_serve(cfg, argc, argv, message, 512);
}

static void defaults_match_documentation(void **state)
{
    struct config cfg;
    (void)state;

    config_defaults(&cfg);
    assert_int_equal(cfg.listen_count, 2);
    assert_string_equal(cfg.listen[0].text, "0.0.0.0:8080");
    assert_string_equal(cfg.listen[1].text, "[::]:8080");
    assert_true(cfg.workers >= 1);
    assert_int_equal(cfg.payload_size_bytes, 10485760);
    assert_int_equal(cfg.heartbeat_interval_ms, 5000);
    assert_int_equal(cfg.client_timeout_ms, 10000);
    assert_int_equal(cfg.max_connections, 10000);
    assert_int_equal(cfg.max_transfers_per_ip, 32);
    assert_int_equal(cfg.ws_max_message_bytes, 65536);
    assert_int_equal(cfg.max_download_bytes, 1073741824);
    assert_int_equal(cfg.max_upload_bytes, 1073741824);
    assert_int_equal(cfg.log_level, LOG_INFO);
    assert_null(cfg.name);
}

static void flags_set_values(void **state)
{
    struct config cfg;
    char message[512];
    char *argv[] = {"--workers",
                    "3",
                    "--payload-size=1048576",
                    "--heartbeat-interval",
                    "0.25",
                    "--log-level",
                    "debug",
                    "--web-root",
                    "/tmp"};
    (void)state;

    assert_int_equal(parse(&cfg, message, 9, argv), CONFIG_OK);
    assert_int_equal(cfg.workers, 3);
    assert_int_equal(cfg.payload_size_bytes, 1048576);
    assert_int_equal(cfg.heartbeat_interval_ms, 250);
    assert_int_equal(cfg.log_level, LOG_DEBUG);
    assert_string_equal(cfg.web_root, "/tmp");
}

static void invalid_values_name_flag_and_range(void **state)
{
    static const struct {
        const char *flag, *value, *expected;
    } cases[] = {
        {"--workers", "0", "--workers: invalid value \"0\"; expected an integer from 1 to 64"},
        {"--workers", "65", "expected an integer from 1 to 64"},
        {"--payload-size", "abc", "--payload-size: invalid value \"abc\""},
        {"--payload-size", "-5", "--payload-size: invalid value \"-5\""},
        {"--payload-size", "12x", "--payload-size: invalid value \"12x\""},
        {"--heartbeat-interval", "0.01", "a number of seconds from 0.05 to 3600"},
        {"--heartbeat-interval", "nan", "--heartbeat-interval: invalid value"},
        {"--client-timeout", "inf", "--client-timeout: invalid value"},
        {"--log-level", "loud", "expected error, warn, info or debug"},
        {"--listen", "8080", "--listen: invalid address \"8080\""},
        {"--listen", "localhost:80", "--listen: invalid address"},
        {"--listen", "[::1]80", "--listen: invalid address"},
        {"--listen", "1.2.3.4:65536", "--listen: invalid address"},
        {"--max-connections", "99999999999999999999", "--max-connections: invalid value"},
        {"--max-download-bytes", "0", "expected an integer from 1 to 1099511627776"},
        {"--max-upload-bytes", "1099511627777", "--max-upload-bytes: invalid value"},
    };
    (void)state;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct config cfg;
        char message[512];
        char *argv[] = {(char *)cases[i].flag, (char *)cases[i].value};

        assert_int_equal(parse(&cfg, message, 2, argv), CONFIG_INVALID);
        if (strstr(message, cases[i].expected) == NULL)
            fail_msg("%s %s: message \"%s\" lacks \"%s\"", cases[i].flag, cases[i].value, message,
                     cases[i].expected);
    }
}

static void unknown_flag_and_missing_value_rejected(void **state)
{
    struct config cfg;
    char message[512];
    char *unknown[] = {"--nope"};
    char *missing[] = {"--workers"};
    char *positional[] = {"extra"};
    (void)state;

    assert_int_equal(parse(&cfg, message, 1, unknown), CONFIG_INVALID);
    assert_non_null(strstr(message, "unknown flag \"--nope\""));
    assert_int_equal(parse(&cfg, message, 1, missing), CONFIG_INVALID);
    assert_non_null(strstr(message, "--workers: missing value"));
    assert_int_equal(parse(&cfg, message, 1, positional), CONFIG_INVALID);
    assert_non_null(strstr(message, "unexpected argument"));
}

static void help_flag_returns_help(void **state)
{
    struct config cfg;
    char message[512];
    char *argv[] = {"--workers", "2", "--help"};
    (void)state;

    assert_int_equal(parse(&cfg, message, 3, argv), CONFIG_HELP);
}

static void listen_flags_replace_defaults(void **state)
{
    struct config cfg;
    char message[512];
    char *argv[] = {"--listen", "127.0.0.1:0", "--listen", "[::1]:9000"};
    (void)state;

    assert_int_equal(parse(&cfg, message, 4, argv), CONFIG_OK);
    assert_int_equal(cfg.listen_count, 2);
    assert_string_equal(cfg.listen[0].text, "127.0.0.1:0");
    assert_int_equal(cfg.listen[0].addr.ss_family, AF_INET);
    assert_string_equal(cfg.listen[1].text, "[::1]:9000");
    assert_int_equal(cfg.listen[1].addr.ss_family, AF_INET6);
}

static void environment_sets_values(void **state)
{
    struct config cfg;
    char message[512];
    char *argv[] = {"--workers", "5"};
    (void)state;

    setenv("LINKSPEED_WORKERS", "2", 1);
    setenv("LINKSPEED_MAX_TRANSFERS_PER_IP", "7", 1);
    setenv("LINKSPEED_LISTEN", "127.0.0.1:1,[::1]:2", 1);
    assert_int_equal(parse(&cfg, message, 0, NULL), CONFIG_OK);
    assert_int_equal(cfg.workers, 2);
    assert_int_equal(cfg.max_transfers_per_ip, 7);
    assert_int_equal(cfg.listen_count, 2);
    assert_string_equal(cfg.listen[1].text, "[::1]:2");

    /* A flag on the command line overrides the environment. */
    assert_int_equal(parse(&cfg, message, 2, argv), CONFIG_OK);
    assert_int_equal(cfg.workers, 5);

    setenv("LINKSPEED_WORKERS", "zero", 1);
    assert_int_equal(parse(&cfg, message, 0, NULL), CONFIG_INVALID);
    assert_non_null(strstr(message, "--workers (from LINKSPEED_WORKERS)"));

    /* An invalid variable does not matter when the flag overrides it. */
    assert_int_equal(parse(&cfg, message, 2, argv), CONFIG_OK);
    assert_int_equal(cfg.workers, 5);

    unsetenv("LINKSPEED_WORKERS");
    unsetenv("LINKSPEED_MAX_TRANSFERS_PER_IP");
    unsetenv("LINKSPEED_LISTEN");
}

static void listen_address_forms(void **state)
{
    struct listen_addr la;
    (void)state;

    assert_int_equal(config_parse_listen("0.0.0.0:8080", &la), 0);
    assert_int_equal(config_parse_listen("[::]:8080", &la), 0);
    assert_int_equal(config_parse_listen("[fe80::1]:1", &la), 0);
    assert_int_equal(config_parse_listen(":8080", &la), -1);
    assert_int_equal(config_parse_listen("[]:8080", &la), -1);
    assert_int_equal(config_parse_listen("::1:8080", &la), -1);
    assert_int_equal(config_parse_listen("1.2.3.4:", &la), -1);
    assert_int_equal(config_parse_listen("1.2.3.4:+80", &la), -1);
    assert_int_equal(config_parse_listen("300.1.1.1:80", &la), -1);
}

static void http2_switch_and_tls_pair(void **state)
{
    struct config cfg;
    char message[512];
    char *on[] = {"--http2"};
    char *off[] = {"--http2=false"};
    char *bad[] = {"--http2=maybe"};
    char *half[] = {"--tls-key", "/etc/hostname"};
    (void)state;

    assert_int_equal(parse(&cfg, message, 1, on), CONFIG_OK);
    assert_int_equal(cfg.http2, 1);
    assert_int_equal(parse(&cfg, message, 1, off), CONFIG_OK);
    assert_int_equal(cfg.http2, 0);
    assert_int_equal(parse(&cfg, message, 1, bad), CONFIG_INVALID);
    assert_non_null(strstr(message, "expected true or false"));
    assert_int_equal(parse(&cfg, message, 2, half), CONFIG_INVALID);
    assert_non_null(strstr(message, "must be given together"));

    setenv("LINKSPEED_HTTP2", "yes", 1);
    assert_int_equal(parse(&cfg, message, 0, NULL), CONFIG_OK);
    assert_int_equal(cfg.http2, 1);
    unsetenv("LINKSPEED_HTTP2");
}

static void web_root_must_be_directory(void **state)
{
    struct config cfg;
    char message[512];
    char *missing[] = {"--web-root", "/nonexistent/linkspeed-web"};
    char *file[] = {"--web-root", "/etc/hostname"};
    char *dir[] = {"--web-root", "/tmp"};
    (void)state;

    assert_int_equal(parse(&cfg, message, 2, missing), CONFIG_INVALID);
    assert_non_null(strstr(message, "--web-root: \"/nonexistent/linkspeed-web\" is not"));
    assert_int_equal(parse(&cfg, message, 2, file), CONFIG_INVALID);
    assert_int_equal(parse(&cfg, message, 2, dir), CONFIG_OK);
}

static void name_printable_utf8_only(void **state)
{
    static const struct {
        const char *name;
        const char *expected; /* part of the message; NULL: accepted */
    } cases[] = {
        {"lab 1 \xe2\x80\x93 Z\xc3\xbcrich", NULL},
        {"lab\x1b[31m", "--name: invalid control character U+001B at byte 3"},
        {"lab\nX-Injected: 1", "U+000A at byte 3"},
        {"lab\x7f", "U+007F at byte 3"},
        {"a\xc2\x9b"
         "31m",
         "U+009B at byte 1"}, /* C1 CSI */
        {"\xe2\x80\xae"
         "dcba",
         "U+202E at byte 0"},                                  /* right-to-left override */
        {"caf\xe9", "--name: invalid UTF-8 at byte 3 (0xe9)"}, /* Latin-1 */
        {"ab\xc3", "invalid UTF-8 at byte 2"},                 /* cut inside a character */
        {"\xed\xa0\x80", "invalid UTF-8 at byte 0"},           /* a surrogate */
    };
    (void)state;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct config cfg;
        char message[512];
        char *argv[] = {"--name", (char *)cases[i].name};
        enum config_result rc = parse(&cfg, message, 2, argv);

        if (cases[i].expected == NULL) {
            assert_int_equal(rc, CONFIG_OK);
            assert_string_equal(cfg.name, cases[i].name);
        } else {
            assert_int_equal(rc, CONFIG_INVALID);
            assert_non_null(strstr(message, cases[i].expected));
        }
    }
}

static void name_from_environment_checked(void **state)
{
    struct config cfg;
    char message[512];
    (void)state;

    setenv("LINKSPEED_NAME", "lab\r", 1);
    assert_int_equal(parse(&cfg, message, 0, NULL), CONFIG_INVALID);
    assert_non_null(strstr(
        message, "--name (from LINKSPEED_NAME): invalid control character U+000D at byte 3"));
    unsetenv("LINKSPEED_NAME");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(defaults_match_documentation),
        cmocka_unit_test(web_root_must_be_directory),
        cmocka_unit_test(name_printable_utf8_only),
        cmocka_unit_test(name_from_environment_checked),
        cmocka_unit_test(http2_switch_and_tls_pair),
        cmocka_unit_test(flags_set_values),
        cmocka_unit_test(invalid_values_name_flag_and_range),
        cmocka_unit_test(unknown_flag_and_missing_value_rejected),
        cmocka_unit_test(help_flag_returns_help),
        cmocka_unit_test(listen_flags_replace_defaults),
        cmocka_unit_test(environment_sets_values),
        cmocka_unit_test(listen_address_forms),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
