#include "wooly/memory/vm_layout.h"

#include <algorithm>
#include <cassert>
#include <limits>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace wooly::memory {
namespace {

bool IsPowerOfTwo(uint64_t v) { return v != 0 && (v & (v - 1)) == 0; }

// Rounds up to a multiple of `a`; nullopt on overflow.
std::optional<uint64_t> AlignUp(uint64_t v, uint64_t a) {
  uint64_t rem = v % a;
  if (rem == 0) return v;
  if (v > std::numeric_limits<uint64_t>::max() - (a - rem)) return std::nullopt;
  return v + (a - rem);
}

int64_t Signed(uint64_t bytes) { return static_cast<int64_t>(bytes); }

absl::Status PhysicalShort(uint64_t need, uint64_t free, absl::string_view what = "") {
  return absl::ResourceExhaustedError(
      absl::StrCat("out of memory: physical memory short by ", need - free, " bytes", what));
}

absl::Status Annotate(const absl::Status& s, absl::string_view what) {
  return absl::Status(s.code(), absl::StrCat(what, ": ", s.message()));
}

}  // namespace

absl::Status ValidateLayoutOptions(const LayoutOptions& o) {
  if (!IsPowerOfTwo(o.granularity)) return absl::InvalidArgumentError("granularity: power of two");
  if (o.chunk_bytes == 0 || o.chunk_bytes % o.granularity != 0) {
    return absl::InvalidArgumentError("chunk_bytes: a nonzero multiple of the granularity");
  }
  if (o.small_chunk_bytes == 0 || o.small_chunk_bytes % o.granularity != 0) {
    return absl::InvalidArgumentError("small_chunk_bytes: a nonzero multiple of the granularity");
  }
  if (o.small_max_bytes > o.small_chunk_bytes) {
    return absl::InvalidArgumentError("small_max_bytes: at most small_chunk_bytes");
  }
  if (!IsPowerOfTwo(o.small_alignment)) {
    return absl::InvalidArgumentError("small_alignment: power of two");
  }
  if (o.client_va_bytes == 0 || o.client_va_bytes % o.granularity != 0) {
    return absl::InvalidArgumentError("client_va_bytes: a nonzero multiple of the granularity");
  }
  return absl::OkStatus();
}

const char* ChunkStateName(ChunkState state) {
  switch (state) {
    case ChunkState::kResident:
      return "resident";
    case ChunkState::kSwappingOut:
      return "swapping_out";
    case ChunkState::kSwapped:
      return "swapped";
    case ChunkState::kSwappingIn:
      return "swapping_in";
  }
  return "?";
}

VmLayout::VmLayout(LayoutOptions options, PhysicalMemory* physical, Overcommit* ledger)
    : options_(options), physical_(physical), ledger_(ledger) {
  // Bad options are a programming error of whoever builds the layout.
  assert(ValidateLayoutOptions(options_).ok());
}

VmLayout::ClientRec* VmLayout::FindClient(ClientId client) {
  auto it = clients_.find(client);
  return it == clients_.end() || it->second.removed ? nullptr : &it->second;
}

const VmLayout::ClientRec* VmLayout::FindClient(ClientId client) const {
  auto it = clients_.find(client);
  return it == clients_.end() || it->second.removed ? nullptr : &it->second;
}

bool VmLayout::HasClient(ClientId client) const { return FindClient(client) != nullptr; }

std::vector<ClientId> VmLayout::Clients() const {
  std::vector<ClientId> out;
  for (const auto& [id, rec] : clients_) {
    if (!rec.removed) out.push_back(id);
  }
  return out;
}

std::optional<uint64_t> VmLayout::ClientBase(ClientId client) const {
  const ClientRec* rec = FindClient(client);
  if (rec == nullptr) return std::nullopt;
  return rec->va_base;
}

absl::Status VmLayout::AddClient(ClientId client) {
  if (clients_.contains(client)) {
    return absl::AlreadyExistsError(absl::StrCat("client ", client, " already has a range"));
  }
  absl::StatusOr<uint64_t> base =
      physical_->ReserveAddress(options_.client_va_bytes, options_.granularity);
  if (!base.ok()) return Annotate(base.status(), "reserving the client's range");
  clients_.try_emplace(client, *base, options_.client_va_bytes);
  ledger_->AddClient(client);
  return absl::OkStatus();
}

