// A tiny blocking client of the framed protocol for server tests, built on
// wire.h and socket.h only (what libwooly speaks), plus an in-process server
// fixture on the fake backend.
#ifndef WOOLY_TESTS_UNIT_SERVER_TEST_CLIENT_H_
#define WOOLY_TESTS_UNIT_SERVER_TEST_CLIENT_H_

#include <cuda.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "wooly/proto/channel.h"
#include "wooly/proto/socket.h"
#include "wooly/proto/wire.h"

namespace wooly::testing {

class TestClient {
 public:
  struct Result {
    CUresult result = CUDA_ERROR_UNKNOWN;
    std::vector<uint8_t> body;  // reply payload after the CUresult
    wire::Reader reader() const { return wire::Reader(body.data(), body.size()); }
  };

  // Connects to `endpoint` ("unix:/..." or "tcp:host:port"); nullptr on error.
  static std::unique_ptr<TestClient> Connect(const std::string& endpoint) {
    wire::Endpoint ep;
    std::string error;
    if (!wire::ParseEndpoint(endpoint, &ep, &error)) return nullptr;
    const int fd = wire::Connect(ep, &error);
    if (fd < 0) return nullptr;
    return std::unique_ptr<TestClient>(new TestClient(fd));
  }

  ~TestClient() { Close(); }

  int fd() const { return fd_; }
  void Close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

  // Sends raw bytes (for malformed-input tests).
  bool SendRaw(const void* p, size_t n) { return ::write(fd_, p, n) == static_cast<ssize_t>(n); }

  // One request/reply round trip; nullopt when the connection broke.
  std::optional<Result> Call(wire::Op op, const wire::Writer& body) {
    return CallRaw(static_cast<uint16_t>(op), body.data().data(), body.size());
  }
  std::optional<Result> Call(wire::Op op) { return Call(op, wire::Writer()); }
  std::optional<Result> CallRaw(uint16_t op, const void* body, size_t n) {
    const uint32_t seq = ++seq_;
    if (!wire::WriteFrame(fd_, op, seq, body, n)) return std::nullopt;
    wire::FrameHeader h;
    if (!wire::ReadHeader(fd_, &h)) return std::nullopt;
    if (h.op != (op | wire::kReplyBit) || h.seq != seq || h.length < 4) return std::nullopt;
    std::vector<uint8_t> payload(h.length);
    if (!wire::ReadFull(fd_, payload.data(), payload.size())) return std::nullopt;
    Result r;
    int32_t code = 0;
    std::memcpy(&code, payload.data(), 4);
    r.result = static_cast<CUresult>(code);
    r.body.assign(payload.begin() + 4, payload.end());
    return r;
  }
  // CUresult of a call, CUDA_ERROR_UNKNOWN (999) if the connection broke.
  // Sends a request without waiting (wire::kFlagNoReply); false if the
  // connection is gone.
  bool Post(wire::Op op, const wire::Writer& body) {
    wire::SocketChannel ch(fd_);
    return wire::WriteFrameTo(ch, static_cast<uint16_t>(op), wire::kFlagNoReply, ++seq_,
                              body.data().data(), body.size());
  }

  CUresult Code(wire::Op op, const wire::Writer& body) {
    std::optional<Result> r = Call(op, body);
    return r ? r->result : CUDA_ERROR_UNKNOWN;
  }

  // True once the server has closed the connection (reads to EOF).
  bool ServerClosed() {
    char c;
    for (;;) {
      const ssize_t n = ::read(fd_, &c, 1);
      if (n == 0) return true;
      if (n < 0) return errno != EINTR && errno != EAGAIN;
    }
  }

