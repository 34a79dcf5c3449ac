# Weight dedup hashing (issue 6):
#  - blake3_test: BLAKE3 in wooly::wire against digests from b3sum, and the
#    AVX2/AVX-512 paths against the portable one over many lengths and
#    Update splits.
wooly_cc_test(NAME blake3_test
  SRCS ${CMAKE_CURRENT_LIST_DIR}/blake3_test.cc
  DEPS wooly::wire
  LABELS unit)
# The batch functions are tested directly too (blake3_internal.h).
target_include_directories(blake3_test PRIVATE ${PROJECT_SOURCE_DIR}/proto)
# - worker_pool_test: wire::WorkerPool, the threads the digests hash on
#   (each thread once per job, concurrent callers, a forked child's pool).
wooly_cc_test(NAME worker_pool_test
  SRCS ${CMAKE_CURRENT_LIST_DIR}/worker_pool_test.cc
  DEPS wooly::wire
  LABELS unit)
