// woolyd's configuration beyond the basics (server_daemon_flags_test.cc):
// the [scheduler], [memory] and [defaults] tables and their flags, GPU
// selection by UUID, the server's client defaults as a policy layer, and
// WOOLY_MEMORY_REQUIRED.
#include <unistd.h>

#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "wooly/fake/fake_backend.h"
#include "wooly/proto/defaults.h"
#include "wooly/scheduler/tenant.h"
#include "wooly/server/daemon.h"
#include "wooly/server/server.h"
#include "wooly/server/tenants.h"

namespace wooly::server {
namespace {

using ::testing::HasSubstr;

absl::StatusOr<DaemonFlags> Parse(std::vector<const char*> args) {
  args.insert(args.begin(), "woolyd");
  return ParseDaemonFlags(static_cast<int>(args.size()), args.data());
}

class DaemonConfigTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ::setenv(wire::kEnvSocketDir, "/tmp/wooly-config-test", 1);
    ::unsetenv(wire::kEnvServer);
    ::unsetenv(wire::kEnvAdmin);
    ::unsetenv(kEnvConfig);
  }
  void TearDown() override {
    for (const std::string& f : files_) ::unlink(f.c_str());
  }
  // Writes `text` to a fresh file and returns its path.
  std::string File(const std::string& text) {
    char path[] = "/tmp/wooly-config-XXXXXX";
    const int fd = ::mkstemp(path);
    EXPECT_GE(fd, 0);
    EXPECT_EQ(::write(fd, text.data(), text.size()), static_cast<ssize_t>(text.size()));
    ::close(fd);
    files_.push_back(path);
    return path;
  }
  absl::StatusOr<DaemonFlags> ParseConfig(const std::string& text) {
    const std::string path = File(text);
    return Parse({"--config", path.c_str()});
  }
  // The error a config file gives, or "ok".
  std::string Error(const std::string& text) {
    absl::StatusOr<DaemonFlags> f = ParseConfig(text);
    return f.ok() ? std::string("ok") : std::string(f.status().message());
  }
  std::vector<std::string> files_;
};

TEST_F(DaemonConfigTest, DefaultsOfTheNewSettings) {
  absl::StatusOr<DaemonFlags> f = Parse({});
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_TRUE(f->scheduler);
  EXPECT_EQ(f->scheduler_tick, absl::Milliseconds(100));
  EXPECT_TRUE(f->sm_partitions);
  EXPECT_EQ(f->sm_placement, SmPlacement::kNested);
  EXPECT_EQ(f->policy_file, "");
  EXPECT_FALSE(f->overcommit_percent.has_value());
  EXPECT_EQ(f->swap_idle_threshold, absl::Seconds(30));
  EXPECT_EQ(f->swap_host_pool_bytes, 0u);
  EXPECT_EQ(f->defaults, TenantDefaults{});
  EXPECT_EQ(f->device_uuid, "");

  // The flags' defaults match the server's own.
  const ServerOptions o = ServerOptionsFromFlags(*f);
  const ServerOptions d;
  EXPECT_EQ(o.scheduler, d.scheduler);
  EXPECT_EQ(o.scheduler_tick, d.scheduler_tick);
  EXPECT_EQ(o.sm_partitions, d.sm_partitions);
  EXPECT_EQ(o.sm_placement, d.sm_placement);
  EXPECT_EQ(o.overcommit, d.overcommit);
  EXPECT_EQ(o.swap_idle_threshold, d.swap_idle_threshold);
  EXPECT_EQ(o.swap_host_pool_bytes, d.swap_host_pool_bytes);
}

