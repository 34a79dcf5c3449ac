// Unit tests for the staging path's multi-threaded memcpy (copy_pool.h):
// byte-exact results for all sizes and alignments, concurrent callers, the
// WOOLY_COPY_THREADS setting, and use in a forked child.
#include <dirent.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "copy_pool.h"
#include "wooly/proto/defaults.h"

namespace wooly::client {
namespace {

constexpr size_t kGuard = 256;

// Fills `n` bytes with a pattern that differs per `seed` and per byte.
void Fill(uint8_t* p, size_t n, uint32_t seed) {
  uint32_t x = seed * 2654435761u + 1;
  for (size_t i = 0; i < n; ++i) {
    x = x * 1103515245u + 12345u;
    p[i] = static_cast<uint8_t>(x >> 16);
  }
}

// Copies `n` bytes from src+src_off to dst+dst_off and checks the copy and
// that no byte around the destination changed. Returns "" or what failed.
std::string CopyAndCheck(size_t n, size_t src_off, size_t dst_off, uint32_t seed) {
  std::vector<uint8_t> src(n + src_off + kGuard);
  std::vector<uint8_t> dst(n + dst_off + 2 * kGuard, 0xa5);
  Fill(src.data(), src.size(), seed);
  uint8_t* d = dst.data() + kGuard + dst_off;
  ParallelCopy(d, src.data() + src_off, n);
  if (n > 0 && std::memcmp(d, src.data() + src_off, n) != 0) {
    for (size_t i = 0; i < n; ++i) {
      if (d[i] != src[src_off + i]) return "byte " + std::to_string(i) + " differs";
    }
  }
  for (size_t i = 0; i < kGuard + dst_off; ++i) {
    if (dst[i] != 0xa5) return "wrote before the destination";
  }
  for (size_t i = kGuard + dst_off + n; i < dst.size(); ++i) {
    if (dst[i] != 0xa5) return "wrote past the destination";
  }
  return "";
}

std::vector<size_t> Sizes() {
  return {0,
          1,
          7,
          63,
          4097,
          kParallelCopyThreshold - 1,
          kParallelCopyThreshold,
          kParallelCopyThreshold + 1,
          kParallelCopyThreshold + 63,
          2 * kParallelCopyMinPart + 3,
          3 * kParallelCopyMinPart - 1,
          (3u << 20) + 17,
          (4u << 20),
          (8u << 20) - 1,
          (8u << 20),
          (8u << 20) + 4095,
          (13u << 20) + 5};
}

class CopyPoolTest : public ::testing::TestWithParam<int> {
 protected:
  void SetUp() override { SetCopyThreadsForTesting(GetParam()); }
  void TearDown() override { SetCopyThreadsForTesting(0); }
};

TEST_P(CopyPoolTest, ParallelismIsAsSet) { EXPECT_EQ(CopyThreads(), GetParam()); }

TEST_P(CopyPoolTest, CopiesEverySizeExactly) {
  uint32_t seed = 1;
  for (size_t n : Sizes()) {
    EXPECT_EQ(CopyAndCheck(n, 0, 0, seed++), "") << "n=" << n;
  }
}

TEST_P(CopyPoolTest, CopiesUnalignedRangesExactly) {
  uint32_t seed = 100;
  for (size_t n : Sizes()) {
    for (auto [s, d] : {std::pair<size_t, size_t>{1, 0}, {0, 3}, {5, 13}, {63, 1}, {17, 17}}) {
      EXPECT_EQ(CopyAndCheck(n, s, d, seed++), "") << "n=" << n << " src+" << s << " dst+" << d;
    }
  }
}

TEST_P(CopyPoolTest, RepeatedBigCopiesStayExact) {
  // Back-to-back jobs: workers still spinning from one pick up the next.
  for (uint32_t i = 0; i < 40; ++i) {
    EXPECT_EQ(CopyAndCheck((2u << 20) + i * 4099, i % 7, i % 11, 1000 + i), "") << "i=" << i;
  }
}

TEST_P(CopyPoolTest, ConcurrentCallersEachGetTheirOwnBytes) {
  constexpr int kThreads = 4;
  std::vector<std::string> errors(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([t, &errors] {
      for (int i = 0; i < 12 && errors[t].empty(); ++i) {
        const size_t n = (1u << 20) + static_cast<size_t>(t) * 333'333 + i * 65'537;
        errors[t] = CopyAndCheck(n, t, i % 5, 5000 + 100 * t + i);
      }
    });
  }
  for (auto& th : threads) th.join();
  for (int t = 0; t < kThreads; ++t) EXPECT_EQ(errors[t], "") << "thread " << t;
}

// The threads of this process named as the pool names its workers.
int CopyWorkers() {
  int count = 0;
  const std::string dir = "/proc/self/task";
  std::vector<std::string> tasks;
  if (DIR* d = ::opendir(dir.c_str())) {
    while (dirent* e = ::readdir(d)) {
      if (e->d_name[0] != '.') tasks.push_back(e->d_name);
    }
    ::closedir(d);
  }
  for (const auto& t : tasks) {
    std::ifstream comm(dir + "/" + t + "/comm");
    std::string name;
    if (std::getline(comm, name) && name == "wooly-copy") ++count;
  }
  return count;
}

TEST_P(CopyPoolTest, BigCopiesUseWorkersOnlyWhenParallel) {
  const int before = CopyWorkers();
  ASSERT_EQ(CopyAndCheck(8u << 20, 0, 0, 4242), "");
  if (GetParam() == 1) {
    EXPECT_EQ(CopyWorkers(), before);
  } else {
    EXPECT_GE(CopyWorkers(), GetParam() - 1);
  }
}

INSTANTIATE_TEST_SUITE_P(Threads, CopyPoolTest, ::testing::Values(1, 2, 4, 8),
                         [](const auto& info) { return "P" + std::to_string(info.param); });

// Runs `body` in a forked child and returns the child's exit status; the
// child is killed by SIGALRM if it hangs (for example on a lock held by a
// thread of the parent's).
int InChild(bool (*body)()) {
  const pid_t child = ::fork();
  if (child < 0) return -1;
  if (child == 0) {
    ::alarm(60);
    ::_exit(body() ? 0 : 1);
  }
  int status = 0;
  if (::waitpid(child, &status, 0) != child) return -1;
  if (!WIFEXITED(status)) return 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
  return WEXITSTATUS(status);
}

bool ChildCopies() {
  // The parent's workers do not exist here; the child starts its own.
  if (CopyWorkers() != 0) return false;
  for (uint32_t i = 0; i < 4; ++i) {
    if (!CopyAndCheck((6u << 20) + i * 999, i, 3 * i, 77 + i).empty()) return false;
  }
  return CopyWorkers() >= 3;
}

TEST(CopyPoolForkTest, ChildCopiesAfterParentStartedWorkers) {
  SetCopyThreadsForTesting(4);
  ASSERT_EQ(CopyAndCheck(8u << 20, 0, 0, 9), "");
  ASSERT_GE(CopyWorkers(), 3);  // the parent's workers exist
  EXPECT_EQ(InChild(&ChildCopies), 0);
  // The parent's pool still works.
  EXPECT_EQ(CopyAndCheck((8u << 20) + 1, 1, 2, 10), "");
  SetCopyThreadsForTesting(0);
}

TEST(CopyPoolForkTest, ForkDuringParallelCopiesDoesNotDeadlockTheChild) {
  SetCopyThreadsForTesting(4);
  std::atomic<bool> stop{false};
  std::string error;
  // Keeps the pool (and its mutex) busy while the main thread forks.
  std::thread busy([&] {
    for (uint32_t i = 0; !stop.load() && error.empty(); ++i) {
      error = CopyAndCheck((3u << 20) + (i % 5) * 4096, 0, i % 3, 300 + i);
    }
  });
  for (int i = 0; i < 8; ++i) EXPECT_EQ(InChild(&ChildCopies), 0) << "fork " << i;
  stop.store(true);
  busy.join();
  EXPECT_EQ(error, "");
  SetCopyThreadsForTesting(0);
}

TEST(CopyPoolSettingTest, ReadsWoolyCopyThreads) {
  ::setenv("WOOLY_CLIENT_CONFIG", "none", 1);  // only the environment counts
  wire::ResetClientConfigForTesting();
  ::setenv("WOOLY_COPY_THREADS", "3", 1);
  SetCopyThreadsForTesting(0);
  EXPECT_EQ(CopyThreads(), 3);

  ::setenv("WOOLY_COPY_THREADS", "1", 1);
  SetCopyThreadsForTesting(0);
  EXPECT_EQ(CopyThreads(), 1);
  EXPECT_EQ(CopyAndCheck(5u << 20, 1, 1, 42), "");

  ::setenv("WOOLY_COPY_THREADS", "100", 1);
  SetCopyThreadsForTesting(0);
  EXPECT_EQ(CopyThreads(), kMaxCopyThreads);

  // Not a number: the default, which depends on the machine.
  ::setenv("WOOLY_COPY_THREADS", "lots", 1);
  SetCopyThreadsForTesting(0);
  EXPECT_GE(CopyThreads(), 1);
  EXPECT_LE(CopyThreads(), 4);

  ::unsetenv("WOOLY_COPY_THREADS");
  SetCopyThreadsForTesting(0);
  const unsigned hc = std::thread::hardware_concurrency();
  const int expected = 1 + std::clamp(static_cast<int>(hc / 2) - 1, 0, 3);
  EXPECT_EQ(CopyThreads(), expected);
  SetCopyThreadsForTesting(0);
}

}  // namespace
}  // namespace wooly::client
