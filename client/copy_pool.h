// Multi-threaded host memcpy for the staging path (staging.cc).
//
// A single thread copies pageable memory at about 10 GB/s, well below the
// DMA into and out of the staging slots, so large copies are split across
// a small pool of persistent worker threads plus the calling thread.
//
// Copies below kParallelCopyThreshold, and all copies when the parallelism
// is 1, are a plain memcpy on the calling thread. The parallelism (workers
// + the caller) is min(3, hardware_concurrency / 2 - 1) + 1 by default;
// WOOLY_COPY_THREADS=N sets it (1..8), read once per process.
//
// Workers start on the first parallel copy, spin for about 200 us after a
// job so the next chunk of a big copy finds them awake, then sleep on a
// futex. They are detached and never joined: the pool is leaked at exit
// (libcuda is never unloaded). In a forked child, where the workers do not
// exist, a new pool is made on first use and the parent's is leaked
// untouched (its mutex may have been held at the fork).
//
// Thread safety: ParallelCopy may be called from any thread. One parallel
// copy runs at a time; a call that finds the pool busy copies on its own
// thread instead of waiting.
#ifndef WOOLY_CLIENT_COPY_POOL_H_
#define WOOLY_CLIENT_COPY_POOL_H_

#include <cstddef>

namespace wooly::client {

// Copies below this many bytes never use the workers.
inline constexpr size_t kParallelCopyThreshold = 1u << 20;
// The least bytes one thread is handed.
inline constexpr size_t kParallelCopyMinPart = 512u << 10;
// The most threads (workers + the caller) one copy uses.
inline constexpr int kMaxCopyThreads = 8;

// Copies `n` bytes from `src` to `dst` (which must not overlap), returning
// once all are copied. Never throws.
void ParallelCopy(void* dst, const void* src, size_t n) noexcept;

// The parallelism in effect (1 = plain memcpy).
int CopyThreads() noexcept;

// Tests: sets the parallelism as WOOLY_COPY_THREADS would (clamped to
// 1..kMaxCopyThreads); <= 0 goes back to the default or the environment.
void SetCopyThreadsForTesting(int threads) noexcept;

}  // namespace wooly::client

#endif  // WOOLY_CLIENT_COPY_POOL_H_
