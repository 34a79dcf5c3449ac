// The NVML view's pure parts (nvml/device.h, nvml/observer.h): formats,
// parsers, the facts read from a node's /proc and /sys (a fake tree here),
// and the Hello / kTenantView payloads.
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <string>

#include "device.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "observer.h"
#include "wooly/proto/wire.h"

namespace wooly::nvml {
namespace {

TEST(NvmlDeviceTest, UuidFormat) {
  uint8_t u[16];
  for (int i = 0; i < 16; ++i) u[i] = static_cast<uint8_t>(0xa0 + i);
  EXPECT_EQ(FormatUuid(u), "GPU-a0a1a2a3-a4a5-a6a7-a8a9-aaabacadaeaf");
}

TEST(NvmlDeviceTest, MarkedNameFitsNvmlsBuffer) {
  EXPECT_EQ(MarkedName("NVIDIA H100 80GB HBM3", " (Wooly)"), "NVIDIA H100 80GB HBM3 (Wooly)");
  EXPECT_EQ(MarkedName("NVIDIA H100 80GB HBM3", ""), "NVIDIA H100 80GB HBM3");
  const std::string marked = MarkedName(std::string(200, 'x'), " (Wooly)");
  EXPECT_EQ(marked.size(), NVML_DEVICE_NAME_V2_BUFFER_SIZE - 1u);
  EXPECT_THAT(marked, ::testing::EndsWith(" (Wooly)"));
}

TEST(NvmlDeviceTest, BusIds) {
  EXPECT_EQ(FormatBusId(0, 0x3b, 0, false), "00000000:3B:00.0");
  EXPECT_EQ(FormatBusId(1, 0xc1, 2, true), "0001:C1:02.0");
  uint32_t d = 9, b = 9, dev = 9, fn = 9;
  ASSERT_TRUE(ParsePciBusId("00000001:C1:02.0", &d, &b, &dev, &fn));
  EXPECT_EQ(d, 1u);
  EXPECT_EQ(b, 0xc1u);
  EXPECT_EQ(dev, 2u);
  EXPECT_EQ(fn, 0u);
  ASSERT_TRUE(ParsePciBusId("c1:02.1", &d, &b, &dev, &fn));  // bus:device.function
  EXPECT_EQ(d, 0u);
  EXPECT_EQ(fn, 1u);
  ASSERT_TRUE(ParsePciBusId("0000:c1:02", &d, &b, &dev, &fn));  // domain:bus:device
  EXPECT_EQ(b, 0xc1u);
  for (const char* bad : {"", "c1", "c1:02", "zz:00.0", "0:1:2:3", "0000:c1:02.0.1", "1::2.0"}) {
    EXPECT_FALSE(ParsePciBusId(bad, &d, &b, &dev, &fn)) << bad;
  }
  EXPECT_FALSE(ParsePciBusId(nullptr, &d, &b, &dev, &fn));
}

TEST(NvmlDeviceTest, ArchitectureAndBrand) {
  EXPECT_EQ(ArchitectureFor(9, 0), static_cast<unsigned>(NVML_DEVICE_ARCH_HOPPER));
  EXPECT_EQ(ArchitectureFor(8, 0), static_cast<unsigned>(NVML_DEVICE_ARCH_AMPERE));
  EXPECT_EQ(ArchitectureFor(8, 6), static_cast<unsigned>(NVML_DEVICE_ARCH_AMPERE));
  EXPECT_EQ(ArchitectureFor(8, 9), static_cast<unsigned>(NVML_DEVICE_ARCH_ADA));
  EXPECT_EQ(ArchitectureFor(7, 0), static_cast<unsigned>(NVML_DEVICE_ARCH_VOLTA));
  EXPECT_EQ(ArchitectureFor(7, 5), static_cast<unsigned>(NVML_DEVICE_ARCH_TURING));
  EXPECT_EQ(ArchitectureFor(10, 0), static_cast<unsigned>(NVML_DEVICE_ARCH_BLACKWELL));
  EXPECT_EQ(ArchitectureFor(12, 0), static_cast<unsigned>(NVML_DEVICE_ARCH_BLACKWELL));
  EXPECT_EQ(ArchitectureFor(99, 0), static_cast<unsigned>(NVML_DEVICE_ARCH_UNKNOWN));
  EXPECT_EQ(BrandFor("NVIDIA H100 80GB HBM3 (Wooly)"), NVML_BRAND_NVIDIA);
  EXPECT_EQ(BrandFor("NVIDIA GeForce RTX 4090"), NVML_BRAND_GEFORCE);
  EXPECT_EQ(BrandFor("Tesla T4"), NVML_BRAND_TESLA);
  EXPECT_EQ(BrandFor("NVIDIA RTX A6000"), NVML_BRAND_NVIDIA_RTX);
}

TEST(NvmlDeviceTest, DriverVersions) {
  EXPECT_EQ(DriverVersionFromProc("NVRM version: NVIDIA UNIX x86_64 Kernel Module  580.65.06  "
                                  "Sun Jul 27 07:09:32 UTC 2025\nGCC version:  gcc 12\n"),
            "580.65.06");
  EXPECT_EQ(DriverVersionFromProc("NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  "
                                  "570.124.06  Release Build  (dvs-builder@U16)  Date\n"),
            "570.124.06");
  EXPECT_EQ(DriverVersionFromProc("garbage 1.x\n"), "");
  EXPECT_EQ(DriverVersionForCuda(13000), "580.65.06");
  EXPECT_EQ(DriverVersionForCuda(13020), "580.65.06");  // newer: the newest we know
  EXPECT_EQ(DriverVersionForCuda(12040), "550.54.14");
  EXPECT_EQ(DriverVersionForCuda(12070), "560.28.03");
  EXPECT_EQ(DriverVersionForCuda(11000), "");
}

class HostTree {
 public:
  HostTree() {
    char tmpl[] = "/tmp/wooly-nvml-host-XXXXXX";
    root_ = ::mkdtemp(tmpl);
  }
  ~HostTree() { std::system(("rm -rf '" + root_ + "'").c_str()); }
  void Write(const std::string& path, const std::string& text) {
    std::system(("mkdir -p \"$(dirname '" + root_ + path + "')\"").c_str());
    std::ofstream(root_ + path) << text;
  }
  const std::string& root() const { return root_; }

