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
// thread that calls in must first call BindThread(), and again after a
// ResetContext(). ResetContext() is the exception: it must run alone.
#ifndef WOOLY_SERVER_GPU_BACKEND_H_
#define WOOLY_SERVER_GPU_BACKEND_H_

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "wooly/proto/wire.h"
#include "wooly/proto/wire_memory_ext.h"

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

// One CUmemAccessDesc: a location and the access it gets.
struct MemAccessDesc {
  int32_t location_type = 0;
  int32_t location_id = 0;
  uint32_t flags = 0;
};

// cuOccupancyMaxPotentialBlockSize's answer.
struct OccupancyBlockSize {
  int32_t min_grid_size = 0;
  int32_t block_size = 0;
};

// One entry of a client's blockSizeToDynamicSMemSize callback, evaluated by
// the client.
struct BlockSmem {
  int32_t block_size = 0;
  uint64_t dynamic_smem = 0;
};

// An encoded CUtensorMap.
using TensorMapBytes = std::array<uint8_t, wire::kTensorMapBytes>;

// A stream's capture state (cuStreamGetCaptureInfo): status is a
// CUstreamCaptureStatus; graph and dependencies only when capturing.
struct CaptureInfo {
  uint32_t status = 0;
  Handle graph = 0;
  std::vector<Handle> dependencies;
};

// A kernel node's parameters; `args` is packed by the function's layout.
struct KernelNodeParams {
  Handle function = 0;
  uint32_t grid[3] = {1, 1, 1};
  uint32_t block[3] = {1, 1, 1};
  uint32_t shared_bytes = 0;
  std::vector<uint8_t> args;
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

  // Recovers from a sticky error (IsStickyContextError in cu_status.h), after
  // which every call in the context fails: destroys the context with
  // everything created in it and makes a fresh one. Objects that would
  // outlive the context (libraries, memory pools, VMM handles) are released
  // too. Afterwards every handle and device pointer issued before is invalid
  // and must never be passed in again, not even to free it; each thread must
  // call BindThread() again before its next call. The caller guarantees that
  // no other method runs while this one does. On failure the context stays
  // unusable and the reset may be retried.
  virtual absl::Status ResetContext() = 0;

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
  // Page-locks [ptr, ptr + size) of woolyd's address space and maps it for
  // the device (portable, device-mapped), so copies from and to it are
  // direct DMA and kernels may dereference it at the same address. The
  // defaults suit a backend without DMA (the fake).
  virtual absl::Status HostRegister(void* ptr, uint64_t size) { return absl::OkStatus(); }
  virtual absl::Status HostUnregister(void* ptr) { return absl::OkStatus(); }
  // Copies between device memory and memory registered with HostRegister,
  // queued on `stream` with no staging. Unless `async`, the copy has
  // completed when the call returns; an async DtoH completes in stream order.
  virtual absl::Status MemcpyHtoDRegistered(DevPtr dst, const void* src, uint64_t size,
                                            Handle stream, bool async) {
    return MemcpyHtoD(dst, src, size, stream, async);
  }
  virtual absl::Status MemcpyDtoHRegistered(void* dst, DevPtr src, uint64_t size, Handle stream,
                                            bool async) {
    return MemcpyDtoH(dst, src, size, stream, async);
  }
  // Sets `height` rows of `width` elements of `elem_size` (1, 2 or 4) bytes,
  // rows `pitch` bytes apart (pitch is ignored when height == 1).
  virtual absl::Status Memset(DevPtr dst, uint64_t pitch, uint32_t value, uint32_t elem_size,
                              uint64_t width, uint64_t height, Handle stream, bool async) = 0;

