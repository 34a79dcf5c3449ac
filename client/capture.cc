#include "capture.h"

#include <pthread.h>

#include <new>

#include "objects.h"

namespace wooly::client {

namespace internal {
std::atomic<int> g_captures_in_progress{0};
std::atomic<bool> g_capture_state_stale{false};
}  // namespace internal

namespace {

thread_local CUstreamCaptureMode t_mode = CU_STREAM_CAPTURE_MODE_GLOBAL;
std::atomic<uint64_t> g_next_thread_token{1};
thread_local uint64_t t_token = 0;

bool IsLegacy(uint64_t stream) {
  // wire::kStreamNull and wire::kStreamLegacy.
  return stream == 0 || stream == 1;
}

void ForkPrepare() { Captures().LockForFork(); }
void ForkParent() { Captures().UnlockAfterForkInParent(); }
void ForkChild() { Captures().ResetAfterForkInChild(); }

}  // namespace

CUstreamCaptureMode ThreadCaptureMode() { return t_mode; }
void SetThreadCaptureMode(CUstreamCaptureMode mode) { t_mode = mode; }

uint64_t ThreadToken() {
  if (t_token == 0) t_token = g_next_thread_token.fetch_add(1, std::memory_order_relaxed);
  return t_token;
}

CaptureRegistry& Captures() {
  static CaptureRegistry* r = [] {
    auto* reg = new CaptureRegistry(&internal::g_captures_in_progress);
    // The parent's captures live in its session: a forked child (which gets
    // a session of its own) starts with none.
    pthread_atfork(ForkPrepare, ForkParent, ForkChild);
    return reg;
  }();
  return *r;
}

// ----------------------------------------------------------------- registry

void CaptureRegistry::Publish() {
  if (in_progress_ != nullptr) {
    in_progress_->store(static_cast<int>(sequences_.size()), std::memory_order_release);
  }
}

uint64_t CaptureRegistry::Begin(uint64_t stream, bool blocking, CUstreamCaptureMode mode,
                                uint64_t thread, uint64_t graph) {
  std::lock_guard<std::mutex> l(mu_);
  // woolyd accepted the capture, so any record of an earlier one is stale.
  if (auto it = streams_.find(stream); it != streams_.end()) {
    const uint64_t old = it->second.capture;
    if (sequences_.at(old).origin == stream) {
      EndLocked(old);
    } else {
      streams_.erase(it);
    }
  }
  const uint64_t id = next_id_++;
  sequences_[id] = Sequence{stream, graph, mode, thread, false};
  streams_[stream] = Member{id, blocking};
  Publish();
  return id;
}

CaptureView CaptureRegistry::Query(uint64_t stream) const {
  std::lock_guard<std::mutex> l(mu_);
  CaptureView v;
  auto it = streams_.find(stream);
  if (it == streams_.end()) return v;
  const Sequence& s = sequences_.at(it->second.capture);
  v.status = s.invalidated ? CU_STREAM_CAPTURE_STATUS_INVALIDATED : CU_STREAM_CAPTURE_STATUS_ACTIVE;
  v.id = it->second.capture;
  v.origin = s.origin;
  v.graph = s.graph;
  v.mode = s.mode;
  v.thread = s.thread;
  return v;
}

void CaptureRegistry::EndLocked(uint64_t capture_id) {
  std::erase_if(streams_, [capture_id](const auto& m) { return m.second.capture == capture_id; });
  std::erase_if(events_, [capture_id](const auto& e) { return e.second == capture_id; });
  sequences_.erase(capture_id);
  Publish();
}

void CaptureRegistry::End(uint64_t capture_id) {
  std::lock_guard<std::mutex> l(mu_);
  EndLocked(capture_id);
}

void CaptureRegistry::Invalidate(uint64_t capture_id) {
  std::lock_guard<std::mutex> l(mu_);
  if (auto it = sequences_.find(capture_id); it != sequences_.end()) it->second.invalidated = true;
}

std::vector<CaptureView> CaptureRegistry::InProgress() const {
  std::lock_guard<std::mutex> l(mu_);
  std::vector<CaptureView> out;
  for (const auto& [id, s] : sequences_) {
    CaptureView v;
    v.status =
        s.invalidated ? CU_STREAM_CAPTURE_STATUS_INVALIDATED : CU_STREAM_CAPTURE_STATUS_ACTIVE;
    v.id = id;
    v.origin = s.origin;
    v.graph = s.graph;
    v.mode = s.mode;
    v.thread = s.thread;
    out.push_back(v);
  }
  return out;
}

bool CaptureRegistry::LegacyStreamBlocked() const {
  std::lock_guard<std::mutex> l(mu_);
  for (const auto& [stream, m] : streams_) {
    if (m.blocking) return true;
  }
  return false;
}

void CaptureRegistry::InvalidateBlockingLocked() {
  for (const auto& [stream, m] : streams_) {
    if (m.blocking) sequences_.at(m.capture).invalidated = true;
  }
}

CUresult CaptureRegistry::WorkLocked(uint64_t stream, bool sync, bool host) {
  if (IsLegacy(stream)) {
    bool blocked = false;
    for (const auto& [s, m] : streams_) blocked |= m.blocking;
    if (!blocked) return CUDA_SUCCESS;
    InvalidateBlockingLocked();
    return CUDA_ERROR_STREAM_CAPTURE_IMPLICIT;
  }
  auto it = streams_.find(stream);
  if (it == streams_.end()) return CUDA_SUCCESS;
  Sequence& s = sequences_.at(it->second.capture);
  if (s.invalidated) return CUDA_ERROR_STREAM_CAPTURE_INVALIDATED;
  if (sync || host) {
    s.invalidated = true;
    return CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED;
  }
  return CUDA_SUCCESS;
}

CUresult CaptureRegistry::UnsafeLocked(uint64_t thread, CUstreamCaptureMode thread_mode) {
  if (thread_mode == CU_STREAM_CAPTURE_MODE_RELAXED) return CUDA_SUCCESS;
  bool prohibited = false;
  for (auto& [id, s] : sequences_) {
    // THREAD_LOCAL: only this thread's own non-relaxed captures count;
    // GLOBAL: also every other thread's global-mode capture.
    const bool own = s.thread == thread && s.mode != CU_STREAM_CAPTURE_MODE_RELAXED;
    const bool other = thread_mode == CU_STREAM_CAPTURE_MODE_GLOBAL && s.thread != thread &&
                       s.mode == CU_STREAM_CAPTURE_MODE_GLOBAL;
    if (own || other) {
      s.invalidated = true;
      prohibited = true;
    }
  }
  return prohibited ? CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED : CUDA_SUCCESS;
}

CUresult CaptureRegistry::CheckWork(uint64_t stream) {
  std::lock_guard<std::mutex> l(mu_);
  return WorkLocked(stream, /*sync=*/false, /*host=*/false);
}

CUresult CaptureRegistry::CheckCopy(uint64_t stream, bool sync, bool host, uint64_t thread,
                                    CUstreamCaptureMode thread_mode) {
  std::lock_guard<std::mutex> l(mu_);
  if (sync) {
    if (CUresult r = UnsafeLocked(thread, thread_mode); r != CUDA_SUCCESS) return r;
  }
  return WorkLocked(stream, sync, host);
}

CUresult CaptureRegistry::CheckUnsafeCall(uint64_t thread, CUstreamCaptureMode thread_mode) {
  std::lock_guard<std::mutex> l(mu_);
  return UnsafeLocked(thread, thread_mode);
}

CUresult CaptureRegistry::CheckCtxSynchronize() {
  std::lock_guard<std::mutex> l(mu_);
  if (sequences_.empty()) return CUDA_SUCCESS;
  for (auto& [id, s] : sequences_) s.invalidated = true;
  return CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED;
}

void CaptureRegistry::NoteEventRecord(uint64_t event, uint64_t stream) {
  std::lock_guard<std::mutex> l(mu_);
  auto it = streams_.find(stream);
  if (it == streams_.end()) {
    events_.erase(event);  // recorded outside any capture
  } else {
    events_[event] = it->second.capture;
  }
}

void CaptureRegistry::NoteStreamWait(uint64_t stream, bool blocking, uint64_t event) {
  std::lock_guard<std::mutex> l(mu_);
  auto ev = events_.find(event);
  if (ev == events_.end() || IsLegacy(stream) || streams_.contains(stream)) return;
  // Waiting on an event of a capture joins that capture.
  streams_[stream] = Member{ev->second, blocking};
}

void CaptureRegistry::ForgetStream(uint64_t stream) {
  std::lock_guard<std::mutex> l(mu_);
  auto it = streams_.find(stream);
  if (it == streams_.end()) return;
  const uint64_t capture = it->second.capture;
  if (sequences_.at(capture).origin == stream) {
    EndLocked(capture);  // woolyd abandons the capture with its stream
  } else {
    streams_.erase(it);
  }
}

void CaptureRegistry::ForgetEvent(uint64_t event) {
  std::lock_guard<std::mutex> l(mu_);
  events_.erase(event);
}

void CaptureRegistry::LockForFork() { mu_.lock(); }
void CaptureRegistry::UnlockAfterForkInParent() { mu_.unlock(); }
void CaptureRegistry::ResetAfterForkInChild() {
  // Only the forking thread exists in the child; it holds the lock.
  new (&mu_) std::mutex();
  sequences_.clear();
  streams_.clear();
  events_.clear();
  Publish();
  internal::g_capture_state_stale.store(false);
}

void CaptureRegistry::Clear() {
  std::lock_guard<std::mutex> l(mu_);
  sequences_.clear();
  streams_.clear();
  events_.clear();
  Publish();
}

// -------------------------------------------------------------------- hooks

bool StreamHandleIsBlocking(CUstream handle) {
  if (handle == nullptr || handle == CU_STREAM_PER_THREAD || handle == CU_STREAM_LEGACY) {
    return true;
  }
  const Stream* s = As<Stream>(handle, Tag::kStream);
  return s != nullptr && (s->flags & CU_STREAM_NON_BLOCKING) == 0;
}

void CaptureNoteStreamWait(CUstream handle, uint64_t stream, uint64_t event) {
  if (AnyCaptureInProgress()) {
    Captures().NoteStreamWait(stream, StreamHandleIsBlocking(handle), event);
  }
}

}  // namespace wooly::client
