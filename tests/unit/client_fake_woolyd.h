// An in-process stand-in for woolyd that speaks the framed protocol of
// wire.h on a unix socket, for libwooly's unit tests. Device memory is host
// memory at fake device addresses; it records what it was sent so tests can
// check the wire traffic (op sequence, launch arguments, images, Hellos).
//
// Thread safety: the accessors may be called while clients are connected.
#ifndef WOOLY_TESTS_UNIT_CLIENT_FAKE_WOOLYD_H_
#define WOOLY_TESTS_UNIT_CLIENT_FAKE_WOOLYD_H_

#include <cuda.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "wooly/proto/channel.h"
#include "wooly/proto/socket.h"
#include "wooly/proto/wire.h"

namespace wooly::testing {

class FakeWoolyd {
 public:
  struct Launch {
    uint64_t function = 0;
    uint32_t grid[3] = {};
    uint32_t block[3] = {};
    uint32_t shared = 0;
    uint64_t stream = 0;
    std::vector<std::pair<uint32_t, std::vector<uint8_t>>> attrs;
    std::vector<uint8_t> args;
  };

  // What kTenantView answers (wire.h), for the NVML view's tests.
  struct TenantViewReply {
    struct Process {
      uint32_t pid = 0;
      uint64_t bytes = 0;
      std::string name;
    };
    std::string tenant = "fake-tenant";
    uint64_t memory_limit = 0;
    uint64_t memory_total = 16ull << 30;
    uint64_t memory_used = 0;
    uint64_t device_total = 16ull << 30;
    uint64_t device_free = 16ull << 30;
    double measured_share = 0;
    double target_share = 0;
    uint64_t busy_ns = 0;
    std::vector<Process> processes;
  };
  using Settings = std::vector<std::pair<std::string, std::string>>;

  static constexpr uint64_t kDeviceBase = 0x600000000000ull;
  static constexpr uint64_t kTotalMem = 16ull << 30;

  FakeWoolyd() {
    char tmpl[] = "/tmp/wooly-client-test-XXXXXX";
    dir_ = ::mkdtemp(tmpl);
    endpoint_ = "unix:" + dir_ + "/woolyd.sock";
    wire::Endpoint ep;
    std::string err;
    wire::ParseEndpoint(endpoint_, &ep, &err);
    listen_fd_ = wire::Listen(ep, 0600, &err);
    if (::pipe(stop_pipe_) != 0) std::abort();
    accept_thread_ = std::thread([this] { AcceptLoop(); });
  }

  ~FakeWoolyd() {
    ssize_t ignored = ::write(stop_pipe_[1], "x", 1);
    (void)ignored;
    accept_thread_.join();
    {
      std::lock_guard<std::mutex> l(mu_);
      for (int fd : conn_fds_) ::shutdown(fd, SHUT_RDWR);
    }
    for (std::thread& t : conn_threads_) t.join();
    for (int fd : conn_fds_) ::close(fd);
    ::close(listen_fd_);
    ::close(stop_pipe_[0]);
    ::close(stop_pipe_[1]);
    ::unlink((dir_ + "/woolyd.sock").c_str());
    ::rmdir(dir_.c_str());
  }

  const std::string& endpoint() const { return endpoint_; }

  // Knobs.
  void set_protocol_mismatch(bool v) { mismatch_ = v; }
  // Closes the connection instead of answering the next request.
  void DropOnNextRequest() { drop_next_ = true; }
  void set_tenant_view(const TenantViewReply& v) {
    std::lock_guard<std::mutex> l(mu_);
    tenant_view_ = v;
  }
  // Answers kTenantView with CUDA_ERROR_NOT_SUPPORTED (an older woolyd).
  void set_tenant_view_unsupported(bool v) { tenant_view_unsupported_ = v; }

