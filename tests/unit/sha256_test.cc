#include "wooly/proto/sha256.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

namespace wooly::wire {
namespace {

using Impl = Sha256::Impl;

// Every implementation this CPU can run.
std::vector<Impl> Impls() {
  std::vector<Impl> impls = {Impl::kPortable};
  if (Sha256::ShaNiAvailable()) impls.push_back(Impl::kShaNi);
  return impls;
}

const char* Name(Impl impl) { return impl == Impl::kShaNi ? "sha-ni" : "portable"; }

std::string HexOf(Impl impl, const std::string& msg) {
  Sha256 h(impl);
  h.Update(msg.data(), msg.size());
  return ToHex(h.Final());
}

std::vector<uint8_t> RandomBytes(std::mt19937_64& rng, size_t n) {
  std::vector<uint8_t> v(n);
  for (auto& b : v) b = static_cast<uint8_t>(rng());
  return v;
}

// FIPS 180-2, appendix B (plus the empty message and the 896-bit message of
// the later example sets).
TEST(Sha256, FipsVectors) {
  for (Impl impl : Impls()) {
    SCOPED_TRACE(Name(impl));
    EXPECT_EQ(HexOf(impl, ""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    EXPECT_EQ(HexOf(impl, "abc"),
              "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    EXPECT_EQ(HexOf(impl, "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
              "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    EXPECT_EQ(HexOf(impl,
                    "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklm"
                    "nopqklmnopqrlmnopqrsmnopqrstnopqrstu"),
              "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1");
    EXPECT_EQ(HexOf(impl, std::string(1000000, 'a')),
              "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
  }
}

TEST(Sha256, OneShotMatchesFips) {
  EXPECT_EQ(ToHex(Sha256Digest("abc", 3)),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(Sha256, StreamingInOddPiecesEqualsOneShot) {
  std::mt19937_64 rng(42);
  const std::vector<uint8_t> msg = RandomBytes(rng, 100003);
  const Sha256Hash want = Sha256Digest(msg.data(), msg.size());
  for (Impl impl : Impls()) {
    SCOPED_TRACE(Name(impl));
    for (size_t piece : {1, 3, 7, 55, 56, 63, 64, 65, 127, 1000, 4099}) {
      Sha256 h(impl);
      for (size_t off = 0; off < msg.size(); off += piece) {
        h.Update(msg.data() + off, std::min(piece, msg.size() - off));
      }
      EXPECT_EQ(ToHex(h.Final()), ToHex(want)) << "piece " << piece;
    }
    // Random piece sizes, including empty updates.
    Sha256 h(impl);
    for (size_t off = 0; off < msg.size();) {
      const size_t piece = std::min<size_t>(rng() % 300, msg.size() - off);
      h.Update(msg.data() + off, piece);
      off += piece;
    }
    EXPECT_EQ(ToHex(h.Final()), ToHex(want));
  }
}

TEST(Sha256, FinalResetsForTheNextMessage) {
  Sha256 h;
  h.Update("junk", 4);
  (void)h.Final();
  h.Update("abc", 3);
  EXPECT_EQ(ToHex(h.Final()), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(Sha256, ShaNiMatchesPortableOnRandomInputs) {
  if (!Sha256::ShaNiAvailable()) GTEST_SKIP() << "this CPU has no SHA extensions";
  EXPECT_EQ(Sha256(Impl::kShaNi).impl(), Impl::kShaNi);
  EXPECT_EQ(Sha256(Impl::kAuto).impl(), Impl::kShaNi);
  std::mt19937_64 rng(7);
  std::vector<size_t> lengths;
  for (size_t n = 0; n <= 300; ++n) lengths.push_back(n);
  for (size_t n : {511, 512, 513, 4095, 4096, 4097, 65536 + 17, (1 << 20) + 13}) {
    lengths.push_back(n);
  }
  for (size_t n : lengths) {
    const std::vector<uint8_t> msg = RandomBytes(rng, n);
    Sha256 portable(Impl::kPortable), sha_ni(Impl::kShaNi);
    portable.Update(msg.data(), msg.size());
    sha_ni.Update(msg.data(), msg.size());
    ASSERT_EQ(ToHex(portable.Final()), ToHex(sha_ni.Final())) << "length " << n;
  }
}

TEST(Sha256, HexRoundTrip) {
  const Sha256Hash d = Sha256Digest("abc", 3);
  Sha256Hash back{};
  ASSERT_TRUE(FromHex(ToHex(d), &back));
  EXPECT_EQ(back, d);
  ASSERT_TRUE(FromHex("BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD", &back));
  EXPECT_EQ(back, d);
  EXPECT_FALSE(FromHex("", &back));
  EXPECT_FALSE(FromHex(ToHex(d).substr(1), &back));
  EXPECT_FALSE(FromHex(ToHex(d) + "0", &back));
  EXPECT_FALSE(FromHex("g" + ToHex(d).substr(1), &back));
}

// Not a timed assertion: it only prints each path's throughput into the log.
TEST(Sha256, ReportThroughput) {
  std::mt19937_64 rng(1);
  const std::vector<uint8_t> buf = RandomBytes(rng, 64 << 20);
  for (Impl impl : Impls()) {
    Sha256 h(impl);
    const auto start = std::chrono::steady_clock::now();
    h.Update(buf.data(), buf.size());
    (void)h.Final();
    const double s =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    const double mbps = buf.size() / 1e6 / s;
    std::printf("[ sha256   ] %-8s %8.1f MB/s (%zu MiB in %.3f s)\n", Name(impl), mbps,
                buf.size() >> 20, s);
    RecordProperty(std::string(Name(impl)) + "_MBps", std::to_string(static_cast<int>(mbps)));
  }
  if (!Sha256::ShaNiAvailable()) std::printf("[ sha256   ] sha-ni   not available on this CPU\n");
}

}  // namespace
}  // namespace wooly::wire

namespace wooly::wire {
namespace {

TEST(ImageDigestTest, IsTheHashOfLengthAndChunkHashes) {
  const std::string data = "a module image";
  Sha256 top;
  uint8_t n[8] = {static_cast<uint8_t>(data.size())};
  top.Update(n, sizeof(n));
  const Sha256Hash part = Sha256Digest(data.data(), data.size());
  top.Update(part.data(), part.size());
  EXPECT_EQ(ImageDigest(data.data(), data.size()), top.Final());
}

TEST(ImageDigestTest, ThreadsDoNotChangeTheDigest) {
  std::vector<uint8_t> big(3 * kImageDigestChunk + 12345);
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<uint8_t>(i * 131 + (i >> 9));
  const Sha256Hash one = ImageDigest(big.data(), big.size(), 1);
  EXPECT_EQ(ImageDigest(big.data(), big.size(), 4), one);
  EXPECT_EQ(ImageDigest(big.data(), big.size(), 64), one);
  big[2 * kImageDigestChunk] ^= 1;  // one flipped bit in one chunk
  EXPECT_NE(ImageDigest(big.data(), big.size(), 4), one);
  // Lengths differ even when the chunks hash alike (empty vs one empty chunk).
  EXPECT_NE(ImageDigest(big.data(), 0), ImageDigest(big.data(), 1));
}

}  // namespace
}  // namespace wooly::wire

namespace wooly::wire {
namespace {

// ImageDigests shares one thread budget over the pieces of many buffers;
// whatever the sizes and thread counts, each result is that buffer's
// ImageDigest.
TEST(ImageDigestsTest, EqualsImageDigestPerBuffer) {
  std::vector<uint8_t> pool(9 * kImageDigestChunk + 4321);
  for (size_t i = 0; i < pool.size(); ++i) pool[i] = static_cast<uint8_t>(i * 167 + (i >> 11));
  // Odd sizes: empty, one byte, just under/over a piece, several pieces
  // with a ragged end, and equal chunk-like sizes next to each other.
  const size_t sizes[] = {0,
                          1,
                          kImageDigestChunk - 1,
                          kImageDigestChunk,
                          kImageDigestChunk + 1,
                          2 * kImageDigestChunk + 777,
                          2 * kImageDigestChunk,
                          2 * kImageDigestChunk};
  std::vector<DigestInput> inputs;
  size_t off = 0;
  for (size_t n : sizes) {
    ASSERT_LE(off + n, pool.size());
    inputs.push_back({pool.data() + off, n});
    off += n / 3 + 1;  // overlapping, unaligned starts
  }
  std::vector<Sha256Hash> want;
  for (const DigestInput& in : inputs) want.push_back(ImageDigest(in.data, in.len));
  for (unsigned threads : {0u, 1u, 2u, 3u, 7u, 16u, 100u}) {
    EXPECT_EQ(ImageDigests(inputs, threads), want) << threads << " threads";
  }
  // Equal content at different addresses: equal digests.
  const std::vector<uint8_t> copy(pool.begin(), pool.begin() + 2 * kImageDigestChunk);
  const DigestInput same[] = {{pool.data(), copy.size()}, {copy.data(), copy.size()}};
  const std::vector<Sha256Hash> two = ImageDigests(same, 5);
  ASSERT_EQ(two.size(), 2u);
  EXPECT_EQ(two[0], two[1]);
  EXPECT_TRUE(ImageDigests({}, 8).empty());
}

}  // namespace
}  // namespace wooly::wire
