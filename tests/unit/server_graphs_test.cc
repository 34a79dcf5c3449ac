// woolyd's graph and stream-capture ops end to end, in process: a Server on
// the fake backend (which records captured work and replays it), driven over
// a unix socket by the wire-level test client.
#include <cuda.h>

#include <atomic>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "gtest/gtest.h"
#include "server_test_client.h"
#include "wooly/fake/fake_backend.h"
#include "wooly/proto/wire.h"
#include "wooly/proto/wire_graph.h"
#include "wooly/server/cu_status.h"
#include "wooly/server/server.h"

namespace wooly::server {
namespace {

using wire::Op;
using wooly::fake::FakeBackend;
using wooly::fake::FakeBackendOptions;
using wooly::fake::FakeKernel;
using wooly::fake::FakeLaunch;
using wooly::fake::MakeFakeModuleImage;
using wooly::testing::ArgPacker;
using wooly::testing::TestClient;

constexpr absl::Duration kWait = absl::Seconds(60);
constexpr uint32_t kN = 16;

// (uint32_t* p, uint32_t n, uint32_t v): p[i] += v for i < n.
void RegisterAddKernel() {
  FakeKernel k;
  k.name = "wooly_graph_unit_add";
  k.params = {{0, 8}, {8, 4}, {12, 4}};
  k.run = [](const FakeLaunch& l) -> absl::Status {
    uint64_t p = 0;
    uint32_t n = 0, v = 0;
    std::memcpy(&p, l.args.data(), 8);
    std::memcpy(&n, l.args.data() + 8, 4);
    std::memcpy(&v, l.args.data() + 12, 4);
    auto* data = static_cast<uint32_t*>(l.host(p, uint64_t{n} * 4));
    if (n && data == nullptr) return CuError(CUDA_ERROR_ILLEGAL_ADDRESS, "add");
    for (uint32_t i = 0; i < n; ++i) data[i] += v;
    return absl::OkStatus();
  };
  fake::RegisterFakeKernel(k);
}

std::vector<uint8_t> AddArgs(uint64_t p, uint32_t v) {
  return ArgPacker().Add<uint64_t>(p).Add<uint32_t>(kN).Add<uint32_t>(v).bytes();
}

// Counts the stream waits the session issues (legacy-stream emulation).
class CountingBackend : public FakeBackend {
 public:
  using FakeBackend::FakeBackend;
  absl::Status StreamWaitEvent(Handle stream, Handle event, uint32_t flags) override {
    waits.fetch_add(1);
    return FakeBackend::StreamWaitEvent(stream, event, flags);
  }
  std::atomic<int> waits{0};
};

// The wire calls of the graph ops.
class GraphClient {
 public:
  explicit GraphClient(TestClient* c) : c_(c) {}

