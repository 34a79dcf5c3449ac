// woolyd's memory extensions end to end over a real socket (unix and TCP) on
// the fake backend: the stream-ordered allocator and pools, VMM, occupancy,
// context limits, function cache configuration and tensor maps, with the
// ownership refusals and the cleanup at disconnect.
#include <cuda.h>

#include <array>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "gtest/gtest.h"
#include "server_test_client.h"
#include "wooly/fake/fake_backend.h"
#include "wooly/memory/allocation_table.h"
#include "wooly/proto/wire.h"
#include "wooly/proto/wire_memory_ext.h"
#include "wooly/server/server.h"
#include "wooly/server/session_memory_ext.h"

namespace wooly::server {
namespace {

using wire::Op;
using wooly::fake::FakeBackend;
using wooly::fake::FakeBackendOptions;
using wooly::fake::FakeKernel;
using wooly::fake::FakeLaunch;
using wooly::fake::MakeFakeModuleImage;
using wooly::testing::TestClient;

constexpr absl::Duration kWait = absl::Seconds(60);
constexpr uint64_t kGranularity = 2u << 20;

void RegisterKernels() {
  FakeKernel noop;
  noop.name = "wooly_memext_noop";
  noop.params = {{0, 8}};
  noop.run = [](const FakeLaunch&) { return absl::OkStatus(); };
  fake::RegisterFakeKernel(noop);
}

// Small request helpers over TestClient.
struct Calls {
  TestClient& c;

