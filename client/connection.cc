#include "connection.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "log.h"
#include "wooly/proto/defaults.h"
#include "wooly/proto/socket.h"

namespace wooly::client {

ClientIdentity IdentityFromEnvironment() {
  ClientIdentity id;
  id.pid = static_cast<uint32_t>(::getpid());
  id.priority = 2;
  // WOOLY_* settings come from the environment, else the client config
  // file (wire::Setting).
  if (const std::string p = wire::Setting(wire::kEnvPriority); !p.empty()) {
    if (p.size() == 1 && p[0] >= '0' && p[0] <= '4') {
      id.priority = p[0] - '0';
    } else {
      WLOG_WARN("%s='%s' is not a priority 0 (highest) .. 4 (lowest); using the default 2",
                wire::kEnvPriority, p.c_str());
    }
  }
  id.name = wire::Setting(wire::kEnvClientName);
  if (id.name.empty()) id.name = wire::ProgramName();
  auto first_env = [](const char* wooly_name, const char* plain_name) {
    std::string v = wire::Setting(wooly_name);
    if (v.empty()) {
      const char* e = std::getenv(plain_name);
      if (e != nullptr) v = e;
    }
    return v;
  };
  id.pod = first_env(wire::kEnvPodName, "POD_NAME");
  id.pod_namespace = first_env(wire::kEnvPodNamespace, "POD_NAMESPACE");
  for (const char* name : wire::kTenantSettingEnvs) {
    std::string v = wire::Setting(name);
    if (!v.empty()) id.settings.emplace_back(name, std::move(v));
  }
  return id;
}

Connection::Connection(std::string endpoint, ClientIdentity identity)
    : endpoint_(std::move(endpoint)),
      identity_(std::move(identity)),
      stats_enabled_(wire::Setting("WOOLY_CLIENT_STATS") == "1") {}

Connection::~Connection() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  batch_cv_.notify_all();
  if (flusher_.joinable()) flusher_.join();
  chan_.reset();
  if (fd_ >= 0) ::close(fd_);
}

CUresult Connection::Start(SessionInfo* info, std::string* error) {
  std::lock_guard<std::mutex> lock(mu_);
  return ConnectLocked(info, error);
}

