// CudaBackend without a GPU: driver loading failures, and the backend's own
// logic against a stand-in driver (cuda_backend_test_driver.cc).
#include "wooly/server/cuda_backend.h"

#include <dlfcn.h>
#include <stdlib.h>

#include <cstring>
#include <memory>
#include <numeric>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "wooly/server/cu_status.h"

namespace wooly::server {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

// Points the backend at `path` for the lifetime of the object.
class ScopedDriverPath {
 public:
  explicit ScopedDriverPath(const char* path) { ::setenv(kEnvRealLibcuda, path, 1); }
  ~ScopedDriverPath() { ::unsetenv(kEnvRealLibcuda); }
};

TEST(CudaBackendLoadTest, MissingDriverFailsCleanly) {
  ScopedDriverPath env("/nonexistent/libcuda.so.1");
  auto backend = CreateCudaBackend(0);
  ASSERT_FALSE(backend.ok());
  EXPECT_EQ(backend.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(backend.status().message()), HasSubstr("/nonexistent/libcuda.so.1"));
  EXPECT_THAT(std::string(backend.status().message()), HasSubstr(kEnvRealLibcuda));
}

TEST(CudaBackendLoadTest, StubLibraryFailsCleanly) {
  if (::access(WOOLY_CUDA_STUB, R_OK) != 0) GTEST_SKIP() << "no CUDA stub library";
  ScopedDriverPath env(WOOLY_CUDA_STUB);
  auto backend = CreateCudaBackend(0);
  ASSERT_FALSE(backend.ok());
  EXPECT_THAT(std::string(backend.status().message()), HasSubstr("stub"));
}

TEST(CudaBackendLoadTest, RefusesWoolysOwnLibrary) {
  ScopedDriverPath env(WOOLY_TEST_WOOLY_LIB);
  auto backend = CreateCudaBackend(0);
  ASSERT_FALSE(backend.ok());
  EXPECT_THAT(std::string(backend.status().message()), HasSubstr("Wooly's client library"));
}

TEST(CudaBackendLoadTest, NegativeOrdinalIsInvalidDevice) {
  auto backend = CreateCudaBackend(-1);
  ASSERT_FALSE(backend.ok());
  EXPECT_EQ(ToCuResult(backend.status()), CUDA_ERROR_INVALID_DEVICE);
}

TEST(CudaBackendLoadTest, UnknownOrdinalIsInvalidDevice) {
  ScopedDriverPath env(WOOLY_TEST_DRIVER);
  auto backend = CreateCudaBackend(3);
  ASSERT_FALSE(backend.ok());
  EXPECT_EQ(ToCuResult(backend.status()), CUDA_ERROR_INVALID_DEVICE);
}

// The stand-in driver's introspection hooks.
class MockDriver {
 public:
  MockDriver() {
    handle_ = ::dlopen(WOOLY_TEST_DRIVER, RTLD_NOW | RTLD_LOCAL);
    get_ = reinterpret_cast<int64_t (*)(const char*)>(::dlsym(handle_, "mock_get"));
    args_ = reinterpret_cast<const uint8_t* (*)(size_t*)>(::dlsym(handle_, "mock_last_args"));
  }
  ~MockDriver() { ::dlclose(handle_); }
  int64_t Get(const char* key) const { return get_(key); }
  std::vector<uint8_t> LastArgs() const {
    size_t n = 0;
    const uint8_t* p = args_(&n);
    return std::vector<uint8_t>(p, p + n);
  }

 private:
  void* handle_ = nullptr;
  int64_t (*get_)(const char*) = nullptr;
  const uint8_t* (*args_)(size_t*) = nullptr;
};

class CudaBackendTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ScopedDriverPath env(WOOLY_TEST_DRIVER);
    auto b = CreateCudaBackend(0);
    ASSERT_TRUE(b.ok()) << b.status();
    backend_ = *std::move(b);
    ASSERT_TRUE(backend_->BindThread().ok());
  }

  std::unique_ptr<GpuBackend> backend_;
  MockDriver mock_;
};

