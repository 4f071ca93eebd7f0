#!/usr/bin/env bash
# Runs every benchmark on loopback in one run, each part for a fixed time, and writes
# docs/benchmarks.md with the machine description. The parts are bench/suite.mjs
# (linkspeed against iperf3, nginx and a Node.js ws server, with memory and fairness),
# bench/page.mjs (the page in Chromium) and bench/ndt7.mjs (M-Lab's JavaScript ndt7 client).
#
# Usage: bench/run-all.sh [--rounds N] [--duration SECONDS] [--output FILE]
#   --rounds N          rounds of every part; figures are medians (default 1, 1 to 20)
#   --duration SECONDS  length of each timed part (default 10, 2 to 30); ndt7 is always 10 s
#   --output FILE       report to write (default docs/benchmarks.md)
# Environment: LINKSPEED_BIN is the binary to test; without it the script builds
# build-bench/ (Release). CHROMIUM (default /usr/bin/chromium), IPERF3, NGINX and CC
# name the other programs. scripts/install-deps.sh bench installs them.
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
rounds=1
duration=10
output="$repo_root/docs/benchmarks.md"
chromium=${CHROMIUM:-/usr/bin/chromium}
iperf3_bin=${IPERF3:-iperf3}
nginx_bin=${NGINX:-/usr/sbin/nginx}
cc_bin=${CC:-cc}
# The suite keeps 1000 idle WebSocket connections open in one client process.
open_files_needed=4096

die() {
    echo "bench/run-all.sh: $*" >&2
    exit 1
}

usage_error() {
    echo "bench/run-all.sh: $*; run bench/run-all.sh --help for usage" >&2
    exit 2
}

