// The client's record of device memory it knows about: allocations from
// cuMemAlloc and module globals. It answers cuMemGetAddressRange and tells
// device pointers from host pointers for unified-addressing copies without
// a round trip: anything not in the table is host memory.
//
// To make that classification sound, the table also reserves each recorded
// range in this process's address space (PROT_NONE, no memory committed),
// as the real driver does for unified addressing, so host allocations can
// never land on a device address. A range that is already in use here (e.g.
// woolyd's fake backend in the same process) simply stays unreserved.
//
// Thread safety: all methods are thread-safe (a reader/writer lock; lookups
// share it).
#ifndef WOOLY_CLIENT_ALLOC_TABLE_H_
#define WOOLY_CLIENT_ALLOC_TABLE_H_

#include <cstdint>
#include <map>
#include <new>
#include <shared_mutex>
#include <vector>

namespace wooly::client {

// A process-unique id for a new allocation of any kind (device or host);
// never returns the same value twice. Thread-safe.
uint64_t NewBufferId();

// Reserves the pages of [base, base + size) in this process's address space
// (PROT_NONE), as AllocTable::Insert does for a record; false when they are
// in use already. UnreserveDeviceRange gives them back.
bool ReserveDeviceRange(uint64_t base, uint64_t size);
void UnreserveDeviceRange(uint64_t base, uint64_t size);

class AllocTable {
 public:
  enum class Kind { kAlloc, kGlobal };
  struct Record {
    uint64_t base = 0;
    uint64_t size = 0;
    Kind kind = Kind::kAlloc;
    const void* owner = nullptr;  // Context* for allocations, Module*/Library* for globals
    bool reserved = false;        // the range is reserved in our address space
    // Process-unique, never reused (CU_POINTER_ATTRIBUTE_BUFFER_ID); set by Insert.
    uint64_t buffer_id = 0;
  };

  // When `reserve_address_space` is false (tests), no ranges are reserved.
  explicit AllocTable(bool reserve_address_space = true) : reserve_(reserve_address_space) {}
  ~AllocTable();

  // Records [base, base + size). A record with the same base is kept as is.
  // `reserve` false skips the address-space reservation (for ranges whose
  // addresses the caller reserved already, e.g. a VMM reservation).
  void Insert(uint64_t base, uint64_t size, Kind kind, const void* owner, bool reserve = true);
  // Removes the record starting at `base`; false when there is none.
  bool Remove(uint64_t base, Record* removed = nullptr);
  // The record containing `ptr`; false when `ptr` is not device memory we know.
  bool Find(uint64_t ptr, Record* out) const;
  bool Contains(uint64_t ptr) const { return Find(ptr, nullptr); }
  // True when [ptr, ptr + n) lies inside one record (n > 0).
  bool ContainsRange(uint64_t ptr, uint64_t n) const {
    Record r;
    return n > 0 && Find(ptr, &r) && n <= r.size && ptr - r.base <= r.size - n;
  }
  // Removes and returns every record of `owner`.
  std::vector<Record> RemoveOwnedBy(const void* owner);
  // Forgets everything (the child after fork: the parent's memory is not ours).
  void Clear();

  // pthread_atfork support: the lock is held across fork() so no other
  // thread is inside the table when the child is created. The parent then
  // unlocks; the child re-creates the lock instead, because an rwlock
  // remembers its writer's thread id, which differs in the child.
  void LockForFork() { mu_.lock(); }
  void UnlockAfterForkInParent() { mu_.unlock(); }
  void ResetLockAfterForkInChild() { new (&mu_) std::shared_mutex(); }

 private:
  void Release(Record& r);

  const bool reserve_;
  mutable std::shared_mutex mu_;
  std::map<uint64_t, Record> by_base_;  // guarded by mu_
};

}  // namespace wooly::client

#endif  // WOOLY_CLIENT_ALLOC_TABLE_H_
