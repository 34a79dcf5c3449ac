# Sourced by the packaging scripts. bundle_libs DEST EXE...: copies every
# shared library the executables need into DEST, except glibc's own and the
# CUDA driver (the host's, mounted by the NVIDIA container toolkit).
bundle_libs() {
  local dest=$1; shift
  mkdir -p "$dest"
  for exe in "$@"; do
    [ -x "$exe" ] || continue
    ldd "$exe" | awk '/=> \//{print $3}' | while read -r lib; do
      case "$(basename "$lib")" in
        libc.so*|libm.so*|libpthread.so*|libdl.so*|librt.so*|ld-linux*|libcuda.so*) ;;
        *) cp -L -n "$lib" "$dest/" ;;
      esac
    done
  done
}
