// Sticky (context-corrupting) errors in the shared context: which CUresults
// are sticky, the fake backend's lost state, SharedContext's poisoning and
// reset, and woolyd end to end: a faulting client takes the GPU state of
// every client that shared the context (as with MPS), the server resets the
// context and keeps serving new clients.
#include <cuda.h>

#include <atomic>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/synchronization/blocking_counter.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "server_test_client.h"
#include "wooly/cli/format.h"
#include "wooly/fake/fake_backend.h"
#include "wooly/proto/wire.h"
#include "wooly/server/cu_status.h"
#include "wooly/server/server.h"
#include "wooly/server/shared_context.h"
#include "wooly/v1/admin.grpc.pb.h"

namespace wooly::server {
namespace {

using ::testing::HasSubstr;
using wooly::fake::FakeBackend;
using wooly::fake::FakeKernel;
using wooly::fake::FakeLaunch;
using wooly::fake::MakeFakeModuleImage;
using wooly::testing::ArgPacker;
using wooly::testing::TestClient;

constexpr absl::Duration kWait = absl::Seconds(60);

CUresult Code(const absl::Status& s) { return ToCuResult(s); }
template <typename T>
CUresult Code(const absl::StatusOr<T>& s) {
  return ToCuResult(s.status());
}

// The test's kernels: one that faults like a kernel dereferencing an invalid
// address, one that fails without faulting, and a fill (p, value, n).
void RegisterStickyKernels() {
  fake::RegisterFakeKernel({"wooly_sticky_fault", {}, [](const FakeLaunch&) {
                              return CuError(CUDA_ERROR_ILLEGAL_ADDRESS, "bad dereference");
                            }});
  fake::RegisterFakeKernel({"wooly_sticky_invalid", {}, [](const FakeLaunch&) {
                              return CuError(CUDA_ERROR_INVALID_VALUE, "not a fault");
                            }});
  FakeKernel fill;
  fill.name = "wooly_sticky_fill";
  fill.params = {{0, 8}, {8, 4}, {12, 4}};
  fill.run = [](const FakeLaunch& l) -> absl::Status {
    uint64_t p = 0;
    uint32_t v = 0, n = 0;
    std::memcpy(&p, l.args.data(), 8);
    std::memcpy(&v, l.args.data() + 8, 4);
    std::memcpy(&n, l.args.data() + 12, 4);
    auto* data = static_cast<uint32_t*>(l.host(p, uint64_t{n} * 4));
    if (n && data == nullptr) return CuError(CUDA_ERROR_ILLEGAL_ADDRESS, "fill");
    for (uint32_t i = 0; i < n; ++i) data[i] = v;
    return absl::OkStatus();
  };
  fake::RegisterFakeKernel(fill);
}

// ----------------------------------------------------------- which are sticky

TEST(StickyErrorsTest, KernelFaultsAndHardwareErrorsAreSticky) {
  for (CUresult r :
       {CUDA_ERROR_ILLEGAL_ADDRESS, CUDA_ERROR_LAUNCH_TIMEOUT, CUDA_ERROR_ASSERT,
        CUDA_ERROR_HARDWARE_STACK_ERROR, CUDA_ERROR_ILLEGAL_INSTRUCTION,
        CUDA_ERROR_MISALIGNED_ADDRESS, CUDA_ERROR_INVALID_ADDRESS_SPACE, CUDA_ERROR_INVALID_PC,
        CUDA_ERROR_LAUNCH_FAILED, CUDA_ERROR_TENSOR_MEMORY_LEAK, CUDA_ERROR_ECC_UNCORRECTABLE,
        CUDA_ERROR_CONTAINED, CUDA_ERROR_EXTERNAL_DEVICE}) {
    EXPECT_TRUE(IsStickyContextError(r)) << r;
  }
}

TEST(StickyErrorsTest, OrdinaryErrorsAreNot) {
  for (CUresult r :
       {CUDA_SUCCESS, CUDA_ERROR_INVALID_VALUE, CUDA_ERROR_OUT_OF_MEMORY, CUDA_ERROR_INVALID_HANDLE,
        CUDA_ERROR_NOT_READY, CUDA_ERROR_NOT_FOUND, CUDA_ERROR_INVALID_IMAGE,
        CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES, CUDA_ERROR_NOT_SUPPORTED,
        CUDA_ERROR_STREAM_CAPTURE_INVALIDATED, CUDA_ERROR_INVALID_CONTEXT, CUDA_ERROR_UNKNOWN}) {
    EXPECT_FALSE(IsStickyContextError(r)) << r;
  }
}

TEST(StickyErrorsTest, NamesForLogs) {
  EXPECT_EQ(CuResultName(CUDA_ERROR_ILLEGAL_ADDRESS), "CUDA_ERROR_ILLEGAL_ADDRESS");
  EXPECT_EQ(CuResultName(CUDA_ERROR_LAUNCH_FAILED), "CUDA_ERROR_LAUNCH_FAILED");
  EXPECT_EQ(CuResultName(static_cast<CUresult>(12345)), "CUresult 12345");
}

// ------------------------------------------------------------- fake backend

TEST(FakeBackendStickyTest, AFaultLosesTheContextUntilReset) {
  RegisterStickyKernels();
  FakeBackend fake;
  const DevPtr d = *fake.MemAlloc(64);
  const Handle s = *fake.StreamCreate(CU_STREAM_NON_BLOCKING, 0);
  const Handle m = *fake.ModuleLoadData(MakeFakeModuleImage({"wooly_sticky_fault"}));
  const Handle f = *fake.ModuleGetFunction(m, "wooly_sticky_fault");
  EXPECT_EQ(fake.sticky_error(), CUDA_SUCCESS);

  EXPECT_EQ(Code(fake.LaunchKernel(f, LaunchConfig{}, {})), CUDA_ERROR_ILLEGAL_ADDRESS);
  EXPECT_EQ(fake.sticky_error(), CUDA_ERROR_ILLEGAL_ADDRESS);
  // Every later call fails with the same result, whatever it is.
  EXPECT_EQ(Code(fake.MemAlloc(64)), CUDA_ERROR_ILLEGAL_ADDRESS);
  EXPECT_EQ(Code(fake.MemFree(d)), CUDA_ERROR_ILLEGAL_ADDRESS);
  EXPECT_EQ(Code(fake.StreamSynchronize(s)), CUDA_ERROR_ILLEGAL_ADDRESS);
  EXPECT_EQ(Code(fake.StreamCreate(CU_STREAM_NON_BLOCKING, 0)), CUDA_ERROR_ILLEGAL_ADDRESS);
  EXPECT_EQ(Code(fake.MemGetInfo()), CUDA_ERROR_ILLEGAL_ADDRESS);
  EXPECT_EQ(Code(fake.CtxSynchronize()), CUDA_ERROR_ILLEGAL_ADDRESS);
  EXPECT_TRUE(fake.GetDeviceInfo().ok());  // the device itself is fine

  ASSERT_TRUE(fake.ResetContext().ok());
  EXPECT_EQ(fake.context_resets(), 1u);
  EXPECT_EQ(fake.sticky_error(), CUDA_SUCCESS);
  // Everything went with the old context; nothing old resolves any more.
  EXPECT_EQ(fake.live_allocations(), 0u);
  EXPECT_EQ(fake.live_streams(), 0u);
  EXPECT_EQ(fake.live_modules(), 0u);
  EXPECT_EQ(fake.HostPointer(d, 64), nullptr);
  EXPECT_EQ(Code(fake.MemFree(d)), CUDA_ERROR_INVALID_VALUE);
  EXPECT_EQ(Code(fake.StreamSynchronize(s)), CUDA_ERROR_INVALID_HANDLE);
  EXPECT_EQ(Code(fake.LaunchKernel(f, LaunchConfig{}, {})), CUDA_ERROR_INVALID_HANDLE);
  // The new context works, and its addresses never repeat old ones.
  absl::StatusOr<DevPtr> d2 = fake.MemAlloc(64);
  ASSERT_TRUE(d2.ok());
  EXPECT_NE(*d2, d);
  EXPECT_EQ(fake.MemGetInfo()->free, fake.MemGetInfo()->total - 64);
}

TEST(FakeBackendStickyTest, OrdinaryKernelErrorsAndInjectedFaults) {
  RegisterStickyKernels();
  FakeBackend fake;
  const Handle m = *fake.ModuleLoadData(MakeFakeModuleImage({"wooly_sticky_invalid"}));
  const Handle f = *fake.ModuleGetFunction(m, "wooly_sticky_invalid");
  EXPECT_EQ(Code(fake.LaunchKernel(f, LaunchConfig{}, {})), CUDA_ERROR_INVALID_VALUE);
  EXPECT_EQ(fake.sticky_error(), CUDA_SUCCESS);
  EXPECT_TRUE(fake.MemAlloc(16).ok());
  // A fault that surfaces later, in whichever call comes next.
  fake.InjectStickyError(CUDA_ERROR_LAUNCH_FAILED);
  EXPECT_EQ(Code(fake.MemAlloc(16)), CUDA_ERROR_LAUNCH_FAILED);
  fake.InjectStickyError(CUDA_ERROR_ILLEGAL_ADDRESS);  // the first one stays
  EXPECT_EQ(Code(fake.MemAlloc(16)), CUDA_ERROR_LAUNCH_FAILED);
}

// ------------------------------------------------------------ SharedContext

// Counts the backend calls in flight, to check that a reset runs alone.
class InFlightBackend : public FakeBackend {
 public:
  absl::StatusOr<MemInfo> MemGetInfo() override {
    in_flight.fetch_add(1);
    if (block != nullptr) {
      entered.Notify();
      block->WaitForNotification();
    }
    auto r = FakeBackend::MemGetInfo();
    in_flight.fetch_sub(1);
    return r;
  }
  absl::Status ResetContext() override {
    reset_attempts.fetch_add(1);
    if (in_flight.load() != 0) reset_while_busy.store(true);
    if (fail_resets.load() > 0) {
      fail_resets.fetch_sub(1);
      return CuError(CUDA_ERROR_ILLEGAL_ADDRESS, "cuDevicePrimaryCtxReset (test)");
    }
    return FakeBackend::ResetContext();
  }
  std::atomic<int> in_flight{0};
  std::atomic<bool> reset_while_busy{false};
  std::atomic<int> fail_resets{0};
  std::atomic<int> reset_attempts{0};
  absl::Notification entered;
  absl::Notification* block = nullptr;
};

std::string Who() { return "test"; }

TEST(SharedContextTest, AFaultPoisonsItsGenerationAndResets) {
  InFlightBackend backend;
  SharedContext context(&backend);
  uint64_t generation = SharedContext::kUnbound;
  {
    SharedContext::Access a(&context, SharedContext::kUnbound);
    ASSERT_TRUE(a.ok());
    generation = a.generation();
    context.Bind(generation);
    a.Observe(CUDA_ERROR_INVALID_VALUE, Who);  // not sticky: nothing happens
    EXPECT_FALSE(a.faulted());
  }
  EXPECT_EQ(generation, 0u);
  EXPECT_EQ(context.bound_sessions(), 1u);
  {
    SharedContext::Access a(&context, generation);
    ASSERT_TRUE(a.ok());
    a.Observe(CuError(CUDA_ERROR_ILLEGAL_ADDRESS), Who);
    EXPECT_TRUE(a.faulted());
    EXPECT_TRUE(context.IsLost(generation));  // lost at once, before the reset
    EXPECT_EQ(context.resets(), 0u);
    // Later sticky results of the same generation are echoes of the first.
    a.Observe(CUDA_ERROR_LAUNCH_FAILED, Who);
  }  // the reset runs here
  EXPECT_EQ(context.resets(), 1u);
  EXPECT_EQ(backend.context_resets(), 1u);
  EXPECT_EQ(context.generation(), 1u);
  EXPECT_EQ(context.bound_sessions(), 0u);
  EXPECT_EQ(context.LostResult(generation), CUDA_ERROR_ILLEGAL_ADDRESS);
  {
    SharedContext::Access poisoned(&context, generation);
    EXPECT_FALSE(poisoned.ok());
    EXPECT_EQ(poisoned.result(), CUDA_ERROR_ILLEGAL_ADDRESS);
  }
  SharedContext::Access fresh(&context, SharedContext::kUnbound);
  EXPECT_TRUE(fresh.ok());
  EXPECT_EQ(fresh.generation(), 1u);
  EXPECT_FALSE(context.IsLost(1));
  EXPECT_TRUE(context.EnsureUsable().ok());
}

// A failed reset is final (a real driver cannot bring the context back in
// the process): the owner is told once, and nothing retries the reset.
TEST(SharedContextTest, AFailedResetIsFinalAndReported) {
  InFlightBackend backend;
  backend.fail_resets.store(1);
  std::atomic<int> reported{0};
  CUresult reported_fault = CUDA_SUCCESS;
  SharedContext context(&backend, [&](CUresult fault) {
    reported_fault = fault;
    reported.fetch_add(1);
  });
  EXPECT_FALSE(context.unrecoverable());
  {
    SharedContext::Access a(&context, SharedContext::kUnbound);
    a.Observe(CUDA_ERROR_ILLEGAL_ADDRESS, Who);
  }
  EXPECT_EQ(backend.reset_attempts.load(), 1);
  EXPECT_EQ(reported.load(), 1);
  EXPECT_EQ(reported_fault, CUDA_ERROR_ILLEGAL_ADDRESS);
  EXPECT_TRUE(context.unrecoverable());
  EXPECT_EQ(context.resets(), 0u);
  EXPECT_TRUE(context.IsLost(0));
  {
    SharedContext::Access a(&context, SharedContext::kUnbound);  // nothing may run
    EXPECT_EQ(a.result(), CUDA_ERROR_ILLEGAL_ADDRESS);
  }
  // A new session is refused without another attempt, even though this
  // fake's next reset would succeed.
  EXPECT_EQ(Code(context.EnsureUsable()), CUDA_ERROR_ILLEGAL_ADDRESS);
  EXPECT_EQ(Code(context.EnsureUsable()), CUDA_ERROR_ILLEGAL_ADDRESS);
  EXPECT_EQ(backend.reset_attempts.load(), 1);
  EXPECT_EQ(reported.load(), 1);
  EXPECT_EQ(context.generation(), 0u);
}

TEST(SharedContextTest, TheResetWaitsForBackendCallsInFlight) {
  InFlightBackend backend;
  absl::Notification release;
  backend.block = &release;
  SharedContext context(&backend);
  std::thread busy([&] {
    SharedContext::Access a(&context, SharedContext::kUnbound);
    ASSERT_TRUE(a.ok());
    (void)backend.MemGetInfo();  // blocks until released
  });
  backend.entered.WaitForNotification();
  std::thread faulting([&] {
    SharedContext::Access a(&context, SharedContext::kUnbound);
    a.Observe(CUDA_ERROR_ILLEGAL_ADDRESS, Who);
  });  // its reset must wait for `busy`
  release.Notify();
  faulting.join();
  busy.join();
  EXPECT_EQ(context.resets(), 1u);
  EXPECT_FALSE(backend.reset_while_busy.load());
}

// ------------------------------------------------------------ through woolyd

// Counts the cleanup calls a disconnect makes, and can fail resets.
class StickyTestBackend : public InFlightBackend {
 public:
  absl::Status MemFree(DevPtr p) override {
    frees.fetch_add(1);
    return FakeBackend::MemFree(p);
  }
  absl::Status StreamDestroy(Handle s) override {
    stream_destroys.fetch_add(1);
    return FakeBackend::StreamDestroy(s);
  }
  absl::Status ModuleUnload(Handle m) override {
    module_unloads.fetch_add(1);
    return FakeBackend::ModuleUnload(m);
  }
  std::atomic<int> frees{0};
  std::atomic<int> stream_destroys{0};
  std::atomic<int> module_unloads{0};
};

class ServerStickyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    RegisterStickyKernels();
    dir_ = testing::MakeTempDir();
    ASSERT_FALSE(dir_.empty());
    ServerOptions options;
    options.listen = {"unix:" + dir_ + "/woolyd.sock"};
    options.admin = "unix:" + dir_ + "/admin.sock";
    options.on_context_unrecoverable = [this](CUresult fault) {
      unrecoverable_fault_ = fault;
      unrecoverable_.Notify();  // a second call would abort the test
    };
    auto backend = std::make_unique<StickyTestBackend>();
    fake_ = backend.get();
    absl::StatusOr<std::unique_ptr<Server>> server = Server::Start(options, std::move(backend));
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    endpoint_ = server_->listen_addresses()[0];
  }
  void TearDown() override {
    server_.reset();
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }

