// VmmPhysicalMemory (server/vmm_physical_memory.h) on the real CudaBackend
// (label gpu; every test skips without a GPU): the round trips of
// tests/unit/server_vmm_memory_test.cc with real cuMemCreate/cuMemMap memory
// and a registered host pool. A client's mapping must alias the handle's
// bytes, a swap-out/swap-in through pinned slots must be byte-exact at the
// same device addresses, and read-only mappings must get PROT_READ or be
// reported as a fallback. No timing here: bench/swap_bench.cc measures.
#include <cuda.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "wooly/server/cu_status.h"
#include "wooly/server/cuda_backend.h"
#include "wooly/server/vmm_physical_memory.h"

namespace wooly::server {
namespace {

using memory::Access;
using memory::HostSlot;
using memory::PhysHandle;

constexpr uint64_t kMiB = uint64_t{1} << 20;

// One backend for the whole binary, as in woolyd (never destroyed).
absl::StatusOr<std::unique_ptr<GpuBackend>>& SharedBackend() {
  static auto* backend = new absl::StatusOr<std::unique_ptr<GpuBackend>>(CreateCudaBackend(0));
  return *backend;
}

// Cheap to generate for GiBs, different for every seed and offset.
std::vector<uint8_t> Pattern(uint64_t seed, uint64_t n) {
  std::vector<uint8_t> v(n);
  uint64_t x = 0x9E3779B97F4A7C15ull * (seed + 1);
  for (uint64_t i = 0; i < n; i += 8) {
    x += 0x9E3779B97F4A7C15ull;
    uint64_t z = x;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    for (uint64_t k = 0; k < 8 && i + k < n; ++k) v[i + k] = static_cast<uint8_t>(z >> (8 * k));
  }
  return v;
}

class VmmGpuTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto& b = SharedBackend();
    if (!b.ok()) GTEST_SKIP() << "no usable GPU: " << b.status();
    backend_ = b->get();
    ASSERT_TRUE(backend_->BindThread().ok());
    VmmOptions o;
    o.host_arena_bytes = 256 * kMiB;
    o.host_pool_max_bytes = uint64_t{4} << 30;
    auto v = VmmPhysicalMemory::Open(backend_, o);
    ASSERT_TRUE(v.ok()) << v.status();
    vmm_ = std::move(*v);
  }

  std::vector<uint8_t> AtVa(uint64_t va, uint64_t bytes) {
    std::vector<uint8_t> out(bytes);
    absl::Status s = backend_->MemcpyDtoH(out.data(), va, bytes, 0, false);
    EXPECT_TRUE(s.ok()) << s;
    return out;
  }

  GpuBackend* backend_ = nullptr;
  std::unique_ptr<VmmPhysicalMemory> vmm_;
};

TEST_F(VmmGpuTest, GranularityIsAPowerOfTwo) {
  const uint64_t g = vmm_->granularity();
  EXPECT_GT(g, 0u);
  EXPECT_EQ(g & (g - 1), 0u);
  EXPECT_EQ((64 * kMiB) % g, 0u);
  std::printf("[ INFO     ] VMM granularity: %llu bytes\n", static_cast<unsigned long long>(g));
}

