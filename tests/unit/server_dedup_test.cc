// Weight dedup in woolyd (issue #6 part 4; node_memory.h, docs/memory.md) on
// the fake backend: clients with WOOLY_DEDUP=1 and overcommit on share whole
// 64 MiB chunks of identical content, verified by the server; API writes
// into a shared chunk get a private copy; a client without dedup never
// shares; a digest a client claims cannot plant content; the last free
// releases a shared chunk; shared chunks are never swapped out; kDedupProbe
// attaches already-resident content without its bytes being sent.
//
// The fake device has 512 MiB: 384 MiB (six 64 MiB chunks) are physical,
// and with 100% overcommit 768 MiB are admitted (server_overcommit_test.cc).
#include <cuda.h>

#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "overcommit_test_options.h"
#include "server_test_client.h"
#include "wooly/fake/fake_backend.h"
#include "wooly/proto/content_digest.h"
#include "wooly/proto/wire.h"
#include "wooly/scheduler/clock.h"
#include "wooly/server/metrics.h"
#include "wooly/server/node_memory.h"
#include "wooly/server/server.h"
#include "wooly/v1/admin.grpc.pb.h"

namespace wooly::server {
namespace {

using testing::TestClient;

constexpr uint64_t kMiB = uint64_t{1} << 20;
constexpr uint64_t kChunk = 64 * kMiB;
// Reads stay inside one chunk (the fake cannot copy across two mappings).
constexpr uint64_t kPiece = 4 * kMiB;

// The dedup digest of the kChunk bytes at `p`, as libwooly computes it.
wire::ContentDigest Digest(const uint8_t* p) {
  const wire::DigestInput in[] = {{p, kChunk}};
  return wire::ContentDigests(in, 4)[0];
}

// 64 MiB of content named by `seed`.
std::vector<uint8_t> Content(int seed) {
  std::vector<uint8_t> v(kChunk);
  uint64_t x = 0x9e3779b97f4a7c15ull * static_cast<uint64_t>(seed + 1);
  for (uint64_t i = 0; i < kChunk; i += 8) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    std::memcpy(v.data() + i, &x, 8);
  }
  return v;
}

struct ProbeReply {
  CUresult result = CUDA_ERROR_UNKNOWN;
  uint64_t chunk_bytes = 0;
  std::vector<uint8_t> attached;
};

class ServerDedupTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = testing::MakeTempDir();
    ServerOptions options = testing::OvercommitServerOptions(dir_);
    options.clock = clock_.AsClock();
    absl::StatusOr<std::unique_ptr<Server>> server = Server::Start(
        options, std::make_unique<fake::FakeBackend>(testing::OvercommitFakeOptions()));
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    endpoint_ = server_->listen_addresses()[0];
  }
  void TearDown() override { server_.reset(); }

  std::unique_ptr<TestClient> Connect(const std::string& name, bool dedup, uint64_t* id) {
    std::vector<std::pair<std::string, std::string>> settings;
    if (dedup) settings.emplace_back("WOOLY_DEDUP", "1");
    return testing::ConnectAndHello(endpoint_, name, 2, settings, id);
  }
  ClientStatus StatusOf(uint64_t id) { return testing::ClientStatusOf(*server_, id); }
  memory::NodeUsage Node() { return server_->Status().memory.node; }

  // Reads the chunk at `ptr` back and compares it with `want`.
  void Check(TestClient& c, uint64_t ptr, const std::vector<uint8_t>& want) {
    std::vector<uint8_t> piece(kPiece);
    for (uint64_t at = 0; at < want.size(); at += kPiece) {
      ASSERT_EQ(c.DtoH(piece.data(), ptr + at, kPiece), CUDA_SUCCESS) << "at " << at;
      ASSERT_EQ(std::memcmp(piece.data(), want.data() + at, kPiece), 0) << "piece at " << at;
    }
  }
  ProbeReply Probe(TestClient& c, uint64_t chunk_bytes,
                   const std::vector<std::pair<uint64_t, wire::ContentDigest>>& entries) {
    wire::Writer w;
    w.Put<uint64_t>(chunk_bytes).Put<uint32_t>(static_cast<uint32_t>(entries.size()));
    for (const auto& [va, digest] : entries) w.Put<uint64_t>(va).Put<wire::ContentDigest>(digest);
    ProbeReply out;
    std::optional<TestClient::Result> r = c.Call(wire::Op::kDedupProbe, w);
    if (!r) return out;
    out.result = r->result;
    if (r->result != CUDA_SUCCESS) return out;
    wire::Reader rd = r->reader();
    out.chunk_bytes = rd.Get<uint64_t>();
    const uint32_t n = rd.Get<uint32_t>();
    for (uint32_t i = 0; i < n && rd.ok(); ++i) out.attached.push_back(rd.Get<uint8_t>());
    EXPECT_TRUE(rd.ok());
    return out;
  }

  // Uploads `content` in kPiece copies: none covers a whole chunk, so the
  // chunk stays private until it is published.
  void UploadInPieces(TestClient& c, uint64_t ptr, const std::vector<uint8_t>& content) {
    for (uint64_t at = 0; at < content.size(); at += kPiece) {
      ASSERT_EQ(c.HtoD(ptr + at, content.data() + at, kPiece), CUDA_SUCCESS) << "at " << at;
    }
  }
  // kDedupPublish: the outcome per chunk, or nullopt when the call failed.
  std::optional<std::vector<uint8_t>> Publish(TestClient& c, uint64_t chunk_bytes,
                                              const std::vector<uint64_t>& vas) {
    wire::Writer w;
    w.Put<uint64_t>(chunk_bytes).Put<uint32_t>(static_cast<uint32_t>(vas.size()));
    for (uint64_t va : vas) w.Put<uint64_t>(va);
    std::optional<TestClient::Result> r = c.Call(wire::Op::kDedupPublish, w);
    if (!r || r->result != CUDA_SUCCESS) return std::nullopt;
    wire::Reader rd = r->reader();
    const uint32_t n = rd.Get<uint32_t>();
    std::vector<uint8_t> out;
    for (uint32_t i = 0; i < n && rd.ok(); ++i) out.push_back(rd.Get<uint8_t>());
    EXPECT_TRUE(rd.ok());
    return out;
  }

  scheduler::ManualClock clock_;
  std::string dir_;
  std::unique_ptr<Server> server_;
  std::string endpoint_;
};

