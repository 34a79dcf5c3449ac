// Kernel launches: arguments are packed client-side with the cached
// parameter layout (param_pack.h) and sent with the launch configuration in
// one kLaunchKernel request, without waiting for a reply. The checks the
// driver makes at launch time on the configuration alone are made here, so
// they still fail at the call; the rest (e.g. too much shared memory for
// the function) are reported at the next synchronization.
#include <cstring>
#include <vector>

#include "api.h"
#include "capture.h"
#include "driver.h"
#include "param_pack.h"

namespace wooly::client {
namespace {

struct LaunchDims {
  unsigned grid[3];
  unsigned block[3];
  unsigned shared_bytes;
};

// The device limits the driver checks a launch configuration against.
CUresult CheckDims(const LaunchDims& dims) {
  const std::vector<int32_t>& a = Device().attributes;
  auto attr = [&](CUdevice_attribute i) {
    return static_cast<size_t>(i) < a.size() ? a[static_cast<size_t>(i)] : 0;
  };
  const CUdevice_attribute grid_max[3] = {CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_X,
                                          CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_Y,
                                          CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_Z};
  const CUdevice_attribute block_max[3] = {CU_DEVICE_ATTRIBUTE_MAX_BLOCK_DIM_X,
                                           CU_DEVICE_ATTRIBUTE_MAX_BLOCK_DIM_Y,
                                           CU_DEVICE_ATTRIBUTE_MAX_BLOCK_DIM_Z};
  uint64_t threads = 1;
  for (int i = 0; i < 3; ++i) {
    if (dims.grid[i] == 0 || dims.block[i] == 0) return CUDA_ERROR_INVALID_VALUE;
    const int32_t gmax = attr(grid_max[i]), bmax = attr(block_max[i]);
    if (gmax > 0 && dims.grid[i] > static_cast<uint32_t>(gmax)) return CUDA_ERROR_INVALID_VALUE;
    if (bmax > 0 && dims.block[i] > static_cast<uint32_t>(bmax)) return CUDA_ERROR_INVALID_VALUE;
    threads *= dims.block[i];
  }
  const int32_t tmax = attr(CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_BLOCK);
  if (tmax > 0 && threads > static_cast<uint64_t>(tmax)) return CUDA_ERROR_INVALID_VALUE;
  const int32_t smax = attr(CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN);
  if (smax > 0 && dims.shared_bytes > static_cast<uint32_t>(smax)) return CUDA_ERROR_INVALID_VALUE;
  return CUDA_SUCCESS;
}

CUresult Launch(CUfunction f, const LaunchDims& dims, CUstream stream, bool ptds,
                const CUlaunchAttribute* attrs, unsigned n_attrs, void** kernel_params,
                void** extra) {
  if (CUresult r = RequireContext(); r != CUDA_SUCCESS) return r;
  Callable* c = AsCallable(f);
  if (c == nullptr) return CUDA_ERROR_INVALID_HANDLE;
  if (n_attrs > 0 && attrs == nullptr) return CUDA_ERROR_INVALID_VALUE;
  if (CUresult r = CheckDims(dims); r != CUDA_SUCCESS) return r;
  uint64_t stream_id = 0;
  if (CUresult r = ResolveStream(stream, ptds, &stream_id); r != CUDA_SUCCESS) return r;
  if (CUresult r = CaptureCheckWork(stream_id); r != CUDA_SUCCESS) return r;
  // Reused per thread: launches are frequent and the buffer rarely grows.
  thread_local std::vector<uint8_t> args;
  if (CUresult r = PackKernelParams(c->layout, kernel_params, extra, &args); r != CUDA_SUCCESS) {
    return r;
  }
  wire::Writer w;
  w.data().reserve(64 + 68 * n_attrs);  // one allocation per launch
  w.Put<uint64_t>(c->id);
  for (unsigned g : dims.grid) w.Put<uint32_t>(g);
  for (unsigned b : dims.block) w.Put<uint32_t>(b);
  w.Put<uint32_t>(dims.shared_bytes).Put<uint64_t>(stream_id).Put<uint32_t>(n_attrs);
  for (unsigned i = 0; i < n_attrs; ++i) {
    static_assert(sizeof(attrs[i].value) == 64);
    w.Put<uint32_t>(static_cast<uint32_t>(attrs[i].id)).PutRaw(&attrs[i].value, 64);
  }
  // "bytes args": the length in the body, the buffer as the tail.
  w.Put<uint64_t>(args.size());
  return Post(wire::Op::kLaunchKernel, w, args.data(), args.size());
}

CUresult LaunchKernel(CUfunction f, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by,
                      unsigned bz, unsigned shared, CUstream stream, void** params, void** extra,
                      bool ptds) {
  const LaunchDims dims{{gx, gy, gz}, {bx, by, bz}, shared};
  return Launch(f, dims, stream, ptds, nullptr, 0, params, extra);
}

CUresult LaunchKernelEx(const CUlaunchConfig* config, CUfunction f, void** params, void** extra,
                        bool ptds) {
  if (!Initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  if (config == nullptr) return CUDA_ERROR_INVALID_VALUE;
  const LaunchDims dims{{config->gridDimX, config->gridDimY, config->gridDimZ},
                        {config->blockDimX, config->blockDimY, config->blockDimZ},
                        config->sharedMemBytes};
  return Launch(f, dims, config->hStream, ptds, config->attrs, config->numAttrs, params, extra);
}

}  // namespace
}  // namespace wooly::client

using namespace wooly::client;  // NOLINT: the C entry points live at global scope
namespace wire = ::wooly::wire;

WOOLY_EXPORT CUresult CUDAAPI cuLaunchKernel(CUfunction f, unsigned int gridDimX,
                                             unsigned int gridDimY, unsigned int gridDimZ,
                                             unsigned int blockDimX, unsigned int blockDimY,
                                             unsigned int blockDimZ, unsigned int sharedMemBytes,
                                             CUstream hStream, void** kernelParams, void** extra) {
  WOOLY_API_BODY(return LaunchKernel(f, gridDimX, gridDimY, gridDimZ, blockDimX, blockDimY,
                                     blockDimZ, sharedMemBytes, hStream, kernelParams, extra,
                                     false););
}

WOOLY_EXPORT CUresult CUDAAPI cuLaunchKernel_ptsz(CUfunction f, unsigned int gridDimX,
                                                  unsigned int gridDimY, unsigned int gridDimZ,
                                                  unsigned int blockDimX, unsigned int blockDimY,
                                                  unsigned int blockDimZ,
                                                  unsigned int sharedMemBytes, CUstream hStream,
                                                  void** kernelParams, void** extra) {
  WOOLY_API_BODY(return LaunchKernel(f, gridDimX, gridDimY, gridDimZ, blockDimX, blockDimY,
                                     blockDimZ, sharedMemBytes, hStream, kernelParams, extra,
                                     true););
}

WOOLY_EXPORT CUresult CUDAAPI cuLaunchKernelEx(const CUlaunchConfig* config, CUfunction f,
                                               void** kernelParams, void** extra) {
  WOOLY_API_BODY(return LaunchKernelEx(config, f, kernelParams, extra, false););
}

WOOLY_EXPORT CUresult CUDAAPI cuLaunchKernelEx_ptsz(const CUlaunchConfig* config, CUfunction f,
                                                    void** kernelParams, void** extra) {
  WOOLY_API_BODY(return LaunchKernelEx(config, f, kernelParams, extra, true););
}
