# Test kernels for the driver-API test programs (tests/programs/).
#   - test_kernels.fatbin / test_kernels.cubin: nvcc builds of test_kernels.cu
#     for the GPU suite (needs nvcc only, not a GPU);
#   - test_kernels.fake: the same module for the fake backend (CI), whose
#     CPU kernels are tests/fake/fake_kernels.cc (built into wooly::fake_backend).
# All three land in ${WOOLY_TEST_KERNELS_DIR}.
include_guard(GLOBAL)

set(WOOLY_TEST_KERNELS_DIR ${CMAKE_BINARY_DIR}/tests/kernels)
file(MAKE_DIRECTORY ${WOOLY_TEST_KERNELS_DIR})
set(_src ${CMAKE_CURRENT_LIST_DIR}/test_kernels.cu)
set(WOOLY_TEST_FAKE_MODULE ${WOOLY_TEST_KERNELS_DIR}/test_kernels.fake)
set(WOOLY_TEST_FATBIN ${WOOLY_TEST_KERNELS_DIR}/test_kernels.fatbin)
set(WOOLY_TEST_CUBIN ${WOOLY_TEST_KERNELS_DIR}/test_kernels.cubin)
configure_file(${CMAKE_CURRENT_LIST_DIR}/test_kernels.fake ${WOOLY_TEST_FAKE_MODULE} COPYONLY)

find_program(WOOLY_NVCC nvcc HINTS ${WOOLY_CUDA_ROOT}/bin)
if(WOOLY_BUILD_GPU_KERNELS AND WOOLY_NVCC)
  add_custom_command(
    OUTPUT ${WOOLY_TEST_FATBIN}
    COMMAND ${WOOLY_NVCC} -fatbin
            -gencode arch=compute_90,code=sm_90 -gencode arch=compute_90,code=compute_90
            -o ${WOOLY_TEST_FATBIN} ${_src}
    DEPENDS ${_src}
    COMMENT "nvcc test_kernels.fatbin")
  add_custom_command(
    OUTPUT ${WOOLY_TEST_CUBIN}
    COMMAND ${WOOLY_NVCC} -cubin -arch=sm_90 -o ${WOOLY_TEST_CUBIN} ${_src}
    DEPENDS ${_src}
    COMMENT "nvcc test_kernels.cubin")
  add_custom_target(wooly_test_kernels ALL DEPENDS ${WOOLY_TEST_FATBIN} ${WOOLY_TEST_CUBIN})

  # The fake kernels and test_kernels.fake must mirror the cubin (no GPU needed).
  if(TARGET wooly_fake_backend)
    wooly_cc_test(NAME kernel_layout_test
      SRCS ${CMAKE_CURRENT_LIST_DIR}/kernel_layout_test.cc
      DEPS wooly::fake_backend
      LABELS unit)
    target_compile_definitions(kernel_layout_test PRIVATE
      WOOLY_TEST_CUBIN="${WOOLY_TEST_CUBIN}" WOOLY_TEST_FAKE_MODULE="${WOOLY_TEST_FAKE_MODULE}")
    add_dependencies(kernel_layout_test wooly_test_kernels)
  endif()
else()
  message(STATUS "nvcc not found (or WOOLY_BUILD_GPU_KERNELS=OFF): "
                 "the GPU test kernels are not built; GPU tests will skip")
  add_custom_target(wooly_test_kernels)
endif()
