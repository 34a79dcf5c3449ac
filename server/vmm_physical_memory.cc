#include "wooly/server/vmm_physical_memory.h"

#include <cuda.h>
#include <sys/mman.h>

#include <algorithm>
#include <iterator>
#include <limits>
#include <optional>
#include <string>
#include <utility>

#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "wooly/server/cu_status.h"

namespace wooly::server {
namespace {

using memory::Access;
using memory::HostSlot;
using memory::PhysHandle;

constexpr uint64_t kPage = 4096;
// Arenas are rounded to this so that transparent huge pages can back them
// (fewer pages for the driver to pin).
constexpr uint64_t kArenaRound = uint64_t{2} << 20;

bool PowerOfTwo(uint64_t v) { return v != 0 && (v & (v - 1)) == 0; }

// `v` rounded up to a multiple of `m` (> 0); nullopt on overflow.
std::optional<uint64_t> RoundUp(uint64_t v, uint64_t m) {
  const uint64_t rem = v % m;
  if (rem == 0) return v;
  if (v > std::numeric_limits<uint64_t>::max() - (m - rem)) return std::nullopt;
  return v + (m - rem);
}

wire::MemAllocProps DeviceProps(int32_t ordinal) {
  wire::MemAllocProps p;
  p.type = CU_MEM_ALLOCATION_TYPE_PINNED;
  p.location_type = CU_MEM_LOCATION_TYPE_DEVICE;
  p.location_id = ordinal;
  return p;
}

uint32_t AccessFlags(Access access) {
  return access == Access::kReadOnly ? CU_MEM_ACCESS_FLAGS_PROT_READ
                                     : CU_MEM_ACCESS_FLAGS_PROT_READWRITE;
}

// Whether a refused read-only cuMemSetAccess means "not on this device"
// rather than a broken call.
bool ReadOnlyUnsupported(const absl::Status& s) {
  const CUresult r = ToCuResult(s);
  return r == CUDA_ERROR_NOT_SUPPORTED || r == CUDA_ERROR_INVALID_VALUE;
}

absl::Status Annotate(const absl::Status& s, absl::string_view what) {
  if (s.ok()) return s;
  absl::Status out(s.code(), absl::StrCat(what, ": ", s.message()));
  s.ForEachPayload(
      [&out](absl::string_view url, const absl::Cord& payload) { out.SetPayload(url, payload); });
  return out;
}

}  // namespace

absl::StatusOr<std::unique_ptr<VmmPhysicalMemory>> VmmPhysicalMemory::Open(GpuBackend* backend,
                                                                           VmmOptions options) {
  if (backend == nullptr) return absl::InvalidArgumentError("VmmPhysicalMemory: no backend");
  absl::StatusOr<uint64_t> min = backend->MemGetAllocationGranularity(
      DeviceProps(options.device_ordinal), CU_MEM_ALLOC_GRANULARITY_MINIMUM);
  if (!min.ok()) return Annotate(min.status(), "VmmPhysicalMemory: granularity query");
  if (!PowerOfTwo(*min)) {
    return absl::InternalError(
        absl::StrCat("VmmPhysicalMemory: device granularity ", *min, " is not a power of two"));
  }
  const uint64_t g = options.granularity == 0 ? *min : options.granularity;
  if (!PowerOfTwo(g) || g % *min != 0) {
    return absl::InvalidArgumentError(absl::StrCat("VmmPhysicalMemory: granularity ", g,
                                                   " is not a power-of-two multiple of ", *min));
  }
  if (options.view_block_bytes == 0 || options.view_block_bytes % g != 0) {
    return absl::InvalidArgumentError(
        "VmmPhysicalMemory: view_block_bytes must be a nonzero "
        "multiple of the granularity");
  }
  if (!PowerOfTwo(options.host_slot_alignment) || options.host_slot_alignment < kPage) {
    return absl::InvalidArgumentError(
        "VmmPhysicalMemory: host_slot_alignment must be a power of two >= 4096");
  }
  if (options.host_arena_bytes == 0) {
    return absl::InvalidArgumentError("VmmPhysicalMemory: host_arena_bytes must be nonzero");
  }
  return std::unique_ptr<VmmPhysicalMemory>(new VmmPhysicalMemory(backend, options, g));
}

VmmPhysicalMemory::VmmPhysicalMemory(GpuBackend* backend, VmmOptions options, uint64_t granularity)
    : backend_(backend), options_(options), granularity_(granularity) {
  counters_.granularity = granularity;
}

VmmPhysicalMemory::~VmmPhysicalMemory() {
  absl::MutexLock lock(&mu_);
  if (!abandoned_) {
    // Best effort, in dependency order: mappings before handles, handles'
    // views before the view reservations.
    for (const auto& [va, m] : mappings_) (void)backend_->MemUnmap(va, m.bytes);
    for (auto& [id, h] : handles_) {
      if (h.view_mapped) (void)backend_->MemUnmap(h.view, h.bytes);
      (void)backend_->MemRelease(h.backend);
    }
    for (const auto& [base, r] : reservations_) (void)backend_->MemAddressFree(base, r.reserved);
    for (const ViewBlock& b : view_blocks_) (void)backend_->MemAddressFree(b.base, b.bytes);
    for (Handle s : free_streams_) (void)backend_->StreamDestroy(s);
  }
  for (Arena& a : arenas_) {
    if (a.base == nullptr) continue;
    (void)backend_->HostUnregister(a.base);
    ::munmap(a.base, a.bytes);
  }
}

absl::Status VmmPhysicalMemory::CheckUsable() const {
  if (abandoned_) {
    return absl::FailedPreconditionError(
        "VmmPhysicalMemory: abandoned after a context reset; no device call is valid");
  }
  return absl::OkStatus();
}

// ------------------------------------------------------------- addresses

absl::StatusOr<uint64_t> VmmPhysicalMemory::ReserveAddress(uint64_t bytes, uint64_t alignment) {
  if (bytes == 0) return absl::InvalidArgumentError("ReserveAddress: 0 bytes");
  if (alignment != 0 && !PowerOfTwo(alignment)) {
    return absl::InvalidArgumentError("ReserveAddress: alignment is not a power of two");
  }
  std::optional<uint64_t> reserved = RoundUp(bytes, granularity_);
  if (!reserved) return absl::InvalidArgumentError("ReserveAddress: size overflows");
  absl::MutexLock lock(&mu_);
  if (absl::Status s = CheckUsable(); !s.ok()) return s;
  absl::StatusOr<DevPtr> base =
      backend_->MemAddressReserve(*reserved, std::max(alignment, granularity_), 0, 0);
  if (!base.ok()) return Annotate(base.status(), "ReserveAddress");
  reservations_[*base] = Reservation{bytes, *reserved};
  return *base;
}

absl::Status VmmPhysicalMemory::FreeAddress(uint64_t base, uint64_t bytes) {
  absl::MutexLock lock(&mu_);
  if (absl::Status s = CheckUsable(); !s.ok()) return s;
  auto it = reservations_.find(base);
  if (it == reservations_.end()) return absl::NotFoundError("FreeAddress: not a reservation");
  if (it->second.asked != bytes) {
    return absl::InvalidArgumentError("FreeAddress: size differs from the reservation's");
  }
  if (auto m = mappings_.lower_bound(base);
      m != mappings_.end() && m->first < base + it->second.reserved) {
    return absl::FailedPreconditionError("FreeAddress: the reservation still has mappings");
  }
  if (absl::Status s = backend_->MemAddressFree(base, it->second.reserved); !s.ok()) {
    return Annotate(s, "FreeAddress");
  }
  reservations_.erase(it);
  return absl::OkStatus();
}

// ------------------------------------------------------------- handles

absl::StatusOr<DevPtr> VmmPhysicalMemory::AllocViewLocked(uint64_t bytes) {
  for (ViewBlock& b : view_blocks_) {
    if (std::optional<uint64_t> va = b.views->Allocate(bytes, granularity_)) return *va;
  }
  const uint64_t size = std::max(options_.view_block_bytes, bytes);
  absl::StatusOr<DevPtr> base = backend_->MemAddressReserve(size, granularity_, 0, 0);
  if (!base.ok()) return Annotate(base.status(), "reserving view addresses");
  ViewBlock& b = view_blocks_.emplace_back();
  b.base = *base;
  b.bytes = size;
  b.views = std::make_unique<memory::RangeAllocator>(*base, size);
  return *b.views->Allocate(bytes, granularity_);  // fits: the block is new
}

void VmmPhysicalMemory::FreeViewLocked(DevPtr view) {
  for (ViewBlock& b : view_blocks_) {
    if (view >= b.base && view - b.base < b.bytes) {
      b.views->Free(view);
      return;
    }
  }
}

absl::Status VmmPhysicalMemory::MapLocked(DevPtr va, const HandleRec& h, Access access,
                                          Access* effective) {
  if (absl::Status s = backend_->MemMap(va, h.bytes, 0, h.backend, 0); !s.ok()) {
    return Annotate(s, "cuMemMap");
  }
  MemAccessDesc desc;
  desc.location_type = CU_MEM_LOCATION_TYPE_DEVICE;
  desc.location_id = options_.device_ordinal;
  desc.flags = AccessFlags(access);
  absl::Status s = backend_->MemSetAccess(va, h.bytes, absl::MakeConstSpan(&desc, 1));
  Access granted = access;
  if (!s.ok() && access == Access::kReadOnly && options_.read_only_fallback &&
      ReadOnlyUnsupported(s)) {
    desc.flags = AccessFlags(Access::kReadWrite);
    s = backend_->MemSetAccess(va, h.bytes, absl::MakeConstSpan(&desc, 1));
    if (s.ok()) {
      granted = Access::kReadWrite;
      ++counters_.read_only_fallbacks;
    }
  }
  if (!s.ok()) {
    if (absl::Status u = backend_->MemUnmap(va, h.bytes); !u.ok()) {
      return Annotate(
          s, absl::StrCat("cuMemSetAccess (and the unmap that undoes the map: ", u.message(), ")"));
    }
    return Annotate(s, "cuMemSetAccess");
  }
  if (effective != nullptr) *effective = granted;
  return absl::OkStatus();
}

absl::Status VmmPhysicalMemory::EnsureViewLocked(HandleRec& h) {
  if (h.view_mapped) return absl::OkStatus();
  if (absl::Status s = MapLocked(h.view, h, Access::kReadWrite, nullptr); !s.ok()) {
    return Annotate(s, "mapping a handle's view");
  }
  h.view_mapped = true;
  return absl::OkStatus();
}

absl::StatusOr<PhysHandle> VmmPhysicalMemory::Create(uint64_t bytes) {
  if (bytes == 0 || bytes % granularity_ != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "Create: ", bytes, " bytes is not a multiple of the granularity ", granularity_));
  }
  absl::MutexLock lock(&mu_);
  if (absl::Status s = CheckUsable(); !s.ok()) return s;
  absl::StatusOr<Handle> backend =
      backend_->MemCreate(bytes, DeviceProps(options_.device_ordinal), 0);
  if (!backend.ok()) return Annotate(backend.status(), "cuMemCreate");
  HandleRec h;
  h.backend = *backend;
  h.bytes = bytes;
  absl::StatusOr<DevPtr> view = AllocViewLocked(bytes);
  if (!view.ok()) {
    (void)backend_->MemRelease(h.backend);
    return view.status();
  }
  h.view = *view;
  if (absl::Status s = EnsureViewLocked(h); !s.ok()) {
    FreeViewLocked(h.view);
    (void)backend_->MemRelease(h.backend);
    return s;
  }
  const PhysHandle id = next_id_++;
  handles_.emplace(id, h);
  return id;
}