TEST_F(CudaBackendTest, DeviceInfo) {
  auto info = backend_->GetDeviceInfo();
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(backend_->Name(), "cuda");
  EXPECT_EQ(info->name, "Mock GPU");
  EXPECT_EQ(info->uuid[0], 1);
  EXPECT_EQ(info->uuid[15], 16);
  EXPECT_EQ(info->total_mem, uint64_t{1} << 30);
  EXPECT_EQ(info->driver_version, 13000);
  ASSERT_EQ(info->attributes.size(), static_cast<size_t>(CU_DEVICE_ATTRIBUTE_MAX));
  EXPECT_EQ(info->attributes[0], 0);
  EXPECT_EQ(info->attributes[1], 10);
  EXPECT_EQ(info->attributes[7], 0);  // rejected by the driver
  EXPECT_EQ(info->attributes[8], 80);
  EXPECT_EQ(info->stream_priority_least, 0);
  EXPECT_EQ(info->stream_priority_greatest, -5);
}

TEST_F(CudaBackendTest, ErrorsCarryTheDriversResult) {
  auto p = backend_->MemAlloc(0);
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(ToCuResult(p.status()), CUDA_ERROR_INVALID_VALUE);
  EXPECT_THAT(std::string(p.status().message()), HasSubstr("cuMemAlloc"));
  EXPECT_THAT(std::string(p.status().message()), HasSubstr("CUDA_ERROR_INVALID_VALUE"));
  EXPECT_EQ(ToCuResult(backend_->MemFree(12345)), CUDA_ERROR_INVALID_VALUE);
}

// Large copies go through pinned staging in chunks; every byte must arrive,
// including at unaligned offsets and a size that is not a chunk multiple.
TEST_F(CudaBackendTest, LargeCopiesRoundTripThroughStaging) {
  constexpr uint64_t kSize = (70u << 20) + 3;
  auto dev = backend_->MemAlloc(kSize + 16);
  ASSERT_TRUE(dev.ok());
  std::vector<uint8_t> src(kSize), back(kSize + 1, 0);
  for (uint64_t i = 0; i < kSize; ++i) src[i] = static_cast<uint8_t>(i * 131 + (i >> 20));

  const int64_t allocs_at_start = mock_.Get("host_allocs");
  const int64_t htod_sync_at_start = mock_.Get("htod_sync");
  for (bool async : {false, true}) {
    std::fill(back.begin(), back.end(), 0);
    const int64_t allocs_before = mock_.Get("host_allocs");
    ASSERT_TRUE(backend_->MemcpyHtoD(*dev + 5, src.data(), kSize, 0, async).ok());
    ASSERT_TRUE(backend_->MemcpyDtoH(back.data() + 1, *dev + 5, kSize, 0, async).ok());
    EXPECT_EQ(std::memcmp(back.data() + 1, src.data(), kSize), 0) << "async=" << async;
    EXPECT_EQ(back[0], 0);
    // Staging buffers are reused: at most one slot (two buffers) is made.
    EXPECT_LE(mock_.Get("host_allocs") - allocs_before, 2);
  }
  EXPECT_EQ(mock_.Get("host_allocs") - allocs_at_start, 2);
  // Staged copies are chunked async copies.
  EXPECT_EQ(mock_.Get("htod_sync"), htod_sync_at_start);
  ASSERT_TRUE(backend_->MemFree(*dev).ok());
}

TEST_F(CudaBackendTest, SmallCopiesGoDirect) {
  auto dev = backend_->MemAlloc(64);
  ASSERT_TRUE(dev.ok());
  const char msg[] = "hello";
  char out[sizeof(msg)] = {};
  const int64_t htod_sync = mock_.Get("htod_sync");
  const int64_t htod_async = mock_.Get("htod_async");
  const int64_t dtoh_async = mock_.Get("dtoh_async");
  ASSERT_TRUE(backend_->MemcpyHtoD(*dev, msg, sizeof(msg), 0, false).ok());
  ASSERT_TRUE(backend_->MemcpyDtoD(*dev + 32, *dev, sizeof(msg), 0, true).ok());
  ASSERT_TRUE(backend_->MemcpyDtoH(out, *dev + 32, sizeof(msg), 0, true).ok());
  EXPECT_STREQ(out, "hello");
  // A synchronous copy is issued on the client's stream (then waited for),
  // never through the driver's legacy-stream synchronous call.
  EXPECT_EQ(mock_.Get("htod_sync") - htod_sync, 0);
  EXPECT_EQ(mock_.Get("htod_async") - htod_async, 1);
  EXPECT_EQ(mock_.Get("dtoh_async") - dtoh_async, 1);
  ASSERT_TRUE(backend_->MemFree(*dev).ok());
}

