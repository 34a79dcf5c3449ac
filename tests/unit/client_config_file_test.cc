// The client config file (proto/defaults.h Setting, ParseClientConfig).
#include <fcntl.h>
#include <unistd.h>

#include <cstdlib>
#include <string>
#include <utility>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "wooly/proto/defaults.h"

namespace wooly::wire {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Pair;

TEST(ClientConfigParseTest, KeyValueLines) {
  std::vector<std::pair<std::string, std::string>> values;
  std::vector<std::string> errors;
  ParseClientConfig(
      "# node defaults\n"
      "WOOLY_SERVER=unix:/run/wooly/woolyd.sock\n"
      "\n"
      "  WOOLY_PRIORITY = 3  \r\n"
      "export WOOLY_TENANT=\"team a\"\n"
      "WOOLY_LOG='debug'\n"
      "WOOLY_EMPTY=\n"
      "WOOLY_URL=tcp:host:7070#x\n",
      "client.conf", &values, &errors);
  EXPECT_THAT(errors, ::testing::IsEmpty());
  EXPECT_THAT(values, ElementsAre(Pair("WOOLY_SERVER", "unix:/run/wooly/woolyd.sock"),
                                  Pair("WOOLY_PRIORITY", "3"), Pair("WOOLY_TENANT", "team a"),
                                  Pair("WOOLY_LOG", "debug"), Pair("WOOLY_EMPTY", ""),
                                  Pair("WOOLY_URL", "tcp:host:7070#x")));
}

TEST(ClientConfigParseTest, MalformedLinesAreReportedWithTheirLine) {
  std::vector<std::pair<std::string, std::string>> values;
  std::vector<std::string> errors;
  ParseClientConfig(
      "WOOLY_PRIORITY=1\n"
      "just words\n"
      "PATH=/bin\n"
      "wooly_log=debug\n"
      "WOOLY_CLIENT_CONFIG=/other\n"
      "WOOLY_TENANT=\"open\n"
      "=3\n"
      "WOOLY_DEDUP=1",
      "/etc/wooly/client.conf", &values, &errors);
  EXPECT_THAT(values, ElementsAre(Pair("WOOLY_PRIORITY", "1"), Pair("WOOLY_DEDUP", "1")));
  ASSERT_EQ(errors.size(), 6u);
  EXPECT_THAT(errors[0], HasSubstr("/etc/wooly/client.conf line 2"));
  EXPECT_THAT(errors[1], HasSubstr("line 3"));
  EXPECT_THAT(errors[2], HasSubstr("line 4"));
  EXPECT_THAT(errors[3], HasSubstr("line 5"));
  EXPECT_THAT(errors[4], HasSubstr("line 6"));
  EXPECT_THAT(errors[5], HasSubstr("line 7"));
}

class ClientSettingTest : public ::testing::Test {
 protected:
  void SetUp() override {
    SetClientConfigFileEnabled(true);
    ResetClientConfigForTesting();
    for (const char* v : {"WOOLY_PRIORITY", "WOOLY_TENANT", "WOOLY_SERVER", "WOOLY_SOCKET_DIR",
                          "WOOLY_ADMIN", "WOOLY_MEMORY_REQUIRED"}) {
      ::unsetenv(v);
    }
  }
  void TearDown() override {
    ::unsetenv(kEnvClientConfig);
    ResetClientConfigForTesting();
    if (!path_.empty()) ::unlink(path_.c_str());
  }
  void UseFile(const std::string& text) {
    char path[] = "/tmp/wooly-client-conf-XXXXXX";
    const int fd = ::mkstemp(path);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::write(fd, text.data(), text.size()), static_cast<ssize_t>(text.size()));
    ::close(fd);
    path_ = path;
    ::setenv(kEnvClientConfig, path, 1);
    ResetClientConfigForTesting();
  }
  std::string path_;
};

TEST_F(ClientSettingTest, TheEnvironmentWinsOverTheFile) {
  UseFile("WOOLY_PRIORITY=4\nWOOLY_TENANT=from-file\nWOOLY_MEMORY_REQUIRED=20G\nbad line\n");
  ::setenv("WOOLY_PRIORITY", "1", 1);
  ::setenv("WOOLY_TENANT", "", 1);  // empty counts as unset
  EXPECT_EQ(Setting("WOOLY_PRIORITY"), "1");
  EXPECT_EQ(Setting("WOOLY_TENANT"), "from-file");
  EXPECT_EQ(Setting("WOOLY_MEMORY_REQUIRED"), "20G");
  EXPECT_EQ(Setting("WOOLY_SHM"), "");
  ::unsetenv("WOOLY_PRIORITY");
  EXPECT_EQ(Setting("WOOLY_PRIORITY"), "4");
}

TEST_F(ClientSettingTest, DefaultEndpointsFollowTheFile) {
  UseFile("WOOLY_SOCKET_DIR=/srv/wooly\n");
  EXPECT_EQ(DefaultSessionEndpoint(), "unix:/srv/wooly/woolyd.sock");
  EXPECT_EQ(DefaultAdminEndpoint(), "unix:/srv/wooly/woolyd-admin.sock");
  UseFile("WOOLY_SERVER=tcp:10.0.0.5:7070\n");
  EXPECT_EQ(DefaultSessionEndpoint(), "tcp:10.0.0.5:7070");
}

TEST_F(ClientSettingTest, NoneOrAMissingFileGivesNothing) {
  ::setenv(kEnvClientConfig, "none", 1);
  EXPECT_EQ(Setting("WOOLY_PRIORITY"), "");
  ::setenv(kEnvClientConfig, "/nonexistent/wooly/client.conf", 1);
  ResetClientConfigForTesting();
  EXPECT_EQ(Setting("WOOLY_PRIORITY"), "");  // reported on stderr, then ignored
}

TEST_F(ClientSettingTest, TheServerIgnoresTheFile) {
  UseFile("WOOLY_SERVER=tcp:10.0.0.5:7070\n");
  SetClientConfigFileEnabled(false);
  EXPECT_EQ(Setting("WOOLY_SERVER"), "");
  ::setenv("WOOLY_SERVER", "unix:/x.sock", 1);
  EXPECT_EQ(Setting("WOOLY_SERVER"), "unix:/x.sock");  // its environment still counts
  ::unsetenv("WOOLY_SERVER");
  SetClientConfigFileEnabled(true);
}

}  // namespace
}  // namespace wooly::wire
