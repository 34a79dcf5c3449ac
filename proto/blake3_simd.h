// Private to blake3_avx2.cc and blake3_avx512.cc: the many-input BLAKE3
// compression that does not depend on the vector width. Vector i holds state
// word i of kLanes inputs (one per 32-bit lane), so each step of the
// compression function is one instruction for all of them.
//
// The including file defines WOOLY_B3_TARGET (the target attribute its
// functions carry, so that nothing runs unless the caller checked the CPU)
// and an ops struct V with static, always-inline members:
//   Vec, kLanes, Set1(uint32_t), Add, Xor, Ror<N> (N = 16, 12, 8, 7),
//   Load(const uint32_t*), Store(uint32_t*, Vec), and
//   LoadTransposed(const uint8_t* const in[kLanes], size_t offset, Vec m[16])
//   (block `offset` of every input, so that m[w] holds message word w).
// Everything here is in an unnamed namespace: each file instantiates it for
// its own V under its own target attribute.
#ifndef WOOLY_PROTO_BLAKE3_SIMD_H_
#define WOOLY_PROTO_BLAKE3_SIMD_H_

#include <immintrin.h>

#include <cstring>

#include "blake3_internal.h"

#ifndef WOOLY_B3_TARGET
#error "define WOOLY_B3_TARGET before including blake3_simd.h"
#endif
#define WOOLY_B3_INLINE WOOLY_B3_TARGET __attribute__((always_inline)) inline

namespace wooly::wire::blake3_internal {
namespace {

template <class V>
WOOLY_B3_INLINE void G(typename V::Vec& a, typename V::Vec& b, typename V::Vec& c,
                       typename V::Vec& d, typename V::Vec mx, typename V::Vec my) {
  a = V::Add(V::Add(a, b), mx);
  d = V::template Ror<16>(V::Xor(d, a));
  c = V::Add(c, d);
  b = V::template Ror<12>(V::Xor(b, c));
  a = V::Add(V::Add(a, b), my);
  d = V::template Ror<8>(V::Xor(d, a));
  c = V::Add(c, d);
  b = V::template Ror<7>(V::Xor(b, c));
}

// A template so that the message indices are compile-time constants and the
// message words stay in registers (or at fixed stack slots).
template <class V, int R>
WOOLY_B3_INLINE void Round(typename V::Vec v[16], const typename V::Vec m[16]) {
  constexpr auto s = kSchedule[R];
  // Columns, then diagonals.
  G<V>(v[0], v[4], v[8], v[12], m[s[0]], m[s[1]]);
  G<V>(v[1], v[5], v[9], v[13], m[s[2]], m[s[3]]);
  G<V>(v[2], v[6], v[10], v[14], m[s[4]], m[s[5]]);
  G<V>(v[3], v[7], v[11], v[15], m[s[6]], m[s[7]]);
  G<V>(v[0], v[5], v[10], v[15], m[s[8]], m[s[9]]);
  G<V>(v[1], v[6], v[11], v[12], m[s[10]], m[s[11]]);
  G<V>(v[2], v[7], v[8], v[13], m[s[12]], m[s[13]]);
  G<V>(v[3], v[4], v[9], v[14], m[s[14]], m[s[15]]);
}

// `blocks` blocks of each of kLanes inputs; out[w][i] is word w of input
// i's chaining value.
template <class V>
WOOLY_B3_TARGET void HashGroup(const uint8_t* const in[V::kLanes],
                               const uint8_t* const next[V::kLanes], size_t blocks,
                               const uint32_t counter_lo[V::kLanes],
                               const uint32_t counter_hi[V::kLanes], uint32_t flags,
                               uint32_t start_flags, uint32_t end_flags,
                               uint32_t out[8][V::kLanes]) {
  using Vec = typename V::Vec;
  Vec h[8];
#pragma GCC unroll 8
  for (int i = 0; i < 8; ++i) h[i] = V::Set1(kIv[i]);
  const Vec lo = V::Load(counter_lo);
  const Vec hi = V::Load(counter_hi);
  const Vec block_len = V::Set1(static_cast<uint32_t>(kBlockSize));
  for (size_t b = 0; b < blocks; ++b) {
    Vec m[16];
    V::LoadTransposed(in, b * kBlockSize, m);
    // The lanes' 1 KiB-apart streams defeat the hardware prefetcher; the
    // next group's matching block, one group of work ahead, is far enough
    // ahead to hide memory latency and near enough to stay in L2.
#pragma GCC unroll 16
    for (size_t i = 0; i < V::kLanes; ++i) {
      _mm_prefetch(reinterpret_cast<const char*>(next[i] + b * kBlockSize), _MM_HINT_T1);
    }
    uint32_t f = flags;
    if (b == 0) f |= start_flags;
    if (b + 1 == blocks) f |= end_flags;
    // State: chaining values, four IV words, counters, block length, flags.
    Vec v[16];
#pragma GCC unroll 8
    for (int i = 0; i < 8; ++i) v[i] = h[i];
#pragma GCC unroll 4
    for (int i = 0; i < 4; ++i) v[8 + i] = V::Set1(kIv[i]);
    v[12] = lo;
    v[13] = hi;
    v[14] = block_len;
    v[15] = V::Set1(f);
    Round<V, 0>(v, m);
    Round<V, 1>(v, m);
    Round<V, 2>(v, m);
    Round<V, 3>(v, m);
    Round<V, 4>(v, m);
    Round<V, 5>(v, m);
    Round<V, 6>(v, m);
#pragma GCC unroll 8
    for (int i = 0; i < 8; ++i) h[i] = V::Xor(v[i], v[i + 8]);
  }
#pragma GCC unroll 8
  for (int i = 0; i < 8; ++i) V::Store(out[i], h[i]);
}

// HashManyFn (blake3_internal.h) over groups of kLanes inputs.
template <class V>
void HashMany(const uint8_t* const* inputs, size_t n, size_t blocks, uint64_t counter,
              bool increment_counter, uint32_t flags, uint32_t start_flags, uint32_t end_flags,
              uint8_t* out) {
  constexpr size_t kLanes = V::kLanes;
  for (size_t first = 0; first < n; first += kLanes) {
    const size_t lanes = n - first < kLanes ? n - first : kLanes;
    // Missing lanes of a last, partial group repeat its first input; their
    // results are dropped.
    const uint8_t* in[kLanes];
    alignas(sizeof(typename V::Vec)) uint32_t counter_lo[kLanes];
    alignas(sizeof(typename V::Vec)) uint32_t counter_hi[kLanes];
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
    alignas(sizeof(typename V::Vec)) uint32_t cv[8][kLanes];
    HashGroup<V>(in, next, blocks, counter_lo, counter_hi, flags, start_flags, end_flags, cv);
    // Words are little-endian in memory on x86, as the digest wants.
    for (size_t i = 0; i < lanes; ++i) {
      uint32_t words[8];
      for (int w = 0; w < 8; ++w) words[w] = cv[w][i];
      std::memcpy(out + 32 * (first + i), words, sizeof words);
    }
  }
}

}  // namespace
}  // namespace wooly::wire::blake3_internal

#endif  // WOOLY_PROTO_BLAKE3_SIMD_H_