  CUresult OneIdReply(Op op, const wire::Writer& w, uint64_t* id) {
    std::optional<TestClient::Result> r = c_->Call(op, w);
    if (!r) return CUDA_ERROR_UNKNOWN;
    if (r->result == CUDA_SUCCESS) {
      wire::Reader rd = r->reader();
      *id = rd.Get<uint64_t>();
      if (!rd.ok()) return CUDA_ERROR_UNKNOWN;
    }
    return r->result;
  }
  CUresult Begin(uint64_t stream, uint64_t* graph, uint32_t mode = CU_STREAM_CAPTURE_MODE_GLOBAL) {
    return OneIdReply(Op::kStreamBeginCapture,
                      wire::Writer().Put<uint64_t>(stream).Put<uint32_t>(mode), graph);
  }
  CUresult End(uint64_t stream, uint64_t* graph, bool discard = false) {
    return OneIdReply(Op::kStreamEndCapture,
                      wire::Writer().Put<uint64_t>(stream).Put<uint8_t>(discard ? 1 : 0), graph);
  }
  CUresult Info(uint64_t stream, uint32_t* status, uint64_t* graph,
                std::vector<wire::GraphNodeRef>* deps) {
    std::optional<TestClient::Result> r =
        c_->Call(Op::kStreamGetCaptureInfo, wire::Writer().Put<uint64_t>(stream));
    if (!r) return CUDA_ERROR_UNKNOWN;
    if (r->result != CUDA_SUCCESS) return r->result;
    wire::Reader rd = r->reader();
    *status = rd.Get<uint32_t>();
    *graph = rd.Get<uint64_t>();
    *deps = wire::GetNodeList(rd);
    return rd.ok() ? CUDA_SUCCESS : CUDA_ERROR_UNKNOWN;
  }
  CUresult Nodes(Op op, uint64_t id, std::vector<wire::GraphNodeRef>* nodes) {
    std::optional<TestClient::Result> r = c_->Call(op, wire::Writer().Put<uint64_t>(id));
    if (!r) return CUDA_ERROR_UNKNOWN;
    if (r->result != CUDA_SUCCESS) return r->result;
    wire::Reader rd = r->reader();
    *nodes = wire::GetNodeList(rd);
    return rd.ok() ? CUDA_SUCCESS : CUDA_ERROR_UNKNOWN;
  }
  CUresult Instantiate(uint64_t graph, uint64_t* exec) {
    return OneIdReply(Op::kGraphInstantiate, wire::Writer().Put<uint64_t>(graph).Put<uint64_t>(0),
                      exec);
  }
  CUresult Launch(uint64_t exec, uint64_t stream) {
    return c_->Code(Op::kGraphLaunch, wire::Writer().Put<uint64_t>(exec).Put<uint64_t>(stream));
  }
  CUresult GetParams(uint64_t node, wire::KernelNodeParams* p) {
    std::optional<TestClient::Result> r =
        c_->Call(Op::kGraphKernelNodeGetParams, wire::Writer().Put<uint64_t>(node));
    if (!r) return CUDA_ERROR_UNKNOWN;
    if (r->result != CUDA_SUCCESS) return r->result;
    wire::Reader rd = r->reader();
    *p = wire::GetKernelNodeParams(rd);
    return rd.ok() ? CUDA_SUCCESS : CUDA_ERROR_UNKNOWN;
  }
  CUresult SetParams(uint64_t node, const wire::KernelNodeParams& p) {
    wire::Writer w;
    w.Put<uint64_t>(node);
    wire::PutKernelNodeParams(w, p);
    return c_->Code(Op::kGraphKernelNodeSetParams, w);
  }
  CUresult ExecSetParams(uint64_t exec, uint64_t node, const wire::KernelNodeParams& p) {
    wire::Writer w;
    w.Put<uint64_t>(exec).Put<uint64_t>(node);
    wire::PutKernelNodeParams(w, p);
    return c_->Code(Op::kGraphExecKernelNodeSetParams, w);
  }
  CUresult AddKernelNode(uint64_t graph, const std::vector<uint64_t>& deps,
                         const wire::KernelNodeParams& p, uint64_t* node) {
    wire::Writer w;
    w.Put<uint64_t>(graph);
    wire::PutNodeIds(w, deps);
    wire::PutKernelNodeParams(w, p);
    return OneIdReply(Op::kGraphAddKernelNode, w, node);
  }
  CUresult LaunchOn(uint64_t fn, uint64_t p, uint32_t v, uint64_t stream) {
    return c_->Launch(fn, 1, kN, AddArgs(p, v), stream);
  }
  CUresult MemsetAsync(uint64_t dst, uint32_t value, uint64_t stream) {
    wire::Writer w;
    w.Put<uint64_t>(dst).Put<uint64_t>(0).Put<uint32_t>(value).Put<uint8_t>(4);
    w.Put<uint64_t>(kN).Put<uint64_t>(1).Put<uint64_t>(stream).Put<uint8_t>(1);
    return c_->Code(Op::kMemset, w);
  }
  CUresult Record(uint64_t event, uint64_t stream) {
    return c_->Code(Op::kEventRecord,
                    wire::Writer().Put<uint64_t>(event).Put<uint64_t>(stream).Put<uint32_t>(0));
  }
  CUresult Wait(uint64_t stream, uint64_t event) {
    return c_->Code(Op::kStreamWaitEvent,
                    wire::Writer().Put<uint64_t>(stream).Put<uint64_t>(event).Put<uint32_t>(0));
  }
  std::vector<uint32_t> Read(uint64_t p) {
    std::vector<uint32_t> out(kN, 0xdeadbeef);
    EXPECT_EQ(c_->DtoH(out.data(), p, kN * 4), CUDA_SUCCESS);
    return out;
  }

