// Scheduler policy (issue 5): tenant policies from the client environment,
// the server's policy file and runtime overrides, and the SM-share allocator.
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "wooly/scheduler/allocator.h"
#include "wooly/scheduler/tenant.h"

namespace wooly::scheduler {
namespace {

using ::testing::AllOf;
using ::testing::DoubleNear;
using ::testing::HasSubstr;
using ::testing::Optional;

constexpr double kTol = 1e-9;

// ---------------------------------------------------------------- shares --

TEST(ParseShareTest, PercentagesAndFractions) {
  struct Case {
    const char* text;
    double share;
  } cases[] = {
      {"30", 0.30},  {"30%", 0.30},   {" 30 % ", 0.30}, {"0.3", 0.30},   {"12.5", 0.125},
      {"1", 0.01},   {"1.0", 1.0},    {"100", 1.0},     {"0", 0.0},      {"0.0", 0.0},
      {"100%", 1.0}, {"0.5%", 0.005}, {".25", 0.25},    {"99.9", 0.999},
  };
  for (const Case& c : cases) {
    absl::StatusOr<double> v = ParseShare(c.text);
    ASSERT_TRUE(v.ok()) << c.text << ": " << v.status();
    EXPECT_NEAR(*v, c.share, kTol) << c.text;
  }
}

TEST(ParseShareTest, RejectsWhatIsNotAShare) {
  for (const char* bad :
       {"", "abc", "30x", "150", "101%", "-5", "-0.1", "nan", "inf", "%", "1e9"}) {
    absl::StatusOr<double> v = ParseShare(bad);
    EXPECT_EQ(v.status().code(), absl::StatusCode::kInvalidArgument) << "'" << bad << "'";
  }
}

// ----------------------------------------------------------- environment --

TEST(ClientEnvTest, DefaultsWhenNothingIsSet) {
  absl::StatusOr<TenantPolicy> p = TenantPolicyFromEnv({{"PATH", "/bin"}});
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->priority, kDefaultClientPriority);
  EXPECT_EQ(p->weight, 1.0);
  EXPECT_FALSE(p->floor_share.has_value());
  EXPECT_FALSE(p->cap_share.has_value());
}

TEST(ClientEnvTest, ReadsAllFourVariables) {
  absl::StatusOr<TenantPolicy> p = TenantPolicyFromEnv({{"WOOLY_PRIORITY", "0"},
                                                        {"WOOLY_WEIGHT", "2.5"},
                                                        {"WOOLY_SM_FLOOR", "30"},
                                                        {"WOOLY_SM_CAP", "0.8"}});
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->priority, 0);
  EXPECT_EQ(p->weight, 2.5);
  EXPECT_THAT(p->floor_share, Optional(DoubleNear(0.3, kTol)));
  EXPECT_THAT(p->cap_share, Optional(DoubleNear(0.8, kTol)));
}

TEST(ClientEnvTest, EmptyValuesAreUnsetAndNoneClears) {
  absl::StatusOr<TenantPolicy> p = TenantPolicyFromEnv(
      {{"WOOLY_PRIORITY", ""}, {"WOOLY_SM_CAP", "none"}, {"WOOLY_SM_FLOOR", "None"}});
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->priority, kDefaultClientPriority);
  EXPECT_FALSE(p->cap_share.has_value());
  EXPECT_FALSE(p->floor_share.has_value());
}

