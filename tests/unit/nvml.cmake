# Wooly's libnvidia-ml.so.1 (nvml/). Included from tests/CMakeLists.txt, so
# paths are relative to this file.
if(NOT TARGET wooly_nvml)
  return()
endif()
set(_nvml_tests ${CMAKE_CURRENT_LIST_DIR})

# The shipped library, loaded with dlopen as pynvml and PyTorch load it,
# against the in-process fake woolyd (client_fake_woolyd.h).
wooly_cc_test(NAME nvml_view_test
  SRCS ${_nvml_tests}/nvml_view_test.cc
  DEPS wooly::wire wooly::cuda_headers Threads::Threads ${CMAKE_DL_LIBS}
  LABELS unit)
target_include_directories(nvml_view_test PRIVATE ${PROJECT_SOURCE_DIR}/nvml ${_nvml_tests})
target_compile_definitions(nvml_view_test PRIVATE WOOLY_NVML_LIB="$<TARGET_FILE:wooly_nvml>")
add_dependencies(nvml_view_test wooly_nvml)

# Formats, parsers, host files and payloads, linked from the objects.
wooly_cc_test(NAME nvml_device_test
  SRCS ${_nvml_tests}/nvml_device_test.cc
  DEPS wooly::nvml_core
  LABELS unit)

# Exports, soname and dependencies of the shipped library.
add_test(NAME nvml_selfcontained
  COMMAND sh ${_nvml_tests}/nvml_selfcontained.sh $<TARGET_FILE:wooly_nvml>)
set_tests_properties(nvml_selfcontained PROPERTIES LABELS unit TIMEOUT 60)

# Against a real woolyd (woolyd-fake): two tenants allocate through
# libcuda.so.1 and each sees only its own limit, use and process.
if(TARGET woolyd-fake AND TARGET wooly_client)
  foreach(_transport unix tcp)
    add_test(NAME integration.nvml_view.${_transport}
      COMMAND ${Python3_EXECUTABLE} ${PROJECT_SOURCE_DIR}/tests/integration/nvml_view.py
              --server $<TARGET_FILE:woolyd-fake>
              --client-dir $<TARGET_FILE_DIR:wooly_client>
              --nvml-dir $<TARGET_FILE_DIR:wooly_nvml>
              --transport ${_transport})
    set_tests_properties(integration.nvml_view.${_transport} PROPERTIES
      LABELS integration TIMEOUT 180)
  endforeach()
endif()
