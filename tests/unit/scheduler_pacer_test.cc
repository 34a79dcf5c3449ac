// The launch pacer (scheduler/pacer.h), a token bucket over GPU time, on a
// manual clock. A small simulation plays a tenant that always has a launch
// ready, a GPU that runs its launches in order, and a control tick that
// reports completed launches every 100 ms, as woolyd's ShareControl does.
// Time only moves when a test advances it.
#include <algorithm>
#include <cstdint>
#include <deque>
#include <functional>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "wooly/scheduler/clock.h"
#include "wooly/scheduler/pacer.h"

namespace wooly::scheduler {
namespace {

using ::testing::HasSubstr;

absl::Duration Ms(double ms) { return absl::Microseconds(ms * 1000.0); }
double ToMs(absl::Duration d) { return absl::ToDoubleMilliseconds(d); }

// Options with a first per-launch estimate (and a minimum wait).
PacerOptions WithEstimate(absl::Duration estimate,
                          absl::Duration min_wait = PacerOptions{}.min_wait) {
  PacerOptions o;
  o.initial_estimate = estimate;
  o.min_wait = min_wait;
  return o;
}

// ------------------------------------------------------------ simulation --

// A tenant that launches whenever the pacer admits it, through a serial GPU.
// Waits are capped at 100 ms and re-checked, as in woolyd.
class Simulation {
 public:
  struct Options {
    double pace = 1.0 / 3;
    // GPU time of the n-th launch.
    std::function<absl::Duration(int64_t)> gpu_time = [](int64_t) { return Ms(1); };
    // Host time between two launches of the tenant.
    absl::Duration host_gap = absl::Microseconds(10);
    // What a completed launch is measured as (default: its GPU time).
    std::function<absl::Duration(absl::Duration)> measure = [](absl::Duration d) { return d; };
    absl::Duration tick = Ms(100);
    PacerOptions pacer;
  };

  explicit Simulation(Options options)
      : options_(std::move(options)), pacer_(clock_.AsClock(), options_.pacer) {
    pacer_.SetPace(options_.pace);
    next_tick_ = clock_.Now() + options_.tick;
    gpu_free_ = clock_.Now();
  }

  // Runs for `wall`; returns the GPU time admitted in it.
  absl::Duration Run(absl::Duration wall) {
    const absl::Time end = clock_.Now() + wall;
    absl::Duration admitted;
    while (clock_.Now() < end) {
      const absl::Duration wait = pacer_.Admit();
      absl::Time next;
      if (wait == absl::ZeroDuration()) {
        const absl::Duration d = options_.gpu_time(launches_++);
        const absl::Time start = std::max(clock_.Now(), gpu_free_);
        gpu_free_ = start + d;
        running_.push_back({gpu_free_, d});
        admitted += d;
        next = clock_.Now() + options_.host_gap;
      } else {
        ++waits_;
        next = clock_.Now() + std::min(wait, Ms(100));
      }
      next = std::min(next, end);
      while (next_tick_ <= next) {
        clock_.Set(next_tick_);
        Harvest();
        next_tick_ += options_.tick;
      }
      clock_.Set(next);
    }
    return admitted;
  }

  // Changes the pace at the current instant.
  void SetPace(double pace) { pacer_.SetPace(pace); }
  Pacer& pacer() { return pacer_; }
  ManualClock& clock() { return clock_; }
  int64_t waits() const { return waits_; }

 private:
  struct Launch {
    absl::Time done;
    absl::Duration gpu;
  };
  // The control tick: launches that have completed are measured together.
  void Harvest() {
    int64_t n = 0;
    absl::Duration busy;
    while (!running_.empty() && running_.front().done <= clock_.Now()) {
      busy += options_.measure(running_.front().gpu);
      running_.pop_front();
      ++n;
    }
    if (n > 0) pacer_.Measured(n, busy);
  }

