// Tenants, memory limits, the NVML view op and the scheduler's mechanism
// (tenants.h, share_control.h) in woolyd on the fake backend, with a manual
// clock driving both the server and the fake GPU's event timestamps.
#include <cuda.h>

#include <chrono>
#include <future>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server_test_client.h"
#include "wooly/fake/fake_backend.h"
#include "wooly/fake/fake_kernels.h"
#include "wooly/proto/wire.h"
#include "wooly/scheduler/clock.h"
#include "wooly/server/cu_status.h"
#include "wooly/server/server.h"
#include "wooly/server/share_control.h"
#include "wooly/server/tenants.h"

namespace wooly::server {
namespace {

using ::testing::HasSubstr;
using testing::TestClient;

// ---------------------------------------------------------------- tenants.h

TEST(TenantsTest, ParsesByteSizes) {
  EXPECT_EQ(*ParseByteSize("1024"), 1024u);
  EXPECT_EQ(*ParseByteSize("20GiB"), 20ull << 30);
  EXPECT_EQ(*ParseByteSize("20G"), 20ull << 30);
  EXPECT_EQ(*ParseByteSize("512 MiB"), 512ull << 20);
  EXPECT_EQ(*ParseByteSize("1.5g"), 3ull << 29);
  EXPECT_EQ(*ParseByteSize("4k"), 4096u);
  EXPECT_FALSE(ParseByteSize("").ok());
  EXPECT_FALSE(ParseByteSize("GiB").ok());
  EXPECT_FALSE(ParseByteSize("12 parsecs").ok());
  EXPECT_FALSE(ParseByteSize("1.5").ok());  // fractional bytes
  EXPECT_FALSE(ParseByteSize("-1G").ok());
  EXPECT_FALSE(ParseByteSize("99999999999T").ok());
}

TEST(TenantsTest, SettingsErrorsNameTheVariable) {
  absl::StatusOr<ClientSettings> s = ParseClientSettings({{"WOOLY_SM_CAP", "250"}});
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(std::string(s.status().message()), HasSubstr("WOOLY_SM_CAP"));
  s = ParseClientSettings({{"WOOLY_MEMORY_LIMIT", "lots"}});
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(std::string(s.status().message()), HasSubstr("WOOLY_MEMORY_LIMIT"));
  s = ParseClientSettings({{"WOOLY_NOSWAP", "maybe"}});
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(std::string(s.status().message()), HasSubstr("WOOLY_NOSWAP"));

  s = ParseClientSettings({{"WOOLY_TENANT", "team-a"},
                           {"WOOLY_MEMORY_LIMIT", "2GiB"},
                           {"WOOLY_WEIGHT", "3"},
                           {"WOOLY_SM_FLOOR", "20%"},
                           {"WOOLY_NOSWAP", "1"},
                           {"WOOLY_SOMETHING_NEWER", "x"},  // ignored
                           {"role", "observer"}});
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->tenant, "team-a");
  EXPECT_EQ(s->memory_limit, 2ull << 30);
  EXPECT_EQ(s->env_policy.weight, 3.0);
  EXPECT_DOUBLE_EQ(*s->env_policy.floor_share, 0.2);
  EXPECT_TRUE(s->noswap);
  EXPECT_FALSE(s->dedup);
  EXPECT_TRUE(s->observer);
}

TEST(TenantsTest, TenantKeyPrefersTheNamedTenantThenThePodThenThePidNamespace) {
  ClientIdentity who;
  who.client_id = 7;
  ClientSettings settings;
  EXPECT_EQ(TenantKeyFor(who, settings), "client-7");
  who.pid_namespace = 4026531836;
  EXPECT_EQ(TenantKeyFor(who, settings), "pidns:4026531836");
  who.pod = "llama-0";
  EXPECT_EQ(TenantKeyFor(who, settings), "llama-0");
  who.pod_namespace = "serving";
  EXPECT_EQ(TenantKeyFor(who, settings), "serving/llama-0");
  settings.tenant = "gold";
  EXPECT_EQ(TenantKeyFor(who, settings), "gold");
}

TEST(TenantsTest, MemoryIsChargedPerTenantUpToTheSmallestLimit) {
  TenantRegistry registry;
  ClientSettings a1;
  a1.tenant = "a";
  a1.memory_limit = 1000;
  ClientSettings a2;
  a2.tenant = "a";
  a2.memory_limit = 800;
  ClientSettings b;
  b.tenant = "b";
  auto m1 = registry.Join({1, "one", 11}, a1);
  auto m2 = registry.Join({2, "two", 12}, a2);
  auto m3 = registry.Join({3, "three", 13}, b);
  ASSERT_TRUE(m1.ok() && m2.ok() && m3.ok());
  EXPECT_FALSE(registry.Join({1, "again", 11}, a1).ok());
  EXPECT_EQ((*m1)->tenant_limit(), 800u);  // the smallest any member declared
  EXPECT_TRUE((*m1)->ReserveMemory(500));
  EXPECT_FALSE((*m2)->ReserveMemory(301));  // 500 + 301 > 800
  EXPECT_TRUE((*m2)->ReserveMemory(300));
  EXPECT_EQ((*m1)->tenant_used(), 800u);
  EXPECT_TRUE((*m3)->ReserveMemory(1ull << 40));  // no limit for b
  TenantSummary s = registry.Summary("a");
  EXPECT_EQ(s.memory_limit, 800u);
  EXPECT_EQ(s.memory_used, 800u);
  ASSERT_EQ(s.processes.size(), 2u);
  EXPECT_EQ(s.processes[0].pid, 11u);
  EXPECT_EQ(s.processes[0].bytes, 500u);
  // Leaving returns what the client held, and its limit no longer applies.
  m2->reset();
  EXPECT_EQ((*m1)->tenant_used(), 500u);
  EXPECT_EQ((*m1)->tenant_limit(), 1000u);
  (*m1)->ReleaseMemory(10000);  // never below zero
  EXPECT_EQ((*m1)->tenant_used(), 0u);
}

TEST(TenantsTest, PolicyLayersResolveAndRuntimeOverridesWin) {
  TenantRegistry registry;
  ClientSettings env;
  env.env_policy.priority = 3;
  env.env_policy.weight = 2;
  auto m = registry.Join({1, "decode-1", 1}, env);
  ASSERT_TRUE(m.ok());
  EXPECT_EQ((*m)->policy().policy.priority, 3);
  absl::StatusOr<scheduler::PolicyFile> file =
      scheduler::PolicyFile::Parse("decode-* priority=0 cap=80\n");
  ASSERT_TRUE(file.ok());
  const uint64_t before = registry.policy_generation();
  registry.SetPolicyFile(*file);
  EXPECT_GT(registry.policy_generation(), before);
  EXPECT_EQ((*m)->policy().policy.priority, 0);
  EXPECT_DOUBLE_EQ((*m)->policy().policy.cap(), 0.8);
  EXPECT_EQ((*m)->policy().policy.weight, 2.0);
  ASSERT_TRUE(registry.SetRuntimePolicy(1, *scheduler::ParseAssignments("priority=4")).ok());
  EXPECT_EQ((*m)->policy().policy.priority, 4);
  EXPECT_EQ((*m)->policy().priority_source, scheduler::PolicySource::kRuntime);
  ASSERT_TRUE(registry.SetRuntimePolicy(1, {}, /*reset=*/true).ok());
  EXPECT_EQ((*m)->policy().policy.priority, 0);
  EXPECT_TRUE(absl::IsNotFound(registry.SetRuntimePolicy(9, {})));
}

// ---------------------------------------------------------------- woolyd

// The fixture's clock; the "busy" kernel runs for 400 ms of it (the fake
// GPU runs kernels at launch, and stamps events with this clock).
scheduler::ManualClock* g_clock = nullptr;

// A grid larger than every SM of the fake GPU holds at once (8 blocks of 256
// threads per SM): its usable share is 1, so the tests about placement by
// priority are not affected by usable-share estimates.
constexpr uint32_t kWideGrid = 100000;
constexpr uint32_t kWideBlock = 256;

// Registers a fake kernel that runs for `runs` of the fixture's clock.
void RegisterTimedKernel(const std::string& name, absl::Duration runs) {
  fake::FakeKernel k;
  k.name = name;
  k.run = [runs](const fake::FakeLaunch&) {
    if (g_clock != nullptr && runs > absl::ZeroDuration()) g_clock->Advance(runs);
    return absl::OkStatus();
  };
  fake::RegisterFakeKernel(k);
}

void RegisterKernels() {
  RegisterTimedKernel("wooly_sched_noop", absl::ZeroDuration());
  RegisterTimedKernel("wooly_sched_busy", absl::Milliseconds(400));
  RegisterTimedKernel("wooly_sched_short", absl::Milliseconds(10));
}

// Records the backend stream of every launch, counts occupancy queries and
// can fail them.
class LaunchRecordingBackend : public fake::FakeBackend {
 public:
  using FakeBackend::FakeBackend;
  absl::Status LaunchKernel(Handle function, const LaunchConfig& config,
                            absl::Span<const uint8_t> args) override {
    {
      absl::MutexLock lock(&launch_mu_);
      last_stream_ = config.stream;
    }
    return FakeBackend::LaunchKernel(function, config, args);
  }
  absl::StatusOr<int32_t> OccupancyMaxActiveBlocks(Handle function, int32_t block_size,
                                                   uint64_t dynamic_smem, uint32_t flags) override {
    {
      absl::MutexLock lock(&launch_mu_);
      ++occupancy_queries_;
      if (fail_occupancy_) return absl::InternalError("occupancy query failed");
    }
    return FakeBackend::OccupancyMaxActiveBlocks(function, block_size, dynamic_smem, flags);
  }
  Handle last_stream() const {
    absl::MutexLock lock(&launch_mu_);
    return last_stream_;
  }
  int occupancy_queries() const {
    absl::MutexLock lock(&launch_mu_);
    return occupancy_queries_;
  }
  void set_fail_occupancy(bool fail) {
    absl::MutexLock lock(&launch_mu_);
    fail_occupancy_ = fail;
  }
  // While set, every event reads as not yet reached (work still queued).
  void set_hold_events(bool hold) {
    absl::MutexLock lock(&launch_mu_);
    hold_events_ = hold;
  }
  absl::Status EventQuery(Handle event) override {
    {
      absl::MutexLock lock(&launch_mu_);
      if (hold_events_) return CuError(CUDA_ERROR_NOT_READY, "held by the test");
    }
    return FakeBackend::EventQuery(event);
  }

