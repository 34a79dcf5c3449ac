#include "alloc_table.h"

#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <mutex>

#include "log.h"

namespace wooly::client {
namespace {

uint64_t PageSize() {
  static const uint64_t page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  return page;
}

// The page-aligned span covering [base, base + size).
void PageSpan(uint64_t base, uint64_t size, uint64_t* start, uint64_t* len) {
  const uint64_t page = PageSize();
  *start = base & ~(page - 1);
  const uint64_t end = (base + size + page - 1) & ~(page - 1);
  *len = end - *start;
}

}  // namespace

bool ReserveDeviceRange(uint64_t base, uint64_t size) {
  if (size == 0 || base + size < base) return false;
  uint64_t start, len;
  PageSpan(base, size, &start, &len);
  void* want = reinterpret_cast<void*>(start);
  void* got = ::mmap(want, len, PROT_NONE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED_NOREPLACE, -1, 0);
  if (got == MAP_FAILED) {
    WLOG_INFO(
        "device range 0x%llx+%llu overlaps memory mapped in this process; unified "
        "copies touching it may be misclassified",
        static_cast<unsigned long long>(base), static_cast<unsigned long long>(size));
    return false;
  }
  if (got != want) {  // a kernel without MAP_FIXED_NOREPLACE placed it elsewhere
    ::munmap(got, len);
    return false;
  }
  return true;
}

void UnreserveDeviceRange(uint64_t base, uint64_t size) {
  uint64_t start, len;
  PageSpan(base, size, &start, &len);
  ::munmap(reinterpret_cast<void*>(start), len);
}

uint64_t NewBufferId() {
  static std::atomic<uint64_t> next{1};
  return next.fetch_add(1, std::memory_order_relaxed);
}

AllocTable::~AllocTable() { Clear(); }

void AllocTable::Release(Record& r) {
  if (!r.reserved) return;
  UnreserveDeviceRange(r.base, r.size);
  r.reserved = false;
}

void AllocTable::Insert(uint64_t base, uint64_t size, Kind kind, const void* owner, bool reserve) {
  Record r{base, size, kind, owner, false, NewBufferId()};
  {
    std::shared_lock<std::shared_mutex> lock(mu_);
    if (by_base_.count(base) != 0) return;
  }
  // Reserve outside the lock: mmap can be slow and lookups must not wait.
  // Two ranges of one page may share a page; only the first reserves it.
  r.reserved = reserve_ && reserve && ReserveDeviceRange(base, size);
  std::unique_lock<std::shared_mutex> lock(mu_);
  auto [it, inserted] = by_base_.emplace(base, r);
  if (!inserted) Release(r);
}

bool AllocTable::Remove(uint64_t base, Record* removed) {
  Record r;
  {
    std::unique_lock<std::shared_mutex> lock(mu_);
    auto it = by_base_.find(base);
    if (it == by_base_.end()) return false;
    r = it->second;
    by_base_.erase(it);
  }
  Release(r);
  if (removed != nullptr) *removed = r;
  return true;
}

bool AllocTable::Find(uint64_t ptr, Record* out) const {
  std::shared_lock<std::shared_mutex> lock(mu_);
  auto it = by_base_.upper_bound(ptr);
  if (it == by_base_.begin()) return false;
  --it;
  const Record& r = it->second;
  // A zero-sized global still owns its base address.
  if (ptr - r.base >= r.size && !(r.size == 0 && ptr == r.base)) return false;
  if (out != nullptr) *out = r;
  return true;
}

std::vector<AllocTable::Record> AllocTable::RemoveOwnedBy(const void* owner) {
  std::vector<Record> out;
  {
    std::unique_lock<std::shared_mutex> lock(mu_);
    for (auto it = by_base_.begin(); it != by_base_.end();) {
      if (it->second.owner == owner) {
        out.push_back(it->second);
        it = by_base_.erase(it);
      } else {
        ++it;
      }
    }
  }
  for (Record& r : out) Release(r);
  return out;
}

void AllocTable::Clear() {
  std::map<uint64_t, Record> all;
  {
    std::unique_lock<std::shared_mutex> lock(mu_);
    all.swap(by_base_);
  }
  for (auto& [base, r] : all) Release(r);
}

}  // namespace wooly::client
