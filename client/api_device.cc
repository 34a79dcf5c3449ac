// Entry points answered locally from the Hello's DeviceInfo: cuInit, the
// driver version, devices and their attributes, error strings, and the
// module loading mode.
#include <strings.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "api.h"
#include "driver.h"
#include "error_strings.h"

namespace wooly::client {
namespace {

CUresult CheckDevice(CUdevice dev) {
  if (!Initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  if (dev != 0) return CUDA_ERROR_INVALID_DEVICE;
  return CUDA_SUCCESS;
}

int Attr(CUdevice_attribute a) {
  const std::vector<int32_t>& attrs = Device().attributes;
  const int i = static_cast<int>(a);
  return i >= 0 && static_cast<size_t>(i) < attrs.size() ? attrs[i] : 0;
}

void FormatPciBusId(char* out, size_t len) {
  std::snprintf(out, len, "%04x:%02x:%02x.0",
                static_cast<unsigned>(Attr(CU_DEVICE_ATTRIBUTE_PCI_DOMAIN_ID)),
                static_cast<unsigned>(Attr(CU_DEVICE_ATTRIBUTE_PCI_BUS_ID)),
                static_cast<unsigned>(Attr(CU_DEVICE_ATTRIBUTE_PCI_DEVICE_ID)));
}

// Parses "[domain:]bus:device[.function]" (hex) as the driver accepts it.
bool ParsePciBusId(const char* s, unsigned* domain, unsigned* bus, unsigned* device) {
  unsigned a = 0, b = 0, c = 0, f = 0;
  char tail = 0;
  if (std::sscanf(s, "%x:%x:%x.%x%c", &a, &b, &c, &f, &tail) == 4 ||
      std::sscanf(s, "%x:%x:%x%c", &a, &b, &c, &tail) == 3) {
    *domain = a;
    *bus = b;
    *device = c;
    return true;
  }
  if (std::sscanf(s, "%x:%x.%x%c", &b, &c, &f, &tail) == 3 ||
      std::sscanf(s, "%x:%x%c", &b, &c, &tail) == 2) {
    *domain = 0;
    *bus = b;
    *device = c;
    return true;
  }
  return false;
}

}  // namespace
}  // namespace wooly::client

using namespace wooly::client;  // NOLINT: the C entry points live at global scope
namespace wire = ::wooly::wire;

WOOLY_EXPORT CUresult CUDAAPI cuInit(unsigned int Flags) {
  WOOLY_API_BODY(return Initialize(Flags););
}

WOOLY_EXPORT CUresult CUDAAPI cuDriverGetVersion(int* driverVersion) {
  WOOLY_API_BODY({
    // Like the real driver this works before cuInit.
    if (driverVersion == nullptr) return CUDA_ERROR_INVALID_VALUE;
    *driverVersion = DriverVersion();
    return CUDA_SUCCESS;
  });
}

WOOLY_EXPORT CUresult CUDAAPI cuDeviceGet(CUdevice* device, int ordinal) {
  WOOLY_API_BODY({
    if (!Initialized()) return CUDA_ERROR_NOT_INITIALIZED;
    if (device == nullptr) return CUDA_ERROR_INVALID_VALUE;
    if (ordinal != 0) return CUDA_ERROR_INVALID_DEVICE;
    *device = 0;
    return CUDA_SUCCESS;
  });
}

WOOLY_EXPORT CUresult CUDAAPI cuDeviceGetCount(int* count) {
  WOOLY_API_BODY({
    if (!Initialized()) return CUDA_ERROR_NOT_INITIALIZED;
    if (count == nullptr) return CUDA_ERROR_INVALID_VALUE;
    *count = 1;
    return CUDA_SUCCESS;
  });
}

WOOLY_EXPORT CUresult CUDAAPI cuDeviceGetName(char* name, int len, CUdevice dev) {
  WOOLY_API_BODY({
    if (CUresult r = CheckDevice(dev); r != CUDA_SUCCESS) return r;
    if (name == nullptr || len <= 0) return CUDA_ERROR_INVALID_VALUE;
    const std::string& n = Device().name;
    const size_t copy = std::min(n.size(), static_cast<size_t>(len) - 1);
    std::memcpy(name, n.data(), copy);
    name[copy] = '\0';
    return CUDA_SUCCESS;
  });
}

static CUresult GetUuid(CUuuid* uuid, CUdevice dev) {
  if (CUresult r = CheckDevice(dev); r != CUDA_SUCCESS) return r;
  if (uuid == nullptr) return CUDA_ERROR_INVALID_VALUE;
  std::memcpy(uuid->bytes, Device().uuid, sizeof(uuid->bytes));
  return CUDA_SUCCESS;
}

WOOLY_EXPORT CUresult CUDAAPI cuDeviceGetUuid(CUuuid* uuid, CUdevice dev) {
  WOOLY_API_BODY(return GetUuid(uuid, dev););
}

WOOLY_EXPORT CUresult CUDAAPI cuDeviceGetUuid_v2(CUuuid* uuid, CUdevice dev) {
  WOOLY_API_BODY(return GetUuid(uuid, dev););
}

WOOLY_EXPORT CUresult CUDAAPI cuDeviceTotalMem_v2(size_t* bytes, CUdevice dev) {
  WOOLY_API_BODY({
    if (CUresult r = CheckDevice(dev); r != CUDA_SUCCESS) return r;
    if (bytes == nullptr) return CUDA_ERROR_INVALID_VALUE;
    *bytes = static_cast<size_t>(Device().total_mem);
    return CUDA_SUCCESS;
  });
}

WOOLY_EXPORT CUresult CUDAAPI cuDeviceGetAttribute(int* pi, CUdevice_attribute attrib,
                                                   CUdevice dev) {
  WOOLY_API_BODY({
    if (CUresult r = CheckDevice(dev); r != CUDA_SUCCESS) return r;
    if (pi == nullptr) return CUDA_ERROR_INVALID_VALUE;
    const std::vector<int32_t>& attrs = Device().attributes;
    const int i = static_cast<int>(attrib);
    if (i < 0 || i >= CU_DEVICE_ATTRIBUTE_MAX || static_cast<size_t>(i) >= attrs.size()) {
      return CUDA_ERROR_INVALID_VALUE;
    }
    *pi = attrs[static_cast<size_t>(i)];
    return CUDA_SUCCESS;
  });
}

WOOLY_EXPORT CUresult CUDAAPI cuDeviceGetProperties(CUdevprop* prop, CUdevice dev) {
  WOOLY_API_BODY({
    if (CUresult r = CheckDevice(dev); r != CUDA_SUCCESS) return r;
    if (prop == nullptr) return CUDA_ERROR_INVALID_VALUE;
    prop->maxThreadsPerBlock = Attr(CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_BLOCK);
    prop->maxThreadsDim[0] = Attr(CU_DEVICE_ATTRIBUTE_MAX_BLOCK_DIM_X);
    prop->maxThreadsDim[1] = Attr(CU_DEVICE_ATTRIBUTE_MAX_BLOCK_DIM_Y);
    prop->maxThreadsDim[2] = Attr(CU_DEVICE_ATTRIBUTE_MAX_BLOCK_DIM_Z);
    prop->maxGridSize[0] = Attr(CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_X);
    prop->maxGridSize[1] = Attr(CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_Y);
    prop->maxGridSize[2] = Attr(CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_Z);
    prop->sharedMemPerBlock = Attr(CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK);
    prop->totalConstantMemory = Attr(CU_DEVICE_ATTRIBUTE_TOTAL_CONSTANT_MEMORY);
    prop->SIMDWidth = Attr(CU_DEVICE_ATTRIBUTE_WARP_SIZE);
    prop->memPitch = Attr(CU_DEVICE_ATTRIBUTE_MAX_PITCH);
    prop->regsPerBlock = Attr(CU_DEVICE_ATTRIBUTE_MAX_REGISTERS_PER_BLOCK);
    prop->clockRate = Attr(CU_DEVICE_ATTRIBUTE_CLOCK_RATE);
    prop->textureAlign = Attr(CU_DEVICE_ATTRIBUTE_TEXTURE_ALIGNMENT);
    return CUDA_SUCCESS;
  });
}

WOOLY_EXPORT CUresult CUDAAPI cuDeviceComputeCapability(int* major, int* minor, CUdevice dev) {
  WOOLY_API_BODY({
    if (CUresult r = CheckDevice(dev); r != CUDA_SUCCESS) return r;
    if (major == nullptr || minor == nullptr) return CUDA_ERROR_INVALID_VALUE;
    *major = Attr(CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR);
    *minor = Attr(CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR);
    return CUDA_SUCCESS;
  });
}

WOOLY_EXPORT CUresult CUDAAPI cuDeviceGetPCIBusId(char* pciBusId, int len, CUdevice dev) {
  WOOLY_API_BODY({
    if (CUresult r = CheckDevice(dev); r != CUDA_SUCCESS) return r;
    if (pciBusId == nullptr || len <= 0) return CUDA_ERROR_INVALID_VALUE;
    FormatPciBusId(pciBusId, static_cast<size_t>(len));
    return CUDA_SUCCESS;
  });
}

WOOLY_EXPORT CUresult CUDAAPI cuDeviceGetByPCIBusId(CUdevice* dev, const char* pciBusId) {
  WOOLY_API_BODY({
    if (!Initialized()) return CUDA_ERROR_NOT_INITIALIZED;
    if (dev == nullptr || pciBusId == nullptr) return CUDA_ERROR_INVALID_VALUE;
    unsigned domain = 0, bus = 0, device = 0;
    if (!ParsePciBusId(pciBusId, &domain, &bus, &device)) return CUDA_ERROR_INVALID_VALUE;
    if (domain != static_cast<unsigned>(Attr(CU_DEVICE_ATTRIBUTE_PCI_DOMAIN_ID)) ||
        bus != static_cast<unsigned>(Attr(CU_DEVICE_ATTRIBUTE_PCI_BUS_ID)) ||
        device != static_cast<unsigned>(Attr(CU_DEVICE_ATTRIBUTE_PCI_DEVICE_ID))) {
      return CUDA_ERROR_INVALID_DEVICE;
    }
    *dev = 0;
    return CUDA_SUCCESS;
  });
}

WOOLY_EXPORT CUresult CUDAAPI cuGetErrorString(CUresult error, const char** pStr) {
  WOOLY_API_BODY({
    if (pStr == nullptr) return CUDA_ERROR_INVALID_VALUE;
    *pStr = CuResultString(error);
    return *pStr != nullptr ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
  });
}

WOOLY_EXPORT CUresult CUDAAPI cuGetErrorName(CUresult error, const char** pStr) {
  WOOLY_API_BODY({
    if (pStr == nullptr) return CUDA_ERROR_INVALID_VALUE;
    *pStr = CuResultName(error);
    return *pStr != nullptr ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
  });
}

WOOLY_EXPORT CUresult CUDAAPI cuModuleGetLoadingMode(CUmoduleLoadingMode* mode) {
  WOOLY_API_BODY({
    if (!Initialized()) return CUDA_ERROR_NOT_INITIALIZED;
    if (mode == nullptr) return CUDA_ERROR_INVALID_VALUE;
    // Modules are loaded by woolyd; report what the application asked for.
    const char* env = std::getenv("CUDA_MODULE_LOADING");
    *mode = env != nullptr && strcasecmp(env, "LAZY") == 0 ? CU_MODULE_LAZY_LOADING
                                                           : CU_MODULE_EAGER_LOADING;
    return CUDA_SUCCESS;
  });
}
