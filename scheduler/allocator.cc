#include "wooly/scheduler/allocator.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_format.h"

namespace wooly::scheduler {
namespace {

// Shares are sums of a handful of doubles; anything this close is equal.
constexpr double kShareEps = 1e-9;
// Unit counts: a share that is 1e-6 of a unit from an integer is that integer.
constexpr double kUnitEps = 1e-6;

// A tenant with work, while shares are computed.
struct Active {
  size_t index = 0;  // into the input and Allocation::tenants
  TenantId id = 0;
  int priority = 0;
  double weight = 1.0;
  double floor = 0.0;  // scaled
  double cap = 1.0;
  double usable_ceiling = 1.0;  // max(floor, min(cap, usable))
  double target = 0.0;
};

// Raises each member's target (its lower bound) towards `ceiling(member)` in
// proportion to the weights, using at most `budget`: finds lambda with
// sum(clamp(w * lambda, lower, upper)) = sum(lower) + budget. Returns the
// share used.
template <typename Ceiling>
double WaterFill(const std::vector<Active*>& members, double budget, Ceiling ceiling) {
  if (members.empty() || budget <= kShareEps) return 0.0;
  std::vector<double> lower, upper;
  double total_lower = 0, total_upper = 0;
  for (const Active* m : members) {
    lower.push_back(m->target);
    upper.push_back(std::max(m->target, ceiling(*m)));
    total_lower += lower.back();
    total_upper += upper.back();
  }
  if (total_upper - total_lower <= budget + kShareEps) {
    for (size_t i = 0; i < members.size(); ++i) members[i]->target = upper[i];
    return std::max(0.0, total_upper - total_lower);
  }
  auto fill = [&](double lambda) {
    double sum = 0;
    for (size_t i = 0; i < members.size(); ++i) {
      sum += std::clamp(members[i]->weight * lambda, lower[i], upper[i]);
    }
    return sum;
  };
  // fill() is piecewise linear with corners at lower/w and upper/w: find the
  // segment that reaches the goal and interpolate in it.
  std::vector<double> corners = {0.0};
  for (size_t i = 0; i < members.size(); ++i) {
    corners.push_back(lower[i] / members[i]->weight);
    corners.push_back(upper[i] / members[i]->weight);
  }
  std::sort(corners.begin(), corners.end());
  const double goal = total_lower + budget;
  double lambda = corners.back();
  double prev = corners.front(), prev_fill = fill(prev);
  for (size_t k = 1; k < corners.size(); ++k) {
    const double here = corners[k], here_fill = fill(here);
    if (here_fill >= goal) {
      lambda = here_fill > prev_fill
                   ? prev + (goal - prev_fill) * (here - prev) / (here_fill - prev_fill)
                   : here;
      break;
    }
    prev = here;
    prev_fill = here_fill;
  }
  for (size_t i = 0; i < members.size(); ++i) {
    members[i]->target = std::clamp(members[i]->weight * lambda, lower[i], upper[i]);
  }
  return budget;
}

// Per-tenant state while rounding to units.
struct Rounding {
  size_t index = 0;
  TenantId id = 0;
  int priority = 0;
  double q = 0;  // ideal (fractional) units
  int lo = 0;    // floor rounded up, bounded by cap_units
  int cap_units = 0;
  int units = 0;
};

// Picks a unit donor for `to` among `r` (not `to`): the tenant most above its
// ideal, ties to the lower priority, then the larger id. `eligible` filters.
template <typename Eligible>
Rounding* PickDonor(std::vector<Rounding>& r, const Rounding* to, Eligible eligible) {
  Rounding* best = nullptr;
  for (Rounding& c : r) {
    if (&c == to || !eligible(c)) continue;
    if (best == nullptr) {
      best = &c;
      continue;
    }
    const double over_c = c.units - c.q, over_b = best->units - best->q;
    if (over_c > over_b + kUnitEps ||
        (std::abs(over_c - over_b) <= kUnitEps &&
         (c.priority > best->priority || (c.priority == best->priority && c.id > best->id)))) {
      best = &c;
    }
  }
  return best;
}

void RoundToUnits(const std::vector<Active>& active, const PartitionGeometry& geometry,
                  Allocation& out) {
  const int total = geometry.units();
  const double units_per_share = static_cast<double>(geometry.sm_count) / geometry.unit_sms;
  std::vector<Rounding> r;
  r.reserve(active.size());
  int free_units = total;
  for (const Active& a : active) {
    Rounding x;
    x.index = a.index;
    x.id = a.id;
    x.priority = a.priority;
    x.q = a.target * units_per_share;
    x.cap_units = std::min(total, static_cast<int>(std::floor(a.cap * units_per_share + kUnitEps)));
    // A cap below one unit still gets one; the controller paces it to its cap.
    if (x.cap_units == 0 && a.target > kShareEps) x.cap_units = std::min(total, 1);
    x.lo = std::min(x.cap_units, static_cast<int>(std::ceil(a.floor * units_per_share - kUnitEps)));
    x.units = std::min(x.cap_units, static_cast<int>(std::floor(x.q + kUnitEps)));
    free_units -= x.units;
    r.push_back(x);
  }
  // Unreachable with consistent shares (they sum to <= 1); keeps the sum
  // bounded whatever floating point did.
  while (free_units < 0) {
    Rounding* d = PickDonor(r, nullptr, [](const Rounding& c) { return c.units > 0; });
    if (d == nullptr) break;
    --d->units;
    ++free_units;
  }

  // Gives `to` one unit: a free one, or one from a donor `eligible` allows.
  auto give = [&](Rounding& to, auto eligible) {
    if (free_units > 0) {
      --free_units;
      ++to.units;
      return true;
    }
    Rounding* d = PickDonor(r, &to, eligible);
    if (d == nullptr) return false;
    --d->units;
    ++to.units;
    return true;
  };
  auto by_priority = [&](std::vector<Rounding*>& v, auto then) {
    std::sort(v.begin(), v.end(), [&](const Rounding* a, const Rounding* b) {
      if (a->priority != b->priority) return a->priority < b->priority;
      return then(a, b);
    });
  };

  // 1. Floors, rounded up: may take units from anyone above their own floor.
  std::vector<Rounding*> order;
  for (Rounding& x : r) order.push_back(&x);
  by_priority(order, [](const Rounding* a, const Rounding* b) { return a->id < b->id; });
  for (Rounding* x : order) {
    while (x->units < x->lo && give(*x, [](const Rounding& c) { return c.units > c.lo; })) {
    }
  }
  // 2. One unit for each tenant with a nonzero target: from free units, or
  // from tenants of equal or lower priority that keep their floor and a unit.
  by_priority(order, [](const Rounding* a, const Rounding* b) {
    return a->q != b->q ? a->q > b->q : a->id < b->id;
  });
  for (Rounding* x : order) {
    if (x->units > 0 || x->q <= kUnitEps || x->cap_units == 0) continue;
    const int priority = x->priority;
    give(*x, [priority](const Rounding& c) {
      return c.priority >= priority && c.units > std::max(c.lo, 1);
    });
  }
  // 3. Largest remainder: up to one more unit each, until the units match the
  // rounded sum of the ideal shares.
  double q_sum = 0;
  for (const Rounding& x : r) q_sum += x.q;
  const int goal = std::min(total, static_cast<int>(std::floor(q_sum + 0.5 + kUnitEps)));
  std::vector<Rounding*> candidates;
  for (Rounding& x : r) {
    if (x.units < static_cast<int>(std::ceil(x.q - kUnitEps)) && x.units < x.cap_units) {
      candidates.push_back(&x);
    }
  }
  std::sort(candidates.begin(), candidates.end(), [](const Rounding* a, const Rounding* b) {
    const double fa = a->q - std::floor(a->q), fb = b->q - std::floor(b->q);
    if (std::abs(fa - fb) > kUnitEps) return fa > fb;
    if (a->priority != b->priority) return a->priority < b->priority;
    return a->id < b->id;
  });
  for (Rounding* x : candidates) {
    if (free_units == 0 || total - free_units >= goal) break;
    --free_units;
    ++x->units;
  }

  for (const Rounding& x : r) {
    TenantTarget& t = out.tenants[x.index];
    t.units = x.units;
    t.sms = x.units * geometry.unit_sms;
    t.partition_share = static_cast<double>(t.sms) / geometry.sm_count;
  }
  out.assigned_units = total - free_units;
}

}  // namespace

absl::Status ValidateGeometry(const PartitionGeometry& g) {
  if (g.sm_count <= 0 || g.unit_sms <= 0 || g.unit_sms > g.sm_count) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "partition geometry %d SMs in units of %d is invalid", g.sm_count, g.unit_sms));
  }
  return absl::OkStatus();
}

