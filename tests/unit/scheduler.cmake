# Scheduler policy and measurement (issue 5), on an injected clock:
#  - scheduler_policy_test: tenant policies (environment, policy file,
#    override precedence) and the SM-share allocator;
#  - scheduler_measure_test: the usage meter's sliding windows and the
#    control loop (reallocation after demand changes, pacing, hysteresis).
# The stream-priority mapping's scheduler_test is registered in server.cmake.
wooly_cc_test(NAME scheduler_policy_test
  SRCS ${CMAKE_CURRENT_LIST_DIR}/scheduler_policy_test.cc
  DEPS wooly::scheduler absl::status absl::statusor absl::strings
  LABELS unit)

wooly_cc_test(NAME scheduler_measure_test
  SRCS ${CMAKE_CURRENT_LIST_DIR}/scheduler_measure_test.cc
  DEPS wooly::scheduler absl::status absl::statusor absl::time
  LABELS unit)

# The launch pacer: a token bucket over GPU time (scheduler/pacer.h), with a
# simulated tenant and GPU on a manual clock.
wooly_cc_test(NAME scheduler_pacer_test
  SRCS ${CMAKE_CURRENT_LIST_DIR}/scheduler_pacer_test.cc
  DEPS wooly::scheduler absl::status absl::time
  LABELS unit)