CUresult Connection::ConnectLocked(SessionInfo* info, std::string* error) {
  chan_.reset();
  shm_active_.store(false, std::memory_order_release);
  if (fd_ >= 0) {
    ::close(fd_);
    fd_ = -1;
  }
  state_ = State::kBroken;
  wire::Endpoint ep;
  if (!wire::ParseEndpoint(endpoint_, &ep, error)) return CUDA_ERROR_NO_DEVICE;
  std::string err;
  const int fd = wire::Connect(ep, &err);
  if (fd < 0) {
    *error = err;
    return CUDA_ERROR_NO_DEVICE;
  }
  fd_ = fd;
  is_unix_ = ep.is_unix;
  if (is_unix_) {
    // Bulk requests (host-to-device pieces) stream ahead of woolyd only as
    // far as the socket buffers them; a unix socket's default is ~208 KiB.
    // Capped by net.core.wmem_max. TCP tunes its own.
    int bytes = 4 << 20;
    ::setsockopt(fd_, SOL_SOCKET, SO_SNDBUF, &bytes, sizeof(bytes));
  }
  chan_ = std::make_unique<wire::SocketChannel>(fd_);
  state_ = State::kHandshake;

  wire::Writer w;
  w.Put<uint32_t>(wire::kProtocolVersion)
      .Put<uint32_t>(identity_.pid)
      .Put<int32_t>(identity_.priority)
      .PutStr(identity_.name)
      .PutStr(identity_.pod)
      .PutStr(identity_.pod_namespace)
      .Put<uint32_t>(static_cast<uint32_t>(identity_.settings.size()));
  for (const auto& [key, value] : identity_.settings) w.PutStr(key).PutStr(value);
  Reply reply;
  const CUresult r = CallLocked(wire::Op::kHello, w, &reply, nullptr, 0, nullptr, 0);
  if (state_ != State::kHandshake) {
    *error = "the connection closed during the handshake";
    BreakLocked(nullptr);
    return CUDA_ERROR_NO_DEVICE;
  }
  wire::Reader rd = reply.reader();
  if (r == CUDA_ERROR_NOT_SUPPORTED) {
    // The one error reply with a message: a protocol version mismatch.
    std::string msg = rd.GetStr();
    if (!rd.ok() || msg.empty()) msg = "protocol version mismatch";
    *error = msg;
    BreakLocked(nullptr);
    return CUDA_ERROR_SYSTEM_DRIVER_MISMATCH;
  }
  if (r == CUDA_ERROR_INVALID_VALUE || r == CUDA_ERROR_OUT_OF_MEMORY) {
    // A refused setting (or a WOOLY_MEMORY_REQUIRED the tenant cannot
    // have) comes with woolyd's explanation.
    std::string msg = rd.GetStr();
    if (rd.ok() && !msg.empty()) {
      *error = msg;
      BreakLocked(nullptr);
      return r;
    }
  }
  if (r != CUDA_SUCCESS) {
    *error = "woolyd refused the session (CUresult " + std::to_string(static_cast<int>(r)) + ")";
    BreakLocked(nullptr);
    return r;
  }
  SessionInfo si;
  si.protocol_version = rd.Get<uint32_t>();
  si.server_version = rd.GetStr();
  si.client_id = rd.Get<uint64_t>();
  si.device = wire::GetDeviceInfo(rd);
  if (!rd.ok()) {
    *error = "malformed Hello reply";
    BreakLocked(nullptr);
    return CUDA_ERROR_SYSTEM_DRIVER_MISMATCH;
  }
  if (si.protocol_version != wire::kProtocolVersion) {
    *error = "woolyd speaks protocol version " + std::to_string(si.protocol_version) +
             ", this libwooly speaks " + std::to_string(wire::kProtocolVersion);
    BreakLocked(nullptr);
    return CUDA_ERROR_SYSTEM_DRIVER_MISMATCH;
  }
  WLOG_INFO("connected to woolyd %s at %s as client %llu (%s, priority %d)",
            si.server_version.c_str(), endpoint_.c_str(),
            static_cast<unsigned long long>(si.client_id), identity_.name.c_str(),
            identity_.priority);
  if (info != nullptr) *info = std::move(si);
  state_ = State::kReady;
  AttachShmLocked();
  batching_ = false;
  if (!shm_active_.load()) {
    batch_us_ = 50;
    if (const std::string e = wire::Setting(wire::kEnvBatchUs); !e.empty()) {
      batch_us_ = static_cast<uint32_t>(std::min(100000L, std::max(0L, std::atol(e.c_str()))));
    }
    batching_ = batch_us_ > 0;
  }
  return CUDA_SUCCESS;
}

bool Connection::FlushLocked() {
  if (batch_.empty()) return true;
  const iovec iov{batch_.data(), batch_.size()};
  const bool ok = chan_ != nullptr && chan_->Write(&iov, 1);
  batch_.clear();
  if (!ok) BreakLocked(std::strerror(errno));
  return ok;
}

void Connection::FlusherLoop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stopping_) {
    batch_cv_.wait(lock, [&] { return stopping_ || !batch_.empty(); });
    if (stopping_) break;
    const uint32_t us = batch_us_;
    lock.unlock();
    timespec ts{0, static_cast<long>(us) * 1000L};
    ::nanosleep(&ts, nullptr);
    lock.lock();
    FlushLocked();
  }
}

