#!/usr/bin/env bash
# Wooly's benchmark suite: every row natively and through Wooly, over the
# unix-socket endpoint ("wooly shm": the client negotiates shared memory there
# when it can) and over gRPC on TCP loopback, all in one run. Rows run as
# separate processes, interleaved (each group runs in all modes before the next
# group, in a rotating order) so that drift hits every mode alike. Prints a
# Markdown table of the ratios (bench/report.py); see bench/README.md.
#
#   bench/run.sh [BUILD_DIR]   BUILD_DIR: build/ (default) or the pack .carry/build
#
# Exit status: 0 every row ran, 1 some row failed (the table is still printed),
# 77 no GPU here (skipped).
# Environment:
#   WOOLY_BENCH_QUICK=1       tiny sizes and counts (a smoke run, not a measurement)
#   WOOLY_BENCH_ONLY=a,b      rows named a or b or starting with a_ or b_
#                             (launch, memcpy_h2d, decode_b1, first_result, ...)
#                             swap: also bench/swap_bench.cc (VmmPhysicalMemory swap and
#                             remap vs direct driver calls; only when named here)
#   WOOLY_BENCH_SKIP_TORCH=1  driver rows only
#   WOOLY_BENCH_FAKE=1        no GPU: woolyd-fake from BUILD_DIR and the .fake module,
#                             no native or torch rows; implies WOOLY_BENCH_QUICK=1
#                             unless that is set to 0
#   WOOLY_BENCH_TIMEOUT       seconds for each benchmark process (default 300)
#   WOOLY_PYTHON              the python with torch (default python3)
#   WOOLY_NATIVE_LIBDIR       directory of NVIDIA's libcuda.so.1 (default
#                             /usr/local/nvidia/lib64 when it has one)
#   WOOLY_KEEP_TEST_DIRS=1    keep the temp dir (logs, raw results)
#   WOOLY_SUITE_ASSUME_GPU=1  skip the GPU check (to dry-run the script)
#   WOOLY_SHM, WOOLY_ASYNC    passed through to the client (0 turns the feature off)
#   OUT                       when set: bench.md, bench.jsonl and bench.log go there
set -uo pipefail

# ---------------------------------------------------------------- setup
BUILD=${1:-build}
SCRIPT_DIR=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$SCRIPT_DIR/.." && pwd)
if [ ! -d "$BUILD" ] && [ -d "$ROOT/$BUILD" ]; then BUILD=$ROOT/$BUILD; fi
if [ ! -d "$BUILD" ]; then
  echo "FAIL: no build tree at $BUILD (build, or scripts/gpu-suite.sh --pack and carry .carry)" >&2
  exit 1
fi
BUILD=$(cd "$BUILD" && pwd)
cd "$ROOT" || exit 1

FAKE=${WOOLY_BENCH_FAKE:-}
[ "$FAKE" = 0 ] && FAKE=
QUICK=${WOOLY_BENCH_QUICK:-}
[ -n "$FAKE" ] && [ -z "$QUICK" ] && QUICK=1
[ "$QUICK" = 0 ] && QUICK=
ONLY=${WOOLY_BENCH_ONLY:-}
SKIP_TORCH=${WOOLY_BENCH_SKIP_TORCH:-}
[ "$SKIP_TORCH" = 0 ] && SKIP_TORCH=
TIMEOUT=${WOOLY_BENCH_TIMEOUT:-300}
PYTHON=${WOOLY_PYTHON:-python3}

CLIENT_DIR=$BUILD/client
CLIENT=$CLIENT_DIR/libcuda.so.1
DRIVER_BENCH=$BUILD/bench/wooly_bench_driver
LIB_DIR=
[ -d "$BUILD/lib" ] && LIB_DIR=$BUILD/lib
if [ -n "$FAKE" ]; then
  SERVER=$BUILD/tests/fake/woolyd-fake
  MODULE=$BUILD/tests/kernels/test_kernels.fake
  [ -e "$MODULE" ] || MODULE=$ROOT/tests/kernels/test_kernels.fake
  MODES=(shm tcp)
else
  SERVER=$BUILD/server/woolyd
  MODULE=$BUILD/tests/kernels/test_kernels.fatbin
  MODES=(native shm tcp)
fi

if [ -z "$FAKE" ] && [ -z "${WOOLY_SUITE_ASSUME_GPU:-}" ]; then
  smi=$(command -v nvidia-smi || true)
  [ -z "$smi" ] && [ -x /usr/local/nvidia/bin/nvidia-smi ] && smi=/usr/local/nvidia/bin/nvidia-smi
  if [ ! -e /dev/nvidia0 ] || [ -z "$smi" ] || ! "$smi" -L >/dev/null 2>&1; then
    echo "SKIP: no NVIDIA GPU on this machine (WOOLY_BENCH_FAKE=1 runs on woolyd-fake)"
    exit 77
  fi