void VmLayout::TeardownError(absl::Status s, absl::Status* error) {
  ledger_->NoteTeardownError();
  if (error->ok()) *error = std::move(s);
}

absl::Status VmLayout::RemoveClient(ClientId client) {
  ClientRec* rec = FindClient(client);
  if (rec == nullptr) return absl::NotFoundError(absl::StrCat("no client ", client));
  absl::Status error;
  std::vector<uint64_t> starts;
  for (const auto& [va, a] : rec->allocations) starts.push_back(va);
  for (uint64_t va : starts) {
    absl::Status s = Free(client, va);
    if (!s.ok() && error.ok()) error = s;
  }
  rec->removed = true;
  ledger_->RemoveClient(client);
  if (rec->orphans == 0) {
    if (absl::Status s = physical_->FreeAddress(rec->va_base, rec->va_bytes); !s.ok()) {
      TeardownError(s, &error);
    }
    clients_.erase(client);
  }
  return error;
}

uint64_t VmLayout::ChargeFor(uint64_t bytes, uint64_t alignment) const {
  if (bytes <= options_.small_max_bytes && alignment <= options_.small_chunk_bytes) {
    return AlignUp(bytes, options_.small_alignment).value_or(bytes);
  }
  return AlignUp(bytes, options_.granularity).value_or(std::numeric_limits<uint64_t>::max());
}

uint64_t VmLayout::PhysicalNeededFor(ClientId client, uint64_t bytes, uint64_t alignment) const {
  const ClientRec* rec = FindClient(client);
  if (rec == nullptr || bytes == 0) return 0;
  if (bytes <= options_.small_max_bytes && alignment <= options_.small_chunk_bytes) {
    uint64_t size = AlignUp(bytes, options_.small_alignment).value_or(bytes);
    uint64_t align = std::max(alignment, options_.small_alignment);
    for (const auto& [va, id] : rec->chunk_at) {
      const Chunk& c = chunks_.at(id);
      if (c.sub != nullptr && c.sub->Fits(size, align)) return 0;
    }
    return options_.small_chunk_bytes;
  }
  return AlignUp(bytes, options_.granularity).value_or(std::numeric_limits<uint64_t>::max());
}

absl::StatusOr<Allocation> VmLayout::Allocate(ClientId client, uint64_t bytes, uint64_t alignment) {
  ClientRec* rec = FindClient(client);
  if (rec == nullptr) return absl::NotFoundError(absl::StrCat("no client ", client));
  if (bytes == 0) return absl::InvalidArgumentError("zero-sized allocation");
  if (alignment != 0 && !IsPowerOfTwo(alignment)) {
    return absl::InvalidArgumentError("alignment is not a power of two");
  }
  if (bytes > rec->va_bytes) {
    return absl::ResourceExhaustedError(
        absl::StrCat("out of memory: ", bytes, " bytes exceed the client's address range"));
  }
  if (bytes <= options_.small_max_bytes && alignment <= options_.small_chunk_bytes) {
    return AllocateSmall(client, *rec, bytes, alignment);
  }
  return AllocateLarge(client, *rec, bytes, alignment);
}

absl::StatusOr<ChunkId> VmLayout::NewChunk(ClientId client, ClientRec& rec, uint64_t va,
                                           uint64_t bytes, ChunkKind kind, uint64_t va_block) {
  absl::StatusOr<PhysHandle> h = physical_->Create(bytes);
  if (!h.ok()) return Annotate(h.status(), "creating a chunk");
  if (absl::Status s = physical_->Map(va, bytes, *h, Access::kReadWrite); !s.ok()) {
    // Nothing maps it, so this cannot leave anything behind but the handle.
    if (absl::Status r = physical_->Release(*h); !r.ok()) ledger_->NoteTeardownError();
    return Annotate(s, "mapping a chunk");
  }
  ChunkId id = next_chunk_++;
  Chunk& c = chunks_[id];
  c.info = {.id = id,
            .client = client,
            .va = va,
            .bytes = bytes,
            .kind = kind,
            .state = ChunkState::kResident,
            .backing = ResidentBacking{*h}};
  c.va_block = va_block;
  if (kind == ChunkKind::kSmall) c.sub = std::make_unique<RangeAllocator>(va, bytes);
  rec.chunk_at[va] = id;
  ledger_->NotePhysical(Signed(bytes));
  ledger_->NoteResident(client, Signed(bytes));
  return id;
}

