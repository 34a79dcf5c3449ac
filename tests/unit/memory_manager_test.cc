// End-to-end bookkeeping scenarios of issue #6 on the byte-exact fake: the
// three-tenant overcommit (in miniature), tenants killed mid-swap, the
// priority rules, and four tenants loading the same weights.
#include "wooly/memory/memory_manager.h"

#include <cstdint>
#include <map>
#include <random>
#include <vector>

#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "wooly/memory/fake_physical_memory.h"

namespace wooly::memory {
namespace {

using Op = FakePhysicalMemory::Op;
constexpr uint64_t kChunk = 16384;
constexpr uint64_t kPhysical = 80 * kChunk;  // "80 GiB"
constexpr uint64_t kAlloc = 8 * kChunk;      // one "tensor arena"

MemoryManagerOptions TestOptions() {
  MemoryManagerOptions o;
  o.layout = {.granularity = 4096,
              .chunk_bytes = kChunk,
              .small_max_bytes = 1024,
              .small_chunk_bytes = 4096,
              .small_alignment = 256,
              .client_va_bytes = uint64_t{16} << 20};
  o.overcommit = {.physical_bytes = kPhysical, .overcommit_percent = 25};  // admits 100 chunks
  o.swap = {.idle_threshold = absl::Milliseconds(500)};
  return o;
}

std::vector<uint8_t> Pattern(uint64_t seed, size_t n) {
  std::mt19937_64 rng(seed);
  std::vector<uint8_t> v(n);
  for (auto& b : v) b = static_cast<uint8_t>(rng());
  return v;
}

class MemoryManagerTest : public ::testing::Test {
 protected:
  struct Region {
    uint64_t va;
    std::vector<uint8_t> shadow;
  };

  // A tenant holding `arenas` allocations of kAlloc, filled with its pattern.
  void StartTenant(ClientId c, int arenas, ClientOptions options = {}) {
    ASSERT_TRUE(mgr_.AddClient(c, options).ok());
    for (int i = 0; i < arenas; ++i) {
      absl::StatusOr<Allocation> a = mgr_.Allocate(c, kAlloc);
      ASSERT_TRUE(a.ok()) << a.status();
      regions_[c].push_back({a->va, Pattern(c * 1000 + i, kAlloc)});
      ASSERT_TRUE(mgr_.PrepareWrite(c, a->va, kAlloc).ok());
      ASSERT_TRUE(phys_.WriteVa(a->va, regions_[c].back().shadow).ok());
    }
  }

  // One turn: the tenant's kernel needs all its memory; it reads every byte
  // and changes a few.
  void Turn(ClientId c, uint64_t seed) {
    now_ += absl::Seconds(1);
    absl::Status s = mgr_.BeginKernel(c);
    ASSERT_TRUE(s.ok()) << s;
    for (ChunkId id : mgr_.layout().ClientChunks(c)) {
      ASSERT_EQ(mgr_.layout().chunk(id)->state, ChunkState::kResident);
    }
    CheckBytes(c);
    Region& r = regions_[c][seed % regions_[c].size()];
    auto bytes = Pattern(seed, 100);
    const uint64_t off = (seed * 7919) % (kAlloc - 100);
    std::copy(bytes.begin(), bytes.end(), r.shadow.begin() + static_cast<long>(off));
    ASSERT_TRUE(mgr_.PrepareWrite(c, r.va + off, 100).ok());
    ASSERT_TRUE(phys_.WriteVa(r.va + off, bytes).ok());
    mgr_.EndCommand(c);
  }

  void CheckBytes(ClientId c) {
    for (const Region& r : regions_[c]) {
      std::vector<uint8_t> out(r.shadow.size());
      ASSERT_TRUE(phys_.ReadVa(r.va, out).ok());
      ASSERT_EQ(out, r.shadow) << "client " << c << " lost bytes at " << r.va;
    }
  }

