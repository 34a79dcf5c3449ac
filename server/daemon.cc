#include "wooly/server/daemon.h"

#include <pthread.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <toml++/toml.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <initializer_list>
#include <map>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "spdlog/sinks/stdout_color_sinks.h"
#include "spdlog/spdlog.h"
#include "wooly/proto/defaults.h"
#include "wooly/proto/socket.h"
#include "wooly/proto/wire.h"
#include "wooly/scheduler/tenant.h"
#include "wooly/server/metrics.h"
#include "wooly/server/server.h"

namespace wooly::server {
namespace {

bool ParseLevel(const std::string& name, spdlog::level::level_enum* level) {
  static const std::pair<const char*, spdlog::level::level_enum> kLevels[] = {
      {"trace", spdlog::level::trace},
      {"debug", spdlog::level::debug},
      {"info", spdlog::level::info},
      {"warn", spdlog::level::warn},
      {"error", spdlog::level::err}};
  for (const auto& [n, l] : kLevels) {
    if (name == n) {
      *level = l;
      return true;
    }
  }
  return false;
}

bool WriteReadyFile(const std::string& path, const Server& server) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    if (!out) return false;
    for (const std::string& a : server.listen_addresses()) out << "listen " << a << "\n";
    if (!server.admin_address().empty()) out << "admin " << server.admin_address() << "\n";
    if (!server.metrics_address().empty()) out << "metrics " << server.metrics_address() << "\n";
    out << "pid " << ::getpid() << "\n";
    if (!out.flush()) return false;
  }
  return std::rename(tmp.c_str(), path.c_str()) == 0;
}

void FlushOutput() {
  if (auto logger = spdlog::default_logger()) logger->flush();
  std::fflush(stdout);
  std::fflush(stderr);
}

// A signal set of `signals`.
sigset_t SignalSet(std::initializer_list<int> signals) {
  sigset_t set;
  sigemptyset(&set);
  for (int s : signals) sigaddset(&set, s);
  return set;
}

// Runs the server in this process until SIGINT/SIGTERM (returns 0) or until
// its context is lost for good (exits with kExitContextLost at once). The
// stop signals and SIGUSR1 must be blocked in every thread (the caller
// blocks them before this starts any thread).
int RunServer(const DaemonFlags& flags, const std::string& program,
              const BackendFactory& make_backend, const std::map<std::string, int>& bound) {
  absl::StatusOr<std::unique_ptr<GpuBackend>> backend = CreateBackend(flags, make_backend);
  if (!backend.ok()) {
    std::fprintf(stderr, "%s: no usable GPU: %s\n", program.c_str(),
                 std::string(backend.status().message()).c_str());
    return 1;
  }
  ServerOptions options = ServerOptionsFromFlags(flags);
  options.bound_listeners = bound;
  // The server thread that finds the context lost for good wakes this one,
  // which shuts the server down (that joins the server threads).
  const pthread_t main_thread = ::pthread_self();
  options.on_context_unrecoverable = [main_thread](CUresult) {
    ::pthread_kill(main_thread, SIGUSR1);
  };
  absl::StatusOr<std::unique_ptr<Server>> server = Server::Start(options, std::move(*backend));
  if (!server.ok()) {
    std::fprintf(stderr, "%s: cannot start: %s\n", program.c_str(),
                 std::string(server.status().message()).c_str());
    return 1;
  }
  if (!flags.ready_file.empty() && !WriteReadyFile(flags.ready_file, **server)) {
    spdlog::error("cannot write the ready file {}", flags.ready_file);
    (*server)->Shutdown();
    return 1;
  }
  const sigset_t wait_for = SignalSet({SIGINT, SIGTERM, SIGUSR1});
  int signal_number = 0;
  bool stop_requested = false;
  for (;;) {
    if (sigwait(&wait_for, &signal_number) != 0) continue;
    if (signal_number != SIGUSR1) {
      stop_requested = true;
      break;
    }
    if ((*server)->context_unrecoverable()) break;
    // Otherwise a stray SIGUSR1: keep serving.
  }
  if (stop_requested) {
    spdlog::info("received signal {}; shutting down", signal_number);
  } else {
    spdlog::info(
        "shutting down: answering the commands in flight, closing every session, then exiting "
        "with status {} for a new process to serve",
        kExitContextLost);
    if (!flags.ready_file.empty()) ::unlink(flags.ready_file.c_str());  // not serving any more
  }
  (*server)->Shutdown();
  if (!(*server)->context_unrecoverable()) return 0;
  // The backend is not destroyed: the driver cannot be trusted to tear down
  // a faulted context, and the process ends anyway.
  (void)server->release();
  FlushOutput();
  ::_exit(stop_requested ? 0 : kExitContextLost);
}

