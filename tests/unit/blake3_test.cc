#include "wooly/proto/blake3.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "blake3_internal.h"     // the batch functions, tested directly below
#include "wooly/proto/content_digest.h"
#include "wooly/proto/sha256.h"  // ToHex

namespace wooly::wire {
namespace {

using Impl = Blake3::Impl;

// Every implementation this CPU can run.
std::vector<Impl> Impls() {
  std::vector<Impl> impls = {Impl::kPortable};
  if (Blake3::Avx2Available()) impls.push_back(Impl::kAvx2);
  if (Blake3::Avx512Available()) impls.push_back(Impl::kAvx512);
  return impls;
}

const char* Name(Impl impl) {
  switch (impl) {
    case Impl::kAuto:
      return "auto";
    case Impl::kPortable:
      return "portable";
    case Impl::kAvx2:
      return "avx2";
    case Impl::kAvx512:
      return "avx512";
  }
  return "?";
}

// The BLAKE3 project's test input: byte i is i % 251.
std::vector<uint8_t> Pattern(size_t n) {
  std::vector<uint8_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<uint8_t>(i % 251);
  return v;
}

std::vector<uint8_t> RandomBytes(std::mt19937_64& rng, size_t n) {
  std::vector<uint8_t> v(n);
  for (auto& b : v) b = static_cast<uint8_t>(rng());
  return v;
}

Blake3Hash HashWith(Impl impl, const std::vector<uint8_t>& data) {
  Blake3 h(impl);
  h.Update(data.data(), data.size());
  return h.Final();
}

// Feeds `data` in pieces whose sizes cycle through `sizes`.
Blake3Hash HashInPieces(Impl impl, const std::vector<uint8_t>& data,
                        const std::vector<size_t>& sizes) {
  Blake3 h(impl);
  size_t off = 0;
  for (size_t k = 0; off < data.size(); ++k) {
    const size_t n = std::min(sizes[k % sizes.size()], data.size() - off);
    h.Update(data.data() + off, n);
    off += n;
  }
  return h.Final();
}

struct Vector {
  size_t len;
  const char* hex;
};

// Digests printed by `b3sum` (BLAKE3 1.2.0) for Pattern(len): the lengths of
// the BLAKE3 project's test vectors, then larger ones that cross many tree
// levels and this implementation's 256-chunk batches.
constexpr Vector kVectors[] = {
    {0, "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"},
    {1, "2d3adedff11b61f14c886e35afa036736dcd87a74d27b5c1510225d0f592e213"},
    {1023, "10108970eeda3eb932baac1428c7a2163b0e924c9a9e25b35bba72b28f70bd11"},
    {1024, "42214739f095a406f3fc83deb889744ac00df831c10daa55189b5d121c855af7"},
    {1025, "d00278ae47eb27b34faecf67b4fe263f82d5412916c1ffd97c8cb7fb814b8444"},
    {2048, "e776b6028c7cd22a4d0ba182a8bf62205d2ef576467e838ed6f2529b85fba24a"},
    {2049, "5f4d72f40d7a5f82b15ca2b2e44b1de3c2ef86c426c95c1af0b6879522563030"},
    {3072, "b98cb0ff3623be03326b373de6b9095218513e64f1ee2edd2525c7ad1e5cffd2"},
    {3073, "7124b49501012f81cc7f11ca069ec9226cecb8a2c850cfe644e327d22d3e1cd3"},
    {4096, "015094013f57a5277b59d8475c0501042c0b642e531b0a1c8f58d2163229e969"},
    {4097, "9b4052b38f1c5fc8b1f9ff7ac7b27cd242487b3d890d15c96a1c25b8aa0fb995"},
    {5120, "9cadc15fed8b5d854562b26a9536d9707cadeda9b143978f319ab34230535833"},
    {5121, "628bd2cb2004694adaab7bbd778a25df25c47b9d4155a55f8fbd79f2fe154cff"},
    {6144, "3e2e5b74e048f3add6d21faab3f83aa44d3b2278afb83b80b3c35164ebeca205"},
    {6145, "f1323a8631446cc50536a9f705ee5cb619424d46887f3c376c695b70e0f0507f"},
    {7168, "61da957ec2499a95d6b8023e2b0e604ec7f6b50e80a9678b89d2628e99ada77a"},
    {7169, "a003fc7a51754a9b3c7fae0367ab3d782dccf28855a03d435f8cfe74605e7817"},
    {8192, "aae792484c8efe4f19e2ca7d371d8c467ffb10748d8a5a1ae579948f718a2a63"},
    {8193, "bab6c09cb8ce8cf459261398d2e7aef35700bf488116ceb94a36d0f5f1b7bc3b"},
    {16384, "f875d6646de28985646f34ee13be9a576fd515f76b5b0a26bb324735041ddde4"},
    {31744, "62b6960e1a44bcc1eb1a611a8d6235b6b4b78f32e7abc4fb4c6cdcce94895c47"},
    {102400, "bc3e3d41a1146b069abffad3c0d44860cf664390afce4d9661f7902e7943e085"},
    {(1u << 20) + 17, "3d54bb0bda4e08dd512d5a9b0651535ebd69de2aec4216ff1ce9dda252184296"},
};

constexpr size_t k64MiB = size_t{64} << 20;
constexpr const char* k64MiBHex =
    "6837ea41ffe5fe2612df38ae49ca6e52341714f1a117d98ae400e4ac7885701d";

TEST(Blake3, ImplsReportTheirPath) {
  EXPECT_EQ(Blake3(Impl::kPortable).impl(), Impl::kPortable);
  const Impl best = Blake3::Avx512Available() ? Impl::kAvx512
                    : Blake3::Avx2Available() ? Impl::kAvx2
                                              : Impl::kPortable;
  EXPECT_EQ(Blake3().impl(), best);
  EXPECT_EQ(Blake3(Impl::kAvx512).impl(), best);
  EXPECT_EQ(Blake3(Impl::kAvx2).impl(), Blake3::Avx2Available() ? Impl::kAvx2 : Impl::kPortable);
  // AVX-512 implies AVX2 here: the AVX-512 path hands small batches to AVX2.
  if (Blake3::Avx512Available()) {
    EXPECT_TRUE(Blake3::Avx2Available());
  }
}

TEST(Blake3, B3sumVectors) {
  for (Impl impl : Impls()) {
    SCOPED_TRACE(Name(impl));
    for (const Vector& v : kVectors) {
      SCOPED_TRACE(v.len);
      EXPECT_EQ(ToHex(HashWith(impl, Pattern(v.len))), v.hex);
    }
  }
}

TEST(Blake3, OneShotMatchesB3sum) {
  EXPECT_EQ(ToHex(Blake3Digest(nullptr, 0)), kVectors[0].hex);
  const std::vector<uint8_t> data = Pattern(102400);
  EXPECT_EQ(ToHex(Blake3Digest(data.data(), data.size())), kVectors[21].hex);
}

TEST(Blake3, B3sumVectorsInPieces) {
  // Pieces at odd offsets, below and above a block and a chunk.
  const std::vector<size_t> sizes = {1, 63, 64, 65, 1023, 1024, 1025, 3000, 7, 5000};
  for (Impl impl : Impls()) {
    SCOPED_TRACE(Name(impl));
    for (const Vector& v : kVectors) {
      SCOPED_TRACE(v.len);
      EXPECT_EQ(ToHex(HashInPieces(impl, Pattern(v.len), sizes)), v.hex);
    }
  }
}

TEST(Blake3, SixtyFourMiB) {
  const std::vector<uint8_t> data = Pattern(k64MiB);
  for (Impl impl : Impls()) {
    SCOPED_TRACE(Name(impl));
    EXPECT_EQ(ToHex(HashWith(impl, data)), k64MiBHex);
  }
  // Uneven pieces put the batches at every alignment of the chunk counter.
  const std::vector<size_t> sizes = {(1u << 20) + 333, 4095, 1, 300000, 65536, 1024};
  Blake3 h;
  EXPECT_EQ(ToHex(HashInPieces(h.impl(), data, sizes)), k64MiBHex);
}

TEST(Blake3, ImplsAgreeOnManyLengths) {
  std::mt19937_64 rng(7);
  std::vector<size_t> lengths;
  for (size_t n = 0; n <= 2100; ++n) lengths.push_back(n);
  for (size_t chunks : {3, 7, 8, 9, 15, 16, 17, 31, 32, 33, 100, 255, 256, 257, 511, 513, 1000}) {
    for (long delta : {-65, -64, -1, 0, 1, 63, 64, 100}) {
      lengths.push_back(chunks * 1024 + delta);
    }
  }
  const std::vector<uint8_t> data = RandomBytes(rng, 1000 * 1024 + 100);
  for (size_t len : lengths) {
    SCOPED_TRACE(len);
    const std::vector<uint8_t> msg(data.begin(), data.begin() + len);
    const Blake3Hash want = HashWith(Impl::kPortable, msg);
    for (Impl impl : Impls()) {
      SCOPED_TRACE(Name(impl));
      EXPECT_EQ(HashWith(impl, msg), want);
      EXPECT_EQ(HashInPieces(impl, msg, {1025, 3, 2048 + 17, 61}), want);
    }
  }
}

TEST(Blake3, SplitAnywhereGivesTheSameDigest) {
  std::mt19937_64 rng(11);
  const std::vector<uint8_t> msg = RandomBytes(rng, 20 * 1024 + 37);
  const Blake3Hash want = HashWith(Impl::kPortable, msg);
  for (Impl impl : Impls()) {
    SCOPED_TRACE(Name(impl));
    for (size_t split = 0; split <= msg.size(); split += (split < 3000 ? 1 : 97)) {
      Blake3 h(impl);
      h.Update(msg.data(), split);
      h.Update(msg.data() + split, msg.size() - split);
      ASSERT_EQ(h.Final(), want) << "split at " << split;
    }
  }
}

TEST(Blake3, RandomPiecesMatchOneUpdate) {
  std::mt19937_64 rng(13);
  for (int trial = 0; trial < 40; ++trial) {
    const size_t len = rng() % (600 * 1024);
    const std::vector<uint8_t> msg = RandomBytes(rng, len);
    const Blake3Hash want = HashWith(Impl::kPortable, msg);
    for (Impl impl : Impls()) {
      SCOPED_TRACE(Name(impl));
      Blake3 h(impl);
      for (size_t off = 0; off < len;) {
        // Mostly small pieces, sometimes large ones spanning many chunks.
        const size_t cap = rng() % 4 == 0 ? 200 * 1024 : 3000;
        const size_t n = std::min<size_t>(rng() % cap + 1, len - off);
        h.Update(msg.data() + off, n);
        off += n;
      }
      EXPECT_EQ(h.Final(), want) << "length " << len;
    }
  }
}

TEST(Blake3, ByteAtATime) {
  const std::vector<uint8_t> msg = Pattern(8193);
  for (Impl impl : Impls()) {
    SCOPED_TRACE(Name(impl));
    Blake3 h(impl);
    for (uint8_t b : msg) h.Update(&b, 1);
    EXPECT_EQ(ToHex(h.Final()), kVectors[18].hex);
  }
}

TEST(Blake3, FinalResets) {
  for (Impl impl : Impls()) {
    SCOPED_TRACE(Name(impl));
    Blake3 h(impl);
    const std::vector<uint8_t> big = Pattern(102400);
    h.Update(big.data(), big.size());
    EXPECT_EQ(ToHex(h.Final()), kVectors[21].hex);
    EXPECT_EQ(ToHex(h.Final()), kVectors[0].hex);  // empty message
    const std::vector<uint8_t> one = Pattern(1025);
    h.Update(one.data(), one.size());
    h.Update(nullptr, 0);
    EXPECT_EQ(ToHex(h.Final()), kVectors[4].hex);
  }
}

// The SIMD batch functions against the portable one, where whole messages
// cannot reach: chunk counters whose low word wraps inside a SIMD group
// (messages over 4 TiB), and partial groups of every size.
TEST(Blake3, BatchFunctionsAgree) {
  namespace b3 = blake3_internal;
  std::vector<b3::HashManyFn> fns;
#ifdef WOOLY_BLAKE3_X86
  if (Blake3::Avx2Available()) fns.push_back(&b3::HashManyAvx2);
  if (Blake3::Avx512Available()) fns.push_back(&b3::HashManyAvx512);
#endif
  if (fns.empty()) GTEST_SKIP() << "no SIMD path on this CPU";
  std::mt19937_64 rng(17);
  const std::vector<uint8_t> data = RandomBytes(rng, 40 * 1024);
  struct Case {
    size_t blocks;
    uint64_t counter;
    bool increment;
    uint32_t flags, start, end;
  };
  const Case cases[] = {
      {16, 0xfffffff7u, true, 0, b3::kChunkStart, b3::kChunkEnd},  // chunks across 2^32
      {16, (uint64_t{5} << 32) + 3, true, 0, b3::kChunkStart, b3::kChunkEnd},
      {1, 0, false, b3::kParent, 0, 0},  // parents
      {3, 42, false, b3::kRoot, 1, 2},
  };
  for (const Case& c : cases) {
    for (size_t n = 1; n <= 40; ++n) {
      SCOPED_TRACE(n);
      std::vector<const uint8_t*> inputs(n);
      // Inputs 1 KiB apart, some overlapping, in a shuffled order.
      for (size_t i = 0; i < n; ++i) inputs[i] = data.data() + ((i * 7) % 37) * 1024;
      std::vector<uint8_t> want(32 * n), got(32 * n);
      b3::HashManyPortable(inputs.data(), n, c.blocks, c.counter, c.increment, c.flags, c.start,
                           c.end, want.data());
      for (b3::HashManyFn fn : fns) {
        std::fill(got.begin(), got.end(), 0);
        fn(inputs.data(), n, c.blocks, c.counter, c.increment, c.flags, c.start, c.end, got.data());
        EXPECT_EQ(got, want);
      }
    }
  }
}

// The dedup chunk digest: BLAKE3 of the length and of each piece's
// BLAKE3, the same on any number of threads, and per input when several
// inputs share one thread budget.
TEST(ContentDigestTest, IsTheBlake3TreeOverPieces) {
  std::vector<uint8_t> a(kContentDigestPiece * 2 + 12345), b(kContentDigestPiece);
  for (size_t i = 0; i < a.size(); ++i) a[i] = static_cast<uint8_t>(i * 31 + (i >> 13));
  for (size_t i = 0; i < b.size(); ++i) b[i] = static_cast<uint8_t>(i * 7);
  auto expected = [](const std::vector<uint8_t>& v) {
    Blake3 top;
    uint8_t n[8];
    for (int k = 0; k < 8; ++k) n[k] = static_cast<uint8_t>(uint64_t{v.size()} >> (8 * k));
    top.Update(n, sizeof(n));
    for (size_t off = 0; off < v.size(); off += kContentDigestPiece) {
      const Blake3Hash h =
          Blake3Digest(v.data() + off, std::min(kContentDigestPiece, v.size() - off));
      top.Update(h.data(), h.size());
    }
    return top.Final();
  };
  const DigestInput in[] = {{a.data(), a.size()}, {b.data(), b.size()}, {nullptr, 0}};
  for (unsigned threads : {1u, 3u, 16u}) {
    const std::vector<ContentDigest> d = ContentDigests(in, threads);
    ASSERT_EQ(d.size(), 3u);
    EXPECT_EQ(d[0], expected(a)) << threads;
    EXPECT_EQ(d[1], expected(b)) << threads;
    EXPECT_EQ(d[2], expected({})) << threads;
  }
  // Not the module cache's SHA-256 tree.
  EXPECT_NE(ContentDigests(in, 1)[1], ImageDigest(b.data(), b.size()));
}

}  // namespace
}  // namespace wooly::wire
