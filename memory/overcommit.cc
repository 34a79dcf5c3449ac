#include "wooly/memory/overcommit.h"

#include <algorithm>
#include <limits>

#include "absl/strings/str_cat.h"

namespace wooly::memory {
namespace {

// Adds a signed delta to a counter. A delta that would take it below zero is
// a bookkeeping bug in the caller; the counter stops at zero rather than
// wrapping to 2^64 in what the status page shows.
void Apply(uint64_t& counter, int64_t delta) {
  if (delta >= 0) {
    counter += static_cast<uint64_t>(delta);
  } else {
    uint64_t d = static_cast<uint64_t>(-(delta + 1)) + 1;
    counter = d > counter ? 0 : counter - d;
  }
}

}  // namespace

Overcommit::Overcommit(OvercommitConfig config) : config_(config) {
  node_.physical_bytes = config_.physical_bytes;
  node_.physical_capacity = config_.physical_bytes;
  node_.admission_limit = LimitFor(config_.overcommit_percent);
}

uint64_t Overcommit::LimitFor(uint32_t percent) const {
  unsigned __int128 limit =
      static_cast<unsigned __int128>(config_.physical_bytes) * (100u + uint64_t{percent}) / 100u;
  return limit > std::numeric_limits<uint64_t>::max() ? std::numeric_limits<uint64_t>::max()
                                                      : static_cast<uint64_t>(limit);
}

void Overcommit::AddClient(ClientId client) {
  if (clients_.try_emplace(client).second) ++node_.clients;
}

void Overcommit::SetClientOverride(ClientId client, std::optional<uint32_t> percent) {
  AddClient(client);
  clients_[client].overcommit_percent = percent;
}

void Overcommit::RemoveClient(ClientId client) {
  auto it = clients_.find(client);
  if (it == clients_.end()) return;
  const ClientUsage& u = it->second;
  node_.allocated -= u.allocated;
  node_.resident -= u.resident;
  node_.swapped_out -= u.swapped_out;
  node_.dedup_mapped -= u.shared;
  clients_.erase(it);
  --node_.clients;
}

uint64_t Overcommit::AdmissionLimit(ClientId client) const {
  auto it = clients_.find(client);
  if (it != clients_.end() && it->second.overcommit_percent) {
    return LimitFor(*it->second.overcommit_percent);
  }
  return LimitFor(config_.overcommit_percent);
}

bool Overcommit::CanAdmit(ClientId client, uint64_t bytes) const {
  const uint64_t limit = AdmissionLimit(client);
  return node_.allocated <= limit && bytes <= limit - node_.allocated;
}

absl::Status Overcommit::Admit(ClientId client, uint64_t bytes) {
  AddClient(client);
  const uint64_t limit = AdmissionLimit(client);
  if (!CanAdmit(client, bytes)) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "out of memory: client ", client, " asks for ", bytes, " bytes with ", node_.allocated,
        " of ", limit, " admitted on the node (", config_.physical_bytes, " physical, overcommit ",
        clients_[client].overcommit_percent.value_or(config_.overcommit_percent), "%)"));
  }
  clients_[client].allocated += bytes;
  node_.allocated += bytes;
  return absl::OkStatus();
}

absl::Status Overcommit::Release(ClientId client, uint64_t bytes) {
  auto it = clients_.find(client);
  uint64_t have = it == clients_.end() ? 0 : it->second.allocated;
  if (bytes > have) {
    return absl::FailedPreconditionError(
        absl::StrCat("client ", client, " releases ", bytes, " bytes but has ", have, " admitted"));
  }
  if (bytes == 0) return absl::OkStatus();
  it->second.allocated -= bytes;
  node_.allocated -= bytes;
  return absl::OkStatus();
}

uint64_t Overcommit::PhysicalFree() const {
  return node_.physical_used >= node_.physical_capacity
             ? 0
             : node_.physical_capacity - node_.physical_used;
}

uint64_t Overcommit::PhysicalOver() const {
  return node_.physical_used > node_.physical_capacity
             ? node_.physical_used - node_.physical_capacity
             : 0;
}

void Overcommit::SetPhysicalCapacity(uint64_t bytes) {
  node_.physical_capacity = std::min(bytes, config_.physical_bytes);
}

void Overcommit::NoteResident(ClientId client, int64_t delta) {
  auto it = clients_.find(client);
  if (it == clients_.end()) return;
  Apply(it->second.resident, delta);
  Apply(node_.resident, delta);
}

void Overcommit::NoteSwapped(ClientId client, int64_t delta) {
  auto it = clients_.find(client);
  if (it == clients_.end()) return;
  Apply(it->second.swapped_out, delta);
  Apply(node_.swapped_out, delta);
}

void Overcommit::NoteShared(ClientId client, int64_t delta) {
  auto it = clients_.find(client);
  if (it == clients_.end()) return;
  Apply(it->second.shared, delta);
  Apply(node_.dedup_mapped, delta);
}

void Overcommit::NotePhysical(int64_t delta) { Apply(node_.physical_used, delta); }
void Overcommit::NoteDedupPhysical(int64_t delta) { Apply(node_.dedup_physical, delta); }
void Overcommit::NoteHostPool(int64_t delta) { Apply(node_.host_pool_used, delta); }

void Overcommit::NoteSwapOut(uint64_t bytes) {
  node_.swap_out_bytes += bytes;
  ++node_.swap_outs;
}

void Overcommit::NoteSwapIn(uint64_t bytes) {
  node_.swap_in_bytes += bytes;
  ++node_.swap_ins;
}

ClientUsage Overcommit::Client(ClientId client) const {
  auto it = clients_.find(client);
  if (it == clients_.end()) return {};
  ClientUsage u = it->second;
  u.admission_limit = AdmissionLimit(client);
  return u;
}

NodeUsage Overcommit::Node() const {
  NodeUsage n = node_;
  n.overcommitted = n.allocated > n.physical_bytes ? n.allocated - n.physical_bytes : 0;
  n.dedup_saved = n.dedup_mapped > n.dedup_physical ? n.dedup_mapped - n.dedup_physical : 0;
  return n;
}

std::vector<std::pair<ClientId, ClientUsage>> Overcommit::Clients() const {
  std::vector<std::pair<ClientId, ClientUsage>> out;
  out.reserve(clients_.size());
  for (const auto& [id, u] : clients_) out.emplace_back(id, Client(id));
  return out;
}

}  // namespace wooly::memory
