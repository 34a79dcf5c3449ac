// The stable-address plan for overcommitted device memory (issue #6).
//
// Every client gets one reserved device virtual range. Its allocations are
// carved out of that range and backed by chunks:
//  - a large allocation (more than small_max_bytes) by its own chunks of
//    chunk_bytes (64 MiB by default), the last one shorter (rounded to the
//    physical granularity), so that remapping many GiB takes few calls;
//  - small allocations by sub-allocation (best fit, aligned, coalescing) from
//    small chunks of small_chunk_bytes that the client's small allocations
//    share.
// The mapping table says what backs each chunk:
//     ResidentBacking{physical handle} | SwappedBacking{host slot}
//                                      | SharedBacking{dedup chunk}
// and swapping or deduplicating a chunk only changes that entry and the
// mapping behind the chunk's addresses. A chunk's address range never
// changes, so a device pointer a client holds stays valid across swap-out
// and swap-in (it is unmapped while swapped: the client's next command must
// swap in first: MemoryManager::BeginCommand).
//
// Swap state machine of one chunk:
//
//   kResident --BeginSwapOut--> kSwappingOut --FinishSwap(ok)--> kSwapped
//       ^                            | FinishSwap(failed)            |
//       +<---------------------------+                         BeginSwapIn
//       |                                                            v
//       +<--------FinishSwap(ok)--------- kSwappingIn <--------------+
//                                            | FinishSwap(failed)
//                                            +----> kSwapped
//
// Every transition is all-or-nothing: until the commit point the chunk's
// bytes live where they lived before (device handle for swap-out, host slot
// for swap-in), and a failure anywhere before it puts the chunk back in its
// old state and frees only what the transition itself created. The copy
// between Begin and Finish is RunCopy, which changes no table entry, so the
// caller may drop its lock around it. A chunk whose client is removed (or
// whose allocation is freed) mid-swap becomes an orphan: it is off the
// client's books at once, and FinishSwap frees both of its copies. Nothing
// of any other chunk is touched.
//
// Ledger: every backing change is reported to an Overcommit (overcommit.h).
//
// Thread safety: thread-compatible. woolyd must guard a VmLayout, its
// Overcommit and the DedupIndex/SwapPolicy over it with one lock.
#ifndef WOOLY_MEMORY_VM_LAYOUT_H_
#define WOOLY_MEMORY_VM_LAYOUT_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <utility>
#include <variant>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "wooly/memory/overcommit.h"
#include "wooly/memory/physical_memory.h"
#include "wooly/memory/range_allocator.h"

namespace wooly::memory {

struct LayoutOptions {
  // Physical allocation granularity (cuMemGetAllocationGranularity).
  uint64_t granularity = uint64_t{2} << 20;
  // Chunk size for large allocations; a multiple of the granularity.
  uint64_t chunk_bytes = uint64_t{64} << 20;
  // Allocations up to this size are sub-allocated from small chunks.
  uint64_t small_max_bytes = uint64_t{1} << 20;
  // Size of a small chunk; a multiple of the granularity, >= small_max_bytes.
  uint64_t small_chunk_bytes = uint64_t{2} << 20;
  // Least alignment of a sub-allocation (cuMemAlloc guarantees 256).
  uint64_t small_alignment = 256;
  // Device virtual address space reserved per client.
  uint64_t client_va_bytes = uint64_t{1} << 40;
};
// InvalidArgument unless sizes are nonzero powers of two / multiples as the
// fields say.
absl::Status ValidateLayoutOptions(const LayoutOptions& options);

enum class ChunkKind { kLarge, kSmall };
enum class ChunkState { kResident, kSwappingOut, kSwapped, kSwappingIn };
const char* ChunkStateName(ChunkState state);

struct ResidentBacking {
  PhysHandle handle = 0;
};
struct SwappedBacking {
  HostSlot slot = 0;
};
struct SharedBacking {
  SharedId shared = 0;
};
using Backing = std::variant<ResidentBacking, SwappedBacking, SharedBacking>;

struct ChunkInfo {
  ChunkId id = 0;
  ClientId client = 0;
  uint64_t va = 0;
  uint64_t bytes = 0;
  ChunkKind kind = ChunkKind::kLarge;
  ChunkState state = ChunkState::kResident;
  // What backs it now; during a swap, where its bytes are until the commit.
  Backing backing;
  // During kSwappingOut: the host slot being filled. During kSwappingIn: the
  // device handle being filled.
  HostSlot pending_slot = 0;
  PhysHandle pending_handle = 0;
  // Its client or allocation is gone; FinishSwap frees it.
  bool orphaned = false;

