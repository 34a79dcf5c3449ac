#include "wooly/server/tenants.h"

#include <sys/stat.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace wooly::server {

struct TenantMembership::TenantState {
  std::atomic<uint64_t> used{0};
  std::atomic<uint64_t> limit{0};  // 0: none
  int members = 0;                 // under TenantRegistry::mu_
};

absl::StatusOr<uint64_t> ParseByteSize(absl::string_view text) {
  const std::string original(text);
  auto bad = [&]() {
    return absl::InvalidArgumentError(
        absl::StrCat("'", original,
                     "' is not a size (want bytes, or a number with K/KiB, M/MiB, G/GiB, T/TiB)"));
  };
  text = absl::StripAsciiWhitespace(text);
  size_t i = 0;
  while (i < text.size() && (absl::ascii_isdigit(text[i]) || text[i] == '.')) ++i;
  if (i == 0) return bad();
  double number = 0;
  if (!absl::SimpleAtod(text.substr(0, i), &number) || !(number >= 0)) return bad();
  std::string suffix = absl::AsciiStrToLower(absl::StripAsciiWhitespace(text.substr(i)));
  if (!suffix.empty() && suffix.back() == 'b') suffix.pop_back();  // "GiB", "GB"
  if (!suffix.empty() && suffix.back() == 'i') suffix.pop_back();
  double mult = 1;
  if (suffix.empty()) {
    mult = 1;
  } else if (suffix == "k") {
    mult = 1ull << 10;
  } else if (suffix == "m") {
    mult = 1ull << 20;
  } else if (suffix == "g") {
    mult = 1ull << 30;
  } else if (suffix == "t") {
    mult = 1ull << 40;
  } else {
    return bad();
  }
  const double bytes = number * mult;
  if (bytes >= 18446744073709551615.0) return bad();
  if (mult == 1 && std::floor(number) != number) return bad();
  return static_cast<uint64_t>(bytes);
}

absl::StatusOr<uint32_t> ParseOvercommitPercent(absl::string_view text) {
  absl::string_view v = absl::StripAsciiWhitespace(text);
  absl::ConsumeSuffix(&v, "%");
  uint32_t percent = 0;
  if (v.empty() || !absl::ascii_isdigit(static_cast<unsigned char>(v[0])) ||
      !absl::SimpleAtoi(v, &percent) || percent > kMaxOvercommitPercent) {
    return absl::InvalidArgumentError(
        absl::StrCat("'", text, "' is not an integer percentage 0..", kMaxOvercommitPercent));
  }
  return percent;
}

absl::StatusOr<ServerPolicyOverride> ParseServerAssignments(absl::string_view text) {
  ServerPolicyOverride out;
  std::string rest;
  for (absl::string_view token : absl::StrSplit(text, absl::ByAnyChar(" \t"), absl::SkipEmpty())) {
    absl::string_view value = token;
    if (!absl::ConsumePrefix(&value, absl::StrCat(kKeyOvercommitPercent, "="))) {
      absl::StrAppend(&rest, rest.empty() ? "" : " ", token);
      continue;
    }
    if (out.overcommit_percent) {
      return absl::InvalidArgumentError(
          absl::StrCat("key '", kKeyOvercommitPercent, "': given twice"));
    }
    absl::StatusOr<uint32_t> percent = ParseOvercommitPercent(value);
    if (!percent.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("key '", kKeyOvercommitPercent, "': ", percent.status().message()));
    }
    out.overcommit_percent = *percent;
  }
  absl::StatusOr<scheduler::PolicyOverride> policy = scheduler::ParseAssignments(rest);
  if (!policy.ok()) return policy.status();
  out.policy = *policy;
  return out;
}

