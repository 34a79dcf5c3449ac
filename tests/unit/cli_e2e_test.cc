// wooly-cli, the real binary, against woolyd on the fake backend
// (woolyd-fake): `status`, `clients`, `policy` and `top` (against a client
// speaking the framed protocol from the test), and `run` with the built
// client library. The `run` cases skip when the client library or the
// sample program has not been built.
#include <fcntl.h>
#include <gmock/gmock.h>
#include <google/protobuf/util/json_util.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "server_test_client.h"
#include "wooly/proto/wire.h"
#include "wooly/v1/admin.pb.h"

namespace {

using ::testing::Contains;
using ::testing::HasSubstr;
using ::testing::StartsWith;

namespace fs = std::filesystem;

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

struct Result {
  int rc = -1;
  std::string out;
  std::string err;
};

// Runs argv with extra environment entries, capturing stdout and stderr.
Result RunProgram(const std::vector<std::string>& argv, const std::string& dir,
                  const std::vector<std::string>& extra_env = {}) {
  const std::string out_path = dir + "/stdout";
  const std::string err_path = dir + "/stderr";
  std::vector<char*> c_argv;
  for (const std::string& a : argv) c_argv.push_back(const_cast<char*>(a.c_str()));
  c_argv.push_back(nullptr);
  const pid_t pid = ::fork();
  if (pid == 0) {
    for (const std::string& e : extra_env) ::putenv(const_cast<char*>(e.c_str()));
    const int out = ::open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    const int err = ::open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    ::dup2(out, 1);
    ::dup2(err, 2);
    ::execv(c_argv[0], c_argv.data());
    ::_exit(127);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  Result r;
  r.rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  r.out = ReadFile(out_path);
  r.err = ReadFile(err_path);
  return r;
}

class CliEndToEnd : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/wooly-cli-e2e-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    session_ = "unix:" + dir_ + "/woolyd.sock";
    admin_ = "unix:" + dir_ + "/admin.sock";
    const std::string ready = dir_ + "/ready";
    const std::string log = dir_ + "/woolyd.log";
    server_pid_ = ::fork();
    if (server_pid_ == 0) {
      const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
      ::dup2(fd, 1);
      ::dup2(fd, 2);
      ::execl(WOOLY_FAKE_WOOLYD, WOOLY_FAKE_WOOLYD, "--listen", session_.c_str(), "--admin",
              admin_.c_str(), "--ready-file", ready.c_str(), nullptr);
      ::_exit(127);
    }
    // Wait (bounded) for woolyd-fake to report that it serves.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (!fs::exists(ready) && std::chrono::steady_clock::now() < deadline) {
      int status = 0;
      ASSERT_EQ(::waitpid(server_pid_, &status, WNOHANG), 0) << ReadFile(log);
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    ASSERT_TRUE(fs::exists(ready)) << ReadFile(log);
  }
  void TearDown() override {
    if (server_pid_ > 0) {
      ::kill(server_pid_, SIGTERM);
      ::waitpid(server_pid_, nullptr, 0);
    }
    fs::remove_all(dir_);
  }

  Result Cli(const std::vector<std::string>& args) {
    std::vector<std::string> argv = {WOOLY_CLI};
    argv.insert(argv.end(), args.begin(), args.end());
    // Keep anything that reads the defaults inside the test directory.
    return RunProgram(argv, dir_, {"WOOLY_SOCKET_DIR=" + dir_ + "/defaults"});
  }

  std::string dir_;
  std::string session_;
  std::string admin_;
  pid_t server_pid_ = -1;
};

TEST_F(CliEndToEnd, Status) {
  Result r = Cli({"status", "--admin", admin_});
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_THAT(r.out, StartsWith("Server:    woolyd "));
  EXPECT_THAT(r.out, HasSubstr("Backend:   fake\n"));
  EXPECT_THAT(r.out, HasSubstr("Listening: " + session_ + "\n"));
  EXPECT_THAT(r.out, HasSubstr("No clients connected.\n"));
  EXPECT_EQ(r.err, "");
}

TEST_F(CliEndToEnd, StatusJson) {
  Result r = Cli({"status", "--json", "--admin", admin_});
  ASSERT_EQ(r.rc, 0) << r.err;
  wooly::v1::StatusReply st;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(r.out, &st).ok()) << r.out;
  EXPECT_EQ(st.backend(), "fake");
  EXPECT_EQ(st.protocol_version(), 1u);
  EXPECT_GT(st.total_memory_bytes(), 0u);
  EXPECT_THAT(st.listen_addresses(), Contains(session_));
}

TEST_F(CliEndToEnd, Clients) {
  Result r = Cli({"clients", "--json", "--admin", admin_});
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(r.out, "{\n  \"clients\": []\n}\n");
}

TEST_F(CliEndToEnd, StatusOfAStoppedServerIsOneLine) {
  ::kill(server_pid_, SIGTERM);
  ::waitpid(server_pid_, nullptr, 0);
  server_pid_ = -1;
  Result r = Cli({"status", "--admin", admin_});
  EXPECT_EQ(r.rc, 1);
  EXPECT_THAT(r.err, StartsWith("wooly-cli: cannot reach woolyd at " + admin_ + ": "));
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1);
}

