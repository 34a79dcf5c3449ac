// Command-line parsing for wooly-cli. Pure functions: no I/O, no globals.
#ifndef WOOLY_CLI_ARGS_H_
#define WOOLY_CLI_ARGS_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace wooly::cli {

enum class CommandKind { kHelp, kVersion, kStatus, kClients, kRun, kPolicy, kTop };

// Bounds of `top --interval`, in seconds.
inline constexpr double kMinTopInterval = 0.05;
inline constexpr double kMaxTopInterval = 86400;

// One parsed invocation. Fields that a command does not take stay empty.
struct Invocation {
  CommandKind kind = CommandKind::kHelp;
  bool json = false;                     // status, clients, policy, top
  std::string admin_endpoint;            // status, clients, policy, top; empty: the default
  std::string server_endpoint;           // run; empty: the default
  std::optional<int> priority;           // run; 0 (highest) .. 4
  std::optional<std::string> name;       // run
  std::vector<std::string> command;      // run: the program and its arguments
  uint64_t client_id = 0;                // policy
  std::vector<std::string> assignments;  // policy: "key=value" words, as given
  bool reset = false;                    // policy: drop earlier overrides first
  double interval_seconds = 1.0;         // top: between refreshes
  std::optional<int64_t> count;          // top: refreshes; nullopt: until interrupted
};

// The outcome of parsing: either an invocation or a usage error message
// (the caller prints it with the usage text and exits 2).
struct ParseResult {
  std::optional<Invocation> invocation;
  std::string error;
};

// Parses the arguments after argv[0]. Options accept "--opt value" and
// "--opt=value". For `run`, options end at "--" or at the first argument
// that does not start with '-'; everything after is the command. For
// `policy`, options may come anywhere; the first other argument is the
// client id and the rest are assignments (checked by woolyd, not here).
ParseResult ParseArgs(const std::vector<std::string>& args);

// The usage text (ends with a newline).
std::string UsageText();

// Exit codes.
inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;
inline constexpr int kExitUsage = 2;

}  // namespace wooly::cli

#endif  // WOOLY_CLI_ARGS_H_
