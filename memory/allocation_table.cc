#include "wooly/memory/allocation_table.h"

#include <iterator>

namespace wooly::memory {

bool AllocationTable::Insert(uint64_t base, uint64_t size) {
  if (size == 0 || base + size < base) return false;
  // The first range starting at or after `base` must start at or after our
  // end, and the one before it must end at or before our base.
  auto next = ranges_.lower_bound(base);
  if (next != ranges_.end() && next->first < base + size) return false;
  if (next != ranges_.begin()) {
    auto prev = std::prev(next);
    if (prev->first + prev->second > base) return false;
  }
  ranges_.emplace_hint(next, base, size);
  total_bytes_ += size;
  return true;
}

std::optional<Range> AllocationTable::Erase(uint64_t base) {
  auto it = ranges_.find(base);
  if (it == ranges_.end()) return std::nullopt;
  Range r{it->first, it->second};
  total_bytes_ -= it->second;
  ranges_.erase(it);
  return r;
}

std::optional<Range> AllocationTable::Find(uint64_t address) const {
  auto it = ranges_.upper_bound(address);
  if (it == ranges_.begin()) return std::nullopt;
  --it;
  if (address - it->first >= it->second) return std::nullopt;
  return Range{it->first, it->second};
}

bool AllocationTable::Contains(uint64_t address, uint64_t size) const {
  const std::optional<Range> r = Find(address);
  if (!r) return false;
  // Written to avoid overflow: the bytes left in the range from `address`.
  return size <= r->end() - address;
}

std::optional<Range> AllocationTable::FindExact(uint64_t base) const {
  auto it = ranges_.find(base);
  if (it == ranges_.end()) return std::nullopt;
  return Range{it->first, it->second};
}

void AllocationTable::Clear() {
  ranges_.clear();
  total_bytes_ = 0;
}

std::vector<Range> AllocationTable::Ranges() const {
  std::vector<Range> out;
  out.reserve(ranges_.size());
  for (const auto& [base, size] : ranges_) out.push_back(Range{base, size});
  return out;
}

}  // namespace wooly::memory