// a and b each upload the same two chunks.
class SharedPairTest : public ServerDedupTest {
 protected:
  void SetUp() override {
    ServerDedupTest::SetUp();
    if (HasFatalFailure()) return;
    c0_ = Content(1);
    c1_ = Content(2);
    a_ = Connect("a", true, &ida_);
    b_ = Connect("b", true, &idb_);
    ASSERT_TRUE(a_ && b_);
    ASSERT_EQ(a_->MemAlloc(2 * kChunk, &pa_), CUDA_SUCCESS);
    ASSERT_EQ(b_->MemAlloc(2 * kChunk, &pb_), CUDA_SUCCESS);
    ASSERT_EQ(a_->HtoD(pa_, c0_.data(), kChunk), CUDA_SUCCESS);
    ASSERT_EQ(a_->HtoD(pa_ + kChunk, c1_.data(), kChunk), CUDA_SUCCESS);
    ASSERT_EQ(b_->HtoD(pb_, c0_.data(), kChunk), CUDA_SUCCESS);
    ASSERT_EQ(b_->HtoD(pb_ + kChunk, c1_.data(), kChunk), CUDA_SUCCESS);
  }
  std::vector<uint8_t> c0_, c1_;
  uint64_t ida_ = 0, idb_ = 0, pa_ = 0, pb_ = 0;
  std::unique_ptr<TestClient> a_, b_;
};

TEST_F(SharedPairTest, SecondUploadAttachesAndBothReadTheirBytes) {
  const memory::NodeUsage n = Node();
  EXPECT_EQ(n.allocated, 4 * kChunk);
  EXPECT_EQ(n.physical_used, 2 * kChunk);  // one copy of each chunk
  EXPECT_EQ(n.dedup_saved, 2 * kChunk);
  EXPECT_EQ(StatusOf(ida_).memory_shared, 2 * kChunk);
  EXPECT_EQ(StatusOf(idb_).memory_shared, 2 * kChunk);
  Check(*a_, pa_, c0_);
  Check(*a_, pa_ + kChunk, c1_);
  Check(*b_, pb_, c0_);
  Check(*b_, pb_ + kChunk, c1_);
  // Uploading the same bytes again changes nothing.
  ASSERT_EQ(b_->HtoD(pb_, c0_.data(), kChunk), CUDA_SUCCESS);
  EXPECT_EQ(Node().physical_used, 2 * kChunk);
}

