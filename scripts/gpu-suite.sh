#!/usr/bin/env bash
# The GPU suite: every driver-API test program (tests/programs/) runs natively
# on the real driver and through Wooly (libcuda.so.1 from the build, talking
# to a real woolyd), with the nvcc-built fatbin and cubin; the two outputs
# must both end in PASS and be identical line for line.
#
#   scripts/gpu-suite.sh [DIR]   run; DIR is a build tree: build/ (default) or
#                                the pack .carry/build (libraries in DIR/lib)
#   scripts/gpu-suite.sh --pack  on the build machine: build what the suite
#                                needs, pack it with scripts/package-device.sh
#                                into .carry/build, and add gpu_backend_test
#
# Running needs no cmake, compiler or gRPC packages: only the prebuilt binaries.
# Exit status: 0 all passed, 1 any failure, 77 no GPU here (skipped).
# Environment: WOOLY_NATIVE_LIBDIR (directory of the real libcuda.so.1,
# default /usr/local/nvidia/lib64 when it has one, else the system's),
# WOOLY_GPU_MEMCPY_MAX (default 1073741824), WOOLY_KEEP_TEST_DIRS=1 keeps logs,
# WOOLY_SUITE_ASSUME_GPU=1 skips the GPU check (to dry-run the script).
set -uo pipefail
cd "$(dirname "$0")/.."

PROGRAMS=(vector_add memcpy_sizes memset_widths streams_events struct_param launch_extra
          module_globals error_cases graphs memory_ext)
# Programs that load no module run once rather than once per image.
NO_MODULE=" memcpy_sizes memset_widths "

# ---------------------------------------------------------------- layout
layout() {  # sets WOOLYD CLIENT_DIR PROG_DIR KERNEL_DIR GTEST LIB_DIR for a build tree
  local root=$1
  WOOLYD=$root/server/woolyd; CLIENT_DIR=$root/client; PROG_DIR=$root/tests/programs
  KERNEL_DIR=$root/tests/kernels; GTEST=$root/tests/gpu_backend_test
  LIB_DIR=; [ -d "$root/lib" ] && LIB_DIR=$(cd "$root/lib" && pwd)
}

