// memory_ext: the memory extensions through the driver API. The
// stream-ordered allocator on a stream with a kernel writing into it, memory
// pools and their attributes, VMM (reserve, create, map two allocations side
// by side, set access, kernel and copies, retain, unmap, release, free),
// pinned and registered host memory, pointer attributes of every kind of
// memory, occupancy queries on fill_u32, context limits and cache
// configuration, pitched allocation and tensor maps.
//
// Everything printed is deterministic for one GPU and driver, so the GPU
// suite can compare the native run with the Wooly run line by line.
#include <cuda.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "common.h"

using namespace wooly_test;

namespace {

constexpr unsigned kBlock = 256;

const char* YesNo(bool b) { return b ? "yes" : "no"; }

void Launch(CUfunction fill, CUdeviceptr p, unsigned value, int n, CUstream s) {
  void* args[] = {&p, &value, &n};
  CHECK_CU(cuLaunchKernel(fill, Blocks(n, kBlock), 1, 1, kBlock, 1, 1, 0, s, args, nullptr));
}

void ExpectAll(const std::vector<unsigned>& v, unsigned value, const char* what) {
  for (size_t i = 0; i < v.size(); ++i) {
    if (v[i] != value) Fail(std::string(what) + ": element " + std::to_string(i) + " differs");
  }
}

size_t FourBytesPerThread(int block) { return static_cast<size_t>(block) * 4; }

// The fake backend keeps each mapping apart; a copy across two mappings is
// a GPU-only case.
bool IsFakeDevice() {
  char name[256] = {};
  CHECK_CU(cuDeviceGetName(name, sizeof(name), 0));
  return std::strstr(name, "Wooly Fake") != nullptr;
}

void AsyncAllocation(CUfunction fill) {
  constexpr int kN = 1 << 18;
  CUstream s;
  CHECK_CU(cuStreamCreate(&s, CU_STREAM_NON_BLOCKING));
  CUdeviceptr p = 0;
  CHECK_CU(cuMemAllocAsync(&p, kN * sizeof(unsigned), s));
  Launch(fill, p, 0xA11CA7E5u, kN, s);
  void* pinned = nullptr;
  CHECK_CU(cuMemHostAlloc(&pinned, kN * sizeof(unsigned), 0));
  CHECK_CU(cuMemcpyDtoHAsync(pinned, p, kN * sizeof(unsigned), s));
  CHECK_CU(cuMemFreeAsync(p, s));
  CHECK_CU(cuStreamSynchronize(s));
  const auto* words = static_cast<const unsigned*>(pinned);
  ExpectAll(std::vector<unsigned>(words, words + kN), 0xA11CA7E5u, "async allocation");
  CHECK_CU(cuMemFreeHost(pinned));
  CHECK_CU(cuStreamDestroy(s));
  std::printf("stream-ordered alloc, kernel, copy, free on one stream: ok\n");
}

void Pools() {
  CUmemoryPool def = nullptr, current = nullptr;
  CHECK_CU(cuDeviceGetDefaultMemPool(&def, 0));
  CHECK_CU(cuDeviceGetMemPool(&current, 0));
  std::printf("default pool is current: %s\n", YesNo(def == current));
  cuuint64_t threshold = ~cuuint64_t{0};
  CHECK_CU(cuMemPoolSetAttribute(def, CU_MEMPOOL_ATTR_RELEASE_THRESHOLD, &threshold));
  threshold = 0;
  CHECK_CU(cuMemPoolGetAttribute(def, CU_MEMPOOL_ATTR_RELEASE_THRESHOLD, &threshold));
  std::printf("release threshold set to max: %s\n", YesNo(threshold == ~cuuint64_t{0}));
  for (CUmemPool_attribute a :
       {CU_MEMPOOL_ATTR_REUSE_FOLLOW_EVENT_DEPENDENCIES, CU_MEMPOOL_ATTR_REUSE_ALLOW_OPPORTUNISTIC,
        CU_MEMPOOL_ATTR_REUSE_ALLOW_INTERNAL_DEPENDENCIES}) {
    int v = -1;
    CHECK_CU(cuMemPoolGetAttribute(def, a, &v));
    std::printf("default pool reuse attribute %d: %d\n", static_cast<int>(a), v);
  }

  CUmemPoolProps props;
  std::memset(&props, 0, sizeof(props));
  props.allocType = CU_MEM_ALLOCATION_TYPE_PINNED;
  props.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
  props.location.id = 0;
  CUmemoryPool mine = nullptr;
  CHECK_CU(cuMemPoolCreate(&mine, &props));
  CHECK_CU(cuDeviceSetMemPool(0, mine));
  CUdeviceptr p = 0, q = 0;
  CHECK_CU(cuMemAllocAsync(&p, 1 << 20, nullptr));
  CHECK_CU(cuMemAllocFromPoolAsync(&q, 4096, def, nullptr));
  CUmemoryPool from_p = nullptr, from_q = nullptr;
  CHECK_CU(cuPointerGetAttribute(&from_p, CU_POINTER_ATTRIBUTE_MEMPOOL_HANDLE, p + 100));
  CHECK_CU(cuPointerGetAttribute(&from_q, CU_POINTER_ATTRIBUTE_MEMPOOL_HANDLE, q));
  std::printf("allocations know their pools: %s %s\n", YesNo(from_p == mine), YesNo(from_q == def));
  CHECK_CU(cuStreamSynchronize(nullptr));
  cuuint64_t used = 0;
  CHECK_CU(cuMemPoolGetAttribute(mine, CU_MEMPOOL_ATTR_USED_MEM_CURRENT, &used));
  std::printf("own pool in use >= 1 MiB: %s\n", YesNo(used >= (1u << 20)));
  CHECK_CU(cuMemFreeAsync(p, nullptr));
  CHECK_CU(cuMemFreeAsync(q, nullptr));
  CHECK_CU(cuStreamSynchronize(nullptr));
  CHECK_CU(cuMemPoolTrimTo(mine, 0));
  CHECK_CU(cuMemPoolGetAttribute(mine, CU_MEMPOOL_ATTR_USED_MEM_CURRENT, &used));
  std::printf("own pool in use after free: %llu\n", static_cast<unsigned long long>(used));
  std::printf("destroying the default pool: %s\n", ResultName(cuMemPoolDestroy(def)).c_str());
  CHECK_CU(cuMemPoolDestroy(mine));
  CHECK_CU(cuDeviceGetMemPool(&current, 0));
  std::printf("default pool current again: %s\n", YesNo(current == def));
}

void VirtualMemory(CUfunction fill) {
  CUmemAllocationProp prop;
  std::memset(&prop, 0, sizeof(prop));
  prop.type = CU_MEM_ALLOCATION_TYPE_PINNED;
  prop.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
  prop.location.id = 0;
  prop.requestedHandleTypes = CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR;
  size_t g = 0;
  CHECK_CU(cuMemGetAllocationGranularity(&g, &prop, CU_MEM_ALLOC_GRANULARITY_MINIMUM));
  std::printf("granularity: %zu\n", g);
  CUdeviceptr va = 0;
  CHECK_CU(cuMemAddressReserve(&va, 4 * g, 0, 0, 0));
  // Two allocations mapped side by side, as expandable segments grow.
  CUmemGenericAllocationHandle h[2] = {0, 0};
  for (CUmemGenericAllocationHandle& handle : h) CHECK_CU(cuMemCreate(&handle, g, &prop, 0));
  CHECK_CU(cuMemMap(va, g, 0, h[0], 0));
  CHECK_CU(cuMemMap(va + g, g, 0, h[1], 0));
  CUmemAccessDesc access;
  std::memset(&access, 0, sizeof(access));
  access.location = prop.location;
  access.flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE;
  CHECK_CU(cuMemSetAccess(va, 2 * g, &access, 1));
  unsigned long long flags = 0;
  CHECK_CU(cuMemGetAccess(&flags, &prop.location, va + g + 8));
  std::printf("access flags: %llu\n", flags);

  const int n = static_cast<int>(g / sizeof(unsigned));
  Launch(fill, va, 0x0B0B0B0Bu, n, nullptr);
  Launch(fill, va + g, 0x0C0C0C0Cu, n, nullptr);
  std::vector<unsigned> host(n);
  CHECK_CU(cuMemcpyDtoH(host.data(), va + g, g));
  ExpectAll(host, 0x0C0C0C0Cu, "second mapping");
  CHECK_CU(cuMemsetD32(va, 0x0D0D0D0Du, n));
  CHECK_CU(cuMemcpy(reinterpret_cast<CUdeviceptr>(host.data()), va, g));
  ExpectAll(host, 0x0D0D0D0Du, "first mapping");
  if (!IsFakeDevice()) {
    // One copy across the boundary of the two mappings.
    std::vector<unsigned> across(1024, 0xE0E0E0E0u), back(1024);
    CHECK_CU(cuMemcpyHtoD(va + g - 2048, across.data(), 4096));
    CHECK_CU(cuMemcpyDtoH(back.data(), va + g - 2048, 4096));
    ExpectAll(back, 0xE0E0E0E0u, "copy across mappings");
  }
  std::printf("kernels and copies through two mappings: ok\n");

  unsigned type = 0, mapped = 0;
  CUdeviceptr start = 0;
  size_t range = 0;
  CHECK_CU(cuPointerGetAttribute(&type, CU_POINTER_ATTRIBUTE_MEMORY_TYPE, va + g + 4));
  CHECK_CU(cuPointerGetAttribute(&mapped, CU_POINTER_ATTRIBUTE_MAPPED, va + g + 4));
  CHECK_CU(cuPointerGetAttribute(&start, CU_POINTER_ATTRIBUTE_RANGE_START_ADDR, va + g + 4));
  CHECK_CU(cuPointerGetAttribute(&range, CU_POINTER_ATTRIBUTE_RANGE_SIZE, va + g + 4));
  std::printf("vmm pointer: type %u, mapped %u, range start is reservation %s, range size %zu\n",
              type, mapped, YesNo(start == va), range);
  CUdeviceptr base = 0;
  size_t size = 0;
  CHECK_CU(cuMemGetAddressRange(&base, &size, va + g + 4));
  std::printf("address range is the mapping: %s, size %zu\n", YesNo(base == va + g), size);

  CUmemAllocationProp got;
  CHECK_CU(cuMemGetAllocationPropertiesFromHandle(&got, h[1]));
  std::printf("handle properties: type %d, location %d/%d, handle types %d\n",
              static_cast<int>(got.type), static_cast<int>(got.location.type), got.location.id,
              static_cast<int>(got.requestedHandleTypes));
  CUmemGenericAllocationHandle retained = 0;
  CHECK_CU(cuMemRetainAllocationHandle(&retained, reinterpret_cast<void*>(va + g + 100)));
  std::printf("retained handle is the mapped one: %s\n", YesNo(retained == h[1]));
  CHECK_CU(cuMemRelease(retained));
  // Released while mapped: the memory stays until the unmap.
  CHECK_CU(cuMemRelease(h[0]));
  CHECK_CU(cuMemcpyDtoH(host.data(), va, 64));
  CHECK_TRUE(host[0] == 0x0D0D0D0Du, "released mapping lost its data");
  CHECK_CU(cuMemUnmap(va, g));
  CHECK_CU(cuMemUnmap(va + g, g));
  CHECK_CU(cuMemRelease(h[1]));
  std::printf(
      "unmapped pointer type query: %s\n",
      ResultName(cuPointerGetAttribute(&type, CU_POINTER_ATTRIBUTE_MEMORY_TYPE, va)).c_str());
  CHECK_CU(cuMemAddressFree(va, 4 * g));
  std::printf("vmm released: ok\n");
}

void PinnedMemory() {
  constexpr size_t kBytes = 1 << 20;
  void* pinned = nullptr;
  CHECK_CU(cuMemHostAlloc(&pinned, kBytes, CU_MEMHOSTALLOC_PORTABLE | CU_MEMHOSTALLOC_DEVICEMAP));
  unsigned flags = 0;
  CHECK_CU(cuMemHostGetFlags(&flags, pinned));
  std::printf("pinned flags: %u\n", flags);
  CUdeviceptr dev_view = 0;
  CHECK_CU(cuMemHostGetDevicePointer(&dev_view, pinned, 0));
  std::printf("pinned device pointer is the host pointer: %s\n",
              YesNo(dev_view == reinterpret_cast<CUdeviceptr>(pinned)));
  auto* words = static_cast<unsigned*>(pinned);
  for (size_t i = 0; i < kBytes / 4; ++i) words[i] = static_cast<unsigned>(i * 2654435761u);
  DeviceBuffer d(kBytes);
  CHECK_CU(cuMemcpyHtoD(d.get(), pinned, kBytes));
  void* back = nullptr;
  CHECK_CU(cuMemAllocHost(&back, kBytes));
  CHECK_CU(cuMemcpy(reinterpret_cast<CUdeviceptr>(back), d.get(), kBytes));
  CHECK_TRUE(std::memcmp(back, pinned, kBytes) == 0, "pinned round trip differs");
  CHECK_CU(cuMemHostGetFlags(&flags, back));
  std::printf("cuMemAllocHost flags: %u\n", flags);

  unsigned type = 0;
  CUcontext ctx = nullptr, current = nullptr;
  void* host_ptr = nullptr;
  CHECK_CU(cuCtxGetCurrent(&current));
  CHECK_CU(cuPointerGetAttribute(&type, CU_POINTER_ATTRIBUTE_MEMORY_TYPE,
                                 reinterpret_cast<CUdeviceptr>(words + 10)));
  CHECK_CU(cuPointerGetAttribute(&ctx, CU_POINTER_ATTRIBUTE_CONTEXT,
                                 reinterpret_cast<CUdeviceptr>(words + 10)));
  CHECK_CU(cuPointerGetAttribute(&host_ptr, CU_POINTER_ATTRIBUTE_HOST_POINTER,
                                 reinterpret_cast<CUdeviceptr>(words + 10)));
  std::printf("pinned pointer: type %u, context is current %s, host pointer is itself %s\n", type,
              YesNo(ctx == current), YesNo(host_ptr == words + 10));

  std::vector<unsigned> user(4096, 5);
  CHECK_CU(cuMemHostRegister(user.data(), user.size() * 4, CU_MEMHOSTREGISTER_DEVICEMAP));
  std::printf("registering twice: %s\n", ResultName(cuMemHostRegister(user.data(), 64, 0)).c_str());
  CHECK_CU(cuMemHostGetDevicePointer(&dev_view, user.data(), 0));
  std::printf("registered device pointer is the host pointer: %s\n",
              YesNo(dev_view == reinterpret_cast<CUdeviceptr>(user.data())));
  CHECK_CU(cuPointerGetAttribute(&type, CU_POINTER_ATTRIBUTE_MEMORY_TYPE,
                                 reinterpret_cast<CUdeviceptr>(user.data() + 1)));
  std::printf("registered pointer type: %u\n", type);
  CHECK_CU(cuMemcpyHtoD(d.get(), user.data(), user.size() * 4));
  CHECK_CU(cuMemHostUnregister(user.data()));
  std::printf("unregistering twice: %s\n", ResultName(cuMemHostUnregister(user.data())).c_str());
  CHECK_CU(cuMemFreeHost(pinned));
  std::printf("freeing pinned memory twice: %s\n", ResultName(cuMemFreeHost(pinned)).c_str());
  CHECK_CU(cuMemFreeHost(back));
  std::printf("pinned memory: ok\n");
}

void DevicePointerAttributes() {
  DeviceBuffer d(1 << 16);
  CUcontext current = nullptr, ctx = nullptr;
  CHECK_CU(cuCtxGetCurrent(&current));
  unsigned type = 0, managed = 7, mapped = 0, legacy_ipc = 7, handle_types = 7, access = 0;
  int ordinal = -1;
  CUdeviceptr dev = 0, start = 0;
  size_t range = 0;
  unsigned long long id1 = 0, id2 = 0;
  const CUdeviceptr p = d.get() + 100;
  CHECK_CU(cuPointerGetAttribute(&type, CU_POINTER_ATTRIBUTE_MEMORY_TYPE, p));
  CHECK_CU(cuPointerGetAttribute(&ctx, CU_POINTER_ATTRIBUTE_CONTEXT, p));
  CHECK_CU(cuPointerGetAttribute(&dev, CU_POINTER_ATTRIBUTE_DEVICE_POINTER, p));
  CHECK_CU(cuPointerGetAttribute(&managed, CU_POINTER_ATTRIBUTE_IS_MANAGED, p));
  CHECK_CU(cuPointerGetAttribute(&ordinal, CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL, p));
  CHECK_CU(cuPointerGetAttribute(&mapped, CU_POINTER_ATTRIBUTE_MAPPED, p));
  CHECK_CU(cuPointerGetAttribute(&start, CU_POINTER_ATTRIBUTE_RANGE_START_ADDR, p));
  CHECK_CU(cuPointerGetAttribute(&range, CU_POINTER_ATTRIBUTE_RANGE_SIZE, p));
  CHECK_CU(cuPointerGetAttribute(&id1, CU_POINTER_ATTRIBUTE_BUFFER_ID, p));
  CHECK_CU(cuPointerGetAttribute(&legacy_ipc, CU_POINTER_ATTRIBUTE_IS_LEGACY_CUDA_IPC_CAPABLE, p));
  CHECK_CU(cuPointerGetAttribute(&handle_types, CU_POINTER_ATTRIBUTE_ALLOWED_HANDLE_TYPES, p));
  CHECK_CU(cuPointerGetAttribute(&access, CU_POINTER_ATTRIBUTE_ACCESS_FLAGS, p));
  std::printf("device pointer: type %u, context is current %s, device pointer is itself %s\n", type,
              YesNo(ctx == current), YesNo(dev == p));
  std::printf(
      "device pointer: managed %u, ordinal %d, mapped %u, range start is base %s, "
      "range size %zu\n",
      managed, ordinal, mapped, YesNo(start == d.get()), range);
  std::printf("device pointer: legacy ipc %u, handle types %u, access %u\n", legacy_ipc,
              handle_types, access);
  void* host_ptr = nullptr;
  std::printf(
      "device pointer host pointer: %s\n",
      ResultName(cuPointerGetAttribute(&host_ptr, CU_POINTER_ATTRIBUTE_HOST_POINTER, p)).c_str());
  DeviceBuffer other(64);
  CHECK_CU(cuPointerGetAttribute(&id2, CU_POINTER_ATTRIBUTE_BUFFER_ID, other.get()));
  std::printf("buffer ids differ: %s\n", YesNo(id1 != id2 && id1 != 0 && id2 != 0));
  const unsigned on = 1;
  std::printf("set sync memops: %s\n",
              ResultName(cuPointerSetAttribute(&on, CU_POINTER_ATTRIBUTE_SYNC_MEMOPS, p)).c_str());

  // Memory CUDA does not know: an error alone, null values among several.
  std::vector<char> plain(64);
  const CUdeviceptr hp = reinterpret_cast<CUdeviceptr>(plain.data());
  std::printf(
      "plain host memory type: %s\n",
      ResultName(cuPointerGetAttribute(&type, CU_POINTER_ATTRIBUTE_MEMORY_TYPE, hp)).c_str());
  CUpointer_attribute attrs[] = {
      CU_POINTER_ATTRIBUTE_MEMORY_TYPE,    CU_POINTER_ATTRIBUTE_CONTEXT,
      CU_POINTER_ATTRIBUTE_DEVICE_POINTER, CU_POINTER_ATTRIBUTE_HOST_POINTER,
      CU_POINTER_ATTRIBUTE_IS_MANAGED,     CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL};
  type = 99;
  managed = 99;
  ctx = current;
  dev = 1;
  host_ptr = &plain;
  ordinal = 99;
  void* data[] = {&type, &ctx, &dev, &host_ptr, &managed, &ordinal};
  CHECK_CU(cuPointerGetAttributes(6, attrs, data, hp));
  std::printf(
      "plain host memory attributes: type %u, context null %s, device pointer %llu, "
      "host pointer null %s, managed %u, ordinal %d\n",
      type, YesNo(ctx == nullptr), static_cast<unsigned long long>(dev), YesNo(host_ptr == nullptr),
      managed, ordinal);
}

void Occupancy(CUfunction fill) {
  int blocks = 0;
  CHECK_CU(cuOccupancyMaxActiveBlocksPerMultiprocessor(&blocks, fill, 256, 0));
  std::printf("fill_u32 active blocks (256 threads): %d\n", blocks);
  CHECK_CU(cuOccupancyMaxActiveBlocksPerMultiprocessorWithFlags(
      &blocks, fill, 128, 1024, CU_OCCUPANCY_DISABLE_CACHING_OVERRIDE));
  std::printf("fill_u32 active blocks (128 threads, 1 KiB): %d\n", blocks);
  CHECK_CU(cuOccupancyMaxActiveBlocksPerMultiprocessor(&blocks, fill, 256, 0));  // cached
  std::printf("fill_u32 active blocks again: %d\n", blocks);
  int grid = 0, block = 0;
  CHECK_CU(cuOccupancyMaxPotentialBlockSize(&grid, &block, fill, nullptr, 0, 0));
  std::printf("fill_u32 potential block size: %d (grid %d)\n", block, grid);
  CHECK_CU(cuOccupancyMaxPotentialBlockSize(&grid, &block, fill, FourBytesPerThread, 0, 0));
  std::printf("fill_u32 potential block size, 4 B/thread: %d (grid %d)\n", block, grid);
  CHECK_CU(cuOccupancyMaxPotentialBlockSizeWithFlags(&grid, &block, fill, nullptr, 0, 200, 0));
  std::printf("fill_u32 potential block size, limit 200: %d (grid %d)\n", block, grid);
  size_t smem = 0;
  CHECK_CU(cuOccupancyAvailableDynamicSMemPerBlock(&smem, fill, 2, 256));
  std::printf("fill_u32 dynamic shared memory for 2 blocks: %zu\n", smem);
  CUlaunchAttribute attr;
  std::memset(&attr, 0, sizeof(attr));
  attr.id = CU_LAUNCH_ATTRIBUTE_CLUSTER_DIMENSION;
  attr.value.clusterDim.x = 2;
  attr.value.clusterDim.y = 1;
  attr.value.clusterDim.z = 1;
  CUlaunchConfig config;
  std::memset(&config, 0, sizeof(config));
  config.gridDimX = 128;
  config.gridDimY = config.gridDimZ = 1;
  config.blockDimX = 128;
  config.blockDimY = config.blockDimZ = 1;
  config.attrs = &attr;
  config.numAttrs = 1;
  int clusters = 0;
  CHECK_CU(cuOccupancyMaxActiveClusters(&clusters, fill, &config));
  std::printf("fill_u32 active clusters of 2: %d\n", clusters);
  CHECK_CU(cuFuncSetCacheConfig(fill, CU_FUNC_CACHE_PREFER_SHARED));
  CHECK_CU(cuFuncSetCacheConfig(fill, CU_FUNC_CACHE_PREFER_NONE));
  std::printf("function cache configuration: ok\n");
}

void LimitsAndConfiguration() {
  // Only values this program set are printed: in woolyd's shared context a
  // limit another program raised stays raised.
  CHECK_CU(cuCtxSetLimit(CU_LIMIT_STACK_SIZE, 4096));
  size_t v = 0;
  CHECK_CU(cuCtxGetLimit(&v, CU_LIMIT_STACK_SIZE));
  std::printf("stack size after setting 4096: %zu\n", v);
  CHECK_CU(cuCtxGetLimit(&v, CU_LIMIT_MALLOC_HEAP_SIZE));
  std::printf("malloc heap at least 8 MiB: %s\n", YesNo(v >= (8u << 20)));
  CUfunc_cache cache = CU_FUNC_CACHE_PREFER_L1;
  CHECK_CU(cuCtxGetCacheConfig(&cache));
  std::printf("context cache configuration: %d\n", static_cast<int>(cache));
  CHECK_CU(cuCtxSetCacheConfig(CU_FUNC_CACHE_PREFER_EQUAL));
  CHECK_CU(cuCtxGetCacheConfig(&cache));
  std::printf("context cache configuration after set: %d\n", static_cast<int>(cache));
  CHECK_CU(cuCtxSetCacheConfig(CU_FUNC_CACHE_PREFER_NONE));

  CUdeviceptr p = 0;
  size_t pitch = 0;
  CHECK_CU(cuMemAllocPitch(&p, &pitch, 100, 4, 4));
  std::printf("pitch for 100-byte rows: %zu\n", pitch);
  CUdeviceptr bad_p = 0;  // the driver may write the outputs even on failure
  size_t bad_pitch = 0;
  std::printf("pitch with 3-byte elements: %s\n",
              ResultName(cuMemAllocPitch(&bad_p, &bad_pitch, 100, 4, 3)).c_str());
  CHECK_CU(cuMemsetD2D32(p, pitch, 0x12345678u, 25, 4));
  std::vector<unsigned> row(25);
  CHECK_CU(cuMemcpyDtoH(row.data(), p + 3 * pitch, 100));
  ExpectAll(row, 0x12345678u, "pitched row");
  CHECK_CU(cuMemFree(p));
}

void TensorMaps() {
  DeviceBuffer d(64 * 64 * 4);
  const cuuint64_t dims[2] = {64, 64};
  const cuuint64_t strides[1] = {64 * 4};
  const cuuint32_t box[2] = {32, 32};
  const cuuint32_t elem[2] = {1, 1};
  CUtensorMap map;
  CHECK_CU(cuTensorMapEncodeTiled(
      &map, CU_TENSOR_MAP_DATA_TYPE_FLOAT32, 2, reinterpret_cast<void*>(d.get()), dims, strides,
      box, elem, CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_NONE,
      CU_TENSOR_MAP_L2_PROMOTION_NONE, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE));
  CUtensorMap before = map;
  CHECK_CU(cuTensorMapReplaceAddress(&map, reinterpret_cast<void*>(d.get() + 1024)));
  std::printf("tensor map encoded, address replaced: changed %s\n",
              YesNo(std::memcmp(&before, &map, sizeof(map)) != 0));
  std::printf(
      "tensor map with an unaligned address: %s\n",
      ResultName(cuTensorMapReplaceAddress(&map, reinterpret_cast<void*>(d.get() + 4))).c_str());
}

}  // namespace

int main(int argc, char** argv) {
  Init(argc, argv, "memory_ext");
  CUmodule mod = LoadModule(argv[1]);
  CUfunction fill;
  CHECK_CU(cuModuleGetFunction(&fill, mod, "fill_u32"));
  AsyncAllocation(fill);
  Pools();
  VirtualMemory(fill);
  PinnedMemory();
  DevicePointerAttributes();
  Occupancy(fill);
  LimitsAndConfiguration();
  TensorMaps();
  CHECK_CU(cuModuleUnload(mod));
  Pass();
  return 0;
}
