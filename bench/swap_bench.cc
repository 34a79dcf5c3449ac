// swap_bench: the swap bandwidth and remap time of VmmPhysicalMemory
// (server/vmm_physical_memory.h, issue #6) against plain driver calls, all in
// one run, each printed as a ratio to native from the same run.
//
//   wooly_bench_swap [--fake] [--size-mib N] [--chunk-mib N] [--remap-gib N]
//                    [--small-chunk-mib N] [--reps N] [--device N] [--no-small-remap]
//
// Rows:
//  - native_d2h / native_h2d: one cuMemcpy{DtoH,HtoD}Async of --size-mib
//    (4 GiB) between cuMemAlloc memory and cuMemHostAlloc memory, on a
//    non-blocking stream, then cuStreamSynchronize;
//  - swap_out / swap_in: VmmPhysicalMemory::CopyToHost / CopyFromHost of the
//    same total in --chunk-mib (64 MiB) handles to pinned host-pool slots,
//    each copy complete before the next (as VmLayout runs them); target
//    >= 0.9x native;
//  - swap_out_full / swap_in_full: what a chunk's swap costs in all: copy,
//    unmap and release; create, copy and map (informational);
//  - remap_<chunk>: Unmap + Map (with cuMemSetAccess) of --remap-gib (14 GiB)
//    in --chunk-mib and in --small-chunk-mib (2 MiB) chunks, against the
//    same driver calls made directly; target <= 15 ms per 14 GiB at 64 MiB.
// Bandwidths and times are medians over --reps runs after a warm-up.
//
// Real mode runs on CudaBackend, which dlopens the driver as woolyd does
// ($WOOLY_REAL_LIBCUDA, else libcuda.so.1); the native rows call the same
// loaded driver's entry points directly (cuGetProcAddress), in the backend's
// context. --fake runs everything on the fake backend with tiny sizes, for
// CI: it proves the code runs, the figures mean nothing.
//
// Output: one {"bench":"swap",...} JSON line per row (after an "info" line),
// a Markdown table, then "bench done". Exit 0 when every row ran, 1 on an
// error, 77 when no GPU backend can be opened (real mode).
#include <cuda.h>
#include <cudaTypedefs.h>
#include <dlfcn.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "wooly/server/cu_status.h"
#include "wooly/server/cuda_backend.h"
#include "wooly/server/gpu_backend.h"
#include "wooly/server/vmm_physical_memory.h"
#if WOOLY_SWAP_BENCH_FAKE
#include "wooly/fake/fake_backend.h"
#endif

