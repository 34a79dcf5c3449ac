#include "nvml_source.h"

#include <dlfcn.h>
#include <link.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <vector>

#include "nvml_types.h"

namespace wooly::smi {
namespace {

// The variable name is a string literal in Wooly's library (nvml/device.h)
// and appears nowhere in NVIDIA's.
constexpr char kWoolyTag[] = "WOOLY_NVML_MARKER";
constexpr char kDefaultMarker[] = " (Wooly)";

template <typename F>
F Sym(void* h, const char* name) {
  return reinterpret_cast<F>(dlsym(h, name));
}

using InitFn = nvmlReturn_t (*)();
using ShutdownFn = nvmlReturn_t (*)();
using ErrorStringFn = const char* (*)(nvmlReturn_t);
using CountFn = nvmlReturn_t (*)(unsigned int*);
using HandleFn = nvmlReturn_t (*)(unsigned int, nvmlDevice_t*);
using StringFn = nvmlReturn_t (*)(nvmlDevice_t, char*, unsigned int);
using SysStringFn = nvmlReturn_t (*)(char*, unsigned int);
using CudaVersionFn = nvmlReturn_t (*)(int*);
using MemoryFn = nvmlReturn_t (*)(nvmlDevice_t, nvmlMemory_t*);
using UtilFn = nvmlReturn_t (*)(nvmlDevice_t, nvmlUtilization_t*);
using ProcsFn = nvmlReturn_t (*)(nvmlDevice_t, unsigned int*, nvmlProcessInfo_t*);
using ProcNameFn = nvmlReturn_t (*)(unsigned int, char*, unsigned int);
using PciFn = nvmlReturn_t (*)(nvmlDevice_t, nvmlPciInfo_t*);
using TempFn = nvmlReturn_t (*)(nvmlDevice_t, int, unsigned int*);
using PowerFn = nvmlReturn_t (*)(nvmlDevice_t, unsigned int*);

std::string Now(const char* fmt, bool millis) {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  tm local{};
  localtime_r(&ts.tv_sec, &local);
  char buf[64];
  size_t n = strftime(buf, sizeof(buf), fmt, &local);
  if (millis) std::snprintf(buf + n, sizeof(buf) - n, ".%03ld", ts.tv_nsec / 1000000);
  return buf;
}

}  // namespace

bool FileContains(const std::string& path, const std::string& needle) {
  FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr || needle.empty()) {
    if (f != nullptr) std::fclose(f);
    return false;
  }
  // Read in chunks, keeping needle-1 bytes of overlap between them.
  std::vector<char> buf(1 << 16);
  size_t keep = 0;
  bool found = false;
  while (!found) {
    const size_t n = std::fread(buf.data() + keep, 1, buf.size() - keep, f);
    if (n == 0) break;
    const size_t len = keep + n;
    found = std::search(buf.begin(), buf.begin() + len, needle.begin(), needle.end()) !=
            buf.begin() + len;
    keep = std::min(len, needle.size() - 1);
    std::memmove(buf.data(), buf.data() + len - keep, keep);
  }
  std::fclose(f);
  return found;
}

NvmlSource::~NvmlSource() {
  if (handle_ == nullptr) return;
  if (initialized_) {
    if (auto shutdown = Sym<ShutdownFn>(handle_, "nvmlShutdown")) shutdown();
  }
  dlclose(handle_);
}

bool NvmlSource::Load(std::string* error) {
  handle_ = dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL);
  if (handle_ == nullptr) {
    const char* e = dlerror();
    *error = std::string("cannot load libnvidia-ml.so.1: ") + (e ? e : "not found");
    return false;
  }
  link_map* lm = nullptr;
  if (dlinfo(handle_, RTLD_DI_LINKMAP, &lm) == 0 && lm != nullptr && lm->l_name != nullptr) {
    path_ = lm->l_name;
  }
  for (const char* name : {"nvmlInit_v2", "nvmlShutdown", "nvmlDeviceGetCount_v2",
                           "nvmlDeviceGetHandleByIndex_v2", "nvmlDeviceGetName"}) {
    if (dlsym(handle_, name) == nullptr) {
      *error = "libnvidia-ml.so.1 (" + path_ + ") has no " + name;
      return false;
    }
  }
  return true;
}

bool NvmlSource::IsWooly() const { return !path_.empty() && FileContains(path_, kWoolyTag); }

