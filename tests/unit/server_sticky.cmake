# Sticky (context-corrupting) errors: poisoning, context reset and recovery
# of woolyd on the fake backend.
wooly_cc_test(NAME server_sticky_test
  SRCS ${CMAKE_CURRENT_LIST_DIR}/server_sticky_test.cc
  DEPS wooly::server wooly::fake_backend wooly::wire wooly::proto wooly::cli gRPC::grpc++
       protobuf::libprotobuf absl::synchronization absl::time)
