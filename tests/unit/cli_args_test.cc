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
  for (const char* c :
       {"status",    "clients",    "run",       "version", "help",       "--json",  "--admin",
        "--server",  "--priority", "--name",    "top",     "--interval", "--count", "policy",
        "CLIENT_ID", "--reset",    "KEY=VALUE", "floor",   "cap",        "weight"}) {
    EXPECT_THAT(usage, HasSubstr(c));
  }
}

TEST(CliArgs, PolicyTakesAnIdAndAssignments) {
  Invocation inv = MustParse({"policy", "7", "priority=0", "floor=20%"});
  EXPECT_EQ(inv.kind, CommandKind::kPolicy);
  EXPECT_EQ(inv.client_id, 7u);
  EXPECT_THAT(inv.assignments, ElementsAre("priority=0", "floor=20%"));
  EXPECT_FALSE(inv.reset);
  EXPECT_FALSE(inv.json);
  EXPECT_EQ(inv.admin_endpoint, "");
}

TEST(CliArgs, PolicyOptionsMayComeAnywhere) {
  Invocation inv = MustParse(
      {"policy", "--json", "12", "cap=none", "--admin=unix:/tmp/a.sock", "--reset", "weight=2"});
  EXPECT_EQ(inv.client_id, 12u);
  EXPECT_THAT(inv.assignments, ElementsAre("cap=none", "weight=2"));
  EXPECT_TRUE(inv.reset);
  EXPECT_TRUE(inv.json);
  EXPECT_EQ(inv.admin_endpoint, "unix:/tmp/a.sock");
  // After "--" nothing is an option.
  inv = MustParse({"policy", "3", "--", "--reset"});
  EXPECT_FALSE(inv.reset);
  EXPECT_THAT(inv.assignments, ElementsAre("--reset"));
}

TEST(CliArgs, PolicyResetAlone) {
  Invocation inv = MustParse({"policy", "4", "--reset"});
  EXPECT_TRUE(inv.reset);
  EXPECT_TRUE(inv.assignments.empty());
  EXPECT_EQ(MustParse({"policy", "18446744073709551615", "--reset"}).client_id,
            18446744073709551615ull);
}

TEST(CliArgs, PolicyErrors) {
  EXPECT_THAT(ParseError({"policy"}), HasSubstr("no CLIENT_ID"));
  EXPECT_THAT(ParseError({"policy", "--reset"}), HasSubstr("no CLIENT_ID"));
  EXPECT_THAT(ParseError({"policy", "7"}), HasSubstr("nothing to change"));
  EXPECT_THAT(ParseError({"policy", "abc", "priority=0"}),
              HasSubstr("CLIENT_ID must be a client id"));
  EXPECT_THAT(ParseError({"policy", "priority=0"}), HasSubstr("got 'priority=0'"));
  EXPECT_THAT(ParseError({"policy", "18446744073709551616", "priority=0"}),
              HasSubstr("CLIENT_ID must be"));
  EXPECT_THAT(ParseError({"policy", "-3", "priority=0"}), HasSubstr("unknown option '-3'"));
  EXPECT_THAT(ParseError({"policy", "3", "priority=0", "--admin"}), HasSubstr("--admin needs"));
  EXPECT_THAT(ParseError({"policy", "3", "--reset=yes"}), HasSubstr("unknown option"));
  EXPECT_EQ(MustParse({"policy", "--help"}).kind, CommandKind::kHelp);
}

TEST(CliArgs, TopDefaults) {
  Invocation inv = MustParse({"top"});
  EXPECT_EQ(inv.kind, CommandKind::kTop);
  EXPECT_EQ(inv.interval_seconds, 1.0);
  EXPECT_FALSE(inv.count.has_value());
  EXPECT_FALSE(inv.json);
}

TEST(CliArgs, TopOptions) {
  Invocation inv =
      MustParse({"top", "--interval", "0.1", "--count=2", "--json", "--admin", "tcp:h:7071"});
  EXPECT_EQ(inv.interval_seconds, 0.1);
  EXPECT_EQ(inv.count, 2);
  EXPECT_TRUE(inv.json);
  EXPECT_EQ(inv.admin_endpoint, "tcp:h:7071");
  EXPECT_EQ(MustParse({"top", "--interval=2"}).interval_seconds, 2.0);
  EXPECT_EQ(MustParse({"top", "--interval", ".25"}).interval_seconds, 0.25);
}

TEST(CliArgs, TopErrors) {
  for (const char* bad : {"0", "0.01", "-1", "1e3", "nan", "inf", "1..2", ".", "", "86401", "x"}) {
    EXPECT_THAT(ParseError({"top", "--interval", bad}), HasSubstr("--interval needs")) << bad;
  }
  EXPECT_THAT(ParseError({"top", "--interval"}), HasSubstr("--interval needs"));
  for (const char* bad : {"0", "-2", "1.5", "x", "", "99999999999"}) {
    EXPECT_THAT(ParseError({"top", "--count", bad}), HasSubstr("--count needs")) << bad;
  }
  EXPECT_THAT(ParseError({"top", "5"}), HasSubstr("unknown argument '5'"));
  EXPECT_THAT(ParseError({"top", "--json=1"}), HasSubstr("unknown argument"));
}

}  // namespace
}  // namespace wooly::cli
