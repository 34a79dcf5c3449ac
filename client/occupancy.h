// The client-side cache of occupancy answers (api_occupancy.cc).
//
// Occupancy depends on the function and the launch shape, which the cache
// key holds, and on function attributes the application may change (the
// dynamic shared memory limit, the carveout, the cache configuration).
// Every entry point that changes one of those must call
// InvalidateOccupancyCache().
//
// Thread safety: thread-safe.
#ifndef WOOLY_CLIENT_OCCUPANCY_H_
#define WOOLY_CLIENT_OCCUPANCY_H_

namespace wooly::client {

// Forgets every cached occupancy answer.
void InvalidateOccupancyCache();

// cuCtxGetLimit answers are cached too (cuDNN asks once per attention
// call): a limit is asked again after this client sets it, after a
// context teardown (which calls this) and in a forked child.
void InvalidateLimitCache();

}  // namespace wooly::client

#endif  // WOOLY_CLIENT_OCCUPANCY_H_
