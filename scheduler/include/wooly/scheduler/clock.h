// The scheduler's notion of time. Everything in scheduler/ that needs "now"
// takes a Clock instead of calling absl::Now(), so tests drive time by hand
// and assert behaviour at exact instants, never by sleeping.
//
// Thread safety: RealClock() is safe from any thread. ManualClock is safe from
// any thread; the Clock it hands out refers to it and must not outlive it.
#ifndef WOOLY_SCHEDULER_CLOCK_H_
#define WOOLY_SCHEDULER_CLOCK_H_

#include <functional>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace wooly::scheduler {

// Returns the current time. Must be safe to call from every thread that uses
// the object it was given to.
using Clock = std::function<absl::Time()>;

// absl::Now().
inline Clock RealClock() {
  return [] { return absl::Now(); };
}

// A clock that moves only when told to. For tests and simulations.
class ManualClock {
 public:
  explicit ManualClock(absl::Time start = absl::UnixEpoch() + absl::Hours(1)) : now_(start) {}
  ManualClock(const ManualClock&) = delete;
  ManualClock& operator=(const ManualClock&) = delete;

  absl::Time Now() const {
    absl::MutexLock lock(&mu_);
    return now_;
  }
  void Advance(absl::Duration d) {
    absl::MutexLock lock(&mu_);
    now_ += d;
  }
  void Set(absl::Time t) {
    absl::MutexLock lock(&mu_);
    now_ = t;
  }
  // A Clock reading this object; valid while this object lives.
  Clock AsClock() const {
    return [this] { return Now(); };
  }

 private:
  mutable absl::Mutex mu_;
  absl::Time now_ ABSL_GUARDED_BY(mu_);
};

}  // namespace wooly::scheduler

#endif  // WOOLY_SCHEDULER_CLOCK_H_