  // Observations.
  std::vector<uint32_t> hello_pids() {
    std::lock_guard<std::mutex> l(mu_);
    return hello_pids_;
  }
  std::vector<std::string> hello_names() {
    std::lock_guard<std::mutex> l(mu_);
    return hello_names_;
  }
  std::vector<int32_t> hello_priorities() {
    std::lock_guard<std::mutex> l(mu_);
    return hello_priorities_;
  }
  // Hello's optional pod, namespace and settings block, per Hello.
  std::vector<std::string> hello_pods() {
    std::lock_guard<std::mutex> l(mu_);
    return hello_pods_;
  }
  std::vector<Settings> hello_settings() {
    std::lock_guard<std::mutex> l(mu_);
    return hello_settings_;
  }
  std::vector<wire::Op> ops() {
    std::lock_guard<std::mutex> l(mu_);
    return ops_;
  }
  size_t CountOp(wire::Op op) {
    std::lock_guard<std::mutex> l(mu_);
    size_t n = 0;
    for (wire::Op o : ops_) n += o == op;
    return n;
  }
  void ClearOps() {
    std::lock_guard<std::mutex> l(mu_);
    ops_.clear();
  }
  std::vector<Launch> launches() {
    std::lock_guard<std::mutex> l(mu_);
    return launches_;
  }
  std::vector<std::vector<uint8_t>> images() {
    std::lock_guard<std::mutex> l(mu_);
    return images_;
  }
  std::vector<uint64_t> stream_syncs() {
    std::lock_guard<std::mutex> l(mu_);
    return stream_syncs_;
  }
  std::vector<std::pair<uint32_t, int32_t>> stream_creates() {
    std::lock_guard<std::mutex> l(mu_);
    return stream_creates_;
  }
  size_t live_allocations() {
    std::lock_guard<std::mutex> l(mu_);
    return mem_.size();
  }
  // The memset/copy stream ids seen, in order.
  std::vector<std::pair<uint64_t, uint8_t>> copy_streams() {
    std::lock_guard<std::mutex> l(mu_);
    return copy_streams_;
  }

  // The parameter layouts the fake reports for a kernel name.
  static std::vector<wire::ParamInfo> LayoutFor(const std::string& name) {
    if (name == "vec_add") return {{0, 8}, {8, 8}, {16, 8}, {24, 4}};
    if (name == "struct_kernel") return {{0, 24}, {24, 8}};
    return {};
  }

 private:
  void AcceptLoop() {
    for (;;) {
      pollfd p[2] = {{listen_fd_, POLLIN, 0}, {stop_pipe_[0], POLLIN, 0}};
      if (::poll(p, 2, -1) < 0) continue;
      if (p[1].revents) return;
      const int fd = ::accept(listen_fd_, nullptr, nullptr);
      if (fd < 0) continue;
      std::lock_guard<std::mutex> l(mu_);
      conn_fds_.push_back(fd);
      conn_threads_.emplace_back([this, fd] { Serve(fd); });
    }
  }

  void Serve(int fd) {
    std::vector<uint8_t> payload;
    for (;;) {
      wire::FrameHeader h;
      if (!wire::ReadHeader(fd, &h)) return;
      payload.resize(h.length);
      if (h.length && !wire::ReadFull(fd, payload.data(), h.length)) return;
      if (drop_next_.exchange(false)) {
        ::shutdown(fd, SHUT_RDWR);
        return;
      }
      const wire::Op op = static_cast<wire::Op>(h.op);
      if (op == wire::Op::kShmAttach) {
        // This stand-in stays on the socket: take the memfd, decline.
        const int memfd = wire::RecvFd(fd);
        if (memfd >= 0) ::close(memfd);
        const int32_t declined = CUDA_ERROR_NOT_SUPPORTED;
        if (!wire::WriteFrame(fd, h.op | wire::kReplyBit, h.seq, &declined, sizeof(declined))) {
          return;
        }
        continue;
      }
      wire::Reader r(payload.data(), payload.size());
      wire::Writer out;
      std::vector<uint8_t> tail;
      CUresult res;
      {
        std::lock_guard<std::mutex> l(mu_);
        ops_.push_back(op);
        res = Handle(op, r, out, tail);
      }
      if (h.flags & wire::kFlagNoReply) continue;
      wire::Writer reply;
      reply.Put<int32_t>(res);
      if (res == CUDA_SUCCESS || op == wire::Op::kHello) {
        reply.PutRaw(out.data().data(), out.size());
      }
      const bool with_tail = res == CUDA_SUCCESS && !tail.empty();
      if (!wire::WriteFrame(fd, h.op | wire::kReplyBit, h.seq, reply.data().data(), reply.size(),
                            with_tail ? tail.data() : nullptr, with_tail ? tail.size() : 0)) {
        return;
      }
    }
  }