 private:
  TestClient* c_;
};

class ServerGraphsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    RegisterAddKernel();
    dir_ = testing::MakeTempDir();
    ASSERT_FALSE(dir_.empty());
    ServerOptions options;
    options.listen = {"unix:" + dir_ + "/woolyd.sock"};
    auto backend = std::make_unique<CountingBackend>(FakeBackendOptions{});
    fake_ = backend.get();
    absl::StatusOr<std::unique_ptr<Server>> server = Server::Start(options, std::move(backend));
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    endpoint_ = server_->listen_addresses().at(0);
  }
  void TearDown() override {
    server_.reset();
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }

  // A connected client with the add kernel loaded, a 16-word buffer and a
  // stream created with `stream_flags`.
  struct Setup {
    std::unique_ptr<TestClient> c;
    uint64_t fn = 0, buf = 0, stream = 0;
  };
  Setup Connect(uint32_t stream_flags = CU_STREAM_NON_BLOCKING) {
    Setup s;
    s.c = TestClient::Connect(endpoint_);
    EXPECT_NE(s.c, nullptr);
    if (!s.c) return s;
    EXPECT_EQ(s.c->Hello("graphs"), CUDA_SUCCESS);
    uint64_t module = 0;
    EXPECT_EQ(s.c->LoadModule(MakeFakeModuleImage({"wooly_graph_unit_add"}), &module),
              CUDA_SUCCESS);
    EXPECT_EQ(s.c->GetFunction(module, "wooly_graph_unit_add", &s.fn), CUDA_SUCCESS);
    EXPECT_EQ(s.c->MemAlloc(kN * 4, &s.buf), CUDA_SUCCESS);
    EXPECT_EQ(s.c->Memset(s.buf, 0, 4, kN), CUDA_SUCCESS);
    EXPECT_EQ(s.c->StreamCreate(stream_flags, &s.stream), CUDA_SUCCESS);
    return s;
  }
  wire::KernelNodeParams AddParams(const Setup& s, uint32_t v) {
    wire::KernelNodeParams p;
    p.function = s.fn;
    p.block[0] = kN;
    p.args = AddArgs(s.buf, v);
    return p;
  }

  std::string dir_;
  CountingBackend* fake_ = nullptr;  // owned by server_
  std::unique_ptr<Server> server_;
  std::string endpoint_;
};

