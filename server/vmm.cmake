# VmmPhysicalMemory (wooly/server/vmm_physical_memory.h): memory::PhysicalMemory
# on the GpuBackend's VMM calls, with a pinned host pool (issue #6). Included
# from server/CMakeLists.txt; its own library so that woolyd's session layer,
# the tests and bench/swap_bench.cc link it as they need.
wooly_cc_library(NAME vmm_memory
  SRCS vmm_physical_memory.cc
  HDRS include/wooly/server/vmm_physical_memory.h
  PUBLIC_DEPS wooly::memory wooly::server_status wooly::wire wooly::cuda_headers
              absl::status absl::statusor absl::span absl::synchronization
  DEPS absl::strings)
