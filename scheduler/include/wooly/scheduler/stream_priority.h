// Scheduling policy, foundation form: how a client's priority becomes a CUDA
// stream priority.
//
// Clients declare a priority from 0 (highest) to 4 (lowest) at hello
// (WOOLY_PRIORITY). woolyd gives each client a default stream whose CUDA
// priority is derived from it, so a high-priority client's work is picked
// first by the GPU's block scheduler when several clients compete. CUDA
// priorities are "lower number = higher priority": the device reports a range
// [greatest, least] with greatest <= least (for example [-5, 0]).
//
// Thread safety: pure functions.
#ifndef WOOLY_SCHEDULER_STREAM_PRIORITY_H_
#define WOOLY_SCHEDULER_STREAM_PRIORITY_H_

namespace wooly::scheduler {

inline constexpr int kHighestClientPriority = 0;
inline constexpr int kLowestClientPriority = 4;
// What a client that does not say gets.
inline constexpr int kDefaultClientPriority = 2;

// Clamps a client-supplied priority into [kHighestClientPriority,
// kLowestClientPriority].
int ClampClientPriority(int client_priority);

// The CUDA stream priority for a client's default stream: client priority 0
// maps to `greatest`, 4 to `least`, and the levels between are spread evenly
// (rounded to nearest) over the device range. Out-of-range client priorities
// are clamped first. A device without priorities (least == greatest) always
// yields that single value. The arguments are accepted in either order.
int StreamPriorityFor(int client_priority, int least, int greatest);

}  // namespace wooly::scheduler

#endif  // WOOLY_SCHEDULER_STREAM_PRIORITY_H_
