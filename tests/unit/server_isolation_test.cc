// Tenant isolation through the driver API (issue #6: "Tenant A cannot read
// or write tenant B's memory through any API, swapped or not"). Tenant B
// calls every forwarded driver call that takes a device pointer
// (client/driver_surface.txt) on tenant A's memory, once while A's memory
// is resident and once while it is swapped out to the host pool; each call
// must fail as a native driver fails for a pointer it did not hand out, and
// A's bytes must be intact afterwards, byte for byte. Kernels are out of
// scope (docs/memory.md: in one shared context a kernel can dereference any
// mapped address).
//
// Fake backend of 512 MiB (384 MiB physical for the pool), 100 %
// overcommit, a manual clock deciding who is idle.
#include <cuda.h>

#include <array>
#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "overcommit_test_options.h"
#include "server_test_client.h"
#include "wooly/fake/fake_backend.h"
#include "wooly/proto/wire.h"
#include "wooly/scheduler/clock.h"
#include "wooly/server/server.h"

namespace wooly::server {
namespace {

using testing::TestClient;
using wire::Op;

constexpr uint64_t kMiB = uint64_t{1} << 20;
constexpr uint64_t kBig = 64 * kMiB;   // one large chunk
constexpr uint64_t kSmall = 64 << 10;  // sub-allocated
constexpr uint64_t kPiece = 4 * kMiB;  // copies stay inside one chunk
constexpr uint64_t kProbe = 4096;      // bytes each attempt touches

uint8_t PatternByte(uint64_t i, int seed) {
  return static_cast<uint8_t>((i * 131) ^ (i >> 11) ^ (seed * 0x3d));
}

class IsolationTest : public ::testing::TestWithParam<bool> {
 protected:
  bool swapped() const { return GetParam(); }

  void SetUp() override {
    dir_ = testing::MakeTempDir();
    ServerOptions options = testing::OvercommitServerOptions(dir_, /*admin=*/false);
    options.clock = clock_.AsClock();
    absl::StatusOr<std::unique_ptr<Server>> server = Server::Start(
        options, std::make_unique<fake::FakeBackend>(testing::OvercommitFakeOptions()));
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    endpoint_ = server_->listen_addresses()[0];

    a_ = Connect("tenant-a", {{"WOOLY_TENANT", "a"}}, &ida_);
    // B has dedup on, so that kDedupProbe really looks at the address.
    b_ = Connect("tenant-b", {{"WOOLY_TENANT", "b"}, {"WOOLY_DEDUP", "1"}}, &idb_);
    ASSERT_TRUE(a_ && b_);
    ASSERT_EQ(a_->MemAlloc(kBig, &pa_), CUDA_SUCCESS);
    ASSERT_EQ(a_->MemAlloc(kSmall, &pa_small_), CUDA_SUCCESS);
    Fill(*a_, pa_, kBig, 1);
    Fill(*a_, pa_small_, kSmall, 2);
    ASSERT_EQ(b_->MemAlloc(kBig, &pb_), CUDA_SUCCESS);
    ASSERT_EQ(b_->MemAlloc(kSmall, &pb_small_), CUDA_SUCCESS);
    if (swapped()) {
      clock_.Advance(absl::Seconds(5));  // A is idle
      // B fills the rest of physical memory: all of A's goes to the host pool.
      // 64 + 2 (its small chunk) + 4 x 64 + 62 MiB: all 384 MiB.
      for (const uint64_t bytes : {kBig, kBig, kBig, kBig, kBig - 2 * kMiB}) {
        uint64_t filler = 0;
        ASSERT_EQ(b_->MemAlloc(bytes, &filler), CUDA_SUCCESS);
      }
      ASSERT_EQ(Status(ida_).memory_resident, 0u);
      ASSERT_GT(Status(ida_).memory_swapped_out, 0u);
    }
    swapped_before_ = Status(ida_).memory_swapped_out;
  }
  void TearDown() override {
    a_.reset();
    b_.reset();
    server_.reset();
  }

