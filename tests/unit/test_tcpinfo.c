/* Unit tests of the TCP_INFO sampler on a real loopback TCP connection. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/tcpinfo.h"

#define SENT_BYTES 100000

struct tcp_pair {
    int client;
    int server;
};

/* Connects a client to a listener on 127.0.0.1 and accepts it. */
static void open_pair(struct tcp_pair *pair)
{
    struct sockaddr_in addr;
    socklen_t len = sizeof(addr);
    int listener = socket(AF_INET, SOCK_STREAM, 0);

    assert_true(listener >= 0);
    memset(&addr, 0, sizeof(addr));
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(listener, (struct sockaddr *)&addr, sizeof(addr)), 0);
    assert_int_equal(listen(listener, 1), 0);
    assert_int_equal(getsockname(listener, (struct sockaddr *)&addr, &len), 0);

    pair->client = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(pair->client >= 0);
    assert_int_equal(connect(pair->client, (struct sockaddr *)&addr, sizeof(addr)), 0);
    pair->server = accept(listener, NULL, NULL);
    assert_true(pair->server >= 0);
    close(listener);
}

/* Sends SENT_BYTES from the server and reads them all on the client. */
static void transfer(struct tcp_pair *pair)
{
    static uint8_t buf[SENT_BYTES];
    size_t sent = 0, received = 0;

    memset(buf, 0x5a, sizeof(buf));
    while (sent < sizeof(buf)) {
        ssize_t n = send(pair->server, buf + sent, sizeof(buf) - sent, 0);
        assert_true(n > 0);
        sent += (size_t)n;
        while (received < sent) {
            ssize_t m = recv(pair->client, buf, sizeof(buf), 0);
            assert_true(m > 0);
            received += (size_t)m;
        }
    }
}

static void close_pair(struct tcp_pair *pair)
{
    close(pair->client);
    close(pair->server);
}

static void assert_integer_member(json_t *obj, const char *name)
{
    json_t *value = json_object_get(obj, name);

    if (value == NULL)
        fail_msg("TCPInfo has no member %s", name);
    if (!json_is_integer(value))
        fail_msg("TCPInfo member %s is not an integer", name);
}

static void sample_counts_acked_bytes(void **state)
{
    struct tcp_pair pair;
    struct tcpinfo_summary summary;
    json_t *tcp = NULL, *bbr = NULL;
    (void)state;

    open_pair(&pair);
    transfer(&pair);
    assert_int_equal(tcpinfo_sample(pair.server, 1234, &summary, &tcp, &bbr), 0);

    /* The last bytes were read by the client, but their ACK may still be on its way. */
    assert_true(summary.bytes_acked > 0);
    assert_true(summary.bytes_acked <= SENT_BYTES);
    assert_true(summary.min_rtt_us > 0);
    assert_int_equal(json_integer_value(json_object_get(tcp, "BytesAcked")),
                     (json_int_t)summary.bytes_acked);
    assert_int_equal(json_integer_value(json_object_get(tcp, "ElapsedTime")), 1234);
    json_decref(tcp);
    json_decref(bbr);
    close_pair(&pair);
}

static void sample_counts_received_bytes(void **state)
{
    struct tcp_pair pair;
    struct tcpinfo_summary summary;
    json_t *tcp = NULL, *bbr = NULL;
    (void)state;

    open_pair(&pair);
    transfer(&pair);
    assert_int_equal(tcpinfo_sample(pair.client, 0, &summary, &tcp, &bbr), 0);
    assert_int_equal(summary.bytes_received, SENT_BYTES);
    assert_int_equal(json_integer_value(json_object_get(tcp, "BytesReceived")), SENT_BYTES);
    json_decref(tcp);
    json_decref(bbr);
    close_pair(&pair);
}

/* The members ndt7 clients read, by ndt-server's names, all present and integers. */
static void sample_has_ndt7_members(void **state)
{
    static const char *const names[] = {"BusyTime",     "BytesAcked",  "BytesReceived", "BytesSent",
                                        "BytesRetrans", "ElapsedTime", "MinRTT",        "RTT",
                                        "RTTVar",       "RWndLimited", "SndBufLimited", "State",
                                        "WScale",       "AppLimited",  "SndCwnd",       "SndWnd"};
    struct tcp_pair pair;
    struct tcpinfo_summary summary;
    json_t *tcp = NULL, *bbr = NULL;
    (void)state;

    open_pair(&pair);
    transfer(&pair);
    assert_int_equal(tcpinfo_sample(pair.server, 0, &summary, &tcp, &bbr), 0);
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        assert_integer_member(tcp, names[i]);
    assert_int_equal(json_integer_value(json_object_get(tcp, "RTT")), summary.rtt_us);
    json_decref(tcp);
    json_decref(bbr);
    close_pair(&pair);
}

static void bbr_info_follows_congestion_control(void **state)
{
    struct tcp_pair pair;
    struct tcpinfo_summary summary;
    json_t *tcp = NULL, *bbr = NULL;
    (void)state;

    if (tcpinfo_congestion_usable("bbr") != 0)
        skip();
    open_pair(&pair);
    assert_int_equal(tcpinfo_set_congestion(pair.server, "bbr"), 0);
    transfer(&pair);
    assert_int_equal(tcpinfo_sample(pair.server, 5, &summary, &tcp, &bbr), 0);
    assert_true(summary.has_bbr);
    assert_non_null(bbr);
    assert_true(json_is_integer(json_object_get(bbr, "BW")));
    assert_true(json_is_integer(json_object_get(bbr, "MinRTT")));
    assert_int_equal(json_integer_value(json_object_get(bbr, "ElapsedTime")), 5);
    json_decref(tcp);
    json_decref(bbr);

    assert_int_equal(tcpinfo_set_congestion(pair.server, "reno"), 0);
    assert_int_equal(tcpinfo_sample(pair.server, 5, &summary, &tcp, &bbr), 0);
    assert_false(summary.has_bbr);
    assert_null(bbr);
    json_decref(tcp);
    close_pair(&pair);
}

static void sample_rejects_non_socket(void **state)
{
    struct tcpinfo_summary summary;
    json_t *tcp = NULL, *bbr = NULL;
    int fds[2];
    (void)state;

    assert_int_equal(pipe(fds), 0);
    assert_int_equal(tcpinfo_sample(fds[0], 0, &summary, &tcp, &bbr), -ENOTSOCK);
    assert_null(tcp);
    close(fds[0]);
    close(fds[1]);
}

static void unknown_congestion_is_unusable(void **state)
{
    (void)state;
    assert_int_equal(tcpinfo_congestion_usable("no-such-algorithm"), -ENOENT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(sample_counts_acked_bytes),
        cmocka_unit_test(sample_counts_received_bytes),
        cmocka_unit_test(sample_has_ndt7_members),
        cmocka_unit_test(bbr_info_follows_congestion_control),
        cmocka_unit_test(sample_rejects_non_socket),
        cmocka_unit_test(unknown_congestion_is_unusable),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
