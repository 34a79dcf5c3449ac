// The built wooly-smi, run as `nvidia-smi` in a child process, against the
// built libnvidia-ml.so.1 (found through LD_LIBRARY_PATH, as in a tenant
// container) and the in-process fake woolyd (client_fake_woolyd.h): what it
// prints must be the tenant view the fake answered.
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "client_fake_woolyd.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace {

using ::testing::HasSubstr;
using ::testing::MatchesRegex;
using ::testing::Not;
using ::testing::StartsWith;
using wooly::testing::FakeWoolyd;

constexpr unsigned long long kGiB = 1ull << 30;

struct SmiRun {
  int rc = -1;
  std::string out;
};

std::string Dir(const std::string& file) { return file.substr(0, file.rfind('/')); }

class SmiNvmlTest : public ::testing::Test {
 protected:
  void SetUp() override {
    FakeWoolyd::TenantViewReply v;
    v.tenant = "team-a";
    v.memory_limit = 20 * kGiB;
    v.memory_total = 20 * kGiB;
    v.memory_used = 5 * kGiB;
    v.device_total = 80 * kGiB;
    v.device_free = 50 * kGiB;
    v.measured_share = 0.426;
    v.processes = {{100, 1 * kGiB, "trainer"}, {200, 4 * kGiB, "server"}};
    fake_.set_tenant_view(v);
  }

  // Runs the binary with args through the shell (stdout and stderr).
  SmiRun Smi(const std::string& args, const std::string& extra_env = "") {
    const std::string cmd = "env -u LD_PRELOAD LD_LIBRARY_PATH=" + Dir(WOOLY_NVML_LIB) +
                            " WOOLY_SERVER=" + fake_.endpoint() +
                            " WOOLY_NVML_CACHE_MS=0 WOOLY_LOG=error WOOLY_TENANT=team-a " +
                            extra_env + " " + WOOLY_SMI + " " + args + " 2>&1";
    SmiRun r;
    FILE* p = popen(cmd.c_str(), "r");
    if (p == nullptr) return r;
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof(buf), p)) > 0) r.out.append(buf, n);
    const int status = pclose(p);
    r.rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    return r;
  }

  FakeWoolyd fake_;
};

TEST_F(SmiNvmlTest, TableIsTheTenantView) {
  const SmiRun r = Smi("");
  ASSERT_EQ(r.rc, 0) << r.out;
  EXPECT_THAT(r.out, HasSubstr("\nWooly view of "));
  EXPECT_THAT(r.out, HasSubstr("(tenant team-a)\n"));
  EXPECT_THAT(r.out, HasSubstr("(Wooly)"));
  EXPECT_THAT(r.out, HasSubstr("5120MiB /  20480MiB"));
  EXPECT_THAT(r.out, HasSubstr("43% |"));
  EXPECT_THAT(r.out, HasSubstr("100      C   trainer"));
  EXPECT_THAT(r.out, HasSubstr("200      C   server"));
  EXPECT_THAT(r.out, HasSubstr("4096MiB |"));
}

TEST_F(SmiNvmlTest, ListAndQueries) {
  SmiRun r = Smi("-L");
  ASSERT_EQ(r.rc, 0) << r.out;
  EXPECT_THAT(r.out, MatchesRegex("GPU 0: .* \\(Wooly\\) \\(UUID: GPU-[0-9a-f-]+\\)\n"));

  r =
      Smi("--query-gpu=index,memory.total,memory.used,utilization.gpu,count,pstate "
          "--format=csv");
  ASSERT_EQ(r.rc, 0) << r.out;
  EXPECT_EQ(r.out,
            "index, memory.total [MiB], memory.used [MiB], utilization.gpu [%], count, pstate\n"
            "0, 20480 MiB, 5120 MiB, 43 %, 1, [N/A]\n");

  r = Smi("--query-compute-apps=pid,process_name,used_memory --format=csv,noheader,nounits");
  ASSERT_EQ(r.rc, 0) << r.out;
  EXPECT_EQ(r.out, "100, trainer, 1024\n200, server, 4096\n");

  r = Smi("-q");
  ASSERT_EQ(r.rc, 0) << r.out;
  EXPECT_THAT(r.out, HasSubstr("Total                             : 20480 MiB"));
  EXPECT_THAT(r.out, HasSubstr("Process ID                        : 200"));
}

