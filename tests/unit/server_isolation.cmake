# Tenant isolation through the driver API (issue #6): every forwarded call
# that takes a device pointer, on another tenant's memory resident and
# swapped out; and per-client overcommit overrides and the pool's capacity
# (--memory-capacity). Fake backend, manual clock.
wooly_cc_test(NAME server_isolation_test
  SRCS ${CMAKE_CURRENT_LIST_DIR}/server_isolation_test.cc
  DEPS wooly::server wooly::fake_backend wooly::wire wooly::scheduler
  LABELS unit)

wooly_cc_test(NAME server_memory_config_test
  SRCS ${CMAKE_CURRENT_LIST_DIR}/server_memory_config_test.cc
  DEPS wooly::server wooly::fake_backend wooly::wire wooly::scheduler absl::time
  LABELS unit)