 private:
  std::string root_;
};

wire::DeviceInfo H100Info() {
  wire::DeviceInfo info;
  info.name = "NVIDIA H100 80GB HBM3";
  for (int i = 0; i < 16; ++i) info.uuid[i] = static_cast<uint8_t>(i);
  info.total_mem = 80ull << 30;
  info.driver_version = 12080;
  info.attributes.assign(150, 0);
  info.attributes[50] = 0;     // PCI domain
  info.attributes[33] = 0x1b;  // PCI bus
  info.attributes[34] = 0;     // PCI device
  info.attributes[75] = 9;     // compute capability
  info.attributes[76] = 0;
  info.attributes[37] = 5120;  // memory bus width
  return info;
}

TEST(NvmlDeviceTest, FactsFromTheNodesFiles) {
  HostTree host;
  host.Write("/sys/bus/pci/devices/0000:1b:00.0/vendor", "0x10de\n");
  host.Write("/sys/bus/pci/devices/0000:1b:00.0/device", "0x2330\n");
  host.Write("/sys/bus/pci/devices/0000:1b:00.0/subsystem_vendor", "0x10de\n");
  host.Write("/sys/bus/pci/devices/0000:1b:00.0/subsystem_device", "0x16c1\n");
  host.Write("/proc/driver/nvidia/version",
             "NVRM version: NVIDIA UNIX x86_64 Kernel Module  570.133.20  Date\n");
  host.Write("/proc/driver/nvidia/gpus/0000:1b:00.0/information",
             "Model: \t\t NVIDIA H100 80GB HBM3\nIRQ:   \t\t 18\nDevice Minor: \t 3\n");
  HostFiles files{host.root()};
  const DeviceFacts f = MakeDeviceFacts(H100Info(), " (Wooly)", &files);
  EXPECT_EQ(f.name, "NVIDIA H100 80GB HBM3 (Wooly)");
  EXPECT_EQ(f.uuid, "GPU-00010203-0405-0607-0809-0a0b0c0d0e0f");
  EXPECT_EQ(f.pci_bus, 0x1bu);
  EXPECT_EQ(f.pci_device_id, 0x233010deu);
  EXPECT_EQ(f.pci_subsystem_id, 0x16c110deu);
  EXPECT_EQ(f.driver_version, "570.133.20");
  EXPECT_EQ(f.minor_number, 3u);
  EXPECT_EQ(f.cc_major, 9);
  EXPECT_EQ(f.memory_bus_width, 5120u);
  EXPECT_EQ(f.cuda_driver_version, 12080);
  EXPECT_EQ(f.total_memory, 80ull << 30);
}

TEST(NvmlDeviceTest, FactsWithoutTheNodesFiles) {
  // Remote woolyd (no host files) or a node without them: defaults.
  const DeviceFacts f = MakeDeviceFacts(H100Info(), "", nullptr);
  EXPECT_EQ(f.name, "NVIDIA H100 80GB HBM3");
  EXPECT_EQ(f.pci_device_id, 0x10deu);
  EXPECT_EQ(f.minor_number, 0u);
  EXPECT_EQ(f.driver_version, "570.26");  // CUDA 12.8's minimum
  HostTree empty;
  HostFiles files{empty.root()};
  EXPECT_EQ(MakeDeviceFacts(H100Info(), "", &files).driver_version, "570.26");
}

TEST(NvmlObserverTest, HelloCarriesTheSettingsBlock) {
  HelloIdentity id;
  id.pid = 42;
  id.priority = 1;
  id.name = "python3";
  id.pod = "pod-a";
  id.pod_namespace = "ns";
  id.settings = {{"role", "observer"}, {"WOOLY_TENANT", "a"}};
  const wire::Writer w = BuildHello(id);
  wire::Reader r(w.data().data(), w.size());
  EXPECT_EQ(r.Get<uint32_t>(), wire::kProtocolVersion);
  EXPECT_EQ(r.Get<uint32_t>(), 42u);
  EXPECT_EQ(r.Get<int32_t>(), 1);
  EXPECT_EQ(r.GetStr(), "python3");
  EXPECT_EQ(r.GetStr(), "pod-a");
  EXPECT_EQ(r.GetStr(), "ns");
  ASSERT_EQ(r.Get<uint32_t>(), 2u);
  EXPECT_EQ(r.GetStr(), "role");
  EXPECT_EQ(r.GetStr(), "observer");
  EXPECT_EQ(r.GetStr(), "WOOLY_TENANT");
  EXPECT_EQ(r.GetStr(), "a");
  EXPECT_TRUE(r.ok());
  EXPECT_EQ(r.remaining(), 0u);
}

TEST(NvmlObserverTest, IdentityFromEnvironment) {
  setenv("WOOLY_TENANT", "team-b", 1);
  setenv("WOOLY_MEMORY_LIMIT", "10GiB", 1);
  setenv("WOOLY_CLIENT_NAME", "watcher", 1);
  setenv("WOOLY_PRIORITY", "3", 1);
  const HelloIdentity id = ObserverIdentityFromEnvironment();
  EXPECT_EQ(id.name, "watcher");
  EXPECT_EQ(id.priority, 3);
  EXPECT_EQ(id.pid, static_cast<uint32_t>(getpid()));
  using Settings = std::vector<std::pair<std::string, std::string>>;
  EXPECT_EQ(id.settings, (Settings{{"role", "observer"},
                                   {"WOOLY_TENANT", "team-b"},
                                   {"WOOLY_MEMORY_LIMIT", "10GiB"}}));
  for (const char* v :
       {"WOOLY_TENANT", "WOOLY_MEMORY_LIMIT", "WOOLY_CLIENT_NAME", "WOOLY_PRIORITY"}) {
    unsetenv(v);
  }
}

TEST(NvmlObserverTest, TenantViewPayload) {
  wire::Writer w;
  w.PutStr("team-a")
      .Put<uint64_t>(1)
      .Put<uint64_t>(2)
      .Put<uint64_t>(3)
      .Put<uint64_t>(4)
      .Put<uint64_t>(5)
      .Put<double>(0.25)
      .Put<double>(0.5)
      .Put<uint64_t>(6)
      .Put<uint32_t>(1)
      .Put<uint32_t>(77)
      .Put<uint64_t>(8)
      .PutStr("p");
  wire::Reader r(w.data().data(), w.size());
  TenantView v;
  ASSERT_TRUE(ParseTenantView(r, &v));
  EXPECT_EQ(v.tenant, "team-a");
  EXPECT_EQ(v.memory_limit, 1u);
  EXPECT_EQ(v.memory_total, 2u);
  EXPECT_EQ(v.memory_used, 3u);
  EXPECT_EQ(v.device_total, 4u);
  EXPECT_EQ(v.device_free, 5u);
  EXPECT_DOUBLE_EQ(v.measured_share, 0.25);
  EXPECT_DOUBLE_EQ(v.target_share, 0.5);
  EXPECT_EQ(v.busy_ns, 6u);
  ASSERT_EQ(v.processes.size(), 1u);
  EXPECT_EQ(v.processes[0].pid, 77u);
  EXPECT_EQ(v.processes[0].bytes, 8u);
  EXPECT_EQ(v.processes[0].name, "p");

  // Truncated anywhere: rejected, never read past the end.
  for (size_t n = 0; n < w.size(); ++n) {
    wire::Reader cut(w.data().data(), n);
    TenantView ignored;
    EXPECT_FALSE(ParseTenantView(cut, &ignored)) << n;
  }
}

}  // namespace
}  // namespace wooly::nvml
