#!/usr/bin/env bash
# The NVML view on a real GPU: two tenants share one woolyd, and each must
# see its own slice of the GPU through pynvml, torch.cuda.mem_get_info and
# nvidia-smi (docs/nvml.md).
#
#   scripts/nvml-check.sh [DIR]   run; DIR is a build tree with woolyd, the
#                                 client library and nvml/libnvidia-ml.so.1:
#                                 .carry/build (default) or build/
#   scripts/nvml-check.sh --pack  on the build machine: build woolyd, the
#                                 client and the NVML library, then pack them
#                                 with scripts/package-device.sh into .carry/build
#
# It starts one woolyd, then two tenant processes at once (python3 with
# PyTorch and pynvml, LD_PRELOAD of Wooly's libcuda.so.1, LD_LIBRARY_PATH with
# Wooly's libnvidia-ml.so.1):
#   tenant a: WOOLY_TENANT=a WOOLY_MEMORY_LIMIT=20GiB, allocates 6 GiB
#   tenant b: WOOLY_TENANT=b WOOLY_MEMORY_LIMIT=10GiB, allocates 3 GiB
# Once both hold their memory, each runs matmuls for a while, then prints
# torch.cuda.mem_get_info() and pynvml's nvmlDeviceGetName, MemoryInfo,
# UtilizationRates and ComputeRunningProcesses; tenant a also runs nvidia-smi
# with its environment, and nvidia-smi -q with WOOLY_LOG=debug to list the
# NVML calls it makes that Wooly answers NVML_ERROR_NOT_SUPPORTED. Checks (PASS/FAIL each): a sees 20 GiB total, b 10
# GiB; each sees its own allocation as used; names carry the Wooly marker;
# the process list holds only the tenant's own pid. nvidia-smi's output is
# printed and not judged (it may need NVML calls Wooly does not answer).
#
# Exit status: 0 all passed, 1 any failure, 77 skipped (no GPU, or python3
# cannot import torch and pynvml). Full logs go to $OUT when it is set
# (nvml-check.txt, woolyd.log, tenant-a.log, tenant-b.log).
# Environment: WOOLY_PYTHON (default python3), WOOLY_NATIVE_LIBDIR (directory
# of NVIDIA's libcuda.so.1, default /usr/local/nvidia/lib64 when it has one),
# WOOLY_CLIENT_LOG (the client's WOOLY_LOG, default warn), WOOLY_KEEP_TEST_DIRS=1.
# shellcheck disable=SC2154  # T_* are assigned by eval "$(extract ...)"
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1

if [ "${1:-}" = "--pack" ]; then
  if [ -z "${WOOLY_NO_BUILD:-}" ]; then
    [ -f build/build.ninja ] || ./scripts/build.sh || exit 1
    cmake --build build -j"${WOOLY_JOBS:-$(nproc)}" --target woolyd wooly-cli wooly_client wooly_nvml \
      >/dev/null || { echo "pack: build failed (cmake --build build)"; exit 1; }
  fi
  exec ./scripts/package-device.sh
fi

DIR=${1:-.carry/build}
if [ ! -d "$DIR" ]; then
  echo "FAIL: no build tree at $DIR (build, or scripts/nvml-check.sh --pack and carry .carry)"
  echo "0 passed, 1 failed"
  exit 1
fi
DIR=$(cd "$DIR" && pwd)
WOOLYD=$DIR/server/woolyd
CLIENT_DIR=$DIR/client
CLIENT=$CLIENT_DIR/libcuda.so.1
NVML_DIR=$DIR/nvml
LIB_DIR=
[ -d "$DIR/lib" ] && LIB_DIR=$DIR/lib
PYTHON=${WOOLY_PYTHON:-python3}
GiB=$((1 << 30))

smi=$(command -v nvidia-smi || true)
[ -z "$smi" ] && [ -x /usr/local/nvidia/bin/nvidia-smi ] && smi=/usr/local/nvidia/bin/nvidia-smi
if [ -z "${WOOLY_SUITE_ASSUME_GPU:-}" ] && { [ -z "$smi" ] || ! env -u LD_PRELOAD "$smi" -L >/dev/null 2>&1; }; then
  echo "SKIP: no NVIDIA GPU on this machine (nvidia-smi -L failed or is missing)"
  exit 77
