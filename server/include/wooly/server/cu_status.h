// absl::Status <-> CUresult. Inside the server errors are absl::Status; the
// driver's exact CUresult rides along as a payload so the client gets back
// precisely what a native driver would have returned.
#ifndef WOOLY_SERVER_CU_STATUS_H_
#define WOOLY_SERVER_CU_STATUS_H_

#include <cuda.h>

#include <string>
#include <string_view>

#include "absl/status/status.h"

namespace wooly::server {

// A status carrying `result`; OK for CUDA_SUCCESS.
absl::Status CuError(CUresult result, std::string_view what = {});
// A request whose payload does not parse: CUDA_ERROR_INVALID_VALUE.
inline absl::Status Malformed() {
  return CuError(CUDA_ERROR_INVALID_VALUE, "malformed request payload");
}
// The CUresult a status stands for. Statuses made without CuError map by
// code: INVALID_ARGUMENT -> CUDA_ERROR_INVALID_VALUE, NOT_FOUND ->
// CUDA_ERROR_NOT_FOUND, RESOURCE_EXHAUSTED -> CUDA_ERROR_OUT_OF_MEMORY,
// UNIMPLEMENTED -> CUDA_ERROR_NOT_SUPPORTED, anything else -> CUDA_ERROR_UNKNOWN.
CUresult ToCuResult(const absl::Status& status);

// True for the CUresults that leave the context that reported them unusable
// ("sticky" errors): once one occurs, every later call in that context fails
// with the same result until the context is destroyed. These are the kernel
// faults and hardware errors that cuda.h documents as leaving "the process in
// an inconsistent state" (or the context to be destroyed), plus
// CUDA_ERROR_ECC_UNCORRECTABLE, which the driver reports to every context on
// the GPU after an uncorrectable memory error.
bool IsStickyContextError(CUresult result);

// "CUDA_ERROR_ILLEGAL_ADDRESS" for the sticky results and a few common ones,
// "CUresult <n>" otherwise; for logs (the server has no cuGetErrorName).
std::string CuResultName(CUresult result);

}  // namespace wooly::server

#endif  // WOOLY_SERVER_CU_STATUS_H_
