// woolyd sessions end to end, in process: a Server on the fake backend,
// driven over a real unix socket and over TCP by a client built on wire.h.
#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <memory>
#include <numeric>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server_test_client.h"
#include "wooly/fake/fake_backend.h"
#include "wooly/proto/sha256.h"
#include "wooly/proto/socket.h"
#include "wooly/proto/wire.h"
#include "wooly/server/cu_status.h"
#include "wooly/server/server.h"

namespace wooly::server {
namespace {

using ::testing::HasSubstr;
using wire::Op;
using wooly::fake::FakeBackend;
using wooly::fake::FakeBackendOptions;
using wooly::fake::FakeKernel;
using wooly::fake::FakeLaunch;
using wooly::fake::MakeFakeModuleImage;
using wooly::testing::ArgPacker;
using wooly::testing::TestClient;

constexpr absl::Duration kWait = absl::Seconds(60);

// Two trivial kernels of the tests' own, independent of the shared set.
void RegisterUnitKernels() {
  FakeKernel add_one;
  add_one.name = "wooly_unit_add_one";  // (uint32_t* p, uint32_t n): p[i] += 1
  add_one.params = {{0, 8}, {8, 4}};
  add_one.run = [](const FakeLaunch& l) -> absl::Status {
    uint64_t p = 0;
    uint32_t n = 0;
    std::memcpy(&p, l.args.data(), 8);
    std::memcpy(&n, l.args.data() + 8, 4);
    const uint64_t threads = uint64_t{l.grid[0]} * l.block[0];
    const uint64_t count = std::min<uint64_t>(n, threads);
    auto* data = static_cast<uint32_t*>(l.host(p, count * 4));
    if (count && data == nullptr) return CuError(CUDA_ERROR_ILLEGAL_ADDRESS, "add_one");
    for (uint64_t i = 0; i < count; ++i) data[i] += 1;
    return absl::OkStatus();
  };
  fake::RegisterFakeKernel(add_one);
  FakeKernel noop;
  noop.name = "wooly_unit_noop";
  noop.run = [](const FakeLaunch&) { return absl::OkStatus(); };
  fake::RegisterFakeKernel(noop);
}

// Records the stream waits the session issues (legacy-stream emulation).
class RecordingBackend : public FakeBackend {
 public:
  using FakeBackend::FakeBackend;
  absl::Status StreamWaitEvent(Handle stream, Handle event, uint32_t flags) override {
    waits.fetch_add(1);
    return FakeBackend::StreamWaitEvent(stream, event, flags);
  }
  std::atomic<int> waits{0};
};

class ServerSessionTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    RegisterUnitKernels();
    dir_ = testing::MakeTempDir();
    ASSERT_FALSE(dir_.empty());
    ServerOptions options;
    options.listen = {"unix:" + dir_ + "/run/woolyd.sock", "tcp:127.0.0.1:0"};
    options.module_cache_bytes = 64u << 20;           // in memory
    options.fill_module_cache_in_background = false;  // cached when the load returns
    options.scheduler_thread = false;                 // tests count the backend's objects
    options.launch_pipeline = true;                   // the more demanding path
    FakeBackendOptions fake_options;
    fake_options.capacity_bytes = 1ull << 30;
    auto backend = std::make_unique<RecordingBackend>(fake_options);
    fake_ = backend.get();
    absl::StatusOr<std::unique_ptr<Server>> server = Server::Start(options, std::move(backend));
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    const std::vector<std::string> addresses = server_->listen_addresses();
    ASSERT_EQ(addresses.size(), 2u);
    endpoint_ = GetParam() == "unix" ? addresses[0] : addresses[1];
  }

  void TearDown() override {
    server_.reset();
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }

  std::unique_ptr<TestClient> Connect() {
    std::unique_ptr<TestClient> c = TestClient::Connect(endpoint_);
    EXPECT_NE(c, nullptr) << "cannot connect to " << endpoint_;
    return c;
  }
  std::unique_ptr<TestClient> Hello(const std::string& name = "test") {
    std::unique_ptr<TestClient> c = Connect();
    if (c) {
      EXPECT_EQ(c->Hello(name), CUDA_SUCCESS);
    }
    return c;
  }
  // Loads a module with the unit kernels and a 256-byte global `g`.
  uint64_t LoadUnitModule(TestClient& c) {
    uint64_t module = 0;
    EXPECT_EQ(
        c.LoadModule(MakeFakeModuleImage({"wooly_unit_add_one", "wooly_unit_noop"}, {{"g", 256}}),
                     &module),
        CUDA_SUCCESS);
    return module;
  }

  std::string dir_;
  RecordingBackend* fake_ = nullptr;  // owned by server_
  std::unique_ptr<Server> server_;
  std::string endpoint_;
};

INSTANTIATE_TEST_SUITE_P(Transports, ServerSessionTest, ::testing::Values("unix", "tcp"),
                         [](const auto& info) { return info.param; });

TEST_P(ServerSessionTest, HelloReturnsTheDeviceDescription) {
  std::unique_ptr<TestClient> c = Connect();
  ASSERT_NE(c, nullptr);
  wire::DeviceInfo info;
  uint64_t id = 0;
  ASSERT_EQ(c->Hello("hello-test", 1, wire::kProtocolVersion, &info, &id), CUDA_SUCCESS);
  EXPECT_NE(id, 0u);
  EXPECT_EQ(info.name, "Wooly Fake GPU");
  EXPECT_EQ(info.total_mem, 1ull << 30);
  ASSERT_EQ(info.attributes.size(), static_cast<size_t>(CU_DEVICE_ATTRIBUTE_MAX));
  EXPECT_EQ(info.attributes[CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT], 132);
  EXPECT_EQ(info.attributes[CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR], 9);
  EXPECT_EQ(info.attributes[CU_DEVICE_ATTRIBUTE_WARP_SIZE], 32);
  EXPECT_LE(info.stream_priority_greatest, info.stream_priority_least);
  ASSERT_TRUE(server_->WaitForSessionCount(1, kWait));
  std::vector<ClientStatus> clients = server_->Clients();
  ASSERT_EQ(clients.size(), 1u);
  EXPECT_EQ(clients[0].name, "hello-test");
  EXPECT_EQ(clients[0].priority, 1);
  EXPECT_EQ(clients[0].pid, static_cast<uint32_t>(::getpid()));
  EXPECT_EQ(clients[0].transport, GetParam());
  EXPECT_EQ(clients[0].streams, 1u);  // its default stream
}