absl::StatusOr<VmmPhysicalMemory::HandleRec*> VmmPhysicalMemory::FindHandleLocked(
    PhysHandle handle) {
  auto it = handles_.find(handle);
  if (it == handles_.end()) {
    return absl::NotFoundError(absl::StrCat("unknown physical handle ", handle));
  }
  return &it->second;
}

absl::Status VmmPhysicalMemory::Release(PhysHandle handle) {
  absl::MutexLock lock(&mu_);
  if (absl::Status s = CheckUsable(); !s.ok()) return s;
  absl::StatusOr<HandleRec*> found = FindHandleLocked(handle);
  if (!found.ok()) return found.status();
  HandleRec& h = **found;
  if (h.mappings > 0) return absl::FailedPreconditionError("Release: the handle is still mapped");
  if (h.busy > 0) return absl::FailedPreconditionError("Release: a copy is using the handle");
  if (h.view_mapped) {
    if (absl::Status s = backend_->MemUnmap(h.view, h.bytes); !s.ok()) {
      return Annotate(s, "Release: unmapping the view");
    }
    h.view_mapped = false;
  }
  if (absl::Status s = backend_->MemRelease(h.backend); !s.ok()) {
    // The handle lives on; its view comes back now or before its next copy.
    (void)EnsureViewLocked(h);
    return Annotate(s, "cuMemRelease");
  }
  FreeViewLocked(h.view);
  handles_.erase(handle);
  return absl::OkStatus();
}

