// One connected client: its identity, everything it owns on the GPU, and the
// command dispatcher that every transport (framed socket, gRPC stream) calls.
//
// Ownership and isolation: the client only ever sees ids issued by the
// session (server-wide unique, so another client's id never resolves here),
// mapped to backend handles inside. Every device pointer range a command
// names must lie inside one of this client's allocations or module/library
// globals. A foreign, stale or made-up handle gets CUDA_ERROR_INVALID_HANDLE
// and a foreign pointer CUDA_ERROR_INVALID_VALUE, as the native driver would
// answer for memory and handles the process does not have. Kernel arguments
// are NOT inspected: a kernel can dereference any address it is given, so
// isolation against a malicious kernel needs hardware separation (MIG/MPS),
// which is out of scope here.
//
// Streams: the client's null and legacy streams map to a per-client stream
// created at Hello, so clients never serialize on CUDA's legacy stream. Every
// backend stream is created non-blocking; the legacy stream's implicit
// synchronization with the client's blocking streams is emulated with events.
//
// Faults: every command that may reach the GPU runs under a
// SharedContext::Access. After a sticky error in the shared context (any
// client's), the session's commands get that error without touching the GPU,
// until the client leaves; see shared_context.h.
//
// Thread safety: Handle and Close may be called from any thread but are
// serialized internally (a transport calls them from one thread anyway).
// Snapshot and the accessors may be called concurrently with them.
#ifndef WOOLY_SERVER_CLIENT_SESSION_H_
#define WOOLY_SERVER_CLIENT_SESSION_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "wooly/memory/allocation_table.h"
#include "wooly/proto/wire.h"
#include "wooly/server/gpu_backend.h"
#include "wooly/server/launch_pipeline.h"
#include "wooly/server/module_cache.h"
#include "wooly/server/session_graphs.h"
#include "wooly/server/session_memory_ext.h"
#include "wooly/server/shared_context.h"
#include "wooly/server/tenants.h"

namespace wooly::server {

// Largest payload accepted before Hello, so an unauthenticated peer cannot
// make the server allocate much.
inline constexpr uint32_t kMaxPreHelloPayload = 64 << 10;
// Longest client name kept (longer names are truncated).
inline constexpr size_t kMaxClientNameBytes = 256;

// A backend handle (gpu_backend.h); named apart from ClientSession::Handle.
using BackendHandle = Handle;

class ShareControl;
class ScheduledClient;
class NodeMemory;

// What every session shares; outlives all sessions.
struct SessionEnv {
  GpuBackend* backend = nullptr;  // not owned
  // The shared context's guard; every backend call runs under one of its
  // Accesses. Not owned.
  SharedContext* context = nullptr;
  wire::DeviceInfo device;  // cached at server start
  std::string server_version;
  std::atomic<uint64_t>* next_id = nullptr;  // server-wide handle id source
  std::function<absl::Time()> clock;
  // Module images seen on this node, by digest (module_cache.h); null: none.
  // Images are added off the request path.
  std::shared_ptr<ModuleCache> module_cache;
  // False: images are added to the cache before the load is answered (tests).
  bool fill_module_cache_in_background = true;
  // Tenants, policies and memory limits (tenants.h); not owned, never null.
  TenantRegistry* tenants = nullptr;
  // The scheduler's mechanism (share_control.h); null: none (tests).
  ShareControl* share_control = nullptr;
  // Overcommitted device memory (node_memory.h); null unless
  // ServerOptions::overcommit. Then every cuMemAlloc goes through it.
  std::shared_ptr<NodeMemory> node_memory;
  // ServerOptions::launch_pipeline.
  bool launch_pipeline = false;
};

// A client as the admin service reports it.
struct ClientStatus {
  uint64_t client_id = 0;
  uint32_t pid = 0;
  std::string name;
  int32_t priority = 0;
  uint64_t bytes_allocated = 0;
  uint32_t streams = 0;  // including its default stream
  uint32_t modules = 0;  // modules and libraries it loaded
  std::string transport;
  int64_t connected_unix_seconds = 0;
  // The GPU context the client worked in was lost to a sticky error (its
  // own or another client's): its commands get that error until it leaves,
  // and it holds nothing on the GPU (bytes, streams and modules read 0).
  bool context_lost = false;
  uint64_t kernels_launched = 0;
  // Kubernetes placement from the client's environment (Hello), or empty.
  std::string pod;
  std::string pod_namespace;
  // Its tenant (tenants.h) and the tenant's memory limit (0: none).
  std::string tenant;
  uint64_t memory_limit = 0;
  // Effective scheduling policy (scheduler/tenant.h); floor 0 and cap 1
  // mean none.
  double weight = 1.0;
  double sm_floor = 0.0;
  double sm_cap = 1.0;
  // The scheduler's view (share_control.h): target and measured SM share
  // over the last second, GPU busy time since it connected, launches the
  // GPU has not finished.
  double target_share = 0.0;
  double measured_share = 0.0;
  double measured_share_recent = 0.0;  // over the controller's window (250 ms)
  double busy_seconds = 0.0;
  uint32_t queue_depth = 0;
  // Overcommit (node_memory.h; all 0 when it is off): of its cuMemAlloc
  // memory, the bytes in device memory, in the pinned host pool, and mapped
  // onto deduplicated chunks (WOOLY_DEDUP=1; docs/memory.md).
  uint64_t memory_resident = 0;
  uint64_t memory_swapped_out = 0;
  uint64_t memory_shared = 0;
};

class ClientSession {
 public:
  // A reply frame: op (request op | kReplyBit), the request's seq, and the
  // payload (int32 CUresult first). `close` asks the transport to end the
  // connection after sending it.
  struct Reply {
    uint16_t op = 0;
    uint32_t seq = 0;
    std::vector<uint8_t> payload;
    bool close = false;
  };