TEST_P(ServerSessionTest, AllocCopyRoundTrip) {
  std::unique_ptr<TestClient> c = Hello();
  ASSERT_NE(c, nullptr);
  constexpr size_t kBytes = 3 << 20;
  uint64_t a = 0, b = 0;
  ASSERT_EQ(c->MemAlloc(kBytes, &a), CUDA_SUCCESS);
  ASSERT_EQ(c->MemAlloc(kBytes, &b), CUDA_SUCCESS);
  std::vector<uint8_t> in(kBytes);
  std::iota(in.begin(), in.end(), uint8_t{7});
  ASSERT_EQ(c->HtoD(a, in.data(), in.size()), CUDA_SUCCESS);
  // Device to device, then back, in two halves at an unaligned split.
  wire::Writer dtod;
  dtod.Put<uint64_t>(b).Put<uint64_t>(a).Put<uint64_t>(kBytes).Put<uint64_t>(0).Put<uint8_t>(0);
  ASSERT_EQ(c->Code(Op::kMemcpyDtoD, dtod), CUDA_SUCCESS);
  std::vector<uint8_t> out(kBytes);
  ASSERT_EQ(c->DtoH(out.data(), b, 12345), CUDA_SUCCESS);
  ASSERT_EQ(c->DtoH(out.data() + 12345, b + 12345, kBytes - 12345), CUDA_SUCCESS);
  EXPECT_EQ(in, out);

  // Address range of an interior pointer; memory info.
  std::optional<TestClient::Result> range =
      c->Call(Op::kMemGetAddressRange, wire::Writer().Put<uint64_t>(a + 100));
  ASSERT_TRUE(range);
  ASSERT_EQ(range->result, CUDA_SUCCESS);
  wire::Reader rr = range->reader();
  EXPECT_EQ(rr.Get<uint64_t>(), a);
  EXPECT_EQ(rr.Get<uint64_t>(), kBytes);
  std::optional<TestClient::Result> info = c->Call(Op::kMemGetInfo);
  ASSERT_TRUE(info);
  ASSERT_EQ(info->result, CUDA_SUCCESS);
  wire::Reader ir = info->reader();
  const uint64_t free = ir.Get<uint64_t>();
  EXPECT_EQ(ir.Get<uint64_t>(), 1ull << 30);
  EXPECT_EQ(free, (1ull << 30) - 2 * kBytes);

  // Every memset width, and a pitched 2D one.
  ASSERT_EQ(c->Memset(a, 0xab, 1, 16), CUDA_SUCCESS);
  ASSERT_EQ(c->Memset(a + 16, 0x1234, 2, 4), CUDA_SUCCESS);
  ASSERT_EQ(c->Memset(a + 24, 0xdeadbeef, 4, 2), CUDA_SUCCESS);
  ASSERT_EQ(c->Memset(a + 64, 0x5a, 1, /*width=*/3, /*height=*/2, /*pitch=*/8), CUDA_SUCCESS);
  std::vector<uint8_t> got(80);
  ASSERT_EQ(c->DtoH(got.data(), a, got.size()), CUDA_SUCCESS);
  for (int i = 0; i < 16; ++i) EXPECT_EQ(got[i], 0xab);
  uint16_t h16;
  std::memcpy(&h16, &got[22], 2);
  EXPECT_EQ(h16, 0x1234);
  uint32_t h32;
  std::memcpy(&h32, &got[28], 4);
  EXPECT_EQ(h32, 0xdeadbeefu);
  EXPECT_EQ(got[64], 0x5a);
  EXPECT_EQ(got[66], 0x5a);
  EXPECT_EQ(got[67], in[67]);  // between the rows: untouched
  EXPECT_EQ(got[72], 0x5a);
  EXPECT_EQ(got[75], in[75]);

  EXPECT_EQ(c->MemFree(a), CUDA_SUCCESS);
  EXPECT_EQ(c->MemFree(a), CUDA_ERROR_INVALID_VALUE);      // double free
  EXPECT_EQ(c->MemFree(b + 1), CUDA_ERROR_INVALID_VALUE);  // not a base
  EXPECT_EQ(fake_->live_allocations(), 1u);
}

TEST_P(ServerSessionTest, Memcpy3DPitchedRoundTrip) {
  std::unique_ptr<TestClient> c = Hello();
  ASSERT_NE(c, nullptr);
  uint64_t d = 0;
  constexpr uint64_t kPitch = 64, kRows = 4, kWidth = 10;
  ASSERT_EQ(c->MemAlloc(kPitch * kRows, &d), CUDA_SUCCESS);
  ASSERT_EQ(c->Memset(d, 0, 1, kPitch * kRows), CUDA_SUCCESS);
  std::vector<uint8_t> rows(kWidth * kRows);
  std::iota(rows.begin(), rows.end(), uint8_t{1});
  wire::Copy3D g{};
  g.src_kind = static_cast<uint8_t>(wire::MemKind::kHost);
  g.dst_kind = static_cast<uint8_t>(wire::MemKind::kDevice);
  g.dst_ptr = d;
  g.dst_x_bytes = 3;
  g.dst_pitch = kPitch;
  g.dst_height = kRows;
  g.width_bytes = kWidth;
  g.height = kRows;
  g.depth = 1;
  wire::Writer up;
  wire::PutCopy3D(up, g);
  up.Put<uint64_t>(0).Put<uint8_t>(0).PutRaw(rows.data(), rows.size());
  ASSERT_EQ(c->Code(Op::kMemcpy3D, up), CUDA_SUCCESS);
  std::vector<uint8_t> flat(kPitch * kRows);
  ASSERT_EQ(c->DtoH(flat.data(), d, flat.size()), CUDA_SUCCESS);
  for (uint64_t r = 0; r < kRows; ++r) {
    EXPECT_EQ(flat[r * kPitch + 2], 0);
    EXPECT_EQ(flat[r * kPitch + 3], rows[r * kWidth]);
    EXPECT_EQ(flat[r * kPitch + 3 + kWidth - 1], rows[r * kWidth + kWidth - 1]);
  }
  // And back down to the host, packed.
  std::swap(g.src_kind, g.dst_kind);
  g.src_ptr = d;
  g.src_x_bytes = 3;
  g.src_pitch = kPitch;
  g.src_height = kRows;
  g.dst_ptr = g.dst_x_bytes = g.dst_pitch = g.dst_height = 0;
  wire::Writer down;
  wire::PutCopy3D(down, g);
  down.Put<uint64_t>(0).Put<uint8_t>(0);
  std::optional<TestClient::Result> r = c->Call(Op::kMemcpy3D, down);
  ASSERT_TRUE(r);
  ASSERT_EQ(r->result, CUDA_SUCCESS);
  EXPECT_EQ(r->body, rows);
  // A pitch that would run past the allocation is refused.
  g.src_pitch = kPitch * 2;
  wire::Writer past;
  wire::PutCopy3D(past, g);
  past.Put<uint64_t>(0).Put<uint8_t>(0);
  EXPECT_EQ(c->Code(Op::kMemcpy3D, past), CUDA_ERROR_INVALID_VALUE);
}

