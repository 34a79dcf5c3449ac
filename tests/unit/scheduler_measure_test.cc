// Scheduler measurement and control loop (issue 5), on a manual clock: the
// usage meter's sliding windows, and the controller's reallocation, pacing
// and hysteresis. Time only moves when a test advances it.
#include <optional>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "wooly/scheduler/clock.h"
#include "wooly/scheduler/controller.h"
#include "wooly/scheduler/measure.h"

namespace wooly::scheduler {
namespace {

using ::testing::DoubleNear;
using ::testing::HasSubstr;

constexpr double kTol = 1e-9;
absl::Duration Ms(int64_t ms) { return absl::Milliseconds(ms); }

// ------------------------------------------------------------------ meter --

class MeterTest : public ::testing::Test {
 protected:
  MeterTest() : meter_(clock_.AsClock()) {
    // Tenants are known long before the test's intervals, so every window
    // spans its full length.
    meter_.AddTenant(1);
    meter_.AddTenant(2);
    clock_.Advance(absl::Seconds(60));
    now_ = clock_.Now();
  }

  void Record(TenantId id, absl::Duration from_ago, absl::Duration to_ago, double share = 1.0,
              int64_t kernels = 1) {
    const absl::Status s = meter_.Record(id, {now_ - from_ago, now_ - to_ago, share, kernels});
    ASSERT_TRUE(s.ok()) << s;
  }
  WindowUsage Window(TenantId id, absl::Duration w) { return meter_.Window(id, w).value(); }

