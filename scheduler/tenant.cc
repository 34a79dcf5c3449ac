#include "wooly/scheduler/tenant.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace wooly::scheduler {
namespace {

enum class Key { kPriority, kWeight, kFloor, kCap };

std::string PercentText(double share) { return absl::StrFormat("%g%%", share * 100.0); }

absl::StatusOr<int> ParsePriorityValue(absl::string_view text) {
  int value = 0;
  if (!absl::SimpleAtoi(text, &value)) {
    return absl::InvalidArgumentError(
        absl::StrFormat("\"%s\" is not an integer priority (want %d..%d, %d highest)", text,
                        kHighestClientPriority, kLowestClientPriority, kHighestClientPriority));
  }
  if (value < kHighestClientPriority || value > kLowestClientPriority) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%d is out of range %d..%d", value, kHighestClientPriority, kLowestClientPriority));
  }
  return value;
}

absl::StatusOr<double> ParseWeightValue(absl::string_view text) {
  double value = 0;
  if (!absl::SimpleAtod(text, &value) || !std::isfinite(value)) {
    return absl::InvalidArgumentError(absl::StrFormat("\"%s\" is not a number", text));
  }
  if (value < kMinWeight || value > kMaxWeight) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%g is out of range (want a weight in [%g, %g])", value, kMinWeight, kMaxWeight));
  }
  return value;
}

// Sets one key of `out` from its text. Errors carry no key name.
absl::Status SetValue(Key key, absl::string_view text, PolicyOverride& out) {
  text = absl::StripAsciiWhitespace(text);
  if (text.empty()) return absl::InvalidArgumentError("empty value");
  switch (key) {
    case Key::kPriority: {
      absl::StatusOr<int> v = ParsePriorityValue(text);
      if (!v.ok()) return v.status();
      out.priority = *v;
      return absl::OkStatus();
    }
    case Key::kWeight: {
      absl::StatusOr<double> v = ParseWeightValue(text);
      if (!v.ok()) return v.status();
      out.weight = *v;
      return absl::OkStatus();
    }
    case Key::kFloor:
    case Key::kCap: {
      double share = 0;
      if (absl::EqualsIgnoreCase(text, "none")) {
        share = key == Key::kFloor ? 0.0 : 1.0;
      } else {
        absl::StatusOr<double> v = ParseShare(text);
        if (!v.ok()) return v.status();
        share = *v;
      }
      (key == Key::kFloor ? out.floor_share : out.cap_share) = share;
      return absl::OkStatus();
    }
  }
  return absl::InternalError("unknown key");
}

// Checks the floor/cap pair one layer sets; `floor_name`/`cap_name` are how
// the error names them.
absl::Status CheckFloorBelowCap(const PolicyOverride& layer, absl::string_view floor_name,
                                absl::string_view cap_name) {
  if (layer.floor_share && layer.cap_share && *layer.floor_share > *layer.cap_share) {
    return absl::InvalidArgumentError(absl::StrFormat("%s (%s) is above %s (%s)", floor_name,
                                                      PercentText(*layer.floor_share), cap_name,
                                                      PercentText(*layer.cap_share)));
  }
  return absl::OkStatus();
}

bool KeyFromName(absl::string_view name, Key& key) {
  if (name == "priority") {
    key = Key::kPriority;
  } else if (name == "weight") {
    key = Key::kWeight;
  } else if (name == "floor") {
    key = Key::kFloor;
  } else if (name == "cap") {
    key = Key::kCap;
  } else {
    return false;
  }
  return true;
}

// Applies `layer` over `acc`; *_src record which layer set each field.
struct Accumulator {
  PolicyOverride values;
  PolicySource priority_src = PolicySource::kDefault;
  PolicySource weight_src = PolicySource::kDefault;
  PolicySource floor_src = PolicySource::kDefault;
  PolicySource cap_src = PolicySource::kDefault;

