// libwooly's export tables (cuGetExportTable): layouts, the integrity check
// against a vector recorded from the real driver, context-local storage.
#include <cuda.h>
#include <gtest/gtest.h>
#include <pthread.h>
#include <unistd.h>

#include <cstring>
#include <memory>

#include "client_fake_woolyd.h"
#include "driver.h"
#include "export_tables.h"
#include "log.h"

namespace wooly::client {
namespace {

using testing::FakeWoolyd;

CUuuid Uuid(std::initializer_list<int> bytes) {
  CUuuid u;
  int i = 0;
  for (int b : bytes) u.bytes[i++] = static_cast<char>(b);
  return u;
}

const CUuuid kCudart = Uuid({0x6b, 0xd5, 0xfb, 0x6c, 0x5b, 0xf4, 0xe7, 0x4a, 0x89, 0x87, 0xd9,
                             0x39, 0x12, 0xfd, 0x9d, 0xf9});
const CUuuid kIntegrity = Uuid({0xd4, 0x08, 0x20, 0x55, 0xbd, 0xe6, 0x70, 0x4b, 0x8d, 0x34, 0xba,
                                0x12, 0x3c, 0x66, 0xe1, 0xf2});
const CUuuid kCls = Uuid({0xc6, 0x93, 0x33, 0x6e, 0x11, 0x21, 0xdf, 0x11, 0xa8, 0xc3, 0x68, 0xf3,
                          0x55, 0xd8, 0x95, 0x93});
const CUuuid kHooks = Uuid({0xa0, 0x94, 0x79, 0x8c, 0x2e, 0x74, 0x2e, 0x74, 0x93, 0xf2, 0x08, 0x00,
                            0x20, 0x0c, 0x0a, 0x66});
const CUuuid kChecks = Uuid({0x26, 0x3e, 0x88, 0x60, 0x7c, 0xd2, 0x61, 0x43, 0x92, 0xf6, 0xbb,
                             0xd5, 0x00, 0x6d, 0xfa, 0x7e});

const void* const* Table(const CUuuid& id) {
  const void* t = nullptr;
  EXPECT_EQ(cuGetExportTable(&t, &id), CUDA_SUCCESS);
  return static_cast<const void* const*>(t);
}

class ExportTablesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    SetLogLevelForTesting(LogLevel::kOff);
    ResetForTesting();
    server_ = std::make_unique<FakeWoolyd>();
    ::setenv("WOOLY_SERVER", server_->endpoint().c_str(), 1);
  }
  void TearDown() override {
    ResetForTesting();
    server_.reset();
  }
  std::unique_ptr<FakeWoolyd> server_;
};

