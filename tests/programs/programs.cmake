# The driver-API test programs: <cuda.h> only, no cudart. They link against
# the CUDA stub library (soname libcuda.so.1) with no RPATH, so at run time
# the library path decides which libcuda.so.1 they get: the real driver
# natively, Wooly's when build/client comes first. The same binaries run in
# CI (against woolyd-fake) and in the GPU suite.
include_guard(GLOBAL)

set(WOOLY_TEST_PROGRAMS
  vector_add memcpy_sizes memset_widths streams_events struct_param launch_extra
  module_globals error_cases graphs memory_ext)
set(WOOLY_TEST_PROGRAMS_DIR ${CMAKE_BINARY_DIR}/tests/programs)

set(_stub ${WOOLY_CUDA_ROOT}/lib64/stubs/libcuda.so)
if(EXISTS ${_stub})
  set(_libcuda ${_stub})
else()
  set(_libcuda wooly_client)  # no stub: link Wooly's libcuda.so.1 itself
endif()

add_custom_target(wooly_test_programs)
foreach(_p ${WOOLY_TEST_PROGRAMS})
  set(_t wooly_prog_${_p})
  add_executable(${_t} ${CMAKE_CURRENT_LIST_DIR}/${_p}.cc ${CMAKE_CURRENT_LIST_DIR}/common.h)
  target_link_libraries(${_t} PRIVATE wooly::cuda_headers ${_libcuda})
  target_compile_options(${_t} PRIVATE -Wall -Wextra)
  # Only libc and libcuda.so.1 at run time, so the binaries carry to any GPU
  # machine.
  target_link_options(${_t} PRIVATE -static-libstdc++ -static-libgcc)
  set_target_properties(${_t} PROPERTIES
    OUTPUT_NAME ${_p}
    RUNTIME_OUTPUT_DIRECTORY ${WOOLY_TEST_PROGRAMS_DIR}
    SKIP_BUILD_RPATH ON
    INSTALL_RPATH "")
  if(TARGET wooly_client)
    add_dependencies(${_t} wooly_client)  # the library they run against in CI
  endif()
  add_dependencies(wooly_test_programs ${_t})
endforeach()