absl::StatusOr<ServerPolicyFile> ServerPolicyFile::Parse(absl::string_view text,
                                                         absl::string_view origin) {
  // The overcommit key is taken off each line here; what is left goes to
  // scheduler::PolicyFile line for line (a line left with no scheduling key
  // becomes blank), so its errors keep their line numbers.
  ServerPolicyFile file;
  std::string scheduling;
  int line_no = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_no;
    absl::string_view body = line;
    if (const size_t hash = body.find('#'); hash != absl::string_view::npos) {
      body = body.substr(0, hash);
    }
    body = absl::StripAsciiWhitespace(body);
    std::vector<absl::string_view> tokens =
        absl::StrSplit(body, absl::ByAnyChar(" \t"), absl::SkipEmpty());
    std::string kept;
    std::optional<uint32_t> percent;
    for (size_t i = 0; i < tokens.size(); ++i) {
      absl::string_view value = tokens[i];
      if (i == 0 || !absl::ConsumePrefix(&value, absl::StrCat(kKeyOvercommitPercent, "="))) {
        absl::StrAppend(&kept, kept.empty() ? "" : " ", tokens[i]);
        continue;
      }
      auto line_error = [&](absl::string_view what) {
        return absl::InvalidArgumentError(absl::StrFormat("%s line %d: key '%s': %s", origin,
                                                          line_no, kKeyOvercommitPercent, what));
      };
      if (percent) return line_error("given twice");
      absl::StatusOr<uint32_t> p = ParseOvercommitPercent(value);
      if (!p.ok()) return line_error(p.status().message());
      percent = *p;
    }
    if (percent) {
      file.overcommit_.push_back(OvercommitRule{std::string(tokens[0]), *percent});
      // Only the pattern left: nothing for the scheduler on this line.
      if (tokens.size() == 2 || kept.find_first_of(" \t") == std::string::npos) kept.clear();
    } else {
      kept = std::string(line);
    }
    absl::StrAppend(&scheduling, kept, "\n");
  }
  absl::StatusOr<scheduler::PolicyFile> parsed = scheduler::PolicyFile::Parse(scheduling, origin);
  if (!parsed.ok()) return parsed.status();
  file.scheduling_ = *std::move(parsed);
  return file;
}

absl::StatusOr<ServerPolicyFile> ServerPolicyFile::Load(const std::string& path) {
  absl::StatusOr<std::string> text = scheduler::PolicyFile::ReadText(path);
  if (!text.ok()) return text.status();
  return Parse(*text, path);
}

std::optional<uint32_t> ServerPolicyFile::OvercommitFor(absl::string_view client_name) const {
  std::optional<uint32_t> out;
  for (const OvercommitRule& rule : overcommit_) {
    if (scheduler::GlobMatch(rule.pattern, client_name)) out = rule.percent;
  }
  return out;
}

namespace {

absl::StatusOr<bool> ParseFlag(const std::string& key, const std::string& value) {
  const std::string v = absl::AsciiStrToLower(absl::StripAsciiWhitespace(value));
  if (v.empty() || v == "0" || v == "false" || v == "no" || v == "off") return false;
  if (v == "1" || v == "true" || v == "yes" || v == "on") return true;
  return absl::InvalidArgumentError(
      absl::StrCat(key, "='", value, "': want 1/0, true/false, yes/no or on/off"));
}

}  // namespace

absl::StatusOr<ClientSettings> ParseClientSettings(const scheduler::EnvMap& settings) {
  ClientSettings out;
  absl::StatusOr<scheduler::PolicyOverride> policy = scheduler::ParseClientEnv(settings);
  if (!policy.ok()) return policy.status();
  out.env_policy = *policy;
  for (const auto& [key, value] : settings) {
    if (key == kSettingTenant) {
      out.tenant = std::string(absl::StripAsciiWhitespace(value));
      if (out.tenant.size() > 253) {
        return absl::InvalidArgumentError(
            absl::StrCat(kSettingTenant, " is longer than 253 characters"));
      }
    } else if (key == kSettingMemoryLimit || key == kSettingMemoryRequired) {
      if (absl::StripAsciiWhitespace(value).empty()) continue;
      absl::StatusOr<uint64_t> bytes = ParseByteSize(value);
      if (!bytes.ok()) {
        return absl::InvalidArgumentError(absl::StrCat(key, ": ", bytes.status().message()));
      }
      if (*bytes == 0) return absl::InvalidArgumentError(absl::StrCat(key, " must be above 0"));
      (key == kSettingMemoryLimit ? out.memory_limit : out.memory_required) = *bytes;
    } else if (key == kSettingNoSwap || key == kSettingDedup) {
      // An empty value counts as not sent, so a server default applies.
      if (absl::StripAsciiWhitespace(value).empty()) continue;
      absl::StatusOr<bool> flag = ParseFlag(key, value);
      if (!flag.ok()) return flag.status();
      (key == kSettingNoSwap ? out.noswap : out.dedup) = *flag;
      (key == kSettingNoSwap ? out.noswap_set : out.dedup_set) = true;
    } else if (key == kSettingOvercommitPercent) {
      if (absl::StripAsciiWhitespace(value).empty()) continue;
      absl::StatusOr<uint32_t> percent = ParseOvercommitPercent(value);
      if (!percent.ok()) {
        return absl::InvalidArgumentError(absl::StrCat(key, ": ", percent.status().message()));
      }
      out.overcommit_percent = *percent;
    } else if (key == kSettingRole) {
      if (value == "observer") {
        out.observer = true;
      } else if (!value.empty() && value != "client") {
        return absl::InvalidArgumentError(absl::StrCat("unknown role '", value, "'"));
      }
    }
  }
  return out;
}

