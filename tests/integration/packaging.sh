#!/usr/bin/env bash
# CI check of scripts/package-dist.sh (what the Dockerfiles run): the staged
# server starts from its own tree with no library path, and the staged
# client library needs nothing beyond glibc. Usage: packaging.sh BUILD_DIR
set -euo pipefail
build=$(cd "$1" && pwd)
cd "$(dirname "$0")/../.."
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
./scripts/package-dist.sh --build-dir "$build" --out "$out"
env -i "$out/server/bin/woolyd" --version | grep -q "^woolyd "
env -i "$out/server/bin/wooly-cli" version >/dev/null
deps=$(ldd "$out/client/lib/libcuda.so.1" | awk '{print $1}' | grep -v -E '^(linux-vdso|libc\.so|/lib64/ld-linux)' || true)
[ -z "$deps" ] || { echo "client library needs: $deps"; exit 1; }
for t in "$out"/wooly-server-*.tar.gz "$out"/wooly-client-*.tar.gz; do
  [ -s "$t" ] || { echo "missing $t"; exit 1; }
done
listing=$(tar -tzf "$out"/wooly-client-*.tar.gz)
for f in lib/libcuda.so.1 lib/libnvidia-ml.so.1 bin/wooly-smi bin/nvidia-smi; do
  grep -q "$f\$" <<<"$listing" || { echo "client tarball lacks $f"; exit 1; }
done
echo "PASS packaging"
