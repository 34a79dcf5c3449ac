#include "wooly/memory/memory_manager.h"

#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"

namespace wooly::memory {

MemoryManager::MemoryManager(MemoryManagerOptions options, PhysicalMemory* physical,
                             SwapPolicy::Clock clock)
    : ledger_(options.overcommit),
      layout_(options.layout, physical, &ledger_),
      policy_(options.swap, std::move(clock)),
      dedup_(&layout_, physical, std::move(options.dedup)) {}

absl::Status MemoryManager::AddClient(ClientId client, ClientOptions options) {
  if (absl::Status s = layout_.AddClient(client); !s.ok()) return s;
  ledger_.SetClientOverride(client, options.overcommit_percent);
  policy_.AddClient(client, options.policy);
  dedup_.SetOptIn(client, options.dedup);
  return absl::OkStatus();
}

absl::Status MemoryManager::RemoveClient(ClientId client) {
  absl::Status s = layout_.RemoveClient(client);
  policy_.RemoveClient(client);
  dedup_.SetOptIn(client, false);
  return s;
}

absl::Status MemoryManager::MakeRoom(ClientId requester, uint64_t bytes,
                                     const std::set<ChunkId>& pinned) {
  const uint64_t free = ledger_.PhysicalFree();
  if (bytes <= free) return absl::OkStatus();
  absl::StatusOr<EvictionPlan> plan =
      policy_.PlanEviction(layout_, requester, bytes - free, pinned);
  if (!plan.ok()) return plan.status();
  for (const Victim& v : plan->victims) {
    // A failed swap-out leaves its chunk resident (all-or-nothing), so the
    // room is not there: fail the request as out of memory.
    if (absl::Status s = layout_.SwapOut(v.chunk); !s.ok()) {
      return absl::ResourceExhaustedError(
          absl::StrCat("out of memory: evicting chunk ", v.chunk, " failed: ", s.message()));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<Allocation> MemoryManager::Allocate(ClientId client, uint64_t bytes,
                                                   uint64_t alignment) {
  if (!layout_.HasClient(client)) return absl::NotFoundError(absl::StrCat("no client ", client));
  const uint64_t charged = layout_.ChargeFor(bytes, alignment);
  // Over the admission limit: fail before evicting anyone.
  if (bytes > 0 && !ledger_.CanAdmit(client, charged)) {
    return ledger_.Admit(client, charged);
  }
  const uint64_t need = layout_.PhysicalNeededFor(client, bytes, alignment);
  if (absl::Status s = MakeRoom(client, need, {}); !s.ok()) return s;
  return layout_.Allocate(client, bytes, alignment);
}

absl::Status MemoryManager::Free(ClientId client, uint64_t va) { return layout_.Free(client, va); }

absl::Status MemoryManager::EnsureResident(ClientId client, std::span<const ChunkId> needed) {
  absl::StatusOr<SwapInPlan> plan = policy_.PlanSwapIn(layout_, client, needed);
  if (!plan.ok()) return plan.status();
  if (!plan->in_flight.empty()) {
    return absl::UnavailableError(
        absl::StrCat(plan->in_flight.size(), " of the chunks are mid-swap; retry when done"));
  }
  if (plan->chunks.empty()) return absl::OkStatus();
  const std::set<ChunkId> pinned(needed.begin(), needed.end());
  if (absl::Status s = MakeRoom(client, plan->bytes, pinned); !s.ok()) return s;
  for (ChunkId id : plan->chunks) {
    if (absl::Status s = layout_.SwapIn(id); !s.ok()) return s;
  }
  return absl::OkStatus();
}

absl::Status MemoryManager::BeginCommand(ClientId client, std::span<const ChunkId> needed) {
  if (absl::Status s = EnsureResident(client, needed); !s.ok()) return s;
  policy_.BeginCommand(client);
  return absl::OkStatus();
}

absl::Status MemoryManager::BeginKernel(ClientId client) {
  std::vector<ChunkId> all = layout_.ClientChunks(client);
  return BeginCommand(client, all);
}

void MemoryManager::EndCommand(ClientId client) { policy_.EndCommand(client); }

absl::Status MemoryManager::PrepareWrite(ClientId client, uint64_t va, uint64_t bytes) {
  absl::StatusOr<std::vector<ChunkId>> chunks = layout_.ChunksCovering(client, va, bytes);
  if (!chunks.ok()) return chunks.status();
  if (absl::Status s = EnsureResident(client, *chunks); !s.ok()) return s;
  const std::set<ChunkId> pinned(chunks->begin(), chunks->end());
  for (ChunkId id : *chunks) {
    absl::StatusOr<ChunkId> w = dedup_.BeginWrite(client, id);
    if (absl::IsResourceExhausted(w.status())) {
      if (absl::Status s = MakeRoom(client, layout_.chunk(id)->bytes, pinned); !s.ok()) return s;
      w = dedup_.BeginWrite(client, id);
    }
    if (!w.ok()) return w.status();
  }
  return absl::OkStatus();
}

absl::StatusOr<OfferResult> MemoryManager::Upload(ClientId client, ChunkId chunk,
                                                  std::span<const uint8_t> content) {
  const ChunkId one[] = {chunk};
  if (absl::Status s = EnsureResident(client, one); !s.ok()) return s;
  absl::StatusOr<OfferResult> r = dedup_.Offer(client, chunk, content);
  if (absl::IsResourceExhausted(r.status())) {
    if (absl::Status s = MakeRoom(client, layout_.chunk(chunk)->bytes, {chunk}); !s.ok()) return s;
    r = dedup_.Offer(client, chunk, content);
  }
  return r;
}

}  // namespace wooly::memory
