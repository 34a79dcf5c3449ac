// A GpuBackend that runs entirely on the CPU, for CI machines without a GPU.
//
// Device memory: host RAM behind fake device addresses starting at
// kFakeDeviceBase, 256-byte aligned, never reused within one backend. The
// capacity is "virtual" (default 16 GiB): allocations are counted against it
// and refused with CUDA_ERROR_OUT_OF_MEMORY beyond it, but each block's host
// memory is only calloc'ed on first touch, so a large capacity costs nothing.
//
// Work runs synchronously on the calling thread: streams are always idle and
// events complete when recorded. Event timestamps come from an injected clock.
//
// Modules: the "fake module" image format, NUL-terminated text:
//
//   WOOLY-FAKE-MODULE v1
//   kernel <name>
//   global <name> <bytes>
//
// The first line must be exactly the magic line; then any number of
// `kernel` and `global` lines (blank lines are ignored). Anything else, cubins
// and PTX included, is CUDA_ERROR_INVALID_IMAGE. A `kernel` line names a
// kernel of the global registry below (looked up when the function is
// fetched and again at launch); a `global` line reserves a zeroed device
// variable of that size. Libraries use the same format.
//
// Sticky errors: a kernel that fails with a sticky result (a fault such as
// CUDA_ERROR_ILLEGAL_ADDRESS; see IsStickyContextError) loses the fake
// context as a GPU fault loses a real one: from then on every method of
// fake_backend.cc fails with that result until ResetContext, which frees
// everything (memory, streams, events, modules, libraries, graphs, pools,
// VMM objects, limits) and starts afresh. Addresses and handles are never
// reused, so a stale one from before a reset is always unknown afterwards.
// (The graph and memory-extension methods do not check the sticky state;
// woolyd never calls them in a lost context.) InjectStickyError simulates a
// fault that surfaces asynchronously, in whichever call comes next.
//
// Thread safety: every method may be called from any thread at once, except
// ResetContext, which must run alone (as GpuBackend requires). Kernels run
// without the backend's lock held; their `host` translator is safe to call.
#ifndef WOOLY_FAKE_FAKE_BACKEND_H_
#define WOOLY_FAKE_FAKE_BACKEND_H_

#include <cuda.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/types/span.h"
#include "wooly/proto/wire.h"
#include "wooly/server/gpu_backend.h"

namespace wooly::fake {

inline constexpr uint64_t kFakeDeviceBase = 0x7f0000000000ull;
inline constexpr uint64_t kFakeAlignment = 256;
inline constexpr char kFakeModuleMagic[] = "WOOLY-FAKE-MODULE v1";

// What a fake kernel sees at launch.
struct FakeLaunch {
  uint32_t grid[3];
  uint32_t block[3];
  uint32_t shared_bytes;
  // The packed argument buffer, laid out by the kernel's `params`.
  absl::Span<const uint8_t> args;
  // Translates a device address range to host memory; nullptr when the range
  // is not inside one live allocation or global (the kernel should then fail
  // with CUDA_ERROR_ILLEGAL_ADDRESS, as a real GPU would fault).
  std::function<void*(uint64_t dptr, uint64_t bytes)> host;
  // Host memory of the global `name` of the launched function's module (what
  // a kernel reaches as a __device__ variable); nullptr when the module has
  // no such global or it is smaller than `bytes`.
  std::function<void*(const std::string& name, uint64_t bytes)> global;
};

struct FakeKernel {
  std::string name;
  std::vector<wire::ParamInfo> params;
  std::function<absl::Status(const FakeLaunch&)> run;
};

// Adds `kernel` to the process-wide registry. Thread-safe; registering a name
// again replaces the earlier kernel.
void RegisterFakeKernel(FakeKernel kernel);
// The registered kernel called `name`, if any. Thread-safe.
std::optional<FakeKernel> FindFakeKernel(const std::string& name);

// Builds a fake module image (NUL included) listing `kernels` and `globals`.
std::vector<uint8_t> MakeFakeModuleImage(
    const std::vector<std::string>& kernels,
    const std::vector<std::pair<std::string, uint64_t>>& globals = {});

struct FakeBackendOptions {
  uint64_t capacity_bytes = 16ull << 30;
  // Nanoseconds for event timestamps; defaults to a steady clock.
  std::function<uint64_t()> clock_ns;
  // The device name reported by GetDeviceInfo.
  std::string device_name = "Wooly Fake GPU";
  // SM partitions (GetPartitionLayout): H100-like by default; units 0 turns
  // them off (Unimplemented).
  int sm_count = 132;
  int partition_unit_sms = 8;
  int partition_units = 15;
};

class FakeBackend : public server::GpuBackend {
 public:
  explicit FakeBackend(FakeBackendOptions options = {});
  ~FakeBackend() override;

