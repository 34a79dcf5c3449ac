// CPU versions of tests/kernels/test_kernels.cu for the fake backend.
//
// Each kernel reads its arguments from the packed buffer at the offsets nvcc
// uses for sm_90, translates device pointers through FakeLaunch::host, and
// does what every GPU thread would do. Thread i of a 1D kernel is
// blockIdx.x * blockDim.x + threadIdx.x, so a launch covers
// grid[0] * block[0] indices; the other dimensions repeat the same indices.
// Faults a GPU would raise become CUDA_ERROR_ILLEGAL_ADDRESS or
// CUDA_ERROR_MISALIGNED_ADDRESS.
#include "wooly/fake/fake_kernels.h"

#include <cuda.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "absl/base/call_once.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "wooly/fake/fake_backend.h"
#include "wooly/server/cu_status.h"

namespace wooly::fake {
namespace {

using server::CuError;

// Reads a `T` parameter at `offset` of the argument buffer.
template <typename T>
T Arg(const FakeLaunch& l, uint32_t offset) {
  T v{};
  if (uint64_t{offset} + sizeof(T) <= l.args.size()) {
    std::memcpy(&v, l.args.data() + offset, sizeof(T));
  }
  return v;
}

// Distinct values of blockIdx.x * blockDim.x + threadIdx.x.
int64_t Extent1D(const FakeLaunch& l) { return int64_t{l.grid[0]} * l.block[0]; }

uint64_t TotalThreads(const FakeLaunch& l) {
  return uint64_t{l.grid[0]} * l.grid[1] * l.grid[2] * l.block[0] * l.block[1] * l.block[2];
}

// Elements a guarded 1D kernel (`if (i < n)`) touches.
int64_t Covered(const FakeLaunch& l, int32_t n) {
  return std::max<int64_t>(0, std::min<int64_t>(n, Extent1D(l)));
}

// Host memory behind `count` elements of `T` at device address `dptr`, or the
// fault a GPU would raise touching them.
template <typename T>
absl::StatusOr<T*> Device(const FakeLaunch& l, uint64_t dptr, int64_t count, const char* what) {
  if (count <= 0) return static_cast<T*>(nullptr);
  if (dptr % alignof(T) != 0) {
    return CuError(CUDA_ERROR_MISALIGNED_ADDRESS, absl::StrCat("fake kernel: ", what));
  }
  void* p = l.host ? l.host(dptr, static_cast<uint64_t>(count) * sizeof(T)) : nullptr;
  if (p == nullptr) {
    return CuError(CUDA_ERROR_ILLEGAL_ADDRESS, absl::StrCat("fake kernel: ", what));
  }
  return static_cast<T*>(p);
}

// Host memory of a global of the launched function's module (what a real
// kernel reaches as a __device__ variable).
template <typename T>
absl::StatusOr<T*> Global(const FakeLaunch& l, const std::string& name, uint64_t count) {
  void* p = l.global ? l.global(name, count * sizeof(T)) : nullptr;
  if (p == nullptr) return CuError(CUDA_ERROR_ILLEGAL_ADDRESS, absl::StrCat("global ", name));
  return static_cast<T*>(p);
}

#define WOOLY_ASSIGN_OR_RETURN(lhs, expr)       \
  auto lhs##_or = (expr);                       \
  if (!lhs##_or.ok()) return lhs##_or.status(); \
  auto lhs = *lhs##_or

absl::Status VectorAdd(const FakeLaunch& l) {
  const int64_t n = Covered(l, Arg<int32_t>(l, 24));
  WOOLY_ASSIGN_OR_RETURN(a, Device<const float>(l, Arg<uint64_t>(l, 0), n, "vector_add a"));
  WOOLY_ASSIGN_OR_RETURN(b, Device<const float>(l, Arg<uint64_t>(l, 8), n, "vector_add b"));
  WOOLY_ASSIGN_OR_RETURN(c, Device<float>(l, Arg<uint64_t>(l, 16), n, "vector_add c"));
  for (int64_t i = 0; i < n; ++i) c[i] = a[i] + b[i];
  return absl::OkStatus();
}

absl::Status FillU32(const FakeLaunch& l) {
  const uint32_t v = Arg<uint32_t>(l, 8);
  const int64_t n = Covered(l, Arg<int32_t>(l, 12));
  WOOLY_ASSIGN_OR_RETURN(p, Device<uint32_t>(l, Arg<uint64_t>(l, 0), n, "fill_u32 p"));
  std::fill(p, p + n, v);
  return absl::OkStatus();
}

// The spin only matters on a GPU: fake work is synchronous.
absl::Status DelayedFillU32(const FakeLaunch& l) { return FillU32(l); }

absl::Status CopyU32(const FakeLaunch& l) {
  const int64_t n = Covered(l, Arg<int32_t>(l, 16));
  WOOLY_ASSIGN_OR_RETURN(src, Device<const uint32_t>(l, Arg<uint64_t>(l, 0), n, "copy_u32 src"));
  WOOLY_ASSIGN_OR_RETURN(dst, Device<uint32_t>(l, Arg<uint64_t>(l, 8), n, "copy_u32 dst"));
  std::memmove(dst, src, static_cast<size_t>(n) * sizeof(uint32_t));
  return absl::OkStatus();
}

// struct Affine { float scale; float bias; int n; const float* in; float* out; }
absl::Status AffineKernel(const FakeLaunch& l) {
  const float scale = Arg<float>(l, 0);
  const float bias = Arg<float>(l, 4);
  const int64_t n = Covered(l, Arg<int32_t>(l, 8));
  WOOLY_ASSIGN_OR_RETURN(in, Device<const float>(l, Arg<uint64_t>(l, 16), n, "affine in"));
  WOOLY_ASSIGN_OR_RETURN(out, Device<float>(l, Arg<uint64_t>(l, 24), n, "affine out"));
  // nvcc contracts a * b + c into one fused multiply-add.
  for (int64_t i = 0; i < n; ++i) out[i] = std::fma(in[i], scale, bias);
  return absl::OkStatus();
}

absl::Status Saxpy(const FakeLaunch& l) {
  const float a = Arg<float>(l, 0);
  const int64_t n = Covered(l, Arg<int32_t>(l, 24));
  WOOLY_ASSIGN_OR_RETURN(x, Device<const float>(l, Arg<uint64_t>(l, 8), n, "saxpy x"));
  WOOLY_ASSIGN_OR_RETURN(y, Device<float>(l, Arg<uint64_t>(l, 16), n, "saxpy y"));
  for (int64_t i = 0; i < n; ++i) y[i] = std::fma(a, x[i], y[i]);
  return absl::OkStatus();
}

absl::Status AddGlobal(const FakeLaunch& l) {
  const int64_t n = Covered(l, Arg<int32_t>(l, 8));
  WOOLY_ASSIGN_OR_RETURN(out, Device<float>(l, Arg<uint64_t>(l, 0), n, "add_global out"));
  if (n == 0) return absl::OkStatus();
  WOOLY_ASSIGN_OR_RETURN(table, Global<const float>(l, "g_table", 256));
  for (int64_t i = 0; i < n; ++i) out[i] += table[i % 256];
  return absl::OkStatus();
}

absl::Status BumpCounter(const FakeLaunch& l) {
  WOOLY_ASSIGN_OR_RETURN(counter, Global<int32_t>(l, "g_counter", 1));
  // atomicAdd wraps like unsigned arithmetic.
  *counter = static_cast<int32_t>(static_cast<uint32_t>(*counter) +
                                  static_cast<uint32_t>(TotalThreads(l)));
  return absl::OkStatus();
}

#undef WOOLY_ASSIGN_OR_RETURN

std::vector<FakeKernel> TestKernels() {
  using P = wire::ParamInfo;
  return {
      {"vector_add", {P{0, 8}, P{8, 8}, P{16, 8}, P{24, 4}}, VectorAdd},
      {"fill_u32", {P{0, 8}, P{8, 4}, P{12, 4}}, FillU32},
      {"delayed_fill_u32", {P{0, 8}, P{8, 4}, P{12, 4}, P{16, 8}}, DelayedFillU32},
      {"copy_u32", {P{0, 8}, P{8, 8}, P{16, 4}}, CopyU32},
      {"affine", {P{0, 32}}, AffineKernel},
      {"saxpy", {P{0, 4}, P{8, 8}, P{16, 8}, P{24, 4}}, Saxpy},
      {"add_global", {P{0, 8}, P{8, 4}}, AddGlobal},
      {"bump_counter", {}, BumpCounter},
  };
}

}  // namespace

void RegisterTestKernels() {
  static absl::once_flag once;
  absl::call_once(once, [] {
    for (FakeKernel& k : TestKernels()) RegisterFakeKernel(std::move(k));
  });
}

// woolyd-fake links the fake backend whole, so this runs at its startup.
[[maybe_unused]] const bool kRegistered = (RegisterTestKernels(), true);

std::vector<std::string> TestKernelNames() {
  std::vector<std::string> names;
  for (const FakeKernel& k : TestKernels()) names.push_back(k.name);
  return names;
}

}  // namespace wooly::fake