  CUresult AllocAsync(uint64_t size, uint64_t pool, uint64_t stream, uint64_t* ptr) {
    auto r = c.Call(Op::kMemAllocAsync,
                    wire::Writer().Put<uint64_t>(size).Put<uint64_t>(pool).Put<uint64_t>(stream));
    if (!r) return CUDA_ERROR_UNKNOWN;
    if (r->result == CUDA_SUCCESS) *ptr = r->reader().Get<uint64_t>();
    return r->result;
  }
  CUresult FreeAsync(uint64_t ptr, uint64_t stream) {
    return c.Code(Op::kMemFreeAsync, wire::Writer().Put<uint64_t>(ptr).Put<uint64_t>(stream));
  }
  CUresult PoolCreate(int32_t location_type, int32_t location_id, uint64_t* pool) {
    wire::MemPoolProps p;
    p.alloc_type = CU_MEM_ALLOCATION_TYPE_PINNED;
    p.location_type = location_type;
    p.location_id = location_id;
    wire::Writer w;
    wire::PutMemPoolProps(w, p);
    auto r = c.Call(Op::kMemPoolCreate, w);
    if (!r) return CUDA_ERROR_UNKNOWN;
    if (r->result == CUDA_SUCCESS) *pool = r->reader().Get<uint64_t>();
    return r->result;
  }
  CUresult SetPoolAttr(uint64_t pool, int32_t attr, uint64_t value) {
    return c.Code(Op::kMemPoolSetAttribute,
                  wire::Writer().Put<uint64_t>(pool).Put<int32_t>(attr).Put<uint64_t>(value));
  }
  CUresult GetPoolAttr(uint64_t pool, int32_t attr, uint64_t* value) {
    auto r =
        c.Call(Op::kMemPoolGetAttribute, wire::Writer().Put<uint64_t>(pool).Put<int32_t>(attr));
    if (!r) return CUDA_ERROR_UNKNOWN;
    if (r->result == CUDA_SUCCESS) *value = r->reader().Get<uint64_t>();
    return r->result;
  }
  static wire::MemAllocProps DeviceProps() {
    wire::MemAllocProps p;
    p.type = CU_MEM_ALLOCATION_TYPE_PINNED;
    p.location_type = CU_MEM_LOCATION_TYPE_DEVICE;
    p.location_id = 0;
    return p;
  }
  CUresult Reserve(uint64_t size, uint64_t* ptr) {
    auto r = c.Call(
        Op::kMemAddressReserve,
        wire::Writer().Put<uint64_t>(size).Put<uint64_t>(0).Put<uint64_t>(0).Put<uint64_t>(0));
    if (!r) return CUDA_ERROR_UNKNOWN;
    if (r->result == CUDA_SUCCESS) *ptr = r->reader().Get<uint64_t>();
    return r->result;
  }
  CUresult Create(uint64_t size, uint64_t* handle, wire::MemAllocProps props = DeviceProps()) {
    wire::Writer w;
    w.Put<uint64_t>(size);
    wire::PutMemAllocProps(w, props);
    w.Put<uint64_t>(0);
    auto r = c.Call(Op::kMemCreate, w);
    if (!r) return CUDA_ERROR_UNKNOWN;
    if (r->result == CUDA_SUCCESS) *handle = r->reader().Get<uint64_t>();
    return r->result;
  }
  CUresult Map(uint64_t ptr, uint64_t size, uint64_t offset, uint64_t handle) {
    return c.Code(Op::kMemMap, wire::Writer()
                                   .Put<uint64_t>(ptr)
                                   .Put<uint64_t>(size)
                                   .Put<uint64_t>(offset)
                                   .Put<uint64_t>(handle)
                                   .Put<uint64_t>(0));
  }
  CUresult Unmap(uint64_t ptr, uint64_t size) {
    return c.Code(Op::kMemUnmap, wire::Writer().Put<uint64_t>(ptr).Put<uint64_t>(size));
  }
  CUresult SetAccess(uint64_t ptr, uint64_t size, int32_t device = 0,
                     uint32_t flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE) {
    wire::Writer w;
    w.Put<uint64_t>(ptr).Put<uint64_t>(size).Put<uint32_t>(1);
    w.Put<int32_t>(CU_MEM_LOCATION_TYPE_DEVICE).Put<int32_t>(device).Put<uint32_t>(flags);
    return c.Code(Op::kMemSetAccess, w);
  }
  CUresult Retain(uint64_t addr, uint64_t* handle) {
    auto r = c.Call(Op::kMemRetainAllocationHandle, wire::Writer().Put<uint64_t>(addr));
    if (!r) return CUDA_ERROR_UNKNOWN;
    if (r->result == CUDA_SUCCESS) *handle = r->reader().Get<uint64_t>();
    return r->result;
  }
  CUresult AddressFree(uint64_t ptr, uint64_t size) {
    return c.Code(Op::kMemAddressFree, wire::Writer().Put<uint64_t>(ptr).Put<uint64_t>(size));
  }
  CUresult GetLimit(int32_t limit, uint64_t* value) {
    auto r = c.Call(Op::kCtxGetLimit, wire::Writer().Put<int32_t>(limit));
    if (!r) return CUDA_ERROR_UNKNOWN;
    if (r->result == CUDA_SUCCESS) *value = r->reader().Get<uint64_t>();
    return r->result;
  }
  CUresult SetLimit(int32_t limit, uint64_t value) {
    return c.Code(Op::kCtxSetLimit, wire::Writer().Put<int32_t>(limit).Put<uint64_t>(value));
  }
  CUresult Tiled(const wire::TensorMapTiled& t, std::array<uint8_t, 128>* map) {
    wire::Writer w;
    wire::PutTensorMapTiled(w, t);
    auto r = c.Call(Op::kTensorMapEncodeTiled, w);
    if (!r) return CUDA_ERROR_UNKNOWN;
    if (r->result == CUDA_SUCCESS) {
      if (r->body.size() != map->size()) return CUDA_ERROR_UNKNOWN;
      std::memcpy(map->data(), r->body.data(), map->size());
    }
    return r->result;
  }
};

// A 2D float tensor of `rows` x `cols` (dense rows) at `address`.
wire::TensorMapTiled Tensor2D(uint64_t address, uint64_t rows, uint64_t cols) {
  wire::TensorMapTiled t;
  t.data_type = CU_TENSOR_MAP_DATA_TYPE_FLOAT32;
  t.rank = 2;
  t.address = address;
  t.dims[0] = cols;
  t.dims[1] = rows;
  t.strides[0] = cols * 4;
  t.box[0] = 32;
  t.box[1] = 32;
  t.element_strides[0] = t.element_strides[1] = 1;
  return t;
}

class ServerMemoryExtTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    RegisterKernels();
    dir_ = testing::MakeTempDir();
    ASSERT_FALSE(dir_.empty());
    ServerOptions options;
    options.listen = {"unix:" + dir_ + "/run/woolyd.sock", "tcp:127.0.0.1:0"};
    FakeBackendOptions fake_options;
    fake_options.capacity_bytes = 1ull << 30;
    auto backend = std::make_unique<FakeBackend>(fake_options);
    fake_ = backend.get();
    absl::StatusOr<std::unique_ptr<Server>> server = Server::Start(options, std::move(backend));
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    const std::vector<std::string> addresses = server_->listen_addresses();
    ASSERT_EQ(addresses.size(), 2u);
    endpoint_ = GetParam() == "unix" ? addresses[0] : addresses[1];
  }

  void TearDown() override {
    server_.reset();
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }

  std::unique_ptr<TestClient> Hello(const std::string& name = "test") {
    std::unique_ptr<TestClient> c = TestClient::Connect(endpoint_);
    EXPECT_NE(c, nullptr) << "cannot connect to " << endpoint_;
    if (c) {
      EXPECT_EQ(c->Hello(name), CUDA_SUCCESS);
    }
    return c;
  }

  uint64_t NoopFunction(TestClient& c) {
    uint64_t module = 0, fn = 0;
    EXPECT_EQ(c.LoadModule(MakeFakeModuleImage({"wooly_memext_noop"}), &module), CUDA_SUCCESS);
    EXPECT_EQ(c.GetFunction(module, "wooly_memext_noop", &fn), CUDA_SUCCESS);
    return fn;
  }

  std::string dir_;
  FakeBackend* fake_ = nullptr;  // owned by server_
  std::unique_ptr<Server> server_;
  std::string endpoint_;
};

INSTANTIATE_TEST_SUITE_P(Transports, ServerMemoryExtTest, ::testing::Values("unix", "tcp"),
                         [](const auto& info) { return info.param; });