  std::unique_ptr<TestClient> Hello(const std::string& name) {
    std::unique_ptr<TestClient> c = TestClient::Connect(endpoint_);
    EXPECT_NE(c, nullptr);
    if (c) {
      EXPECT_EQ(c->Hello(name), CUDA_SUCCESS) << name;
    }
    return c;
  }
  // Loads the test kernels into `c`; returns false on any error.
  bool LoadKernels(TestClient& c, uint64_t* fault, uint64_t* invalid, uint64_t* fill) {
    uint64_t module = 0;
    if (c.LoadModule(MakeFakeModuleImage(
                         {"wooly_sticky_fault", "wooly_sticky_invalid", "wooly_sticky_fill"}),
                     &module) != CUDA_SUCCESS) {
      return false;
    }
    return c.GetFunction(module, "wooly_sticky_fault", fault) == CUDA_SUCCESS &&
           c.GetFunction(module, "wooly_sticky_invalid", invalid) == CUDA_SUCCESS &&
           c.GetFunction(module, "wooly_sticky_fill", fill) == CUDA_SUCCESS;
  }
  // A full round trip in a fresh client: allocate, copy, launch, read back.
  void ExpectNewClientWorks(const std::string& name) {
    std::unique_ptr<TestClient> c = Hello(name);
    ASSERT_NE(c, nullptr);
    uint64_t fault = 0, invalid = 0, fill = 0;
    ASSERT_TRUE(LoadKernels(*c, &fault, &invalid, &fill));
    uint64_t p = 0;
    ASSERT_EQ(c->MemAlloc(64, &p), CUDA_SUCCESS);
    std::vector<uint32_t> data(16, 1);
    ASSERT_EQ(c->HtoD(p, data.data(), 64), CUDA_SUCCESS);
    ASSERT_EQ(c->Launch(fill, 1, 8, ArgPacker().Add(p).Add(uint32_t{7}).Add(uint32_t{8}).bytes()),
              CUDA_SUCCESS);
    std::vector<uint32_t> back(16, 0);
    ASSERT_EQ(c->DtoH(back.data(), p, 64), CUDA_SUCCESS);
    for (int i = 0; i < 16; ++i) EXPECT_EQ(back[i], i < 8 ? 7u : 1u) << i;
    ASSERT_EQ(c->MemFree(p), CUDA_SUCCESS);
    EXPECT_EQ(c->Code(wire::Op::kGoodbye, wire::Writer()), CUDA_SUCCESS);
  }
  const ClientStatus* Find(const StatusSnapshot& s, const std::string& name) {
    for (const ClientStatus& c : s.clients) {
      if (c.name == name) return &c;
    }
    return nullptr;
  }

