// SHA-256 (FIPS 180-4) for content-addressing module images: the client
// hashes every fatbin it registers so that the server is sent only images it
// does not hold yet (issue 4, module cache).
//
// Dependency-free (libc/libstdc++ only) because libwooly links it. On x86 a
// SHA-NI code path (Intel SHA extensions) is chosen at run time with cpuid;
// elsewhere, or on CPUs without them, a portable implementation is used. Both
// give identical results.
//
// Thread safety: a Sha256 object is not synchronized (one thread at a time);
// the free functions are reentrant.
#ifndef WOOLY_PROTO_SHA256_H_
#define WOOLY_PROTO_SHA256_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace wooly::wire {

inline constexpr size_t kSha256Size = 32;
using Sha256Hash = std::array<uint8_t, kSha256Size>;

// Streaming SHA-256: any number of Update calls, then Final.
class Sha256 {
 public:
  // Which block function to use. kAuto picks SHA-NI when the CPU has it.
  // Asking for kShaNi on a CPU without it falls back to the portable code
  // (check ShaNiAvailable() first when that matters, e.g. in tests).
  enum class Impl { kAuto, kPortable, kShaNi };

  explicit Sha256(Impl impl = Impl::kAuto);

  void Update(const void* data, size_t len);
  // Returns the digest of everything passed to Update since construction or
  // the previous Final, and resets the object for a new message.
  Sha256Hash Final();

  // True when this CPU (and build) supports the SHA-NI path.
  static bool ShaNiAvailable();
  // The path this object actually uses: kPortable or kShaNi.
  Impl impl() const { return impl_; }

 private:
  using BlockFn = void (*)(uint32_t state[8], const uint8_t* blocks, size_t n_blocks);

  void Reset();

  Impl impl_;
  BlockFn block_fn_;
  uint32_t state_[8];
  uint64_t total_len_ = 0;  // bytes hashed so far
  uint8_t buffer_[64];
  size_t buffer_len_ = 0;
};

// One-shot digest of `len` bytes at `data`.
Sha256Hash Sha256Digest(const void* data, size_t len);

// The digest that names a module image in woolyd's module cache: SHA-256
// over the image's length (u64, little-endian) followed by the SHA-256 of
// each kImageDigestChunk-byte chunk. Collision-resistant like SHA-256, and
// its chunks hash in parallel: up to `threads` threads (1 = this thread).
inline constexpr size_t kImageDigestChunk = 4u << 20;
Sha256Hash ImageDigest(const void* data, size_t len, unsigned threads = 1);

// One buffer for ImageDigests.
struct DigestInput {
  const void* data = nullptr;
  size_t len = 0;
};

// ImageDigest of each input (out[i] is ImageDigest(inputs[i])), with one
// budget of up to `threads` threads (1 = this thread) shared over the
// kImageDigestChunk pieces of all inputs, so that many chunk-sized buffers
// hash as fast as one big one. The threads are ProcessWorkerPool()'s
// (fork-safe); when the system refuses a thread, the ones it got (at least
// this one) do the work.
std::vector<Sha256Hash> ImageDigests(std::span<const DigestInput> inputs, unsigned threads);

// Lower-case hex, 64 characters.
std::string ToHex(const Sha256Hash& digest);
// Parses exactly 64 hex digits (either case). Returns false, leaving *out
// unspecified, on anything else.
bool FromHex(std::string_view hex, Sha256Hash* out);

}  // namespace wooly::wire

#endif  // WOOLY_PROTO_SHA256_H_