TEST_P(ServerSessionTest, LaunchesARegisteredFakeKernel) {
  std::unique_ptr<TestClient> c = Hello();
  ASSERT_NE(c, nullptr);
  const uint64_t module = LoadUnitModule(*c);
  uint64_t fn = 0;
  std::vector<wire::ParamInfo> layout;
  ASSERT_EQ(c->GetFunction(module, "wooly_unit_add_one", &fn, &layout), CUDA_SUCCESS);
  ASSERT_EQ(layout.size(), 2u);
  EXPECT_EQ(layout[1].offset, 8u);
  uint64_t again = 0;
  ASSERT_EQ(c->GetFunction(module, "wooly_unit_add_one", &again), CUDA_SUCCESS);
  EXPECT_EQ(again, fn);  // same handle, as the driver does

  constexpr uint32_t kN = 1000;
  uint64_t d = 0;
  ASSERT_EQ(c->MemAlloc(kN * 4, &d), CUDA_SUCCESS);
  std::vector<uint32_t> v(kN);
  std::iota(v.begin(), v.end(), 0u);
  ASSERT_EQ(c->HtoD(d, v.data(), kN * 4), CUDA_SUCCESS);
  ASSERT_EQ(c->Launch(fn, 4, 256, ArgPacker().Add<uint64_t>(d).Add<uint32_t>(kN).bytes()),
            CUDA_SUCCESS);
  ASSERT_EQ(c->OneId(Op::kStreamSynchronize, wire::kStreamNull), CUDA_SUCCESS);
  std::vector<uint32_t> out(kN);
  ASSERT_EQ(c->DtoH(out.data(), d, kN * 4), CUDA_SUCCESS);
  for (uint32_t i = 0; i < kN; ++i) ASSERT_EQ(out[i], i + 1) << i;

  // Errors the driver would give.
  uint64_t missing = 0;
  EXPECT_EQ(c->GetFunction(module, "no_such_kernel", &missing), CUDA_ERROR_NOT_FOUND);
  EXPECT_EQ(c->Launch(fn, 1, 1, ArgPacker().Add<uint64_t>(d).bytes()),  // args too short
            CUDA_ERROR_INVALID_VALUE);
  EXPECT_EQ(c->Launch(fn, 1, 2048, ArgPacker().Add<uint64_t>(d).Add<uint32_t>(1).bytes()),
            CUDA_ERROR_INVALID_VALUE);
  uint64_t bad_module = 0;
  const std::string ptx = ".version 8.0\n.target sm_90\n";
  EXPECT_EQ(c->LoadModule(std::vector<uint8_t>(ptx.begin(), ptx.end()), &bad_module),
            CUDA_ERROR_INVALID_IMAGE);
  // Function count and attributes.
  std::optional<TestClient::Result> count =
      c->Call(Op::kModuleGetFunctionCount, wire::Writer().Put<uint64_t>(module));
  ASSERT_TRUE(count);
  EXPECT_EQ(count->reader().Get<uint32_t>(), 2u);
  std::optional<TestClient::Result> attr = c->Call(
      Op::kFuncGetAttribute,
      wire::Writer().Put<uint64_t>(fn).Put<int32_t>(CU_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK));
  ASSERT_TRUE(attr);
  ASSERT_EQ(attr->result, CUDA_SUCCESS);
  EXPECT_EQ(attr->reader().Get<int32_t>(), 1024);
}

TEST_P(ServerSessionTest, ModuleGlobalsAreOwnedUntilUnload) {
  std::unique_ptr<TestClient> c = Hello();
  ASSERT_NE(c, nullptr);
  const uint64_t module = LoadUnitModule(*c);
  uint64_t g = 0, size = 0;
  ASSERT_EQ(c->GetGlobal(module, "g", &g, &size), CUDA_SUCCESS);
  EXPECT_EQ(size, 256u);
  const uint32_t value = 42;
  ASSERT_EQ(c->HtoD(g + 4, &value, 4), CUDA_SUCCESS);
  uint32_t back = 0;
  ASSERT_EQ(c->DtoH(&back, g + 4, 4), CUDA_SUCCESS);
  EXPECT_EQ(back, 42u);
  EXPECT_EQ(c->HtoD(g + 254, &value, 4), CUDA_ERROR_INVALID_VALUE);  // runs past it
  uint64_t none = 0;
  EXPECT_EQ(c->GetGlobal(module, "nope", &none, &size), CUDA_ERROR_NOT_FOUND);
  ASSERT_EQ(c->OneId(Op::kModuleUnload, module), CUDA_SUCCESS);
  EXPECT_EQ(c->DtoH(&back, g, 4), CUDA_ERROR_INVALID_VALUE);
  EXPECT_EQ(c->OneId(Op::kModuleUnload, module), CUDA_ERROR_INVALID_HANDLE);
  EXPECT_EQ(fake_->live_modules(), 0u);
}

