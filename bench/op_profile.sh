#!/usr/bin/env bash
# Where a workload's time goes in woolyd, per command, on the GPU machine:
#
#   bench/op_profile.sh DIR CMD [ARG...]
#
# Starts woolyd from DIR (a build tree or the pack .carry/build) at trace
# log level, runs CMD through Wooly (LD_PRELOAD of DIR's libcuda.so.1), and
# prints, per wire op: count, total milliseconds, median, p90 and max
# microseconds, and mean payload bytes, from woolyd's "ok in N us" trace
# lines (server time: the wait for the shared context and the driver call,
# not the transport). Logs go to $OUT when it is set. WOOLY_PROFILE_LOG_LEVEL
# (default trace) sets woolyd's level; info leaves the per-op table empty.
# WOOLY_PROFILE_WOOLYD_ARGS adds woolyd flags; WOOLY_PROFILE_WOOLYD_PRELOAD is
# LD_PRELOADed into woolyd (wooly_bench_native_count.so with WOOLY_PROF=1
# profiles woolyd's CPU time), and its "prof:" lines are printed at the end.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
DIR=$(cd "${1:?usage: bench/op_profile.sh DIR CMD...}" && pwd)
shift
# shellcheck source=bench/gpu_env.sh
. bench/gpu_env.sh
tmp=$(mktemp -d /tmp/wooly-prof.XXXXXX)
# shellcheck disable=SC2086 # WOOLY_PROFILE_WOOLYD_ARGS is a list of flags
env -u LD_PRELOAD ${WOOLY_PROFILE_WOOLYD_PRELOAD:+LD_PRELOAD=$WOOLY_PROFILE_WOOLYD_PRELOAD} \
  LD_LIBRARY_PATH="$LIB_DIR" WOOLY_REAL_LIBCUDA="$real_libcuda" \
  "$DIR/server/woolyd" ${WOOLY_PROFILE_WOOLYD_ARGS:-} --listen "unix:$tmp/woolyd.sock" --admin none --no-supervisor \
  --module-cache-dir "${WOOLY_PROFILE_CACHE_DIR:-none}" --log-level "${WOOLY_PROFILE_LOG_LEVEL:-trace}" \
  --ready-file "$tmp/ready" >"$tmp/woolyd.log" 2>&1 &
woolyd_pid=$!
for _ in $(seq 300); do [ -e "$tmp/ready" ] && break; sleep 0.1; done
[ -e "$tmp/ready" ] || { echo "woolyd did not start"; tail -20 "$tmp/woolyd.log"; exit 1; }
t0=$(date +%s%N)
LD_PRELOAD=$DIR/client/libcuda.so.1 WOOLY_SERVER=unix:$tmp/woolyd.sock "$@"
rc=$?
echo "== command exit $rc, $(( ($(date +%s%N) - t0) / 1000000 )) ms wall"
kill -TERM "$woolyd_pid" 2>/dev/null; wait "$woolyd_pid" 2>/dev/null
echo "== woolyd time per op (server side)"
awk '/ seq [0-9]+ ok in [0-9]+ us/ {
  for (i = 1; i <= NF; i++) if ($i == "seq") op = $(i - 1)
  for (i = 1; i <= NF; i++) if ($i == "in" && $(i + 2) == "us") us = $(i + 1)
  b = $(NF - 1); sub(/\(/, "", b)
  print op, us, b }' "$tmp/woolyd.log" | sort -k1,1 -k2,2n | awk '
  { if ($1 != cur) { if (cur != "") emit(); cur = $1; n = 0; tot = 0; bytes = 0 }
    v[n++] = $2; tot += $2; bytes += $3 }
  function emit() { printf "%-26s %7d %10.1f %8d %8d %8d %10d\n", cur, n, tot / 1000, v[int(n / 2)],
    v[int(n * 0.9)], v[n - 1], bytes / n }
  END { if (cur != "") emit() }' | sort -k3,3nr | (echo "op                           count   total ms   med us   p90 us   max us  mean bytes"; cat)
if [ -n "${WOOLY_PROFILE_WOOLYD_PRELOAD:-}" ]; then
  echo "== woolyd's own output from the preloaded library"
  grep -E "^(prof|native count|trace|attr|nvrtc):" "$tmp/woolyd.log" | grep -v "^trace:    "
fi
[ -n "${OUT:-}" ] && cp "$tmp/woolyd.log" "$OUT/" 2>/dev/null
rm -rf "$tmp"
exit $rc
