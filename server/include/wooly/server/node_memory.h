// woolyd's overcommitted device memory (issue #6): one per server, created
// when ServerOptions::overcommit is set, shared by every session through
// SessionEnv::node_memory.
//
// It puts memory::MemoryManager's pieces (admission ledger, stable-address
// VmLayout, SwapPolicy) over a VmmPhysicalMemory on the server's GpuBackend:
//  - Every cuMemAlloc of a client is carved from the client's own reserved
//    virtual range and backed by 64 MiB chunks (sub-allocated small chunks
//    for small allocations). The device pointer is that address, and it
//    never changes while the allocation lives, across swap-out and swap-in.
//  - Allocations are admitted up to physical * (100 + percent) / 100
//    (memory::Overcommit); beyond it Allocate is ResourceExhausted, which
//    the session answers with CUDA_ERROR_OUT_OF_MEMORY.
//  - When physical memory is short, chunks are evicted to the pinned host
//    pool per memory::SwapPolicy (idle longest, lower priority first; never
//    a noswap client, a busy one, or an active client of higher priority
//    than the requester). Before a victim's chunks are copied out, its GPU
//    work is waited for through its Quiesce callback.
//  - Before a command that touches device memory the session calls
//    BeginKernel (all of the client's chunks resident, swapping in and
//    evicting others as needed; the client is busy, so never a victim, until
//    EndCommand).
//
// Physical capacity: the device's memory as MemGetInfo reports it at Open,
// min(total - reserve, free, NodeMemoryOptions::capacity_bytes when set),
// rounded down to the chunk size. The
// reserve (NodeMemoryOptions::device_reserve_bytes, kDefaultDeviceReserveBytes
// by default and at most a quarter of the device) keeps room for what is not
// overcommitted: the context itself, modules and their globals, library
// workspaces, stream-ordered pools and clients' own cuMemCreate memory.
//
// That memory outside the pool may grow past the reserve (more clients,
// each with its modules and library state). Then a cuMemCreate fails
// although the ledger had room. NodeMemory then lowers the capacity it
// plans with (memory::Overcommit::SetPhysicalCapacity) to what the device
// has now: the pool's own chunks plus MemGetInfo's free, less
// kDeviceShortMarginBytes, rounded down to the chunk size, never above the
// capacity from Open; logs it at warn; evicts per SwapPolicy to fit; and
// retries. Only when eviction cannot make room is it out of memory. The
// admission limit stays as configured (more of the admitted memory swaps),
// and the capacity is not raised again when the device frees memory, until
// a context reset rebuilds everything.
//
// Locking. Lock order (outermost first):
//   ClientSession::mu_ -> SharedContext access (shared) -> NodeMemory::mu_
//     -> VmmPhysicalMemory's lock -> backend
// and, with NodeMemory::mu_ NOT held:
//   ClientSession::mu_ -> access -> another session's quiesce_mu_ -> backend
// NodeMemory::stats_mu_ and ClientSession::quiesce_mu_ are leaves. Every
// mutating call must run inside a SharedContext::Access (it calls the
// backend) on a thread that called GpuBackend::BindThread.
//
// Swaps hold mu_ only for the bookkeeping. A swap-out marks its chunks
// mid-swap (VmLayout::BeginSwapOut) under mu_, then releases mu_, calls each
// victim's Quiesce (which takes only that session's quiesce_mu_ and
// synchronizes its streams: never a session's mu_, an Access or this
// object) and runs the copies (VmLayout::RunCopy), then takes mu_ again to
// commit (FinishSwap). Swap-ins do the same. So a client waits only for its
// own swap-in (and, when its chunks are mid-swap-out, for that copy); other
// clients' memory calls wait for the bookkeeping only. A victim that starts
// a command meanwhile waits in BeginKernel for its chunks to finish the
// swap-out, then swaps them back in. RemoveClient waits for Quiesce calls
// of that client that are running, so a session's callback never outlives
// it; chunks of a removed client or freed allocation that are mid-swap
// become orphans that FinishSwap frees (vm_layout.h).
//
// One client swaps in at a time (others that need a swap-in wait for it;
// clients whose memory is resident never do), so that two clients cannot
// each hold part of the room and both fail.
//
// When eviction cannot cover a shortfall but swaps are under way, or
// another client is busy (its command will end), the request waits for a
// change (at most NodeMemoryOptions::wait_for_room each time) and plans again; otherwise it is
// out of memory at once.
//
// Snapshots (Usage, Node, Clients) read a copy refreshed after each
// mutating call, under stats_mu_ only, so status never waits behind a swap.
//
// Thread safety: all methods may be called from any thread at once.
#ifndef WOOLY_SERVER_NODE_MEMORY_H_
#define WOOLY_SERVER_NODE_MEMORY_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <span>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "wooly/memory/memory_manager.h"
#include "wooly/server/gpu_backend.h"
#include "wooly/server/shared_context.h"
#include "wooly/server/vmm_physical_memory.h"

