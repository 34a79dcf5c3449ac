// The scheduler's mechanism in woolyd (issue #5): measures what each
// client's kernels use, runs the policy (scheduler/controller.h) and carries
// out its decisions.
//
//   measurement  Each client's launches are grouped into batches per backend
//                stream; an event is recorded before a batch's first launch
//                and after its last. A batch ends at 64 launches, when the
//                client's connection has no further command ready (it waits
//                or computes), at a synchronizing command, or at the next
//                control tick. The control thread reads finished batches'
//                GPU timestamps and feeds scheduler::UsageMeter with
//                intervals on the client's share of SMs.
//   usable share Each launch has a width: the fraction of the SMs its grid
//                can occupy at once (KernelWidth, from the function's
//                occupancy, cached per client). A batch carries the mean
//                width of its kernels; each tick turns the batches of the
//                last usable_window into the tenant's usable-share estimate
//                (scheduler::TenantInput::usable_share), so a tenant of
//                narrow kernels is not given SMs it cannot fill.
//   partitions   When two or more clients have work (or one has a cap), each
//                runs in a green context of the SM units the allocator gave
//                it; contiguous unit ranges in priority order. Green contexts
//                are created once per range and kept (about 1.3 ms each on an
//                H100, never on a client's path). A client's streams move to
//                its new partition at its next command on them: a fresh
//                backend stream that first waits for the old one.
//   priorities   Its streams get the CUDA stream priority of its priority.
//   admission    A held client's launches wait. A paced client's launches
//                pass a token bucket over GPU time (scheduler/pacer.h): it
//                may use `pace` seconds of GPU time per second, debited per
//                launch by estimate and corrected by each measured batch, and
//                it waits only when it has used that up. Waits happen before
//                the command runs, outside every lock.
//
// Thread safety: ShareControl's methods may be called from any thread.
// ScheduledClient documents each method's thread.
#ifndef WOOLY_SERVER_SHARE_CONTROL_H_
#define WOOLY_SERVER_SHARE_CONTROL_H_

#include <atomic>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <thread>
#include <tuple>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "wooly/proto/wire.h"
#include "wooly/scheduler/clock.h"
#include "wooly/scheduler/controller.h"
#include "wooly/scheduler/measure.h"
#include "wooly/scheduler/pacer.h"
#include "wooly/server/gpu_backend.h"
#include "wooly/server/shared_context.h"
#include "wooly/server/tenants.h"

