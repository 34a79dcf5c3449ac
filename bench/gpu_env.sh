# Sourced by the GPU check scripts after they cd to the repository root and
# set DIR (a build tree or the pack .carry/build): LIB_DIR, the pack's
# shared libraries for woolyd (empty in a build tree), and real_libcuda,
# NVIDIA's libcuda.so.1 where the GPU machine keeps it (empty: woolyd
# searches the usual path).
# shellcheck shell=bash
LIB_DIR=
[ -d "$DIR/lib" ] && LIB_DIR=$DIR/lib
real_libcuda=
[ -e /usr/local/nvidia/lib64/libcuda.so.1 ] && real_libcuda=/usr/local/nvidia/lib64/libcuda.so.1
