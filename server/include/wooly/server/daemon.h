// The woolyd command line, shared by woolyd (CUDA backend) and woolyd-fake
// (tests/fake backend): flag parsing, the supervisor that restarts the GPU
// worker after a lost context, and the run-until-signalled main.
#ifndef WOOLY_SERVER_DAEMON_H_
#define WOOLY_SERVER_DAEMON_H_

#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "wooly/server/gpu_backend.h"
#include "wooly/server/share_control.h"
#include "wooly/server/tenants.h"

namespace wooly::server {

// Exit status of a woolyd process whose shared GPU context was lost beyond
// an in-process reset (a sticky error, and the reset failed, as it does on
// the real driver: the process must be relaunched). The supervisor starts a
// new worker when its worker exits with it. woolyd --no-supervisor exits
// with it too, and so does the supervisor when it gives up (RestartPolicy).
// 75 is EX_TEMPFAIL: try again.
inline constexpr int kExitContextLost = 75;

struct DaemonFlags {
  // Framed-protocol endpoints. Unless one of them is a unix socket, the
  // default session socket (wire::DefaultSessionEndpoint()) is served too.
  std::vector<std::string> listen;
  std::string admin;  // gRPC endpoint; "none" disables it
  // The GPU: its ordinal, or, when `device_uuid` is set, its UUID
  // ("GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx", lower case; CreateBackend).
  int device = 0;
  std::string device_uuid;
  std::string log_level = "info";  // trace|debug|info|warn|error
  std::string ready_file;          // written once serving; see RunDaemon
  std::string metrics;             // Prometheus "HOST:PORT"; empty: off
  // Module cache (ServerOptions): directory ("" = memory only) and bound.
  std::string module_cache_dir;  // default: DefaultModuleCacheDir()
  uint64_t module_cache_bytes = 4ull << 30;
  // The scheduler ([scheduler]; ServerOptions). `policy_file` is parsed by
  // ParseDaemonFlags, so a bad file stops woolyd before it forks a worker.
  bool scheduler = true;
  // --launch-pipeline or WOOLY_LAUNCH_PIPELINE=1 (ServerOptions::launch_pipeline).
  bool launch_pipeline = false;
  absl::Duration scheduler_tick = absl::Milliseconds(100);
  bool sm_partitions = true;
  SmPlacement sm_placement = SmPlacement::kNested;
  std::string policy_file;
  // Memory overcommit and swapping ([memory]). Overcommit is on exactly
  // when a percent is given (0 included).
  std::optional<uint32_t> overcommit_percent;
  absl::Duration swap_idle_threshold = absl::Seconds(30);
  uint64_t swap_host_pool_bytes = 0;  // 0: sized by the server
  // --memory-capacity / [memory] capacity: most device memory the pool
  // plans with; 0: the device's less the reserve (NodeMemoryOptions).
  uint64_t memory_capacity_bytes = 0;
  // Policy, memory-limit, noswap and dedup defaults for clients ([defaults]).
  TenantDefaults defaults;
  // Run the server in a worker process under a supervisor (the default);
  // --no-supervisor runs it in this process.
  bool supervise = true;
  bool version = false;
  bool help = false;
};

// The config file woolyd reads when --config is not given (docs/configuration.md).
inline constexpr char kEnvConfig[] = "WOOLY_CONFIG";

// /var/cache/wooly/modules for root, else $XDG_CACHE_HOME/wooly/modules or
// ~/.cache/wooly/modules.
std::string DefaultModuleCacheDir();

// Parses argv (argv[0] is skipped). Flags take `--flag value` or
// `--flag=value`. Defaults come from wire::DefaultSessionEndpoint() and
// wire::DefaultAdminEndpoint(), i.e. $WOOLY_SOCKET_DIR and friends.
// Errors name the offending flag.
absl::StatusOr<DaemonFlags> ParseDaemonFlags(int argc, const char* const* argv);

// The usage text for `program`.
std::string DaemonUsage(const std::string& program);

struct ServerOptions;
// The server options `flags` ask for (everything but bound sockets and
// callbacks, which RunDaemon adds).
ServerOptions ServerOptionsFromFlags(const DaemonFlags& flags);

// When the supervisor starts a new worker after one exited with
// kExitContextLost: at once for up to kFreeRestarts restarts within
// kFreeWindow; beyond that after a delay that starts at kFirstDelay and
// doubles with each further restart in the window, up to kMaxDelay. It gives
// up once kMaxRestarts restarts fall within kGiveUpWindow: the context is
// then being lost faster than restarting can help. Times are passed in, so
// tests need no clock. Thread-compatible.
class RestartPolicy {
 public:
  static constexpr int kFreeRestarts = 5;
  static constexpr absl::Duration kFreeWindow = absl::Minutes(1);
  static constexpr absl::Duration kFirstDelay = absl::Seconds(1);
  static constexpr absl::Duration kMaxDelay = absl::Seconds(30);
  static constexpr int kMaxRestarts = 20;
  static constexpr absl::Duration kGiveUpWindow = absl::Minutes(10);

