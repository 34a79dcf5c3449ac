# The CUDA C++ runtime-API test program (runtime_program.cu) for the PyTorch
# suite (scripts/pytorch-suite.sh). Built with nvcc (no GPU needed) for sm_90
# with a compute_90 PTX fallback, cudart linked statically (nvcc's default,
# spelled out) and libstdc++/libgcc statically, so that on the GPU machine it
# needs only glibc; libcudart inside it dlopens libcuda.so.1, which is what
# Wooly serves. Output: ${WOOLY_RUNTIME_PROGRAM}, in build/tests/runtime/,
# which scripts/package-device.sh carries. Without nvcc (or with
# -DWOOLY_BUILD_GPU_KERNELS=OFF) the target is empty and the suite reports the
# program missing.
include_guard(GLOBAL)

find_program(WOOLY_NVCC nvcc HINTS ${WOOLY_CUDA_ROOT}/bin)
set(WOOLY_RUNTIME_PROGRAM_DIR ${CMAKE_BINARY_DIR}/tests/runtime)
set(WOOLY_RUNTIME_PROGRAM ${WOOLY_RUNTIME_PROGRAM_DIR}/runtime_program)
set(_wooly_rt_src ${CMAKE_CURRENT_LIST_DIR}/runtime_program.cu)

if(WOOLY_BUILD_GPU_KERNELS AND WOOLY_NVCC)
  file(MAKE_DIRECTORY ${WOOLY_RUNTIME_PROGRAM_DIR})
  add_custom_command(
    OUTPUT ${WOOLY_RUNTIME_PROGRAM}
    COMMAND ${WOOLY_NVCC} -O2 -std=c++17 -cudart static
            -gencode arch=compute_90,code=sm_90 -gencode arch=compute_90,code=compute_90
            -Xcompiler -Wall,-Wextra -Xcompiler -static-libstdc++,-static-libgcc
            -o ${WOOLY_RUNTIME_PROGRAM} ${_wooly_rt_src}
    DEPENDS ${_wooly_rt_src}
    COMMENT "nvcc runtime_program (cudart static)"
    VERBATIM)
  add_custom_target(wooly_runtime_program ALL DEPENDS ${WOOLY_RUNTIME_PROGRAM})
else()
  add_custom_target(wooly_runtime_program)
endif()