  // `env` must outlive the session. `transport` is "unix", "tcp" or "grpc";
  // `peer` describes the other end for logs.
  ClientSession(const SessionEnv* env, uint64_t client_id, std::string transport, std::string peer);
  ~ClientSession();  // Close("session destroyed") if still open

  ClientSession(const ClientSession&) = delete;
  ClientSession& operator=(const ClientSession&) = delete;

  // Runs one request and returns its reply. Never fails on client input:
  // malformed payloads get CUDA_ERROR_INVALID_VALUE. The first request must
  // be kHello; anything else first is refused and the connection closed.
  Reply Handle(const wire::FrameHeader& header, absl::Span<const uint8_t> payload);
  // Gives a written reply's payload back for the next reply to reuse: a
  // copy's 64 MiB reply then costs no fresh pages each time.
  void RecycleReply(std::vector<uint8_t> payload);

  // Releases everything the client owns: synchronizes its streams, then
  // destroys events and streams, unloads modules and libraries and frees
  // allocations, and logs what it released. Idempotent. When the client's
  // context was lost (shared_context.h) its objects died with it: only the
  // bookkeeping is dropped and the backend is not called.
  void Close(const std::string& reason);

  // Scheduler hooks for the transport (share_control.h), called on the
  // connection's thread outside Handle: Admit before a launch command (may
  // wait while the client is held or paced); OnIdle when no further command
  // is ready, which ends the client's open measurement batches.
  void Admit(const std::atomic<bool>& stopping);
  bool HasOpenBatch() const;
  void OnIdle();
  // Set by the transport before each Handle: whether further commands have
  // arrived already (posted launches then go to the launch pipeline).
  void SetMoreInput(bool more) { more_input_.store(more, std::memory_order_relaxed); }

  // Set by the transport before Hello: the peer's pid namespace inode (unix
  // peers), which keys its tenant when nothing else does (tenants.h).
  void set_peer_pid_namespace(uint64_t ns) { peer_pid_namespace_ = ns; }
  // True for an NVML-view session (Hello role "observer"): it holds nothing
  // and is not listed as a client.
  bool observer() const { return observer_.load(std::memory_order_acquire); }

  // A file descriptor that arrived beside the next request (the memfd of a
  // kHostShmRegister); the session owns it and closes it if unused.
  void SetPendingFd(int fd);
  // The transport as connected ("unix", "tcp", "grpc").
  const std::string& transport() const { return transport_; }
  // What status reports as the transport, e.g. "unix+shm" after the switch.
  void set_transport(std::string transport);

  uint64_t id() const { return id_; }
  // True once Hello succeeded (the client is then listed in status).
  bool hello_done() const { return hello_done_.load(std::memory_order_acquire); }
  ClientStatus Snapshot() const;

