// Per-client overcommit overrides and the pool's capacity (issue #6):
// WOOLY_OVERCOMMIT_PERCENT at Hello, the policy file, [defaults] and
// wooly-cli's runtime layer, each taking effect for the client's next
// allocation; --memory-capacity / [memory] capacity parsed and honoured by
// NodeMemory. On the fake backend (512 MiB: 384 MiB physical after the
// reserve, 100 % overcommit in the fixture) with a manual clock.
#include <cuda.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "overcommit_test_options.h"
#include "server_test_client.h"
#include "wooly/fake/fake_backend.h"
#include "wooly/proto/defaults.h"
#include "wooly/scheduler/clock.h"
#include "wooly/server/daemon.h"
#include "wooly/server/server.h"
#include "wooly/server/tenants.h"

namespace wooly::server {
namespace {

using ::testing::HasSubstr;
using testing::TestClient;

constexpr uint64_t kMiB = uint64_t{1} << 20;
constexpr uint64_t kPhysical = 384 * kMiB;

// Writes `text` to a fresh file; removed by the caller's list.
std::string WriteFile(const std::string& text, std::vector<std::string>* files) {
  char path[] = "/tmp/wooly-memcfg-XXXXXX";
  const int fd = ::mkstemp(path);
  EXPECT_GE(fd, 0);
  EXPECT_EQ(::write(fd, text.data(), text.size()), static_cast<ssize_t>(text.size()));
  ::close(fd);
  files->push_back(path);
  return path;
}

// --- parsing -------------------------------------------------------------

TEST(OvercommitOverrideParse, ClientSetting) {
  absl::StatusOr<ClientSettings> s = ParseClientSettings({{"WOOLY_OVERCOMMIT_PERCENT", "0"}});
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->overcommit_percent, 0u);
  s = ParseClientSettings({{"WOOLY_OVERCOMMIT_PERCENT", " 250% "}});
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->overcommit_percent, 250u);
  s = ParseClientSettings({{"WOOLY_OVERCOMMIT_PERCENT", ""}});  // unset
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_FALSE(s->overcommit_percent.has_value());
  for (const char* bad : {"lots", "-1", "1001", "1.5", "+3", "0x10"}) {
    s = ParseClientSettings({{"WOOLY_OVERCOMMIT_PERCENT", bad}});
    ASSERT_FALSE(s.ok()) << bad;
    EXPECT_THAT(std::string(s.status().message()), HasSubstr("WOOLY_OVERCOMMIT_PERCENT")) << bad;
  }
}

TEST(OvercommitOverrideParse, RuntimeAssignments) {
  absl::StatusOr<ServerPolicyOverride> o =
      ParseServerAssignments("priority=0 overcommit_percent=20 cap=50%");
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->overcommit_percent, 20u);
  EXPECT_EQ(o->policy.priority, 0);
  EXPECT_TRUE(o->policy.cap_share.has_value());
  o = ParseServerAssignments("overcommit_percent=0");
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->overcommit_percent, 0u);
  EXPECT_TRUE(o->policy.empty());
  o = ParseServerAssignments("overcommit_percent=much");
  ASSERT_FALSE(o.ok());
  EXPECT_THAT(std::string(o.status().message()), HasSubstr("overcommit_percent"));
  o = ParseServerAssignments("overcommit_percent=1 overcommit_percent=2");
  ASSERT_FALSE(o.ok());
  EXPECT_THAT(std::string(o.status().message()), HasSubstr("twice"));
  o = ParseServerAssignments("overcommit=1");
  EXPECT_FALSE(o.ok());
}

TEST(OvercommitOverrideParse, PolicyFile) {
  absl::StatusOr<ServerPolicyFile> f = ServerPolicyFile::Parse(
      "# comment\n"
      "* overcommit_percent=50\n"
      "batch-* priority=4 overcommit_percent=0   # strict\n"
      "decode-* priority=0\n",
      "p.conf");
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->OvercommitFor("train"), 50u);
  EXPECT_EQ(f->OvercommitFor("batch-7"), 0u);    // the last matching line wins
  EXPECT_EQ(f->OvercommitFor("decode-1"), 50u);  // its line sets no percentage
  EXPECT_EQ(f->scheduling().OverrideFor("batch-7").priority, 4);
  EXPECT_EQ(f->scheduling().OverrideFor("decode-1").priority, 0);
  EXPECT_FALSE(f->scheduling().OverrideFor("train").priority.has_value());

  f = ServerPolicyFile::Parse("* weight=2\nx overcommit_percent=2000\n", "p.conf");
  ASSERT_FALSE(f.ok());
  EXPECT_THAT(std::string(f.status().message()), HasSubstr("p.conf line 2"));
  EXPECT_THAT(std::string(f.status().message()), HasSubstr("overcommit_percent"));
  // Scheduling errors keep their line numbers.
  f = ServerPolicyFile::Parse("x overcommit_percent=2\n\ny priority=9\n", "p.conf");
  ASSERT_FALSE(f.ok());
  EXPECT_THAT(std::string(f.status().message()), HasSubstr("p.conf line 3"));
}

