#include "wooly/fake/fake_backend.h"

#include <cuda.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "wooly/server/cu_status.h"

namespace wooly::fake {
namespace {

using server::CuError;
using server::DevPtr;
using server::Handle;

absl::Mutex g_registry_mu(absl::kConstInit);
std::map<std::string, FakeKernel>& Registry() ABSL_EXCLUSIVE_LOCKS_REQUIRED(g_registry_mu) {
  static auto* registry = new std::map<std::string, FakeKernel>();
  return *registry;
}

uint64_t SteadyNowNs() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                   std::chrono::steady_clock::now().time_since_epoch())
                                   .count());
}

// Bytes of the argument buffer the layout needs.
uint64_t ArgBytesNeeded(const std::vector<wire::ParamInfo>& params) {
  uint64_t need = 0;
  for (const wire::ParamInfo& p : params) {
    need = std::max<uint64_t>(need, uint64_t{p.offset} + p.size);
  }
  return need;
}

constexpr int32_t kDefaultMaxDynamicShared = 48 << 10;
constexpr int32_t kMaxSharedOptin = 232448;

// H100-like attribute values, indexed by CUdevice_attribute.
std::vector<int32_t> FakeAttributes() {
  std::vector<int32_t> a(CU_DEVICE_ATTRIBUTE_MAX, 0);
  auto set = [&a](CUdevice_attribute attr, int32_t v) { a[attr] = v; };
  set(CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_BLOCK, 1024);
  set(CU_DEVICE_ATTRIBUTE_MAX_BLOCK_DIM_X, 1024);
  set(CU_DEVICE_ATTRIBUTE_MAX_BLOCK_DIM_Y, 1024);
  set(CU_DEVICE_ATTRIBUTE_MAX_BLOCK_DIM_Z, 64);
  set(CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_X, 2147483647);
  set(CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_Y, 65535);
  set(CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_Z, 65535);
  set(CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK, 49152);
  set(CU_DEVICE_ATTRIBUTE_TOTAL_CONSTANT_MEMORY, 65536);
  set(CU_DEVICE_ATTRIBUTE_WARP_SIZE, 32);
  set(CU_DEVICE_ATTRIBUTE_MAX_PITCH, 2147483647);
  set(CU_DEVICE_ATTRIBUTE_MAX_REGISTERS_PER_BLOCK, 65536);
  set(CU_DEVICE_ATTRIBUTE_CLOCK_RATE, 1980000);
  set(CU_DEVICE_ATTRIBUTE_TEXTURE_ALIGNMENT, 512);
  set(CU_DEVICE_ATTRIBUTE_GPU_OVERLAP, 1);
  set(CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, 132);
  set(CU_DEVICE_ATTRIBUTE_CAN_MAP_HOST_MEMORY, 1);
  set(CU_DEVICE_ATTRIBUTE_COMPUTE_MODE, CU_COMPUTEMODE_DEFAULT);
  set(CU_DEVICE_ATTRIBUTE_MAXIMUM_TEXTURE1D_WIDTH, 131072);
  set(CU_DEVICE_ATTRIBUTE_MAXIMUM_TEXTURE2D_WIDTH, 131072);
  set(CU_DEVICE_ATTRIBUTE_MAXIMUM_TEXTURE2D_HEIGHT, 65536);
  set(CU_DEVICE_ATTRIBUTE_MAXIMUM_TEXTURE3D_WIDTH, 16384);
  set(CU_DEVICE_ATTRIBUTE_MAXIMUM_TEXTURE3D_HEIGHT, 16384);
  set(CU_DEVICE_ATTRIBUTE_MAXIMUM_TEXTURE3D_DEPTH, 16384);
  set(CU_DEVICE_ATTRIBUTE_SURFACE_ALIGNMENT, 512);
  set(CU_DEVICE_ATTRIBUTE_CONCURRENT_KERNELS, 1);
  set(CU_DEVICE_ATTRIBUTE_ECC_ENABLED, 1);
  set(CU_DEVICE_ATTRIBUTE_PCI_BUS_ID, 0x1b);
  set(CU_DEVICE_ATTRIBUTE_MEMORY_CLOCK_RATE, 2619000);
  set(CU_DEVICE_ATTRIBUTE_GLOBAL_MEMORY_BUS_WIDTH, 5120);
  set(CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE, 52428800);
  set(CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_MULTIPROCESSOR, 2048);
  set(CU_DEVICE_ATTRIBUTE_ASYNC_ENGINE_COUNT, 3);
  set(CU_DEVICE_ATTRIBUTE_UNIFIED_ADDRESSING, 1);
  set(CU_DEVICE_ATTRIBUTE_TEXTURE_PITCH_ALIGNMENT, 32);
  set(CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, 9);
  set(CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, 0);
  set(CU_DEVICE_ATTRIBUTE_STREAM_PRIORITIES_SUPPORTED, 1);
  set(CU_DEVICE_ATTRIBUTE_GLOBAL_L1_CACHE_SUPPORTED, 1);
  set(CU_DEVICE_ATTRIBUTE_LOCAL_L1_CACHE_SUPPORTED, 1);
  set(CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_MULTIPROCESSOR, 233472);
  set(CU_DEVICE_ATTRIBUTE_MAX_REGISTERS_PER_MULTIPROCESSOR, 65536);
  set(CU_DEVICE_ATTRIBUTE_MANAGED_MEMORY, 1);
  set(CU_DEVICE_ATTRIBUTE_SINGLE_TO_DOUBLE_PRECISION_PERF_RATIO, 2);
  set(CU_DEVICE_ATTRIBUTE_CONCURRENT_MANAGED_ACCESS, 1);
  set(CU_DEVICE_ATTRIBUTE_COMPUTE_PREEMPTION_SUPPORTED, 1);
  set(CU_DEVICE_ATTRIBUTE_CAN_USE_HOST_POINTER_FOR_REGISTERED_MEM, 1);
  set(CU_DEVICE_ATTRIBUTE_COOPERATIVE_LAUNCH, 1);
  set(CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN, kMaxSharedOptin);
  set(CU_DEVICE_ATTRIBUTE_HOST_REGISTER_SUPPORTED, 1);
  set(CU_DEVICE_ATTRIBUTE_VIRTUAL_MEMORY_MANAGEMENT_SUPPORTED, 1);
  set(CU_DEVICE_ATTRIBUTE_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR_SUPPORTED, 1);
  set(CU_DEVICE_ATTRIBUTE_MAX_BLOCKS_PER_MULTIPROCESSOR, 32);
  set(CU_DEVICE_ATTRIBUTE_MAX_PERSISTING_L2_CACHE_SIZE, 82837504);
  set(CU_DEVICE_ATTRIBUTE_MAX_ACCESS_POLICY_WINDOW_SIZE, 134213632);
  set(CU_DEVICE_ATTRIBUTE_RESERVED_SHARED_MEMORY_PER_BLOCK, 1024);
  set(CU_DEVICE_ATTRIBUTE_MEMORY_POOLS_SUPPORTED, 1);
  set(CU_DEVICE_ATTRIBUTE_CLUSTER_LAUNCH, 1);
  set(CU_DEVICE_ATTRIBUTE_CAN_USE_64_BIT_STREAM_MEM_OPS, 1);
  set(CU_DEVICE_ATTRIBUTE_CAN_USE_STREAM_WAIT_VALUE_NOR, 1);
  set(CU_DEVICE_ATTRIBUTE_IPC_EVENT_SUPPORTED, 1);
  set(CU_DEVICE_ATTRIBUTE_MEM_SYNC_DOMAIN_COUNT, 4);
  set(CU_DEVICE_ATTRIBUTE_TENSOR_MAP_ACCESS_SUPPORTED, 1);
  set(CU_DEVICE_ATTRIBUTE_UNIFIED_FUNCTION_POINTERS, 1);
  set(CU_DEVICE_ATTRIBUTE_NUMA_ID, -1);
  set(CU_DEVICE_ATTRIBUTE_HOST_NUMA_ID, -1);
  return a;
}

