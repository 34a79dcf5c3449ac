# Integration tests (label integration): every driver-API test program runs
# through Wooly's libcuda.so.1 against woolyd-fake, over the unix socket and
# over TCP; bad_input.py checks that broken clients cannot hurt the others.
# Each test starts its own server in a private temp dir (run_with_server.py).
include(${PROJECT_SOURCE_DIR}/tests/kernels/kernels.cmake)
include(${PROJECT_SOURCE_DIR}/tests/programs/programs.cmake)

if(NOT TARGET woolyd-fake OR NOT TARGET wooly_client)
  message(STATUS "integration tests need woolyd-fake and wooly_client; not registered")
  return()
endif()

set(_it_dir ${CMAKE_CURRENT_LIST_DIR})
set(_server $<TARGET_FILE:woolyd-fake>)
set(_client_dir $<TARGET_FILE_DIR:wooly_client>)

foreach(_p ${WOOLY_TEST_PROGRAMS})
  foreach(_transport unix tcp)
    add_test(NAME integration.${_p}.${_transport}
      COMMAND ${Python3_EXECUTABLE} ${_it_dir}/run_with_server.py
              --server ${_server} --client-dir ${_client_dir}
              --transport ${_transport} --expect "PASS ${_p}"
              -- $<TARGET_FILE:wooly_prog_${_p}> ${WOOLY_TEST_FAKE_MODULE})
    set_tests_properties(integration.${_p}.${_transport} PROPERTIES
      LABELS integration TIMEOUT 300)
  endforeach()
endforeach()

add_test(NAME integration.bad_input
  COMMAND ${Python3_EXECUTABLE} ${_it_dir}/bad_input.py
          --server ${_server} --client-dir ${_client_dir}
          --program $<TARGET_FILE:wooly_prog_vector_add> --image ${WOOLY_TEST_FAKE_MODULE})
set_tests_properties(integration.bad_input PROPERTIES LABELS integration TIMEOUT 300)

# What the Dockerfiles run (scripts/package-dist.sh), checked without Docker.
add_test(NAME integration.packaging
  COMMAND bash ${_it_dir}/packaging.sh ${CMAKE_BINARY_DIR})
set_tests_properties(integration.packaging PROPERTIES LABELS integration TIMEOUT 300)

# The Grafana dashboard queries only metrics woolyd exports.
add_test(NAME integration.dashboard
  COMMAND ${Python3_EXECUTABLE} ${_it_dir}/dashboard_check.py --server ${_server}
          --dashboard ${PROJECT_SOURCE_DIR}/deploy/grafana/wooly-dashboard.json)
set_tests_properties(integration.dashboard PROPERTIES LABELS integration TIMEOUT 120)
