// wooly-cli's commands. main() is a thin wrapper around Main(); the command
// functions write to the streams they are given so tests can run them
// in-process.
#ifndef WOOLY_CLI_CLI_H_
#define WOOLY_CLI_CLI_H_

#include <functional>
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
// `top` redraws in place only when `out` is std::cout and stdout is a
// terminal.
int Main(const std::vector<std::string>& args, const std::string& exe_path, std::ostream& out,
         std::ostream& err);

// `status`, `clients`: 0 on success; 1 with one line on `err` when woolyd
// cannot be reached or fails; 2 for a malformed endpoint.
int RunStatus(const Invocation& inv, std::ostream& out, std::ostream& err);
int RunClients(const Invocation& inv, std::ostream& out, std::ostream& err);

// `policy`: 0 with the client's resulting policy on `out`; 1 with one line
// on `err` when woolyd refuses (unknown client, bad assignment: woolyd's
// message) or cannot be reached; 2 for a malformed endpoint.
int RunPolicy(const Invocation& inv, std::ostream& out, std::ostream& err);

// What `top` needs from its surroundings, injected so tests control it.
struct TopHooks {
  // `out` is a terminal: clear and redraw each refresh, cut to `width`
  // columns (0: no limit). Otherwise blocks are separated by a blank line.
  bool terminal = false;
  size_t width = 0;
  // Waits between refreshes (not before the first, not after the last).
  std::function<void(double seconds)> sleep;
  // Local wall time for the header; empty: not shown.
  std::function<std::string()> clock;
};

// The hooks for the real process: terminal when stdout is a tty, real sleep
// and clock.
TopHooks DefaultTopHooks();

// `top`: 0 after --count refreshes; 1 with one line on `err` as soon as a
// refresh fails; 2 for a malformed endpoint. Without --count it runs until
// the process is interrupted.
int RunTop(const Invocation& inv, std::ostream& out, std::ostream& err, const TopHooks& hooks);

// `run`: ensures a woolyd, then execs the command with the client injected.
int RunCommand(const Invocation& inv, const std::string& exe_path, std::ostream& err);

}  // namespace wooly::cli

#endif  // WOOLY_CLI_CLI_H_
