# The memory extensions (pools, VMM, pinned memory, pointer attributes,
# occupancy, limits, tensor maps):
#  - server_memory_ext_test: woolyd sessions over unix and TCP on the fake
#    backend, ownership refusals and cleanup at disconnect;
#  - client_memory_ext_test: libwooly's tables and pointer attributes, and the
#    driver API end to end against an in-process woolyd on the fake backend.
wooly_cc_test(NAME server_memory_ext_test
  SRCS ${CMAKE_CURRENT_LIST_DIR}/server_memory_ext_test.cc
  DEPS wooly::server wooly::fake_backend wooly::memory wooly::wire wooly::proto gRPC::grpc++
       protobuf::libprotobuf absl::synchronization absl::time
  LABELS unit)

wooly_cc_test(NAME client_memory_ext_test
  SRCS ${CMAKE_CURRENT_LIST_DIR}/client_memory_ext_test.cc
  DEPS wooly::client_core wooly::server wooly::fake_backend wooly::wire wooly::proto
       gRPC::grpc++ protobuf::libprotobuf absl::synchronization absl::time
  LABELS unit)
