// Finds Wooly's client library and woolyd relative to wooly-cli itself, so
// `wooly-cli run` works from a build tree and from an installation without
// configuration.
#ifndef WOOLY_CLI_LAYOUT_H_
#define WOOLY_CLI_LAYOUT_H_

#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace wooly::cli {

// The client library's soname: the file that gets injected.
inline constexpr char kClientLibName[] = "libcuda.so.1";
inline constexpr char kServerName[] = "woolyd";

struct Layout {
  std::string client_lib;  // absolute path of Wooly's libcuda.so.1
  std::string client_dir;  // its directory (goes first on LD_LIBRARY_PATH)
  std::string woolyd;      // absolute path of woolyd; empty when not found
};

// The layouts tried, in order, for a wooly-cli at <prefix>/<dir>/wooly-cli:
//   build tree:  <prefix>/cli/wooly-cli  -> <prefix>/client/libcuda.so.1,
//                                           <prefix>/server/woolyd
//   installed:   <prefix>/bin/wooly-cli  -> <prefix>/lib/wooly/libcuda.so.1,
//                                           <prefix>/bin/woolyd or <prefix>/sbin/woolyd
// `exists` says whether a regular file exists at a path (injected for tests).
// Returns nullopt when no client library is found; a found layout may still
// lack woolyd (fine while a server is already running).
std::optional<Layout> FindLayout(const std::string& exe_path,
                                 const std::function<bool(const std::string&)>& exists);

// The paths FindLayout looks at for the client library, for error messages.
std::vector<std::string> ClientLibCandidates(const std::string& exe_path);

// The resolved path of the running executable (/proc/self/exe), or empty.
std::string SelfExePath();

// True when a regular file (or a symlink to one) exists at `path`.
bool RegularFileExists(const std::string& path);

// "/a/b/c" -> "/a/b"; "/a" -> "/"; "c" -> ".".
std::string DirName(const std::string& path);

}  // namespace wooly::cli

#endif  // WOOLY_CLI_LAYOUT_H_
