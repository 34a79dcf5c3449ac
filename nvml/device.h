// The static half of the NVML view: what the device is, derived once per
// nvmlInit from the Hello reply's DeviceInfo, plus the few facts CUDA's
// attributes do not carry (driver version, PCI ids, minor number), which are
// read from the node's /proc and /sys when woolyd is on the same node.
//
// Thread safety: pure functions; DeviceFacts is a value.
#ifndef WOOLY_NVML_DEVICE_H_
#define WOOLY_NVML_DEVICE_H_

#include <cstdint>
#include <string>

#include "nvml_types.h"
#include "wooly/proto/wire.h"

namespace wooly::nvml {

// The marker appended to the device name unless $WOOLY_NVML_MARKER says
// otherwise (empty: no marker).
inline constexpr char kDefaultMarker[] = " (Wooly)";
inline constexpr char kEnvMarker[] = "WOOLY_NVML_MARKER";

struct DeviceFacts {
  std::string name;  // the device's name with the marker
  std::string uuid;  // "GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx"
  uint32_t pci_domain = 0;
  uint32_t pci_bus = 0;
  uint32_t pci_device = 0;
  uint32_t pci_device_id = 0x10de;  // device id << 16 | vendor id
  uint32_t pci_subsystem_id = 0;    // subsystem device << 16 | subsystem vendor
  int cc_major = 0;
  int cc_minor = 0;
  uint32_t memory_bus_width = 0;  // bits; 0: unknown
  uint32_t minor_number = 0;
  int cuda_driver_version = 0;  // e.g. 13000
  std::string driver_version;   // e.g. "580.65.06"
  uint64_t total_memory = 0;    // the whole device's
};

// Where /proc and /sys are; tests point it at a fake tree.
struct HostFiles {
  std::string root;  // prepended to absolute paths; "" for the real ones
  bool Read(const std::string& path, std::string* out) const;
};

// Builds the facts. `host` is null when woolyd is on another node (TCP), so
// this node's files describe some other GPU, or none.
DeviceFacts MakeDeviceFacts(const wire::DeviceInfo& info, const std::string& marker,
                            const HostFiles* host);

// "GPU-" and the 16 bytes as 8-4-4-4-12 lowercase hex.
std::string FormatUuid(const uint8_t uuid[16]);
// `base` + `marker`, cutting `base` so the whole fits NVML's 96-byte names.
std::string MarkedName(const std::string& base, const std::string& marker);
// "%08X:%02X:%02X.0", or with legacy "%04X:%02X:%02X.0".
std::string FormatBusId(uint32_t domain, uint32_t bus, uint32_t device, bool legacy);
// NVML's accepted bus id forms (hex): domain:bus:device.function,
// domain:bus:device, bus:device.function. False when malformed.
bool ParsePciBusId(const char* text, uint32_t* domain, uint32_t* bus, uint32_t* device,
                   uint32_t* function);
nvmlDeviceArchitecture_t ArchitectureFor(int cc_major, int cc_minor);
nvmlBrandType_t BrandFor(const std::string& name);
// The version in /proc/driver/nvidia/version's text ("580.65.06"), or "".
std::string DriverVersionFromProc(const std::string& text);
// The oldest Linux driver that supports a CUDA driver version (13000 ->
// "580.65.06"): what is reported when the node's driver cannot be read.
std::string DriverVersionForCuda(int cuda_driver_version);

}  // namespace wooly::nvml

#endif  // WOOLY_NVML_DEVICE_H_
