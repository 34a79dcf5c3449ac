// VRAM overcommit in woolyd (issue #6; node_memory.h) on the fake backend:
// admission beyond physical memory, CUDA_ERROR_OUT_OF_MEMORY beyond the
// admitted total, idle clients swapped out and their bytes intact after
// they run again, noswap and priority protection, and cleanup at
// disconnect. Clients speak the framed protocol to an in-process server; a
// manual clock decides who is idle.
//
// The fake device has 512 MiB: NodeMemory reserves a quarter (its reserve is
// capped at total / 4), so 384 MiB (six 64 MiB chunks) are physical, and
// with 100% overcommit 768 MiB are admitted.
#include <cuda.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "overcommit_test_options.h"
#include "server_test_client.h"
#include "wooly/cli/format.h"
#include "wooly/fake/fake_backend.h"
#include "wooly/proto/wire.h"
#include "wooly/scheduler/clock.h"
#include "wooly/server/metrics.h"
#include "wooly/server/node_memory.h"
#include "wooly/server/server.h"
#include "wooly/v1/admin.grpc.pb.h"

namespace wooly::server {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using testing::TestClient;

constexpr uint64_t kMiB = uint64_t{1} << 20;
constexpr uint64_t kPhysical = 384 * kMiB;
constexpr uint64_t kAdmitted = 768 * kMiB;
// Copies stay inside one 64 MiB chunk (the fake backend cannot copy across
// two VMM mappings).
constexpr uint64_t kPiece = 4 * kMiB;

uint8_t PatternByte(uint64_t i, int seed) {
  return static_cast<uint8_t>((i * 31) ^ (i >> 13) ^ (seed * 0x5b));
}

class OvercommitTest : public ::testing::Test {
 protected:
  // Lets a derived fixture change woolyd's options.
  virtual void Tweak(ServerOptions& options) {}

  void SetUp() override {
    dir_ = testing::MakeTempDir();
    ServerOptions options = testing::OvercommitServerOptions(dir_);
    options.clock = clock_.AsClock();
    Tweak(options);
    auto backend = std::make_unique<fake::FakeBackend>(testing::OvercommitFakeOptions());
    fake_ = backend.get();
    absl::StatusOr<std::unique_ptr<Server>> server = Server::Start(options, std::move(backend));
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    endpoint_ = server_->listen_addresses()[0];
  }
  void TearDown() override { server_.reset(); }

  std::unique_ptr<TestClient> Connect(
      const std::string& name, int priority = 2,
      std::vector<std::pair<std::string, std::string>> settings = {}, uint64_t* id = nullptr) {
    return testing::ConnectAndHello(endpoint_, name, priority, settings, id);
  }
  ClientStatus StatusOf(uint64_t id) { return testing::ClientStatusOf(*server_, id); }
  memory::NodeUsage Node() { return server_->Status().memory.node; }

  // Writes the pattern of `seed` over [ptr, ptr + bytes) through the session.
  void Fill(TestClient& c, uint64_t ptr, uint64_t bytes, int seed) {
    std::vector<uint8_t> piece(kPiece);
    for (uint64_t at = 0; at < bytes; at += kPiece) {
      const uint64_t n = std::min(kPiece, bytes - at);
      for (uint64_t i = 0; i < n; ++i) piece[i] = PatternByte(at + i, seed);
      ASSERT_EQ(c.HtoD(ptr + at, piece.data(), n), CUDA_SUCCESS) << "at " << at;
    }
  }
  // Reads [ptr, ptr + bytes) back and compares every byte with the pattern.
  void Check(TestClient& c, uint64_t ptr, uint64_t bytes, int seed) {
    std::vector<uint8_t> piece(kPiece);
    for (uint64_t at = 0; at < bytes; at += kPiece) {
      const uint64_t n = std::min(kPiece, bytes - at);
      ASSERT_EQ(c.DtoH(piece.data(), ptr + at, n), CUDA_SUCCESS) << "at " << at;
      for (uint64_t i = 0; i < n; ++i) {
        ASSERT_EQ(piece[i], PatternByte(at + i, seed)) << "byte " << at + i;
      }
    }
  }
  // cuMemGetAddressRange of `ptr`: the allocation's base.
  uint64_t BaseOf(TestClient& c, uint64_t ptr) {
    std::optional<TestClient::Result> r =
        c.Call(wire::Op::kMemGetAddressRange, wire::Writer().Put<uint64_t>(ptr));
    if (!r || r->result != CUDA_SUCCESS) return 0;
    return r->reader().Get<uint64_t>();
  }

