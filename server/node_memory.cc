#include "wooly/server/node_memory.h"

#include <algorithm>
#include <set>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "spdlog/spdlog.h"

namespace wooly::server {

using memory::ChunkId;
using memory::ClientId;

namespace {

absl::Status Lost() {
  return absl::UnavailableError("overcommit: device memory could not be reopened after a reset");
}

uint64_t RoundDown(uint64_t v, uint64_t unit) { return unit == 0 ? v : v - v % unit; }
uint64_t RoundUp(uint64_t v, uint64_t unit) {
  return unit == 0 ? v : RoundDown(v + unit - 1, unit);
}

}  // namespace

absl::StatusOr<std::unique_ptr<NodeMemory>> NodeMemory::Open(GpuBackend* backend,
                                                             NodeMemoryOptions options,
                                                             std::function<absl::Time()> clock,
                                                             SharedContext* context) {
  if (backend == nullptr) return absl::InvalidArgumentError("NodeMemory: no backend");
  if (!clock) clock = [] { return absl::Now(); };
  absl::StatusOr<MemInfo> info = backend->MemGetInfo();
  if (!info.ok()) return info.status();

  VmmOptions vo;
  // Deduplicated chunks must be read-only: where the driver refuses that,
  // publishing fails and dedup uploads stay private (docs/memory.md),
  // rather than one tenant's kernel writing bytes another tenant maps.
  vo.read_only_fallback = false;
  vo.host_arena_bytes = std::max<uint64_t>(options.host_arena_bytes, uint64_t{64} << 20);
  // Size the pool once physical memory is known; Open only checks options.
  vo.host_pool_max_bytes = uint64_t{1} << 62;
  absl::StatusOr<std::unique_ptr<VmmPhysicalMemory>> probe = VmmPhysicalMemory::Open(backend, vo);
  if (!probe.ok()) return probe.status();
  const uint64_t granularity = (*probe)->granularity();
  probe->reset();

  memory::MemoryManagerOptions mm;
  mm.layout = options.layout;
  mm.layout.granularity = std::max(mm.layout.granularity, granularity);
  mm.layout.chunk_bytes = RoundUp(mm.layout.chunk_bytes, mm.layout.granularity);
  mm.layout.small_chunk_bytes =
      std::max(RoundUp(mm.layout.small_chunk_bytes, mm.layout.granularity),
               RoundUp(mm.layout.small_max_bytes, mm.layout.granularity));
  if (absl::Status s = memory::ValidateLayoutOptions(mm.layout); !s.ok()) return s;

  const uint64_t reserve = std::min(options.device_reserve_bytes, info->total / 4);
  uint64_t usable = std::min(info->total - reserve, info->free);
  if (options.capacity_bytes != 0) {
    if (options.capacity_bytes > info->total) {
      spdlog::warn(
          "overcommit: memory capacity {} MiB is more than the device has ({} MiB); "
          "capping it there",
          options.capacity_bytes >> 20, info->total >> 20);
      options.capacity_bytes = info->total;
    }
    usable = std::min(usable, options.capacity_bytes);
  }
  const uint64_t physical = RoundDown(usable, mm.layout.chunk_bytes);
  if (physical == 0) {
    return absl::ResourceExhaustedError(
        absl::StrCat("overcommit: no device memory left for clients (", info->free, " of ",
                     info->total, " bytes free, ", reserve, " reserved)"));
  }
  mm.overcommit.physical_bytes = physical;
  mm.overcommit.overcommit_percent = options.overcommit_percent;
  mm.swap.idle_threshold = options.idle_threshold;

  uint64_t pool = options.host_pool_bytes;
  if (pool == 0) {
    // Plus two chunks: small allocations are charged by the byte but
    // occupy whole small chunks.
    pool = physical / 100 * options.overcommit_percent + 2 * mm.layout.chunk_bytes;
  }
  vo.host_arena_bytes = RoundUp(std::min(vo.host_arena_bytes, pool), uint64_t{2} << 20);
  // Whole arenas, so the last one is not refused for lack of room.
  vo.host_pool_max_bytes = RoundUp(pool, vo.host_arena_bytes);
  absl::StatusOr<std::unique_ptr<VmmPhysicalMemory>> vmm = VmmPhysicalMemory::Open(backend, vo);
  if (!vmm.ok()) return vmm.status();
  spdlog::info(
      "overcommit: {} MiB of device memory for clients ({} MiB reserved), admitting up to {}% "
      "more; swapped memory goes to at most {} MiB of pinned host memory; idle after {}",
      physical >> 20, reserve >> 20, options.overcommit_percent, vo.host_pool_max_bytes >> 20,
      absl::FormatDuration(options.idle_threshold));
  return std::unique_ptr<NodeMemory>(new NodeMemory(backend, std::move(options), physical,
                                                    std::move(*vmm), vo, std::move(mm),
                                                    std::move(clock), context));
}

NodeMemory::NodeMemory(GpuBackend* backend, NodeMemoryOptions options, uint64_t physical_bytes,
                       std::unique_ptr<VmmPhysicalMemory> vmm, VmmOptions vmm_options,
                       memory::MemoryManagerOptions mm_options, std::function<absl::Time()> clock,
                       SharedContext* context)
    : backend_(backend),
      options_(std::move(options)),
      physical_bytes_(physical_bytes),
      vmm_options_(std::move(vmm_options)),
      mm_options_(std::move(mm_options)),
      clock_(std::move(clock)),
      context_(context),
      vmm_(std::move(vmm)) {
  absl::MutexLock lock(&mu_);
  built_for_ = context_ != nullptr ? context_->generation() : 0;
  manager_ = std::make_unique<memory::MemoryManager>(mm_options_, vmm_.get(), clock_);
  PublishLocked();
}

bool NodeMemory::RebuildIfResetLocked() {
  if (context_ == nullptr || context_->generation() == built_for_) return manager_ != nullptr;
  // The reset destroyed every device object this memory held: forget them
  // without a driver call, and start afresh. Clients of the lost context
  // are gone with it (their later RemoveClient finds nothing).
  spdlog::warn("overcommit: the GPU context was reset; dropping {} clients' device memory",
               manager_->layout().Clients().size());
  manager_.reset();
  vmm_->Abandon();
  vmm_.reset();
  quiesce_.clear();
  built_for_ = context_->generation();
  ++generation_;
  absl::StatusOr<std::unique_ptr<VmmPhysicalMemory>> vmm =
      VmmPhysicalMemory::Open(backend_, vmm_options_);
  if (!vmm.ok()) {
    spdlog::error("overcommit: cannot reopen device memory after the reset: {}",
                  vmm.status().ToString());
    return false;
  }
  vmm_ = std::move(*vmm);
  manager_ = std::make_unique<memory::MemoryManager>(mm_options_, vmm_.get(), clock_);
  return true;
}

NodeMemory::~NodeMemory() {
  absl::MutexLock lock(&mu_);
  // Sessions remove their clients when they close; a leftover one (a
  // session never closed) is freed here so its device memory goes back.
  if (manager_ == nullptr) return;
  if (context_ != nullptr && context_->generation() != built_for_) {
    vmm_->Abandon();  // its device objects died with the context
    return;
  }
  for (ClientId c : manager_->layout().Clients()) (void)manager_->RemoveClient(c);
}

absl::Status NodeMemory::AddClient(ClientId client, memory::ClientOptions options,
                                   QuiesceFn quiesce) {
  absl::MutexLock lock(&mu_);
  if (!RebuildIfResetLocked()) return absl::UnavailableError("overcommit: device memory lost");
  absl::Status s = manager_->AddClient(client, std::move(options));
  if (s.ok()) quiesce_[client] = std::make_shared<QuiesceFn>(std::move(quiesce));
  PublishLocked();
  return s;
}

absl::Status NodeMemory::SetClientOvercommit(ClientId client, std::optional<uint32_t> percent) {
  absl::MutexLock lock(&mu_);
  if (manager_ == nullptr) return Lost();
  if (!manager_->layout().HasClient(client)) {
    return absl::NotFoundError(absl::StrCat("no client ", client));
  }
  manager_->ledger().SetClientOverride(client, percent);
  PublishLocked();
  return absl::OkStatus();
}

absl::Status NodeMemory::RemoveClient(ClientId client) {
  absl::MutexLock lock(&mu_);
  // Its quiesce callback may be running on another thread (unlocked): the
  // session it points into must outlive that call.
  auto no_quiesce = [this, client]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    auto it = quiescing_.find(client);
    return it == quiescing_.end() || it->second == 0;
  };
  mu_.Await(absl::Condition(&no_quiesce));
  quiesce_.erase(client);
  if (context_ != nullptr && context_->generation() != built_for_) {
    // The context was reset since: the client's memory died with it, and
    // the next AddClient starts afresh (RebuildIfResetLocked). No driver
    // call: this thread may not be bound to the new context.
    return absl::OkStatus();
  }
  if (manager_ == nullptr) return absl::OkStatus();
  // Chunks of it mid-swap become orphans, freed by their FinishSwap.
  absl::Status s = manager_->RemoveClient(client);
  ++generation_;
  PublishLocked();
  return s;
}

