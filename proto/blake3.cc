#include "wooly/proto/blake3.h"

#include <algorithm>
#include <bit>
#include <cstring>

#include "blake3_internal.h"

#ifdef WOOLY_BLAKE3_X86
#include <cpuid.h>
#endif

namespace wooly::wire {
namespace {

using blake3_internal::HashManyPortable;
using blake3_internal::kBlockSize;
using blake3_internal::kBlocksPerChunk;
using blake3_internal::kChunkEnd;
using blake3_internal::kChunkStart;
using blake3_internal::kIv;
using blake3_internal::kParent;
using blake3_internal::kRoot;
using blake3_internal::kRounds;
using blake3_internal::kSchedule;
#ifdef WOOLY_BLAKE3_X86
using blake3_internal::HashManyAvx2;
using blake3_internal::HashManyAvx512;
#endif

// Chunks hashed per batch: bounds the stack space for their chaining values
// (32 bytes each) while giving the SIMD paths many lanes' worth of work.
constexpr size_t kWindow = 256;

inline uint32_t LoadLe32(const uint8_t* p) {
  return uint32_t{p[0]} | uint32_t{p[1]} << 8 | uint32_t{p[2]} << 16 | uint32_t{p[3]} << 24;
}

inline void StoreLe32(uint8_t* p, uint32_t x) {
  p[0] = static_cast<uint8_t>(x);
  p[1] = static_cast<uint8_t>(x >> 8);
  p[2] = static_cast<uint8_t>(x >> 16);
  p[3] = static_cast<uint8_t>(x >> 24);
}

inline uint32_t Rotr(uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }

inline void G(uint32_t& a, uint32_t& b, uint32_t& c, uint32_t& d, uint32_t mx, uint32_t my) {
  a += b + mx;
  d = Rotr(d ^ a, 16);
  c += d;
  b = Rotr(b ^ c, 12);
  a += b + my;
  d = Rotr(d ^ a, 8);
  c += d;
  b = Rotr(b ^ c, 7);
}

// The compression function, keeping only the chaining value (the first
// eight output words), which is all a 32-byte digest needs.
void Compress(uint32_t cv[8], const uint8_t block[kBlockSize], uint32_t block_len, uint64_t counter,
              uint32_t flags) {
  uint32_t m[16];
  for (int i = 0; i < 16; ++i) m[i] = LoadLe32(block + 4 * i);
  // State: chaining value, four IV words, counter, block length, flags.
  uint32_t v[16];
  std::memcpy(v, cv, 8 * sizeof(uint32_t));
  std::memcpy(v + 8, kIv, 4 * sizeof(uint32_t));
  v[12] = static_cast<uint32_t>(counter);
  v[13] = static_cast<uint32_t>(counter >> 32);
  v[14] = block_len;
  v[15] = flags;
#pragma GCC unroll 7
  for (int r = 0; r < kRounds; ++r) {
    const auto& s = kSchedule[r];
    // Columns, then diagonals.
    G(v[0], v[4], v[8], v[12], m[s[0]], m[s[1]]);
    G(v[1], v[5], v[9], v[13], m[s[2]], m[s[3]]);
    G(v[2], v[6], v[10], v[14], m[s[4]], m[s[5]]);
    G(v[3], v[7], v[11], v[15], m[s[6]], m[s[7]]);
    G(v[0], v[5], v[10], v[15], m[s[8]], m[s[9]]);
    G(v[1], v[6], v[11], v[12], m[s[10]], m[s[11]]);
    G(v[2], v[7], v[8], v[13], m[s[12]], m[s[13]]);
    G(v[3], v[4], v[9], v[14], m[s[14]], m[s[15]]);
  }
  for (int i = 0; i < 8; ++i) cv[i] = v[i] ^ v[i + 8];
}

void StoreCv(const uint32_t cv[8], uint8_t out[32]) {
  for (int i = 0; i < 8; ++i) StoreLe32(out + 4 * i, cv[i]);
}

// Runs the batch on the widest path `impl` allows. Few inputs go to a
// narrower path: a SIMD group costs the same however many lanes are real,
// and one or two compressions are cheaper done one by one.
void HashMany(Blake3::Impl impl, const uint8_t* const* inputs, size_t n, size_t blocks,
              uint64_t counter, bool increment_counter, uint32_t flags, uint32_t start_flags,
              uint32_t end_flags, uint8_t* out) {
#ifdef WOOLY_BLAKE3_X86
  if (impl == Blake3::Impl::kAvx512) {
    size_t wide = n / 16 * 16;
    if (n - wide > 8) wide = n;  // the rest fills most of a 16-lane group
    if (wide > 0) {
      HashManyAvx512(inputs, wide, blocks, counter, increment_counter, flags, start_flags,
                     end_flags, out);
      inputs += wide;
      out += 32 * wide;
      if (increment_counter) counter += wide;
      n -= wide;
    }
    impl = Blake3::Impl::kAvx2;  // AVX-512F CPUs have AVX2
  }
  if (impl == Blake3::Impl::kAvx2 && n > 2) {
    HashManyAvx2(inputs, n, blocks, counter, increment_counter, flags, start_flags, end_flags, out);
    return;
  }
#endif
  HashManyPortable(inputs, n, blocks, counter, increment_counter, flags, start_flags, end_flags,
                   out);
}

// Chaining value of a parent node whose children's values are the 64 bytes
// at `children` (left then right).
void ParentCv(const uint8_t children[64], uint32_t flags, uint8_t out[32]) {
  uint32_t cv[8];
  std::memcpy(cv, kIv, sizeof cv);
  Compress(cv, children, kBlockSize, 0, kParent | flags);
  StoreCv(cv, out);
}

#ifdef WOOLY_BLAKE3_X86
// XCR0: which register states the OS saves on context switches. A CPU
// feature is usable only when the OS also preserves its registers.
uint64_t Xcr0() {
  uint32_t lo, hi;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return uint64_t{hi} << 32 | lo;
}

struct X86Features {
  bool avx2 = false;
  bool avx512 = false;
};

X86Features DetectX86() {
  X86Features f;
  unsigned eax, ebx, ecx, edx;
  if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) return f;
  const bool osxsave = ecx & (1u << 27);
  const bool avx = ecx & (1u << 28);
  if (!osxsave || !avx) return f;
  const uint64_t xcr0 = Xcr0();
  const bool ymm_saved = (xcr0 & 0x6) == 0x6;    // SSE and AVX state
  const bool zmm_saved = (xcr0 & 0xe6) == 0xe6;  // plus opmask, ZMM0-15 upper, ZMM16-31
  if (!__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx)) return f;
  f.avx2 = ymm_saved && (ebx & (1u << 5));
  f.avx512 = f.avx2 && zmm_saved && (ebx & (1u << 16));
  return f;
}

