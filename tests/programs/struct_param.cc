// struct_param: a kernel taking a 32-byte struct by value (with padding
// between its int and pointer members), launched with kernelParams.
#include <cuda.h>

#include <cstdio>
#include <vector>

#include "common.h"

using namespace wooly_test;

namespace {

// Must match `struct Affine` in tests/kernels/test_kernels.cu.
struct Affine {
  float scale;
  float bias;
  int n;
  CUdeviceptr in;
  CUdeviceptr out;
};
static_assert(sizeof(Affine) == 32);

constexpr int kN = 100003;
constexpr unsigned kBlock = 128;

}  // namespace

int main(int argc, char** argv) {
  Init(argc, argv, "struct_param");
  CUmodule mod = LoadModule(argv[1]);
  CUfunction f;
  CHECK_CU(cuModuleGetFunction(&f, mod, "affine"));

  std::vector<float> in(kN), out(kN);
  for (int i = 0; i < kN; ++i) in[i] = static_cast<float>(i - 1000);
  DeviceBuffer din(kN * sizeof(float)), dout(kN * sizeof(float));
  CHECK_CU(cuMemcpyHtoD(din.get(), in.data(), kN * sizeof(float)));

  // Values chosen so that in * scale + bias is exact with or without FMA.
  const struct { float scale, bias; } cases[] = {{0.5f, 3.0f}, {-2.0f, 0.25f}, {4.0f, -1024.0f}};
  for (const auto& c : cases) {
    CHECK_CU(cuMemsetD32(dout.get(), 0, kN));
    Affine args{c.scale, c.bias, kN, din.get(), dout.get()};
    void* params[] = {&args};
    CHECK_CU(
        cuLaunchKernel(f, Blocks(kN, kBlock), 1, 1, kBlock, 1, 1, 0, nullptr, params, nullptr));
    CHECK_CU(cuMemcpyDtoH(out.data(), dout.get(), kN * sizeof(float)));
    double sum = 0;
    for (int i = 0; i < kN; ++i) {
      const float want = in[i] * c.scale + c.bias;
      if (out[i] != want) {
        Fail("out[" + std::to_string(i) + "] = " + std::to_string(out[i]) + ", want " +
             std::to_string(want));
      }
      sum += out[i];
    }
    std::printf("affine scale=%g bias=%g n=%d ok, sum=%.1f\n", c.scale, c.bias, kN, sum);
  }

  // Covering only part of the range leaves the rest alone.
  CHECK_CU(cuMemsetD32(dout.get(), 0, kN));
  Affine half{1.0f, 1.0f, kN / 2, din.get(), dout.get()};
  void* params[] = {&half};
  CHECK_CU(cuLaunchKernel(f, Blocks(kN, kBlock), 1, 1, kBlock, 1, 1, 0, nullptr, params, nullptr));
  CHECK_CU(cuMemcpyDtoH(out.data(), dout.get(), kN * sizeof(float)));
  for (int i = 0; i < kN; ++i) {
    const float want = i < kN / 2 ? in[i] + 1.0f : 0.0f;
    CHECK_TRUE(out[i] == want, "partial affine at " + std::to_string(i));
  }
  std::printf("affine n=%d of %d ok\n", kN / 2, kN);

  CHECK_CU(cuModuleUnload(mod));
  Pass();
  return 0;
}