fi
if ! env -u LD_PRELOAD "$PYTHON" -c "import torch, pynvml" >/dev/null 2>&1; then
  echo "SKIP: $PYTHON cannot import torch and pynvml"
  exit 77
fi
for f in "$WOOLYD" "$CLIENT" "$NVML_DIR/libnvidia-ml.so.1"; do
  if [ ! -e "$f" ]; then
    echo "FAIL: missing $f (build, or scripts/nvml-check.sh --pack and carry .carry)"
    echo "0 passed, 1 failed"
    exit 1
  fi
done

NATIVE_LIBDIR=${WOOLY_NATIVE_LIBDIR:-}
if [ -z "$NATIVE_LIBDIR" ] && [ -e /usr/local/nvidia/lib64/libcuda.so.1 ]; then
  NATIVE_LIBDIR=/usr/local/nvidia/lib64
fi
real_libcuda=
[ -n "$NATIVE_LIBDIR" ] && real_libcuda=$NATIVE_LIBDIR/libcuda.so.1

tmp=$(mktemp -d /tmp/wooly-nvml.XXXXXX)
summary=$tmp/summary.txt
: >"$summary"
woolyd_pid=
tenant_pids=()

save_logs() {
  [ -n "${OUT:-}" ] && [ -d "${OUT:-}" ] || return 0
  cp "$summary" "$OUT/nvml-check.txt" 2>/dev/null
  for f in woolyd.log tenant-a.log tenant-b.log; do
    [ -e "$tmp/$f" ] && tail -c $((4 << 20)) "$tmp/$f" >"$OUT/$f"
  done
}
cleanup() {
  for p in "${tenant_pids[@]}"; do kill -KILL "$p" 2>/dev/null; done
  if [ -n "$woolyd_pid" ] && kill -0 "$woolyd_pid" 2>/dev/null; then
    kill -TERM "$woolyd_pid" 2>/dev/null
    for _ in $(seq 100); do kill -0 "$woolyd_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$woolyd_pid" 2>/dev/null
  fi
  save_logs
  if [ -n "${WOOLY_KEEP_TEST_DIRS:-}" ]; then echo "kept $tmp"; else rm -rf "$tmp"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say() { echo "$@" | tee -a "$summary"; }
passed=0; failed=0
row() { printf '%-44s %s\n' "$1" "$2" | tee -a "$summary"; }
pass() { row "$1" "PASS${2:+ $2}"; passed=$((passed + 1)); }
fail() { row "$1" "FAIL $2"; failed=$((failed + 1)); }
check() {  # check NAME DETAIL CONDITION...: PASS when the condition holds
  local name=$1 detail=$2; shift 2
  if "$@"; then pass "$name" "($detail)"; else fail "$name" "($detail)"; fi
}

say "NVML view check $(date -u +%Y-%m-%dT%H:%MZ); $DIR"

# ---------------------------------------------------------------- native reference
env -u LD_PRELOAD "$PYTHON" - >"$tmp/native.txt" 2>&1 <<'PY'
import pynvml
pynvml.nvmlInit()
h = pynvml.nvmlDeviceGetHandleByIndex(0)
n = pynvml.nvmlDeviceGetName(h)
m = pynvml.nvmlDeviceGetMemoryInfo(h)
print("native NVML: %s, %d devices, total %.1f GiB, used %.1f GiB, driver %s" % (
    n.decode() if isinstance(n, bytes) else n, pynvml.nvmlDeviceGetCount(),
    m.total / 2**30, m.used / 2**30, pynvml.nvmlSystemGetDriverVersion()))
PY
say "  $(tail -1 "$tmp/native.txt")"

# ---------------------------------------------------------------- woolyd
env -u LD_PRELOAD LD_LIBRARY_PATH="$LIB_DIR" WOOLY_REAL_LIBCUDA="$real_libcuda" WOOLY_SOCKET_DIR="$tmp" \
  "$WOOLYD" --listen "unix:$tmp/woolyd.sock" --admin "unix:$tmp/admin.sock" \
  --log-level "${WOOLYD_LOG_LEVEL:-info}" --metrics 127.0.0.1:0 --ready-file "$tmp/ready" \
  >"$tmp/woolyd.log" 2>&1 &
woolyd_pid=$!
for _ in $(seq 300); do
  [ -e "$tmp/ready" ] && break
  kill -0 "$woolyd_pid" 2>/dev/null || break
  sleep 0.1
done
if [ ! -e "$tmp/ready" ]; then
  fail woolyd "did not start: $(tail -3 "$tmp/woolyd.log" | tr '\n' ' ' | cut -c1-200)"
  say "$passed passed, $failed failed"
  exit 1
fi
pass woolyd "started"
ENDPOINT=unix:$tmp/woolyd.sock
METRICS=$(awk '$1 == "metrics" { print $2 }' "$tmp/ready")

# ---------------------------------------------------------------- tenants
cat >"$tmp/tenant.py" <<'PY'
import json, os, subprocess, sys, time, traceback

role, alloc_gib, sync = sys.argv[1], float(sys.argv[2]), sys.argv[3]
out = {"role": role, "pid": os.getpid(), "errors": []}

def barrier(name, timeout=180):
    open(os.path.join(sync, "%s.%s" % (name, role)), "w").close()
    deadline = time.time() + timeout
    while time.time() < deadline:
        if all(os.path.exists(os.path.join(sync, "%s.%s" % (name, r))) for r in ("a", "b")):
            return True
        time.sleep(0.1)
    return False

def attempt(key, fn):
    try:
        out[key] = fn()
    except Exception:
        out["errors"].append("%s: %s" % (key, traceback.format_exc(limit=2)))

def text(s):
    return s.decode() if isinstance(s, bytes) else s

def loaded(name):
    with open("/proc/self/maps") as f:
        return sorted({l.split()[-1] for l in f if name in l and "/" in l})

try:
    import torch
    x = torch.empty(int(alloc_gib * 2**30), dtype=torch.uint8, device="cuda")
    x.fill_(1)
    torch.cuda.synchronize()
    out["barrier_alloc"] = barrier("alloc")
    # Keep the GPU busy for a while so that the measured share is not 0.
    a = torch.randn(4096, 4096, device="cuda")
    end = time.time() + 3
    while time.time() < end:
        b = a @ a
        torch.cuda.synchronize()
    attempt("torch_mem_get_info", lambda: list(torch.cuda.mem_get_info()))
    attempt("torch_device_name", lambda: torch.cuda.get_device_name(0))

    import pynvml
    pynvml.nvmlInit()
    out["libnvidia_ml"] = loaded("libnvidia-ml")
    h = pynvml.nvmlDeviceGetHandleByIndex(0)
    attempt("nvml_count", pynvml.nvmlDeviceGetCount)
    attempt("nvml_name", lambda: text(pynvml.nvmlDeviceGetName(h)))
    attempt("nvml_uuid", lambda: text(pynvml.nvmlDeviceGetUUID(h)))
    attempt("nvml_driver", lambda: text(pynvml.nvmlSystemGetDriverVersion()))
    attempt("nvml_cc", lambda: list(pynvml.nvmlDeviceGetCudaComputeCapability(h)))
    def memory():
        m = pynvml.nvmlDeviceGetMemoryInfo(h)
        return {"total": m.total, "used": m.used, "free": m.free}
    attempt("nvml_memory", memory)
    def utilization():
        u = pynvml.nvmlDeviceGetUtilizationRates(h)
        return {"gpu": u.gpu, "memory": u.memory}
    attempt("nvml_utilization", utilization)
    attempt("nvml_processes", lambda: [[p.pid, p.usedGpuMemory]
                                       for p in pynvml.nvmlDeviceGetComputeRunningProcesses(h)])
    pynvml.nvmlShutdown()

    if role == "a":  # nvidia-smi with this tenant's environment, both tenants alive
        out["nvidia_smi"] = []
        smi = os.environ.get("NVML_CHECK_SMI") or "nvidia-smi"
        for args in ([smi], [smi, "-L"], [smi, "--query-gpu=name,memory.total,memory.used,utilization.gpu",
                             "--format=csv"], [smi, "--query-compute-apps=pid,used_memory",
                                               "--format=csv"]):
            try:
                p = subprocess.run(args, capture_output=True, text=True, timeout=60)
                out["nvidia_smi"].append({"args": args[1:], "rc": p.returncode,
                                          "stdout": p.stdout[-4000:], "stderr": p.stderr[-2000:]})
            except Exception as e:
                out["nvidia_smi"].append({"args": args[1:], "rc": None, "stderr": repr(e)})
        # Which NVML calls nvidia-smi -q makes that Wooly does not answer.
        try:
            env = dict(os.environ, WOOLY_LOG="debug")
            p = subprocess.run([smi, "-q"], capture_output=True, text=True, timeout=60, env=env)
            import re
            out["smi_unsupported"] = sorted(set(re.findall(r"nvml: (nvml\w+): not supported",
                                                           p.stderr)))
        except Exception as e:
            out["smi_unsupported"] = ["(nvidia-smi -q failed: %r)" % e]
    out["barrier_done"] = barrier("done")
    del x
except Exception:
    out["errors"].append(traceback.format_exc())
print("RESULT " + json.dumps(out), flush=True)
PY

mkdir -p "$tmp/sync"
# The tenant runs Wooly's nvidia-smi front-end (smi/) when the build has it,
# as a tenant container does; otherwise NVIDIA's, printed only.
tenant_smi=$smi
[ -x "$DIR/smi/nvidia-smi" ] && tenant_smi=$DIR/smi/nvidia-smi
run_tenant() {  # run_tenant ROLE LIMIT ALLOC_GIB
  env LD_PRELOAD="$CLIENT" LD_LIBRARY_PATH="$NVML_DIR:$CLIENT_DIR${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" \
    WOOLY_SERVER="$ENDPOINT" WOOLY_TENANT="$1" WOOLY_MEMORY_LIMIT="$2" \
    WOOLY_POD_NAME="pod-$1" WOOLY_POD_NAMESPACE=nvml-check \
    WOOLY_LOG="${WOOLY_CLIENT_LOG:-warn}" WOOLY_CLIENT_NAME="nvml-check-$1" NVML_CHECK_SMI="$tenant_smi" \
    PYTHONUNBUFFERED=1 timeout -k 5 300 "$PYTHON" "$tmp/tenant.py" "$1" "$3" "$tmp/sync" \
    >"$tmp/tenant-$1.log" 2>&1 &
  tenant_pids+=($!)
}
run_tenant a 20GiB 6
run_tenant b 10GiB 3
# Scrapes the metrics endpoint while the tenants run; keeps the last scrape
# that shows both of them holding their memory.
"$PYTHON" - "$METRICS" "$tmp/metrics.txt" "${tenant_pids[@]}" <<'PY' &
import os, sys, time, urllib.request
addr, out, pids = sys.argv[1], sys.argv[2], [int(p) for p in sys.argv[3:]]
def alive():
    return any(os.path.exists(f"/proc/{p}") for p in pids)
while alive():
    try:
        text = urllib.request.urlopen(f"http://{addr}/metrics", timeout=5).read().decode()
        held = [l for l in text.splitlines() if l.startswith("wooly_tenant_memory_allocated_bytes{")
                and 'client="nvml-check-' in l and not l.rstrip().endswith(" 0")]
        if len(held) >= 2:
            with open(out + ".tmp", "w") as f:
                f.write(text)
            os.replace(out + ".tmp", out)
    except Exception:
        pass
    time.sleep(0.5)
PY
scraper=$!
rc_a=0; rc_b=0
wait "${tenant_pids[0]}" || rc_a=$?
wait "${tenant_pids[1]}" || rc_b=$?
tenant_pids=()
wait "$scraper" 2>/dev/null

# ---------------------------------------------------------------- checks
# Turns a tenant's RESULT line into shell variables T_<key> (numbers, short
# strings) for the checks below; prints nothing when there is none.
extract() {
  grep -m1 '^RESULT ' "$tmp/tenant-$1.log" | cut -c8- | "$PYTHON" -c '
import json, shlex, sys
d = json.load(sys.stdin)
m = d.get("nvml_memory") or {}
u = d.get("nvml_utilization") or {}
t = d.get("torch_mem_get_info") or [0, 0]
procs = d.get("nvml_processes")
vals = {
    "pid": d.get("pid", 0), "count": d.get("nvml_count", -1),
    "name": d.get("nvml_name", ""), "uuid": d.get("nvml_uuid", ""),
    "driver": d.get("nvml_driver", ""), "cc": ".".join(map(str, d.get("nvml_cc", []))),
    "total": m.get("total", -1), "used": m.get("used", -1), "free": m.get("free", -1),
    "util": u.get("gpu", -1), "torch_free": t[0], "torch_total": t[1],
    "pids": " ".join(str(p[0]) for p in procs) if procs is not None else "unavailable",
    "proc_bytes": " ".join(str(p[1]) for p in procs or []),
    "lib": " ".join(d.get("libnvidia_ml", [])),
    "errors": " | ".join(e.strip().splitlines()[-1] for e in d.get("errors", []))[:300],
    "barriers": "%s/%s" % (d.get("barrier_alloc"), d.get("barrier_done")),
}
for k, v in vals.items():
    print("T_%s=%s" % (k, shlex.quote(str(v))))
' 2>/dev/null
}

within() { [ "$1" -ge "$2" ] 2>/dev/null && [ "$1" -le "$3" ]; }
nvml_real=$(realpath "$NVML_DIR")
only_ours() {  # only_ours PATHS...: every loaded libnvidia-ml is Wooly's
  [ $# -gt 0 ] || return 1
  for p in "$@"; do [ "$(dirname "$(realpath "$p" 2>/dev/null || echo "$p")")" = "$nvml_real" ] || return 1; done
}
gib() { awk -v b="$1" 'BEGIN { printf "%.2f GiB", b / 1073741824 }'; }

for spec in "a 20 6 $rc_a" "b 10 3 $rc_b"; do
  set -- $spec
  t=$1 limit=$(($2 * GiB)) alloc=$(($3 * GiB)) rc=$4
  vars=$(extract "$t")
  if [ -z "$vars" ]; then
    fail "tenant $t ran" "exit $rc, no result: $(tail -3 "$tmp/tenant-$t.log" | tr '\n' ' ' | cut -c1-300)"
    continue
  fi
  eval "$vars"
  say "tenant $t (pid $T_pid, limit $2 GiB, allocated $3 GiB): NVML '$T_name' total $(gib "$T_total")," \
      "used $(gib "$T_used"), free $(gib "$T_free"), util $T_util%, processes [$T_pids] [$T_proc_bytes]," \
      "torch mem_get_info free $(gib "$T_torch_free") total $(gib "$T_torch_total"), driver $T_driver," \
      "cc $T_cc, barriers $T_barriers"
  [ -n "$T_errors" ] && say "  errors: $T_errors"
  # shellcheck disable=SC2086  # T_lib is a list of paths
  check "tenant $t loaded Wooly's libnvidia-ml" "${T_lib:-none}" only_ours $T_lib
  check "tenant $t sees one device" "count $T_count" test "$T_count" = 1
  check "tenant $t name carries the Wooly marker" "$T_name" eval '[[ "$T_name" == *"(Wooly)" ]]'
  check "tenant $t NVML total = its limit" "$(gib "$T_total")" test "$T_total" = "$limit"
  check "tenant $t NVML used = its allocation" "$(gib "$T_used") for $(gib "$alloc")" \
    within "$T_used" "$alloc" $((alloc + GiB))
  check "tenant $t NVML free = total - used" "$(gib "$T_free")" \
    test "$T_free" -le $((T_total - T_used))
  check "tenant $t torch total = its limit" "$(gib "$T_torch_total")" test "$T_torch_total" = "$limit"
  # Both cap free at what the GPU really has left, so compare free.
  check "tenant $t torch free ~ NVML free" "$(gib "$T_torch_free") vs $(gib "$T_free")" \
    within "$T_torch_free" $((T_free - GiB / 2)) $((T_free + GiB / 2))
  check "tenant $t processes: only its own pid" "[$T_pids]" test "$T_pids" = "$T_pid"
  check "tenant $t utilization in 0..100" "$T_util%" within "$T_util" 0 100
done

# Metrics: both tenants, with their labels, in one scrape taken while they ran.
if [ -s "$tmp/metrics.txt" ]; then
  for t in a b; do
    vars=$(extract "$t"); [ -n "$vars" ] && eval "$vars"
    line=$(grep -m1 "^wooly_tenant_memory_allocated_bytes{client=\"nvml-check-$t\"" "$tmp/metrics.txt")
    check "metrics: tenant $t labels (client, pid, pod, namespace)" "${line:-no series}" \
      eval '[[ "$line" == *"pid=\"$T_pid\""*"pod=\"pod-$t\""*"namespace=\"nvml-check\""* ]]'
    bytes=${line##* }
    alloc=$([ $t = a ] && echo $((6 * GiB)) || echo $((3 * GiB)))
    check "metrics: tenant $t allocated bytes" "$(gib "${bytes%.*}")" \
      within "${bytes%.*}" "$alloc" $((alloc + GiB))
    share=$(grep -m1 "^wooly_tenant_sm_share_measured_ratio{client=\"nvml-check-$t\"" "$tmp/metrics.txt")
    check "metrics: tenant $t scheduler series carry tenant=\"$t\"" "${share:-no series}" \
      eval '[[ "$share" == *"tenant=\"$t\""* ]]'
  done
  clients=$(awk '/^wooly_clients_connected / { print $2 }' "$tmp/metrics.txt")
  check "metrics: clients connected" "${clients:-none}" test "${clients%.*}" -ge 2
  [ -n "${OUT:-}" ] && cp "$tmp/metrics.txt" "$OUT/"
else
  fail "metrics scrape with both tenants" "none recorded from http://$METRICS/metrics"
fi

# Wooly's nvidia-smi as tenant a: the CSV query shows a's view, and the
# process list a's pid only. NVIDIA's nvidia-smi is printed, not judged.
if [ "$tenant_smi" != "$smi" ]; then
  vars=$(extract a); [ -n "$vars" ] && eval "$vars"
  smi_csv=$(grep -m1 '^RESULT ' "$tmp/tenant-a.log" | cut -c8- | "$PYTHON" -c '
import json, sys
d = json.load(sys.stdin)
for r in d.get("nvidia_smi", []):
    if r["args"] and r["args"][0].startswith("--query-gpu") and r["rc"] == 0:
        print(r["stdout"].strip().splitlines()[-1])
' 2>/dev/null)
  check "nvidia-smi (Wooly's) as tenant a: name and total" "${smi_csv:-no output}" \
    eval '[[ "$smi_csv" == *"(Wooly)"*", 20480 MiB"* ]]'
  smi_apps=$(grep -m1 '^RESULT ' "$tmp/tenant-a.log" | cut -c8- | "$PYTHON" -c '
import json, sys
d = json.load(sys.stdin)
for r in d.get("nvidia_smi", []):
    if r["args"] and r["args"][0].startswith("--query-compute-apps") and r["rc"] == 0:
        print(" ".join(l.split(",")[0].strip() for l in r["stdout"].strip().splitlines()[1:]))
' 2>/dev/null)
  check "nvidia-smi (Wooly's) as tenant a: only a's pid" "[${smi_apps:-}]" test "$smi_apps" = "$T_pid"
fi
# nvidia-smi output: printed.
smi_out=$(grep -m1 '^RESULT ' "$tmp/tenant-a.log" | cut -c8- | "$PYTHON" -c '
import json, sys
d = json.load(sys.stdin)
for r in d.get("nvidia_smi", []):
    print("---- nvidia-smi %s (exit %s)" % (" ".join(r["args"]), r["rc"]))
    print(r.get("stdout", "").rstrip())
    if r.get("stderr"):
        print("stderr: " + r["stderr"].rstrip())
if "smi_unsupported" in d:
    print("---- NVML calls of nvidia-smi -q answered NOT_SUPPORTED (WOOLY_LOG=debug): %s" %
          (" ".join(d["smi_unsupported"]) or "none"))
' 2>/dev/null)
if [ -n "$smi_out" ]; then
  say "nvidia-smi as tenant a (informational):"
  printf '%s\n' "$smi_out" | sed 's/^/  /' | tee -a "$summary"
else
  say "nvidia-smi as tenant a: no output recorded"
fi

if kill -0 "$woolyd_pid" 2>/dev/null; then
  pass woolyd-alive "(still serving)"
else
  fail woolyd-alive "woolyd died: $(tail -2 "$tmp/woolyd.log" | tr '\n' ' ' | cut -c1-200)"
fi
msgs=$(cat "$tmp/tenant-a.log" "$tmp/tenant-b.log" | grep -E '^wooly\[[0-9]+\]' |
       sed -E 's/^wooly\[[0-9]+\]:? *//' | cut -c1-150 | sort | uniq -c | sort -rn | head -8)
if [ -n "$msgs" ]; then
  say "wooly client messages (count, text):"
  printf '%s\n' "$msgs" | sed 's/^/  /' | tee -a "$summary"
fi
[ -n "${OUT:-}" ] && say "full logs: \$OUT/{nvml-check.txt,woolyd.log,tenant-a.log,tenant-b.log}"
say "$passed passed, $failed failed"
[ $failed -eq 0 ]