TEST_F(ServerGraphsTest, CaptureInstantiateAndLaunchTwice) {
  Setup s = Connect();
  GraphClient g(s.c.get());
  uint64_t graph = 0;
  ASSERT_EQ(g.Begin(s.stream, &graph), CUDA_SUCCESS);
  EXPECT_NE(graph, 0u);
  ASSERT_EQ(g.MemsetAsync(s.buf, 5, s.stream), CUDA_SUCCESS);
  ASSERT_EQ(g.LaunchOn(s.fn, s.buf, 1, s.stream), CUDA_SUCCESS);
  // Captured, not run.
  EXPECT_EQ(g.Read(s.buf), std::vector<uint32_t>(kN, 0));

  uint32_t status = 0;
  uint64_t info_graph = 0;
  std::vector<wire::GraphNodeRef> deps;
  ASSERT_EQ(g.Info(s.stream, &status, &info_graph, &deps), CUDA_SUCCESS);
  EXPECT_EQ(status, CU_STREAM_CAPTURE_STATUS_ACTIVE);
  EXPECT_EQ(info_graph, graph);
  ASSERT_EQ(deps.size(), 1u);
  EXPECT_EQ(deps[0].type, CU_GRAPH_NODE_TYPE_KERNEL);
  const uint64_t last_node = deps[0].node;

  uint64_t ended = 0;
  ASSERT_EQ(g.End(s.stream, &ended), CUDA_SUCCESS);
  EXPECT_EQ(ended, graph);
  ASSERT_EQ(g.Info(s.stream, &status, &info_graph, &deps), CUDA_SUCCESS);
  EXPECT_EQ(status, CU_STREAM_CAPTURE_STATUS_NONE);

  std::vector<wire::GraphNodeRef> nodes;
  ASSERT_EQ(g.Nodes(Op::kGraphGetNodes, graph, &nodes), CUDA_SUCCESS);
  ASSERT_EQ(nodes.size(), 2u);
  EXPECT_EQ(nodes[0].type, CU_GRAPH_NODE_TYPE_MEMSET);
  EXPECT_EQ(nodes[1].type, CU_GRAPH_NODE_TYPE_KERNEL);
  EXPECT_EQ(nodes[1].node, last_node);  // the same id for the same node
  std::vector<wire::GraphNodeRef> kernel_deps;
  ASSERT_EQ(g.Nodes(Op::kGraphNodeGetDependencies, nodes[1].node, &kernel_deps), CUDA_SUCCESS);
  ASSERT_EQ(kernel_deps.size(), 1u);
  EXPECT_EQ(kernel_deps[0].node, nodes[0].node);

  wire::KernelNodeParams p;
  ASSERT_EQ(g.GetParams(nodes[1].node, &p), CUDA_SUCCESS);
  EXPECT_EQ(p.function, s.fn);
  EXPECT_EQ(p.block[0], kN);
  EXPECT_EQ(p.args, AddArgs(s.buf, 1));
  EXPECT_EQ(g.GetParams(nodes[0].node, &p), CUDA_ERROR_INVALID_VALUE);  // a memset node

  uint64_t exec = 0;
  ASSERT_EQ(g.Instantiate(graph, &exec), CUDA_SUCCESS);
  ASSERT_EQ(g.Launch(exec, s.stream), CUDA_SUCCESS);
  EXPECT_EQ(g.Read(s.buf), std::vector<uint32_t>(kN, 6));
  // The replay starts from the captured memset again.
  ASSERT_EQ(s.c->Memset(s.buf, 100, 4, kN), CUDA_SUCCESS);
  ASSERT_EQ(g.Launch(exec, wire::kStreamNull), CUDA_SUCCESS);
  EXPECT_EQ(g.Read(s.buf), std::vector<uint32_t>(kN, 6));

  // Updating the executable graph's node changes only that exec.
  ASSERT_EQ(g.ExecSetParams(exec, nodes[1].node, AddParams(s, 10)), CUDA_SUCCESS);
  ASSERT_EQ(g.Launch(exec, s.stream), CUDA_SUCCESS);
  EXPECT_EQ(g.Read(s.buf), std::vector<uint32_t>(kN, 15));
  // Updating the graph's node changes later instantiations only.
  ASSERT_EQ(g.SetParams(nodes[1].node, AddParams(s, 20)), CUDA_SUCCESS);
  ASSERT_EQ(g.Launch(exec, s.stream), CUDA_SUCCESS);
  EXPECT_EQ(g.Read(s.buf), std::vector<uint32_t>(kN, 15));
  uint64_t exec2 = 0;
  ASSERT_EQ(g.Instantiate(graph, &exec2), CUDA_SUCCESS);
  ASSERT_EQ(g.Launch(exec2, s.stream), CUDA_SUCCESS);
  EXPECT_EQ(g.Read(s.buf), std::vector<uint32_t>(kN, 25));

  EXPECT_EQ(fake_->live_graphs(), 1u);
  EXPECT_EQ(fake_->live_graph_execs(), 2u);
  EXPECT_EQ(s.c->OneId(Op::kGraphExecDestroy, exec), CUDA_SUCCESS);
  EXPECT_EQ(s.c->OneId(Op::kGraphExecDestroy, exec2), CUDA_SUCCESS);
  EXPECT_EQ(s.c->OneId(Op::kGraphDestroy, graph), CUDA_SUCCESS);
  EXPECT_EQ(fake_->live_graphs(), 0u);
  EXPECT_EQ(fake_->live_graph_execs(), 0u);
  // Destroyed ids no longer resolve.
  EXPECT_EQ(s.c->OneId(Op::kGraphDestroy, graph), CUDA_ERROR_INVALID_HANDLE);
  EXPECT_EQ(g.GetParams(nodes[1].node, &p), CUDA_ERROR_INVALID_HANDLE);
  EXPECT_EQ(g.Launch(exec, s.stream), CUDA_ERROR_INVALID_HANDLE);
}

