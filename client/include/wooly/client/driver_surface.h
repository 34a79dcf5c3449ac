// libwooly's driver surface: how it answers each exported CUDA driver symbol.
//
// The table is generated from cuda.h by tools/gen_driver_surface.py into
// client/generated/driver_surface.inc (one row per exported cu* function,
// sorted by name); client/driver_surface.txt says which symbols are
// implemented. Everything here is immutable after load and safe to call from
// any thread, before or after cuInit, without allocating.
#ifndef WOOLY_CLIENT_DRIVER_SURFACE_H_
#define WOOLY_CLIENT_DRIVER_SURFACE_H_

#include <cuda.h>

#include <cstdint>
#include <span>
#include <string_view>

namespace wooly::client {

enum class DriverCallKind : uint8_t {
  kLocal,        // answered inside libwooly
  kForwarded,    // sent to woolyd
  kUnsupported,  // generated stub: logs once, returns CUDA_ERROR_NOT_SUPPORTED
};

// "local", "forwarded" or "unsupported".
const char* DriverCallKindName(DriverCallKind kind);

struct DriverEntry {
  const char* name;  // exported symbol, e.g. "cuMemAlloc_v2"; static storage
  DriverCallKind kind;
};

// All exported symbols sorted by name; entry i has index i in driver_surface.inc.
std::span<const DriverEntry> DriverEntries();

// Index of `symbol` in DriverEntries(), or -1 if libwooly does not export it.
int FindDriverEntry(std::string_view symbol);

// Kind of `symbol`; kUnsupported for names that are not exported at all.
DriverCallKind DriverCallKindOf(std::string_view symbol);

// Called by every unsupported entry point (and by implemented ones for
// argument combinations Wooly does not handle). Logs
//   "wooly: cuFoo is not supported by Wooly yet (returned CUDA_ERROR_NOT_SUPPORTED)"
// to stderr at most once per symbol per process, unless WOOLY_LOG is off or
// error/critical, and returns CUDA_ERROR_NOT_SUPPORTED. Thread-safe, lock-free
// and allocation-free.
CUresult ReportUnsupported(int entry_index);
// Same, by exported symbol name; an unknown name is reported under that name
// (without the once-only guarantee).
CUresult ReportUnsupported(std::string_view symbol);

// cuGetProcAddress resolution (the logic behind cuGetProcAddress_v2), exposed
// for reuse and tests. `symbol` is a base name such as "cuMemAlloc";
// `cuda_version` is 1000*major + 10*minor. Picks the newest variant whose
// version is <= cuda_version. With CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM
// only the _ptds/_ptsz variants are searched when the base has any, like the
// real driver. On success returns the function and sets *status to
// CU_GET_PROC_ADDRESS_SUCCESS; otherwise returns nullptr with
// CU_GET_PROC_ADDRESS_SYMBOL_NOT_FOUND or _VERSION_NOT_SUFFICIENT. `status`
// may be null.
void* ResolveProcAddress(std::string_view symbol, int cuda_version, cuuint64_t flags,
                         CUdriverProcAddressQueryResult* status);

}  // namespace wooly::client

#endif  // WOOLY_CLIENT_DRIVER_SURFACE_H_
