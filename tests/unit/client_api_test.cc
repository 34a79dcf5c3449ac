// libwooly's driver API against an in-process fake woolyd speaking the real
// framed protocol: initialization, local answers, the context model, and the
// wire traffic of forwarded calls.
#define CUDA_ENABLE_DEPRECATED 1  // cuDeviceComputeCapability & co. are tested too
#include <cuda.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <numeric>
#include <thread>
#include <vector>

#include "alloc_arena.h"
#include "client_fake_woolyd.h"
#include "driver.h"
#include "log.h"

// A per-thread-default-stream entry point, as cuda.h names it only when
// compiling with CUDA_API_PER_THREAD_DEFAULT_STREAM.
extern "C" CUresult CUDAAPI cuStreamSynchronize_ptsz(CUstream hStream);

namespace wooly::client {
namespace {

using testing::FakeWoolyd;

class ClientApiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    SetLogLevelForTesting(LogLevel::kOff);
    ResetForTesting();
    server_ = std::make_unique<FakeWoolyd>();
    ::setenv("WOOLY_SERVER", server_->endpoint().c_str(), 1);
    ::unsetenv("WOOLY_PRIORITY");
    ::unsetenv("WOOLY_CLIENT_NAME");
  }
  void TearDown() override {
    ResetForTesting();
    server_.reset();
  }

  // cuInit plus the primary context made current, like most programs start.
  void InitWithContext() {
    ASSERT_EQ(cuInit(0), CUDA_SUCCESS);
    ASSERT_EQ(cuDevicePrimaryCtxRetain(&ctx_, 0), CUDA_SUCCESS);
    ASSERT_EQ(cuCtxSetCurrent(ctx_), CUDA_SUCCESS);
  }

  // A fake library (not marked preserved) and its kernel "struct_kernel".
  static void LoadStructKernel(CUlibrary* lib, CUkernel* k) {
    ASSERT_EQ(
        cuLibraryLoadData(lib, "WOOLY-FAKE-MODULE v1\n", nullptr, nullptr, 0, nullptr, nullptr, 0),
        CUDA_SUCCESS);
    ASSERT_EQ(cuLibraryGetKernel(k, *lib, "struct_kernel"), CUDA_SUCCESS);
  }

  std::unique_ptr<FakeWoolyd> server_;
  CUcontext ctx_ = nullptr;
};

// --- initialization

TEST_F(ClientApiTest, CallsBeforeInitReturnNotInitialized) {
  int n = 0;
  CUdevice dev;
  CUcontext ctx;
  EXPECT_EQ(cuDeviceGetCount(&n), CUDA_ERROR_NOT_INITIALIZED);
  EXPECT_EQ(cuDeviceGet(&dev, 0), CUDA_ERROR_NOT_INITIALIZED);
  EXPECT_EQ(cuCtxGetCurrent(&ctx), CUDA_ERROR_NOT_INITIALIZED);
  CUdeviceptr p;
  EXPECT_EQ(cuMemAlloc(&p, 16), CUDA_ERROR_NOT_INITIALIZED);
  // Like the real driver, the version is available before cuInit.
  int version = 0;
  EXPECT_EQ(cuDriverGetVersion(&version), CUDA_SUCCESS);
  EXPECT_EQ(version, CUDA_VERSION);
  EXPECT_TRUE(server_->hello_pids().empty());
}

TEST_F(ClientApiTest, InitSaysHelloOnce) {
  ::setenv("WOOLY_PRIORITY", "1", 1);
  ::setenv("WOOLY_CLIENT_NAME", "trainer", 1);
  ASSERT_EQ(cuInit(0), CUDA_SUCCESS);
  ASSERT_EQ(cuInit(0), CUDA_SUCCESS);
  EXPECT_EQ(server_->hello_pids(), std::vector<uint32_t>{static_cast<uint32_t>(::getpid())});
  EXPECT_EQ(server_->hello_names(), std::vector<std::string>{"trainer"});
  EXPECT_EQ(server_->hello_priorities(), std::vector<int32_t>{1});
  EXPECT_EQ(cuInit(1), CUDA_ERROR_INVALID_VALUE);
}

TEST_F(ClientApiTest, BadPriorityFallsBackToTheDefault) {
  ::setenv("WOOLY_PRIORITY", "urgent", 1);
  ASSERT_EQ(cuInit(0), CUDA_SUCCESS);
  EXPECT_EQ(server_->hello_priorities(), std::vector<int32_t>{2});
}

TEST_F(ClientApiTest, UnreachableServerIsNoDevice) {
  ::setenv("WOOLY_SERVER", "unix:/nonexistent/woolyd.sock", 1);
  EXPECT_EQ(cuInit(0), CUDA_ERROR_NO_DEVICE);
  int n = 0;
  EXPECT_EQ(cuDeviceGetCount(&n), CUDA_ERROR_NOT_INITIALIZED);
  // A later cuInit may succeed once the server is there.
  ::setenv("WOOLY_SERVER", server_->endpoint().c_str(), 1);
  EXPECT_EQ(cuInit(0), CUDA_SUCCESS);
}

TEST_F(ClientApiTest, ProtocolMismatchIsDriverMismatch) {
  server_->set_protocol_mismatch(true);
  EXPECT_EQ(cuInit(0), CUDA_ERROR_SYSTEM_DRIVER_MISMATCH);
}

// --- device queries (local)

TEST_F(ClientApiTest, DeviceQueriesAreLocal) {
  ASSERT_EQ(cuInit(0), CUDA_SUCCESS);
  server_->ClearOps();
  int n = 0;
  ASSERT_EQ(cuDeviceGetCount(&n), CUDA_SUCCESS);
  EXPECT_EQ(n, 1);
  CUdevice dev = -1;
  ASSERT_EQ(cuDeviceGet(&dev, 0), CUDA_SUCCESS);
  EXPECT_EQ(dev, 0);
  EXPECT_EQ(cuDeviceGet(&dev, 1), CUDA_ERROR_INVALID_DEVICE);

  char name[64];
  ASSERT_EQ(cuDeviceGetName(name, sizeof(name), 0), CUDA_SUCCESS);
  EXPECT_STREQ(name, "Wooly Fake GPU");
  char small[6];
  ASSERT_EQ(cuDeviceGetName(small, sizeof(small), 0), CUDA_SUCCESS);
  EXPECT_STREQ(small, "Wooly");
  EXPECT_EQ(cuDeviceGetName(name, sizeof(name), 1), CUDA_ERROR_INVALID_DEVICE);

  CUuuid uuid;
  ASSERT_EQ(cuDeviceGetUuid(&uuid, 0), CUDA_SUCCESS);
  EXPECT_EQ(uuid.bytes[0], 1);
  EXPECT_EQ(uuid.bytes[15], 16);

  size_t total = 0;
  ASSERT_EQ(cuDeviceTotalMem(&total, 0), CUDA_SUCCESS);
  EXPECT_EQ(total, FakeWoolyd::kTotalMem);

  int v = 0;
  ASSERT_EQ(cuDeviceGetAttribute(&v, CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, 0), CUDA_SUCCESS);
  EXPECT_EQ(v, 132);
  EXPECT_EQ(cuDeviceGetAttribute(&v, CU_DEVICE_ATTRIBUTE_MAX, 0), CUDA_ERROR_INVALID_VALUE);
  EXPECT_EQ(cuDeviceGetAttribute(&v, static_cast<CUdevice_attribute>(-1), 0),
            CUDA_ERROR_INVALID_VALUE);
  EXPECT_EQ(cuDeviceGetAttribute(nullptr, CU_DEVICE_ATTRIBUTE_WARP_SIZE, 0),
            CUDA_ERROR_INVALID_VALUE);

  int major = 0, minor = -1;
  ASSERT_EQ(cuDeviceComputeCapability(&major, &minor, 0), CUDA_SUCCESS);
  EXPECT_EQ(major, 9);
  EXPECT_EQ(minor, 0);

  CUdevprop prop;
  ASSERT_EQ(cuDeviceGetProperties(&prop, 0), CUDA_SUCCESS);
  EXPECT_EQ(prop.maxThreadsPerBlock, 1024);
  EXPECT_EQ(prop.SIMDWidth, 32);

  char bus[32];
  ASSERT_EQ(cuDeviceGetPCIBusId(bus, sizeof(bus), 0), CUDA_SUCCESS);
  EXPECT_STREQ(bus, "0000:3b:00.0");
  CUdevice by_bus = -1;
  ASSERT_EQ(cuDeviceGetByPCIBusId(&by_bus, bus), CUDA_SUCCESS);
  EXPECT_EQ(by_bus, 0);
  EXPECT_EQ(cuDeviceGetByPCIBusId(&by_bus, "3B:00.0"), CUDA_SUCCESS);
  EXPECT_EQ(cuDeviceGetByPCIBusId(&by_bus, "0000:3c:00.0"), CUDA_ERROR_INVALID_DEVICE);
  EXPECT_EQ(cuDeviceGetByPCIBusId(&by_bus, "not-a-bus-id"), CUDA_ERROR_INVALID_VALUE);

  int version = 0;
  ASSERT_EQ(cuDriverGetVersion(&version), CUDA_SUCCESS);
  EXPECT_EQ(version, 13000);

  EXPECT_TRUE(server_->ops().empty()) << "device queries must not reach the server";
}

// --- contexts (local)

TEST_F(ClientApiTest, NoCurrentContext) {
  ASSERT_EQ(cuInit(0), CUDA_SUCCESS);
  CUcontext ctx = reinterpret_cast<CUcontext>(0x1);
  ASSERT_EQ(cuCtxGetCurrent(&ctx), CUDA_SUCCESS);
  EXPECT_EQ(ctx, nullptr);
  CUdevice dev;
  EXPECT_EQ(cuCtxGetDevice(&dev), CUDA_ERROR_INVALID_CONTEXT);
  EXPECT_EQ(cuCtxPopCurrent(&ctx), CUDA_ERROR_INVALID_CONTEXT);
  CUdeviceptr p;
  EXPECT_EQ(cuMemAlloc(&p, 16), CUDA_ERROR_INVALID_CONTEXT);
  EXPECT_EQ(cuCtxSynchronize(), CUDA_ERROR_INVALID_CONTEXT);
  unsigned flags;
  EXPECT_EQ(cuCtxGetFlags(&flags), CUDA_ERROR_INVALID_CONTEXT);
}

