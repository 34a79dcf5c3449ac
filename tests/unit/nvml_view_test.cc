// Wooly's libnvidia-ml.so.1, loaded with dlopen as pynvml and PyTorch load
// it, against the in-process fake woolyd (client_fake_woolyd.h): each NVML
// call is checked against what the fake's Hello and kTenantView answered.
#include <dlfcn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "client_fake_woolyd.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nvml_types.h"

namespace {

using ::testing::Contains;
using ::testing::HasSubstr;
using ::testing::Pair;
using wooly::testing::FakeWoolyd;

constexpr unsigned long long kGiB = 1ull << 30;

// The library under test, loaded once per process like a real application
// would; every test leaves its reference count at zero.
void* Library() {
  static void* handle = [] {
    void* h = dlopen(WOOLY_NVML_LIB, RTLD_NOW | RTLD_LOCAL);
    if (h == nullptr) {
      ADD_FAILURE() << "dlopen " << WOOLY_NVML_LIB << ": " << dlerror();
      std::abort();
    }
    return h;
  }();
  return handle;
}

void* Symbol(const char* name) { return dlsym(Library(), name); }

template <typename F>
F* Fn(const char* name) {
  void* p = Symbol(name);
  if (p == nullptr) {
    ADD_FAILURE() << name << " is not exported";
    std::abort();
  }
  return reinterpret_cast<F*>(p);
}

// NVML(nvmlDeviceGetName)(...) calls the library's nvmlDeviceGetName.
#define NVML(fn) Fn<decltype(fn)>(#fn)

class NvmlViewTest : public ::testing::Test {
 protected:
  void SetUp() override {
    setenv("WOOLY_SERVER", fake_.endpoint().c_str(), 1);
    setenv("WOOLY_NVML_CACHE_MS", "0", 1);
    setenv("WOOLY_LOG", "error", 1);
    for (const char* v : {"WOOLY_TENANT", "WOOLY_MEMORY_LIMIT", "WOOLY_NVML_MARKER"}) unsetenv(v);
  }
  void TearDown() override {
    // Leave the library uninitialized for the next test.
    for (int i = 0; i < 16 && NVML(nvmlShutdown)() == NVML_SUCCESS; ++i) {
    }
  }

  nvmlDevice_t InitAndGetDevice() {
    EXPECT_EQ(NVML(nvmlInit_v2)(), NVML_SUCCESS);
    nvmlDevice_t dev = nullptr;
    EXPECT_EQ(NVML(nvmlDeviceGetHandleByIndex_v2)(0, &dev), NVML_SUCCESS);
    return dev;
  }

  FakeWoolyd::TenantViewReply TwoProcessView() {
    FakeWoolyd::TenantViewReply v;
    v.tenant = "team-a";
    v.memory_limit = 20 * kGiB;
    v.memory_total = 20 * kGiB;
    v.memory_used = 5 * kGiB;
    v.device_total = 80 * kGiB;
    v.device_free = 50 * kGiB;
    v.measured_share = 0.426;
    v.target_share = 0.5;
    v.processes = {{100, 1 * kGiB, "trainer"}, {200, 4 * kGiB, "server"}};
    return v;
  }

  FakeWoolyd fake_;
};

TEST_F(NvmlViewTest, InitFailsClearlyWhenWoolydIsDown) {
  const std::string endpoint = "unix:/tmp/wooly-nvml-test-none/woolyd.sock";
  setenv("WOOLY_SERVER", endpoint.c_str(), 1);
  ::testing::internal::CaptureStderr();
  EXPECT_EQ(NVML(nvmlInit_v2)(), NVML_ERROR_DRIVER_NOT_LOADED);
  const std::string err = ::testing::internal::GetCapturedStderr();
  EXPECT_THAT(err, HasSubstr("cannot reach woolyd at " + endpoint));
  EXPECT_THAT(err, HasSubstr("WOOLY_SERVER"));
  EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1) << err;
  EXPECT_THAT(err, ::testing::StartsWith("wooly["));

  unsigned int count = 7;
  EXPECT_EQ(NVML(nvmlDeviceGetCount_v2)(&count), NVML_ERROR_UNINITIALIZED);
  EXPECT_EQ(NVML(nvmlShutdown)(), NVML_ERROR_UNINITIALIZED);
  EXPECT_STRNE(NVML(nvmlErrorString)(NVML_ERROR_DRIVER_NOT_LOADED), "");