bool NodeMemory::WaitForChangeLocked(uint64_t seen) {
  auto changed = [this, seen]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return generation_ != seen; };
  if (mu_.AwaitWithTimeout(absl::Condition(&changed), options_.wait_for_room)) return true;
  spdlog::warn("overcommit: waited {} for room without a change",
               absl::FormatDuration(options_.wait_for_room));
  return false;
}

bool NodeMemory::WorthWaitingLocked(ClientId requester) {
  if (swaps_in_flight_ > 0) return true;
  // A busy client stops being off limits when its command ends, unless it
  // is itself waiting in BeginKernel.
  for (ClientId c : manager_->layout().Clients()) {
    if (c != requester && manager_->policy().IsBusy(c) && !preparing_.contains(c)) return true;
  }
  return false;
}

namespace {

// One line per batch of swaps: swapping is rare and slow enough that its
// volume and bandwidth are worth seeing at info level (issue #6 measures
// them).
void LogSwaps(const std::vector<memory::SwapTicket>& tickets, const std::set<ClientId>& victims,
              absl::Duration quiesce, absl::Duration copy) {
  uint64_t out = 0, in = 0;
  for (const memory::SwapTicket& t : tickets) (t.swap_out ? out : in) += t.bytes;
  const double seconds = absl::ToDoubleSeconds(copy);
  const double gbps = seconds > 0 ? static_cast<double>(out + in) / seconds / 1e9 : 0.0;
  spdlog::info(
      "overcommit: swapped {} MiB out{} and {} MiB in: {} chunks, copies {:.1f} ms "
      "({:.1f} GB/s), waiting for the victims' GPU work {:.1f} ms",
      out >> 20,
      victims.empty() ? "" : absl::StrCat(" (clients ", absl::StrJoin(victims, ","), ")"), in >> 20,
      tickets.size(), absl::ToDoubleMilliseconds(copy), gbps, absl::ToDoubleMilliseconds(quiesce));
}

}  // namespace

