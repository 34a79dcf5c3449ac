// woolyd-fake: woolyd on the fake backend (host memory, CPU kernels), for CI
// and integration tests. Same flags as woolyd. Environment:
//   WOOLY_FAKE_MEMORY_BYTES  the fake's memory capacity (default 16 GiB)
//   WOOLY_FAKE_RESET_FAILS=1 resetting a faulted context fails, as it does on
//                            the real driver after a kernel fault, so the
//                            worker exits with kExitContextLost and the
//                            supervisor starts a new one (for tests)
#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

#include "absl/strings/numbers.h"
#include "wooly/fake/fake_backend.h"
#include "wooly/server/cu_status.h"
#include "wooly/server/daemon.h"
#if __has_include("wooly/fake/fake_kernels.h")
#include "wooly/fake/fake_kernels.h"
#define WOOLY_HAVE_FAKE_KERNELS 1
#endif

namespace {

// A fake whose context never comes back after a fault: ResetContext fails
// with the sticky result, as cuDevicePrimaryCtxRetain does after a reset on
// the real driver.
class ResetFailsBackend : public wooly::fake::FakeBackend {
 public:
  using FakeBackend::FakeBackend;
  absl::Status ResetContext() override {
    const CUresult sticky = sticky_error();
    return wooly::server::CuError(sticky != CUDA_SUCCESS ? sticky : CUDA_ERROR_UNKNOWN,
                                  "cuDevicePrimaryCtxRetain (fake: WOOLY_FAKE_RESET_FAILS)");
  }
};

}  // namespace

int main(int argc, char** argv) {
#ifdef WOOLY_HAVE_FAKE_KERNELS
  wooly::fake::RegisterTestKernels();  // the named test kernels
#endif
  // Tests stay out of the user's cache directory: the module cache is kept
  // in memory unless a --module-cache-dir given later says otherwise.
  std::vector<char*> args(argv, argv + argc);
  static char kMemoryCache[] = "--module-cache-dir=none";
  args.insert(args.begin() + 1, kMemoryCache);
  return wooly::server::RunDaemon(
      static_cast<int>(args.size()), args.data(), "woolyd-fake",
      [](int device_ordinal) -> absl::StatusOr<std::unique_ptr<wooly::server::GpuBackend>> {
        if (device_ordinal != 0) {
          return absl::NotFoundError("the fake backend has only device 0");
        }
        wooly::fake::FakeBackendOptions options;
        if (const char* bytes = std::getenv("WOOLY_FAKE_MEMORY_BYTES"); bytes && *bytes) {
          uint64_t v = 0;
          if (!absl::SimpleAtoi(bytes, &v) || v == 0) {
            return absl::InvalidArgumentError("WOOLY_FAKE_MEMORY_BYTES must be a positive integer");
          }
          options.capacity_bytes = v;
        }
        if (const char* fails = std::getenv("WOOLY_FAKE_RESET_FAILS");
            fails && std::strcmp(fails, "1") == 0) {
          return std::make_unique<ResetFailsBackend>(std::move(options));
        }
        return std::make_unique<wooly::fake::FakeBackend>(std::move(options));
      });
}