  // NVML_INIT_FLAG_NO_GPUS: initialized, with no device.
  ::testing::internal::CaptureStderr();
  EXPECT_EQ(NVML(nvmlInitWithFlags)(NVML_INIT_FLAG_NO_GPUS), NVML_SUCCESS);
  ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(NVML(nvmlDeviceGetCount_v2)(&count), NVML_SUCCESS);
  EXPECT_EQ(count, 0u);
  nvmlDevice_t dev = nullptr;
  EXPECT_EQ(NVML(nvmlDeviceGetHandleByIndex_v2)(0, &dev), NVML_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(NVML(nvmlShutdown)(), NVML_SUCCESS);
}

TEST_F(NvmlViewTest, HelloIsAnObserverInTheClientsTenant) {
  setenv("WOOLY_TENANT", "team-a", 1);
  setenv("WOOLY_MEMORY_LIMIT", "20GiB", 1);
  ASSERT_EQ(NVML(nvmlInit)(), NVML_SUCCESS);
  ASSERT_EQ(fake_.hello_settings().size(), 1u);
  const FakeWoolyd::Settings settings = fake_.hello_settings()[0];
  EXPECT_THAT(settings, Contains(Pair("role", "observer")));
  EXPECT_THAT(settings, Contains(Pair("WOOLY_TENANT", "team-a")));
  EXPECT_THAT(settings, Contains(Pair("WOOLY_MEMORY_LIMIT", "20GiB")));
  EXPECT_EQ(fake_.hello_pids()[0], static_cast<uint32_t>(getpid()));
  EXPECT_EQ(NVML(nvmlShutdown)(), NVML_SUCCESS);
  EXPECT_EQ(fake_.CountOp(wooly::wire::Op::kGoodbye), 1u);
  // Only the Hello and the Goodbye: no shared-memory channel, no CUDA work.
  EXPECT_EQ(fake_.ops().size(), 2u);
}

TEST_F(NvmlViewTest, UnsetTenantSettingsAreNotSent) {
  ASSERT_EQ(NVML(nvmlInit)(), NVML_SUCCESS);
  ASSERT_EQ(fake_.hello_settings().size(), 1u);
  EXPECT_EQ(fake_.hello_settings()[0], (FakeWoolyd::Settings{{"role", "observer"}}));
}

TEST_F(NvmlViewTest, OneDeviceWithTheMarkedNameAndRealIdentity) {
  nvmlDevice_t dev = InitAndGetDevice();
  unsigned int count = 0;
  EXPECT_EQ(NVML(nvmlDeviceGetCount_v2)(&count), NVML_SUCCESS);
  EXPECT_EQ(count, 1u);
  EXPECT_EQ(NVML(nvmlDeviceGetCount)(&count), NVML_SUCCESS);
  EXPECT_EQ(count, 1u);
  nvmlDevice_t other = nullptr;
  EXPECT_EQ(NVML(nvmlDeviceGetHandleByIndex)(0, &other), NVML_SUCCESS);
  EXPECT_EQ(other, dev);
  EXPECT_EQ(NVML(nvmlDeviceGetHandleByIndex_v2)(1, &other), NVML_ERROR_INVALID_ARGUMENT);

  char name[NVML_DEVICE_NAME_V2_BUFFER_SIZE];
  ASSERT_EQ(NVML(nvmlDeviceGetName)(dev, name, sizeof(name)), NVML_SUCCESS);
  EXPECT_STREQ(name, "Wooly Fake GPU (Wooly)");
  EXPECT_EQ(NVML(nvmlDeviceGetName)(dev, name, 5), NVML_ERROR_INSUFFICIENT_SIZE);

  char uuid[NVML_DEVICE_UUID_V2_BUFFER_SIZE];
  ASSERT_EQ(NVML(nvmlDeviceGetUUID)(dev, uuid, sizeof(uuid)), NVML_SUCCESS);
  EXPECT_STREQ(uuid, "GPU-01020304-0506-0708-090a-0b0c0d0e0f10");
  EXPECT_EQ(NVML(nvmlDeviceGetUUID)(dev, uuid, 40), NVML_ERROR_INSUFFICIENT_SIZE);
  EXPECT_EQ(NVML(nvmlDeviceGetHandleByUUID)("GPU-01020304-0506-0708-090A-0B0C0D0E0F10", &other),
            NVML_SUCCESS);
  EXPECT_EQ(other, dev);
  EXPECT_EQ(NVML(nvmlDeviceGetHandleByUUID)("GPU-ffffffff-0506-0708-090a-0b0c0d0e0f10", &other),
            NVML_ERROR_NOT_FOUND);

  // The fake's device sits at PCI 0000:3b:00.0.
  for (const char* id : {"00000000:3B:00.0", "0000:3b:00.0", "3b:00.0", "0:3b:0"}) {
    other = nullptr;
    EXPECT_EQ(NVML(nvmlDeviceGetHandleByPciBusId_v2)(id, &other), NVML_SUCCESS) << id;
    EXPECT_EQ(other, dev) << id;
  }
  EXPECT_EQ(NVML(nvmlDeviceGetHandleByPciBusId)("0000:3b:00.0", &other), NVML_SUCCESS);
  EXPECT_EQ(NVML(nvmlDeviceGetHandleByPciBusId_v2)("0000:3c:00.0", &other), NVML_ERROR_NOT_FOUND);
  EXPECT_EQ(NVML(nvmlDeviceGetHandleByPciBusId_v2)("not a bus id", &other),
            NVML_ERROR_INVALID_ARGUMENT);

  nvmlPciInfo_t pci;
  std::memset(&pci, 0xab, sizeof(pci));
  ASSERT_EQ(NVML(nvmlDeviceGetPciInfo_v3)(dev, &pci), NVML_SUCCESS);
  EXPECT_STREQ(pci.busId, "00000000:3B:00.0");
  EXPECT_STREQ(pci.busIdLegacy, "0000:3B:00.0");
  EXPECT_EQ(pci.domain, 0u);
  EXPECT_EQ(pci.bus, 0x3bu);
  EXPECT_EQ(pci.device, 0u);
  EXPECT_EQ(pci.pciDeviceId & 0xffff, 0x10deu);  // NVIDIA's vendor id
  // The older entry points fill only the layout prefix they were built for.
  std::memset(&pci, 0xab, sizeof(pci));
  ASSERT_EQ(NVML(nvmlDeviceGetPciInfo)(dev, &pci), NVML_SUCCESS);
  EXPECT_STREQ(pci.busIdLegacy, "0000:3B:00.0");
  EXPECT_EQ(pci.bus, 0x3bu);
  EXPECT_EQ(static_cast<unsigned char>(pci.busId[0]), 0xabu);
  ASSERT_EQ(NVML(nvmlDeviceGetPciInfo_v2)(dev, &pci), NVML_SUCCESS);
  EXPECT_EQ(static_cast<unsigned char>(pci.busId[0]), 0xabu);

  nvmlPciInfoExt_t ext{};
  EXPECT_EQ(NVML(nvmlDeviceGetPciInfoExt)(dev, &ext), NVML_ERROR_ARGUMENT_VERSION_MISMATCH);
  ext.version = nvmlPciInfoExt_v1;
  ASSERT_EQ(NVML(nvmlDeviceGetPciInfoExt)(dev, &ext), NVML_SUCCESS);
  EXPECT_STREQ(ext.busId, "00000000:3B:00.0");

  int major = 0, minor = -1;
  ASSERT_EQ(NVML(nvmlDeviceGetCudaComputeCapability)(dev, &major, &minor), NVML_SUCCESS);
  EXPECT_EQ(major, 9);
  EXPECT_EQ(minor, 0);
  nvmlDeviceArchitecture_t arch = 0;
  ASSERT_EQ(NVML(nvmlDeviceGetArchitecture)(dev, &arch), NVML_SUCCESS);
  EXPECT_EQ(arch, static_cast<nvmlDeviceArchitecture_t>(NVML_DEVICE_ARCH_HOPPER));
  nvmlBrandType_t brand = NVML_BRAND_UNKNOWN;
  ASSERT_EQ(NVML(nvmlDeviceGetBrand)(dev, &brand), NVML_SUCCESS);
  EXPECT_EQ(brand, NVML_BRAND_NVIDIA);
  unsigned int index = 9, minor_number = 9;
  EXPECT_EQ(NVML(nvmlDeviceGetIndex)(dev, &index), NVML_SUCCESS);
  EXPECT_EQ(index, 0u);
  EXPECT_EQ(NVML(nvmlDeviceGetMinorNumber)(dev, &minor_number), NVML_SUCCESS);

  unsigned int current = 9, pending = 9;
  ASSERT_EQ(NVML(nvmlDeviceGetMigMode)(dev, &current, &pending), NVML_SUCCESS);
  EXPECT_EQ(current, static_cast<unsigned int>(NVML_DEVICE_MIG_DISABLE));
  EXPECT_EQ(pending, static_cast<unsigned int>(NVML_DEVICE_MIG_DISABLE));
  unsigned int is_mig = 9;
  EXPECT_EQ(NVML(nvmlDeviceIsMigDeviceHandle)(dev, &is_mig), NVML_SUCCESS);
  EXPECT_EQ(is_mig, 0u);
  nvmlEnableState_t persistence = NVML_FEATURE_DISABLED;
  EXPECT_EQ(NVML(nvmlDeviceGetPersistenceMode)(dev, &persistence), NVML_SUCCESS);
  EXPECT_EQ(persistence, NVML_FEATURE_ENABLED);
  nvmlComputeMode_t mode = NVML_COMPUTEMODE_PROHIBITED;
  EXPECT_EQ(NVML(nvmlDeviceGetComputeMode)(dev, &mode), NVML_SUCCESS);
  EXPECT_EQ(mode, NVML_COMPUTEMODE_DEFAULT);
}

TEST_F(NvmlViewTest, MarkerComesFromTheEnvironment) {
  setenv("WOOLY_NVML_MARKER", " [shared]", 1);
  nvmlDevice_t dev = InitAndGetDevice();
  char name[NVML_DEVICE_NAME_V2_BUFFER_SIZE];
  ASSERT_EQ(NVML(nvmlDeviceGetName)(dev, name, sizeof(name)), NVML_SUCCESS);
  EXPECT_STREQ(name, "Wooly Fake GPU [shared]");
  ASSERT_EQ(NVML(nvmlShutdown)(), NVML_SUCCESS);

  setenv("WOOLY_NVML_MARKER", "", 1);  // empty: the plain name
  dev = InitAndGetDevice();
  ASSERT_EQ(NVML(nvmlDeviceGetName)(dev, name, sizeof(name)), NVML_SUCCESS);
  EXPECT_STREQ(name, "Wooly Fake GPU");
}

TEST_F(NvmlViewTest, Versions) {
  ASSERT_EQ(NVML(nvmlInit_v2)(), NVML_SUCCESS);
  int cuda = 0;
  ASSERT_EQ(NVML(nvmlSystemGetCudaDriverVersion)(&cuda), NVML_SUCCESS);
  EXPECT_EQ(cuda, 13000);
  cuda = 0;
  ASSERT_EQ(NVML(nvmlSystemGetCudaDriverVersion_v2)(&cuda), NVML_SUCCESS);
  EXPECT_EQ(cuda, 13000);

  char driver[NVML_SYSTEM_DRIVER_VERSION_BUFFER_SIZE];
  ASSERT_EQ(NVML(nvmlSystemGetDriverVersion)(driver, sizeof(driver)), NVML_SUCCESS);
  if (access("/proc/driver/nvidia/version", R_OK) != 0) {
    // No driver on this node: the oldest driver of the reported CUDA version.
    EXPECT_STREQ(driver, "580.65.06");
  }
  EXPECT_EQ(NVML(nvmlSystemGetDriverVersion)(driver, 3), NVML_ERROR_INSUFFICIENT_SIZE);
  char nvml[NVML_SYSTEM_NVML_VERSION_BUFFER_SIZE];
  ASSERT_EQ(NVML(nvmlSystemGetNVMLVersion)(nvml, sizeof(nvml)), NVML_SUCCESS);
  EXPECT_EQ(std::string(nvml), std::string("13.") + driver);
}

TEST_F(NvmlViewTest, MemoryIsTheTenants) {
  fake_.set_tenant_view(TwoProcessView());
  nvmlDevice_t dev = InitAndGetDevice();

  nvmlMemory_t mem{};
  ASSERT_EQ(NVML(nvmlDeviceGetMemoryInfo)(dev, &mem), NVML_SUCCESS);
  EXPECT_EQ(mem.total, 20 * kGiB);
  EXPECT_EQ(mem.used, 5 * kGiB);
  EXPECT_EQ(mem.free, 15 * kGiB);

  nvmlMemory_v2_t mem2{};
  EXPECT_EQ(NVML(nvmlDeviceGetMemoryInfo_v2)(dev, &mem2), NVML_ERROR_ARGUMENT_VERSION_MISMATCH);
  mem2.version = nvmlMemory_v2;
  ASSERT_EQ(NVML(nvmlDeviceGetMemoryInfo_v2)(dev, &mem2), NVML_SUCCESS);
  EXPECT_EQ(mem2.total, 20 * kGiB);
  EXPECT_EQ(mem2.used, 5 * kGiB);
  EXPECT_EQ(mem2.free, 15 * kGiB);
  EXPECT_EQ(mem2.reserved, 0u);

  // Free never exceeds what the device really has left.
  FakeWoolyd::TenantViewReply v = TwoProcessView();
  v.device_free = 3 * kGiB;
  fake_.set_tenant_view(v);
  ASSERT_EQ(NVML(nvmlDeviceGetMemoryInfo)(dev, &mem), NVML_SUCCESS);
  EXPECT_EQ(mem.total, 20 * kGiB);
  EXPECT_EQ(mem.free, 3 * kGiB);

  // Over the limit (overcommitted): used is capped at total, free is 0.
  v.memory_used = 25 * kGiB;
  fake_.set_tenant_view(v);
  ASSERT_EQ(NVML(nvmlDeviceGetMemoryInfo)(dev, &mem), NVML_SUCCESS);
  EXPECT_EQ(mem.used, 20 * kGiB);
  EXPECT_EQ(mem.free, 0u);

  // No limit: the device's memory as total.
  v = TwoProcessView();
  v.memory_limit = 0;
  v.memory_total = 80 * kGiB;
  fake_.set_tenant_view(v);
  ASSERT_EQ(NVML(nvmlDeviceGetMemoryInfo)(dev, &mem), NVML_SUCCESS);
  EXPECT_EQ(mem.total, 80 * kGiB);
  EXPECT_EQ(mem.free, 50 * kGiB);
}

TEST_F(NvmlViewTest, UtilizationIsTheMeasuredShare) {
  FakeWoolyd::TenantViewReply v = TwoProcessView();
  fake_.set_tenant_view(v);
  nvmlDevice_t dev = InitAndGetDevice();
  nvmlUtilization_t u{7, 7};
  ASSERT_EQ(NVML(nvmlDeviceGetUtilizationRates)(dev, &u), NVML_SUCCESS);
  EXPECT_EQ(u.gpu, 43u);
  EXPECT_EQ(u.memory, 0u);
  v.measured_share = 1.7;  // never above 100 %
  fake_.set_tenant_view(v);
  ASSERT_EQ(NVML(nvmlDeviceGetUtilizationRates)(dev, &u), NVML_SUCCESS);
  EXPECT_EQ(u.gpu, 100u);
}

TEST_F(NvmlViewTest, ComputeProcessesAreTheTenants) {
  fake_.set_tenant_view(TwoProcessView());
  nvmlDevice_t dev = InitAndGetDevice();

  // The sizing call: count 0, no array.
  unsigned int count = 0;
  EXPECT_EQ(NVML(nvmlDeviceGetComputeRunningProcesses_v3)(dev, &count, nullptr),
            NVML_ERROR_INSUFFICIENT_SIZE);
  EXPECT_EQ(count, 2u);
  nvmlProcessInfo_t infos[4];
  count = 1;
  EXPECT_EQ(NVML(nvmlDeviceGetComputeRunningProcesses_v3)(dev, &count, infos),
            NVML_ERROR_INSUFFICIENT_SIZE);
  EXPECT_EQ(count, 2u);
  count = 4;
  ASSERT_EQ(NVML(nvmlDeviceGetComputeRunningProcesses_v3)(dev, &count, infos), NVML_SUCCESS);
  ASSERT_EQ(count, 2u);
  EXPECT_EQ(infos[0].pid, 100u);
  EXPECT_EQ(infos[0].usedGpuMemory, 1 * kGiB);
  EXPECT_EQ(infos[0].gpuInstanceId, 0xFFFFFFFFu);
  EXPECT_EQ(infos[0].computeInstanceId, 0xFFFFFFFFu);
  EXPECT_EQ(infos[1].pid, 200u);
  EXPECT_EQ(infos[1].usedGpuMemory, 4 * kGiB);

  nvmlProcessInfo_v2_t infos2[2];
  count = 2;
  ASSERT_EQ(NVML(nvmlDeviceGetComputeRunningProcesses_v2)(dev, &count, infos2), NVML_SUCCESS);
  EXPECT_EQ(infos2[1].pid, 200u);
  EXPECT_EQ(infos2[1].usedGpuMemory, 4 * kGiB);

  // The unversioned call uses the 16-byte v1 layout.
  nvmlProcessInfo_v1_t infos1[2];
  count = 2;
  ASSERT_EQ(NVML(nvmlDeviceGetComputeRunningProcesses)(dev, &count, infos1), NVML_SUCCESS);
  EXPECT_EQ(infos1[0].pid, 100u);
  EXPECT_EQ(infos1[1].pid, 200u);
  EXPECT_EQ(infos1[1].usedGpuMemory, 4 * kGiB);

  nvmlProcessDetail_v1_t details[2];
  nvmlProcessDetailList_t list{};
  list.version = nvmlProcessDetailList_v1;
  list.mode = NVML_PROCESS_MODE_COMPUTE;
  EXPECT_EQ(NVML(nvmlDeviceGetRunningProcessDetailList)(dev, &list), NVML_ERROR_INSUFFICIENT_SIZE);
  EXPECT_EQ(list.numProcArrayEntries, 2u);
  list.procArray = details;
  ASSERT_EQ(NVML(nvmlDeviceGetRunningProcessDetailList)(dev, &list), NVML_SUCCESS);
  EXPECT_EQ(details[1].pid, 200u);
  list.mode = NVML_PROCESS_MODE_GRAPHICS;
  ASSERT_EQ(NVML(nvmlDeviceGetRunningProcessDetailList)(dev, &list), NVML_SUCCESS);
  EXPECT_EQ(list.numProcArrayEntries, 0u);
  list.version = 1;
  EXPECT_EQ(NVML(nvmlDeviceGetRunningProcessDetailList)(dev, &list), NVML_ERROR_INVALID_ARGUMENT);

  char name[64];
  ASSERT_EQ(NVML(nvmlSystemGetProcessName)(200, name, sizeof(name)), NVML_SUCCESS);
  EXPECT_STREQ(name, "server");
  ASSERT_EQ(NVML(nvmlSystemGetProcessName)(200, name, 3), NVML_SUCCESS);
  EXPECT_STREQ(name, "se");  // cropped
  EXPECT_EQ(NVML(nvmlSystemGetProcessName)(0x7ffffff0, name, sizeof(name)), NVML_ERROR_NOT_FOUND);
}

TEST_F(NvmlViewTest, NoGraphicsOrMpsProcesses) {
  fake_.set_tenant_view(TwoProcessView());
  nvmlDevice_t dev = InitAndGetDevice();
  unsigned int count = 0;
  EXPECT_EQ(NVML(nvmlDeviceGetGraphicsRunningProcesses)(dev, &count, nullptr), NVML_SUCCESS);
  EXPECT_EQ(NVML(nvmlDeviceGetGraphicsRunningProcesses_v2)(dev, &count, nullptr), NVML_SUCCESS);
  EXPECT_EQ(NVML(nvmlDeviceGetGraphicsRunningProcesses_v3)(dev, &count, nullptr), NVML_SUCCESS);
  EXPECT_EQ(NVML(nvmlDeviceGetMPSComputeRunningProcesses_v3)(dev, &count, nullptr), NVML_SUCCESS);
  nvmlProcessInfo_t infos[2];
  count = 2;
  EXPECT_EQ(NVML(nvmlDeviceGetMPSComputeRunningProcesses_v3)(dev, &count, infos), NVML_SUCCESS);
  EXPECT_EQ(count, 0u);

  // An empty tenant: compute processes are none too.
  FakeWoolyd::TenantViewReply v = TwoProcessView();
  v.processes.clear();
  fake_.set_tenant_view(v);
  count = 0;
  EXPECT_EQ(NVML(nvmlDeviceGetComputeRunningProcesses_v3)(dev, &count, nullptr), NVML_SUCCESS);
  EXPECT_EQ(count, 0u);
}

TEST_F(NvmlViewTest, InvalidArguments) {
  nvmlDevice_t dev = InitAndGetDevice();
  EXPECT_EQ(NVML(nvmlDeviceGetCount_v2)(nullptr), NVML_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(NVML(nvmlDeviceGetHandleByIndex_v2)(0, nullptr), NVML_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(NVML(nvmlDeviceGetHandleByUUID)(nullptr, &dev), NVML_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(NVML(nvmlDeviceGetHandleByPciBusId_v2)(nullptr, &dev), NVML_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(NVML(nvmlDeviceGetName)(dev, nullptr, 96), NVML_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(NVML(nvmlDeviceGetUUID)(dev, nullptr, 96), NVML_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(NVML(nvmlDeviceGetMemoryInfo)(dev, nullptr), NVML_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(NVML(nvmlDeviceGetMemoryInfo_v2)(dev, nullptr), NVML_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(NVML(nvmlDeviceGetUtilizationRates)(dev, nullptr), NVML_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(NVML(nvmlDeviceGetPciInfo_v3)(dev, nullptr), NVML_ERROR_INVALID_ARGUMENT);
  int major = 0;
  EXPECT_EQ(NVML(nvmlDeviceGetCudaComputeCapability)(dev, &major, nullptr),
            NVML_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(NVML(nvmlDeviceGetComputeRunningProcesses_v3)(dev, nullptr, nullptr),
            NVML_ERROR_INVALID_ARGUMENT);
  unsigned int count = 3;
  EXPECT_EQ(NVML(nvmlDeviceGetComputeRunningProcesses_v3)(dev, &count, nullptr),
            NVML_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(NVML(nvmlDeviceGetMigMode)(dev, nullptr, &count), NVML_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(NVML(nvmlDeviceGetBrand)(dev, nullptr), NVML_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(NVML(nvmlSystemGetDriverVersion)(nullptr, 80), NVML_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(NVML(nvmlSystemGetCudaDriverVersion_v2)(nullptr), NVML_ERROR_INVALID_ARGUMENT);
  char name[8];
  EXPECT_EQ(NVML(nvmlSystemGetProcessName)(1, name, 0), NVML_ERROR_INVALID_ARGUMENT);
  unsigned long cpus[1];
  EXPECT_EQ(NVML(nvmlDeviceGetCpuAffinity)(dev, 0, cpus), NVML_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(NVML(nvmlDeviceGetCpuAffinity)(dev, 1, nullptr), NVML_ERROR_INVALID_ARGUMENT);

  // A handle this library did not give out.
  int not_a_device = 0;
  nvmlDevice_t bogus = reinterpret_cast<nvmlDevice_t>(&not_a_device);
  nvmlMemory_t mem;
  EXPECT_EQ(NVML(nvmlDeviceGetMemoryInfo)(bogus, &mem), NVML_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(NVML(nvmlDeviceGetName)(bogus, name, sizeof(name)), NVML_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(NVML(nvmlDeviceGetName)(nullptr, name, sizeof(name)), NVML_ERROR_INVALID_ARGUMENT);

  // Everything answers UNINITIALIZED once shut down, even a kept handle.
  ASSERT_EQ(NVML(nvmlShutdown)(), NVML_SUCCESS);
  EXPECT_EQ(NVML(nvmlDeviceGetMemoryInfo)(dev, &mem), NVML_ERROR_UNINITIALIZED);
  EXPECT_EQ(NVML(nvmlDeviceGetHandleByIndex_v2)(0, &dev), NVML_ERROR_UNINITIALIZED);
  EXPECT_EQ(NVML(nvmlSystemGetDriverVersion)(name, sizeof(name)), NVML_ERROR_UNINITIALIZED);
}

TEST_F(NvmlViewTest, ShutdownIsReferenceCounted) {
  ASSERT_EQ(NVML(nvmlInit_v2)(), NVML_SUCCESS);
  ASSERT_EQ(NVML(nvmlInitWithFlags)(0), NVML_SUCCESS);
  EXPECT_EQ(fake_.CountOp(wooly::wire::Op::kHello), 1u);  // one session for both

  unsigned int count = 0;
  EXPECT_EQ(NVML(nvmlShutdown)(), NVML_SUCCESS);
  EXPECT_EQ(NVML(nvmlDeviceGetCount_v2)(&count), NVML_SUCCESS);  // still initialized
  EXPECT_EQ(count, 1u);
  EXPECT_EQ(fake_.CountOp(wooly::wire::Op::kGoodbye), 0u);

  EXPECT_EQ(NVML(nvmlShutdown)(), NVML_SUCCESS);
  EXPECT_EQ(fake_.CountOp(wooly::wire::Op::kGoodbye), 1u);
  EXPECT_EQ(NVML(nvmlDeviceGetCount_v2)(&count), NVML_ERROR_UNINITIALIZED);
  EXPECT_EQ(NVML(nvmlShutdown)(), NVML_ERROR_UNINITIALIZED);

  // And it comes back: a new session.
  ASSERT_EQ(NVML(nvmlInit)(), NVML_SUCCESS);
  EXPECT_EQ(fake_.CountOp(wooly::wire::Op::kHello), 2u);
}

TEST_F(NvmlViewTest, TenantViewIsCachedForTheWindow) {
  setenv("WOOLY_NVML_CACHE_MS", "3600000", 1);  // an hour: the test never outlives it
  fake_.set_tenant_view(TwoProcessView());
  nvmlDevice_t dev = InitAndGetDevice();
  nvmlMemory_t mem;
  nvmlUtilization_t u;
  ASSERT_EQ(NVML(nvmlDeviceGetMemoryInfo)(dev, &mem), NVML_SUCCESS);
  ASSERT_EQ(NVML(nvmlDeviceGetUtilizationRates)(dev, &u), NVML_SUCCESS);
  ASSERT_EQ(NVML(nvmlDeviceGetMemoryInfo)(dev, &mem), NVML_SUCCESS);
  EXPECT_EQ(fake_.CountOp(wooly::wire::Op::kTenantView), 1u);
  ASSERT_EQ(NVML(nvmlShutdown)(), NVML_SUCCESS);

  setenv("WOOLY_NVML_CACHE_MS", "0", 1);  // 0: every query asks
  dev = InitAndGetDevice();
  fake_.ClearOps();
  ASSERT_EQ(NVML(nvmlDeviceGetMemoryInfo)(dev, &mem), NVML_SUCCESS);
  ASSERT_EQ(NVML(nvmlDeviceGetMemoryInfo)(dev, &mem), NVML_SUCCESS);
  EXPECT_EQ(fake_.CountOp(wooly::wire::Op::kTenantView), 2u);
}

TEST_F(NvmlViewTest, OlderWoolydWithoutTenantViewStillGivesMemory) {
  fake_.set_tenant_view_unsupported(true);
  nvmlDevice_t dev = InitAndGetDevice();
  ::testing::internal::CaptureStderr();
  nvmlMemory_t mem;
  ASSERT_EQ(NVML(nvmlDeviceGetMemoryInfo)(dev, &mem), NVML_SUCCESS);
  ::testing::internal::GetCapturedStderr();
  // The fake's kMemGetInfo: half of 16 GiB free.
  EXPECT_EQ(mem.total, FakeWoolyd::kTotalMem);
  EXPECT_EQ(mem.used, FakeWoolyd::kTotalMem / 2);
  EXPECT_EQ(mem.free, FakeWoolyd::kTotalMem / 2);
  nvmlUtilization_t u;
  EXPECT_EQ(NVML(nvmlDeviceGetUtilizationRates)(dev, &u), NVML_ERROR_NOT_SUPPORTED);
  unsigned int count = 0;
  EXPECT_EQ(NVML(nvmlDeviceGetComputeRunningProcesses_v3)(dev, &count, nullptr),
            NVML_ERROR_NOT_SUPPORTED);
}

TEST_F(NvmlViewTest, ReconnectsOnceWhenTheConnectionBreaks) {
  fake_.set_tenant_view(TwoProcessView());
  nvmlDevice_t dev = InitAndGetDevice();
  fake_.DropOnNextRequest();
  ::testing::internal::CaptureStderr();
  nvmlMemory_t mem;
  ASSERT_EQ(NVML(nvmlDeviceGetMemoryInfo)(dev, &mem), NVML_SUCCESS);
  ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(mem.total, 20 * kGiB);
  EXPECT_EQ(fake_.CountOp(wooly::wire::Op::kHello), 2u);
}

TEST_F(NvmlViewTest, ForkedChildOpensItsOwnSession) {
  fake_.set_tenant_view(TwoProcessView());
  nvmlDevice_t dev = InitAndGetDevice();
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    nvmlMemory_t mem;
    const bool ok = NVML(nvmlDeviceGetMemoryInfo)(dev, &mem) == NVML_SUCCESS &&
                    mem.total == 20 * kGiB && NVML(nvmlShutdown)() == NVML_SUCCESS;
    _exit(ok ? 0 : 1);
  }
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  const std::vector<uint32_t> pids = fake_.hello_pids();
  ASSERT_EQ(pids.size(), 2u);
  EXPECT_EQ(pids[1], static_cast<uint32_t>(child));
  // The parent's session is untouched.
  nvmlMemory_t mem;
  ASSERT_EQ(NVML(nvmlDeviceGetMemoryInfo)(dev, &mem), NVML_SUCCESS);
  EXPECT_EQ(mem.total, 20 * kGiB);
}

TEST_F(NvmlViewTest, LoneGpuTopology) {
  nvmlDevice_t dev = InitAndGetDevice();
  nvmlGpuP2PStatus_t p2p = NVML_P2P_STATUS_OK;
  ASSERT_EQ(NVML(nvmlDeviceGetP2PStatus)(dev, dev, NVML_P2P_CAPS_INDEX_NVLINK, &p2p), NVML_SUCCESS);
  EXPECT_EQ(p2p, NVML_P2P_STATUS_NOT_SUPPORTED);
  EXPECT_EQ(NVML(nvmlDeviceGetP2PStatus)(dev, dev, NVML_P2P_CAPS_INDEX_UNKNOWN, &p2p),
            NVML_ERROR_INVALID_ARGUMENT);
  nvmlEnableState_t link = NVML_FEATURE_ENABLED;
  EXPECT_EQ(NVML(nvmlDeviceGetNvLinkState)(dev, 0, &link), NVML_ERROR_NOT_SUPPORTED);
  EXPECT_EQ(NVML(nvmlDeviceGetNvLinkState)(dev, NVML_NVLINK_MAX_LINKS, &link),
            NVML_ERROR_INVALID_ARGUMENT);
  nvmlGpuTopologyLevel_t level = NVML_TOPOLOGY_SYSTEM;
  ASSERT_EQ(NVML(nvmlDeviceGetTopologyCommonAncestor)(dev, dev, &level), NVML_SUCCESS);
  EXPECT_EQ(level, NVML_TOPOLOGY_INTERNAL);
  unsigned int count = 0;
  ASSERT_EQ(NVML(nvmlDeviceGetTopologyNearestGpus)(dev, NVML_TOPOLOGY_SYSTEM, &count, nullptr),
            NVML_SUCCESS);
  EXPECT_EQ(count, 0u);

  unsigned long cpus[4] = {0, 0, 0, 0};
  ASSERT_EQ(NVML(nvmlDeviceGetCpuAffinity)(dev, 4, cpus), NVML_SUCCESS);
  const long n = sysconf(_SC_NPROCESSORS_CONF);
  for (long cpu = 0; cpu < 4 * 64; ++cpu) {
    EXPECT_EQ((cpus[cpu / 64] >> (cpu % 64)) & 1, cpu < n ? 1u : 0u) << "cpu " << cpu;
  }
  EXPECT_EQ(NVML(nvmlDeviceGetCpuAffinityWithinScope)(dev, 4, cpus, NVML_AFFINITY_SCOPE_SOCKET),
            NVML_SUCCESS);
  EXPECT_EQ(NVML(nvmlDeviceGetCpuAffinityWithinScope)(dev, 4, cpus, 7),
            NVML_ERROR_INVALID_ARGUMENT);
}

TEST_F(NvmlViewTest, OtherEntryPointsExistAndAreNotSupported) {
  nvmlDevice_t dev = InitAndGetDevice();
  using Query = nvmlReturn_t(nvmlDevice_t, unsigned int*);
  for (const char* name : {"nvmlDeviceGetPowerUsage", "nvmlDeviceGetFanSpeed",
                           "nvmlDeviceGetEnforcedPowerLimit", "nvmlDeviceGetNumGpuCores"}) {
    void* p = Symbol(name);
    ASSERT_NE(p, nullptr) << name;
    unsigned int out = 0;
    EXPECT_EQ(reinterpret_cast<Query*>(p)(dev, &out), NVML_ERROR_NOT_SUPPORTED) << name;
  }
  // What vLLM's platform detection, PyTorch's c10 and pynvml's usual
  // helpers look up.
  for (const char* name : {"nvmlInit_v2",
                           "nvmlInitWithFlags",
                           "nvmlShutdown",
                           "nvmlDeviceGetCount_v2",
                           "nvmlDeviceGetHandleByIndex_v2",
                           "nvmlDeviceGetCudaComputeCapability",
                           "nvmlDeviceGetName",
                           "nvmlDeviceGetUUID",
                           "nvmlDeviceGetMemoryInfo",
                           "nvmlDeviceGetP2PStatus",
                           "nvmlDeviceGetHandleByPciBusId_v2",
                           "nvmlDeviceGetNvLinkRemoteDeviceType",
                           "nvmlDeviceGetNvLinkRemotePciInfo_v2",
                           "nvmlDeviceGetComputeRunningProcesses",
                           "nvmlSystemGetCudaDriverVersion_v2",
                           "nvmlDeviceGetGpuFabricInfoV",
                           "nvmlDeviceGetTemperature",
                           "nvmlDeviceGetClockInfo",
                           "nvmlInternalGetExportTable",
                           "nvmlErrorString"}) {
    EXPECT_NE(Symbol(name), nullptr) << name;
  }
}

TEST_F(NvmlViewTest, ErrorStrings) {
  for (int r = 0; r <= 29; ++r) {
    const char* s = NVML(nvmlErrorString)(static_cast<nvmlReturn_t>(r));
    ASSERT_NE(s, nullptr);
    EXPECT_STRNE(s, "Unknown Error") << r;
  }
  EXPECT_STREQ(NVML(nvmlErrorString)(NVML_SUCCESS), "Success");
  EXPECT_STREQ(NVML(nvmlErrorString)(static_cast<nvmlReturn_t>(12345)), "Unknown Error");
}

}  // namespace
