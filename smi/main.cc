// wooly-smi: Wooly's nvidia-smi front-end, installed first on the client's
// PATH as `nvidia-smi` (docs/nvml.md). NVIDIA's nvidia-smi cannot run on
// Wooly's NVML view (it needs a private NVIDIA table), so this program asks
// the public NVML API of whatever libnvidia-ml.so.1 the loader finds and
// prints that, saying that it is Wooly's view. On a machine where the
// library is NVIDIA's own it hands over to the real nvidia-smi further down
// PATH.
#include <sys/stat.h>
#include <unistd.h>

#include <climits>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "nvml_source.h"
#include "smi_format.h"

namespace {

using wooly::smi::Mode;

// Set before handing over, so that two front-ends on PATH never loop.
constexpr char kHandedOver[] = "WOOLY_SMI_HANDED_OVER";

std::string RealPath(const std::string& p) {
  char buf[PATH_MAX];
  return realpath(p.c_str(), buf) != nullptr ? std::string(buf) : std::string();
}

std::string DirName(const std::string& p) {
  const size_t slash = p.rfind('/');
  return slash == std::string::npos ? std::string(".") : p.substr(0, slash);
}

bool SameFile(const std::string& a, const std::string& b) {
  struct stat sa {
  }, sb{};
  return stat(a.c_str(), &sa) == 0 && stat(b.c_str(), &sb) == 0 && sa.st_dev == sb.st_dev &&
         sa.st_ino == sb.st_ino;
}

// Execs the first nvidia-smi on PATH that is not this program and not in
// its directory; returns only when there is none (or exec failed).
void HandOverToRealSmi(char** argv) {
  if (std::getenv(kHandedOver) != nullptr) return;
  const std::string self = RealPath("/proc/self/exe");
  std::vector<std::string> own_dirs = {DirName(self)};
  const std::string arg0 = argv[0];
  if (arg0.find('/') != std::string::npos) own_dirs.push_back(RealPath(DirName(arg0)));
  const char* path = std::getenv("PATH");
  if (path == nullptr) return;
  std::string rest = path;
  while (true) {
    const size_t colon = rest.find(':');
    const std::string part = rest.substr(0, colon);
    const std::string dir = part.empty() ? std::string(".") : part;
    const std::string real_dir = RealPath(dir);
    bool own = real_dir.empty();
    for (const std::string& d : own_dirs) own = own || d == real_dir;
    const std::string candidate = dir + "/nvidia-smi";
    if (!own && access(candidate.c_str(), X_OK) == 0 && !SameFile(candidate, self)) {
      setenv(kHandedOver, "1", 1);
      execv(candidate.c_str(), argv);
      std::fprintf(stderr, "wooly nvidia-smi: cannot run %s\n", candidate.c_str());
      unsetenv(kHandedOver);
    }
    if (colon == std::string::npos) break;
    rest = rest.substr(colon + 1);
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  const wooly::smi::ParseResult parsed = wooly::smi::ParseArgs(args);

  wooly::smi::NvmlSource nvml;
  std::string error;
  const bool loaded = nvml.Load(&error);
  // Not Wooly's library: NVIDIA's own nvidia-smi answers best, any option.
  if (!loaded || !nvml.IsWooly()) HandOverToRealSmi(argv);

  if (!parsed.options) {
    std::fputs(parsed.error.c_str(), stdout);
    return parsed.exit_code;
  }
  const wooly::smi::Options& o = *parsed.options;
  if (o.mode == Mode::kHelp) {
    std::fputs(wooly::smi::Usage().c_str(), stdout);
    return wooly::smi::kExitOk;
  }
  wooly::smi::Snapshot snap;
  if (!loaded || !nvml.Read(&snap, &error)) {
    std::printf("wooly nvidia-smi: %s\n", error.c_str());
    if (loaded && nvml.IsWooly()) {
      std::printf("Is woolyd running and WOOLY_SERVER set? (docs/troubleshooting.md)\n");
    }
    return wooly::smi::kExitNvmlFailed;
  }
  std::vector<wooly::smi::Gpu> gpus;
  if (!wooly::smi::SelectGpus(snap, o.id, &gpus)) {
    std::printf("No devices were found matching the ID \"%s\".\n", o.id ? o.id->c_str() : "");
    return wooly::smi::kExitNoGpu;
  }
  std::string out;
  switch (o.mode) {
    case Mode::kTable:
      out = wooly::smi::FormatTable(snap, gpus);
      break;
    case Mode::kList:
      out = wooly::smi::FormatList(gpus);
      break;
    case Mode::kQueryGpu:
      out = wooly::smi::FormatQueryGpu(snap, gpus, o);
      break;
    case Mode::kQueryApps:
      out = wooly::smi::FormatQueryApps(snap, gpus, o);
      break;
    case Mode::kQuery:
      out = wooly::smi::FormatQuery(snap, gpus);
      break;
    case Mode::kHelp:
      break;
  }
  std::fputs(out.c_str(), stdout);
  return std::fflush(stdout) == 0 ? wooly::smi::kExitOk : 1;
}
