// Tenants: who the clients are, what policy each runs under, and what they
// may and do hold.
//
// A client is one connection (one process). A *tenant* is a group of
// clients that belong together, for memory limits and for the NVML view: a
// container or pod. Its key is, first found:
//   WOOLY_TENANT from the client's environment        "name"
//   the pod from WOOLY_POD_NAME / POD_NAME (+ namespace) "namespace/pod"
//   the client's pid namespace (unix socket peers)    "pidns:4026532210"
//   the client alone                                  "client-7"
// so processes of one container share a tenant without configuration.
//
// Scheduling policy (priority, weight, SM floor and cap) is per client,
// resolved from layers (scheduler/tenant.h): the server's defaults (woolyd's
// [defaults], TenantDefaults), the client's environment, the server's policy
// file, and runtime overrides from wooly-cli. The server's defaults also give
// a memory limit, noswap and dedup to clients that send none.
//
// Memory limit: per tenant, from WOOLY_MEMORY_LIMIT (the smallest any member
// declared). Allocations beyond it fail with CUDA_ERROR_OUT_OF_MEMORY, and
// cuMemGetInfo answers the limit as total and the tenant's headroom as free.
// A client that declares WOOLY_MEMORY_REQUIRED is refused at Join
// (ResourceExhausted) when its tenant's limit, or the device's memory when
// the tenant has none, is smaller.
//
// Overcommit override: per client, the percentage that replaces the
// server's ([memory] overcommit_percent) when admitting that client's
// allocations (memory::Overcommit: the node's admitted total, all clients
// together, may reach physical * (100 + percent) / 100 with this one's
// allocation). Layered like the scheduling policy: [defaults] < the
// client's WOOLY_OVERCOMMIT_PERCENT < the policy file < wooly-cli. The
// client's own value can only make it stricter: it is capped at the
// server's percentage (SetOvercommitCeiling); operators' layers may go
// higher.
//
// Thread safety: every method may be called from any thread.
#ifndef WOOLY_SERVER_TENANTS_H_
#define WOOLY_SERVER_TENANTS_H_

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "wooly/scheduler/tenant.h"

namespace wooly::server {

// Client settings (Hello's key/value block; the names are the environment
// variables the client library reads).
inline constexpr char kSettingTenant[] = "WOOLY_TENANT";
inline constexpr char kSettingMemoryLimit[] = "WOOLY_MEMORY_LIMIT";
inline constexpr char kSettingNoSwap[] = "WOOLY_NOSWAP";
inline constexpr char kSettingDedup[] = "WOOLY_DEDUP";
inline constexpr char kSettingMemoryRequired[] = "WOOLY_MEMORY_REQUIRED";
inline constexpr char kSettingRole[] = "role";  // "observer": NVML view only
inline constexpr char kSettingOvercommitPercent[] = "WOOLY_OVERCOMMIT_PERCENT";
// The key in the policy file, wooly-cli policy and [defaults].
inline constexpr char kKeyOvercommitPercent[] = "overcommit_percent";
inline constexpr uint32_t kMaxOvercommitPercent = 1000;

// An overcommit percentage: an integer 0..kMaxOvercommitPercent, an
// optional trailing '%'. The error does not name a key: callers add it.
absl::StatusOr<uint32_t> ParseOvercommitPercent(absl::string_view text);

// "20GiB", "512M", "1.5G", "1073741824": bytes, with binary suffixes K/KiB,
// M/MiB, G/GiB, T/TiB (case-insensitive). InvalidArgument otherwise.
absl::StatusOr<uint64_t> ParseByteSize(absl::string_view text);

// What a client said about itself at Hello.
struct ClientSettings {
  std::string tenant;  // WOOLY_TENANT; empty: derived (see the header comment)
  bool observer = false;
  scheduler::PolicyOverride env_policy;  // WOOLY_PRIORITY/WEIGHT/SM_FLOOR/SM_CAP
  std::optional<uint64_t> memory_limit;  // WOOLY_MEMORY_LIMIT
  bool noswap = false;                   // recorded for the memory manager
  bool dedup = false;
  // Whether the client sent WOOLY_NOSWAP / WOOLY_DEDUP at all (a server
  // default applies only when it did not).
  bool noswap_set = false;
  bool dedup_set = false;
  // WOOLY_MEMORY_REQUIRED: the least memory the client needs to run.
  std::optional<uint64_t> memory_required;
  // WOOLY_OVERCOMMIT_PERCENT (see the header comment).
  std::optional<uint32_t> overcommit_percent;
};

// The server's defaults for clients that do not set a value themselves
// (woolyd's [defaults] table; docs/configuration.md). The policy is the
// lowest policy layer; the others apply when the client sent no setting.
struct TenantDefaults {
  scheduler::PolicyOverride policy;
  std::optional<uint64_t> memory_limit;
  std::optional<bool> noswap;
  std::optional<bool> dedup;
  std::optional<uint32_t> overcommit_percent;

