// woolyd's command line.
#include <unistd.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "wooly/proto/defaults.h"
#include "wooly/server/daemon.h"

namespace wooly::server {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

absl::StatusOr<DaemonFlags> Parse(std::vector<const char*> args) {
  args.insert(args.begin(), "woolyd");
  return ParseDaemonFlags(static_cast<int>(args.size()), args.data());
}

class DaemonFlagsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ::setenv(wire::kEnvSocketDir, "/tmp/wooly-flags-test", 1);
    ::unsetenv(wire::kEnvServer);
    ::unsetenv(wire::kEnvAdmin);
    ::unsetenv(kEnvConfig);
  }
  // Writes `text` to a fresh config file and returns its path.
  std::string Config(const std::string& text) {
    char path[] = "/tmp/wooly-config-XXXXXX";
    const int fd = ::mkstemp(path);
    EXPECT_GE(fd, 0);
    EXPECT_EQ(::write(fd, text.data(), text.size()), static_cast<ssize_t>(text.size()));
    ::close(fd);
    files_.push_back(path);
    return path;
  }
  void TearDown() override {
    for (const std::string& f : files_) ::unlink(f.c_str());
  }
  std::vector<std::string> files_;
};

TEST_F(DaemonFlagsTest, Defaults) {
  absl::StatusOr<DaemonFlags> f = Parse({});
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_THAT(f->listen, ElementsAre("unix:/tmp/wooly-flags-test/woolyd.sock"));
  EXPECT_EQ(f->admin, "unix:/tmp/wooly-flags-test/woolyd-admin.sock");
  EXPECT_EQ(f->device, 0);
  EXPECT_EQ(f->log_level, "info");
  EXPECT_FALSE(f->version);
}

TEST_F(DaemonFlagsTest, TcpIsAddedToTheDefaultUnixSocket) {
  absl::StatusOr<DaemonFlags> f =
      Parse({"--listen", "tcp:127.0.0.1:7070", "--listen=tcp:0.0.0.0:0", "--device=1",
             "--log-level", "debug", "--admin", "tcp:127.0.0.1:0", "--ready-file", "/tmp/r"});
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_THAT(f->listen, ElementsAre("unix:/tmp/wooly-flags-test/woolyd.sock", "tcp:127.0.0.1:7070",
                                     "tcp:0.0.0.0:0"));
  EXPECT_EQ(f->device, 1);
  EXPECT_EQ(f->log_level, "debug");
  EXPECT_EQ(f->admin, "tcp:127.0.0.1:0");
  EXPECT_EQ(f->ready_file, "/tmp/r");
}

TEST_F(DaemonFlagsTest, AnExplicitUnixSocketReplacesTheDefault) {
  absl::StatusOr<DaemonFlags> f = Parse({"--listen", "unix:/tmp/x.sock", "--admin", "none"});
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_THAT(f->listen, ElementsAre("unix:/tmp/x.sock"));
  EXPECT_EQ(f->admin, "");
}

TEST_F(DaemonFlagsTest, VersionAndHelp) {
  EXPECT_TRUE(Parse({"--version"})->version);
  EXPECT_TRUE(Parse({"--help"})->help);
}

TEST_F(DaemonFlagsTest, BadFlagsNameTheProblem) {
  EXPECT_THAT(std::string(Parse({"--bogus"}).status().message()), HasSubstr("--bogus"));
  EXPECT_THAT(std::string(Parse({"--device", "-1"}).status().message()), HasSubstr("--device"));
  EXPECT_THAT(std::string(Parse({"--device", "gpu0"}).status().message()), HasSubstr("gpu0"));
  EXPECT_THAT(std::string(Parse({"--log-level", "loud"}).status().message()), HasSubstr("loud"));
  EXPECT_THAT(std::string(Parse({"--listen"}).status().message()), HasSubstr("needs a value"));
  EXPECT_THAT(std::string(Parse({"--listen", "nonsense"}).status().message()),
              HasSubstr("--listen"));
  EXPECT_THAT(std::string(Parse({"--admin", "tcp:host"}).status().message()), HasSubstr("--admin"));
  EXPECT_FALSE(Parse({"stray"}).ok());
  EXPECT_THAT(std::string(Parse({"--module-cache-bytes", "lots"}).status().message()),
              HasSubstr("lots"));
  EXPECT_THAT(std::string(Parse({"--module-cache-dir="}).status().message()),
              HasSubstr("--module-cache-dir"));
}