const TenantTarget* Allocation::Find(TenantId id) const {
  for (const TenantTarget& t : tenants) {
    if (t.id == id) return &t;
  }
  return nullptr;
}

absl::StatusOr<Allocation> Allocate(absl::Span<const TenantDemand> tenants,
                                    const PartitionGeometry& geometry) {
  if (absl::Status s = ValidateGeometry(geometry); !s.ok()) return s;
  absl::flat_hash_set<TenantId> ids;
  for (const TenantDemand& d : tenants) {
    if (!ids.insert(d.id).second) {
      return absl::InvalidArgumentError(absl::StrFormat("tenant %d appears twice", d.id));
    }
    if (absl::Status s = ValidateTenantPolicy(d.policy); !s.ok()) {
      return absl::InvalidArgumentError(absl::StrFormat("tenant %d: %s", d.id, s.message()));
    }
    if (d.usable_share && !(*d.usable_share >= 0.0 && *d.usable_share <= 1.0)) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "tenant %d: usable share %g is out of range [0, 1]", d.id, *d.usable_share));
    }
  }

  Allocation out;
  out.total_units = geometry.units();
  out.tenants.resize(tenants.size());
  std::vector<Active> active;
  double floor_sum = 0;
  for (size_t i = 0; i < tenants.size(); ++i) {
    out.tenants[i].id = tenants[i].id;
    if (!tenants[i].has_work) continue;
    Active a;
    a.index = i;
    a.id = tenants[i].id;
    a.priority = tenants[i].policy.priority;
    a.weight = tenants[i].policy.weight;
    a.floor = tenants[i].policy.floor();
    a.cap = tenants[i].policy.cap();
    floor_sum += a.floor;
    active.push_back(a);
  }
  if (floor_sum > 1.0 + kShareEps) {
    out.floors_scaled = true;
    out.floor_scale = 1.0 / floor_sum;
  }
  double budget = 1.0;
  for (size_t i = 0; i < active.size(); ++i) {
    Active& a = active[i];
    a.floor *= out.floor_scale;
    a.target = a.floor;
    const double usable = tenants[a.index].usable_share.value_or(1.0);
    a.usable_ceiling = std::max(a.floor, std::min(a.cap, usable));
    budget -= a.floor;
  }
  budget = std::max(0.0, budget);

  // Pass 1 honours the usable estimates; pass 2 hands what they left over to
  // the same tenants, caps being the only limit (work conservation).
  for (int pass = 0; pass < 2 && budget > kShareEps; ++pass) {
    for (int level = kHighestClientPriority; level <= kLowestClientPriority; ++level) {
      std::vector<Active*> members;
      for (Active& a : active) {
        if (a.priority == level) members.push_back(&a);
      }
      const double used =
          pass == 0 ? WaterFill(members, budget, [](const Active& a) { return a.usable_ceiling; })
                    : WaterFill(members, budget, [](const Active& a) { return a.cap; });
      budget -= used;
      if (budget <= kShareEps) break;
    }
  }

  double target_sum = 0;
  for (const Active& a : active) {
    TenantTarget& t = out.tenants[a.index];
    t.target_share = std::clamp(a.target, 0.0, 1.0);
    t.floor_share = a.floor;
    target_sum += t.target_share;
  }
  out.idle_share = std::max(0.0, 1.0 - target_sum);
  if (out.idle_share < kShareEps) out.idle_share = 0.0;
  RoundToUnits(active, geometry, out);
  return out;
}

}  // namespace wooly::scheduler
