// Packing kernel arguments into the one buffer woolyd passes to the launch.
#ifndef WOOLY_CLIENT_PARAM_PACK_H_
#define WOOLY_CLIENT_PARAM_PACK_H_

#include <cuda.h>

#include <cstdint>
#include <vector>

#include "wooly/proto/wire.h"

namespace wooly::client {

// Bytes an argument buffer laid out by `layout` occupies: max(offset + size).
uint64_t PackedParamsSize(const std::vector<wire::ParamInfo>& layout);

// Fills *out with the argument buffer for a launch of a function whose
// parameters are laid out as `layout` (from cuFuncGetParamInfo):
//  - kernel_params: parameter i is copied from kernel_params[i], `size`
//    bytes at `offset`; gaps between parameters are zero;
//  - extra: a CU_LAUNCH_PARAM_BUFFER_POINTER / CU_LAUNCH_PARAM_BUFFER_SIZE /
//    CU_LAUNCH_PARAM_END list (the _AS_INT spellings are the same values)
//    naming an already packed buffer, which is copied (truncated to the
//    layout's size when larger);
//  - neither: an empty buffer, valid only for a function without parameters.
// Returns CUDA_ERROR_INVALID_VALUE when both are given, when a parameter
// pointer is null, when `extra` is malformed or its buffer is smaller than
// the layout needs, or when a function with parameters gets neither.
CUresult PackKernelParams(const std::vector<wire::ParamInfo>& layout, void** kernel_params,
                          void** extra, std::vector<uint8_t>* out);

}  // namespace wooly::client

#endif  // WOOLY_CLIENT_PARAM_PACK_H_
