#!/usr/bin/env bash
# The PyTorch suite: unmodified PyTorch and CUDA-runtime programs must give the
# same results through Wooly as natively, on the same GPU.
#
#   scripts/pytorch-suite.sh [DIR]   run; DIR is a build tree with woolyd, the
#                                    client library and tests/runtime/runtime_program:
#                                    .carry/build (default) or build/
#   scripts/pytorch-suite.sh --pack  on the build machine: build the runtime
#                                    program too, then pack like gpu-suite.sh --pack
#
# It starts one woolyd, then
#   1. runs tests/runtime/runtime_program natively and through Wooly and diffs stdout;
#   2. runs tests/gpu/pytorch/torch_suite.py natively, then through Wooly
#      (LD_PRELOAD=<DIR>/client/libcuda.so.1), each into its own result dir,
#      resuming after a crash while time is left;
#   3. compares the results (tests/gpu/pytorch/compare.py: bitwise, or within
#      the case's tolerance from suite_table.py)
# and prints a table ending in "N passed, M failed". Full logs go to $OUT when
# it is set (5 files: pytorch-summary.txt, torch-native.log, torch-wooly.log,
# runtime.log, woolyd.log).
#
# Exit status: 0 all passed, 1 any failure, 77 skipped (nvidia-smi -L fails, or
# python3 cannot import torch).
# Environment:
#   WOOLY_TORCH_CASES      comma-separated subset of cases (default: all)
#   WOOLY_TORCH_TIMEOUT    seconds for each torch run, resumes included (default 180;
#                          with the runtime program's limits of 60 s and 120 s the
#                          whole script stays under 10 minutes)
#   WOOLY_TORCH_CASE_TIMEOUT  seconds before one hung case is dumped and abandoned (default 120)
#   WOOLY_TORCH_COMPILE_THREADS  Inductor compile workers (default 1: in process)
#   WOOLY_TORCH_SKIP_RUNTIME=1   skip the runtime program
#   WOOLY_TORCH_CALIBRATE=1  no Wooly: run the torch suite natively twice and compare
#                          the two runs; a bitwise FAIL there marks a case that is not
#                          reproducible natively and needs a tolerance in suite_table.py
#   WOOLY_PYTHON           the python with torch (default python3)
#   WOOLY_NATIVE_LIBDIR    directory of NVIDIA's libcuda.so.1 (default
#                          /usr/local/nvidia/lib64 when it has one)
#   WOOLY_CLIENT_LOG       the client's WOOLY_LOG level (default warn)
#   WOOLYD_LOG_LEVEL       woolyd's --log-level (default info)
#   WOOLY_KEEP_TEST_DIRS=1 keep the temp dir (results, caches, logs)
#   WOOLY_SUITE_ASSUME_GPU=1  skip the GPU check (to dry-run the script)
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
ROOT=$(pwd)

# ---------------------------------------------------------------- --pack
if [ "${1:-}" = "--pack" ]; then
  if [ -z "${WOOLY_NO_BUILD:-}" ]; then
    [ -f build/build.ninja ] || ./scripts/build.sh || exit 1
    cmake --build build -j"${WOOLY_JOBS:-$(nproc)}" --target wooly_runtime_program >/dev/null || {
      echo "pack: build failed (cmake --build build --target wooly_runtime_program)"; exit 1; }
  fi
  exec ./scripts/gpu-suite.sh --pack
fi

# ---------------------------------------------------------------- setup
DIR=${1:-.carry/build}
if [ ! -d "$DIR" ]; then
  echo "FAIL: no build tree at $DIR (build, or scripts/pytorch-suite.sh --pack and carry .carry)"
  echo "0 passed, 1 failed"
  exit 1
fi
DIR=$(cd "$DIR" && pwd)
WOOLYD=$DIR/server/woolyd
CLIENT_DIR=$DIR/client
CLIENT=$CLIENT_DIR/libcuda.so.1
RUNTIME=$DIR/tests/runtime/runtime_program
LIB_DIR=
[ -d "$DIR/lib" ] && LIB_DIR=$DIR/lib
SUITE=$ROOT/tests/gpu/pytorch
PYTHON=${WOOLY_PYTHON:-python3}
TORCH_TIMEOUT=${WOOLY_TORCH_TIMEOUT:-180}
CASES=${WOOLY_TORCH_CASES:-}
CALIBRATE=${WOOLY_TORCH_CALIBRATE:-}
B=wooly  # the second run
[ -n "$CALIBRATE" ] && B=native2