TEST_F(ClientApiTest, PrimaryContextLifecycle) {
  ASSERT_EQ(cuInit(0), CUDA_SUCCESS);
  unsigned flags = 99;
  int active = 99;
  ASSERT_EQ(cuDevicePrimaryCtxGetState(0, &flags, &active), CUDA_SUCCESS);
  EXPECT_EQ(flags, 0u);
  EXPECT_EQ(active, 0);
  ASSERT_EQ(cuDevicePrimaryCtxSetFlags(0, CU_CTX_SCHED_BLOCKING_SYNC), CUDA_SUCCESS);
  EXPECT_EQ(cuDevicePrimaryCtxSetFlags(0, CU_CTX_SCHED_SPIN | CU_CTX_SCHED_YIELD),
            CUDA_ERROR_INVALID_VALUE);
  EXPECT_EQ(cuDevicePrimaryCtxSetFlags(0, 0x1000), CUDA_ERROR_INVALID_VALUE);

  CUcontext a = nullptr, b = nullptr;
  ASSERT_EQ(cuDevicePrimaryCtxRetain(&a, 0), CUDA_SUCCESS);
  ASSERT_EQ(cuDevicePrimaryCtxRetain(&b, 0), CUDA_SUCCESS);
  EXPECT_EQ(a, b);
  ASSERT_EQ(cuDevicePrimaryCtxGetState(0, &flags, &active), CUDA_SUCCESS);
  EXPECT_EQ(flags, static_cast<unsigned>(CU_CTX_SCHED_BLOCKING_SYNC));
  EXPECT_EQ(active, 1);

  ASSERT_EQ(cuCtxSetCurrent(a), CUDA_SUCCESS);
  unsigned ctx_flags = 0;
  ASSERT_EQ(cuCtxGetFlags(&ctx_flags), CUDA_SUCCESS);
  EXPECT_EQ(ctx_flags, static_cast<unsigned>(CU_CTX_SCHED_BLOCKING_SYNC));
  unsigned api = 0;
  ASSERT_EQ(cuCtxGetApiVersion(nullptr, &api), CUDA_SUCCESS);
  EXPECT_EQ(api, 3020u);
  unsigned long long id = 0;
  ASSERT_EQ(cuCtxGetId(a, &id), CUDA_SUCCESS);
  EXPECT_EQ(id, 1u);
  int least = 1, greatest = 1;
  ASSERT_EQ(cuCtxGetStreamPriorityRange(&least, &greatest), CUDA_SUCCESS);
  EXPECT_EQ(least, 0);
  EXPECT_EQ(greatest, -5);

  // The primary context cannot be destroyed with cuCtxDestroy.
  EXPECT_EQ(cuCtxDestroy(a), CUDA_ERROR_INVALID_CONTEXT);

  ASSERT_EQ(cuDevicePrimaryCtxRelease(0), CUDA_SUCCESS);
  ASSERT_EQ(cuDevicePrimaryCtxRelease(0), CUDA_SUCCESS);
  ASSERT_EQ(cuDevicePrimaryCtxGetState(0, &flags, &active), CUDA_SUCCESS);
  EXPECT_EQ(active, 0);
  EXPECT_EQ(cuDevicePrimaryCtxRelease(0), CUDA_ERROR_INVALID_CONTEXT);
  // Current but released: unusable for work.
  CUdeviceptr p;
  EXPECT_EQ(cuMemAlloc(&p, 8), CUDA_ERROR_INVALID_CONTEXT);

  ASSERT_EQ(cuDevicePrimaryCtxReset(0), CUDA_SUCCESS);
  ASSERT_EQ(cuDevicePrimaryCtxGetState(0, &flags, &active), CUDA_SUCCESS);
  EXPECT_EQ(flags, 0u);
}

TEST_F(ClientApiTest, ContextStackSemantics) {
  InitWithContext();
  CUcontext created = nullptr;
  ASSERT_EQ(cuCtxCreate(&created, nullptr, 0, 0), CUDA_SUCCESS);
  ASSERT_NE(created, ctx_);
  CUcontext cur = nullptr;
  ASSERT_EQ(cuCtxGetCurrent(&cur), CUDA_SUCCESS);
  EXPECT_EQ(cur, created) << "cuCtxCreate pushes the new context";

  CUcontext popped = nullptr;
  ASSERT_EQ(cuCtxPopCurrent(&popped), CUDA_SUCCESS);
  EXPECT_EQ(popped, created);
  ASSERT_EQ(cuCtxGetCurrent(&cur), CUDA_SUCCESS);
  EXPECT_EQ(cur, ctx_);

  ASSERT_EQ(cuCtxPushCurrent(created), CUDA_SUCCESS);
  ASSERT_EQ(cuCtxPushCurrent(created), CUDA_SUCCESS);
  EXPECT_EQ(cuCtxPushCurrent(nullptr), CUDA_ERROR_INVALID_VALUE);
  EXPECT_EQ(cuCtxPushCurrent(reinterpret_cast<CUcontext>(&cur)), CUDA_ERROR_INVALID_CONTEXT);
  // SetCurrent replaces the top; SetCurrent(NULL) pops.
  ASSERT_EQ(cuCtxSetCurrent(ctx_), CUDA_SUCCESS);
  ASSERT_EQ(cuCtxPopCurrent(&popped), CUDA_SUCCESS);
  EXPECT_EQ(popped, ctx_);
  ASSERT_EQ(cuCtxSetCurrent(nullptr), CUDA_SUCCESS);
  ASSERT_EQ(cuCtxGetCurrent(&cur), CUDA_SUCCESS);
  EXPECT_EQ(cur, ctx_);

  unsigned long long id_a = 0, id_b = 0;
  ASSERT_EQ(cuCtxGetId(ctx_, &id_a), CUDA_SUCCESS);
  ASSERT_EQ(cuCtxGetId(created, &id_b), CUDA_SUCCESS);
  EXPECT_NE(id_a, id_b);

  // Destroying a context removes it from this thread's stack.
  ASSERT_EQ(cuCtxPushCurrent(created), CUDA_SUCCESS);
  ASSERT_EQ(cuCtxDestroy(created), CUDA_SUCCESS);
  ASSERT_EQ(cuCtxGetCurrent(&cur), CUDA_SUCCESS);
  EXPECT_EQ(cur, ctx_);
  EXPECT_EQ(cuCtxDestroy(created), CUDA_ERROR_INVALID_CONTEXT);
  EXPECT_EQ(cuCtxSetCurrent(created), CUDA_ERROR_INVALID_CONTEXT);

  CUdevice dev = -1;
  ASSERT_EQ(cuCtxGetDevice(&dev), CUDA_SUCCESS);
  EXPECT_EQ(dev, 0);
}

TEST_F(ClientApiTest, ContextStacksArePerThread) {
  InitWithContext();
  CUcontext seen = reinterpret_cast<CUcontext>(0x1);
  CUresult get_device = CUDA_SUCCESS;
  std::thread t([&] {
    cuCtxGetCurrent(&seen);
    CUdevice dev;
    get_device = cuCtxGetDevice(&dev);
  });
  t.join();
  EXPECT_EQ(seen, nullptr);
  EXPECT_EQ(get_device, CUDA_ERROR_INVALID_CONTEXT);
  CUcontext cur = nullptr;
  ASSERT_EQ(cuCtxGetCurrent(&cur), CUDA_SUCCESS);
  EXPECT_EQ(cur, ctx_);
}

TEST_F(ClientApiTest, CtxCreateRejectsBadArguments) {
  ASSERT_EQ(cuInit(0), CUDA_SUCCESS);
  CUcontext c;
  EXPECT_EQ(cuCtxCreate(&c, nullptr, 0, 1), CUDA_ERROR_INVALID_DEVICE);
  EXPECT_EQ(cuCtxCreate(nullptr, nullptr, 0, 0), CUDA_ERROR_INVALID_VALUE);
  EXPECT_EQ(cuCtxCreate(&c, nullptr, 0x7, 0), CUDA_ERROR_INVALID_VALUE);
}

// --- memory

TEST_F(ClientApiTest, MemoryRoundTrip) {
  InitWithContext();
  CUdeviceptr d = 0;
  ASSERT_EQ(cuMemAlloc(&d, 1000), CUDA_SUCCESS);
  EXPECT_EQ(cuMemAlloc(&d, 0), CUDA_ERROR_INVALID_VALUE);
  std::vector<uint8_t> in(1000), out(1000, 0);
  std::iota(in.begin(), in.end(), 0);
  ASSERT_EQ(cuMemcpyHtoD(d, in.data(), in.size()), CUDA_SUCCESS);
  ASSERT_EQ(cuMemcpyDtoH(out.data(), d, out.size()), CUDA_SUCCESS);
  EXPECT_EQ(in, out);

  // Sync copies ride the null stream. The host-to-device one carries its
  // bytes, so it is sent without waiting and runs async on the server; the
  // device-to-host one waits (async=0).
  const auto copies = server_->copy_streams();
  ASSERT_EQ(copies.size(), 2u);
  for (auto [stream, async] : copies) EXPECT_EQ(stream, wire::kStreamNull);
  EXPECT_EQ(copies[0].second, 1);
  EXPECT_EQ(copies[1].second, 0);

  // Address ranges are answered locally.
  server_->ClearOps();
  CUdeviceptr base = 0;
  size_t size = 0;
  ASSERT_EQ(cuMemGetAddressRange(&base, &size, d + 10), CUDA_SUCCESS);
  EXPECT_EQ(base, d);
  EXPECT_EQ(size, 1000u);
  EXPECT_TRUE(server_->ops().empty());

  // Unified copies: device<->host decided by the allocation table.
  CUdeviceptr d2 = 0;
  ASSERT_EQ(cuMemAlloc(&d2, 1000), CUDA_SUCCESS);
  ASSERT_EQ(cuMemcpy(d2, d, 1000), CUDA_SUCCESS);
  std::vector<uint8_t> back(1000, 0);
  ASSERT_EQ(cuMemcpy(reinterpret_cast<CUdeviceptr>(back.data()), d2 + 0, 1000), CUDA_SUCCESS);
  EXPECT_EQ(back, in);
  std::vector<uint8_t> host_copy(1000, 0);
  ASSERT_EQ(cuMemcpy(reinterpret_cast<CUdeviceptr>(host_copy.data()),
                     reinterpret_cast<CUdeviceptr>(back.data()), 1000),
            CUDA_SUCCESS);
  EXPECT_EQ(host_copy, in);
  EXPECT_EQ(server_->CountOp(wire::Op::kMemcpyDtoD), 1u);
  EXPECT_EQ(server_->CountOp(wire::Op::kMemcpyDtoH), 1u);

  size_t free_b = 0, total_b = 0;
  ASSERT_EQ(cuMemGetInfo(&free_b, &total_b), CUDA_SUCCESS);
  EXPECT_EQ(total_b, FakeWoolyd::kTotalMem);

  ASSERT_EQ(cuMemFree(d), CUDA_SUCCESS);
  ASSERT_EQ(cuMemFree(d2), CUDA_SUCCESS);
  // Frees of known allocations do not wait; a synchronize does. What stays
  // is the context's arena (local allocation), whose blocks are all free.
  ASSERT_EQ(cuCtxSynchronize(), CUDA_SUCCESS);
  EXPECT_EQ(server_->live_allocations(), 1u);
  // Freeing twice is refused, and the arena it came from survives it.
  EXPECT_EQ(cuMemFree(d), CUDA_ERROR_INVALID_VALUE);
  EXPECT_EQ(cuMemFree(d + 512), CUDA_ERROR_INVALID_VALUE);
  ASSERT_EQ(cuCtxSynchronize(), CUDA_SUCCESS);
  EXPECT_EQ(server_->live_allocations(), 1u);
  EXPECT_EQ(server_->CountOp(wire::Op::kMemFree), 0u);
}