  CUresult Hello(const std::string& name = "test", int32_t priority = 2,
                 uint32_t version = wire::kProtocolVersion, wire::DeviceInfo* info = nullptr,
                 uint64_t* client_id = nullptr, std::string* message = nullptr) {
    wire::Writer w;
    w.Put<uint32_t>(version).Put<uint32_t>(static_cast<uint32_t>(::getpid()));
    w.Put<int32_t>(priority).PutStr(name);
    return HelloCall(w, info, client_id, message);
  }
  // Sends a Hello and reads its reply.
  CUresult HelloCall(const wire::Writer& w, wire::DeviceInfo* info, uint64_t* client_id,
                     std::string* message) {
    std::optional<Result> r = Call(wire::Op::kHello, w);
    if (!r) return CUDA_ERROR_UNKNOWN;
    wire::Reader rd = r->reader();
    if (r->result != CUDA_SUCCESS) {
      if (message) *message = rd.GetStr();
      return r->result;
    }
    const uint32_t server_version = rd.Get<uint32_t>();
    rd.GetStr();
    const uint64_t id = rd.Get<uint64_t>();
    wire::DeviceInfo d = wire::GetDeviceInfo(rd);
    if (!rd.ok() || server_version != wire::kProtocolVersion) return CUDA_ERROR_UNKNOWN;
    if (info) *info = d;
    if (client_id) *client_id = id;
    return CUDA_SUCCESS;
  }

  // Hello with tenant settings (the key/value block, wire.h kHello).
  CUresult HelloWith(const std::string& name, int32_t priority,
                     const std::vector<std::pair<std::string, std::string>>& settings,
                     uint64_t* client_id = nullptr, std::string* message = nullptr) {
    wire::Writer w;
    w.Put<uint32_t>(wire::kProtocolVersion).Put<uint32_t>(static_cast<uint32_t>(::getpid()));
    w.Put<int32_t>(priority).PutStr(name).PutStr("").PutStr("");
    w.Put<uint32_t>(static_cast<uint32_t>(settings.size()));
    for (const auto& [k, v] : settings) w.PutStr(k).PutStr(v);
    return HelloCall(w, nullptr, client_id, message);
  }