TEST(ClientEnvTest, ErrorsNameTheVariable) {
  struct Case {
    EnvMap env;
    const char* names;
  } cases[] = {
      {{{"WOOLY_PRIORITY", "7"}}, "WOOLY_PRIORITY"},
      {{{"WOOLY_PRIORITY", "high"}}, "WOOLY_PRIORITY"},
      {{{"WOOLY_WEIGHT", "0"}}, "WOOLY_WEIGHT"},
      {{{"WOOLY_WEIGHT", "-1"}}, "WOOLY_WEIGHT"},
      {{{"WOOLY_WEIGHT", "lots"}}, "WOOLY_WEIGHT"},
      {{{"WOOLY_SM_FLOOR", "abc"}}, "WOOLY_SM_FLOOR"},
      {{{"WOOLY_SM_CAP", "250"}}, "WOOLY_SM_CAP"},
  };
  for (const Case& c : cases) {
    absl::StatusOr<PolicyOverride> layer = ParseClientEnv(c.env);
    EXPECT_EQ(layer.status().code(), absl::StatusCode::kInvalidArgument) << c.names;
    EXPECT_THAT(layer.status().message(), HasSubstr(c.names));
  }
  absl::StatusOr<PolicyOverride> crossed =
      ParseClientEnv({{"WOOLY_SM_FLOOR", "40"}, {"WOOLY_SM_CAP", "30"}});
  EXPECT_EQ(crossed.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(crossed.status().message(),
              AllOf(HasSubstr("WOOLY_SM_FLOOR"), HasSubstr("WOOLY_SM_CAP"), HasSubstr("40%"),
                    HasSubstr("30%")));
}

// ---------------------------------------------------- runtime assignments --

TEST(AssignmentsTest, ParsesKeysAndNamesBadOnes) {
  absl::StatusOr<PolicyOverride> o = ParseAssignments("  priority=1\tweight=3 cap=50% floor=0.1 ");
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->priority, 1);
  EXPECT_EQ(o->weight, 3.0);
  EXPECT_THAT(o->cap_share, Optional(DoubleNear(0.5, kTol)));
  EXPECT_THAT(o->floor_share, Optional(DoubleNear(0.1, kTol)));
  EXPECT_TRUE(ParseAssignments("").value().empty());

  struct Case {
    const char* text;
    const char* mentions;
  } cases[] = {
      {"cpa=3", "key 'cpa'"},
      {"cap=xyz", "key 'cap'"},
      {"weight=0", "key 'weight'"},
      {"cap=3 cap=4", "given twice"},
      {"priority", "not key=value"},
      {"=3", "not key=value"},
      {"floor=60 cap=50", "key 'floor'"},
  };
  for (const Case& c : cases) {
    absl::StatusOr<PolicyOverride> bad = ParseAssignments(c.text);
    EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument) << c.text;
    EXPECT_THAT(bad.status().message(), HasSubstr(c.mentions)) << c.text;
  }
}

// ----------------------------------------------------------- policy file --

TEST(GlobTest, Matches) {
  EXPECT_TRUE(GlobMatch("*", ""));
  EXPECT_TRUE(GlobMatch("*", "anything"));
  EXPECT_TRUE(GlobMatch("decode-*", "decode-llama"));
  EXPECT_FALSE(GlobMatch("decode-*", "train-llama"));
  EXPECT_TRUE(GlobMatch("*-llama", "decode-llama"));
  EXPECT_TRUE(GlobMatch("d?code*", "decode"));
  EXPECT_TRUE(GlobMatch("a*b*c", "aXXbYYbZZc"));
  EXPECT_FALSE(GlobMatch("a*b*c", "aXXbYYbZZ"));
  EXPECT_TRUE(GlobMatch("exact", "exact"));
  EXPECT_FALSE(GlobMatch("exact", "exactly"));
  EXPECT_FALSE(GlobMatch("?", ""));
}

TEST(PolicyFileTest, LaterMatchingLinesRefineEarlierOnes) {
  absl::StatusOr<PolicyFile> file = PolicyFile::Parse(R"(# wooly policy
*            cap=50 weight=1
decode-*     priority=0 cap=none floor=20   # latency-sensitive
train-*      priority=4 weight=2

)");
  ASSERT_TRUE(file.ok()) << file.status();
  ASSERT_EQ(file->rules().size(), 3u);
  EXPECT_EQ(file->rules()[1].line, 3);
  EXPECT_EQ(file->rules()[1].pattern, "decode-*");

  const PolicyOverride decode = file->OverrideFor("decode-llama");
  EXPECT_EQ(decode.priority, 0);
  EXPECT_THAT(decode.cap_share, Optional(1.0));  // "none": explicitly no cap
  EXPECT_THAT(decode.floor_share, Optional(DoubleNear(0.2, kTol)));

  const PolicyOverride train = file->OverrideFor("train-resnet");
  EXPECT_EQ(train.priority, 4);
  EXPECT_EQ(train.weight, 2.0);
  EXPECT_THAT(train.cap_share, Optional(DoubleNear(0.5, kTol)));

  const PolicyOverride other = file->OverrideFor("notebook");
  EXPECT_FALSE(other.priority.has_value());
  EXPECT_THAT(other.cap_share, Optional(DoubleNear(0.5, kTol)));
}