TEST_P(ServerMemoryExtTest, AsyncAllocationsAreOwnedUntilFreed) {
  std::unique_ptr<TestClient> c = Hello();
  ASSERT_NE(c, nullptr);
  Calls a{*c};
  uint64_t stream = 0, p = 0, q = 0;
  ASSERT_EQ(c->StreamCreate(CU_STREAM_NON_BLOCKING, &stream), CUDA_SUCCESS);
  ASSERT_EQ(a.AllocAsync(4096, 0, stream, &p), CUDA_SUCCESS);
  ASSERT_EQ(a.AllocAsync(256, 0, wire::kStreamNull, &q), CUDA_SUCCESS);
  EXPECT_EQ(fake_->live_allocations(), 2u);
  const uint32_t x = 0xabcd1234;
  uint32_t y = 0;
  EXPECT_EQ(c->HtoD(p + 4092, &x, 4, stream), CUDA_SUCCESS);
  EXPECT_EQ(c->DtoH(&y, p + 4092, 4, stream), CUDA_SUCCESS);
  EXPECT_EQ(y, x);
  EXPECT_EQ(a.AllocAsync(0, 0, stream, &p), CUDA_ERROR_INVALID_VALUE);
  EXPECT_EQ(a.AllocAsync(16, 0, 0x777777, &p), CUDA_ERROR_INVALID_HANDLE);
  EXPECT_EQ(a.FreeAsync(p, stream), CUDA_SUCCESS);
  EXPECT_EQ(a.FreeAsync(p, stream), CUDA_ERROR_INVALID_VALUE);  // twice
  EXPECT_EQ(c->HtoD(p, &x, 4), CUDA_ERROR_INVALID_VALUE);       // gone
  // cuMemFree takes stream-ordered memory too.
  EXPECT_EQ(c->MemFree(q), CUDA_SUCCESS);
  EXPECT_EQ(fake_->live_allocations(), 0u);
}

TEST_P(ServerMemoryExtTest, TheDefaultPoolIsEachClientsOwn) {
  std::unique_ptr<TestClient> ca = Hello("a");
  std::unique_ptr<TestClient> cb = Hello("b");
  ASSERT_NE(ca, nullptr);
  ASSERT_NE(cb, nullptr);
  Calls a{*ca}, b{*cb};
  ASSERT_EQ(a.SetPoolAttr(0, CU_MEMPOOL_ATTR_RELEASE_THRESHOLD, ~uint64_t{0}), CUDA_SUCCESS);
  uint64_t v = 1;
  ASSERT_EQ(b.GetPoolAttr(0, CU_MEMPOOL_ATTR_RELEASE_THRESHOLD, &v), CUDA_SUCCESS);
  EXPECT_EQ(v, 0u);
  ASSERT_EQ(a.GetPoolAttr(0, CU_MEMPOOL_ATTR_RELEASE_THRESHOLD, &v), CUDA_SUCCESS);
  EXPECT_EQ(v, ~uint64_t{0});
  uint64_t p = 0;
  ASSERT_EQ(a.AllocAsync(1 << 20, 0, wire::kStreamNull, &p), CUDA_SUCCESS);
  ASSERT_EQ(a.GetPoolAttr(0, CU_MEMPOOL_ATTR_USED_MEM_CURRENT, &v), CUDA_SUCCESS);
  EXPECT_EQ(v, 1u << 20);
  ASSERT_EQ(b.GetPoolAttr(0, CU_MEMPOOL_ATTR_USED_MEM_CURRENT, &v), CUDA_SUCCESS);
  EXPECT_EQ(v, 0u);
  // The freed bytes stay reserved (threshold: everything) until trimmed.
  ASSERT_EQ(a.FreeAsync(p, wire::kStreamNull), CUDA_SUCCESS);
  ASSERT_EQ(a.GetPoolAttr(0, CU_MEMPOOL_ATTR_RESERVED_MEM_CURRENT, &v), CUDA_SUCCESS);
  EXPECT_EQ(v, 1u << 20);
  ASSERT_EQ(ca->Code(Op::kMemPoolTrimTo, wire::Writer().Put<uint64_t>(0).Put<uint64_t>(0)),
            CUDA_SUCCESS);
  ASSERT_EQ(a.GetPoolAttr(0, CU_MEMPOOL_ATTR_RESERVED_MEM_CURRENT, &v), CUDA_SUCCESS);
  EXPECT_EQ(v, 0u);
  EXPECT_EQ(fake_->live_pools(), 2u);  // one stand-in default pool per client
  // The default pool cannot be destroyed.
  EXPECT_EQ(ca->OneId(Op::kMemPoolDestroy, 0), CUDA_ERROR_INVALID_VALUE);
}

