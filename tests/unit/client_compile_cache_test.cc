// NVRTC's compile cache (compile_cache.h) and export table da9151d3, which
// NVRTC calls as measured against NVIDIA's driver (docs/export-tables.md).
#include <cuda.h>
#include <dirent.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "compile_cache.h"
#include "log.h"

namespace wooly::client {
namespace {

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/wooly-compile-cache-XXXXXX";
    path_ = ::mkdtemp(tmpl);
  }
  ~TempDir() { std::system(("rm -rf " + path_).c_str()); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

std::vector<std::string> Files(const std::string& dir) {
  std::vector<std::string> names;
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return names;
  while (struct dirent* e = ::readdir(d)) {
    if (e->d_name[0] != '.') names.push_back(e->d_name);
  }
  ::closedir(d);
  return names;
}

std::string Bytes(const std::vector<uint8_t>& v) { return std::string(v.begin(), v.end()); }

CompileCacheOptions InMemory(uint64_t max_bytes = 1 << 20) {
  CompileCacheOptions o;
  o.max_bytes = max_bytes;
  return o;
}

class CompileCacheTest : public ::testing::Test {
 protected:
  void SetUp() override { SetLogLevelForTesting(LogLevel::kOff); }
};

TEST_F(CompileCacheTest, EveryKeyFieldCounts) {
  const auto base = CompileCache::MakeKey(2, "bitcode", "-arch=compute_90", "HOST64", "date");
  EXPECT_EQ(base, CompileCache::MakeKey(2, "bitcode", "-arch=compute_90", "HOST64", "date"));
  EXPECT_NE(base, CompileCache::MakeKey(1, "bitcode", "-arch=compute_90", "HOST64", "date"));
  EXPECT_NE(base, CompileCache::MakeKey(2, "bitcodE", "-arch=compute_90", "HOST64", "date"));
  EXPECT_NE(base, CompileCache::MakeKey(2, "bitcode", "-arch=compute_80", "HOST64", "date"));
  EXPECT_NE(base, CompileCache::MakeKey(2, "bitcode", "-arch=compute_90", "HOST32", "date"));
  EXPECT_NE(base, CompileCache::MakeKey(2, "bitcode", "-arch=compute_90", "HOST64", "date2"));
  // Moving bytes between fields makes another key (fields are length-prefixed).
  EXPECT_NE(CompileCache::MakeKey(2, "ab", "c", "", ""),
            CompileCache::MakeKey(2, "a", "bc", "", ""));
}

TEST_F(CompileCacheTest, StoreThenLookupInMemory) {
  CompileCache cache(InMemory());
  const auto key = CompileCache::MakeKey(2, "src", "opts", "h", "b");
  std::vector<uint8_t> out;
  EXPECT_FALSE(cache.Lookup(key, &out));
  cache.Store(key, "// PTX");
  ASSERT_TRUE(cache.Lookup(key, &out));
  EXPECT_EQ(Bytes(out), "// PTX");
  cache.Store(key, "// PTX 2");  // a later store replaces
  ASSERT_TRUE(cache.Lookup(key, &out));
  EXPECT_EQ(Bytes(out), "// PTX 2");
  EXPECT_EQ(cache.counts().hits, 2u);
  EXPECT_EQ(cache.counts().misses, 1u);
  EXPECT_EQ(cache.counts().stores, 2u);
}

TEST_F(CompileCacheTest, LeastRecentlyUsedEntriesLeaveFirst) {
  CompileCache cache(InMemory(100));
  const auto a = CompileCache::MakeKey(1, "a", "", "", "");
  const auto b = CompileCache::MakeKey(1, "b", "", "", "");
  const auto c = CompileCache::MakeKey(1, "c", "", "", "");
  cache.Store(a, std::string(40, 'a'));
  cache.Store(b, std::string(40, 'b'));
  std::vector<uint8_t> out;
  ASSERT_TRUE(cache.Lookup(a, &out));  // a is now more recent than b
  cache.Store(c, std::string(40, 'c'));
  EXPECT_TRUE(cache.Lookup(a, &out));
  EXPECT_FALSE(cache.Lookup(b, &out));
  EXPECT_TRUE(cache.Lookup(c, &out));
  // Larger than the whole bound: not kept.
  const auto big = CompileCache::MakeKey(1, "big", "", "", "");
  cache.Store(big, std::string(101, 'x'));
  EXPECT_FALSE(cache.Lookup(big, &out));
  EXPECT_TRUE(cache.Lookup(c, &out));
}

// Stores one entry and says whether it is found again.
bool StoreAndFind(const CompileCacheOptions& o) {
  CompileCache cache(o);
  const auto key = CompileCache::MakeKey(1, "x", "", "", "");
  cache.Store(key, "data");
  std::vector<uint8_t> out;
  return cache.Lookup(key, &out) && Bytes(out) == "data";
}

TEST_F(CompileCacheTest, DisabledCacheNeverHits) {
  CompileCacheOptions o = InMemory();
  o.enabled = false;
  EXPECT_FALSE(StoreAndFind(o));
}

TEST_F(CompileCacheTest, EntriesPersistForTheNextProcess) {
  TempDir tmp;
  CompileCacheOptions o = InMemory();
  o.dir = tmp.path() + "/a/b";  // made on first store, mode 0700
  const auto key = CompileCache::MakeKey(1, "cubin input", "-arch=sm_90", "HOST64", "d");
  {
    CompileCache first(o);
    first.Store(key, "ELF...");
  }
  struct stat st;
  ASSERT_EQ(::stat(o.dir.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  ASSERT_EQ(Files(o.dir).size(), 1u);
  CompileCache second(o);
  std::vector<uint8_t> out;
  ASSERT_TRUE(second.Lookup(key, &out));
  EXPECT_EQ(Bytes(out), "ELF...");
  EXPECT_EQ(second.counts().disk_hits, 1u);
  ASSERT_TRUE(second.Lookup(key, &out));  // now from memory
  EXPECT_EQ(second.counts().disk_hits, 1u);
}

TEST_F(CompileCacheTest, DamagedFilesAreIgnoredAndRemoved) {
  TempDir tmp;
  CompileCacheOptions o = InMemory();
  o.dir = tmp.path();
  const auto key = CompileCache::MakeKey(1, "in", "", "", "");
  {
    CompileCache writer(o);
    writer.Store(key, "the real result");
  }
  std::vector<std::string> files = Files(o.dir);
  ASSERT_EQ(files.size(), 1u);
  const std::string path = o.dir + "/" + files[0];
  for (int damage = 0; damage < 3; ++damage) {
    {
      std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
      ASSERT_TRUE(f.good());
      if (damage == 0) {
        f.seekp(-1, std::ios::end);  // flip the content's last byte
        f.put('X');
      } else if (damage == 1) {
        f.seekp(0);  // a foreign file
        f.write("NOTWOOLY", 8);
      } else {
        f.close();
        ::truncate(path.c_str(), 20);  // cut short
      }
    }
    CompileCache reader(o);
    std::vector<uint8_t> out;
    EXPECT_FALSE(reader.Lookup(key, &out)) << "damage " << damage;
    EXPECT_TRUE(Files(o.dir).empty()) << "damage " << damage;
    CompileCache(o).Store(key, "the real result");  // rebuilt for the next case
  }
}

TEST_F(CompileCacheTest, DirectoryStaysWithinTheBound) {
  TempDir tmp;
  CompileCacheOptions o = InMemory(3000);
  o.dir = tmp.path();
  CompileCache cache(o);
  for (int i = 0; i < 10; ++i) {
    cache.Store(CompileCache::MakeKey(1, std::to_string(i), "", "", ""), std::string(900, 'x'));
  }
  // Each file is 900 bytes plus a 48-byte header: three fit.
  EXPECT_LE(Files(o.dir).size(), 3u);
  EXPECT_GE(Files(o.dir).size(), 2u);
  CompileCache later(o);
  std::vector<uint8_t> out;
  EXPECT_TRUE(later.Lookup(CompileCache::MakeKey(1, "9", "", "", ""), &out));
  EXPECT_FALSE(later.Lookup(CompileCache::MakeKey(1, "0", "", "", ""), &out));
}

TEST_F(CompileCacheTest, UnwritableDirectoryKeepsMemoryOnly) {
  TempDir tmp;
  const std::string file = tmp.path() + "/not-a-dir";
  std::ofstream(file) << "x";
  CompileCacheOptions o = InMemory();
  o.dir = file + "/cache";
  EXPECT_TRUE(StoreAndFind(o));
}

TEST_F(CompileCacheTest, OptionsFollowTheDriversVariables) {
  ::setenv("WOOLY_CLIENT_CONFIG", "none", 1);
  ::setenv("HOME", "/home/u", 1);
  ::unsetenv("CUDA_CACHE_PATH");
  ::unsetenv("WOOLY_COMPILE_CACHE_DIR");
  ::unsetenv("CUDA_CACHE_DISABLE");
  ::unsetenv("CUDA_CACHE_MAXSIZE");
  CompileCacheOptions o = CompileCacheOptions::FromEnvironment();
  EXPECT_TRUE(o.enabled);
  EXPECT_EQ(o.max_bytes, uint64_t{256} << 20);
  EXPECT_EQ(o.dir, "/home/u/.nv/ComputeCache/wooly-nvrtc");
  ::setenv("CUDA_CACHE_PATH", "/cache", 1);
  ::setenv("CUDA_CACHE_MAXSIZE", "1000", 1);
  ::setenv("CUDA_CACHE_DISABLE", "1", 1);
  o = CompileCacheOptions::FromEnvironment();
  EXPECT_FALSE(o.enabled);
  EXPECT_EQ(o.max_bytes, 1000u);
  EXPECT_EQ(o.dir, "/cache/wooly-nvrtc");
  ::setenv("CUDA_CACHE_MAXSIZE", "99999999999999", 1);  // the driver's 4 GiB ceiling
  ::setenv("WOOLY_COMPILE_CACHE_DIR", "off", 1);
  o = CompileCacheOptions::FromEnvironment();
  EXPECT_EQ(o.max_bytes, uint64_t{4} << 30);
  EXPECT_EQ(o.dir, "");
  ::setenv("CUDA_CACHE_MAXSIZE", "lots", 1);  // not a number: the default
  ::setenv("WOOLY_COMPILE_CACHE_DIR", "/elsewhere", 1);
  o = CompileCacheOptions::FromEnvironment();
  EXPECT_EQ(o.max_bytes, uint64_t{256} << 20);
  EXPECT_EQ(o.dir, "/elsewhere");
  for (const char* v :
       {"CUDA_CACHE_PATH", "CUDA_CACHE_MAXSIZE", "CUDA_CACHE_DISABLE", "WOOLY_COMPILE_CACHE_DIR"}) {
    ::unsetenv(v);
  }
}

TEST_F(CompileCacheTest, ConcurrentUsersAgree) {
  TempDir tmp;
  CompileCacheOptions o = InMemory(1 << 20);
  o.dir = tmp.path();
  CompileCache cache(o);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&cache, t] {
      for (int i = 0; i < 50; ++i) {
        const std::string in = std::to_string(i % 10);
        const auto key = CompileCache::MakeKey(1, in, "", "", "");
        std::vector<uint8_t> out;
        if (cache.Lookup(key, &out)) {
          EXPECT_EQ(Bytes(out), "result " + in);
        } else {
          cache.Store(key, "result " + in);
        }
        (void)t;
      }
    });
  }
  for (auto& th : threads) th.join();
  for (int i = 0; i < 10; ++i) {
    std::vector<uint8_t> out;
    ASSERT_TRUE(
        CompileCache(o).Lookup(CompileCache::MakeKey(1, std::to_string(i), "", "", ""), &out));
    EXPECT_EQ(Bytes(out), "result " + std::to_string(i));
  }
}

// ---- export table da9151d3, called the way libnvrtc calls it

const CUuuid kNvrtcCacheTable = [] {
  CUuuid u;
  const unsigned char b[16] = {0xda, 0x91, 0x51, 0xd3, 0x3a, 0xe6, 0xcc, 0x41,
                               0xa5, 0xc0, 0x4f, 0x26, 0xd5, 0x33, 0xe3, 0x28};
  std::memcpy(u.bytes, b, 16);
  return u;
}();

using KeyFn = CUresult (*)(void**, uint32_t, const void*, uint32_t, const char*, const char*,
                           const char*);
using ReleaseFn = CUresult (*)(void*);
using LookupFn = CUresult (*)(void*, uint64_t, void**, uint32_t*);
using StoreFn = CUresult (*)(void*, uint64_t, const void*, uint32_t);
using FreeFn = CUresult (*)(void*);

class NvrtcCacheTableTest : public CompileCacheTest {
 protected:
  void SetUp() override {
    CompileCacheTest::SetUp();
    const void* t = nullptr;
    ASSERT_EQ(cuGetExportTable(&t, &kNvrtcCacheTable), CUDA_SUCCESS);
    table_ = static_cast<void* const*>(t);
    ASSERT_EQ(reinterpret_cast<uintptr_t>(table_[0]), 56u);
    make_key_ = reinterpret_cast<KeyFn>(table_[1]);
    release_ = reinterpret_cast<ReleaseFn>(table_[2]);
    lookup_ = reinterpret_cast<LookupFn>(table_[3]);
    store_ = reinterpret_cast<StoreFn>(table_[4]);
    free_ = reinterpret_cast<FreeFn>(table_[6]);
  }

