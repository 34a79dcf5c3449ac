// wire::WorkerPool and ProcessWorkerPool: jobs run on up to `width` threads,
// each thread at most once per job, concurrent callers take turns, and a
// forked child gets a working pool of its own.
#include "wooly/proto/worker_pool.h"

#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "wooly/proto/content_digest.h"

namespace wooly::wire {
namespace {

// A job that sums 0..n-1 from a shared counter, recording which threads ran.
struct SumJob {
  explicit SumJob(uint64_t n) : n(n) {}
  const uint64_t n;
  std::atomic<uint64_t> next{0};
  std::atomic<uint64_t> sum{0};
  std::atomic<int> calls{0};
  std::mutex mu;
  std::set<std::thread::id> ids;
  bool done() const { return sum.load() == n * (n - 1) / 2; }
  std::function<void()> fn() {
    return [this] {
      calls.fetch_add(1);
      {
        std::lock_guard<std::mutex> lock(mu);
        ids.insert(std::this_thread::get_id());
      }
      for (uint64_t k; (k = next.fetch_add(1)) < n;) sum.fetch_add(k);
    };
  }
};

TEST(WorkerPoolTest, WidthOneRunsOnTheCallerOnly) {
  WorkerPool pool(4);
  SumJob job(1000);
  pool.Run(1, job.fn());
  EXPECT_TRUE(job.done());
  EXPECT_EQ(job.calls.load(), 1);
  EXPECT_EQ(job.ids.count(std::this_thread::get_id()), 1u);
  EXPECT_EQ(pool.started(), 0u);
}

TEST(WorkerPoolTest, EachThreadRunsAJobAtMostOnce) {
  WorkerPool pool(7);
  for (int round = 0; round < 200; ++round) {
    SumJob job(100000);
    pool.Run(8, job.fn());
    ASSERT_TRUE(job.done()) << round;
    ASSERT_GE(job.calls.load(), 1);
    ASSERT_LE(job.calls.load(), 8);
    ASSERT_EQ(job.ids.size(), static_cast<size_t>(job.calls.load()));
    ASSERT_EQ(job.ids.count(std::this_thread::get_id()), 1u);
  }
  EXPECT_EQ(pool.started(), 7u);
}

TEST(WorkerPoolTest, WidthIsCappedAtTheThreadLimit) {
  WorkerPool pool(2);
  SumJob job(10000);
  pool.Run(64, job.fn());
  EXPECT_LE(job.calls.load(), 3);
  EXPECT_TRUE(job.done());
  EXPECT_EQ(pool.started(), 2u);
}

TEST(WorkerPoolTest, ConcurrentCallersTakeTurns) {
  WorkerPool pool(3);
  std::vector<std::thread> callers;
  std::atomic<int> wrong{0};
  for (int c = 0; c < 4; ++c) {
    callers.emplace_back([&] {
      for (int round = 0; round < 100; ++round) {
        SumJob job(5000);
        pool.Run(4, job.fn());
        if (!job.done()) wrong.fetch_add(1);
      }
    });
  }
  for (std::thread& t : callers) t.join();
  EXPECT_EQ(wrong.load(), 0);
}

TEST(WorkerPoolTest, ProcessPoolWorksInAForkedChild) {
  std::vector<uint8_t> bytes(size_t{24} << 20);
  for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<uint8_t>(i * 131 + (i >> 13));
  const DigestInput in[] = {{bytes.data(), bytes.size()}};
  // The parent's pool has threads before the fork.
  const ContentDigest expected = ContentDigests(in, 8)[0];
  ASSERT_GT(ProcessWorkerPool().started(), 0u);
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    // The child's pool is a new one: hashing on several threads completes
    // (a pool inherited with its threads gone would wait forever) and agrees.
    const bool fresh = ProcessWorkerPool().started() == 0;
    const bool same = ContentDigests(in, 8)[0] == expected;
    _exit(fresh && same ? 0 : 1);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
  EXPECT_EQ(ContentDigests(in, 8)[0], expected);  // the parent's pool still works
}

}  // namespace
}  // namespace wooly::wire