if [ -z "${WOOLY_SUITE_ASSUME_GPU:-}" ]; then
  smi=$(command -v nvidia-smi || true)
  [ -z "$smi" ] && [ -x /usr/local/nvidia/bin/nvidia-smi ] && smi=/usr/local/nvidia/bin/nvidia-smi
  if [ -z "$smi" ] || ! "$smi" -L >/dev/null 2>&1; then
    echo "SKIP: no NVIDIA GPU on this machine (nvidia-smi -L failed or is missing)"
    exit 77
  fi
fi
if ! env -u LD_PRELOAD "$PYTHON" -c "import torch" >/dev/null 2>&1; then
  echo "SKIP: $PYTHON cannot import torch"
  exit 77
fi
for f in "$WOOLYD" "$CLIENT"; do
  if [ ! -e "$f" ]; then
    echo "FAIL: missing $f (build, or --pack and carry .carry)"
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

tmp=$(mktemp -d /tmp/wooly-torch.XXXXXX)
woolyd_pid=
summary=$tmp/summary.txt
: >"$summary"

cap_copy() {  # cap_copy SRC DST: copy, keeping the head and tail of a huge file
  local src=$1 dst=$2 max=$((8 << 20))
  [ -e "$src" ] || return 0
  if [ "$(stat -c %s "$src")" -gt $max ]; then
    { head -c $((max / 2)) "$src"; printf '\n...[%s truncated]...\n' "$(basename "$src")"; tail -c $((max / 2)) "$src"; } >"$dst"
  else
    cp "$src" "$dst"
  fi
}

save_logs() {  # at most 5 files under $OUT
  [ -n "${OUT:-}" ] && [ -d "${OUT:-}" ] || return 0
  local mode
  for mode in native "$B"; do
    {
      cat "$tmp/torch-$mode.out" 2>/dev/null
      echo "==================== tracebacks, warnings, faulthandler ($mode) ===================="
      cat "$tmp/torch-$mode.trace" 2>/dev/null
    } >"$tmp/torch-$mode.log"
    cap_copy "$tmp/torch-$mode.log" "$OUT/torch-$mode.log"
  done
  {
    for f in rt-native.out rt-native.err rt-wooly.out rt-wooly.err rt.diff; do
      echo "==================== $f ===================="
      cat "$tmp/$f" 2>/dev/null
    done
  } >"$tmp/runtime.log"
  cap_copy "$tmp/runtime.log" "$OUT/runtime.log"
  cap_copy "$tmp/woolyd.log" "$OUT/woolyd.log"
  { cat "$summary"; echo; echo "==================== per-key details ===================="
    cat "$tmp/compare-details.txt" 2>/dev/null; } >"$tmp/summary-full.txt"
  cap_copy "$tmp/summary-full.txt" "$OUT/pytorch-summary.txt"
}