bool NvmlSource::Read(Snapshot* out, std::string* error) {
  void* h = handle_;
  const nvmlReturn_t init = Sym<InitFn>(h, "nvmlInit_v2")();
  auto text = [&](nvmlReturn_t r) {
    auto es = Sym<ErrorStringFn>(h, "nvmlErrorString");
    const char* s = es ? es(r) : nullptr;
    return std::string(s ? s : "error ") + " (" + std::to_string(r) + ")";
  };
  if (init != NVML_SUCCESS) {
    *error = "nvmlInit_v2 failed: " + text(init);
    return false;
  }
  initialized_ = true;

  Snapshot s;
  s.wooly = IsWooly();
  if (s.wooly) {
    const char* m = std::getenv(kWoolyTag);
    s.marker = m != nullptr ? m : kDefaultMarker;
    for (const char* var : {"WOOLY_TENANT", "POD_NAME"}) {
      const char* v = std::getenv(var);
      if (v != nullptr && *v != '\0') {
        s.tenant = v;
        break;
      }
    }
  }
  s.timestamp = Now("%a %b %e %H:%M:%S %Y", false);
  s.query_timestamp = Now("%Y/%m/%d %H:%M:%S", true);

  char buf[256];
  if (auto f = Sym<SysStringFn>(h, "nvmlSystemGetDriverVersion");
      f && f(buf, sizeof(buf)) == NVML_SUCCESS) {
    s.driver_version = buf;
  }
  auto cuda = Sym<CudaVersionFn>(h, "nvmlSystemGetCudaDriverVersion_v2");
  if (cuda == nullptr) cuda = Sym<CudaVersionFn>(h, "nvmlSystemGetCudaDriverVersion");
  int cv = 0;
  if (cuda && cuda(&cv) == NVML_SUCCESS) s.cuda_version = cv;

  unsigned int count = 0;
  if (nvmlReturn_t r = Sym<CountFn>(h, "nvmlDeviceGetCount_v2")(&count); r != NVML_SUCCESS) {
    *error = "nvmlDeviceGetCount_v2 failed: " + text(r);
    return false;
  }
  auto get_handle = Sym<HandleFn>(h, "nvmlDeviceGetHandleByIndex_v2");
  auto name = Sym<StringFn>(h, "nvmlDeviceGetName");
  auto uuid = Sym<StringFn>(h, "nvmlDeviceGetUUID");
  auto pci = Sym<PciFn>(h, "nvmlDeviceGetPciInfo_v3");
  auto memory = Sym<MemoryFn>(h, "nvmlDeviceGetMemoryInfo");
  auto util = Sym<UtilFn>(h, "nvmlDeviceGetUtilizationRates");
  auto temp = Sym<TempFn>(h, "nvmlDeviceGetTemperature");
  auto power = Sym<PowerFn>(h, "nvmlDeviceGetPowerUsage");
  auto procs = Sym<ProcsFn>(h, "nvmlDeviceGetComputeRunningProcesses_v3");
  if (procs == nullptr) procs = Sym<ProcsFn>(h, "nvmlDeviceGetComputeRunningProcesses_v2");
  auto proc_name = Sym<ProcNameFn>(h, "nvmlSystemGetProcessName");

  for (unsigned int i = 0; i < count; ++i) {
    nvmlDevice_t dev = nullptr;
    if (nvmlReturn_t r = get_handle(i, &dev); r != NVML_SUCCESS) {
      *error = "nvmlDeviceGetHandleByIndex_v2(" + std::to_string(i) + ") failed: " + text(r);
      return false;
    }
    Gpu g;
    g.index = i;
    if (name(dev, buf, sizeof(buf)) == NVML_SUCCESS) g.name = buf;
    if (uuid && uuid(dev, buf, sizeof(buf)) == NVML_SUCCESS) g.uuid = buf;
    nvmlPciInfo_t p{};
    if (pci && pci(dev, &p) == NVML_SUCCESS) {
      p.busId[sizeof(p.busId) - 1] = '\0';
      g.bus_id = p.busId;
    }
    nvmlMemory_t m{};
    if (memory && memory(dev, &m) == NVML_SUCCESS) {
      g.memory_total = m.total;
      g.memory_used = m.used;
      g.memory_free = m.free;
    }
    nvmlUtilization_t u{};
    if (util && util(dev, &u) == NVML_SUCCESS) g.utilization_gpu = u.gpu;
    unsigned int v = 0;
    if (temp && temp(dev, 0 /* NVML_TEMPERATURE_GPU */, &v) == NVML_SUCCESS) g.temperature_c = v;
    if (power && power(dev, &v) == NVML_SUCCESS) g.power_mw = v;
    if (procs) {
      // NVML's two-call protocol; a process may start between the calls.
      std::vector<nvmlProcessInfo_t> infos(16);
      for (int attempt = 0; attempt < 4; ++attempt) {
        unsigned int n = static_cast<unsigned int>(infos.size());
        const nvmlReturn_t r = procs(dev, &n, infos.data());
        if (r == NVML_ERROR_INSUFFICIENT_SIZE) {
          infos.resize(n + 8);
          continue;
        }
        if (r == NVML_SUCCESS) {
          g.processes_known = true;
          for (unsigned int k = 0; k < n && k < infos.size(); ++k) {
            Process proc;
            proc.pid = infos[k].pid;
            // NVML_VALUE_NOT_AVAILABLE is ~0ULL.
            if (infos[k].usedGpuMemory != ~0ULL) proc.used_bytes = infos[k].usedGpuMemory;
            if (proc_name && proc_name(proc.pid, buf, sizeof(buf)) == NVML_SUCCESS) {
              proc.name = buf;
            }
            g.processes.push_back(proc);
          }
        }
        break;
      }
    }
    s.gpus.push_back(std::move(g));
  }
  *out = std::move(s);
  return true;
}

}  // namespace wooly::smi
