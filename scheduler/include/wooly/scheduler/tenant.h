// Tenants and their scheduling policy.
//
// A tenant is one client of woolyd. Its policy says how it competes for the
// GPU's SMs: a priority (0 highest .. 4 lowest; strict between levels), a
// weight (splits compute between tenants of equal priority), an optional floor
// (a share of the SMs it keeps whenever it has work) and an optional cap (a
// share it never exceeds, even when the rest of the GPU is idle).
//
// A policy is assembled from layers, each saying only what it sets
// (PolicyOverride). From lowest to highest precedence:
//   built-in defaults < server defaults (woolyd's [defaults]) < client
//   environment < server policy file < runtime (wooly-cli).
// ResolveTenantPolicy() merges them and records where each value came from.
//
// Shares are written as a percentage unless they are a decimal fraction no
// greater than 1: "30", "30%" and "12.5" are percentages, "0.3" and "1.0" are
// fractions; "1" means 1 %. A floor or cap may also be "none". See
// docs/scheduler.md.
//
// Thread safety: plain values and pure functions; PolicyFile is immutable
// after parsing and may be read from any thread.
#ifndef WOOLY_SCHEDULER_TENANT_H_
#define WOOLY_SCHEDULER_TENANT_H_

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "wooly/scheduler/stream_priority.h"

namespace wooly::scheduler {

// Identifies a tenant within one woolyd (the server's client id).
using TenantId = uint64_t;

// Client environment variables. WOOLY_PRIORITY is the same name as
// wooly::wire::kEnvPriority; it is repeated here so scheduler/ needs no proto/.
inline constexpr char kEnvPriority[] = "WOOLY_PRIORITY";  // 0 (highest) .. 4
inline constexpr char kEnvWeight[] = "WOOLY_WEIGHT";      // > 0, default 1
inline constexpr char kEnvSmFloor[] = "WOOLY_SM_FLOOR";   // share of SMs, or none
inline constexpr char kEnvSmCap[] = "WOOLY_SM_CAP";       // share of SMs, or none

inline constexpr double kDefaultWeight = 1.0;
// Bounds weights so sums and ratios stay well inside double precision.
inline constexpr double kMinWeight = 1e-6;
inline constexpr double kMaxWeight = 1e6;

// A tenant's effective policy. Shares are fractions of the GPU's SMs.
struct TenantPolicy {
  int priority = kDefaultClientPriority;  // kHighestClientPriority..kLowestClientPriority
  double weight = kDefaultWeight;         // [kMinWeight, kMaxWeight]
  std::optional<double> floor_share;      // [0, 1]; nullopt (or 0): no floor
  std::optional<double> cap_share;        // [0, 1]; nullopt (or 1): no cap; 0 stops it

  double floor() const { return floor_share.value_or(0.0); }
  double cap() const { return cap_share.value_or(1.0); }

  friend bool operator==(const TenantPolicy&, const TenantPolicy&) = default;
};

// OK when every field is in range and floor <= cap.
absl::Status ValidateTenantPolicy(const TenantPolicy& policy);

// What one layer sets. A floor of 0 and a cap of 1 are explicit settings
// meaning "no floor" / "no cap": they override a lower layer's value.
struct PolicyOverride {
  std::optional<int> priority;
  std::optional<double> weight;
  std::optional<double> floor_share;
  std::optional<double> cap_share;

  bool empty() const { return !priority && !weight && !floor_share && !cap_share; }

  // Applies `over` on top of this object, key by key. If the result has its
  // floor above its cap, the value `over` set wins and the other is moved to
  // it (a later cap of 20 % lowers an earlier floor of 30 % to 20 %).
  void MergeFrom(const PolicyOverride& over);

