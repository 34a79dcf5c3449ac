# Shared checks of the self-contained binaries (client_selfcontained.sh,
# nvml_selfcontained.sh, smi_selfcontained.sh), sourced by them. Each check
# reports through the caller's err() and sets a variable for its summary,
# so it must run in the caller's shell (not inside $(...)).

# Sets `needed` to FILE's NEEDED entries; err() for any outside glibc.
check_needs_only_glibc() {
  needed=$(readelf -d "$1" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')
  for _n in $needed; do
    case "$_n" in
      libc.so.6|libm.so.6|libpthread.so.0|libdl.so.2|librt.so.1|ld-linux-x86-64.so.2|ld-linux-aarch64.so.1) ;;
      *) err "depends on $_n (only glibc libraries are allowed)" ;;
    esac
  done
}

# The oldest glibc supported is 2.35 (Ubuntu 22.04, the base of the PyTorch
# and vLLM images); client/glibc_compat.cc keeps newer symbols out. Sets
# `glibc` to the newest version FILE needs.
check_glibc_floor() {
  glibc=$(objdump -T "$1" | grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/GLIBC_//' | sort -V | tail -1)
  if [ -n "$glibc" ] && [ "$(printf '%s\n2.35\n' "$glibc" | sort -V | tail -1)" != "2.35" ]; then
    err "needs glibc $glibc ($(objdump -T "$1" | grep "GLIBC_$glibc" | awk '{ print $NF }' | tr '\n' ' ')); the floor is 2.35"
  fi
}

# Sets `exported` to the symbols LIB exports; err() for none, or for any
# not starting with PREFIX.
check_exports_only() {
  exported=$(nm -D --defined-only "$1" | awk 'NF >= 3 { print $3 }' | sed 's/@.*//' | sort -u)
  [ -n "$exported" ] || err "no exported symbols"
  _stray=$(printf '%s\n' "$exported" | grep -v "^$2" || true)
  [ -z "$_stray" ] || err "exports symbols other than $2*: $(printf '%s ' $_stray)"
}
