#include <cstdint>
#include <map>
#include <random>

#include "gtest/gtest.h"
#include "wooly/memory/range_allocator.h"

namespace wooly::memory {
namespace {

TEST(RangeAllocatorTest, BestFitTakesTheSmallestHoleThatHolds) {
  RangeAllocator a(0x10000, 0x1000);
  // Carve holes of 0x300 and 0x100 between live blocks.
  auto b0 = a.Allocate(0x300, 1);
  auto b1 = a.Allocate(0x100, 1);
  auto b2 = a.Allocate(0x100, 1);
  auto b3 = a.Allocate(0x100, 1);
  ASSERT_TRUE(b0 && b1 && b2 && b3);
  EXPECT_EQ(*b0, 0x10000u);
  ASSERT_TRUE(a.Free(*b0));  // hole of 0x300 at the start
  ASSERT_TRUE(a.Free(*b2));  // hole of 0x100 in the middle
  // 0x80 fits both holes and the tail; best fit picks the 0x100 hole.
  EXPECT_EQ(a.Allocate(0x80, 1), *b2);
  // 0x200 only fits the 0x300 hole (the tail is bigger still).
  EXPECT_EQ(a.Allocate(0x200, 1), *b0);
}

TEST(RangeAllocatorTest, AlignmentLeavesTheGapFree) {
  RangeAllocator a(0x1000, 0x10000);
  auto x = a.Allocate(0x10, 1);
  ASSERT_EQ(x, 0x1000u);
  auto y = a.Allocate(0x100, 0x1000);
  ASSERT_TRUE(y);
  EXPECT_EQ(*y % 0x1000, 0u);
  EXPECT_EQ(*y, 0x2000u);
  // The gap [0x1010, 0x2000) is still free and usable.
  auto z = a.Allocate(0xff0, 1);
  EXPECT_EQ(z, 0x1010u);
  EXPECT_EQ(a.used_bytes(), 0x10u + 0x100u + 0xff0u);
}

TEST(RangeAllocatorTest, FreeCoalescesBackToOneBlock) {
  RangeAllocator a(0, 0x1000);
  std::vector<uint64_t> blocks;
  for (int i = 0; i < 16; ++i) blocks.push_back(*a.Allocate(0x100, 0x100));
  EXPECT_FALSE(a.Allocate(1, 1));  // full
  EXPECT_EQ(a.free_blocks(), 0u);
  // Free every other block, then the rest: neighbours merge.
  for (size_t i = 0; i < blocks.size(); i += 2) ASSERT_TRUE(a.Free(blocks[i]));
  EXPECT_EQ(a.free_blocks(), 8u);
  EXPECT_EQ(a.largest_free(), 0x100u);
  EXPECT_FALSE(a.Allocate(0x200, 1));  // fragmented
  for (size_t i = 1; i < blocks.size(); i += 2) ASSERT_TRUE(a.Free(blocks[i]));
  EXPECT_EQ(a.free_blocks(), 1u);
  EXPECT_EQ(a.largest_free(), 0x1000u);
  EXPECT_TRUE(a.empty());
  EXPECT_EQ(a.Allocate(0x1000, 1), 0u);
}

TEST(RangeAllocatorTest, Refusals) {
  RangeAllocator a(0x100, 0x100);
  EXPECT_FALSE(a.Allocate(0, 1));
  EXPECT_FALSE(a.Allocate(8, 3));  // not a power of two
  EXPECT_FALSE(a.Allocate(0x101, 1));
  EXPECT_FALSE(a.Fits(0x101, 1));
  EXPECT_TRUE(a.Fits(0x100, 0x100));
  EXPECT_FALSE(a.Fits(0x100, 0x200));  // the only aligned start is past the end
  auto x = a.Allocate(0x20, 1);
  ASSERT_TRUE(x);
  EXPECT_FALSE(a.Free(*x + 1));  // interior
  EXPECT_FALSE(a.Free(0x1000));  // unknown
  EXPECT_EQ(a.SizeOf(*x), 0x20u);
  EXPECT_TRUE(a.Free(*x));
  EXPECT_FALSE(a.Free(*x));  // twice
}

TEST(RangeAllocatorTest, TopOfTheAddressSpaceDoesNotOverflow) {
  const uint64_t base = UINT64_MAX - 0xfff;  // [base, 2^64)
  RangeAllocator a(base, 0x1000);
  EXPECT_FALSE(a.Allocate(0x10, uint64_t{1} << 63));
  auto x = a.Allocate(0x1000, 0x1000);
  EXPECT_EQ(x, base);
}

// Random allocations and frees against a reference model: blocks never
// overlap, stay inside the range and aligned, and the byte counts agree.
TEST(RangeAllocatorTest, RandomAgainstModel) {
  std::mt19937_64 rng(42);
  RangeAllocator a(0x100000, 0x40000);
  std::map<uint64_t, uint64_t> live;
  uint64_t used = 0;
  for (int step = 0; step < 5000; ++step) {
    if (live.empty() || rng() % 3 != 0) {
      uint64_t size = 1 + rng() % 0x2000;
      uint64_t align = uint64_t{1} << (rng() % 13);
      bool fits = a.Fits(size, align);
      auto x = a.Allocate(size, align);
      ASSERT_EQ(fits, x.has_value());
      if (!x) continue;
      ASSERT_EQ(*x % align, 0u);
      ASSERT_GE(*x, a.base());
      ASSERT_LE(*x + size, a.base() + a.size());
      auto next = live.lower_bound(*x);
      if (next != live.end()) {
        ASSERT_LE(*x + size, next->first);
      }
      if (next != live.begin()) {
        auto prev = std::prev(next);
        ASSERT_LE(prev->first + prev->second, *x);
      }
      live[*x] = size;
      used += size;
    } else {
      auto it = live.begin();
      std::advance(it, static_cast<long>(rng() % live.size()));
      ASSERT_TRUE(a.Free(it->first));
      used -= it->second;
      live.erase(it);
    }
    ASSERT_EQ(a.used_bytes(), used);
    ASSERT_EQ(a.allocated_blocks(), live.size());
  }
  for (const auto& [addr, size] : live) ASSERT_TRUE(a.Free(addr));
  EXPECT_EQ(a.free_blocks(), 1u);
  EXPECT_EQ(a.free_bytes(), a.size());
}

}  // namespace
}  // namespace wooly::memory