  friend bool operator==(const PolicyOverride&, const PolicyOverride&) = default;
};

// Where a resolved value came from, lowest precedence first.
enum class PolicySource { kDefault, kServerDefault, kClientEnv, kPolicyFile, kRuntime };
absl::string_view PolicySourceName(PolicySource source);

struct ResolvedPolicy {
  TenantPolicy policy;
  PolicySource priority_source = PolicySource::kDefault;
  PolicySource weight_source = PolicySource::kDefault;
  PolicySource floor_source = PolicySource::kDefault;
  PolicySource cap_source = PolicySource::kDefault;
};

// Merges the layers: runtime > policy file > client environment > defaults.
// Each layer must be valid on its own (as the parsers below guarantee); a
// floor/cap conflict between layers is settled in favour of the higher layer
// (see MergeFrom). The result always passes ValidateTenantPolicy. A floor of 0
// and a cap of 1 come out as nullopt.
ResolvedPolicy ResolveTenantPolicy(const PolicyOverride& client_env,
                                   const PolicyOverride& policy_file,
                                   const PolicyOverride& runtime);
// The same with the server's defaults as the lowest layer (below the client
// environment): what a client gets for the values it does not set itself.
ResolvedPolicy ResolveTenantPolicy(const PolicyOverride& server_defaults,
                                   const PolicyOverride& client_env,
                                   const PolicyOverride& policy_file,
                                   const PolicyOverride& runtime);

// An environment-like map, e.g. the variables a client sends at hello.
using EnvMap = std::map<std::string, std::string, std::less<>>;

// The client layer from WOOLY_PRIORITY, WOOLY_WEIGHT, WOOLY_SM_FLOOR and
// WOOLY_SM_CAP. Unset or empty variables are not set; other variables are
// ignored. Errors are InvalidArgument and name the variable.
absl::StatusOr<PolicyOverride> ParseClientEnv(const EnvMap& env);

// ParseClientEnv then ResolveTenantPolicy with no other layers.
absl::StatusOr<TenantPolicy> TenantPolicyFromEnv(const EnvMap& env);

// A share as written in the environment, a policy file or on wooly-cli's
// command line (see the header comment), as a fraction in [0, 1]. Does not
// accept "none". The error does not name a key: callers add it.
absl::StatusOr<double> ParseShare(absl::string_view text);

// Space-separated `key=value` assignments, keys priority, weight, floor and
// cap: the runtime layer as wooly-cli sends it ("priority=0 cap=30%"), and the
// settings part of a policy-file line. Errors name the key.
absl::StatusOr<PolicyOverride> ParseAssignments(absl::string_view text);

// Shell-style name match: `*` matches any run of characters, `?` any one
// character; everything else matches itself.
bool GlobMatch(absl::string_view pattern, absl::string_view name);

// One line of a policy file.
struct PolicyRule {
  int line = 0;         // 1-based line number in the file
  std::string pattern;  // glob over the client name
  PolicyOverride settings;
};

// The server's policy file: per client-name pattern overrides.
//
//   # comment
//   <name-glob> key=value [key=value ...]
//
// Keys: priority, weight, floor, cap. Every line whose pattern matches a
// client's name applies, in file order, so later lines refine earlier ones
// ("* cap=50" then "decode-* cap=none priority=0").
class PolicyFile {
 public:
  PolicyFile() = default;

  // Errors are InvalidArgument and name `origin`, the line and the key.
  static absl::StatusOr<PolicyFile> Parse(absl::string_view text,
                                          absl::string_view origin = "policy file");
  // Reads and parses a file; `origin` in errors is the path.
  static absl::StatusOr<PolicyFile> Load(const std::string& path);
  // Reads a policy file's text: NotFound when it does not exist,
  // FailedPrecondition when it cannot be read; messages name the path.
  static absl::StatusOr<std::string> ReadText(const std::string& path);

  // The policy-file layer for a client with this name.
  PolicyOverride OverrideFor(absl::string_view client_name) const;

  const std::vector<PolicyRule>& rules() const { return rules_; }

 private:
  std::vector<PolicyRule> rules_;
};

}  // namespace wooly::scheduler

#endif  // WOOLY_SCHEDULER_TENANT_H_
