#include <cstdint>

#include "gtest/gtest.h"
#include "wooly/memory/allocation_table.h"

namespace wooly::memory {
namespace {

TEST(AllocationTableTest, InsertFindErase) {
  AllocationTable t;
  EXPECT_TRUE(t.empty());
  ASSERT_TRUE(t.Insert(0x1000, 0x100));
  ASSERT_TRUE(t.Insert(0x2000, 0x10));
  EXPECT_EQ(t.size(), 2u);
  EXPECT_EQ(t.TotalBytes(), 0x110u);

  EXPECT_EQ(t.Find(0x1000), (Range{0x1000, 0x100}));
  EXPECT_EQ(t.Find(0x10ff), (Range{0x1000, 0x100}));
  EXPECT_FALSE(t.Find(0x1100));  // one past the end
  EXPECT_FALSE(t.Find(0xfff));
  EXPECT_FALSE(t.Find(0));
  EXPECT_EQ(t.Find(0x200f), (Range{0x2000, 0x10}));

  EXPECT_FALSE(t.Erase(0x1001));  // interior addresses do not erase
  EXPECT_EQ(t.Erase(0x1000), (Range{0x1000, 0x100}));
  EXPECT_FALSE(t.Find(0x1000));
  EXPECT_EQ(t.TotalBytes(), 0x10u);
  EXPECT_FALSE(t.Erase(0x1000));
}

TEST(AllocationTableTest, RefusesOverlapsZeroSizesAndWraparound) {
  AllocationTable t;
  ASSERT_TRUE(t.Insert(0x1000, 0x100));
  EXPECT_FALSE(t.Insert(0x1000, 0x100));  // same
  EXPECT_FALSE(t.Insert(0x10ff, 1));      // inside
  EXPECT_FALSE(t.Insert(0xf00, 0x101));   // overlaps the start
  EXPECT_FALSE(t.Insert(0xf00, 0x300));   // covers it
  EXPECT_TRUE(t.Insert(0xf00, 0x100));    // ends exactly at its base
  EXPECT_TRUE(t.Insert(0x1100, 1));       // starts exactly at its end
  EXPECT_FALSE(t.Insert(0x5000, 0));
  EXPECT_FALSE(t.Insert(UINT64_MAX - 1, 4));
  EXPECT_TRUE(t.Insert(UINT64_MAX - 3, 3));
  EXPECT_EQ(t.size(), 4u);
}

TEST(AllocationTableTest, ContainsNeedsOneRange) {
  AllocationTable t;
  ASSERT_TRUE(t.Insert(0x1000, 0x100));
  ASSERT_TRUE(t.Insert(0x1100, 0x100));  // adjacent, but a separate allocation
  EXPECT_TRUE(t.Contains(0x1000, 0x100));
  EXPECT_TRUE(t.Contains(0x1080, 0x80));
  EXPECT_TRUE(t.Contains(0x10ff, 0));
  EXPECT_FALSE(t.Contains(0x1080, 0x81));  // runs into the neighbour
  EXPECT_FALSE(t.Contains(0x1000, 0x200));
  EXPECT_FALSE(t.Contains(0x1200, 0));
  EXPECT_FALSE(t.Contains(0x10ff, UINT64_MAX));  // no overflow
  EXPECT_FALSE(t.Contains(0x0, 1));
}

TEST(AllocationTableTest, RangesAndClear) {
  AllocationTable t;
  ASSERT_TRUE(t.Insert(0x3000, 8));
  ASSERT_TRUE(t.Insert(0x1000, 8));
  ASSERT_EQ(t.Ranges().size(), 2u);
  EXPECT_EQ(t.Ranges()[0].base, 0x1000u);  // address order
  EXPECT_EQ(t.FindExact(0x3000), (Range{0x3000, 8}));
  EXPECT_FALSE(t.FindExact(0x3001));
  t.Clear();
  EXPECT_TRUE(t.empty());
  EXPECT_EQ(t.TotalBytes(), 0u);
}

}  // namespace
}  // namespace wooly::memory
