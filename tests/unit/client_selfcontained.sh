#!/bin/sh
# Checks that the built libwooly is a self-contained libcuda.so.1:
#  - it exports only cu* symbols (nm -D --defined-only),
#  - its SONAME is libcuda.so.1,
#  - it needs nothing beyond glibc,
#  - every symbol client/driver_surface.txt marks local or forwarded is exported.
# Usage: client_selfcontained.sh <libcuda.so.1> <driver_surface.txt>
set -eu
lib=$1
manifest=$2
fail=0
err() { echo "FAIL: $*" >&2; fail=1; }

[ -f "$lib" ] || { echo "FAIL: $lib does not exist" >&2; exit 1; }

exported=$(nm -D --defined-only "$lib" | awk 'NF >= 3 { print $3 }' | sed 's/@.*//' | sort -u)
[ -n "$exported" ] || err "no exported symbols"
stray=$(printf '%s\n' "$exported" | grep -v '^cu' || true)
[ -z "$stray" ] || err "exports symbols other than cu*: $(printf '%s ' $stray)"

soname=$(readelf -d "$lib" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
[ "$soname" = "libcuda.so.1" ] || err "SONAME is '$soname', want libcuda.so.1"

needed=$(readelf -d "$lib" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')
for n in $needed; do
  case "$n" in
    libc.so.6|libm.so.6|libpthread.so.0|libdl.so.2|librt.so.1|ld-linux-x86-64.so.2|ld-linux-aarch64.so.1) ;;
    *) err "depends on $n (only glibc libraries are allowed)" ;;
  esac
done

missing=""
for sym in $(awk '$1 !~ /^#/ && ($2 == "local" || $2 == "forwarded") { print $1 }' "$manifest"); do
  printf '%s\n' "$exported" | grep -qx "$sym" || missing="$missing $sym"
done
[ -z "$missing" ] || err "implemented symbols not exported:$missing"

# The oldest glibc supported is 2.35 (Ubuntu 22.04, the base of the PyTorch
# and vLLM images); client/glibc_compat.cc keeps newer symbols out.
glibc=$(objdump -T "$lib" | grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/GLIBC_//' | sort -V | tail -1)
if [ -n "$glibc" ] && [ "$(printf '%s\n2.35\n' "$glibc" | sort -V | tail -1)" != "2.35" ]; then
  err "needs glibc $glibc ($(objdump -T "$lib" | grep "GLIBC_$glibc" | awk '{ print $NF }' | tr '\n' ' ')); the floor is 2.35"
fi

if [ $fail -ne 0 ]; then exit 1; fi
echo "OK: $(printf '%s\n' "$exported" | wc -l) cu* symbols exported, SONAME $soname, NEEDED: $(echo $needed)"