TEST_P(ServerMemoryExtTest, CreatedPoolsBelongToTheirClient) {
  std::unique_ptr<TestClient> ca = Hello("a");
  std::unique_ptr<TestClient> cb = Hello("b");
  ASSERT_NE(ca, nullptr);
  ASSERT_NE(cb, nullptr);
  Calls a{*ca}, b{*cb};
  uint64_t pool = 0, p = 0, v = 0;
  ASSERT_EQ(a.PoolCreate(CU_MEM_LOCATION_TYPE_DEVICE, 0, &pool), CUDA_SUCCESS);
  EXPECT_NE(pool, 0u);
  EXPECT_EQ(a.PoolCreate(CU_MEM_LOCATION_TYPE_DEVICE, 1, &v), CUDA_ERROR_INVALID_DEVICE);
  EXPECT_EQ(a.PoolCreate(CU_MEM_LOCATION_TYPE_HOST, 0, &v), CUDA_ERROR_NOT_SUPPORTED);
  ASSERT_EQ(a.AllocAsync(512, pool, wire::kStreamNull, &p), CUDA_SUCCESS);
  // Another client's pool id is no pool at all for b.
  uint64_t stolen = 0;
  EXPECT_EQ(b.AllocAsync(512, pool, wire::kStreamNull, &stolen), CUDA_ERROR_INVALID_VALUE);
  EXPECT_EQ(b.GetPoolAttr(pool, CU_MEMPOOL_ATTR_USED_MEM_CURRENT, &v), CUDA_ERROR_INVALID_VALUE);
  EXPECT_EQ(b.SetPoolAttr(pool, CU_MEMPOOL_ATTR_RELEASE_THRESHOLD, 1), CUDA_ERROR_INVALID_VALUE);
  EXPECT_EQ(cb->OneId(Op::kMemPoolDestroy, pool), CUDA_ERROR_INVALID_VALUE);
  EXPECT_EQ(b.FreeAsync(p, wire::kStreamNull), CUDA_ERROR_INVALID_VALUE);
  ASSERT_EQ(a.GetPoolAttr(pool, CU_MEMPOOL_ATTR_USED_MEM_CURRENT, &v), CUDA_SUCCESS);
  EXPECT_EQ(v, 512u);
  ASSERT_EQ(a.FreeAsync(p, wire::kStreamNull), CUDA_SUCCESS);
  ASSERT_EQ(ca->OneId(Op::kMemPoolDestroy, pool), CUDA_SUCCESS);
  EXPECT_EQ(ca->OneId(Op::kMemPoolDestroy, pool), CUDA_ERROR_INVALID_VALUE);
  EXPECT_EQ(fake_->live_pools(), 0u);
}