// ------------------------------------------------------------- mappings

absl::Status VmmPhysicalMemory::Map(uint64_t va, uint64_t bytes, PhysHandle handle, Access access) {
  absl::MutexLock lock(&mu_);
  if (absl::Status s = CheckUsable(); !s.ok()) return s;
  absl::StatusOr<HandleRec*> found = FindHandleLocked(handle);
  if (!found.ok()) return found.status();
  HandleRec& h = **found;
  if (bytes != h.bytes) {
    return absl::InvalidArgumentError("Map: size differs from the handle's (maps are whole)");
  }
  if (va % granularity_ != 0) return absl::InvalidArgumentError("Map: address not aligned");
  auto r = reservations_.upper_bound(va);
  if (r == reservations_.begin()) return absl::InvalidArgumentError("Map: not in a reservation");
  --r;
  if (va - r->first >= r->second.reserved || bytes > r->second.reserved - (va - r->first)) {
    return absl::InvalidArgumentError("Map: not inside one reservation");
  }
  if (auto next = mappings_.lower_bound(va);
      (next != mappings_.end() && next->first < va + bytes) ||
      (next != mappings_.begin() && std::prev(next)->first + std::prev(next)->second.bytes > va)) {
    return absl::FailedPreconditionError("Map: the range is already mapped");
  }
  Access effective = access;
  if (absl::Status s = MapLocked(va, h, access, &effective); !s.ok()) return s;
  mappings_[va] = MappingRec{bytes, handle, effective};
  ++h.mappings;
  return absl::OkStatus();
}