TEST(PolicyFileTest, ErrorsNameTheLineAndTheKey) {
  struct Case {
    const char* text;
    std::vector<const char*> mentions;
  } cases[] = {
      {"a priority=1\n\n# ok\nb weight=two\n", {"policy file line 4", "key 'weight'"}},
      {"a priority=1\nb colour=red\n", {"line 2", "key 'colour'"}},
      {"a cap=10 floor=20\n", {"line 1", "floor", "cap"}},
      {"lonely-pattern\n", {"line 1", "no settings"}},
      {"priority=0\n", {"line 1", "<client-name-glob>"}},
      {"a cap=1\r\nb cap=200\r\n", {"line 2", "key 'cap'"}},
  };
  for (const Case& c : cases) {
    absl::StatusOr<PolicyFile> f = PolicyFile::Parse(c.text);
    EXPECT_EQ(f.status().code(), absl::StatusCode::kInvalidArgument) << c.text;
    for (const char* m : c.mentions) {
      EXPECT_THAT(f.status().message(), HasSubstr(m)) << c.text;
    }
  }
  absl::StatusOr<PolicyFile> named = PolicyFile::Parse("x cap=", "/etc/wooly/policy");
  EXPECT_THAT(named.status().message(), HasSubstr("/etc/wooly/policy line 1"));
}

TEST(PolicyFileTest, LoadsFromDisk) {
  const std::string path = ::testing::TempDir() + "/wooly_policy_test.conf";
  std::FILE* f = std::fopen(path.c_str(), "w");
  ASSERT_NE(f, nullptr);
  std::fputs("bench-* priority=1\nbench-* weight=\n", f);
  std::fclose(f);
  absl::StatusOr<PolicyFile> bad = PolicyFile::Load(path);
  EXPECT_THAT(bad.status().message(), AllOf(HasSubstr(path), HasSubstr("line 2")));

  f = std::fopen(path.c_str(), "w");
  ASSERT_NE(f, nullptr);
  std::fputs("bench-* priority=1\n", f);
  std::fclose(f);
  absl::StatusOr<PolicyFile> good = PolicyFile::Load(path);
  ASSERT_TRUE(good.ok()) << good.status();
  EXPECT_EQ(good->OverrideFor("bench-a").priority, 1);
  std::remove(path.c_str());

  EXPECT_EQ(PolicyFile::Load(path + ".missing").status().code(), absl::StatusCode::kNotFound);
}

// ------------------------------------------------------------ precedence --

TEST(ResolveTest, RuntimeBeatsPolicyFileBeatsClientBeatsDefaults) {
  PolicyOverride client = ParseClientEnv({{"WOOLY_PRIORITY", "3"}, {"WOOLY_SM_CAP", "50"}}).value();
  PolicyOverride file = ParseAssignments("priority=1 weight=2").value();
  PolicyOverride runtime = ParseAssignments("priority=0").value();

  ResolvedPolicy r = ResolveTenantPolicy(client, file, runtime);
  EXPECT_EQ(r.policy.priority, 0);
  EXPECT_EQ(r.priority_source, PolicySource::kRuntime);
  EXPECT_EQ(r.policy.weight, 2.0);
  EXPECT_EQ(r.weight_source, PolicySource::kPolicyFile);
  EXPECT_THAT(r.policy.cap_share, Optional(DoubleNear(0.5, kTol)));
  EXPECT_EQ(r.cap_source, PolicySource::kClientEnv);
  EXPECT_FALSE(r.policy.floor_share.has_value());
  EXPECT_EQ(r.floor_source, PolicySource::kDefault);
  EXPECT_EQ(PolicySourceName(r.cap_source), "client");

  // Without the runtime layer the policy file decides.
  EXPECT_EQ(ResolveTenantPolicy(client, file, {}).policy.priority, 1);
  // "none" in a higher layer removes a lower layer's cap.
  ResolvedPolicy uncapped = ResolveTenantPolicy(client, {}, ParseAssignments("cap=none").value());
  EXPECT_FALSE(uncapped.policy.cap_share.has_value());
  EXPECT_EQ(uncapped.cap_source, PolicySource::kRuntime);
}

