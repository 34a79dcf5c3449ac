// The woolyd command line, shared by woolyd (CUDA backend) and woolyd-fake
// (tests/fake backend): flag parsing and the run-until-signalled main.
#ifndef WOOLY_SERVER_DAEMON_H_
#define WOOLY_SERVER_DAEMON_H_

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "wooly/server/gpu_backend.h"

namespace wooly::server {

struct DaemonFlags {
  // Framed-protocol endpoints. Unless one of them is a unix socket, the
  // default session socket (wire::DefaultSessionEndpoint()) is served too.
  std::vector<std::string> listen;
  std::string admin;  // gRPC endpoint; "none" disables it
  int device = 0;
  std::string log_level = "info";  // trace|debug|info|warn|error
  std::string ready_file;          // written once serving; see RunDaemon
  bool version = false;
  bool help = false;
};

// Parses argv (argv[0] is skipped). Flags take `--flag value` or
// `--flag=value`. Defaults come from wire::DefaultSessionEndpoint() and
// wire::DefaultAdminEndpoint(), i.e. $WOOLY_SOCKET_DIR and friends.
// Errors name the offending flag.
absl::StatusOr<DaemonFlags> ParseDaemonFlags(int argc, const char* const* argv);

// The usage text for `program`.
std::string DaemonUsage(const std::string& program);

using BackendFactory =
    std::function<absl::StatusOr<std::unique_ptr<GpuBackend>>(int device_ordinal)>;

// Runs the daemon until SIGINT or SIGTERM and returns the process exit code:
// 0 after a clean stop (or --version/--help), 2 for bad flags, 1 when the
// backend cannot be created ("<program>: no usable GPU: <reason>", one line)
// or the server cannot start. Once serving, writes `--ready-file` (if given)
// atomically, one line per endpoint: "listen <address>" and "admin <address>".
int RunDaemon(int argc, char** argv, const std::string& program,
              const BackendFactory& make_backend);

}  // namespace wooly::server

#endif  // WOOLY_SERVER_DAEMON_H_