absl::Status VmmPhysicalMemory::Unmap(uint64_t va, uint64_t bytes) {
  absl::MutexLock lock(&mu_);
  if (absl::Status s = CheckUsable(); !s.ok()) return s;
  auto it = mappings_.find(va);
  if (it == mappings_.end()) return absl::NotFoundError("Unmap: no mapping starts there");
  if (it->second.bytes != bytes) {
    return absl::InvalidArgumentError("Unmap: size differs from the mapping's");
  }
  if (absl::Status s = backend_->MemUnmap(va, bytes); !s.ok()) return Annotate(s, "cuMemUnmap");
  if (auto h = handles_.find(it->second.handle); h != handles_.end()) --h->second.mappings;
  mappings_.erase(it);
  return absl::OkStatus();
}

// ------------------------------------------------------------- host pool

std::optional<std::pair<size_t, uint8_t*>> VmmPhysicalMemory::CarveLocked(uint64_t span) {
  for (size_t i = 0; i < arenas_.size(); ++i) {
    Arena& a = arenas_[i];
    if (a.base == nullptr) continue;
    if (std::optional<uint64_t> at = a.slots->Allocate(span, options_.host_slot_alignment)) {
      return std::make_pair(i, reinterpret_cast<uint8_t*>(static_cast<uintptr_t>(*at)));
    }
  }
  return std::nullopt;
}