  ManualClock clock_;
  UsageMeter meter_;
  absl::Time now_;
};

TEST_F(MeterTest, WindowsEndWhereTheRecordsAreComplete) {
  // Busy on half the SMs without a pause; its work of the last 50 ms is
  // still queued on the GPU, so only [-450, -50] ms has been reported.
  Record(1, Ms(450), Ms(50), 0.5);
  EXPECT_NEAR(Window(1, Ms(250)).achieved_share, 0.4, kTol);  // the tail looks idle
  meter_.SetCompleteUntil(1, now_ - Ms(50));
  const WindowUsage w = Window(1, Ms(250));
  EXPECT_EQ(w.span, Ms(250));
  EXPECT_EQ(w.busy, Ms(250));
  EXPECT_NEAR(w.achieved_share, 0.5, kTol);
  EXPECT_NEAR(meter_.Usage(1)->windows[0].achieved_share, 0.5 * 400 / 1000, kTol);
  // Other tenants keep ending now; so does this one once it is complete
  // again, or given a time in the future.
  EXPECT_NEAR(Window(2, Ms(250)).achieved_share, 0.0, kTol);
  meter_.SetCompleteUntil(1, absl::InfiniteFuture());
  EXPECT_NEAR(Window(1, Ms(250)).achieved_share, 0.4, kTol);
  meter_.SetCompleteUntil(1, now_ + absl::Seconds(5));
  EXPECT_NEAR(Window(1, Ms(250)).achieved_share, 0.4, kTol);
  // A tenant first seen after that time has nothing to show yet.
  meter_.SetCompleteUntil(3, now_ - Ms(10));
  EXPECT_EQ(Window(3, Ms(250)).span, absl::ZeroDuration());
}

TEST_F(MeterTest, BusyTimeKernelsAndShareInAWindow) {
  Record(1, Ms(800), Ms(600), 1.0, 3);
  Record(1, Ms(400), Ms(300), 0.5, 2);
  const WindowUsage w = Window(1, absl::Seconds(1));
  EXPECT_EQ(w.window, absl::Seconds(1));
  EXPECT_EQ(w.span, absl::Seconds(1));
  EXPECT_EQ(w.busy, Ms(300));
  EXPECT_EQ(w.kernels, 5);
  EXPECT_NEAR(w.achieved_share, 0.2 + 0.05, kTol);
  EXPECT_NEAR(w.busy_fraction, 0.3, kTol);
  // The other tenant saw nothing.
  EXPECT_EQ(Window(2, absl::Seconds(1)).busy, absl::ZeroDuration());
  EXPECT_FALSE(meter_.Window(99, absl::Seconds(1)).has_value());
}

TEST_F(MeterTest, OverlappingIntervalsOfOneTenantCountOnce) {
  Record(1, Ms(700), Ms(300));
  Record(1, Ms(900), Ms(500));  // overlaps, recorded out of order
  Record(1, Ms(800), Ms(600));  // inside both
  Record(1, Ms(900), Ms(500));  // the same batch reported twice
  WindowUsage w = Window(1, absl::Seconds(1));
  EXPECT_EQ(w.busy, Ms(600));  // union, not the sum (1.6 s)
  EXPECT_NEAR(w.achieved_share, 0.6, kTol);
  EXPECT_EQ(w.kernels, 4);

  // Different shares: where they overlap, the larger one holds.
  Record(2, Ms(900), Ms(500), 0.5);
  Record(2, Ms(700), Ms(300), 0.25);
  w = Window(2, absl::Seconds(1));
  EXPECT_EQ(w.busy, Ms(600));
  EXPECT_NEAR(w.achieved_share, 0.4 * 0.5 + 0.2 * 0.25, kTol);
  // Touching intervals join; a zero-length one adds kernels but no time.
  Record(2, Ms(300), Ms(200), 0.25);
  Record(2, Ms(100), Ms(100), 0.25, 7);
  w = Window(2, absl::Seconds(1));
  EXPECT_EQ(w.busy, Ms(700));
  EXPECT_EQ(w.kernels, 10);
}

TEST_F(MeterTest, IntervalsStraddlingTheWindowStartCountInPart) {
  Record(1, Ms(1500), Ms(500), 1.0, 1);
  Record(1, Ms(3000), Ms(1600), 1.0, 4);
  WindowUsage w = Window(1, absl::Seconds(1));
  EXPECT_EQ(w.busy, Ms(500));
  EXPECT_NEAR(w.achieved_share, 0.5, kTol);
  EXPECT_EQ(w.kernels, 1);  // kernels count where their interval ended
  w = Window(1, absl::Seconds(10));
  EXPECT_EQ(w.busy, Ms(2400));
  EXPECT_NEAR(w.achieved_share, 0.24, kTol);
  EXPECT_EQ(w.kernels, 5);
  // An interval reported as ending after "now" counts up to now.
  Record(2, Ms(200), -Ms(300));
  EXPECT_EQ(Window(2, absl::Seconds(1)).busy, Ms(200));
}

TEST_F(MeterTest, WindowsSlideAndOldIntervalsAreDropped) {
  Record(1, Ms(500), Ms(100), 1.0, 2);
  clock_.Advance(absl::Seconds(1));
  EXPECT_EQ(Window(1, absl::Seconds(1)).busy, absl::ZeroDuration());
  EXPECT_EQ(Window(1, absl::Seconds(10)).busy, Ms(400));
  clock_.Advance(absl::Seconds(10));
  meter_.SetQueueDepth(1, 0);  // any update prunes
  EXPECT_EQ(Window(1, absl::Seconds(10)).busy, absl::ZeroDuration());
  const TenantUsage u = meter_.Usage(1).value();
  EXPECT_EQ(u.total_busy, Ms(400));  // totals keep what was dropped
  EXPECT_EQ(u.total_kernels, 2);
  // An interval older than the retention horizon only adds to the totals.
  ASSERT_TRUE(
      meter_.Record(1, {clock_.Now() - absl::Seconds(30), clock_.Now() - absl::Seconds(29), 1.0, 1})
          .ok());
  EXPECT_EQ(meter_.Usage(1)->total_busy, Ms(1400));
  EXPECT_EQ(Window(1, absl::Seconds(10)).busy, absl::ZeroDuration());
  // A window longer than the retention sees only the retention.
  EXPECT_EQ(Window(1, absl::Seconds(60)).span, absl::Seconds(10));
  EXPECT_EQ(Window(1, absl::Seconds(60)).window, absl::Seconds(60));
}

TEST_F(MeterTest, ReportsConfiguredWindowsAndQueueDepth) {
  Record(1, Ms(2000), Ms(1000), 0.5);
  meter_.SetQueueDepth(1, 3);
  const TenantUsage u = meter_.Usage(1).value();
  EXPECT_EQ(u.id, 1u);
  EXPECT_EQ(u.queue_depth, 3);
  ASSERT_EQ(u.windows.size(), 2u);
  EXPECT_EQ(u.windows[0].window, absl::Seconds(1));
  EXPECT_EQ(u.windows[0].busy, absl::ZeroDuration());
  EXPECT_EQ(u.windows[1].window, absl::Seconds(10));
  EXPECT_NEAR(u.windows[1].achieved_share, 0.05, kTol);
  meter_.SetQueueDepth(1, -4);
  EXPECT_EQ(meter_.Usage(1)->queue_depth, 0);

  const std::vector<TenantUsage> all = meter_.Snapshot();
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(all[0].id, 1u);
  EXPECT_EQ(all[1].id, 2u);
  meter_.RemoveTenant(1);
  EXPECT_FALSE(meter_.Usage(1).has_value());
}

TEST_F(MeterTest, ANewTenantIsMeasuredSinceItWasFirstSeen) {
  // First seen through an interval that began 200 ms ago.
  Record(7, Ms(200), Ms(100), 1.0);
  WindowUsage w = Window(7, absl::Seconds(1));
  EXPECT_EQ(w.span, Ms(200));
  EXPECT_NEAR(w.achieved_share, 0.5, kTol);
  meter_.AddTenant(8);
  clock_.Advance(Ms(250));
  EXPECT_EQ(Window(8, absl::Seconds(1)).span, Ms(250));
  clock_.Advance(absl::Seconds(5));
  EXPECT_EQ(Window(8, absl::Seconds(1)).span, absl::Seconds(1));
}

TEST_F(MeterTest, RejectsBadIntervals) {
  EXPECT_EQ(meter_.Record(1, {now_, now_ - Ms(1), 1.0, 1}).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(meter_.Record(1, {now_ - Ms(1), now_, 0.0, 1}).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(meter_.Record(1, {now_ - Ms(1), now_, 1.5, 1}).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(meter_.Record(1, {now_ - Ms(1), now_, 1.0, -1}).code(),
            absl::StatusCode::kInvalidArgument);
  const UsageInterval on_sms = UsageInterval::OnSms(now_ - Ms(10), now_, 40, 132, 2);
  EXPECT_NEAR(on_sms.share, 40.0 / 132, kTol);
  EXPECT_EQ(on_sms.kernels, 2);
}

TEST_F(MeterTest, ConcurrentRecordingIsConsistent) {
  // Four threads report the same 1000 batches (as four streams might):
  // the union is what counts, every kernel is counted.
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 1000; ++i) {
        const absl::Time start = now_ - absl::Seconds(5) + Ms(i);
        ASSERT_TRUE(meter_.Record(1, {start, start + absl::Microseconds(500), 1.0, 1}).ok());
        if (i % 100 == 0) meter_.Snapshot();
      }
    });
  }
  for (std::thread& t : threads) t.join();
  const WindowUsage w = Window(1, absl::Seconds(10));
  EXPECT_EQ(w.busy, Ms(500));
  EXPECT_EQ(w.kernels, 4000);
}

// ------------------------------------------------------------- controller --

TenantPolicy Policy(int priority, double weight = 1.0, std::optional<double> cap = std::nullopt) {
  TenantPolicy p;
  p.priority = priority;
  p.weight = weight;
  p.cap_share = cap;
  return p;
}

TenantInput In(TenantId id, TenantPolicy policy, bool has_work, int queue, double measured,
               std::optional<double> usable = std::nullopt) {
  TenantInput in;
  in.id = id;
  in.policy = policy;
  in.has_work = has_work;
  in.queue_depth = queue;
  in.measured_share = measured;
  in.usable_share = usable;
  return in;
}

class ControllerTest : public ::testing::Test {
 protected:
  static constexpr absl::Duration kTick = absl::Milliseconds(100);

