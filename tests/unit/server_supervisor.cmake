# woolyd's supervisor: the restart policy, and woolyd-fake run as a
# subprocess whose worker loses its GPU context for good (the fake's reset
# made to fail, as the real driver's does) and is replaced.
if(TARGET woolyd-fake)
  wooly_cc_test(NAME server_supervisor_test
    SRCS ${CMAKE_CURRENT_LIST_DIR}/server_supervisor_test.cc
    DEPS wooly::server wooly::fake_backend wooly::wire wooly::proto absl::time)
  add_dependencies(server_supervisor_test woolyd-fake)
  target_compile_definitions(server_supervisor_test PRIVATE
    WOOLY_FAKE_WOOLYD="$<TARGET_FILE:woolyd-fake>")
endif()