absl::Status NodeMemory::RunSwapsUnlocked(const std::vector<memory::SwapTicket>& tickets,
                                          const std::set<ClientId>& quiesce) {
  std::vector<std::pair<ClientId, std::shared_ptr<QuiesceFn>>> callbacks;
  for (ClientId c : quiesce) {
    auto it = quiesce_.find(c);
    if (it == quiesce_.end() || !it->second || !*it->second) continue;
    ++quiescing_[c];
    callbacks.emplace_back(c, it->second);
  }
  swaps_in_flight_ += tickets.size();
  std::vector<absl::Status> copies(tickets.size());
  mu_.Unlock();
  // Wall time for the log only (the injected clock_ drives policy).
  const absl::Time started = absl::Now();
  // Swap-outs first wait for the victims' GPU work (kernels and async copies
  // issued before; new ones wait in BeginKernel for these very chunks).
  absl::Status quiet = absl::OkStatus();
  for (auto& [c, fn] : callbacks) {
    if (absl::Status s = (*fn)(); !s.ok() && quiet.ok()) {
      quiet = absl::UnavailableError(
          absl::StrCat("cannot wait for client ", c, "'s GPU work: ", s.message()));
    }
  }
  const absl::Time quiesced = absl::Now();
  for (size_t i = 0; i < tickets.size(); ++i) {
    copies[i] = quiet.ok() ? manager_->layout().RunCopy(tickets[i]) : quiet;
  }
  LogSwaps(tickets, quiesce, quiesced - started, absl::Now() - quiesced);
  mu_.Lock();
  for (auto& [c, fn] : callbacks) {
    if (--quiescing_[c] == 0) quiescing_.erase(c);
  }
  absl::Status first = absl::OkStatus();
  for (size_t i = 0; i < tickets.size(); ++i) {
    absl::Status s = manager_->layout().FinishSwap(tickets[i], copies[i]);
    // Cancelled: its client left mid-swap; both copies are freed, and the
    // room is there all the same.
    if (!s.ok() && !absl::IsCancelled(s) && first.ok()) first = s;
  }
  swaps_in_flight_ -= tickets.size();
  ++generation_;
  return first;
}