absl::StatusOr<Allocation> VmLayout::AllocateLarge(ClientId client, ClientRec& rec, uint64_t bytes,
                                                   uint64_t alignment) {
  const uint64_t charged = *AlignUp(bytes, options_.granularity);  // bytes <= va_bytes
  if (absl::Status s = ledger_->Admit(client, charged); !s.ok()) return s;
  if (charged > ledger_->PhysicalFree()) {
    (void)ledger_->Release(client, charged);
    return PhysicalShort(charged, ledger_->PhysicalFree());
  }
  std::optional<uint64_t> va = rec.va.Allocate(charged, std::max(alignment, options_.granularity));
  if (!va) {
    (void)ledger_->Release(client, charged);
    return absl::ResourceExhaustedError("out of memory: the client's address range is full");
  }
  Allocation a{.client = client, .va = *va, .bytes = bytes, .charged = charged, .chunks = {}};
  for (uint64_t off = 0; off < charged; off += options_.chunk_bytes) {
    uint64_t piece = std::min(options_.chunk_bytes, charged - off);
    absl::StatusOr<ChunkId> id = NewChunk(client, rec, *va + off, piece, ChunkKind::kLarge, *va);
    if (!id.ok()) {
      // Undo the chunks made so far; they are resident and private.
      absl::Status ignored;
      for (ChunkId made : a.chunks) DropChunk(made, &ignored);
      rec.va.Free(*va);
      (void)ledger_->Release(client, charged);
      return id.status();
    }
    a.chunks.push_back(*id);
  }
  rec.allocations[*va] = a;
  return a;
}

absl::StatusOr<Allocation> VmLayout::AllocateSmall(ClientId client, ClientRec& rec, uint64_t bytes,
                                                   uint64_t alignment) {
  const uint64_t charged = *AlignUp(bytes, options_.small_alignment);
  const uint64_t align = std::max(alignment, options_.small_alignment);
  ChunkId target = 0;
  for (const auto& [va, id] : rec.chunk_at) {
    const Chunk& c = chunks_.at(id);
    if (c.sub != nullptr && c.sub->Fits(charged, align)) {
      target = id;
      break;
    }
  }
  if (absl::Status s = ledger_->Admit(client, charged); !s.ok()) return s;
  if (target == 0 && options_.small_chunk_bytes > ledger_->PhysicalFree()) {
    (void)ledger_->Release(client, charged);
    return PhysicalShort(options_.small_chunk_bytes, ledger_->PhysicalFree());
  }
  if (target == 0) {
    std::optional<uint64_t> va = rec.va.Allocate(options_.small_chunk_bytes, options_.granularity);
    if (!va) {
      (void)ledger_->Release(client, charged);
      return absl::ResourceExhaustedError("out of memory: the client's address range is full");
    }
    absl::StatusOr<ChunkId> id =
        NewChunk(client, rec, *va, options_.small_chunk_bytes, ChunkKind::kSmall, *va);
    if (!id.ok()) {
      rec.va.Free(*va);
      (void)ledger_->Release(client, charged);
      return id.status();
    }
    target = *id;
  }
  std::optional<uint64_t> va = chunks_.at(target).sub->Allocate(charged, align);
  assert(va.has_value());  // Fits said so, or the chunk is new and big enough
  Allocation a{.client = client, .va = *va, .bytes = bytes, .charged = charged, .chunks = {target}};
  rec.allocations[*va] = a;
  return a;
}