  std::string dir_;
  absl::Notification unrecoverable_;
  CUresult unrecoverable_fault_ = CUDA_SUCCESS;
  StickyTestBackend* fake_ = nullptr;  // owned by server_
  std::unique_ptr<Server> server_;
  std::string endpoint_;
};

// Client A's kernel faults. The context A and B shared is gone, so both get
// the sticky error from then on, as native processes sharing a context
// would; their memory is gone with it. The server resets the context at once
// and a new client C works normally.
TEST_F(ServerStickyTest, AFaultPoisonsEveryClientAndTheServerKeepsServing) {
  std::unique_ptr<TestClient> a = Hello("tenant-a");
  std::unique_ptr<TestClient> b = Hello("tenant-b");
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  uint64_t fault = 0, invalid = 0, fill = 0;
  ASSERT_TRUE(LoadKernels(*a, &fault, &invalid, &fill));
  uint64_t pa = 0, pb = 0;
  ASSERT_EQ(a->MemAlloc(256, &pa), CUDA_SUCCESS);
  ASSERT_EQ(b->MemAlloc(256, &pb), CUDA_SUCCESS);
  const uint32_t word = 0x1234;
  ASSERT_EQ(b->HtoD(pb, &word, 4), CUDA_SUCCESS);
  EXPECT_EQ(server_->context()->bound_sessions(), 2u);

  EXPECT_EQ(a->Launch(fault, 1, 1, {}), CUDA_ERROR_ILLEGAL_ADDRESS);
  // The reset ran before A got its reply.
  EXPECT_EQ(server_->context()->resets(), 1u);
  EXPECT_EQ(fake_->context_resets(), 1u);

  // A and B: the same sticky error for everything, without touching the GPU.
  uint64_t p = 0;
  EXPECT_EQ(a->MemAlloc(16, &p), CUDA_ERROR_ILLEGAL_ADDRESS);
  EXPECT_EQ(a->Launch(fill, 1, 1, ArgPacker().Add(pa).Add(uint32_t{1}).Add(uint32_t{1}).bytes()),
            CUDA_ERROR_ILLEGAL_ADDRESS);
  uint32_t back = 0;
  EXPECT_EQ(b->DtoH(&back, pb, 4), CUDA_ERROR_ILLEGAL_ADDRESS);
  EXPECT_EQ(b->MemAlloc(16, &p), CUDA_ERROR_ILLEGAL_ADDRESS);
  EXPECT_EQ(b->Code(wire::Op::kCtxSynchronize, wire::Writer()), CUDA_ERROR_ILLEGAL_ADDRESS);
  EXPECT_EQ(b->Code(wire::Op::kMemGetInfo, wire::Writer()), CUDA_ERROR_ILLEGAL_ADDRESS);

  StatusSnapshot status = server_->Status();
  EXPECT_EQ(status.context_resets, 1u);
  ASSERT_NE(Find(status, "tenant-a"), nullptr);
  ASSERT_NE(Find(status, "tenant-b"), nullptr);
  EXPECT_TRUE(Find(status, "tenant-a")->context_lost);
  EXPECT_TRUE(Find(status, "tenant-b")->context_lost);

  // A new client gets a working context, and is not marked lost.
  std::unique_ptr<TestClient> c = Hello("tenant-c");
  ASSERT_NE(c, nullptr);
  uint64_t pc = 0;
  ASSERT_EQ(c->MemAlloc(128, &pc), CUDA_SUCCESS);
  ExpectNewClientWorks("tenant-d");
  ASSERT_TRUE(server_->WaitForSessionCount(3, kWait));  // D has left
  status = server_->Status();
  ASSERT_NE(Find(status, "tenant-c"), nullptr);
  EXPECT_FALSE(Find(status, "tenant-c")->context_lost);
  EXPECT_EQ(server_->context()->bound_sessions(), 1u);  // C (D has left)

  // A says goodbye, B just vanishes: bookkeeping only, nothing freed twice.
  const int frees = fake_->frees.load();
  const int stream_destroys = fake_->stream_destroys.load();
  const int module_unloads = fake_->module_unloads.load();
  EXPECT_EQ(a->Code(wire::Op::kGoodbye, wire::Writer()), CUDA_SUCCESS);
  b->Close();
  ASSERT_TRUE(server_->WaitForSessionCount(1, kWait));  // C remains
  EXPECT_EQ(fake_->frees.load(), frees);
  EXPECT_EQ(fake_->stream_destroys.load(), stream_destroys);
  EXPECT_EQ(fake_->module_unloads.load(), module_unloads);
  // Only C's objects live in the new context: its allocation and stream.
  EXPECT_EQ(fake_->live_allocations(), 1u);
  EXPECT_EQ(fake_->live_streams(), 1u);
  EXPECT_EQ(fake_->live_modules(), 0u);
  EXPECT_EQ(server_->Status().context_resets, 1u);
  EXPECT_EQ(c->MemFree(pc), CUDA_SUCCESS);
}