uint64_t NodeMemory::physical_capacity() const {
  absl::MutexLock lock(&stats_mu_);
  return node_stats_.physical_capacity;
}

bool NodeMemory::LowerCapacityLocked(const absl::Status& error) {
  absl::StatusOr<MemInfo> info = backend_->MemGetInfo();
  if (!info.ok()) {
    spdlog::warn("overcommit: creating device memory failed ({}) and cuMemGetInfo too ({})",
                 error.ToString(), info.status().ToString());
    return false;
  }
  memory::Overcommit& ledger = manager_->ledger();
  const uint64_t used = ledger.Node().physical_used;
  // What the device could hold of the pool's now: its own chunks and what
  // is free, less a margin for what grows outside the pool next.
  const uint64_t room = used + info->free;
  const uint64_t fits = room > kDeviceShortMarginBytes ? room - kDeviceShortMarginBytes : 0;
  const uint64_t capacity =
      RoundDown(std::min(fits, physical_bytes_), mm_options_.layout.chunk_bytes);
  const uint64_t before = ledger.physical_capacity();
  if (capacity >= before) return false;  // the device is not what is short
  ledger.SetPhysicalCapacity(capacity);
  ++generation_;
  spdlog::warn(
      "overcommit: device memory is short of what the pool planned with ({}); memory used "
      "outside the pool grew past the reserve: lowering the physical capacity from {} MiB to {} "
      "MiB (pool holds {} MiB, device has {} MiB free of {} MiB, margin {} MiB; configured {} "
      "MiB, admission unchanged)",
      std::string(error.message()), before >> 20, capacity >> 20, used >> 20, info->free >> 20,
      info->total >> 20, kDeviceShortMarginBytes >> 20, physical_bytes_ >> 20);
  return true;
}

absl::Status NodeMemory::MakeRoomLocked(ClientId requester, uint64_t bytes,
                                        const std::set<ChunkId>& pinned) {
  for (int attempt = 0; attempt < kMaxAttempts; ++attempt) {
    const uint64_t free = manager_->ledger().PhysicalFree();
    // Chunks over a lowered capacity must go first (free is 0 then).
    const uint64_t over = manager_->ledger().PhysicalOver();
    if (bytes <= free && over == 0) return absl::OkStatus();
    if (bytes == 0) return absl::OkStatus();  // nothing to create
    const uint64_t seen = generation_;
    absl::StatusOr<memory::EvictionPlan> plan = manager_->policy().PlanEviction(
        manager_->layout(), requester, bytes - std::min(bytes, free) + over, pinned);
    if (!plan.ok()) {
      // Room may come from swaps under way or from busy clients going idle;
      // otherwise (or when nothing changes for a while) it is out of memory.
      if (WorthWaitingLocked(requester) && WaitForChangeLocked(seen)) continue;
      return plan.status();
    }
    std::vector<memory::SwapTicket> tickets;
    std::set<ClientId> victims;
    absl::Status begun = absl::OkStatus();
    for (const memory::Victim& v : plan->victims) {
      absl::StatusOr<memory::SwapTicket> t = manager_->layout().BeginSwapOut(v.chunk);
      if (!t.ok()) {
        begun = t.status();
        break;
      }
      tickets.push_back(*t);
      victims.insert(v.client);
    }
    absl::Status swapped = tickets.empty() ? absl::OkStatus() : RunSwapsUnlocked(tickets, victims);
    if (!begun.ok() || !swapped.ok()) {
      // All-or-nothing per chunk: what failed is still resident, so the room
      // is not there.
      const absl::Status& why = begun.ok() ? swapped : begun;
      return absl::ResourceExhaustedError(
          absl::StrCat("out of memory: evicting failed: ", why.message()));
    }
    // The lock was dropped: check again (someone may have taken the room).
  }
  return absl::ResourceExhaustedError("out of memory: no room after repeated evictions");
}