  // Device memory lookup: a pointer to `len` bytes at `ptr`, or nullptr.
  uint8_t* Mem(uint64_t ptr, uint64_t len) {
    auto it = mem_.upper_bound(ptr);
    if (it == mem_.begin()) return nullptr;
    --it;
    const uint64_t off = ptr - it->first;
    if (off > it->second.size() || len > it->second.size() - off) return nullptr;
    return it->second.data() + off;
  }

  uint64_t NewId() { return next_id_++; }

  CUresult Handle(wire::Op op, wire::Reader& r, wire::Writer& out, std::vector<uint8_t>& tail) {
    switch (op) {
      case wire::Op::kHello: {
        const uint32_t version = r.Get<uint32_t>();
        hello_pids_.push_back(r.Get<uint32_t>());
        hello_priorities_.push_back(r.Get<int32_t>());
        hello_names_.push_back(r.GetStr());
        {
          std::string pod;
          Settings settings;
          if (r.remaining() > 0) {
            pod = r.GetStr();
            r.GetStr();  // namespace
          }
          if (r.remaining() > 0) {
            const uint32_t n = r.Get<uint32_t>();
            for (uint32_t i = 0; i < n && r.ok(); ++i) {
              std::string key = r.GetStr();
              settings.emplace_back(std::move(key), r.GetStr());
            }
          }
          hello_pods_.push_back(std::move(pod));
          hello_settings_.push_back(std::move(settings));
        }
        if (mismatch_ || version != wire::kProtocolVersion) {
          out.PutStr("woolyd speaks protocol version 99");
          return CUDA_ERROR_NOT_SUPPORTED;
        }
        wire::DeviceInfo d;
        d.name = "Wooly Fake GPU";
        for (int i = 0; i < 16; ++i) d.uuid[i] = static_cast<uint8_t>(i + 1);
        d.total_mem = kTotalMem;
        d.driver_version = 13000;
        d.attributes.assign(CU_DEVICE_ATTRIBUTE_MAX, 0);
        d.attributes[CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_BLOCK] = 1024;
        d.attributes[CU_DEVICE_ATTRIBUTE_WARP_SIZE] = 32;
        d.attributes[CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR] = 9;
        d.attributes[CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR] = 0;
        d.attributes[CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT] = 132;
        d.attributes[CU_DEVICE_ATTRIBUTE_PCI_DOMAIN_ID] = 0;
        d.attributes[CU_DEVICE_ATTRIBUTE_PCI_BUS_ID] = 0x3b;
        d.attributes[CU_DEVICE_ATTRIBUTE_PCI_DEVICE_ID] = 0;
        d.attributes[CU_DEVICE_ATTRIBUTE_UNIFIED_ADDRESSING] = 1;
        d.stream_priority_least = 0;
        d.stream_priority_greatest = -5;
        out.Put<uint32_t>(wire::kProtocolVersion).PutStr("fake-0.1").Put<uint64_t>(++clients_);
        wire::PutDeviceInfo(out, d);
        return CUDA_SUCCESS;
      }
      case wire::Op::kGoodbye:
        return CUDA_SUCCESS;
      case wire::Op::kTenantView: {
        if (tenant_view_unsupported_) return CUDA_ERROR_NOT_SUPPORTED;
        const TenantViewReply& v = tenant_view_;
        out.PutStr(v.tenant)
            .Put<uint64_t>(v.memory_limit)
            .Put<uint64_t>(v.memory_total)
            .Put<uint64_t>(v.memory_used)
            .Put<uint64_t>(v.device_total)
            .Put<uint64_t>(v.device_free)
            .Put<double>(v.measured_share)
            .Put<double>(v.target_share)
            .Put<uint64_t>(v.busy_ns)
            .Put<uint32_t>(static_cast<uint32_t>(v.processes.size()));
        for (const auto& p : v.processes) {
          out.Put<uint32_t>(p.pid).Put<uint64_t>(p.bytes).PutStr(p.name);
        }
        return CUDA_SUCCESS;
      }
      case wire::Op::kMemAlloc: {
        const uint64_t size = r.Get<uint64_t>();
        const uint64_t base = kDeviceBase + (next_mem_++) * (1ull << 30);
        mem_[base].assign(size, 0);
        out.Put<uint64_t>(base);
        return CUDA_SUCCESS;
      }
      case wire::Op::kMemFree: {
        const uint64_t p = r.Get<uint64_t>();
        return mem_.erase(p) ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
      }
      case wire::Op::kMemGetInfo:
        out.Put<uint64_t>(kTotalMem / 2).Put<uint64_t>(kTotalMem);
        return CUDA_SUCCESS;
      case wire::Op::kMemGetAddressRange: {
        const uint64_t p = r.Get<uint64_t>();
        auto it = mem_.upper_bound(p);
        if (it == mem_.begin()) return CUDA_ERROR_NOT_FOUND;
        --it;
        if (p - it->first >= it->second.size()) return CUDA_ERROR_NOT_FOUND;
        out.Put<uint64_t>(it->first).Put<uint64_t>(it->second.size());
        return CUDA_SUCCESS;
      }
      case wire::Op::kMemcpyHtoD: {
        const uint64_t dst = r.Get<uint64_t>();
        const uint64_t stream = r.Get<uint64_t>();
        const uint8_t async = r.Get<uint8_t>();
        copy_streams_.emplace_back(stream, async);
        uint8_t* d = Mem(dst, r.remaining());
        if (d == nullptr) return CUDA_ERROR_INVALID_VALUE;
        std::memcpy(d, r.rest(), r.remaining());
        return CUDA_SUCCESS;
      }
      case wire::Op::kMemcpyDtoH: {
        const uint64_t src = r.Get<uint64_t>();
        const uint64_t size = r.Get<uint64_t>();
        const uint64_t stream = r.Get<uint64_t>();
        const uint8_t async = r.Get<uint8_t>();
        copy_streams_.emplace_back(stream, async);
        uint8_t* s = Mem(src, size);
        if (s == nullptr) return CUDA_ERROR_INVALID_VALUE;
        tail.assign(s, s + size);
        return CUDA_SUCCESS;
      }
      case wire::Op::kMemcpyDtoD: {
        const uint64_t dst = r.Get<uint64_t>();
        const uint64_t src = r.Get<uint64_t>();
        const uint64_t size = r.Get<uint64_t>();
        {
          const uint64_t stream = r.Get<uint64_t>();
          const uint8_t async = r.Get<uint8_t>();
          copy_streams_.emplace_back(stream, async);
        }
        uint8_t* d = Mem(dst, size);
        uint8_t* s = Mem(src, size);
        if (d == nullptr || s == nullptr) return CUDA_ERROR_INVALID_VALUE;
        std::memmove(d, s, size);
        return CUDA_SUCCESS;
      }
      case wire::Op::kMemset: {
        const uint64_t dst = r.Get<uint64_t>();
        const uint64_t pitch = r.Get<uint64_t>();
        const uint32_t value = r.Get<uint32_t>();
        const uint8_t elem = r.Get<uint8_t>();
        const uint64_t width = r.Get<uint64_t>();
        const uint64_t height = r.Get<uint64_t>();
        {
          const uint64_t stream = r.Get<uint64_t>();
          const uint8_t async = r.Get<uint8_t>();
          copy_streams_.emplace_back(stream, async);
        }
        for (uint64_t y = 0; y < height; ++y) {
          uint8_t* row = Mem(dst + y * pitch, width * elem);
          if (row == nullptr) return CUDA_ERROR_INVALID_VALUE;
          for (uint64_t x = 0; x < width; ++x) std::memcpy(row + x * elem, &value, elem);
        }
        return CUDA_SUCCESS;
      }
      case wire::Op::kMemcpy3D: {
        const wire::Copy3D c = wire::GetCopy3D(r);
        {
          const uint64_t stream = r.Get<uint64_t>();
          const uint8_t async = r.Get<uint8_t>();
          copy_streams_.emplace_back(stream, async);
        }
        const bool src_host = c.src_kind == static_cast<uint8_t>(wire::MemKind::kHost);
        const bool dst_host = c.dst_kind == static_cast<uint8_t>(wire::MemKind::kHost);
        const uint64_t rows = c.height * c.depth;
        if (src_host && r.remaining() != rows * c.width_bytes) return CUDA_ERROR_INVALID_VALUE;
        if (dst_host) tail.resize(rows * c.width_bytes);
        for (uint64_t z = 0; z < c.depth; ++z) {
          for (uint64_t y = 0; y < c.height; ++y) {
            const uint64_t packed = (z * c.height + y) * c.width_bytes;
            const uint8_t* s = src_host
                                   ? r.rest() + packed
                                   : Mem(c.src_ptr + (c.src_z + z) * c.src_height * c.src_pitch +
                                             (c.src_y + y) * c.src_pitch + c.src_x_bytes,
                                         c.width_bytes);
            uint8_t* d = dst_host ? tail.data() + packed
                                  : Mem(c.dst_ptr + (c.dst_z + z) * c.dst_height * c.dst_pitch +
                                            (c.dst_y + y) * c.dst_pitch + c.dst_x_bytes,
                                        c.width_bytes);
            if (s == nullptr || d == nullptr) return CUDA_ERROR_INVALID_VALUE;
            std::memcpy(d, s, c.width_bytes);
          }
        }
        return CUDA_SUCCESS;
      }
      case wire::Op::kModuleLoadData:
      case wire::Op::kLibraryLoadData: {
        uint64_t n = 0;
        const uint8_t* p = r.GetBytes(&n);
        if (p == nullptr) return CUDA_ERROR_INVALID_VALUE;
        static constexpr char kBad[] = "WOOLY-FAKE-BAD";
        if (n >= sizeof(kBad) - 1 && std::memcmp(p, kBad, sizeof(kBad) - 1) == 0) {
          return CUDA_ERROR_INVALID_IMAGE;
        }
        images_.emplace_back(p, p + n);
        out.Put<uint64_t>(NewId());
        return CUDA_SUCCESS;
      }
      case wire::Op::kModuleGetFunction:
      case wire::Op::kLibraryGetKernel: {
        r.Get<uint64_t>();
        const std::string name = r.GetStr();
        if (name == "missing") return CUDA_ERROR_NOT_FOUND;
        const uint64_t id = NewId();
        callable_names_[id] = name;
        out.Put<uint64_t>(id);
        wire::PutParamLayout(out, LayoutFor(name));
        return CUDA_SUCCESS;
      }
      case wire::Op::kKernelGetFunction: {
        const uint64_t kernel = r.Get<uint64_t>();
        out.Put<uint64_t>(NewId());
        wire::PutParamLayout(out, LayoutFor(callable_names_[kernel]));
        return CUDA_SUCCESS;
      }
      case wire::Op::kModuleGetGlobal:
      case wire::Op::kLibraryGetGlobal: {
        r.Get<uint64_t>();
        const std::string name = r.GetStr();
        if (name != "g_counter") return CUDA_ERROR_NOT_FOUND;
        if (global_ == 0) {
          global_ = kDeviceBase + (next_mem_++) * (1ull << 30);
          mem_[global_].assign(4, 0);
        }
        out.Put<uint64_t>(global_).Put<uint64_t>(4);
        return CUDA_SUCCESS;
      }
      case wire::Op::kLibraryGetModule:
        r.Get<uint64_t>();
        out.Put<uint64_t>(NewId());
        return CUDA_SUCCESS;
      case wire::Op::kModuleGetFunctionCount:
        out.Put<uint32_t>(3);
        return CUDA_SUCCESS;
      case wire::Op::kFuncGetAttribute: {
        const uint64_t id = r.Get<uint64_t>();
        const int32_t attr = r.Get<int32_t>();
        if (auto it = func_attrs_.find({id, attr}); it != func_attrs_.end()) {
          out.Put<int32_t>(it->second);
        } else {
          out.Put<int32_t>(attr == CU_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK ? 1024 : 0);
        }
        return CUDA_SUCCESS;
      }
      case wire::Op::kCtxGetLimit: {
        const int32_t limit = r.Get<int32_t>();
        auto it = limits_.find(limit);
        out.Put<uint64_t>(it != limits_.end() ? it->second : 1024);
        return CUDA_SUCCESS;
      }
      case wire::Op::kCtxSetLimit: {
        const int32_t limit = r.Get<int32_t>();
        limits_[limit] = r.Get<uint64_t>();
        return CUDA_SUCCESS;
      }
      case wire::Op::kFuncSetAttribute: {
        const uint64_t id = r.Get<uint64_t>();
        const int32_t attr = r.Get<int32_t>();
        const int32_t value = r.Get<int32_t>();
        if (value < 0) return CUDA_ERROR_INVALID_VALUE;
        func_attrs_[{id, attr}] = value;
        return CUDA_SUCCESS;
      }
      case wire::Op::kLaunchKernel: {
        Launch l;
        l.function = r.Get<uint64_t>();
        for (uint32_t& g : l.grid) g = r.Get<uint32_t>();
        for (uint32_t& b : l.block) b = r.Get<uint32_t>();
        l.shared = r.Get<uint32_t>();
        l.stream = r.Get<uint64_t>();
        const uint32_t n = r.Get<uint32_t>();
        for (uint32_t i = 0; i < n && r.ok(); ++i) {
          const uint32_t id = r.Get<uint32_t>();
          const uint8_t* v = r.GetRaw(64);
          if (v != nullptr) l.attrs.emplace_back(id, std::vector<uint8_t>(v, v + 64));
        }
        uint64_t len = 0;
        const uint8_t* a = r.GetBytes(&len);
        if (!r.ok()) return CUDA_ERROR_INVALID_VALUE;
        if (len) l.args.assign(a, a + len);
        launches_.push_back(std::move(l));
        return CUDA_SUCCESS;
      }
      case wire::Op::kStreamCreate: {
        const uint32_t flags = r.Get<uint32_t>();
        stream_creates_.emplace_back(flags, r.Get<int32_t>());
        out.Put<uint64_t>(NewId());
        return CUDA_SUCCESS;
      }
      case wire::Op::kStreamSynchronize:
        stream_syncs_.push_back(r.Get<uint64_t>());
        return CUDA_SUCCESS;
      case wire::Op::kEventCreate:
        out.Put<uint64_t>(NewId());
        return CUDA_SUCCESS;
      case wire::Op::kEventElapsedTime:
        out.Put<float>(1.5f);
        return CUDA_SUCCESS;
      case wire::Op::kEventQuery:
        return CUDA_ERROR_NOT_READY;
      default:
        return CUDA_SUCCESS;  // destroy, record, wait, unload, sync, ...
    }
  }

