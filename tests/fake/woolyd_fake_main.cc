// woolyd-fake: woolyd on the fake backend (host memory, CPU kernels), for CI
// and integration tests. Same flags as woolyd; the fake's memory capacity
// can be set with $WOOLY_FAKE_MEMORY_BYTES (default 16 GiB).
#include <cstdlib>
#include <memory>

#include "absl/strings/numbers.h"
#include "wooly/fake/fake_backend.h"
#include "wooly/server/cu_status.h"
#include "wooly/server/daemon.h"
#if __has_include("wooly/fake/fake_kernels.h")
#include "wooly/fake/fake_kernels.h"
#define WOOLY_HAVE_FAKE_KERNELS 1
#endif

int main(int argc, char** argv) {
#ifdef WOOLY_HAVE_FAKE_KERNELS
  wooly::fake::RegisterTestKernels();  // the named test kernels
#endif
  return wooly::server::RunDaemon(
      argc, argv, "woolyd-fake",
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
        return std::make_unique<wooly::fake::FakeBackend>(std::move(options));
      });
}