bool VmLayout::DropChunk(ChunkId id, absl::Status* error) {
  Chunk& c = chunks_.at(id);
  ChunkInfo& info = c.info;
  ClientRec* rec = FindClient(info.client);
  if (info.state == ChunkState::kSwappingOut || info.state == ChunkState::kSwappingIn) {
    // The copy is in flight: FinishSwap frees both sides.
    if (info.state == ChunkState::kSwappingOut) {
      ledger_->NoteResident(info.client, -Signed(info.bytes));
    } else {
      ledger_->NoteSwapped(info.client, -Signed(info.bytes));
    }
    info.orphaned = true;
    ++orphans_;
    if (rec != nullptr) {
      rec->chunk_at.erase(info.va);
      ++rec->orphans;
    }
    return false;
  }
  if (auto* r = std::get_if<ResidentBacking>(&info.backing)) {
    absl::Status s = physical_->Unmap(info.va, info.bytes);
    if (!s.ok()) TeardownError(s, error);
    s = physical_->Release(r->handle);
    if (s.ok()) {
      ledger_->NotePhysical(-Signed(info.bytes));
    } else {
      TeardownError(s, error);  // still counted as used: it is
    }
    ledger_->NoteResident(info.client, -Signed(info.bytes));
  } else if (auto* w = std::get_if<SwappedBacking>(&info.backing)) {
    absl::Status s = physical_->FreeHost(w->slot);
    if (s.ok()) {
      ledger_->NoteHostPool(-Signed(info.bytes));
    } else {
      TeardownError(s, error);
    }
    ledger_->NoteSwapped(info.client, -Signed(info.bytes));
  } else {
    auto& sh = std::get<SharedBacking>(info.backing);
    if (absl::Status s = physical_->Unmap(info.va, info.bytes); !s.ok()) TeardownError(s, error);
    ledger_->NoteShared(info.client, -Signed(info.bytes));
    Unref(sh.shared, error);
  }
  if (rec != nullptr) rec->chunk_at.erase(info.va);
  chunks_.erase(id);
  return true;
}

void VmLayout::Unref(SharedId id, absl::Status* error) {
  auto it = shared_.find(id);
  assert(it != shared_.end());
  if (--it->second.users > 0) return;
  if (absl::Status s = physical_->Release(it->second.handle); s.ok()) {
    ledger_->NotePhysical(-Signed(it->second.bytes));
  } else {
    TeardownError(s, error);
  }
  ledger_->NoteDedupPhysical(-Signed(it->second.bytes));
  shared_.erase(it);
  if (on_shared_released_) on_shared_released_(id);
}

void VmLayout::ReleaseBlock(ClientRec& rec, uint64_t block, bool deferred) {
  if (deferred) return;  // OrphanDone frees it
  rec.va.Free(block);
}

absl::Status VmLayout::Free(ClientId client, uint64_t va) {
  ClientRec* rec = FindClient(client);
  if (rec == nullptr) return absl::NotFoundError(absl::StrCat("no client ", client));
  auto it = rec->allocations.find(va);
  if (it == rec->allocations.end()) {
    return absl::NotFoundError(absl::StrCat("no allocation of client ", client, " at ", va));
  }
  Allocation a = std::move(it->second);
  rec->allocations.erase(it);
  absl::Status error;
  if (absl::Status s = ledger_->Release(client, a.charged); !s.ok()) TeardownError(s, &error);
  const Chunk& first = chunks_.at(a.chunks.front());
  if (first.info.kind == ChunkKind::kSmall) {
    ChunkId id = a.chunks.front();
    Chunk& c = chunks_.at(id);
    c.sub->Free(va);
    if (c.sub->empty()) {
      uint64_t block = c.va_block;
      bool gone = DropChunk(id, &error);
      if (gone) {
        ReleaseBlock(*rec, block, false);
      } else {
        ++rec->deferred_blocks[block];
      }
    }
    return error;
  }
  int deferred = 0;
  for (ChunkId id : a.chunks) {
    if (!DropChunk(id, &error)) ++deferred;
  }
  if (deferred > 0) {
    rec->deferred_blocks[a.va] += deferred;
  } else {
    ReleaseBlock(*rec, a.va, false);
  }
  return error;
}

