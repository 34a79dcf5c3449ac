// Small device allocations that libwooly serves itself (issue #4: calls
// Wooly can complete locally). Unless WOOLY_LOCAL_ALLOC=0, cuMemAlloc of up to
// kArenaBlockMax bytes is carved out of an arena: one larger allocation that
// woolyd made for the context earlier. Such a cuMemAlloc costs no round
// trip; its cuMemFree is posted (api_memory.cc keeps the driver's implicit
// synchronization by posting a context synchronization before the block can
// be handed out again).
//
// Each block is an allocation of its own to the application: libwooly's
// allocation table (alloc_table.h) holds one record per block, so address
// ranges, pointer attributes and buffer ids are the block's, as with the
// driver. woolyd sees only the arenas; its ownership checks cover every
// block, since each lies inside an allocation of the same client.
//
// This class is the bookkeeping only (no CUDA, no I/O): arenas, free
// ranges (first fit, coalesced on free) and blocks.
//
// Thread safety: all methods are thread-safe. For fork(), LockForFork /
// UnlockAfterForkInParent bracket it in the parent and the child calls
// ResetAfterForkInChild.
#ifndef WOOLY_CLIENT_ALLOC_ARENA_H_
#define WOOLY_CLIENT_ALLOC_ARENA_H_

#include <cuda.h>

#include <cstdint>
#include <map>
#include <mutex>
#include <new>
#include <vector>

namespace wooly::client {

class ArenaAllocator {
 public:
  // Block addresses and sizes are multiples of this (the driver aligns
  // cuMemAlloc to at least 256 bytes).
  static constexpr uint64_t kAlign = 512;

  struct Arena {
    uint64_t base = 0;
    uint64_t size = 0;
    const void* owner = nullptr;  // the Context*
  };

  // Adds [base, base + size) as an arena of `owner`. Blocks are carved from
  // its kAlign-aligned part; an arena too small for one block is ignored.
  void AddArena(uint64_t base, uint64_t size, const void* owner);
  // A block of at least `n` bytes from an arena of `owner`; 0 when none has
  // room (or n is 0).
  uint64_t Allocate(uint64_t n, const void* owner);
  // Whether `ptr` is the base of a block.
  bool IsBlock(uint64_t ptr) const;
  // Whether `ptr` lies inside an arena (a block or not).
  bool InArena(uint64_t ptr) const;
  // Returns the block at `ptr` to its arena; false when `ptr` is not the
  // base of a block.
  bool Free(uint64_t ptr);
  // Removes the arenas of `owner`, forgetting their blocks, and returns them.
  std::vector<Arena> RemoveOwner(const void* owner);
  // Removes every arena and returns them.
  std::vector<Arena> Clear();

  void LockForFork() { mu_.lock(); }
  void UnlockAfterForkInParent() { mu_.unlock(); }
  void ResetLockAfterForkInChild() { new (&mu_) std::mutex(); }

 private:
  struct State {
    Arena arena;
    std::map<uint64_t, uint64_t> free;  // offset -> length, disjoint, coalesced
  };
  struct Block {
    uint64_t arena_base = 0;
    uint64_t size = 0;
  };

  mutable std::mutex mu_;
  std::map<uint64_t, State> arenas_;  // by base; guarded by mu_
  std::map<uint64_t, Block> blocks_;  // by address; guarded by mu_
};

// The process's arenas (driver.cc owns it and its fork handling).
ArenaAllocator& Arenas();

// cuMemFree (and cuMemFreeAsync) of the block at `ptr` (api_memory.cc):
// posts a context synchronization, then returns the block to its arena.
CUresult FreeLocalBlock(uint64_t ptr);

}  // namespace wooly::client

#endif  // WOOLY_CLIENT_ALLOC_ARENA_H_