bool ValidFuncAttribute(int32_t attribute) {
  return attribute >= 0 && attribute < CU_FUNC_ATTRIBUTE_MAX;
}

}  // namespace

void RegisterFakeKernel(FakeKernel kernel) {
  absl::MutexLock lock(&g_registry_mu);
  std::string name = kernel.name;
  Registry()[name] = std::move(kernel);
}

std::optional<FakeKernel> FindFakeKernel(const std::string& name) {
  absl::MutexLock lock(&g_registry_mu);
  auto it = Registry().find(name);
  if (it == Registry().end()) return std::nullopt;
  return it->second;
}

std::vector<uint8_t> MakeFakeModuleImage(
    const std::vector<std::string>& kernels,
    const std::vector<std::pair<std::string, uint64_t>>& globals) {
  std::string text = absl::StrCat(kFakeModuleMagic, "\n");
  for (const std::string& k : kernels) absl::StrAppend(&text, "kernel ", k, "\n");
  for (const auto& [name, bytes] : globals)
    absl::StrAppend(&text, "global ", name, " ", bytes, "\n");
  std::vector<uint8_t> image(text.begin(), text.end());
  image.push_back(0);
  return image;
}

FakeBackend::FakeBackend(FakeBackendOptions options)
    : options_([&] {
        if (!options.clock_ns) options.clock_ns = SteadyNowNs;
        return std::move(options);
      }()) {}

FakeBackend::~FakeBackend() = default;

size_t FakeBackend::live_allocations() const {
  absl::MutexLock lock(&mu_);
  return std::count_if(blocks_.begin(), blocks_.end(),
                       [](const auto& b) { return !b.second.global && !b.second.mapped; });
}

uint64_t FakeBackend::bytes_allocated() const {
  absl::MutexLock lock(&mu_);
  uint64_t total = 0;
  for (const auto& [ptr, b] : blocks_) {
    if (!b.global && !b.mapped) total += b.size;
  }
  return total;
}

size_t FakeBackend::live_streams() const {
  absl::MutexLock lock(&mu_);
  return streams_.size();
}

size_t FakeBackend::live_events() const {
  absl::MutexLock lock(&mu_);
  return events_.size();
}

size_t FakeBackend::live_modules() const {
  absl::MutexLock lock(&mu_);
  return modules_.size();
}

size_t FakeBackend::live_libraries() const {
  absl::MutexLock lock(&mu_);
  return libraries_.size();
}

absl::Status FakeBackend::StickyStatus() const {
  const auto r = static_cast<CUresult>(sticky_.load(std::memory_order_acquire));
  if (r == CUDA_SUCCESS) return absl::OkStatus();
  return CuError(r, "the fake context is lost to a sticky error");
}

void FakeBackend::NoteKernelResult(const absl::Status& status) {
  if (status.ok()) return;
  const CUresult r = server::ToCuResult(status);
  if (!server::IsStickyContextError(r)) return;
  int expected = CUDA_SUCCESS;
  sticky_.compare_exchange_strong(expected, static_cast<int>(r));
}

void FakeBackend::InjectStickyError(CUresult result) {
  NoteKernelResult(CuError(result, "injected"));
}

CUresult FakeBackend::sticky_error() const {
  return static_cast<CUresult>(sticky_.load(std::memory_order_acquire));
}

uint64_t FakeBackend::context_resets() const { return resets_.load(); }

absl::Status FakeBackend::ResetContext() {
  absl::MutexLock lock(&mu_);
  // Everything lived in the lost context. The address and handle counters
  // keep counting, so nothing issued before can name anything new.
  blocks_.clear();
  used_bytes_ = 0;
  streams_.clear();
  partitions_.clear();
  partitions_with_rest_.clear();
  stream_partition_.clear();
  stream_with_rest_.clear();
  stream_priority_.clear();
  events_.clear();
  modules_.clear();
  libraries_.clear();
  kernels_.clear();
  functions_.clear();
  graph_nodes_.clear();
  graphs_.clear();
  graph_execs_.clear();
  captures_.clear();
  capturing_.clear();
  captured_events_.clear();
  pools_.clear();
  pool_allocations_.clear();
  reservations_.clear();
  physical_.clear();
  mappings_.clear();
  limits_.clear();
  sticky_.store(CUDA_SUCCESS, std::memory_order_release);
  resets_.fetch_add(1);
  return absl::OkStatus();
}

