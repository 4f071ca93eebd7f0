/* TCP_INFO and BBR samples of a connected TCP socket, as the JSON objects of an ndt7
 * measurement.
 *
 * The JSON names are those ndt-server reports (the Go field names of m-lab/tcp-info's
 * LinuxTCPInfo and BBRInfo), and the values are the kernel's, unconverted: times and RTTs
 * in microseconds, BBR's bandwidth in bytes per second. A field the running kernel does not
 * fill is left out. The Linux structures stay inside tcpinfo.c because <linux/tcp.h>
 * cannot be included together with <netinet/tcp.h>. */
#ifndef LINKSPEED_TCPINFO_H
#define LINKSPEED_TCPINFO_H

#include <jansson.h>
#include <stdint.h>

/* The figures of a sample that callers use outside the JSON. */
struct tcpinfo_summary {
    uint64_t bytes_acked;
    uint64_t bytes_received;
    uint32_t min_rtt_us;
    uint32_t rtt_us;
    int has_bbr; /* BBR runs on the socket and *bbr_json was filled */
};

/* Samples TCP_INFO on fd, and BBR's TCP_CC_INFO when BBR is the socket's congestion
 * control. Stores new JSON objects (owned by the caller) in *tcp_json and *bbr_json, or
 * NULL in *bbr_json without BBR; each gets "ElapsedTime": elapsed_us. Returns 0 or a
 * negative errno; on error nothing is stored. */
int tcpinfo_sample(int fd, uint64_t elapsed_us, struct tcpinfo_summary *summary, json_t **tcp_json,
                   json_t **bbr_json);

/* Sets the TCP congestion control algorithm of fd; returns 0 or a negative errno. */
int tcpinfo_set_congestion(int fd, const char *name);

/* Tries the congestion control `name` on a new TCP socket. Returns 0 if this process may
 * set it, -ENOENT if the kernel has no such algorithm, -EPERM if it is not in
 * net.ipv4.tcp_allowed_congestion_control, or another negative errno. */
int tcpinfo_congestion_usable(const char *name);

#endif