namespace wooly::server {

// One client's scheduling state, as status and metrics show it.
struct ClientShare {
  double target_share = 0.0;
  double measured_share = 0.0;         // over the last second
  double measured_share_recent = 0.0;  // over the control window (250 ms by default)
  absl::Duration busy;                 // GPU time since it connected
  int64_t kernels = 0;          // kernels in measured batches
  int queue_depth = 0;          // launched, not finished
  int first_unit = -1;          // its partition, or -1 for the whole GPU
  int units = 0;
  int stream_priority = 0;
  scheduler::Admission admission = scheduler::Admission::kRun;
  double pace_fraction = 1.0;
  // Pacing (scheduler/pacer.h), read when asked: the token bucket's credit
  // (negative: debt; zero unless paced), the GPU time debited per launch,
  // and how often a launch has waited for credit since it connected.
  absl::Duration pace_credit;
  absl::Duration pace_estimate;
  int64_t paced_waits = 0;
  // The usable-share estimate the last tick gave the controller (the
  // busy-time-weighted mean width of its launches measured in the last
  // usable_window); nullopt: none, it may use as much as it is given.
  std::optional<double> usable_share;
};

// The fraction of `sm_count` SMs that a grid of `blocks` blocks can occupy
// at once when `blocks_per_sm` of its blocks fit on one SM:
// min(1, blocks / (sm_count * blocks_per_sm)). 1 when `sm_count` or
// `blocks_per_sm` is unknown (<= 0): an unknown kernel may use every SM.
double KernelWidth(uint64_t blocks, int sm_count, int blocks_per_sm);

// Where a client's streams run.
struct Placement {
  Handle partition = 0;  // 0: the whole GPU
  double share = 1.0;    // the partition's SMs / the device's SMs
  int32_t stream_priority = 0;
  uint64_t generation = 0;  // bumped at every change
};

// How partitions are laid out when clients of different priorities share
// the GPU (docs/scheduler.md, "Placement").
enum class SmPlacement {
  // Every client runs only in its own unit range.
  kExclusive,
  // A client that is alone in its priority level runs in its own range and
  // in the ranges of every higher level, at its lower stream priority: it
  // fills SMs the higher levels leave idle, while they keep precedence
  // there and no one else runs in its own range with precedence over it.
  // The lowest such level runs on the whole GPU (the SMs outside whole
  // units included). It is never paced: stream priority subordinates it.
  kNested,
};

struct ShareControlOptions {
  absl::Duration tick = absl::Milliseconds(100);
  // Use green-context partitions when the backend has them.
  bool partitions = true;
  SmPlacement placement = SmPlacement::kNested;
  int max_batch_kernels = 64;
  // How often the GPU-to-host time anchor is renewed.
  absl::Duration anchor_refresh = absl::Seconds(30);
  scheduler::ControllerOptions controller;  // geometry comes from the backend
  scheduler::UsageMeterOptions meter;
  scheduler::PacerOptions pacer;  // invalid options fall back to the defaults
  // The longest a paced launch waits before it checks the decision again.
  absl::Duration max_pace_wait = absl::Milliseconds(100);
  // Estimate each tenant's usable share from its launches' widths, over the
  // batches measured in the last usable_window. Off by default until it is
  // measured on the GPU (it may confine a decoder's few wide kernels);
  // WOOLY_SM_USABLE=1 turns it on, 0 off. Off, every tenant may use as
  // much as it is given.
  bool estimate_usable = false;
  absl::Duration usable_window = absl::Milliseconds(500);
  // Nested placement: the first `nested_reserve_units` units of the highest
  // level's range stay its own, so its kernels find free SMs at once rather
  // than wait for a nested tenant's running blocks. The nested tenant gets
  // the SMs outside every unit instead. 0: nested tenants run on the whole
  // GPU. WOOLY_SM_RESERVE=N sets it. On the H100 (2026-11-26) a batch-1
  // decoder beside a trainer ran at p50 8.94 / 6.94 / 5.95 ms with 0 / 1 / 2
  // units reserved, the trainer at 0.90 / 0.77 / 0.76 of its solo rate.
  int nested_reserve_units = 2;
};

class ShareControl;

class ScheduledClient {
 public:
  // `clock` drives the pacer and dates open batches (the control loop's
  // clock, which decides when an open batch is stale). Launch widths are
  // fractions of `width_sms` SMs (the allocator's geometry); 0: unknown, every
  // launch has width 1.
  ScheduledClient(GpuBackend* backend, uint64_t client_id, Placement initial,
                  scheduler::Clock clock = scheduler::RealClock(),
                  scheduler::PacerOptions pacer = {},
                  absl::Duration max_pace_wait = absl::Milliseconds(100), int width_sms = 0);
  ScheduledClient(const ScheduledClient&) = delete;
  ScheduledClient& operator=(const ScheduledClient&) = delete;

  uint64_t client_id() const { return id_; }