  int ResidentChunks(ClientId c) {
    int n = 0;
    for (ChunkId id : mgr_.layout().ClientChunks(c)) {
      n += mgr_.layout().chunk(id)->state == ChunkState::kResident;
    }
    return n;
  }

  void ExpectLedgerMatchesFake() {
    EXPECT_EQ(mgr_.Node().physical_used, phys_.device_used());
    EXPECT_EQ(mgr_.Node().host_pool_used, phys_.host_used());
  }

  absl::Time now_ = absl::UnixEpoch() + absl::Hours(1);
  FakePhysicalMemory phys_{kPhysical, uint64_t{64} << 20};
  MemoryManager mgr_{TestOptions(), &phys_, [this] { return now_; }};
  std::map<ClientId, std::vector<Region>> regions_;
};

// Three tenants of 32 chunks each on 80 chunks of device memory take turns;
// each turn swaps in only the running tenant's memory, and every byte of
// every tenant survives.
TEST_F(MemoryManagerTest, ThreeTenantsTakeTurnsOnAnOvercommittedDevice) {
  for (ClientId c : {1, 2, 3}) {
    StartTenant(c, 4);
    now_ += absl::Seconds(1);
  }
  NodeUsage n = mgr_.Node();
  EXPECT_EQ(n.allocated, 96 * kChunk);
  EXPECT_EQ(n.overcommitted, 16 * kChunk);
  EXPECT_LE(n.physical_used, kPhysical);
  EXPECT_EQ(mgr_.Usage(1).swapped_out, 16 * kChunk);  // idle longest: evicted first
  EXPECT_EQ(mgr_.Usage(2).swapped_out, 0u);

  uint64_t seed = 1;
  for (int round = 0; round < 4; ++round) {
    for (ClientId c : {1, 2, 3}) {
      std::map<ClientId, int> before;
      for (ClientId o : {1, 2, 3}) before[o] = ResidentChunks(o);
      const uint64_t swapped_in = mgr_.Node().swap_in_bytes;
      ASSERT_NO_FATAL_FAILURE(Turn(c, seed++));
      // Only the running tenant's chunks came in, and no more than it has.
      EXPECT_LE(mgr_.Node().swap_in_bytes - swapped_in, 32 * kChunk);
      for (ClientId o : {1, 2, 3}) {
        if (o != c) {
          EXPECT_LE(ResidentChunks(o), before[o]);
        }
      }
      EXPECT_LE(mgr_.Node().physical_used, kPhysical);
      ExpectLedgerMatchesFake();
    }
  }
  for (ClientId c : {1, 2, 3}) {
    ClientUsage u = mgr_.Usage(c);
    EXPECT_EQ(u.allocated, 32 * kChunk);
    EXPECT_EQ(u.resident + u.swapped_out, 32 * kChunk);
    ASSERT_TRUE(mgr_.BeginKernel(c).ok());
    CheckBytes(c);
    mgr_.EndCommand(c);
  }
  n = mgr_.Node();
  EXPECT_GT(n.swap_ins, 0u);
  EXPECT_GT(n.swap_out_bytes, 0u);
  EXPECT_EQ(n.teardown_errors, 0u);
}

TEST_F(MemoryManagerTest, OverTheAdmissionLimitIsOomAndEvictsNothing) {
  for (ClientId c : {1, 2, 3}) {
    StartTenant(c, 4);
    now_ += absl::Seconds(1);
  }
  ASSERT_TRUE(mgr_.Allocate(3, 4 * kChunk).ok());  // 100 chunks: exactly the limit
  const uint64_t swap_outs = mgr_.Node().swap_outs;
  absl::StatusOr<Allocation> oom = mgr_.Allocate(2, 4096);
  EXPECT_EQ(oom.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(mgr_.Node().swap_outs, swap_outs);
  EXPECT_EQ(mgr_.Node().allocated, 100 * kChunk);
  // A client allowed to overcommit further gets past the server's limit.
  ASSERT_TRUE(mgr_.AddClient(4, {.overcommit_percent = 50}).ok());
  EXPECT_TRUE(mgr_.Allocate(4, 4096).ok());
}

TEST_F(MemoryManagerTest, NothingEvictableIsOom) {
  StartTenant(1, 5, {.policy = {.priority = 4, .noswap = true}});  // 40 chunks
  StartTenant(2, 5, {.policy = {.priority = 4}});                  // 40 chunks
  ASSERT_TRUE(mgr_.BeginKernel(2).ok());  // busy: its kernels use its memory
  ASSERT_TRUE(mgr_.AddClient(3, {.policy = {.priority = 0}}).ok());
  now_ += absl::Hours(1);
  EXPECT_EQ(mgr_.Allocate(3, kChunk).status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(mgr_.Node().swap_outs, 0u);
  EXPECT_EQ(mgr_.Usage(3).allocated, 0u);
  mgr_.EndCommand(2);
  now_ += absl::Seconds(1);
  EXPECT_TRUE(mgr_.Allocate(3, kChunk).ok());  // 2 is idle now
  EXPECT_EQ(mgr_.Usage(1).swapped_out, 0u);    // noswap, even at lowest priority
  CheckBytes(1);
}

TEST_F(MemoryManagerTest, ActiveHigherPriorityIsNotEvictedForLowerPriority) {
  StartTenant(1, 5, {.policy = {.priority = 0}});
  StartTenant(2, 5, {.policy = {.priority = 3}});
  // Both just ran (active, not busy). The low-priority one cannot push the
  // high-priority one out ...
  ASSERT_TRUE(mgr_.BeginKernel(1).ok());
  mgr_.EndCommand(1);
  ASSERT_TRUE(mgr_.AddClient(3, {.policy = {.priority = 3}}).ok());
  absl::StatusOr<Allocation> low = mgr_.Allocate(3, 2 * kAlloc);
  ASSERT_TRUE(low.ok()) << low.status();  // it may take its peer's (same priority) memory
  EXPECT_EQ(mgr_.Usage(1).swapped_out, 0u);
  EXPECT_EQ(mgr_.Usage(2).swapped_out, 2 * kAlloc);
  // ... and when only the high-priority tenant's memory is left, it fails.
  ASSERT_TRUE(mgr_.BeginKernel(2).ok());  // takes its memory back from 3 (same priority)
  mgr_.EndCommand(2);
  ASSERT_TRUE(mgr_.BeginKernel(3).ok());
  mgr_.EndCommand(3);
  // (4 and 5 may overcommit the node further, so admission is not what stops
  // them.)
  ASSERT_TRUE(mgr_.AddClient(4, {.policy = {.priority = 2}, .overcommit_percent = 100}).ok());
  ASSERT_TRUE(mgr_.BeginKernel(1).ok());
  mgr_.EndCommand(1);
  ASSERT_TRUE(mgr_.PrepareWrite(3, low->va, 1).ok());
  // Client 4 (priority 2) may evict 2 and 3 (priority 3) but never 1 (0).
  const uint64_t evictable = mgr_.Usage(2).resident + mgr_.Usage(3).resident;
  const uint64_t free = mgr_.ledger().PhysicalFree();
  EXPECT_EQ(mgr_.Allocate(4, free + evictable + kChunk).status().code(),
            absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(mgr_.Usage(1).swapped_out, 0u);
  // A high-priority newcomer evicts active lower-priority tenants.
  ASSERT_TRUE(mgr_.AddClient(5, {.policy = {.priority = 1}, .overcommit_percent = 100}).ok());
  EXPECT_TRUE(mgr_.Allocate(5, free + evictable).ok());
  EXPECT_EQ(mgr_.Usage(1).swapped_out, 0u);
  CheckBytes(1);
}

// Tenants killed mid-swap (one swapping out, one swapping in) while the
// others keep taking turns; their memory is cleaned up when the copies end,
// the survivors keep every byte, and new tenants start in their place.
TEST_F(MemoryManagerTest, TenantsKilledMidSwapLoseNobodyElsesBytes) {
  for (ClientId c : {1, 2, 3}) {
    StartTenant(c, 4);
    now_ += absl::Seconds(1);
  }
  ASSERT_NO_FATAL_FAILURE(Turn(1, 100));  // 1 in, 2 (idle longest) out
  VmLayout& layout = mgr_.layout();
  ChunkId out_chunk = 0, in_chunk = 0;
  for (ChunkId id : layout.ClientChunks(1)) {
    if (layout.chunk(id)->state == ChunkState::kResident) out_chunk = id;
  }
  for (ChunkId id : layout.ClientChunks(2)) {
    if (layout.chunk(id)->state == ChunkState::kSwapped) in_chunk = id;
  }
  ASSERT_NE(out_chunk, 0u);
  ASSERT_NE(in_chunk, 0u);
  if (mgr_.ledger().PhysicalFree() < kChunk) {
    ASSERT_TRUE(mgr_.MakeRoom(3, kChunk, {}).ok());
  }
  absl::StatusOr<SwapTicket> t_out = layout.BeginSwapOut(out_chunk);
  absl::StatusOr<SwapTicket> t_in = layout.BeginSwapIn(in_chunk);
  ASSERT_TRUE(t_out.ok()) << t_out.status();
  ASSERT_TRUE(t_in.ok()) << t_in.status();

  ASSERT_TRUE(mgr_.RemoveClient(1).ok());
  ASSERT_TRUE(mgr_.RemoveClient(2).ok());
  EXPECT_EQ(layout.orphans(), 2u);
  for (int i = 0; i < 3; ++i) ASSERT_NO_FATAL_FAILURE(Turn(3, 200 + i));

  EXPECT_EQ(layout.FinishSwap(*t_out, layout.RunCopy(*t_out)).code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(layout.FinishSwap(*t_in, absl::InternalError("copy aborted")).code(),
            absl::StatusCode::kCancelled);
  EXPECT_EQ(layout.orphans(), 0u);
  EXPECT_EQ(mgr_.Node().clients, 1u);
  EXPECT_EQ(mgr_.Node().allocated, 32 * kChunk);
  ExpectLedgerMatchesFake();

  // Restart: two new tenants, and turns go on.
  regions_.erase(1);
  regions_.erase(2);
  StartTenant(1, 4);
  StartTenant(4, 4);
  for (int round = 0; round < 2; ++round) {
    for (ClientId c : {1, 3, 4}) ASSERT_NO_FATAL_FAILURE(Turn(c, 300 + round * 10 + c));
  }
  for (ClientId c : {1, 3, 4}) {
    ASSERT_TRUE(mgr_.BeginKernel(c).ok());
    CheckBytes(c);
    mgr_.EndCommand(c);
  }
  ExpectLedgerMatchesFake();
  for (ClientId c : {1, 3, 4}) ASSERT_TRUE(mgr_.RemoveClient(c).ok());
  EXPECT_EQ(phys_.live_handles(), 0u);
  EXPECT_EQ(phys_.live_slots(), 0u);
  EXPECT_EQ(phys_.live_reservations(), 0u);
}

TEST_F(MemoryManagerTest, FailedSwapDuringEvictionIsOomAndLosesNothing) {
  for (ClientId c : {1, 2, 3}) {
    StartTenant(c, 4);
    now_ += absl::Seconds(1);
  }
  // 1 is swapped out most; running it must evict 2. Make that copy fail.
  phys_.Fail(Op::kCopyToHost);
  absl::Status s = mgr_.BeginKernel(1);
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted) << s;
  EXPECT_FALSE(mgr_.policy().IsBusy(1));
  ExpectLedgerMatchesFake();
  // The next attempt works, and nobody lost a byte.
  ASSERT_TRUE(mgr_.BeginKernel(1).ok());
  CheckBytes(1);
  mgr_.EndCommand(1);
  for (ClientId c : {2, 3}) ASSERT_NO_FATAL_FAILURE(Turn(c, c));
}

TEST_F(MemoryManagerTest, CommandsWaitForChunksMidSwap) {
  StartTenant(1, 1);
  ChunkId id = mgr_.layout().ClientChunks(1)[0];
  absl::StatusOr<SwapTicket> t = mgr_.layout().BeginSwapOut(id);
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(mgr_.BeginKernel(1).code(), absl::StatusCode::kUnavailable);
  ASSERT_TRUE(mgr_.layout().FinishSwap(*t, mgr_.layout().RunCopy(*t)).ok());
  ASSERT_TRUE(mgr_.BeginKernel(1).ok());
  CheckBytes(1);
}

// Four tenants load the same weights: one copy on the device, three saved;
// a tenant that writes into its weights gets a private copy of the chunks it
// writes, and only those.
TEST_F(MemoryManagerTest, FourTenantsShareIdenticalWeights) {
  constexpr int kChunks = 10;
  const auto weights = Pattern(77, kChunks * kChunk);
  std::map<ClientId, Allocation> w;
  const uint64_t before = phys_.device_used();
  for (ClientId c : {1, 2, 3, 4}) {
    ASSERT_TRUE(mgr_.AddClient(c, {.dedup = true}).ok());
    absl::StatusOr<Allocation> a = mgr_.Allocate(c, kChunks * kChunk);
    ASSERT_TRUE(a.ok());
    w[c] = *a;
    for (int i = 0; i < kChunks; ++i) {
      std::span<const uint8_t> part(weights.data() + i * kChunk, kChunk);
      absl::StatusOr<OfferResult> r = mgr_.Upload(c, a->chunks[i], part);
      ASSERT_TRUE(r.ok()) << r.status();
      EXPECT_EQ(r->outcome, c == 1 ? OfferOutcome::kPublished : OfferOutcome::kAttached);
    }
  }
  EXPECT_EQ(phys_.device_used() - before, kChunks * kChunk);  // one copy for all four
  NodeUsage n = mgr_.Node();
  EXPECT_EQ(n.dedup_saved, 3 * kChunks * kChunk);
  EXPECT_EQ(mgr_.Usage(2).shared, kChunks * kChunk);
  EXPECT_EQ(mgr_.Usage(2).allocated, kChunks * kChunk);
  for (ClientId c : {1, 2, 3, 4}) {
    std::vector<uint8_t> out(weights.size());
    ASSERT_TRUE(phys_.ReadVa(w[c].va, out).ok());
    EXPECT_EQ(out, weights);
  }
  // Client 3 writes 10 bytes straddling chunks 4 and 5.
  const uint64_t at = w[3].va + 5 * kChunk - 5;
  ASSERT_TRUE(mgr_.PrepareWrite(3, at, 10).ok());
  ASSERT_TRUE(phys_.WriteVa(at, std::vector<uint8_t>(10, 0)).ok());
  EXPECT_EQ(mgr_.Usage(3).shared, (kChunks - 2) * kChunk);
  EXPECT_EQ(mgr_.Usage(3).resident, 2 * kChunk);
  std::vector<uint8_t> out(weights.size());
  ASSERT_TRUE(phys_.ReadVa(w[4].va, out).ok());
  EXPECT_EQ(out, weights);
  ExpectLedgerMatchesFake();
  // A client that did not opt in never shares.
  ASSERT_TRUE(mgr_.AddClient(5).ok());
  Allocation a5 = *mgr_.Allocate(5, kChunk);
  EXPECT_EQ(mgr_.Upload(5, a5.chunks[0], std::span(weights.data(), kChunk)).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace wooly::memory
