// `wooly-cli status` and `clients` in-process, against a fake Admin gRPC
// service listening on a unix socket in a temporary directory.
#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <algorithm>
#include <filesystem>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

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

  // Knows client 5 only; "bogus=..." is refused the way woolyd refuses it.
  grpc::Status SetPolicy(grpc::ServerContext*, const wooly::v1::SetPolicyRequest* request,
                         wooly::v1::SetPolicyReply* reply) override {
    last_policy_ = *request;
    if (request->client_id() != 5) {
      return grpc::Status(grpc::StatusCode::NOT_FOUND,
                          "no client " + std::to_string(request->client_id()));
    }
    if (request->assignments().find("bogus") != std::string::npos) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                          "key 'bogus': unknown key (want priority, weight, floor or cap)");
    }
    wooly::v1::ClientInfo* c = status_.mutable_clients(0);
    if (request->reset()) c->set_priority(2);
    if (request->assignments().find("priority=0") != std::string::npos) c->set_priority(0);
    if (request->assignments().find("floor=20%") != std::string::npos) c->set_sm_floor(0.2);
    *reply->mutable_client() = *c;
    return grpc::Status::OK;
  }

  wooly::v1::StatusReply status_;
  wooly::v1::SetPolicyRequest last_policy_;
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
    c->set_tenant("team-a");
    c->set_weight(1);
    c->set_sm_cap(1);
    c->set_target_share(0.25);
    c->set_measured_share(0.125);

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
  EXPECT_THAT(out, HasSubstr("ID    PID  NAME        PRIORITY   ALLOCATED  STREAMS  MODULES  "
                             "TRANSPORT  TENANT  TARGET  MEASURED\n"
                             " 5  31337  vector_add         2  256.00 MiB        1        1  unix"
                             "       team-a   25.0%     12.5%\n"));
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

TEST_F(CliStatusTest, PolicyPrintsTheResultingPolicy) {
  ASSERT_EQ(Run({"policy", "5", "priority=0", "floor=20%", "--admin", endpoint_}), 0) << err_.str();
  EXPECT_EQ(service_.last_policy_.client_id(), 5u);
  EXPECT_EQ(service_.last_policy_.assignments(), "priority=0 floor=20%");
  EXPECT_FALSE(service_.last_policy_.reset());
  EXPECT_EQ(out_.str(),
            "Client:    5 (vector_add, pid 31337)\n"
            "Tenant:    team-a\n"
            "Priority:  0 (0 highest .. 4 lowest)\n"
            "Weight:    1\n"
            "Floor:     20% of the SMs\n"
            "Cap:       none\n");
  EXPECT_EQ(err_.str(), "");
}

TEST_F(CliStatusTest, PolicyResetAloneAndJson) {
  ASSERT_EQ(Run({"policy", "5", "--reset", "--json", "--admin", endpoint_}), 0) << err_.str();
  EXPECT_TRUE(service_.last_policy_.reset());
  EXPECT_EQ(service_.last_policy_.assignments(), "");
  EXPECT_THAT(out_.str(), StartsWith("{\n  \"client\": {\n    \"client_id\": 5,\n"));
  EXPECT_THAT(out_.str(), HasSubstr("\"priority\": 2,"));
}

TEST_F(CliStatusTest, PolicyForAnUnknownClientFails) {
  EXPECT_EQ(Run({"policy", "77", "priority=1", "--admin", endpoint_}), 1);
  EXPECT_EQ(err_.str(), "wooly-cli: policy: no client 77 on woolyd at " + endpoint_ +
                            " (`wooly-cli clients` lists them)\n");
  EXPECT_EQ(out_.str(), "");
}

TEST_F(CliStatusTest, PolicyShowsTheServersMessageForABadAssignment) {
  EXPECT_EQ(Run({"policy", "5", "bogus=1", "--admin", endpoint_}), 1);
  EXPECT_EQ(err_.str(),
            "wooly-cli: policy: key 'bogus': unknown key (want priority, weight, floor or cap)\n");
  EXPECT_EQ(out_.str(), "");
}

TEST_F(CliStatusTest, PolicyErrorsOfTheEndpoint) {
  EXPECT_EQ(Run({"policy", "5", "priority=0", "--admin", "nonsense"}), 2);
  EXPECT_THAT(err_.str(), StartsWith("wooly-cli: endpoint 'nonsense'"));
  const std::string missing = "unix:" + dir_ + "/missing.sock";
  EXPECT_EQ(Run({"policy", "5", "priority=0", "--admin", missing}), 1);
  EXPECT_THAT(err_.str(), StartsWith("wooly-cli: cannot reach woolyd at " + missing + ": "));
}