  scheduler::ManualClock clock_;
  std::string dir_;
  fake::FakeBackend* fake_ = nullptr;
  std::unique_ptr<Server> server_;
  std::string endpoint_;
};

TEST_F(OvercommitTest, StatusShowsTheNodesMemory) {
  const NodeMemoryStatus s = server_->Status().memory;
  EXPECT_TRUE(s.enabled);
  EXPECT_EQ(s.overcommit_percent, 100u);
  EXPECT_EQ(s.node.physical_bytes, kPhysical);
  EXPECT_EQ(s.node.admission_limit, kAdmitted);
  EXPECT_EQ(s.node.allocated, 0u);
}

TEST_F(OvercommitTest, AdmitsBeyondPhysicalAndRefusesBeyondTheAdmittedTotal) {
  uint64_t id1 = 0, id2 = 0;
  auto a = Connect("a", 2, {}, &id1);
  auto b = Connect("b", 2, {}, &id2);
  ASSERT_TRUE(a && b);
  uint64_t pa = 0, pb = 0, pb2 = 0, small = 0, more = 0;
  ASSERT_EQ(a->MemAlloc(256 * kMiB, &pa), CUDA_SUCCESS);
  ASSERT_EQ(b->MemAlloc(256 * kMiB, &pb), CUDA_SUCCESS);  // 512 MiB > 384 physical
  ASSERT_EQ(b->MemAlloc(254 * kMiB, &pb2), CUDA_SUCCESS);
  // Small allocations are sub-allocated and charged to 256 bytes.
  ASSERT_EQ(a->MemAlloc(64 << 10, &small), CUDA_SUCCESS);
  EXPECT_EQ(b->MemAlloc(2 * kMiB, &more), CUDA_ERROR_OUT_OF_MEMORY);
  memory::NodeUsage n = Node();
  EXPECT_LE(n.allocated, kAdmitted);
  EXPECT_GT(n.allocated, kPhysical);
  EXPECT_EQ(n.overcommitted, n.allocated - kPhysical);
  EXPECT_LE(n.physical_used, kPhysical);
  EXPECT_GT(n.swapped_out, 0u);
  // The pointers are addresses in each client's own range.
  EXPECT_NE(pa, pb);
  EXPECT_EQ(BaseOf(*a, pa + 12345), pa);
  EXPECT_EQ(StatusOf(id1).bytes_allocated, 256 * kMiB + (64 << 10));
  const ClientStatus sb = StatusOf(id2);
  EXPECT_EQ(sb.memory_resident + sb.memory_swapped_out, 510 * kMiB);
  // Freeing returns admission.
  ASSERT_EQ(b->MemFree(pb2), CUDA_SUCCESS);
  EXPECT_EQ(b->MemAlloc(2 * kMiB, &more), CUDA_SUCCESS);
  EXPECT_EQ(b->MemFree(pb + 4096), CUDA_ERROR_INVALID_VALUE);  // not an allocation's start
}

TEST_F(OvercommitTest, IdleClientIsSwappedOutAndItsBytesSurvive) {
  uint64_t ida = 0, idb = 0;
  auto a = Connect("a", 2, {}, &ida);
  auto b = Connect("b", 2, {}, &idb);
  ASSERT_TRUE(a && b);
  uint64_t pa = 0, pb = 0;
  ASSERT_EQ(a->MemAlloc(256 * kMiB, &pa), CUDA_SUCCESS);
  Fill(*a, pa, 256 * kMiB, 1);
  clock_.Advance(absl::Seconds(2));  // a is idle now
  ASSERT_EQ(b->MemAlloc(256 * kMiB, &pb), CUDA_SUCCESS);
  // 384 MiB physical: 128 MiB of a's had to go to the host pool.
  ClientStatus sa = StatusOf(ida);
  EXPECT_EQ(sa.memory_swapped_out, 128 * kMiB);
  EXPECT_EQ(sa.memory_resident, 128 * kMiB);
  Fill(*b, pb, 256 * kMiB, 2);  // b runs: its memory is resident
  EXPECT_EQ(StatusOf(idb).memory_resident, 256 * kMiB);

  // a runs again: its memory comes back (b's is evicted) at the same
  // addresses, every byte as written.
  Check(*a, pa, 256 * kMiB, 1);
  EXPECT_EQ(StatusOf(ida).memory_resident, 256 * kMiB);
  EXPECT_EQ(StatusOf(idb).memory_swapped_out, 128 * kMiB);
  EXPECT_EQ(BaseOf(*a, pa), pa);
  Check(*b, pb, 256 * kMiB, 2);
  EXPECT_EQ(BaseOf(*b, pb + 100 * kMiB), pb);

  const memory::NodeUsage n = Node();
  EXPECT_GE(n.swap_out_bytes, 384 * kMiB);
  EXPECT_GE(n.swap_in_bytes, 256 * kMiB);
  EXPECT_EQ(n.allocated, 512 * kMiB);
  EXPECT_LE(n.physical_used, kPhysical);
}

// The pinned host pool holds only what is overcommitted. A swap-in that
// evicted all its room before swapping anything in would hold the victim's
// bytes and its own there at once; a chunk-sized group at a time fits.
class SmallHostPoolTest : public OvercommitTest {
 protected:
  void Tweak(ServerOptions& options) override {
    options.swap_host_pool_bytes = 192 * kMiB;
    options.swap_in_group_bytes = 64 * kMiB;
  }
};

TEST_F(SmallHostPoolTest, SwapInTakesTurnsWithItsEvictions) {
  uint64_t ida = 0, idb = 0;
  auto a = Connect("a", 2, {}, &ida);
  auto b = Connect("b", 2, {}, &idb);
  ASSERT_TRUE(a && b);
  uint64_t pa = 0, pb = 0;
  ASSERT_EQ(a->MemAlloc(256 * kMiB, &pa), CUDA_SUCCESS);
  Fill(*a, pa, 256 * kMiB, 1);
  clock_.Advance(absl::Seconds(2));
  ASSERT_EQ(b->MemAlloc(256 * kMiB, &pb), CUDA_SUCCESS);  // 128 MiB of a goes out
  Fill(*b, pb, 256 * kMiB, 2);
  clock_.Advance(absl::Seconds(2));
  // a's 128 MiB come back while 128 MiB of b go out: 256 MiB would not fit
  // in the 192 MiB pool at once.
  Check(*a, pa, 256 * kMiB, 1);
  EXPECT_EQ(StatusOf(ida).memory_resident, 256 * kMiB);
  EXPECT_EQ(StatusOf(idb).memory_swapped_out, 128 * kMiB);
  EXPECT_LE(Node().host_pool_used, 192 * kMiB);
  clock_.Advance(absl::Seconds(2));
  Check(*b, pb, 256 * kMiB, 2);
  EXPECT_EQ(StatusOf(idb).memory_resident, 256 * kMiB);
}

TEST_F(OvercommitTest, MemsetAndDeviceCopiesSeeSwappedMemory) {
  uint64_t ida = 0;
  auto a = Connect("a", 2, {}, &ida);
  auto b = Connect("b");
  ASSERT_TRUE(a && b);
  uint64_t pa = 0, pa2 = 0, pb = 0;
  ASSERT_EQ(a->MemAlloc(64 * kMiB, &pa), CUDA_SUCCESS);
  ASSERT_EQ(a->MemAlloc(64 * kMiB, &pa2), CUDA_SUCCESS);
  ASSERT_EQ(a->Memset(pa, 0xab, 1, 64 * kMiB), CUDA_SUCCESS);
  clock_.Advance(absl::Seconds(2));
  ASSERT_EQ(b->MemAlloc(384 * kMiB, &pb), CUDA_SUCCESS);  // evicts all of a
  EXPECT_EQ(StatusOf(ida).memory_swapped_out, 128 * kMiB);
  wire::Writer w;
  w.Put<uint64_t>(pa2).Put<uint64_t>(pa).Put<uint64_t>(kPiece);
  w.Put<uint64_t>(wire::kStreamNull).Put<uint8_t>(0);
  ASSERT_EQ(a->Code(wire::Op::kMemcpyDtoD, w), CUDA_SUCCESS);
  std::vector<uint8_t> back(kPiece);
  ASSERT_EQ(a->DtoH(back.data(), pa2, kPiece), CUDA_SUCCESS);
  for (uint8_t v : back) ASSERT_EQ(v, 0xab);
}

TEST_F(OvercommitTest, NoswapClientIsNeverEvicted) {
  uint64_t ida = 0;
  auto a = Connect("a", 2, {{"WOOLY_NOSWAP", "1"}}, &ida);
  auto b = Connect("b");
  ASSERT_TRUE(a && b);
  uint64_t pa = 0, pb = 0;
  ASSERT_EQ(a->MemAlloc(256 * kMiB, &pa), CUDA_SUCCESS);
  clock_.Advance(absl::Seconds(60));
  // Within the admitted total, but only a's memory could make room.
  EXPECT_EQ(b->MemAlloc(256 * kMiB, &pb), CUDA_ERROR_OUT_OF_MEMORY);
  EXPECT_EQ(StatusOf(ida).memory_swapped_out, 0u);
  EXPECT_EQ(StatusOf(ida).memory_resident, 256 * kMiB);
  EXPECT_EQ(b->MemAlloc(128 * kMiB, &pb), CUDA_SUCCESS);
  EXPECT_EQ(Node().allocated, 384 * kMiB);
}

TEST_F(OvercommitTest, ActiveHigherPriorityClientIsNotEvictedForALowerOne) {
  uint64_t idh = 0;
  auto hi = Connect("hi", 0, {}, &idh);
  auto lo = Connect("lo", 4);
  ASSERT_TRUE(hi && lo);
  uint64_t ph = 0, pl = 0;
  ASSERT_EQ(hi->MemAlloc(256 * kMiB, &ph), CUDA_SUCCESS);
  Fill(*hi, ph, kPiece, 3);  // active: its last command just ended
  EXPECT_EQ(lo->MemAlloc(256 * kMiB, &pl), CUDA_ERROR_OUT_OF_MEMORY);
  EXPECT_EQ(StatusOf(idh).memory_swapped_out, 0u);
  // Once idle it is a victim like any other.
  clock_.Advance(absl::Seconds(2));
  ASSERT_EQ(lo->MemAlloc(256 * kMiB, &pl), CUDA_SUCCESS);
  EXPECT_EQ(StatusOf(idh).memory_swapped_out, 128 * kMiB);
  Check(*hi, ph, kPiece, 3);
}

// cuMemFreeAsync of cuMemAlloc memory: NodeMemory frees it (the driver's
// stream-ordered free does not know VMM-backed memory).
TEST_F(OvercommitTest, FreeAsyncReturnsOvercommittedMemory) {
  auto a = Connect("a");
  ASSERT_TRUE(a);
  uint64_t pa = 0;
  ASSERT_EQ(a->MemAlloc(256 * kMiB, &pa), CUDA_SUCCESS);
  Fill(*a, pa, kPiece, 4);
  EXPECT_EQ(a->Code(wire::Op::kMemFreeAsync,
                    wire::Writer().Put<uint64_t>(pa).Put<uint64_t>(wire::kStreamNull)),
            CUDA_SUCCESS);
  EXPECT_EQ(Node().allocated, 0u);
  EXPECT_EQ(Node().physical_used, 0u);
  EXPECT_EQ(a->MemFree(pa), CUDA_ERROR_INVALID_VALUE);   // already freed
  ASSERT_EQ(a->MemAlloc(kPhysical, &pa), CUDA_SUCCESS);  // all of it is back
}

TEST_F(OvercommitTest, DisconnectFreesEverythingEvenWhileSwapped) {
  auto a = Connect("a");
  auto b = Connect("b");
  ASSERT_TRUE(a && b);
  uint64_t pa = 0, pb = 0, pa_small = 0;
  ASSERT_EQ(a->MemAlloc(256 * kMiB, &pa), CUDA_SUCCESS);
  ASSERT_EQ(a->MemAlloc(1000, &pa_small), CUDA_SUCCESS);
  clock_.Advance(absl::Seconds(2));
  ASSERT_EQ(b->MemAlloc(320 * kMiB, &pb), CUDA_SUCCESS);
  EXPECT_GT(Node().swapped_out, 0u);
  a->Close();
  ASSERT_TRUE(server_->WaitForSessionCount(1, absl::Seconds(10)));
  memory::NodeUsage n = Node();
  EXPECT_EQ(n.allocated, 320 * kMiB);
  EXPECT_EQ(n.swapped_out, 0u);
  EXPECT_EQ(n.host_pool_used, 0u);
  b->Close();
  ASSERT_TRUE(server_->WaitForSessionCount(0, absl::Seconds(10)));
  n = Node();
  EXPECT_EQ(n.allocated, 0u);
  EXPECT_EQ(n.physical_used, 0u);
  EXPECT_EQ(n.resident, 0u);
  EXPECT_EQ(n.clients, 0u);
  EXPECT_EQ(n.teardown_errors, 0u);
  EXPECT_EQ(fake_->live_allocation_handles(), 0u);
  EXPECT_EQ(fake_->live_mappings(), 0u);
}

TEST_F(OvercommitTest, TenantMemoryLimitStillApplies) {
  auto a = Connect("a", 2, {{"WOOLY_MEMORY_LIMIT", "64MiB"}});
  ASSERT_TRUE(a);
  uint64_t p = 0;
  EXPECT_EQ(a->MemAlloc(100 * kMiB, &p), CUDA_ERROR_OUT_OF_MEMORY);
  EXPECT_EQ(Node().allocated, 0u);
  ASSERT_EQ(a->MemAlloc(64 * kMiB, &p), CUDA_SUCCESS);
  EXPECT_EQ(Node().allocated, 64 * kMiB);
}

TEST_F(OvercommitTest, ForeignPointersAreRefused) {
  auto a = Connect("a");
  auto b = Connect("b");
  ASSERT_TRUE(a && b);
  uint64_t pa = 0;
  ASSERT_EQ(a->MemAlloc(64 * kMiB, &pa), CUDA_SUCCESS);
  std::vector<uint8_t> buf(4096);
  EXPECT_EQ(b->DtoH(buf.data(), pa, buf.size()), CUDA_ERROR_INVALID_VALUE);
  EXPECT_EQ(b->MemFree(pa), CUDA_ERROR_INVALID_VALUE);
}

// What status shows: the admin API's fields, wooly-cli's text and JSON, and
// the Prometheus series.
TEST_F(OvercommitTest, StatusAdminCliAndMetricsShowTheMemory) {
  uint64_t ida = 0;
  auto a = Connect("a", 2, {}, &ida);
  auto b = Connect("b");
  ASSERT_TRUE(a && b);
  uint64_t pa = 0, pb = 0;
  ASSERT_EQ(a->MemAlloc(256 * kMiB, &pa), CUDA_SUCCESS);
  clock_.Advance(absl::Seconds(2));
  ASSERT_EQ(b->MemAlloc(256 * kMiB, &pb), CUDA_SUCCESS);

  auto channel = grpc::CreateChannel(server_->admin_address(), grpc::InsecureChannelCredentials());
  auto admin = wooly::v1::Admin::NewStub(channel);
  grpc::ClientContext ctx;
  wooly::v1::StatusReply st;
  ASSERT_TRUE(admin->GetStatus(&ctx, wooly::v1::StatusRequest(), &st).ok());
  const wooly::v1::MemoryStatus& m = st.memory();
  EXPECT_TRUE(m.overcommit_enabled());
  EXPECT_EQ(m.overcommit_percent(), 100u);
  EXPECT_EQ(m.physical_bytes(), kPhysical);
  EXPECT_EQ(m.admission_limit_bytes(), kAdmitted);
  EXPECT_EQ(m.admitted_bytes(), 512 * kMiB);
  EXPECT_EQ(m.overcommitted_bytes(), 128 * kMiB);
  EXPECT_EQ(m.swapped_bytes(), 128 * kMiB);
  EXPECT_EQ(m.swap_out_bytes_total(), 128 * kMiB);
  EXPECT_EQ(m.physical_used_bytes(), kPhysical);
  ASSERT_EQ(st.clients_size(), 2);
  const wooly::v1::ClientInfo& ca =
      st.clients(0).client_id() == ida ? st.clients(0) : st.clients(1);
  EXPECT_EQ(ca.memory_resident_bytes(), 128 * kMiB);
  EXPECT_EQ(ca.memory_swapped_bytes(), 128 * kMiB);
  EXPECT_EQ(ca.memory_shared_bytes(), 0u);

  const std::string text = cli::RenderStatus(st);
  EXPECT_THAT(text, HasSubstr("VRAM pool: 384.00 MiB physical (384.00 MiB used), 512.00 MiB "
                              "admitted of 768.00 MiB (+100%), 128.00 MiB overcommitted\n"));
  EXPECT_THAT(text, HasSubstr("Swap:      128.00 MiB swapped out; 128.00 MiB out, 0 B in"));
  EXPECT_THAT(text, HasSubstr("RESIDENT"));
  EXPECT_THAT(text, HasSubstr("SWAPPED"));
  const std::string json = cli::StatusToJson(st);
  EXPECT_THAT(json, HasSubstr("\"memory_swapped_bytes\": 134217728"));
  EXPECT_THAT(json, HasSubstr("\"overcommitted_bytes\": 134217728"));

  const std::string metrics = RenderMetrics(server_->Status(), {});
  EXPECT_THAT(metrics, HasSubstr("wooly_memory_physical_used_bytes 402653184\n"));
  EXPECT_THAT(metrics, HasSubstr("wooly_memory_admitted_bytes 536870912\n"));
  EXPECT_THAT(metrics, HasSubstr("wooly_swap_out_bytes_total 134217728\n"));
  EXPECT_THAT(metrics, HasSubstr("wooly_swap_in_bytes_total 0\n"));
  EXPECT_THAT(metrics, HasSubstr("# TYPE wooly_swap_out_bytes_total counter"));
  EXPECT_THAT(metrics, HasSubstr("wooly_tenant_memory_resident_bytes{"));
  EXPECT_THAT(metrics, HasSubstr("wooly_tenant_memory_swapped_bytes{"));
}

// A sticky error resets the shared context, which destroys every device
// object: overcommit starts afresh for the clients that come after, and
// swapping works again.
TEST_F(OvercommitTest, StartsAfreshAfterAContextReset) {
  auto a = Connect("a");
  ASSERT_TRUE(a);
  uint64_t pa = 0;
  ASSERT_EQ(a->MemAlloc(256 * kMiB, &pa), CUDA_SUCCESS);
  Fill(*a, pa, kPiece, 1);
  fake_->InjectStickyError(CUDA_ERROR_ILLEGAL_ADDRESS);
  std::vector<uint8_t> piece(kPiece);
  EXPECT_EQ(a->DtoH(piece.data(), pa, kPiece), CUDA_ERROR_ILLEGAL_ADDRESS);
  EXPECT_EQ(server_->context()->resets(), 1u);
  a->Close();
  ASSERT_TRUE(server_->WaitForSessionCount(0, absl::Seconds(10)));

  uint64_t idb = 0;
  auto b = Connect("b", 2, {}, &idb);
  auto c = Connect("c");
  ASSERT_TRUE(b && c);
  EXPECT_EQ(Node().allocated, 0u);
  uint64_t pb = 0, pc = 0;
  ASSERT_EQ(b->MemAlloc(256 * kMiB, &pb), CUDA_SUCCESS);
  Fill(*b, pb, 256 * kMiB, 2);
  clock_.Advance(absl::Seconds(2));
  ASSERT_EQ(c->MemAlloc(256 * kMiB, &pc), CUDA_SUCCESS);
  EXPECT_EQ(StatusOf(idb).memory_swapped_out, 128 * kMiB);
  Check(*b, pb, 256 * kMiB, 2);
  EXPECT_EQ(Node().allocated, 512 * kMiB);
}

// Three clients whose memory does not fit together take turns concurrently:
// swaps run with NodeMemory's lock released, victims are busy or mid-swap
// while others plan, and every byte still survives.
TEST_F(OvercommitTest, ConcurrentClientsKeepTheirBytes) {
  constexpr int kClients = 3;
  constexpr uint64_t kBytes = 160 * kMiB;  // 480 MiB in all, 384 physical
  std::vector<std::unique_ptr<TestClient>> clients;
  std::vector<uint64_t> ptrs(kClients);
  for (int i = 0; i < kClients; ++i) {
    clients.push_back(Connect("c" + std::to_string(i)));
    ASSERT_TRUE(clients.back());
    ASSERT_EQ(clients.back()->MemAlloc(kBytes, &ptrs[i]), CUDA_SUCCESS);
  }
  std::vector<std::thread> threads;
  std::vector<int> failures(kClients, 0);
  for (int i = 0; i < kClients; ++i) {
    threads.emplace_back([&, i] {
      TestClient& c = *clients[i];
      std::vector<uint8_t> piece(kPiece);
      for (int round = 0; round < 2; ++round) {
        const int seed = 10 * i + round;
        for (uint64_t at = 0; at < kBytes; at += kPiece) {
          for (uint64_t j = 0; j < kPiece; ++j) piece[j] = PatternByte(at + j, seed);
          if (c.HtoD(ptrs[i] + at, piece.data(), kPiece) != CUDA_SUCCESS) ++failures[i];
        }
        for (uint64_t at = 0; at < kBytes; at += kPiece) {
          if (c.DtoH(piece.data(), ptrs[i] + at, kPiece) != CUDA_SUCCESS) {
            ++failures[i];
            continue;
          }
          for (uint64_t j = 0; j < kPiece; ++j) {
            if (piece[j] != PatternByte(at + j, seed)) {
              ++failures[i];
              break;
            }
          }
        }
      }
    });
  }
  for (std::thread& t : threads) t.join();
  for (int i = 0; i < kClients; ++i) EXPECT_EQ(failures[i], 0) << "client " << i;
  const memory::NodeUsage n = Node();
  EXPECT_GT(n.swap_out_bytes, 0u);
  EXPECT_LE(n.physical_used, kPhysical);
  EXPECT_EQ(n.allocated, kClients * kBytes);
}

// Device memory used outside the pool (modules, library state, pools of
// other clients) grew past the reserve: a cuMemCreate fails although the
// ledger has room. NodeMemory lowers the capacity it plans with to what the
// device has, evicts an idle client and retries; admission is unchanged.
TEST_F(OvercommitTest, DeviceShortOutsideThePoolEvictsInsteadOfFailing) {
  uint64_t ida = 0, idb = 0;
  auto a = Connect("a", 2, {}, &ida);
  auto b = Connect("b", 2, {}, &idb);
  ASSERT_TRUE(a && b);
  uint64_t pa = 0, pb = 0;
  ASSERT_EQ(a->MemAlloc(256 * kMiB, &pa), CUDA_SUCCESS);
  Fill(*a, pa, 256 * kMiB, 1);
  clock_.Advance(absl::Seconds(2));  // a is idle now
  // 192 MiB outside the pool: the device has 64 MiB free, the ledger 128.
  absl::StatusOr<DevPtr> outside = fake_->MemAlloc(192 * kMiB);
  ASSERT_TRUE(outside.ok()) << outside.status();
  ASSERT_EQ(b->MemAlloc(128 * kMiB, &pb), CUDA_SUCCESS);
  // Capacity: 256 MiB of the pool's + 64 free - the margin, to 64 MiB.
  memory::NodeUsage n = Node();
  EXPECT_EQ(n.physical_capacity, 256 * kMiB);
  EXPECT_EQ(n.physical_bytes, kPhysical);
  EXPECT_EQ(n.admission_limit, kAdmitted);
  EXPECT_LE(n.physical_used, n.physical_capacity);
  EXPECT_EQ(StatusOf(ida).memory_swapped_out, 128 * kMiB);
  Fill(*b, pb, 128 * kMiB, 2);

  // a runs again (b's memory goes to make room) with every byte intact.
  Check(*a, pa, 256 * kMiB, 1);
  EXPECT_EQ(StatusOf(ida).memory_resident, 256 * kMiB);
  EXPECT_EQ(StatusOf(idb).memory_swapped_out, 128 * kMiB);
  Check(*b, pb, 128 * kMiB, 2);
  n = Node();
  EXPECT_LE(n.physical_used, 256 * kMiB);
  EXPECT_EQ(n.allocated, 384 * kMiB);
  ASSERT_TRUE(fake_->MemFree(*outside).ok());
}

// The same during a swap-in: the ledger has room for the client's chunks
// but the device does not; the capacity is lowered, an idle client is
// evicted, and the swap-in completes.
TEST_F(OvercommitTest, DeviceShortDuringASwapInEvictsAndCompletes) {
  uint64_t ida = 0, idb = 0;
  auto a = Connect("a", 2, {}, &ida);
  auto b = Connect("b", 2, {}, &idb);
  ASSERT_TRUE(a && b);
  uint64_t pa = 0, pb = 0;
  ASSERT_EQ(a->MemAlloc(256 * kMiB, &pa), CUDA_SUCCESS);
  Fill(*a, pa, 256 * kMiB, 1);
  clock_.Advance(absl::Seconds(2));
  ASSERT_EQ(b->MemAlloc(256 * kMiB, &pb), CUDA_SUCCESS);
  ASSERT_EQ(StatusOf(ida).memory_swapped_out, 128 * kMiB);
  ASSERT_EQ(b->MemFree(pb), CUDA_SUCCESS);
  ASSERT_EQ(b->MemAlloc(128 * kMiB, &pb), CUDA_SUCCESS);
  Fill(*b, pb, 128 * kMiB, 2);
  clock_.Advance(absl::Seconds(2));  // both idle; 256 MiB of the pool's used
  // 192 MiB outside the pool: the device has 64 MiB free, the ledger 128,
  // and a needs 128 to swap in.
  absl::StatusOr<DevPtr> outside = fake_->MemAlloc(192 * kMiB);
  ASSERT_TRUE(outside.ok()) << outside.status();
  Check(*a, pa, 256 * kMiB, 1);
  EXPECT_EQ(StatusOf(ida).memory_resident, 256 * kMiB);
  EXPECT_EQ(StatusOf(idb).memory_swapped_out, 128 * kMiB);
  EXPECT_EQ(Node().physical_capacity, 256 * kMiB);
  Check(*b, pb, 128 * kMiB, 2);
  EXPECT_EQ(StatusOf(idb).memory_resident, 128 * kMiB);
  ASSERT_TRUE(fake_->MemFree(*outside).ok());
}

// When the device is short and nothing can be evicted, the allocation is
// CUDA_ERROR_OUT_OF_MEMORY, and the client that held the memory keeps it.
TEST_F(OvercommitTest, DeviceShortWithNothingEvictableIsOutOfMemory) {
  uint64_t ida = 0;
  auto a = Connect("a", 2, {{"WOOLY_NOSWAP", "1"}}, &ida);
  auto b = Connect("b");
  ASSERT_TRUE(a && b);
  uint64_t pa = 0, pb = 0;
  ASSERT_EQ(a->MemAlloc(192 * kMiB, &pa), CUDA_SUCCESS);
  Fill(*a, pa, 192 * kMiB, 1);
  clock_.Advance(absl::Seconds(60));
  absl::StatusOr<DevPtr> outside = fake_->MemAlloc(256 * kMiB);  // 64 MiB free
  ASSERT_TRUE(outside.ok()) << outside.status();
  EXPECT_EQ(b->MemAlloc(128 * kMiB, &pb), CUDA_ERROR_OUT_OF_MEMORY);
  const memory::NodeUsage n = Node();
  EXPECT_EQ(n.physical_capacity, 192 * kMiB);
  EXPECT_EQ(n.allocated, 192 * kMiB);  // the refusal kept nothing
  EXPECT_EQ(StatusOf(ida).memory_resident, 192 * kMiB);
  EXPECT_EQ(StatusOf(ida).memory_swapped_out, 0u);
  Check(*a, pa, 192 * kMiB, 1);
  ASSERT_TRUE(fake_->MemFree(*outside).ok());
}

}  // namespace
}  // namespace wooly::server