absl::Status VmmPhysicalMemory::AddArena(uint64_t bytes) {
  // Registration pins every page and can take a long time for GiBs: done
  // without the lock (host_pending_ holds the budget meanwhile).
  absl::Status status;
  void* mem = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) {
    status = absl::ResourceExhaustedError(
        absl::StrCat("pinned host pool: mmap of ", bytes, " bytes failed"));
    mem = nullptr;
  } else {
    (void)::madvise(mem, bytes, MADV_HUGEPAGE);  // fewer pages to pin; optional
    status = backend_->HostRegister(mem, bytes);
    if (!status.ok()) {
      ::munmap(mem, bytes);
      mem = nullptr;
      status = Annotate(status, "pinned host pool: registering an arena");
    }
  }
  absl::MutexLock lock(&mu_);
  host_pending_ -= bytes;
  if (!status.ok()) return status;
  Arena& a = arenas_.emplace_back();
  a.base = static_cast<uint8_t*>(mem);
  a.bytes = bytes;
  a.slots = std::make_unique<memory::RangeAllocator>(reinterpret_cast<uintptr_t>(mem), bytes);
  host_registered_ += bytes;
  return absl::OkStatus();
}

absl::StatusOr<HostSlot> VmmPhysicalMemory::AllocHost(uint64_t bytes) {
  if (bytes == 0) return absl::InvalidArgumentError("AllocHost: 0 bytes");
  std::optional<uint64_t> span = RoundUp(bytes, options_.host_slot_alignment);
  std::optional<uint64_t> arena_bytes =
      span ? RoundUp(std::max(*span, options_.host_arena_bytes), kArenaRound) : std::nullopt;
  if (!arena_bytes) return absl::InvalidArgumentError("AllocHost: size overflows");
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      if (std::optional<std::pair<size_t, uint8_t*>> at = CarveLocked(*span)) {
        const HostSlot id = next_id_++;
        slots_[id] = SlotRec{at->second, bytes, at->first, 0};
        return id;
      }
      if (host_pending_ > 0) {
        // Another thread is adding an arena; it may have room for this.
        mu_.Await(absl::Condition(
            +[](uint64_t* pending) { return *pending == 0; }, &host_pending_));
        continue;
      }
      const uint64_t limit = options_.host_pool_max_bytes;
      if (host_registered_ > limit || *arena_bytes > limit - host_registered_) {
        return absl::ResourceExhaustedError(
            absl::StrCat("out of memory: pinned host pool full (", host_registered_, " of ", limit,
                         " bytes registered, ", bytes, " more asked for)"));
      }
      host_pending_ += *arena_bytes;
    }
    if (absl::Status s = AddArena(*arena_bytes); !s.ok()) return s;
  }
}

absl::Status VmmPhysicalMemory::GrowHostPool(uint64_t bytes) {
  if (bytes > options_.host_pool_max_bytes) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "GrowHostPool: ", bytes, " bytes exceed the pool limit of ", options_.host_pool_max_bytes));
  }
  while (true) {
    uint64_t add = 0;
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(
          +[](uint64_t* pending) { return *pending == 0; }, &host_pending_));
      if (host_registered_ >= bytes) return absl::OkStatus();
      std::optional<uint64_t> a =
          RoundUp(std::min(options_.host_arena_bytes, bytes - host_registered_), kArenaRound);
      const uint64_t limit = options_.host_pool_max_bytes;
      if (!a || host_registered_ > limit || *a > limit - host_registered_) {
        return absl::ResourceExhaustedError(
            absl::StrCat("GrowHostPool: ", bytes, " bytes exceed the pool limit of ", limit));
      }
      add = *a;
      host_pending_ += add;
    }
    if (absl::Status s = AddArena(add); !s.ok()) return s;
  }
}

