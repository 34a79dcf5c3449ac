#!/usr/bin/env bash
# The main job: sets up and builds Wooly if needed, then runs the sample
# driver-API program (vector add) through Wooly with `wooly-cli run`, which
# starts a local woolyd on this node's GPU when none is running.
# Set-up and build output goes to build/run-sample.log and is shown only on
# failure. On a machine without a GPU, woolyd's reason is printed in one line
# and the exit status is 1.
set -euo pipefail
cd "$(dirname "$0")/.."

cli=build/cli/wooly-cli
program=build/tests/programs/vector_add
kernels=build/tests/kernels/test_kernels.fatbin
log=build/run-sample.log

mkdir -p build
if [ ! -x "$cli" ]; then
  echo "run-sample: setting up and building Wooly (the first build takes a while; log: $log)" >&2
fi
if ! { ./scripts/setup.sh && ./scripts/build.sh; } >"$log" 2>&1; then
  echo "run-sample: set-up or build failed; the end of $log:" >&2
  tail -n 25 "$log" >&2
  exit 1
fi
for f in "$cli" "$program" "$kernels"; do
  if [ ! -e "$f" ]; then
    echo "run-sample: the build did not produce $f (see $log)" >&2
    exit 1
  fi
done

exec "$cli" run -- "$program" "$kernels"
