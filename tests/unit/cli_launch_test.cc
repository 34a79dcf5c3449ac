#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "absl/status/status.h"
#include "wooly/cli/launch.h"
#include "wooly/proto/socket.h"

namespace wooly::cli {
namespace {

using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

std::string Identity(const std::string& p) { return p; }

Layout TestLayout() {
  return Layout{"/w/build/client/libcuda.so.1", "/w/build/client", "/w/build/server/woolyd"};
}

// ---------------------------------------------------------------- environments

TEST(CliEnv, GetSetUnset) {
  Env env = {"A=1", "AB=2", "C="};
  EXPECT_EQ(GetEnv(env, "A"), "1");
  EXPECT_EQ(GetEnv(env, "AB"), "2");
  EXPECT_EQ(GetEnv(env, "C"), "");
  EXPECT_FALSE(GetEnv(env, "B").has_value());
  SetEnv(&env, "A", "3");
  EXPECT_EQ(GetEnv(env, "A"), "3");
  UnsetEnv(&env, "A");
  EXPECT_THAT(env, ElementsAre("AB=2", "C="));
}

TEST(CliEnv, SplitList) {
  EXPECT_THAT(SplitList("a:b::c:", false), ElementsAre("a", "b", "c"));
  EXPECT_THAT(SplitList("a b:c\td", true), ElementsAre("a", "b", "c", "d"));
  EXPECT_THAT(SplitList("a b", false), ElementsAre("a b"));
  EXPECT_TRUE(SplitList("", true).empty());
}

TEST(CliEnv, ClientEnvOnEmptyEnvironment) {
  ClientSettings s;
  s.server_endpoint = "unix:/tmp/w/woolyd.sock";
  const Env env = BuildClientEnv({"PATH=/usr/bin"}, TestLayout(), s, Identity);
  EXPECT_EQ(GetEnv(env, "LD_PRELOAD"), "/w/build/client/libcuda.so.1");
  EXPECT_EQ(GetEnv(env, "LD_LIBRARY_PATH"), "/w/build/client");
  EXPECT_EQ(GetEnv(env, "WOOLY_SERVER"), "unix:/tmp/w/woolyd.sock");
  EXPECT_EQ(GetEnv(env, "PATH"), "/usr/bin");
  EXPECT_FALSE(GetEnv(env, "WOOLY_PRIORITY").has_value());
  EXPECT_FALSE(GetEnv(env, "WOOLY_CLIENT_NAME").has_value());
}

TEST(CliEnv, ClientEnvPrefixesAndDeduplicates) {
  ClientSettings s;
  s.server_endpoint = "tcp:gpu1:7070";
  s.priority = 3;
  s.name = "trainer";
  const Env base = {
      "LD_PRELOAD=libfoo.so /w/build/client/libcuda.so.1:/opt/bar.so",
      "LD_LIBRARY_PATH=/usr/local/lib::/w/build/client/:/opt/lib",
      "WOOLY_SERVER=unix:/old.sock",
      "WOOLY_PRIORITY=0",
      "HOME=/root",
  };
  const Env env = BuildClientEnv(base, TestLayout(), s, Identity);
  EXPECT_EQ(GetEnv(env, "LD_PRELOAD"), "/w/build/client/libcuda.so.1:libfoo.so:/opt/bar.so");
  EXPECT_EQ(GetEnv(env, "LD_LIBRARY_PATH"), "/w/build/client:/usr/local/lib:/opt/lib");
  EXPECT_EQ(GetEnv(env, "WOOLY_SERVER"), "tcp:gpu1:7070");
  EXPECT_EQ(GetEnv(env, "WOOLY_PRIORITY"), "3");
  EXPECT_EQ(GetEnv(env, "WOOLY_CLIENT_NAME"), "trainer");
  EXPECT_EQ(GetEnv(env, "HOME"), "/root");
  // Each variable appears once.
  EXPECT_EQ(std::count_if(env.begin(), env.end(),
                          [](const std::string& e) { return e.rfind("LD_PRELOAD=", 0) == 0; }),
            1);
}

TEST(CliEnv, ClientEnvKeepsInheritedPriorityAndName) {
  ClientSettings s;
  s.server_endpoint = "unix:/s";
  const Env env =
      BuildClientEnv({"WOOLY_PRIORITY=2", "WOOLY_CLIENT_NAME=outer"}, TestLayout(), s, Identity);
  EXPECT_EQ(GetEnv(env, "WOOLY_PRIORITY"), "2");
  EXPECT_EQ(GetEnv(env, "WOOLY_CLIENT_NAME"), "outer");
}

TEST(CliEnv, ClientEnvRecognizesWoolyThroughSymlinks) {
  const std::map<std::string, std::string> links = {
      {"/link/client", "/w/build/client"},
      {"/link/client/libcuda.so.1", "/w/build/client/libcuda.so.1"}};
  auto canon = [&](const std::string& p) {
    auto it = links.find(p);
    return it == links.end() ? p : it->second;
  };
  ClientSettings s;
  s.server_endpoint = "unix:/s";
  const Env env =
      BuildClientEnv({"LD_PRELOAD=/link/client/libcuda.so.1", "LD_LIBRARY_PATH=/link/client:/x"},
                     TestLayout(), s, canon);
  EXPECT_EQ(GetEnv(env, "LD_PRELOAD"), "/w/build/client/libcuda.so.1");
  EXPECT_EQ(GetEnv(env, "LD_LIBRARY_PATH"), "/w/build/client:/x");
}

TEST(CliEnv, ServerEnvDropsWoolyInjection) {
  const Env base = {
      "LD_PRELOAD=/w/build/client/libcuda.so.1 libcuda.so.1 /opt/jemalloc.so",
      "LD_LIBRARY_PATH=/w/build/client:/usr/local/cuda/lib64",
      "WOOLY_SOCKET_DIR=/elsewhere",
      "HOME=/root",
  };
  const Env env = BuildServerEnv(base, TestLayout(), "/tmp/wooly-1000", Identity);
  EXPECT_EQ(GetEnv(env, "LD_PRELOAD"), "/opt/jemalloc.so");
  EXPECT_EQ(GetEnv(env, "LD_LIBRARY_PATH"), "/usr/local/cuda/lib64");
  EXPECT_EQ(GetEnv(env, "WOOLY_SOCKET_DIR"), "/tmp/wooly-1000");
  EXPECT_EQ(GetEnv(env, "HOME"), "/root");
}

TEST(CliEnv, ServerEnvUnsetsVariablesLeftEmpty) {
  const Env base = {"LD_PRELOAD=/w/build/client/libcuda.so.1", "LD_LIBRARY_PATH=/w/build/client/"};
  const Env env = BuildServerEnv(base, TestLayout(), "/d", Identity);
  EXPECT_FALSE(GetEnv(env, "LD_PRELOAD").has_value());
  EXPECT_FALSE(GetEnv(env, "LD_LIBRARY_PATH").has_value());
}

TEST(CliEnv, ServerEnvOfClientEnvIsClean) {
  // A `run` inside a Wooly-injected shell: woolyd must not inherit Wooly.
  ClientSettings s;
  s.server_endpoint = "unix:/s";
  const Env client = BuildClientEnv({"LD_LIBRARY_PATH=/usr/lib"}, TestLayout(), s, Identity);
  const Env server = BuildServerEnv(client, TestLayout(), "/d", Identity);
  EXPECT_FALSE(GetEnv(server, "LD_PRELOAD").has_value());
  EXPECT_EQ(GetEnv(server, "LD_LIBRARY_PATH"), "/usr/lib");
}

// ------------------------------------------------------------ start-up failures

TEST(CliStartup, NoGpuLineBecomesOneClearMessage) {
  EXPECT_EQ(DescribeStartupFailure("woolyd: no usable GPU: CUDA driver not found\n", "/l"),
            "no GPU on this machine: CUDA driver not found");
  // Found among other log lines, with a log prefix, with CRLF.
  EXPECT_EQ(DescribeStartupFailure("[info] starting\r\n[error] woolyd: no usable GPU: "
                                   "cuInit: CUDA_ERROR_NO_DEVICE\r\n",
                                   "/l"),
            "no GPU on this machine: cuInit: CUDA_ERROR_NO_DEVICE");
}

TEST(CliStartup, OtherFailuresQuoteTheLastLine) {
  EXPECT_EQ(DescribeStartupFailure("a\nwoolyd: cannot listen: in use\n\n", "/d/woolyd.log"),
            "woolyd exited during start-up: woolyd: cannot listen: in use (log: /d/woolyd.log)");
  EXPECT_EQ(DescribeStartupFailure("", "/d/woolyd.log"),
            "woolyd exited during start-up without output (log: /d/woolyd.log)");
}

TEST(CliStartup, AdminEndpointBesideSessionSocket) {
  EXPECT_EQ(AdminEndpointFor("/run/wooly/woolyd.sock"), "unix:/run/wooly/woolyd-admin.sock");
  EXPECT_EQ(AdminEndpointFor("/tmp/x/gpu1.sock"), "unix:/tmp/x/gpu1-admin.sock");
  EXPECT_EQ(AdminEndpointFor("/tmp/x/plain"), "unix:/tmp/x/plain-admin.sock");
}

// ----------------------------------------------------------------- EnsureServer

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void WriteExecutable(const std::string& path, const std::string& text) {
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  std::ofstream(path) << text;
  std::filesystem::permissions(path, std::filesystem::perms::owner_all);
}

pid_t ParentOf(pid_t pid) {
  const std::string stat = ReadFile("/proc/" + std::to_string(pid) + "/stat");
  std::istringstream in(stat.substr(stat.rfind(')') + 2));
  char state;
  pid_t ppid = 0;
  in >> state >> ppid;
  return ppid;
}

class EnsureServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/wooly-cli-test-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    root_ = tmpl;
    layout_.client_dir = root_ + "/client";
    layout_.client_lib = layout_.client_dir + "/libcuda.so.1";
    layout_.woolyd = root_ + "/server/woolyd";
    sock_dir_ = root_ + "/run";  // does not exist yet: EnsureServer creates it
    opts_.session_endpoint = "unix:" + sock_dir_ + "/woolyd.sock";
    opts_.layout = layout_;
    opts_.base_env = CurrentEnv();
    UnsetEnv(&opts_.base_env, "WOOLY_ADMIN");
    SetEnv(&opts_.base_env, "LD_PRELOAD", layout_.client_lib);
  }
  void TearDown() override {
    if (started_pid_ > 0) ::kill(started_pid_, SIGKILL);
    std::filesystem::remove_all(root_);
  }