// Waits for `worker` to exit and returns its wait status, forwarding SIGINT
// and SIGTERM to it (*stop_requested is then set). SIGINT, SIGTERM and
// SIGCHLD must be blocked.
int WaitForWorker(pid_t worker, bool* stop_requested) {
  const sigset_t wait_for = SignalSet({SIGINT, SIGTERM, SIGCHLD});
  for (;;) {
    int status = 0;
    const pid_t r = ::waitpid(worker, &status, WNOHANG);
    if (r == worker) return status;
    if (r < 0 && errno != EINTR) {
      spdlog::error("waiting for worker pid {}: {}", worker, std::strerror(errno));
      return W_EXITCODE(1, 0);
    }
    // SIGCHLD ends the wait; the timeout only guards against a lost one.
    const timespec timeout{1, 0};
    const int sig = ::sigtimedwait(&wait_for, nullptr, &timeout);
    if (sig == SIGINT || sig == SIGTERM) {
      if (!*stop_requested) {
        spdlog::info("received signal {}; stopping worker pid {}", sig, worker);
      }
      *stop_requested = true;
      ::kill(worker, sig);
    }
  }
}

// Sleeps for `delay` unless SIGINT or SIGTERM comes first (true then).
bool StopRequestedWithin(absl::Duration delay) {
  const sigset_t wait_for = SignalSet({SIGINT, SIGTERM});
  const absl::Time deadline = absl::Now() + delay;
  for (;;) {
    const absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) return false;
    const timespec timeout = absl::ToTimespec(left);
    const int sig = ::sigtimedwait(&wait_for, nullptr, &timeout);
    if (sig == SIGINT || sig == SIGTERM) {
      spdlog::info("received signal {}; not starting another worker", sig);
      return true;
    }
  }
}

// The supervisor: binds the session sockets, then runs workers on them
// (RunDaemon). Creates no thread and never touches the GPU, so forking is
// safe.
int Supervise(const DaemonFlags& flags, const std::string& program,
              const BackendFactory& make_backend) {
  const ServerOptions defaults;
  std::vector<BoundSocket> sockets;
  std::map<std::string, int> bound;
  auto close_sockets = [&sockets] {
    for (BoundSocket& s : sockets) CloseBoundSocket(&s);
  };
  for (const std::string& endpoint : flags.listen) {
    absl::StatusOr<BoundSocket> s =
        BindSessionSocket(endpoint, defaults.socket_mode, defaults.socket_dir_mode);
    if (!s.ok()) {
      std::fprintf(stderr, "%s: cannot start: %s\n", program.c_str(),
                   std::string(s.status().message()).c_str());
      close_sockets();
      return 1;
    }
    sockets.push_back(std::move(*s));
    if (!bound.emplace(endpoint, sockets.back().fd).second) {
      std::fprintf(stderr, "%s: cannot start: --listen %s is given twice\n", program.c_str(),
                   endpoint.c_str());
      close_sockets();
      return 1;
    }
  }
  const pid_t supervisor = ::getpid();
  RestartPolicy policy;
  int restarts = 0;
  int code = 0;
  for (;;) {
    if (!flags.ready_file.empty()) ::unlink(flags.ready_file.c_str());
    FlushOutput();
    const pid_t worker = ::fork();
    if (worker < 0) {
      std::fprintf(stderr, "%s: cannot start: fork: %s\n", program.c_str(), std::strerror(errno));
      code = 1;
      break;
    }
    if (worker == 0) {
      // The worker ends with its supervisor, however that ends.
      ::prctl(PR_SET_PDEATHSIG, SIGTERM);
      if (::getppid() != supervisor) ::_exit(1);
      const sigset_t child = SignalSet({SIGCHLD});
      pthread_sigmask(SIG_UNBLOCK, &child, nullptr);
      const int rc = RunServer(flags, program, make_backend, bound);
      FlushOutput();
      std::exit(rc);
    }
    if (restarts == 0) {
      spdlog::debug("supervisor pid {}: worker pid {} started", supervisor, worker);
    } else {
      spdlog::info("worker pid {} started (restart {})", worker, restarts);
    }
    bool stop_requested = false;
    const int status = WaitForWorker(worker, &stop_requested);
    if (WIFSIGNALED(status)) {
      spdlog::error("worker pid {} was killed by signal {}", worker, WTERMSIG(status));
      code = 128 + WTERMSIG(status);
      break;
    }
    const int rc = WIFEXITED(status) ? WEXITSTATUS(status) : 1;
    if (rc != kExitContextLost) {
      code = rc;  // its reason, if any, is already printed
      break;
    }
    if (stop_requested) {  // the stop was asked for; the loss does not matter
      code = 0;
      break;
    }
    const RestartPolicy::Decision decision = policy.OnWorkerLost(absl::Now());
    if (decision.give_up) {
      std::fprintf(stderr,
                   "%s: giving up: worker pid %d lost the shared GPU context again after %d "
                   "restarts within %d minutes\n",
                   program.c_str(), static_cast<int>(worker), policy.recent_restarts(),
                   static_cast<int>(absl::ToInt64Minutes(RestartPolicy::kGiveUpWindow)));
      code = kExitContextLost;
      break;
    }
    ++restarts;
    if (decision.delay > absl::ZeroDuration()) {
      spdlog::warn(
          "worker pid {} exited: the shared GPU context was lost and could not be reset "
          "in-process; starting a new worker in {} ({} restarts within {} minutes)",
          worker, absl::FormatDuration(decision.delay), policy.recent_restarts(),
          absl::ToInt64Minutes(RestartPolicy::kGiveUpWindow));
      if (StopRequestedWithin(decision.delay)) {
        code = 0;
        break;
      }
    } else {
      spdlog::warn(
          "worker pid {} exited: the shared GPU context was lost and could not be reset "
          "in-process; starting a new worker",
          worker);
    }
  }
  close_sockets();
  return code;
}

}  // namespace