 private:
  struct StreamRec {
    BackendHandle backend = 0;
    bool blocking = false;            // created without CU_STREAM_NON_BLOCKING
    BackendHandle sync_event = 0;     // for legacy-stream emulation, created lazily
    uint64_t epoch = 0;               // work items issued so far
    uint64_t seen_default_epoch = 0;  // default-stream work this stream waited for
    uint64_t seen_by_default = 0;     // this stream's work the default stream waited for
    uint64_t placement = 0;           // the scheduler placement it runs in (share_control.h)
  };
  struct ModuleRec {
    BackendHandle backend = 0;
    uint64_t library = 0;  // non-zero: owned by that library (LibraryGetModule)
    std::map<std::string, uint64_t> functions;  // name -> function id
    std::set<DevPtr> globals;                   // bases registered in globals_
  };
  struct LibraryRec {
    BackendHandle backend = 0;
    uint64_t module = 0;                      // id from LibraryGetModule, 0 until asked
    std::map<std::string, uint64_t> kernels;  // name -> kernel id
    std::set<DevPtr> globals;
  };
  struct FunctionRec {
    BackendHandle backend = 0;
    uint64_t owner = 0;  // module id, or library id for kernel-derived functions
    std::vector<wire::ParamInfo> layout;
    uint64_t arg_bytes = 0;  // bytes the layout needs
  };
  struct KernelRec {
    BackendHandle backend = 0;
    uint64_t library = 0;
    uint64_t function = 0;  // function id from KernelGetFunction, 0 until asked
    BackendHandle backend_function = 0;
    std::vector<wire::ParamInfo> layout;
    uint64_t arg_bytes = 0;
  };
  // What a function-or-kernel id resolves to for launches and attributes.
  struct Callable {
    BackendHandle function = 0;
    uint64_t arg_bytes = 0;
  };

  using Handler = absl::Status (ClientSession::*)(wire::Reader&, wire::Writer&);

