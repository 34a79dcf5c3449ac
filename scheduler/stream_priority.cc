#include "wooly/scheduler/stream_priority.h"

#include <algorithm>

namespace wooly::scheduler {

int ClampClientPriority(int client_priority) {
  return std::clamp(client_priority, kHighestClientPriority, kLowestClientPriority);
}

int StreamPriorityFor(int client_priority, int least, int greatest) {
  // Tolerate a swapped range rather than produce values outside it.
  if (greatest > least) std::swap(greatest, least);
  const long long span = static_cast<long long>(least) - greatest;
  const long long level = ClampClientPriority(client_priority) - kHighestClientPriority;
  const long long levels = kLowestClientPriority - kHighestClientPriority;
  return static_cast<int>(greatest + (level * span + levels / 2) / levels);
}

}  // namespace wooly::scheduler
