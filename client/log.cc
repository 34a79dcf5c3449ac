#include "log.h"

#include <cuda.h>
#include <strings.h>
#include <unistd.h>

#include <atomic>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "api.h"
#include "wooly/proto/defaults.h"

namespace wooly::client {
namespace {

constexpr int kUnset = -1;
std::atomic<int> g_level{kUnset};

const char* LevelName(LogLevel level) {
  switch (level) {
    case LogLevel::kError:
      return "error";
    case LogLevel::kWarn:
      return "warn";
    case LogLevel::kInfo:
      return "info";
    case LogLevel::kDebug:
      return "debug";
    case LogLevel::kOff:
      break;
  }
  return "off";
}

}  // namespace

bool ParseLogLevel(const char* text, LogLevel* out) {
  if (text == nullptr) return false;
  static constexpr struct {
    const char* name;
    LogLevel level;
  } kNames[] = {{"off", LogLevel::kOff},      {"none", LogLevel::kOff},
                {"error", LogLevel::kError},  {"warn", LogLevel::kWarn},
                {"warning", LogLevel::kWarn}, {"info", LogLevel::kInfo},
                {"debug", LogLevel::kDebug},  {"trace", LogLevel::kDebug}};
  for (const auto& n : kNames) {
    if (strcasecmp(text, n.name) == 0) {
      *out = n.level;
      return true;
    }
  }
  return false;
}

LogLevel CurrentLogLevel() {
  int v = g_level.load(std::memory_order_relaxed);
  if (v != kUnset) return static_cast<LogLevel>(v);
  LogLevel level = LogLevel::kWarn;
  const std::string env_value = wire::Setting(wire::kEnvLog);  // env, then client config
  const char* env = env_value.c_str();
  bool bad = false;
  if (env != nullptr && *env != '\0' && !ParseLogLevel(env, &level)) {
    level = LogLevel::kWarn;
    bad = true;
  }
  int expected = kUnset;
  g_level.compare_exchange_strong(expected, static_cast<int>(level));
  if (bad) {
    LogMessage(LogLevel::kWarn, "%s='%s' is not one of off|error|warn|info|debug; using warn",
               wire::kEnvLog, env);
  }
  return static_cast<LogLevel>(g_level.load(std::memory_order_relaxed));
}

void SetLogLevelForTesting(LogLevel level) { g_level.store(static_cast<int>(level)); }

void LogMessage(LogLevel level, const char* fmt, ...) {
  char buf[1024];
  int n = std::snprintf(buf, sizeof(buf), "wooly[%d]: %s: ", static_cast<int>(::getpid()),
                        LevelName(level));
  if (n < 0) return;
  size_t len = static_cast<size_t>(n);
  va_list ap;
  va_start(ap, fmt);
  int m = std::vsnprintf(buf + len, sizeof(buf) - len - 1, fmt, ap);
  va_end(ap);
  if (m > 0) len += std::min(static_cast<size_t>(m), sizeof(buf) - len - 2);
  buf[len++] = '\n';
  // One write so that concurrent lines stay whole; the result is ignored on
  // purpose: there is nowhere left to report a failing stderr.
  ssize_t ignored = ::write(STDERR_FILENO, buf, len);
  (void)ignored;
}

}  // namespace wooly::client

namespace wooly::client {

bool ApiFailuresLogged() { return LogEnabled(LogLevel::kDebug); }

void LogApiFailure(const char* function, CUresult result) {
  const char* name = nullptr;
  if (cuGetErrorName(result, &name) != CUDA_SUCCESS || name == nullptr) name = "?";
  LogMessage(LogLevel::kDebug, "%s returned %s (%d)", function, name, static_cast<int>(result));
}

}  // namespace wooly::client