TEST(ResolveTest, HigherLayerWinsAFloorCapConflict) {
  PolicyOverride client = ParseClientEnv({{"WOOLY_SM_FLOOR", "40"}}).value();
  PolicyOverride file = ParseAssignments("cap=30").value();
  ResolvedPolicy r = ResolveTenantPolicy(client, file, {});
  EXPECT_THAT(r.policy.cap_share, Optional(DoubleNear(0.3, kTol)));
  EXPECT_THAT(r.policy.floor_share, Optional(DoubleNear(0.3, kTol)));  // lowered to the cap
  EXPECT_EQ(r.floor_source, PolicySource::kPolicyFile);
  EXPECT_TRUE(ValidateTenantPolicy(r.policy).ok());

  // And the other way round: a runtime floor above the file's cap lifts it.
  ResolvedPolicy lifted = ResolveTenantPolicy({}, file, ParseAssignments("floor=60").value());
  EXPECT_THAT(lifted.policy.floor_share, Optional(DoubleNear(0.6, kTol)));
  EXPECT_THAT(lifted.policy.cap_share, Optional(DoubleNear(0.6, kTol)));
  EXPECT_EQ(lifted.cap_source, PolicySource::kRuntime);
}

TEST(ResolveTest, ValidatesPolicies) {
  TenantPolicy p;
  EXPECT_TRUE(ValidateTenantPolicy(p).ok());
  p.priority = 5;
  EXPECT_THAT(ValidateTenantPolicy(p).message(), HasSubstr("priority"));
  p = TenantPolicy{};
  p.weight = 0;
  EXPECT_THAT(ValidateTenantPolicy(p).message(), HasSubstr("weight"));
  p = TenantPolicy{};
  p.floor_share = 0.5;
  p.cap_share = 0.4;
  EXPECT_THAT(ValidateTenantPolicy(p).message(), HasSubstr("floor"));
}

// ------------------------------------------------------------- allocator --

TenantPolicy Policy(int priority, double weight = 1.0, std::optional<double> floor = std::nullopt,
                    std::optional<double> cap = std::nullopt) {
  TenantPolicy p;
  p.priority = priority;
  p.weight = weight;
  p.floor_share = floor;
  p.cap_share = cap;
  return p;
}

TenantDemand Busy(TenantId id, TenantPolicy policy, std::optional<double> usable = std::nullopt) {
  return TenantDemand{id, policy, /*has_work=*/true, usable};
}

TenantDemand Idle(TenantId id, TenantPolicy policy) {
  return TenantDemand{id, policy, /*has_work=*/false, std::nullopt};
}

Allocation MustAllocate(const std::vector<TenantDemand>& d,
                        PartitionGeometry g = PartitionGeometry::H100()) {
  absl::StatusOr<Allocation> a = Allocate(d, g);
  EXPECT_TRUE(a.ok()) << a.status();
  return a.ok() ? *a : Allocation{};
}

double Target(const Allocation& a, TenantId id) { return a.Find(id)->target_share; }
int Units(const Allocation& a, TenantId id) { return a.Find(id)->units; }

