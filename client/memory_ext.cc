#include "memory_ext.h"

#include <pthread.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstring>
#include <iterator>
#include <new>

#include "driver.h"

namespace wooly::client {
namespace {

char g_vmm_owner;  // its address tags VMM mappings in the AllocTable

uint64_t PageSize() {
  static const uint64_t page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  return page;
}

// Reserves [base, base + size) in this process (no memory committed); false
// when something is mapped there already.
bool ReserveLocally(uint64_t base, uint64_t size) {
  const uint64_t page = PageSize();
  if (size == 0 || base % page != 0 || base + size < base) return false;
  const uint64_t len = (size + page - 1) / page * page;
  void* want = reinterpret_cast<void*>(base);
  void* got = ::mmap(want, len, PROT_NONE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED_NOREPLACE, -1, 0);
  if (got == MAP_FAILED) return false;
  if (got != want) {  // a kernel without MAP_FIXED_NOREPLACE put it elsewhere
    ::munmap(got, len);
    return false;
  }
  return true;
}

void ReleaseLocally(uint64_t base, uint64_t size) {
  const uint64_t page = PageSize();
  ::munmap(reinterpret_cast<void*>(base), (size + page - 1) / page * page);
}

MemoryExtRecords* g_records = nullptr;
HostAllocTable* g_host = nullptr;

void ForkPrepare() {
  g_host->LockForFork();
  g_records->LockForFork();
}
void ForkParent() {
  g_records->UnlockAfterForkInParent();
  g_host->UnlockAfterForkInParent();
}
void ForkChild() {
  g_records->ResetLockAfterForkInChild();
  g_host->ResetLockAfterForkInChild();
  // The parent's pools, handles and reservations belong to its session; the
  // pinned host memory was inherited and stays the child's.
  g_records->Reset();
}

void InitGlobals() {
  static std::once_flag once;
  std::call_once(once, [] {
    g_records = new MemoryExtRecords();  // never destroyed: see driver.h
    g_host = new HostAllocTable();
    pthread_atfork(ForkPrepare, ForkParent, ForkChild);
  });
}

}  // namespace

const void* VmmOwner() { return &g_vmm_owner; }

MemoryExtRecords& MemRecords() {
  InitGlobals();
  return *g_records;
}

HostAllocTable& HostAllocations() {
  InitGlobals();
  return *g_host;
}

// ---------------------------------------------------------------- records

MemoryExtRecords::MemoryExtRecords() { default_pool_.id = 0; }

MemPool* MemoryExtRecords::CurrentPool() {
  std::lock_guard<std::mutex> l(mu_);
  return current_pool_;
}

bool MemoryExtRecords::SetCurrentPool(MemPool* pool) {
  std::lock_guard<std::mutex> l(mu_);
  if (pool != &default_pool_ && !pools_.contains(pool)) return false;
  current_pool_ = pool;
  return true;
}

void MemoryExtRecords::AddPool(MemPool* pool) {
  std::lock_guard<std::mutex> l(mu_);
  pools_.insert(pool);
}

bool MemoryExtRecords::RemovePool(MemPool* pool) {
  std::lock_guard<std::mutex> l(mu_);
  if (pools_.erase(pool) == 0) return false;
  // As the driver does: the device's current pool falls back to the default.
  if (current_pool_ == pool) current_pool_ = &default_pool_;
  return true;
}

bool MemoryExtRecords::PoolIsLive(const MemPool* pool) const {
  if (pool == &default_pool_) return true;
  std::lock_guard<std::mutex> l(mu_);
  return pools_.contains(pool);
}

void MemoryExtRecords::AddPoolAllocation(uint64_t base, uint64_t buffer_id, const MemPool* pool) {
  PoolAllocRec rec;
  rec.buffer_id = buffer_id;
  rec.info.pool = reinterpret_cast<CUmemoryPool>(const_cast<MemPool*>(pool));
  rec.info.handle_types = pool->handle_types;
  std::lock_guard<std::mutex> l(mu_);
  pool_allocations_[base] = rec;
}

void MemoryExtRecords::RemovePoolAllocation(uint64_t base) {
  std::lock_guard<std::mutex> l(mu_);
  pool_allocations_.erase(base);
}

bool MemoryExtRecords::FindPoolAllocation(uint64_t base, uint64_t buffer_id,
                                          PoolAllocation* out) const {
  std::lock_guard<std::mutex> l(mu_);
  auto it = pool_allocations_.find(base);
  if (it == pool_allocations_.end() || it->second.buffer_id != buffer_id) return false;
  if (out != nullptr) *out = it->second.info;
  return true;
}

void MemoryExtRecords::AddReservation(uint64_t base, uint64_t size, bool reserve_locally) {
  Reservation r;
  r.size = size;
  r.local = reserve_locally && ReserveLocally(base, size);
  std::lock_guard<std::mutex> l(mu_);
  if (!reservations_.emplace(base, r).second && r.local) ReleaseLocally(base, size);
}

bool MemoryExtRecords::RemoveReservation(uint64_t base) {
  Reservation r;
  {
    std::lock_guard<std::mutex> l(mu_);
    auto it = reservations_.find(base);
    if (it == reservations_.end()) return false;
    r = it->second;
    reservations_.erase(it);
  }
  if (r.local) ReleaseLocally(base, r.size);
  return true;
}

void MemoryExtRecords::AddHandle(uint64_t id, uint64_t size, uint32_t handle_types,
                                 bool rdma_capable) {
  std::lock_guard<std::mutex> l(mu_);
  Handle& h = handles_[id];
  h.size = size;
  h.handle_types = handle_types;
  h.rdma_capable = rdma_capable;
  h.block_id = NewBufferId();
  h.refs = 1;
}

void MemoryExtRecords::RetainHandle(uint64_t id) {
  std::lock_guard<std::mutex> l(mu_);
  ++handles_[id].refs;  // a handle made before a reset is re-created bare
}

void MemoryExtRecords::ReleaseHandle(uint64_t id) {
  std::lock_guard<std::mutex> l(mu_);
  auto it = handles_.find(id);
  if (it == handles_.end()) return;
  if (it->second.refs > 0) --it->second.refs;
  MaybeDropHandleLocked(id);
}

void MemoryExtRecords::MaybeDropHandleLocked(uint64_t id) {
  auto it = handles_.find(id);
  if (it != handles_.end() && it->second.refs == 0 && it->second.mappings == 0) {
    handles_.erase(it);
  }
}

void MemoryExtRecords::AddMapping(uint64_t base, uint64_t size, uint64_t handle) {
  std::lock_guard<std::mutex> l(mu_);
  mappings_[base] = Mapping{size, handle, 0};
  ++handles_[handle].mappings;
}

std::set<uint64_t> MemoryExtRecords::RemoveMappings(uint64_t base, uint64_t size) {
  std::set<uint64_t> removed;
  std::lock_guard<std::mutex> l(mu_);
  for (auto it = mappings_.lower_bound(base); it != mappings_.end() && it->first - base < size;) {
    const uint64_t handle = it->second.handle;
    removed.insert(it->first);
    it = mappings_.erase(it);
    if (auto h = handles_.find(handle); h != handles_.end() && h->second.mappings > 0) {
      --h->second.mappings;
    }
    MaybeDropHandleLocked(handle);
  }
  return removed;
}

void MemoryExtRecords::SetAccess(uint64_t base, uint64_t size, unsigned flags) {
  std::lock_guard<std::mutex> l(mu_);
  for (auto it = mappings_.lower_bound(base); it != mappings_.end() && it->first - base < size;
       ++it) {
    it->second.access = flags;
  }
}

bool MemoryExtRecords::FindVmm(uint64_t ptr, VmmInfo* out) const {
  std::lock_guard<std::mutex> l(mu_);
  auto m = mappings_.upper_bound(ptr);
  if (m == mappings_.begin()) return false;
  --m;
  if (ptr - m->first >= m->second.size) return false;
  VmmInfo v;
  v.mapping_base = m->first;
  v.mapping_size = m->second.size;
  v.access = m->second.access;
  v.reservation_base = m->first;  // without a recorded reservation: the mapping
  v.reservation_size = m->second.size;
  if (auto r = reservations_.upper_bound(ptr); r != reservations_.begin()) {
    --r;
    if (ptr - r->first < r->second.size) {
      v.reservation_base = r->first;
      v.reservation_size = r->second.size;
    }
  }
  if (auto h = handles_.find(m->second.handle); h != handles_.end()) {
    v.handle_types = h->second.handle_types;
    v.rdma_capable = h->second.rdma_capable;
    v.block_id = h->second.block_id;
  }
  if (out != nullptr) *out = v;
  return true;
}

size_t MemoryExtRecords::mapping_count() const {
  std::lock_guard<std::mutex> l(mu_);
  return mappings_.size();
}

void MemoryExtRecords::SetSyncMemops(uint64_t buffer_id, bool on) {
  std::lock_guard<std::mutex> l(mu_);
  if (on) {
    sync_memops_.insert(buffer_id);
  } else {
    sync_memops_.erase(buffer_id);
  }
}

bool MemoryExtRecords::SyncMemops(uint64_t buffer_id) const {
  std::lock_guard<std::mutex> l(mu_);
  return sync_memops_.contains(buffer_id);
}

void MemoryExtRecords::Reset() {
  std::map<uint64_t, Reservation> reservations;
  {
    std::lock_guard<std::mutex> l(mu_);
    reservations.swap(reservations_);
    current_pool_ = &default_pool_;
    // Created pools keep their objects (the application may hold them);
    // their ids are the old session's and woolyd refuses them.
    pools_.clear();
    pool_allocations_.clear();
    handles_.clear();
    mappings_.clear();
    sync_memops_.clear();
  }
  for (const auto& [base, r] : reservations) {
    if (r.local) ReleaseLocally(base, r.size);
  }
}

void MemoryExtRecords::ResetLockAfterForkInChild() { new (&mu_) std::mutex(); }

// ------------------------------------------------------- pointer attributes

PointerInfo LookupPointer(uint64_t ptr, const AllocTable& device, const MemoryExtRecords& ext,
                          const HostAllocTable& host, CUcontext fallback_ctx) {
  PointerInfo info;
  AllocTable::Record rec;
  if (device.Find(ptr, &rec)) {
    info.type = PointerInfo::Type::kDevice;
    info.ctx = fallback_ctx;
    info.range_base = info.mapping_base = rec.base;
    info.range_size = info.mapping_size = rec.size;
    info.buffer_id = info.block_id = rec.buffer_id;
    info.rdma_capable = true;
    info.sync_memops = ext.SyncMemops(rec.buffer_id);
    if (rec.kind == AllocTable::Kind::kGlobal) {
      // The owning module may be unloaded concurrently: never dereference it.
      return info;
    }
    if (rec.owner == VmmOwner()) {
      MemoryExtRecords::VmmInfo v;
      if (ext.FindVmm(ptr, &v)) {
        info.range_base = v.reservation_base;
        info.range_size = v.reservation_size;
        info.mapping_base = v.mapping_base;
        info.mapping_size = v.mapping_size;
        info.handle_types = v.handle_types;
        info.rdma_capable = v.rdma_capable;
        info.block_id = v.block_id;
        info.access = v.access;
      }
      return info;
    }
    // cuMemAlloc or stream-ordered: the owner is the allocating context.
    info.ctx = reinterpret_cast<CUcontext>(const_cast<void*>(rec.owner));
    MemoryExtRecords::PoolAllocation pool;
    if (ext.FindPoolAllocation(rec.base, rec.buffer_id, &pool)) {
      info.pool = pool.pool;
      info.handle_types = pool.handle_types;
    } else {
      info.legacy_ipc = true;
    }
    return info;
  }
  HostAllocTable::Record h;
  if (host.Find(ptr, &h)) {
    info.type = PointerInfo::Type::kHost;
    info.ctx =
        h.ctx != nullptr ? reinterpret_cast<CUcontext>(const_cast<void*>(h.ctx)) : fallback_ctx;
    info.range_base = info.mapping_base = h.base;
    info.range_size = info.mapping_size = h.size;
    info.buffer_id = info.block_id = h.buffer_id;
    info.sync_memops = ext.SyncMemops(h.buffer_id);
    if (h.kind == HostAllocTable::Kind::kRegistered && (h.flags & CU_MEMHOSTREGISTER_READ_ONLY)) {
      info.access = CU_POINTER_ATTRIBUTE_ACCESS_FLAG_READ;
    }
  }
  return info;
}

PointerInfo LookupPointer(uint64_t ptr) {
  Context* current = CurrentContext();
  Context* fallback = ContextUsable(current) ? current : PrimaryContext();
  return LookupPointer(ptr, Allocations(), MemRecords(), HostAllocations(),
                       reinterpret_cast<CUcontext>(fallback));
}

CUresult WritePointerAttribute(const PointerInfo& info, uint64_t ptr, CUpointer_attribute attribute,
                               void* data, bool lenient) {
  const bool known = info.type != PointerInfo::Type::kUnknown;
  const bool host = info.type == PointerInfo::Type::kHost;
  // Writes `v` when the memory has the attribute, else the null value in
  // lenient mode and CUDA_ERROR_INVALID_VALUE otherwise.
  auto put = [&](bool has, auto v, decltype(v) null_value) -> CUresult {
    if (!has) {
      if (!lenient) return CUDA_ERROR_INVALID_VALUE;
      v = null_value;
    }
    std::memcpy(data, &v, sizeof(v));
    return CUDA_SUCCESS;
  };
  using uint = unsigned int;
  switch (attribute) {
    case CU_POINTER_ATTRIBUTE_CONTEXT:
      return put(known, info.ctx, CUcontext{nullptr});
    case CU_POINTER_ATTRIBUTE_MEMORY_TYPE:
      return put(known, static_cast<uint>(host ? CU_MEMORYTYPE_HOST : CU_MEMORYTYPE_DEVICE),
                 uint{0});
    case CU_POINTER_ATTRIBUTE_DEVICE_POINTER:
      // Unified addressing: pinned host memory has the same address on the
      // device. A kernel dereferencing it needs the same-node shared-memory
      // channel; until then only copies reach it.
      return put(known, CUdeviceptr{ptr}, CUdeviceptr{0});
    case CU_POINTER_ATTRIBUTE_HOST_POINTER:
      // Memory the driver does not know is plain host memory: in the lenient
      // batch query the real driver reports its host pointer as itself.
      return put(host || (!known && lenient), reinterpret_cast<void*>(ptr),
                 static_cast<void*>(nullptr));
    case CU_POINTER_ATTRIBUTE_P2P_TOKENS:
      return CUDA_ERROR_NOT_SUPPORTED;  // the nv-p2p kernel interface is the server's
    case CU_POINTER_ATTRIBUTE_SYNC_MEMOPS:
      return put(known, uint{info.sync_memops}, uint{0});
    case CU_POINTER_ATTRIBUTE_BUFFER_ID:
      return put(known, static_cast<unsigned long long>(info.buffer_id), 0ull);
    case CU_POINTER_ATTRIBUTE_IS_MANAGED:
      return put(known, uint{0}, uint{0});
    case CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL:
      // -2 (no device) for memory CUDA does not know, as cudart reports it.
      return put(known, int{0}, int{-2});
    case CU_POINTER_ATTRIBUTE_IS_LEGACY_CUDA_IPC_CAPABLE:
      return put(known, uint{info.legacy_ipc}, uint{0});
    case CU_POINTER_ATTRIBUTE_RANGE_START_ADDR:
      return put(known, CUdeviceptr{info.range_base}, CUdeviceptr{0});
    case CU_POINTER_ATTRIBUTE_RANGE_SIZE:
      return put(known, size_t{info.range_size}, size_t{0});
    case CU_POINTER_ATTRIBUTE_MAPPED:
      return put(known, uint{1}, uint{0});
    case CU_POINTER_ATTRIBUTE_ALLOWED_HANDLE_TYPES:
      return put(known, uint{info.handle_types}, uint{0});
    case CU_POINTER_ATTRIBUTE_IS_GPU_DIRECT_RDMA_CAPABLE:
      return put(known, uint{info.rdma_capable}, uint{0});
    case CU_POINTER_ATTRIBUTE_ACCESS_FLAGS:
      return put(known, uint{info.access}, uint{0});
    case CU_POINTER_ATTRIBUTE_MEMPOOL_HANDLE:
      // NULL for memory not from a pool.
      return put(known, info.pool, CUmemoryPool{nullptr});
    case CU_POINTER_ATTRIBUTE_MAPPING_SIZE:
      return put(known, size_t{info.mapping_size}, size_t{0});
    case CU_POINTER_ATTRIBUTE_MAPPING_BASE_ADDR:
      return put(known, reinterpret_cast<void*>(info.mapping_base), static_cast<void*>(nullptr));
    case CU_POINTER_ATTRIBUTE_MEMORY_BLOCK_ID:
      return put(known, static_cast<unsigned long long>(info.block_id), 0ull);
    case CU_POINTER_ATTRIBUTE_IS_HW_DECOMPRESS_CAPABLE:
      return put(known, uint{0}, uint{0});
    default:
      return CUDA_ERROR_INVALID_VALUE;
  }
}

CUresult PointerGetAttribute(void* data, CUpointer_attribute attribute, CUdeviceptr ptr) {
  if (!Initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  if (data == nullptr) return CUDA_ERROR_INVALID_VALUE;
  return WritePointerAttribute(LookupPointer(ptr), ptr, attribute, data, /*lenient=*/false);
}

CUresult PointerGetAttributes(unsigned count, CUpointer_attribute* attributes, void** data,
                              CUdeviceptr ptr) {
  if (!Initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  if (count > 0 && (attributes == nullptr || data == nullptr)) return CUDA_ERROR_INVALID_VALUE;
  for (unsigned i = 0; i < count; ++i) {
    if (data[i] == nullptr) return CUDA_ERROR_INVALID_VALUE;
  }
  const PointerInfo info = LookupPointer(ptr);
  for (unsigned i = 0; i < count; ++i) {
    if (CUresult r = WritePointerAttribute(info, ptr, attributes[i], data[i], /*lenient=*/true);
        r != CUDA_SUCCESS) {
      return r;
    }
  }
  return CUDA_SUCCESS;
}

void ResetMemoryExtForTesting() {
  MemRecords().Reset();
  HostAllocations().Clear();
}

}  // namespace wooly::client
