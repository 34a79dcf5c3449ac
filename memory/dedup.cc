#include "wooly/memory/dedup.h"

#include <algorithm>
#include <cstring>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"

namespace wooly::memory {

ContentHash DefaultContentHash(std::span<const uint8_t> bytes) {
  // Runs under woolyd's memory lock for every deduplicated upload: a 64 MiB
  // chunk takes ~14 ms on one AVX-512 core of the lent H100's host, about
  // 1 ms over kContentHashThreads.
  static const unsigned threads =
      std::max(1u, std::min(kContentHashThreads, std::thread::hardware_concurrency()));
  // Carries on with fewer threads when the system refuses one (no
  // exception under woolyd's lock).
  const wire::DigestInput in[] = {{bytes.data(), bytes.size()}};
  return wire::ContentDigests(in, threads)[0];
}

DedupIndex::DedupIndex(VmLayout* layout, PhysicalMemory* physical, DedupOptions options)
    : layout_(layout), physical_(physical), options_(std::move(options)) {
  if (!options_.hasher) options_.hasher = DefaultContentHash;
  if (options_.compare_step_bytes == 0) options_.compare_step_bytes = uint64_t{1} << 20;
  layout_->SetSharedReleasedListener([this](SharedId id) { Forget(id); });
}

DedupIndex::~DedupIndex() { layout_->SetSharedReleasedListener(nullptr); }

void DedupIndex::SetOptIn(ClientId client, bool opted_in) {
  if (opted_in) {
    opted_in_.insert(client);
  } else {
    opted_in_.erase(client);
  }
}

void DedupIndex::Forget(SharedId id) {
  auto h = hash_of_.find(id);
  if (h == hash_of_.end()) return;
  auto [lo, hi] = by_hash_.equal_range(h->second);
  for (auto it = lo; it != hi; ++it) {
    if (it->second == id) {
      by_hash_.erase(it);
      break;
    }
  }
  hash_of_.erase(h);
}

std::vector<SharedId> DedupIndex::Lookup(const ContentHash& hash) const {
  std::vector<SharedId> out;
  auto [lo, hi] = by_hash_.equal_range(hash);
  for (auto it = lo; it != hi; ++it) out.push_back(it->second);
  return out;
}

DedupStats DedupIndex::stats() const {
  DedupStats s = stats_;
  s.entries = hash_of_.size();
  return s;
}

absl::StatusOr<bool> DedupIndex::SameBytes(const SharedChunkInfo& shared,
                                           std::span<const uint8_t> content) {
  if (shared.bytes != content.size()) return false;
  std::vector<uint8_t> buf(std::min<uint64_t>(options_.compare_step_bytes, content.size()));
  for (uint64_t off = 0; off < content.size(); off += buf.size()) {
    const uint64_t n = std::min<uint64_t>(buf.size(), content.size() - off);
    if (absl::Status s = physical_->Read(shared.handle, off, std::span(buf.data(), n)); !s.ok()) {
      return s;
    }
    if (std::memcmp(buf.data(), content.data() + off, n) != 0) return false;
  }
  return true;
}

absl::StatusOr<const ChunkInfo*> DedupIndex::CheckOffer(ClientId client, ChunkId chunk) const {
  if (!IsOptedIn(client)) {
    return absl::FailedPreconditionError(absl::StrCat("client ", client, " has not opted in"));
  }
  const ChunkInfo* c = layout_->chunk(chunk);
  if (c == nullptr || c->client != client || c->orphaned) {
    return absl::InvalidArgumentError(
        absl::StrCat("chunk ", chunk, " is not a chunk of client ", client));
  }
  if (c->kind != ChunkKind::kLarge || c->state != ChunkState::kResident) {
    return absl::FailedPreconditionError(
        absl::StrCat("chunk ", chunk, " cannot be deduplicated: only resident large chunks can"));
  }
  return c;
}

absl::StatusOr<OfferResult> DedupIndex::Offer(ClientId client, ChunkId chunk,
                                              std::span<const uint8_t> content) {
  absl::StatusOr<const ChunkInfo*> c = CheckOffer(client, chunk);
  if (!c.ok()) return c.status();
  if (content.size() != (*c)->bytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("a deduplicated upload covers whole chunks: ", content.size(),
                     " bytes for a chunk of ", (*c)->bytes));
  }
  return OfferChecked(client, chunk, content, /*write=*/true);
}