fi
for f in "$SERVER" "$CLIENT" "$DRIVER_BENCH" "$MODULE"; do
  if [ ! -e "$f" ]; then
    echo "FAIL: missing $f (build the targets in bench/README.md, or --pack and carry .carry)" >&2
    exit 1
  fi
done
missing=$(env -u LD_PRELOAD LD_LIBRARY_PATH="$LIB_DIR" ldd "$SERVER" 2>&1 | grep "not found")
if [ -n "$missing" ]; then
  echo "FAIL: $SERVER cannot load its libraries here (use the pack):" >&2
  echo "$missing" | head -5 >&2
  exit 1
fi

NATIVE_LIBDIR=${WOOLY_NATIVE_LIBDIR:-}
if [ -z "$NATIVE_LIBDIR" ] && [ -e /usr/local/nvidia/lib64/libcuda.so.1 ]; then
  NATIVE_LIBDIR=/usr/local/nvidia/lib64
fi
real_libcuda=
[ -n "$NATIVE_LIBDIR" ] && real_libcuda=$NATIVE_LIBDIR/libcuda.so.1

tmp=$(mktemp -d /tmp/wooly-bench.XXXXXX)
log=$tmp/bench.log
: >"$log"
for m in native shm tcp; do : >"$tmp/$m.jsonl"; done
notes=()
failures=0

declare -A WPID WUNIX WTCP
stop_woolyd() {  # stop_woolyd NAME: SIGTERM, bounded wait, SIGKILL
  local pid=${WPID[$1]:-}
  [ -n "$pid" ] || return 0
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null
  fi
  wait "$pid" 2>/dev/null
  WPID[$1]=
}

save_outputs() {
  [ -n "${OUT:-}" ] && [ -d "${OUT:-}" ] || return 0
  local name
  for name in "${!WPID[@]}"; do
    { echo "==== woolyd $name (last 40 lines) ===="; tail -40 "$tmp/$name/woolyd.log" 2>/dev/null; } >>"$log"
  done
  # Capped: only the end of a huge log matters.
  tail -c $((4 << 20)) "$log" >"$OUT/bench.log"
}

cleanup() {
  local name
  for name in "${!WPID[@]}"; do stop_woolyd "$name"; done
  save_outputs
  if [ -n "${WOOLY_KEEP_TEST_DIRS:-}" ]; then echo "kept $tmp" >&2; else rm -rf "$tmp"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

MODULE_CACHE=
if env -u LD_PRELOAD LD_LIBRARY_PATH="$LIB_DIR" "$SERVER" --help 2>&1 | grep -q -- '--module-cache-dir'; then
  MODULE_CACHE=1
fi

# start_woolyd NAME: a server on unix:$tmp/NAME/s.sock and an ephemeral TCP
# port, both read back from its ready file. With a module cache, an empty
# cache dir of its own. Sets WPID/WUNIX/WTCP[NAME]; returns 1 when it fails.
start_woolyd() {
  local name=$1 d=$tmp/$1 kind addr
  local extra=()
  mkdir -p "$d"
  [ -n "$MODULE_CACHE" ] && extra=(--module-cache-dir "$d/module-cache") && mkdir -p "$d/module-cache"
  # shellcheck disable=SC2206  # split on purpose: a list of flags
  [ -n "${WOOLY_BENCH_WOOLYD_ARGS:-}" ] && extra+=($WOOLY_BENCH_WOOLYD_ARGS)
  env -u LD_PRELOAD LD_LIBRARY_PATH="$LIB_DIR" WOOLY_REAL_LIBCUDA="$real_libcuda" WOOLY_SOCKET_DIR="$d" \
    "$SERVER" --listen "unix:$d/s.sock" --listen tcp:127.0.0.1:0 --admin "unix:$d/a.sock" \
    --log-level warn --ready-file "$d/ready" "${extra[@]}" >"$d/woolyd.log" 2>&1 &
  WPID[$name]=$!
  for _ in $(seq 600); do
    [ -e "$d/ready" ] && break  # written whole (renamed into place)
    kill -0 "${WPID[$name]}" 2>/dev/null || break
    sleep 0.1
  done
  WUNIX[$name]=; WTCP[$name]=
  if [ -e "$d/ready" ]; then
    while read -r kind addr; do
      [ "$kind" = listen ] || continue
      case $addr in
        tcp:*) WTCP[$name]=$addr ;;
        unix:*) WUNIX[$name]=$addr ;;
        *) WUNIX[$name]=unix:$addr ;;
      esac
    done <"$d/ready"
  fi
  if [ -z "${WUNIX[$name]}" ] || [ -z "${WTCP[$name]}" ]; then
    echo "FAIL: woolyd ($name) did not start:" >&2
    tail -5 "$d/woolyd.log" >&2
    { echo "==== woolyd $name did not start ===="; cat "$d/woolyd.log" "$d/ready" 2>/dev/null; } >>"$log"
    stop_woolyd "$name"
    return 1
  fi
  return 0
}