TEST_F(DaemonConfigTest, SchedulerTable) {
  const std::string policy = File("# tenants\ndecode-* priority=0 cap=none\n* cap=50%\n");
  absl::StatusOr<DaemonFlags> f = ParseConfig(
      "[scheduler]\nenabled = false\ntick_ms = 250\nsm_partitions = false\n"
      "placement = \"exclusive\"\npolicy_file = \"" +
      policy + "\"\n");
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_FALSE(f->scheduler);
  EXPECT_EQ(f->scheduler_tick, absl::Milliseconds(250));
  EXPECT_FALSE(f->sm_partitions);
  EXPECT_EQ(f->policy_file, policy);
  const ServerOptions o = ServerOptionsFromFlags(*f);
  EXPECT_FALSE(o.scheduler);
  EXPECT_EQ(o.scheduler_tick, absl::Milliseconds(250));
  EXPECT_FALSE(o.sm_partitions);
  EXPECT_EQ(o.sm_placement, SmPlacement::kExclusive);
  EXPECT_EQ(o.policy_file, policy);
}

TEST_F(DaemonConfigTest, SchedulerFlags) {
  const std::string policy = File("* weight=2\n");
  absl::StatusOr<DaemonFlags> f = Parse({"--no-scheduler", "--policy-file", policy.c_str()});
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_FALSE(f->scheduler);
  EXPECT_EQ(f->policy_file, policy);
  f = Parse({("--policy-file=" + policy).c_str(), "--sm-placement", "exclusive"});
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_TRUE(f->scheduler);
  EXPECT_EQ(f->policy_file, policy);
  EXPECT_EQ(f->sm_placement, SmPlacement::kExclusive);
  EXPECT_THAT(std::string(Parse({"--sm-placement=shared"}).status().message()),
              HasSubstr("--sm-placement"));
}

TEST_F(DaemonConfigTest, LaunchPipelineIsOffUnlessAskedFor) {
  ::unsetenv("WOOLY_LAUNCH_PIPELINE");
  absl::StatusOr<DaemonFlags> f = Parse({});
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_FALSE(f->launch_pipeline);
  EXPECT_FALSE(ServerOptionsFromFlags(*f).launch_pipeline);
  f = Parse({"--launch-pipeline"});
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_TRUE(ServerOptionsFromFlags(*f).launch_pipeline);
  ::setenv("WOOLY_LAUNCH_PIPELINE", "1", 1);
  f = Parse({});
  ::unsetenv("WOOLY_LAUNCH_PIPELINE");
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_TRUE(f->launch_pipeline);
}

TEST_F(DaemonConfigTest, BadPolicyFileStopsWithFileAndLine) {
  const std::string policy = File("# ok\n* weight=2\ndecode-* priority=9\n");
  absl::StatusOr<DaemonFlags> f = Parse({"--policy-file", policy.c_str()});
  ASSERT_FALSE(f.ok());
  EXPECT_THAT(std::string(f.status().message()), HasSubstr(policy + " line 3"));
  EXPECT_THAT(std::string(f.status().message()), HasSubstr("priority"));
  // Through the config file too, and a missing file names its path.
  EXPECT_THAT(Error("[scheduler]\npolicy_file = \"" + policy + "\"\n"),
              HasSubstr(policy + " line 3"));
  EXPECT_THAT(std::string(Parse({"--policy-file", "/nonexistent/policy"}).status().message()),
              HasSubstr("/nonexistent/policy"));
}

TEST_F(DaemonConfigTest, SchedulerErrorsNameTheKey) {
  EXPECT_THAT(Error("[scheduler]\nenabled = \"yes\"\n"), HasSubstr("'scheduler.enabled'"));
  EXPECT_THAT(Error("[scheduler]\ntick_ms = 0\n"), HasSubstr("'scheduler.tick_ms'"));
  EXPECT_THAT(Error("[scheduler]\ntick_ms = -5\n"), HasSubstr("'scheduler.tick_ms'"));
  EXPECT_THAT(Error("[scheduler]\ntick_ms = 1.5\n"), HasSubstr("'scheduler.tick_ms'"));
  EXPECT_THAT(Error("[scheduler]\nsm_partitions = 1\n"), HasSubstr("'scheduler.sm_partitions'"));
  EXPECT_THAT(Error("[scheduler]\npolicy_file = 3\n"), HasSubstr("'scheduler.policy_file'"));
  EXPECT_THAT(Error("[scheduler]\nplacement = \"both\"\n"), HasSubstr("'scheduler.placement'"));
  EXPECT_THAT(Error("[scheduler]\nplacement = 1\n"), HasSubstr("'scheduler.placement'"));
  EXPECT_THAT(Error("[scheduler]\npolicy_file = \"\"\n"), HasSubstr("'scheduler.policy_file'"));
  EXPECT_THAT(Error("[scheduler]\ntick = 100\n"), HasSubstr("'scheduler.tick': unknown key"));
  EXPECT_THAT(Error("scheduler = true\n"), HasSubstr("'scheduler': must be a table"));
}