TEST_F(DaemonFlagsTest, ModuleCache) {
  absl::StatusOr<DaemonFlags> f = Parse({});
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(f->module_cache_dir, DefaultModuleCacheDir());
  EXPECT_EQ(f->module_cache_bytes, 4ull << 30);
  f = Parse({"--module-cache-dir", "none", "--module-cache-bytes=512M"});
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->module_cache_dir, "");
  EXPECT_EQ(f->module_cache_bytes, 512ull << 20);
  f = Parse({"--module-cache-dir=/srv/cache", "--module-cache-bytes", "0"});
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->module_cache_dir, "/srv/cache");
  EXPECT_EQ(f->module_cache_bytes, 0u);
}

TEST_F(DaemonFlagsTest, ConfigFileSetsWhatFlagsSet) {
  const std::string path = Config(R"(
listen = ["unix:/run/w/woolyd.sock", "tcp:0.0.0.0:7070"]
admin = "none"
device = 1
log_level = "debug"
metrics = "0.0.0.0:9400"
[module_cache]
dir = "/srv/wooly/modules"
bytes = "512M"
)");
  absl::StatusOr<DaemonFlags> f = Parse({"--config", path.c_str()});
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_THAT(f->listen, ElementsAre("unix:/run/w/woolyd.sock", "tcp:0.0.0.0:7070"));
  EXPECT_EQ(f->admin, "");
  EXPECT_EQ(f->device, 1);
  EXPECT_EQ(f->log_level, "debug");
  EXPECT_EQ(f->metrics, "0.0.0.0:9400");
  EXPECT_EQ(f->module_cache_dir, "/srv/wooly/modules");
  EXPECT_EQ(f->module_cache_bytes, 512ull << 20);

  // Flags override the file; --listen replaces its list. $WOOLY_CONFIG
  // names the file when --config does not.
  ::setenv(kEnvConfig, path.c_str(), 1);
  f = Parse({"--device", "0", "--listen", "unix:/tmp/x.sock"});
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->device, 0);
  EXPECT_THAT(f->listen, ElementsAre("unix:/tmp/x.sock"));
  EXPECT_EQ(f->log_level, "debug");
}

TEST_F(DaemonFlagsTest, ConfigFileErrorsNameTheKey) {
  auto error = [&](const std::string& text) {
    const std::string path = Config(text);
    absl::StatusOr<DaemonFlags> f = Parse({"--config", path.c_str()});
    return f.ok() ? std::string("ok") : std::string(f.status().message());
  };
  EXPECT_THAT(error("colour = \"blue\"\n"), HasSubstr("'colour': unknown key"));
  EXPECT_THAT(error("[module_cache]\nsize = 3\n"), HasSubstr("'module_cache.size'"));
  EXPECT_THAT(error("device = -2\n"), HasSubstr("'device'"));
  EXPECT_THAT(error("listen = \"unix:/x\"\n"), HasSubstr("'listen': must be a list"));
  EXPECT_THAT(error("log_level = \"loud\"\n"), HasSubstr("'log_level'"));
  EXPECT_THAT(error("metrics = \"nowhere\"\n"), HasSubstr("'metrics'"));
  EXPECT_THAT(error("[module_cache]\nbytes = \"lots\"\n"), HasSubstr("'module_cache.bytes'"));
  EXPECT_THAT(error("device = [\n"), HasSubstr("line"));  // a TOML syntax error
  EXPECT_THAT(std::string(Parse({"--config", "/nonexistent/woolyd.toml"}).status().message()),
              HasSubstr("/nonexistent/woolyd.toml"));
}

}  // namespace
}  // namespace wooly::server
