#include "device.h"

#include <cuda.h>
#include <fcntl.h>
#include <unistd.h>

#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

namespace wooly::nvml {
namespace {

int Attribute(const wire::DeviceInfo& info, CUdevice_attribute attr) {
  const size_t i = static_cast<size_t>(attr);
  return i < info.attributes.size() ? info.attributes[i] : 0;
}

bool Contains(const std::string& s, const char* needle) {
  return s.find(needle) != std::string::npos;
}

// Parses "0x10de\n" (sysfs id files).
bool ParseHexFile(const HostFiles& host, const std::string& path, uint32_t* out) {
  std::string text;
  if (!host.Read(path, &text)) return false;
  char* end = nullptr;
  const unsigned long v = std::strtoul(text.c_str(), &end, 16);
  if (end == text.c_str()) return false;
  *out = static_cast<uint32_t>(v);
  return true;
}

bool ParseHexField(const std::string& s, uint32_t* out) {
  if (s.empty() || s.size() > 8) return false;
  for (char c : s) {
    if (!std::isxdigit(static_cast<unsigned char>(c))) return false;
  }
  *out = static_cast<uint32_t>(std::strtoul(s.c_str(), nullptr, 16));
  return true;
}

std::vector<std::string> Split(const std::string& s, char sep) {
  std::vector<std::string> parts;
  size_t start = 0;
  for (;;) {
    const size_t at = s.find(sep, start);
    parts.push_back(s.substr(start, at == std::string::npos ? std::string::npos : at - start));
    if (at == std::string::npos) return parts;
    start = at + 1;
  }
}

}  // namespace

bool HostFiles::Read(const std::string& path, std::string* out) const {
  const std::string full = root + path;
  const int fd = ::open(full.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  out->clear();
  char buf[4096];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n <= 0) break;
    out->append(buf, static_cast<size_t>(n));
    if (out->size() > (1u << 20)) break;  // these files are tiny
  }
  ::close(fd);
  return true;
}

std::string FormatUuid(const uint8_t u[16]) {
  char buf[64];
  std::snprintf(buf, sizeof(buf),
                "GPU-%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", u[0],
                u[1], u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11], u[12], u[13],
                u[14], u[15]);
  return buf;
}

std::string MarkedName(const std::string& base, const std::string& marker) {
  constexpr size_t kMax = NVML_DEVICE_NAME_V2_BUFFER_SIZE - 1;
  if (marker.size() >= kMax) return base.substr(0, kMax);
  return base.substr(0, kMax - marker.size()) + marker;
}

std::string FormatBusId(uint32_t domain, uint32_t bus, uint32_t device, bool legacy) {
  char buf[NVML_DEVICE_PCI_BUS_ID_BUFFER_SIZE];
  std::snprintf(buf, sizeof(buf), legacy ? "%04X:%02X:%02X.0" : "%08X:%02X:%02X.0", domain, bus,
                device);
  return buf;
}

bool ParsePciBusId(const char* text, uint32_t* domain, uint32_t* bus, uint32_t* device,
                   uint32_t* function) {
  if (text == nullptr) return false;
  std::string s(text);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.pop_back();
  const std::vector<std::string> parts = Split(s, ':');
  if (parts.size() != 2 && parts.size() != 3) return false;
  uint32_t d = 0, b = 0, dev = 0, fn = 0;
  if (parts.size() == 3 && !ParseHexField(parts[0], &d)) return false;
  if (!ParseHexField(parts[parts.size() - 2], &b)) return false;
  const std::vector<std::string> df = Split(parts.back(), '.');
  if (df.size() > 2 || !ParseHexField(df[0], &dev)) return false;
  if (df.size() == 2 && !ParseHexField(df[1], &fn)) return false;
  // bus:device needs the function to tell it from domain:bus.
  if (parts.size() == 2 && df.size() != 2) return false;
  *domain = d;
  *bus = b;
  *device = dev;
  *function = fn;
  return true;
}

nvmlDeviceArchitecture_t ArchitectureFor(int major, int minor) {
  switch (major) {
    case 3:
      return NVML_DEVICE_ARCH_KEPLER;
    case 5:
      return NVML_DEVICE_ARCH_MAXWELL;
    case 6:
      return NVML_DEVICE_ARCH_PASCAL;
    case 7:
      return minor >= 5 ? NVML_DEVICE_ARCH_TURING : NVML_DEVICE_ARCH_VOLTA;
    case 8:
      return minor == 9 ? NVML_DEVICE_ARCH_ADA : NVML_DEVICE_ARCH_AMPERE;
    case 9:
      return NVML_DEVICE_ARCH_HOPPER;
    case 10:
    case 11:
    case 12:
      return NVML_DEVICE_ARCH_BLACKWELL;
    default:
      return NVML_DEVICE_ARCH_UNKNOWN;
  }
}