  // --- The session's thread, inside a SharedContext::Access.
  uint64_t placement_generation() const {
    return placement_generation_.load(std::memory_order_acquire);
  }
  Placement placement() const;
  // Around a launch on `stream`: BeginLaunch before it (opens the stream's
  // batch), EndLaunch after it succeeded (counts `kernels`, each of `width`;
  // width 1 where it is unknown, as for a graph).
  void BeginLaunch(Handle stream);
  void EndLaunch(Handle stream, int64_t kernels = 1, double width = 1.0);
  // EndLaunch for one kernel launch of `function` with `config`: its width
  // is LaunchWidth(function, config).
  void EndLaunch(Handle stream, Handle function, const LaunchConfig& config);
  // The fraction of the SMs the launch's grid can occupy at once
  // (KernelWidth), with the function's occupancy from the backend, cached
  // per (function, block size, dynamic shared memory); 1 when the occupancy
  // query fails or answers 0, and for cluster launches. Also called by the
  // launch pipeline's thread (the cache has its own mutex).
  double LaunchWidth(Handle function, const LaunchConfig& config);
  // Ends the open batches (all, or the one on `stream`).
  void CloseBatches();
  void CloseBatch(Handle stream);
  bool has_open_batch() const { return has_open_.load(std::memory_order_acquire); }
  // At session close: destroys its events when `context_ok`, else forgets
  // them (they died with the context). No batch is measured afterwards.
  void Release(bool context_ok);

  // --- The connection's thread, holding no lock and no Access: waits while
  // the client is held, or until the pacer has credit for one more launch
  // (in waits of at most max_pace_wait, after each of which the decision
  // is read again). Returns early once `stopping` is set.
  void Admit(const std::atomic<bool>& stopping);

 private:
  friend class ShareControl;
  struct Open {
    Handle start = 0;
    int64_t kernels = 0;
    double widths = 0.0;  // the sum of its kernels' widths
    double share = 1.0;
    absl::Time opened;  // clock_ time, for stale batches
  };
  struct Batch {
    Handle start = 0;
    Handle end = 0;
    int64_t kernels = 0;
    double width = 1.0;  // the mean width of its kernels
    double share = 1.0;
  };
  // What one tick measured of a client's widths (control thread).
  struct WidthSample {
    absl::Time at;
    double width_seconds = 0.0;  // sum of width x span of its batches
    double busy_seconds = 0.0;   // the union of their spans
    double widths = 0.0;         // sum of its kernels' widths
    int64_t kernels = 0;
  };
  // Occupancy per (function, block size, dynamic shared memory).
  using OccupancyKey = std::tuple<Handle, int32_t, uint64_t>;
  static constexpr size_t kMaxOccupancyEntries = 4096;

  Handle TakeEventLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void CloseLocked(Handle stream, Open& open) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The usable share over the samples since `since` (dropping older ones);
  // nullopt without measured kernels.
  std::optional<double> UsableShareLocked(absl::Time since) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  GpuBackend* const backend_;
  const uint64_t id_;
  mutable absl::Mutex mu_;
  std::map<Handle, Open> open_ ABSL_GUARDED_BY(mu_);
  std::deque<Batch> pending_ ABSL_GUARDED_BY(mu_);
  std::vector<Handle> free_events_ ABSL_GUARDED_BY(mu_);
  bool released_ ABSL_GUARDED_BY(mu_) = false;
  int64_t inflight_kernels_ ABSL_GUARDED_BY(mu_) = 0;
  // The end of its latest measured batch (UsageMeter::SetCompleteUntil).
  absl::Time measured_until_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  Placement placement_ ABSL_GUARDED_BY(mu_);
  std::atomic<uint64_t> placement_generation_{0};
  std::atomic<bool> has_open_{false};
  std::atomic<int64_t> launches_{0};  // since the last tick
  const scheduler::Clock clock_;
  // Admission (written by the control thread).
  const absl::Duration max_pace_wait_;
  mutable absl::Mutex admit_mu_;
  absl::CondVar admit_cv_;
  scheduler::Admission admission_ ABSL_GUARDED_BY(admit_mu_) = scheduler::Admission::kRun;
  std::atomic<bool> admission_free_{true};  // kRun: the fast path
  // Paced while admission_ is kPace, stopped otherwise; fed the measured
  // batches by the control thread.
  scheduler::Pacer pacer_ ABSL_GUARDED_BY(admit_mu_);
  int64_t paced_waits_ ABSL_GUARDED_BY(admit_mu_) = 0;
  // Measured (control thread).
  ClientShare share_ ABSL_GUARDED_BY(mu_);
  std::deque<WidthSample> widths_ ABSL_GUARDED_BY(mu_);
  // Launch widths (the session's and the launch pipeline's threads). The
  // cache is cleared when full; a stale entry (a function attribute changed
  // after the query, a handle reused) only skews an estimate.
  const int width_sms_;
  absl::Mutex occupancy_mu_;  // never held with mu_
  absl::flat_hash_map<OccupancyKey, int32_t> occupancy_ ABSL_GUARDED_BY(occupancy_mu_);
};

class ShareControl {
 public:
  // `backend`, `context` and `tenants` are not owned and must outlive this.
  ShareControl(GpuBackend* backend, SharedContext* context, TenantRegistry* tenants,
               const wire::DeviceInfo& device, ShareControlOptions options, scheduler::Clock clock);
  ~ShareControl();  // Stop()
  ShareControl(const ShareControl&) = delete;
  ShareControl& operator=(const ShareControl&) = delete;

