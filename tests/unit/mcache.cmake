# Content-addressed module cache (issue 4):
#  - sha256_test: SHA-256 in wooly::wire, FIPS vectors, streaming, and the
#    SHA-NI path against the portable one; prints both paths' MB/s;
#  - module_cache_test: woolyd's on-disk/in-memory store of module images.
wooly_cc_test(NAME sha256_test
  SRCS ${CMAKE_CURRENT_LIST_DIR}/sha256_test.cc
  DEPS wooly::wire
  LABELS unit)

wooly_cc_test(NAME module_cache_test
  SRCS ${CMAKE_CURRENT_LIST_DIR}/module_cache_test.cc
  DEPS wooly::server wooly::wire absl::status absl::statusor absl::synchronization
  LABELS unit)