TEST_F(ClientApiTest, LargeCopiesAreChunked) {
  InitWithContext();
  const size_t n = wire::kCopyChunk + 4097;
  CUdeviceptr d = 0;
  ASSERT_EQ(cuMemAlloc(&d, n), CUDA_SUCCESS);
  std::vector<uint8_t> in(n), out(n, 0);
  for (size_t i = 0; i < n; ++i) in[i] = static_cast<uint8_t>(i * 7 + (i >> 20));
  server_->ClearOps();
  ASSERT_EQ(cuMemcpyHtoD(d, in.data(), n), CUDA_SUCCESS);
  ASSERT_EQ(cuMemcpyDtoH(out.data(), d, n), CUDA_SUCCESS);
  EXPECT_EQ(server_->CountOp(wire::Op::kMemcpyHtoD), 2u);
  // Copies that wait for their data travel in smaller, pipelined pieces.
  EXPECT_EQ(server_->CountOp(wire::Op::kMemcpyDtoH), (n + kPipelineChunk - 1) / kPipelineChunk);
  EXPECT_TRUE(in == out);
  ASSERT_EQ(cuMemFree(d), CUDA_SUCCESS);
}

TEST_F(ClientApiTest, Memsets) {
  InitWithContext();
  CUdeviceptr d = 0;
  ASSERT_EQ(cuMemAlloc(&d, 256), CUDA_SUCCESS);
  ASSERT_EQ(cuMemsetD8(d, 0xab, 256), CUDA_SUCCESS);
  ASSERT_EQ(cuMemsetD16(d + 2, 0x1234, 3), CUDA_SUCCESS);
  ASSERT_EQ(cuMemsetD32(d + 16, 0xdeadbeef, 2), CUDA_SUCCESS);
  // 2D: 4 rows of 3 u16, pitch 32, starting at 64.
  ASSERT_EQ(cuMemsetD2D16(d + 64, 32, 0x5555, 3, 4), CUDA_SUCCESS);
  std::vector<uint8_t> out(256);
  ASSERT_EQ(cuMemcpyDtoH(out.data(), d, 256), CUDA_SUCCESS);
  EXPECT_EQ(out[0], 0xab);
  EXPECT_EQ(out[1], 0xab);
  EXPECT_EQ(out[2], 0x34);
  EXPECT_EQ(out[3], 0x12);
  EXPECT_EQ(out[7], 0x12);
  EXPECT_EQ(out[8], 0xab);
  uint32_t w = 0;
  std::memcpy(&w, &out[20], 4);
  EXPECT_EQ(w, 0xdeadbeefu);
  EXPECT_EQ(out[64], 0x55);
  EXPECT_EQ(out[69], 0x55);
  EXPECT_EQ(out[70], 0xab);  // past the row width
  EXPECT_EQ(out[96 + 5], 0x55);
  EXPECT_EQ(out[64 + 3 * 32 + 5], 0x55);
  EXPECT_EQ(out[64 + 4 * 32], 0xab);  // past the last row

  EXPECT_EQ(cuMemsetD16(d + 1, 0, 1), CUDA_ERROR_INVALID_VALUE);
  EXPECT_EQ(cuMemsetD32(d + 2, 0, 1), CUDA_ERROR_INVALID_VALUE);
  EXPECT_EQ(cuMemsetD2D8(d, 2, 0, 4, 2), CUDA_ERROR_INVALID_VALUE);  // pitch < width

  CUstream s;
  ASSERT_EQ(cuStreamCreate(&s, CU_STREAM_NON_BLOCKING), CUDA_SUCCESS);
  ASSERT_EQ(cuMemsetD8Async(d, 1, 4, s), CUDA_SUCCESS);
  ASSERT_EQ(cuCtxSynchronize(), CUDA_SUCCESS);  // the memset was sent without waiting
  auto streams = server_->copy_streams();
  ASSERT_FALSE(streams.empty());
  EXPECT_NE(streams.back().first, wire::kStreamNull);
  EXPECT_EQ(streams.back().second, 1);
}

TEST_F(ClientApiTest, Memcpy2DAnd3D) {
  InitWithContext();
  // A 5x3 box out of a pitched host image (pitch 16) into pitched device memory.
  std::vector<uint8_t> host(16 * 4);
  std::iota(host.begin(), host.end(), 0);
  CUdeviceptr d = 0;
  ASSERT_EQ(cuMemAlloc(&d, 32 * 4), CUDA_SUCCESS);
  ASSERT_EQ(cuMemsetD8(d, 0, 128), CUDA_SUCCESS);
  CUDA_MEMCPY2D c{};
  c.srcMemoryType = CU_MEMORYTYPE_HOST;
  c.srcHost = host.data();
  c.srcXInBytes = 2;
  c.srcY = 1;
  c.srcPitch = 16;
  c.dstMemoryType = CU_MEMORYTYPE_DEVICE;
  c.dstDevice = d;
  c.dstXInBytes = 1;
  c.dstPitch = 32;
  c.WidthInBytes = 5;
  c.Height = 3;
  ASSERT_EQ(cuMemcpy2D(&c), CUDA_SUCCESS);
  std::vector<uint8_t> dev(128);
  ASSERT_EQ(cuMemcpyDtoH(dev.data(), d, 128), CUDA_SUCCESS);
  for (int y = 0; y < 3; ++y) {
    for (int x = 0; x < 5; ++x) EXPECT_EQ(dev[y * 32 + 1 + x], host[(1 + y) * 16 + 2 + x]);
    EXPECT_EQ(dev[y * 32], 0);
    EXPECT_EQ(dev[y * 32 + 6], 0);
  }

  // Back into a pitched host buffer with a 3D copy of depth 1 (unified types).
  std::vector<uint8_t> back(8 * 3, 0xee);
  CUDA_MEMCPY3D c3{};
  c3.srcMemoryType = CU_MEMORYTYPE_UNIFIED;
  c3.srcDevice = d;
  c3.srcXInBytes = 1;
  c3.srcPitch = 32;
  c3.dstMemoryType = CU_MEMORYTYPE_UNIFIED;
  c3.dstDevice = reinterpret_cast<CUdeviceptr>(back.data());
  c3.dstPitch = 8;
  c3.WidthInBytes = 5;
  c3.Height = 3;
  c3.Depth = 1;
  ASSERT_EQ(cuMemcpy3D(&c3), CUDA_SUCCESS);
  for (int y = 0; y < 3; ++y) {
    for (int x = 0; x < 5; ++x) EXPECT_EQ(back[y * 8 + x], host[(1 + y) * 16 + 2 + x]);
    EXPECT_EQ(back[y * 8 + 5], 0xee);
  }

  c.srcMemoryType = CU_MEMORYTYPE_ARRAY;
  EXPECT_EQ(cuMemcpy2D(&c), CUDA_ERROR_NOT_SUPPORTED);
  c.srcMemoryType = CU_MEMORYTYPE_HOST;
  c.srcPitch = 4;  // narrower than the copy
  EXPECT_EQ(cuMemcpy2D(&c), CUDA_ERROR_INVALID_VALUE);
}

// --- modules, functions, launches

