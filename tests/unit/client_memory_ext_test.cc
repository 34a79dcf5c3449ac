// libwooly's memory extensions: the host allocation table and pointer
// attributes from the client's own records, then the driver API end to end
// (pinned memory, pools and the stream-ordered allocator, VMM, occupancy with
// its cache, limits, tensor maps) against an in-process woolyd on the fake
// backend.
#include <cuda.h>
#include <gtest/gtest.h>
#include <sys/mman.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <numeric>
#include <vector>

#include "absl/status/status.h"
#include "driver.h"
#include "host_alloc_table.h"
#include "log.h"
#include "memory_ext.h"
#include "wooly/fake/fake_backend.h"
#include "wooly/server/server.h"

namespace wooly::client {
namespace {

constexpr uint64_t kGranularity = 2u << 20;

// --------------------------------------------------------- host alloc table

TEST(HostAllocTableTest, InsertFindRemove) {
  HostAllocTable t;
  HostAllocTable::Record a;
  a.base = 0x10000;
  a.size = 0x1000;
  a.flags = CU_MEMHOSTALLOC_PORTABLE;
  ASSERT_TRUE(t.Insert(a));
  HostAllocTable::Record r = a;
  r.base = 0x20000;
  r.size = 0x10;
  r.kind = HostAllocTable::Kind::kRegistered;
  ASSERT_TRUE(t.Insert(r));
  HostAllocTable::Record overlap = a;
  overlap.base = 0x10fff;
  EXPECT_FALSE(t.Insert(overlap));
  overlap.base = 0xff00;
  overlap.size = 0x101;
  EXPECT_FALSE(t.Insert(overlap));
  overlap.size = 0;
  EXPECT_FALSE(t.Insert(overlap));

  HostAllocTable::Record found;
  ASSERT_TRUE(t.Find(0x10800, &found));
  EXPECT_EQ(found.base, 0x10000u);
  EXPECT_EQ(found.flags, unsigned{CU_MEMHOSTALLOC_PORTABLE});
  EXPECT_NE(found.buffer_id, 0u);
  HostAllocTable::Record second;
  ASSERT_TRUE(t.Find(0x20000, &second));
  EXPECT_NE(second.buffer_id, found.buffer_id);
  EXPECT_FALSE(t.Find(0x11000, nullptr));
  EXPECT_FALSE(t.Find(0x20010, nullptr));
  // Kinds do not mix: cuMemFreeHost cannot unregister, and the reverse.
  EXPECT_FALSE(t.Remove(0x20000, HostAllocTable::Kind::kAlloc));
  EXPECT_FALSE(t.Remove(0x10000, HostAllocTable::Kind::kRegistered));
  EXPECT_FALSE(t.Remove(0x10800, HostAllocTable::Kind::kAlloc));  // not the base
  EXPECT_TRUE(t.Remove(0x10000, HostAllocTable::Kind::kAlloc));
  EXPECT_EQ(t.size(), 1u);
}

// ------------------------------------------------------- pointer attributes

template <typename T>
T Attr(const PointerInfo& info, uint64_t ptr, CUpointer_attribute a, bool lenient = false,
       CUresult expect = CUDA_SUCCESS) {
  T v{};
  EXPECT_EQ(WritePointerAttribute(info, ptr, a, &v, lenient), expect) << "attribute " << a;
  return v;
}

class PointerAttributesTest : public ::testing::Test {
 protected:
  AllocTable device_{/*reserve_address_space=*/false};
  MemoryExtRecords ext_;
  HostAllocTable host_;
  int ctx_object_ = 0;  // stands for a Context*: only its address matters
  int fallback_object_ = 0;
  CUcontext ctx() { return reinterpret_cast<CUcontext>(&ctx_object_); }
  CUcontext fallback() { return reinterpret_cast<CUcontext>(&fallback_object_); }
  PointerInfo Look(uint64_t p) { return LookupPointer(p, device_, ext_, host_, fallback()); }
};

TEST_F(PointerAttributesTest, DeviceAllocation) {
  device_.Insert(0x100000, 4096, AllocTable::Kind::kAlloc, &ctx_object_);
  const PointerInfo info = Look(0x100010);
  ASSERT_EQ(info.type, PointerInfo::Type::kDevice);
  EXPECT_EQ(Attr<CUcontext>(info, 0x100010, CU_POINTER_ATTRIBUTE_CONTEXT), ctx());
  EXPECT_EQ(Attr<unsigned>(info, 0x100010, CU_POINTER_ATTRIBUTE_MEMORY_TYPE),
            unsigned{CU_MEMORYTYPE_DEVICE});
  EXPECT_EQ(Attr<CUdeviceptr>(info, 0x100010, CU_POINTER_ATTRIBUTE_DEVICE_POINTER), 0x100010u);
  // No host address for device memory: an error alone, NULL among others.
  Attr<void*>(info, 0x100010, CU_POINTER_ATTRIBUTE_HOST_POINTER, false, CUDA_ERROR_INVALID_VALUE);
  EXPECT_EQ(Attr<void*>(info, 0x100010, CU_POINTER_ATTRIBUTE_HOST_POINTER, true), nullptr);
  EXPECT_EQ(Attr<CUdeviceptr>(info, 0x100010, CU_POINTER_ATTRIBUTE_RANGE_START_ADDR), 0x100000u);
  EXPECT_EQ(Attr<size_t>(info, 0x100010, CU_POINTER_ATTRIBUTE_RANGE_SIZE), 4096u);
  EXPECT_EQ(Attr<int>(info, 0x100010, CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL), 0);
  EXPECT_EQ(Attr<unsigned>(info, 0x100010, CU_POINTER_ATTRIBUTE_IS_MANAGED), 0u);
  EXPECT_EQ(Attr<unsigned>(info, 0x100010, CU_POINTER_ATTRIBUTE_MAPPED), 1u);
  EXPECT_EQ(Attr<unsigned>(info, 0x100010, CU_POINTER_ATTRIBUTE_ACCESS_FLAGS),
            unsigned{CU_POINTER_ATTRIBUTE_ACCESS_FLAG_READWRITE});
  EXPECT_EQ(Attr<CUmemoryPool>(info, 0x100010, CU_POINTER_ATTRIBUTE_MEMPOOL_HANDLE), nullptr);
  EXPECT_EQ(Attr<unsigned>(info, 0x100010, CU_POINTER_ATTRIBUTE_IS_LEGACY_CUDA_IPC_CAPABLE), 1u);
  const auto id = Attr<unsigned long long>(info, 0x100010, CU_POINTER_ATTRIBUTE_BUFFER_ID);
  EXPECT_NE(id, 0u);
  // A new allocation at the same address gets a new buffer id.
  device_.Remove(0x100000);
  device_.Insert(0x100000, 4096, AllocTable::Kind::kAlloc, &ctx_object_);
  EXPECT_NE(Attr<unsigned long long>(Look(0x100000), 0x100000, CU_POINTER_ATTRIBUTE_BUFFER_ID), id);
  // Boolean attributes are 4 bytes wide, like the driver's.
  unsigned char wide[8];
  std::memset(wide, 0xee, sizeof(wide));
  ASSERT_EQ(WritePointerAttribute(info, 0x100010, CU_POINTER_ATTRIBUTE_MAPPED, wide, false),
            CUDA_SUCCESS);
  EXPECT_EQ(wide[4], 0xee);
  EXPECT_EQ(wide[3], 0);
}

TEST_F(PointerAttributesTest, PoolAllocationKnowsItsPool) {
  MemPool pool;
  pool.id = 42;
  pool.handle_types = CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR;
  device_.Insert(0x200000, 512, AllocTable::Kind::kAlloc, &ctx_object_);
  AllocTable::Record rec;
  ASSERT_TRUE(device_.Find(0x200000, &rec));
  ext_.AddPoolAllocation(0x200000, rec.buffer_id, &pool);
  const PointerInfo info = Look(0x200100);
  EXPECT_EQ(Attr<CUmemoryPool>(info, 0x200100, CU_POINTER_ATTRIBUTE_MEMPOOL_HANDLE),
            reinterpret_cast<CUmemoryPool>(&pool));
  EXPECT_EQ(Attr<unsigned>(info, 0x200100, CU_POINTER_ATTRIBUTE_ALLOWED_HANDLE_TYPES),
            unsigned{CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR});
  EXPECT_EQ(Attr<unsigned>(info, 0x200100, CU_POINTER_ATTRIBUTE_IS_LEGACY_CUDA_IPC_CAPABLE), 0u);
  // Freed and reallocated at the same base by cuMemAlloc: no longer the pool's.
  device_.Remove(0x200000);
  device_.Insert(0x200000, 512, AllocTable::Kind::kAlloc, &ctx_object_);
  EXPECT_EQ(Attr<CUmemoryPool>(Look(0x200000), 0x200000, CU_POINTER_ATTRIBUTE_MEMPOOL_HANDLE),
            nullptr);
}

TEST_F(PointerAttributesTest, VmmMappingReportsReservationAndMapping) {
  ext_.AddReservation(0x40000000, 8 * kGranularity, /*reserve_locally=*/false);
  ext_.AddHandle(7, 2 * kGranularity, CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR, true);
  const uint64_t map_base = 0x40000000 + 2 * kGranularity;
  ext_.AddMapping(map_base, 2 * kGranularity, 7);
  device_.Insert(map_base, 2 * kGranularity, AllocTable::Kind::kAlloc, VmmOwner(), false);
  ext_.SetAccess(map_base, 2 * kGranularity, CU_MEM_ACCESS_FLAGS_PROT_READ);
  const uint64_t p = map_base + 100;
  const PointerInfo info = Look(p);
  ASSERT_EQ(info.type, PointerInfo::Type::kDevice);
  EXPECT_EQ(Attr<CUcontext>(info, p, CU_POINTER_ATTRIBUTE_CONTEXT), fallback());
  EXPECT_EQ(Attr<CUdeviceptr>(info, p, CU_POINTER_ATTRIBUTE_RANGE_START_ADDR), 0x40000000u);
  EXPECT_EQ(Attr<size_t>(info, p, CU_POINTER_ATTRIBUTE_RANGE_SIZE), 8 * kGranularity);
  EXPECT_EQ(Attr<void*>(info, p, CU_POINTER_ATTRIBUTE_MAPPING_BASE_ADDR),
            reinterpret_cast<void*>(map_base));
  EXPECT_EQ(Attr<size_t>(info, p, CU_POINTER_ATTRIBUTE_MAPPING_SIZE), 2 * kGranularity);
  EXPECT_EQ(Attr<unsigned>(info, p, CU_POINTER_ATTRIBUTE_ALLOWED_HANDLE_TYPES),
            unsigned{CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR});
  EXPECT_EQ(Attr<unsigned>(info, p, CU_POINTER_ATTRIBUTE_ACCESS_FLAGS),
            unsigned{CU_POINTER_ATTRIBUTE_ACCESS_FLAG_READ});
  EXPECT_EQ(Attr<unsigned>(info, p, CU_POINTER_ATTRIBUTE_IS_GPU_DIRECT_RDMA_CAPABLE), 1u);
  EXPECT_NE(Attr<unsigned long long>(info, p, CU_POINTER_ATTRIBUTE_MEMORY_BLOCK_ID), 0u);
  // Unmapped: gone from both tables.
  EXPECT_EQ(ext_.RemoveMappings(map_base, 2 * kGranularity), std::set<uint64_t>{map_base});
  device_.Remove(map_base);
  EXPECT_EQ(Look(p).type, PointerInfo::Type::kUnknown);
  EXPECT_EQ(ext_.mapping_count(), 0u);
}

TEST_F(PointerAttributesTest, PinnedAndRegisteredHostMemory) {
  HostAllocTable::Record pinned;
  pinned.base = 0x700000;
  pinned.size = 100;
  pinned.ctx = &ctx_object_;
  ASSERT_TRUE(host_.Insert(pinned));
  HostAllocTable::Record registered;
  registered.base = 0x800000;
  registered.size = 4096;
  registered.kind = HostAllocTable::Kind::kRegistered;
  registered.flags = CU_MEMHOSTREGISTER_READ_ONLY;
  ASSERT_TRUE(host_.Insert(registered));
  const PointerInfo info = Look(0x700040);
  ASSERT_EQ(info.type, PointerInfo::Type::kHost);
  EXPECT_EQ(Attr<unsigned>(info, 0x700040, CU_POINTER_ATTRIBUTE_MEMORY_TYPE),
            unsigned{CU_MEMORYTYPE_HOST});
  EXPECT_EQ(Attr<void*>(info, 0x700040, CU_POINTER_ATTRIBUTE_HOST_POINTER),
            reinterpret_cast<void*>(0x700040));
  // Unified addressing: the same address on the device.
  EXPECT_EQ(Attr<CUdeviceptr>(info, 0x700040, CU_POINTER_ATTRIBUTE_DEVICE_POINTER), 0x700040u);
  EXPECT_EQ(Attr<CUcontext>(info, 0x700040, CU_POINTER_ATTRIBUTE_CONTEXT), ctx());
  EXPECT_EQ(Attr<CUdeviceptr>(info, 0x700040, CU_POINTER_ATTRIBUTE_RANGE_START_ADDR), 0x700000u);
  EXPECT_EQ(Attr<size_t>(info, 0x700040, CU_POINTER_ATTRIBUTE_RANGE_SIZE), 100u);
  const PointerInfo ro = Look(0x800010);
  EXPECT_EQ(Attr<unsigned>(ro, 0x800010, CU_POINTER_ATTRIBUTE_ACCESS_FLAGS),
            unsigned{CU_POINTER_ATTRIBUTE_ACCESS_FLAG_READ});
  EXPECT_EQ(Attr<CUcontext>(ro, 0x800010, CU_POINTER_ATTRIBUTE_CONTEXT), fallback());
  // Device tables win over nothing: past the pinned range is unknown.
  EXPECT_EQ(Look(0x700064).type, PointerInfo::Type::kUnknown);
}

TEST_F(PointerAttributesTest, UnknownPointers) {
  const PointerInfo info = Look(0x12345678);
  ASSERT_EQ(info.type, PointerInfo::Type::kUnknown);
  // cuPointerGetAttribute: CUDA_ERROR_INVALID_VALUE.
  Attr<unsigned>(info, 0x12345678, CU_POINTER_ATTRIBUTE_MEMORY_TYPE, false,
                 CUDA_ERROR_INVALID_VALUE);
  Attr<CUdeviceptr>(info, 0x12345678, CU_POINTER_ATTRIBUTE_DEVICE_POINTER, false,
                    CUDA_ERROR_INVALID_VALUE);
  // cuPointerGetAttributes: success with null values (how cudart tells
  // unregistered host memory).
  unsigned type = 99;
  ASSERT_EQ(WritePointerAttribute(info, 0x12345678, CU_POINTER_ATTRIBUTE_MEMORY_TYPE, &type, true),
            CUDA_SUCCESS);
  EXPECT_EQ(type, 0u);
  EXPECT_EQ(Attr<CUcontext>(info, 0x12345678, CU_POINTER_ATTRIBUTE_CONTEXT, true), nullptr);
  EXPECT_EQ(Attr<unsigned>(info, 0x12345678, CU_POINTER_ATTRIBUTE_IS_MANAGED, true), 0u);
  EXPECT_EQ(Attr<int>(info, 0x12345678, CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL, true), -2);
  // Attributes the driver does not have are refused either way.
  Attr<unsigned>(info, 0x12345678, static_cast<CUpointer_attribute>(999), true,
                 CUDA_ERROR_INVALID_VALUE);
  Attr<unsigned>(info, 0x12345678, CU_POINTER_ATTRIBUTE_P2P_TOKENS, true, CUDA_ERROR_NOT_SUPPORTED);
}

// ------------------------------------------------ the API against a woolyd

// Counts the occupancy queries that reach the backend.
class CountingBackend : public fake::FakeBackend {
 public:
  using FakeBackend::FakeBackend;
  absl::StatusOr<int32_t> OccupancyMaxActiveBlocks(server::Handle function, int32_t block_size,
                                                   uint64_t dynamic_smem, uint32_t flags) override {
    occupancy_queries.fetch_add(1);
    return FakeBackend::OccupancyMaxActiveBlocks(function, block_size, dynamic_smem, flags);
  }
  std::atomic<int> occupancy_queries{0};
};

void RegisterKernels() {
  fake::FakeKernel k;
  k.name = "wooly_memext_fill";  // (uint32_t* p, uint32_t v, int n)
  k.params = {{0, 8}, {8, 4}, {12, 4}};
  k.run = [](const fake::FakeLaunch& l) -> absl::Status {
    uint64_t p = 0;
    uint32_t v = 0;
    int32_t n = 0;
    std::memcpy(&p, l.args.data(), 8);
    std::memcpy(&v, l.args.data() + 8, 4);
    std::memcpy(&n, l.args.data() + 12, 4);
    auto* data = static_cast<uint32_t*>(l.host(p, uint64_t(n) * 4));
    if (data == nullptr) return absl::InternalError("bad pointer");
    for (int32_t i = 0; i < n; ++i) data[i] = v;
    return absl::OkStatus();
  };
  fake::RegisterFakeKernel(k);
}

size_t SixtyFourBytesPerThread(int block) { return static_cast<size_t>(block) * 64; }

class ClientMemoryExtTest : public ::testing::Test {
 protected:
  void SetUp() override {
    SetLogLevelForTesting(LogLevel::kOff);
    RegisterKernels();
    ResetForTesting();
    ResetMemoryExtForTesting();
    char tmpl[] = "/tmp/wooly-memext-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    server::ServerOptions options;
    options.listen = {"unix:" + dir_ + "/woolyd.sock"};
    fake::FakeBackendOptions fake_options;
    fake_options.capacity_bytes = 1ull << 30;
    auto backend = std::make_unique<CountingBackend>(fake_options);
    fake_ = backend.get();
    absl::StatusOr<std::unique_ptr<server::Server>> s =
        server::Server::Start(options, std::move(backend));
    ASSERT_TRUE(s.ok()) << s.status();
    server_ = std::move(*s);
    ::setenv("WOOLY_SERVER", server_->listen_addresses()[0].c_str(), 1);
    ASSERT_EQ(cuInit(0), CUDA_SUCCESS);
    ASSERT_EQ(cuDevicePrimaryCtxRetain(&ctx_, 0), CUDA_SUCCESS);
    ASSERT_EQ(cuCtxSetCurrent(ctx_), CUDA_SUCCESS);
  }
  void TearDown() override {
    ResetForTesting();
    ResetMemoryExtForTesting();
    server_.reset();
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }

  CUfunction Fill() {
    const std::vector<uint8_t> image = fake::MakeFakeModuleImage({"wooly_memext_fill"});
    CUmodule m = nullptr;
    EXPECT_EQ(cuModuleLoadData(&m, image.data()), CUDA_SUCCESS);
    CUfunction f = nullptr;
    EXPECT_EQ(cuModuleGetFunction(&f, m, "wooly_memext_fill"), CUDA_SUCCESS);
    return f;
  }

  std::string dir_;
  CountingBackend* fake_ = nullptr;
  std::unique_ptr<server::Server> server_;
  CUcontext ctx_ = nullptr;
};

TEST_F(ClientMemoryExtTest, PinnedMemoryIsLocalAndCopiesLikeHostMemory) {
  void* pinned = nullptr;
  ASSERT_EQ(cuMemHostAlloc(&pinned, 1000, CU_MEMHOSTALLOC_PORTABLE), CUDA_SUCCESS);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(pinned) % 4096, 0u);
  unsigned flags = 0;
  ASSERT_EQ(cuMemHostGetFlags(&flags, static_cast<char*>(pinned) + 999), CUDA_SUCCESS);
  EXPECT_EQ(flags, unsigned{CU_MEMHOSTALLOC_PORTABLE});
  CUdeviceptr dev_view = 0;
  ASSERT_EQ(cuMemHostGetDevicePointer(&dev_view, static_cast<char*>(pinned) + 8, 0), CUDA_SUCCESS);
  EXPECT_EQ(dev_view, reinterpret_cast<CUdeviceptr>(pinned) + 8);
  EXPECT_EQ(cuMemHostGetDevicePointer(&dev_view, pinned, 1), CUDA_ERROR_INVALID_VALUE);
  EXPECT_EQ(cuMemHostAlloc(&pinned, 16, 0x80), CUDA_ERROR_INVALID_VALUE);