  bool is_shared() const { return std::holds_alternative<SharedBacking>(backing); }
};

// A deduplicated chunk: one physical handle mapped read-only by `users`
// client chunks.
struct SharedChunkInfo {
  SharedId id = 0;
  PhysHandle handle = 0;
  uint64_t bytes = 0;
  uint32_t users = 0;
};

struct Allocation {
  ClientId client = 0;
  uint64_t va = 0;
  uint64_t bytes = 0;    // as asked for
  uint64_t charged = 0;  // what Overcommit admitted for it
  std::vector<ChunkId> chunks;
};

// One chunk's swap in flight: from Begin* to FinishSwap.
struct SwapTicket {
  ChunkId chunk = 0;
  bool swap_out = true;
  PhysHandle handle = 0;  // source (out) or destination (in)
  HostSlot slot = 0;      // destination (out) or source (in)
  uint64_t bytes = 0;
};

class VmLayout {
 public:
  // `physical` and `ledger` are not owned and must outlive the layout.
  // Options must pass ValidateLayoutOptions.
  VmLayout(LayoutOptions options, PhysicalMemory* physical, Overcommit* ledger);
  VmLayout(const VmLayout&) = delete;
  VmLayout& operator=(const VmLayout&) = delete;

  const LayoutOptions& options() const { return options_; }

  // Reserves the client's virtual range and opens its books.
  absl::Status AddClient(ClientId client);
  // Frees everything the client holds and closes its books. Chunks in the
  // middle of a swap become orphans; the client's range is released when
  // the last of them finishes. Returns the first device error met (the
  // teardown still completes; Overcommit counts them).
  absl::Status RemoveClient(ClientId client);
  bool HasClient(ClientId client) const;
  std::vector<ClientId> Clients() const;
  // The base of the client's reserved range.
  std::optional<uint64_t> ClientBase(ClientId client) const;

  // What Allocate(_, bytes, alignment) charges to admission: the size
  // rounded up to the sub-allocation alignment (small) or the granularity
  // (large).
  uint64_t ChargeFor(uint64_t bytes, uint64_t alignment = 0) const;
  // Physical bytes Allocate(client, bytes, alignment) would create now.
  uint64_t PhysicalNeededFor(ClientId client, uint64_t bytes, uint64_t alignment = 0) const;

  // Admits the allocation (Overcommit), carves its addresses and creates and
  // maps its physical memory. ResourceExhausted when admission refuses it,
  // when the client's range is full, or when physical memory is short (the
  // caller evicts first: MemoryManager does). Nothing changes on failure.
  // `alignment` 0 means the default (256 for small, the granularity for
  // large allocations); otherwise a power of two.
  absl::StatusOr<Allocation> Allocate(ClientId client, uint64_t bytes, uint64_t alignment = 0);
  // Frees the allocation starting exactly at `va`. NotFound when there is
  // none. Device errors are returned after the bookkeeping is done.
  absl::Status Free(ClientId client, uint64_t va);

  // The allocation containing `va`.
  std::optional<Allocation> FindAllocation(ClientId client, uint64_t va) const;
  // The chunk containing `va`, and the offset of `va` in it.
  absl::StatusOr<std::pair<ChunkId, uint64_t>> Resolve(ClientId client, uint64_t va) const;
  // The chunks covering [va, va + bytes), which must lie inside the client's
  // allocations (InvalidArgument otherwise), in address order.
  absl::StatusOr<std::vector<ChunkId>> ChunksCovering(ClientId client, uint64_t va,
                                                      uint64_t bytes) const;
  // The client's chunks (orphans excluded), in address order.
  std::vector<ChunkId> ClientChunks(ClientId client) const;
  // nullptr when unknown. Valid until the next non-const call.
  const ChunkInfo* chunk(ChunkId id) const;
  size_t orphans() const { return orphans_; }

  // Swap transitions (see the file comment). Begin* fail with
  // FailedPrecondition when the chunk is not in the state it needs, and
  // BeginSwapIn with ResourceExhausted when physical memory is short.
  absl::StatusOr<SwapTicket> BeginSwapOut(ChunkId id);
  absl::StatusOr<SwapTicket> BeginSwapIn(ChunkId id);
  // The copy of a ticket; reads and changes no table entry, so it may run
  // concurrently with any other call (FinishSwap checks the ticket).
  absl::Status RunCopy(const SwapTicket& ticket);
  // Commits the swap when `copy` is OK and the remap succeeds; otherwise
  // rolls it back and returns the error. For an orphan it frees both copies
  // and returns Cancelled.
  absl::Status FinishSwap(const SwapTicket& ticket, absl::Status copy);
  // Begin + RunCopy + FinishSwap.
  absl::Status SwapOut(ChunkId id);
  absl::Status SwapIn(ChunkId id);

