// error_cases: the CUresult names the driver returns for common mistakes.
// Every case expects the result the CUDA documentation gives (and a native
// driver returns); the GPU suite additionally diffs the native and Wooly
// output. Only well-defined, non-sticky errors are exercised: nothing here
// may fault the context, which the last check proves still works.
#include <cuda.h>

#include <cstdio>
#include <cstring>
#include <vector>

#include "common.h"

using namespace wooly_test;

namespace {

int g_failures = 0;

void Expect(const char* what, CUresult got, CUresult want) {
  if (got == want) {
    std::printf("%s: %s\n", what, ResultName(got).c_str());
  } else {
    std::printf("%s: %s (expected %s)\n", what, ResultName(got).c_str(), ResultName(want).c_str());
    ++g_failures;
  }
}

// An address no allocation can have: the first page is never mapped.
constexpr CUdeviceptr kBogus = 0x10;

}  // namespace

int main(int argc, char** argv) {
  ProgramName() = "error_cases";
  if (argc < 2) Fail("usage: error_cases <module image>");
  const std::vector<char> image = ReadImage(argv[1]);

  // Before cuInit.
  CUdeviceptr p = 0;
  int count = 0;
  Expect("cuMemAlloc before cuInit", cuMemAlloc(&p, 16), CUDA_ERROR_NOT_INITIALIZED);
  Expect("cuDeviceGetCount before cuInit", cuDeviceGetCount(&count), CUDA_ERROR_NOT_INITIALIZED);
  CHECK_CU(cuInit(0));

  CUdevice dev;
  Expect("cuDeviceGet(9999)", cuDeviceGet(&dev, 9999), CUDA_ERROR_INVALID_DEVICE);
  CHECK_CU(cuDeviceGet(&dev, 0));
  const char* name = nullptr;
  Expect("cuGetErrorName(9999)", cuGetErrorName(static_cast<CUresult>(9999), &name),
         CUDA_ERROR_INVALID_VALUE);

  // No context current yet.
  Expect("cuCtxGetDevice without a context", cuCtxGetDevice(&dev), CUDA_ERROR_INVALID_CONTEXT);
  Expect("cuMemAlloc without a context", cuMemAlloc(&p, 16), CUDA_ERROR_INVALID_CONTEXT);

  CUcontext ctx;
  CHECK_CU(cuDevicePrimaryCtxRetain(&ctx, dev));
  CHECK_CU(cuCtxSetCurrent(ctx));
  CUdevice current = -1;
  Expect("cuCtxGetDevice with a context", cuCtxGetDevice(&current), CUDA_SUCCESS);

  // Memory.
  Expect("cuMemAlloc(0 bytes)", cuMemAlloc(&p, 0), CUDA_ERROR_INVALID_VALUE);
  Expect("cuMemAlloc(1 PiB)", cuMemAlloc(&p, size_t{1} << 50), CUDA_ERROR_OUT_OF_MEMORY);
  char host[64] = {};
  Expect("cuMemcpyHtoD to an invalid pointer", cuMemcpyHtoD(kBogus, host, sizeof(host)),
         CUDA_ERROR_INVALID_VALUE);
  Expect("cuMemcpyDtoH from an invalid pointer", cuMemcpyDtoH(host, kBogus, sizeof(host)),
         CUDA_ERROR_INVALID_VALUE);
  Expect("cuMemsetD32 on an invalid pointer", cuMemsetD32(kBogus, 0, 4), CUDA_ERROR_INVALID_VALUE);
  Expect("cuMemFree of an invalid pointer", cuMemFree(kBogus), CUDA_ERROR_INVALID_VALUE);
  Expect("cuMemFree of NULL", cuMemFree(0), CUDA_SUCCESS);
  DeviceBuffer buf(4096);
  Expect("cuMemFree inside an allocation", cuMemFree(buf.get() + 256), CUDA_ERROR_INVALID_VALUE);

  // Modules and launches.
  CUmodule mod;
  CHECK_CU(cuModuleLoadData(&mod, image.data()));
  CUfunction f;
  Expect("cuModuleGetFunction of an unknown name", cuModuleGetFunction(&f, mod, "no_such_kernel"),
         CUDA_ERROR_NOT_FOUND);
  CUdeviceptr g = 0;
  size_t g_bytes = 0;
  Expect("cuModuleGetGlobal of an unknown name",
         cuModuleGetGlobal(&g, &g_bytes, mod, "no_such_global"), CUDA_ERROR_NOT_FOUND);
  CHECK_CU(cuModuleGetFunction(&f, mod, "fill_u32"));
  CUdeviceptr dptr = buf.get();
  unsigned v = 1;
  int n = 1024;
  void* args[] = {&dptr, &v, &n};
  Expect("cuLaunchKernel with 2048 threads per block",
         cuLaunchKernel(f, 1, 1, 1, 2048, 1, 1, 0, nullptr, args, nullptr),
         CUDA_ERROR_INVALID_VALUE);

  // Events never recorded cannot be timed.
  CUevent e1, e2;
  CHECK_CU(cuEventCreate(&e1, CU_EVENT_DEFAULT));
  CHECK_CU(cuEventCreate(&e2, CU_EVENT_DEFAULT));
  float ms = 0;
  Expect("cuEventElapsedTime of unrecorded events", cuEventElapsedTime(&ms, e1, e2),
         CUDA_ERROR_INVALID_HANDLE);
  CHECK_CU(cuEventDestroy(e1));
  CHECK_CU(cuEventDestroy(e2));

  // None of the above may have broken the context.
  CHECK_CU(cuLaunchKernel(f, 4, 1, 1, 256, 1, 1, 0, nullptr, args, nullptr));
  std::vector<unsigned> back(1024);
  CHECK_CU(cuMemcpyDtoH(back.data(), buf.get(), 4096));
  for (unsigned x : back) CHECK_TRUE(x == 1, "context unusable after the error cases");
  std::printf("context still usable: yes\n");
  CHECK_CU(cuModuleUnload(mod));

  if (g_failures != 0) Fail(std::to_string(g_failures) + " unexpected results");
  Pass();
  return 0;
}