  // Counters for tests: objects alive right now. Allocations and bytes count
  // MemAlloc memory only (not module globals).
  size_t live_allocations() const;
  uint64_t bytes_allocated() const;
  size_t live_streams() const;  // excludes the legacy stream
  size_t live_events() const;
  size_t live_modules() const;  // includes modules owned by libraries
  size_t live_libraries() const;
  // Graphs (captured or created) and executable graphs not destroyed.
  size_t live_graphs() const;
  size_t live_graph_execs() const;
  // Memory extensions (fake_backend_memory_ext.cc): pools created and not
  // destroyed, VA reservations, generic allocation handles whose memory is
  // still alive (referenced or mapped), and mappings.
  size_t live_pools() const;
  size_t live_reservations() const;
  size_t live_allocation_handles() const;
  size_t live_mappings() const;
  // Host memory behind a device range, as a kernel's `host` would give it;
  // nullptr when out of bounds. For tests.
  void* HostPointer(server::DevPtr ptr, uint64_t bytes);
  // Loses the context with `result` (a sticky CUresult) as if a kernel had
  // faulted; the next call sees it. For tests.
  void InjectStickyError(CUresult result);
  // The sticky result the context is lost to; CUDA_SUCCESS while usable.
  CUresult sticky_error() const;
  // Successful ResetContext calls.
  uint64_t context_resets() const;

  std::string Name() const override { return "fake"; }
  absl::Status BindThread() override { return absl::OkStatus(); }
  absl::Status ResetContext() override;
  absl::StatusOr<wire::DeviceInfo> GetDeviceInfo() override;
  absl::StatusOr<server::MemInfo> MemGetInfo() override;

  absl::StatusOr<server::DevPtr> MemAlloc(uint64_t size) override;
  absl::Status MemFree(server::DevPtr ptr) override;
  absl::Status MemcpyHtoD(server::DevPtr dst, const void* src, uint64_t size, server::Handle stream,
                          bool async) override;
  absl::Status MemcpyDtoH(void* dst, server::DevPtr src, uint64_t size, server::Handle stream,
                          bool async) override;
  absl::Status MemcpyDtoD(server::DevPtr dst, server::DevPtr src, uint64_t size,
                          server::Handle stream, bool async) override;
  absl::Status Memcpy3D(const server::Copy3DParams& params, server::Handle stream,
                        bool async) override;
  absl::Status Memset(server::DevPtr dst, uint64_t pitch, uint32_t value, uint32_t elem_size,
                      uint64_t width, uint64_t height, server::Handle stream, bool async) override;

