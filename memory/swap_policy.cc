#include "wooly/memory/swap_policy.h"

#include <algorithm>
#include <tuple>
#include <utility>

#include "absl/strings/str_cat.h"

namespace wooly::memory {

SwapPolicy::SwapPolicy(SwapPolicyOptions options, Clock clock)
    : options_(options), clock_(std::move(clock)) {}

void SwapPolicy::AddClient(ClientId client, ClientPolicy policy) {
  clients_[client] = {.policy = policy, .in_flight = 0, .last_active = clock_()};
}

void SwapPolicy::RemoveClient(ClientId client) { clients_.erase(client); }

absl::Status SwapPolicy::SetPolicy(ClientId client, ClientPolicy policy) {
  auto it = clients_.find(client);
  if (it == clients_.end()) return absl::NotFoundError(absl::StrCat("no client ", client));
  it->second.policy = policy;
  return absl::OkStatus();
}

std::optional<ClientPolicy> SwapPolicy::policy(ClientId client) const {
  auto it = clients_.find(client);
  if (it == clients_.end()) return std::nullopt;
  return it->second.policy;
}

void SwapPolicy::BeginCommand(ClientId client) {
  auto it = clients_.find(client);
  if (it == clients_.end()) return;
  ++it->second.in_flight;
  it->second.last_active = clock_();
}

void SwapPolicy::EndCommand(ClientId client) {
  auto it = clients_.find(client);
  if (it == clients_.end()) return;
  if (it->second.in_flight > 0) --it->second.in_flight;
  it->second.last_active = clock_();
}

bool SwapPolicy::IsBusy(ClientId client) const {
  auto it = clients_.find(client);
  return it != clients_.end() && it->second.in_flight > 0;
}

absl::Duration SwapPolicy::IdleFor(ClientId client) const {
  auto it = clients_.find(client);
  if (it == clients_.end() || it->second.in_flight > 0) return absl::ZeroDuration();
  absl::Duration d = clock_() - it->second.last_active;
  return d < absl::ZeroDuration() ? absl::ZeroDuration() : d;
}

bool SwapPolicy::IsIdle(ClientId client) const {
  auto it = clients_.find(client);
  if (it == clients_.end() || it->second.in_flight > 0) return false;
  return IdleFor(client) >= options_.idle_threshold;
}

namespace {

// A chunk eviction may take: resident, private, not mid-swap.
bool Evictable(const ChunkInfo& c) {
  return !c.orphaned && c.state == ChunkState::kResident &&
         std::holds_alternative<ResidentBacking>(c.backing);
}

}  // namespace

absl::StatusOr<EvictionPlan> SwapPolicy::PlanEviction(const VmLayout& layout, ClientId requester,
                                                      uint64_t bytes_short,
                                                      const std::set<ChunkId>& pinned) const {
  EvictionPlan plan;
  if (bytes_short == 0) return plan;
  auto req = clients_.find(requester);
  const int req_priority =
      req == clients_.end() ? ClientPolicy{}.priority : req->second.policy.priority;

  // One candidate group per client, ordered by the rules in the header.
  struct Group {
    VictimTier tier;
    int priority;
    absl::Duration idle;
    ClientId client;
    std::vector<std::pair<uint64_t, ChunkId>> chunks;  // (bytes, id)
  };
  std::vector<Group> groups;
  for (ClientId c : layout.Clients()) {
    auto it = clients_.find(c);
    if (it == clients_.end()) continue;  // unknown to the policy: left alone
    const Activity& a = it->second;
    if (a.policy.noswap) continue;
    VictimTier tier;
    if (c == requester) {
      tier = VictimTier::kRequesterUnpinned;
    } else if (a.in_flight > 0) {
      continue;  // busy: its kernels may be using the memory right now
    } else if (IsIdle(c)) {
      tier = VictimTier::kIdle;
    } else if (a.policy.priority >= req_priority) {
      tier = VictimTier::kActive;  // not more important than the requester
    } else {
      continue;  // active and more important than the requester
    }
    Group g{tier, a.policy.priority, IdleFor(c), c, {}};
    for (ChunkId id : layout.ClientChunks(c)) {
      const ChunkInfo* info = layout.chunk(id);
      if (info == nullptr || !Evictable(*info)) continue;
      if (c == requester && pinned.contains(id)) continue;
      g.chunks.emplace_back(info->bytes, id);
    }
    if (!g.chunks.empty()) groups.push_back(std::move(g));
  }
  std::sort(groups.begin(), groups.end(), [](const Group& x, const Group& y) {
    // Lower tier, lower priority (a larger number), longer idle, lower id
    // first.
    return std::make_tuple(static_cast<int>(x.tier), -x.priority, -x.idle, x.client) <
           std::make_tuple(static_cast<int>(y.tier), -y.priority, -y.idle, y.client);
  });

  uint64_t available = 0;
  for (const Group& g : groups) {
    for (const auto& [bytes, id] : g.chunks) available += bytes;
  }
  if (available < bytes_short) {
    return absl::ResourceExhaustedError(
        absl::StrCat("out of memory: client ", requester, " needs ", bytes_short,
                     " more bytes of device memory and only ", available,
                     " bytes may be swapped out (busy, noswap, pinned and higher-priority active "
                     "clients' memory stays)"));
  }

  uint64_t missing = bytes_short;
  for (Group& g : groups) {
    std::sort(g.chunks.begin(), g.chunks.end());
    while (missing > 0 && !g.chunks.empty()) {
      // The smallest chunk covering what is missing, else the largest.
      auto fit =
          std::lower_bound(g.chunks.begin(), g.chunks.end(), std::make_pair(missing, ChunkId{0}));
      if (fit == g.chunks.end()) fit = std::prev(g.chunks.end());
      plan.victims.push_back(
          {.chunk = fit->second, .client = g.client, .bytes = fit->first, .tier = g.tier});
      plan.bytes += fit->first;
      missing -= std::min(missing, fit->first);
      g.chunks.erase(fit);
    }
    if (missing == 0) break;
  }
  return plan;
}

absl::StatusOr<SwapInPlan> SwapPolicy::PlanSwapIn(const VmLayout& layout, ClientId client,
                                                  std::span<const ChunkId> needed) const {
  SwapInPlan plan;
  std::set<ChunkId> seen;
  std::vector<const ChunkInfo*> todo;
  for (ChunkId id : needed) {
    if (!seen.insert(id).second) continue;
    const ChunkInfo* c = layout.chunk(id);
    if (c == nullptr || c->client != client || c->orphaned) {
      return absl::InvalidArgumentError(
          absl::StrCat("chunk ", id, " is not a chunk of client ", client));
    }
    if (c->state == ChunkState::kSwapped) {
      todo.push_back(c);
    } else if (c->state == ChunkState::kSwappingIn || c->state == ChunkState::kSwappingOut) {
      plan.in_flight.push_back(id);
    }
  }
  std::sort(todo.begin(), todo.end(),
            [](const ChunkInfo* a, const ChunkInfo* b) { return a->va < b->va; });
  for (const ChunkInfo* c : todo) {
    plan.chunks.push_back(c->id);
    plan.bytes += c->bytes;
  }
  return plan;
}

}  // namespace wooly::memory