TEST_P(ServerSessionTest, LibrariesKernelsAndTheirModule) {
  std::unique_ptr<TestClient> c = Hello();
  ASSERT_NE(c, nullptr);
  uint64_t lib = 0;
  ASSERT_EQ(c->LoadModule(MakeFakeModuleImage({"wooly_unit_add_one"}, {{"lg", 64}}), &lib,
                          Op::kLibraryLoadData),
            CUDA_SUCCESS);
  uint64_t kernel = 0;
  std::vector<wire::ParamInfo> layout;
  ASSERT_EQ(c->GetFunction(lib, "wooly_unit_add_one", &kernel, &layout, Op::kLibraryGetKernel),
            CUDA_SUCCESS);
  EXPECT_EQ(layout.size(), 2u);
  uint64_t fn = 0;
  std::optional<TestClient::Result> kf =
      c->Call(Op::kKernelGetFunction, wire::Writer().Put<uint64_t>(kernel));
  ASSERT_TRUE(kf);
  ASSERT_EQ(kf->result, CUDA_SUCCESS);
  fn = kf->reader().Get<uint64_t>();
  uint64_t g = 0, size = 0;
  ASSERT_EQ(c->GetGlobal(lib, "lg", &g, &size, Op::kLibraryGetGlobal), CUDA_SUCCESS);
  std::optional<TestClient::Result> lm =
      c->Call(Op::kLibraryGetModule, wire::Writer().Put<uint64_t>(lib));
  ASSERT_TRUE(lm);
  ASSERT_EQ(lm->result, CUDA_SUCCESS);
  const uint64_t module = lm->reader().Get<uint64_t>();
  uint64_t g2 = 0;
  ASSERT_EQ(c->GetGlobal(module, "lg", &g2, &size), CUDA_SUCCESS);
  EXPECT_EQ(g2, g);
  // Launch through the kernel handle and through its function.
  uint32_t x = 1;
  ASSERT_EQ(c->HtoD(g, &x, 4), CUDA_SUCCESS);
  ASSERT_EQ(c->Launch(kernel, 1, 1, ArgPacker().Add<uint64_t>(g).Add<uint32_t>(1).bytes()),
            CUDA_SUCCESS);
  ASSERT_EQ(c->Launch(fn, 1, 1, ArgPacker().Add<uint64_t>(g).Add<uint32_t>(1).bytes()),
            CUDA_SUCCESS);
  ASSERT_EQ(c->DtoH(&x, g, 4), CUDA_SUCCESS);
  EXPECT_EQ(x, 3u);
  EXPECT_EQ(c->OneId(Op::kModuleUnload, module), CUDA_ERROR_NOT_PERMITTED);
  ASSERT_EQ(c->OneId(Op::kLibraryUnload, lib), CUDA_SUCCESS);
  EXPECT_EQ(c->DtoH(&x, g, 4), CUDA_ERROR_INVALID_VALUE);
  EXPECT_EQ(c->Launch(kernel, 1, 1, ArgPacker().Add<uint64_t>(g).Add<uint32_t>(1).bytes()),
            CUDA_ERROR_INVALID_HANDLE);
  EXPECT_EQ(c->Launch(fn, 1, 1, ArgPacker().Add<uint64_t>(g).Add<uint32_t>(1).bytes()),
            CUDA_ERROR_INVALID_HANDLE);
  EXPECT_EQ(fake_->live_libraries(), 0u);
  EXPECT_EQ(fake_->live_modules(), 0u);
}

TEST_P(ServerSessionTest, StreamsAndEvents) {
  std::unique_ptr<TestClient> c = Hello();
  ASSERT_NE(c, nullptr);
  uint64_t s = 0, e1 = 0, e2 = 0;
  ASSERT_EQ(c->StreamCreate(CU_STREAM_NON_BLOCKING, &s, -1), CUDA_SUCCESS);
  EXPECT_EQ(c->StreamCreate(0x80, &s), CUDA_ERROR_INVALID_VALUE);
  ASSERT_EQ(c->EventCreate(0, &e1), CUDA_SUCCESS);
  ASSERT_EQ(c->EventCreate(0, &e2), CUDA_SUCCESS);
  wire::Writer rec1, rec2, wait;
  rec1.Put<uint64_t>(e1).Put<uint64_t>(s).Put<uint32_t>(0);
  rec2.Put<uint64_t>(e2).Put<uint64_t>(wire::kStreamNull).Put<uint32_t>(0);
  wait.Put<uint64_t>(wire::kStreamLegacy).Put<uint64_t>(e1).Put<uint32_t>(0);
  EXPECT_EQ(c->Code(Op::kEventRecord, rec1), CUDA_SUCCESS);
  EXPECT_EQ(c->Code(Op::kStreamWaitEvent, wait), CUDA_SUCCESS);
  EXPECT_EQ(c->Code(Op::kEventRecord, rec2), CUDA_SUCCESS);
  EXPECT_EQ(c->OneId(Op::kEventSynchronize, e2), CUDA_SUCCESS);
  EXPECT_EQ(c->OneId(Op::kEventQuery, e1), CUDA_SUCCESS);
  EXPECT_EQ(c->OneId(Op::kStreamQuery, s), CUDA_SUCCESS);
  std::optional<TestClient::Result> ms =
      c->Call(Op::kEventElapsedTime, wire::Writer().Put<uint64_t>(e1).Put<uint64_t>(e2));
  ASSERT_TRUE(ms);
  EXPECT_EQ(ms->result, CUDA_SUCCESS);
  EXPECT_EQ(c->Code(Op::kCtxSynchronize, wire::Writer()), CUDA_SUCCESS);
  EXPECT_EQ(server_->Clients().at(0).streams, 2u);
  EXPECT_EQ(c->OneId(Op::kEventDestroy, e1), CUDA_SUCCESS);
  EXPECT_EQ(c->OneId(Op::kEventDestroy, e1), CUDA_ERROR_INVALID_HANDLE);
  EXPECT_EQ(c->OneId(Op::kStreamDestroy, s), CUDA_SUCCESS);
  EXPECT_EQ(c->OneId(Op::kStreamSynchronize, s), CUDA_ERROR_INVALID_HANDLE);
  EXPECT_EQ(c->OneId(Op::kStreamDestroy, wire::kStreamNull), CUDA_ERROR_INVALID_HANDLE);
}

TEST_P(ServerSessionTest, LegacyStreamIsOrderedWithBlockingStreamsOnly) {
  std::unique_ptr<TestClient> c = Hello();
  ASSERT_NE(c, nullptr);
  uint64_t d = 0, blocking = 0, non_blocking = 0;
  ASSERT_EQ(c->MemAlloc(64, &d), CUDA_SUCCESS);
  ASSERT_EQ(c->StreamCreate(0, &blocking), CUDA_SUCCESS);
  ASSERT_EQ(c->StreamCreate(CU_STREAM_NON_BLOCKING, &non_blocking), CUDA_SUCCESS);
  const int base = fake_->waits.load();
  ASSERT_EQ(c->Memset(d, 1, 1, 64), CUDA_SUCCESS);  // legacy work
  ASSERT_EQ(c->Memset(d, 1, 1, 64, 1, 0, non_blocking), CUDA_SUCCESS);
  EXPECT_EQ(fake_->waits.load(), base);  // a non-blocking stream is not ordered
  ASSERT_EQ(c->Memset(d, 1, 1, 64, 1, 0, blocking), CUDA_SUCCESS);
  EXPECT_EQ(fake_->waits.load(), base + 1);  // waits for the legacy work
  ASSERT_EQ(c->Memset(d, 1, 1, 64, 1, 0, blocking), CUDA_SUCCESS);
  EXPECT_EQ(fake_->waits.load(), base + 1);  // nothing new on the legacy stream
  ASSERT_EQ(c->Memset(d, 1, 1, 64), CUDA_SUCCESS);
  EXPECT_EQ(fake_->waits.load(), base + 2);  // legacy waits for the blocking stream
}