TEST_F(ClientApiTest, ModuleFunctionAndLaunch) {
  InitWithContext();
  const char* image = "WOOLY-FAKE-MODULE v1\nkernel vec_add\n";
  CUmodule mod = nullptr;
  ASSERT_EQ(cuModuleLoadData(&mod, image), CUDA_SUCCESS);
  ASSERT_EQ(server_->images().size(), 1u);
  EXPECT_EQ(server_->images()[0].size(), std::strlen(image) + 1);

  CUfunction f = nullptr, again = nullptr;
  ASSERT_EQ(cuModuleGetFunction(&f, mod, "vec_add"), CUDA_SUCCESS);
  server_->ClearOps();
  ASSERT_EQ(cuModuleGetFunction(&again, mod, "vec_add"), CUDA_SUCCESS);
  EXPECT_EQ(f, again);
  EXPECT_EQ(cuModuleGetFunction(&again, mod, "missing"), CUDA_ERROR_NOT_FOUND);

  // Parameter info, names and module are local.
  server_->ClearOps();
  size_t off = 0, size = 0;
  ASSERT_EQ(cuFuncGetParamInfo(f, 3, &off, &size), CUDA_SUCCESS);
  EXPECT_EQ(off, 24u);
  EXPECT_EQ(size, 4u);
  EXPECT_EQ(cuFuncGetParamInfo(f, 4, &off, &size), CUDA_ERROR_INVALID_VALUE);
  const char* name = nullptr;
  ASSERT_EQ(cuFuncGetName(&name, f), CUDA_SUCCESS);
  EXPECT_STREQ(name, "vec_add");
  CUmodule owner = nullptr;
  ASSERT_EQ(cuFuncGetModule(&owner, f), CUDA_SUCCESS);
  EXPECT_EQ(owner, mod);
  EXPECT_TRUE(server_->ops().empty());

  CUdeviceptr a = 0x1111, b = 0x2222, c = 0x3333;
  int n = 77;
  void* params[] = {&a, &b, &c, &n};
  ASSERT_EQ(cuLaunchKernel(f, 2, 1, 1, 128, 1, 1, 0, nullptr, params, nullptr), CUDA_SUCCESS);
  ASSERT_EQ(cuCtxSynchronize(), CUDA_SUCCESS);  // launches do not wait for a reply
  auto launches = server_->launches();
  ASSERT_EQ(launches.size(), 1u);
  EXPECT_EQ(launches[0].grid[0], 2u);
  EXPECT_EQ(launches[0].block[0], 128u);
  EXPECT_EQ(launches[0].stream, wire::kStreamNull);
  ASSERT_EQ(launches[0].args.size(), 28u);
  uint64_t got = 0;
  std::memcpy(&got, launches[0].args.data() + 8, 8);
  EXPECT_EQ(got, 0x2222u);
  int got_n = 0;
  std::memcpy(&got_n, launches[0].args.data() + 24, 4);
  EXPECT_EQ(got_n, 77);

  // `extra` and a launch on CU_STREAM_LEGACY.
  struct {
    uint64_t a, b, c;
    int n;
  } packed{1, 2, 3, 4};
  size_t packed_size = sizeof(packed);
  void* extra[] = {CU_LAUNCH_PARAM_BUFFER_POINTER, &packed, CU_LAUNCH_PARAM_BUFFER_SIZE,
                   &packed_size, CU_LAUNCH_PARAM_END};
  ASSERT_EQ(cuLaunchKernel(f, 1, 1, 1, 1, 1, 1, 0, CU_STREAM_LEGACY, nullptr, extra), CUDA_SUCCESS);
  ASSERT_EQ(cuCtxSynchronize(), CUDA_SUCCESS);
  launches = server_->launches();
  ASSERT_EQ(launches.size(), 2u);
  EXPECT_EQ(launches[1].stream, wire::kStreamLegacy);
  EXPECT_EQ(launches[1].args.size(), 28u);
  EXPECT_EQ(cuLaunchKernel(f, 1, 1, 1, 1, 1, 1, 0, nullptr, params, extra),
            CUDA_ERROR_INVALID_VALUE);
  EXPECT_EQ(cuLaunchKernel(nullptr, 1, 1, 1, 1, 1, 1, 0, nullptr, params, nullptr),
            CUDA_ERROR_INVALID_HANDLE);

  // cuLaunchKernelEx: config and attributes.
  CUlaunchAttribute attr{};
  attr.id = CU_LAUNCH_ATTRIBUTE_PRIORITY;
  attr.value.priority = -3;
  CUlaunchConfig cfg{};
  cfg.gridDimX = 3;
  cfg.gridDimY = 2;
  cfg.gridDimZ = 1;
  cfg.blockDimX = 64;
  cfg.blockDimY = 1;
  cfg.blockDimZ = 1;
  cfg.sharedMemBytes = 512;
  cfg.attrs = &attr;
  cfg.numAttrs = 1;
  ASSERT_EQ(cuLaunchKernelEx(&cfg, f, params, nullptr), CUDA_SUCCESS);
  ASSERT_EQ(cuCtxSynchronize(), CUDA_SUCCESS);
  launches = server_->launches();
  ASSERT_EQ(launches.size(), 3u);
  EXPECT_EQ(launches[2].grid[1], 2u);
  EXPECT_EQ(launches[2].shared, 512u);
  ASSERT_EQ(launches[2].attrs.size(), 1u);
  EXPECT_EQ(launches[2].attrs[0].first, static_cast<uint32_t>(CU_LAUNCH_ATTRIBUTE_PRIORITY));
  int prio = 0;
  std::memcpy(&prio, launches[2].attrs[0].second.data(), sizeof(prio));
  EXPECT_EQ(prio, -3);

  int max_threads = 0;
  ASSERT_EQ(cuFuncGetAttribute(&max_threads, CU_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK, f),
            CUDA_SUCCESS);
  EXPECT_EQ(max_threads, 1024);

  ASSERT_EQ(cuModuleUnload(mod), CUDA_SUCCESS);
  EXPECT_EQ(cuModuleGetFunction(&again, mod, "vec_add"), CUDA_ERROR_INVALID_HANDLE);
}

TEST_F(ClientApiTest, ModuleGlobalsAreDeviceMemory) {
  InitWithContext();
  CUmodule mod = nullptr;
  ASSERT_EQ(cuModuleLoadData(&mod, "WOOLY-FAKE-MODULE v1\n"), CUDA_SUCCESS);
  CUdeviceptr g = 0;
  size_t bytes = 0;
  ASSERT_EQ(cuModuleGetGlobal(&g, &bytes, mod, "g_counter"), CUDA_SUCCESS);
  EXPECT_EQ(bytes, 4u);
  EXPECT_EQ(cuModuleGetGlobal(&g, &bytes, mod, "nope"), CUDA_ERROR_NOT_FOUND);
  // cuMemcpy treats the global as device memory.
  uint32_t v = 42, out = 0;
  ASSERT_EQ(cuMemcpy(g, reinterpret_cast<CUdeviceptr>(&v), 4), CUDA_SUCCESS);
  ASSERT_EQ(cuMemcpy(reinterpret_cast<CUdeviceptr>(&out), g, 4), CUDA_SUCCESS);
  EXPECT_EQ(out, 42u);
  EXPECT_EQ(server_->CountOp(wire::Op::kMemcpyHtoD), 1u);
}

TEST_F(ClientApiTest, LibraryKernelsAndFunctions) {
  InitWithContext();
  CUlibrary lib = nullptr;
  CUkernel k = nullptr;
  ASSERT_NO_FATAL_FAILURE(LoadStructKernel(&lib, &k));
  size_t off = 0, size = 0;
  ASSERT_EQ(cuKernelGetParamInfo(k, 0, &off, &size), CUDA_SUCCESS);
  EXPECT_EQ(size, 24u);
  const char* name = nullptr;
  ASSERT_EQ(cuKernelGetName(&name, k), CUDA_SUCCESS);
  EXPECT_STREQ(name, "struct_kernel");
  CUlibrary owner = nullptr;
  ASSERT_EQ(cuKernelGetLibrary(&owner, k), CUDA_SUCCESS);
  EXPECT_EQ(owner, lib);

  CUfunction f = nullptr, f2 = nullptr;
  ASSERT_EQ(cuKernelGetFunction(&f, k), CUDA_SUCCESS);
  ASSERT_EQ(cuKernelGetFunction(&f2, k), CUDA_SUCCESS);
  EXPECT_EQ(f, f2);
  EXPECT_EQ(server_->CountOp(wire::Op::kKernelGetFunction), 1u);
  ASSERT_EQ(cuFuncGetParamInfo(f, 1, &off, &size), CUDA_SUCCESS);
  EXPECT_EQ(off, 24u);
  CUmodule m1 = nullptr, m2 = nullptr;
  ASSERT_EQ(cuFuncGetModule(&m1, f), CUDA_SUCCESS);
  ASSERT_EQ(cuLibraryGetModule(&m2, lib), CUDA_SUCCESS);
  EXPECT_EQ(m1, m2);
  EXPECT_EQ(server_->CountOp(wire::Op::kLibraryGetModule), 1u);

  // A CUkernel may be launched as a CUfunction.
  struct {
    double x, y, z;
  } s{1, 2, 3};
  CUdeviceptr out = 0x99;
  void* params[] = {&s, &out};
  ASSERT_EQ(cuLaunchKernel(reinterpret_cast<CUfunction>(k), 1, 1, 1, 1, 1, 1, 0, nullptr, params,
                           nullptr),
            CUDA_SUCCESS);
  ASSERT_EQ(cuCtxSynchronize(), CUDA_SUCCESS);
  ASSERT_EQ(server_->launches().size(), 1u);
  EXPECT_EQ(server_->launches()[0].args.size(), 32u);
  ASSERT_EQ(cuLibraryUnload(lib), CUDA_SUCCESS);
}

// libcudart registers every fatbin of a process as a library; only those
// whose kernels are used are sent to woolyd.
TEST_F(ClientApiTest, LibrariesAreSentOnFirstUse) {
  InitWithContext();
  server_->ClearOps();
  static const char kImage[] = "WOOLY-FAKE-MODULE v1\n";
  CUlibraryOption preserved = CU_LIBRARY_BINARY_IS_PRESERVED;
  CUlibrary unused = nullptr, used = nullptr;
  ASSERT_EQ(cuLibraryLoadData(&unused, kImage, nullptr, nullptr, 0, &preserved, nullptr, 1),
            CUDA_SUCCESS);
  ASSERT_EQ(cuLibraryLoadData(&used, kImage, nullptr, nullptr, 0, &preserved, nullptr, 1),
            CUDA_SUCCESS);
  EXPECT_EQ(server_->CountOp(wire::Op::kLibraryLoadData), 0u);

  CUkernel k1 = nullptr, k2 = nullptr;
  ASSERT_EQ(cuLibraryGetKernel(&k1, used, "struct_kernel"), CUDA_SUCCESS);
  ASSERT_EQ(cuLibraryGetKernel(&k2, used, "other_kernel"), CUDA_SUCCESS);
  EXPECT_EQ(server_->CountOp(wire::Op::kLibraryLoadData), 1u);
  const std::vector<std::vector<uint8_t>> images = server_->images();
  ASSERT_EQ(images.size(), 1u);
  EXPECT_EQ(std::string(images[0].begin(), images[0].end()), std::string(kImage, sizeof(kImage)));

  // A library never sent is unloaded without asking woolyd.
  ASSERT_EQ(cuLibraryUnload(unused), CUDA_SUCCESS);
  EXPECT_EQ(server_->CountOp(wire::Op::kLibraryUnload), 0u);
  ASSERT_EQ(cuLibraryUnload(used), CUDA_SUCCESS);
  EXPECT_EQ(server_->CountOp(wire::Op::kLibraryUnload), 1u);
  EXPECT_EQ(cuLibraryUnload(unused), CUDA_ERROR_INVALID_HANDLE);
}

TEST_F(ClientApiTest, UnpreservedLibraryImagesAreCopied) {
  InitWithContext();
  // Without CU_LIBRARY_BINARY_IS_PRESERVED the caller may reuse its buffer
  // at once: what woolyd gets later is what was passed.
  std::string buffer = "WOOLY-FAKE-MODULE v1\n";
  const std::string original = buffer;
  CUlibrary lib = nullptr;
  ASSERT_EQ(cuLibraryLoadData(&lib, buffer.c_str(), nullptr, nullptr, 0, nullptr, nullptr, 0),
            CUDA_SUCCESS);
  buffer.assign(buffer.size(), 'x');
  CUdeviceptr g = 0;
  size_t bytes = 0;
  ASSERT_EQ(cuLibraryGetGlobal(&g, &bytes, lib, "g_counter"), CUDA_SUCCESS);
  const std::vector<std::vector<uint8_t>> images = server_->images();
  ASSERT_EQ(images.size(), 1u);
  EXPECT_EQ(std::string(images[0].begin(), images[0].end() - 1), original);
  ASSERT_EQ(cuLibraryUnload(lib), CUDA_SUCCESS);
}