void* FakeBackend::HostPointer(DevPtr ptr, uint64_t bytes) {
  absl::MutexLock lock(&mu_);
  absl::StatusOr<uint8_t*> p = Translate(ptr, bytes);
  return p.ok() ? *p : nullptr;
}

absl::StatusOr<wire::DeviceInfo> FakeBackend::GetDeviceInfo() {
  wire::DeviceInfo info;
  info.name = options_.device_name;
  static constexpr uint8_t kUuid[16] = {0x57, 0x4f, 0x4f, 0x4c, 0x59, 0x2d, 0x46, 0x41,
                                        0x4b, 0x45, 0x2d, 0x47, 0x50, 0x55, 0x00, 0x01};
  std::memcpy(info.uuid, kUuid, sizeof(kUuid));
  info.total_mem = options_.capacity_bytes;
  info.driver_version = CUDA_VERSION;
  info.attributes = FakeAttributes();
  info.stream_priority_least = 0;
  info.stream_priority_greatest = -5;
  return info;
}

absl::StatusOr<server::MemInfo> FakeBackend::MemGetInfo() {
  if (absl::Status s = StickyStatus(); !s.ok()) return s;
  absl::MutexLock lock(&mu_);
  server::MemInfo m;
  m.total = options_.capacity_bytes;
  m.free = options_.capacity_bytes - std::min(used_bytes_, options_.capacity_bytes);
  return m;
}

absl::StatusOr<DevPtr> FakeBackend::Allocate(uint64_t size, bool global) {
  if (size == 0) return CuError(CUDA_ERROR_INVALID_VALUE, "zero-sized allocation");
  const uint64_t free = options_.capacity_bytes - std::min(used_bytes_, options_.capacity_bytes);
  if (size > free) return CuError(CUDA_ERROR_OUT_OF_MEMORY, "fake device memory exhausted");
  const uint64_t rounded = (size + kFakeAlignment - 1) / kFakeAlignment * kFakeAlignment;
  const DevPtr ptr = next_address_;
  // Leave one alignment unit of guard between blocks so that an off-by-one
  // pointer never lands in the next allocation.
  next_address_ += rounded + kFakeAlignment;
  Block& b = blocks_[ptr];
  b.size = size;
  b.global = global;
  used_bytes_ += size;
  return ptr;
}

void FakeBackend::Release(DevPtr ptr) {
  auto it = blocks_.find(ptr);
  if (it == blocks_.end()) return;
  used_bytes_ -= it->second.size;
  blocks_.erase(it);
}

absl::StatusOr<uint8_t*> FakeBackend::Translate(DevPtr ptr, uint64_t bytes,
                                                std::shared_ptr<uint8_t>* keep_alive) {
  auto it = blocks_.upper_bound(ptr);
  if (it == blocks_.begin()) return CuError(CUDA_ERROR_INVALID_VALUE, "not a device address");
  --it;
  Block& b = it->second;
  const uint64_t offset = ptr - it->first;
  if (offset >= b.size || bytes > b.size - offset) {
    return CuError(CUDA_ERROR_INVALID_VALUE, "device range out of bounds");
  }
  if (!b.data) {
    void* mem = std::calloc(b.size, 1);
    if (mem == nullptr) return CuError(CUDA_ERROR_OUT_OF_MEMORY, "host backing for fake memory");
    b.data = std::shared_ptr<uint8_t>(static_cast<uint8_t*>(mem), std::free);
  }
  if (keep_alive) *keep_alive = b.data;
  return b.data.get() + offset;
}

absl::Status FakeBackend::CheckStream(Handle stream) {
  if (stream == 0 || streams_.contains(stream)) return absl::OkStatus();
  return CuError(CUDA_ERROR_INVALID_HANDLE, "unknown stream");
}

absl::StatusOr<DevPtr> FakeBackend::MemAlloc(uint64_t size) {
  if (absl::Status s = StickyStatus(); !s.ok()) return s;
  absl::MutexLock lock(&mu_);
  return Allocate(size, /*global=*/false);
}

absl::Status FakeBackend::MemFree(DevPtr ptr) {
  if (absl::Status s = StickyStatus(); !s.ok()) return s;
  absl::MutexLock lock(&mu_);
  auto it = blocks_.find(ptr);
  if (it == blocks_.end() || it->second.global || it->second.mapped) {
    return CuError(CUDA_ERROR_INVALID_VALUE, "not an allocation base");
  }
  Release(ptr);
  return absl::OkStatus();
}

absl::Status FakeBackend::MemcpyHtoD(DevPtr dst, const void* src, uint64_t size, Handle stream,
                                     bool async) {
  if (absl::Status s = StickyStatus(); !s.ok()) return s;
  absl::MutexLock lock(&mu_);
  if (absl::Status s = CheckStream(stream); !s.ok()) return s;
  if (absl::Status s = RefuseIfCapturingLocked(stream); !s.ok()) return s;
  if (size == 0) return absl::OkStatus();
  absl::StatusOr<uint8_t*> d = Translate(dst, size);
  if (!d.ok()) return d.status();
  std::memcpy(*d, src, size);
  return absl::OkStatus();
}

absl::Status FakeBackend::MemcpyDtoH(void* dst, DevPtr src, uint64_t size, Handle stream,
                                     bool async) {
  if (absl::Status s = StickyStatus(); !s.ok()) return s;
  absl::MutexLock lock(&mu_);
  if (absl::Status s = CheckStream(stream); !s.ok()) return s;
  if (absl::Status s = RefuseIfCapturingLocked(stream); !s.ok()) return s;
  if (size == 0) return absl::OkStatus();
  absl::StatusOr<uint8_t*> s = Translate(src, size);
  if (!s.ok()) return s.status();
  std::memcpy(dst, *s, size);
  return absl::OkStatus();
}