TEST_F(ServerGraphsTest, GraphsBuiltByHand) {
  Setup s = Connect();
  GraphClient g(s.c.get());
  uint64_t graph = 0;
  ASSERT_EQ(g.OneIdReply(Op::kGraphCreate, wire::Writer().Put<uint32_t>(0), &graph), CUDA_SUCCESS);
  uint64_t a = 0, b = 0;
  ASSERT_EQ(g.AddKernelNode(graph, {}, AddParams(s, 1), &a), CUDA_SUCCESS);
  ASSERT_EQ(g.AddKernelNode(graph, {a}, AddParams(s, 2), &b), CUDA_SUCCESS);
  std::vector<wire::GraphNodeRef> deps;
  ASSERT_EQ(g.Nodes(Op::kGraphNodeGetDependencies, b, &deps), CUDA_SUCCESS);
  ASSERT_EQ(deps.size(), 1u);
  EXPECT_EQ(deps[0].node, a);
  uint64_t exec = 0;
  ASSERT_EQ(g.Instantiate(graph, &exec), CUDA_SUCCESS);
  ASSERT_EQ(g.Launch(exec, s.stream), CUDA_SUCCESS);
  ASSERT_EQ(g.Launch(exec, s.stream), CUDA_SUCCESS);
  EXPECT_EQ(g.Read(s.buf), std::vector<uint32_t>(kN, 6));

  // Arguments shorter than the kernel's layout, and a dependency of another
  // graph, are refused.
  wire::KernelNodeParams short_args = AddParams(s, 1);
  short_args.args.resize(8);
  uint64_t node = 0;
  EXPECT_EQ(g.AddKernelNode(graph, {}, short_args, &node), CUDA_ERROR_INVALID_VALUE);
  uint64_t other = 0, other_node = 0;
  ASSERT_EQ(g.OneIdReply(Op::kGraphCreate, wire::Writer().Put<uint32_t>(0), &other), CUDA_SUCCESS);
  ASSERT_EQ(g.AddKernelNode(other, {}, AddParams(s, 1), &other_node), CUDA_SUCCESS);
  EXPECT_EQ(g.AddKernelNode(graph, {other_node}, AddParams(s, 1), &node), CUDA_ERROR_INVALID_VALUE);
  EXPECT_EQ(g.ExecSetParams(exec, other_node, AddParams(s, 1)), CUDA_ERROR_INVALID_VALUE);

  std::optional<TestClient::Result> dot =
      s.c->Call(Op::kGraphDebugDotPrint, wire::Writer().Put<uint64_t>(graph).Put<uint32_t>(0));
  ASSERT_TRUE(dot.has_value());
  ASSERT_EQ(dot->result, CUDA_SUCCESS);
  wire::Reader rd = dot->reader();
  EXPECT_TRUE(absl::StrContains(rd.GetStr(), "wooly_graph_unit_add"));
}

TEST_F(ServerGraphsTest, OtherClientsCannotUseGraphs) {
  Setup a = Connect();
  Setup b = Connect();
  GraphClient ga(a.c.get()), gb(b.c.get());
  uint64_t graph = 0, node = 0, exec = 0;
  ASSERT_EQ(ga.OneIdReply(Op::kGraphCreate, wire::Writer().Put<uint32_t>(0), &graph), CUDA_SUCCESS);
  ASSERT_EQ(ga.AddKernelNode(graph, {}, AddParams(a, 1), &node), CUDA_SUCCESS);
  ASSERT_EQ(ga.Instantiate(graph, &exec), CUDA_SUCCESS);

  uint64_t out = 0;
  wire::KernelNodeParams p;
  std::vector<wire::GraphNodeRef> nodes;
  EXPECT_EQ(gb.Instantiate(graph, &out), CUDA_ERROR_INVALID_HANDLE);
  EXPECT_EQ(gb.Nodes(Op::kGraphGetNodes, graph, &nodes), CUDA_ERROR_INVALID_HANDLE);
  EXPECT_EQ(gb.GetParams(node, &p), CUDA_ERROR_INVALID_HANDLE);
  EXPECT_EQ(gb.SetParams(node, AddParams(b, 1)), CUDA_ERROR_INVALID_HANDLE);
  EXPECT_EQ(gb.Launch(exec, b.stream), CUDA_ERROR_INVALID_HANDLE);
  EXPECT_EQ(gb.ExecSetParams(exec, node, AddParams(b, 1)), CUDA_ERROR_INVALID_HANDLE);
  EXPECT_EQ(b.c->OneId(Op::kGraphExecDestroy, exec), CUDA_ERROR_INVALID_HANDLE);
  EXPECT_EQ(b.c->OneId(Op::kGraphDestroy, graph), CUDA_ERROR_INVALID_HANDLE);
  // Nor can a client put another client's function into its own graph, or
  // capture on another client's stream.
  uint64_t own = 0, own_node = 0;
  ASSERT_EQ(gb.OneIdReply(Op::kGraphCreate, wire::Writer().Put<uint32_t>(0), &own), CUDA_SUCCESS);
  EXPECT_EQ(gb.AddKernelNode(own, {}, AddParams(a, 1), &own_node), CUDA_ERROR_INVALID_HANDLE);
  EXPECT_EQ(gb.Begin(a.stream, &out), CUDA_ERROR_INVALID_HANDLE);
  // A's objects still work.
  EXPECT_EQ(ga.Launch(exec, a.stream), CUDA_SUCCESS);
  EXPECT_EQ(ga.Read(a.buf), std::vector<uint32_t>(kN, 1));
}

