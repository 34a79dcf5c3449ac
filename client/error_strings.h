// Names and descriptions of every CUresult, for cuGetErrorName and
// cuGetErrorString.
#ifndef WOOLY_CLIENT_ERROR_STRINGS_H_
#define WOOLY_CLIENT_ERROR_STRINGS_H_

#include <cuda.h>

namespace wooly::client {

// "CUDA_ERROR_INVALID_VALUE" etc., or nullptr for a value cuda.h does not
// define. The strings are static.
const char* CuResultName(CUresult result);
// The description the real driver gives ("invalid argument" etc.), or
// nullptr for an unknown value.
const char* CuResultString(CUresult result);

}  // namespace wooly::client

#endif  // WOOLY_CLIENT_ERROR_STRINGS_H_