RestartPolicy::Decision RestartPolicy::OnWorkerLost(absl::Time now) {
  while (!restarts_.empty() && now - restarts_.front() >= kGiveUpWindow) restarts_.pop_front();
  Decision d;
  if (static_cast<int>(restarts_.size()) >= kMaxRestarts) {
    d.give_up = true;
    return d;
  }
  const int in_free_window = static_cast<int>(std::count_if(
      restarts_.begin(), restarts_.end(), [&](absl::Time t) { return now - t < kFreeWindow; }));
  if (in_free_window >= kFreeRestarts) {
    d.delay = kFirstDelay;
    for (int i = kFreeRestarts; i < in_free_window && d.delay < kMaxDelay; ++i) d.delay *= 2;
    d.delay = std::min(d.delay, kMaxDelay);
  }
  restarts_.push_back(now);
  return d;
}

std::string DaemonUsage(const std::string& program) {
  return absl::StrCat(
      "usage: ", program, " [flags]\n",
      "  --listen ENDPOINT   serve the session protocol on ENDPOINT (repeatable):\n"
      "                      unix:/path or tcp:HOST:PORT (port 0 picks one). The default\n"
      "                      unix socket (",
      wire::DefaultSessionEndpoint(),
      ")\n"
      "                      is served unless a unix endpoint is given.\n"
      "  --admin ENDPOINT    gRPC admin/session services (default ",
      wire::DefaultAdminEndpoint(),
      "; 'none' disables)\n"
      "  --device N|UUID     GPU ordinal, or UUID (GPU-xxxxxxxx-...) (default 0)\n"
      "  --log-level LEVEL   trace|debug|info|warn|error (default info)\n"
      "  --ready-file PATH   write the bound endpoints to PATH once serving\n"
      "  --config FILE       read these settings from a TOML file first (default\n"
      "                      $WOOLY_CONFIG); flags given here override it\n"
      "  --metrics HOST:PORT serve Prometheus metrics at http://HOST:PORT/metrics\n"
      "                      (default off; port 0 picks one)\n"
      "  --module-cache-dir DIR\n"
      "                      where module images are kept across clients and restarts\n"
      "                      (default ",
      DefaultModuleCacheDir(),
      "; 'none' keeps them in memory only)\n"
      "  --module-cache-bytes N\n"
      "                      size bound of the module cache, bytes or with a K/M/G suffix\n"
      "                      (default 4G; 0 turns the cache off)\n"
      "  --policy-file PATH  per-client scheduling policy (docs/scheduler.md); checked\n"
      "                      at start (default none)\n"
      "  --sm-placement nested|exclusive\n"
      "                      whether a lone lower-priority client also fills the SMs of\n"
      "                      higher priorities at its lower stream priority (default nested)\n"
      "  --no-scheduler      run every client on the whole GPU at its priority,\n"
      "                      without SM shares (default: the scheduler runs)\n"
      "  --launch-pipeline   run each client's posted launches on a thread of their\n"
      "                      own (experimental; also WOOLY_LAUNCH_PIPELINE=1; default off)\n"
      "  --overcommit-percent N\n"
      "                      turn device memory overcommit on, admitting up to\n"
      "                      (100 + N)% of the GPU's memory, 0..1000 (default off)\n"
      "  --memory-capacity BYTES\n"
      "                      plan the overcommitted pool with at most this much device\n"
      "                      memory, e.g. 40GiB (default: the GPU's less a reserve)\n"
      "  --swap-idle-seconds S\n"
      "                      a client idle this long may be swapped out (default 30)\n"
      "  --no-supervisor     serve in this process; by default a supervisor runs the\n"
      "                      server in a worker process and restarts it when the GPU\n"
      "                      context is lost\n"
      "  --version           print the version and exit\n"
      "  --help              print this help and exit\n");
}

std::string DefaultModuleCacheDir() {
  if (::geteuid() == 0) return "/var/cache/wooly/modules";
  if (const char* x = std::getenv("XDG_CACHE_HOME"); x != nullptr && x[0] == '/') {
    return absl::StrCat(x, "/wooly/modules");
  }
  if (const char* h = std::getenv("HOME"); h != nullptr && h[0] == '/') {
    return absl::StrCat(h, "/.cache/wooly/modules");
  }
  return absl::StrCat("/tmp/wooly-", ::geteuid(), "/modules");
}

