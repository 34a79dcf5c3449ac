// A tiny stderr logger for libwooly.
//
// The client library is injected into arbitrary programs, so it cannot use
// spdlog (it would clash with the application's copy) and must never write
// to stdout. Every line is "wooly[<pid>]: <level>: <message>" written with
// one write(2), so lines from several threads never interleave.
//
// The level comes from $WOOLY_LOG (off|error|warn|info|debug; default warn),
// read once on first use.
//
// Thread safety: all functions may be called from any thread.
#ifndef WOOLY_CLIENT_LOG_H_
#define WOOLY_CLIENT_LOG_H_

namespace wooly::client {

enum class LogLevel : int { kOff = 0, kError = 1, kWarn = 2, kInfo = 3, kDebug = 4 };

// The active level (cached after the first call).
LogLevel CurrentLogLevel();
inline bool LogEnabled(LogLevel level) {
  return static_cast<int>(level) <= static_cast<int>(CurrentLogLevel());
}
// Parses a WOOLY_LOG value; returns false for an unknown spelling.
bool ParseLogLevel(const char* text, LogLevel* out);
// Overrides the level (tests).
void SetLogLevelForTesting(LogLevel level);

// Formats and writes one line. Prefer the macros below, which skip the
// formatting when the level is disabled.
void LogMessage(LogLevel level, const char* fmt, ...) __attribute__((format(printf, 2, 3)));

}  // namespace wooly::client

#define WOOLY_CLIENT_LOG(level, ...)                                                         \
  do {                                                                                       \
    if (::wooly::client::LogEnabled(level)) ::wooly::client::LogMessage(level, __VA_ARGS__); \
  } while (0)
#define WLOG_ERROR(...) WOOLY_CLIENT_LOG(::wooly::client::LogLevel::kError, __VA_ARGS__)
#define WLOG_WARN(...) WOOLY_CLIENT_LOG(::wooly::client::LogLevel::kWarn, __VA_ARGS__)
#define WLOG_INFO(...) WOOLY_CLIENT_LOG(::wooly::client::LogLevel::kInfo, __VA_ARGS__)
#define WLOG_DEBUG(...) WOOLY_CLIENT_LOG(::wooly::client::LogLevel::kDebug, __VA_ARGS__)

#endif  // WOOLY_CLIENT_LOG_H_