absl::StatusOr<OfferResult> DedupIndex::PublishInPlace(ClientId client, ChunkId chunk) {
  absl::StatusOr<const ChunkInfo*> c = CheckOffer(client, chunk);
  if (!c.ok()) return c.status();
  if (const auto* sb = std::get_if<SharedBacking>(&(*c)->backing)) {
    OfferResult result;
    result.outcome = OfferOutcome::kAlreadyShared;
    result.shared = sb->shared;
    return result;
  }
  const uint64_t bytes = (*c)->bytes;
  const PhysHandle own = std::get<ResidentBacking>((*c)->backing).handle;
  absl::StatusOr<HostSlot> slot = physical_->AllocHost(bytes);
  if (!slot.ok()) return slot.status();
  absl::StatusOr<OfferResult> result = [&]() -> absl::StatusOr<OfferResult> {
    if (absl::Status s = physical_->CopyToHost(own, *slot, bytes); !s.ok()) return s;
    absl::StatusOr<std::span<const uint8_t>> content = physical_->HostBytes(*slot);
    if (!content.ok()) return content.status();
    if (content->size() < bytes) return absl::InternalError("host slot smaller than its chunk");
    return OfferChecked(client, chunk, content->first(bytes), /*write=*/false);
  }();
  if (absl::Status s = physical_->FreeHost(*slot); !s.ok() && result.ok()) return s;
  return result;
}

absl::StatusOr<OfferResult> DedupIndex::OfferChecked(ClientId client, ChunkId chunk,
                                                     std::span<const uint8_t> content, bool write) {
  const ChunkInfo* c = layout_->chunk(chunk);
  ++stats_.offers;
  OfferResult result;
  result.hash = options_.hasher(content);

  if (const auto* sb = std::get_if<SharedBacking>(&c->backing)) {
    // Already shared: identical content is a no-op; anything else replaces
    // all of it, so the writer gets memory of its own without a copy.
    const SharedId current = sb->shared;
    auto h = hash_of_.find(current);
    if (h != hash_of_.end() && h->second == result.hash) {
      absl::StatusOr<bool> same = SameBytes(*layout_->shared(current), content);
      if (!same.ok()) return same.status();
      if (*same) {
        result.outcome = OfferOutcome::kAlreadyShared;
        result.shared = current;
        return result;
      }
      ++result.collisions;
    }
    if (absl::Status s = layout_->Privatize(chunk, /*copy_contents=*/false); !s.ok()) return s;
    c = layout_->chunk(chunk);
  }

  for (SharedId candidate : Lookup(result.hash)) {
    const SharedChunkInfo* sh = layout_->shared(candidate);
    if (sh == nullptr) continue;
    absl::StatusOr<bool> same = SameBytes(*sh, content);
    if (!same.ok()) return same.status();
    if (!*same) {
      ++result.collisions;  // same digest, different bytes: never share
      continue;
    }
    if (absl::Status s = layout_->Attach(chunk, candidate); !s.ok()) return s;
    stats_.collisions += result.collisions;
    ++stats_.attached;
    result.outcome = OfferOutcome::kAttached;
    result.shared = candidate;
    return result;
  }
  stats_.collisions += result.collisions;

  if (write) {
    const PhysHandle own = std::get<ResidentBacking>(c->backing).handle;
    if (absl::Status s = physical_->Write(own, 0, content); !s.ok()) return s;
  }
  absl::StatusOr<SharedId> sid = layout_->Publish(chunk);
  if (!sid.ok()) {
    result.outcome = OfferOutcome::kUploadedPrivate;
    return result;
  }
  by_hash_.emplace(result.hash, *sid);
  hash_of_[*sid] = result.hash;
  ++stats_.published;
  result.outcome = OfferOutcome::kPublished;
  result.shared = *sid;
  return result;
}

absl::StatusOr<ChunkId> DedupIndex::BeginWrite(ClientId client, ChunkId chunk) {
  const ChunkInfo* c = layout_->chunk(chunk);
  if (c == nullptr || c->client != client || c->orphaned) {
    return absl::InvalidArgumentError(
        absl::StrCat("chunk ", chunk, " is not a chunk of client ", client));
  }
  const auto* sb = std::get_if<SharedBacking>(&c->backing);
  if (sb == nullptr) return chunk;  // private already: write in place
  const bool last_user = layout_->shared(sb->shared)->users == 1;
  if (absl::Status s = layout_->Privatize(chunk, /*copy_contents=*/true); !s.ok()) return s;
  ++(last_user ? stats_.cow_takeovers : stats_.cow_copies);
  return chunk;
}

}  // namespace wooly::memory
