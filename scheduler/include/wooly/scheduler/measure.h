// Measurement: what each tenant's work actually got from the GPU.
//
// The server's instrumentation (events recorded around launch batches, or
// CUPTI activity records) reports completed intervals: a tenant's work ran on
// the GPU from `start` to `end`, on `share` of the SMs (its partition's SMs /
// the device's SMs, or 1 when it was not confined), and the interval covered
// `kernels` kernels. UsageMeter keeps the recent intervals per tenant and
// answers, over sliding windows ending now (by default 1 s and 10 s):
//
//   busy           time covered by at least one of the tenant's intervals;
//   kernels        kernels whose interval ended inside the window;
//   achieved_share integral of the tenant's SM share over the window / span.
//
// Intervals of one tenant that overlap (several streams, or a batch reported
// twice) count once: busy time is the length of their union, and at any
// instant the share is the largest share among the intervals covering it
// (they run on the same partition). Intervals that straddle a window's start
// count for the part inside it. The span is the window, shortened for a
// tenant first seen inside it, so a tenant that just started does not look
// idle.
//
// Windows end now, or earlier where the server says its records of a tenant
// are complete only up to some time (SetCompleteUntil): work still queued on
// the GPU is reported only when it completes, so a window ending now would
// miss the tail of a busy tenant's work and understate its share by the
// queue's length over the window (on the H100, 250 ms windows of a tenant
// at 0.50 read 0.43-0.45). Such windows end at that time instead.
//
// It also keeps a queue-depth gauge per tenant, set by the server.
//
// Thread safety: all methods may be called from any thread (one absl::Mutex).
// The clock is called under the lock and must not call back into the meter.
#ifndef WOOLY_SCHEDULER_MEASURE_H_
#define WOOLY_SCHEDULER_MEASURE_H_

#include <cstdint>
#include <map>
#include <optional>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "wooly/scheduler/clock.h"
#include "wooly/scheduler/tenant.h"

namespace wooly::scheduler {

// One completed stretch of a tenant's GPU work.
struct UsageInterval {
  absl::Time start;
  absl::Time end;       // >= start
  double share = 1.0;   // fraction of the device's SMs it could occupy, (0, 1]
  int64_t kernels = 1;  // kernels it covered, >= 0

  // An interval on `sms` of a device with `sm_count` SMs.
  static UsageInterval OnSms(absl::Time start, absl::Time end, int sms, int sm_count,
                             int64_t kernels = 1);
};

struct UsageMeterOptions {
  // The windows Usage() and Snapshot() report, shortest first is customary.
  std::vector<absl::Duration> windows = {absl::Seconds(1), absl::Seconds(10)};
  // How long intervals are kept; at least the longest window (raised to it
  // if shorter). Longer windows asked of WindowUsage() see only this much.
  absl::Duration retention = absl::Seconds(10);
};

// One tenant over one window ending now (see SetCompleteUntil).
struct WindowUsage {
  absl::Duration window;        // as asked
  absl::Duration span;          // what was measured: window, or since first seen
  absl::Duration busy;          // union of the tenant's intervals within the span
  int64_t kernels = 0;          // kernels of intervals that ended within the span
  double achieved_share = 0.0;  // share-weighted busy / span; 0 for an empty span
  double busy_fraction = 0.0;   // busy / span
};

struct TenantUsage {
  TenantId id = 0;
  int queue_depth = 0;
  absl::Duration total_busy;  // since first seen (see Record on late intervals)
  int64_t total_kernels = 0;
  std::vector<WindowUsage> windows;  // UsageMeterOptions::windows, in order
};

class UsageMeter {
 public:
  explicit UsageMeter(Clock clock, UsageMeterOptions options = {});
  UsageMeter(const UsageMeter&) = delete;
  UsageMeter& operator=(const UsageMeter&) = delete;

  // Starts measuring a tenant now (so its span starts now); Record and
  // SetQueueDepth add unknown tenants too. Idempotent.
  void AddTenant(TenantId id);
  // Forgets a tenant and everything measured about it.
  void RemoveTenant(TenantId id);

  // Adds a completed interval. InvalidArgument if end < start, the share is
  // outside (0, 1] or kernels < 0. An interval that ended before the
  // retention horizon only adds to the totals, and is not merged with what
  // was already dropped (so totals may count such an overlap twice).
  absl::Status Record(TenantId id, const UsageInterval& interval);

  // The number of launches (or batches) the server holds for the tenant and
  // has not yet seen complete.
  void SetQueueDepth(TenantId id, int depth);

  // Records of the tenant are complete up to `until` (its last completed
  // work while more is still queued): windows end there rather than now.
  // InfiniteFuture (the default) ends them now, as does a time in the future.
  void SetCompleteUntil(TenantId id, absl::Time until);

  // One window ending now (or where the tenant's records are complete);
  // nullopt for an unknown tenant.
  std::optional<WindowUsage> Window(TenantId id, absl::Duration window) const;
  // The configured windows; nullopt for an unknown tenant.
  std::optional<TenantUsage> Usage(TenantId id) const;
  // Every tenant, by id.
  std::vector<TenantUsage> Snapshot() const;

  const UsageMeterOptions& options() const { return options_; }

 private:
  // A maximal stretch of constant share; segments of a tenant are disjoint.
  struct Segment {
    absl::Time end;
    double share;
  };
  struct Tenant {
    std::map<absl::Time, Segment> segments;     // by start
    std::map<absl::Time, int64_t> completions;  // kernels by interval end
    absl::Time observed_since = absl::InfiniteFuture();
    int queue_depth = 0;
    absl::Time complete_until = absl::InfiniteFuture();
    absl::Duration dropped_busy;  // segments pruned past the horizon
    int64_t dropped_kernels = 0;
  };

  Tenant& GetOrAdd(TenantId id, absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Prune(Tenant& t, absl::Time now) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  static void Insert(Tenant& t, absl::Time start, absl::Time end, double share);
  static WindowUsage Measure(const Tenant& t, absl::Duration window, absl::Time now);
  TenantUsage Report(TenantId id, const Tenant& t, absl::Time now) const
      ABSL_SHARED_LOCKS_REQUIRED(mu_);

  const Clock clock_;
  const UsageMeterOptions options_;
  mutable absl::Mutex mu_;
  absl::flat_hash_map<TenantId, Tenant> tenants_ ABSL_GUARDED_BY(mu_);
};

}  // namespace wooly::scheduler

#endif  // WOOLY_SCHEDULER_MEASURE_H_
