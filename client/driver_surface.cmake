# The table-driven driver surface (tools/gen_driver_surface.py, client/generated/).
#
# Sets WOOLY_DRIVER_SURFACE_SRCS: the sources libwooly compiles for the
# surface (generated unsupported stubs, cuGetProcAddress, unsupported
# reporting). Their includes are "wooly/client/..." (client/include) and
# "generated/..." (client/), plus the CUDA headers.
#
# Also defines wooly::driver_surface, a static library of the same sources
# used by the unit tests (tests/unit/driver_surface.cmake), which link it with
# generated/test_impl_stubs.cc in place of the real implementations.
include_guard(GLOBAL)

set(WOOLY_DRIVER_SURFACE_DIR ${CMAKE_CURRENT_LIST_DIR})
set(WOOLY_DRIVER_SURFACE_SRCS
  ${WOOLY_DRIVER_SURFACE_DIR}/generated/unsupported_stubs.cc
  ${WOOLY_DRIVER_SURFACE_DIR}/proc_address.cc
  ${WOOLY_DRIVER_SURFACE_DIR}/unsupported.cc)
set(WOOLY_DRIVER_SURFACE_INCLUDE_DIRS
  ${WOOLY_DRIVER_SURFACE_DIR}/include
  ${WOOLY_DRIVER_SURFACE_DIR})

add_library(wooly_driver_surface STATIC
  ${WOOLY_DRIVER_SURFACE_SRCS}
  ${WOOLY_DRIVER_SURFACE_DIR}/include/wooly/client/driver_surface.h)
add_library(wooly::driver_surface ALIAS wooly_driver_surface)
set_target_properties(wooly_driver_surface PROPERTIES POSITION_INDEPENDENT_CODE ON)
target_include_directories(wooly_driver_surface
  PUBLIC ${WOOLY_DRIVER_SURFACE_DIR}/include
  PRIVATE ${WOOLY_DRIVER_SURFACE_DIR})
target_link_libraries(wooly_driver_surface PUBLIC wooly::cuda_headers PRIVATE wooly::wire)
target_compile_options(wooly_driver_surface PRIVATE -Wall -Wextra -Wno-unused-parameter)