TEST_F(ServerGraphsTest, DisconnectReleasesGraphsExecsAndOpenCaptures) {
  Setup keeper = Connect();
  const size_t streams_before = fake_->live_streams();
  {
    Setup s = Connect();
    GraphClient g(s.c.get());
    uint64_t graph = 0, node = 0, exec = 0, capture = 0;
    ASSERT_EQ(g.OneIdReply(Op::kGraphCreate, wire::Writer().Put<uint32_t>(0), &graph),
              CUDA_SUCCESS);
    ASSERT_EQ(g.AddKernelNode(graph, {}, AddParams(s, 1), &node), CUDA_SUCCESS);
    ASSERT_EQ(g.Instantiate(graph, &exec), CUDA_SUCCESS);
    // A capture left open, with work in it.
    ASSERT_EQ(g.Begin(s.stream, &capture), CUDA_SUCCESS);
    ASSERT_EQ(g.LaunchOn(s.fn, s.buf, 1, s.stream), CUDA_SUCCESS);
    EXPECT_EQ(fake_->live_graphs(), 2u);
    EXPECT_EQ(fake_->live_graph_execs(), 1u);
    ASSERT_TRUE(server_->WaitForSessionCount(2, kWait));
  }
  ASSERT_TRUE(server_->WaitForSessionCount(1, kWait));
  EXPECT_EQ(fake_->live_graphs(), 0u);
  EXPECT_EQ(fake_->live_graph_execs(), 0u);
  EXPECT_EQ(fake_->live_streams(), streams_before);
}

TEST_F(ServerGraphsTest, IllegalOperationsDuringCapture) {
  Setup s = Connect();
  GraphClient g(s.c.get());
  uint64_t graph = 0, out = 0;
  // The legacy stream never captures.
  EXPECT_EQ(g.Begin(wire::kStreamNull, &graph), CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED);
  EXPECT_EQ(g.Begin(wire::kStreamLegacy, &graph), CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED);
  EXPECT_EQ(g.End(s.stream, &out), CUDA_ERROR_ILLEGAL_STATE);

  ASSERT_EQ(g.Begin(s.stream, &graph), CUDA_SUCCESS);
  EXPECT_EQ(g.Begin(s.stream, &out), CUDA_ERROR_ILLEGAL_STATE);
  // Host memory cannot be captured (the graph would replay it in woolyd).
  const uint32_t words[kN] = {};
  EXPECT_EQ(s.c->HtoD(s.buf, words, sizeof(words), s.stream),
            CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED);
  // The capture is still usable: that copy was refused before the backend.
  ASSERT_EQ(g.LaunchOn(s.fn, s.buf, 1, s.stream), CUDA_SUCCESS);
  // Synchronizing a capturing stream invalidates the capture.
  EXPECT_EQ(s.c->OneId(Op::kStreamSynchronize, s.stream), CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED);
  uint32_t status = 0;
  uint64_t info_graph = 0;
  std::vector<wire::GraphNodeRef> deps;
  ASSERT_EQ(g.Info(s.stream, &status, &info_graph, &deps), CUDA_SUCCESS);
  EXPECT_EQ(status, CU_STREAM_CAPTURE_STATUS_INVALIDATED);
  EXPECT_EQ(g.LaunchOn(s.fn, s.buf, 1, s.stream), CUDA_ERROR_STREAM_CAPTURE_INVALIDATED);
  EXPECT_EQ(g.End(s.stream, &out), CUDA_ERROR_STREAM_CAPTURE_INVALIDATED);
  ASSERT_EQ(g.Info(s.stream, &status, &info_graph, &deps), CUDA_SUCCESS);
  EXPECT_EQ(status, CU_STREAM_CAPTURE_STATUS_NONE);
  EXPECT_EQ(fake_->live_graphs(), 0u);
  EXPECT_EQ(g.Read(s.buf), std::vector<uint32_t>(kN, 0));  // nothing ran

  // A capture the client invalidated is discarded at its end.
  ASSERT_EQ(g.Begin(s.stream, &graph), CUDA_SUCCESS);
  ASSERT_EQ(g.LaunchOn(s.fn, s.buf, 1, s.stream), CUDA_SUCCESS);
  ASSERT_EQ(g.End(s.stream, &out, /*discard=*/true), CUDA_SUCCESS);
  EXPECT_EQ(out, 0u);
  EXPECT_EQ(fake_->live_graphs(), 0u);
  EXPECT_EQ(s.c->OneId(Op::kGraphDestroy, graph), CUDA_ERROR_INVALID_HANDLE);
}