// The admin API and the Prometheus series carry the per-client shared bytes
// and the node's savings.
TEST_F(SharedPairTest, AdminApiAndMetricsShowTheSharing) {
  auto channel = grpc::CreateChannel(server_->admin_address(), grpc::InsecureChannelCredentials());
  auto admin = wooly::v1::Admin::NewStub(channel);
  grpc::ClientContext ctx;
  wooly::v1::StatusReply st;
  ASSERT_TRUE(admin->GetStatus(&ctx, wooly::v1::StatusRequest(), &st).ok());
  EXPECT_EQ(st.memory().dedup_saved_bytes(), 2 * kChunk);
  ASSERT_EQ(st.clients_size(), 2);
  for (const wooly::v1::ClientInfo& c : st.clients()) {
    EXPECT_EQ(c.memory_shared_bytes(), 2 * kChunk) << c.client_id();
  }
  const std::string metrics = RenderMetrics(server_->Status(), {});
  EXPECT_THAT(metrics, ::testing::HasSubstr("wooly_memory_dedup_saved_bytes 134217728\n"));
  EXPECT_THAT(metrics, ::testing::HasSubstr("wooly_tenant_memory_shared_bytes{"));
}

TEST_F(SharedPairTest, MemsetIntoASharedChunkGivesTheWriterAPrivateCopy) {
  ASSERT_EQ(b_->Memset(pb_ + 100, 0xab, 1, 4096), CUDA_SUCCESS);
  std::vector<uint8_t> want = c0_;
  std::memset(want.data() + 100, 0xab, 4096);
  Check(*b_, pb_, want);
  Check(*a_, pa_, c0_);  // a still reads the original
  const memory::NodeUsage n = Node();
  EXPECT_EQ(n.physical_used, 3 * kChunk);
  EXPECT_EQ(n.dedup_saved, kChunk);
  EXPECT_EQ(StatusOf(idb_).memory_shared, kChunk);
}

TEST_F(SharedPairTest, PartialCopyIntoASharedChunkGivesTheWriterAPrivateCopy) {
  std::vector<uint8_t> patch(8192, 0x5c);
  ASSERT_EQ(a_->HtoD(pa_ + kChunk + 12345, patch.data(), patch.size()), CUDA_SUCCESS);
  std::vector<uint8_t> want = c1_;
  std::memcpy(want.data() + 12345, patch.data(), patch.size());
  Check(*a_, pa_ + kChunk, want);
  Check(*b_, pb_ + kChunk, c1_);
  EXPECT_EQ(StatusOf(ida_).memory_shared, kChunk);
  // A whole-chunk copy of different content replaces b's shared chunk with
  // content of its own (published anew); a is untouched.
  const std::vector<uint8_t> c9 = Content(9);
  ASSERT_EQ(b_->HtoD(pb_, c9.data(), kChunk), CUDA_SUCCESS);
  Check(*b_, pb_, c9);
  Check(*a_, pa_, c0_);
}

TEST_F(SharedPairTest, DeviceToDeviceCopyIntoASharedChunkIsCopyOnWrite) {
  // From b's chunk 1 into b's chunk 0 (each copy inside one mapping).
  ASSERT_EQ(b_->Code(wire::Op::kMemcpyDtoD, wire::Writer()
                                                .Put<uint64_t>(pb_ + 64)
                                                .Put<uint64_t>(pb_ + kChunk)
                                                .Put<uint64_t>(4096)
                                                .Put<uint64_t>(wire::kStreamNull)
                                                .Put<uint8_t>(0)),
            CUDA_SUCCESS);
  std::vector<uint8_t> want = c0_;
  std::memcpy(want.data() + 64, c1_.data(), 4096);
  Check(*b_, pb_, want);
  Check(*a_, pa_, c0_);
}

