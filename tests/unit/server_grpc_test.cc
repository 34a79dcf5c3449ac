// woolyd's gRPC services: Admin status/clients, Session Hello and the
// Commands stream (same dispatcher as the socket transport).
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>

#include "absl/synchronization/mutex.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "server_test_client.h"
#include "wooly/fake/fake_backend.h"
#include "wooly/proto/wire.h"
#include "wooly/server/server.h"
#include "wooly/v1/admin.grpc.pb.h"
#include "wooly/v1/session.grpc.pb.h"

namespace wooly::server {
namespace {

using ::testing::HasSubstr;
using wire::Op;
using wooly::fake::FakeBackend;
using wooly::testing::TestClient;

constexpr absl::Duration kWait = absl::Seconds(60);

// A settable wall clock.
class FakeClock {
 public:
  absl::Time Now() {
    absl::MutexLock lock(&mu_);
    return now_;
  }
  void Advance(absl::Duration d) {
    absl::MutexLock lock(&mu_);
    now_ += d;
  }

 private:
  absl::Mutex mu_;
  absl::Time now_ = absl::FromUnixSeconds(1700000000);
};

std::string GrpcTarget(const std::string& endpoint) {
  // "tcp:host:port" -> "host:port"; unix endpoints are already gRPC targets.
  return endpoint.rfind("tcp:", 0) == 0 ? endpoint.substr(4) : endpoint;
}

std::string Frame(Op op, uint32_t seq, const wire::Writer& body) {
  wire::FrameHeader h{wire::kMagic, static_cast<uint16_t>(op), 0,
                      static_cast<uint32_t>(body.size()), seq};
  std::string out(sizeof(h) + body.size(), '\0');
  std::memcpy(out.data(), &h, sizeof(h));
  if (body.size()) std::memcpy(out.data() + sizeof(h), body.data().data(), body.size());
  return out;
}

// CUresult of a reply frame, and its fields after the CUresult.
CUresult ReplyResult(const std::string& frame, uint16_t op, std::string* body = nullptr) {
  wire::FrameHeader h;
  if (frame.size() < sizeof(h) + 4) return CUDA_ERROR_UNKNOWN;
  std::memcpy(&h, frame.data(), sizeof(h));
  if (h.op != (op | wire::kReplyBit) || h.length != frame.size() - sizeof(h)) {
    return CUDA_ERROR_UNKNOWN;
  }
  int32_t r;
  std::memcpy(&r, frame.data() + sizeof(h), 4);
  if (body) *body = frame.substr(sizeof(h) + 4);
  return static_cast<CUresult>(r);
}

class ServerGrpcTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    dir_ = testing::MakeTempDir();
    ServerOptions options;
    options.listen = {"unix:" + dir_ + "/woolyd.sock"};
    options.admin = GetParam() == "unix" ? "unix:" + dir_ + "/admin.sock" : "tcp:127.0.0.1:0";
    options.clock = [this] { return clock_.Now(); };
    options.scheduler_thread = false;  // tests count the backend's objects
    auto backend = std::make_unique<FakeBackend>();
    fake_ = backend.get();
    absl::StatusOr<std::unique_ptr<Server>> server = Server::Start(options, std::move(backend));
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    channel_ = grpc::CreateChannel(GrpcTarget(server_->admin_address()),
                                   grpc::InsecureChannelCredentials());
    admin_ = wooly::v1::Admin::NewStub(channel_);
    session_ = wooly::v1::Session::NewStub(channel_);
  }
  void TearDown() override {
    server_.reset();
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }

  std::string dir_;
  FakeClock clock_;
  FakeBackend* fake_ = nullptr;
  std::unique_ptr<Server> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<wooly::v1::Admin::Stub> admin_;
  std::unique_ptr<wooly::v1::Session::Stub> session_;
};

INSTANTIATE_TEST_SUITE_P(AdminEndpoints, ServerGrpcTest, ::testing::Values("unix", "tcp"),
                         [](const auto& info) { return info.param; });