namespace wooly::bench {
namespace {

using server::DevPtr;
using server::GpuBackend;
using server::Handle;
using server::VmmPhysicalMemory;

constexpr uint64_t kMiB = uint64_t{1} << 20;
constexpr uint64_t kGiB = uint64_t{1} << 30;

#define BENCH_RETURN_IF_ERROR(expr)           \
  do {                                        \
    if (absl::Status _s = (expr); !_s.ok()) { \
      return _s;                              \
    }                                         \
  } while (0)
#define BENCH_ASSIGN_OR_RETURN(lhs, expr)       \
  auto lhs##_or = (expr);                       \
  if (!lhs##_or.ok()) return lhs##_or.status(); \
  auto lhs = *std::move(lhs##_or)

double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

double Median(std::vector<double> v) {
  if (v.empty()) return NAN;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 == 1 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

double GBps(uint64_t bytes, double seconds) { return static_cast<double>(bytes) / seconds / 1e9; }

// ---------------------------------------------------------------- options

struct Config {
  bool fake = false;
  uint64_t size = 4 * kGiB;
  uint64_t chunk = 64 * kMiB;
  uint64_t remap = 14 * kGiB;
  uint64_t small_chunk = 2 * kMiB;
  int reps = 5;
  int device = 0;
  bool small_remap = true;
};

void Usage(const char* argv0) {
  std::fprintf(stderr,
               "usage: %s [--fake] [--size-mib N] [--chunk-mib N] [--remap-gib N]\n"
               "          [--small-chunk-mib N] [--reps N] [--device N] [--no-small-remap]\n"
               "  --fake             the fake backend with tiny sizes (CI; not a measurement)\n"
               "  --size-mib N       swap and native copy total (default 4096)\n"
               "  --chunk-mib N      swap and remap chunk (default 64)\n"
               "  --remap-gib N      remap total (default 14; shrunk to fit free memory)\n"
               "  --small-chunk-mib  the small remap chunk (default 2)\n"
               "  --reps N           timed runs per row, median reported (default 5)\n",
               argv0);
}

bool ParseConfig(int argc, char** argv, Config* c) {
  bool fake = false;
  for (int i = 1; i < argc; ++i) fake |= std::strcmp(argv[i], "--fake") == 0;
  if (fake) {  // tiny defaults; flags below still override
    c->fake = true;
    c->size = 16 * kMiB;
    c->chunk = 4 * kMiB;
    c->remap = 32 * kMiB;
    c->reps = 2;
  }
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto num = [&](uint64_t* out, uint64_t unit) {
      if (i + 1 >= argc) return false;
      char* end = nullptr;
      const unsigned long long v = std::strtoull(argv[++i], &end, 10);
      if (end == nullptr || *end != '\0' || v == 0) return false;
      *out = v * unit;
      return true;
    };
    uint64_t v = 0;
    if (a == "--fake") {
    } else if (a == "--no-small-remap") {
      c->small_remap = false;
    } else if (a == "--size-mib") {
      if (!num(&c->size, kMiB)) return false;
    } else if (a == "--chunk-mib") {
      if (!num(&c->chunk, kMiB)) return false;
    } else if (a == "--remap-gib") {
      if (!num(&c->remap, kGiB)) return false;
    } else if (a == "--remap-mib") {  // for tiny runs
      if (!num(&c->remap, kMiB)) return false;
    } else if (a == "--small-chunk-mib") {
      if (!num(&c->small_chunk, kMiB)) return false;
    } else if (a == "--reps") {
      if (!num(&v, 1)) return false;
      c->reps = static_cast<int>(v);
    } else if (a == "--device") {
      if (i + 1 >= argc) return false;
      c->device = std::atoi(argv[++i]);
    } else {
      return false;
    }
  }
  return c->chunk <= c->size && c->small_chunk <= c->remap && c->chunk <= c->remap;
}

// ---------------------------------------------------------------- native

// The baseline: the same operations without VmmPhysicalMemory in between.
class Native {
 public:
  virtual ~Native() = default;
  virtual std::string Name() const = 0;
  virtual absl::StatusOr<DevPtr> DevAlloc(uint64_t bytes) = 0;
  virtual absl::Status DevFree(DevPtr p) = 0;
  // Pinned host memory.
  virtual absl::StatusOr<void*> HostAlloc(uint64_t bytes) = 0;
  virtual absl::Status HostFree(void* p) = 0;
  virtual absl::StatusOr<Handle> StreamCreate() = 0;
  virtual absl::Status StreamDestroy(Handle s) = 0;
  virtual absl::Status Sync(Handle s) = 0;
  // Queued on `s`.
  virtual absl::Status DtoH(void* dst, DevPtr src, uint64_t bytes, Handle s) = 0;
  virtual absl::Status HtoD(DevPtr dst, const void* src, uint64_t bytes, Handle s) = 0;
  virtual absl::StatusOr<DevPtr> Reserve(uint64_t bytes, uint64_t alignment) = 0;
  virtual absl::Status FreeReserve(DevPtr p, uint64_t bytes) = 0;
  virtual absl::StatusOr<Handle> Create(uint64_t bytes) = 0;
  virtual absl::Status Release(Handle h) = 0;
  // cuMemMap + cuMemSetAccess (read-write).
  virtual absl::Status Map(DevPtr va, uint64_t bytes, Handle h) = 0;
  virtual absl::Status Unmap(DevPtr va, uint64_t bytes) = 0;
};

// Through GpuBackend: the fake, or the real driver when its entry points
// cannot be resolved directly.
class BackendNative : public Native {
 public:
  BackendNative(GpuBackend* b, int device) : b_(b), device_(device) {}
  std::string Name() const override { return "GpuBackend calls"; }
  absl::StatusOr<DevPtr> DevAlloc(uint64_t bytes) override { return b_->MemAlloc(bytes); }
  absl::Status DevFree(DevPtr p) override { return b_->MemFree(p); }
  absl::StatusOr<void*> HostAlloc(uint64_t bytes) override {
    void* p = std::aligned_alloc(4096, (bytes + 4095) / 4096 * 4096);
    if (p == nullptr) return absl::ResourceExhaustedError("host buffer");
    if (absl::Status s = b_->HostRegister(p, bytes); !s.ok()) {
      std::free(p);
      return s;
    }
    return p;
  }
  absl::Status HostFree(void* p) override {
    absl::Status s = b_->HostUnregister(p);
    std::free(p);
    return s;
  }
  absl::StatusOr<Handle> StreamCreate() override {
    return b_->StreamCreate(CU_STREAM_NON_BLOCKING, 0);
  }
  absl::Status StreamDestroy(Handle s) override { return b_->StreamDestroy(s); }
  absl::Status Sync(Handle s) override { return b_->StreamSynchronize(s); }
  absl::Status DtoH(void* dst, DevPtr src, uint64_t bytes, Handle s) override {
    return b_->MemcpyDtoHRegistered(dst, src, bytes, s, true);
  }
  absl::Status HtoD(DevPtr dst, const void* src, uint64_t bytes, Handle s) override {
    return b_->MemcpyHtoDRegistered(dst, src, bytes, s, true);
  }
  absl::StatusOr<DevPtr> Reserve(uint64_t bytes, uint64_t alignment) override {
    return b_->MemAddressReserve(bytes, alignment, 0, 0);
  }
  absl::Status FreeReserve(DevPtr p, uint64_t bytes) override {
    return b_->MemAddressFree(p, bytes);
  }
  absl::StatusOr<Handle> Create(uint64_t bytes) override {
    wire::MemAllocProps p;
    p.type = CU_MEM_ALLOCATION_TYPE_PINNED;
    p.location_type = CU_MEM_LOCATION_TYPE_DEVICE;
    p.location_id = device_;
    return b_->MemCreate(bytes, p, 0);
  }
  absl::Status Release(Handle h) override { return b_->MemRelease(h); }
  absl::Status Map(DevPtr va, uint64_t bytes, Handle h) override {
    if (absl::Status s = b_->MemMap(va, bytes, 0, h, 0); !s.ok()) return s;
    server::MemAccessDesc d;
    d.location_type = CU_MEM_LOCATION_TYPE_DEVICE;
    d.location_id = device_;
    d.flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE;
    return b_->MemSetAccess(va, bytes, absl::MakeConstSpan(&d, 1));
  }
  absl::Status Unmap(DevPtr va, uint64_t bytes) override { return b_->MemUnmap(va, bytes); }

 private:
  GpuBackend* b_;
  int device_;
};

// The driver CudaBackend loaded, called directly: no Wooly code between the
// benchmark and the driver. The context is the backend's (BindThread made it
// current on this thread).
class DriverNative : public Native {
 public:
  static absl::StatusOr<std::unique_ptr<DriverNative>> Open(int device) {
    std::vector<std::string> names;
    if (const char* env = std::getenv(server::kEnvRealLibcuda); env != nullptr && *env != '\0') {
      names.emplace_back(env);
    }
    names.emplace_back("libcuda.so.1");
    names.emplace_back("/usr/local/nvidia/lib64/libcuda.so.1");
    void* lib = nullptr;
    for (const std::string& n : names) {
      // The backend loaded it already: take that copy, never a second one.
      if ((lib = ::dlopen(n.c_str(), RTLD_NOW | RTLD_NOLOAD)) != nullptr) break;
    }
    if (lib == nullptr) return absl::NotFoundError("the backend's libcuda is not loaded");
    auto get = reinterpret_cast<PFN_cuGetProcAddress_v12000>(::dlsym(lib, "cuGetProcAddress_v2"));
    if (get == nullptr) return absl::NotFoundError("no cuGetProcAddress_v2");
    auto d = std::unique_ptr<DriverNative>(new DriverNative(device));
    auto resolve = [&](const char* name, void** out) -> absl::Status {
      CUdriverProcAddressQueryResult found = CU_GET_PROC_ADDRESS_SYMBOL_NOT_FOUND;
      if (get(name, out, 12000, CU_GET_PROC_ADDRESS_DEFAULT, &found) != CUDA_SUCCESS ||
          found != CU_GET_PROC_ADDRESS_SUCCESS || *out == nullptr) {
        return absl::NotFoundError(absl::StrCat("driver entry point ", name));
      }
      return absl::OkStatus();
    };
#define BENCH_RESOLVE(name) \
  BENCH_RETURN_IF_ERROR(resolve(#name, reinterpret_cast<void**>(&d->name##_)))
    BENCH_RESOLVE(cuMemAlloc);
    BENCH_RESOLVE(cuMemFree);
    BENCH_RESOLVE(cuMemHostAlloc);
    BENCH_RESOLVE(cuMemFreeHost);
    BENCH_RESOLVE(cuStreamCreate);
    BENCH_RESOLVE(cuStreamDestroy);
    BENCH_RESOLVE(cuStreamSynchronize);
    BENCH_RESOLVE(cuMemcpyDtoHAsync);
    BENCH_RESOLVE(cuMemcpyHtoDAsync);
    BENCH_RESOLVE(cuMemAddressReserve);
    BENCH_RESOLVE(cuMemAddressFree);
    BENCH_RESOLVE(cuMemCreate);
    BENCH_RESOLVE(cuMemRelease);
    BENCH_RESOLVE(cuMemMap);
    BENCH_RESOLVE(cuMemUnmap);
    BENCH_RESOLVE(cuMemSetAccess);
#undef BENCH_RESOLVE
    return d;
  }

  std::string Name() const override { return "driver calls"; }
  absl::StatusOr<DevPtr> DevAlloc(uint64_t bytes) override {
    CUdeviceptr p = 0;
    BENCH_RETURN_IF_ERROR(C(cuMemAlloc_(&p, bytes), "cuMemAlloc"));
    return static_cast<DevPtr>(p);
  }
  absl::Status DevFree(DevPtr p) override { return C(cuMemFree_(p), "cuMemFree"); }
  absl::StatusOr<void*> HostAlloc(uint64_t bytes) override {
    void* p = nullptr;
    BENCH_RETURN_IF_ERROR(
        C(cuMemHostAlloc_(&p, bytes, CU_MEMHOSTALLOC_PORTABLE), "cuMemHostAlloc"));
    return p;
  }
  absl::Status HostFree(void* p) override { return C(cuMemFreeHost_(p), "cuMemFreeHost"); }
  absl::StatusOr<Handle> StreamCreate() override {
    CUstream s = nullptr;
    BENCH_RETURN_IF_ERROR(C(cuStreamCreate_(&s, CU_STREAM_NON_BLOCKING), "cuStreamCreate"));
    return reinterpret_cast<Handle>(s);
  }
  absl::Status StreamDestroy(Handle s) override {
    return C(cuStreamDestroy_(reinterpret_cast<CUstream>(s)), "cuStreamDestroy");
  }
  absl::Status Sync(Handle s) override {
    return C(cuStreamSynchronize_(reinterpret_cast<CUstream>(s)), "cuStreamSynchronize");
  }
  absl::Status DtoH(void* dst, DevPtr src, uint64_t bytes, Handle s) override {
    return C(cuMemcpyDtoHAsync_(dst, src, bytes, reinterpret_cast<CUstream>(s)),
             "cuMemcpyDtoHAsync");
  }
  absl::Status HtoD(DevPtr dst, const void* src, uint64_t bytes, Handle s) override {
    return C(cuMemcpyHtoDAsync_(dst, src, bytes, reinterpret_cast<CUstream>(s)),
             "cuMemcpyHtoDAsync");
  }
  absl::StatusOr<DevPtr> Reserve(uint64_t bytes, uint64_t alignment) override {
    CUdeviceptr p = 0;
    BENCH_RETURN_IF_ERROR(
        C(cuMemAddressReserve_(&p, bytes, alignment, 0, 0), "cuMemAddressReserve"));
    return static_cast<DevPtr>(p);
  }
  absl::Status FreeReserve(DevPtr p, uint64_t bytes) override {
    return C(cuMemAddressFree_(p, bytes), "cuMemAddressFree");
  }
  absl::StatusOr<Handle> Create(uint64_t bytes) override {
    CUmemAllocationProp p;
    std::memset(&p, 0, sizeof(p));
    p.type = CU_MEM_ALLOCATION_TYPE_PINNED;
    p.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
    p.location.id = device_;
    CUmemGenericAllocationHandle h = 0;
    BENCH_RETURN_IF_ERROR(C(cuMemCreate_(&h, bytes, &p, 0), "cuMemCreate"));
    return static_cast<Handle>(h);
  }
  absl::Status Release(Handle h) override { return C(cuMemRelease_(h), "cuMemRelease"); }
  absl::Status Map(DevPtr va, uint64_t bytes, Handle h) override {
    BENCH_RETURN_IF_ERROR(C(cuMemMap_(va, bytes, 0, h, 0), "cuMemMap"));
    CUmemAccessDesc d;
    std::memset(&d, 0, sizeof(d));
    d.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
    d.location.id = device_;
    d.flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE;
    return C(cuMemSetAccess_(va, bytes, &d, 1), "cuMemSetAccess");
  }
  absl::Status Unmap(DevPtr va, uint64_t bytes) override {
    return C(cuMemUnmap_(va, bytes), "cuMemUnmap");
  }

 private:
  explicit DriverNative(int device) : device_(device) {}
  static absl::Status C(CUresult r, const char* what) { return server::CuError(r, what); }

  int device_;
  PFN_cuMemAlloc_v3020 cuMemAlloc_ = nullptr;
  PFN_cuMemFree_v3020 cuMemFree_ = nullptr;
  PFN_cuMemHostAlloc_v2020 cuMemHostAlloc_ = nullptr;
  PFN_cuMemFreeHost_v2000 cuMemFreeHost_ = nullptr;
  PFN_cuStreamCreate_v2000 cuStreamCreate_ = nullptr;
  PFN_cuStreamDestroy_v4000 cuStreamDestroy_ = nullptr;
  PFN_cuStreamSynchronize_v2000 cuStreamSynchronize_ = nullptr;
  PFN_cuMemcpyDtoHAsync_v3020 cuMemcpyDtoHAsync_ = nullptr;
  PFN_cuMemcpyHtoDAsync_v3020 cuMemcpyHtoDAsync_ = nullptr;
  PFN_cuMemAddressReserve_v10020 cuMemAddressReserve_ = nullptr;
  PFN_cuMemAddressFree_v10020 cuMemAddressFree_ = nullptr;
  PFN_cuMemCreate_v10020 cuMemCreate_ = nullptr;
  PFN_cuMemRelease_v10020 cuMemRelease_ = nullptr;
  PFN_cuMemMap_v10020 cuMemMap_ = nullptr;
  PFN_cuMemUnmap_v10020 cuMemUnmap_ = nullptr;
  PFN_cuMemSetAccess_v10020 cuMemSetAccess_ = nullptr;
};

// ---------------------------------------------------------------- report

struct Row {
  std::string name;
  std::string label;
  std::string unit;     // "GB/s" or "ms"
  double value = NAN;   // VmmPhysicalMemory
  double native = NAN;  // the same run's native figure (NAN: none)
  bool higher_is_better = true;
  std::string target;  // wording; empty: informational
  bool met = true;
  std::string note;
  bool native_only = false;  // a baseline row: no VmmPhysicalMemory figure
};

Row MakeRow(std::string name, std::string label, std::string unit, double value, double native) {
  Row r;
  r.name = std::move(name);
  r.label = std::move(label);
  r.unit = std::move(unit);
  r.value = value;
  r.native = native;
  return r;
}

std::string Num(double v) {
  if (!std::isfinite(v)) return "null";
  return absl::StrFormat("%.6g", v);
}

double Ratio(const Row& r) {
  if (r.native_only) return NAN;
  if (!std::isfinite(r.native) || !std::isfinite(r.value) || r.value == 0) return NAN;
  return r.higher_is_better ? r.value / r.native : r.native / r.value;
}

void Emit(const Row& r, bool fake) {
  std::string line = absl::StrCat("{\"bench\":\"swap\",\"name\":\"", r.name, "\",\"unit\":\"",
                                  r.unit, "\",\"value\":", Num(r.value),
                                  ",\"native\":", Num(r.native), ",\"ratio\":", Num(Ratio(r)),
                                  ",\"higher_is_better\":", r.higher_is_better ? "true" : "false");
  if (!r.target.empty() && !fake) {
    absl::StrAppend(&line, ",\"target\":\"", r.target, "\",\"met\":", r.met ? "true" : "false");
  }
  absl::StrAppend(&line, "}");
  std::printf("%s\n", line.c_str());
  std::fflush(stdout);
}

std::string Cell(double v, const std::string& unit) {
  if (!std::isfinite(v)) return "-";
  return absl::StrFormat("%.2f %s", v, unit);
}

void PrintTable(const std::vector<Row>& rows, const Config& c, const std::string& device,
                const std::string& native_name, const std::vector<std::string>& notes) {
  std::printf("\n### VmmPhysicalMemory swap and remap (%s)\n\n", device.c_str());
  std::printf("Native: %s, same run. Ratio > 1.0 means better than native. Medians of %d runs.\n\n",
              native_name.c_str(), c.reps);
  std::printf("| row | native | VmmPhysicalMemory | ratio | target |\n");
  std::printf("|---|---|---|---|---|\n");
  for (const Row& r : rows) {
    std::string target = "-";
    if (!r.target.empty()) {
      target = c.fake ? r.target + ": n/a (fake)"
                      : absl::StrCat(r.target, ": ", r.met ? "met" : "NOT MET",
                                     r.note.empty() ? "" : " (" + r.note + ")");
    }
    const double ratio = Ratio(r);
    std::printf("| %s | %s | %s | %s | %s |\n", r.label.c_str(), Cell(r.native, r.unit).c_str(),
                r.native_only ? "-" : Cell(r.value, r.unit).c_str(),
                std::isfinite(ratio) ? absl::StrFormat("%.2fx", ratio).c_str() : "-",
                target.c_str());
  }
  for (const std::string& n : notes) std::printf("\n- %s", n.c_str());
  std::printf("\n");
}

std::string Size(uint64_t b) {
  return b % kGiB == 0 ? absl::StrCat(b / kGiB, " GiB") : absl::StrCat(b / kMiB, " MiB");
}

// ---------------------------------------------------------------- phases

class Bench {
 public:
  Bench(Config c, GpuBackend* backend, Native* native)
      : c_(c), backend_(backend), native_(native) {}

  std::vector<Row>& rows() { return rows_; }
  std::vector<std::string>& notes() { return notes_; }

  // (a) Native pinned copy bandwidth, one copy of the whole size.
  absl::Status NativeCopies() {
    BENCH_ASSIGN_OR_RETURN(dev, native_->DevAlloc(c_.size));
    BENCH_ASSIGN_OR_RETURN(host, native_->HostAlloc(c_.size));
    BENCH_ASSIGN_OR_RETURN(stream, native_->StreamCreate());
    std::memset(host, 0x5A, c_.size);
    std::vector<double> d2h, h2d;
    absl::Status s;
    for (int i = -1; i < c_.reps && s.ok(); ++i) {  // i == -1: warm-up
      double t0 = Now();
      s = native_->HtoD(dev, host, c_.size, stream);
      if (s.ok()) s = native_->Sync(stream);
      if (i >= 0) h2d.push_back(Now() - t0);
      if (!s.ok()) break;
      t0 = Now();
      s = native_->DtoH(host, dev, c_.size, stream);
      if (s.ok()) s = native_->Sync(stream);
      if (i >= 0) d2h.push_back(Now() - t0);
    }
    (void)native_->StreamDestroy(stream);
    (void)native_->HostFree(host);
    (void)native_->DevFree(dev);
    BENCH_RETURN_IF_ERROR(s);
    native_d2h_ = GBps(c_.size, Median(d2h));
    native_h2d_ = GBps(c_.size, Median(h2d));
    for (auto [name, label, v] :
         {std::tuple("native_d2h_pinned", "native pinned D2H", native_d2h_),
          std::tuple("native_h2d_pinned", "native pinned H2D", native_h2d_)}) {
      Row r = MakeRow(name, absl::StrCat(label, ", one copy of ", Size(c_.size)), "GB/s", v, v);
      r.native_only = true;
      Add(r);
    }
    return absl::OkStatus();
  }

  // (b) Swap-out and swap-in through VmmPhysicalMemory in chunks.
  absl::Status Swap() {
    server::VmmOptions o;
    o.device_ordinal = c_.device;
    o.host_arena_bytes = std::min<uint64_t>(kGiB, c_.size);
    o.host_pool_max_bytes = c_.size + o.host_arena_bytes;
    BENCH_ASSIGN_OR_RETURN(vmm, VmmPhysicalMemory::Open(backend_, o));
    if (c_.chunk % vmm->granularity() != 0) {
      return absl::InvalidArgumentError("--chunk-mib is not a multiple of the granularity");
    }
    const uint64_t n = c_.size / c_.chunk;
    const uint64_t total = n * c_.chunk;
    // Registration is paid once, ahead of need: timed apart.
    double t0 = Now();
    BENCH_RETURN_IF_ERROR(vmm->GrowHostPool(total));
    const double reg = Now() - t0;
    notes_.push_back(
        absl::StrFormat("registering the %s host pool took %.0f ms (%.1f GB/s), "
                        "once, before the swaps",
                        Size(total), reg * 1e3, GBps(total, reg)));
    std::vector<memory::PhysHandle> handles(n);
    std::vector<memory::HostSlot> slots(n);
    for (uint64_t i = 0; i < n; ++i) {
      BENCH_ASSIGN_OR_RETURN(h, vmm->Create(c_.chunk));
      BENCH_ASSIGN_OR_RETURN(sl, vmm->AllocHost(c_.chunk));
      handles[i] = h;
      slots[i] = sl;
      BENCH_RETURN_IF_ERROR(vmm->Write(h, 0, Marker(i)));
    }
    std::vector<double> out_t, in_t;
    for (int r = -1; r < c_.reps; ++r) {
      t0 = Now();
      for (uint64_t i = 0; i < n; ++i) {
        BENCH_RETURN_IF_ERROR(vmm->CopyToHost(handles[i], slots[i], c_.chunk));
      }
      if (r >= 0) out_t.push_back(Now() - t0);
      t0 = Now();
      for (uint64_t i = 0; i < n; ++i) {
        BENCH_RETURN_IF_ERROR(vmm->CopyFromHost(slots[i], handles[i], c_.chunk));
      }
      if (r >= 0) in_t.push_back(Now() - t0);
    }
    for (uint64_t i = 0; i < n; ++i) {
      BENCH_RETURN_IF_ERROR(CheckMarker(*vmm, handles[i], i));
      BENCH_ASSIGN_OR_RETURN(host, vmm->SlotAddress(slots[i]));
      const std::vector<uint8_t> m = Marker(i);
      if (std::memcmp(host, m.data(), m.size()) != 0) {
        return absl::DataLossError(absl::StrCat("host slot ", i, " lost its bytes"));
      }
    }
    const std::string chunks = absl::StrCat(", ", Size(total), " in ", Size(c_.chunk), " chunks");
    Row out = MakeRow("swap_out", "swap-out (CopyToHost)" + chunks, "GB/s",
                      GBps(total, Median(out_t)), native_d2h_);
    out.target = ">= 0.9x native";
    out.met = Ratio(out) >= 0.9;
    Add(out);
    Row in = MakeRow("swap_in", "swap-in (CopyFromHost)" + chunks, "GB/s",
                     GBps(total, Median(in_t)), native_h2d_);
    in.target = ">= 0.9x native";
    in.met = Ratio(in) >= 0.9;
    Add(in);

    // Whole chunk swaps as VmLayout runs them, at stable client addresses.
    BENCH_ASSIGN_OR_RETURN(base, vmm->ReserveAddress(total, 0));
    for (uint64_t i = 0; i < n; ++i) {
      BENCH_RETURN_IF_ERROR(
          vmm->Map(base + i * c_.chunk, c_.chunk, handles[i], memory::Access::kReadWrite));
    }
    out_t.clear();
    in_t.clear();
    for (int r = 0; r < c_.reps; ++r) {
      t0 = Now();
      for (uint64_t i = 0; i < n; ++i) {
        BENCH_RETURN_IF_ERROR(vmm->CopyToHost(handles[i], slots[i], c_.chunk));
        BENCH_RETURN_IF_ERROR(vmm->Unmap(base + i * c_.chunk, c_.chunk));
        BENCH_RETURN_IF_ERROR(vmm->Release(handles[i]));
      }
      out_t.push_back(Now() - t0);
      t0 = Now();
      for (uint64_t i = 0; i < n; ++i) {
        BENCH_ASSIGN_OR_RETURN(h, vmm->Create(c_.chunk));
        handles[i] = h;
        BENCH_RETURN_IF_ERROR(vmm->CopyFromHost(slots[i], h, c_.chunk));
        BENCH_RETURN_IF_ERROR(
            vmm->Map(base + i * c_.chunk, c_.chunk, h, memory::Access::kReadWrite));
      }
      in_t.push_back(Now() - t0);
    }
    // The client's pointers still show its bytes.
    for (uint64_t i = 0; i < n; ++i) {
      const std::vector<uint8_t> m = Marker(i);
      std::vector<uint8_t> back(m.size());
      BENCH_RETURN_IF_ERROR(
          backend_->MemcpyDtoH(back.data(), base + i * c_.chunk, back.size(), 0, false));
      if (back != m) return absl::DataLossError(absl::StrCat("chunk ", i, " lost its bytes"));
    }
    Add(MakeRow("swap_out_full", "swap-out + unmap + release" + chunks, "GB/s",
                GBps(total, Median(out_t)), native_d2h_));
    Add(MakeRow("swap_in_full", "create + swap-in + map" + chunks, "GB/s",
                GBps(total, Median(in_t)), native_h2d_));
    for (uint64_t i = 0; i < n; ++i) {
      BENCH_RETURN_IF_ERROR(vmm->Unmap(base + i * c_.chunk, c_.chunk));
      BENCH_RETURN_IF_ERROR(vmm->Release(handles[i]));
      BENCH_RETURN_IF_ERROR(vmm->FreeHost(slots[i]));
    }
    return vmm->FreeAddress(base, total);
  }

  // (c) Unmap + Map of `total` in `chunk` chunks: native, then through
  // VmmPhysicalMemory.
  absl::Status Remap(uint64_t chunk, bool with_target) {
    uint64_t total = c_.remap / chunk * chunk;
    if (absl::StatusOr<server::MemInfo> mi = backend_->MemGetInfo(); mi.ok() && !c_.fake) {
      const uint64_t margin = 2 * kGiB;
      if (mi->free < total + margin) {
        const uint64_t fit = mi->free > margin ? (mi->free - margin) / chunk * chunk : 0;
        notes_.push_back(
            absl::StrFormat("remap in %s chunks: %s does not fit in %d MiB free; "
                            "measured %s and scaled to 14 GiB",
                            Size(chunk), Size(total), mi->free >> 20, Size(fit)));
        total = fit;
      }
    }
    if (total == 0) return absl::ResourceExhaustedError("no device memory to remap");
    const uint64_t n = total / chunk;
    const double per14 = static_cast<double>(14 * kGiB) / static_cast<double>(total);

    // Native.
    std::vector<double> native_t;
    {
      BENCH_ASSIGN_OR_RETURN(base, native_->Reserve(total, 0));
      std::vector<Handle> hs;
      absl::Status s;
      for (uint64_t i = 0; i < n && s.ok(); ++i) {
        absl::StatusOr<Handle> h = native_->Create(chunk);
        if (!h.ok()) {
          s = h.status();
          break;
        }
        hs.push_back(*h);
        s = native_->Map(base + i * chunk, chunk, *h);
      }
      for (int r = -1; r < c_.reps && s.ok(); ++r) {
        const double t0 = Now();
        for (uint64_t i = 0; i < n && s.ok(); ++i) s = native_->Unmap(base + i * chunk, chunk);
        for (uint64_t i = 0; i < n && s.ok(); ++i) s = native_->Map(base + i * chunk, chunk, hs[i]);
        if (r >= 0) native_t.push_back(Now() - t0);
      }
      for (uint64_t i = 0; i < hs.size(); ++i) {
        (void)native_->Unmap(base + i * chunk, chunk);
        (void)native_->Release(hs[i]);
      }
      (void)native_->FreeReserve(base, total);
      BENCH_RETURN_IF_ERROR(s);
    }

    // VmmPhysicalMemory.
    std::vector<double> vmm_t;
    {
      server::VmmOptions o;
      o.device_ordinal = c_.device;
      BENCH_ASSIGN_OR_RETURN(vmm, VmmPhysicalMemory::Open(backend_, o));
      BENCH_ASSIGN_OR_RETURN(base, vmm->ReserveAddress(total, 0));
      std::vector<memory::PhysHandle> hs;
      for (uint64_t i = 0; i < n; ++i) {
        BENCH_ASSIGN_OR_RETURN(h, vmm->Create(chunk));
        hs.push_back(h);
        BENCH_RETURN_IF_ERROR(vmm->Map(base + i * chunk, chunk, h, memory::Access::kReadWrite));
      }
      for (int r = -1; r < c_.reps; ++r) {
        const double t0 = Now();
        for (uint64_t i = 0; i < n; ++i) BENCH_RETURN_IF_ERROR(vmm->Unmap(base + i * chunk, chunk));
        for (uint64_t i = 0; i < n; ++i) {
          BENCH_RETURN_IF_ERROR(
              vmm->Map(base + i * chunk, chunk, hs[i], memory::Access::kReadWrite));
        }
        if (r >= 0) vmm_t.push_back(Now() - t0);
      }
      for (uint64_t i = 0; i < n; ++i) {
        BENCH_RETURN_IF_ERROR(vmm->Unmap(base + i * chunk, chunk));
        BENCH_RETURN_IF_ERROR(vmm->Release(hs[i]));
      }
      BENCH_RETURN_IF_ERROR(vmm->FreeAddress(base, total));
    }
    Row r =
        MakeRow(absl::StrCat("remap_", chunk / kMiB, "MiB"),
                absl::StrCat("remap (unmap + map) ", Size(total), " in ", Size(chunk), " chunks"),
                "ms", Median(vmm_t) * 1e3, Median(native_t) * 1e3);
    r.higher_is_better = false;
    if (with_target) {
      r.target = "<= 15 ms per 14 GiB";
      r.met = r.value * per14 <= 15.0;
      r.note = absl::StrFormat("%.1f ms per 14 GiB", r.value * per14);
    } else {
      r.note = absl::StrFormat("%.1f ms per 14 GiB", r.value * per14);
      r.target = "";
      notes_.push_back(absl::StrFormat("%s: %.1f ms per 14 GiB (native %.1f ms)", r.label,
                                       r.value * per14, r.native * per14));
    }
    Add(r);
    return absl::OkStatus();
  }

 private:
  // A few KiB that identify chunk `i`, written at its start.
  static std::vector<uint8_t> Marker(uint64_t i) {
    std::vector<uint8_t> m(4096);
    uint64_t x = 0x9E3779B97F4A7C15ull * (i + 1);
    for (uint8_t& b : m) {
      x ^= x << 13;
      x ^= x >> 7;
      x ^= x << 17;
      b = static_cast<uint8_t>(x);
    }
    return m;
  }
  static absl::Status CheckMarker(VmmPhysicalMemory& vmm, memory::PhysHandle h, uint64_t i) {
    const std::vector<uint8_t> m = Marker(i);
    std::vector<uint8_t> back(m.size());
    BENCH_RETURN_IF_ERROR(vmm.Read(h, 0, back));
    if (back != m) return absl::DataLossError(absl::StrCat("chunk ", i, " lost its bytes"));
    return absl::OkStatus();
  }
  void Add(Row r) {
    Emit(r, c_.fake);
    rows_.push_back(std::move(r));
  }

  Config c_;
  GpuBackend* backend_;
  Native* native_;
  double native_d2h_ = NAN;
  double native_h2d_ = NAN;
  std::vector<Row> rows_;
  std::vector<std::string> notes_;
};

int Run(const Config& c) {
  std::unique_ptr<GpuBackend> backend;
  if (c.fake) {
#if WOOLY_SWAP_BENCH_FAKE
    backend = std::make_unique<fake::FakeBackend>();
#else
    std::printf("FAIL swap_bench: built without the fake backend\n");
    return 1;
#endif
  } else {
    absl::StatusOr<std::unique_ptr<GpuBackend>> b = server::CreateCudaBackend(c.device);
    if (!b.ok()) {
      std::printf("SKIP swap_bench: no usable GPU: %s\n", b.status().ToString().c_str());
      return 77;
    }
    backend = std::move(*b);
  }
  if (absl::Status s = backend->BindThread(); !s.ok()) {
    std::printf("FAIL swap_bench: BindThread: %s\n", s.ToString().c_str());
    return 1;
  }
  std::string device = backend->Name();
  if (absl::StatusOr<wire::DeviceInfo> info = backend->GetDeviceInfo(); info.ok()) {
    device = info->name;
  }
  std::unique_ptr<Native> native;
  std::vector<std::string> early_notes;
  if (!c.fake) {
    absl::StatusOr<std::unique_ptr<DriverNative>> d = DriverNative::Open(c.device);
    if (d.ok()) {
      native = std::move(*d);
    } else {
      early_notes.push_back("native rows through GpuBackend: " + d.status().ToString());
    }
  }
  if (!native) native = std::make_unique<BackendNative>(backend.get(), c.device);
  std::printf(
      "{\"bench\":\"swap\",\"info\":{\"backend\":\"%s\",\"device\":\"%s\",\"native\":\"%s\","
      "\"size\":%llu,\"chunk\":%llu,\"remap\":%llu,\"small_chunk\":%llu,\"reps\":%d}}\n",
      backend->Name().c_str(), device.c_str(), native->Name().c_str(),
      static_cast<unsigned long long>(c.size), static_cast<unsigned long long>(c.chunk),
      static_cast<unsigned long long>(c.remap), static_cast<unsigned long long>(c.small_chunk),
      c.reps);
  std::fflush(stdout);

  Bench bench(c, backend.get(), native.get());
  for (std::string& n : early_notes) bench.notes().push_back(std::move(n));
  if (c.fake)
    bench.notes().push_back("fake backend, tiny sizes: the code runs; the figures mean nothing");
  absl::Status s = bench.NativeCopies();
  if (s.ok()) s = bench.Swap();
  if (s.ok()) s = bench.Remap(c.chunk, /*with_target=*/true);
  if (s.ok() && c.small_remap && c.small_chunk != c.chunk) {
    s = bench.Remap(c.small_chunk, /*with_target=*/false);
  }
  PrintTable(bench.rows(), c, device, native->Name(), bench.notes());
  if (!s.ok()) {
    std::printf("FAIL swap_bench: %s\n", s.ToString().c_str());
    return 1;
  }
  std::printf("bench done\n");
  return 0;
}

}  // namespace
}  // namespace wooly::bench

int main(int argc, char** argv) {
  wooly::bench::Config c;
  if (!wooly::bench::ParseConfig(argc, argv, &c)) {
    wooly::bench::Usage(argv[0]);
    return 2;
  }
  return wooly::bench::Run(c);
}