void VmLayout::OrphanDone(ClientId client, uint64_t block) {
  --orphans_;
  auto it = clients_.find(client);
  if (it == clients_.end()) return;
  ClientRec& rec = it->second;
  --rec.orphans;
  auto d = rec.deferred_blocks.find(block);
  if (d != rec.deferred_blocks.end() && --d->second == 0) {
    rec.deferred_blocks.erase(d);
    rec.va.Free(block);
  }
  if (rec.removed && rec.orphans == 0) {
    if (absl::Status s = physical_->FreeAddress(rec.va_base, rec.va_bytes); !s.ok()) {
      ledger_->NoteTeardownError();
    }
    clients_.erase(it);
  }
}

std::optional<Allocation> VmLayout::FindAllocation(ClientId client, uint64_t va) const {
  const ClientRec* rec = FindClient(client);
  if (rec == nullptr) return std::nullopt;
  auto it = rec->allocations.upper_bound(va);
  if (it == rec->allocations.begin()) return std::nullopt;
  --it;
  if (va - it->first >= it->second.bytes) return std::nullopt;
  return it->second;
}

absl::StatusOr<std::pair<ChunkId, uint64_t>> VmLayout::Resolve(ClientId client, uint64_t va) const {
  const ClientRec* rec = FindClient(client);
  if (rec == nullptr) return absl::NotFoundError(absl::StrCat("no client ", client));
  auto it = rec->chunk_at.upper_bound(va);
  if (it != rec->chunk_at.begin()) {
    --it;
    const ChunkInfo& c = chunks_.at(it->second).info;
    if (va - c.va < c.bytes) return std::make_pair(c.id, va - c.va);
  }
  return absl::NotFoundError(absl::StrCat("address ", va, " is not in a chunk of client ", client));
}

absl::StatusOr<std::vector<ChunkId>> VmLayout::ChunksCovering(ClientId client, uint64_t va,
                                                              uint64_t bytes) const {
  std::vector<ChunkId> out;
  if (bytes == 0) return out;
  std::optional<Allocation> a = FindAllocation(client, va);
  if (!a || bytes > a->bytes - (va - a->va)) {
    return absl::InvalidArgumentError(
        absl::StrCat("[", va, ", +", bytes, ") is not inside one allocation of client ", client));
  }
  for (ChunkId id : a->chunks) {
    const ChunkInfo& c = chunks_.at(id).info;
    if (c.va < va + bytes && va < c.va + c.bytes) out.push_back(id);
  }
  return out;
}

std::vector<ChunkId> VmLayout::ClientChunks(ClientId client) const {
  std::vector<ChunkId> out;
  const ClientRec* rec = FindClient(client);
  if (rec == nullptr) return out;
  for (const auto& [va, id] : rec->chunk_at) out.push_back(id);
  return out;
}

const ChunkInfo* VmLayout::chunk(ChunkId id) const {
  auto it = chunks_.find(id);
  return it == chunks_.end() ? nullptr : &it->second.info;
}

const SharedChunkInfo* VmLayout::shared(SharedId id) const {
  auto it = shared_.find(id);
  return it == shared_.end() ? nullptr : &it->second;
}

absl::StatusOr<SwapTicket> VmLayout::BeginSwapOut(ChunkId id) {
  auto it = chunks_.find(id);
  if (it == chunks_.end()) return absl::NotFoundError(absl::StrCat("no chunk ", id));
  ChunkInfo& c = it->second.info;
  if (c.orphaned || c.state != ChunkState::kResident || c.is_shared()) {
    return absl::FailedPreconditionError(
        absl::StrCat("chunk ", id, " cannot swap out: ", ChunkStateName(c.state),
                     c.is_shared() ? ", shared" : "", c.orphaned ? ", orphaned" : ""));
  }
  absl::StatusOr<HostSlot> slot = physical_->AllocHost(c.bytes);
  if (!slot.ok()) return Annotate(slot.status(), "host pool");
  c.state = ChunkState::kSwappingOut;
  c.pending_slot = *slot;
  ledger_->NoteHostPool(Signed(c.bytes));
  return SwapTicket{.chunk = id,
                    .swap_out = true,
                    .handle = std::get<ResidentBacking>(c.backing).handle,
                    .slot = *slot,
                    .bytes = c.bytes};
}

