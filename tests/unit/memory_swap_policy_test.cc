#include <cstdint>
#include <set>
#include <vector>

#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "wooly/memory/fake_physical_memory.h"
#include "wooly/memory/overcommit.h"
#include "wooly/memory/swap_policy.h"
#include "wooly/memory/vm_layout.h"

namespace wooly::memory {
namespace {

constexpr uint64_t kChunk = 16384;

LayoutOptions TestOptions() {
  return {.granularity = 4096,
          .chunk_bytes = kChunk,
          .small_max_bytes = 1024,
          .small_chunk_bytes = 4096,
          .small_alignment = 256,
          .client_va_bytes = uint64_t{1} << 20};
}

class SwapPolicyTest : public ::testing::Test {
 protected:
  // A client with `chunks` one-chunk allocations, known to the policy.
  std::vector<ChunkId> Add(ClientId c, int chunks, ClientPolicy p = {}) {
    EXPECT_TRUE(layout_.AddClient(c).ok());
    policy_.AddClient(c, p);
    std::vector<ChunkId> ids;
    for (int i = 0; i < chunks; ++i) ids.push_back(layout_.Allocate(c, kChunk)->chunks[0]);
    return ids;
  }
  // The client runs a command that ends now.
  void Ran(ClientId c) {
    policy_.BeginCommand(c);
    policy_.EndCommand(c);
  }
  std::vector<ClientId> VictimClients(const EvictionPlan& p) {
    std::vector<ClientId> out;
    for (const Victim& v : p.victims) out.push_back(v.client);
    return out;
  }

