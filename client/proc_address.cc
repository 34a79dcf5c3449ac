// cuGetProcAddress and cuGetProcAddress_v2: resolve (base name, CUDA version,
// flags) to one of libwooly's own entry points, with the real driver's rules.
//
// The table (generated/proc_address_table.inc) comes from cudaTypedefs.h: one
// row per variant, sorted by (base, per_thread, version). Resolution picks the
// newest row with version <= the requested version among the legacy rows, or,
// with CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM and a base that has
// per-thread variants, among the per-thread rows only. That matches the real
// driver row for row (tests/data/proc_address_real.tsv): e.g. cuMemcpyHtoD at
// 3020 with the per-thread flag is VERSION_NOT_SUFFICIENT, not the legacy
// cuMemcpyHtoD_v2, because cuMemcpyHtoD_v2_ptds appeared in 7000.
#ifndef __CUDA_API_VERSION_INTERNAL
#define __CUDA_API_VERSION_INTERNAL  // exact names, legacy declarations visible
#endif
#include <cuda.h>
#include <cudaProfiler.h>

#include <algorithm>
#include <cstdint>
#include <iterator>
#include <string_view>

#include "wooly/client/driver_surface.h"

namespace wooly::client {
namespace {

struct ProcRow {
  const char* name;
  uint32_t name_size;
  int version;
  bool per_thread;
  void* fn;

  std::string_view base() const { return {name, name_size}; }
};

// Only literals and function addresses, so the compiler emits this as
// relocated data with no constructor and lookups work even from other
// libraries' constructors that run before ours. (A std::string_view member
// would make GCC initialise the table dynamically.)
const ProcRow kProcRows[] = {
#define WOOLY_PROC_ENTRY(name, version, per_thread, symbol) \
  {name, sizeof(name) - 1, version, (per_thread) != 0, reinterpret_cast<void*>(&symbol)},
#include "generated/proc_address_table.inc"
#undef WOOLY_PROC_ENTRY
};

constexpr bool RowsAreSorted() {
  struct Key {
    std::string_view name;
    int per_thread;
    int version;
  };
  constexpr Key keys[] = {
#define WOOLY_PROC_ENTRY(name, version, per_thread, symbol) {name, per_thread, version},
#include "generated/proc_address_table.inc"
#undef WOOLY_PROC_ENTRY
  };
  for (size_t i = 1; i < std::size(keys); ++i) {
    const Key& a = keys[i - 1];
    const Key& b = keys[i];
    if (a.name > b.name) return false;
    if (a.name == b.name &&
        (a.per_thread > b.per_thread || (a.per_thread == b.per_thread && a.version >= b.version))) {
      return false;
    }
  }
  return true;
}
static_assert(RowsAreSorted(), "regenerate with tools/gen_driver_surface.py");

struct ByName {
  bool operator()(const ProcRow& row, std::string_view name) const { return row.base() < name; }
  bool operator()(std::string_view name, const ProcRow& row) const { return name < row.base(); }
};

}  // namespace

void* ResolveProcAddress(std::string_view symbol, int cuda_version, cuuint64_t flags,
                         CUdriverProcAddressQueryResult* status) {
  auto [first, last] =
      std::equal_range(std::begin(kProcRows), std::end(kProcRows), symbol, ByName());
  CUdriverProcAddressQueryResult ignored;
  if (status == nullptr) status = &ignored;
  if (first == last) {
    *status = CU_GET_PROC_ADDRESS_SYMBOL_NOT_FOUND;
    return nullptr;
  }
  // Per-thread rows sort after the legacy rows of the same base.
  bool has_per_thread = (last - 1)->per_thread;
  bool want_per_thread =
      (flags & CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM) != 0 && has_per_thread;
  const ProcRow* best = nullptr;
  for (const ProcRow* row = first; row != last; ++row) {
    if (row->per_thread == want_per_thread && row->version <= cuda_version) best = row;
  }
  if (best == nullptr) {
    *status = CU_GET_PROC_ADDRESS_VERSION_NOT_SUFFICIENT;
    return nullptr;
  }
  *status = CU_GET_PROC_ADDRESS_SUCCESS;
  return best->fn;
}

}  // namespace wooly::client

#pragma GCC visibility push(default)  // exported even under -fvisibility=hidden
extern "C" {

// Like the real driver (CUDA 12+), a symbol that is unknown or too new for
// cudaVersion is not an error: CUDA_SUCCESS, *pfn = NULL, and the reason in
// *symbolStatus (which is optional). cudaVersion above what Wooly was built
// for is accepted and resolves to the newest variant Wooly knows.
CUresult cuGetProcAddress_v2(const char* symbol, void** pfn, int cudaVersion, cuuint64_t flags,
                             CUdriverProcAddressQueryResult* symbolStatus) {
  if (symbol == nullptr || pfn == nullptr) return CUDA_ERROR_INVALID_VALUE;
  CUdriverProcAddressQueryResult status;
  *pfn = wooly::client::ResolveProcAddress(symbol, cudaVersion, flags, &status);
  if (symbolStatus != nullptr) *symbolStatus = status;
  return CUDA_SUCCESS;
}

// The CUDA 11.3-11.8 entry point had no status argument and reported a failed
// lookup as CUDA_ERROR_NOT_FOUND (with *pfn = NULL).
CUresult cuGetProcAddress(const char* symbol, void** pfn, int cudaVersion, cuuint64_t flags) {
  if (symbol == nullptr || pfn == nullptr) return CUDA_ERROR_INVALID_VALUE;
  CUdriverProcAddressQueryResult status;
  *pfn = wooly::client::ResolveProcAddress(symbol, cudaVersion, flags, &status);
  return status == CU_GET_PROC_ADDRESS_SUCCESS ? CUDA_SUCCESS : CUDA_ERROR_NOT_FOUND;
}

}  // extern "C"
#pragma GCC visibility pop
