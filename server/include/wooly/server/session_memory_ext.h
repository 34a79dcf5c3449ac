// The memory extensions of a ClientSession (server/session_memory_ext.cc):
// memory pools and the stream-ordered allocator, virtual memory management,
// occupancy queries, context limits, function cache configuration and tensor
// maps. Included by client_session.h, which declares one handler per op of
// WOOLY_SESSION_MEMORY_EXT_OPS and holds a SessionMemoryExt.
//
// Ownership rules (checked before the backend is called):
//  - pool ids and generic allocation handle ids are issued by the session,
//    server-wide unique; a foreign id is CUDA_ERROR_INVALID_HANDLE;
//  - pool 0 is the client's default pool: a pool of its own, created on the
//    backend at first use, so trims and attributes of "the default pool"
//    never touch other clients;
//  - stream-ordered allocations join the session's allocation table, so
//    copies, memsets and cuMemFree treat them like cuMemAlloc memory;
//  - VA reservations, handles and mappings belong to the client; a device
//    range counts as owned when consecutive mappings cover it, so copies may
//    span mapping boundaries as they do natively;
//  - limits are applied to the shared context only when that cannot harm
//    other clients (see OpCtxSetLimit).
// Cleanup at disconnect, after the allocations are freed: unmap every
// mapping, release every handle reference, free every reservation, destroy
// the pools.
#ifndef WOOLY_SERVER_SESSION_MEMORY_EXT_H_
#define WOOLY_SERVER_SESSION_MEMORY_EXT_H_

#include <cstdint>

#include "wooly/memory/allocation_table.h"

// The ops handled in session_memory_ext.cc (Op::k<name> -> Op<name>).
#define WOOLY_SESSION_MEMORY_EXT_OPS(X)   \
  X(MemAllocAsync)                        \
  X(MemFreeAsync)                         \
  X(MemPoolCreate)                        \
  X(MemPoolDestroy)                       \
  X(MemPoolSetAttribute)                  \
  X(MemPoolGetAttribute)                  \
  X(MemPoolTrimTo)                        \
  X(MemGetAllocationGranularity)          \
  X(MemAddressReserve)                    \
  X(MemAddressFree)                       \
  X(MemCreate)                            \
  X(MemRelease)                           \
  X(MemMap)                               \
  X(MemUnmap)                             \
  X(MemSetAccess)                         \
  X(MemGetAccess)                         \
  X(MemGetAllocationPropertiesFromHandle) \
  X(MemRetainAllocationHandle)            \
  X(OccupancyMaxActiveBlocks)             \
  X(OccupancyMaxPotentialBlockSize)       \
  X(OccupancyAvailableDynamicSMem)        \
  X(OccupancyMaxActiveClusters)           \
  X(CtxGetLimit)                          \
  X(CtxSetLimit)                          \
  X(FuncSetCacheConfig)                   \
  X(FuncSetSharedMemConfig)               \
  X(TensorMapEncodeTiled)                 \
  X(TensorMapEncodeIm2col)                \
  X(TensorMapReplaceAddress)

namespace wooly::server {

// Per-session state of the extensions; defined in session_memory_ext.cc.
struct SessionMemoryExt;
struct SessionMemoryExtDeleter {
  void operator()(SessionMemoryExt* ext) const;
};

// True when [ptr, ptr + size) is covered by ranges of `table` that follow
// each other without a gap. A zero size asks whether `ptr` is inside one.
bool CoveredByRanges(const memory::AllocationTable& table, uint64_t ptr, uint64_t size);

}  // namespace wooly::server

#endif  // WOOLY_SERVER_SESSION_MEMORY_EXT_H_
