// wooly_bench_blake3 (issue 6, weight dedup): single-thread hashing
// throughput of each BLAKE3 path and of SHA-256 (SHA-NI when the CPU has it)
// over one buffer. Prints GB/s (10^9 bytes per second), best of the runs.
//
//   wooly_bench_blake3 [--mib N] [--runs N]   (defaults: 64 MiB, 5 runs)
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "wooly/proto/blake3.h"
#include "wooly/proto/sha256.h"

namespace {

using Clock = std::chrono::steady_clock;

// Best-of-`runs` throughput of `fn` over `bytes` bytes.
double BestGbps(size_t bytes, int runs, const std::function<void()>& fn) {
  double best = 0;
  for (int r = 0; r < runs; ++r) {
    const auto start = Clock::now();
    fn();
    const double s = std::chrono::duration<double>(Clock::now() - start).count();
    best = std::max(best, static_cast<double>(bytes) / s / 1e9);
  }
  return best;
}

}  // namespace

int main(int argc, char** argv) {
  size_t mib = 64;
  int runs = 5;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--mib" && i + 1 < argc) {
      mib = std::strtoul(argv[++i], nullptr, 10);
    } else if (arg == "--runs" && i + 1 < argc) {
      runs = std::max(1, std::atoi(argv[++i]));
    } else {
      std::fprintf(stderr, "usage: %s [--mib N] [--runs N]\n", argv[0]);
      return 2;
    }
  }
  const size_t bytes = mib << 20;
  std::vector<uint8_t> data(bytes);
  uint64_t x = 0x9e3779b97f4a7c15;  // any fixed content; the speed does not depend on it
  for (size_t i = 0; i < bytes; ++i) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    data[i] = static_cast<uint8_t>(x);
  }

  using wooly::wire::Blake3;
  using wooly::wire::Sha256;
  std::printf("single thread, %zu MiB buffer, best of %d runs\n", mib, runs);
  struct Path {
    const char* name;
    Blake3::Impl impl;
    bool available;
  };
  const Path paths[] = {{"blake3 portable", Blake3::Impl::kPortable, true},
                        {"blake3 avx2", Blake3::Impl::kAvx2, Blake3::Avx2Available()},
                        {"blake3 avx512", Blake3::Impl::kAvx512, Blake3::Avx512Available()}};
  std::string first_hex;
  bool mismatch = false;
  for (const Path& p : paths) {
    if (!p.available) {
      std::printf("%-22s not available on this CPU\n", p.name);
      continue;
    }
    wooly::wire::Blake3Hash digest{};
    const double gbps = BestGbps(bytes, runs, [&] {
      Blake3 h(p.impl);
      h.Update(data.data(), data.size());
      digest = h.Final();
    });
    const std::string hex = wooly::wire::ToHex(digest);
    if (first_hex.empty()) first_hex = hex;
    mismatch |= hex != first_hex;
    std::printf("%-22s %6.2f GB/s%s\n", p.name, gbps, hex == first_hex ? "" : "  DIGEST MISMATCH");
  }
  // The same Update split into 64 KiB pieces, as a file reader would feed it.
  {
    const double gbps = BestGbps(bytes, runs, [&] {
      Blake3 h;
      for (size_t off = 0; off < bytes; off += 65536) {
        h.Update(data.data() + off, std::min<size_t>(65536, bytes - off));
      }
      h.Final();
    });
    std::printf("%-22s %6.2f GB/s\n", "blake3 auto 64K pieces", gbps);
  }
  for (Sha256::Impl impl : {Sha256::Impl::kPortable, Sha256::Impl::kShaNi}) {
    if (impl == Sha256::Impl::kShaNi && !Sha256::ShaNiAvailable()) {
      std::printf("%-22s not available on this CPU\n", "sha256 sha-ni");
      continue;
    }
    const double gbps = BestGbps(bytes, runs, [&] {
      Sha256 h(impl);
      h.Update(data.data(), data.size());
      h.Final();
    });
    std::printf("%-22s %6.2f GB/s\n",
                impl == Sha256::Impl::kShaNi ? "sha256 sha-ni" : "sha256 portable", gbps);
  }
  return mismatch ? 1 : 0;
}