 private:
  mutable absl::Mutex launch_mu_;
  Handle last_stream_ ABSL_GUARDED_BY(launch_mu_) = 0;
  int occupancy_queries_ ABSL_GUARDED_BY(launch_mu_) = 0;
  bool fail_occupancy_ ABSL_GUARDED_BY(launch_mu_) = false;
  bool hold_events_ ABSL_GUARDED_BY(launch_mu_) = false;
};

class SchedulerServerTest : public ::testing::Test {
 protected:
  virtual SmPlacement placement() const { return SmPlacement::kNested; }
  virtual bool partitions() const { return true; }
  // Usable-share estimates (off by default in woolyd).
  virtual bool usable() const { return false; }
  void SetUp() override {
    ::setenv("WOOLY_SM_USABLE", usable() ? "1" : "0", 1);
    RegisterKernels();
    g_clock = &clock_;
    dir_ = testing::MakeTempDir();
    ServerOptions options;
    options.listen = {"unix:" + dir_ + "/woolyd.sock"};
    options.clock = clock_.AsClock();
    options.scheduler_thread = false;  // the test ticks
    options.sm_placement = placement();
    options.sm_partitions = partitions();
    fake::FakeBackendOptions fo;
    fo.capacity_bytes = 1ull << 30;
    fo.clock_ns = [this] { return static_cast<uint64_t>(absl::ToUnixNanos(clock_.Now())); };
    auto backend = std::make_unique<LaunchRecordingBackend>(fo);
    fake_ = backend.get();
    absl::StatusOr<std::unique_ptr<Server>> server = Server::Start(options, std::move(backend));
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    endpoint_ = server_->listen_addresses()[0];
  }
  void TearDown() override {
    server_.reset();
    g_clock = nullptr;
    ::unsetenv("WOOLY_SM_USABLE");
  }

