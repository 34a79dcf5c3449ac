#include "wooly/scheduler/controller.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_format.h"
#include "wooly/scheduler/stream_priority.h"

namespace wooly::scheduler {
namespace {

constexpr double kEps = 1e-9;

bool InUnitInterval(double v, bool open_low) { return (open_low ? v > 0.0 : v >= 0.0) && v <= 1.0; }

bool SameDecision(const Decision& a, const Decision& b) {
  return a.units == b.units && a.admission == b.admission &&
         a.stream_priority == b.stream_priority && a.active == b.active &&
         std::abs(a.target_share - b.target_share) <= kEps &&
         std::abs(a.pace_fraction - b.pace_fraction) <= 1e-6;
}

}  // namespace

absl::string_view AdmissionName(Admission admission) {
  switch (admission) {
    case Admission::kRun:
      return "run";
    case Admission::kPace:
      return "pace";
    case Admission::kHold:
      return "hold";
  }
  return "?";
}

absl::Status ValidateControllerOptions(const ControllerOptions& o) {
  if (absl::Status s = ValidateGeometry(o.geometry); !s.ok()) return s;
  if (!(o.dither_credit > 0.0)) return absl::InvalidArgumentError("dither_credit must be > 0");
  if (o.idle_grace < absl::ZeroDuration() || o.estimate_confirm < absl::ZeroDuration() ||
      o.control_window <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        "idle_grace and estimate_confirm must be >= 0 and control_window > 0");
  }
  if (!InUnitInterval(o.measure_smoothing, /*open_low=*/true) ||
      !InUnitInterval(o.min_pace_fraction, /*open_low=*/true)) {
    return absl::InvalidArgumentError("measure_smoothing and min_pace_fraction must be in (0, 1]");
  }
  if (!InUnitInterval(o.estimate_deadband, false) || !InUnitInterval(o.pace_enter_margin, false) ||
      !InUnitInterval(o.pace_deadband, false)) {
    return absl::InvalidArgumentError("margins and dead bands must be in [0, 1]");
  }
  if (o.pace_deadband > o.pace_enter_margin) {
    // Otherwise a tenant could enter pacing and be released in the same band.
    return absl::InvalidArgumentError("pace_deadband must not exceed pace_enter_margin");
  }
  return absl::OkStatus();
}

absl::StatusOr<Controller> Controller::Create(ControllerOptions options, Clock clock) {
  if (absl::Status s = ValidateControllerOptions(options); !s.ok()) return s;
  if (!clock) return absl::InvalidArgumentError("controller needs a clock");
  return Controller(std::move(options), std::move(clock));
}

bool Controller::Differs(const Allocation& a, const Allocation& b) const {
  if (a.tenants.size() != b.tenants.size()) return true;
  for (const TenantTarget& x : a.tenants) {
    const TenantTarget* y = b.Find(x.id);
    if (y == nullptr || x.units != y->units ||
        std::abs(x.target_share - y->target_share) > options_.estimate_deadband) {
      return true;
    }
  }
  return false;
}

