#include "wooly/cli/cli.h"

#include <sys/ioctl.h>
#include <unistd.h>

#include <chrono>
#include <climits>
#include <ctime>
#include <iostream>
#include <thread>

#include "absl/status/status.h"
#include "wooly/cli/admin_client.h"
#include "wooly/cli/format.h"
#include "wooly/cli/launch.h"
#include "wooly/cli/layout.h"
#include "wooly/proto/defaults.h"
#include "wooly/proto/socket.h"
#include "wooly/proto/wire.h"

#ifndef WOOLY_VERSION
#define WOOLY_VERSION "unknown"
#endif

namespace wooly::cli {
namespace {

std::string Message(const absl::Status& s) { return std::string(s.message()); }

// Prints the one-line error for a failed admin call; returns the exit code.
int ReportAdminError(const absl::Status& s, const std::string& endpoint, std::ostream& err) {
  if (absl::IsInvalidArgument(s)) {
    err << "wooly-cli: " << Message(s) << "\n";
    return kExitUsage;
  }
  if (absl::IsUnavailable(s)) {
    err << "wooly-cli: cannot reach woolyd at " << endpoint << ": " << Message(s) << "\n";
  } else {
    err << "wooly-cli: woolyd at " << endpoint << " failed the request: " << Message(s) << "\n";
  }
  return kExitFailure;
}

std::string AdminEndpoint(const Invocation& inv) {
  return inv.admin_endpoint.empty() ? wire::DefaultAdminEndpoint() : inv.admin_endpoint;
}

// Parses a session endpoint and makes a relative unix path absolute (woolyd
// runs from "/"). Returns the canonical text, or empty with *error set.
std::string ResolveSessionEndpoint(const std::string& text, std::string* error) {
  wire::Endpoint ep;
  if (!wire::ParseEndpoint(text, &ep, error)) return "";
  if (ep.is_unix && ep.path[0] != '/') {
    char cwd[PATH_MAX];
    if (::getcwd(cwd, sizeof(cwd)) == nullptr) {
      *error = "cannot resolve relative socket path '" + ep.path + "'";
      return "";
    }
    ep.path = std::string(cwd) + "/" + ep.path;
    if (!wire::ParseEndpoint("unix:" + ep.path, &ep, error)) return "";
  }
  return wire::FormatEndpoint(ep);
}

}  // namespace

std::string VersionText() {
  return std::string("wooly-cli ") + WOOLY_VERSION + " (wire protocol " +
         std::to_string(wire::kProtocolVersion) + ")\n";
}

int RunStatus(const Invocation& inv, std::ostream& out, std::ostream& err) {
  const std::string endpoint = AdminEndpoint(inv);
  absl::StatusOr<wooly::v1::StatusReply> st = FetchStatus(endpoint, kAdminTimeoutMs);
  if (!st.ok()) return ReportAdminError(st.status(), endpoint, err);
  out << (inv.json ? StatusToJson(*st) : RenderStatus(*st));
  return kExitOk;
}

int RunClients(const Invocation& inv, std::ostream& out, std::ostream& err) {
  const std::string endpoint = AdminEndpoint(inv);
  absl::StatusOr<wooly::v1::ListClientsReply> reply = FetchClients(endpoint, kAdminTimeoutMs);
  if (!reply.ok()) return ReportAdminError(reply.status(), endpoint, err);
  out << (inv.json ? ClientsToJson(*reply) : RenderClientsTable(reply->clients()));
  return kExitOk;
}

int RunPolicy(const Invocation& inv, std::ostream& out, std::ostream& err) {
  const std::string endpoint = AdminEndpoint(inv);
  // Endpoint errors first, so every INVALID_ARGUMENT below is woolyd's.
  if (absl::StatusOr<std::string> target = GrpcTarget(endpoint); !target.ok()) {
    return ReportAdminError(target.status(), endpoint, err);
  }
  wooly::v1::SetPolicyRequest request;
  request.set_client_id(inv.client_id);
  std::string assignments;
  for (const std::string& a : inv.assignments) {
    if (!assignments.empty()) assignments += ' ';
    assignments += a;
  }
  request.set_assignments(assignments);
  request.set_reset(inv.reset);
  absl::StatusOr<wooly::v1::SetPolicyReply> reply = SetPolicy(endpoint, request, kAdminTimeoutMs);
  if (!reply.ok()) {
    const absl::Status& s = reply.status();
    if (absl::IsNotFound(s)) {
      err << "wooly-cli: policy: " << Message(s) << " on woolyd at " << endpoint
          << " (`wooly-cli clients` lists them)\n";
      return kExitFailure;
    }
    if (absl::IsInvalidArgument(s)) {
      err << "wooly-cli: policy: " << Message(s) << "\n";
      return kExitFailure;
    }
    if (absl::IsUnimplemented(s)) {
      err << "wooly-cli: woolyd at " << endpoint
          << " cannot change policies (it predates SetPolicy; upgrade woolyd)\n";
      return kExitFailure;
    }
    return ReportAdminError(s, endpoint, err);
  }
  if (reply->client().client_id() != inv.client_id) {
    // It left between the change and the reply.
    err << "wooly-cli: policy: client " << inv.client_id << " disconnected\n";
    return kExitFailure;
  }
  out << (inv.json ? PolicyToJson(*reply) : RenderPolicy(reply->client()));
  return kExitOk;
}

TopHooks DefaultTopHooks() {
  TopHooks hooks;
  hooks.terminal = ::isatty(STDOUT_FILENO) == 1;
  if (hooks.terminal) {
    struct winsize ws {};
    if (::ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0) hooks.width = ws.ws_col;
  }
  hooks.sleep = [](double seconds) {
    std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  };
  hooks.clock = [] {
    const std::time_t now = std::time(nullptr);
    struct tm local {};
    char buf[16] = "";
    if (::localtime_r(&now, &local) != nullptr) std::strftime(buf, sizeof(buf), "%H:%M:%S", &local);
    return std::string(buf);
  };
  return hooks;
}

int RunTop(const Invocation& inv, std::ostream& out, std::ostream& err, const TopHooks& hooks) {
  const std::string endpoint = AdminEndpoint(inv);
  // Clear the screen and home the cursor (ANSI; every terminal emulator).
  static constexpr char kRedraw[] = "\x1b[H\x1b[2J";
  TopView view;
  view.interval_seconds = inv.interval_seconds;
  for (int64_t i = 0; !inv.count || i < *inv.count; ++i) {
    if (i > 0 && hooks.sleep) hooks.sleep(inv.interval_seconds);
    absl::StatusOr<wooly::v1::StatusReply> st = FetchStatus(endpoint, kAdminTimeoutMs);
    if (!st.ok()) {
      out.flush();
      return ReportAdminError(st.status(), endpoint, err);
    }
    if (inv.json) {
      out << StatusToJsonLine(*st);
    } else {
      view.clock = hooks.clock ? hooks.clock() : "";
      const std::string screen = RenderTop(*st, view);
      if (hooks.terminal) {
        out << kRedraw << FitWidth(screen, hooks.width);
      } else {
        out << (i > 0 ? "\n" : "") << screen;
      }
    }
    out.flush();
  }
  return kExitOk;
}

int RunCommand(const Invocation& inv, const std::string& exe_path, std::ostream& err) {
  std::optional<Layout> layout = FindLayout(exe_path, RegularFileExists);
  if (!layout) {
    err << "wooly-cli: Wooly's client library was not found; looked for";
    for (const std::string& c : ClientLibCandidates(exe_path)) err << " " << c;
    err << " (build it with ./scripts/build.sh)\n";
    return kExitFailure;
  }
  std::string error;
  const std::string endpoint = ResolveSessionEndpoint(
      inv.server_endpoint.empty() ? wire::DefaultSessionEndpoint() : inv.server_endpoint, &error);
  if (endpoint.empty()) {
    err << "wooly-cli: " << error << "\n";
    return kExitUsage;
  }

  EnsureOptions opts;
  opts.session_endpoint = endpoint;
  opts.layout = *layout;
  opts.base_env = CurrentEnv();
  absl::StatusOr<EnsureResult> server = EnsureServer(opts);
  if (!server.ok()) {
    err << "wooly-cli: " << Message(server.status()) << "\n";
    return kExitFailure;
  }
  if (server->started) {
    err << "wooly-cli: started woolyd (pid " << server->pid << ") on " << endpoint
        << "; log: " << server->log_path << "\n";
  }
  err.flush();

  ClientSettings settings;
  settings.server_endpoint = endpoint;
  settings.priority = inv.priority;
  settings.name = inv.name;
  return ExecCommand(inv.command, BuildClientEnv(opts.base_env, *layout, settings, CanonicalPath));
}

int Main(const std::vector<std::string>& args, const std::string& exe_path, std::ostream& out,
         std::ostream& err) {
  ParseResult parsed = ParseArgs(args);
  if (!parsed.invocation) {
    err << "wooly-cli: " << parsed.error << "\n\n" << UsageText();
    return kExitUsage;
  }
  const Invocation& inv = *parsed.invocation;
  switch (inv.kind) {
    case CommandKind::kHelp:
      out << UsageText();
      return kExitOk;
    case CommandKind::kVersion:
      out << VersionText();
      return kExitOk;
    case CommandKind::kStatus:
      return RunStatus(inv, out, err);
    case CommandKind::kClients:
      return RunClients(inv, out, err);
    case CommandKind::kRun:
      return RunCommand(inv, exe_path, err);
    case CommandKind::kPolicy:
      return RunPolicy(inv, out, err);
    case CommandKind::kTop: {
      TopHooks hooks = DefaultTopHooks();
      // Redraw only what really is the terminal (tests pass other streams).
      if (&out != &std::cout) {
        hooks.terminal = false;
        hooks.width = 0;
      }
      return RunTop(inv, out, err, hooks);
    }
  }
  return kExitUsage;
}

}  // namespace wooly::cli