  uint64_t NewId() { return env_->next_id->fetch_add(1, std::memory_order_relaxed); }
  void PublishStats() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  Reply HandleHello(const wire::FrameHeader& header, absl::Span<const uint8_t> payload)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The successful Hello reply's payload; marks the session as past Hello.
  std::vector<uint8_t> HelloAccepted() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void CloseLocked(const std::string& reason) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Releases every object the client owns through the backend, in the order
  // Close documents, and describes what it released in `summary`. Returns
  // false, leaving the rest, as soon as the context turns out to be lost.
  bool ReleaseAllLocked(SharedContext::Access& access, std::string* summary)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Forgets every object the client owns without calling the backend (after
  // its context was lost); returns what was dropped, for the log.
  std::string DropAllLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // "client 3 ('name', pid 42) <op>", for the sticky-error log.
  std::string DescribeLocked(uint16_t op) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Ownership checks.
  bool OwnsRange(DevPtr ptr, uint64_t size) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status CheckRange(DevPtr ptr, uint64_t size) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  StreamRec* FindStream(uint64_t id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The backend stream for work on client stream `id`, after ordering it
  // behind the legacy stream (or the blocking streams) as CUDA would.
  absl::StatusOr<BackendHandle> StreamForWork(uint64_t id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status OrderAfter(StreamRec& waiter, StreamRec& signaler)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A new backend stream where the scheduler places the client now; sets
  // *placement to that placement's generation.
  absl::StatusOr<BackendHandle> NewBackendStream(int32_t priority, uint64_t* placement)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Moves a stream to the client's current placement when it changed: a
  // fresh backend stream that first waits for the old one's work.
  void MoveToPlacement(StreamRec& s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<BackendHandle> EventFor(uint64_t id) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<Callable> ResolveCallable(uint64_t id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<uint64_t> NewFunction(BackendHandle backend, uint64_t owner)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status RegisterGlobal(const GlobalInfo& g, std::set<DevPtr>& owner_globals)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ReleaseGlobals(std::set<DevPtr>& owner_globals) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void DropFunctionsOf(uint64_t owner) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void DropModuleRecord(uint64_t module_id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // One handler per op: read request fields from `in`, append reply fields
  // to `out`; a non-OK status becomes the reply's CUresult.
  absl::Status OpMemAlloc(wire::Reader& in, wire::Writer& out) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status OpMemFree(wire::Reader& in, wire::Writer& out) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Frees the client's allocation at `p` (cuMemFree, or cuMemFreeAsync on
  // `stream` when it is given): the driver's, or NodeMemory's once the
  // work that may use it is done.
  absl::Status FreeAllocationLocked(DevPtr p, const BackendHandle* stream)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status OpMemGetInfo(wire::Reader& in, wire::Writer& out) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status OpMemGetAddressRange(wire::Reader& in, wire::Writer& out)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status OpMemcpyHtoD(wire::Reader& in, wire::Writer& out) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status OpMemcpyDtoH(wire::Reader& in, wire::Writer& out) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status OpMemcpyDtoD(wire::Reader& in, wire::Writer& out) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status OpMemset(wire::Reader& in, wire::Writer& out) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status OpMemcpy3D(wire::Reader& in, wire::Writer& out) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status OpDedupProbe(wire::Reader& in, wire::Writer& out) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status OpDedupPublish(wire::Reader& in, wire::Writer& out)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status OpModuleLoadData(wire::Reader& in, wire::Writer& out)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status OpModuleGetFunction(wire::Reader& in, wire::Writer& out)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status OpModuleGetGlobal(wire::Reader& in, wire::Writer& out)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status OpModuleUnload(wire::Reader& in, wire::Writer& out)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status OpModuleGetFunctionCount(wire::Reader& in, wire::Writer& out)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status OpLibraryLoadData(wire::Reader& in, wire::Writer& out)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status OpLibraryGetKernel(wire::Reader& in, wire::Writer& out)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status OpLibraryGetModule(wire::Reader& in, wire::Writer& out)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status OpLibraryGetGlobal(wire::Reader& in, wire::Writer& out)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status OpLibraryUnload(wire::Reader& in, wire::Writer& out)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status OpKernelGetFunction(wire::Reader& in, wire::Writer& out)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status OpFuncGetAttribute(wire::Reader& in, wire::Writer& out)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status OpFuncSetAttribute(wire::Reader& in, wire::Writer& out)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status OpLaunchKernel(wire::Reader& in, wire::Writer& out)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status OpStreamCreate(wire::Reader& in, wire::Writer& out)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status OpStreamDestroy(wire::Reader& in, wire::Writer& out)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status OpStreamSynchronize(wire::Reader& in, wire::Writer& out)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status OpStreamQuery(wire::Reader& in, wire::Writer& out)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status OpStreamWaitEvent(wire::Reader& in, wire::Writer& out)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status OpEventCreate(wire::Reader& in, wire::Writer& out)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status OpEventRecord(wire::Reader& in, wire::Writer& out)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status OpEventSynchronize(wire::Reader& in, wire::Writer& out)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status OpEventQuery(wire::Reader& in, wire::Writer& out) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status OpEventElapsedTime(wire::Reader& in, wire::Writer& out)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status OpEventDestroy(wire::Reader& in, wire::Writer& out)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status OpCtxSynchronize(wire::Reader& in, wire::Writer& out)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status OpTenantView(wire::Reader& in, wire::Writer& out) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Overcommit (node_memory.h). The client's backend streams as the
  // quiesce callback sees them, republished whenever they change (before a
  // stream is destroyed).
  void PublishQuiesceStreamsLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Returns once every queued launch has run, and makes a pipelined
  // launch's error the session's deferred error. Called before any other
  // backend call of the session, so that calls keep the client's order.
  void DrainPipelineLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Runs queued launches (the pipeline's thread).
  void RunPipelined(absl::FunctionRef<LaunchPipeline::Job*()> next);
  // NodeMemory's quiesce callback: synchronizes those streams. Takes only
  // quiesce_mu_ (see the lock order in node_memory.h).
  absl::Status QuiesceStreams() ABSL_LOCKS_EXCLUDED(quiesce_mu_);
  // Weight dedup (node_memory.h). Before any API write into [dst, dst +
  // size): copy-on-write of the shared chunks it covers (after quiescing
  // the client's streams, as the mapping behind its addresses changes).
  absl::Status PrepareNodeWriteLocked(DevPtr dst, uint64_t size) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Frees the client's overcommitted memory and leaves NodeMemory.
  void LeaveNodeMemoryLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Charges an allocation to the tenant's memory limit before it is made;
  // CUDA_ERROR_OUT_OF_MEMORY when it would exceed the limit.
  absl::Status ChargeMemory(uint64_t bytes) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void UnchargeMemory(uint64_t bytes) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Shared pinned memory (session_shared_host.cc).
  absl::Status OpImageLoadCached(wire::Reader& in, wire::Writer& out)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Loads an image as a module or library of this client and answers its id.
  absl::Status LoadImage(bool library, absl::Span<const uint8_t> image, wire::Writer& out)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Adds a loaded image to the module cache in the background.
  void RememberImage(absl::Span<const uint8_t> image);
  absl::Status OpHostShmRegister(wire::Reader& in, wire::Writer& out)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status OpHostShmUnregister(wire::Reader& in, wire::Writer& out)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status OpMemcpyHtoDShared(wire::Reader& in, wire::Writer& out)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status OpMemcpyDtoHShared(wire::Reader& in, wire::Writer& out)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Both directions of a copy between device memory and shared host memory.
  absl::Status SharedCopy(wire::Reader& in, bool to_device) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The server-side address of [addr, addr + size) when it lies inside one
  // of the client's shared regions, else nullptr.
  uint8_t* SharedHostRange(uint64_t addr, uint64_t size) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Unmaps every shared region, unregistering it from the driver first
  // when `unregister` (not after the context was lost).
  void ReleaseSharedHostLocked(bool unregister) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Memory extensions (session_memory_ext.cc, session_memory_ext.h).
#define WOOLY_DECLARE_MEMORY_EXT_OP(name) \
  absl::Status Op##name(wire::Reader& in, wire::Writer& out) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  WOOLY_SESSION_MEMORY_EXT_OPS(WOOLY_DECLARE_MEMORY_EXT_OP)
#undef WOOLY_DECLARE_MEMORY_EXT_OP
  SessionMemoryExt& MemExt() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Whether client mappings (VMM) cover the range; part of OwnsRange.
  bool OwnsMappedRange(DevPtr ptr, uint64_t size) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Physical memory the client holds through VMM handles, for status.
  uint64_t MemExtBytes() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Cleanup step after the allocations are freed (see session_memory_ext.h).
  void CloseMemoryExtLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // CUDA graphs and stream capture (session_graphs.cc, session_graphs.h).
#define WOOLY_DECLARE_GRAPH_OP(name) \
  absl::Status Op##name(wire::Reader& in, wire::Writer& out) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  WOOLY_SESSION_GRAPH_OPS(WOOLY_DECLARE_GRAPH_OP)
#undef WOOLY_DECLARE_GRAPH_OP
  // Whether a backend stream of this client is capturing (false at once
  // when the client has no capture in progress).
  bool StreamCapturing(BackendHandle stream) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED for a host copy on a capturing
  // stream: the graph would read or write the server's request buffers.
  absl::Status RefuseHostCopyWhileCapturing(uint64_t stream) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Ends (and discards) a capture begun on client stream `stream` before the
  // stream is destroyed.
  void AbandonCaptureOn(uint64_t stream) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Cleanup: ends open captures (before the streams are synchronized), then
  // destroys executable graphs and graphs (after).
  void EndCapturesForClose() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ReleaseGraphsForClose() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Kernel node parameters between client ids and backend handles.
  absl::StatusOr<KernelNodeParams> ToBackendKernelParams(const wire::KernelNodeParams& p)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The client's function (or kernel) id for a backend function handle.
  absl::StatusOr<uint64_t> CallableIdFor(BackendHandle function) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Node ids for backend nodes of graph `graph_id`, issued on first sight.
  absl::StatusOr<std::vector<wire::GraphNodeRef>> NodeRefs(uint64_t graph_id,
                                                           const std::vector<BackendHandle>& nodes)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const SessionEnv* const env_;
  GpuBackend* const backend_;
  const uint64_t id_;
  const std::string transport_;
  const std::string peer_;
  const absl::Time connected_at_;
  std::atomic<bool> hello_done_{false};
  std::atomic<bool> observer_{false};
  uint64_t peer_pid_namespace_ = 0;  // set before Hello, then read-only
  std::atomic<uint64_t> kernels_launched_{0};
  // The context generation the client's objects live in (shared_context.h);
  // kUnbound until Hello. Written under mu_, read by Snapshot without it.
  std::atomic<uint64_t> context_generation_{SharedContext::kUnbound};

  // Held for the whole of each request: one request runs at a time.
  mutable absl::Mutex mu_;
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  uint32_t pid_ ABSL_GUARDED_BY(mu_) = 0;
  std::string name_ ABSL_GUARDED_BY(mu_);
  int32_t priority_ ABSL_GUARDED_BY(mu_) = 0;
  // Its place among the tenants (set at Hello; leaves with the session).
  std::unique_ptr<TenantMembership> membership_ ABSL_GUARDED_BY(mu_);
  // Its scheduling state (share_control.h); set at Hello, before
  // hello_done_ is published, and kept until the session is destroyed.
  std::shared_ptr<ScheduledClient> sched_;
  BackendHandle move_event_ ABSL_GUARDED_BY(mu_) = 0;  // for MoveToPlacement
  memory::AllocationTable allocations_ ABSL_GUARDED_BY(mu_);
  // Module and library globals; a range looked up through both a library and
  // its module is registered once and counted in global_refs_.
  memory::AllocationTable globals_ ABSL_GUARDED_BY(mu_);
  std::map<DevPtr, int> global_refs_ ABSL_GUARDED_BY(mu_);
  bool has_default_stream_ ABSL_GUARDED_BY(mu_) = false;
  StreamRec default_stream_ ABSL_GUARDED_BY(mu_);
  std::map<uint64_t, StreamRec> streams_ ABSL_GUARDED_BY(mu_);
  std::map<uint64_t, BackendHandle> events_ ABSL_GUARDED_BY(mu_);
  std::map<uint64_t, ModuleRec> modules_ ABSL_GUARDED_BY(mu_);
  std::map<uint64_t, LibraryRec> libraries_ ABSL_GUARDED_BY(mu_);
  std::map<uint64_t, FunctionRec> functions_ ABSL_GUARDED_BY(mu_);
  std::map<uint64_t, KernelRec> kernels_ ABSL_GUARDED_BY(mu_);
  // Pools, VMM, limits: created on first use.
  std::unique_ptr<SessionMemoryExt, SessionMemoryExtDeleter> mem_ext_ ABSL_GUARDED_BY(mu_);
  SessionGraphs graphs_ ABSL_GUARDED_BY(mu_);
  // The first error of a request sent without reply (wire::kFlagNoReply),
  // reported by the next synchronizing request.
  CUresult deferred_error_ ABSL_GUARDED_BY(mu_) = CUDA_SUCCESS;
  // Whether the request being handled was sent without reply.
  bool no_reply_ ABSL_GUARDED_BY(mu_) = false;
  // Whether OpLaunchKernel queued the request being handled.
  bool queued_ ABSL_GUARDED_BY(mu_) = false;
  // Posted launches run on their own thread (launch_pipeline.h); started on
  // the first one. pipeline_busy_ mirrors it for HasOpenBatch, which runs
  // without mu_. The first error of a pipelined launch waits in
  // pipeline_error_ until the next drain moves it to deferred_error_.
  std::unique_ptr<LaunchPipeline> pipeline_ ABSL_GUARDED_BY(mu_);
  std::atomic<LaunchPipeline*> pipeline_view_{nullptr};
  std::atomic<int32_t> pipeline_error_{CUDA_SUCCESS};
  std::atomic<bool> more_input_{true};  // SetMoreInput; true where no transport says
  int pending_fd_ ABSL_GUARDED_BY(mu_) = -1;
  // A large reply payload kept for the next reply (RecycleReply).
  std::vector<uint8_t> spare_reply_ ABSL_GUARDED_BY(mu_);
  // Client pinned memory mapped into woolyd at the client's addresses:
  // base -> size.
  std::map<uint64_t, uint64_t> shared_host_ ABSL_GUARDED_BY(mu_);

  // Registered with env_->node_memory (Hello succeeded with overcommit on);
  // the cuMemAlloc allocations made there (the rest of allocations_ are
  // stream-ordered ones, freed through the backend).
  bool node_client_ ABSL_GUARDED_BY(mu_) = false;
  std::set<DevPtr> node_allocations_ ABSL_GUARDED_BY(mu_);
  // node_client_ with weight dedup on (WOOLY_DEDUP=1 or the server default).
  bool node_dedup_ ABSL_GUARDED_BY(mu_) = false;
  // A leaf lock: what QuiesceStreams synchronizes.
  absl::Mutex quiesce_mu_ ABSL_ACQUIRED_AFTER(mu_);
  std::vector<BackendHandle> quiesce_streams_ ABSL_GUARDED_BY(quiesce_mu_);

  // What Snapshot reports, refreshed after each request; separate from mu_
  // so that status never waits behind a long synchronize.
  mutable absl::Mutex stats_mu_;
  ClientStatus stats_ ABSL_GUARDED_BY(stats_mu_);
};

}  // namespace wooly::server

#endif  // WOOLY_SERVER_CLIENT_SESSION_H_
