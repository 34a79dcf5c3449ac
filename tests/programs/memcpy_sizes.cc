// memcpy_sizes: HtoD -> DtoD -> DtoH round trips of sizes from 1 byte up to
// argv[2] bytes (default 64 MiB), at unaligned host and device offsets, with
// the synchronous and the stream-ordered copies. Every byte is compared, and
// the bytes just outside each destination range must stay untouched.
#include <cuda.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <set>
#include <vector>

#include "common.h"

using namespace wooly_test;

namespace {

constexpr uint8_t kHostGuard = 0xEE;
constexpr uint8_t kDeviceGuard = 0xA5;
constexpr size_t kSlack = 16;  // room for offsets and guard bytes

std::vector<uint64_t> Sizes(uint64_t max) {
  std::set<uint64_t> s;
  for (uint64_t v :
       {1,  2,   3,   4,   5,   7,    8,    9,    15,   16,   17,   31,   32,    33,    63,   64,
        65, 127, 255, 256, 257, 1000, 1023, 1024, 1025, 4095, 4096, 4097, 65535, 65536, 65537}) {
    s.insert(v);
  }
  for (uint64_t p = 1 << 20; p <= max; p <<= 1) {
    s.insert(p - 1);
    s.insert(p);
    s.insert(p + 3);
  }
  s.insert(max);
  s.insert(max > 1 ? max - 1 : 1);
  std::vector<uint64_t> out;
  for (uint64_t v : s) {
    if (v >= 1 && v <= max) out.push_back(v);
  }
  return out;
}

// Pseudo-random bytes that differ for every (size, offset, mode) case.
void Fill(uint8_t* p, uint64_t n, uint64_t seed) {
  uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
  uint64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    std::memcpy(p + i, &x, 8);
  }
  for (; i < n; ++i) p[i] = static_cast<uint8_t>(x >> (8 * (i % 8))) ^ static_cast<uint8_t>(i);
}

uint8_t ReadDeviceByte(CUdeviceptr p) {
  uint8_t v = 0;
  CHECK_CU(cuMemcpyDtoH(&v, p, 1));
  return v;
}

struct Case {
  uint64_t size;
  uint64_t host_off;
  uint64_t dev_off;
  bool async;
};

void RunCase(const Case& c, uint64_t seed, std::vector<uint8_t>& src, std::vector<uint8_t>& dst,
             CUdeviceptr d1, CUdeviceptr d2, CUstream stream) {
  const uint64_t n = c.size;
  const uint64_t d2_off = (c.dev_off + 5) % 8 + 1;  // differs from dev_off, never 0
  Fill(src.data() + c.host_off, n, seed);
  // Guards around the device destination of the DtoD copy.
  CHECK_CU(cuMemsetD8(d2 + d2_off - 1, kDeviceGuard, 1));
  CHECK_CU(cuMemsetD8(d2 + d2_off + n, kDeviceGuard, 1));
  std::fill(dst.begin() + c.host_off, dst.begin() + c.host_off + n + 2, kHostGuard);
  uint8_t* out = dst.data() + c.host_off + 1;

  if (c.async) {
    CHECK_CU(cuMemcpyHtoDAsync(d1 + c.dev_off, src.data() + c.host_off, n, stream));
    CHECK_CU(cuMemcpyDtoDAsync(d2 + d2_off, d1 + c.dev_off, n, stream));
    CHECK_CU(cuMemcpyDtoHAsync(out, d2 + d2_off, n, stream));
    CHECK_CU(cuStreamSynchronize(stream));
  } else {
    CHECK_CU(cuMemcpyHtoD(d1 + c.dev_off, src.data() + c.host_off, n));
    CHECK_CU(cuMemcpyDtoD(d2 + d2_off, d1 + c.dev_off, n));
    CHECK_CU(cuMemcpyDtoH(out, d2 + d2_off, n));
  }

  const std::string where = "size " + std::to_string(n) + " host+" + std::to_string(c.host_off) +
                            " dev+" + std::to_string(c.dev_off) + (c.async ? " async" : " sync");
  if (std::memcmp(out, src.data() + c.host_off, n) != 0) {
    uint64_t i = 0;
    while (out[i] == src[c.host_off + i]) ++i;
    Fail(where + ": first differing byte at " + std::to_string(i));
  }
  CHECK_TRUE(out[-1] == kHostGuard && out[n] == kHostGuard, where + ": host guard overwritten");
  CHECK_TRUE(ReadDeviceByte(d2 + d2_off - 1) == kDeviceGuard &&
                 ReadDeviceByte(d2 + d2_off + n) == kDeviceGuard,
             where + ": device guard overwritten");
}

}  // namespace

int main(int argc, char** argv) {
  Init(argc, argv, "memcpy_sizes");
  uint64_t max = 64ull << 20;
  if (argc > 2) max = std::strtoull(argv[2], nullptr, 0);
  CHECK_TRUE(max >= 1, "max size must be at least 1");

  std::vector<uint8_t> src(max + kSlack), dst(max + kSlack);
  DeviceBuffer d1(max + kSlack), d2(max + kSlack);
  CUstream stream;
  CHECK_CU(cuStreamCreate(&stream, CU_STREAM_NON_BLOCKING));

  uint64_t seed = 1;
  for (uint64_t n : Sizes(max)) {
    // Fewer offset combinations for the big sizes keep the run short.
    std::vector<std::pair<uint64_t, uint64_t>> offsets = {{0, 0}, {3, 1}, {1, 7}};
    if (n > (16u << 20)) offsets.resize(2);
    for (auto [host_off, dev_off] : offsets) {
      for (bool async : {false, true}) {
        RunCase(Case{n, host_off, dev_off, async}, seed++, src, dst, d1.get(), d2.get(), stream);
      }
    }
    std::printf("memcpy %llu bytes: %zu offsets x sync/async ok\n",
                static_cast<unsigned long long>(n), offsets.size());
  }
  CHECK_CU(cuStreamDestroy(stream));
  Pass();
  return 0;
}
