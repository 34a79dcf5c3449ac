// Pipelined pageable copies over the same-node shared-memory channel.
//
// Pageable memory cannot be DMA'd and woolyd cannot see it, so the bytes
// pass through two staging slots of pinned memory shared with woolyd: while
// woolyd DMAs one slot, the client copies the next chunk into (or out of)
// the other. Each chunk is a kMemcpy{HtoD,DtoH}Shared request with a
// completion word the client waits on, so the only data copies are the one
// memcpy the driver itself would make (done on several threads for large
// chunks, copy_pool.h) and the DMA.
//
// Thread safety: calls from several threads are serialized.
#ifndef WOOLY_CLIENT_STAGING_H_
#define WOOLY_CLIENT_STAGING_H_

#include <cuda.h>

#include <cstddef>
#include <cstdint>

namespace wooly::client {

// Copies `n` bytes of pageable memory at `src` to device range `dst` (which
// this process knows) on wire stream `stream`, returning once it completed.
// CUDA_ERROR_NOT_SUPPORTED when there is no shared staging (the caller
// then uses the ordinary path).
CUresult StagedHtoD(uint64_t dst, const void* src, size_t n, uint64_t stream);
// The reverse direction.
CUresult StagedDtoH(void* dst, uint64_t src, size_t n, uint64_t stream);

}  // namespace wooly::client

#endif  // WOOLY_CLIENT_STAGING_H_