  // Starts the control thread, which calls Tick() every options.tick.
  void Start();
  void Stop();

  // A client's scheduling state, from its Hello until it leaves.
  std::shared_ptr<ScheduledClient> Join(uint64_t client_id);
  void Leave(uint64_t client_id);

  // One control step: reads finished batches, runs the controller, applies
  // its decisions. The control thread calls it; tests call it directly.
  void Tick();

  ClientShare ShareOf(uint64_t client_id) const;
  // Whether green-context partitions are in use on this backend.
  bool partitions_enabled() const { return layout_.has_value(); }
  const scheduler::PartitionGeometry& geometry() const { return geometry_; }

 private:
  // The backend handle of the partition of units [first, first + count),
  // created on first use.
  absl::StatusOr<Handle> PartitionFor(int first, int count, bool with_rest)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void HarvestLocked(const std::vector<std::shared_ptr<ScheduledClient>>& clients)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ApplyLocked(const std::vector<std::shared_ptr<ScheduledClient>>& clients,
                   const std::vector<scheduler::Decision>& decisions)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  GpuBackend* const backend_;
  SharedContext* const context_;
  TenantRegistry* const tenants_;
  const ShareControlOptions options_;
  const scheduler::Clock clock_;
  const int least_priority_;
  const int greatest_priority_;
  std::optional<GpuBackend::PartitionLayout> layout_;
  scheduler::PartitionGeometry geometry_;
  scheduler::UsageMeter meter_;

  // Lock order: mu_ (one Tick at a time), then a SharedContext::Access,
  // then clients_mu_, then a client's mutexes. Sessions call in holding an
  // Access, so they never take mu_.
  mutable absl::Mutex mu_;
  std::optional<scheduler::Controller> controller_ ABSL_GUARDED_BY(mu_);
  mutable absl::Mutex clients_mu_;
  std::map<uint64_t, std::shared_ptr<ScheduledClient>> clients_ ABSL_GUARDED_BY(clients_mu_);
  // By (first unit, units, with the SMs outside every unit).
  std::map<std::tuple<int, int, bool>, Handle> partitions_ ABSL_GUARDED_BY(mu_);
  uint64_t partitions_generation_ ABSL_GUARDED_BY(mu_) = SharedContext::kUnbound;
  // GPU time of the anchor event = host time anchor_time_.
  Handle anchor_event_ ABSL_GUARDED_BY(mu_) = 0;
  Handle anchor_stream_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Time anchor_time_ ABSL_GUARDED_BY(mu_);
  uint64_t anchor_generation_ ABSL_GUARDED_BY(mu_) = SharedContext::kUnbound;
  std::atomic<uint64_t> placement_counter_{0};
  bool partition_error_logged_ ABSL_GUARDED_BY(mu_) = false;

  absl::Mutex thread_mu_;
  bool stopping_ ABSL_GUARDED_BY(thread_mu_) = false;
  std::thread thread_;
};

}  // namespace wooly::server

#endif  // WOOLY_SERVER_SHARE_CONTROL_H_