  std::unique_ptr<TestClient> Connect(const std::string& name,
                                      std::vector<std::pair<std::string, std::string>> settings,
                                      uint64_t* id) {
    return testing::ConnectAndHello(endpoint_, name, 2, settings, id);
  }
  ClientStatus Status(uint64_t id) { return testing::ClientStatusOf(*server_, id); }
  void Fill(TestClient& c, uint64_t ptr, uint64_t bytes, int seed) {
    std::vector<uint8_t> piece(kPiece);
    for (uint64_t at = 0; at < bytes; at += kPiece) {
      const uint64_t n = std::min(kPiece, bytes - at);
      for (uint64_t i = 0; i < n; ++i) piece[i] = PatternByte(at + i, seed);
      ASSERT_EQ(c.HtoD(ptr + at, piece.data(), n), CUDA_SUCCESS);
    }
  }
  // A reads its memory back (swapping it in if needed): every byte as A wrote it.
  void ExpectAIntact() {
    auto check = [&](uint64_t ptr, uint64_t bytes, int seed) {
      std::vector<uint8_t> piece(kPiece);
      for (uint64_t at = 0; at < bytes; at += kPiece) {
        const uint64_t n = std::min(kPiece, bytes - at);
        ASSERT_EQ(a_->DtoH(piece.data(), ptr + at, n), CUDA_SUCCESS);
        for (uint64_t i = 0; i < n; ++i) {
          ASSERT_EQ(piece[i], PatternByte(at + i, seed)) << "byte " << at + i;
        }
      }
    };
    check(pa_, kBig, 1);
    check(pa_small_, kSmall, 2);
  }

  // --- B's calls ---------------------------------------------------------
  CUresult HtoD(uint64_t dst, uint64_t n, uint64_t stream, bool async) {
    std::vector<uint8_t> junk(n, 0xee);
    wire::Writer w;
    w.Put<uint64_t>(dst).Put<uint64_t>(stream).Put<uint8_t>(async).PutRaw(junk.data(), n);
    return b_->Code(Op::kMemcpyHtoD, w);
  }
  // DtoH: the result, and whether any data came back.
  CUresult DtoH(uint64_t src, uint64_t n, uint64_t stream, bool async, bool* data) {
    wire::Writer w;
    w.Put<uint64_t>(src).Put<uint64_t>(n).Put<uint64_t>(stream).Put<uint8_t>(async);
    std::optional<TestClient::Result> r = b_->Call(Op::kMemcpyDtoH, w);
    if (!r) return CUDA_ERROR_UNKNOWN;
    *data = !r->body.empty();
    return r->result;
  }
  CUresult DtoD(uint64_t dst, uint64_t src, uint64_t n, uint64_t stream, bool async) {
    wire::Writer w;
    w.Put<uint64_t>(dst).Put<uint64_t>(src).Put<uint64_t>(n).Put<uint64_t>(stream);
    w.Put<uint8_t>(async);
    return b_->Code(Op::kMemcpyDtoD, w);
  }
  CUresult Memset(uint64_t dst, uint64_t pitch, uint8_t elem, uint64_t width, uint64_t height,
                  uint64_t stream, bool async) {
    wire::Writer w;
    w.Put<uint64_t>(dst).Put<uint64_t>(pitch).Put<uint32_t>(0x5a5a5a5a).Put<uint8_t>(elem);
    w.Put<uint64_t>(width).Put<uint64_t>(height).Put<uint64_t>(stream).Put<uint8_t>(async);
    return b_->Code(Op::kMemset, w);
  }
  // A 3D copy of width x height x depth bytes; host sides travel packed.
  CUresult Copy3D(bool src_host, uint64_t src, bool dst_host, uint64_t dst, uint64_t width,
                  uint64_t height, uint64_t depth, uint64_t stream, bool async, bool* data) {
    wire::Copy3D g{};
    g.src_kind = static_cast<uint8_t>(src_host ? wire::MemKind::kHost : wire::MemKind::kDevice);
    g.dst_kind = static_cast<uint8_t>(dst_host ? wire::MemKind::kHost : wire::MemKind::kDevice);
    g.src_ptr = src;
    g.dst_ptr = dst;
    g.src_pitch = g.dst_pitch = 1024;
    g.src_height = g.dst_height = height;
    g.width_bytes = width;
    g.height = height;
    g.depth = depth;
    wire::Writer w;
    wire::PutCopy3D(w, g);
    w.Put<uint64_t>(stream).Put<uint8_t>(async);
    if (src_host) {
      std::vector<uint8_t> junk(width * height * depth, 0xcd);
      w.PutRaw(junk.data(), junk.size());
    }
    std::optional<TestClient::Result> r = b_->Call(Op::kMemcpy3D, w);
    if (!r) return CUDA_ERROR_UNKNOWN;
    *data = !r->body.empty();
    return r->result;
  }

