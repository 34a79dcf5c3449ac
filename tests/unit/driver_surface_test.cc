// The generated driver-surface table and the unsupported-call stubs.
#define __CUDA_API_VERSION_INTERNAL  // exact names and the legacy declarations
#include "wooly/client/driver_surface.h"

#include <cuda.h>
#include <cudaProfiler.h>
#include <stdlib.h>

#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace wooly::client {
namespace {

using ::testing::HasSubstr;
using ::testing::IsEmpty;

constexpr int kGeneratedRows = 0
#define WOOLY_DRIVER_ENTRY(index, symbol, kind) +1
#include "generated/driver_surface.inc"
#undef WOOLY_DRIVER_ENTRY
    ;

std::string UnsupportedLine(std::string_view symbol) {
  return "wooly: " + std::string(symbol) +
         " is not supported by Wooly yet (returned CUDA_ERROR_NOT_SUPPORTED)\n";
}

size_t CountOccurrences(const std::string& haystack, const std::string& needle) {
  size_t count = 0;
  for (size_t pos = haystack.find(needle); pos != std::string::npos;
       pos = haystack.find(needle, pos + needle.size())) {
    ++count;
  }
  return count;
}

class DriverSurfaceTest : public ::testing::Test {
 protected:
  void SetUp() override { unsetenv("WOOLY_LOG"); }
  void TearDown() override { unsetenv("WOOLY_LOG"); }
};

TEST_F(DriverSurfaceTest, TableIsSortedAndEveryNameFindsItself) {
  auto entries = DriverEntries();
  ASSERT_EQ(entries.size(), static_cast<size_t>(kGeneratedRows));
  ASSERT_GT(entries.size(), 600u);  // CUDA 13.0 exports 637 cu* functions
  for (size_t i = 0; i < entries.size(); ++i) {
    if (i > 0) {
      EXPECT_LT(std::string_view(entries[i - 1].name), std::string_view(entries[i].name));
    }
    EXPECT_EQ(FindDriverEntry(entries[i].name), static_cast<int>(i)) << entries[i].name;
  }
}

TEST_F(DriverSurfaceTest, KindsOfKnownSymbols) {
  EXPECT_EQ(DriverCallKindOf("cuInit"), DriverCallKind::kLocal);
  EXPECT_EQ(DriverCallKindOf("cuGetProcAddress_v2"), DriverCallKind::kLocal);
  EXPECT_EQ(DriverCallKindOf("cuDeviceGetUuid_v2"), DriverCallKind::kLocal);
  EXPECT_EQ(DriverCallKindOf("cuMemAlloc_v2"), DriverCallKind::kForwarded);
  EXPECT_EQ(DriverCallKindOf("cuLaunchKernel_ptsz"), DriverCallKind::kForwarded);
  EXPECT_EQ(DriverCallKindOf("cuMemcpyHtoDAsync_v2_ptsz"), DriverCallKind::kForwarded);
  // The legacy 32-bit cuMemAlloc is exported but not implemented.
  EXPECT_EQ(DriverCallKindOf("cuMemAlloc"), DriverCallKind::kUnsupported);
  EXPECT_EQ(DriverCallKindOf("cuGraphCreate"), DriverCallKind::kForwarded);
  EXPECT_EQ(DriverCallKindOf("cuGraphicsUnregisterResource"), DriverCallKind::kUnsupported);
  EXPECT_EQ(DriverCallKindOf("cuProfilerStart"), DriverCallKind::kUnsupported);
  EXPECT_GE(FindDriverEntry("cuGetExportTable"), 0);
  EXPECT_GE(FindDriverEntry("cuProfilerInitialize"), 0);
}

TEST_F(DriverSurfaceTest, UnknownNamesAreNotEntries) {
  EXPECT_EQ(FindDriverEntry("cuNotAFunction"), -1);
  EXPECT_EQ(FindDriverEntry(""), -1);
  EXPECT_EQ(FindDriverEntry("cuMemAlloc_v3"), -1);
  EXPECT_EQ(FindDriverEntry("cudaMalloc"), -1);
  EXPECT_EQ(DriverCallKindOf("cuNotAFunction"), DriverCallKind::kUnsupported);
}

TEST_F(DriverSurfaceTest, KindNames) {
  EXPECT_STREQ(DriverCallKindName(DriverCallKind::kLocal), "local");
  EXPECT_STREQ(DriverCallKindName(DriverCallKind::kForwarded), "forwarded");
  EXPECT_STREQ(DriverCallKindName(DriverCallKind::kUnsupported), "unsupported");
}

TEST_F(DriverSurfaceTest, UnsupportedStubReturnsNotSupportedAndLogsOnce) {
  ::testing::internal::CaptureStderr();
  EXPECT_EQ(cuGraphicsUnregisterResource(nullptr), CUDA_ERROR_NOT_SUPPORTED);
  EXPECT_EQ(cuGraphicsUnregisterResource(nullptr), CUDA_ERROR_NOT_SUPPORTED);
  std::string err = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(err, UnsupportedLine("cuGraphicsUnregisterResource"));
}

TEST_F(DriverSurfaceTest, LegacyStubHasTheLegacySignature) {
  // cuMemAlloc (CUDA 2.0) takes a 32-bit CUdeviceptr_v1 and unsigned size.
  CUdeviceptr_v1 ptr = 0;
  ::testing::internal::CaptureStderr();
  EXPECT_EQ(cuMemAlloc(&ptr, 16u), CUDA_ERROR_NOT_SUPPORTED);
  EXPECT_EQ(::testing::internal::GetCapturedStderr(), UnsupportedLine("cuMemAlloc"));
}

TEST_F(DriverSurfaceTest, WoolyLogOffSilencesTheReport) {
  setenv("WOOLY_LOG", "off", 1);
  ::testing::internal::CaptureStderr();
  EXPECT_EQ(cuGraphicsUnmapResources(0, nullptr, nullptr), CUDA_ERROR_NOT_SUPPORTED);
  EXPECT_THAT(::testing::internal::GetCapturedStderr(), IsEmpty());
}

TEST_F(DriverSurfaceTest, WoolyLogErrorSilencesTheReport) {
  setenv("WOOLY_LOG", "ERROR", 1);
  ::testing::internal::CaptureStderr();
  EXPECT_EQ(cuProfilerStart(), CUDA_ERROR_NOT_SUPPORTED);
  EXPECT_THAT(::testing::internal::GetCapturedStderr(), IsEmpty());
}

TEST_F(DriverSurfaceTest, ConcurrentCallersReportOnce) {
  ::testing::internal::CaptureStderr();
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([] {
      char luid[8];
      unsigned mask = 0;
      for (int i = 0; i < 100; ++i)
        EXPECT_EQ(cuDeviceGetLuid(luid, &mask, 0), CUDA_ERROR_NOT_SUPPORTED);
    });
  }
  for (auto& t : threads) t.join();
  std::string err = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(CountOccurrences(err, UnsupportedLine("cuDeviceGetLuid")), 1u) << err;
}