TEST_F(CudaBackendTest, MemsetWidths) {
  auto dev = backend_->MemAlloc(256);
  ASSERT_TRUE(dev.ok());
  std::vector<uint8_t> out(256);
  ASSERT_TRUE(backend_->Memset(*dev, 0, 0xab, 1, 256, 1, 0, false).ok());
  ASSERT_TRUE(backend_->Memset(*dev, 0, 0x1234, 2, 2, 1, 0, true).ok());
  ASSERT_TRUE(backend_->Memset(*dev + 8, 0, 0xdeadbeef, 4, 1, 1, 0, false).ok());
  // Two rows of 2 u32 with a 32-byte pitch, from offset 64.
  ASSERT_TRUE(backend_->Memset(*dev + 64, 32, 0x01020304, 4, 2, 2, 0, true).ok());
  ASSERT_TRUE(backend_->MemcpyDtoH(out.data(), *dev, 256, 0, false).ok());
  EXPECT_THAT(
      std::vector<uint8_t>(out.begin(), out.begin() + 13),
      ElementsAre(0x34, 0x12, 0x34, 0x12, 0xab, 0xab, 0xab, 0xab, 0xef, 0xbe, 0xad, 0xde, 0xab));
  EXPECT_EQ(out[64], 0x04);
  EXPECT_EQ(out[71], 0x01);
  EXPECT_EQ(out[72], 0xab);  // past the row width
  EXPECT_EQ(out[96], 0x04);  // second row
  EXPECT_EQ(out[104], 0xab);
  EXPECT_EQ(ToCuResult(backend_->Memset(*dev, 0, 0, 3, 1, 1, 0, false)), CUDA_ERROR_INVALID_VALUE);
  ASSERT_TRUE(backend_->MemFree(*dev).ok());
}

// Host sides travel packed; device sides keep their own pitch and offsets.
TEST_F(CudaBackendTest, Memcpy3DPackedHostSides) {
  auto dev = backend_->MemAlloc(4 * 64);  // 4 rows of pitch 64
  ASSERT_TRUE(dev.ok());
  ASSERT_TRUE(backend_->Memset(*dev, 0, 0, 1, 256, 1, 0, false).ok());
  std::vector<uint8_t> rows(3 * 10);
  std::iota(rows.begin(), rows.end(), 1);

  Copy3DParams up;
  std::memset(&up.geometry, 0, sizeof(up.geometry));
  up.geometry.src_kind = static_cast<uint8_t>(wire::MemKind::kHost);
  up.geometry.dst_kind = static_cast<uint8_t>(wire::MemKind::kDevice);
  up.geometry.dst_ptr = *dev;
  up.geometry.dst_x_bytes = 4;
  up.geometry.dst_y = 1;
  up.geometry.dst_pitch = 64;
  up.geometry.dst_height = 4;
  up.geometry.width_bytes = 10;
  up.geometry.height = 3;
  up.geometry.depth = 1;
  up.src_host = rows.data();
  ASSERT_TRUE(backend_->Memcpy3D(up, 0, /*async=*/true).ok());

  std::vector<uint8_t> all(256);
  ASSERT_TRUE(backend_->MemcpyDtoH(all.data(), *dev, 256, 0, false).ok());
  EXPECT_EQ(all[64 + 3], 0);
  EXPECT_EQ(all[64 + 4], 1);
  EXPECT_EQ(all[64 + 13], 10);
  EXPECT_EQ(all[128 + 4], 11);
  EXPECT_EQ(all[192 + 13], 30);

  Copy3DParams down;
  down.geometry = up.geometry;
  std::swap(down.geometry.src_kind, down.geometry.dst_kind);
  down.geometry.src_ptr = *dev;
  down.geometry.src_x_bytes = 4;
  down.geometry.src_y = 1;
  down.geometry.src_pitch = 64;
  down.geometry.src_height = 4;
  std::vector<uint8_t> back(rows.size());
  down.dst_host = back.data();
  ASSERT_TRUE(backend_->Memcpy3D(down, 0, /*async=*/false).ok());
  EXPECT_EQ(back, rows);

  Copy3DParams bad = up;
  bad.src_host = nullptr;
  EXPECT_EQ(ToCuResult(backend_->Memcpy3D(bad, 0, false)), CUDA_ERROR_INVALID_VALUE);
  bad = up;
  bad.geometry.src_kind = 9;
  EXPECT_EQ(ToCuResult(backend_->Memcpy3D(bad, 0, false)), CUDA_ERROR_INVALID_VALUE);
  ASSERT_TRUE(backend_->MemFree(*dev).ok());
}

