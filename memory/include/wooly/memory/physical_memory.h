// The device-memory mechanism the overcommit bookkeeping drives (issue #6).
//
// VmLayout, DedupIndex and MemoryManager only decide what backs each chunk of
// a client's address space; every effect on the device goes through this
// interface. The real implementation (CUDA's virtual memory management API:
// cuMemAddressReserve, cuMemCreate, cuMemMap, cuMemSetAccess, cuMemUnmap,
// cuMemRelease, and copies through a pinned host pool) is
// server/vmm_physical_memory.h. FakePhysicalMemory (fake_physical_memory.h)
// implements it byte for byte in host memory for tests.
//
// Contract, which every implementation must keep so that the callers' state
// machines stay all-or-nothing:
//  - An operation that returns an error changed nothing the caller can rely
//    on, EXCEPT that a failed copy may have written any part of its
//    destination. Callers therefore never let a copy's destination be the
//    only copy of anyone's bytes.
//  - Handles, slots and addresses are never 0, and are not reused while
//    live.
//  - Copies move a whole handle's bytes; `bytes` equals the size it was
//    created with.
//
// Thread safety: implementations document their own; the bookkeeping classes
// call it from whichever thread calls them.
#ifndef WOOLY_MEMORY_PHYSICAL_MEMORY_H_
#define WOOLY_MEMORY_PHYSICAL_MEMORY_H_

#include <cstdint>
#include <span>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace wooly::memory {

// A woolyd client (one connection's session).
using ClientId = uint64_t;
// One chunk of a client's address space; ids are never reused. 0 = none.
using ChunkId = uint64_t;
// A physical device allocation (a CUmemGenericAllocationHandle). 0 = none.
using PhysHandle = uint64_t;
// A slot in the pinned host pool that holds a swapped-out chunk. 0 = none.
using HostSlot = uint64_t;
// A deduplicated chunk shared by several clients; ids never reused. 0 = none.
using SharedId = uint64_t;

// How a client's range is mapped. kReadOnly is what deduplicated chunks get
// (CU_MEM_ACCESS_FLAGS_PROT_READ), so that a kernel write faults instead of
// changing another tenant's bytes.
enum class Access { kReadWrite, kReadOnly };

class PhysicalMemory {
 public:
  virtual ~PhysicalMemory() = default;

  // Reserves `bytes` of device virtual address space aligned to `alignment`
  // (cuMemAddressReserve); returns its base.
  virtual absl::StatusOr<uint64_t> ReserveAddress(uint64_t bytes, uint64_t alignment) = 0;
  // Frees a reservation made by ReserveAddress; nothing may be mapped in it.
  virtual absl::Status FreeAddress(uint64_t base, uint64_t bytes) = 0;

  // Creates `bytes` (a multiple of the granularity) of physical device
  // memory (cuMemCreate). Its contents are undefined. ResourceExhausted when
  // the device is full.
  virtual absl::StatusOr<PhysHandle> Create(uint64_t bytes) = 0;
  // Releases a handle that is no longer mapped anywhere (cuMemRelease).
  virtual absl::Status Release(PhysHandle handle) = 0;

  // Maps the whole of `handle` at [va, va + bytes) inside a reservation and
  // sets its access (cuMemMap + cuMemSetAccess). The range must be unmapped.
  virtual absl::Status Map(uint64_t va, uint64_t bytes, PhysHandle handle, Access access) = 0;
  // Unmaps exactly one earlier Map (cuMemUnmap).
  virtual absl::Status Unmap(uint64_t va, uint64_t bytes) = 0;

  // A slot of `bytes` in the pinned host pool, and its release.
  virtual absl::StatusOr<HostSlot> AllocHost(uint64_t bytes) = 0;
  virtual absl::Status FreeHost(HostSlot slot) = 0;
  // A slot's bytes, valid until FreeHost: what CopyToHost put there (the
  // dedup index hashes a chunk read back this way).
  virtual absl::StatusOr<std::span<const uint8_t>> HostBytes(HostSlot slot) const = 0;

  // Whole-chunk copies: device to host (swap-out), host to device (swap-in),
  // device to device (copy-on-write). Return when the copy is complete.
  virtual absl::Status CopyToHost(PhysHandle src, HostSlot dst, uint64_t bytes) = 0;
  virtual absl::Status CopyFromHost(HostSlot src, PhysHandle dst, uint64_t bytes) = 0;
  virtual absl::Status CopyDevice(PhysHandle src, PhysHandle dst, uint64_t bytes) = 0;

  // Host bytes into / out of a handle at `offset`: a deduplicated upload
  // writes through Write; the byte-exact compare before sharing reads
  // through Read.
  virtual absl::Status Write(PhysHandle dst, uint64_t offset, std::span<const uint8_t> bytes) = 0;
  virtual absl::Status Read(PhysHandle src, uint64_t offset, std::span<uint8_t> out) = 0;
};

}  // namespace wooly::memory

#endif  // WOOLY_MEMORY_PHYSICAL_MEMORY_H_