  // Memory extensions (fake_backend_memory_ext.cc). Pools hand out ordinary
  // blocks and keep H100-like statistics; freed bytes stay reserved up to the
  // release threshold. VMM: granularity 2 MiB; a mapping is a block whose
  // bytes alias its allocation handle's memory, so data written through one
  // mapping is seen through another; a copy may not span two mappings (each
  // is its own block). Occupancy follows a simple H100-like model; tensor
  // maps are a deterministic encoding of their arguments with the address in
  // bytes 0-7.
  absl::StatusOr<server::Handle> MemPoolCreate(const wire::MemPoolProps& props) override;
  absl::Status MemPoolDestroy(server::Handle pool) override;
  absl::Status MemPoolSetAttribute(server::Handle pool, int32_t attribute, uint64_t value) override;
  absl::StatusOr<uint64_t> MemPoolGetAttribute(server::Handle pool, int32_t attribute) override;
  absl::Status MemPoolTrimTo(server::Handle pool, uint64_t min_bytes_to_keep) override;
  absl::StatusOr<server::DevPtr> MemAllocFromPoolAsync(uint64_t size, server::Handle pool,
                                                       server::Handle stream) override;
  absl::Status MemFreeAsync(server::DevPtr ptr, server::Handle stream) override;
  absl::StatusOr<uint64_t> MemGetAllocationGranularity(const wire::MemAllocProps& props,
                                                       uint32_t option) override;
  absl::StatusOr<server::DevPtr> MemAddressReserve(uint64_t size, uint64_t alignment,
                                                   server::DevPtr hint, uint64_t flags) override;
  absl::Status MemAddressFree(server::DevPtr ptr, uint64_t size) override;
  absl::StatusOr<server::Handle> MemCreate(uint64_t size, const wire::MemAllocProps& props,
                                           uint64_t flags) override;
  absl::Status MemRelease(server::Handle handle) override;
  absl::StatusOr<wire::MemAllocProps> MemGetAllocationPropertiesFromHandle(
      server::Handle handle) override;
  absl::StatusOr<server::Handle> MemRetainAllocationHandle(server::DevPtr addr) override;
  absl::Status MemMap(server::DevPtr ptr, uint64_t size, uint64_t offset, server::Handle handle,
                      uint64_t flags) override;
  absl::Status MemUnmap(server::DevPtr ptr, uint64_t size) override;
  absl::Status MemSetAccess(server::DevPtr ptr, uint64_t size,
                            absl::Span<const server::MemAccessDesc> access) override;
  absl::StatusOr<uint64_t> MemGetAccess(int32_t location_type, int32_t location_id,
                                        server::DevPtr ptr) override;
  absl::StatusOr<int32_t> OccupancyMaxActiveBlocks(server::Handle function, int32_t block_size,
                                                   uint64_t dynamic_smem, uint32_t flags) override;
  absl::StatusOr<server::OccupancyBlockSize> OccupancyMaxPotentialBlockSize(
      server::Handle function, absl::Span<const server::BlockSmem> smem_table,
      uint64_t dynamic_smem, int32_t block_size_limit, uint32_t flags) override;
  absl::StatusOr<uint64_t> OccupancyAvailableDynamicSMem(server::Handle function,
                                                         int32_t num_blocks,
                                                         int32_t block_size) override;
  absl::StatusOr<int32_t> OccupancyMaxActiveClusters(server::Handle function,
                                                     const server::LaunchConfig& config) override;
  absl::StatusOr<uint64_t> CtxGetLimit(int32_t limit) override;
  absl::Status CtxSetLimit(int32_t limit, uint64_t value) override;
  absl::Status FuncSetCacheConfig(server::Handle function, int32_t config) override;
  absl::Status FuncSetSharedMemConfig(server::Handle function, int32_t config) override;
  absl::StatusOr<server::TensorMapBytes> TensorMapEncodeTiled(
      const wire::TensorMapTiled& t) override;
  absl::StatusOr<server::TensorMapBytes> TensorMapEncodeIm2col(
      const wire::TensorMapIm2col& t) override;
  absl::StatusOr<server::TensorMapBytes> TensorMapReplaceAddress(const server::TensorMapBytes& map,
                                                                 server::DevPtr address) override;