  // One compile stage as NVRTC runs it: key, lookup, and on a miss
  // "compile" and store; returns the result and whether it was a hit.
  std::string Stage(uint32_t stage, const std::string& input, const char* options, bool* hit) {
    const char strings[] = "HOST64\0Aug 20 2025 14:31:52";
    void* key = nullptr;
    EXPECT_EQ(make_key_(&key, stage, input.data(), static_cast<uint32_t>(input.size()), options,
                        strings, strings + 7),
              CUDA_SUCCESS);
    // NVRTC's 32-bit size sits right before its pointer.
    struct {
      uint32_t guard = 0xabababab;
      uint32_t size = 0;
      void* data = nullptr;
      uint64_t after = 0xcdcdcdcdcdcdcdcd;
    } out;
    std::string result;
    CUresult r = lookup_(key, 0, &out.data, &out.size);
    *hit = r == CUDA_SUCCESS;
    if (*hit) {
      result.assign(static_cast<const char*>(out.data), out.size);
      EXPECT_EQ(free_(out.data), CUDA_SUCCESS);
    } else {
      EXPECT_EQ(r, CUDA_ERROR_NOT_FOUND);
      result = "compiled(" + input + "," + options + ")";
      EXPECT_EQ(store_(key, 0, result.data(), static_cast<uint32_t>(result.size())), CUDA_SUCCESS);
    }
    EXPECT_EQ(out.guard, 0xababababu);
    EXPECT_EQ(out.after, 0xcdcdcdcdcdcdcdcdull);
    EXPECT_EQ(release_(key), CUDA_SUCCESS);
    return result;
  }