// A client connected over the framed protocol with a tenant and a memory
// limit in its settings; returns its client id (0 on failure).
uint64_t ConnectClient(wooly::testing::TestClient& c) {
  namespace wire = wooly::wire;
  wire::Writer hello;
  hello.Put<uint32_t>(wire::kProtocolVersion).Put<uint32_t>(static_cast<uint32_t>(::getpid()));
  hello.Put<int32_t>(3).PutStr("e2e-client").PutStr("").PutStr("");
  hello.Put<uint32_t>(2);
  hello.PutStr("WOOLY_TENANT").PutStr("e2e-tenant");
  hello.PutStr("WOOLY_MEMORY_LIMIT").PutStr("512MiB");
  std::optional<wooly::testing::TestClient::Result> r = c.Call(wire::Op::kHello, hello);
  if (!r || r->result != CUDA_SUCCESS) return 0;
  wire::Reader rd = r->reader();
  rd.Get<uint32_t>();
  rd.GetStr();
  const uint64_t id = rd.Get<uint64_t>();
  return rd.ok() ? id : 0;
}

const wooly::v1::ClientInfo* FindClient(const wooly::v1::ListClientsReply& reply, uint64_t id) {
  for (const wooly::v1::ClientInfo& c : reply.clients()) {
    if (c.client_id() == id) return &c;
  }
  return nullptr;
}

TEST_F(CliEndToEnd, PolicyChangesARunningClient) {
  std::unique_ptr<wooly::testing::TestClient> client =
      wooly::testing::TestClient::Connect(session_);
  ASSERT_NE(client, nullptr);
  const uint64_t id = ConnectClient(*client);
  ASSERT_NE(id, 0u);
  const std::string id_text = std::to_string(id);

  Result r = Cli(
      {"policy", id_text, "priority=0", "weight=2", "floor=20%", "cap=none", "--admin", admin_});
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(r.err, "");
  EXPECT_THAT(r.out, StartsWith("Client:    " + id_text + " (e2e-client, pid "));
  EXPECT_THAT(r.out, HasSubstr("Tenant:    e2e-tenant\n"));
  EXPECT_THAT(r.out, HasSubstr("Priority:  0 (0 highest .. 4 lowest)\n"));
  EXPECT_THAT(r.out, HasSubstr("Weight:    2\n"));
  EXPECT_THAT(r.out, HasSubstr("Floor:     20% of the SMs\n"));
  EXPECT_THAT(r.out, HasSubstr("Cap:       none\n"));

  // `clients --json` sees the new policy.
  r = Cli({"clients", "--json", "--admin", admin_});
  ASSERT_EQ(r.rc, 0) << r.err;
  wooly::v1::ListClientsReply list;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(r.out, &list).ok()) << r.out;
  const wooly::v1::ClientInfo* info = FindClient(list, id);
  ASSERT_NE(info, nullptr) << r.out;
  EXPECT_EQ(info->name(), "e2e-client");
  EXPECT_EQ(info->priority(), 0);
  EXPECT_EQ(info->weight(), 2);
  EXPECT_DOUBLE_EQ(info->sm_floor(), 0.2);
  EXPECT_EQ(info->sm_cap(), 1);
  EXPECT_EQ(info->tenant(), "e2e-tenant");
  EXPECT_EQ(info->memory_limit_bytes(), 512ull << 20);

  // The table has the tenant too.
  r = Cli({"clients", "--admin", admin_});
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("TENANT"));
  EXPECT_THAT(r.out, HasSubstr("e2e-tenant"));

  // --json prints the client object.
  r = Cli({"policy", id_text, "cap=50%", "--json", "--admin", admin_});
  ASSERT_EQ(r.rc, 0) << r.err;
  wooly::v1::SetPolicyReply set;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(r.out, &set).ok()) << r.out;
  EXPECT_EQ(set.client().client_id(), id);
  EXPECT_DOUBLE_EQ(set.client().sm_cap(), 0.5);
  EXPECT_EQ(set.client().priority(), 0);  // the earlier change stays

  // --reset alone drops the overrides: back to what the client said (priority 3).
  r = Cli({"policy", id_text, "--reset", "--admin", admin_});
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("Priority:  3 "));
  EXPECT_THAT(r.out, HasSubstr("Weight:    1\n"));
  EXPECT_THAT(r.out, HasSubstr("Floor:     none\n"));
  EXPECT_THAT(r.out, HasSubstr("Cap:       none\n"));
}