TEST_F(ClientApiTest, LibraryLoadErrorsComeAtFirstUseAndRepeat) {
  InitWithContext();
  CUlibrary lib = nullptr;
  ASSERT_EQ(cuLibraryLoadData(&lib, "WOOLY-FAKE-BAD\n", nullptr, nullptr, 0, nullptr, nullptr, 0),
            CUDA_SUCCESS);
  CUkernel k = nullptr;
  EXPECT_EQ(cuLibraryGetKernel(&k, lib, "struct_kernel"), CUDA_ERROR_INVALID_IMAGE);
  CUmodule m = nullptr;
  EXPECT_EQ(cuLibraryGetModule(&m, lib), CUDA_ERROR_INVALID_IMAGE);
  EXPECT_EQ(server_->CountOp(wire::Op::kLibraryLoadData), 2u);
  ASSERT_EQ(cuLibraryUnload(lib), CUDA_SUCCESS);
  EXPECT_EQ(server_->CountOp(wire::Op::kLibraryUnload), 0u);
}

TEST_F(ClientApiTest, FunctionAttributesAreAskedOnceAndSetsAreNotRepeated) {
  InitWithContext();
  CUlibrary lib = nullptr;
  CUkernel k = nullptr;
  ASSERT_NO_FATAL_FAILURE(LoadStructKernel(&lib, &k));
  CUfunction f = nullptr;
  ASSERT_EQ(cuKernelGetFunction(&f, k), CUDA_SUCCESS);
  server_->ClearOps();
  int v = 0;
  for (int i = 0; i < 3; ++i) {
    ASSERT_EQ(cuFuncGetAttribute(&v, CU_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK, f), CUDA_SUCCESS);
    EXPECT_EQ(v, 1024);
  }
  EXPECT_EQ(server_->CountOp(wire::Op::kFuncGetAttribute), 1u);

  // A set is sent once per new value; the next get asks again.
  const auto smem = CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES;
  ASSERT_EQ(cuFuncGetAttribute(&v, smem, f), CUDA_SUCCESS);
  EXPECT_EQ(v, 0);
  for (int i = 0; i < 3; ++i) ASSERT_EQ(cuFuncSetAttribute(f, smem, 65536), CUDA_SUCCESS);
  EXPECT_EQ(server_->CountOp(wire::Op::kFuncSetAttribute), 1u);
  ASSERT_EQ(cuFuncGetAttribute(&v, smem, f), CUDA_SUCCESS);
  EXPECT_EQ(v, 65536);
  // The kernel is the same driver function: it sees the set too, and
  // setting the same value through it needs no round trip.
  ASSERT_EQ(cuKernelGetAttribute(&v, smem, k, 0), CUDA_SUCCESS);
  ASSERT_EQ(cuKernelSetAttribute(smem, 65536, k, 0), CUDA_SUCCESS);
  EXPECT_EQ(server_->CountOp(wire::Op::kFuncSetAttribute), 1u);
  ASSERT_EQ(cuKernelSetAttribute(smem, 1024, k, 0), CUDA_SUCCESS);
  const size_t gets = server_->CountOp(wire::Op::kFuncGetAttribute);
  ASSERT_EQ(cuFuncGetAttribute(&v, smem, f), CUDA_SUCCESS);
  EXPECT_EQ(server_->CountOp(wire::Op::kFuncGetAttribute), gets + 1) << "asked again";
  ASSERT_EQ(cuFuncSetAttribute(f, smem, 65536), CUDA_SUCCESS);
  EXPECT_EQ(server_->CountOp(wire::Op::kFuncSetAttribute), 3u);
  // A refused set is not remembered.
  EXPECT_EQ(cuFuncSetAttribute(f, smem, -1), CUDA_ERROR_INVALID_VALUE);
  EXPECT_EQ(cuFuncSetAttribute(f, smem, -1), CUDA_ERROR_INVALID_VALUE);
  EXPECT_EQ(server_->CountOp(wire::Op::kFuncSetAttribute), 5u);
  ASSERT_EQ(cuLibraryUnload(lib), CUDA_SUCCESS);
}

// cuDNN reads a context limit once per attention call: after the first
// answer it is local, until this client sets a limit or the context goes.
TEST_F(ClientApiTest, ContextLimitsAreAskedOnceUntilSet) {
  InitWithContext();
  server_->ClearOps();
  size_t v = 0;
  for (int i = 0; i < 3; ++i) {
    ASSERT_EQ(cuCtxGetLimit(&v, CU_LIMIT_STACK_SIZE), CUDA_SUCCESS);
    EXPECT_EQ(v, 1024u);
  }
  EXPECT_EQ(server_->CountOp(wire::Op::kCtxGetLimit), 1u);
  ASSERT_EQ(cuCtxSetLimit(CU_LIMIT_STACK_SIZE, 4096), CUDA_SUCCESS);
  ASSERT_EQ(cuCtxGetLimit(&v, CU_LIMIT_STACK_SIZE), CUDA_SUCCESS);
  EXPECT_EQ(v, 4096u);
  EXPECT_EQ(server_->CountOp(wire::Op::kCtxGetLimit), 2u);
  // A primary context reset starts from woolyd's answer again.
  ASSERT_EQ(cuDevicePrimaryCtxReset(0), CUDA_SUCCESS);
  ASSERT_EQ(cuDevicePrimaryCtxRetain(&ctx_, 0), CUDA_SUCCESS);
  ASSERT_EQ(cuCtxSetCurrent(ctx_), CUDA_SUCCESS);
  ASSERT_EQ(cuCtxGetLimit(&v, CU_LIMIT_STACK_SIZE), CUDA_SUCCESS);
  EXPECT_EQ(server_->CountOp(wire::Op::kCtxGetLimit), 3u);
}

// --- streams and events

TEST_F(ClientApiTest, StreamsAndEvents) {
  InitWithContext();
  CUstream s = nullptr;
  EXPECT_EQ(cuStreamCreate(&s, 0x10), CUDA_ERROR_INVALID_VALUE);
  ASSERT_EQ(cuStreamCreateWithPriority(&s, CU_STREAM_NON_BLOCKING, -100), CUDA_SUCCESS);
  int prio = 0;
  ASSERT_EQ(cuStreamGetPriority(s, &prio), CUDA_SUCCESS);
  EXPECT_EQ(prio, -5) << "clamped to the greatest priority";
  EXPECT_EQ(server_->stream_creates().back(), std::make_pair(1u, -5));
  unsigned flags = 0;
  ASSERT_EQ(cuStreamGetFlags(s, &flags), CUDA_SUCCESS);
  EXPECT_EQ(flags, static_cast<unsigned>(CU_STREAM_NON_BLOCKING));
  CUcontext sctx = nullptr;
  ASSERT_EQ(cuStreamGetCtx(s, &sctx), CUDA_SUCCESS);
  EXPECT_EQ(sctx, ctx_);
  unsigned long long id1 = 0, id2 = 0;
  ASSERT_EQ(cuStreamGetId(s, &id1), CUDA_SUCCESS);
  ASSERT_EQ(cuStreamGetId(CU_STREAM_LEGACY, &id2), CUDA_SUCCESS);
  EXPECT_NE(id1, id2);

  CUevent start = nullptr, stop = nullptr;
  ASSERT_EQ(cuEventCreate(&start, CU_EVENT_DEFAULT), CUDA_SUCCESS);
  ASSERT_EQ(cuEventCreate(&stop, CU_EVENT_BLOCKING_SYNC), CUDA_SUCCESS);
  EXPECT_EQ(cuEventCreate(&stop, CU_EVENT_INTERPROCESS), CUDA_ERROR_INVALID_VALUE);
  ASSERT_EQ(cuEventRecord(start, s), CUDA_SUCCESS);
  ASSERT_EQ(cuStreamWaitEvent(nullptr, start, 0), CUDA_SUCCESS);
  ASSERT_EQ(cuEventRecord(stop, s), CUDA_SUCCESS);
  ASSERT_EQ(cuEventSynchronize(stop), CUDA_SUCCESS);
  EXPECT_EQ(cuEventQuery(stop), CUDA_ERROR_NOT_READY);  // passed through from the server
  float ms = 0;
  ASSERT_EQ(cuEventElapsedTime(&ms, start, stop), CUDA_SUCCESS);
  EXPECT_EQ(ms, 1.5f);
  ASSERT_EQ(cuStreamSynchronize(s), CUDA_SUCCESS);
  ASSERT_EQ(cuStreamDestroy(s), CUDA_SUCCESS);
  EXPECT_EQ(cuStreamSynchronize(s), CUDA_ERROR_INVALID_HANDLE);
  ASSERT_EQ(cuEventDestroy(start), CUDA_SUCCESS);
  ASSERT_EQ(cuEventDestroy(stop), CUDA_SUCCESS);
  EXPECT_EQ(cuEventSynchronize(stop), CUDA_ERROR_INVALID_HANDLE);
  ASSERT_EQ(cuCtxSynchronize(), CUDA_SUCCESS);
}

TEST_F(ClientApiTest, PerThreadDefaultStream) {
  InitWithContext();
  const size_t creates_before = server_->stream_creates().size();
  ASSERT_EQ(cuStreamSynchronize(CU_STREAM_PER_THREAD), CUDA_SUCCESS);
  ASSERT_EQ(cuStreamSynchronize_ptsz(nullptr), CUDA_SUCCESS);
  ASSERT_EQ(cuStreamSynchronize(nullptr), CUDA_SUCCESS);
  EXPECT_EQ(server_->stream_creates().size(), creates_before + 1) << "created once per thread";
  auto syncs = server_->stream_syncs();
  ASSERT_EQ(syncs.size(), 3u);
  EXPECT_EQ(syncs[0], syncs[1]);
  EXPECT_NE(syncs[0], wire::kStreamNull);
  EXPECT_EQ(syncs[2], wire::kStreamNull);

  // Another thread gets its own, destroyed when it exits.
  std::thread t([&] {
    cuCtxSetCurrent(ctx_);
    cuStreamSynchronize(CU_STREAM_PER_THREAD);
  });
  t.join();
  syncs = server_->stream_syncs();
  ASSERT_EQ(syncs.size(), 4u);
  EXPECT_NE(syncs[3], syncs[0]);
  EXPECT_EQ(server_->CountOp(wire::Op::kStreamDestroy), 1u);
}

// --- failures