absl::Status FakeBackend::MemcpyDtoD(DevPtr dst, DevPtr src, uint64_t size, Handle stream,
                                     bool async) {
  if (absl::Status s = StickyStatus(); !s.ok()) return s;
  absl::MutexLock lock(&mu_);
  if (absl::Status s = CheckStream(stream); !s.ok()) return s;
  if (size == 0) return absl::OkStatus();
  if (CapturingLocked(stream) != nullptr) {  // recorded, not run: fake_graphs.cc
    GraphNode n;
    n.type = CU_GRAPH_NODE_TYPE_MEMCPY;
    n.dst = dst;
    n.src = src;
    n.bytes = size;
    return CaptureNodeLocked(stream, std::move(n));
  }
  absl::StatusOr<uint8_t*> s = Translate(src, size);
  if (!s.ok()) return s.status();
  absl::StatusOr<uint8_t*> d = Translate(dst, size);
  if (!d.ok()) return d.status();
  std::memmove(*d, *s, size);
  return absl::OkStatus();
}

absl::Status FakeBackend::Memcpy3D(const server::Copy3DParams& params, Handle stream, bool async) {
  if (absl::Status s = StickyStatus(); !s.ok()) return s;
  const wire::Copy3D& g = params.geometry;
  absl::MutexLock lock(&mu_);
  if (absl::Status s = CheckStream(stream); !s.ok()) return s;
  const bool src_host = g.src_kind == static_cast<uint8_t>(wire::MemKind::kHost);
  const bool dst_host = g.dst_kind == static_cast<uint8_t>(wire::MemKind::kHost);
  if ((src_host && params.src_host == nullptr) || (dst_host && params.dst_host == nullptr)) {
    return CuError(CUDA_ERROR_INVALID_VALUE, "host side without memory");
  }
  if (g.width_bytes == 0 || g.height == 0 || g.depth == 0) return absl::OkStatus();
  if ((!src_host && g.src_pitch < g.width_bytes + g.src_x_bytes && g.height * g.depth > 1) ||
      (!dst_host && g.dst_pitch < g.width_bytes + g.dst_x_bytes && g.height * g.depth > 1)) {
    return CuError(CUDA_ERROR_INVALID_VALUE, "pitch smaller than the copied width");
  }
  if (CapturingLocked(stream) != nullptr) {  // recorded, not run: fake_graphs.cc
    if (src_host || dst_host) return RefuseIfCapturingLocked(stream);
    GraphNode n;
    n.type = CU_GRAPH_NODE_TYPE_MEMCPY;
    n.is_3d = true;
    n.copy3d = g;
    return CaptureNodeLocked(stream, std::move(n));
  }
  for (uint64_t z = 0; z < g.depth; ++z) {
    for (uint64_t y = 0; y < g.height; ++y) {
      const uint8_t* from;
      uint8_t* to;
      if (src_host) {
        from = static_cast<const uint8_t*>(params.src_host) + (z * g.height + y) * g.width_bytes;
      } else {
        const DevPtr p = g.src_ptr + g.src_x_bytes + (g.src_y + y) * g.src_pitch +
                         (g.src_z + z) * g.src_pitch * g.src_height;
        absl::StatusOr<uint8_t*> h = Translate(p, g.width_bytes);
        if (!h.ok()) return h.status();
        from = *h;
      }
      if (dst_host) {
        to = static_cast<uint8_t*>(params.dst_host) + (z * g.height + y) * g.width_bytes;
      } else {
        const DevPtr p = g.dst_ptr + g.dst_x_bytes + (g.dst_y + y) * g.dst_pitch +
                         (g.dst_z + z) * g.dst_pitch * g.dst_height;
        absl::StatusOr<uint8_t*> h = Translate(p, g.width_bytes);
        if (!h.ok()) return h.status();
        to = *h;
      }
      std::memmove(to, from, g.width_bytes);
    }
  }
  return absl::OkStatus();
}