void Connection::AttachShmLocked() {
  if (!is_unix_) return;
  if (wire::Setting(wire::kEnvShm) == "0") {
    WLOG_INFO("%s=0: staying on the socket", wire::kEnvShm);
    return;
  }
  std::string error;
  std::unique_ptr<wire::ShmChannel> shm = wire::ShmChannel::Create(8u << 20, fd_, &error);
  if (shm == nullptr) {
    WLOG_WARN("no shared-memory channel (%s); staying on the socket", error.c_str());
    return;
  }
  wire::Writer w;
  const uint32_t seq = ++seq_;
  const uint16_t op = static_cast<uint16_t>(wire::Op::kShmAttach);
  if (!wire::WriteFrameTo(*chan_, op, 0, seq, w.data().data(), 0) ||
      !wire::SendFd(fd_, shm->memfd())) {
    BreakLocked(std::strerror(errno));
    return;
  }
  wire::FrameHeader h;
  int32_t result = 0;
  if (!wire::ReadHeader(fd_, &h) || h.op != (op | wire::kReplyBit) || h.seq != seq ||
      h.length != sizeof(int32_t) || !wire::ReadFull(fd_, &result, sizeof(result))) {
    BreakLocked("bad reply to the shared-memory attach");
    return;
  }
  if (result != CUDA_SUCCESS) {
    WLOG_INFO("woolyd declined the shared-memory channel (CUresult %d); staying on the socket",
              static_cast<int>(result));
    return;
  }
  chan_ = std::move(shm);
  shm_active_.store(true, std::memory_order_release);
  WLOG_INFO("using the shared-memory channel");
}

void Connection::BreakLocked(const char* why) {
  if (why != nullptr && state_ == State::kReady) {
    WLOG_ERROR(
        "lost the connection to woolyd at %s (%s); CUDA calls now fail with "
        "CUDA_ERROR_DEVICE_UNAVAILABLE",
        endpoint_.c_str(), why);
  }
  chan_.reset();
  shm_active_.store(false, std::memory_order_release);
  if (fd_ >= 0) {
    ::close(fd_);
    fd_ = -1;
  }
  state_ = State::kBroken;
}

CUresult Connection::ReconnectIfNeededLocked() {
  if (state_ == State::kReconnect) {
    std::string error;
    if (ConnectLocked(nullptr, &error) != CUDA_SUCCESS) {
      WLOG_ERROR("reconnecting to woolyd at %s after fork failed: %s", endpoint_.c_str(),
                 error.c_str());
      state_ = State::kBroken;
    }
  }
  return state_ == State::kReady ? CUDA_SUCCESS : CUDA_ERROR_DEVICE_UNAVAILABLE;
}

CUresult Connection::Post(wire::Op op, const wire::Writer& body, const void* tail,
                          size_t tail_len) {
  std::lock_guard<std::mutex> lock(mu_);
  if (CUresult r = ReconnectIfNeededLocked(); r != CUDA_SUCCESS) return r;
  if (body.size() + tail_len > wire::kMaxPayload) return CUDA_ERROR_INVALID_VALUE;
  if (stats_enabled_) StatsFor(op).posts++;
  constexpr size_t kBatchBytes = 64u << 10;
  if (batching_ && tail_len <= kBatchBytes) {
    const bool was_empty = batch_.empty();
    const wire::FrameHeader h{wire::kMagic, static_cast<uint16_t>(op), wire::kFlagNoReply,
                              static_cast<uint32_t>(body.size() + tail_len), ++seq_};
    const auto* hp = reinterpret_cast<const uint8_t*>(&h);
    batch_.insert(batch_.end(), hp, hp + sizeof(h));
    batch_.insert(batch_.end(), body.data().begin(), body.data().end());
    if (tail_len > 0) {
      const auto* tp = static_cast<const uint8_t*>(tail);
      batch_.insert(batch_.end(), tp, tp + tail_len);
    }
    if (batch_.size() >= kBatchBytes) {
      return FlushLocked() ? CUDA_SUCCESS : CUDA_ERROR_DEVICE_UNAVAILABLE;
    }
    if (was_empty) {
      if (!flusher_.joinable()) flusher_ = std::thread(&Connection::FlusherLoop, this);
      batch_cv_.notify_one();
    }
    return CUDA_SUCCESS;
  }
  if (!FlushLocked()) return CUDA_ERROR_DEVICE_UNAVAILABLE;
  if (!wire::WriteFrameTo(*chan_, static_cast<uint16_t>(op), wire::kFlagNoReply, ++seq_,
                          body.data().data(), body.size(), tail, tail_len)) {
    BreakLocked(std::strerror(errno));
    return CUDA_ERROR_DEVICE_UNAVAILABLE;
  }
  return CUDA_SUCCESS;
}

