#include "gtest/gtest.h"
#include "wooly/scheduler/stream_priority.h"

namespace wooly::scheduler {
namespace {

TEST(StreamPriorityTest, SpreadsClientLevelsOverTheDeviceRange) {
  // H100: least 0, greatest -5 (lower is more urgent).
  EXPECT_EQ(StreamPriorityFor(0, 0, -5), -5);
  EXPECT_EQ(StreamPriorityFor(1, 0, -5), -4);
  EXPECT_EQ(StreamPriorityFor(2, 0, -5), -2);
  EXPECT_EQ(StreamPriorityFor(3, 0, -5), -1);
  EXPECT_EQ(StreamPriorityFor(4, 0, -5), 0);
}

TEST(StreamPriorityTest, IsMonotonicAndInRange) {
  for (int least = 0; least <= 2; ++least) {
    for (int greatest = least - 8; greatest <= least; ++greatest) {
      int previous = greatest;
      for (int p = kHighestClientPriority; p <= kLowestClientPriority; ++p) {
        const int v = StreamPriorityFor(p, least, greatest);
        EXPECT_GE(v, greatest);
        EXPECT_LE(v, least);
        EXPECT_GE(v, previous);  // a lower client level is never more urgent
        previous = v;
      }
    }
  }
}

TEST(StreamPriorityTest, ClampsAndHandlesDegenerateRanges) {
  EXPECT_EQ(StreamPriorityFor(-3, 0, -5), -5);
  EXPECT_EQ(StreamPriorityFor(99, 0, -5), 0);
  EXPECT_EQ(StreamPriorityFor(2, 0, 0), 0);    // no priorities on this device
  EXPECT_EQ(StreamPriorityFor(0, -5, 0), -5);  // swapped arguments
  EXPECT_EQ(StreamPriorityFor(1, 0, -1), -1);
  EXPECT_EQ(StreamPriorityFor(3, 0, -1), 0);
  EXPECT_EQ(ClampClientPriority(7), kLowestClientPriority);
  EXPECT_EQ(ClampClientPriority(-1), kHighestClientPriority);
  EXPECT_EQ(ClampClientPriority(kDefaultClientPriority), kDefaultClientPriority);
}

}  // namespace
}  // namespace wooly::scheduler
