// VmmPhysicalMemory (server/vmm_physical_memory.h) on the fake backend,
// whose VMM keeps real bytes behind every handle and mapping: the
// PhysicalMemory contract (all-or-nothing under injected driver failures,
// handles and slots never reused), byte-exact swap round trips, read-only
// access flags, the pinned host pool, and memory::MemoryManager running on
// top of it end to end.
#include <cuda.h>

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "wooly/fake/fake_backend.h"
#include "wooly/memory/memory_manager.h"
#include "wooly/server/cu_status.h"
#include "wooly/server/vmm_physical_memory.h"

namespace wooly::server {
namespace {

using memory::Access;
using memory::HostSlot;
using memory::PhysHandle;

constexpr uint64_t kG = uint64_t{2} << 20;  // the fake's granularity
constexpr uint64_t kMiB = uint64_t{1} << 20;

std::vector<uint8_t> Pattern(uint64_t seed, size_t n) {
  std::mt19937_64 rng(seed);
  std::vector<uint8_t> v(n);
  for (size_t i = 0; i < n; i += 8) {
    const uint64_t r = rng();
    for (size_t k = 0; k < 8 && i + k < n; ++k) v[i + k] = static_cast<uint8_t>(r >> (8 * k));
  }
  return v;
}

// The fake backend with failure injection and a record of what reached it.
class FlakyBackend : public fake::FakeBackend {
 public:
  enum class Call {
    kMemCreate,
    kMemRelease,
    kMemMap,
    kMemUnmap,
    kMemSetAccess,
    kMemAddressReserve,
    kMemAddressFree,
    kMemcpyHtoD,
    kMemcpyDtoH,
    kMemcpyDtoD,
    kStreamCreate,
    kStreamSynchronize,
    kHostRegister,
    kHostUnregister,
  };

  explicit FlakyBackend(uint64_t capacity = uint64_t{1} << 30)
      : fake::FakeBackend(fake::FakeBackendOptions{.capacity_bytes = capacity}) {}

  // The call to `c` after `after` more successful ones fails once with `r`.
  void Fail(Call c, int after = 0, CUresult r = CUDA_ERROR_UNKNOWN) {
    absl::MutexLock lock(&mu_);
    failures_.push_back({c, after, r});
  }
  // cuMemSetAccess refuses CU_MEM_ACCESS_FLAGS_PROT_READ, as a driver
  // without read-only device mappings would.
  void RefuseReadOnly(bool refuse) {
    absl::MutexLock lock(&mu_);
    refuse_read_only_ = refuse;
  }
  int calls(Call c) const {
    absl::MutexLock lock(&mu_);
    auto it = calls_.find(c);
    return it == calls_.end() ? 0 : it->second;
  }
  int device_calls() const {
    absl::MutexLock lock(&mu_);
    int n = 0;
    for (const auto& [c, k] : calls_) {
      if (c != Call::kHostRegister && c != Call::kHostUnregister) n += k;
    }
    return n;
  }
  std::vector<uint64_t> registered() const {
    absl::MutexLock lock(&mu_);
    return registered_;
  }

  absl::StatusOr<Handle> MemCreate(uint64_t size, const wire::MemAllocProps& props,
                                   uint64_t flags) override {
    if (absl::Status s = Check(Call::kMemCreate); !s.ok()) return s;
    return FakeBackend::MemCreate(size, props, flags);
  }
  absl::Status MemRelease(Handle h) override {
    if (absl::Status s = Check(Call::kMemRelease); !s.ok()) return s;
    return FakeBackend::MemRelease(h);
  }
  absl::Status MemMap(DevPtr ptr, uint64_t size, uint64_t offset, Handle h,
                      uint64_t flags) override {
    if (absl::Status s = Check(Call::kMemMap); !s.ok()) return s;
    return FakeBackend::MemMap(ptr, size, offset, h, flags);
  }
  absl::Status MemUnmap(DevPtr ptr, uint64_t size) override {
    if (absl::Status s = Check(Call::kMemUnmap); !s.ok()) return s;
    return FakeBackend::MemUnmap(ptr, size);
  }
  absl::Status MemSetAccess(DevPtr ptr, uint64_t size,
                            absl::Span<const MemAccessDesc> access) override {
    if (absl::Status s = Check(Call::kMemSetAccess); !s.ok()) return s;
    {
      absl::MutexLock lock(&mu_);
      for (const MemAccessDesc& d : access) {
        if (refuse_read_only_ && d.flags == CU_MEM_ACCESS_FLAGS_PROT_READ) {
          return CuError(CUDA_ERROR_NOT_SUPPORTED, "read-only device mappings");
        }
      }
    }
    return FakeBackend::MemSetAccess(ptr, size, access);
  }
  absl::StatusOr<DevPtr> MemAddressReserve(uint64_t size, uint64_t alignment, DevPtr hint,
                                           uint64_t flags) override {
    if (absl::Status s = Check(Call::kMemAddressReserve); !s.ok()) return s;
    return FakeBackend::MemAddressReserve(size, alignment, hint, flags);
  }
  absl::Status MemAddressFree(DevPtr ptr, uint64_t size) override {
    if (absl::Status s = Check(Call::kMemAddressFree); !s.ok()) return s;
    return FakeBackend::MemAddressFree(ptr, size);
  }
  absl::Status MemcpyHtoD(DevPtr dst, const void* src, uint64_t size, Handle stream,
                          bool async) override {
    if (absl::Status s = Check(Call::kMemcpyHtoD); !s.ok()) return s;
    return FakeBackend::MemcpyHtoD(dst, src, size, stream, async);
  }
  absl::Status MemcpyDtoH(void* dst, DevPtr src, uint64_t size, Handle stream,
                          bool async) override {
    if (absl::Status s = Check(Call::kMemcpyDtoH); !s.ok()) return s;
    return FakeBackend::MemcpyDtoH(dst, src, size, stream, async);
  }
  absl::Status MemcpyDtoD(DevPtr dst, DevPtr src, uint64_t size, Handle stream,
                          bool async) override {
    if (absl::Status s = Check(Call::kMemcpyDtoD); !s.ok()) return s;
    return FakeBackend::MemcpyDtoD(dst, src, size, stream, async);
  }
  absl::StatusOr<Handle> StreamCreate(uint32_t flags, int32_t priority) override {
    if (absl::Status s = Check(Call::kStreamCreate); !s.ok()) return s;
    return FakeBackend::StreamCreate(flags, priority);
  }
  absl::Status StreamSynchronize(Handle stream) override {
    if (absl::Status s = Check(Call::kStreamSynchronize); !s.ok()) return s;
    return FakeBackend::StreamSynchronize(stream);
  }
  absl::Status HostRegister(void* ptr, uint64_t size) override {
    if (absl::Status s = Check(Call::kHostRegister); !s.ok()) return s;
    absl::MutexLock lock(&mu_);
    registered_.push_back(size);
    return absl::OkStatus();
  }
  absl::Status HostUnregister(void* ptr) override { return Check(Call::kHostUnregister); }

