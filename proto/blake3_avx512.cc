// BLAKE3 compression of 16 inputs at once with AVX-512F: vector i holds state
// word i of all 16 inputs (one per 32-bit lane), so each step of the
// compression function is one instruction for all of them. Compiled with
// target attributes rather than a file-wide -mavx512f, so that nothing here
// runs unless the caller checked the CPU (Blake3::Avx512Available()).
#include "blake3_internal.h"

#ifdef WOOLY_BLAKE3_X86

#include <immintrin.h>

#include <cstring>

#define WOOLY_B3_AVX512 __attribute__((target("avx512f")))
#define WOOLY_B3_INLINE WOOLY_B3_AVX512 __attribute__((always_inline)) inline

// GCC 12's AVX-512 intrinsics pass a deliberately undefined vector as the
// unused merge source of unmasked instructions, which -Wmaybe-uninitialized
// reports once they are inlined here.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

namespace wooly::wire::blake3_internal {
namespace {

constexpr size_t kLanes = 16;

WOOLY_B3_INLINE void G(__m512i& a, __m512i& b, __m512i& c, __m512i& d, __m512i mx, __m512i my) {
  a = _mm512_add_epi32(_mm512_add_epi32(a, b), mx);
  d = _mm512_ror_epi32(_mm512_xor_si512(d, a), 16);
  c = _mm512_add_epi32(c, d);
  b = _mm512_ror_epi32(_mm512_xor_si512(b, c), 12);
  a = _mm512_add_epi32(_mm512_add_epi32(a, b), my);
  d = _mm512_ror_epi32(_mm512_xor_si512(d, a), 8);
  c = _mm512_add_epi32(c, d);
  b = _mm512_ror_epi32(_mm512_xor_si512(b, c), 7);
}

// A template so that the message indices are compile-time constants and the
// message words stay in registers (or at fixed stack slots).
template <int R>
WOOLY_B3_INLINE void Round(__m512i v[16], const __m512i m[16]) {
  constexpr auto s = kSchedule[R];
  G(v[0], v[4], v[8], v[12], m[s[0]], m[s[1]]);
  G(v[1], v[5], v[9], v[13], m[s[2]], m[s[3]]);
  G(v[2], v[6], v[10], v[14], m[s[4]], m[s[5]]);
  G(v[3], v[7], v[11], v[15], m[s[6]], m[s[7]]);
  G(v[0], v[5], v[10], v[15], m[s[8]], m[s[9]]);
  G(v[1], v[6], v[11], v[12], m[s[10]], m[s[11]]);
  G(v[2], v[7], v[8], v[13], m[s[12]], m[s[13]]);
  G(v[3], v[4], v[9], v[14], m[s[14]], m[s[15]]);
}

// Loads block `offset` of each of the 16 inputs (one row each) and
// transposes, so that m[w] holds message word w of every input.
WOOLY_B3_INLINE void LoadTransposed(const uint8_t* const in[kLanes], size_t offset, __m512i m[16]) {
  __m512i r[16];
#pragma GCC unroll 16
  for (size_t i = 0; i < kLanes; ++i) {
    r[i] = _mm512_loadu_si512(reinterpret_cast<const void*>(in[i] + offset));
  }
  // Within each 128-bit quarter: interleave words of input pairs, then
  // 64-bit pairs of those, giving t[4g + j] = word 4q + j of inputs
  // 4g .. 4g+3 in quarter q.
  __m512i a[16];
#pragma GCC unroll 8
  for (int i = 0; i < 16; i += 2) {
    a[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
    a[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
  }
  __m512i t[16];
#pragma GCC unroll 4
  for (int g = 0; g < 4; ++g) {
    t[4 * g + 0] = _mm512_unpacklo_epi64(a[4 * g], a[4 * g + 2]);
    t[4 * g + 1] = _mm512_unpackhi_epi64(a[4 * g], a[4 * g + 2]);
    t[4 * g + 2] = _mm512_unpacklo_epi64(a[4 * g + 1], a[4 * g + 3]);
    t[4 * g + 3] = _mm512_unpackhi_epi64(a[4 * g + 1], a[4 * g + 3]);
  }
  // A 4x4 transpose of 128-bit quarters: word 4q + j of all inputs comes
  // from quarter q of t[j], t[4 + j], t[8 + j], t[12 + j].
#pragma GCC unroll 4
  for (int j = 0; j < 4; ++j) {
    const __m512i lo01 = _mm512_shuffle_i32x4(t[j], t[4 + j], 0x44);       // q0 q1 | q0 q1
    const __m512i hi01 = _mm512_shuffle_i32x4(t[j], t[4 + j], 0xee);       // q2 q3 | q2 q3
    const __m512i lo23 = _mm512_shuffle_i32x4(t[8 + j], t[12 + j], 0x44);  // q0 q1 | q0 q1
    const __m512i hi23 = _mm512_shuffle_i32x4(t[8 + j], t[12 + j], 0xee);  // q2 q3 | q2 q3
    m[j] = _mm512_shuffle_i32x4(lo01, lo23, 0x88);
    m[4 + j] = _mm512_shuffle_i32x4(lo01, lo23, 0xdd);
    m[8 + j] = _mm512_shuffle_i32x4(hi01, hi23, 0x88);
    m[12 + j] = _mm512_shuffle_i32x4(hi01, hi23, 0xdd);
  }
}

WOOLY_B3_AVX512 void HashGroup(const uint8_t* const in[kLanes], const uint8_t* const next[kLanes],
                               size_t blocks, const uint32_t counter_lo[kLanes],
                               const uint32_t counter_hi[kLanes], uint32_t flags,
                               uint32_t start_flags, uint32_t end_flags, uint32_t out[8][kLanes]) {
  __m512i h[8];
#pragma GCC unroll 8
  for (int i = 0; i < 8; ++i) h[i] = _mm512_set1_epi32(static_cast<int>(kIv[i]));
  const __m512i lo = _mm512_loadu_si512(counter_lo);
  const __m512i hi = _mm512_loadu_si512(counter_hi);
  const __m512i block_len = _mm512_set1_epi32(static_cast<int>(kBlockSize));
  for (size_t b = 0; b < blocks; ++b) {
    __m512i m[16];
    LoadTransposed(in, b * kBlockSize, m);
    // The lanes' 1 KiB-apart streams defeat the hardware prefetcher; the
    // next group's matching block, one group of work ahead, is far enough
    // ahead to hide memory latency and near enough to stay in L2.
#pragma GCC unroll 16
    for (size_t i = 0; i < kLanes; ++i) {
      _mm_prefetch(reinterpret_cast<const char*>(next[i] + b * kBlockSize), _MM_HINT_T1);
    }
    uint32_t f = flags;
    if (b == 0) f |= start_flags;
    if (b + 1 == blocks) f |= end_flags;
    // State: chaining values, four IV words, counters, block length, flags.
    __m512i v[16];
#pragma GCC unroll 8
    for (int i = 0; i < 8; ++i) v[i] = h[i];
#pragma GCC unroll 4
    for (int i = 0; i < 4; ++i) v[8 + i] = _mm512_set1_epi32(static_cast<int>(kIv[i]));
    v[12] = lo;
    v[13] = hi;
    v[14] = block_len;
    v[15] = _mm512_set1_epi32(static_cast<int>(f));
    Round<0>(v, m);
    Round<1>(v, m);
    Round<2>(v, m);
    Round<3>(v, m);
    Round<4>(v, m);
    Round<5>(v, m);
    Round<6>(v, m);
#pragma GCC unroll 8
    for (int i = 0; i < 8; ++i) h[i] = _mm512_xor_si512(v[i], v[i + 8]);
  }
#pragma GCC unroll 8
  for (int i = 0; i < 8; ++i) _mm512_storeu_si512(out[i], h[i]);
}

}  // namespace

void HashManyAvx512(const uint8_t* const* inputs, size_t n, size_t blocks, uint64_t counter,
                    bool increment_counter, uint32_t flags, uint32_t start_flags,
                    uint32_t end_flags, uint8_t* out) {
  for (size_t first = 0; first < n; first += kLanes) {
    const size_t lanes = n - first < kLanes ? n - first : kLanes;
    // Missing lanes of a last, partial group repeat its first input; their
    // results are dropped.
    const uint8_t* in[kLanes];
    alignas(64) uint32_t counter_lo[kLanes];
    alignas(64) uint32_t counter_hi[kLanes];
    for (size_t i = 0; i < kLanes; ++i) {
      in[i] = inputs[first + (i < lanes ? i : 0)];
      const uint64_t c = counter + (increment_counter ? first + i : 0);
      counter_lo[i] = static_cast<uint32_t>(c);
      counter_hi[i] = static_cast<uint32_t>(c >> 32);
    }
    const uint8_t* next[kLanes];  // the next group's inputs, to prefetch
    for (size_t i = 0; i < kLanes; ++i) {
      next[i] = first + kLanes + i < n ? inputs[first + kLanes + i] : in[i];
    }
    alignas(64) uint32_t cv[8][kLanes];
    HashGroup(in, next, blocks, counter_lo, counter_hi, flags, start_flags, end_flags, cv);
    // Words are little-endian in memory on x86, as the digest wants.
    for (size_t i = 0; i < lanes; ++i) {
      uint32_t words[8];
      for (int w = 0; w < 8; ++w) words[w] = cv[w][i];
      std::memcpy(out + 32 * (first + i), words, sizeof words);
    }
  }
}

}  // namespace wooly::wire::blake3_internal

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

#endif  // WOOLY_BLAKE3_X86
