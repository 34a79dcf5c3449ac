#include "wooly/server/share_control.h"

#include <cuda.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>

#include "absl/strings/numbers.h"
#include "spdlog/spdlog.h"
#include "wooly/scheduler/stream_priority.h"
#include "wooly/server/cu_status.h"

namespace wooly::server {

namespace {
// The device's SM count from its attributes, else an H100's.
int SmCountOf(const wire::DeviceInfo& device) {
  const int v = device.attributes[CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT];
  return v > 0 ? v : 132;
}

// A launch whose blocks are placed in clusters: its occupancy is not its
// function's blocks per SM.
bool HasClusters(const LaunchConfig& config) {
  for (const LaunchAttribute& a : config.attributes) {
    if (a.id == CU_LAUNCH_ATTRIBUTE_CLUSTER_DIMENSION ||
        a.id == CU_LAUNCH_ATTRIBUTE_PREFERRED_CLUSTER_DIMENSION) {
      return true;
    }
  }
  return false;
}
}  // namespace

double KernelWidth(uint64_t blocks, int sm_count, int blocks_per_sm) {
  if (sm_count <= 0 || blocks_per_sm <= 0) return 1.0;
  const double resident = static_cast<double>(sm_count) * static_cast<double>(blocks_per_sm);
  return std::min(1.0, static_cast<double>(blocks) / resident);
}

// ---------------------------------------------------------------- client

ScheduledClient::ScheduledClient(GpuBackend* backend, uint64_t client_id, Placement initial,
                                 scheduler::Clock clock, scheduler::PacerOptions pacer,
                                 absl::Duration max_pace_wait, int width_sms)
    : backend_(backend),
      id_(client_id),
      placement_(initial),
      clock_(clock),
      max_pace_wait_(std::max(max_pace_wait, absl::Milliseconds(1))),
      pacer_(std::move(clock), std::move(pacer)),
      width_sms_(width_sms) {
  placement_generation_.store(initial.generation, std::memory_order_release);
}

Placement ScheduledClient::placement() const {
  absl::MutexLock lock(&mu_);
  return placement_;
}

Handle ScheduledClient::TakeEventLocked() {
  if (!free_events_.empty()) {
    const Handle e = free_events_.back();
    free_events_.pop_back();
    return e;
  }
  absl::StatusOr<Handle> e = backend_->EventCreate(0);  // timed
  return e.ok() ? *e : 0;
}

void ScheduledClient::BeginLaunch(Handle stream) {
  launches_.fetch_add(1, std::memory_order_relaxed);
  absl::MutexLock lock(&mu_);
  if (released_ || open_.contains(stream)) return;
  const Handle start = TakeEventLocked();
  if (start == 0) return;  // unmeasured, not fatal
  if (!backend_->EventRecord(start, stream, 0).ok()) {
    free_events_.push_back(start);
    return;
  }
  Open& o = open_[stream];
  o.start = start;
  o.share = placement_.share;
  o.opened = clock_();
  has_open_.store(true, std::memory_order_release);
}

double ScheduledClient::LaunchWidth(Handle function, const LaunchConfig& config) {
  if (width_sms_ <= 0 || HasClusters(config)) return 1.0;
  uint64_t blocks = 1;
  uint64_t threads = 1;
  for (int i = 0; i < 3; ++i) {
    blocks *= config.grid[i];
    threads *= config.block[i];
  }
  // Larger than any device's block: the query would fail; unknown.
  if (threads == 0 || threads > (1u << 20)) return 1.0;
  const OccupancyKey key{function, static_cast<int32_t>(threads), config.shared_bytes};
  int32_t per_sm = 0;
  {
    absl::MutexLock lock(&occupancy_mu_);
    if (auto it = occupancy_.find(key); it != occupancy_.end()) {
      per_sm = it->second;
    } else {
      // Once per key: the driver is not asked on every launch.
      absl::StatusOr<int32_t> q = backend_->OccupancyMaxActiveBlocks(
          function, static_cast<int32_t>(threads), config.shared_bytes, 0);
      per_sm = q.ok() ? std::max<int32_t>(*q, 0) : 0;
      if (occupancy_.size() >= kMaxOccupancyEntries) occupancy_.clear();
      occupancy_[key] = per_sm;
    }
  }
  return KernelWidth(blocks, width_sms_, per_sm);
}

void ScheduledClient::EndLaunch(Handle stream, Handle function, const LaunchConfig& config) {
  if (!has_open_.load(std::memory_order_acquire)) return;  // unmeasured
  EndLaunch(stream, 1, LaunchWidth(function, config));
}

void ScheduledClient::EndLaunch(Handle stream, int64_t kernels, double width) {
  absl::MutexLock lock(&mu_);
  auto it = open_.find(stream);
  if (it == open_.end()) return;
  it->second.kernels += kernels;
  it->second.widths += static_cast<double>(kernels) * std::clamp(width, 0.0, 1.0);
  // Long runs of launches are cut so that measurement keeps up.
  if (it->second.kernels >= 64) {
    CloseLocked(stream, it->second);
    open_.erase(it);
    has_open_.store(!open_.empty(), std::memory_order_release);
  }
}

void ScheduledClient::CloseLocked(Handle stream, Open& open) {
  const Handle end = TakeEventLocked();
  if (end == 0 || !backend_->EventRecord(end, stream, 0).ok()) {
    if (end != 0) free_events_.push_back(end);
    free_events_.push_back(open.start);
    return;
  }
  const double width = open.kernels > 0 ? open.widths / static_cast<double>(open.kernels) : 1.0;
  pending_.push_back(Batch{open.start, end, open.kernels, width, open.share});
  inflight_kernels_ += open.kernels;
}

void ScheduledClient::CloseBatches() {
  absl::MutexLock lock(&mu_);
  for (auto& [stream, open] : open_) CloseLocked(stream, open);
  open_.clear();
  has_open_.store(false, std::memory_order_release);
}

void ScheduledClient::CloseBatch(Handle stream) {
  absl::MutexLock lock(&mu_);
  auto it = open_.find(stream);
  if (it == open_.end()) return;
  CloseLocked(stream, it->second);
  open_.erase(it);
  has_open_.store(!open_.empty(), std::memory_order_release);
}

std::optional<double> ScheduledClient::UsableShareLocked(absl::Time since) {
  while (!widths_.empty() && widths_.front().at < since) widths_.pop_front();
  WidthSample sum;
  for (const WidthSample& w : widths_) {
    sum.width_seconds += w.width_seconds;
    sum.busy_seconds += w.busy_seconds;
    sum.widths += w.widths;
    sum.kernels += w.kernels;
  }
  if (sum.kernels <= 0) return std::nullopt;
  // Busy-time weighted: the SMs it kept occupied on average while busy
  // (several streams at once add up). Without measurable time, per kernel.
  const double usable = sum.busy_seconds > 0.0 ? sum.width_seconds / sum.busy_seconds
                                               : sum.widths / static_cast<double>(sum.kernels);
  return std::clamp(usable, 0.0, 1.0);
}

void ScheduledClient::Release(bool context_ok) {
  absl::MutexLock lock(&mu_);
  released_ = true;
  if (context_ok) {
    for (auto& [stream, open] : open_) (void)backend_->EventDestroy(open.start);
    for (const Batch& b : pending_) {
      (void)backend_->EventDestroy(b.start);
      (void)backend_->EventDestroy(b.end);
    }
    for (Handle e : free_events_) (void)backend_->EventDestroy(e);
  }
  open_.clear();
  pending_.clear();
  free_events_.clear();
  widths_.clear();
  inflight_kernels_ = 0;
  has_open_.store(false, std::memory_order_release);
  {
    absl::MutexLock admit(&admit_mu_);
    admission_ = scheduler::Admission::kRun;
    pacer_.Stop();
    admission_free_.store(true, std::memory_order_release);
  }
  admit_cv_.SignalAll();
}

void ScheduledClient::Admit(const std::atomic<bool>& stopping) {
  if (admission_free_.load(std::memory_order_acquire)) return;
  absl::MutexLock lock(&admit_mu_);
  while (!stopping.load()) {
    // Held: wait until the controller admits it again (it re-decides every
    // tick), checking now and then whether the server is stopping.
    if (admission_ == scheduler::Admission::kHold) {
      admit_cv_.WaitWithTimeout(&admit_mu_, absl::Milliseconds(50));
      continue;
    }
    if (admission_ != scheduler::Admission::kPace) return;
    // Paced: admitted while the bucket has credit; else wait for it, in
    // bounded steps so that a new decision (or pace) applies at once.
    const absl::Duration wait = pacer_.Admit();
    if (wait <= absl::ZeroDuration()) return;
    ++paced_waits_;
    admit_cv_.WaitWithTimeout(&admit_mu_, std::min(wait, max_pace_wait_));
  }
}

// ---------------------------------------------------------------- control

namespace {

// WOOLY_SM_PLACEMENT=nested|exclusive overrides the option (diagnosis).
// Invalid pacer options fall back to the defaults.
ShareControlOptions WithEnvironment(ShareControlOptions options) {
  if (const absl::Status s = scheduler::ValidatePacerOptions(options.pacer); !s.ok()) {
    spdlog::error("scheduler: pacer options: {}; using the defaults", s.ToString());
    options.pacer = scheduler::PacerOptions{};
  }
  if (const char* env = std::getenv("WOOLY_SM_PLACEMENT"); env != nullptr) {
    if (std::string(env) == "nested") options.placement = SmPlacement::kNested;
    if (std::string(env) == "exclusive") options.placement = SmPlacement::kExclusive;
  }
  // WOOLY_SM_DITHER=0: no dithering of partition units (controller.h).
  if (const char* env = std::getenv("WOOLY_SM_DITHER"); env != nullptr && std::string(env) == "0") {
    options.controller.dither_units = false;
  }
  // WOOLY_SM_RESERVE=N: units a nested tenant leaves to the highest level.
  if (const char* env = std::getenv("WOOLY_SM_RESERVE"); env != nullptr) {
    int n = 0;
    if (absl::SimpleAtoi(env, &n) && n >= 0) {
      options.nested_reserve_units = n;
    } else {
      spdlog::error("scheduler: WOOLY_SM_RESERVE={} is not a unit count; ignored", env);
    }
  }
  // WOOLY_SM_USABLE=1|0: usable-share estimates on or off.
  if (const char* env = std::getenv("WOOLY_SM_USABLE"); env != nullptr) {
    if (std::string(env) == "1") options.estimate_usable = true;
    if (std::string(env) == "0") options.estimate_usable = false;
  }
  return options;
}

}  // namespace

ShareControl::ShareControl(GpuBackend* backend, SharedContext* context, TenantRegistry* tenants,
                           const wire::DeviceInfo& device, ShareControlOptions options,
                           scheduler::Clock clock)
    : backend_(backend),
      context_(context),
      tenants_(tenants),
      options_(WithEnvironment(std::move(options))),
      clock_(std::move(clock)),
      least_priority_(device.stream_priority_least),
      greatest_priority_(device.stream_priority_greatest),
      meter_(clock_, options_.meter) {
  // WOOLY_SM_PARTITIONS=0 turns partitions off (diagnosis; see docs).
  const char* env = std::getenv("WOOLY_SM_PARTITIONS");
  if (options_.partitions && !(env != nullptr && std::string(env) == "0")) {
    absl::StatusOr<GpuBackend::PartitionLayout> layout = backend_->GetPartitionLayout();
    if (layout.ok() && layout->units > 0 && layout->unit_sms > 0) {
      layout_ = *layout;
    } else if (!layout.ok()) {
      spdlog::info("scheduler: no SM partitions ({}); shares are kept by priority and pacing",
                   std::string(layout.status().message()));
    }
  }
  if (layout_) {
    // Shares are of the SMs inside whole units (120 of an H100's 132).
    geometry_ = scheduler::PartitionGeometry{layout_->units * layout_->unit_sms, layout_->unit_sms};
  } else {
    geometry_ = scheduler::PartitionGeometry{SmCountOf(device), 8};
  }
  scheduler::ControllerOptions copts = options_.controller;
  copts.geometry = geometry_;
  copts.stream_priority_least = least_priority_;
  copts.stream_priority_greatest = greatest_priority_;
  absl::StatusOr<scheduler::Controller> controller = scheduler::Controller::Create(copts, clock_);
  if (controller.ok()) {
    absl::MutexLock lock(&mu_);
    controller_.emplace(std::move(*controller));
  } else {
    spdlog::error("scheduler: {}; running without share control", controller.status().ToString());
  }
}

ShareControl::~ShareControl() { Stop(); }

void ShareControl::Start() {
  absl::MutexLock lock(&thread_mu_);
  if (thread_.joinable() || stopping_) return;
  thread_ = std::thread([this] {
    absl::MutexLock l(&thread_mu_);
    while (!stopping_) {
      thread_mu_.Unlock();
      Tick();
      thread_mu_.Lock();
      thread_mu_.AwaitWithTimeout(absl::Condition(&stopping_), options_.tick);
    }
  });
}

void ShareControl::Stop() {
  std::thread t;
  {
    absl::MutexLock lock(&thread_mu_);
    stopping_ = true;
    t = std::move(thread_);
  }
  if (t.joinable()) t.join();
}

std::shared_ptr<ScheduledClient> ShareControl::Join(uint64_t client_id) {
  Placement initial;
  int priority = scheduler::kDefaultClientPriority;
  if (std::optional<TenantMemberInfo> m = tenants_->Member(client_id)) {
    priority = m->policy.policy.priority;
  }
  initial.stream_priority =
      scheduler::StreamPriorityFor(priority, least_priority_, greatest_priority_);
  initial.generation = placement_counter_.fetch_add(1) + 1;
  auto client = std::make_shared<ScheduledClient>(
      backend_, client_id, initial, clock_, options_.pacer, options_.max_pace_wait,
      options_.estimate_usable ? geometry_.sm_count : 0);
  meter_.AddTenant(client_id);
  absl::MutexLock lock(&clients_mu_);
  clients_[client_id] = client;
  return client;
}

void ShareControl::Leave(uint64_t client_id) {
  {
    absl::MutexLock lock(&clients_mu_);
    clients_.erase(client_id);
  }
  meter_.RemoveTenant(client_id);
}

ClientShare ShareControl::ShareOf(uint64_t client_id) const {
  std::shared_ptr<ScheduledClient> c;
  {
    absl::MutexLock lock(&clients_mu_);
    auto it = clients_.find(client_id);
    if (it == clients_.end()) return ClientShare{};
    c = it->second;
  }
  ClientShare share;
  {
    absl::MutexLock lock(&c->mu_);
    share = c->share_;
  }
  absl::MutexLock lock(&c->admit_mu_);
  share.pace_credit = c->pacer_.credit();
  share.pace_estimate = c->pacer_.estimate();
  share.paced_waits = c->paced_waits_;
  return share;
}

absl::StatusOr<Handle> ShareControl::PartitionFor(int first, int count, bool with_rest) {
  const auto key = std::make_tuple(first, count, with_rest);
  if (auto it = partitions_.find(key); it != partitions_.end()) return it->second;
  absl::StatusOr<Handle> p = backend_->PartitionCreate(first, count, with_rest);
  if (!p.ok()) return p.status();
  partitions_[key] = *p;
  return *p;
}

// How far behind now a busy tenant's measurement windows may end (above).
constexpr absl::Duration kMaxMeasureLag = absl::Seconds(1);

void ShareControl::HarvestLocked(const std::vector<std::shared_ptr<ScheduledClient>>& clients) {
  const absl::Time now = clock_();
  const absl::Time stale = now - options_.tick;
  for (const std::shared_ptr<ScheduledClient>& c : clients) {
    std::deque<ScheduledClient::Batch> batches;
    {
      absl::MutexLock lock(&c->mu_);
      if (c->released_) continue;
      // A batch open since the last tick is ended here, so that a client
      // that keeps one stream busy without pausing is still measured.
      for (auto it = c->open_.begin(); it != c->open_.end();) {
        if (it->second.opened < stale) {
          c->CloseLocked(it->first, it->second);
          it = c->open_.erase(it);
        } else {
          ++it;
        }
      }
      c->has_open_.store(!c->open_.empty(), std::memory_order_release);
      batches.swap(c->pending_);
    }
    std::deque<ScheduledClient::Batch> waiting;
    std::vector<Handle> reusable;
    int64_t done_kernels = 0;
    absl::Duration busy;
    int64_t measured_kernels = 0;
    absl::Time latest_end = absl::InfinitePast();
    ScheduledClient::WidthSample widths;
    // The meter unites overlapping batches (several streams); the pacer is
    // charged that union, not the sum.
    const std::optional<scheduler::TenantUsage> before = meter_.Usage(c->client_id());
    for (const ScheduledClient::Batch& b : batches) {
      const absl::Status q = backend_->EventQuery(b.end);
      if (!q.ok() && ToCuResult(q) == CUDA_ERROR_NOT_READY) {
        waiting.push_back(b);
        continue;
      }
      done_kernels += b.kernels;
      if (!q.ok()) continue;  // lost with a fault: forget the events
      absl::StatusOr<float> t0 = backend_->EventElapsedTime(anchor_event_, b.start);
      absl::StatusOr<float> t1 = backend_->EventElapsedTime(anchor_event_, b.end);
      reusable.push_back(b.start);
      reusable.push_back(b.end);
      if (!t0.ok() || !t1.ok() || *t1 < *t0) continue;
      scheduler::UsageInterval interval;
      interval.start = anchor_time_ + absl::Microseconds(static_cast<double>(*t0) * 1000.0);
      interval.end = anchor_time_ + absl::Microseconds(static_cast<double>(*t1) * 1000.0);
      interval.share = std::clamp(b.share, 1e-6, 1.0);
      interval.kernels = b.kernels;
      if (meter_.Record(c->client_id(), interval).ok()) {
        latest_end = std::max(latest_end, interval.end);
        busy += interval.end - interval.start;
        measured_kernels += b.kernels;
        widths.width_seconds += b.width * absl::ToDoubleSeconds(interval.end - interval.start);
        widths.widths += b.width * static_cast<double>(b.kernels);
        widths.kernels += b.kernels;
      }
    }
    absl::Time complete_until = absl::InfiniteFuture();
    absl::Duration united = busy;
    if (measured_kernels > 0) {
      if (const std::optional<scheduler::TenantUsage> after = meter_.Usage(c->client_id());
          before && after) {
        united = std::clamp(after->total_busy - before->total_busy, absl::ZeroDuration(), busy);
      }
    }
    {
      absl::MutexLock lock(&c->mu_);
      if (c->released_) {
        for (Handle e : reusable) (void)backend_->EventDestroy(e);
        for (const auto& b : waiting) {
          (void)backend_->EventDestroy(b.start);
          (void)backend_->EventDestroy(b.end);
        }
        continue;
      }
      for (auto it = waiting.rbegin(); it != waiting.rend(); ++it) c->pending_.push_front(*it);
      c->free_events_.insert(c->free_events_.end(), reusable.begin(), reusable.end());
      // Work still queued or open is reported when it completes: until then
      // the tenant's windows end at its last measured batch, at most
      // kMaxMeasureLag ago, rather than count that tail as idle.
      c->measured_until_ = std::max(c->measured_until_, latest_end);
      const bool outstanding = !c->pending_.empty() || !c->open_.empty();
      complete_until =
          outstanding ? std::max(c->measured_until_, now - kMaxMeasureLag) : absl::InfiniteFuture();
      c->inflight_kernels_ = std::max<int64_t>(0, c->inflight_kernels_ - done_kernels);
      c->share_.busy += busy;
      c->share_.kernels += measured_kernels;
      if (widths.kernels > 0) {
        widths.at = now;
        widths.busy_seconds = absl::ToDoubleSeconds(united);
        c->widths_.push_back(widths);
      }
    }
    meter_.SetCompleteUntil(c->client_id(), complete_until);
    if (measured_kernels > 0) {
      // Replaces the estimates the pacer debited for these launches.
      absl::MutexLock lock(&c->admit_mu_);
      c->pacer_.Measured(measured_kernels, united);
    }
  }
}

void ShareControl::Tick() {
  absl::MutexLock lock(&mu_);
  if (!controller_) return;
  std::vector<std::shared_ptr<ScheduledClient>> clients;
  {
    absl::MutexLock l(&clients_mu_);
    for (const auto& [id, c] : clients_) clients.push_back(c);
  }
  SharedContext::Access access(context_, SharedContext::kUnbound);
  if (!access.ok()) return;
  const uint64_t generation = access.generation();
  if (generation != partitions_generation_) {
    partitions_.clear();  // the reset took them
    partitions_generation_ = generation;
  }
  const absl::Time now = clock_();
  if (generation != anchor_generation_ || now - anchor_time_ > options_.anchor_refresh) {
    if (generation == anchor_generation_) {
      (void)backend_->EventDestroy(anchor_event_);
    } else {
      anchor_stream_ = 0;
    }
    anchor_event_ = 0;
    if (anchor_stream_ == 0) {
      absl::StatusOr<Handle> s = backend_->StreamCreate(CU_STREAM_NON_BLOCKING, 0);
      if (s.ok()) anchor_stream_ = *s;
    }
    absl::StatusOr<Handle> e = backend_->EventCreate(0);
    if (anchor_stream_ != 0 && e.ok() && backend_->EventRecord(*e, anchor_stream_, 0).ok()) {
      anchor_event_ = *e;
      anchor_time_ = clock_();
      anchor_generation_ = generation;
    } else if (e.ok()) {
      (void)backend_->EventDestroy(*e);
    }
  }
  if (anchor_event_ != 0) HarvestLocked(clients);

  std::vector<scheduler::TenantInput> inputs;
  std::vector<std::shared_ptr<ScheduledClient>> scheduled;
  for (const std::shared_ptr<ScheduledClient>& c : clients) {
    std::optional<TenantMemberInfo> m = tenants_->Member(c->client_id());
    if (!m || m->observer) continue;
    int depth = 0;
    std::optional<double> usable;
    bool busy = c->launches_.exchange(0, std::memory_order_relaxed) > 0;
    {
      absl::MutexLock l(&c->mu_);
      if (c->released_) continue;
      depth = static_cast<int>(std::min<int64_t>(c->inflight_kernels_, 1 << 20));
      busy = busy || !c->open_.empty() || !c->pending_.empty();
      if (options_.estimate_usable) usable = c->UsableShareLocked(now - options_.usable_window);
      c->share_.usable_share = usable;
    }
    meter_.SetQueueDepth(c->client_id(), depth);
    scheduler::TenantInput in;
    in.id = c->client_id();
    in.policy = m->policy.policy;
    in.has_work = busy;
    in.queue_depth = depth;
    in.usable_share = usable;
    inputs.push_back(in);
    scheduled.push_back(c);
  }
  absl::StatusOr<std::vector<scheduler::Decision>> decisions =
      controller_->TickWithMeter(inputs, meter_);
  if (!decisions.ok()) {
    spdlog::error("scheduler: {}", decisions.status().ToString());
    return;
  }
  ApplyLocked(scheduled, *decisions);
}

void ShareControl::ApplyLocked(const std::vector<std::shared_ptr<ScheduledClient>>& clients,
                               const std::vector<scheduler::Decision>& decisions) {
  const int total = geometry_.units();
  // Who runs in a partition: the tenants with work and units, in priority
  // order (then id), on contiguous unit ranges.
  std::vector<size_t> order;
  int active = 0;
  bool confined = false;
  for (size_t i = 0; i < decisions.size(); ++i) {
    if (!decisions[i].active) continue;
    ++active;
    if (decisions[i].units > 0) order.push_back(i);
    if (decisions[i].units < total) confined = true;
  }
  const bool partitioned = layout_.has_value() && (active >= 2 || confined) && !order.empty();
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    if (decisions[a].stream_priority != decisions[b].stream_priority) {
      return decisions[a].stream_priority < decisions[b].stream_priority;  // greater first
    }
    return decisions[a].id < decisions[b].id;
  });
  std::map<size_t, std::pair<int, int>> ranges;
  int cursor = 0;
  if (partitioned) {
    for (size_t i : order) {
      const int units = std::min(decisions[i].units, total - cursor);
      if (units <= 0) break;
      ranges[i] = {cursor, units};
      cursor += units;
    }
  }
  // Nested placement: a tenant alone in its priority level also runs in the
  // ranges of the levels above it (laid out before it), at its lower stream
  // priority; the last range, when it ends the units, becomes the whole GPU.
  // With nested_reserve_units, nested ranges start after that many units of
  // the highest level's range and take the SMs outside every unit instead.
  std::set<size_t> nested;
  std::set<size_t> whole_gpu;
  std::set<size_t> with_rest;
  const int reserve =
      partitioned && !order.empty() && ranges.contains(order.front())
          ? std::clamp(options_.nested_reserve_units, 0, ranges.at(order.front()).second)
          : 0;
  if (partitioned && options_.placement == SmPlacement::kNested) {
    std::map<int, int> per_level;
    for (size_t i : order) {
      if (ranges.contains(i)) ++per_level[decisions[i].stream_priority];
    }
    bool higher_seen = false;
    for (size_t k = 0; k < order.size(); ++k) {
      const size_t i = order[k];
      auto r = ranges.find(i);
      if (r == ranges.end()) break;
      const int level = decisions[i].stream_priority;
      // A capped tenant keeps its own range: its cap is kept by pacing
      // against that range.
      std::optional<TenantMemberInfo> m = tenants_->Member(clients[i]->client_id());
      const bool capped = m && m->policy.policy.cap() < 1.0;
      if (higher_seen && per_level[level] == 1 && !capped) {
        nested.insert(i);
        const int end = r->second.first + r->second.second;
        const bool last = end == cursor && k + 1 == ranges.size();
        const int from = std::min(reserve, r->second.first);
        r->second = {from, end - from};
        if (last) (from == 0 ? whole_gpu : with_rest).insert(i);
      }
      if (k + 1 < order.size() && decisions[order[k + 1]].stream_priority != level) {
        higher_seen = true;
      }
    }
  }
  // Idle or held tenants wait in the spare units, or else beside the last
  // (lowest-priority) tenant, so that a tenant waking up does not spill
  // over the others before the next tick places it.
  std::optional<std::pair<int, int>> spare;
  if (partitioned) {
    if (cursor < total) {
      spare = std::make_pair(cursor, total - cursor);
    } else if (!ranges.empty()) {
      spare = ranges.at(order.back());
    }
  }
  for (size_t i = 0; i < decisions.size(); ++i) {
    const scheduler::Decision& d = decisions[i];
    const std::shared_ptr<ScheduledClient>& c = clients[i];
    Placement p;
    p.stream_priority = d.stream_priority;
    int first = -1, units = 0;
    std::optional<std::pair<int, int>> range;
    if (auto r = ranges.find(i); r != ranges.end()) {
      range = r->second;
    } else if (partitioned) {
      range = spare;
    }
    if (whole_gpu.contains(i)) {
      range.reset();  // partition 0: every SM
    }
    if (range) {
      absl::StatusOr<Handle> h = PartitionFor(range->first, range->second, with_rest.contains(i));
      if (h.ok()) {
        p.partition = *h;
        first = range->first;
        units = range->second;
        p.share = static_cast<double>(units) / std::max(total, 1);
      } else if (!partition_error_logged_) {
        partition_error_logged_ = true;
        spdlog::warn("scheduler: cannot create an SM partition: {}; using the whole GPU",
                     h.status().ToString());
      }
    }
    std::optional<scheduler::WindowUsage> usage = meter_.Window(d.id, absl::Seconds(1));
    // What the controller acts on: settles sooner than the 1 s figure.
    std::optional<scheduler::WindowUsage> recent =
        meter_.Window(d.id, options_.controller.control_window);
    {
      absl::MutexLock lock(&c->mu_);
      if (c->placement_.partition != p.partition ||
          c->placement_.stream_priority != p.stream_priority) {
        // Dithering (controller.h) moves a unit back and forth under a
        // steady target: only a new target is worth an info line.
        const bool retarget = std::abs(c->share_.target_share - d.target_share) > 1e-9 ||
                              c->placement_.stream_priority != p.stream_priority;
        if (first >= 0) {
          spdlog::log(retarget ? spdlog::level::info : spdlog::level::debug,
                      "scheduler: client {} moves to SM units [{}, {}){} ({:.0f}% of the units), "
                      "stream priority {}",
                      d.id, first, first + units,
                      with_rest.contains(i) ? " and the SMs outside every unit" : "",
                      p.share * 100, p.stream_priority);
        } else {
          spdlog::info("scheduler: client {} runs on the whole GPU, stream priority {}", d.id,
                       p.stream_priority);
        }
        p.generation = placement_counter_.fetch_add(1) + 1;
        c->placement_ = p;
        c->placement_generation_.store(p.generation, std::memory_order_release);
      }
      ClientShare& s = c->share_;
      s.target_share = d.target_share;
      s.measured_share = usage ? usage->achieved_share : 0.0;
      s.measured_share_recent = recent ? recent->achieved_share : 0.0;
      s.queue_depth = static_cast<int>(std::min<int64_t>(c->inflight_kernels_, 1 << 20));
      s.first_unit = first;
      s.units = units;
      s.stream_priority = d.stream_priority;
      s.admission = d.admission;
      s.pace_fraction = d.pace_fraction;
    }
    // A nested tenant is subordinated by stream priority, not paced: its
    // measured share counts SMs it only fills while others leave them idle.
    scheduler::Admission admission = d.admission;
    double pace = d.pace_fraction;
    if (nested.contains(i) && admission == scheduler::Admission::kPace) {
      admission = scheduler::Admission::kRun;
      pace = 1.0;
    }
    {
      absl::MutexLock lock(&c->mu_);
      c->share_.admission = admission;
      c->share_.pace_fraction = pace;
    }
    {
      absl::MutexLock lock(&c->admit_mu_);
      c->admission_ = admission;
      // Entering pace fills the bucket; a new fraction applies at once.
      if (admission == scheduler::Admission::kPace) {
        c->pacer_.SetPace(pace);
      } else {
        c->pacer_.Stop();
      }
      c->admission_free_.store(admission == scheduler::Admission::kRun, std::memory_order_release);
    }
    c->admit_cv_.SignalAll();
  }
}

}  // namespace wooly::server
