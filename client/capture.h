// Stream capture as libwooly sees it (docs/graphs.md).
//
// The real capture runs in woolyd, on the server's stream, always in relaxed
// mode: woolyd serves every thread of this process (and every other client)
// from one thread, so the driver there cannot apply the application's
// per-thread capture modes. libwooly keeps its own record of each capture
// sequence the application began, so that
//  - cuStreamIsCapturing and cuStreamGetCaptureInfo (hot in PyTorch) are
//    answered without a round trip;
//  - the capture modes (cuStreamBeginCapture's mode and
//    cuThreadExchangeStreamCaptureMode) are enforced here: a "potentially
//    unsafe" call (cuMemAlloc, cuMemFree, synchronous copies and memsets,
//    cuEventQuery/Synchronize) that the calling thread's mode prohibits fails
//    with CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED and invalidates the captures
//    that prohibit it, as the driver does; cuCtxSynchronize does so for
//    every capture in progress, whatever the mode;
//  - work on the legacy stream while a blocking stream captures fails with
//    CUDA_ERROR_STREAM_CAPTURE_IMPLICIT (woolyd emulates the legacy stream
//    with a stream of its own, so its driver cannot see that join);
//  - copies to or from host memory on a capturing stream fail with
//    CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED: the graph would replay them in
//    woolyd, which cannot reach this process's memory.
// A capture invalidated here stays active in woolyd; its graph is discarded
// when the application ends the capture. Everything woolyd's driver can judge
// by itself (synchronizing a capturing stream, waiting on an uncaptured
// event, merging captures, unjoined work) is forwarded, and a result in
// 900-908 marks the local record stale so the next status query refreshes it.
//
// Keys: streams by their wire id (driver.h ResolveStream), events by their
// server id. Streams joined through an event wait take part in the capture
// with the same id, as in CUDA.
//
// Thread safety: everything here is thread-safe; no lock is held while
// talking to woolyd. With no capture in progress every hook returns after one
// atomic load.
#ifndef WOOLY_CLIENT_CAPTURE_H_
#define WOOLY_CLIENT_CAPTURE_H_

#include <cuda.h>

#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>
#include <unordered_map>
#include <vector>

namespace wooly::client {

namespace internal {
extern std::atomic<int> g_captures_in_progress;
extern std::atomic<bool> g_capture_state_stale;
}  // namespace internal

inline bool AnyCaptureInProgress() {
  return internal::g_captures_in_progress.load(std::memory_order_acquire) != 0;
}

// The calling thread's capture interaction mode (CU_STREAM_CAPTURE_MODE_GLOBAL
// until cuThreadExchangeStreamCaptureMode changes it).
CUstreamCaptureMode ThreadCaptureMode();
void SetThreadCaptureMode(CUstreamCaptureMode mode);
// A process-unique number for the calling thread.
uint64_t ThreadToken();

// One capture sequence as a query sees it.
struct CaptureView {
  CUstreamCaptureStatus status = CU_STREAM_CAPTURE_STATUS_NONE;
  uint64_t id = 0;      // cuStreamGetCaptureInfo's id; 0 when not capturing
  uint64_t origin = 0;  // wire id of the stream the capture began on
  uint64_t graph = 0;   // woolyd's id of the graph being captured
  CUstreamCaptureMode mode = CU_STREAM_CAPTURE_MODE_GLOBAL;
  uint64_t thread = 0;  // ThreadToken() of the thread that began it
};

// The bookkeeping, separate from the driver so that it can be unit-tested.
// Every Check* applies the invalidation the driver would and returns the
// CUresult the call must fail with (CUDA_SUCCESS to go ahead).
class CaptureRegistry {
 public:
  // Records a capture woolyd began on `stream`; `blocking` is whether the
  // stream synchronizes with the legacy stream. Returns the capture id.
  uint64_t Begin(uint64_t stream, bool blocking, CUstreamCaptureMode mode, uint64_t thread,
                 uint64_t graph);
  // The capture `stream` takes part in (status NONE when none).
  CaptureView Query(uint64_t stream) const;
  // Forgets a capture sequence, its streams and its events.
  void End(uint64_t capture_id);
  // Marks a capture invalidated (by woolyd's answer).
  void Invalidate(uint64_t capture_id);
  // The captures in progress.
  std::vector<CaptureView> InProgress() const;
  // Whether any capture has a blocking stream taking part (the legacy
  // stream then may not be used).
  bool LegacyStreamBlocked() const;