TEST_F(DaemonConfigTest, MemoryTable) {
  absl::StatusOr<DaemonFlags> f = ParseConfig(
      "[memory]\novercommit_percent = 50\nswap_idle_seconds = 2.5\nswap_host_pool_bytes = "
      "\"64G\"\n");
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->overcommit_percent, 50u);
  EXPECT_EQ(f->swap_idle_threshold, absl::Milliseconds(2500));
  EXPECT_EQ(f->swap_host_pool_bytes, 64ull << 30);
  ServerOptions o = ServerOptionsFromFlags(*f);
  EXPECT_TRUE(o.overcommit);
  EXPECT_EQ(o.overcommit_percent, 50u);
  EXPECT_EQ(o.swap_idle_threshold, absl::Milliseconds(2500));
  EXPECT_EQ(o.swap_host_pool_bytes, 64ull << 30);

  // 0 % still turns overcommit on (VMM-backed memory, swapping); absent
  // leaves it off. Integers work for seconds and bytes.
  f = ParseConfig(
      "[memory]\novercommit_percent = 0\nswap_idle_seconds = 10\n"
      "swap_host_pool_bytes = 1048576\n");
  ASSERT_TRUE(f.ok()) << f.status();
  o = ServerOptionsFromFlags(*f);
  EXPECT_TRUE(o.overcommit);
  EXPECT_EQ(o.overcommit_percent, 0u);
  EXPECT_EQ(o.swap_idle_threshold, absl::Seconds(10));
  EXPECT_EQ(o.swap_host_pool_bytes, 1u << 20);
  f = ParseConfig("[memory]\nswap_idle_seconds = 10\n");
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_FALSE(ServerOptionsFromFlags(*f).overcommit);
}

TEST_F(DaemonConfigTest, MemoryFlagsOverrideTheFile) {
  const std::string path = File("[memory]\novercommit_percent = 50\nswap_idle_seconds = 5\n");
  absl::StatusOr<DaemonFlags> f =
      Parse({"--config", path.c_str(), "--overcommit-percent", "1000", "--swap-idle-seconds=0.25"});
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->overcommit_percent, 1000u);
  EXPECT_EQ(f->swap_idle_threshold, absl::Milliseconds(250));
  f = Parse({"--overcommit-percent=0"});
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_TRUE(ServerOptionsFromFlags(*f).overcommit);

  EXPECT_THAT(std::string(Parse({"--overcommit-percent", "1001"}).status().message()),
              HasSubstr("--overcommit-percent"));
  EXPECT_THAT(std::string(Parse({"--overcommit-percent", "-1"}).status().message()),
              HasSubstr("--overcommit-percent"));
  EXPECT_THAT(std::string(Parse({"--overcommit-percent", "12.5"}).status().message()),
              HasSubstr("--overcommit-percent"));
  EXPECT_THAT(std::string(Parse({"--swap-idle-seconds", "0"}).status().message()),
              HasSubstr("--swap-idle-seconds"));
  EXPECT_THAT(std::string(Parse({"--swap-idle-seconds", "soon"}).status().message()),
              HasSubstr("--swap-idle-seconds"));
  EXPECT_THAT(std::string(Parse({"--swap-idle-seconds", "inf"}).status().message()),
              HasSubstr("--swap-idle-seconds"));
}