bool Connection::PeerAlive() {
  std::lock_guard<std::mutex> lock(mu_);
  if (state_ != State::kReady || fd_ < 0) return false;
  pollfd p{fd_, POLLRDHUP, 0};
  return ::poll(&p, 1, 0) == 0 || (p.revents & (POLLHUP | POLLERR | POLLRDHUP | POLLNVAL)) == 0;
}

void Connection::GoodbyeAtExit() {
  std::unique_lock<std::mutex> lock(mu_, std::try_to_lock);
  if (!lock.owns_lock() || state_ != State::kReady) return;
  // Batched work still goes out, as it would have on a local GPU.
  FlushLocked();
  if (!shm_active_.load()) return;
  wire::WriteFrameTo(*chan_, static_cast<uint16_t>(wire::Op::kGoodbye), wire::kFlagNoReply, ++seq_,
                     nullptr, 0);
}

CUresult Connection::CallWithFd(wire::Op op, const wire::Writer& body, int fd) {
  std::lock_guard<std::mutex> lock(mu_);
  if (CUresult r = ReconnectIfNeededLocked(); r != CUDA_SUCCESS) return r;
  if (!is_unix_) return CUDA_ERROR_NOT_SUPPORTED;
  // The fd goes first: woolyd takes it from the socket when it reaches the
  // request, whichever channel carries the request.
  if (!FlushLocked()) return CUDA_ERROR_DEVICE_UNAVAILABLE;
  if (!wire::SendFd(fd_, fd)) {
    BreakLocked(std::strerror(errno));
    return CUDA_ERROR_DEVICE_UNAVAILABLE;
  }
  return CallLocked(op, body, nullptr, nullptr, 0, nullptr, 0);
}

CUresult Connection::Call(wire::Op op, const wire::Writer& body, Reply* reply, const void* tail,
                          size_t tail_len, void* out_tail, size_t out_tail_len) {
  std::lock_guard<std::mutex> lock(mu_);
  if (CUresult r = ReconnectIfNeededLocked(); r != CUDA_SUCCESS) return r;
  if (!stats_enabled_) return CallLocked(op, body, reply, tail, tail_len, out_tail, out_tail_len);
  const auto start = std::chrono::steady_clock::now();
  const CUresult r = CallLocked(op, body, reply, tail, tail_len, out_tail, out_tail_len);
  OpStats& st = StatsFor(op);
  st.calls++;
  st.wait_ns +=
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - start)
          .count();
  return r;
}

CUresult Connection::CallPipelined(wire::Op op, std::span<const PipelinedRequest> requests,
                                   size_t window) {
  std::lock_guard<std::mutex> lock(mu_);
  if (CUresult r = ReconnectIfNeededLocked(); r != CUDA_SUCCESS) return r;
  size_t sent = 0;
  if (!stats_enabled_) return CallPipelinedLocked(op, requests, window, &sent);
  const auto start = std::chrono::steady_clock::now();
  const CUresult r = CallPipelinedLocked(op, requests, window, &sent);
  OpStats& st = StatsFor(op);
  st.calls += sent;
  st.wait_ns +=
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - start)
          .count();
  return r;
}

Connection::OpStats& Connection::StatsFor(wire::Op op) {
  const auto code = static_cast<size_t>(op);
  if (stats_.size() <= code) stats_.resize(code + 1);
  return stats_[code];
}

void Connection::PrintStats() {
  if (!stats_enabled_) return;
  std::unique_lock<std::mutex> lock(mu_, std::try_to_lock);
  if (!lock.owns_lock()) return;
  for (size_t code = 0; code < stats_.size(); ++code) {
    const OpStats& st = stats_[code];
    if (st.calls == 0 && st.posts == 0) continue;
    std::fprintf(stderr, "wooly client stats: pid %d op %s waited %llu (%.3f ms) posted %llu\n",
                 static_cast<int>(::getpid()), wire::OpName(static_cast<uint16_t>(code)),
                 static_cast<unsigned long long>(st.calls), st.wait_ns / 1e6,
                 static_cast<unsigned long long>(st.posts));
  }
}