namespace wooly::server {

// Device memory kept out of the overcommitted pool by default (see the file
// comment); capped at a quarter of the device.
inline constexpr uint64_t kDefaultDeviceReserveBytes = uint64_t{2} << 30;

// Left free on the device when the capacity is lowered after a failed
// cuMemCreate (see the file comment), for what outside the pool grows next.
inline constexpr uint64_t kDeviceShortMarginBytes = uint64_t{64} << 20;

struct NodeMemoryOptions {
  // Admission beyond physical memory, in percent (ServerOptions).
  uint32_t overcommit_percent = 0;
  // A client with no command for this long is idle (a first-tier victim).
  absl::Duration idle_threshold = absl::Seconds(30);
  // Most bytes of pinned host memory for swapped-out chunks; 0: as large as
  // the overcommitted part, physical * percent / 100, plus two chunks for
  // the rounding of small allocations.
  uint64_t host_pool_bytes = 0;
  // Device memory left out of the pool (see the file comment).
  uint64_t device_reserve_bytes = kDefaultDeviceReserveBytes;
  // Most device memory the pool plans with (woolyd --memory-capacity): room
  // for processes outside Wooly, or a smaller card emulated. 0: no bound
  // beyond the device's memory less the reserve. Above the device's total
  // it is capped there, with a warning.
  uint64_t capacity_bytes = 0;
  // Chunking (memory::LayoutOptions); `granularity` is replaced by the
  // device's VMM granularity when smaller.
  memory::LayoutOptions layout;
  // Size of one registered arena of the host pool.
  uint64_t host_arena_bytes = uint64_t{1} << 30;
  // How long a request waits for room that swaps under way or busy clients
  // may free before it is out of memory. Tests use InfiniteDuration, so that
  // only those events, never the machine's speed, decide the outcome.
  absl::Duration wait_for_room = absl::Seconds(5);
  // A swap-in makes room for, and swaps in, at most this much at a time
  // (at least one chunk), so that the victims' bytes and the client's do
  // not sit in the pinned host pool together.
  uint64_t swap_in_group_bytes = uint64_t{1} << 30;
};

// What one client's Quiesce does: wait until none of its GPU work is still
// running. See the file comment for what it may lock.
using QuiesceFn = std::function<absl::Status()>;

// The node's memory for status, metrics and the admin API.
struct NodeMemoryStatus {
  bool enabled = false;
  uint32_t overcommit_percent = 0;
  memory::NodeUsage node;
};

class NodeMemory {
 public:
  static constexpr int kMaxAttempts = 16;

  // Measures the device, opens a VmmPhysicalMemory on `backend` (not owned;
  // must outlive the result) and sets up the bookkeeping. `clock` decides
  // idleness (tests inject one). `context` (not owned; may be null) tells
  // when the GPU context was reset, which kills every device object: the
  // next AddClient then starts afresh. The calling thread must have called
  // backend->BindThread().
  static absl::StatusOr<std::unique_ptr<NodeMemory>> Open(GpuBackend* backend,
                                                          NodeMemoryOptions options,
                                                          std::function<absl::Time()> clock,
                                                          SharedContext* context = nullptr);
  ~NodeMemory();
  NodeMemory(const NodeMemory&) = delete;
  NodeMemory& operator=(const NodeMemory&) = delete;

  // The capacity from Open (admission follows it); physical_capacity(),
  // what eviction plans with, may be lower (see the file comment).
  uint64_t physical_bytes() const { return physical_bytes_; }
  uint64_t physical_capacity() const;
  const NodeMemoryOptions& options() const { return options_; }

  // Registers a client (reserves its virtual range). `quiesce` is called
  // before any of its chunks is swapped out; may be empty when the client
  // never has GPU work in flight (tests).
  absl::Status AddClient(memory::ClientId client, memory::ClientOptions options, QuiesceFn quiesce);
  // Frees everything the client holds and forgets it (disconnect). The
  // caller has synchronized the client's streams already.
  absl::Status RemoveClient(memory::ClientId client);
  // Sets (or, with nullopt, clears) the client's overcommit override
  // (memory::Overcommit::SetClientOverride): its next allocation is
  // admitted against physical * (100 + percent) / 100. Allocations admitted
  // before stay. NotFound for an unknown client. Makes no device call (no
  // SharedContext::Access needed).
  absl::Status SetClientOvercommit(memory::ClientId client, std::optional<uint32_t> percent);