TEST_F(SharedPairTest, LastFreeReleasesTheSharedChunks) {
  ASSERT_EQ(a_->MemFree(pa_), CUDA_SUCCESS);
  EXPECT_EQ(Node().physical_used, 2 * kChunk);  // b still uses them
  EXPECT_EQ(Node().dedup_saved, 0u);
  Check(*b_, pb_, c0_);
  Check(*b_, pb_ + kChunk, c1_);
  ASSERT_EQ(b_->MemFree(pb_), CUDA_SUCCESS);
  EXPECT_EQ(Node().physical_used, 0u);
  EXPECT_EQ(Node().allocated, 0u);
  // Nothing is resident any more: a probe for the old content attaches
  // nothing.
  uint64_t p = 0;
  ASSERT_EQ(a_->MemAlloc(kChunk, &p), CUDA_SUCCESS);
  const ProbeReply r = Probe(*a_, kChunk, {{p, Digest(c0_.data())}});
  ASSERT_EQ(r.result, CUDA_SUCCESS);
  ASSERT_EQ(r.attached.size(), 1u);
  EXPECT_EQ(r.attached[0], 0);
}

TEST_F(SharedPairTest, SharedChunksAreNeverSwappedOut) {
  clock_.Advance(absl::Seconds(5));  // a and b are idle
  uint64_t idc = 0;
  auto c = Connect("c", false, &idc);
  ASSERT_TRUE(c);
  uint64_t pc = 0;
  // 128 MiB shared + 256 MiB fills the 384 MiB. The next chunk needs room:
  // the idle clients' shared chunks are never evicted, so c's own memory
  // (it is not busy while it allocates) goes to the host pool instead.
  ASSERT_EQ(c->MemAlloc(4 * kChunk, &pc), CUDA_SUCCESS);
  uint64_t more = 0;
  ASSERT_EQ(c->MemAlloc(kChunk, &more), CUDA_SUCCESS);
  EXPECT_EQ(StatusOf(idc).memory_swapped_out, kChunk);
  EXPECT_EQ(StatusOf(ida_).memory_swapped_out, 0u);
  EXPECT_EQ(StatusOf(idb_).memory_swapped_out, 0u);
  Check(*a_, pa_, c0_);
  Check(*b_, pb_ + kChunk, c1_);
}

TEST_F(SharedPairTest, ProbeAttachesResidentContentWithoutItsBytes) {
  uint64_t idc = 0;
  auto c = Connect("c", true, &idc);
  ASSERT_TRUE(c);
  // Asking for the chunk size.
  ProbeReply ask = Probe(*c, 0, {});
  ASSERT_EQ(ask.result, CUDA_SUCCESS);
  EXPECT_EQ(ask.chunk_bytes, kChunk);
  EXPECT_TRUE(ask.attached.empty());
  uint64_t pc = 0;
  ASSERT_EQ(c->MemAlloc(3 * kChunk, &pc), CUDA_SUCCESS);
  const std::vector<uint8_t> other = Content(7);
  const ProbeReply r = Probe(*c, kChunk,
                             {{pc, Digest(c0_.data())},
                              {pc + kChunk, Digest(c1_.data())},
                              {pc + 2 * kChunk, Digest(other.data())},
                              {pc + 4096, Digest(c0_.data())}});
  ASSERT_EQ(r.result, CUDA_SUCCESS);
  EXPECT_EQ(r.chunk_bytes, kChunk);
  EXPECT_EQ(r.attached, (std::vector<uint8_t>{1, 1, 0, 0}));
  Check(*c, pc, c0_);
  Check(*c, pc + kChunk, c1_);
  EXPECT_EQ(StatusOf(idc).memory_shared, 2 * kChunk);
  EXPECT_EQ(Node().dedup_saved, 4 * kChunk);
  // A wrong chunk size attaches nothing and tells the right one.
  const ProbeReply wrong = Probe(*c, kChunk / 2, {{pc, Digest(c0_.data())}});
  EXPECT_EQ(wrong.chunk_bytes, kChunk);
  EXPECT_TRUE(wrong.attached.empty());
  // Another client's range is refused entry by entry.
  const ProbeReply foreign = Probe(*c, kChunk, {{pa_, Digest(c0_.data())}});
  ASSERT_EQ(foreign.result, CUDA_SUCCESS);
  EXPECT_EQ(foreign.attached, (std::vector<uint8_t>{0}));
}