  void Apply(const PolicyOverride& layer, PolicySource source) {
    const PolicyOverride before = values;
    values.MergeFrom(layer);
    if (layer.priority) priority_src = source;
    if (layer.weight) weight_src = source;
    // A floor or cap the layer did not set but moved (MergeFrom settling a
    // conflict) is also this layer's doing.
    if (layer.floor_share || values.floor_share != before.floor_share) floor_src = source;
    if (layer.cap_share || values.cap_share != before.cap_share) cap_src = source;
  }
};

double Clamp01(double v) { return std::isnan(v) ? 0.0 : std::clamp(v, 0.0, 1.0); }

}  // namespace

absl::Status ValidateTenantPolicy(const TenantPolicy& p) {
  if (p.priority < kHighestClientPriority || p.priority > kLowestClientPriority) {
    return absl::InvalidArgumentError(absl::StrFormat("priority %d is out of range %d..%d",
                                                      p.priority, kHighestClientPriority,
                                                      kLowestClientPriority));
  }
  if (!std::isfinite(p.weight) || p.weight < kMinWeight || p.weight > kMaxWeight) {
    return absl::InvalidArgumentError(
        absl::StrFormat("weight %g is out of range [%g, %g]", p.weight, kMinWeight, kMaxWeight));
  }
  const std::pair<const char*, std::optional<double>> shares[] = {{"floor", p.floor_share},
                                                                  {"cap", p.cap_share}};
  for (const auto& [name, share] : shares) {
    if (share && !(*share >= 0.0 && *share <= 1.0)) {
      return absl::InvalidArgumentError(
          absl::StrFormat("%s %g is out of range [0, 1]", name, *share));
    }
  }
  if (p.floor() > p.cap()) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "floor (%s) is above cap (%s)", PercentText(p.floor()), PercentText(p.cap())));
  }
  return absl::OkStatus();
}

void PolicyOverride::MergeFrom(const PolicyOverride& over) {
  if (over.priority) priority = over.priority;
  if (over.weight) weight = over.weight;
  if (over.floor_share) floor_share = over.floor_share;
  if (over.cap_share) cap_share = over.cap_share;
  if (floor_share && cap_share && *floor_share > *cap_share) {
    // The layer applied last is the one with the say.
    if (over.cap_share) {
      floor_share = cap_share;
    } else {
      cap_share = floor_share;
    }
  }
}

absl::string_view PolicySourceName(PolicySource source) {
  switch (source) {
    case PolicySource::kDefault:
      return "default";
    case PolicySource::kServerDefault:
      return "server-default";
    case PolicySource::kClientEnv:
      return "client";
    case PolicySource::kPolicyFile:
      return "policy-file";
    case PolicySource::kRuntime:
      return "runtime";
  }
  return "?";
}

ResolvedPolicy ResolveTenantPolicy(const PolicyOverride& client_env,
                                   const PolicyOverride& policy_file,
                                   const PolicyOverride& runtime) {
  return ResolveTenantPolicy(PolicyOverride{}, client_env, policy_file, runtime);
}

ResolvedPolicy ResolveTenantPolicy(const PolicyOverride& server_defaults,
                                   const PolicyOverride& client_env,
                                   const PolicyOverride& policy_file,
                                   const PolicyOverride& runtime) {
  Accumulator acc;
  acc.Apply(server_defaults, PolicySource::kServerDefault);
  acc.Apply(client_env, PolicySource::kClientEnv);
  acc.Apply(policy_file, PolicySource::kPolicyFile);
  acc.Apply(runtime, PolicySource::kRuntime);

  // Layers are validated by their parsers; clamp anyway so a hand-built layer
  // cannot produce an invalid policy.
  ResolvedPolicy out;
  TenantPolicy& p = out.policy;
  p.priority = ClampClientPriority(acc.values.priority.value_or(kDefaultClientPriority));
  const double weight = acc.values.weight.value_or(kDefaultWeight);
  p.weight = std::isfinite(weight) ? std::clamp(weight, kMinWeight, kMaxWeight) : kDefaultWeight;
  if (acc.values.floor_share) {
    const double floor = Clamp01(*acc.values.floor_share);
    if (floor > 0.0) p.floor_share = floor;
  }
  if (acc.values.cap_share) {
    const double cap = Clamp01(*acc.values.cap_share);
    if (cap < 1.0) p.cap_share = cap;
  }
  if (p.floor() > p.cap()) p.floor_share = p.cap();  // only reachable through clamping
  if (p.floor_share && *p.floor_share <= 0.0) p.floor_share.reset();

  out.priority_source = acc.priority_src;
  out.weight_source = acc.weight_src;
  out.floor_source = acc.floor_src;
  out.cap_source = acc.cap_src;
  return out;
}