  ControllerTest() : controller_(Controller::Create({}, clock_.AsClock()).value()) {}

  // Advances the clock by one tick period, then ticks.
  std::vector<Decision> Step(const std::vector<TenantInput>& in) {
    clock_.Advance(kTick);
    absl::StatusOr<std::vector<Decision>> d = controller_.Tick(in);
    EXPECT_TRUE(d.ok()) << d.status();
    return d.ok() ? *d : std::vector<Decision>(in.size());
  }

  ManualClock clock_;
  Controller controller_;
};

TEST_F(ControllerTest, ReallocatesWithinOneSecondOfADemandChange) {
  const TenantPolicy decode = Policy(0), train = Policy(4);
  auto both = [&](bool train_busy) {
    return std::vector<TenantInput>{In(1, decode, true, 1, 0.4, 0.4),
                                    In(2, train, train_busy, train_busy ? 4 : 0, 0.6)};
  };
  std::vector<Decision> d;
  for (int i = 0; i < 10; ++i) d = Step(both(true));
  EXPECT_NEAR(d[0].target_share, 0.4, kTol);
  EXPECT_NEAR(d[1].target_share, 0.6, kTol);
  EXPECT_EQ(d[0].units + d[1].units, 16);
  EXPECT_EQ(d[0].stream_priority, -5);
  EXPECT_EQ(d[1].stream_priority, 0);

  // The trainer goes idle: the decoder gets the whole GPU within a second.
  const absl::Time stopped = clock_.Now();
  std::optional<absl::Time> moved;
  int changes = 0;
  while (clock_.Now() < stopped + absl::Seconds(2)) {
    d = Step(both(false));
    if (d[0].changed) ++changes;
    if (!moved && d[0].target_share > 1.0 - kTol) moved = clock_.Now();
  }
  ASSERT_TRUE(moved.has_value());
  EXPECT_LE(*moved - stopped, absl::Seconds(1));
  EXPECT_EQ(changes, 1);  // one move, no back and forth
  EXPECT_EQ(d[0].units, 16);
  EXPECT_EQ(d[1].units, 0);
  EXPECT_FALSE(d[1].active);

  // It comes back: it gets its share at the first tick that sees it.
  d = Step(both(true));
  EXPECT_TRUE(d[1].changed);
  EXPECT_NEAR(d[1].target_share, 0.6, kTol);
  EXPECT_NEAR(d[0].target_share, 0.4, kTol);
}

TEST_F(ControllerTest, AMomentarilyEmptyQueueChangesNothing) {
  const TenantPolicy p = Policy(2);
  std::vector<Decision> d = Step({In(1, p, true, 2, 0.5), In(2, p, true, 2, 0.5)});
  for (int i = 0; i < 40; ++i) {
    const bool blip = i % 2 == 0;  // tenant 2's queue drains every other tick
    d = Step({In(1, p, true, 2, 0.5), In(2, p, !blip, blip ? 0 : 2, 0.5)});
    EXPECT_FALSE(d[0].changed) << i;
    EXPECT_FALSE(d[1].changed) << i;
    EXPECT_TRUE(d[1].active);
    EXPECT_NEAR(d[1].target_share, 0.5, kTol);
  }
}

TEST_F(ControllerTest, NoisyMeasurementsDoNotFlapDecisions) {
  const TenantPolicy p = Policy(2);
  // Deterministic noise of up to 4 points around a 50/50 split.
  const double noise[] = {0.04, -0.03, 0.01, 0.04, -0.04, 0.02, 0.035, -0.01, 0.03, 0.04};
  std::vector<Decision> d = Step({In(1, p, true, 3, 0.5), In(2, p, true, 3, 0.5)});
  for (int i = 0; i < 100; ++i) {
    const double n = noise[i % 10];
    d = Step({In(1, p, true, 3, 0.5 + n), In(2, p, true, 3, 0.5 - n)});
    for (const Decision& x : d) {
      EXPECT_EQ(x.admission, Admission::kRun) << i;
      EXPECT_FALSE(x.changed) << i;
      EXPECT_EQ(x.units, 8);
    }
  }
}

TEST_F(ControllerTest, PacesATenantOverItsTargetWhileAnotherWaits) {
  const TenantPolicy p = Policy(2);
  // Tenant 1 would take 80 % if let; tenant 2 has work queued.
  std::vector<Decision> d = Step({In(1, p, true, 1, 0.8), In(2, p, true, 5, 0.2)});
  EXPECT_EQ(d[0].admission, Admission::kPace);
  EXPECT_NEAR(d[0].pace_fraction, 0.5 / 0.8, kTol);
  EXPECT_EQ(d[1].admission, Admission::kRun);

  // A simple plant: tenant 1 gets fraction * 80 %, give or take 1.5 points.
  const double noise[] = {0.015, -0.01, 0.005, -0.015, 0.01, 0.0, -0.005, 0.015};
  int transitions = 0;
  Admission last = d[0].admission;
  for (int i = 0; i < 60; ++i) {
    const double m1 = d[0].pace_fraction * 0.8 + noise[i % 8];
    d = Step({In(1, p, true, 1, m1), In(2, p, true, 5, 1.0 - m1)});
    transitions += d[0].admission != last;
    last = d[0].admission;
    if (i >= 20) {
      EXPECT_NEAR(d[0].measured_share, 0.5, 0.03) << i;  // settled
    }
  }
  EXPECT_EQ(transitions, 0);  // paced throughout, no flapping
  EXPECT_EQ(last, Admission::kPace);

  // Tenant 2 runs out of work: tenant 1 is let go within a second.
  const absl::Time drained = clock_.Now();
  std::optional<absl::Time> released;
  while (clock_.Now() < drained + absl::Seconds(2)) {
    const double m1 = d[0].pace_fraction * 0.8;
    d = Step({In(1, p, true, 1, m1), In(2, p, false, 0, 0.0)});
    if (!released && d[0].admission == Admission::kRun) released = clock_.Now();
    if (released) {
      EXPECT_EQ(d[0].admission, Admission::kRun);
    }
  }
  ASSERT_TRUE(released.has_value());
  EXPECT_LE(*released - drained, absl::Seconds(1));
  EXPECT_NEAR(d[0].target_share, 1.0, kTol);
}

TEST_F(ControllerTest, EstimateChangesAreConfirmedBeforeTheyMoveUnits) {
  const TenantPolicy decode = Policy(0), train = Policy(4);
  auto inputs = [&](double usable) {
    // Measured shares as the partitions allow; only the estimate moves.
    return std::vector<TenantInput>{In(1, decode, true, 1, 0.3, usable),
                                    In(2, train, true, 4, 0.7)};
  };
  std::vector<Decision> d = Step(inputs(0.30));
  const Decision first = d[0];
  // An estimate that wobbles between 30 % and 34 % moves nothing.
  for (int i = 0; i < 30; ++i) {
    d = Step(inputs(i % 2 == 0 ? 0.34 : 0.30));
    EXPECT_FALSE(d[0].changed) << i;
    EXPECT_NEAR(d[0].target_share, first.target_share, kTol);
  }
  // A lasting change is applied, once, within a second.
  const absl::Time changed_at = clock_.Now();
  std::optional<absl::Time> applied;
  int changes = 0;
  while (clock_.Now() < changed_at + absl::Seconds(2)) {
    d = Step(inputs(0.60));
    changes += d[0].changed;
    if (!applied && std::abs(d[0].target_share - 0.60) < kTol) applied = clock_.Now();
  }
  ASSERT_TRUE(applied.has_value());
  EXPECT_LE(*applied - changed_at, absl::Seconds(1));
  EXPECT_EQ(changes, 1);
}

TEST_F(ControllerTest, HoldsAZeroTargetTenantWhileHigherPriorityWorkWaits) {
  const TenantPolicy high = Policy(0), low = Policy(4);
  std::vector<Decision> d = Step({In(1, high, true, 3, 0.9), In(2, low, true, 2, 0.1)});
  EXPECT_NEAR(d[1].target_share, 0.0, kTol);
  EXPECT_EQ(d[1].admission, Admission::kHold);
  EXPECT_EQ(d[1].pace_fraction, 0.0);
  EXPECT_EQ(d[0].admission, Admission::kRun);

  // The high-priority tenant finishes: the low one gets the GPU within a second.
  const absl::Time done = clock_.Now();
  std::optional<absl::Time> running;
  while (clock_.Now() < done + absl::Seconds(2)) {
    d = Step({In(1, high, false, 0, 0.0), In(2, low, true, 2, 0.1)});
    if (!running && d[1].admission == Admission::kRun && d[1].units == 16) running = clock_.Now();
  }
  ASSERT_TRUE(running.has_value());
  EXPECT_LE(*running - done, absl::Seconds(1));
}

TEST_F(ControllerTest, CapsArePacedEvenWhenNobodyWaits) {
  // A cap below one 8-SM unit: one unit, paced down to the cap a priori.
  std::vector<Decision> d = Step({In(1, Policy(2, 1, 0.05), true, 1, 0.0)});
  EXPECT_EQ(d[0].units, 1);
  EXPECT_EQ(d[0].admission, Admission::kPace);
  EXPECT_NEAR(d[0].pace_fraction, 0.05 / (8.0 / 132), kTol);

  // A tenant measured above its cap (say, not confined to a partition).
  Controller c = Controller::Create({}, clock_.AsClock()).value();
  clock_.Advance(kTick);
  std::vector<Decision> e = c.Tick({In(1, Policy(2, 1, 0.3), true, 1, 0.5)}).value();
  EXPECT_EQ(e[0].admission, Admission::kPace);
  EXPECT_NEAR(e[0].pace_fraction, 0.6, kTol);

  // A cap of 0 stops the tenant.
  clock_.Advance(kTick);
  e = c.Tick({In(1, Policy(2, 1, 0.0), true, 1, 0.0)}).value();
  EXPECT_EQ(e[0].admission, Admission::kHold);
}

TEST_F(ControllerTest, TicksFromTheMeter) {
  UsageMeter meter(clock_.AsClock());
  meter.AddTenant(1);
  meter.AddTenant(2);
  clock_.Advance(absl::Seconds(5));
  const absl::Time now = clock_.Now();
  ASSERT_TRUE(meter.Record(1, {now - Ms(250), now, 0.9, 10}).ok());
  meter.SetQueueDepth(2, 4);
  const TenantPolicy p = Policy(2);
  std::vector<Decision> d =
      controller_.TickWithMeter({In(1, p, true, 0, 0.0), In(2, p, true, 0, 0.0)}, meter).value();
  EXPECT_NEAR(d[0].measured_share, 0.9, kTol);
  EXPECT_EQ(d[0].admission, Admission::kPace);  // tenant 2 waits with 4 queued
  EXPECT_NEAR(d[0].pace_fraction, 0.5 / 0.9, kTol);
  EXPECT_EQ(d[1].admission, Admission::kRun);
}

TEST_F(ControllerTest, RejectsBadInputAndOptions) {
  const TenantPolicy p = Policy(2);
  EXPECT_EQ(controller_.Tick({In(1, p, true, 0, 0), In(1, p, true, 0, 0)}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(controller_.Tick({In(1, Policy(9), true, 0, 0)}).status().message(),
              HasSubstr("priority"));
  ControllerOptions o;
  o.pace_deadband = 0.1;
  o.pace_enter_margin = 0.05;
  EXPECT_EQ(Controller::Create(o, clock_.AsClock()).status().code(),
            absl::StatusCode::kInvalidArgument);
  o = ControllerOptions{};
  o.geometry.unit_sms = 0;
  EXPECT_FALSE(Controller::Create(o, clock_.AsClock()).ok());
  EXPECT_FALSE(Controller::Create({}, Clock()).ok());
  EXPECT_EQ(AdmissionName(Admission::kPace), "pace");
}

// Dithering: over the 15 units of an H100's partitions (what woolyd uses),
// 1:1 is 7.5 units each. The rounded-up count changes hands, so each gets its
// share on average, and nobody ever leaves [7, 8].
class DitherTest : public ::testing::Test {
 protected:
  static Controller Make(bool dither) {
    ControllerOptions o;
    o.geometry = PartitionGeometry{120, 8};
    o.dither_units = dither;
    return Controller::Create(o, TestClock()).value();
  }
  static Clock TestClock() {
    return [] { return now_; };
  }
  // Ticks `n` times, 100 ms apart; returns each tenant's mean units.
  std::vector<double> Run(Controller& c, const std::vector<TenantInput>& in, int n,
                          std::vector<std::vector<int>>* seen = nullptr) {
    std::vector<double> sum(in.size(), 0.0);
    for (int i = 0; i < n; ++i) {
      now_ += absl::Milliseconds(100);
      absl::StatusOr<std::vector<Decision>> d = c.Tick(in);
      EXPECT_TRUE(d.ok()) << d.status();
      if (!d.ok()) break;
      int total = 0;
      for (size_t k = 0; k < in.size(); ++k) {
        sum[k] += (*d)[k].units;
        total += (*d)[k].units;
        EXPECT_EQ((*d)[k].sms, (*d)[k].units * 8);
        if (seen) (*seen)[k].push_back((*d)[k].units);
      }
      EXPECT_LE(total, 15);
    }
    for (double& x : sum) x /= n;
    return sum;
  }
  static inline absl::Time now_ = absl::UnixEpoch();
};

TEST_F(DitherTest, EqualTenantsTakeTurnsAtTheOddUnit) {
  Controller c = Make(true);
  const TenantPolicy p = Policy(2);
  std::vector<std::vector<int>> seen(2);
  const std::vector<double> mean =
      Run(c, {In(1, p, true, 2, 0.5), In(2, p, true, 2, 0.5)}, 100, &seen);
  EXPECT_NEAR(mean[0], 7.5, 0.05);
  EXPECT_NEAR(mean[1], 7.5, 0.05);
  int changes = 0;
  for (size_t i = 0; i < seen[0].size(); ++i) {
    EXPECT_GE(seen[0][i], 7);
    EXPECT_LE(seen[0][i], 8);
    EXPECT_EQ(seen[0][i] + seen[1][i], 15);
    if (i > 0 && seen[0][i] != seen[0][i - 1]) ++changes;
  }
  // Each holds the odd unit for 200 ms (0.025 unit-seconds of credit each
  // way at half a unit per second, rounded up to whole ticks): one change
  // per 2 ticks.
  EXPECT_LE(changes, 52);
  EXPECT_GE(changes, 45);
  // And never for less than two ticks in a row.
  for (size_t i = 2; i < seen[0].size(); ++i) {
    EXPECT_FALSE(seen[0][i] != seen[0][i - 1] && seen[0][i - 1] != seen[0][i - 2]) << i;
  }

  // Without dithering the tie always goes the same way.
  Controller fixed = Make(false);
  const std::vector<double> m2 = Run(fixed, {In(1, p, true, 2, 0.5), In(2, p, true, 2, 0.5)}, 20);
  EXPECT_NE(m2[0], m2[1]);
  EXPECT_EQ(m2[0] + m2[1], 15);
}

TEST_F(DitherTest, WeightedSharesAverageOutToTheirTargets) {
  Controller c = Make(true);
  // 3:7 is 4.5 and 10.5 units.
  const std::vector<double> mean =
      Run(c, {In(1, Policy(2, 3), true, 2, 0.3), In(2, Policy(2, 7), true, 2, 0.7)}, 200);
  EXPECT_NEAR(mean[0], 4.5, 0.05);
  EXPECT_NEAR(mean[1], 10.5, 0.05);
}

TEST_F(DitherTest, LevelsFloorsAndCapsAreKept) {
  // Different priority levels never trade units.
  {
    Controller c = Make(true);
    TenantPolicy hi = Policy(0, 1.0, 0.5);  // capped at 7.5 units: 7
    std::vector<std::vector<int>> seen(2);
    Run(c, {In(1, hi, true, 2, 0.5), In(2, Policy(4), true, 2, 0.5)}, 50, &seen);
    for (size_t i = 0; i < seen[0].size(); ++i) {
      EXPECT_EQ(seen[0][i], 7) << i;  // never above its cap
      EXPECT_EQ(seen[1][i], 8) << i;
    }
  }
  // A floor of 8 units (8/15 of the SMs) is never dithered below.
  {
    Controller c = Make(true);
    TenantPolicy floored = Policy(2);
    floored.floor_share = 8.0 / 15;
    std::vector<std::vector<int>> seen(2);
    Run(c, {In(1, floored, true, 2, 0.5), In(2, Policy(2), true, 2, 0.5)}, 50, &seen);
    for (int u : seen[0]) EXPECT_GE(u, 8);
  }
  // Whole-unit shares are never moved.
  {
    Controller c = Make(true);
    std::vector<std::vector<int>> seen(3);
    Run(c,
        {In(1, Policy(2), true, 2, 0.33), In(2, Policy(2), true, 2, 0.33),
         In(3, Policy(2), true, 2, 0.33)},
        50, &seen);
    for (const std::vector<int>& v : seen) {
      for (int u : v) EXPECT_EQ(u, 5);
    }
  }
}

TEST_F(DitherTest, ANewAllocationStartsFromItsOwnRounding) {
  Controller c = Make(true);
  const TenantPolicy p = Policy(2);
  Run(c, {In(1, p, true, 2, 0.5), In(2, p, true, 2, 0.5)}, 7);
  // A third tenant arrives: 5 units each, at once, whatever the credits.
  now_ += absl::Milliseconds(100);
  absl::StatusOr<std::vector<Decision>> d =
      c.Tick({In(1, p, true, 2, 0.5), In(2, p, true, 2, 0.5), In(3, p, true, 2, 0.0)});
  ASSERT_TRUE(d.ok());
  for (const Decision& x : *d) EXPECT_EQ(x.units, 5);
}

}  // namespace
}  // namespace wooly::scheduler