// Errors that leave the context usable change nothing for anyone.
TEST_F(ServerStickyTest, AnOrdinaryErrorResetsNothing) {
  std::unique_ptr<TestClient> a = Hello("tenant-a");
  std::unique_ptr<TestClient> b = Hello("tenant-b");
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  uint64_t fault = 0, invalid = 0, fill = 0;
  ASSERT_TRUE(LoadKernels(*a, &fault, &invalid, &fill));
  uint64_t pa = 0, pb = 0;
  ASSERT_EQ(a->MemAlloc(64, &pa), CUDA_SUCCESS);
  ASSERT_EQ(b->MemAlloc(64, &pb), CUDA_SUCCESS);

  EXPECT_EQ(a->Launch(invalid, 1, 1, {}), CUDA_ERROR_INVALID_VALUE);
  const uint32_t word = 5;
  EXPECT_EQ(a->HtoD(pb, &word, 4), CUDA_ERROR_INVALID_VALUE);  // B's memory
  EXPECT_EQ(a->MemFree(pa + 8), CUDA_ERROR_INVALID_VALUE);
  uint64_t p = 0;
  EXPECT_EQ(a->MemAlloc(uint64_t{1} << 50, &p), CUDA_ERROR_OUT_OF_MEMORY);

  EXPECT_EQ(server_->context()->resets(), 0u);
  EXPECT_EQ(fake_->context_resets(), 0u);
  EXPECT_EQ(a->HtoD(pa, &word, 4), CUDA_SUCCESS);
  ASSERT_EQ(a->Launch(fill, 1, 4, ArgPacker().Add(pa).Add(uint32_t{9}).Add(uint32_t{4}).bytes()),
            CUDA_SUCCESS);
  uint32_t back[4] = {};
  ASSERT_EQ(a->DtoH(back, pa, 16), CUDA_SUCCESS);
  EXPECT_EQ(back[3], 9u);
  EXPECT_EQ(b->HtoD(pb, &word, 4), CUDA_SUCCESS);
  const StatusSnapshot status = server_->Status();
  EXPECT_EQ(status.context_resets, 0u);
  for (const ClientStatus& c : status.clients) EXPECT_FALSE(c.context_lost) << c.name;
}