TEST_F(DaemonConfigTest, MemoryErrorsNameTheKey) {
  EXPECT_THAT(Error("[memory]\novercommit_percent = 1001\n"),
              HasSubstr("'memory.overcommit_percent'"));
  EXPECT_THAT(Error("[memory]\novercommit_percent = -1\n"),
              HasSubstr("'memory.overcommit_percent'"));
  EXPECT_THAT(Error("[memory]\novercommit_percent = \"50\"\n"),
              HasSubstr("'memory.overcommit_percent'"));
  EXPECT_THAT(Error("[memory]\novercommit_percent = 2.5\n"),
              HasSubstr("'memory.overcommit_percent'"));
  EXPECT_THAT(Error("[memory]\nswap_idle_seconds = 0\n"), HasSubstr("'memory.swap_idle_seconds'"));
  EXPECT_THAT(Error("[memory]\nswap_idle_seconds = -3\n"), HasSubstr("'memory.swap_idle_seconds'"));
  EXPECT_THAT(Error("[memory]\nswap_idle_seconds = \"30\"\n"),
              HasSubstr("'memory.swap_idle_seconds'"));
  EXPECT_THAT(Error("[memory]\nswap_idle_seconds = true\n"),
              HasSubstr("'memory.swap_idle_seconds'"));
  EXPECT_THAT(Error("[memory]\nswap_host_pool_bytes = \"lots\"\n"),
              HasSubstr("'memory.swap_host_pool_bytes'"));
  EXPECT_THAT(Error("[memory]\nswap_host_pool_bytes = -1\n"),
              HasSubstr("'memory.swap_host_pool_bytes'"));
  EXPECT_THAT(Error("[memory]\novercommit = true\n"),
              HasSubstr("'memory.overcommit': unknown key"));
}

TEST_F(DaemonConfigTest, DefaultsTable) {
  absl::StatusOr<DaemonFlags> f = ParseConfig(R"(
[defaults]
priority = 3
weight = 0.5
sm_floor = "10%"
sm_cap = 0.6
memory_limit = "8G"
noswap = true
dedup = false
)");
  ASSERT_TRUE(f.ok()) << f.status();
  const TenantDefaults& d = f->defaults;
  EXPECT_EQ(d.policy.priority, 3);
  EXPECT_EQ(d.policy.weight, 0.5);
  EXPECT_DOUBLE_EQ(d.policy.floor_share.value_or(-1), 0.10);
  EXPECT_DOUBLE_EQ(d.policy.cap_share.value_or(-1), 0.60);
  EXPECT_EQ(d.memory_limit, 8ull << 30);
  EXPECT_EQ(d.noswap, true);
  EXPECT_EQ(d.dedup, false);
  EXPECT_EQ(ServerOptionsFromFlags(*f).tenant_defaults, d);

  // Integers are percentages, as in WOOLY_SM_CAP; "none" is allowed; sizes
  // may be integers.
  f = ParseConfig("[defaults]\nsm_cap = 30\nsm_floor = \"none\"\nmemory_limit = 1073741824\n");
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_DOUBLE_EQ(f->defaults.policy.cap_share.value_or(-1), 0.30);
  EXPECT_DOUBLE_EQ(f->defaults.policy.floor_share.value_or(-1), 0.0);
  EXPECT_EQ(f->defaults.memory_limit, 1ull << 30);
  EXPECT_FALSE(f->defaults.noswap.has_value());
}