  scheduler::ManualClock clock_;
  std::string dir_;
  std::unique_ptr<Server> server_;
  std::string endpoint_;
  std::unique_ptr<TestClient> a_, b_;
  uint64_t ida_ = 0, idb_ = 0;
  uint64_t pa_ = 0, pa_small_ = 0, pb_ = 0, pb_small_ = 0;
  uint64_t swapped_before_ = 0;
};

TEST_P(IsolationTest, EveryPointerCallOnAnotherTenantsMemoryFails) {
  uint64_t stream = 0;
  ASSERT_EQ(b_->StreamCreate(0, &stream), CUDA_SUCCESS);
  // Control: the same payloads on B's own memory succeed, so every refusal
  // below is about whose memory it is, not a malformed request.
  for (const uint64_t s : {wire::kStreamNull, stream}) {
    for (const bool async : {false, true}) {
      bool data = false;
      ASSERT_EQ(HtoD(pb_, kProbe / 4, s, async), CUDA_SUCCESS);
      ASSERT_EQ(DtoH(pb_, kProbe / 4, s, async, &data), CUDA_SUCCESS);
      ASSERT_TRUE(data);
      ASSERT_EQ(DtoD(pb_ + kMiB, pb_, kProbe / 4, s, async), CUDA_SUCCESS);
      ASSERT_EQ(DtoD(pb_small_, pb_, 256, s, async), CUDA_SUCCESS);
      for (const uint8_t elem : {1, 2, 4}) {
        ASSERT_EQ(Memset(pb_, 0, elem, 64, 1, s, async), CUDA_SUCCESS) << +elem;
        ASSERT_EQ(Memset(pb_, 512, elem, 16, 4, s, async), CUDA_SUCCESS) << +elem;
      }
      ASSERT_EQ(Copy3D(false, pb_, true, 0, 256, 2, 1, s, async, &data), CUDA_SUCCESS);
      ASSERT_TRUE(data);
      ASSERT_EQ(Copy3D(true, 0, false, pb_, 256, 2, 1, s, async, &data), CUDA_SUCCESS);
      ASSERT_EQ(Copy3D(false, pb_, false, pb_ + kMiB, 256, 2, 2, s, async, &data), CUDA_SUCCESS);
    }
  }
  {
    std::optional<TestClient::Result> range =
        b_->Call(Op::kMemGetAddressRange, wire::Writer().Put<uint64_t>(pb_ + 100));
    ASSERT_TRUE(range);
    ASSERT_EQ(range->result, CUDA_SUCCESS);
  }
  // Addresses of A's: the starts, inside, the last bytes.
  const std::vector<std::pair<std::string, uint64_t>> targets = {
      {"a.base", pa_},        {"a.inside", pa_ + 5 * kMiB + 123},  {"a.tail", pa_ + kBig - kProbe},
      {"a.small", pa_small_}, {"a.small.inside", pa_small_ + 512},
  };
  for (const auto& [what, p] : targets) {
    SCOPED_TRACE(what);
    for (const uint64_t s : {wire::kStreamNull, stream}) {
      for (const bool async : {false, true}) {
        SCOPED_TRACE(async ? "async" : "sync");
        bool data = false;
        // cuMemcpyHtoD(Async): B writes A.
        EXPECT_EQ(HtoD(p, kProbe / 4, s, async), CUDA_ERROR_INVALID_VALUE);
        // cuMemcpyDtoH(Async): B reads A, and no bytes come back.
        EXPECT_EQ(DtoH(p, kProbe / 4, s, async, &data), CUDA_ERROR_INVALID_VALUE);
        EXPECT_FALSE(data);
        // cuMemcpyDtoD(Async) and cuMemcpy / cuMemcpyPeer (sent as DtoD):
        // A -> B, B -> A, A -> A.
        EXPECT_EQ(DtoD(pb_, p, kProbe / 4, s, async), CUDA_ERROR_INVALID_VALUE);
        EXPECT_EQ(DtoD(p, pb_, kProbe / 4, s, async), CUDA_ERROR_INVALID_VALUE);
        EXPECT_EQ(DtoD(pb_small_, p, 256, s, async), CUDA_ERROR_INVALID_VALUE);
        EXPECT_EQ(DtoD(p, p + 256, 256, s, async), CUDA_ERROR_INVALID_VALUE);
        // cuMemsetD8/D16/D32(Async) and cuMemsetD2D8/16/32(Async).
        for (const uint8_t elem : {1, 2, 4}) {
          EXPECT_EQ(Memset(p, 0, elem, 64, 1, s, async), CUDA_ERROR_INVALID_VALUE) << +elem;
          EXPECT_EQ(Memset(p, 512, elem, 16, 4, s, async), CUDA_ERROR_INVALID_VALUE) << +elem;
        }
        // cuMemcpy2D/3D(Async) with A's pointer on either side.
        EXPECT_EQ(Copy3D(false, p, true, 0, 256, 2, 1, s, async, &data), CUDA_ERROR_INVALID_VALUE);
        EXPECT_FALSE(data);
        EXPECT_EQ(Copy3D(true, 0, false, p, 256, 2, 1, s, async, &data), CUDA_ERROR_INVALID_VALUE);
        EXPECT_EQ(Copy3D(false, p, false, pb_, 256, 2, 2, s, async, &data),
                  CUDA_ERROR_INVALID_VALUE);
        EXPECT_EQ(Copy3D(false, pb_, false, p, 256, 2, 2, s, async, &data),
                  CUDA_ERROR_INVALID_VALUE);
        EXPECT_FALSE(data);
      }
    }
    // cuMemFree / cuMemFreeAsync of A's allocation.
    EXPECT_EQ(b_->MemFree(p), CUDA_ERROR_INVALID_VALUE);
    EXPECT_EQ(b_->Code(Op::kMemFreeAsync, wire::Writer().Put<uint64_t>(p).Put<uint64_t>(stream)),
              CUDA_ERROR_INVALID_VALUE);
    // cuMemGetAddressRange: the native driver answers NOT_FOUND for an
    // address it did not allocate; nothing about A's allocation comes back.
    std::optional<TestClient::Result> range =
        b_->Call(Op::kMemGetAddressRange, wire::Writer().Put<uint64_t>(p));
    ASSERT_TRUE(range);
    EXPECT_EQ(range->result, CUDA_ERROR_NOT_FOUND);
    EXPECT_TRUE(range->body.empty());
    // VMM calls on A's addresses.
    wire::Writer access;
    access.Put<uint64_t>(p).Put<uint64_t>(kProbe).Put<uint32_t>(1);
    access.Put<int32_t>(CU_MEM_LOCATION_TYPE_DEVICE).Put<int32_t>(0);
    access.Put<uint32_t>(CU_MEM_ACCESS_FLAGS_PROT_READWRITE);
    EXPECT_EQ(b_->Code(Op::kMemSetAccess, access), CUDA_ERROR_INVALID_VALUE);
    EXPECT_EQ(b_->Code(Op::kMemGetAccess, wire::Writer()
                                              .Put<int32_t>(CU_MEM_LOCATION_TYPE_DEVICE)
                                              .Put<int32_t>(0)
                                              .Put<uint64_t>(p)),
              CUDA_ERROR_INVALID_VALUE);
    EXPECT_EQ(b_->Code(Op::kMemRetainAllocationHandle, wire::Writer().Put<uint64_t>(p)),
              CUDA_ERROR_INVALID_VALUE);
    EXPECT_EQ(b_->Code(Op::kMemUnmap, wire::Writer().Put<uint64_t>(p).Put<uint64_t>(kProbe)),
              CUDA_ERROR_INVALID_VALUE);
    EXPECT_EQ(b_->Code(Op::kMemAddressFree, wire::Writer().Put<uint64_t>(p).Put<uint64_t>(kBig)),
              CUDA_ERROR_INVALID_VALUE);
    // cuTensorMapEncodeTiled / Im2col over A's memory.
    wire::TensorMapTiled t{};
    t.data_type = CU_TENSOR_MAP_DATA_TYPE_FLOAT32;
    t.rank = 2;
    t.address = p;
    t.dims[0] = 16;
    t.dims[1] = 4;
    t.strides[0] = 16 * 4;
    t.box[0] = t.box[1] = 4;
    t.element_strides[0] = t.element_strides[1] = 1;
    wire::Writer tiled;
    wire::PutTensorMapTiled(tiled, t);
    EXPECT_EQ(b_->Code(Op::kTensorMapEncodeTiled, tiled), CUDA_ERROR_INVALID_VALUE);
    wire::TensorMapIm2col im{};
    im.data_type = CU_TENSOR_MAP_DATA_TYPE_FLOAT16;
    im.rank = 3;
    im.address = p;
    im.dims[0] = 8;
    im.dims[1] = 4;
    im.dims[2] = 1;
    im.strides[0] = 8 * 2;
    im.strides[1] = 8 * 2 * 4;
    im.lower[0] = -1;
    im.upper[0] = 1;
    im.channels_per_pixel = 8;
    im.pixels_per_column = 4;
    for (uint32_t& e : im.element_strides) e = 1;
    wire::Writer im2col;
    wire::PutTensorMapIm2col(im2col, im);
    EXPECT_EQ(b_->Code(Op::kTensorMapEncodeIm2col, im2col), CUDA_ERROR_INVALID_VALUE);
  }

  // cuTensorMapReplaceAddress: B's own map pointed at A's memory.
  {
    wire::TensorMapTiled t{};
    t.data_type = CU_TENSOR_MAP_DATA_TYPE_FLOAT32;
    t.rank = 2;
    t.address = pb_;
    t.dims[0] = 16;
    t.dims[1] = 4;
    t.strides[0] = 16 * 4;
    t.box[0] = t.box[1] = 4;
    t.element_strides[0] = t.element_strides[1] = 1;
    wire::Writer w;
    wire::PutTensorMapTiled(w, t);
    std::optional<TestClient::Result> own = b_->Call(Op::kTensorMapEncodeTiled, w);
    ASSERT_TRUE(own);
    ASSERT_EQ(own->result, CUDA_SUCCESS);
    ASSERT_EQ(own->body.size(), 128u);
    for (uint64_t p : {pa_, pa_small_}) {
      wire::Writer r;
      r.PutRaw(own->body.data(), own->body.size()).Put<uint64_t>(p);
      EXPECT_EQ(b_->Code(Op::kTensorMapReplaceAddress, r), CUDA_ERROR_INVALID_VALUE);
    }
  }

  // cuMemMap of B's own physical memory over A's addresses.
  {
    wire::MemAllocProps props;
    props.type = CU_MEM_ALLOCATION_TYPE_PINNED;
    props.location_type = CU_MEM_LOCATION_TYPE_DEVICE;
    props.location_id = 0;
    wire::Writer create;
    create.Put<uint64_t>(2 * kMiB);
    wire::PutMemAllocProps(create, props);
    create.Put<uint64_t>(0);
    std::optional<TestClient::Result> h = b_->Call(Op::kMemCreate, create);
    ASSERT_TRUE(h);
    ASSERT_EQ(h->result, CUDA_SUCCESS);
    const uint64_t handle = h->reader().Get<uint64_t>();
    for (uint64_t p : {pa_, pa_small_ & ~(2 * kMiB - 1)}) {
      EXPECT_EQ(b_->Code(Op::kMemMap, wire::Writer()
                                          .Put<uint64_t>(p)
                                          .Put<uint64_t>(2 * kMiB)
                                          .Put<uint64_t>(0)
                                          .Put<uint64_t>(handle)
                                          .Put<uint64_t>(0)),
                CUDA_ERROR_INVALID_VALUE);
    }
    // cuMemAddressReserve with A's address as the hint: whatever B gets, it
    // is not A's range.
    std::optional<TestClient::Result> r = b_->Call(
        Op::kMemAddressReserve,
        wire::Writer().Put<uint64_t>(2 * kMiB).Put<uint64_t>(0).Put<uint64_t>(pa_).Put<uint64_t>(
            0));
    ASSERT_TRUE(r);
    if (r->result == CUDA_SUCCESS) {
      const uint64_t got = r->reader().Get<uint64_t>();
      EXPECT_TRUE(got + 2 * kMiB <= pa_ || got >= pa_ + kBig) << std::hex << got;
      EXPECT_TRUE(got + 2 * kMiB <= pa_small_ || got >= pa_small_ + kSmall) << std::hex << got;
    }
    EXPECT_EQ(b_->Code(Op::kMemRelease, wire::Writer().Put<uint64_t>(handle)), CUDA_SUCCESS);
  }

  // Weight dedup's probe (kDedupProbe) naming A's chunk: nothing attached.
  {
    wire::Writer w;
    w.Put<uint64_t>(kBig).Put<uint32_t>(1).Put<uint64_t>(pa_);
    std::array<uint8_t, 32> digest{};
    w.PutRaw(digest.data(), digest.size());
    std::optional<TestClient::Result> r = b_->Call(Op::kDedupProbe, w);
    ASSERT_TRUE(r);
    if (r->result == CUDA_SUCCESS) {
      wire::Reader rd = r->reader();
      rd.Get<uint64_t>();
      const uint32_t n = rd.Get<uint32_t>();
      for (uint32_t i = 0; i < n; ++i) EXPECT_EQ(rd.Get<uint8_t>(), 0) << "entry " << i;
    }
  }

  // B's own ranges overrunning their end are refused too.
  EXPECT_EQ(HtoD(pb_ + kBig - 16, 4096, wire::kStreamNull, false), CUDA_ERROR_INVALID_VALUE);
  EXPECT_EQ(HtoD(pb_small_ + kSmall - 16, 4096, wire::kStreamNull, false),
            CUDA_ERROR_INVALID_VALUE);
  EXPECT_EQ(Memset(pb_small_, 0, 1, kSmall + 1, 1, wire::kStreamNull, false),
            CUDA_ERROR_INVALID_VALUE);

  // A captured copy is checked when it is issued, as any other.
  {
    std::optional<TestClient::Result> g = b_->Call(
        Op::kStreamBeginCapture,
        wire::Writer().Put<uint64_t>(stream).Put<uint32_t>(CU_STREAM_CAPTURE_MODE_RELAXED));
    ASSERT_TRUE(g);
    if (g->result == CUDA_SUCCESS) {
      EXPECT_EQ(DtoD(pb_, pa_, 256, stream, true), CUDA_ERROR_INVALID_VALUE);
      EXPECT_EQ(Memset(pa_, 0, 1, 256, 1, stream, true), CUDA_ERROR_INVALID_VALUE);
      (void)b_->Call(Op::kStreamEndCapture, wire::Writer().Put<uint64_t>(stream).Put<uint8_t>(1));
    }
  }

  // None of it made A's memory come back, and B's own memory still works.
  if (swapped()) {
    EXPECT_EQ(Status(ida_).memory_swapped_out, swapped_before_);
  }
  std::vector<uint8_t> mine(256, 7), back(256);
  ASSERT_EQ(b_->HtoD(pb_, mine.data(), mine.size()), CUDA_SUCCESS);
  ASSERT_EQ(b_->DtoH(back.data(), pb_, back.size()), CUDA_SUCCESS);
  EXPECT_EQ(back, mine);

  ExpectAIntact();
  // A still owns its memory: it can free it.
  EXPECT_EQ(a_->MemFree(pa_), CUDA_SUCCESS);
  EXPECT_EQ(a_->MemFree(pa_small_), CUDA_SUCCESS);
}

// After A frees, its old addresses are not B's either.
TEST_P(IsolationTest, FreedMemoryOfAnotherTenantStaysOffLimits) {
  ASSERT_EQ(a_->MemFree(pa_), CUDA_SUCCESS);
  bool data = false;
  EXPECT_EQ(HtoD(pa_, 256, wire::kStreamNull, false), CUDA_ERROR_INVALID_VALUE);
  EXPECT_EQ(DtoH(pa_, 256, wire::kStreamNull, false, &data), CUDA_ERROR_INVALID_VALUE);
  EXPECT_FALSE(data);
  EXPECT_EQ(b_->MemFree(pa_), CUDA_ERROR_INVALID_VALUE);
  // A new allocation of B's never lands in A's range.
  uint64_t p = 0;
  ASSERT_EQ(b_->MemAlloc(kBig, &p), CUDA_SUCCESS);
  EXPECT_TRUE(p + kBig <= pa_ || p >= pa_ + kBig);
}

INSTANTIATE_TEST_SUITE_P(ResidentAndSwapped, IsolationTest, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& info) {
                           return info.param ? std::string("Swapped") : std::string("Resident");
                         });

}  // namespace
}  // namespace wooly::server