TEST_F(SmiNvmlTest, MarkerCanBeEmpty) {
  // WOOLY_NVML_MARKER= : the name is plain, the header still says Wooly.
  const SmiRun r = Smi("--query-gpu=name --format=csv,noheader", "WOOLY_NVML_MARKER=");
  ASSERT_EQ(r.rc, 0) << r.out;
  EXPECT_THAT(r.out, Not(HasSubstr("(Wooly)")));
  const SmiRun t = Smi("", "WOOLY_NVML_MARKER=");
  EXPECT_THAT(t.out, HasSubstr("\nWooly view of " + r.out.substr(0, r.out.size() - 1) +
                               " (tenant team-a)\n"));
}

TEST_F(SmiNvmlTest, BadArgumentsExitTwo) {
  SmiRun r = Smi("--query-gpu=nonsense --format=csv");
  EXPECT_EQ(r.rc, 2);
  EXPECT_EQ(r.out, "Field \"nonsense\" is not a valid field to query.\n");
  r = Smi("-pm 1");
  EXPECT_EQ(r.rc, 2);
  EXPECT_THAT(r.out, StartsWith("wooly nvidia-smi: option -pm is not supported"));
}

TEST_F(SmiNvmlTest, WoolydDownExitsNine) {
  const SmiRun r = Smi("", "WOOLY_SERVER=unix:/tmp/wooly-smi-test-none/woolyd.sock");
  EXPECT_EQ(r.rc, 9);
  EXPECT_THAT(r.out, HasSubstr("nvmlInit_v2 failed"));
}

}  // namespace

namespace {

// Against a library that is not Wooly's (a stand-in for NVIDIA's): hand
// over to the next nvidia-smi on PATH outside wooly-smi's own directory,
// else print the plain figures, saying they are not Wooly's view.
class SmiNotWoolyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/wooly-smi-test-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    std::remove((dir_ + "/nvidia-smi").c_str());
    rmdir(dir_.c_str());
  }

  SmiRun Smi(const std::string& args) {
    const std::string cmd = "env -u LD_PRELOAD -u WOOLY_SMI_HANDED_OVER LD_LIBRARY_PATH=" +
                            Dir(WOOLY_FAKE_NVIDIA_NVML) + " PATH=" + Dir(WOOLY_SMI) + ":" + dir_ +
                            " nvidia-smi " + args + " 2>&1";
    SmiRun r;
    FILE* p = popen(cmd.c_str(), "r");
    if (p == nullptr) return r;
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof(buf), p)) > 0) r.out.append(buf, n);
    const int status = pclose(p);
    r.rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    return r;
  }

  std::string dir_;
};

TEST_F(SmiNotWoolyTest, PrintsPlainFiguresWhenNoRealSmi) {
  SmiRun r = Smi("--query-gpu=name,memory.total,memory.used --format=csv,noheader");
  ASSERT_EQ(r.rc, 0) << r.out;
  EXPECT_EQ(r.out, "Plain Test GPU, 8192 MiB, 1024 MiB\n");
  r = Smi("");
  ASSERT_EQ(r.rc, 0) << r.out;
  EXPECT_THAT(r.out, HasSubstr("\nNVML view of Plain Test GPU (not Wooly's NVML library"));
  EXPECT_THAT(r.out, Not(HasSubstr("Wooly view")));
}

TEST_F(SmiNotWoolyTest, HandsOverToTheRealSmi) {
  const std::string real = dir_ + "/nvidia-smi";
  FILE* f = std::fopen(real.c_str(), "w");
  ASSERT_NE(f, nullptr);
  std::fputs("#!/bin/sh\necho \"REAL $*\"\nexit 3\n", f);
  std::fclose(f);
  ASSERT_EQ(chmod(real.c_str(), 0755), 0);
  const SmiRun r = Smi("-pm 1");  // any option: the real one judges it
  EXPECT_EQ(r.rc, 3);
  EXPECT_EQ(r.out, "REAL -pm 1\n");
}

}  // namespace