TEST_F(ExportTablesTest, SizesMatchTheRealDriver) {
  // First words measured on driver 580 (docs/export-tables.md).
  const struct {
    std::initializer_list<int> uuid;
    uintptr_t size;
  } kSizes[] = {
      {{0x17, 0x34, 0xdc, 0x26, 0x80, 0x0d, 0x47, 0x45, 0x87, 0x26, 0xc0, 0xf1, 0xe7, 0xdd, 0x8b,
        0xca},
       136},
      {{0x21, 0x31, 0x8c, 0x60, 0x97, 0x14, 0x32, 0x48, 0x8c, 0xa6, 0x41, 0xff, 0x73, 0x24, 0xc8,
        0xf2},
       744},
      {{0x26, 0x3e, 0x88, 0x60, 0x7c, 0xd2, 0x61, 0x43, 0x92, 0xf6, 0xbb, 0xd5, 0x00, 0x6d, 0xfa,
        0x7e},
       120},
      {{0x42, 0xd8, 0x5a, 0x81, 0x23, 0xf6, 0xcb, 0x47, 0x82, 0x98, 0xf6, 0xe7, 0x8a, 0x3a, 0xec,
        0xdc},
       24},
      {{0x69, 0xa2, 0x8e, 0x9f, 0x24, 0x49, 0x8b, 0x47, 0xb0, 0x30, 0xc5, 0xda, 0x33, 0x0e, 0xa4,
        0xe9},
       272},
      {{0x6b, 0xd5, 0xfb, 0x6c, 0x5b, 0xf4, 0xe7, 0x4a, 0x89, 0x87, 0xd9, 0x39, 0x12, 0xfd, 0x9d,
        0xf9},
       104},
      {{0xa0, 0x94, 0x79, 0x8c, 0x2e, 0x74, 0x2e, 0x74, 0x93, 0xf2, 0x08, 0x00, 0x20, 0x0c, 0x0a,
        0x66},
       56},
      {{0xd4, 0x08, 0x20, 0x55, 0xbd, 0xe6, 0x70, 0x4b, 0x8d, 0x34, 0xba, 0x12, 0x3c, 0x66, 0xe1,
        0xf2},
       24},
      {{0xda, 0x91, 0x51, 0xd3, 0x3a, 0xe6, 0xcc, 0x41, 0xa5, 0xc0, 0x4f, 0x26, 0xd5, 0x33, 0xe3,
        0x28},
       56},
      {{0xf8, 0xcf, 0xf9, 0x51, 0x21, 0x46, 0x8b, 0x4e, 0xb9, 0xe2, 0xfb, 0x46, 0x9e, 0x7c, 0x0d,
        0xd9},
       24},
  };
  for (const auto& k : kSizes) {
    const void* const* t = Table(Uuid(k.uuid));
    ASSERT_NE(t, nullptr);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(t[0]), k.size);
    for (uintptr_t i = 1; i < k.size / sizeof(void*); ++i) EXPECT_NE(t[i], nullptr) << i;
  }
  // Context-local storage has no size word and three functions.
  const void* const* cls = Table(kCls);
  for (int i = 0; i < 3; ++i) EXPECT_NE(cls[i], nullptr);
}

TEST_F(ExportTablesTest, AnswersBeforeInitAndStaysPut) {
  const void* const* a = Table(kCudart);
  ASSERT_EQ(cuInit(0), CUDA_SUCCESS);
  EXPECT_EQ(Table(kCudart), a);  // addresses enter the integrity hash
}

TEST_F(ExportTablesTest, UnknownTableIsInvalidValue) {
  const void* t = reinterpret_cast<const void*>(1);
  CUuuid unknown{};
  EXPECT_EQ(cuGetExportTable(&t, &unknown), CUDA_ERROR_INVALID_VALUE);
  EXPECT_EQ(t, nullptr);
  EXPECT_EQ(cuGetExportTable(nullptr, &unknown), CUDA_ERROR_INVALID_VALUE);
}

using IntegrityFn = CUresult (*)(uint32_t, uint64_t, uint64_t*);

TEST_F(ExportTablesTest, IntegrityKnownAnswersAndBeforeInit) {
  auto check = reinterpret_cast<IntegrityFn>(const_cast<void*>(Table(kIntegrity)[1]));
  uint64_t out[2] = {};
  EXPECT_EQ(check(13000, 1700000000, out), CUDA_ERROR_NOT_INITIALIZED);
  ASSERT_EQ(cuInit(0), CUDA_SUCCESS);
  ASSERT_EQ(check(13000, 1700000000, out), CUDA_SUCCESS);
  EXPECT_EQ(out[0], 0x3341181C03CB675Cull);
  EXPECT_EQ(out[1], 0x8ED383AA1F4CD1E8ull);
  ASSERT_EQ(check(13001, 1700000000, out), CUDA_SUCCESS);
  EXPECT_EQ(out[0], 0x1841181C03CB675Cull);
  EXPECT_EQ(out[1], 0x8ED383AA1F4CD1E8ull);
}

