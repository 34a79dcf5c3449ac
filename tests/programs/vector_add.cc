// vector_add: c = a + b through a module function, a library kernel launched
// by its CUkernel handle, and the kernel's CUfunction.
#include <cuda.h>

#include <cstdio>
#include <vector>

#include "common.h"

using namespace wooly_test;

namespace {

constexpr int kN = (1 << 20) + 3;  // not a multiple of the block size
constexpr unsigned kBlock = 256;

void RunAndCheck(CUfunction f, const char* label, CUdeviceptr a, CUdeviceptr b, CUdeviceptr c,
                 float scale) {
  CHECK_CU(cuMemsetD32(c, 0, kN));
  int n = kN;
  void* params[] = {&a, &b, &c, &n};
  CHECK_CU(cuLaunchKernel(f, Blocks(kN, kBlock), 1, 1, kBlock, 1, 1, 0, nullptr, params, nullptr));
  CHECK_CU(cuCtxSynchronize());
  std::vector<float> out(kN);
  CHECK_CU(cuMemcpyDtoH(out.data(), c, kN * sizeof(float)));
  for (int i = 0; i < kN; ++i) {
    // a[i] = i * scale, b[i] = 2 * i * scale: exact in float for these sizes.
    const float want = 3.0f * static_cast<float>(i) * scale;
    if (out[i] != want) {
      Fail(std::string(label) + ": c[" + std::to_string(i) + "] = " + std::to_string(out[i]) +
           ", want " + std::to_string(want));
    }
  }
  std::printf("vector_add %s n=%d ok\n", label, kN);
}

}  // namespace

int main(int argc, char** argv) {
  Init(argc, argv, "vector_add");
  const std::vector<char> image = ReadImage(argv[1]);

  std::vector<float> ha(kN), hb(kN);
  for (int i = 0; i < kN; ++i) {
    ha[i] = static_cast<float>(i);
    hb[i] = 2.0f * static_cast<float>(i);
  }
  DeviceBuffer a(kN * sizeof(float)), b(kN * sizeof(float)), c(kN * sizeof(float));
  CHECK_CU(cuMemcpyHtoD(a.get(), ha.data(), kN * sizeof(float)));
  CHECK_CU(cuMemcpyHtoD(b.get(), hb.data(), kN * sizeof(float)));

  // Module path.
  CUmodule mod;
  CHECK_CU(cuModuleLoadData(&mod, image.data()));
  CUfunction f;
  CHECK_CU(cuModuleGetFunction(&f, mod, "vector_add"));
  int max_threads = 0;
  CHECK_CU(cuFuncGetAttribute(&max_threads, CU_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK, f));
  CHECK_TRUE(max_threads >= static_cast<int>(kBlock), "max threads per block too small");
  std::printf("max_threads_per_block >= %u: yes\n", kBlock);
  unsigned count = 0;
  CHECK_CU(cuModuleGetFunctionCount(&count, mod));
  std::printf("module function count: %u\n", count);
  RunAndCheck(f, "module", a.get(), b.get(), c.get(), 1.0f);

  // Library path: launch by CUkernel handle, then by its CUfunction.
  CUlibrary lib;
  CHECK_CU(cuLibraryLoadData(&lib, image.data(), nullptr, nullptr, 0, nullptr, nullptr, 0));
  CUkernel k;
  CHECK_CU(cuLibraryGetKernel(&k, lib, "vector_add"));
  // Scale the inputs so a stale result from the module run cannot pass.
  for (int i = 0; i < kN; ++i) {
    ha[i] *= 2.0f;
    hb[i] *= 2.0f;
  }
  CHECK_CU(cuMemcpyHtoD(a.get(), ha.data(), kN * sizeof(float)));
  CHECK_CU(cuMemcpyHtoD(b.get(), hb.data(), kN * sizeof(float)));
  RunAndCheck(reinterpret_cast<CUfunction>(k), "library-kernel", a.get(), b.get(), c.get(), 2.0f);
  CUfunction kf;
  CHECK_CU(cuKernelGetFunction(&kf, k));
  RunAndCheck(kf, "kernel-function", a.get(), b.get(), c.get(), 2.0f);

  CHECK_CU(cuLibraryUnload(lib));
  CHECK_CU(cuModuleUnload(mod));
  Pass();
  return 0;
}