absl::StatusOr<std::vector<Decision>> Controller::Tick(absl::Span<const TenantInput> tenants) {
  const absl::Time now = clock_();
  absl::flat_hash_set<TenantId> present;
  for (const TenantInput& in : tenants) {
    if (!present.insert(in.id).second) {
      return absl::InvalidArgumentError(absl::StrFormat("tenant %d appears twice", in.id));
    }
  }
  // Validated before any state changes, so an error leaves the loop as it was.
  std::vector<TenantDemand> demands;
  demands.reserve(tenants.size());
  for (const TenantInput& in : tenants) {
    TenantDemand d;
    d.id = in.id;
    d.policy = in.policy;
    d.usable_share = in.usable_share;
    const auto it = states_.find(in.id);
    d.has_work =
        in.has_work || (it != states_.end() && now - it->second.last_work < options_.idle_grace);
    demands.push_back(d);
  }
  absl::StatusOr<Allocation> candidate = Allocate(demands, options_.geometry);
  if (!candidate.ok()) return candidate.status();

  // Forget tenants that left, then update the ones present.
  for (auto it = states_.begin(); it != states_.end();) {
    if (!present.contains(it->first)) {
      states_.erase(it++);
    } else {
      ++it;
    }
  }
  std::vector<Shape> shape;
  for (size_t i = 0; i < tenants.size(); ++i) {
    const TenantInput& in = tenants[i];
    TenantState& s = states_[in.id];
    const double measured =
        std::isnan(in.measured_share) ? 0.0 : std::clamp(in.measured_share, 0.0, 1.0);
    s.smoothed = s.seen ? options_.measure_smoothing * measured +
                              (1.0 - options_.measure_smoothing) * s.smoothed
                        : measured;
    s.seen = true;
    if (in.has_work) s.last_work = now;
    shape.push_back(Shape{in.id, in.policy, demands[i].has_work});
  }
  std::sort(shape.begin(), shape.end(), [](const Shape& a, const Shape& b) { return a.id < b.id; });

  // Structural changes apply now; estimate-driven ones once they persist.
  if (!have_applied_ || shape != applied_shape_) {
    applied_ = *std::move(candidate);
    applied_shape_ = std::move(shape);
    have_applied_ = true;
    differs_since_.reset();
  } else if (Differs(*candidate, applied_)) {
    if (!differs_since_) differs_since_ = now;
    if (now - *differs_since_ >= options_.estimate_confirm) {
      applied_ = *std::move(candidate);
      differs_since_.reset();
    }
  } else {
    differs_since_.reset();
  }

  // Who waits: has work, a nonzero target and queued launches (within
  // idle_grace, so a queue that drains for an instant does not count).
  std::vector<bool> waits(tenants.size(), false);
  for (size_t i = 0; i < tenants.size(); ++i) {
    TenantState& s = states_[tenants[i].id];
    const TenantTarget* t = applied_.Find(tenants[i].id);
    if (demands[i].has_work && t->target_share > kEps && tenants[i].queue_depth > 0) {
      s.last_waited = now;
    }
    waits[i] = demands[i].has_work && t->target_share > kEps &&
               now - s.last_waited < options_.idle_grace + absl::Nanoseconds(1);
  }

  const std::vector<int> units = DitherUnits(tenants, now);
  std::vector<Decision> out;
  out.reserve(tenants.size());
  for (size_t i = 0; i < tenants.size(); ++i) {
    const TenantInput& in = tenants[i];
    TenantState& s = states_[in.id];
    const TenantTarget& t = *applied_.Find(in.id);
    Decision d;
    d.id = in.id;
    d.target_share = t.target_share;
    d.units = units[i];
    d.sms = units[i] * options_.geometry.unit_sms;
    d.partition_share = static_cast<double>(d.sms) / options_.geometry.sm_count;
    d.stream_priority = StreamPriorityFor(in.policy.priority, options_.stream_priority_least,
                                          options_.stream_priority_greatest);
    d.measured_share = s.smoothed;
    d.active = demands[i].has_work;

    bool others_wait = false;
    for (size_t j = 0; j < tenants.size(); ++j) others_wait |= (j != i && waits[j]);

    if (!d.active) {
      s.pacing = false;
      s.pace = 1.0;
    } else if (t.target_share <= kEps) {
      s.pacing = false;
      s.pace = 1.0;
      // A cap of 0 stops the tenant whether or not compute is idle.
      if (others_wait || in.policy.cap() <= kEps) {
        d.admission = Admission::kHold;
        d.pace_fraction = 0.0;
      }
    } else {
      const double cap = in.policy.cap();
      const double limit = others_wait ? std::min(cap, t.target_share) : cap;
      const double m = s.smoothed;
      if (!s.pacing) {
        if (m > limit + options_.pace_enter_margin) {
          s.pacing = true;
          s.pace = std::clamp(limit / m, options_.min_pace_fraction, 1.0);
        }
      } else if (!others_wait && m <= cap + options_.pace_enter_margin) {
        s.pacing = false;  // nobody to yield to and within the cap: work-conserving
        s.pace = 1.0;
      } else if (std::abs(m - limit) > options_.pace_deadband) {
        s.pace = std::clamp(s.pace * limit / std::max(m, kEps), options_.min_pace_fraction, 1.0);
        if (s.pace >= 1.0) s.pacing = false;
      }
      // A partition unit larger than the cap is paced down to the cap a priori.
      const double cap_fraction =
          t.partition_share > cap + kEps
              ? std::max(cap / t.partition_share, options_.min_pace_fraction)
              : 1.0;
      d.pace_fraction = std::min(s.pacing ? s.pace : 1.0, cap_fraction);
      if (d.pace_fraction < 1.0 - kEps) {
        d.admission = Admission::kPace;
      } else {
        d.pace_fraction = 1.0;
      }
    }
    d.changed = !s.last.has_value() || !SameDecision(*s.last, d);
    s.last = d;
    out.push_back(d);
  }
  return out;
}