# ---------------------------------------------------------------- --pack
if [ "${1:-}" = "--pack" ]; then
  if [ -z "${WOOLY_NO_BUILD:-}" ]; then
    [ -f build/build.ninja ] || ./scripts/build.sh || exit 1
    cmake --build build -j"${WOOLY_JOBS:-$(nproc)}" --target woolyd wooly-cli wooly_client \
      wooly_test_programs wooly_test_kernels gpu_backend_test >/dev/null || {
      echo "pack: build failed (cmake --build build)"; exit 1; }
    # VmmPhysicalMemory (issue #6): its GPU test and the swap bench.
    cmake --build build -j"${WOOLY_JOBS:-$(nproc)}" --target vmm_physical_memory_gpu_test \
      wooly_bench_swap >/dev/null || {
      echo "pack: build failed (vmm_physical_memory_gpu_test, wooly_bench_swap)"; exit 1; }
  fi
  ./scripts/package-device.sh || exit 1
  out=.carry/build
  mkdir -p "$out/tests" "$out/lib"
  cp build/tests/gpu_backend_test "$out/tests/"
  ldd "$out/tests/gpu_backend_test" | awk '$2 == "=>" && $3 ~ /^\// {print $3}' | while read -r lib; do
    case "$(basename "$lib")" in
      libc.so*|libm.so*|libdl.so*|libpthread.so*|librt.so*|ld-linux*|libcuda.so*) ;;
      *) cp -L -n "$lib" "$out/lib/" ;;
    esac
  done
  # VmmPhysicalMemory (issue #6): its GPU test, and the libraries of the swap
  # bench (bench/wooly_bench_swap, packed by package-device.sh).
  if [ -e build/tests/vmm_physical_memory_gpu_test ]; then
    cp build/tests/vmm_physical_memory_gpu_test "$out/tests/"
  fi
  for bin in "$out/tests/vmm_physical_memory_gpu_test" "$out/bench/wooly_bench_swap"; do
    [ -e "$bin" ] || continue
    ldd "$bin" | awk '$2 == "=>" && $3 ~ /^\// {print $3}' | while read -r lib; do
      case "$(basename "$lib")" in
        libc.so*|libm.so*|libdl.so*|libpthread.so*|librt.so*|ld-linux*|libcuda.so*) ;;
        *) cp -L -n "$lib" "$out/lib/" ;;
      esac
    done
    strip --strip-debug "$bin" 2>/dev/null || true
  done
  strip --strip-debug "$out/tests/gpu_backend_test" "$out"/lib/*.so* 2>/dev/null || true
  echo "gpu-suite: packed $(du -sh "$out" | cut -f1) in $out; on the GPU machine: scripts/gpu-suite.sh $out"
  exit 0
fi

# ---------------------------------------------------------------- run
layout "${1:-build}"

# WOOLY_SUITE_ASSUME_GPU=1 skips this check, to dry-run the script itself.
if [ -z "${WOOLY_SUITE_ASSUME_GPU:-}" ] &&
   { [ ! -e /dev/nvidia0 ] || { command -v nvidia-smi >/dev/null && ! nvidia-smi -L >/dev/null 2>&1; }; }; then
  echo "SKIP: no NVIDIA GPU on this machine"
  exit 77
fi
for f in "$WOOLYD" "$CLIENT_DIR/libcuda.so.1" "$KERNEL_DIR/test_kernels.fatbin" \
         "$KERNEL_DIR/test_kernels.cubin"; do
  [ -e "$f" ] || { echo "FAIL: missing $f (build, or --pack and carry)"; exit 1; }
done

NATIVE_LIBDIR=${WOOLY_NATIVE_LIBDIR:-}
if [ -z "$NATIVE_LIBDIR" ] && [ -e /usr/local/nvidia/lib64/libcuda.so.1 ]; then
  NATIVE_LIBDIR=/usr/local/nvidia/lib64
fi
MEMCPY_MAX=${WOOLY_GPU_MEMCPY_MAX:-1073741824}

# woolyd's libraries: from the pack's lib/ if there is one (never a libcuda).
WOOLYD_LIBPATH=$LIB_DIR
missing=$(env -u LD_PRELOAD LD_LIBRARY_PATH="$WOOLYD_LIBPATH" ldd "$WOOLYD" | grep "not found")
if [ -n "$missing" ]; then
  echo "FAIL: woolyd cannot load its libraries here (use --pack):"; echo "$missing" | head -5
  exit 1
fi

tmp=$(mktemp -d /tmp/wooly-gpu.XXXXXX)
woolyd_pid=
cleanup() {
  if [ -n "$woolyd_pid" ] && kill -0 "$woolyd_pid" 2>/dev/null; then
    kill -TERM "$woolyd_pid" 2>/dev/null
    for _ in $(seq 100); do kill -0 "$woolyd_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$woolyd_pid" 2>/dev/null
  fi
  if [ -n "${WOOLY_KEEP_TEST_DIRS:-}" ]; then echo "logs kept in $tmp"; else rm -rf "$tmp"; fi
}
trap cleanup EXIT

real_libcuda=
[ -n "$NATIVE_LIBDIR" ] && real_libcuda=$NATIVE_LIBDIR/libcuda.so.1
env -u LD_PRELOAD LD_LIBRARY_PATH="$WOOLYD_LIBPATH" WOOLY_REAL_LIBCUDA="$real_libcuda" \
  WOOLY_SOCKET_DIR="$tmp" "$WOOLYD" --listen "unix:$tmp/w.sock" --admin "unix:$tmp/a.sock" \
  --log-level warn --ready-file "$tmp/ready" >"$tmp/woolyd.log" 2>&1 &
woolyd_pid=$!
for _ in $(seq 600); do
  [ -e "$tmp/ready" ] && break
  kill -0 "$woolyd_pid" 2>/dev/null || break
  sleep 0.1
done
if [ ! -e "$tmp/ready" ]; then
  echo "FAIL: woolyd did not start:"; tail -5 "$tmp/woolyd.log"
  exit 1
fi
ENDPOINT=unix:$tmp/w.sock

native() {  # native <out> <cmd...>
  local out=$1; shift
  env -u LD_PRELOAD LD_LIBRARY_PATH="$NATIVE_LIBDIR" timeout 600 "$@" >"$out" 2>&1
}
wooly() {  # wooly <out> <cmd...>
  local out=$1; shift
  env -u LD_PRELOAD LD_LIBRARY_PATH="$CLIENT_DIR" WOOLY_SERVER="$ENDPOINT" WOOLY_LOG=warn \
    timeout 600 "$@" >"$out" 2>&1
}

passed=0; failed=0; notes=()
row() { printf '%-16s %-7s %-8s %-8s %s\n' "$@"; }
echo "GPU suite $(date -u +%Y-%m-%dT%H:%MZ) on $(nvidia-smi -L 2>/dev/null | head -1 | cut -d'(' -f1)"
echo "driver: ${real_libcuda:-system libcuda.so.1}; memcpy max $MEMCPY_MAX bytes"
row PROGRAM IMAGE NATIVE WOOLY RESULT

for p in "${PROGRAMS[@]}"; do
  images=(fatbin cubin)
  [[ $NO_MODULE == *" $p "* ]] && images=(fatbin)
  extra=()
  [ "$p" = memcpy_sizes ] && extra=("$MEMCPY_MAX")
  for img in "${images[@]}"; do
    cmd=("$PROG_DIR/$p" "$KERNEL_DIR/test_kernels.$img" "${extra[@]}")
    n_out=$tmp/$p.$img.native; w_out=$tmp/$p.$img.wooly
    native "$n_out" "${cmd[@]}"; n_rc=$?
    wooly "$w_out" "${cmd[@]}"; w_rc=$?
    result=PASS; why=
    if [ $n_rc -ne 0 ]; then result=FAIL; why="native exit $n_rc: $(grep -m1 '^FAIL\|UNEXPECTED\|expected' "$n_out" | cut -c1-100)"
    elif [ $w_rc -ne 0 ]; then result=FAIL; why="wooly exit $w_rc: $(grep -m1 '^FAIL\|expected' "$w_out" | cut -c1-100)"
    elif ! cmp -s "$n_out" "$w_out"; then result=FAIL; why="outputs differ: $(diff "$n_out" "$w_out" | grep -m2 '^[<>]' | tr '\n' ' ' | cut -c1-120)"
    fi
    row "$p" "$img" "rc=$n_rc" "rc=$w_rc" "$result"
    if [ $result = PASS ]; then passed=$((passed + 1)); else failed=$((failed + 1)); notes+=("$p/$img: $why"); fi
  done
done

# The Wooly runs must really have gone through woolyd: with no server to talk
# to, Wooly's libcuda must fail where the real driver would not care.
wooly_check=$tmp/check.out
env -u LD_PRELOAD LD_LIBRARY_PATH="$CLIENT_DIR" WOOLY_SERVER="unix:$tmp/nonexistent.sock" \
  WOOLY_LOG=error timeout 60 "$PROG_DIR/vector_add" "$KERNEL_DIR/test_kernels.fatbin" >"$wooly_check" 2>&1
if [ $? -ne 0 ]; then
  row wooly-path - - - PASS; passed=$((passed + 1))
else
  row wooly-path - - - FAIL; failed=$((failed + 1)); notes+=("wooly-path: ran without a server (not Wooly's libcuda?)")
fi

# The real backend against the nvcc kernels and the fake kernels' layouts.
if [ -x "$GTEST" ]; then
  g_out=$tmp/gpu_backend_test.out
  env -u LD_PRELOAD LD_LIBRARY_PATH="$WOOLYD_LIBPATH" WOOLY_REAL_LIBCUDA="$real_libcuda" \
    WOOLY_TEST_KERNELS_DIR="$KERNEL_DIR" timeout 600 "$GTEST" >"$g_out" 2>&1
  g_rc=$?
  if [ $g_rc -eq 0 ] && ! grep -q '\[  SKIPPED \]' "$g_out"; then
    row gpu_backend_test - - - PASS; passed=$((passed + 1))
  else
    row gpu_backend_test - - - FAIL; failed=$((failed + 1))
    notes+=("gpu_backend_test: exit $g_rc; $(grep -m3 'FAILED\|SKIPPED\|Failure' "$g_out" | tr '\n' ' ' | cut -c1-200)")
  fi
fi

# VmmPhysicalMemory on the real backend (issue #6).
VMM_GTEST=$(dirname "$GTEST")/vmm_physical_memory_gpu_test
if [ -x "$VMM_GTEST" ]; then
  v_out=$tmp/vmm_physical_memory_gpu_test.out
  env -u LD_PRELOAD LD_LIBRARY_PATH="$WOOLYD_LIBPATH" WOOLY_REAL_LIBCUDA="$real_libcuda" \
    timeout 600 "$VMM_GTEST" >"$v_out" 2>&1
  v_rc=$?
  if [ $v_rc -eq 0 ] && ! grep -q '\[  SKIPPED \]' "$v_out"; then
    row vmm_gpu_test - - - PASS; passed=$((passed + 1))
  else
    row vmm_gpu_test - - - FAIL; failed=$((failed + 1))
    notes+=("vmm_physical_memory_gpu_test: exit $v_rc; $(grep -m3 'FAILED\|SKIPPED\|Failure' "$v_out" | tr '\n' ' ' | cut -c1-200)")
  fi
  grep '^\[ INFO' "$v_out" | sed 's/^/  /'
fi

if ! kill -0 "$woolyd_pid" 2>/dev/null; then
  failed=$((failed + 1)); notes+=("woolyd died during the suite: $(tail -2 "$tmp/woolyd.log" | tr '\n' ' ')")
fi
for n in "${notes[@]}"; do echo "  $n"; done
echo "$passed passed, $failed failed"
[ $failed -eq 0 ]
