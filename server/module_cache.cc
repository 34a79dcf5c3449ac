#include "wooly/server/module_cache.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "spdlog/spdlog.h"
#include "wooly/proto/sha256.h"

namespace wooly::server {
namespace {
// Images are hashed with a few threads: they run to hundreds of MiB.
constexpr unsigned kHashThreads = 4;
}  // namespace
namespace {

absl::Status ErrnoStatus(int err, const std::string& what) {
  std::string msg = absl::StrCat(what, ": ", std::strerror(err));
  switch (err) {
    case ENOENT:
      return absl::NotFoundError(msg);
    case ENOSPC:
    case EDQUOT:
      return absl::ResourceExhaustedError(msg);
    case EACCES:
    case EPERM:
    case EROFS:
      return absl::PermissionDeniedError(msg);
    default:
      return absl::InternalError(msg);
  }
}

// mkdir -p, creating missing components with mode 0700.
bool MakeDirs(const std::string& path, int* err) {
  for (size_t pos = 1; pos <= path.size(); ++pos) {
    if (pos != path.size() && path[pos] != '/') continue;
    const std::string prefix = path.substr(0, pos);
    if (::mkdir(prefix.c_str(), 0700) != 0 && errno != EEXIST) {
      *err = errno;
      return false;
    }
  }
  return true;
}

bool StartsWith(const char* s, const char* prefix) {
  return std::strncmp(s, prefix, std::strlen(prefix)) == 0;
}

int64_t RealtimeNs() {
  struct timespec ts;
  ::clock_gettime(CLOCK_REALTIME, &ts);
  return int64_t{ts.tv_sec} * 1000000000 + ts.tv_nsec;
}

// Reads a whole file below `dir_fd`. Does not trust the size from fstat: the
// file is read to EOF.
absl::StatusOr<std::vector<uint8_t>> ReadFileAt(int dir_fd, const std::string& name) {
  const int fd = ::openat(dir_fd, name.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoStatus(errno, "open " + name);
  std::vector<uint8_t> bytes;
  struct stat st;
  if (::fstat(fd, &st) == 0 && st.st_size > 0) bytes.resize(static_cast<size_t>(st.st_size));
  size_t len = 0;
  for (;;) {
    if (len == bytes.size()) bytes.resize(std::max<size_t>(bytes.size() * 2, 1 << 16));
    const ssize_t n = ::read(fd, bytes.data() + len, bytes.size() - len);
    if (n < 0) {
      if (errno == EINTR) continue;
      const int err = errno;
      ::close(fd);
      return ErrnoStatus(err, "read " + name);
    }
    if (n == 0) break;
    len += static_cast<size_t>(n);
  }
  ::close(fd);
  bytes.resize(len);
  return bytes;
}

}  // namespace

size_t ModuleCache::DigestHash::operator()(const Digest& d) const {
  size_t h;
  std::memcpy(&h, d.data(), sizeof h);  // already uniformly distributed
  return h;
}

ModuleCache::ModuleCache(std::string dir, uint64_t max_bytes, uint64_t max_memory_bytes)
    : dir_(std::move(dir)), max_bytes_(max_bytes), max_memory_bytes_(max_memory_bytes) {
  if (!dir_.empty()) OpenDir();
}

ModuleCache::~ModuleCache() {
  if (lock_fd_ >= 0) ::close(lock_fd_);  // releases the flock
  if (dir_fd_ >= 0) ::close(dir_fd_);
}

void ModuleCache::OpenDir() {
  int err = 0;
  if (!MakeDirs(dir_, &err)) {
    spdlog::warn("module cache: cannot create {}: {}; caching in memory only", dir_,
                 std::strerror(err));
    return;
  }
  dir_fd_ = ::open(dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd_ < 0) {
    spdlog::warn("module cache: cannot open {}: {}; caching in memory only", dir_,
                 std::strerror(errno));
    return;
  }
  bool writable = false;
  lock_fd_ = ::openat(dir_fd_, kLockFile, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (lock_fd_ < 0) {
    // Read-only: serve what is there, store nothing new.
    spdlog::warn(
        "module cache: {} is not writable ({}); existing entries are served, new ones "
        "kept in memory only",
        dir_, std::strerror(errno));
  } else if (::flock(lock_fd_, LOCK_EX | LOCK_NB) != 0) {
    // Another cache owns the directory and may evict files under us at any
    // time: stay out of it altogether.
    spdlog::warn("module cache: {} is in use by another cache ({}); caching in memory only", dir_,
                 std::strerror(errno));
    ::close(lock_fd_);
    lock_fd_ = -1;
    ::close(dir_fd_);
    dir_fd_ = -1;
    return;
  } else {
    writable = true;
  }

  struct Found {
    Digest digest;
    uint64_t size;
    int64_t mtime_ns;
  };
  std::vector<Found> found;
  const int scan_fd = ::dup(dir_fd_);
  DIR* d = scan_fd >= 0 ? ::fdopendir(scan_fd) : nullptr;
  if (d == nullptr) {
    spdlog::warn("module cache: cannot list {}: {}", dir_, std::strerror(errno));
    if (scan_fd >= 0) ::close(scan_fd);
  } else {
    while (struct dirent* de = ::readdir(d)) {
      const char* name = de->d_name;
      if (StartsWith(name, kTempPrefix)) {
        // An unfinished write from a process that died.
        if (writable && ::unlinkat(dir_fd_, name, 0) == 0) {
          spdlog::info("module cache: removed stray temp file {}/{}", dir_, name);
        }
        continue;
      }
      Digest digest;
      if (!wire::FromHex(name, &digest) || wire::ToHex(digest) != name) continue;
      struct stat st;
      if (::fstatat(dir_fd_, name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode)) continue;
      found.push_back({digest, static_cast<uint64_t>(st.st_size),
                       int64_t{st.st_mtim.tv_sec} * 1000000000 + st.st_mtim.tv_nsec});
    }
    ::closedir(d);
  }
  // Oldest first, so that pushing each to the front leaves the newest there.
  std::sort(found.begin(), found.end(),
            [](const Found& a, const Found& b) { return a.mtime_ns < b.mtime_ns; });

  absl::MutexLock lock(&mu_);
  persistent_ = writable;
  for (const Found& f : found) {
    Entry& e = entries_[f.digest];
    e.size = f.size;
    e.on_disk = true;
    e.disk_gen = next_gen_++;
    disk_lru_.push_front(f.digest);
    e.disk_pos = disk_lru_.begin();
    disk_bytes_ += f.size;
    bytes_ += f.size;
    last_stamp_ns_ = std::max(last_stamp_ns_, f.mtime_ns);
  }
  EnforceBoundsLocked(nullptr);  // the bound may have shrunk since the last run
  spdlog::info("module cache: {}: {} entries, {} bytes{}", dir_, entries_.size(), disk_bytes_,
               writable ? "" : " (read-only)");
}

uint64_t ModuleCache::MemoryBound() const {
  return dir_.empty() ? std::min(max_bytes_, max_memory_bytes_) : max_memory_bytes_;
}

int64_t ModuleCache::NextStampLocked() {
  // Strictly increasing even within one tick of the file system's clock, so
  // that the startup scan recovers the exact order.
  last_stamp_ns_ = std::max(RealtimeNs(), last_stamp_ns_ + 1);
  return last_stamp_ns_;
}

int64_t ModuleCache::TouchLocked(Map::iterator it) {
  Entry& e = it->second;
  if (e.image) mem_lru_.splice(mem_lru_.begin(), mem_lru_, e.mem_pos);
  if (!e.on_disk) return 0;
  disk_lru_.splice(disk_lru_.begin(), disk_lru_, e.disk_pos);
  return NextStampLocked();
}

void ModuleCache::SetMtime(const Digest& digest, int64_t stamp_ns) const {
  if (stamp_ns == 0 || dir_fd_ < 0) return;
  struct timespec times[2];
  times[0].tv_sec = 0;
  times[0].tv_nsec = UTIME_OMIT;  // atime
  times[1].tv_sec = stamp_ns / 1000000000;
  times[1].tv_nsec = stamp_ns % 1000000000;
  // Best effort: a lost stamp only blurs the LRU order after a restart.
  (void)::utimensat(dir_fd_, wire::ToHex(digest).c_str(), times, 0);
}

void ModuleCache::SetImageLocked(Map::iterator it, Image image) {
  Entry& e = it->second;
  if (e.image) return;
  e.image = std::move(image);
  mem_lru_.push_front(it->first);
  e.mem_pos = mem_lru_.begin();
  memory_bytes_ += e.size;
}

void ModuleCache::DropImageLocked(Map::iterator it) {
  Entry& e = it->second;
  if (!e.image) return;
  mem_lru_.erase(e.mem_pos);
  memory_bytes_ -= e.size;
  e.image.reset();
}

void ModuleCache::DropFileLocked(Map::iterator it) {
  Entry& e = it->second;
  if (!e.on_disk) return;
  disk_lru_.erase(e.disk_pos);
  disk_bytes_ -= e.size;
  e.on_disk = false;
  const std::string name = wire::ToHex(it->first);
  if (::unlinkat(dir_fd_, name.c_str(), 0) != 0 && errno != ENOENT) {
    spdlog::debug("module cache: unlink {}/{}: {}", dir_, name, std::strerror(errno));
  }
}

void ModuleCache::EraseLocked(Map::iterator it) {
  DropImageLocked(it);
  DropFileLocked(it);
  bytes_ -= it->second.size;
  entries_.erase(it);
}

void ModuleCache::EnforceBoundsLocked(const Digest* keep) {
  if (persistent_) {
    while (disk_bytes_ > max_bytes_ && !disk_lru_.empty()) {
      if (keep != nullptr && disk_lru_.back() == *keep) break;
      EraseLocked(entries_.find(disk_lru_.back()));
      ++evictions_;
    }
  }
  const uint64_t bound = MemoryBound();
  while (memory_bytes_ > bound && !mem_lru_.empty()) {
    if (keep != nullptr && mem_lru_.back() == *keep) break;  // it is the only one left
    auto it = entries_.find(mem_lru_.back());
    if (it->second.on_disk) {
      DropImageLocked(it);  // still on disk: only the memory copy goes
    } else {
      EraseLocked(it);
      ++evictions_;
    }
  }
}

void ModuleCache::DegradeLocked(const std::string& why) {
  if (!persistent_) return;
  persistent_ = false;
  spdlog::warn("module cache: {}: {}; caching new modules in memory only", dir_, why);
}

absl::StatusOr<std::string> ModuleCache::WriteTemp(const Digest& digest,
                                                   const std::vector<uint8_t>& bytes,
                                                   uint64_t seq) const {
  const std::string name =
      absl::StrCat(kTempPrefix, wire::ToHex(digest), "-", ::getpid(), "-", seq);
  const int fd = ::openat(dir_fd_, name.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return ErrnoStatus(errno, "create " + name);
  auto fail = [&](const char* what) {
    const int err = errno;
    ::close(fd);
    ::unlinkat(dir_fd_, name.c_str(), 0);
    return ErrnoStatus(err, absl::StrCat(what, " ", name));
  };
  for (size_t off = 0; off < bytes.size();) {
    const ssize_t n = ::write(fd, bytes.data() + off, bytes.size() - off);
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail("write");
    }
    off += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0) return fail("fsync");
  if (::close(fd) != 0) {
    const int err = errno;
    ::unlinkat(dir_fd_, name.c_str(), 0);
    return ErrnoStatus(err, "close " + name);
  }
  return name;
}

absl::StatusOr<ModuleCache::Image> ModuleCache::Get(const Digest& digest) {
  uint64_t gen;
  {
    absl::MutexLock lock(&mu_);
    auto it = entries_.find(digest);
    if (it == entries_.end()) {
      ++misses_;
      return absl::NotFoundError("module not cached: " + wire::ToHex(digest));
    }
    if (it->second.image) {
      ++hits_;
      SetMtime(digest, TouchLocked(it));
      return it->second.image;
    }
    gen = it->second.disk_gen;
  }

  // Read and verify without the lock: images run to hundreds of MB.
  const std::string name = wire::ToHex(digest);
  absl::StatusOr<std::vector<uint8_t>> read = ReadFileAt(dir_fd_, name);
  const bool corrupt =
      read.ok() && wire::ImageDigest(read->data(), read->size(), kHashThreads) != digest;

  absl::MutexLock lock(&mu_);
  auto it = entries_.find(digest);
  // Still the file this read saw (not evicted and written again meanwhile)?
  const bool same_file = it != entries_.end() && it->second.on_disk && it->second.disk_gen == gen;
  if (!read.ok() || corrupt) {
    if (corrupt) {
      spdlog::warn("module cache: {}/{} does not match its hash; deleted", dir_, name);
    } else if (!absl::IsNotFound(read.status())) {
      spdlog::warn("module cache: {}", std::string(read.status().message()));
    }
    if (same_file) DropFileLocked(it);
    if (it != entries_.end() && !it->second.on_disk && !it->second.image) EraseLocked(it);
    it = entries_.find(digest);
    if (it != entries_.end() && it->second.image) {  // a Put raced in
      ++hits_;
      SetMtime(digest, TouchLocked(it));
      return it->second.image;
    }
    ++misses_;
    if (corrupt || absl::IsNotFound(read.status())) {
      return absl::NotFoundError("module not cached: " + name);
    }
    return read.status();
  }

  ++hits_;
  Image image = std::make_shared<const std::vector<uint8_t>>(*std::move(read));
  if (it == entries_.end()) return image;  // evicted meanwhile; the bytes are still good
  if (it->second.image) {
    image = it->second.image;  // another reader was first: share one copy
  } else {
    SetImageLocked(it, image);
  }
  SetMtime(digest, TouchLocked(it));
  EnforceBoundsLocked(&digest);
  return image;
}

bool ModuleCache::Contains(const Digest& digest) {
  absl::MutexLock lock(&mu_);
  return entries_.contains(digest);
}

absl::Status ModuleCache::Put(const Digest& digest, std::vector<uint8_t> bytes) {
  const Digest actual = wire::ImageDigest(bytes.data(), bytes.size(), kHashThreads);
  if (actual != digest) {
    return absl::InvalidArgumentError(absl::StrCat("module image hashes to ", wire::ToHex(actual),
                                                   ", not ", wire::ToHex(digest)));
  }
  const uint64_t size = bytes.size();
  Image image = std::make_shared<const std::vector<uint8_t>>(std::move(bytes));

  uint64_t seq;
  {
    absl::MutexLock lock(&mu_);
    auto it = entries_.find(digest);
    if (it != entries_.end()) {
      SetImageLocked(it, image);
      SetMtime(digest, TouchLocked(it));
      EnforceBoundsLocked(&digest);
      return absl::OkStatus();
    }
    // Served from memory at once, also while its file is being written.
    it = entries_.emplace(digest, Entry{}).first;
    it->second.size = size;
    bytes_ += size;
    SetImageLocked(it, image);
    TouchLocked(it);
    EnforceBoundsLocked(&digest);
    if (!persistent_ || size > max_bytes_) return absl::OkStatus();  // memory only
    seq = next_temp_++;
  }

  // Write without the lock, publish with it (the rename and the index change
  // together, so that eviction never unlinks a file the index does not know).
  absl::StatusOr<std::string> temp = WriteTemp(digest, *image, seq);
  bool renamed = false;
  {
    absl::MutexLock lock(&mu_);
    if (!temp.ok()) {
      DegradeLocked(std::string(temp.status().message()));
    } else if (::renameat(dir_fd_, temp->c_str(), dir_fd_, wire::ToHex(digest).c_str()) != 0) {
      const int err = errno;
      ::unlinkat(dir_fd_, temp->c_str(), 0);
      DegradeLocked(absl::StrCat("rename ", *temp, ": ", std::strerror(err)));
    } else {
      renamed = true;
    }
    auto it = entries_.find(digest);
    if (renamed) {
      if (it == entries_.end()) {  // its memory copy was evicted meanwhile
        it = entries_.emplace(digest, Entry{}).first;
        it->second.size = size;
        bytes_ += size;
      }
      Entry& e = it->second;
      if (!e.on_disk) {
        e.on_disk = true;
        disk_lru_.push_front(digest);
        e.disk_pos = disk_lru_.begin();
        disk_bytes_ += size;
      }
      e.disk_gen = next_gen_++;
      SetMtime(digest, TouchLocked(it));
      EnforceBoundsLocked(&digest);
    }
  }
  // Makes the rename itself durable; the data was synced before it.
  if (renamed) (void)::fsync(dir_fd_);
  return absl::OkStatus();
}

ModuleCache::Stats ModuleCache::GetStats() {
  absl::MutexLock lock(&mu_);
  Stats s;
  s.entries = entries_.size();
  s.bytes = bytes_;
  s.disk_bytes = disk_bytes_;
  s.memory_bytes = memory_bytes_;
  s.hits = hits_;
  s.misses = misses_;
  s.evictions = evictions_;
  s.persistent = persistent_;
  return s;
}

}  // namespace wooly::server
