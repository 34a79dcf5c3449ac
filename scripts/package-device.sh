#!/usr/bin/env bash
# Packs what the GPU machine needs from build/ into .carry/build/ (same
# relative layout), with the non-glibc shared libraries of woolyd and
# wooly-cli bundled in .carry/build/lib. The GPU machine has no gRPC, Protobuf
# or Abseil and no package registry. Name `.carry` in the device tool's carry.
set -euo pipefail
cd "$(dirname "$0")/.."
src=build
dst=.carry/build
rm -rf "$dst"
mkdir -p "$dst/lib"

copy() {  # copy build-relative paths that exist
  for rel in "$@"; do
    for f in $src/$rel; do
      [ -e "$f" ] || continue
      mkdir -p "$dst/$(dirname "${f#$src/}")"
      cp -a "$f" "$dst/${f#$src/}"
    done
  done
}

# Quoted: the patterns expand inside build/, not here.
copy 'server/woolyd' 'cli/wooly-cli' 'client/libcuda.so.1' 'client/libwooly.so*' \
     'tests/programs/*' 'tests/kernels/*.fatbin' 'tests/kernels/*.cubin' 'tests/kernels/*.fake' \
     'tests/runtime/*' 'bench/wooly_bench*'
copy 'nvml/libnvidia-ml.so*'  # the NVML view (scripts/nvml-check.sh)
copy 'smi/wooly-smi' 'smi/nvidia-smi'  # Wooly's nvidia-smi front-end (docs/nvml.md)

# Bundle every shared library the executables need except glibc's own.
. scripts/lib/bundle-libs.sh
bundle_libs "$dst/lib" "$dst/server/woolyd" "$dst/cli/wooly-cli"
# Debug info is not needed there and the carried tree is limited to 64 MiB.
find "$dst" -type f \( -perm -u+x -o -name '*.so*' \) ! -name '*.sh' -exec strip --strip-debug {} + 2>/dev/null || true
du -sh "$dst" | awk '{print "package-device: " $1 " in '"$dst"'"}'