  struct Decision {
    bool give_up = false;
    absl::Duration delay = absl::ZeroDuration();  // before the new worker starts
  };

  // A worker was lost at `now` (non-decreasing between calls).
  Decision OnWorkerLost(absl::Time now);
  // Restarts decided within kGiveUpWindow of the last call.
  int recent_restarts() const { return static_cast<int>(restarts_.size()); }

 private:
  std::deque<absl::Time> restarts_;  // within kGiveUpWindow, oldest first
};

using BackendFactory =
    std::function<absl::StatusOr<std::unique_ptr<GpuBackend>>(int device_ordinal)>;

// The backend for the GPU `flags` select. By ordinal: make_backend(device).
// By UUID: sets CUDA_VISIBLE_DEVICES to the UUID in this process (the
// driver, loaded by the factory, then shows only that GPU as device 0),
// calls make_backend(0) and checks that the device has that UUID. Errors
// name the UUID when no GPU has it. Call before the driver is loaded.
absl::StatusOr<std::unique_ptr<GpuBackend>> CreateBackend(const DaemonFlags& flags,
                                                          const BackendFactory& make_backend);

// Runs the daemon until SIGINT or SIGTERM and returns the process exit code:
// 0 after a clean stop (or --version/--help), 2 for bad flags, 1 when the
// backend cannot be created ("<program>: no usable GPU: <reason>", one line)
// or the server cannot start ("<program>: cannot start: <reason>").
//
// By default the calling process becomes a supervisor: it binds the session
// sockets (they refuse connections until a worker listens on them), then
// forks a worker that creates the backend and serves on those sockets, so
// the supervisor never touches the GPU. SIGINT and SIGTERM are forwarded to
// the worker, and the supervisor returns once it has exited. A worker that
// exits with kExitContextLost is replaced by a new one (RestartPolicy) that
// serves on the same sockets: clients connecting meanwhile wait in the
// backlog. Any other worker exit status (1 for no usable GPU, with the
// worker's one line already printed) is returned as is; a worker killed by a
// signal gives 128 + the signal. A worker dies with its supervisor
// (PR_SET_PDEATHSIG). With --no-supervisor the server runs in this process,
// which then _exit()s with kExitContextLost when its context is lost.
//
// Once serving, each worker writes `--ready-file` (if given) atomically, one
// line per endpoint, "listen <address>" and "admin <address>", then
// "pid <serving process id>". The supervisor removes a stale ready file
// before it starts each worker, so waiting for the file waits for a worker
// that serves. The gRPC admin endpoint is bound by each worker (a TCP port 0
// may change across restarts; the ready file tells the new one).
int RunDaemon(int argc, char** argv, const std::string& program,
              const BackendFactory& make_backend);

}  // namespace wooly::server

#endif  // WOOLY_SERVER_DAEMON_H_