uint64_t PidNamespaceOf(int pid) {
  if (pid <= 0) return 0;
  struct stat st;
  const std::string path = absl::StrCat("/proc/", pid, "/ns/pid");
  if (::stat(path.c_str(), &st) != 0) return 0;
  return static_cast<uint64_t>(st.st_ino);
}

std::string TenantKeyFor(const ClientIdentity& who, const ClientSettings& settings) {
  if (!settings.tenant.empty()) return settings.tenant;
  if (!who.pod.empty()) {
    return who.pod_namespace.empty() ? who.pod : absl::StrCat(who.pod_namespace, "/", who.pod);
  }
  if (who.pid_namespace != 0) return absl::StrCat("pidns:", who.pid_namespace);
  return absl::StrCat("client-", who.client_id);
}

TenantMembership::~TenantMembership() { registry_->Leave(client_id_); }

bool TenantMembership::ReserveMemory(uint64_t bytes) {
  const uint64_t limit = state_->limit.load(std::memory_order_acquire);
  uint64_t cur = state_->used.load(std::memory_order_relaxed);
  do {
    if (limit != 0 && (bytes > limit || cur > limit - bytes)) return false;
  } while (!state_->used.compare_exchange_weak(cur, cur + bytes, std::memory_order_acq_rel));
  charged_.fetch_add(bytes, std::memory_order_relaxed);
  return true;
}

void TenantMembership::ReleaseMemory(uint64_t bytes) {
  // Never below zero: a release without a reservation is a bookkeeping bug,
  // but must not turn into a huge "used".
  uint64_t mine = charged_.load(std::memory_order_relaxed);
  uint64_t take;
  do {
    take = std::min(mine, bytes);
  } while (!charged_.compare_exchange_weak(mine, mine - take, std::memory_order_relaxed));
  state_->used.fetch_sub(take, std::memory_order_acq_rel);
}

uint64_t TenantMembership::tenant_limit() const {
  return state_->limit.load(std::memory_order_acquire);
}
uint64_t TenantMembership::tenant_used() const {
  return state_->used.load(std::memory_order_acquire);
}

scheduler::ResolvedPolicy TenantMembership::policy() const {
  std::optional<TenantMemberInfo> m = registry_->Member(client_id_);
  return m ? m->policy : scheduler::ResolvedPolicy{};
}

std::optional<uint32_t> TenantMembership::overcommit_percent() const {
  std::optional<TenantMemberInfo> m = registry_->Member(client_id_);
  return m ? m->overcommit_percent : std::nullopt;
}

void TenantRegistry::ResolveLocked(Entry& e) const {
  e.policy =
      scheduler::ResolveTenantPolicy(defaults_.policy, e.settings.env_policy,
                                     policy_file_.scheduling().OverrideFor(e.who.name), e.runtime);
  // The same layers for the overcommit override; the client's own value is
  // capped at the server's percentage.
  e.overcommit = std::nullopt;
  e.overcommit_source = scheduler::PolicySource::kDefault;
  if (defaults_.overcommit_percent) {
    e.overcommit = defaults_.overcommit_percent;
    e.overcommit_source = scheduler::PolicySource::kServerDefault;
  }
  if (e.settings.overcommit_percent) {
    e.overcommit = overcommit_ceiling_
                       ? std::min(*e.settings.overcommit_percent, *overcommit_ceiling_)
                       : *e.settings.overcommit_percent;
    e.overcommit_source = scheduler::PolicySource::kClientEnv;
  }
  if (std::optional<uint32_t> f = policy_file_.OvercommitFor(e.who.name)) {
    e.overcommit = f;
    e.overcommit_source = scheduler::PolicySource::kPolicyFile;
  }
  if (e.runtime_overcommit) {
    e.overcommit = e.runtime_overcommit;
    e.overcommit_source = scheduler::PolicySource::kRuntime;
  }
}