  // cuMemAlloc: admits, makes room (evicting per SwapPolicy) and maps.
  // ResourceExhausted beyond the admission limit or when room cannot be
  // made. The result's `va` is the device pointer.
  absl::StatusOr<memory::Allocation> Allocate(memory::ClientId client, uint64_t bytes);
  // cuMemFree of the allocation starting at `va`; NotFound when none.
  absl::Status Free(memory::ClientId client, uint64_t va);
  // The allocation containing `va`, if the client has one there.
  bool Owns(memory::ClientId client, uint64_t va) const;

  // Before a command that touches the client's device memory: makes all of
  // its chunks resident and marks it busy. On error it is not busy and the
  // command must not run (ResourceExhausted: CUDA_ERROR_OUT_OF_MEMORY).
  absl::Status BeginKernel(memory::ClientId client);
  // After that command has been issued (its GPU work may still run).
  void EndCommand(memory::ClientId client);

  // Weight dedup (issue #6 part 4; docs/memory.md), for clients added with
  // ClientOptions::dedup. Every call below runs inside the client's
  // BeginKernel/EndCommand (its chunks resident) with its streams quiesced
  // by the caller, because the mapping behind the client's addresses may
  // change. Shared chunks are never swapped out (VmLayout refuses them and
  // SwapPolicy never picks them); they hold their physical memory until
  // their last user frees or privatizes them.
  //
  // The chunk size large allocations are carved in (from each allocation's
  // base): what a client hashes per chunk.
  uint64_t chunk_bytes() const { return mm_options_.layout.chunk_bytes; }
  // True when [va, va + bytes) is exactly one whole large chunk of `client`
  // and the client has dedup on: a copy covering it may go to UploadChunk.
  bool IsWholeDedupChunk(memory::ClientId client, uint64_t va, uint64_t bytes) const;
  // True when [va, va + bytes) covers a chunk the client shares.
  bool TouchesShared(memory::ClientId client, uint64_t va, uint64_t bytes) const;
  // Before an API write into [va, va + bytes): gives the client private
  // copies of the shared chunks the range covers (copy-on-write; the last
  // user takes the shared memory over), evicting others to make room.
  absl::Status PrepareWrite(memory::ClientId client, uint64_t va, uint64_t bytes);
  // A copy of `content` onto the whole chunk at `va` (IsWholeDedupChunk):
  // the server hashes the bytes itself (the chunk digest, wire::ContentDigests)
  // and compares candidates byte for byte (memory::DedupIndex::Offer);
  // attaches to identical shared content or publishes the chunk as new
  // shared content. The copy is done when this returns (synchronous).
  absl::StatusOr<memory::OfferOutcome> UploadChunk(memory::ClientId client, uint64_t va,
                                                   std::span<const uint8_t> content);
  // kDedupPublish: deduplicates the whole chunk at `va` with the bytes it
  // already holds (memory::DedupIndex::PublishInPlace: read back, hashed by
  // the server, attached or published). The caller quiesces the client's
  // streams first. InvalidArgument when `va` is not a whole large chunk of a
  // dedup client; ResourceExhausted (the chunk stays private) when no
  // pinned host slot is to be had.
  absl::StatusOr<memory::OfferOutcome> PublishChunk(memory::ClientId client, uint64_t va,
                                                    uint64_t bytes);
  // kDedupProbe: maps the whole chunk at `va` read-only onto a resident
  // shared chunk of the same size whose content the SERVER hashed to
  // `digest` when it was uploaded. True when attached (the chunk's old
  // contents are discarded); false when no such chunk exists or room for
  // the switch is short (the client then uploads as usual).
  // InvalidArgument when `va` is not a whole large chunk of a dedup client.
  absl::StatusOr<bool> AttachByDigest(memory::ClientId client, uint64_t va, uint64_t bytes,
                                      const memory::ContentHash& digest);

  // Snapshots (see the file comment). Usage of an unknown client is zeros.
  memory::ClientUsage Usage(memory::ClientId client) const;
  NodeMemoryStatus Status() const;

