// LaunchPipeline on its own: jobs run in submission order on one thread,
// Drain waits for them, a full queue makes the producer wait, and Stop runs
// what is queued.
#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

#include "wooly/server/launch_pipeline.h"

namespace wooly::server {
namespace {

// Records the function handle of every job it runs, and the thread.
struct Recorder {
  std::vector<Handle> ran;  // written by the pipeline's thread only
  std::atomic<int> threads_seen{0};
  std::thread::id runner;
  std::atomic<bool> hold{false};  // while true, jobs wait (to fill the queue)

  LaunchPipeline::Burst Burst() {
    return [this](absl::FunctionRef<LaunchPipeline::Job*()> next) {
      if (runner != std::this_thread::get_id()) {
        runner = std::this_thread::get_id();
        threads_seen.fetch_add(1);
      }
      while (LaunchPipeline::Job* job = next()) {
        while (hold.load()) std::this_thread::yield();
        ran.push_back(job->function);
      }
    };
  }
};

TEST(LaunchPipelineTest, RunsJobsInOrderOnOneThread) {
  Recorder r;
  LaunchPipeline p(r.Burst(), 8);
  for (Handle h = 1; h <= 1000; ++h) {
    LaunchPipeline::Job& job = p.Slot();
    job.function = h;
    job.args.assign(3, static_cast<uint8_t>(h));
    p.Submit();
    if (h % 97 == 0) {
      p.Drain();
      EXPECT_FALSE(p.Busy());
      EXPECT_EQ(r.ran.size(), h);  // Drain waits for every submitted job
    }
  }
  p.Drain();
  ASSERT_EQ(r.ran.size(), 1000u);
  for (Handle h = 1; h <= 1000; ++h) EXPECT_EQ(r.ran[h - 1], h);
  EXPECT_EQ(r.threads_seen.load(), 1);
  EXPECT_NE(r.runner, std::this_thread::get_id());
}

TEST(LaunchPipelineTest, AFullQueueMakesTheProducerWait) {
  Recorder r;
  r.hold = true;
  LaunchPipeline p(r.Burst(), 4);
  std::atomic<int> submitted{0};
  std::thread producer([&] {
    for (Handle h = 1; h <= 10; ++h) {
      p.Slot().function = h;
      p.Submit();
      submitted.fetch_add(1);
    }
  });
  // The pipeline holds its first job; at most the queue's worth gets in.
  while (submitted.load() < 4) std::this_thread::yield();
  EXPECT_TRUE(p.Busy());
  EXPECT_LE(submitted.load(), 5);
  r.hold = false;
  producer.join();
  p.Drain();
  ASSERT_EQ(r.ran.size(), 10u);
  for (Handle h = 1; h <= 10; ++h) EXPECT_EQ(r.ran[h - 1], h);
}

TEST(LaunchPipelineTest, StopRunsWhatIsQueued) {
  Recorder r;
  r.hold = true;
  {
    LaunchPipeline p(r.Burst(), 16);
    for (Handle h = 1; h <= 5; ++h) {
      p.Slot().function = h;
      p.Submit();
    }
    r.hold = false;
    p.Stop();
    p.Stop();  // idempotent
    EXPECT_FALSE(p.Busy());
  }
  EXPECT_EQ(r.ran, (std::vector<Handle>{1, 2, 3, 4, 5}));
}

TEST(LaunchPipelineTest, WakesAfterSleeping) {
  Recorder r;
  LaunchPipeline p(r.Burst(), 4);
  for (Handle h = 1; h <= 3; ++h) {
    // Each job finds the thread asleep, so Submit must wake it.
    while (!p.Sleeping()) std::this_thread::yield();
    p.Slot().function = h;
    p.Submit();
    p.Drain();
    EXPECT_EQ(r.ran.size(), h);
  }
}

}  // namespace
}  // namespace wooly::server
