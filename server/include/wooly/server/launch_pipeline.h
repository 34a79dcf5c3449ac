// A session's posted kernel launches, run on a thread of their own.
//
// woolyd serves each client on one thread, which parses a command, checks
// it and then makes the driver call. For a stream of posted launches that
// thread's own work (about 0.8 us a launch) added to the driver's (about
// 3 us) kept Wooly below native launch throughput. The session thread
// therefore checks a posted launch and queues it here; this pipeline's
// thread makes the driver calls, in order, while the session thread parses
// the next one.
//
// Ordering: the session drains the pipeline (Drain) before it handles any
// other command, so every driver call of a session is made in the order the
// client sent its commands.
//
// Thread safety: one producer thread (the session's, under its lock) calls
// Slot, Submit, Drain and Stop; Busy may be called from any thread. The
// burst function runs on the pipeline's thread only.
#ifndef WOOLY_SERVER_LAUNCH_PIPELINE_H_
#define WOOLY_SERVER_LAUNCH_PIPELINE_H_

#include <atomic>
#include <cstdint>
#include <thread>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/functional/function_ref.h"
#include "wooly/server/gpu_backend.h"

namespace wooly::server {

class LaunchPipeline {
 public:
  struct Job {
    Handle function = 0;
    LaunchConfig config;
    std::vector<uint8_t> args;  // capacity kept from job to job
    bool measured = false;      // wrap it in the scheduler's measurement
  };
  // Runs queued jobs: calls `next` until it returns null (no job waiting)
  // and runs each job it returns before calling `next` again.
  using Burst = absl::AnyInvocable<void(absl::FunctionRef<Job*()> next)>;

  // Starts the thread. `capacity` jobs may wait at once (the producer waits
  // when they do).
  explicit LaunchPipeline(Burst burst, size_t capacity = 256);
  // Stop().
  ~LaunchPipeline();
  LaunchPipeline(const LaunchPipeline&) = delete;
  LaunchPipeline& operator=(const LaunchPipeline&) = delete;

  // The job to fill next; waits while the queue is full. Then Submit().
  Job& Slot();
  void Submit();
  // Returns once every submitted job has run.
  void Drain();
  // True while submitted jobs have not all run.
  bool Busy() const;
  // True while the thread sleeps for want of work (tests wait for it).
  bool Sleeping() const { return sleeping_.load(std::memory_order_acquire); }
  // Runs what is queued, then ends the thread. Idempotent.
  void Stop();

 private:
  void Loop();

  Burst burst_;
  std::vector<Job> ring_;
  std::atomic<uint64_t> head_{0};  // jobs submitted
  std::atomic<uint64_t> done_{0};  // jobs run
  std::atomic<uint32_t> wake_{0};  // bumped to wake a sleeping thread
  std::atomic<bool> sleeping_{false};
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace wooly::server

#endif  // WOOLY_SERVER_LAUNCH_PIPELINE_H_