namespace {

// Bounds the idle threshold far beyond use, well inside absl::Duration.
constexpr double kMaxSwapIdleSeconds = 1e9;

constexpr const char* kValuedFlags[] = {"listen",
                                        "admin",
                                        "device",
                                        "log-level",
                                        "ready-file",
                                        "module-cache-dir",
                                        "module-cache-bytes",
                                        "metrics",
                                        "policy-file",
                                        "sm-placement",
                                        "overcommit-percent",
                                        "memory-capacity",
                                        "swap-idle-seconds"};

// A size: bytes, or a number with a K/KiB, M/MiB, G/GiB or T/TiB suffix
// (tenants.h ParseByteSize, as WOOLY_MEMORY_LIMIT). The error names `what`.
absl::StatusOr<uint64_t> ParseSize(const std::string& what, const std::string& value) {
  absl::StatusOr<uint64_t> n = ParseByteSize(value);
  if (!n.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " needs a size in bytes (e.g. 4G), got '", value, "'"));
  }
  return *n;
}

// "GPU-" and 32 hex digits in the 8-4-4-4-12 layout nvidia-smi prints.
bool IsGpuUuid(const std::string& text) {
  static constexpr int kGroups[] = {8, 4, 4, 4, 12};
  if (!absl::StartsWithIgnoreCase(text, "GPU-")) return false;
  size_t i = 4;
  for (int g = 0; g < 5; ++g) {
    if (g > 0) {
      if (i >= text.size() || text[i] != '-') return false;
      ++i;
    }
    for (int k = 0; k < kGroups[g]; ++k, ++i) {
      if (i >= text.size() || !absl::ascii_isxdigit(static_cast<unsigned char>(text[i]))) {
        return false;
      }
    }
  }
  return i == text.size();
}

// An endpoint to listen on; port 0 (an ephemeral port) is fine.
absl::Status CheckListenEndpoint(const std::string& flag, const std::string& value) {
  wire::Endpoint ep;
  std::string error;
  std::string probe = value;
  if (absl::EndsWith(probe, ":0")) probe.back() = '1';
  if (!wire::ParseEndpoint(probe, &ep, &error)) {
    return absl::InvalidArgumentError(absl::StrCat("--", flag, ": ", error));
  }
  return absl::OkStatus();
}

// Applies one valued flag (name without "--"); errors name the flag.
absl::Status ApplyValuedFlag(const std::string& name, const std::string& value,
                             DaemonFlags& flags) {
  if (name == "listen") {
    if (absl::Status s = CheckListenEndpoint(name, value); !s.ok()) return s;
    flags.listen.push_back(value);
  } else if (name == "admin") {
    if (value != "none" && !value.empty()) {
      if (absl::Status s = CheckListenEndpoint(name, value); !s.ok()) return s;
    }
    flags.admin = value == "none" ? "" : value;
  } else if (name == "device") {
    if (IsGpuUuid(value)) {
      flags.device = 0;
      flags.device_uuid = absl::AsciiStrToLower(value);
      flags.device_uuid.replace(0, 4, "GPU-");
    } else if (int ordinal = -1; absl::SimpleAtoi(value, &ordinal) && ordinal >= 0) {
      flags.device = ordinal;
      flags.device_uuid.clear();
    } else {
      return absl::InvalidArgumentError(absl::StrCat(
          "--device needs a GPU ordinal (0, 1, ...) or UUID (GPU-xxxxxxxx-xxxx-xxxx-xxxx-"
          "xxxxxxxxxxxx, as nvidia-smi -L prints it), got '",
          value, "'"));
    }
  } else if (name == "log-level") {
    spdlog::level::level_enum level;
    if (!ParseLevel(value, &level)) {
      return absl::InvalidArgumentError(
          absl::StrCat("--log-level must be trace, debug, info, warn or error, got '", value, "'"));
    }
    flags.log_level = value;
  } else if (name == "ready-file") {
    if (value.empty()) return absl::InvalidArgumentError("--ready-file needs a path");
    flags.ready_file = value;
  } else if (name == "metrics") {
    std::string host;
    int port = -1;
    if (!ParseHostPort(value, &host, &port)) {
      return absl::InvalidArgumentError(
          absl::StrCat("--metrics needs HOST:PORT (e.g. 0.0.0.0:9400), got '", value, "'"));
    }
    flags.metrics = value;
  } else if (name == "module-cache-dir") {
    if (value.empty()) return absl::InvalidArgumentError("--module-cache-dir needs a path");
    flags.module_cache_dir = value == "none" ? "" : value;
  } else if (name == "module-cache-bytes") {
    absl::StatusOr<uint64_t> n = ParseSize("--module-cache-bytes", value);
    if (!n.ok()) return n.status();
    flags.module_cache_bytes = *n;
  } else if (name == "policy-file") {
    if (value.empty()) return absl::InvalidArgumentError("--policy-file needs a path");
    flags.policy_file = value;
  } else if (name == "sm-placement") {
    if (value == "nested") {
      flags.sm_placement = SmPlacement::kNested;
    } else if (value == "exclusive") {
      flags.sm_placement = SmPlacement::kExclusive;
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("--sm-placement needs 'nested' or 'exclusive', got '", value, "'"));
    }
  } else if (name == "overcommit-percent") {
    uint32_t percent = 0;
    if (!absl::SimpleAtoi(value, &percent) || percent > kMaxOvercommitPercent) {
      return absl::InvalidArgumentError(absl::StrCat("--overcommit-percent needs an integer 0..",
                                                     kMaxOvercommitPercent, ", got '", value, "'"));
    }
    flags.overcommit_percent = percent;
  } else if (name == "memory-capacity") {
    absl::StatusOr<uint64_t> n = ParseByteSize(value);
    if (!n.ok() || *n == 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--memory-capacity needs a size above 0 in bytes or with a K/M/G/T suffix (e.g. "
          "40GiB), got '",
          value, "'"));
    }
    flags.memory_capacity_bytes = *n;
  } else if (name == "swap-idle-seconds") {
    double seconds = 0;
    if (!absl::SimpleAtod(value, &seconds) || !std::isfinite(seconds) || seconds <= 0 ||
        seconds > kMaxSwapIdleSeconds) {
      return absl::InvalidArgumentError(
          absl::StrCat("--swap-idle-seconds needs a number of seconds above 0, got '", value, "'"));
    }
    flags.swap_idle_threshold = absl::Seconds(seconds);
  } else if (name == "swap-host-pool-bytes") {  // config file only
    absl::StatusOr<uint64_t> n = ParseSize("swap_host_pool_bytes", value);
    if (!n.ok()) return n.status();
    flags.swap_host_pool_bytes = *n;
  } else if (name == "scheduler-tick-ms") {  // config file only
    int64_t ms = 0;
    if (!absl::SimpleAtoi(value, &ms) || ms <= 0 || ms > 3'600'000) {
      return absl::InvalidArgumentError(
          absl::StrCat("needs an integer number of milliseconds above 0, got '", value, "'"));
    }
    flags.scheduler_tick = absl::Milliseconds(ms);
  }
  return absl::OkStatus();
}

