// ClientSession's memory extensions; see session_memory_ext.h for the
// ownership rules and the cleanup order.
#include "wooly/server/session_memory_ext.h"

#include <cuda.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <optional>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "spdlog/spdlog.h"
#include "wooly/proto/wire_memory_ext.h"
#include "wooly/server/client_session.h"
#include "wooly/server/node_memory.h"
#include "wooly/server/cu_status.h"

namespace wooly::server {

struct SessionMemoryExt {
  struct HandleRec {
    BackendHandle backend = 0;
    uint64_t size = 0;
    int refs = 0;      // client references (cuMemCreate + retains - releases)
    int mappings = 0;  // live mappings of it; the record lives while either is > 0
  };
  struct MappingRec {
    uint64_t handle = 0;  // session id of the mapped handle
    uint64_t size = 0;
  };

  // Client-created pools: id -> backend pool.
  std::map<uint64_t, BackendHandle> pools;
  // The client's own pool standing for the device's default pool (id 0).
  BackendHandle default_pool = 0;
  // VMM: reserved VA, generic allocation handles, and mappings (base ->).
  memory::AllocationTable reservations;
  std::map<uint64_t, HandleRec> handles;
  memory::AllocationTable mapped;
  std::map<DevPtr, MappingRec> mappings;
  uint64_t handle_bytes = 0;  // sizes of the live handle records
  // Limits the client set that were not applied to the shared context.
  std::map<int32_t, uint64_t> limits;
};

void SessionMemoryExtDeleter::operator()(SessionMemoryExt* ext) const { delete ext; }

bool CoveredByRanges(const memory::AllocationTable& table, uint64_t ptr, uint64_t size) {
  if (size == 0) return table.Find(ptr).has_value();
  if (ptr + size < ptr) return false;
  const uint64_t end = ptr + size;
  uint64_t at = ptr;
  // Each step moves to the end of a stored range, so this ends.
  while (at < end) {
    std::optional<memory::Range> r = table.Find(at);
    if (!r) return false;
    at = r->end();
  }
  return true;
}

namespace {

// Bounds on counts a client sends, so it cannot make the server allocate much.
constexpr uint32_t kMaxAccessDescs = 64;
constexpr uint32_t kMaxOccupancyQueries = 4096;
constexpr uint32_t kMaxClusterAttributes = 64;

absl::Status BadPointer() {
  return CuError(CUDA_ERROR_INVALID_VALUE, "device range not owned by this client");
}
// Pools and generic allocation handles are values, not objects: the driver
// answers an unknown one with CUDA_ERROR_INVALID_VALUE.
absl::Status BadPool() { return CuError(CUDA_ERROR_INVALID_VALUE, "unknown memory pool"); }
absl::Status BadAllocationHandle() {
  return CuError(CUDA_ERROR_INVALID_VALUE, "unknown generic allocation handle");
}

// Device 0 is the one device woolyd serves; host-located memory cannot be
// served to a remote client.
absl::Status CheckLocation(int32_t type, int32_t id) {
  switch (type) {
    case CU_MEM_LOCATION_TYPE_DEVICE:
      if (id != 0) return CuError(CUDA_ERROR_INVALID_DEVICE, absl::StrCat("device ", id));
      return absl::OkStatus();
    case CU_MEM_LOCATION_TYPE_HOST:
    case CU_MEM_LOCATION_TYPE_HOST_NUMA:
    case CU_MEM_LOCATION_TYPE_HOST_NUMA_CURRENT:
      return CuError(CUDA_ERROR_NOT_SUPPORTED, "host-located memory is not served remotely");
    default:
      return CuError(CUDA_ERROR_INVALID_VALUE, "memory location type");
  }
}

// Bits per element of a CUtensorMapDataType, 0 for an unknown type.
uint32_t TensorElementBits(uint32_t type) {
  switch (type) {
    case CU_TENSOR_MAP_DATA_TYPE_UINT8:
      return 8;
    case CU_TENSOR_MAP_DATA_TYPE_UINT16:
    case CU_TENSOR_MAP_DATA_TYPE_FLOAT16:
    case CU_TENSOR_MAP_DATA_TYPE_BFLOAT16:
      return 16;
    case CU_TENSOR_MAP_DATA_TYPE_UINT32:
    case CU_TENSOR_MAP_DATA_TYPE_INT32:
    case CU_TENSOR_MAP_DATA_TYPE_FLOAT32:
    case CU_TENSOR_MAP_DATA_TYPE_FLOAT32_FTZ:
    case CU_TENSOR_MAP_DATA_TYPE_TFLOAT32:
    case CU_TENSOR_MAP_DATA_TYPE_TFLOAT32_FTZ:
      return 32;
    case CU_TENSOR_MAP_DATA_TYPE_UINT64:
    case CU_TENSOR_MAP_DATA_TYPE_INT64:
    case CU_TENSOR_MAP_DATA_TYPE_FLOAT64:
      return 64;
    case CU_TENSOR_MAP_DATA_TYPE_16U4_ALIGN8B:
      return 4;  // 16 values in 8 bytes
    case CU_TENSOR_MAP_DATA_TYPE_16U4_ALIGN16B:
    case CU_TENSOR_MAP_DATA_TYPE_16U6_ALIGN16B:
      return 8;  // 16 values in 16 bytes
    default:
      return 0;
  }
}

// The bytes a tensor spans from its base: the whole innermost row plus the
// stride of every further dimension. nullopt when the description is
// impossible (rank, type, zero dims) or overflows.
std::optional<uint64_t> TensorExtent(uint32_t type, uint32_t rank, const uint64_t* dims,
                                     const uint64_t* strides) {
  using u128 = unsigned __int128;
  const uint32_t bits = TensorElementBits(type);
  if (bits == 0 || rank == 0 || rank > wire::kMaxTensorRank) return std::nullopt;
  for (uint32_t i = 0; i < rank; ++i) {
    if (dims[i] == 0) return std::nullopt;
  }
  u128 extent = (u128{dims[0]} * bits + 7) / 8;
  for (uint32_t i = 1; i < rank; ++i) extent += u128{dims[i] - 1} * strides[i - 1];
  if (extent > (u128{1} << 64) - 1) return std::nullopt;
  return static_cast<uint64_t>(extent);
}

// Launch attributes that only carry values, which an occupancy query may
// use. Attributes naming events or memory are refused there.
bool IsValueOnlyLaunchAttribute(uint32_t id) {
  switch (id) {
    case CU_LAUNCH_ATTRIBUTE_COOPERATIVE:
    case CU_LAUNCH_ATTRIBUTE_SYNCHRONIZATION_POLICY:
    case CU_LAUNCH_ATTRIBUTE_CLUSTER_DIMENSION:
    case CU_LAUNCH_ATTRIBUTE_CLUSTER_SCHEDULING_POLICY_PREFERENCE:
    case CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION:
    case CU_LAUNCH_ATTRIBUTE_PRIORITY:
    case CU_LAUNCH_ATTRIBUTE_MEM_SYNC_DOMAIN_MAP:
    case CU_LAUNCH_ATTRIBUTE_MEM_SYNC_DOMAIN:
    case CU_LAUNCH_ATTRIBUTE_PREFERRED_CLUSTER_DIMENSION:
    case CU_LAUNCH_ATTRIBUTE_DEVICE_UPDATABLE_KERNEL_NODE:
    case CU_LAUNCH_ATTRIBUTE_PREFERRED_SHARED_MEMORY_CARVEOUT:
    case CU_LAUNCH_ATTRIBUTE_NVLINK_UTIL_CENTRIC_SCHEDULING:
      return true;
    default:
      return false;
  }
}

}  // namespace

SessionMemoryExt& ClientSession::MemExt() {
  if (!mem_ext_) mem_ext_.reset(new SessionMemoryExt());
  return *mem_ext_;
}

bool ClientSession::OwnsMappedRange(DevPtr ptr, uint64_t size) const {
  return mem_ext_ && CoveredByRanges(mem_ext_->mapped, ptr, size);
}

uint64_t ClientSession::MemExtBytes() const { return mem_ext_ ? mem_ext_->handle_bytes : 0; }

void ClientSession::CloseMemoryExtLocked() {
  if (!mem_ext_) return;
  SessionMemoryExt& ext = *mem_ext_;
  auto warn = [this](const char* what, const absl::Status& s) {
    if (!s.ok()) spdlog::warn("client {}: cleanup {} failed: {}", id_, what, s.ToString());
  };
  const size_t n_mappings = ext.mappings.size();
  for (const auto& [base, m] : ext.mappings) warn("unmap", backend_->MemUnmap(base, m.size));
  ext.mappings.clear();
  ext.mapped.Clear();
  size_t n_handles = 0;
  for (auto& [id, h] : ext.handles) {
    n_handles += h.refs > 0;
    for (; h.refs > 0; --h.refs) warn("allocation handle release", backend_->MemRelease(h.backend));
  }
  ext.handles.clear();
  ext.handle_bytes = 0;
  const size_t n_reservations = ext.reservations.size();
  for (const memory::Range& r : ext.reservations.Ranges()) {
    warn("address free", backend_->MemAddressFree(r.base, r.size));
  }
  ext.reservations.Clear();
  const size_t n_pools = ext.pools.size() + (ext.default_pool != 0 ? 1 : 0);
  for (const auto& [id, pool] : ext.pools) warn("pool destroy", backend_->MemPoolDestroy(pool));
  ext.pools.clear();
  if (ext.default_pool != 0) warn("pool destroy", backend_->MemPoolDestroy(ext.default_pool));
  ext.default_pool = 0;
  ext.limits.clear();
  if (n_mappings + n_handles + n_reservations + n_pools > 0) {
    spdlog::info(
        "client {}: released {} mappings, {} allocation handles, {} reservations, {} pools", id_,
        n_mappings, n_handles, n_reservations, n_pools);
  }
}

// ------------------------------------------------- pools and async allocation

namespace {

// The pool a client's pool id stands for; pool 0 creates the client's own
// default pool on first use.
absl::StatusOr<BackendHandle> PoolFor(SessionMemoryExt& ext, GpuBackend* backend, uint64_t id) {
  if (id != 0) {
    auto it = ext.pools.find(id);
    if (it == ext.pools.end()) return BadPool();
    return it->second;
  }
  if (ext.default_pool == 0) {
    wire::MemPoolProps props;
    props.alloc_type = CU_MEM_ALLOCATION_TYPE_PINNED;
    props.handle_types = CU_MEM_HANDLE_TYPE_NONE;
    props.location_type = CU_MEM_LOCATION_TYPE_DEVICE;
    props.location_id = 0;
    absl::StatusOr<BackendHandle> pool = backend->MemPoolCreate(props);
    if (!pool.ok()) return pool.status();
    ext.default_pool = *pool;
  }
  return ext.default_pool;
}

}  // namespace

absl::Status ClientSession::OpMemAllocAsync(wire::Reader& in, wire::Writer& out) {
  const uint64_t size = in.Get<uint64_t>();
  const uint64_t pool_id = in.Get<uint64_t>();
  const uint64_t stream = in.Get<uint64_t>();
  if (!in.ok()) return Malformed();
  if (size == 0) return CuError(CUDA_ERROR_INVALID_VALUE, "zero-sized allocation");
  absl::StatusOr<BackendHandle> pool = PoolFor(MemExt(), backend_, pool_id);
  if (!pool.ok()) return pool.status();
  absl::StatusOr<BackendHandle> st = StreamForWork(stream);
  if (!st.ok()) return st.status();
  if (absl::Status s = ChargeMemory(size); !s.ok()) return s;
  absl::StatusOr<DevPtr> p = backend_->MemAllocFromPoolAsync(size, *pool, *st);
  if (!p.ok()) {
    UnchargeMemory(size);
    return p.status();
  }
  if (!allocations_.Insert(*p, size)) {
    spdlog::error("client {}: backend returned overlapping pool allocation {:#x}+{}", id_, *p,
                  size);
    (void)backend_->MemFreeAsync(*p, *st);
    UnchargeMemory(size);
    return CuError(CUDA_ERROR_UNKNOWN, "overlapping allocation");
  }
  out.Put<uint64_t>(*p);
  return absl::OkStatus();
}

absl::Status ClientSession::OpMemFreeAsync(wire::Reader& in, wire::Writer& out) {
  const DevPtr p = in.Get<uint64_t>();
  const uint64_t stream = in.Get<uint64_t>();
  if (!in.ok()) return Malformed();
  if (!allocations_.FindExact(p)) return CuError(CUDA_ERROR_INVALID_VALUE, "not an allocation");
  absl::StatusOr<BackendHandle> st = StreamForWork(stream);
  if (!st.ok()) return st.status();
  return FreeAllocationLocked(p, &*st);
}

absl::Status ClientSession::OpMemPoolCreate(wire::Reader& in, wire::Writer& out) {
  const wire::MemPoolProps props = wire::GetMemPoolProps(in);
  if (!in.ok()) return Malformed();
  if (props.alloc_type != CU_MEM_ALLOCATION_TYPE_PINNED) {
    return CuError(CUDA_ERROR_INVALID_VALUE, "pool allocation type");
  }
  if (absl::Status s = CheckLocation(props.location_type, props.location_id); !s.ok()) return s;
  absl::StatusOr<BackendHandle> pool = backend_->MemPoolCreate(props);
  if (!pool.ok()) return pool.status();
  const uint64_t id = NewId();
  MemExt().pools[id] = *pool;
  out.Put<uint64_t>(id);
  return absl::OkStatus();
}

absl::Status ClientSession::OpMemPoolDestroy(wire::Reader& in, wire::Writer& out) {
  const uint64_t id = in.Get<uint64_t>();
  if (!in.ok()) return Malformed();
  // The device's default pool cannot be destroyed, and neither can its stand-in.
  if (id == 0) return CuError(CUDA_ERROR_INVALID_VALUE, "the default pool cannot be destroyed");
  SessionMemoryExt& ext = MemExt();
  auto it = ext.pools.find(id);
  if (it == ext.pools.end()) return BadPool();
  if (absl::Status s = backend_->MemPoolDestroy(it->second); !s.ok()) return s;
  ext.pools.erase(it);
  return absl::OkStatus();
}

absl::Status ClientSession::OpMemPoolSetAttribute(wire::Reader& in, wire::Writer& out) {
  const uint64_t id = in.Get<uint64_t>();
  const int32_t attribute = in.Get<int32_t>();
  const uint64_t value = in.Get<uint64_t>();
  if (!in.ok()) return Malformed();
  absl::StatusOr<BackendHandle> pool = PoolFor(MemExt(), backend_, id);
  if (!pool.ok()) return pool.status();
  return backend_->MemPoolSetAttribute(*pool, attribute, value);
}

absl::Status ClientSession::OpMemPoolGetAttribute(wire::Reader& in, wire::Writer& out) {
  const uint64_t id = in.Get<uint64_t>();
  const int32_t attribute = in.Get<int32_t>();
  if (!in.ok()) return Malformed();
  absl::StatusOr<BackendHandle> pool = PoolFor(MemExt(), backend_, id);
  if (!pool.ok()) return pool.status();
  absl::StatusOr<uint64_t> v = backend_->MemPoolGetAttribute(*pool, attribute);
  if (!v.ok()) return v.status();
  out.Put<uint64_t>(*v);
  return absl::OkStatus();
}

absl::Status ClientSession::OpMemPoolTrimTo(wire::Reader& in, wire::Writer& out) {
  const uint64_t id = in.Get<uint64_t>();
  const uint64_t keep = in.Get<uint64_t>();
  if (!in.ok()) return Malformed();
  absl::StatusOr<BackendHandle> pool = PoolFor(MemExt(), backend_, id);
  if (!pool.ok()) return pool.status();
  return backend_->MemPoolTrimTo(*pool, keep);
}

// ------------------------------------------------- virtual memory management

namespace {

absl::Status CheckAllocProps(const wire::MemAllocProps& props) {
  if (props.type != CU_MEM_ALLOCATION_TYPE_PINNED) {
    return CuError(CUDA_ERROR_INVALID_VALUE, "allocation type");
  }
  return CheckLocation(props.location_type, props.location_id);
}

// Drops a handle record nobody refers to any more.
// Returns the bytes dropped (0 when it is still referred to).
uint64_t MaybeDropHandle(SessionMemoryExt& ext, uint64_t id) {
  auto it = ext.handles.find(id);
  if (it == ext.handles.end() || it->second.refs > 0 || it->second.mappings > 0) return 0;
  const uint64_t size = it->second.size;
  ext.handle_bytes -= size;
  ext.handles.erase(it);
  return size;
}

}  // namespace

absl::Status ClientSession::OpMemGetAllocationGranularity(wire::Reader& in, wire::Writer& out) {
  const wire::MemAllocProps props = wire::GetMemAllocProps(in);
  const uint32_t option = in.Get<uint32_t>();
  if (!in.ok()) return Malformed();
  if (absl::Status s = CheckAllocProps(props); !s.ok()) return s;
  absl::StatusOr<uint64_t> g = backend_->MemGetAllocationGranularity(props, option);
  if (!g.ok()) return g.status();
  out.Put<uint64_t>(*g);
  return absl::OkStatus();
}

absl::Status ClientSession::OpMemAddressReserve(wire::Reader& in, wire::Writer& out) {
  const uint64_t size = in.Get<uint64_t>();
  const uint64_t alignment = in.Get<uint64_t>();
  const DevPtr hint = in.Get<uint64_t>();
  const uint64_t flags = in.Get<uint64_t>();
  if (!in.ok()) return Malformed();
  if (size == 0) return CuError(CUDA_ERROR_INVALID_VALUE, "zero-sized reservation");
  absl::StatusOr<DevPtr> p = backend_->MemAddressReserve(size, alignment, hint, flags);
  if (!p.ok()) return p.status();
  if (!MemExt().reservations.Insert(*p, size)) {
    spdlog::error("client {}: backend returned overlapping reservation {:#x}+{}", id_, *p, size);
    (void)backend_->MemAddressFree(*p, size);
    return CuError(CUDA_ERROR_UNKNOWN, "overlapping reservation");
  }
  out.Put<uint64_t>(*p);
  return absl::OkStatus();
}

absl::Status ClientSession::OpMemAddressFree(wire::Reader& in, wire::Writer& out) {
  const DevPtr ptr = in.Get<uint64_t>();
  const uint64_t size = in.Get<uint64_t>();
  if (!in.ok()) return Malformed();
  SessionMemoryExt& ext = MemExt();
  std::optional<memory::Range> r = ext.reservations.FindExact(ptr);
  if (!r || r->size != size) return CuError(CUDA_ERROR_INVALID_VALUE, "not a reservation");
  // Mappings must go first, so that none is left without its reservation.
  if (auto m = ext.mappings.lower_bound(ptr); m != ext.mappings.end() && m->first < r->end()) {
    return CuError(CUDA_ERROR_INVALID_VALUE, "reservation still has mappings");
  }
  if (absl::Status s = backend_->MemAddressFree(ptr, size); !s.ok()) return s;
  ext.reservations.Erase(ptr);
  return absl::OkStatus();
}

absl::Status ClientSession::OpMemCreate(wire::Reader& in, wire::Writer& out) {
  const uint64_t size = in.Get<uint64_t>();
  const wire::MemAllocProps props = wire::GetMemAllocProps(in);
  const uint64_t flags = in.Get<uint64_t>();
  if (!in.ok()) return Malformed();
  if (size == 0 || flags != 0) return CuError(CUDA_ERROR_INVALID_VALUE, "cuMemCreate arguments");
  if (absl::Status s = CheckAllocProps(props); !s.ok()) return s;
  if (absl::Status s = ChargeMemory(size); !s.ok()) return s;
  absl::StatusOr<BackendHandle> h = backend_->MemCreate(size, props, flags);
  if (!h.ok()) {
    UnchargeMemory(size);
    return h.status();
  }
  const uint64_t id = NewId();
  SessionMemoryExt& ext = MemExt();
  SessionMemoryExt::HandleRec& rec = ext.handles[id];
  rec.backend = *h;
  rec.size = size;
  rec.refs = 1;
  ext.handle_bytes += size;
  out.Put<uint64_t>(id);
  return absl::OkStatus();
}

absl::Status ClientSession::OpMemRelease(wire::Reader& in, wire::Writer& out) {
  const uint64_t id = in.Get<uint64_t>();
  if (!in.ok()) return Malformed();
  SessionMemoryExt& ext = MemExt();
  auto it = ext.handles.find(id);
  if (it == ext.handles.end() || it->second.refs == 0) return BadAllocationHandle();
  if (absl::Status s = backend_->MemRelease(it->second.backend); !s.ok()) return s;
  --it->second.refs;
  UnchargeMemory(MaybeDropHandle(ext, id));
  return absl::OkStatus();
}

absl::Status ClientSession::OpMemMap(wire::Reader& in, wire::Writer& out) {
  const DevPtr ptr = in.Get<uint64_t>();
  const uint64_t size = in.Get<uint64_t>();
  const uint64_t offset = in.Get<uint64_t>();
  const uint64_t id = in.Get<uint64_t>();
  const uint64_t flags = in.Get<uint64_t>();
  if (!in.ok()) return Malformed();
  if (size == 0 || flags != 0) return CuError(CUDA_ERROR_INVALID_VALUE, "cuMemMap arguments");
  SessionMemoryExt& ext = MemExt();
  auto it = ext.handles.find(id);
  if (it == ext.handles.end() || it->second.refs == 0) return BadAllocationHandle();
  uint64_t end = 0;
  if (__builtin_add_overflow(offset, size, &end) || end > it->second.size) {
    return CuError(CUDA_ERROR_INVALID_VALUE, "mapping past the end of the allocation");
  }
  if (!ext.reservations.Contains(ptr, size)) {
    return CuError(CUDA_ERROR_INVALID_VALUE, "mapping outside this client's reservations");
  }
  if (!ext.mapped.Insert(ptr, size)) {
    return CuError(CUDA_ERROR_INVALID_VALUE, "range already mapped");
  }
  if (absl::Status s = backend_->MemMap(ptr, size, offset, it->second.backend, flags); !s.ok()) {
    ext.mapped.Erase(ptr);
    return s;
  }
  ext.mappings[ptr] = SessionMemoryExt::MappingRec{id, size};
  ++it->second.mappings;
  return absl::OkStatus();
}

absl::Status ClientSession::OpMemUnmap(wire::Reader& in, wire::Writer& out) {
  const DevPtr ptr = in.Get<uint64_t>();
  const uint64_t size = in.Get<uint64_t>();
  if (!in.ok()) return Malformed();
  SessionMemoryExt& ext = MemExt();
  // The range must consist of whole mappings, back to back.
  std::vector<DevPtr> bases;
  uint64_t at = ptr;
  uint64_t end = 0;
  if (size == 0 || __builtin_add_overflow(ptr, size, &end)) {
    return CuError(CUDA_ERROR_INVALID_VALUE, "cuMemUnmap range");
  }
  while (at < end) {
    auto m = ext.mappings.find(at);
    if (m == ext.mappings.end()) return CuError(CUDA_ERROR_INVALID_VALUE, "not a mapped range");
    bases.push_back(at);
    at += m->second.size;
  }
  if (at != end) return CuError(CUDA_ERROR_INVALID_VALUE, "range ends inside a mapping");
  for (DevPtr base : bases) {
    auto m = ext.mappings.find(base);
    if (absl::Status s = backend_->MemUnmap(base, m->second.size); !s.ok()) return s;
    const uint64_t handle = m->second.handle;
    ext.mappings.erase(m);
    ext.mapped.Erase(base);
    if (auto h = ext.handles.find(handle); h != ext.handles.end()) --h->second.mappings;
    UnchargeMemory(MaybeDropHandle(ext, handle));
  }
  return absl::OkStatus();
}

absl::Status ClientSession::OpMemSetAccess(wire::Reader& in, wire::Writer& out) {
  const DevPtr ptr = in.Get<uint64_t>();
  const uint64_t size = in.Get<uint64_t>();
  const uint32_t n = in.Get<uint32_t>();
  if (!in.ok() || n > kMaxAccessDescs) return Malformed();
  std::vector<MemAccessDesc> access(n);
  for (MemAccessDesc& d : access) {
    d.location_type = in.Get<int32_t>();
    d.location_id = in.Get<int32_t>();
    d.flags = in.Get<uint32_t>();
  }
  if (!in.ok()) return Malformed();
  if (n == 0 || size == 0) return CuError(CUDA_ERROR_INVALID_VALUE, "cuMemSetAccess arguments");
  for (const MemAccessDesc& d : access) {
    if (absl::Status s = CheckLocation(d.location_type, d.location_id); !s.ok()) return s;
  }
  if (!OwnsMappedRange(ptr, size)) return BadPointer();
  return backend_->MemSetAccess(ptr, size, access);
}

absl::Status ClientSession::OpMemGetAccess(wire::Reader& in, wire::Writer& out) {
  const int32_t type = in.Get<int32_t>();
  const int32_t id = in.Get<int32_t>();
  const DevPtr ptr = in.Get<uint64_t>();
  if (!in.ok()) return Malformed();
  if (absl::Status s = CheckLocation(type, id); !s.ok()) return s;
  if (!OwnsMappedRange(ptr, 0)) return BadPointer();
  absl::StatusOr<uint64_t> flags = backend_->MemGetAccess(type, id, ptr);
  if (!flags.ok()) return flags.status();
  out.Put<uint64_t>(*flags);
  return absl::OkStatus();
}

absl::Status ClientSession::OpMemGetAllocationPropertiesFromHandle(wire::Reader& in,
                                                                   wire::Writer& out) {
  const uint64_t id = in.Get<uint64_t>();
  if (!in.ok()) return Malformed();
  SessionMemoryExt& ext = MemExt();
  auto it = ext.handles.find(id);
  if (it == ext.handles.end() || it->second.refs == 0) return BadAllocationHandle();
  absl::StatusOr<wire::MemAllocProps> props =
      backend_->MemGetAllocationPropertiesFromHandle(it->second.backend);
  if (!props.ok()) return props.status();
  wire::PutMemAllocProps(out, *props);
  return absl::OkStatus();
}

absl::Status ClientSession::OpMemRetainAllocationHandle(wire::Reader& in, wire::Writer& out) {
  const DevPtr addr = in.Get<uint64_t>();
  if (!in.ok()) return Malformed();
  SessionMemoryExt& ext = MemExt();
  std::optional<memory::Range> r = ext.mapped.Find(addr);
  if (!r) return BadPointer();
  const uint64_t id = ext.mappings.at(r->base).handle;
  SessionMemoryExt::HandleRec& rec = ext.handles.at(id);
  absl::StatusOr<BackendHandle> h = backend_->MemRetainAllocationHandle(addr);
  if (!h.ok()) return h.status();
  if (*h != rec.backend) {
    // The session's mapping records and the backend disagree: a broken invariant
    // of the backend, not client input; drop the extra reference.
    (void)backend_->MemRelease(*h);
    spdlog::error("client {}: backend retained handle {:#x} at {:#x}, expected {:#x}", id_, *h,
                  addr, rec.backend);
    return CuError(CUDA_ERROR_UNKNOWN, "allocation handle mismatch");
  }
  ++rec.refs;
  out.Put<uint64_t>(id);
  return absl::OkStatus();
}

// ------------------------------------------------------------------ occupancy

absl::Status ClientSession::OpOccupancyMaxActiveBlocks(wire::Reader& in, wire::Writer& out) {
  const uint64_t fn = in.Get<uint64_t>();
  const uint32_t flags = in.Get<uint32_t>();
  const uint32_t n = in.Get<uint32_t>();
  if (!in.ok() || n > kMaxOccupancyQueries) return Malformed();
  std::vector<BlockSmem> queries(n);
  for (BlockSmem& q : queries) {
    q.block_size = in.Get<int32_t>();
    q.dynamic_smem = in.Get<uint64_t>();
  }
  if (!in.ok()) return Malformed();
  absl::StatusOr<Callable> c = ResolveCallable(fn);
  if (!c.ok()) return c.status();
  for (const BlockSmem& q : queries) {
    absl::StatusOr<int32_t> blocks =
        backend_->OccupancyMaxActiveBlocks(c->function, q.block_size, q.dynamic_smem, flags);
    if (!blocks.ok()) return blocks.status();
    out.Put<int32_t>(*blocks);
  }
  return absl::OkStatus();
}

absl::Status ClientSession::OpOccupancyMaxPotentialBlockSize(wire::Reader& in, wire::Writer& out) {
  const uint64_t fn = in.Get<uint64_t>();
  const uint32_t flags = in.Get<uint32_t>();
  const int32_t limit = in.Get<int32_t>();
  const uint64_t smem = in.Get<uint64_t>();
  const uint32_t n = in.Get<uint32_t>();
  if (!in.ok() || n > kMaxOccupancyQueries) return Malformed();
  std::vector<BlockSmem> table(n);
  for (BlockSmem& e : table) {
    e.block_size = in.Get<int32_t>();
    e.dynamic_smem = in.Get<uint64_t>();
  }
  if (!in.ok()) return Malformed();
  absl::StatusOr<Callable> c = ResolveCallable(fn);
  if (!c.ok()) return c.status();
  absl::StatusOr<OccupancyBlockSize> r =
      backend_->OccupancyMaxPotentialBlockSize(c->function, table, smem, limit, flags);
  if (!r.ok()) return r.status();
  out.Put<int32_t>(r->min_grid_size).Put<int32_t>(r->block_size);
  return absl::OkStatus();
}

absl::Status ClientSession::OpOccupancyAvailableDynamicSMem(wire::Reader& in, wire::Writer& out) {
  const uint64_t fn = in.Get<uint64_t>();
  const int32_t num_blocks = in.Get<int32_t>();
  const int32_t block_size = in.Get<int32_t>();
  if (!in.ok()) return Malformed();
  absl::StatusOr<Callable> c = ResolveCallable(fn);
  if (!c.ok()) return c.status();
  absl::StatusOr<uint64_t> bytes =
      backend_->OccupancyAvailableDynamicSMem(c->function, num_blocks, block_size);
  if (!bytes.ok()) return bytes.status();
  out.Put<uint64_t>(*bytes);
  return absl::OkStatus();
}

absl::Status ClientSession::OpOccupancyMaxActiveClusters(wire::Reader& in, wire::Writer& out) {
  const uint64_t fn = in.Get<uint64_t>();
  LaunchConfig config;
  for (uint32_t& g : config.grid) g = in.Get<uint32_t>();
  for (uint32_t& b : config.block) b = in.Get<uint32_t>();
  config.shared_bytes = in.Get<uint32_t>();
  const uint32_t n_attrs = in.Get<uint32_t>();
  if (!in.ok() || n_attrs > kMaxClusterAttributes) return Malformed();
  for (uint32_t i = 0; i < n_attrs; ++i) {
    LaunchAttribute a;
    a.id = in.Get<uint32_t>();
    const uint8_t* value = in.GetRaw(sizeof(a.value));
    if (!in.ok()) return Malformed();
    if (a.id == CU_LAUNCH_ATTRIBUTE_IGNORE) continue;
    if (!IsValueOnlyLaunchAttribute(a.id)) {
      return CuError(CUDA_ERROR_INVALID_VALUE, absl::StrCat("launch attribute ", a.id));
    }
    std::memcpy(a.value, value, sizeof(a.value));
    config.attributes.push_back(a);
  }
  absl::StatusOr<Callable> c = ResolveCallable(fn);
  if (!c.ok()) return c.status();
  absl::StatusOr<int32_t> clusters = backend_->OccupancyMaxActiveClusters(c->function, config);
  if (!clusters.ok()) return clusters.status();
  out.Put<int32_t>(*clusters);
  return absl::OkStatus();
}

// ----------------------------------------------- limits and cache configuration

absl::Status ClientSession::OpCtxGetLimit(wire::Reader& in, wire::Writer& out) {
  const int32_t limit = in.Get<int32_t>();
  if (!in.ok()) return Malformed();
  SessionMemoryExt& ext = MemExt();
  if (auto it = ext.limits.find(limit); it != ext.limits.end()) {
    out.Put<uint64_t>(it->second);
    return absl::OkStatus();
  }
  absl::StatusOr<uint64_t> v = backend_->CtxGetLimit(limit);
  if (!v.ok()) return v.status();
  out.Put<uint64_t>(*v);
  return absl::OkStatus();
}

// The context is shared, so a limit is applied only when that cannot hurt
// another client: the per-thread and per-launch resources (stack, printf
// FIFO, malloc heap, device runtime depth and pending launches) may grow,
// never shrink. A smaller value, and the limits that would change how other
// clients' kernels use the L2 cache, are recorded for this client alone: its
// cuCtxGetLimit reports them back, nothing else changes.
absl::Status ClientSession::OpCtxSetLimit(wire::Reader& in, wire::Writer& out) {
  const int32_t limit = in.Get<int32_t>();
  const uint64_t value = in.Get<uint64_t>();
  if (!in.ok()) return Malformed();
  SessionMemoryExt& ext = MemExt();
  switch (limit) {
    case CU_LIMIT_STACK_SIZE:
    case CU_LIMIT_PRINTF_FIFO_SIZE:
    case CU_LIMIT_MALLOC_HEAP_SIZE:
    case CU_LIMIT_DEV_RUNTIME_SYNC_DEPTH:
    case CU_LIMIT_DEV_RUNTIME_PENDING_LAUNCH_COUNT: {
      absl::StatusOr<uint64_t> current = backend_->CtxGetLimit(limit);
      if (!current.ok()) return current.status();
      if (value > *current) {
        if (absl::Status s = backend_->CtxSetLimit(limit, value); !s.ok()) return s;
        ext.limits.erase(limit);  // the driver's (rounded) value is the answer now
      } else {
        ext.limits[limit] = value;
      }
      return absl::OkStatus();
    }
    case CU_LIMIT_MAX_L2_FETCH_GRANULARITY:
      if (value > 128) return CuError(CUDA_ERROR_INVALID_VALUE, "L2 fetch granularity");
      ext.limits[limit] = value;
      return absl::OkStatus();
    case CU_LIMIT_PERSISTING_L2_CACHE_SIZE:
    case CU_LIMIT_CIG_SHMEM_FALLBACK_ENABLED:
      ext.limits[limit] = value;
      return absl::OkStatus();
    default:  // query-only (SHMEM_SIZE, CIG_ENABLED) or unknown
      return CuError(CUDA_ERROR_INVALID_VALUE, absl::StrCat("limit ", limit, " cannot be set"));
  }
}

absl::Status ClientSession::OpFuncSetCacheConfig(wire::Reader& in, wire::Writer& out) {
  const uint64_t fn = in.Get<uint64_t>();
  const int32_t config = in.Get<int32_t>();
  if (!in.ok()) return Malformed();
  if (config < CU_FUNC_CACHE_PREFER_NONE || config > CU_FUNC_CACHE_PREFER_EQUAL) {
    return CuError(CUDA_ERROR_INVALID_VALUE, "cache configuration");
  }
  absl::StatusOr<Callable> c = ResolveCallable(fn);
  if (!c.ok()) return c.status();
  return backend_->FuncSetCacheConfig(c->function, config);
}

absl::Status ClientSession::OpFuncSetSharedMemConfig(wire::Reader& in, wire::Writer& out) {
  const uint64_t fn = in.Get<uint64_t>();
  const int32_t config = in.Get<int32_t>();
  if (!in.ok()) return Malformed();
  if (config < CU_SHARED_MEM_CONFIG_DEFAULT_BANK_SIZE ||
      config > CU_SHARED_MEM_CONFIG_EIGHT_BYTE_BANK_SIZE) {
    return CuError(CUDA_ERROR_INVALID_VALUE, "shared memory configuration");
  }
  absl::StatusOr<Callable> c = ResolveCallable(fn);
  if (!c.ok()) return c.status();
  return backend_->FuncSetSharedMemConfig(c->function, config);
}

// ---------------------------------------------------------------- tensor maps

absl::Status ClientSession::OpTensorMapEncodeTiled(wire::Reader& in, wire::Writer& out) {
  const wire::TensorMapTiled t = wire::GetTensorMapTiled(in);
  if (!in.ok()) return Malformed();
  std::optional<uint64_t> extent = TensorExtent(t.data_type, t.rank, t.dims, t.strides);
  if (!extent) return CuError(CUDA_ERROR_INVALID_VALUE, "tensor map geometry");
  if (absl::Status s = CheckRange(t.address, *extent); !s.ok()) return s;
  absl::StatusOr<TensorMapBytes> map = backend_->TensorMapEncodeTiled(t);
  if (!map.ok()) return map.status();
  out.PutRaw(map->data(), map->size());
  return absl::OkStatus();
}

absl::Status ClientSession::OpTensorMapEncodeIm2col(wire::Reader& in, wire::Writer& out) {
  const wire::TensorMapIm2col t = wire::GetTensorMapIm2col(in);
  if (!in.ok()) return Malformed();
  if (t.rank < 3) return CuError(CUDA_ERROR_INVALID_VALUE, "im2col tensor rank");
  std::optional<uint64_t> extent = TensorExtent(t.data_type, t.rank, t.dims, t.strides);
  if (!extent) return CuError(CUDA_ERROR_INVALID_VALUE, "tensor map geometry");
  if (absl::Status s = CheckRange(t.address, *extent); !s.ok()) return s;
  absl::StatusOr<TensorMapBytes> map = backend_->TensorMapEncodeIm2col(t);
  if (!map.ok()) return map.status();
  out.PutRaw(map->data(), map->size());
  return absl::OkStatus();
}

absl::Status ClientSession::OpTensorMapReplaceAddress(wire::Reader& in, wire::Writer& out) {
  TensorMapBytes map;
  const uint8_t* bytes = in.GetRaw(map.size());
  const DevPtr address = in.Get<uint64_t>();
  if (!in.ok()) return Malformed();
  std::memcpy(map.data(), bytes, map.size());
  // The map's extent is opaque here; the new base must at least be ours.
  if (!OwnsRange(address, 0)) return BadPointer();
  absl::StatusOr<TensorMapBytes> updated = backend_->TensorMapReplaceAddress(map, address);
  if (!updated.ok()) return updated.status();
  out.PutRaw(updated->data(), updated->size());
  return absl::OkStatus();
}

}  // namespace wooly::server