// libwooly's local cuMemFree during a capture asks for a context
// synchronization that skips capturing streams: it waits for the rest and
// leaves the capture intact. Without the flag the capture is invalidated,
// as by the driver's cuCtxSynchronize.
TEST_F(ServerGraphsTest, ContextSynchronizeCanSkipCapturingStreams) {
  Setup s = Connect();
  GraphClient g(s.c.get());
  uint64_t other = 0, graph = 0, out = 0;
  ASSERT_EQ(s.c->StreamCreate(CU_STREAM_NON_BLOCKING, &other), CUDA_SUCCESS);
  ASSERT_EQ(g.Begin(s.stream, &graph), CUDA_SUCCESS);
  ASSERT_EQ(g.LaunchOn(s.fn, s.buf, 1, s.stream), CUDA_SUCCESS);
  ASSERT_EQ(g.LaunchOn(s.fn, s.buf, 2, other), CUDA_SUCCESS);
  EXPECT_EQ(s.c->Code(Op::kCtxSynchronize, wire::Writer().Put<uint8_t>(1)), CUDA_SUCCESS);
  uint32_t status = 0;
  uint64_t info_graph = 0;
  std::vector<wire::GraphNodeRef> deps;
  ASSERT_EQ(g.Info(s.stream, &status, &info_graph, &deps), CUDA_SUCCESS);
  EXPECT_EQ(status, CU_STREAM_CAPTURE_STATUS_ACTIVE);
  EXPECT_EQ(g.Read(s.buf), std::vector<uint32_t>(kN, 2));  // only the uncaptured launch ran
  // A malformed flag field is refused.
  EXPECT_EQ(s.c->Code(Op::kCtxSynchronize, wire::Writer().Put<uint8_t>(1).Put<uint8_t>(0)),
            CUDA_ERROR_INVALID_VALUE);
  EXPECT_EQ(s.c->Code(Op::kCtxSynchronize, wire::Writer()), CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED);
  ASSERT_EQ(g.Info(s.stream, &status, &info_graph, &deps), CUDA_SUCCESS);
  EXPECT_EQ(status, CU_STREAM_CAPTURE_STATUS_INVALIDATED);
  EXPECT_EQ(g.End(s.stream, &out), CUDA_ERROR_STREAM_CAPTURE_INVALIDATED);
}