 private:
  NodeMemory(GpuBackend* backend, NodeMemoryOptions options, uint64_t physical_bytes,
             std::unique_ptr<VmmPhysicalMemory> vmm, VmmOptions vmm_options,
             memory::MemoryManagerOptions mm_options, std::function<absl::Time()> clock,
             SharedContext* context);

  // After a context reset (SharedContext generation moved on): abandons the
  // device memory and the bookkeeping and opens them afresh. False when the
  // reopening failed (then the node has no device memory until a restart).
  bool RebuildIfResetLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // After creating device memory failed with ResourceExhausted: when the
  // device has less room than the capacity planned with, lowers it (and
  // logs why); true when lowered, so that the caller evicts and retries.
  // `error` is the failure, for the log.
  bool LowerCapacityLocked(const absl::Status& error) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Evicts per SwapPolicy until `bytes` more are free (and chunks over a
  // lowered capacity are gone). The victims' chunks
  // are marked mid-swap under mu_, then the victims are quiesced and the
  // copies run with mu_ released (see RunSwapsUnlocked).
  absl::Status MakeRoomLocked(memory::ClientId requester, uint64_t bytes,
                              const std::set<memory::ChunkId>& pinned)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Swaps in every swapped-out chunk of the client.
  absl::Status MakeResidentLocked(memory::ClientId client) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Plans the swap-in of every chunk of the client. nullopt: another
  // client's eviction was copying some of them out, and this waited for it
  // to finish; plan again.
  absl::StatusOr<std::optional<memory::SwapInPlan>> PlanResidentLocked(memory::ClientId client)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Quiesces the clients in `quiesce`, runs the tickets' copies, and
  // finishes them; drops mu_ for the quiescing and copying. Returns the
  // first failure (a failed chunk is back where it was).
  absl::Status RunSwapsUnlocked(const std::vector<memory::SwapTicket>& tickets,
                                const std::set<memory::ClientId>& quiesce)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Waits until generation_ moves past `seen` (a swap finished, a command
  // ended, memory was freed); false after options_.wait_for_room without a change.
  bool WaitForChangeLocked(uint64_t seen) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // True when room may appear without anything new being evicted: swaps
  // are under way, or another client is busy (not waiting in BeginKernel).
  bool WorthWaitingLocked(memory::ClientId requester) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void PublishLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The chunk that [va, va + bytes) is exactly, for a dedup client.
  absl::StatusOr<memory::ChunkId> WholeDedupChunkLocked(memory::ClientId client, uint64_t va,
                                                        uint64_t bytes) const
      ABSL_SHARED_LOCKS_REQUIRED(mu_);

  GpuBackend* const backend_;
  const NodeMemoryOptions options_;
  const uint64_t physical_bytes_;
  const VmmOptions vmm_options_;
  const memory::MemoryManagerOptions mm_options_;
  const std::function<absl::Time()> clock_;
  SharedContext* const context_;

  mutable absl::Mutex mu_;
  // The context generation the device objects below live in.
  uint64_t built_for_ ABSL_GUARDED_BY(mu_) = 0;
  // manager_ points into vmm_: it is destroyed first.
  std::unique_ptr<VmmPhysicalMemory> vmm_ ABSL_GUARDED_BY(mu_);
  std::unique_ptr<memory::MemoryManager> manager_ ABSL_GUARDED_BY(mu_);
  // Shared so that a call running unlocked keeps its function alive.
  std::map<memory::ClientId, std::shared_ptr<QuiesceFn>> quiesce_ ABSL_GUARDED_BY(mu_);
  // Quiesce calls running now, per client (RemoveClient waits for 0).
  std::map<memory::ClientId, int> quiescing_ ABSL_GUARDED_BY(mu_);
  // Clients inside BeginKernel (busy, but waiting rather than working).
  std::set<memory::ClientId> preparing_ ABSL_GUARDED_BY(mu_);
  size_t swaps_in_flight_ ABSL_GUARDED_BY(mu_) = 0;
  // The client swapping in now (BeginKernel), 0: none.
  memory::ClientId swap_in_owner_ ABSL_GUARDED_BY(mu_) = 0;
  // Bumped whenever room may have appeared; waiters watch it.
  uint64_t generation_ ABSL_GUARDED_BY(mu_) = 0;

  mutable absl::Mutex stats_mu_;
  memory::NodeUsage node_stats_ ABSL_GUARDED_BY(stats_mu_);
  std::map<memory::ClientId, memory::ClientUsage> client_stats_ ABSL_GUARDED_BY(stats_mu_);
};

}  // namespace wooly::server

#endif  // WOOLY_SERVER_NODE_MEMORY_H_
