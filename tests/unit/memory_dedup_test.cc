#include <cstdint>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "wooly/memory/dedup.h"
#include "wooly/memory/fake_physical_memory.h"
#include "wooly/memory/overcommit.h"
#include "wooly/memory/vm_layout.h"
#include "wooly/proto/content_digest.h"

namespace wooly::memory {
namespace {

using Op = FakePhysicalMemory::Op;
constexpr uint64_t kChunk = 16384;
constexpr uint64_t kPhysical = uint64_t{256} << 10;

LayoutOptions TestOptions() {
  return {.granularity = 4096,
          .chunk_bytes = kChunk,
          .small_max_bytes = 1024,
          .small_chunk_bytes = 4096,
          .small_alignment = 256,
          .client_va_bytes = uint64_t{1} << 20};
}

std::vector<uint8_t> Pattern(uint64_t seed, size_t n = kChunk) {
  std::mt19937_64 rng(seed);
  std::vector<uint8_t> v(n);
  for (auto& b : v) b = static_cast<uint8_t>(rng());
  return v;
}

class DedupTest : public ::testing::Test {
 protected:
  explicit DedupTest(DedupOptions options = {}) : index_(&layout_, &phys_, std::move(options)) {}

  void SetUp() override {
    for (ClientId c : {1, 2, 3, 4}) {
      ASSERT_TRUE(layout_.AddClient(c).ok());
      index_.SetOptIn(c, true);
      Allocation a = *layout_.Allocate(c, kChunk);
      va_[c] = a.va;
      chunk_[c] = a.chunks[0];
    }
  }

  std::vector<uint8_t> Read(ClientId c) {
    std::vector<uint8_t> out(kChunk);
    absl::Status s = phys_.ReadVa(va_[c], out);
    EXPECT_TRUE(s.ok()) << s;
    return out;
  }

  OfferResult Offer(ClientId c, const std::vector<uint8_t>& bytes) {
    absl::StatusOr<OfferResult> r = index_.Offer(c, chunk_[c], bytes);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : OfferResult{};
  }

  void ExpectLedgerMatchesFake() { EXPECT_EQ(ledger_.Node().physical_used, phys_.device_used()); }

