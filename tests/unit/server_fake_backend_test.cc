// The fake GpuBackend used by CI: memory, module format, kernels, events.
#include <cstring>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "wooly/fake/fake_backend.h"
#include "wooly/server/cu_status.h"

namespace wooly::fake {
namespace {

using server::ToCuResult;

CUresult Code(const absl::Status& s) { return ToCuResult(s); }
template <typename T>
CUresult Code(const absl::StatusOr<T>& s) {
  return ToCuResult(s.status());
}

std::vector<uint8_t> Text(const std::string& s) {
  std::vector<uint8_t> v(s.begin(), s.end());
  v.push_back(0);
  return v;
}

TEST(FakeBackendTest, MemoryIsLazyBoundedAndChecked) {
  FakeBackendOptions options;
  options.capacity_bytes = 1ull << 40;  // a terabyte "virtual"
  FakeBackend fake(options);
  absl::StatusOr<server::DevPtr> big = fake.MemAlloc(512ull << 30);
  ASSERT_TRUE(big.ok());  // nothing touched, nothing allocated
  EXPECT_EQ(*big % kFakeAlignment, 0u);
  EXPECT_GE(*big, kFakeDeviceBase);
  EXPECT_EQ(Code(fake.MemAlloc(600ull << 30)), CUDA_ERROR_OUT_OF_MEMORY);
  EXPECT_EQ(Code(fake.MemAlloc(0)), CUDA_ERROR_INVALID_VALUE);
  absl::StatusOr<server::MemInfo> info = fake.MemGetInfo();
  EXPECT_EQ(info->free, (1ull << 40) - (512ull << 30));
  ASSERT_TRUE(fake.MemFree(*big).ok());
  EXPECT_EQ(Code(fake.MemFree(*big)), CUDA_ERROR_INVALID_VALUE);

  absl::StatusOr<server::DevPtr> a = fake.MemAlloc(100);
  ASSERT_TRUE(a.ok());
  const char msg[] = "hello";
  ASSERT_TRUE(fake.MemcpyHtoD(*a + 10, msg, sizeof(msg), 0, false).ok());
  char back[sizeof(msg)] = {};
  ASSERT_TRUE(fake.MemcpyDtoH(back, *a + 10, sizeof(msg), 0, true).ok());
  EXPECT_STREQ(back, "hello");
  EXPECT_EQ(Code(fake.MemcpyDtoH(back, *a + 96, 5, 0, false)), CUDA_ERROR_INVALID_VALUE);
  EXPECT_EQ(Code(fake.MemcpyHtoD(*a, msg, 1, /*stream=*/0xbad, false)), CUDA_ERROR_INVALID_HANDLE);
  EXPECT_EQ(fake.live_allocations(), 1u);
  EXPECT_EQ(fake.bytes_allocated(), 100u);
}

TEST(FakeBackendTest, MemsetWidthsAndPitch) {
  FakeBackend fake;
  const server::DevPtr d = *fake.MemAlloc(64);
  ASSERT_TRUE(fake.Memset(d, 0, 0x11, 1, 64, 1, 0, false).ok());
  ASSERT_TRUE(fake.Memset(d, 0, 0xbeef, 2, 2, 1, 0, false).ok());
  ASSERT_TRUE(fake.Memset(d + 8, 0, 0xcafef00d, 4, 1, 1, 0, false).ok());
  ASSERT_TRUE(fake.Memset(d + 16, 16, 0x7e, 1, 2, 3, 0, false).ok());
  const auto* p = static_cast<const uint8_t*>(fake.HostPointer(d, 64));
  ASSERT_NE(p, nullptr);
  uint16_t h;
  std::memcpy(&h, p + 2, 2);
  EXPECT_EQ(h, 0xbeef);
  uint32_t w;
  std::memcpy(&w, p + 8, 4);
  EXPECT_EQ(w, 0xcafef00du);
  EXPECT_EQ(p[4], 0x11);
  EXPECT_EQ(p[16], 0x7e);
  EXPECT_EQ(p[18], 0x11);
  EXPECT_EQ(p[48], 0x7e);
  EXPECT_EQ(p[49], 0x7e);
  EXPECT_EQ(Code(fake.Memset(d, 0, 0, 3, 1, 1, 0, false)), CUDA_ERROR_INVALID_VALUE);
  EXPECT_EQ(Code(fake.Memset(d + 60, 0, 0, 4, 2, 1, 0, false)), CUDA_ERROR_INVALID_VALUE);
}

TEST(FakeBackendTest, ModuleFormat) {
  FakeBackend fake;
  RegisterFakeKernel({"fake_test_k", {{0, 4}}, [](const FakeLaunch&) { return absl::OkStatus(); }});
  EXPECT_EQ(Code(fake.ModuleLoadData(Text("garbage"))), CUDA_ERROR_INVALID_IMAGE);
  EXPECT_EQ(Code(fake.ModuleLoadData({})), CUDA_ERROR_INVALID_IMAGE);
  EXPECT_EQ(Code(fake.ModuleLoadData(Text("WOOLY-FAKE-MODULE v1\nfunction x\n"))),
            CUDA_ERROR_INVALID_IMAGE);
  EXPECT_EQ(Code(fake.ModuleLoadData(Text("WOOLY-FAKE-MODULE v1\nglobal g zero\n"))),
            CUDA_ERROR_INVALID_IMAGE);
  EXPECT_EQ(Code(fake.ModuleLoadData(Text("WOOLY-FAKE-MODULE v2\n"))), CUDA_ERROR_INVALID_IMAGE);
  absl::StatusOr<server::Handle> m = fake.ModuleLoadData(
      Text("WOOLY-FAKE-MODULE v1\r\nkernel fake_test_k\n\nkernel unregistered\nglobal g 12\n"));
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(*fake.ModuleGetFunctionCount(*m), 2u);
  absl::StatusOr<server::Handle> f = fake.ModuleGetFunction(*m, "fake_test_k");
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(*fake.ModuleGetFunction(*m, "fake_test_k"), *f);
  EXPECT_EQ(fake.FuncGetParamLayout(*f)->size(), 1u);
  EXPECT_EQ(Code(fake.ModuleGetFunction(*m, "unregistered")), CUDA_ERROR_NOT_FOUND);
  EXPECT_EQ(Code(fake.ModuleGetFunction(*m, "absent")), CUDA_ERROR_NOT_FOUND);
  absl::StatusOr<server::GlobalInfo> g = fake.ModuleGetGlobal(*m, "g");
  ASSERT_TRUE(g.ok());
  EXPECT_EQ(g->size, 12u);
  EXPECT_NE(fake.HostPointer(g->ptr, 12), nullptr);
  EXPECT_EQ(fake.live_allocations(), 0u);  // globals are not allocations
  EXPECT_EQ(Code(fake.MemFree(g->ptr)), CUDA_ERROR_INVALID_VALUE);
  ASSERT_TRUE(fake.ModuleUnload(*m).ok());
  EXPECT_EQ(fake.HostPointer(g->ptr, 12), nullptr);
  EXPECT_EQ(Code(fake.FuncGetParamLayout(*f)), CUDA_ERROR_INVALID_HANDLE);
  EXPECT_EQ(Code(fake.ModuleUnload(*m)), CUDA_ERROR_INVALID_HANDLE);
}

TEST(FakeBackendTest, KernelsRunOnTheCpuAndReplaceByName) {
  FakeBackend fake;
  RegisterFakeKernel({"fake_test_store", {{0, 8}, {8, 4}}, [](const FakeLaunch& l) {
                        uint64_t p;
                        uint32_t v;
                        std::memcpy(&p, l.args.data(), 8);
                        std::memcpy(&v, l.args.data() + 8, 4);
                        auto* out = static_cast<uint32_t*>(l.host(p, 4));
                        if (!out) return server::CuError(CUDA_ERROR_ILLEGAL_ADDRESS);
                        *out = v * l.grid[0];
                        return absl::OkStatus();
                      }});
  const server::DevPtr d = *fake.MemAlloc(4);
  const server::Handle m = *fake.ModuleLoadData(MakeFakeModuleImage({"fake_test_store"}));
  const server::Handle f = *fake.ModuleGetFunction(m, "fake_test_store");
  std::vector<uint8_t> args(12);
  const uint32_t v = 21;
  std::memcpy(args.data(), &d, 8);
  std::memcpy(args.data() + 8, &v, 4);
  server::LaunchConfig config;
  config.grid[0] = 2;
  ASSERT_TRUE(fake.LaunchKernel(f, config, args).ok());
  EXPECT_EQ(*static_cast<uint32_t*>(fake.HostPointer(d, 4)), 42u);
  EXPECT_EQ(Code(fake.LaunchKernel(f, config, absl::MakeConstSpan(args).first(8))),
            CUDA_ERROR_INVALID_VALUE);
  config.block[0] = 0;
  EXPECT_EQ(Code(fake.LaunchKernel(f, config, args)), CUDA_ERROR_INVALID_VALUE);
  config.block[0] = 1;
  config.shared_bytes = 64 << 10;
  EXPECT_EQ(Code(fake.LaunchKernel(f, config, args)), CUDA_ERROR_INVALID_VALUE);
  ASSERT_TRUE(
      fake.FuncSetAttribute(f, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, 96 << 10).ok());
  EXPECT_EQ(*fake.FuncGetAttribute(f, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES), 96 << 10);
  std::memcpy(args.data(), &d, 8);
  EXPECT_TRUE(fake.LaunchKernel(f, config, args).ok());
  EXPECT_EQ(Code(fake.FuncSetAttribute(f, CU_FUNC_ATTRIBUTE_NUM_REGS, 1)),
            CUDA_ERROR_INVALID_VALUE);
  // Out of bounds inside the kernel: a fault, which loses the context
  // (server_sticky_test.cc covers that state) until it is reset.
  const server::DevPtr bad = d + 4;
  std::memcpy(args.data(), &bad, 8);
  EXPECT_EQ(Code(fake.LaunchKernel(f, config, args)), CUDA_ERROR_ILLEGAL_ADDRESS);
  ASSERT_TRUE(fake.ResetContext().ok());
  // A later registration under the same name replaces the kernel.
  RegisterFakeKernel({"fake_test_store", {}, [](const FakeLaunch&) {
                        return server::CuError(CUDA_ERROR_LAUNCH_FAILED);
                      }});
  const server::Handle m2 = *fake.ModuleLoadData(MakeFakeModuleImage({"fake_test_store"}));
  const server::Handle f2 = *fake.ModuleGetFunction(m2, "fake_test_store");
  config.shared_bytes = 0;
  EXPECT_EQ(Code(fake.LaunchKernel(f2, config, args)), CUDA_ERROR_LAUNCH_FAILED);
}

TEST(FakeBackendTest, LibrariesWrapAModule) {
  FakeBackend fake;
  RegisterFakeKernel({"fake_test_lib_k", {}, [](const FakeLaunch&) { return absl::OkStatus(); }});
  const server::Handle lib =
      *fake.LibraryLoadData(MakeFakeModuleImage({"fake_test_lib_k"}, {{"lg", 8}}));
  const server::Handle k = *fake.LibraryGetKernel(lib, "fake_test_lib_k");
  EXPECT_EQ(*fake.LibraryGetKernel(lib, "fake_test_lib_k"), k);
  EXPECT_EQ(Code(fake.LibraryGetKernel(lib, "nope")), CUDA_ERROR_NOT_FOUND);
  const server::Handle f = *fake.KernelGetFunction(k);
  const server::Handle m = *fake.LibraryGetModule(lib);
  EXPECT_EQ(*fake.ModuleGetFunction(m, "fake_test_lib_k"), f);
  EXPECT_EQ(fake.LibraryGetGlobal(lib, "lg")->ptr, fake.ModuleGetGlobal(m, "lg")->ptr);
  EXPECT_EQ(Code(fake.ModuleUnload(m)), CUDA_ERROR_NOT_PERMITTED);
  EXPECT_EQ(fake.live_modules(), 1u);
  ASSERT_TRUE(fake.LibraryUnload(lib).ok());
  EXPECT_EQ(fake.live_modules(), 0u);
  EXPECT_EQ(fake.live_libraries(), 0u);
  EXPECT_EQ(Code(fake.KernelGetFunction(k)), CUDA_ERROR_INVALID_HANDLE);
}

TEST(FakeBackendTest, EventsTakeTimeFromTheInjectedClock) {
  uint64_t now = 1000;
  FakeBackendOptions options;
  options.clock_ns = [&now] { return now; };
  FakeBackend fake(options);
  const server::Handle s = *fake.StreamCreate(CU_STREAM_NON_BLOCKING, -2);
  const server::Handle a = *fake.EventCreate(0);
  const server::Handle b = *fake.EventCreate(0);
  const server::Handle untimed = *fake.EventCreate(CU_EVENT_DISABLE_TIMING);
  EXPECT_EQ(Code(fake.EventElapsedTime(a, b)), CUDA_ERROR_INVALID_HANDLE);  // not recorded
  ASSERT_TRUE(fake.EventRecord(a, s, 0).ok());
  now += 2500000;  // 2.5 ms
  ASSERT_TRUE(fake.EventRecord(b, 0, 0).ok());
  ASSERT_TRUE(fake.EventRecord(untimed, s, 0).ok());
  EXPECT_FLOAT_EQ(*fake.EventElapsedTime(a, b), 2.5f);
  EXPECT_EQ(Code(fake.EventElapsedTime(a, untimed)), CUDA_ERROR_INVALID_HANDLE);
  EXPECT_TRUE(fake.StreamWaitEvent(s, a, 0).ok());
  EXPECT_TRUE(fake.StreamQuery(s).ok());
  EXPECT_TRUE(fake.EventQuery(a).ok());
  EXPECT_EQ(fake.live_streams(), 1u);
  EXPECT_EQ(fake.live_events(), 3u);
  EXPECT_EQ(Code(fake.StreamCreate(4, 0)), CUDA_ERROR_INVALID_VALUE);
  ASSERT_TRUE(fake.StreamDestroy(s).ok());
  EXPECT_EQ(Code(fake.StreamDestroy(s)), CUDA_ERROR_INVALID_HANDLE);
  EXPECT_EQ(Code(fake.StreamDestroy(0)), CUDA_ERROR_INVALID_HANDLE);
  ASSERT_TRUE(fake.EventDestroy(a).ok());
  EXPECT_EQ(Code(fake.EventSynchronize(a)), CUDA_ERROR_INVALID_HANDLE);
}

TEST(FakeBackendTest, DeviceInfoLooksLikeAnH100) {
  FakeBackend fake;
  absl::StatusOr<wire::DeviceInfo> d = fake.GetDeviceInfo();
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->name, "Wooly Fake GPU");
  ASSERT_EQ(d->attributes.size(), static_cast<size_t>(CU_DEVICE_ATTRIBUTE_MAX));
  EXPECT_EQ(d->attributes[CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT], 132);
  EXPECT_EQ(d->attributes[CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_BLOCK], 1024);
  EXPECT_EQ(d->attributes[CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR], 9);
  EXPECT_EQ(d->attributes[CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR], 0);
  EXPECT_EQ(d->stream_priority_least, 0);
  EXPECT_EQ(d->stream_priority_greatest, -5);
  EXPECT_EQ(d->total_mem, 16ull << 30);
}

}  // namespace
}  // namespace wooly::fake
