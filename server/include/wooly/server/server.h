// woolyd's core as a library: listeners for the framed protocol (unix and
// TCP sockets, one thread per client), the gRPC Admin and Session services,
// and the registry of client sessions. woolyd's main and the tests both run
// it through Server::Start.
//
// Thread safety: all public methods may be called from any thread.
#ifndef WOOLY_SERVER_SERVER_H_
#define WOOLY_SERVER_SERVER_H_

#include <cuda.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "wooly/server/client_session.h"
#include "wooly/server/gpu_backend.h"
#include "wooly/server/metrics.h"
#include "wooly/server/node_memory.h"
#include "wooly/server/share_control.h"
#include "wooly/server/shared_context.h"
#include "wooly/server/tenants.h"

namespace grpc {
class Server;
}  // namespace grpc

namespace wooly::server {

// woolyd's release version ("0.1.0").
extern const char kServerVersion[];

struct ServerOptions {
  // Framed-protocol endpoints, in wire::ParseEndpoint syntax
  // ("unix:/path", "tcp:host:port"). A TCP port of 0 picks a free port;
  // listen_addresses() tells which.
  std::vector<std::string> listen;
  // gRPC Admin + Session endpoint ("unix:/path" or "tcp:host:port");
  // empty: no gRPC server.
  std::string admin;
  // Permissions of the unix sockets, and of socket directories created for
  // them (parents included), so only the owning user/group can connect.
  uint32_t socket_mode = 0660;
  uint32_t socket_dir_mode = 0750;
  // Wall clock for connect times and uptime; absl::Now when unset.
  std::function<absl::Time()> clock;
  // Session sockets bound beforehand by BindSessionSocket, keyed by their
  // entry in `listen`. The server listens and accepts on them, takes
  // ownership of the descriptors (closes them at shutdown), but never shuts
  // the sockets down or removes their files: they belong to whoever bound
  // them. woolyd's supervisor binds them once and hands them to every worker
  // it starts, so clients that connect while a worker restarts wait in the
  // backlog and a TCP port 0 keeps its port.
  std::map<std::string, int> bound_listeners;
  // Called once, from the server thread whose reset of a faulted GPU context
  // failed (SharedContext: the context is lost for good in this process),
  // after the server has stopped accepting connections. The owner should
  // then Shutdown() the server and exit the process (woolyd exits with
  // kExitContextLost, daemon.h). Must not block or call Shutdown() itself.
  std::function<void(CUresult fault)> on_context_unrecoverable;
  // Prometheus metrics endpoint "HOST:PORT" (metrics.h); empty: none.
  std::string metrics_address;
  // The module cache (module_cache.h): its directory ("" keeps it in
  // memory) and size bound; 0 bytes turns it off.
  std::string module_cache_dir;
  uint64_t module_cache_bytes = 0;
  // Tests: add images to the cache before answering the load.
  bool fill_module_cache_in_background = true;
  // The scheduler (share_control.h): off runs every client on the whole GPU
  // at its priority, unmeasured. `scheduler_thread` false leaves ticking to
  // the caller (tests: share_control()->Tick()).
  bool scheduler = true;
  bool scheduler_thread = true;
  absl::Duration scheduler_tick = absl::Milliseconds(100);
  bool sm_partitions = true;
  // How partitions nest across priority levels (share_control.h).
  SmPlacement sm_placement = SmPlacement::kNested;
  // The policy file (scheduler/tenant.h: PolicyFile); empty: none.
  std::string policy_file;
  // Device memory overcommit and swapping (issue #6; node_memory.h). With
  // `overcommit` false, client allocations go straight to the driver as
  // before. With it true, every cuMemAlloc is backed through CUDA's VMM API
  // in the client's own reserved range, admitted up to
  // physical * (100 + overcommit_percent) / 100, and idle clients' memory is
  // swapped to a pinned host pool when physical memory is short.
  bool overcommit = false;
  // Per server. A client's override (tenants.h: WOOLY_OVERCOMMIT_PERCENT,
  // capped at this; the policy file, [defaults] and wooly-cli, not capped)
  // replaces it for that client's allocations.
  uint32_t overcommit_percent = 0;
  // Most device memory the overcommitted pool plans with
  // (NodeMemoryOptions::capacity_bytes); 0: the device's less the reserve.
  uint64_t memory_capacity_bytes = 0;
  // A client is idle (a swap victim) after this long without a command.
  absl::Duration swap_idle_threshold = absl::Seconds(30);
  // Upper bound of the pinned host pool that holds swapped-out memory; 0:
  // as large as the overcommitted part (physical * percent / 100).
  uint64_t swap_host_pool_bytes = 0;
  // How long an allocation or swap-in waits for room that others' swaps or
  // commands may free before it is out of memory (NodeMemoryOptions).
  absl::Duration swap_wait_for_room = absl::Seconds(5);
  uint64_t swap_in_group_bytes = uint64_t{1} << 30;  // NodeMemoryOptions
  // Posted launches run on a per-session thread (launch_pipeline.h). Off
  // by default: it doubled async launch throughput on the lent H100, but
  // batch-1 decode was slower in the runs with it (docs/benchmarks.md).
  bool launch_pipeline = false;
  // The server's defaults for clients (tenants.h TenantDefaults; woolyd's
  // [defaults]): the lowest policy layer, and a memory limit, noswap and
  // dedup for clients that send none.
  TenantDefaults tenant_defaults;
  // How long Shutdown() lets connections finish their command in progress
  // and read its reply before cutting them.
  absl::Duration shutdown_grace = absl::Seconds(5);
};

// A session socket bound (and, for unix sockets, given its permissions) but
// not listening yet: connecting to it is refused until a Server listens on
// it (ServerOptions::bound_listeners), so a probe never mistakes it for a
// serving woolyd.
struct BoundSocket {
  int fd = -1;
  std::string endpoint;  // as given to BindSessionSocket
  std::string path;      // unix socket file; empty for TCP
  uint64_t inode = 0;    // of `path` when bound, to remove only our own file
};

// Binds `endpoint` (wire::ParseEndpoint syntax; a TCP port of 0 picks one)
// as Server::Start would: creates missing socket directories with
// `socket_dir_mode`, refuses a unix socket that a live server answers on,
// replaces a stale socket file, and gives the file `socket_mode`. The caller
// owns the result; CloseBoundSocket releases it.
absl::StatusOr<BoundSocket> BindSessionSocket(const std::string& endpoint, uint32_t socket_mode,
                                              uint32_t socket_dir_mode);
// Closes the socket and removes its file if it is still the one bound.
void CloseBoundSocket(BoundSocket* socket);

// What `wooly-cli status` shows; mirrors wooly.v1.StatusReply.
struct StatusSnapshot {
  std::string server_version;
  uint32_t protocol_version = 0;
  std::string gpu_name;
  std::string gpu_uuid;  // "GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx"
  uint64_t total_memory_bytes = 0;
  uint64_t used_memory_bytes = 0;
  uint64_t free_memory_bytes = 0;
  std::string backend;
  std::vector<std::string> listen_addresses;
  std::string admin_address;
  int64_t uptime_seconds = 0;
  std::vector<ClientStatus> clients;  // clients past Hello, by id
  // Times the shared GPU context was reset after a sticky error.
  uint64_t context_resets = 0;
  // Overcommitted memory (node_memory.h); `enabled` false when it is off.
  NodeMemoryStatus memory;
};

namespace internal {
class AdminService;
class SessionService;
}  // namespace internal

class Server {
 public:
  // Binds every endpoint and starts serving. Takes ownership of `backend`,
  // which lives until the Server is destroyed. Fails (with nothing left
  // running) when the backend cannot describe its device or an endpoint
  // cannot be bound, for example because another woolyd already serves a
  // unix socket. Ignores SIGPIPE process-wide: peers may vanish mid-write.
  static absl::StatusOr<std::unique_ptr<Server>> Start(ServerOptions options,
                                                       std::unique_ptr<GpuBackend> backend);