absl::StatusOr<double> ParseShare(absl::string_view text) {
  text = absl::StripAsciiWhitespace(text);
  auto not_a_share = [&] {
    return absl::InvalidArgumentError(absl::StrFormat(
        "\"%s\" is not a share: write a percentage (30 or 30%%) or a fraction no greater "
        "than 1 (0.3)",
        text));
  };
  if (text.empty()) return not_a_share();
  absl::string_view number = text;
  const bool percent_sign = absl::ConsumeSuffix(&number, "%");
  number = absl::StripTrailingAsciiWhitespace(number);
  double value = 0;
  if (number.empty() || !absl::SimpleAtod(number, &value) || !std::isfinite(value)) {
    return not_a_share();
  }
  // An integer literal is a percentage ("1" is 1 %); so is anything above 1.
  const bool integer_literal =
      std::all_of(number.begin(), number.end(), [](char c) { return c >= '0' && c <= '9'; }) ||
      ((number[0] == '-' || number[0] == '+') &&
       std::all_of(number.begin() + 1, number.end(), [](char c) { return c >= '0' && c <= '9'; }));
  const bool is_percent = percent_sign || integer_literal || value > 1.0;
  const double share = is_percent ? value / 100.0 : value;
  if (share < 0.0 || share > 1.0) {
    return absl::InvalidArgumentError(
        absl::StrFormat("\"%s\" is out of range (want 0..100%% of the SMs)", text));
  }
  return share;
}

absl::StatusOr<PolicyOverride> ParseClientEnv(const EnvMap& env) {
  static constexpr std::pair<const char*, Key> kVars[] = {
      {kEnvPriority, Key::kPriority},
      {kEnvWeight, Key::kWeight},
      {kEnvSmFloor, Key::kFloor},
      {kEnvSmCap, Key::kCap},
  };
  PolicyOverride out;
  for (const auto& [name, key] : kVars) {
    auto it = env.find(absl::string_view(name));
    if (it == env.end() || absl::StripAsciiWhitespace(it->second).empty()) continue;
    if (absl::Status s = SetValue(key, it->second, out); !s.ok()) {
      return absl::InvalidArgumentError(
          absl::StrFormat("%s=\"%s\": %s", name, it->second, s.message()));
    }
  }
  if (absl::Status s = CheckFloorBelowCap(out, kEnvSmFloor, kEnvSmCap); !s.ok()) return s;
  return out;
}

absl::StatusOr<TenantPolicy> TenantPolicyFromEnv(const EnvMap& env) {
  absl::StatusOr<PolicyOverride> layer = ParseClientEnv(env);
  if (!layer.ok()) return layer.status();
  return ResolveTenantPolicy(*layer, {}, {}).policy;
}