TEST_F(DriverSurfaceTest, ReportUnsupportedByIndexAndName) {
  int index = FindDriverEntry("cuCtxAttach");
  ASSERT_GE(index, 0);
  ::testing::internal::CaptureStderr();
  EXPECT_EQ(ReportUnsupported(index), CUDA_ERROR_NOT_SUPPORTED);
  EXPECT_EQ(ReportUnsupported("cuCtxAttach"), CUDA_ERROR_NOT_SUPPORTED);  // same once-flag
  EXPECT_EQ(ReportUnsupported(-1), CUDA_ERROR_NOT_SUPPORTED);
  EXPECT_EQ(ReportUnsupported(1 << 20), CUDA_ERROR_NOT_SUPPORTED);
  EXPECT_EQ(ReportUnsupported("cuSomethingNew"), CUDA_ERROR_NOT_SUPPORTED);
  std::string err = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(CountOccurrences(err, UnsupportedLine("cuCtxAttach")), 1u) << err;
  EXPECT_THAT(err, HasSubstr(UnsupportedLine("cuSomethingNew")));
}

TEST_F(DriverSurfaceTest, ImplementedSymbolsAreNotStubbedAsUnsupported) {
  // In this test binary the implemented symbols come from test_impl_stubs.cc,
  // which answers CUDA_ERROR_STUB_LIBRARY; an unsupported stub would answer
  // CUDA_ERROR_NOT_SUPPORTED.
  EXPECT_EQ(cuInit(0), CUDA_ERROR_STUB_LIBRARY);
  CUdeviceptr ptr = 0;
  EXPECT_EQ(cuMemAlloc_v2(&ptr, 16), CUDA_ERROR_STUB_LIBRARY);
}

}  // namespace
}  // namespace wooly::client