  FakePhysicalMemory phys_{kPhysical, uint64_t{1} << 20};
  Overcommit ledger_{{.physical_bytes = kPhysical, .overcommit_percent = 100}};
  VmLayout layout_{TestOptions(), &phys_, &ledger_};
  DedupIndex index_;
  std::map<ClientId, uint64_t> va_;
  std::map<ClientId, ChunkId> chunk_;
};

TEST_F(DedupTest, IdenticalChunksShareOneCopy) {
  const auto w = Pattern(1);
  OfferResult first = Offer(1, w);
  EXPECT_EQ(first.outcome, OfferOutcome::kPublished);
  const wire::DigestInput in[] = {{w.data(), w.size()}};
  EXPECT_EQ(first.hash, wire::ContentDigests(in, 1)[0]);  // the BLAKE3 tree by default
  EXPECT_EQ(index_.Lookup(first.hash), (std::vector<SharedId>{first.shared}));
  const uint64_t before = phys_.device_used();
  for (ClientId c : {2, 3, 4}) {
    OfferResult r = Offer(c, w);
    EXPECT_EQ(r.outcome, OfferOutcome::kAttached);
    EXPECT_EQ(r.shared, first.shared);
    EXPECT_EQ(r.collisions, 0u);
  }
  // Three chunks' worth of device memory went back; one copy serves four.
  EXPECT_EQ(phys_.device_used(), before - 3 * kChunk);
  EXPECT_EQ(layout_.shared(first.shared)->users, 4u);
  for (ClientId c : {1, 2, 3, 4}) {
    EXPECT_EQ(Read(c), w);
    EXPECT_EQ(*phys_.AccessAt(va_[c]), Access::kReadOnly);
    EXPECT_TRUE(layout_.chunk(chunk_[c])->is_shared());
    EXPECT_EQ(ledger_.Client(c).shared, kChunk);
    EXPECT_EQ(ledger_.Client(c).resident, 0u);
  }
  NodeUsage n = ledger_.Node();
  EXPECT_EQ(n.dedup_physical, kChunk);
  EXPECT_EQ(n.dedup_mapped, 4 * kChunk);
  EXPECT_EQ(n.dedup_saved, 3 * kChunk);
  DedupStats s = index_.stats();
  EXPECT_EQ(s.published, 1u);
  EXPECT_EQ(s.attached, 3u);
  EXPECT_EQ(s.entries, 1u);
  ExpectLedgerMatchesFake();
}

TEST_F(DedupTest, RefusesWhatItCannotShare) {
  const auto w = Pattern(2);
  index_.SetOptIn(4, false);
  EXPECT_EQ(index_.Offer(4, chunk_[4], w).status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(index_.Offer(1, chunk_[2], w).status().code(), absl::StatusCode::kInvalidArgument);
  const std::vector<uint8_t> part(w.begin(), w.begin() + 100);
  EXPECT_EQ(index_.Offer(1, chunk_[1], part).status().code(), absl::StatusCode::kInvalidArgument);
  Allocation small = *layout_.Allocate(1, 512);
  EXPECT_EQ(index_.Offer(1, small.chunks[0], std::vector<uint8_t>(4096)).status().code(),
            absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE(layout_.SwapOut(chunk_[3]).ok());
  EXPECT_EQ(index_.Offer(3, chunk_[3], w).status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(index_.stats().entries, 0u);
}

TEST_F(DedupTest, LastUserToFreeReleases) {
  const auto w = Pattern(3);
  const SharedId sid = Offer(1, w).shared;
  Offer(2, w);
  Offer(3, w);
  const size_t handles = phys_.live_handles();
  ASSERT_TRUE(layout_.Free(1, va_[1]).ok());  // the publisher goes first
  EXPECT_EQ(layout_.shared(sid)->users, 2u);
  EXPECT_EQ(Read(2), w);
  EXPECT_EQ(Read(3), w);
  ASSERT_TRUE(layout_.Free(2, va_[2]).ok());
  EXPECT_EQ(phys_.live_handles(), handles);   // still in use by client 3
  ASSERT_TRUE(layout_.RemoveClient(3).ok());  // a disconnect frees too
  EXPECT_EQ(layout_.shared(sid), nullptr);
  EXPECT_EQ(phys_.live_handles(), handles - 1);
  EXPECT_TRUE(index_.Lookup(DefaultContentHash(w)).empty());
  EXPECT_EQ(index_.stats().entries, 0u);
  EXPECT_EQ(ledger_.Node().dedup_physical, 0u);
  ExpectLedgerMatchesFake();
  // Content uploaded again after that is published afresh.
  EXPECT_EQ(Offer(4, w).outcome, OfferOutcome::kPublished);
}

TEST_F(DedupTest, WriteGivesTheWriterAPrivateCopy) {
  const auto w = Pattern(4);
  const SharedId sid = Offer(1, w).shared;
  Offer(2, w);
  Offer(3, w);
  const uint64_t creates = phys_.calls(Op::kCreate);

  absl::StatusOr<ChunkId> target = index_.BeginWrite(2, chunk_[2]);
  ASSERT_TRUE(target.ok()) << target.status();
  EXPECT_EQ(*target, chunk_[2]);  // same chunk, same addresses, new backing
  EXPECT_EQ(phys_.calls(Op::kCreate), creates + 1);
  EXPECT_FALSE(layout_.chunk(chunk_[2])->is_shared());
  EXPECT_EQ(*phys_.AccessAt(va_[2]), Access::kReadWrite);
  EXPECT_EQ(Read(2), w);  // the copy holds the shared bytes
  auto mine = w;
  mine[0] ^= 1;
  mine[kChunk - 1] ^= 1;
  ASSERT_TRUE(phys_.WriteVa(va_[2], mine).ok());
  EXPECT_EQ(Read(2), mine);
  EXPECT_EQ(Read(1), w);  // nobody else sees the write
  EXPECT_EQ(Read(3), w);
  EXPECT_EQ(layout_.shared(sid)->users, 2u);
  EXPECT_EQ(index_.stats().cow_copies, 1u);

  // A private chunk is written in place.
  EXPECT_EQ(*index_.BeginWrite(2, chunk_[2]), chunk_[2]);
  EXPECT_EQ(phys_.calls(Op::kCreate), creates + 1);

  // The last user takes the shared memory over without a copy.
  ASSERT_TRUE(index_.BeginWrite(1, chunk_[1]).ok());
  ASSERT_TRUE(index_.BeginWrite(3, chunk_[3]).ok());
  EXPECT_EQ(phys_.calls(Op::kCreate), creates + 2);
  EXPECT_EQ(index_.stats().cow_takeovers, 1u);
  EXPECT_EQ(layout_.shared(sid), nullptr);
  EXPECT_TRUE(index_.Lookup(DefaultContentHash(w)).empty());
  EXPECT_EQ(Read(3), w);
  EXPECT_EQ(index_.BeginWrite(1, chunk_[2]).status().code(), absl::StatusCode::kInvalidArgument);
  ExpectLedgerMatchesFake();
}

TEST_F(DedupTest, FailedCopyOnWriteLeavesTheChunkShared) {
  const auto w = Pattern(5);
  const SharedId sid = Offer(1, w).shared;
  Offer(2, w);
  for (Op op : {Op::kCreate, Op::kCopyDevice, Op::kUnmap, Op::kMap}) {
    SCOPED_TRACE(static_cast<int>(op));
    phys_.Fail(op);
    EXPECT_FALSE(index_.BeginWrite(2, chunk_[2]).ok());
    phys_.ClearFailures();
    EXPECT_TRUE(layout_.chunk(chunk_[2])->is_shared());
    EXPECT_EQ(layout_.shared(sid)->users, 2u);
    EXPECT_EQ(*phys_.AccessAt(va_[2]), Access::kReadOnly);
    EXPECT_EQ(Read(1), w);
    EXPECT_EQ(Read(2), w);
    ExpectLedgerMatchesFake();
  }
  // No room for the copy: ResourceExhausted, so the caller can evict.
  std::vector<uint64_t> hogs;
  while (ledger_.PhysicalFree() > 0) hogs.push_back(layout_.Allocate(4, 4096)->va);
  EXPECT_EQ(index_.BeginWrite(2, chunk_[2]).status().code(), absl::StatusCode::kResourceExhausted);
  ASSERT_TRUE(layout_.Free(4, hogs.back()).ok());
  ASSERT_TRUE(layout_.Free(4, hogs[hogs.size() - 2]).ok());
  ASSERT_TRUE(layout_.Free(4, hogs[hogs.size() - 3]).ok());
  ASSERT_TRUE(layout_.Free(4, hogs[hogs.size() - 4]).ok());
  EXPECT_TRUE(index_.BeginWrite(2, chunk_[2]).ok());
}

// What a kernel write into deduplicated memory meets: a read-only mapping.
// The fake refuses the write as the planned PROT_READ mapping would fault.
TEST_F(DedupTest, KernelWriteIntoASharedChunkFaults) {
  const auto w = Pattern(6);
  Offer(1, w);
  Offer(2, w);
  std::vector<uint8_t> evil(64, 0x41);
  EXPECT_EQ(phys_.WriteVa(va_[2] + 100, evil).code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(phys_.WriteVa(va_[1], evil).code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(Read(1), w);
  EXPECT_EQ(Read(2), w);
}

// A collision-forcing hasher: every chunk gets the same digest. Only the
// byte-exact compare stands between a tenant and someone else's content.
class DedupCollisionTest : public DedupTest {
 protected:
  DedupCollisionTest()
      : DedupTest({.hasher = [](std::span<const uint8_t>) { return ContentHash{}; },
                   .compare_step_bytes = 1000}) {}
};

TEST_F(DedupCollisionTest, EqualDigestsWithDifferentBytesAreNeverShared) {
  const auto x = Pattern(7);
  auto y = x;
  y[kChunk - 1] ^= 0x80;  // differs in the very last byte only
  const SharedId sx = Offer(1, x).shared;
  OfferResult ry = Offer(2, y);
  EXPECT_EQ(ry.outcome, OfferOutcome::kPublished);  // not attached to x
  EXPECT_NE(ry.shared, sx);
  EXPECT_EQ(ry.collisions, 1u);
  EXPECT_EQ(Read(1), x);
  EXPECT_EQ(Read(2), y);
  EXPECT_EQ(index_.Lookup(ContentHash{}).size(), 2u);

  // The byte compare still finds the identical one among equal digests.
  OfferResult rx = Offer(3, y);
  EXPECT_EQ(rx.outcome, OfferOutcome::kAttached);
  EXPECT_EQ(rx.shared, ry.shared);
  EXPECT_EQ(Read(3), y);
  EXPECT_EQ(index_.stats().collisions, 2u);  // y vs x twice
}

// With the real hash: an attacker publishes content first; a victim's
// different upload must not map onto it, and once the victim does map onto
// identical content, the attacker cannot change it under the victim.
TEST_F(DedupTest, ATenantCannotPlantContentForAnother) {
  const auto victim_weights = Pattern(8);
  auto planted = victim_weights;
  planted[12345] ^= 0xff;  // a backdoored copy
  const SharedId bad = Offer(1, planted).shared;
  OfferResult v = Offer(2, victim_weights);
  EXPECT_EQ(v.outcome, OfferOutcome::kPublished);
  EXPECT_NE(v.shared, bad);
  EXPECT_EQ(Read(2), victim_weights);

  // The attacker uploads the genuine weights too: byte-identical, so it
  // shares them, and learns nothing it did not already have.
  ASSERT_TRUE(layout_.Free(1, va_[1]).ok());
  Allocation again = *layout_.Allocate(1, kChunk);
  va_[1] = again.va;
  chunk_[1] = again.chunks[0];
  EXPECT_EQ(Offer(1, victim_weights).outcome, OfferOutcome::kAttached);
  // Its attempts to change the shared bytes: a kernel write faults, an API
  // write gets a private copy.
  EXPECT_FALSE(phys_.WriteVa(va_[1], planted).ok());
  ASSERT_TRUE(index_.BeginWrite(1, chunk_[1]).ok());
  ASSERT_TRUE(phys_.WriteVa(va_[1], planted).ok());
  EXPECT_EQ(Read(1), planted);
  EXPECT_EQ(Read(2), victim_weights);
  // Re-offering the planted bytes publishes them apart from the victim's.
  EXPECT_EQ(Offer(1, planted).outcome, OfferOutcome::kPublished);
  EXPECT_EQ(Read(2), victim_weights);
  // Later uploads of the genuine weights find the genuine copy.
  EXPECT_EQ(Offer(3, victim_weights).shared, v.shared);
  EXPECT_EQ(Read(3), victim_weights);
}

TEST_F(DedupTest, ReofferingASharedChunk) {
  const auto w = Pattern(9);
  const auto z = Pattern(10);
  const SharedId sid = Offer(1, w).shared;
  Offer(2, w);
  EXPECT_EQ(Offer(2, w).outcome, OfferOutcome::kAlreadyShared);
  // New contents for client 2's chunk: it leaves the shared chunk without a
  // copy (all of it is overwritten), and client 1 keeps w.
  const uint64_t copies = phys_.calls(Op::kCopyDevice);
  OfferResult r = Offer(2, z);
  EXPECT_EQ(r.outcome, OfferOutcome::kPublished);
  EXPECT_EQ(phys_.calls(Op::kCopyDevice), copies);
  EXPECT_EQ(layout_.shared(sid)->users, 1u);
  EXPECT_EQ(Read(1), w);
  EXPECT_EQ(Read(2), z);
  // The last user re-offering different content takes the memory over.
  EXPECT_EQ(Offer(1, z).outcome, OfferOutcome::kAttached);
  EXPECT_EQ(layout_.shared(sid), nullptr);
  EXPECT_EQ(Read(1), z);
  ExpectLedgerMatchesFake();
}

TEST_F(DedupTest, DeviceErrorsChangeNothing) {
  const auto w = Pattern(11);
  const SharedId sid = Offer(1, w).shared;
  // The byte compare cannot read the candidate: no sharing, an error.
  phys_.Fail(Op::kRead);
  EXPECT_FALSE(index_.Offer(2, chunk_[2], w).ok());
  EXPECT_FALSE(layout_.chunk(chunk_[2])->is_shared());
  EXPECT_EQ(layout_.shared(sid)->users, 1u);
  // Remapping onto the shared chunk fails: the chunk keeps its own memory.
  phys_.Fail(Op::kMap);
  EXPECT_FALSE(index_.Offer(2, chunk_[2], w).ok());
  EXPECT_FALSE(layout_.chunk(chunk_[2])->is_shared());
  EXPECT_EQ(*phys_.AccessAt(va_[2]), Access::kReadWrite);
  EXPECT_EQ(layout_.shared(sid)->users, 1u);
  // Publishing fails after the upload: the bytes are there, kept private.
  phys_.Fail(Op::kMap);
  absl::StatusOr<OfferResult> r = index_.Offer(3, chunk_[3], Pattern(12));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->outcome, OfferOutcome::kUploadedPrivate);
  EXPECT_EQ(Read(3), Pattern(12));
  EXPECT_EQ(*phys_.AccessAt(va_[3]), Access::kReadWrite);
  ExpectLedgerMatchesFake();
  // And everything works once the device does.
  EXPECT_EQ(Offer(2, w).outcome, OfferOutcome::kAttached);
  EXPECT_EQ(Read(2), w);
}

}  // namespace
}  // namespace wooly::memory
