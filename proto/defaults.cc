#include "wooly/proto/defaults.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>

namespace wooly::wire {

std::string ProgramName() {
  // Plain read(2): iostreams would pull libstdc++'s locale machinery into
  // the client libraries for one line of text.
  char buf[64];
  ssize_t n = -1;
  const int fd = ::open("/proc/self/comm", O_RDONLY | O_CLOEXEC);
  if (fd >= 0) {
    n = ::read(fd, buf, sizeof(buf) - 1);
    ::close(fd);
  }
  std::string name = n > 0 ? std::string(buf, static_cast<size_t>(n)) : std::string();
  while (!name.empty() && (name.back() == '\n' || name.back() == '\0')) name.pop_back();
  if (!name.empty()) return name;
  return "pid-" + std::to_string(::getpid());
}

std::string DefaultSocketDir() {
  if (const char* d = std::getenv(kEnvSocketDir); d && *d) return d;
  struct stat st;
  if (::stat("/run/wooly", &st) == 0 && S_ISDIR(st.st_mode) && ::access("/run/wooly", W_OK) == 0) {
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