  // Shared (deduplicated) backing; DedupIndex drives these. Chunks must be
  // large, resident, privately backed and not in a swap.
  //
  // Turns the chunk's own physical memory into a new shared chunk with one
  // user, mapped read-only.
  absl::StatusOr<SharedId> Publish(ChunkId id);
  // Maps the chunk onto `shared` (same size) read-only and releases the
  // chunk's own physical memory; its contents are discarded.
  absl::Status Attach(ChunkId id, SharedId shared);
  // Gives a shared chunk private, writable memory again: the shared handle
  // itself when this is its last user, otherwise a new handle, holding a
  // copy when `copy_contents` (skipped when the caller overwrites it all).
  // ResourceExhausted when a new handle is needed and physical memory is
  // short.
  absl::Status Privatize(ChunkId id, bool copy_contents = true);
  const SharedChunkInfo* shared(SharedId id) const;
  // Called when a shared chunk's last user lets go of it (released, or
  // taken over by Privatize).
  void SetSharedReleasedListener(std::function<void(SharedId)> listener) {
    on_shared_released_ = std::move(listener);
  }

 private:
  struct Chunk {
    ChunkInfo info;
    // Start of the block of the client's range this chunk was carved from
    // (the whole allocation's block for large chunks).
    uint64_t va_block = 0;
    // Small chunks: the sub-allocator over [va, va + bytes).
    std::unique_ptr<RangeAllocator> sub;
  };
  struct ClientRec {
    ClientRec(uint64_t base, uint64_t bytes) : va_base(base), va_bytes(bytes), va(base, bytes) {}
    uint64_t va_base;
    uint64_t va_bytes;
    RangeAllocator va;
    std::map<uint64_t, Allocation> allocations;  // by start
    std::map<uint64_t, ChunkId> chunk_at;        // chunk va -> id, orphans excluded
    bool removed = false;
    // Blocks of the range whose release waits for orphans: start -> count.
    std::map<uint64_t, int> deferred_blocks;
    int orphans = 0;
  };

  ClientRec* FindClient(ClientId client);
  const ClientRec* FindClient(ClientId client) const;
  absl::StatusOr<Allocation> AllocateLarge(ClientId client, ClientRec& rec, uint64_t bytes,
                                           uint64_t alignment);
  absl::StatusOr<Allocation> AllocateSmall(ClientId client, ClientRec& rec, uint64_t bytes,
                                           uint64_t alignment);
  // Creates and maps one private chunk at `va`; records it.
  absl::StatusOr<ChunkId> NewChunk(ClientId client, ClientRec& rec, uint64_t va, uint64_t bytes,
                                   ChunkKind kind, uint64_t va_block);
  // Frees a chunk's backing and forgets it; for a chunk in a swap, orphans
  // it instead. Returns true when the chunk is gone now (its addresses may
  // be reused), false when orphaned. Device errors land in *error.
  bool DropChunk(ChunkId id, absl::Status* error);
  // Releases a block of the client's range, unless orphans still use it.
  void ReleaseBlock(ClientRec& rec, uint64_t block, bool deferred);
  // An orphan finished: frees its block when it was the last, and the
  // client's reservation when the client was removed and has no orphans.
  void OrphanDone(ClientId client, uint64_t block);
  // Drops one user of a shared chunk; releases it with the last.
  void Unref(SharedId id, absl::Status* error);
  // Device failure during teardown: counted, the first one remembered.
  void TeardownError(absl::Status s, absl::Status* error);

  LayoutOptions options_;
  PhysicalMemory* physical_;
  Overcommit* ledger_;
  std::map<ClientId, ClientRec> clients_;
  std::map<ChunkId, Chunk> chunks_;
  std::map<SharedId, SharedChunkInfo> shared_;
  std::function<void(SharedId)> on_shared_released_;
  ChunkId next_chunk_ = 1;
  SharedId next_shared_ = 1;
  size_t orphans_ = 0;
};

}  // namespace wooly::memory

#endif  // WOOLY_MEMORY_VM_LAYOUT_H_