  // Copies: explicit and unified, both ways.
  auto* words = static_cast<uint32_t*>(pinned);
  std::iota(words, words + 250, 1u);
  CUdeviceptr d = 0;
  ASSERT_EQ(cuMemAlloc(&d, 1000), CUDA_SUCCESS);
  ASSERT_EQ(cuMemcpyHtoD(d, pinned, 1000), CUDA_SUCCESS);
  void* back = nullptr;
  ASSERT_EQ(cuMemAllocHost(&back, 1000), CUDA_SUCCESS);
  ASSERT_EQ(cuMemcpy(reinterpret_cast<CUdeviceptr>(back), d, 1000), CUDA_SUCCESS);
  EXPECT_EQ(std::memcmp(back, pinned, 1000), 0);
  ASSERT_EQ(cuMemHostGetFlags(&flags, back), CUDA_SUCCESS);
  // As the real driver reports it on the H100 (tests/programs/memory_ext).
  EXPECT_EQ(flags, unsigned{CU_MEMHOSTALLOC_PORTABLE | CU_MEMHOSTALLOC_DEVICEMAP});

  // Registered memory.
  std::vector<uint32_t> user(64, 7);
  ASSERT_EQ(cuMemHostRegister(user.data(), user.size() * 4, CU_MEMHOSTREGISTER_DEVICEMAP),
            CUDA_SUCCESS);
  EXPECT_EQ(cuMemHostRegister(user.data() + 1, 4, 0), CUDA_ERROR_HOST_MEMORY_ALREADY_REGISTERED);
  EXPECT_EQ(cuMemHostRegister(pinned, 4, 0), CUDA_ERROR_HOST_MEMORY_ALREADY_REGISTERED);
  unsigned type = 0;
  ASSERT_EQ(cuPointerGetAttribute(&type, CU_POINTER_ATTRIBUTE_MEMORY_TYPE,
                                  reinterpret_cast<CUdeviceptr>(user.data() + 3)),
            CUDA_SUCCESS);
  EXPECT_EQ(type, unsigned{CU_MEMORYTYPE_HOST});
  ASSERT_EQ(cuMemcpyHtoD(d, user.data(), 256), CUDA_SUCCESS);
  EXPECT_EQ(cuMemFreeHost(user.data()), CUDA_ERROR_INVALID_VALUE);  // registered, not allocated
  ASSERT_EQ(cuMemHostUnregister(user.data()), CUDA_SUCCESS);
  EXPECT_EQ(cuMemHostUnregister(user.data()), CUDA_ERROR_HOST_MEMORY_NOT_REGISTERED);
  EXPECT_EQ(cuPointerGetAttribute(&type, CU_POINTER_ATTRIBUTE_MEMORY_TYPE,
                                  reinterpret_cast<CUdeviceptr>(user.data())),
            CUDA_ERROR_INVALID_VALUE);

