// `wooly-cli run`: environment construction, starting a local woolyd, and
// exec'ing the command.
//
// The environment functions are pure (environments are vectors of
// "NAME=value" strings) so tests can check them exactly. EnsureServer and
// ExecCommand act on the system.
#ifndef WOOLY_CLI_LAUNCH_H_
#define WOOLY_CLI_LAUNCH_H_

#include <sys/types.h>

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "wooly/cli/layout.h"

namespace wooly::cli {

using Env = std::vector<std::string>;  // "NAME=value" entries

// Maps a path to a canonical form for comparisons (realpath in production,
// identity in tests). Must return its input when the path does not resolve.
using Canonicalizer = std::function<std::string(const std::string&)>;

Env CurrentEnv();
std::optional<std::string> GetEnv(const Env& env, const std::string& name);
void SetEnv(Env* env, const std::string& name, const std::string& value);
void UnsetEnv(Env* env, const std::string& name);

// Splits a search list. LD_LIBRARY_PATH uses ':'; LD_PRELOAD accepts ':'
// and spaces. Empty entries are dropped (an empty entry would mean the
// current directory, which nobody wants to inject).
std::vector<std::string> SplitList(const std::string& text, bool spaces_too);

// realpath(path), or `path` itself when it does not resolve.
std::string CanonicalPath(const std::string& path);

// What the command's client library reads.
struct ClientSettings {
  std::string server_endpoint;      // WOOLY_SERVER
  std::optional<int> priority;      // WOOLY_PRIORITY; inherited when unset
  std::optional<std::string> name;  // WOOLY_CLIENT_NAME; inherited when unset
};

// The command's environment: `base` with Wooly's client library first on
// LD_PRELOAD and its directory first on LD_LIBRARY_PATH (existing entries
// kept after it, duplicates of Wooly's dropped), and the WOOLY_* settings.
// Both variables are set: LD_PRELOAD makes the library win even for programs
// that link another libcuda by full path, LD_LIBRARY_PATH covers programs
// (and their children) that clear LD_PRELOAD but dlopen("libcuda.so.1").
Env BuildClientEnv(const Env& base, const Layout& layout, const ClientSettings& settings,
                   const Canonicalizer& canon);

// woolyd's environment: `base` with every LD_PRELOAD entry that is Wooly's
// client library (or lives in its directory) and every LD_LIBRARY_PATH entry
// that is the client directory removed, so woolyd loads the real driver even
// when wooly-cli runs inside a Wooly-injected shell. WOOLY_SOCKET_DIR is set
// to `socket_dir` so woolyd's defaults agree with the endpoints it is given.
Env BuildServerEnv(const Env& base, const Layout& layout, const std::string& socket_dir,
                   const Canonicalizer& canon);

// The one-line explanation for a woolyd that exited during start-up, given
// what it wrote to its log during this start. woolyd reports a missing GPU
// as "woolyd: no usable GPU: <reason>"; that becomes
// "no GPU on this machine: <reason>". Anything else quotes the last line.
std::string DescribeStartupFailure(const std::string& log_text, const std::string& log_path);

// The admin endpoint woolyd gets when wooly-cli starts it for
// `session_path`: the default admin endpoint when the session socket is the
// default one, else woolyd-admin.sock beside the session socket.
std::string AdminEndpointFor(const std::string& session_path);

struct EnsureOptions {
  std::string session_endpoint;  // as given by the user or the default
  Layout layout;
  Env base_env;            // the environment woolyd's is derived from
  int timeout_ms = 10000;  // bound on waiting for woolyd's socket
};

struct EnsureResult {
  bool started = false;  // false: a woolyd was already answering
  pid_t pid = -1;        // the started woolyd
  std::string log_path;
};

// Makes sure a woolyd answers on the (unix) session endpoint, starting one
// from layout.woolyd when none does. A started woolyd runs in its own session
// (it outlives the command), with stdin from /dev/null and stdout/stderr
// appended to <socket dir>/woolyd.log. Starts are serialized with a lock file
// in the socket directory so concurrent `run`s start one server.
// Errors carry one line fit to print after "wooly-cli: ".
absl::StatusOr<EnsureResult> EnsureServer(const EnsureOptions& options);

// Replaces the process with `command` (PATH lookup) in `env`. Returns only
// on failure: 127 when the program does not exist, else 126, after printing
// one line to stderr.
int ExecCommand(const std::vector<std::string>& command, const Env& env);

}  // namespace wooly::cli

#endif  // WOOLY_CLI_LAUNCH_H_
