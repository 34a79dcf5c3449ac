// libwooly's records for the memory extensions, and pointer attributes
// answered from them (api_memory_ext.cc has the entry points).
//
// What the client knows, without asking woolyd:
//  - device memory: AllocTable (driver.h) holds every device range the
//    process may name: cuMemAlloc and stream-ordered allocations (owner: the
//    Context*), module/library globals (owner: Module*/Library*) and VMM
//    mappings (owner: VmmOwner());
//  - MemoryExtRecords adds what pointer attributes need on top: which pool
//    an allocation came from, VA reservations, generic allocation handles
//    and mappings, access flags;
//  - HostAllocTable: pinned/registered host memory.
// Memory pools are client objects (MemPool) whose id is the session's; the
// default pool is one process-wide object with id 0, which woolyd serves
// from a pool of this client's own.
//
// Thread safety: everything here is thread-safe. The records and the tables
// are process-wide, never destroyed, and reset in the child after fork()
// (the parent's pools, handles and reservations belong to its session;
// pinned host memory stays, since the child inherits it).
#ifndef WOOLY_CLIENT_MEMORY_EXT_H_
#define WOOLY_CLIENT_MEMORY_EXT_H_

#include <cuda.h>

#include <cstdint>
#include <map>
#include <mutex>
#include <set>

#include "alloc_table.h"
#include "host_alloc_table.h"
#include "objects.h"

namespace wooly::client {

// Tag of MemPool objects ("WPOL"); Tag lists the other handle kinds.
inline constexpr Tag kMemPoolTag = static_cast<Tag>(0x4c4f5057);

// The object behind a CUmemoryPool.
struct MemPool : Object {
  MemPool() : Object(kMemPoolTag) {}
  uint64_t id = 0;            // the session's pool id; 0 for the default pool
  uint32_t handle_types = 0;  // CUmemPoolProps::handleTypes
};
inline MemPool* AsMemPool(CUmemoryPool h) { return As<MemPool>(h, kMemPoolTag); }

// The AllocTable owner of VMM mappings (never a Context, so releasing a
// context leaves them alone, as the driver does).
const void* VmmOwner();

class MemoryExtRecords {
 public:
  struct PoolAllocation {
    CUmemoryPool pool = nullptr;
    uint32_t handle_types = 0;
  };
  struct VmmInfo {
    uint64_t reservation_base = 0;  // the reserved range (RANGE_START_ADDR/SIZE)
    uint64_t reservation_size = 0;
    uint64_t mapping_base = 0;  // the mapping containing the pointer
    uint64_t mapping_size = 0;
    uint32_t handle_types = 0;  // requested handle types of the mapped allocation
    bool rdma_capable = false;
    uint64_t block_id = 0;  // process-unique per generic allocation handle
    unsigned access = 0;    // CUmemAccess_flags for device 0
  };

  MemoryExtRecords();

  // --- pools
  MemPool* DefaultPool() { return &default_pool_; }
  // The pool cuMemAllocAsync uses (cuDeviceGetMemPool).
  MemPool* CurrentPool();
  // False when `pool` is neither the default pool nor a live created pool.
  bool SetCurrentPool(MemPool* pool);
  void AddPool(MemPool* pool);
  // Forgets a created pool (making the default pool current if it was);
  // false when it is not live.
  bool RemovePool(MemPool* pool);
  bool PoolIsLive(const MemPool* pool) const;

  // --- stream-ordered allocations (`buffer_id`: the AllocTable record's)
  void AddPoolAllocation(uint64_t base, uint64_t buffer_id, const MemPool* pool);
  void RemovePoolAllocation(uint64_t base);
  // The pool of the allocation at `base` whose AllocTable record has
  // `buffer_id` (so a stale entry never describes newer memory at the same
  // address).
  bool FindPoolAllocation(uint64_t base, uint64_t buffer_id, PoolAllocation* out) const;

  // --- VMM. Reservations are also reserved (PROT_NONE) in this process's
  // address space when `reserve_locally`, so host memory never lands there.
  void AddReservation(uint64_t base, uint64_t size, bool reserve_locally);
  bool RemoveReservation(uint64_t base);
  void AddHandle(uint64_t id, uint64_t size, uint32_t handle_types, bool rdma_capable);
  void RetainHandle(uint64_t id);
  void ReleaseHandle(uint64_t id);
  void AddMapping(uint64_t base, uint64_t size, uint64_t handle);
  // Removes the mappings inside [base, base + size); returns their bases.
  std::set<uint64_t> RemoveMappings(uint64_t base, uint64_t size);
  // Records the access flags of the mappings inside [base, base + size).
  void SetAccess(uint64_t base, uint64_t size, unsigned flags);
  bool FindVmm(uint64_t ptr, VmmInfo* out) const;
  size_t mapping_count() const;

