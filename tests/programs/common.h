// Shared helpers for the driver-API test programs. These programs use only
// <cuda.h> (no cudart) so that they run unchanged against the real driver and
// against Wooly's libcuda.so.1. Everything they print must be deterministic
// (no addresses, timings or device-specific values): the GPU suite diffs the
// native and the Wooly output line by line.
//
// Convention: argv[1] is the module image (the fake text module in CI, a
// fatbin or cubin on a GPU); the last line is "PASS <name>" and the exit code
// 0 on success, "FAIL <name>: <why>" and exit code 1 otherwise.
#ifndef WOOLY_TESTS_PROGRAMS_COMMON_H_
#define WOOLY_TESTS_PROGRAMS_COMMON_H_

#include <cuda.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace wooly_test {

inline const char*& ProgramName() {
  static const char* name = "program";
  return name;
}

// The CUresult's enum name, as cuGetErrorName gives it.
inline std::string ResultName(CUresult r) {
  const char* s = nullptr;
  if (cuGetErrorName(r, &s) != CUDA_SUCCESS || s == nullptr) {
    return "CUresult(" + std::to_string(static_cast<int>(r)) + ")";
  }
  return s;
}

[[noreturn]] inline void Fail(const std::string& why) {
  std::printf("FAIL %s: %s\n", ProgramName(), why.c_str());
  std::fflush(stdout);
  std::exit(1);
}

inline void Pass() {
  std::printf("PASS %s\n", ProgramName());
  std::fflush(stdout);
}

#define CHECK_CU(expr)                                                                            \
  do {                                                                                            \
    const CUresult wooly_r_ = (expr);                                                             \
    if (wooly_r_ != CUDA_SUCCESS) {                                                               \
      ::wooly_test::Fail(std::string(#expr) + " returned " + ::wooly_test::ResultName(wooly_r_) + \
                         " (line " + std::to_string(__LINE__) + ")");                             \
    }                                                                                             \
  } while (0)

#define CHECK_TRUE(cond, msg)                                                            \
  do {                                                                                   \
    if (!(cond))                                                                         \
      ::wooly_test::Fail(std::string(msg) + " (line " + std::to_string(__LINE__) + ")"); \
  } while (0)

// The whole file, followed by a NUL byte (PTX and the fake text format are
// C strings; fatbins and cubins ignore it).
inline std::vector<char> ReadImage(const char* path) {
  std::FILE* f = std::fopen(path, "rb");
  if (f == nullptr) Fail(std::string("cannot open module image ") + path);
  std::vector<char> data;
  char buf[1 << 16];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), f)) > 0) data.insert(data.end(), buf, buf + n);
  std::fclose(f);
  data.push_back('\0');
  return data;
}

// Checks argc, initializes the driver and makes device 0's primary context
// current. Returns that context.
inline CUcontext Init(int argc, char** /*argv*/, const char* name, int min_args = 2) {
  ProgramName() = name;
  if (argc < min_args) Fail(std::string("usage: ") + name + " <module image> [args]");
  CHECK_CU(cuInit(0));
  CUdevice dev;
  CHECK_CU(cuDeviceGet(&dev, 0));
  CUcontext ctx;
  CHECK_CU(cuDevicePrimaryCtxRetain(&ctx, dev));
  CHECK_CU(cuCtxSetCurrent(ctx));
  return ctx;
}

inline CUmodule LoadModule(const char* path) {
  const std::vector<char> image = ReadImage(path);
  CUmodule mod;
  CHECK_CU(cuModuleLoadData(&mod, image.data()));
  return mod;
}

inline unsigned Blocks(int64_t n, unsigned block) {
  return static_cast<unsigned>((n + block - 1) / block);
}

// A device buffer freed at scope exit.
class DeviceBuffer {
 public:
  explicit DeviceBuffer(size_t bytes) : bytes_(bytes) { CHECK_CU(cuMemAlloc(&ptr_, bytes)); }
  ~DeviceBuffer() { cuMemFree(ptr_); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  CUdeviceptr get() const { return ptr_; }
  size_t bytes() const { return bytes_; }

 private:
  CUdeviceptr ptr_ = 0;
  size_t bytes_;
};

}  // namespace wooly_test

#endif  // WOOLY_TESTS_PROGRAMS_COMMON_H_