TEST(OvercommitOverrideParse, RegistryLayers) {
  TenantRegistry reg;
  TenantDefaults d;
  d.overcommit_percent = 30;
  reg.SetDefaults(d);
  reg.SetOvercommitCeiling(100);
  auto join = [&](uint64_t id, const std::string& name, std::optional<std::string> env) {
    ClientIdentity who;
    who.client_id = id;
    who.name = name;
    scheduler::EnvMap m;
    if (env) m.emplace("WOOLY_OVERCOMMIT_PERCENT", *env);
    absl::StatusOr<ClientSettings> s = ParseClientSettings(m);
    EXPECT_TRUE(s.ok());
    absl::StatusOr<std::unique_ptr<TenantMembership>> j = reg.Join(who, *s);
    EXPECT_TRUE(j.ok()) << j.status();
    return std::move(*j);
  };
  auto none = join(1, "a", std::nullopt);
  auto low = join(2, "b", "10");
  auto high = join(3, "c", "500");
  auto filed = join(4, "filed-1", "10");
  EXPECT_EQ(none->overcommit_percent(), 30u);  // [defaults]
  EXPECT_EQ(reg.Member(1)->overcommit_source, scheduler::PolicySource::kServerDefault);
  EXPECT_EQ(low->overcommit_percent(), 10u);    // the client's
  EXPECT_EQ(high->overcommit_percent(), 100u);  // capped at the server's
  absl::StatusOr<ServerPolicyFile> f = ServerPolicyFile::Parse("filed-* overcommit_percent=300\n");
  ASSERT_TRUE(f.ok());
  reg.SetServerPolicyFile(*f);
  EXPECT_EQ(filed->overcommit_percent(), 300u);  // the operator's: not capped
  EXPECT_EQ(reg.Member(4)->overcommit_source, scheduler::PolicySource::kPolicyFile);

  ServerPolicyOverride rt;
  rt.overcommit_percent = 0;
  ASSERT_TRUE(reg.SetRuntimeOverride(4, rt).ok());
  EXPECT_EQ(filed->overcommit_percent(), 0u);
  EXPECT_EQ(reg.Member(4)->runtime_overcommit_percent, 0u);
  // A runtime change of another key keeps it; --reset drops it.
  ServerPolicyOverride other;
  other.policy.priority = 1;
  ASSERT_TRUE(reg.SetRuntimeOverride(4, other).ok());
  EXPECT_EQ(filed->overcommit_percent(), 0u);
  ASSERT_TRUE(reg.SetRuntimeOverride(4, ServerPolicyOverride{}, /*reset=*/true).ok());
  EXPECT_EQ(filed->overcommit_percent(), 300u);
}

// --- daemon flags and config ------------------------------------------------

class MemoryConfigFlagsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ::setenv(wire::kEnvSocketDir, "/tmp/wooly-memcfg-test", 1);
    ::unsetenv(wire::kEnvServer);
    ::unsetenv(wire::kEnvAdmin);
    ::unsetenv(kEnvConfig);
  }
  void TearDown() override {
    for (const std::string& f : files_) ::unlink(f.c_str());
  }
  absl::StatusOr<DaemonFlags> Parse(std::vector<const char*> args) {
    args.insert(args.begin(), "woolyd");
    return ParseDaemonFlags(static_cast<int>(args.size()), args.data());
  }
  absl::StatusOr<DaemonFlags> ParseConfig(const std::string& text) {
    const std::string path = WriteFile(text, &files_);
    return Parse({"--config", path.c_str()});
  }
  std::string Error(const std::string& text) {
    absl::StatusOr<DaemonFlags> f = ParseConfig(text);
    return f.ok() ? std::string("ok") : std::string(f.status().message());
  }
  std::vector<std::string> files_;
};

TEST_F(MemoryConfigFlagsTest, CapacityDefaultsToNone) {
  absl::StatusOr<DaemonFlags> f = Parse({});
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->memory_capacity_bytes, 0u);
  EXPECT_EQ(ServerOptionsFromFlags(*f).memory_capacity_bytes, 0u);
  EXPECT_EQ(ServerOptions{}.memory_capacity_bytes, 0u);
  EXPECT_FALSE(f->defaults.overcommit_percent.has_value());
}

