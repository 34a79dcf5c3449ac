#!/usr/bin/env bash
# Installs Wooly's build dependencies from Debian's packages. Idempotent:
# packages already present are not fetched again.
set -euo pipefail

pkgs=(
  build-essential cmake ninja-build pkg-config python3
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libabsl-dev libspdlog-dev libfmt-dev libgtest-dev libgmock-dev libcpp-httplib-dev
  libtomlplusplus-dev
)

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "setup: all packages present"
fi

if [ ! -f /usr/local/cuda/include/cuda.h ]; then
  echo "setup: the CUDA Toolkit is expected in /usr/local/cuda (cuda.h not found)" >&2
  exit 1
fi
