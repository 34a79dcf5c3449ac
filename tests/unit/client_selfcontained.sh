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
. "$(dirname "$0")/selfcontained_lib.sh"

[ -f "$lib" ] || { echo "FAIL: $lib does not exist" >&2; exit 1; }

check_exports_only "$lib" cu

soname=$(readelf -d "$lib" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
[ "$soname" = "libcuda.so.1" ] || err "SONAME is '$soname', want libcuda.so.1"

check_needs_only_glibc "$lib"

missing=""
for sym in $(awk '$1 !~ /^#/ && ($2 == "local" || $2 == "forwarded") { print $1 }' "$manifest"); do
  printf '%s\n' "$exported" | grep -qx "$sym" || missing="$missing $sym"
done
[ -z "$missing" ] || err "implemented symbols not exported:$missing"

check_glibc_floor "$lib"

if [ $fail -ne 0 ]; then exit 1; fi
echo "OK: $(printf '%s\n' "$exported" | wc -l) cu* symbols exported, SONAME $soname, NEEDED: $(echo $needed)"
