#!/usr/bin/env bash
# Compare linkspeed's single-connection /ws download with iperf3 -R on loopback.
#
# Each round runs iperf3 (server sends) and then bench/wsread against linkspeed
# for the same duration. The script reports the median throughput and the median
# server CPU seconds per GB sent, as a Markdown report on stdout or in --output.
# It is a closer look at the /ws row of the suite (bench/run-all.sh), with
# options to vary the fragment size, the requests in flight and the pinning.
#
# Usage: bench/run.sh [options], see --help.
# Environment: LINKSPEED_BIN (use this binary instead of building build-bench/),
# CC (C compiler for wsread, default cc), IPERF3 (default iperf3).
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
duration=10
rounds=3
payload_size=10485760
fragment_size=1048576
iperf3_length=
inflight=1
pin=auto
server_cpu=0
client_cpu=1
output=
iperf3_bin=${IPERF3:-iperf3}
cc_bin=${CC:-cc}
# The report names the command without --output, whose path is this machine's business.
command_line="bench/run.sh"
skip_next=0
for arg in "$@"; do
    if ((skip_next)); then
        skip_next=0
        continue
    fi
    case $arg in
    --output) skip_next=1 ;;
    --output=*) ;;
    *) command_line+=" $arg" ;;
    esac
done

print_usage() {
    cat <<EOF
usage: bench/run.sh [options]

Runs iperf3 -R and linkspeed /ws (read by bench/wsread) in alternation on
127.0.0.1, one TCP connection each, and prints the medians as Markdown.

options:
  --duration SECONDS      length of each run (default $duration)
  --rounds N              number of (iperf3, linkspeed) pairs (default $rounds)
  --payload-size BYTES    linkspeed --payload-size and the size wsread expects
                          (default $payload_size)
  --fragment-size BYTES   linkspeed --fragment-size (default $fragment_size)
  --iperf3-length BYTES   iperf3 -l, the size of each write and read. The
                          default is the fragment size, so that both servers
                          write the same amount per send(). 0 uses iperf3's
                          own default (128 KiB for TCP).
  --inflight N            text messages wsread keeps outstanding (default $inflight)
  --server-cpu N          CPU for both servers (default $server_cpu)
  --client-cpu N          CPU for both clients (default $client_cpu)
  --no-pin                do not pin servers and clients with taskset
  --output FILE           write the Markdown report to FILE instead of stdout
  --help                  print this help

environment:
  LINKSPEED_BIN   linkspeed binary to test. Without it the script builds
                  build-bench/ with cmake -DCMAKE_BUILD_TYPE=Release.
  CC              C compiler for bench/wsread.c (default cc)
  IPERF3          iperf3 binary (default iperf3)
EOF
}

die() {
    echo "bench/run.sh: $*" >&2
    exit 1
}

usage_error() {
    echo "bench/run.sh: $*" >&2
    echo "Run bench/run.sh --help for usage." >&2
    exit 2
}

require_integer() {
    local flag=$1 value=$2 min=$3 max=$4
    if ! [[ $value =~ ^[0-9]+$ ]] || ((10#$value < min || 10#$value > max)); then
        usage_error "invalid $flag \"$value\": expected an integer in $min..$max"
    fi
}

while (($# > 0)); do
    case $1 in
    --help | -h)
        print_usage
        exit 0
        ;;
    --no-pin)
        pin=no
        shift
        continue
        ;;
    --duration | --rounds | --payload-size | --fragment-size | --iperf3-length | --inflight | \
        --server-cpu | --client-cpu | --output)
        (($# >= 2)) || usage_error "missing value for $1"
        ;;
    *) usage_error "unknown option $1" ;;
    esac
    case $1 in
    --duration) require_integer "$1" "$2" 1 3600 && duration=$2 ;;
    --rounds) require_integer "$1" "$2" 1 100 && rounds=$2 ;;
    --payload-size) require_integer "$1" "$2" 1 1073741824 && payload_size=$2 ;;
    --fragment-size) require_integer "$1" "$2" 4096 16777216 && fragment_size=$2 ;;
    --iperf3-length) require_integer "$1" "$2" 0 134217728 && iperf3_length=$2 ;;
    --inflight) require_integer "$1" "$2" 1 16 && inflight=$2 ;;
    --server-cpu) require_integer "$1" "$2" 0 4095 && server_cpu=$2 ;;
    --client-cpu) require_integer "$1" "$2" 0 4095 && client_cpu=$2 ;;
    --output) output=$2 ;;
    esac
    shift 2
