// wooly_bench_blake3 (issue 6, weight dedup): single-thread hashing
// throughput of each BLAKE3 path and of SHA-256 (SHA-NI when the CPU has it)
// over one buffer. Prints GB/s (10^9 bytes per second), best of the runs.
// With --dedup-mib N it also times the dedup chunk digest
// (wire::ContentDigests) over N MiB on 1, 2, 4, ... threads, both as one
// call and as libwooly's attach does it: one call per 128 MiB copy (two
// 64 MiB chunks), each starting and joining its own threads. The "read"
// column is a plain multi-threaded read of the same bytes: the memory
// bandwidth that bounds any hash of them.
//
//   wooly_bench_blake3 [--mib N] [--runs N] [--dedup-mib N]
//   (defaults: 64 MiB, 5 runs, no dedup rows)
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "tree_digest.h"  // piece sizes other than the wire's
#include "wooly/proto/blake3.h"
#include "wooly/proto/content_digest.h"
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

// Sums the buffer's 64-bit words on `threads` threads (contiguous slices).
uint64_t ReadAll(const uint8_t* data, size_t bytes, unsigned threads) {
  const size_t words = bytes / 8;
  std::vector<uint64_t> sums(threads, 0);
  auto slice = [&](unsigned t) {
    const size_t lo = words * t / threads, hi = words * (t + 1) / threads;
    uint64_t a = 0, b = 0, c = 0, d = 0;
    size_t i = lo;
    for (; i + 4 <= hi; i += 4) {
      uint64_t w[4];
      std::memcpy(w, data + i * 8, sizeof(w));
      a += w[0];
      b += w[1];
      c += w[2];
      d += w[3];
    }
    for (; i < hi; ++i) {
      uint64_t w;
      std::memcpy(&w, data + i * 8, 8);
      a += w;
    }
    sums[t] = a + b + c + d;
  };
  std::vector<std::thread> pool;
  for (unsigned t = 1; t < threads; ++t) pool.emplace_back(slice, t);
  slice(0);
  for (std::thread& th : pool) th.join();
  uint64_t total = 0;
  for (uint64_t v : sums) total += v;
  return total;
}

// The dedup digest over `mib` MiB (rounded down to 128 MiB copies).
void DedupRows(size_t mib, int runs) {
  constexpr size_t kCopy = size_t{128} << 20, kChunk = size_t{64} << 20;
  const size_t copies = std::max<size_t>(1, (mib << 20) / kCopy);
  const size_t bytes = copies * kCopy;
  std::vector<uint8_t> data(bytes);
  for (size_t i = 0; i < bytes; i += 4096) data[i] = static_cast<uint8_t>(i >> 12);  // touched
  const unsigned hw = std::max(1u, std::thread::hardware_concurrency());
  std::printf("\ndedup digest (wire::ContentDigests), %zu MiB in %zu copies of 128 MiB\n",
              bytes >> 20, copies);
  std::printf("%-8s %14s %14s %14s\n", "threads", "one call GB/s", "per copy GB/s", "read GB/s");
  volatile uint64_t sink = 0;
  std::vector<unsigned> counts;
  for (unsigned t = 1; t <= std::min(hw, 64u); t *= 2) counts.push_back(t);
  if (counts.back() != std::min(hw, 64u)) counts.push_back(std::min(hw, 64u));
  for (unsigned t : counts) {
    std::vector<wooly::wire::DigestInput> all;
    for (size_t off = 0; off < bytes; off += kChunk) all.push_back({data.data() + off, kChunk});
    const double one = BestGbps(bytes, runs, [&] { wooly::wire::ContentDigests(all, t); });
    const double per_copy = BestGbps(bytes, runs, [&] {
      for (size_t c = 0; c < copies; ++c) {
        const wooly::wire::DigestInput in[] = {{data.data() + c * kCopy, kChunk},
                                               {data.data() + c * kCopy + kChunk, kChunk}};
        wooly::wire::ContentDigests(in, t);
      }
    });
    const double read =
        BestGbps(bytes, runs, [&] { sink = sink + ReadAll(data.data(), bytes, t); });
    std::printf("%-8u %14.2f %14.2f %14.2f\n", t, one, per_copy, read);
  }
  // The tree over other piece sizes, per copy on every thread: how much of
  // the per-copy loss is the pieces' granularity.
  std::printf("\nper copy GB/s on %u threads by piece size (the wire uses %zu KiB)\n",
              counts.back(), wooly::wire::kContentDigestPiece >> 10);
  for (size_t piece : {size_t{4} << 20, size_t{1} << 20, size_t{256} << 10}) {
    const double gbps = BestGbps(bytes, runs, [&] {
      for (size_t c = 0; c < copies; ++c) {
        const wooly::wire::DigestInput in[] = {{data.data() + c * kCopy, kChunk},
                                               {data.data() + c * kCopy + kChunk, kChunk}};
        wooly::wire::internal::TreeDigests<wooly::wire::Blake3Hash, wooly::wire::Blake3>(
            in, counts.back(), piece, wooly::wire::Blake3Digest);
      }
    });
    std::printf("%6zu KiB %14.2f\n", piece >> 10, gbps);
  }
}

}  // namespace

int main(int argc, char** argv) {
  size_t mib = 64;
  size_t dedup_mib = 0;
  int runs = 5;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--mib" && i + 1 < argc) {
      mib = std::strtoul(argv[++i], nullptr, 10);
    } else if (arg == "--runs" && i + 1 < argc) {
      runs = std::max(1, std::atoi(argv[++i]));
    } else if (arg == "--dedup-mib" && i + 1 < argc) {
      dedup_mib = std::strtoul(argv[++i], nullptr, 10);
    } else {
      std::fprintf(stderr, "usage: %s [--mib N] [--runs N] [--dedup-mib N]\n", argv[0]);
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
  if (dedup_mib > 0) DedupRows(dedup_mib, runs);
  return mismatch ? 1 : 0;
}
