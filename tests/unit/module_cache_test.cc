#include "wooly/server/module_cache.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "wooly/proto/sha256.h"

namespace wooly::server {
namespace {

namespace fs = std::filesystem;
using Digest = ModuleCache::Digest;

struct Blob {
  std::vector<uint8_t> bytes;
  Digest digest;
};

Blob MakeBlob(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  Blob b;
  b.bytes.resize(n);
  for (auto& v : b.bytes) v = static_cast<uint8_t>(rng());
  b.digest = wire::ImageDigest(b.bytes.data(), b.bytes.size());
  return b;
}

class ModuleCacheTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = ::testing::TempDir();
    if (tmpl.empty() || tmpl.back() != '/') tmpl += '/';
    tmpl += "module_cache_test.XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    root_ = tmpl;
    dir_ = root_ + "/cache";  // created by ModuleCache
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(root_, ec);
  }

  std::string FileOf(const Digest& d) const { return dir_ + "/" + wire::ToHex(d); }

  std::string root_;
  std::string dir_;
};

std::vector<uint8_t> ReadAll(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

TEST_F(ModuleCacheTest, PutGetRoundTrip) {
  ModuleCache cache(dir_, 1 << 20);
  const Blob a = MakeBlob(5000, 1);
  EXPECT_FALSE(cache.Contains(a.digest));
  EXPECT_TRUE(absl::IsNotFound(cache.Get(a.digest).status()));

  ASSERT_TRUE(cache.Put(a.digest, a.bytes).ok());
  EXPECT_TRUE(cache.Contains(a.digest));
  auto got = cache.Get(a.digest);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(**got, a.bytes);

  // Created with mode 0700, the entry is a file named by the digest.
  EXPECT_EQ(fs::status(dir_).permissions() & fs::perms::all, fs::perms::owner_all);
  EXPECT_EQ(ReadAll(FileOf(a.digest)), a.bytes);

  // Putting it again is only a use.
  ASSERT_TRUE(cache.Put(a.digest, a.bytes).ok());
  const ModuleCache::Stats s = cache.GetStats();
  EXPECT_EQ(s.entries, 1u);
  EXPECT_EQ(s.bytes, 5000u);
  EXPECT_EQ(s.disk_bytes, 5000u);
  EXPECT_EQ(s.hits, 1u);
  EXPECT_EQ(s.misses, 1u);
  EXPECT_EQ(s.evictions, 0u);
  EXPECT_TRUE(s.persistent);
}

TEST_F(ModuleCacheTest, EmptyImage) {
  ModuleCache cache(dir_, 1 << 20);
  const Blob e = MakeBlob(0, 0);
  ASSERT_TRUE(cache.Put(e.digest, e.bytes).ok());
  auto got = cache.Get(e.digest);
  ASSERT_TRUE(got.ok());
  EXPECT_TRUE((*got)->empty());
}

TEST_F(ModuleCacheTest, HashMismatchIsRejected) {
  ModuleCache cache(dir_, 1 << 20);
  const Blob a = MakeBlob(100, 1);
  const Blob b = MakeBlob(100, 2);
  // b's bytes under a's name: a client trying to plant content.
  const absl::Status st = cache.Put(a.digest, b.bytes);
  EXPECT_TRUE(absl::IsInvalidArgument(st)) << st;
  EXPECT_FALSE(cache.Contains(a.digest));
  EXPECT_FALSE(fs::exists(FileOf(a.digest)));
  EXPECT_EQ(cache.GetStats().entries, 0u);
}

TEST_F(ModuleCacheTest, EntriesSurviveARestart) {
  const Blob a = MakeBlob(3000, 1);
  const Blob b = MakeBlob(7000, 2);
  {
    ModuleCache cache(dir_, 1 << 20);
    ASSERT_TRUE(cache.Put(a.digest, a.bytes).ok());
    ASSERT_TRUE(cache.Put(b.digest, b.bytes).ok());
  }
  ModuleCache cache(dir_, 1 << 20);
  EXPECT_TRUE(cache.Contains(a.digest));
  EXPECT_TRUE(cache.Contains(b.digest));
  ModuleCache::Stats s = cache.GetStats();
  EXPECT_EQ(s.entries, 2u);
  EXPECT_EQ(s.disk_bytes, 10000u);
  EXPECT_EQ(s.memory_bytes, 0u);  // read lazily
  auto got = cache.Get(b.digest);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(**got, b.bytes);
  EXPECT_EQ(cache.GetStats().memory_bytes, 7000u);
}

TEST_F(ModuleCacheTest, EvictsLeastRecentlyUsedBySize) {
  const Blob a = MakeBlob(1000, 1), b = MakeBlob(1000, 2), c = MakeBlob(1000, 3);
  const Blob d = MakeBlob(1000, 4), e = MakeBlob(1000, 5);
  {
    ModuleCache cache(dir_, 3000);
    ASSERT_TRUE(cache.Put(a.digest, a.bytes).ok());
    ASSERT_TRUE(cache.Put(b.digest, b.bytes).ok());
    ASSERT_TRUE(cache.Put(c.digest, c.bytes).ok());
    ASSERT_TRUE(cache.Get(a.digest).ok());  // a is now more recent than b and c
    ASSERT_TRUE(cache.Put(d.digest, d.bytes).ok());

    EXPECT_FALSE(cache.Contains(b.digest));
    EXPECT_FALSE(fs::exists(FileOf(b.digest)));
    EXPECT_TRUE(cache.Contains(a.digest));
    EXPECT_TRUE(cache.Contains(c.digest));
    EXPECT_TRUE(cache.Contains(d.digest));
    const ModuleCache::Stats s = cache.GetStats();
    EXPECT_EQ(s.evictions, 1u);
    EXPECT_EQ(s.disk_bytes, 3000u);
    EXPECT_TRUE(absl::IsNotFound(cache.Get(b.digest).status()));
  }
  // The order survives a restart: c is now the least recently used.
  ModuleCache cache(dir_, 3000);
  ASSERT_TRUE(cache.Put(e.digest, e.bytes).ok());
  EXPECT_FALSE(cache.Contains(c.digest));
  EXPECT_TRUE(cache.Contains(a.digest));
  EXPECT_TRUE(cache.Contains(d.digest));
  EXPECT_TRUE(cache.Contains(e.digest));
}

TEST_F(ModuleCacheTest, StartupEvictsDownToASmallerBound) {
  const Blob a = MakeBlob(1000, 1), b = MakeBlob(1000, 2), c = MakeBlob(1000, 3);
  {
    ModuleCache cache(dir_, 3000);
    ASSERT_TRUE(cache.Put(a.digest, a.bytes).ok());
    ASSERT_TRUE(cache.Put(b.digest, b.bytes).ok());
    ASSERT_TRUE(cache.Put(c.digest, c.bytes).ok());
    ASSERT_TRUE(cache.Get(a.digest).ok());
  }
  ModuleCache cache(dir_, 2000);
  EXPECT_FALSE(cache.Contains(b.digest));
  EXPECT_FALSE(fs::exists(FileOf(b.digest)));
  EXPECT_TRUE(cache.Contains(a.digest));
  EXPECT_TRUE(cache.Contains(c.digest));
}

TEST_F(ModuleCacheTest, MemoryTierIsBoundedAndFallsBackToDisk) {
  const Blob a = MakeBlob(1000, 1), b = MakeBlob(1000, 2), c = MakeBlob(1000, 3);
  ModuleCache cache(dir_, 1 << 20, /*max_memory_bytes=*/2000);
  ASSERT_TRUE(cache.Put(a.digest, a.bytes).ok());
  ASSERT_TRUE(cache.Put(b.digest, b.bytes).ok());
  ASSERT_TRUE(cache.Put(c.digest, c.bytes).ok());
  ModuleCache::Stats s = cache.GetStats();
  EXPECT_EQ(s.memory_bytes, 2000u);
  EXPECT_EQ(s.disk_bytes, 3000u);
  EXPECT_EQ(s.evictions, 0u);      // a's memory copy went, a did not
  auto got = cache.Get(a.digest);  // from disk
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(**got, a.bytes);
  EXPECT_EQ(cache.GetStats().memory_bytes, 2000u);
}

TEST_F(ModuleCacheTest, MemoryOnlyCache) {
  const Blob a = MakeBlob(1000, 1), b = MakeBlob(1000, 2), c = MakeBlob(1000, 3);
  ModuleCache cache("", 2000);
  ASSERT_TRUE(cache.Put(a.digest, a.bytes).ok());
  ASSERT_TRUE(cache.Put(b.digest, b.bytes).ok());
  ASSERT_TRUE(cache.Get(a.digest).ok());
  ASSERT_TRUE(cache.Put(c.digest, c.bytes).ok());
  EXPECT_FALSE(cache.Contains(b.digest));
  EXPECT_TRUE(cache.Contains(a.digest));
  EXPECT_TRUE(cache.Contains(c.digest));
  const ModuleCache::Stats s = cache.GetStats();
  EXPECT_FALSE(s.persistent);
  EXPECT_EQ(s.evictions, 1u);
  EXPECT_EQ(s.disk_bytes, 0u);
  EXPECT_EQ(s.memory_bytes, 2000u);
}

TEST_F(ModuleCacheTest, EntryLargerThanTheBoundStaysInMemoryOnly) {
  const Blob big = MakeBlob(5000, 1), small = MakeBlob(100, 2);
  {
    ModuleCache cache(dir_, 1000);
    ASSERT_TRUE(cache.Put(small.digest, small.bytes).ok());
    ASSERT_TRUE(cache.Put(big.digest, big.bytes).ok());
    EXPECT_FALSE(fs::exists(FileOf(big.digest)));
    EXPECT_TRUE(cache.Contains(small.digest));  // not evicted for it
    auto got = cache.Get(big.digest);
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_EQ(**got, big.bytes);
    EXPECT_EQ(cache.GetStats().disk_bytes, 100u);
  }
  ModuleCache cache(dir_, 1000);
  EXPECT_FALSE(cache.Contains(big.digest));
  EXPECT_TRUE(cache.Contains(small.digest));
}

TEST_F(ModuleCacheTest, CorruptFileIsDetectedAndRemoved) {
  const Blob a = MakeBlob(4000, 1);
  {
    ModuleCache cache(dir_, 1 << 20);
    ASSERT_TRUE(cache.Put(a.digest, a.bytes).ok());
  }
  {
    std::fstream f(FileOf(a.digest), std::ios::binary | std::ios::in | std::ios::out);
    f.seekp(1234);
    f.put(static_cast<char>(a.bytes[1234] ^ 0x40));
  }
  ModuleCache cache(dir_, 1 << 20);
  EXPECT_TRUE(cache.Contains(a.digest));  // hashes are checked on Get, not at startup
  EXPECT_TRUE(absl::IsNotFound(cache.Get(a.digest).status()));
  EXPECT_FALSE(cache.Contains(a.digest));
  EXPECT_FALSE(fs::exists(FileOf(a.digest)));
  const ModuleCache::Stats s = cache.GetStats();
  EXPECT_EQ(s.entries, 0u);
  EXPECT_EQ(s.disk_bytes, 0u);
  EXPECT_EQ(s.misses, 1u);
  // The client sends it again and all is well.
  ASSERT_TRUE(cache.Put(a.digest, a.bytes).ok());
  EXPECT_EQ(ReadAll(FileOf(a.digest)), a.bytes);
}

TEST_F(ModuleCacheTest, TruncatedOrVanishedFileIsAMiss) {
  const Blob a = MakeBlob(4000, 1), b = MakeBlob(4000, 2), c = MakeBlob(10, 3);
  // No memory tier to speak of, so Get reads the files.
  ModuleCache cache(dir_, 1 << 20, /*max_memory_bytes=*/0);
  ASSERT_TRUE(cache.Put(a.digest, a.bytes).ok());
  ASSERT_TRUE(cache.Put(b.digest, b.bytes).ok());
  ASSERT_TRUE(cache.Put(c.digest, c.bytes).ok());  // holds the one memory slot
  fs::resize_file(FileOf(a.digest), 100);
  fs::remove(FileOf(b.digest));
  EXPECT_TRUE(absl::IsNotFound(cache.Get(a.digest).status()));
  EXPECT_TRUE(absl::IsNotFound(cache.Get(b.digest).status()));
  EXPECT_FALSE(cache.Contains(a.digest));
  EXPECT_FALSE(cache.Contains(b.digest));
  EXPECT_FALSE(fs::exists(FileOf(a.digest)));
  EXPECT_TRUE(cache.Get(c.digest).ok());
}

TEST_F(ModuleCacheTest, StrayTempFilesAreRemovedAndOtherFilesIgnored) {
  const Blob a = MakeBlob(100, 1);
  fs::create_directories(dir_);
  const std::string temp = dir_ + "/" + ModuleCache::kTempPrefix + wire::ToHex(a.digest) + "-1-0";
  std::ofstream(temp) << "half a module";
  std::ofstream(dir_ + "/README") << "not an entry";
  std::ofstream(dir_ + "/" + wire::ToHex(MakeBlob(1, 9).digest).substr(1)) << "bad name";
  fs::create_directory(dir_ + "/" + wire::ToHex(MakeBlob(2, 9).digest));  // not a file

  ModuleCache cache(dir_, 1 << 20);
  EXPECT_FALSE(fs::exists(temp));
  EXPECT_TRUE(fs::exists(dir_ + "/README"));
  EXPECT_EQ(cache.GetStats().entries, 0u);
  EXPECT_FALSE(cache.Contains(a.digest));
}

TEST_F(ModuleCacheTest, SecondCacheOnTheSameDirectoryRunsInMemory) {
  const Blob a = MakeBlob(100, 1), b = MakeBlob(100, 2);
  ModuleCache first(dir_, 1 << 20);
  ASSERT_TRUE(first.Put(a.digest, a.bytes).ok());
  ModuleCache second(dir_, 1 << 20);
  EXPECT_FALSE(second.GetStats().persistent);
  EXPECT_FALSE(second.Contains(a.digest));
  ASSERT_TRUE(second.Put(b.digest, b.bytes).ok());
  EXPECT_FALSE(fs::exists(FileOf(b.digest)));
  EXPECT_TRUE(second.Get(b.digest).ok());
}

TEST_F(ModuleCacheTest, UnwritableDirectoryDegradesToMemory) {
  const Blob a = MakeBlob(100, 1), b = MakeBlob(100, 2);
  ModuleCache cache(dir_, 1 << 20);
  ASSERT_TRUE(cache.Put(a.digest, a.bytes).ok());
  // Take the directory away under the cache: every write now fails (works
  // as root too, unlike a chmod).
  fs::remove_all(dir_);
  ASSERT_TRUE(cache.Put(b.digest, b.bytes).ok());
  EXPECT_FALSE(cache.GetStats().persistent);
  auto got = cache.Get(b.digest);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(**got, b.bytes);
  got = cache.Get(a.digest);  // its memory copy is still held
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(**got, a.bytes);
}

TEST_F(ModuleCacheTest, DirectoryThatIsAFileRunsInMemory) {
  fs::create_directories(root_);
  std::ofstream(dir_) << "a file";
  const Blob a = MakeBlob(100, 1);
  ModuleCache cache(dir_, 1 << 20);
  EXPECT_FALSE(cache.GetStats().persistent);
  ASSERT_TRUE(cache.Put(a.digest, a.bytes).ok());
  EXPECT_TRUE(cache.Get(a.digest).ok());
}

TEST_F(ModuleCacheTest, ConcurrentPutAndGet) {
  constexpr int kBlobs = 24;
  constexpr int kThreads = 6;
  std::vector<Blob> blobs;
  for (int i = 0; i < kBlobs; ++i) blobs.push_back(MakeBlob(500 + 397 * i, 100 + i));
  // Bounds well below the total, so evictions run alongside everything else.
  constexpr uint64_t kMaxBytes = 40000;
  ModuleCache cache(dir_, kMaxBytes, /*max_memory_bytes=*/15000);

  std::atomic<int> bad{0};
  std::atomic<int> found{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937 rng(t);
      for (int i = 0; i < 300; ++i) {
        const Blob& b = blobs[rng() % kBlobs];
        if (rng() % 3 == 0) {
          if (!cache.Put(b.digest, b.bytes).ok()) ++bad;
        } else {
          auto got = cache.Get(b.digest);
          if (got.ok()) {
            ++found;
            if (**got != b.bytes) ++bad;
          } else if (!absl::IsNotFound(got.status())) {
            ++bad;
          }
        }
        if (rng() % 7 == 0) (void)cache.Contains(b.digest);
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(bad.load(), 0);
  EXPECT_GT(found.load(), 0);

  const ModuleCache::Stats s = cache.GetStats();
  EXPECT_LE(s.disk_bytes, kMaxBytes);
  EXPECT_GT(s.evictions, 0u);
  EXPECT_EQ(s.hits, static_cast<uint64_t>(found.load()));
  // What is on disk is exactly what the index says, and all of it is intact.
  uint64_t on_disk = 0;
  for (const auto& de : fs::directory_iterator(dir_)) {
    const std::string name = de.path().filename();
    if (name == ModuleCache::kLockFile) continue;
    ASSERT_EQ(name.rfind(ModuleCache::kTempPrefix, 0), std::string::npos) << name;
    on_disk += de.file_size();
    const std::vector<uint8_t> bytes = ReadAll(de.path());
    EXPECT_EQ(wire::ToHex(wire::ImageDigest(bytes.data(), bytes.size())), name);
    Digest d;
    ASSERT_TRUE(wire::FromHex(name, &d));
    EXPECT_TRUE(cache.Contains(d));
  }
  EXPECT_EQ(on_disk, s.disk_bytes);
}

}  // namespace
}  // namespace wooly::server