json_error() {  # json_error BENCH NAME TEXT: an error record for report.py
  python3 -c 'import json, sys; print(json.dumps({"bench": sys.argv[1], "name": sys.argv[2], "error": sys.argv[3]}))' "$@"
}

# run_proc MODE SERVER_NAME BENCH GROUP CMD...: one benchmark process; its JSON
# lines go to $tmp/MODE.jsonl, a failure becomes an error record for GROUP.
run_proc() {
  local mode=$1 server=$2 bench=$3 group=$4; shift 4
  local out=$tmp/proc.out err=$tmp/proc.err ep rc t0 secs why
  local env_args=(env -u LD_PRELOAD -u WOOLY_SERVER)
  case $mode in
    native) [ -n "$NATIVE_LIBDIR" ] && env_args+=(LD_LIBRARY_PATH="$NATIVE_LIBDIR${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}") ;;
    shm|tcp)
      if [ "$mode" = shm ]; then ep=${WUNIX[$server]:-}; else ep=${WTCP[$server]:-}; fi
      if [ -z "$ep" ] || ! kill -0 "${WPID[$server]:-0}" 2>/dev/null; then
        json_error "$bench" "$group" "woolyd ($server) is not running" >>"$tmp/$mode.jsonl"
        failures=$((failures + 1))
        return 1
      fi
      env_args=(env LD_PRELOAD="$CLIENT" LD_LIBRARY_PATH="$CLIENT_DIR${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
                WOOLY_SERVER="$ep" WOOLY_LOG=warn WOOLY_CLIENT_NAME="bench-$group")
      ;;
  esac
  # Compile caches (the driver's and Wooly's NVRTC cache, both under
  # CUDA_CACHE_PATH) start empty per woolyd and mode, so that first calls
  # are equally cold natively and through Wooly whatever ran before.
  mkdir -p "$tmp/compile-cache/$server-$mode"
  env_args+=(CUDA_CACHE_PATH="$tmp/compile-cache/$server-$mode")
  t0=$(date +%s.%N)
  { timeout -k 10 "$TIMEOUT" "${env_args[@]}" "$@" <"/dev/null" >"$out" 2>"$err"; } 2>/dev/null
  rc=$?
  secs=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
  grep '^{' "$out" >>"$tmp/$mode.jsonl"
  printf 'bench: %-6s %-22s %6ss  exit %d\n' "$mode" "$group" "$secs" "$rc" >&2
  if [ $rc -ne 0 ]; then
    failures=$((failures + 1))
    case $rc in
      124|137) why="timed out after ${TIMEOUT}s" ;;
      *) why="exit $rc" ;;
    esac
    why="$why: $( { grep -v '^{' "$out"; cat "$err"; } | grep -v '^\s*$' | tail -1 | cut -c1-240)"
    json_error "$bench" "$group" "$why" >>"$tmp/$mode.jsonl"
    { echo "==== $mode $group: $why ===="; tail -60 "$out"; echo "---- stderr ----"; tail -60 "$err"; } >>"$log"
  fi
  return $rc
}

# group_only GROUP: the --only value for GROUP's process, empty when
# WOOLY_BENCH_ONLY selects none of its rows.
group_only() {
  local g=$1 t out=
  if [ -z "$ONLY" ]; then echo "$g"; return; fi
  local toks
  IFS=, read -ra toks <<<"$ONLY"
  for t in "${toks[@]}"; do
    [ -n "$t" ] || continue
    if [ "$g" = "$t" ] || [[ $g == "${t}_"* ]]; then out=$g; break; fi
    [[ $t == "${g}_"* ]] && out+="${out:+,}$t"
  done
  echo "$out"
}