TEST_F(MemoryConfigFlagsTest, CapacityFlagAndKey) {
  absl::StatusOr<DaemonFlags> f =
      Parse({"--overcommit-percent", "20", "--memory-capacity", "40GiB"});
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->memory_capacity_bytes, uint64_t{40} << 30);
  EXPECT_EQ(ServerOptionsFromFlags(*f).memory_capacity_bytes, uint64_t{40} << 30);
  f = Parse({"--memory-capacity=512M"});
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->memory_capacity_bytes, 512 * kMiB);

  f = ParseConfig("[memory]\novercommit_percent = 50\ncapacity = \"80GiB\"\n");
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->memory_capacity_bytes, uint64_t{80} << 30);
  f = ParseConfig("[memory]\ncapacity = 1073741824\n");
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->memory_capacity_bytes, uint64_t{1} << 30);
  // The flag overrides the file.
  const std::string path = WriteFile("[memory]\ncapacity = \"80GiB\"\n", &files_);
  f = Parse({"--config", path.c_str(), "--memory-capacity", "10G"});
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->memory_capacity_bytes, uint64_t{10} << 30);
}

TEST_F(MemoryConfigFlagsTest, BadCapacityIsRejectedNamingTheKey) {
  for (const char* bad : {"0", "lots", "-5G", "12Q", ""}) {
    absl::StatusOr<DaemonFlags> f = Parse({"--memory-capacity", bad});
    ASSERT_FALSE(f.ok()) << bad;
    EXPECT_THAT(std::string(f.status().message()), HasSubstr("--memory-capacity")) << bad;
  }
  EXPECT_THAT(Error("[memory]\ncapacity = 0\n"), HasSubstr("memory.capacity"));
  EXPECT_THAT(Error("[memory]\ncapacity = \"forty\"\n"), HasSubstr("memory.capacity"));
  EXPECT_THAT(Error("[memory]\ncapacity = true\n"), HasSubstr("memory.capacity"));
  EXPECT_THAT(Error("[memory]\ncapacity_bytes = 5\n"), HasSubstr("unknown key"));
}

TEST_F(MemoryConfigFlagsTest, DefaultsOvercommitPercent) {
  absl::StatusOr<DaemonFlags> f = ParseConfig("[defaults]\novercommit_percent = 0\n");
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->defaults.overcommit_percent, 0u);
  EXPECT_EQ(ServerOptionsFromFlags(*f).tenant_defaults.overcommit_percent, 0u);
  f = ParseConfig("[defaults]\novercommit_percent = \"25%\"\n");
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->defaults.overcommit_percent, 25u);
  EXPECT_THAT(Error("[defaults]\novercommit_percent = 1001\n"),
              HasSubstr("defaults.overcommit_percent"));
  EXPECT_THAT(Error("[defaults]\novercommit_percent = \"x\"\n"),
              HasSubstr("defaults.overcommit_percent"));
  EXPECT_THAT(Error("[defaults]\novercommit_percent = 1.5\n"),
              HasSubstr("defaults.overcommit_percent"));
}

TEST_F(MemoryConfigFlagsTest, PolicyFileWithOvercommitIsAccepted) {
  const std::string policy = WriteFile("* overcommit_percent=10 weight=2\n", &files_);
  absl::StatusOr<DaemonFlags> f = Parse({"--policy-file", policy.c_str()});
  ASSERT_TRUE(f.ok()) << f.status();
  const std::string bad = WriteFile("\n* overcommit_percent=abc\n", &files_);
  f = Parse({"--policy-file", bad.c_str()});
  ASSERT_FALSE(f.ok());
  EXPECT_THAT(std::string(f.status().message()), HasSubstr(bad + " line 2"));
}

// --- in woolyd ----------------------------------------------------------------

class OvercommitOverrideTest : public ::testing::Test {
 protected:
  void TearDown() override {
    server_.reset();
    for (const std::string& f : files_) ::unlink(f.c_str());
  }
  void Start(const std::function<void(ServerOptions&)>& tweak = {}) {
    dir_ = testing::MakeTempDir();
    ServerOptions options = testing::OvercommitServerOptions(dir_, /*admin=*/false);
    options.clock = clock_.AsClock();
    if (tweak) tweak(options);
    absl::StatusOr<std::unique_ptr<Server>> server = Server::Start(
        options, std::make_unique<fake::FakeBackend>(testing::OvercommitFakeOptions()));
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    endpoint_ = server_->listen_addresses()[0];
  }
  std::unique_ptr<TestClient> Connect(const std::string& name,
                                      std::vector<std::pair<std::string, std::string>> settings,
                                      uint64_t* id) {
    return testing::ConnectAndHello(endpoint_, name, 2, settings, id);
  }

