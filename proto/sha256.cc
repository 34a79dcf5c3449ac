#include "wooly/proto/sha256.h"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <system_error>
#include <thread>
#include <vector>

#include "tree_digest.h"

#if defined(__x86_64__) || defined(__i386__)
#define WOOLY_SHA256_X86 1
#include <cpuid.h>
#include <immintrin.h>
#endif

namespace wooly::wire {
namespace {

// FIPS 180-4, 4.2.2: the first 32 bits of the fractional parts of the cube
// roots of the first 64 primes.
alignas(16) constexpr uint32_t kRound[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};

// FIPS 180-4, 5.3.3: initial hash value.
constexpr uint32_t kInit[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                               0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};

inline uint32_t Rotr(uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }

inline uint32_t LoadBe32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | uint32_t{p[3]};
}

void BlocksPortable(uint32_t state[8], const uint8_t* p, size_t n_blocks) {
  uint32_t w[64];
  for (; n_blocks > 0; --n_blocks, p += 64) {
    for (int t = 0; t < 16; ++t) w[t] = LoadBe32(p + 4 * t);
    for (int t = 16; t < 64; ++t) {
      const uint32_t s0 = Rotr(w[t - 15], 7) ^ Rotr(w[t - 15], 18) ^ (w[t - 15] >> 3);
      const uint32_t s1 = Rotr(w[t - 2], 17) ^ Rotr(w[t - 2], 19) ^ (w[t - 2] >> 10);
      w[t] = w[t - 16] + s0 + w[t - 7] + s1;
    }
    uint32_t a = state[0], b = state[1], c = state[2], d = state[3];
    uint32_t e = state[4], f = state[5], g = state[6], h = state[7];
    for (int t = 0; t < 64; ++t) {
      const uint32_t s1 = Rotr(e, 6) ^ Rotr(e, 11) ^ Rotr(e, 25);
      const uint32_t ch = (e & f) ^ (~e & g);
      const uint32_t t1 = h + s1 + ch + kRound[t] + w[t];
      const uint32_t s0 = Rotr(a, 2) ^ Rotr(a, 13) ^ Rotr(a, 22);
      const uint32_t maj = (a & b) ^ (a & c) ^ (b & c);
      const uint32_t t2 = s0 + maj;
      h = g;
      g = f;
      f = e;
      e = d + t1;
      d = c;
      c = b;
      b = a;
      a = t1 + t2;
    }
    state[0] += a;
    state[1] += b;
    state[2] += c;
    state[3] += d;
    state[4] += e;
    state[5] += f;
    state[6] += g;
    state[7] += h;
  }
}

#ifdef WOOLY_SHA256_X86

// SHA256RNDS2 works on the state split as {A,B,E,F} and {C,D,G,H} (most
// significant dword first) and does two rounds per instruction, taking the
// two W[t]+K[t] words from the low half of its third operand. After two
// rounds the new C,D,G,H are the old A,B,E,F, so the two registers swap roles
// on every call, which the pairs of calls below undo.
__attribute__((target("sha,sse4.1"))) void BlocksShaNi(uint32_t state[8], const uint8_t* p,
                                                       size_t n_blocks) {
  // Reverses the bytes of each dword: the message words are big-endian.
  const __m128i bswap = _mm_set_epi64x(0x0c0d0e0f08090a0bLL, 0x0405060700010203LL);

  // {a,b,c,d},{e,f,g,h} -> ABEF = {f,e,b,a}, CDGH = {h,g,d,c} (dword 0 first).
  __m128i abcd = _mm_loadu_si128(reinterpret_cast<const __m128i*>(state));
  __m128i efgh = _mm_loadu_si128(reinterpret_cast<const __m128i*>(state + 4));
  abcd = _mm_shuffle_epi32(abcd, 0xB1);  // {b,a,d,c}
  efgh = _mm_shuffle_epi32(efgh, 0x1B);  // {h,g,f,e}
  __m128i abef = _mm_alignr_epi8(abcd, efgh, 8);
  __m128i cdgh = _mm_blend_epi16(efgh, abcd, 0xF0);

  for (; n_blocks > 0; --n_blocks, p += 64) {
    const __m128i abef_in = abef;
    const __m128i cdgh_in = cdgh;
    // m[i % 4] holds W[4i .. 4i+3] for the group of four rounds being done.
    __m128i m[4];
    for (int i = 0; i < 4; ++i) {
      m[i] = _mm_shuffle_epi8(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 16 * i)), bswap);
    }
#pragma GCC unroll 16
    for (int i = 0; i < 16; ++i) {
      if (i >= 4) {
        // W[t] = s1(W[t-2]) + W[t-7] + s0(W[t-15]) + W[t-16] for t = 4i..4i+3:
        // msg1 adds the s0 terms to W[t-16], the alignr supplies W[t-7], and
        // msg2 adds the s1 terms (which depend on the new words themselves).
        __m128i x = _mm_sha256msg1_epu32(m[i % 4], m[(i + 1) % 4]);
        x = _mm_add_epi32(x, _mm_alignr_epi8(m[(i + 3) % 4], m[(i + 2) % 4], 4));
        m[i % 4] = _mm_sha256msg2_epu32(x, m[(i + 3) % 4]);
      }
      const __m128i wk =
          _mm_add_epi32(m[i % 4], _mm_load_si128(reinterpret_cast<const __m128i*>(kRound + 4 * i)));
      cdgh = _mm_sha256rnds2_epu32(cdgh, abef, wk);                           // now ABEF
      abef = _mm_sha256rnds2_epu32(abef, cdgh, _mm_shuffle_epi32(wk, 0x0E));  // ABEF again
    }
    abef = _mm_add_epi32(abef, abef_in);
    cdgh = _mm_add_epi32(cdgh, cdgh_in);
  }

  // Back to {a,b,c,d},{e,f,g,h}.
  const __m128i a_b_e_f = _mm_shuffle_epi32(abef, 0x1B);  // {a,b,e,f}
  const __m128i g_h_c_d = _mm_shuffle_epi32(cdgh, 0xB1);  // {g,h,c,d}
  _mm_storeu_si128(reinterpret_cast<__m128i*>(state), _mm_blend_epi16(a_b_e_f, g_h_c_d, 0xF0));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(state + 4), _mm_alignr_epi8(g_h_c_d, a_b_e_f, 8));
}