TEST_P(ServerMemoryExtTest, VirtualMemoryReserveCreateMapAccessCopy) {
  std::unique_ptr<TestClient> ca = Hello("a");
  std::unique_ptr<TestClient> cb = Hello("b");
  ASSERT_NE(ca, nullptr);
  ASSERT_NE(cb, nullptr);
  Calls a{*ca}, b{*cb};
  {
    wire::Writer w;
    wire::PutMemAllocProps(w, Calls::DeviceProps());
    w.Put<uint32_t>(CU_MEM_ALLOC_GRANULARITY_RECOMMENDED);
    auto r = ca->Call(Op::kMemGetAllocationGranularity, w);
    ASSERT_TRUE(r);
    ASSERT_EQ(r->result, CUDA_SUCCESS);
    EXPECT_EQ(r->reader().Get<uint64_t>(), kGranularity);
  }
  uint64_t va = 0, handle = 0;
  ASSERT_EQ(a.Reserve(2 * kGranularity, &va), CUDA_SUCCESS);
  ASSERT_EQ(a.Create(2 * kGranularity, &handle), CUDA_SUCCESS);
  // Two mappings of the two halves of one allocation, in swapped order.
  ASSERT_EQ(a.Map(va, kGranularity, kGranularity, handle), CUDA_SUCCESS);
  ASSERT_EQ(a.Map(va + kGranularity, kGranularity, 0, handle), CUDA_SUCCESS);
  EXPECT_EQ(a.Map(va, kGranularity, 0, handle), CUDA_ERROR_INVALID_VALUE);  // mapped already
  EXPECT_EQ(fake_->live_mappings(), 2u);
  ASSERT_EQ(a.SetAccess(va, 2 * kGranularity), CUDA_SUCCESS);  // spans both mappings
  EXPECT_EQ(a.SetAccess(va, 2 * kGranularity, 1), CUDA_ERROR_INVALID_DEVICE);
  {
    auto r = ca->Call(Op::kMemGetAccess, wire::Writer()
                                             .Put<int32_t>(CU_MEM_LOCATION_TYPE_DEVICE)
                                             .Put<int32_t>(0)
                                             .Put<uint64_t>(va + 100));
    ASSERT_TRUE(r);
    ASSERT_EQ(r->result, CUDA_SUCCESS);
    EXPECT_EQ(r->reader().Get<uint64_t>(), uint64_t{CU_MEM_ACCESS_FLAGS_PROT_READWRITE});
  }
  // Written through the first mapping (the allocation's second half), read
  // through a copy of the second mapping's tail: the same bytes.
  const uint32_t x = 0x5eed;
  uint32_t y = 0;
  ASSERT_EQ(ca->HtoD(va + 64, &x, 4), CUDA_SUCCESS);
  ASSERT_EQ(ca->DtoH(&y, va + 64, 4), CUDA_SUCCESS);
  EXPECT_EQ(y, x);
  ASSERT_EQ(ca->Memset(va + kGranularity, 7, 1, 16), CUDA_SUCCESS);
  // Properties and retained handles.
  {
    auto r =
        ca->Call(Op::kMemGetAllocationPropertiesFromHandle, wire::Writer().Put<uint64_t>(handle));
    ASSERT_TRUE(r);
    ASSERT_EQ(r->result, CUDA_SUCCESS);
    wire::Reader rd = r->reader();
    EXPECT_EQ(wire::GetMemAllocProps(rd), Calls::DeviceProps());
  }
  uint64_t retained = 0;
  ASSERT_EQ(a.Retain(va + kGranularity + 16, &retained), CUDA_SUCCESS);
  EXPECT_EQ(retained, handle);
  ASSERT_EQ(ca->OneId(Op::kMemRelease, retained), CUDA_SUCCESS);

  // b may not touch any of it.
  uint64_t b_handle = 0, b_va = 0, stolen = 0;
  ASSERT_EQ(b.Create(kGranularity, &b_handle), CUDA_SUCCESS);
  ASSERT_EQ(b.Reserve(kGranularity, &b_va), CUDA_SUCCESS);
  EXPECT_EQ(b.Map(b_va, kGranularity, 0, handle), CUDA_ERROR_INVALID_VALUE);  // a's handle
  EXPECT_EQ(b.Map(va, kGranularity, 0, b_handle), CUDA_ERROR_INVALID_VALUE);  // a's range
  EXPECT_EQ(b.Unmap(va, kGranularity), CUDA_ERROR_INVALID_VALUE);
  EXPECT_EQ(b.SetAccess(va, kGranularity), CUDA_ERROR_INVALID_VALUE);
  EXPECT_EQ(b.Retain(va, &stolen), CUDA_ERROR_INVALID_VALUE);
  EXPECT_EQ(b.AddressFree(va, 2 * kGranularity), CUDA_ERROR_INVALID_VALUE);
  EXPECT_EQ(cb->OneId(Op::kMemRelease, handle), CUDA_ERROR_INVALID_VALUE);
  EXPECT_EQ(
      cb->Code(Op::kMemGetAllocationPropertiesFromHandle, wire::Writer().Put<uint64_t>(handle)),
      CUDA_ERROR_INVALID_VALUE);
  EXPECT_EQ(cb->HtoD(va, &x, 4), CUDA_ERROR_INVALID_VALUE);
  EXPECT_EQ(cb->DtoH(&y, va, 4), CUDA_ERROR_INVALID_VALUE);

  // Releasing while mapped keeps the memory until the unmap.
  ASSERT_EQ(ca->OneId(Op::kMemRelease, handle), CUDA_SUCCESS);
  EXPECT_EQ(ca->OneId(Op::kMemRelease, handle), CUDA_ERROR_INVALID_VALUE);
  ASSERT_EQ(ca->DtoH(&y, va + 64, 4), CUDA_SUCCESS);
  EXPECT_EQ(y, x);
  EXPECT_EQ(a.AddressFree(va, 2 * kGranularity), CUDA_ERROR_INVALID_VALUE);  // still mapped
  EXPECT_EQ(a.Unmap(va, kGranularity / 2), CUDA_ERROR_INVALID_VALUE);        // part of a mapping
  ASSERT_EQ(a.Unmap(va, 2 * kGranularity), CUDA_SUCCESS);                    // both at once
  EXPECT_EQ(fake_->live_mappings(), 0u);
  EXPECT_EQ(fake_->live_allocation_handles(), 1u);  // b's
  EXPECT_EQ(ca->HtoD(va, &x, 4), CUDA_ERROR_INVALID_VALUE);
  ASSERT_EQ(a.AddressFree(va, 2 * kGranularity), CUDA_SUCCESS);
  EXPECT_EQ(fake_->live_reservations(), 1u);  // b's
}

TEST_P(ServerMemoryExtTest, DisconnectReleasesPoolsAndVirtualMemory) {
  std::unique_ptr<TestClient> keeper = Hello("keeper");
  ASSERT_NE(keeper, nullptr);
  for (const bool say_goodbye : {false, true}) {
    std::unique_ptr<TestClient> c = Hello("leaver");
    ASSERT_NE(c, nullptr);
    Calls l{*c};
    uint64_t pool = 0, p = 0, va = 0, handle = 0, stream = 0;
    ASSERT_EQ(c->StreamCreate(0, &stream), CUDA_SUCCESS);
    ASSERT_EQ(l.PoolCreate(CU_MEM_LOCATION_TYPE_DEVICE, 0, &pool), CUDA_SUCCESS);
    ASSERT_EQ(l.AllocAsync(4096, pool, stream, &p), CUDA_SUCCESS);
    ASSERT_EQ(l.AllocAsync(4096, 0, stream, &p), CUDA_SUCCESS);
    ASSERT_EQ(l.Reserve(4 * kGranularity, &va), CUDA_SUCCESS);
    ASSERT_EQ(l.Create(kGranularity, &handle), CUDA_SUCCESS);
    ASSERT_EQ(l.Map(va, kGranularity, 0, handle), CUDA_SUCCESS);
    ASSERT_EQ(l.Map(va + 2 * kGranularity, kGranularity, 0, handle), CUDA_SUCCESS);
    ASSERT_EQ(c->OneId(Op::kMemRelease, handle), CUDA_SUCCESS);  // mapped, so still alive
    uint64_t other = 0;
    ASSERT_EQ(l.Create(kGranularity, &other), CUDA_SUCCESS);  // never mapped
    EXPECT_EQ(fake_->live_pools(), 2u);
    EXPECT_EQ(fake_->live_allocation_handles(), 2u);
    if (say_goodbye) {
      ASSERT_EQ(c->Code(Op::kGoodbye, wire::Writer()), CUDA_SUCCESS);
      EXPECT_TRUE(c->ServerClosed());
    }
    c.reset();
    ASSERT_TRUE(server_->WaitForSessionCount(1, kWait));
    EXPECT_EQ(fake_->live_allocations(), 0u);
    EXPECT_EQ(fake_->live_pools(), 0u);
    EXPECT_EQ(fake_->live_mappings(), 0u);
    EXPECT_EQ(fake_->live_allocation_handles(), 0u);
    EXPECT_EQ(fake_->live_reservations(), 0u);
  }
}