done

iperf3_length=${iperf3_length:-$fragment_size}
if ((iperf3_length > 0)); then
    iperf3_length_args=(-l "$iperf3_length")
else
    iperf3_length_args=()
fi

for tool in "$iperf3_bin" "$cc_bin" jq awk taskset; do
    command -v "$tool" >/dev/null || die "$tool not found in PATH, install it first"
done

cpu_count=$(nproc)
if [[ $pin == auto ]]; then
    if ((cpu_count >= 2 && server_cpu < cpu_count && client_cpu < cpu_count)) &&
        ((server_cpu != client_cpu)); then
        pin=yes
    else
        echo "bench/run.sh: warning: running unpinned, need two distinct CPUs below $cpu_count" >&2
        pin=no
    fi
fi
if [[ $pin == yes ]]; then
    server_prefix=(taskset -c "$server_cpu")
    client_prefix=(taskset -c "$client_cpu")
else
    server_prefix=()
    client_prefix=()
fi

work_dir=$(mktemp -d "${TMPDIR:-/tmp}/linkspeed-bench.XXXXXX")
iperf3_pid=
linkspeed_pid=

# Stops the servers this script started, by PID, and removes the work directory.
cleanup() {
    local pid
    if [[ -n $iperf3_pid ]]; then
        kill "$iperf3_pid" 2>/dev/null || true
        wait "$iperf3_pid" 2>/dev/null || true
    fi
    if [[ -n $linkspeed_pid ]]; then
        local descendants
        descendants=$(list_descendants "$linkspeed_pid")
        kill -TERM "$linkspeed_pid" 2>/dev/null || true
        for _ in $(seq 100); do
            kill -0 "$linkspeed_pid" 2>/dev/null || break
            sleep 0.1
        done
        for pid in $linkspeed_pid $descendants; do
            kill -KILL "$pid" 2>/dev/null || true
        done
        wait "$linkspeed_pid" 2>/dev/null || true
    fi
    rm -rf "$work_dir"
}
trap cleanup EXIT

