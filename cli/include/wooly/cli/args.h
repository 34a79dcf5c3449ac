// Command-line parsing for wooly-cli. Pure functions: no I/O, no globals.
#ifndef WOOLY_CLI_ARGS_H_
#define WOOLY_CLI_ARGS_H_

#include <optional>
#include <string>
#include <vector>

namespace wooly::cli {

enum class CommandKind { kHelp, kVersion, kStatus, kClients, kRun };

// One parsed invocation. Fields that a command does not take stay empty.
struct Invocation {
  CommandKind kind = CommandKind::kHelp;
  bool json = false;                 // status, clients
  std::string admin_endpoint;        // status, clients; empty: the default
  std::string server_endpoint;       // run; empty: the default
  std::optional<int> priority;       // run; 0 (highest) .. 4
  std::optional<std::string> name;   // run
  std::vector<std::string> command;  // run: the program and its arguments
};

// The outcome of parsing: either an invocation or a usage error message
// (the caller prints it with the usage text and exits 2).
struct ParseResult {
  std::optional<Invocation> invocation;
  std::string error;
};

// Parses the arguments after argv[0]. Options accept "--opt value" and
// "--opt=value". For `run`, options end at "--" or at the first argument
// that does not start with '-'; everything after is the command.
ParseResult ParseArgs(const std::vector<std::string>& args);

// The usage text (ends with a newline).
std::string UsageText();

// Exit codes.
inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;
inline constexpr int kExitUsage = 2;

}  // namespace wooly::cli

#endif  // WOOLY_CLI_ARGS_H_