  // --- Memory extensions (session_memory_ext.cc is the caller).
  // Memory pools and the stream-ordered allocator. Pool handles come from
  // MemPoolCreate; attribute values travel as u64 whatever their C type.
  virtual absl::StatusOr<Handle> MemPoolCreate(const wire::MemPoolProps& props) = 0;
  virtual absl::Status MemPoolDestroy(Handle pool) = 0;
  virtual absl::Status MemPoolSetAttribute(Handle pool, int32_t attribute, uint64_t value) = 0;
  virtual absl::StatusOr<uint64_t> MemPoolGetAttribute(Handle pool, int32_t attribute) = 0;
  virtual absl::Status MemPoolTrimTo(Handle pool, uint64_t min_bytes_to_keep) = 0;
  virtual absl::StatusOr<DevPtr> MemAllocFromPoolAsync(uint64_t size, Handle pool,
                                                       Handle stream) = 0;
  // Frees memory from MemAllocFromPoolAsync (or MemAlloc) ordered on `stream`.
  virtual absl::Status MemFreeAsync(DevPtr ptr, Handle stream) = 0;
  // Virtual memory management. Generic allocation handles are backend handles.
  virtual absl::StatusOr<uint64_t> MemGetAllocationGranularity(const wire::MemAllocProps& props,
                                                               uint32_t option) = 0;
  virtual absl::StatusOr<DevPtr> MemAddressReserve(uint64_t size, uint64_t alignment, DevPtr hint,
                                                   uint64_t flags) = 0;
  virtual absl::Status MemAddressFree(DevPtr ptr, uint64_t size) = 0;
  virtual absl::StatusOr<Handle> MemCreate(uint64_t size, const wire::MemAllocProps& props,
                                           uint64_t flags) = 0;
  virtual absl::Status MemRelease(Handle handle) = 0;
  // The properties the backend recorded for `handle` (it may adjust requests).
  virtual absl::StatusOr<wire::MemAllocProps> MemGetAllocationPropertiesFromHandle(
      Handle handle) = 0;
  // Takes a new reference to the handle mapped at `addr` (released with MemRelease).
  virtual absl::StatusOr<Handle> MemRetainAllocationHandle(DevPtr addr) = 0;
  virtual absl::Status MemMap(DevPtr ptr, uint64_t size, uint64_t offset, Handle handle,
                              uint64_t flags) = 0;
  virtual absl::Status MemUnmap(DevPtr ptr, uint64_t size) = 0;
  virtual absl::Status MemSetAccess(DevPtr ptr, uint64_t size,
                                    absl::Span<const MemAccessDesc> access) = 0;
  virtual absl::StatusOr<uint64_t> MemGetAccess(int32_t location_type, int32_t location_id,
                                                DevPtr ptr) = 0;
  // Occupancy of a function (or kernel) handle.
  virtual absl::StatusOr<int32_t> OccupancyMaxActiveBlocks(Handle function, int32_t block_size,
                                                           uint64_t dynamic_smem,
                                                           uint32_t flags) = 0;
  // With a non-empty `smem_table` the dynamic shared memory of each block
  // size comes from it (the client's callback); otherwise `dynamic_smem`.
  virtual absl::StatusOr<OccupancyBlockSize> OccupancyMaxPotentialBlockSize(
      Handle function, absl::Span<const BlockSmem> smem_table, uint64_t dynamic_smem,
      int32_t block_size_limit, uint32_t flags) = 0;
  virtual absl::StatusOr<uint64_t> OccupancyAvailableDynamicSMem(Handle function,
                                                                 int32_t num_blocks,
                                                                 int32_t block_size) = 0;
  // `config.stream` is unused.
  virtual absl::StatusOr<int32_t> OccupancyMaxActiveClusters(Handle function,
                                                             const LaunchConfig& config) = 0;
  // Context limits (CUlimit) of the one shared context, and cache settings.
  virtual absl::StatusOr<uint64_t> CtxGetLimit(int32_t limit) = 0;
  virtual absl::Status CtxSetLimit(int32_t limit, uint64_t value) = 0;
  virtual absl::Status FuncSetCacheConfig(Handle function, int32_t config) = 0;
  virtual absl::Status FuncSetSharedMemConfig(Handle function, int32_t config) = 0;
  // Tensor maps, encoded by the driver on the host.
  virtual absl::StatusOr<TensorMapBytes> TensorMapEncodeTiled(const wire::TensorMapTiled& t) = 0;
  virtual absl::StatusOr<TensorMapBytes> TensorMapEncodeIm2col(const wire::TensorMapIm2col& t) = 0;
  virtual absl::StatusOr<TensorMapBytes> TensorMapReplaceAddress(const TensorMapBytes& map,
                                                                 DevPtr address) = 0;
  // --- end of memory extensions.

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