cleanup() {
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

# ---------------------------------------------------------------- woolyd
env -u LD_PRELOAD LD_LIBRARY_PATH="$LIB_DIR" WOOLY_REAL_LIBCUDA="$real_libcuda" WOOLY_SOCKET_DIR="$tmp" \
  "$WOOLYD" --listen "unix:$tmp/woolyd.sock" --admin "unix:$tmp/admin.sock" \
  --log-level "${WOOLYD_LOG_LEVEL:-info}" --ready-file "$tmp/ready" >"$tmp/woolyd.log" 2>&1 &
woolyd_pid=$!
for _ in $(seq 300); do
  [ -e "$tmp/ready" ] && break
  kill -0 "$woolyd_pid" 2>/dev/null || break
  sleep 0.1
done
woolyd_started=1
[ -e "$tmp/ready" ] || woolyd_started=0
ENDPOINT=unix:$tmp/woolyd.sock

# The real driver for Triton's launcher stub, which links with -lcuda: a
# private dir with both names, pointing at NVIDIA's library. At run time the
# soname libcuda.so.1 is already loaded (Wooly's, through LD_PRELOAD), so the
# stub binds to Wooly. Set for both runs, so they differ only in Wooly.
triton_libcuda=${TRITON_LIBCUDA_PATH:-}
if [ -z "$triton_libcuda" ] && [ -n "$real_libcuda" ] && [ -e "$real_libcuda" ]; then
  triton_libcuda=$tmp/real-libcuda
  mkdir -p "$triton_libcuda"
  ln -s "$real_libcuda" "$triton_libcuda/libcuda.so.1"
  ln -s "$real_libcuda" "$triton_libcuda/libcuda.so"
fi

native_env() {  # native_env: prints nothing; fills ENV_ARGS for a native run
  ENV_ARGS=(env -u LD_PRELOAD -u WOOLY_SERVER)
}
wooly_env() {
  ENV_ARGS=(env LD_PRELOAD="$CLIENT" LD_LIBRARY_PATH="$CLIENT_DIR${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
            WOOLY_SERVER="$ENDPOINT" WOOLY_LOG="${WOOLY_CLIENT_LOG:-warn}" WOOLY_CLIENT_NAME=torch-suite)
}

# ---------------------------------------------------------------- header
gpu_name=$(nvidia-smi -L 2>/dev/null | head -1 | cut -d'(' -f1)
[ -n "$gpu_name" ] || gpu_name=$(/usr/local/nvidia/bin/nvidia-smi -L 2>/dev/null | head -1 | cut -d'(' -f1)
torch_version=$(env -u LD_PRELOAD "$PYTHON" -c "import torch; print(torch.__version__)" 2>/dev/null)
say "PyTorch suite $(date -u +%Y-%m-%dT%H:%MZ) on ${gpu_name:-unknown GPU}; torch ${torch_version:-?}; $DIR"

passed=0; failed=0; notes=()
row() { printf '%-32s %s\n' "$1" "$2" | tee -a "$summary"; }
pass() { row "$1" "PASS${2:+ $2}"; passed=$((passed + 1)); }
fail() { row "$1" "FAIL $2"; failed=$((failed + 1)); }

if [ $woolyd_started -eq 1 ]; then
  pass woolyd "started ($(grep -m1 -o 'serving .*' "$tmp/woolyd.log" | cut -c1-80))"
else
  fail woolyd "did not start: $(tail -3 "$tmp/woolyd.log" | tr '\n' ' ' | cut -c1-200)"
fi

# ---------------------------------------------------------------- runtime program
client_real=$(realpath "$CLIENT")
# path_check WHICH FILE: checks the libcuda paths the process reported
# (lines "libcuda: ..." / "LIBCUDA ..."); prints a reason when wrong.
path_check() {
  local which=$1 file=$2 paths p rp has_client=0 other=
  paths=$(grep -h -E '^(libcuda:|LIBCUDA(-END)?) ' "$file" 2>/dev/null | cut -d' ' -f2- | tr ' ' '\n' | sort -u)
  [ -n "$paths" ] || { echo "no libcuda report in the $which output"; return; }
  for p in $paths; do
    rp=$(realpath "$p" 2>/dev/null || echo "$p")
    if [ "$rp" = "$client_real" ]; then has_client=1; else other=$p; fi
  done
  if [ "$which" = wooly ]; then
    [ $has_client -eq 1 ] || { echo "wooly run did not load Wooly's library (got $other)"; return; }
    [ -z "$other" ] || echo "wooly run loaded another libcuda too: $other"
  else
    [ $has_client -eq 0 ] || echo "native run loaded Wooly's library"
  fi
}

path_problems=()
if [ -n "$CALIBRATE" ]; then
  row runtime_program "skipped (WOOLY_TORCH_CALIBRATE: native against native)"
elif [ -n "${WOOLY_TORCH_SKIP_RUNTIME:-}" ]; then
  row runtime_program "skipped (WOOLY_TORCH_SKIP_RUNTIME)"
elif [ ! -x "$RUNTIME" ]; then
  fail runtime_program "missing $RUNTIME (build target wooly_runtime_program needs nvcc; then --pack)"
else
  # Kernels reading mapped host memory need the same-node shared-memory
  # channel; WOOLY_SHM=0 (socket only) skips that section in both runs.
  SKIP_MAPPED=()
  [ "${WOOLY_SHM:-}" = "0" ] && SKIP_MAPPED=(WOOLY_RUNTIME_SKIP_MAPPED=1)
  native_env
  [ -n "$NATIVE_LIBDIR" ] && ENV_ARGS+=(LD_LIBRARY_PATH="$NATIVE_LIBDIR")
  ENV_ARGS+=("${SKIP_MAPPED[@]}")
  { timeout -k 5 60 "${ENV_ARGS[@]}" "$RUNTIME" >"$tmp/rt-native.out" 2>"$tmp/rt-native.err"; } 2>/dev/null
  rt_n=$?
  wooly_env
  ENV_ARGS+=("${SKIP_MAPPED[@]}")
  { timeout -k 5 120 "${ENV_ARGS[@]}" "$RUNTIME" >"$tmp/rt-wooly.out" 2>"$tmp/rt-wooly.err"; } 2>/dev/null
  rt_w=$?
  diff "$tmp/rt-native.out" "$tmp/rt-wooly.out" >"$tmp/rt.diff" 2>&1
  ndiff=$(grep -c '^[<>]' "$tmp/rt.diff")
  first_fail() { grep -m1 '^FAIL' "$1" | cut -c1-140; }
  if [ $rt_n -ne 0 ]; then
    fail runtime_program "native exit $rt_n: $(first_fail "$tmp/rt-native.out"); $(tail -c 200 "$tmp/rt-native.err" | tr '\n' ' ')"
  elif [ $rt_w -ne 0 ] || [ "$ndiff" -ne 0 ]; then
    fail runtime_program "wooly exit $rt_w, $ndiff differing lines; first: $(grep -m1 '^>' "$tmp/rt.diff" | cut -c1-140)"
    [ $rt_w -ne 0 ] && [ $rt_w -ge 124 ] && notes+=("runtime_program (wooly) stderr: $(tail -c 300 "$tmp/rt-wooly.err" | tr '\n' ' ')")
  else
    pass runtime_program "(native and wooly outputs identical, $(wc -l <"$tmp/rt-native.out") lines)"
  fi
  for which in native wooly; do
    why=$(path_check $which "$tmp/rt-$which.err")
    [ -z "$why" ] || path_problems+=("runtime_program: $why")
  done
fi

# ---------------------------------------------------------------- torch runs
case_args=()
[ -n "$CASES" ] && case_args=(--cases "$CASES")

# run_torch MODE: runs the suite into $tmp/res-MODE, resuming after a crash
# while the time budget lasts and the previous attempt made progress.
run_torch() {
  local mode=$1 res=$tmp/res-$1 out=$tmp/torch-$1.out trace=$tmp/torch-$1.trace
  local start deadline attempt=0 rc=0 left before after
  mkdir -p "$res" "$tmp/cache-$mode"
  start=$(date +%s)
  deadline=$((start + TORCH_TIMEOUT))
  : >"$out"
  case $mode in native*) native_env ;; *) wooly_env ;; esac
  ENV_ARGS+=(PYTHONUNBUFFERED=1 CUBLAS_WORKSPACE_CONFIG=:4096:8
             TORCHINDUCTOR_CACHE_DIR="$tmp/cache-$mode/inductor" TRITON_CACHE_DIR="$tmp/cache-$mode/triton"
             TORCHINDUCTOR_COMPILE_THREADS="${WOOLY_TORCH_COMPILE_THREADS:-1}")
  [ -n "$triton_libcuda" ] && ENV_ARGS+=(TRITON_LIBCUDA_PATH="$triton_libcuda")
  while :; do
    left=$((deadline - $(date +%s)))
    if [ $left -lt 10 ]; then
      echo "---- $mode: time budget (${TORCH_TIMEOUT}s) spent ----" >>"$out"
      break
    fi
    attempt=$((attempt + 1))
    before=$(cksum 2>/dev/null <"$res/status.json")
    echo "---- $mode: attempt $attempt, ${left}s left ----" >>"$out"
    # (braces + 2>/dev/null: no "Segmentation fault" notice from bash; the log has it)
    { timeout -k 10 "$left" "${ENV_ARGS[@]}" "$PYTHON" "$SUITE/torch_suite.py" "$res" --log "$trace" \
        "${case_args[@]}" >>"$out" 2>&1; } 2>/dev/null
    rc=$?
    [ $rc -eq 0 ] && break
    echo "---- $mode: attempt $attempt exited with status $rc ----" >>"$out"
    [ $rc -eq 2 ] && break  # usage error (unknown case name)
    [ $attempt -lt 8 ] || break
    after=$(cksum 2>/dev/null <"$res/status.json")
    [ "$before" != "$after" ] || break  # no case started: it dies before any case
  done
  printf -v "rc_$mode" '%s' "$rc"
  printf -v "attempts_$mode" '%s' "$attempt"
  printf -v "secs_$mode" '%s' "$(($(date +%s) - start))"
}

