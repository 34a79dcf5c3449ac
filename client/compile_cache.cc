#include "compile_cache.h"

#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <utility>

#include "log.h"
#include "wooly/proto/defaults.h"

namespace wooly::client {
namespace {

constexpr uint64_t kMaxCacheBytes = uint64_t{4} << 30;  // as the driver's
constexpr char kMagic[8] = {'W', 'O', 'O', 'L', 'Y', 'N', 'V', 'C'};
constexpr uint32_t kFormat = 1;
// File: magic, format, content size, SHA-256 of the content, content.
constexpr size_t kHeaderBytes = sizeof(kMagic) + 4 + 4 + wire::kSha256Size;

void PutU32(uint8_t* p, uint32_t v) { std::memcpy(p, &v, 4); }
uint32_t GetU32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

std::string Hex(const CompileCache::Key& key) {
  static const char kDigits[] = "0123456789abcdef";
  std::string s;
  for (uint8_t b : key) {
    s.push_back(kDigits[b >> 4]);
    s.push_back(kDigits[b & 15]);
  }
  return s;
}

// mkdir -p with mode 0700 for the directories it makes.
bool MakeDirs(const std::string& path) {
  for (size_t i = 1; i <= path.size(); ++i) {
    if (i < path.size() && path[i] != '/') continue;
    std::string prefix = path.substr(0, i);
    if (::mkdir(prefix.c_str(), 0700) != 0 && errno != EEXIST) return false;
  }
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

bool WriteAll(int fd, const void* data, size_t n) {
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    ssize_t w = ::write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    p += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

bool ReadAll(int fd, void* data, size_t n) {
  char* p = static_cast<char*>(data);
  while (n > 0) {
    ssize_t r = ::read(fd, p, n);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    p += r;
    n -= static_cast<size_t>(r);
  }
  return true;
}

}  // namespace

CompileCacheOptions CompileCacheOptions::FromEnvironment() {
  CompileCacheOptions o;
  const char* disable = std::getenv("CUDA_CACHE_DISABLE");
  if (disable != nullptr && std::strcmp(disable, "1") == 0) o.enabled = false;
  if (const char* max = std::getenv("CUDA_CACHE_MAXSIZE"); max != nullptr && *max != '\0') {
    char* end = nullptr;
    errno = 0;
    unsigned long long v = std::strtoull(max, &end, 10);
    if (errno != 0 || end == max || *end != '\0') {
      WLOG_WARN("CUDA_CACHE_MAXSIZE=%s is not a byte count; the compile cache keeps %llu bytes",
                max, static_cast<unsigned long long>(o.max_bytes));
    } else {
      o.max_bytes = std::min<uint64_t>(v, kMaxCacheBytes);
    }
  }
  const std::string dir = wire::Setting("WOOLY_COMPILE_CACHE_DIR");
  if (!dir.empty()) {
    if (dir != "off") o.dir = dir;
  } else if (const char* base = std::getenv("CUDA_CACHE_PATH"); base != nullptr && *base != '\0') {
    o.dir = std::string(base) + "/wooly-nvrtc";
  } else if (const char* home = std::getenv("HOME"); home != nullptr && *home != '\0') {
    o.dir = std::string(home) + "/.nv/ComputeCache/wooly-nvrtc";
  }
  return o;
}

size_t CompileCache::KeyHash::operator()(const Key& k) const {
  size_t h;
  std::memcpy(&h, k.data(), sizeof(h));
  return h;
}

CompileCache::CompileCache(CompileCacheOptions options) : options_(std::move(options)) {}

CompileCache::Key CompileCache::MakeKey(uint32_t stage, std::string_view input,
                                        std::string_view options, std::string_view host,
                                        std::string_view build) {
  wire::Sha256 sha;
  static constexpr char kDomain[] = "wooly nvrtc compile cache 1";
  sha.Update(kDomain, sizeof(kDomain));
  sha.Update(&stage, sizeof(stage));
  for (std::string_view field : {input, options, host, build}) {
    uint64_t n = field.size();
    sha.Update(&n, sizeof(n));
    sha.Update(field.data(), field.size());
  }
  return sha.Final();
}

std::string CompileCache::PathOf(const Key& key) const {
  return options_.dir + "/" + Hex(key) + ".bin";
}

bool CompileCache::Lookup(const Key& key, std::vector<uint8_t>* out) {
  if (!options_.enabled) return false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = index_.find(key);
    if (it != index_.end()) {
      lru_.splice(lru_.begin(), lru_, it->second);
      *out = it->second->data;
      ++counts_.hits;
      return true;
    }
  }
  std::vector<uint8_t> data;
  bool found = !options_.dir.empty() && ReadFile(key, &data);
  std::lock_guard<std::mutex> lock(mu_);
  if (!found) {
    ++counts_.misses;
    return false;
  }
  ++counts_.hits;
  ++counts_.disk_hits;
  *out = data;
  InsertLocked(key, std::move(data));
  return true;
}

void CompileCache::Store(const Key& key, std::string_view data) {
  if (!options_.enabled || data.size() > options_.max_bytes) return;
  {
    std::lock_guard<std::mutex> lock(mu_);
    ++counts_.stores;
    InsertLocked(key, std::vector<uint8_t>(data.begin(), data.end()));
  }
  if (!options_.dir.empty()) {
    WriteFile(key, data);
    TrimDirectory();
  }
}

CompileCache::Counts CompileCache::counts() {
  std::lock_guard<std::mutex> lock(mu_);
  return counts_;
}

void CompileCache::InsertLocked(const Key& key, std::vector<uint8_t> data) {
  auto it = index_.find(key);
  if (it != index_.end()) {
    bytes_ -= it->second->data.size();
    lru_.erase(it->second);
    index_.erase(it);
  }
  bytes_ += data.size();
  lru_.push_front(Entry{key, std::move(data)});
  index_[key] = lru_.begin();
  while (bytes_ > options_.max_bytes && !lru_.empty()) {
    bytes_ -= lru_.back().data.size();
    index_.erase(lru_.back().key);
    lru_.pop_back();
  }
}

bool CompileCache::ReadFile(const Key& key, std::vector<uint8_t>* out) {
  std::string path = PathOf(key);
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  uint8_t header[kHeaderBytes];
  bool ok = ReadAll(fd, header, sizeof(header)) && std::memcmp(header, kMagic, 8) == 0 &&
            GetU32(header + 8) == kFormat && GetU32(header + 12) <= options_.max_bytes;
  if (ok) {
    out->resize(GetU32(header + 12));
    char extra;
    ok = ReadAll(fd, out->data(), out->size()) && ::read(fd, &extra, 1) == 0;
  }
  if (ok) {
    wire::Sha256 sha;
    sha.Update(out->data(), out->size());
    ok = sha.Final() == *reinterpret_cast<const wire::Sha256Hash*>(header + 16);
  }
  ::close(fd);
  if (!ok) {
    // A damaged or foreign file: never used, and removed so it is rebuilt.
    WLOG_WARN("compile cache: ignoring and removing damaged entry %s", path.c_str());
    ::unlink(path.c_str());
    out->clear();
    return false;
  }
  // Recently used files are the last to be trimmed.
  ::utimensat(AT_FDCWD, path.c_str(), nullptr, 0);
  return true;
}

void CompileCache::WriteFile(const Key& key, std::string_view data) {
  if (!MakeDirs(options_.dir)) {
    static std::atomic<bool> warned{false};
    if (!warned.exchange(true)) {
      WLOG_WARN("compile cache: cannot use directory %s (%s); keeping results in memory only",
                options_.dir.c_str(), std::strerror(errno));
    }
    return;
  }
  std::string path = PathOf(key);
  std::string tmp = path + ".tmp." + std::to_string(::getpid()) + "." +
                    std::to_string(reinterpret_cast<uintptr_t>(&data));
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return;
  uint8_t header[kHeaderBytes];
  std::memcpy(header, kMagic, 8);
  PutU32(header + 8, kFormat);
  PutU32(header + 12, static_cast<uint32_t>(data.size()));
  wire::Sha256 sha;
  sha.Update(data.data(), data.size());
  wire::Sha256Hash digest = sha.Final();
  std::memcpy(header + 16, digest.data(), digest.size());
  bool ok = WriteAll(fd, header, sizeof(header)) && WriteAll(fd, data.data(), data.size());
  ok = ::close(fd) == 0 && ok;
  if (!ok || ::rename(tmp.c_str(), path.c_str()) != 0) ::unlink(tmp.c_str());
}

// Removes the least recently used files until the directory is within
// max_bytes. Temporary files older than a minute (a writer that died) go too.
void CompileCache::TrimDirectory() {
  DIR* d = ::opendir(options_.dir.c_str());
  if (d == nullptr) return;
  struct File {
    std::string path;
    uint64_t bytes;
    struct timespec used;
  };
  std::vector<File> files;
  uint64_t total = 0;
  time_t now = ::time(nullptr);
  while (struct dirent* e = ::readdir(d)) {
    std::string name = e->d_name;
    bool entry = name.size() == 68 && name.compare(64, 4, ".bin") == 0;
    bool tmp = name.find(".bin.tmp.") != std::string::npos;
    if (!entry && !tmp) continue;
    std::string path = options_.dir + "/" + name;
    struct stat st;
    if (::stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) continue;
    if (tmp) {
      if (now - st.st_mtime > 60) ::unlink(path.c_str());
      continue;
    }
    files.push_back(File{path, static_cast<uint64_t>(st.st_size), st.st_mtim});
    total += static_cast<uint64_t>(st.st_size);
  }
  ::closedir(d);
  if (total <= options_.max_bytes) return;
  std::sort(files.begin(), files.end(), [](const File& a, const File& b) {
    return a.used.tv_sec != b.used.tv_sec ? a.used.tv_sec < b.used.tv_sec
                                          : a.used.tv_nsec < b.used.tv_nsec;
  });
  for (const File& f : files) {
    if (total <= options_.max_bytes) break;
    if (::unlink(f.path.c_str()) == 0) total -= f.bytes;
  }
}

namespace {
CompileCache* g_cache;  // set once by Global(), never destroyed
}  // namespace

CompileCache& CompileCache::Global() {
  static std::once_flag once;
  std::call_once(once, [] {
    g_cache = new CompileCache(CompileCacheOptions::FromEnvironment());
    // A child must not inherit the lock held by a thread that is not there.
    pthread_atfork([] { g_cache->mu_.lock(); }, [] { g_cache->mu_.unlock(); },
                   [] { g_cache->mu_.unlock(); });
  });
  return *g_cache;
}

void PrintCompileCacheStats() {
  if (g_cache == nullptr) return;
  CompileCache::Counts c = g_cache->counts();
  std::fprintf(
      stderr, "wooly compile cache: pid %d hits %llu (from disk %llu) misses %llu stores %llu\n",
      static_cast<int>(::getpid()), static_cast<unsigned long long>(c.hits),
      static_cast<unsigned long long>(c.disk_hits), static_cast<unsigned long long>(c.misses),
      static_cast<unsigned long long>(c.stores));
}

}  // namespace wooly::client
