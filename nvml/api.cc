// The NVML entry points Wooly answers with the tenant's view of its GPU
// (docs/nvml.md): one device, the real name with a marker, the real UUID and
// PCI location, the tenant's memory limit as total and its allocations as
// used, its measured SM share as utilization, its processes. No exception
// leaves these functions.
#include <strings.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "device.h"
#include "log.h"
#include "nvml_types.h"
#include "session.h"

namespace wooly::nvml {
namespace {

constexpr unsigned int kNoInstance = 0xFFFFFFFFu;  // gpu/compute instance without MIG

template <typename F>
nvmlReturn_t Guard(F&& f) noexcept {
  try {
    return f();
  } catch (...) {
    return NVML_ERROR_UNKNOWN;
  }
}

Session& S() { return Session::Instance(); }

nvmlReturn_t CopyString(const std::string& s, char* buf, unsigned int length) {
  if (buf == nullptr) return NVML_ERROR_INVALID_ARGUMENT;
  if (s.size() + 1 > length) return NVML_ERROR_INSUFFICIENT_SIZE;
  std::memcpy(buf, s.c_str(), s.size() + 1);
  return NVML_SUCCESS;
}

// Device facts for a valid handle.
nvmlReturn_t DeviceFactsFor(nvmlDevice_t device, DeviceFacts* facts) {
  if (nvmlReturn_t r = S().CheckDevice(device); r != NVML_SUCCESS) return r;
  return S().Facts(facts);
}

// Memory as NVML reports it: the tenant's limit (else the device) as total,
// the tenant's allocations as used, and what is left of both as free.
struct MemoryNumbers {
  unsigned long long total, used, free;
};

nvmlReturn_t Memory(nvmlDevice_t device, MemoryNumbers* m) {
  if (nvmlReturn_t r = S().CheckDevice(device); r != NVML_SUCCESS) return r;
  TenantView v;
  bool full = false;
  if (nvmlReturn_t r = S().View(&v, &full); r != NVML_SUCCESS) return r;
  uint64_t total = v.memory_total;
  if (total == 0) total = v.device_total;
  const uint64_t used = std::min(v.memory_used, total);
  m->total = total;
  m->used = used;
  m->free = std::min(total - used, v.device_free);
  return NVML_SUCCESS;
}

// Fills a process array in NVML's two-call protocol: too small an array
// gets NVML_ERROR_INSUFFICIENT_SIZE and the needed count.
template <typename Info, typename Fill>
nvmlReturn_t FillProcesses(const std::vector<TenantProcess>& procs, unsigned int* count,
                           Info* infos, Fill fill) {
  if (count == nullptr) return NVML_ERROR_INVALID_ARGUMENT;
  if (*count > 0 && infos == nullptr) return NVML_ERROR_INVALID_ARGUMENT;
  const unsigned int n = static_cast<unsigned int>(procs.size());
  if (*count < n) {
    *count = n;
    return NVML_ERROR_INSUFFICIENT_SIZE;
  }
  for (unsigned int i = 0; i < n; ++i) fill(&infos[i], procs[i]);
  *count = n;
  return NVML_SUCCESS;
}

void FillV1(nvmlProcessInfo_v1_t* out, const TenantProcess& p) {
  out->pid = p.pid;
  out->usedGpuMemory = p.bytes;
}

void FillV2(nvmlProcessInfo_v2_t* out, const TenantProcess& p) {
  out->pid = p.pid;
  out->usedGpuMemory = p.bytes;
  out->gpuInstanceId = kNoInstance;
  out->computeInstanceId = kNoInstance;
}

// The tenant's processes (compute) or none (graphics, MPS).
template <typename Info, typename Fill>
nvmlReturn_t Processes(nvmlDevice_t device, bool compute, unsigned int* count, Info* infos,
                       Fill fill) {
  if (nvmlReturn_t r = S().CheckDevice(device); r != NVML_SUCCESS) return r;
  if (!compute) return FillProcesses(std::vector<TenantProcess>(), count, infos, fill);
  TenantView v;
  bool full = false;
  if (nvmlReturn_t r = S().View(&v, &full); r != NVML_SUCCESS) return r;
  if (!full) return NVML_ERROR_NOT_SUPPORTED;
  return FillProcesses(v.processes, count, infos, fill);
}

nvmlReturn_t FillPciPrefix(nvmlDevice_t device, nvmlPciInfo_t* pci, bool full_layout) {
  DeviceFacts f;
  if (nvmlReturn_t r = DeviceFactsFor(device, &f); r != NVML_SUCCESS) return r;
  if (pci == nullptr) return NVML_ERROR_INVALID_ARGUMENT;
  const std::string legacy = FormatBusId(f.pci_domain, f.pci_bus, f.pci_device, true);
  std::memset(pci->busIdLegacy, 0, sizeof(pci->busIdLegacy));
  std::memcpy(pci->busIdLegacy, legacy.c_str(),
              std::min(legacy.size(), sizeof(pci->busIdLegacy) - 1));
  pci->domain = f.pci_domain;
  pci->bus = f.pci_bus;
  pci->device = f.pci_device;
  pci->pciDeviceId = f.pci_device_id;
  pci->pciSubSystemId = f.pci_subsystem_id;
  // The older entry points were built for a shorter struct: write nothing
  // past pciSubSystemId for them.
  if (full_layout) {
    const std::string id = FormatBusId(f.pci_domain, f.pci_bus, f.pci_device, false);
    std::memset(pci->busId, 0, sizeof(pci->busId));
    std::memcpy(pci->busId, id.c_str(), std::min(id.size(), sizeof(pci->busId) - 1));
  }
  return NVML_SUCCESS;
}

nvmlReturn_t HandleByPciBusId(const char* bus_id, nvmlDevice_t* device) {
  if (nvmlReturn_t r = S().CheckInit(); r != NVML_SUCCESS) return r;
  uint32_t domain = 0, bus = 0, dev = 0, fn = 0;
  if (device == nullptr || !ParsePciBusId(bus_id, &domain, &bus, &dev, &fn)) {
    return NVML_ERROR_INVALID_ARGUMENT;
  }
  unsigned int count = 0;
  if (nvmlReturn_t r = S().DeviceCount(&count); r != NVML_SUCCESS) return r;
  if (count == 0) return NVML_ERROR_NOT_FOUND;
  DeviceFacts f;
  if (nvmlReturn_t r = S().Facts(&f); r != NVML_SUCCESS) return r;
  if (domain != f.pci_domain || bus != f.pci_bus || dev != f.pci_device || fn != 0) {
    return NVML_ERROR_NOT_FOUND;
  }
  return S().HandleByIndex(0, device);
}

nvmlReturn_t CpuAffinity(nvmlDevice_t device, unsigned int size, unsigned long* set) {
  if (nvmlReturn_t r = S().CheckDevice(device); r != NVML_SUCCESS) return r;
  if (size == 0 || set == nullptr) return NVML_ERROR_INVALID_ARGUMENT;
  // Wooly's tenants do not own the GPU's PCIe link: every CPU is as good.
  long cpus = sysconf(_SC_NPROCESSORS_CONF);
  if (cpus < 1) cpus = 1;
  constexpr unsigned int kBits = sizeof(unsigned long) * 8;
  for (unsigned int i = 0; i < size; ++i) {
    const long first = static_cast<long>(i) * kBits;
    const long left = cpus - first;
    if (left <= 0) {
      set[i] = 0;
    } else if (left >= static_cast<long>(kBits)) {
      set[i] = ~0ul;
    } else {
      set[i] = (1ul << left) - 1;
    }
  }
  return NVML_SUCCESS;
}

// Writes a scalar answer after the device and pointer checks.
template <typename T>
nvmlReturn_t Answer(nvmlDevice_t device, T* out, T value) {
  if (nvmlReturn_t r = S().CheckDevice(device); r != NVML_SUCCESS) return r;
  if (out == nullptr) return NVML_ERROR_INVALID_ARGUMENT;
  *out = value;
  return NVML_SUCCESS;
}

const char* ErrorText(nvmlReturn_t r) {
  switch (r) {
    case NVML_SUCCESS:
      return "Success";
    case NVML_ERROR_UNINITIALIZED:
      return "Uninitialized";
    case NVML_ERROR_INVALID_ARGUMENT:
      return "Invalid Argument";
    case NVML_ERROR_NOT_SUPPORTED:
      return "Not Supported";
    case NVML_ERROR_NO_PERMISSION:
      return "Insufficient Permissions";
    case NVML_ERROR_ALREADY_INITIALIZED:
      return "Already Initialized";
    case NVML_ERROR_NOT_FOUND:
      return "Not Found";
    case NVML_ERROR_INSUFFICIENT_SIZE:
      return "Insufficient Size";
    case NVML_ERROR_INSUFFICIENT_POWER:
      return "Insufficient External Power";
    case NVML_ERROR_DRIVER_NOT_LOADED:
      return "Driver Not Loaded (woolyd unreachable)";
    case NVML_ERROR_TIMEOUT:
      return "Timeout";
    case NVML_ERROR_IRQ_ISSUE:
      return "Interrupt Request Issue";
    case NVML_ERROR_LIBRARY_NOT_FOUND:
      return "NVML Shared Library Not Found";
    case NVML_ERROR_FUNCTION_NOT_FOUND:
      return "Function Not Found";
    case NVML_ERROR_CORRUPTED_INFOROM:
      return "Corrupted infoROM";
    case NVML_ERROR_GPU_IS_LOST:
      return "GPU is lost (woolyd connection lost)";
    case NVML_ERROR_RESET_REQUIRED:
      return "GPU requires reset";
    case NVML_ERROR_OPERATING_SYSTEM:
      return "The operating system has blocked the request";
    case NVML_ERROR_LIB_RM_VERSION_MISMATCH:
      return "Library/woolyd version mismatch";
    case NVML_ERROR_IN_USE:
      return "In use by another client";
    case NVML_ERROR_MEMORY:
      return "Insufficient Memory";
    case NVML_ERROR_NO_DATA:
      return "No data";
    case NVML_ERROR_VGPU_ECC_NOT_SUPPORTED:
      return "ECC is not supported in vGPU";
    case NVML_ERROR_INSUFFICIENT_RESOURCES:
      return "Insufficient Resources";
    case NVML_ERROR_FREQ_NOT_SUPPORTED:
      return "Frequency not supported";
    case NVML_ERROR_ARGUMENT_VERSION_MISMATCH:
      return "Argument version mismatch";
    case NVML_ERROR_DEPRECATED:
      return "Deprecated";
    case NVML_ERROR_NOT_READY:
      return "Not ready";
    case NVML_ERROR_GPU_NOT_FOUND:
      return "GPU not found";
    case NVML_ERROR_INVALID_STATE:
      return "Invalid state";
    case NVML_ERROR_UNKNOWN:
      break;
  }
  return "Unknown Error";
}

}  // namespace
}  // namespace wooly::nvml

