# libwooly (client/) unit tests. Included from tests/CMakeLists.txt, so paths
# are relative to this file, not to the current source dir.
set(_client_tests ${CMAKE_CURRENT_LIST_DIR})

wooly_cc_test(NAME client_image_size_test
  SRCS ${_client_tests}/client_image_size_test.cc
  DEPS wooly::client_core
  LABELS unit)

wooly_cc_test(NAME client_param_pack_test
  SRCS ${_client_tests}/client_param_pack_test.cc
  DEPS wooly::client_core
  LABELS unit)

wooly_cc_test(NAME client_error_strings_test
  SRCS ${_client_tests}/client_error_strings_test.cc
  DEPS wooly::client_core
  LABELS unit)
target_compile_definitions(client_error_strings_test PRIVATE
  WOOLY_CUDA_H="${WOOLY_CUDA_ROOT}/include/cuda.h")

wooly_cc_test(NAME client_util_test
  SRCS ${_client_tests}/client_util_test.cc
  DEPS wooly::client_core
  LABELS unit)

wooly_cc_test(NAME client_copy_pool_test
  SRCS ${_client_tests}/client_copy_pool_test.cc
  DEPS wooly::client_core
  LABELS unit)

# The driver API against an in-process fake woolyd (client_fake_woolyd.h).
wooly_cc_test(NAME client_api_test
  SRCS ${_client_tests}/client_api_test.cc
  DEPS wooly::client_core
  LABELS unit)

# The shipped library: exports, soname and dependencies.
add_test(NAME client_selfcontained
  COMMAND sh ${_client_tests}/client_selfcontained.sh
          $<TARGET_FILE_DIR:wooly_client>/libcuda.so.1
          ${PROJECT_SOURCE_DIR}/client/driver_surface.txt)
set_tests_properties(client_selfcontained PROPERTIES LABELS unit TIMEOUT 60)

# libcudart's export tables and the integrity hash.
wooly_cc_test(NAME client_export_tables_test
  SRCS ${_client_tests}/client_export_tables_test.cc
  DEPS wooly::client_core
  LABELS unit)

wooly_cc_test(NAME hmac_md2_test
  SRCS ${_client_tests}/hmac_md2_test.cc
  DEPS wooly::client_core
  LABELS unit)

# Stream capture bookkeeping (capture.h) and the capture mode entry point.
wooly_cc_test(NAME client_capture_test
  SRCS ${_client_tests}/client_capture_test.cc
  DEPS wooly::client_core
  LABELS unit)

# NVRTC's compile cache and export table da9151d3.
wooly_cc_test(NAME client_compile_cache_test
  SRCS ${_client_tests}/client_compile_cache_test.cc
  DEPS wooly::client_core
  LABELS unit)

# The bookkeeping of local allocation (alloc_arena.h).
wooly_cc_test(NAME client_alloc_arena_test
  SRCS ${_client_tests}/client_alloc_arena_test.cc
  DEPS wooly::client_core
  LABELS unit)