absl::Status FakeBackend::Memset(DevPtr dst, uint64_t pitch, uint32_t value, uint32_t elem_size,
                                 uint64_t width, uint64_t height, Handle stream, bool async) {
  if (absl::Status s = StickyStatus(); !s.ok()) return s;
  absl::MutexLock lock(&mu_);
  if (absl::Status s = CheckStream(stream); !s.ok()) return s;
  if (elem_size != 1 && elem_size != 2 && elem_size != 4) {
    return CuError(CUDA_ERROR_INVALID_VALUE, "memset element size");
  }
  if (width == 0 || height == 0) return absl::OkStatus();
  const uint64_t row_bytes = width * elem_size;
  if (row_bytes / elem_size != width) return CuError(CUDA_ERROR_INVALID_VALUE, "memset width");
  if (height > 1 && pitch < row_bytes) return CuError(CUDA_ERROR_INVALID_VALUE, "memset pitch");
  if (CapturingLocked(stream) != nullptr) {  // recorded, not run: fake_graphs.cc
    GraphNode n;
    n.type = CU_GRAPH_NODE_TYPE_MEMSET;
    n.dst = dst;
    n.pitch = pitch;
    n.value = value;
    n.elem_size = elem_size;
    n.width = width;
    n.height = height;
    return CaptureNodeLocked(stream, std::move(n));
  }
  for (uint64_t y = 0; y < height; ++y) {
    absl::StatusOr<uint8_t*> row = Translate(dst + y * pitch, row_bytes);
    if (!row.ok()) return row.status();
    uint8_t* p = *row;
    switch (elem_size) {
      case 1:
        std::memset(p, static_cast<int>(value & 0xff), row_bytes);
        break;
      case 2: {
        const uint16_t v = static_cast<uint16_t>(value);
        for (uint64_t i = 0; i < width; ++i) std::memcpy(p + 2 * i, &v, 2);
        break;
      }
      default:
        for (uint64_t i = 0; i < width; ++i) std::memcpy(p + 4 * i, &value, 4);
        break;
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<Handle> FakeBackend::LoadModuleLocked(absl::Span<const uint8_t> image,
                                                     Handle library) {
  const auto* chars = reinterpret_cast<const char*>(image.data());
  const size_t len = std::find(chars, chars + image.size(), '\0') - chars;
  const absl::string_view text(chars, len);
  Module m;
  m.library = library;
  std::vector<std::pair<std::string, uint64_t>> globals;
  bool first = true;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    line = absl::StripSuffix(line, "\r");
    if (first) {
      if (line != kFakeModuleMagic) {
        return CuError(CUDA_ERROR_INVALID_IMAGE, "not a fake module image");
      }
      first = false;
      continue;
    }
    if (line.empty()) continue;
    std::vector<absl::string_view> words = absl::StrSplit(line, ' ', absl::SkipEmpty());
    if (words.size() == 2 && words[0] == "kernel") {
      std::string name(words[1]);
      if (std::find(m.kernels.begin(), m.kernels.end(), name) == m.kernels.end()) {
        m.kernels.push_back(std::move(name));
      }
    } else if (words.size() == 3 && words[0] == "global") {
      uint64_t bytes = 0;
      if (!absl::SimpleAtoi(words[2], &bytes) || bytes == 0) {
        return CuError(CUDA_ERROR_INVALID_IMAGE, "bad global size in fake module");
      }
      std::string name(words[1]);
      for (const auto& g : globals) {
        if (g.first == name) return CuError(CUDA_ERROR_INVALID_IMAGE, "duplicate global");
      }
      globals.emplace_back(std::move(name), bytes);
    } else {
      return CuError(CUDA_ERROR_INVALID_IMAGE, "bad line in fake module");
    }
  }
  if (first) return CuError(CUDA_ERROR_INVALID_IMAGE, "empty image");
  for (const auto& [name, bytes] : globals) {
    absl::StatusOr<DevPtr> p = Allocate(bytes, /*global=*/true);
    if (!p.ok()) {
      for (const auto& [n, g] : m.globals) Release(g.ptr);
      return p.status();
    }
    m.globals[name] = server::GlobalInfo{*p, bytes};
  }
  const Handle h = NewHandle();
  modules_[h] = std::move(m);
  return h;
}

void FakeBackend::UnloadModuleLocked(Handle module) {
  auto it = modules_.find(module);
  if (it == modules_.end()) return;
  for (const auto& [name, g] : it->second.globals) Release(g.ptr);
  for (const auto& [name, f] : it->second.functions) functions_.erase(f);
  modules_.erase(it);
}

absl::StatusOr<Handle> FakeBackend::GetFunctionLocked(Handle module, const std::string& name) {
  auto it = modules_.find(module);
  if (it == modules_.end()) return CuError(CUDA_ERROR_INVALID_HANDLE, "unknown module");
  Module& m = it->second;
  if (auto f = m.functions.find(name); f != m.functions.end()) return f->second;
  if (std::find(m.kernels.begin(), m.kernels.end(), name) == m.kernels.end() ||
      !FindFakeKernel(name)) {
    return CuError(CUDA_ERROR_NOT_FOUND, absl::StrCat("no kernel named ", name));
  }
  const Handle h = NewHandle();
  functions_[h] = Function{module, name, {}};
  m.functions[name] = h;
  return h;
}

absl::StatusOr<Handle> FakeBackend::ModuleLoadData(absl::Span<const uint8_t> image) {
  if (absl::Status s = StickyStatus(); !s.ok()) return s;
  absl::MutexLock lock(&mu_);
  return LoadModuleLocked(image, 0);
}

absl::Status FakeBackend::ModuleUnload(Handle module) {
  if (absl::Status s = StickyStatus(); !s.ok()) return s;
  absl::MutexLock lock(&mu_);
  auto it = modules_.find(module);
  if (it == modules_.end()) return CuError(CUDA_ERROR_INVALID_HANDLE, "unknown module");
  if (it->second.library != 0) {
    return CuError(CUDA_ERROR_NOT_PERMITTED, "module belongs to a library");
  }
  UnloadModuleLocked(module);
  return absl::OkStatus();
}

absl::StatusOr<Handle> FakeBackend::ModuleGetFunction(Handle module, const std::string& name) {
  if (absl::Status s = StickyStatus(); !s.ok()) return s;
  absl::MutexLock lock(&mu_);
  return GetFunctionLocked(module, name);
}

absl::StatusOr<server::GlobalInfo> FakeBackend::ModuleGetGlobal(Handle module,
                                                                const std::string& name) {
  if (absl::Status s = StickyStatus(); !s.ok()) return s;
  absl::MutexLock lock(&mu_);
  auto it = modules_.find(module);
  if (it == modules_.end()) return CuError(CUDA_ERROR_INVALID_HANDLE, "unknown module");
  auto g = it->second.globals.find(name);
  if (g == it->second.globals.end()) {
    return CuError(CUDA_ERROR_NOT_FOUND, absl::StrCat("no global named ", name));
  }
  return g->second;
}

absl::StatusOr<uint32_t> FakeBackend::ModuleGetFunctionCount(Handle module) {
  if (absl::Status s = StickyStatus(); !s.ok()) return s;
  absl::MutexLock lock(&mu_);
  auto it = modules_.find(module);
  if (it == modules_.end()) return CuError(CUDA_ERROR_INVALID_HANDLE, "unknown module");
  return static_cast<uint32_t>(it->second.kernels.size());
}

absl::StatusOr<Handle> FakeBackend::LibraryLoadData(absl::Span<const uint8_t> image) {
  if (absl::Status s = StickyStatus(); !s.ok()) return s;
  absl::MutexLock lock(&mu_);
  const Handle lib = NewHandle();
  absl::StatusOr<Handle> module = LoadModuleLocked(image, lib);
  if (!module.ok()) return module.status();
  libraries_[lib].module = *module;
  return lib;
}

absl::Status FakeBackend::LibraryUnload(Handle library) {
  if (absl::Status s = StickyStatus(); !s.ok()) return s;
  absl::MutexLock lock(&mu_);
  auto it = libraries_.find(library);
  if (it == libraries_.end()) return CuError(CUDA_ERROR_INVALID_HANDLE, "unknown library");
  for (const auto& [name, k] : it->second.kernels) kernels_.erase(k);
  UnloadModuleLocked(it->second.module);
  libraries_.erase(it);
  return absl::OkStatus();
}

absl::StatusOr<Handle> FakeBackend::LibraryGetKernel(Handle library, const std::string& name) {
  if (absl::Status s = StickyStatus(); !s.ok()) return s;
  absl::MutexLock lock(&mu_);
  auto it = libraries_.find(library);
  if (it == libraries_.end()) return CuError(CUDA_ERROR_INVALID_HANDLE, "unknown library");
  Library& lib = it->second;
  if (auto k = lib.kernels.find(name); k != lib.kernels.end()) return k->second;
  const Module& m = modules_.at(lib.module);
  if (std::find(m.kernels.begin(), m.kernels.end(), name) == m.kernels.end() ||
      !FindFakeKernel(name)) {
    return CuError(CUDA_ERROR_NOT_FOUND, absl::StrCat("no kernel named ", name));
  }
  const Handle h = NewHandle();
  kernels_[h] = Kernel{library, name};
  lib.kernels[name] = h;
  return h;
}

absl::StatusOr<Handle> FakeBackend::LibraryGetModule(Handle library) {
  if (absl::Status s = StickyStatus(); !s.ok()) return s;
  absl::MutexLock lock(&mu_);
  auto it = libraries_.find(library);
  if (it == libraries_.end()) return CuError(CUDA_ERROR_INVALID_HANDLE, "unknown library");
  return it->second.module;
}

absl::StatusOr<server::GlobalInfo> FakeBackend::LibraryGetGlobal(Handle library,
                                                                 const std::string& name) {
  if (absl::Status s = StickyStatus(); !s.ok()) return s;
  Handle module;
  {
    absl::MutexLock lock(&mu_);
    auto it = libraries_.find(library);
    if (it == libraries_.end()) return CuError(CUDA_ERROR_INVALID_HANDLE, "unknown library");
    module = it->second.module;
  }
  return ModuleGetGlobal(module, name);
}

absl::StatusOr<Handle> FakeBackend::KernelGetFunction(Handle kernel) {
  if (absl::Status s = StickyStatus(); !s.ok()) return s;
  absl::MutexLock lock(&mu_);
  auto it = kernels_.find(kernel);
  if (it == kernels_.end()) return CuError(CUDA_ERROR_INVALID_HANDLE, "unknown kernel");
  return GetFunctionLocked(libraries_.at(it->second.library).module, it->second.name);
}

absl::StatusOr<std::vector<wire::ParamInfo>> FakeBackend::FuncGetParamLayout(Handle function) {
  if (absl::Status s = StickyStatus(); !s.ok()) return s;
  std::string name;
  {
    absl::MutexLock lock(&mu_);
    auto it = functions_.find(function);
    if (it == functions_.end()) return CuError(CUDA_ERROR_INVALID_HANDLE, "unknown function");
    name = it->second.name;
  }
  std::optional<FakeKernel> k = FindFakeKernel(name);
  if (!k) return CuError(CUDA_ERROR_NOT_FOUND, absl::StrCat("kernel ", name, " unregistered"));
  return k->params;
}

absl::StatusOr<int32_t> FakeBackend::FuncGetAttribute(Handle function, int32_t attribute) {
  if (absl::Status s = StickyStatus(); !s.ok()) return s;
  absl::MutexLock lock(&mu_);
  auto it = functions_.find(function);
  if (it == functions_.end()) return CuError(CUDA_ERROR_INVALID_HANDLE, "unknown function");
  if (!ValidFuncAttribute(attribute)) return CuError(CUDA_ERROR_INVALID_VALUE, "attribute");
  if (auto a = it->second.attributes.find(attribute); a != it->second.attributes.end()) {
    return a->second;
  }
  switch (attribute) {
    case CU_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK:
      return 1024;
    case CU_FUNC_ATTRIBUTE_NUM_REGS:
      return 32;
    case CU_FUNC_ATTRIBUTE_PTX_VERSION:
    case CU_FUNC_ATTRIBUTE_BINARY_VERSION:
      return 90;
    case CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES:
      return kDefaultMaxDynamicShared;
    case CU_FUNC_ATTRIBUTE_PREFERRED_SHARED_MEMORY_CARVEOUT:
      return -1;
    default:
      return 0;
  }
}

absl::Status FakeBackend::FuncSetAttribute(Handle function, int32_t attribute, int32_t value) {
  if (absl::Status s = StickyStatus(); !s.ok()) return s;
  absl::MutexLock lock(&mu_);
  auto it = functions_.find(function);
  if (it == functions_.end()) return CuError(CUDA_ERROR_INVALID_HANDLE, "unknown function");
  switch (attribute) {
    case CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES:
      if (value < 0 || value > kMaxSharedOptin) {
        return CuError(CUDA_ERROR_INVALID_VALUE, "dynamic shared memory size");
      }
      break;
    case CU_FUNC_ATTRIBUTE_PREFERRED_SHARED_MEMORY_CARVEOUT:
      if (value < -1 || value > 100) return CuError(CUDA_ERROR_INVALID_VALUE, "carveout");
      break;
    case CU_FUNC_ATTRIBUTE_REQUIRED_CLUSTER_WIDTH:
    case CU_FUNC_ATTRIBUTE_REQUIRED_CLUSTER_HEIGHT:
    case CU_FUNC_ATTRIBUTE_REQUIRED_CLUSTER_DEPTH:
    case CU_FUNC_ATTRIBUTE_NON_PORTABLE_CLUSTER_SIZE_ALLOWED:
    case CU_FUNC_ATTRIBUTE_CLUSTER_SCHEDULING_POLICY_PREFERENCE:
      break;
    default:
      return CuError(CUDA_ERROR_INVALID_VALUE, "attribute is not settable");
  }
  it->second.attributes[attribute] = value;
  return absl::OkStatus();
}

absl::Status FakeBackend::LaunchKernel(Handle function, const server::LaunchConfig& config,
                                       absl::Span<const uint8_t> args) {
  if (absl::Status s = StickyStatus(); !s.ok()) return s;
  std::string name;
  Handle module = 0;
  int32_t max_dynamic_shared = kDefaultMaxDynamicShared;
  {
    absl::MutexLock lock(&mu_);
    if (absl::Status s = CheckStream(config.stream); !s.ok()) return s;
    auto it = functions_.find(function);
    if (it == functions_.end()) return CuError(CUDA_ERROR_INVALID_HANDLE, "unknown function");
    name = it->second.name;
    module = it->second.module;
    if (auto a = it->second.attributes.find(CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES);
        a != it->second.attributes.end()) {
      max_dynamic_shared = a->second;
    }
  }
  const uint64_t threads = uint64_t{config.block[0]} * config.block[1] * config.block[2];
  for (int i = 0; i < 3; ++i) {
    if (config.grid[i] == 0 || config.block[i] == 0) {
      return CuError(CUDA_ERROR_INVALID_VALUE, "zero launch dimension");
    }
  }
  if (threads > 1024 || config.block[2] > 64 || config.grid[1] > 65535 || config.grid[2] > 65535 ||
      config.grid[0] > 2147483647u) {
    return CuError(CUDA_ERROR_INVALID_VALUE, "launch dimensions exceed the device limits");
  }
  if (config.shared_bytes > static_cast<uint32_t>(max_dynamic_shared)) {
    return CuError(CUDA_ERROR_INVALID_VALUE, "too much dynamic shared memory");
  }
  std::optional<FakeKernel> kernel = FindFakeKernel(name);
  if (!kernel) return CuError(CUDA_ERROR_NOT_FOUND, absl::StrCat("kernel ", name, " unregistered"));
  if (args.size() < ArgBytesNeeded(kernel->params)) {
    return CuError(CUDA_ERROR_INVALID_VALUE, "argument buffer shorter than the kernel's layout");
  }
  {
    absl::MutexLock lock(&mu_);
    if (CapturingLocked(config.stream) != nullptr) {  // recorded, not run: fake_graphs.cc
      GraphNode n;
      n.type = CU_GRAPH_NODE_TYPE_KERNEL;
      n.kernel.function = function;
      std::copy(config.grid, config.grid + 3, n.kernel.grid);
      std::copy(config.block, config.block + 3, n.kernel.block);
      n.kernel.shared_bytes = config.shared_bytes;
      n.kernel.args.assign(args.begin(), args.end());
      return CaptureNodeLocked(config.stream, std::move(n));
    }
  }
  // Blocks the kernel touched stay alive until it returns.
  std::vector<std::shared_ptr<uint8_t>> touched;
  FakeLaunch launch;
  std::copy(config.grid, config.grid + 3, launch.grid);
  std::copy(config.block, config.block + 3, launch.block);
  launch.shared_bytes = config.shared_bytes;
  launch.args = args;
  launch.host = [this, &touched](uint64_t dptr, uint64_t bytes) -> void* {
    absl::MutexLock lock(&mu_);
    std::shared_ptr<uint8_t> keep;
    absl::StatusOr<uint8_t*> p = Translate(dptr, bytes, &keep);
    if (!p.ok()) return nullptr;
    touched.push_back(std::move(keep));
    return *p;
  };
  launch.global = [this, module, &touched](const std::string& global, uint64_t bytes) -> void* {
    absl::MutexLock lock(&mu_);
    auto m = modules_.find(module);
    if (m == modules_.end()) return nullptr;
    auto g = m->second.globals.find(global);
    if (g == m->second.globals.end() || g->second.size < bytes) return nullptr;
    std::shared_ptr<uint8_t> keep;
    absl::StatusOr<uint8_t*> p = Translate(g->second.ptr, bytes, &keep);
    if (!p.ok()) return nullptr;
    touched.push_back(std::move(keep));
    return *p;
  };
  if (!kernel->run) return absl::OkStatus();
  absl::Status result = kernel->run(launch);
  NoteKernelResult(result);  // a fault loses the context, as on a GPU
  return result;
}

absl::StatusOr<server::GpuBackend::PartitionLayout> FakeBackend::GetPartitionLayout() {
  if (options_.partition_units <= 0) return absl::UnimplementedError("no SM partitions");
  PartitionLayout layout;
  layout.sm_count = options_.sm_count;
  layout.unit_sms = options_.partition_unit_sms;
  layout.units = options_.partition_units;
  return layout;
}

absl::StatusOr<Handle> FakeBackend::PartitionCreate(int first, int count, bool with_rest) {
  if (absl::Status s = StickyStatus(); !s.ok()) return s;
  if (options_.partition_units <= 0) return absl::UnimplementedError("no SM partitions");
  if (first < 0 || count <= 0 || first + count > options_.partition_units) {
    return CuError(CUDA_ERROR_INVALID_VALUE, "partition outside the device's units");
  }
  absl::MutexLock lock(&mu_);
  const Handle h = NewHandle();
  partitions_[h] = {first, count};
  if (with_rest) partitions_with_rest_.insert(h);
  return h;
}

absl::Status FakeBackend::PartitionDestroy(Handle partition) {
  absl::MutexLock lock(&mu_);
  partitions_with_rest_.erase(partition);
  if (partitions_.erase(partition) == 0) {
    return CuError(CUDA_ERROR_INVALID_HANDLE, "unknown partition");
  }
  return absl::OkStatus();
}

absl::StatusOr<Handle> FakeBackend::PartitionStreamCreate(Handle partition, uint32_t flags,
                                                          int32_t priority) {
  if (absl::Status s = StickyStatus(); !s.ok()) return s;
  absl::MutexLock lock(&mu_);
  auto p = partitions_.find(partition);
  if (p == partitions_.end()) return CuError(CUDA_ERROR_INVALID_HANDLE, "unknown partition");
  const Handle h = NewHandle();
  streams_.insert(h);
  stream_partition_[h] = p->second;
  if (partitions_with_rest_.contains(partition)) stream_with_rest_.insert(h);
  stream_priority_[h] = priority;
  return h;
}

std::optional<std::pair<int, int>> FakeBackend::StreamPartition(Handle stream) const {
  absl::MutexLock lock(&mu_);
  auto it = stream_partition_.find(stream);
  if (it == stream_partition_.end()) return std::nullopt;
  return it->second;
}

bool FakeBackend::StreamPartitionHasRest(Handle stream) const {
  absl::MutexLock lock(&mu_);
  return stream_with_rest_.contains(stream);
}

std::optional<int32_t> FakeBackend::StreamPriority(Handle stream) const {
  absl::MutexLock lock(&mu_);
  auto it = stream_priority_.find(stream);
  if (it == stream_priority_.end()) return std::nullopt;
  return it->second;
}

size_t FakeBackend::live_partitions() const {
  absl::MutexLock lock(&mu_);
  return partitions_.size();
}

absl::StatusOr<Handle> FakeBackend::StreamCreate(uint32_t flags, int32_t priority) {
  if (absl::Status s = StickyStatus(); !s.ok()) return s;
  if (flags & ~uint32_t{CU_STREAM_NON_BLOCKING}) {
    return CuError(CUDA_ERROR_INVALID_VALUE, "stream flags");
  }
  absl::MutexLock lock(&mu_);
  const Handle h = NewHandle();
  streams_.insert(h);
  stream_priority_[h] = priority;
  return h;
}

absl::Status FakeBackend::StreamDestroy(Handle stream) {
  if (absl::Status s = StickyStatus(); !s.ok()) return s;
  absl::MutexLock lock(&mu_);
  if (streams_.erase(stream) == 0) return CuError(CUDA_ERROR_INVALID_HANDLE, "unknown stream");
  stream_partition_.erase(stream);
  stream_priority_.erase(stream);
  ForgetCaptureStreamLocked(stream);
  return absl::OkStatus();
}

absl::Status FakeBackend::StreamSynchronize(Handle stream) {
  if (absl::Status s = StickyStatus(); !s.ok()) return s;
  absl::MutexLock lock(&mu_);
  if (absl::Status s = CheckStream(stream); !s.ok()) return s;
  return RefuseIfCapturingLocked(stream);
}

absl::Status FakeBackend::StreamQuery(Handle stream) {
  if (absl::Status s = StickyStatus(); !s.ok()) return s;
  absl::MutexLock lock(&mu_);
  if (absl::Status s = CheckStream(stream); !s.ok()) return s;
  return RefuseIfCapturingLocked(stream);
}

absl::Status FakeBackend::StreamWaitEvent(Handle stream, Handle event, uint32_t flags) {
  if (absl::Status s = StickyStatus(); !s.ok()) return s;
  absl::MutexLock lock(&mu_);
  if (absl::Status s = CheckStream(stream); !s.ok()) return s;
  if (!events_.contains(event)) return CuError(CUDA_ERROR_INVALID_HANDLE, "unknown event");
  return CaptureStreamWaitLocked(stream, event, flags);
}

absl::StatusOr<Handle> FakeBackend::EventCreate(uint32_t flags) {
  if (absl::Status s = StickyStatus(); !s.ok()) return s;
  constexpr uint32_t kKnown =
      CU_EVENT_BLOCKING_SYNC | CU_EVENT_DISABLE_TIMING | CU_EVENT_INTERPROCESS;
  if (flags & ~kKnown) return CuError(CUDA_ERROR_INVALID_VALUE, "event flags");
  absl::MutexLock lock(&mu_);
  const Handle h = NewHandle();
  events_[h] = Event{flags, false, 0};
  return h;
}

absl::Status FakeBackend::EventRecord(Handle event, Handle stream, uint32_t flags) {
  if (absl::Status s = StickyStatus(); !s.ok()) return s;
  absl::MutexLock lock(&mu_);
  if (absl::Status s = CheckStream(stream); !s.ok()) return s;
  auto it = events_.find(event);
  if (it == events_.end()) return CuError(CUDA_ERROR_INVALID_HANDLE, "unknown event");
  if (CapturingLocked(stream) != nullptr) return CaptureEventRecordLocked(event, stream);
  ForgetCaptureEventLocked(event);
  it->second.recorded = true;
  it->second.time_ns = options_.clock_ns();
  return absl::OkStatus();
}

absl::Status FakeBackend::EventSynchronize(Handle event) {
  if (absl::Status s = StickyStatus(); !s.ok()) return s;
  absl::MutexLock lock(&mu_);
  if (!events_.contains(event)) return CuError(CUDA_ERROR_INVALID_HANDLE, "unknown event");
  return RefuseIfEventCapturedLocked(event);
}

absl::Status FakeBackend::EventQuery(Handle event) {
  if (absl::Status s = StickyStatus(); !s.ok()) return s;
  absl::MutexLock lock(&mu_);
  if (!events_.contains(event)) return CuError(CUDA_ERROR_INVALID_HANDLE, "unknown event");
  return RefuseIfEventCapturedLocked(event);
}

absl::StatusOr<float> FakeBackend::EventElapsedTime(Handle start, Handle end) {
  if (absl::Status s = StickyStatus(); !s.ok()) return s;
  absl::MutexLock lock(&mu_);
  auto s = events_.find(start);
  auto e = events_.find(end);
  if (s == events_.end() || e == events_.end()) {
    return CuError(CUDA_ERROR_INVALID_HANDLE, "unknown event");
  }
  if (!s->second.recorded || !e->second.recorded ||
      ((s->second.flags | e->second.flags) & CU_EVENT_DISABLE_TIMING)) {
    return CuError(CUDA_ERROR_INVALID_HANDLE, "event not recorded or without timing");
  }
  const double ns =
      static_cast<double>(static_cast<int64_t>(e->second.time_ns - s->second.time_ns));
  return static_cast<float>(ns / 1e6);
}

absl::Status FakeBackend::EventDestroy(Handle event) {
  if (absl::Status s = StickyStatus(); !s.ok()) return s;
  absl::MutexLock lock(&mu_);
  if (events_.erase(event) == 0) return CuError(CUDA_ERROR_INVALID_HANDLE, "unknown event");
  ForgetCaptureEventLocked(event);
  return absl::OkStatus();
}

}  // namespace wooly::fake
