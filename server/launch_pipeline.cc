#include "wooly/server/launch_pipeline.h"

#include <sched.h>

#include <chrono>
#include <utility>

namespace wooly::server {
namespace {

inline void CpuRelax() {
#if defined(__x86_64__)
  __builtin_ia32_pause();
#endif
}

// How long the pipeline's thread looks for more work before it sleeps: a
// client queueing launches sends the next within microseconds.
constexpr auto kSpin = std::chrono::microseconds(100);

}  // namespace

LaunchPipeline::LaunchPipeline(Burst burst, size_t capacity)
    : burst_(std::move(burst)), ring_(capacity) {
  thread_ = std::thread([this] { Loop(); });
}

LaunchPipeline::~LaunchPipeline() { Stop(); }

LaunchPipeline::Job& LaunchPipeline::Slot() {
  const uint64_t head = head_.load(std::memory_order_relaxed);
  for (unsigned i = 1; head - done_.load(std::memory_order_acquire) >= ring_.size(); ++i) {
    if (i % 1024 == 0) {
      sched_yield();
    } else {
      CpuRelax();
    }
  }
  return ring_[head % ring_.size()];
}

void LaunchPipeline::Submit() {
  head_.store(head_.load(std::memory_order_relaxed) + 1, std::memory_order_release);
  // Pairs with the fence in Loop: either the thread sees the new job, or we
  // see that it sleeps and wake it.
  std::atomic_thread_fence(std::memory_order_seq_cst);
  if (sleeping_.load(std::memory_order_relaxed)) {
    wake_.fetch_add(1, std::memory_order_release);
    wake_.notify_one();
  }
}

void LaunchPipeline::Drain() {
  const uint64_t head = head_.load(std::memory_order_relaxed);
  for (unsigned i = 1; done_.load(std::memory_order_acquire) != head; ++i) {
    if (i % 1024 == 0) {
      sched_yield();
    } else {
      CpuRelax();
    }
  }
}

bool LaunchPipeline::Busy() const {
  return done_.load(std::memory_order_acquire) != head_.load(std::memory_order_acquire);
}

void LaunchPipeline::Stop() {
  if (!thread_.joinable()) return;
  stop_.store(true, std::memory_order_release);
  wake_.fetch_add(1, std::memory_order_release);
  wake_.notify_one();
  thread_.join();
}

void LaunchPipeline::Loop() {
  uint64_t taken = 0;  // jobs handed to the burst function so far
  for (;;) {
    // Wait for a job: spin a little, then sleep.
    const auto spin_until = std::chrono::steady_clock::now() + kSpin;
    for (unsigned i = 1; head_.load(std::memory_order_acquire) == taken; ++i) {
      if (stop_.load(std::memory_order_acquire)) return;
      CpuRelax();
      if (i % 64 != 0 || std::chrono::steady_clock::now() < spin_until) continue;
      const uint32_t w = wake_.load(std::memory_order_acquire);
      sleeping_.store(true, std::memory_order_relaxed);
      std::atomic_thread_fence(std::memory_order_seq_cst);
      if (head_.load(std::memory_order_acquire) == taken &&
          !stop_.load(std::memory_order_acquire)) {
        wake_.wait(w, std::memory_order_acquire);
      }
      sleeping_.store(false, std::memory_order_relaxed);
    }
    burst_([this, &taken]() -> Job* {
      // The burst function asks for the next job once the last one ran.
      done_.store(taken, std::memory_order_release);
      if (head_.load(std::memory_order_acquire) == taken) return nullptr;
      return &ring_[taken++ % ring_.size()];
    });
    done_.store(taken, std::memory_order_release);
  }
}

}  // namespace wooly::server
