// The bookkeeping of libwooly's local allocation (alloc_arena.h): first fit,
// alignment, coalescing, owners.
#include <gtest/gtest.h>

#include <vector>

#include "alloc_arena.h"

namespace wooly::client {
namespace {

constexpr uint64_t kBase = 0x7f0000000000;
const int kCtxA = 0, kCtxB = 0;

TEST(ArenaAllocatorTest, BlocksAreAlignedFirstFitAndOwnedByTheirContext) {
  ArenaAllocator arenas;
  EXPECT_EQ(arenas.Allocate(100, &kCtxA), 0u);  // no arena yet
  arenas.AddArena(kBase, 4096, &kCtxA);
  EXPECT_EQ(arenas.Allocate(100, &kCtxB), 0u);  // another context's arena
  EXPECT_EQ(arenas.Allocate(0, &kCtxA), 0u);
  const uint64_t a = arenas.Allocate(100, &kCtxA);
  const uint64_t b = arenas.Allocate(513, &kCtxA);
  const uint64_t c = arenas.Allocate(512, &kCtxA);
  EXPECT_EQ(a, kBase);
  EXPECT_EQ(b, kBase + 512);                     // 100 bytes take one 512-byte unit
  EXPECT_EQ(c, kBase + 1536);                    // 513 take two
  EXPECT_EQ(arenas.Allocate(4096, &kCtxA), 0u);  // does not fit any more
  EXPECT_TRUE(arenas.IsBlock(b));
  EXPECT_FALSE(arenas.IsBlock(b + 512));
  EXPECT_FALSE(arenas.Free(b + 512));
  ASSERT_TRUE(arenas.Free(b));
  EXPECT_FALSE(arenas.Free(b));                 // twice
  EXPECT_EQ(arenas.Allocate(1024, &kCtxA), b);  // first fit: b's place
}

TEST(ArenaAllocatorTest, FreedNeighboursMergeIntoOneRange) {
  ArenaAllocator arenas;
  arenas.AddArena(kBase, 2048, &kCtxA);
  std::vector<uint64_t> p;
  for (int i = 0; i < 4; ++i) p.push_back(arenas.Allocate(512, &kCtxA));
  EXPECT_EQ(arenas.Allocate(512, &kCtxA), 0u);
  // Free the middle two in either order, then the ends: the whole arena is
  // one free range again.
  ASSERT_TRUE(arenas.Free(p[2]));
  ASSERT_TRUE(arenas.Free(p[1]));
  EXPECT_EQ(arenas.Allocate(1024, &kCtxA), p[1]);
  ASSERT_TRUE(arenas.Free(p[1]));
  ASSERT_TRUE(arenas.Free(p[0]));
  ASSERT_TRUE(arenas.Free(p[3]));
  EXPECT_EQ(arenas.Allocate(2048, &kCtxA), kBase);
}

TEST(ArenaAllocatorTest, RemovingAContextForgetsItsArenasAndBlocks) {
  ArenaAllocator arenas;
  arenas.AddArena(kBase, 4096, &kCtxA);
  arenas.AddArena(kBase + 8192, 4096, &kCtxB);
  const uint64_t a = arenas.Allocate(64, &kCtxA);
  const uint64_t b = arenas.Allocate(64, &kCtxB);
  const std::vector<ArenaAllocator::Arena> gone = arenas.RemoveOwner(&kCtxA);
  ASSERT_EQ(gone.size(), 1u);
  EXPECT_EQ(gone[0].base, kBase);
  EXPECT_EQ(gone[0].size, 4096u);
  EXPECT_FALSE(arenas.IsBlock(a));
  EXPECT_TRUE(arenas.IsBlock(b));
  EXPECT_EQ(arenas.Allocate(64, &kCtxA), 0u);
  EXPECT_EQ(arenas.Clear().size(), 1u);
  EXPECT_FALSE(arenas.IsBlock(b));
}

// The driver promises only 256-byte alignment: blocks start at the arena's
// first 512-byte boundary, and the arena is still freed from its own base.
TEST(ArenaAllocatorTest, MisalignedArenasStartAtTheirFirstAlignedByte) {
  ArenaAllocator arenas;
  arenas.AddArena(kBase + 8, 512, &kCtxA);  // no whole aligned block inside
  arenas.AddArena(kBase, 100, &kCtxA);
  EXPECT_EQ(arenas.Allocate(1, &kCtxA), 0u);
  arenas.AddArena(kBase + 256, 4096, &kCtxA);  // aligned part: 3584 bytes
  EXPECT_EQ(arenas.Allocate(3584, &kCtxA), kBase + 512);
  EXPECT_EQ(arenas.Allocate(1, &kCtxA), 0u);
  ASSERT_TRUE(arenas.Free(kBase + 512));
  EXPECT_EQ(arenas.Allocate(512, &kCtxA), kBase + 512);
  const std::vector<ArenaAllocator::Arena> gone = arenas.RemoveOwner(&kCtxA);
  ASSERT_EQ(gone.size(), 1u);
  EXPECT_EQ(gone[0].base, kBase + 256);
  EXPECT_EQ(gone[0].size, 4096u);
  arenas.AddArena(kBase, 1000, &kCtxA);  // trimmed to 512
  EXPECT_EQ(arenas.Allocate(512, &kCtxA), kBase);
  EXPECT_EQ(arenas.Allocate(1, &kCtxA), 0u);
}

}  // namespace
}  // namespace wooly::client