bool Connection::ReadReplyHeadLocked(uint16_t op_code, uint32_t seq, int32_t* result,
                                     size_t* rest) {
  wire::FrameHeader h;
  if (!chan_->Read(&h, sizeof(h)) || h.magic != wire::kMagic ||
      h.length > wire::kMaxPayload + 4096) {
    BreakLocked("connection closed by woolyd");
    return false;
  }
  if (h.op != (op_code | wire::kReplyBit) || h.seq != seq || h.length < sizeof(int32_t)) {
    BreakLocked("unexpected reply frame");
    return false;
  }
  if (!chan_->Read(result, sizeof(*result))) {
    BreakLocked("connection closed by woolyd");
    return false;
  }
  *rest = h.length - sizeof(int32_t);
  return true;
}

CUresult Connection::CallLocked(wire::Op op, const wire::Writer& body, Reply* reply,
                                const void* tail, size_t tail_len, void* out_tail,
                                size_t out_tail_len) {
  const uint16_t op_code = static_cast<uint16_t>(op);
  if (!FlushLocked()) return CUDA_ERROR_DEVICE_UNAVAILABLE;
  const uint32_t seq = ++seq_;
  if (reply != nullptr) reply->fields.clear();
  if (body.size() + tail_len > wire::kMaxPayload) {
    // Callers chunk bulk data; reaching this is a bug, not a server problem.
    WLOG_ERROR("%s request of %zu bytes exceeds the frame limit", wire::OpName(op_code),
               body.size() + tail_len);
    return CUDA_ERROR_INVALID_VALUE;
  }
  // WriteFrame uses MSG_NOSIGNAL: a vanished server is an error, not a SIGPIPE.
  if (!wire::WriteFrameTo(*chan_, op_code, 0, seq, body.data().data(), body.size(), tail,
                          tail_len)) {
    BreakLocked(std::strerror(errno));
    return CUDA_ERROR_DEVICE_UNAVAILABLE;
  }
  int32_t result = 0;
  size_t rest = 0;
  if (!ReadReplyHeadLocked(op_code, seq, &result, &rest)) return CUDA_ERROR_DEVICE_UNAVAILABLE;
  size_t direct = 0;
  if (out_tail != nullptr && result == CUDA_SUCCESS) {
    if (rest < out_tail_len) {
      BreakLocked("reply shorter than the data it should carry");
      return CUDA_ERROR_DEVICE_UNAVAILABLE;
    }
    direct = out_tail_len;
  }
  std::vector<uint8_t> scratch;
  std::vector<uint8_t>& fields = reply != nullptr ? reply->fields : scratch;
  fields.resize(rest - direct);
  if ((!fields.empty() && !chan_->Read(fields.data(), fields.size())) ||
      (direct > 0 && !chan_->Read(out_tail, direct))) {
    BreakLocked("connection closed by woolyd");
    return CUDA_ERROR_DEVICE_UNAVAILABLE;
  }
  const CUresult r = static_cast<CUresult>(result);
  if (r != CUDA_SUCCESS) {
    WLOG_DEBUG("%s -> %d", wire::OpName(op_code), static_cast<int>(result));
  }
  return r;
}

bool Connection::SkipLocked(size_t n) {
  uint8_t scratch[4096];
  while (n > 0) {
    const size_t k = std::min(n, sizeof(scratch));
    if (!chan_->Read(scratch, k)) {
      BreakLocked("connection closed by woolyd");
      return false;
    }
    n -= k;
  }
  return true;
}

