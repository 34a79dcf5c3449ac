// A content-addressed store of module images (fatbins, cubins) keyed by their
// SHA-256, kept across clients and across woolyd restarts, so that a module a
// process on this node has sent once is never sent again (issue 4, module
// cache).
//
// Two tiers:
//  - Disk: one file per entry in `dir`, named by the lower-case hex digest,
//    written atomically (temp file, fsync, rename, fsync of the directory).
//    Bounded by `max_bytes` in total; least-recently-used entries (by last Get
//    or Put) are evicted, file and memory copy both. The order survives
//    restarts: each use sets the file's mtime to a strictly increasing stamp,
//    and the startup scan orders the entries by it.
//  - Memory: a read cache of recently used images, bounded by
//    `max_memory_bytes`, LRU. It also holds the entries that never reach the
//    disk: every entry when `dir` is empty, an entry larger than `max_bytes`,
//    and everything after the disk failed. Those live only in this process
//    and leave the cache when the memory tier evicts them. The bound is soft
//    by one entry: the entry just used is never evicted, even when it alone
//    exceeds the bound.
//
// Integrity: Put rejects bytes that do not hash to the given digest (a client
// must not plant content under another hash), and every read from disk is
// hashed again: a file whose bytes no longer match its name is deleted and
// reported NotFound. Corrupt data is never returned.
//
// Disk trouble never crashes: a directory that cannot be created, locked or
// written (read-only file system, full disk, permissions) turns the cache
// into a memory-only one with a single warning in the log; entries already
// on disk stay readable. Put still succeeds then (the image is held in
// memory). Read errors other than a missing or corrupt file are returned by
// Get as a Status.
//
// A directory belongs to one ModuleCache at a time: the constructor takes an
// exclusive flock on `<dir>/.lock`; a second cache on the same directory (in
// this or another process) runs memory-only.
//
// Images are shared, immutable buffers: what Get returns stays valid after
// the entry is evicted, and memory held by callers is not counted against
// the memory bound.
//
// Thread safety: all methods may be called from any thread at once. File
// reads and writes and hashing happen outside the lock, so a large Get from
// disk does not stall other callers.
#ifndef WOOLY_SERVER_MODULE_CACHE_H_
#define WOOLY_SERVER_MODULE_CACHE_H_

#include <array>
#include <cstdint>
#include <list>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

namespace wooly::server {

class ModuleCache {
 public:
  using Digest = std::array<uint8_t, 32>;  // wire::ImageDigest of the image
  using Image = std::shared_ptr<const std::vector<uint8_t>>;

  static constexpr uint64_t kDefaultMaxMemoryBytes = uint64_t{1} << 30;
  // Names in the directory that start with this are unfinished writes; the
  // startup scan deletes them (left over from a crash).
  static constexpr char kTempPrefix[] = ".tmp-";
  static constexpr char kLockFile[] = ".lock";

  struct Stats {
    uint64_t entries = 0;       // distinct images held, on disk or in memory only
    uint64_t bytes = 0;         // their total size
    uint64_t disk_bytes = 0;    // of which in files (bounded by max_bytes)
    uint64_t memory_bytes = 0;  // held by the memory tier (bounded by max_memory_bytes)
    uint64_t hits = 0;          // Get calls that returned an image
    uint64_t misses = 0;        // Get calls that did not
    uint64_t evictions = 0;     // entries dropped by a size bound
    bool persistent = false;    // new entries still go to disk
  };

  // `dir` empty: memory only, bounded by min(max_bytes, max_memory_bytes).
  // Otherwise creates `dir` (mode 0700) if needed, removes stray temp files,
  // indexes the entries found there (hashes are checked lazily, on Get) and
  // evicts down to `max_bytes`. Never fails: see the disk notes above.
  ModuleCache(std::string dir, uint64_t max_bytes,
              uint64_t max_memory_bytes = kDefaultMaxMemoryBytes);
  ~ModuleCache();

  ModuleCache(const ModuleCache&) = delete;
  ModuleCache& operator=(const ModuleCache&) = delete;