// A fault usually surfaces asynchronously, in whatever call comes next,
// possibly another client's: that call detects it, and the result is the same.
TEST_F(ServerStickyTest, AnAsynchronousFaultIsCaughtByWhicheverCallSeesIt) {
  std::unique_ptr<TestClient> a = Hello("tenant-a");
  std::unique_ptr<TestClient> b = Hello("tenant-b");
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  uint64_t pa = 0;
  ASSERT_EQ(a->MemAlloc(64, &pa), CUDA_SUCCESS);
  fake_->InjectStickyError(CUDA_ERROR_LAUNCH_FAILED);  // e.g. A's kernel, still running
  uint64_t p = 0;
  EXPECT_EQ(b->MemAlloc(64, &p), CUDA_ERROR_LAUNCH_FAILED);
  EXPECT_EQ(server_->context()->resets(), 1u);
  uint32_t back = 0;
  EXPECT_EQ(a->DtoH(&back, pa, 4), CUDA_ERROR_LAUNCH_FAILED);
  EXPECT_EQ(b->MemAlloc(64, &p), CUDA_ERROR_LAUNCH_FAILED);
  ExpectNewClientWorks("tenant-c");
}

// The fault may first show when a client leaves (its cleanup synchronizes
// its streams): the context is reset then, and the others are poisoned.
TEST_F(ServerStickyTest, AFaultSeenDuringCleanupResetsTheContext) {
  std::unique_ptr<TestClient> a = Hello("tenant-a");
  std::unique_ptr<TestClient> b = Hello("tenant-b");
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  uint64_t pa = 0, pb = 0;
  ASSERT_EQ(a->MemAlloc(64, &pa), CUDA_SUCCESS);
  ASSERT_EQ(b->MemAlloc(64, &pb), CUDA_SUCCESS);
  fake_->InjectStickyError(CUDA_ERROR_ILLEGAL_ADDRESS);
  const int frees = fake_->frees.load();
  a->Close();
  ASSERT_TRUE(server_->WaitForSessionCount(1, kWait));
  EXPECT_EQ(server_->context()->resets(), 1u);
  EXPECT_EQ(fake_->frees.load(), frees);  // nothing freed into the lost context
  uint32_t back = 0;
  EXPECT_EQ(b->DtoH(&back, pb, 4), CUDA_ERROR_ILLEGAL_ADDRESS);
  ExpectNewClientWorks("tenant-c");
}

