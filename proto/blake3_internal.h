// Private to blake3*.cc: constants of the BLAKE3 specification and the
// batch compression functions that the SIMD files implement.
#ifndef WOOLY_PROTO_BLAKE3_INTERNAL_H_
#define WOOLY_PROTO_BLAKE3_INTERNAL_H_

#include <array>
#include <cstddef>
#include <cstdint>

#if defined(__x86_64__) || defined(__i386__)
#define WOOLY_BLAKE3_X86 1
#endif

namespace wooly::wire::blake3_internal {

// The key of the unkeyed hash mode: SHA-256's initial hash value.
inline constexpr uint32_t kIv[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                    0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};

// Domain separation flags (the compression function's last state word).
inline constexpr uint32_t kChunkStart = 1;
inline constexpr uint32_t kChunkEnd = 2;
inline constexpr uint32_t kParent = 4;
inline constexpr uint32_t kRoot = 8;

inline constexpr size_t kBlockSize = 64;
inline constexpr size_t kBlocksPerChunk = 16;
inline constexpr int kRounds = 7;

// Round r reads message word kSchedule[r][i] where round 0 reads word i:
// the spec permutes the message words between rounds, and composing that
// permutation ahead of time saves moving words at run time.
inline constexpr std::array<std::array<uint8_t, 16>, kRounds> kSchedule = [] {
  constexpr uint8_t kPermutation[16] = {2, 6, 3, 10, 7, 0, 4, 13, 1, 11, 12, 5, 9, 14, 15, 8};
  std::array<std::array<uint8_t, 16>, kRounds> s{};
  for (uint8_t i = 0; i < 16; ++i) s[0][i] = i;
  for (int r = 1; r < kRounds; ++r) {
    for (int i = 0; i < 16; ++i) s[r][i] = s[r - 1][kPermutation[i]];
  }
  return s;
}();

// Hashes `n` inputs of `blocks` whole 64-byte blocks each, all keyed with
// kIv: input i starts at inputs[i] and has the counter `counter + i` when
// `increment_counter`, else `counter`. Every block gets `flags`, the first
// also `start_flags` and the last also `end_flags`. Writes input i's chaining
// value as 32 little-endian bytes at out + 32 * i; out may be the input of
// lane 2 * i or of a later lane (in-place reduction of a tree level).
using HashManyFn = void (*)(const uint8_t* const* inputs, size_t n, size_t blocks, uint64_t counter,
                            bool increment_counter, uint32_t flags, uint32_t start_flags,
                            uint32_t end_flags, uint8_t* out);

// One input at a time, any CPU.
void HashManyPortable(const uint8_t* const* inputs, size_t n, size_t blocks, uint64_t counter,
                      bool increment_counter, uint32_t flags, uint32_t start_flags,
                      uint32_t end_flags, uint8_t* out);

#ifdef WOOLY_BLAKE3_X86
// 8 inputs side by side (AVX2); a last group of fewer is padded. The CPU
// must have AVX2 (Blake3::Avx2Available()).
void HashManyAvx2(const uint8_t* const* inputs, size_t n, size_t blocks, uint64_t counter,
                  bool increment_counter, uint32_t flags, uint32_t start_flags, uint32_t end_flags,
                  uint8_t* out);
// 16 inputs side by side (AVX-512F); a last group of fewer is padded. The
// CPU must have AVX-512F (Blake3::Avx512Available()).
void HashManyAvx512(const uint8_t* const* inputs, size_t n, size_t blocks, uint64_t counter,
                    bool increment_counter, uint32_t flags, uint32_t start_flags,
                    uint32_t end_flags, uint8_t* out);
#endif

}  // namespace wooly::wire::blake3_internal

#endif  // WOOLY_PROTO_BLAKE3_INTERNAL_H_
