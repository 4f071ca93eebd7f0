#!/usr/bin/env bash
# Runs every test of linkspeed: installs what the tests need, checks the formatting, builds
# with gcc and clang (warnings are errors), runs the unit tests, the black-box tests, the
# browser test and the accuracy tests on rate-limited links in network namespaces (which
# skip without root), then the unit and black-box tests again under ASan and UBSan.
#
#   scripts/test.sh                all of the above
#   SKIP_SANITIZERS=1 scripts/test.sh   without the sanitizer pass
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n=== %s\n' "$*"; }

step "installing dependencies"
scripts/install-deps.sh test
# The container's run-time stage installs these; checking them here keeps its list honest.
scripts/install-deps.sh runtime

step "checking formatting"
clang-format --dry-run --Werror src/*.c src/*/*.c src/*/*.h tools/*.c tests/unit/*.c tests/unit/*.h \
  bench/*.c

step "building with gcc"
scripts/build.sh build -DLINKSPEED_WERROR=ON -DCMAKE_C_COMPILER=gcc

step "building with clang"
scripts/build.sh build-clang -DLINKSPEED_WERROR=ON -DCMAKE_C_COMPILER=clang

step "unit tests"
ctest --test-dir build --output-on-failure

step "black-box tests"
LINKSPEED_BIN=build/linkspeed node --test --test-concurrency=1 tests/e2e/

step "browser test"
LINKSPEED_BIN=build/linkspeed node --test tests/browser/

step "accuracy tests on rate-limited links (skip unless root)"
LINKSPEED_BIN=build/linkspeed node --test --test-concurrency=1 tests/netlab/

if [ "${SKIP_SANITIZERS:-0}" != 1 ]; then
  step "building with ASan and UBSan"
  scripts/build.sh build-asan -DLINKSPEED_WERROR=ON -DLINKSPEED_SANITIZE=ON \
    -DCMAKE_BUILD_TYPE=Debug -DCMAKE_C_COMPILER=gcc
  export ASAN_OPTIONS=abort_on_error=1:detect_leaks=1
  export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1

  step "unit tests under ASan and UBSan"
  ctest --test-dir build-asan --output-on-failure

  step "black-box tests under ASan and UBSan"
  LINKSPEED_BIN=build-asan/linkspeed LINKSPEED_SLOW=1 \
    node --test --test-concurrency=1 tests/e2e/
fi

step "all tests passed"