  // The image for `digest`: from memory if held, else read from disk and
  // verified. NotFound if absent, evicted, or found corrupt (the file is then
  // deleted); another error status for an unexpected read error.
  absl::StatusOr<Image> Get(const Digest& digest) ABSL_LOCKS_EXCLUDED(mu_);

  // Whether an entry is indexed. Cheap and does not count as a use; a later
  // Get can still miss (evicted meanwhile, or the file turns out corrupt).
  bool Contains(const Digest& digest) ABSL_LOCKS_EXCLUDED(mu_);

  // Stores `bytes` under `digest`. InvalidArgument if ImageDigest(bytes) !=
  // digest. Storing an image that is already held only counts as a use.
  // Returns OK when the image is held, even if the disk failed and it is
  // held in memory only. Cost: hashing the image, then for a new entry a
  // file write and two fsyncs; other threads' Gets are served from memory as
  // soon as the hash has been checked, before the file is written.
  absl::Status Put(const Digest& digest, std::vector<uint8_t> bytes) ABSL_LOCKS_EXCLUDED(mu_);

  Stats GetStats() ABSL_LOCKS_EXCLUDED(mu_);

  const std::string& dir() const { return dir_; }

 private:
  struct DigestHash {
    size_t operator()(const Digest& d) const;
  };
  struct Entry {
    uint64_t size = 0;
    bool on_disk = false;
    // Bumped each time this process writes the entry's file, so that a reader
    // that failed on an older file does not drop a newer one.
    uint64_t disk_gen = 0;
    Image image;                           // memory copy, or null
    std::list<Digest>::iterator disk_pos;  // in disk_lru_, valid iff on_disk
    std::list<Digest>::iterator mem_pos;   // in mem_lru_, valid iff image
  };
  using Map = std::unordered_map<Digest, Entry, DigestHash>;

  void OpenDir();  // constructor only

  // Makes `it` the most recently used entry of both tiers and returns the
  // stamp to set as its file's mtime (0: none, it is not on disk).
  int64_t TouchLocked(Map::iterator it) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void SetImageLocked(Map::iterator it, Image image) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void DropImageLocked(Map::iterator it) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Unlinks the entry's file and takes it out of the disk tier.
  void DropFileLocked(Map::iterator it) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Removes the entry entirely; unlinks its file when it has one.
  void EraseLocked(Map::iterator it) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Evicts LRU entries (never `keep`) until both tiers are within bounds.
  void EnforceBoundsLocked(const Digest* keep) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Switches to memory-only, logging once.
  void DegradeLocked(const std::string& why) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  int64_t NextStampLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  uint64_t MemoryBound() const;

  // Writes `bytes` to a new temp file and fsyncs it. Returns the file's name.
  absl::StatusOr<std::string> WriteTemp(const Digest& digest, const std::vector<uint8_t>& bytes,
                                        uint64_t seq) const;
  void SetMtime(const Digest& digest, int64_t stamp_ns) const;

  const std::string dir_;
  const uint64_t max_bytes_;
  const uint64_t max_memory_bytes_;
  // Directory and lock file descriptors: set by the constructor, then
  // immutable (-1 when memory-only from the start).
  int dir_fd_ = -1;
  int lock_fd_ = -1;

  absl::Mutex mu_;
  bool persistent_ ABSL_GUARDED_BY(mu_) = false;
  Map entries_ ABSL_GUARDED_BY(mu_);
  std::list<Digest> disk_lru_ ABSL_GUARDED_BY(mu_);  // front: most recent
  std::list<Digest> mem_lru_ ABSL_GUARDED_BY(mu_);   // front: most recent
  uint64_t disk_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t memory_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t bytes_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t hits_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t misses_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t evictions_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t next_gen_ ABSL_GUARDED_BY(mu_) = 1;
  uint64_t next_temp_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t last_stamp_ns_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace wooly::server

#endif  // WOOLY_SERVER_MODULE_CACHE_H_
