# Driver surface: generated table, unsupported stubs, cuGetProcAddress.
include(${PROJECT_SOURCE_DIR}/client/driver_surface.cmake)  # no-op once client/ included it

set(_wooly_surface_client ${PROJECT_SOURCE_DIR}/client)

# The checked-in client/generated/ is what the generator writes from today's
# cuda.h, every cuda.h function has a row, and cuda.h agrees with the stub
# libcuda's exports.
add_test(NAME driver_surface_generated_up_to_date
  COMMAND ${Python3_EXECUTABLE} ${PROJECT_SOURCE_DIR}/tools/gen_driver_surface.py --check
          --cuda-include ${WOOLY_CUDA_ROOT}/include
          --cc ${CMAKE_C_COMPILER}
          --stub-lib ${WOOLY_CUDA_ROOT}/lib64/stubs/libcuda.so)
set_tests_properties(driver_surface_generated_up_to_date PROPERTIES TIMEOUT 120)

# test_impl_stubs.cc stands in for the local/forwarded implementations.
wooly_cc_test(NAME driver_surface_test
  SRCS ${CMAKE_CURRENT_LIST_DIR}/driver_surface_test.cc
       ${_wooly_surface_client}/generated/test_impl_stubs.cc
  DEPS wooly::driver_surface)
target_include_directories(driver_surface_test PRIVATE ${_wooly_surface_client})

wooly_cc_test(NAME proc_address_test
  SRCS ${CMAKE_CURRENT_LIST_DIR}/proc_address_test.cc
       ${_wooly_surface_client}/generated/test_impl_stubs.cc
       ${_wooly_surface_client}/generated/proc_address_signature_check.cc
  DEPS wooly::driver_surface)
target_include_directories(proc_address_test PRIVATE ${_wooly_surface_client})
target_compile_definitions(proc_address_test PRIVATE
  WOOLY_PROC_ADDRESS_REAL_TSV="${PROJECT_SOURCE_DIR}/tests/data/proc_address_real.tsv")

# The surface must work from other libraries' constructors (the injected
# libcuda.so.1 can be called before its own initialisers run), so its tables
# must be constant-initialised: no .init_array in its objects.
add_test(NAME driver_surface_has_no_static_constructors
  COMMAND ${CMAKE_OBJDUMP} -h $<TARGET_OBJECTS:wooly_driver_surface>
  COMMAND_EXPAND_LISTS)
set_tests_properties(driver_surface_has_no_static_constructors PROPERTIES
  FAIL_REGULAR_EXPRESSION "init_array")
