// Per-entry-point call counts and times for $WOOLY_CLIENT_STATS=1 (api.h):
// where a workload spends its time in libwooly, local answers included.
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "api.h"
#include "compile_cache.h"
#include "wooly/proto/defaults.h"

namespace wooly::client {
namespace {

struct Stat {
  uint64_t calls = 0;
  uint64_t ns = 0;
};

std::mutex g_mu;
// Keyed by __func__, which is one object per entry point. Leaked on purpose:
// entry points may run during static destruction.
auto* g_stats = new std::unordered_map<const char*, Stat>();  // guarded by g_mu

}  // namespace

std::atomic<int> g_api_stats{-1};

bool ApiStatsRead() {
  const int v = wire::Setting("WOOLY_CLIENT_STATS") == "1" ? 1 : 0;
  g_api_stats.store(v, std::memory_order_relaxed);
  return v == 1;
}

uint64_t ApiStatsNow() {
  timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return static_cast<uint64_t>(t.tv_sec) * 1000000000u + static_cast<uint64_t>(t.tv_nsec) + 1;
}

void RecordApiCall(const char* function, uint64_t ns) {
  std::lock_guard<std::mutex> l(g_mu);
  Stat& s = (*g_stats)[function];
  s.calls++;
  s.ns += ns;
}

void PrintApiStats() {
  if (!ApiStatsEnabled()) return;
  PrintCompileCacheStats();
  std::vector<std::pair<const char*, Stat>> rows;
  {
    std::lock_guard<std::mutex> l(g_mu);
    rows.assign(g_stats->begin(), g_stats->end());
  }
  std::sort(rows.begin(), rows.end(),
            [](const auto& a, const auto& b) { return a.second.ns > b.second.ns; });
  for (const auto& [name, s] : rows) {
    std::fprintf(stderr, "wooly api stats: pid %d %s calls %llu time %.3f ms\n",
                 static_cast<int>(::getpid()), name, static_cast<unsigned long long>(s.calls),
                 s.ns / 1e6);
  }
}

}  // namespace wooly::client
