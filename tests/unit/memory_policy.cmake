# VRAM overcommit, idleness-aware swapping and weight dedup: the policies and
# bookkeeping of issue #6 (memory/, docs/overcommit.md), against the byte-exact
# FakePhysicalMemory and a fake clock. All deterministic: no sleeps, no GPU.
foreach(_t memory_range_allocator memory_overcommit memory_vm_layout memory_swap_policy
           memory_dedup memory_manager)
  wooly_cc_test(NAME ${_t}_test
    SRCS ${CMAKE_CURRENT_LIST_DIR}/${_t}_test.cc
    DEPS wooly::memory wooly::wire absl::status absl::statusor absl::time
    LABELS unit)
endforeach()