  // SM partitions (CUDA green contexts), for the scheduler (share_control.h).
  // The device's SMs split into `units` equal units of `unit_sms` SMs (the
  // rest stay outside every partition); a partition is a run of whole units.
  // Backends without them answer Unimplemented (the default): every stream
  // then runs on the whole GPU.
  struct PartitionLayout {
    int sm_count = 0;  // all SMs of the device
    int unit_sms = 0;
    int units = 0;
  };
  virtual absl::StatusOr<PartitionLayout> GetPartitionLayout() {
    return absl::UnimplementedError("no SM partitions");
  }
  // Creates the partition of units [first, first + count), plus the SMs
  // outside every unit when `with_rest`; it lives until PartitionDestroy or
  // ResetContext.
  virtual absl::StatusOr<Handle> PartitionCreate(int first, int count, bool with_rest) {
    return absl::UnimplementedError("no SM partitions");
  }
  virtual absl::Status PartitionDestroy(Handle partition) {
    return absl::UnimplementedError("no SM partitions");
  }
  // A stream whose kernels run only on the partition's SMs (StreamDestroy
  // destroys it). Events and stream waits work across partitions.
  virtual absl::StatusOr<Handle> PartitionStreamCreate(Handle partition, uint32_t flags,
                                                       int32_t priority) {
    return absl::UnimplementedError("no SM partitions");
  }

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

  // --- Stream capture and CUDA graphs (session_graphs.cc is the caller).
  // Graph, node and executable-graph handles are backend handles; a node
  // handle is only meaningful with its graph. Capture always runs in
  // CU_STREAM_CAPTURE_MODE_RELAXED: the backend's one thread serves every
  // client, so the modes are enforced by the client library instead.
  virtual absl::Status StreamBeginCapture(Handle stream) = 0;
  // Ends the capture begun on `stream` and returns its graph. When the
  // capture was invalidated or left work unjoined the error is returned and
  // the graph no longer exists.
  virtual absl::StatusOr<Handle> StreamEndCapture(Handle stream) = 0;
  virtual absl::StatusOr<CaptureInfo> StreamGetCaptureInfo(Handle stream) = 0;
  // flags: CU_STREAM_ADD_CAPTURE_DEPENDENCIES or CU_STREAM_SET_CAPTURE_DEPENDENCIES.
  virtual absl::Status StreamUpdateCaptureDependencies(Handle stream,
                                                       absl::Span<const Handle> nodes,
                                                       uint32_t flags) = 0;
  virtual absl::StatusOr<Handle> GraphCreate(uint32_t flags) = 0;
  virtual absl::Status GraphDestroy(Handle graph) = 0;
  virtual absl::StatusOr<Handle> GraphInstantiate(Handle graph, uint64_t flags) = 0;
  virtual absl::Status GraphExecDestroy(Handle exec) = 0;
  virtual absl::Status GraphLaunch(Handle exec, Handle stream) = 0;
  virtual absl::Status GraphUpload(Handle exec, Handle stream) = 0;
  virtual absl::StatusOr<std::vector<Handle>> GraphGetNodes(Handle graph) = 0;
  // The node's CUgraphNodeType.
  virtual absl::StatusOr<uint32_t> GraphNodeGetType(Handle node) = 0;
  virtual absl::StatusOr<std::vector<Handle>> GraphNodeGetDependencies(Handle node) = 0;
  // Kernel nodes. `function` is a function handle (a kernel's function for
  // kernels); GetParams packs the arguments by the function's layout.
  virtual absl::StatusOr<KernelNodeParams> GraphKernelNodeGetParams(Handle node) = 0;
  virtual absl::Status GraphKernelNodeSetParams(Handle node, const KernelNodeParams& params) = 0;
  virtual absl::StatusOr<Handle> GraphAddKernelNode(Handle graph,
                                                    absl::Span<const Handle> dependencies,
                                                    const KernelNodeParams& params) = 0;
  virtual absl::Status GraphExecKernelNodeSetParams(Handle exec, Handle node,
                                                    const KernelNodeParams& params) = 0;
  // cuGraphDebugDotPrint's output, as text.
  virtual absl::StatusOr<std::string> GraphDebugDotPrint(Handle graph, uint32_t flags) = 0;
};

}  // namespace wooly::server

#endif  // WOOLY_SERVER_GPU_BACKEND_H_
