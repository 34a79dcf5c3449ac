#!/usr/bin/env bash
# The weight dedup check of issue #6, one command on the GPU machine:
#
#   bench/dedup_check.sh DIR     DIR: a build tree or the pack .carry/build
#
# "Four processes loading the same 10 GiB of weights (random, generated from
# a fixed seed) use at most 11 GiB of device memory between them. Attaching
# weights already resident is at least 10x faster than uploading them."
#
# 1. bench/dedup_worker.py --gen builds the weights once on the CPU (bf16,
#    128 MiB matrices, fixed seed) into a file, with exact checksums.
# 2. Native (no Wooly): one process loads them into host memory and times
#    their upload (.cuda(), pageable), then checks them on the GPU.
# 3. Through Wooly (woolyd with overcommit on, tenants with WOOLY_DEDUP=1):
#    N tenants start together and load the weights into host memory; then
#    tenant 0 uploads (nothing resident yet) and tenants 1.. attach, one
#    after another. All hold their weights while the script reads device
#    memory (nvidia-smi, outside Wooly) and woolyd's own figures; then each
#    checksums its weights on the GPU against the CPU reference.
#
# Checks (exit 0 only when all pass):
#  - every checksum of every process equals the CPU reference;
#  - memory: nvidia-smi's used memory with all tenants holding their weights
#    minus its value once woolyd was up with no tenant (so woolyd's own
#    context is not counted, everything the tenants allocated is) is at most
#    WOOLY_DD_LIMIT_GIB (default 11) GiB;
#  - speed: native upload seconds / slowest attach seconds >= 10. (Wooly's
#    own first upload / attach is printed too, for information.)
#
# Environment: WOOLY_DD_TENANTS (4), WOOLY_DD_GIB (10), WOOLY_DD_LIMIT_GIB
# (11), WOOLY_DD_PERCENT (overcommit percent, 20; dedup needs overcommit on),
# WOOLY_DD_DEADLINE (seconds the Wooly phase may take before the tenants are
# stopped, 360), WOOLY_DD_DATA (directory for the weights file: /dev/shm
# when it has room, else $TMPDIR or /tmp), WOOLY_PYTHON. Logs go to $OUT.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
DIR=$(cd "${1:-build}" && pwd)
N=${WOOLY_DD_TENANTS:-4}
GIB=${WOOLY_DD_GIB:-10}
LIMIT=${WOOLY_DD_LIMIT_GIB:-11}
PCT=${WOOLY_DD_PERCENT:-20}
PY=${WOOLY_PYTHON:-python3}
W=$(pwd)/bench/dedup_worker.py
# shellcheck source=bench/gpu_env.sh
. bench/gpu_env.sh
tmp=$(mktemp -d /tmp/wooly-dd.XXXXXX)
OUTDIR=${OUT:-$tmp}
T_START=$(date +%s)

need_kib=$(awk "BEGIN{printf \"%d\", ($GIB + 1) * 1048576}")
DATA_DIR=${WOOLY_DD_DATA:-}
if [ -z "$DATA_DIR" ]; then
  DATA_DIR=${TMPDIR:-/tmp}
  shm_free=$(df -Pk /dev/shm 2>/dev/null | awk 'NR==2{print $4}')
  [ -n "$shm_free" ] && [ "$shm_free" -gt "$need_kib" ] && DATA_DIR=/dev/shm
fi
DATA=$DATA_DIR/wooly-dd-weights.$$.bin
REF=$tmp/ref.json

