// BLAKE3 compression of 8 inputs at once with AVX2: vector i holds state
// word i of all 8 inputs (one per 32-bit lane), so each step of the
// compression function is one instruction for all of them. Compiled with
// target attributes rather than a file-wide -mavx2, so that nothing here runs
// unless the caller checked the CPU (Blake3::Avx2Available()).
#include "blake3_internal.h"

#ifdef WOOLY_BLAKE3_X86

#include <immintrin.h>

#include <cstring>

#define WOOLY_B3_AVX2 __attribute__((target("avx2")))
#define WOOLY_B3_INLINE WOOLY_B3_AVX2 __attribute__((always_inline)) inline

namespace wooly::wire::blake3_internal {
namespace {

constexpr size_t kLanes = 8;

// AVX2 has no rotate: rotations by whole bytes are a byte shuffle (one
// instruction), the others two shifts and an or.
WOOLY_B3_INLINE __m256i Rotr16(__m256i x) {
  const __m256i k = _mm256_setr_epi8(2, 3, 0, 1, 6, 7, 4, 5, 10, 11, 8, 9, 14, 15, 12, 13, 2, 3, 0,
                                     1, 6, 7, 4, 5, 10, 11, 8, 9, 14, 15, 12, 13);
  return _mm256_shuffle_epi8(x, k);
}

WOOLY_B3_INLINE __m256i Rotr8(__m256i x) {
  const __m256i k = _mm256_setr_epi8(1, 2, 3, 0, 5, 6, 7, 4, 9, 10, 11, 8, 13, 14, 15, 12, 1, 2, 3,
                                     0, 5, 6, 7, 4, 9, 10, 11, 8, 13, 14, 15, 12);
  return _mm256_shuffle_epi8(x, k);
}

template <int N>
WOOLY_B3_INLINE __m256i Rotr(__m256i x) {
  return _mm256_or_si256(_mm256_srli_epi32(x, N), _mm256_slli_epi32(x, 32 - N));
}

WOOLY_B3_INLINE void G(__m256i& a, __m256i& b, __m256i& c, __m256i& d, __m256i mx, __m256i my) {
  a = _mm256_add_epi32(_mm256_add_epi32(a, b), mx);
  d = Rotr16(_mm256_xor_si256(d, a));
  c = _mm256_add_epi32(c, d);
  b = Rotr<12>(_mm256_xor_si256(b, c));
  a = _mm256_add_epi32(_mm256_add_epi32(a, b), my);
  d = Rotr8(_mm256_xor_si256(d, a));
  c = _mm256_add_epi32(c, d);
  b = Rotr<7>(_mm256_xor_si256(b, c));
}

// A template so that the message indices are compile-time constants.
template <int R>
WOOLY_B3_INLINE void Round(__m256i v[16], const __m256i m[16]) {
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

// Transposes 8 rows of 8 words: out[w] holds word w of every row.
WOOLY_B3_INLINE void Transpose8(const __m256i r[8], __m256i out[8]) {
  // Interleave words of row pairs, then 64-bit pairs of those: within each
  // 128-bit half h, t[4g + j] holds word 4h + j of rows 4g .. 4g+3.
  __m256i a[8];
#pragma GCC unroll 4
  for (int i = 0; i < 8; i += 2) {
    a[i] = _mm256_unpacklo_epi32(r[i], r[i + 1]);
    a[i + 1] = _mm256_unpackhi_epi32(r[i], r[i + 1]);
  }
  __m256i t[8];
#pragma GCC unroll 2
  for (int g = 0; g < 2; ++g) {
    t[4 * g + 0] = _mm256_unpacklo_epi64(a[4 * g], a[4 * g + 2]);
    t[4 * g + 1] = _mm256_unpackhi_epi64(a[4 * g], a[4 * g + 2]);
    t[4 * g + 2] = _mm256_unpacklo_epi64(a[4 * g + 1], a[4 * g + 3]);
    t[4 * g + 3] = _mm256_unpackhi_epi64(a[4 * g + 1], a[4 * g + 3]);
  }
  // Swap halves between the two row groups.
#pragma GCC unroll 4
  for (int j = 0; j < 4; ++j) {
    out[j] = _mm256_permute2x128_si256(t[j], t[4 + j], 0x20);
    out[4 + j] = _mm256_permute2x128_si256(t[j], t[4 + j], 0x31);
  }
}

// Loads block `offset` of each of the 8 inputs and transposes, so that m[w]
// holds message word w of every input.
WOOLY_B3_INLINE void LoadTransposed(const uint8_t* const in[kLanes], size_t offset, __m256i m[16]) {
  __m256i lo[8], hi[8];
#pragma GCC unroll 8
  for (size_t i = 0; i < kLanes; ++i) {
    const auto* p = reinterpret_cast<const __m256i*>(in[i] + offset);
    lo[i] = _mm256_loadu_si256(p);
    hi[i] = _mm256_loadu_si256(p + 1);
  }
  Transpose8(lo, m);
  Transpose8(hi, m + 8);
}

WOOLY_B3_AVX2 void HashGroup(const uint8_t* const in[kLanes], const uint8_t* const next[kLanes],
                             size_t blocks, const uint32_t counter_lo[kLanes],
                             const uint32_t counter_hi[kLanes], uint32_t flags,
                             uint32_t start_flags, uint32_t end_flags, uint32_t out[8][kLanes]) {
  __m256i h[8];
#pragma GCC unroll 8
  for (int i = 0; i < 8; ++i) h[i] = _mm256_set1_epi32(static_cast<int>(kIv[i]));
  const __m256i lo = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(counter_lo));
  const __m256i hi = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(counter_hi));
  const __m256i block_len = _mm256_set1_epi32(static_cast<int>(kBlockSize));
  for (size_t b = 0; b < blocks; ++b) {
    __m256i m[16];
    LoadTransposed(in, b * kBlockSize, m);
    // The lanes' 1 KiB-apart streams defeat the hardware prefetcher; the
    // next group's matching block, one group of work ahead, is far enough
    // ahead to hide memory latency and near enough to stay in L2.
#pragma GCC unroll 8
    for (size_t i = 0; i < kLanes; ++i) {
      _mm_prefetch(reinterpret_cast<const char*>(next[i] + b * kBlockSize), _MM_HINT_T1);
    }
    uint32_t f = flags;
    if (b == 0) f |= start_flags;
    if (b + 1 == blocks) f |= end_flags;
    // State: chaining values, four IV words, counters, block length, flags.
    __m256i v[16];
#pragma GCC unroll 8
    for (int i = 0; i < 8; ++i) v[i] = h[i];
#pragma GCC unroll 4
    for (int i = 0; i < 4; ++i) v[8 + i] = _mm256_set1_epi32(static_cast<int>(kIv[i]));
    v[12] = lo;
    v[13] = hi;
    v[14] = block_len;
    v[15] = _mm256_set1_epi32(static_cast<int>(f));
    Round<0>(v, m);
    Round<1>(v, m);
    Round<2>(v, m);
    Round<3>(v, m);
    Round<4>(v, m);
    Round<5>(v, m);
    Round<6>(v, m);
#pragma GCC unroll 8
    for (int i = 0; i < 8; ++i) h[i] = _mm256_xor_si256(v[i], v[i + 8]);
  }
#pragma GCC unroll 8
  for (int i = 0; i < 8; ++i) _mm256_storeu_si256(reinterpret_cast<__m256i*>(out[i]), h[i]);
}

}  // namespace

void HashManyAvx2(const uint8_t* const* inputs, size_t n, size_t blocks, uint64_t counter,
                  bool increment_counter, uint32_t flags, uint32_t start_flags, uint32_t end_flags,
                  uint8_t* out) {
  for (size_t first = 0; first < n; first += kLanes) {
    const size_t lanes = n - first < kLanes ? n - first : kLanes;
    // Missing lanes of a last, partial group repeat its first input; their
    // results are dropped.
    const uint8_t* in[kLanes];
    alignas(32) uint32_t counter_lo[kLanes];
    alignas(32) uint32_t counter_hi[kLanes];
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
    alignas(32) uint32_t cv[8][kLanes];
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

#endif  // WOOLY_BLAKE3_X86
