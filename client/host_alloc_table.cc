#include "host_alloc_table.h"

#include <iterator>
#include <mutex>

#include "alloc_table.h"

namespace wooly::client {

bool HostAllocTable::Insert(Record r) {
  if (r.size == 0 || r.base + r.size < r.base) return false;
  if (r.buffer_id == 0) r.buffer_id = NewBufferId();
  std::unique_lock<std::shared_mutex> lock(mu_);
  auto next = by_base_.lower_bound(r.base);
  if (next != by_base_.end() && next->first < r.base + r.size) return false;
  if (next != by_base_.begin()) {
    const Record& prev = std::prev(next)->second;
    if (prev.base + prev.size > r.base) return false;
  }
  by_base_.emplace(r.base, r);
  return true;
}

bool HostAllocTable::Remove(uint64_t base, Kind kind, Record* removed) {
  std::unique_lock<std::shared_mutex> lock(mu_);
  auto it = by_base_.find(base);
  if (it == by_base_.end() || it->second.kind != kind) return false;
  if (removed != nullptr) *removed = it->second;
  by_base_.erase(it);
  return true;
}

bool HostAllocTable::Find(uint64_t ptr, Record* out) const {
  std::shared_lock<std::shared_mutex> lock(mu_);
  auto it = by_base_.upper_bound(ptr);
  if (it == by_base_.begin()) return false;
  --it;
  if (ptr - it->second.base >= it->second.size) return false;
  if (out != nullptr) *out = it->second;
  return true;
}

size_t HostAllocTable::size() const {
  std::shared_lock<std::shared_mutex> lock(mu_);
  return by_base_.size();
}

void HostAllocTable::Clear() {
  std::unique_lock<std::shared_mutex> lock(mu_);
  by_base_.clear();
}

}  // namespace wooly::client
