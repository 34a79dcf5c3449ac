// Which chunks to swap out when physical memory is short, and which to swap
// in before a client's next command (issue #6). Pure policy: it reads a
// VmLayout and decides; VmLayout's swap transitions (vm_layout.h, with the
// chunk state machine) and MemoryManager carry the plans out.
//
// Activity: each client is idle for (now - end of its last command) while it
// has no command in flight, and is "idle" once that reaches the configured
// threshold; a client with a command in flight is busy. The clock is
// injected, so tests never sleep.
//
// Eviction, when client R is short of N bytes of physical memory, considers
// only resident, private chunks (shared dedup chunks and chunks mid-swap
// stay where they are), in this order, and takes just enough to cover N:
//   1. idle clients: lower priority first, then the longest idle first;
//   2. R's own chunks that are not pinned for its current command (a client
//      overcommitting itself pays before its neighbours do);
//   3. active (not idle, not busy) clients whose priority is not above R's:
//      lower priority first, then the longest idle first.
// Priorities are woolyd's client priorities: 0 is the highest, larger
// numbers are lower (scheduler/stream_priority.h, WOOLY_PRIORITY).
// Never evicted: a noswap client; a busy client (its work may be running on
// the GPU now); an active client of higher priority than R; R's pinned
// chunks; a client the policy does not know. Within one victim client it
// takes the smallest chunk that covers what is still missing, else the
// largest, and repeats. When everything allowed cannot cover N the answer is
// "cannot" (ResourceExhausted) and nothing is planned: the caller fails the
// request with CUDA_ERROR_OUT_OF_MEMORY.
//
// Swap-in for a client's next command plans only that client's own chunks;
// it never makes another client wait (another client's memory may be evicted
// by the rules above, which only costs that client its own swap-in later).
//
// Thread safety: thread-compatible; guard it with the VmLayout's lock.
#ifndef WOOLY_MEMORY_SWAP_POLICY_H_
#define WOOLY_MEMORY_SWAP_POLICY_H_

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <span>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "wooly/memory/physical_memory.h"
#include "wooly/memory/vm_layout.h"

namespace wooly::memory {

struct ClientPolicy {
  // woolyd's client priority: 0 is the highest, 4 the lowest; the default is
  // scheduler::kDefaultClientPriority.
  int priority = 2;
  // Never swap this client's memory out.
  bool noswap = false;
};

struct SwapPolicyOptions {
  // A client with no command in flight for this long is idle.
  absl::Duration idle_threshold = absl::Seconds(1);
};

// Why a chunk was chosen; the rule tiers above.
enum class VictimTier { kIdle = 1, kRequesterUnpinned = 2, kActive = 3 };

struct Victim {
  ChunkId chunk = 0;
  ClientId client = 0;
  uint64_t bytes = 0;
  VictimTier tier = VictimTier::kIdle;
};

struct EvictionPlan {
  std::vector<Victim> victims;  // in the order to evict them
  uint64_t bytes = 0;           // their total, >= the shortfall
};

struct SwapInPlan {
  std::vector<ChunkId> chunks;     // swapped out: to swap in, in address order
  uint64_t bytes = 0;              // their total
  std::vector<ChunkId> in_flight;  // mid-swap now: wait for them, then re-plan
};

class SwapPolicy {
 public:
  using Clock = std::function<absl::Time()>;

  // `clock` must be set (tests pass a fake one; woolyd absl::Now).
  SwapPolicy(SwapPolicyOptions options, Clock clock);

  const SwapPolicyOptions& options() const { return options_; }

  // Starts tracking a client; it counts as active from now. Re-adding
  // replaces its policy and activity.
  void AddClient(ClientId client, ClientPolicy policy = {});
  void RemoveClient(ClientId client);
  absl::Status SetPolicy(ClientId client, ClientPolicy policy);
  std::optional<ClientPolicy> policy(ClientId client) const;

  // A command of the client starts / ends (commands may overlap: busy until
  // the last one ends). Unknown clients are ignored.
  void BeginCommand(ClientId client);
  void EndCommand(ClientId client);

  bool IsBusy(ClientId client) const;
  // Zero while busy or unknown.
  absl::Duration IdleFor(ClientId client) const;
  bool IsIdle(ClientId client) const;

  // Chunks to evict so that `requester` gets `bytes_short` more bytes of
  // physical memory; `pinned` are the requester's chunks its current command
  // needs (for a kernel launch: all of them). An empty plan for 0 bytes.
  absl::StatusOr<EvictionPlan> PlanEviction(const VmLayout& layout, ClientId requester,
                                            uint64_t bytes_short,
                                            const std::set<ChunkId>& pinned) const;

  // Which of `needed` must be swapped in before the client's next command.
  // InvalidArgument when one of them is not the client's own chunk.
  absl::StatusOr<SwapInPlan> PlanSwapIn(const VmLayout& layout, ClientId client,
                                        std::span<const ChunkId> needed) const;

 private:
  struct Activity {
    ClientPolicy policy;
    int in_flight = 0;
    absl::Time last_active;
  };

  SwapPolicyOptions options_;
  Clock clock_;
  std::map<ClientId, Activity> clients_;
};

}  // namespace wooly::memory

#endif  // WOOLY_MEMORY_SWAP_POLICY_H_
