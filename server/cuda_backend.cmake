# The real CUDA backend (wooly/server/cuda_backend.h), included from
# server/CMakeLists.txt. It needs the CUDA headers only: the driver is
# dlopened at run time, so nothing here links libcuda.
add_library(wooly_cuda_backend STATIC
  ${CMAKE_CURRENT_LIST_DIR}/cuda_backend.cc
  ${CMAKE_CURRENT_LIST_DIR}/include/wooly/server/cuda_backend.h)
add_library(wooly::cuda_backend ALIAS wooly_cuda_backend)
target_include_directories(wooly_cuda_backend PUBLIC ${CMAKE_CURRENT_LIST_DIR}/include)
target_link_libraries(wooly_cuda_backend
  PUBLIC wooly::server_status wooly::wire wooly::cuda_headers absl::status absl::statusor
         absl::span
  PRIVATE absl::flat_hash_map absl::strings absl::synchronization spdlog::spdlog
          ${CMAKE_DL_LIBS})
target_compile_options(wooly_cuda_backend PRIVATE -Wall -Wextra -Wno-unused-parameter)

if(WOOLY_BUILD_TESTS)
  # A stand-in driver: host memory as "device" memory, enough entry points
  # for the backend's own logic (resolution, staging, layouts, launches).
  add_library(wooly_cuda_backend_test_driver MODULE
    ${CMAKE_CURRENT_LIST_DIR}/cuda_backend_test_driver.cc)
  target_link_libraries(wooly_cuda_backend_test_driver PRIVATE wooly::cuda_headers)
  set_target_properties(wooly_cuda_backend_test_driver PROPERTIES PREFIX "" OUTPUT_NAME
                        "cuda_backend_test_driver")
  # The same, marked like Wooly's client library: the backend must refuse it.
  add_library(wooly_cuda_backend_test_wooly MODULE
    ${CMAKE_CURRENT_LIST_DIR}/cuda_backend_test_driver.cc)
  target_link_libraries(wooly_cuda_backend_test_wooly PRIVATE wooly::cuda_headers)
  target_compile_definitions(wooly_cuda_backend_test_wooly PRIVATE MOCK_PRETEND_WOOLY)
  set_target_properties(wooly_cuda_backend_test_wooly PROPERTIES PREFIX "" OUTPUT_NAME
                        "cuda_backend_test_wooly")

  wooly_cc_test(NAME cuda_backend_test
    SRCS ${CMAKE_CURRENT_LIST_DIR}/cuda_backend_test.cc
    DEPS wooly::cuda_backend absl::strings
    LABELS unit)
  add_dependencies(cuda_backend_test wooly_cuda_backend_test_driver
                   wooly_cuda_backend_test_wooly)
  target_compile_definitions(cuda_backend_test PRIVATE
    WOOLY_TEST_DRIVER="$<TARGET_FILE:wooly_cuda_backend_test_driver>"
    WOOLY_TEST_WOOLY_LIB="$<TARGET_FILE:wooly_cuda_backend_test_wooly>"
    WOOLY_CUDA_STUB="${WOOLY_CUDA_ROOT}/lib64/stubs/libcuda.so")
endif()