absl::StatusOr<memory::Allocation> NodeMemory::Allocate(ClientId client, uint64_t bytes) {
  absl::MutexLock lock(&mu_);
  if (manager_ == nullptr) return Lost();
  absl::Cleanup publish = [this]() ABSL_NO_THREAD_SAFETY_ANALYSIS { PublishLocked(); };
  for (int attempt = 0; attempt < kMaxAttempts; ++attempt) {
    memory::VmLayout& layout = manager_->layout();
    if (!layout.HasClient(client)) return absl::NotFoundError(absl::StrCat("no client ", client));
    const uint64_t charged = layout.ChargeFor(bytes);
    // Over the admission limit: refuse before evicting anyone.
    if (!manager_->ledger().CanAdmit(client, charged)) {
      const memory::ClientUsage u = manager_->ledger().Client(client);
      return absl::ResourceExhaustedError(absl::StrCat(
          "out of memory: ", bytes, " more bytes would pass the node's admission limit of ",
          u.admission_limit, " (", manager_->ledger().Node().allocated, " admitted)"));
    }
    const uint64_t need = layout.PhysicalNeededFor(client, bytes);
    if (absl::Status s = MakeRoomLocked(client, need, {}); !s.ok()) return s;
    // The room made may have gone to another thread while the lock was
    // dropped for the copies: then make room again.
    if (manager_->ledger().PhysicalFree() < layout.PhysicalNeededFor(client, bytes)) continue;
    absl::StatusOr<memory::Allocation> a = layout.Allocate(client, bytes);
    // The ledger had room but the device had not (cuMemCreate failed):
    // plan with what the device has and evict to fit (see the file comment).
    if (absl::IsResourceExhausted(a.status()) && LowerCapacityLocked(a.status())) continue;
    return a;
  }
  return absl::ResourceExhaustedError("out of memory: no room after repeated evictions");
}

absl::Status NodeMemory::Free(ClientId client, uint64_t va) {
  absl::MutexLock lock(&mu_);
  if (manager_ == nullptr) return Lost();
  // Mid-swap chunks of it become orphans, freed when their swap finishes.
  absl::Status s = manager_->Free(client, va);
  ++generation_;
  PublishLocked();
  return s;
}

bool NodeMemory::Owns(ClientId client, uint64_t va) const {
  absl::MutexLock lock(&mu_);
  if (manager_ == nullptr) return false;
  return manager_->layout().FindAllocation(client, va).has_value();
}

absl::StatusOr<std::optional<memory::SwapInPlan>> NodeMemory::PlanResidentLocked(ClientId client) {
  const uint64_t seen = generation_;
  const std::vector<ChunkId> needed = manager_->layout().ClientChunks(client);
  absl::StatusOr<memory::SwapInPlan> plan =
      manager_->policy().PlanSwapIn(manager_->layout(), client, needed);
  if (!plan.ok()) return plan.status();
  if (!plan->in_flight.empty()) {
    WaitForChangeLocked(seen);
    return std::nullopt;
  }
  return std::optional<memory::SwapInPlan>(*std::move(plan));
}

