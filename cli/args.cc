#include "wooly/cli/args.h"

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <utility>

namespace wooly::cli {
namespace {

ParseResult Error(std::string message) {
  ParseResult r;
  r.error = std::move(message);
  return r;
}

ParseResult Ok(Invocation inv) {
  ParseResult r;
  r.invocation = std::move(inv);
  return r;
}

// Splits "--opt=value" into ("--opt", "value"); *has_value tells whether an
// '=' was present.
std::string SplitOption(const std::string& arg, std::string* value, bool* has_value) {
  const size_t eq = arg.find('=');
  if (arg.rfind("--", 0) != 0 || eq == std::string::npos) {
    *has_value = false;
    return arg;
  }
  *has_value = true;
  *value = arg.substr(eq + 1);
  return arg.substr(0, eq);
}

// Reads the value of option `opt`, either inline ("--opt=v") or from the
// next argument. Returns false when it is missing.
bool TakeValue(const std::vector<std::string>& args, size_t* i, bool has_inline,
               std::string* value) {
  if (has_inline) return true;
  if (*i + 1 >= args.size()) return false;
  *value = args[++*i];
  return true;
}

bool ParsePriority(const std::string& s, int* out) {
  if (s.size() != 1 || s[0] < '0' || s[0] > '4') return false;
  *out = s[0] - '0';
  return true;
}

ParseResult NoArguments(CommandKind kind, const std::vector<std::string>& args) {
  if (args.size() > 1) return Error(args[0] + ": unexpected argument '" + args[1] + "'");
  Invocation inv;
  inv.kind = kind;
  return Ok(std::move(inv));
}

// status and clients: [--json] [--admin ENDPOINT]
ParseResult ParseAdminCommand(CommandKind kind, const std::string& name,
                              const std::vector<std::string>& args) {
  Invocation inv;
  inv.kind = kind;
  for (size_t i = 1; i < args.size(); ++i) {
    std::string value;
    bool has_value = false;
    const std::string opt = SplitOption(args[i], &value, &has_value);
    if ((opt == "--help" || opt == "-h") && !has_value) {
      return NoArguments(CommandKind::kHelp, {"help"});
    } else if (opt == "--json" && !has_value) {
      inv.json = true;
    } else if (opt == "--admin") {
      if (!TakeValue(args, &i, has_value, &value) || value.empty()) {
        return Error(name + ": --admin needs an endpoint");
      }
      inv.admin_endpoint = value;
    } else {
      return Error(name + ": unknown argument '" + args[i] + "'");
    }
  }
  return Ok(std::move(inv));
}

ParseResult ParseRun(const std::vector<std::string>& args) {
  Invocation inv;
  inv.kind = CommandKind::kRun;
  size_t i = 1;
  for (; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (arg == "--") {
      ++i;
      break;
    }
    if (arg.empty() || arg[0] != '-') break;  // the command starts here
    std::string value;
    bool has_value = false;
    const std::string opt = SplitOption(arg, &value, &has_value);
    if ((opt == "--help" || opt == "-h") && !has_value) {
      return NoArguments(CommandKind::kHelp, {"help"});
    } else if (opt == "--server") {
      if (!TakeValue(args, &i, has_value, &value) || value.empty()) {
        return Error("run: --server needs an endpoint");
      }
      inv.server_endpoint = value;
    } else if (opt == "--priority") {
      int p = 0;
      if (!TakeValue(args, &i, has_value, &value) || !ParsePriority(value, &p)) {
        return Error("run: --priority needs a value from 0 (highest) to 4 (lowest)");
      }
      inv.priority = p;
    } else if (opt == "--name") {
      if (!TakeValue(args, &i, has_value, &value) || value.empty()) {
        return Error("run: --name needs a value");
      }
      inv.name = value;
    } else {
      return Error("run: unknown option '" + arg + "'");
    }
  }
  inv.command.assign(args.begin() + static_cast<std::ptrdiff_t>(i), args.end());
  if (inv.command.empty()) return Error("run: no command given");
  return Ok(std::move(inv));
}

// A whole decimal number in [lo, hi].
bool ParseInt(const std::string& s, int64_t lo, int64_t hi, int64_t* out) {
  if (s.empty() || s.size() > 18) return false;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
  }
  const int64_t v = std::strtoll(s.c_str(), nullptr, 10);
  if (v < lo || v > hi) return false;
  *out = v;
  return true;
}

bool ParseClientId(const std::string& s, uint64_t* out) {
  if (s.empty() || s.size() > 20) return false;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
  }
  errno = 0;
  const unsigned long long v = std::strtoull(s.c_str(), nullptr, 10);
  if (errno == ERANGE) return false;
  *out = v;
  return true;
}

