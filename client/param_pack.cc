#include "param_pack.h"

#include <cstring>

namespace wooly::client {
namespace {

// `extra` entries are pointer-sized tokens; compare them as integers so the
// pointer and _AS_INT spellings are treated alike.
uintptr_t Token(void* p) { return reinterpret_cast<uintptr_t>(p); }

CUresult PackExtra(const std::vector<wire::ParamInfo>& layout, void** extra,
                   std::vector<uint8_t>* out) {
  const void* buffer = nullptr;
  const size_t* size_ptr = nullptr;
  bool have_buffer = false;
  bool have_size = false;
  // The list is short by contract; the bound only stops a missing END from
  // running away.
  for (int i = 0; i < 64; i += 2) {
    const uintptr_t token = Token(extra[i]);
    if (token == Token(CU_LAUNCH_PARAM_END)) {
      if (!have_buffer || !have_size) {
        // An empty list (just END) is allowed for functions without params.
        if (!have_buffer && !have_size && layout.empty()) {
          out->clear();
          return CUDA_SUCCESS;
        }
        return CUDA_ERROR_INVALID_VALUE;
      }
      const uint64_t need = PackedParamsSize(layout);
      const size_t given = size_ptr != nullptr ? *size_ptr : 0;
      if (given < need) return CUDA_ERROR_INVALID_VALUE;
      if (need > 0 && buffer == nullptr) return CUDA_ERROR_INVALID_VALUE;
      out->resize(need);
      if (need > 0) std::memcpy(out->data(), buffer, need);
      return CUDA_SUCCESS;
    }
    if (token == Token(CU_LAUNCH_PARAM_BUFFER_POINTER)) {
      buffer = extra[i + 1];
      have_buffer = true;
    } else if (token == Token(CU_LAUNCH_PARAM_BUFFER_SIZE)) {
      size_ptr = static_cast<const size_t*>(extra[i + 1]);
      if (size_ptr == nullptr) return CUDA_ERROR_INVALID_VALUE;
      have_size = true;
    } else {
      return CUDA_ERROR_INVALID_VALUE;
    }
  }
  return CUDA_ERROR_INVALID_VALUE;
}

}  // namespace

uint64_t PackedParamsSize(const std::vector<wire::ParamInfo>& layout) {
  uint64_t end = 0;
  for (const wire::ParamInfo& p : layout) {
    const uint64_t e = uint64_t{p.offset} + p.size;
    if (e > end) end = e;
  }
  return end;
}

CUresult PackKernelParams(const std::vector<wire::ParamInfo>& layout, void** kernel_params,
                          void** extra, std::vector<uint8_t>* out) {
  if (kernel_params != nullptr && extra != nullptr) return CUDA_ERROR_INVALID_VALUE;
  if (extra != nullptr) return PackExtra(layout, extra, out);
  if (kernel_params == nullptr) {
    if (!layout.empty()) return CUDA_ERROR_INVALID_VALUE;
    out->clear();
    return CUDA_SUCCESS;
  }
  out->assign(PackedParamsSize(layout), 0);
  for (size_t i = 0; i < layout.size(); ++i) {
    const wire::ParamInfo& p = layout[i];
    if (p.size == 0) continue;
    if (kernel_params[i] == nullptr) return CUDA_ERROR_INVALID_VALUE;
    std::memcpy(out->data() + p.offset, kernel_params[i], p.size);
  }
  return CUDA_SUCCESS;
}

}  // namespace wooly::client