// The [defaults] policy keys as wooly-cli's assignments name them.
absl::Status ApplyPolicyDefault(const char* assignment_key, const std::string& value,
                                scheduler::PolicyOverride& policy) {
  const std::string text(absl::StripAsciiWhitespace(value));
  if (text.empty() || text.find_first_of(" \t") != std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat("'", value, "' is not a single value"));
  }
  absl::StatusOr<scheduler::PolicyOverride> one =
      scheduler::ParseAssignments(absl::StrCat(assignment_key, "=", text));
  if (!one.ok()) {
    // Drop ParseAssignments' own "key 'x': ": the caller names the key.
    absl::string_view msg = one.status().message();
    absl::ConsumePrefix(&msg, absl::StrCat("key '", assignment_key, "': "));
    return absl::InvalidArgumentError(msg);
  }
  // Field by field, not MergeFrom: a floor above the cap is an error the
  // caller reports, not something to settle.
  if (one->priority) policy.priority = one->priority;
  if (one->weight) policy.weight = one->weight;
  if (one->floor_share) policy.floor_share = one->floor_share;
  if (one->cap_share) policy.cap_share = one->cap_share;
  return absl::OkStatus();
}

// Applies a TOML config file: the same settings as the flags, with the same
// checks; unknown keys and bad values are errors naming the key.
absl::Status ApplyConfigFile(const std::string& path, DaemonFlags& flags) {
  toml::table table;
  try {
    table = toml::parse_file(path);
  } catch (const toml::parse_error& e) {
    return absl::InvalidArgumentError(absl::StrCat(
        "config ", path, ", line ", e.source().begin.line, ": ", std::string(e.description())));
  }
  auto bad = [&](const std::string& key, absl::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat("config ", path, ": key '", key, "': ", why));
  };
  auto apply = [&](const std::string& key, const char* flag,
                   const std::string& value) -> absl::Status {
    if (absl::Status s = ApplyValuedFlag(flag, value, flags); !s.ok()) return bad(key, s.message());
    return absl::OkStatus();
  };
  // A string, or an integer written as one (sizes, ordinals).
  auto scalar = [](const toml::node& n, std::string* out) {
    if (auto v = n.value_exact<std::string>()) {
      *out = *v;
      return true;
    }
    if (auto i = n.value_exact<int64_t>()) {
      *out = std::to_string(*i);
      return true;
    }
    return false;
  };
  // A number (integer or float), or a string holding one (shares).
  auto number_or_string = [](const toml::node& n, std::string* out) {
    if (auto v = n.value_exact<std::string>()) {
      *out = *v;
      return true;
    }
    if (auto i = n.value_exact<int64_t>()) {
      *out = std::to_string(*i);
      return true;
    }
    if (auto d = n.value_exact<double>()) {
      *out = absl::StrCat(*d);
      return true;
    }
    return false;
  };
  auto boolean = [&](const std::string& key, const toml::node& n, bool* out) -> absl::Status {
    auto b = n.value_exact<bool>();
    if (!b) return bad(key, "must be true or false");
    *out = *b;
    return absl::OkStatus();
  };
  // Calls `each(sub_key, full_key, node)` for every key of table `key`.
  auto for_each_in = [&](const std::string& key, const toml::node& node,
                         const std::function<absl::Status(const std::string&, const std::string&,
                                                          const toml::node&)>& each) {
    const toml::table* t = node.as_table();
    if (t == nullptr) return bad(key, "must be a table");
    for (auto&& [k, n] : *t) {
      const std::string sub(k.str());
      if (absl::Status s = each(sub, absl::StrCat(key, ".", sub), n); !s.ok()) return s;
    }
    return absl::OkStatus();
  };
  for (auto&& [k, node] : table) {
    const std::string key(k.str());
    std::string value;
    absl::Status status;
    if (key == "listen") {
      flags.listen.clear();
      const toml::array* list = node.as_array();
      if (list == nullptr) return bad(key, "must be a list of endpoints");
      for (const toml::node& item : *list) {
        auto v = item.value<std::string>();
        if (!v) return bad(key, "must be a list of endpoint strings");
        if (absl::Status s = apply(key, "listen", *v); !s.ok()) return s;
      }
    } else if (key == "admin" || key == "log_level" || key == "metrics" || key == "device") {
      if (!scalar(node, &value)) {
        return bad(key,
                   key == "device" ? "must be an ordinal or a UUID string" : "must be a string");
      }
      std::string flag = key;
      std::replace(flag.begin(), flag.end(), '_', '-');
      if (absl::Status s = apply(key, flag.c_str(), value); !s.ok()) return s;
    } else if (key == "module_cache") {
      status = for_each_in(
          key, node,
          [&](const std::string& sub, const std::string& full,
              const toml::node& n) -> absl::Status {
            if (sub != "dir" && sub != "bytes") return bad(full, "unknown key");
            if (!scalar(n, &value)) return bad(full, "must be a string or an integer");
            return apply(full, sub == "dir" ? "module-cache-dir" : "module-cache-bytes", value);
          });
    } else if (key == "scheduler") {
      status = for_each_in(key, node,
                           [&](const std::string& sub, const std::string& full,
                               const toml::node& n) -> absl::Status {
                             if (sub == "enabled") return boolean(full, n, &flags.scheduler);
                             if (sub == "sm_partitions")
                               return boolean(full, n, &flags.sm_partitions);
                             if (sub == "tick_ms") {
                               auto ms = n.value_exact<int64_t>();
                               if (!ms)
                                 return bad(full, "must be an integer number of milliseconds");
                               return apply(full, "scheduler-tick-ms", std::to_string(*ms));
                             }
                             if (sub == "placement") {
                               auto v = n.value_exact<std::string>();
                               if (!v) return bad(full, "must be \"nested\" or \"exclusive\"");
                               return apply(full, "sm-placement", *v);
                             }
                             if (sub == "policy_file") {
                               auto v = n.value_exact<std::string>();
                               if (!v) return bad(full, "must be a path string");
                               return apply(full, "policy-file", *v);
                             }
                             return bad(full, "unknown key");
                           });
    } else if (key == "memory") {
      status = for_each_in(
          key, node,
          [&](const std::string& sub, const std::string& full,
              const toml::node& n) -> absl::Status {
            if (sub == "overcommit_percent") {
              auto v = n.value_exact<int64_t>();
              if (!v || *v < 0 || *v > kMaxOvercommitPercent) {
                return bad(full, absl::StrCat("must be an integer 0..", kMaxOvercommitPercent));
              }
              flags.overcommit_percent = static_cast<uint32_t>(*v);
              return absl::OkStatus();
            }
            if (sub == "swap_idle_seconds") {
              auto v = n.value<double>();  // an integer too
              if (!v || n.is_boolean()) return bad(full, "must be a number of seconds");
              return apply(full, "swap-idle-seconds", absl::StrCat(*v));
            }
            if (sub == "capacity") {
              if (!scalar(n, &value)) return bad(full, "must be a size string or an integer");
              return apply(full, "memory-capacity", value);
            }
            if (sub == "swap_host_pool_bytes") {
              if (!scalar(n, &value)) return bad(full, "must be a size string or an integer");
              return apply(full, "swap-host-pool-bytes", value);
            }
            return bad(full, "unknown key");
          });
    } else if (key == "defaults") {
      TenantDefaults& d = flags.defaults;
      status = for_each_in(key, node,
                           [&](const std::string& sub, const std::string& full,
                               const toml::node& n) -> absl::Status {
                             static constexpr std::pair<const char*, const char*> kPolicyKeys[] = {
                                 {"priority", "priority"},
                                 {"weight", "weight"},
                                 {"sm_floor", "floor"},
                                 {"sm_cap", "cap"}};
                             for (const auto& [name, assignment] : kPolicyKeys) {
                               if (sub != name) continue;
                               if (!number_or_string(n, &value))
                                 return bad(full, "must be a number or a string");
                               if (absl::Status s = ApplyPolicyDefault(assignment, value, d.policy);
                                   !s.ok()) {
                                 return bad(full, s.message());
                               }
                               return absl::OkStatus();
                             }
                             if (sub == "memory_limit") {
                               if (!scalar(n, &value))
                                 return bad(full, "must be a size string or an integer");
                               absl::StatusOr<uint64_t> bytes = ParseSize("a memory limit", value);
                               if (!bytes.ok()) return bad(full, bytes.status().message());
                               if (*bytes == 0)
                                 return bad(full, "must be above 0 (leave it out for no limit)");
                               d.memory_limit = *bytes;
                               return absl::OkStatus();
                             }
                             if (sub == kKeyOvercommitPercent) {
                               if (!number_or_string(n, &value))
                                 return bad(full, "must be an integer 0..1000");
                               absl::StatusOr<uint32_t> p = ParseOvercommitPercent(value);
                               if (!p.ok()) return bad(full, p.status().message());
                               d.overcommit_percent = *p;
                               return absl::OkStatus();
                             }
                             if (sub == "noswap" || sub == "dedup") {
                               bool b = false;
                               if (absl::Status s = boolean(full, n, &b); !s.ok()) return s;
                               (sub == "noswap" ? d.noswap : d.dedup) = b;
                               return absl::OkStatus();
                             }
                             return bad(full, "unknown key");
                           });
      if (status.ok() && d.policy.floor_share && d.policy.cap_share &&
          *d.policy.floor_share > *d.policy.cap_share) {
        return bad("defaults.sm_floor", "is above defaults.sm_cap");
      }
    } else {
      return bad(key, "unknown key");
    }
    if (!status.ok()) return status;
  }
  return absl::OkStatus();
}

}  // namespace

