// libwooly's one connection to woolyd: framing, the Hello handshake, and
// request/reply calls over the framed protocol of wire.h.
//
// Thread safety: Call and Start may be called from any thread; requests are
// serialized under an internal mutex (one request in flight at a time, or one
// CallPipelined batch).
// Ownership: the Connection owns its socket. After fork() the child must not
// touch the parent's Connection (its mutex may be held by a thread that does
// not exist in the child): it builds a new one with ForkChild() instead.
#ifndef WOOLY_CLIENT_CONNECTION_H_
#define WOOLY_CLIENT_CONNECTION_H_

#include <cuda.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "wooly/proto/channel.h"
#include "wooly/proto/wire.h"

namespace wooly::client {

// Who we are, sent in the Hello.
struct ClientIdentity {
  uint32_t pid = 0;
  int32_t priority = 2;
  std::string name;
  std::string pod;  // for woolyd's metrics labels; may be empty
  std::string pod_namespace;
  // Tenant settings sent at Hello, named as their environment variables
  // (WOOLY_TENANT, WOOLY_WEIGHT, ...; woolyd validates them).
  std::vector<std::pair<std::string, std::string>> settings;
};

// What the Hello reply says.
struct SessionInfo {
  uint32_t protocol_version = 0;
  std::string server_version;
  uint64_t client_id = 0;
  wire::DeviceInfo device;
};

// The reply fields that follow the CUresult.
struct Reply {
  std::vector<uint8_t> fields;
  wire::Reader reader() const { return wire::Reader(fields.data(), fields.size()); }
};

// One request of Connection::CallPipelined.
struct PipelinedRequest {
  wire::Writer body;           // the op's fields
  const void* tail = nullptr;  // sent after them without a copy; not owned
  size_t tail_len = 0;
  void* out_tail = nullptr;  // a successful reply's data lands here; not owned
  size_t out_tail_len = 0;   // exactly how many bytes that reply must carry
};

// Bulk copies that cross the socket (no shared-memory staging) travel as
// requests of kPipelineChunk bytes, kPipelineWindow of them in flight, in
// batches of at most wire::kCopyChunk bytes (one CallPipelined each, so
// other threads wait no longer than for one unpipelined chunk).
inline constexpr uint64_t kPipelineChunk = 4u << 20;
inline constexpr size_t kPipelineWindow = 4;

class Connection {
 public:
  Connection(std::string endpoint, ClientIdentity identity);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // Connects and performs the Hello. Returns CUDA_SUCCESS, or
  //  CUDA_ERROR_NO_DEVICE when woolyd cannot be reached,
  //  CUDA_ERROR_SYSTEM_DRIVER_MISMATCH when woolyd speaks another protocol
  //  version (its message is in *error),
  //  another CUresult the server answered the Hello with.
  // *error describes any failure in one line.
  CUresult Start(SessionInfo* info, std::string* error);

  // Sends one request and waits for its reply. `body` holds the op's fields;
  // `tail` (optional) is sent after them without a copy. On success the
  // reply's fields land in reply->fields, except that when `out_tail` is
  // given the last `out_tail_len` bytes of the reply go straight there.
  // Returns the server's CUresult, or CUDA_ERROR_DEVICE_UNAVAILABLE when the
  // connection is (or becomes) unusable. `reply` may be null when the op
  // has no reply fields.
  CUresult Call(wire::Op op, const wire::Writer& body, Reply* reply, const void* tail = nullptr,
                size_t tail_len = 0, void* out_tail = nullptr, size_t out_tail_len = 0);

  // Sends `requests`, all of op `op`, in order, keeping up to `window` of
  // them in flight: request i + window is sent once reply i has been read,
  // so woolyd works on the next request while this thread reads a reply.
  // Holds the connection for the whole batch. Batched posted requests go
  // out first. A successful reply must carry exactly out_tail_len bytes
  // (they land in out_tail). After a failed reply no further request is
  // sent, but the replies already in flight are still read, so the stream
  // stays in step. Returns CUDA_SUCCESS, the first failed reply's CUresult
  // (CUDA_ERROR_UNKNOWN for a successful reply longer than expected),
  // CUDA_ERROR_INVALID_VALUE for a request over the frame limit (nothing
  // sent), or CUDA_ERROR_DEVICE_UNAVAILABLE when the connection is (or
  // becomes) unusable. Stats count each request sent as one call that
  // waited.
  CUresult CallPipelined(wire::Op op, std::span<const PipelinedRequest> requests, size_t window);