  Options options_;
  ManualClock clock_;
  Pacer pacer_;
  absl::Time next_tick_;
  absl::Time gpu_free_;
  std::deque<Launch> running_;
  int64_t launches_ = 0;
  int64_t waits_ = 0;
};

// ------------------------------------------------------------------ tests --

TEST(PacerTest, ValidatesOptions) {
  EXPECT_TRUE(ValidatePacerOptions({}).ok());
  PacerOptions o;
  o.burst_window = -Ms(1);
  EXPECT_THAT(std::string(ValidatePacerOptions(o).message()), HasSubstr("burst_window"));
  o = {};
  o.estimate_smoothing = 1.5;
  EXPECT_THAT(std::string(ValidatePacerOptions(o).message()), HasSubstr("estimate_smoothing"));
  o = {};
  o.max_outstanding = 0;
  EXPECT_THAT(std::string(ValidatePacerOptions(o).message()), HasSubstr("max_outstanding"));
  o = {};
  o.min_pace = 0;
  EXPECT_THAT(std::string(ValidatePacerOptions(o).message()), HasSubstr("min_pace"));
}

TEST(PacerTest, UnpacedAdmitsEverythingAndDebitsNothing) {
  ManualClock clock;
  Pacer pacer(clock.AsClock());
  EXPECT_FALSE(pacer.pacing());
  for (int i = 0; i < 1000; ++i) EXPECT_EQ(pacer.Admit(), absl::ZeroDuration());
  EXPECT_EQ(pacer.outstanding(), 0);
  EXPECT_EQ(pacer.credit(), absl::ZeroDuration());
  pacer.SetPace(1.0);  // a fraction of 1 is no pacing
  EXPECT_FALSE(pacer.pacing());
  EXPECT_EQ(pacer.pace(), 1.0);
}

// Starting to pace fills the bucket: the tenant is not stalled at the switch.
// The bucket holds pace * burst_window (50 ms of wall time by default).
TEST(PacerTest, StartsWithAFullBucketBoundedByTheBurst) {
  ManualClock clock;
  PacerOptions o = WithEstimate(Ms(1));
  Pacer pacer(clock.AsClock(), o);
  pacer.SetPace(0.5);
  EXPECT_TRUE(pacer.pacing());
  EXPECT_EQ(pacer.capacity(), Ms(25));
  EXPECT_EQ(pacer.credit(), Ms(25));
  // Admitted while the credit is not negative: 25 launches use it up and a
  // 26th runs on credit that is exactly zero.
  int admitted = 0;
  while (pacer.Admit() == absl::ZeroDuration()) ++admitted;
  EXPECT_EQ(admitted, 26);
  EXPECT_EQ(pacer.outstanding(), 26);
  // A long idle stretch refills the bucket to its bound, not beyond.
  clock.Advance(absl::Seconds(10));
  EXPECT_EQ(pacer.credit(), Ms(25));
}

TEST(PacerTest, WaitIsTheTimeUntilTheDebtIsRepaid) {
  ManualClock clock;
  PacerOptions o = WithEstimate(Ms(10), /*min_wait=*/absl::ZeroDuration());
  Pacer pacer(clock.AsClock(), o);
  pacer.SetPace(0.25);                             // bucket 12.5 ms
  EXPECT_EQ(pacer.Admit(), absl::ZeroDuration());  // 12.5 -> 2.5
  EXPECT_EQ(pacer.Admit(), absl::ZeroDuration());  // 2.5 -> -7.5
  EXPECT_EQ(pacer.credit(), -Ms(7.5));
  // 7.5 ms of GPU time at a quarter: 30 ms of wall time. Asking again
  // earlier admits nothing and debits nothing.
  EXPECT_EQ(pacer.Admit(), Ms(30));
  clock.Advance(Ms(20));
  EXPECT_EQ(pacer.Admit(), Ms(10));
  EXPECT_EQ(pacer.outstanding(), 2);
  clock.Advance(Ms(10));
  EXPECT_EQ(pacer.Admit(), absl::ZeroDuration());
  EXPECT_EQ(pacer.credit(), -Ms(10));
}

TEST(PacerTest, WaitsAtLeastTheMinimumSoLaunchesAreAdmittedInGroups) {
  ManualClock clock;
  PacerOptions o = WithEstimate(Ms(0.5));
  o.min_wait = Ms(2);
  Pacer pacer(clock.AsClock(), o);
  pacer.SetPace(0.5);
  while (pacer.Admit() == absl::ZeroDuration()) {
  }
  EXPECT_EQ(pacer.credit(), -Ms(0.5));
  // The debt needs 1 ms at a half; the minimum wait is 2 ms ...
  EXPECT_EQ(pacer.Admit(), Ms(2));
  clock.Advance(Ms(2));
  // ... after which two launches are admitted together.
  EXPECT_EQ(pacer.Admit(), absl::ZeroDuration());
  EXPECT_EQ(pacer.Admit(), absl::ZeroDuration());
  EXPECT_EQ(pacer.Admit(), Ms(2));
}

// The core of the token bucket: over a long run the GPU time admitted is the
// pace times the wall time, for any launch size.
TEST(PacerTest, LongRunGpuTimeIsThePaceOfTheWallTime) {
  for (double pace : {0.1, 1.0 / 3, 0.5, 0.9}) {
    for (absl::Duration gpu : {absl::Microseconds(20), Ms(1), Ms(7)}) {
      Simulation::Options o;
      o.pace = pace;
      o.gpu_time = [gpu](int64_t) { return gpu; };
      o.pacer.initial_estimate = gpu;
      Simulation sim(o);
      const absl::Duration wall = absl::Seconds(20);
      const double got = absl::FDivDuration(sim.Run(wall), wall);
      EXPECT_NEAR(got, pace, 0.01 * pace) << "pace " << pace << ", launches of " << gpu;
    }
  }
}

TEST(PacerTest, LongRunHoldsForMixedLaunchSizes) {
  Simulation::Options o;
  o.pace = 0.3;
  // A training step: 50 short kernels and one long one.
  o.gpu_time = [](int64_t n) { return n % 51 == 50 ? Ms(12) : absl::Microseconds(30); };
  Simulation sim(o);
  const absl::Duration wall = absl::Seconds(30);
  EXPECT_NEAR(absl::FDivDuration(sim.Run(wall), wall), 0.3, 0.01);
}

// The bug this fixes: with a per-launch estimate ten times the real GPU time
// (woolyd's estimate counted the gaps between launches as busy), pacing
// starved the tenant. Measurements replace the estimates and teach the
// pacer the real size, so the tenant gets its pace.
TEST(PacerTest, EstimatesTenTimesTooHighDoNotStarveTheTenant) {
  Simulation::Options o;
  o.pace = 0.33;
  o.gpu_time = [](int64_t) { return Ms(0.5); };
  o.pacer.initial_estimate = Ms(5);
  Simulation sim(o);
  // The first second already gets more than half of its pace ...
  const double first = absl::FDivDuration(sim.Run(absl::Seconds(1)), absl::Seconds(1));
  EXPECT_GT(first, 0.5 * 0.33);
  // ... and the long run all of it.
  const double rest = absl::FDivDuration(sim.Run(absl::Seconds(20)), absl::Seconds(20));
  EXPECT_NEAR(rest, 0.33, 0.01 * 0.33);
  EXPECT_NEAR(ToMs(sim.pacer().estimate()), 0.5, 0.01);
}

TEST(PacerTest, EstimatesTenTimesTooLowDoNotOverrunThePace) {
  Simulation::Options o;
  o.pace = 0.33;
  o.gpu_time = [](int64_t) { return Ms(5); };
  o.pacer.initial_estimate = Ms(0.5);
  Simulation sim(o);
  sim.Run(absl::Seconds(1));
  const double rest = absl::FDivDuration(sim.Run(absl::Seconds(20)), absl::Seconds(20));
  EXPECT_NEAR(rest, 0.33, 0.01 * 0.33);
}

// Measurements that count idle gaps between a host-bound tenant's launches
// as busy charge it for them: it is then active for `pace` of the time, so it
// keeps `pace` of its own rate, instead of starving.
TEST(PacerTest, MeasurementsIncludingGapsKeepTheTenantAtItsPaceOfLaunches) {
  Simulation::Options o;
  o.pace = 0.33;
  o.host_gap = Ms(1);  // alone it launches 1000 times a second
  o.gpu_time = [](int64_t) { return Ms(0.1); };
  o.measure = [](absl::Duration) { return Ms(1); };  // the span between launches
  o.pacer.initial_estimate = Ms(0.1);
  Simulation sim(o);
  sim.Run(absl::Seconds(1));
  const absl::Duration wall = absl::Seconds(20);
  const double launches_per_s = absl::FDivDuration(sim.Run(wall), Ms(0.1)) / 20.0;
  EXPECT_NEAR(launches_per_s, 330, 0.03 * 330);
}

// With the estimate fixed (no learning), each measurement still replaces
// the estimates debited for its launches: the accounting is exact.
TEST(PacerTest, MeasurementReplacesTheDebitedEstimates) {
  ManualClock clock;
  PacerOptions o = WithEstimate(Ms(10));
  o.estimate_smoothing = 0;  // keep the estimate: test the correction alone
  o.burst_window = absl::Seconds(1);
  Pacer pacer(clock.AsClock(), o);
  pacer.SetPace(0.5);  // 500 ms bucket
  for (int i = 0; i < 4; ++i) ASSERT_EQ(pacer.Admit(), absl::ZeroDuration());
  EXPECT_EQ(pacer.credit(), Ms(460));
  // Three of the four measured, 1 ms each: 30 ms refunded, 3 ms charged.
  pacer.Measured(3, Ms(3));
  EXPECT_EQ(pacer.credit(), Ms(487));
  EXPECT_EQ(pacer.outstanding(), 1);
  EXPECT_EQ(pacer.estimate(), Ms(10));
  // A batch longer than estimated is charged in full.
  pacer.Measured(1, Ms(25));
  EXPECT_EQ(pacer.credit(), Ms(472));
  EXPECT_EQ(pacer.outstanding(), 0);
  // Launches measured beyond those admitted while pacing cost nothing.
  pacer.Measured(5, Ms(100));
  EXPECT_EQ(pacer.credit(), Ms(472));
}

TEST(PacerTest, EstimateFollowsTheMeasurements) {
  ManualClock clock;
  PacerOptions o = WithEstimate(Ms(8));
  o.estimate_smoothing = 0.5;
  Pacer pacer(clock.AsClock(), o);
  pacer.Measured(4, Ms(16));  // 4 ms a launch
  EXPECT_EQ(pacer.estimate(), Ms(6));
  pacer.Measured(2, Ms(4));  // 2 ms
  EXPECT_EQ(pacer.estimate(), Ms(4));
  pacer.Measured(0, Ms(100));  // nothing launched: ignored
  EXPECT_EQ(pacer.estimate(), Ms(4));
}

// What a tenant launched before pacing began was never debited; measuring
// it later charges nothing, so the switch does not stall the tenant.
TEST(PacerTest, WorkFromBeforeThePacingIsNotCharged) {
  ManualClock clock;
  PacerOptions o = WithEstimate(Ms(1));
  Pacer pacer(clock.AsClock(), o);
  for (int i = 0; i < 100; ++i) pacer.Admit();  // running freely
  pacer.SetPace(0.4);
  EXPECT_EQ(pacer.credit(), Ms(20));
  pacer.Measured(100, Ms(100));
  EXPECT_EQ(pacer.credit(), Ms(20));
  EXPECT_EQ(pacer.Admit(), absl::ZeroDuration());
  // Run (or hold) and back: a full bucket again, earlier debits forgotten.
  pacer.Stop();
  EXPECT_FALSE(pacer.pacing());
  pacer.SetPace(0.4);
  EXPECT_EQ(pacer.outstanding(), 0);
  EXPECT_EQ(pacer.credit(), Ms(20));
}

// A lower pace applies at once: credit is clamped to the new bucket, and
// debt repaid at the new rate. A higher pace does not credit the past.
TEST(PacerTest, PaceChangesTakeEffectAtOnce) {
  ManualClock clock;
  PacerOptions o = WithEstimate(Ms(1), /*min_wait=*/absl::ZeroDuration());
  Pacer pacer(clock.AsClock(), o);
  pacer.SetPace(0.8);
  EXPECT_EQ(pacer.credit(), Ms(40));
  pacer.SetPace(0.1);  // no burst of 40 ms earned at 0.8
  EXPECT_EQ(pacer.credit(), Ms(5));
  EXPECT_EQ(pacer.capacity(), Ms(5));
  for (int i = 0; i < 8; ++i) pacer.Admit();  // 5 -> -1 ms (the 7th and 8th wait)
  EXPECT_EQ(pacer.credit(), -Ms(1));
  EXPECT_EQ(pacer.Admit(), Ms(10));  // 1 ms at 0.1
  clock.Advance(Ms(5));              // -0.5 ms, accrued at 0.1
  pacer.SetPace(0.5);                // the past is not re-credited at 0.5
  EXPECT_EQ(pacer.credit(), -Ms(0.5));
  EXPECT_EQ(pacer.Admit(), Ms(1));  // repaid at 0.5
  clock.Advance(Ms(1));
  EXPECT_EQ(pacer.Admit(), absl::ZeroDuration());
}

TEST(PacerTest, LongRunFollowsPaceChanges) {
  Simulation::Options o;
  o.pace = 0.6;
  o.pacer.initial_estimate = Ms(1);
  Simulation sim(o);
  EXPECT_NEAR(absl::FDivDuration(sim.Run(absl::Seconds(5)), absl::Seconds(5)), 0.6, 0.01);
  sim.SetPace(0.15);
  EXPECT_NEAR(absl::FDivDuration(sim.Run(absl::Seconds(5)), absl::Seconds(5)), 0.15, 0.005);
  sim.SetPace(0.45);
  EXPECT_NEAR(absl::FDivDuration(sim.Run(absl::Seconds(5)), absl::Seconds(5)), 0.45, 0.01);
}

// One huge measurement (a batch whose span covered idle time) stalls the
// tenant for at most debt_window.
TEST(PacerTest, DebtIsBounded) {
  ManualClock clock;
  PacerOptions o = WithEstimate(Ms(1));
  Pacer pacer(clock.AsClock(), o);
  pacer.SetPace(0.5);
  ASSERT_EQ(pacer.Admit(), absl::ZeroDuration());
  pacer.Measured(1, absl::Seconds(3));
  EXPECT_EQ(pacer.credit(), -pacer.max_debt());
  EXPECT_EQ(pacer.max_debt(), Ms(100));  // half of 200 ms
  EXPECT_EQ(pacer.Admit(), o.debt_window);
  // A launch estimated beyond the bound is also admitted with bounded debt.
  clock.Advance(o.debt_window);
  PacerOptions big = o;
  big.initial_estimate = absl::Seconds(5);
  Pacer p2(clock.AsClock(), big);
  p2.SetPace(0.5);
  EXPECT_EQ(p2.Admit(), absl::ZeroDuration());
  EXPECT_EQ(p2.credit(), -Ms(100));
}

TEST(PacerTest, UnmeasuredLaunchesAreRememberedUpToABound) {
  ManualClock clock;
  PacerOptions o = WithEstimate(Ms(1));
  o.max_outstanding = 4;
  o.estimate_smoothing = 0;
  o.burst_window = absl::Seconds(1);
  Pacer pacer(clock.AsClock(), o);
  pacer.SetPace(0.5);
  for (int i = 0; i < 10; ++i) ASSERT_EQ(pacer.Admit(), absl::ZeroDuration());
  EXPECT_EQ(pacer.outstanding(), 4);
  EXPECT_EQ(pacer.credit(), Ms(490));
  // Only the four remembered debits are replaced.
  pacer.Measured(10, Ms(0));
  EXPECT_EQ(pacer.credit(), Ms(494));
}

TEST(PacerTest, PaceIsBoundedBelow) {
  ManualClock clock;
  Pacer pacer(clock.AsClock());
  pacer.SetPace(0.0);
  EXPECT_TRUE(pacer.pacing());
  EXPECT_EQ(pacer.pace(), PacerOptions{}.min_pace);
}

}  // namespace
}  // namespace wooly::scheduler
