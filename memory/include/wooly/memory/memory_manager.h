// One object that puts the issue #6 policies together: admission
// (Overcommit), the stable-address layout and its swap state machine
// (VmLayout), victim selection (SwapPolicy) and deduplication (DedupIndex),
// all driving one PhysicalMemory. woolyd drives it through
// server/node_memory.h (NodeMemory) over the VMM-backed PhysicalMemory.
//
//  - Allocate: admission first (over the limit: ResourceExhausted, i.e.
//    CUDA_ERROR_OUT_OF_MEMORY, and nothing is evicted); then, when physical
//    memory is short, evicts per SwapPolicy, then allocates.
//  - BeginCommand(client, needed chunks): swaps in only the client's own
//    needed chunks, evicting others' memory per SwapPolicy to make room, and
//    marks the client busy until EndCommand. "Cannot" is ResourceExhausted.
//  - PrepareWrite / Upload: copy-on-write and deduplicated uploads, evicting
//    to make room for a copy when needed.
//
// Swaps here run synchronously (VmLayout::SwapOut/SwapIn). woolyd will run
// the copies with its lock dropped, through VmLayout's Begin/RunCopy/Finish
// steps, so that a swap-in makes only its own client wait.
//
// Thread safety: thread-compatible; woolyd guards it with one lock.
#ifndef WOOLY_MEMORY_MEMORY_MANAGER_H_
#define WOOLY_MEMORY_MEMORY_MANAGER_H_

#include <cstdint>
#include <optional>
#include <set>
#include <span>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "wooly/memory/dedup.h"
#include "wooly/memory/overcommit.h"
#include "wooly/memory/physical_memory.h"
#include "wooly/memory/swap_policy.h"
#include "wooly/memory/vm_layout.h"

namespace wooly::memory {

struct MemoryManagerOptions {
  LayoutOptions layout;
  OvercommitConfig overcommit;
  SwapPolicyOptions swap;
  DedupOptions dedup;
};

struct ClientOptions {
  ClientPolicy policy;                         // priority, noswap
  bool dedup = false;                          // WOOLY_DEDUP=1
  std::optional<uint32_t> overcommit_percent;  // per-client override
};

class MemoryManager {
 public:
  // `physical` is not owned and must outlive the manager.
  MemoryManager(MemoryManagerOptions options, PhysicalMemory* physical, SwapPolicy::Clock clock);
  MemoryManager(const MemoryManager&) = delete;
  MemoryManager& operator=(const MemoryManager&) = delete;

  absl::Status AddClient(ClientId client, ClientOptions options = {});
  // Frees everything of the client (a disconnect or a kill); chunks mid-swap
  // are finished off by the swap's FinishSwap (vm_layout.h).
  absl::Status RemoveClient(ClientId client);

  absl::StatusOr<Allocation> Allocate(ClientId client, uint64_t bytes, uint64_t alignment = 0);
  absl::Status Free(ClientId client, uint64_t va);

  // Before a command that uses `needed` (the client's chunks; for a kernel
  // launch BeginKernel, which needs all of them). On error the client is not
  // marked busy.
  absl::Status BeginCommand(ClientId client, std::span<const ChunkId> needed);
  absl::Status BeginKernel(ClientId client);
  void EndCommand(ClientId client);

  // Makes `needed` resident without starting a command.
  absl::Status EnsureResident(ClientId client, std::span<const ChunkId> needed);
  // Evicts per SwapPolicy until `bytes` more are free (0: nothing to do).
  absl::Status MakeRoom(ClientId requester, uint64_t bytes, const std::set<ChunkId>& pinned);

  // Before an API write into [va, va + bytes): makes the chunks resident and
  // private (copy-on-write of shared ones).
  absl::Status PrepareWrite(ClientId client, uint64_t va, uint64_t bytes);
  // A deduplicated upload of a whole chunk (DedupIndex::Offer), after making
  // it resident.
  absl::StatusOr<OfferResult> Upload(ClientId client, ChunkId chunk,
                                     std::span<const uint8_t> content);

  ClientUsage Usage(ClientId client) const { return ledger_.Client(client); }
  NodeUsage Node() const { return ledger_.Node(); }

  VmLayout& layout() { return layout_; }
  const VmLayout& layout() const { return layout_; }
  Overcommit& ledger() { return ledger_; }
  SwapPolicy& policy() { return policy_; }
  DedupIndex& dedup() { return dedup_; }

 private:
  Overcommit ledger_;
  VmLayout layout_;
  SwapPolicy policy_;
  DedupIndex dedup_;
};

}  // namespace wooly::memory

#endif  // WOOLY_MEMORY_MEMORY_MANAGER_H_