  // Work enqueued on `stream` (a launch, async memset or device copy, an
  // event record or wait, a stream synchronize or query):
  // CUDA_ERROR_STREAM_CAPTURE_IMPLICIT for the legacy stream while a
  // blocking stream captures; CUDA_ERROR_STREAM_CAPTURE_INVALIDATED on an
  // invalidated capture.
  CUresult CheckWork(uint64_t stream);
  // A copy or memset. `sync` ones are potentially unsafe calls and may not
  // run on a capturing stream; `host` ones (a host side) may not either.
  CUresult CheckCopy(uint64_t stream, bool sync, bool host, uint64_t thread,
                     CUstreamCaptureMode thread_mode);
  // A potentially unsafe call made by `thread` in `thread_mode`.
  CUresult CheckUnsafeCall(uint64_t thread, CUstreamCaptureMode thread_mode);
  // cuCtxSynchronize: refused while any capture is in progress.
  CUresult CheckCtxSynchronize();

  // After a successful cuEventRecord / cuStreamWaitEvent.
  void NoteEventRecord(uint64_t event, uint64_t stream);
  void NoteStreamWait(uint64_t stream, bool blocking, uint64_t event);
  // A destroyed stream or event.
  void ForgetStream(uint64_t stream);
  void ForgetEvent(uint64_t event);

  // Forgets everything (tests).
  void Clear();
  // pthread_atfork: the child forgets every capture (they are the parent's).
  void LockForFork();
  void UnlockAfterForkInParent();
  void ResetAfterForkInChild();
  // Read by AnyCaptureInProgress(); the registry keeps it up to date.
  explicit CaptureRegistry(std::atomic<int>* in_progress = nullptr) : in_progress_(in_progress) {}

 private:
  struct Sequence {
    uint64_t origin = 0;
    uint64_t graph = 0;
    CUstreamCaptureMode mode = CU_STREAM_CAPTURE_MODE_GLOBAL;
    uint64_t thread = 0;
    bool invalidated = false;
  };
  struct Member {
    uint64_t capture = 0;
    bool blocking = false;
  };

  CUresult WorkLocked(uint64_t stream, bool sync, bool host);
  CUresult UnsafeLocked(uint64_t thread, CUstreamCaptureMode thread_mode);
  void InvalidateBlockingLocked();
  void EndLocked(uint64_t capture_id);
  void Publish();

  std::atomic<int>* const in_progress_;
  mutable std::mutex mu_;
  uint64_t next_id_ = 1;
  std::map<uint64_t, Sequence> sequences_;         // by capture id
  std::unordered_map<uint64_t, Member> streams_;   // by wire stream id
  std::unordered_map<uint64_t, uint64_t> events_;  // event id -> capture id
};

// The process's registry (never destroyed; cleared in the child of fork).
CaptureRegistry& Captures();

// --- Hooks for the forwarded calls; each costs one atomic load when no
// capture is in progress.

inline CUresult CaptureCheckWork(uint64_t stream) {
  return AnyCaptureInProgress() ? Captures().CheckWork(stream) : CUDA_SUCCESS;
}
inline CUresult CaptureCheckCopy(uint64_t stream, bool async, bool host) {
  return AnyCaptureInProgress()
             ? Captures().CheckCopy(stream, !async, host, ThreadToken(), ThreadCaptureMode())
             : CUDA_SUCCESS;
}
inline CUresult CaptureCheckUnsafeCall() {
  return AnyCaptureInProgress() ? Captures().CheckUnsafeCall(ThreadToken(), ThreadCaptureMode())
                                : CUDA_SUCCESS;
}
inline CUresult CaptureCheckCtxSynchronize() {
  return AnyCaptureInProgress() ? Captures().CheckCtxSynchronize() : CUDA_SUCCESS;
}
inline void CaptureNoteEventRecord(uint64_t event, uint64_t stream) {
  if (AnyCaptureInProgress()) Captures().NoteEventRecord(event, stream);
}
// `handle` is the application's stream handle (for whether it is blocking).
void CaptureNoteStreamWait(CUstream handle, uint64_t stream, uint64_t event);
inline void CaptureForgetStream(uint64_t stream) {
  if (AnyCaptureInProgress()) Captures().ForgetStream(stream);
}
inline void CaptureForgetEvent(uint64_t event) {
  if (AnyCaptureInProgress()) Captures().ForgetEvent(event);
}
// Every forwarded result passes here (driver.cc Rpc): a capture error means
// woolyd's driver may have invalidated a capture.
inline void CaptureNoteResult(CUresult r) {
  if (r >= CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED && r <= CUDA_ERROR_STREAM_CAPTURE_WRONG_THREAD &&
      AnyCaptureInProgress()) {
    internal::g_capture_state_stale.store(true, std::memory_order_release);
  }
}

// Whether an application stream handle synchronizes with the legacy stream
// (the per-thread default stream does; CU_STREAM_NON_BLOCKING streams don't).
bool StreamHandleIsBlocking(CUstream handle);

}  // namespace wooly::client

#endif  // WOOLY_CLIENT_CAPTURE_H_