  ASSERT_EQ(cuMemFreeHost(pinned), CUDA_SUCCESS);
  EXPECT_EQ(cuMemFreeHost(pinned), CUDA_ERROR_INVALID_VALUE);
  ASSERT_EQ(cuMemFreeHost(back), CUDA_SUCCESS);
  ASSERT_EQ(cuMemFree(d), CUDA_SUCCESS);
}

TEST_F(ClientMemoryExtTest, PointerAttributesOfEveryKind) {
  CUdeviceptr d = 0;
  ASSERT_EQ(cuMemAlloc(&d, 4096), CUDA_SUCCESS);
  CUpointer_attribute attrs[] = {
      CU_POINTER_ATTRIBUTE_MEMORY_TYPE,    CU_POINTER_ATTRIBUTE_CONTEXT,
      CU_POINTER_ATTRIBUTE_DEVICE_POINTER, CU_POINTER_ATTRIBUTE_HOST_POINTER,
      CU_POINTER_ATTRIBUTE_IS_MANAGED,     CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL};
  unsigned type = 0, managed = 5;
  CUcontext ctx = nullptr;
  CUdeviceptr dev = 0;
  void* host = reinterpret_cast<void*>(1);
  int ordinal = 7;
  void* data[] = {&type, &ctx, &dev, &host, &managed, &ordinal};
  ASSERT_EQ(cuPointerGetAttributes(6, attrs, data, d + 8), CUDA_SUCCESS);
  EXPECT_EQ(type, unsigned{CU_MEMORYTYPE_DEVICE});
  EXPECT_EQ(ctx, ctx_);
  EXPECT_EQ(dev, d + 8);
  EXPECT_EQ(host, nullptr);
  EXPECT_EQ(managed, 0u);
  EXPECT_EQ(ordinal, 0);
  // Plain host memory: success and nulls (PyTorch's is_pinned depends on it).
  std::vector<char> plain(64);
  ASSERT_EQ(cuPointerGetAttributes(6, attrs, data, reinterpret_cast<CUdeviceptr>(plain.data())),
            CUDA_SUCCESS);
  EXPECT_EQ(type, 0u);
  EXPECT_EQ(ctx, nullptr);
  EXPECT_EQ(cuPointerGetAttribute(&type, CU_POINTER_ATTRIBUTE_MEMORY_TYPE,
                                  reinterpret_cast<CUdeviceptr>(plain.data())),
            CUDA_ERROR_INVALID_VALUE);
  // SYNC_MEMOPS can be set (and is recorded); nothing else can.
  const unsigned on = 1;
  ASSERT_EQ(cuPointerSetAttribute(&on, CU_POINTER_ATTRIBUTE_SYNC_MEMOPS, d), CUDA_SUCCESS);
  unsigned sync = 0;
  ASSERT_EQ(cuPointerGetAttribute(&sync, CU_POINTER_ATTRIBUTE_SYNC_MEMOPS, d + 100), CUDA_SUCCESS);
  EXPECT_EQ(sync, 1u);
  EXPECT_EQ(cuPointerSetAttribute(&on, CU_POINTER_ATTRIBUTE_IS_MANAGED, d),
            CUDA_ERROR_INVALID_VALUE);
  EXPECT_EQ(cuPointerSetAttribute(&on, CU_POINTER_ATTRIBUTE_SYNC_MEMOPS,
                                  reinterpret_cast<CUdeviceptr>(plain.data())),
            CUDA_ERROR_INVALID_VALUE);
  ASSERT_EQ(cuMemFree(d), CUDA_SUCCESS);
}

TEST_F(ClientMemoryExtTest, PoolsAndTheStreamOrderedAllocator) {
  CUmemoryPool def = nullptr, current = nullptr;
  ASSERT_EQ(cuDeviceGetDefaultMemPool(&def, 0), CUDA_SUCCESS);
  ASSERT_EQ(cuDeviceGetMemPool(&current, 0), CUDA_SUCCESS);
  EXPECT_EQ(def, current);
  EXPECT_EQ(cuDeviceGetDefaultMemPool(&def, 1), CUDA_ERROR_INVALID_DEVICE);
  cuuint64_t threshold = ~cuuint64_t{0};
  ASSERT_EQ(cuMemPoolSetAttribute(def, CU_MEMPOOL_ATTR_RELEASE_THRESHOLD, &threshold),
            CUDA_SUCCESS);
  threshold = 0;
  ASSERT_EQ(cuMemPoolGetAttribute(def, CU_MEMPOOL_ATTR_RELEASE_THRESHOLD, &threshold),
            CUDA_SUCCESS);
  EXPECT_EQ(threshold, ~cuuint64_t{0});
  int reuse = 0;
  ASSERT_EQ(cuMemPoolGetAttribute(def, CU_MEMPOOL_ATTR_REUSE_ALLOW_OPPORTUNISTIC, &reuse),
            CUDA_SUCCESS);
  EXPECT_EQ(reuse, 1);

  CUstream s = nullptr;
  ASSERT_EQ(cuStreamCreate(&s, CU_STREAM_NON_BLOCKING), CUDA_SUCCESS);
  CUdeviceptr p = 0;
  ASSERT_EQ(cuMemAllocAsync(&p, 1 << 16, s), CUDA_SUCCESS);
  CUmemoryPool from = nullptr;
  ASSERT_EQ(cuPointerGetAttribute(&from, CU_POINTER_ATTRIBUTE_MEMPOOL_HANDLE, p + 10),
            CUDA_SUCCESS);
  EXPECT_EQ(from, def);
  ASSERT_EQ(cuMemsetD32Async(p, 0x01020304, (1 << 16) / 4, s), CUDA_SUCCESS);
  uint32_t word = 0;
  ASSERT_EQ(cuMemcpy(reinterpret_cast<CUdeviceptr>(&word), p + 40, 4), CUDA_SUCCESS);
  EXPECT_EQ(word, 0x01020304u);
  cuuint64_t used = 0;
  ASSERT_EQ(cuMemPoolGetAttribute(def, CU_MEMPOOL_ATTR_USED_MEM_CURRENT, &used), CUDA_SUCCESS);
  EXPECT_EQ(used, 1u << 16);
  ASSERT_EQ(cuMemFreeAsync(p, s), CUDA_SUCCESS);
  EXPECT_EQ(cuPointerGetAttribute(&from, CU_POINTER_ATTRIBUTE_MEMPOOL_HANDLE, p),
            CUDA_ERROR_INVALID_VALUE);
  ASSERT_EQ(cuMemPoolTrimTo(def, 0), CUDA_SUCCESS);

  // A pool of our own, made current, and destroyed.
  CUmemPoolProps props;
  std::memset(&props, 0, sizeof(props));
  props.allocType = CU_MEM_ALLOCATION_TYPE_PINNED;
  props.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
  props.location.id = 0;
  CUmemoryPool mine = nullptr;
  ASSERT_EQ(cuMemPoolCreate(&mine, &props), CUDA_SUCCESS);
  ASSERT_EQ(cuDeviceSetMemPool(0, mine), CUDA_SUCCESS);
  ASSERT_EQ(cuMemAllocAsync(&p, 256, nullptr), CUDA_SUCCESS);
  ASSERT_EQ(cuPointerGetAttribute(&from, CU_POINTER_ATTRIBUTE_MEMPOOL_HANDLE, p), CUDA_SUCCESS);
  EXPECT_EQ(from, mine);
  CUdeviceptr q = 0;
  ASSERT_EQ(cuMemAllocFromPoolAsync(&q, 256, def, nullptr), CUDA_SUCCESS);
  ASSERT_EQ(cuMemFree(q), CUDA_SUCCESS);  // cuMemFree takes pool memory too
  ASSERT_EQ(cuMemFreeAsync(p, nullptr), CUDA_SUCCESS);
  EXPECT_EQ(cuMemPoolDestroy(def), CUDA_ERROR_INVALID_VALUE);
  ASSERT_EQ(cuMemPoolDestroy(mine), CUDA_SUCCESS);
  ASSERT_EQ(cuDeviceGetMemPool(&current, 0), CUDA_SUCCESS);
  EXPECT_EQ(current, def);  // the default is current again
  EXPECT_EQ(cuDeviceSetMemPool(0, reinterpret_cast<CUmemoryPool>(&props)),
            CUDA_ERROR_INVALID_VALUE);
  props.location.type = CU_MEM_LOCATION_TYPE_HOST;
  EXPECT_EQ(cuMemPoolCreate(&mine, &props), CUDA_ERROR_NOT_SUPPORTED);
  ASSERT_EQ(cuStreamDestroy(s), CUDA_SUCCESS);
  EXPECT_EQ(fake_->live_allocations(), 0u);
}

TEST_F(ClientMemoryExtTest, VirtualMemoryEndToEnd) {
  CUmemAllocationProp prop;
  std::memset(&prop, 0, sizeof(prop));
  prop.type = CU_MEM_ALLOCATION_TYPE_PINNED;
  prop.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
  prop.location.id = 0;
  prop.requestedHandleTypes = CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR;
  size_t granularity = 0;
  ASSERT_EQ(cuMemGetAllocationGranularity(&granularity, &prop, CU_MEM_ALLOC_GRANULARITY_MINIMUM),
            CUDA_SUCCESS);
  ASSERT_EQ(granularity, kGranularity);
  CUdeviceptr va = 0;
  ASSERT_EQ(cuMemAddressReserve(&va, 4 * granularity, 0, 0, 0), CUDA_SUCCESS);
  CUmemGenericAllocationHandle h = 0;
  ASSERT_EQ(cuMemCreate(&h, 2 * granularity, &prop, 0), CUDA_SUCCESS);
  ASSERT_EQ(cuMemMap(va, 2 * granularity, 0, h, 0), CUDA_SUCCESS);
  CUmemAccessDesc access;
  std::memset(&access, 0, sizeof(access));
  access.location = prop.location;
  access.flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE;
  ASSERT_EQ(cuMemSetAccess(va, 2 * granularity, &access, 1), CUDA_SUCCESS);
  unsigned long long flags = 0;
  ASSERT_EQ(cuMemGetAccess(&flags, &prop.location, va + 8), CUDA_SUCCESS);
  EXPECT_EQ(flags, unsigned{CU_MEM_ACCESS_FLAGS_PROT_READWRITE});

  // Mapped memory is device memory to cuMemcpy and to the pointer attributes.
  std::vector<uint32_t> in(1024), out(1024);
  std::iota(in.begin(), in.end(), 100u);
  ASSERT_EQ(cuMemcpy(va + 4096, reinterpret_cast<CUdeviceptr>(in.data()), 4096), CUDA_SUCCESS);
  ASSERT_EQ(cuMemcpyDtoH(out.data(), va + 4096, 4096), CUDA_SUCCESS);
  EXPECT_EQ(in, out);
  CUdeviceptr base = 0;
  size_t size = 0;
  ASSERT_EQ(cuMemGetAddressRange(&base, &size, va + 100), CUDA_SUCCESS);
  EXPECT_EQ(base, va);
  EXPECT_EQ(size, 2 * granularity);
  CUdeviceptr range = 0;
  ASSERT_EQ(cuPointerGetAttribute(&range, CU_POINTER_ATTRIBUTE_RANGE_START_ADDR, va + 100),
            CUDA_SUCCESS);
  EXPECT_EQ(range, va);
  unsigned types = 0;
  ASSERT_EQ(cuPointerGetAttribute(&types, CU_POINTER_ATTRIBUTE_ALLOWED_HANDLE_TYPES, va),
            CUDA_SUCCESS);
  EXPECT_EQ(types, unsigned{CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR});

  CUmemAllocationProp got;
  ASSERT_EQ(cuMemGetAllocationPropertiesFromHandle(&got, h), CUDA_SUCCESS);
  EXPECT_EQ(got.requestedHandleTypes, CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR);
  EXPECT_EQ(got.location.type, CU_MEM_LOCATION_TYPE_DEVICE);
  CUmemGenericAllocationHandle again = 0;
  ASSERT_EQ(cuMemRetainAllocationHandle(&again, reinterpret_cast<void*>(va + 10)), CUDA_SUCCESS);
  EXPECT_EQ(again, h);
  ASSERT_EQ(cuMemRelease(again), CUDA_SUCCESS);
  ASSERT_EQ(cuMemRelease(h), CUDA_SUCCESS);  // still mapped: the memory stays
  ASSERT_EQ(cuMemcpyDtoH(out.data(), va + 4096, 16), CUDA_SUCCESS);
  EXPECT_EQ(out[0], 100u);
  ASSERT_EQ(cuMemUnmap(va, 2 * granularity), CUDA_SUCCESS);
  unsigned type = 0;
  EXPECT_EQ(cuPointerGetAttribute(&type, CU_POINTER_ATTRIBUTE_MEMORY_TYPE, va),
            CUDA_ERROR_INVALID_VALUE);
  ASSERT_EQ(cuMemAddressFree(va, 4 * granularity), CUDA_SUCCESS);
  EXPECT_EQ(fake_->live_allocation_handles(), 0u);
  EXPECT_EQ(fake_->live_reservations(), 0u);
}

TEST_F(ClientMemoryExtTest, OccupancyIsForwardedOnceAndCached) {
  CUfunction f = Fill();
  int blocks = 0;
  ASSERT_EQ(cuOccupancyMaxActiveBlocksPerMultiprocessor(&blocks, f, 256, 0), CUDA_SUCCESS);
  EXPECT_EQ(blocks, 8);
  ASSERT_EQ(cuOccupancyMaxActiveBlocksPerMultiprocessorWithFlags(&blocks, f, 256, 0, 0),
            CUDA_SUCCESS);
  EXPECT_EQ(blocks, 8);
  EXPECT_EQ(fake_->occupancy_queries.load(), 1);  // the second came from the cache
  ASSERT_EQ(cuOccupancyMaxActiveBlocksPerMultiprocessor(&blocks, f, 1024, 48 << 10), CUDA_SUCCESS);
  EXPECT_EQ(blocks, 2);
  EXPECT_EQ(fake_->occupancy_queries.load(), 2);
  // A function attribute change may change occupancy: asked again.
  ASSERT_EQ(cuFuncSetAttribute(f, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, 100 << 10),
            CUDA_SUCCESS);
  ASSERT_EQ(cuOccupancyMaxActiveBlocksPerMultiprocessor(&blocks, f, 256, 0), CUDA_SUCCESS);
  EXPECT_EQ(fake_->occupancy_queries.load(), 3);
  ASSERT_EQ(cuFuncSetAttribute(f, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, 48 << 10),
            CUDA_SUCCESS);

  int grid = 0, block = 0;
  ASSERT_EQ(cuOccupancyMaxPotentialBlockSize(&grid, &block, f, nullptr, 0, 0), CUDA_SUCCESS);
  EXPECT_EQ(block, 1024);
  EXPECT_EQ(grid, 2 * 132);
  // The callback runs in this process; its table travels to woolyd.
  ASSERT_EQ(cuOccupancyMaxPotentialBlockSize(&grid, &block, f, SixtyFourBytesPerThread, 0, 0),
            CUDA_SUCCESS);
  EXPECT_EQ(block, 512);
  EXPECT_EQ(grid, 4 * 132);
  ASSERT_EQ(cuOccupancyMaxPotentialBlockSizeWithFlags(&grid, &block, f, nullptr, 0, 256, 0),
            CUDA_SUCCESS);
  EXPECT_EQ(block, 256);
  size_t smem = 0;
  ASSERT_EQ(cuOccupancyAvailableDynamicSMemPerBlock(&smem, f, 2, 256), CUDA_SUCCESS);
  EXPECT_EQ(smem, 233472u / 2 - 1024);
  CUlaunchAttribute attr;
  std::memset(&attr, 0, sizeof(attr));
  attr.id = CU_LAUNCH_ATTRIBUTE_CLUSTER_DIMENSION;
  attr.value.clusterDim.x = 2;
  attr.value.clusterDim.y = 1;
  attr.value.clusterDim.z = 1;
  CUlaunchConfig config;
  std::memset(&config, 0, sizeof(config));
  config.gridDimX = 264;
  config.gridDimY = config.gridDimZ = 1;
  config.blockDimX = 128;
  config.blockDimY = config.blockDimZ = 1;
  config.attrs = &attr;
  config.numAttrs = 1;
  int clusters = 0;
  ASSERT_EQ(cuOccupancyMaxActiveClusters(&clusters, f, &config), CUDA_SUCCESS);
  EXPECT_EQ(clusters, 132 * 16 / 2);
  EXPECT_EQ(cuOccupancyMaxActiveBlocksPerMultiprocessor(&blocks, nullptr, 256, 0),
            CUDA_ERROR_INVALID_HANDLE);
  // Cache and shared-memory preferences.
  ASSERT_EQ(cuFuncSetCacheConfig(f, CU_FUNC_CACHE_PREFER_SHARED), CUDA_SUCCESS);
  EXPECT_EQ(cuFuncSetCacheConfig(f, static_cast<CUfunc_cache>(7)), CUDA_ERROR_INVALID_VALUE);
}

TEST_F(ClientMemoryExtTest, LimitsAndContextConfiguration) {
  size_t v = 0;
  ASSERT_EQ(cuCtxGetLimit(&v, CU_LIMIT_MALLOC_HEAP_SIZE), CUDA_SUCCESS);
  EXPECT_EQ(v, 8u << 20);
  ASSERT_EQ(cuCtxSetLimit(CU_LIMIT_MALLOC_HEAP_SIZE, 64 << 20), CUDA_SUCCESS);
  ASSERT_EQ(cuCtxGetLimit(&v, CU_LIMIT_MALLOC_HEAP_SIZE), CUDA_SUCCESS);
  EXPECT_EQ(v, 64u << 20);
  CUfunc_cache cache = CU_FUNC_CACHE_PREFER_L1;
  ASSERT_EQ(cuCtxGetCacheConfig(&cache), CUDA_SUCCESS);
  EXPECT_EQ(cache, CU_FUNC_CACHE_PREFER_NONE);
  ASSERT_EQ(cuCtxSetCacheConfig(CU_FUNC_CACHE_PREFER_SHARED), CUDA_SUCCESS);
  ASSERT_EQ(cuCtxGetCacheConfig(&cache), CUDA_SUCCESS);
  EXPECT_EQ(cache, CU_FUNC_CACHE_PREFER_SHARED);
  ASSERT_EQ(cuCtxSetCacheConfig(CU_FUNC_CACHE_PREFER_NONE), CUDA_SUCCESS);
  EXPECT_EQ(cuCtxSetCacheConfig(static_cast<CUfunc_cache>(9)), CUDA_ERROR_INVALID_VALUE);
  CUdeviceptr d = 0;
  size_t pitch = 0;
  ASSERT_EQ(cuMemAllocPitch(&d, &pitch, 100, 3, 4), CUDA_SUCCESS);
  EXPECT_EQ(pitch, 512u);
  size_t size = 0;
  ASSERT_EQ(cuMemGetAddressRange(nullptr, &size, d), CUDA_SUCCESS);
  EXPECT_EQ(size, 3 * 512u);
  EXPECT_EQ(cuMemAllocPitch(&d, &pitch, 100, 3, 3), CUDA_ERROR_INVALID_VALUE);
}

TEST_F(ClientMemoryExtTest, TensorMaps) {
  CUdeviceptr d = 0;
  ASSERT_EQ(cuMemAlloc(&d, 64 * 64 * 2), CUDA_SUCCESS);
  const cuuint64_t dims[2] = {64, 64};
  const cuuint64_t strides[1] = {64 * 2};
  const cuuint32_t box[2] = {16, 16};
  const cuuint32_t elem[2] = {1, 1};
  CUtensorMap map;
  ASSERT_EQ(cuTensorMapEncodeTiled(
                &map, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 2, reinterpret_cast<void*>(d), dims,
                strides, box, elem, CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_NONE,
                CU_TENSOR_MAP_L2_PROMOTION_NONE, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE),
            CUDA_SUCCESS);
  EXPECT_EQ(map.opaque[0], d);  // the fake's layout
  ASSERT_EQ(cuTensorMapReplaceAddress(&map, reinterpret_cast<void*>(d + 256)), CUDA_SUCCESS);
  EXPECT_EQ(map.opaque[0], d + 256);
  std::vector<char> host(64 * 64 * 2);
  EXPECT_EQ(
      cuTensorMapEncodeTiled(&map, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 2, host.data(), dims, strides,
                             box, elem, CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_NONE,
                             CU_TENSOR_MAP_L2_PROMOTION_NONE, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE),
      CUDA_ERROR_INVALID_VALUE);
  EXPECT_EQ(cuTensorMapEncodeTiled(
                &map, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 2, reinterpret_cast<void*>(d), dims,
                nullptr, box, elem, CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_NONE,
                CU_TENSOR_MAP_L2_PROMOTION_NONE, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE),
            CUDA_ERROR_INVALID_VALUE);
  ASSERT_EQ(cuMemFree(d), CUDA_SUCCESS);
}

}  // namespace
}  // namespace wooly::client
