// streams_events: two non-blocking streams ordered only by an event. Stream
// A runs a slow kernel that fills a buffer; stream B waits on the event
// recorded after it, copies the buffer with a kernel and reads the copy back.
// Without the dependency B would see the previous round's values. Also
// checks event query/synchronize/elapsed time and stream query.
#include <cuda.h>

#include <cstdint>
#include <cstdio>
#include <vector>

#include "common.h"

using namespace wooly_test;

namespace {

constexpr int kN = 1 << 18;
constexpr unsigned kBlock = 256;
// About a millisecond on a current GPU: long enough to expose a missing wait.
constexpr unsigned long long kSpinCycles = 2'000'000;

}  // namespace

int main(int argc, char** argv) {
  Init(argc, argv, "streams_events");
  CUmodule mod = LoadModule(argv[1]);
  CUfunction fill, copy;
  CHECK_CU(cuModuleGetFunction(&fill, mod, "delayed_fill_u32"));
  CHECK_CU(cuModuleGetFunction(&copy, mod, "copy_u32"));

  int least = 0, greatest = 0;
  CHECK_CU(cuCtxGetStreamPriorityRange(&least, &greatest));
  CHECK_TRUE(greatest <= least, "greatest stream priority above least");
  std::printf("stream priority range ordered: yes\n");

  CUstream a, b;
  CHECK_CU(cuStreamCreateWithPriority(&a, CU_STREAM_NON_BLOCKING, greatest));
  CHECK_CU(cuStreamCreateWithPriority(&b, CU_STREAM_NON_BLOCKING, least));
  CUevent start, filled, untimed;
  CHECK_CU(cuEventCreate(&start, CU_EVENT_DEFAULT));
  CHECK_CU(cuEventCreate(&filled, CU_EVENT_DEFAULT));
  CHECK_CU(cuEventCreate(&untimed, CU_EVENT_DISABLE_TIMING));

  DeviceBuffer src(kN * sizeof(unsigned)), dst(kN * sizeof(unsigned));
  CHECK_CU(cuMemsetD32(src.get(), 0, kN));
  CHECK_CU(cuMemsetD32(dst.get(), 0, kN));
  std::vector<unsigned> host(kN);

  for (unsigned round = 1; round <= 4; ++round) {
    const unsigned value = 0xC0DE0000u + round;
    CUdeviceptr s = src.get(), d = dst.get();
    int n = kN;
    unsigned long long spin = kSpinCycles;
    void* fill_args[] = {&s, (void*)&value, &n, &spin};
    void* copy_args[] = {&s, &d, &n};

    CHECK_CU(cuEventRecord(start, a));
    CHECK_CU(
        cuLaunchKernel(fill, Blocks(kN, kBlock), 1, 1, kBlock, 1, 1, 0, a, fill_args, nullptr));
    CHECK_CU(cuEventRecord(filled, a));
    CHECK_CU(cuStreamWaitEvent(b, filled, 0));
    CHECK_CU(
        cuLaunchKernel(copy, Blocks(kN, kBlock), 1, 1, kBlock, 1, 1, 0, b, copy_args, nullptr));
    CHECK_CU(cuMemcpyDtoHAsync(host.data(), dst.get(), kN * sizeof(unsigned), b));
    CHECK_CU(cuStreamSynchronize(b));
    for (int i = 0; i < kN; ++i) {
      if (host[i] != value) {
        Fail("round " + std::to_string(round) + ": element " + std::to_string(i) +
             " not ordered after the event");
      }
    }
    // B finished, and B waited for `filled`, so the event has completed.
    CHECK_CU(cuEventQuery(filled));
    CHECK_CU(cuEventSynchronize(filled));
    float ms = -1;
    CHECK_CU(cuEventElapsedTime(&ms, start, filled));
    CHECK_TRUE(ms >= 0, "negative elapsed time");
    std::printf("round %u: ordered by event ok, elapsed >= 0\n", round);
  }

  CHECK_CU(cuStreamSynchronize(a));
  CHECK_CU(cuStreamQuery(a));
  CHECK_CU(cuStreamQuery(b));
  std::printf("idle streams query: %s %s\n", ResultName(cuStreamQuery(a)).c_str(),
              ResultName(cuStreamQuery(b)).c_str());

  // Events without timing cannot be measured.
  CHECK_CU(cuEventRecord(untimed, a));
  CHECK_CU(cuEventSynchronize(untimed));
  float ms = 0;
  std::printf("elapsed time with a DISABLE_TIMING event: %s\n",
              ResultName(cuEventElapsedTime(&ms, start, untimed)).c_str());

  // The legacy default stream orders work before the context synchronizes.
  CUdeviceptr s = src.get();
  unsigned v = 7;
  int n = kN;
  void* fill_args[] = {&s, &v, &n, (void*)&kSpinCycles};
  CHECK_CU(
      cuLaunchKernel(fill, Blocks(kN, kBlock), 1, 1, kBlock, 1, 1, 0, nullptr, fill_args, nullptr));
  CHECK_CU(cuCtxSynchronize());
  CHECK_CU(cuMemcpyDtoH(host.data(), src.get(), kN * sizeof(unsigned)));
  for (int i = 0; i < kN; ++i) CHECK_TRUE(host[i] == 7, "default stream result");
  std::printf("default stream + cuCtxSynchronize ok\n");

  CHECK_CU(cuEventDestroy(start));
  CHECK_CU(cuEventDestroy(filled));
  CHECK_CU(cuEventDestroy(untimed));
  CHECK_CU(cuStreamDestroy(a));
  CHECK_CU(cuStreamDestroy(b));
  CHECK_CU(cuModuleUnload(mod));
  Pass();
  return 0;
}