absl::StatusOr<SwapTicket> VmLayout::BeginSwapIn(ChunkId id) {
  auto it = chunks_.find(id);
  if (it == chunks_.end()) return absl::NotFoundError(absl::StrCat("no chunk ", id));
  ChunkInfo& c = it->second.info;
  if (c.orphaned || c.state != ChunkState::kSwapped) {
    return absl::FailedPreconditionError(absl::StrCat("chunk ", id,
                                                      " cannot swap in: ", ChunkStateName(c.state),
                                                      c.orphaned ? ", orphaned" : ""));
  }
  if (c.bytes > ledger_->PhysicalFree()) return PhysicalShort(c.bytes, ledger_->PhysicalFree());
  absl::StatusOr<PhysHandle> h = physical_->Create(c.bytes);
  if (!h.ok()) return Annotate(h.status(), "creating a chunk to swap into");
  c.state = ChunkState::kSwappingIn;
  c.pending_handle = *h;
  ledger_->NotePhysical(Signed(c.bytes));
  return SwapTicket{.chunk = id,
                    .swap_out = false,
                    .handle = *h,
                    .slot = std::get<SwappedBacking>(c.backing).slot,
                    .bytes = c.bytes};
}

absl::Status VmLayout::RunCopy(const SwapTicket& t) {
  // Reads no table: callers run it with their lock dropped while other
  // threads change the tables. The ticket's handle and slot stay valid until
  // FinishSwap (an orphaned chunk keeps both until then).
  return t.swap_out ? physical_->CopyToHost(t.handle, t.slot, t.bytes)
                    : physical_->CopyFromHost(t.slot, t.handle, t.bytes);
}

absl::Status VmLayout::FinishSwap(const SwapTicket& t, absl::Status copy) {
  auto it = chunks_.find(t.chunk);
  const ChunkState want = t.swap_out ? ChunkState::kSwappingOut : ChunkState::kSwappingIn;
  if (it == chunks_.end() || it->second.info.state != want) {
    return absl::FailedPreconditionError("stale swap ticket");
  }
  ChunkInfo& c = it->second.info;
  if (c.orphaned) {
    // Its owner is gone: free both copies. Nothing maps the new handle of a
    // swap-in; the old handle of a swap-out is still mapped.
    absl::Status error;
    if (t.swap_out) {
      if (absl::Status s = physical_->Unmap(c.va, c.bytes); !s.ok()) TeardownError(s, &error);
    }
    if (absl::Status s = physical_->Release(t.handle); s.ok()) {
      ledger_->NotePhysical(-Signed(c.bytes));
    } else {
      TeardownError(s, &error);
    }
    if (absl::Status s = physical_->FreeHost(t.slot); s.ok()) {
      ledger_->NoteHostPool(-Signed(c.bytes));
    } else {
      TeardownError(s, &error);
    }
    const ClientId client = c.client;
    const uint64_t block = it->second.va_block;
    chunks_.erase(it);
    OrphanDone(client, block);
    if (!error.ok()) return error;
    return absl::CancelledError(
        absl::StrCat("chunk ", t.chunk, "'s owner went away during the swap; both copies freed"));
  }

  if (t.swap_out) {
    auto roll_back = [&](absl::Status why) {
      if (absl::Status s = physical_->FreeHost(t.slot); s.ok()) {
        ledger_->NoteHostPool(-Signed(c.bytes));
      } else {
        ledger_->NoteTeardownError();
      }
      c.state = ChunkState::kResident;
      c.pending_slot = 0;
      return Annotate(why, absl::StrCat("swap-out of chunk ", c.id, " rolled back"));
    };
    if (!copy.ok()) return roll_back(copy);
    if (absl::Status s = physical_->Unmap(c.va, c.bytes); !s.ok()) return roll_back(s);
    // Commit point: the host slot holds the bytes and nothing maps the
    // handle any more.
    if (absl::Status s = physical_->Release(t.handle); s.ok()) {
      ledger_->NotePhysical(-Signed(c.bytes));
    } else {
      ledger_->NoteTeardownError();  // leaked, so still counted as used
    }
    c.state = ChunkState::kSwapped;
    c.backing = SwappedBacking{t.slot};
    c.pending_slot = 0;
    ledger_->NoteResident(c.client, -Signed(c.bytes));
    ledger_->NoteSwapped(c.client, Signed(c.bytes));
    ledger_->NoteSwapOut(c.bytes);
    return absl::OkStatus();
  }

  auto roll_back = [&](absl::Status why) {
    if (absl::Status s = physical_->Release(t.handle); s.ok()) {
      ledger_->NotePhysical(-Signed(c.bytes));
    } else {
      ledger_->NoteTeardownError();
    }
    c.state = ChunkState::kSwapped;
    c.pending_handle = 0;
    return Annotate(why, absl::StrCat("swap-in of chunk ", c.id, " rolled back"));
  };
  if (!copy.ok()) return roll_back(copy);
  if (absl::Status s = physical_->Map(c.va, c.bytes, t.handle, Access::kReadWrite); !s.ok()) {
    return roll_back(s);
  }
  // Commit point: the device holds the bytes at the chunk's address.
  if (absl::Status s = physical_->FreeHost(t.slot); s.ok()) {
    ledger_->NoteHostPool(-Signed(c.bytes));
  } else {
    ledger_->NoteTeardownError();
  }
  c.state = ChunkState::kResident;
  c.backing = ResidentBacking{t.handle};
  c.pending_handle = 0;
  ledger_->NoteSwapped(c.client, -Signed(c.bytes));
  ledger_->NoteResident(c.client, Signed(c.bytes));
  ledger_->NoteSwapIn(c.bytes);
  return absl::OkStatus();
}