  ~Server();  // Shutdown()
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Stops accepting, stops gRPC (cancelling its streams), lets every framed
  // connection finish the command it is running and write its reply (a
  // client that does not read it is cut after shutdown_grace), disconnects
  // every client (releasing what each owned) and removes the unix socket
  // files it bound. Idempotent; blocks until every serving thread has
  // finished.
  void Shutdown();

  // The bound framed-protocol endpoints in FormatEndpoint form, with actual
  // TCP ports ("unix:/run/wooly/woolyd.sock", "tcp:127.0.0.1:41234").
  std::vector<std::string> listen_addresses() const { return listen_addresses_; }
  // The bound gRPC endpoint ("unix:/..." or "tcp:127.0.0.1:port"); empty if none.
  std::string admin_address() const { return admin_address_; }
  // The metrics endpoint actually bound ("host:port"), or empty.
  std::string metrics_address() const { return metrics_ ? metrics_->address() : ""; }

  StatusSnapshot Status();
  std::vector<ClientStatus> Clients() const;
  // Open sessions (connections and gRPC streams, before Hello too).
  size_t session_count() const;
  // Waits until exactly `count` sessions are open; false on timeout. A
  // session leaves only after everything it owned has been released, so
  // tests use this to wait for a disconnect's cleanup.
  bool WaitForSessionCount(size_t count, absl::Duration timeout) const;
  const wire::DeviceInfo& device_info() const { return env_.device; }
  GpuBackend* backend() const { return backend_.get(); }
  // The shared context's guard (fault recovery); null before Start succeeds.
  SharedContext* context() const { return context_.get(); }
  TenantRegistry* tenants() { return &tenants_; }
  // The scheduler's mechanism; null when ServerOptions::scheduler is off.
  ShareControl* share_control() const { return share_control_.get(); }
  // Runtime policy override from wooly-cli (tenants.h SetRuntimePolicy):
  // the scheduling keys and overcommit_percent (FailedPrecondition when
  // overcommit is off), which applies from the client's next allocation.
  absl::Status SetClientPolicy(uint64_t client_id, const std::string& assignments, bool reset);
  // True once the shared context is lost beyond an in-process reset (see
  // ServerOptions::on_context_unrecoverable); the server no longer accepts.
  bool context_unrecoverable() const { return context_unrecoverable_.load(); }

