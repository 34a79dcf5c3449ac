// BLAKE3 (the unkeyed hash mode, 32-byte output) for proving the content of
// large buffers, e.g. the weights that weight dedup compares (issue 6):
// collision-resistant like SHA-256, and several times faster per core
// because its 1 KiB chunks are independent and hash in SIMD lanes side by
// side. Output is standard BLAKE3 (what `b3sum` prints).
//
// Dependency-free (libc/libstdc++ only) because libwooly links it. On x86 an
// AVX2 path (8 chunks at once) and an AVX-512 path (16 chunks at once) are
// chosen at run time with cpuid; elsewhere, or on CPUs without them, a
// portable implementation is used. All paths give identical results.
//
// Thread safety: a Blake3 object is not synchronized (one thread at a time);
// the free functions are reentrant.
#ifndef WOOLY_PROTO_BLAKE3_H_
#define WOOLY_PROTO_BLAKE3_H_

#include <array>
#include <cstddef>
#include <cstdint>

namespace wooly::wire {

inline constexpr size_t kBlake3Size = 32;
using Blake3Hash = std::array<uint8_t, kBlake3Size>;

// Streaming BLAKE3: any number of Update calls, then Final. Large Updates
// hash their whole chunks in SIMD batches straight from the caller's memory;
// small ones are buffered (16 KiB, so the object is about 18 KiB) until a
// batch is worth it. Splitting the input differently never changes the
// digest.
class Blake3 {
 public:
  // Which chunk function to use. kAuto picks the widest the CPU has. Asking
  // for a path the CPU lacks falls back to the next narrower one that it has
  // (check Avx2Available()/Avx512Available() first when that matters, e.g.
  // in tests).
  enum class Impl { kAuto, kPortable, kAvx2, kAvx512 };

  explicit Blake3(Impl impl = Impl::kAuto);

  void Update(const void* data, size_t len);
  // Returns the digest of everything passed to Update since construction or
  // the previous Final, and resets the object for a new message.
  Blake3Hash Final();

  // True when this CPU, its OS and the build support the path.
  static bool Avx2Available();
  static bool Avx512Available();
  // The path this object actually uses: kPortable, kAvx2 or kAvx512.
  Impl impl() const { return impl_; }

  // Bytes per chunk, the unit of SIMD parallelism and of the hash tree.
  static constexpr size_t kChunkSize = 1024;

 private:
  // Chaining values (little-endian bytes) of complete subtrees left of
  // buffer_'s input: one per set bit of the chunk count, largest at the
  // bottom, plus at most one not yet merged. 2^54 chunks cover 2^64 bytes.
  static constexpr int kMaxDepth = 54 + 2;

  // Input is buffered up to one AVX-512 batch of chunks, so that small
  // Updates still reach the SIMD paths with many chunks at a time.
  static constexpr size_t kBufferChunks = 16;

  void Reset();
  // Hashes n_buffered chunks from buffer_ and then n_input chunks at `input`
  // (chunk i of them has counter chunk_counter_ + i) and adds them to the
  // tree. None of them is the last chunk of the message.
  void HashChunks(size_t n_buffered, const uint8_t* input, size_t n_input);
  // Same for the chunks at ptrs[0..n), n at most one batch (kWindow).
  void AddChunks(const uint8_t* const* ptrs, size_t n);
  // Merges stacked subtrees down to one per set bit of `chunks`.
  void MergeStack(uint64_t chunks);

  Impl impl_;
  uint64_t chunk_counter_ = 0;  // chunks hashed so far, all left of buffer_
  uint8_t stack_[kMaxDepth][32];
  int stack_len_ = 0;
  // Input not hashed yet. Its last chunk may turn out to be the last one of
  // the message (the root when alone), which is only known once more input
  // or Final arrives.
  alignas(64) uint8_t buffer_[kBufferChunks * kChunkSize];
  size_t buffer_len_ = 0;
};

// One-shot digest of `len` bytes at `data` (the fastest path the CPU has).
// Blake3Hash is Sha256Hash's type, so ToHex/FromHex in sha256.h apply.
Blake3Hash Blake3Digest(const void* data, size_t len);

}  // namespace wooly::wire

#endif  // WOOLY_PROTO_BLAKE3_H_
