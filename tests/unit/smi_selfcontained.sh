#!/bin/sh
# Checks that wooly-smi runs in any tenant image, like libnvidia-ml.so.1:
# it needs nothing beyond glibc, and no glibc newer than 2.35.
# Usage: smi_selfcontained.sh <wooly-smi>
set -eu
bin=$1
fail=0
err() { echo "FAIL: $*" >&2; fail=1; }
. "$(dirname "$0")/selfcontained_lib.sh"
[ -f "$bin" ] || { echo "FAIL: $bin does not exist" >&2; exit 1; }
check_needs_only_glibc "$bin"
check_glibc_floor "$bin"
if [ $fail -ne 0 ]; then exit 1; fi
echo "OK: NEEDED: $(echo $needed), newest glibc symbol $glibc"
