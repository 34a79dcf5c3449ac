// `wooly-cli status` and `clients` in-process, against a fake Admin gRPC
// service listening on a unix socket in a temporary directory.
#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <memory>
#include <sstream>

#include "wooly/cli/admin_client.h"
#include "wooly/cli/cli.h"
#include "wooly/v1/admin.grpc.pb.h"

namespace wooly::cli {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

class FakeAdmin final : public wooly::v1::Admin::Service {
 public:
  grpc::Status GetStatus(grpc::ServerContext*, const wooly::v1::StatusRequest*,
                         wooly::v1::StatusReply* reply) override {
    if (fail_) return grpc::Status(grpc::StatusCode::INTERNAL, "backend lost");
    *reply = status_;
    return grpc::Status::OK;
  }
  grpc::Status ListClients(grpc::ServerContext*, const wooly::v1::ListClientsRequest*,
                           wooly::v1::ListClientsReply* reply) override {
    *reply->mutable_clients() = status_.clients();
    return grpc::Status::OK;
  }

  wooly::v1::StatusReply status_;
  bool fail_ = false;
};

class CliStatusTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/wooly-cli-status-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    endpoint_ = "unix:" + dir_ + "/admin.sock";

    wooly::v1::StatusReply& st = service_.status_;
    st.set_server_version("0.1.0-test");
    st.set_protocol_version(1);
    st.set_backend("fake");
    st.set_gpu_name("Fake GPU");
    st.set_total_memory_bytes(16ull << 30);
    st.set_used_memory_bytes(256ull << 20);
    st.set_free_memory_bytes((16ull << 30) - (256ull << 20));
    st.set_uptime_seconds(42);
    st.add_listen_addresses("unix:" + dir_ + "/woolyd.sock");
    wooly::v1::ClientInfo* c = st.add_clients();
    c->set_client_id(5);
    c->set_pid(31337);
    c->set_name("vector_add");
    c->set_priority(2);
    c->set_bytes_allocated(256ull << 20);
    c->set_streams(1);
    c->set_modules(1);
    c->set_transport("unix");

    grpc::ServerBuilder builder;
    builder.AddListeningPort(endpoint_, grpc::InsecureServerCredentials());
    builder.RegisterService(&service_);
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
  }
  void TearDown() override {
    if (server_) server_->Shutdown();
    std::filesystem::remove_all(dir_);
  }

  int Run(const std::vector<std::string>& args) {
    out_.str("");
    err_.str("");
    return Main(args, "/nonexistent/cli/wooly-cli", out_, err_);
  }

  std::string dir_;
  std::string endpoint_;
  FakeAdmin service_;
  std::unique_ptr<grpc::Server> server_;
  std::ostringstream out_;
  std::ostringstream err_;
};

TEST_F(CliStatusTest, PrintsStatusAndClientTable) {
  ASSERT_EQ(Run({"status", "--admin", endpoint_}), 0) << err_.str();
  EXPECT_EQ(err_.str(), "");
  const std::string out = out_.str();
  EXPECT_THAT(out, StartsWith("Server:    woolyd 0.1.0-test\n"));
  EXPECT_THAT(out, HasSubstr("Backend:   fake\n"));
  EXPECT_THAT(out, HasSubstr("GPU:       Fake GPU\n"));
  EXPECT_THAT(out, HasSubstr("Memory:    16.00 GiB total, 256.00 MiB used, 15.75 GiB free\n"));
  EXPECT_THAT(out, HasSubstr("Uptime:    42s\n"));
  EXPECT_THAT(out,
              HasSubstr("ID    PID  NAME        PRIORITY   ALLOCATED  STREAMS  MODULES  "
                        "TRANSPORT\n"
                        " 5  31337  vector_add         2  256.00 MiB        1        1  unix\n"));
}

TEST_F(CliStatusTest, PrintsJson) {
  ASSERT_EQ(Run({"status", "--json", "--admin=" + endpoint_}), 0) << err_.str();
  EXPECT_THAT(out_.str(), StartsWith("{\n  \"server_version\": \"0.1.0-test\",\n"));
  EXPECT_THAT(out_.str(), HasSubstr("\"pid\": 31337,"));
}

TEST_F(CliStatusTest, DefaultEndpointComesFromTheEnvironment) {
  ::setenv("WOOLY_ADMIN", endpoint_.c_str(), 1);
  const int rc = Run({"status"});
  ::unsetenv("WOOLY_ADMIN");
  EXPECT_EQ(rc, 0) << err_.str();
}