TEST(AllocatorTest, PriorityWinsUnderContention) {
  Allocation a = MustAllocate({Busy(1, Policy(4)), Busy(2, Policy(0))});
  EXPECT_NEAR(Target(a, 2), 1.0, kTol);
  EXPECT_NEAR(Target(a, 1), 0.0, kTol);
  EXPECT_EQ(Units(a, 2), 16);
  EXPECT_EQ(Units(a, 1), 0);
  EXPECT_EQ(a.tenants[0].id, 1u);  // input order

  // The higher priority is served up to its cap, then the lower gets the rest.
  a = MustAllocate({Busy(1, Policy(4)), Busy(2, Policy(0, 1, std::nullopt, 0.6))});
  EXPECT_NEAR(Target(a, 2), 0.6, kTol);
  EXPECT_NEAR(Target(a, 1), 0.4, kTol);

  // ...or up to what it can use.
  a = MustAllocate({Busy(1, Policy(4)), Busy(2, Policy(0), 0.3)});
  EXPECT_NEAR(Target(a, 2), 0.3, kTol);
  EXPECT_NEAR(Target(a, 1), 0.7, kTol);

  // Three levels: 1 is served before 3, whatever the weights.
  a = MustAllocate({Busy(1, Policy(0), 0.5), Busy(2, Policy(1, 100)), Busy(3, Policy(3, 0.001))});
  EXPECT_NEAR(Target(a, 1), 0.5, kTol);
  EXPECT_NEAR(Target(a, 2), 0.5, kTol);
  EXPECT_NEAR(Target(a, 3), 0.0, kTol);
}

TEST(AllocatorTest, EqualPrioritiesSplitByWeight) {
  Allocation a = MustAllocate({Busy(1, Policy(2, 0.3)), Busy(2, Policy(2, 0.7))});
  EXPECT_NEAR(Target(a, 1), 0.3, kTol);
  EXPECT_NEAR(Target(a, 2), 0.7, kTol);
  // 0.3 and 0.7 of 16.5 units are 4.95 and 11.55: 5 and 11 of the 16 units.
  EXPECT_EQ(Units(a, 1), 5);
  EXPECT_EQ(Units(a, 2), 11);

  a = MustAllocate({Busy(1, Policy(1)), Busy(2, Policy(1))});
  EXPECT_NEAR(Target(a, 1), 0.5, kTol);
  EXPECT_NEAR(Target(a, 2), 0.5, kTol);
  EXPECT_EQ(Units(a, 1), 8);
  EXPECT_EQ(Units(a, 2), 8);
  EXPECT_EQ(a.assigned_units, 16);
}

TEST(AllocatorTest, WaterFillingGivesACappedTenantsExcessToTheOthers) {
  Allocation a = MustAllocate(
      {Busy(1, Policy(2, 1, std::nullopt, 0.2)), Busy(2, Policy(2, 1)), Busy(3, Policy(2, 3))});
  EXPECT_NEAR(Target(a, 1), 0.2, kTol);
  EXPECT_NEAR(Target(a, 2), 0.2, kTol);  // 0.8 split 1:3
  EXPECT_NEAR(Target(a, 3), 0.6, kTol);
  EXPECT_NEAR(a.idle_share, 0.0, kTol);
}

TEST(AllocatorTest, FloorsAreHonouredFirst) {
  Allocation a = MustAllocate({Busy(1, Policy(0)), Busy(2, Policy(4, 1, 0.25))});
  EXPECT_NEAR(Target(a, 2), 0.25, kTol);
  EXPECT_NEAR(Target(a, 1), 0.75, kTol);
  // A floor of 0.25 is 4.125 units: rounded up to 5 (40 of 132 SMs).
  EXPECT_EQ(Units(a, 2), 5);
  EXPECT_EQ(Units(a, 1), 11);
  EXPECT_GE(a.Find(2)->sms, 0.25 * 132);

  // A floor within a level: the weights split the rest, the floor holds.
  a = MustAllocate({Busy(1, Policy(2, 1, 0.7)), Busy(2, Policy(2, 1)), Busy(3, Policy(2, 1))});
  EXPECT_NEAR(Target(a, 1), 0.7, kTol);
  EXPECT_NEAR(Target(a, 2), 0.15, kTol);
  EXPECT_NEAR(Target(a, 3), 0.15, kTol);
}

TEST(AllocatorTest, FloorsHeldOnlyWithWork) {
  Allocation a = MustAllocate({Busy(1, Policy(2)), Idle(2, Policy(0, 1, 0.5))});
  EXPECT_NEAR(Target(a, 1), 1.0, kTol);
  EXPECT_EQ(Target(a, 2), 0.0);
  EXPECT_EQ(a.Find(2)->floor_share, 0.0);
  EXPECT_EQ(Units(a, 2), 0);
}