TEST_F(DaemonConfigTest, DefaultsErrorsNameTheKey) {
  EXPECT_THAT(Error("[defaults]\npriority = 5\n"), HasSubstr("'defaults.priority'"));
  EXPECT_THAT(Error("[defaults]\npriority = \"high\"\n"), HasSubstr("'defaults.priority'"));
  EXPECT_THAT(Error("[defaults]\nweight = 0\n"), HasSubstr("'defaults.weight'"));
  EXPECT_THAT(Error("[defaults]\nweight = \"heavy\"\n"), HasSubstr("'defaults.weight'"));
  EXPECT_THAT(Error("[defaults]\nsm_floor = \"120%\"\n"), HasSubstr("'defaults.sm_floor'"));
  EXPECT_THAT(Error("[defaults]\nsm_cap = \"half\"\n"), HasSubstr("'defaults.sm_cap'"));
  EXPECT_THAT(Error("[defaults]\nsm_cap = \"30% 40%\"\n"), HasSubstr("'defaults.sm_cap'"));
  EXPECT_THAT(Error("[defaults]\nsm_cap = true\n"), HasSubstr("'defaults.sm_cap'"));
  EXPECT_THAT(Error("[defaults]\nsm_floor = 0.5\nsm_cap = 0.2\n"),
              HasSubstr("'defaults.sm_floor'"));
  EXPECT_THAT(Error("[defaults]\nmemory_limit = \"big\"\n"), HasSubstr("'defaults.memory_limit'"));
  EXPECT_THAT(Error("[defaults]\nmemory_limit = 0\n"), HasSubstr("'defaults.memory_limit'"));
  EXPECT_THAT(Error("[defaults]\nnoswap = \"yes\"\n"), HasSubstr("'defaults.noswap'"));
  EXPECT_THAT(Error("[defaults]\ndedup = 1\n"), HasSubstr("'defaults.dedup'"));
  EXPECT_THAT(Error("[defaults]\ntenant = \"x\"\n"), HasSubstr("'defaults.tenant': unknown key"));
}

// A UUID in the fake backend's format.
std::string FakeUuid() {
  fake::FakeBackend backend;
  absl::StatusOr<wire::DeviceInfo> info = backend.GetDeviceInfo();
  EXPECT_TRUE(info.ok());
  return FormatGpuUuid(info->uuid);
}

TEST_F(DaemonConfigTest, DeviceByOrdinalOrUuid) {
  const std::string uuid = "GPU-8932f937-d72c-4106-c12f-20bd9faed9f6";
  absl::StatusOr<DaemonFlags> f = Parse({"--device", uuid.c_str()});
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->device_uuid, uuid);
  // Upper-case hex, and the config file as a string.
  f = ParseConfig("device = \"GPU-8932F937-D72C-4106-C12F-20BD9FAED9F6\"\n");
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->device_uuid, uuid);
  f = ParseConfig("device = \"1\"\n");
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->device, 1);
  EXPECT_EQ(f->device_uuid, "");
  // A later ordinal flag replaces the file's UUID.
  const std::string path = File("device = \"" + uuid + "\"\n");
  f = Parse({"--config", path.c_str(), "--device", "2"});
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->device, 2);
  EXPECT_EQ(f->device_uuid, "");

  EXPECT_THAT(std::string(Parse({"--device", "GPU-1234"}).status().message()),
              HasSubstr("GPU-1234"));
  EXPECT_THAT(Error("device = \"GPU-8932f937-d72c-4106-c12f-20bd9faed9fz\"\n"),
              HasSubstr("'device'"));
  EXPECT_THAT(Error("device = 1.5\n"), HasSubstr("'device'"));
}

TEST_F(DaemonConfigTest, CreateBackendResolvesTheUuid) {
  int asked = -1;
  BackendFactory factory = [&](int ordinal) -> absl::StatusOr<std::unique_ptr<GpuBackend>> {
    asked = ordinal;
    return std::make_unique<fake::FakeBackend>();
  };
  DaemonFlags flags;
  flags.device = 0;
  flags.device_uuid = absl::AsciiStrToLower(FakeUuid());
  ASSERT_TRUE(CreateBackend(flags, factory).ok());
  EXPECT_EQ(asked, 0);
  EXPECT_STREQ(std::getenv("CUDA_VISIBLE_DEVICES"), flags.device_uuid.c_str());

  flags.device_uuid = "GPU-00000000-0000-0000-0000-000000000000";
  absl::StatusOr<std::unique_ptr<GpuBackend>> b = CreateBackend(flags, factory);
  ASSERT_FALSE(b.ok());
  EXPECT_THAT(std::string(b.status().message()), HasSubstr(flags.device_uuid));
  // The driver finding no device (no GPU with that UUID is visible).
  BackendFactory none = [](int) -> absl::StatusOr<std::unique_ptr<GpuBackend>> {
    return absl::NotFoundError("cuInit: CUDA_ERROR_NO_DEVICE");
  };
  b = CreateBackend(flags, none);
  ASSERT_FALSE(b.ok());
  EXPECT_THAT(std::string(b.status().message()), HasSubstr(flags.device_uuid));
  EXPECT_THAT(std::string(b.status().message()), HasSubstr("CUDA_ERROR_NO_DEVICE"));

  // By ordinal, the factory is asked for it and the environment is untouched.
  ::unsetenv("CUDA_VISIBLE_DEVICES");
  flags.device_uuid.clear();
  flags.device = 3;
  (void)CreateBackend(flags, factory);
  EXPECT_EQ(asked, 3);
  EXPECT_EQ(std::getenv("CUDA_VISIBLE_DEVICES"), nullptr);
}

