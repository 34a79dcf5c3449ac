# Weight dedup wired into woolyd (issue #6 part 4, server/node_memory.h):
# server-verified sharing of whole chunks, copy-on-write, kDedupProbe, last
# free; on the fake backend, clients speaking the framed protocol in-process.
wooly_cc_test(NAME server_dedup_test
  SRCS ${CMAKE_CURRENT_LIST_DIR}/server_dedup_test.cc
  DEPS wooly::server wooly::fake_backend wooly::wire wooly::scheduler wooly::proto
       gRPC::grpc++ absl::time
  LABELS unit)

# libwooly's dedup probe end to end against an in-process woolyd.
wooly_cc_test(NAME client_dedup_test
  SRCS ${CMAKE_CURRENT_LIST_DIR}/client_dedup_test.cc
  DEPS wooly::client_core wooly::server wooly::fake_backend wooly::wire wooly::proto
       gRPC::grpc++ protobuf::libprotobuf absl::time
  LABELS unit)
