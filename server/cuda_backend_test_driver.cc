// A stand-in CUDA driver for cuda_backend_test: loaded by CudaBackend through
// $WOOLY_REAL_LIBCUDA, it exports only cuGetProcAddress_v2 (as the backend
// needs) plus mock_* introspection hooks for the test. "Device" memory is
// host memory, so device pointers can be checked directly; every copy runs
// synchronously. Not thread-safe beyond what the single-threaded test needs.
#include <cuda.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <map>
#include <set>
#include <string>
#include <vector>

#ifdef MOCK_PRETEND_WOOLY
// Makes this module look like Wooly's client library to the backend.
extern "C" __attribute__((used, visibility("default"))) const char mock_marker[] = "WOOLY_SERVER";
#endif

namespace {

struct Stats {
  int host_allocs = 0;
  int htod_async = 0;
  int dtoh_async = 0;
  int htod_sync = 0;
  int dtoh_sync = 0;
  int param_info_func = 0;
  int param_info_kernel = 0;
  int launches = 0;
  uint32_t last_grid[3] = {};
  uint32_t last_block[3] = {};
  uint32_t last_shared = 0;
  uint32_t last_num_attrs = 0;
  uint32_t last_attr_id = 0;
  int32_t last_attr_int = 0;
  uintptr_t last_func = 0;
  uintptr_t last_stream = 0;
  std::vector<uint8_t> last_args;
  bool last_extra_null = false;
  int ctx_retains = 0;
  int ctx_releases = 0;
  int ctx_resets = 0;
  int library_unloads = 0;
};
Stats g_stats;

std::set<uintptr_t> g_allocs;
thread_local CUcontext t_ctx = nullptr;

CUcontext const kCtx = reinterpret_cast<CUcontext>(0x1000);
CUmodule const kModule = reinterpret_cast<CUmodule>(0x2000);
CUlibrary const kLibrary = reinterpret_cast<CUlibrary>(0x3000);
CUfunction const kFunc2 = reinterpret_cast<CUfunction>(0x4002);  // (ptr, int)
CUfunction const kFunc0 = reinterpret_cast<CUfunction>(0x4000);  // ()
CUkernel const kKernel = reinterpret_cast<CUkernel>(0x5003);     // 3 params
CUfunction const kKernelFunc = reinterpret_cast<CUfunction>(0x4003);
uint8_t g_global[64];
uintptr_t g_next_handle = 0x10000;

#define API extern "C" CUresult

API mInit(unsigned) { return CUDA_SUCCESS; }
API mGetErrorName(CUresult r, const char** s) {
  switch (r) {
    case CUDA_ERROR_INVALID_VALUE:
      *s = "CUDA_ERROR_INVALID_VALUE";
      return CUDA_SUCCESS;
    case CUDA_ERROR_NOT_FOUND:
      *s = "CUDA_ERROR_NOT_FOUND";
      return CUDA_SUCCESS;
    case CUDA_ERROR_INVALID_HANDLE:
      *s = "CUDA_ERROR_INVALID_HANDLE";
      return CUDA_SUCCESS;
    case CUDA_ERROR_INVALID_DEVICE:
      *s = "CUDA_ERROR_INVALID_DEVICE";
      return CUDA_SUCCESS;
    default:
      *s = nullptr;
      return CUDA_ERROR_INVALID_VALUE;
  }
}
API mDriverGetVersion(int* v) {
  *v = 13000;
  return CUDA_SUCCESS;
}
API mDeviceGet(CUdevice* d, int ordinal) {
  if (ordinal != 0) return CUDA_ERROR_INVALID_DEVICE;
  *d = 0;
  return CUDA_SUCCESS;
}
API mDeviceGetName(char* name, int len, CUdevice) {
  std::strncpy(name, "Mock GPU", static_cast<size_t>(len));
  return CUDA_SUCCESS;
}
API mDeviceGetUuid(CUuuid* u, CUdevice) {
  for (int i = 0; i < 16; ++i) u->bytes[i] = static_cast<char>(i + 1);
  return CUDA_SUCCESS;
}
API mDeviceTotalMem(size_t* b, CUdevice) {
  *b = size_t{1} << 30;
  return CUDA_SUCCESS;
}
API mDeviceGetAttribute(int* v, CUdevice_attribute a, CUdevice) {
  if (a == 7) return CUDA_ERROR_INVALID_VALUE;  // an attribute this "driver" lacks
  *v = static_cast<int>(a) * 10;
  return CUDA_SUCCESS;
}
API mPrimaryCtxRetain(CUcontext* c, CUdevice) {
  ++g_stats.ctx_retains;
  *c = kCtx;
  return CUDA_SUCCESS;
}
API mPrimaryCtxRelease(CUdevice) {
  ++g_stats.ctx_releases;
  return CUDA_SUCCESS;
}
// Destroys the context's allocations, as the driver does.
API mPrimaryCtxReset(CUdevice) {
  ++g_stats.ctx_resets;
  for (uintptr_t p : g_allocs) std::free(reinterpret_cast<void*>(p));
  g_allocs.clear();
  return CUDA_SUCCESS;
}
API mCtxSetCurrent(CUcontext c) {
  t_ctx = c;
  return CUDA_SUCCESS;
}
API mCtxGetStreamPriorityRange(int* least, int* greatest) {
  if (t_ctx != kCtx) return CUDA_ERROR_INVALID_CONTEXT;
  *least = 0;
  *greatest = -5;
  return CUDA_SUCCESS;
}
API mCtxSynchronize(CUcontext c) { return c == kCtx ? CUDA_SUCCESS : CUDA_ERROR_INVALID_CONTEXT; }
API mMemGetInfo(size_t* f, size_t* t) {
  *f = 1000;
  *t = 2000;
  return CUDA_SUCCESS;
}
API mMemAlloc(CUdeviceptr* p, size_t n) {
  if (n == 0) return CUDA_ERROR_INVALID_VALUE;
  if (n > (size_t{1} << 40)) return CUDA_ERROR_OUT_OF_MEMORY;
  void* m = std::malloc(n);
  if (m == nullptr) return CUDA_ERROR_OUT_OF_MEMORY;
  *p = reinterpret_cast<CUdeviceptr>(m);
  g_allocs.insert(*p);
  return CUDA_SUCCESS;
}
API mMemFree(CUdeviceptr p) {
  if (g_allocs.erase(p) == 0) return CUDA_ERROR_INVALID_VALUE;
  std::free(reinterpret_cast<void*>(p));
  return CUDA_SUCCESS;
}
API mMemHostAlloc(void** p, size_t n, unsigned) {
  ++g_stats.host_allocs;
  *p = std::malloc(n);
  return *p ? CUDA_SUCCESS : CUDA_ERROR_OUT_OF_MEMORY;
}
API mMemFreeHost(void* p) {
  std::free(p);
  return CUDA_SUCCESS;
}
API mMemHostRegister(void*, size_t, unsigned) { return CUDA_SUCCESS; }
API mMemHostUnregister(void*) { return CUDA_SUCCESS; }
void* D(CUdeviceptr p) { return reinterpret_cast<void*>(p); }
API mMemcpyHtoD(CUdeviceptr d, const void* s, size_t n) {
  ++g_stats.htod_sync;
  std::memcpy(D(d), s, n);
  return CUDA_SUCCESS;
}
API mMemcpyDtoH(void* d, CUdeviceptr s, size_t n) {
  ++g_stats.dtoh_sync;
  std::memcpy(d, D(s), n);
  return CUDA_SUCCESS;
}
API mMemcpyDtoD(CUdeviceptr d, CUdeviceptr s, size_t n) {
  std::memmove(D(d), D(s), n);
  return CUDA_SUCCESS;
}
API mMemcpyHtoDAsync(CUdeviceptr d, const void* s, size_t n, CUstream) {
  ++g_stats.htod_async;
  std::memcpy(D(d), s, n);
  return CUDA_SUCCESS;
}
API mMemcpyDtoHAsync(void* d, CUdeviceptr s, size_t n, CUstream) {
  ++g_stats.dtoh_async;
  std::memcpy(d, D(s), n);
  return CUDA_SUCCESS;
}
API mMemcpyDtoDAsync(CUdeviceptr d, CUdeviceptr s, size_t n, CUstream) {
  std::memmove(D(d), D(s), n);
  return CUDA_SUCCESS;
}
API mMemcpy3D(const CUDA_MEMCPY3D* c) {
  auto base = [](CUmemorytype t, const void* host, CUdeviceptr dev) -> uint8_t* {
    return t == CU_MEMORYTYPE_HOST ? static_cast<uint8_t*>(const_cast<void*>(host))
                                   : reinterpret_cast<uint8_t*>(dev);
  };
  uint8_t* src = base(c->srcMemoryType, c->srcHost, c->srcDevice);
  uint8_t* dst = base(c->dstMemoryType, c->dstHost, c->dstDevice);
  if (src == nullptr || dst == nullptr || c->srcPitch < c->WidthInBytes ||
      c->dstPitch < c->WidthInBytes) {
    return CUDA_ERROR_INVALID_VALUE;
  }
  for (size_t z = 0; z < c->Depth; ++z) {
    for (size_t y = 0; y < c->Height; ++y) {
      const size_t so = ((c->srcZ + z) * c->srcHeight + c->srcY + y) * c->srcPitch + c->srcXInBytes;
      const size_t dso =
          ((c->dstZ + z) * c->dstHeight + c->dstY + y) * c->dstPitch + c->dstXInBytes;
      std::memcpy(dst + dso, src + so, c->WidthInBytes);
    }
  }
  return CUDA_SUCCESS;
}
API mMemcpy3DAsync(const CUDA_MEMCPY3D* c, CUstream) { return mMemcpy3D(c); }

template <typename T>
CUresult Set2D(CUdeviceptr d, size_t pitch, T v, size_t w, size_t h) {
  for (size_t y = 0; y < h; ++y) {
    T* row = reinterpret_cast<T*>(d + y * pitch);
    for (size_t x = 0; x < w; ++x) row[x] = v;
  }
  return CUDA_SUCCESS;
}
API mMemsetD8(CUdeviceptr d, unsigned char v, size_t n) { return Set2D(d, 0, v, n, 1); }
API mMemsetD16(CUdeviceptr d, unsigned short v, size_t n) { return Set2D(d, 0, v, n, 1); }
API mMemsetD32(CUdeviceptr d, unsigned v, size_t n) { return Set2D(d, 0, v, n, 1); }
API mMemsetD2D8(CUdeviceptr d, size_t p, unsigned char v, size_t w, size_t h) {
  return Set2D(d, p, v, w, h);
}
API mMemsetD2D16(CUdeviceptr d, size_t p, unsigned short v, size_t w, size_t h) {
  return Set2D(d, p, v, w, h);
}
API mMemsetD2D32(CUdeviceptr d, size_t p, unsigned v, size_t w, size_t h) {
  return Set2D(d, p, v, w, h);
}
API mMemsetD8Async(CUdeviceptr d, unsigned char v, size_t n, CUstream) {
  return Set2D(d, 0, v, n, 1);
}
API mMemsetD16Async(CUdeviceptr d, unsigned short v, size_t n, CUstream) {
  return Set2D(d, 0, v, n, 1);
}
API mMemsetD32Async(CUdeviceptr d, unsigned v, size_t n, CUstream) { return Set2D(d, 0, v, n, 1); }
API mMemsetD2D8Async(CUdeviceptr d, size_t p, unsigned char v, size_t w, size_t h, CUstream) {
  return Set2D(d, p, v, w, h);
}
API mMemsetD2D16Async(CUdeviceptr d, size_t p, unsigned short v, size_t w, size_t h, CUstream) {
  return Set2D(d, p, v, w, h);
}
API mMemsetD2D32Async(CUdeviceptr d, size_t p, unsigned v, size_t w, size_t h, CUstream) {
  return Set2D(d, p, v, w, h);
}

API mModuleLoadData(CUmodule* m, const void* image) {
  if (std::strcmp(static_cast<const char*>(image), "MOCK") != 0) return CUDA_ERROR_INVALID_IMAGE;
  *m = kModule;
  return CUDA_SUCCESS;
}
API mModuleUnload(CUmodule m) { return m == kModule ? CUDA_SUCCESS : CUDA_ERROR_INVALID_HANDLE; }
API mModuleGetFunction(CUfunction* f, CUmodule m, const char* name) {
  if (m != kModule) return CUDA_ERROR_INVALID_HANDLE;
  if (std::strcmp(name, "k2") == 0)
    *f = kFunc2;
  else if (std::strcmp(name, "k0") == 0)
    *f = kFunc0;
  else
    return CUDA_ERROR_NOT_FOUND;
  return CUDA_SUCCESS;
}
API mModuleGetGlobal(CUdeviceptr* p, size_t* n, CUmodule m, const char* name) {
  if (m != kModule) return CUDA_ERROR_INVALID_HANDLE;
  if (std::strcmp(name, "g") != 0) return CUDA_ERROR_NOT_FOUND;
  *p = reinterpret_cast<CUdeviceptr>(g_global);
  *n = sizeof(g_global);
  return CUDA_SUCCESS;
}
API mModuleGetFunctionCount(unsigned* n, CUmodule) {
  *n = 2;
  return CUDA_SUCCESS;
}
API mLibraryLoadData(CUlibrary* l, const void* code, CUjit_option*, void**, unsigned,
                     CUlibraryOption*, void**, unsigned) {
  if (std::strcmp(static_cast<const char*>(code), "MOCK") != 0) return CUDA_ERROR_INVALID_IMAGE;
  *l = kLibrary;
  return CUDA_SUCCESS;
}
API mLibraryUnload(CUlibrary) {
  ++g_stats.library_unloads;
  return CUDA_SUCCESS;
}
API mLibraryGetKernel(CUkernel* k, CUlibrary, const char* name) {
  if (std::strcmp(name, "k3") != 0) return CUDA_ERROR_NOT_FOUND;
  *k = kKernel;
  return CUDA_SUCCESS;
}
API mLibraryGetModule(CUmodule* m, CUlibrary) {
  *m = kModule;
  return CUDA_SUCCESS;
}
API mLibraryGetGlobal(CUdeviceptr* p, size_t* n, CUlibrary, const char* name) {
  return mModuleGetGlobal(p, n, kModule, name);
}
API mKernelGetFunction(CUfunction* f, CUkernel k) {
  if (k != kKernel) return CUDA_ERROR_INVALID_HANDLE;
  *f = kKernelFunc;
  return CUDA_SUCCESS;
}
API mKernelGetParamInfo(CUkernel k, size_t i, size_t* off, size_t* size) {
  ++g_stats.param_info_kernel;
  if (k != kKernel) return CUDA_ERROR_INVALID_HANDLE;
  if (i >= 3) return CUDA_ERROR_INVALID_VALUE;
  *off = i * 8;
  *size = 8;
  return CUDA_SUCCESS;
}
API mFuncGetParamInfo(CUfunction f, size_t i, size_t* off, size_t* size) {
  ++g_stats.param_info_func;
  if (f == kFunc0) return CUDA_ERROR_INVALID_VALUE;
  if (f != kFunc2 && f != kKernelFunc) return CUDA_ERROR_INVALID_HANDLE;
  if (i >= 2) return CUDA_ERROR_INVALID_VALUE;
  *off = i * 8;
  *size = i == 0 ? 8 : 4;
  return CUDA_SUCCESS;
}
API mKernelGetAttribute(int* v, CUfunction_attribute a, CUkernel k, CUdevice) {
  if (k != kKernel) return CUDA_ERROR_INVALID_HANDLE;
  *v = 1000 + static_cast<int>(a);
  return CUDA_SUCCESS;
}
API mKernelSetAttribute(CUfunction_attribute, int, CUkernel k, CUdevice) {
  return k == kKernel ? CUDA_SUCCESS : CUDA_ERROR_INVALID_HANDLE;
}
API mFuncGetAttribute(int* v, CUfunction_attribute a, CUfunction f) {
  if (f != kFunc2 && f != kFunc0) return CUDA_ERROR_INVALID_HANDLE;
  *v = static_cast<int>(a);
  return CUDA_SUCCESS;
}
API mFuncSetAttribute(CUfunction f, CUfunction_attribute, int) {
  return f == kFunc2 || f == kFunc0 ? CUDA_SUCCESS : CUDA_ERROR_INVALID_HANDLE;
}
API mLaunchKernelEx(const CUlaunchConfig* c, CUfunction f, void** params, void** extra) {
  if (params != nullptr) return CUDA_ERROR_INVALID_VALUE;  // the backend always uses extra
  Stats& s = g_stats;
  ++s.launches;
  s.last_grid[0] = c->gridDimX;
  s.last_grid[1] = c->gridDimY;
  s.last_grid[2] = c->gridDimZ;
  s.last_block[0] = c->blockDimX;
  s.last_block[1] = c->blockDimY;
  s.last_block[2] = c->blockDimZ;
  s.last_shared = c->sharedMemBytes;
  s.last_num_attrs = c->numAttrs;
  if (c->numAttrs > 0) {
    s.last_attr_id = c->attrs[0].id;
    std::memcpy(&s.last_attr_int, &c->attrs[0].value, sizeof(int32_t));
  }
  s.last_func = reinterpret_cast<uintptr_t>(f);
  s.last_stream = reinterpret_cast<uintptr_t>(c->hStream);
  s.last_args.clear();
  s.last_extra_null = extra == nullptr;
  if (extra != nullptr) {
    if (extra[0] != CU_LAUNCH_PARAM_BUFFER_POINTER || extra[2] != CU_LAUNCH_PARAM_BUFFER_SIZE ||
        extra[4] != CU_LAUNCH_PARAM_END) {
      return CUDA_ERROR_INVALID_VALUE;
    }
    if (reinterpret_cast<uintptr_t>(extra[1]) % 8 != 0) return CUDA_ERROR_MISALIGNED_ADDRESS;
    const size_t n = *static_cast<size_t*>(extra[3]);
    const auto* p = static_cast<const uint8_t*>(extra[1]);
    s.last_args.assign(p, p + n);
  }
  return CUDA_SUCCESS;
}
template <typename T>
CUresult NewHandle(T* out) {
  *out = reinterpret_cast<T>(g_next_handle++);
  return CUDA_SUCCESS;
}
API mStreamCreateWithPriority(CUstream* s, unsigned, int) { return NewHandle(s); }
API mStreamDestroy(CUstream) { return CUDA_SUCCESS; }
API mStreamSynchronize(CUstream) { return CUDA_SUCCESS; }
API mStreamQuery(CUstream) { return CUDA_SUCCESS; }
API mStreamWaitEvent(CUstream, CUevent, unsigned) { return CUDA_SUCCESS; }
API mEventCreate(CUevent* e, unsigned) { return NewHandle(e); }
API mEventRecord(CUevent, CUstream) { return CUDA_SUCCESS; }
API mEventRecordWithFlags(CUevent, CUstream, unsigned) { return CUDA_SUCCESS; }
API mEventSynchronize(CUevent) { return CUDA_SUCCESS; }
API mEventQuery(CUevent) { return CUDA_ERROR_NOT_READY; }
API mEventElapsedTime(float* ms, CUevent, CUevent) {
  *ms = 1.5f;
  return CUDA_SUCCESS;
}
API mEventDestroy(CUevent) { return CUDA_SUCCESS; }

struct Entry {
  const char* name;
  void* fn;
};
#define E(name, fn) \
  { #name, reinterpret_cast < void*>(&fn) }
const Entry kEntries[] = {
    E(cuInit, mInit),
    E(cuGetErrorName, mGetErrorName),
    E(cuDriverGetVersion, mDriverGetVersion),
    E(cuDeviceGet, mDeviceGet),
    E(cuDeviceGetName, mDeviceGetName),
    E(cuDeviceGetUuid, mDeviceGetUuid),
    E(cuDeviceTotalMem, mDeviceTotalMem),
    E(cuDeviceGetAttribute, mDeviceGetAttribute),
    E(cuDevicePrimaryCtxRetain, mPrimaryCtxRetain),
    E(cuDevicePrimaryCtxRelease, mPrimaryCtxRelease),
    E(cuDevicePrimaryCtxReset, mPrimaryCtxReset),
    E(cuCtxSetCurrent, mCtxSetCurrent),
    E(cuCtxGetStreamPriorityRange, mCtxGetStreamPriorityRange),
    E(cuCtxSynchronize, mCtxSynchronize),
    E(cuMemGetInfo, mMemGetInfo),
    E(cuMemAlloc, mMemAlloc),
    E(cuMemFree, mMemFree),
    E(cuMemHostAlloc, mMemHostAlloc),
    E(cuMemFreeHost, mMemFreeHost),
    E(cuMemHostRegister, mMemHostRegister),
    E(cuMemHostUnregister, mMemHostUnregister),
    E(cuMemcpyHtoD, mMemcpyHtoD),
    E(cuMemcpyDtoH, mMemcpyDtoH),
    E(cuMemcpyDtoD, mMemcpyDtoD),
    E(cuMemcpyHtoDAsync, mMemcpyHtoDAsync),
    E(cuMemcpyDtoHAsync, mMemcpyDtoHAsync),
    E(cuMemcpyDtoDAsync, mMemcpyDtoDAsync),
    E(cuMemcpy3D, mMemcpy3D),
    E(cuMemcpy3DAsync, mMemcpy3DAsync),
    E(cuMemsetD8, mMemsetD8),
    E(cuMemsetD16, mMemsetD16),
    E(cuMemsetD32, mMemsetD32),
    E(cuMemsetD2D8, mMemsetD2D8),
    E(cuMemsetD2D16, mMemsetD2D16),
    E(cuMemsetD2D32, mMemsetD2D32),
    E(cuMemsetD8Async, mMemsetD8Async),
    E(cuMemsetD16Async, mMemsetD16Async),
    E(cuMemsetD32Async, mMemsetD32Async),
    E(cuMemsetD2D8Async, mMemsetD2D8Async),
    E(cuMemsetD2D16Async, mMemsetD2D16Async),
    E(cuMemsetD2D32Async, mMemsetD2D32Async),
    E(cuModuleLoadData, mModuleLoadData),
    E(cuModuleUnload, mModuleUnload),
    E(cuModuleGetFunction, mModuleGetFunction),
    E(cuModuleGetGlobal, mModuleGetGlobal),
    E(cuModuleGetFunctionCount, mModuleGetFunctionCount),
    E(cuLibraryLoadData, mLibraryLoadData),
    E(cuLibraryUnload, mLibraryUnload),
    E(cuLibraryGetKernel, mLibraryGetKernel),
    E(cuLibraryGetModule, mLibraryGetModule),
    E(cuLibraryGetGlobal, mLibraryGetGlobal),
    E(cuKernelGetFunction, mKernelGetFunction),
    E(cuKernelGetParamInfo, mKernelGetParamInfo),
    E(cuKernelGetAttribute, mKernelGetAttribute),
    E(cuKernelSetAttribute, mKernelSetAttribute),
    E(cuFuncGetParamInfo, mFuncGetParamInfo),
    E(cuFuncGetAttribute, mFuncGetAttribute),
    E(cuFuncSetAttribute, mFuncSetAttribute),
    E(cuLaunchKernelEx, mLaunchKernelEx),
    E(cuStreamCreateWithPriority, mStreamCreateWithPriority),
    E(cuStreamDestroy, mStreamDestroy),
    E(cuStreamSynchronize, mStreamSynchronize),
    E(cuStreamQuery, mStreamQuery),
    E(cuStreamWaitEvent, mStreamWaitEvent),
    E(cuEventCreate, mEventCreate),
    E(cuEventRecord, mEventRecord),
    E(cuEventRecordWithFlags, mEventRecordWithFlags),
    E(cuEventSynchronize, mEventSynchronize),
    E(cuEventQuery, mEventQuery),
    E(cuEventElapsedTime, mEventElapsedTime),
    E(cuEventDestroy, mEventDestroy),
};
#undef E

}  // namespace

extern "C" __attribute__((visibility("default"))) CUresult cuGetProcAddress_v2(
    const char* symbol, void** pfn, int version, cuuint64_t flags,
    CUdriverProcAddressQueryResult* found) {
  if (version != 13000 || flags != CU_GET_PROC_ADDRESS_DEFAULT) return CUDA_ERROR_INVALID_VALUE;
  for (const Entry& e : kEntries) {
    if (std::strcmp(e.name, symbol) == 0) {
      *pfn = e.fn;
      if (found) *found = CU_GET_PROC_ADDRESS_SUCCESS;
      return CUDA_SUCCESS;
    }
  }
  *pfn = nullptr;
  if (found) *found = CU_GET_PROC_ADDRESS_SYMBOL_NOT_FOUND;
  return CUDA_ERROR_NOT_FOUND;
}

// Test introspection: a counter or last-launch field by name, -1 if unknown.
extern "C" __attribute__((visibility("default"))) int64_t mock_get(const char* key) {
  const Stats& s = g_stats;
  const std::map<std::string, int64_t> values = {
      {"host_allocs", s.host_allocs},
      {"htod_async", s.htod_async},
      {"dtoh_async", s.dtoh_async},
      {"htod_sync", s.htod_sync},
      {"dtoh_sync", s.dtoh_sync},
      {"param_info_func", s.param_info_func},
      {"param_info_kernel", s.param_info_kernel},
      {"launches", s.launches},
      {"grid0", s.last_grid[0]},
      {"grid1", s.last_grid[1]},
      {"grid2", s.last_grid[2]},
      {"block0", s.last_block[0]},
      {"shared", s.last_shared},
      {"num_attrs", s.last_num_attrs},
      {"attr_id", s.last_attr_id},
      {"attr_int", s.last_attr_int},
      {"func", static_cast<int64_t>(s.last_func)},
      {"stream", static_cast<int64_t>(s.last_stream)},
      {"extra_null", s.last_extra_null},
      {"live_allocs", static_cast<int64_t>(g_allocs.size())},
      {"ctx_retains", s.ctx_retains},
      {"ctx_releases", s.ctx_releases},
      {"ctx_resets", s.ctx_resets},
      {"library_unloads", s.library_unloads},
  };
  auto it = values.find(key);
  return it == values.end() ? -1 : it->second;
}

// The argument buffer of the last launch.
extern "C" __attribute__((visibility("default"))) const uint8_t* mock_last_args(size_t* n) {
  *n = g_stats.last_args.size();
  return g_stats.last_args.data();
}
