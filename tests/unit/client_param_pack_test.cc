#include <gtest/gtest.h>

#include <cstring>

#include "param_pack.h"

namespace wooly::client {
namespace {

using Layout = std::vector<wire::ParamInfo>;

template <typename T>
T At(const std::vector<uint8_t>& b, size_t off) {
  T v;
  std::memcpy(&v, b.data() + off, sizeof(T));
  return v;
}

TEST(ParamPackTest, MixedSizesWithAlignmentGaps) {
  // kernel(char c, double d, int i, short s): offsets 0, 8, 16, 20.
  const Layout layout = {{0, 1}, {8, 8}, {16, 4}, {20, 2}};
  char c = 'x';
  double d = 2.5;
  int i = -7;
  short s = 300;
  void* params[] = {&c, &d, &i, &s};
  std::vector<uint8_t> out;
  ASSERT_EQ(PackKernelParams(layout, params, nullptr, &out), CUDA_SUCCESS);
  ASSERT_EQ(out.size(), 22u);
  EXPECT_EQ(At<char>(out, 0), 'x');
  for (size_t gap = 1; gap < 8; ++gap) EXPECT_EQ(out[gap], 0) << gap;  // gaps are zero
  EXPECT_EQ(At<double>(out, 8), 2.5);
  EXPECT_EQ(At<int>(out, 16), -7);
  EXPECT_EQ(At<short>(out, 20), 300);
}

TEST(ParamPackTest, StructParameter) {
  struct Params {
    float scale;
    int n;
    unsigned long long ptr;
    char tag[5];
  } p{1.5f, 42, 0xdeadbeefull, {'a', 'b', 'c', 'd', 'e'}};
  unsigned long long out_ptr = 0x1000;
  const Layout layout = {{0, sizeof(Params)}, {32, 8}};
  void* params[] = {&p, &out_ptr};
  std::vector<uint8_t> out;
  ASSERT_EQ(PackKernelParams(layout, params, nullptr, &out), CUDA_SUCCESS);
  ASSERT_EQ(out.size(), 40u);
  EXPECT_EQ(std::memcmp(out.data(), &p, sizeof(Params)), 0);
  EXPECT_EQ(At<unsigned long long>(out, 32), 0x1000u);
}

TEST(ParamPackTest, ExtraBuffer) {
  const Layout layout = {{0, 8}, {8, 4}};
  struct {
    unsigned long long a;
    int b;
  } buf{99, 7};
  size_t size = sizeof(buf);  // 16: trailing padding beyond the layout
  void* extra[] = {CU_LAUNCH_PARAM_BUFFER_POINTER, &buf, CU_LAUNCH_PARAM_BUFFER_SIZE, &size,
                   CU_LAUNCH_PARAM_END};
  std::vector<uint8_t> out;
  ASSERT_EQ(PackKernelParams(layout, nullptr, extra, &out), CUDA_SUCCESS);
  ASSERT_EQ(out.size(), 12u);  // truncated to what the layout uses
  EXPECT_EQ(At<unsigned long long>(out, 0), 99u);
  EXPECT_EQ(At<int>(out, 8), 7);
}

TEST(ParamPackTest, ExtraAsIntSpellingsAndOrder) {
  const Layout layout = {{0, 4}};
  int v = 5;
  size_t size = 4;
  void* extra[] = {reinterpret_cast<void*>(CU_LAUNCH_PARAM_BUFFER_SIZE_AS_INT), &size,
                   reinterpret_cast<void*>(CU_LAUNCH_PARAM_BUFFER_POINTER_AS_INT), &v,
                   reinterpret_cast<void*>(CU_LAUNCH_PARAM_END_AS_INT)};
  std::vector<uint8_t> out;
  ASSERT_EQ(PackKernelParams(layout, nullptr, extra, &out), CUDA_SUCCESS);
  EXPECT_EQ(At<int>(out, 0), 5);
}

TEST(ParamPackTest, ExtraTooSmallOrMalformed) {
  const Layout layout = {{0, 8}};
  int v = 1;
  size_t small = 4;
  void* too_small[] = {CU_LAUNCH_PARAM_BUFFER_POINTER, &v, CU_LAUNCH_PARAM_BUFFER_SIZE, &small,
                       CU_LAUNCH_PARAM_END};
  std::vector<uint8_t> out;
  EXPECT_EQ(PackKernelParams(layout, nullptr, too_small, &out), CUDA_ERROR_INVALID_VALUE);
  void* no_size[] = {CU_LAUNCH_PARAM_BUFFER_POINTER, &v, CU_LAUNCH_PARAM_END};
  EXPECT_EQ(PackKernelParams(layout, nullptr, no_size, &out), CUDA_ERROR_INVALID_VALUE);
  void* bad_token[] = {reinterpret_cast<void*>(7), &v, CU_LAUNCH_PARAM_END};
  EXPECT_EQ(PackKernelParams(layout, nullptr, bad_token, &out), CUDA_ERROR_INVALID_VALUE);
}

TEST(ParamPackTest, BothOrNeither) {
  const Layout empty;
  std::vector<uint8_t> out(3, 1);
  EXPECT_EQ(PackKernelParams(empty, nullptr, nullptr, &out), CUDA_SUCCESS);
  EXPECT_TRUE(out.empty());
  const Layout one = {{0, 4}};
  int v = 0;
  void* params[] = {&v};
  void* extra[] = {CU_LAUNCH_PARAM_END};
  EXPECT_EQ(PackKernelParams(one, params, extra, &out), CUDA_ERROR_INVALID_VALUE);
  // A function with parameters needs one of them.
  EXPECT_EQ(PackKernelParams(one, nullptr, nullptr, &out), CUDA_ERROR_INVALID_VALUE);
  // An empty extra list is fine for a function without parameters.
  EXPECT_EQ(PackKernelParams(empty, nullptr, extra, &out), CUDA_SUCCESS);
}

TEST(ParamPackTest, NullParameterPointerIsInvalid) {
  const Layout layout = {{0, 4}, {4, 4}};
  int a = 1;
  void* params[] = {&a, nullptr};
  std::vector<uint8_t> out;
  EXPECT_EQ(PackKernelParams(layout, params, nullptr, &out), CUDA_ERROR_INVALID_VALUE);
}

TEST(ParamPackTest, PackedSize) {
  EXPECT_EQ(PackedParamsSize({}), 0u);
  EXPECT_EQ(PackedParamsSize({{16, 4}, {0, 8}}), 20u);
}

}  // namespace
}  // namespace wooly::client