// 1 GiB in 64 MiB chunks: written, mapped, swapped out to pinned slots, the
// handles released, swapped back into new handles mapped at the same
// addresses, and compared byte for byte, through the client's addresses and
// through the handles.
TEST_F(VmmGpuTest, SwapRoundTripIsByteExactAtTheSameAddresses) {
  constexpr uint64_t kChunk = 64 * kMiB;
  constexpr int kChunks = 16;
  absl::StatusOr<uint64_t> base = vmm_->ReserveAddress(kChunks * kChunk, 0);
  ASSERT_TRUE(base.ok()) << base.status();
  std::vector<PhysHandle> handles(kChunks);
  std::vector<HostSlot> slots(kChunks);
  for (int i = 0; i < kChunks; ++i) {
    absl::StatusOr<PhysHandle> h = vmm_->Create(kChunk);
    ASSERT_TRUE(h.ok()) << h.status();
    handles[i] = *h;
    ASSERT_TRUE(vmm_->Write(*h, 0, Pattern(i, kChunk)).ok());
    ASSERT_TRUE(vmm_->Map(*base + i * kChunk, kChunk, *h, Access::kReadWrite).ok());
  }
  // The client's addresses alias the handles (one copy across all chunks).
  std::vector<uint8_t> all(kChunks * kChunk);
  ASSERT_TRUE(backend_->MemcpyDtoH(all.data(), *base, all.size(), 0, false).ok());
  for (int i = 0; i < kChunks; ++i) {
    ASSERT_EQ(std::vector<uint8_t>(all.begin() + i * kChunk, all.begin() + (i + 1) * kChunk),
              Pattern(i, kChunk))
        << "chunk " << i;
  }
  // A program writes through its pointer, across a chunk boundary.
  std::vector<uint8_t> poke = Pattern(99, 8192);
  const uint64_t poke_at = 3 * kChunk - 4096;
  ASSERT_TRUE(backend_->MemcpyHtoD(*base + poke_at, poke.data(), poke.size(), 0, false).ok());
  std::copy(poke.begin(), poke.end(), all.begin() + poke_at);

  // Swap out.
  for (int i = 0; i < kChunks; ++i) {
    absl::StatusOr<HostSlot> s = vmm_->AllocHost(kChunk);
    ASSERT_TRUE(s.ok()) << s.status();
    slots[i] = *s;
    ASSERT_TRUE(vmm_->CopyToHost(handles[i], *s, kChunk).ok());
    ASSERT_TRUE(vmm_->Unmap(*base + i * kChunk, kChunk).ok());
    ASSERT_TRUE(vmm_->Release(handles[i]).ok());
    absl::StatusOr<uint8_t*> host = vmm_->SlotAddress(*s);
    ASSERT_TRUE(host.ok());
    ASSERT_EQ(0, std::memcmp(*host, all.data() + i * kChunk, kChunk)) << "slot " << i;
  }
  // Swap in, to new handles, in the opposite order.
  for (int i = kChunks - 1; i >= 0; --i) {
    absl::StatusOr<PhysHandle> h = vmm_->Create(kChunk);
    ASSERT_TRUE(h.ok()) << h.status();
    EXPECT_NE(*h, handles[i]);
    handles[i] = *h;
    ASSERT_TRUE(vmm_->CopyFromHost(slots[i], *h, kChunk).ok());
    ASSERT_TRUE(vmm_->Map(*base + i * kChunk, kChunk, *h, Access::kReadWrite).ok());
    ASSERT_TRUE(vmm_->FreeHost(slots[i]).ok());
  }
  std::vector<uint8_t> back(all.size());
  ASSERT_TRUE(backend_->MemcpyDtoH(back.data(), *base, back.size(), 0, false).ok());
  EXPECT_TRUE(back == all);
  std::vector<uint8_t> chunk(kChunk);
  ASSERT_TRUE(vmm_->Read(handles[2], 0, chunk).ok());
  EXPECT_EQ(0, std::memcmp(chunk.data(), all.data() + 2 * kChunk, kChunk));

  for (int i = 0; i < kChunks; ++i) {
    ASSERT_TRUE(vmm_->Unmap(*base + i * kChunk, kChunk).ok());
    ASSERT_TRUE(vmm_->Release(handles[i]).ok());
  }
  ASSERT_TRUE(vmm_->FreeAddress(*base, kChunks * kChunk).ok());
  const VmmStats st = vmm_->Stats();
  EXPECT_EQ(st.handles, 0u);
  EXPECT_EQ(st.bytes_to_host, kChunks * kChunk);
  EXPECT_EQ(st.bytes_from_host, kChunks * kChunk);
}

TEST_F(VmmGpuTest, CopyDeviceAndOffsetReadsAndWrites) {
  const uint64_t bytes = 2 * vmm_->granularity();
  absl::StatusOr<PhysHandle> a = vmm_->Create(bytes);
  absl::StatusOr<PhysHandle> b = vmm_->Create(bytes);
  ASSERT_TRUE(a.ok() && b.ok());
  std::vector<uint8_t> shadow = Pattern(5, bytes);
  ASSERT_TRUE(vmm_->Write(*a, 0, shadow).ok());
  for (uint64_t off : {uint64_t{1}, uint64_t{4095}, bytes / 2 - 3, bytes - 17}) {
    std::vector<uint8_t> p = Pattern(off, 17);
    ASSERT_TRUE(vmm_->Write(*a, off, p).ok());
    std::copy(p.begin(), p.end(), shadow.begin() + static_cast<long>(off));
    std::vector<uint8_t> r(17);
    ASSERT_TRUE(vmm_->Read(*a, off, r).ok());
    EXPECT_EQ(r, p) << off;
  }
  ASSERT_TRUE(vmm_->CopyDevice(*a, *b, bytes).ok());
  std::vector<uint8_t> out(bytes);
  ASSERT_TRUE(vmm_->Read(*b, 0, out).ok());
  EXPECT_TRUE(out == shadow);
  ASSERT_TRUE(vmm_->Release(*a).ok());
  ASSERT_TRUE(vmm_->Release(*b).ok());
}

