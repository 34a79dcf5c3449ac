// woolyd's supervisor (daemon.h). The restart policy on its own, then
// woolyd-fake run as a subprocess: when the fake's context reset is made to
// fail (WOOLY_FAKE_RESET_FAILS=1, as the real driver's does after a kernel
// fault), the faulting client gets the sticky error, the worker exits with
// kExitContextLost, and the supervisor starts a new worker on the same
// sockets, which serves new clients. Stop signals reach the worker, and no
// worker outlives its supervisor.
//
// Waits for the subprocesses are bounded polls of their state (the ready
// file, /proc); nothing asserts on timing.
#include <cuda.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server_test_client.h"
#include "wooly/fake/fake_backend.h"
#include "wooly/proto/wire.h"
#include "wooly/server/daemon.h"

extern char** environ;

namespace wooly::server {
namespace {

using ::testing::HasSubstr;
using wooly::fake::MakeFakeModuleImage;
using wooly::testing::ArgPacker;
using wooly::testing::TestClient;

// ------------------------------------------------------------ RestartPolicy

TEST(RestartPolicyTest, RestartsAtOnceThenBacksOffThenGivesUp) {
  RestartPolicy policy;
  absl::Time now = absl::UnixEpoch() + absl::Hours(1);
  for (int i = 0; i < RestartPolicy::kFreeRestarts; ++i) {
    const RestartPolicy::Decision d = policy.OnWorkerLost(now);
    EXPECT_FALSE(d.give_up) << i;
    EXPECT_EQ(d.delay, absl::ZeroDuration()) << i;
    now += absl::Seconds(1);
  }
  // Faster than kFreeRestarts a minute: 1 s, then doubling, up to the cap.
  absl::Duration expected = RestartPolicy::kFirstDelay;
  for (int i = 0; i < 5; ++i) {
    const RestartPolicy::Decision d = policy.OnWorkerLost(now);
    EXPECT_FALSE(d.give_up);
    EXPECT_EQ(d.delay, expected) << i;
    expected = std::min(expected * 2, RestartPolicy::kMaxDelay);
    now += absl::Seconds(1);
  }
  // Keep losing it: the delay stays capped until too many restarts fall
  // within the give-up window.
  int more = 0;
  RestartPolicy::Decision d;
  for (;;) {
    d = policy.OnWorkerLost(now);
    if (d.give_up) break;
    EXPECT_LE(d.delay, RestartPolicy::kMaxDelay);
    now += absl::Seconds(2);
    ASSERT_LT(++more, 100);
  }
  EXPECT_EQ(policy.recent_restarts(), RestartPolicy::kMaxRestarts);
}

TEST(RestartPolicyTest, RareLossesAlwaysRestartAtOnce) {
  RestartPolicy policy;
  absl::Time now = absl::UnixEpoch();
  for (int i = 0; i < 3 * RestartPolicy::kMaxRestarts; ++i) {
    const RestartPolicy::Decision d = policy.OnWorkerLost(now);
    EXPECT_FALSE(d.give_up) << i;
    EXPECT_EQ(d.delay, absl::ZeroDuration()) << i;
    now += RestartPolicy::kGiveUpWindow / (RestartPolicy::kFreeRestarts - 1);
  }
}

TEST(RestartPolicyTest, TheBackOffEndsWhenLossesSlowDown) {
  RestartPolicy policy;
  absl::Time now = absl::UnixEpoch();
  for (int i = 0; i <= RestartPolicy::kFreeRestarts; ++i) policy.OnWorkerLost(now);
  EXPECT_GT(policy.OnWorkerLost(now).delay, absl::ZeroDuration());
  now += RestartPolicy::kFreeWindow;
  EXPECT_EQ(policy.OnWorkerLost(now).delay, absl::ZeroDuration());
}

TEST(DaemonFlagsTest, NoSupervisor) {
  const char* argv[] = {"woolyd", "--no-supervisor"};
  absl::StatusOr<DaemonFlags> f = ParseDaemonFlags(2, argv);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_FALSE(f->supervise);
  const char* plain[] = {"woolyd"};
  f = ParseDaemonFlags(1, plain);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_TRUE(f->supervise);
  EXPECT_THAT(DaemonUsage("woolyd"), HasSubstr("--no-supervisor"));
}

// ------------------------------------------------------ woolyd-fake, for real

constexpr auto kBound = std::chrono::seconds(30);  // bound on every wait

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

struct Ready {
  std::string unix_endpoint;
  std::string tcp_endpoint;
  std::string admin;
  pid_t pid = -1;
};

std::optional<Ready> ParseReady(const std::string& path) {
  std::ifstream in(path);
  if (!in) return std::nullopt;
  Ready r;
  std::string kind, value;
  while (in >> kind >> value) {
    if (kind == "listen" && value.rfind("tcp:", 0) == 0) r.tcp_endpoint = value;
    if (kind == "listen" && value.rfind("unix:", 0) == 0) r.unix_endpoint = value;
    if (kind == "admin") r.admin = value;
    if (kind == "pid") r.pid = static_cast<pid_t>(std::atoi(value.c_str()));
  }
  if (r.pid <= 0) return std::nullopt;  // written atomically: complete or absent
  return r;
}

// The parent pid of `pid` and whether it has exited (gone or a zombie).
struct ProcInfo {
  bool exited = true;
  pid_t ppid = -1;
};
ProcInfo Proc(pid_t pid) {
  ProcInfo info;
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(in, line)) return info;
  // "pid (comm) state ppid ...": comm may hold spaces, so start after ')'.
  const size_t close = line.rfind(')');
  if (close == std::string::npos) return info;
  std::istringstream rest(line.substr(close + 1));
  char state = 0;
  rest >> state >> info.ppid;
  info.exited = state == 'Z' || state == 'X';
  return info;
}

// Polls `done` until it holds or the bound passes.
bool Eventually(const std::function<bool()>& done) {
  const auto deadline = std::chrono::steady_clock::now() + kBound;
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return true;
}

// A fresh client's full round trip with the test kernel vector_add.
void ExpectVectorAddWorks(const std::string& endpoint, const std::string& name) {
  std::unique_ptr<TestClient> c = TestClient::Connect(endpoint);
  ASSERT_NE(c, nullptr) << endpoint;
  ASSERT_EQ(c->Hello(name), CUDA_SUCCESS) << endpoint;
  uint64_t module = 0, fn = 0;
  ASSERT_EQ(c->LoadModule(MakeFakeModuleImage({"vector_add"}), &module), CUDA_SUCCESS);
  ASSERT_EQ(c->GetFunction(module, "vector_add", &fn), CUDA_SUCCESS);
  constexpr int kN = 256;
  std::vector<float> a(kN), b(kN), out(kN, 0.f);
  for (int i = 0; i < kN; ++i) {
    a[i] = static_cast<float>(i);
    b[i] = static_cast<float>(2 * i);
  }
  uint64_t da = 0, db = 0, dc = 0;
  ASSERT_EQ(c->MemAlloc(kN * 4, &da), CUDA_SUCCESS);
  ASSERT_EQ(c->MemAlloc(kN * 4, &db), CUDA_SUCCESS);
  ASSERT_EQ(c->MemAlloc(kN * 4, &dc), CUDA_SUCCESS);
  ASSERT_EQ(c->HtoD(da, a.data(), kN * 4), CUDA_SUCCESS);
  ASSERT_EQ(c->HtoD(db, b.data(), kN * 4), CUDA_SUCCESS);
  ASSERT_EQ(c->Launch(fn, 1, kN, ArgPacker().Add(da).Add(db).Add(dc).Add(int32_t{kN}).bytes()),
            CUDA_SUCCESS);
  ASSERT_EQ(c->DtoH(out.data(), dc, kN * 4), CUDA_SUCCESS);
  for (int i = 0; i < kN; ++i) ASSERT_EQ(out[i], static_cast<float>(3 * i)) << i;
  EXPECT_EQ(c->Code(wire::Op::kGoodbye, wire::Writer()), CUDA_SUCCESS);
}

// Makes `client` run fill_u32 on address 0: the fake kernel faults with
// CUDA_ERROR_ILLEGAL_ADDRESS, a sticky error. Returns the launch's result.
CUresult LaunchFaultingKernel(TestClient& client) {
  uint64_t module = 0, fn = 0;
  if (client.LoadModule(MakeFakeModuleImage({"fill_u32"}), &module) != CUDA_SUCCESS ||
      client.GetFunction(module, "fill_u32", &fn) != CUDA_SUCCESS) {
    return CUDA_ERROR_UNKNOWN;
  }
  return client.Launch(fn, 1, 4,
                       ArgPacker().Add(uint64_t{0}).Add(uint32_t{7}).Add(int32_t{4}).bytes());
}

// Bounds a client's blocking reads, so a server that never answers fails
// the test instead of hanging it.
void BoundReads(TestClient& client) {
  timeval tv{static_cast<time_t>(kBound.count()), 0};
  ::setsockopt(client.fd(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
}

class SupervisorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = testing::MakeTempDir();
    ASSERT_FALSE(dir_.empty());
    ready_ = dir_ + "/ready";
    log_ = dir_ + "/woolyd.log";
  }
  void TearDown() override {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }

  // Starts woolyd-fake with `extra_args` and `extra_env`.
  void Start(const std::vector<std::string>& extra_args,
             const std::vector<std::string>& extra_env = {}) {
    std::vector<std::string> args = {WOOLY_FAKE_WOOLYD,
                                     "--listen",
                                     "unix:" + dir_ + "/s.sock",
                                     "--listen",
                                     "tcp:127.0.0.1:0",
                                     "--admin",
                                     "unix:" + dir_ + "/admin.sock",
                                     "--ready-file",
                                     ready_};
    args.insert(args.end(), extra_args.begin(), extra_args.end());
    std::vector<std::string> env;
    for (char** e = environ; *e != nullptr; ++e) env.emplace_back(*e);
    env.push_back("WOOLY_SOCKET_DIR=" + dir_);
    env.insert(env.end(), extra_env.begin(), extra_env.end());
    std::vector<char*> c_args, c_env;
    for (std::string& a : args) c_args.push_back(a.data());
    c_args.push_back(nullptr);
    for (std::string& e : env) c_env.push_back(e.data());
    c_env.push_back(nullptr);
    pid_ = ::fork();
    ASSERT_GE(pid_, 0);
    if (pid_ == 0) {
      const int fd = ::open(log_.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
      ::dup2(fd, 1);
      ::dup2(fd, 2);
      ::execve(c_args[0], c_args.data(), c_env.data());
      ::_exit(127);
    }
  }

  // Waits for a ready file whose serving pid is not `old_pid`.
  std::optional<Ready> AwaitReady(pid_t old_pid = -1) {
    std::optional<Ready> ready;
    const bool ok = Eventually([&] {
      ready = ParseReady(ready_);
      if (ready && ready->pid != old_pid) return true;
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        ADD_FAILURE() << "woolyd-fake exited (status " << status << ")\n" << ReadFile(log_);
        pid_ = -1;
        return true;
      }
      return false;
    });
    if (!ok) ADD_FAILURE() << "no ready file\n" << ReadFile(log_);
    if (pid_ < 0 || !ok) return std::nullopt;
    return ready;
  }

  // Waits for woolyd-fake to exit; its wait status, or nullopt past the bound.
  std::optional<int> AwaitExit() {
    int status = 0;
    const bool ok = Eventually([&] { return ::waitpid(pid_, &status, WNOHANG) == pid_; });
    if (!ok) return std::nullopt;
    pid_ = -1;
    return status;
  }

  std::string dir_;
  std::string ready_;
  std::string log_;
  pid_t pid_ = -1;  // woolyd-fake (the supervisor unless --no-supervisor)
};

// The worker's reset fails after a kernel fault, as on the real driver: it
// answers the faulting client with the sticky error and exits; the
// supervisor starts a new worker on the same sockets (same TCP port), and a
// client that connected meanwhile waited in the backlog and is served.
TEST_F(SupervisorTest, AWorkerWhoseContextIsLostIsReplaced) {
  Start({}, {"WOOLY_FAKE_RESET_FAILS=1"});
  std::optional<Ready> first = AwaitReady();
  ASSERT_TRUE(first.has_value());
  ASSERT_FALSE(first->tcp_endpoint.empty());
  EXPECT_NE(first->pid, pid_);             // a worker serves,
  EXPECT_EQ(Proc(first->pid).ppid, pid_);  // under the supervisor
  ExpectVectorAddWorks(first->unix_endpoint, "before");

  Ready current = *first;
  for (int round = 0; round < 2; ++round) {
    SCOPED_TRACE(round);
    std::unique_ptr<TestClient> faulty = TestClient::Connect(current.unix_endpoint);
    ASSERT_NE(faulty, nullptr);
    BoundReads(*faulty);
    ASSERT_EQ(faulty->Hello("faulty"), CUDA_SUCCESS);
    std::unique_ptr<TestClient> bystander = TestClient::Connect(current.tcp_endpoint);
    ASSERT_NE(bystander, nullptr);
    BoundReads(*bystander);
    ASSERT_EQ(bystander->Hello("bystander"), CUDA_SUCCESS);

    EXPECT_EQ(LaunchFaultingKernel(*faulty), CUDA_ERROR_ILLEGAL_ADDRESS);
    // The worker stopped accepting before that reply: this client waits in
    // the backlog for the next worker.
    std::unique_ptr<TestClient> early = TestClient::Connect(current.tcp_endpoint);
    ASSERT_NE(early, nullptr);
    BoundReads(*early);
    // The faulted worker closes every session.
    EXPECT_TRUE(faulty->ServerClosed());
    EXPECT_TRUE(bystander->ServerClosed());

    std::optional<Ready> next = AwaitReady(current.pid);
    ASSERT_TRUE(next.has_value());
    EXPECT_NE(next->pid, current.pid);
    EXPECT_NE(next->pid, pid_);
    EXPECT_EQ(Proc(next->pid).ppid, pid_);  // the same supervisor
    EXPECT_TRUE(Proc(current.pid).exited);
    EXPECT_EQ(next->tcp_endpoint, current.tcp_endpoint);  // same socket, same port
    EXPECT_EQ(next->unix_endpoint, current.unix_endpoint);

    EXPECT_EQ(early->Hello("early"), CUDA_SUCCESS);
    ExpectVectorAddWorks(next->tcp_endpoint, "after-tcp");
    ExpectVectorAddWorks(next->unix_endpoint, "after-unix");
    current = *next;
  }
  const std::string log = ReadFile(log_);
  EXPECT_THAT(log, HasSubstr("starting a new worker"));

  ::kill(pid_, SIGTERM);
  std::optional<int> status = AwaitExit();
  ASSERT_TRUE(status.has_value()) << ReadFile(log_);
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << *status << "\n" << ReadFile(log_);
  EXPECT_TRUE(Proc(current.pid).exited);
}

// Without the supervisor the process itself exits with kExitContextLost
// (for systemd's Restart=on-failure, say), after answering the fault.
TEST_F(SupervisorTest, WithoutTheSupervisorTheProcessExitsContextLost) {
  Start({"--no-supervisor"}, {"WOOLY_FAKE_RESET_FAILS=1"});
  std::optional<Ready> ready = AwaitReady();
  ASSERT_TRUE(ready.has_value());
  EXPECT_EQ(ready->pid, pid_);
  std::unique_ptr<TestClient> faulty = TestClient::Connect(ready->unix_endpoint);
  ASSERT_NE(faulty, nullptr);
  BoundReads(*faulty);
  ASSERT_EQ(faulty->Hello("faulty"), CUDA_SUCCESS);
  EXPECT_EQ(LaunchFaultingKernel(*faulty), CUDA_ERROR_ILLEGAL_ADDRESS);
  std::optional<int> status = AwaitExit();
  ASSERT_TRUE(status.has_value()) << ReadFile(log_);
  ASSERT_TRUE(WIFEXITED(*status)) << *status;
  EXPECT_EQ(WEXITSTATUS(*status), kExitContextLost) << ReadFile(log_);
  EXPECT_FALSE(std::filesystem::exists(ready_));  // it no longer serves
}

// On the fake backend's own reset (which works) nothing restarts: the same
// worker serves on.
TEST_F(SupervisorTest, AWorkingResetKeepsTheWorker) {
  Start({});
  std::optional<Ready> ready = AwaitReady();
  ASSERT_TRUE(ready.has_value());
  std::unique_ptr<TestClient> faulty = TestClient::Connect(ready->unix_endpoint);
  ASSERT_NE(faulty, nullptr);
  BoundReads(*faulty);
  ASSERT_EQ(faulty->Hello("faulty"), CUDA_SUCCESS);
  EXPECT_EQ(LaunchFaultingKernel(*faulty), CUDA_ERROR_ILLEGAL_ADDRESS);
  ExpectVectorAddWorks(ready->unix_endpoint, "after");
  EXPECT_EQ(ParseReady(ready_)->pid, ready->pid);
  EXPECT_FALSE(Proc(ready->pid).exited);
}

// SIGTERM to the supervisor stops the worker too, cleanly, and removes the
// sockets.
TEST_F(SupervisorTest, SigtermStopsSupervisorAndWorker) {
  Start({});
  std::optional<Ready> ready = AwaitReady();
  ASSERT_TRUE(ready.has_value());
  ASSERT_NE(ready->pid, pid_);
  ::kill(pid_, SIGTERM);
  std::optional<int> status = AwaitExit();
  ASSERT_TRUE(status.has_value()) << ReadFile(log_);
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << *status;
  // The supervisor waited for its worker, so no orphan is left.
  EXPECT_TRUE(Proc(ready->pid).exited);
  EXPECT_FALSE(std::filesystem::exists(dir_ + "/s.sock"));
  EXPECT_FALSE(std::filesystem::exists(dir_ + "/admin.sock"));
}

// A supervisor that is killed outright takes its worker with it.
TEST_F(SupervisorTest, AKilledSupervisorTakesTheWorkerWithIt) {
  Start({});
  std::optional<Ready> ready = AwaitReady();
  ASSERT_TRUE(ready.has_value());
  ::kill(pid_, SIGKILL);
  ASSERT_TRUE(AwaitExit().has_value());
  EXPECT_TRUE(Eventually([&] { return Proc(ready->pid).exited; })) << ReadFile(log_);
}

// With no usable GPU the worker's one line is all there is, and the status
// is 1, as wooly-cli run expects; the supervisor leaves no socket behind.
TEST_F(SupervisorTest, NoUsableGpuIsOneLineAndStatusOne) {
  Start({"--device", "1"});
  std::optional<int> status = AwaitExit();
  ASSERT_TRUE(status.has_value());
  ASSERT_TRUE(WIFEXITED(*status));
  EXPECT_EQ(WEXITSTATUS(*status), 1);
  EXPECT_EQ(ReadFile(log_), "woolyd-fake: no usable GPU: the fake backend has only device 0\n");
  EXPECT_FALSE(std::filesystem::exists(dir_ + "/s.sock"));
  EXPECT_FALSE(std::filesystem::exists(ready_));
}

// A second woolyd on a unix socket that one already serves is refused at
// once, by the supervisor, without touching the first.
TEST_F(SupervisorTest, ASecondDaemonOnTheSameSocketIsRefused) {
  Start({});
  std::optional<Ready> ready = AwaitReady();
  ASSERT_TRUE(ready.has_value());
  const pid_t first = pid_;
  const std::string first_log = log_;
  log_ = dir_ + "/second.log";
  Start({});
  std::optional<int> status = AwaitExit();
  ASSERT_TRUE(status.has_value());
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 1);
  EXPECT_THAT(ReadFile(log_), HasSubstr("cannot start: another server is already listening"));
  pid_ = first;
  log_ = first_log;
  ExpectVectorAddWorks(ready->unix_endpoint, "still-served");
}

}  // namespace
}  // namespace wooly::server