 private:
  struct Failure {
    Call call;
    int after;
    CUresult result;
  };
  absl::Status Check(Call c) {
    absl::MutexLock lock(&mu_);
    ++calls_[c];
    for (auto it = failures_.begin(); it != failures_.end(); ++it) {
      if (it->call != c) continue;
      if (it->after-- > 0) continue;
      const CUresult r = it->result;
      failures_.erase(it);
      return CuError(r, "injected failure");
    }
    return absl::OkStatus();
  }

  mutable absl::Mutex mu_;
  std::vector<Failure> failures_ ABSL_GUARDED_BY(mu_);
  std::map<Call, int> calls_ ABSL_GUARDED_BY(mu_);
  std::vector<uint64_t> registered_ ABSL_GUARDED_BY(mu_);
  bool refuse_read_only_ ABSL_GUARDED_BY(mu_) = false;
};
using Call = FlakyBackend::Call;

VmmOptions SmallOptions() {
  VmmOptions o;
  o.view_block_bytes = 64 * kMiB;
  o.host_arena_bytes = 8 * kMiB;
  o.host_pool_max_bytes = 32 * kMiB;
  o.host_slot_alignment = 64 << 10;
  return o;
}

class VmmTest : public ::testing::Test {
 protected:
  void SetUp() override { Reopen(SmallOptions()); }

  void Reopen(VmmOptions options) {
    vmm_.reset();
    auto v = VmmPhysicalMemory::Open(&backend_, options);
    ASSERT_TRUE(v.ok()) << v.status();
    vmm_ = std::move(*v);
  }

  PhysHandle NewHandle(uint64_t bytes, uint64_t seed) {
    absl::StatusOr<PhysHandle> h = vmm_->Create(bytes);
    EXPECT_TRUE(h.ok()) << h.status();
    if (!h.ok()) return 0;
    std::vector<uint8_t> p = Pattern(seed, bytes);
    EXPECT_TRUE(vmm_->Write(*h, 0, p).ok());
    return *h;
  }

  std::vector<uint8_t> Contents(PhysHandle h, uint64_t bytes) {
    std::vector<uint8_t> out(bytes);
    absl::Status s = vmm_->Read(h, 0, out);
    EXPECT_TRUE(s.ok()) << s;
    return out;
  }

  // What a client's program reads at `va` (through its mapping).
  std::vector<uint8_t> AtVa(uint64_t va, uint64_t bytes) {
    std::vector<uint8_t> out(bytes);
    absl::Status s = backend_.MemcpyDtoH(out.data(), va, bytes, 0, false);
    EXPECT_TRUE(s.ok()) << s;
    return out;
  }

