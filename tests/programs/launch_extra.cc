// launch_extra: saxpy launched with a hand-packed `extra` parameter buffer,
// through cuLaunchKernel and cuLaunchKernelEx (with a launch attribute), and
// once more with kernelParams through cuLaunchKernelEx.
#include <cuda.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <vector>

#include "common.h"

using namespace wooly_test;

namespace {

constexpr int kN = 65537;
constexpr unsigned kBlock = 256;

// saxpy(float a, const float* x, float* y, int n) as the ABI lays it out:
// a at 0, 4 bytes of padding, x at 8, y at 16, n at 24; 28 bytes in all.
struct PackedArgs {
  alignas(8) uint8_t bytes[32];
  size_t size;
};

PackedArgs Pack(float a, CUdeviceptr x, CUdeviceptr y, int n) {
  PackedArgs p{};
  size_t off = 0;
  auto put = [&](const void* v, size_t size, size_t align) {
    off = (off + align - 1) / align * align;
    std::memcpy(p.bytes + off, v, size);
    off += size;
  };
  put(&a, sizeof(a), alignof(float));
  put(&x, sizeof(x), alignof(CUdeviceptr));
  put(&y, sizeof(y), alignof(CUdeviceptr));
  put(&n, sizeof(n), alignof(int));
  p.size = off;
  return p;
}

void Check(CUdeviceptr y, std::vector<float>& expect, const char* label) {
  std::vector<float> got(kN);
  CHECK_CU(cuMemcpyDtoH(got.data(), y, kN * sizeof(float)));
  for (int i = 0; i < kN; ++i) {
    if (got[i] != expect[i]) {
      Fail(std::string(label) + ": y[" + std::to_string(i) + "] = " + std::to_string(got[i]) +
           ", want " + std::to_string(expect[i]));
    }
  }
  std::printf("%s ok\n", label);
}

}  // namespace

int main(int argc, char** argv) {
  Init(argc, argv, "launch_extra");
  CUmodule mod = LoadModule(argv[1]);
  CUfunction f;
  CHECK_CU(cuModuleGetFunction(&f, mod, "saxpy"));

  std::vector<float> x(kN), y(kN, 1.0f);
  for (int i = 0; i < kN; ++i) x[i] = static_cast<float>(i % 4096);
  DeviceBuffer dx(kN * sizeof(float)), dy(kN * sizeof(float));
  CHECK_CU(cuMemcpyHtoD(dx.get(), x.data(), kN * sizeof(float)));
  CHECK_CU(cuMemcpyHtoD(dy.get(), y.data(), kN * sizeof(float)));
  auto step = [&](float a) {
    for (int i = 0; i < kN; ++i) y[i] = a * x[i] + y[i];  // exact for these values
  };

  // 1. cuLaunchKernel with extra.
  PackedArgs p = Pack(2.0f, dx.get(), dy.get(), kN);
  std::printf("packed parameter buffer: %zu bytes\n", p.size);
  void* extra[] = {CU_LAUNCH_PARAM_BUFFER_POINTER, p.bytes, CU_LAUNCH_PARAM_BUFFER_SIZE, &p.size,
                   CU_LAUNCH_PARAM_END};
  CHECK_CU(cuLaunchKernel(f, Blocks(kN, kBlock), 1, 1, kBlock, 1, 1, 0, nullptr, nullptr, extra));
  step(2.0f);
  Check(dy.get(), y, "cuLaunchKernel extra a=2");

  // 2. cuLaunchKernelEx with extra, on a stream, with a priority attribute.
  CUstream stream;
  CHECK_CU(cuStreamCreate(&stream, CU_STREAM_NON_BLOCKING));
  p = Pack(-1.0f, dx.get(), dy.get(), kN);
  void* extra2[] = {CU_LAUNCH_PARAM_BUFFER_POINTER, p.bytes, CU_LAUNCH_PARAM_BUFFER_SIZE, &p.size,
                    CU_LAUNCH_PARAM_END};
  CUlaunchAttribute attr;
  std::memset(&attr, 0, sizeof(attr));
  attr.id = CU_LAUNCH_ATTRIBUTE_PRIORITY;
  attr.value.priority = 0;
  CUlaunchConfig cfg;
  std::memset(&cfg, 0, sizeof(cfg));
  cfg.gridDimX = Blocks(kN, kBlock);
  cfg.gridDimY = cfg.gridDimZ = 1;
  cfg.blockDimX = kBlock;
  cfg.blockDimY = cfg.blockDimZ = 1;
  cfg.hStream = stream;
  cfg.attrs = &attr;
  cfg.numAttrs = 1;
  CHECK_CU(cuLaunchKernelEx(&cfg, f, nullptr, extra2));
  CHECK_CU(cuStreamSynchronize(stream));
  step(-1.0f);
  Check(dy.get(), y, "cuLaunchKernelEx extra a=-1");

  // 3. cuLaunchKernelEx with kernelParams and no attributes.
  float a = 3.0f;
  CUdeviceptr px = dx.get(), py = dy.get();
  int n = kN;
  void* params[] = {&a, &px, &py, &n};
  cfg.attrs = nullptr;
  cfg.numAttrs = 0;
  CHECK_CU(cuLaunchKernelEx(&cfg, f, params, nullptr));
  CHECK_CU(cuStreamSynchronize(stream));
  step(3.0f);
  Check(dy.get(), y, "cuLaunchKernelEx kernelParams a=3");

  CHECK_CU(cuStreamDestroy(stream));
  CHECK_CU(cuModuleUnload(mod));
  Pass();
  return 0;
}