namespace {

std::string GiB(uint64_t bytes) {
  return absl::StrFormat("%.1f GiB", static_cast<double>(bytes) / (1ull << 30));
}

}  // namespace

void TenantRegistry::UpdateLimitLocked(const std::string& tenant) {
  auto t = tenants_.find(tenant);
  if (t == tenants_.end()) return;
  uint64_t limit = 0;
  for (const auto& [id, e] : entries_) {
    if (e.tenant != tenant || !e.settings.memory_limit) continue;
    if (limit == 0 || *e.settings.memory_limit < limit) limit = *e.settings.memory_limit;
  }
  t->second->limit.store(limit, std::memory_order_release);
}

absl::StatusOr<std::unique_ptr<TenantMembership>> TenantRegistry::Join(
    const ClientIdentity& who, const ClientSettings& settings) {
  absl::MutexLock lock(&mu_);
  if (entries_.count(who.client_id) != 0) {
    return absl::FailedPreconditionError(absl::StrCat("client ", who.client_id, " joined twice"));
  }
  Entry e;
  e.who = who;
  e.settings = settings;
  // The server's defaults fill in what the client did not send.
  if (!e.settings.memory_limit) e.settings.memory_limit = defaults_.memory_limit;
  if (!e.settings.noswap_set && defaults_.noswap) e.settings.noswap = *defaults_.noswap;
  if (!e.settings.dedup_set && defaults_.dedup) e.settings.dedup = *defaults_.dedup;
  e.tenant = TenantKeyFor(who, e.settings);
  if (e.settings.memory_required) {
    // The tenant's limit once this client is a member: the smallest any
    // member declared (UpdateLimitLocked).
    uint64_t limit = e.settings.memory_limit.value_or(0);
    for (const auto& [id, other] : entries_) {
      if (other.tenant != e.tenant || !other.settings.memory_limit) continue;
      if (limit == 0 || *other.settings.memory_limit < limit) limit = *other.settings.memory_limit;
    }
    const uint64_t required = *e.settings.memory_required;
    if (limit != 0 && required > limit) {
      return absl::ResourceExhaustedError(
          absl::StrCat(kSettingMemoryRequired, " asks for ", required, " bytes (", GiB(required),
                       "), more than the memory limit of tenant '", e.tenant, "': ", limit,
                       " bytes (", GiB(limit), ")"));
    }
    if (limit == 0 && device_memory_ != 0 && required > device_memory_) {
      return absl::ResourceExhaustedError(absl::StrCat(
          kSettingMemoryRequired, " asks for ", required, " bytes (", GiB(required),
          "), more than the GPU's memory: ", device_memory_, " bytes (", GiB(device_memory_), ")"));
    }
  }
  ResolveLocked(e);
  std::shared_ptr<TenantMembership::TenantState>& state = tenants_[e.tenant];
  if (!state) state = std::make_shared<TenantMembership::TenantState>();
  ++state->members;
  auto membership = std::unique_ptr<TenantMembership>(
      new TenantMembership(this, who.client_id, e.tenant, settings.observer, e.settings.noswap,
                           e.settings.dedup, state));
  e.membership = membership.get();
  const std::string tenant = e.tenant;
  entries_.emplace(who.client_id, std::move(e));
  UpdateLimitLocked(tenant);
  generation_.fetch_add(1, std::memory_order_acq_rel);
  return membership;
}

void TenantRegistry::Leave(uint64_t client_id) {
  absl::MutexLock lock(&mu_);
  auto it = entries_.find(client_id);
  if (it == entries_.end()) return;
  const std::string tenant = it->second.tenant;
  if (TenantMembership* m = it->second.membership; m != nullptr) {
    // What the client still holds is released with it.
    m->ReleaseMemory(m->charged_bytes());
  }
  entries_.erase(it);
  auto t = tenants_.find(tenant);
  if (t != tenants_.end() && --t->second->members == 0) {
    tenants_.erase(t);
  } else {
    UpdateLimitLocked(tenant);
  }
  generation_.fetch_add(1, std::memory_order_acq_rel);
}

void TenantRegistry::SetDefaults(TenantDefaults defaults) {
  absl::MutexLock lock(&mu_);
  defaults_ = std::move(defaults);
  for (auto& [id, e] : entries_) ResolveLocked(e);
  generation_.fetch_add(1, std::memory_order_acq_rel);
}

TenantDefaults TenantRegistry::defaults() const {
  absl::MutexLock lock(&mu_);
  return defaults_;
}

