// Occupancy queries and execution configuration: the cuOccupancy* calls
// (forwarded, answers cached per function and arguments since frameworks
// ask the same questions before every launch), function and kernel cache /
// shared-memory configuration (forwarded), context limits (forwarded; the
// server decides what may change in the shared context), and the context's
// cache and shared-memory configuration (recorded locally: they are
// context-wide preferences that must not change other clients' context).
#include <pthread.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <map>
#include <mutex>
#include <new>
#include <string>
#include <vector>

#include "api.h"
#include "driver.h"
#include "occupancy.h"

namespace wooly::client {
namespace {

// More entries than any program's working set; the cache is cleared when it
// grows past this rather than evicting.
constexpr size_t kMaxCacheEntries = 1 << 14;

struct OccupancyCache {
  std::mutex mu;
  std::map<std::string, std::array<int64_t, 2>> entries;  // guarded by mu
};

OccupancyCache* g_cache = nullptr;

OccupancyCache& Cache() {
  static std::once_flag once;
  std::call_once(once, [] {
    g_cache = new OccupancyCache();  // never destroyed: see driver.h
    pthread_atfork([] { g_cache->mu.lock(); }, [] { g_cache->mu.unlock(); },
                   [] {
                     new (&g_cache->mu) std::mutex();
                     // The child's session has other function ids.
                     g_cache->entries.clear();
                   });
  });
  return *g_cache;
}

// Cache keys: a kind letter and the request's fields, as bytes.
enum class KeyKind : uint8_t {
  kMaxActiveBlocks = 'B',
  kPotentialBlockSize = 'P',
  kAvailableSmem = 'S',
  kClusters = 'C',
  kMaxThreads = 'T',
};
std::string Key(KeyKind kind, const wire::Writer& fields) {
  std::string key(1, static_cast<char>(kind));
  key.append(reinterpret_cast<const char*>(fields.data().data()), fields.size());
  return key;
}

bool Lookup(const std::string& key, std::array<int64_t, 2>* out) {
  OccupancyCache& c = Cache();
  std::lock_guard<std::mutex> l(c.mu);
  auto it = c.entries.find(key);
  if (it == c.entries.end()) return false;
  *out = it->second;
  return true;
}

void Store(const std::string& key, std::array<int64_t, 2> value) {
  OccupancyCache& c = Cache();
  std::lock_guard<std::mutex> l(c.mu);
  if (c.entries.size() >= kMaxCacheEntries) c.entries.clear();
  c.entries[key] = value;
}

int DeviceAttribute(CUdevice_attribute a, int fallback) {
  const std::vector<int32_t>& attrs = Device().attributes;
  const int v = static_cast<size_t>(a) < attrs.size() ? attrs[a] : 0;
  return v > 0 ? v : fallback;
}

// CU_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK of a function, cached.
CUresult FuncMaxThreads(const Callable* c, int* out) {
  wire::Writer fields;
  fields.Put<uint64_t>(c->id);
  const std::string key = Key(KeyKind::kMaxThreads, fields);
  std::array<int64_t, 2> cached;
  if (Lookup(key, &cached)) {
    *out = static_cast<int>(cached[0]);
    return CUDA_SUCCESS;
  }
  wire::Writer w;
  w.Put<uint64_t>(c->id).Put<int32_t>(CU_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK);
  Reply reply;
  if (CUresult r = Rpc(wire::Op::kFuncGetAttribute, w, &reply); r != CUDA_SUCCESS) return r;
  wire::Reader rd = reply.reader();
  const int32_t v = rd.Get<int32_t>();
  if (!rd.ok()) return BadReply(wire::Op::kFuncGetAttribute);
  Store(key, {v, 0});
  *out = v;
  return CUDA_SUCCESS;
}

CUresult MaxActiveBlocks(int* num_blocks, CUfunction func, int block_size, size_t smem,
                         unsigned flags) {
  if (!Initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  Callable* c = AsCallable(func);
  if (c == nullptr) return CUDA_ERROR_INVALID_HANDLE;
  if (num_blocks == nullptr) return CUDA_ERROR_INVALID_VALUE;
  wire::Writer w;
  w.Put<uint64_t>(c->id).Put<uint32_t>(flags).Put<uint32_t>(1);
  w.Put<int32_t>(block_size).Put<uint64_t>(smem);
  const std::string key = Key(KeyKind::kMaxActiveBlocks, w);
  std::array<int64_t, 2> cached;
  if (Lookup(key, &cached)) {
    *num_blocks = static_cast<int>(cached[0]);
    return CUDA_SUCCESS;
  }
  Reply reply;
  if (CUresult r = Rpc(wire::Op::kOccupancyMaxActiveBlocks, w, &reply); r != CUDA_SUCCESS) {
    return r;
  }
  wire::Reader rd = reply.reader();
  const int32_t n = rd.Get<int32_t>();
  if (!rd.ok()) return BadReply(wire::Op::kOccupancyMaxActiveBlocks);
  Store(key, {n, 0});
  *num_blocks = n;
  return CUDA_SUCCESS;
}

CUresult MaxPotentialBlockSize(int* min_grid, int* block_size, CUfunction func,
                               CUoccupancyB2DSize smem_for_block, size_t smem, int limit,
                               unsigned flags) {
  if (!Initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  Callable* c = AsCallable(func);
  if (c == nullptr) return CUDA_ERROR_INVALID_HANDLE;
  if (min_grid == nullptr || block_size == nullptr) return CUDA_ERROR_INVALID_VALUE;
  // The callback runs here, in the application's process: it is evaluated
  // for every block size the search tries (multiples of the warp size below
  // the effective limit, and the limit itself), and the table goes along.
  std::vector<std::pair<int32_t, uint64_t>> table;
  if (smem_for_block != nullptr) {
    int func_max = 0;
    if (CUresult r = FuncMaxThreads(c, &func_max); r != CUDA_SUCCESS) return r;
    const int warp = DeviceAttribute(CU_DEVICE_ATTRIBUTE_WARP_SIZE, 32);
    const int dev_max = DeviceAttribute(CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_BLOCK, 1024);
    int effective = limit > 0 ? std::min(limit, dev_max) : dev_max;
    if (func_max > 0) effective = std::min(effective, func_max);
    const int aligned = (effective + warp - 1) / warp * warp;
    for (int b = aligned; b > 0; b -= warp) {
      const int size = std::min(effective, b);
      table.emplace_back(size, static_cast<uint64_t>(smem_for_block(size)));
    }
  }
  wire::Writer w;
  w.Put<uint64_t>(c->id).Put<uint32_t>(flags).Put<int32_t>(limit);
  w.Put<uint64_t>(smem_for_block != nullptr ? 0 : smem);
  w.Put<uint32_t>(static_cast<uint32_t>(table.size()));
  for (const auto& [b, s] : table) w.Put<int32_t>(b).Put<uint64_t>(s);
  const std::string key = Key(KeyKind::kPotentialBlockSize, w);
  std::array<int64_t, 2> cached;
  if (Lookup(key, &cached)) {
    *min_grid = static_cast<int>(cached[0]);
    *block_size = static_cast<int>(cached[1]);
    return CUDA_SUCCESS;
  }
  Reply reply;
  if (CUresult r = Rpc(wire::Op::kOccupancyMaxPotentialBlockSize, w, &reply); r != CUDA_SUCCESS) {
    return r;
  }
  wire::Reader rd = reply.reader();
  const int32_t grid = rd.Get<int32_t>();
  const int32_t block = rd.Get<int32_t>();
  if (!rd.ok()) return BadReply(wire::Op::kOccupancyMaxPotentialBlockSize);
  Store(key, {grid, block});
  *min_grid = grid;
  *block_size = block;
  return CUDA_SUCCESS;
}

CUresult AvailableDynamicSmem(size_t* out, CUfunction func, int num_blocks, int block_size) {
  if (!Initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  Callable* c = AsCallable(func);
  if (c == nullptr) return CUDA_ERROR_INVALID_HANDLE;
  if (out == nullptr) return CUDA_ERROR_INVALID_VALUE;
  wire::Writer w;
  w.Put<uint64_t>(c->id).Put<int32_t>(num_blocks).Put<int32_t>(block_size);
  const std::string key = Key(KeyKind::kAvailableSmem, w);
  std::array<int64_t, 2> cached;
  if (Lookup(key, &cached)) {
    *out = static_cast<size_t>(cached[0]);
    return CUDA_SUCCESS;
  }
  Reply reply;
  if (CUresult r = Rpc(wire::Op::kOccupancyAvailableDynamicSMem, w, &reply); r != CUDA_SUCCESS) {
    return r;
  }
  wire::Reader rd = reply.reader();
  const uint64_t bytes = rd.Get<uint64_t>();
  if (!rd.ok()) return BadReply(wire::Op::kOccupancyAvailableDynamicSMem);
  Store(key, {static_cast<int64_t>(bytes), 0});
  *out = static_cast<size_t>(bytes);
  return CUDA_SUCCESS;
}

CUresult MaxActiveClusters(int* clusters, CUfunction func, const CUlaunchConfig* config) {
  if (!Initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  Callable* c = AsCallable(func);
  if (c == nullptr) return CUDA_ERROR_INVALID_HANDLE;
  if (clusters == nullptr || config == nullptr ||
      (config->numAttrs > 0 && config->attrs == nullptr)) {
    return CUDA_ERROR_INVALID_VALUE;
  }
  // Sent like a launch minus stream and arguments (kLaunchKernel's layout).
  wire::Writer w;
  w.Put<uint64_t>(c->id);
  w.Put<uint32_t>(config->gridDimX).Put<uint32_t>(config->gridDimY).Put<uint32_t>(config->gridDimZ);
  w.Put<uint32_t>(config->blockDimX)
      .Put<uint32_t>(config->blockDimY)
      .Put<uint32_t>(config->blockDimZ);
  w.Put<uint32_t>(config->sharedMemBytes).Put<uint32_t>(config->numAttrs);
  for (unsigned i = 0; i < config->numAttrs; ++i) {
    static_assert(sizeof(config->attrs[i].value) == 64);
    w.Put<uint32_t>(static_cast<uint32_t>(config->attrs[i].id)).PutRaw(&config->attrs[i].value, 64);
  }
  const std::string key = Key(KeyKind::kClusters, w);
  std::array<int64_t, 2> cached;
  if (Lookup(key, &cached)) {
    *clusters = static_cast<int>(cached[0]);
    return CUDA_SUCCESS;
  }
  Reply reply;
  if (CUresult r = Rpc(wire::Op::kOccupancyMaxActiveClusters, w, &reply); r != CUDA_SUCCESS) {
    return r;
  }
  wire::Reader rd = reply.reader();
  const int32_t n = rd.Get<int32_t>();
  if (!rd.ok()) return BadReply(wire::Op::kOccupancyMaxActiveClusters);
  Store(key, {n, 0});
  *clusters = n;
  return CUDA_SUCCESS;
}

CUresult FuncConfig(wire::Op op, uint64_t id, int32_t config) {
  wire::Writer w;
  w.Put<uint64_t>(id).Put<int32_t>(config);
  CUresult r = Rpc(op, w);
  // The preference may move the shared-memory carveout, hence occupancy.
  if (r == CUDA_SUCCESS) InvalidateOccupancyCache();
  return r;
}

// The context's cache preference; recorded, never applied to the shared
// context (per-function preferences are forwarded instead).
std::atomic<int> g_ctx_cache_config{CU_FUNC_CACHE_PREFER_NONE};
std::atomic<int> g_ctx_shared_config{CU_SHARED_MEM_CONFIG_DEFAULT_BANK_SIZE};

}  // namespace

namespace {
// Per CUlimit: the last answer (-1: ask woolyd), valid in `generation`.
// What woolyd reports for a limit changes only through this client's own
// cuCtxSetLimit, except that another client may raise a context-wide
// resource limit and the driver grows the stack for a kernel that needs
// more. A client that has not set the limit then keeps seeing the value it
// first read, as it would on a GPU of its own.
struct LimitCache {
  static constexpr int kLimits = 16;
  std::atomic<int64_t> value[kLimits];
  std::atomic<uint64_t> generation{0};
  LimitCache() {
    for (auto& v : value) v.store(-1);
  }
};
LimitCache& Limits() {
  static LimitCache* c = new LimitCache();  // never destroyed (see driver.h)
  return *c;
}

}  // namespace

void InvalidateLimitCache() {
  for (auto& v : Limits().value) v.store(-1, std::memory_order_relaxed);
}

void InvalidateOccupancyCache() {
  OccupancyCache& c = Cache();
  std::lock_guard<std::mutex> l(c.mu);
  c.entries.clear();
}

}  // namespace wooly::client

using namespace wooly::client;  // NOLINT: the C entry points live at global scope
namespace wire = ::wooly::wire;

// --- occupancy

WOOLY_EXPORT CUresult CUDAAPI cuOccupancyMaxActiveBlocksPerMultiprocessor(int* numBlocks,
                                                                          CUfunction func,
                                                                          int blockSize,
                                                                          size_t dynamicSMemSize) {
  WOOLY_API_BODY(return MaxActiveBlocks(numBlocks, func, blockSize, dynamicSMemSize, 0););
}

WOOLY_EXPORT CUresult CUDAAPI cuOccupancyMaxActiveBlocksPerMultiprocessorWithFlags(
    int* numBlocks, CUfunction func, int blockSize, size_t dynamicSMemSize, unsigned int flags) {
  WOOLY_API_BODY(return MaxActiveBlocks(numBlocks, func, blockSize, dynamicSMemSize, flags););
}

WOOLY_EXPORT CUresult CUDAAPI cuOccupancyMaxPotentialBlockSize(
    int* minGridSize, int* blockSize, CUfunction func,
    CUoccupancyB2DSize blockSizeToDynamicSMemSize, size_t dynamicSMemSize, int blockSizeLimit) {
  WOOLY_API_BODY(return MaxPotentialBlockSize(minGridSize, blockSize, func,
                                              blockSizeToDynamicSMemSize, dynamicSMemSize,
                                              blockSizeLimit, 0););
}

WOOLY_EXPORT CUresult CUDAAPI cuOccupancyMaxPotentialBlockSizeWithFlags(
    int* minGridSize, int* blockSize, CUfunction func,
    CUoccupancyB2DSize blockSizeToDynamicSMemSize, size_t dynamicSMemSize, int blockSizeLimit,
    unsigned int flags) {
  WOOLY_API_BODY(return MaxPotentialBlockSize(minGridSize, blockSize, func,
                                              blockSizeToDynamicSMemSize, dynamicSMemSize,
                                              blockSizeLimit, flags););
}

WOOLY_EXPORT CUresult CUDAAPI cuOccupancyAvailableDynamicSMemPerBlock(size_t* dynamicSmemSize,
                                                                      CUfunction func,
                                                                      int numBlocks,
                                                                      int blockSize) {
  WOOLY_API_BODY(return AvailableDynamicSmem(dynamicSmemSize, func, numBlocks, blockSize););
}

WOOLY_EXPORT CUresult CUDAAPI cuOccupancyMaxActiveClusters(int* numClusters, CUfunction func,
                                                           const CUlaunchConfig* config) {
  WOOLY_API_BODY(return MaxActiveClusters(numClusters, func, config););
}

// --- function and kernel configuration

WOOLY_EXPORT CUresult CUDAAPI cuFuncSetCacheConfig(CUfunction hfunc, CUfunc_cache config) {
  WOOLY_API_BODY({
    if (!Initialized()) return CUDA_ERROR_NOT_INITIALIZED;
    Callable* c = AsCallable(hfunc);
    if (c == nullptr) return CUDA_ERROR_INVALID_HANDLE;
    return FuncConfig(wire::Op::kFuncSetCacheConfig, c->id, config);
  });
}

WOOLY_EXPORT CUresult CUDAAPI cuKernelSetCacheConfig(CUkernel kernel, CUfunc_cache config,
                                                     CUdevice dev) {
  WOOLY_API_BODY({
    if (!Initialized()) return CUDA_ERROR_NOT_INITIALIZED;
    if (dev != 0) return CUDA_ERROR_INVALID_DEVICE;
    Kernel* k = AsKernel(kernel);
    if (k == nullptr) return CUDA_ERROR_INVALID_HANDLE;
    return FuncConfig(wire::Op::kFuncSetCacheConfig, k->id, config);
  });
}

WOOLY_EXPORT CUresult CUDAAPI cuFuncSetSharedMemConfig(CUfunction hfunc, CUsharedconfig config) {
  WOOLY_API_BODY({
    if (!Initialized()) return CUDA_ERROR_NOT_INITIALIZED;
    Callable* c = AsCallable(hfunc);
    if (c == nullptr) return CUDA_ERROR_INVALID_HANDLE;
    return FuncConfig(wire::Op::kFuncSetSharedMemConfig, c->id, config);
  });
}

// --- context limits and configuration

WOOLY_EXPORT CUresult CUDAAPI cuCtxGetLimit(size_t* pvalue, CUlimit limit) {
  WOOLY_API_BODY({
    if (CUresult r = RequireContext(); r != CUDA_SUCCESS) return r;
    if (pvalue == nullptr) return CUDA_ERROR_INVALID_VALUE;
    LimitCache& cache = Limits();
    const bool cacheable = limit >= 0 && limit < LimitCache::kLimits;
    if (cache.generation.load(std::memory_order_acquire) != ForkGeneration()) {
      InvalidateLimitCache();  // a forked child's session starts afresh
      cache.generation.store(ForkGeneration(), std::memory_order_release);
    }
    if (cacheable) {
      if (const int64_t v = cache.value[limit].load(std::memory_order_relaxed); v >= 0) {
        *pvalue = static_cast<size_t>(v);
        return CUDA_SUCCESS;
      }
    }
    wire::Writer w;
    w.Put<int32_t>(limit);
    Reply reply;
    if (CUresult r = Rpc(wire::Op::kCtxGetLimit, w, &reply); r != CUDA_SUCCESS) return r;
    wire::Reader rd = reply.reader();
    const uint64_t v = rd.Get<uint64_t>();
    if (!rd.ok()) return BadReply(wire::Op::kCtxGetLimit);
    if (cacheable && v <= static_cast<uint64_t>(INT64_MAX)) {
      cache.value[limit].store(static_cast<int64_t>(v), std::memory_order_relaxed);
    }
    *pvalue = static_cast<size_t>(v);
    return CUDA_SUCCESS;
  });
}

WOOLY_EXPORT CUresult CUDAAPI cuCtxSetLimit(CUlimit limit, size_t value) {
  WOOLY_API_BODY({
    if (CUresult r = RequireContext(); r != CUDA_SUCCESS) return r;
    wire::Writer w;
    w.Put<int32_t>(limit).Put<uint64_t>(value);
    const CUresult r = Rpc(wire::Op::kCtxSetLimit, w);
    // The driver may round what was set: read it back next time.
    InvalidateLimitCache();
    return r;
  });
}

WOOLY_EXPORT CUresult CUDAAPI cuCtxGetCacheConfig(CUfunc_cache* pconfig) {
  WOOLY_API_BODY({
    if (CUresult r = RequireContext(); r != CUDA_SUCCESS) return r;
    if (pconfig == nullptr) return CUDA_ERROR_INVALID_VALUE;
    *pconfig = static_cast<CUfunc_cache>(g_ctx_cache_config.load());
    return CUDA_SUCCESS;
  });
}

WOOLY_EXPORT CUresult CUDAAPI cuCtxSetCacheConfig(CUfunc_cache config) {
  WOOLY_API_BODY({
    if (CUresult r = RequireContext(); r != CUDA_SUCCESS) return r;
    if (config < CU_FUNC_CACHE_PREFER_NONE || config > CU_FUNC_CACHE_PREFER_EQUAL) {
      return CUDA_ERROR_INVALID_VALUE;
    }
    g_ctx_cache_config.store(config);
    return CUDA_SUCCESS;
  });
}

WOOLY_EXPORT CUresult CUDAAPI cuCtxGetSharedMemConfig(CUsharedconfig* pConfig) {
  WOOLY_API_BODY({
    if (CUresult r = RequireContext(); r != CUDA_SUCCESS) return r;
    if (pConfig == nullptr) return CUDA_ERROR_INVALID_VALUE;
    // Since Maxwell the bank size is fixed at four bytes, and that is what
    // the driver reports whatever was set.
    if (DeviceAttribute(CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, 0) >= 5) {
      *pConfig = CU_SHARED_MEM_CONFIG_FOUR_BYTE_BANK_SIZE;
    } else {
      *pConfig = static_cast<CUsharedconfig>(g_ctx_shared_config.load());
    }
    return CUDA_SUCCESS;
  });
}

WOOLY_EXPORT CUresult CUDAAPI cuCtxSetSharedMemConfig(CUsharedconfig config) {
  WOOLY_API_BODY({
    if (CUresult r = RequireContext(); r != CUDA_SUCCESS) return r;
    if (config < CU_SHARED_MEM_CONFIG_DEFAULT_BANK_SIZE ||
        config > CU_SHARED_MEM_CONFIG_EIGHT_BYTE_BANK_SIZE) {
      return CUDA_ERROR_INVALID_VALUE;
    }
    g_ctx_shared_config.store(config);
    return CUDA_SUCCESS;
  });
}
