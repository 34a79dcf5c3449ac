#include "wooly/proto/channel.h"

#include <errno.h>
#include <linux/futex.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "wooly/proto/socket.h"
#include "wooly/proto/wire.h"

namespace wooly::wire {
namespace {

constexpr uint64_t kMaxRingBytes = 256ull << 20;
constexpr uint64_t kHeaderBytes = 4096;

uint64_t NowNs() {
  timespec ts;
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000ull + static_cast<uint64_t>(ts.tv_nsec);
}

// Shared (not FUTEX_PRIVATE): the word lives in memory mapped by two processes.
void FutexWait(std::atomic<uint32_t>* word, uint32_t expected, int timeout_ms) {
  timespec ts{timeout_ms / 1000, static_cast<long>(timeout_ms % 1000) * 1'000'000L};
  ::syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAIT, expected, &ts, nullptr, 0);
}

void FutexWake(std::atomic<uint32_t>* word) {
  ::syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAKE, 1, nullptr, nullptr, 0);
}

inline void CpuRelax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

uint64_t RoundUpPow2(uint64_t v) {
  uint64_t p = 4096;
  while (p < v) p <<= 1;
  return p;
}

}  // namespace

bool SocketChannel::Write(const iovec* iov_in, int cnt) {
  iovec iov[8];
  if (cnt > 8) return false;
  std::memcpy(iov, iov_in, sizeof(iovec) * static_cast<size_t>(cnt));
  int idx = 0;
  while (cnt > 0) {
    if (iov[idx].iov_len == 0) {
      ++idx;
      --cnt;
      continue;
    }
    // MSG_NOSIGNAL: a vanished peer must give EPIPE, never a SIGPIPE that
    // would kill woolyd (or the application hosting libwooly).
    msghdr msg{};
    msg.msg_iov = iov + idx;
    msg.msg_iovlen = static_cast<size_t>(cnt);
    const ssize_t n = ::sendmsg(fd_, &msg, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    size_t left = static_cast<size_t>(n);
    while (cnt > 0 && left >= iov[idx].iov_len) {
      left -= iov[idx].iov_len;
      ++idx;
      --cnt;
    }
    if (cnt > 0) {
      iov[idx].iov_base = static_cast<char*>(iov[idx].iov_base) + left;
      iov[idx].iov_len -= left;
    }
  }
  return true;
}

bool SocketChannel::InputReady() const {
  if (end_ > begin_) return true;
  pollfd pfd{fd_, POLLIN, 0};
  return ::poll(&pfd, 1, 0) != 0;  // readable, closed, or an error: Read will tell
}

bool SocketChannel::Read(void* p, size_t n) {
  if (buf_.empty()) return ReadFull(fd_, p, n);
  uint8_t* out = static_cast<uint8_t*>(p);
  while (n > 0) {
    if (begin_ == end_) {
      // Large reads go straight to the caller's buffer.
      if (n >= buf_.size()) return ReadFull(fd_, out, n);
      ssize_t r;
      do {
        r = ::read(fd_, buf_.data(), buf_.size());
      } while (r < 0 && errno == EINTR);
      if (r <= 0) return false;
      begin_ = 0;
      end_ = static_cast<size_t>(r);
    }
    const size_t k = std::min(n, end_ - begin_);
    std::memcpy(out, buf_.data() + begin_, k);
    begin_ += k;
    out += k;
    n -= k;
  }
  return true;
}

bool WriteFrameTo(ByteChannel& ch, uint16_t op, uint16_t flags, uint32_t seq, const void* body,
                  size_t body_len, const void* tail, size_t tail_len) {
  FrameHeader h{kMagic, op, flags, static_cast<uint32_t>(body_len + tail_len), seq};
  const iovec iov[3] = {
      {&h, sizeof(h)}, {const_cast<void*>(body), body_len}, {const_cast<void*>(tail), tail_len}};
  if (!ch.Write(iov, 3)) return false;
  ch.Flush();
  return true;
}

uint64_t ShmChannelBytes(uint64_t ring_bytes) { return kHeaderBytes + 2 * ring_bytes; }

ShmWaitPolicy ShmWaitPolicyFromEnv() {
  ShmWaitPolicy p;
  if (const char* s = std::getenv("WOOLY_SHM_SPIN_US"); s != nullptr && *s != '\0') {
    char* end = nullptr;
    const unsigned long long us = std::strtoull(s, &end, 10);
    if (end != s && *end == '\0' && us <= 10'000'000ull) p.spin_ns = us * 1000ull;
  }
  return p;
}

std::unique_ptr<ShmChannel> ShmChannel::Create(uint64_t ring_bytes, int peer_fd,
                                               std::string* error) {
  ring_bytes = RoundUpPow2(std::min(ring_bytes, kMaxRingBytes));
  const uint64_t total = ShmChannelBytes(ring_bytes);
  const int fd = ::memfd_create("wooly-channel", MFD_CLOEXEC);
  if (fd < 0) {
    *error = std::string("memfd_create: ") + std::strerror(errno);
    return nullptr;
  }
  if (::ftruncate(fd, static_cast<off_t>(total)) != 0) {
    *error = std::string("ftruncate: ") + std::strerror(errno);
    ::close(fd);
    return nullptr;
  }
  void* base = ::mmap(nullptr, total, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (base == MAP_FAILED) {
    *error = std::string("mmap: ") + std::strerror(errno);
    ::close(fd);
    return nullptr;
  }
  auto* h = new (base) ShmChannelHeader();
  h->magic = kShmMagic;
  h->version = kShmVersion;
  h->ring_bytes = ring_bytes;
  h->total_bytes = total;
  h->c2s_data = kHeaderBytes;
  h->s2c_data = kHeaderBytes + ring_bytes;
  return std::unique_ptr<ShmChannel>(new ShmChannel(Role::kClient, base, total, fd, peer_fd));
}

std::unique_ptr<ShmChannel> ShmChannel::Attach(int memfd, int peer_fd, std::string* error) {
  struct stat st;
  if (::fstat(memfd, &st) != 0 || st.st_size < static_cast<off_t>(kHeaderBytes) ||
      static_cast<uint64_t>(st.st_size) > ShmChannelBytes(kMaxRingBytes)) {
    *error = "shared-memory channel: bad memfd size";
    ::close(memfd);
    return nullptr;
  }
  const uint64_t total = static_cast<uint64_t>(st.st_size);
  void* base = ::mmap(nullptr, total, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
  ::close(memfd);
  if (base == MAP_FAILED) {
    *error = std::string("shared-memory channel: mmap: ") + std::strerror(errno);
    return nullptr;
  }
  // Read the layout once; the client may scribble on it later, so only
  // these checked copies are used.
  const auto* h = static_cast<const ShmChannelHeader*>(base);
  const uint64_t ring = h->ring_bytes;
  const bool ok = h->magic == kShmMagic && h->version == kShmVersion && ring >= 4096 &&
                  ring <= kMaxRingBytes && (ring & (ring - 1)) == 0 && h->total_bytes == total &&
                  total == ShmChannelBytes(ring) && h->c2s_data == kHeaderBytes &&
                  h->s2c_data == kHeaderBytes + ring;
  if (!ok) {
    *error = "shared-memory channel: bad header";
    ::munmap(base, total);
    return nullptr;
  }
  return std::unique_ptr<ShmChannel>(new ShmChannel(Role::kServer, base, total, -1, peer_fd));
}

ShmChannel::ShmChannel(Role role, void* base, uint64_t total, int memfd, int peer_fd)
    : role_(role), base_(base), total_(total), memfd_(memfd), peer_fd_(peer_fd) {
  policy_ = ShmWaitPolicyFromEnv();
  auto* h = static_cast<ShmChannelHeader*>(base);
  cap_ = (total - kHeaderBytes) / 2;
  uint8_t* c2s = static_cast<uint8_t*>(base) + kHeaderBytes;
  uint8_t* s2c = c2s + cap_;
  if (role == Role::kClient) {
    tx_ = &h->c2s;
    rx_ = &h->s2c;
    tx_data_ = c2s;
    rx_data_ = s2c;
  } else {
    tx_ = &h->s2c;
    rx_ = &h->c2s;
    tx_data_ = s2c;
    rx_data_ = c2s;
  }
}

ShmChannel::~ShmChannel() {
  ::munmap(base_, total_);
  if (memfd_ >= 0) ::close(memfd_);
}

bool ShmChannel::PeerAlive() const {
  if (peer_fd_ < 0) return true;
  pollfd p{peer_fd_, POLLIN | POLLRDHUP, 0};
  if (::poll(&p, 1, 0) <= 0) return true;
  if (p.revents & (POLLHUP | POLLERR | POLLRDHUP | POLLNVAL)) return false;
  if (p.revents & POLLIN) {
    char c;
    const ssize_t n = ::recv(peer_fd_, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n == 0) return false;
  }
  return true;
}

void ShmChannel::Wake(std::atomic<uint32_t>& seq, std::atomic<uint32_t>& sleeping) {
  // Pairs with the fence in WaitFor: either the sleeper sees our update, or
  // we see its flag and wake it.
  std::atomic_thread_fence(std::memory_order_seq_cst);
  if (sleeping.load(std::memory_order_relaxed) != 0) {
    seq.fetch_add(1, std::memory_order_release);
    FutexWake(&seq);
  }
}

bool ShmChannel::WaitFor(std::atomic<uint64_t>& pos, uint64_t current, std::atomic<uint32_t>& seq,
                         std::atomic<uint32_t>& sleeping) {
  if (broken_) return false;
  if (policy_.spin_ns > 0) {
    const uint64_t deadline = NowNs() + policy_.spin_ns;
    for (uint32_t i = 1;; ++i) {
      if (pos.load(std::memory_order_acquire) != current) return true;
      CpuRelax();
      if ((i & 63) == 0 && NowNs() > deadline) break;
    }
  }
  for (;;) {
    const uint32_t s = seq.load(std::memory_order_acquire);
    sleeping.store(1, std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_seq_cst);
    if (pos.load(std::memory_order_acquire) != current) {
      sleeping.store(0, std::memory_order_relaxed);
      return true;
    }
    FutexWait(&seq, s, policy_.liveness_ms);
    sleeping.store(0, std::memory_order_relaxed);
    if (pos.load(std::memory_order_acquire) != current) return true;
    if (!PeerAlive()) {
      broken_ = true;
      return false;
    }
  }
}

bool ShmChannel::Write(const iovec* iov, int n) {
  if (broken_) return false;
  uint64_t head = tx_->head.load(std::memory_order_relaxed);
  for (int i = 0; i < n; ++i) {
    const uint8_t* src = static_cast<const uint8_t*>(iov[i].iov_base);
    size_t left = iov[i].iov_len;
    while (left > 0) {
      uint64_t tail = tx_->tail.load(std::memory_order_acquire);
      if (head - tail > cap_) {  // the peer wrote nonsense
        broken_ = true;
        return false;
      }
      if (head - tail == cap_) {
        // Full: let the reader drain what is there, then wait for space.
        Wake(tx_->data_seq, tx_->consumer_sleeping);
        if (!WaitFor(tx_->tail, tail, tx_->space_seq, tx_->producer_sleeping)) return false;
        continue;
      }
      const uint64_t space = cap_ - (head - tail);
      const uint64_t off = head & (cap_ - 1);
      const uint64_t k = std::min<uint64_t>({left, space, cap_ - off});
      std::memcpy(tx_data_ + off, src, k);
      head += k;
      src += k;
      left -= k;
      tx_->head.store(head, std::memory_order_release);
      pending_wake_ = true;
      // Large writes wake the reader early so it drains in parallel.
      if (left > 0 && k >= (64u << 10)) {
        Wake(tx_->data_seq, tx_->consumer_sleeping);
        pending_wake_ = false;
      }
    }
  }
  return true;
}

void ShmChannel::Flush() {
  if (!pending_wake_) return;
  pending_wake_ = false;
  Wake(tx_->data_seq, tx_->consumer_sleeping);
}

bool ShmChannel::InputReady() const {
  if (broken_) return true;  // Read answers at once
  return rx_->head.load(std::memory_order_acquire) != rx_->tail.load(std::memory_order_relaxed);
}

bool ShmChannel::Read(void* p, size_t n) {
  if (broken_) return false;
  uint8_t* dst = static_cast<uint8_t*>(p);
  uint64_t tail = rx_->tail.load(std::memory_order_relaxed);
  while (n > 0) {
    uint64_t head = rx_->head.load(std::memory_order_acquire);
    if (head - tail > cap_) {
      broken_ = true;
      return false;
    }
    if (head == tail) {
      if (!WaitFor(rx_->head, head, rx_->data_seq, rx_->consumer_sleeping)) return false;
      continue;
    }
    const uint64_t off = tail & (cap_ - 1);
    const uint64_t k = std::min<uint64_t>({n, head - tail, cap_ - off});
    std::memcpy(dst, rx_data_ + off, k);
    tail += k;
    dst += k;
    n -= k;
    rx_->tail.store(tail, std::memory_order_release);
    Wake(rx_->space_seq, rx_->producer_sleeping);
  }
  return true;
}

namespace {
// A one-byte message with room for one descriptor; `ctrl` must outlive it.
struct FdMessage {
  char byte = 'F';
  iovec iov{&byte, 1};
  alignas(cmsghdr) char ctrl[CMSG_SPACE(sizeof(int))] = {};
  msghdr msg{};
  FdMessage() {
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = ctrl;
    msg.msg_controllen = sizeof(ctrl);
  }
  FdMessage(const FdMessage&) = delete;
};
}  // namespace

bool SendFd(int sock, int fd) {
  FdMessage m;
  cmsghdr* c = CMSG_FIRSTHDR(&m.msg);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int));
  std::memcpy(CMSG_DATA(c), &fd, sizeof(int));
  for (;;) {
    const ssize_t n = ::sendmsg(sock, &m.msg, MSG_NOSIGNAL);
    if (n == 1) return true;
    if (n < 0 && errno == EINTR) continue;
    return false;
  }
}

int RecvFd(int sock) {
  FdMessage m;
  m.byte = 0;
  ssize_t n;
  do {
    n = ::recvmsg(sock, &m.msg, MSG_CMSG_CLOEXEC);
  } while (n < 0 && errno == EINTR);
  if (n != 1 || m.byte != 'F') return -1;
  int fd = -1;
  for (cmsghdr* c = CMSG_FIRSTHDR(&m.msg); c != nullptr; c = CMSG_NXTHDR(&m.msg, c)) {
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS &&
        c->cmsg_len == CMSG_LEN(sizeof(int))) {
      std::memcpy(&fd, CMSG_DATA(c), sizeof(int));
    }
  }
  if (m.msg.msg_flags & MSG_CTRUNC) {
    if (fd >= 0) ::close(fd);
    return -1;
  }
  return fd;
}

}  // namespace wooly::wire
