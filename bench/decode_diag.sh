#!/usr/bin/env bash
# One GPU-machine command that compares warm decode natively and through
# Wooly with and without the launch pipeline, and says where the time goes:
#
#   bench/decode_diag.sh DIR [BATCH]
#
# $DIAG_MODES picks the Wooly modes (default "default pipeline"): default,
# pipeline (woolyd --launch-pipeline), socket (WOOLY_SHM=0: frames through
# the unix socket, batched like TCP) and socket-nobatch (also
# WOOLY_BATCH_US=0). Each Wooly mode takes about a minute at batch 1.
#
# For each mode it prints decode_probe.py's tokens/s (first call and warm),
# then through Wooly the client's top round trips and entry points
# (WOOLY_CLIENT_STATS=1) and, on both sides, the CPU profile per shared
# object (wooly_bench_native_count.so with WOOLY_PROF=1).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
DIR=$(cd "${1:?usage: bench/decode_diag.sh DIR [BATCH]}" && pwd)
BATCH=${2:-1}
NC=$DIR/bench/wooly_bench_native_count.so
[ -e "$NC" ] || { echo "no $NC (build target wooly_bench_native_count)"; exit 1; }
summary() {  # the lines worth reading from one run's output
  grep -E "decode_probe|command exit" "$1"
  grep "client stats" "$1" | awk '{gsub(/\(/, "", $10); print "  rpc", $7, $9, "waits", $10, "ms, posted", $13}' |
    sort -k5 -rn | head -8
  grep "api stats" "$1" | awk '{print "  api", $6, $8, "calls", $10, "ms"}' | head -12
  grep -E "prof: (pid|object)" "$1" | head -10 | sed 's/^/  /'
}
out=$(mktemp -d /tmp/wooly-decode-diag.XXXXXX)
echo "== native, batch $BATCH"
WOOLY_PROF=1 LD_PRELOAD=$NC python3 bench/decode_probe.py "$BATCH" --reps 3 >"$out/native.txt" 2>&1
summary "$out/native.txt"
for mode in ${DIAG_MODES:-default pipeline}; do
  echo "== wooly ($mode), batch $BATCH"
  pipeline= shm= batch_us=
  case $mode in
    default) ;;
    pipeline) pipeline=1 ;;
    socket) shm=0 ;;
    socket-nobatch) shm=0 batch_us=0 ;;
    *) echo "unknown mode $mode"; continue ;;
  esac
  WOOLY_LAUNCH_PIPELINE=$pipeline WOOLY_PROFILE_LOG_LEVEL=info WOOLY_CLIENT_STATS=1 WOOLY_PROF=1 \
    bench/op_profile.sh "$DIR" env LD_PRELOAD="$DIR/client/libcuda.so.1 $NC" \
    ${shm:+WOOLY_SHM=$shm} ${batch_us:+WOOLY_BATCH_US=$batch_us} \
    python3 bench/decode_probe.py "$BATCH" --reps 3 >"$out/$mode.txt" 2>&1
  summary "$out/$mode.txt"
done
[ -n "${OUT:-}" ] && cp "$out"/*.txt "$OUT/" 2>/dev/null
rm -rf "$out"