  void* const* table_ = nullptr;
  KeyFn make_key_ = nullptr;
  ReleaseFn release_ = nullptr;
  LookupFn lookup_ = nullptr;
  StoreFn store_ = nullptr;
  FreeFn free_ = nullptr;
};

// The first compile of a source misses and stores; the same source and
// options hit afterwards, and a new option set misses again.
TEST_F(NvrtcCacheTableTest, RepeatedCompilesHit) {
  ::setenv("WOOLY_COMPILE_CACHE_DIR", "off", 1);
  bool hit = true;
  const std::string ptx = Stage(2, "BC\xc0\xde kernel", "-arch=compute_90", &hit);
  EXPECT_FALSE(hit);
  const std::string cubin = Stage(1, ptx, "-arch=sm_90", &hit);
  EXPECT_FALSE(hit);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(Stage(2, "BC\xc0\xde kernel", "-arch=compute_90", &hit), ptx);
    EXPECT_TRUE(hit);
    EXPECT_EQ(Stage(1, ptx, "-arch=sm_90", &hit), cubin);
    EXPECT_TRUE(hit);
  }
  Stage(2, "BC\xc0\xde kernel", "-arch=compute_90 -lineinfo", &hit);
  EXPECT_FALSE(hit);
  ::unsetenv("WOOLY_COMPILE_CACHE_DIR");
}