  std::string dir_;
  std::string endpoint_;
  int listen_fd_ = -1;
  int stop_pipe_[2] = {-1, -1};
  std::thread accept_thread_;
  std::atomic<bool> mismatch_{false};
  std::atomic<bool> drop_next_{false};
  std::atomic<bool> tenant_view_unsupported_{false};

  std::mutex mu_;
  std::vector<int> conn_fds_;
  std::vector<std::thread> conn_threads_;
  std::vector<uint32_t> hello_pids_;
  std::vector<std::string> hello_names_;
  std::vector<int32_t> hello_priorities_;
  std::vector<std::string> hello_pods_;
  std::vector<Settings> hello_settings_;
  TenantViewReply tenant_view_;
  std::vector<wire::Op> ops_;
  std::vector<Launch> launches_;
  std::vector<std::vector<uint8_t>> images_;
  std::map<std::pair<uint64_t, int32_t>, int32_t> func_attrs_;  // set by kFuncSetAttribute
  std::map<int32_t, uint64_t> limits_;                          // set by kCtxSetLimit
  std::vector<uint64_t> stream_syncs_;
  std::vector<std::pair<uint32_t, int32_t>> stream_creates_;
  std::vector<std::pair<uint64_t, uint8_t>> copy_streams_;
  std::map<uint64_t, std::vector<uint8_t>> mem_;
  std::map<uint64_t, std::string> callable_names_;
  uint64_t global_ = 0;
  uint64_t next_mem_ = 0;
  uint64_t next_id_ = 100;
  uint64_t clients_ = 0;
};

}  // namespace wooly::testing

#endif  // WOOLY_TESTS_UNIT_CLIENT_FAKE_WOOLYD_H_
