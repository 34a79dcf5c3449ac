// Default endpoints and environment variable names shared by woolyd,
// wooly-cli and libwooly, so all three agree without configuration.
#ifndef WOOLY_PROTO_DEFAULTS_H_
#define WOOLY_PROTO_DEFAULTS_H_

#include <string>

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
inline constexpr const char* kTenantSettingEnvs[] = {
    "WOOLY_TENANT",       "WOOLY_WEIGHT", "WOOLY_SM_FLOOR", "WOOLY_SM_CAP",
    "WOOLY_MEMORY_LIMIT", "WOOLY_NOSWAP", "WOOLY_DEDUP"};
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