TEST_F(NvrtcCacheTableTest, BadHandlesAreRefused) {
  int not_a_key = 0;
  void* data = nullptr;
  uint32_t size = 0;
  EXPECT_EQ(lookup_(&not_a_key, 0, &data, &size), CUDA_ERROR_INVALID_HANDLE);
  EXPECT_EQ(store_(&not_a_key, 0, "x", 1), CUDA_ERROR_INVALID_HANDLE);
  EXPECT_EQ(release_(&not_a_key), CUDA_ERROR_INVALID_HANDLE);
  EXPECT_EQ(release_(nullptr), CUDA_ERROR_INVALID_HANDLE);
  EXPECT_EQ(free_(&not_a_key), CUDA_ERROR_INVALID_VALUE);
  EXPECT_EQ(make_key_(nullptr, 1, "x", 1, "", "", ""), CUDA_ERROR_INVALID_VALUE);
  EXPECT_EQ(make_key_(&data, 1, nullptr, 5, "", "", ""), CUDA_ERROR_INVALID_VALUE);
  void* key = nullptr;
  ASSERT_EQ(make_key_(&key, 1, nullptr, 0, nullptr, nullptr, nullptr), CUDA_SUCCESS);
  EXPECT_EQ(lookup_(key, 0, nullptr, &size), CUDA_ERROR_INVALID_VALUE);
  EXPECT_EQ(store_(key, 0, nullptr, 3), CUDA_ERROR_INVALID_VALUE);
  EXPECT_EQ(release_(key), CUDA_SUCCESS);
  EXPECT_EQ(release_(key), CUDA_ERROR_INVALID_HANDLE);  // released twice
  // Slot 5's use is unknown: it answers CUDA_ERROR_NOT_SUPPORTED.
  EXPECT_EQ(reinterpret_cast<CUresult (*)()>(table_[5])(), CUDA_ERROR_NOT_SUPPORTED);
}

// A forked child (a DataLoader worker, a subprocess compile) uses the cache
// and sees the parent's entries.
TEST_F(NvrtcCacheTableTest, ForkedChildUsesTheCache) {
  ::setenv("WOOLY_COMPILE_CACHE_DIR", "off", 1);
  bool hit = true;
  const std::string ptx = Stage(2, "forked source", "-arch=compute_90", &hit);
  std::atomic<bool> stop{false};
  std::thread busy([&] {
    while (!stop) {
      bool h;
      Stage(2, "forked source", "-arch=compute_90", &h);
    }
  });
  for (int i = 0; i < 20; ++i) {
    pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      bool child_hit = false;
      bool ok = Stage(2, "forked source", "-arch=compute_90", &child_hit) == ptx && child_hit;
      _exit(ok && !::testing::Test::HasFailure() ? 0 : 1);
    }
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "fork " << i;
  }
  stop = true;
  busy.join();
  ::unsetenv("WOOLY_COMPILE_CACHE_DIR");
}

}  // namespace
}  // namespace wooly::client