// When the reset itself fails (as it does on the real driver), the context
// is lost for good in this process: everyone keeps getting the sticky error,
// the server stops accepting and tells its owner that the process must exit
// (woolyd then exits with kExitContextLost; server_supervisor_test.cc).
// Shutting down still delivers the replies of commands in flight.
TEST_F(ServerStickyTest, AFailedResetMakesTheServerAskToExit) {
  fake_->fail_resets.store(1);
  std::unique_ptr<TestClient> a = Hello("tenant-a");
  std::unique_ptr<TestClient> b = Hello("tenant-b");
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  uint64_t fault = 0, invalid = 0, fill = 0;
  ASSERT_TRUE(LoadKernels(*a, &fault, &invalid, &fill));
  uint64_t pb = 0;
  ASSERT_EQ(b->MemAlloc(64, &pb), CUDA_SUCCESS);
  // As woolyd does: the owner shuts the server down as soon as it is told,
  // racing with the faulting command's reply, which must still arrive.
  std::thread owner([this] {
    unrecoverable_.WaitForNotification();
    server_->Shutdown();
  });
  EXPECT_EQ(a->Launch(fault, 1, 1, {}), CUDA_ERROR_ILLEGAL_ADDRESS);  // the reset fails
  owner.join();
  EXPECT_EQ(unrecoverable_fault_, CUDA_ERROR_ILLEGAL_ADDRESS);
  EXPECT_TRUE(server_->context_unrecoverable());
  EXPECT_TRUE(server_->context()->unrecoverable());
  EXPECT_EQ(server_->context()->resets(), 0u);
  EXPECT_EQ(fake_->reset_attempts.load(), 1);  // never retried
  // Every session is closed; nothing was released into the lost context.
  EXPECT_EQ(server_->session_count(), 0u);
  EXPECT_TRUE(a->ServerClosed());
  EXPECT_TRUE(b->ServerClosed());
  EXPECT_EQ(fake_->frees.load(), 0);
  EXPECT_EQ(fake_->stream_destroys.load(), 0);
}

