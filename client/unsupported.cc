// The driver-surface table (generated/driver_surface.inc) and the
// once-per-symbol report of unsupported calls.
#include <strings.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "wooly/client/driver_surface.h"
#include "wooly/proto/defaults.h"

namespace wooly::client {
namespace {

#define WOOLY_KIND_local DriverCallKind::kLocal
#define WOOLY_KIND_forwarded DriverCallKind::kForwarded
#define WOOLY_KIND_unsupported DriverCallKind::kUnsupported

// `#symbol` does not macro-expand its argument, so the names stay exact even
// if cuda.h's renames (cuMemAlloc -> cuMemAlloc_v2, ...) are active here.
constexpr DriverEntry kEntries[] = {
#define WOOLY_DRIVER_ENTRY(index, symbol, kind) {#symbol, WOOLY_KIND_##kind},
#include "generated/driver_surface.inc"
#undef WOOLY_DRIVER_ENTRY
};
constexpr int kEntryCount = static_cast<int>(std::size(kEntries));

// The generator writes rows sorted by name with index == position; the lookup
// below depends on both.
constexpr bool TableIsSortedAndIndexed() {
  int expected = 0;
#define WOOLY_DRIVER_ENTRY(index, symbol, kind) \
  if ((index) != expected++) return false;
#include "generated/driver_surface.inc"
#undef WOOLY_DRIVER_ENTRY
  for (int i = 1; i < kEntryCount; ++i) {
    if (!(std::string_view(kEntries[i - 1].name) < std::string_view(kEntries[i].name))) {
      return false;
    }
  }
  return expected == kEntryCount;
}
static_assert(TableIsSortedAndIndexed(), "regenerate with tools/gen_driver_surface.py");

#undef WOOLY_KIND_local
#undef WOOLY_KIND_forwarded
#undef WOOLY_KIND_unsupported

// Zero-initialised before any code runs, so safe from other libraries'
// constructors.
std::atomic<bool> g_reported[kEntryCount];

// WOOLY_LOG is read when a report is about to be printed (rare: once per
// symbol), so tests and late setenv calls are honoured.
bool ReportsSilenced() {
  const std::string value = wire::Setting(wire::kEnvLog);  // env, then client config
  const char* level = value.c_str();
  if (*level == '\0') return false;
  return strcasecmp(level, "off") == 0 || strcasecmp(level, "error") == 0 ||
         strcasecmp(level, "err") == 0 || strcasecmp(level, "critical") == 0;
}

void PrintUnsupported(std::string_view symbol) {
  if (ReportsSilenced()) return;
  // One write(2) so concurrent reports do not interleave mid-line.
  char line[256];
  int n = std::snprintf(line, sizeof(line),
                        "wooly: %.*s is not supported by Wooly yet "
                        "(returned CUDA_ERROR_NOT_SUPPORTED)\n",
                        static_cast<int>(std::min<size_t>(symbol.size(), 128)), symbol.data());
  if (n <= 0) return;
  size_t len = std::min(static_cast<size_t>(n), sizeof(line) - 1);
  ssize_t ignored = ::write(STDERR_FILENO, line, len);
  (void)ignored;
}

}  // namespace

const char* DriverCallKindName(DriverCallKind kind) {
  switch (kind) {
    case DriverCallKind::kLocal:
      return "local";
    case DriverCallKind::kForwarded:
      return "forwarded";
    case DriverCallKind::kUnsupported:
      return "unsupported";
  }
  return "unknown";
}

std::span<const DriverEntry> DriverEntries() { return kEntries; }

int FindDriverEntry(std::string_view symbol) {
  const DriverEntry* end = kEntries + kEntryCount;
  const DriverEntry* it = std::lower_bound(
      kEntries, end, symbol,
      [](const DriverEntry& e, std::string_view name) { return std::string_view(e.name) < name; });
  if (it == end || std::string_view(it->name) != symbol) return -1;
  return static_cast<int>(it - kEntries);
}

DriverCallKind DriverCallKindOf(std::string_view symbol) {
  int index = FindDriverEntry(symbol);
  return index < 0 ? DriverCallKind::kUnsupported : kEntries[index].kind;
}

CUresult ReportUnsupported(int entry_index) {
  if (entry_index < 0 || entry_index >= kEntryCount) {
    PrintUnsupported("an unknown driver entry point");
    return CUDA_ERROR_NOT_SUPPORTED;
  }
  if (!g_reported[entry_index].exchange(true, std::memory_order_relaxed)) {
    PrintUnsupported(kEntries[entry_index].name);
  }
  return CUDA_ERROR_NOT_SUPPORTED;
}

CUresult ReportUnsupported(std::string_view symbol) {
  int index = FindDriverEntry(symbol);
  if (index >= 0) return ReportUnsupported(index);
  PrintUnsupported(symbol);
  return CUDA_ERROR_NOT_SUPPORTED;
}

}  // namespace wooly::client