run_torch native
run_torch "$B"

if [ -z "$CALIBRATE" ]; then
  for which in native wooly; do
    why=$(path_check $which "$tmp/torch-$which.out")
    [ -z "$why" ] || path_problems+=("torch: $why")
  done
fi
if [ -n "$CALIBRATE" ]; then
  :
elif [ ${#path_problems[@]} -eq 0 ]; then
  pass wooly-path "(Wooly runs loaded $client_real, native runs did not)"
else
  fail wooly-path "${path_problems[0]}"
  for p in "${path_problems[@]:1}"; do notes+=("wooly-path: $p"); done
fi

# ---------------------------------------------------------------- compare
env -u LD_PRELOAD "$PYTHON" "$SUITE/compare.py" --width 32 --details "$tmp/compare-details.txt" \
  --labels "native,$B" "$tmp/res-native" "$tmp/res-$B" >"$tmp/compare.out" 2>&1
last=$(tail -1 "$tmp/compare.out")
if [[ $last =~ ^([0-9]+)\ passed,\ ([0-9]+)\ failed$ ]]; then
  sed '$d' "$tmp/compare.out" | tee -a "$summary"
  passed=$((passed + BASH_REMATCH[1])); failed=$((failed + BASH_REMATCH[2]))
else
  fail compare.py "did not finish: $(tail -3 "$tmp/compare.out" | tr '\n' ' ' | cut -c1-200)"
fi

if kill -0 "$woolyd_pid" 2>/dev/null; then
  [ $woolyd_started -eq 1 ] && pass woolyd-alive "(still serving after every run)"
elif [ $woolyd_started -eq 1 ]; then
  fail woolyd-alive "woolyd died: $(tail -2 "$tmp/woolyd.log" | tr '\n' ' ' | cut -c1-200)"
fi

# ---------------------------------------------------------------- diagnostics
run_line() {  # the torch run's exit status, attempts and time
  local mode=$1 rc_var=rc_$1 att_var=attempts_$1 secs_var=secs_$1 extra=
  local rc=${!rc_var} att=${!att_var}
  case $rc in
    0) extra="finished" ;; 124|137) extra="killed at the time limit" ;; 1) extra="exit 1 (a hung case is dumped and exits 1)" ;;
    2) extra="usage error: $(grep -m1 'unknown case' "$tmp/torch-$mode.out" | cut -c1-150)" ;;
    *) extra="exit $rc$([ "$rc" -gt 128 ] && echo " (signal $((rc - 128)))")" ;;
  esac
  say "  torch $mode run: $extra; $att attempt(s), ${!secs_var}s"
}
run_line native
run_line "$B"
for mode in native "$B"; do
  if ! grep -q '^SUITE ' "$tmp/torch-$mode.out" 2>/dev/null; then
    say "  torch $mode run never reached its first case; its last lines:"
    grep -v '^----' "$tmp/torch-$mode.out" 2>/dev/null | tail -4 | while read -r l; do say "    $(echo "$l" | cut -c1-160)"; done
  fi
