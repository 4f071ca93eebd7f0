#!/usr/bin/env bash
# Installs the build dependencies, builds linkspeed and runs the server on port 8080.
# Extra arguments go to `linkspeed serve`, for example: scripts/serve.sh --workers 2
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh build
scripts/build.sh build -DLINKSPEED_TESTS=OFF
exec build/linkspeed serve "$@"
