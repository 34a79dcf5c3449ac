// Default endpoints and environment variable names shared by woolyd,
// wooly-cli and libwooly, so all three agree without configuration.
#ifndef WOOLY_PROTO_DEFAULTS_H_
#define WOOLY_PROTO_DEFAULTS_H_

#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace wooly::wire {

// Environment variables read by the client library (and wooly-cli run).
inline constexpr char kEnvServer[] = "WOOLY_SERVER";           // session endpoint
inline constexpr char kEnvClientName[] = "WOOLY_CLIENT_NAME";  // default: program name
inline constexpr char kEnvPriority[] = "WOOLY_PRIORITY";       // 0 (highest) .. 4
inline constexpr char kEnvLog[] = "WOOLY_LOG";                 // error|warn|info|debug
// Kubernetes placement for metrics labels; the Downward API's usual POD_NAME
// and POD_NAMESPACE are read when these are unset.
inline constexpr char kEnvPodName[] = "WOOLY_POD_NAME";
inline constexpr char kEnvPodNamespace[] = "WOOLY_POD_NAMESPACE";
// Tenant settings, sent to woolyd at Hello when set (docs/configuration.md):
// the tenant's name, scheduling weight and SM floor/cap shares, its memory
// limit, and the memory manager's per-client options.
// WOOLY_MEMORY_REQUIRED (a size, e.g. "20G") makes woolyd refuse the client
// with CUDA_ERROR_OUT_OF_MEMORY when its tenant cannot have that much.
// WOOLY_OVERCOMMIT_PERCENT (0..1000) is the client's overcommit override,
// capped at the server's percentage.
inline constexpr const char* kTenantSettingEnvs[] = {
    "WOOLY_TENANT",       "WOOLY_WEIGHT", "WOOLY_SM_FLOOR", "WOOLY_SM_CAP",
    "WOOLY_MEMORY_LIMIT", "WOOLY_NOSWAP", "WOOLY_DEDUP",    "WOOLY_MEMORY_REQUIRED",
    "WOOLY_OVERCOMMIT_PERCENT"};
inline constexpr char kEnvMemoryRequired[] = "WOOLY_MEMORY_REQUIRED";
// 0 keeps a same-node client on the unix socket (no shared-memory channel).
inline constexpr char kEnvShm[] = "WOOLY_SHM";
// Socket transports: how long (microseconds) a request sent without a reply
// may wait in the client's batch; 0 sends each at once.
inline constexpr char kEnvBatchUs[] = "WOOLY_BATCH_US";
// 0 makes every forwarded call wait for its reply (no asynchronous commands).
inline constexpr char kEnvAsync[] = "WOOLY_ASYNC";
// Read by woolyd and wooly-cli.
inline constexpr char kEnvSocketDir[] = "WOOLY_SOCKET_DIR";
inline constexpr char kEnvAdmin[] = "WOOLY_ADMIN";  // admin gRPC endpoint

// The client config file: KEY=VALUE lines giving WOOLY_* settings that the
// environment does not set (docs/configuration.md). $WOOLY_CLIENT_CONFIG
// names it ("none": no file); else kDefaultClientConfig is read when it
// exists.
inline constexpr char kEnvClientConfig[] = "WOOLY_CLIENT_CONFIG";
inline constexpr char kDefaultClientConfig[] = "/etc/wooly/client.conf";

// The value of client setting `name` (a WOOLY_* variable): the environment's
// when set and not empty, else the client config file's, else "". The file
// is read once per process, at the first call; each malformed line is
// reported once on stderr (naming the file and line) and ignored. Uses no
// exceptions of its own; thread-safe. DefaultSocketDir, DefaultSessionEndpoint and
// DefaultAdminEndpoint read their variables through it.
std::string Setting(const char* name);

// Whether Setting() consults the client config file (default true). woolyd
// turns it off: the file configures clients, never the server.
void SetClientConfigFileEnabled(bool enabled);

// Parses client config text (`origin` names it in errors): appends each
// KEY=VALUE to *values (in order) and "<origin> line <n>: <why>" to *errors
// for each malformed line. Blank lines and lines starting with '#' are
// skipped; an optional "export " prefix and quotes around the value are
// dropped; keys must be WOOLY_* names other than WOOLY_CLIENT_CONFIG.
void ParseClientConfig(std::string_view text, std::string_view origin,
                       std::vector<std::pair<std::string, std::string>>* values,
                       std::vector<std::string>* errors);

// Tests: forget the file read, so the next Setting() reads it again.
void ResetClientConfigForTesting();

// This process's name (/proc/self/comm), else "pid-<pid>": the default
// client name of libwooly and the NVML view.
std::string ProgramName();

// The directory for the node's sockets: $WOOLY_SOCKET_DIR, else /run/wooly
// when it exists and is writable by us, else $XDG_RUNTIME_DIR/wooly, else
// /tmp/wooly-<uid>.
std::string DefaultSocketDir();
// "unix:<dir>/woolyd.sock": the framed session socket.
std::string DefaultSessionEndpoint();
// "unix:<dir>/woolyd-admin.sock": the gRPC admin and session services.
std::string DefaultAdminEndpoint();

}  // namespace wooly::wire

#endif  // WOOLY_PROTO_DEFAULTS_H_