TEST(AllocatorTest, OversubscribedFloorsAreScaledAndReported) {
  Allocation a =
      MustAllocate({Busy(1, Policy(4, 1, 0.6)), Busy(2, Policy(4, 1, 0.8)), Busy(3, Policy(0))});
  EXPECT_TRUE(a.floors_scaled);
  EXPECT_NEAR(a.floor_scale, 1 / 1.4, kTol);
  EXPECT_NEAR(Target(a, 1), 0.6 / 1.4, kTol);
  EXPECT_NEAR(Target(a, 2), 0.8 / 1.4, kTol);
  EXPECT_NEAR(Target(a, 3), 0.0, kTol);  // priority 0, but no room beyond floors
  EXPECT_LE(a.assigned_units, 16);

  a = MustAllocate({Busy(1, Policy(4, 1, 0.6)), Idle(2, Policy(4, 1, 0.8))});
  EXPECT_FALSE(a.floors_scaled);
}

TEST(AllocatorTest, CapsHoldEvenWhenComputeStaysIdle) {
  Allocation a = MustAllocate({Busy(1, Policy(0, 1, std::nullopt, 0.3))});
  EXPECT_NEAR(Target(a, 1), 0.3, kTol);
  EXPECT_NEAR(a.idle_share, 0.7, kTol);
  // 0.3 of 132 SMs is 39.6: 4 units (32 SMs), never 5 (40).
  EXPECT_EQ(Units(a, 1), 4);
  EXPECT_LE(a.Find(1)->sms, 0.3 * 132);

  a = MustAllocate(
      {Busy(1, Policy(2, 1, std::nullopt, 0.3)), Busy(2, Policy(2, 1, std::nullopt, 0.3))});
  EXPECT_NEAR(Target(a, 1) + Target(a, 2), 0.6, kTol);
  EXPECT_NEAR(a.idle_share, 0.4, kTol);
}

TEST(AllocatorTest, WorkConservingWhenAlone) {
  Allocation a = MustAllocate({Busy(1, Policy(4)), Idle(2, Policy(0))});
  EXPECT_NEAR(Target(a, 1), 1.0, kTol);
  EXPECT_EQ(Units(a, 1), 16);
  EXPECT_EQ(a.Find(1)->sms, 128);  // 132 SMs hold 16 whole units of 8
  EXPECT_NEAR(a.idle_share, 0.0, kTol);

  // A small usable estimate does not leave compute idle when nobody else wants it.
  a = MustAllocate({Busy(1, Policy(4), 0.2)});
  EXPECT_NEAR(Target(a, 1), 1.0, kTol);
  a = MustAllocate({Busy(1, Policy(0), 0.3), Busy(2, Policy(1), 0.3)});
  EXPECT_NEAR(Target(a, 1) + Target(a, 2), 1.0, kTol);
  EXPECT_GE(Target(a, 1), 0.3 - kTol);
  EXPECT_GE(Target(a, 2), 0.3 - kTol);

  a = MustAllocate({Idle(1, Policy(0)), Idle(2, Policy(1))});
  EXPECT_NEAR(a.idle_share, 1.0, kTol);
  EXPECT_EQ(a.assigned_units, 0);
}

TEST(AllocatorTest, RoundsToEightSmUnitsOf132) {
  // Three equal tenants: 5.5 units each, 16 whole units: 6 + 5 + 5.
  Allocation a = MustAllocate({Busy(1, Policy(2)), Busy(2, Policy(2)), Busy(3, Policy(2))});
  EXPECT_EQ(Units(a, 1) + Units(a, 2) + Units(a, 3), 16);
  EXPECT_EQ(Units(a, 1), 6);  // equal remainders: the lowest id
  EXPECT_EQ(Units(a, 2), 5);
  EXPECT_EQ(a.Find(2)->sms, 40);
  EXPECT_NEAR(a.Find(2)->partition_share, 40.0 / 132, kTol);

  // A tenant with a small nonzero target still gets a unit (from a tenant of
  // equal priority above its ideal).
  a = MustAllocate({Busy(1, Policy(0, 1)), Busy(2, Policy(0, 0.02))});
  EXPECT_GT(Target(a, 2), 0.0);
  EXPECT_EQ(Units(a, 2), 1);
  EXPECT_EQ(Units(a, 1), 15);

  // A cap below one unit still gets one; the controller paces it.
  a = MustAllocate({Busy(1, Policy(2, 1, std::nullopt, 0.05))});
  EXPECT_NEAR(Target(a, 1), 0.05, kTol);
  EXPECT_EQ(Units(a, 1), 1);

  // Another geometry: 128 SMs in units of 16.
  a = MustAllocate({Busy(1, Policy(2, 1)), Busy(2, Policy(2, 3))}, PartitionGeometry{128, 16});
  EXPECT_EQ(Units(a, 1), 2);
  EXPECT_EQ(Units(a, 2), 6);
}