using wooly::nvml::Answer;
using wooly::nvml::DeviceFacts;
using wooly::nvml::DeviceFactsFor;
using wooly::nvml::Guard;
using wooly::nvml::S;
using wooly::nvml::TenantView;

extern "C" {

// --- Initialization

nvmlReturn_t nvmlInitWithFlags(unsigned int flags) {
  return Guard([&] { return S().Init(flags); });
}
nvmlReturn_t nvmlInit_v2(void) { return nvmlInitWithFlags(0); }
nvmlReturn_t nvmlInit(void) { return nvmlInitWithFlags(0); }
nvmlReturn_t nvmlShutdown(void) {
  return Guard([&] { return S().Shutdown(); });
}
const char* nvmlErrorString(nvmlReturn_t result) { return wooly::nvml::ErrorText(result); }

// --- System

nvmlReturn_t nvmlSystemGetDriverVersion(char* version, unsigned int length) {
  return Guard([&] {
    DeviceFacts f;
    if (nvmlReturn_t r = S().Facts(&f); r != NVML_SUCCESS) return r;
    if (version == nullptr) return NVML_ERROR_INVALID_ARGUMENT;
    if (f.driver_version.empty()) return NVML_ERROR_NOT_SUPPORTED;
    return wooly::nvml::CopyString(f.driver_version, version, length);
  });
}

nvmlReturn_t nvmlSystemGetNVMLVersion(char* version, unsigned int length) {
  return Guard([&] {
    DeviceFacts f;
    if (nvmlReturn_t r = S().Facts(&f); r != NVML_SUCCESS) return r;
    if (version == nullptr) return NVML_ERROR_INVALID_ARGUMENT;
    if (f.driver_version.empty()) return NVML_ERROR_NOT_SUPPORTED;
    // "<CUDA major>.<driver version>", as NVIDIA's library reports it.
    std::string v = f.driver_version;
    if (f.cuda_driver_version > 0) v = std::to_string(f.cuda_driver_version / 1000) + "." + v;
    return wooly::nvml::CopyString(v, version, length);
  });
}

nvmlReturn_t nvmlSystemGetCudaDriverVersion(int* cudaDriverVersion) {
  return Guard([&] {
    DeviceFacts f;
    if (nvmlReturn_t r = S().Facts(&f); r != NVML_SUCCESS) return r;
    if (cudaDriverVersion == nullptr) return NVML_ERROR_INVALID_ARGUMENT;
    if (f.cuda_driver_version <= 0) return NVML_ERROR_NOT_SUPPORTED;
    *cudaDriverVersion = f.cuda_driver_version;
    return NVML_SUCCESS;
  });
}
nvmlReturn_t nvmlSystemGetCudaDriverVersion_v2(int* cudaDriverVersion) {
  return nvmlSystemGetCudaDriverVersion(cudaDriverVersion);
}

nvmlReturn_t nvmlSystemGetProcessName(unsigned int pid, char* name, unsigned int length) {
  return Guard([&] {
    if (nvmlReturn_t r = S().CheckInit(); r != NVML_SUCCESS) return r;
    if (name == nullptr || length == 0) return NVML_ERROR_INVALID_ARGUMENT;
    std::string found;
    bool known = false;
    unsigned int count = 0;
    if (S().DeviceCount(&count) == NVML_SUCCESS && count > 0) {
      TenantView v;
      bool full = false;
      if (S().View(&v, &full) == NVML_SUCCESS) {
        for (const auto& p : v.processes) {
          if (p.pid == pid) {
            found = p.name;
            known = true;
            break;
          }
        }
      }
    }
    if ((!known || found.empty()) && S().SameNode()) {
      wooly::nvml::HostFiles host;
      std::string comm;
      if (host.Read("/proc/" + std::to_string(pid) + "/comm", &comm)) {
        while (!comm.empty() && (comm.back() == '\n' || comm.back() == '\0')) comm.pop_back();
        found = comm;
        known = true;
      }
    }
    if (!known) return NVML_ERROR_NOT_FOUND;
    // Cropped to the buffer, as NVIDIA's library does.
    const size_t n = std::min<size_t>(found.size(), length - 1);
    std::memcpy(name, found.data(), n);
    name[n] = '\0';
    return NVML_SUCCESS;
  });
}

nvmlReturn_t nvmlSystemGetTopologyGpuSet(unsigned int cpuNumber, unsigned int* count,
                                         nvmlDevice_t* deviceArray) {
  return Guard([&] {
    if (nvmlReturn_t r = S().CheckInit(); r != NVML_SUCCESS) return r;
    if (count == nullptr || (*count > 0 && deviceArray == nullptr)) {
      return NVML_ERROR_INVALID_ARGUMENT;
    }
    unsigned int n = 0;
    if (nvmlReturn_t r = S().DeviceCount(&n); r != NVML_SUCCESS) return r;
    if (*count == 0 || n == 0) {
      *count = n;
      return NVML_SUCCESS;
    }
    *count = 1;
    return S().HandleByIndex(0, &deviceArray[0]);
  });
}

nvmlReturn_t nvmlUnitGetCount(unsigned int* unitCount) {
  return Guard([&] {
    if (nvmlReturn_t r = S().CheckInit(); r != NVML_SUCCESS) return r;
    if (unitCount == nullptr) return NVML_ERROR_INVALID_ARGUMENT;
    *unitCount = 0;
    return NVML_SUCCESS;
  });
}

nvmlReturn_t nvmlGetExcludedDeviceCount(unsigned int* deviceCount) {
  return Guard([&] {
    if (nvmlReturn_t r = S().CheckInit(); r != NVML_SUCCESS) return r;
    if (deviceCount == nullptr) return NVML_ERROR_INVALID_ARGUMENT;
    *deviceCount = 0;
    return NVML_SUCCESS;
  });
}

// --- Device enumeration

nvmlReturn_t nvmlDeviceGetCount_v2(unsigned int* deviceCount) {
  return Guard([&] {
    if (nvmlReturn_t r = S().CheckInit(); r != NVML_SUCCESS) return r;
    if (deviceCount == nullptr) return NVML_ERROR_INVALID_ARGUMENT;
    return S().DeviceCount(deviceCount);
  });
}
nvmlReturn_t nvmlDeviceGetCount(unsigned int* deviceCount) {
  return nvmlDeviceGetCount_v2(deviceCount);
}

nvmlReturn_t nvmlDeviceGetHandleByIndex_v2(unsigned int index, nvmlDevice_t* device) {
  return Guard([&] {
    if (nvmlReturn_t r = S().CheckInit(); r != NVML_SUCCESS) return r;
    if (device == nullptr) return NVML_ERROR_INVALID_ARGUMENT;
    return S().HandleByIndex(index, device);
  });
}
nvmlReturn_t nvmlDeviceGetHandleByIndex(unsigned int index, nvmlDevice_t* device) {
  return nvmlDeviceGetHandleByIndex_v2(index, device);
}

nvmlReturn_t nvmlDeviceGetHandleByUUID(const char* uuid, nvmlDevice_t* device) {
  return Guard([&] {
    if (nvmlReturn_t r = S().CheckInit(); r != NVML_SUCCESS) return r;
    if (uuid == nullptr || device == nullptr) return NVML_ERROR_INVALID_ARGUMENT;
    unsigned int count = 0;
    if (nvmlReturn_t r = S().DeviceCount(&count); r != NVML_SUCCESS) return r;
    if (count == 0) return NVML_ERROR_NOT_FOUND;
    DeviceFacts f;
    if (nvmlReturn_t r = S().Facts(&f); r != NVML_SUCCESS) return r;
    if (strcasecmp(uuid, f.uuid.c_str()) != 0) return NVML_ERROR_NOT_FOUND;
    return S().HandleByIndex(0, device);
  });
}

nvmlReturn_t nvmlDeviceGetHandleByPciBusId_v2(const char* pciBusId, nvmlDevice_t* device) {
  return Guard([&] { return wooly::nvml::HandleByPciBusId(pciBusId, device); });
}
nvmlReturn_t nvmlDeviceGetHandleByPciBusId(const char* pciBusId, nvmlDevice_t* device) {
  return nvmlDeviceGetHandleByPciBusId_v2(pciBusId, device);
}

// --- Identity

nvmlReturn_t nvmlDeviceGetName(nvmlDevice_t device, char* name, unsigned int length) {
  return Guard([&] {
    DeviceFacts f;
    if (nvmlReturn_t r = DeviceFactsFor(device, &f); r != NVML_SUCCESS) return r;
    return wooly::nvml::CopyString(f.name, name, length);
  });
}

nvmlReturn_t nvmlDeviceGetUUID(nvmlDevice_t device, char* uuid, unsigned int length) {
  return Guard([&] {
    DeviceFacts f;
    if (nvmlReturn_t r = DeviceFactsFor(device, &f); r != NVML_SUCCESS) return r;
    return wooly::nvml::CopyString(f.uuid, uuid, length);
  });
}

nvmlReturn_t nvmlDeviceGetIndex(nvmlDevice_t device, unsigned int* index) {
  return Guard([&] { return Answer(device, index, 0u); });
}

nvmlReturn_t nvmlDeviceGetMinorNumber(nvmlDevice_t device, unsigned int* minorNumber) {
  return Guard([&] {
    DeviceFacts f;
    if (nvmlReturn_t r = DeviceFactsFor(device, &f); r != NVML_SUCCESS) return r;
    return Answer(device, minorNumber, f.minor_number);
  });
}

nvmlReturn_t nvmlDeviceGetPciInfo_v3(nvmlDevice_t device, nvmlPciInfo_t* pci) {
  return Guard([&] { return wooly::nvml::FillPciPrefix(device, pci, /*full_layout=*/true); });
}
nvmlReturn_t nvmlDeviceGetPciInfo_v2(nvmlDevice_t device, nvmlPciInfo_t* pci) {
  return Guard([&] { return wooly::nvml::FillPciPrefix(device, pci, /*full_layout=*/false); });
}
nvmlReturn_t nvmlDeviceGetPciInfo(nvmlDevice_t device, nvmlPciInfo_t* pci) {
  return nvmlDeviceGetPciInfo_v2(device, pci);
}

nvmlReturn_t nvmlDeviceGetPciInfoExt(nvmlDevice_t device, nvmlPciInfoExt_t* pci) {
  return Guard([&] {
    DeviceFacts f;
    if (nvmlReturn_t r = DeviceFactsFor(device, &f); r != NVML_SUCCESS) return r;
    if (pci == nullptr) return NVML_ERROR_INVALID_ARGUMENT;
    if (pci->version != nvmlPciInfoExt_v1) return NVML_ERROR_ARGUMENT_VERSION_MISMATCH;
    pci->domain = f.pci_domain;
    pci->bus = f.pci_bus;
    pci->device = f.pci_device;
    pci->pciDeviceId = f.pci_device_id;
    pci->pciSubSystemId = f.pci_subsystem_id;
    pci->baseClass = 0x03;  // display controller
    pci->subClass = 0x02;   // 3D controller, as compute GPUs report
    const std::string id = wooly::nvml::FormatBusId(f.pci_domain, f.pci_bus, f.pci_device, false);
    std::memset(pci->busId, 0, sizeof(pci->busId));
    std::memcpy(pci->busId, id.c_str(), std::min(id.size(), sizeof(pci->busId) - 1));
    return NVML_SUCCESS;
  });
}

nvmlReturn_t nvmlDeviceGetCudaComputeCapability(nvmlDevice_t device, int* major, int* minor) {
  return Guard([&] {
    DeviceFacts f;
    if (nvmlReturn_t r = DeviceFactsFor(device, &f); r != NVML_SUCCESS) return r;
    if (major == nullptr || minor == nullptr) return NVML_ERROR_INVALID_ARGUMENT;
    *major = f.cc_major;
    *minor = f.cc_minor;
    return NVML_SUCCESS;
  });
}

nvmlReturn_t nvmlDeviceGetBrand(nvmlDevice_t device, nvmlBrandType_t* type) {
  return Guard([&] {
    DeviceFacts f;
    if (nvmlReturn_t r = DeviceFactsFor(device, &f); r != NVML_SUCCESS) return r;
    return Answer(device, type, wooly::nvml::BrandFor(f.name));
  });
}

nvmlReturn_t nvmlDeviceGetArchitecture(nvmlDevice_t device, nvmlDeviceArchitecture_t* arch) {
  return Guard([&] {
    DeviceFacts f;
    if (nvmlReturn_t r = DeviceFactsFor(device, &f); r != NVML_SUCCESS) return r;
    return Answer(device, arch, wooly::nvml::ArchitectureFor(f.cc_major, f.cc_minor));
  });
}

nvmlReturn_t nvmlDeviceGetMemoryBusWidth(nvmlDevice_t device, unsigned int* busWidth) {
  return Guard([&] {
    DeviceFacts f;
    if (nvmlReturn_t r = DeviceFactsFor(device, &f); r != NVML_SUCCESS) return r;
    if (busWidth == nullptr) return NVML_ERROR_INVALID_ARGUMENT;
    if (f.memory_bus_width == 0) return NVML_ERROR_NOT_SUPPORTED;
    *busWidth = f.memory_bus_width;
    return NVML_SUCCESS;
  });
}

nvmlReturn_t nvmlDeviceGetBusType(nvmlDevice_t device, nvmlBusType_t* type) {
  return Guard([&] { return Answer<nvmlBusType_t>(device, type, NVML_BUS_TYPE_PCIE); });
}

// --- Memory, utilization, processes: the tenant's

nvmlReturn_t nvmlDeviceGetMemoryInfo(nvmlDevice_t device, nvmlMemory_t* memory) {
  return Guard([&] {
    if (nvmlReturn_t r = S().CheckDevice(device); r != NVML_SUCCESS) return r;
    if (memory == nullptr) return NVML_ERROR_INVALID_ARGUMENT;
    wooly::nvml::MemoryNumbers m;
    if (nvmlReturn_t r = wooly::nvml::Memory(device, &m); r != NVML_SUCCESS) return r;
    memory->total = m.total;
    memory->free = m.free;
    memory->used = m.used;
    return NVML_SUCCESS;
  });
}

nvmlReturn_t nvmlDeviceGetMemoryInfo_v2(nvmlDevice_t device, nvmlMemory_v2_t* memory) {
  return Guard([&] {
    if (nvmlReturn_t r = S().CheckDevice(device); r != NVML_SUCCESS) return r;
    if (memory == nullptr) return NVML_ERROR_INVALID_ARGUMENT;
    if (memory->version != nvmlMemory_v2) return NVML_ERROR_ARGUMENT_VERSION_MISMATCH;
    wooly::nvml::MemoryNumbers m;
    if (nvmlReturn_t r = wooly::nvml::Memory(device, &m); r != NVML_SUCCESS) return r;
    memory->total = m.total;
    memory->reserved = 0;  // the driver's reservation is not the tenant's
    memory->free = m.free;
    memory->used = m.used;
    return NVML_SUCCESS;
  });
}

nvmlReturn_t nvmlDeviceGetUtilizationRates(nvmlDevice_t device, nvmlUtilization_t* utilization) {
  return Guard([&] {
    if (nvmlReturn_t r = S().CheckDevice(device); r != NVML_SUCCESS) return r;
    if (utilization == nullptr) return NVML_ERROR_INVALID_ARGUMENT;
    TenantView v;
    bool full = false;
    if (nvmlReturn_t r = S().View(&v, &full); r != NVML_SUCCESS) return r;
    if (!full) return NVML_ERROR_NOT_SUPPORTED;
    const double pct = std::round(v.measured_share * 100.0);
    utilization->gpu = static_cast<unsigned int>(std::clamp(pct, 0.0, 100.0));
    // Wooly measures SM time per tenant, not memory bandwidth.
    utilization->memory = 0;
    return NVML_SUCCESS;
  });
}

nvmlReturn_t nvmlDeviceGetComputeRunningProcesses(nvmlDevice_t device, unsigned int* infoCount,
                                                  nvmlProcessInfo_v1_t* infos) {
  return Guard(
      [&] { return wooly::nvml::Processes(device, true, infoCount, infos, wooly::nvml::FillV1); });
}
nvmlReturn_t nvmlDeviceGetComputeRunningProcesses_v2(nvmlDevice_t device, unsigned int* infoCount,
                                                     nvmlProcessInfo_v2_t* infos) {
  return Guard(
      [&] { return wooly::nvml::Processes(device, true, infoCount, infos, wooly::nvml::FillV2); });
}
nvmlReturn_t nvmlDeviceGetComputeRunningProcesses_v3(nvmlDevice_t device, unsigned int* infoCount,
                                                     nvmlProcessInfo_t* infos) {
  return nvmlDeviceGetComputeRunningProcesses_v2(device, infoCount, infos);
}

nvmlReturn_t nvmlDeviceGetGraphicsRunningProcesses(nvmlDevice_t device, unsigned int* infoCount,
                                                   nvmlProcessInfo_v1_t* infos) {
  return Guard(
      [&] { return wooly::nvml::Processes(device, false, infoCount, infos, wooly::nvml::FillV1); });
}
nvmlReturn_t nvmlDeviceGetGraphicsRunningProcesses_v2(nvmlDevice_t device, unsigned int* infoCount,
                                                      nvmlProcessInfo_v2_t* infos) {
  return Guard(
      [&] { return wooly::nvml::Processes(device, false, infoCount, infos, wooly::nvml::FillV2); });
}
nvmlReturn_t nvmlDeviceGetGraphicsRunningProcesses_v3(nvmlDevice_t device, unsigned int* infoCount,
                                                      nvmlProcessInfo_t* infos) {
  return nvmlDeviceGetGraphicsRunningProcesses_v2(device, infoCount, infos);
}

nvmlReturn_t nvmlDeviceGetMPSComputeRunningProcesses(nvmlDevice_t device, unsigned int* infoCount,
                                                     nvmlProcessInfo_v1_t* infos) {
  return nvmlDeviceGetGraphicsRunningProcesses(device, infoCount, infos);  // none either
}
nvmlReturn_t nvmlDeviceGetMPSComputeRunningProcesses_v2(nvmlDevice_t device,
                                                        unsigned int* infoCount,
                                                        nvmlProcessInfo_v2_t* infos) {
  return nvmlDeviceGetGraphicsRunningProcesses_v2(device, infoCount, infos);
}
nvmlReturn_t nvmlDeviceGetMPSComputeRunningProcesses_v3(nvmlDevice_t device,
                                                        unsigned int* infoCount,
                                                        nvmlProcessInfo_t* infos) {
  return nvmlDeviceGetGraphicsRunningProcesses_v2(device, infoCount, infos);
}

nvmlReturn_t nvmlDeviceGetRunningProcessDetailList(nvmlDevice_t device,
                                                   nvmlProcessDetailList_t* plist) {
  return Guard([&] {
    if (nvmlReturn_t r = S().CheckDevice(device); r != NVML_SUCCESS) return r;
    if (plist == nullptr || plist->version != nvmlProcessDetailList_v1 ||
        plist->mode >= NVML_PROCESS_MODE_MAX) {
      return NVML_ERROR_INVALID_ARGUMENT;
    }
    const bool compute =
        plist->mode == NVML_PROCESS_MODE_COMPUTE || plist->mode == NVML_PROCESS_MODE_ALL;
    return wooly::nvml::Processes(
        device, compute, &plist->numProcArrayEntries, plist->procArray,
        [](nvmlProcessDetail_v1_t* out, const wooly::nvml::TenantProcess& p) {
          out->pid = p.pid;
          out->usedGpuMemory = p.bytes;
          out->gpuInstanceId = wooly::nvml::kNoInstance;
          out->computeInstanceId = wooly::nvml::kNoInstance;
          out->usedGpuCcProtectedMemory = 0;
        });
  });
}

// --- Modes: what a tenant of a shared, non-MIG, headless GPU sees

nvmlReturn_t nvmlDeviceGetMigMode(nvmlDevice_t device, unsigned int* currentMode,
                                  unsigned int* pendingMode) {
  return Guard([&] {
    if (nvmlReturn_t r = S().CheckDevice(device); r != NVML_SUCCESS) return r;
    if (currentMode == nullptr || pendingMode == nullptr) return NVML_ERROR_INVALID_ARGUMENT;
    *currentMode = NVML_DEVICE_MIG_DISABLE;
    *pendingMode = NVML_DEVICE_MIG_DISABLE;
    return NVML_SUCCESS;
  });
}

nvmlReturn_t nvmlDeviceIsMigDeviceHandle(nvmlDevice_t device, unsigned int* isMigDevice) {
  return Guard([&] { return Answer(device, isMigDevice, 0u); });
}

nvmlReturn_t nvmlDeviceGetMaxMigDeviceCount(nvmlDevice_t device, unsigned int* count) {
  return Guard([&] { return Answer(device, count, 0u); });
}

nvmlReturn_t nvmlDeviceGetPersistenceMode(nvmlDevice_t device, nvmlEnableState_t* mode) {
  // woolyd keeps the driver loaded for as long as it runs.
  return Guard([&] { return Answer(device, mode, NVML_FEATURE_ENABLED); });
}

nvmlReturn_t nvmlDeviceGetComputeMode(nvmlDevice_t device, nvmlComputeMode_t* mode) {
  // Shared by design, whatever mode the physical GPU is in for woolyd.
  return Guard([&] { return Answer(device, mode, NVML_COMPUTEMODE_DEFAULT); });
}

nvmlReturn_t nvmlDeviceGetDisplayMode(nvmlDevice_t device, nvmlEnableState_t* display) {
  return Guard([&] { return Answer(device, display, NVML_FEATURE_DISABLED); });
}

nvmlReturn_t nvmlDeviceGetDisplayActive(nvmlDevice_t device, nvmlEnableState_t* isActive) {
  return Guard([&] { return Answer(device, isActive, NVML_FEATURE_DISABLED); });
}

nvmlReturn_t nvmlDeviceGetVirtualizationMode(nvmlDevice_t device,
                                             nvmlGpuVirtualizationMode_t* pVirtualMode) {
  return Guard([&] { return Answer(device, pVirtualMode, NVML_GPU_VIRTUALIZATION_MODE_NONE); });
}

// --- Topology: one GPU, no peers

nvmlReturn_t nvmlDeviceGetP2PStatus(nvmlDevice_t device1, nvmlDevice_t device2,
                                    nvmlGpuP2PCapsIndex_t p2pIndex, nvmlGpuP2PStatus_t* p2pStatus) {
  return Guard([&] {
    if (nvmlReturn_t r = S().CheckDevice(device1); r != NVML_SUCCESS) return r;
    if (nvmlReturn_t r = S().CheckDevice(device2); r != NVML_SUCCESS) return r;
    if (p2pStatus == nullptr || static_cast<unsigned int>(p2pIndex) >=
                                    static_cast<unsigned int>(NVML_P2P_CAPS_INDEX_UNKNOWN)) {
      return NVML_ERROR_INVALID_ARGUMENT;
    }
    *p2pStatus = NVML_P2P_STATUS_NOT_SUPPORTED;
    return NVML_SUCCESS;
  });
}

nvmlReturn_t nvmlDeviceGetNvLinkState(nvmlDevice_t device, unsigned int link,
                                      nvmlEnableState_t* isActive) {
  return Guard([&] {
    if (nvmlReturn_t r = S().CheckDevice(device); r != NVML_SUCCESS) return r;
    if (isActive == nullptr || link >= NVML_NVLINK_MAX_LINKS) return NVML_ERROR_INVALID_ARGUMENT;
    // As for a GPU without NVLink: the tenant has no peer to reach.
    return NVML_ERROR_NOT_SUPPORTED;
  });
}

nvmlReturn_t nvmlDeviceGetTopologyCommonAncestor(nvmlDevice_t device1, nvmlDevice_t device2,
                                                 nvmlGpuTopologyLevel_t* pathInfo) {
  return Guard([&] {
    if (nvmlReturn_t r = S().CheckDevice(device1); r != NVML_SUCCESS) return r;
    return Answer(device2, pathInfo, NVML_TOPOLOGY_INTERNAL);
  });
}

nvmlReturn_t nvmlDeviceGetTopologyNearestGpus(nvmlDevice_t device, nvmlGpuTopologyLevel_t level,
                                              unsigned int* count, nvmlDevice_t* deviceArray) {
  return Guard([&] {
    if (nvmlReturn_t r = S().CheckDevice(device); r != NVML_SUCCESS) return r;
    if (count == nullptr || (*count > 0 && deviceArray == nullptr)) {
      return NVML_ERROR_INVALID_ARGUMENT;
    }
    *count = 0;
    return NVML_SUCCESS;
  });
}

nvmlReturn_t nvmlDeviceOnSameBoard(nvmlDevice_t device1, nvmlDevice_t device2, int* onSameBoard) {
  return Guard([&] {
    if (nvmlReturn_t r = S().CheckDevice(device1); r != NVML_SUCCESS) return r;
    return Answer(device2, onSameBoard, 1);  // the only device is itself
  });
}

nvmlReturn_t nvmlDeviceGetMultiGpuBoard(nvmlDevice_t device, unsigned int* multiGpuBool) {
  return Guard([&] { return Answer(device, multiGpuBool, 0u); });
}

nvmlReturn_t nvmlDeviceGetCpuAffinity(nvmlDevice_t device, unsigned int cpuSetSize,
                                      unsigned long* cpuSet) {
  return Guard([&] { return wooly::nvml::CpuAffinity(device, cpuSetSize, cpuSet); });
}

nvmlReturn_t nvmlDeviceGetCpuAffinityWithinScope(nvmlDevice_t device, unsigned int cpuSetSize,
                                                 unsigned long* cpuSet, nvmlAffinityScope_t scope) {
  return Guard([&] {
    if (nvmlReturn_t r = S().CheckDevice(device); r != NVML_SUCCESS) return r;
    if (scope != NVML_AFFINITY_SCOPE_NODE && scope != NVML_AFFINITY_SCOPE_SOCKET) {
      return NVML_ERROR_INVALID_ARGUMENT;
    }
    return wooly::nvml::CpuAffinity(device, cpuSetSize, cpuSet);
  });
}

}  // extern "C"