CUresult Connection::CallPipelinedLocked(wire::Op op, std::span<const PipelinedRequest> requests,
                                         size_t window, size_t* sent_out) {
  const uint16_t op_code = static_cast<uint16_t>(op);
  for (const PipelinedRequest& q : requests) {
    if (q.body.size() + q.tail_len > wire::kMaxPayload) {
      WLOG_ERROR("%s request of %zu bytes exceeds the frame limit", wire::OpName(op_code),
                 q.body.size() + q.tail_len);
      return CUDA_ERROR_INVALID_VALUE;
    }
  }
  if (!FlushLocked()) return CUDA_ERROR_DEVICE_UNAVAILABLE;
  window = std::max<size_t>(window, 1);
  // Holding mu_ throughout, the requests get consecutive sequence numbers.
  const uint32_t first_seq = seq_ + 1;
  size_t& sent = *sent_out;
  sent = 0;
  auto send_next = [&]() -> bool {
    const PipelinedRequest& q = requests[sent];
    if (!wire::WriteFrameTo(*chan_, op_code, 0, ++seq_, q.body.data().data(), q.body.size(), q.tail,
                            q.tail_len)) {
      BreakLocked(std::strerror(errno));
      return false;
    }
    ++sent;
    return true;
  };
  while (sent < requests.size() && sent < window) {
    if (!send_next()) return CUDA_ERROR_DEVICE_UNAVAILABLE;
  }
  CUresult first_error = CUDA_SUCCESS;
  for (size_t done = 0; done < sent; ++done) {
    const PipelinedRequest& q = requests[done];
    int32_t result = 0;
    size_t rest = 0;
    if (!ReadReplyHeadLocked(op_code, first_seq + static_cast<uint32_t>(done), &result, &rest)) {
      return CUDA_ERROR_DEVICE_UNAVAILABLE;
    }
    CUresult r = static_cast<CUresult>(result);
    if (r == CUDA_SUCCESS && q.out_tail_len > 0) {
      if (rest < q.out_tail_len) {
        BreakLocked("reply shorter than the data it should carry");
        return CUDA_ERROR_DEVICE_UNAVAILABLE;
      }
      if (!chan_->Read(q.out_tail, q.out_tail_len)) {
        BreakLocked("connection closed by woolyd");
        return CUDA_ERROR_DEVICE_UNAVAILABLE;
      }
      rest -= q.out_tail_len;
    }
    if (r == CUDA_SUCCESS && rest > 0) {
      WLOG_ERROR("woolyd sent a malformed %s reply", wire::OpName(op_code));
      r = CUDA_ERROR_UNKNOWN;
    }
    // An error's fields (or a malformed reply's excess) are not wanted.
    if (rest > 0 && !SkipLocked(rest)) return CUDA_ERROR_DEVICE_UNAVAILABLE;
    if (r != CUDA_SUCCESS) {
      WLOG_DEBUG("%s -> %d", wire::OpName(op_code), static_cast<int>(r));
      if (first_error == CUDA_SUCCESS) first_error = r;
    }
    // After a failure nothing more is sent; what is in flight is drained.
    if (first_error == CUDA_SUCCESS && sent < requests.size() && !send_next()) {
      return CUDA_ERROR_DEVICE_UNAVAILABLE;
    }
  }
  return first_error;
}

std::unique_ptr<Connection> Connection::ForkChild() {
  // Only the forking thread exists in the child, so reading these without
  // the (possibly held) mutex is safe. Unmapping the rings here leaves the
  // parent's mapping alone.
  chan_.reset();
  shm_active_.store(false, std::memory_order_relaxed);
  // The parent's batch is the parent's; its flusher thread does not exist
  // here, and this object is never destroyed, so the thread is never joined.
  batch_.clear();
  if (fd_ >= 0) {
    ::close(fd_);
    fd_ = -1;
  }
  ClientIdentity id = identity_;
  id.pid = static_cast<uint32_t>(::getpid());
  auto child = std::make_unique<Connection>(endpoint_, std::move(id));
  child->state_ =
      (state_ == State::kReady || state_ == State::kReconnect) ? State::kReconnect : State::kBroken;
  state_ = State::kBroken;
  return child;
}

}  // namespace wooly::client