TEST_P(ServerMemoryExtTest, OccupancyQueries) {
  std::unique_ptr<TestClient> ca = Hello("a");
  std::unique_ptr<TestClient> cb = Hello("b");
  ASSERT_NE(ca, nullptr);
  ASSERT_NE(cb, nullptr);
  const uint64_t fn = NoopFunction(*ca);
  {
    wire::Writer w;
    w.Put<uint64_t>(fn).Put<uint32_t>(0).Put<uint32_t>(2);
    w.Put<int32_t>(256).Put<uint64_t>(0);
    w.Put<int32_t>(1024).Put<uint64_t>(48 << 10);
    auto r = ca->Call(Op::kOccupancyMaxActiveBlocks, w);
    ASSERT_TRUE(r);
    ASSERT_EQ(r->result, CUDA_SUCCESS);
    wire::Reader rd = r->reader();
    EXPECT_EQ(rd.Get<int32_t>(), 8);  // 2048 threads / 256
    EXPECT_EQ(rd.Get<int32_t>(), 2);  // by threads, and 4 by shared memory
    EXPECT_EQ(cb->Code(Op::kOccupancyMaxActiveBlocks, w), CUDA_ERROR_INVALID_HANDLE);
  }
  auto potential = [&](int32_t limit, uint64_t smem, const std::vector<BlockSmem>& table,
                       int32_t* grid, int32_t* block) {
    wire::Writer w;
    w.Put<uint64_t>(fn).Put<uint32_t>(0).Put<int32_t>(limit).Put<uint64_t>(smem);
    w.Put<uint32_t>(static_cast<uint32_t>(table.size()));
    for (const BlockSmem& e : table) w.Put<int32_t>(e.block_size).Put<uint64_t>(e.dynamic_smem);
    auto r = ca->Call(Op::kOccupancyMaxPotentialBlockSize, w);
    if (!r) return CUDA_ERROR_UNKNOWN;
    wire::Reader rd = r->reader();
    *grid = rd.Get<int32_t>();
    *block = rd.Get<int32_t>();
    return r->result;
  };
  int32_t grid = 0, block = 0;
  ASSERT_EQ(potential(0, 0, {}, &grid, &block), CUDA_SUCCESS);
  EXPECT_EQ(block, 1024);
  EXPECT_EQ(grid, 2 * 132);
  // A callback table: 64 bytes of shared memory per thread. 1024 threads
  // would need more than 48 KiB; 512 threads fill an SM four times over.
  std::vector<BlockSmem> table;
  for (int32_t b = 1024; b > 0; b -= 32) table.push_back({b, uint64_t(b) * 64});
  ASSERT_EQ(potential(0, 0, table, &grid, &block), CUDA_SUCCESS);
  EXPECT_EQ(block, 512);
  EXPECT_EQ(grid, 4 * 132);
  {
    auto r = ca->Call(Op::kOccupancyAvailableDynamicSMem,
                      wire::Writer().Put<uint64_t>(fn).Put<int32_t>(2).Put<int32_t>(256));
    ASSERT_TRUE(r);
    ASSERT_EQ(r->result, CUDA_SUCCESS);
    EXPECT_EQ(r->reader().Get<uint64_t>(), 233472u / 2 - 1024);
  }
  auto clusters = [&](uint32_t id, const void* value, size_t n, int32_t* out) {
    wire::Writer w;
    w.Put<uint64_t>(fn);
    for (uint32_t g : {264u, 1u, 1u}) w.Put<uint32_t>(g);
    for (uint32_t b : {128u, 1u, 1u}) w.Put<uint32_t>(b);
    w.Put<uint32_t>(0).Put<uint32_t>(1).Put<uint32_t>(id);
    uint8_t raw[64] = {};
    std::memcpy(raw, value, n);
    w.PutRaw(raw, sizeof(raw));
    auto r = ca->Call(Op::kOccupancyMaxActiveClusters, w);
    if (!r) return CUDA_ERROR_UNKNOWN;
    if (r->result == CUDA_SUCCESS) *out = r->reader().Get<int32_t>();
    return r->result;
  };
  const uint32_t dims[3] = {2, 1, 1};
  int32_t n = 0;
  ASSERT_EQ(clusters(CU_LAUNCH_ATTRIBUTE_CLUSTER_DIMENSION, dims, sizeof(dims), &n), CUDA_SUCCESS);
  EXPECT_EQ(n, 132 * 16 / 2);
  const uint64_t event = 1234;
  EXPECT_EQ(clusters(CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_EVENT, &event, sizeof(event), &n),
            CUDA_ERROR_INVALID_VALUE);
}

