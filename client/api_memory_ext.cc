// Memory entry points beyond the foundation: pointer attributes (local),
// pinned and registered host memory (local), the stream-ordered allocator
// and memory pools, virtual memory management, pitched allocation and
// tensor maps (forwarded). See memory_ext.h for the client-side records.
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstring>
#include <map>
#include <mutex>
#include <tuple>

#include "alloc_arena.h"
#include "api.h"
#include "capture.h"
#include "driver.h"
#include "log.h"
#include "memory_ext.h"
#include "wooly/proto/wire_memory_ext.h"

namespace wooly::client {
namespace {

// cuMemAllocPitch rounds rows up to this many bytes, as the driver does on
// current GPUs.
constexpr uint64_t kPitchAlignment = 512;

uint64_t PageSize() {
  static const uint64_t page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  return page;
}
uint64_t PageRound(uint64_t n) { return (n + PageSize() - 1) / PageSize() * PageSize(); }

// --- pinned and registered host memory

}  // namespace

// A sealed memfd mapped here and sent over: woolyd cannot shrink it away
// from under its registration.
void* SharedHostAlloc(uint64_t bytes) {
  if (!SharedMemoryChannel()) return nullptr;
  const int fd = ::memfd_create("wooly-pinned", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (fd < 0) return nullptr;
  void* p = MAP_FAILED;
  if (::ftruncate(fd, static_cast<off_t>(bytes)) == 0 &&
      ::fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) == 0) {
    p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  }
  if (p == MAP_FAILED) {
    ::close(fd);
    return nullptr;
  }
  wire::Writer w;
  w.Put<uint64_t>(reinterpret_cast<uint64_t>(p)).Put<uint64_t>(bytes);
  const CUresult r = RpcWithFd(wire::Op::kHostShmRegister, w, fd);
  ::close(fd);
  if (r != CUDA_SUCCESS) {
    WLOG_DEBUG(
        "pinned memory of %llu bytes not shared with woolyd (CUresult %d); using private "
        "memory",
        static_cast<unsigned long long>(bytes), static_cast<int>(r));
    ::munmap(p, bytes);
    return nullptr;
  }
  return p;
}

namespace {

CUresult HostAlloc(void** pp, size_t bytesize, unsigned flags) {
  Context* ctx = nullptr;
  if (CUresult r = RequireContext(&ctx); r != CUDA_SUCCESS) return r;
  constexpr unsigned kKnown =
      CU_MEMHOSTALLOC_PORTABLE | CU_MEMHOSTALLOC_DEVICEMAP | CU_MEMHOSTALLOC_WRITECOMBINED;
  if (pp == nullptr || bytesize == 0 || (flags & ~kKnown) != 0) return CUDA_ERROR_INVALID_VALUE;
  // Same node: memory woolyd maps and registers, so it is really pinned.
  // Otherwise page-aligned private memory, copied over the wire.
  void* p = SharedHostAlloc(PageRound(bytesize));
  const bool shared = p != nullptr;
  if (!shared) {
    p = ::mmap(nullptr, PageRound(bytesize), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
               -1, 0);
    if (p == MAP_FAILED) return CUDA_ERROR_OUT_OF_MEMORY;
  }
  HostAllocTable::Record rec;
  rec.base = reinterpret_cast<uint64_t>(p);
  rec.size = bytesize;
  rec.flags = flags;
  rec.kind = HostAllocTable::Kind::kAlloc;
  rec.ctx = ctx;
  rec.shared = shared;
  if (!HostAllocations().Insert(rec)) {  // a fresh mapping cannot overlap a live record
    ::munmap(p, PageRound(bytesize));
    return CUDA_ERROR_UNKNOWN;
  }
  *pp = p;
  return CUDA_SUCCESS;
}

CUresult FreeHost(void* p) {
  if (!Initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  HostAllocTable::Record rec;
  if (!HostAllocations().Remove(reinterpret_cast<uint64_t>(p), HostAllocTable::Kind::kAlloc,
                                &rec)) {
    return CUDA_ERROR_INVALID_VALUE;
  }
  if (rec.shared) {
    // woolyd unpins it (after DMA in flight) before the pages go away.
    wire::Writer w;
    w.Put<uint64_t>(rec.base);
    Rpc(wire::Op::kHostShmUnregister, w);
  }
  ::munmap(p, PageRound(rec.size));
  return CUDA_SUCCESS;
}

CUresult HostRegister(void* p, size_t bytesize, unsigned flags) {
  Context* ctx = nullptr;
  if (CUresult r = RequireContext(&ctx); r != CUDA_SUCCESS) return r;
  constexpr unsigned kKnown = CU_MEMHOSTREGISTER_PORTABLE | CU_MEMHOSTREGISTER_DEVICEMAP |
                              CU_MEMHOSTREGISTER_IOMEMORY | CU_MEMHOSTREGISTER_READ_ONLY;
  if (p == nullptr || bytesize == 0 || (flags & ~kKnown) != 0) return CUDA_ERROR_INVALID_VALUE;
  HostAllocTable::Record rec;
  rec.base = reinterpret_cast<uint64_t>(p);
  rec.size = bytesize;
  rec.flags = flags;
  rec.kind = HostAllocTable::Kind::kRegistered;
  rec.ctx = ctx;
  // Registering pinned memory again is what the driver refuses this way too.
  if (!HostAllocations().Insert(rec)) return CUDA_ERROR_HOST_MEMORY_ALREADY_REGISTERED;
  return CUDA_SUCCESS;
}

// --- stream-ordered allocator

CUresult AllocAsync(CUdeviceptr* dptr, size_t bytesize, MemPool* pool, CUstream stream, bool ptds) {
  Context* ctx = nullptr;
  if (CUresult r = RequireContext(&ctx); r != CUDA_SUCCESS) return r;
  if (dptr == nullptr || bytesize == 0 || pool == nullptr) return CUDA_ERROR_INVALID_VALUE;
  uint64_t stream_id = 0;
  if (CUresult r = ResolveStream(stream, ptds, &stream_id); r != CUDA_SUCCESS) return r;
  wire::Writer w;
  w.Put<uint64_t>(bytesize).Put<uint64_t>(pool->id).Put<uint64_t>(stream_id);
  Reply reply;
  if (CUresult r = Rpc(wire::Op::kMemAllocAsync, w, &reply); r != CUDA_SUCCESS) return r;
  wire::Reader rd = reply.reader();
  const uint64_t ptr = rd.Get<uint64_t>();
  if (!rd.ok()) return BadReply(wire::Op::kMemAllocAsync);
  Allocations().Insert(ptr, bytesize, AllocTable::Kind::kAlloc, ctx);
  AllocTable::Record rec;
  if (Allocations().Find(ptr, &rec)) MemRecords().AddPoolAllocation(ptr, rec.buffer_id, pool);
  *dptr = static_cast<CUdeviceptr>(ptr);
  return CUDA_SUCCESS;
}

CUresult FreeAsync(CUdeviceptr dptr, CUstream stream, bool ptds) {
  if (CUresult r = RequireContext(); r != CUDA_SUCCESS) return r;
  uint64_t stream_id = 0;
  if (CUresult r = ResolveStream(stream, ptds, &stream_id); r != CUDA_SUCCESS) return r;
  if (Arenas().IsBlock(dptr)) {
    // A local block (alloc_arena.h) is freed as by cuMemFree, whose
    // synchronization covers the stream's earlier work; a capture cannot
    // record that.
    if (AnyCaptureInProgress()) return CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED;
    return FreeLocalBlock(dptr);
  }
  if (Arenas().InArena(dptr)) return CUDA_ERROR_INVALID_VALUE;  // as in cuMemFree
  wire::Writer w;
  w.Put<uint64_t>(dptr).Put<uint64_t>(stream_id);
  // Known allocations are freed without waiting, in stream order.
  AllocTable::Record rec;
  const bool known = Allocations().Find(dptr, &rec) && rec.base == dptr;
  if (CUresult r = known ? Post(wire::Op::kMemFreeAsync, w) : Rpc(wire::Op::kMemFreeAsync, w);
      r != CUDA_SUCCESS) {
    return r;
  }
  Allocations().Remove(dptr);
  MemRecords().RemovePoolAllocation(dptr);
  return CUDA_SUCCESS;
}

CUresult CheckDevice(CUdevice dev) {
  if (!Initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  return dev == 0 ? CUDA_SUCCESS : CUDA_ERROR_INVALID_DEVICE;
}

bool PoolAttributeIsInt(CUmemPool_attribute attr) {
  return attr == CU_MEMPOOL_ATTR_REUSE_FOLLOW_EVENT_DEPENDENCIES ||
         attr == CU_MEMPOOL_ATTR_REUSE_ALLOW_OPPORTUNISTIC ||
         attr == CU_MEMPOOL_ATTR_REUSE_ALLOW_INTERNAL_DEPENDENCIES;
}
bool PoolAttributeIsKnown(CUmemPool_attribute attr) {
  return attr >= CU_MEMPOOL_ATTR_REUSE_FOLLOW_EVENT_DEPENDENCIES &&
         attr <= CU_MEMPOOL_ATTR_USED_MEM_HIGH;
}

// A live pool handle, or nullptr.
MemPool* LivePool(CUmemoryPool handle) {
  MemPool* pool = AsMemPool(handle);
  return pool != nullptr && MemRecords().PoolIsLive(pool) ? pool : nullptr;
}

CUresult PoolCreate(CUmemoryPool* out, const CUmemPoolProps* props) {
  if (!Initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  if (out == nullptr || props == nullptr || props->win32SecurityAttributes != nullptr) {
    return CUDA_ERROR_INVALID_VALUE;
  }
  for (unsigned char b : props->reserved) {
    if (b != 0) return CUDA_ERROR_INVALID_VALUE;
  }
  wire::MemPoolProps p;
  p.alloc_type = props->allocType;
  p.handle_types = props->handleTypes;
  p.location_type = props->location.type;
  p.location_id = props->location.id;
  p.max_size = props->maxSize;
  p.usage = props->usage;
  wire::Writer w;
  wire::PutMemPoolProps(w, p);
  Reply reply;
  if (CUresult r = Rpc(wire::Op::kMemPoolCreate, w, &reply); r != CUDA_SUCCESS) return r;
  wire::Reader rd = reply.reader();
  const uint64_t id = rd.Get<uint64_t>();
  if (!rd.ok()) return BadReply(wire::Op::kMemPoolCreate);
  MemPool* pool = new MemPool();
  pool->id = id;
  pool->handle_types = props->handleTypes;
  MemRecords().AddPool(pool);
  *out = reinterpret_cast<CUmemoryPool>(pool);
  return CUDA_SUCCESS;
}

CUresult PoolDestroy(CUmemoryPool handle) {
  if (!Initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  MemPool* pool = LivePool(handle);
  // The device's default pool cannot be destroyed.
  if (pool == nullptr || pool == MemRecords().DefaultPool()) return CUDA_ERROR_INVALID_VALUE;
  wire::Writer w;
  w.Put<uint64_t>(pool->id);
  if (CUresult r = Rpc(wire::Op::kMemPoolDestroy, w); r != CUDA_SUCCESS) return r;
  if (MemRecords().RemovePool(pool)) Destroy(pool);
  return CUDA_SUCCESS;
}

CUresult PoolSetAttribute(CUmemoryPool handle, CUmemPool_attribute attr, const void* value) {
  if (!Initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  MemPool* pool = LivePool(handle);
  if (pool == nullptr || value == nullptr || !PoolAttributeIsKnown(attr)) {
    return CUDA_ERROR_INVALID_VALUE;
  }
  uint64_t v = 0;
  if (PoolAttributeIsInt(attr)) {
    int i = 0;
    std::memcpy(&i, value, sizeof(i));
    v = static_cast<uint64_t>(static_cast<int64_t>(i));
  } else {
    std::memcpy(&v, value, sizeof(v));
  }
  wire::Writer w;
  w.Put<uint64_t>(pool->id).Put<int32_t>(attr).Put<uint64_t>(v);
  return Rpc(wire::Op::kMemPoolSetAttribute, w);
}

CUresult PoolGetAttribute(CUmemoryPool handle, CUmemPool_attribute attr, void* value) {
  if (!Initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  MemPool* pool = LivePool(handle);
  if (pool == nullptr || value == nullptr || !PoolAttributeIsKnown(attr)) {
    return CUDA_ERROR_INVALID_VALUE;
  }
  wire::Writer w;
  w.Put<uint64_t>(pool->id).Put<int32_t>(attr);
  Reply reply;
  if (CUresult r = Rpc(wire::Op::kMemPoolGetAttribute, w, &reply); r != CUDA_SUCCESS) return r;
  wire::Reader rd = reply.reader();
  const uint64_t v = rd.Get<uint64_t>();
  if (!rd.ok()) return BadReply(wire::Op::kMemPoolGetAttribute);
  if (PoolAttributeIsInt(attr)) {
    const int i = static_cast<int>(v);
    std::memcpy(value, &i, sizeof(i));
  } else {
    const cuuint64_t u = v;
    std::memcpy(value, &u, sizeof(u));
  }
  return CUDA_SUCCESS;
}

// --- virtual memory management

wire::MemAllocProps ToWire(const CUmemAllocationProp& p) {
  wire::MemAllocProps w;
  w.type = p.type;
  w.handle_types = p.requestedHandleTypes;
  w.location_type = p.location.type;
  w.location_id = p.location.id;
  w.compression = p.allocFlags.compressionType;
  w.rdma_capable = p.allocFlags.gpuDirectRDMACapable;
  w.usage = p.allocFlags.usage;
  return w;
}

CUresult Granularity(size_t* out, const CUmemAllocationProp* prop,
                     CUmemAllocationGranularity_flags option) {
  if (!Initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  if (out == nullptr || prop == nullptr) return CUDA_ERROR_INVALID_VALUE;
  const wire::MemAllocProps props = ToWire(*prop);
  // The answer depends on the device only; PyTorch asks for every segment.
  using Key = std::tuple<uint32_t, uint32_t, int32_t, int32_t, uint8_t, uint8_t, uint16_t, int>;
  const Key key{props.type,        props.handle_types,      props.location_type,
                props.location_id, props.compression,       props.rdma_capable,
                props.usage,       static_cast<int>(option)};
  static std::mutex* mu = new std::mutex();
  static auto* cache = new std::map<Key, uint64_t>();
  {
    std::lock_guard<std::mutex> l(*mu);
    if (auto it = cache->find(key); it != cache->end()) {
      *out = static_cast<size_t>(it->second);
      return CUDA_SUCCESS;
    }
  }
  wire::Writer w;
  wire::PutMemAllocProps(w, props);
  w.Put<uint32_t>(option);
  Reply reply;
  if (CUresult r = Rpc(wire::Op::kMemGetAllocationGranularity, w, &reply); r != CUDA_SUCCESS) {
    return r;
  }
  wire::Reader rd = reply.reader();
  const uint64_t g = rd.Get<uint64_t>();
  if (!rd.ok()) return BadReply(wire::Op::kMemGetAllocationGranularity);
  {
    std::lock_guard<std::mutex> l(*mu);
    (*cache)[key] = g;
  }
  *out = static_cast<size_t>(g);
  return CUDA_SUCCESS;
}

CUresult AddressReserve(CUdeviceptr* ptr, size_t size, size_t alignment, CUdeviceptr addr,
                        unsigned long long flags) {
  if (CUresult r = RequireContext(); r != CUDA_SUCCESS) return r;
  if (ptr == nullptr) return CUDA_ERROR_INVALID_VALUE;
  wire::Writer w;
  w.Put<uint64_t>(size).Put<uint64_t>(alignment).Put<uint64_t>(addr).Put<uint64_t>(flags);
  Reply reply;
  if (CUresult r = Rpc(wire::Op::kMemAddressReserve, w, &reply); r != CUDA_SUCCESS) return r;
  wire::Reader rd = reply.reader();
  const uint64_t p = rd.Get<uint64_t>();
  if (!rd.ok()) return BadReply(wire::Op::kMemAddressReserve);
  // Keep host allocations of this process out of the reserved device range.
  MemRecords().AddReservation(p, size, /*reserve_locally=*/true);
  *ptr = static_cast<CUdeviceptr>(p);
  return CUDA_SUCCESS;
}

CUresult MemCreate(CUmemGenericAllocationHandle* handle, size_t size,
                   const CUmemAllocationProp* prop, unsigned long long flags) {
  if (CUresult r = RequireContext(); r != CUDA_SUCCESS) return r;
  if (handle == nullptr || prop == nullptr) return CUDA_ERROR_INVALID_VALUE;
  wire::Writer w;
  w.Put<uint64_t>(size);
  wire::PutMemAllocProps(w, ToWire(*prop));
  w.Put<uint64_t>(flags);
  Reply reply;
  if (CUresult r = Rpc(wire::Op::kMemCreate, w, &reply); r != CUDA_SUCCESS) return r;
  wire::Reader rd = reply.reader();
  const uint64_t id = rd.Get<uint64_t>();
  if (!rd.ok()) return BadReply(wire::Op::kMemCreate);
  MemRecords().AddHandle(id, size, prop->requestedHandleTypes,
                         prop->allocFlags.gpuDirectRDMACapable != 0);
  *handle = static_cast<CUmemGenericAllocationHandle>(id);
  return CUDA_SUCCESS;
}

CUresult MemMap(CUdeviceptr ptr, size_t size, size_t offset, CUmemGenericAllocationHandle handle,
                unsigned long long flags) {
  if (CUresult r = RequireContext(); r != CUDA_SUCCESS) return r;
  wire::Writer w;
  w.Put<uint64_t>(ptr).Put<uint64_t>(size).Put<uint64_t>(offset).Put<uint64_t>(handle);
  w.Put<uint64_t>(flags);
  if (CUresult r = Rpc(wire::Op::kMemMap, w); r != CUDA_SUCCESS) return r;
  // Device memory from now on: copies classify it as such, pointer
  // attributes know it. The reservation already holds the address space.
  Allocations().Insert(ptr, size, AllocTable::Kind::kAlloc, VmmOwner(), /*reserve=*/false);
  MemRecords().AddMapping(ptr, size, handle);
  return CUDA_SUCCESS;
}

CUresult MemUnmap(CUdeviceptr ptr, size_t size) {
  if (CUresult r = RequireContext(); r != CUDA_SUCCESS) return r;
  wire::Writer w;
  w.Put<uint64_t>(ptr).Put<uint64_t>(size);
  if (CUresult r = Rpc(wire::Op::kMemUnmap, w); r != CUDA_SUCCESS) return r;
  for (uint64_t base : MemRecords().RemoveMappings(ptr, size)) Allocations().Remove(base);
  return CUDA_SUCCESS;
}

CUresult SetAccess(CUdeviceptr ptr, size_t size, const CUmemAccessDesc* desc, size_t count) {
  if (CUresult r = RequireContext(); r != CUDA_SUCCESS) return r;
  if (desc == nullptr || count == 0 || count > 64) return CUDA_ERROR_INVALID_VALUE;
  wire::Writer w;
  w.Put<uint64_t>(ptr).Put<uint64_t>(size).Put<uint32_t>(static_cast<uint32_t>(count));
  for (size_t i = 0; i < count; ++i) {
    w.Put<int32_t>(desc[i].location.type).Put<int32_t>(desc[i].location.id);
    w.Put<uint32_t>(desc[i].flags);
  }
  if (CUresult r = Rpc(wire::Op::kMemSetAccess, w); r != CUDA_SUCCESS) return r;
  for (size_t i = 0; i < count; ++i) {
    if (desc[i].location.type == CU_MEM_LOCATION_TYPE_DEVICE && desc[i].location.id == 0) {
      MemRecords().SetAccess(ptr, size, desc[i].flags);
    }
  }
  return CUDA_SUCCESS;
}

CUresult GetAccess(unsigned long long* flags, const CUmemLocation* location, CUdeviceptr ptr) {
  if (CUresult r = RequireContext(); r != CUDA_SUCCESS) return r;
  if (flags == nullptr || location == nullptr) return CUDA_ERROR_INVALID_VALUE;
  wire::Writer w;
  w.Put<int32_t>(location->type).Put<int32_t>(location->id).Put<uint64_t>(ptr);
  Reply reply;
  if (CUresult r = Rpc(wire::Op::kMemGetAccess, w, &reply); r != CUDA_SUCCESS) return r;
  wire::Reader rd = reply.reader();
  const uint64_t f = rd.Get<uint64_t>();
  if (!rd.ok()) return BadReply(wire::Op::kMemGetAccess);
  *flags = f;
  return CUDA_SUCCESS;
}

CUresult PropertiesFromHandle(CUmemAllocationProp* prop, CUmemGenericAllocationHandle handle) {
  if (CUresult r = RequireContext(); r != CUDA_SUCCESS) return r;
  if (prop == nullptr) return CUDA_ERROR_INVALID_VALUE;
  wire::Writer w;
  w.Put<uint64_t>(handle);
  Reply reply;
  if (CUresult r = Rpc(wire::Op::kMemGetAllocationPropertiesFromHandle, w, &reply);
      r != CUDA_SUCCESS) {
    return r;
  }
  wire::Reader rd = reply.reader();
  const wire::MemAllocProps p = wire::GetMemAllocProps(rd);
  if (!rd.ok()) return BadReply(wire::Op::kMemGetAllocationPropertiesFromHandle);
  std::memset(prop, 0, sizeof(*prop));
  prop->type = static_cast<CUmemAllocationType>(p.type);
  prop->requestedHandleTypes = static_cast<CUmemAllocationHandleType>(p.handle_types);
  prop->location.type = static_cast<CUmemLocationType>(p.location_type);
  prop->location.id = p.location_id;
  prop->allocFlags.compressionType = p.compression;
  prop->allocFlags.gpuDirectRDMACapable = p.rdma_capable;
  prop->allocFlags.usage = p.usage;
  return CUDA_SUCCESS;
}

CUresult RetainHandle(CUmemGenericAllocationHandle* handle, void* addr) {
  if (CUresult r = RequireContext(); r != CUDA_SUCCESS) return r;
  if (handle == nullptr) return CUDA_ERROR_INVALID_VALUE;
  wire::Writer w;
  w.Put<uint64_t>(reinterpret_cast<uint64_t>(addr));
  Reply reply;
  if (CUresult r = Rpc(wire::Op::kMemRetainAllocationHandle, w, &reply); r != CUDA_SUCCESS) {
    return r;
  }
  wire::Reader rd = reply.reader();
  const uint64_t id = rd.Get<uint64_t>();
  if (!rd.ok()) return BadReply(wire::Op::kMemRetainAllocationHandle);
  MemRecords().RetainHandle(id);
  *handle = static_cast<CUmemGenericAllocationHandle>(id);
  return CUDA_SUCCESS;
}

CUresult OneIdRpc(wire::Op op, uint64_t a, uint64_t b) {
  if (CUresult r = RequireContext(); r != CUDA_SUCCESS) return r;
  wire::Writer w;
  w.Put<uint64_t>(a).Put<uint64_t>(b);
  return Rpc(op, w);
}

// --- pitched allocation

CUresult AllocPitch(CUdeviceptr* dptr, size_t* pitch, size_t width, size_t height,
                    unsigned element_size) {
  if (CUresult r = RequireContext(); r != CUDA_SUCCESS) return r;
  if (dptr == nullptr || pitch == nullptr || width == 0 || height == 0 ||
      (element_size != 4 && element_size != 8 && element_size != 16)) {
    return CUDA_ERROR_INVALID_VALUE;
  }
  const uint64_t p = (uint64_t{width} + kPitchAlignment - 1) / kPitchAlignment * kPitchAlignment;
  const int32_t max_pitch = Device().attributes.size() > CU_DEVICE_ATTRIBUTE_MAX_PITCH
                                ? Device().attributes[CU_DEVICE_ATTRIBUTE_MAX_PITCH]
                                : 0;
  if (max_pitch > 0 && p > static_cast<uint64_t>(max_pitch)) return CUDA_ERROR_INVALID_VALUE;
  uint64_t bytes = 0;
  if (__builtin_mul_overflow(p, uint64_t{height}, &bytes)) return CUDA_ERROR_OUT_OF_MEMORY;
  if (CUresult r = cuMemAlloc_v2(dptr, bytes); r != CUDA_SUCCESS) return r;
  *pitch = static_cast<size_t>(p);
  return CUDA_SUCCESS;
}

// --- tensor maps

CUresult TensorMapReply(wire::Op op, const wire::Writer& w, CUtensorMap* map) {
  Reply reply;
  if (CUresult r = Rpc(op, w, &reply); r != CUDA_SUCCESS) return r;
  if (reply.fields.size() != wire::kTensorMapBytes) return BadReply(op);
  static_assert(sizeof(CUtensorMap) == wire::kTensorMapBytes);
  std::memcpy(map, reply.fields.data(), sizeof(*map));
  return CUDA_SUCCESS;
}

// Copies the shared leading arguments of both encodings; false when one of
// the arrays the rank needs is missing.
template <typename T>
bool FillTensorCommon(T* t, CUtensorMapDataType type, cuuint32_t rank, void* address,
                      const cuuint64_t* dims, const cuuint64_t* strides,
                      const cuuint32_t* element_strides) {
  if (rank == 0 || rank > wire::kMaxTensorRank || dims == nullptr || element_strides == nullptr ||
      (rank > 1 && strides == nullptr)) {
    return false;
  }
  t->data_type = type;
  t->rank = rank;
  t->address = reinterpret_cast<uint64_t>(address);
  for (cuuint32_t i = 0; i < rank; ++i) {
    t->dims[i] = dims[i];
    t->element_strides[i] = element_strides[i];
    if (i + 1 < rank) t->strides[i] = strides[i];
  }
  return true;
}

}  // namespace
}  // namespace wooly::client

using namespace wooly::client;  // NOLINT: the C entry points live at global scope
namespace wire = ::wooly::wire;

// --- pointer attributes

WOOLY_EXPORT CUresult CUDAAPI cuPointerGetAttribute(void* data, CUpointer_attribute attribute,
                                                    CUdeviceptr ptr) {
  WOOLY_API_BODY(return PointerGetAttribute(data, attribute, ptr););
}

WOOLY_EXPORT CUresult CUDAAPI cuPointerGetAttributes(unsigned int numAttributes,
                                                     CUpointer_attribute* attributes, void** data,
                                                     CUdeviceptr ptr) {
  WOOLY_API_BODY(return PointerGetAttributes(numAttributes, attributes, data, ptr););
}

WOOLY_EXPORT CUresult CUDAAPI cuPointerSetAttribute(const void* value,
                                                    CUpointer_attribute attribute,
                                                    CUdeviceptr ptr) {
  WOOLY_API_BODY({
    if (!Initialized()) return CUDA_ERROR_NOT_INITIALIZED;
    // SYNC_MEMOPS is the only settable attribute. Wooly's synchronous copies
    // always complete before returning, so it is only recorded.
    if (value == nullptr || attribute != CU_POINTER_ATTRIBUTE_SYNC_MEMOPS) {
      return CUDA_ERROR_INVALID_VALUE;
    }
    const PointerInfo info = LookupPointer(ptr);
    if (info.type == PointerInfo::Type::kUnknown) return CUDA_ERROR_INVALID_VALUE;
    unsigned on = 0;
    std::memcpy(&on, value, sizeof(on));
    MemRecords().SetSyncMemops(info.buffer_id, on != 0);
    return CUDA_SUCCESS;
  });
}

// --- pinned and registered host memory

WOOLY_EXPORT CUresult CUDAAPI cuMemHostAlloc(void** pp, size_t bytesize, unsigned int Flags) {
  WOOLY_API_BODY(return HostAlloc(pp, bytesize, Flags););
}

// The real driver reports cuMemAllocHost memory as portable and mapped.
WOOLY_EXPORT CUresult CUDAAPI cuMemAllocHost_v2(void** pp, size_t bytesize) {
  WOOLY_API_BODY(
      return HostAlloc(pp, bytesize, CU_MEMHOSTALLOC_PORTABLE | CU_MEMHOSTALLOC_DEVICEMAP););
}

WOOLY_EXPORT CUresult CUDAAPI cuMemFreeHost(void* p) { WOOLY_API_BODY(return FreeHost(p);); }

WOOLY_EXPORT CUresult CUDAAPI cuMemHostRegister(void* p, size_t bytesize, unsigned int Flags) {
  WOOLY_API_BODY(return HostRegister(p, bytesize, Flags););
}

WOOLY_EXPORT CUresult CUDAAPI cuMemHostRegister_v2(void* p, size_t bytesize, unsigned int Flags) {
  WOOLY_API_BODY(return HostRegister(p, bytesize, Flags););
}

WOOLY_EXPORT CUresult CUDAAPI cuMemHostUnregister(void* p) {
  WOOLY_API_BODY({
    if (!Initialized()) return CUDA_ERROR_NOT_INITIALIZED;
    if (!HostAllocations().Remove(reinterpret_cast<uint64_t>(p),
                                  HostAllocTable::Kind::kRegistered)) {
      return CUDA_ERROR_HOST_MEMORY_NOT_REGISTERED;
    }
    return CUDA_SUCCESS;
  });
}

WOOLY_EXPORT CUresult CUDAAPI cuMemHostGetDevicePointer_v2(CUdeviceptr* pdptr, void* p,
                                                           unsigned int Flags) {
  WOOLY_API_BODY({
    if (CUresult r = RequireContext(); r != CUDA_SUCCESS) return r;
    if (pdptr == nullptr || Flags != 0) return CUDA_ERROR_INVALID_VALUE;
    if (!HostAllocations().Find(reinterpret_cast<uint64_t>(p), nullptr)) {
      return CUDA_ERROR_INVALID_VALUE;
    }
    // Unified addressing: the device sees pinned memory at its host address.
    // Copies to and from it always work; kernels can dereference it when it
    // is shared with woolyd (same node), see SharedHostAlloc.
    *pdptr = reinterpret_cast<CUdeviceptr>(p);
    return CUDA_SUCCESS;
  });
}

WOOLY_EXPORT CUresult CUDAAPI cuMemHostGetFlags(unsigned int* pFlags, void* p) {
  WOOLY_API_BODY({
    if (CUresult r = RequireContext(); r != CUDA_SUCCESS) return r;
    if (pFlags == nullptr) return CUDA_ERROR_INVALID_VALUE;
    HostAllocTable::Record rec;
    if (!HostAllocations().Find(reinterpret_cast<uint64_t>(p), &rec)) {
      return CUDA_ERROR_INVALID_VALUE;
    }
    *pFlags = rec.flags;
    return CUDA_SUCCESS;
  });
}

// --- stream-ordered allocator and pools

WOOLY_EXPORT CUresult CUDAAPI cuMemAllocAsync(CUdeviceptr* dptr, size_t bytesize,
                                              CUstream hStream) {
  WOOLY_API_BODY(return AllocAsync(dptr, bytesize, MemRecords().CurrentPool(), hStream, false););
}
WOOLY_EXPORT CUresult CUDAAPI cuMemAllocAsync_ptsz(CUdeviceptr* dptr, size_t bytesize,
                                                   CUstream hStream) {
  WOOLY_API_BODY(return AllocAsync(dptr, bytesize, MemRecords().CurrentPool(), hStream, true););
}

WOOLY_EXPORT CUresult CUDAAPI cuMemAllocFromPoolAsync(CUdeviceptr* dptr, size_t bytesize,
                                                      CUmemoryPool pool, CUstream hStream) {
  WOOLY_API_BODY({
    if (!Initialized()) return CUDA_ERROR_NOT_INITIALIZED;
    MemPool* p = LivePool(pool);
    if (p == nullptr) return CUDA_ERROR_INVALID_VALUE;
    return AllocAsync(dptr, bytesize, p, hStream, false);
  });
}
WOOLY_EXPORT CUresult CUDAAPI cuMemAllocFromPoolAsync_ptsz(CUdeviceptr* dptr, size_t bytesize,
                                                           CUmemoryPool pool, CUstream hStream) {
  WOOLY_API_BODY({
    if (!Initialized()) return CUDA_ERROR_NOT_INITIALIZED;
    MemPool* p = LivePool(pool);
    if (p == nullptr) return CUDA_ERROR_INVALID_VALUE;
    return AllocAsync(dptr, bytesize, p, hStream, true);
  });
}

WOOLY_EXPORT CUresult CUDAAPI cuMemFreeAsync(CUdeviceptr dptr, CUstream hStream) {
  WOOLY_API_BODY(return FreeAsync(dptr, hStream, false););
}
WOOLY_EXPORT CUresult CUDAAPI cuMemFreeAsync_ptsz(CUdeviceptr dptr, CUstream hStream) {
  WOOLY_API_BODY(return FreeAsync(dptr, hStream, true););
}

WOOLY_EXPORT CUresult CUDAAPI cuDeviceGetDefaultMemPool(CUmemoryPool* pool_out, CUdevice dev) {
  WOOLY_API_BODY({
    if (CUresult r = CheckDevice(dev); r != CUDA_SUCCESS) return r;
    if (pool_out == nullptr) return CUDA_ERROR_INVALID_VALUE;
    *pool_out = reinterpret_cast<CUmemoryPool>(MemRecords().DefaultPool());
    return CUDA_SUCCESS;
  });
}

WOOLY_EXPORT CUresult CUDAAPI cuDeviceGetMemPool(CUmemoryPool* pool, CUdevice dev) {
  WOOLY_API_BODY({
    if (CUresult r = CheckDevice(dev); r != CUDA_SUCCESS) return r;
    if (pool == nullptr) return CUDA_ERROR_INVALID_VALUE;
    *pool = reinterpret_cast<CUmemoryPool>(MemRecords().CurrentPool());
    return CUDA_SUCCESS;
  });
}

WOOLY_EXPORT CUresult CUDAAPI cuDeviceSetMemPool(CUdevice dev, CUmemoryPool pool) {
  WOOLY_API_BODY({
    if (CUresult r = CheckDevice(dev); r != CUDA_SUCCESS) return r;
    // Only the default pool or one of this process's own pools.
    MemPool* p = AsMemPool(pool);
    if (p == nullptr || !MemRecords().SetCurrentPool(p)) return CUDA_ERROR_INVALID_VALUE;
    return CUDA_SUCCESS;
  });
}

WOOLY_EXPORT CUresult CUDAAPI cuMemPoolCreate(CUmemoryPool* pool, const CUmemPoolProps* poolProps) {
  WOOLY_API_BODY(return PoolCreate(pool, poolProps););
}

WOOLY_EXPORT CUresult CUDAAPI cuMemPoolDestroy(CUmemoryPool pool) {
  WOOLY_API_BODY(return PoolDestroy(pool););
}

WOOLY_EXPORT CUresult CUDAAPI cuMemPoolSetAttribute(CUmemoryPool pool, CUmemPool_attribute attr,
                                                    void* value) {
  WOOLY_API_BODY(return PoolSetAttribute(pool, attr, value););
}

WOOLY_EXPORT CUresult CUDAAPI cuMemPoolGetAttribute(CUmemoryPool pool, CUmemPool_attribute attr,
                                                    void* value) {
  WOOLY_API_BODY(return PoolGetAttribute(pool, attr, value););
}

WOOLY_EXPORT CUresult CUDAAPI cuMemPoolTrimTo(CUmemoryPool pool, size_t minBytesToKeep) {
  WOOLY_API_BODY({
    if (!Initialized()) return CUDA_ERROR_NOT_INITIALIZED;
    MemPool* p = LivePool(pool);
    if (p == nullptr) return CUDA_ERROR_INVALID_VALUE;
    wire::Writer w;
    w.Put<uint64_t>(p->id).Put<uint64_t>(minBytesToKeep);
    return Rpc(wire::Op::kMemPoolTrimTo, w);
  });
}

// --- virtual memory management

WOOLY_EXPORT CUresult CUDAAPI cuMemGetAllocationGranularity(
    size_t* granularity, const CUmemAllocationProp* prop, CUmemAllocationGranularity_flags option) {
  WOOLY_API_BODY(return Granularity(granularity, prop, option););
}

WOOLY_EXPORT CUresult CUDAAPI cuMemAddressReserve(CUdeviceptr* ptr, size_t size, size_t alignment,
                                                  CUdeviceptr addr, unsigned long long flags) {
  WOOLY_API_BODY(return AddressReserve(ptr, size, alignment, addr, flags););
}

WOOLY_EXPORT CUresult CUDAAPI cuMemAddressFree(CUdeviceptr ptr, size_t size) {
  WOOLY_API_BODY({
    if (CUresult r = OneIdRpc(wire::Op::kMemAddressFree, ptr, size); r != CUDA_SUCCESS) return r;
    MemRecords().RemoveReservation(ptr);
    return CUDA_SUCCESS;
  });
}

WOOLY_EXPORT CUresult CUDAAPI cuMemCreate(CUmemGenericAllocationHandle* handle, size_t size,
                                          const CUmemAllocationProp* prop,
                                          unsigned long long flags) {
  WOOLY_API_BODY(return MemCreate(handle, size, prop, flags););
}

WOOLY_EXPORT CUresult CUDAAPI cuMemRelease(CUmemGenericAllocationHandle handle) {
  WOOLY_API_BODY({
    if (CUresult r = RequireContext(); r != CUDA_SUCCESS) return r;
    wire::Writer w;
    w.Put<uint64_t>(handle);
    if (CUresult r = Rpc(wire::Op::kMemRelease, w); r != CUDA_SUCCESS) return r;
    MemRecords().ReleaseHandle(handle);
    return CUDA_SUCCESS;
  });
}

WOOLY_EXPORT CUresult CUDAAPI cuMemMap(CUdeviceptr ptr, size_t size, size_t offset,
                                       CUmemGenericAllocationHandle handle,
                                       unsigned long long flags) {
  WOOLY_API_BODY(return MemMap(ptr, size, offset, handle, flags););
}

WOOLY_EXPORT CUresult CUDAAPI cuMemUnmap(CUdeviceptr ptr, size_t size) {
  WOOLY_API_BODY(return MemUnmap(ptr, size););
}

WOOLY_EXPORT CUresult CUDAAPI cuMemSetAccess(CUdeviceptr ptr, size_t size,
                                             const CUmemAccessDesc* desc, size_t count) {
  WOOLY_API_BODY(return SetAccess(ptr, size, desc, count););
}

WOOLY_EXPORT CUresult CUDAAPI cuMemGetAccess(unsigned long long* flags,
                                             const CUmemLocation* location, CUdeviceptr ptr) {
  WOOLY_API_BODY(return GetAccess(flags, location, ptr););
}

WOOLY_EXPORT CUresult CUDAAPI cuMemGetAllocationPropertiesFromHandle(
    CUmemAllocationProp* prop, CUmemGenericAllocationHandle handle) {
  WOOLY_API_BODY(return PropertiesFromHandle(prop, handle););
}

WOOLY_EXPORT CUresult CUDAAPI cuMemRetainAllocationHandle(CUmemGenericAllocationHandle* handle,
                                                          void* addr) {
  WOOLY_API_BODY(return RetainHandle(handle, addr););
}

// --- pitched allocation

WOOLY_EXPORT CUresult CUDAAPI cuMemAllocPitch_v2(CUdeviceptr* dptr, size_t* pPitch,
                                                 size_t WidthInBytes, size_t Height,
                                                 unsigned int ElementSizeBytes) {
  WOOLY_API_BODY(return AllocPitch(dptr, pPitch, WidthInBytes, Height, ElementSizeBytes););
}

// --- tensor maps: encoded by the server's driver, which checks the arguments.

WOOLY_EXPORT CUresult CUDAAPI cuTensorMapEncodeTiled(
    CUtensorMap* tensorMap, CUtensorMapDataType tensorDataType, cuuint32_t tensorRank,
    void* globalAddress, const cuuint64_t* globalDim, const cuuint64_t* globalStrides,
    const cuuint32_t* boxDim, const cuuint32_t* elementStrides, CUtensorMapInterleave interleave,
    CUtensorMapSwizzle swizzle, CUtensorMapL2promotion l2Promotion,
    CUtensorMapFloatOOBfill oobFill) {
  WOOLY_API_BODY({
    if (!Initialized()) return CUDA_ERROR_NOT_INITIALIZED;
    wire::TensorMapTiled t;
    if (tensorMap == nullptr || boxDim == nullptr ||
        !FillTensorCommon(&t, tensorDataType, tensorRank, globalAddress, globalDim, globalStrides,
                          elementStrides)) {
      return CUDA_ERROR_INVALID_VALUE;
    }
    for (cuuint32_t i = 0; i < tensorRank; ++i) t.box[i] = boxDim[i];
    t.interleave = interleave;
    t.swizzle = swizzle;
    t.l2_promotion = l2Promotion;
    t.oob_fill = oobFill;
    wire::Writer w;
    wire::PutTensorMapTiled(w, t);
    return TensorMapReply(wire::Op::kTensorMapEncodeTiled, w, tensorMap);
  });
}

WOOLY_EXPORT CUresult CUDAAPI cuTensorMapEncodeIm2col(
    CUtensorMap* tensorMap, CUtensorMapDataType tensorDataType, cuuint32_t tensorRank,
    void* globalAddress, const cuuint64_t* globalDim, const cuuint64_t* globalStrides,
    const int* pixelBoxLowerCorner, const int* pixelBoxUpperCorner, cuuint32_t channelsPerPixel,
    cuuint32_t pixelsPerColumn, const cuuint32_t* elementStrides, CUtensorMapInterleave interleave,
    CUtensorMapSwizzle swizzle, CUtensorMapL2promotion l2Promotion,
    CUtensorMapFloatOOBfill oobFill) {
  WOOLY_API_BODY({
    if (!Initialized()) return CUDA_ERROR_NOT_INITIALIZED;
    wire::TensorMapIm2col t;
    if (tensorMap == nullptr || tensorRank < 3 || pixelBoxLowerCorner == nullptr ||
        pixelBoxUpperCorner == nullptr ||
        !FillTensorCommon(&t, tensorDataType, tensorRank, globalAddress, globalDim, globalStrides,
                          elementStrides)) {
      return CUDA_ERROR_INVALID_VALUE;
    }
    for (cuuint32_t i = 0; i + 2 < tensorRank; ++i) {
      t.lower[i] = pixelBoxLowerCorner[i];
      t.upper[i] = pixelBoxUpperCorner[i];
    }
    t.channels_per_pixel = channelsPerPixel;
    t.pixels_per_column = pixelsPerColumn;
    t.interleave = interleave;
    t.swizzle = swizzle;
    t.l2_promotion = l2Promotion;
    t.oob_fill = oobFill;
    wire::Writer w;
    wire::PutTensorMapIm2col(w, t);
    return TensorMapReply(wire::Op::kTensorMapEncodeIm2col, w, tensorMap);
  });
}

WOOLY_EXPORT CUresult CUDAAPI cuTensorMapReplaceAddress(CUtensorMap* tensorMap,
                                                        void* globalAddress) {
  WOOLY_API_BODY({
    if (!Initialized()) return CUDA_ERROR_NOT_INITIALIZED;
    if (tensorMap == nullptr) return CUDA_ERROR_INVALID_VALUE;
    wire::Writer w;
    w.PutRaw(tensorMap, sizeof(*tensorMap))
        .Put<uint64_t>(reinterpret_cast<uint64_t>(globalAddress));
    return TensorMapReply(wire::Op::kTensorMapReplaceAddress, w, tensorMap);
  });
}
