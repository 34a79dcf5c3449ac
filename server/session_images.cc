// Module and library images: loading them for a client, and the node's
// module cache, which lets a client that hashed an image skip sending it
// when any client on the node (or an earlier woolyd) has sent it before.
#include <atomic>
#include <cstring>
#include <thread>

#include "absl/strings/str_cat.h"
#include "spdlog/spdlog.h"
#include "wooly/proto/sha256.h"
#include "wooly/server/client_session.h"
#include "wooly/server/cu_status.h"

namespace wooly::server {
namespace {

// Images smaller than this are not worth caching: resending them costs less
// than the lookup.
constexpr uint64_t kMinCachedImage = 64u << 10;
// Images being added to the cache in the background, at most.
constexpr uint64_t kMaxPendingCacheBytes = 2ull << 30;
std::atomic<uint64_t> g_pending_cache_bytes{0};

}  // namespace

absl::Status ClientSession::LoadImage(bool library, absl::Span<const uint8_t> image,
                                      wire::Writer& out) {
  absl::StatusOr<BackendHandle> h =
      library ? backend_->LibraryLoadData(image) : backend_->ModuleLoadData(image);
  if (!h.ok()) return h.status();
  const uint64_t id = NewId();
  if (library) {
    libraries_[id].backend = *h;
  } else {
    modules_[id].backend = *h;
  }
  out.Put<uint64_t>(id);
  return absl::OkStatus();
}

void ClientSession::RememberImage(absl::Span<const uint8_t> image) {
  std::shared_ptr<ModuleCache> cache = env_->module_cache;
  if (cache == nullptr || image.size() < kMinCachedImage) return;
  auto fill = [cache](std::vector<uint8_t> bytes) {
    const size_t n = bytes.size();
    const ModuleCache::Digest d = wire::ImageDigest(bytes.data(), n, 4);
    if (absl::Status s = cache->Put(d, std::move(bytes)); !s.ok()) {
      spdlog::warn("module cache: could not add an image of {} bytes: {}", n, s.ToString());
    }
  };
  if (!env_->fill_module_cache_in_background) {
    fill(std::vector<uint8_t>(image.begin(), image.end()));
    return;
  }
  if (g_pending_cache_bytes.fetch_add(image.size()) + image.size() > kMaxPendingCacheBytes) {
    g_pending_cache_bytes.fetch_sub(image.size());
    return;  // the disk is behind; this one is sent again next time
  }
  // Hashing and writing hundreds of MiB must not hold up the client.
  std::thread([fill, bytes = std::vector<uint8_t>(image.begin(), image.end())]() mutable {
    const size_t n = bytes.size();
    fill(std::move(bytes));
    g_pending_cache_bytes.fetch_sub(n);
  }).detach();
}

absl::Status ClientSession::OpImageLoadCached(wire::Reader& in, wire::Writer& out) {
  const uint8_t kind = in.Get<uint8_t>();
  const uint8_t* digest_bytes = in.GetRaw(32);
  const uint64_t size = in.Get<uint64_t>();
  if (!in.ok() || kind > 1) return Malformed();
  ModuleCache::Digest digest;
  std::memcpy(digest.data(), digest_bytes, digest.size());
  if (env_->module_cache == nullptr) return CuError(CUDA_ERROR_FILE_NOT_FOUND, "no module cache");
  absl::StatusOr<ModuleCache::Image> image = env_->module_cache->Get(digest);
  if (!image.ok() || (*image)->size() != size) {
    return CuError(CUDA_ERROR_FILE_NOT_FOUND, "image not cached");
  }
  spdlog::debug("client {}: {} of {} bytes from the module cache", id_,
                kind == 1 ? "library" : "module", size);
  return LoadImage(kind == 1, absl::MakeConstSpan(**image), out);
}

}  // namespace wooly::server
