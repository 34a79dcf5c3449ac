# Small helpers in the manner of Abseil's absl_cc_library / absl_cc_test.
#
# wooly_cc_library(NAME foo SRCS a.cc HDRS x.h DEPS wooly::bar [PUBLIC_DEPS ...] [HEADER_ONLY])
#   -> target wooly_foo, alias wooly::foo; public headers in <dir>/include.
# wooly_cc_test(NAME foo_test SRCS t.cc DEPS ... [LABELS gpu ...])
#   -> a GoogleTest executable registered with CTest.

function(wooly_cc_library)
  cmake_parse_arguments(W "HEADER_ONLY" "NAME" "SRCS;HDRS;DEPS;PUBLIC_DEPS;COPTS" ${ARGN})
  set(_t wooly_${W_NAME})
  if(W_HEADER_ONLY OR NOT W_SRCS)
    add_library(${_t} INTERFACE)
    target_include_directories(${_t} INTERFACE ${CMAKE_CURRENT_SOURCE_DIR}/include)
    target_link_libraries(${_t} INTERFACE ${W_DEPS} ${W_PUBLIC_DEPS})
  else()
    add_library(${_t} STATIC ${W_SRCS} ${W_HDRS})
    target_include_directories(${_t} PUBLIC ${CMAKE_CURRENT_SOURCE_DIR}/include
                                     PRIVATE ${CMAKE_CURRENT_SOURCE_DIR})
    target_link_libraries(${_t} PUBLIC ${W_PUBLIC_DEPS} PRIVATE ${W_DEPS})
    target_compile_options(${_t} PRIVATE -Wall -Wextra -Wno-unused-parameter ${W_COPTS})
  endif()
  add_library(wooly::${W_NAME} ALIAS ${_t})
endfunction()

function(wooly_cc_test)
  cmake_parse_arguments(W "" "NAME" "SRCS;DEPS;LABELS" ${ARGN})
  add_executable(${W_NAME} ${W_SRCS})
  target_link_libraries(${W_NAME} PRIVATE ${W_DEPS} GTest::gtest GTest::gtest_main GTest::gmock)
  target_compile_options(${W_NAME} PRIVATE -Wall -Wno-unused-parameter)
  set(_props TIMEOUT 120)
  if(W_LABELS)
    list(APPEND _props LABELS "${W_LABELS}")
  endif()
  gtest_discover_tests(${W_NAME} DISCOVERY_MODE PRE_TEST PROPERTIES ${_props})
endfunction()

# wooly_bundle_rpath(target): lets an executable find shared libraries bundled
# beside it in ../lib (scripts/package-device.sh puts gRPC, Protobuf and
# Abseil there for the GPU machine, which has none of them). On a machine with
# the libraries installed the system copies are found as usual.
function(wooly_bundle_rpath target)
  set_target_properties(${target} PROPERTIES
    BUILD_RPATH "\$ORIGIN/../lib"
    INSTALL_RPATH "\$ORIGIN/../lib")
  # DT_RPATH, not DT_RUNPATH: only RPATH is searched for the libraries'
  # own dependencies too (libgrpc++ -> libgrpc -> ...).
  target_link_options(${target} PRIVATE -Wl,--disable-new-dtags)
endfunction()
