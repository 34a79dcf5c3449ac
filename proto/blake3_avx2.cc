// BLAKE3 compression of 8 inputs at once with AVX2 (blake3_simd.h has the
// width-independent part). Compiled with target attributes rather than a
// file-wide -mavx2, so that nothing here runs unless the caller checked the
// CPU (Blake3::Avx2Available()).
#include "blake3_internal.h"

#ifdef WOOLY_BLAKE3_X86

#include <immintrin.h>

#define WOOLY_B3_TARGET __attribute__((target("avx2")))
#include "blake3_simd.h"

namespace wooly::wire::blake3_internal {
namespace {

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

struct Avx2 {
  using Vec = __m256i;
  static constexpr size_t kLanes = 8;
  static WOOLY_B3_INLINE Vec Set1(uint32_t x) { return _mm256_set1_epi32(static_cast<int>(x)); }
  static WOOLY_B3_INLINE Vec Add(Vec a, Vec b) { return _mm256_add_epi32(a, b); }
  static WOOLY_B3_INLINE Vec Xor(Vec a, Vec b) { return _mm256_xor_si256(a, b); }
  // AVX2 has no rotate: rotations by whole bytes are a byte shuffle (one
  // instruction), the others two shifts and an or.
  template <int N>
  static WOOLY_B3_INLINE Vec Ror(Vec x) {
    if constexpr (N == 16) {
      return _mm256_shuffle_epi8(
          x, _mm256_setr_epi8(2, 3, 0, 1, 6, 7, 4, 5, 10, 11, 8, 9, 14, 15, 12, 13, 2, 3, 0, 1, 6,
                              7, 4, 5, 10, 11, 8, 9, 14, 15, 12, 13));
    } else if constexpr (N == 8) {
      return _mm256_shuffle_epi8(
          x, _mm256_setr_epi8(1, 2, 3, 0, 5, 6, 7, 4, 9, 10, 11, 8, 13, 14, 15, 12, 1, 2, 3, 0, 5,
                              6, 7, 4, 9, 10, 11, 8, 13, 14, 15, 12));
    } else {
      return _mm256_or_si256(_mm256_srli_epi32(x, N), _mm256_slli_epi32(x, 32 - N));
    }
  }
  static WOOLY_B3_INLINE Vec Load(const uint32_t* p) {
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  }
  static WOOLY_B3_INLINE void Store(uint32_t* p, Vec x) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), x);
  }
  // Two 32-byte rows per input, each transposed with the other inputs'.
  static WOOLY_B3_INLINE void LoadTransposed(const uint8_t* const in[kLanes], size_t offset,
                                             Vec m[16]) {
    Vec lo[8], hi[8];
#pragma GCC unroll 8
    for (size_t i = 0; i < kLanes; ++i) {
      const auto* p = reinterpret_cast<const __m256i*>(in[i] + offset);
      lo[i] = _mm256_loadu_si256(p);
      hi[i] = _mm256_loadu_si256(p + 1);
    }
    Transpose8(lo, m);
    Transpose8(hi, m + 8);
  }
};

}  // namespace

void HashManyAvx2(const uint8_t* const* inputs, size_t n, size_t blocks, uint64_t counter,
                  bool increment_counter, uint32_t flags, uint32_t start_flags, uint32_t end_flags,
                  uint8_t* out) {
  HashMany<Avx2>(inputs, n, blocks, counter, increment_counter, flags, start_flags, end_flags, out);
}

}  // namespace wooly::wire::blake3_internal

#endif  // WOOLY_BLAKE3_X86
