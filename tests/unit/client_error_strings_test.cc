#include <cuda.h>
#include <gtest/gtest.h>

#include <cstring>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "error_strings.h"

namespace wooly::client {
namespace {

// Every enumerator of `enum cudaError_enum` in the cuda.h we build against.
std::vector<std::pair<std::string, int>> CuResultEnumerators() {
  std::ifstream in(WOOLY_CUDA_H);
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string text = ss.str();
  const size_t begin = text.find("typedef enum cudaError_enum");
  const size_t end = text.find("} CUresult;", begin);
  std::vector<std::pair<std::string, int>> out;
  if (begin == std::string::npos || end == std::string::npos) return out;
  const std::string body = text.substr(begin, end - begin);
  const std::regex re(R"(\b(CUDA_(?:SUCCESS|ERROR_[A-Z0-9_]+))\s*=\s*(\d+))");
  for (std::sregex_iterator it(body.begin(), body.end(), re), e; it != e; ++it) {
    out.emplace_back((*it)[1].str(), std::stoi((*it)[2].str()));
  }
  return out;
}

TEST(ErrorStringsTest, EveryCuResultHasItsNameAndAText) {
  const auto all = CuResultEnumerators();
  ASSERT_GT(all.size(), 90u) << "could not parse " << WOOLY_CUDA_H;
  for (const auto& [name, value] : all) {
    const CUresult r = static_cast<CUresult>(value);
    const char* got = nullptr;
    ASSERT_EQ(cuGetErrorName(r, &got), CUDA_SUCCESS) << name;
    EXPECT_STREQ(got, name.c_str());
    ASSERT_EQ(cuGetErrorString(r, &got), CUDA_SUCCESS) << name;
    ASSERT_NE(got, nullptr);
    EXPECT_GT(std::strlen(got), 3u) << name;
  }
}

TEST(ErrorStringsTest, DriverTexts) {
  const char* s = nullptr;
  ASSERT_EQ(cuGetErrorString(CUDA_SUCCESS, &s), CUDA_SUCCESS);
  EXPECT_STREQ(s, "no error");
  ASSERT_EQ(cuGetErrorString(CUDA_ERROR_INVALID_VALUE, &s), CUDA_SUCCESS);
  EXPECT_STREQ(s, "invalid argument");
  ASSERT_EQ(cuGetErrorString(CUDA_ERROR_OUT_OF_MEMORY, &s), CUDA_SUCCESS);
  EXPECT_STREQ(s, "out of memory");
  ASSERT_EQ(cuGetErrorString(CUDA_ERROR_NOT_FOUND, &s), CUDA_SUCCESS);
  EXPECT_STREQ(s, "named symbol not found");
  ASSERT_EQ(cuGetErrorString(CUDA_ERROR_INVALID_CONTEXT, &s), CUDA_SUCCESS);
  EXPECT_STREQ(s, "invalid device context");
}

TEST(ErrorStringsTest, UnknownValuesAndNullOutput) {
  const char* s = "unchanged";
  EXPECT_EQ(cuGetErrorString(static_cast<CUresult>(123456), &s), CUDA_ERROR_INVALID_VALUE);
  EXPECT_EQ(s, nullptr);
  s = "unchanged";
  EXPECT_EQ(cuGetErrorName(static_cast<CUresult>(-1), &s), CUDA_ERROR_INVALID_VALUE);
  EXPECT_EQ(s, nullptr);
  EXPECT_EQ(cuGetErrorString(CUDA_SUCCESS, nullptr), CUDA_ERROR_INVALID_VALUE);
  EXPECT_EQ(cuGetErrorName(CUDA_SUCCESS, nullptr), CUDA_ERROR_INVALID_VALUE);
}

}  // namespace
}  // namespace wooly::client
