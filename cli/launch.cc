#include "wooly/cli/launch.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <iterator>
#include <sstream>

#include "absl/status/status.h"
#include "wooly/proto/defaults.h"
#include "wooly/proto/socket.h"

extern char** environ;

namespace wooly::cli {
namespace {

std::string Join(const std::vector<std::string>& parts, char sep) {
  std::string out;
  for (size_t i = 0; i < parts.size(); ++i) {
    if (i > 0) out += sep;
    out += parts[i];
  }
  return out;
}

// Strips trailing slashes (but keeps "/").
std::string TrimSlashes(std::string p) {
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  return p;
}

bool SamePath(const std::string& a, const std::string& b, const Canonicalizer& canon) {
  const std::string ta = TrimSlashes(a);
  const std::string tb = TrimSlashes(b);
  return ta == tb || TrimSlashes(canon(ta)) == TrimSlashes(canon(tb));
}

// Whether an LD_PRELOAD entry is Wooly's client library. A bare soname
// ("libcuda.so.1") is resolved through the search path, which is Wooly's
// directory exactly when wooly-cli set it up, so it counts too.
bool IsWoolyPreload(const std::string& entry, const Layout& layout, const Canonicalizer& canon) {
  if (entry.find('/') == std::string::npos) return entry == kClientLibName;
  return SamePath(entry, layout.client_lib, canon) ||
         SamePath(DirName(entry), layout.client_dir, canon);
}

std::string StrError(int err) { return std::strerror(err); }

// mkdir -p with `mode` for the directories it creates.
bool MakeDirs(const std::string& dir, mode_t mode, std::string* error) {
  struct stat st;
  if (::stat(dir.c_str(), &st) == 0) {
    if (S_ISDIR(st.st_mode)) return true;
    *error = dir + " exists and is not a directory";
    return false;
  }
  const std::string parent = DirName(dir);
  if (parent != dir && !MakeDirs(parent, mode, error)) return false;
  if (::mkdir(dir.c_str(), mode) != 0) {
    if (errno == EEXIST) return true;  // created concurrently: leave it as it is
    *error = "cannot create " + dir + ": " + StrError(errno);
    return false;
  }
  ::chmod(dir.c_str(), mode);  // mkdir's mode is filtered by the umask
  return true;
}

bool Reachable(const wire::Endpoint& ep, std::string* reason) {
  const int fd = wire::Connect(ep, reason);
  if (fd < 0) return false;
  ::close(fd);
  return true;
}

// Reads `path` from byte `offset` to its end.
std::string ReadFrom(const std::string& path, off_t offset) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return "";
  in.seekg(offset);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

int PidfdOpen(pid_t pid) {
#ifdef SYS_pidfd_open
  return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
#else
  errno = ENOSYS;
  return -1;
#endif
}

// Whether `pid` (not our child: it was double-forked) has exited. Zombies
// count as exited, for containers whose init does not reap.
bool ProcessGone(pid_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  if (!stat) return ::kill(pid, 0) != 0 && errno == ESRCH;
  std::string text((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
  const size_t paren = text.rfind(')');
  return paren != std::string::npos && paren + 2 < text.size() &&
         (text[paren + 2] == 'Z' || text[paren + 2] == 'X');
}

// Holds an flock for its lifetime.
class FileLock {
 public:
  explicit FileLock(const std::string& path) {
    fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd_ >= 0) {
      while (::flock(fd_, LOCK_EX) != 0 && errno == EINTR) {
      }
    }
  }
  ~FileLock() {
    if (fd_ >= 0) ::close(fd_);
  }
  FileLock(const FileLock&) = delete;
  FileLock& operator=(const FileLock&) = delete;

 private:
  int fd_ = -1;
};

std::vector<char*> CStrings(const std::vector<std::string>& v) {
  std::vector<char*> out;
  out.reserve(v.size() + 1);
  for (const std::string& s : v) out.push_back(const_cast<char*>(s.c_str()));
  out.push_back(nullptr);
  return out;
}

// Starts woolyd detached: fork, setsid, fork again (so woolyd is reparented
// to init and never becomes a child of the command we exec next), then exec.
// Returns woolyd's pid, or -1 with *error set.
pid_t SpawnDetached(const std::vector<std::string>& argv, const Env& env, int log_fd,
                    std::string* error) {
  // Everything the children touch is prepared before fork: only
  // async-signal-safe calls happen in between fork and exec.
  std::vector<char*> c_argv = CStrings(argv);
  std::vector<char*> c_env = CStrings(env);
  int pid_pipe[2];
  int err_pipe[2];
  if (::pipe2(pid_pipe, O_CLOEXEC) != 0) {
    *error = "pipe: " + StrError(errno);
    return -1;
  }
  if (::pipe2(err_pipe, O_CLOEXEC) != 0) {
    *error = "pipe: " + StrError(errno);
    ::close(pid_pipe[0]);
    ::close(pid_pipe[1]);
    return -1;
  }
  const pid_t mid = ::fork();
  if (mid < 0) {
    *error = "fork: " + StrError(errno);
    for (int fd : {pid_pipe[0], pid_pipe[1], err_pipe[0], err_pipe[1]}) ::close(fd);
    return -1;
  }
  if (mid == 0) {
    ::setsid();
    const pid_t child = ::fork();
    if (child == 0) {
      const int null_fd = ::open("/dev/null", O_RDONLY);
      if (null_fd >= 0) ::dup2(null_fd, STDIN_FILENO);
      ::dup2(log_fd, STDOUT_FILENO);
      ::dup2(log_fd, STDERR_FILENO);
      if (::chdir("/") != 0) {
        // Not fatal: woolyd only needs absolute paths.
      }
      ::execve(c_argv[0], c_argv.data(), c_env.data());
      const int err = errno;
      ssize_t ignored = ::write(err_pipe[1], &err, sizeof(err));
      (void)ignored;
      ::_exit(127);
    }
    const int32_t sent = child;
    ssize_t ignored = ::write(pid_pipe[1], &sent, sizeof(sent));
    (void)ignored;
    ::_exit(child < 0 ? 1 : 0);
  }
  ::close(pid_pipe[1]);
  ::close(err_pipe[1]);
  int status = 0;
  while (::waitpid(mid, &status, 0) < 0 && errno == EINTR) {
  }
  int32_t pid = -1;
  if (!wire::ReadFull(pid_pipe[0], &pid, sizeof(pid)) || pid <= 0) {
    *error = "fork: could not start woolyd";
    pid = -1;
  } else {
    int exec_errno = 0;
    if (wire::ReadFull(err_pipe[0], &exec_errno, sizeof(exec_errno))) {
      *error = "cannot execute " + argv[0] + ": " + StrError(exec_errno);
      pid = -1;
    }
  }
  ::close(pid_pipe[0]);
  ::close(err_pipe[0]);
  return pid;
}

}  // namespace

Env CurrentEnv() {
  Env env;
  for (char** e = environ; e && *e; ++e) env.emplace_back(*e);
  return env;
}

std::optional<std::string> GetEnv(const Env& env, const std::string& name) {
  const std::string prefix = name + "=";
  for (const std::string& e : env) {
    if (e.rfind(prefix, 0) == 0) return e.substr(prefix.size());
  }
  return std::nullopt;
}

void SetEnv(Env* env, const std::string& name, const std::string& value) {
  UnsetEnv(env, name);
  env->push_back(name + "=" + value);
}

void UnsetEnv(Env* env, const std::string& name) {
  const std::string prefix = name + "=";
  std::erase_if(*env, [&](const std::string& e) { return e.rfind(prefix, 0) == 0; });
}

std::vector<std::string> SplitList(const std::string& text, bool spaces_too) {
  std::vector<std::string> out;
  std::string cur;
  for (char c : text) {
    if (c == ':' || (spaces_too && (c == ' ' || c == '\t'))) {
      if (!cur.empty()) out.push_back(cur);
      cur.clear();
    } else {
      cur += c;
    }
  }
  if (!cur.empty()) out.push_back(cur);
  return out;
}

std::string CanonicalPath(const std::string& path) {
  char buf[PATH_MAX];
  if (::realpath(path.c_str(), buf) == nullptr) return path;
  return buf;
}

Env BuildClientEnv(const Env& base, const Layout& layout, const ClientSettings& settings,
                   const Canonicalizer& canon) {
  Env env = base;
  std::vector<std::string> preload = {layout.client_lib};
  for (const std::string& e : SplitList(GetEnv(base, "LD_PRELOAD").value_or(""), true)) {
    if (!IsWoolyPreload(e, layout, canon)) preload.push_back(e);
  }
  SetEnv(&env, "LD_PRELOAD", Join(preload, ':'));

  std::vector<std::string> libpath = {layout.client_dir};
  for (const std::string& e : SplitList(GetEnv(base, "LD_LIBRARY_PATH").value_or(""), false)) {
    if (!SamePath(e, layout.client_dir, canon)) libpath.push_back(e);
  }
  SetEnv(&env, "LD_LIBRARY_PATH", Join(libpath, ':'));

  SetEnv(&env, wire::kEnvServer, settings.server_endpoint);
  if (settings.priority) SetEnv(&env, wire::kEnvPriority, std::to_string(*settings.priority));
  if (settings.name) SetEnv(&env, wire::kEnvClientName, *settings.name);
  return env;
}

Env BuildServerEnv(const Env& base, const Layout& layout, const std::string& socket_dir,
                   const Canonicalizer& canon) {
  Env env = base;
  if (auto v = GetEnv(base, "LD_PRELOAD")) {
    std::vector<std::string> keep;
    for (const std::string& e : SplitList(*v, true)) {
      if (!IsWoolyPreload(e, layout, canon)) keep.push_back(e);
    }
    if (keep.empty()) {
      UnsetEnv(&env, "LD_PRELOAD");
    } else {
      SetEnv(&env, "LD_PRELOAD", Join(keep, ':'));
    }
  }
  if (auto v = GetEnv(base, "LD_LIBRARY_PATH")) {
    std::vector<std::string> keep;
    for (const std::string& e : SplitList(*v, false)) {
      if (!SamePath(e, layout.client_dir, canon)) keep.push_back(e);
    }
    if (keep.empty()) {
      UnsetEnv(&env, "LD_LIBRARY_PATH");
    } else {
      SetEnv(&env, "LD_LIBRARY_PATH", Join(keep, ':'));
    }
  }
  SetEnv(&env, wire::kEnvSocketDir, socket_dir);
  return env;
}

std::string DescribeStartupFailure(const std::string& log_text, const std::string& log_path) {
  static constexpr char kNoGpu[] = "no usable GPU: ";
  std::istringstream in(log_text);
  std::string line;
  std::string last;
  while (std::getline(in, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (const size_t at = line.find(kNoGpu); at != std::string::npos) {
      return "no GPU on this machine: " + line.substr(at + sizeof(kNoGpu) - 1);
    }
    if (line.find_first_not_of(" \t") != std::string::npos) last = line;
  }
  if (last.empty()) return "woolyd exited during start-up without output (log: " + log_path + ")";
  return "woolyd exited during start-up: " + last + " (log: " + log_path + ")";
}

std::string AdminEndpointFor(const std::string& session_path) {
  std::string stem = session_path;
  if (stem.size() > 5 && stem.compare(stem.size() - 5, 5, ".sock") == 0) {
    stem.resize(stem.size() - 5);
  }
  return "unix:" + stem + "-admin.sock";
}

absl::StatusOr<EnsureResult> EnsureServer(const EnsureOptions& options) {
  wire::Endpoint ep;
  std::string error;
  if (!wire::ParseEndpoint(options.session_endpoint, &ep, &error)) {
    return absl::InvalidArgumentError(error);
  }
  const std::string shown = wire::FormatEndpoint(ep);
  std::string reason;
  if (Reachable(ep, &reason)) return EnsureResult{};
  if (!ep.is_unix) {
    // A TCP endpoint may be another node: never start a server for it.
    return absl::UnavailableError("cannot reach woolyd at " + shown + ": " + reason);
  }
  if (options.layout.woolyd.empty()) {
    return absl::NotFoundError("no woolyd answers at " + shown + " (" + reason +
                               ") and no woolyd binary was found beside wooly-cli to start one");
  }

  const std::string dir = DirName(ep.path);
  if (!MakeDirs(dir, 0750, &error)) return absl::FailedPreconditionError(error);
  FileLock lock(dir + "/woolyd-start.lock");
  // Another `run` may have started one while we waited for the lock.
  if (Reachable(ep, &reason)) return EnsureResult{};

  EnsureResult result;
  result.started = true;
  result.log_path = dir + "/woolyd.log";
  const int log_fd =
      ::open(result.log_path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
  if (log_fd < 0) {
    return absl::FailedPreconditionError("cannot open " + result.log_path + ": " + StrError(errno));
  }
  const off_t log_start = ::lseek(log_fd, 0, SEEK_END);

  const std::string admin =
      GetEnv(options.base_env, wire::kEnvAdmin).value_or(AdminEndpointFor(ep.path));
  const std::vector<std::string> argv = {options.layout.woolyd, "--listen", "unix:" + ep.path,
                                         "--admin", admin};
  const Env env = BuildServerEnv(options.base_env, options.layout, dir, CanonicalPath);
  result.pid = SpawnDetached(argv, env, log_fd, &error);
  ::close(log_fd);
  if (result.pid < 0) return absl::FailedPreconditionError(error);

  const int pidfd = PidfdOpen(result.pid);
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::milliseconds(options.timeout_ms);
  absl::Status status = absl::DeadlineExceededError(
      "woolyd (pid " + std::to_string(result.pid) + ") did not open " + ep.path + " within " +
      std::to_string(options.timeout_ms / 1000) + " s (log: " + result.log_path + ")");
  while (std::chrono::steady_clock::now() < deadline) {
    if (Reachable(ep, &reason)) {
      status = absl::OkStatus();
      break;
    }
    // Wait a little, waking at once if woolyd exits.
    bool gone = false;
    if (pidfd >= 0) {
      pollfd p{pidfd, POLLIN, 0};
      gone = ::poll(&p, 1, 25) > 0;
    } else {
      ::poll(nullptr, 0, 25);
      gone = ProcessGone(result.pid);
    }
    if (gone) {
      // It may have listened and then quit; only its log tells why.
      status = absl::FailedPreconditionError(
          DescribeStartupFailure(ReadFrom(result.log_path, log_start), result.log_path));
      break;
    }
  }
  if (pidfd >= 0) ::close(pidfd);
  if (!status.ok()) return status;
  return result;
}

int ExecCommand(const std::vector<std::string>& command, const Env& env) {
  std::vector<char*> c_argv = CStrings(command);
  std::vector<char*> c_env = CStrings(env);
  std::cout.flush();
  std::cerr.flush();
  ::execvpe(c_argv[0], c_argv.data(), c_env.data());
  const int err = errno;
  std::cerr << "wooly-cli: cannot run " << command[0] << ": " << StrError(err) << "\n";
  return err == ENOENT ? 127 : 126;
}

}  // namespace wooly::cli
