// Stderr logging for Wooly's libnvidia-ml.so.1, in libwooly's format
// (client/log.h): "wooly[<pid>]: <level>: nvml: <message>", one write(2) per
// line, never stdout. The level comes from $WOOLY_LOG (off|error|warn|info|
// debug; default warn), read once.
//
// Thread safety: all functions may be called from any thread.
#ifndef WOOLY_NVML_LOG_H_
#define WOOLY_NVML_LOG_H_

namespace wooly::nvml {

enum class LogLevel : int { kOff = 0, kError = 1, kWarn = 2, kInfo = 3, kDebug = 4 };

bool LogEnabled(LogLevel level);
void LogMessage(LogLevel level, const char* fmt, ...) __attribute__((format(printf, 2, 3)));

}  // namespace wooly::nvml

#define WOOLY_NVML_LOG(level, ...)                                                       \
  do {                                                                                   \
    if (::wooly::nvml::LogEnabled(level)) ::wooly::nvml::LogMessage(level, __VA_ARGS__); \
  } while (0)
#define NLOG_ERROR(...) WOOLY_NVML_LOG(::wooly::nvml::LogLevel::kError, __VA_ARGS__)
#define NLOG_WARN(...) WOOLY_NVML_LOG(::wooly::nvml::LogLevel::kWarn, __VA_ARGS__)
#define NLOG_INFO(...) WOOLY_NVML_LOG(::wooly::nvml::LogLevel::kInfo, __VA_ARGS__)
#define NLOG_DEBUG(...) WOOLY_NVML_LOG(::wooly::nvml::LogLevel::kDebug, __VA_ARGS__)

#endif  // WOOLY_NVML_LOG_H_
