// The control loop, as a pure state machine: each Tick() takes every tenant's
// demand and measured share and returns one Decision per tenant for the
// mechanism (the server backend) to carry out:
//
//   target share and SM partition units   -> which green-context partition
//                                            the tenant's streams run in;
//   stream priority                        -> CUDA priority of its streams;
//   admission: run, pace (fraction), hold  -> server-side launch admission.
//
// Admission. A tenant "waits" when it has work, a nonzero target and launches
// queued (queue_depth > 0). A tenant whose measured share is above its target
// by more than pace_enter_margin while another tenant waits is paced: it may
// use GPU time for only pace_fraction of the wall time (pacer.h), adjusted
// every tick (multiplicatively, outside a dead band) until its share meets
// its target.
// It runs freely again once nobody else has waited for idle_grace, or once
// the fraction climbs back to 1. A tenant above its cap is paced whether or
// not anyone waits (caps are not work-conserving), including a tenant whose
// one partition unit is larger than its cap. A tenant with work but a zero
// target (strict priority gave everything to others and it has no floor) is
// held while another tenant waits.
//
// Hysteresis, so decisions do not flap:
//   - demand: a tenant stays active for idle_grace after the last tick that
//     saw it with work, so a momentarily empty queue changes nothing;
//   - usable-share estimates: a new allocation caused only by changed
//     estimates is applied once the allocation has differed from the current
//     one (by a unit, or by more than estimate_deadband of a target) at every
//     tick for estimate_confirm;
//   - measurements are smoothed (EWMA, measure_smoothing) and pacing has
//     separate enter and adjust thresholds.
// Changes of demand (a tenant gains work or goes idle), of the tenant set or
// of a policy are applied at once, at the first tick that sees them; a tenant
// going idle is noticed after idle_grace. So with ticks every T, reallocation
// follows a change in demand within idle_grace + T (400 ms with the defaults
// and T = 100 ms), and a change in estimates within estimate_confirm + T.
//
// Dithering. A share rarely maps to whole units: 1:1 over the 15 units of an
// H100 is 7.5 each, and rounding alone would give one tenant 8 units for as
// long as both run. With dither_units, tenants of the same priority level
// whose ideal unit count is fractional take turns at the rounded-up count:
// each keeps a credit (ideal minus given units, integrated over time) and a
// unit moves from the most over-served to the most under-served once their
// credits pass dither_credit. Averaged over a measurement window each then
// gets its fractional share. A move never crosses a floor, a cap or the
// rounded-down/up ideal, and never involves a tenant of another level.
//
// Thread safety: not thread-safe; one thread drives Tick(). The clock is
// read once per tick.
#ifndef WOOLY_SCHEDULER_CONTROLLER_H_
#define WOOLY_SCHEDULER_CONTROLLER_H_

#include <optional>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "wooly/scheduler/allocator.h"
#include "wooly/scheduler/clock.h"
#include "wooly/scheduler/measure.h"
#include "wooly/scheduler/tenant.h"

