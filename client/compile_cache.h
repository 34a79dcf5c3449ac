// A cache of NVRTC's compile results, served through export table da9151d3.
//
// libnvrtc asks the driver for this table and, for every compile stage
// (NVVM bitcode to PTX, PTX to cubin), makes a key from the stage's input,
// options and its own build strings, looks the key up, and on a miss
// compiles and stores the result. NVIDIA's driver keeps the results in its
// compute cache, in memory and on disk, so a program that compiles the same
// source many times (cuDNN builds one attention kernel per decode length)
// pays for it once. Without the table every compile runs in full.
//
// The slot contract (measured on the H100 with bench/native_count.c's
// WOOLY_TRACE_TABLES) is in docs/export-tables.md; this class is the store
// behind it: an in-memory LRU, plus a directory of one file per entry so a
// later process finds what an earlier one compiled, as with the driver.
//
// Bounds and switches follow the driver's JIT cache: CUDA_CACHE_DISABLE=1
// turns it off, CUDA_CACHE_MAXSIZE bounds it (bytes, default 256 MiB, 4 GiB
// at most; entries larger than it are not kept), and the files go under
// $CUDA_CACHE_PATH/wooly-nvrtc (default ~/.nv/ComputeCache/wooly-nvrtc);
// WOOLY_COMPILE_CACHE_DIR (environment or client config file) overrides the
// directory, and "off" keeps the cache in memory only.
//
// Thread safety: all methods may be called from any thread; a forked child
// keeps the parent's entries. Files are written to a temporary name and
// renamed, so concurrent processes never see a partial entry, and every file
// carries a digest of its content that is checked before it is used.
#ifndef WOOLY_CLIENT_COMPILE_CACHE_H_
#define WOOLY_CLIENT_COMPILE_CACHE_H_

#include <cstddef>
#include <cstdint>
#include <list>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "wooly/proto/sha256.h"

namespace wooly::client {

struct CompileCacheOptions {
  bool enabled = true;
  // Bytes kept in memory, and on disk; larger entries are not kept.
  uint64_t max_bytes = uint64_t{256} << 20;
  // Where entries persist; empty keeps them in memory only.
  std::string dir;

  // The options the environment asks for (see the header comment).
  static CompileCacheOptions FromEnvironment();
};

class CompileCache {
 public:
  using Key = wire::Sha256Hash;

  explicit CompileCache(CompileCacheOptions options);
  CompileCache(const CompileCache&) = delete;
  CompileCache& operator=(const CompileCache&) = delete;

  // The key of one compile stage. Every field is length-prefixed, so no two
  // different inputs share a key text.
  static Key MakeKey(uint32_t stage, std::string_view input, std::string_view options,
                     std::string_view host, std::string_view build);

  // The stored result for `key`, from memory or else from disk; false on a
  // miss (and always when the cache is disabled).
  bool Lookup(const Key& key, std::vector<uint8_t>* out);
  // Keeps `data` under `key`, evicting the least recently used entries
  // (memory and files) to stay within max_bytes.
  void Store(const Key& key, std::string_view data);

  const CompileCacheOptions& options() const { return options_; }
  // Counters for the stats line and tests.
  struct Counts {
    uint64_t hits = 0, disk_hits = 0, misses = 0, stores = 0;
  };
  Counts counts();

  // The process's cache, made from the environment on first use.
  static CompileCache& Global();

 private:
  struct Entry {
    Key key;
    std::vector<uint8_t> data;
  };
  struct KeyHash {
    size_t operator()(const Key& k) const;
  };

  std::string PathOf(const Key& key) const;
  bool ReadFile(const Key& key, std::vector<uint8_t>* out);
  void WriteFile(const Key& key, std::string_view data);
  void TrimDirectory();
  // Under mu_: inserts or refreshes an entry and evicts to the bound.
  void InsertLocked(const Key& key, std::vector<uint8_t> data);

  const CompileCacheOptions options_;
  std::mutex mu_;
  std::list<Entry> lru_;  // most recent first; guarded by mu_
  std::unordered_map<Key, std::list<Entry>::iterator, KeyHash> index_;  // guarded by mu_
  uint64_t bytes_ = 0;                                                  // guarded by mu_
  Counts counts_;                                                       // guarded by mu_
};

// Prints the global cache's counters to stderr (WOOLY_CLIENT_STATS=1), if it
// was used.
void PrintCompileCacheStats();

}  // namespace wooly::client

#endif  // WOOLY_CLIENT_COMPILE_CACHE_H_