  std::string root_;
  std::string sock_dir_;
  Layout layout_;
  EnsureOptions opts_;
  pid_t started_pid_ = -1;
};

TEST_F(EnsureServerTest, UsesARunningServer) {
  std::filesystem::create_directories(sock_dir_);
  wire::Endpoint ep;
  ASSERT_TRUE(wire::ParseEndpoint(opts_.session_endpoint, &ep, nullptr));
  const int listen_fd = wire::Listen(ep, 0600, nullptr);
  ASSERT_GE(listen_fd, 0);
  opts_.layout.woolyd.clear();  // nothing to start: it must not try
  absl::StatusOr<EnsureResult> r = EnsureServer(opts_);
  ::close(listen_fd);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FALSE(r->started);
}

TEST_F(EnsureServerTest, NeverStartsAServerForTcp) {
  // A bound socket that does not listen refuses connections.
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)), 0);
  socklen_t len = sizeof(sa);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len);
  opts_.session_endpoint = "tcp:127.0.0.1:" + std::to_string(ntohs(sa.sin_port));
  absl::StatusOr<EnsureResult> r = EnsureServer(opts_);
  ::close(fd);
  EXPECT_TRUE(absl::IsUnavailable(r.status())) << r.status();
  EXPECT_THAT(std::string(r.status().message()),
              StartsWith("cannot reach woolyd at " + opts_.session_endpoint + ": "));
  EXPECT_FALSE(std::filesystem::exists(sock_dir_));
}