  // --- CU_POINTER_ATTRIBUTE_SYNC_MEMOPS, by buffer id.
  void SetSyncMemops(uint64_t buffer_id, bool on);
  bool SyncMemops(uint64_t buffer_id) const;

  // Forgets everything session-bound (fork child, tests). Local address-space
  // reservations are released.
  void Reset();
  void LockForFork() { mu_.lock(); }
  void UnlockAfterForkInParent() { mu_.unlock(); }
  void ResetLockAfterForkInChild();

 private:
  struct Reservation {
    uint64_t size = 0;
    bool local = false;
  };
  struct Handle {
    uint64_t size = 0;
    uint32_t handle_types = 0;
    bool rdma_capable = false;
    uint64_t block_id = 0;
    int refs = 0;
    int mappings = 0;
  };
  struct Mapping {
    uint64_t size = 0;
    uint64_t handle = 0;
    unsigned access = 0;
  };
  struct PoolAllocRec {
    uint64_t buffer_id = 0;
    PoolAllocation info;
  };
  void MaybeDropHandleLocked(uint64_t id);

  MemPool default_pool_;
  mutable std::mutex mu_;
  MemPool* current_pool_ = &default_pool_;             // guarded by mu_
  std::set<const MemPool*> pools_;                     // guarded by mu_
  std::map<uint64_t, PoolAllocRec> pool_allocations_;  // guarded by mu_
  std::map<uint64_t, Reservation> reservations_;       // guarded by mu_
  std::map<uint64_t, Handle> handles_;                 // guarded by mu_
  std::map<uint64_t, Mapping> mappings_;               // guarded by mu_
  std::set<uint64_t> sync_memops_;                     // guarded by mu_
};

// The process-wide records (never destroyed; fork-safe once used).
MemoryExtRecords& MemRecords();
HostAllocTable& HostAllocations();

// Page-multiple `bytes` of pinned memory shared with woolyd (mapped there at
// the same address and registered with the driver), or nullptr when there
// is no shared-memory channel or woolyd cannot map it.
void* SharedHostAlloc(uint64_t bytes);

// --- pointer attributes

// What the client knows about an address.
struct PointerInfo {
  enum class Type { kUnknown, kDevice, kHost };
  Type type = Type::kUnknown;
  CUcontext ctx = nullptr;
  uint64_t range_base = 0;  // RANGE_START_ADDR / RANGE_SIZE
  uint64_t range_size = 0;
  uint64_t mapping_base = 0;  // MAPPING_BASE_ADDR / MAPPING_SIZE
  uint64_t mapping_size = 0;
  uint64_t buffer_id = 0;
  uint64_t block_id = 0;  // MEMORY_BLOCK_ID
  CUmemoryPool pool = nullptr;
  uint32_t handle_types = 0;
  unsigned access = CU_POINTER_ATTRIBUTE_ACCESS_FLAG_READWRITE;
  bool legacy_ipc = false;  // cuMemAlloc memory
  bool rdma_capable = false;
  bool sync_memops = false;
};

// Looks `ptr` up in the given tables; the overload without tables uses the
// process-wide ones. `fallback_ctx` is reported for memory whose context is
// not recorded (VMM mappings, library globals).
PointerInfo LookupPointer(uint64_t ptr, const AllocTable& device, const MemoryExtRecords& ext,
                          const HostAllocTable& host, CUcontext fallback_ctx);
PointerInfo LookupPointer(uint64_t ptr);

// Writes attribute `attribute` of `ptr` (described by `info`) to `data`, in
// the C type the driver uses. `lenient` is cuPointerGetAttributes' mode: an
// unknown pointer, or an attribute the memory does not have, yields the
// attribute's null value instead of CUDA_ERROR_INVALID_VALUE.
CUresult WritePointerAttribute(const PointerInfo& info, uint64_t ptr, CUpointer_attribute attribute,
                               void* data, bool lenient);

// cuPointerGetAttribute / cuPointerGetAttributes semantics, answered locally
// (also for libcudart's export-table entries that ask the same).
CUresult PointerGetAttribute(void* data, CUpointer_attribute attribute, CUdeviceptr ptr);
CUresult PointerGetAttributes(unsigned count, CUpointer_attribute* attributes, void** data,
                              CUdeviceptr ptr);

// Forgets the records (tests; pinned host memory is not freed).
void ResetMemoryExtForTesting();

}  // namespace wooly::client

#endif  // WOOLY_CLIENT_MEMORY_EXT_H_