absl::Status NodeMemory::MakeResidentLocked(ClientId client) {
  for (int attempt = 0; attempt < kMaxAttempts; ++attempt) {
    // An eviction begun before this client turned busy may be copying some
    // of its chunks out: PlanResidentLocked waits for it.
    absl::StatusOr<std::optional<memory::SwapInPlan>> plan = PlanResidentLocked(client);
    if (!plan.ok()) return plan.status();
    if (!plan->has_value()) continue;
    if ((*plan)->chunks.empty()) return absl::OkStatus();
    const std::vector<ChunkId> needed = manager_->layout().ClientChunks(client);
    const std::set<ChunkId> pinned(needed.begin(), needed.end());
    // A group at a time: evicting all the room first would hold the victims'
    // bytes and this client's at once in the pinned host pool, which is
    // sized for the overcommitted part only. Each group swapped in frees
    // the host slots the next group's evictions take.
    std::vector<ChunkId> group;
    uint64_t group_bytes = 0;
    for (ChunkId id : (*plan)->chunks) {
      const memory::ChunkInfo* info = manager_->layout().chunk(id);
      const uint64_t bytes = info != nullptr ? info->bytes : 0;
      if (!group.empty() && group_bytes + bytes > options_.swap_in_group_bytes) break;
      group.push_back(id);
      group_bytes += bytes;
    }
    if (absl::Status s = MakeRoomLocked(client, group_bytes, pinned); !s.ok()) return s;
    std::vector<memory::SwapTicket> tickets;
    for (ChunkId id : group) {
      // The room may have shrunk while the lock was dropped: swap in what
      // fits and plan the rest again.
      const memory::ChunkInfo* info = manager_->layout().chunk(id);
      const bool ledger_room = info != nullptr && info->bytes <= manager_->ledger().PhysicalFree();
      absl::StatusOr<memory::SwapTicket> t = manager_->layout().BeginSwapIn(id);
      if (!t.ok()) {
        if (absl::IsResourceExhausted(t.status()) && ledger_room) {
          // The device had less room than the ledger: plan with what it has
          // (then evict and retry), or, when that is not it, out of memory.
          if (LowerCapacityLocked(t.status())) break;
          if (tickets.empty()) {
            return absl::ResourceExhaustedError(
                absl::StrCat("out of memory: swapping in: ", t.status().message()));
          }
          break;
        }
        if (absl::IsResourceExhausted(t.status()) || absl::IsFailedPrecondition(t.status())) {
          break;
        }
        return t.status();
      }
      tickets.push_back(*t);
    }
    if (tickets.empty()) continue;
    if (absl::Status s = RunSwapsUnlocked(tickets, {}); !s.ok()) {
      return absl::ResourceExhaustedError(
          absl::StrCat("out of memory: swapping in failed: ", s.message()));
    }
    --attempt;  // a group swapped in is progress, not a failed attempt
  }
  return absl::ResourceExhaustedError("out of memory: could not make the client's memory resident");
}

absl::Status NodeMemory::BeginKernel(ClientId client) {
  absl::MutexLock lock(&mu_);
  if (manager_ == nullptr) return Lost();
  if (!manager_->layout().HasClient(client)) {
    return absl::NotFoundError(absl::StrCat("no client ", client));
  }
  // The common case, on every launch: no swap is under way anywhere (every
  // Begin* is finished within the same hold of mu_ that started it, by
  // RunSwapsUnlocked) and none of the client's bytes is swapped out, so all
  // its chunks are resident without listing them.
  if (swaps_in_flight_ == 0 && manager_->Usage(client).swapped_out == 0) {
    manager_->policy().BeginCommand(client);
    return absl::OkStatus();
  }
  absl::Cleanup publish = [this]() ABSL_NO_THREAD_SAFETY_ANALYSIS { PublishLocked(); };
  for (int attempt = 0; attempt < kMaxAttempts; ++attempt) {
    if (!manager_->layout().HasClient(client)) {
      return absl::NotFoundError(absl::StrCat("no client ", client));
    }
    absl::StatusOr<std::optional<memory::SwapInPlan>> plan = PlanResidentLocked(client);
    if (!plan.ok()) return plan.status();
    if (!plan->has_value()) continue;  // waited for another client's eviction
    if ((*plan)->chunks.empty()) {
      // All resident: busy from now, in the same hold of mu_. Nothing the
      // snapshots show changed unless an earlier attempt swapped.
      manager_->policy().BeginCommand(client);
      if (attempt == 0) std::move(publish).Cancel();
      return absl::OkStatus();
    }
    // One client swaps in at a time. Two swapping in at once could each get
    // part of the room, hold on to it (busy) and both fail. While it waits
    // its chunks stay evictable, so the one swapping in may take them.
    if (swap_in_owner_ != 0) {
      auto free_token = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return swap_in_owner_ == 0; };
      mu_.Await(absl::Condition(&free_token));
      --attempt;  // waiting for the token is not a failed attempt
      continue;
    }
    swap_in_owner_ = client;
    // Busy from here: none of its chunks is anyone's victim while it swaps
    // in with the lock dropped.
    manager_->policy().BeginCommand(client);
    preparing_.insert(client);
    const absl::Time started = absl::Now();
    absl::Status s = MakeResidentLocked(client);
    spdlog::info("overcommit: client {} waited {:.1f} ms to swap in {} MiB (evictions included){}",
                 client, absl::ToDoubleMilliseconds(absl::Now() - started), (*plan)->bytes >> 20,
                 s.ok() ? "" : absl::StrCat(": ", s.message()));
    preparing_.erase(client);
    swap_in_owner_ = 0;
    ++generation_;
    if (!s.ok()) manager_->policy().EndCommand(client);
    return s;
  }
  return absl::ResourceExhaustedError("out of memory: could not make the client's memory resident");
}