  FlakyBackend backend_;
  std::unique_ptr<VmmPhysicalMemory> vmm_;
};

TEST_F(VmmTest, OpenTakesTheDeviceGranularityOrAMultiple) {
  EXPECT_EQ(vmm_->granularity(), kG);
  VmmOptions o = SmallOptions();
  o.granularity = 4 * kG;
  auto v = VmmPhysicalMemory::Open(&backend_, o);
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ((*v)->granularity(), 4 * kG);
  EXPECT_EQ((*v)->Create(kG).status().code(), absl::StatusCode::kInvalidArgument);
  for (uint64_t bad : {kG / 2, 3 * kG}) {
    o.granularity = bad;
    EXPECT_EQ(VmmPhysicalMemory::Open(&backend_, o).status().code(),
              absl::StatusCode::kInvalidArgument)
        << bad;
  }
  o = SmallOptions();
  o.device_ordinal = 3;  // the fake has one device
  EXPECT_FALSE(VmmPhysicalMemory::Open(&backend_, o).ok());
  EXPECT_EQ(VmmPhysicalMemory::Open(nullptr).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(VmmTest, ReserveMapUnmapReleaseFree) {
  absl::StatusOr<uint64_t> base = vmm_->ReserveAddress(64 * kMiB, kG);
  ASSERT_TRUE(base.ok()) << base.status();
  EXPECT_NE(*base, 0u);
  EXPECT_EQ(*base % kG, 0u);
  const PhysHandle a = NewHandle(2 * kG, 1);
  const PhysHandle b = NewHandle(kG, 2);
  ASSERT_NE(a, 0u);
  ASSERT_NE(b, 0u);
  EXPECT_EQ(backend_.live_allocation_handles(), 2u);
  EXPECT_EQ(backend_.live_mappings(), 2u);  // the two views
  ASSERT_TRUE(vmm_->Map(*base, 2 * kG, a, Access::kReadWrite).ok());
  ASSERT_TRUE(vmm_->Map(*base + 2 * kG, kG, b, Access::kReadWrite).ok());
  EXPECT_EQ(backend_.live_mappings(), 4u);
  // The client's addresses alias the handles' bytes, both ways.
  EXPECT_EQ(AtVa(*base, 2 * kG), Pattern(1, 2 * kG));
  EXPECT_EQ(AtVa(*base + 2 * kG, kG), Pattern(2, kG));
  std::vector<uint8_t> fresh = Pattern(3, kG);
  ASSERT_TRUE(backend_.MemcpyHtoD(*base + 2 * kG, fresh.data(), kG, 0, false).ok());
  EXPECT_EQ(Contents(b, kG), fresh);

  VmmStats st = vmm_->Stats();
  EXPECT_EQ(st.handles, 2u);
  EXPECT_EQ(st.device_bytes, 3 * kG);
  EXPECT_EQ(st.mappings, 2u);
  EXPECT_EQ(st.reservations, 1u);
  EXPECT_EQ(st.view_blocks, 1u);

  ASSERT_TRUE(vmm_->Unmap(*base, 2 * kG).ok());
  ASSERT_TRUE(vmm_->Unmap(*base + 2 * kG, kG).ok());
  ASSERT_TRUE(vmm_->Release(a).ok());
  ASSERT_TRUE(vmm_->Release(b).ok());
  ASSERT_TRUE(vmm_->FreeAddress(*base, 64 * kMiB).ok());
  EXPECT_EQ(backend_.live_allocation_handles(), 0u);
  EXPECT_EQ(backend_.live_mappings(), 0u);
  EXPECT_EQ(backend_.live_reservations(), 1u);  // the view block stays for reuse
  st = vmm_->Stats();
  EXPECT_EQ(st.handles, 0u);
  EXPECT_EQ(st.mappings, 0u);
  EXPECT_EQ(st.reservations, 0u);

  // The destructor gives back the rest.
  vmm_.reset();
  EXPECT_EQ(backend_.live_reservations(), 0u);
  EXPECT_EQ(backend_.live_streams(), 0u);
}

TEST_F(VmmTest, OddReservationSizesRoundUpAndFreeByTheAskedSize) {
  absl::StatusOr<uint64_t> base = vmm_->ReserveAddress(kG + 5, 0);
  ASSERT_TRUE(base.ok()) << base.status();
  const PhysHandle h = NewHandle(2 * kG, 4);
  EXPECT_TRUE(vmm_->Map(*base, 2 * kG, h, Access::kReadWrite).ok());  // inside the rounding
  ASSERT_TRUE(vmm_->Unmap(*base, 2 * kG).ok());
  EXPECT_EQ(vmm_->FreeAddress(*base, 2 * kG).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(vmm_->FreeAddress(*base, kG + 5).ok());
}

TEST_F(VmmTest, RefusesWhatTheContractForbids) {
  absl::StatusOr<uint64_t> base = vmm_->ReserveAddress(16 * kMiB, 0);
  ASSERT_TRUE(base.ok());
  const PhysHandle a = NewHandle(2 * kG, 1);
  const PhysHandle b = NewHandle(2 * kG, 2);
  EXPECT_EQ(vmm_->Create(0).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(vmm_->Create(kG + 4096).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(vmm_->ReserveAddress(0, 0).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(vmm_->ReserveAddress(kG, 3).status().code(), absl::StatusCode::kInvalidArgument);
  // Maps: whole handles, aligned, inside one reservation, not overlapping.
  EXPECT_EQ(vmm_->Map(*base, kG, a, Access::kReadWrite).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(vmm_->Map(*base + 4096, 2 * kG, a, Access::kReadWrite).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(vmm_->Map(*base + 14 * kMiB, 2 * kG, a, Access::kReadWrite).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(vmm_->Map(uint64_t{1} << 20, 2 * kG, a, Access::kReadWrite).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(vmm_->Map(*base, 2 * kG, 999, Access::kReadWrite).code(), absl::StatusCode::kNotFound);
  ASSERT_TRUE(vmm_->Map(*base + kG, 2 * kG, a, Access::kReadWrite).ok());
  EXPECT_EQ(vmm_->Map(*base, 2 * kG, b, Access::kReadWrite).code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(vmm_->Map(*base + 2 * kG, 2 * kG, b, Access::kReadWrite).code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(vmm_->Map(*base + 3 * kG, 2 * kG, b, Access::kReadWrite).ok());
  // Still in use.
  EXPECT_EQ(vmm_->Release(a).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(vmm_->FreeAddress(*base, 16 * kMiB).code(), absl::StatusCode::kFailedPrecondition);
  // Unmaps: exactly one earlier map.
  EXPECT_EQ(vmm_->Unmap(*base + kG, kG).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(vmm_->Unmap(*base, 2 * kG).code(), absl::StatusCode::kNotFound);
  // Copies: whole handles, known slots.
  absl::StatusOr<HostSlot> slot = vmm_->AllocHost(2 * kG);
  ASSERT_TRUE(slot.ok());
  EXPECT_EQ(vmm_->CopyToHost(a, *slot, kG).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(vmm_->CopyToHost(a, 12345, 2 * kG).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(vmm_->CopyDevice(a, a, 2 * kG).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(vmm_->FreeHost(12345).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(vmm_->AllocHost(0).status().code(), absl::StatusCode::kInvalidArgument);
  // Nothing above changed anything.
  EXPECT_EQ(AtVa(*base + kG, 2 * kG), Pattern(1, 2 * kG));
  EXPECT_EQ(AtVa(*base + 3 * kG, 2 * kG), Pattern(2, 2 * kG));
  VmmStats st = vmm_->Stats();
  EXPECT_EQ(st.mappings, 2u);
  EXPECT_EQ(st.handles, 2u);
  EXPECT_EQ(st.host_slots, 1u);
  // A refused copy leaves nothing busy.
  ASSERT_TRUE(vmm_->Unmap(*base + kG, 2 * kG).ok());
  EXPECT_TRUE(vmm_->Release(a).ok());
  EXPECT_TRUE(vmm_->FreeHost(*slot).ok());
}

// Swap-out to the host pool, swap-in to a different handle mapped at the
// same address: the client sees the same bytes at the same pointer.
TEST_F(VmmTest, SwapRoundTripIsByteExactAtTheSameAddress) {
  constexpr uint64_t kBytes = 3 * kG;
  absl::StatusOr<uint64_t> base = vmm_->ReserveAddress(16 * kMiB, 0);
  ASSERT_TRUE(base.ok());
  const uint64_t va = *base + kG;
  const PhysHandle first = NewHandle(kBytes, 7);
  ASSERT_TRUE(vmm_->Map(va, kBytes, first, Access::kReadWrite).ok());
  std::vector<uint8_t> bytes = Pattern(7, kBytes);
  // The program changes a few bytes through its pointer.
  bytes[12345] ^= 0xFF;
  ASSERT_TRUE(backend_.MemcpyHtoD(va + 12345, &bytes[12345], 1, 0, false).ok());

  // Swap out.
  absl::StatusOr<HostSlot> slot = vmm_->AllocHost(kBytes);
  ASSERT_TRUE(slot.ok()) << slot.status();
  ASSERT_TRUE(vmm_->CopyToHost(first, *slot, kBytes).ok());
  absl::StatusOr<uint8_t*> host = vmm_->SlotAddress(*slot);
  ASSERT_TRUE(host.ok());
  EXPECT_EQ(std::vector<uint8_t>(*host, *host + kBytes), bytes);
  ASSERT_TRUE(vmm_->Unmap(va, kBytes).ok());
  ASSERT_TRUE(vmm_->Release(first).ok());

  // Swap in, to a new handle.
  absl::StatusOr<PhysHandle> second = vmm_->Create(kBytes);
  ASSERT_TRUE(second.ok());
  EXPECT_NE(*second, first);
  ASSERT_TRUE(vmm_->CopyFromHost(*slot, *second, kBytes).ok());
  ASSERT_TRUE(vmm_->Map(va, kBytes, *second, Access::kReadWrite).ok());
  ASSERT_TRUE(vmm_->FreeHost(*slot).ok());
  EXPECT_EQ(AtVa(va, kBytes), bytes);
  EXPECT_EQ(Contents(*second, kBytes), bytes);

  // Copy-on-write's copy.
  absl::StatusOr<PhysHandle> third = vmm_->Create(kBytes);
  ASSERT_TRUE(third.ok());
  ASSERT_TRUE(vmm_->CopyDevice(*second, *third, kBytes).ok());
  EXPECT_EQ(Contents(*third, kBytes), bytes);

  VmmStats st = vmm_->Stats();
  EXPECT_EQ(st.bytes_to_host, kBytes);
  EXPECT_EQ(st.bytes_from_host, kBytes);
  EXPECT_EQ(st.bytes_device, kBytes);
  EXPECT_EQ(st.streams, 1u);  // one copy at a time: one stream, reused
}

TEST_F(VmmTest, WriteAndReadAtOffsets) {
  const PhysHandle h = NewHandle(2 * kG, 9);
  std::vector<uint8_t> shadow = Pattern(9, 2 * kG);
  const std::vector<std::pair<uint64_t, size_t>> pieces = {
      {0, 1}, {1, 4095}, {kG - 3, 7}, {2 * kG - 100, 100}, {777777, 300000}};
  uint64_t seed = 100;
  for (const auto& [off, n] : pieces) {
    std::vector<uint8_t> p = Pattern(seed++, n);
    ASSERT_TRUE(vmm_->Write(h, off, p).ok()) << off;
    std::copy(p.begin(), p.end(), shadow.begin() + static_cast<long>(off));
    std::vector<uint8_t> back(n);
    ASSERT_TRUE(vmm_->Read(h, off, back).ok()) << off;
    EXPECT_EQ(back, p) << off;
  }
  EXPECT_EQ(Contents(h, 2 * kG), shadow);
  // Out of range: refused, nothing written.
  std::vector<uint8_t> two(2, 0x55);
  EXPECT_EQ(vmm_->Write(h, 2 * kG - 1, two).code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(vmm_->Write(h, ~uint64_t{0}, two).code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(vmm_->Read(h, 2 * kG - 1, std::span(two)).code(), absl::StatusCode::kOutOfRange);
  EXPECT_TRUE(vmm_->Write(h, 2 * kG, std::span<const uint8_t>()).ok());  // empty, at the end
  EXPECT_EQ(Contents(h, 2 * kG), shadow);
}

TEST_F(VmmTest, ReadOnlyMappingsReachTheBackend) {
  absl::StatusOr<uint64_t> base = vmm_->ReserveAddress(16 * kMiB, 0);
  ASSERT_TRUE(base.ok());
  const PhysHandle h = NewHandle(kG, 5);
  ASSERT_TRUE(vmm_->Map(*base, kG, h, Access::kReadOnly).ok());
  ASSERT_TRUE(vmm_->Map(*base + kG, kG, h, Access::kReadWrite).ok());  // one handle, two maps
  auto flags = [&](uint64_t va) {
    absl::StatusOr<uint64_t> f = backend_.MemGetAccess(CU_MEM_LOCATION_TYPE_DEVICE, 0, va);
    EXPECT_TRUE(f.ok()) << f.status();
    return f.ok() ? *f : ~uint64_t{0};
  };
  EXPECT_EQ(flags(*base), uint64_t{CU_MEM_ACCESS_FLAGS_PROT_READ});
  EXPECT_EQ(flags(*base + kG), uint64_t{CU_MEM_ACCESS_FLAGS_PROT_READWRITE});
  // The private view, which Write uses, stays writable.
  absl::StatusOr<DevPtr> view = vmm_->ViewAddress(h);
  ASSERT_TRUE(view.ok());
  EXPECT_EQ(flags(*view), uint64_t{CU_MEM_ACCESS_FLAGS_PROT_READWRITE});
  EXPECT_EQ(*vmm_->EffectiveAccess(*base + 100), Access::kReadOnly);
  EXPECT_EQ(*vmm_->EffectiveAccess(*base + kG), Access::kReadWrite);
  EXPECT_EQ(vmm_->Stats().read_only_fallbacks, 0u);
  EXPECT_EQ(vmm_->Release(h).code(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(VmmTest, ReadOnlyFallsBackToReadWriteWhereTheDriverRefusesIt) {
  backend_.RefuseReadOnly(true);
  absl::StatusOr<uint64_t> base = vmm_->ReserveAddress(16 * kMiB, 0);
  ASSERT_TRUE(base.ok());
  const PhysHandle h = NewHandle(kG, 5);
  ASSERT_TRUE(vmm_->Map(*base, kG, h, Access::kReadOnly).ok());
  EXPECT_EQ(*backend_.MemGetAccess(CU_MEM_LOCATION_TYPE_DEVICE, 0, *base),
            uint64_t{CU_MEM_ACCESS_FLAGS_PROT_READWRITE});
  EXPECT_EQ(*vmm_->EffectiveAccess(*base), Access::kReadWrite);
  EXPECT_EQ(vmm_->Stats().read_only_fallbacks, 1u);

  // Without the fallback the map fails and leaves the range unmapped.
  VmmOptions o = SmallOptions();
  o.read_only_fallback = false;
  auto strict = VmmPhysicalMemory::Open(&backend_, o);
  ASSERT_TRUE(strict.ok());
  absl::StatusOr<uint64_t> b2 = (*strict)->ReserveAddress(16 * kMiB, 0);
  ASSERT_TRUE(b2.ok());
  absl::StatusOr<PhysHandle> h2 = (*strict)->Create(kG);
  ASSERT_TRUE(h2.ok());
  const size_t mapped = backend_.live_mappings();
  absl::Status s = (*strict)->Map(*b2, kG, *h2, Access::kReadOnly);
  EXPECT_EQ(ToCuResult(s), CUDA_ERROR_NOT_SUPPORTED) << s;
  EXPECT_EQ(backend_.live_mappings(), mapped);
  EXPECT_EQ((*strict)->Stats().mappings, 0u);
  EXPECT_TRUE((*strict)->Map(*b2, kG, *h2, Access::kReadWrite).ok());
}

// Every driver call that can fail, failed once: the call returns the
// driver's error and everything is as before (the retry succeeds).
TEST_F(VmmTest, DriverFailuresLeaveTheStateUnchanged) {
  absl::StatusOr<uint64_t> base = vmm_->ReserveAddress(16 * kMiB, 0);
  ASSERT_TRUE(base.ok());
  const PhysHandle h = NewHandle(kG, 11);
  const std::vector<uint8_t> bytes = Pattern(11, kG);

  auto same = [&](const VmmStats& before) {
    const VmmStats now = vmm_->Stats();
    EXPECT_EQ(now.handles, before.handles);
    EXPECT_EQ(now.mappings, before.mappings);
    EXPECT_EQ(now.reservations, before.reservations);
    EXPECT_EQ(now.host_slots, before.host_slots);
    EXPECT_EQ(now.device_bytes, before.device_bytes);
  };

  // Create: the handle, its view and its access can each fail.
  for (Call c : {Call::kMemCreate, Call::kMemMap, Call::kMemSetAccess, Call::kMemAddressReserve}) {
    const VmmStats before = vmm_->Stats();
    const size_t handles = backend_.live_allocation_handles();
    const size_t mappings = backend_.live_mappings();
    if (c == Call::kMemAddressReserve) {
      // Only a new view block reserves: fill the first one (64 MiB).
      VmmOptions o = SmallOptions();
      o.view_block_bytes = kG;
      Reopen(o);
    }
    backend_.Fail(c, 0, CUDA_ERROR_OUT_OF_MEMORY);
    const size_t handles2 = backend_.live_allocation_handles();
    absl::StatusOr<PhysHandle> x = vmm_->Create(kG);
    EXPECT_EQ(x.status().code(), absl::StatusCode::kResourceExhausted) << static_cast<int>(c);
    EXPECT_EQ(backend_.live_allocation_handles(), handles2) << static_cast<int>(c);
    if (c != Call::kMemAddressReserve) {
      same(before);
      EXPECT_EQ(backend_.live_allocation_handles(), handles);
      EXPECT_EQ(backend_.live_mappings(), mappings);
    }
    absl::StatusOr<PhysHandle> y = vmm_->Create(kG);
    ASSERT_TRUE(y.ok()) << y.status();
    ASSERT_TRUE(vmm_->Release(*y).ok());
  }
  Reopen(SmallOptions());
  base = vmm_->ReserveAddress(16 * kMiB, 0);
  ASSERT_TRUE(base.ok());
  const PhysHandle g = NewHandle(kG, 11);

  // Map: the map or its access.
  for (Call c : {Call::kMemMap, Call::kMemSetAccess}) {
    const VmmStats before = vmm_->Stats();
    const size_t mappings = backend_.live_mappings();
    backend_.Fail(c);
    EXPECT_FALSE(vmm_->Map(*base, kG, g, Access::kReadWrite).ok());
    same(before);
    EXPECT_EQ(backend_.live_mappings(), mappings);
  }
  ASSERT_TRUE(vmm_->Map(*base, kG, g, Access::kReadWrite).ok());

  // Unmap.
  {
    const VmmStats before = vmm_->Stats();
    backend_.Fail(Call::kMemUnmap);
    EXPECT_FALSE(vmm_->Unmap(*base, kG).ok());
    same(before);
    EXPECT_EQ(AtVa(*base, kG), bytes);
    EXPECT_EQ(vmm_->Release(g).code(), absl::StatusCode::kFailedPrecondition);
    ASSERT_TRUE(vmm_->Unmap(*base, kG).ok());
  }

  // Release: unmapping the view, or releasing the handle. The handle stays
  // whole and usable.
  for (Call c : {Call::kMemUnmap, Call::kMemRelease}) {
    const VmmStats before = vmm_->Stats();
    backend_.Fail(c);
    EXPECT_FALSE(vmm_->Release(g).ok());
    same(before);
    EXPECT_EQ(Contents(g, kG), bytes);
  }
  // Even when the view cannot come back at once, the next copy restores it.
  backend_.Fail(Call::kMemRelease);
  backend_.Fail(Call::kMemMap);
  EXPECT_FALSE(vmm_->Release(g).ok());
  EXPECT_EQ(Contents(g, kG), bytes);

  // Reservations.
  {
    const VmmStats before = vmm_->Stats();
    backend_.Fail(Call::kMemAddressReserve);
    EXPECT_FALSE(vmm_->ReserveAddress(kG, 0).ok());
    same(before);
    backend_.Fail(Call::kMemAddressFree);
    EXPECT_FALSE(vmm_->FreeAddress(*base, 16 * kMiB).ok());
    same(before);
  }

  // Copies: the source is intact, nothing stays busy.
  absl::StatusOr<HostSlot> slot = vmm_->AllocHost(kG);
  ASSERT_TRUE(slot.ok());
  absl::StatusOr<PhysHandle> other = vmm_->Create(kG);
  ASSERT_TRUE(other.ok());
  for (Call c : {Call::kMemcpyDtoH, Call::kStreamSynchronize}) {
    backend_.Fail(c);
    EXPECT_FALSE(vmm_->CopyToHost(g, *slot, kG).ok());
  }
  for (Call c : {Call::kMemcpyHtoD, Call::kStreamSynchronize}) {
    backend_.Fail(c);
    EXPECT_FALSE(vmm_->CopyFromHost(*slot, *other, kG).ok());
  }
  backend_.Fail(Call::kMemcpyDtoD);
  EXPECT_FALSE(vmm_->CopyDevice(g, *other, kG).ok());
  backend_.Fail(Call::kMemcpyHtoD);
  EXPECT_FALSE(vmm_->Write(g, 0, std::span(bytes).first(10)).ok());
  EXPECT_EQ(Contents(g, kG), bytes);
  EXPECT_EQ(vmm_->Stats().bytes_to_host, 0u);
  // A stream that cannot be created fails the copy, and the next one works.
  vmm_.reset();
  Reopen(SmallOptions());
  absl::StatusOr<PhysHandle> fresh = vmm_->Create(kG);
  ASSERT_TRUE(fresh.ok());
  backend_.Fail(Call::kStreamCreate);
  std::vector<uint8_t> out(16);
  EXPECT_FALSE(vmm_->Read(*fresh, 0, out).ok());
  EXPECT_TRUE(vmm_->Read(*fresh, 0, out).ok());
  EXPECT_TRUE(vmm_->Release(*fresh).ok());
  (void)h;
}

TEST_F(VmmTest, AFullDeviceIsResourceExhausted) {
  FlakyBackend small(4 * kG);
  auto v = VmmPhysicalMemory::Open(&small, SmallOptions());
  ASSERT_TRUE(v.ok());
  absl::StatusOr<PhysHandle> a = (*v)->Create(3 * kG);
  ASSERT_TRUE(a.ok());
  absl::StatusOr<PhysHandle> b = (*v)->Create(2 * kG);
  EXPECT_EQ(b.status().code(), absl::StatusCode::kResourceExhausted) << b.status();
  EXPECT_EQ(ToCuResult(b.status()), CUDA_ERROR_OUT_OF_MEMORY);
  EXPECT_EQ(small.live_allocation_handles(), 1u);
  ASSERT_TRUE((*v)->Release(*a).ok());
  EXPECT_TRUE((*v)->Create(4 * kG).ok());
}

TEST_F(VmmTest, HandlesAndSlotsAreNeverZeroNorReused) {
  std::set<uint64_t> seen;
  for (int round = 0; round < 20; ++round) {
    absl::StatusOr<PhysHandle> h = vmm_->Create(kG);
    ASSERT_TRUE(h.ok());
    absl::StatusOr<HostSlot> s = vmm_->AllocHost(kG);
    ASSERT_TRUE(s.ok());
    EXPECT_NE(*h, 0u);
    EXPECT_NE(*s, 0u);
    EXPECT_TRUE(seen.insert(*h).second) << *h;
    EXPECT_TRUE(seen.insert(*s).second) << *s;
    ASSERT_TRUE(vmm_->Release(*h).ok());
    ASSERT_TRUE(vmm_->FreeHost(*s).ok());
    // Stale ids are unknown.
    EXPECT_EQ(vmm_->Release(*h).code(), absl::StatusCode::kNotFound);
    EXPECT_EQ(vmm_->FreeHost(*s).code(), absl::StatusCode::kNotFound);
  }
}

TEST_F(VmmTest, HostPoolGrowsInArenasAndReusesSlots) {
  // Arenas of 8 MiB, 32 MiB at most.
  absl::StatusOr<HostSlot> a = vmm_->AllocHost(4 * kMiB);
  absl::StatusOr<HostSlot> b = vmm_->AllocHost(4 * kMiB);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(backend_.registered(), std::vector<uint64_t>{8 * kMiB});  // one registration
  uint8_t* a_ptr = *vmm_->SlotAddress(*a);
  ASSERT_TRUE(vmm_->FreeHost(*a).ok());
  absl::StatusOr<HostSlot> c = vmm_->AllocHost(4 * kMiB);
  ASSERT_TRUE(c.ok());
  EXPECT_NE(*c, *a);                         // a new id...
  EXPECT_EQ(*vmm_->SlotAddress(*c), a_ptr);  // ...in the freed memory
  EXPECT_EQ(backend_.registered().size(), 1u);
  // Full arena: another one.
  absl::StatusOr<HostSlot> d = vmm_->AllocHost(kMiB);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(backend_.registered().size(), 2u);
  // A slot larger than an arena gets an arena of its own size.
  absl::StatusOr<HostSlot> big = vmm_->AllocHost(12 * kMiB);
  ASSERT_TRUE(big.ok());
  EXPECT_EQ(backend_.registered().back(), 12 * kMiB);
  EXPECT_EQ(vmm_->Stats().host_registered, 28 * kMiB);
  // Past the limit: refused, nothing registered.
  absl::StatusOr<HostSlot> over = vmm_->AllocHost(8 * kMiB);
  EXPECT_EQ(over.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(backend_.registered().size(), 3u);
  // Small slots still fit in the gaps.
  absl::StatusOr<HostSlot> small = vmm_->AllocHost(3 * kMiB);
  ASSERT_TRUE(small.ok());
  EXPECT_EQ(backend_.registered().size(), 3u);
  VmmStats st = vmm_->Stats();
  EXPECT_EQ(st.host_slots, 5u);
  EXPECT_EQ(st.host_arenas, 3u);
  // Trimming gives back only empty arenas.
  ASSERT_TRUE(vmm_->FreeHost(*big).ok());
  EXPECT_EQ(vmm_->TrimHostPool(), 12 * kMiB);
  EXPECT_EQ(backend_.calls(Call::kHostUnregister), 1);
  EXPECT_EQ(vmm_->Stats().host_registered, 16 * kMiB);
  for (HostSlot s : {*b, *c, *d, *small}) ASSERT_TRUE(vmm_->FreeHost(s).ok());
  EXPECT_EQ(vmm_->TrimHostPool(), 16 * kMiB);
  EXPECT_EQ(vmm_->Stats().host_registered, 0u);
}

TEST_F(VmmTest, HostPoolRegistrationFailureChangesNothing) {
  backend_.Fail(Call::kHostRegister, 0, CUDA_ERROR_OUT_OF_MEMORY);
  absl::StatusOr<HostSlot> a = vmm_->AllocHost(kMiB);
  EXPECT_EQ(a.status().code(), absl::StatusCode::kResourceExhausted) << a.status();
  VmmStats st = vmm_->Stats();
  EXPECT_EQ(st.host_registered, 0u);
  EXPECT_EQ(st.host_arenas, 0u);
  EXPECT_EQ(st.host_slots, 0u);
  EXPECT_TRUE(vmm_->AllocHost(kMiB).ok());
}

TEST_F(VmmTest, GrowHostPoolRegistersAheadOfNeed) {
  ASSERT_TRUE(vmm_->GrowHostPool(20 * kMiB).ok());
  EXPECT_EQ(backend_.registered(), (std::vector<uint64_t>{8 * kMiB, 8 * kMiB, 4 * kMiB}));
  EXPECT_TRUE(vmm_->GrowHostPool(10 * kMiB).ok());  // already there
  EXPECT_EQ(backend_.registered().size(), 3u);
  EXPECT_EQ(vmm_->GrowHostPool(64 * kMiB).code(), absl::StatusCode::kResourceExhausted);
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(vmm_->AllocHost(4 * kMiB).ok());
  EXPECT_LE(backend_.registered().size(), 4u);
}

// Copies of different handles from several threads at once: each gets a
// stream of its own and every round trip is exact.
TEST_F(VmmTest, ConcurrentRoundTrips) {
  constexpr int kThreads = 4;
  constexpr int kRounds = 10;
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int r = 0; r < kRounds; ++r) {
        const std::vector<uint8_t> bytes = Pattern(t * 1000 + r, kG);
        absl::StatusOr<PhysHandle> h = vmm_->Create(kG);
        absl::StatusOr<HostSlot> s = vmm_->AllocHost(kG);
        if (!h.ok() || !s.ok() || !vmm_->Write(*h, 0, bytes).ok() ||
            !vmm_->CopyToHost(*h, *s, kG).ok() || !vmm_->Release(*h).ok()) {
          ++failures;
          continue;
        }
        absl::StatusOr<PhysHandle> h2 = vmm_->Create(kG);
        std::vector<uint8_t> back(kG);
        if (!h2.ok() || !vmm_->CopyFromHost(*s, *h2, kG).ok() || !vmm_->Read(*h2, 0, back).ok() ||
            back != bytes || !vmm_->Release(*h2).ok() || !vmm_->FreeHost(*s).ok()) {
          ++failures;
        }
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
  VmmStats st = vmm_->Stats();
  EXPECT_EQ(st.handles, 0u);
  EXPECT_EQ(st.host_slots, 0u);
  EXPECT_GE(st.streams, 1u);
  EXPECT_LE(st.streams, static_cast<size_t>(kThreads));
  EXPECT_EQ(st.bytes_to_host, kThreads * kRounds * kG);
}

TEST_F(VmmTest, AbandonForgetsDeviceObjectsButKeepsHostBytes) {
  absl::StatusOr<uint64_t> base = vmm_->ReserveAddress(16 * kMiB, 0);
  ASSERT_TRUE(base.ok());
  const PhysHandle h = NewHandle(kG, 21);
  ASSERT_TRUE(vmm_->Map(*base, kG, h, Access::kReadWrite).ok());
  absl::StatusOr<HostSlot> s = vmm_->AllocHost(kG);
  ASSERT_TRUE(s.ok());
  ASSERT_TRUE(vmm_->CopyToHost(h, *s, kG).ok());
  ASSERT_TRUE(backend_.ResetContext().ok());  // the device objects die here
  vmm_->Abandon();
  const int device_calls = backend_.device_calls();
  EXPECT_EQ(vmm_->Create(kG).status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(vmm_->Unmap(*base, kG).code(), absl::StatusCode::kFailedPrecondition);
  absl::StatusOr<uint8_t*> host = vmm_->SlotAddress(*s);
  ASSERT_TRUE(host.ok());
  EXPECT_EQ(std::vector<uint8_t>(*host, *host + kG), Pattern(21, kG));
  vmm_.reset();
  EXPECT_EQ(backend_.device_calls(), device_calls);  // no stale handle reached the driver
}

// memory::MemoryManager on VmmPhysicalMemory: two tenants on a device that
// holds one of them take turns; every byte survives at the same pointers.
TEST(VmmMemoryManagerTest, TenantsSwapThroughTheHostPool) {
  constexpr uint64_t kChunk = 2 * kG;
  constexpr uint64_t kPhysical = 8 * kG;  // 16 MiB of "VRAM"
  constexpr uint64_t kAlloc = 3 * kChunk;
  FlakyBackend backend(kPhysical);
  auto vmm = VmmPhysicalMemory::Open(&backend, SmallOptions());
  ASSERT_TRUE(vmm.ok());
  memory::MemoryManagerOptions o;
  o.layout = {.granularity = (*vmm)->granularity(),
              .chunk_bytes = kChunk,
              .small_max_bytes = kMiB,
              .small_chunk_bytes = kG,
              .small_alignment = 256,
              .client_va_bytes = 64 * kMiB};
  o.overcommit = {.physical_bytes = kPhysical, .overcommit_percent = 100};
  o.swap = {.idle_threshold = absl::Milliseconds(500)};
  absl::Time now = absl::UnixEpoch() + absl::Hours(1);
  memory::MemoryManager mgr(o, vmm->get(), [&now] { return now; });

  // What each tenant's program wrote, by address.
  std::map<memory::ClientId, std::pair<uint64_t, std::vector<uint8_t>>> tenants;
  auto write_all = [&](memory::ClientId c) {
    auto& [va, shadow] = tenants[c];
    // Through the client's own addresses, one chunk (mapping) at a time.
    for (uint64_t off = 0; off < kAlloc; off += kChunk) {
      ASSERT_TRUE(backend.MemcpyHtoD(va + off, shadow.data() + off, kChunk, 0, false).ok());
    }
  };
  auto check_all = [&](memory::ClientId c) {
    auto& [va, shadow] = tenants[c];
    std::vector<uint8_t> out(kAlloc);
    for (uint64_t off = 0; off < kAlloc; off += kChunk) {
      ASSERT_TRUE(backend.MemcpyDtoH(out.data() + off, va + off, kChunk, 0, false).ok());
    }
    EXPECT_EQ(out, shadow) << "tenant " << c;
  };

  for (memory::ClientId c : {1, 2}) {
    ASSERT_TRUE(mgr.AddClient(c).ok());
    absl::StatusOr<memory::Allocation> a = mgr.Allocate(c, kAlloc);
    ASSERT_TRUE(a.ok()) << a.status();
    tenants[c] = {a->va, Pattern(c, kAlloc)};
    ASSERT_TRUE(mgr.BeginKernel(c).ok());
    write_all(c);
    mgr.EndCommand(c);
    now += absl::Seconds(1);
  }
  // 12 chunks admitted on 8 chunks of device memory: tenant 1 (idle
  // longest) was swapped out to make room for tenant 2.
  EXPECT_GT(mgr.Usage(1).swapped_out, 0u);
  EXPECT_EQ(mgr.Usage(2).swapped_out, 0u);

  for (int turn = 0; turn < 4; ++turn) {
    const memory::ClientId c = 1 + turn % 2;
    now += absl::Seconds(1);
    absl::Status s = mgr.BeginKernel(c);
    ASSERT_TRUE(s.ok()) << s;
    EXPECT_EQ(mgr.Usage(c).swapped_out, 0u);
    check_all(c);
    // The program changes its memory a little.
    auto& shadow = tenants[c].second;
    shadow[turn * 1000 + 5] ^= 0x5A;
    write_all(c);
    mgr.EndCommand(c);
  }
  const memory::NodeUsage n = mgr.Node();
  EXPECT_GT(n.swap_in_bytes, 0u);
  EXPECT_GT(n.swap_out_bytes, 0u);
  EXPECT_LE(n.physical_used, kPhysical);
  const VmmStats st = (*vmm)->Stats();
  EXPECT_EQ(st.bytes_to_host, n.swap_out_bytes);
  EXPECT_EQ(st.bytes_from_host, n.swap_in_bytes);
  EXPECT_EQ(st.device_bytes, n.physical_used);
  EXPECT_EQ(st.host_slot_bytes, n.host_pool_used);

  ASSERT_TRUE(mgr.RemoveClient(1).ok());
  ASSERT_TRUE(mgr.RemoveClient(2).ok());
  EXPECT_EQ((*vmm)->Stats().handles, 0u);
  EXPECT_EQ((*vmm)->Stats().mappings, 0u);
  EXPECT_EQ((*vmm)->Stats().reservations, 0u);
  EXPECT_EQ((*vmm)->Stats().host_slots, 0u);
}

}  // namespace
}  // namespace wooly::server
