// BLAKE3 compression of 16 inputs at once with AVX-512F (blake3_simd.h has
// the width-independent part). Compiled with target attributes rather than
// a file-wide -mavx512f, so that nothing here runs unless the caller checked
// the CPU (Blake3::Avx512Available()).
#include "blake3_internal.h"

#ifdef WOOLY_BLAKE3_X86

#include <immintrin.h>

// GCC 12's AVX-512 intrinsics pass a deliberately undefined vector as the
// unused merge source of unmasked instructions, which -Wmaybe-uninitialized
// reports once they are inlined here.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#define WOOLY_B3_TARGET __attribute__((target("avx512f")))
#include "blake3_simd.h"

namespace wooly::wire::blake3_internal {
namespace {

struct Avx512 {
  using Vec = __m512i;
  static constexpr size_t kLanes = 16;
  static WOOLY_B3_INLINE Vec Set1(uint32_t x) { return _mm512_set1_epi32(static_cast<int>(x)); }
  static WOOLY_B3_INLINE Vec Add(Vec a, Vec b) { return _mm512_add_epi32(a, b); }
  static WOOLY_B3_INLINE Vec Xor(Vec a, Vec b) { return _mm512_xor_si512(a, b); }
  template <int N>
  static WOOLY_B3_INLINE Vec Ror(Vec x) {
    return _mm512_ror_epi32(x, N);
  }
  static WOOLY_B3_INLINE Vec Load(const uint32_t* p) { return _mm512_loadu_si512(p); }
  static WOOLY_B3_INLINE void Store(uint32_t* p, Vec x) { _mm512_storeu_si512(p, x); }
  // Loads block `offset` of each of the 16 inputs (one row each) and
  // transposes, so that m[w] holds message word w of every input.
  static WOOLY_B3_INLINE void LoadTransposed(const uint8_t* const in[kLanes], size_t offset,
                                             Vec m[16]) {
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
};

}  // namespace

void HashManyAvx512(const uint8_t* const* inputs, size_t n, size_t blocks, uint64_t counter,
                    bool increment_counter, uint32_t flags, uint32_t start_flags,
                    uint32_t end_flags, uint8_t* out) {
  HashMany<Avx512>(inputs, n, blocks, counter, increment_counter, flags, start_flags, end_flags,
                   out);
}

}  // namespace wooly::wire::blake3_internal

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

#endif  // WOOLY_BLAKE3_X86