while (($# > 0)); do
    case $1 in
    --help | -h)
        sed -n '2,13p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
        exit 0
        ;;
    --rounds | --duration | --output)
        (($# >= 2)) || usage_error "missing value for $1"
        ;;
    *) usage_error "unknown option $1" ;;
    esac
    case $1 in
    --rounds)
        [[ $2 =~ ^[0-9]+$ ]] && ((10#$2 >= 1 && 10#$2 <= 20)) ||
            usage_error "invalid --rounds \"$2\": expected an integer in 1..20"
        rounds=$((10#$2))
        ;;
    --duration)
        # page.mjs takes 2 to 30 s, the page's own range.
        [[ $2 =~ ^[0-9]+$ ]] && ((10#$2 >= 2 && 10#$2 <= 30)) ||
            usage_error "invalid --duration \"$2\": expected whole seconds in 2..30"
        duration=$((10#$2))
        ;;
    --output) output=$2 ;;
    esac
    shift 2
done

for tool in node "$chromium" "$iperf3_bin" "$nginx_bin" "$cc_bin" pkg-config taskset cmake; do
    command -v "$tool" >/dev/null ||
        die "$tool not found, install it first (scripts/install-deps.sh bench)"
done
pkg-config --exists libcurl || die "libcurl's development files are missing (scripts/install-deps.sh bench)"
for module in ws @m-lab/ndt7 web-worker; do
    [[ -d $repo_root/node_modules/$module ]] ||
        die "node_modules/$module is missing, run npm ci in the repository (scripts/install-deps.sh bench)"
done

if (($(ulimit -n) < open_files_needed)); then
    ulimit -n "$open_files_needed" 2>/dev/null ||
        die "cannot raise the open file limit to $open_files_needed (hard limit $(ulimit -Hn)), needed for 1000 idle clients"
fi

work_dir=$(mktemp -d "${TMPDIR:-/tmp}/linkspeed-run-all.XXXXXX")
trap 'rm -rf "$work_dir"' EXIT

if [[ -n ${LINKSPEED_BIN:-} ]]; then
    linkspeed_bin=$LINKSPEED_BIN
    [[ -x $linkspeed_bin ]] || die "LINKSPEED_BIN=$linkspeed_bin is not an executable file"
    build_description="the binary given in LINKSPEED_BIN"
else
    echo "Building linkspeed in build-bench/ (Release)" >&2
    "$repo_root/scripts/build.sh" "$repo_root/build-bench" >"$work_dir/build.log" 2>&1 ||
        { tail -n 30 "$work_dir/build.log" >&2; die "building build-bench/ failed"; }
    linkspeed_bin=$repo_root/build-bench/linkspeed
    build_description="scripts/build.sh build-bench (CMake Release)"
fi

date_utc=$(date -u +%Y-%m-%dT%H:%MZ)
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
started_s=$SECONDS

# A failed part is reported in its section and the others still run. The script then exits 1.
failed_parts=()
node "$repo_root/bench/suite.mjs" --bin "$linkspeed_bin" --rounds "$rounds" --duration "$duration" \
    --iperf3 "$iperf3_bin" --nginx "$nginx_bin" --cc "$cc_bin" --output "$work_dir/suite.md" \
    >"$work_dir/summary.txt" || failed_parts+=(bench/suite.mjs)
node "$repo_root/bench/page.mjs" --bin "$linkspeed_bin" --rounds "$rounds" --duration "$duration" \
    --chromium "$chromium" --output "$work_dir/page.md" ||
    failed_parts+=(bench/page.mjs)
node "$repo_root/bench/ndt7.mjs" --bin "$linkspeed_bin" --rounds "$rounds" \
    --iperf3 "$iperf3_bin" --cc "$cc_bin" --output "$work_dir/ndt7.md" ||
    failed_parts+=(bench/ndt7.mjs)

load_end=$(cut -d' ' -f1-3 /proc/loadavg)
elapsed_min=$(((SECONDS - started_s + 30) / 60))

# Prints the first line of a command's standard output, or "unknown" when the command
# fails. Standard error is left out: Debian's chromium wrapper writes a shell warning there.
first_line() {
    local text
    text=$("$@" 2>/dev/null) || { echo unknown; return; }
    echo "${text%%$'\n'*}"
}

cpu_model=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
node_package_version() {
    node -p "require('$repo_root/node_modules/$1/package.json').version" 2>/dev/null || echo unknown
}
lws_version=$(pkg-config --modversion libwebsockets 2>/dev/null || echo unknown)
# nginx -v writes its version to standard error.
nginx_version=$("$nginx_bin" -v 2>&1 | head -n 1)

command_line="bench/run-all.sh --rounds $rounds --duration $duration"
mkdir -p "$(dirname "$output")"
{
    cat <<EOF
# Benchmarks

linkspeed against iperf3, nginx and a Node.js WebSocket server, and its page in
Chromium, on the loopback interface of one machine. \`bench/run-all.sh\` writes this
page: rerun it instead of editing the figures. Loopback has no link limit, so these
figures show how much CPU each server needs per byte and where it stops, not what a
network delivers. The machine may have been shared with other work during the run; the
load average says how much.

- Date: $date_utc, about $elapsed_min minutes
- Command: \`$command_line\`
- Machine: $cpu_model, $(nproc) cores, $(uname -sr)
- Load average (1, 5 and 15 minutes): $load_start at the start, $load_end at the end
- linkspeed: $(first_line "$linkspeed_bin" --version), built with $build_description, libwebsockets ${lws_version%-}
- $(first_line "$iperf3_bin" --version)
- $nginx_version
- Node.js $(node --version), ws $(node_package_version ws), @m-lab/ndt7 $(node_package_version @m-lab/ndt7)
- $(first_line "$chromium" --version)
- libcurl $(pkg-config --modversion libcurl) and $(first_line "$cc_bin" --version) for the C clients
EOF
    if ((${#failed_parts[@]} > 0)); then
        printf '\nFailed in this run: %s (see their sections and the rounds tables).\n' "${failed_parts[*]}"
    fi
    for part in suite page ndt7; do
        if [[ -s $work_dir/$part.md ]]; then
            printf '\n'
            cat "$work_dir/$part.md"
        fi
    done
} >"$output"
cat "$work_dir/summary.txt"
echo "Wrote $output" >&2
if ((${#failed_parts[@]} > 0)); then
    die "failed: ${failed_parts[*]}"
fi