TEST_F(ClientApiTest, DroppedConnectionFailsCallsInsteadOfHanging) {
  InitWithContext();
  CUdeviceptr d = 0;
  ASSERT_EQ(cuMemAlloc(&d, 64), CUDA_SUCCESS);
  server_->DropOnNextRequest();
  // A memset is sent without waiting, so it may still look sent; the next
  // call that waits must fail, not hang.
  const CUresult posted = cuMemsetD8(d, 0, 64);
  EXPECT_TRUE(posted == CUDA_SUCCESS || posted == CUDA_ERROR_DEVICE_UNAVAILABLE) << posted;
  EXPECT_EQ(cuMemAlloc(&d, 2 << 20), CUDA_ERROR_DEVICE_UNAVAILABLE);  // not a local block
  EXPECT_EQ(cuCtxSynchronize(), CUDA_ERROR_DEVICE_UNAVAILABLE);
  // Local answers keep working.
  int n = 0;
  EXPECT_EQ(cuDeviceGetCount(&n), CUDA_SUCCESS);
}

TEST_F(ClientApiTest, ForkedChildReconnectsWithItsOwnSession) {
  InitWithContext();
  CUdeviceptr d = 0;
  ASSERT_EQ(cuMemAlloc(&d, 64), CUDA_SUCCESS);
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    // The child's first call says Hello again on a new connection.
    CUdeviceptr c = 0;
    int code = cuMemAlloc(&c, 32) == CUDA_SUCCESS ? 0 : 1;
    // The context stack and device answers carry over.
    CUdevice dev = -1;
    if (cuCtxGetDevice(&dev) != CUDA_SUCCESS || dev != 0) code |= 2;
    ::_exit(code);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
  const auto pids = server_->hello_pids();
  ASSERT_EQ(pids.size(), 2u);
  EXPECT_EQ(pids[0], static_cast<uint32_t>(::getpid()));
  EXPECT_EQ(pids[1], static_cast<uint32_t>(child));
  // The parent's session is unaffected.
  EXPECT_EQ(cuMemsetD8(d, 1, 64), CUDA_SUCCESS);
  EXPECT_EQ(cuMemFree(d), CUDA_SUCCESS);
}

TEST_F(ClientApiTest, ModuleLoadingMode) {
  ASSERT_EQ(cuInit(0), CUDA_SUCCESS);
  CUmoduleLoadingMode mode;
  ::unsetenv("CUDA_MODULE_LOADING");
  ASSERT_EQ(cuModuleGetLoadingMode(&mode), CUDA_SUCCESS);
  EXPECT_EQ(mode, CU_MODULE_EAGER_LOADING);
  ::setenv("CUDA_MODULE_LOADING", "LAZY", 1);
  ASSERT_EQ(cuModuleGetLoadingMode(&mode), CUDA_SUCCESS);
  EXPECT_EQ(mode, CU_MODULE_LAZY_LOADING);
  ::unsetenv("CUDA_MODULE_LOADING");
}

// --- pipelined copies (Connection::CallPipelined)

// Device-to-host copies over the socket arrive whole and in order whatever
// their size: within one piece, across pieces and across batches.
TEST_F(ClientApiTest, PipelinedDeviceToHostCopiesKeepTheirBytesInOrder) {
  InitWithContext();
  const size_t max = wire::kCopyChunk + 2 * kPipelineChunk + 12345;
  CUdeviceptr d = 0;
  ASSERT_EQ(cuMemAlloc(&d, max), CUDA_SUCCESS);
  std::vector<uint8_t> in(max);
  for (size_t i = 0; i < max; ++i) in[i] = static_cast<uint8_t>(i * 131 + (i >> 16));
  ASSERT_EQ(cuMemcpyHtoD(d, in.data(), max), CUDA_SUCCESS);
  for (size_t n : {size_t{1}, size_t{4097}, size_t{kPipelineChunk}, size_t{kPipelineChunk + 1},
                   size_t{3 * kPipelineChunk + 12345}, size_t{wire::kCopyChunk},
                   size_t{wire::kCopyChunk + 1}, max - 7}) {
    SCOPED_TRACE(n);
    server_->ClearOps();
    std::vector<uint8_t> out(n + 2, 0xee);  // one guard byte each side
    ASSERT_EQ(cuMemcpyDtoH(out.data() + 1, d + 7, n), CUDA_SUCCESS);
    EXPECT_EQ(out.front(), 0xee);
    EXPECT_EQ(out.back(), 0xee);
    EXPECT_TRUE(std::equal(out.begin() + 1, out.end() - 1, in.begin() + 7));
    EXPECT_EQ(server_->CountOp(wire::Op::kMemcpyDtoH), (n + kPipelineChunk - 1) / kPipelineChunk);
  }
  ASSERT_EQ(cuMemFree(d), CUDA_SUCCESS);
}

// Work posted before the copy (batched, not yet written) reaches woolyd
// first: the copy sees the memset.
TEST_F(ClientApiTest, PipelinedCopiesComeAfterPostedWork) {
  InitWithContext();
  const size_t n = 3 * kPipelineChunk;
  CUdeviceptr d = 0;
  ASSERT_EQ(cuMemAlloc(&d, n), CUDA_SUCCESS);
  server_->ClearOps();
  ASSERT_EQ(cuMemsetD8(d, 0xab, n), CUDA_SUCCESS);
  std::vector<uint8_t> out(n, 0);
  ASSERT_EQ(cuMemcpyDtoH(out.data(), d, n), CUDA_SUCCESS);
  EXPECT_TRUE(std::all_of(out.begin(), out.end(), [](uint8_t b) { return b == 0xab; }));
  const std::vector<wire::Op> ops = server_->ops();
  ASSERT_FALSE(ops.empty());
  EXPECT_EQ(ops.front(), wire::Op::kMemset);
  ASSERT_EQ(cuMemFree(d), CUDA_SUCCESS);
}

// A piece woolyd refuses fails the copy; the pieces already in flight are
// drained, so the next call gets its own reply.
TEST_F(ClientApiTest, PipelinedCopyErrorLeavesTheConnectionUsable) {
  InitWithContext();
  const size_t size = 2 * kPipelineChunk + 100;
  CUdeviceptr d = 0;
  ASSERT_EQ(cuMemAlloc(&d, size), CUDA_SUCCESS);
  std::vector<uint8_t> in(size);
  std::iota(in.begin(), in.end(), 0);
  ASSERT_EQ(cuMemcpyHtoD(d, in.data(), size), CUDA_SUCCESS);
  // Pieces 0 and 1 are inside the allocation; piece 2 runs past its end.
  std::vector<uint8_t> out(12 * kPipelineChunk);
  server_->ClearOps();
  EXPECT_EQ(cuMemcpyDtoH(out.data(), d, out.size()), CUDA_ERROR_INVALID_VALUE);
  // Nothing is sent after the failure but what was already in flight.
  EXPECT_LE(server_->CountOp(wire::Op::kMemcpyDtoH), 2 + kPipelineWindow);
  std::vector<uint8_t> back(size, 0);
  ASSERT_EQ(cuMemcpyDtoH(back.data(), d, size), CUDA_SUCCESS);
  EXPECT_TRUE(back == in);
  size_t free_b = 0, total_b = 0;
  ASSERT_EQ(cuMemGetInfo(&free_b, &total_b), CUDA_SUCCESS);
  EXPECT_EQ(total_b, FakeWoolyd::kTotalMem);
  ASSERT_EQ(cuMemFree(d), CUDA_SUCCESS);
}

// Host-to-device copies to a range this process does not know wait for
// woolyd's answers, pipelined the same way.
TEST_F(ClientApiTest, PipelinedHostToDeviceCopiesToUnknownRanges) {
  InitWithContext();
  const size_t size = 3 * kPipelineChunk;
  CUdeviceptr a = 0;
  ASSERT_EQ(cuMemAlloc(&a, size), CUDA_SUCCESS);
  // A copy running past the end of `a` is in no known range, and woolyd
  // refuses its last piece.
  std::vector<uint8_t> in(size + 10);
  for (size_t i = 0; i < in.size(); ++i) in[i] = static_cast<uint8_t>(i * 3 + (i >> 12));
  server_->ClearOps();
  EXPECT_EQ(cuMemcpyHtoD(a + 5, in.data(), size), CUDA_ERROR_INVALID_VALUE);
  EXPECT_EQ(server_->CountOp(wire::Op::kMemcpyHtoD), 3u);
  // The pieces before it landed (CUDA leaves a failed copy's target
  // undefined; the fake copies them), and the stream is in step.
  std::vector<uint8_t> back(size - 5, 0);
  ASSERT_EQ(cuMemcpyDtoH(back.data(), a + 5, back.size()), CUDA_SUCCESS);
  EXPECT_TRUE(std::equal(back.begin(), back.begin() + 2 * kPipelineChunk, in.begin()));
  ASSERT_EQ(cuMemFree(a), CUDA_SUCCESS);
}

TEST_F(ClientApiTest, ConnectionDroppedDuringAPipelinedCopyFailsInsteadOfHanging) {
  InitWithContext();
  const size_t n = 5 * kPipelineChunk;
  CUdeviceptr d = 0;
  ASSERT_EQ(cuMemAlloc(&d, n), CUDA_SUCCESS);
  std::vector<uint8_t> out(n);
  server_->DropOnNextRequest();
  EXPECT_EQ(cuMemcpyDtoH(out.data(), d, n), CUDA_ERROR_DEVICE_UNAVAILABLE);
  EXPECT_EQ(cuMemcpyDtoH(out.data(), d, n), CUDA_ERROR_DEVICE_UNAVAILABLE);
  EXPECT_EQ(cuCtxSynchronize(), CUDA_ERROR_DEVICE_UNAVAILABLE);
}

// A woolyd whose every move after the Hello is scripted by the test, to
// see the order of requests and replies on the wire.
class ScriptedWoolyd {
 public:
  // `script` runs on the accepted connection's fd after the Hello (and the
  // declined shared-memory attach); the connection closes when it returns.
  explicit ScriptedWoolyd(std::function<void(int fd)> script) : script_(std::move(script)) {
    char tmpl[] = "/tmp/wooly-scripted-XXXXXX";
    dir_ = ::mkdtemp(tmpl);
    endpoint_ = "unix:" + dir_ + "/woolyd.sock";
    wire::Endpoint ep;
    std::string err;
    EXPECT_TRUE(wire::ParseEndpoint(endpoint_, &ep, &err)) << err;
    listen_fd_ = wire::Listen(ep, 0600, &err);
    EXPECT_GE(listen_fd_, 0) << err;
    thread_ = std::thread([this] { Serve(); });
  }
  ~ScriptedWoolyd() {
    thread_.join();
    ::close(listen_fd_);
    ::unlink((dir_ + "/woolyd.sock").c_str());
    ::rmdir(dir_.c_str());
  }
  const std::string& endpoint() const { return endpoint_; }