done
init_err=$(grep -h -m1 '^INIT ERROR' "$tmp/torch-$B.out" 2>/dev/null | cut -c1-200)
[ -n "$init_err" ] && say "  $B: $init_err"
init_err=$(grep -h -m1 '^INIT ERROR' "$tmp/torch-native.out" 2>/dev/null | cut -c1-200)
[ -n "$init_err" ] && say "  native: $init_err"
for mode in "$B" native; do
  grep -h -E 'Fatal Python error|^Timeout \(' "$tmp/torch-$mode.trace" 2>/dev/null | head -3 |
    while read -r l; do say "  $mode trace: $(echo "$l" | cut -c1-160)"; done
done
# Wooly's client messages (unsupported calls and the like), most frequent first.
msgs=$(cat "$tmp/torch-wooly.out" "$tmp/rt-wooly.err" 2>/dev/null | grep -E '^wooly\[[0-9]+\]' |
       sed -E 's/^wooly\[[0-9]+\]:? *//' | cut -c1-150 | sort | uniq -c | sort -rn | head -12)
if [ -n "$msgs" ]; then
  say "  wooly client messages (count, text):"
  echo "$msgs" | while read -r l; do say "    $l"; done
fi
werr=$(grep -c -E '\[(error|critical)\]' "$tmp/woolyd.log" 2>/dev/null)
[ "${werr:-0}" -gt 0 ] && say "  woolyd logged $werr errors; first: $(grep -m1 -E '\[(error|critical)\]' "$tmp/woolyd.log" | cut -c1-160)"
for n in "${notes[@]}"; do say "  $n"; done
[ -n "${OUT:-}" ] && say "  full logs: \$OUT/{pytorch-summary.txt,torch-native.log,torch-$B.log,runtime.log,woolyd.log}"
say "$passed passed, $failed failed"
[ $failed -eq 0 ]
