#include "wooly/server/daemon.h"

#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "spdlog/sinks/stdout_color_sinks.h"
#include "spdlog/spdlog.h"
#include "wooly/proto/defaults.h"
#include "wooly/proto/socket.h"
#include "wooly/proto/wire.h"
#include "wooly/server/server.h"

namespace wooly::server {
namespace {

bool ParseLevel(const std::string& name, spdlog::level::level_enum* level) {
  static const std::pair<const char*, spdlog::level::level_enum> kLevels[] = {
      {"trace", spdlog::level::trace},
      {"debug", spdlog::level::debug},
      {"info", spdlog::level::info},
      {"warn", spdlog::level::warn},
      {"error", spdlog::level::err}};
  for (const auto& [n, l] : kLevels) {
    if (name == n) {
      *level = l;
      return true;
    }
  }
  return false;
}

bool WriteReadyFile(const std::string& path, const Server& server) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    if (!out) return false;
    for (const std::string& a : server.listen_addresses()) out << "listen " << a << "\n";
    if (!server.admin_address().empty()) out << "admin " << server.admin_address() << "\n";
    if (!out.flush()) return false;
  }
  return std::rename(tmp.c_str(), path.c_str()) == 0;
}

}  // namespace

std::string DaemonUsage(const std::string& program) {
  return absl::StrCat(
      "usage: ", program, " [flags]\n",
      "  --listen ENDPOINT   serve the session protocol on ENDPOINT (repeatable):\n"
      "                      unix:/path or tcp:HOST:PORT (port 0 picks one). The default\n"
      "                      unix socket (",
      wire::DefaultSessionEndpoint(),
      ")\n"
      "                      is served unless a unix endpoint is given.\n"
      "  --admin ENDPOINT    gRPC admin/session services (default ",
      wire::DefaultAdminEndpoint(),
      "; 'none' disables)\n"
      "  --device N          GPU ordinal (default 0)\n"
      "  --log-level LEVEL   trace|debug|info|warn|error (default info)\n"
      "  --ready-file PATH   write the bound endpoints to PATH once serving\n"
      "  --version           print the version and exit\n"
      "  --help              print this help and exit\n");
}

absl::StatusOr<DaemonFlags> ParseDaemonFlags(int argc, const char* const* argv) {
  DaemonFlags flags;
  flags.admin = wire::DefaultAdminEndpoint();
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--version") {
      flags.version = true;
      continue;
    }
    if (arg == "--help" || arg == "-h") {
      flags.help = true;
      continue;
    }
    if (!absl::StartsWith(arg, "--")) {
      return absl::InvalidArgumentError(absl::StrCat("unexpected argument '", arg, "'"));
    }
    std::string name = arg.substr(2);
    std::string value;
    bool has_value = false;
    if (const size_t eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
      has_value = true;
    }
    static const char* const kValued[] = {"listen", "admin", "device", "log-level", "ready-file"};
    bool known = false;
    for (const char* k : kValued) known = known || name == k;
    if (!known) return absl::InvalidArgumentError(absl::StrCat("unknown flag --", name));
    if (!has_value) {
      if (i + 1 >= argc)
        return absl::InvalidArgumentError(absl::StrCat("--", name, " needs a value"));
      value = argv[++i];
    }
    if (name == "listen") {
      wire::Endpoint ep;
      std::string error;
      std::string probe = value;
      // Port 0 (an ephemeral port) is fine for listening.
      if (absl::EndsWith(probe, ":0")) probe.back() = '1';
      if (!wire::ParseEndpoint(probe, &ep, &error)) {
        return absl::InvalidArgumentError(absl::StrCat("--listen: ", error));
      }
      flags.listen.push_back(value);
    } else if (name == "admin") {
      if (value != "none" && !value.empty()) {
        wire::Endpoint ep;
        std::string error;
        std::string probe = value;
        if (absl::EndsWith(probe, ":0")) probe.back() = '1';
        if (!wire::ParseEndpoint(probe, &ep, &error)) {
          return absl::InvalidArgumentError(absl::StrCat("--admin: ", error));
        }
      }
      flags.admin = value == "none" ? "" : value;
    } else if (name == "device") {
      if (!absl::SimpleAtoi(value, &flags.device) || flags.device < 0) {
        return absl::InvalidArgumentError(
            absl::StrCat("--device needs a GPU ordinal (0, 1, ...), got '", value, "'"));
      }
    } else if (name == "log-level") {
      spdlog::level::level_enum level;
      if (!ParseLevel(value, &level)) {
        return absl::InvalidArgumentError(absl::StrCat(
            "--log-level must be trace, debug, info, warn or error, got '", value, "'"));
      }
      flags.log_level = value;
    } else if (name == "ready-file") {
      if (value.empty()) return absl::InvalidArgumentError("--ready-file needs a path");
      flags.ready_file = value;
    }
  }
  bool has_unix = false;
  for (const std::string& l : flags.listen) {
    wire::Endpoint ep;
    std::string probe = l;
    if (absl::EndsWith(probe, ":0")) probe.back() = '1';
    if (wire::ParseEndpoint(probe, &ep, nullptr) && ep.is_unix) has_unix = true;
  }
  if (!has_unix) flags.listen.insert(flags.listen.begin(), wire::DefaultSessionEndpoint());
  return flags;
}

int RunDaemon(int argc, char** argv, const std::string& program,
              const BackendFactory& make_backend) {
  absl::StatusOr<DaemonFlags> flags = ParseDaemonFlags(argc, argv);
  if (!flags.ok()) {
    std::fprintf(stderr, "%s: %s\n%s", program.c_str(),
                 std::string(flags.status().message()).c_str(), DaemonUsage(program).c_str());
    return 2;
  }
  if (flags->help) {
    std::fputs(DaemonUsage(program).c_str(), stdout);
    return 0;
  }
  if (flags->version) {
    std::printf("%s %s (wooly protocol %u)\n", program.c_str(), kServerVersion,
                wire::kProtocolVersion);
    return 0;
  }
  auto logger = spdlog::stderr_color_mt(program);
  logger->set_pattern("%Y-%m-%d %H:%M:%S.%e %n %^%l%$ %v");
  spdlog::level::level_enum level = spdlog::level::info;
  ParseLevel(flags->log_level, &level);
  logger->set_level(level);
  spdlog::set_default_logger(logger);

  // Signals are taken synchronously by this thread; block them before any
  // other thread exists so none of those receives them.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  absl::StatusOr<std::unique_ptr<GpuBackend>> backend = make_backend(flags->device);
  if (!backend.ok()) {
    std::fprintf(stderr, "%s: no usable GPU: %s\n", program.c_str(),
                 std::string(backend.status().message()).c_str());
    return 1;
  }
  ServerOptions options;
  options.listen = flags->listen;
  options.admin = flags->admin;
  absl::StatusOr<std::unique_ptr<Server>> server = Server::Start(options, std::move(*backend));
  if (!server.ok()) {
    std::fprintf(stderr, "%s: cannot start: %s\n", program.c_str(),
                 std::string(server.status().message()).c_str());
    return 1;
  }
  if (!flags->ready_file.empty() && !WriteReadyFile(flags->ready_file, **server)) {
    spdlog::error("cannot write the ready file {}", flags->ready_file);
    (*server)->Shutdown();
    return 1;
  }
  int signal_number = 0;
  sigwait(&stop_signals, &signal_number);
  spdlog::info("received signal {}; shutting down", signal_number);
  (*server)->Shutdown();
  return 0;
}

}  // namespace wooly::server
