#include "wooly/proto/content_digest.h"

#include "tree_digest.h"

namespace wooly::wire {

std::vector<ContentDigest> ContentDigests(std::span<const DigestInput> inputs, unsigned threads) {
  return internal::TreeDigests<ContentDigest, Blake3>(inputs, threads, kContentDigestPiece,
                                                      Blake3Digest);
}

}  // namespace wooly::wire
