#!/usr/bin/env bash
# Stages Wooly's deployable parts from a build tree, for the container images
# (docker/) and for installing the client into existing images. The
# Dockerfiles only call this script; CI runs it directly (they cannot be
# built on the development machines).
#
#   scripts/package-dist.sh [--build-dir build] [--out dist]
#
# Produces:
#   OUT/server/bin/{woolyd,wooly-cli} and OUT/server/lib/ (their non-glibc
#     shared libraries; the executables find them through $ORIGIN/../lib)
#   OUT/client/lib/libcuda.so.1 (libwooly: needs only glibc) and
#     OUT/client/README (the one line to add to an image)
#   OUT/client/lib/libnvidia-ml.so.1 (the NVML view, docs/nvml.md: needs only glibc)
#   OUT/client/bin/wooly-smi and its link OUT/client/bin/nvidia-smi (Wooly's
#     nvidia-smi front-end, docs/nvml.md: needs only glibc)
#   OUT/wooly-server-VERSION.tar.gz and OUT/wooly-client-VERSION.tar.gz
set -euo pipefail
cd "$(dirname "$0")/.."
build=build
out=dist
while [ $# -gt 0 ]; do
  case "$1" in
    --build-dir) build=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    *) echo "package-dist: unknown argument $1" >&2; exit 2 ;;
  esac
done
for f in server/woolyd cli/wooly-cli client/libcuda.so.1; do
  [ -e "$build/$f" ] || { echo "package-dist: $build/$f missing; build first (scripts/build.sh)" >&2; exit 1; }
done
[ -e "$build/nvml/libnvidia-ml.so.1" ] || { echo "package-dist: $build/nvml/libnvidia-ml.so.1 missing; build first (scripts/build.sh)" >&2; exit 1; }
[ -e "$build/smi/wooly-smi" ] || { echo "package-dist: $build/smi/wooly-smi missing; build first (scripts/build.sh)" >&2; exit 1; }
version=$("$build/server/woolyd" --version | awk '{print $2; exit}')
rm -rf "$out/server" "$out/client"
mkdir -p "$out/server/bin" "$out/client/lib" "$out/client/bin"
cp -L "$build/server/woolyd" "$build/cli/wooly-cli" "$out/server/bin/"
. scripts/lib/bundle-libs.sh
bundle_libs "$out/server/lib" "$out/server/bin/woolyd" "$out/server/bin/wooly-cli"
cp -L "$build/client/libcuda.so.1" "$out/client/lib/"
cp -L "$build/nvml/libnvidia-ml.so.1" "$out/client/lib/"
cp -L "$build/smi/wooly-smi" "$out/client/bin/"
ln -sf wooly-smi "$out/client/bin/nvidia-smi"  # first on PATH in the tenant's image
cat > "$out/client/README" <<TXT
Wooly client $version: a replacement libcuda.so.1 that sends CUDA work to the
node's woolyd. It needs only glibc. Add it to an existing PyTorch or vLLM image
without changing anything else:

  COPY --from=wooly-client /opt/wooly /opt/wooly        (or unpack this tarball)
  ENV LD_PRELOAD=/opt/wooly/lib/libcuda.so.1 WOOLY_SERVER=unix:/run/wooly/woolyd.sock

and mount the node's /run/wooly into the container. Optional: WOOLY_PRIORITY
(0 highest .. 4), WOOLY_CLIENT_NAME, POD_NAME/POD_NAMESPACE for metrics labels.

lib/libnvidia-ml.so.1 is the NVML view (pynvml, PyTorch, vLLM): the tenant's
memory limit, use, share and processes. bin/nvidia-smi (a link to
bin/wooly-smi) is Wooly's nvidia-smi front-end, not NVIDIA's binary: it prints
that view. To use both, add the directories to the library path and PATH:

  ENV LD_LIBRARY_PATH=/opt/wooly/lib PATH=/opt/wooly/bin:\$PATH
TXT
find "$out/server" "$out/client" -type f \( -perm -u+x -o -name '*.so*' \) \
  -exec strip --strip-debug {} + 2>/dev/null || true
tar -C "$out/server" -czf "$out/wooly-server-$version.tar.gz" .
tar -C "$out/client" -czf "$out/wooly-client-$version.tar.gz" .
echo "package-dist: $out/server ($(du -sh "$out/server" | cut -f1)), $out/client ($(du -sh "$out/client" | cut -f1)), version $version"