  absl::StatusOr<server::Handle> ModuleLoadData(absl::Span<const uint8_t> image) override;
  absl::Status ModuleUnload(server::Handle module) override;
  absl::StatusOr<server::Handle> ModuleGetFunction(server::Handle module,
                                                   const std::string& name) override;
  absl::StatusOr<server::GlobalInfo> ModuleGetGlobal(server::Handle module,
                                                     const std::string& name) override;
  absl::StatusOr<uint32_t> ModuleGetFunctionCount(server::Handle module) override;
  absl::StatusOr<server::Handle> LibraryLoadData(absl::Span<const uint8_t> image) override;
  absl::Status LibraryUnload(server::Handle library) override;
  absl::StatusOr<server::Handle> LibraryGetKernel(server::Handle library,
                                                  const std::string& name) override;
  absl::StatusOr<server::Handle> LibraryGetModule(server::Handle library) override;
  absl::StatusOr<server::GlobalInfo> LibraryGetGlobal(server::Handle library,
                                                      const std::string& name) override;
  absl::StatusOr<server::Handle> KernelGetFunction(server::Handle kernel) override;

  absl::StatusOr<std::vector<wire::ParamInfo>> FuncGetParamLayout(server::Handle function) override;
  absl::StatusOr<int32_t> FuncGetAttribute(server::Handle function, int32_t attribute) override;
  absl::Status FuncSetAttribute(server::Handle function, int32_t attribute, int32_t value) override;
  absl::Status LaunchKernel(server::Handle function, const server::LaunchConfig& config,
                            absl::Span<const uint8_t> args) override;

  absl::StatusOr<PartitionLayout> GetPartitionLayout() override;
  absl::StatusOr<server::Handle> PartitionCreate(int first, int count, bool with_rest) override;
  absl::Status PartitionDestroy(server::Handle partition) override;
  absl::StatusOr<server::Handle> PartitionStreamCreate(server::Handle partition, uint32_t flags,
                                                       int32_t priority) override;
  // Tests: the partition a stream was created in ({first, count}), or
  // nullopt for a whole-GPU stream; and the priority it was created with.
  std::optional<std::pair<int, int>> StreamPartition(server::Handle stream) const;
  // Whether that partition also has the SMs outside every unit.
  bool StreamPartitionHasRest(server::Handle stream) const;
  std::optional<int32_t> StreamPriority(server::Handle stream) const;
  size_t live_partitions() const;
  absl::StatusOr<server::Handle> StreamCreate(uint32_t flags, int32_t priority) override;
  absl::Status StreamDestroy(server::Handle stream) override;
  absl::Status StreamSynchronize(server::Handle stream) override;
  absl::Status StreamQuery(server::Handle stream) override;
  absl::Status StreamWaitEvent(server::Handle stream, server::Handle event,
                               uint32_t flags) override;
  absl::StatusOr<server::Handle> EventCreate(uint32_t flags) override;
  absl::Status EventRecord(server::Handle event, server::Handle stream, uint32_t flags) override;
  absl::Status EventSynchronize(server::Handle event) override;
  absl::Status EventQuery(server::Handle event) override;
  absl::StatusOr<float> EventElapsedTime(server::Handle start, server::Handle end) override;
  absl::Status EventDestroy(server::Handle event) override;
  absl::Status CtxSynchronize() override { return StickyStatus(); }

