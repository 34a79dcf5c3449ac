#!/bin/sh
# Checks that wooly-smi runs in any tenant image, like libnvidia-ml.so.1:
# it needs nothing beyond glibc, and no glibc newer than 2.35.
# Usage: smi_selfcontained.sh <wooly-smi>
set -eu
bin=$1
fail=0
err() { echo "FAIL: $*" >&2; fail=1; }
[ -f "$bin" ] || { echo "FAIL: $bin does not exist" >&2; exit 1; }
needed=$(readelf -d "$bin" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')
for n in $needed; do
  case "$n" in
    libc.so.6|libm.so.6|libpthread.so.0|libdl.so.2|librt.so.1|ld-linux-x86-64.so.2|ld-linux-aarch64.so.1) ;;
    *) err "depends on $n (only glibc libraries are allowed)" ;;
  esac
done
glibc=$(objdump -T "$bin" | grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/GLIBC_//' | sort -V | tail -1)
if [ -n "$glibc" ] && [ "$(printf '%s\n2.35\n' "$glibc" | sort -V | tail -1)" != "2.35" ]; then
  err "needs glibc $glibc; the floor is 2.35"
fi
if [ $fail -ne 0 ]; then exit 1; fi
echo "OK: NEEDED: $(echo $needed), newest glibc symbol $glibc"
