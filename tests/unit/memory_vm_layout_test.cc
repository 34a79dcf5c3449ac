#include <cstdint>
#include <map>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "wooly/memory/fake_physical_memory.h"
#include "wooly/memory/overcommit.h"
#include "wooly/memory/vm_layout.h"

namespace wooly::memory {
namespace {

using Op = FakePhysicalMemory::Op;

// Small sizes so the byte-exact fake stays cheap: 4 KiB granules, 16 KiB
// chunks, small allocations up to 1 KiB in 4 KiB small chunks.
LayoutOptions TestOptions() {
  return {.granularity = 4096,
          .chunk_bytes = 16384,
          .small_max_bytes = 1024,
          .small_chunk_bytes = 4096,
          .small_alignment = 256,
          .client_va_bytes = uint64_t{1} << 20};
}

std::vector<uint8_t> Pattern(uint64_t seed, size_t n) {
  std::mt19937_64 rng(seed);
  std::vector<uint8_t> v(n);
  for (auto& b : v) b = static_cast<uint8_t>(rng());
  return v;
}

class VmLayoutTest : public ::testing::Test {
 protected:
  static constexpr uint64_t kPhysical = 64 * 1024;

  void SetUp() override {
    ASSERT_TRUE(ValidateLayoutOptions(TestOptions()).ok());
    ASSERT_TRUE(layout_.AddClient(1).ok());
    ASSERT_TRUE(layout_.AddClient(2).ok());
  }

  std::vector<uint8_t> Read(uint64_t va, size_t n) {
    std::vector<uint8_t> out(n);
    absl::Status s = phys_.ReadVa(va, out);
    EXPECT_TRUE(s.ok()) << s;
    return out;
  }

  void Write(uint64_t va, const std::vector<uint8_t>& bytes) {
    absl::Status s = phys_.WriteVa(va, bytes);
    ASSERT_TRUE(s.ok()) << s;
  }

  // The ledger's figures are exactly what the device and host pool hold.
  void ExpectLedgerMatchesFake() {
    EXPECT_EQ(ledger_.Node().physical_used, phys_.device_used());
    EXPECT_EQ(ledger_.Node().host_pool_used, phys_.host_used());
  }

  FakePhysicalMemory phys_{kPhysical, uint64_t{1} << 20};
  Overcommit ledger_{{.physical_bytes = kPhysical, .overcommit_percent = 100}};
  VmLayout layout_{TestOptions(), &phys_, &ledger_};
};

TEST_F(VmLayoutTest, OptionsAreValidated) {
  LayoutOptions o = TestOptions();
  o.granularity = 3000;
  EXPECT_FALSE(ValidateLayoutOptions(o).ok());
  o = TestOptions();
  o.chunk_bytes = 5000;
  EXPECT_FALSE(ValidateLayoutOptions(o).ok());
  o = TestOptions();
  o.small_max_bytes = o.small_chunk_bytes + 1;
  EXPECT_FALSE(ValidateLayoutOptions(o).ok());
  EXPECT_TRUE(ValidateLayoutOptions(LayoutOptions{}).ok());
  EXPECT_EQ(LayoutOptions{}.chunk_bytes, uint64_t{64} << 20);  // the default large chunk
}

TEST_F(VmLayoutTest, LargeAllocationIsCarvedIntoChunks) {
  absl::StatusOr<Allocation> a = layout_.Allocate(1, 40000);
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->charged, 40960u);  // rounded to the granularity
  ASSERT_EQ(a->chunks.size(), 3u);
  const uint64_t sizes[] = {16384, 16384, 8192};
  for (size_t i = 0; i < 3; ++i) {
    const ChunkInfo* c = layout_.chunk(a->chunks[i]);
    ASSERT_NE(c, nullptr);
    EXPECT_EQ(c->bytes, sizes[i]);
    EXPECT_EQ(c->va, a->va + 16384 * i);  // contiguous addresses
    EXPECT_EQ(c->kind, ChunkKind::kLarge);
    EXPECT_EQ(c->state, ChunkState::kResident);
    EXPECT_TRUE(std::holds_alternative<ResidentBacking>(c->backing));
    EXPECT_TRUE(phys_.IsMapped(c->va));
    EXPECT_EQ(*phys_.AccessAt(c->va), Access::kReadWrite);
  }
  EXPECT_EQ(a->va % 4096, 0u);
  EXPECT_GE(a->va, *layout_.ClientBase(1));
  EXPECT_EQ(ledger_.Client(1).allocated, 40960u);
  EXPECT_EQ(ledger_.Client(1).resident, 40960u);
  ExpectLedgerMatchesFake();