nvmlBrandType_t BrandFor(const std::string& name) {
  if (Contains(name, "GeForce")) return NVML_BRAND_GEFORCE;
  if (Contains(name, "TITAN")) return NVML_BRAND_TITAN;
  if (Contains(name, "Quadro")) return NVML_BRAND_QUADRO;
  if (Contains(name, "Tesla")) return NVML_BRAND_TESLA;
  if (Contains(name, "RTX")) return NVML_BRAND_NVIDIA_RTX;
  return NVML_BRAND_NVIDIA;
}

std::string DriverVersionFromProc(const std::string& text) {
  // "NVRM version: NVIDIA UNIX ... Kernel Module  580.65.06  <date>": the
  // first token that is dotted decimal numbers.
  const std::string line = text.substr(0, text.find('\n'));
  size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && std::isspace(static_cast<unsigned char>(line[i]))) ++i;
    size_t j = i;
    while (j < line.size() && !std::isspace(static_cast<unsigned char>(line[j]))) ++j;
    const std::string tok = line.substr(i, j - i);
    bool digits = !tok.empty() && std::isdigit(static_cast<unsigned char>(tok[0])) &&
                  std::isdigit(static_cast<unsigned char>(tok.back()));
    bool dot = false;
    for (char c : tok) {
      if (c == '.') {
        dot = true;
      } else if (!std::isdigit(static_cast<unsigned char>(c))) {
        digits = false;
      }
    }
    if (digits && dot) return tok;
    i = j;
  }
  return "";
}

std::string DriverVersionForCuda(int cuda) {
  // NVIDIA's published minimum Linux driver of each CUDA release.
  static constexpr struct {
    int cuda;
    const char* driver;
  } kMinimum[] = {
      {13000, "580.65.06"}, {12090, "575.51.03"}, {12080, "570.26"},    {12060, "560.28.03"},
      {12050, "555.42.02"}, {12040, "550.54.14"}, {12030, "545.23.06"}, {12020, "535.54.03"},
      {12010, "530.30.02"}, {12000, "525.60.13"}, {11080, "520.61.05"},
  };
  for (const auto& m : kMinimum) {
    if (cuda >= m.cuda) return m.driver;
  }
  return "";
}

DeviceFacts MakeDeviceFacts(const wire::DeviceInfo& info, const std::string& marker,
                            const HostFiles* host) {
  DeviceFacts f;
  f.name = MarkedName(info.name, marker);
  f.uuid = FormatUuid(info.uuid);
  f.pci_domain = static_cast<uint32_t>(Attribute(info, CU_DEVICE_ATTRIBUTE_PCI_DOMAIN_ID));
  f.pci_bus = static_cast<uint32_t>(Attribute(info, CU_DEVICE_ATTRIBUTE_PCI_BUS_ID));
  f.pci_device = static_cast<uint32_t>(Attribute(info, CU_DEVICE_ATTRIBUTE_PCI_DEVICE_ID));
  f.cc_major = Attribute(info, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR);
  f.cc_minor = Attribute(info, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR);
  f.memory_bus_width =
      static_cast<uint32_t>(Attribute(info, CU_DEVICE_ATTRIBUTE_GLOBAL_MEMORY_BUS_WIDTH));
  f.cuda_driver_version = info.driver_version;
  f.total_memory = info.total_mem;
  if (host != nullptr) {
    char addr[32];
    std::snprintf(addr, sizeof(addr), "%04x:%02x:%02x.0", f.pci_domain, f.pci_bus, f.pci_device);
    const std::string dev = std::string("/sys/bus/pci/devices/") + addr + "/";
    uint32_t vendor = 0, device = 0, sub_vendor = 0, sub_device = 0;
    if (ParseHexFile(*host, dev + "vendor", &vendor) &&
        ParseHexFile(*host, dev + "device", &device)) {
      f.pci_device_id = (device << 16) | (vendor & 0xffff);
    }
    if (ParseHexFile(*host, dev + "subsystem_vendor", &sub_vendor) &&
        ParseHexFile(*host, dev + "subsystem_device", &sub_device)) {
      f.pci_subsystem_id = (sub_device << 16) | (sub_vendor & 0xffff);
    }
    std::string text;
    if (host->Read("/proc/driver/nvidia/version", &text)) {
      f.driver_version = DriverVersionFromProc(text);
    }
    if (host->Read(std::string("/proc/driver/nvidia/gpus/") + addr + "/information", &text)) {
      const size_t at = text.find("Device Minor:");
      if (at != std::string::npos) {
        f.minor_number = static_cast<uint32_t>(std::strtoul(text.c_str() + at + 13, nullptr, 10));
      }
    }
  }
  if (f.driver_version.empty()) f.driver_version = DriverVersionForCuda(f.cuda_driver_version);
  return f;
}

}  // namespace wooly::nvml
