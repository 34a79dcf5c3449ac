// memory::PhysicalMemory on the GPU: CUDA's virtual memory management API
// through woolyd's GpuBackend, and a pinned host pool for swapped-out chunks
// (issue #6). memory::VmLayout / MemoryManager decide what backs each chunk;
// this class does it on the device.
//
// Mechanism:
//  - Physical handles are cuMemCreate allocations (pinned, on the device of
//    `device_ordinal`). The PhysHandle given out is this class's own id
//    (never 0, never reused), not the driver's handle value, which the
//    driver may hand out again after a release.
//  - Map = cuMemMap + cuMemSetAccess inside a reservation made by
//    ReserveAddress; Access::kReadOnly sets CU_MEM_ACCESS_FLAGS_PROT_READ.
//    Where the driver refuses read-only device mappings (NOT_SUPPORTED or
//    INVALID_VALUE from cuMemSetAccess) and `read_only_fallback` is set, the
//    range is mapped read-write instead and VmmStats::read_only_fallbacks
//    counts it; EffectiveAccess() tells which one a mapping got.
//  - Copies need a device address for the handle. Every live handle is
//    mapped read-write once, for its whole life, at a private "view" address
//    in a VA reservation of this class's own (blocks of
//    `view_block_bytes`, reserved lazily). This costs one extra map per
//    Create, and no map at all per copy. The alternative, a staging window
//    that a handle is mapped into for each copy, would add a map, an access
//    change and an unmap to every 64 MiB swap copy: the issue measures
//    ~12 ms of remapping per 14 GiB in 64 MiB chunks, about 4% of a 14 GiB
//    copy at PCIe speed, paid again on every swap, and it would serialise
//    all copies on the one window. Virtual address space costs no memory.
//  - Copies run on streams of this class's own (non-blocking, one per
//    concurrent copy, reused) and wait for completion (StreamSynchronize),
//    as PhysicalMemory requires. Host-side copies use the backend's
//    registered-memory path (no staging), so they run at PCIe speed.
//  - The pinned host pool: anonymous mmap'ed arenas of `host_arena_bytes`
//    (or larger for a larger slot), each registered once with HostRegister
//    (page-locked and device-mapped), carved into slots by a best-fit
//    allocator. Registering is slow (it pins every page), so arenas are
//    added lazily, at most `host_pool_max_bytes` in all, kept and reused
//    when their slots are freed (TrimHostPool gives empty ones back), and
//    may be added ahead of need with GrowHostPool. An arena is added without
//    the lock held.
//
// Contract (physical_memory.h): every call that fails leaves the state as
// it was, except that a failed copy may have written any part of its
// destination. Stricter than CUDA, as FakePhysicalMemory is: Release refuses
// a handle that is still mapped, FreeAddress a reservation with mappings in
// it, Map a range that is not inside a reservation made here or overlaps a
// mapping, and Release/FreeHost a handle or slot that a copy is using
// (FailedPrecondition). Sizes passed to Create must be multiples of
// granularity(); copies must name the whole handle (`bytes` == its size).
// Device errors keep the CUresult (cu_status.h); a full device is
// ResourceExhausted (CUDA_ERROR_OUT_OF_MEMORY), a full host pool too.
//
// Thread safety: thread-safe. One mutex guards the bookkeeping and is held
// across the short driver calls of the bookkeeping methods (reserve,
// create, map, unmap, release); copies, reads and writes run without it, so
// copies of different chunks proceed at once on separate streams. Every
// thread that calls in must have called GpuBackend::BindThread(). After the
// backend's ResetContext every device object named here is gone: call
// Abandon(), then destroy this object (or keep using its host slots'
// bytes through SlotAddress; no device call is valid any more).
#ifndef WOOLY_SERVER_VMM_PHYSICAL_MEMORY_H_
#define WOOLY_SERVER_VMM_PHYSICAL_MEMORY_H_

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "wooly/memory/physical_memory.h"
#include "wooly/memory/range_allocator.h"
#include "wooly/server/gpu_backend.h"