// Seconds as a plain decimal ("1", "0.5", ".25"); no signs, exponents, hex,
// inf or nan, which strtod would take.
bool ParseSeconds(const std::string& s, double* out) {
  if (s.empty() || s.size() > 32) return false;
  bool digit = false, dot = false;
  for (char c : s) {
    if (c >= '0' && c <= '9') {
      digit = true;
    } else if (c == '.' && !dot) {
      dot = true;
    } else {
      return false;
    }
  }
  if (!digit) return false;
  *out = std::strtod(s.c_str(), nullptr);
  return std::isfinite(*out);
}

// policy CLIENT_ID [--reset] [--json] [--admin ENDPOINT] [--] KEY=VALUE...
ParseResult ParsePolicy(const std::vector<std::string>& args) {
  Invocation inv;
  inv.kind = CommandKind::kPolicy;
  bool have_id = false;
  bool options_done = false;
  for (size_t i = 1; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (!options_done && arg == "--") {
      options_done = true;
      continue;
    }
    if (options_done || arg.empty() || arg[0] != '-') {
      if (!have_id) {
        if (!ParseClientId(arg, &inv.client_id)) {
          return Error(
              "policy: CLIENT_ID must be a client id (a number; `wooly-cli clients` "
              "lists them), got '" +
              arg + "'");
        }
        have_id = true;
      } else {
        inv.assignments.push_back(arg);
      }
      continue;
    }
    std::string value;
    bool has_value = false;
    const std::string opt = SplitOption(arg, &value, &has_value);
    if ((opt == "--help" || opt == "-h") && !has_value) {
      return NoArguments(CommandKind::kHelp, {"help"});
    } else if (opt == "--json" && !has_value) {
      inv.json = true;
    } else if (opt == "--reset" && !has_value) {
      inv.reset = true;
    } else if (opt == "--admin") {
      if (!TakeValue(args, &i, has_value, &value) || value.empty()) {
        return Error("policy: --admin needs an endpoint");
      }
      inv.admin_endpoint = value;
    } else {
      return Error("policy: unknown option '" + arg + "'");
    }
  }
  if (!have_id) return Error("policy: no CLIENT_ID given");
  if (inv.assignments.empty() && !inv.reset) {
    return Error(
        "policy: nothing to change; give KEY=VALUE assignments (priority, weight, floor, "
        "cap, overcommit_percent) or --reset");
  }
  return Ok(std::move(inv));
}