  // Reads one request frame; false when the client is gone or none comes
  // within 30 s (a client that waits for a reply before sending more).
  static bool ReadRequest(int fd, wire::FrameHeader* h, std::vector<uint8_t>* payload) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 30000) != 1 || !wire::ReadHeader(fd, h)) return false;
    payload->resize(h->length);
    return h->length == 0 || wire::ReadFull(fd, payload->data(), h->length);
  }
  // Replies to `h` with `result` and `data` after it.
  static bool Reply(int fd, const wire::FrameHeader& h, int32_t result,
                    const std::vector<uint8_t>& data = {}) {
    return wire::WriteFrame(fd, h.op | wire::kReplyBit, h.seq, &result, sizeof(result), data.data(),
                            data.size());
  }

 private:
  void Serve() {
    const int fd = ::accept(listen_fd_, nullptr, nullptr);
    if (fd < 0) return;
    wire::FrameHeader h;
    std::vector<uint8_t> payload;
    if (ReadRequest(fd, &h, &payload) && h.op == static_cast<uint16_t>(wire::Op::kHello)) {
      wire::Writer out;
      wire::DeviceInfo d;
      d.name = "Scripted GPU";
      d.attributes.assign(CU_DEVICE_ATTRIBUTE_MAX, 0);
      out.Put<int32_t>(CUDA_SUCCESS)
          .Put<uint32_t>(wire::kProtocolVersion)
          .PutStr("scripted")
          .Put<uint64_t>(1);
      wire::PutDeviceInfo(out, d);
      wire::WriteFrame(fd, h.op | wire::kReplyBit, h.seq, out.data().data(), out.size());
      script_(fd);
    }
    ::shutdown(fd, SHUT_RDWR);
    ::close(fd);
  }

  std::function<void(int fd)> script_;
  std::string dir_;
  std::string endpoint_;
  int listen_fd_ = -1;
  std::thread thread_;
};

class PipelinedCallTest : public ::testing::Test {
 protected:
  void SetUp() override {
    SetLogLevelForTesting(LogLevel::kOff);
    ::setenv("WOOLY_SHM", "0", 1);  // the scripted woolyd speaks on the socket only
  }
  void TearDown() override { ::unsetenv("WOOLY_SHM"); }

  // Device-to-host requests for `count` pieces of `len` bytes into `out`.
  static std::vector<PipelinedRequest> DtoH(size_t count, size_t len, std::vector<uint8_t>* out) {
    out->assign(count * len, 0);
    std::vector<PipelinedRequest> requests(count);
    for (size_t i = 0; i < count; ++i) {
      wire::Writer& w = requests[i].body;  // (src, size, stream, async)
      w.Put<uint64_t>(kBase + i * len).Put<uint64_t>(len).Put<uint64_t>(0).Put<uint8_t>(0);
      requests[i].out_tail = out->data() + i * len;
      requests[i].out_tail_len = len;
    }
    return requests;
  }
  // What the scripted device holds at `src`: one byte pattern per piece.
  static std::vector<uint8_t> Piece(const std::vector<uint8_t>& request) {
    wire::Reader r(request.data(), request.size());
    const uint64_t src = r.Get<uint64_t>();
    const uint64_t len = r.Get<uint64_t>();
    std::vector<uint8_t> data(len);
    for (uint64_t i = 0; i < len; ++i) data[i] = static_cast<uint8_t>((src - kBase + i) * 7 + 1);
    return data;
  }
  static bool Expected(const std::vector<uint8_t>& out, size_t bytes) {
    for (size_t i = 0; i < bytes; ++i) {
      if (out[i] != static_cast<uint8_t>(i * 7 + 1)) return false;
    }
    return true;
  }

  static constexpr uint64_t kBase = 0x700000000000ull;
};

// Several requests are on the wire before the first reply: woolyd reads the
// next one while the client drains the last reply. Request i + window
// follows reply i.
TEST_F(PipelinedCallTest, KeepsAWindowOfRequestsInFlight) {
  constexpr size_t kWindow = 3, kCount = 5, kLen = 1000;
  std::vector<std::string> events;  // written by the script, read once it is done
  auto server = std::make_unique<ScriptedWoolyd>([&](int fd) {
    std::vector<wire::FrameHeader> h(kCount);
    std::vector<std::vector<uint8_t>> body(kCount);
    auto read = [&](size_t i) {
      if (!ScriptedWoolyd::ReadRequest(fd, &h[i], &body[i])) return false;
      events.push_back("request " + std::to_string(i));
      return true;
    };
    auto reply = [&](size_t i) {
      events.push_back("reply " + std::to_string(i));
      return ScriptedWoolyd::Reply(fd, h[i], CUDA_SUCCESS, Piece(body[i]));
    };
    // Nothing is answered until the whole window has arrived.
    for (size_t i = 0; i < kWindow; ++i) {
      if (!read(i)) return;
    }
    // No more than the window came.
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 0) != 0) events.push_back("early request");
    if (!reply(0) || !read(3) || !reply(1) || !read(4)) return;
    for (size_t i = 2; i < kCount; ++i) {
      if (!reply(i)) return;
    }
  });
  Connection conn(server->endpoint(), ClientIdentity{});
  SessionInfo info;
  std::string error;
  ASSERT_EQ(conn.Start(&info, &error), CUDA_SUCCESS) << error;
  std::vector<uint8_t> out;
  const std::vector<PipelinedRequest> requests = DtoH(kCount, kLen, &out);
  ASSERT_EQ(conn.CallPipelined(wire::Op::kMemcpyDtoH, requests, kWindow), CUDA_SUCCESS);
  EXPECT_TRUE(Expected(out, kCount * kLen));
  server.reset();
  const std::vector<std::string> want = {"request 0", "request 1", "request 2", "reply 0",
                                         "request 3", "reply 1",   "request 4", "reply 2",
                                         "reply 3",   "reply 4"};
  EXPECT_EQ(events, want);
}

// The first failure is returned; no request follows it, the replies in
// flight are read (error fields and all), and the connection serves the
// next call.
TEST_F(PipelinedCallTest, AFailedPieceIsReturnedAndTheStreamStaysInStep) {
  constexpr size_t kCount = 6, kLen = 4096;
  std::vector<uint16_t> later_ops;  // written by the script, read once it is done
  auto server = std::make_unique<ScriptedWoolyd>([&](int fd) {
    wire::FrameHeader h[3];
    std::vector<uint8_t> body[3];
    if (!ScriptedWoolyd::ReadRequest(fd, &h[0], &body[0]) ||
        !ScriptedWoolyd::ReadRequest(fd, &h[1], &body[1]) ||
        !ScriptedWoolyd::Reply(fd, h[0], CUDA_SUCCESS, Piece(body[0])) ||
        !ScriptedWoolyd::ReadRequest(fd, &h[2], &body[2]) ||
        !ScriptedWoolyd::Reply(fd, h[1], CUDA_ERROR_INVALID_VALUE, std::vector<uint8_t>(9, 1)) ||
        !ScriptedWoolyd::Reply(fd, h[2], CUDA_ERROR_ILLEGAL_ADDRESS)) {
      return;
    }
    // What comes next must be the next call, not the rest of the copy.
    wire::FrameHeader next;
    std::vector<uint8_t> payload;
    if (!ScriptedWoolyd::ReadRequest(fd, &next, &payload)) return;
    later_ops.push_back(next.op);
    wire::Writer info;
    info.Put<uint64_t>(1).Put<uint64_t>(2);
    ScriptedWoolyd::Reply(fd, next, CUDA_SUCCESS, info.data());
  });
  Connection conn(server->endpoint(), ClientIdentity{});
  SessionInfo info;
  std::string error;
  ASSERT_EQ(conn.Start(&info, &error), CUDA_SUCCESS) << error;
  std::vector<uint8_t> out;
  const std::vector<PipelinedRequest> requests = DtoH(kCount, kLen, &out);
  EXPECT_EQ(conn.CallPipelined(wire::Op::kMemcpyDtoH, requests, 2), CUDA_ERROR_INVALID_VALUE);
  EXPECT_TRUE(Expected(out, kLen));
  Reply reply;
  ASSERT_EQ(conn.Call(wire::Op::kMemGetInfo, wire::Writer(), &reply), CUDA_SUCCESS);
  wire::Reader rd = reply.reader();
  EXPECT_EQ(rd.Get<uint64_t>(), 1u);
  EXPECT_EQ(rd.Get<uint64_t>(), 2u);
  EXPECT_TRUE(rd.ok());
  server.reset();
  EXPECT_EQ(later_ops, std::vector<uint16_t>{static_cast<uint16_t>(wire::Op::kMemGetInfo)});
}

// woolyd goes away in the middle of a reply, with more requests in flight:
// the call fails at once and so does every later one.
TEST_F(PipelinedCallTest, ADroppedConnectionFailsTheCallWithoutHanging) {
  constexpr size_t kCount = 6, kLen = 1 << 16;
  ScriptedWoolyd server([&](int fd) {
    wire::FrameHeader h[2];
    std::vector<uint8_t> body[2];
    if (!ScriptedWoolyd::ReadRequest(fd, &h[0], &body[0]) ||
        !ScriptedWoolyd::ReadRequest(fd, &h[1], &body[1]) ||
        !ScriptedWoolyd::Reply(fd, h[0], CUDA_SUCCESS, Piece(body[0]))) {
      return;
    }
    // Half of the second reply, then the connection closes.
    const int32_t ok = CUDA_SUCCESS;
    std::vector<uint8_t> half = Piece(body[1]);
    half.resize(kLen / 2);
    wire::FrameHeader rh{wire::kMagic, static_cast<uint16_t>(h[1].op | wire::kReplyBit), 0,
                         static_cast<uint32_t>(sizeof(ok) + kLen), h[1].seq};
    if (::send(fd, &rh, sizeof(rh), MSG_NOSIGNAL) < 0 ||
        ::send(fd, &ok, sizeof(ok), MSG_NOSIGNAL) < 0) {
      return;
    }
    ::send(fd, half.data(), half.size(), MSG_NOSIGNAL);
  });
  Connection conn(server.endpoint(), ClientIdentity{});
  SessionInfo info;
  std::string error;
  ASSERT_EQ(conn.Start(&info, &error), CUDA_SUCCESS) << error;
  std::vector<uint8_t> out;
  const std::vector<PipelinedRequest> requests = DtoH(kCount, kLen, &out);
  EXPECT_EQ(conn.CallPipelined(wire::Op::kMemcpyDtoH, requests, 2), CUDA_ERROR_DEVICE_UNAVAILABLE);
  EXPECT_TRUE(Expected(out, kLen));
  EXPECT_EQ(conn.CallPipelined(wire::Op::kMemcpyDtoH, requests, 2), CUDA_ERROR_DEVICE_UNAVAILABLE);
  EXPECT_EQ(conn.Call(wire::Op::kMemGetInfo, wire::Writer(), nullptr),
            CUDA_ERROR_DEVICE_UNAVAILABLE);
}