absl::StatusOr<PolicyOverride> ParseAssignments(absl::string_view text) {
  PolicyOverride out;
  bool seen[4] = {false, false, false, false};
  for (absl::string_view token : absl::StrSplit(text, absl::ByAnyChar(" \t"), absl::SkipEmpty())) {
    const size_t eq = token.find('=');
    if (eq == absl::string_view::npos || eq == 0) {
      return absl::InvalidArgumentError(
          absl::StrFormat("\"%s\" is not key=value (keys: priority, weight, floor, cap)", token));
    }
    const absl::string_view name = token.substr(0, eq);
    Key key;
    if (!KeyFromName(name, key)) {
      return absl::InvalidArgumentError(
          absl::StrFormat("key '%s': unknown key (want priority, weight, floor or cap)", name));
    }
    if (seen[static_cast<int>(key)]) {
      return absl::InvalidArgumentError(absl::StrFormat("key '%s': given twice", name));
    }
    seen[static_cast<int>(key)] = true;
    if (absl::Status s = SetValue(key, token.substr(eq + 1), out); !s.ok()) {
      return absl::InvalidArgumentError(absl::StrFormat("key '%s': %s", name, s.message()));
    }
  }
  if (absl::Status s = CheckFloorBelowCap(out, "key 'floor'", "key 'cap'"); !s.ok()) return s;
  return out;
}

bool GlobMatch(absl::string_view pattern, absl::string_view name) {
  // Greedy match with backtracking to the last '*': linear for the patterns
  // people write, never exponential.
  size_t p = 0, n = 0;
  size_t star = absl::string_view::npos, star_n = 0;
  while (n < name.size()) {
    if (p < pattern.size() && (pattern[p] == '?' || pattern[p] == name[n])) {
      ++p;
      ++n;
    } else if (p < pattern.size() && pattern[p] == '*') {
      star = p++;
      star_n = n;
    } else if (star != absl::string_view::npos) {
      p = star + 1;
      n = ++star_n;
    } else {
      return false;
    }
  }
  while (p < pattern.size() && pattern[p] == '*') ++p;
  return p == pattern.size();
}

absl::StatusOr<PolicyFile> PolicyFile::Parse(absl::string_view text, absl::string_view origin) {
  PolicyFile file;
  int line_no = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_no;
    if (const size_t hash = line.find('#'); hash != absl::string_view::npos) {
      line = line.substr(0, hash);
    }
    line = absl::StripAsciiWhitespace(line);  // also drops a CR
    if (line.empty()) continue;
    const size_t space = line.find_first_of(" \t");
    const absl::string_view pattern = line.substr(0, space);
    auto line_error = [&](absl::string_view what) {
      return absl::InvalidArgumentError(absl::StrFormat("%s line %d: %s", origin, line_no, what));
    };
    if (pattern.find('=') != absl::string_view::npos) {
      return line_error(absl::StrFormat(
          "starts with \"%s\"; a line is `<client-name-glob> key=value ...`", pattern));
    }
    if (space == absl::string_view::npos) {
      return line_error(absl::StrFormat("pattern \"%s\" has no settings", pattern));
    }
    absl::StatusOr<PolicyOverride> settings = ParseAssignments(line.substr(space + 1));
    if (!settings.ok()) return line_error(settings.status().message());
    file.rules_.push_back(PolicyRule{line_no, std::string(pattern), *std::move(settings)});
  }
  return file;
}

absl::StatusOr<std::string> PolicyFile::ReadText(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) {
    const int err = errno;
    const std::string what =
        absl::StrFormat("cannot open policy file %s: %s", path, std::strerror(err));
    return err == ENOENT ? absl::NotFoundError(what) : absl::FailedPreconditionError(what);
  }
  std::string text;
  char buf[4096];
  size_t n = 0;
  while ((n = std::fread(buf, 1, sizeof(buf), f)) > 0) text.append(buf, n);
  const bool failed = std::ferror(f) != 0;
  std::fclose(f);
  if (failed) {
    return absl::FailedPreconditionError(absl::StrCat("cannot read policy file ", path));
  }
  return text;
}

absl::StatusOr<PolicyFile> PolicyFile::Load(const std::string& path) {
  absl::StatusOr<std::string> text = ReadText(path);
  if (!text.ok()) return text.status();
  return Parse(*text, path);
}

PolicyOverride PolicyFile::OverrideFor(absl::string_view client_name) const {
  PolicyOverride out;
  for (const PolicyRule& rule : rules_) {
    if (GlobMatch(rule.pattern, client_name)) out.MergeFrom(rule.settings);
  }
  return out;
}

}  // namespace wooly::scheduler