namespace wooly::scheduler {

enum class Admission {
  kRun,   // admit launches freely
  kPace,  // admit Decision::pace_fraction of them
  kHold,  // admit none for now
};
absl::string_view AdmissionName(Admission admission);

// One tenant's state at a tick, as the server sees it.
struct TenantInput {
  TenantId id = 0;
  TenantPolicy policy;
  bool has_work = false;               // launches queued or running
  int queue_depth = 0;                 // launches held by the server, not yet complete
  std::optional<double> usable_share;  // see TenantDemand::usable_share
  double measured_share = 0.0;         // achieved share over the control window
};

struct Decision {
  TenantId id = 0;
  double target_share = 0.0;
  int units = 0;  // partition units (see Allocation)
  int sms = 0;
  double partition_share = 0.0;
  int stream_priority = 0;  // CUDA stream priority, from StreamPriorityFor
  Admission admission = Admission::kRun;
  double pace_fraction = 1.0;   // 1 for kRun, 0 for kHold, (0, 1) for kPace
  double measured_share = 0.0;  // the smoothed measurement the decision used
  bool active = false;          // counted as having work (idle_grace included)
  bool changed = true;          // differs from this tenant's previous decision
};

struct ControllerOptions {
  PartitionGeometry geometry = PartitionGeometry::H100();
  // The device's stream priority range (cuCtxGetStreamPriorityRange); H100: 0, -5.
  int stream_priority_least = 0;
  int stream_priority_greatest = -5;
  absl::Duration idle_grace = absl::Milliseconds(300);
  absl::Duration estimate_confirm = absl::Milliseconds(300);
  double estimate_deadband = 0.02;  // target change ignored when caused by estimates alone
  double measure_smoothing = 0.5;   // weight of the newest measurement, (0, 1]
  double pace_enter_margin = 0.05;  // measured above limit by this much starts pacing
  double pace_deadband = 0.02;      // a paced tenant's fraction moves only outside this
  double min_pace_fraction = 0.05;  // pacing never admits less than this
  // The meter window TickWithMeter reads; short, so pacing sees its effect soon.
  absl::Duration control_window = absl::Milliseconds(250);
  // Dithering (above): on/off, and the credit, in unit-seconds, that moves a
  // unit (0.025: two tenants at x.5 units swap the odd unit every 200 ms, so
  // that the 250 ms control window already sees about their mean).
  bool dither_units = true;
  double dither_credit = 0.025;
};

absl::Status ValidateControllerOptions(const ControllerOptions& options);

class Controller {
 public:
  // InvalidArgument for invalid options.
  static absl::StatusOr<Controller> Create(ControllerOptions options, Clock clock);

  Controller(Controller&&) = default;
  Controller& operator=(Controller&&) = default;

  // One control step at clock() over the tenants present now (a tenant left
  // out is forgotten). Decisions are in input order. InvalidArgument for a
  // repeated id, an invalid policy, or a usable share outside [0, 1];
  // measured shares are clamped to [0, 1].
  absl::StatusOr<std::vector<Decision>> Tick(absl::Span<const TenantInput> tenants);

  // Tick() with each tenant's measured_share and queue_depth taken from the
  // meter (control_window; 0 for a tenant the meter does not know).
  absl::StatusOr<std::vector<Decision>> TickWithMeter(absl::Span<const TenantInput> tenants,
                                                      const UsageMeter& meter);

  // The allocation in force after the last tick.
  const Allocation& allocation() const { return applied_; }
  const ControllerOptions& options() const { return options_; }

 private:
  struct TenantState {
    absl::Time last_work = absl::InfinitePast();
    absl::Time last_waited = absl::InfinitePast();
    bool seen = false;
    double smoothed = 0.0;
    double pace = 1.0;  // the feedback fraction while paced
    bool pacing = false;
    std::optional<Decision> last;
    int dithered_units = 0;      // units given at the last tick (dithering)
    double dither_credit = 0.0;  // unit-seconds owed to it (+) or by it (-)
  };
  // What makes a change structural: the tenant set, policies, who is active.
  struct Shape {
    TenantId id;
    TenantPolicy policy;
    bool active;
    friend bool operator==(const Shape&, const Shape&) = default;
  };

  Controller(ControllerOptions options, Clock clock)
      : options_(std::move(options)), clock_(std::move(clock)) {}
  bool Differs(const Allocation& a, const Allocation& b) const;
  // The units each tenant (input order) gets this tick: applied_'s, dithered.
  std::vector<int> DitherUnits(absl::Span<const TenantInput> tenants, absl::Time now);

  ControllerOptions options_;
  Clock clock_;
  absl::flat_hash_map<TenantId, TenantState> states_;
  std::vector<Shape> applied_shape_;  // sorted by id
  Allocation applied_;
  // Dithering: the applied units it started from (by id) and the last tick.
  std::vector<std::pair<TenantId, int>> dither_base_;
  absl::Time last_tick_ = absl::InfinitePast();
  bool have_applied_ = false;
  // When the candidate allocation first differed from applied_ (estimates).
  std::optional<absl::Time> differs_since_;
};

}  // namespace wooly::scheduler

#endif  // WOOLY_SCHEDULER_CONTROLLER_H_
