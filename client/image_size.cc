#include "image_size.h"

#include <cstring>

namespace wooly::client {
namespace {

template <typename T>
T Load(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

// Adds a and b into *acc as max(*acc, a + b); false on overflow.
bool MaxEnd(uint64_t a, uint64_t b, uint64_t* acc) {
  uint64_t end = a + b;
  if (end < a) return false;
  if (end > *acc) *acc = end;
  return true;
}

constexpr uint32_t kShtNobits = 8;
// A sanity bound: nothing loadable is this big and it keeps the arithmetic
// far from overflow.
constexpr uint64_t kMaxImage = uint64_t{1} << 40;

bool ElfSize(const uint8_t* p, size_t* out) {
  const bool is64 = p[4] == 2;
  if (!is64 && p[4] != 1) return false;
  if (p[5] != 1) return false;  // little-endian only: CUDA targets are LE
  uint64_t end = 0;
  uint64_t shoff, phoff;
  uint32_t shentsize, shnum, phentsize, phnum;
  if (is64) {
    phoff = Load<uint64_t>(p + 0x20);
    shoff = Load<uint64_t>(p + 0x28);
    MaxEnd(Load<uint16_t>(p + 0x34), 0, &end);  // e_ehsize
    phentsize = Load<uint16_t>(p + 0x36);
    phnum = Load<uint16_t>(p + 0x38);
    shentsize = Load<uint16_t>(p + 0x3a);
    shnum = Load<uint16_t>(p + 0x3c);
  } else {
    phoff = Load<uint32_t>(p + 0x1c);
    shoff = Load<uint32_t>(p + 0x20);
    MaxEnd(Load<uint16_t>(p + 0x28), 0, &end);
    phentsize = Load<uint16_t>(p + 0x2a);
    phnum = Load<uint16_t>(p + 0x2c);
    shentsize = Load<uint16_t>(p + 0x2e);
    shnum = Load<uint16_t>(p + 0x30);
  }
  if (phoff > kMaxImage || shoff > kMaxImage) return false;
  const uint32_t min_sh = is64 ? 64 : 40;
  const uint32_t min_ph = is64 ? 56 : 32;
  if (shoff != 0) {
    if (shentsize < min_sh) return false;
    // Extended numbering: the real count lives in section 0's sh_size.
    if (shnum == 0) {
      const uint8_t* s0 = p + shoff;
      uint64_t n = is64 ? Load<uint64_t>(s0 + 0x20) : Load<uint32_t>(s0 + 0x14);
      if (n > (1u << 24)) return false;
      shnum = static_cast<uint32_t>(n);
    }
    if (!MaxEnd(shoff, uint64_t{shnum} * shentsize, &end)) return false;
    for (uint32_t i = 0; i < shnum; ++i) {
      const uint8_t* sh = p + shoff + uint64_t{i} * shentsize;
      const uint32_t type = Load<uint32_t>(sh + 4);
      if (type == kShtNobits) continue;  // occupies no file space
      uint64_t off = is64 ? Load<uint64_t>(sh + 0x18) : Load<uint32_t>(sh + 0x10);
      uint64_t size = is64 ? Load<uint64_t>(sh + 0x20) : Load<uint32_t>(sh + 0x14);
      if (off > kMaxImage || size > kMaxImage) return false;
      MaxEnd(off, size, &end);
    }
  }
  if (phoff != 0 && phnum != 0) {
    if (phentsize < min_ph) return false;
    if (!MaxEnd(phoff, uint64_t{phnum} * phentsize, &end)) return false;
    for (uint32_t i = 0; i < phnum; ++i) {
      const uint8_t* ph = p + phoff + uint64_t{i} * phentsize;
      uint64_t off = is64 ? Load<uint64_t>(ph + 0x08) : Load<uint32_t>(ph + 0x04);
      uint64_t filesz = is64 ? Load<uint64_t>(ph + 0x20) : Load<uint32_t>(ph + 0x10);
      if (off > kMaxImage || filesz > kMaxImage) return false;
      MaxEnd(off, filesz, &end);
    }
  }
  if (end == 0 || end > kMaxImage) return false;
  *out = static_cast<size_t>(end);
  return true;
}

bool FatbinSize(const uint8_t* p, size_t* out) {
  // u32 magic, u16 version, u16 header_size, u64 fat_size.
  const uint16_t header_size = Load<uint16_t>(p + 6);
  const uint64_t fat_size = Load<uint64_t>(p + 8);
  if (header_size < 16 || fat_size > kMaxImage) return false;
  *out = static_cast<size_t>(header_size + fat_size);
  return true;
}

}  // namespace

bool DetermineImage(const void* image, ImageSpan* out) {
  if (image == nullptr || out == nullptr) return false;
  const uint8_t* p = static_cast<const uint8_t*>(image);
  // Every binary format starts with a 4-byte magic; text never has a NUL in
  // its first bytes unless it is shorter than the magic, so look at it one
  // byte at a time to avoid reading past a short string.
  if (p[0] == 0x7f && p[1] == 'E' && p[2] == 'L' && p[3] == 'F') {
    out->data = p;
    out->kind = ImageKind::kElf;
    return ElfSize(p, &out->size);
  }
  if (p[0] != 0 && p[1] != 0 && p[2] != 0 && p[3] != 0) {
    const uint32_t magic = Load<uint32_t>(p);
    if (magic == kFatbinMagic) {
      out->data = p;
      out->kind = ImageKind::kFatbin;
      return FatbinSize(p, &out->size);
    }
    if (magic == kFatbinWrapperMagic) {
      // struct { int magic; int version; const unsigned long long* data;
      //          void* filename_or_fatbins; }
      const uint8_t* data = Load<const uint8_t*>(p + 8);
      if (data == nullptr || Load<uint32_t>(data) != kFatbinMagic) return false;
      out->data = data;
      out->kind = ImageKind::kFatbinWrapper;
      return FatbinSize(data, &out->size);
    }
  }
  out->data = p;
  out->kind = ImageKind::kText;
  out->size = std::strlen(reinterpret_cast<const char*>(p)) + 1;
  return true;
}

}  // namespace wooly::client