// What a deduplicated chunk gets: CU_MEM_ACCESS_FLAGS_PROT_READ where the
// driver allows it (reads still work), else a counted read-write fallback.
TEST_F(VmmGpuTest, ReadOnlyMappings) {
  const uint64_t bytes = vmm_->granularity();
  absl::StatusOr<uint64_t> base = vmm_->ReserveAddress(2 * bytes, 0);
  ASSERT_TRUE(base.ok());
  absl::StatusOr<PhysHandle> h = vmm_->Create(bytes);
  ASSERT_TRUE(h.ok());
  const std::vector<uint8_t> p = Pattern(8, bytes);
  ASSERT_TRUE(vmm_->Write(*h, 0, p).ok());
  ASSERT_TRUE(vmm_->Map(*base, bytes, *h, Access::kReadOnly).ok());
  ASSERT_TRUE(vmm_->Map(*base + bytes, bytes, *h, Access::kReadWrite).ok());
  absl::StatusOr<uint64_t> ro = backend_->MemGetAccess(CU_MEM_LOCATION_TYPE_DEVICE, 0, *base);
  absl::StatusOr<uint64_t> rw =
      backend_->MemGetAccess(CU_MEM_LOCATION_TYPE_DEVICE, 0, *base + bytes);
  ASSERT_TRUE(ro.ok()) << ro.status();
  ASSERT_TRUE(rw.ok()) << rw.status();
  EXPECT_EQ(*rw, uint64_t{CU_MEM_ACCESS_FLAGS_PROT_READWRITE});
  const bool fell_back = vmm_->Stats().read_only_fallbacks > 0;
  std::printf("[ INFO     ] read-only device mappings: %s\n",
              fell_back ? "REFUSED by this driver (mapped read-write instead)" : "supported");
  RecordProperty("read_only_supported", fell_back ? "no" : "yes");
  if (fell_back) {
    EXPECT_EQ(*ro, uint64_t{CU_MEM_ACCESS_FLAGS_PROT_READWRITE});
    EXPECT_EQ(*vmm_->EffectiveAccess(*base), Access::kReadWrite);
  } else {
    EXPECT_EQ(*ro, uint64_t{CU_MEM_ACCESS_FLAGS_PROT_READ});
    EXPECT_EQ(*vmm_->EffectiveAccess(*base), Access::kReadOnly);
  }
  // Reads through both mappings see the handle.
  EXPECT_TRUE(AtVa(*base, bytes) == p);
  EXPECT_TRUE(AtVa(*base + bytes, bytes) == p);
  ASSERT_TRUE(vmm_->Unmap(*base, bytes).ok());
  ASSERT_TRUE(vmm_->Unmap(*base + bytes, bytes).ok());
  ASSERT_TRUE(vmm_->Release(*h).ok());
  ASSERT_TRUE(vmm_->FreeAddress(*base, 2 * bytes).ok());
}

TEST_F(VmmGpuTest, PinnedHostPoolReusesSlotsAndArenas) {
  absl::StatusOr<HostSlot> a = vmm_->AllocHost(64 * kMiB);
  ASSERT_TRUE(a.ok()) << a.status();
  uint8_t* a_ptr = *vmm_->SlotAddress(*a);
  ASSERT_TRUE(vmm_->FreeHost(*a).ok());
  absl::StatusOr<HostSlot> b = vmm_->AllocHost(64 * kMiB);
  ASSERT_TRUE(b.ok());
  EXPECT_NE(*a, *b);
  EXPECT_EQ(*vmm_->SlotAddress(*b), a_ptr);
  VmmStats st = vmm_->Stats();
  EXPECT_EQ(st.host_arenas, 1u);
  EXPECT_EQ(st.host_registered, 256 * kMiB);
  // A slot of the pool really is DMA-able: a registered copy into it.
  absl::StatusOr<PhysHandle> h = vmm_->Create(64 * kMiB);
  ASSERT_TRUE(h.ok());
  ASSERT_TRUE(vmm_->Write(*h, 0, Pattern(3, 64 * kMiB)).ok());
  ASSERT_TRUE(vmm_->CopyToHost(*h, *b, 64 * kMiB).ok());
  const std::vector<uint8_t> p = Pattern(3, 64 * kMiB);
  EXPECT_EQ(0, std::memcmp(*vmm_->SlotAddress(*b), p.data(), p.size()));
  ASSERT_TRUE(vmm_->Release(*h).ok());
  ASSERT_TRUE(vmm_->FreeHost(*b).ok());
  EXPECT_EQ(vmm_->TrimHostPool(), 256 * kMiB);
}

