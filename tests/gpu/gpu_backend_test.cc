// CudaBackend on a real GPU (label gpu; every test skips without one):
// large staged copies, memsets, and the nvcc-built test kernels, whose
// parameter layouts must be exactly those the fake kernels declare (so the
// CI runs against the fake exercise the same argument packing as a GPU).
//
// The kernel images come from $WOOLY_TEST_KERNELS_DIR, else the build tree.
#include <cuda.h>

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "wooly/fake/fake_backend.h"
#include "wooly/fake/fake_kernels.h"
#include "wooly/server/cu_status.h"
#include "wooly/server/cuda_backend.h"

namespace wooly::server {
namespace {

std::string KernelsDir() {
  if (const char* d = std::getenv("WOOLY_TEST_KERNELS_DIR"); d && *d) return d;
  return WOOLY_TEST_KERNELS_DIR_DEFAULT;
}

std::vector<uint8_t> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
}

// One backend for the whole binary, as in woolyd; never destroyed (the
// driver stays loaded for the life of the process anyway).
absl::StatusOr<std::unique_ptr<GpuBackend>>& SharedBackend() {
  static auto* backend = new absl::StatusOr<std::unique_ptr<GpuBackend>>(CreateCudaBackend(0));
  return *backend;
}

class GpuBackendTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto& b = SharedBackend();
    if (!b.ok()) GTEST_SKIP() << "no usable GPU: " << b.status();
    backend_ = b->get();
    ASSERT_TRUE(backend_->BindThread().ok());
  }

  GpuBackend* backend_ = nullptr;
};

TEST_F(GpuBackendTest, DeviceInfo) {
  auto info = backend_->GetDeviceInfo();
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_FALSE(info->name.empty());
  EXPECT_GT(info->total_mem, 0u);
  EXPECT_GE(info->driver_version, 12040);
  ASSERT_EQ(info->attributes.size(), static_cast<size_t>(CU_DEVICE_ATTRIBUTE_MAX));
  EXPECT_GE(info->attributes[CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR], 9);
  EXPECT_EQ(info->attributes[CU_DEVICE_ATTRIBUTE_WARP_SIZE], 32);
  EXPECT_LE(info->stream_priority_greatest, info->stream_priority_least);
}

TEST_F(GpuBackendTest, StagedCopiesRoundTrip) {
  constexpr uint64_t kSize = (300u << 20) + 7;
  // Two buffers: DtoD between overlapping ranges is undefined in CUDA.
  auto dev = backend_->MemAlloc(kSize + 64);
  ASSERT_TRUE(dev.ok()) << dev.status();
  auto dev2 = backend_->MemAlloc(kSize + 64);
  ASSERT_TRUE(dev2.ok()) << dev2.status();
  std::vector<uint8_t> src(kSize), back(kSize);
  for (uint64_t i = 0; i < kSize; ++i) src[i] = static_cast<uint8_t>(i * 7 + (i >> 16));
  for (bool async : {false, true}) {
    auto stream = backend_->StreamCreate(CU_STREAM_NON_BLOCKING, 0);
    ASSERT_TRUE(stream.ok());
    std::fill(back.begin(), back.end(), 0);
    ASSERT_TRUE(backend_->MemcpyHtoD(*dev + 3, src.data(), kSize, *stream, async).ok());
    ASSERT_TRUE(backend_->MemcpyDtoD(*dev2 + 32, *dev + 3, kSize, *stream, async).ok());
    ASSERT_TRUE(backend_->MemcpyDtoH(back.data(), *dev2 + 32, kSize, *stream, async).ok());
    EXPECT_EQ(std::memcmp(back.data(), src.data(), kSize), 0) << "async=" << async;
    ASSERT_TRUE(backend_->StreamDestroy(*stream).ok());
  }
  ASSERT_TRUE(backend_->MemFree(*dev).ok());
  ASSERT_TRUE(backend_->MemFree(*dev2).ok());
}

TEST_F(GpuBackendTest, MemsetAndErrors) {
  auto dev = backend_->MemAlloc(4096);
  ASSERT_TRUE(dev.ok());
  ASSERT_TRUE(backend_->Memset(*dev, 0, 0xa1b2c3d4, 4, 1024, 1, 0, false).ok());
  ASSERT_TRUE(backend_->Memset(*dev + 64, 128, 0x55, 1, 16, 4, 0, true).ok());
  ASSERT_TRUE(backend_->StreamSynchronize(0).ok());
  std::vector<uint8_t> out(4096);
  ASSERT_TRUE(backend_->MemcpyDtoH(out.data(), *dev, 4096, 0, false).ok());
  EXPECT_EQ(out[0], 0xd4);
  EXPECT_EQ(out[64], 0x55);
  EXPECT_EQ(out[64 + 16], 0xd4);
  EXPECT_EQ(out[64 + 3 * 128 + 15], 0x55);
  ASSERT_TRUE(backend_->MemFree(*dev).ok());

  EXPECT_EQ(ToCuResult(backend_->MemAlloc(uint64_t{1} << 50).status()), CUDA_ERROR_OUT_OF_MEMORY);
  EXPECT_EQ(ToCuResult(backend_->MemFree(0x10)), CUDA_ERROR_INVALID_VALUE);
}