  std::unique_ptr<TestClient> Connect(const std::string& name, int priority,
                                      std::vector<std::pair<std::string, std::string>> settings,
                                      uint64_t* id = nullptr) {
    auto c = TestClient::Connect(endpoint_);
    EXPECT_NE(c, nullptr);
    if (c == nullptr) return nullptr;
    std::string message;
    EXPECT_EQ(c->HelloWith(name, priority, settings, id, &message), CUDA_SUCCESS) << message;
    return c;
  }
  uint64_t LoadKernel(TestClient& c, const std::string& name = "wooly_sched_noop") {
    uint64_t module = 0, fn = 0;
    EXPECT_EQ(c.LoadModule(fake::MakeFakeModuleImage({name}), &module), CUDA_SUCCESS);
    EXPECT_EQ(c.GetFunction(module, name, &fn), CUDA_SUCCESS);
    return fn;
  }
  void Tick() {
    clock_.Advance(absl::Milliseconds(100));
    server_->share_control()->Tick();
  }
  // A priority-0 client runs one single-block 10 ms kernel between two
  // ticks; returns its id (0 on failure).
  uint64_t OneNarrowLaunch() {
    uint64_t id = 0;
    auto c = Connect("narrow", 0, {}, &id);
    if (c == nullptr) return 0;
    const uint64_t fn = LoadKernel(*c, "wooly_sched_short");
    Tick();
    EXPECT_EQ(c->Launch(fn, 1, 1, {}), CUDA_SUCCESS);
    EXPECT_EQ(c->Code(wire::Op::kStreamSynchronize, wire::Writer().Put<uint64_t>(0)), CUDA_SUCCESS);
    Tick();
    return id;
  }
  // A priority-0 decoder and a priority-4 trainer with a 25 % floor, both
  // busy for six ticks; then each launches once more, on the streams
  // returned.
  struct DecodeBesideTrainer {
    std::unique_ptr<TestClient> hi, lo;
    Handle hi_stream = 0, lo_stream = 0;
  };
  DecodeBesideTrainer RunDecodeBesideTrainer(uint64_t* hi_id, uint64_t* lo_id) {
    DecodeBesideTrainer out;
    auto hi = Connect("decode", 0, {}, hi_id);
    auto lo = Connect("train", 4, {{"WOOLY_SM_FLOOR", "25%"}}, lo_id);
    if (!hi || !lo) return out;
    const uint64_t fhi = LoadKernel(*hi), flo = LoadKernel(*lo, "wooly_sched_busy");
    // Each round's kernels have run (the trainer's for 400 ms of the fake
    // clock) before the tick measures them.
    const wire::Writer null_stream = wire::Writer().Put<uint64_t>(wire::kStreamNull);
    for (int i = 0; i < 6; ++i) {
      EXPECT_EQ(hi->Launch(fhi, kWideGrid, kWideBlock, {}), CUDA_SUCCESS);
      EXPECT_EQ(lo->Launch(flo, kWideGrid, kWideBlock, {}), CUDA_SUCCESS);
      EXPECT_EQ(hi->Code(wire::Op::kStreamSynchronize, null_stream), CUDA_SUCCESS);
      EXPECT_EQ(lo->Code(wire::Op::kStreamSynchronize, null_stream), CUDA_SUCCESS);
      Tick();
    }
    EXPECT_EQ(hi->Launch(fhi, kWideGrid, kWideBlock, {}), CUDA_SUCCESS);
    out.hi_stream = fake_->last_stream();
    EXPECT_EQ(lo->Launch(flo, kWideGrid, kWideBlock, {}), CUDA_SUCCESS);
    out.lo_stream = fake_->last_stream();
    out.hi = std::move(hi);
    out.lo = std::move(lo);
    return out;
  }
  ClientStatus StatusOf(uint64_t id) {
    for (const ClientStatus& c : server_->Clients()) {
      if (c.client_id == id) return c;
    }
    ADD_FAILURE() << "no client " << id;
    return {};
  }

  scheduler::ManualClock clock_;
  std::string dir_;
  LaunchRecordingBackend* fake_ = nullptr;
  std::unique_ptr<Server> server_;
  std::string endpoint_;
};

class ExclusivePlacementTest : public SchedulerServerTest {
 protected:
  SmPlacement placement() const override { return SmPlacement::kExclusive; }
};

// With usable-share estimates (WOOLY_SM_USABLE=1).
class UsableShareTest : public SchedulerServerTest {
 protected:
  bool usable() const override { return true; }
};
class UsableExclusiveTest : public ExclusivePlacementTest {
 protected:
  bool usable() const override { return true; }
};

// Shares kept by pacing alone (WOOLY_SM_PARTITIONS=0).
class UnpartitionedTest : public SchedulerServerTest {
 protected:
  bool partitions() const override { return false; }