ServerOptions ServerOptionsFromFlags(const DaemonFlags& flags) {
  ServerOptions options;
  options.listen = flags.listen;
  options.admin = flags.admin;
  options.metrics_address = flags.metrics;
  options.module_cache_dir = flags.module_cache_dir;
  options.module_cache_bytes = flags.module_cache_bytes;
  options.scheduler = flags.scheduler;
  options.launch_pipeline = flags.launch_pipeline;
  options.scheduler_tick = flags.scheduler_tick;
  options.sm_partitions = flags.sm_partitions;
  options.sm_placement = flags.sm_placement;
  options.policy_file = flags.policy_file;
  options.overcommit = flags.overcommit_percent.has_value();
  options.overcommit_percent = flags.overcommit_percent.value_or(0);
  options.swap_idle_threshold = flags.swap_idle_threshold;
  options.swap_host_pool_bytes = flags.swap_host_pool_bytes;
  options.memory_capacity_bytes = flags.memory_capacity_bytes;
  options.tenant_defaults = flags.defaults;
  return options;
}

absl::StatusOr<std::unique_ptr<GpuBackend>> CreateBackend(const DaemonFlags& flags,
                                                          const BackendFactory& make_backend) {
  if (flags.device_uuid.empty()) return make_backend(flags.device);
  // The driver reads CUDA_VISIBLE_DEVICES when it initializes, and accepts
  // UUIDs there: the one GPU left is device 0.
  if (const char* v = std::getenv("CUDA_VISIBLE_DEVICES");
      v != nullptr && *v != '\0' && flags.device_uuid != v) {
    spdlog::info("device {}: replacing CUDA_VISIBLE_DEVICES={} for this process", flags.device_uuid,
                 v);
  }
  ::setenv("CUDA_VISIBLE_DEVICES", flags.device_uuid.c_str(), 1);
  absl::StatusOr<std::unique_ptr<GpuBackend>> backend = make_backend(0);
  if (!backend.ok()) {
    return absl::Status(backend.status().code(), absl::StrCat("device ", flags.device_uuid,
                                                              ": no usable GPU has this UUID (",
                                                              backend.status().message(), ")"));
  }
  absl::StatusOr<wire::DeviceInfo> info = (*backend)->GetDeviceInfo();
  if (!info.ok()) return info.status();
  const std::string found = FormatGpuUuid(info->uuid);
  if (!absl::EqualsIgnoreCase(found, flags.device_uuid)) {
    return absl::NotFoundError(absl::StrCat(
        "device ", flags.device_uuid, ": no GPU has this UUID (the backend's GPU is ", found, ")"));
  }
  return backend;
}