# modes_from I: MODES rotated by I, so that no mode always runs first.
modes_from() {
  local i=$1 n=${#MODES[@]} k
  for ((k = 0; k < n; k++)); do echo "${MODES[$(((i + k) % n))]}"; done
}

# ---------------------------------------------------------------- torch?
TORCH=1
if [ -n "$SKIP_TORCH" ]; then
  TORCH=
  notes+=("torch rows skipped (WOOLY_BENCH_SKIP_TORCH)")
elif [ -n "$FAKE" ]; then
  TORCH=
  notes+=("torch rows skipped: woolyd-fake runs no real kernels")
elif ! env -u LD_PRELOAD "$PYTHON" -c "import torch" >/dev/null 2>&1; then
  TORCH=
  notes+=("torch rows skipped: $PYTHON cannot import torch")
fi

# ---------------------------------------------------------------- header
gpu_name=; driver_version=
if [ -z "$FAKE" ]; then
  smi=$(command -v nvidia-smi || true)
  [ -z "$smi" ] && [ -x /usr/local/nvidia/bin/nvidia-smi ] && smi=/usr/local/nvidia/bin/nvidia-smi
  if [ -n "$smi" ]; then
    gpu_name=$("$smi" --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)
    driver_version=$("$smi" --query-gpu=driver_version --format=csv,noheader 2>/dev/null | head -1)
  fi
fi
date_utc=$(date -u +%Y-%m-%dT%H:%MZ)
echo "bench: $date_utc, ${gpu_name:-no GPU name}, modes ${MODES[*]}${QUICK:+, quick}; logs in $tmp" >&2

# ---------------------------------------------------------------- main rows
driver_args=(--module "$MODULE")
torch_args=()
[ -n "$QUICK" ] && driver_args+=(--quick) && torch_args+=(--quick)

DRIVER_GROUPS=(launch_async launch_sync alloc_free memcpy_h2d_pinned memcpy_d2h_pinned
               memcpy_h2d_pageable memcpy_d2h_pageable)
TORCH_GROUPS=(tiny_op matmul_bf16 train_step decode)

if [ -n "$ONLY" ]; then  # a token that selects nothing is most likely a typo
  IFS=, read -ra only_toks <<<"$ONLY"
  for t in "${only_toks[@]}"; do
    [ -n "$t" ] || continue
    hit=
    for g in "${DRIVER_GROUPS[@]}" "${TORCH_GROUPS[@]}" first_result swap; do
      [ -n "$(ONLY=$t group_only "$g")" ] && hit=1 && break
    done
    [ -n "$hit" ] || notes+=("WOOLY_BENCH_ONLY: '$t' matches no row")
  done
fi

i=0  # groups run so far: rotates the order of the modes
if start_woolyd main; then
  for g in "${DRIVER_GROUPS[@]}"; do
    only=$(group_only "$g")
    [ -n "$only" ] || continue
    while read -r mode; do
      run_proc "$mode" main driver "$g" "$DRIVER_BENCH" "${driver_args[@]}" --only "$only"
    done < <(modes_from $i)
    i=$((i + 1))
  done
  if [ -n "$TORCH" ]; then
    for g in "${TORCH_GROUPS[@]}"; do
      only=$(group_only "$g")
      [ -n "$only" ] || continue
      while read -r mode; do
        run_proc "$mode" main torch "$g" "$PYTHON" "$SCRIPT_DIR/torch_bench.py" "${torch_args[@]}" --only "$only"
      done < <(modes_from $i)
      i=$((i + 1))
    done
  fi
  if ! kill -0 "${WPID[main]}" 2>/dev/null; then
    failures=$((failures + 1))
    notes+=("woolyd died during the run: $(tail -2 "$tmp/main/woolyd.log" | tr '\n' ' ' | cut -c1-200)")
  fi
  stop_woolyd main
else
  failures=$((failures + 1))
  notes+=("woolyd did not start: $(tail -2 "$tmp/main/woolyd.log" | tr '\n' ' ' | cut -c1-200)")
fi

# ---------------------------------------------------------------- first result
# Cold: a fresh woolyd (per transport) with an empty module cache; warm: the
# next process on the same woolyd. Natively: the first and second process.
if [ -n "$TORCH" ] && [ -n "$(group_only first_result)" ]; then
  [ -n "$MODULE_CACHE" ] || notes+=("first_result: (no module cache in this build): woolyd --help has no --module-cache-dir, so cold and warm differ only in being the first or second process on a fresh woolyd")
  for m in "${MODES[@]}"; do
    [ "$m" = native ] || start_woolyd "first-$m" || failures=$((failures + 1))
  done
  for label in cold warm; do
    while read -r mode; do
      run_proc "$mode" "first-$mode" torch first_result \
        "$PYTHON" "$SCRIPT_DIR/torch_bench.py" --first-result "$label"
    done < <(modes_from $i)
    i=$((i + 1))
  done
  for m in "${MODES[@]}"; do [ "$m" = native ] || stop_woolyd "first-$m"; done
fi

# ---------------------------------------------------------------- swap
# VmmPhysicalMemory's swap bandwidth and remap time against direct driver
# calls, all in one process on the real backend (bench/swap_bench.cc, issue
# #6); with WOOLY_BENCH_FAKE on the fake backend. Only when WOOLY_BENCH_ONLY
# names it (swap): it takes ~25 GiB of device memory. Its own table is
# printed after the main one.
SWAP_OUT=
if [ -n "$ONLY" ] && [ -n "$(group_only swap)" ]; then
  SWAP_BENCH=$BUILD/bench/wooly_bench_swap
  SWAP_OUT=$tmp/swap.out
  swap_args=()
  [ -n "$FAKE" ] && swap_args+=(--fake)
  [ -n "$QUICK" ] && [ -z "$FAKE" ] && swap_args+=(--size-mib 256 --remap-gib 1 --reps 2)
  if [ ! -x "$SWAP_BENCH" ]; then
    failures=$((failures + 1))
    notes+=("swap: missing $SWAP_BENCH (build wooly_bench_swap, or --pack again)")
    SWAP_OUT=
  else
    t0=$(date +%s.%N)
    env -u LD_PRELOAD LD_LIBRARY_PATH="$LIB_DIR" WOOLY_REAL_LIBCUDA="$real_libcuda" \
      timeout -k 10 "$TIMEOUT" "$SWAP_BENCH" "${swap_args[@]}" </dev/null >"$SWAP_OUT" 2>>"$log"
    rc=$?
    secs=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
    printf 'bench: %-6s %-22s %6ss  exit %d\n' vmm swap "$secs" "$rc" >&2
    if [ $rc -ne 0 ]; then
      failures=$((failures + 1))
      notes+=("swap: wooly_bench_swap exit $rc: $(grep -v '^{' "$SWAP_OUT" | grep -v '^\s*$' | tail -1 | cut -c1-200)")
      { echo "==== swap: exit $rc ===="; tail -60 "$SWAP_OUT"; } >>"$log"
    fi
  fi
fi

# ---------------------------------------------------------------- report
run_kind=full
[ -n "$QUICK" ] && run_kind="quick (tiny sizes: not a measurement)"
[ -n "$FAKE" ] && [ -z "$gpu_name" ] && gpu_name="none (woolyd-fake)"
meta=(--meta "date (UTC)=$date_utc"
      --meta "GPU=${gpu_name:-unknown}"
      --meta "NVIDIA driver=${driver_version:-unknown}"
      --meta "build=$BUILD"
      --meta "run=$run_kind${ONLY:+, only $ONLY}")
[ -n "$FAKE" ] && meta+=(--meta "backend=woolyd-fake (WOOLY_BENCH_FAKE): no native rows")
[ -n "${WOOLY_SHM:-}" ] && meta+=(--meta "WOOLY_SHM=$WOOLY_SHM")
[ -n "${WOOLY_ASYNC:-}" ] && meta+=(--meta "WOOLY_ASYNC=$WOOLY_ASYNC")
note_args=()
for n in "${notes[@]}"; do note_args+=(--note "$n"); done
[ $failures -gt 0 ] && note_args+=(--note "$failures benchmark process(es) failed; details in ${OUT:+\$OUT/}bench.log")
out_args=()
if [ -n "${OUT:-}" ]; then
  mkdir -p "$OUT"
  out_args=(--md-out "$OUT/bench.md" --jsonl-out "$OUT/bench.jsonl")
fi
if ! python3 "$SCRIPT_DIR/report.py" --native "$tmp/native.jsonl" --shm "$tmp/shm.jsonl" \
       --tcp "$tmp/tcp.jsonl" "${meta[@]}" "${note_args[@]}" "${out_args[@]}"; then
  echo "FAIL: report.py failed" >&2
  exit 1
fi
if [ -n "$SWAP_OUT" ] && [ -s "$SWAP_OUT" ]; then
  grep -v '^{' "$SWAP_OUT" | grep -v '^bench done$'
  if [ -n "${OUT:-}" ]; then
    grep -v '^{' "$SWAP_OUT" | grep -v '^bench done$' >"$OUT/swap.md"
    grep '^{' "$SWAP_OUT" >"$OUT/swap.jsonl"
  fi
fi
[ $failures -eq 0 ]
