// MD2 (RFC 1319) and HMAC-MD2 (RFC 2104), as used by the driver's integrity
// check export table (see docs/export-tables.md). Not for anything that
// needs a secure hash: MD2 is only here because libcudart expects it.
// Thread safety: pure functions.
#ifndef WOOLY_CLIENT_HMAC_MD2_H_
#define WOOLY_CLIENT_HMAC_MD2_H_

#include <array>
#include <cstddef>
#include <cstdint>

namespace wooly::client {

using Md2Digest = std::array<uint8_t, 16>;

class Md2 {
 public:
  Md2() { Reset(); }
  void Reset();
  void Update(const void* data, size_t n);
  Md2Digest Final();  // also resets

 private:
  void Block(const uint8_t* b);
  uint8_t x_[48];
  uint8_t c_[16];
  uint8_t buf_[16];
  uint8_t l_;
  size_t used_;
};

Md2Digest Md2Of(const void* data, size_t n);
// HMAC with MD2; `key` is at most one 16-byte block (longer keys are hashed).
Md2Digest HmacMd2(const uint8_t* key, size_t key_len, const void* msg, size_t n);

}  // namespace wooly::client

#endif  // WOOLY_CLIENT_HMAC_MD2_H_
