#include "copy_pool.h"

#include <linux/futex.h>
#include <pthread.h>
#include <signal.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <climits>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <new>
#include <string>
#include <thread>

#include "driver.h"
#include "log.h"
#include "wooly/proto/defaults.h"

namespace wooly::client {
namespace {

constexpr char kEnvCopyThreads[] = "WOOLY_COPY_THREADS";
constexpr uint64_t kSpinNs = 200'000;  // a worker's spin after a job
constexpr uintptr_t kCacheLine = 64;

uint64_t NowNs() {
  timespec ts;
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000ull + static_cast<uint64_t>(ts.tv_nsec);
}

inline void Pause() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

void FutexWait(std::atomic<uint32_t>* word, uint32_t expected) {
  ::syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAIT_PRIVATE, expected, nullptr,
            nullptr, 0);
}

void FutexWake(std::atomic<uint32_t>* word, int count) {
  ::syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAKE_PRIVATE, count, nullptr,
            nullptr, 0);
}

int DefaultThreads() {
  const int half = static_cast<int>(std::thread::hardware_concurrency() / 2) - 1;
  return 1 + std::clamp(half, 0, 3);
}

int ThreadsFromSetting() {
  std::string v;
  try {
    v = wire::Setting(kEnvCopyThreads);
  } catch (...) {
    return DefaultThreads();
  }
  if (v.empty()) return DefaultThreads();
  errno = 0;
  char* end = nullptr;
  const long n = std::strtol(v.c_str(), &end, 10);
  if (errno != 0 || end == v.c_str() || *end != '\0' || n < 1) {
    WLOG_WARN("ignoring %s=%s (want a number >= 1)", kEnvCopyThreads, v.c_str());
    return DefaultThreads();
  }
  return static_cast<int>(std::min<long>(n, kMaxCopyThreads));
}

// 0 until read; then 1..kMaxCopyThreads.
std::atomic<int> g_threads{0};

// One process's workers and the job they share. Jobs are published under
// mu_; workers find them through job_ (a futex word) and claim parts
// through claim_, which names the job so a straggler from an earlier job
// can never claim a part of a later one.
class Pool {
 public:
  Pool() : pid_(::getpid()), generation_(ForkGeneration()) {}

  // False in a forked child: the workers are the parent's.
  bool Mine() const { return pid_ == ::getpid() && generation_ == ForkGeneration(); }

  // Copies with up to `threads` threads; false (nothing copied) when
  // another parallel copy holds the pool.
  bool TryCopy(uint8_t* dst, const uint8_t* src, size_t n, int threads) {
    std::unique_lock<std::mutex> lock(mu_, std::try_to_lock);
    if (!lock.owns_lock()) return false;
    int parts = static_cast<int>(std::min<size_t>(threads, n / kParallelCopyMinPart));
    parts = std::clamp(parts, 1, kMaxCopyThreads);
    EnsureWorkers(parts - 1);
    parts = std::min(parts, workers_ + 1);
    if (parts <= 1) {
      std::memcpy(dst, src, n);
      return true;
    }
    // Split points on destination cache lines, so no two threads write one.
    const uintptr_t base = reinterpret_cast<uintptr_t>(dst);
    size_t prev = 0;
    for (int i = 0; i < parts; ++i) {
      size_t end = n;
      if (i + 1 < parts) {
        end = n / parts * (i + 1);
        end = ((base + end + kCacheLine - 1) & ~(kCacheLine - 1)) - base;
        end = std::min(end, n);
      }
      parts_[i] = Part{dst + prev, src + prev, end - prev};
      prev = end;
    }
    remaining_.store(parts, std::memory_order_relaxed);
    const uint32_t seq = job_.load(std::memory_order_relaxed) + 1;  // only mu_'s holder writes
    // Part 0 is the caller's: claims start at 1.
    claim_.store(static_cast<uint64_t>(seq) << 32 | static_cast<uint64_t>(parts) << 16 | 1u,
                 std::memory_order_release);
    // seq_cst pairs with the workers' sleepers_ increment: either they see
    // the job before sleeping or we see them asleep and wake them.
    job_.store(seq, std::memory_order_seq_cst);
    if (sleepers_.load(std::memory_order_seq_cst) > 0) FutexWake(&job_, parts - 1);

    CopyPart(0);
    RunParts(seq);  // take any part no worker has yet
    for (uint32_t i = 0; remaining_.load(std::memory_order_acquire) != 0; ++i) {
      // A worker that claimed a part may have been preempted: let it run.
      if (i < 4096) {
        Pause();
      } else {
        std::this_thread::yield();
      }
    }
    return true;
  }

 private:
  struct Part {
    uint8_t* dst;
    const uint8_t* src;
    size_t n;
  };

  static void* WorkerMain(void* arg) {
    auto* start = static_cast<WorkerStart*>(arg);
    Pool* pool = start->pool;
    const uint32_t seen = start->seen;
    delete start;
    pool->WorkerLoop(seen);
    return nullptr;
  }

  struct WorkerStart {
    Pool* pool;
    uint32_t seen;  // the job_ value when started: only later jobs are new
  };