class GpuKernelsTest : public GpuBackendTest, public ::testing::WithParamInterface<const char*> {};

// Parameter layouts of every test kernel, from the module and from the
// library path, equal the fake kernels' declared layouts.
TEST_P(GpuKernelsTest, LayoutsMatchTheFakeKernels) {
  const std::vector<uint8_t> image = ReadFile(KernelsDir() + "/" + GetParam());
  if (image.empty()) GTEST_SKIP() << "no " << GetParam() << " in " << KernelsDir();
  fake::RegisterTestKernels();

  auto mod = backend_->ModuleLoadData(image);
  ASSERT_TRUE(mod.ok()) << mod.status();
  auto lib = backend_->LibraryLoadData(image);
  ASSERT_TRUE(lib.ok()) << lib.status();
  EXPECT_EQ(*backend_->ModuleGetFunctionCount(*mod), fake::TestKernelNames().size());
  for (const std::string& name : fake::TestKernelNames()) {
    SCOPED_TRACE(name);
    std::optional<fake::FakeKernel> want = fake::FindFakeKernel(name);
    ASSERT_TRUE(want.has_value());
    auto f = backend_->ModuleGetFunction(*mod, name);
    ASSERT_TRUE(f.ok()) << f.status();
    auto layout = backend_->FuncGetParamLayout(*f);
    ASSERT_TRUE(layout.ok()) << layout.status();
    ASSERT_EQ(layout->size(), want->params.size());
    for (size_t i = 0; i < layout->size(); ++i) {
      EXPECT_EQ((*layout)[i].offset, want->params[i].offset) << "param " << i;
      EXPECT_EQ((*layout)[i].size, want->params[i].size) << "param " << i;
    }
    auto k = backend_->LibraryGetKernel(*lib, name);
    ASSERT_TRUE(k.ok()) << k.status();
    auto klayout = backend_->FuncGetParamLayout(*k);
    ASSERT_TRUE(klayout.ok()) << klayout.status();
    EXPECT_EQ(klayout->size(), want->params.size());
  }
  for (const char* global : {"g_counter", "g_table"}) {
    auto g = backend_->ModuleGetGlobal(*mod, global);
    ASSERT_TRUE(g.ok()) << g.status();
    EXPECT_EQ(g->size, std::string(global) == "g_counter" ? 4u : 1024u);
  }
  EXPECT_TRUE(backend_->LibraryUnload(*lib).ok());
  EXPECT_TRUE(backend_->ModuleUnload(*mod).ok());
}

// vector_add through the backend's packed-buffer launch, module and library.
TEST_P(GpuKernelsTest, PackedLaunch) {
  const std::vector<uint8_t> image = ReadFile(KernelsDir() + "/" + GetParam());
  if (image.empty()) GTEST_SKIP() << "no " << GetParam() << " in " << KernelsDir();
  constexpr int kN = 10007;
  auto lib = backend_->LibraryLoadData(image);
  ASSERT_TRUE(lib.ok()) << lib.status();
  auto kernel = backend_->LibraryGetKernel(*lib, "vector_add");
  ASSERT_TRUE(kernel.ok());
  auto a = backend_->MemAlloc(kN * 4), b = backend_->MemAlloc(kN * 4),
       c = backend_->MemAlloc(kN * 4);
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  std::vector<float> ha(kN), hb(kN), hc(kN);
  for (int i = 0; i < kN; ++i) {
    ha[i] = static_cast<float>(i);
    hb[i] = static_cast<float>(3 * i);
  }
  ASSERT_TRUE(backend_->MemcpyHtoD(*a, ha.data(), kN * 4, 0, false).ok());
  ASSERT_TRUE(backend_->MemcpyHtoD(*b, hb.data(), kN * 4, 0, false).ok());
  std::vector<uint8_t> args(28);
  const int32_t n = kN;
  std::memcpy(args.data() + 0, &*a, 8);
  std::memcpy(args.data() + 8, &*b, 8);
  std::memcpy(args.data() + 16, &*c, 8);
  std::memcpy(args.data() + 24, &n, 4);
  LaunchConfig cfg;
  cfg.grid[0] = (kN + 127) / 128;
  cfg.block[0] = 128;
  ASSERT_TRUE(backend_->LaunchKernel(*kernel, cfg, args).ok());
  ASSERT_TRUE(backend_->MemcpyDtoH(hc.data(), *c, kN * 4, 0, false).ok());
  for (int i = 0; i < kN; ++i) ASSERT_EQ(hc[i], 4.0f * i) << i;
  for (auto p : {*a, *b, *c}) ASSERT_TRUE(backend_->MemFree(p).ok());
  EXPECT_TRUE(backend_->LibraryUnload(*lib).ok());
}

INSTANTIATE_TEST_SUITE_P(Images, GpuKernelsTest,
                         ::testing::Values("test_kernels.fatbin", "test_kernels.cubin"));

}  // namespace
}  // namespace wooly::server
