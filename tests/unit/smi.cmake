# wooly-smi, Wooly's nvidia-smi front-end (smi/). Included from
# tests/CMakeLists.txt, so paths are relative to this file.
if(NOT TARGET wooly-smi)
  return()
endif()
set(_smi_tests ${CMAKE_CURRENT_LIST_DIR})

# Arguments and output formats, with fake snapshots (no NVML).
wooly_cc_test(NAME smi_format_test
  SRCS ${_smi_tests}/smi_format_test.cc
  DEPS wooly::smi_format
  LABELS unit)

# Needs only glibc, like the NVML view it ships beside.
add_test(NAME smi_selfcontained
  COMMAND sh ${_smi_tests}/smi_selfcontained.sh $<TARGET_FILE:wooly-smi>)
set_tests_properties(smi_selfcontained PROPERTIES LABELS unit TIMEOUT 60)

# Against a real woolyd (woolyd-fake) and the built NVML view: two tenants,
# nvidia-smi run as one of them (tests/integration/smi_view.py).
if(TARGET woolyd-fake AND TARGET wooly_client AND TARGET wooly_nvml)
  foreach(_transport unix tcp)
    add_test(NAME integration.smi_view.${_transport}
      COMMAND ${Python3_EXECUTABLE} ${PROJECT_SOURCE_DIR}/tests/integration/smi_view.py
              --server $<TARGET_FILE:woolyd-fake>
              --client-dir $<TARGET_FILE_DIR:wooly_client>
              --nvml-dir $<TARGET_FILE_DIR:wooly_nvml>
              --smi $<TARGET_FILE_DIR:wooly-smi>/nvidia-smi
              --transport ${_transport})
    set_tests_properties(integration.smi_view.${_transport} PROPERTIES
      LABELS integration TIMEOUT 180)
  endforeach()
endif()

# The built binary against the built NVML view and the in-process fake
# woolyd of the client tests, and against a stand-in for NVIDIA's library.
if(TARGET wooly_nvml)
  add_library(smi_fake_nvidia_nvml SHARED ${_smi_tests}/smi_fake_nvidia_nvml.cc)
  target_include_directories(smi_fake_nvidia_nvml PRIVATE ${PROJECT_SOURCE_DIR}/nvml)
  set_target_properties(smi_fake_nvidia_nvml PROPERTIES
    PREFIX "lib" OUTPUT_NAME "nvidia-ml" SUFFIX ".so.1" NO_SONAME ON
    LIBRARY_OUTPUT_DIRECTORY ${CMAKE_CURRENT_BINARY_DIR}/smi_fake_nvidia)
  wooly_cc_test(NAME smi_nvml_test
    SRCS ${_smi_tests}/smi_nvml_test.cc
    DEPS wooly::wire wooly::cuda_headers Threads::Threads
    LABELS unit)
  target_include_directories(smi_nvml_test PRIVATE ${_smi_tests})
  target_compile_definitions(smi_nvml_test PRIVATE
    WOOLY_NVML_LIB="$<TARGET_FILE:wooly_nvml>"
    WOOLY_SMI="$<TARGET_FILE_DIR:wooly-smi>/nvidia-smi"
    WOOLY_FAKE_NVIDIA_NVML="$<TARGET_FILE:smi_fake_nvidia_nvml>")
  add_dependencies(smi_nvml_test wooly_nvml wooly-smi smi_fake_nvidia_nvml)
endif()