TEST_F(ServerDedupTest, ClientWithoutDedupNeverShares) {
  uint64_t ida = 0, idc = 0;
  auto a = Connect("a", true, &ida);
  auto c = Connect("c", false, &idc);
  ASSERT_TRUE(a && c);
  const std::vector<uint8_t> c0 = Content(1);
  uint64_t pa = 0, pc = 0;
  ASSERT_EQ(a->MemAlloc(kChunk, &pa), CUDA_SUCCESS);
  ASSERT_EQ(c->MemAlloc(kChunk, &pc), CUDA_SUCCESS);
  ASSERT_EQ(a->HtoD(pa, c0.data(), kChunk), CUDA_SUCCESS);
  ASSERT_EQ(c->HtoD(pc, c0.data(), kChunk), CUDA_SUCCESS);
  EXPECT_EQ(StatusOf(idc).memory_shared, 0u);
  EXPECT_EQ(Node().physical_used, 2 * kChunk);
  EXPECT_EQ(Node().dedup_saved, 0u);
  // Its probes attach nothing: dedup is not available to it.
  const ProbeReply r = Probe(*c, kChunk, {{pc, Digest(c0.data())}});
  ASSERT_EQ(r.result, CUDA_SUCCESS);
  EXPECT_EQ(r.chunk_bytes, 0u);
  EXPECT_TRUE(r.attached.empty());
  Check(*c, pc, c0);
  Check(*a, pa, c0);
}

TEST_F(ServerDedupTest, ClaimedDigestCannotPlantContent) {
  uint64_t idm = 0, idv = 0;
  auto mallory = Connect("mallory", true, &idm);
  auto victim = Connect("victim", true, &idv);
  ASSERT_TRUE(mallory && victim);
  const std::vector<uint8_t> weights = Content(1);
  const std::vector<uint8_t> planted = Content(66);
  const wire::ContentDigest weights_digest = Digest(weights.data());
  uint64_t pm = 0, pv = 0;
  ASSERT_EQ(mallory->MemAlloc(kChunk, &pm), CUDA_SUCCESS);
  ASSERT_EQ(victim->MemAlloc(kChunk, &pv), CUDA_SUCCESS);
  // Mallory claims the victim's digest for her chunk, then sends other
  // bytes: the claim attaches nothing, and the server files her bytes under
  // the digest it computes itself.
  ProbeReply r = Probe(*mallory, kChunk, {{pm, weights_digest}});
  EXPECT_EQ(r.attached, (std::vector<uint8_t>{0}));
  ASSERT_EQ(mallory->HtoD(pm, planted.data(), kChunk), CUDA_SUCCESS);
  EXPECT_EQ(StatusOf(idm).memory_shared, kChunk);  // published, as her own content
  // The victim's probe and upload find nothing of Mallory's.
  r = Probe(*victim, kChunk, {{pv, weights_digest}});
  EXPECT_EQ(r.attached, (std::vector<uint8_t>{0}));
  ASSERT_EQ(victim->HtoD(pv, weights.data(), kChunk), CUDA_SUCCESS);
  Check(*victim, pv, weights);
  EXPECT_EQ(Node().dedup_saved, 0u);
  EXPECT_EQ(Node().physical_used, 2 * kChunk);
}

