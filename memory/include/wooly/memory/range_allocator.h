// A best-fit allocator of offsets in one fixed range, with alignment, free
// and coalescing of neighbouring free blocks.
//
// VmLayout uses one per client for the client's device virtual range (block
// alignment: the physical granularity) and one per small chunk to
// sub-allocate small allocations inside it.
//
// Best fit: a request takes the smallest free block that holds it once its
// start is aligned; the alignment gap before it stays free. Freed blocks
// merge with free neighbours, so freeing everything restores one block.
//
// Thread safety: thread-compatible.
#ifndef WOOLY_MEMORY_RANGE_ALLOCATOR_H_
#define WOOLY_MEMORY_RANGE_ALLOCATOR_H_

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <utility>

namespace wooly::memory {

class RangeAllocator {
 public:
  // Manages [base, base + size). base + size must not pass 2^64.
  RangeAllocator(uint64_t base, uint64_t size);

  // A block of `size` bytes whose start is a multiple of `alignment` (a power
  // of two; 0 or 1 = any). nullopt when size is 0, the alignment is not a
  // power of two, or no free block holds it.
  std::optional<uint64_t> Allocate(uint64_t size, uint64_t alignment);

  // True when Allocate(size, alignment) would succeed now.
  bool Fits(uint64_t size, uint64_t alignment) const;

  // Frees the block starting at `address`. False when no allocated block
  // starts there (an interior address does not count).
  bool Free(uint64_t address);

  // The size of the allocated block starting at `address`.
  std::optional<uint64_t> SizeOf(uint64_t address) const;

  uint64_t base() const { return base_; }
  uint64_t size() const { return size_; }
  uint64_t used_bytes() const { return used_bytes_; }
  uint64_t free_bytes() const { return size_ - used_bytes_; }
  // The largest free block (alignment not considered).
  uint64_t largest_free() const;
  size_t allocated_blocks() const { return used_.size(); }
  size_t free_blocks() const { return free_by_addr_.size(); }
  bool empty() const { return used_.empty(); }

 private:
  // The free block (start, padding before the aligned start) Allocate would
  // take.
  std::optional<std::pair<uint64_t, uint64_t>> FindFit(uint64_t size, uint64_t alignment) const;
  void InsertFree(uint64_t addr, uint64_t size);
  void EraseFree(std::map<uint64_t, uint64_t>::iterator it);

  uint64_t base_;
  uint64_t size_;
  uint64_t used_bytes_ = 0;
  std::map<uint64_t, uint64_t> free_by_addr_;             // start -> size
  std::set<std::pair<uint64_t, uint64_t>> free_by_size_;  // (size, start)
  std::map<uint64_t, uint64_t> used_;                     // start -> size
};

}  // namespace wooly::memory

#endif  // WOOLY_MEMORY_RANGE_ALLOCATOR_H_