TEST_P(ServerGrpcTest, GetStatusListsConnectedClients) {
  std::unique_ptr<TestClient> a = TestClient::Connect(server_->listen_addresses()[0]);
  std::unique_ptr<TestClient> b = TestClient::Connect(server_->listen_addresses()[0]);
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  ASSERT_EQ(a->Hello("trainer", 0), CUDA_SUCCESS);
  ASSERT_EQ(b->Hello("notebook", 4), CUDA_SUCCESS);
  uint64_t d = 0;
  ASSERT_EQ(a->MemAlloc(5 << 20, &d), CUDA_SUCCESS);
  clock_.Advance(absl::Seconds(42));

  grpc::ClientContext context;
  wooly::v1::StatusReply status;
  grpc::Status rpc = admin_->GetStatus(&context, wooly::v1::StatusRequest(), &status);
  ASSERT_TRUE(rpc.ok()) << rpc.error_message();
  EXPECT_EQ(status.server_version(), kServerVersion);
  EXPECT_EQ(status.protocol_version(), wire::kProtocolVersion);
  EXPECT_EQ(status.gpu_name(), "Wooly Fake GPU");
  EXPECT_THAT(status.gpu_uuid(), ::testing::StartsWith("GPU-"));
  EXPECT_EQ(status.backend(), "fake");
  EXPECT_EQ(status.total_memory_bytes(), 16ull << 30);
  EXPECT_EQ(status.used_memory_bytes(), 5ull << 20);
  EXPECT_EQ(status.free_memory_bytes(), (16ull << 30) - (5ull << 20));
  EXPECT_EQ(status.uptime_seconds(), 42);
  ASSERT_EQ(status.listen_addresses_size(), 1);
  EXPECT_EQ(status.listen_addresses(0), server_->listen_addresses()[0]);
  ASSERT_EQ(status.clients_size(), 2);
  const wooly::v1::ClientInfo& trainer = status.clients(0);
  EXPECT_EQ(trainer.name(), "trainer");
  EXPECT_EQ(trainer.pid(), static_cast<uint32_t>(::getpid()));
  EXPECT_EQ(trainer.priority(), 0);
  EXPECT_EQ(trainer.bytes_allocated(), 5ull << 20);
  EXPECT_EQ(trainer.streams(), 1u);
  EXPECT_EQ(trainer.transport(), "unix");
  EXPECT_EQ(trainer.connected_unix_seconds(), 1700000000);
  EXPECT_EQ(status.clients(1).name(), "notebook");
  EXPECT_EQ(status.clients(1).priority(), 4);

  grpc::ClientContext context2;
  wooly::v1::ListClientsReply list;
  ASSERT_TRUE(admin_->ListClients(&context2, wooly::v1::ListClientsRequest(), &list).ok());
  EXPECT_EQ(list.clients_size(), 2);
}

TEST_P(ServerGrpcTest, SessionHelloChecksTheVersion) {
  wooly::v1::HelloRequest request;
  request.set_protocol_version(wire::kProtocolVersion + 7);
  request.set_client_name("future");
  wooly::v1::HelloReply reply;
  grpc::ClientContext context;
  grpc::Status s = session_->Hello(&context, request, &reply);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(s.error_message(),
              HasSubstr("version " + std::to_string(wire::kProtocolVersion + 7)));
  EXPECT_THAT(s.error_message(), HasSubstr("version " + std::to_string(wire::kProtocolVersion)));

  request.set_protocol_version(wire::kProtocolVersion);
  grpc::ClientContext context2;
  ASSERT_TRUE(session_->Hello(&context2, request, &reply).ok());
  EXPECT_EQ(reply.gpu_name(), "Wooly Fake GPU");
  EXPECT_EQ(reply.server_version(), kServerVersion);
}