class CliTopTest : public CliStatusTest {
 protected:
  int Top(const std::vector<std::string>& extra, bool terminal = false, size_t width = 0) {
    Invocation inv;
    ParseResult parsed = ParseArgs([&] {
      std::vector<std::string> args = {"top", "--admin", endpoint_};
      args.insert(args.end(), extra.begin(), extra.end());
      return args;
    }());
    EXPECT_TRUE(parsed.invocation.has_value()) << parsed.error;
    if (!parsed.invocation) return -1;
    TopHooks hooks;
    hooks.terminal = terminal;
    hooks.width = width;
    hooks.sleep = [this](double s) { sleeps_.push_back(s); };
    hooks.clock = [] { return std::string("10:00:00"); };
    out_.str("");
    err_.str("");
    return RunTop(*parsed.invocation, out_, err_, hooks);
  }
  std::vector<double> sleeps_;
};

TEST_F(CliTopTest, PrintsOneBlockPerRefreshWhenNotATerminal) {
  ASSERT_EQ(Top({"--count", "2", "--interval", "0.1"}), 0) << err_.str();
  // Slept between the two refreshes only.
  ASSERT_EQ(sleeps_.size(), 1u);
  EXPECT_EQ(sleeps_[0], 0.1);
  const std::string out = out_.str();
  const std::string block = out.substr(0, out.find("\n\nwoolyd") + 1);
  EXPECT_THAT(block, StartsWith("woolyd 0.1.0-test on Fake GPU (fake), up 42s; every 0.1s; "
                                "10:00:00\n"));
  EXPECT_THAT(block, HasSubstr(" 5  vector_add  team-a"));
  EXPECT_EQ(out, block + "\n" + block);
  EXPECT_EQ(out.find("\x1b"), std::string::npos);
  EXPECT_EQ(err_.str(), "");
}

TEST_F(CliTopTest, RedrawsATerminal) {
  ASSERT_EQ(Top({"--count=3"}, /*terminal=*/true, /*width=*/30), 0) << err_.str();
  EXPECT_EQ(sleeps_, (std::vector<double>{1.0, 1.0}));
  const std::string out = out_.str();
  const std::string clear = "\x1b[H\x1b[2J";
  EXPECT_EQ(out.rfind(clear, 0), 0u);
  size_t screens = 0;
  for (size_t at = out.find(clear); at != std::string::npos; at = out.find(clear, at + 1)) {
    ++screens;
  }
  EXPECT_EQ(screens, 3u);
  // Lines are cut to the terminal's width.
  size_t start = 0;
  while (start < out.size()) {
    size_t end = out.find('\n', start);
    if (end == std::string::npos) end = out.size();
    std::string line = out.substr(start, end - start);
    if (line.rfind(clear, 0) == 0) line = line.substr(clear.size());
    EXPECT_LE(line.size(), 30u) << line;
    start = end + 1;
  }
}

TEST_F(CliTopTest, JsonIsOneLinePerRefresh) {
  ASSERT_EQ(Top({"--count", "3", "--json"}, /*terminal=*/true), 0) << err_.str();
  const std::string out = out_.str();
  EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 3);
  EXPECT_EQ(out.find("\x1b"), std::string::npos);  // never redrawn
  EXPECT_THAT(out, StartsWith("{\"server_version\":\"0.1.0-test\","));
  EXPECT_THAT(out, HasSubstr("\"target_share\":0.25,\"measured_share\":0.125,"));
}

TEST_F(CliTopTest, StopsAtTheFirstFailure) {
  service_.fail_ = true;
  EXPECT_EQ(Top({"--count", "5"}), 1);
  EXPECT_TRUE(sleeps_.empty());
  EXPECT_EQ(err_.str(),
            "wooly-cli: woolyd at " + endpoint_ + " failed the request: backend lost\n");
  EXPECT_EQ(out_.str(), "");
}

TEST_F(CliTopTest, ThroughMainIsNeverATerminal) {
  ASSERT_EQ(Run({"top", "--count", "1", "--admin", endpoint_}), 0) << err_.str();
  EXPECT_THAT(out_.str(), StartsWith("woolyd 0.1.0-test on Fake GPU (fake)"));
  EXPECT_EQ(out_.str().find("\x1b"), std::string::npos);
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