std::vector<int> Controller::DitherUnits(absl::Span<const TenantInput> tenants, absl::Time now) {
  const size_t n = tenants.size();
  std::vector<std::pair<TenantId, int>> base;
  std::vector<int> units(n);
  for (size_t i = 0; i < n; ++i) {
    units[i] = applied_.Find(tenants[i].id)->units;
    base.emplace_back(tenants[i].id, units[i]);
  }
  std::sort(base.begin(), base.end());
  const double dt = last_tick_ == absl::InfinitePast()
                        ? 0.0
                        : std::clamp(absl::ToDoubleSeconds(now - last_tick_), 0.0, 1.0);
  last_tick_ = now;
  // A new allocation starts from its own rounding with clean credits.
  const bool fresh = base != dither_base_;
  dither_base_ = std::move(base);
  if (!options_.dither_units) return units;
  const double units_per_share =
      static_cast<double>(options_.geometry.sm_count) / options_.geometry.unit_sms;
  const double max_credit = 3 * options_.dither_credit;
  struct Slot {
    double q;    // ideal units
    int lo, hi;  // bounds a move must keep
    int priority;
    bool eligible;
  };
  std::vector<Slot> slots(n);
  for (size_t i = 0; i < n; ++i) {
    TenantState& s = states_[tenants[i].id];
    const TenantTarget& t = *applied_.Find(tenants[i].id);
    if (fresh) {
      s.dither_credit = 0.0;
    } else {
      units[i] = s.dithered_units;
    }
    Slot& x = slots[i];
    x.q = t.target_share * units_per_share;
    const int cap_units =
        static_cast<int>(std::floor(tenants[i].policy.cap() * units_per_share + kEps));
    const int floor_units = static_cast<int>(std::ceil(t.floor_share * units_per_share - kEps));
    x.lo = std::max({1, floor_units, static_cast<int>(std::floor(x.q + kEps))});
    x.hi = std::min(cap_units, static_cast<int>(std::ceil(x.q - kEps)));
    x.priority = tenants[i].policy.priority;
    // Only tenants the allocation placed take part (they all have work).
    x.eligible = t.units > 0;
    if (x.eligible) {
      s.dither_credit =
          std::clamp(s.dither_credit + (x.q - units[i]) * dt, -max_credit, max_credit);
    }
  }
  // One move per tenant per tick: the most under-served takes a unit from
  // the most over-served of its level.
  std::vector<bool> moved(n, false);
  for (;;) {
    int to = -1, from = -1;
    for (size_t i = 0; i < n; ++i) {
      if (!slots[i].eligible || moved[i] || units[i] + 1 > slots[i].hi) continue;
      if (to < 0 || states_[tenants[i].id].dither_credit > states_[tenants[to].id].dither_credit) {
        to = static_cast<int>(i);
      }
    }
    if (to < 0 || states_[tenants[to].id].dither_credit < options_.dither_credit) break;
    for (size_t i = 0; i < n; ++i) {
      if (static_cast<int>(i) == to || !slots[i].eligible || moved[i] ||
          slots[i].priority != slots[to].priority || units[i] - 1 < slots[i].lo) {
        continue;
      }
      if (from < 0 ||
          states_[tenants[i].id].dither_credit < states_[tenants[from].id].dither_credit) {
        from = static_cast<int>(i);
      }
    }
    if (from < 0 || states_[tenants[from].id].dither_credit > -options_.dither_credit) {
      moved[to] = true;  // nobody of its level can give; try the next
      continue;
    }
    ++units[to];
    --units[from];
    moved[to] = moved[from] = true;
  }
  for (size_t i = 0; i < n; ++i) states_[tenants[i].id].dithered_units = units[i];
  return units;
}

absl::StatusOr<std::vector<Decision>> Controller::TickWithMeter(
    absl::Span<const TenantInput> tenants, const UsageMeter& meter) {
  std::vector<TenantInput> filled(tenants.begin(), tenants.end());
  for (TenantInput& in : filled) {
    const std::optional<WindowUsage> w = meter.Window(in.id, options_.control_window);
    in.measured_share = w ? w->achieved_share : 0.0;
    const std::optional<TenantUsage> u = meter.Usage(in.id);
    in.queue_depth = u ? u->queue_depth : 0;
  }
  return Tick(filled);
}

}  // namespace wooly::scheduler
