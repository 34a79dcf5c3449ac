// CudaBackend: GpuBackend on the real NVIDIA driver, loaded with dlopen.
//
// Every entry point is resolved once through cuGetProcAddress_v2 at CUDA
// 13.0 semantics into DriverApi; the typed pointers below are exactly the ABI
// versions the driver returns for (name, 13000, CU_GET_PROC_ADDRESS_DEFAULT)
// (tests/data/proc_address_real.tsv records a real driver's answers).
#include "wooly/server/cuda_backend.h"

#include <cuda.h>
#include <cudaTypedefs.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "spdlog/spdlog.h"
#include "wooly/server/cu_status.h"

namespace wooly::server {
namespace {

constexpr int kProcAddressVersion = 13000;
constexpr char kDefaultLibcuda[] = "libcuda.so.1";
constexpr char kFallbackLibcuda[] = "/usr/local/nvidia/lib64/libcuda.so.1";
// A string every build of Wooly's client library contains (the name of its
// server environment variable) and NVIDIA's driver does not.
constexpr char kWoolyClientMarker[] = "WOOLY_SERVER";

// Copies at least this large go through pinned staging buffers.
constexpr uint64_t kStagingThreshold = 1u << 20;
// Each staging slot holds two buffers of this size, used alternately so the
// host memcpy of one chunk overlaps the DMA of the next.
constexpr uint64_t kStagingBufferBytes = 32u << 20;
// At most this many slots exist; a copy that finds none free goes direct.
constexpr int kMaxStagingSlots = 4;

// (member/symbol, PFN type at CUDA 13.0).
// clang-format off
#define WOOLY_CUDA_ENTRY_POINTS(X)                                             \
  X(cuInit, PFN_cuInit_v2000)                                                  \
  X(cuGetErrorName, PFN_cuGetErrorName_v6000)                                  \
  X(cuDriverGetVersion, PFN_cuDriverGetVersion_v2020)                          \
  X(cuDeviceGet, PFN_cuDeviceGet_v2000)                                        \
  X(cuDeviceGetName, PFN_cuDeviceGetName_v2000)                                \
  X(cuDeviceGetUuid, PFN_cuDeviceGetUuid_v11040)                               \
  X(cuDeviceTotalMem, PFN_cuDeviceTotalMem_v3020)                              \
  X(cuDeviceGetAttribute, PFN_cuDeviceGetAttribute_v2000)                      \
  X(cuDevicePrimaryCtxRetain, PFN_cuDevicePrimaryCtxRetain_v7000)              \
  X(cuDevicePrimaryCtxRelease, PFN_cuDevicePrimaryCtxRelease_v11000)           \
  X(cuDevicePrimaryCtxReset, PFN_cuDevicePrimaryCtxReset_v11000)               \
  X(cuCtxSetCurrent, PFN_cuCtxSetCurrent_v4000)                                \
  X(cuCtxGetStreamPriorityRange, PFN_cuCtxGetStreamPriorityRange_v5050)        \
  X(cuCtxSynchronize, PFN_cuCtxSynchronize_v13000)                             \
  X(cuMemGetInfo, PFN_cuMemGetInfo_v3020)                                      \
  X(cuMemAlloc, PFN_cuMemAlloc_v3020)                                          \
  X(cuMemFree, PFN_cuMemFree_v3020)                                            \
  X(cuMemHostAlloc, PFN_cuMemHostAlloc_v2020)                                  \
  X(cuMemFreeHost, PFN_cuMemFreeHost_v2000)                                    \
  X(cuMemHostRegister, PFN_cuMemHostRegister_v6050)                            \
  X(cuMemHostUnregister, PFN_cuMemHostUnregister_v4000)                        \
  X(cuMemcpyHtoD, PFN_cuMemcpyHtoD_v3020)                                      \
  X(cuMemcpyDtoH, PFN_cuMemcpyDtoH_v3020)                                      \
  X(cuMemcpyDtoD, PFN_cuMemcpyDtoD_v3020)                                      \
  X(cuMemcpyHtoDAsync, PFN_cuMemcpyHtoDAsync_v3020)                            \
  X(cuMemcpyDtoHAsync, PFN_cuMemcpyDtoHAsync_v3020)                            \
  X(cuMemcpyDtoDAsync, PFN_cuMemcpyDtoDAsync_v3020)                            \
  X(cuMemcpy3D, PFN_cuMemcpy3D_v3020)                                          \
  X(cuMemcpy3DAsync, PFN_cuMemcpy3DAsync_v3020)                                \
  X(cuMemsetD8, PFN_cuMemsetD8_v3020)                                          \
  X(cuMemsetD16, PFN_cuMemsetD16_v3020)                                        \
  X(cuMemsetD32, PFN_cuMemsetD32_v3020)                                        \
  X(cuMemsetD2D8, PFN_cuMemsetD2D8_v3020)                                      \
  X(cuMemsetD2D16, PFN_cuMemsetD2D16_v3020)                                    \
  X(cuMemsetD2D32, PFN_cuMemsetD2D32_v3020)                                    \
  X(cuMemsetD8Async, PFN_cuMemsetD8Async_v3020)                                \
  X(cuMemsetD16Async, PFN_cuMemsetD16Async_v3020)                              \
  X(cuMemsetD32Async, PFN_cuMemsetD32Async_v3020)                              \
  X(cuMemsetD2D8Async, PFN_cuMemsetD2D8Async_v3020)                            \
  X(cuMemsetD2D16Async, PFN_cuMemsetD2D16Async_v3020)                          \
  X(cuMemsetD2D32Async, PFN_cuMemsetD2D32Async_v3020)                          \
  X(cuModuleLoadData, PFN_cuModuleLoadData_v2000)                              \
  X(cuModuleUnload, PFN_cuModuleUnload_v2000)                                  \
  X(cuModuleGetFunction, PFN_cuModuleGetFunction_v2000)                        \
  X(cuModuleGetGlobal, PFN_cuModuleGetGlobal_v3020)                            \
  X(cuModuleGetFunctionCount, PFN_cuModuleGetFunctionCount_v12040)             \
  X(cuLibraryLoadData, PFN_cuLibraryLoadData_v12000)                           \
  X(cuLibraryUnload, PFN_cuLibraryUnload_v12000)                               \
  X(cuLibraryGetKernel, PFN_cuLibraryGetKernel_v12000)                         \
  X(cuLibraryGetModule, PFN_cuLibraryGetModule_v12000)                         \
  X(cuLibraryGetGlobal, PFN_cuLibraryGetGlobal_v12000)                         \
  X(cuKernelGetFunction, PFN_cuKernelGetFunction_v12000)                       \
  X(cuKernelGetParamInfo, PFN_cuKernelGetParamInfo_v12040)                     \
  X(cuKernelGetAttribute, PFN_cuKernelGetAttribute_v12000)                     \
  X(cuKernelSetAttribute, PFN_cuKernelSetAttribute_v12000)                     \
  X(cuFuncGetParamInfo, PFN_cuFuncGetParamInfo_v12040)                         \
  X(cuFuncGetAttribute, PFN_cuFuncGetAttribute_v2020)                          \
  X(cuFuncSetAttribute, PFN_cuFuncSetAttribute_v9000)                          \
  X(cuLaunchKernelEx, PFN_cuLaunchKernelEx_v11060)                             \
  X(cuStreamCreateWithPriority, PFN_cuStreamCreateWithPriority_v5050)          \
  X(cuStreamDestroy, PFN_cuStreamDestroy_v4000)                                \
  X(cuStreamSynchronize, PFN_cuStreamSynchronize_v2000)                        \
  X(cuStreamQuery, PFN_cuStreamQuery_v2000)                                    \
  X(cuStreamWaitEvent, PFN_cuStreamWaitEvent_v3020)                            \
  X(cuEventCreate, PFN_cuEventCreate_v2000)                                    \
  X(cuEventRecord, PFN_cuEventRecord_v2000)                                    \
  X(cuEventRecordWithFlags, PFN_cuEventRecordWithFlags_v11010)                 \
  X(cuEventSynchronize, PFN_cuEventSynchronize_v2000)                          \
  X(cuEventQuery, PFN_cuEventQuery_v2000)                                      \
  X(cuEventElapsedTime, PFN_cuEventElapsedTime_v12080)                         \
  X(cuEventDestroy, PFN_cuEventDestroy_v4000)
// clang-format on

// The memory extensions' entry points (pools, VMM, occupancy, limits, tensor
// maps). Optional: a driver without one still serves everything else, and
// the methods that need it answer CUDA_ERROR_NOT_SUPPORTED.
// clang-format off
#define WOOLY_CUDA_MEMORY_EXT_ENTRY_POINTS(X)                                          \
  X(cuMemPoolCreate, PFN_cuMemPoolCreate_v11020)                                       \
  X(cuMemPoolDestroy, PFN_cuMemPoolDestroy_v11020)                                     \
  X(cuMemPoolSetAttribute, PFN_cuMemPoolSetAttribute_v11020)                           \
  X(cuMemPoolGetAttribute, PFN_cuMemPoolGetAttribute_v11020)                           \
  X(cuMemPoolTrimTo, PFN_cuMemPoolTrimTo_v11020)                                       \
  X(cuMemAllocFromPoolAsync, PFN_cuMemAllocFromPoolAsync_v11020)                       \
  X(cuMemFreeAsync, PFN_cuMemFreeAsync_v11020)                                         \
  X(cuMemGetAllocationGranularity, PFN_cuMemGetAllocationGranularity_v10020)           \
  X(cuMemAddressReserve, PFN_cuMemAddressReserve_v10020)                               \
  X(cuMemAddressFree, PFN_cuMemAddressFree_v10020)                                     \
  X(cuMemCreate, PFN_cuMemCreate_v10020)                                               \
  X(cuMemRelease, PFN_cuMemRelease_v10020)                                             \
  X(cuMemGetAllocationPropertiesFromHandle,                                            \
    PFN_cuMemGetAllocationPropertiesFromHandle_v10020)                                 \
  X(cuMemRetainAllocationHandle, PFN_cuMemRetainAllocationHandle_v11000)               \
  X(cuMemMap, PFN_cuMemMap_v10020)                                                     \
  X(cuMemUnmap, PFN_cuMemUnmap_v10020)                                                 \
  X(cuMemSetAccess, PFN_cuMemSetAccess_v10020)                                         \
  X(cuMemGetAccess, PFN_cuMemGetAccess_v10020)                                         \
  X(cuOccupancyMaxActiveBlocksPerMultiprocessorWithFlags,                              \
    PFN_cuOccupancyMaxActiveBlocksPerMultiprocessorWithFlags_v7000)                    \
  X(cuOccupancyMaxPotentialBlockSizeWithFlags,                                         \
    PFN_cuOccupancyMaxPotentialBlockSizeWithFlags_v7000)                               \
  X(cuOccupancyAvailableDynamicSMemPerBlock,                                           \
    PFN_cuOccupancyAvailableDynamicSMemPerBlock_v10020)                                \
  X(cuOccupancyMaxActiveClusters, PFN_cuOccupancyMaxActiveClusters_v11070)             \
  X(cuCtxGetLimit, PFN_cuCtxGetLimit_v3010)                                            \
  X(cuCtxSetLimit, PFN_cuCtxSetLimit_v3010)                                            \
  X(cuFuncSetCacheConfig, PFN_cuFuncSetCacheConfig_v3000)                              \
  X(cuFuncSetSharedMemConfig, PFN_cuFuncSetSharedMemConfig_v4020)                      \
  X(cuTensorMapEncodeTiled, PFN_cuTensorMapEncodeTiled_v12000)                         \
  X(cuTensorMapEncodeIm2col, PFN_cuTensorMapEncodeIm2col_v12000)                       \
  X(cuTensorMapReplaceAddress, PFN_cuTensorMapReplaceAddress_v12000)
// clang-format on

// Stream capture and graphs (the GpuBackend graph methods).
// clang-format off
#define WOOLY_CUDA_GRAPH_ENTRY_POINTS(X)                                                 \
  X(cuStreamBeginCapture, PFN_cuStreamBeginCapture_v10010)                               \
  X(cuStreamEndCapture, PFN_cuStreamEndCapture_v10000)                                   \
  X(cuStreamGetCaptureInfo, PFN_cuStreamGetCaptureInfo_v12030)                           \
  X(cuStreamUpdateCaptureDependencies, PFN_cuStreamUpdateCaptureDependencies_v12030)     \
  X(cuGraphCreate, PFN_cuGraphCreate_v10000)                                             \
  X(cuGraphDestroy, PFN_cuGraphDestroy_v10000)                                           \
  X(cuGraphInstantiateWithFlags, PFN_cuGraphInstantiateWithFlags_v11040)                 \
  X(cuGraphExecDestroy, PFN_cuGraphExecDestroy_v10000)                                   \
  X(cuGraphLaunch, PFN_cuGraphLaunch_v10000)                                             \
  X(cuGraphUpload, PFN_cuGraphUpload_v11010)                                             \
  X(cuGraphGetNodes, PFN_cuGraphGetNodes_v10000)                                         \
  X(cuGraphNodeGetType, PFN_cuGraphNodeGetType_v10000)                                   \
  X(cuGraphNodeGetDependencies, PFN_cuGraphNodeGetDependencies_v12030)                   \
  X(cuGraphKernelNodeGetParams, PFN_cuGraphKernelNodeGetParams_v12000)                   \
  X(cuGraphKernelNodeSetParams, PFN_cuGraphKernelNodeSetParams_v12000)                   \
  X(cuGraphAddKernelNode, PFN_cuGraphAddKernelNode_v12000)                               \
  X(cuGraphExecKernelNodeSetParams, PFN_cuGraphExecKernelNodeSetParams_v12000)           \
  X(cuGraphDebugDotPrint, PFN_cuGraphDebugDotPrint_v11030)
// clang-format on

// SM partitions through green contexts (optional: CUDA 12.4+ drivers).
// clang-format off
#define WOOLY_CUDA_PARTITION_ENTRY_POINTS(X)                                             \
  X(cuDeviceGetDevResource, PFN_cuDeviceGetDevResource_v12040)                           \
  X(cuDevSmResourceSplitByCount, PFN_cuDevSmResourceSplitByCount_v12040)                 \
  X(cuDevResourceGenerateDesc, PFN_cuDevResourceGenerateDesc_v12040)                     \
  X(cuGreenCtxCreate, PFN_cuGreenCtxCreate_v12040)                                       \
  X(cuGreenCtxDestroy, PFN_cuGreenCtxDestroy_v12040)                                     \
  X(cuGreenCtxStreamCreate, PFN_cuGreenCtxStreamCreate_v12050)
// clang-format on

// The driver's entry points. Filled once, read-only afterwards.
struct DriverApi {
#define WOOLY_DECLARE_ENTRY(name, type) type name = nullptr;
  WOOLY_CUDA_ENTRY_POINTS(WOOLY_DECLARE_ENTRY)
  WOOLY_CUDA_GRAPH_ENTRY_POINTS(WOOLY_DECLARE_ENTRY)
  WOOLY_CUDA_PARTITION_ENTRY_POINTS(WOOLY_DECLARE_ENTRY)
  bool HasGraphs() const {
#define WOOLY_GRAPH_ENTRY_PRESENT(name, type) &&name != nullptr
    return true WOOLY_CUDA_GRAPH_ENTRY_POINTS(WOOLY_GRAPH_ENTRY_PRESENT);
#undef WOOLY_GRAPH_ENTRY_PRESENT
  }
  WOOLY_CUDA_MEMORY_EXT_ENTRY_POINTS(WOOLY_DECLARE_ENTRY)
#undef WOOLY_DECLARE_ENTRY
};

static_assert(sizeof(CUlaunchAttributeValue) == sizeof(LaunchAttribute::value),
              "LaunchAttribute must carry a whole CUlaunchAttributeValue");

// Returns the Check()ed status of a failed driver call from the enclosing
// member function.
#define WOOLY_RETURN_IF_CU(expr, fn)                                  \
  do {                                                                \
    if (const CUresult wooly_r_ = (expr); wooly_r_ != CUDA_SUCCESS) { \
      return Check(wooly_r_, fn);                                     \
    }                                                                 \
  } while (0)

template <typename T>
T FromHandle(Handle h) {
  return reinterpret_cast<T>(static_cast<uintptr_t>(h));
}
template <typename T>
Handle ToHandle(T p) {
  return static_cast<Handle>(reinterpret_cast<uintptr_t>(p));
}
CUstream Stream(Handle h) { return FromHandle<CUstream>(h); }

// A copy of `image` at 8-byte alignment followed by NUL bytes: the driver
// reads fatbin/ELF headers as structs and PTX as a C string.
std::vector<uint64_t> AlignedImage(absl::Span<const uint8_t> image) {
  std::vector<uint64_t> out(image.size() / sizeof(uint64_t) + 2, 0);
  if (!image.empty()) std::memcpy(out.data(), image.data(), image.size());
  return out;
}

// True when the file at `path` is a Wooly client library rather than the
// driver. Reads the file through a private mapping; false on any I/O error.
bool IsWoolyClientLibrary(const char* path) {
  const int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  struct stat st;
  bool found = false;
  if (::fstat(fd, &st) == 0 && st.st_size > 0) {
    void* p = ::mmap(nullptr, static_cast<size_t>(st.st_size), PROT_READ, MAP_PRIVATE, fd, 0);
    if (p != MAP_FAILED) {
      found = ::memmem(p, static_cast<size_t>(st.st_size), kWoolyClientMarker,
                       sizeof(kWoolyClientMarker) - 1) != nullptr;
      ::munmap(p, static_cast<size_t>(st.st_size));
    }
  }
  ::close(fd);
  return found;
}

// The file a loaded symbol comes from, or "" when unknown.
std::string FileOf(const void* symbol) {
  Dl_info info;
  if (symbol != nullptr && ::dladdr(symbol, &info) != 0 && info.dli_fname != nullptr) {
    return info.dli_fname;
  }
  return "";
}

struct LoadedDriver {
  void* handle = nullptr;
  std::string path;  // the file actually mapped
  PFN_cuGetProcAddress_v12000 get_proc = nullptr;
};

// dlopens the first usable driver among the candidates.
absl::StatusOr<LoadedDriver> OpenDriver() {
  // woolyd does not link libcuda, so a cu* symbol already visible in the
  // global scope can only have been preloaded; the driver we dlopen would
  // then bind to it instead of to itself.
  if (void* pre = ::dlsym(RTLD_DEFAULT, "cuGetProcAddress_v2"); pre != nullptr) {
    const char* preload = std::getenv("LD_PRELOAD");
    return absl::FailedPreconditionError(
        absl::StrCat("a CUDA driver library is already loaded into this process (", FileOf(pre),
                     preload ? absl::StrCat(", LD_PRELOAD=", preload) : std::string(),
                     "); the CUDA backend must load the real driver itself: start woolyd without "
                     "LD_PRELOAD"));
  }

  std::vector<std::string> candidates;
  if (const char* env = std::getenv(kEnvRealLibcuda); env != nullptr && *env != '\0') {
    candidates.emplace_back(env);
  } else {
    candidates.emplace_back(kDefaultLibcuda);
    candidates.emplace_back(kFallbackLibcuda);
  }

  std::vector<std::string> tried;
  for (const std::string& name : candidates) {
    ::dlerror();
    void* h = ::dlopen(name.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (h == nullptr) {
      const char* err = ::dlerror();
      tried.push_back(err ? err : absl::StrCat(name, ": dlopen failed"));
      continue;
    }
    void* sym = ::dlsym(h, "cuGetProcAddress_v2");
    std::string file = FileOf(sym);
    if (file.empty()) file = name;
    if (sym == nullptr) {
      tried.push_back(absl::StrCat(file, ": no cuGetProcAddress_v2 (driver older than CUDA 12.0)"));
      ::dlclose(h);
      continue;
    }
    if (IsWoolyClientLibrary(file.c_str())) {
      tried.push_back(absl::StrCat(file, ": this is Wooly's client library, not the driver"));
      ::dlclose(h);
      continue;
    }
    LoadedDriver d;
    d.handle = h;
    d.path = std::move(file);
    d.get_proc = reinterpret_cast<PFN_cuGetProcAddress_v12000>(sym);
    return d;
  }
  std::string msg =
      "no usable CUDA driver (set " + std::string(kEnvRealLibcuda) + " to the real libcuda.so.1):";
  for (const std::string& t : tried) absl::StrAppend(&msg, " [", t, "]");
  return absl::FailedPreconditionError(msg);
}

absl::Status ResolveAll(const LoadedDriver& d, DriverApi* api) {
  auto resolve = [&](const char* name, void** out) -> absl::Status {
    CUdriverProcAddressQueryResult found = CU_GET_PROC_ADDRESS_SYMBOL_NOT_FOUND;
    const CUresult r =
        d.get_proc(name, out, kProcAddressVersion, CU_GET_PROC_ADDRESS_DEFAULT, &found);
    if (r == CUDA_ERROR_STUB_LIBRARY) {
      return CuError(r, absl::StrCat(d.path,
                                     " is the CUDA stub library, not a driver "
                                     "(cuGetProcAddress_v2 returned CUDA_ERROR_STUB_LIBRARY)"));
    }
    if (r != CUDA_SUCCESS) {
      return CuError(r, absl::StrCat("cuGetProcAddress_v2(", name, ") in ", d.path));
    }
    if (found != CU_GET_PROC_ADDRESS_SUCCESS || *out == nullptr) {
      return CuError(CUDA_ERROR_NOT_FOUND,
                     absl::StrCat("the driver ", d.path, " does not provide ", name, " at CUDA ",
                                  kProcAddressVersion, " (driver too old?)"));
    }
    return absl::OkStatus();
  };
#define WOOLY_RESOLVE_ENTRY(name, type)                                                 \
  if (absl::Status s = resolve(#name, reinterpret_cast<void**>(&api->name)); !s.ok()) { \
    return s;                                                                           \
  }
  WOOLY_CUDA_ENTRY_POINTS(WOOLY_RESOLVE_ENTRY)
#undef WOOLY_RESOLVE_ENTRY
  // Optional entry points: a missing one is logged (once, all together) and
  // left null.
  std::vector<std::string> missing;
#define WOOLY_RESOLVE_OPTIONAL_ENTRY(name, type)                                        \
  if (absl::Status s = resolve(#name, reinterpret_cast<void**>(&api->name)); !s.ok()) { \
    api->name = nullptr;                                                                \
    missing.push_back(#name);                                                           \
  }
  WOOLY_CUDA_MEMORY_EXT_ENTRY_POINTS(WOOLY_RESOLVE_OPTIONAL_ENTRY)
  // Without these (a driver older than 12.3) only graphs are unavailable.
  WOOLY_CUDA_GRAPH_ENTRY_POINTS(WOOLY_RESOLVE_OPTIONAL_ENTRY)
  // Without these (a driver older than 12.5) the scheduler has no partitions.
  WOOLY_CUDA_PARTITION_ENTRY_POINTS(WOOLY_RESOLVE_OPTIONAL_ENTRY)
#undef WOOLY_RESOLVE_OPTIONAL_ENTRY
  if (!missing.empty()) {
    spdlog::warn(
        "cuda backend: the driver {} lacks {} optional entry points ({}); calls that "
        "need them answer CUDA_ERROR_NOT_SUPPORTED",
        d.path, missing.size(), absl::StrJoin(missing, ", "));
  }
  return absl::OkStatus();
}

// --- Helpers of the memory extensions.

// Returns CUDA_ERROR_NOT_SUPPORTED from the enclosing method when the driver
// did not provide the optional entry point `name`.
#define WOOLY_REQUIRE_ENTRY(name)                                                       \
  do {                                                                                  \
    if (cu_.name == nullptr) {                                                          \
      return CuError(CUDA_ERROR_NOT_SUPPORTED, #name " is not provided by the driver"); \
    }                                                                                   \
  } while (0)

// Pool attributes whose C type is int; the others are cuuint64_t.
bool PoolAttributeIsInt(int32_t attribute) {
  return attribute == CU_MEMPOOL_ATTR_REUSE_FOLLOW_EVENT_DEPENDENCIES ||
         attribute == CU_MEMPOOL_ATTR_REUSE_ALLOW_OPPORTUNISTIC ||
         attribute == CU_MEMPOOL_ATTR_REUSE_ALLOW_INTERNAL_DEPENDENCIES;
}

CUmemAllocationProp ToAllocationProp(const wire::MemAllocProps& props) {
  CUmemAllocationProp p;
  std::memset(&p, 0, sizeof(p));
  p.type = static_cast<CUmemAllocationType>(props.type);
  p.requestedHandleTypes = static_cast<CUmemAllocationHandleType>(props.handle_types);
  p.location.type = static_cast<CUmemLocationType>(props.location_type);
  p.location.id = props.location_id;
  p.allocFlags.compressionType = props.compression;
  p.allocFlags.gpuDirectRDMACapable = props.rdma_capable;
  p.allocFlags.usage = props.usage;
  return p;
}

TensorMapBytes ToBytes(const CUtensorMap& map) {
  TensorMapBytes out;
  static_assert(sizeof(map) == std::tuple_size_v<TensorMapBytes>);
  std::memcpy(out.data(), &map, out.size());
  return out;
}

// The client's blockSizeToDynamicSMemSize, as the table it evaluated, for
// the duration of one cuOccupancyMaxPotentialBlockSizeWithFlags call on
// this thread.
thread_local absl::Span<const BlockSmem> t_smem_table;

size_t CUDA_CB SmemFromTable(int block_size) {
  // The table has every size the search tries; for any other size, use the
  // entry of the next larger block size, else the first entry (the client
  // lists the largest block size first).
  const BlockSmem* best = nullptr;
  for (const BlockSmem& e : t_smem_table) {
    if (e.block_size == block_size) return static_cast<size_t>(e.dynamic_smem);
    if (e.block_size > block_size && (best == nullptr || e.block_size < best->block_size)) {
      best = &e;
    }
  }
  if (best == nullptr && !t_smem_table.empty()) best = &t_smem_table.front();
  return best ? static_cast<size_t>(best->dynamic_smem) : 0;
}

// Two pinned buffers and their completion events; see Staged*().
struct StagingSlot {
  void* buf[2] = {nullptr, nullptr};
  CUevent done[2] = {nullptr, nullptr};
  // Whether work that reads or writes buf[i] may still be in flight.
  bool busy[2] = {false, false};
};

// The driver's launch configuration for `config`; `attrs` holds the
// attributes the result points at and must outlive it.
CUlaunchConfig ToLaunchConfig(const LaunchConfig& config, CUstream stream,
                              std::vector<CUlaunchAttribute>* attrs) {
  attrs->assign(config.attributes.size(), CUlaunchAttribute{});
  for (size_t i = 0; i < attrs->size(); ++i) {
    (*attrs)[i].id = static_cast<CUlaunchAttributeID>(config.attributes[i].id);
    std::memcpy(&(*attrs)[i].value, config.attributes[i].value, sizeof((*attrs)[i].value));
  }
  CUlaunchConfig cfg;
  std::memset(&cfg, 0, sizeof(cfg));
  cfg.gridDimX = config.grid[0];
  cfg.gridDimY = config.grid[1];
  cfg.gridDimZ = config.grid[2];
  cfg.blockDimX = config.block[0];
  cfg.blockDimY = config.block[1];
  cfg.blockDimZ = config.block[2];
  cfg.sharedMemBytes = config.shared_bytes;
  cfg.hStream = stream;
  cfg.attrs = attrs->empty() ? nullptr : attrs->data();
  cfg.numAttrs = static_cast<unsigned int>(attrs->size());
  return cfg;
}

class CudaBackend final : public GpuBackend {
 public:
  CudaBackend(LoadedDriver driver, const DriverApi& api, CUdevice device, CUcontext ctx)
      : driver_(std::move(driver)), cu_(api), device_(device), ctx_(ctx) {}

  ~CudaBackend() override {
    // The driver stays loaded: unloading it while its worker threads run is
    // not safe, and the process is usually exiting anyway.
    const CUcontext ctx = ctx_.load();
    if (ctx == nullptr) return;  // a failed reset left nothing retained
    if (cu_.cuCtxSetCurrent(ctx) == CUDA_SUCCESS) {
      absl::MutexLock lock(&mu_);
      for (auto& slot : free_staging_) DestroySlot(*slot);
    }
    cu_.cuDevicePrimaryCtxRelease(device_);
  }

  // Reads the device description once; the context must be current.
  absl::Status Init() {
    WOOLY_RETURN_IF_CU(cu_.cuCtxSetCurrent(ctx_.load()), "cuCtxSetCurrent");
    char name[256] = {};
    WOOLY_RETURN_IF_CU(cu_.cuDeviceGetName(name, sizeof(name) - 1, device_), "cuDeviceGetName");
    info_.name = name;
    CUuuid uuid;
    WOOLY_RETURN_IF_CU(cu_.cuDeviceGetUuid(&uuid, device_), "cuDeviceGetUuid");
    static_assert(sizeof(uuid.bytes) == sizeof(info_.uuid));
    std::memcpy(info_.uuid, uuid.bytes, sizeof(info_.uuid));
    size_t total = 0;
    WOOLY_RETURN_IF_CU(cu_.cuDeviceTotalMem(&total, device_), "cuDeviceTotalMem");
    info_.total_mem = total;
    int version = 0;
    WOOLY_RETURN_IF_CU(cu_.cuDriverGetVersion(&version), "cuDriverGetVersion");
    info_.driver_version = version;
    info_.attributes.assign(CU_DEVICE_ATTRIBUTE_MAX, 0);
    for (int a = 1; a < CU_DEVICE_ATTRIBUTE_MAX; ++a) {
      int v = 0;
      // Attributes this driver does not know (or retired ones) read as 0.
      if (cu_.cuDeviceGetAttribute(&v, static_cast<CUdevice_attribute>(a), device_) ==
          CUDA_SUCCESS) {
        info_.attributes[a] = v;
      }
    }
    int least = 0, greatest = 0;
    WOOLY_RETURN_IF_CU(cu_.cuCtxGetStreamPriorityRange(&least, &greatest),
                       "cuCtxGetStreamPriorityRange");
    info_.stream_priority_least = least;
    info_.stream_priority_greatest = greatest;
    spdlog::info("cuda backend: driver {} ({}), device {} \"{}\", {} MiB", version, driver_.path,
                 static_cast<int>(device_), info_.name, total >> 20);
    return absl::OkStatus();
  }

  std::string Name() const override { return "cuda"; }

  absl::Status BindThread() override {
    const CUcontext ctx = ctx_.load();
    if (ctx == nullptr) {
      return CuError(CUDA_ERROR_INVALID_CONTEXT, "no GPU context (a reset failed)");
    }
    return Check(cu_.cuCtxSetCurrent(ctx), "cuCtxSetCurrent");
  }

  absl::Status ResetContext() override {
    // The driver frees everything the old context held with it: memory,
    // streams, events, modules, graphs, and the pinned staging buffers. What
    // pointed into it is forgotten here, without driver calls.
    std::set<Handle> partitions;
    {
      absl::MutexLock lock(&mu_);
      free_staging_.clear();
      staging_slots_ = 0;
      staging_disabled_ = false;
      kernels_.clear();
      partitions.swap(partitions_);
    }
    // Green contexts hold the primary context; they go first (an error only
    // means the fault took them already).
    for (Handle p : partitions) (void)cu_.cuGreenCtxDestroy(FromHandle<CUgreenCtx>(p));
    WOOLY_RETURN_IF_CU(cu_.cuDevicePrimaryCtxReset(device_), "cuDevicePrimaryCtxReset");
    // A reset does not drop this backend's reference: release it, then
    // retain again, which creates the new context.
    if (const CUcontext old = ctx_.exchange(nullptr); old != nullptr) {
      if (CUresult r = cu_.cuDevicePrimaryCtxRelease(device_); r != CUDA_SUCCESS) {
        spdlog::warn("cuda backend: releasing the reset primary context: {}",
                     Check(r, "cuDevicePrimaryCtxRelease").ToString());
      }
    }
    CUcontext ctx = nullptr;
    WOOLY_RETURN_IF_CU(cu_.cuDevicePrimaryCtxRetain(&ctx, device_), "cuDevicePrimaryCtxRetain");
    ctx_.store(ctx);
    WOOLY_RETURN_IF_CU(cu_.cuCtxSetCurrent(ctx), "cuCtxSetCurrent");
    // Libraries, pools and VMM objects belong to the process or the device
    // rather than to the context, so they may have survived it: release them
    // now, before anyone can be handed a handle equal to a stale one. An
    // error only means the reset took the object already.
    std::set<Handle> libraries, pools;
    std::map<DevPtr, uint64_t> mappings, reservations;
    std::map<Handle, int> handles;
    {
      absl::MutexLock lock(&mu_);
      libraries.swap(libraries_);
      pools.swap(pools_);
      mappings.swap(mappings_);
      reservations.swap(reservations_);
      handles.swap(handles_);
    }
    int leftovers = 0;
    auto release = [&leftovers](CUresult r) { leftovers += r == CUDA_SUCCESS; };
    if (cu_.cuMemUnmap != nullptr) {
      for (const auto& [ptr, size] : mappings) release(cu_.cuMemUnmap(ptr, size));
    }
    if (cu_.cuMemRelease != nullptr) {
      for (const auto& [h, refs] : handles) {
        for (int i = 0; i < refs; ++i) release(cu_.cuMemRelease(h));
      }
    }
    if (cu_.cuMemAddressFree != nullptr) {
      for (const auto& [ptr, size] : reservations) release(cu_.cuMemAddressFree(ptr, size));
    }
    if (cu_.cuMemPoolDestroy != nullptr) {
      for (Handle p : pools) release(cu_.cuMemPoolDestroy(FromHandle<CUmemoryPool>(p)));
    }
    for (Handle l : libraries) release(cu_.cuLibraryUnload(FromHandle<CUlibrary>(l)));
    // The new context must work before it is handed out.
    size_t free = 0, total = 0;
    WOOLY_RETURN_IF_CU(cu_.cuMemGetInfo(&free, &total), "cuMemGetInfo (after the reset)");
    WOOLY_RETURN_IF_CU(cu_.cuCtxSynchronize(ctx), "cuCtxSynchronize (after the reset)");
    spdlog::warn(
        "cuda backend: primary context of device {} reset; released {} objects that outlived "
        "it (libraries, pools, VMM); {} MiB free",
        static_cast<int>(device_), leftovers, free >> 20);
    return absl::OkStatus();
  }

  absl::StatusOr<wire::DeviceInfo> GetDeviceInfo() override { return info_; }

  absl::StatusOr<MemInfo> MemGetInfo() override {
    size_t free = 0, total = 0;
    WOOLY_RETURN_IF_CU(cu_.cuMemGetInfo(&free, &total), "cuMemGetInfo");
    return MemInfo{free, total};
  }

  // --- Memory.

  absl::StatusOr<DevPtr> MemAlloc(uint64_t size) override {
    CUdeviceptr p = 0;
    WOOLY_RETURN_IF_CU(cu_.cuMemAlloc(&p, size), "cuMemAlloc");
    return static_cast<DevPtr>(p);
  }

  absl::Status MemFree(DevPtr ptr) override { return Check(cu_.cuMemFree(ptr), "cuMemFree"); }

  absl::Status MemcpyHtoD(DevPtr dst, const void* src, uint64_t size, Handle stream,
                          bool async) override {
    if (size >= kStagingThreshold) {
      if (std::unique_ptr<StagingSlot> slot = TakeSlot()) {
        absl::Status s = StagedHtoD(*slot, dst, src, size, Stream(stream), async);
        ReturnSlot(std::move(slot));
        return s;
      }
    }
    // From pageable memory the driver has staged the source before returning.
    WOOLY_RETURN_IF_CU(cu_.cuMemcpyHtoDAsync(dst, src, size, Stream(stream)), "cuMemcpyHtoDAsync");
    return SyncUnlessAsync(stream, async);
  }

  absl::Status MemcpyDtoH(void* dst, DevPtr src, uint64_t size, Handle stream,
                          bool async) override {
    if (size >= kStagingThreshold) {
      if (std::unique_ptr<StagingSlot> slot = TakeSlot()) {
        absl::Status s = StagedDtoH(*slot, dst, src, size, Stream(stream));
        ReturnSlot(std::move(slot));
        return s;
      }
    }
    WOOLY_RETURN_IF_CU(cu_.cuMemcpyDtoHAsync(dst, src, size, Stream(stream)), "cuMemcpyDtoHAsync");
    // The interface promises the bytes are in `dst` on return.
    return Check(cu_.cuStreamSynchronize(Stream(stream)), "cuStreamSynchronize");
  }

  absl::Status HostRegister(void* ptr, uint64_t size) override {
    return Check(cu_.cuMemHostRegister(ptr, size,
                                       CU_MEMHOSTREGISTER_PORTABLE | CU_MEMHOSTREGISTER_DEVICEMAP),
                 "cuMemHostRegister");
  }

  absl::Status HostUnregister(void* ptr) override {
    return Check(cu_.cuMemHostUnregister(ptr), "cuMemHostUnregister");
  }

  absl::Status MemcpyHtoDRegistered(DevPtr dst, const void* src, uint64_t size, Handle stream,
                                    bool async) override {
    WOOLY_RETURN_IF_CU(cu_.cuMemcpyHtoDAsync(dst, src, size, Stream(stream)), "cuMemcpyHtoDAsync");
    return SyncUnlessAsync(stream, async);
  }

  absl::Status MemcpyDtoHRegistered(void* dst, DevPtr src, uint64_t size, Handle stream,
                                    bool async) override {
    WOOLY_RETURN_IF_CU(cu_.cuMemcpyDtoHAsync(dst, src, size, Stream(stream)), "cuMemcpyDtoHAsync");
    return SyncUnlessAsync(stream, async);
  }

  absl::Status MemcpyDtoD(DevPtr dst, DevPtr src, uint64_t size, Handle stream,
                          bool async) override {
    WOOLY_RETURN_IF_CU(cu_.cuMemcpyDtoDAsync(dst, src, size, Stream(stream)), "cuMemcpyDtoDAsync");
    return SyncUnlessAsync(stream, async);
  }

  absl::Status Memcpy3D(const Copy3DParams& params, Handle stream, bool async) override {
    const wire::Copy3D& g = params.geometry;
    CUDA_MEMCPY3D c;
    std::memset(&c, 0, sizeof(c));
    bool host_side = false;
    switch (static_cast<wire::MemKind>(g.src_kind)) {
      case wire::MemKind::kHost:
        if (params.src_host == nullptr) return CuError(CUDA_ERROR_INVALID_VALUE, "cuMemcpy3D src");
        host_side = true;
        c.srcMemoryType = CU_MEMORYTYPE_HOST;
        c.srcHost = params.src_host;
        c.srcPitch = g.width_bytes;  // host rows travel packed
        c.srcHeight = g.height;
        break;
      case wire::MemKind::kDevice:
        c.srcMemoryType = CU_MEMORYTYPE_DEVICE;
        c.srcDevice = g.src_ptr;
        c.srcXInBytes = g.src_x_bytes;
        c.srcY = g.src_y;
        c.srcZ = g.src_z;
        c.srcPitch = g.src_pitch;
        c.srcHeight = g.src_height;
        break;
      default:
        return CuError(CUDA_ERROR_INVALID_VALUE, "cuMemcpy3D src kind");
    }
    switch (static_cast<wire::MemKind>(g.dst_kind)) {
      case wire::MemKind::kHost:
        if (params.dst_host == nullptr) return CuError(CUDA_ERROR_INVALID_VALUE, "cuMemcpy3D dst");
        host_side = true;
        c.dstMemoryType = CU_MEMORYTYPE_HOST;
        c.dstHost = params.dst_host;
        c.dstPitch = g.width_bytes;
        c.dstHeight = g.height;
        break;
      case wire::MemKind::kDevice:
        c.dstMemoryType = CU_MEMORYTYPE_DEVICE;
        c.dstDevice = g.dst_ptr;
        c.dstXInBytes = g.dst_x_bytes;
        c.dstY = g.dst_y;
        c.dstZ = g.dst_z;
        c.dstPitch = g.dst_pitch;
        c.dstHeight = g.dst_height;
        break;
      default:
        return CuError(CUDA_ERROR_INVALID_VALUE, "cuMemcpy3D dst kind");
    }
    c.WidthInBytes = g.width_bytes;
    c.Height = g.height;
    c.Depth = g.depth;
    WOOLY_RETURN_IF_CU(cu_.cuMemcpy3DAsync(&c, Stream(stream)), "cuMemcpy3DAsync");
    // Host buffers are the server's pageable memory: a DtoH result must have
    // landed, and an HtoD source may be released, when we return.
    return SyncUnlessAsync(stream, async && !host_side);
  }

  absl::Status Memset(DevPtr dst, uint64_t pitch, uint32_t value, uint32_t elem_size,
                      uint64_t width, uint64_t height, Handle stream, bool async) override {
    const CUstream s = Stream(stream);
    const bool linear = height == 1;
    absl::Status st;
    switch (elem_size) {
      case 1: {
        const auto v = static_cast<unsigned char>(value);
        st = linear ? Check(cu_.cuMemsetD8Async(dst, v, width, s), "cuMemsetD8Async")
                    : Check(cu_.cuMemsetD2D8Async(dst, pitch, v, width, height, s),
                            "cuMemsetD2D8Async");
        break;
      }
      case 2: {
        const auto v = static_cast<unsigned short>(value);
        st = linear ? Check(cu_.cuMemsetD16Async(dst, v, width, s), "cuMemsetD16Async")
                    : Check(cu_.cuMemsetD2D16Async(dst, pitch, v, width, height, s),
                            "cuMemsetD2D16Async");
        break;
      }
      case 4: {
        const unsigned int v = value;
        st = linear ? Check(cu_.cuMemsetD32Async(dst, v, width, s), "cuMemsetD32Async")
                    : Check(cu_.cuMemsetD2D32Async(dst, pitch, v, width, height, s),
                            "cuMemsetD2D32Async");
        break;
      }
      default:
        return CuError(CUDA_ERROR_INVALID_VALUE, "cuMemset element size");
    }
    if (!st.ok()) return st;
    return SyncUnlessAsync(stream, async);
  }

  // A synchronous copy or memset is the async one on the client's stream
  // followed by a wait: the client's streams are non-blocking, so the
  // driver's own synchronous calls (on the legacy stream) would not be
  // ordered after the client's earlier work.
  absl::Status SyncUnlessAsync(Handle stream, bool async) {
    if (async) return absl::OkStatus();
    return Check(cu_.cuStreamSynchronize(Stream(stream)), "cuStreamSynchronize");
  }

  // --- Memory extensions: pools, VMM, occupancy, limits, tensor maps.

  absl::StatusOr<Handle> MemPoolCreate(const wire::MemPoolProps& props) override {
    WOOLY_REQUIRE_ENTRY(cuMemPoolCreate);
    CUmemPoolProps p;
    std::memset(&p, 0, sizeof(p));
    p.allocType = static_cast<CUmemAllocationType>(props.alloc_type);
    p.handleTypes = static_cast<CUmemAllocationHandleType>(props.handle_types);
    p.location.type = static_cast<CUmemLocationType>(props.location_type);
    p.location.id = props.location_id;
    p.maxSize = props.max_size;
    p.usage = props.usage;
    CUmemoryPool pool = nullptr;
    WOOLY_RETURN_IF_CU(cu_.cuMemPoolCreate(&pool, &p), "cuMemPoolCreate");
    absl::MutexLock lock(&mu_);
    pools_.insert(ToHandle(pool));
    return ToHandle(pool);
  }

  absl::Status MemPoolDestroy(Handle pool) override {
    WOOLY_REQUIRE_ENTRY(cuMemPoolDestroy);
    WOOLY_RETURN_IF_CU(cu_.cuMemPoolDestroy(FromHandle<CUmemoryPool>(pool)), "cuMemPoolDestroy");
    absl::MutexLock lock(&mu_);
    pools_.erase(pool);
    return absl::OkStatus();
  }

  absl::Status MemPoolSetAttribute(Handle pool, int32_t attribute, uint64_t value) override {
    WOOLY_REQUIRE_ENTRY(cuMemPoolSetAttribute);
    const auto a = static_cast<CUmemPool_attribute>(attribute);
    if (PoolAttributeIsInt(attribute)) {
      int v = static_cast<int>(value);
      return Check(cu_.cuMemPoolSetAttribute(FromHandle<CUmemoryPool>(pool), a, &v),
                   "cuMemPoolSetAttribute");
    }
    cuuint64_t v = value;
    return Check(cu_.cuMemPoolSetAttribute(FromHandle<CUmemoryPool>(pool), a, &v),
                 "cuMemPoolSetAttribute");
  }

  absl::StatusOr<uint64_t> MemPoolGetAttribute(Handle pool, int32_t attribute) override {
    WOOLY_REQUIRE_ENTRY(cuMemPoolGetAttribute);
    const auto a = static_cast<CUmemPool_attribute>(attribute);
    if (PoolAttributeIsInt(attribute)) {
      int v = 0;
      WOOLY_RETURN_IF_CU(cu_.cuMemPoolGetAttribute(FromHandle<CUmemoryPool>(pool), a, &v),
                         "cuMemPoolGetAttribute");
      return static_cast<uint64_t>(v);
    }
    cuuint64_t v = 0;
    WOOLY_RETURN_IF_CU(cu_.cuMemPoolGetAttribute(FromHandle<CUmemoryPool>(pool), a, &v),
                       "cuMemPoolGetAttribute");
    return static_cast<uint64_t>(v);
  }

  absl::Status MemPoolTrimTo(Handle pool, uint64_t min_bytes_to_keep) override {
    WOOLY_REQUIRE_ENTRY(cuMemPoolTrimTo);
    return Check(cu_.cuMemPoolTrimTo(FromHandle<CUmemoryPool>(pool), min_bytes_to_keep),
                 "cuMemPoolTrimTo");
  }

  absl::StatusOr<DevPtr> MemAllocFromPoolAsync(uint64_t size, Handle pool, Handle stream) override {
    WOOLY_REQUIRE_ENTRY(cuMemAllocFromPoolAsync);
    CUdeviceptr p = 0;
    WOOLY_RETURN_IF_CU(
        cu_.cuMemAllocFromPoolAsync(&p, size, FromHandle<CUmemoryPool>(pool), Stream(stream)),
        "cuMemAllocFromPoolAsync");
    return static_cast<DevPtr>(p);
  }

  absl::Status MemFreeAsync(DevPtr ptr, Handle stream) override {
    WOOLY_REQUIRE_ENTRY(cuMemFreeAsync);
    return Check(cu_.cuMemFreeAsync(ptr, Stream(stream)), "cuMemFreeAsync");
  }

  absl::StatusOr<uint64_t> MemGetAllocationGranularity(const wire::MemAllocProps& props,
                                                       uint32_t option) override {
    WOOLY_REQUIRE_ENTRY(cuMemGetAllocationGranularity);
    const CUmemAllocationProp p = ToAllocationProp(props);
    size_t g = 0;
    WOOLY_RETURN_IF_CU(cu_.cuMemGetAllocationGranularity(
                           &g, &p, static_cast<CUmemAllocationGranularity_flags>(option)),
                       "cuMemGetAllocationGranularity");
    return static_cast<uint64_t>(g);
  }

  absl::StatusOr<DevPtr> MemAddressReserve(uint64_t size, uint64_t alignment, DevPtr hint,
                                           uint64_t flags) override {
    WOOLY_REQUIRE_ENTRY(cuMemAddressReserve);
    CUdeviceptr p = 0;
    WOOLY_RETURN_IF_CU(cu_.cuMemAddressReserve(&p, size, alignment, hint, flags),
                       "cuMemAddressReserve");
    absl::MutexLock lock(&mu_);
    reservations_[static_cast<DevPtr>(p)] = size;
    return static_cast<DevPtr>(p);
  }

  absl::Status MemAddressFree(DevPtr ptr, uint64_t size) override {
    WOOLY_REQUIRE_ENTRY(cuMemAddressFree);
    WOOLY_RETURN_IF_CU(cu_.cuMemAddressFree(ptr, size), "cuMemAddressFree");
    absl::MutexLock lock(&mu_);
    reservations_.erase(ptr);
    return absl::OkStatus();
  }

  absl::StatusOr<Handle> MemCreate(uint64_t size, const wire::MemAllocProps& props,
                                   uint64_t flags) override {
    WOOLY_REQUIRE_ENTRY(cuMemCreate);
    const CUmemAllocationProp p = ToAllocationProp(props);
    CUmemGenericAllocationHandle h = 0;
    WOOLY_RETURN_IF_CU(cu_.cuMemCreate(&h, size, &p, flags), "cuMemCreate");
    absl::MutexLock lock(&mu_);
    ++handles_[static_cast<Handle>(h)];
    return static_cast<Handle>(h);
  }

  absl::Status MemRelease(Handle handle) override {
    WOOLY_REQUIRE_ENTRY(cuMemRelease);
    WOOLY_RETURN_IF_CU(cu_.cuMemRelease(handle), "cuMemRelease");
    absl::MutexLock lock(&mu_);
    if (auto it = handles_.find(handle); it != handles_.end() && --it->second <= 0) {
      handles_.erase(it);
    }
    return absl::OkStatus();
  }

  absl::StatusOr<wire::MemAllocProps> MemGetAllocationPropertiesFromHandle(Handle handle) override {
    WOOLY_REQUIRE_ENTRY(cuMemGetAllocationPropertiesFromHandle);
    CUmemAllocationProp p;
    std::memset(&p, 0, sizeof(p));
    WOOLY_RETURN_IF_CU(cu_.cuMemGetAllocationPropertiesFromHandle(&p, handle),
                       "cuMemGetAllocationPropertiesFromHandle");
    wire::MemAllocProps out;
    out.type = p.type;
    out.handle_types = p.requestedHandleTypes;
    out.location_type = p.location.type;
    out.location_id = p.location.id;
    out.compression = p.allocFlags.compressionType;
    out.rdma_capable = p.allocFlags.gpuDirectRDMACapable;
    out.usage = p.allocFlags.usage;
    return out;
  }

  absl::StatusOr<Handle> MemRetainAllocationHandle(DevPtr addr) override {
    WOOLY_REQUIRE_ENTRY(cuMemRetainAllocationHandle);
    CUmemGenericAllocationHandle h = 0;
    WOOLY_RETURN_IF_CU(
        cu_.cuMemRetainAllocationHandle(&h, reinterpret_cast<void*>(static_cast<uintptr_t>(addr))),
        "cuMemRetainAllocationHandle");
    absl::MutexLock lock(&mu_);
    ++handles_[static_cast<Handle>(h)];
    return static_cast<Handle>(h);
  }

  absl::Status MemMap(DevPtr ptr, uint64_t size, uint64_t offset, Handle handle,
                      uint64_t flags) override {
    WOOLY_REQUIRE_ENTRY(cuMemMap);
    WOOLY_RETURN_IF_CU(cu_.cuMemMap(ptr, size, offset, handle, flags), "cuMemMap");
    absl::MutexLock lock(&mu_);
    mappings_[ptr] = size;
    return absl::OkStatus();
  }

  absl::Status MemUnmap(DevPtr ptr, uint64_t size) override {
    WOOLY_REQUIRE_ENTRY(cuMemUnmap);
    WOOLY_RETURN_IF_CU(cu_.cuMemUnmap(ptr, size), "cuMemUnmap");
    // One unmap may cover several mappings.
    absl::MutexLock lock(&mu_);
    mappings_.erase(mappings_.lower_bound(ptr), mappings_.lower_bound(ptr + size));
    return absl::OkStatus();
  }

  absl::Status MemSetAccess(DevPtr ptr, uint64_t size,
                            absl::Span<const MemAccessDesc> access) override {
    WOOLY_REQUIRE_ENTRY(cuMemSetAccess);
    std::vector<CUmemAccessDesc> desc(access.size());
    for (size_t i = 0; i < access.size(); ++i) {
      std::memset(&desc[i], 0, sizeof(desc[i]));
      desc[i].location.type = static_cast<CUmemLocationType>(access[i].location_type);
      desc[i].location.id = access[i].location_id;
      desc[i].flags = static_cast<CUmemAccess_flags>(access[i].flags);
    }
    return Check(cu_.cuMemSetAccess(ptr, size, desc.data(), desc.size()), "cuMemSetAccess");
  }

  absl::StatusOr<uint64_t> MemGetAccess(int32_t location_type, int32_t location_id,
                                        DevPtr ptr) override {
    WOOLY_REQUIRE_ENTRY(cuMemGetAccess);
    CUmemLocation loc;
    std::memset(&loc, 0, sizeof(loc));
    loc.type = static_cast<CUmemLocationType>(location_type);
    loc.id = location_id;
    unsigned long long flags = 0;
    WOOLY_RETURN_IF_CU(cu_.cuMemGetAccess(&flags, &loc, ptr), "cuMemGetAccess");
    return static_cast<uint64_t>(flags);
  }

  absl::StatusOr<int32_t> OccupancyMaxActiveBlocks(Handle function, int32_t block_size,
                                                   uint64_t dynamic_smem, uint32_t flags) override {
    WOOLY_REQUIRE_ENTRY(cuOccupancyMaxActiveBlocksPerMultiprocessorWithFlags);
    absl::StatusOr<CUfunction> f = FunctionFor(function);
    if (!f.ok()) return f.status();
    int n = 0;
    WOOLY_RETURN_IF_CU(cu_.cuOccupancyMaxActiveBlocksPerMultiprocessorWithFlags(
                           &n, *f, block_size, dynamic_smem, flags),
                       "cuOccupancyMaxActiveBlocksPerMultiprocessorWithFlags");
    return n;
  }

  absl::StatusOr<OccupancyBlockSize> OccupancyMaxPotentialBlockSize(
      Handle function, absl::Span<const BlockSmem> smem_table, uint64_t dynamic_smem,
      int32_t block_size_limit, uint32_t flags) override {
    WOOLY_REQUIRE_ENTRY(cuOccupancyMaxPotentialBlockSizeWithFlags);
    absl::StatusOr<CUfunction> f = FunctionFor(function);
    if (!f.ok()) return f.status();
    int min_grid = 0, block = 0;
    // The driver calls the callback on this thread, during this call.
    t_smem_table = smem_table;
    const CUresult r = cu_.cuOccupancyMaxPotentialBlockSizeWithFlags(
        &min_grid, &block, *f, smem_table.empty() ? nullptr : &SmemFromTable, dynamic_smem,
        block_size_limit, flags);
    t_smem_table = {};
    WOOLY_RETURN_IF_CU(r, "cuOccupancyMaxPotentialBlockSizeWithFlags");
    return OccupancyBlockSize{min_grid, block};
  }

  absl::StatusOr<uint64_t> OccupancyAvailableDynamicSMem(Handle function, int32_t num_blocks,
                                                         int32_t block_size) override {
    WOOLY_REQUIRE_ENTRY(cuOccupancyAvailableDynamicSMemPerBlock);
    absl::StatusOr<CUfunction> f = FunctionFor(function);
    if (!f.ok()) return f.status();
    size_t bytes = 0;
    WOOLY_RETURN_IF_CU(
        cu_.cuOccupancyAvailableDynamicSMemPerBlock(&bytes, *f, num_blocks, block_size),
        "cuOccupancyAvailableDynamicSMemPerBlock");
    return static_cast<uint64_t>(bytes);
  }

  absl::StatusOr<int32_t> OccupancyMaxActiveClusters(Handle function,
                                                     const LaunchConfig& config) override {
    WOOLY_REQUIRE_ENTRY(cuOccupancyMaxActiveClusters);
    absl::StatusOr<CUfunction> f = FunctionFor(function);
    if (!f.ok()) return f.status();
    std::vector<CUlaunchAttribute> attrs;
    CUlaunchConfig cfg = ToLaunchConfig(config, /*stream=*/nullptr, &attrs);
    int clusters = 0;
    WOOLY_RETURN_IF_CU(cu_.cuOccupancyMaxActiveClusters(&clusters, *f, &cfg),
                       "cuOccupancyMaxActiveClusters");
    return clusters;
  }

  absl::StatusOr<uint64_t> CtxGetLimit(int32_t limit) override {
    WOOLY_REQUIRE_ENTRY(cuCtxGetLimit);
    size_t v = 0;
    WOOLY_RETURN_IF_CU(cu_.cuCtxGetLimit(&v, static_cast<CUlimit>(limit)), "cuCtxGetLimit");
    return static_cast<uint64_t>(v);
  }

  absl::Status CtxSetLimit(int32_t limit, uint64_t value) override {
    WOOLY_REQUIRE_ENTRY(cuCtxSetLimit);
    return Check(cu_.cuCtxSetLimit(static_cast<CUlimit>(limit), value), "cuCtxSetLimit");
  }

  absl::Status FuncSetCacheConfig(Handle function, int32_t config) override {
    WOOLY_REQUIRE_ENTRY(cuFuncSetCacheConfig);
    absl::StatusOr<CUfunction> f = FunctionFor(function);
    if (!f.ok()) return f.status();
    return Check(cu_.cuFuncSetCacheConfig(*f, static_cast<CUfunc_cache>(config)),
                 "cuFuncSetCacheConfig");
  }

  absl::Status FuncSetSharedMemConfig(Handle function, int32_t config) override {
    WOOLY_REQUIRE_ENTRY(cuFuncSetSharedMemConfig);
    absl::StatusOr<CUfunction> f = FunctionFor(function);
    if (!f.ok()) return f.status();
    return Check(cu_.cuFuncSetSharedMemConfig(*f, static_cast<CUsharedconfig>(config)),
                 "cuFuncSetSharedMemConfig");
  }

  absl::StatusOr<TensorMapBytes> TensorMapEncodeTiled(const wire::TensorMapTiled& t) override {
    WOOLY_REQUIRE_ENTRY(cuTensorMapEncodeTiled);
    CUtensorMap map;
    std::memset(&map, 0, sizeof(map));
    WOOLY_RETURN_IF_CU(
        cu_.cuTensorMapEncodeTiled(&map, static_cast<CUtensorMapDataType>(t.data_type), t.rank,
                                   reinterpret_cast<void*>(static_cast<uintptr_t>(t.address)),
                                   t.dims, t.strides, t.box, t.element_strides,
                                   static_cast<CUtensorMapInterleave>(t.interleave),
                                   static_cast<CUtensorMapSwizzle>(t.swizzle),
                                   static_cast<CUtensorMapL2promotion>(t.l2_promotion),
                                   static_cast<CUtensorMapFloatOOBfill>(t.oob_fill)),
        "cuTensorMapEncodeTiled");
    return ToBytes(map);
  }

  absl::StatusOr<TensorMapBytes> TensorMapEncodeIm2col(const wire::TensorMapIm2col& t) override {
    WOOLY_REQUIRE_ENTRY(cuTensorMapEncodeIm2col);
    CUtensorMap map;
    std::memset(&map, 0, sizeof(map));
    WOOLY_RETURN_IF_CU(cu_.cuTensorMapEncodeIm2col(
                           &map, static_cast<CUtensorMapDataType>(t.data_type), t.rank,
                           reinterpret_cast<void*>(static_cast<uintptr_t>(t.address)), t.dims,
                           t.strides, t.lower, t.upper, t.channels_per_pixel, t.pixels_per_column,
                           t.element_strides, static_cast<CUtensorMapInterleave>(t.interleave),
                           static_cast<CUtensorMapSwizzle>(t.swizzle),
                           static_cast<CUtensorMapL2promotion>(t.l2_promotion),
                           static_cast<CUtensorMapFloatOOBfill>(t.oob_fill)),
                       "cuTensorMapEncodeIm2col");
    return ToBytes(map);
  }

  absl::StatusOr<TensorMapBytes> TensorMapReplaceAddress(const TensorMapBytes& bytes,
                                                         DevPtr address) override {
    WOOLY_REQUIRE_ENTRY(cuTensorMapReplaceAddress);
    CUtensorMap map;
    static_assert(sizeof(map) == std::tuple_size_v<TensorMapBytes>);
    std::memcpy(&map, bytes.data(), sizeof(map));
    WOOLY_RETURN_IF_CU(cu_.cuTensorMapReplaceAddress(
                           &map, reinterpret_cast<void*>(static_cast<uintptr_t>(address))),
                       "cuTensorMapReplaceAddress");
    return ToBytes(map);
  }

  // --- Modules and libraries.

  absl::StatusOr<Handle> ModuleLoadData(absl::Span<const uint8_t> image) override {
    const std::vector<uint64_t> copy = AlignedImage(image);
    CUmodule m = nullptr;
    WOOLY_RETURN_IF_CU(cu_.cuModuleLoadData(&m, copy.data()), "cuModuleLoadData");
    return ToHandle(m);
  }

  absl::Status ModuleUnload(Handle module) override {
    return Check(cu_.cuModuleUnload(FromHandle<CUmodule>(module)), "cuModuleUnload");
  }

  absl::StatusOr<Handle> ModuleGetFunction(Handle module, const std::string& name) override {
    CUfunction f = nullptr;
    WOOLY_RETURN_IF_CU(cu_.cuModuleGetFunction(&f, FromHandle<CUmodule>(module), name.c_str()),
                       "cuModuleGetFunction");
    return ToHandle(f);
  }

  absl::StatusOr<GlobalInfo> ModuleGetGlobal(Handle module, const std::string& name) override {
    CUdeviceptr p = 0;
    size_t size = 0;
    WOOLY_RETURN_IF_CU(cu_.cuModuleGetGlobal(&p, &size, FromHandle<CUmodule>(module), name.c_str()),
                       "cuModuleGetGlobal");
    return GlobalInfo{static_cast<DevPtr>(p), size};
  }

  absl::StatusOr<uint32_t> ModuleGetFunctionCount(Handle module) override {
    unsigned int n = 0;
    WOOLY_RETURN_IF_CU(cu_.cuModuleGetFunctionCount(&n, FromHandle<CUmodule>(module)),
                       "cuModuleGetFunctionCount");
    return n;
  }

  absl::StatusOr<Handle> LibraryLoadData(absl::Span<const uint8_t> image) override {
    const std::vector<uint64_t> copy = AlignedImage(image);
    CUlibrary lib = nullptr;
    WOOLY_RETURN_IF_CU(
        cu_.cuLibraryLoadData(&lib, copy.data(), nullptr, nullptr, 0, nullptr, nullptr, 0),
        "cuLibraryLoadData");
    absl::MutexLock lock(&mu_);
    libraries_.insert(ToHandle(lib));
    return ToHandle(lib);
  }

  absl::Status LibraryUnload(Handle library) override {
    WOOLY_RETURN_IF_CU(cu_.cuLibraryUnload(FromHandle<CUlibrary>(library)), "cuLibraryUnload");
    absl::MutexLock lock(&mu_);
    libraries_.erase(library);
    absl::erase_if(kernels_, [library](const auto& kv) { return kv.second.library == library; });
    return absl::OkStatus();
  }

  absl::StatusOr<Handle> LibraryGetKernel(Handle library, const std::string& name) override {
    CUkernel k = nullptr;
    WOOLY_RETURN_IF_CU(cu_.cuLibraryGetKernel(&k, FromHandle<CUlibrary>(library), name.c_str()),
                       "cuLibraryGetKernel");
    absl::MutexLock lock(&mu_);
    kernels_.try_emplace(ToHandle(k), KernelEntry{library, 0});
    return ToHandle(k);
  }

  absl::StatusOr<Handle> LibraryGetModule(Handle library) override {
    CUmodule m = nullptr;
    WOOLY_RETURN_IF_CU(cu_.cuLibraryGetModule(&m, FromHandle<CUlibrary>(library)),
                       "cuLibraryGetModule");
    return ToHandle(m);
  }

  absl::StatusOr<GlobalInfo> LibraryGetGlobal(Handle library, const std::string& name) override {
    CUdeviceptr p = 0;
    size_t size = 0;
    WOOLY_RETURN_IF_CU(
        cu_.cuLibraryGetGlobal(&p, &size, FromHandle<CUlibrary>(library), name.c_str()),
        "cuLibraryGetGlobal");
    return GlobalInfo{static_cast<DevPtr>(p), size};
  }

  absl::StatusOr<Handle> KernelGetFunction(Handle kernel) override {
    CUfunction f = nullptr;
    WOOLY_RETURN_IF_CU(cu_.cuKernelGetFunction(&f, FromHandle<CUkernel>(kernel)),
                       "cuKernelGetFunction");
    return ToHandle(f);
  }

  absl::StatusOr<std::vector<wire::ParamInfo>> FuncGetParamLayout(Handle function) override {
    std::vector<wire::ParamInfo> out;
    absl::Status s = ParamLayout(function, IsKernel(function), &out);
    // A kernel handle this backend did not hand out itself still works.
    if (!s.ok() && ToCuResult(s) == CUDA_ERROR_INVALID_HANDLE && !IsKernel(function)) {
      out.clear();
      if (ParamLayout(function, /*kernel=*/true, &out).ok()) return out;
    }
    if (!s.ok()) return s;
    return out;
  }

  absl::StatusOr<int32_t> FuncGetAttribute(Handle function, int32_t attribute) override {
    int v = 0;
    const auto a = static_cast<CUfunction_attribute>(attribute);
    if (IsKernel(function)) {
      WOOLY_RETURN_IF_CU(cu_.cuKernelGetAttribute(&v, a, FromHandle<CUkernel>(function), device_),
                         "cuKernelGetAttribute");
    } else {
      WOOLY_RETURN_IF_CU(cu_.cuFuncGetAttribute(&v, a, FromHandle<CUfunction>(function)),
                         "cuFuncGetAttribute");
    }
    return v;
  }

  absl::Status FuncSetAttribute(Handle function, int32_t attribute, int32_t value) override {
    const auto a = static_cast<CUfunction_attribute>(attribute);
    if (IsKernel(function)) {
      return Check(cu_.cuKernelSetAttribute(a, value, FromHandle<CUkernel>(function), device_),
                   "cuKernelSetAttribute");
    }
    return Check(cu_.cuFuncSetAttribute(FromHandle<CUfunction>(function), a, value),
                 "cuFuncSetAttribute");
  }

  absl::Status LaunchKernel(Handle function, const LaunchConfig& config,
                            absl::Span<const uint8_t> args) override {
    absl::StatusOr<CUfunction> f = FunctionFor(function);
    if (!f.ok()) return f.status();

    // Reused per serving thread: launches are the hottest request.
    thread_local std::vector<CUlaunchAttribute> attrs;
    CUlaunchConfig cfg = ToLaunchConfig(config, Stream(config.stream), &attrs);

    if (args.empty()) {
      return Check(cu_.cuLaunchKernelEx(&cfg, *f, nullptr, nullptr), "cuLaunchKernelEx");
    }
    // Parameters may hold 8-byte fields; hand the driver an aligned buffer.
    thread_local std::vector<uint64_t> buf;
    buf.resize((args.size() + sizeof(uint64_t) - 1) / sizeof(uint64_t));
    std::memcpy(buf.data(), args.data(), args.size());
    size_t size = args.size();
    void* extra[] = {CU_LAUNCH_PARAM_BUFFER_POINTER, buf.data(), CU_LAUNCH_PARAM_BUFFER_SIZE, &size,
                     CU_LAUNCH_PARAM_END};
    return Check(cu_.cuLaunchKernelEx(&cfg, *f, nullptr, extra), "cuLaunchKernelEx");
  }

  // --- Streams and events.

  absl::StatusOr<PartitionLayout> GetPartitionLayout() override {
    absl::MutexLock lock(&mu_);
    if (absl::Status s = SplitSmsLocked(); !s.ok()) return s;
    PartitionLayout layout;
    layout.sm_count = static_cast<int>(sm_total_);
    layout.unit_sms = static_cast<int>(sm_units_.empty() ? 0 : sm_units_[0].sm.smCount);
    layout.units = static_cast<int>(sm_units_.size());
    return layout;
  }

  absl::StatusOr<Handle> PartitionCreate(int first, int count, bool with_rest) override {
    absl::MutexLock lock(&mu_);
    if (absl::Status s = SplitSmsLocked(); !s.ok()) return s;
    if (first < 0 || count <= 0 || static_cast<size_t>(first) + count > sm_units_.size()) {
      return CuError(CUDA_ERROR_INVALID_VALUE, "partition outside the device's units");
    }
    std::vector<CUdevResource> parts(sm_units_.begin() + first, sm_units_.begin() + first + count);
    if (with_rest && sm_rest_.sm.smCount > 0) parts.push_back(sm_rest_);
    CUdevResourceDesc desc = nullptr;
    WOOLY_RETURN_IF_CU(
        cu_.cuDevResourceGenerateDesc(&desc, parts.data(), static_cast<unsigned>(parts.size())),
        "cuDevResourceGenerateDesc");
    CUgreenCtx green = nullptr;
    WOOLY_RETURN_IF_CU(cu_.cuGreenCtxCreate(&green, desc, device_, CU_GREEN_CTX_DEFAULT_STREAM),
                       "cuGreenCtxCreate");
    partitions_.insert(ToHandle(green));
    return ToHandle(green);
  }

  absl::Status PartitionDestroy(Handle partition) override {
    {
      absl::MutexLock lock(&mu_);
      if (partitions_.erase(partition) == 0) {
        return CuError(CUDA_ERROR_INVALID_HANDLE, "unknown partition");
      }
    }
    return Check(cu_.cuGreenCtxDestroy(FromHandle<CUgreenCtx>(partition)), "cuGreenCtxDestroy");
  }

  absl::StatusOr<Handle> PartitionStreamCreate(Handle partition, uint32_t flags,
                                               int32_t priority) override {
    {
      absl::MutexLock lock(&mu_);
      if (!partitions_.contains(partition)) {
        return CuError(CUDA_ERROR_INVALID_HANDLE, "unknown partition");
      }
    }
    CUstream s = nullptr;
    WOOLY_RETURN_IF_CU(
        cu_.cuGreenCtxStreamCreate(&s, FromHandle<CUgreenCtx>(partition), flags, priority),
        "cuGreenCtxStreamCreate");
    return ToHandle(s);
  }

  absl::StatusOr<Handle> StreamCreate(uint32_t flags, int32_t priority) override {
    CUstream s = nullptr;
    WOOLY_RETURN_IF_CU(cu_.cuStreamCreateWithPriority(&s, flags, priority),
                       "cuStreamCreateWithPriority");
    return ToHandle(s);
  }

  absl::Status StreamDestroy(Handle stream) override {
    return Check(cu_.cuStreamDestroy(Stream(stream)), "cuStreamDestroy");
  }

  absl::Status StreamSynchronize(Handle stream) override {
    return Check(cu_.cuStreamSynchronize(Stream(stream)), "cuStreamSynchronize");
  }

  absl::Status StreamQuery(Handle stream) override {
    return Check(cu_.cuStreamQuery(Stream(stream)), "cuStreamQuery");
  }

  absl::Status StreamWaitEvent(Handle stream, Handle event, uint32_t flags) override {
    return Check(cu_.cuStreamWaitEvent(Stream(stream), FromHandle<CUevent>(event), flags),
                 "cuStreamWaitEvent");
  }

  absl::StatusOr<Handle> EventCreate(uint32_t flags) override {
    CUevent e = nullptr;
    WOOLY_RETURN_IF_CU(cu_.cuEventCreate(&e, flags), "cuEventCreate");
    return ToHandle(e);
  }

  absl::Status EventRecord(Handle event, Handle stream, uint32_t flags) override {
    if (flags == 0) {
      return Check(cu_.cuEventRecord(FromHandle<CUevent>(event), Stream(stream)), "cuEventRecord");
    }
    return Check(cu_.cuEventRecordWithFlags(FromHandle<CUevent>(event), Stream(stream), flags),
                 "cuEventRecordWithFlags");
  }

  absl::Status EventSynchronize(Handle event) override {
    return Check(cu_.cuEventSynchronize(FromHandle<CUevent>(event)), "cuEventSynchronize");
  }

  absl::Status EventQuery(Handle event) override {
    return Check(cu_.cuEventQuery(FromHandle<CUevent>(event)), "cuEventQuery");
  }

  absl::StatusOr<float> EventElapsedTime(Handle start, Handle end) override {
    float ms = 0;
    WOOLY_RETURN_IF_CU(
        cu_.cuEventElapsedTime(&ms, FromHandle<CUevent>(start), FromHandle<CUevent>(end)),
        "cuEventElapsedTime");
    return ms;
  }

  absl::Status EventDestroy(Handle event) override {
    return Check(cu_.cuEventDestroy(FromHandle<CUevent>(event)), "cuEventDestroy");
  }

  absl::Status CtxSynchronize() override {
    return Check(cu_.cuCtxSynchronize(ctx_.load()), "cuCtxSynchronize");
  }

  // --- Stream capture and graphs.

  absl::Status StreamBeginCapture(Handle stream) override {
    if (!cu_.HasGraphs()) return NoGraphs();
    // Relaxed: this one thread serves every client (see gpu_backend.h).
    return Check(cu_.cuStreamBeginCapture(Stream(stream), CU_STREAM_CAPTURE_MODE_RELAXED),
                 "cuStreamBeginCapture");
  }

  absl::StatusOr<Handle> StreamEndCapture(Handle stream) override {
    if (!cu_.HasGraphs()) return NoGraphs();
    CUgraph g = nullptr;
    WOOLY_RETURN_IF_CU(cu_.cuStreamEndCapture(Stream(stream), &g), "cuStreamEndCapture");
    return ToHandle(g);
  }

  absl::StatusOr<CaptureInfo> StreamGetCaptureInfo(Handle stream) override {
    if (!cu_.HasGraphs()) return NoGraphs();
    CUstreamCaptureStatus status = CU_STREAM_CAPTURE_STATUS_NONE;
    cuuint64_t id = 0;
    CUgraph g = nullptr;
    const CUgraphNode* deps = nullptr;
    const CUgraphEdgeData* edges = nullptr;
    size_t n = 0;
    CaptureInfo info;
    const CUresult r =
        cu_.cuStreamGetCaptureInfo(Stream(stream), &status, &id, &g, &deps, &edges, &n);
    if (r == CUDA_ERROR_STREAM_CAPTURE_INVALIDATED) {
      info.status = CU_STREAM_CAPTURE_STATUS_INVALIDATED;
      return info;
    }
    WOOLY_RETURN_IF_CU(r, "cuStreamGetCaptureInfo");
    info.status = status;
    if (status == CU_STREAM_CAPTURE_STATUS_ACTIVE) {
      info.graph = ToHandle(g);
      for (size_t i = 0; i < n; ++i) info.dependencies.push_back(ToHandle(deps[i]));
    }
    return info;
  }

  absl::Status StreamUpdateCaptureDependencies(Handle stream, absl::Span<const Handle> nodes,
                                               uint32_t flags) override {
    if (!cu_.HasGraphs()) return NoGraphs();
    std::vector<CUgraphNode> list;
    for (Handle h : nodes) list.push_back(FromHandle<CUgraphNode>(h));
    return Check(
        cu_.cuStreamUpdateCaptureDependencies(Stream(stream), list.empty() ? nullptr : list.data(),
                                              nullptr, list.size(), flags),
        "cuStreamUpdateCaptureDependencies");
  }

  absl::StatusOr<Handle> GraphCreate(uint32_t flags) override {
    if (!cu_.HasGraphs()) return NoGraphs();
    CUgraph g = nullptr;
    WOOLY_RETURN_IF_CU(cu_.cuGraphCreate(&g, flags), "cuGraphCreate");
    return ToHandle(g);
  }

  absl::Status GraphDestroy(Handle graph) override {
    if (!cu_.HasGraphs()) return NoGraphs();
    return Check(cu_.cuGraphDestroy(FromHandle<CUgraph>(graph)), "cuGraphDestroy");
  }

  absl::StatusOr<Handle> GraphInstantiate(Handle graph, uint64_t flags) override {
    if (!cu_.HasGraphs()) return NoGraphs();
    CUgraphExec e = nullptr;
    WOOLY_RETURN_IF_CU(cu_.cuGraphInstantiateWithFlags(&e, FromHandle<CUgraph>(graph), flags),
                       "cuGraphInstantiateWithFlags");
    return ToHandle(e);
  }

  absl::Status GraphExecDestroy(Handle exec) override {
    if (!cu_.HasGraphs()) return NoGraphs();
    return Check(cu_.cuGraphExecDestroy(FromHandle<CUgraphExec>(exec)), "cuGraphExecDestroy");
  }

  absl::Status GraphLaunch(Handle exec, Handle stream) override {
    if (!cu_.HasGraphs()) return NoGraphs();
    return Check(cu_.cuGraphLaunch(FromHandle<CUgraphExec>(exec), Stream(stream)), "cuGraphLaunch");
  }

  absl::Status GraphUpload(Handle exec, Handle stream) override {
    if (!cu_.HasGraphs()) return NoGraphs();
    return Check(cu_.cuGraphUpload(FromHandle<CUgraphExec>(exec), Stream(stream)), "cuGraphUpload");
  }

  absl::StatusOr<std::vector<Handle>> GraphGetNodes(Handle graph) override {
    if (!cu_.HasGraphs()) return NoGraphs();
    size_t n = 0;
    WOOLY_RETURN_IF_CU(cu_.cuGraphGetNodes(FromHandle<CUgraph>(graph), nullptr, &n),
                       "cuGraphGetNodes");
    std::vector<CUgraphNode> nodes(n);
    if (n > 0) {
      WOOLY_RETURN_IF_CU(cu_.cuGraphGetNodes(FromHandle<CUgraph>(graph), nodes.data(), &n),
                         "cuGraphGetNodes");
    }
    std::vector<Handle> out;
    for (size_t i = 0; i < std::min(n, nodes.size()); ++i) out.push_back(ToHandle(nodes[i]));
    return out;
  }

  absl::StatusOr<uint32_t> GraphNodeGetType(Handle node) override {
    if (!cu_.HasGraphs()) return NoGraphs();
    CUgraphNodeType type = CU_GRAPH_NODE_TYPE_EMPTY;
    WOOLY_RETURN_IF_CU(cu_.cuGraphNodeGetType(FromHandle<CUgraphNode>(node), &type),
                       "cuGraphNodeGetType");
    return static_cast<uint32_t>(type);
  }

  absl::StatusOr<std::vector<Handle>> GraphNodeGetDependencies(Handle node) override {
    if (!cu_.HasGraphs()) return NoGraphs();
    size_t n = 0;
    WOOLY_RETURN_IF_CU(
        cu_.cuGraphNodeGetDependencies(FromHandle<CUgraphNode>(node), nullptr, nullptr, &n),
        "cuGraphNodeGetDependencies");
    std::vector<CUgraphNode> deps(n);
    if (n > 0) {
      WOOLY_RETURN_IF_CU(
          cu_.cuGraphNodeGetDependencies(FromHandle<CUgraphNode>(node), deps.data(), nullptr, &n),
          "cuGraphNodeGetDependencies");
    }
    std::vector<Handle> out;
    for (size_t i = 0; i < std::min(n, deps.size()); ++i) out.push_back(ToHandle(deps[i]));
    return out;
  }

  absl::StatusOr<KernelNodeParams> GraphKernelNodeGetParams(Handle node) override {
    if (!cu_.HasGraphs()) return NoGraphs();
    CUDA_KERNEL_NODE_PARAMS p;
    std::memset(&p, 0, sizeof(p));
    WOOLY_RETURN_IF_CU(cu_.cuGraphKernelNodeGetParams(FromHandle<CUgraphNode>(node), &p),
                       "cuGraphKernelNodeGetParams");
    KernelNodeParams out;
    const bool by_kernel = p.func == nullptr;
    out.function = by_kernel ? ToHandle(p.kern) : ToHandle(p.func);
    out.grid[0] = p.gridDimX;
    out.grid[1] = p.gridDimY;
    out.grid[2] = p.gridDimZ;
    out.block[0] = p.blockDimX;
    out.block[1] = p.blockDimY;
    out.block[2] = p.blockDimZ;
    out.shared_bytes = p.sharedMemBytes;
    std::vector<wire::ParamInfo> layout;
    if (absl::Status s = ParamLayout(out.function, by_kernel, &layout); !s.ok()) return s;
    uint64_t need = 0;
    for (const wire::ParamInfo& pi : layout) need = std::max<uint64_t>(need, pi.offset + pi.size);
    out.args.assign(need, 0);
    if (p.kernelParams != nullptr) {
      for (size_t i = 0; i < layout.size(); ++i) {
        if (p.kernelParams[i] == nullptr) continue;
        std::memcpy(out.args.data() + layout[i].offset, p.kernelParams[i], layout[i].size);
      }
    } else if (p.extra != nullptr) {
      // An already packed buffer (CU_LAUNCH_PARAM_BUFFER_POINTER/SIZE).
      const void* buf = nullptr;
      size_t size = 0;
      for (size_t i = 0; p.extra[i] != CU_LAUNCH_PARAM_END; i += 2) {
        if (p.extra[i] == CU_LAUNCH_PARAM_BUFFER_POINTER) buf = p.extra[i + 1];
        if (p.extra[i] == CU_LAUNCH_PARAM_BUFFER_SIZE) {
          size = *static_cast<const size_t*>(p.extra[i + 1]);
        }
      }
      if (buf != nullptr) std::memcpy(out.args.data(), buf, std::min<size_t>(size, need));
    }
    return out;
  }

  absl::Status GraphKernelNodeSetParams(Handle node, const KernelNodeParams& params) override {
    if (!cu_.HasGraphs()) return NoGraphs();
    KernelNodeArgs a;
    if (absl::Status s = BuildKernelNodeArgs(params, &a); !s.ok()) return s;
    return Check(cu_.cuGraphKernelNodeSetParams(FromHandle<CUgraphNode>(node), &a.params),
                 "cuGraphKernelNodeSetParams");
  }

  absl::StatusOr<Handle> GraphAddKernelNode(Handle graph, absl::Span<const Handle> dependencies,
                                            const KernelNodeParams& params) override {
    if (!cu_.HasGraphs()) return NoGraphs();
    KernelNodeArgs a;
    if (absl::Status s = BuildKernelNodeArgs(params, &a); !s.ok()) return s;
    std::vector<CUgraphNode> deps;
    for (Handle h : dependencies) deps.push_back(FromHandle<CUgraphNode>(h));
    CUgraphNode n = nullptr;
    WOOLY_RETURN_IF_CU(
        cu_.cuGraphAddKernelNode(&n, FromHandle<CUgraph>(graph),
                                 deps.empty() ? nullptr : deps.data(), deps.size(), &a.params),
        "cuGraphAddKernelNode");
    return ToHandle(n);
  }

  absl::Status GraphExecKernelNodeSetParams(Handle exec, Handle node,
                                            const KernelNodeParams& params) override {
    if (!cu_.HasGraphs()) return NoGraphs();
    KernelNodeArgs a;
    if (absl::Status s = BuildKernelNodeArgs(params, &a); !s.ok()) return s;
    return Check(cu_.cuGraphExecKernelNodeSetParams(FromHandle<CUgraphExec>(exec),
                                                    FromHandle<CUgraphNode>(node), &a.params),
                 "cuGraphExecKernelNodeSetParams");
  }

  absl::StatusOr<std::string> GraphDebugDotPrint(Handle graph, uint32_t flags) override {
    if (!cu_.HasGraphs()) return NoGraphs();
    // The driver only writes files: let it write a private temporary one.
    char path[] = "/tmp/woolyd-graph-XXXXXX";
    const int fd = ::mkstemp(path);
    if (fd < 0) return CuError(CUDA_ERROR_OPERATING_SYSTEM, "cannot create a temporary file");
    ::close(fd);
    const CUresult r = cu_.cuGraphDebugDotPrint(FromHandle<CUgraph>(graph), path, flags);
    std::string dot;
    if (r == CUDA_SUCCESS) {
      if (std::FILE* f = std::fopen(path, "rb")) {
        char buf[1 << 16];
        size_t n;
        while ((n = std::fread(buf, 1, sizeof(buf), f)) > 0) dot.append(buf, n);
        std::fclose(f);
      }
    }
    ::unlink(path);
    WOOLY_RETURN_IF_CU(r, "cuGraphDebugDotPrint");
    return dot;
  }

 private:
  static absl::Status NoGraphs() {
    return CuError(CUDA_ERROR_NOT_SUPPORTED, "the driver has no CUDA 12.3 graph entry points");
  }

  // A kernel node's parameters for the driver: pointers into an aligned copy
  // of the packed arguments, one per parameter of the function's layout.
  struct KernelNodeArgs {
    std::vector<uint64_t> buf;
    std::vector<void*> ptrs;
    CUDA_KERNEL_NODE_PARAMS params;
  };

  absl::Status BuildKernelNodeArgs(const KernelNodeParams& in, KernelNodeArgs* out) {
    absl::StatusOr<CUfunction> f = FunctionFor(in.function);
    if (!f.ok()) return f.status();
    std::vector<wire::ParamInfo> layout;
    if (absl::Status s = ParamLayout(ToHandle(*f), /*kernel=*/false, &layout); !s.ok()) return s;
    out->buf.assign((in.args.size() + sizeof(uint64_t) - 1) / sizeof(uint64_t), 0);
    if (!in.args.empty()) std::memcpy(out->buf.data(), in.args.data(), in.args.size());
    auto* base = reinterpret_cast<uint8_t*>(out->buf.data());
    for (const wire::ParamInfo& p : layout) {
      if (uint64_t{p.offset} + p.size > in.args.size()) {
        return CuError(CUDA_ERROR_INVALID_VALUE, "argument buffer shorter than the parameters");
      }
      out->ptrs.push_back(base + p.offset);
    }
    CUDA_KERNEL_NODE_PARAMS& p = out->params;
    std::memset(&p, 0, sizeof(p));
    p.func = *f;
    p.gridDimX = in.grid[0];
    p.gridDimY = in.grid[1];
    p.gridDimZ = in.grid[2];
    p.blockDimX = in.block[0];
    p.blockDimY = in.block[1];
    p.blockDimZ = in.block[2];
    p.sharedMemBytes = in.shared_bytes;
    p.kernelParams = out->ptrs.empty() ? nullptr : out->ptrs.data();
    return absl::OkStatus();
  }

  struct KernelEntry {
    Handle library = 0;
    Handle function = 0;  // its CUfunction in ctx_, once looked up
  };

  // CuError with the driver's name for the result, for readable logs.
  absl::Status Check(CUresult r, const char* fn) const {
    if (r == CUDA_SUCCESS) return absl::OkStatus();
    const char* name = nullptr;
    if (cu_.cuGetErrorName(r, &name) != CUDA_SUCCESS || name == nullptr) name = "?";
    return CuError(r, absl::StrCat(fn, " (", name, ")"));
  }

  bool IsKernel(Handle h) {
    absl::ReaderMutexLock lock(&mu_);
    return kernels_.contains(h);
  }

  // The CUfunction to launch for a function or kernel handle.
  absl::StatusOr<CUfunction> FunctionFor(Handle h) {
    {
      absl::ReaderMutexLock lock(&mu_);
      auto it = kernels_.find(h);
      if (it == kernels_.end()) return FromHandle<CUfunction>(h);
      if (it->second.function != 0) return FromHandle<CUfunction>(it->second.function);
    }
    CUfunction f = nullptr;
    WOOLY_RETURN_IF_CU(cu_.cuKernelGetFunction(&f, FromHandle<CUkernel>(h)), "cuKernelGetFunction");
    absl::MutexLock lock(&mu_);
    if (auto it = kernels_.find(h); it != kernels_.end()) it->second.function = ToHandle(f);
    return f;
  }

  absl::Status ParamLayout(Handle h, bool kernel, std::vector<wire::ParamInfo>* out) {
    // CUDA caps a kernel's parameters at 32 KiB, so this loop is bounded.
    for (size_t i = 0; i < 32768; ++i) {
      size_t offset = 0, size = 0;
      const CUresult r = kernel
                             ? cu_.cuKernelGetParamInfo(FromHandle<CUkernel>(h), i, &offset, &size)
                             : cu_.cuFuncGetParamInfo(FromHandle<CUfunction>(h), i, &offset, &size);
      // INVALID_VALUE past the last parameter ends the list.
      if (r == CUDA_ERROR_INVALID_VALUE) return absl::OkStatus();
      if (r != CUDA_SUCCESS) {
        return Check(r, kernel ? "cuKernelGetParamInfo" : "cuFuncGetParamInfo");
      }
      out->push_back(wire::ParamInfo{static_cast<uint32_t>(offset), static_cast<uint32_t>(size)});
    }
    return CuError(CUDA_ERROR_INVALID_VALUE, "parameter list too long");
  }

  // --- Pinned staging.

  // A free slot, created on demand, or nullptr when all are in use or pinned
  // memory is unavailable (the caller then copies directly).
  std::unique_ptr<StagingSlot> TakeSlot() {
    {
      absl::MutexLock lock(&mu_);
      if (!free_staging_.empty()) {
        std::unique_ptr<StagingSlot> slot = std::move(free_staging_.back());
        free_staging_.pop_back();
        return slot;
      }
      if (staging_disabled_ || staging_slots_ >= kMaxStagingSlots) return nullptr;
      ++staging_slots_;
    }
    auto slot = std::make_unique<StagingSlot>();
    bool ok = true;
    for (int i = 0; i < 2 && ok; ++i) {
      ok = cu_.cuMemHostAlloc(&slot->buf[i], kStagingBufferBytes, 0) == CUDA_SUCCESS &&
           cu_.cuEventCreate(&slot->done[i], CU_EVENT_DISABLE_TIMING) == CUDA_SUCCESS;
    }
    if (ok) return slot;
    DestroySlot(*slot);
    absl::MutexLock lock(&mu_);
    --staging_slots_;
    if (!staging_disabled_)
      spdlog::warn("cuda backend: no pinned staging memory, copying directly");
    staging_disabled_ = true;
    return nullptr;
  }

  void ReturnSlot(std::unique_ptr<StagingSlot> slot) {
    absl::MutexLock lock(&mu_);
    free_staging_.push_back(std::move(slot));
  }

  void DestroySlot(StagingSlot& slot) {
    for (int i = 0; i < 2; ++i) {
      if (slot.done[i] != nullptr) {
        if (slot.busy[i]) cu_.cuEventSynchronize(slot.done[i]);
        cu_.cuEventDestroy(slot.done[i]);
      }
      if (slot.buf[i] != nullptr) cu_.cuMemFreeHost(slot.buf[i]);
      slot.done[i] = nullptr;
      slot.buf[i] = nullptr;
      slot.busy[i] = false;
    }
  }

  // Waits until buffer `i` of `slot` is no longer read or written by the GPU.
  absl::Status WaitBuffer(StagingSlot& slot, int i) {
    if (!slot.busy[i]) return absl::OkStatus();
    slot.busy[i] = false;
    return Check(cu_.cuEventSynchronize(slot.done[i]), "cuEventSynchronize");
  }

  // Host -> pinned chunk -> device, alternating buffers so that the memcpy
  // of chunk k+1 overlaps the DMA of chunk k. `s` is nullptr (the legacy
  // stream, ordered like a synchronous copy) for synchronous copies.
  absl::Status StagedHtoD(StagingSlot& slot, DevPtr dst, const void* src, uint64_t size, CUstream s,
                          bool async) {
    const auto* in = static_cast<const uint8_t*>(src);
    absl::Status status;
    int b = 0;
    for (uint64_t off = 0; off < size && status.ok(); off += kStagingBufferBytes, b ^= 1) {
      const uint64_t n = std::min(kStagingBufferBytes, size - off);
      status = WaitBuffer(slot, b);
      if (!status.ok()) break;
      std::memcpy(slot.buf[b], in + off, n);
      status = Check(cu_.cuMemcpyHtoDAsync(dst + off, slot.buf[b], n, s), "cuMemcpyHtoDAsync");
      if (!status.ok()) break;
      status = Check(cu_.cuEventRecord(slot.done[b], s), "cuEventRecord");
      slot.busy[b] = status.ok();
    }
    // An async copy may stay in flight: the next user of the slot waits on
    // its events before touching the buffers. Errors drain it right away.
    if (!async || !status.ok()) {
      for (int i = 0; i < 2; ++i) {
        absl::Status w = WaitBuffer(slot, i);
        if (status.ok()) status = w;
      }
    }
    return status;
  }

  // Device -> pinned chunk -> host; complete when it returns.
  absl::Status StagedDtoH(StagingSlot& slot, void* dst, DevPtr src, uint64_t size, CUstream s) {
    auto* out = static_cast<uint8_t*>(dst);
    // Chunk offset and length currently held by each buffer.
    uint64_t held_off[2] = {0, 0};
    uint64_t held_len[2] = {0, 0};
    auto drain = [&](int i) -> absl::Status {
      if (held_len[i] == 0) return WaitBuffer(slot, i);
      absl::Status w = WaitBuffer(slot, i);
      if (w.ok()) std::memcpy(out + held_off[i], slot.buf[i], held_len[i]);
      held_len[i] = 0;
      return w;
    };
    absl::Status status;
    int b = 0;
    for (uint64_t off = 0; off < size; off += kStagingBufferBytes, b ^= 1) {
      const uint64_t n = std::min(kStagingBufferBytes, size - off);
      status = drain(b);  // chunk k-2 (its DMA was issued before chunk k-1's)
      if (!status.ok()) break;
      status = Check(cu_.cuMemcpyDtoHAsync(slot.buf[b], src + off, n, s), "cuMemcpyDtoHAsync");
      if (!status.ok()) break;
      status = Check(cu_.cuEventRecord(slot.done[b], s), "cuEventRecord");
      if (!status.ok()) break;
      slot.busy[b] = true;
      held_off[b] = off;
      held_len[b] = n;
    }
    // The older of the two outstanding chunks sits in buffer b.
    for (int i : {b, b ^ 1}) {
      absl::Status d = drain(i);
      if (status.ok()) status = d;
    }
    return status;
  }

  const LoadedDriver driver_;
  const DriverApi cu_;
  const CUdevice device_;
  // The retained primary context; replaced by ResetContext, null when a
  // reset failed to retain a new one.
  std::atomic<CUcontext> ctx_;
  wire::DeviceInfo info_;  // written by Init() only

  // Splits the device's SMs into partition units once (8 SMs on an H100,
  // whose 132 SMs give 15 units and 12 SMs outside them).
  absl::Status SplitSmsLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (!sm_units_.empty()) return absl::OkStatus();
    if (cu_.cuDeviceGetDevResource == nullptr || cu_.cuDevSmResourceSplitByCount == nullptr ||
        cu_.cuDevResourceGenerateDesc == nullptr || cu_.cuGreenCtxCreate == nullptr ||
        cu_.cuGreenCtxDestroy == nullptr || cu_.cuGreenCtxStreamCreate == nullptr) {
      return absl::UnimplementedError("the driver has no green contexts");
    }
    CUdevResource all;
    std::memset(&all, 0, sizeof(all));
    WOOLY_RETURN_IF_CU(cu_.cuDeviceGetDevResource(device_, &all, CU_DEV_RESOURCE_TYPE_SM),
                       "cuDeviceGetDevResource");
    const unsigned min_count = std::max(1u, all.sm.minSmPartitionSize);
    unsigned groups = 0;
    WOOLY_RETURN_IF_CU(
        cu_.cuDevSmResourceSplitByCount(nullptr, &groups, &all, nullptr, 0, min_count),
        "cuDevSmResourceSplitByCount");
    if (groups == 0) return absl::UnimplementedError("the device's SMs do not split");
    std::vector<CUdevResource> units(groups);
    CUdevResource remaining;
    WOOLY_RETURN_IF_CU(
        cu_.cuDevSmResourceSplitByCount(units.data(), &groups, &all, &remaining, 0, min_count),
        "cuDevSmResourceSplitByCount");
    units.resize(groups);
    sm_total_ = all.sm.smCount;
    sm_units_ = std::move(units);
    sm_rest_ = remaining;
    return absl::OkStatus();
  }

  absl::Mutex mu_;
  // The SM split (SplitSmsLocked) and the green contexts made from it.
  unsigned sm_total_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<CUdevResource> sm_units_ ABSL_GUARDED_BY(mu_);
  CUdevResource sm_rest_ ABSL_GUARDED_BY(mu_) = {};  // the SMs outside every unit
  std::set<Handle> partitions_ ABSL_GUARDED_BY(mu_);
  // Kernels handed out by LibraryGetKernel: parameter info and attributes
  // of a CUkernel need the cuKernel* calls.
  absl::flat_hash_map<Handle, KernelEntry> kernels_ ABSL_GUARDED_BY(mu_);
  std::vector<std::unique_ptr<StagingSlot>> free_staging_ ABSL_GUARDED_BY(mu_);
  // Objects that may outlive the context, for ResetContext to release:
  // libraries, pools, VMM mappings (base -> size), generic allocation handles
  // (-> references held) and VA reservations (base -> size).
  std::set<Handle> libraries_ ABSL_GUARDED_BY(mu_);
  std::set<Handle> pools_ ABSL_GUARDED_BY(mu_);
  std::map<DevPtr, uint64_t> mappings_ ABSL_GUARDED_BY(mu_);
  std::map<Handle, int> handles_ ABSL_GUARDED_BY(mu_);
  std::map<DevPtr, uint64_t> reservations_ ABSL_GUARDED_BY(mu_);
  int staging_slots_ ABSL_GUARDED_BY(mu_) = 0;
  bool staging_disabled_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace

absl::StatusOr<std::unique_ptr<GpuBackend>> CreateCudaBackend(int device_ordinal) {
  if (device_ordinal < 0) {
    return CuError(CUDA_ERROR_INVALID_DEVICE, absl::StrCat("device ordinal ", device_ordinal));
  }
  absl::StatusOr<LoadedDriver> driver = OpenDriver();
  if (!driver.ok()) return driver.status();

  DriverApi api;
  if (absl::Status s = ResolveAll(*driver, &api); !s.ok()) {
    ::dlclose(driver->handle);
    return s;
  }
  const std::string& path = driver->path;
  if (CUresult r = api.cuInit(0); r != CUDA_SUCCESS) {
    return CuError(r, absl::StrCat("cuInit with the driver ", path,
                                   r == CUDA_ERROR_NO_DEVICE ? " (no CUDA device)" : ""));
  }
  CUdevice dev = 0;
  if (CUresult r = api.cuDeviceGet(&dev, device_ordinal); r != CUDA_SUCCESS) {
    return CuError(r, absl::StrCat("cuDeviceGet(", device_ordinal, ")"));
  }
  CUcontext ctx = nullptr;
  if (CUresult r = api.cuDevicePrimaryCtxRetain(&ctx, dev); r != CUDA_SUCCESS) {
    return CuError(r, absl::StrCat("cuDevicePrimaryCtxRetain(device ", device_ordinal, ")"));
  }
  // From here the backend owns the retained context.
  auto backend = std::make_unique<CudaBackend>(*std::move(driver), api, dev, ctx);
  if (absl::Status s = backend->Init(); !s.ok()) return s;
  return std::unique_ptr<GpuBackend>(std::move(backend));
}

}  // namespace wooly::server
