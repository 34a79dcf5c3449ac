# wooly-cli unit tests: parsing, formatting, layout lookup, `run`'s
# environments and server start-up (against fake woolyd scripts), and
# `status`/`clients` against an in-process fake Admin service.
wooly_cc_test(NAME cli_test
  SRCS ${CMAKE_CURRENT_LIST_DIR}/cli_args_test.cc
       ${CMAKE_CURRENT_LIST_DIR}/cli_format_test.cc
       ${CMAKE_CURRENT_LIST_DIR}/cli_layout_test.cc
       ${CMAKE_CURRENT_LIST_DIR}/cli_launch_test.cc
       ${CMAKE_CURRENT_LIST_DIR}/cli_status_test.cc
  DEPS wooly::cli wooly::proto gRPC::grpc++ protobuf::libprotobuf)
target_compile_definitions(cli_test PRIVATE WOOLY_TEST_PYTHON="${Python3_EXECUTABLE}")

# The real wooly-cli against woolyd on the fake backend, with test clients
# speaking the framed protocol (server_test_client.h). Its `run` cases need
# the client library and the sample program and skip until they are built.
if(TARGET woolyd-fake)
  wooly_cc_test(NAME cli_e2e_test
    SRCS ${CMAKE_CURRENT_LIST_DIR}/cli_e2e_test.cc
    DEPS wooly::proto wooly::wire wooly::cuda_headers protobuf::libprotobuf)
  add_dependencies(cli_e2e_test wooly-cli woolyd-fake)
  foreach(_t wooly_client wooly_prog_vector_add)  # when they exist: the `run` cases
    if(TARGET ${_t})
      add_dependencies(cli_e2e_test ${_t})
    endif()
  endforeach()
  target_compile_definitions(cli_e2e_test PRIVATE
    WOOLY_CLI="$<TARGET_FILE:wooly-cli>"
    WOOLY_FAKE_WOOLYD="$<TARGET_FILE:woolyd-fake>"
    WOOLY_CLIENT_LIB="${PROJECT_BINARY_DIR}/client/libcuda.so.1"
    WOOLY_VECTOR_ADD="${PROJECT_BINARY_DIR}/tests/programs/vector_add"
    WOOLY_FAKE_KERNELS="${PROJECT_SOURCE_DIR}/tests/kernels/test_kernels.fake")
endif()