  // Stream capture and graphs (fake_graphs.cc). Work enqueued on a capturing
  // stream becomes graph nodes instead of running: kernel launches, memsets
  // and device-to-device copies. Launching an executable graph runs its
  // nodes in order on the calling thread. An event recorded in a capture
  // carries the recording stream's dependencies to the streams that wait on
  // it, which join the capture. As in CUDA, synchronizing or querying a
  // capturing stream or a captured event, waiting on an uncaptured event
  // (without CU_EVENT_WAIT_EXTERNAL) and merging two captures are refused
  // and invalidate the capture; so are host copies on a capturing stream
  // (Wooly never captures host memory). Capturing the legacy stream (handle
  // 0) is refused.
  absl::Status StreamBeginCapture(server::Handle stream) override;
  absl::StatusOr<server::Handle> StreamEndCapture(server::Handle stream) override;
  absl::StatusOr<server::CaptureInfo> StreamGetCaptureInfo(server::Handle stream) override;
  absl::Status StreamUpdateCaptureDependencies(server::Handle stream,
                                               absl::Span<const server::Handle> nodes,
                                               uint32_t flags) override;
  absl::StatusOr<server::Handle> GraphCreate(uint32_t flags) override;
  absl::Status GraphDestroy(server::Handle graph) override;
  absl::StatusOr<server::Handle> GraphInstantiate(server::Handle graph, uint64_t flags) override;
  absl::Status GraphExecDestroy(server::Handle exec) override;
  absl::Status GraphLaunch(server::Handle exec, server::Handle stream) override;
  absl::Status GraphUpload(server::Handle exec, server::Handle stream) override;
  absl::StatusOr<std::vector<server::Handle>> GraphGetNodes(server::Handle graph) override;
  absl::StatusOr<uint32_t> GraphNodeGetType(server::Handle node) override;
  absl::StatusOr<std::vector<server::Handle>> GraphNodeGetDependencies(
      server::Handle node) override;
  absl::StatusOr<server::KernelNodeParams> GraphKernelNodeGetParams(server::Handle node) override;
  absl::Status GraphKernelNodeSetParams(server::Handle node,
                                        const server::KernelNodeParams& params) override;
  absl::StatusOr<server::Handle> GraphAddKernelNode(
      server::Handle graph, absl::Span<const server::Handle> dependencies,
      const server::KernelNodeParams& params) override;
  absl::Status GraphExecKernelNodeSetParams(server::Handle exec, server::Handle node,
                                            const server::KernelNodeParams& params) override;
  absl::StatusOr<std::string> GraphDebugDotPrint(server::Handle graph, uint32_t flags) override;

 private:
  // One block of fake device memory; host bytes appear on first touch.
  struct Block {
    uint64_t size = 0;
    bool global = false;  // a module global, not a MemAlloc allocation
    bool mapped = false;  // a VMM mapping (MemMap), not an allocation
    // Shared so a running kernel keeps the bytes alive even if freed meanwhile.
    std::shared_ptr<uint8_t> data;
  };
  struct Function {
    server::Handle module = 0;
    std::string name;
    std::map<int32_t, int32_t> attributes;  // values set by FuncSetAttribute
  };
  struct Module {
    std::vector<std::string> kernels;
    std::map<std::string, server::GlobalInfo> globals;
    std::map<std::string, server::Handle> functions;  // fetched so far
    server::Handle library = 0;                       // non-zero when a library owns it
  };
  struct Library {
    server::Handle module = 0;
    std::map<std::string, server::Handle> kernels;  // name -> kernel handle
  };
  struct Kernel {
    server::Handle library = 0;
    std::string name;
  };
  struct Event {
    uint32_t flags = 0;
    bool recorded = false;
    uint64_t time_ns = 0;
  };

  server::Handle NewHandle() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return next_handle_++; }
  // The sticky error every call returns once the context is lost; OK before.
  absl::Status StickyStatus() const;
  // Loses the context to `result` when it is sticky (keeps the first one).
  void NoteKernelResult(const absl::Status& status);
  absl::Status CheckStream(server::Handle stream) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Host bytes behind [ptr, ptr + bytes) inside one block, allocating them on
  // first touch. Errors: INVALID_VALUE out of bounds, OUT_OF_MEMORY when the
  // host allocation fails.
  absl::StatusOr<uint8_t*> Translate(server::DevPtr ptr, uint64_t bytes,
                                     std::shared_ptr<uint8_t>* keep_alive = nullptr)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<server::DevPtr> Allocate(uint64_t size, bool global)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Release(server::DevPtr ptr) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<server::Handle> LoadModuleLocked(absl::Span<const uint8_t> image,
                                                  server::Handle library)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void UnloadModuleLocked(server::Handle module) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<server::Handle> GetFunctionLocked(server::Handle module, const std::string& name)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const FakeBackendOptions options_;

