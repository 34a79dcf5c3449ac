// A stand-in for NVIDIA's own libnvidia-ml.so.1 (smi_nvml_test): the public
// calls wooly-smi makes, with fixed figures and nothing of Wooly's in it, so
// that wooly-smi must take it for a non-Wooly library.
#include <cstring>

#include "nvml_types.h"

namespace {
int fake_device;
nvmlReturn_t Copy(const char* s, char* buf, unsigned int length) {
  if (std::strlen(s) + 1 > length) return NVML_ERROR_INSUFFICIENT_SIZE;
  std::memcpy(buf, s, std::strlen(s) + 1);
  return NVML_SUCCESS;
}
}  // namespace

extern "C" {
nvmlReturn_t nvmlInit_v2(void) { return NVML_SUCCESS; }
nvmlReturn_t nvmlShutdown(void) { return NVML_SUCCESS; }
nvmlReturn_t nvmlSystemGetDriverVersion(char* v, unsigned int n) { return Copy("580.1.2", v, n); }
nvmlReturn_t nvmlDeviceGetCount_v2(unsigned int* count) {
  *count = 1;
  return NVML_SUCCESS;
}
nvmlReturn_t nvmlDeviceGetHandleByIndex_v2(unsigned int index, nvmlDevice_t* device) {
  if (index != 0) return NVML_ERROR_INVALID_ARGUMENT;
  *device = reinterpret_cast<nvmlDevice_t>(&fake_device);
  return NVML_SUCCESS;
}
nvmlReturn_t nvmlDeviceGetName(nvmlDevice_t, char* name, unsigned int n) {
  return Copy("Plain Test GPU", name, n);
}
nvmlReturn_t nvmlDeviceGetUUID(nvmlDevice_t, char* uuid, unsigned int n) {
  return Copy("GPU-00000000-0000-0000-0000-000000000001", uuid, n);
}
nvmlReturn_t nvmlDeviceGetMemoryInfo(nvmlDevice_t, nvmlMemory_t* m) {
  m->total = 8192ull << 20;
  m->used = 1024ull << 20;
  m->free = 7168ull << 20;
  return NVML_SUCCESS;
}
}
