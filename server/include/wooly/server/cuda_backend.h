// The real CUDA backend: GpuBackend on top of the NVIDIA driver.
//
// The driver is loaded at run time (dlopen of libcuda.so.1, or the path in
// $WOOLY_REAL_LIBCUDA) and every entry point is resolved through
// cuGetProcAddress_v2, so woolyd builds and starts on machines without a GPU
// and never links libcuda. All clients share ONE context: the device's
// primary context, retained for the backend's lifetime. ResetContext resets
// it (cuDevicePrimaryCtxReset), drops this reference and retains a fresh
// one, then releases the libraries, pools and VMM objects it tracked, which
// may outlive a context.
//
// Thread safety: as GpuBackend; every method may be called concurrently once
// the calling thread has called BindThread().
#ifndef WOOLY_SERVER_CUDA_BACKEND_H_
#define WOOLY_SERVER_CUDA_BACKEND_H_

#include <memory>

#include "absl/status/statusor.h"
#include "wooly/server/gpu_backend.h"

namespace wooly::server {

// Environment variable naming the real driver library to load.
inline constexpr char kEnvRealLibcuda[] = "WOOLY_REAL_LIBCUDA";

// Loads the driver, initializes it and retains the primary context of device
// `device_ordinal`. Fails with a descriptive status (never crashes) when no
// usable driver or device is present, or when a libcuda is already loaded
// into this process (for example Wooly's own, through LD_PRELOAD): woolyd
// must reach the real driver, not itself. The caller owns the result.
absl::StatusOr<std::unique_ptr<GpuBackend>> CreateCudaBackend(int device_ordinal);

}  // namespace wooly::server

#endif  // WOOLY_SERVER_CUDA_BACKEND_H_
