// Private to wooly::wire: the two-level digest that ImageDigests (SHA-256)
// and ContentDigests (BLAKE3) share. Each input is cut into `piece`-byte
// pieces hashed in parallel on the process's worker pool; its digest is the hash of its length
// (u64, little-endian) followed by its pieces' digests, so it is as collision-resistant as the hash
// itself.
#ifndef WOOLY_PROTO_TREE_DIGEST_H_
#define WOOLY_PROTO_TREE_DIGEST_H_

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "wooly/proto/sha256.h"
#include "wooly/proto/worker_pool.h"

namespace wooly::wire::internal {

// Hasher: default-constructible, with Update(const void*, size_t) and
// Final() returning Hash. Leaf: Hash(const void*, size_t).
template <typename Hash, typename Hasher, typename Leaf>
std::vector<Hash> TreeDigests(std::span<const DigestInput> inputs, unsigned threads, size_t piece,
                              Leaf leaf) {
  // Every piece of every input, in input order, so that each input's piece
  // digests are contiguous in `parts`.
  struct Piece {
    const uint8_t* data;
    size_t len;
  };
  std::vector<Piece> pieces;
  std::vector<size_t> first_part(inputs.size() + 1, 0);
  for (size_t i = 0; i < inputs.size(); ++i) {
    const auto* p = static_cast<const uint8_t*>(inputs[i].data);
    for (size_t off = 0; off < inputs[i].len; off += piece) {
      pieces.push_back({p + off, std::min(piece, inputs[i].len - off)});
    }
    first_part[i + 1] = pieces.size();
  }
  std::vector<Hash> parts(pieces.size());
  // Pieces are taken one at a time from a shared counter: equal pieces
  // spread evenly, and a slow thread does not hold the others up.
  std::atomic<size_t> next{0};
  const std::function<void()> work = [&]() noexcept {
    for (size_t k; (k = next.fetch_add(1, std::memory_order_relaxed)) < pieces.size();) {
      parts[k] = leaf(pieces[k].data, pieces[k].len);
    }
  };
  const size_t useful = std::min<size_t>(pieces.size(), 1u << 16);
  threads = std::max(1u, std::min(threads, static_cast<unsigned>(useful)));
  ProcessWorkerPool().Run(threads, work);

  std::vector<Hash> out(inputs.size());
  for (size_t i = 0; i < inputs.size(); ++i) {
    Hasher top;
    uint8_t n[8];
    for (int b = 0; b < 8; ++b) {
      n[b] = static_cast<uint8_t>(static_cast<uint64_t>(inputs[i].len) >> (8 * b));
    }
    top.Update(n, sizeof(n));
    for (size_t k = first_part[i]; k < first_part[i + 1]; ++k) {
      top.Update(parts[k].data(), parts[k].size());
    }
    out[i] = top.Final();
  }
  return out;
}

}  // namespace wooly::wire::internal

#endif  // WOOLY_PROTO_TREE_DIGEST_H_