TEST_F(EnsureServerTest, MissingDaemonBinary) {
  opts_.layout.woolyd.clear();
  absl::StatusOr<EnsureResult> r = EnsureServer(opts_);
  EXPECT_TRUE(absl::IsNotFound(r.status())) << r.status();
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("no woolyd binary was found"));
}

TEST_F(EnsureServerTest, NoGpuIsReportedInOneLine) {
  WriteExecutable(layout_.woolyd,
                  "#!/bin/sh\n"
                  "echo 'woolyd: no usable GPU: cuInit failed: CUDA_ERROR_NO_DEVICE' >&2\n"
                  "exit 1\n");
  absl::StatusOr<EnsureResult> r = EnsureServer(opts_);
  EXPECT_TRUE(absl::IsFailedPrecondition(r.status())) << r.status();
  EXPECT_EQ(r.status().message(), "no GPU on this machine: cuInit failed: CUDA_ERROR_NO_DEVICE");
  // The directory is private to the user and the output went to the log.
  EXPECT_EQ(std::filesystem::status(sock_dir_).permissions() & std::filesystem::perms::all,
            std::filesystem::perms::owner_all | std::filesystem::perms::group_read |
                std::filesystem::perms::group_exec);
  EXPECT_THAT(ReadFile(sock_dir_ + "/woolyd.log"), HasSubstr("no usable GPU"));
}

