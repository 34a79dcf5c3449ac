// An interval map of device address ranges: base -> size.
//
// woolyd keeps one table per client for the allocations it made, and one for
// the module/library globals it looked up, so that every device pointer a
// client sends can be checked to lie inside memory that client owns.
//
// Ranges never overlap: Insert refuses a range that overlaps an existing
// one. Zero-sized ranges are not stored.
//
// Thread safety: thread-compatible. Const methods may run concurrently with
// each other; any mutation needs external synchronization (woolyd guards
// each table with its session's lock).
#ifndef WOOLY_MEMORY_ALLOCATION_TABLE_H_
#define WOOLY_MEMORY_ALLOCATION_TABLE_H_

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <vector>

namespace wooly::memory {

struct Range {
  uint64_t base = 0;
  uint64_t size = 0;
  uint64_t end() const { return base + size; }  // one past the last byte
  friend bool operator==(const Range&, const Range&) = default;
};

class AllocationTable {
 public:
  // Adds [base, base + size). Returns false, leaving the table unchanged,
  // when size is 0, the range wraps past 2^64, or it overlaps a stored range.
  bool Insert(uint64_t base, uint64_t size);

  // Removes the range starting exactly at `base`; returns it, or nullopt when
  // no range starts there (an interior address does not count).
  std::optional<Range> Erase(uint64_t base);

  // The stored range containing `address`, if any.
  std::optional<Range> Find(uint64_t address) const;

  // True when [address, address + size) lies entirely inside ONE stored
  // range. A zero size asks whether `address` itself is inside one.
  bool Contains(uint64_t address, uint64_t size) const;

  // The stored range starting exactly at `base`, if any.
  std::optional<Range> FindExact(uint64_t base) const;

  uint64_t TotalBytes() const { return total_bytes_; }
  size_t size() const { return ranges_.size(); }
  bool empty() const { return ranges_.empty(); }
  void Clear();

  // Every stored range in address order.
  std::vector<Range> Ranges() const;

 private:
  std::map<uint64_t, uint64_t> ranges_;  // base -> size
  uint64_t total_bytes_ = 0;
};

}  // namespace wooly::memory

#endif  // WOOLY_MEMORY_ALLOCATION_TABLE_H_