void NodeMemory::EndCommand(ClientId client) {
  absl::MutexLock lock(&mu_);
  if (manager_ == nullptr) return;
  manager_->EndCommand(client);
  ++generation_;
}

absl::StatusOr<ChunkId> NodeMemory::WholeDedupChunkLocked(ClientId client, uint64_t va,
                                                          uint64_t bytes) const {
  if (manager_ == nullptr) return Lost();
  if (!manager_->dedup().IsOptedIn(client)) {
    return absl::FailedPreconditionError(absl::StrCat("client ", client, " has dedup off"));
  }
  absl::StatusOr<std::pair<ChunkId, uint64_t>> at = manager_->layout().Resolve(client, va);
  if (!at.ok()) return at.status();
  const memory::ChunkInfo* c = manager_->layout().chunk(at->first);
  if (c == nullptr || at->second != 0 || c->kind != memory::ChunkKind::kLarge ||
      c->bytes != bytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("[", va, ", +", bytes, ") is not one whole large chunk"));
  }
  return at->first;
}

bool NodeMemory::IsWholeDedupChunk(ClientId client, uint64_t va, uint64_t bytes) const {
  absl::MutexLock lock(&mu_);
  return WholeDedupChunkLocked(client, va, bytes).ok();
}

bool NodeMemory::TouchesShared(ClientId client, uint64_t va, uint64_t bytes) const {
  absl::MutexLock lock(&mu_);
  if (manager_ == nullptr) return false;
  absl::StatusOr<std::vector<ChunkId>> chunks =
      manager_->layout().ChunksCovering(client, va, bytes);
  if (!chunks.ok()) return false;  // not overcommitted memory: nothing shared
  for (ChunkId id : *chunks) {
    const memory::ChunkInfo* c = manager_->layout().chunk(id);
    if (c != nullptr && c->is_shared()) return true;
  }
  return false;
}

absl::Status NodeMemory::PrepareWrite(ClientId client, uint64_t va, uint64_t bytes) {
  absl::MutexLock lock(&mu_);
  if (manager_ == nullptr) return Lost();
  absl::Cleanup publish = [this]() ABSL_NO_THREAD_SAFETY_ANALYSIS { PublishLocked(); };
  absl::StatusOr<std::vector<ChunkId>> chunks =
      manager_->layout().ChunksCovering(client, va, bytes);
  if (!chunks.ok()) return absl::OkStatus();  // not overcommitted memory
  const std::vector<ChunkId> all = manager_->layout().ClientChunks(client);
  const std::set<ChunkId> pinned(all.begin(), all.end());
  for (ChunkId id : *chunks) {
    for (int attempt = 0;; ++attempt) {
      const memory::ChunkInfo* c = manager_->layout().chunk(id);
      if (c == nullptr || !c->is_shared()) break;
      absl::StatusOr<ChunkId> w = manager_->dedup().BeginWrite(client, id);
      if (w.ok()) break;
      // The private copy needs a chunk of physical memory: evict (with the
      // victims quiesced, unlike MemoryManager::PrepareWrite) and retry.
      if (!absl::IsResourceExhausted(w.status()) || attempt + 1 >= kMaxAttempts) {
        return w.status();
      }
      if (absl::Status s = MakeRoomLocked(client, c->bytes, pinned); !s.ok()) return s;
    }
  }
  ++generation_;
  return absl::OkStatus();
}