TEST_F(CudaBackendTest, ModuleFunctionsAndLaunch) {
  const std::string image = "MOCK";  // no NUL: the backend terminates it
  auto mod = backend_->ModuleLoadData(
      absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(image.data()), image.size()));
  ASSERT_TRUE(mod.ok()) << mod.status();
  auto f = backend_->ModuleGetFunction(*mod, "k2");
  ASSERT_TRUE(f.ok());
  auto missing = backend_->ModuleGetFunction(*mod, "nope");
  EXPECT_EQ(ToCuResult(missing.status()), CUDA_ERROR_NOT_FOUND);

  auto layout = backend_->FuncGetParamLayout(*f);
  ASSERT_TRUE(layout.ok()) << layout.status();
  ASSERT_EQ(layout->size(), 2u);
  EXPECT_EQ((*layout)[1].offset, 8u);
  EXPECT_EQ((*layout)[1].size, 4u);
  auto none = backend_->FuncGetParamLayout(*backend_->ModuleGetFunction(*mod, "k0"));
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty());

  auto global = backend_->ModuleGetGlobal(*mod, "g");
  ASSERT_TRUE(global.ok());
  EXPECT_EQ(global->size, 64u);
  EXPECT_EQ(*backend_->ModuleGetFunctionCount(*mod), 2u);
  EXPECT_EQ(*backend_->FuncGetAttribute(*f, 3), 3);
  EXPECT_TRUE(backend_->FuncSetAttribute(*f, 8, 1024).ok());

  LaunchConfig cfg;
  cfg.grid[0] = 7;
  cfg.block[0] = 128;
  cfg.shared_bytes = 96;
  cfg.stream = 0x1234;
  LaunchAttribute attr;
  attr.id = CU_LAUNCH_ATTRIBUTE_PRIORITY;
  const int32_t prio = -3;
  std::memcpy(attr.value, &prio, sizeof(prio));
  cfg.attributes.push_back(attr);
  // Deliberately misaligned in memory: the backend realigns it.
  std::vector<uint8_t> storage(13);
  for (size_t i = 0; i < 12; ++i) storage[i + 1] = static_cast<uint8_t>(i + 1);
  ASSERT_TRUE(backend_->LaunchKernel(*f, cfg, absl::MakeConstSpan(storage.data() + 1, 12)).ok());
  EXPECT_EQ(mock_.Get("grid0"), 7);
  EXPECT_EQ(mock_.Get("grid1"), 1);
  EXPECT_EQ(mock_.Get("block0"), 128);
  EXPECT_EQ(mock_.Get("shared"), 96);
  EXPECT_EQ(mock_.Get("stream"), 0x1234);
  EXPECT_EQ(mock_.Get("num_attrs"), 1);
  EXPECT_EQ(mock_.Get("attr_id"), CU_LAUNCH_ATTRIBUTE_PRIORITY);
  EXPECT_EQ(mock_.Get("attr_int"), -3);
  EXPECT_EQ(mock_.LastArgs(), std::vector<uint8_t>(storage.begin() + 1, storage.end()));

  ASSERT_TRUE(backend_->LaunchKernel(*f, LaunchConfig{}, {}).ok());
  EXPECT_EQ(mock_.Get("extra_null"), 1);
  EXPECT_TRUE(backend_->ModuleUnload(*mod).ok());
  EXPECT_EQ(ToCuResult(backend_->ModuleLoadData({}).status()), CUDA_ERROR_INVALID_IMAGE);
}

// Library kernels need cuKernel* for layouts and attributes, and launch as
// the kernel's function in the backend's context.
TEST_F(CudaBackendTest, LibraryKernels) {
  const uint8_t image[] = {'M', 'O', 'C', 'K', 0};
  auto lib = backend_->LibraryLoadData(image);
  ASSERT_TRUE(lib.ok()) << lib.status();
  auto k = backend_->LibraryGetKernel(*lib, "k3");
  ASSERT_TRUE(k.ok());
  const int64_t func_calls = mock_.Get("param_info_func");
  auto layout = backend_->FuncGetParamLayout(*k);
  ASSERT_TRUE(layout.ok()) << layout.status();
  EXPECT_EQ(layout->size(), 3u);
  EXPECT_EQ(mock_.Get("param_info_func"), func_calls);  // went straight to cuKernel*
  EXPECT_EQ(*backend_->FuncGetAttribute(*k, 4), 1004);
  EXPECT_TRUE(backend_->FuncSetAttribute(*k, 8, 1).ok());

  ASSERT_TRUE(backend_->LaunchKernel(*k, LaunchConfig{}, {}).ok());
  EXPECT_EQ(mock_.Get("func"), 0x4003);  // the kernel's CUfunction
  auto f = backend_->KernelGetFunction(*k);
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(*f, 0x4003u);
  EXPECT_EQ(backend_->FuncGetParamLayout(*f)->size(), 2u);
  EXPECT_TRUE(backend_->LibraryGetModule(*lib).ok());
  EXPECT_EQ(backend_->LibraryGetGlobal(*lib, "g")->size, 64u);

  ASSERT_TRUE(backend_->LibraryUnload(*lib).ok());
  // Once unloaded the handle is no longer treated as a kernel.
  EXPECT_EQ(ToCuResult(backend_->FuncGetAttribute(*k, 4).status()), CUDA_ERROR_INVALID_HANDLE);
}