  absl::Time now_ = absl::UnixEpoch() + absl::Hours(100);
  FakePhysicalMemory phys_{uint64_t{1} << 20, uint64_t{1} << 20};
  Overcommit ledger_{{.physical_bytes = uint64_t{1} << 20, .overcommit_percent = 0}};
  VmLayout layout_{TestOptions(), &phys_, &ledger_};
  SwapPolicy policy_{{.idle_threshold = absl::Seconds(10)}, [this] { return now_; }};
};

TEST_F(SwapPolicyTest, ActivityFollowsTheInjectedClock) {
  Add(1, 0);
  EXPECT_FALSE(policy_.IsBusy(1));
  EXPECT_EQ(policy_.IdleFor(1), absl::ZeroDuration());
  now_ += absl::Seconds(9);
  EXPECT_FALSE(policy_.IsIdle(1));
  now_ += absl::Seconds(1);
  EXPECT_TRUE(policy_.IsIdle(1));  // exactly the threshold counts as idle
  policy_.BeginCommand(1);
  policy_.BeginCommand(1);  // overlapping commands
  EXPECT_TRUE(policy_.IsBusy(1));
  EXPECT_FALSE(policy_.IsIdle(1));
  now_ += absl::Minutes(5);
  EXPECT_EQ(policy_.IdleFor(1), absl::ZeroDuration());  // busy is never idle
  policy_.EndCommand(1);
  EXPECT_TRUE(policy_.IsBusy(1));
  policy_.EndCommand(1);
  EXPECT_FALSE(policy_.IsBusy(1));
  now_ += absl::Seconds(3);
  EXPECT_EQ(policy_.IdleFor(1), absl::Seconds(3));  // from the end of the last one
  now_ -= absl::Seconds(60);                        // a clock that steps back reads as not idle
  EXPECT_EQ(policy_.IdleFor(1), absl::ZeroDuration());
  EXPECT_FALSE(policy_.IsIdle(99));
  EXPECT_EQ(policy_.SetPolicy(99, {}).code(), absl::StatusCode::kNotFound);
}

TEST_F(SwapPolicyTest, IdleLongestFirst) {
  auto a = Add(1, 2);
  auto b = Add(2, 2);
  auto c = Add(3, 2);
  Add(4, 0);
  Ran(1);
  now_ += absl::Seconds(5);
  Ran(2);
  now_ += absl::Seconds(3);
  Ran(3);
  now_ += absl::Seconds(30);  // idle for 38 s, 33 s and 30 s
  Ran(4);

  absl::StatusOr<EvictionPlan> p = policy_.PlanEviction(layout_, 4, kChunk, {});
  ASSERT_TRUE(p.ok()) << p.status();
  ASSERT_EQ(p->victims.size(), 1u);
  EXPECT_EQ(p->victims[0].client, 1u);
  EXPECT_EQ(p->victims[0].tier, VictimTier::kIdle);
  EXPECT_EQ(p->bytes, kChunk);

  p = policy_.PlanEviction(layout_, 4, 3 * kChunk, {});
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(VictimClients(*p), (std::vector<ClientId>{1, 1, 2}));
  p = policy_.PlanEviction(layout_, 4, 5 * kChunk + 1, {});
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(VictimClients(*p), (std::vector<ClientId>{1, 1, 2, 2, 3, 3}));
  EXPECT_EQ(p->bytes, 6 * kChunk);
  (void)a, (void)b, (void)c;
}

// Priorities are woolyd's: 0 is the highest, 4 the lowest.
TEST_F(SwapPolicyTest, LowerPriorityFirstThenIdleLongest) {
  Add(1, 1, {.priority = 0});
  Add(2, 1, {.priority = 4});
  Add(3, 1, {.priority = 4});
  Add(4, 0, {.priority = 4});
  Ran(1);  // idle longest, but more important
  now_ += absl::Seconds(5);
  Ran(3);
  now_ += absl::Seconds(5);
  Ran(2);
  now_ += absl::Seconds(60);
  absl::StatusOr<EvictionPlan> p = policy_.PlanEviction(layout_, 4, 3 * kChunk, {});
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(VictimClients(*p), (std::vector<ClientId>{3, 2, 1}));
}

// Idle clients go first; then the requester's own unpinned chunks; then
// active clients that are not more important than the requester. Active
// clients of higher priority are never evicted for it.
TEST_F(SwapPolicyTest, TiersAndTheActiveHigherPriorityRule) {
  Add(1, 1, {.priority = 0});             // idle, important: still evictable
  Add(2, 1, {.priority = 1});             // active, above the requester: never
  Add(3, 1, {.priority = 2});             // active, equal
  Add(4, 1, {.priority = 3});             // active, below
  auto own = Add(5, 2, {.priority = 2});  // the requester
  Ran(1);
  now_ += absl::Seconds(20);
  Ran(2);
  Ran(3);
  Ran(4);
  now_ += absl::Seconds(2);  // 2..4 active (idle 2 s < 10 s)

  const std::set<ChunkId> pinned = {own[0]};
  absl::StatusOr<EvictionPlan> p = policy_.PlanEviction(layout_, 5, 4 * kChunk, pinned);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(VictimClients(*p), (std::vector<ClientId>{1, 5, 4, 3}));
  ASSERT_EQ(p->victims.size(), 4u);
  EXPECT_EQ(p->victims[0].tier, VictimTier::kIdle);
  EXPECT_EQ(p->victims[1].tier, VictimTier::kRequesterUnpinned);
  EXPECT_EQ(p->victims[1].chunk, own[1]);  // never the pinned one
  EXPECT_EQ(p->victims[2].tier, VictimTier::kActive);

  // One byte more would need client 2 or the pinned chunk: cannot.
  p = policy_.PlanEviction(layout_, 5, 4 * kChunk + 1, pinned);
  EXPECT_EQ(p.status().code(), absl::StatusCode::kResourceExhausted);

  // Once client 2 has been idle long enough, it is fair game.
  now_ += absl::Seconds(8);
  p = policy_.PlanEviction(layout_, 5, 4 * kChunk + 1, pinned);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->victims.size(), 5u);
}

TEST_F(SwapPolicyTest, IdleThresholdIsTheBoundary) {
  Add(1, 1, {.priority = 0});
  Add(2, 0, {.priority = 4});
  Ran(1);
  now_ += absl::Seconds(10) - absl::Nanoseconds(1);
  EXPECT_EQ(policy_.PlanEviction(layout_, 2, 1, {}).status().code(),
            absl::StatusCode::kResourceExhausted);
  now_ += absl::Nanoseconds(1);
  EXPECT_TRUE(policy_.PlanEviction(layout_, 2, 1, {}).ok());

  SwapPolicy lazy({.idle_threshold = absl::Hours(1)}, [this] { return now_; });
  lazy.AddClient(1, {.priority = 0});
  lazy.AddClient(2, {.priority = 4});
  EXPECT_FALSE(lazy.PlanEviction(layout_, 2, 1, {}).ok());
  now_ += absl::Hours(1);
  EXPECT_TRUE(lazy.PlanEviction(layout_, 2, 1, {}).ok());
}

TEST_F(SwapPolicyTest, NoswapIsNeverEvicted) {
  Add(1, 3, {.priority = 4, .noswap = true});
  Add(2, 0, {.priority = 0});
  Ran(1);
  now_ += absl::Hours(10);
  absl::StatusOr<EvictionPlan> p = policy_.PlanEviction(layout_, 2, 1, {});
  EXPECT_EQ(p.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(p.status().message().find("out of memory"), absl::string_view::npos);
  // Nor for itself.
  EXPECT_FALSE(policy_.PlanEviction(layout_, 1, 1, {}).ok());
  // Clearing noswap makes it evictable.
  ASSERT_TRUE(policy_.SetPolicy(1, {.priority = 4, .noswap = false}).ok());
  EXPECT_TRUE(policy_.PlanEviction(layout_, 2, 1, {}).ok());
}

TEST_F(SwapPolicyTest, BusyClientsAreNeverEvicted) {
  Add(1, 2, {.priority = 4});
  Add(2, 0, {.priority = 0});
  policy_.BeginCommand(1);  // a command in flight for an hour
  now_ += absl::Hours(1);
  EXPECT_FALSE(policy_.PlanEviction(layout_, 2, 1, {}).ok());
  policy_.EndCommand(1);
  EXPECT_TRUE(policy_.PlanEviction(layout_, 2, 1, {}).ok());  // active, lower priority
}

TEST_F(SwapPolicyTest, UnknownClientsAreLeftAlone) {
  ASSERT_TRUE(layout_.AddClient(7).ok());
  ASSERT_TRUE(layout_.Allocate(7, kChunk).ok());
  Add(2, 0);
  now_ += absl::Hours(1);
  EXPECT_FALSE(policy_.PlanEviction(layout_, 2, 1, {}).ok());
}

TEST_F(SwapPolicyTest, TakesTheSmallestChunkThatCovers) {
  ASSERT_TRUE(layout_.AddClient(1).ok());
  policy_.AddClient(1);
  ChunkId big = layout_.Allocate(1, kChunk)->chunks[0];
  ChunkId mid = layout_.Allocate(1, 8192)->chunks[0];
  ChunkId small = layout_.Allocate(1, 4096)->chunks[0];
  Add(2, 0);
  now_ += absl::Hours(1);
  auto p = policy_.PlanEviction(layout_, 2, 5000, {});
  ASSERT_TRUE(p.ok());
  ASSERT_EQ(p->victims.size(), 1u);
  EXPECT_EQ(p->victims[0].chunk, mid);
  p = policy_.PlanEviction(layout_, 2, 20000, {});
  ASSERT_TRUE(p.ok());
  ASSERT_EQ(p->victims.size(), 2u);
  EXPECT_EQ(p->victims[0].chunk, big);    // nothing covers 20000: the largest
  EXPECT_EQ(p->victims[1].chunk, small);  // then the smallest covering 3616
  EXPECT_EQ(p->bytes, kChunk + 4096);
  p = policy_.PlanEviction(layout_, 2, 0, {});
  ASSERT_TRUE(p.ok());
  EXPECT_TRUE(p->victims.empty());
}

TEST_F(SwapPolicyTest, OnlyResidentPrivateChunksAreCandidates) {
  auto a = Add(1, 4);
  Add(2, 0);
  ASSERT_TRUE(layout_.SwapOut(a[0]).ok());                    // already swapped
  absl::StatusOr<SwapTicket> t = layout_.BeginSwapOut(a[1]);  // mid-swap
  ASSERT_TRUE(t.ok());
  ASSERT_TRUE(layout_.Publish(a[2]).ok());  // a deduplicated chunk
  now_ += absl::Hours(1);
  auto p = policy_.PlanEviction(layout_, 2, 1, {});
  ASSERT_TRUE(p.ok());
  ASSERT_EQ(p->victims.size(), 1u);
  EXPECT_EQ(p->victims[0].chunk, a[3]);
  EXPECT_FALSE(policy_.PlanEviction(layout_, 2, kChunk + 1, {}).ok());
  ASSERT_TRUE(layout_.FinishSwap(*t, layout_.RunCopy(*t)).ok());
}

TEST_F(SwapPolicyTest, SwapInPlansOnlyTheClientsOwnChunks) {
  auto a = Add(1, 4);
  auto b = Add(2, 1);
  ASSERT_TRUE(layout_.SwapOut(a[3]).ok());
  ASSERT_TRUE(layout_.SwapOut(a[1]).ok());
  ASSERT_TRUE(layout_.SwapOut(b[0]).ok());
  absl::StatusOr<SwapTicket> t = layout_.BeginSwapOut(a[2]);
  ASSERT_TRUE(t.ok());

  const std::vector<ChunkId> needed = {a[3], a[0], a[1], a[2], a[3]};
  absl::StatusOr<SwapInPlan> p = policy_.PlanSwapIn(layout_, 1, needed);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->chunks, (std::vector<ChunkId>{a[1], a[3]}));  // address order, once each
  EXPECT_EQ(p->bytes, 2 * kChunk);
  EXPECT_EQ(p->in_flight, (std::vector<ChunkId>{a[2]}));

  // Another client's chunk is never part of a client's swap-in.
  const std::vector<ChunkId> foreign = {a[0], b[0]};
  EXPECT_EQ(policy_.PlanSwapIn(layout_, 1, foreign).status().code(),
            absl::StatusCode::kInvalidArgument);
  const std::vector<ChunkId> bogus = {12345};
  EXPECT_EQ(policy_.PlanSwapIn(layout_, 1, bogus).status().code(),
            absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE(layout_.FinishSwap(*t, layout_.RunCopy(*t)).ok());
}

}  // namespace
}  // namespace wooly::memory
