// A byte-exact PhysicalMemory in host memory, for tests (and for woolyd's
// fake backend later): every handle, host slot and mapping holds real bytes,
// so a test can write through a client's device address, swap the chunk out
// and in, and read the same bytes back through the same address.
//
// It is stricter than CUDA where that catches ordering bugs: Release refuses
// a handle that is still mapped, FreeAddress refuses a reservation with
// mappings in it, and a write through a read-only mapping fails (what a
// kernel write into a read-only mapping would do: fault).
//
// Failure injection: Fail(op, after) makes the call to `op` that comes after
// `after` further successful calls fail once. A failed copy scribbles over
// the first half of its destination before failing (a copy that died
// halfway), so tests prove callers never depend on a failed copy's target.
//
// Thread safety: thread-compatible (one thread at a time, or external
// locking).
#ifndef WOOLY_MEMORY_FAKE_PHYSICAL_MEMORY_H_
#define WOOLY_MEMORY_FAKE_PHYSICAL_MEMORY_H_

#include <cstdint>
#include <map>
#include <span>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "wooly/memory/physical_memory.h"

namespace wooly::memory {

class FakePhysicalMemory : public PhysicalMemory {
 public:
  enum class Op {
    kReserveAddress,
    kFreeAddress,
    kCreate,
    kRelease,
    kMap,
    kUnmap,
    kAllocHost,
    kFreeHost,
    kCopyToHost,
    kCopyFromHost,
    kCopyDevice,
    kWrite,
    kRead,
  };
  // Fresh device memory reads as this byte (CUDA leaves it undefined).
  static constexpr uint8_t kFreshByte = 0xCD;
  // What a failed copy leaves in the first half of its destination.
  static constexpr uint8_t kScribbleByte = 0xEE;

  // `device_bytes`: capacity of physical device memory; `host_bytes`:
  // capacity of the pinned host pool.
  FakePhysicalMemory(uint64_t device_bytes, uint64_t host_bytes);

  // PhysicalMemory.
  absl::StatusOr<uint64_t> ReserveAddress(uint64_t bytes, uint64_t alignment) override;
  absl::Status FreeAddress(uint64_t base, uint64_t bytes) override;
  absl::StatusOr<PhysHandle> Create(uint64_t bytes) override;
  absl::Status Release(PhysHandle handle) override;
  absl::Status Map(uint64_t va, uint64_t bytes, PhysHandle handle, Access access) override;
  absl::Status Unmap(uint64_t va, uint64_t bytes) override;
  absl::StatusOr<HostSlot> AllocHost(uint64_t bytes) override;
  absl::Status FreeHost(HostSlot slot) override;
  absl::StatusOr<std::span<const uint8_t>> HostBytes(HostSlot slot) const override;
  absl::Status CopyToHost(PhysHandle src, HostSlot dst, uint64_t bytes) override;
  absl::Status CopyFromHost(HostSlot src, PhysHandle dst, uint64_t bytes) override;
  absl::Status CopyDevice(PhysHandle src, PhysHandle dst, uint64_t bytes) override;
  absl::Status Write(PhysHandle dst, uint64_t offset, std::span<const uint8_t> bytes) override;
  absl::Status Read(PhysHandle src, uint64_t offset, std::span<uint8_t> out) override;

  // Failure injection (see the file comment). Several may be pending for the
  // same op; each fires once.
  void Fail(Op op, int after = 0, absl::Status status = absl::InternalError("injected failure"));
  void ClearFailures() { failures_.clear(); }

  // What a client's program sees: reads and writes through device virtual
  // addresses, crossing mappings as long as every byte is mapped. A write
  // into a read-only mapping fails with PermissionDenied and writes nothing.
  absl::Status WriteVa(uint64_t va, std::span<const uint8_t> bytes);
  absl::Status ReadVa(uint64_t va, std::span<uint8_t> out) const;

  // Inspection.
  uint64_t device_used() const { return device_used_; }
  uint64_t host_used() const { return host_used_; }
  size_t live_handles() const { return handles_.size(); }
  size_t live_slots() const { return slots_.size(); }
  size_t live_mappings() const { return mappings_.size(); }
  size_t live_reservations() const { return reservations_.size(); }
  bool IsMapped(uint64_t va) const;
  // The handle and access mapped at `va`, if any.
  absl::StatusOr<PhysHandle> HandleAt(uint64_t va) const;
  absl::StatusOr<Access> AccessAt(uint64_t va) const;
  // A copy of a handle's or slot's bytes (empty when unknown).
  std::vector<uint8_t> HandleBytes(PhysHandle handle) const;
  std::vector<uint8_t> SlotBytes(HostSlot slot) const;
  uint64_t calls(Op op) const;

 private:
  struct Mapping {
    uint64_t bytes;
    PhysHandle handle;
    Access access;
  };

  // Counts the call and returns the injected failure due now, if any.
  absl::Status Check(Op op);
  // The mapping containing `va`, or mappings_.end().
  std::map<uint64_t, Mapping>::const_iterator MappingAt(uint64_t va) const;
  bool InReservation(uint64_t va, uint64_t bytes) const;

  uint64_t device_bytes_;
  uint64_t host_bytes_;
  uint64_t device_used_ = 0;
  uint64_t host_used_ = 0;
  uint64_t next_id_ = 1;
  // Reservations are laid out from here up, in a range that looks like a
  // device address (and never 0).
  uint64_t next_va_ = uint64_t{1} << 40;
  std::map<uint64_t, uint64_t> reservations_;  // base -> bytes
  std::map<PhysHandle, std::vector<uint8_t>> handles_;
  std::map<HostSlot, std::vector<uint8_t>> slots_;
  std::map<uint64_t, Mapping> mappings_;  // va -> mapping
  struct Failure {
    Op op;
    int after;
    absl::Status status;
  };
  std::vector<Failure> failures_;
  std::map<Op, uint64_t> calls_;
};

}  // namespace wooly::memory

#endif  // WOOLY_MEMORY_FAKE_PHYSICAL_MEMORY_H_
