// The client's record of page-locked ("pinned") host memory: what
// cuMemHostAlloc/cuMemAllocHost handed out and what cuMemHostRegister
// registered.
//
// The GPU is remote, so nothing is really pinned: cuMemHostAlloc returns
// ordinary page-aligned memory of this process, and registering memory only
// records it. Copies from and to such memory go over the wire like any host
// memory. The record answers cuMemHostGetFlags, cuMemHostGetDevicePointer
// and the pointer attributes of host memory. Host ranges never enter the
// device AllocTable, so cuMemcpy keeps classifying them as host memory.
//
// Thread safety: all methods are thread-safe (a reader/writer lock).
#ifndef WOOLY_CLIENT_HOST_ALLOC_TABLE_H_
#define WOOLY_CLIENT_HOST_ALLOC_TABLE_H_

#include <cstddef>
#include <cstdint>
#include <map>
#include <new>
#include <shared_mutex>

namespace wooly::client {

class HostAllocTable {
 public:
  enum class Kind { kAlloc, kRegistered };
  struct Record {
    uint64_t base = 0;
    uint64_t size = 0;
    unsigned flags = 0;  // CU_MEMHOSTALLOC_* or CU_MEMHOSTREGISTER_*
    Kind kind = Kind::kAlloc;
    const void* ctx = nullptr;  // the Context* current when it was made
    uint64_t buffer_id = 0;     // set by Insert when 0
    // Shared with woolyd (same address there, registered with the driver):
    // copies need no data on the wire and the device can dereference it.
    bool shared = false;
  };

  // Records `r` ([base, base + size), size > 0). False, changing nothing,
  // when it overlaps a recorded range or is empty.
  bool Insert(Record r);
  // Removes the record of `kind` starting exactly at `base`; false when
  // there is none.
  bool Remove(uint64_t base, Kind kind, Record* removed = nullptr);
  // The record containing `ptr`.
  bool Find(uint64_t ptr, Record* out) const;
  // True when [ptr, ptr + n) lies inside one shared record (n > 0).
  bool SharedRange(uint64_t ptr, uint64_t n) const {
    Record r;
    return n > 0 && Find(ptr, &r) && r.shared && n <= r.size && ptr - r.base <= r.size - n;
  }
  size_t size() const;
  void Clear();

  // pthread_atfork support, as AllocTable's.
  void LockForFork() { mu_.lock(); }
  void UnlockAfterForkInParent() { mu_.unlock(); }
  void ResetLockAfterForkInChild() { new (&mu_) std::shared_mutex(); }

 private:
  mutable std::shared_mutex mu_;
  std::map<uint64_t, Record> by_base_;  // guarded by mu_
};

}  // namespace wooly::client

#endif  // WOOLY_CLIENT_HOST_ALLOC_TABLE_H_
