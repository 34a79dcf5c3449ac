// A small set of threads, started once, that run one job at a time on
// several threads. libwooly's dedup hashing runs once per 128 MiB copy; a
// pool of 16 threads started per call cost it about 40 % of its hashing
// throughput on the lent H100 host (bench/wooly_bench_blake3 --dedup-mib).
//
// Thread safety: Run may be called from any thread; concurrent jobs run one
// after another. Ownership: the pool owns its threads and joins them when
// destroyed; it must not be destroyed while a Run is in progress.
#ifndef WOOLY_PROTO_WORKER_POOL_H_
#define WOOLY_PROTO_WORKER_POOL_H_

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace wooly::wire {

class WorkerPool {
 public:
  // Up to `max_threads` threads besides the caller's, started as jobs
  // first need them.
  explicit WorkerPool(unsigned max_threads);
  ~WorkerPool();
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  // Calls `job` on up to `width` threads at once, the caller's among them,
  // and returns when every call has returned. Each thread calls it at most
  // once, and a thread that wakes after the others are done does not call
  // it at all, so `job` must share out its work itself (a shared counter)
  // and must not throw. When the system refuses a thread, fewer run.
  void Run(unsigned width, const std::function<void()>& job);

  // Threads started so far (for tests).
  unsigned started() const;

 private:
  void Loop();

  const unsigned max_threads_;
  std::mutex run_mu_;  // one job at a time
  mutable std::mutex mu_;
  std::condition_variable work_cv_;
  std::condition_variable done_cv_;
  std::vector<std::thread> threads_;       // guarded by mu_
  const std::function<void()>* job_ = nullptr;  // guarded by mu_
  unsigned open_slots_ = 0;                 // guarded by mu_
  unsigned active_ = 0;                     // guarded by mu_
  uint64_t generation_ = 0;                 // guarded by mu_
  bool stop_ = false;                       // guarded by mu_
};

// The process's pool of up to 15 workers (16 threads with the caller's).
// Fork-safe: a child process gets a fresh pool on first use, since its
// parent's threads do not exist in it; the parent's pool is left unused.
// Never destroyed (its threads idle until exit).
WorkerPool& ProcessWorkerPool();

}  // namespace wooly::wire

#endif  // WOOLY_PROTO_WORKER_POOL_H_
