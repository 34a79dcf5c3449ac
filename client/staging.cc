#include "staging.h"

#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <mutex>

#include "copy_pool.h"
#include "driver.h"
#include "log.h"
#include "memory_ext.h"
#include "wooly/proto/wire.h"

namespace wooly::client {
namespace {

constexpr int kSlots = 2;
constexpr uint64_t kSlotBytes = 8u << 20;
constexpr uint64_t kHeaderBytes = 4096;  // completion words, one cache line per slot

// A copy that fits in one slot but is at least this big goes as two chunks,
// so the host copy of one overlaps the DMA of the other (each half is still
// big enough for ParallelCopy to split).
constexpr uint64_t kSplitMin = 4u << 20;
static_assert(kSplitMin / 2 >= kParallelCopyThreshold);

// The bytes per chunk of an `n`-byte copy: a whole slot, or half of a copy
// that fits in one (rounded up to a page).
uint64_t ChunkBytes(uint64_t n) {
  if (n < kSplitMin || n > kSlotBytes) return kSlotBytes;
  return (n / 2 + 4095) & ~uint64_t{4095};
}

struct Completion {
  std::atomic<uint32_t> seq;
  std::atomic<int32_t> result;
  char pad[56];
};
static_assert(sizeof(Completion) == 64);

uint64_t NowNs() {
  timespec ts;
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000ull + static_cast<uint64_t>(ts.tv_nsec);
}

class Staging {
 public:
  // Null when no shared memory could be had.
  static Staging* Get() {
    static Staging* s = new Staging();  // never destroyed (see driver.h)
    return s;
  }

  std::mutex& mu() { return mu_; }

  // Maps the slots on first use (and again in a forked child, whose
  // session is new: the parent's shared pages are not its to use).
  bool Ready() {
    if (base_ != nullptr && generation_ == ForkGeneration()) return true;
    base_ = static_cast<uint8_t*>(SharedHostAlloc(kHeaderBytes + kSlots * kSlotBytes));
    generation_ = ForkGeneration();
    for (auto& s : slot_) s = SlotState{};
    if (base_ == nullptr) {
      WLOG_DEBUG("no shared staging for pageable copies; they travel over the channel");
      return false;
    }
    return true;
  }

  uint8_t* data(int slot) { return base_ + kHeaderBytes + slot * kSlotBytes; }
  Completion* done(int slot) { return reinterpret_cast<Completion*>(base_) + slot; }

  // Sends one chunk through `slot`; the slot must be idle.
  CUresult Send(wire::Op op, int slot, uint64_t device, uint64_t len, uint64_t stream) {
    SlotState& s = slot_[slot];
    s.pending = ++s.seq;
    wire::Writer w;
    w.Put<uint64_t>(device)
        .Put<uint64_t>(reinterpret_cast<uint64_t>(data(slot)))
        .Put<uint64_t>(len)
        .Put<uint64_t>(stream)
        .Put<uint8_t>(0)
        .Put<uint64_t>(reinterpret_cast<uint64_t>(done(slot)))
        .Put<uint32_t>(s.pending);
    const CUresult r = Post(op, w);
    if (r != CUDA_SUCCESS) s.pending = 0;
    return r;
  }

  // Waits for the chunk in flight in `slot` (if any) and returns its result.
  CUresult Wait(int slot) {
    SlotState& s = slot_[slot];
    if (s.pending == 0) return CUDA_SUCCESS;
    Completion* c = done(slot);
    const uint64_t spin_until = NowNs() + 200'000;
    uint32_t i = 0;
    while (c->seq.load(std::memory_order_acquire) != s.pending) {
      if (++i < 64 || NowNs() < spin_until) {
#if defined(__x86_64__)
        __builtin_ia32_pause();
#endif
        continue;
      }
      const uint32_t seen = c->seq.load(std::memory_order_relaxed);
      if (seen == s.pending) break;
      timespec ts{0, 20'000'000};
      ::syscall(SYS_futex, reinterpret_cast<uint32_t*>(&c->seq), FUTEX_WAIT, seen, &ts, nullptr, 0);
      if (c->seq.load(std::memory_order_acquire) != s.pending && !ConnectionAlive()) {
        s.pending = 0;
        return CUDA_ERROR_DEVICE_UNAVAILABLE;
      }
    }
    s.pending = 0;
    return static_cast<CUresult>(c->result.load(std::memory_order_relaxed));
  }

