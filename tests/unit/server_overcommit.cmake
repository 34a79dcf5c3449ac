# VRAM overcommit wired into woolyd (issue #6, server/node_memory.h): admission,
# swapping of idle clients with byte-exact round trips, noswap and priority
# protection, cleanup at disconnect; on the fake backend with a manual clock.
wooly_cc_test(NAME server_overcommit_test
  SRCS ${CMAKE_CURRENT_LIST_DIR}/server_overcommit_test.cc
  DEPS wooly::server wooly::fake_backend wooly::wire wooly::scheduler wooly::cli wooly::proto
       gRPC::grpc++ absl::time
  LABELS unit)
