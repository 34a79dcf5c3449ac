// Content-addressed deduplication of chunks for clients that opt in
// (WOOLY_DEDUP=1), meant for read-only weights (issue #6).
//
// A deduplicated upload hands a whole large chunk's new contents to Offer.
// The index hashes them itself (wire::ContentDigests, a BLAKE3 tree over
// 256 KiB pieces, unless a test injects another hasher) and looks the digest
// up; a candidate with the same digest is shared ONLY after its bytes, read
// back from the device, compare equal to the offered bytes. Both checks,
// so that neither a weakness of the hash nor a client that lies about a
// digest can make one tenant's chunk map onto content another tenant
// planted: a tenant can only ever map onto bytes identical to what it
// uploaded itself. Digests that clients compute are never keys of this
// index (they may only tell the client what it need not send, once the
// server has the bytes to verify).
//  - Match: the client's chunk is remapped read-only onto the shared chunk
//    and its own physical memory released (VmLayout::Attach).
//  - No match: the bytes are written into the client's own chunk, which
//    becomes a new shared chunk (VmLayout::Publish), mapped read-only.
// Shared chunks are refcounted by VmLayout; the last user's free releases
// the memory, and the index forgets the entry.
//
// Copy-on-write: any API write into a client's chunk (memcpy, memset, a
// partial upload) must call BeginWrite first; for a shared chunk the writer
// gets a private copy (or takes the shared memory over when it is the last
// user), so no other tenant sees the write.
//
// A KERNEL write into a shared chunk is not interposed. Shared chunks are
// mapped with CU_MEM_ACCESS_FLAGS_PROT_READ (server/vmm_physical_memory.h;
// woolyd never shares where the driver refuses that), so such a write
// faults with CUDA_ERROR_ILLEGAL_ADDRESS, a sticky error that costs every
// client of the shared context its GPU state (docs/architecture.md, "Faults
// in the shared context"). If the driver refuses read-only mappings, dedup
// must stay off: a writable shared mapping would let one tenant change
// another's bytes. docs/overcommit.md has the details.
//
// Thread safety: thread-compatible; guard it with the VmLayout's lock.
#ifndef WOOLY_MEMORY_DEDUP_H_
#define WOOLY_MEMORY_DEDUP_H_

#include <cstdint>
#include <functional>
#include <map>
#include <set>
#include <span>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "wooly/memory/physical_memory.h"
#include "wooly/memory/vm_layout.h"
#include "wooly/proto/content_digest.h"

namespace wooly::memory {

using ContentHash = wire::ContentDigest;
using ContentHasher = std::function<ContentHash(std::span<const uint8_t>)>;

// The chunk digest both sides compute (libwooly names chunks with it in
// kDedupProbe): wire::ContentDigests of the bytes, the BLAKE3 tree over
// wire::kContentDigestPiece pieces, collision-resistant like BLAKE3 itself.
// Hashes on up to kContentHashThreads threads of wire::ProcessWorkerPool().
inline constexpr unsigned kContentHashThreads = 16;
ContentHash DefaultContentHash(std::span<const uint8_t> bytes);

struct DedupOptions {
  // Empty: DefaultContentHash. Tests inject a weak one to force collisions.
  ContentHasher hasher;
  // Bytes read back per step of the byte-exact compare.
  uint64_t compare_step_bytes = uint64_t{1} << 20;
};

enum class OfferOutcome {
  kAttached,         // mapped onto an identical shared chunk; nothing uploaded
  kPublished,        // uploaded into the chunk, which is now a new shared chunk
  kAlreadyShared,    // the chunk already maps identical shared content
  kUploadedPrivate,  // uploaded, but publishing failed: the chunk stays private
};

struct OfferResult {
  OfferOutcome outcome = OfferOutcome::kPublished;
  SharedId shared = 0;  // 0 for kUploadedPrivate
  ContentHash hash{};
  // Candidates whose digest matched but whose bytes differed.
  uint32_t collisions = 0;
};

struct DedupStats {
  uint64_t offers = 0;
  uint64_t attached = 0;
  uint64_t published = 0;
  uint64_t collisions = 0;     // digest matches refused by the byte compare
  uint64_t cow_copies = 0;     // BeginWrite gave the writer a copy
  uint64_t cow_takeovers = 0;  // BeginWrite's writer was the last user
  uint64_t entries = 0;        // shared chunks in the index
};

class DedupIndex {
 public:
  // `layout` and `physical` are not owned and must outlive the index; the
  // index installs the layout's shared-released listener (and clears it
  // when destroyed).
  DedupIndex(VmLayout* layout, PhysicalMemory* physical, DedupOptions options = {});
  ~DedupIndex();
  DedupIndex(const DedupIndex&) = delete;
  DedupIndex& operator=(const DedupIndex&) = delete;