TEST_P(ServerGrpcTest, CommandsStreamRunsTheSameDispatcherAndCleansUp) {
  grpc::ClientContext context;
  auto stream = session_->Commands(&context);
  wire::Writer hello;
  hello.Put<uint32_t>(wire::kProtocolVersion).Put<uint32_t>(::getpid()).Put<int32_t>(1);
  hello.PutStr("grpc-client");
  wooly::v1::Frame out, in;
  out.set_data(Frame(Op::kHello, 1, hello));
  ASSERT_TRUE(stream->Write(out));
  ASSERT_TRUE(stream->Read(&in));
  ASSERT_EQ(ReplyResult(in.data(), static_cast<uint16_t>(Op::kHello)), CUDA_SUCCESS);

  out.set_data(Frame(Op::kMemAlloc, 2, wire::Writer().Put<uint64_t>(1 << 20)));
  ASSERT_TRUE(stream->Write(out));
  ASSERT_TRUE(stream->Read(&in));
  std::string body;
  ASSERT_EQ(ReplyResult(in.data(), static_cast<uint16_t>(Op::kMemAlloc), &body), CUDA_SUCCESS);
  uint64_t d = 0;
  std::memcpy(&d, body.data(), 8);
  const uint32_t v = 77;
  wire::Writer copy;
  copy.Put<uint64_t>(d).Put<uint64_t>(0).Put<uint8_t>(0).PutRaw(&v, 4);
  out.set_data(Frame(Op::kMemcpyHtoD, 3, copy));
  ASSERT_TRUE(stream->Write(out));
  ASSERT_TRUE(stream->Read(&in));
  EXPECT_EQ(ReplyResult(in.data(), static_cast<uint16_t>(Op::kMemcpyHtoD)), CUDA_SUCCESS);
  EXPECT_EQ(*static_cast<uint32_t*>(fake_->HostPointer(d, 4)), 77u);

  // Malformed payload: an error reply, the stream goes on.
  out.set_data(Frame(Op::kMemFree, 4, wire::Writer()));
  ASSERT_TRUE(stream->Write(out));
  ASSERT_TRUE(stream->Read(&in));
  EXPECT_EQ(ReplyResult(in.data(), static_cast<uint16_t>(Op::kMemFree)), CUDA_ERROR_INVALID_VALUE);

  const std::vector<ClientStatus> clients = server_->Clients();
  ASSERT_EQ(clients.size(), 1u);
  EXPECT_EQ(clients[0].transport, "grpc");
  EXPECT_EQ(clients[0].bytes_allocated, 1u << 20);

  ASSERT_TRUE(stream->WritesDone());
  EXPECT_TRUE(stream->Finish().ok());
  ASSERT_TRUE(server_->WaitForSessionCount(0, kWait));
  EXPECT_EQ(fake_->live_allocations(), 0u);
  EXPECT_EQ(fake_->live_streams(), 0u);
}

TEST_P(ServerGrpcTest, MalformedFrameEndsOnlyThatStream) {
  grpc::ClientContext context;
  auto stream = session_->Commands(&context);
  wooly::v1::Frame out;
  out.set_data("not a frame at all, just text");
  ASSERT_TRUE(stream->Write(out));
  wooly::v1::Frame in;
  EXPECT_FALSE(stream->Read(&in));
  grpc::Status s = stream->Finish();
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  ASSERT_TRUE(server_->WaitForSessionCount(0, kWait));
  // The server still serves.
  std::unique_ptr<TestClient> c = TestClient::Connect(server_->listen_addresses()[0]);
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(c->Hello(), CUDA_SUCCESS);
}

TEST_P(ServerGrpcTest, ShutdownEndsOpenStreams) {
  grpc::ClientContext context;
  auto stream = session_->Commands(&context);
  wire::Writer hello;
  hello.Put<uint32_t>(wire::kProtocolVersion).Put<uint32_t>(::getpid()).Put<int32_t>(1);
  hello.PutStr("grpc-client");
  wooly::v1::Frame out, in;
  out.set_data(Frame(Op::kHello, 1, hello));
  ASSERT_TRUE(stream->Write(out));
  ASSERT_TRUE(stream->Read(&in));
  out.set_data(Frame(Op::kMemAlloc, 2, wire::Writer().Put<uint64_t>(1 << 20)));
  ASSERT_TRUE(stream->Write(out));
  ASSERT_TRUE(stream->Read(&in));
  EXPECT_EQ(fake_->live_allocations(), 1u);
  server_->Shutdown();
  EXPECT_FALSE(stream->Read(&in));
  EXPECT_FALSE(stream->Finish().ok());
  EXPECT_EQ(server_->session_count(), 0u);
  EXPECT_EQ(fake_->live_allocations(), 0u);
  EXPECT_EQ(fake_->live_streams(), 0u);
}

}  // namespace
}  // namespace wooly::server
