#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <set>

#include "wooly/cli/layout.h"

namespace wooly::cli {
namespace {

using ::testing::ElementsAre;

std::function<bool(const std::string&)> Files(std::set<std::string> files) {
  return [files = std::move(files)](const std::string& p) { return files.count(p) > 0; };
}

TEST(CliLayout, BuildTree) {
  auto layout = FindLayout("/src/build/cli/wooly-cli",
                           Files({"/src/build/client/libcuda.so.1", "/src/build/server/woolyd"}));
  ASSERT_TRUE(layout.has_value());
  EXPECT_EQ(layout->client_lib, "/src/build/client/libcuda.so.1");
  EXPECT_EQ(layout->client_dir, "/src/build/client");
  EXPECT_EQ(layout->woolyd, "/src/build/server/woolyd");
}

TEST(CliLayout, InstalledTree) {
  auto layout = FindLayout("/opt/wooly/bin/wooly-cli",
                           Files({"/opt/wooly/lib/wooly/libcuda.so.1", "/opt/wooly/bin/woolyd"}));
  ASSERT_TRUE(layout.has_value());
  EXPECT_EQ(layout->client_lib, "/opt/wooly/lib/wooly/libcuda.so.1");
  EXPECT_EQ(layout->client_dir, "/opt/wooly/lib/wooly");
  EXPECT_EQ(layout->woolyd, "/opt/wooly/bin/woolyd");
}

TEST(CliLayout, InstalledTreeWithDaemonInSbin) {
  auto layout =
      FindLayout("/usr/bin/wooly-cli", Files({"/usr/lib/wooly/libcuda.so.1", "/usr/sbin/woolyd"}));
  ASSERT_TRUE(layout.has_value());
  EXPECT_EQ(layout->woolyd, "/usr/sbin/woolyd");
}

TEST(CliLayout, InstalledUnderRoot) {
  auto layout = FindLayout("/bin/wooly-cli", Files({"/lib/wooly/libcuda.so.1", "/bin/woolyd"}));
  ASSERT_TRUE(layout.has_value());
  EXPECT_EQ(layout->client_lib, "/lib/wooly/libcuda.so.1");
  EXPECT_EQ(layout->woolyd, "/bin/woolyd");
}

TEST(CliLayout, BuildTreeWinsOverInstalledSiblings) {
  auto layout = FindLayout("/p/cli/wooly-cli",
                           Files({"/p/client/libcuda.so.1", "/p/lib/wooly/libcuda.so.1"}));
  ASSERT_TRUE(layout.has_value());
  EXPECT_EQ(layout->client_lib, "/p/client/libcuda.so.1");
}

TEST(CliLayout, MissingDaemonLeavesItEmpty) {
  auto layout = FindLayout("/p/cli/wooly-cli", Files({"/p/client/libcuda.so.1"}));
  ASSERT_TRUE(layout.has_value());
  EXPECT_EQ(layout->woolyd, "");
}

TEST(CliLayout, NothingFound) {
  EXPECT_FALSE(FindLayout("/p/cli/wooly-cli", Files({"/p/server/woolyd"})).has_value());
  EXPECT_FALSE(FindLayout("", Files({})).has_value());
  EXPECT_FALSE(FindLayout("relative/cli/wooly-cli", Files({"relative/client/libcuda.so.1"})));
  EXPECT_THAT(ClientLibCandidates("/p/cli/wooly-cli"),
              ElementsAre("/p/client/libcuda.so.1", "/p/lib/wooly/libcuda.so.1"));
}

TEST(CliLayout, DirName) {
  EXPECT_EQ(DirName("/a/b/c"), "/a/b");
  EXPECT_EQ(DirName("/a/b/"), "/a");
  EXPECT_EQ(DirName("/a"), "/");
  EXPECT_EQ(DirName("/"), "/");
  EXPECT_EQ(DirName("c"), ".");
}

TEST(CliLayout, SelfExePathIsThisTest) {
  const std::string self = SelfExePath();
  ASSERT_FALSE(self.empty());
  EXPECT_EQ(self[0], '/');
  EXPECT_TRUE(RegularFileExists(self));
  EXPECT_FALSE(RegularFileExists(DirName(self)));  // a directory is not a file
}

}  // namespace
}  // namespace wooly::cli