namespace wooly::server {

struct VmmOptions {
  // The device whose memory handles are created on and mappings grant
  // access to (the backend's context's device).
  int32_t device_ordinal = 0;
  // Unit of Create sizes and of mapping addresses; 0 = the device's minimum
  // (cuMemGetAllocationGranularity). Otherwise a multiple of that minimum.
  uint64_t granularity = 0;
  // Device virtual address space reserved at a time for the handles' views.
  uint64_t view_block_bytes = uint64_t{256} << 30;
  // Pinned host pool: the most bytes registered in all, and the size of one
  // arena (a slot larger than an arena gets an arena of its own size).
  uint64_t host_pool_max_bytes = uint64_t{64} << 30;
  uint64_t host_arena_bytes = uint64_t{1} << 30;
  // Slots start at multiples of this (a power of two, at least 4 KiB).
  uint64_t host_slot_alignment = uint64_t{64} << 10;
  // Map read-write when the driver refuses read-only (see the file comment).
  bool read_only_fallback = true;
};

// What the object holds now, and what it has done. For tests and metrics.
struct VmmStats {
  uint64_t granularity = 0;
  size_t handles = 0;            // live physical handles
  uint64_t device_bytes = 0;     // their sizes, summed
  size_t mappings = 0;           // live Map()s
  size_t reservations = 0;       // live ReserveAddress()es
  size_t view_blocks = 0;        // private VA reservations for views
  size_t host_arenas = 0;        // registered arenas
  uint64_t host_registered = 0;  // bytes registered (the pool's size)
  size_t host_slots = 0;         // live slots
  uint64_t host_slot_bytes = 0;  // bytes the live slots take
  size_t streams = 0;            // copy streams created
  uint64_t read_only_fallbacks = 0;
  uint64_t bytes_to_host = 0;    // completed CopyToHost bytes
  uint64_t bytes_from_host = 0;  // completed CopyFromHost bytes
  uint64_t bytes_device = 0;     // completed CopyDevice bytes
};

class VmmPhysicalMemory : public memory::PhysicalMemory {
 public:
  // Queries the granularity and checks `options`; creates nothing on the
  // device yet. `backend` is not owned and must outlive the result. The
  // calling thread must have called backend->BindThread().
  static absl::StatusOr<std::unique_ptr<VmmPhysicalMemory>> Open(GpuBackend* backend,
                                                                 VmmOptions options = {});
  // Releases whatever is still held (mappings, handles, reservations,
  // streams, host arenas), ignoring errors; after Abandon() only the host
  // arenas. No copy may be running.
  ~VmmPhysicalMemory() override;
  VmmPhysicalMemory(const VmmPhysicalMemory&) = delete;
  VmmPhysicalMemory& operator=(const VmmPhysicalMemory&) = delete;

  uint64_t granularity() const { return granularity_; }
  const VmmOptions& options() const { return options_; }

  // memory::PhysicalMemory (see physical_memory.h and the file comment).
  absl::StatusOr<uint64_t> ReserveAddress(uint64_t bytes, uint64_t alignment) override;
  absl::Status FreeAddress(uint64_t base, uint64_t bytes) override;
  absl::StatusOr<memory::PhysHandle> Create(uint64_t bytes) override;
  absl::Status Release(memory::PhysHandle handle) override;
  absl::Status Map(uint64_t va, uint64_t bytes, memory::PhysHandle handle,
                   memory::Access access) override;
  absl::Status Unmap(uint64_t va, uint64_t bytes) override;
  absl::StatusOr<memory::HostSlot> AllocHost(uint64_t bytes) override;
  absl::Status FreeHost(memory::HostSlot slot) override;
  absl::Status CopyToHost(memory::PhysHandle src, memory::HostSlot dst, uint64_t bytes) override;
  absl::Status CopyFromHost(memory::HostSlot src, memory::PhysHandle dst, uint64_t bytes) override;
  absl::Status CopyDevice(memory::PhysHandle src, memory::PhysHandle dst, uint64_t bytes) override;
  absl::Status Write(memory::PhysHandle dst, uint64_t offset,
                     std::span<const uint8_t> bytes) override;
  absl::Status Read(memory::PhysHandle src, uint64_t offset, std::span<uint8_t> out) override;

  // Registers arenas until the pool holds at least `bytes` (capped by
  // host_pool_max_bytes: ResourceExhausted beyond it), so that the first
  // swap-outs do not pay for registration.
  absl::Status GrowHostPool(uint64_t bytes);
  // Unregisters and unmaps arenas with no live slot; returns bytes given back.
  uint64_t TrimHostPool();

  // Host memory of a live slot (bytes as allocated); valid until FreeHost.
  absl::StatusOr<uint8_t*> SlotAddress(memory::HostSlot slot) const;
  absl::StatusOr<std::span<const uint8_t>> HostBytes(memory::HostSlot slot) const override;
  // The view address of a live handle (where this class reads and writes
  // it), and the access a live mapping at `va` got.
  absl::StatusOr<DevPtr> ViewAddress(memory::PhysHandle handle) const;
  absl::StatusOr<memory::Access> EffectiveAccess(uint64_t va) const;
  VmmStats Stats() const;

  // After GpuBackend::ResetContext: forgets every device object (handles,
  // mappings, reservations, views, streams) without a driver call; they died
  // with the context. Host slots keep their bytes. Later device calls fail
  // with FailedPrecondition.
  void Abandon();

