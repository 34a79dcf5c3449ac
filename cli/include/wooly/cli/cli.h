// wooly-cli's commands. main() is a thin wrapper around Main(); the command
// functions write to the streams they are given so tests can run them
// in-process.
#ifndef WOOLY_CLI_CLI_H_
#define WOOLY_CLI_CLI_H_

#include <ostream>
#include <string>
#include <vector>

#include "wooly/cli/args.h"

namespace wooly::cli {

// Deadline for one admin RPC.
inline constexpr int kAdminTimeoutMs = 5000;

// "wooly-cli <version> (wire protocol <n>)\n".
std::string VersionText();

// Parses `args` (argv without argv[0]) and runs the command. `exe_path` is
// wooly-cli's own resolved path (used by `run` to find the client library
// and woolyd). Returns the exit status; `run` does not return on success.
int Main(const std::vector<std::string>& args, const std::string& exe_path, std::ostream& out,
         std::ostream& err);

// `status`, `clients`: 0 on success; 1 with one line on `err` when woolyd
// cannot be reached or fails; 2 for a malformed endpoint.
int RunStatus(const Invocation& inv, std::ostream& out, std::ostream& err);
int RunClients(const Invocation& inv, std::ostream& out, std::ostream& err);

// `run`: ensures a woolyd, then execs the command with the client injected.
int RunCommand(const Invocation& inv, const std::string& exe_path, std::ostream& err);

}  // namespace wooly::cli

#endif  // WOOLY_CLI_CLI_H_