// The slot-1 answer equals the hash over Wooly's own answers: its driver
// version, device UUID and PCI ids, its table addresses, pid and thread.
TEST_F(ExportTablesTest, IntegrityHashesWoolysOwnAnswers) {
  ASSERT_EQ(cuInit(0), CUDA_SUCCESS);
  const void* const* integrity = Table(kIntegrity);
  auto check = reinterpret_cast<IntegrityFn>(const_cast<void*>(integrity[1]));
  uint64_t got[2];
  ASSERT_EQ(check(13002, 1700000123, got), CUDA_SUCCESS);

  int driver = 0;
  ASSERT_EQ(cuDriverGetVersion(&driver), CUDA_SUCCESS);
  CUuuid uuid;
  ASSERT_EQ(cuDeviceGetUuid_v2(&uuid, 0), CUDA_SUCCESS);
  IntegrityInputs::Device dev{};
  std::memcpy(dev.uuid, uuid.bytes, 16);
  ASSERT_EQ(cuDeviceGetAttribute(&dev.pci_domain, CU_DEVICE_ATTRIBUTE_PCI_DOMAIN_ID, 0),
            CUDA_SUCCESS);
  ASSERT_EQ(cuDeviceGetAttribute(&dev.pci_bus, CU_DEVICE_ATTRIBUTE_PCI_BUS_ID, 0), CUDA_SUCCESS);
  ASSERT_EQ(cuDeviceGetAttribute(&dev.pci_device, CU_DEVICE_ATTRIBUTE_PCI_DEVICE_ID, 0),
            CUDA_SUCCESS);
  IntegrityInputs in{};
  in.driver_version = static_cast<uint32_t>(driver);
  in.version = 13002;
  in.pid = static_cast<uint32_t>(::getpid());
  in.thread = static_cast<uint32_t>(reinterpret_cast<uintptr_t>(
      reinterpret_cast<void*>(::pthread_self())));
  in.cudart_table = reinterpret_cast<uint64_t>(Table(kCudart));
  in.integrity_table = reinterpret_cast<uint64_t>(integrity);
  in.check_function = reinterpret_cast<uint64_t>(integrity[1]);
  in.unix_seconds = 1700000123;
  in.devices = &dev;
  in.device_count = 1;
  uint64_t want[2];
  ComputeIntegrity(in, want);
  EXPECT_EQ(got[0], want[0]);
  EXPECT_EQ(got[1], want[1]);
}

// Inputs and answer recorded from the real driver on the lent H100.
TEST(ExportTablesVector, ComputeIntegrityMatchesRealDriver) {
  IntegrityInputs::Device dev{};
  const uint8_t uuid[16] = {0xf2, 0x58, 0xba, 0x7a, 0x9f, 0x7b, 0x89, 0x7e,
                            0xc7, 0xaf, 0x82, 0xd3, 0x4d, 0x9a, 0x6d, 0x42};
  std::memcpy(dev.uuid, uuid, 16);
  dev.pci_device = 6;
  IntegrityInputs in{13000, 13002, 405, 348538688, 0x7f1f1484c680, 0x7f1f1484c660,
                     0x7f1f0f1ab350, 1700000000, &dev, 1};
  uint64_t out[2];
  ComputeIntegrity(in, out);
  EXPECT_EQ(out[0], 0xf9e9fe147d1859d8ull);
  EXPECT_EQ(out[1], 0x0b11ea4d6dc25b7bull);
}

TEST_F(ExportTablesTest, CudartPrimaryContextWithoutRetain) {
  ASSERT_EQ(cuInit(0), CUDA_SUCCESS);
  auto get = reinterpret_cast<CUresult (*)(CUcontext*, CUdevice)>(
      const_cast<void*>(Table(kCudart)[2]));
  CUcontext ctx = nullptr;
  ASSERT_EQ(get(&ctx, 0), CUDA_SUCCESS);
  unsigned flags = 1;
  int active = 1;
  ASSERT_EQ(cuDevicePrimaryCtxGetState(0, &flags, &active), CUDA_SUCCESS);
  EXPECT_EQ(active, 0);
  CUcontext retained = nullptr;
  ASSERT_EQ(cuDevicePrimaryCtxRetain(&retained, 0), CUDA_SUCCESS);
  EXPECT_EQ(retained, ctx);
  EXPECT_EQ(get(&ctx, 7), CUDA_ERROR_INVALID_DEVICE);
}

