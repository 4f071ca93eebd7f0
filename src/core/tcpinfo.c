/* TCP_INFO and BBR samples as ndt7 JSON; see tcpinfo.h. */
#include "tcpinfo.h"

#include <errno.h>
#include <linux/inet_diag.h>
#include <linux/tcp.h>
#include <netinet/in.h>
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* The kernel's limit on congestion control names (TCP_CA_NAME_MAX, not exported to user
 * space), terminating NUL included. */
#define CONGESTION_NAME_MAX 16

/* One unsigned member of struct tcp_info and its name in ndt-server's JSON. */
struct tcpinfo_field {
    const char *name;
    size_t offset;
    size_t size;
};

#define FIELD(json_name, member)                                                                   \
    {                                                                                              \
        json_name, offsetof(struct tcp_info, member), sizeof(((struct tcp_info *)0)->member)       \
    }

/* In the order of struct tcp_info. WScale and AppLimited are bit fields, added apart. */
static const struct tcpinfo_field fields[] = {
    FIELD("State", tcpi_state),
    FIELD("CAState", tcpi_ca_state),
    FIELD("Retransmits", tcpi_retransmits),
    FIELD("Probes", tcpi_probes),
    FIELD("Backoff", tcpi_backoff),
    FIELD("Options", tcpi_options),
    FIELD("RTO", tcpi_rto),
    FIELD("ATO", tcpi_ato),
    FIELD("SndMSS", tcpi_snd_mss),
    FIELD("RcvMSS", tcpi_rcv_mss),
    FIELD("Unacked", tcpi_unacked),
    FIELD("Sacked", tcpi_sacked),
    FIELD("Lost", tcpi_lost),
    FIELD("Retrans", tcpi_retrans),
    FIELD("Fackets", tcpi_fackets),
    FIELD("LastDataSent", tcpi_last_data_sent),
    FIELD("LastAckSent", tcpi_last_ack_sent),
    FIELD("LastDataRecv", tcpi_last_data_recv),
    FIELD("LastAckRecv", tcpi_last_ack_recv),
    FIELD("PMTU", tcpi_pmtu),
    FIELD("RcvSsThresh", tcpi_rcv_ssthresh),
    FIELD("RTT", tcpi_rtt),
    FIELD("RTTVar", tcpi_rttvar),
    FIELD("SndSsThresh", tcpi_snd_ssthresh),
    FIELD("SndCwnd", tcpi_snd_cwnd),
    FIELD("AdvMSS", tcpi_advmss),
    FIELD("Reordering", tcpi_reordering),
    FIELD("RcvRTT", tcpi_rcv_rtt),
    FIELD("RcvSpace", tcpi_rcv_space),
    FIELD("TotalRetrans", tcpi_total_retrans),
    FIELD("PacingRate", tcpi_pacing_rate),
    FIELD("MaxPacingRate", tcpi_max_pacing_rate),
    FIELD("BytesAcked", tcpi_bytes_acked),
    FIELD("BytesReceived", tcpi_bytes_received),
    FIELD("SegsOut", tcpi_segs_out),
    FIELD("SegsIn", tcpi_segs_in),
    FIELD("NotsentBytes", tcpi_notsent_bytes),
    FIELD("MinRTT", tcpi_min_rtt),
    FIELD("DataSegsIn", tcpi_data_segs_in),
    FIELD("DataSegsOut", tcpi_data_segs_out),
    FIELD("DeliveryRate", tcpi_delivery_rate),
    FIELD("BusyTime", tcpi_busy_time),
    FIELD("RWndLimited", tcpi_rwnd_limited),
    FIELD("SndBufLimited", tcpi_sndbuf_limited),
    FIELD("Delivered", tcpi_delivered),
    FIELD("DeliveredCE", tcpi_delivered_ce),
    FIELD("BytesSent", tcpi_bytes_sent),
    FIELD("BytesRetrans", tcpi_bytes_retrans),
    FIELD("DSackDups", tcpi_dsack_dups),
    FIELD("ReordSeen", tcpi_reord_seen),
    FIELD("RcvOooPack", tcpi_rcv_ooopack),
    FIELD("SndWnd", tcpi_snd_wnd),
};

#define FIELD_COUNT (sizeof(fields) / sizeof(fields[0]))