absl::StatusOr<DaemonFlags> ParseDaemonFlags(int argc, const char* const* argv) {
  // The client config file (/etc/wooly/client.conf) configures clients; the
  // server's defaults come from its own environment only.
  wire::SetClientConfigFileEnabled(false);
  DaemonFlags flags;
  flags.module_cache_dir = DefaultModuleCacheDir();
  flags.admin = wire::DefaultAdminEndpoint();
  if (const char* e = std::getenv("WOOLY_LAUNCH_PIPELINE"); e != nullptr && std::string(e) == "1") {
    flags.launch_pipeline = true;
  }
  // The config file first ($WOOLY_CONFIG or --config), so flags override it.
  std::string config;
  if (const char* e = std::getenv(kEnvConfig); e != nullptr && *e != '\0') config = e;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--config" && i + 1 < argc) config = argv[i + 1];
    if (absl::StartsWith(arg, "--config=")) config = arg.substr(9);
  }
  if (!config.empty()) {
    if (absl::Status s = ApplyConfigFile(config, flags); !s.ok()) return s;
  }
  bool listen_from_flags = false;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--version") {
      flags.version = true;
      continue;
    }
    if (arg == "--help" || arg == "-h") {
      flags.help = true;
      continue;
    }
    if (arg == "--no-supervisor") {
      flags.supervise = false;
      continue;
    }
    if (arg == "--no-scheduler") {
      flags.scheduler = false;
      continue;
    }
    if (arg == "--launch-pipeline") {
      flags.launch_pipeline = true;
      continue;
    }
    if (!absl::StartsWith(arg, "--")) {
      return absl::InvalidArgumentError(absl::StrCat("unexpected argument '", arg, "'"));
    }
    std::string name = arg.substr(2);
    std::string value;
    bool has_value = false;
    if (const size_t eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
      has_value = true;
    }
    bool known = name == "config";
    for (const char* k : kValuedFlags) known = known || name == k;
    if (!known) return absl::InvalidArgumentError(absl::StrCat("unknown flag --", name));
    if (!has_value) {
      if (i + 1 >= argc)
        return absl::InvalidArgumentError(absl::StrCat("--", name, " needs a value"));
      value = argv[++i];
    }
    if (name == "config") continue;  // applied above
    // Listen addresses on the command line replace the config file's.
    if (name == "listen" && !listen_from_flags) {
      flags.listen.clear();
      listen_from_flags = true;
    }
    if (absl::Status s = ApplyValuedFlag(name, value, flags); !s.ok()) return s;
  }
  bool has_unix = false;
  for (const std::string& l : flags.listen) {
    wire::Endpoint ep;
    std::string probe = l;
    if (absl::EndsWith(probe, ":0")) probe.back() = '1';
    if (wire::ParseEndpoint(probe, &ep, nullptr) && ep.is_unix) has_unix = true;
  }
  if (!has_unix) flags.listen.insert(flags.listen.begin(), wire::DefaultSessionEndpoint());
  // The policy file is checked here, so a bad one stops woolyd at once (the
  // server loads it again when it starts); the error names file and line.
  if (!flags.policy_file.empty()) {
    if (absl::StatusOr<ServerPolicyFile> f = ServerPolicyFile::Load(flags.policy_file); !f.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("policy file: ", f.status().message()));
    }
  }
  return flags;
}

