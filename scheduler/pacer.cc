#include "wooly/scheduler/pacer.h"

#include <algorithm>
#include <cmath>
#include <utility>

namespace wooly::scheduler {
namespace {

// Rounding slack when the credit is compared with zero: a caller that waited
// exactly the time Admit() asked for is admitted.
constexpr double kSlack = 1e-12;

}  // namespace

absl::Status ValidatePacerOptions(const PacerOptions& o) {
  if (o.burst_window < absl::ZeroDuration()) {
    return absl::InvalidArgumentError("burst_window must not be negative");
  }
  if (o.debt_window < absl::ZeroDuration()) {
    return absl::InvalidArgumentError("debt_window must not be negative");
  }
  if (o.min_wait < absl::ZeroDuration()) {
    return absl::InvalidArgumentError("min_wait must not be negative");
  }
  if (o.initial_estimate < absl::ZeroDuration()) {
    return absl::InvalidArgumentError("initial_estimate must not be negative");
  }
  if (!(o.estimate_smoothing >= 0.0 && o.estimate_smoothing <= 1.0)) {
    return absl::InvalidArgumentError("estimate_smoothing must be in [0, 1]");
  }
  if (o.max_outstanding < 1) {
    return absl::InvalidArgumentError("max_outstanding must be at least 1");
  }
  if (!(o.min_pace > 0.0 && o.min_pace <= 1.0)) {
    return absl::InvalidArgumentError("min_pace must be in (0, 1]");
  }
  return absl::OkStatus();
}

Pacer::Pacer(Clock clock, PacerOptions options)
    : clock_(std::move(clock)),
      options_(std::move(options)),
      last_(clock_()),
      estimate_(absl::ToDoubleSeconds(options_.initial_estimate)) {}

double Pacer::Capacity() const { return pace_ * absl::ToDoubleSeconds(options_.burst_window); }

double Pacer::MaxDebt() const { return pace_ * absl::ToDoubleSeconds(options_.debt_window); }

double Pacer::CreditAt(absl::Time now) const {
  if (!pacing_) return 0.0;
  if (now <= last_) return credit_;
  return std::min(credit_ + pace_ * absl::ToDoubleSeconds(now - last_),
                  std::max(credit_, Capacity()));
}

void Pacer::Refill() {
  const absl::Time now = clock_();
  credit_ = CreditAt(now);
  last_ = std::max(last_, now);  // a clock that steps back accrues nothing
}

void Pacer::Clamp() { credit_ = std::clamp(credit_, -MaxDebt(), Capacity()); }

void Pacer::SetPace(double fraction) {
  if (!(fraction < 1.0)) {  // NaN included
    Stop();
    return;
  }
  fraction = std::max(fraction, options_.min_pace);
  if (!pacing_) {
    // A full bucket: the tenant keeps running at the switch. What it
    // launched before was not debited and is not charged later.
    pacing_ = true;
    pace_ = fraction;
    last_ = clock_();
    credit_ = Capacity();
    outstanding_count_ = 0;
    outstanding_debit_ = 0.0;
    return;
  }
  Refill();  // credit so far at the old pace
  pace_ = fraction;
  Clamp();
}

void Pacer::Stop() {
  pacing_ = false;
  pace_ = 1.0;
  credit_ = 0.0;
  outstanding_count_ = 0;
  outstanding_debit_ = 0.0;
}

absl::Duration Pacer::Admit() {
  if (!pacing_) return absl::ZeroDuration();
  Refill();
  if (credit_ >= -kSlack) {
    const double before = credit_;
    credit_ = std::max(credit_ - estimate_, -MaxDebt());
    outstanding_debit_ += std::max(0.0, before - credit_);
    ++outstanding_count_;
    if (outstanding_count_ > options_.max_outstanding) {
      // The oldest debit becomes final (its launch was never measured).
      outstanding_debit_ -= outstanding_debit_ / static_cast<double>(outstanding_count_);
      outstanding_count_ = options_.max_outstanding;
    }
    return absl::ZeroDuration();
  }
  const double wait = std::max(-credit_ / pace_, absl::ToDoubleSeconds(options_.min_wait));
  // Whole nanoseconds, rounded up unless rounding error alone makes it a
  // fraction more (kSlack admits that shortfall).
  return absl::Nanoseconds(std::ceil(wait * 1e9 - 1e-3));
}

void Pacer::Measured(int64_t launches, absl::Duration busy) {
  if (launches <= 0) return;
  const double measured = std::max(0.0, absl::ToDoubleSeconds(busy));
  const double per_launch = measured / static_cast<double>(launches);
  const double a = options_.estimate_smoothing;
  estimate_ = (1.0 - a) * estimate_ + a * per_launch;
  if (!pacing_ || outstanding_count_ == 0) return;
  Refill();
  // Launches beyond the outstanding ones ran before pacing started.
  const int64_t m = std::min(launches, outstanding_count_);
  const double refund =
      outstanding_debit_ * static_cast<double>(m) / static_cast<double>(outstanding_count_);
  outstanding_count_ -= m;
  outstanding_debit_ = outstanding_count_ == 0 ? 0.0 : std::max(0.0, outstanding_debit_ - refund);
  credit_ += refund - per_launch * static_cast<double>(m);
  Clamp();
}

absl::Duration Pacer::credit() const { return absl::Seconds(CreditAt(clock_())); }

}  // namespace wooly::scheduler
