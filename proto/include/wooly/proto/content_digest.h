// The digest that proves device-memory content for weight dedup (issue #6):
// libwooly names each chunk it uploads with it, and woolyd computes it over
// every chunk it publishes, so that no tenant can plant content under
// another's digest. BLAKE3 over the content's length (u64, little-endian)
// followed by the BLAKE3 of each kContentDigestPiece piece: collision-
// resistant like BLAKE3, and its pieces hash in parallel. BLAKE3 rather than
// SHA-256 because attaching resident weights is bound by this hash: one
// AVX-512 core does ~5.6 GB/s against ~1.6 GB/s for SHA-256 with SHA-NI.
//
// Thread safety: reentrant. The pieces are hashed on ProcessWorkerPool()
// (fork-safe), so concurrent calls take turns with it; when the system
// refuses a thread, the ones it got (at least the caller's) do the work.
#ifndef WOOLY_PROTO_CONTENT_DIGEST_H_
#define WOOLY_PROTO_CONTENT_DIGEST_H_

#include <cstddef>
#include <span>
#include <vector>

#include "wooly/proto/blake3.h"
#include "wooly/proto/sha256.h"  // DigestInput

namespace wooly::wire {

using ContentDigest = Blake3Hash;
// Small enough that one 128 MiB copy (libwooly hashes one copy at a time)
// spreads evenly over 16 threads.
inline constexpr size_t kContentDigestPiece = 256u << 10;

// The digest of each input (out[i] for inputs[i]), over one budget of up to
// `threads` threads (1 = this thread) shared by the pieces of all inputs.
std::vector<ContentDigest> ContentDigests(std::span<const DigestInput> inputs, unsigned threads);

}  // namespace wooly::wire

#endif  // WOOLY_PROTO_CONTENT_DIGEST_H_
