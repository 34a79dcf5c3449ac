// The allocation policy: who should get how much of the GPU's SMs right now.
//
// Given the tenants, their policies and their demand, Allocate() computes a
// target share per tenant and rounds it to SM partition units (green-context
// partitions; on an H100, units of 8 SMs out of 132). The rules, in order:
//
//  1. Only tenants with work get anything. A tenant without work has target 0
//     and no floor; its floor is held only while it has work.
//  2. Floors first: every tenant with work gets its floor. If the floors of
//     the tenants with work add up to more than the whole GPU, they are all
//     scaled down by the same factor (Allocation::floors_scaled).
//  3. Strict priority: the rest goes to priority 0 until each tenant there
//     reaches its ceiling, then to priority 1, and so on. A tenant's ceiling
//     is its cap and, when given, its usable-share estimate (never below its
//     floor).
//  4. Within one priority, shares follow the weights (water-filling: a tenant
//     that reaches its ceiling gives the excess to the others by weight).
//  5. Work conservation: what remains after step 3 because usable-share
//     estimates were small is handed out again by rules 3-4 with the caps as
//     the only ceilings. Compute stays idle only when every tenant with work
//     is at its cap, or nobody has work.
//  6. Caps are never exceeded, even if compute stays idle: the one rule that
//     is not work-conserving, as users expect from a cap.
//
// Rounding to units (what the mechanism maps to partitions): largest
// remainder over floor(sm_count / unit_sms) units, with these guarantees:
//   - a tenant never gets more units than its cap rounded down, except that a
//     tenant with work and a cap below one unit gets one unit (the controller
//     then paces it down to its cap);
//   - a tenant gets at least its (scaled) floor rounded up, when the units
//     exist, taking them from tenants above their own floor if needed;
//   - a tenant with work and a nonzero target gets at least one unit when one
//     is free or can be taken from a tenant of equal or lower priority;
//   - the units add up to at most sm_count / unit_sms.
// SMs outside whole units (4 on an H100) and units nobody was given form the
// remainder; see docs/scheduler.md for what the mechanism does with it.
//
// Thread safety: pure function.
#ifndef WOOLY_SCHEDULER_ALLOCATOR_H_
#define WOOLY_SCHEDULER_ALLOCATOR_H_

#include <optional>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "wooly/scheduler/tenant.h"

namespace wooly::scheduler {

// How the GPU's SMs can be partitioned.
struct PartitionGeometry {
  int sm_count = 132;  // H100 SXM
  int unit_sms = 8;    // green-context SM granularity on the H100

  // Whole partition units on the device.
  int units() const { return unit_sms > 0 ? sm_count / unit_sms : 0; }

  static PartitionGeometry H100() { return PartitionGeometry{132, 8}; }
};

// OK when 0 < unit_sms <= sm_count.
absl::Status ValidateGeometry(const PartitionGeometry& geometry);

// One tenant's input to an allocation.
struct TenantDemand {
  TenantId id = 0;
  TenantPolicy policy;
  // It has work queued or running now.
  bool has_work = false;
  // An estimate of the largest share it could use now (for example from its
  // kernels' grid sizes); nullopt: as much as it is given.
  std::optional<double> usable_share;
};

// One tenant's result.
struct TenantTarget {
  TenantId id = 0;
  double target_share = 0.0;     // continuous target, a fraction of all SMs
  double floor_share = 0.0;      // floor held for it now (scaled; 0 without work)
  int units = 0;                 // partition units assigned
  int sms = 0;                   // units * unit_sms
  double partition_share = 0.0;  // sms / sm_count
};

struct Allocation {
  // In the order of the input.
  std::vector<TenantTarget> tenants;
  // The floors of the tenants with work exceeded the GPU and were multiplied
  // by floor_scale (< 1).
  bool floors_scaled = false;
  double floor_scale = 1.0;
  // 1 - sum of targets: compute left idle by caps or for lack of work.
  double idle_share = 1.0;
  int total_units = 0;     // geometry.units()
  int assigned_units = 0;  // sum of TenantTarget::units

  // The entry for `id`, or nullptr.
  const TenantTarget* Find(TenantId id) const;
};

// Computes targets and partition units. InvalidArgument for an invalid
// geometry or policy, a usable share outside [0, 1], or a repeated id.
absl::StatusOr<Allocation> Allocate(absl::Span<const TenantDemand> tenants,
                                    const PartitionGeometry& geometry);

}  // namespace wooly::scheduler

#endif  // WOOLY_SCHEDULER_ALLOCATOR_H_
