// Byte channels that carry the framed protocol (wire.h) between libwooly and
// woolyd: the connection's socket, or, when both ends are on one node, a
// pair of single-producer single-consumer rings in shared memory.
//
// The shared-memory channel ("shm channel"): the client creates a memfd
// holding a ShmChannelHeader and two rings (client-to-server commands and
// server-to-client replies), and hands the fd to woolyd over the unix socket
// (SendFd/RecvFd). From then on frames travel through the rings; the socket
// stays open to pass further file descriptors and to notice a dead peer.
// A reader spins for a short while (most replies and commands arrive within
// microseconds) and then sleeps on a futex in the shared page; a writer
// wakes it only when it sleeps, so a busy pipeline makes no system calls.
//
// Neither side trusts the other's indices: woolyd treats a ring whose
// indices make no sense as a broken connection.
//
// Dependency-free (libc only): the client library uses it.
// Thread safety: a channel is used by one reader thread and one writer
// thread at a time (the callers serialize).
#ifndef WOOLY_PROTO_CHANNEL_H_
#define WOOLY_PROTO_CHANNEL_H_

#include <sys/uio.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace wooly::wire {

class ByteChannel {
 public:
  virtual ~ByteChannel() = default;
  // Writes every byte of iov[0..n). False when the peer is gone.
  virtual bool Write(const iovec* iov, int n) = 0;
  // Reads exactly `n` bytes. False on EOF, error or a broken peer.
  virtual bool Read(void* p, size_t n) = 0;
  // Called after a frame has been written completely (a doorbell).
  virtual void Flush() {}
  // Whether a Read could start without waiting for the peer (bytes already
  // arrived). A hint: true may still be followed by a short wait.
  virtual bool InputReady() const { return true; }
};

// The connection's socket. Does not own the fd. With `read_buffer` > 0,
// reads fetch up to that many bytes at once and serve later reads from
// them: one system call for many small frames. Never buffer a unix socket
// that also carries file descriptors (SendFd): a buffered read would
// swallow the descriptor's carrier byte and drop the descriptor.
class SocketChannel : public ByteChannel {
 public:
  explicit SocketChannel(int fd, size_t read_buffer = 0) : fd_(fd), buf_(read_buffer) {}
  bool Write(const iovec* iov, int n) override;
  bool Read(void* p, size_t n) override;
  bool InputReady() const override;

 private:
  int fd_;
  std::vector<uint8_t> buf_;
  size_t begin_ = 0, end_ = 0;  // unread bytes are buf_[begin_, end_)
};

// Writes one frame (header with `flags`, body, tail) to `ch`.
bool WriteFrameTo(ByteChannel& ch, uint16_t op, uint16_t flags, uint32_t seq, const void* body,
                  size_t body_len, const void* tail = nullptr, size_t tail_len = 0);

// --- shared-memory rings

inline constexpr uint32_t kShmMagic = 0x4d48534f;  // "OSHM"
inline constexpr uint32_t kShmVersion = 1;

// One direction. Positions count bytes since the start and never wrap; the
// byte at position p lives at data[p % capacity].
struct alignas(64) ShmRingControl {
  alignas(64) std::atomic<uint64_t> head;  // written by the producer
  alignas(64) std::atomic<uint64_t> tail;  // written by the consumer
  // Futex words: bumped when data (space) appears while the consumer
  // (producer) sleeps; the *_sleeping flags say whether anyone sleeps.
  alignas(64) std::atomic<uint32_t> data_seq;
  std::atomic<uint32_t> consumer_sleeping;
  alignas(64) std::atomic<uint32_t> space_seq;
  std::atomic<uint32_t> producer_sleeping;
};
static_assert(std::atomic<uint64_t>::is_always_lock_free);

struct ShmChannelHeader {
  uint32_t magic;
  uint32_t version;
  uint64_t ring_bytes;  // capacity of each ring, a power of two
  uint64_t total_bytes;
  uint64_t c2s_data;  // offsets of the two data areas
  uint64_t s2c_data;
  alignas(64) ShmRingControl c2s;  // commands
  alignas(64) ShmRingControl s2c;  // replies
};

// Bytes of the memfd for rings of `ring_bytes` each.
uint64_t ShmChannelBytes(uint64_t ring_bytes);

// Tuning, shared by both ends: how long a reader spins before it sleeps.
struct ShmWaitPolicy {
  uint64_t spin_ns = 50'000;
  // While asleep, the peer socket is checked this often.
  int liveness_ms = 20;
};
// The policy from $WOOLY_SHM_SPIN_US (microseconds; 0 = never spin).
ShmWaitPolicy ShmWaitPolicyFromEnv();

class ShmChannel : public ByteChannel {
 public:
  enum class Role { kClient, kServer };

  // The client side: creates and maps a new memfd with rings of
  // `ring_bytes` (rounded up to a power of two). Returns null and sets
  // *error on failure. `peer_fd` is the socket, watched while waiting.
  static std::unique_ptr<ShmChannel> Create(uint64_t ring_bytes, int peer_fd, std::string* error);
  // The server side: maps the memfd a client sent and checks its header.
  // Takes ownership of `memfd` (closed in every case).
  static std::unique_ptr<ShmChannel> Attach(int memfd, int peer_fd, std::string* error);
  ~ShmChannel() override;

  bool Write(const iovec* iov, int n) override;
  bool Read(void* p, size_t n) override;
  void Flush() override;
  bool InputReady() const override;

  // The memfd to send to the server (client side; -1 on the server side).
  int memfd() const { return memfd_; }
  void set_policy(const ShmWaitPolicy& p) { policy_ = p; }

 private:
  ShmChannel(Role role, void* base, uint64_t total, int memfd, int peer_fd);
  bool WaitFor(std::atomic<uint64_t>& pos, uint64_t want_not, std::atomic<uint32_t>& seq,
               std::atomic<uint32_t>& sleeping);
  bool PeerAlive() const;
  void Wake(std::atomic<uint32_t>& seq, std::atomic<uint32_t>& sleeping);

  Role role_;
  void* base_;
  uint64_t total_;
  int memfd_;
  int peer_fd_;
  ShmWaitPolicy policy_;
  ShmRingControl* tx_ = nullptr;
  ShmRingControl* rx_ = nullptr;
  uint8_t* tx_data_ = nullptr;
  uint8_t* rx_data_ = nullptr;
  uint64_t cap_ = 0;
  bool broken_ = false;
  bool pending_wake_ = false;  // bytes written since the last doorbell
};

// Passes one file descriptor over a unix socket, with a one-byte carrier
// message. RecvFd returns -1 on failure.
bool SendFd(int sock, int fd);
int RecvFd(int sock);

}  // namespace wooly::wire

#endif  // WOOLY_PROTO_CHANNEL_H_
