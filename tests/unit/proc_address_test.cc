// cuGetProcAddress / cuGetProcAddress_v2 resolution.
#define __CUDA_API_VERSION_INTERNAL  // exact names and the legacy declarations
#include <cuda.h>
#include <cudaProfiler.h>
#include <cudaTypedefs.h>
#include <stdlib.h>

#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "gtest/gtest.h"
#include "wooly/client/driver_surface.h"

namespace wooly::client {
namespace {

constexpr cuuint64_t kDefault = CU_GET_PROC_ADDRESS_DEFAULT;
constexpr cuuint64_t kLegacy = CU_GET_PROC_ADDRESS_LEGACY_STREAM;
constexpr cuuint64_t kPerThread = CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM;

// Every exported symbol with its address in this binary.
const std::map<std::string, void*>& SymbolAddresses() {
  static const auto* symbols = new std::map<std::string, void*>{
#define WOOLY_DRIVER_ENTRY(index, symbol, kind) {#symbol, reinterpret_cast<void*>(&symbol)},
#include "generated/driver_surface.inc"
#undef WOOLY_DRIVER_ENTRY
  };
  return *symbols;
}

std::string SymbolAt(void* fn) {
  if (fn == nullptr) return "-";
  for (const auto& [name, address] : SymbolAddresses()) {
    if (address == fn) return name;
  }
  return "<not an exported symbol>";
}

struct Lookup {
  CUresult result;
  CUdriverProcAddressQueryResult status;
  std::string symbol;  // "-" for a NULL pfn
};

Lookup GetProc(const char* name, int version, cuuint64_t flags) {
  void* pfn = reinterpret_cast<void*>(0x1);  // must be overwritten
  auto status = static_cast<CUdriverProcAddressQueryResult>(-1);
  CUresult result = cuGetProcAddress_v2(name, &pfn, version, flags, &status);
  return {result, status, SymbolAt(pfn)};
}

void ExpectResolves(const char* name, int version, cuuint64_t flags, const std::string& symbol) {
  Lookup got = GetProc(name, version, flags);
  EXPECT_EQ(got.result, CUDA_SUCCESS) << name << "@" << version << " flags " << flags;
  EXPECT_EQ(got.status, CU_GET_PROC_ADDRESS_SUCCESS) << name << "@" << version;
  EXPECT_EQ(got.symbol, symbol) << name << "@" << version << " flags " << flags;
}

TEST(ProcAddressTest, PicksTheNewestVariantForTheVersion) {
  ExpectResolves("cuMemAlloc", 12000, kDefault, "cuMemAlloc_v2");
  ExpectResolves("cuMemAlloc", 3020, kDefault, "cuMemAlloc_v2");
  ExpectResolves("cuMemAlloc", 3000, kDefault, "cuMemAlloc");
  ExpectResolves("cuMemAlloc", 2000, kLegacy, "cuMemAlloc");

  void* pfn = nullptr;
  ASSERT_EQ(cuGetProcAddress_v2("cuMemAlloc", &pfn, 12000, kDefault, nullptr), CUDA_SUCCESS);
  EXPECT_EQ(pfn, reinterpret_cast<void*>(&cuMemAlloc_v2));
  ASSERT_EQ(cuGetProcAddress_v2("cuMemAlloc", &pfn, 3000, kDefault, nullptr), CUDA_SUCCESS);
  EXPECT_EQ(pfn, reinterpret_cast<void*>(&cuMemAlloc));
}

TEST(ProcAddressTest, PerThreadFlagSelectsThePerThreadVariant) {
  ExpectResolves("cuMemcpyHtoDAsync", 12000, kPerThread, "cuMemcpyHtoDAsync_v2_ptsz");
  ExpectResolves("cuMemcpyHtoDAsync", 12000, kLegacy, "cuMemcpyHtoDAsync_v2");
  ExpectResolves("cuMemcpyHtoDAsync", 12000, kDefault, "cuMemcpyHtoDAsync_v2");
  ExpectResolves("cuLaunchKernel", 12000, kPerThread, "cuLaunchKernel_ptsz");
  ExpectResolves("cuLaunchKernel", 12000, kDefault, "cuLaunchKernel");
  ExpectResolves("cuMemcpy", 12000, kPerThread, "cuMemcpy_ptds");
  ExpectResolves("cuMemsetD8", 12000, kPerThread, "cuMemsetD8_v2_ptds");
  ExpectResolves("cuStreamQuery", 7000, kPerThread, "cuStreamQuery_ptsz");

  void* pfn = nullptr;
  ASSERT_EQ(cuGetProcAddress_v2("cuLaunchKernel", &pfn, 12000, kPerThread, nullptr), CUDA_SUCCESS);
  EXPECT_EQ(pfn, reinterpret_cast<void*>(&cuLaunchKernel_ptsz));
}

TEST(ProcAddressTest, PerThreadFlagFallsBackOnlyWithoutPerThreadVariants) {
  // No per-thread variant at all: the legacy one.
  ExpectResolves("cuArray3DCreate", 12000, kPerThread, "cuArray3DCreate_v2");
  ExpectResolves("cuCtxSynchronize", 12000, kPerThread, "cuCtxSynchronize");
  // A per-thread variant exists but is newer than the request: like the real
  // driver, that is VERSION_NOT_SUFFICIENT rather than the legacy variant.
  Lookup got = GetProc("cuMemcpyHtoD", 3020, kPerThread);
  EXPECT_EQ(got.result, CUDA_SUCCESS);
  EXPECT_EQ(got.status, CU_GET_PROC_ADDRESS_VERSION_NOT_SUFFICIENT);
  EXPECT_EQ(got.symbol, "-");
}

TEST(ProcAddressTest, SpecialCases) {
  ExpectResolves("cuMemcpyHtoD", 3020, kDefault, "cuMemcpyHtoD_v2");
  ExpectResolves("cuMemcpyHtoD", 7000, kPerThread, "cuMemcpyHtoD_v2_ptds");
  ExpectResolves("cuMemcpyDtoDAsync", 3000, kDefault, "cuMemcpyDtoDAsync");  // legacy at 3.0
  ExpectResolves("cuCtxCreate", 2000, kDefault, "cuCtxCreate");
  ExpectResolves("cuCtxCreate", 3020, kDefault, "cuCtxCreate_v2");
  ExpectResolves("cuCtxCreate", 11040, kDefault, "cuCtxCreate_v3");
  ExpectResolves("cuCtxCreate", 12050, kDefault, "cuCtxCreate_v4");
  ExpectResolves("cuDeviceGetUuid", 11000, kDefault, "cuDeviceGetUuid");
  ExpectResolves("cuDeviceGetUuid", 11040, kDefault, "cuDeviceGetUuid_v2");
  ExpectResolves("cuEventElapsedTime", 12000, kDefault, "cuEventElapsedTime");
  ExpectResolves("cuEventElapsedTime", 12080, kDefault, "cuEventElapsedTime_v2");
  // cuda.h maps cuGraphInstantiate to cuGraphInstantiateWithFlags, but the
  // driver's cuGetProcAddress keeps the 5-argument cuGraphInstantiate_v2.
  ExpectResolves("cuGraphInstantiate", 10000, kDefault, "cuGraphInstantiate");
  ExpectResolves("cuGraphInstantiate", 13000, kDefault, "cuGraphInstantiate_v2");
  ExpectResolves("cuStreamBeginCapture", 10000, kPerThread, "cuStreamBeginCapture_ptsz");
  ExpectResolves("cuStreamBeginCapture", 10010, kPerThread, "cuStreamBeginCapture_v2_ptsz");
  ExpectResolves("cuStreamGetCaptureInfo", 10010, kPerThread, "cuStreamGetCaptureInfo_ptsz");
  ExpectResolves("cuStreamGetCaptureInfo", 11030, kDefault, "cuStreamGetCaptureInfo_v2");
  ExpectResolves("cuStreamGetCaptureInfo", 11030, kPerThread, "cuStreamGetCaptureInfo_v2_ptsz");
  ExpectResolves("cuStreamGetCaptureInfo", 12030, kDefault, "cuStreamGetCaptureInfo_v3");
  ExpectResolves("cuStreamGetCaptureInfo", 12030, kPerThread, "cuStreamGetCaptureInfo_v3_ptsz");
  // cuCtxGetDevice/cuCtxSynchronize changed signature in 13.0 without a cuda.h rename.
  ExpectResolves("cuCtxGetDevice", 12090, kDefault, "cuCtxGetDevice");
  ExpectResolves("cuCtxGetDevice", 13000, kDefault, "cuCtxGetDevice_v2");
  ExpectResolves("cuTexRefSetAddress2D", 4010, kDefault, "cuTexRefSetAddress2D_v3");
  ExpectResolves("cuProfilerStart", 4000, kDefault, "cuProfilerStart");
}

TEST(ProcAddressTest, ResolvesToWoolysOwnEntryPoints) {
  ExpectResolves("cuGetProcAddress", 11030, kDefault, "cuGetProcAddress");
  ExpectResolves("cuGetProcAddress", 12000, kDefault, "cuGetProcAddress_v2");
  ExpectResolves("cuGetExportTable", 3000, kDefault, "cuGetExportTable");
  void* pfn = nullptr;
  ASSERT_EQ(cuGetProcAddress_v2("cuGetProcAddress", &pfn, 12000, kDefault, nullptr), CUDA_SUCCESS);
  EXPECT_EQ(pfn, reinterpret_cast<void*>(&cuGetProcAddress_v2));
}

TEST(ProcAddressTest, UnknownSymbolIsNotFound) {
  for (const char* name : {"cuNotAFunction", "cuMemAlloc_v2", "", "cudaMalloc"}) {
    Lookup got = GetProc(name, 13000, kDefault);
    EXPECT_EQ(got.result, CUDA_SUCCESS) << name;
    EXPECT_EQ(got.status, CU_GET_PROC_ADDRESS_SYMBOL_NOT_FOUND) << name;
    EXPECT_EQ(got.symbol, "-") << name;
  }
}

TEST(ProcAddressTest, TooOldVersionIsNotSufficient) {
  Lookup got = GetProc("cuMemAlloc", 1999, kDefault);
  EXPECT_EQ(got.result, CUDA_SUCCESS);
  EXPECT_EQ(got.status, CU_GET_PROC_ADDRESS_VERSION_NOT_SUFFICIENT);
  EXPECT_EQ(got.symbol, "-");
  got = GetProc("cuLaunchKernelEx", 11000, kDefault);
  EXPECT_EQ(got.status, CU_GET_PROC_ADDRESS_VERSION_NOT_SUFFICIENT);
  EXPECT_EQ(got.symbol, "-");
}

TEST(ProcAddressTest, NewerVersionThanWoolyKnowsGetsTheNewestVariant) {
  ExpectResolves("cuMemAlloc", 99000, kDefault, "cuMemAlloc_v2");
}

TEST(ProcAddressTest, NullArgumentsAreInvalid) {
  void* pfn = nullptr;
  CUdriverProcAddressQueryResult status;
  EXPECT_EQ(cuGetProcAddress_v2(nullptr, &pfn, 12000, kDefault, &status), CUDA_ERROR_INVALID_VALUE);
  EXPECT_EQ(cuGetProcAddress_v2("cuInit", nullptr, 12000, kDefault, &status),
            CUDA_ERROR_INVALID_VALUE);
  EXPECT_EQ(cuGetProcAddress(nullptr, &pfn, 12000, kDefault), CUDA_ERROR_INVALID_VALUE);
  EXPECT_EQ(cuGetProcAddress("cuInit", nullptr, 12000, kDefault), CUDA_ERROR_INVALID_VALUE);
}

TEST(ProcAddressTest, LegacyEntryPointReportsNotFoundAsAnError) {
  void* pfn = reinterpret_cast<void*>(0x1);
  EXPECT_EQ(cuGetProcAddress("cuMemAlloc", &pfn, 11030, kDefault), CUDA_SUCCESS);
  EXPECT_EQ(pfn, reinterpret_cast<void*>(&cuMemAlloc_v2));
  EXPECT_EQ(cuGetProcAddress("cuNotAFunction", &pfn, 11030, kDefault), CUDA_ERROR_NOT_FOUND);
  EXPECT_EQ(pfn, nullptr);
  pfn = reinterpret_cast<void*>(0x1);
  EXPECT_EQ(cuGetProcAddress("cuMemAlloc", &pfn, 1000, kDefault), CUDA_ERROR_NOT_FOUND);
  EXPECT_EQ(pfn, nullptr);
}

TEST(ProcAddressTest, ResolvedUnsupportedFunctionReturnsNotSupported) {
  setenv("WOOLY_LOG", "off", 1);
  void* pfn = nullptr;
  CUdriverProcAddressQueryResult status;
  ASSERT_EQ(cuGetProcAddress_v2("cuGraphicsUnregisterResource", &pfn, 12000, kDefault, &status),
            CUDA_SUCCESS);
  ASSERT_EQ(status, CU_GET_PROC_ADDRESS_SUCCESS);
  ASSERT_NE(pfn, nullptr);
  EXPECT_EQ(reinterpret_cast<PFN_cuGraphicsUnregisterResource_v3000>(pfn)(nullptr),
            CUDA_ERROR_NOT_SUPPORTED);
  unsetenv("WOOLY_LOG");
}

// Every row of the generated table is reachable through the public entry point
// with its own version and flag, and every exported symbol has a row.
TEST(ProcAddressTest, EveryTableRowResolvesToItsSymbol) {
  struct Row {
    const char* name;
    int version;
    bool per_thread;
    void* fn;
    const char* symbol;
  };
  const Row rows[] = {
#define WOOLY_PROC_ENTRY(name, version, per_thread, symbol) \
  {name, version, (per_thread) != 0, reinterpret_cast<void*>(&symbol), #symbol},
#include "generated/proc_address_table.inc"
#undef WOOLY_PROC_ENTRY
  };
  std::set<std::string> reachable;
  for (const Row& row : rows) {
    void* pfn = nullptr;
    CUdriverProcAddressQueryResult status;
    ASSERT_EQ(cuGetProcAddress_v2(row.name, &pfn, row.version,
                                  row.per_thread ? kPerThread : kLegacy, &status),
              CUDA_SUCCESS);
    EXPECT_EQ(status, CU_GET_PROC_ADDRESS_SUCCESS) << row.name << "@" << row.version;
    EXPECT_EQ(pfn, row.fn) << row.name << "@" << row.version << " expected " << row.symbol;
    reachable.insert(row.symbol);
  }
  for (const DriverEntry& entry : DriverEntries()) {
    EXPECT_TRUE(reachable.count(entry.name)) << entry.name << " is not reachable";
  }
}

// Ground truth recorded from the real driver by tools/probe_proc_address.c.
// Rows: name, cudaVersion, flags, then either the resolved symbol ('-' or
// NOTFOUND for NULL) or CUresult, symbolStatus and the resolved symbol.
TEST(ProcAddressTest, MatchesTheRealDriver) {
  std::ifstream in(WOOLY_PROC_ADDRESS_REAL_TSV);
  if (!in) GTEST_SKIP() << "no " << WOOLY_PROC_ADDRESS_REAL_TSV;
  std::string line;
  int checked = 0;
  int line_number = 0;
  while (std::getline(in, line)) {
    ++line_number;
    if (line.empty() || line[0] == '#') continue;
    std::vector<std::string> fields;
    std::stringstream split(line);
    for (std::string field; std::getline(split, field, '\t');) fields.push_back(field);
    ASSERT_TRUE(fields.size() == 4 || fields.size() == 6) << "line " << line_number << ": " << line;
    const std::string& name = fields[0];
    int version = std::stoi(fields[1]);
    cuuint64_t flags = std::stoull(fields[2]);
    std::string want_symbol = fields.back() == "NOTFOUND" ? "-" : fields.back();

    Lookup got = GetProc(name.c_str(), version, flags);
    SCOPED_TRACE("line " + std::to_string(line_number) + ": " + line);
    EXPECT_EQ(got.symbol, want_symbol);
    if (fields.size() == 6) {
      EXPECT_EQ(static_cast<int>(got.result), std::stoi(fields[3]));
      EXPECT_EQ(static_cast<int>(got.status), std::stoi(fields[4]));
    }
    ++checked;
  }
  EXPECT_GT(checked, 0);
}

}  // namespace
}  // namespace wooly::client
