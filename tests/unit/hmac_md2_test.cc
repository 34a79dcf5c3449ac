#include "hmac_md2.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>
#include <string>

namespace wooly::client {
namespace {

std::string Hex(const Md2Digest& d) {
  std::string s;
  char b[3];
  for (uint8_t v : d) {
    std::snprintf(b, sizeof b, "%02x", v);
    s += b;
  }
  return s;
}

TEST(Md2, Rfc1319Vectors) {
  EXPECT_EQ(Hex(Md2Of("", 0)), "8350e5a3e24c153df2275c9f80692773");
  EXPECT_EQ(Hex(Md2Of("a", 1)), "32ec01ec4a6dac72c0ab96fb34c0b5d1");
  EXPECT_EQ(Hex(Md2Of("abc", 3)), "da853b0d3f88d99b30283a69e6ded6bb");
  const std::string alpha = "abcdefghijklmnopqrstuvwxyz";
  EXPECT_EQ(Hex(Md2Of(alpha.data(), alpha.size())), "4e8ddff3650292ab5a4108c3aa47940b");
}

TEST(Md2, IncrementalEqualsOneShot) {
  std::string msg(1000, '\0');
  for (size_t i = 0; i < msg.size(); ++i) msg[i] = static_cast<char>(i * 7 + 3);
  Md2 h;
  for (size_t i = 0; i < msg.size(); i += 37) h.Update(msg.data() + i, std::min<size_t>(37, msg.size() - i));
  EXPECT_EQ(Hex(h.Final()), Hex(Md2Of(msg.data(), msg.size())));
}

// Inputs and output recorded from the real driver's integrity check on the
// lent H100 (driver 580.159.04), see docs/export-tables.md.
TEST(HmacMd2, MatchesRealDriverIntegrityVector) {
  const uint8_t key[16] = {0x14, 0x6a, 0xdd, 0xae, 0x53, 0xa9, 0xa7, 0x52,
                           0xaa, 0x08, 0x41, 0x36, 0x0b, 0xf5, 0x5a, 0x9f};
#pragma pack(push, 1)
  struct {
    uint32_t driver_version, version, pid, tid;
    uint64_t cudart_table, integrity_table, check_fn, unix_seconds;
    uint8_t uuid[16];
    int32_t pci_domain, pci_bus, pci_device;
  } m;
#pragma pack(pop)
  static_assert(sizeof(m) == 48 + 28);
  m.driver_version = 13000;
  m.pid = 405;
  m.tid = 348538688;
  m.cudart_table = 0x7f1f1484c680;
  m.integrity_table = 0x7f1f1484c660;
  m.check_fn = 0x7f1f0f1ab350;
  m.unix_seconds = 1700000000;
  const uint8_t uuid[16] = {0xf2, 0x58, 0xba, 0x7a, 0x9f, 0x7b, 0x89, 0x7e,
                            0xc7, 0xaf, 0x82, 0xd3, 0x4d, 0x9a, 0x6d, 0x42};
  std::memcpy(m.uuid, uuid, 16);
  m.pci_domain = 0;
  m.pci_bus = 0;
  m.pci_device = 6;
  uint64_t out[2];

  m.version = 13002;
  Md2Digest d = HmacMd2(key, 16, &m, sizeof(m));
  std::memcpy(out, d.data(), 16);
  EXPECT_EQ(out[0], 0xf9e9fe147d1859d8ull);
  EXPECT_EQ(out[1], 0x0b11ea4d6dc25b7bull);

  m.version = 13003;
  d = HmacMd2(key, 16, &m, sizeof(m));
  std::memcpy(out, d.data(), 16);
  EXPECT_EQ(out[0], 0xfc6c3fda2138440bull);
  EXPECT_EQ(out[1], 0x395067b30cb80213ull);
}

}  // namespace
}  // namespace wooly::client
