#include "wooly/proto/defaults.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>

namespace wooly::wire {

namespace {

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t' || s.front() == '\r')) {
    s.remove_prefix(1);
  }
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) {
    s.remove_suffix(1);
  }
  return s;
}

bool IsSettingName(std::string_view key) {
  if (key.size() <= 6 || key.substr(0, 6) != "WOOLY_") return false;
  for (char c : key) {
    if (!((c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_')) return false;
  }
  return true;
}

// The file's settings, read at most once per process (never freed: settings
// may be read from other libraries' destructors).
struct ClientConfig {
  std::mutex mu;
  bool enabled = true;
  bool loaded = false;
  std::map<std::string, std::string, std::less<>> values;
};

ClientConfig& Config() {
  static ClientConfig* const config = new ClientConfig();
  return *config;
}

// Plain read(2), like ProgramName. False when the file cannot be opened.
bool ReadSmallFile(const char* path, std::string* out, int* error) {
  const int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    *error = errno;
    return false;
  }
  constexpr size_t kMaxBytes = 1 << 20;
  char buf[4096];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    out->append(buf, static_cast<size_t>(n));
    if (out->size() > kMaxBytes) break;
  }
  ::close(fd);
  return true;
}

void LoadLocked(ClientConfig& c) {
  c.loaded = true;
  const char* named = std::getenv(kEnvClientConfig);
  const bool explicit_path = named != nullptr && *named != '\0';
  if (explicit_path && std::strcmp(named, "none") == 0) return;
  const char* path = explicit_path ? named : kDefaultClientConfig;
  std::string text;
  int error = 0;
  if (!ReadSmallFile(path, &text, &error)) {
    // A missing default file is the normal case; a named one is a mistake.
    if (explicit_path || error != ENOENT) {
      std::fprintf(stderr, "wooly[%d]: cannot read the client config %s: %s; ignored\n",
                   static_cast<int>(::getpid()), path, std::strerror(error));
    }
    return;
  }
  std::vector<std::pair<std::string, std::string>> values;
  std::vector<std::string> errors;
  ParseClientConfig(text, path, &values, &errors);
  for (const std::string& e : errors) {
    std::fprintf(stderr, "wooly[%d]: client config %s; line ignored\n",
                 static_cast<int>(::getpid()), e.c_str());
  }
  for (auto& [k, v] : values) c.values[k] = std::move(v);
}

}  // namespace

void ParseClientConfig(std::string_view text, std::string_view origin,
                       std::vector<std::pair<std::string, std::string>>* values,
                       std::vector<std::string>* errors) {
  int line_no = 0;
  while (!text.empty()) {
    ++line_no;
    const size_t nl = text.find('\n');
    std::string_view line = Trim(text.substr(0, nl));
    text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
    if (line.empty() || line.front() == '#') continue;
    auto fail = [&](const std::string& why) {
      errors->push_back(std::string(origin) + " line " + std::to_string(line_no) + ": " + why);
    };
    if (line.substr(0, 7) == "export ") line = Trim(line.substr(7));
    const size_t eq = line.find('=');
    if (eq == std::string_view::npos) {
      fail("\"" + std::string(line) + "\" is not KEY=VALUE");
      continue;
    }
    const std::string_view key = Trim(line.substr(0, eq));
    std::string_view value = Trim(line.substr(eq + 1));
    if (!IsSettingName(key)) {
      fail("\"" + std::string(key) + "\" is not a WOOLY_* setting name");
      continue;
    }
    if (key == kEnvClientConfig) {
      fail(std::string(kEnvClientConfig) + " cannot be set in the file");
      continue;
    }
    if (value.size() >= 2 && (value.front() == '"' || value.front() == '\'') &&
        value.back() == value.front()) {
      value = value.substr(1, value.size() - 2);
    } else if (!value.empty() && (value.front() == '"' || value.front() == '\'')) {
      fail("unterminated quote in the value of " + std::string(key));
      continue;
    }
    values->emplace_back(std::string(key), std::string(value));
  }
}

std::string Setting(const char* name) {
  if (const char* v = std::getenv(name); v != nullptr && *v != '\0') return v;
  ClientConfig& c = Config();
  std::lock_guard<std::mutex> lock(c.mu);
  if (!c.enabled) return std::string();
  if (!c.loaded) LoadLocked(c);
  auto it = c.values.find(std::string_view(name));
  return it != c.values.end() ? it->second : std::string();
}

void SetClientConfigFileEnabled(bool enabled) {
  ClientConfig& c = Config();
  std::lock_guard<std::mutex> lock(c.mu);
  c.enabled = enabled;
}

void ResetClientConfigForTesting() {
  ClientConfig& c = Config();
  std::lock_guard<std::mutex> lock(c.mu);
  c.loaded = false;
  c.values.clear();
}

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
  if (std::string d = Setting(kEnvSocketDir); !d.empty()) return d;
  struct stat st;
  if (::stat("/run/wooly", &st) == 0 && S_ISDIR(st.st_mode) && ::access("/run/wooly", W_OK) == 0) {
    return "/run/wooly";
  }
  if (const char* x = std::getenv("XDG_RUNTIME_DIR"); x && *x) return std::string(x) + "/wooly";
  return "/tmp/wooly-" + std::to_string(::getuid());
}

std::string DefaultSessionEndpoint() {
  if (std::string s = Setting(kEnvServer); !s.empty()) return s;
  return "unix:" + DefaultSocketDir() + "/woolyd.sock";
}

std::string DefaultAdminEndpoint() {
  if (std::string s = Setting(kEnvAdmin); !s.empty()) return s;
  return "unix:" + DefaultSocketDir() + "/woolyd-admin.sock";
}

}  // namespace wooly::wire
