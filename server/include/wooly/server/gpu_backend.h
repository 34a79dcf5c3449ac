// The server's only way to reach a GPU.
//
// woolyd never calls the CUDA driver directly: it is handed a GpuBackend.
// CudaBackend (cuda_backend.h) drives the real driver inside ONE context;
// tests/fake/fake_backend.h keeps memory in host RAM and runs a few named
// test kernels on the CPU, so the whole client-to-server path runs in CI.
//
// Handles: every handle (module, function, library, kernel, stream, event)
// is an opaque non-zero uint64_t chosen by the backend. Stream handle 0 is
// CUDA's legacy default stream. Device pointers are real device addresses.
// The backend does NOT check ownership; the session layer does that before
// calling in.
//
// Errors: absl::Status carrying the driver's CUresult (see cu_status.h), so
// the exact CUresult can be returned to the application.
//
// Thread safety: all methods may be called from many threads at once. Each
// thread that calls in must first call BindThread().
#ifndef WOOLY_SERVER_GPU_BACKEND_H_
#define WOOLY_SERVER_GPU_BACKEND_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "wooly/proto/wire.h"

namespace wooly::server {

using DevPtr = uint64_t;
using Handle = uint64_t;

struct MemInfo {
  uint64_t free = 0;
  uint64_t total = 0;
};

struct GlobalInfo {
  DevPtr ptr = 0;
  uint64_t size = 0;
};

// One launch attribute as CUlaunchAttribute carries it: id and 64 raw bytes.
struct LaunchAttribute {
  uint32_t id = 0;
  uint8_t value[64] = {};
};

struct LaunchConfig {
  uint32_t grid[3] = {1, 1, 1};
  uint32_t block[3] = {1, 1, 1};
  uint32_t shared_bytes = 0;
  Handle stream = 0;
  std::vector<LaunchAttribute> attributes;
};

// A 3D copy in server terms: host sides point at server memory holding the
// rows packed (pitch == width_bytes, height rows per slice).
struct Copy3DParams {
  wire::Copy3D geometry;
  const void* src_host = nullptr;  // when geometry.src_kind == kHost
  void* dst_host = nullptr;        // when geometry.dst_kind == kHost
};

class GpuBackend {
 public:
  virtual ~GpuBackend() = default;

  // Short name for logs and status ("cuda", "fake").
  virtual std::string Name() const = 0;

  // Makes the backend's single context current on the calling thread.
  virtual absl::Status BindThread() = 0;

  // Device description: name, UUID, memory, every attribute, priorities.
  virtual absl::StatusOr<wire::DeviceInfo> GetDeviceInfo() = 0;
  virtual absl::StatusOr<MemInfo> MemGetInfo() = 0;

  // Memory.
  virtual absl::StatusOr<DevPtr> MemAlloc(uint64_t size) = 0;
  virtual absl::Status MemFree(DevPtr ptr) = 0;
  // `async` copies are ordered on `stream`; a host source may be released as
  // soon as the call returns. A DtoH copy has completed into `dst` when the
  // call returns, whether async or not.
  virtual absl::Status MemcpyHtoD(DevPtr dst, const void* src, uint64_t size, Handle stream,
                                  bool async) = 0;
  virtual absl::Status MemcpyDtoH(void* dst, DevPtr src, uint64_t size, Handle stream,
                                  bool async) = 0;
  virtual absl::Status MemcpyDtoD(DevPtr dst, DevPtr src, uint64_t size, Handle stream,
                                  bool async) = 0;
  virtual absl::Status Memcpy3D(const Copy3DParams& params, Handle stream, bool async) = 0;
  // Sets `height` rows of `width` elements of `elem_size` (1, 2 or 4) bytes,
  // rows `pitch` bytes apart (pitch is ignored when height == 1).
  virtual absl::Status Memset(DevPtr dst, uint64_t pitch, uint32_t value, uint32_t elem_size,
                              uint64_t width, uint64_t height, Handle stream, bool async) = 0;

  // Modules and libraries. `image` is a cubin, fatbin, or NUL-terminated PTX.
  virtual absl::StatusOr<Handle> ModuleLoadData(absl::Span<const uint8_t> image) = 0;
  virtual absl::Status ModuleUnload(Handle module) = 0;
  virtual absl::StatusOr<Handle> ModuleGetFunction(Handle module, const std::string& name) = 0;
  virtual absl::StatusOr<GlobalInfo> ModuleGetGlobal(Handle module, const std::string& name) = 0;
  virtual absl::StatusOr<uint32_t> ModuleGetFunctionCount(Handle module) = 0;
  virtual absl::StatusOr<Handle> LibraryLoadData(absl::Span<const uint8_t> image) = 0;
  virtual absl::Status LibraryUnload(Handle library) = 0;
  virtual absl::StatusOr<Handle> LibraryGetKernel(Handle library, const std::string& name) = 0;
  virtual absl::StatusOr<Handle> LibraryGetModule(Handle library) = 0;
  virtual absl::StatusOr<GlobalInfo> LibraryGetGlobal(Handle library, const std::string& name) = 0;
  // A kernel's function in the backend's context.
  virtual absl::StatusOr<Handle> KernelGetFunction(Handle kernel) = 0;

  // Parameter layout of a function (cuFuncGetParamInfo until INVALID_VALUE).
  virtual absl::StatusOr<std::vector<wire::ParamInfo>> FuncGetParamLayout(Handle function) = 0;
  virtual absl::StatusOr<int32_t> FuncGetAttribute(Handle function, int32_t attribute) = 0;
  virtual absl::Status FuncSetAttribute(Handle function, int32_t attribute, int32_t value) = 0;

  // Launches `function` with the packed argument buffer `args`.
  virtual absl::Status LaunchKernel(Handle function, const LaunchConfig& config,
                                    absl::Span<const uint8_t> args) = 0;

  // Streams and events.
  virtual absl::StatusOr<Handle> StreamCreate(uint32_t flags, int32_t priority) = 0;
  virtual absl::Status StreamDestroy(Handle stream) = 0;
  virtual absl::Status StreamSynchronize(Handle stream) = 0;
  // OK when idle, CUDA_ERROR_NOT_READY while work is pending.
  virtual absl::Status StreamQuery(Handle stream) = 0;
  virtual absl::Status StreamWaitEvent(Handle stream, Handle event, uint32_t flags) = 0;
  virtual absl::StatusOr<Handle> EventCreate(uint32_t flags) = 0;
  virtual absl::Status EventRecord(Handle event, Handle stream, uint32_t flags) = 0;
  virtual absl::Status EventSynchronize(Handle event) = 0;
  virtual absl::Status EventQuery(Handle event) = 0;
  virtual absl::StatusOr<float> EventElapsedTime(Handle start, Handle end) = 0;
  virtual absl::Status EventDestroy(Handle event) = 0;
  virtual absl::Status CtxSynchronize() = 0;
};

}  // namespace wooly::server

#endif  // WOOLY_SERVER_GPU_BACKEND_H_
