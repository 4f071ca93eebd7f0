#!/usr/bin/env bash
# Installs what linkspeed needs on Debian 12, and only what is missing. Idempotent.
#
#   scripts/install-deps.sh build     compiler and libraries to build the server
#   scripts/install-deps.sh runtime   shared libraries the binary needs to run
#   scripts/install-deps.sh test      build + cmocka, chromium, clang, Node test tools (npm ci)
#   scripts/install-deps.sh bench     test + iperf3 and nginx, the benchmark's reference servers
set -euo pipefail
cd "$(dirname "$0")/.."

runtime_packages=(libwebsockets17 libjansson4 libcurl4 ca-certificates)
build_packages=(build-essential cmake pkg-config libwebsockets-dev libjansson-dev
                libcurl4-openssl-dev libssl-dev)
test_packages=(libcmocka-dev clang clang-format chromium curl openssl iproute2 iperf3)
bench_packages=(iperf3 nginx)

mode=${1:-build}
case "$mode" in
  runtime) wanted=("${runtime_packages[@]}") ;;
  build) wanted=("${build_packages[@]}") ;;
  test) wanted=("${build_packages[@]}" "${test_packages[@]}") ;;
  bench) wanted=("${build_packages[@]}" "${test_packages[@]}" "${bench_packages[@]}") ;;
  *) echo "usage: $0 [runtime|build|test|bench]" >&2; exit 2 ;;
esac

missing=()
for package in "${wanted[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$package")
  fi
done
if [ "$mode" != runtime ] && [ "$mode" != build ]; then
  # Node and npm may come from outside Debian (they do on the project's machines), so they
  # are installed only when the commands are missing.
  command -v node >/dev/null || missing+=(nodejs)
  command -v npm >/dev/null || missing+=(npm)
fi

if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  echo "install-deps: installing ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
fi

if [ "$mode" = test ] || [ "$mode" = bench ]; then
  # npm ci only when the lockfile changed since the last install.
  stamp=node_modules/.linkspeed-lock-hash
  hash=$(sha256sum package-lock.json | cut -d' ' -f1)
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$hash" ]; then
    npm ci --no-audit --no-fund --loglevel=error
    echo "$hash" > "$stamp"
  fi
fi
