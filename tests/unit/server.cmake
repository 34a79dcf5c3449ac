# Unit tests of woolyd's core (sessions, transports, gRPC services, daemon
# flags), the fake backend, and the memory/ and scheduler/ libraries.
wooly_cc_test(NAME memory_test
  SRCS ${CMAKE_CURRENT_LIST_DIR}/memory_allocation_table_test.cc
  DEPS wooly::memory)

wooly_cc_test(NAME scheduler_test
  SRCS ${CMAKE_CURRENT_LIST_DIR}/scheduler_stream_priority_test.cc
  DEPS wooly::scheduler)

wooly_cc_test(NAME server_test
  SRCS ${CMAKE_CURRENT_LIST_DIR}/server_session_test.cc
       ${CMAKE_CURRENT_LIST_DIR}/server_grpc_test.cc
       ${CMAKE_CURRENT_LIST_DIR}/server_daemon_flags_test.cc
       ${CMAKE_CURRENT_LIST_DIR}/server_fake_backend_test.cc
  DEPS wooly::server wooly::fake_backend wooly::wire wooly::proto gRPC::grpc++
       protobuf::libprotobuf absl::synchronization absl::time)

# The queue of posted launches each session runs on its own thread.
wooly_cc_test(NAME server_launch_pipeline_test
  SRCS ${CMAKE_CURRENT_LIST_DIR}/server_launch_pipeline_test.cc
  DEPS wooly::server)

# Graphs and stream capture through woolyd on the fake backend.
wooly_cc_test(NAME server_graphs_test
  SRCS ${CMAKE_CURRENT_LIST_DIR}/server_graphs_test.cc
  DEPS wooly::server wooly::fake_backend wooly::wire wooly::proto absl::synchronization
       absl::time absl::strings)

# The Prometheus endpoint, scraped over HTTP.
wooly_cc_test(NAME server_metrics_test
  SRCS ${CMAKE_CURRENT_LIST_DIR}/server_metrics_test.cc
  DEPS wooly::server wooly::fake_backend wooly::wire PkgConfig::HTTPLIB absl::strings
  LABELS unit)

# Tenants, memory limits, the NVML view op and the scheduler's mechanism.
wooly_cc_test(NAME server_scheduler_test
  SRCS ${CMAKE_CURRENT_LIST_DIR}/server_scheduler_test.cc
  DEPS wooly::server wooly::fake_backend wooly::wire wooly::scheduler absl::synchronization
       absl::time
  LABELS unit)