// Until its owner shuts it down, a server whose context is lost for good
// answers without the GPU and refuses new work.
TEST_F(ServerStickyTest, AfterAFailedResetNothingTouchesTheGpu) {
  fake_->fail_resets.store(1);
  std::unique_ptr<TestClient> a = Hello("tenant-a");
  ASSERT_NE(a, nullptr);
  uint64_t fault = 0, invalid = 0, fill = 0;
  ASSERT_TRUE(LoadKernels(*a, &fault, &invalid, &fill));
  EXPECT_EQ(a->Launch(fault, 1, 1, {}), CUDA_ERROR_ILLEGAL_ADDRESS);
  ASSERT_TRUE(unrecoverable_.HasBeenNotified());  // before the reply went out
  uint64_t p = 0;
  EXPECT_EQ(a->MemAlloc(16, &p), CUDA_ERROR_ILLEGAL_ADDRESS);
  EXPECT_EQ(a->Code(wire::Op::kCtxSynchronize, wire::Writer()), CUDA_ERROR_ILLEGAL_ADDRESS);
  StatusSnapshot status = server_->Status();  // answers without the GPU
  EXPECT_EQ(status.used_memory_bytes, 0u);
  EXPECT_EQ(status.context_resets, 0u);
  EXPECT_TRUE(Find(status, "tenant-a")->context_lost);
  EXPECT_EQ(Code(server_->context()->EnsureUsable()), CUDA_ERROR_ILLEGAL_ADDRESS);
  EXPECT_EQ(fake_->reset_attempts.load(), 1);
}