const X86Features& Features() {
  static const X86Features features = DetectX86();
  return features;
}
#endif  // WOOLY_BLAKE3_X86

}  // namespace

namespace blake3_internal {

void HashManyPortable(const uint8_t* const* inputs, size_t n, size_t blocks, uint64_t counter,
                      bool increment_counter, uint32_t flags, uint32_t start_flags,
                      uint32_t end_flags, uint8_t* out) {
  for (size_t i = 0; i < n; ++i) {
    uint32_t cv[8];
    std::memcpy(cv, kIv, sizeof cv);
    for (size_t b = 0; b < blocks; ++b) {
      uint32_t f = flags;
      if (b == 0) f |= start_flags;
      if (b + 1 == blocks) f |= end_flags;
      Compress(cv, inputs[i] + b * kBlockSize, kBlockSize, counter + (increment_counter ? i : 0),
               f);
    }
    StoreCv(cv, out + 32 * i);
  }
}

}  // namespace blake3_internal

bool Blake3::Avx2Available() {
#ifdef WOOLY_BLAKE3_X86
  return Features().avx2;
#else
  return false;
#endif
}

bool Blake3::Avx512Available() {
#ifdef WOOLY_BLAKE3_X86
  return Features().avx512;
#else
  return false;
#endif
}

Blake3::Blake3(Impl impl) {
  if (impl == Impl::kAuto) impl = Impl::kAvx512;
  if (impl == Impl::kAvx512 && !Avx512Available()) impl = Impl::kAvx2;
  if (impl == Impl::kAvx2 && !Avx2Available()) impl = Impl::kPortable;
  impl_ = impl;
  Reset();
}

void Blake3::Reset() {
  chunk_counter_ = 0;
  stack_len_ = 0;
  buffer_len_ = 0;
}

void Blake3::MergeStack(uint64_t chunks) {
  const int keep = std::popcount(chunks);
  while (stack_len_ > keep) {
    // The top two are siblings of equal size: stack_[n-2] || stack_[n-1] is
    // their parent's block, and the parent takes the left one's place.
    uint8_t* left = stack_[stack_len_ - 2];
    uint8_t block[64];
    std::memcpy(block, left, 64);
    ParentCv(block, 0, left);
    --stack_len_;
  }
}

