// Launch pacing as a token bucket over GPU time: the mechanism behind
// Admission::kPace. A paced tenant may use `pace` seconds of GPU time per
// second of wall time; its launches wait only when it has used that up.
//
//   credit     GPU time the tenant may still use. It accrues at `pace` per
//              second of wall time, up to pace * burst_window (the tenant
//              never runs ahead of its pace by more than that much wall
//              time: 16.7 ms of GPU time at a third, 25 ms at a half).
//   debit      Each admitted launch is debited an estimate of its GPU time,
//              since its real time is known only once its batch completes.
//   correction When a batch's measured busy time arrives, the estimates
//              debited for its launches are refunded and the measurement is
//              debited instead, so an estimate that is too high or too low
//              never accumulates. The per-launch estimate follows the
//              measurements (EWMA).
//   debt       A launch is admitted while the credit is not negative, so a
//              launch longer than the whole bucket still runs; the credit
//              then goes negative and the next launch waits until the debt
//              is repaid. Debt is bounded by pace * debt_window, so one
//              misleading measurement (a batch whose span counts the gaps
//              between launches as busy) stalls a tenant for at most
//              debt_window; the controller's feedback corrects what that
//              forgives.
//
// Pace changes take effect at once: the credit accrued so far is counted at
// the old pace, later credit at the new one, and the credit is clamped to
// the new bounds (no burst of credit earned at a higher pace). Starting to
// pace (from run or hold) begins with a full bucket and forgets earlier
// launches, so a tenant is not stalled at the switch.
//
// The pacer never reads the time itself (it takes a Clock) and never sleeps:
// Admit() says how long to wait, the caller waits and asks again.
//
// Thread safety: not thread-safe; the owner serializes calls (woolyd's
// ScheduledClient holds its admission mutex).
#ifndef WOOLY_SCHEDULER_PACER_H_
#define WOOLY_SCHEDULER_PACER_H_

#include <cstdint>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "wooly/scheduler/clock.h"

namespace wooly::scheduler {

struct PacerOptions {
  // Credit never exceeds what the pace earns in this much wall time.
  absl::Duration burst_window = absl::Milliseconds(50);
  // Debt never exceeds what the pace earns in this much wall time.
  absl::Duration debt_window = absl::Milliseconds(200);
  // A tenant that must wait waits at least this long, so that it is
  // admitted in groups rather than with a sleep before every launch.
  absl::Duration min_wait = absl::Microseconds(500);
  // The GPU time debited per launch until something has been measured.
  absl::Duration initial_estimate = absl::Microseconds(100);
  // Weight of a new measurement in the per-launch estimate, [0, 1]. 0 keeps
  // initial_estimate (corrections still replace it by the measurements).
  double estimate_smoothing = 0.5;
  // Debited launches awaiting their measurement that are remembered. Beyond
  // this (launches that are never measured) the oldest debits are final.
  int64_t max_outstanding = 1 << 16;
  // Pace fractions are clamped to at least this.
  double min_pace = 1e-3;
};

// InvalidArgument naming the field.
absl::Status ValidatePacerOptions(const PacerOptions& options);

class Pacer {
 public:
  // `options` must be valid (ValidatePacerOptions); `clock` must outlive the
  // pacer.
  explicit Pacer(Clock clock, PacerOptions options = {});

  // Paces to `fraction` of wall time in GPU time. A fraction of 1 or more
  // stops pacing; fractions below min_pace are raised to it. Starting to
  // pace fills the bucket; a changed pace applies from now on.
  void SetPace(double fraction);
  // Stops pacing: Admit() admits everything and debits nothing.
  void Stop();

  // One launch asks to run. Zero: it is admitted and its estimate debited.
  // Otherwise nothing is debited; the caller waits about this long and asks
  // again (waiting longer is harmless: credit accrues by the clock).
  absl::Duration Admit();

  // `launches` launches completed, busy on the GPU for `busy` in all.
  // Updates the per-launch estimate; while pacing, replaces the estimates
  // debited for up to `launches` admitted launches (oldest first, at their
  // average) by the same share of `busy`. Launches admitted before pacing
  // started were never debited and cost nothing here.
  void Measured(int64_t launches, absl::Duration busy);

  bool pacing() const { return pacing_; }
  double pace() const { return pacing_ ? pace_ : 1.0; }
  // The credit now (negative: debt); zero when not pacing.
  absl::Duration credit() const;
  // The GPU time debited per launch.
  absl::Duration estimate() const { return absl::Seconds(estimate_); }
  // Admitted launches still awaiting their measurement.
  int64_t outstanding() const { return outstanding_count_; }
  // The most credit and the most debt at the current pace.
  absl::Duration capacity() const { return absl::Seconds(Capacity()); }
  absl::Duration max_debt() const { return absl::Seconds(MaxDebt()); }

 private:
  // Bounds, in seconds of GPU time, at the current pace.
  double Capacity() const;
  double MaxDebt() const;
  // The credit at `now`, accrued at the current pace.
  double CreditAt(absl::Time now) const;
  // Accrues credit up to now at the current pace.
  void Refill();
  void Clamp();

  Clock clock_;
  PacerOptions options_;
  bool pacing_ = false;
  double pace_ = 1.0;
  double credit_ = 0.0;  // seconds of GPU time
  absl::Time last_;      // credit accrued up to here
  double estimate_;      // seconds of GPU time per launch
  int64_t outstanding_count_ = 0;
  double outstanding_debit_ = 0.0;  // seconds debited for those launches
};

}  // namespace wooly::scheduler

#endif  // WOOLY_SCHEDULER_PACER_H_