int RunDaemon(int argc, char** argv, const std::string& program,
              const BackendFactory& make_backend) {
  absl::StatusOr<DaemonFlags> flags = ParseDaemonFlags(argc, argv);
  if (!flags.ok()) {
    std::fprintf(stderr, "%s: %s\n%s", program.c_str(),
                 std::string(flags.status().message()).c_str(), DaemonUsage(program).c_str());
    return 2;
  }
  if (flags->help) {
    std::fputs(DaemonUsage(program).c_str(), stdout);
    return 0;
  }
  if (flags->version) {
    std::printf("%s %s (wooly protocol %u)\n", program.c_str(), kServerVersion,
                wire::kProtocolVersion);
    return 0;
  }
  // Debian's Abseil is built without NDEBUG, so every absl::Mutex
  // acquisition also records lock order in a process-wide graph. A launch
  // takes several locks, and the bookkeeping cost about a microsecond per
  // launch on the H100 machine (docs/benchmarks.md, 19:40). Tests keep the
  // checks; WOOLY_MUTEX_DEADLOCK_DETECTION=1 keeps them in a daemon too.
  if (std::getenv("WOOLY_MUTEX_DEADLOCK_DETECTION") == nullptr ||
      std::strcmp(std::getenv("WOOLY_MUTEX_DEADLOCK_DETECTION"), "1") != 0) {
    absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  }
  auto logger = spdlog::stderr_color_mt(program);
  logger->set_pattern("%Y-%m-%d %H:%M:%S.%e %n %^%l%$ %v");
  spdlog::level::level_enum level = spdlog::level::info;
  ParseLevel(flags->log_level, &level);
  logger->set_level(level);
  spdlog::set_default_logger(logger);

  // Signals are taken synchronously (sigwait); block them before any other
  // thread exists so none of those receives them. SIGUSR1 is the server's
  // own "context lost for good" wake-up (RunServer); SIGCHLD the
  // supervisor's.
  const sigset_t blocked = SignalSet({SIGINT, SIGTERM, SIGUSR1, SIGCHLD});
  pthread_sigmask(SIG_BLOCK, &blocked, nullptr);

  if (!flags->supervise) {
    const sigset_t child = SignalSet({SIGCHLD});
    pthread_sigmask(SIG_UNBLOCK, &child, nullptr);
    return RunServer(*flags, program, make_backend, {});
  }
  return Supervise(*flags, program, make_backend);
}

}  // namespace wooly::server
