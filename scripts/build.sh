#!/usr/bin/env bash
# Configures and builds Wooly into build/ (incremental).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -f build/build.ninja ]; then
  cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE="${WOOLY_BUILD_TYPE:-RelWithDebInfo}"
fi
cmake --build build -j"${WOOLY_JOBS:-$(nproc)}"