TEST_F(EnsureServerTest, OnlyThisStartsOutputIsConsidered) {
  std::filesystem::create_directories(sock_dir_);
  std::ofstream(sock_dir_ + "/woolyd.log") << "woolyd: no usable GPU: an old run\n";
  WriteExecutable(layout_.woolyd, "#!/bin/sh\necho 'woolyd: bad flag --frob' >&2\nexit 2\n");
  absl::StatusOr<EnsureResult> r = EnsureServer(opts_);
  EXPECT_EQ(r.status().message(), "woolyd exited during start-up: woolyd: bad flag --frob (log: " +
                                      sock_dir_ + "/woolyd.log)");
}

TEST_F(EnsureServerTest, UnexecutableDaemon) {
  std::filesystem::create_directories(std::filesystem::path(layout_.woolyd).parent_path());
  std::ofstream(layout_.woolyd) << "not a program";  // not executable
  absl::StatusOr<EnsureResult> r = EnsureServer(opts_);
  EXPECT_THAT(std::string(r.status().message()),
              HasSubstr("cannot execute " + layout_.woolyd + ": Permission denied"));
}

TEST_F(EnsureServerTest, StartsADetachedDaemonWithACleanEnvironment) {
  const std::string fake = root_ + "/fake_woolyd.py";
  std::ofstream(fake) << R"(import os, socket, sys, time
args = sys.argv[1:]
with open(os.environ["WOOLY_SOCKET_DIR"] + "/seen", "w") as f:
    f.write(" ".join(args) + "\n")
    f.write("LD_PRELOAD=" + os.environ.get("LD_PRELOAD", "<unset>") + "\n")
    f.write("cwd=" + os.getcwd() + "\n")
path = args[args.index("--listen") + 1][len("unix:"):]
s = socket.socket(socket.AF_UNIX)
s.bind(path)
s.listen(8)
time.sleep(60)
)";
  WriteExecutable(layout_.woolyd, std::string("#!/bin/sh\nexec '") + WOOLY_TEST_PYTHON + "' '" +
                                      fake + "' \"$@\"\n");
  absl::StatusOr<EnsureResult> r = EnsureServer(opts_);
  ASSERT_TRUE(r.ok()) << r.status();
  started_pid_ = r->pid;
  EXPECT_TRUE(r->started);
  EXPECT_GT(r->pid, 0);
  EXPECT_EQ(r->log_path, sock_dir_ + "/woolyd.log");

  const std::string seen = ReadFile(sock_dir_ + "/seen");
  EXPECT_THAT(seen, HasSubstr("--listen unix:" + sock_dir_ +
                              "/woolyd.sock --admin unix:" + sock_dir_ + "/woolyd-admin.sock\n"));
  EXPECT_THAT(seen, HasSubstr("LD_PRELOAD=<unset>\n"));
  EXPECT_THAT(seen, HasSubstr("cwd=/\n"));
  // Detached: another session, and not our child (it must outlive an exec).
  EXPECT_NE(::getsid(r->pid), ::getsid(0));
  EXPECT_NE(ParentOf(r->pid), ::getpid());

  // A second run finds it and starts nothing.
  absl::StatusOr<EnsureResult> again = EnsureServer(opts_);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_FALSE(again->started);
}

TEST_F(EnsureServerTest, GivesUpWhenTheSocketNeverAppears) {
  WriteExecutable(layout_.woolyd,
                  "#!/bin/sh\necho $$ > \"$WOOLY_SOCKET_DIR/pid\"\nexec sleep 60\n");
  opts_.timeout_ms = 300;
  absl::StatusOr<EnsureResult> r = EnsureServer(opts_);
  started_pid_ = std::atoi(ReadFile(sock_dir_ + "/pid").c_str());
  EXPECT_TRUE(absl::IsDeadlineExceeded(r.status())) << r.status();
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("did not open " + sock_dir_));
}

// ------------------------------------------------------------------ ExecCommand

int ExitStatusOfChild(const std::function<int()>& body) {
  const pid_t pid = ::fork();
  if (pid == 0) ::_exit(body());
  int status = 0;
  ::waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

TEST(CliExec, RunsTheCommandWithTheEnvironment) {
  EXPECT_EQ(ExitStatusOfChild([] {
              return ExecCommand({"sh", "-c", "test \"$MARK\" = yes && exit 7"},
                                 {"PATH=/usr/bin:/bin", "MARK=yes"});
            }),
            7);
}

TEST(CliExec, MissingProgramIs127) {
  EXPECT_EQ(ExitStatusOfChild(
                [] { return ExecCommand({"/nonexistent/program"}, {"PATH=/usr/bin:/bin"}); }),
            127);
}

}  // namespace
}  // namespace wooly::cli