TEST_P(ServerMemoryExtTest, LimitsOnlyGrowInTheSharedContext) {
  std::unique_ptr<TestClient> ca = Hello("a");
  std::unique_ptr<TestClient> cb = Hello("b");
  ASSERT_NE(ca, nullptr);
  ASSERT_NE(cb, nullptr);
  Calls a{*ca}, b{*cb};
  uint64_t v = 0;
  ASSERT_EQ(a.GetLimit(CU_LIMIT_STACK_SIZE, &v), CUDA_SUCCESS);
  EXPECT_EQ(v, 1024u);
  ASSERT_EQ(a.SetLimit(CU_LIMIT_STACK_SIZE, 4000), CUDA_SUCCESS);  // raised: applied
  ASSERT_EQ(b.GetLimit(CU_LIMIT_STACK_SIZE, &v), CUDA_SUCCESS);
  EXPECT_EQ(v, 4000u);
  ASSERT_EQ(a.GetLimit(CU_LIMIT_STACK_SIZE, &v), CUDA_SUCCESS);
  EXPECT_EQ(v, 4000u);
  ASSERT_EQ(b.SetLimit(CU_LIMIT_STACK_SIZE, 2048), CUDA_SUCCESS);  // lowered: b's view only
  ASSERT_EQ(b.GetLimit(CU_LIMIT_STACK_SIZE, &v), CUDA_SUCCESS);
  EXPECT_EQ(v, 2048u);
  ASSERT_EQ(a.GetLimit(CU_LIMIT_STACK_SIZE, &v), CUDA_SUCCESS);
  EXPECT_EQ(v, 4000u);
  ASSERT_EQ(a.SetLimit(CU_LIMIT_PERSISTING_L2_CACHE_SIZE, 1 << 20), CUDA_SUCCESS);
  ASSERT_EQ(a.GetLimit(CU_LIMIT_PERSISTING_L2_CACHE_SIZE, &v), CUDA_SUCCESS);
  EXPECT_EQ(v, 1u << 20);
  ASSERT_EQ(b.GetLimit(CU_LIMIT_PERSISTING_L2_CACHE_SIZE, &v), CUDA_SUCCESS);
  EXPECT_EQ(v, 0u);
  EXPECT_EQ(a.SetLimit(CU_LIMIT_MAX_L2_FETCH_GRANULARITY, 256), CUDA_ERROR_INVALID_VALUE);
  EXPECT_EQ(a.SetLimit(CU_LIMIT_SHMEM_SIZE, 1), CUDA_ERROR_INVALID_VALUE);
}

TEST_P(ServerMemoryExtTest, FunctionCacheConfiguration) {
  std::unique_ptr<TestClient> ca = Hello("a");
  std::unique_ptr<TestClient> cb = Hello("b");
  ASSERT_NE(ca, nullptr);
  ASSERT_NE(cb, nullptr);
  const uint64_t fn = NoopFunction(*ca);
  auto config = [](TestClient& c, Op op, uint64_t f, int32_t v) {
    return c.Code(op, wire::Writer().Put<uint64_t>(f).Put<int32_t>(v));
  };
  EXPECT_EQ(config(*ca, Op::kFuncSetCacheConfig, fn, CU_FUNC_CACHE_PREFER_SHARED), CUDA_SUCCESS);
  EXPECT_EQ(config(*ca, Op::kFuncSetCacheConfig, fn, 9), CUDA_ERROR_INVALID_VALUE);
  EXPECT_EQ(config(*ca, Op::kFuncSetSharedMemConfig, fn, CU_SHARED_MEM_CONFIG_FOUR_BYTE_BANK_SIZE),
            CUDA_SUCCESS);
  EXPECT_EQ(config(*cb, Op::kFuncSetCacheConfig, fn, CU_FUNC_CACHE_PREFER_L1),
            CUDA_ERROR_INVALID_HANDLE);
}