TEST_F(ServerGraphsTest, CrossStreamCaptureThroughEvents) {
  Setup s = Connect();
  GraphClient g(s.c.get());
  uint64_t side = 0, fork = 0, join = 0;
  ASSERT_EQ(s.c->StreamCreate(CU_STREAM_NON_BLOCKING, &side), CUDA_SUCCESS);
  ASSERT_EQ(s.c->EventCreate(CU_EVENT_DISABLE_TIMING, &fork), CUDA_SUCCESS);
  ASSERT_EQ(s.c->EventCreate(CU_EVENT_DISABLE_TIMING, &join), CUDA_SUCCESS);
  uint64_t second = 0;
  ASSERT_EQ(s.c->MemAlloc(kN * 4, &second), CUDA_SUCCESS);
  ASSERT_EQ(s.c->Memset(second, 0, 4, kN), CUDA_SUCCESS);

  uint64_t graph = 0, out = 0;
  ASSERT_EQ(g.Begin(s.stream, &graph), CUDA_SUCCESS);
  ASSERT_EQ(g.LaunchOn(s.fn, s.buf, 1, s.stream), CUDA_SUCCESS);
  ASSERT_EQ(g.Record(fork, s.stream), CUDA_SUCCESS);
  ASSERT_EQ(g.Wait(side, fork), CUDA_SUCCESS);  // side joins the capture
  uint32_t status = 0;
  uint64_t info_graph = 0;
  std::vector<wire::GraphNodeRef> deps;
  ASSERT_EQ(g.Info(side, &status, &info_graph, &deps), CUDA_SUCCESS);
  EXPECT_EQ(status, CU_STREAM_CAPTURE_STATUS_ACTIVE);
  EXPECT_EQ(info_graph, graph);
  ASSERT_EQ(g.LaunchOn(s.fn, second, 2, side), CUDA_SUCCESS);
  // Ending now would leave side's work unjoined; join it back first.
  ASSERT_EQ(g.Record(join, side), CUDA_SUCCESS);
  ASSERT_EQ(g.Wait(s.stream, join), CUDA_SUCCESS);
  // Only the origin stream ends the capture.
  EXPECT_EQ(g.End(side, &out), CUDA_ERROR_STREAM_CAPTURE_UNMATCHED);
  ASSERT_EQ(g.End(s.stream, &out), CUDA_SUCCESS);
  EXPECT_EQ(out, graph);
  ASSERT_EQ(g.Info(side, &status, &info_graph, &deps), CUDA_SUCCESS);
  EXPECT_EQ(status, CU_STREAM_CAPTURE_STATUS_NONE);

  std::vector<wire::GraphNodeRef> nodes;
  ASSERT_EQ(g.Nodes(Op::kGraphGetNodes, graph, &nodes), CUDA_SUCCESS);
  ASSERT_EQ(nodes.size(), 2u);
  std::vector<wire::GraphNodeRef> side_deps;
  ASSERT_EQ(g.Nodes(Op::kGraphNodeGetDependencies, nodes[1].node, &side_deps), CUDA_SUCCESS);
  ASSERT_EQ(side_deps.size(), 1u);
  EXPECT_EQ(side_deps[0].node, nodes[0].node);

  uint64_t exec = 0;
  ASSERT_EQ(g.Instantiate(graph, &exec), CUDA_SUCCESS);
  for (int i = 0; i < 3; ++i) ASSERT_EQ(g.Launch(exec, s.stream), CUDA_SUCCESS);
  EXPECT_EQ(g.Read(s.buf), std::vector<uint32_t>(kN, 3));
  EXPECT_EQ(g.Read(second), std::vector<uint32_t>(kN, 6));

  // Forking without joining back fails the capture.
  ASSERT_EQ(g.Begin(s.stream, &graph), CUDA_SUCCESS);
  ASSERT_EQ(g.Record(fork, s.stream), CUDA_SUCCESS);
  ASSERT_EQ(g.Wait(side, fork), CUDA_SUCCESS);
  ASSERT_EQ(g.LaunchOn(s.fn, second, 2, side), CUDA_SUCCESS);
  EXPECT_EQ(g.End(s.stream, &out), CUDA_ERROR_STREAM_CAPTURE_UNJOINED);
  ASSERT_EQ(g.Info(side, &status, &info_graph, &deps), CUDA_SUCCESS);
  EXPECT_EQ(status, CU_STREAM_CAPTURE_STATUS_NONE);
  EXPECT_EQ(fake_->live_graphs(), 1u);  // only the first capture's graph
}

TEST_F(ServerGraphsTest, LegacyStreamEmulationStaysOutOfCaptures) {
  Setup s = Connect(/*stream_flags=*/CU_STREAM_DEFAULT);  // a blocking stream
  GraphClient g(s.c.get());
  // Legacy-stream work the blocking stream would have to wait for...
  ASSERT_EQ(s.c->Memset(s.buf, 1, 4, kN), CUDA_SUCCESS);
  uint64_t graph = 0, out = 0;
  ASSERT_EQ(g.Begin(s.stream, &graph), CUDA_SUCCESS);
  const int waits = fake_->waits.load();
  // ...is not waited for inside the capture: that wait would cross the
  // capture's boundary.
  ASSERT_EQ(g.LaunchOn(s.fn, s.buf, 1, s.stream), CUDA_SUCCESS);
  EXPECT_EQ(fake_->waits.load(), waits);
  // The legacy stream may not join the capture implicitly.
  EXPECT_EQ(s.c->Memset(s.buf, 2, 4, kN), CUDA_ERROR_STREAM_CAPTURE_IMPLICIT);
  ASSERT_EQ(g.End(s.stream, &out), CUDA_SUCCESS);
  // After the capture the ordering applies again.
  ASSERT_EQ(g.LaunchOn(s.fn, s.buf, 1, s.stream), CUDA_SUCCESS);
  EXPECT_EQ(fake_->waits.load(), waits + 1);
  EXPECT_EQ(g.Read(s.buf), std::vector<uint32_t>(kN, 2));
}

}  // namespace
}  // namespace wooly::server