// top [--json] [--admin ENDPOINT] [--interval SECONDS] [--count N]
ParseResult ParseTop(const std::vector<std::string>& args) {
  Invocation inv;
  inv.kind = CommandKind::kTop;
  for (size_t i = 1; i < args.size(); ++i) {
    std::string value;
    bool has_value = false;
    const std::string opt = SplitOption(args[i], &value, &has_value);
    if ((opt == "--help" || opt == "-h") && !has_value) {
      return NoArguments(CommandKind::kHelp, {"help"});
    } else if (opt == "--json" && !has_value) {
      inv.json = true;
    } else if (opt == "--admin") {
      if (!TakeValue(args, &i, has_value, &value) || value.empty()) {
        return Error("top: --admin needs an endpoint");
      }
      inv.admin_endpoint = value;
    } else if (opt == "--interval") {
      double seconds = 0;
      if (!TakeValue(args, &i, has_value, &value) || !ParseSeconds(value, &seconds) ||
          seconds < kMinTopInterval || seconds > kMaxTopInterval) {
        return Error("top: --interval needs a number of seconds from 0.05 to 86400");
      }
      inv.interval_seconds = seconds;
    } else if (opt == "--count") {
      int64_t n = 0;
      if (!TakeValue(args, &i, has_value, &value) || !ParseInt(value, 1, 1000000000, &n)) {
        return Error("top: --count needs a whole number of refreshes, at least 1");
      }
      inv.count = n;
    } else {
      return Error("top: unknown argument '" + args[i] + "'");
    }
  }
  return Ok(std::move(inv));
}

}  // namespace

ParseResult ParseArgs(const std::vector<std::string>& args) {
  if (args.empty()) return Error("no command given");
  const std::string& cmd = args[0];
  if (cmd == "help" || cmd == "--help" || cmd == "-h") return NoArguments(CommandKind::kHelp, args);
  if (cmd == "version" || cmd == "--version") return NoArguments(CommandKind::kVersion, args);
  if (cmd == "status") return ParseAdminCommand(CommandKind::kStatus, cmd, args);
  if (cmd == "clients") return ParseAdminCommand(CommandKind::kClients, cmd, args);
  if (cmd == "run") return ParseRun(args);
  if (cmd == "policy") return ParsePolicy(args);
  if (cmd == "top") return ParseTop(args);
  if (!cmd.empty() && cmd[0] == '-') return Error("unknown option '" + cmd + "'");
  return Error("unknown command '" + cmd + "'");
}

std::string UsageText() {
  return R"(usage: wooly-cli <command> [options]

Commands:
  status [--json] [--admin ENDPOINT]
      Show woolyd's version, GPU, memory and connected clients.
  clients [--json] [--admin ENDPOINT]
      List the connected clients, with their tenant and SM shares.
  top [--interval SECONDS] [--count N] [--json] [--admin ENDPOINT]
      Show each client's policy, target and measured SM share, GPU time,
      queue depth and memory, refreshed every SECONDS (default 1) until
      interrupted or N refreshes. Redraws the screen on a terminal, else
      prints one block (with --json one line) per refresh.
  policy CLIENT_ID [--reset] [--json] [--admin ENDPOINT] KEY=VALUE...
      Change a running client's scheduling policy and print the result.
      Keys: priority (0 highest .. 4 lowest), weight (> 0), floor and cap
      (a share of the SMs: 30%, 0.3 or none), overcommit_percent (0..1000,
      with overcommit on: replaces the server's percentage for this
      client's next allocations). --reset first drops earlier
      changes made this way; alone it returns the client to its own
      settings and the server's policy file.
      Example: policy 7 priority=0 floor=20%
  run [--server ENDPOINT] [--priority N] [--name NAME] [--] COMMAND [ARGS...]
      Run COMMAND with Wooly's libcuda.so.1 injected. Starts a local woolyd
      first when none answers on the session socket. N is 0 (highest) to 4.
      Exits with COMMAND's exit status.
  version
      Print wooly-cli's version.
  help
      Print this text.

Endpoints: unix:/path, /path, tcp:host:port or host:port.
Defaults: --admin $WOOLY_ADMIN, else unix:<socket dir>/woolyd-admin.sock;
          --server $WOOLY_SERVER, else unix:<socket dir>/woolyd.sock.
The socket dir is $WOOLY_SOCKET_DIR, else /run/wooly when writable, else
$XDG_RUNTIME_DIR/wooly, else /tmp/wooly-<uid> (docs/configuration.md).
)";
}

}  // namespace wooly::cli
