#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "image_size.h"

namespace wooly::client {
namespace {

template <typename T>
void Store(std::vector<uint8_t>& b, size_t at, T v) {
  if (b.size() < at + sizeof(T)) b.resize(at + sizeof(T));
  std::memcpy(b.data() + at, &v, sizeof(T));
}

// A 64-bit little-endian ELF with `n` sections; section i (1-based) covers
// [offsets[i-1], offsets[i-1] + sizes[i-1]).
std::vector<uint8_t> MakeElf64(uint64_t shoff,
                               const std::vector<std::pair<uint64_t, uint64_t>>& secs,
                               const std::vector<uint32_t>& types = {}) {
  std::vector<uint8_t> b(64, 0);
  b[0] = 0x7f;
  b[1] = 'E';
  b[2] = 'L';
  b[3] = 'F';
  b[4] = 2;  // ELFCLASS64
  b[5] = 1;  // little-endian
  b[6] = 1;
  Store<uint64_t>(b, 0x28, shoff);
  Store<uint16_t>(b, 0x34, 64);
  Store<uint16_t>(b, 0x3a, 64);
  Store<uint16_t>(b, 0x3c, static_cast<uint16_t>(secs.size() + 1));
  size_t end = shoff + 64 * (secs.size() + 1);
  for (auto& [off, size] : secs) end = std::max<size_t>(end, off + size);
  b.resize(std::max(b.size(), end), 0);
  // Section 0 is the null section.
  for (size_t i = 0; i < secs.size(); ++i) {
    const size_t sh = shoff + 64 * (i + 1);
    Store<uint32_t>(b, sh + 4, types.empty() ? 1u : types[i]);  // SHT_PROGBITS
    Store<uint64_t>(b, sh + 0x18, secs[i].first);
    Store<uint64_t>(b, sh + 0x20, secs[i].second);
  }
  return b;
}

TEST(ImageSizeTest, ElfSectionTableAtTheEnd) {
  // Sections first, then the header table (the usual cubin layout).
  auto elf = MakeElf64(/*shoff=*/512, {{64, 100}, {164, 300}});
  ImageSpan span;
  ASSERT_TRUE(DetermineImage(elf.data(), &span));
  EXPECT_EQ(span.kind, ImageKind::kElf);
  EXPECT_EQ(span.data, elf.data());
  EXPECT_EQ(span.size, 512u + 3 * 64);
}

TEST(ImageSizeTest, ElfSectionDataAfterTheTable) {
  auto elf = MakeElf64(/*shoff=*/64, {{256, 100}, {400, 1000}});
  ImageSpan span;
  ASSERT_TRUE(DetermineImage(elf.data(), &span));
  EXPECT_EQ(span.size, 1400u);
  EXPECT_EQ(span.size, elf.size());
}

TEST(ImageSizeTest, ElfNobitsSectionsTakeNoFileSpace) {
  const uint32_t kNobits = 8;
  auto elf = MakeElf64(/*shoff=*/64, {{256, 100}, {356, 1u << 20}}, {1, kNobits});
  ImageSpan span;
  ASSERT_TRUE(DetermineImage(elf.data(), &span));
  EXPECT_EQ(span.size, 356u);
}

TEST(ImageSizeTest, ElfProgramHeadersCount) {
  auto elf = MakeElf64(/*shoff=*/64, {{256, 100}});
  // One program header at 1024 with a segment ending at 3000.
  Store<uint64_t>(elf, 0x20, 1024);
  Store<uint16_t>(elf, 0x36, 56);
  Store<uint16_t>(elf, 0x38, 1);
  elf.resize(3000, 0);
  Store<uint64_t>(elf, 1024 + 0x08, 2000);
  Store<uint64_t>(elf, 1024 + 0x20, 1000);
  ImageSpan span;
  ASSERT_TRUE(DetermineImage(elf.data(), &span));
  EXPECT_EQ(span.size, 3000u);
}

TEST(ImageSizeTest, ElfWithBadEntrySizeIsRejected) {
  auto elf = MakeElf64(/*shoff=*/64, {{256, 100}});
  Store<uint16_t>(elf, 0x3a, 8);  // e_shentsize too small
  ImageSpan span;
  EXPECT_FALSE(DetermineImage(elf.data(), &span));
}

std::vector<uint8_t> MakeFatbin(uint16_t header_size, uint64_t fat_size) {
  std::vector<uint8_t> b(header_size + fat_size, 0xab);
  Store<uint32_t>(b, 0, kFatbinMagic);
  Store<uint16_t>(b, 4, 1);
  Store<uint16_t>(b, 6, header_size);
  Store<uint64_t>(b, 8, fat_size);
  return b;
}

TEST(ImageSizeTest, Fatbin) {
  auto fat = MakeFatbin(16, 4000);
  ImageSpan span;
  ASSERT_TRUE(DetermineImage(fat.data(), &span));
  EXPECT_EQ(span.kind, ImageKind::kFatbin);
  EXPECT_EQ(span.data, fat.data());
  EXPECT_EQ(span.size, 4016u);
}

TEST(ImageSizeTest, FatbinWrapperFollowsDataPointer) {
  auto fat = MakeFatbin(16, 123);
  struct Wrapper {
    int magic;
    int version;
    const unsigned long long* data;
    void* filename_or_fatbins;
  } wrapper{static_cast<int>(kFatbinWrapperMagic), 1,
            reinterpret_cast<const unsigned long long*>(fat.data()), nullptr};
  ImageSpan span;
  ASSERT_TRUE(DetermineImage(&wrapper, &span));
  EXPECT_EQ(span.kind, ImageKind::kFatbinWrapper);
  EXPECT_EQ(span.data, fat.data());
  EXPECT_EQ(span.size, 139u);
}

TEST(ImageSizeTest, WrapperWithoutFatbinIsRejected) {
  std::vector<uint8_t> junk(64, 0x11);
  struct {
    int magic;
    int version;
    const void* data;
    void* f;
  } wrapper{static_cast<int>(kFatbinWrapperMagic), 1, junk.data(), nullptr};
  ImageSpan span;
  EXPECT_FALSE(DetermineImage(&wrapper, &span));
}

TEST(ImageSizeTest, TextIsNulTerminated) {
  const char* ptx = ".version 8.0\n.target sm_90\n";
  ImageSpan span;
  ASSERT_TRUE(DetermineImage(ptx, &span));
  EXPECT_EQ(span.kind, ImageKind::kText);
  EXPECT_EQ(span.size, std::strlen(ptx) + 1);
  const char* fake = "WOOLY-FAKE-MODULE v1\nkernel vec_add 8 8 8 4\n";
  ASSERT_TRUE(DetermineImage(fake, &span));
  EXPECT_EQ(span.size, std::strlen(fake) + 1);
}

TEST(ImageSizeTest, ShortTextDoesNotReadPastItsEnd) {
  // Shorter than a magic number: must be treated as text of 2 or 1 bytes.
  const char one[] = "A";
  const char empty[] = "";
  const char elfish[] = "\x7f";
  ImageSpan span;
  ASSERT_TRUE(DetermineImage(one, &span));
  EXPECT_EQ(span.size, 2u);
  ASSERT_TRUE(DetermineImage(empty, &span));
  EXPECT_EQ(span.size, 1u);
  ASSERT_TRUE(DetermineImage(elfish, &span));
  EXPECT_EQ(span.size, 2u);
}

TEST(ImageSizeTest, NullIsRejected) {
  ImageSpan span;
  EXPECT_FALSE(DetermineImage(nullptr, &span));
}

}  // namespace
}  // namespace wooly::client