  friend bool operator==(const TenantDefaults&, const TenantDefaults&) = default;
};

// The runtime layer as wooly-cli sends it, and one policy-file line's
// settings: the scheduling keys plus the server's memory keys.
struct ServerPolicyOverride {
  scheduler::PolicyOverride policy;
  std::optional<uint32_t> overcommit_percent;
};

// scheduler::ParseAssignments plus `overcommit_percent=N`. Errors name the
// key.
absl::StatusOr<ServerPolicyOverride> ParseServerAssignments(absl::string_view text);

// The server's policy file (scheduler::PolicyFile's format) with the
// memory key `overcommit_percent` allowed on any line. Every matching line
// applies in file order, so the last matching line that sets it wins.
class ServerPolicyFile {
 public:
  ServerPolicyFile() = default;
  // Errors are InvalidArgument and name `origin`, the line and the key.
  static absl::StatusOr<ServerPolicyFile> Parse(absl::string_view text,
                                                absl::string_view origin = "policy file");
  static absl::StatusOr<ServerPolicyFile> Load(const std::string& path);
  // A file with scheduling keys only.
  explicit ServerPolicyFile(scheduler::PolicyFile scheduling)
      : scheduling_(std::move(scheduling)) {}

  const scheduler::PolicyFile& scheduling() const { return scheduling_; }
  std::optional<uint32_t> OvercommitFor(absl::string_view client_name) const;
  size_t rules() const { return scheduling_.rules().size() + overcommit_.size(); }

 private:
  struct OvercommitRule {
    std::string pattern;
    uint32_t percent = 0;
  };
  scheduler::PolicyFile scheduling_;
  std::vector<OvercommitRule> overcommit_;
};

// Parses Hello's settings. Unknown keys are ignored (newer clients);
// InvalidArgument naming the variable for a bad value.
absl::StatusOr<ClientSettings> ParseClientSettings(const scheduler::EnvMap& settings);

// Who a client is, for deriving its tenant key.
struct ClientIdentity {
  uint64_t client_id = 0;
  std::string name;
  uint32_t pid = 0;  // as the client reported it
  std::string pod;
  std::string pod_namespace;
  // The peer's pid namespace inode (unix peers whose /proc entry woolyd can
  // read), or 0.
  uint64_t pid_namespace = 0;
};

// The tenant key for a client (see the header comment).
std::string TenantKeyFor(const ClientIdentity& who, const ClientSettings& settings);

// The pid namespace inode of a local process, or 0 when unknown.
uint64_t PidNamespaceOf(int pid);

class TenantRegistry;

// One client's place in the registry, held by its session. Leaves the
// registry when destroyed.
class TenantMembership {
 public:
  ~TenantMembership();
  TenantMembership(const TenantMembership&) = delete;
  TenantMembership& operator=(const TenantMembership&) = delete;

  uint64_t client_id() const { return client_id_; }
  const std::string& tenant() const { return tenant_; }
  bool observer() const { return observer_; }
  // The client's memory-manager options with the server's defaults applied
  // (fixed at Join).
  bool noswap() const { return noswap_; }
  bool dedup() const { return dedup_; }
  // The client's overcommit override now (nullopt: the server's percentage).
  std::optional<uint32_t> overcommit_percent() const;

  // Charges `bytes` of device memory to the tenant before allocating; false
  // (nothing charged) when that would exceed the tenant's limit.
  bool ReserveMemory(uint64_t bytes);
  // Returns bytes charged by ReserveMemory (after a free, or a failed
  // allocation).
  void ReleaseMemory(uint64_t bytes);
  uint64_t charged_bytes() const { return charged_.load(std::memory_order_relaxed); }

  // The tenant's limit (0: none) and what all its members hold.
  uint64_t tenant_limit() const;
  uint64_t tenant_used() const;

  // The client's effective scheduling policy now.
  scheduler::ResolvedPolicy policy() const;

 private:
  friend class TenantRegistry;
  struct TenantState;
  TenantMembership(TenantRegistry* registry, uint64_t client_id, std::string tenant, bool observer,
                   bool noswap, bool dedup, std::shared_ptr<TenantState> state)
      : registry_(registry),
        client_id_(client_id),
        tenant_(std::move(tenant)),
        observer_(observer),
        noswap_(noswap),
        dedup_(dedup),
        state_(std::move(state)) {}