  // Waits (in real time, as a guard only) until `id` has waited for pacing
  // credit `n` times.
  bool WaitForPacedWaits(uint64_t id, int64_t n) {
    const absl::Time deadline = absl::Now() + absl::Seconds(10);
    while (server_->share_control()->ShareOf(id).paced_waits < n) {
      if (absl::Now() > deadline) return false;
      absl::SleepFor(absl::Milliseconds(1));
    }
    return true;
  }
};

TEST_F(SchedulerServerTest, BadSettingIsRefusedWithItsName) {
  auto c = TestClient::Connect(endpoint_);
  ASSERT_NE(c, nullptr);
  std::string message;
  EXPECT_EQ(c->HelloWith("x", 2, {{"WOOLY_SM_CAP", "250"}}, nullptr, &message),
            CUDA_ERROR_INVALID_VALUE);
  EXPECT_THAT(message, HasSubstr("WOOLY_SM_CAP"));
  EXPECT_TRUE(server_->Clients().empty());
}

TEST_F(SchedulerServerTest, MemoryLimitHoldsPerTenantAndMemGetInfoShowsIt) {
  uint64_t id1 = 0;
  auto a1 = Connect("a1", 2, {{"WOOLY_TENANT", "a"}, {"WOOLY_MEMORY_LIMIT", "1MiB"}}, &id1);
  auto a2 = Connect("a2", 2, {{"WOOLY_TENANT", "a"}});
  auto b = Connect("b", 2, {{"WOOLY_TENANT", "b"}});
  ASSERT_TRUE(a1 && a2 && b);
  uint64_t p1 = 0, p2 = 0, p3 = 0;
  ASSERT_EQ(a1->MemAlloc(600 << 10, &p1), CUDA_SUCCESS);
  EXPECT_EQ(a2->MemAlloc(600 << 10, &p2), CUDA_ERROR_OUT_OF_MEMORY);  // same tenant
  EXPECT_EQ(b->MemAlloc(600 << 10, &p3), CUDA_SUCCESS);               // another tenant
  std::optional<TestClient::Result> info = a2->Call(wire::Op::kMemGetInfo);
  ASSERT_TRUE(info && info->result == CUDA_SUCCESS);
  wire::Reader rd = info->reader();
  const uint64_t free = rd.Get<uint64_t>();
  const uint64_t total = rd.Get<uint64_t>();
  EXPECT_EQ(total, 1u << 20);
  EXPECT_EQ(free, (1u << 20) - (600u << 10));
  EXPECT_EQ(StatusOf(id1).memory_limit, 1u << 20);
  EXPECT_EQ(StatusOf(id1).tenant, "a");
  // Freed memory (and a departed client's) is available again.
  ASSERT_EQ(a1->Code(wire::Op::kMemFree, wire::Writer().Put<uint64_t>(p1)), CUDA_SUCCESS);
  ASSERT_EQ(a2->MemAlloc(600 << 10, &p2), CUDA_SUCCESS);
  a2->Close();
  ASSERT_TRUE(server_->WaitForSessionCount(2, absl::Seconds(10)));
  EXPECT_EQ(a1->MemAlloc(900 << 10, &p1), CUDA_SUCCESS);
}

TEST_F(SchedulerServerTest, ObserverSeesItsTenantAndNothingElse) {
  uint64_t id = 0;
  auto a = Connect("trainer", 2, {{"WOOLY_TENANT", "a"}, {"WOOLY_MEMORY_LIMIT", "64MiB"}}, &id);
  auto b = Connect("other", 2, {{"WOOLY_TENANT", "b"}});
  ASSERT_TRUE(a && b);
  uint64_t p = 0;
  ASSERT_EQ(a->MemAlloc(4 << 20, &p), CUDA_SUCCESS);
  ASSERT_EQ(b->MemAlloc(8 << 20, &p), CUDA_SUCCESS);
  auto nvml = Connect("nvidia-smi", 2, {{"role", "observer"}, {"WOOLY_TENANT", "a"}});
  ASSERT_TRUE(nvml);
  std::optional<TestClient::Result> r = nvml->Call(wire::Op::kTenantView);
  ASSERT_TRUE(r && r->result == CUDA_SUCCESS);
  wire::Reader rd = r->reader();
  EXPECT_EQ(rd.GetStr(), "a");
  EXPECT_EQ(rd.Get<uint64_t>(), 64u << 20);  // limit
  EXPECT_EQ(rd.Get<uint64_t>(), 64u << 20);  // total shown
  EXPECT_EQ(rd.Get<uint64_t>(), 4u << 20);   // used by the tenant
  EXPECT_EQ(rd.Get<uint64_t>(), 1u << 30);   // device total
  rd.Get<uint64_t>();                        // device free
  const double measured = rd.Get<double>();
  const double target = rd.Get<double>();
  rd.Get<uint64_t>();  // busy ns
  EXPECT_GE(measured, 0.0);
  EXPECT_GE(target, 0.0);
  ASSERT_EQ(rd.Get<uint32_t>(), 1u);  // the trainer only, not the observer
  EXPECT_EQ(rd.Get<uint32_t>(), static_cast<uint32_t>(::getpid()));
  EXPECT_EQ(rd.Get<uint64_t>(), 4u << 20);
  EXPECT_EQ(rd.GetStr(), "trainer");
  EXPECT_TRUE(rd.ok());
  // An observer holds nothing and is not a client.
  EXPECT_EQ(nvml->MemAlloc(1024, &p), CUDA_ERROR_NOT_PERMITTED);
  for (const ClientStatus& c : server_->Clients()) EXPECT_NE(c.name, "nvidia-smi");
  EXPECT_EQ(server_->Clients().size(), 2u);
}

TEST_F(ExclusivePlacementTest, BusyClientsRunInDisjointPartitionsByPriority) {
  uint64_t hi_id = 0, lo_id = 0;
  auto hi = Connect("decode", 0, {}, &hi_id);
  auto lo = Connect("train", 4, {{"WOOLY_SM_FLOOR", "25%"}}, &lo_id);
  ASSERT_TRUE(hi && lo);
  const uint64_t fhi = LoadKernel(*hi), flo = LoadKernel(*lo);
  ASSERT_EQ(hi->Launch(fhi, kWideGrid, kWideBlock, {}), CUDA_SUCCESS);
  ASSERT_EQ(lo->Launch(flo, kWideGrid, kWideBlock, {}), CUDA_SUCCESS);
  EXPECT_FALSE(fake_->StreamPartition(fake_->last_stream()).has_value());  // whole GPU first
  Tick();
  // Both had work: each now runs in its own units.
  ASSERT_EQ(hi->Launch(fhi, kWideGrid, kWideBlock, {}), CUDA_SUCCESS);
  const Handle hs_stream = fake_->last_stream();
  const std::optional<std::pair<int, int>> hp = fake_->StreamPartition(hs_stream);
  ASSERT_EQ(lo->Launch(flo, kWideGrid, kWideBlock, {}), CUDA_SUCCESS);
  const Handle ls_stream = fake_->last_stream();
  const std::optional<std::pair<int, int>> lp = fake_->StreamPartition(ls_stream);
  ASSERT_TRUE(hp && lp);
  EXPECT_EQ(hp->first, 0);  // priority order
  EXPECT_EQ(lp->first, hp->first + hp->second);
  EXPECT_EQ(lp->second, 4);  // 25 % of 120 partitionable SMs, rounded up to units of 8
  EXPECT_EQ(hp->second, 11);
  // Stream priorities follow the client priorities (the fake's range is 0..-5).
  EXPECT_EQ(*fake_->StreamPriority(hs_stream), -5);
  EXPECT_EQ(*fake_->StreamPriority(ls_stream), 0);
  const ClientStatus hs = StatusOf(hi_id), ls = StatusOf(lo_id);
  EXPECT_GT(hs.target_share, ls.target_share);
  EXPECT_NEAR(ls.target_share, 0.25, 0.01);
  // Launch order within a client is kept across the move (the new stream
  // waits for the old one), and nothing leaks when the clients leave.
  hi.reset();
  lo.reset();
  ASSERT_TRUE(server_->WaitForSessionCount(0, absl::Seconds(10)));
  Tick();
  EXPECT_EQ(fake_->live_events(), 1u);   // the scheduler's time anchor (and nothing else)
  EXPECT_EQ(fake_->live_streams(), 1u);  // its anchor stream
}

// Nested placement (the default): the trainer, alone at its level, runs on
// the whole GPU at its low stream priority, filling what the decoder leaves
// idle; the decoder keeps its own units. The trainer is never paced.
// WOOLY_SM_RESERVE=0: nothing reserved, the nested tenant has every SM.
class NoReserveTest : public SchedulerServerTest {
 protected:
  void SetUp() override {
    ::setenv("WOOLY_SM_RESERVE", "0", 1);
    SchedulerServerTest::SetUp();
  }
  void TearDown() override {
    SchedulerServerTest::TearDown();
    ::unsetenv("WOOLY_SM_RESERVE");
  }
};

TEST_F(NoReserveTest, LoneLowerLevelFillsTheWholeGpuBehindHigherLevels) {
  uint64_t hi_id = 0, lo_id = 0;
  DecodeBesideTrainer pair = RunDecodeBesideTrainer(&hi_id, &lo_id);
  ASSERT_TRUE(pair.hi && pair.lo);
  const Handle hs_stream = pair.hi_stream, ls_stream = pair.lo_stream;
  const std::optional<std::pair<int, int>> hp = fake_->StreamPartition(hs_stream);
  ASSERT_TRUE(hp.has_value());
  EXPECT_EQ(*hp, std::make_pair(0, 11));                        // its own units only
  EXPECT_FALSE(fake_->StreamPartition(ls_stream).has_value());  // the whole GPU
  EXPECT_EQ(*fake_->StreamPriority(hs_stream), -5);
  EXPECT_EQ(*fake_->StreamPriority(ls_stream), 0);
  const ClientShare ls = server_->share_control()->ShareOf(lo_id);
  EXPECT_NEAR(ls.target_share, 0.25, 0.01);             // the policy's target is unchanged
  EXPECT_GT(ls.measured_share, 0.5);                    // it fills the GPU ...
  EXPECT_EQ(ls.admission, scheduler::Admission::kRun);  // ... and is not paced
  EXPECT_EQ(ls.first_unit, -1);
}

// By default the trainer leaves the decoder's first two units to it and
// takes the SMs outside every unit instead of the whole GPU.
TEST_F(SchedulerServerTest, NestedTenantLeavesTheReservedUnitsToTheHighestLevel) {
  uint64_t hi_id = 0, lo_id = 0;
  DecodeBesideTrainer pair = RunDecodeBesideTrainer(&hi_id, &lo_id);
  ASSERT_TRUE(pair.hi && pair.lo);
  EXPECT_EQ(fake_->StreamPartition(pair.hi_stream), std::make_pair(0, 11));
  EXPECT_FALSE(fake_->StreamPartitionHasRest(pair.hi_stream));
  EXPECT_EQ(fake_->StreamPartition(pair.lo_stream), std::make_pair(2, 13));
  EXPECT_TRUE(fake_->StreamPartitionHasRest(pair.lo_stream));
  const ClientShare ls = server_->share_control()->ShareOf(lo_id);
  EXPECT_EQ(ls.first_unit, 2);
  EXPECT_EQ(ls.admission, scheduler::Admission::kRun);  // still nested: not paced
}

// Two tenants at the same level below a higher one keep their own ranges:
// nesting one over the other would break their split by weight.
TEST_F(SchedulerServerTest, EqualLevelsDoNotNest) {
  auto hi = Connect("decode", 0, {});
  auto a = Connect("a", 4, {{"WOOLY_SM_FLOOR", "20%"}});
  auto b = Connect("b", 4, {{"WOOLY_SM_FLOOR", "20%"}});
  ASSERT_TRUE(hi && a && b);
  const uint64_t fhi = LoadKernel(*hi), fa = LoadKernel(*a), fb = LoadKernel(*b);
  auto launch_all = [&] {
    ASSERT_EQ(hi->Launch(fhi, kWideGrid, kWideBlock, {}), CUDA_SUCCESS);
    ASSERT_EQ(a->Launch(fa, kWideGrid, kWideBlock, {}), CUDA_SUCCESS);
    ASSERT_EQ(b->Launch(fb, kWideGrid, kWideBlock, {}), CUDA_SUCCESS);
  };
  launch_all();
  Tick();
  launch_all();
  ASSERT_EQ(a->Launch(fa, kWideGrid, kWideBlock, {}), CUDA_SUCCESS);
  const std::optional<std::pair<int, int>> ap = fake_->StreamPartition(fake_->last_stream());
  ASSERT_EQ(b->Launch(fb, kWideGrid, kWideBlock, {}), CUDA_SUCCESS);
  const std::optional<std::pair<int, int>> bp = fake_->StreamPartition(fake_->last_stream());
  ASSERT_TRUE(ap && bp);
  EXPECT_LE(ap->first + ap->second, bp->first)  // disjoint
      << ap->first << "+" << ap->second << " vs " << bp->first << "+" << bp->second;
}

TEST_F(SchedulerServerTest, MeasuredShareAndBusyTimeComeFromGpuTimestamps) {
  uint64_t id = 0;
  auto c = Connect("solo", 2, {}, &id);
  ASSERT_TRUE(c);
  const uint64_t fn = LoadKernel(*c, "wooly_sched_busy");
  Tick();                                            // anchors GPU time
  ASSERT_EQ(c->Launch(fn, 1, 1, {}), CUDA_SUCCESS);  // runs 400 ms
  ASSERT_EQ(c->Code(wire::Op::kStreamSynchronize, wire::Writer().Put<uint64_t>(0)), CUDA_SUCCESS);
  clock_.Advance(absl::Milliseconds(500));
  server_->share_control()->Tick();
  const ClientShare share = server_->share_control()->ShareOf(id);
  EXPECT_EQ(share.busy, absl::Milliseconds(400));
  EXPECT_EQ(share.kernels, 1);
  EXPECT_NEAR(share.measured_share, 0.4, 0.01);  // 400 ms of the last second, whole GPU
  EXPECT_NEAR(StatusOf(id).busy_seconds, 0.4, 1e-6);
  // The control window (250 ms) has moved past it...
  EXPECT_EQ(share.measured_share_recent, 0.0);
  EXPECT_EQ(StatusOf(id).measured_share_recent, 0.0);
  // ... and sees a second kernel that ended 100 ms ago for its last 150 ms.
  ASSERT_EQ(c->Launch(fn, 1, 1, {}), CUDA_SUCCESS);
  ASSERT_EQ(c->Code(wire::Op::kStreamSynchronize, wire::Writer().Put<uint64_t>(0)), CUDA_SUCCESS);
  clock_.Advance(absl::Milliseconds(100));
  server_->share_control()->Tick();
  EXPECT_NEAR(server_->share_control()->ShareOf(id).measured_share_recent, 0.6, 0.01);
  EXPECT_NEAR(StatusOf(id).measured_share_recent, 0.6, 0.01);
}

// Work still queued on the GPU is measured when it completes; until then a
// busy client's windows end at its last measured work, not now, so that the
// queued tail does not read as idle (and at most a second back).
TEST_F(SchedulerServerTest, WindowsOfABusyClientEndAtItsLastMeasuredWork) {
  uint64_t id = 0;
  auto c = Connect("solo", 2, {}, &id);
  ASSERT_TRUE(c);
  const uint64_t fn = LoadKernel(*c, "wooly_sched_busy");
  Tick();                                            // anchors GPU time at T
  ASSERT_EQ(c->Launch(fn, 1, 1, {}), CUDA_SUCCESS);  // runs [T, T+400]
  ASSERT_EQ(c->Code(wire::Op::kStreamSynchronize, wire::Writer().Put<uint64_t>(0)), CUDA_SUCCESS);
  Tick();  // T+500, nothing outstanding: [T+250, T+500] holds 150 ms of it
  EXPECT_NEAR(server_->share_control()->ShareOf(id).measured_share_recent, 0.6, 0.01);

  fake_->set_hold_events(true);
  ASSERT_EQ(c->Launch(fn, 1, 1, {}), CUDA_SUCCESS);  // runs [T+500, T+900], unreported
  ASSERT_EQ(c->Code(wire::Op::kStreamSynchronize, wire::Writer().Put<uint64_t>(0)), CUDA_SUCCESS);
  Tick();  // T+1000: the windows end at T+400
  ClientShare share = server_->share_control()->ShareOf(id);
  EXPECT_NEAR(share.measured_share_recent, 1.0, 0.01);
  // The 1 s window too: measured since T-100, 400 of 500 ms.
  EXPECT_NEAR(share.measured_share, 0.8, 0.01);
  EXPECT_NEAR(StatusOf(id).measured_share_recent, 1.0, 0.01);

  clock_.Advance(absl::Seconds(2));
  Tick();  // T+3100, still queued: the windows end a second back, at T+2100
  EXPECT_EQ(server_->share_control()->ShareOf(id).measured_share_recent, 0.0);

  fake_->set_hold_events(false);
  Tick();  // reported at last; nothing outstanding, so the windows end now
  share = server_->share_control()->ShareOf(id);
  EXPECT_EQ(share.busy, absl::Milliseconds(800));
  EXPECT_EQ(share.kernels, 2);
  EXPECT_EQ(share.measured_share_recent, 0.0);
}

TEST_F(SchedulerServerTest, RuntimePolicyOverrides) {
  uint64_t id = 0;
  auto c = Connect("job", 2, {{"WOOLY_WEIGHT", "2"}}, &id);
  ASSERT_TRUE(c);
  EXPECT_EQ(StatusOf(id).weight, 2.0);
  ASSERT_TRUE(server_->SetClientPolicy(id, "priority=0 cap=50%", false).ok());
  EXPECT_EQ(StatusOf(id).priority, 0);
  EXPECT_DOUBLE_EQ(StatusOf(id).sm_cap, 0.5);
  const absl::Status bad = server_->SetClientPolicy(id, "cap=lots", false);
  EXPECT_TRUE(absl::IsInvalidArgument(bad));
  EXPECT_THAT(std::string(bad.message()), HasSubstr("cap"));
  EXPECT_TRUE(absl::IsNotFound(server_->SetClientPolicy(id + 100, "priority=1", false)));
  ASSERT_TRUE(server_->SetClientPolicy(id, "", true).ok());
  EXPECT_EQ(StatusOf(id).priority, 2);
  EXPECT_DOUBLE_EQ(StatusOf(id).sm_cap, 1.0);
}

// ------------------------------------------------------- usable share

TEST(KernelWidthTest, IsTheGridOverWhatTheSmsHoldAtOnce) {
  // 120 SMs holding 32 blocks each: 3840 blocks at once.
  EXPECT_DOUBLE_EQ(KernelWidth(1, 120, 32), 1.0 / 3840);
  EXPECT_DOUBLE_EQ(KernelWidth(960, 120, 32), 0.25);
  EXPECT_DOUBLE_EQ(KernelWidth(3840, 120, 32), 1.0);
  EXPECT_DOUBLE_EQ(KernelWidth(1000000, 120, 32), 1.0);  // several waves: still 1
  EXPECT_DOUBLE_EQ(KernelWidth(60, 120, 1), 0.5);
  EXPECT_DOUBLE_EQ(KernelWidth(0, 120, 32), 0.0);
  // Unknown occupancy or SM count: it may use every SM.
  EXPECT_DOUBLE_EQ(KernelWidth(1, 120, 0), 1.0);
  EXPECT_DOUBLE_EQ(KernelWidth(1, 120, -1), 1.0);
  EXPECT_DOUBLE_EQ(KernelWidth(1, 0, 32), 1.0);
}

// A priority-0 tenant of one-block kernels cannot fill more than a sliver
// of the GPU: its usable share, measured from its launches' widths, caps its
// target, and the SMs it cannot use go to the busy priority-4 tenant.
TEST_F(UsableExclusiveTest, NarrowKernelsLeaveTheirSmsToALowerPriority) {
  uint64_t hi_id = 0, lo_id = 0;
  auto hi = Connect("decode", 0, {}, &hi_id);
  auto lo = Connect("train", 4, {{"WOOLY_SM_FLOOR", "25%"}}, &lo_id);
  ASSERT_TRUE(hi && lo);
  const uint64_t fhi = LoadKernel(*hi, "wooly_sched_short");
  const uint64_t flo = LoadKernel(*lo, "wooly_sched_short");
  const wire::Writer null_stream = wire::Writer().Put<uint64_t>(wire::kStreamNull);
  for (int i = 0; i < 6; ++i) {
    ASSERT_EQ(hi->Launch(fhi, 1, 1, {}), CUDA_SUCCESS);  // 1 of 3840 resident blocks
    ASSERT_EQ(lo->Launch(flo, kWideGrid, kWideBlock, {}), CUDA_SUCCESS);  // many waves
    ASSERT_EQ(hi->Code(wire::Op::kStreamSynchronize, null_stream), CUDA_SUCCESS);
    ASSERT_EQ(lo->Code(wire::Op::kStreamSynchronize, null_stream), CUDA_SUCCESS);
    Tick();
  }
  const ClientShare hs = server_->share_control()->ShareOf(hi_id);
  const ClientShare ls = server_->share_control()->ShareOf(lo_id);
  ASSERT_TRUE(hs.usable_share.has_value());
  EXPECT_NEAR(*hs.usable_share, 1.0 / 3840, 1e-9);  // the fake's 32 blocks/SM, 120 SMs
  ASSERT_TRUE(ls.usable_share.has_value());
  EXPECT_NEAR(*ls.usable_share, 1.0, 1e-9);
  EXPECT_LT(hs.target_share, 0.01);
  EXPECT_GT(ls.target_share, 0.99);
  // The decoder keeps one unit (the minimum for a tenant with work), at the
  // top priority; the trainer gets the other 14 instead of its floor's 4.
  ASSERT_EQ(hi->Launch(fhi, 1, 1, {}), CUDA_SUCCESS);
  const Handle hs_stream = fake_->last_stream();
  ASSERT_EQ(lo->Launch(flo, kWideGrid, kWideBlock, {}), CUDA_SUCCESS);
  const Handle ls_stream = fake_->last_stream();
  const std::optional<std::pair<int, int>> hp = fake_->StreamPartition(hs_stream);
  const std::optional<std::pair<int, int>> lp = fake_->StreamPartition(ls_stream);
  ASSERT_TRUE(hp && lp);
  EXPECT_EQ(*hp, std::make_pair(0, 1));
  EXPECT_EQ(*lp, std::make_pair(1, 14));
  EXPECT_EQ(*fake_->StreamPriority(hs_stream), -5);
}

// Wide grids may use the whole GPU; the function's occupancy is asked once
// per launch shape; without measured launches in the window there is no
// estimate (the tenant may use as much as it is given).
TEST_F(UsableShareTest, WideGridsAreUsableEverywhereAndOccupancyIsCached) {
  uint64_t id = 0;
  auto c = Connect("wide", 2, {}, &id);
  ASSERT_TRUE(c);
  const uint64_t fn = LoadKernel(*c, "wooly_sched_short");
  Tick();
  EXPECT_FALSE(server_->share_control()->ShareOf(id).usable_share.has_value());
  const int queries = fake_->occupancy_queries();
  for (int i = 0; i < 5; ++i) ASSERT_EQ(c->Launch(fn, 5000, 128, {}), CUDA_SUCCESS);
  ASSERT_EQ(c->Code(wire::Op::kStreamSynchronize, wire::Writer().Put<uint64_t>(0)), CUDA_SUCCESS);
  EXPECT_EQ(fake_->occupancy_queries(), queries + 1);
  Tick();
  std::optional<double> usable = server_->share_control()->ShareOf(id).usable_share;
  ASSERT_TRUE(usable.has_value());
  EXPECT_NEAR(*usable, 1.0, 1e-9);
  // A smaller grid of the same blocks needs no new query. The window's
  // widths are weighted by busy time.
  ASSERT_EQ(c->Launch(fn, 240, 128, {}), CUDA_SUCCESS);  // 240 of 1920 resident blocks
  ASSERT_EQ(c->Code(wire::Op::kStreamSynchronize, wire::Writer().Put<uint64_t>(0)), CUDA_SUCCESS);
  EXPECT_EQ(fake_->occupancy_queries(), queries + 1);
  Tick();
  usable = server_->share_control()->ShareOf(id).usable_share;
  ASSERT_TRUE(usable.has_value());
  // 50 ms at width 1 and 10 ms at width 1/8, over 60 ms busy (GPU times are
  // float milliseconds, hence the tolerance).
  EXPECT_NEAR(*usable, (0.05 * 1.0 + 0.01 * 0.125) / 0.06, 1e-4);
  // Another block size is another query.
  ASSERT_EQ(c->Launch(fn, 240, 256, {}), CUDA_SUCCESS);
  EXPECT_EQ(fake_->occupancy_queries(), queries + 2);
  ASSERT_EQ(c->Code(wire::Op::kStreamSynchronize, wire::Writer().Put<uint64_t>(0)), CUDA_SUCCESS);
  // The window (500 ms) passes with no further launches: no estimate.
  for (int i = 0; i < 7; ++i) Tick();
  EXPECT_FALSE(server_->share_control()->ShareOf(id).usable_share.has_value());
}

// When the occupancy query fails, a launch's width is unknown: 1.
TEST_F(UsableShareTest, FailedOccupancyQueryMeansTheWholeGpu) {
  fake_->set_fail_occupancy(true);
  const uint64_t id = OneNarrowLaunch();
  ASSERT_NE(id, 0u);
  EXPECT_GT(fake_->occupancy_queries(), 0);
  const std::optional<double> usable = server_->share_control()->ShareOf(id).usable_share;
  ASSERT_TRUE(usable.has_value());
  EXPECT_NEAR(*usable, 1.0, 1e-9);
}

// Estimates are off unless asked for: the narrow client's usable share
// stays unset and woolyd asks the backend nothing.
TEST_F(SchedulerServerTest, UsableShareIsNotEstimatedByDefault) {
  const uint64_t id = OneNarrowLaunch();
  ASSERT_NE(id, 0u);
  EXPECT_FALSE(server_->share_control()->ShareOf(id).usable_share.has_value());
  EXPECT_EQ(fake_->occupancy_queries(), 0);
}

// A client over its cap is paced by a token bucket over GPU time
// (scheduler/pacer.h): it starts with a full bucket, is admitted at once on
// its credit, and then waits only until the debt of its launches is repaid
// on the server's clock, or until a new decision stops the pacing.
TEST_F(UnpartitionedTest, PacedClientWaitsForGpuTimeCredit) {
  uint64_t id = 0;
  auto c = Connect("capped", 2, {{"WOOLY_SM_CAP", "30%"}}, &id);
  ASSERT_TRUE(c);
  ASSERT_FALSE(server_->share_control()->partitions_enabled());
  const uint64_t busy = LoadKernel(*c, "wooly_sched_busy");
  const uint64_t noop = LoadKernel(*c);
  Tick();  // anchors GPU time
  // Two rounds of a 400 ms kernel: the controller's smoothed measurement
  // goes far over the cap, so the client is paced.
  for (int i = 0; i < 2; ++i) {
    ASSERT_EQ(c->Launch(busy, 1, 1, {}), CUDA_SUCCESS);
    ASSERT_EQ(c->Code(wire::Op::kStreamSynchronize, wire::Writer().Put<uint64_t>(0)), CUDA_SUCCESS);
    Tick();
  }
  ClientShare s = server_->share_control()->ShareOf(id);
  ASSERT_EQ(s.admission, scheduler::Admission::kPace);
  const double pace = s.pace_fraction;
  ASSERT_GT(pace, 0.0);
  ASSERT_LT(pace, 1.0);
  const scheduler::PacerOptions defaults;
  // A full bucket at the switch, and the estimate follows the measurement.
  EXPECT_NEAR(absl::ToDoubleMilliseconds(s.pace_credit),
              pace * absl::ToDoubleMilliseconds(defaults.burst_window), 1e-6);
  EXPECT_NEAR(absl::ToDoubleMilliseconds(s.pace_estimate),
              0.25 * absl::ToDoubleMilliseconds(defaults.initial_estimate) + 0.75 * 400, 1e-6);
  EXPECT_EQ(s.paced_waits, 0);

  // Admitted on credit; the estimate (300 ms) leaves it in debt, bounded.
  ASSERT_EQ(c->Launch(noop, 1, 1, {}), CUDA_SUCCESS);
  s = server_->share_control()->ShareOf(id);
  EXPECT_EQ(s.paced_waits, 0);
  EXPECT_NEAR(absl::ToDoubleMilliseconds(s.pace_credit),
              -pace * absl::ToDoubleMilliseconds(defaults.debt_window), 1e-6);

  // The next launch waits until the server's clock has repaid the debt.
  const absl::Duration repay = -s.pace_credit / pace;
  std::future<CUresult> next =
      std::async(std::launch::async, [&] { return c->Launch(noop, 1, 1, {}); });
  ASSERT_TRUE(WaitForPacedWaits(id, 1));
  EXPECT_NE(next.wait_for(std::chrono::seconds(0)), std::future_status::ready);
  clock_.Advance(repay + absl::Milliseconds(1));
  ASSERT_EQ(next.wait_for(std::chrono::seconds(10)), std::future_status::ready);
  EXPECT_EQ(next.get(), CUDA_SUCCESS);

  // In debt again: a launch waits, and a decision to run releases it.
  const int64_t waits = server_->share_control()->ShareOf(id).paced_waits;
  next = std::async(std::launch::async, [&] { return c->Launch(noop, 1, 1, {}); });
  ASSERT_TRUE(WaitForPacedWaits(id, waits + 1));
  EXPECT_NE(next.wait_for(std::chrono::seconds(0)), std::future_status::ready);
  ASSERT_TRUE(server_->SetClientPolicy(id, "cap=none", false).ok());
  Tick();  // 100 ms repays only part of the debt; the decision releases it
  ASSERT_EQ(next.wait_for(std::chrono::seconds(10)), std::future_status::ready);
  EXPECT_EQ(next.get(), CUDA_SUCCESS);
  s = server_->share_control()->ShareOf(id);
  EXPECT_EQ(s.admission, scheduler::Admission::kRun);
  EXPECT_EQ(s.pace_credit, absl::ZeroDuration());
}

}  // namespace
}  // namespace wooly::server