uint64_t VmmPhysicalMemory::TrimHostPool() {
  std::vector<Arena> empty;
  {
    absl::MutexLock lock(&mu_);
    for (Arena& a : arenas_) {
      if (a.base == nullptr || !a.slots->empty()) continue;
      host_registered_ -= a.bytes;
      empty.push_back(std::move(a));
      a = Arena{};  // a tombstone: indices of live slots stay valid
    }
  }
  uint64_t freed = 0;
  for (Arena& a : empty) {
    (void)backend_->HostUnregister(a.base);
    ::munmap(a.base, a.bytes);
    freed += a.bytes;
  }
  return freed;
}

absl::StatusOr<VmmPhysicalMemory::SlotRec*> VmmPhysicalMemory::FindSlotLocked(HostSlot slot) {
  auto it = slots_.find(slot);
  if (it == slots_.end()) return absl::NotFoundError(absl::StrCat("unknown host slot ", slot));
  return &it->second;
}

absl::Status VmmPhysicalMemory::FreeHost(HostSlot slot) {
  absl::MutexLock lock(&mu_);
  absl::StatusOr<SlotRec*> found = FindSlotLocked(slot);
  if (!found.ok()) return found.status();
  if ((*found)->busy > 0)
    return absl::FailedPreconditionError("FreeHost: a copy is using the slot");
  arenas_[(*found)->arena].slots->Free(reinterpret_cast<uintptr_t>((*found)->ptr));
  slots_.erase(slot);
  return absl::OkStatus();
}

// ------------------------------------------------------------- copies

absl::StatusOr<Handle> VmmPhysicalMemory::TakeStreamLocked() {
  if (!free_streams_.empty()) {
    const Handle s = free_streams_.back();
    free_streams_.pop_back();
    return s;
  }
  absl::StatusOr<Handle> s = backend_->StreamCreate(CU_STREAM_NON_BLOCKING, 0);
  if (!s.ok()) return Annotate(s.status(), "creating a copy stream");
  ++streams_created_;
  return *s;
}

absl::StatusOr<VmmPhysicalMemory::CopyPlan> VmmPhysicalMemory::BeginCopy(PhysHandle a, PhysHandle b,
                                                                         HostSlot slot) {
  absl::MutexLock lock(&mu_);
  if (absl::Status s = CheckUsable(); !s.ok()) return s;
  HandleRec* ha = nullptr;
  HandleRec* hb = nullptr;
  SlotRec* sr = nullptr;
  if (a != 0) {
    absl::StatusOr<HandleRec*> f = FindHandleLocked(a);
    if (!f.ok()) return f.status();
    ha = *f;
  }
  if (b != 0) {
    absl::StatusOr<HandleRec*> f = FindHandleLocked(b);
    if (!f.ok()) return f.status();
    hb = *f;
  }
  if (slot != 0) {
    absl::StatusOr<SlotRec*> f = FindSlotLocked(slot);
    if (!f.ok()) return f.status();
    sr = *f;
  }
  // Restoring a view changes nothing the caller sees, so it may stay done
  // even when the copy is refused below.
  if (ha != nullptr) {
    if (absl::Status s = EnsureViewLocked(*ha); !s.ok()) return s;
  }
  if (hb != nullptr) {
    if (absl::Status s = EnsureViewLocked(*hb); !s.ok()) return s;
  }
  absl::StatusOr<Handle> stream = TakeStreamLocked();
  if (!stream.ok()) return stream.status();
  CopyPlan plan;
  plan.stream = *stream;
  if (ha != nullptr) {
    ++ha->busy;
    plan.a_view = ha->view;
    plan.a_bytes = ha->bytes;
  }
  if (hb != nullptr) {
    ++hb->busy;
    plan.b_view = hb->view;
    plan.b_bytes = hb->bytes;
  }
  if (sr != nullptr) {
    ++sr->busy;
    plan.host = sr->ptr;
    plan.host_bytes = sr->bytes;
  }
  return plan;
}