// After a sticky error the server resets the context: the primary context is
// reset, this backend's reference dropped and a fresh one retained; objects
// that may outlive a context are released, and staging starts over.
TEST_F(CudaBackendTest, ResetContextRetainsAFreshContext) {
  const uint8_t image[] = {'M', 'O', 'C', 'K', 0};
  auto lib = backend_->LibraryLoadData(image);
  ASSERT_TRUE(lib.ok()) << lib.status();
  auto dev = backend_->MemAlloc(2u << 20);
  ASSERT_TRUE(dev.ok());
  std::vector<uint8_t> host(2u << 20, 7);
  ASSERT_TRUE(backend_->MemcpyHtoD(*dev, host.data(), host.size(), 0, false).ok());  // staged
  const int64_t resets = mock_.Get("ctx_resets");
  const int64_t retains = mock_.Get("ctx_retains");
  const int64_t releases = mock_.Get("ctx_releases");
  const int64_t unloads = mock_.Get("library_unloads");

  ASSERT_TRUE(backend_->ResetContext().ok());
  EXPECT_EQ(mock_.Get("ctx_resets"), resets + 1);
  EXPECT_EQ(mock_.Get("ctx_releases"), releases + 1);
  EXPECT_EQ(mock_.Get("ctx_retains"), retains + 1);
  EXPECT_EQ(mock_.Get("library_unloads"), unloads + 1);  // libraries outlive contexts
  EXPECT_EQ(mock_.Get("live_allocs"), 0);                // gone with the old context

  // The new context works, and staging makes new pinned buffers in it
  // rather than reusing the old context's.
  ASSERT_TRUE(backend_->BindThread().ok());
  auto again = backend_->MemAlloc(2u << 20);
  ASSERT_TRUE(again.ok());
  const int64_t host_allocs = mock_.Get("host_allocs");
  ASSERT_TRUE(backend_->MemcpyHtoD(*again, host.data(), host.size(), 0, false).ok());
  EXPECT_EQ(mock_.Get("host_allocs"), host_allocs + 2);
  EXPECT_TRUE(backend_->CtxSynchronize().ok());
  ASSERT_TRUE(backend_->MemFree(*again).ok());
  // The library handle was released by the reset; it is not unloaded twice.
  EXPECT_EQ(mock_.Get("library_unloads"), unloads + 1);
}

TEST_F(CudaBackendTest, StreamsAndEvents) {
  auto s = backend_->StreamCreate(1, -1);
  ASSERT_TRUE(s.ok());
  auto e1 = backend_->EventCreate(0);
  auto e2 = backend_->EventCreate(0);
  ASSERT_TRUE(e1.ok() && e2.ok());
  EXPECT_TRUE(backend_->EventRecord(*e1, *s, 0).ok());
  EXPECT_TRUE(backend_->EventRecord(*e2, *s, 1).ok());
  EXPECT_TRUE(backend_->StreamWaitEvent(0, *e2, 0).ok());
  EXPECT_TRUE(backend_->StreamSynchronize(*s).ok());
  EXPECT_TRUE(backend_->StreamQuery(*s).ok());
  EXPECT_EQ(ToCuResult(backend_->EventQuery(*e1)), CUDA_ERROR_NOT_READY);
  EXPECT_EQ(*backend_->EventElapsedTime(*e1, *e2), 1.5f);
  EXPECT_TRUE(backend_->EventSynchronize(*e2).ok());
  EXPECT_TRUE(backend_->EventDestroy(*e1).ok());
  EXPECT_TRUE(backend_->StreamDestroy(*s).ok());
  EXPECT_TRUE(backend_->CtxSynchronize().ok());
  auto mem = backend_->MemGetInfo();
  ASSERT_TRUE(mem.ok());
  EXPECT_EQ(mem->total, 2000u);
}

}  // namespace
}  // namespace wooly::server
