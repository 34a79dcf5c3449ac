#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "wooly/cli/args.h"

namespace wooly::cli {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

Invocation MustParse(const std::vector<std::string>& args) {
  ParseResult r = ParseArgs(args);
  EXPECT_TRUE(r.invocation.has_value()) << r.error;
  return r.invocation.value_or(Invocation{});
}

std::string ParseError(const std::vector<std::string>& args) {
  ParseResult r = ParseArgs(args);
  EXPECT_FALSE(r.invocation.has_value());
  return r.error;
}

TEST(CliArgs, HelpAndVersion) {
  EXPECT_EQ(MustParse({"help"}).kind, CommandKind::kHelp);
  EXPECT_EQ(MustParse({"--help"}).kind, CommandKind::kHelp);
  EXPECT_EQ(MustParse({"-h"}).kind, CommandKind::kHelp);
  EXPECT_EQ(MustParse({"status", "--help"}).kind, CommandKind::kHelp);
  EXPECT_EQ(MustParse({"version"}).kind, CommandKind::kVersion);
  EXPECT_EQ(MustParse({"--version"}).kind, CommandKind::kVersion);
  EXPECT_THAT(ParseError({"version", "extra"}), HasSubstr("unexpected argument 'extra'"));
}

TEST(CliArgs, NoOrUnknownCommand) {
  EXPECT_THAT(ParseError({}), HasSubstr("no command"));
  EXPECT_THAT(ParseError({"frobnicate"}), HasSubstr("unknown command 'frobnicate'"));
  EXPECT_THAT(ParseError({"--frob"}), HasSubstr("unknown option '--frob'"));
}

TEST(CliArgs, StatusOptions) {
  Invocation inv = MustParse({"status"});
  EXPECT_EQ(inv.kind, CommandKind::kStatus);
  EXPECT_FALSE(inv.json);
  EXPECT_EQ(inv.admin_endpoint, "");

  inv = MustParse({"status", "--json", "--admin", "unix:/tmp/a.sock"});
  EXPECT_TRUE(inv.json);
  EXPECT_EQ(inv.admin_endpoint, "unix:/tmp/a.sock");

  inv = MustParse({"status", "--admin=tcp:host:7071"});
  EXPECT_EQ(inv.admin_endpoint, "tcp:host:7071");

  EXPECT_THAT(ParseError({"status", "--admin"}), HasSubstr("--admin needs an endpoint"));
  EXPECT_THAT(ParseError({"status", "--admin="}), HasSubstr("--admin needs an endpoint"));
  EXPECT_THAT(ParseError({"status", "--verbose"}), HasSubstr("unknown argument '--verbose'"));
  EXPECT_THAT(ParseError({"status", "--json=1"}), HasSubstr("unknown argument"));
  EXPECT_THAT(ParseError({"status", "now"}), HasSubstr("unknown argument 'now'"));
}

TEST(CliArgs, ClientsOptions) {
  Invocation inv = MustParse({"clients", "--json"});
  EXPECT_EQ(inv.kind, CommandKind::kClients);
  EXPECT_TRUE(inv.json);
}

TEST(CliArgs, RunTakesEverythingAfterDoubleDash) {
  Invocation inv = MustParse({"run", "--priority", "1", "--name=train", "--server",
                              "unix:/tmp/w.sock", "--", "python3", "-u", "train.py", "--"});
  EXPECT_EQ(inv.kind, CommandKind::kRun);
  EXPECT_EQ(inv.priority, 1);
  EXPECT_EQ(inv.name, "train");
  EXPECT_EQ(inv.server_endpoint, "unix:/tmp/w.sock");
  EXPECT_THAT(inv.command, ElementsAre("python3", "-u", "train.py", "--"));
}

TEST(CliArgs, RunCommandStartsAtFirstNonOption) {
  Invocation inv = MustParse({"run", "./prog", "--priority", "3"});
  EXPECT_FALSE(inv.priority.has_value());
  EXPECT_FALSE(inv.name.has_value());
  EXPECT_THAT(inv.command, ElementsAre("./prog", "--priority", "3"));
}

TEST(CliArgs, RunCommandMayStartWithDashAfterDoubleDash) {
  Invocation inv = MustParse({"run", "--", "-weird-name"});
  EXPECT_THAT(inv.command, ElementsAre("-weird-name"));
}

TEST(CliArgs, RunErrors) {
  EXPECT_THAT(ParseError({"run"}), HasSubstr("no command given"));
  EXPECT_THAT(ParseError({"run", "--"}), HasSubstr("no command given"));
  EXPECT_THAT(ParseError({"run", "--priority", "5", "--", "x"}), HasSubstr("0 (highest) to 4"));
  EXPECT_THAT(ParseError({"run", "--priority=-1", "x"}), HasSubstr("0 (highest) to 4"));
  EXPECT_THAT(ParseError({"run", "--priority", "x1", "x"}), HasSubstr("0 (highest) to 4"));
  EXPECT_THAT(ParseError({"run", "--priority"}), HasSubstr("--priority needs"));
  EXPECT_THAT(ParseError({"run", "--name", "", "x"}), HasSubstr("--name needs"));
  EXPECT_THAT(ParseError({"run", "--server"}), HasSubstr("--server needs"));
  EXPECT_THAT(ParseError({"run", "--json", "x"}), HasSubstr("unknown option '--json'"));
}

TEST(CliArgs, PriorityBounds) {
  for (int p = 0; p <= 4; ++p) {
    EXPECT_EQ(MustParse({"run", "--priority", std::to_string(p), "x"}).priority, p);
  }
}

TEST(CliArgs, UsageNamesEveryCommand) {
  const std::string usage = UsageText();
  for (const char* c : {"status", "clients", "run", "version", "help", "--json", "--admin",
                        "--server", "--priority", "--name"}) {
    EXPECT_THAT(usage, HasSubstr(c));
  }
}

}  // namespace
}  // namespace wooly::cli
