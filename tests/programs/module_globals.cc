// module_globals: __device__ variables of a module and of a library, looked
// up with cuModuleGetGlobal/cuLibraryGetGlobal, written and read with plain
// copies, and used by kernels (g_table read by add_global, g_counter bumped
// atomically by every thread of bump_counter).
#include <cuda.h>

#include <cstdio>
#include <vector>

#include "common.h"

using namespace wooly_test;

namespace {

constexpr int kTable = 256;
constexpr int kN = 1000;

int ReadCounter(CUdeviceptr counter) {
  int v = -1;
  CHECK_CU(cuMemcpyDtoH(&v, counter, sizeof(v)));
  return v;
}

void Bump(CUfunction f, unsigned gx, unsigned gy, unsigned bx, unsigned by) {
  CHECK_CU(cuLaunchKernel(f, gx, gy, 1, bx, by, 1, 0, nullptr, nullptr, nullptr));
  CHECK_CU(cuCtxSynchronize());
}

}  // namespace

int main(int argc, char** argv) {
  Init(argc, argv, "module_globals");
  const std::vector<char> image = ReadImage(argv[1]);
  CUmodule mod;
  CHECK_CU(cuModuleLoadData(&mod, image.data()));

  CUdeviceptr table = 0, counter = 0;
  size_t table_bytes = 0, counter_bytes = 0;
  CHECK_CU(cuModuleGetGlobal(&table, &table_bytes, mod, "g_table"));
  CHECK_CU(cuModuleGetGlobal(&counter, &counter_bytes, mod, "g_counter"));
  std::printf("g_table: %zu bytes, g_counter: %zu bytes\n", table_bytes, counter_bytes);
  CHECK_TRUE(table_bytes == kTable * sizeof(float) && counter_bytes == sizeof(int), "global sizes");
  CUdeviceptr again = 0;
  CHECK_CU(cuModuleGetGlobal(&again, nullptr, mod, "g_table"));  // size is optional
  CHECK_TRUE(again == table, "the same global twice");

  // g_table, written by a copy and read by a kernel.
  std::vector<float> host_table(kTable);
  for (int i = 0; i < kTable; ++i) host_table[i] = 0.25f * static_cast<float>(i);
  CHECK_CU(cuMemcpyHtoD(table, host_table.data(), table_bytes));
  std::vector<float> back(kTable);
  CHECK_CU(cuMemcpyDtoH(back.data(), table, table_bytes));
  CHECK_TRUE(back == host_table, "g_table read back");

  CUfunction add_global;
  CHECK_CU(cuModuleGetFunction(&add_global, mod, "add_global"));
  DeviceBuffer out(kN * sizeof(float));
  CHECK_CU(cuMemsetD32(out.get(), 0x3f800000u, kN));  // 1.0f
  CUdeviceptr po = out.get();
  int n = kN;
  void* args[] = {&po, &n};
  CHECK_CU(cuLaunchKernel(add_global, Blocks(kN, 128), 1, 1, 128, 1, 1, 0, nullptr, args, nullptr));
  std::vector<float> result(kN);
  CHECK_CU(cuMemcpyDtoH(result.data(), out.get(), kN * sizeof(float)));
  for (int i = 0; i < kN; ++i) {
    CHECK_TRUE(result[i] == 1.0f + host_table[i % kTable], "add_global at " + std::to_string(i));
  }
  std::printf("add_global over %d elements ok\n", kN);

  // g_counter: one atomicAdd per thread.
  CUfunction bump;
  CHECK_CU(cuModuleGetFunction(&bump, mod, "bump_counter"));
  CHECK_CU(cuMemsetD32(counter, 0, 1));
  Bump(bump, 3, 1, 128, 1);
  std::printf("g_counter after 3x128 threads: %d\n", ReadCounter(counter));
  Bump(bump, 2, 2, 32, 2);
  const int total = ReadCounter(counter);
  std::printf("g_counter after 2x2 blocks of 32x2 more: %d\n", total);
  CHECK_TRUE(total == 384 + 256, "g_counter total");

  // A library has globals of its own, separate from the module's.
  CUlibrary lib;
  CHECK_CU(cuLibraryLoadData(&lib, image.data(), nullptr, nullptr, 0, nullptr, nullptr, 0));
  CUdeviceptr lib_counter = 0;
  size_t lib_counter_bytes = 0;
  CHECK_CU(cuLibraryGetGlobal(&lib_counter, &lib_counter_bytes, lib, "g_counter"));
  CHECK_TRUE(lib_counter != counter, "library global is the module's");
  CHECK_CU(cuMemsetD32(lib_counter, 0, 1));
  CUkernel lib_bump;
  CHECK_CU(cuLibraryGetKernel(&lib_bump, lib, "bump_counter"));
  Bump(reinterpret_cast<CUfunction>(lib_bump), 5, 1, 64, 1);
  std::printf("library g_counter: %d, module g_counter still: %d\n", ReadCounter(lib_counter),
              ReadCounter(counter));
  CHECK_TRUE(ReadCounter(lib_counter) == 320 && ReadCounter(counter) == total,
             "library and module counters");
  CUmodule lib_mod;
  CHECK_CU(cuLibraryGetModule(&lib_mod, lib));
  CUdeviceptr via_module = 0;
  CHECK_CU(cuModuleGetGlobal(&via_module, nullptr, lib_mod, "g_counter"));
  CHECK_TRUE(via_module == lib_counter, "cuLibraryGetModule global");
  std::printf("cuLibraryGetModule sees the library's globals: yes\n");

  CUdeviceptr missing = 0;
  std::printf("unknown global: %s\n",
              ResultName(cuModuleGetGlobal(&missing, nullptr, mod, "no_such_global")).c_str());

  CHECK_CU(cuLibraryUnload(lib));
  CHECK_CU(cuModuleUnload(mod));
  Pass();
  return 0;
}