void TenantRegistry::SetDeviceMemory(uint64_t bytes) {
  absl::MutexLock lock(&mu_);
  device_memory_ = bytes;
}

void TenantRegistry::SetPolicyFile(scheduler::PolicyFile file) {
  SetServerPolicyFile(ServerPolicyFile(std::move(file)));
}

void TenantRegistry::SetOvercommitCeiling(std::optional<uint32_t> percent) {
  absl::MutexLock lock(&mu_);
  overcommit_ceiling_ = percent;
  for (auto& [id, e] : entries_) ResolveLocked(e);
  generation_.fetch_add(1, std::memory_order_acq_rel);
}

void TenantRegistry::SetServerPolicyFile(ServerPolicyFile file) {
  absl::MutexLock lock(&mu_);
  policy_file_ = std::move(file);
  for (auto& [id, e] : entries_) ResolveLocked(e);
  generation_.fetch_add(1, std::memory_order_acq_rel);
}

absl::Status TenantRegistry::SetRuntimePolicy(uint64_t client_id,
                                              const scheduler::PolicyOverride& over, bool reset) {
  ServerPolicyOverride all;
  all.policy = over;
  return SetRuntimeOverride(client_id, all, reset);
}

absl::Status TenantRegistry::SetRuntimeOverride(uint64_t client_id, const ServerPolicyOverride& all,
                                                bool reset) {
  const scheduler::PolicyOverride& over = all.policy;
  absl::MutexLock lock(&mu_);
  auto it = entries_.find(client_id);
  if (it == entries_.end()) {
    return absl::NotFoundError(absl::StrCat("no client ", client_id));
  }
  scheduler::PolicyOverride runtime = reset ? scheduler::PolicyOverride{} : it->second.runtime;
  runtime.MergeFrom(over);
  it->second.runtime = runtime;
  if (reset) it->second.runtime_overcommit.reset();
  if (all.overcommit_percent) it->second.runtime_overcommit = all.overcommit_percent;
  ResolveLocked(it->second);
  if (absl::Status s = scheduler::ValidateTenantPolicy(it->second.policy.policy); !s.ok()) {
    return s;
  }
  generation_.fetch_add(1, std::memory_order_acq_rel);
  return absl::OkStatus();
}

std::optional<TenantMemberInfo> TenantRegistry::Member(uint64_t client_id) const {
  absl::MutexLock lock(&mu_);
  auto it = entries_.find(client_id);
  if (it == entries_.end()) return std::nullopt;
  const Entry& e = it->second;
  TenantMemberInfo info;
  info.client_id = client_id;
  info.name = e.who.name;
  info.tenant = e.tenant;
  info.observer = e.settings.observer;
  info.policy = e.policy;
  info.runtime = e.runtime;
  info.noswap = e.settings.noswap;
  info.dedup = e.settings.dedup;
  info.overcommit_percent = e.overcommit;
  info.overcommit_source = e.overcommit_source;
  info.runtime_overcommit_percent = e.runtime_overcommit;
  if (auto t = tenants_.find(e.tenant); t != tenants_.end()) {
    info.memory_limit = t->second->limit.load(std::memory_order_acquire);
  }
  return info;
}

std::vector<TenantMemberInfo> TenantRegistry::Members() const {
  std::vector<uint64_t> ids;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [id, e] : entries_) ids.push_back(id);
  }
  std::vector<TenantMemberInfo> out;
  for (uint64_t id : ids) {
    if (std::optional<TenantMemberInfo> m = Member(id)) out.push_back(std::move(*m));
  }
  return out;
}

TenantSummary TenantRegistry::Summary(const std::string& tenant) const {
  absl::MutexLock lock(&mu_);
  TenantSummary s;
  s.tenant = tenant;
  auto t = tenants_.find(tenant);
  if (t == tenants_.end()) return s;
  s.memory_limit = t->second->limit.load(std::memory_order_acquire);
  s.memory_used = t->second->used.load(std::memory_order_acquire);
  for (const auto& [id, e] : entries_) {
    if (e.tenant != tenant || e.settings.observer) continue;
    TenantProcess p;
    p.client_id = id;
    p.pid = e.who.pid;
    p.name = e.who.name;
    p.bytes = e.membership != nullptr ? e.membership->charged_bytes() : 0;
    s.processes.push_back(std::move(p));
  }
  return s;
}

}  // namespace wooly::server