  // Starts workers until there are `want`; stops at the first failure.
  // Requires mu_.
  void EnsureWorkers(int want) {
    while (workers_ < want) {
      auto* start = new (std::nothrow) WorkerStart{this, job_.load(std::memory_order_relaxed)};
      if (start == nullptr) return;
      pthread_attr_t attr;
      if (::pthread_attr_init(&attr) != 0) {
        delete start;
        return;
      }
      // Detached: never joined, not even at exit.
      ::pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
      // Signals stay with the application's threads.
      sigset_t all;
      sigset_t old;
      sigfillset(&all);
      ::pthread_sigmask(SIG_SETMASK, &all, &old);
      pthread_t tid;
      const int rc = ::pthread_create(&tid, &attr, &Pool::WorkerMain, start);
      ::pthread_sigmask(SIG_SETMASK, &old, nullptr);
      ::pthread_attr_destroy(&attr);
      if (rc != 0) {
        delete start;
        WLOG_DEBUG("cannot start a copy worker (error %d); using %d", rc, workers_);
        return;
      }
      // Named here rather than by the worker, so it carries its name as
      // soon as the copy that started it returns (tests count them).
      ::pthread_setname_np(tid, "wooly-copy");
      ++workers_;
    }
  }

  void WorkerLoop(uint32_t seen) {
    for (;;) {
      uint32_t cur;
      uint64_t spin_until = NowNs() + kSpinNs;
      uint32_t i = 0;
      while ((cur = job_.load(std::memory_order_acquire)) == seen) {
        if ((++i & 63) != 0 || NowNs() < spin_until) {
          Pause();
          continue;
        }
        sleepers_.fetch_add(1, std::memory_order_seq_cst);
        if (job_.load(std::memory_order_seq_cst) == seen) FutexWait(&job_, seen);
        sleepers_.fetch_sub(1, std::memory_order_relaxed);
        spin_until = 0;  // a spurious wake goes straight back to sleep
      }
      seen = cur;
      RunParts(cur);
    }
  }

  // Claims and copies parts of job `seq` until none is left.
  void RunParts(uint32_t seq) {
    for (;;) {
      uint64_t c = claim_.load(std::memory_order_acquire);
      uint32_t next;
      do {
        const uint32_t count = static_cast<uint32_t>(c >> 16) & 0xffffu;
        next = static_cast<uint32_t>(c) & 0xffffu;
        if (static_cast<uint32_t>(c >> 32) != seq || next >= count) return;
      } while (!claim_.compare_exchange_weak(c, c + 1, std::memory_order_acq_rel,
                                             std::memory_order_acquire));
      CopyPart(static_cast<int>(next));
    }
  }

  void CopyPart(int i) {
    const Part& p = parts_[i];
    std::memcpy(p.dst, p.src, p.n);
    remaining_.fetch_sub(1, std::memory_order_release);
  }

  const pid_t pid_;
  const uint64_t generation_;
  std::mutex mu_;    // held by the thread running a parallel copy
  int workers_ = 0;  // guarded by mu_
  // Written under mu_ while no part of the previous job is unfinished;
  // read by a thread only after claiming that part.
  Part parts_[kMaxCopyThreads] = {};
  alignas(64) std::atomic<uint32_t> job_{0};    // futex word: the latest job's seq
  alignas(64) std::atomic<uint64_t> claim_{0};  // seq << 32 | parts << 16 | next part
  alignas(64) std::atomic<int> remaining_{0};   // parts of the current job not yet copied
  alignas(64) std::atomic<int> sleepers_{0};    // workers in (or entering) FutexWait
};

// Leaked: workers may be using it at exit. In a forked child it is
// replaced and the parent's is leaked without touching its mutex.
std::atomic<Pool*> g_pool{nullptr};

Pool* GetPool() {
  Pool* p = g_pool.load(std::memory_order_acquire);
  if (p != nullptr && p->Mine()) return p;
  Pool* fresh = new (std::nothrow) Pool();
  if (fresh == nullptr) return nullptr;
  if (g_pool.compare_exchange_strong(p, fresh, std::memory_order_acq_rel,
                                     std::memory_order_acquire)) {
    return fresh;  // the old pool, if any, was the parent's: leaked
  }
  delete fresh;  // another thread installed one first; ours never started workers
  return p != nullptr && p->Mine() ? p : nullptr;
}

}  // namespace

int CopyThreads() noexcept {
  int t = g_threads.load(std::memory_order_relaxed);
  if (t == 0) {
    t = ThreadsFromSetting();
    int expected = 0;
    if (!g_threads.compare_exchange_strong(expected, t, std::memory_order_relaxed)) t = expected;
  }
  return t;
}

void SetCopyThreadsForTesting(int threads) noexcept {
  g_threads.store(threads <= 0 ? 0 : std::min(threads, kMaxCopyThreads), std::memory_order_relaxed);
}

void ParallelCopy(void* dst, const void* src, size_t n) noexcept {
  if (n == 0) return;
  auto* d = static_cast<uint8_t*>(dst);
  const auto* s = static_cast<const uint8_t*>(src);
  if (n >= kParallelCopyThreshold) {
    const int threads = CopyThreads();
    if (threads > 1) {
      Pool* pool = GetPool();
      if (pool != nullptr && pool->TryCopy(d, s, n, threads)) return;
    }
  }
  std::memcpy(d, s, n);
}

}  // namespace wooly::client