  void SetOptIn(ClientId client, bool opted_in);
  bool IsOptedIn(ClientId client) const { return opted_in_.contains(client); }

  // Uploads `content`, the whole new contents of `chunk` (a large, resident
  // chunk of `client`), sharing it when identical content is resident.
  // FailedPrecondition when the client has not opted in or the chunk is not
  // large and resident; InvalidArgument when the chunk is not the client's
  // or `content` is not exactly its size. Device errors are returned; on
  // error the chunk keeps its old backing (its bytes are undefined if the
  // upload itself failed, as after a failed cuMemcpy).
  absl::StatusOr<OfferResult> Offer(ClientId client, ChunkId chunk,
                                    std::span<const uint8_t> content);

  // Offers the bytes `chunk` (a large, resident, private chunk of `client`)
  // already holds: reads them back from the device through a pinned host
  // slot, hashes them itself, and attaches the chunk to identical shared
  // content (releasing its own memory) or publishes it in place. So an
  // upload may travel the usual fast way and be deduplicated after it
  // landed; the index still hashes only what is really on the device. A
  // chunk that already maps shared content is kAlreadyShared. The caller
  // must make sure nothing writes the chunk meanwhile (woolyd quiesces the
  // client's streams). Errors as for Offer; ResourceExhausted when no host
  // slot is to be had (the chunk then stays private).
  absl::StatusOr<OfferResult> PublishInPlace(ClientId client, ChunkId chunk);

  // Call before any API write into `chunk`: returns the chunk to write,
  // which is then backed by the client's own writable memory (copy-on-write
  // when it was shared). ResourceExhausted when the copy needs physical
  // memory that is short (evict, then retry).
  absl::StatusOr<ChunkId> BeginWrite(ClientId client, ChunkId chunk);

  // The shared chunks filed under `hash`.
  std::vector<SharedId> Lookup(const ContentHash& hash) const;
  DedupStats stats() const;

 private:
  // Offer's checks of the client and the chunk.
  absl::StatusOr<const ChunkInfo*> CheckOffer(ClientId client, ChunkId chunk) const;
  // Offer and PublishInPlace past the checks: `write` puts `content` into
  // the chunk before it is published (Offer); without it the chunk holds it.
  absl::StatusOr<OfferResult> OfferChecked(ClientId client, ChunkId chunk,
                                           std::span<const uint8_t> content, bool write);
  // Byte-exact compare of a shared chunk with `content`.
  absl::StatusOr<bool> SameBytes(const SharedChunkInfo& shared, std::span<const uint8_t> content);
  void Forget(SharedId id);

  VmLayout* layout_;
  PhysicalMemory* physical_;
  DedupOptions options_;
  std::set<ClientId> opted_in_;
  std::multimap<ContentHash, SharedId> by_hash_;
  std::map<SharedId, ContentHash> hash_of_;
  DedupStats stats_;
};

}  // namespace wooly::memory

#endif  // WOOLY_MEMORY_DEDUP_H_