woolyd_pid=
watchdog=
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
  [ -n "$woolyd_pid" ] && kill -TERM "$woolyd_pid" 2>/dev/null && wait "$woolyd_pid" 2>/dev/null
  rm -f "$DATA" "$DATA.tmp"
  [ -n "${watchdog:-}" ] && kill "$watchdog" 2>/dev/null
  [ "$OUTDIR" != "$tmp" ] && cp "$tmp"/*.log "$tmp"/*.json "$tmp"/*.err "$tmp"/*.txt "$OUTDIR/" 2>/dev/null
}
trap cleanup EXIT

# Used device memory in MiB, as the driver sees it (never through Wooly).
smi_used() {
  env -u LD_PRELOAD nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits 2>/dev/null |
    head -1 | tr -d ' '
}
# Reads the node gauges of woolyd's Prometheus endpoint.
metric() {  # NAME -> value or empty
  [ -n "${METRICS:-}" ] || return 0
  "$PY" - "$METRICS" "$1" <<'PY' 2>/dev/null
import sys, urllib.request
addr, name = sys.argv[1], sys.argv[2]
for line in urllib.request.urlopen(f"http://{addr}/metrics", timeout=5).read().decode().splitlines():
    if line.startswith(name + " "):
        print(int(float(line.split()[1]))); break
PY
}
elapsed() { echo $(($(date +%s) - T_START)); }

echo "== device: $(env -u LD_PRELOAD nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null | head -1)"
echo "== generating $GIB GiB of bf16 weights (fixed seed) into $DATA"
"$PY" "$W" --gen --gib "$GIB" --data "$DATA" --ref "$REF" 2>"$tmp/gen.err" | tee "$tmp/gen.json"
[ -s "$REF" ] || { echo "generating the weights failed"; tail -20 "$tmp/gen.err"; exit 1; }

echo "== native (no Wooly): one process uploads the weights"
env -u LD_PRELOAD "$PY" "$W" --data "$DATA" --ref "$REF" --label native \
  >"$tmp/native.json" 2>"$tmp/native.err"
cat "$tmp/native.json"
[ -s "$tmp/native.json" ] || { echo "native run failed:"; tail -20 "$tmp/native.err"; }
sleep 1  # its memory is given back

echo "== through Wooly: $N tenants with WOOLY_DEDUP=1, overcommit $PCT %"
SMI_BEFORE=$(smi_used)
env -u LD_PRELOAD LD_LIBRARY_PATH="$LIB_DIR" WOOLY_REAL_LIBCUDA="$real_libcuda" \
  "$DIR/server/woolyd" --listen "unix:$tmp/woolyd.sock" --admin "unix:$tmp/admin.sock" \
  --metrics 127.0.0.1:0 --overcommit-percent "$PCT" --ready-file "$tmp/ready" \
  --log-level "${WOOLY_DD_LOG_LEVEL:-info}" \
  >"$tmp/woolyd.log" 2>&1 &
woolyd_pid=$!
for _ in $(seq 300); do [ -e "$tmp/ready" ] && break; sleep 0.1; done
[ -e "$tmp/ready" ] || { echo "woolyd did not start"; tail -30 "$tmp/woolyd.log"; exit 1; }
METRICS=$(awk '$1=="metrics"{print $2}' "$tmp/ready")
sleep 1
SMI_WOOLYD=$(smi_used)
echo "nvidia-smi used: ${SMI_BEFORE} MiB before woolyd, ${SMI_WOOLYD} MiB with woolyd up, no tenant"

sync_dir=$tmp/sync
mkdir -p "$sync_dir"
for i in $(seq 0 $((N - 1))); do
  LD_PRELOAD=$DIR/client/libcuda.so.1 WOOLY_SERVER=unix:$tmp/woolyd.sock WOOLY_DEDUP=1 \
    WOOLY_CLIENT_NAME=dd$i \
    "$PY" "$W" --data "$DATA" --ref "$REF" --index "$i" --label wooly --sync "$sync_dir" \
    >"$tmp/wooly.$i.json" 2>"$tmp/wooly.$i.err" &
  pids+=($!)
done

# Past the deadline the tenants are stopped, so that the results so far and
# woolyd's log are still printed within the caller's time limit.
# Also bounded so that the whole script ends within about 480 s.
deadline=${WOOLY_DD_DEADLINE:-360}
left_s=$((470 - $(elapsed)))
[ "$left_s" -lt 60 ] && left_s=60
[ "$deadline" -gt "$left_s" ] && deadline=$left_s
( sleep "$deadline" >/dev/null 2>&1
  echo "== deadline ($deadline s): stopping the tenants"
  kill "${pids[@]}" 2>/dev/null ) &
watchdog=$!
alive() { kill -0 "${pids[$1]}" 2>/dev/null; }
# Waits for FILE while tenant I lives; false when it died first.
await() {  # FILE I
  while [ ! -e "$1" ]; do
    alive "$2" || { [ -e "$1" ] && return 0; return 1; }
    sleep 0.02
  done
}
fail=0
for i in $(seq 0 $((N - 1))); do
  await "$sync_dir/ready.$i" "$i" || { echo "tenant $i died during setup"; fail=1; }
done
echo "tenants ready (CUDA up, weights in host memory) at $(elapsed) s"
declare -A SMI_AFTER
if [ $fail -eq 0 ]; then
  for i in $(seq 0 $((N - 1))); do
    touch "$sync_dir/go.$i"
    if ! await "$sync_dir/loaded.$i" "$i"; then
      echo "tenant $i died while loading"; fail=1; break
    fi
    SMI_AFTER[$i]=$(smi_used)
    echo "tenant $i loaded: $(cat "$sync_dir/loaded.$i"); nvidia-smi used ${SMI_AFTER[$i]} MiB"
  done
fi
# A tenant that died leaves the others waiting for their turn: stop those
# (the ones that loaded still check their weights).
if [ $fail -ne 0 ]; then
  for i in "${!pids[@]}"; do
    [ -e "$sync_dir/loaded.$i" ] || kill "${pids[$i]}" 2>/dev/null
  done
fi
SMI_ALL=$(smi_used)
PHYS_USED=$(metric wooly_memory_physical_used_bytes)
DEDUP_SAVED=$(metric wooly_memory_dedup_saved_bytes)
ADMITTED=$(metric wooly_memory_admitted_bytes)
echo "== while all tenants hold their weights: nvidia-smi used $SMI_ALL MiB;" \
  "woolyd physical used ${PHYS_USED:-?} B, admitted ${ADMITTED:-?} B, dedup saved ${DEDUP_SAVED:-?} B"
LD_LIBRARY_PATH="$LIB_DIR" "$DIR/cli/wooly-cli" status --admin "unix:$tmp/admin.sock" 2>&1 |
  tee "$tmp/status.txt"
touch "$sync_dir/check"
for i in "${!pids[@]}"; do
  wait "${pids[$i]}"; rc=$?
  [ $rc -ne 0 ] && { echo "tenant $i exited with $rc"; fail=1; }
done
kill "$watchdog" 2>/dev/null
for i in "${!pids[@]}"; do
  if [ -s "$tmp/wooly.$i.json" ]; then
    cat "$tmp/wooly.$i.json"
  else
    echo "tenant $i did not finish:"; grep -v "^  File\|^    " "$tmp/wooly.$i.err" | tail -8
  fi
done
echo "== woolyd log (warnings and errors, last 30)"
grep -E " (warn|warning|error|critical) |\[(warning|error|critical)\]|-> CUresult|dedup" \
  "$tmp/woolyd.log" | cut -c1-400 | tail -30

echo "== results (after $(elapsed) s)"
SMI_BEFORE=$SMI_BEFORE SMI_WOOLYD=$SMI_WOOLYD SMI_ALL=$SMI_ALL PHYS_USED=${PHYS_USED:-} \
DEDUP_SAVED=${DEDUP_SAVED:-} ADMITTED=${ADMITTED:-} LIMIT=$LIMIT N=$N \
  "$PY" - "$tmp" <<'PY' || fail=1
import json, os, sys
tmp = sys.argv[1]
n, limit = int(os.environ["N"]), float(os.environ["LIMIT"])
def load(path):
    try:
        with open(path) as f:
            return json.loads(f.read().strip().splitlines()[-1])
    except Exception:
        return None
def num(name):
    v = os.environ.get(name, "")
    return float(v) if v else None
GiB = 1 << 30
native = load(f"{tmp}/native.json")
ten = [load(f"{tmp}/wooly.{i}.json") or load(f"{tmp}/sync/loaded.{i}") for i in range(n)]
rows = []
def row(k, v): rows.append((k, v)); print(f"{k:<46} {v}")
nat_up = native["upload_s"] if native and "upload_s" in native else None
row("native upload s (GB/s)", f"{nat_up} ({native.get('upload_gbps')})" if nat_up else "missing")
w_up = ten[0]["upload_s"] if ten[0] and "upload_s" in ten[0] else None
row("wooly tenant 0 first upload s (GB/s)", f"{w_up} ({ten[0].get('upload_gbps')})" if w_up else "missing")
att = []
for i in range(1, n):
    t = ten[i]
    if t and "upload_s" in t:
        a = t["upload_s"]; att.append(a)
        r1 = f"{nat_up / a:.1f}x" if nat_up else "?"
        r2 = f"{w_up / a:.1f}x" if w_up else "?"
        row(f"wooly tenant {i} attach s", f"{a}  (native/attach {r1}, wooly upload/attach {r2})")
    else:
        row(f"wooly tenant {i} attach s", "missing")
before, up, allv = num("SMI_BEFORE"), num("SMI_WOOLYD"), num("SMI_ALL")
tenants_mib = allv - up if allv is not None and up is not None else None
row("nvidia-smi used MiB: before woolyd / woolyd up / all loaded",
    f"{before} / {up} / {allv}")
row("device memory of the tenants (GiB) [judged]",
    f"{tenants_mib / 1024:.3f} (nvidia-smi all loaded - woolyd up, no tenant)"
    if tenants_mib is not None else "missing")
if allv is not None and before is not None:
    row("device memory incl. woolyd's context (GiB)", f"{(allv - before) / 1024:.3f}")
pu, ds, ad = num("PHYS_USED"), num("DEDUP_SAVED"), num("ADMITTED")
row("woolyd physical used GiB", f"{pu / GiB:.3f}" if pu is not None else "missing")
row("woolyd admitted GiB", f"{ad / GiB:.3f}" if ad is not None else "missing")
row("woolyd dedup saved GiB", f"{ds / GiB:.3f}" if ds is not None else "missing")

checks = []
procs = [("native", native)] + [(f"tenant {i}", t) for i, t in enumerate(ten)]
bad = [name for name, t in procs if not t or t.get("checksums_bad", 1) != 0 or "checksums_ok" not in t]
checks.append(("all checksums equal the CPU reference", not bad, f"failing: {bad}" if bad else
               f"{len(procs)} processes x {native['count'] if native else '?'} matrices"))
all_loaded = all(t and "upload_s" in t for t in ten)
checks.append((f"tenants' device memory <= {limit:g} GiB", all_loaded and tenants_mib is not None
               and tenants_mib <= limit * 1024,
               (f"{tenants_mib / 1024:.3f} GiB" if tenants_mib is not None else "missing") +
               ("" if all_loaded else " (not all tenants loaded)")))
worst = max(att) if len(att) == n - 1 else None
ok = bool(nat_up and worst and nat_up / worst >= 10)
checks.append(("attach >= 10x faster than the native upload", ok,
               f"native {nat_up} s / slowest attach {worst} s = {nat_up / worst:.1f}x"
               if nat_up and worst else "missing"))
if w_up and worst:
    print(f"(info) wooly first upload / slowest attach = {w_up / worst:.1f}x")
for name, ok, detail in checks:
    print(f"{'PASS' if ok else 'FAIL'}  {name}: {detail}")
sys.exit(0 if all(ok for _, ok, _ in checks) else 1)
PY
[ $fail -eq 0 ] && echo "dedup check: PASS" || echo "dedup check: FAIL"
exit $fail