  // The CUresult the context is lost to (CUDA_SUCCESS while usable). Atomic
  // so that the check every method starts with takes no lock.
  std::atomic<int> sticky_{CUDA_SUCCESS};
  std::atomic<uint64_t> resets_{0};

  mutable absl::Mutex mu_;
  server::Handle next_handle_ ABSL_GUARDED_BY(mu_) = 0x1000;
  uint64_t next_address_ ABSL_GUARDED_BY(mu_) = kFakeDeviceBase;
  uint64_t used_bytes_ ABSL_GUARDED_BY(mu_) = 0;  // allocations and globals
  std::map<server::DevPtr, Block> blocks_ ABSL_GUARDED_BY(mu_);
  std::set<server::Handle> streams_ ABSL_GUARDED_BY(mu_);
  std::map<server::Handle, std::pair<int, int>> partitions_ ABSL_GUARDED_BY(mu_);
  std::map<server::Handle, std::pair<int, int>> stream_partition_ ABSL_GUARDED_BY(mu_);
  std::set<server::Handle> partitions_with_rest_ ABSL_GUARDED_BY(mu_);
  std::set<server::Handle> stream_with_rest_ ABSL_GUARDED_BY(mu_);
  std::map<server::Handle, int32_t> stream_priority_ ABSL_GUARDED_BY(mu_);
  std::map<server::Handle, Event> events_ ABSL_GUARDED_BY(mu_);
  std::map<server::Handle, Module> modules_ ABSL_GUARDED_BY(mu_);
  std::map<server::Handle, Library> libraries_ ABSL_GUARDED_BY(mu_);
  std::map<server::Handle, Kernel> kernels_ ABSL_GUARDED_BY(mu_);
  std::map<server::Handle, Function> functions_ ABSL_GUARDED_BY(mu_);