void Blake3::AddChunks(const uint8_t* const* ptrs, size_t n) {
  alignas(64) uint8_t cvs[kWindow * 32];
  HashMany(impl_, ptrs, n, kBlocksPerChunk, chunk_counter_, true, 0, kChunkStart, kChunkEnd, cvs);

  // Split the run into subtrees that are whole in the final tree (2^k chunks
  // starting at a multiple of 2^k), reduce each to one value level by level
  // in batches, and push it. Stacking each subtree at its place in the chunk
  // sequence keeps the tree identical to one built a chunk at a time.
  const uint8_t* parents[kWindow / 2];
  for (size_t i = 0; i < n;) {
    size_t size = std::bit_floor(n - i);
    if (chunk_counter_ != 0) {
      size = std::min<size_t>(size, size_t{1} << std::countr_zero(chunk_counter_));
    }
    uint8_t* sub = cvs + 32 * i;
    for (size_t m = size; m > 1; m /= 2) {
      for (size_t j = 0; j < m / 2; ++j) parents[j] = sub + 64 * j;
      HashMany(impl_, parents, m / 2, 1, 0, false, kParent, 0, 0, sub);
    }
    MergeStack(chunk_counter_);
    std::memcpy(stack_[stack_len_++], sub, 32);
    chunk_counter_ += size;
    i += size;
  }
}

void Blake3::HashChunks(size_t n_buffered, const uint8_t* input, size_t n_input) {
  // Batches end where the chunk counter crosses a multiple of kWindow, so
  // that most of them are whole subtrees.
  const uint8_t* ptrs[kWindow];
  size_t k = 0;
  for (size_t c = 0; c < n_buffered + n_input; ++c) {
    ptrs[k++] = c < n_buffered ? buffer_ + c * kChunkSize : input + (c - n_buffered) * kChunkSize;
    if (k == kWindow - chunk_counter_ % kWindow) {
      AddChunks(ptrs, k);
      k = 0;
    }
  }
  if (k > 0) AddChunks(ptrs, k);
}

void Blake3::Update(const void* data, size_t len) {
  const auto* p = static_cast<const uint8_t*>(data);
  if (len <= sizeof buffer_ - buffer_len_) {
    if (len > 0) std::memcpy(buffer_ + buffer_len_, p, len);
    buffer_len_ += len;
    return;
  }

  // More input than the buffer holds, so nothing buffered is the last chunk;
  // nor is any whole chunk of the input but the one holding its last byte.
  // Complete the buffer's partial chunk, then hash the buffered chunks and
  // the input's straight from memory, keeping the last 1..kChunkSize bytes.
  const size_t fill = (kChunkSize - buffer_len_ % kChunkSize) % kChunkSize;
  std::memcpy(buffer_ + buffer_len_, p, fill);
  p += fill;
  len -= fill;  // still > 0: the buffer had less room than len
  const size_t whole = (len - 1) / kChunkSize;
  HashChunks((buffer_len_ + fill) / kChunkSize, p, whole);
  buffer_len_ = len - whole * kChunkSize;
  std::memcpy(buffer_, p + whole * kChunkSize, buffer_len_);
}

Blake3Hash Blake3::Final() {
  // All buffered chunks but the last are known now not to be the last.
  const size_t last = buffer_len_ == 0 ? 0 : (buffer_len_ - 1) / kChunkSize;
  HashChunks(last, nullptr, 0);
  const uint8_t* chunk = buffer_ + last * kChunkSize;
  const size_t chunk_len = buffer_len_ - last * kChunkSize;

  // The last chunk, the root itself when it is the only one.
  const bool only_chunk = chunk_counter_ == 0;
  uint32_t cv[8];
  std::memcpy(cv, kIv, sizeof cv);
  const size_t blocks = std::max<size_t>(1, (chunk_len + kBlockSize - 1) / kBlockSize);
  for (size_t b = 0; b < blocks; ++b) {
    uint8_t block[kBlockSize] = {};
    const size_t len = std::min(kBlockSize, chunk_len - b * kBlockSize);
    std::memcpy(block, chunk + b * kBlockSize, len);
    uint32_t flags = b == 0 ? kChunkStart : 0;
    if (b + 1 == blocks) flags |= kChunkEnd | (only_chunk ? kRoot : 0);
    Compress(cv, block, static_cast<uint32_t>(len), chunk_counter_, flags);
  }
  Blake3Hash out;
  StoreCv(cv, out.data());

  // Otherwise the right edge of the tree: the chunk joins the stacked
  // subtrees from the smallest up, and the last parent is the root.
  if (!only_chunk) {
    MergeStack(chunk_counter_);
    for (int k = stack_len_ - 1; k >= 0; --k) {
      uint8_t block[64];
      std::memcpy(block, stack_[k], 32);
      std::memcpy(block + 32, out.data(), 32);
      ParentCv(block, k == 0 ? kRoot : 0, out.data());
    }
  }
  Reset();
  return out;
}

Blake3Hash Blake3Digest(const void* data, size_t len) {
  Blake3 h;
  h.Update(data, len);
  return h.Final();
}

}  // namespace wooly::wire