bool DetectShaNi() {
  unsigned eax, ebx, ecx, edx;
  if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) return false;
  const bool ssse3 = ecx & (1u << 9);
  const bool sse41 = ecx & (1u << 19);
  if (!__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx)) return false;
  const bool sha = ebx & (1u << 29);
  return ssse3 && sse41 && sha;
}

#endif  // WOOLY_SHA256_X86

}  // namespace

bool Sha256::ShaNiAvailable() {
#ifdef WOOLY_SHA256_X86
  static const bool available = DetectShaNi();
  return available;
#else
  return false;
#endif
}

Sha256::Sha256(Impl impl) {
  const bool sha_ni = impl != Impl::kPortable && ShaNiAvailable();
#ifdef WOOLY_SHA256_X86
  if (sha_ni) {
    impl_ = Impl::kShaNi;
    block_fn_ = &BlocksShaNi;
  } else
#endif
  {
    (void)sha_ni;
    impl_ = Impl::kPortable;
    block_fn_ = &BlocksPortable;
  }
  Reset();
}

void Sha256::Reset() {
  std::memcpy(state_, kInit, sizeof state_);
  total_len_ = 0;
  buffer_len_ = 0;
}

void Sha256::Update(const void* data, size_t len) {
  const uint8_t* p = static_cast<const uint8_t*>(data);
  total_len_ += len;
  if (buffer_len_ > 0) {
    const size_t take = len < 64 - buffer_len_ ? len : 64 - buffer_len_;
    std::memcpy(buffer_ + buffer_len_, p, take);
    buffer_len_ += take;
    p += take;
    len -= take;
    if (buffer_len_ < 64) return;
    block_fn_(state_, buffer_, 1);
    buffer_len_ = 0;
  }
  // Whole blocks straight from the caller's memory, without copying.
  if (const size_t n = len / 64; n > 0) {
    block_fn_(state_, p, n);
    p += n * 64;
    len -= n * 64;
  }
  if (len > 0) {
    std::memcpy(buffer_, p, len);
    buffer_len_ = len;
  }
}

Sha256Hash Sha256::Final() {
  const uint64_t bit_len = total_len_ * 8;
  // Padding: 0x80, zeros up to 56 mod 64, then the bit length big-endian.
  uint8_t pad[72] = {0x80};
  const size_t pad_len = (buffer_len_ < 56 ? 56 : 120) - buffer_len_;
  for (int i = 0; i < 8; ++i) pad[pad_len + i] = static_cast<uint8_t>(bit_len >> (56 - 8 * i));
  Update(pad, pad_len + 8);

  Sha256Hash out;
  for (int i = 0; i < 8; ++i) {
    out[4 * i] = static_cast<uint8_t>(state_[i] >> 24);
    out[4 * i + 1] = static_cast<uint8_t>(state_[i] >> 16);
    out[4 * i + 2] = static_cast<uint8_t>(state_[i] >> 8);
    out[4 * i + 3] = static_cast<uint8_t>(state_[i]);
  }
  Reset();
  return out;
}

Sha256Hash Sha256Digest(const void* data, size_t len) {
  Sha256 h;
  h.Update(data, len);
  return h.Final();
}

std::string ToHex(const Sha256Hash& digest) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string s(2 * digest.size(), '0');
  for (size_t i = 0; i < digest.size(); ++i) {
    s[2 * i] = kDigits[digest[i] >> 4];
    s[2 * i + 1] = kDigits[digest[i] & 0xF];
  }
  return s;
}

bool FromHex(std::string_view hex, Sha256Hash* out) {
  if (hex.size() != 2 * kSha256Size) return false;
  auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  for (size_t i = 0; i < kSha256Size; ++i) {
    const int hi = nibble(hex[2 * i]);
    const int lo = nibble(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return false;
    (*out)[i] = static_cast<uint8_t>(hi << 4 | lo);
  }
  return true;
}

Sha256Hash ImageDigest(const void* data, size_t len, unsigned threads) {
  const DigestInput in[] = {{data, len}};
  return ImageDigests(in, threads)[0];
}

std::vector<Sha256Hash> ImageDigests(std::span<const DigestInput> inputs, unsigned threads) {
  return internal::TreeDigests<Sha256Hash, Sha256>(inputs, threads, kImageDigestChunk,
                                                   Sha256Digest);
}

}  // namespace wooly::wire