TEST_P(ServerSessionTest, DisconnectReleasesEverythingTheClientOwned) {
  std::unique_ptr<TestClient> keeper = Hello("keeper");
  ASSERT_NE(keeper, nullptr);
  uint64_t kept = 0;
  ASSERT_EQ(keeper->MemAlloc(4096, &kept), CUDA_SUCCESS);
  for (const bool say_goodbye : {false, true}) {
    std::unique_ptr<TestClient> c = Hello("leaver");
    ASSERT_NE(c, nullptr);
    uint64_t d = 0, s = 0, e = 0, lib = 0;
    for (int i = 0; i < 3; ++i) ASSERT_EQ(c->MemAlloc(1 << 20, &d), CUDA_SUCCESS);
    ASSERT_EQ(c->StreamCreate(0, &s), CUDA_SUCCESS);
    ASSERT_EQ(c->EventCreate(0, &e), CUDA_SUCCESS);
    const uint64_t module = LoadUnitModule(*c);
    uint64_t g = 0, size = 0;
    ASSERT_EQ(c->GetGlobal(module, "g", &g, &size), CUDA_SUCCESS);
    ASSERT_EQ(c->LoadModule(MakeFakeModuleImage({"wooly_unit_noop"}), &lib, Op::kLibraryLoadData),
              CUDA_SUCCESS);
    ASSERT_EQ(c->Memset(d, 0, 1, 64, 1, 0, s), CUDA_SUCCESS);
    EXPECT_EQ(fake_->live_allocations(), 4u);
    EXPECT_EQ(fake_->live_modules(), 2u);
    EXPECT_EQ(fake_->live_libraries(), 1u);
    if (say_goodbye) {
      ASSERT_EQ(c->Code(Op::kGoodbye, wire::Writer()), CUDA_SUCCESS);
      EXPECT_TRUE(c->ServerClosed());
    }
    c.reset();
    ASSERT_TRUE(server_->WaitForSessionCount(1, kWait));
    EXPECT_EQ(fake_->live_allocations(), 1u);  // the keeper's
    EXPECT_EQ(fake_->bytes_allocated(), 4096u);
    EXPECT_EQ(fake_->live_streams(), 1u);  // the keeper's default stream
    EXPECT_EQ(fake_->live_events(), 0u);
    EXPECT_EQ(fake_->live_modules(), 0u);
    EXPECT_EQ(fake_->live_libraries(), 0u);
  }
  keeper.reset();
  ASSERT_TRUE(server_->WaitForSessionCount(0, kWait));
  EXPECT_EQ(fake_->live_allocations(), 0u);
  EXPECT_EQ(fake_->live_streams(), 0u);
}

TEST_P(ServerSessionTest, AnotherClientsPointersAndHandlesAreRefused) {
  std::unique_ptr<TestClient> a = Hello("a");
  std::unique_ptr<TestClient> b = Hello("b");
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  uint64_t ptr = 0, stream = 0, event = 0, fn = 0, lib = 0, kernel = 0, mine = 0;
  ASSERT_EQ(a->MemAlloc(4096, &ptr), CUDA_SUCCESS);
  ASSERT_EQ(a->StreamCreate(0, &stream), CUDA_SUCCESS);
  ASSERT_EQ(a->EventCreate(0, &event), CUDA_SUCCESS);
  const uint64_t module = LoadUnitModule(*a);
  ASSERT_EQ(a->GetFunction(module, "wooly_unit_add_one", &fn), CUDA_SUCCESS);
  ASSERT_EQ(a->LoadModule(MakeFakeModuleImage({"wooly_unit_noop"}), &lib, Op::kLibraryLoadData),
            CUDA_SUCCESS);
  ASSERT_EQ(a->GetFunction(lib, "wooly_unit_noop", &kernel, nullptr, Op::kLibraryGetKernel),
            CUDA_SUCCESS);
  uint64_t a_global = 0, size = 0;
  ASSERT_EQ(a->GetGlobal(module, "g", &a_global, &size), CUDA_SUCCESS);
  ASSERT_EQ(b->MemAlloc(4096, &mine), CUDA_SUCCESS);

  const uint32_t x = 1;
  uint32_t y = 0;
  // Pointers: INVALID_VALUE, as the driver answers for memory it never gave.
  EXPECT_EQ(b->HtoD(ptr, &x, 4), CUDA_ERROR_INVALID_VALUE);
  EXPECT_EQ(b->DtoH(&y, ptr, 4), CUDA_ERROR_INVALID_VALUE);
  EXPECT_EQ(b->DtoH(&y, a_global, 4), CUDA_ERROR_INVALID_VALUE);
  EXPECT_EQ(b->Memset(ptr, 0, 1, 4), CUDA_ERROR_INVALID_VALUE);
  EXPECT_EQ(b->MemFree(ptr), CUDA_ERROR_INVALID_VALUE);
  wire::Writer dtod;
  dtod.Put<uint64_t>(mine).Put<uint64_t>(ptr).Put<uint64_t>(4).Put<uint64_t>(0).Put<uint8_t>(0);
  EXPECT_EQ(b->Code(Op::kMemcpyDtoD, dtod), CUDA_ERROR_INVALID_VALUE);
  EXPECT_EQ(b->HtoD(mine + 4093, &x, 4), CUDA_ERROR_INVALID_VALUE);  // straddles its end
  EXPECT_EQ(b->Code(Op::kMemGetAddressRange, wire::Writer().Put<uint64_t>(ptr)),
            CUDA_ERROR_NOT_FOUND);
  // Handles: INVALID_HANDLE, whether foreign or made up.
  EXPECT_EQ(b->HtoD(mine, &x, 4, stream), CUDA_ERROR_INVALID_HANDLE);
  EXPECT_EQ(b->OneId(Op::kStreamSynchronize, stream), CUDA_ERROR_INVALID_HANDLE);
  EXPECT_EQ(b->OneId(Op::kStreamDestroy, stream), CUDA_ERROR_INVALID_HANDLE);
  EXPECT_EQ(b->OneId(Op::kEventQuery, event), CUDA_ERROR_INVALID_HANDLE);
  EXPECT_EQ(b->OneId(Op::kEventDestroy, event), CUDA_ERROR_INVALID_HANDLE);
  EXPECT_EQ(b->OneId(Op::kModuleUnload, module), CUDA_ERROR_INVALID_HANDLE);
  EXPECT_EQ(b->OneId(Op::kLibraryUnload, lib), CUDA_ERROR_INVALID_HANDLE);
  EXPECT_EQ(b->OneId(Op::kKernelGetFunction, kernel), CUDA_ERROR_INVALID_HANDLE);
  uint64_t stolen = 0;
  EXPECT_EQ(b->GetFunction(module, "wooly_unit_add_one", &stolen), CUDA_ERROR_INVALID_HANDLE);
  EXPECT_EQ(b->Launch(fn, 1, 1, ArgPacker().Add<uint64_t>(mine).Add<uint32_t>(1).bytes()),
            CUDA_ERROR_INVALID_HANDLE);
  EXPECT_EQ(b->Launch(kernel, 1, 1, {}), CUDA_ERROR_INVALID_HANDLE);
  EXPECT_EQ(b->Launch(0x1234567, 1, 1, {}), CUDA_ERROR_INVALID_HANDLE);
  EXPECT_EQ(b->OneId(Op::kStreamQuery, 0x7777), CUDA_ERROR_INVALID_HANDLE);
  // The owner is unaffected.
  EXPECT_EQ(a->HtoD(ptr, &x, 4, stream), CUDA_SUCCESS);
  EXPECT_EQ(a->DtoH(&y, ptr, 4), CUDA_SUCCESS);
  EXPECT_EQ(y, 1u);
  EXPECT_EQ(a->MemFree(ptr), CUDA_SUCCESS);
}