  scheduler::ManualClock clock_;
  std::string dir_;
  std::unique_ptr<Server> server_;
  std::string endpoint_;
  std::vector<std::string> files_;
};

TEST_F(OvercommitOverrideTest, ZeroOverrideIsRefusedBeyondPhysicalWhileTheDefaultIsAdmitted) {
  Start();
  uint64_t ida = 0, idb = 0;
  auto strict = Connect("strict", {{"WOOLY_OVERCOMMIT_PERCENT", "0"}}, &ida);
  auto loose = Connect("loose", {}, &idb);
  ASSERT_TRUE(strict && loose);
  EXPECT_EQ(server_->tenants()->Member(ida)->overcommit_percent, 0u);
  uint64_t p = 0;
  ASSERT_EQ(loose->MemAlloc(256 * kMiB, &p), CUDA_SUCCESS);
  // Within physical: fine for both.
  ASSERT_EQ(strict->MemAlloc(128 * kMiB, &p), CUDA_SUCCESS);
  // 384 MiB admitted now: anything more passes physical memory.
  EXPECT_EQ(strict->MemAlloc(2 * kMiB, &p), CUDA_ERROR_OUT_OF_MEMORY);
  EXPECT_EQ(strict->MemAlloc(64 << 10, &p), CUDA_ERROR_OUT_OF_MEMORY);
  // The server's 100 % still holds for the other client.
  ASSERT_EQ(loose->MemAlloc(256 * kMiB, &p), CUDA_SUCCESS);
  EXPECT_EQ(server_->Status().memory.node.allocated, 640 * kMiB);
  EXPECT_EQ(strict->MemAlloc(2 * kMiB, &p), CUDA_ERROR_OUT_OF_MEMORY);
}

TEST_F(OvercommitOverrideTest, RuntimeOverrideAppliesToTheNextAllocation) {
  Start();
  uint64_t ida = 0, idb = 0;
  auto a = Connect("a", {}, &ida);
  auto b = Connect("b", {}, &idb);
  ASSERT_TRUE(a && b);
  uint64_t p = 0;
  ASSERT_EQ(b->MemAlloc(320 * kMiB, &p), CUDA_SUCCESS);
  ASSERT_TRUE(server_->SetClientPolicy(ida, "overcommit_percent=0", false).ok());
  EXPECT_EQ(server_->tenants()->Member(ida)->overcommit_percent, 0u);
  EXPECT_EQ(server_->tenants()->Member(ida)->overcommit_source, scheduler::PolicySource::kRuntime);
  ASSERT_EQ(a->MemAlloc(64 * kMiB, &p), CUDA_SUCCESS);  // 384: exactly physical
  EXPECT_EQ(a->MemAlloc(64 * kMiB, &p), CUDA_ERROR_OUT_OF_MEMORY);
  // Raised at runtime beyond the server's percentage (an operator may).
  ASSERT_TRUE(server_->SetClientPolicy(ida, "overcommit_percent=150", false).ok());
  uint64_t big1 = 0, big2 = 0;
  ASSERT_EQ(a->MemAlloc(256 * kMiB, &big1), CUDA_SUCCESS);
  ASSERT_EQ(a->MemAlloc(192 * kMiB, &big2), CUDA_SUCCESS);         // 832 > 768, <= 960
  EXPECT_EQ(b->MemAlloc(2 * kMiB, &p), CUDA_ERROR_OUT_OF_MEMORY);  // b: 768 at most
  ASSERT_EQ(a->MemFree(big1), CUDA_SUCCESS);
  ASSERT_EQ(a->MemFree(big2), CUDA_SUCCESS);
  // --reset returns it to the server's percentage.
  ASSERT_TRUE(server_->SetClientPolicy(ida, "overcommit_percent=0", false).ok());
  EXPECT_EQ(a->MemAlloc(64 * kMiB, &p), CUDA_ERROR_OUT_OF_MEMORY);
  ASSERT_TRUE(server_->SetClientPolicy(ida, "", true).ok());
  EXPECT_FALSE(server_->tenants()->Member(ida)->overcommit_percent.has_value());
  EXPECT_EQ(a->MemAlloc(64 * kMiB, &p), CUDA_SUCCESS);
  // Bad values name the key; nothing changes.
  absl::Status s = server_->SetClientPolicy(ida, "overcommit_percent=abc", false);
  EXPECT_FALSE(s.ok());
  EXPECT_THAT(std::string(s.message()), HasSubstr("overcommit_percent"));
  EXPECT_FALSE(server_->tenants()->Member(ida)->overcommit_percent.has_value());
}

