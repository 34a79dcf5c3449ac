#include "wooly/server/cu_status.h"

#include <string>

#include "absl/strings/cord.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace wooly::server {
namespace {

constexpr char kPayloadUrl[] = "type.wooly.dev/CUresult";

absl::StatusCode CodeFor(CUresult r) {
  switch (r) {
    case CUDA_ERROR_INVALID_VALUE:
    case CUDA_ERROR_INVALID_HANDLE:
    case CUDA_ERROR_INVALID_IMAGE:
    case CUDA_ERROR_INVALID_PTX:
      return absl::StatusCode::kInvalidArgument;
    case CUDA_ERROR_NOT_FOUND:
      return absl::StatusCode::kNotFound;
    case CUDA_ERROR_OUT_OF_MEMORY:
      return absl::StatusCode::kResourceExhausted;
    case CUDA_ERROR_NOT_READY:
      return absl::StatusCode::kUnavailable;
    case CUDA_ERROR_NOT_SUPPORTED:
      return absl::StatusCode::kUnimplemented;
    default:
      return absl::StatusCode::kInternal;
  }
}

}  // namespace

absl::Status CuError(CUresult result, std::string_view what) {
  if (result == CUDA_SUCCESS) return absl::OkStatus();
  absl::Status s(CodeFor(result),
                 absl::StrCat(absl::string_view(what.data(), what.size()), what.empty() ? "" : ": ",
                              "CUresult ", static_cast<int>(result)));
  s.SetPayload(kPayloadUrl, absl::Cord(std::to_string(static_cast<int>(result))));
  return s;
}

CUresult ToCuResult(const absl::Status& status) {
  if (status.ok()) return CUDA_SUCCESS;
  if (auto p = status.GetPayload(kPayloadUrl)) {
    int v = 0;
    if (absl::SimpleAtoi(std::string(*p), &v)) return static_cast<CUresult>(v);
  }
  switch (status.code()) {
    case absl::StatusCode::kInvalidArgument:
      return CUDA_ERROR_INVALID_VALUE;
    case absl::StatusCode::kNotFound:
      return CUDA_ERROR_NOT_FOUND;
    case absl::StatusCode::kResourceExhausted:
      return CUDA_ERROR_OUT_OF_MEMORY;
    case absl::StatusCode::kUnimplemented:
      return CUDA_ERROR_NOT_SUPPORTED;
    default:
      return CUDA_ERROR_UNKNOWN;
  }
}

bool IsStickyContextError(CUresult result) {
  switch (result) {
    case CUDA_ERROR_ECC_UNCORRECTABLE:
    case CUDA_ERROR_CONTAINED:
    case CUDA_ERROR_ILLEGAL_ADDRESS:
    case CUDA_ERROR_LAUNCH_TIMEOUT:
    case CUDA_ERROR_ASSERT:
    case CUDA_ERROR_HARDWARE_STACK_ERROR:
    case CUDA_ERROR_ILLEGAL_INSTRUCTION:
    case CUDA_ERROR_MISALIGNED_ADDRESS:
    case CUDA_ERROR_INVALID_ADDRESS_SPACE:
    case CUDA_ERROR_INVALID_PC:
    case CUDA_ERROR_LAUNCH_FAILED:
    case CUDA_ERROR_TENSOR_MEMORY_LEAK:
    case CUDA_ERROR_EXTERNAL_DEVICE:
      return true;
    default:
      return false;
  }
}

std::string CuResultName(CUresult result) {
  switch (result) {
#define WOOLY_CU_NAME(r) \
  case r:                \
    return #r;
    WOOLY_CU_NAME(CUDA_SUCCESS)
    WOOLY_CU_NAME(CUDA_ERROR_INVALID_VALUE)
    WOOLY_CU_NAME(CUDA_ERROR_OUT_OF_MEMORY)
    WOOLY_CU_NAME(CUDA_ERROR_INVALID_CONTEXT)
    WOOLY_CU_NAME(CUDA_ERROR_INVALID_HANDLE)
    WOOLY_CU_NAME(CUDA_ERROR_NOT_READY)
    WOOLY_CU_NAME(CUDA_ERROR_ECC_UNCORRECTABLE)
    WOOLY_CU_NAME(CUDA_ERROR_CONTAINED)
    WOOLY_CU_NAME(CUDA_ERROR_ILLEGAL_ADDRESS)
    WOOLY_CU_NAME(CUDA_ERROR_LAUNCH_TIMEOUT)
    WOOLY_CU_NAME(CUDA_ERROR_ASSERT)
    WOOLY_CU_NAME(CUDA_ERROR_HARDWARE_STACK_ERROR)
    WOOLY_CU_NAME(CUDA_ERROR_ILLEGAL_INSTRUCTION)
    WOOLY_CU_NAME(CUDA_ERROR_MISALIGNED_ADDRESS)
    WOOLY_CU_NAME(CUDA_ERROR_INVALID_ADDRESS_SPACE)
    WOOLY_CU_NAME(CUDA_ERROR_INVALID_PC)
    WOOLY_CU_NAME(CUDA_ERROR_LAUNCH_FAILED)
    WOOLY_CU_NAME(CUDA_ERROR_TENSOR_MEMORY_LEAK)
    WOOLY_CU_NAME(CUDA_ERROR_EXTERNAL_DEVICE)
    WOOLY_CU_NAME(CUDA_ERROR_NOT_SUPPORTED)
    WOOLY_CU_NAME(CUDA_ERROR_UNKNOWN)
#undef WOOLY_CU_NAME
    default:
      return "CUresult " + std::to_string(static_cast<int>(result));
  }
}

}  // namespace wooly::server