// Invariants over many random mixes of tenants.
TEST(AllocatorTest, InvariantsHoldForRandomTenants) {
  std::mt19937 rng(12345);
  std::uniform_int_distribution<int> count(1, 8), prio(0, 4), coin(0, 3);
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  const PartitionGeometry g = PartitionGeometry::H100();
  const double units_per_share = 132.0 / 8;
  for (int round = 0; round < 2000; ++round) {
    std::vector<TenantDemand> d;
    const int n = count(rng);
    for (int i = 0; i < n; ++i) {
      TenantPolicy p = Policy(prio(rng), 0.1 + 4 * unit(rng));
      if (coin(rng) == 0) p.floor_share = 0.3 * unit(rng);
      if (coin(rng) == 0) p.cap_share = std::max(p.floor(), unit(rng));
      std::optional<double> usable;
      if (coin(rng) == 0) usable = unit(rng);
      d.push_back(TenantDemand{static_cast<TenantId>(i + 1), p, coin(rng) != 0, usable});
    }
    const Allocation a = MustAllocate(d);
    SCOPED_TRACE(absl::StrCat("round ", round));
    double sum = 0, floor_units_needed = 0;
    bool any_uncapped = false;
    int units = 0;
    for (size_t i = 0; i < d.size(); ++i) {
      const TenantTarget& t = a.tenants[i];
      ASSERT_EQ(t.id, d[i].id);
      sum += t.target_share;
      units += t.units;
      EXPECT_LE(t.target_share, d[i].policy.cap() + kTol);
      if (!d[i].has_work) {
        EXPECT_EQ(t.target_share, 0.0);
        EXPECT_EQ(t.units, 0);
        continue;
      }
      any_uncapped |= !d[i].policy.cap_share.has_value();
      EXPECT_GE(t.target_share, d[i].policy.floor() * a.floor_scale - kTol);
      const int cap_units =
          static_cast<int>(std::floor(d[i].policy.cap() * units_per_share + 1e-6));
      if (cap_units >= 1) {
        EXPECT_LE(t.units, cap_units);
      }
      EXPECT_EQ(t.sms, t.units * 8);
      floor_units_needed += std::ceil(t.floor_share * units_per_share - 1e-6);
    }
    EXPECT_LE(sum, 1.0 + kTol);
    EXPECT_EQ(units, a.assigned_units);
    EXPECT_LE(units, g.units());
    if (any_uncapped) {
      EXPECT_NEAR(sum, 1.0, 1e-6);  // work-conserving
    }
    if (floor_units_needed <= g.units()) {
      for (size_t i = 0; i < d.size(); ++i) {
        const TenantTarget& t = a.tenants[i];
        const int cap_units =
            std::max(1, static_cast<int>(std::floor(d[i].policy.cap() * units_per_share + 1e-6)));
        if (d[i].has_work) {
          EXPECT_GE(t.units,
                    std::min(cap_units,
                             static_cast<int>(std::ceil(t.floor_share * units_per_share - 1e-6))));
        }
      }
    }
  }
}

TEST(AllocatorTest, RejectsBadInput) {
  EXPECT_EQ(
      Allocate({Busy(1, Policy(0)), Busy(1, Policy(1))}, PartitionGeometry::H100()).status().code(),
      absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Allocate({Busy(1, Policy(0, 0))}, PartitionGeometry::H100()).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Allocate({Busy(1, Policy(0), 1.5)}, PartitionGeometry::H100()).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Allocate({}, PartitionGeometry{0, 8}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Allocate({}, PartitionGeometry{8, 16}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace wooly::scheduler
