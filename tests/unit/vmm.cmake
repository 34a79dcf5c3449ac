# VmmPhysicalMemory (server/vmm_physical_memory.h, issue #6) on the fake
# backend: the PhysicalMemory contract under injected driver failures, swap
# round trips, read-only access flags, the pinned host pool, and
# memory::MemoryManager on top of it. The same round trips on a real GPU are
# tests/gpu/vmm_physical_memory_gpu_test.cc (label gpu).
wooly_cc_test(NAME server_vmm_memory_test
  SRCS ${CMAKE_CURRENT_LIST_DIR}/server_vmm_memory_test.cc
  DEPS wooly::vmm_memory wooly::fake_backend wooly::memory wooly::server_status
       absl::synchronization absl::time
  LABELS unit)

# The same round trips on the real CudaBackend (label gpu): skips without a
# GPU. Defined here rather than in tests/gpu/gpu.cmake so that issue #6 owns
# one file; scripts/gpu-suite.sh --pack builds, packs and runs it.
wooly_cc_test(NAME vmm_physical_memory_gpu_test
  SRCS ${PROJECT_SOURCE_DIR}/tests/gpu/vmm_physical_memory_gpu_test.cc
  DEPS wooly::vmm_memory wooly::cuda_backend wooly::server_status
  LABELS gpu)
wooly_bundle_rpath(vmm_physical_memory_gpu_test)