  // An allocation spanning chunks reads and writes as one range.
  auto bytes = Pattern(1, 40000);
  Write(a->va, bytes);
  EXPECT_EQ(Read(a->va, 40000), bytes);

  ASSERT_TRUE(layout_.Free(1, a->va).ok());
  EXPECT_EQ(phys_.live_handles(), 0u);
  EXPECT_EQ(phys_.live_mappings(), 0u);
  EXPECT_EQ(ledger_.Client(1).allocated, 0u);
  EXPECT_EQ(ledger_.Client(1).resident, 0u);
  ExpectLedgerMatchesFake();
  EXPECT_EQ(layout_.Free(1, a->va).code(), absl::StatusCode::kNotFound);
}

TEST_F(VmLayoutTest, SmallAllocationsShareOneChunk) {
  std::vector<Allocation> small;
  for (int i = 0; i < 4; ++i) {
    absl::StatusOr<Allocation> a = layout_.Allocate(1, 100 + i);
    ASSERT_TRUE(a.ok()) << a.status();
    EXPECT_EQ(a->charged, 256u);
    EXPECT_EQ(a->va % 256, 0u);
    small.push_back(*a);
  }
  for (const Allocation& a : small) EXPECT_EQ(a.chunks, small[0].chunks);
  const ChunkInfo* c = layout_.chunk(small[0].chunks[0]);
  EXPECT_EQ(c->kind, ChunkKind::kSmall);
  EXPECT_EQ(c->bytes, 4096u);
  EXPECT_EQ(phys_.live_handles(), 1u);
  EXPECT_EQ(layout_.PhysicalNeededFor(1, 100), 0u);  // fits the shared chunk
  EXPECT_EQ(ledger_.Client(1).allocated, 4 * 256u);
  EXPECT_EQ(ledger_.Client(1).resident, 4096u);  // the whole small chunk is resident

  // Alignment beyond the default is honoured.
  absl::StatusOr<Allocation> aligned = layout_.Allocate(1, 64, 2048);
  ASSERT_TRUE(aligned.ok());
  EXPECT_EQ(aligned->va % 2048, 0u);

  // A chunk's worth of small allocations opens a second small chunk.
  std::vector<Allocation> more;
  for (int i = 0; i < 16; ++i) more.push_back(*layout_.Allocate(1, 256));
  EXPECT_EQ(phys_.live_handles(), 2u);

  // Freed neighbours coalesce; the chunk goes when its last allocation does.
  for (const Allocation& a : small) ASSERT_TRUE(layout_.Free(1, a.va).ok());
  ASSERT_TRUE(layout_.Free(1, aligned->va).ok());
  for (const Allocation& a : more) ASSERT_TRUE(layout_.Free(1, a.va).ok());
  EXPECT_EQ(phys_.live_handles(), 0u);
  EXPECT_EQ(ledger_.Client(1).allocated, 0u);
  ExpectLedgerMatchesFake();
}

TEST_F(VmLayoutTest, LookupsResolveAddresses) {
  Allocation a = *layout_.Allocate(1, 40960);
  auto r = layout_.Resolve(1, a.va + 16384 + 5);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->first, a.chunks[1]);
  EXPECT_EQ(r->second, 5u);
  EXPECT_FALSE(layout_.Resolve(2, a.va).ok());  // not client 2's
  EXPECT_EQ(layout_.FindAllocation(1, a.va + 40959)->va, a.va);
  EXPECT_FALSE(layout_.FindAllocation(1, a.va + 40960));
  auto covering = layout_.ChunksCovering(1, a.va + 16000, 1000);
  ASSERT_TRUE(covering.ok());
  EXPECT_EQ(*covering, (std::vector<ChunkId>{a.chunks[0], a.chunks[1]}));
  EXPECT_FALSE(layout_.ChunksCovering(1, a.va + 40000, 1000).ok());  // runs past the end
  EXPECT_FALSE(layout_.ChunksCovering(2, a.va, 1).ok());
  EXPECT_EQ(layout_.ClientChunks(1), a.chunks);
  EXPECT_TRUE(layout_.ClientChunks(2).empty());
}