absl::Status VmLayout::SwapOut(ChunkId id) {
  absl::StatusOr<SwapTicket> t = BeginSwapOut(id);
  if (!t.ok()) return t.status();
  return FinishSwap(*t, RunCopy(*t));
}

absl::Status VmLayout::SwapIn(ChunkId id) {
  absl::StatusOr<SwapTicket> t = BeginSwapIn(id);
  if (!t.ok()) return t.status();
  return FinishSwap(*t, RunCopy(*t));
}

namespace {

absl::Status NeedPrivateResidentLarge(const ChunkInfo* c, ChunkId id) {
  if (c == nullptr) return absl::NotFoundError(absl::StrCat("no chunk ", id));
  if (c->orphaned || c->kind != ChunkKind::kLarge || c->state != ChunkState::kResident ||
      !std::holds_alternative<ResidentBacking>(c->backing)) {
    return absl::FailedPreconditionError(
        absl::StrCat("chunk ", id, " is not a resident, private, large chunk"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<SharedId> VmLayout::Publish(ChunkId id) {
  if (absl::Status s = NeedPrivateResidentLarge(chunk(id), id); !s.ok()) return s;
  ChunkInfo& c = chunks_.at(id).info;
  const PhysHandle h = std::get<ResidentBacking>(c.backing).handle;
  if (absl::Status s = physical_->Unmap(c.va, c.bytes); !s.ok()) return s;
  if (absl::Status s = physical_->Map(c.va, c.bytes, h, Access::kReadOnly); !s.ok()) {
    if (!physical_->Map(c.va, c.bytes, h, Access::kReadWrite).ok()) {
      ledger_->NoteTeardownError();
      return absl::InternalError(absl::StrCat("chunk ", id, " left unmapped: ", s.message()));
    }
    return s;
  }
  SharedId sid = next_shared_++;
  shared_[sid] = {.id = sid, .handle = h, .bytes = c.bytes, .users = 1};
  c.backing = SharedBacking{sid};
  ledger_->NoteResident(c.client, -Signed(c.bytes));
  ledger_->NoteShared(c.client, Signed(c.bytes));
  ledger_->NoteDedupPhysical(Signed(c.bytes));
  return sid;
}

absl::Status VmLayout::Attach(ChunkId id, SharedId sid) {
  if (absl::Status s = NeedPrivateResidentLarge(chunk(id), id); !s.ok()) return s;
  auto sh = shared_.find(sid);
  if (sh == shared_.end()) return absl::NotFoundError(absl::StrCat("no shared chunk ", sid));
  ChunkInfo& c = chunks_.at(id).info;
  if (sh->second.bytes != c.bytes) {
    return absl::InvalidArgumentError("shared chunk and chunk differ in size");
  }
  const PhysHandle own = std::get<ResidentBacking>(c.backing).handle;
  if (absl::Status s = physical_->Unmap(c.va, c.bytes); !s.ok()) return s;
  if (absl::Status s = physical_->Map(c.va, c.bytes, sh->second.handle, Access::kReadOnly);
      !s.ok()) {
    if (!physical_->Map(c.va, c.bytes, own, Access::kReadWrite).ok()) {
      ledger_->NoteTeardownError();
      return absl::InternalError(absl::StrCat("chunk ", id, " left unmapped: ", s.message()));
    }
    return s;
  }
  // Commit point: the chunk reads the shared bytes.
  if (absl::Status s = physical_->Release(own); s.ok()) {
    ledger_->NotePhysical(-Signed(c.bytes));
  } else {
    ledger_->NoteTeardownError();
  }
  ++sh->second.users;
  c.backing = SharedBacking{sid};
  ledger_->NoteResident(c.client, -Signed(c.bytes));
  ledger_->NoteShared(c.client, Signed(c.bytes));
  return absl::OkStatus();
}

absl::Status VmLayout::Privatize(ChunkId id, bool copy_contents) {
  auto it = chunks_.find(id);
  if (it == chunks_.end()) return absl::NotFoundError(absl::StrCat("no chunk ", id));
  ChunkInfo& c = it->second.info;
  if (c.orphaned || !c.is_shared()) {
    return absl::FailedPreconditionError(absl::StrCat("chunk ", id, " is not shared"));
  }
  const SharedId sid = std::get<SharedBacking>(c.backing).shared;
  SharedChunkInfo& sh = shared_.at(sid);
  const PhysHandle shared_handle = sh.handle;

  if (sh.users == 1) {
    // The last user takes the shared memory over: no copy, no new memory.
    if (absl::Status s = physical_->Unmap(c.va, c.bytes); !s.ok()) return s;
    if (absl::Status s = physical_->Map(c.va, c.bytes, shared_handle, Access::kReadWrite);
        !s.ok()) {
      if (!physical_->Map(c.va, c.bytes, shared_handle, Access::kReadOnly).ok()) {
        ledger_->NoteTeardownError();
        return absl::InternalError(absl::StrCat("chunk ", id, " left unmapped: ", s.message()));
      }
      return s;
    }
    shared_.erase(sid);
    c.backing = ResidentBacking{shared_handle};
    ledger_->NoteShared(c.client, -Signed(c.bytes));
    ledger_->NoteResident(c.client, Signed(c.bytes));
    ledger_->NoteDedupPhysical(-Signed(c.bytes));
    if (on_shared_released_) on_shared_released_(sid);
    return absl::OkStatus();
  }

  if (c.bytes > ledger_->PhysicalFree()) {
    return PhysicalShort(c.bytes, ledger_->PhysicalFree(), " for a copy-on-write");
  }
  absl::StatusOr<PhysHandle> h = physical_->Create(c.bytes);
  if (!h.ok()) return Annotate(h.status(), "copy-on-write");
  auto give_back = [&](absl::Status why) {
    if (!physical_->Release(*h).ok()) ledger_->NoteTeardownError();
    return Annotate(why, absl::StrCat("copy-on-write of chunk ", id));
  };
  if (copy_contents) {
    if (absl::Status s = physical_->CopyDevice(shared_handle, *h, c.bytes); !s.ok()) {
      return give_back(s);
    }
  }
  if (absl::Status s = physical_->Unmap(c.va, c.bytes); !s.ok()) return give_back(s);
  if (absl::Status s = physical_->Map(c.va, c.bytes, *h, Access::kReadWrite); !s.ok()) {
    if (!physical_->Map(c.va, c.bytes, shared_handle, Access::kReadOnly).ok()) {
      ledger_->NoteTeardownError();
      (void)give_back(s);
      return absl::InternalError(absl::StrCat("chunk ", id, " left unmapped: ", s.message()));
    }
    return give_back(s);
  }
  --sh.users;
  c.backing = ResidentBacking{*h};
  ledger_->NotePhysical(Signed(c.bytes));
  ledger_->NoteShared(c.client, -Signed(c.bytes));
  ledger_->NoteResident(c.client, Signed(c.bytes));
  return absl::OkStatus();
}

}  // namespace wooly::memory