  TenantRegistry* const registry_;
  const uint64_t client_id_;
  const std::string tenant_;
  const bool observer_;
  const bool noswap_;
  const bool dedup_;
  const std::shared_ptr<TenantState> state_;
  std::atomic<uint64_t> charged_{0};
};

// A tenant as the NVML view and status report it.
struct TenantProcess {
  uint64_t client_id = 0;
  uint32_t pid = 0;
  std::string name;
  uint64_t bytes = 0;
};
struct TenantSummary {
  std::string tenant;
  uint64_t memory_limit = 0;  // 0: none
  uint64_t memory_used = 0;
  std::vector<TenantProcess> processes;  // non-observer members, by client id
};

// A client's row for status, the scheduler and metrics.
struct TenantMemberInfo {
  uint64_t client_id = 0;
  std::string name;
  std::string tenant;
  bool observer = false;
  scheduler::ResolvedPolicy policy;
  scheduler::PolicyOverride runtime;  // what wooly-cli set, if anything
  bool noswap = false;
  bool dedup = false;
  uint64_t memory_limit = 0;  // the tenant's
  // The overcommit override in effect (nullopt: the server's percentage),
  // where it came from, and what wooly-cli set.
  std::optional<uint32_t> overcommit_percent;
  scheduler::PolicySource overcommit_source = scheduler::PolicySource::kDefault;
  std::optional<uint32_t> runtime_overcommit_percent;
};

class TenantRegistry {
 public:
  TenantRegistry() = default;
  TenantRegistry(const TenantRegistry&) = delete;
  TenantRegistry& operator=(const TenantRegistry&) = delete;

  // Adds a client. Its settings get the server's defaults where it sent
  // none; its policy is resolved now from the defaults, its settings, the
  // policy file and any runtime override. A client id joins at most once
  // (FailedPrecondition otherwise). ResourceExhausted, naming
  // WOOLY_MEMORY_REQUIRED, when the client requires more memory than its
  // tenant's limit (with it as a member) or, without a limit, than the
  // device's memory (SetDeviceMemory; unchecked while that is 0); the server
  // refuses such a client with CUDA_ERROR_OUT_OF_MEMORY.
  absl::StatusOr<std::unique_ptr<TenantMembership>> Join(const ClientIdentity& who,
                                                         const ClientSettings& settings);

  // Replaces the server's defaults. The policy part re-resolves every
  // client's policy now; memory limit, noswap and dedup defaults apply to
  // clients that join afterwards.
  void SetDefaults(TenantDefaults defaults);
  TenantDefaults defaults() const;
  // The device's memory in bytes, for WOOLY_MEMORY_REQUIRED checks of
  // tenants without a limit; 0 (the initial value): not checked.
  void SetDeviceMemory(uint64_t bytes);

  // Replaces the policy file layer for every client, present and future.
  // The caller pushes changed overcommit overrides to the memory manager.
  void SetPolicyFile(scheduler::PolicyFile file);
  void SetServerPolicyFile(ServerPolicyFile file);
  // The most a client's own WOOLY_OVERCOMMIT_PERCENT may ask for (the
  // server's percentage); nullopt (the initial value): uncapped.
  void SetOvercommitCeiling(std::optional<uint32_t> percent);
  // The runtime layer (wooly-cli): merged on top of what the client already
  // has from wooly-cli; `reset` drops it first. NotFound for an unknown
  // client, InvalidArgument when the result is inconsistent (never happens
  // with MergeFrom, kept for safety).
  absl::Status SetRuntimePolicy(uint64_t client_id, const scheduler::PolicyOverride& over,
                                bool reset = false);
  // The same with the memory keys; `reset` drops the runtime overcommit
  // override too.
  absl::Status SetRuntimeOverride(uint64_t client_id, const ServerPolicyOverride& over,
                                  bool reset = false);

  std::optional<TenantMemberInfo> Member(uint64_t client_id) const;
  std::vector<TenantMemberInfo> Members() const;  // by client id
  // The tenant's summary: limit, use, and each member's bytes. Empty
  // processes and zero use for an unknown tenant.
  TenantSummary Summary(const std::string& tenant) const;

  // Bumped whenever any client's policy may have changed (join, leave,
  // policy file, runtime override), so the scheduler can notice cheaply.
  uint64_t policy_generation() const { return generation_.load(std::memory_order_acquire); }

 private:
  friend class TenantMembership;
  struct Entry {
    ClientIdentity who;
    ClientSettings settings;
    std::string tenant;
    scheduler::PolicyOverride runtime;
    scheduler::ResolvedPolicy policy;
    std::optional<uint32_t> runtime_overcommit;
    std::optional<uint32_t> overcommit;  // resolved
    scheduler::PolicySource overcommit_source = scheduler::PolicySource::kDefault;
    TenantMembership* membership = nullptr;  // owned by the session
  };
  void Leave(uint64_t client_id);
  void ResolveLocked(Entry& e) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Recomputes a tenant's limit from its members.
  void UpdateLimitLocked(const std::string& tenant) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  mutable absl::Mutex mu_;
  TenantDefaults defaults_ ABSL_GUARDED_BY(mu_);
  uint64_t device_memory_ ABSL_GUARDED_BY(mu_) = 0;
  ServerPolicyFile policy_file_ ABSL_GUARDED_BY(mu_);
  std::optional<uint32_t> overcommit_ceiling_ ABSL_GUARDED_BY(mu_);
  std::map<uint64_t, Entry> entries_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::shared_ptr<TenantMembership::TenantState>> tenants_
      ABSL_GUARDED_BY(mu_);
  std::atomic<uint64_t> generation_{1};
};

}  // namespace wooly::server

#endif  // WOOLY_SERVER_TENANTS_H_