TEST_P(ServerSessionTest, ProtocolVersionMismatchGetsAClearError) {
  std::unique_ptr<TestClient> c = Connect();
  ASSERT_NE(c, nullptr);
  std::string message;
  EXPECT_EQ(c->Hello("old", 2, 99, nullptr, nullptr, &message), CUDA_ERROR_NOT_SUPPORTED);
  EXPECT_THAT(message, HasSubstr("version 99"));
  EXPECT_THAT(message, HasSubstr("version " + std::to_string(wire::kProtocolVersion)));
  EXPECT_TRUE(c->ServerClosed());
  ASSERT_TRUE(server_->WaitForSessionCount(0, kWait));
}

TEST_P(ServerSessionTest, CommandsBeforeHelloAreRefused) {
  std::unique_ptr<TestClient> c = Connect();
  ASSERT_NE(c, nullptr);
  uint64_t d = 0;
  EXPECT_EQ(c->MemAlloc(16, &d), CUDA_ERROR_NOT_INITIALIZED);
  EXPECT_TRUE(c->ServerClosed());
  EXPECT_EQ(fake_->live_allocations(), 0u);
}

TEST_P(ServerSessionTest, MalformedPayloadGetsAnErrorAndTheSessionGoesOn) {
  std::unique_ptr<TestClient> c = Hello();
  ASSERT_NE(c, nullptr);
  // Too short for its fields.
  EXPECT_EQ(c->Code(Op::kMemAlloc, wire::Writer().Put<uint8_t>(1)), CUDA_ERROR_INVALID_VALUE);
  // A byte run claiming more than the payload holds.
  EXPECT_EQ(c->Code(Op::kModuleLoadData, wire::Writer().Put<uint64_t>(1ull << 40)),
            CUDA_ERROR_INVALID_VALUE);
  // A launch claiming a huge number of attributes.
  wire::Writer launch;
  launch.Put<uint64_t>(1);
  for (int i = 0; i < 7; ++i) launch.Put<uint32_t>(1);
  launch.Put<uint64_t>(0).Put<uint32_t>(0xffffffff);
  EXPECT_EQ(c->Code(Op::kLaunchKernel, launch), CUDA_ERROR_INVALID_VALUE);
  // Unknown ops and replies sent as requests.
  EXPECT_EQ(c->CallRaw(999, nullptr, 0)->result, CUDA_ERROR_NOT_SUPPORTED);
  EXPECT_EQ(c->CallRaw(static_cast<uint16_t>(Op::kMemAlloc) | wire::kReplyBit, nullptr, 0)->result,
            CUDA_ERROR_NOT_SUPPORTED);
  // The same session still works, and so does a new one.
  uint64_t d0 = 0;
  EXPECT_EQ(c->MemAlloc(16, &d0), CUDA_SUCCESS);
  std::unique_ptr<TestClient> c2 = Hello();
  ASSERT_NE(c2, nullptr);
  uint64_t d = 0;
  EXPECT_EQ(c2->MemAlloc(16, &d), CUDA_SUCCESS);
}