absl::Status VmmPhysicalMemory::FinishCopy(PhysHandle a, PhysHandle b, HostSlot slot, Handle stream,
                                           absl::Status status, uint64_t bytes,
                                           uint64_t VmmStats::*counter) {
  absl::MutexLock lock(&mu_);
  for (PhysHandle h : {a, b}) {
    if (h == 0) continue;
    if (auto it = handles_.find(h); it != handles_.end()) --it->second.busy;
  }
  if (slot != 0) {
    if (auto it = slots_.find(slot); it != slots_.end()) --it->second.busy;
  }
  if (!abandoned_) free_streams_.push_back(stream);
  if (status.ok() && counter != nullptr) counters_.*counter += bytes;
  return status;
}

namespace {

// Queue-then-wait: the interface returns when the copy is complete.
absl::Status Wait(GpuBackend* backend, Handle stream, absl::Status queued, absl::string_view what) {
  if (!queued.ok()) return Annotate(queued, what);
  return Annotate(backend->StreamSynchronize(stream), what);
}

}  // namespace

absl::Status VmmPhysicalMemory::CopyToHost(PhysHandle src, HostSlot dst, uint64_t bytes) {
  if (src == 0 || dst == 0) return absl::InvalidArgumentError("CopyToHost: no handle or slot");
  absl::StatusOr<CopyPlan> p = BeginCopy(src, 0, dst);
  if (!p.ok()) return p.status();
  absl::Status s;
  if (bytes != p->a_bytes || bytes > p->host_bytes) {
    s = absl::InvalidArgumentError("CopyToHost: size differs from the handle's or the slot's");
  } else {
    s = Wait(backend_, p->stream,
             backend_->MemcpyDtoHRegistered(p->host, p->a_view, bytes, p->stream, true),
             "CopyToHost");
  }
  return FinishCopy(src, 0, dst, p->stream, s, bytes, &VmmStats::bytes_to_host);
}

absl::Status VmmPhysicalMemory::CopyFromHost(HostSlot src, PhysHandle dst, uint64_t bytes) {
  if (src == 0 || dst == 0) return absl::InvalidArgumentError("CopyFromHost: no handle or slot");
  absl::StatusOr<CopyPlan> p = BeginCopy(dst, 0, src);
  if (!p.ok()) return p.status();
  absl::Status s;
  if (bytes != p->a_bytes || bytes > p->host_bytes) {
    s = absl::InvalidArgumentError("CopyFromHost: size differs from the handle's or the slot's");
  } else {
    s = Wait(backend_, p->stream,
             backend_->MemcpyHtoDRegistered(p->a_view, p->host, bytes, p->stream, true),
             "CopyFromHost");
  }
  return FinishCopy(dst, 0, src, p->stream, s, bytes, &VmmStats::bytes_from_host);
}

absl::Status VmmPhysicalMemory::CopyDevice(PhysHandle src, PhysHandle dst, uint64_t bytes) {
  if (src == 0 || dst == 0) return absl::InvalidArgumentError("CopyDevice: no handle");
  if (src == dst) return absl::InvalidArgumentError("CopyDevice: source and destination are one");
  absl::StatusOr<CopyPlan> p = BeginCopy(src, dst, 0);
  if (!p.ok()) return p.status();
  absl::Status s;
  if (bytes != p->a_bytes || bytes != p->b_bytes) {
    s = absl::InvalidArgumentError("CopyDevice: size differs from the handles'");
  } else {
    s = Wait(backend_, p->stream,
             backend_->MemcpyDtoD(p->b_view, p->a_view, bytes, p->stream, true), "CopyDevice");
  }
  return FinishCopy(src, dst, 0, p->stream, s, bytes, &VmmStats::bytes_device);
}

