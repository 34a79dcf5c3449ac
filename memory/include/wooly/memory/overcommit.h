// Admission control for VRAM overcommit, and the memory ledger that
// `wooly-cli status`, the admin API and Prometheus will show (issue #6).
//
// Admission: the node admits allocations up to
//     physical_bytes * (100 + percent) / 100
// in total, where `percent` is the server's overcommit percentage or the
// requesting client's override. A client with override 0 can never push the
// node past physical VRAM; one with a larger override may overcommit more
// than the server default allows. Beyond the limit Admit fails with
// ResourceExhausted, which woolyd turns into CUDA_ERROR_OUT_OF_MEMORY
// (cu_status.h maps RESOURCE_EXHAUSTED so), as a native driver would answer
// cuMemAlloc.
//
// Physical capacity: what eviction plans with (PhysicalFree). It starts
// at physical_bytes and may be lowered (SetPhysicalCapacity) when the
// device turns out to have less room than configured, because memory used
// outside the pool grew; admission keeps using the configured
// physical_bytes, so lowering it never refuses an allocation that was
// admissible before, it only makes more of the admitted memory swap.
//
// Ledger: VmLayout reports every change of what backs a chunk (Note*), so
// the per-client and node-wide figures are kept as running sums, never
// recomputed. Only VmLayout (and tests) call the Note* methods.
//
// Thread safety: thread-compatible; woolyd guards it with the lock that
// guards its VmLayout.
#ifndef WOOLY_MEMORY_OVERCOMMIT_H_
#define WOOLY_MEMORY_OVERCOMMIT_H_

#include <cstdint>
#include <map>
#include <optional>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "wooly/memory/physical_memory.h"

namespace wooly::memory {

struct OvercommitConfig {
  // Device memory available to clients' allocations.
  uint64_t physical_bytes = 0;
  // How far beyond physical_bytes the admitted total may go, in percent.
  uint32_t overcommit_percent = 0;
};

// One client's memory, in bytes.
struct ClientUsage {
  uint64_t allocated = 0;                      // admitted: what its allocations were charged
  uint64_t resident = 0;                       // its private chunks in device memory
  uint64_t swapped_out = 0;                    // its chunks held in the pinned host pool
  uint64_t shared = 0;                         // its chunks mapped onto deduplicated chunks
  std::optional<uint32_t> overcommit_percent;  // its override, if any
  uint64_t admission_limit = 0;                // node total it may allocate up to
};

// The node's memory, in bytes unless named otherwise.
struct NodeUsage {
  uint64_t physical_bytes = 0;   // configured VRAM for clients
  uint64_t admission_limit = 0;  // with the server's percentage
  uint64_t physical_used = 0;    // device memory held by chunks (private and shared)
  uint64_t allocated = 0;        // admitted, all clients
  uint64_t overcommitted = 0;    // max(0, allocated - physical_bytes)
  uint64_t resident = 0;         // sum of clients' resident
  uint64_t swapped_out = 0;      // sum of clients' swapped_out
  uint64_t host_pool_used = 0;   // pinned host slots held (swapped and in flight)
  uint64_t swap_out_bytes = 0;   // traffic since start: completed swap-outs
  uint64_t swap_in_bytes = 0;    //                      completed swap-ins
  uint64_t swap_outs = 0;        // completed swap-outs (chunks)
  uint64_t swap_ins = 0;         // completed swap-ins (chunks)
  uint64_t dedup_physical = 0;   // device memory held by deduplicated chunks
  uint64_t dedup_mapped = 0;     // sum of clients' shared
  uint64_t dedup_saved = 0;      // dedup_mapped - dedup_physical
  uint64_t teardown_errors = 0;  // device calls that failed while freeing
  uint64_t clients = 0;
  uint64_t physical_capacity = 0;  // what eviction plans with (<= physical_bytes)
};

class Overcommit {
 public:
  explicit Overcommit(OvercommitConfig config);

  const OvercommitConfig& config() const { return config_; }

  // Registers a client (Admit registers it too). Idempotent.
  void AddClient(ClientId client);
  // Sets or clears (nullopt) a client's overcommit percentage.
  void SetClientOverride(ClientId client, std::optional<uint32_t> percent);
  // Forgets a client: what it still had admitted or noted is subtracted
  // from the node's sums.
  void RemoveClient(ClientId client);

  // The node-wide admitted total that `client`'s allocations may reach.
  uint64_t AdmissionLimit(ClientId client) const;
  // True when Admit(client, bytes) would succeed now.
  bool CanAdmit(ClientId client, uint64_t bytes) const;
  // Charges `bytes` to `client`, or ResourceExhausted (nothing charged) when
  // the node's admitted total would pass AdmissionLimit(client).
  absl::Status Admit(ClientId client, uint64_t bytes);
  // Returns `bytes` admitted to `client`. FailedPrecondition (and nothing
  // changes) when that is more than it has admitted.
  absl::Status Release(ClientId client, uint64_t bytes);

  // Device memory not held by any chunk: what can be created without
  // evicting anything (0 while physical_used is over the capacity).
  uint64_t PhysicalFree() const;
  // Chunks' device memory beyond the capacity (after it was lowered below
  // what they held): what must be evicted before anything is created.
  uint64_t PhysicalOver() const;

  // The capacity eviction plans with, and a new one (clamped to the
  // configured physical_bytes). Admission is unaffected (see the file
  // comment). Chunks already over the new capacity stay; PhysicalOver says
  // how much must go.
  uint64_t physical_capacity() const { return node_.physical_capacity; }
  void SetPhysicalCapacity(uint64_t bytes);

  // Ledger, fed by VmLayout. Client-level notes for an unknown client are
  // ignored (its chunks were taken off its books when it was removed).
  void NoteResident(ClientId client, int64_t delta);
  void NoteSwapped(ClientId client, int64_t delta);
  void NoteShared(ClientId client, int64_t delta);
  void NotePhysical(int64_t delta);
  void NoteDedupPhysical(int64_t delta);
  void NoteHostPool(int64_t delta);
  void NoteSwapOut(uint64_t bytes);
  void NoteSwapIn(uint64_t bytes);
  void NoteTeardownError() { ++node_.teardown_errors; }

  // Snapshots. Client() of an unknown client is all zeros.
  ClientUsage Client(ClientId client) const;
  NodeUsage Node() const;
  std::vector<std::pair<ClientId, ClientUsage>> Clients() const;

 private:
  uint64_t LimitFor(uint32_t percent) const;

  OvercommitConfig config_;
  std::map<ClientId, ClientUsage> clients_;
  NodeUsage node_;
};

}  // namespace wooly::memory

#endif  // WOOLY_MEMORY_OVERCOMMIT_H_
