// FakeBackend's memory extensions: pools, VMM, occupancy, limits and tensor
// maps on the CPU (see fake_backend.h).
#include <cuda.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <vector>

#include "absl/strings/str_cat.h"
#include "wooly/fake/fake_backend.h"
#include "wooly/server/cu_status.h"

namespace wooly::fake {
namespace {

using server::CuError;
using server::DevPtr;
using server::Handle;

// H100-like numbers for the occupancy model and VMM.
constexpr uint64_t kGranularity = 2u << 20;
constexpr int32_t kSmCount = 132;
constexpr int32_t kWarpSize = 32;
constexpr int32_t kMaxThreadsPerSm = 2048;
constexpr int32_t kMaxThreadsPerBlock = 1024;
constexpr int32_t kMaxBlocksPerSm = 32;
constexpr uint64_t kSharedPerSm = 233472;
constexpr uint64_t kReservedSharedPerBlock = 1024;
constexpr uint64_t kMaxSharedPerBlockOptin = 232448;
constexpr uint64_t kDefaultMaxDynamicShared = 48 << 10;

constexpr char kTiledMagic[4] = {'W', 'T', 'M', 'T'};
constexpr char kIm2colMagic[4] = {'W', 'T', 'M', 'I'};

bool PowerOfTwo(uint64_t v) { return v != 0 && (v & (v - 1)) == 0; }
uint64_t RoundUp(uint64_t v, uint64_t to) { return (v + to - 1) / to * to; }

// A deterministic 64-bit mix (FNV-1a) for the fake tensor-map encoding.
class Mixer {
 public:
  template <typename T>
  void Add(const T& v) {
    const auto* p = reinterpret_cast<const uint8_t*>(&v);
    for (size_t i = 0; i < sizeof(T); ++i) {
      h_ ^= p[i];
      h_ *= 0x100000001b3ull;
    }
  }
  uint64_t Next() {
    Add(++counter_);
    return h_;
  }

