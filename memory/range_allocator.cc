#include "wooly/memory/range_allocator.h"

#include <iterator>

namespace wooly::memory {

RangeAllocator::RangeAllocator(uint64_t base, uint64_t size) : base_(base), size_(size) {
  if (size > 0) InsertFree(base, size);
}

void RangeAllocator::InsertFree(uint64_t addr, uint64_t size) {
  free_by_addr_[addr] = size;
  free_by_size_.insert({size, addr});
}

void RangeAllocator::EraseFree(std::map<uint64_t, uint64_t>::iterator it) {
  free_by_size_.erase({it->second, it->first});
  free_by_addr_.erase(it);
}

std::optional<std::pair<uint64_t, uint64_t>> RangeAllocator::FindFit(uint64_t size,
                                                                     uint64_t alignment) const {
  if (size == 0) return std::nullopt;
  if (alignment == 0) alignment = 1;
  if ((alignment & (alignment - 1)) != 0) return std::nullopt;
  for (auto it = free_by_size_.lower_bound({size, 0}); it != free_by_size_.end(); ++it) {
    const auto [block_size, block] = *it;
    // The padding up to the alignment, computed without overflow.
    uint64_t misalign = block & (alignment - 1);
    uint64_t pad = misalign == 0 ? 0 : alignment - misalign;
    if (pad > block_size || block_size - pad < size) continue;
    return std::make_pair(block, pad);
  }
  return std::nullopt;
}

bool RangeAllocator::Fits(uint64_t size, uint64_t alignment) const {
  return FindFit(size, alignment).has_value();
}

std::optional<uint64_t> RangeAllocator::Allocate(uint64_t size, uint64_t alignment) {
  std::optional<std::pair<uint64_t, uint64_t>> fit = FindFit(size, alignment);
  if (!fit) return std::nullopt;
  const auto [block, pad] = *fit;
  const uint64_t block_size = free_by_addr_.at(block);
  const uint64_t start = block + pad;
  EraseFree(free_by_addr_.find(block));
  if (pad > 0) InsertFree(block, pad);
  const uint64_t tail = block_size - pad - size;
  if (tail > 0) InsertFree(start + size, tail);
  used_[start] = size;
  used_bytes_ += size;
  return start;
}

bool RangeAllocator::Free(uint64_t address) {
  auto u = used_.find(address);
  if (u == used_.end()) return false;
  uint64_t start = u->first;
  uint64_t size = u->second;
  used_bytes_ -= size;
  used_.erase(u);
  // Merge with the free block after it, then the one before it.
  auto next = free_by_addr_.find(start + size);
  if (next != free_by_addr_.end()) {
    size += next->second;
    EraseFree(next);
  }
  auto prev = free_by_addr_.lower_bound(start);
  if (prev != free_by_addr_.begin()) {
    --prev;
    if (prev->first + prev->second == start) {
      start = prev->first;
      size += prev->second;
      EraseFree(prev);
    }
  }
  InsertFree(start, size);
  return true;
}

std::optional<uint64_t> RangeAllocator::SizeOf(uint64_t address) const {
  auto u = used_.find(address);
  if (u == used_.end()) return std::nullopt;
  return u->second;
}

uint64_t RangeAllocator::largest_free() const {
  return free_by_size_.empty() ? 0 : std::prev(free_by_size_.end())->first;
}

}  // namespace wooly::memory