// Commands racing with a fault get either their normal result (before it)
// or the sticky error (after it), and the server neither hangs nor crashes.
TEST_F(ServerStickyTest, CommandsRacingAFaultSeeOneOrTheOther) {
  std::unique_ptr<TestClient> a = Hello("tenant-a");
  ASSERT_NE(a, nullptr);
  uint64_t fault = 0, invalid = 0, fill = 0;
  ASSERT_TRUE(LoadKernels(*a, &fault, &invalid, &fill));
  constexpr int kClients = 3;
  constexpr int kRounds = 100;
  std::vector<std::unique_ptr<TestClient>> others;
  for (int i = 0; i < kClients; ++i) {
    others.push_back(Hello("busy-" + std::to_string(i)));
    ASSERT_NE(others.back(), nullptr);
  }
  std::atomic<int> unexpected{0};
  absl::BlockingCounter started(kClients);
  std::vector<std::thread> threads;
  for (auto& c : others) {
    threads.emplace_back([&c, &unexpected, &started] {
      uint64_t p = 0;
      const uint32_t word = 3;
      const bool ready =
          c->MemAlloc(64, &p) == CUDA_SUCCESS && c->HtoD(p, &word, 4) == CUDA_SUCCESS;
      if (!ready) unexpected.fetch_add(1);
      started.DecrementCount();  // the fault comes while the rounds run
      if (!ready) return;
      bool lost = false;
      for (int r = 0; r < kRounds; ++r) {
        const CUresult got = c->HtoD(p, &word, 4);
        if (got == CUDA_ERROR_ILLEGAL_ADDRESS) {
          lost = true;
        } else if (got != CUDA_SUCCESS || lost) {
          unexpected.fetch_add(1);  // anything else, or success after the loss
        }
      }
    });
  }
  started.Wait();
  EXPECT_EQ(a->Launch(fault, 1, 1, {}), CUDA_ERROR_ILLEGAL_ADDRESS);
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(unexpected.load(), 0);
  EXPECT_EQ(server_->context()->resets(), 1u);
  ExpectNewClientWorks("tenant-late");
}

// The admin service reports the resets and which clients lost their context.
TEST_F(ServerStickyTest, AdminStatusShowsResetsAndLostClients) {
  std::unique_ptr<TestClient> a = Hello("tenant-a");
  ASSERT_NE(a, nullptr);
  uint64_t fault = 0, invalid = 0, fill = 0;
  ASSERT_TRUE(LoadKernels(*a, &fault, &invalid, &fill));
  EXPECT_EQ(a->Launch(fault, 1, 1, {}), CUDA_ERROR_ILLEGAL_ADDRESS);
  std::unique_ptr<TestClient> c = Hello("tenant-c");
  ASSERT_NE(c, nullptr);

  auto channel = grpc::CreateChannel(server_->admin_address(), grpc::InsecureChannelCredentials());
  auto admin = wooly::v1::Admin::NewStub(channel);
  grpc::ClientContext context;
  wooly::v1::StatusReply reply;
  ASSERT_TRUE(admin->GetStatus(&context, wooly::v1::StatusRequest(), &reply).ok());
  EXPECT_EQ(reply.context_resets(), 1u);
  ASSERT_EQ(reply.clients_size(), 2);
  for (const wooly::v1::ClientInfo& info : reply.clients()) {
    EXPECT_EQ(info.context_lost(), info.name() == "tenant-a") << info.name();
  }
  // A lost client holds nothing on the GPU any more.
  EXPECT_EQ(reply.clients(0).modules(), 0u);
  EXPECT_EQ(reply.clients(0).streams(), 0u);
  // wooly-cli shows both, in its table only once a client is lost.
  const std::string table = cli::RenderStatus(reply);
  EXPECT_THAT(table, HasSubstr("Resets:    1 ("));
  EXPECT_THAT(table, HasSubstr("CONTEXT"));
  EXPECT_THAT(table, HasSubstr("lost"));
  const std::string json = cli::StatusToJson(reply);
  EXPECT_THAT(json, HasSubstr("\"context_resets\": 1,"));
  EXPECT_THAT(json, HasSubstr("\"context_lost\": true"));
  EXPECT_THAT(json, HasSubstr("\"context_lost\": false"));

  grpc::ClientContext context2;
  wooly::v1::ListClientsReply list;
  ASSERT_TRUE(admin->ListClients(&context2, wooly::v1::ListClientsRequest(), &list).ok());
  ASSERT_EQ(list.clients_size(), 2);
  EXPECT_TRUE(list.clients(0).context_lost());  // A connected first
  EXPECT_FALSE(list.clients(1).context_lost());
}

}  // namespace
}  // namespace wooly::server