TEST_P(ServerMemoryExtTest, TensorMapsNeedTheClientsOwnMemory) {
  std::unique_ptr<TestClient> ca = Hello("a");
  std::unique_ptr<TestClient> cb = Hello("b");
  ASSERT_NE(ca, nullptr);
  ASSERT_NE(cb, nullptr);
  Calls a{*ca}, b{*cb};
  uint64_t p = 0, q = 0;
  ASSERT_EQ(ca->MemAlloc(256 * 256 * 4, &p), CUDA_SUCCESS);
  ASSERT_EQ(cb->MemAlloc(4096, &q), CUDA_SUCCESS);
  std::array<uint8_t, 128> map{}, again{};
  ASSERT_EQ(a.Tiled(Tensor2D(p, 256, 256), &map), CUDA_SUCCESS);
  uint64_t encoded = 0;
  std::memcpy(&encoded, map.data(), 8);
  EXPECT_EQ(encoded, p);  // the fake's layout: the address first
  ASSERT_EQ(a.Tiled(Tensor2D(p, 256, 256), &again), CUDA_SUCCESS);
  EXPECT_EQ(map, again);                                                        // deterministic
  EXPECT_EQ(a.Tiled(Tensor2D(p, 257, 256), &again), CUDA_ERROR_INVALID_VALUE);  // past the end
  EXPECT_EQ(b.Tiled(Tensor2D(p, 16, 16), &again), CUDA_ERROR_INVALID_VALUE);    // a's memory
  // Replacing the address keeps the rest.
  {
    wire::Writer w;
    w.PutRaw(map.data(), map.size()).Put<uint64_t>(p + 4096);
    auto r = ca->Call(Op::kTensorMapReplaceAddress, w);
    ASSERT_TRUE(r);
    ASSERT_EQ(r->result, CUDA_SUCCESS);
    ASSERT_EQ(r->body.size(), 128u);
    std::memcpy(&encoded, r->body.data(), 8);
    EXPECT_EQ(encoded, p + 4096);
    EXPECT_EQ(std::memcmp(r->body.data() + 8, map.data() + 8, 120), 0);
    wire::Writer foreign;
    foreign.PutRaw(map.data(), map.size()).Put<uint64_t>(q);
    EXPECT_EQ(ca->Code(Op::kTensorMapReplaceAddress, foreign), CUDA_ERROR_INVALID_VALUE);
  }
  // Im2col: a 4D NHWC tensor.
  wire::TensorMapIm2col t;
  t.data_type = CU_TENSOR_MAP_DATA_TYPE_FLOAT16;
  t.rank = 4;
  t.address = p;
  t.dims[0] = 64;  // C
  t.dims[1] = 16;  // W
  t.dims[2] = 16;  // H
  t.dims[3] = 2;   // N
  t.strides[0] = 64 * 2;
  t.strides[1] = 64 * 2 * 16;
  t.strides[2] = 64 * 2 * 16 * 16;
  t.lower[0] = t.lower[1] = -1;
  t.upper[0] = t.upper[1] = 1;
  t.channels_per_pixel = 64;
  t.pixels_per_column = 128;
  for (uint32_t& e : t.element_strides) e = 1;
  wire::Writer w;
  wire::PutTensorMapIm2col(w, t);
  auto r = ca->Call(Op::kTensorMapEncodeIm2col, w);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->result, CUDA_SUCCESS);
  EXPECT_EQ(r->body.size(), 128u);
  EXPECT_EQ(cb->Code(Op::kTensorMapEncodeIm2col, w), CUDA_ERROR_INVALID_VALUE);
}

TEST_P(ServerMemoryExtTest, MalformedPayloadsAreRefused) {
  std::unique_ptr<TestClient> c = Hello();
  ASSERT_NE(c, nullptr);
  for (Op op : {Op::kMemAllocAsync, Op::kMemPoolCreate, Op::kMemCreate, Op::kMemMap,
                Op::kMemSetAccess, Op::kOccupancyMaxActiveBlocks, Op::kTensorMapEncodeTiled,
                Op::kTensorMapReplaceAddress, Op::kCtxSetLimit}) {
    EXPECT_EQ(c->Code(op, wire::Writer().Put<uint8_t>(1)), CUDA_ERROR_INVALID_VALUE)
        << wire::OpName(static_cast<uint16_t>(op));
  }
  // Counts past the bounds are refused before anything is allocated.
  wire::Writer w;
  w.Put<uint64_t>(1).Put<uint32_t>(0).Put<uint32_t>(0xffffffffu);
  EXPECT_EQ(c->Code(Op::kOccupancyMaxActiveBlocks, w), CUDA_ERROR_INVALID_VALUE);
  // The session goes on.
  uint64_t p = 0;
  EXPECT_EQ(c->MemAlloc(64, &p), CUDA_SUCCESS);
}

TEST(CoveredByRangesTest, ConsecutiveRangesCoverAcrossTheirBoundaries) {
  memory::AllocationTable t;
  ASSERT_TRUE(t.Insert(0x1000, 0x1000));
  ASSERT_TRUE(t.Insert(0x2000, 0x1000));
  ASSERT_TRUE(t.Insert(0x4000, 0x1000));
  EXPECT_TRUE(CoveredByRanges(t, 0x1000, 0x2000));
  EXPECT_TRUE(CoveredByRanges(t, 0x1ff0, 0x20));  // across the boundary
  EXPECT_TRUE(CoveredByRanges(t, 0x2fff, 0));
  EXPECT_FALSE(CoveredByRanges(t, 0x2ff0, 0x20));  // into the gap
  EXPECT_FALSE(CoveredByRanges(t, 0x3000, 0));
  EXPECT_FALSE(CoveredByRanges(t, 0x1000, 0x4000));
  EXPECT_FALSE(CoveredByRanges(t, ~uint64_t{0} - 4, 16));  // wraps
}

}  // namespace
}  // namespace wooly::server