absl::StatusOr<memory::OfferOutcome> NodeMemory::UploadChunk(ClientId client, uint64_t va,
                                                             std::span<const uint8_t> content) {
  absl::MutexLock lock(&mu_);
  if (manager_ == nullptr) return Lost();
  absl::Cleanup publish = [this]() ABSL_NO_THREAD_SAFETY_ANALYSIS { PublishLocked(); };
  for (int attempt = 0; attempt < kMaxAttempts; ++attempt) {
    // Resolved again after each eviction: the lock was dropped.
    absl::StatusOr<ChunkId> id = WholeDedupChunkLocked(client, va, content.size());
    if (!id.ok()) return id.status();
    absl::StatusOr<memory::OfferResult> r = manager_->dedup().Offer(client, *id, content);
    if (r.ok()) {
      ++generation_;  // an attach released physical memory
      return r->outcome;
    }
    if (!absl::IsResourceExhausted(r.status())) return r.status();
    // Replacing shared content of a different chunk needs memory of its own.
    const std::vector<ChunkId> all = manager_->layout().ClientChunks(client);
    if (absl::Status s =
            MakeRoomLocked(client, content.size(), std::set<ChunkId>(all.begin(), all.end()));
        !s.ok()) {
      return s;
    }
  }
  return absl::ResourceExhaustedError("out of memory: no room for a deduplicated upload");
}

absl::StatusOr<memory::OfferOutcome> NodeMemory::PublishChunk(ClientId client, uint64_t va,
                                                              uint64_t bytes) {
  absl::MutexLock lock(&mu_);
  if (manager_ == nullptr) return Lost();
  absl::Cleanup publish = [this]() ABSL_NO_THREAD_SAFETY_ANALYSIS { PublishLocked(); };
  absl::StatusOr<ChunkId> id = WholeDedupChunkLocked(client, va, bytes);
  if (!id.ok()) return id.status();
  absl::StatusOr<memory::OfferResult> r = manager_->dedup().PublishInPlace(client, *id);
  if (!r.ok()) return r.status();
  ++generation_;  // an attach released physical memory
  return r->outcome;
}

absl::StatusOr<bool> NodeMemory::AttachByDigest(ClientId client, uint64_t va, uint64_t bytes,
                                                const memory::ContentHash& digest) {
  absl::MutexLock lock(&mu_);
  if (manager_ == nullptr) return Lost();
  absl::Cleanup publish = [this]() ABSL_NO_THREAD_SAFETY_ANALYSIS { PublishLocked(); };
  absl::StatusOr<ChunkId> id = WholeDedupChunkLocked(client, va, bytes);
  if (!id.ok()) return id.status();
  memory::VmLayout& layout = manager_->layout();
  // Only digests the server computed itself over bytes it received are in
  // the index: a client naming a digest can map only content that some
  // client really uploaded with that SHA-256 (docs/memory.md).
  for (memory::SharedId candidate : manager_->dedup().Lookup(digest)) {
    const memory::SharedChunkInfo* sh = layout.shared(candidate);
    const memory::ChunkInfo* c = layout.chunk(*id);
    if (sh == nullptr || c == nullptr || sh->bytes != c->bytes) continue;
    if (c->state != memory::ChunkState::kResident) return false;
    if (const auto* sb = std::get_if<memory::SharedBacking>(&c->backing)) {
      if (sb->shared == candidate) return true;  // maps it already
      // Its old contents are replaced whole: no copy. Short of room: upload.
      if (absl::Status s = layout.Privatize(*id, /*copy_contents=*/false); !s.ok()) {
        if (absl::IsResourceExhausted(s)) return false;
        return s;
      }
    }
    if (absl::Status s = layout.Attach(*id, candidate); !s.ok()) return s;
    ++generation_;  // its own physical memory was released
    return true;
  }
  return false;
}

void NodeMemory::PublishLocked() {
  memory::NodeUsage node;
  std::vector<std::pair<ClientId, memory::ClientUsage>> clients;
  if (manager_ != nullptr) {
    node = manager_->Node();
    clients = manager_->ledger().Clients();
  }
  absl::MutexLock lock(&stats_mu_);
  node_stats_ = node;
  client_stats_.clear();
  for (auto& [id, usage] : clients) client_stats_.emplace(id, usage);
}

memory::ClientUsage NodeMemory::Usage(ClientId client) const {
  absl::MutexLock lock(&stats_mu_);
  auto it = client_stats_.find(client);
  return it == client_stats_.end() ? memory::ClientUsage{} : it->second;
}

NodeMemoryStatus NodeMemory::Status() const {
  NodeMemoryStatus s;
  s.enabled = true;
  s.overcommit_percent = options_.overcommit_percent;
  absl::MutexLock lock(&stats_mu_);
  s.node = node_stats_;
  return s;
}

}  // namespace wooly::server