 private:
  struct SlotState {
    uint32_t seq = 0;
    uint32_t pending = 0;  // seq of the chunk in flight, 0 when idle
  };
  std::mutex mu_;
  uint8_t* base_ = nullptr;
  uint64_t generation_ = 0;
  SlotState slot_[kSlots];
};

}  // namespace

CUresult StagedHtoD(uint64_t dst, const void* src, size_t n, uint64_t stream) {
  Staging* st = Staging::Get();
  std::lock_guard<std::mutex> lock(st->mu());
  if (!st->Ready()) return CUDA_ERROR_NOT_SUPPORTED;
  const uint8_t* p = static_cast<const uint8_t*>(src);
  CUresult first = CUDA_SUCCESS;
  const uint64_t chunk_bytes = ChunkBytes(n);
  uint64_t chunk = 0;
  for (uint64_t off = 0; off < n; off += chunk_bytes, ++chunk) {
    const int slot = static_cast<int>(chunk % kSlots);
    if (CUresult r = st->Wait(slot); r != CUDA_SUCCESS && first == CUDA_SUCCESS) first = r;
    if (first != CUDA_SUCCESS) break;
    const uint64_t len = std::min<uint64_t>(chunk_bytes, n - off);
    ParallelCopy(st->data(slot), p + off, len);
    if (CUresult r = st->Send(wire::Op::kMemcpyHtoDShared, slot, dst + off, len, stream);
        r != CUDA_SUCCESS) {
      first = r;
      break;
    }
  }
  for (int s = 0; s < kSlots; ++s) {
    if (CUresult r = st->Wait(s); r != CUDA_SUCCESS && first == CUDA_SUCCESS) first = r;
  }
  return first;
}

CUresult StagedDtoH(void* dst, uint64_t src, size_t n, uint64_t stream) {
  Staging* st = Staging::Get();
  std::lock_guard<std::mutex> lock(st->mu());
  if (!st->Ready()) return CUDA_ERROR_NOT_SUPPORTED;
  uint8_t* p = static_cast<uint8_t*>(dst);
  const uint64_t chunk_bytes = ChunkBytes(n);
  const uint64_t chunks = (n + chunk_bytes - 1) / chunk_bytes;
  auto len_of = [&](uint64_t c) { return std::min<uint64_t>(chunk_bytes, n - c * chunk_bytes); };
  CUresult first = CUDA_SUCCESS;
  // Keep both slots busy: chunk c + kSlots goes out as soon as chunk c is
  // copied out of its slot.
  uint64_t sent = 0;
  for (; sent < chunks && sent < static_cast<uint64_t>(kSlots); ++sent) {
    first = st->Send(wire::Op::kMemcpyDtoHShared, static_cast<int>(sent), src + sent * chunk_bytes,
                     len_of(sent), stream);
    if (first != CUDA_SUCCESS) break;
  }
  for (uint64_t c = 0; c < sent && first == CUDA_SUCCESS; ++c) {
    const int slot = static_cast<int>(c % kSlots);
    if (CUresult r = st->Wait(slot); r != CUDA_SUCCESS) {
      first = r;
      break;
    }
    ParallelCopy(p + c * chunk_bytes, st->data(slot), len_of(c));
    if (sent < chunks) {
      first = st->Send(wire::Op::kMemcpyDtoHShared, slot, src + sent * chunk_bytes, len_of(sent),
                       stream);
      ++sent;
    }
  }
  for (int s = 0; s < kSlots; ++s) {
    if (CUresult r = st->Wait(s); r != CUDA_SUCCESS && first == CUDA_SUCCESS) first = r;
  }
  return first;
}

}  // namespace wooly::client