  // Graphs and capture (fake_graphs.cc).
  struct GraphNode {
    uint32_t type = 0;  // CUgraphNodeType
    std::vector<server::Handle> deps;
    server::KernelNodeParams kernel;  // CU_GRAPH_NODE_TYPE_KERNEL
    // CU_GRAPH_NODE_TYPE_MEMSET
    server::DevPtr dst = 0;
    uint64_t pitch = 0, width = 0, height = 0;
    uint32_t value = 0, elem_size = 0;
    // CU_GRAPH_NODE_TYPE_MEMCPY (device to device): a 3D copy, or `bytes`
    // bytes from `src` to `dst` when `is_3d` is false.
    bool is_3d = false;
    wire::Copy3D copy3d = {};
    server::DevPtr src = 0;
    uint64_t bytes = 0;
    server::Handle event = 0;      // CU_GRAPH_NODE_TYPE_WAIT_EVENT
    std::vector<GraphNode> child;  // CU_GRAPH_NODE_TYPE_GRAPH: nodes in order
  };
  struct Graph {
    std::vector<server::Handle> nodes;  // in insertion (= a topological) order
  };
  struct GraphExec {
    std::vector<std::pair<server::Handle, GraphNode>> nodes;  // copies, in order
  };
  struct Capture {
    server::Handle graph = 0;
    bool invalidated = false;
  };
  // A stream taking part in a capture, or an event recorded in one: the
  // capture (by its origin stream) and the nodes later work depends on.
  struct CaptureEdge {
    server::Handle origin = 0;
    std::vector<server::Handle> leaves;
  };
  CaptureEdge* CapturingLocked(server::Handle stream) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Adds `node` to the capture `stream` takes part in, after its leaves.
  absl::Status CaptureNodeLocked(server::Handle stream, GraphNode node)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // For operations CUDA forbids on a capturing stream: invalidates its
  // capture and returns CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED (INVALIDATED
  // once it is); OK when the stream is not capturing.
  absl::Status RefuseIfCapturingLocked(server::Handle stream) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // CUDA_ERROR_CAPTURED_EVENT (invalidating) for an event last recorded in
  // a capture in progress.
  absl::Status RefuseIfEventCapturedLocked(server::Handle event) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The capture side of EventRecord and StreamWaitEvent (and of Event /
  // StreamDestroy): bookkeeping only outside a capture.
  absl::Status CaptureEventRecordLocked(server::Handle event, server::Handle stream)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status CaptureStreamWaitLocked(server::Handle stream, server::Handle event, uint32_t flags)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ForgetCaptureStreamLocked(server::Handle stream) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ForgetCaptureEventLocked(server::Handle event) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void EndCaptureLocked(server::Handle origin) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void DestroyGraphLocked(server::Handle graph) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status CheckKernelNodeLocked(const server::KernelNodeParams& params)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status RunGraphNode(const GraphNode& node) ABSL_LOCKS_EXCLUDED(mu_);
  std::map<server::Handle, GraphNode> graph_nodes_ ABSL_GUARDED_BY(mu_);
  std::map<server::Handle, Graph> graphs_ ABSL_GUARDED_BY(mu_);
  std::map<server::Handle, GraphExec> graph_execs_ ABSL_GUARDED_BY(mu_);
  // Captures by origin stream; the streams taking part; captured events.
  std::map<server::Handle, Capture> captures_ ABSL_GUARDED_BY(mu_);
  std::map<server::Handle, CaptureEdge> capturing_ ABSL_GUARDED_BY(mu_);
  std::map<server::Handle, CaptureEdge> captured_events_ ABSL_GUARDED_BY(mu_);

  // Memory extensions.
  struct Pool {
    std::map<int32_t, uint64_t> attributes;  // REUSE_* and RELEASE_THRESHOLD
    uint64_t used = 0;                       // bytes handed out
    uint64_t cached = 0;                     // freed bytes kept reserved
    uint64_t used_high = 0;
    uint64_t reserved_high = 0;
  };
  struct PhysicalAllocation {
    uint64_t size = 0;
    wire::MemAllocProps props;
    std::shared_ptr<uint8_t> data;
    int refs = 0;
    int mappings = 0;
  };
  struct Mapping {
    server::Handle handle = 0;
    uint64_t size = 0;
    uint64_t access = 0;  // CUmemAccess_flags set by MemSetAccess
  };
  absl::StatusOr<int32_t> ActiveBlocksLocked(server::Handle function, int32_t block_size,
                                             uint64_t dynamic_smem)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void MaybeFreePhysicalLocked(server::Handle handle) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::map<server::Handle, Pool> pools_ ABSL_GUARDED_BY(mu_);
  struct PoolAllocation {
    server::Handle pool = 0;  // the pool may be gone
    uint64_t size = 0;
  };
  // Forgets pool allocations freed with MemFree (their blocks are gone).
  void ReconcilePoolsLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Live pool allocations by block base.
  std::map<server::DevPtr, PoolAllocation> pool_allocations_ ABSL_GUARDED_BY(mu_);
  std::map<server::DevPtr, uint64_t> reservations_ ABSL_GUARDED_BY(mu_);  // base -> size
  std::map<server::Handle, PhysicalAllocation> physical_ ABSL_GUARDED_BY(mu_);
  std::map<server::DevPtr, Mapping> mappings_ ABSL_GUARDED_BY(mu_);
  std::map<int32_t, uint64_t> limits_ ABSL_GUARDED_BY(mu_);
};

}  // namespace wooly::fake

#endif  // WOOLY_FAKE_FAKE_BACKEND_H_
