// Shared pinned memory: a same-node client allocates its pinned host memory
// (cuMemHostAlloc) in a memfd and sends it here; woolyd maps it at the
// client's own address and registers it with the driver. Copies from and to
// it are then direct DMA with no data on the wire, and because addresses
// are unified, its device pointer is that same address: kernels can read
// and write mapped host memory as on a local GPU.
#include <fcntl.h>
#include <linux/futex.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "spdlog/spdlog.h"
#include "wooly/server/client_session.h"
#include "wooly/server/cu_status.h"

namespace wooly::server {
namespace {

// One client may share at most this much pinned memory.
constexpr uint64_t kMaxSharedBytes = 1ull << 40;

}  // namespace

uint8_t* ClientSession::SharedHostRange(uint64_t addr, uint64_t size) const {
  auto it = shared_host_.upper_bound(addr);
  if (it == shared_host_.begin()) return nullptr;
  --it;
  const uint64_t base = it->first, len = it->second;
  if (addr < base || size > len || addr - base > len - size) return nullptr;
  return reinterpret_cast<uint8_t*>(addr);
}

absl::Status ClientSession::OpHostShmRegister(wire::Reader& in, wire::Writer& out) {
  const uint64_t addr = in.Get<uint64_t>();
  const uint64_t size = in.Get<uint64_t>();
  if (!in.ok()) return Malformed();
  const int fd = pending_fd_;
  pending_fd_ = -1;
  if (fd < 0) return CuError(CUDA_ERROR_INVALID_VALUE, "no memory fd came with the request");
  absl::Cleanup close_fd = [fd] { ::close(fd); };
  const uint64_t page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  if (addr == 0 || size == 0 || addr % page != 0 || size % page != 0 || addr + size < addr) {
    return CuError(CUDA_ERROR_INVALID_VALUE, "unaligned shared host region");
  }
  uint64_t total = size;
  for (const auto& [b, n] : shared_host_) total += n;
  if (total > kMaxSharedBytes) {
    return CuError(CUDA_ERROR_OUT_OF_MEMORY, "too much shared pinned memory");
  }
  // The client must not be able to shrink the file under a registration.
  struct stat st;
  const int seals = ::fcntl(fd, F_GET_SEALS);
  if (::fstat(fd, &st) != 0 || static_cast<uint64_t>(st.st_size) < size || seals < 0 ||
      (seals & F_SEAL_SHRINK) == 0) {
    return CuError(CUDA_ERROR_INVALID_VALUE, "shared host memory fd too small or not sealed");
  }
  void* p = ::mmap(reinterpret_cast<void*>(addr), size, PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_FIXED_NOREPLACE, fd, 0);
  if (p == MAP_FAILED) {
    // Usually EEXIST: the address is taken here. The client keeps the
    // memory private and copies it over the channel instead.
    return CuError(CUDA_ERROR_ALREADY_MAPPED,
                   absl::StrCat("address ", absl::Hex(addr), " unavailable in woolyd"));
  }
  if (reinterpret_cast<uint64_t>(p) != addr) {  // a kernel without MAP_FIXED_NOREPLACE
    ::munmap(p, size);
    return CuError(CUDA_ERROR_ALREADY_MAPPED, "address unavailable in woolyd");
  }
  if (absl::Status s = backend_->HostRegister(p, size); !s.ok()) {
    ::munmap(p, size);
    return s;
  }
  shared_host_[addr] = size;
  return absl::OkStatus();
}

absl::Status ClientSession::OpHostShmUnregister(wire::Reader& in, wire::Writer& out) {
  const uint64_t addr = in.Get<uint64_t>();
  if (!in.ok()) return Malformed();
  auto it = shared_host_.find(addr);
  if (it == shared_host_.end()) return CuError(CUDA_ERROR_INVALID_VALUE, "not a shared region");
  void* p = reinterpret_cast<void*>(addr);
  // The driver waits for DMA in flight before it unpins.
  absl::Status s = backend_->HostUnregister(p);
  ::munmap(p, it->second);
  shared_host_.erase(it);
  return s;
}

void ClientSession::ReleaseSharedHostLocked(bool unregister) {
  for (const auto& [addr, size] : shared_host_) {
    void* p = reinterpret_cast<void*>(addr);
    if (unregister) {
      if (absl::Status s = backend_->HostUnregister(p); !s.ok()) {
        spdlog::warn("client {}: unregistering shared host memory failed: {}", id_, s.ToString());
      }
    }
    ::munmap(p, size);
  }
  shared_host_.clear();
}

absl::Status ClientSession::SharedCopy(wire::Reader& in, bool to_device) {
  const DevPtr device = in.Get<uint64_t>();
  const uint64_t host = in.Get<uint64_t>();
  const uint64_t size = in.Get<uint64_t>();
  const uint64_t stream = in.Get<uint64_t>();
  bool async = in.Get<uint8_t>() != 0;
  if (!in.ok()) return Malformed();
  // The optional completion word.
  std::atomic<uint32_t>* done = nullptr;
  uint32_t seq = 0;
  if (in.remaining() > 0) {
    const uint64_t done_addr = in.Get<uint64_t>();
    seq = in.Get<uint32_t>();
    if (!in.ok() || done_addr % 4 != 0 || SharedHostRange(done_addr, 8) == nullptr) {
      return Malformed();
    }
    done = reinterpret_cast<std::atomic<uint32_t>*>(done_addr);
    async = false;  // done means done
  }
  absl::Status status = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::Status {
    if (size == 0) return absl::OkStatus();
    if (absl::Status s = CheckRange(device, size); !s.ok()) return s;
    uint8_t* p = SharedHostRange(host, size);
    if (p == nullptr) return CuError(CUDA_ERROR_INVALID_VALUE, "not shared host memory");
    // No capture refusal: the pages are the client's and stay valid, so a
    // captured copy uses them at replay as CUDA's would.
    absl::StatusOr<BackendHandle> st = StreamForWork(stream);
    if (!st.ok()) return st.status();
    // Copy-on-write of deduplicated chunks (node_memory.h).
    if (to_device) {
      if (absl::Status s = PrepareNodeWriteLocked(device, size); !s.ok()) return s;
    }
    return to_device ? backend_->MemcpyHtoDRegistered(device, p, size, *st, async)
                     : backend_->MemcpyDtoHRegistered(p, device, size, *st, async);
  }();
  if (done != nullptr) {
    // Result first, then the sequence number that publishes it.
    reinterpret_cast<std::atomic<int32_t>*>(done + 1)->store(ToCuResult(status),
                                                             std::memory_order_relaxed);
    done->store(seq, std::memory_order_release);
    ::syscall(SYS_futex, reinterpret_cast<uint32_t*>(done), FUTEX_WAKE, 1, nullptr, nullptr, 0);
  }
  return status;
}

absl::Status ClientSession::OpMemcpyHtoDShared(wire::Reader& in, wire::Writer& out) {
  return SharedCopy(in, /*to_device=*/true);
}

absl::Status ClientSession::OpMemcpyDtoHShared(wire::Reader& in, wire::Writer& out) {
  return SharedCopy(in, /*to_device=*/false);
}

}  // namespace wooly::server
