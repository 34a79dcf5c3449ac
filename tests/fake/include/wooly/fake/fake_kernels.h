// CPU versions of the test kernels of tests/kernels/test_kernels.cu, for the
// fake backend: same names, same parameter layouts (as nvcc lays them out for
// sm_90), same results.
#ifndef WOOLY_FAKE_FAKE_KERNELS_H_
#define WOOLY_FAKE_FAKE_KERNELS_H_

#include <string>
#include <vector>

namespace wooly::fake {

// Registers every test kernel with RegisterFakeKernel. Idempotent and
// thread-safe. A static initializer in fake_kernels.cc calls it, so any
// binary that links the fake backend whole has the kernels; a test that
// links it normally calls this itself.
void RegisterTestKernels();

// Names of the kernels RegisterTestKernels adds, in a stable order.
std::vector<std::string> TestKernelNames();

}  // namespace wooly::fake

#endif  // WOOLY_FAKE_FAKE_KERNELS_H_
