// libwooly's client-side record of stream captures (capture.h): the capture
// modes, the legacy stream's implicit joins, host copies, cross-stream joins
// through events, and invalidation.
#include <cuda.h>
#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "capture.h"
#include "driver.h"

namespace wooly::client {
namespace {

constexpr uint64_t kLegacy = 1;  // wire::kStreamLegacy
constexpr uint64_t kNull = 0;    // wire::kStreamNull
constexpr uint64_t kS1 = 100, kS2 = 101, kS3 = 102;
constexpr uint64_t kT1 = 1, kT2 = 2;
constexpr uint64_t kEvent = 500;

class CaptureRegistryTest : public ::testing::Test {
 protected:
  std::atomic<int> in_progress_{0};
  CaptureRegistry reg_{&in_progress_};
};

TEST_F(CaptureRegistryTest, BeginQueryEnd) {
  EXPECT_EQ(reg_.Query(kS1).status, CU_STREAM_CAPTURE_STATUS_NONE);
  const uint64_t a = reg_.Begin(kS1, false, CU_STREAM_CAPTURE_MODE_GLOBAL, kT1, 77);
  const uint64_t b = reg_.Begin(kS2, false, CU_STREAM_CAPTURE_MODE_RELAXED, kT2, 78);
  EXPECT_NE(a, 0u);
  EXPECT_NE(a, b);
  EXPECT_EQ(in_progress_.load(), 2);
  const CaptureView v = reg_.Query(kS1);
  EXPECT_EQ(v.status, CU_STREAM_CAPTURE_STATUS_ACTIVE);
  EXPECT_EQ(v.id, a);
  EXPECT_EQ(v.origin, kS1);
  EXPECT_EQ(v.graph, 77u);
  EXPECT_EQ(v.mode, CU_STREAM_CAPTURE_MODE_GLOBAL);
  EXPECT_EQ(v.thread, kT1);
  EXPECT_EQ(reg_.InProgress().size(), 2u);
  reg_.End(a);
  EXPECT_EQ(reg_.Query(kS1).status, CU_STREAM_CAPTURE_STATUS_NONE);
  EXPECT_EQ(reg_.Query(kS2).id, b);
  EXPECT_EQ(in_progress_.load(), 1);
  // Capture ids are never reused.
  EXPECT_GT(reg_.Begin(kS1, false, CU_STREAM_CAPTURE_MODE_GLOBAL, kT1, 79), b);
}

TEST_F(CaptureRegistryTest, WorkOnCapturingStreams) {
  const uint64_t c = reg_.Begin(kS1, false, CU_STREAM_CAPTURE_MODE_RELAXED, kT1, 1);
  // Launches and device-only async work are captured.
  EXPECT_EQ(reg_.CheckWork(kS1), CUDA_SUCCESS);
  EXPECT_EQ(reg_.CheckCopy(kS1, /*sync=*/false, /*host=*/false, kT1, CU_STREAM_CAPTURE_MODE_GLOBAL),
            CUDA_SUCCESS);
  // Other streams are unaffected.
  EXPECT_EQ(reg_.CheckCopy(kS2, false, true, kT1, CU_STREAM_CAPTURE_MODE_GLOBAL), CUDA_SUCCESS);
  // A host copy cannot be captured, and invalidates the capture...
  EXPECT_EQ(reg_.CheckCopy(kS1, false, /*host=*/true, kT1, CU_STREAM_CAPTURE_MODE_GLOBAL),
            CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED);
  EXPECT_EQ(reg_.Query(kS1).status, CU_STREAM_CAPTURE_STATUS_INVALIDATED);
  EXPECT_EQ(reg_.Query(kS1).id, c);
  // ...after which any work on it reports the invalidation.
  EXPECT_EQ(reg_.CheckWork(kS1), CUDA_ERROR_STREAM_CAPTURE_INVALIDATED);
  EXPECT_EQ(reg_.CheckCopy(kS1, false, true, kT1, CU_STREAM_CAPTURE_MODE_GLOBAL),
            CUDA_ERROR_STREAM_CAPTURE_INVALIDATED);

  // A synchronous copy on a capturing stream (here the per-thread stream of
  // a _ptds call) is refused too.
  reg_.Begin(kS2, true, CU_STREAM_CAPTURE_MODE_RELAXED, kT1, 2);
  EXPECT_EQ(reg_.CheckCopy(kS2, /*sync=*/true, false, kT1, CU_STREAM_CAPTURE_MODE_RELAXED),
            CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED);
  EXPECT_EQ(reg_.Query(kS2).status, CU_STREAM_CAPTURE_STATUS_INVALIDATED);
}

TEST_F(CaptureRegistryTest, LegacyStreamMayNotJoinABlockingCapture) {
  reg_.Begin(kS1, /*blocking=*/false, CU_STREAM_CAPTURE_MODE_RELAXED, kT1, 1);
  EXPECT_FALSE(reg_.LegacyStreamBlocked());
  EXPECT_EQ(reg_.CheckWork(kLegacy), CUDA_SUCCESS);
  EXPECT_EQ(reg_.CheckWork(kNull), CUDA_SUCCESS);

  reg_.Begin(kS2, /*blocking=*/true, CU_STREAM_CAPTURE_MODE_RELAXED, kT1, 2);
  EXPECT_TRUE(reg_.LegacyStreamBlocked());
  EXPECT_EQ(reg_.CheckWork(kNull), CUDA_ERROR_STREAM_CAPTURE_IMPLICIT);
  EXPECT_EQ(reg_.CheckCopy(kLegacy, false, false, kT1, CU_STREAM_CAPTURE_MODE_RELAXED),
            CUDA_ERROR_STREAM_CAPTURE_IMPLICIT);
  // Only the blocking stream's capture is invalidated.
  EXPECT_EQ(reg_.Query(kS2).status, CU_STREAM_CAPTURE_STATUS_INVALIDATED);
  EXPECT_EQ(reg_.Query(kS1).status, CU_STREAM_CAPTURE_STATUS_ACTIVE);
}

TEST_F(CaptureRegistryTest, GlobalModeProhibitsUnsafeCallsEverywhere) {
  reg_.Begin(kS1, false, CU_STREAM_CAPTURE_MODE_GLOBAL, kT1, 1);
  // Another thread that switched to thread-local or relaxed mode may.
  EXPECT_EQ(reg_.CheckUnsafeCall(kT2, CU_STREAM_CAPTURE_MODE_THREAD_LOCAL), CUDA_SUCCESS);
  EXPECT_EQ(reg_.CheckUnsafeCall(kT2, CU_STREAM_CAPTURE_MODE_RELAXED), CUDA_SUCCESS);
  EXPECT_EQ(reg_.CheckUnsafeCall(kT1, CU_STREAM_CAPTURE_MODE_RELAXED), CUDA_SUCCESS);
  EXPECT_EQ(reg_.Query(kS1).status, CU_STREAM_CAPTURE_STATUS_ACTIVE);
  // A thread in the default (global) mode may not, and the capture is lost.
  EXPECT_EQ(reg_.CheckUnsafeCall(kT2, CU_STREAM_CAPTURE_MODE_GLOBAL),
            CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED);
  EXPECT_EQ(reg_.Query(kS1).status, CU_STREAM_CAPTURE_STATUS_INVALIDATED);
}

TEST_F(CaptureRegistryTest, ThreadLocalModeOnlyBindsTheCapturingThread) {
  reg_.Begin(kS1, false, CU_STREAM_CAPTURE_MODE_THREAD_LOCAL, kT1, 1);
  EXPECT_EQ(reg_.CheckUnsafeCall(kT2, CU_STREAM_CAPTURE_MODE_GLOBAL), CUDA_SUCCESS);
  EXPECT_EQ(reg_.CheckCopy(kS3, /*sync=*/true, true, kT2, CU_STREAM_CAPTURE_MODE_GLOBAL),
            CUDA_SUCCESS);
  EXPECT_EQ(reg_.Query(kS1).status, CU_STREAM_CAPTURE_STATUS_ACTIVE);
  EXPECT_EQ(reg_.CheckUnsafeCall(kT1, CU_STREAM_CAPTURE_MODE_THREAD_LOCAL),
            CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED);
  EXPECT_EQ(reg_.Query(kS1).status, CU_STREAM_CAPTURE_STATUS_INVALIDATED);
}

TEST_F(CaptureRegistryTest, RelaxedCapturesProhibitNothing) {
  reg_.Begin(kS1, false, CU_STREAM_CAPTURE_MODE_RELAXED, kT1, 1);
  EXPECT_EQ(reg_.CheckUnsafeCall(kT1, CU_STREAM_CAPTURE_MODE_GLOBAL), CUDA_SUCCESS);
  EXPECT_EQ(reg_.CheckUnsafeCall(kT2, CU_STREAM_CAPTURE_MODE_GLOBAL), CUDA_SUCCESS);
  // A synchronous copy elsewhere is fine; the context cannot be synchronized.
  EXPECT_EQ(reg_.CheckCopy(kS3, true, true, kT1, CU_STREAM_CAPTURE_MODE_GLOBAL), CUDA_SUCCESS);
  EXPECT_EQ(reg_.CheckCtxSynchronize(), CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED);
  EXPECT_EQ(reg_.Query(kS1).status, CU_STREAM_CAPTURE_STATUS_INVALIDATED);
}

TEST_F(CaptureRegistryTest, StreamsJoinThroughCapturedEvents) {
  const uint64_t c = reg_.Begin(kS1, false, CU_STREAM_CAPTURE_MODE_GLOBAL, kT1, 9);
  // An event recorded outside the capture joins nothing.
  reg_.NoteEventRecord(kEvent, kS3);
  reg_.NoteStreamWait(kS2, false, kEvent);
  EXPECT_EQ(reg_.Query(kS2).status, CU_STREAM_CAPTURE_STATUS_NONE);
  // Recorded in the capture, it pulls the waiting stream in.
  reg_.NoteEventRecord(kEvent, kS1);
  reg_.NoteStreamWait(kS2, /*blocking=*/true, kEvent);
  const CaptureView v = reg_.Query(kS2);
  EXPECT_EQ(v.status, CU_STREAM_CAPTURE_STATUS_ACTIVE);
  EXPECT_EQ(v.id, c);
  EXPECT_EQ(v.origin, kS1);
  EXPECT_EQ(v.graph, 9u);
  // The joined stream is blocking, so the legacy stream is now off limits.
  EXPECT_TRUE(reg_.LegacyStreamBlocked());
  // Re-recording outside the capture makes the event an ordinary one.
  reg_.NoteEventRecord(kEvent, kS3);
  reg_.NoteStreamWait(kS3, false, kEvent);
  EXPECT_EQ(reg_.Query(kS3).status, CU_STREAM_CAPTURE_STATUS_NONE);
  // The legacy stream never joins.
  reg_.NoteEventRecord(kEvent, kS1);
  reg_.NoteStreamWait(kNull, true, kEvent);
  EXPECT_EQ(reg_.Query(kNull).status, CU_STREAM_CAPTURE_STATUS_NONE);
  // Ending the capture releases every stream that took part.
  reg_.End(c);
  EXPECT_EQ(reg_.Query(kS2).status, CU_STREAM_CAPTURE_STATUS_NONE);
  EXPECT_FALSE(reg_.LegacyStreamBlocked());
  reg_.NoteStreamWait(kS3, false, kEvent);
  EXPECT_EQ(reg_.Query(kS3).status, CU_STREAM_CAPTURE_STATUS_NONE);
}

TEST_F(CaptureRegistryTest, DestroyedStreamsAndEvents) {
  reg_.Begin(kS1, false, CU_STREAM_CAPTURE_MODE_GLOBAL, kT1, 1);
  reg_.NoteEventRecord(kEvent, kS1);
  reg_.NoteStreamWait(kS2, false, kEvent);
  reg_.ForgetEvent(kEvent);
  reg_.NoteStreamWait(kS3, false, kEvent);
  EXPECT_EQ(reg_.Query(kS3).status, CU_STREAM_CAPTURE_STATUS_NONE);
  // A joined stream leaves; the origin stream ends the capture.
  reg_.ForgetStream(kS2);
  EXPECT_EQ(reg_.Query(kS2).status, CU_STREAM_CAPTURE_STATUS_NONE);
  EXPECT_EQ(in_progress_.load(), 1);
  reg_.ForgetStream(kS1);
  EXPECT_EQ(in_progress_.load(), 0);
  EXPECT_TRUE(reg_.InProgress().empty());
}

TEST_F(CaptureRegistryTest, BeginningAgainReplacesAStaleRecord) {
  const uint64_t old = reg_.Begin(kS1, false, CU_STREAM_CAPTURE_MODE_GLOBAL, kT1, 1);
  reg_.Invalidate(old);
  const uint64_t fresh = reg_.Begin(kS1, false, CU_STREAM_CAPTURE_MODE_GLOBAL, kT1, 2);
  EXPECT_EQ(reg_.Query(kS1).id, fresh);
  EXPECT_EQ(reg_.Query(kS1).status, CU_STREAM_CAPTURE_STATUS_ACTIVE);
  EXPECT_EQ(in_progress_.load(), 1);
}

TEST(CaptureModeTest, ThreadExchangeStreamCaptureModeIsPerThread) {
  CUstreamCaptureMode mode = CU_STREAM_CAPTURE_MODE_RELAXED;
  ASSERT_EQ(cuThreadExchangeStreamCaptureMode(&mode), CUDA_SUCCESS);
  EXPECT_EQ(mode, CU_STREAM_CAPTURE_MODE_GLOBAL);  // the default
  EXPECT_EQ(ThreadCaptureMode(), CU_STREAM_CAPTURE_MODE_RELAXED);
  std::thread([] { EXPECT_EQ(ThreadCaptureMode(), CU_STREAM_CAPTURE_MODE_GLOBAL); }).join();
  mode = static_cast<CUstreamCaptureMode>(7);
  EXPECT_EQ(cuThreadExchangeStreamCaptureMode(&mode), CUDA_ERROR_INVALID_VALUE);
  EXPECT_EQ(cuThreadExchangeStreamCaptureMode(nullptr), CUDA_ERROR_INVALID_VALUE);
  mode = CU_STREAM_CAPTURE_MODE_GLOBAL;
  ASSERT_EQ(cuThreadExchangeStreamCaptureMode(&mode), CUDA_SUCCESS);
  EXPECT_EQ(mode, CU_STREAM_CAPTURE_MODE_RELAXED);
  EXPECT_NE(ThreadToken(), 0u);
}

TEST(CaptureModeTest, StatusQueriesNeedInit) {
  ResetForTesting();
  CUstreamCaptureStatus status;
  EXPECT_EQ(cuStreamIsCapturing(nullptr, &status), CUDA_ERROR_NOT_INITIALIZED);
  cuuint64_t id = 0;
  EXPECT_EQ(cuStreamGetCaptureInfo(nullptr, &status, &id, nullptr, nullptr, nullptr, nullptr),
            CUDA_ERROR_NOT_INITIALIZED);
}

}  // namespace
}  // namespace wooly::client