 private:
  friend class internal::AdminService;
  friend class internal::SessionService;

  struct Listener {
    int fd = -1;
    bool is_unix = false;
    std::string path;  // unix socket file we bound, removed at shutdown
    uint64_t inode = 0;
    std::thread thread;
  };
  struct Connection {
    int fd = -1;
    std::thread thread;
    std::atomic<bool> done{false};
  };

  Server(ServerOptions options, std::unique_ptr<GpuBackend> backend);
  absl::Status Init();
  absl::Status StartListener(const std::string& text);
  absl::Status StartGrpc();
  void AcceptLoop(Listener* listener);
  // Wakes every accept loop, which then returns (stopping_ or draining_).
  void WakeAcceptLoops();
  // SharedContext's callback: stop accepting, tell the owner.
  void OnContextUnrecoverable(CUresult fault);
  void ServeConnection(Connection* conn, std::shared_ptr<ClientSession> session);
  void ReapConnections() ABSL_EXCLUSIVE_LOCKS_REQUIRED(conn_mu_);

  // Session registry, shared by both transports.
  std::shared_ptr<ClientSession> OpenSession(const std::string& transport, const std::string& peer);
  void EndSession(const std::shared_ptr<ClientSession>& session, const std::string& reason);

  const ServerOptions options_;
  std::unique_ptr<GpuBackend> backend_;
  std::unique_ptr<SharedContext> context_;  // set by Init, before any session
  std::atomic<uint64_t> next_handle_id_{0x100};
  std::atomic<uint64_t> next_client_id_{1};
  TenantRegistry tenants_;
  std::unique_ptr<ShareControl> share_control_;  // after context_, before sessions
  SessionEnv env_;
  absl::Time started_at_;
  std::vector<std::string> listen_addresses_;
  std::string admin_address_;
  LatencyHistogram latency_;
  std::unique_ptr<MetricsServer> metrics_;
  std::string admin_unix_path_;

  std::atomic<bool> stopping_{false};
  // No more connections are accepted (the context is lost for good); those
  // already queued are left to the next worker on a shared listener.
  std::atomic<bool> draining_{false};
  std::atomic<bool> context_unrecoverable_{false};
  // Accept loops poll this pipe's read end with their socket; Shutdown and
  // OnContextUnrecoverable write to it. A shared listener must never be
  // shut down to wake them: that would stop it for every process.
  int wake_pipe_[2] = {-1, -1};
  // bound_listeners descriptors taken over by a listener (closed with it).
  std::vector<int> adopted_fds_;
  absl::Mutex shutdown_mu_;  // serializes Shutdown
  bool shut_down_ ABSL_GUARDED_BY(shutdown_mu_) = false;
  bool serving_ = false;                              // Init succeeded
  std::vector<std::unique_ptr<Listener>> listeners_;  // fixed after Start

  absl::Mutex conn_mu_;
  std::list<std::unique_ptr<Connection>> connections_ ABSL_GUARDED_BY(conn_mu_);

  mutable absl::Mutex sessions_mu_;
  std::map<uint64_t, std::shared_ptr<ClientSession>> sessions_ ABSL_GUARDED_BY(sessions_mu_);

  std::unique_ptr<internal::AdminService> admin_service_;
  std::unique_ptr<internal::SessionService> session_service_;
  std::unique_ptr<grpc::Server> grpc_server_;
};

// Formats a 16-byte UUID as nvidia-smi does: "GPU-xxxxxxxx-xxxx-...".
std::string FormatGpuUuid(const uint8_t uuid[16]);

}  // namespace wooly::server

#endif  // WOOLY_SERVER_SERVER_H_
