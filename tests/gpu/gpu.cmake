# GPU tests (label gpu). Without an NVIDIA GPU they skip: gpu.suite exits 77
# (CTest SKIP_RETURN_CODE) and gpu_backend_test's cases GTEST_SKIP. The suite
# itself is scripts/gpu-suite.sh; see docs/testing.md.
include(${PROJECT_SOURCE_DIR}/tests/kernels/kernels.cmake)
include(${PROJECT_SOURCE_DIR}/tests/programs/programs.cmake)

# The real backend against the nvcc-built kernels and the fake kernels'
# declared layouts.
wooly_cc_test(NAME gpu_backend_test
  SRCS ${CMAKE_CURRENT_LIST_DIR}/gpu_backend_test.cc
  DEPS wooly::cuda_backend wooly::fake_backend wooly::server_status
  LABELS gpu)
target_compile_definitions(gpu_backend_test PRIVATE
  WOOLY_TEST_KERNELS_DIR_DEFAULT="${WOOLY_TEST_KERNELS_DIR}")
add_dependencies(gpu_backend_test wooly_test_kernels)
wooly_bundle_rpath(gpu_backend_test)

# The whole suite: every test program natively and through woolyd, with the
# fatbin and the cubin, outputs diffed.
add_test(NAME gpu.suite COMMAND bash ${PROJECT_SOURCE_DIR}/scripts/gpu-suite.sh ${CMAKE_BINARY_DIR})
set_tests_properties(gpu.suite PROPERTIES LABELS gpu SKIP_RETURN_CODE 77 TIMEOUT 1800)