 private:
  uint64_t h_ = 0xcbf29ce484222325ull;
  uint64_t counter_ = 0;
};

// Header (address, magic, small fields) then the mixed rest.
server::TensorMapBytes Encode(const char (&magic)[4], uint64_t address, uint32_t data_type,
                              uint32_t rank, uint32_t interleave, uint32_t swizzle, uint32_t l2,
                              uint32_t oob, Mixer& mix) {
  server::TensorMapBytes out{};
  std::memcpy(out.data(), &address, 8);
  std::memcpy(out.data() + 8, magic, 4);
  const uint8_t small[] = {static_cast<uint8_t>(data_type),  static_cast<uint8_t>(rank),
                           static_cast<uint8_t>(interleave), static_cast<uint8_t>(swizzle),
                           static_cast<uint8_t>(l2),         static_cast<uint8_t>(oob)};
  std::memcpy(out.data() + 12, small, sizeof(small));
  for (size_t at = 24; at < out.size(); at += 8) {
    const uint64_t v = mix.Next();
    std::memcpy(out.data() + at, &v, 8);
  }
  return out;
}

absl::Status CheckTensorCommon(uint32_t data_type, uint32_t rank, uint32_t min_rank,
                               uint64_t address, const uint64_t* dims, const uint64_t* strides,
                               const uint32_t* element_strides) {
  if (data_type > CU_TENSOR_MAP_DATA_TYPE_16U6_ALIGN16B || rank < min_rank ||
      rank > wire::kMaxTensorRank) {
    return CuError(CUDA_ERROR_INVALID_VALUE, "tensor map type or rank");
  }
  if (address % 16 != 0) return CuError(CUDA_ERROR_INVALID_VALUE, "tensor address alignment");
  for (uint32_t i = 0; i < rank; ++i) {
    if (dims[i] == 0 || dims[i] > (uint64_t{1} << 32)) {
      return CuError(CUDA_ERROR_INVALID_VALUE, "tensor dimension");
    }
    if (element_strides[i] == 0 || element_strides[i] > 8) {
      return CuError(CUDA_ERROR_INVALID_VALUE, "tensor element stride");
    }
    if (i + 1 < rank && (strides[i] % 16 != 0 || strides[i] >= (uint64_t{1} << 40))) {
      return CuError(CUDA_ERROR_INVALID_VALUE, "tensor stride");
    }
  }
  return absl::OkStatus();
}

bool IsPoolIntAttribute(int32_t a) {
  return a == CU_MEMPOOL_ATTR_REUSE_FOLLOW_EVENT_DEPENDENCIES ||
         a == CU_MEMPOOL_ATTR_REUSE_ALLOW_OPPORTUNISTIC ||
         a == CU_MEMPOOL_ATTR_REUSE_ALLOW_INTERNAL_DEPENDENCIES;
}

}  // namespace

// ------------------------------------------------------------------ counters

size_t FakeBackend::live_pools() const {
  absl::MutexLock lock(&mu_);
  return pools_.size();
}
size_t FakeBackend::live_reservations() const {
  absl::MutexLock lock(&mu_);
  return reservations_.size();
}
size_t FakeBackend::live_allocation_handles() const {
  absl::MutexLock lock(&mu_);
  return physical_.size();
}
size_t FakeBackend::live_mappings() const {
  absl::MutexLock lock(&mu_);
  return mappings_.size();
}

// --------------------------------------------------------------------- pools

void FakeBackend::ReconcilePoolsLocked() {
  for (auto it = pool_allocations_.begin(); it != pool_allocations_.end();) {
    if (blocks_.contains(it->first)) {
      ++it;
      continue;
    }
    if (auto p = pools_.find(it->second.pool); p != pools_.end()) {
      p->second.used -= std::min(p->second.used, it->second.size);
    }
    it = pool_allocations_.erase(it);
  }
}

absl::StatusOr<Handle> FakeBackend::MemPoolCreate(const wire::MemPoolProps& props) {
  if (props.alloc_type != CU_MEM_ALLOCATION_TYPE_PINNED ||
      props.location_type != CU_MEM_LOCATION_TYPE_DEVICE) {
    return CuError(CUDA_ERROR_INVALID_VALUE, "pool properties");
  }
  if (props.location_id != 0) return CuError(CUDA_ERROR_INVALID_DEVICE, "pool device");
  absl::MutexLock lock(&mu_);
  const Handle h = NewHandle();
  Pool& p = pools_[h];
  p.attributes[CU_MEMPOOL_ATTR_REUSE_FOLLOW_EVENT_DEPENDENCIES] = 1;
  p.attributes[CU_MEMPOOL_ATTR_REUSE_ALLOW_OPPORTUNISTIC] = 1;
  p.attributes[CU_MEMPOOL_ATTR_REUSE_ALLOW_INTERNAL_DEPENDENCIES] = 1;
  p.attributes[CU_MEMPOOL_ATTR_RELEASE_THRESHOLD] = 0;
  return h;
}

absl::Status FakeBackend::MemPoolDestroy(Handle pool) {
  absl::MutexLock lock(&mu_);
  // Outstanding allocations stay valid, as with the driver.
  if (pools_.erase(pool) == 0) return CuError(CUDA_ERROR_INVALID_VALUE, "unknown pool");
  return absl::OkStatus();
}

absl::Status FakeBackend::MemPoolSetAttribute(Handle pool, int32_t attribute, uint64_t value) {
  absl::MutexLock lock(&mu_);
  auto it = pools_.find(pool);
  if (it == pools_.end()) return CuError(CUDA_ERROR_INVALID_VALUE, "unknown pool");
  Pool& p = it->second;
  ReconcilePoolsLocked();
  if (IsPoolIntAttribute(attribute)) {
    p.attributes[attribute] = value != 0;
    return absl::OkStatus();
  }
  switch (attribute) {
    case CU_MEMPOOL_ATTR_RELEASE_THRESHOLD:
      p.attributes[attribute] = value;
      // Releasing happens at synchronization natively; fake work is synchronous.
      if (p.used + p.cached > value) p.cached = value > p.used ? value - p.used : 0;
      return absl::OkStatus();
    case CU_MEMPOOL_ATTR_RESERVED_MEM_HIGH:
    case CU_MEMPOOL_ATTR_USED_MEM_HIGH:
      // High watermarks can only be reset (to the current value).
      if (value != 0) return CuError(CUDA_ERROR_INVALID_VALUE, "watermark reset must be 0");
      if (attribute == CU_MEMPOOL_ATTR_USED_MEM_HIGH) {
        p.used_high = p.used;
      } else {
        p.reserved_high = p.used + p.cached;
      }
      return absl::OkStatus();
    default:
      return CuError(CUDA_ERROR_INVALID_VALUE, "pool attribute is not settable");
  }
}

absl::StatusOr<uint64_t> FakeBackend::MemPoolGetAttribute(Handle pool, int32_t attribute) {
  absl::MutexLock lock(&mu_);
  auto it = pools_.find(pool);
  if (it == pools_.end()) return CuError(CUDA_ERROR_INVALID_VALUE, "unknown pool");
  ReconcilePoolsLocked();
  const Pool& p = it->second;
  switch (attribute) {
    case CU_MEMPOOL_ATTR_REUSE_FOLLOW_EVENT_DEPENDENCIES:
    case CU_MEMPOOL_ATTR_REUSE_ALLOW_OPPORTUNISTIC:
    case CU_MEMPOOL_ATTR_REUSE_ALLOW_INTERNAL_DEPENDENCIES:
    case CU_MEMPOOL_ATTR_RELEASE_THRESHOLD:
      return p.attributes.at(attribute);
    case CU_MEMPOOL_ATTR_RESERVED_MEM_CURRENT:
      return p.used + p.cached;
    case CU_MEMPOOL_ATTR_RESERVED_MEM_HIGH:
      return p.reserved_high;
    case CU_MEMPOOL_ATTR_USED_MEM_CURRENT:
      return p.used;
    case CU_MEMPOOL_ATTR_USED_MEM_HIGH:
      return p.used_high;
    default:
      return CuError(CUDA_ERROR_INVALID_VALUE, "pool attribute");
  }
}

absl::Status FakeBackend::MemPoolTrimTo(Handle pool, uint64_t min_bytes_to_keep) {
  absl::MutexLock lock(&mu_);
  auto it = pools_.find(pool);
  if (it == pools_.end()) return CuError(CUDA_ERROR_INVALID_VALUE, "unknown pool");
  ReconcilePoolsLocked();
  Pool& p = it->second;
  const uint64_t keep_cached = min_bytes_to_keep > p.used ? min_bytes_to_keep - p.used : 0;
  p.cached = std::min(p.cached, keep_cached);
  return absl::OkStatus();
}

absl::StatusOr<DevPtr> FakeBackend::MemAllocFromPoolAsync(uint64_t size, Handle pool,
                                                          Handle stream) {
  absl::MutexLock lock(&mu_);
  if (absl::Status s = CheckStream(stream); !s.ok()) return s;
  auto it = pools_.find(pool);
  if (it == pools_.end()) return CuError(CUDA_ERROR_INVALID_VALUE, "unknown pool");
  absl::StatusOr<DevPtr> p = Allocate(size, /*global=*/false);
  if (!p.ok()) return p.status();
  ReconcilePoolsLocked();
  Pool& pl = it->second;
  pl.cached -= std::min(pl.cached, size);  // reuse what earlier frees left reserved
  pl.used += size;
  pl.used_high = std::max(pl.used_high, pl.used);
  pl.reserved_high = std::max(pl.reserved_high, pl.used + pl.cached);
  pool_allocations_[*p] = PoolAllocation{pool, size};
  return *p;
}

absl::Status FakeBackend::MemFreeAsync(DevPtr ptr, Handle stream) {
  absl::MutexLock lock(&mu_);
  if (absl::Status s = CheckStream(stream); !s.ok()) return s;
  auto b = blocks_.find(ptr);
  if (b == blocks_.end() || b->second.global || b->second.mapped) {
    return CuError(CUDA_ERROR_INVALID_VALUE, "not an allocation base");
  }
  if (auto a = pool_allocations_.find(ptr); a != pool_allocations_.end()) {
    if (auto p = pools_.find(a->second.pool); p != pools_.end()) {
      Pool& pl = p->second;
      pl.used -= std::min(pl.used, a->second.size);
      pl.cached += a->second.size;
      const uint64_t threshold = pl.attributes[CU_MEMPOOL_ATTR_RELEASE_THRESHOLD];
      if (pl.used + pl.cached > threshold) {
        pl.cached = threshold > pl.used ? threshold - pl.used : 0;
      }
    }
    pool_allocations_.erase(a);
  }
  Release(ptr);
  return absl::OkStatus();
}

// ---------------------------------------------------------------------- VMM

absl::StatusOr<uint64_t> FakeBackend::MemGetAllocationGranularity(const wire::MemAllocProps& props,
                                                                  uint32_t option) {
  if (props.type != CU_MEM_ALLOCATION_TYPE_PINNED ||
      props.location_type != CU_MEM_LOCATION_TYPE_DEVICE || props.location_id != 0 ||
      (option != CU_MEM_ALLOC_GRANULARITY_MINIMUM &&
       option != CU_MEM_ALLOC_GRANULARITY_RECOMMENDED)) {
    return CuError(CUDA_ERROR_INVALID_VALUE, "granularity query");
  }
  return kGranularity;
}

absl::StatusOr<DevPtr> FakeBackend::MemAddressReserve(uint64_t size, uint64_t alignment,
                                                      DevPtr hint, uint64_t flags) {
  if (size == 0 || size % kGranularity != 0 || (alignment != 0 && !PowerOfTwo(alignment)) ||
      flags != 0) {
    return CuError(CUDA_ERROR_INVALID_VALUE, "reservation arguments");
  }
  absl::MutexLock lock(&mu_);
  // The hint is only a hint; fake addresses never repeat.
  const DevPtr base = RoundUp(next_address_, std::max(alignment, kGranularity));
  next_address_ = base + size + kFakeAlignment;
  reservations_[base] = size;
  return base;
}

absl::Status FakeBackend::MemAddressFree(DevPtr ptr, uint64_t size) {
  absl::MutexLock lock(&mu_);
  auto it = reservations_.find(ptr);
  if (it == reservations_.end() || it->second != size) {
    return CuError(CUDA_ERROR_INVALID_VALUE, "not a reservation");
  }
  reservations_.erase(it);
  return absl::OkStatus();
}

absl::StatusOr<Handle> FakeBackend::MemCreate(uint64_t size, const wire::MemAllocProps& props,
                                              uint64_t flags) {
  if (size == 0 || size % kGranularity != 0 || flags != 0 ||
      props.type != CU_MEM_ALLOCATION_TYPE_PINNED ||
      props.location_type != CU_MEM_LOCATION_TYPE_DEVICE || props.location_id != 0) {
    return CuError(CUDA_ERROR_INVALID_VALUE, "cuMemCreate arguments");
  }
  absl::MutexLock lock(&mu_);
  const uint64_t free = options_.capacity_bytes - std::min(used_bytes_, options_.capacity_bytes);
  if (size > free) return CuError(CUDA_ERROR_OUT_OF_MEMORY, "fake device memory exhausted");
  void* mem = std::calloc(size, 1);
  if (mem == nullptr) return CuError(CUDA_ERROR_OUT_OF_MEMORY, "host backing for fake memory");
  const Handle h = NewHandle();
  PhysicalAllocation& a = physical_[h];
  a.size = size;
  a.props = props;
  a.props.compression = 0;  // the fake never compresses
  a.data = std::shared_ptr<uint8_t>(static_cast<uint8_t*>(mem), std::free);
  a.refs = 1;
  used_bytes_ += size;
  return h;
}

void FakeBackend::MaybeFreePhysicalLocked(Handle handle) {
  auto it = physical_.find(handle);
  if (it == physical_.end() || it->second.refs > 0 || it->second.mappings > 0) return;
  used_bytes_ -= std::min(used_bytes_, it->second.size);
  physical_.erase(it);
}

absl::Status FakeBackend::MemRelease(Handle handle) {
  absl::MutexLock lock(&mu_);
  auto it = physical_.find(handle);
  if (it == physical_.end() || it->second.refs == 0) {
    return CuError(CUDA_ERROR_INVALID_VALUE, "unknown allocation handle");
  }
  --it->second.refs;
  MaybeFreePhysicalLocked(handle);
  return absl::OkStatus();
}

absl::StatusOr<wire::MemAllocProps> FakeBackend::MemGetAllocationPropertiesFromHandle(
    Handle handle) {
  absl::MutexLock lock(&mu_);
  auto it = physical_.find(handle);
  if (it == physical_.end() || it->second.refs == 0) {
    return CuError(CUDA_ERROR_INVALID_VALUE, "unknown allocation handle");
  }
  return it->second.props;
}

absl::StatusOr<Handle> FakeBackend::MemRetainAllocationHandle(DevPtr addr) {
  absl::MutexLock lock(&mu_);
  auto it = mappings_.upper_bound(addr);
  if (it == mappings_.begin()) return CuError(CUDA_ERROR_INVALID_VALUE, "address not mapped");
  --it;
  if (addr - it->first >= it->second.size) {
    return CuError(CUDA_ERROR_INVALID_VALUE, "address not mapped");
  }
  ++physical_.at(it->second.handle).refs;
  return it->second.handle;
}

absl::Status FakeBackend::MemMap(DevPtr ptr, uint64_t size, uint64_t offset, Handle handle,
                                 uint64_t flags) {
  absl::MutexLock lock(&mu_);
  auto h = physical_.find(handle);
  if (h == physical_.end() || h->second.refs == 0) {
    return CuError(CUDA_ERROR_INVALID_VALUE, "unknown allocation handle");
  }
  if (flags != 0 || size == 0 || size % kGranularity != 0 || offset % kGranularity != 0 ||
      offset > h->second.size || size > h->second.size - offset) {
    return CuError(CUDA_ERROR_INVALID_VALUE, "cuMemMap arguments");
  }
  auto r = reservations_.upper_bound(ptr);
  if (r == reservations_.begin()) return CuError(CUDA_ERROR_INVALID_VALUE, "not reserved");
  --r;
  if (ptr - r->first >= r->second || size > r->second - (ptr - r->first)) {
    return CuError(CUDA_ERROR_INVALID_VALUE, "not reserved");
  }
  // No overlap with another block (mappings are blocks too).
  auto next = blocks_.lower_bound(ptr);
  if (next != blocks_.end() && next->first < ptr + size) {
    return CuError(CUDA_ERROR_INVALID_VALUE, "range already mapped");
  }
  if (next != blocks_.begin()) {
    auto prev = std::prev(next);
    if (prev->first + prev->second.size > ptr) {
      return CuError(CUDA_ERROR_INVALID_VALUE, "range already mapped");
    }
  }
  Block& b = blocks_[ptr];
  b.size = size;
  b.mapped = true;
  b.data = std::shared_ptr<uint8_t>(h->second.data, h->second.data.get() + offset);
  mappings_[ptr] = Mapping{handle, size, 0};
  ++h->second.mappings;
  return absl::OkStatus();
}

absl::Status FakeBackend::MemUnmap(DevPtr ptr, uint64_t size) {
  absl::MutexLock lock(&mu_);
  auto m = mappings_.find(ptr);
  if (m == mappings_.end() || m->second.size != size) {
    return CuError(CUDA_ERROR_INVALID_VALUE, "not a whole mapping");
  }
  const Handle handle = m->second.handle;
  mappings_.erase(m);
  blocks_.erase(ptr);
  if (auto h = physical_.find(handle); h != physical_.end()) --h->second.mappings;
  MaybeFreePhysicalLocked(handle);
  return absl::OkStatus();
}

absl::Status FakeBackend::MemSetAccess(DevPtr ptr, uint64_t size,
                                       absl::Span<const server::MemAccessDesc> access) {
  absl::MutexLock lock(&mu_);
  uint64_t flags = 0;
  for (const server::MemAccessDesc& d : access) {
    if (d.location_type != CU_MEM_LOCATION_TYPE_DEVICE || d.location_id != 0) {
      return CuError(CUDA_ERROR_INVALID_DEVICE, "access location");
    }
    if (d.flags != CU_MEM_ACCESS_FLAGS_PROT_NONE && d.flags != CU_MEM_ACCESS_FLAGS_PROT_READ &&
        d.flags != CU_MEM_ACCESS_FLAGS_PROT_READWRITE) {
      return CuError(CUDA_ERROR_INVALID_VALUE, "access flags");
    }
    flags = d.flags;
  }
  // The range must be covered by whole mappings.
  std::vector<Mapping*> covered;
  for (DevPtr at = ptr; at < ptr + size;) {
    auto m = mappings_.find(at);
    if (m == mappings_.end()) return CuError(CUDA_ERROR_INVALID_VALUE, "range not mapped");
    covered.push_back(&m->second);
    at += m->second.size;
  }
  for (Mapping* m : covered) m->access = flags;
  return absl::OkStatus();
}

absl::StatusOr<uint64_t> FakeBackend::MemGetAccess(int32_t location_type, int32_t location_id,
                                                   DevPtr ptr) {
  absl::MutexLock lock(&mu_);
  if (location_type != CU_MEM_LOCATION_TYPE_DEVICE || location_id != 0) {
    return CuError(CUDA_ERROR_INVALID_DEVICE, "access location");
  }
  auto it = mappings_.upper_bound(ptr);
  if (it == mappings_.begin()) return CuError(CUDA_ERROR_INVALID_VALUE, "address not mapped");
  --it;
  if (ptr - it->first >= it->second.size) {
    return CuError(CUDA_ERROR_INVALID_VALUE, "address not mapped");
  }
  return it->second.access;
}

// ----------------------------------------------------------------- occupancy

absl::StatusOr<int32_t> FakeBackend::ActiveBlocksLocked(Handle function, int32_t block_size,
                                                        uint64_t dynamic_smem) {
  auto it = functions_.find(function);
  if (it == functions_.end()) return CuError(CUDA_ERROR_INVALID_HANDLE, "unknown function");
  if (block_size <= 0) return CuError(CUDA_ERROR_INVALID_VALUE, "block size");
  if (block_size > kMaxThreadsPerBlock) return 0;
  uint64_t max_dynamic = kDefaultMaxDynamicShared;
  if (auto a = it->second.attributes.find(CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES);
      a != it->second.attributes.end()) {
    max_dynamic = static_cast<uint64_t>(a->second);
  }
  if (dynamic_smem > max_dynamic) return 0;
  const int32_t warps = (block_size + kWarpSize - 1) / kWarpSize;
  int32_t blocks = std::min(kMaxBlocksPerSm, kMaxThreadsPerSm / (warps * kWarpSize));
  const uint64_t per_block = dynamic_smem + kReservedSharedPerBlock;
  blocks = std::min<int32_t>(blocks, static_cast<int32_t>(kSharedPerSm / per_block));
  return blocks;
}

absl::StatusOr<int32_t> FakeBackend::OccupancyMaxActiveBlocks(Handle function, int32_t block_size,
                                                              uint64_t dynamic_smem,
                                                              uint32_t flags) {
  if (flags & ~uint32_t{CU_OCCUPANCY_DISABLE_CACHING_OVERRIDE}) {
    return CuError(CUDA_ERROR_INVALID_VALUE, "occupancy flags");
  }
  absl::MutexLock lock(&mu_);
  return ActiveBlocksLocked(function, block_size, dynamic_smem);
}

absl::StatusOr<server::OccupancyBlockSize> FakeBackend::OccupancyMaxPotentialBlockSize(
    Handle function, absl::Span<const server::BlockSmem> smem_table, uint64_t dynamic_smem,
    int32_t block_size_limit, uint32_t flags) {
  if (flags & ~uint32_t{CU_OCCUPANCY_DISABLE_CACHING_OVERRIDE}) {
    return CuError(CUDA_ERROR_INVALID_VALUE, "occupancy flags");
  }
  absl::MutexLock lock(&mu_);
  if (!functions_.contains(function)) {
    return CuError(CUDA_ERROR_INVALID_HANDLE, "unknown function");
  }
  int32_t limit =
      block_size_limit > 0 ? std::min(block_size_limit, kMaxThreadsPerBlock) : kMaxThreadsPerBlock;
  auto smem_for = [&](int32_t block) -> uint64_t {
    if (smem_table.empty()) return dynamic_smem;
    for (const server::BlockSmem& e : smem_table) {
      if (e.block_size == block) return e.dynamic_smem;
    }
    return smem_table.back().dynamic_smem;
  };
  server::OccupancyBlockSize best;
  int32_t best_threads = 0;
  const int32_t aligned = (limit + kWarpSize - 1) / kWarpSize * kWarpSize;
  for (int32_t b = aligned; b > 0; b -= kWarpSize) {
    const int32_t block = std::min(limit, b);
    absl::StatusOr<int32_t> n = ActiveBlocksLocked(function, block, smem_for(block));
    if (!n.ok()) return n.status();
    if (block * *n > best_threads) {
      best_threads = block * *n;
      best.block_size = block;
      best.min_grid_size = *n * kSmCount;
    }
    if (best_threads == kMaxThreadsPerSm) break;
  }
  return best;
}

absl::StatusOr<uint64_t> FakeBackend::OccupancyAvailableDynamicSMem(Handle function,
                                                                    int32_t num_blocks,
                                                                    int32_t block_size) {
  absl::MutexLock lock(&mu_);
  if (!functions_.contains(function)) {
    return CuError(CUDA_ERROR_INVALID_HANDLE, "unknown function");
  }
  if (num_blocks <= 0 || block_size <= 0) return CuError(CUDA_ERROR_INVALID_VALUE, "arguments");
  const int32_t warps = (block_size + kWarpSize - 1) / kWarpSize;
  if (block_size > kMaxThreadsPerBlock || num_blocks > kMaxBlocksPerSm ||
      num_blocks * warps * kWarpSize > kMaxThreadsPerSm) {
    return uint64_t{0};
  }
  const uint64_t per_block = kSharedPerSm / static_cast<uint64_t>(num_blocks);
  if (per_block <= kReservedSharedPerBlock) return uint64_t{0};
  return std::min(per_block - kReservedSharedPerBlock, kMaxSharedPerBlockOptin);
}

absl::StatusOr<int32_t> FakeBackend::OccupancyMaxActiveClusters(
    Handle function, const server::LaunchConfig& config) {
  absl::MutexLock lock(&mu_);
  uint64_t cluster = 1;
  for (const server::LaunchAttribute& a : config.attributes) {
    if (a.id != CU_LAUNCH_ATTRIBUTE_CLUSTER_DIMENSION) continue;
    uint32_t dims[3];
    std::memcpy(dims, a.value, sizeof(dims));
    cluster = uint64_t{dims[0]} * dims[1] * dims[2];
  }
  if (cluster == 0 || cluster > 16) return CuError(CUDA_ERROR_INVALID_VALUE, "cluster size");
  const uint64_t threads = uint64_t{config.block[0]} * config.block[1] * config.block[2];
  if (threads == 0 || threads > kMaxThreadsPerBlock) {
    return CuError(CUDA_ERROR_INVALID_VALUE, "block size");
  }
  absl::StatusOr<int32_t> per_sm =
      ActiveBlocksLocked(function, static_cast<int32_t>(threads), config.shared_bytes);
  if (!per_sm.ok()) return per_sm.status();
  return static_cast<int32_t>(uint64_t(kSmCount) * *per_sm / cluster);
}

// -------------------------------------------------- limits and cache config

absl::StatusOr<uint64_t> FakeBackend::CtxGetLimit(int32_t limit) {
  absl::MutexLock lock(&mu_);
  if (auto it = limits_.find(limit); it != limits_.end()) return it->second;
  switch (limit) {
    case CU_LIMIT_STACK_SIZE:
      return uint64_t{1024};
    case CU_LIMIT_PRINTF_FIFO_SIZE:
      return uint64_t{1} << 20;
    case CU_LIMIT_MALLOC_HEAP_SIZE:
      return uint64_t{8} << 20;
    case CU_LIMIT_DEV_RUNTIME_SYNC_DEPTH:
      return uint64_t{2};
    case CU_LIMIT_DEV_RUNTIME_PENDING_LAUNCH_COUNT:
      return uint64_t{2048};
    case CU_LIMIT_MAX_L2_FETCH_GRANULARITY:
      return uint64_t{64};
    case CU_LIMIT_PERSISTING_L2_CACHE_SIZE:
    case CU_LIMIT_SHMEM_SIZE:
    case CU_LIMIT_CIG_ENABLED:
    case CU_LIMIT_CIG_SHMEM_FALLBACK_ENABLED:
      return uint64_t{0};
    default:
      return CuError(CUDA_ERROR_UNSUPPORTED_LIMIT, absl::StrCat("limit ", limit));
  }
}

absl::Status FakeBackend::CtxSetLimit(int32_t limit, uint64_t value) {
  absl::MutexLock lock(&mu_);
  if (limit < 0 || limit >= CU_LIMIT_MAX || limit == CU_LIMIT_SHMEM_SIZE ||
      limit == CU_LIMIT_CIG_ENABLED) {
    return CuError(CUDA_ERROR_UNSUPPORTED_LIMIT, absl::StrCat("limit ", limit));
  }
  // The driver rounds the stack size up to 16 bytes.
  limits_[limit] = limit == CU_LIMIT_STACK_SIZE ? RoundUp(value, 16) : value;
  return absl::OkStatus();
}

absl::Status FakeBackend::FuncSetCacheConfig(Handle function, int32_t config) {
  absl::MutexLock lock(&mu_);
  if (!functions_.contains(function)) {
    return CuError(CUDA_ERROR_INVALID_HANDLE, "unknown function");
  }
  if (config < CU_FUNC_CACHE_PREFER_NONE || config > CU_FUNC_CACHE_PREFER_EQUAL) {
    return CuError(CUDA_ERROR_INVALID_VALUE, "cache configuration");
  }
  return absl::OkStatus();
}

absl::Status FakeBackend::FuncSetSharedMemConfig(Handle function, int32_t config) {
  absl::MutexLock lock(&mu_);
  if (!functions_.contains(function)) {
    return CuError(CUDA_ERROR_INVALID_HANDLE, "unknown function");
  }
  if (config < CU_SHARED_MEM_CONFIG_DEFAULT_BANK_SIZE ||
      config > CU_SHARED_MEM_CONFIG_EIGHT_BYTE_BANK_SIZE) {
    return CuError(CUDA_ERROR_INVALID_VALUE, "shared memory configuration");
  }
  return absl::OkStatus();
}

// --------------------------------------------------------------- tensor maps

absl::StatusOr<server::TensorMapBytes> FakeBackend::TensorMapEncodeTiled(
    const wire::TensorMapTiled& t) {
  if (absl::Status s = CheckTensorCommon(t.data_type, t.rank, 1, t.address, t.dims, t.strides,
                                         t.element_strides);
      !s.ok()) {
    return s;
  }
  for (uint32_t i = 0; i < t.rank; ++i) {
    if (t.box[i] == 0 || t.box[i] > 256) return CuError(CUDA_ERROR_INVALID_VALUE, "box size");
  }
  Mixer mix;
  for (uint32_t i = 0; i < t.rank; ++i) {
    mix.Add(t.dims[i]);
    mix.Add(t.box[i]);
    mix.Add(t.element_strides[i]);
    if (i + 1 < t.rank) mix.Add(t.strides[i]);
  }
  return Encode(kTiledMagic, t.address, t.data_type, t.rank, t.interleave, t.swizzle,
                t.l2_promotion, t.oob_fill, mix);
}

absl::StatusOr<server::TensorMapBytes> FakeBackend::TensorMapEncodeIm2col(
    const wire::TensorMapIm2col& t) {
  if (absl::Status s = CheckTensorCommon(t.data_type, t.rank, 3, t.address, t.dims, t.strides,
                                         t.element_strides);
      !s.ok()) {
    return s;
  }
  if (t.channels_per_pixel == 0 || t.channels_per_pixel > 256 || t.pixels_per_column == 0 ||
      t.pixels_per_column > 1024) {
    return CuError(CUDA_ERROR_INVALID_VALUE, "im2col box");
  }
  Mixer mix;
  for (uint32_t i = 0; i < t.rank; ++i) {
    mix.Add(t.dims[i]);
    mix.Add(t.element_strides[i]);
    if (i + 1 < t.rank) mix.Add(t.strides[i]);
    if (i + 2 < t.rank) {
      mix.Add(t.lower[i]);
      mix.Add(t.upper[i]);
    }
  }
  mix.Add(t.channels_per_pixel);
  mix.Add(t.pixels_per_column);
  return Encode(kIm2colMagic, t.address, t.data_type, t.rank, t.interleave, t.swizzle,
                t.l2_promotion, t.oob_fill, mix);
}

absl::StatusOr<server::TensorMapBytes> FakeBackend::TensorMapReplaceAddress(
    const server::TensorMapBytes& map, DevPtr address) {
  if (std::memcmp(map.data() + 8, kTiledMagic, 4) != 0 &&
      std::memcmp(map.data() + 8, kIm2colMagic, 4) != 0) {
    return CuError(CUDA_ERROR_INVALID_VALUE, "not a tensor map");
  }
  if (address % 16 != 0) return CuError(CUDA_ERROR_INVALID_VALUE, "tensor address alignment");
  server::TensorMapBytes out = map;
  std::memcpy(out.data(), &address, 8);
  return out;
}

}  // namespace wooly::fake