// kDedupPublish: chunks uploaded in pieces (as libwooly's staged copies
// arrive) are read back and hashed by the server, then published or
// attached; bad entries are answered 0 one by one.
TEST_F(ServerDedupTest, PublishAfterUploadSharesWhatTheDeviceHolds) {
  uint64_t ida = 0, idb = 0, idc = 0;
  auto a = Connect("a", true, &ida);
  auto b = Connect("b", true, &idb);
  auto c = Connect("c", false, &idc);
  ASSERT_TRUE(a && b && c);
  const std::vector<uint8_t> c0 = Content(4);
  uint64_t pa = 0, pb = 0, pc = 0;
  ASSERT_EQ(a->MemAlloc(kChunk, &pa), CUDA_SUCCESS);
  ASSERT_EQ(b->MemAlloc(2 * kChunk, &pb), CUDA_SUCCESS);
  ASSERT_EQ(c->MemAlloc(kChunk, &pc), CUDA_SUCCESS);
  UploadInPieces(*a, pa, c0);
  UploadInPieces(*b, pb, c0);
  UploadInPieces(*c, pc, c0);
  EXPECT_EQ(StatusOf(ida).memory_shared, 0u);
  EXPECT_EQ(Node().physical_used, 4 * kChunk);

  EXPECT_EQ(Publish(*a, kChunk, {pa}), (std::vector<uint8_t>{1}));  // published
  EXPECT_EQ(StatusOf(ida).memory_shared, kChunk);
  // b's copy is attached to it: its own memory is released. Then: already
  // shared; not a chunk start; a's chunk.
  EXPECT_EQ(Publish(*b, kChunk, {pb, pb, pb + 4096, pa}), (std::vector<uint8_t>{2, 3, 0, 0}));
  EXPECT_EQ(StatusOf(idb).memory_shared, kChunk);
  EXPECT_EQ(Node().physical_used, 3 * kChunk);  // a's (shared), b's second, c's
  EXPECT_EQ(Node().dedup_saved, kChunk);
  // A wrong chunk size, or a client without dedup: nothing happens.
  EXPECT_EQ(Publish(*b, kChunk / 2, {pb + kChunk}), (std::vector<uint8_t>{0}));
  EXPECT_EQ(Publish(*c, kChunk, {pc}), (std::vector<uint8_t>{0}));
  EXPECT_EQ(StatusOf(idc).memory_shared, 0u);
  Check(*a, pa, c0);
  Check(*b, pb, c0);
  Check(*c, pc, c0);
  // A write after publishing is copy-on-write: b's bytes stay.
  std::vector<uint8_t> changed(kPiece, 0x5a);
  ASSERT_EQ(a->HtoD(pa, changed.data(), kPiece), CUDA_SUCCESS);
  Check(*b, pb, c0);
  EXPECT_EQ(StatusOf(ida).memory_shared, 0u);
  // Malformed: a count that does not match the entries.
  wire::Writer bad;
  bad.Put<uint64_t>(kChunk).Put<uint32_t>(2).Put<uint64_t>(pa);
  std::optional<TestClient::Result> r = a->Call(wire::Op::kDedupPublish, bad);
  ASSERT_TRUE(r.has_value());
  EXPECT_NE(r->result, CUDA_SUCCESS);
}

// What a tenant publishes is filed under the digest of the bytes the device
// holds, so it can never stand in for other content.
TEST_F(ServerDedupTest, PublishedContentIsFiledUnderItsOwnDigest) {
  uint64_t idm = 0, idv = 0;
  auto mallory = Connect("mallory", true, &idm);
  auto victim = Connect("victim", true, &idv);
  ASSERT_TRUE(mallory && victim);
  const std::vector<uint8_t> weights = Content(1), planted = Content(66);
  uint64_t pm = 0, pv = 0;
  ASSERT_EQ(mallory->MemAlloc(kChunk, &pm), CUDA_SUCCESS);
  ASSERT_EQ(victim->MemAlloc(kChunk, &pv), CUDA_SUCCESS);
  UploadInPieces(*mallory, pm, planted);
  EXPECT_EQ(Publish(*mallory, kChunk, {pm}), (std::vector<uint8_t>{1}));
  EXPECT_EQ(Probe(*victim, kChunk, {{pv, Digest(weights.data())}}).attached,
            (std::vector<uint8_t>{0}));
  EXPECT_EQ(Probe(*victim, kChunk, {{pv, Digest(planted.data())}}).attached,
            (std::vector<uint8_t>{1}));  // her bytes, under their own digest
  Check(*victim, pv, planted);
}

TEST_F(ServerDedupTest, CopiesThatAreNotWholeChunksStayPrivate) {
  uint64_t ida = 0;
  auto a = Connect("a", true, &ida);
  ASSERT_TRUE(a);
  const std::vector<uint8_t> c0 = Content(3);
  uint64_t pa = 0;
  ASSERT_EQ(a->MemAlloc(2 * kChunk, &pa), CUDA_SUCCESS);
  // Two halves: no single copy covers the chunk.
  ASSERT_EQ(a->HtoD(pa, c0.data(), kChunk / 2), CUDA_SUCCESS);
  ASSERT_EQ(a->HtoD(pa + kChunk / 2, c0.data() + kChunk / 2, kChunk / 2), CUDA_SUCCESS);
  EXPECT_EQ(StatusOf(ida).memory_shared, 0u);
  Check(*a, pa, c0);
}

}  // namespace
}  // namespace wooly::server