// The destructor gives everything back to the driver.
TEST_F(VmmGpuTest, DestructionReleasesDeviceMemory) {
  absl::StatusOr<MemInfo> before = backend_->MemGetInfo();
  ASSERT_TRUE(before.ok());
  {
    absl::StatusOr<uint64_t> base = vmm_->ReserveAddress(512 * kMiB, 0);
    ASSERT_TRUE(base.ok());
    for (int i = 0; i < 8; ++i) {
      absl::StatusOr<PhysHandle> h = vmm_->Create(64 * kMiB);
      ASSERT_TRUE(h.ok());
      ASSERT_TRUE(vmm_->Map(*base + i * 64 * kMiB, 64 * kMiB, *h, Access::kReadWrite).ok());
    }
    absl::StatusOr<MemInfo> during = backend_->MemGetInfo();
    ASSERT_TRUE(during.ok());
    EXPECT_LE(during->free + 512 * kMiB, before->free + 64 * kMiB);  // it was taken
  }
  vmm_.reset();
  absl::StatusOr<MemInfo> after = backend_->MemGetInfo();
  ASSERT_TRUE(after.ok());
  EXPECT_GE(after->free + 64 * kMiB, before->free);  // and given back
}

// What a kernel store into deduplicated memory does (docs/memory.md): woolyd
// maps shared chunks read-only, and kernels are not interposed. This test
// stores through a read-only mapping from a kernel and expects the launch's
// error. It is LAST in this file on purpose: the fault is sticky for the
// process's context, as it would be for woolyd's one shared context, so
// nothing may run after it (scripts/gpu-suite.sh runs this binary whole).
TEST_F(VmmGpuTest, ZzKernelStoreIntoAReadOnlyMappingFaults) {
  const uint64_t bytes = vmm_->granularity();
  absl::StatusOr<uint64_t> base = vmm_->ReserveAddress(bytes, 0);
  ASSERT_TRUE(base.ok());
  absl::StatusOr<PhysHandle> h = vmm_->Create(bytes);
  ASSERT_TRUE(h.ok());
  const std::vector<uint8_t> p = Pattern(9, bytes);
  ASSERT_TRUE(vmm_->Write(*h, 0, p).ok());
  ASSERT_TRUE(vmm_->Map(*base, bytes, *h, Access::kReadOnly).ok());
  if (*vmm_->EffectiveAccess(*base) != Access::kReadOnly) {
    GTEST_SKIP() << "this driver refuses read-only mappings";
  }
  // One thread stores a word through its pointer argument.
  static const char kPtx[] =
      ".version 7.0\n.target sm_70\n.address_size 64\n"
      ".visible .entry wooly_store(.param .u64 p) {\n"
      "  .reg .b64 %rd<2>;\n  .reg .b32 %r<2>;\n"
      "  ld.param.u64 %rd1, [p];\n  cvta.to.global.u64 %rd1, %rd1;\n"
      "  mov.u32 %r1, 42;\n  st.global.u32 [%rd1], %r1;\n  ret;\n}\n";
  absl::StatusOr<Handle> module = backend_->ModuleLoadData(
      absl::Span<const uint8_t>(reinterpret_cast<const uint8_t*>(kPtx), sizeof(kPtx)));
  ASSERT_TRUE(module.ok()) << module.status();
  absl::StatusOr<Handle> fn = backend_->ModuleGetFunction(*module, "wooly_store");
  ASSERT_TRUE(fn.ok()) << fn.status();
  uint8_t args[8];
  std::memcpy(args, &*base, sizeof(args));
  LaunchConfig config;
  const absl::Status launched = backend_->LaunchKernel(*fn, config, args);
  const absl::Status done = launched.ok() ? backend_->CtxSynchronize() : launched;
  const std::string what =
      absl::StrCat("CUresult ", static_cast<int>(ToCuResult(done)), ": ", done.ToString());
  std::printf("[ INFO     ] kernel store into a read-only mapping: %s\n", what.c_str());
  RecordProperty("read_only_store_result", what);
  EXPECT_FALSE(done.ok()) << "the store went through a read-only mapping";
}

}  // namespace
}  // namespace wooly::server