# Prints the PIDs of all descendants of PID $1, found through the ppid field of
# /proc/*/stat, at most 8 generations deep.
list_descendants() {
    local parents=" $1 " found="" stat rest fields pid
    for _ in 1 2 3 4 5 6 7 8; do
        local next=""
        for stat in /proc/[0-9]*/stat; do
            read -r rest 2>/dev/null <"$stat" || continue
            pid=${rest%% *}
            rest=${rest##*) }
            read -r -a fields <<<"$rest"
            [[ $parents == *" ${fields[1]} "* ]] && next+="$pid "
        done
        [[ -z $next ]] && break
        found+="$next"
        parents=" $next"
    done
    echo "$found"
}

# Prints the CPU time in clock ticks (utime + stime + cutime + cstime) of PID $1
# and all its descendants. cutime and cstime cover children that have exited and
# were reaped, so a worker that exits between two readings still counts.
read_cpu_ticks() {
    local total=0 pid rest fields
    for pid in $1 $(list_descendants "$1"); do
        read -r rest 2>/dev/null <"/proc/$pid/stat" || continue
        rest=${rest##*) }
        read -r -a fields <<<"$rest"
        # Fields 14 to 17 of /proc/PID/stat, counted from the state field (3).
        total=$((total + fields[11] + fields[12] + fields[13] + fields[14]))
    done
    echo "$total"
}

clock_ticks_per_second=$(getconf CLK_TCK)

# ---- Build ----

if [[ -n ${LINKSPEED_BIN:-} ]]; then
    linkspeed_bin=$LINKSPEED_BIN
    [[ -x $linkspeed_bin ]] || die "LINKSPEED_BIN=$linkspeed_bin is not an executable file"
    build_description="the binary given in LINKSPEED_BIN"
else
    build_dir="$repo_root/build-bench"
    echo "Building linkspeed in $build_dir (Release)" >&2
    cmake -S "$repo_root" -B "$build_dir" -DCMAKE_BUILD_TYPE=Release >"$work_dir/cmake.log" 2>&1 ||
        { tail -n 30 "$work_dir/cmake.log" >&2; die "cmake configure failed"; }
    cmake --build "$build_dir" -j "$cpu_count" >>"$work_dir/cmake.log" 2>&1 ||
        { tail -n 30 "$work_dir/cmake.log" >&2; die "cmake build failed"; }
    linkspeed_bin="$build_dir/linkspeed"
    build_description="cmake -DCMAKE_BUILD_TYPE=Release, build-bench/linkspeed"
fi
wsread_bin="$work_dir/wsread"
"$cc_bin" -O2 -o "$wsread_bin" "$repo_root/bench/wsread.c" || die "compiling bench/wsread.c failed"

# ---- Servers ----

# Waits up to 10 s until file $1 contains a line matching ERE $2, unless PID $3 exits.
wait_for_line() {
    local file=$1 pattern=$2 pid=$3
    for _ in $(seq 100); do
        grep -Eq "$pattern" "$file" 2>/dev/null && return 0
        kill -0 "$pid" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

# iperf3 has no "any free port" option, so try random ports until one binds.
iperf3_port=
for _ in 1 2 3 4 5 6 7 8; do
    port=$((20000 + RANDOM % 40000))
    "${server_prefix[@]}" "$iperf3_bin" -s -B 127.0.0.1 -p "$port" --forceflush \
        >"$work_dir/iperf3-server.log" 2>&1 &
    iperf3_pid=$!
    if wait_for_line "$work_dir/iperf3-server.log" "Server listening on $port" "$iperf3_pid"; then
        iperf3_port=$port
        break
    fi
    kill "$iperf3_pid" 2>/dev/null || true
    wait "$iperf3_pid" 2>/dev/null || true
    iperf3_pid=
done
[[ -n $iperf3_port ]] || { cat "$work_dir/iperf3-server.log" >&2; die "iperf3 -s failed to listen on 8 random ports"; }

"${server_prefix[@]}" "$linkspeed_bin" serve --listen 127.0.0.1:0 --workers 1 \
    --payload-size "$payload_size" --fragment-size "$fragment_size" 2>"$work_dir/linkspeed.log" &
linkspeed_pid=$!
if ! wait_for_line "$work_dir/linkspeed.log" 'listening on 127\.0\.0\.1:[0-9]+' "$linkspeed_pid"; then
    tail -n 20 "$work_dir/linkspeed.log" >&2
    die "linkspeed did not log 'listening on 127.0.0.1:PORT' within 10 s"
fi
linkspeed_port=$(grep -Eo 'listening on 127\.0\.0\.1:[0-9]+' "$work_dir/linkspeed.log" | head -n 1)
linkspeed_port=${linkspeed_port##*:}
linkspeed_version=$("$linkspeed_bin" --version 2>&1 | head -n 1)

# ---- Runs ----

# Each run prints "GBIT_PER_S BYTES_SENT CPU_SECONDS CPU_SECONDS_PER_GB", tab-separated.
run_iperf3() {
    local before after json=$work_dir/iperf3-client.json
    before=$(read_cpu_ticks "$iperf3_pid")
    timeout $((duration + 30)) "${client_prefix[@]}" "$iperf3_bin" -c 127.0.0.1 \
        -p "$iperf3_port" -R -t "$duration" "${iperf3_length_args[@]}" -J >"$json" ||
        { jq -r '.error // empty' "$json" >&2; die "iperf3 client failed"; }
    after=$(read_cpu_ticks "$iperf3_pid")
    # sum_received is the client's receiver figure, sum_sent the server's bytes written.
    jq -r --argjson ticks "$((after - before))" --argjson hz "$clock_ticks_per_second" \
        '[.end.sum_received.bits_per_second / 1e9, .end.sum_sent.bytes, $ticks / $hz,
          (if .end.sum_sent.bytes > 0 then $ticks / $hz / (.end.sum_sent.bytes / 1e9) else 0 end)] | @tsv' "$json"
}

run_linkspeed() {
    local before after json=$work_dir/wsread.json
    before=$(read_cpu_ticks "$linkspeed_pid")
    timeout $((duration + 30)) "${client_prefix[@]}" "$wsread_bin" --json \
        --duration "$duration" --payload-size "$payload_size" --inflight "$inflight" \
        "ws://127.0.0.1:$linkspeed_port/ws" >"$json" ||
        { tail -n 20 "$work_dir/linkspeed.log" >&2; die "wsread against linkspeed failed"; }
    after=$(read_cpu_ticks "$linkspeed_pid")
    # total_payload_bytes includes the message in flight at the deadline, which
    # the server sent but the throughput figure does not count.
    jq -r --argjson ticks "$((after - before))" --argjson hz "$clock_ticks_per_second" \
        '[.gbit_per_s, .total_payload_bytes, $ticks / $hz,
          (if .total_payload_bytes > 0 then $ticks / $hz / (.total_payload_bytes / 1e9) else 0 end)] | @tsv' "$json"
}

# Other processes take CPU time from the servers and clients, and the run
# cannot tell, so the load average goes into the report.
load_average_start=$(cut -d' ' -f1-3 /proc/loadavg)
if awk -v load="${load_average_start%% *}" 'BEGIN { exit !(load > 0.5) }'; then
    echo "bench/run.sh: warning: 1-minute load average is ${load_average_start%% *}," \
        "other processes may distort the figures" >&2
fi

results="$work_dir/results.tsv"
: >"$results"
for round in $(seq "$rounds"); do
    echo "Round $round of $rounds: iperf3 -R, $duration s" >&2
    line=$(run_iperf3)
    printf 'iperf3\t%s\t%s\n' "$round" "$line" >>"$results"
    echo "Round $round of $rounds: linkspeed /ws, $duration s" >&2
    line=$(run_linkspeed)
    printf 'linkspeed\t%s\t%s\n' "$round" "$line" >>"$results"
done

# ---- Report ----

# Columns of $results: tool, round, Gbit/s, bytes sent, server CPU s, CPU s per GB.
# Prints the median of column $2 over the rows of tool $1.
median() {
    awk -F'\t' -v tool="$1" -v column="$2" '$1 == tool { print $column }' "$results" |
        sort -g | awk '{ v[NR] = $1 } END {
        if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# Prints "MIN-MAX" of column $2 over the rows of tool $1, with printf format $3.
value_range() {
    awk -F'\t' -v tool="$1" -v column="$2" -v format="$3" '$1 == tool {
        if (n == 0 || $column < low) low = $column
        if (n == 0 || $column > high) high = $column
        n++
    } END { printf format "-" format "\n", low, high }' "$results"
}

iperf3_gbps=$(median iperf3 3)
iperf3_cpu_per_gb=$(median iperf3 6)
linkspeed_gbps=$(median linkspeed 3)
linkspeed_cpu_per_gb=$(median linkspeed 6)

# Prints the ratio $1 / $2 and "met" or "not met": the target is a ratio of at
# least $4 when $3 is "ge", and at most $4 when $3 is "le".
compare() {
    awk -v a="$1" -v b="$2" -v op="$3" -v target="$4" 'BEGIN {
        if (b == 0) { print "n/a", "not measured"; exit }
        r = a / b
        met = (op == "ge") ? (r >= target) : (r <= target)
        printf "%.3f %s\n", r, met ? "met" : "not met"
    }'
}

# read puts the rest of the line, such as "not met", into the last variable.
read -r throughput_ratio throughput_verdict <<<"$(compare "$linkspeed_gbps" "$iperf3_gbps" ge 0.95)"
read -r cpu_ratio cpu_verdict <<<"$(compare "$linkspeed_cpu_per_gb" "$iperf3_cpu_per_gb" le 1.1)"

round_table=$(awk -F'\t' '{
    printf "| %s | %s | %.2f | %.2f | %.2f | %.3f |\n", $2, $1, $3, $4 / 1e9, $5, $6
}' "$results")

cpu_model=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
kernel=$(uname -sr)
# Debian's libwebsockets.pc reports "4.1.6-", so strip a trailing dash and add
# the version of the Debian package when dpkg-query finds it.
lws_version=$(pkg-config --modversion libwebsockets 2>/dev/null || echo unknown)
lws_version=${lws_version%-}
if lws_package=$(dpkg-query -W -f '${Version}' libwebsockets-dev 2>/dev/null); then
    lws_version+=" (Debian package $lws_package)"
fi
iperf3_version=$("$iperf3_bin" --version 2>&1 | head -n 1)
cc_version=$("$cc_bin" --version 2>&1 | head -n 1)
date_utc=$(date -u +%Y-%m-%dT%H:%MZ)
if ((iperf3_length == fragment_size)); then
    iperf3_length_note="The -l value equals linkspeed's fragment size, so both servers write
  the same amount per system call. iperf3's default for TCP is 128 KiB."
elif ((iperf3_length == 0)); then
    iperf3_length_note="iperf3 writes blocks of its default size (128 KiB for TCP), while
  linkspeed sends $fragment_size-byte fragments, so the two make different numbers
  of system calls per byte."
else
    iperf3_length_note="iperf3 writes $iperf3_length-byte blocks, while linkspeed sends
  $fragment_size-byte fragments."
fi
if [[ $pin == yes ]]; then
    pinning="Both servers run on CPU $server_cpu and both clients on CPU $client_cpu (taskset -c)."
else
    pinning="Servers and clients are not pinned."
fi

summary_table="| | iperf3 -R | linkspeed /ws | ratio (linkspeed / iperf3) | target |
|---|---|---|---|---|
| throughput, Gbit/s (median) | $(printf %.2f "$iperf3_gbps") | $(printf %.2f "$linkspeed_gbps") | $throughput_ratio | >= 0.95, $throughput_verdict |
| server CPU s per GB sent (median) | $(printf %.3f "$iperf3_cpu_per_gb") | $(printf %.3f "$linkspeed_cpu_per_gb") | $cpu_ratio | <= 1.1, $cpu_verdict |"

echo >&2
echo "$summary_table" >&2

if ((inflight == 1)); then
    inflight_note="wsread sends the next text message only after the whole previous
  message has arrived. From its last fragment until that request arrives the server
  has nothing to send, which takes as long as the client needs to read the data
  still queued in the socket buffers. That idle time counts against linkspeed's
  throughput but not its CPU per GB."
else
    inflight_note="wsread keeps $inflight text messages outstanding, so the server always
  has the next message queued."
fi
round_word=rounds
((rounds == 1)) && round_word=round

if [[ -n $output ]]; then
    mkdir -p "$(dirname "$output")"
    exec >"$output"
fi
cat <<EOF
# linkspeed /ws against iperf3 -R, one connection

Single-connection download throughput of linkspeed's \`/ws\` compared with
iperf3 on the loopback interface of one machine, written by \`bench/run.sh\`.

## Latest run

- Date: $date_utc
- Command: \`$command_line\`
- Machine: $cpu_count CPUs, $cpu_model, $kernel
- Load average before the run: $load_average_start (1, 5 and 15 minutes)
- linkspeed: $linkspeed_version, built with $build_description
- libwebsockets $lws_version, $iperf3_version
- wsread built with $cc_version, -O2

$summary_table

1 Gbit = 10^9 bit and 1 GB = 10^9 bytes. The figures are medians of $rounds $round_word.
Over the rounds, iperf3 ranged from $(value_range iperf3 3 %.2f) Gbit/s and
$(value_range iperf3 6 %.3f) CPU s per GB, and linkspeed from $(value_range linkspeed 3 %.2f) Gbit/s
and $(value_range linkspeed 6 %.3f) CPU s per GB.

### Rounds

| round | server | Gbit/s | GB sent | server CPU s | CPU s per GB |
|---|---|---|---|---|---|
$round_table

## Method

- Both tests use one TCP connection over 127.0.0.1 for $duration s, and a
  round runs iperf3 first and linkspeed second.
  $pinning
- iperf3: \`iperf3 -s\` and
  \`iperf3 -c 127.0.0.1 -R -t $duration${iperf3_length_args[*]:+ ${iperf3_length_args[*]}} -J\`,
  so the server sends. Throughput is the receiver figure
  (\`end.sum_received.bits_per_second\`).
  $iperf3_length_note
- linkspeed:
  \`linkspeed serve --listen 127.0.0.1:0 --workers 1 --payload-size $payload_size --fragment-size $fragment_size\`
  with the other flags at their defaults. One worker is enough for one
  connection, and it keeps the server on one CPU.
- The linkspeed client is \`bench/wsread\`, a libc-only WebSocket client. It
  sends a text message, reads the $payload_size-byte binary message that the
  server sends in response with 1 MiB \`recv()\` calls, checks its size, and
  counts the payload bytes received until the deadline.
  $inflight_note
- Server CPU: utime + stime + cutime + cstime from \`/proc/PID/stat\` of the
  server process and all its descendants, read before and after each client
  run. The resolution is one clock tick ($((1000 / clock_ticks_per_second)) ms).
- CPU s per GB divides the server CPU time by the bytes the server sent:
  \`end.sum_sent.bytes\` for iperf3, and for linkspeed every payload byte
  wsread received, including the rest of the message in flight at the
  deadline. The linkspeed figure leaves out WebSocket frame headers (10 bytes
  per fragment of 64 KiB or more).
- Targets: linkspeed reaches at least 0.95 of iperf3's throughput and uses at
  most 1.1 times its server CPU per GB.
EOF
if [[ -n $output ]]; then
    echo "Wrote $output" >&2
fi