TEST_F(ExportTablesTest, CallbackHookBuffersAndContextChecks) {
  const void* const* hooks = Table(kHooks);
  auto buf = reinterpret_cast<void (*)(void**, size_t*)>(const_cast<void*>(hooks[2]));
  void* p = nullptr;
  size_t n = 0;
  buf(&p, &n);
  EXPECT_NE(p, nullptr);
  EXPECT_EQ(n, 1024u);
  std::memset(p, 0xab, n * 4);  // the runtime writes n 4-byte words
  auto buf6 = reinterpret_cast<void (*)(void**, size_t*)>(const_cast<void*>(hooks[6]));
  buf6(&p, &n);
  EXPECT_EQ(n, 14u);
  std::memset(p, 0xab, n * 4);

  const void* const* checks = Table(kChecks);
  auto wrapped =
      reinterpret_cast<CUresult (*)(CUcontext, uint32_t*, CUcontext*)>(const_cast<void*>(checks[2]));
  uint32_t w = 7;
  EXPECT_EQ(wrapped(nullptr, &w, nullptr), CUDA_SUCCESS);
  EXPECT_EQ(w, 0u);
  auto zero = reinterpret_cast<uint32_t (*)()>(const_cast<void*>(checks[3]));
  EXPECT_EQ(zero(), 0u);
}

int g_dtor_calls = 0;
void* g_dtor_value = nullptr;
void Dtor(CUcontext, void*, void* value) {
  ++g_dtor_calls;
  g_dtor_value = value;
}

TEST_F(ExportTablesTest, ContextLocalStorage) {
  const void* const* cls = Table(kCls);
  using Put = CUresult (*)(CUcontext, void*, void*, void (*)(CUcontext, void*, void*));
  using Del = CUresult (*)(CUcontext, void*);
  using Get = CUresult (*)(void**, CUcontext, void*);
  auto put = reinterpret_cast<Put>(const_cast<void*>(cls[0]));
  auto del = reinterpret_cast<Del>(const_cast<void*>(cls[1]));
  auto get = reinterpret_cast<Get>(const_cast<void*>(cls[2]));
  int key1 = 0, key2 = 0, value = 0;

  ASSERT_EQ(cuInit(0), CUDA_SUCCESS);
  EXPECT_EQ(put(nullptr, &key1, &value, Dtor), CUDA_ERROR_INVALID_CONTEXT);  // no current
  CUcontext ctx;
  ASSERT_EQ(cuDevicePrimaryCtxRetain(&ctx, 0), CUDA_SUCCESS);
  ASSERT_EQ(cuCtxSetCurrent(ctx), CUDA_SUCCESS);

  void* out = nullptr;
  EXPECT_EQ(get(&out, nullptr, &key1), CUDA_ERROR_INVALID_HANDLE);
  ASSERT_EQ(put(nullptr, &key1, &value, Dtor), CUDA_SUCCESS);
  ASSERT_EQ(get(&out, ctx, &key1), CUDA_SUCCESS);  // explicit ctx == current
  EXPECT_EQ(out, &value);
  ASSERT_EQ(put(reinterpret_cast<CUcontext>(~uintptr_t{0}), &key2, &key2, Dtor), CUDA_SUCCESS);
  ASSERT_EQ(del(nullptr, &key2), CUDA_SUCCESS);  // delete runs no destructor
  EXPECT_EQ(del(nullptr, &key2), CUDA_ERROR_INVALID_HANDLE);

  g_dtor_calls = 0;
  ASSERT_EQ(cuDevicePrimaryCtxReset(0), CUDA_SUCCESS);  // destructors run on reset
  EXPECT_EQ(g_dtor_calls, 1);
  EXPECT_EQ(g_dtor_value, &value);
  EXPECT_EQ(get(&out, ctx, &key1), CUDA_ERROR_INVALID_HANDLE);
}

}  // namespace
}  // namespace wooly::client
