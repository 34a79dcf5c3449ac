// Unit tests for libwooly's small building blocks: 2D/3D copy splitting and
// row packing, the allocation table, and the log level parser.
#include <gtest/gtest.h>

#include <cstring>
#include <numeric>
#include <vector>

#include "alloc_table.h"
#include "copy3d.h"
#include "log.h"

namespace wooly::client {
namespace {

CopySpec HostToDevice(uint8_t* host, uint64_t pitch, uint64_t host_height, uint64_t w, uint64_t h,
                      uint64_t d) {
  CopySpec c;
  c.src.is_host = true;
  c.src.host = host;
  c.src.pitch = pitch;
  c.src.height = host_height;
  c.dst.device = 0x1000;
  c.dst.pitch = w;
  c.dst.height = h;
  c.width_bytes = w;
  c.height = h;
  c.depth = d;
  return c;
}

TEST(Copy3DTest, SmallCopyIsOnePiece) {
  CopySpec c = HostToDevice(nullptr, 64, 4, 16, 4, 2);
  auto pieces = SplitCopy(c, 1024);
  ASSERT_EQ(pieces.size(), 1u);
  EXPECT_EQ(HostBytes(pieces[0]), 128u);
}

TEST(Copy3DTest, DeviceToDeviceIsNeverSplit) {
  CopySpec c = HostToDevice(nullptr, 64, 4, 16, 4, 2);
  c.src.is_host = false;
  EXPECT_EQ(SplitCopy(c, 8).size(), 1u);
  EXPECT_EQ(HostBytes(c), 0u);
}

TEST(Copy3DTest, SplitsBySlicesRowsAndSegments) {
  // 10 x 4 x 3 = 120 host bytes.
  CopySpec c = HostToDevice(nullptr, 16, 4, 10, 4, 3);
  auto by_slices = SplitCopy(c, 80);  // two slices per piece
  ASSERT_EQ(by_slices.size(), 2u);
  EXPECT_EQ(by_slices[0].depth, 2u);
  EXPECT_EQ(by_slices[1].depth, 1u);
  EXPECT_EQ(by_slices[1].src.z, 2u);
  EXPECT_EQ(by_slices[1].dst.z, 2u);

  auto by_rows = SplitCopy(c, 30);  // three rows per piece
  ASSERT_EQ(by_rows.size(), 6u);    // per slice: rows 0-2, row 3
  EXPECT_EQ(by_rows[1].src.y, 3u);
  EXPECT_EQ(by_rows[1].height, 1u);
  EXPECT_EQ(by_rows[2].src.z, 1u);

  auto by_segments = SplitCopy(c, 4);  // 4+4+2 bytes per row
  ASSERT_EQ(by_segments.size(), 3u * 4 * 3);
  EXPECT_EQ(by_segments[2].src.x_bytes, 8u);
  EXPECT_EQ(by_segments[2].width_bytes, 2u);
  uint64_t total = 0;
  for (const auto& p : by_segments) total += HostBytes(p);
  EXPECT_EQ(total, 120u);
}

TEST(Copy3DTest, PackAndUnpackFollowPitchOffsetsAndPieces) {
  // Host source: 3 slices of 5 rows of 12 bytes; copy a 4x2x2 box at (x=3, y=1, z=1).
  std::vector<uint8_t> host(12 * 5 * 3);
  std::iota(host.begin(), host.end(), 0);
  CopySpec c = HostToDevice(host.data(), 12, 5, 4, 2, 2);
  c.src.x_bytes = 3;
  c.src.y = 1;
  c.src.z = 1;
  std::vector<uint8_t> packed(16);
  PackHostRows(c, packed.data());
  for (uint64_t z = 0; z < 2; ++z) {
    for (uint64_t y = 0; y < 2; ++y) {
      for (uint64_t x = 0; x < 4; ++x) {
        EXPECT_EQ(packed[z * 8 + y * 4 + x], host[(1 + z) * 60 + (1 + y) * 12 + 3 + x]);
      }
    }
  }
  // The same rows, gathered piece by piece, concatenate to the whole.
  std::vector<uint8_t> pieced;
  for (const CopySpec& p : SplitCopy(c, 3)) {
    std::vector<uint8_t> part(HostBytes(p));
    PackHostRows(p, part.data());
    pieced.insert(pieced.end(), part.begin(), part.end());
  }
  // Pieces come in row-major order, so their packed rows concatenate to the whole.
  EXPECT_EQ(pieced, packed);

  // Unpack into a pitched host destination.
  std::vector<uint8_t> dst(12 * 5 * 3, 0xee);
  CopySpec back = c;
  std::swap(back.src, back.dst);
  back.dst.is_host = true;
  back.dst.host = dst.data();
  UnpackHostRows(back, packed.data());
  for (uint64_t z = 0; z < 2; ++z) {
    for (uint64_t y = 0; y < 2; ++y) {
      for (uint64_t x = 0; x < 4; ++x) {
        const size_t at = (1 + z) * 60 + (1 + y) * 12 + 3 + x;
        EXPECT_EQ(dst[at], host[at]);
      }
    }
  }
  EXPECT_EQ(dst[0], 0xee);  // outside the box: untouched
}

TEST(Copy3DTest, WireFormPacksHostSides) {
  std::vector<uint8_t> host(64);
  CopySpec c = HostToDevice(host.data(), 16, 4, 8, 4, 1);
  c.src.x_bytes = 2;
  c.dst.x_bytes = 5;
  c.dst.y = 1;
  c.dst.pitch = 32;
  wire::Copy3D w = ToWire(c);
  EXPECT_EQ(w.src_kind, static_cast<uint8_t>(wire::MemKind::kHost));
  EXPECT_EQ(w.src_ptr, 0u);
  EXPECT_EQ(w.src_x_bytes, 0u);
  EXPECT_EQ(w.src_pitch, 8u);
  EXPECT_EQ(w.src_height, 4u);
  EXPECT_EQ(w.dst_kind, static_cast<uint8_t>(wire::MemKind::kDevice));
  EXPECT_EQ(w.dst_ptr, 0x1000u);
  EXPECT_EQ(w.dst_x_bytes, 5u);
  EXPECT_EQ(w.dst_y, 1u);
  EXPECT_EQ(w.dst_pitch, 32u);
  EXPECT_EQ(w.width_bytes, 8u);
  EXPECT_EQ(w.height, 4u);
  EXPECT_EQ(w.depth, 1u);
}

TEST(AllocTableTest, FindContainingRecord) {
  AllocTable t(/*reserve_address_space=*/false);
  int owner = 0;
  t.Insert(0x10000, 0x100, AllocTable::Kind::kAlloc, &owner);
  t.Insert(0x20000, 0x10, AllocTable::Kind::kGlobal, nullptr);
  AllocTable::Record r;
  ASSERT_TRUE(t.Find(0x10080, &r));
  EXPECT_EQ(r.base, 0x10000u);
  EXPECT_EQ(r.size, 0x100u);
  EXPECT_TRUE(t.Contains(0x10000));
  EXPECT_FALSE(t.Contains(0x10100));  // one past the end
  EXPECT_FALSE(t.Contains(0xffff));
  EXPECT_TRUE(t.Contains(0x2000f));
  EXPECT_TRUE(t.Remove(0x10000));
  EXPECT_FALSE(t.Contains(0x10080));
  EXPECT_FALSE(t.Remove(0x10000));
}

TEST(AllocTableTest, RemoveOwnedBy) {
  AllocTable t(false);
  int a = 0, b = 0;
  t.Insert(0x1000, 16, AllocTable::Kind::kAlloc, &a);
  t.Insert(0x2000, 16, AllocTable::Kind::kAlloc, &b);
  t.Insert(0x3000, 16, AllocTable::Kind::kGlobal, &a);
  auto removed = t.RemoveOwnedBy(&a);
  EXPECT_EQ(removed.size(), 2u);
  EXPECT_FALSE(t.Contains(0x1000));
  EXPECT_TRUE(t.Contains(0x2000));
  EXPECT_FALSE(t.Contains(0x3000));
}

TEST(AllocTableTest, ReservesDeviceRangesInTheAddressSpace) {
  AllocTable t(true);
  // A range far from anything this process maps.
  const uint64_t base = 0x6ff000000000ull;
  t.Insert(base, 1 << 20, AllocTable::Kind::kAlloc, nullptr);
  AllocTable::Record r;
  ASSERT_TRUE(t.Find(base, &r));
  EXPECT_TRUE(r.reserved);
  // A second table cannot reserve the same range: it is taken.
  AllocTable other(true);
  other.Insert(base, 4096, AllocTable::Kind::kAlloc, nullptr);
  ASSERT_TRUE(other.Find(base, &r));
  EXPECT_FALSE(r.reserved);
  other.Clear();
  t.Remove(base);
  // Released: now it can be reserved again.
  AllocTable again(true);
  again.Insert(base, 4096, AllocTable::Kind::kAlloc, nullptr);
  ASSERT_TRUE(again.Find(base, &r));
  EXPECT_TRUE(r.reserved);
}

TEST(LogTest, ParsesLevels) {
  LogLevel l = LogLevel::kOff;
  EXPECT_TRUE(ParseLogLevel("debug", &l));
  EXPECT_EQ(l, LogLevel::kDebug);
  EXPECT_TRUE(ParseLogLevel("WARN", &l));
  EXPECT_EQ(l, LogLevel::kWarn);
  EXPECT_TRUE(ParseLogLevel("off", &l));
  EXPECT_EQ(l, LogLevel::kOff);
  EXPECT_FALSE(ParseLogLevel("loud", &l));
  EXPECT_FALSE(ParseLogLevel(nullptr, &l));
}

}  // namespace
}  // namespace wooly::client