TEST_F(OvercommitOverrideTest, BadEnvValueIsRefusedNamingTheVariable) {
  Start();
  auto c = TestClient::Connect(endpoint_);
  ASSERT_NE(c, nullptr);
  std::string message;
  EXPECT_EQ(c->HelloWith("bad", 2, {{"WOOLY_OVERCOMMIT_PERCENT", "plenty"}}, nullptr, &message),
            CUDA_ERROR_INVALID_VALUE);
  EXPECT_THAT(message, HasSubstr("WOOLY_OVERCOMMIT_PERCENT"));
}

TEST_F(OvercommitOverrideTest, ClientValueIsCappedAtTheServers) {
  Start();
  uint64_t id = 0;
  auto c = Connect("greedy", {{"WOOLY_OVERCOMMIT_PERCENT", "900"}}, &id);
  ASSERT_TRUE(c);
  EXPECT_EQ(server_->tenants()->Member(id)->overcommit_percent, 100u);
  uint64_t p = 0;
  EXPECT_EQ(c->MemAlloc(770 * kMiB, &p), CUDA_ERROR_OUT_OF_MEMORY);
}

TEST_F(OvercommitOverrideTest, PolicyFileAndDefaultsLayers) {
  const std::string policy = WriteFile("batch-* overcommit_percent=0\n", &files_);
  Start([&](ServerOptions& o) {
    o.policy_file = policy;
    o.tenant_defaults.overcommit_percent = 50;
  });
  uint64_t ida = 0, idb = 0;
  auto batch = Connect("batch-1", {{"WOOLY_OVERCOMMIT_PERCENT", "100"}}, &ida);
  auto other = Connect("other", {}, &idb);
  ASSERT_TRUE(batch && other);
  EXPECT_EQ(server_->tenants()->Member(ida)->overcommit_percent, 0u);   // file > env
  EXPECT_EQ(server_->tenants()->Member(idb)->overcommit_percent, 50u);  // [defaults]
  uint64_t p = 0;
  EXPECT_EQ(batch->MemAlloc(448 * kMiB, &p), CUDA_ERROR_OUT_OF_MEMORY);
  ASSERT_EQ(other->MemAlloc(320 * kMiB, &p), CUDA_SUCCESS);
  ASSERT_EQ(other->MemAlloc(256 * kMiB, &p), CUDA_SUCCESS);  // 576: its limit
  EXPECT_EQ(other->MemAlloc(2 * kMiB, &p), CUDA_ERROR_OUT_OF_MEMORY);
}

TEST_F(OvercommitOverrideTest, RuntimeOverrideNeedsOvercommit) {
  Start([](ServerOptions& o) { o.overcommit = false; });
  uint64_t id = 0;
  auto c = Connect("c", {}, &id);
  ASSERT_TRUE(c);
  absl::Status s = server_->SetClientPolicy(id, "overcommit_percent=5", false);
  EXPECT_TRUE(absl::IsFailedPrecondition(s)) << s;
  EXPECT_TRUE(server_->SetClientPolicy(id, "priority=1", false).ok());
}

TEST_F(OvercommitOverrideTest, CapacityBoundsThePool) {
  Start([](ServerOptions& o) { o.memory_capacity_bytes = 130 * kMiB; });
  const NodeMemoryStatus m = server_->Status().memory;
  EXPECT_EQ(m.node.physical_bytes, 128 * kMiB);  // whole 64 MiB chunks
  EXPECT_EQ(m.node.admission_limit, 256 * kMiB);
  uint64_t id = 0;
  auto c = Connect("c", {{"WOOLY_OVERCOMMIT_PERCENT", "0"}}, &id);
  ASSERT_TRUE(c);
  uint64_t p = 0;
  EXPECT_EQ(c->MemAlloc(192 * kMiB, &p), CUDA_ERROR_OUT_OF_MEMORY);
  EXPECT_EQ(c->MemAlloc(128 * kMiB, &p), CUDA_SUCCESS);
}

TEST_F(OvercommitOverrideTest, CapacityAboveTheDeviceIsCapped) {
  Start([](ServerOptions& o) { o.memory_capacity_bytes = uint64_t{8} << 30; });
  // As without a capacity: the device's 512 MiB less the reserve.
  EXPECT_EQ(server_->Status().memory.node.physical_bytes, kPhysical);
}

}  // namespace
}  // namespace wooly::server
