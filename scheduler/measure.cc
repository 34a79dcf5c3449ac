#include "wooly/scheduler/measure.h"

#include <algorithm>
#include <cmath>
#include <iterator>
#include <utility>

#include "absl/strings/str_format.h"

namespace wooly::scheduler {
namespace {

UsageMeterOptions Normalize(UsageMeterOptions o) {
  absl::Duration longest = absl::ZeroDuration();
  for (absl::Duration w : o.windows) longest = std::max(longest, w);
  o.retention = std::max(o.retention, longest);
  return o;
}

}  // namespace

UsageInterval UsageInterval::OnSms(absl::Time start, absl::Time end, int sms, int sm_count,
                                   int64_t kernels) {
  UsageInterval u;
  u.start = start;
  u.end = end;
  u.share = sm_count > 0 ? static_cast<double>(sms) / sm_count : 0.0;
  u.kernels = kernels;
  return u;
}

UsageMeter::UsageMeter(Clock clock, UsageMeterOptions options)
    : clock_(std::move(clock)), options_(Normalize(std::move(options))) {}

UsageMeter::Tenant& UsageMeter::GetOrAdd(TenantId id, absl::Time now) {
  Tenant& t = tenants_[id];
  t.observed_since = std::min(t.observed_since, now);
  return t;
}

void UsageMeter::AddTenant(TenantId id) {
  absl::MutexLock lock(&mu_);
  const absl::Time now = clock_();
  Prune(GetOrAdd(id, now), now);
}

void UsageMeter::RemoveTenant(TenantId id) {
  absl::MutexLock lock(&mu_);
  tenants_.erase(id);
}

void UsageMeter::SetQueueDepth(TenantId id, int depth) {
  absl::MutexLock lock(&mu_);
  const absl::Time now = clock_();
  Tenant& t = GetOrAdd(id, now);
  t.queue_depth = std::max(0, depth);
  Prune(t, now);
}

void UsageMeter::SetCompleteUntil(TenantId id, absl::Time until) {
  absl::MutexLock lock(&mu_);
  const absl::Time now = clock_();
  Tenant& t = GetOrAdd(id, now);
  t.complete_until = until;
  Prune(t, now);
}

absl::Status UsageMeter::Record(TenantId id, const UsageInterval& interval) {
  if (interval.end < interval.start) {
    return absl::InvalidArgumentError(
        absl::StrFormat("tenant %d: interval ends %s before it starts", id,
                        absl::FormatDuration(interval.start - interval.end)));
  }
  if (!(interval.share > 0.0 && interval.share <= 1.0)) {
    return absl::InvalidArgumentError(
        absl::StrFormat("tenant %d: interval share %g is out of range (0, 1]", id, interval.share));
  }
  if (interval.kernels < 0) {
    return absl::InvalidArgumentError(
        absl::StrFormat("tenant %d: negative kernel count %d", id, interval.kernels));
  }
  absl::MutexLock lock(&mu_);
  const absl::Time now = clock_();
  // A tenant's first interval may predate the first call that named it.
  Tenant& t = GetOrAdd(id, std::min(now, interval.start));
  Prune(t, now);
  if (interval.end <= now - options_.retention) {
    // Too old to show in any window: totals only.
    t.dropped_busy += interval.end - interval.start;
    t.dropped_kernels += interval.kernels;
    return absl::OkStatus();
  }
  Insert(t, interval.start, interval.end, interval.share);
  if (interval.kernels > 0) t.completions[interval.end] += interval.kernels;
  return absl::OkStatus();
}

void UsageMeter::Prune(Tenant& t, absl::Time now) const {
  const absl::Time horizon = now - options_.retention;
  // Segments are disjoint and sorted, so their ends are sorted too.
  while (!t.segments.empty() && t.segments.begin()->second.end <= horizon) {
    t.dropped_busy += t.segments.begin()->second.end - t.segments.begin()->first;
    t.segments.erase(t.segments.begin());
  }
  while (!t.completions.empty() && t.completions.begin()->first <= horizon) {
    t.dropped_kernels += t.completions.begin()->second;
    t.completions.erase(t.completions.begin());
  }
}

void UsageMeter::Insert(Tenant& t, absl::Time start, absl::Time end, double share) {
  if (end <= start) return;  // no time; its kernels are still counted
  auto& segs = t.segments;
  auto it = segs.lower_bound(start);
  if (it != segs.begin()) {
    auto prev = std::prev(it);
    if (prev->second.end > start) it = prev;
  }
  // Rebuild [start, end) and the old segments it touches as disjoint pieces;
  // where old and new overlap, the larger share holds.
  std::vector<std::pair<absl::Time, Segment>> pieces;
  absl::Time cursor = start;
  while (it != segs.end() && it->first < end) {
    const absl::Time old_start = it->first, old_end = it->second.end;
    const double old_share = it->second.share;
    if (old_start < start) {
      pieces.push_back({old_start, {start, old_share}});
    } else if (old_start > cursor) {
      pieces.push_back({cursor, {old_start, share}});
    }
    const absl::Time overlap_end = std::min(old_end, end);
    pieces.push_back({std::max(old_start, start), {overlap_end, std::max(old_share, share)}});
    if (old_end > end) pieces.push_back({end, {old_end, old_share}});
    cursor = overlap_end;
    it = segs.erase(it);
  }
  if (cursor < end) pieces.push_back({cursor, {end, share}});
  for (const auto& [piece_start, piece] : pieces) {
    if (piece_start < piece.end) segs.emplace(piece_start, piece);
  }
  // Join touching neighbours of equal share so the map stays small.
  auto cur = segs.lower_bound(pieces.front().first);
  if (cur != segs.begin()) --cur;
  const absl::Time last_end = pieces.back().second.end;
  while (cur != segs.end()) {
    auto next = std::next(cur);
    if (next == segs.end() || next->first > last_end) break;
    if (cur->second.end == next->first && cur->second.share == next->second.share) {
      cur->second.end = next->second.end;
      segs.erase(next);
    } else {
      cur = next;
    }
  }
}

WindowUsage UsageMeter::Measure(const Tenant& t, absl::Duration window, absl::Time now) {
  now = std::min(now, t.complete_until);
  WindowUsage u;
  u.window = window;
  const absl::Time from = std::max(now - window, t.observed_since);
  if (from >= now) return u;
  u.span = now - from;
  double share_seconds = 0;
  auto it = t.segments.lower_bound(from);
  if (it != t.segments.begin() && std::prev(it)->second.end > from) --it;
  for (; it != t.segments.end() && it->first < now; ++it) {
    const absl::Duration inside = std::min(it->second.end, now) - std::max(it->first, from);
    if (inside <= absl::ZeroDuration()) continue;
    u.busy += inside;
    share_seconds += absl::ToDoubleSeconds(inside) * it->second.share;
  }
  for (auto c = t.completions.upper_bound(from); c != t.completions.end() && c->first <= now; ++c) {
    u.kernels += c->second;
  }
  const double span_s = absl::ToDoubleSeconds(u.span);
  u.achieved_share = std::clamp(share_seconds / span_s, 0.0, 1.0);
  u.busy_fraction = std::clamp(absl::ToDoubleSeconds(u.busy) / span_s, 0.0, 1.0);
  return u;
}

TenantUsage UsageMeter::Report(TenantId id, const Tenant& t, absl::Time now) const {
  TenantUsage r;
  r.id = id;
  r.queue_depth = t.queue_depth;
  r.total_busy = t.dropped_busy;
  for (const auto& [start, seg] : t.segments) r.total_busy += seg.end - start;
  r.total_kernels = t.dropped_kernels;
  for (const auto& [end, kernels] : t.completions) r.total_kernels += kernels;
  for (absl::Duration w : options_.windows) r.windows.push_back(Measure(t, w, now));
  return r;
}

std::optional<WindowUsage> UsageMeter::Window(TenantId id, absl::Duration window) const {
  absl::ReaderMutexLock lock(&mu_);
  auto it = tenants_.find(id);
  if (it == tenants_.end()) return std::nullopt;
  WindowUsage u = Measure(it->second, std::min(window, options_.retention), clock_());
  u.window = window;
  return u;
}

std::optional<TenantUsage> UsageMeter::Usage(TenantId id) const {
  absl::ReaderMutexLock lock(&mu_);
  auto it = tenants_.find(id);
  if (it == tenants_.end()) return std::nullopt;
  return Report(id, it->second, clock_());
}

std::vector<TenantUsage> UsageMeter::Snapshot() const {
  absl::ReaderMutexLock lock(&mu_);
  const absl::Time now = clock_();
  std::vector<TenantUsage> out;
  out.reserve(tenants_.size());
  for (const auto& [id, t] : tenants_) out.push_back(Report(id, t, now));
  std::sort(out.begin(), out.end(),
            [](const TenantUsage& a, const TenantUsage& b) { return a.id < b.id; });
  return out;
}

}  // namespace wooly::scheduler