TEST_P(ServerSessionTest, GarbageHeaderDropsOnlyThatClient) {
  std::unique_ptr<TestClient> good = Hello("good");
  std::unique_ptr<TestClient> bad = Hello("bad");
  ASSERT_NE(good, nullptr);
  ASSERT_NE(bad, nullptr);
  uint64_t bad_mem = 0;
  ASSERT_EQ(bad->MemAlloc(1 << 20, &bad_mem), CUDA_SUCCESS);
  const char garbage[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
  ASSERT_TRUE(bad->SendRaw(garbage, sizeof(garbage)));
  EXPECT_TRUE(bad->ServerClosed());
  ASSERT_TRUE(server_->WaitForSessionCount(1, kWait));
  EXPECT_EQ(fake_->live_allocations(), 0u);
  // An oversized length is dropped the same way.
  std::unique_ptr<TestClient> huge = Hello("huge");
  ASSERT_NE(huge, nullptr);
  wire::FrameHeader h{wire::kMagic, static_cast<uint16_t>(Op::kMemAlloc), 0, 0xfffffff0u, 1};
  ASSERT_TRUE(huge->SendRaw(&h, sizeof(h)));
  EXPECT_TRUE(huge->ServerClosed());
  ASSERT_TRUE(server_->WaitForSessionCount(1, kWait));
  uint64_t d = 0;
  EXPECT_EQ(good->MemAlloc(64, &d), CUDA_SUCCESS);
  const uint32_t v = 5;
  EXPECT_EQ(good->HtoD(d, &v, 4), CUDA_SUCCESS);
}

TEST_P(ServerSessionTest, ClientDyingMidCommandIsCleanedUp) {
  std::unique_ptr<TestClient> c = Hello("dies");
  ASSERT_NE(c, nullptr);
  uint64_t d = 0;
  ASSERT_EQ(c->MemAlloc(1 << 20, &d), CUDA_SUCCESS);
  // Half a frame: a header announcing 1000 bytes, 10 of them, then gone.
  wire::FrameHeader h{wire::kMagic, static_cast<uint16_t>(Op::kMemcpyHtoD), 0, 1000, 9};
  ASSERT_TRUE(c->SendRaw(&h, sizeof(h)));
  const char ten[10] = {};
  ASSERT_TRUE(c->SendRaw(ten, sizeof(ten)));
  c.reset();
  ASSERT_TRUE(server_->WaitForSessionCount(0, kWait));
  EXPECT_EQ(fake_->live_allocations(), 0u);
  EXPECT_EQ(fake_->live_streams(), 0u);
  // Half a header is no different.
  std::unique_ptr<TestClient> c2 = Hello();
  ASSERT_NE(c2, nullptr);
  ASSERT_TRUE(c2->SendRaw(&h, 7));
  c2.reset();
  ASSERT_TRUE(server_->WaitForSessionCount(0, kWait));
  std::unique_ptr<TestClient> c3 = Hello();
  ASSERT_NE(c3, nullptr);
  EXPECT_EQ(c3->MemAlloc(16, &d), CUDA_SUCCESS);
}

TEST_P(ServerSessionTest, OutOfMemoryIsTheDriversError) {
  std::unique_ptr<TestClient> c = Hello();
  ASSERT_NE(c, nullptr);
  uint64_t d = 0;
  EXPECT_EQ(c->MemAlloc(2ull << 30, &d), CUDA_ERROR_OUT_OF_MEMORY);
  EXPECT_EQ(c->MemAlloc(0, &d), CUDA_ERROR_INVALID_VALUE);
  EXPECT_EQ(c->MemAlloc(1ull << 29, &d), CUDA_SUCCESS);
}

TEST_P(ServerSessionTest, ShutdownDisconnectsClientsAndReleasesEverything) {
  std::unique_ptr<TestClient> c = Hello();
  std::unique_ptr<TestClient> silent = Connect();  // never says hello
  ASSERT_NE(c, nullptr);
  ASSERT_NE(silent, nullptr);
  uint64_t d = 0, s = 0;
  ASSERT_EQ(c->MemAlloc(1 << 20, &d), CUDA_SUCCESS);
  ASSERT_EQ(c->StreamCreate(0, &s), CUDA_SUCCESS);
  LoadUnitModule(*c);
  server_->Shutdown();
  EXPECT_TRUE(c->ServerClosed());
  EXPECT_TRUE(silent->ServerClosed());
  EXPECT_EQ(server_->session_count(), 0u);
  EXPECT_EQ(fake_->live_allocations(), 0u);
  EXPECT_EQ(fake_->live_streams(), 0u);
  EXPECT_EQ(fake_->live_modules(), 0u);
  EXPECT_EQ(TestClient::Connect(endpoint_), nullptr);
  server_->Shutdown();  // idempotent
}

TEST(ServerStartTest, UnixSocketIsPrivateAndASecondServerIsRefused) {
  const std::string dir = testing::MakeTempDir();
  ServerOptions options;
  options.listen = {"unix:" + dir + "/a/b/woolyd.sock"};
  absl::StatusOr<std::unique_ptr<Server>> first =
      Server::Start(options, std::make_unique<FakeBackend>());
  ASSERT_TRUE(first.ok()) << first.status();
  struct stat st;
  ASSERT_EQ(::stat((dir + "/a/b/woolyd.sock").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0660u);
  ASSERT_EQ(::stat((dir + "/a/b").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0750u);
  absl::StatusOr<std::unique_ptr<Server>> second =
      Server::Start(options, std::make_unique<FakeBackend>());
  EXPECT_FALSE(second.ok());
  EXPECT_THAT(std::string(second.status().message()), HasSubstr("already listening"));
  (*first)->Shutdown();
  EXPECT_NE(::stat((dir + "/a/b/woolyd.sock").c_str(), &st), 0);  // removed
  std::error_code ignored;
  std::filesystem::remove_all(dir, ignored);
}

TEST(ServerStartTest, BadEndpointFails) {
  ServerOptions options;
  options.listen = {"tcp:nowhere"};
  EXPECT_FALSE(Server::Start(options, std::make_unique<FakeBackend>()).ok());
  EXPECT_FALSE(Server::Start(ServerOptions{}, nullptr).ok());
}

}  // namespace
}  // namespace wooly::server

namespace wooly::server {
namespace {

TEST_P(ServerSessionTest, ModuleCacheLoadsImagesByDigest) {
  std::vector<uint8_t> image = MakeFakeModuleImage({"wooly_unit_noop"});
  image.resize(100 << 10, 0);  // large enough to be cached; the fake stops at NUL
  const wire::Sha256Hash digest = wire::ImageDigest(image.data(), image.size());
  auto by_digest = [&](TestClient& c, uint64_t size, uint64_t* lib) {
    wire::Writer w;
    w.Put<uint8_t>(1).PutRaw(digest.data(), digest.size()).Put<uint64_t>(size);
    std::optional<TestClient::Result> r = c.Call(Op::kImageLoadCached, w);
    if (!r) return CUDA_ERROR_UNKNOWN;
    if (r->result == CUDA_SUCCESS) *lib = r->reader().Get<uint64_t>();
    return r->result;
  };
  std::unique_ptr<TestClient> a = Hello("sender");
  ASSERT_NE(a, nullptr);
  uint64_t lib = 0;
  EXPECT_EQ(by_digest(*a, image.size(), &lib), CUDA_ERROR_FILE_NOT_FOUND);
  ASSERT_EQ(a->LoadModule(image, &lib, Op::kLibraryLoadData), CUDA_SUCCESS);

  // Another client names the image instead of sending it.
  std::unique_ptr<TestClient> b = Hello("receiver");
  ASSERT_NE(b, nullptr);
  uint64_t cached = 0;
  ASSERT_EQ(by_digest(*b, image.size(), &cached), CUDA_SUCCESS);
  EXPECT_NE(cached, lib);  // b's own library
  uint64_t kernel = 0;
  EXPECT_EQ(b->GetFunction(cached, "wooly_unit_noop", &kernel, nullptr, Op::kLibraryGetKernel),
            CUDA_SUCCESS);
  // The size must match too, and malformed requests are refused.
  EXPECT_EQ(by_digest(*b, image.size() + 1, &cached), CUDA_ERROR_FILE_NOT_FOUND);
  EXPECT_EQ(b->Code(Op::kImageLoadCached, wire::Writer().Put<uint8_t>(7)),
            CUDA_ERROR_INVALID_VALUE);
}

}  // namespace
}  // namespace wooly::server

namespace wooly::server {
namespace {

TEST_P(ServerSessionTest, AsynchronousErrorsAreReportedAtTheNextSynchronization) {
  std::unique_ptr<TestClient> c = Hello();
  ASSERT_NE(c, nullptr);
  uint64_t d = 0;
  ASSERT_EQ(c->MemAlloc(64, &d), CUDA_SUCCESS);
  auto memset = [](uint64_t dst, uint32_t value) {
    wire::Writer w;
    w.Put<uint64_t>(dst).Put<uint64_t>(0).Put<uint32_t>(value).Put<uint8_t>(1);
    w.Put<uint64_t>(64).Put<uint64_t>(1).Put<uint64_t>(wire::kStreamNull).Put<uint8_t>(1);
    return w;
  };
  // Work sent without a reply runs in order...
  ASSERT_TRUE(c->Post(Op::kMemset, memset(d, 0x5a)));
  // ...and its failures wait for the next synchronization: a launch of an
  // unknown function, then a memset of memory the client does not own.
  wire::Writer bad_launch;
  bad_launch.Put<uint64_t>(987654321);
  for (int i = 0; i < 6; ++i) bad_launch.Put<uint32_t>(1);
  bad_launch.Put<uint32_t>(0).Put<uint64_t>(wire::kStreamNull).Put<uint32_t>(0).Put<uint64_t>(0);
  ASSERT_TRUE(c->Post(Op::kLaunchKernel, bad_launch));
  ASSERT_TRUE(c->Post(Op::kMemset, memset(0x10, 1)));
  // A request that does not synchronize answers for itself only.
  EXPECT_EQ(c->Code(Op::kMemGetInfo, wire::Writer()), CUDA_SUCCESS);
  // The first error comes back once, from the synchronization.
  EXPECT_EQ(c->Code(Op::kStreamSynchronize, wire::Writer().Put<uint64_t>(wire::kStreamNull)),
            CUDA_ERROR_INVALID_HANDLE);
  EXPECT_EQ(c->Code(Op::kCtxSynchronize, wire::Writer()), CUDA_SUCCESS);
  std::vector<uint8_t> out(64);
  ASSERT_EQ(c->DtoH(out.data(), d, out.size()), CUDA_SUCCESS);
  EXPECT_EQ(out, std::vector<uint8_t>(64, 0x5a));
}

// Posted launches run on the session's launch pipeline (launch_pipeline.h):
// they still take effect in the order the client sent them, around other
// commands, and their errors come back in that order too.
TEST_P(ServerSessionTest, PostedLaunchesKeepTheClientsOrder) {
  std::unique_ptr<TestClient> c = Hello();
  ASSERT_NE(c, nullptr);
  const uint64_t module = LoadUnitModule(*c);
  uint64_t fn = 0;
  ASSERT_EQ(c->GetFunction(module, "wooly_unit_add_one", &fn), CUDA_SUCCESS);
  constexpr uint32_t kN = 256;
  uint64_t d = 0;
  ASSERT_EQ(c->MemAlloc(kN * 4, &d), CUDA_SUCCESS);
  auto launch = [&](uint64_t function, uint32_t shared_bytes) {
    wire::Writer w;
    w.Put<uint64_t>(function);
    w.Put<uint32_t>(1).Put<uint32_t>(1).Put<uint32_t>(1);
    w.Put<uint32_t>(kN).Put<uint32_t>(1).Put<uint32_t>(1);
    w.Put<uint32_t>(shared_bytes).Put<uint64_t>(wire::kStreamNull).Put<uint32_t>(0);
    const std::vector<uint8_t> args = ArgPacker().Add<uint64_t>(d).Add<uint32_t>(kN).bytes();
    w.PutBytes(args.data(), args.size());
    return c->Post(Op::kLaunchKernel, w);
  };
  auto memset = [&](uint64_t dst, uint32_t value) {
    wire::Writer w;
    w.Put<uint64_t>(dst).Put<uint64_t>(0).Put<uint32_t>(value).Put<uint8_t>(4);
    w.Put<uint64_t>(kN).Put<uint64_t>(1).Put<uint64_t>(wire::kStreamNull).Put<uint8_t>(1);
    return c->Post(Op::kMemset, w);
  };
  ASSERT_TRUE(memset(d, 0));
  for (int i = 0; i < 300; ++i) ASSERT_TRUE(launch(fn, 0));  // more than the queue holds
  ASSERT_TRUE(memset(d, 7));                                 // after every launch before it
  for (int i = 0; i < 50; ++i) ASSERT_TRUE(launch(fn, 0));
  ASSERT_EQ(c->OneId(Op::kStreamSynchronize, wire::kStreamNull), CUDA_SUCCESS);
  std::vector<uint32_t> out(kN);
  ASSERT_EQ(c->DtoH(out.data(), d, kN * 4), CUDA_SUCCESS);
  EXPECT_EQ(out, std::vector<uint32_t>(kN, 7 + 50));

  // A queued launch the driver refuses (too much shared memory) fails
  // before a later one woolyd refuses itself (an unknown function): the
  // synchronization reports the first.
  ASSERT_TRUE(launch(fn, 1u << 30));
  ASSERT_TRUE(launch(987654321, 0));
  EXPECT_EQ(c->OneId(Op::kStreamSynchronize, wire::kStreamNull), CUDA_ERROR_INVALID_VALUE);
  EXPECT_EQ(c->OneId(Op::kStreamSynchronize, wire::kStreamNull), CUDA_SUCCESS);
  // The session still works, and closes with launches queued.
  for (int i = 0; i < 20; ++i) ASSERT_TRUE(launch(fn, 0));
  ASSERT_EQ(c->DtoH(out.data(), d, kN * 4), CUDA_SUCCESS);
  EXPECT_EQ(out, std::vector<uint32_t>(kN, 7 + 50 + 20));
  for (int i = 0; i < 20; ++i) ASSERT_TRUE(launch(fn, 0));
  c->Close();
}

}  // namespace
}  // namespace wooly::server
