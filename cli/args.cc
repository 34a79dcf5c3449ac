#include "wooly/cli/args.h"

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

}  // namespace

ParseResult ParseArgs(const std::vector<std::string>& args) {
  if (args.empty()) return Error("no command given");
  const std::string& cmd = args[0];
  if (cmd == "help" || cmd == "--help" || cmd == "-h") return NoArguments(CommandKind::kHelp, args);
  if (cmd == "version" || cmd == "--version") return NoArguments(CommandKind::kVersion, args);
  if (cmd == "status") return ParseAdminCommand(CommandKind::kStatus, cmd, args);
  if (cmd == "clients") return ParseAdminCommand(CommandKind::kClients, cmd, args);
  if (cmd == "run") return ParseRun(args);
  if (!cmd.empty() && cmd[0] == '-') return Error("unknown option '" + cmd + "'");
  return Error("unknown command '" + cmd + "'");
}

std::string UsageText() {
  return R"(usage: wooly-cli <command> [options]

Commands:
  status [--json] [--admin ENDPOINT]
      Show woolyd's version, GPU, memory and connected clients.
  clients [--json] [--admin ENDPOINT]
      List the connected clients.
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
