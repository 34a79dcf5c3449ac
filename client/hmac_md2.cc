#include "hmac_md2.h"

#include <cstring>
#include <vector>

namespace wooly::client {
namespace {

// RFC 1319's substitution table (a permutation of 0..255 built from pi).
constexpr uint8_t kS[256] = {
    41,  46,  67,  201, 162, 216, 124, 1,   61,  54,  84,  161, 236, 240, 6,   19,  98,  167, 5,
    243, 192, 199, 115, 140, 152, 147, 43,  217, 188, 76,  130, 202, 30,  155, 87,  60,  253, 212,
    224, 22,  103, 66,  111, 24,  138, 23,  229, 18,  190, 78,  196, 214, 218, 158, 222, 73,  160,
    251, 245, 142, 187, 47,  238, 122, 169, 104, 121, 145, 21,  178, 7,   63,  148, 194, 16,  137,
    11,  34,  95,  33,  128, 127, 93,  154, 90,  144, 50,  39,  53,  62,  204, 231, 191, 247, 151,
    3,   255, 25,  48,  179, 72,  165, 181, 209, 215, 94,  146, 42,  172, 86,  170, 198, 79,  184,
    56,  210, 150, 164, 125, 182, 118, 252, 107, 226, 156, 116, 4,   241, 69,  157, 112, 89,  100,
    113, 135, 32,  134, 91,  207, 101, 230, 45,  168, 2,   27,  96,  37,  173, 174, 176, 185, 246,
    28,  70,  97,  105, 52,  64,  126, 15,  85,  71,  163, 35,  221, 81,  175, 58,  195, 92,  249,
    206, 186, 197, 234, 38,  44,  83,  13,  110, 133, 40,  132, 9,   211, 223, 205, 244, 65,  129,
    77,  82,  106, 220, 55,  200, 108, 193, 171, 250, 36,  225, 123, 8,   12,  189, 177, 74,  120,
    136, 149, 139, 227, 99,  232, 109, 233, 203, 213, 254, 59,  0,   29,  57,  242, 239, 183, 14,
    102, 88,  208, 228, 166, 119, 114, 248, 235, 117, 75,  10,  49,  68,  80,  180, 143, 237, 31,
    26,  219, 153, 141, 51,  159, 17,  131, 20};

}  // namespace

void Md2::Reset() {
  std::memset(x_, 0, sizeof(x_));
  std::memset(c_, 0, sizeof(c_));
  l_ = 0;
  used_ = 0;
}

void Md2::Block(const uint8_t* b) {
  // Checksum update, then the 18-round transform over the 48-byte state.
  for (int i = 0; i < 16; ++i) {
    c_[i] ^= kS[b[i] ^ l_];
    l_ = c_[i];
  }
  for (int i = 0; i < 16; ++i) {
    x_[16 + i] = b[i];
    x_[32 + i] = static_cast<uint8_t>(x_[i] ^ b[i]);
  }
  uint8_t t = 0;
  for (int round = 0; round < 18; ++round) {
    for (int k = 0; k < 48; ++k) t = x_[k] ^= kS[t];
    t = static_cast<uint8_t>(t + round);
  }
}

void Md2::Update(const void* data, size_t n) {
  const uint8_t* p = static_cast<const uint8_t*>(data);
  while (n > 0) {
    const size_t take = n < 16 - used_ ? n : 16 - used_;
    std::memcpy(buf_ + used_, p, take);
    used_ += take;
    p += take;
    n -= take;
    if (used_ == 16) {
      Block(buf_);
      used_ = 0;
    }
  }
}

Md2Digest Md2::Final() {
  const uint8_t pad = static_cast<uint8_t>(16 - used_);
  uint8_t padding[16];
  std::memset(padding, pad, sizeof(padding));
  Update(padding, pad);
  uint8_t checksum[16];
  std::memcpy(checksum, c_, 16);
  Block(checksum);
  Md2Digest out;
  std::memcpy(out.data(), x_, 16);
  Reset();
  return out;
}

Md2Digest Md2Of(const void* data, size_t n) {
  Md2 h;
  h.Update(data, n);
  return h.Final();
}

Md2Digest HmacMd2(const uint8_t* key, size_t key_len, const void* msg, size_t n) {
  uint8_t k[16] = {};
  if (key_len > 16) {
    const Md2Digest d = Md2Of(key, key_len);
    std::memcpy(k, d.data(), 16);
  } else {
    std::memcpy(k, key, key_len);
  }
  uint8_t ipad[16], opad[16];
  for (int i = 0; i < 16; ++i) {
    ipad[i] = k[i] ^ 0x36;
    opad[i] = k[i] ^ 0x5c;
  }
  Md2 inner;
  inner.Update(ipad, 16);
  inner.Update(msg, n);
  const Md2Digest ih = inner.Final();
  Md2 outer;
  outer.Update(opad, 16);
  outer.Update(ih.data(), ih.size());
  return outer.Final();
}

}  // namespace wooly::client
