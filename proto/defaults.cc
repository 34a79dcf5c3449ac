#include "wooly/proto/defaults.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>

namespace wooly::wire {

std::string DefaultSocketDir() {
  if (const char* d = std::getenv(kEnvSocketDir); d && *d) return d;
  struct stat st;
  if (::stat("/run/wooly", &st) == 0 && S_ISDIR(st.st_mode) &&
      ::access("/run/wooly", W_OK) == 0) {
    return "/run/wooly";
  }
  if (const char* x = std::getenv("XDG_RUNTIME_DIR"); x && *x) return std::string(x) + "/wooly";
  return "/tmp/wooly-" + std::to_string(::getuid());
}

std::string DefaultSessionEndpoint() {
  if (const char* s = std::getenv(kEnvServer); s && *s) return s;
  return "unix:" + DefaultSocketDir() + "/woolyd.sock";
}

std::string DefaultAdminEndpoint() {
  if (const char* s = std::getenv(kEnvAdmin); s && *s) return s;
  return "unix:" + DefaultSocketDir() + "/woolyd-admin.sock";
}

}  // namespace wooly::wire
