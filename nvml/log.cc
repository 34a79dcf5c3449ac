#include "log.h"

#include <strings.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>

#include "wooly/proto/defaults.h"

namespace wooly::nvml {
namespace {

constexpr int kUnset = -1;
std::atomic<int> g_level{kUnset};

LogLevel LevelFromEnvironment() {
  const std::string value = wire::Setting(wire::kEnvLog);  // env, then client config
  const char* env = value.c_str();
  if (*env == '\0') return LogLevel::kWarn;
  static constexpr struct {
    const char* name;
    LogLevel level;
  } kNames[] = {{"off", LogLevel::kOff},      {"none", LogLevel::kOff},
                {"error", LogLevel::kError},  {"warn", LogLevel::kWarn},
                {"warning", LogLevel::kWarn}, {"info", LogLevel::kInfo},
                {"debug", LogLevel::kDebug},  {"trace", LogLevel::kDebug}};
  for (const auto& n : kNames) {
    if (strcasecmp(env, n.name) == 0) return n.level;
  }
  return LogLevel::kWarn;  // libwooly reports the bad spelling; once is enough
}

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

bool LogEnabled(LogLevel level) {
  int v = g_level.load(std::memory_order_relaxed);
  if (v == kUnset) {
    int expected = kUnset;
    g_level.compare_exchange_strong(expected, static_cast<int>(LevelFromEnvironment()));
    v = g_level.load(std::memory_order_relaxed);
  }
  return static_cast<int>(level) <= v;
}

void LogMessage(LogLevel level, const char* fmt, ...) {
  char buf[1024];
  const int n = std::snprintf(
      buf, sizeof(buf), "wooly[%d]: %s: nvml: ", static_cast<int>(::getpid()), LevelName(level));
  if (n < 0) return;
  size_t len = static_cast<size_t>(n);
  va_list ap;
  va_start(ap, fmt);
  const int m = std::vsnprintf(buf + len, sizeof(buf) - len - 1, fmt, ap);
  va_end(ap);
  if (m > 0) len += std::min(static_cast<size_t>(m), sizeof(buf) - len - 2);
  buf[len++] = '\n';
  // One write keeps concurrent lines whole; a failing stderr has nowhere to
  // be reported.
  const ssize_t ignored = ::write(STDERR_FILENO, buf, len);
  (void)ignored;
}

}  // namespace wooly::nvml