  CUresult MemAlloc(uint64_t size, uint64_t* ptr) {
    std::optional<Result> r = Call(wire::Op::kMemAlloc, wire::Writer().Put<uint64_t>(size));
    if (!r) return CUDA_ERROR_UNKNOWN;
    if (r->result == CUDA_SUCCESS) *ptr = r->reader().Get<uint64_t>();
    return r->result;
  }
  CUresult MemFree(uint64_t ptr) {
    return Code(wire::Op::kMemFree, wire::Writer().Put<uint64_t>(ptr));
  }
  CUresult HtoD(uint64_t dst, const void* src, size_t n, uint64_t stream = wire::kStreamNull) {
    wire::Writer w;
    w.Put<uint64_t>(dst).Put<uint64_t>(stream).Put<uint8_t>(0).PutRaw(src, n);
    return Code(wire::Op::kMemcpyHtoD, w);
  }
  CUresult DtoH(void* dst, uint64_t src, size_t n, uint64_t stream = wire::kStreamNull) {
    wire::Writer w;
    w.Put<uint64_t>(src).Put<uint64_t>(n).Put<uint64_t>(stream).Put<uint8_t>(0);
    std::optional<Result> r = Call(wire::Op::kMemcpyDtoH, w);
    if (!r) return CUDA_ERROR_UNKNOWN;
    if (r->result == CUDA_SUCCESS) {
      if (r->body.size() != n) return CUDA_ERROR_UNKNOWN;
      if (n) std::memcpy(dst, r->body.data(), n);
    }
    return r->result;
  }
  CUresult Memset(uint64_t dst, uint32_t value, uint8_t elem, uint64_t width, uint64_t height = 1,
                  uint64_t pitch = 0, uint64_t stream = wire::kStreamNull) {
    wire::Writer w;
    w.Put<uint64_t>(dst).Put<uint64_t>(pitch).Put<uint32_t>(value).Put<uint8_t>(elem);
    w.Put<uint64_t>(width).Put<uint64_t>(height).Put<uint64_t>(stream).Put<uint8_t>(0);
    return Code(wire::Op::kMemset, w);
  }
  CUresult LoadModule(const std::vector<uint8_t>& image, uint64_t* module,
                      wire::Op op = wire::Op::kModuleLoadData) {
    wire::Writer w;
    w.PutBytes(image.data(), image.size());
    std::optional<Result> r = Call(op, w);
    if (!r) return CUDA_ERROR_UNKNOWN;
    if (r->result == CUDA_SUCCESS) *module = r->reader().Get<uint64_t>();
    return r->result;
  }
  // ModuleGetFunction / LibraryGetKernel: (u64 parent, str name) -> (u64, ParamLayout).
  CUresult GetFunction(uint64_t parent, const std::string& name, uint64_t* fn,
                       std::vector<wire::ParamInfo>* layout = nullptr,
                       wire::Op op = wire::Op::kModuleGetFunction) {
    wire::Writer w;
    w.Put<uint64_t>(parent).PutStr(name);
    std::optional<Result> r = Call(op, w);
    if (!r) return CUDA_ERROR_UNKNOWN;
    if (r->result == CUDA_SUCCESS) {
      wire::Reader rd = r->reader();
      *fn = rd.Get<uint64_t>();
      std::vector<wire::ParamInfo> l = wire::GetParamLayout(rd);
      if (layout) *layout = l;
    }
    return r->result;
  }
  CUresult GetGlobal(uint64_t parent, const std::string& name, uint64_t* ptr, uint64_t* size,
                     wire::Op op = wire::Op::kModuleGetGlobal) {
    wire::Writer w;
    w.Put<uint64_t>(parent).PutStr(name);
    std::optional<Result> r = Call(op, w);
    if (!r) return CUDA_ERROR_UNKNOWN;
    if (r->result == CUDA_SUCCESS) {
      wire::Reader rd = r->reader();
      *ptr = rd.Get<uint64_t>();
      *size = rd.Get<uint64_t>();
    }
    return r->result;
  }
  CUresult Launch(uint64_t fn, uint32_t grid, uint32_t block, const std::vector<uint8_t>& args,
                  uint64_t stream = wire::kStreamNull) {
    wire::Writer w;
    w.Put<uint64_t>(fn);
    w.Put<uint32_t>(grid).Put<uint32_t>(1).Put<uint32_t>(1);
    w.Put<uint32_t>(block).Put<uint32_t>(1).Put<uint32_t>(1);
    w.Put<uint32_t>(0).Put<uint64_t>(stream).Put<uint32_t>(0);
    w.PutBytes(args.data(), args.size());
    return Code(wire::Op::kLaunchKernel, w);
  }
  // Creates a stream or event (op kStreamCreate/kEventCreate).
  CUresult StreamCreate(uint32_t flags, uint64_t* stream, int32_t priority = 0) {
    std::optional<Result> r =
        Call(wire::Op::kStreamCreate, wire::Writer().Put<uint32_t>(flags).Put<int32_t>(priority));
    if (!r) return CUDA_ERROR_UNKNOWN;
    if (r->result == CUDA_SUCCESS) *stream = r->reader().Get<uint64_t>();
    return r->result;
  }
  CUresult EventCreate(uint32_t flags, uint64_t* event) {
    std::optional<Result> r = Call(wire::Op::kEventCreate, wire::Writer().Put<uint32_t>(flags));
    if (!r) return CUDA_ERROR_UNKNOWN;
    if (r->result == CUDA_SUCCESS) *event = r->reader().Get<uint64_t>();
    return r->result;
  }
  CUresult OneId(wire::Op op, uint64_t id) { return Code(op, wire::Writer().Put<uint64_t>(id)); }

 private:
  explicit TestClient(int fd) : fd_(fd) {}
  int fd_;
  uint32_t seq_ = 0;
};

// Packs kernel arguments at consecutive natural offsets.
class ArgPacker {
 public:
  template <typename T>
  ArgPacker& Add(T v) {
    const size_t align = alignof(T);
    buf_.resize((buf_.size() + align - 1) / align * align);
    const size_t at = buf_.size();
    buf_.resize(at + sizeof(T));
    std::memcpy(buf_.data() + at, &v, sizeof(T));
    return *this;
  }
  const std::vector<uint8_t>& bytes() const { return buf_; }

 private:
  std::vector<uint8_t> buf_;
};

// A fresh private directory for sockets, removed by the caller's TearDown.
inline std::string MakeTempDir() {
  std::string templ = "/tmp/wooly-test-XXXXXX";
  const char* made = ::mkdtemp(templ.data());
  return made ? std::string(made) : std::string();
}

}  // namespace wooly::testing

#endif  // WOOLY_TESTS_UNIT_SERVER_TEST_CLIENT_H_
