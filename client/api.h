// Shared by the translation units that define the exported cu* entry points.
//
// These TUs are compiled with __CUDA_API_VERSION_INTERNAL (so cuda.h declares
// the exact exported names: cuMemAlloc_v2, cuMemcpyHtoD_v2_ptds, ...) and
// __CUDA_API_PUSH_VISIBILITY_DEFAULT (so the declarations, and with them our
// definitions, have default visibility while everything else is hidden); see
// client/CMakeLists.txt.
#ifndef WOOLY_CLIENT_API_H_
#define WOOLY_CLIENT_API_H_

#include <cuda.h>

#include <atomic>
#include <cstdint>
#include <new>

#define WOOLY_EXPORT extern "C" __attribute__((visibility("default")))

namespace wooly::client {

// Logs an entry point that returned an error (WOOLY_LOG=debug).
void LogApiFailure(const char* function, CUresult result);
// True when failures are logged; a relaxed load, cheap on the hot path.
bool ApiFailuresLogged();

// $WOOLY_CLIENT_STATS=1: every entry point's calls and time are counted
// and printed at exit (PrintApiStats). Read once (ApiStatsRead); after
// that one relaxed load on every entry point.
extern std::atomic<int> g_api_stats;  // -1: not read yet, 0: off, 1: on
bool ApiStatsRead();
inline bool ApiStatsEnabled() {
  const int v = g_api_stats.load(std::memory_order_relaxed);
  return v < 0 ? ApiStatsRead() : v == 1;
}
uint64_t ApiStatsNow();  // monotonic nanoseconds
void RecordApiCall(const char* function, uint64_t ns);
void PrintApiStats();

// Runs an entry point's body so that no exception crosses the C ABI.
template <typename F>
inline CUresult Guard(const char* function, F&& body) noexcept {
  const uint64_t t0 = ApiStatsEnabled() ? ApiStatsNow() : 0;
  CUresult r;
  try {
    r = body();
  } catch (const std::bad_alloc&) {
    r = CUDA_ERROR_OUT_OF_MEMORY;
  } catch (...) {
    r = CUDA_ERROR_UNKNOWN;
  }
  if (r != CUDA_SUCCESS && ApiFailuresLogged()) LogApiFailure(function, r);
  if (t0 != 0) RecordApiCall(function, ApiStatsNow() - t0);
  return r;
}

}  // namespace wooly::client

// Body of an exported function: WOOLY_API_BODY(return Impl(args);)
#define WOOLY_API_BODY(...) \
  return ::wooly::client::Guard(__func__, [&]() -> CUresult { __VA_ARGS__ })

#endif  // WOOLY_CLIENT_API_H_