static uint64_t read_field(const struct tcp_info *info, const struct tcpinfo_field *f)
{
    const uint8_t *at = (const uint8_t *)info + f->offset;
    uint32_t u32;
    uint64_t u64;

    switch (f->size) {
    case 1:
        return *at;
    case 4:
        memcpy(&u32, at, sizeof(u32));
        return u32;
    default:
        memcpy(&u64, at, sizeof(u64));
        return u64;
    }
}

/* Builds the TCPInfo object from the first `filled` bytes the kernel wrote. 64-bit
 * counters go out as JSON's signed integers, so "no limit" (~0) pacing rates read -1, as
 * in ndt-server. */
static json_t *tcp_info_json(const struct tcp_info *info, socklen_t filled, uint64_t elapsed_us)
{
    json_t *obj = json_object();

    if (obj == NULL)
        return NULL;
    /* Both bit fields share the byte after tcpi_options, which every kernel fills. */
    json_object_set_new(obj, "WScale",
                        json_integer(info->tcpi_snd_wscale | info->tcpi_rcv_wscale << 4));
    json_object_set_new(obj, "AppLimited", json_integer(info->tcpi_delivery_rate_app_limited));
    for (size_t i = 0; i < FIELD_COUNT; i++) {
        if (fields[i].offset + fields[i].size > (size_t)filled)
            continue;
        json_object_set_new(obj, fields[i].name,
                            json_integer((json_int_t)read_field(info, &fields[i])));
    }
    json_object_set_new(obj, "ElapsedTime", json_integer((json_int_t)elapsed_us));
    return obj;
}

/* Returns the BBRInfo object, or NULL when BBR does not run on fd. */
static json_t *bbr_info_json(int fd, uint64_t elapsed_us)
{
    char name[CONGESTION_NAME_MAX];
    union tcp_cc_info cc;
    socklen_t len = sizeof(name);

    if (getsockopt(fd, IPPROTO_TCP, TCP_CONGESTION, name, &len) != 0)
        return NULL;
    name[len < sizeof(name) ? len : sizeof(name) - 1] = '\0';
    if (strcmp(name, "bbr") != 0)
        return NULL;
    len = sizeof(cc);
    memset(&cc, 0, sizeof(cc));
    if (getsockopt(fd, IPPROTO_TCP, TCP_CC_INFO, &cc, &len) != 0 || len < sizeof(cc.bbr))
        return NULL;

    uint64_t bw_bytes_per_s = (uint64_t)cc.bbr.bbr_bw_hi << 32 | cc.bbr.bbr_bw_lo;
    return json_pack("{s:I, s:I, s:I, s:I, s:I}", "BW", (json_int_t)bw_bytes_per_s, "MinRTT",
                     (json_int_t)cc.bbr.bbr_min_rtt, "PacingGain",
                     (json_int_t)cc.bbr.bbr_pacing_gain, "CwndGain",
                     (json_int_t)cc.bbr.bbr_cwnd_gain, "ElapsedTime", (json_int_t)elapsed_us);
}

int tcpinfo_sample(int fd, uint64_t elapsed_us, struct tcpinfo_summary *summary, json_t **tcp_json,
                   json_t **bbr_json)
{
    struct tcp_info info;
    socklen_t len = sizeof(info);
    json_t *tcp;

    memset(&info, 0, sizeof(info));
    if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &len) != 0)
        return -errno;
    tcp = tcp_info_json(&info, len, elapsed_us);
    if (tcp == NULL)
        return -ENOMEM;

    /* Fields the kernel did not fill stay 0 from the memset. */
    memset(summary, 0, sizeof(*summary));
    summary->bytes_acked = info.tcpi_bytes_acked;
    summary->bytes_received = info.tcpi_bytes_received;
    summary->min_rtt_us = info.tcpi_min_rtt;
    summary->rtt_us = info.tcpi_rtt;
    *bbr_json = bbr_info_json(fd, elapsed_us);
    summary->has_bbr = *bbr_json != NULL;
    *tcp_json = tcp;
    return 0;
}

int tcpinfo_set_congestion(int fd, const char *name)
{
    if (setsockopt(fd, IPPROTO_TCP, TCP_CONGESTION, name, (socklen_t)strlen(name)) != 0)
        return -errno;
    return 0;
}

int tcpinfo_congestion_usable(const char *name)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int rc;

    if (fd < 0)
        fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    rc = tcpinfo_set_congestion(fd, name);
    close(fd);
    return rc;
}
