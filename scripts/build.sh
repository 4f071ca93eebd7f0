#!/usr/bin/env bash
# Configures and builds linkspeed with CMake.
#
#   scripts/build.sh [BUILD_DIR] [CMAKE_ARGS...]    (default BUILD_DIR: build)
# The binary is BUILD_DIR/linkspeed. The Dockerfile, the README and CI all build this way.
set -euo pipefail
cd "$(dirname "$0")/.."

build_dir=${1:-build}
shift || true
cmake -S . -B "$build_dir" -DCMAKE_BUILD_TYPE=Release "$@" >/dev/null
cmake --build "$build_dir" -j"$(nproc)"