TEST_F(CliStatusTest, ListsClients) {
  ASSERT_EQ(Run({"clients", "--admin", endpoint_}), 0) << err_.str();
  EXPECT_THAT(out_.str(), StartsWith("ID    PID  NAME"));
  ASSERT_EQ(Run({"clients", "--json", "--admin", endpoint_}), 0) << err_.str();
  EXPECT_THAT(out_.str(), StartsWith("{\n  \"clients\": [\n"));
}

TEST_F(CliStatusTest, NoClients) {
  service_.status_.clear_clients();
  ASSERT_EQ(Run({"clients", "--admin", endpoint_}), 0);
  EXPECT_EQ(out_.str(), "No clients connected.\n");
}

TEST_F(CliStatusTest, ServerErrorIsOneLine) {
  service_.fail_ = true;
  EXPECT_EQ(Run({"status", "--admin", endpoint_}), 1);
  EXPECT_EQ(err_.str(),
            "wooly-cli: woolyd at " + endpoint_ + " failed the request: backend lost\n");
  EXPECT_EQ(out_.str(), "");
}

TEST_F(CliStatusTest, UnreachableServerIsOneLine) {
  const std::string missing = "unix:" + dir_ + "/missing.sock";
  EXPECT_EQ(Run({"status", "--admin", missing}), 1);
  EXPECT_EQ(err_.str(), "wooly-cli: cannot reach woolyd at " + missing + ": no socket at " + dir_ +
                            "/missing.sock (is woolyd running?)\n");
  EXPECT_EQ(out_.str(), "");
}

TEST_F(CliStatusTest, MalformedEndpointIsAUsageError) {
  EXPECT_EQ(Run({"status", "--admin", "nonsense"}), 2);
  EXPECT_THAT(err_.str(), StartsWith("wooly-cli: endpoint 'nonsense'"));
}

TEST(CliMain, UsageErrorsExit2WithUsageOnStderr) {
  std::ostringstream out, err;
  EXPECT_EQ(Main({"frobnicate"}, "/x/cli/wooly-cli", out, err), 2);
  EXPECT_EQ(out.str(), "");
  EXPECT_THAT(err.str(), StartsWith("wooly-cli: unknown command 'frobnicate'\n\nusage:"));
  EXPECT_EQ(Main({}, "/x/cli/wooly-cli", out, err), 2);
}

TEST(CliMain, HelpAndVersionGoToStdout) {
  std::ostringstream out, err;
  EXPECT_EQ(Main({"help"}, "/x/cli/wooly-cli", out, err), 0);
  EXPECT_THAT(out.str(), StartsWith("usage: wooly-cli"));
  out.str("");
  EXPECT_EQ(Main({"version"}, "/x/cli/wooly-cli", out, err), 0);
  EXPECT_THAT(out.str(), StartsWith("wooly-cli "));
  EXPECT_THAT(out.str(), HasSubstr("(wire protocol 1)"));
  EXPECT_EQ(err.str(), "");
}

TEST(CliMain, RunWithoutClientLibrary) {
  std::ostringstream out, err;
  EXPECT_EQ(Main({"run", "--", "true"}, "/nonexistent/cli/wooly-cli", out, err), 1);
  EXPECT_EQ(err.str(),
            "wooly-cli: Wooly's client library was not found; looked for "
            "/nonexistent/client/libcuda.so.1 /nonexistent/lib/wooly/libcuda.so.1 (build it "
            "with ./scripts/build.sh)\n");
}

TEST(CliAdmin, GrpcTargets) {
  EXPECT_EQ(GrpcTarget("unix:/run/wooly/a.sock").value(), "unix:/run/wooly/a.sock");
  EXPECT_EQ(GrpcTarget("/run/wooly/a.sock").value(), "unix:/run/wooly/a.sock");
  EXPECT_EQ(GrpcTarget("tcp:gpu1:7071").value(), "gpu1:7071");
  EXPECT_EQ(GrpcTarget("gpu1:7071").value(), "gpu1:7071");
  EXPECT_EQ(GrpcTarget("tcp:[::1]:7071").value(), "[::1]:7071");
  EXPECT_FALSE(GrpcTarget("gpu1").ok());
}

}  // namespace
}  // namespace wooly::cli