// ---- the server's defaults in the tenant registry ----

ClientSettings Settings(const scheduler::EnvMap& env) {
  absl::StatusOr<ClientSettings> s = ParseClientSettings(env);
  EXPECT_TRUE(s.ok()) << s.status();
  return s.ok() ? *s : ClientSettings{};
}

ClientIdentity Who(uint64_t id, const std::string& name = "app") {
  ClientIdentity who;
  who.client_id = id;
  who.name = name;
  return who;
}

TEST(TenantDefaultsTest, ServerDefaultsAreTheLowestPolicyLayer) {
  TenantRegistry registry;
  TenantDefaults d;
  d.policy.priority = 4;
  d.policy.weight = 3.0;
  d.policy.cap_share = 0.5;
  registry.SetDefaults(d);
  EXPECT_EQ(registry.defaults(), d);

  // A client that sets nothing gets the defaults...
  auto plain = registry.Join(Who(1), Settings({}));
  ASSERT_TRUE(plain.ok());
  scheduler::ResolvedPolicy p = (*plain)->policy();
  EXPECT_EQ(p.policy.priority, 4);
  EXPECT_EQ(p.policy.weight, 3.0);
  EXPECT_EQ(p.policy.cap(), 0.5);
  EXPECT_EQ(p.priority_source, scheduler::PolicySource::kServerDefault);
  EXPECT_EQ(scheduler::PolicySourceName(p.cap_source), "server-default");

  // ...its own environment wins over them...
  auto own = registry.Join(Who(2), Settings({{"WOOLY_PRIORITY", "1"}, {"WOOLY_SM_CAP", "none"}}));
  ASSERT_TRUE(own.ok());
  p = (*own)->policy();
  EXPECT_EQ(p.policy.priority, 1);
  EXPECT_EQ(p.policy.cap(), 1.0);
  EXPECT_EQ(p.policy.weight, 3.0);
  EXPECT_EQ(p.priority_source, scheduler::PolicySource::kClientEnv);
  EXPECT_EQ(p.weight_source, scheduler::PolicySource::kServerDefault);

  // ...and the policy file wins over the environment.
  absl::StatusOr<scheduler::PolicyFile> file = scheduler::PolicyFile::Parse("app weight=7\n");
  ASSERT_TRUE(file.ok());
  registry.SetPolicyFile(*file);
  EXPECT_EQ((*own)->policy().policy.weight, 7.0);

  // Changing the defaults re-resolves present clients.
  const uint64_t gen = registry.policy_generation();
  d.policy.priority = 0;
  registry.SetDefaults(d);
  EXPECT_GT(registry.policy_generation(), gen);
  EXPECT_EQ((*plain)->policy().policy.priority, 0);
  EXPECT_EQ((*own)->policy().policy.priority, 1);
}