// A successful reply longer than its data is malformed: reported, and the
// stream stays in step.
TEST_F(PipelinedCallTest, AnOverlongReplyIsAnError) {
  ScriptedWoolyd server([&](int fd) {
    for (int i = 0; i < 2; ++i) {
      wire::FrameHeader h;
      std::vector<uint8_t> body;
      if (!ScriptedWoolyd::ReadRequest(fd, &h, &body)) return;
      std::vector<uint8_t> data = Piece(body);
      if (i == 0) data.resize(data.size() + 3);
      if (!ScriptedWoolyd::Reply(fd, h, CUDA_SUCCESS, data)) return;
    }
    wire::FrameHeader h;
    std::vector<uint8_t> body;
    if (ScriptedWoolyd::ReadRequest(fd, &h, &body)) ScriptedWoolyd::Reply(fd, h, CUDA_SUCCESS);
  });
  Connection conn(server.endpoint(), ClientIdentity{});
  SessionInfo info;
  std::string error;
  ASSERT_EQ(conn.Start(&info, &error), CUDA_SUCCESS) << error;
  std::vector<uint8_t> out;
  const std::vector<PipelinedRequest> requests = DtoH(2, 100, &out);
  EXPECT_EQ(conn.CallPipelined(wire::Op::kMemcpyDtoH, requests, 4), CUDA_ERROR_UNKNOWN);
  EXPECT_TRUE(Expected(out, 200));
  EXPECT_EQ(conn.Call(wire::Op::kCtxSynchronize, wire::Writer(), nullptr), CUDA_SUCCESS);
}

// --- local allocation (alloc_arena.h; on unless WOOLY_LOCAL_ALLOC=0)

class LocalAllocTest : public ClientApiTest {
 protected:
  void SetUp() override {
    ::setenv("WOOLY_LOCAL_ALLOC", "1", 1);
    ClientApiTest::SetUp();
  }
  void TearDown() override {
    ClientApiTest::TearDown();
    ::unsetenv("WOOLY_LOCAL_ALLOC");
  }
};

// Small allocations come from one arena woolyd allocated in advance: one
// round trip for many cuMemAlloc calls, each still an allocation of its own.
TEST_F(LocalAllocTest, SmallAllocationsComeFromAnArena) {
  InitWithContext();
  server_->ClearOps();
  CUdeviceptr a = 0, b = 0, c = 0;
  ASSERT_EQ(cuMemAlloc(&a, 1000), CUDA_SUCCESS);
  ASSERT_EQ(cuMemAlloc(&b, 4096), CUDA_SUCCESS);
  ASSERT_EQ(cuMemAlloc(&c, 1 << 20), CUDA_SUCCESS);
  EXPECT_EQ(server_->CountOp(wire::Op::kMemAlloc), 1u);
  for (CUdeviceptr p : {a, b, c}) EXPECT_EQ(p % 512, 0u);
  EXPECT_GE(b, a + 1000);
  EXPECT_GE(c, b + 4096);
  // Address ranges and buffer ids are the block's own.
  CUdeviceptr base = 0;
  size_t size = 0;
  ASSERT_EQ(cuMemGetAddressRange(&base, &size, a + 10), CUDA_SUCCESS);
  EXPECT_EQ(base, a);
  EXPECT_EQ(size, 1000u);
  ASSERT_EQ(cuMemGetAddressRange(&base, &size, b + 4095), CUDA_SUCCESS);
  EXPECT_EQ(base, b);
  EXPECT_EQ(size, 4096u);
  unsigned long long id_a = 0, id_b = 0;
  ASSERT_EQ(cuPointerGetAttribute(&id_a, CU_POINTER_ATTRIBUTE_BUFFER_ID, a), CUDA_SUCCESS);
  ASSERT_EQ(cuPointerGetAttribute(&id_b, CU_POINTER_ATTRIBUTE_BUFFER_ID, b), CUDA_SUCCESS);
  EXPECT_NE(id_a, id_b);
  // Data goes where the block is.
  std::vector<uint8_t> in(4096), out(4096, 0);
  for (size_t i = 0; i < in.size(); ++i) in[i] = static_cast<uint8_t>(i * 7);
  ASSERT_EQ(cuMemcpyHtoD(b, in.data(), in.size()), CUDA_SUCCESS);
  ASSERT_EQ(cuMemcpyDtoH(out.data(), b, out.size()), CUDA_SUCCESS);
  EXPECT_EQ(in, out);
  // Larger allocations are woolyd's own.
  CUdeviceptr big = 0;
  ASSERT_EQ(cuMemAlloc(&big, (1 << 20) + 1), CUDA_SUCCESS);
  EXPECT_EQ(server_->CountOp(wire::Op::kMemAlloc), 2u);
  // A freed block is reused without a round trip; the free is posted with
  // the synchronization the driver's cuMemFree implies.
  server_->ClearOps();
  ASSERT_EQ(cuMemFree(b), CUDA_SUCCESS);
  CUdeviceptr again = 0;
  ASSERT_EQ(cuMemAlloc(&again, 4096), CUDA_SUCCESS);
  EXPECT_EQ(again, b);
  ASSERT_EQ(cuCtxSynchronize(), CUDA_SUCCESS);
  EXPECT_EQ(server_->CountOp(wire::Op::kMemAlloc), 0u);
  EXPECT_EQ(server_->CountOp(wire::Op::kMemFree), 0u);
  EXPECT_EQ(server_->CountOp(wire::Op::kCtxSynchronize), 2u);  // the free's and ours
  EXPECT_EQ(cuMemFree(b + 512), CUDA_ERROR_INVALID_VALUE);     // not a block's base
  for (CUdeviceptr p : {a, again, c, big}) EXPECT_EQ(cuMemFree(p), CUDA_SUCCESS);
}

// cuMemFreeAsync of a block frees it as cuMemFree does (woolyd never sees
// the block, only its arena).
TEST_F(LocalAllocTest, FreeAsyncOfABlockIsLocalToo) {
  InitWithContext();
  CUdeviceptr a = 0;
  ASSERT_EQ(cuMemAlloc(&a, 4096), CUDA_SUCCESS);
  server_->ClearOps();
  ASSERT_EQ(cuMemFreeAsync(a, nullptr), CUDA_SUCCESS);
  EXPECT_FALSE(Arenas().IsBlock(a));
  ASSERT_EQ(cuCtxSynchronize(), CUDA_SUCCESS);  // no deferred error
  EXPECT_EQ(server_->CountOp(wire::Op::kMemFreeAsync), 0u);
  CUdeviceptr again = 0;
  ASSERT_EQ(cuMemAlloc(&again, 4096), CUDA_SUCCESS);
  EXPECT_EQ(again, a);
  EXPECT_EQ(cuMemFree(again), CUDA_SUCCESS);
}

TEST_F(LocalAllocTest, AFullArenaGetsAnother) {
  InitWithContext();
  server_->ClearOps();
  std::vector<CUdeviceptr> blocks(9);
  for (CUdeviceptr& p : blocks) ASSERT_EQ(cuMemAlloc(&p, 1 << 20), CUDA_SUCCESS);
  EXPECT_EQ(server_->CountOp(wire::Op::kMemAlloc), 2u);  // 8 MiB arenas
  for (CUdeviceptr p : blocks) EXPECT_EQ(cuMemFree(p), CUDA_SUCCESS);
}

// Destroying a context frees its arenas in woolyd, and nothing else: its
// blocks were never woolyd's allocations.
TEST_F(LocalAllocTest, ContextDestroyFreesItsArenas) {
  ASSERT_EQ(cuInit(0), CUDA_SUCCESS);
  CUcontext ctx = nullptr;
  ASSERT_EQ(cuCtxCreate(&ctx, nullptr, 0, 0), CUDA_SUCCESS);
  CUdeviceptr a = 0, b = 0;
  ASSERT_EQ(cuMemAlloc(&a, 256), CUDA_SUCCESS);
  ASSERT_EQ(cuMemAlloc(&b, 256), CUDA_SUCCESS);
  server_->ClearOps();
  ASSERT_EQ(cuCtxDestroy(ctx), CUDA_SUCCESS);
  EXPECT_EQ(server_->CountOp(wire::Op::kMemFree), 1u);
  EXPECT_FALSE(Arenas().IsBlock(a));
  CUdeviceptr base = 0;
  EXPECT_NE(cuMemGetAddressRange(&base, nullptr, a), CUDA_SUCCESS);
}

// A forked child does not inherit the parent's arenas (they are the
// parent session's memory): its first small allocation asks for its own.
TEST_F(LocalAllocTest, ForkedChildMakesItsOwnArena) {
  InitWithContext();
  CUdeviceptr d = 0;
  ASSERT_EQ(cuMemAlloc(&d, 64), CUDA_SUCCESS);
  server_->ClearOps();
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    CUdeviceptr c = 0;
    int code = cuMemAlloc(&c, 64) == CUDA_SUCCESS ? 0 : 1;
    if (Arenas().IsBlock(d)) code |= 2;
    if (!Arenas().IsBlock(c)) code |= 4;
    if (cuMemFree(c) != CUDA_SUCCESS) code |= 8;
    ::_exit(code);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
  EXPECT_EQ(server_->CountOp(wire::Op::kMemAlloc), 1u);  // the child's arena
  EXPECT_TRUE(Arenas().IsBlock(d));                      // the parent's are untouched
  EXPECT_EQ(cuMemFree(d), CUDA_SUCCESS);
}

class LocalAllocOffTest : public ClientApiTest {
 protected:
  void SetUp() override {
    ::setenv("WOOLY_LOCAL_ALLOC", "0", 1);
    ClientApiTest::SetUp();
  }
  void TearDown() override {
    ClientApiTest::TearDown();
    ::unsetenv("WOOLY_LOCAL_ALLOC");
  }
};

TEST_F(LocalAllocOffTest, AllocationsAreWoolydsWhenLocalAllocationIsOff) {
  InitWithContext();
  server_->ClearOps();
  CUdeviceptr a = 0, b = 0;
  ASSERT_EQ(cuMemAlloc(&a, 256), CUDA_SUCCESS);
  ASSERT_EQ(cuMemAlloc(&b, 256), CUDA_SUCCESS);
  EXPECT_EQ(server_->CountOp(wire::Op::kMemAlloc), 2u);
  EXPECT_FALSE(Arenas().IsBlock(a));
  EXPECT_EQ(cuMemFree(a), CUDA_SUCCESS);
  EXPECT_EQ(cuMemFree(b), CUDA_SUCCESS);
}

}  // namespace
}  // namespace wooly::client
