#!/usr/bin/env bash
# Run every benchmark and write docs/benchmarks.md: the /ws section of
# bench/run.sh first, then the page in Chromium (bench/page.mjs) and ndt7
# against iperf3 (bench/ndt7.mjs).
#
# Usage: bench/run-all.sh [--rounds N] [--output FILE]
# Environment: LINKSPEED_BIN is the binary to test. Without it, bench/run.sh
# builds build-bench/ and the other parts use that binary. CHROMIUM defaults to
# /usr/bin/chromium. IPERF3 and CC are as in bench/run.sh.
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
rounds=3
output="$repo_root/docs/benchmarks.md"

while (($# > 0)); do
    case $1 in
    --help | -h)
        sed -n '2,9p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
        exit 0
        ;;
    --rounds)
        (($# >= 2)) || { echo "bench/run-all.sh: missing value for --rounds" >&2; exit 2; }
        [[ $2 =~ ^[0-9]+$ ]] && ((10#$2 >= 1 && 10#$2 <= 20)) ||
            { echo "bench/run-all.sh: invalid --rounds \"$2\": expected an integer in 1..20" >&2; exit 2; }
        rounds=$2
        shift 2
        ;;
    --output)
        (($# >= 2)) || { echo "bench/run-all.sh: missing value for --output" >&2; exit 2; }
        output=$2
        shift 2
        ;;
    *)
        echo "bench/run-all.sh: unknown option $1; run bench/run-all.sh --help for usage" >&2
        exit 2
        ;;
    esac
done

for tool in node "${CHROMIUM:-/usr/bin/chromium}"; do
    command -v "$tool" >/dev/null || { echo "bench/run-all.sh: $tool not found, install it first" >&2; exit 1; }
done
[[ -d $repo_root/node_modules/@m-lab/ndt7 ]] ||
    { echo "bench/run-all.sh: node_modules/@m-lab/ndt7 is missing, run npm ci in $repo_root" >&2; exit 1; }

work_dir=$(mktemp -d "${TMPDIR:-/tmp}/linkspeed-run-all.XXXXXX")
trap 'rm -rf "$work_dir"' EXIT

"$repo_root/bench/run.sh" --rounds "$rounds" --output "$work_dir/ws.md"
linkspeed_bin=${LINKSPEED_BIN:-$repo_root/build-bench/linkspeed}
node "$repo_root/bench/page.mjs" --bin "$linkspeed_bin" --rounds "$rounds" \
    --chromium "${CHROMIUM:-/usr/bin/chromium}" --output "$work_dir/page.md"
node "$repo_root/bench/ndt7.mjs" --bin "$linkspeed_bin" --rounds "$rounds" \
    --iperf3 "${IPERF3:-iperf3}" --output "$work_dir/ndt7.md"

mkdir -p "$(dirname "$output")"
{
    cat "$work_dir/ws.md"
    printf '\n'
    cat "$work_dir/page.md"
    printf '\n'
    cat "$work_dir/ndt7.md"
} >"$output"
echo "Wrote $output" >&2
