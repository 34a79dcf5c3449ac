#include "wooly/proto/worker_pool.h"

#include <pthread.h>

#include <algorithm>
#include <atomic>
#include <system_error>

namespace wooly::wire {

WorkerPool::WorkerPool(unsigned max_threads) : max_threads_(max_threads) {}

WorkerPool::~WorkerPool() {
  std::vector<std::thread> threads;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
    threads.swap(threads_);
  }
  work_cv_.notify_all();
  for (std::thread& t : threads) t.join();
}

unsigned WorkerPool::started() const {
  std::lock_guard<std::mutex> lock(mu_);
  return static_cast<unsigned>(threads_.size());
}

void WorkerPool::Loop() {
  std::unique_lock<std::mutex> lock(mu_);
  uint64_t seen = generation_;
  for (;;) {
    work_cv_.wait(lock, [&] { return stop_ || (generation_ != seen && open_slots_ > 0); });
    if (stop_) return;
    seen = generation_;
    --open_slots_;
    ++active_;
    const std::function<void()>* job = job_;
    lock.unlock();
    (*job)();
    lock.lock();
    if (--active_ == 0) done_cv_.notify_all();
  }
}

void WorkerPool::Run(unsigned width, const std::function<void()>& job) {
  const unsigned helpers = std::min(width > 0 ? width - 1 : 0, max_threads_);
  if (helpers == 0) {
    job();
    return;
  }
  std::lock_guard<std::mutex> run_lock(run_mu_);
  {
    std::lock_guard<std::mutex> lock(mu_);
    while (threads_.size() < helpers) {
      try {
        threads_.emplace_back([this] { Loop(); });
      } catch (const std::system_error&) {
        break;  // the threads we have do the work
      }
    }
    job_ = &job;
    open_slots_ = std::min<unsigned>(helpers, static_cast<unsigned>(threads_.size()));
    ++generation_;
  }
  work_cv_.notify_all();
  job();
  std::unique_lock<std::mutex> lock(mu_);
  open_slots_ = 0;  // a worker that has not woken yet stays out
  done_cv_.wait(lock, [&] { return active_ == 0; });
  job_ = nullptr;
}

namespace {

std::atomic<WorkerPool*> g_pool{nullptr};

// In a forked child the parent's workers do not exist and its pool's locks
// may be held by threads that are gone: forget it (leaked) for a new one.
void ForgetPoolInChild() { g_pool.store(nullptr, std::memory_order_relaxed); }

}  // namespace

WorkerPool& ProcessWorkerPool() {
  static const bool registered = [] {
    pthread_atfork(nullptr, nullptr, ForgetPoolInChild);
    return true;
  }();
  (void)registered;
  WorkerPool* pool = g_pool.load(std::memory_order_acquire);
  if (pool != nullptr) return *pool;
  auto* fresh = new WorkerPool(15);
  if (g_pool.compare_exchange_strong(pool, fresh, std::memory_order_acq_rel)) return *fresh;
  delete fresh;  // another thread's pool won; this one never started a thread
  return *pool;
}

}  // namespace wooly::wire