TEST_F(CliEndToEnd, PolicyErrorsCarryTheServersMessage) {
  std::unique_ptr<wooly::testing::TestClient> client =
      wooly::testing::TestClient::Connect(session_);
  ASSERT_NE(client, nullptr);
  const uint64_t id = ConnectClient(*client);
  ASSERT_NE(id, 0u);

  Result r = Cli({"policy", std::to_string(id), "bogus=1", "--admin", admin_});
  EXPECT_EQ(r.rc, 1);
  EXPECT_EQ(r.out, "");
  EXPECT_THAT(r.err, StartsWith("wooly-cli: policy: "));
  EXPECT_THAT(r.err, HasSubstr("bogus"));
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1);

  r = Cli({"policy", std::to_string(id), "priority=9", "--admin", admin_});
  EXPECT_EQ(r.rc, 1);
  EXPECT_THAT(r.err, HasSubstr("priority"));

  r = Cli({"policy", "987654321", "priority=1", "--admin", admin_});
  EXPECT_EQ(r.rc, 1);
  EXPECT_THAT(r.err, StartsWith("wooly-cli: policy: no client 987654321"));

  // A usage error never reaches the server.
  r = Cli({"policy", std::to_string(id), "--admin", admin_});
  EXPECT_EQ(r.rc, 2);
  EXPECT_THAT(r.err, StartsWith("wooly-cli: policy: nothing to change"));
}

TEST_F(CliEndToEnd, TopRefreshesAndStops) {
  std::unique_ptr<wooly::testing::TestClient> client =
      wooly::testing::TestClient::Connect(session_);
  ASSERT_NE(client, nullptr);
  const uint64_t id = ConnectClient(*client);
  ASSERT_NE(id, 0u);

  Result r = Cli({"top", "--count", "2", "--interval", "0.1", "--admin", admin_});
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(r.err, "");
  EXPECT_THAT(r.out, StartsWith("woolyd "));
  // stdout is a file: two blocks, no terminal control.
  const size_t second = r.out.find("\n\nwoolyd ");
  ASSERT_NE(second, std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("\n\nwoolyd ", second + 1), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find('\x1b'), std::string::npos);
  EXPECT_THAT(r.out, HasSubstr("TARGET  MEASURED  GPU-TIME  QUEUE"));
  EXPECT_THAT(r.out, HasSubstr("e2e-client"));
  EXPECT_THAT(r.out, HasSubstr("e2e-tenant"));
  EXPECT_THAT(r.out, HasSubstr("512.00 MiB"));  // the tenant's limit

  r = Cli({"top", "--count", "2", "--interval", "0.1", "--json", "--admin", admin_});
  ASSERT_EQ(r.rc, 0) << r.err;
  std::istringstream lines(r.out);
  std::string line;
  int n = 0;
  while (std::getline(lines, line)) {
    wooly::v1::StatusReply st;
    ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(line, &st).ok()) << line;
    EXPECT_EQ(st.backend(), "fake");
    ASSERT_EQ(st.clients().size(), 1);
    EXPECT_EQ(st.clients(0).client_id(), id);
    EXPECT_EQ(st.clients(0).tenant(), "e2e-tenant");
    ++n;
  }
  EXPECT_EQ(n, 2);
}

TEST_F(CliEndToEnd, TopOfAStoppedServerFails) {
  ::kill(server_pid_, SIGTERM);
  ::waitpid(server_pid_, nullptr, 0);
  server_pid_ = -1;
  Result r = Cli({"top", "--count", "2", "--interval", "0.1", "--admin", admin_});
  EXPECT_EQ(r.rc, 1);
  EXPECT_THAT(r.err, StartsWith("wooly-cli: cannot reach woolyd at " + admin_ + ": "));
}

TEST_F(CliEndToEnd, RunInjectsTheClientAndReturnsTheExitStatus) {
  if (!fs::exists(WOOLY_CLIENT_LIB)) GTEST_SKIP() << WOOLY_CLIENT_LIB << " is not built";
  Result r =
      Cli({"run", "--server", session_, "--priority", "1", "--name", "e2e", "--", "/bin/sh", "-c",
           "echo \"$LD_PRELOAD|$WOOLY_SERVER|$WOOLY_PRIORITY|$WOOLY_CLIENT_NAME\"; exit 5"});
  EXPECT_EQ(r.rc, 5) << r.err;
  EXPECT_EQ(r.out, fs::canonical(WOOLY_CLIENT_LIB).string() + "|" + session_ + "|1|e2e\n");
  EXPECT_EQ(r.err, "");  // the server was running: nothing to report
}

TEST_F(CliEndToEnd, RunsTheSampleProgramOnTheFakeBackend) {
  if (!fs::exists(WOOLY_CLIENT_LIB)) GTEST_SKIP() << WOOLY_CLIENT_LIB << " is not built";
  if (!fs::exists(WOOLY_VECTOR_ADD)) GTEST_SKIP() << WOOLY_VECTOR_ADD << " is not built";
  Result r = Cli({"run", "--server", session_, "--", WOOLY_VECTOR_ADD, WOOLY_FAKE_KERNELS});
  EXPECT_EQ(r.rc, 0) << r.out << r.err;
  EXPECT_THAT(r.out, HasSubstr("ok"));
  // The client has gone, and with it everything it owned.
  Result st = Cli({"status", "--json", "--admin", admin_});
  ASSERT_EQ(st.rc, 0) << st.err;
  EXPECT_THAT(st.out, HasSubstr("\"clients\": []"));
}

}  // namespace
