#include "observer.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>

#include "wooly/proto/defaults.h"
#include "wooly/proto/socket.h"

namespace wooly::nvml {
namespace {

// A hung woolyd must not hang the monitoring tool forever.
constexpr int kIoTimeoutSeconds = 10;
constexpr uint32_t kMaxProcesses = 65536;

// CUDA_SUCCESS and CUDA_ERROR_NOT_SUPPORTED, without cuda.h.
constexpr int32_t kCuSuccess = 0;
constexpr int32_t kCuNotSupported = 801;

// `a` (a WOOLY_* setting: environment, then client config), else the
// environment variable `b`.
std::string FirstEnv(const char* a, const char* b) {
  std::string v = wire::Setting(a);
  if (v.empty() && b != nullptr) {
    const char* e = std::getenv(b);
    if (e != nullptr) v = e;
  }
  return v;
}

}  // namespace

HelloIdentity ObserverIdentityFromEnvironment() {
  HelloIdentity id;
  id.pid = static_cast<uint32_t>(::getpid());
  // Same rules as libwooly; a bad value is libwooly's to report.
  if (const std::string p = wire::Setting(wire::kEnvPriority);
      p.size() == 1 && p[0] >= '0' && p[0] <= '4') {
    id.priority = p[0] - '0';
  }
  id.name = FirstEnv(wire::kEnvClientName, nullptr);
  if (id.name.empty()) id.name = wire::ProgramName();
  id.pod = FirstEnv(wire::kEnvPodName, "POD_NAME");
  id.pod_namespace = FirstEnv(wire::kEnvPodNamespace, "POD_NAMESPACE");
  id.settings.emplace_back("role", "observer");
  for (const char* key : {"WOOLY_TENANT", "WOOLY_MEMORY_LIMIT"}) {
    if (std::string v = wire::Setting(key); !v.empty()) id.settings.emplace_back(key, v);
  }
  return id;
}

wire::Writer BuildHello(const HelloIdentity& id) {
  wire::Writer w;
  w.Put<uint32_t>(wire::kProtocolVersion)
      .Put<uint32_t>(id.pid)
      .Put<int32_t>(id.priority)
      .PutStr(id.name)
      .PutStr(id.pod)
      .PutStr(id.pod_namespace)
      .Put<uint32_t>(static_cast<uint32_t>(id.settings.size()));
  for (const auto& [key, value] : id.settings) w.PutStr(key).PutStr(value);
  return w;
}

bool ParseTenantView(wire::Reader& r, TenantView* out) {
  TenantView v;
  v.tenant = r.GetStr();
  v.memory_limit = r.Get<uint64_t>();
  v.memory_total = r.Get<uint64_t>();
  v.memory_used = r.Get<uint64_t>();
  v.device_total = r.Get<uint64_t>();
  v.device_free = r.Get<uint64_t>();
  v.measured_share = r.Get<double>();
  v.target_share = r.Get<double>();
  v.busy_ns = r.Get<uint64_t>();
  const uint32_t n = r.Get<uint32_t>();
  if (!r.ok() || n > kMaxProcesses) return false;
  v.processes.reserve(n);
  for (uint32_t i = 0; i < n && r.ok(); ++i) {
    TenantProcess p;
    p.pid = r.Get<uint32_t>();
    p.bytes = r.Get<uint64_t>();
    p.name = r.GetStr();
    v.processes.push_back(std::move(p));
  }
  if (!r.ok()) return false;
  *out = std::move(v);
  return true;
}

Observer::~Observer() { Close(); }

void Observer::Close() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

ConnectFailure Observer::Connect(const std::string& endpoint, const HelloIdentity& id,
                                 wire::DeviceInfo* device, std::string* server_version,
                                 std::string* error) {
  Close();
  wire::Endpoint ep;
  if (!wire::ParseEndpoint(endpoint, &ep, error)) return ConnectFailure::kUnreachable;
  const int fd = wire::Connect(ep, error);
  if (fd < 0) return ConnectFailure::kUnreachable;
  const timeval tv{kIoTimeoutSeconds, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  fd_ = fd;
  is_unix_ = ep.is_unix;
  owner_pid_ = ::getpid();
  seq_ = 0;

  int32_t result = 0;
  std::vector<uint8_t> payload;
  if (!Call(wire::Op::kHello, BuildHello(id), &result, &payload)) {
    *error = "the connection closed during the handshake";
    return ConnectFailure::kBroken;
  }
  wire::Reader r(payload.data(), payload.size());
  if (result != kCuSuccess) {
    // Version mismatches and bad settings carry an explanation.
    std::string msg = r.GetStr();
    if (!r.ok() || msg.empty()) {
      msg = "woolyd refused the session (CUresult " + std::to_string(result) + ")";
    }
    *error = msg;
    Close();
    return result == kCuNotSupported ? ConnectFailure::kVersionMismatch : ConnectFailure::kRefused;
  }
  const uint32_t version = r.Get<uint32_t>();
  std::string sv = r.GetStr();
  r.Get<uint64_t>();  // client id: unused here
  wire::DeviceInfo info = wire::GetDeviceInfo(r);
  if (!r.ok()) {
    *error = "malformed Hello reply";
    Close();
    return ConnectFailure::kBroken;
  }
  if (version != wire::kProtocolVersion) {
    *error = "woolyd speaks protocol version " + std::to_string(version) +
             ", this libnvidia-ml speaks " + std::to_string(wire::kProtocolVersion);
    Close();
    return ConnectFailure::kVersionMismatch;
  }
  *device = std::move(info);
  *server_version = std::move(sv);
  return ConnectFailure::kNone;
}

bool Observer::Call(wire::Op op, const wire::Writer& body, int32_t* result,
                    std::vector<uint8_t>* payload) {
  if (fd_ < 0) return false;
  const uint32_t seq = ++seq_;
  const uint16_t code = static_cast<uint16_t>(op);
  if (!wire::WriteFrame(fd_, code, seq, body.data().data(), body.size())) {
    Close();
    return false;
  }
  wire::FrameHeader h;
  if (!wire::ReadHeader(fd_, &h) || h.op != (code | wire::kReplyBit) || h.seq != seq ||
      h.length < sizeof(int32_t)) {
    Close();
    return false;
  }
  std::vector<uint8_t> buf(h.length);
  if (!wire::ReadFull(fd_, buf.data(), buf.size())) {
    Close();
    return false;
  }
  std::memcpy(result, buf.data(), sizeof(int32_t));
  payload->assign(buf.begin() + sizeof(int32_t), buf.end());
  return true;
}

void Observer::Goodbye() {
  if (fd_ < 0) return;
  int32_t result = 0;
  std::vector<uint8_t> payload;
  Call(wire::Op::kGoodbye, wire::Writer(), &result, &payload);
  Close();
}

void Observer::Abandon() { Close(); }

}  // namespace wooly::nvml
