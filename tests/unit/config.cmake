# Configuration (issue #7): woolyd's config file keys and flags, the server's
# client defaults and WOOLY_MEMORY_REQUIRED, and the client config file.
wooly_cc_test(NAME server_daemon_config_test
  SRCS ${CMAKE_CURRENT_LIST_DIR}/server_daemon_config_test.cc
  DEPS wooly::server wooly::fake_backend wooly::scheduler wooly::wire absl::strings absl::time
  LABELS unit)

wooly_cc_test(NAME client_config_file_test
  SRCS ${CMAKE_CURRENT_LIST_DIR}/client_config_file_test.cc
  DEPS wooly::wire
  LABELS unit)