  // Sends one request without waiting (wire::kFlagNoReply): for ops CUDA
  // itself runs asynchronously. An error it causes is reported by the next
  // synchronizing call. Returns CUDA_ERROR_DEVICE_UNAVAILABLE when the
  // connection is unusable.
  CUresult Post(wire::Op op, const wire::Writer& body, const void* tail = nullptr,
                size_t tail_len = 0);
  // Call() that also passes file descriptor `fd` to woolyd (unix sockets
  // only); the fd stays owned by the caller.
  CUresult CallWithFd(wire::Op op, const wire::Writer& body, int fd);
  // True when the same-node shared-memory channel is in use (so shared
  // pinned memory can be registered with woolyd).
  bool shared_memory() const { return shm_active_.load(std::memory_order_acquire); }

  // False once woolyd has gone away (the socket reports a hangup).
  bool PeerAlive();

  // At process exit: tells woolyd the client is leaving, so a session on
  // the shared-memory channel ends at once rather than when woolyd next
  // checks the socket. Skipped when another thread holds the connection.
  void GoodbyeAtExit();

  // For the child of fork(): closes this (inherited) socket without taking
  // the mutex and returns a new Connection that reconnects, with a fresh
  // Hello carrying the child's pid, on its first Call.
  std::unique_ptr<Connection> ForkChild();

  const std::string& endpoint() const { return endpoint_; }

  // With $WOOLY_CLIENT_STATS=1: one line to stderr per op that was sent,
  // with how many requests waited for a reply, the time spent waiting, and
  // how many were posted without one. For finding round trips that a
  // workload pays (bench/README.md). Called at exit.
  void PrintStats();

 private:
  enum class State { kNew, kHandshake, kReady, kReconnect, kBroken };

  CUresult ConnectLocked(SessionInfo* info, std::string* error);
  CUresult CallLocked(wire::Op op, const wire::Writer& body, Reply* reply, const void* tail,
                      size_t tail_len, void* out_tail, size_t out_tail_len);
  // *sent: how many of `requests` went out.
  CUresult CallPipelinedLocked(wire::Op op, std::span<const PipelinedRequest> requests,
                               size_t window, size_t* sent);
  // Reads the header and result of the reply to request `seq` of `op_code`;
  // *rest is what follows. False (and broken) on a failure or a wrong frame.
  bool ReadReplyHeadLocked(uint16_t op_code, uint32_t seq, int32_t* result, size_t* rest);
  // Reads and drops `n` bytes of the current frame; false (and broken) when
  // the connection fails.
  bool SkipLocked(size_t n);
  void BreakLocked(const char* why);
  CUresult ReconnectIfNeededLocked();
  // Switches to the shared-memory channel when the endpoint is a unix
  // socket and $WOOLY_SHM is not 0; stays on the socket otherwise.
  void AttachShmLocked();
  // Socket transports batch requests sent without a reply: they are written
  // together before the next request that waits, when the batch fills, or
  // by the flusher thread within $WOOLY_BATCH_US microseconds (default 50;
  // 0 writes each at once). The shared-memory channel needs no batching.
  bool FlushLocked();
  void FlusherLoop();
  struct OpStats;
  OpStats& StatsFor(wire::Op op);  // requires mu_

  const std::string endpoint_;
  ClientIdentity identity_;
  std::mutex mu_;
  int fd_ = -1;                              // guarded by mu_
  bool is_unix_ = false;                     // guarded by mu_
  std::unique_ptr<wire::ByteChannel> chan_;  // guarded by mu_; the socket or the rings
  std::atomic<bool> shm_active_{false};
  bool batching_ = false;             // guarded by mu_
  uint32_t batch_us_ = 50;            // guarded by mu_
  std::vector<uint8_t> batch_;        // guarded by mu_; whole frames
  std::condition_variable batch_cv_;  // batch_ became non-empty, or stopping
  std::thread flusher_;               // started on the first batched request
  bool stopping_ = false;             // guarded by mu_
  State state_ = State::kNew;         // guarded by mu_
  uint32_t seq_ = 0;                  // guarded by mu_

  struct OpStats {
    uint64_t calls = 0;
    uint64_t wait_ns = 0;
    uint64_t posts = 0;
  };
  const bool stats_enabled_;
  std::vector<OpStats> stats_;  // guarded by mu_; indexed by op code
};

// The identity from the environment: $WOOLY_PRIORITY (0..4, default 2; a bad
// value is logged and replaced by the default), $WOOLY_CLIENT_NAME or else
// /proc/self/comm, and getpid().
ClientIdentity IdentityFromEnvironment();

}  // namespace wooly::client

#endif  // WOOLY_CLIENT_CONNECTION_H_