TEST_F(VmLayoutTest, RefusalsChangeNothing) {
  EXPECT_EQ(layout_.Allocate(1, 0).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(layout_.Allocate(1, 100, 3).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(layout_.Allocate(9, 100).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(layout_.AddClient(1).code(), absl::StatusCode::kAlreadyExists);
  // Physical memory short: ResourceExhausted, admission given back.
  EXPECT_EQ(layout_.Allocate(1, kPhysical + 4096).status().code(),
            absl::StatusCode::kResourceExhausted);
  // Beyond admission (128 KiB): ResourceExhausted.
  ASSERT_TRUE(layout_.Allocate(1, kPhysical).ok());
  EXPECT_EQ(layout_.Allocate(2, kPhysical + 4096).status().code(),
            absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(ledger_.Node().allocated, kPhysical);
  EXPECT_EQ(layout_.Allocate(1, uint64_t{1} << 21).status().code(),
            absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(layout_.Allocate(1, UINT64_MAX).status().code(), absl::StatusCode::kResourceExhausted);
  ExpectLedgerMatchesFake();
}

TEST_F(VmLayoutTest, FailedAllocationRollsBackEveryChunk) {
  for (Op op : {Op::kCreate, Op::kMap}) {
    SCOPED_TRACE(static_cast<int>(op));
    phys_.Fail(op, /*after=*/2);  // the third chunk fails
    absl::StatusOr<Allocation> a = layout_.Allocate(1, 40960);
    EXPECT_FALSE(a.ok());
    EXPECT_EQ(phys_.live_handles(), 0u);
    EXPECT_EQ(phys_.live_mappings(), 0u);
    EXPECT_EQ(ledger_.Client(1).allocated, 0u);
    EXPECT_EQ(ledger_.Client(1).resident, 0u);
    EXPECT_TRUE(layout_.ClientChunks(1).empty());
    ExpectLedgerMatchesFake();
  }
  // The addresses were given back: the next allocation gets the same start.
  Allocation first = *layout_.Allocate(1, 40960);
  ASSERT_TRUE(layout_.Free(1, first.va).ok());
  EXPECT_EQ(layout_.Allocate(1, 40960)->va, first.va);
}

// The core promise: a pointer stays valid across swap-out and swap-in, and
// every byte comes back.
TEST_F(VmLayoutTest, AddressesAndBytesSurviveSwapCycles) {
  Allocation big = *layout_.Allocate(1, 40960);
  Allocation tiny = *layout_.Allocate(1, 300);
  auto bytes = Pattern(7, 40960);
  auto tiny_bytes = Pattern(8, 300);
  Write(big.va, bytes);
  Write(tiny.va, tiny_bytes);
  std::vector<ChunkId> all = layout_.ClientChunks(1);
  ASSERT_EQ(all.size(), 4u);

  for (int cycle = 0; cycle < 3; ++cycle) {
    for (ChunkId id : all) ASSERT_TRUE(layout_.SwapOut(id).ok());
    EXPECT_EQ(phys_.device_used(), 0u);
    EXPECT_FALSE(phys_.IsMapped(big.va));  // the client's next command must swap in
    EXPECT_EQ(ledger_.Client(1).resident, 0u);
    EXPECT_EQ(ledger_.Client(1).swapped_out, 40960u + 4096u);
    EXPECT_EQ(layout_.chunk(all[0])->state, ChunkState::kSwapped);
    ExpectLedgerMatchesFake();
    for (ChunkId id : all) ASSERT_TRUE(layout_.SwapIn(id).ok());
    EXPECT_EQ(layout_.chunk(all[0])->va, big.va);  // same address
    EXPECT_EQ(Read(big.va, bytes.size()), bytes);
    EXPECT_EQ(Read(tiny.va, tiny_bytes.size()), tiny_bytes);
    // Change some bytes before the next cycle.
    bytes[cycle * 1000] ^= 0xff;
    Write(big.va, bytes);
  }
  NodeUsage n = ledger_.Node();
  EXPECT_EQ(n.swap_outs, 12u);
  EXPECT_EQ(n.swap_ins, 12u);
  EXPECT_EQ(n.swap_out_bytes, 3 * (40960u + 4096u));
  EXPECT_EQ(n.swap_in_bytes, n.swap_out_bytes);
  EXPECT_EQ(phys_.live_slots(), 0u);
  ExpectLedgerMatchesFake();
}

TEST_F(VmLayoutTest, WrongStateTransitionsAreRefused) {
  Allocation a = *layout_.Allocate(1, 16384);
  ChunkId id = a.chunks[0];
  EXPECT_EQ(layout_.BeginSwapIn(id).status().code(), absl::StatusCode::kFailedPrecondition);
  absl::StatusOr<SwapTicket> t = layout_.BeginSwapOut(id);
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(layout_.chunk(id)->state, ChunkState::kSwappingOut);
  EXPECT_EQ(layout_.BeginSwapOut(id).status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(layout_.BeginSwapIn(id).status().code(), absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE(layout_.FinishSwap(*t, layout_.RunCopy(*t)).ok());
  EXPECT_EQ(layout_.FinishSwap(*t, absl::OkStatus()).code(),
            absl::StatusCode::kFailedPrecondition);  // stale ticket
  EXPECT_EQ(layout_.BeginSwapOut(id).status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(layout_.BeginSwapOut(9999).status().code(), absl::StatusCode::kNotFound);
}

TEST_F(VmLayoutTest, SwapInNeedsPhysicalRoom) {
  Allocation a = *layout_.Allocate(1, 32768);
  ASSERT_TRUE(layout_.SwapOut(a.chunks[0]).ok());
  Allocation b = *layout_.Allocate(2, 49152);  // fills the device
  EXPECT_EQ(ledger_.PhysicalFree(), 0u);
  EXPECT_EQ(layout_.BeginSwapIn(a.chunks[0]).status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(layout_.chunk(a.chunks[0])->state, ChunkState::kSwapped);
  ASSERT_TRUE(layout_.SwapOut(b.chunks[0]).ok());
  EXPECT_TRUE(layout_.SwapIn(a.chunks[0]).ok());
  ExpectLedgerMatchesFake();
}

// Every failure point of both transitions: the chunk ends in the state it
// started in, no byte is lost, and nothing the transition made is leaked.
TEST_F(VmLayoutTest, SwapTransitionsAreAllOrNothing) {
  Allocation a = *layout_.Allocate(1, 16384);
  Allocation other = *layout_.Allocate(2, 16384);
  const ChunkId id = a.chunks[0];
  const auto bytes = Pattern(3, 16384);
  const auto other_bytes = Pattern(4, 16384);
  Write(a.va, bytes);
  Write(other.va, other_bytes);

  for (Op op : {Op::kAllocHost, Op::kCopyToHost, Op::kUnmap}) {
    SCOPED_TRACE(static_cast<int>(op));
    phys_.Fail(op);
    EXPECT_FALSE(layout_.SwapOut(id).ok());
    phys_.ClearFailures();
    const ChunkInfo* c = layout_.chunk(id);
    EXPECT_EQ(c->state, ChunkState::kResident);
    EXPECT_EQ(c->pending_slot, 0u);
    EXPECT_EQ(phys_.live_slots(), 0u);
    EXPECT_EQ(Read(a.va, bytes.size()), bytes);
    EXPECT_EQ(ledger_.Client(1).resident, 16384u);
    EXPECT_EQ(ledger_.Client(1).swapped_out, 0u);
    ExpectLedgerMatchesFake();
  }
  ASSERT_TRUE(layout_.SwapOut(id).ok());
  const HostSlot slot = std::get<SwappedBacking>(layout_.chunk(id)->backing).slot;
  EXPECT_EQ(phys_.SlotBytes(slot), bytes);

  for (Op op : {Op::kCreate, Op::kCopyFromHost, Op::kMap}) {
    SCOPED_TRACE(static_cast<int>(op));
    phys_.Fail(op);
    EXPECT_FALSE(layout_.SwapIn(id).ok());
    phys_.ClearFailures();
    const ChunkInfo* c = layout_.chunk(id);
    EXPECT_EQ(c->state, ChunkState::kSwapped);
    EXPECT_EQ(c->pending_handle, 0u);
    EXPECT_EQ(std::get<SwappedBacking>(c->backing).slot, slot);
    EXPECT_EQ(phys_.SlotBytes(slot), bytes);  // the only copy, untouched
    EXPECT_FALSE(phys_.IsMapped(a.va));
    EXPECT_EQ(phys_.live_handles(), 1u);  // only the other client's
    EXPECT_EQ(ledger_.Client(1).swapped_out, 16384u);
    ExpectLedgerMatchesFake();
  }
  ASSERT_TRUE(layout_.SwapIn(id).ok());
  EXPECT_EQ(Read(a.va, bytes.size()), bytes);
  EXPECT_EQ(Read(other.va, other_bytes.size()), other_bytes);
  EXPECT_EQ(phys_.live_slots(), 0u);
  ExpectLedgerMatchesFake();
}

// Failures after the commit point only leak (and count) a resource; the
// bytes are safe in their new home.
TEST_F(VmLayoutTest, FailuresAfterTheCommitPointKeepTheBytes) {
  Allocation a = *layout_.Allocate(1, 16384);
  const auto bytes = Pattern(5, 16384);
  Write(a.va, bytes);
  phys_.Fail(Op::kRelease);
  ASSERT_TRUE(layout_.SwapOut(a.chunks[0]).ok());
  EXPECT_EQ(layout_.chunk(a.chunks[0])->state, ChunkState::kSwapped);
  EXPECT_EQ(ledger_.Node().teardown_errors, 1u);
  ExpectLedgerMatchesFake();  // the leaked handle is still counted
  phys_.Fail(Op::kFreeHost);
  ASSERT_TRUE(layout_.SwapIn(a.chunks[0]).ok());
  EXPECT_EQ(Read(a.va, bytes.size()), bytes);
  EXPECT_EQ(ledger_.Node().teardown_errors, 2u);
  ExpectLedgerMatchesFake();
}

// A tenant killed while one of its chunks is being swapped out: the chunk is
// orphaned, the copy finishes, both copies are freed, and another tenant's
// swap in flight at the same time keeps every byte.
TEST_F(VmLayoutTest, KillMidSwapOutFreesTheVictimOnly) {
  Allocation a = *layout_.Allocate(1, 32768);
  Allocation b = *layout_.Allocate(2, 16384);
  const auto a_bytes = Pattern(10, 32768);
  const auto b_bytes = Pattern(11, 16384);
  Write(a.va, a_bytes);
  Write(b.va, b_bytes);
  absl::StatusOr<SwapTicket> ta = layout_.BeginSwapOut(a.chunks[0]);
  absl::StatusOr<SwapTicket> tb = layout_.BeginSwapOut(b.chunks[0]);
  ASSERT_TRUE(ta.ok() && tb.ok());
  const absl::Status copy_b = layout_.RunCopy(*tb);  // B's copy done, A's in flight

  ASSERT_TRUE(layout_.RemoveClient(1).ok());
  EXPECT_FALSE(layout_.HasClient(1));
  EXPECT_EQ(layout_.orphans(), 1u);
  EXPECT_TRUE(layout_.chunk(a.chunks[0])->orphaned);
  EXPECT_EQ(layout_.chunk(a.chunks[1]), nullptr);  // freed at once
  EXPECT_EQ(ledger_.Client(1).allocated, 0u);
  EXPECT_EQ(phys_.live_reservations(), 2u);  // A's range waits for the orphan
  EXPECT_EQ(layout_.AddClient(1).code(), absl::StatusCode::kAlreadyExists);

  EXPECT_TRUE(layout_.RunCopy(*ta).ok());  // the copy in flight completes
  EXPECT_EQ(layout_.FinishSwap(*ta, absl::OkStatus()).code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(layout_.orphans(), 0u);
  EXPECT_EQ(phys_.live_reservations(), 1u);
  EXPECT_EQ(phys_.live_handles(), 1u);  // B's
  EXPECT_EQ(phys_.live_slots(), 1u);    // B's, in flight

  ASSERT_TRUE(layout_.FinishSwap(*tb, copy_b).ok());
  ASSERT_TRUE(layout_.SwapIn(b.chunks[0]).ok());
  EXPECT_EQ(Read(b.va, b_bytes.size()), b_bytes);
  ExpectLedgerMatchesFake();

  // The tenant restarts under the same id and works.
  ASSERT_TRUE(layout_.AddClient(1).ok());
  Allocation again = *layout_.Allocate(1, 32768);
  Write(again.va, a_bytes);
  EXPECT_EQ(Read(again.va, a_bytes.size()), a_bytes);
  ExpectLedgerMatchesFake();
}

TEST_F(VmLayoutTest, KillMidSwapInFreesTheVictimOnly) {
  Allocation a = *layout_.Allocate(1, 16384);
  Allocation b = *layout_.Allocate(2, 16384);
  const auto b_bytes = Pattern(21, 16384);
  Write(a.va, Pattern(20, 16384));
  Write(b.va, b_bytes);
  ASSERT_TRUE(layout_.SwapOut(a.chunks[0]).ok());
  ASSERT_TRUE(layout_.SwapOut(b.chunks[0]).ok());
  absl::StatusOr<SwapTicket> ta = layout_.BeginSwapIn(a.chunks[0]);
  absl::StatusOr<SwapTicket> tb = layout_.BeginSwapIn(b.chunks[0]);
  ASSERT_TRUE(ta.ok() && tb.ok());
  ASSERT_TRUE(layout_.RemoveClient(1).ok());
  // The victim's copy fails as it is torn down; still only its memory goes.
  EXPECT_EQ(layout_.FinishSwap(*ta, absl::AbortedError("killed")).code(),
            absl::StatusCode::kCancelled);
  ASSERT_TRUE(layout_.FinishSwap(*tb, layout_.RunCopy(*tb)).ok());
  EXPECT_EQ(Read(b.va, b_bytes.size()), b_bytes);
  EXPECT_EQ(phys_.live_handles(), 1u);
  EXPECT_EQ(phys_.live_slots(), 0u);
  EXPECT_EQ(phys_.live_reservations(), 1u);
  ExpectLedgerMatchesFake();
}

TEST_F(VmLayoutTest, FreeMidSwapDefersTheAddressesOnly) {
  Allocation a = *layout_.Allocate(1, 32768);
  absl::StatusOr<SwapTicket> t = layout_.BeginSwapOut(a.chunks[1]);
  ASSERT_TRUE(t.ok());
  ASSERT_TRUE(layout_.Free(1, a.va).ok());
  EXPECT_EQ(ledger_.Client(1).allocated, 0u);
  EXPECT_EQ(ledger_.Client(1).resident, 0u);
  // The range is still mapped for the copy in flight: not handed out again.
  Allocation b = *layout_.Allocate(1, 32768);
  EXPECT_NE(b.va, a.va);
  EXPECT_EQ(layout_.FinishSwap(*t, layout_.RunCopy(*t)).code(), absl::StatusCode::kCancelled);
  ASSERT_TRUE(layout_.Free(1, b.va).ok());
  EXPECT_EQ(layout_.Allocate(1, 32768)->va, a.va);  // reusable once the orphan is gone
  ExpectLedgerMatchesFake();
}

// Random writes, swaps and injected failures across three tenants, checked
// byte for byte against a shadow copy.
TEST(VmLayoutRandomTest, RandomSwapsWithFailuresLoseNoByte) {
  FakePhysicalMemory phys_(uint64_t{256} << 10, uint64_t{1} << 20);
  Overcommit ledger_({.physical_bytes = uint64_t{256} << 10, .overcommit_percent = 0});
  VmLayout layout_(TestOptions(), &phys_, &ledger_);
  auto Write = [&](uint64_t va, const std::vector<uint8_t>& bytes) {
    ASSERT_TRUE(phys_.WriteVa(va, bytes).ok());
  };
  auto Read = [&](uint64_t va, size_t n) {
    std::vector<uint8_t> out(n);
    EXPECT_TRUE(phys_.ReadVa(va, out).ok());
    return out;
  };
  for (ClientId c : {1, 2, 3}) ASSERT_TRUE(layout_.AddClient(c).ok());
  std::mt19937_64 rng(1234);
  struct Region {
    ClientId client;
    Allocation alloc;
    std::vector<uint8_t> shadow;
  };
  std::vector<Region> regions;
  for (ClientId c : {1, 2, 3}) {
    for (uint64_t size : {20000u, 700u, 300u}) {
      Allocation a = *layout_.Allocate(c, size);
      regions.push_back({c, a, Pattern(rng(), size)});
      Write(a.va, regions.back().shadow);
    }
  }
  const Op out_ops[] = {Op::kAllocHost, Op::kCopyToHost, Op::kUnmap, Op::kRelease};
  const Op in_ops[] = {Op::kCreate, Op::kCopyFromHost, Op::kMap, Op::kFreeHost};
  auto all_chunks = [&] {
    std::vector<ChunkId> ids;
    for (ClientId c : {1, 2, 3}) {
      for (ChunkId id : layout_.ClientChunks(c)) ids.push_back(id);
    }
    return ids;
  };
  int failures = 0;
  for (int step = 0; step < 600; ++step) {
    std::vector<ChunkId> ids = all_chunks();
    ChunkId id = ids[rng() % ids.size()];
    const bool inject = rng() % 4 == 0;
    switch (rng() % 3) {
      case 0:
        if (layout_.chunk(id)->state != ChunkState::kResident) break;
        if (inject) phys_.Fail(out_ops[rng() % 4]);
        if (!layout_.SwapOut(id).ok()) ++failures;
        break;
      case 1:
        if (layout_.chunk(id)->state != ChunkState::kSwapped) break;
        if (inject) phys_.Fail(in_ops[rng() % 4]);
        if (!layout_.SwapIn(id).ok()) ++failures;
        break;
      case 2: {
        Region& r = regions[rng() % regions.size()];
        bool mapped = true;
        const std::vector<ChunkId> covering =
            *layout_.ChunksCovering(r.client, r.alloc.va, r.alloc.bytes);
        for (ChunkId cid : covering) {
          if (layout_.chunk(cid)->state == ChunkState::kSwapped) {
            mapped = mapped && layout_.SwapIn(cid).ok();
          }
        }
        if (!mapped) break;
        uint64_t off = rng() % r.alloc.bytes;
        uint64_t n = 1 + rng() % (r.alloc.bytes - off);
        auto bytes = Pattern(rng(), n);
        std::copy(bytes.begin(), bytes.end(), r.shadow.begin() + static_cast<long>(off));
        Write(r.alloc.va + off, bytes);
        break;
      }
    }
    phys_.ClearFailures();
    ASSERT_EQ(ledger_.Node().physical_used, phys_.device_used()) << "step " << step;
    ASSERT_EQ(ledger_.Node().host_pool_used, phys_.host_used()) << "step " << step;
  }
  EXPECT_GT(failures, 0);
  for (ChunkId id : all_chunks()) {
    if (layout_.chunk(id)->state == ChunkState::kSwapped) {
      ASSERT_TRUE(layout_.SwapIn(id).ok());
    }
  }
  for (const Region& r : regions) EXPECT_EQ(Read(r.alloc.va, r.shadow.size()), r.shadow);
  for (ClientId c : {1, 2, 3}) ASSERT_TRUE(layout_.RemoveClient(c).ok());
  EXPECT_EQ(phys_.live_mappings(), 0u);
  EXPECT_EQ(phys_.live_reservations(), 0u);
  // Only leaked (and counted) resources remain.
  EXPECT_EQ(ledger_.Node().physical_used, phys_.device_used());
  EXPECT_EQ(ledger_.Node().host_pool_used, phys_.host_used());
  EXPECT_EQ(phys_.live_handles() + phys_.live_slots() > 0, ledger_.Node().teardown_errors > 0);
}

}  // namespace
}  // namespace wooly::memory