 private:
  struct HandleRec {
    Handle backend = 0;  // the driver's handle
    uint64_t bytes = 0;
    DevPtr view = 0;           // its private view address (always allocated)
    bool view_mapped = false;  // false only after a failed Release
    int mappings = 0;          // client mappings
    int busy = 0;              // copies in flight
  };
  struct Reservation {
    uint64_t asked = 0;     // as ReserveAddress was asked (FreeAddress names it)
    uint64_t reserved = 0;  // rounded up to the granularity
  };
  struct MappingRec {
    uint64_t bytes = 0;
    memory::PhysHandle handle = 0;
    memory::Access access = memory::Access::kReadWrite;  // effective
  };
  struct SlotRec {
    uint8_t* ptr = nullptr;
    uint64_t bytes = 0;  // as asked for
    size_t arena = 0;    // index into arenas_
    int busy = 0;
  };
  struct Arena {
    uint8_t* base = nullptr;
    uint64_t bytes = 0;
    std::unique_ptr<memory::RangeAllocator> slots;  // over [base, base + bytes)
  };
  struct ViewBlock {
    DevPtr base = 0;
    uint64_t bytes = 0;
    std::unique_ptr<memory::RangeAllocator> views;
  };
  // What a copy touches, pinned (busy) from BeginCopy to FinishCopy: up to
  // two handles (`a`, `b`) and a slot; 0 = none.
  struct CopyPlan {
    DevPtr a_view = 0;
    uint64_t a_bytes = 0;
    DevPtr b_view = 0;
    uint64_t b_bytes = 0;
    uint8_t* host = nullptr;
    uint64_t host_bytes = 0;
    Handle stream = 0;
  };

  VmmPhysicalMemory(GpuBackend* backend, VmmOptions options, uint64_t granularity);

  absl::Status CheckUsable() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // cuMemMap + cuMemSetAccess of a whole handle; unmaps again when the
  // access cannot be set. `*effective` gets the access granted.
  absl::Status MapLocked(DevPtr va, const HandleRec& h, memory::Access access,
                         memory::Access* effective) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Maps the handle's view when it is not (after a failed Release).
  absl::Status EnsureViewLocked(HandleRec& h) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<DevPtr> AllocViewLocked(uint64_t bytes) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void FreeViewLocked(DevPtr view) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<HandleRec*> FindHandleLocked(memory::PhysHandle handle)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<SlotRec*> FindSlotLocked(memory::HostSlot slot) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A copy stream from the free list, or a new one.
  absl::StatusOr<Handle> TakeStreamLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Looks up a copy's ends, maps missing views, marks them busy and takes a
  // stream. FinishCopy undoes that and, when `status` is OK, adds `bytes` to
  // `*counter` (a VmmStats field of counters_, or nullptr).
  absl::StatusOr<CopyPlan> BeginCopy(memory::PhysHandle a, memory::PhysHandle b,
                                     memory::HostSlot slot) ABSL_LOCKS_EXCLUDED(mu_);
  absl::Status FinishCopy(memory::PhysHandle a, memory::PhysHandle b, memory::HostSlot slot,
                          Handle stream, absl::Status status, uint64_t bytes,
                          uint64_t VmmStats::*counter) ABSL_LOCKS_EXCLUDED(mu_);
  // A slot from the arenas; nullopt when none has room.
  std::optional<std::pair<size_t, uint8_t*>> CarveLocked(uint64_t span)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // mmaps and registers one arena of `bytes` (lock not held), then adds it.
  absl::Status AddArena(uint64_t bytes) ABSL_LOCKS_EXCLUDED(mu_);

  GpuBackend* const backend_;
  const VmmOptions options_;
  const uint64_t granularity_;

  mutable absl::Mutex mu_;
  bool abandoned_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t next_id_ ABSL_GUARDED_BY(mu_) = 1;                          // handles and slots alike
  std::map<uint64_t, Reservation> reservations_ ABSL_GUARDED_BY(mu_);  // by base
  std::map<memory::PhysHandle, HandleRec> handles_ ABSL_GUARDED_BY(mu_);
  std::map<uint64_t, MappingRec> mappings_ ABSL_GUARDED_BY(mu_);  // va -> mapping
  std::vector<ViewBlock> view_blocks_ ABSL_GUARDED_BY(mu_);
  std::map<memory::HostSlot, SlotRec> slots_ ABSL_GUARDED_BY(mu_);
  std::vector<Arena> arenas_ ABSL_GUARDED_BY(mu_);  // index stable; emptied ones keep base null
  uint64_t host_registered_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t host_pending_ ABSL_GUARDED_BY(mu_) = 0;  // arenas being added
  std::vector<Handle> free_streams_ ABSL_GUARDED_BY(mu_);
  size_t streams_created_ ABSL_GUARDED_BY(mu_) = 0;
  VmmStats counters_ ABSL_GUARDED_BY(mu_);  // the cumulative fields only
};

}  // namespace wooly::server

#endif  // WOOLY_SERVER_VMM_PHYSICAL_MEMORY_H_