TEST(TenantDefaultsTest, MemoryLimitNoswapAndDedupApplyWhenTheClientSendsNone) {
  TenantRegistry registry;
  TenantDefaults d;
  d.memory_limit = 8ull << 30;
  d.noswap = true;
  d.dedup = true;
  registry.SetDefaults(d);

  ClientIdentity a = Who(1);
  a.pod = "a";
  auto plain = registry.Join(a, Settings({}));
  ASSERT_TRUE(plain.ok());
  EXPECT_EQ((*plain)->tenant_limit(), 8ull << 30);
  EXPECT_TRUE((*plain)->noswap());
  EXPECT_TRUE((*plain)->dedup());
  std::optional<TenantMemberInfo> m = registry.Member(1);
  ASSERT_TRUE(m.has_value());
  EXPECT_TRUE(m->noswap);
  EXPECT_TRUE(m->dedup);
  EXPECT_EQ(m->memory_limit, 8ull << 30);

  ClientIdentity b = Who(2);
  b.pod = "b";
  auto own = registry.Join(
      b, Settings({{"WOOLY_MEMORY_LIMIT", "2G"}, {"WOOLY_NOSWAP", "0"}, {"WOOLY_DEDUP", "off"}}));
  ASSERT_TRUE(own.ok());
  EXPECT_EQ((*own)->tenant_limit(), 2ull << 30);
  EXPECT_FALSE((*own)->noswap());
  EXPECT_FALSE((*own)->dedup());
}

TEST(MemoryRequiredTest, ParsedLikeALimit) {
  absl::StatusOr<ClientSettings> s = ParseClientSettings({{"WOOLY_MEMORY_REQUIRED", "20G"}});
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->memory_required, 20ull << 30);
  s = ParseClientSettings({{"WOOLY_MEMORY_REQUIRED", "plenty"}});
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(std::string(s.status().message()), HasSubstr("WOOLY_MEMORY_REQUIRED"));
  EXPECT_FALSE(ParseClientSettings({{"WOOLY_MEMORY_REQUIRED", "0"}}).ok());
  EXPECT_FALSE(ParseClientSettings({{"WOOLY_MEMORY_REQUIRED", ""}})->memory_required.has_value());
}

TEST(MemoryRequiredTest, RefusedWhenTheTenantCannotHaveIt) {
  TenantRegistry registry;
  // Without a device size and a limit nothing is checked.
  auto unchecked = registry.Join(Who(1), Settings({{"WOOLY_MEMORY_REQUIRED", "1T"}}));
  EXPECT_TRUE(unchecked.ok());
  registry.SetDeviceMemory(16ull << 30);

  // Its own limit.
  auto r = registry.Join(
      Who(2), Settings({{"WOOLY_MEMORY_LIMIT", "8G"}, {"WOOLY_MEMORY_REQUIRED", "10G"}}));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("WOOLY_MEMORY_REQUIRED"));
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("limit"));

  // The device's memory when the tenant has no limit.
  r = registry.Join(Who(3), Settings({{"WOOLY_MEMORY_REQUIRED", "20G"}}));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("GPU's memory"));
  EXPECT_TRUE(registry.Join(Who(4), Settings({{"WOOLY_MEMORY_REQUIRED", "16G"}})).ok());

  // Another member's smaller limit is the tenant's limit.
  ClientSettings small = Settings({{"WOOLY_TENANT", "team"}, {"WOOLY_MEMORY_LIMIT", "4G"}});
  auto member = registry.Join(Who(5), small);
  ASSERT_TRUE(member.ok());
  r = registry.Join(Who(6), Settings({{"WOOLY_TENANT", "team"}, {"WOOLY_MEMORY_REQUIRED", "6G"}}));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_TRUE(
      registry.Join(Who(7), Settings({{"WOOLY_TENANT", "team"}, {"WOOLY_MEMORY_REQUIRED", "4G"}}))
          .ok());

  // The server's default limit counts as the client's.
  TenantDefaults d;
  d.memory_limit = 2ull << 30;
  registry.SetDefaults(d);
  r = registry.Join(Who(8), Settings({{"WOOLY_MEMORY_REQUIRED", "3G"}}));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kResourceExhausted);
  // A refused client leaves nothing behind: its id may join again.
  EXPECT_TRUE(registry.Join(Who(8), Settings({{"WOOLY_MEMORY_REQUIRED", "1G"}})).ok());
}

}  // namespace
}  // namespace wooly::server
