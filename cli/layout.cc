#include "wooly/cli/layout.h"

#include <sys/stat.h>
#include <unistd.h>

#include <climits>

namespace wooly::cli {
namespace {

struct Candidate {
  std::string client_lib;
  std::vector<std::string> woolyd;  // tried in order
};

std::vector<Candidate> Candidates(const std::string& exe_path) {
  const std::string dir = DirName(exe_path);
  const std::string prefix = DirName(dir);
  const std::string base = prefix == "/" ? "" : prefix;
  std::vector<Candidate> out;
  // Build tree first: a build's wooly-cli must use that build's library even
  // when an installed one exists elsewhere.
  out.push_back({base + "/client/" + kClientLibName, {base + "/server/" + kServerName}});
  out.push_back({base + "/lib/wooly/" + kClientLibName,
                 {dir + "/" + kServerName, base + "/sbin/" + kServerName}});
  return out;
}

}  // namespace

std::string DirName(const std::string& path) {
  size_t end = path.size();
  while (end > 1 && path[end - 1] == '/') --end;  // ignore trailing slashes
  const size_t slash = path.rfind('/', end - 1);
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

std::optional<Layout> FindLayout(const std::string& exe_path,
                                 const std::function<bool(const std::string&)>& exists) {
  if (exe_path.empty() || exe_path[0] != '/') return std::nullopt;
  for (const Candidate& c : Candidates(exe_path)) {
    if (!exists(c.client_lib)) continue;
    Layout layout;
    layout.client_lib = c.client_lib;
    layout.client_dir = DirName(c.client_lib);
    for (const std::string& w : c.woolyd) {
      if (exists(w)) {
        layout.woolyd = w;
        break;
      }
    }
    return layout;
  }
  return std::nullopt;
}

std::vector<std::string> ClientLibCandidates(const std::string& exe_path) {
  std::vector<std::string> out;
  for (const Candidate& c : Candidates(exe_path)) out.push_back(c.client_lib);
  return out;
}

std::string SelfExePath() {
  char buf[PATH_MAX];
  const ssize_t n = ::readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  if (n <= 0) return "";
  return std::string(buf, static_cast<size_t>(n));
}

bool RegularFileExists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

}  // namespace wooly::cli