absl::Status VmmPhysicalMemory::Write(PhysHandle dst, uint64_t offset,
                                      std::span<const uint8_t> bytes) {
  if (dst == 0) return absl::InvalidArgumentError("Write: no handle");
  absl::StatusOr<CopyPlan> p = BeginCopy(dst, 0, 0);
  if (!p.ok()) return p.status();
  absl::Status s;
  if (offset > p->a_bytes || bytes.size() > p->a_bytes - offset) {
    s = absl::OutOfRangeError("Write: past the end of the handle");
  } else if (!bytes.empty()) {
    // Pageable source: the backend stages it; returns once it is on the device.
    s = Annotate(backend_->MemcpyHtoD(p->a_view + offset, bytes.data(), bytes.size(), p->stream,
                                      /*async=*/false),
                 "Write");
  }
  return FinishCopy(dst, 0, 0, p->stream, s, 0, nullptr);
}

absl::Status VmmPhysicalMemory::Read(PhysHandle src, uint64_t offset, std::span<uint8_t> out) {
  if (src == 0) return absl::InvalidArgumentError("Read: no handle");
  absl::StatusOr<CopyPlan> p = BeginCopy(src, 0, 0);
  if (!p.ok()) return p.status();
  absl::Status s;
  if (offset > p->a_bytes || out.size() > p->a_bytes - offset) {
    s = absl::OutOfRangeError("Read: past the end of the handle");
  } else if (!out.empty()) {
    s = Annotate(backend_->MemcpyDtoH(out.data(), p->a_view + offset, out.size(), p->stream,
                                      /*async=*/false),
                 "Read");
  }
  return FinishCopy(src, 0, 0, p->stream, s, 0, nullptr);
}

// ------------------------------------------------------------- inspection

absl::StatusOr<uint8_t*> VmmPhysicalMemory::SlotAddress(HostSlot slot) const {
  absl::MutexLock lock(&mu_);
  auto it = slots_.find(slot);
  if (it == slots_.end()) return absl::NotFoundError(absl::StrCat("unknown host slot ", slot));
  return it->second.ptr;
}

absl::StatusOr<std::span<const uint8_t>> VmmPhysicalMemory::HostBytes(HostSlot slot) const {
  absl::MutexLock lock(&mu_);
  auto it = slots_.find(slot);
  if (it == slots_.end()) return absl::NotFoundError(absl::StrCat("unknown host slot ", slot));
  return std::span<const uint8_t>(it->second.ptr, it->second.bytes);
}

absl::StatusOr<DevPtr> VmmPhysicalMemory::ViewAddress(PhysHandle handle) const {
  absl::MutexLock lock(&mu_);
  auto it = handles_.find(handle);
  if (it == handles_.end()) {
    return absl::NotFoundError(absl::StrCat("unknown physical handle ", handle));
  }
  return it->second.view;
}

absl::StatusOr<Access> VmmPhysicalMemory::EffectiveAccess(uint64_t va) const {
  absl::MutexLock lock(&mu_);
  auto it = mappings_.upper_bound(va);
  if (it == mappings_.begin()) return absl::NotFoundError("no mapping there");
  --it;
  if (va - it->first >= it->second.bytes) return absl::NotFoundError("no mapping there");
  return it->second.access;
}

VmmStats VmmPhysicalMemory::Stats() const {
  absl::MutexLock lock(&mu_);
  VmmStats s = counters_;
  s.handles = handles_.size();
  for (const auto& [id, h] : handles_) s.device_bytes += h.bytes;
  s.mappings = mappings_.size();
  s.reservations = reservations_.size();
  s.view_blocks = view_blocks_.size();
  for (const Arena& a : arenas_) s.host_arenas += a.base != nullptr;
  s.host_registered = host_registered_;
  s.host_slots = slots_.size();
  for (const auto& [id, sl] : slots_) {
    s.host_slot_bytes += *RoundUp(sl.bytes, options_.host_slot_alignment);
  }
  s.streams = streams_created_;
  return s;
}

void VmmPhysicalMemory::Abandon() {
  absl::MutexLock lock(&mu_);
  abandoned_ = true;
  handles_.clear();
  mappings_.clear();
  reservations_.clear();
  view_blocks_.clear();
  free_streams_.clear();
}

}  // namespace wooly::server
