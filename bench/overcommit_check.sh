#!/usr/bin/env bash
# The overcommit check of issue #6, one command on the GPU machine:
#
#   bench/overcommit_check.sh DIR     DIR: a build tree or the pack .carry/build
#
# N tenants (default 3) each build G GiB (default 32) of bf16 weights from a
# fixed seed and take turns at inference through one woolyd that overcommits
# device memory (bench/overcommit_worker.py). Each tenant first runs alone
# natively, for the reference output. The check passes when every tenant
# completes and its output through Wooly equals its native output bit for
# bit. Prints the time of every turn: the first command of a turn pays for
# swapping the tenant's memory back in (and others' out).
#
# Environment: WOOLY_OC_TENANTS, WOOLY_OC_GIB, WOOLY_OC_TURNS,
# WOOLY_OC_PERCENT (overcommit percent, default 40), WOOLY_OC_IDLE (swap
# idle threshold, seconds, default 1), WOOLY_OC_DEADLINE (seconds the Wooly
# phase may take before the tenants are stopped, default 420),
# WOOLY_OC_CAPACITY (woolyd --memory-capacity, e.g. 78GiB to plan like an
# 80 GiB H100 on a larger card; default: the device's), WOOLY_PYTHON.
# Logs go to $OUT when set.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
DIR=$(cd "${1:-build}" && pwd)
N=${WOOLY_OC_TENANTS:-3}
GIB=${WOOLY_OC_GIB:-32}
TURNS=${WOOLY_OC_TURNS:-3}
PCT=${WOOLY_OC_PERCENT:-40}
IDLE=${WOOLY_OC_IDLE:-1}
PY=${WOOLY_PYTHON:-python3}
W=$(pwd)/bench/overcommit_worker.py
# shellcheck source=bench/gpu_env.sh
. bench/gpu_env.sh
tmp=$(mktemp -d /tmp/wooly-oc.XXXXXX)
OUTDIR=${OUT:-$tmp}
woolyd_pid=
cleanup() {
  [ -n "$woolyd_pid" ] && kill -TERM "$woolyd_pid" 2>/dev/null && wait "$woolyd_pid" 2>/dev/null
  [ "$OUTDIR" != "$tmp" ] && cp "$tmp"/*.log "$tmp"/*.json "$tmp"/*.err "$OUTDIR/" 2>/dev/null
  rm -f "$tmp"/*.pt
}
trap cleanup EXIT

echo "== reference: each tenant alone, natively"
for i in $(seq 0 $((N - 1))); do
  env -u LD_PRELOAD "$PY" "$W" --index "$i" --gib "$GIB" --turns 1 --out "$tmp/ref.$i.pt" \
    >"$tmp/ref.$i.json" 2>"$tmp/ref.$i.err" || { echo "reference $i failed"; cat "$tmp/ref.$i.err"; exit 1; }
  cat "$tmp/ref.$i.json"
done

echo "== through Wooly: overcommit $PCT %, swap idle threshold $IDLE s"
env -u LD_PRELOAD LD_LIBRARY_PATH="$LIB_DIR" WOOLY_REAL_LIBCUDA="$real_libcuda" \
  "$DIR/server/woolyd" --listen "unix:$tmp/woolyd.sock" --admin "unix:$tmp/admin.sock" \
  --overcommit-percent "$PCT" --swap-idle-seconds "$IDLE" --ready-file "$tmp/ready" \
  ${WOOLY_OC_CAPACITY:+--memory-capacity "$WOOLY_OC_CAPACITY"} \
  --log-level "${WOOLY_OC_LOG_LEVEL:-info}" \
  >"$tmp/woolyd.log" 2>&1 &
woolyd_pid=$!
for _ in $(seq 300); do [ -e "$tmp/ready" ] && break; sleep 0.1; done
[ -e "$tmp/ready" ] || { echo "woolyd did not start"; cat "$tmp/woolyd.log"; exit 1; }
echo "0 0" >"$tmp/token"
pids=()
for i in $(seq 0 $((N - 1))); do
  LD_PRELOAD=$DIR/client/libcuda.so.1 WOOLY_SERVER=unix:$tmp/woolyd.sock WOOLY_CLIENT_NAME=oc$i \
    "$PY" "$W" --index "$i" --tenants "$N" --gib "$GIB" --turns "$TURNS" --token "$tmp/token" \
    --pause "$(awk "BEGIN{print $IDLE + 0.5}")" --out "$tmp/wooly.$i.pt" \
    >"$tmp/wooly.$i.json" 2>"$tmp/wooly.$i.err" &
  pids+=($!)
done
fail=0
# Past the deadline the tenants are stopped, so that woolyd's log is still
# printed within the caller's time limit.
( sleep "${WOOLY_OC_DEADLINE:-420}"; echo "== deadline: stopping the tenants"
  kill "${pids[@]}" 2>/dev/null ) &
watchdog=$!
# A tenant that fails never passes the token on: stop the others then.
left=${#pids[@]}
while [ "$left" -gt 0 ]; do
  wait -n "${pids[@]}" 2>/dev/null; rc=$?
  left=0
  for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && left=$((left + 1)); done
  if [ $rc -ne 0 ] && [ $rc -ne 127 ]; then
    fail=1
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
  fi
done
kill "$watchdog" 2>/dev/null
for i in "${!pids[@]}"; do
  if [ -s "$tmp/wooly.$i.json" ]; then
    cat "$tmp/wooly.$i.json"
  else
    echo "tenant $i did not finish:"; grep -v "^  File\|^    " "$tmp/wooly.$i.err" | tail -8
  fi
done
LD_LIBRARY_PATH="$LIB_DIR" "$DIR/cli/wooly-cli" status --admin "unix:$tmp/admin.sock" 2>&1 | tee "$tmp/status.log"

echo "== woolyd: pool, swap-ins and swap copy rates"
grep -E "overcommit: [0-9]+ MiB of device memory|overcommit: client .* waited" \
  "$tmp/woolyd.log" | cut -c1-300 | tail -30
# Batches of 1 GiB and more: their copy rate (GB/s) out and in.
awk '/overcommit: swapped/ {
  for (i = 1; i <= NF; i++) { if ($i == "swapped") o = $(i + 1); if ($i == "in:") n = $(i - 2);
    if ($i == "copies") ms = $(i + 1) }
  if (o + n >= 1024) { printf "swap batch: %6d MiB out %6d MiB in, %8.1f ms, %.1f GB/s\n", o, n, ms,
    (o + n) * 1048576 / (ms / 1000) / 1e9 } }' "$tmp/woolyd.log" | tail -20
if [ $fail -ne 0 ]; then
  echo "== woolyd log (warnings and errors, last 30)"
  grep -E " (warn|error|critical) |-> CUresult|overcommit" "$tmp/woolyd.log" | cut -c1-400 | tail -30
fi
echo "== outputs against the native reference"
"$PY" - "$tmp" "$N" <<'PY' || fail=1
import sys, torch
tmp, n = sys.argv[1], int(sys.argv[2])
bad = 0
for i in range(n):
    try:
        ref, got = torch.load(f"{tmp}/ref.{i}.pt"), torch.load(f"{tmp}/wooly.{i}.pt")
    except Exception as e:
        print(f"tenant {i}: missing output ({e})"); bad += 1; continue
    same = torch.equal(ref, got)
    print(f"tenant {i}: {'equal' if same else 'DIFFERENT'} (max abs diff {(ref - got).abs().max().item():.3g})")
    bad += not same
sys.exit(1 if bad else 0)
PY
[ $fail -eq 0 ] && echo "overcommit check: PASS" || echo "overcommit check: FAIL"
exit $fail
