// driver_bench: CUDA driver-API microbenchmarks for bench/run.sh.
//
// Uses <cuda.h> only (no cudart) and links like tests/programs (stub
// libcuda.so.1, no RPATH), so the same binary measures the real driver or
// Wooly's libcuda.so.1, whichever the library path supplies.
//
//   wooly_bench_driver --module PATH [--quick] [--only NAME[,NAME]]
//
// Each row is one JSON line on stdout:
//   {"bench":"driver","name":...,"unit":...,"value":...,"higher_is_better":...,"params":{...}}
// plus one {"bench":"driver","info":{...}} line first, and "bench done" last.
// --only keeps the rows whose name equals a NAME or starts with NAME + "_"
// ("memcpy" selects every copy row). --quick shrinks sizes and counts (CI);
// in quick mode a row whose driver call the backend does not support
// (CUDA_ERROR_NOT_SUPPORTED) is printed with a "skipped" reason instead of
// failing. Any other failed call prints the call and its error and exits 1.
#include <cuda.h>
#include <time.h>

#include <algorithm>
#include <cinttypes>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace {

// A failed driver call. Thrown inside this program only (never across the
// driver's C ABI) so that RAII buffers are released when a row is skipped.
struct CuError {
  CUresult result;
  std::string what;
};

std::string ResultName(CUresult r) {
  const char* s = nullptr;
  if (cuGetErrorName(r, &s) != CUDA_SUCCESS || s == nullptr) {
    return "CUresult(" + std::to_string(static_cast<int>(r)) + ")";
  }
  return s;
}

void Check(CUresult r, const char* expr, int line) {
  if (r == CUDA_SUCCESS) return;
  std::string what = std::string(expr) + " returned " + ResultName(r);
  const char* desc = nullptr;
  if (cuGetErrorString(r, &desc) == CUDA_SUCCESS && desc != nullptr) {
    what += std::string(" (") + desc + ")";
  }
  what += " at driver_bench.cc:" + std::to_string(line);
  throw CuError{r, what};
}

#define CU(expr) Check((expr), #expr, __LINE__)

[[noreturn]] void Die(const std::string& why) {
  std::fprintf(stderr, "driver_bench: %s\n", why.c_str());
  std::printf("FAIL driver_bench: %s\n", why.c_str());
  std::fflush(stdout);
  std::exit(1);
}

double Now() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

double Median(std::vector<double> v) {
  if (v.empty()) return NAN;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 == 1 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// The value at fraction q (0..1) of the sorted samples, nearest rank.
double Quantile(std::vector<double> v, double q) {
  if (v.empty()) return NAN;
  std::sort(v.begin(), v.end());
  const size_t i = static_cast<size_t>(std::lround(q * static_cast<double>(v.size() - 1)));
  return v[std::min(i, v.size() - 1)];
}

// ---------------------------------------------------------------- JSON

std::string JsonString(const std::string& s) {
  std::string out = "\"";
  for (const char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof(buf), "\\u%04x", c);
          out += buf;
        } else {
          out += c;
        }
    }
  }
  return out + "\"";
}

std::string JsonNumber(double v) {
  if (!std::isfinite(v)) return "null";  // JSON has no NaN or infinity
  char buf[64];
  if (v == std::floor(v) && std::fabs(v) < 1e15) {
    std::snprintf(buf, sizeof(buf), "%" PRId64, static_cast<int64_t>(v));
  } else {
    std::snprintf(buf, sizeof(buf), "%.6g", v);
  }
  return buf;
}

// The "params" object of a row, built up in insertion order.
class Params {
 public:
  Params& Num(const std::string& key, double v) { return Add(key, JsonNumber(v)); }
  Params& Str(const std::string& key, const std::string& v) { return Add(key, JsonString(v)); }
  std::string Json() const { return "{" + body_ + "}"; }

 private:
  Params& Add(const std::string& key, const std::string& json) {
    if (!body_.empty()) body_ += ",";
    body_ += JsonString(key) + ":" + json;
    return *this;
  }
  std::string body_;
};

void EmitLine(const std::string& line) {
  std::printf("%s\n", line.c_str());
  std::fflush(stdout);  // rows survive a later crash or timeout
}

// ---------------------------------------------------------------- options

struct Options {
  std::string module;
  bool quick = false;
  std::vector<std::string> only;

  // A row runs when --only is empty, or a token equals its name or is a
  // prefix of it ending at an underscore ("memcpy_h2d" selects
  // "memcpy_h2d_pinned_4KiB", "decode_b1" does not select "decode_b16").
  bool Selected(const std::string& name) const {
    if (only.empty()) return true;
    for (const std::string& t : only) {
      if (name == t) return true;
      if (name.size() > t.size() && name.compare(0, t.size(), t) == 0 && name[t.size()] == '_') {
        return true;
      }
    }
    return false;
  }
};

void Usage(const char* argv0) {
  std::fprintf(stderr,
               "usage: %s --module PATH [--quick] [--only NAME[,NAME...]]\n"
               "  --module PATH  module image with fill_u32 (fatbin/cubin, or test_kernels.fake)\n"
               "  --quick        tiny sizes and counts (CI)\n"
               "  --only LIST    rows named NAME or starting with NAME_\n",
               argv0);
}

Options ParseOptions(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        Usage(argv[0]);
        Die(a + " needs a value");
      }
      return argv[++i];
    };
    if (a == "--module") {
      o.module = value();
    } else if (a == "--quick") {
      o.quick = true;
    } else if (a == "--only") {
      const std::string list = value();
      size_t start = 0;
      while (start <= list.size()) {
        const size_t comma = std::min(list.find(',', start), list.size());
        if (comma > start) o.only.push_back(list.substr(start, comma - start));
        start = comma + 1;
      }
    } else if (a == "--help" || a == "-h") {
      Usage(argv[0]);
      std::exit(0);
    } else {
      Usage(argv[0]);
      Die("unknown argument '" + a + "'");
    }
  }
  return o;
}

// ---------------------------------------------------------------- resources

class DeviceBuffer {
 public:
  explicit DeviceBuffer(size_t bytes) { CU(cuMemAlloc(&ptr_, bytes)); }
  ~DeviceBuffer() { cuMemFree(ptr_); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  CUdeviceptr get() const { return ptr_; }

 private:
  CUdeviceptr ptr_ = 0;
};

// Host memory: page-locked from cuMemHostAlloc, or pageable from malloc.
// Every page is written once up front so that first-touch page faults are
// not timed.
class HostBuffer {
 public:
  HostBuffer(size_t bytes, bool pinned) : pinned_(pinned) {
    if (pinned_) {
      CU(cuMemHostAlloc(&ptr_, bytes, 0));
    } else {
      ptr_ = std::malloc(bytes);
      if (ptr_ == nullptr) Die("malloc of " + std::to_string(bytes) + " bytes failed");
    }
    std::memset(ptr_, 0x5A, bytes);
  }
  ~HostBuffer() {
    if (pinned_) {
      cuMemFreeHost(ptr_);
    } else {
      std::free(ptr_);
    }
  }
  HostBuffer(const HostBuffer&) = delete;
  HostBuffer& operator=(const HostBuffer&) = delete;
  void* get() const { return ptr_; }

 private:
  void* ptr_ = nullptr;
  bool pinned_;
};

std::vector<char> ReadFile(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) Die("cannot open module image " + path);
  std::vector<char> data;
  char buf[1 << 16];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), f)) > 0) data.insert(data.end(), buf, buf + n);
  std::fclose(f);
  data.push_back('\0');  // PTX and the fake text module are C strings
  return data;
}

// The empty kernel: fill_u32(p, v, n) with n = 0 does nothing, on a stream
// of our own. Loaded on first use so copy-only runs need no module.
class EmptyKernel {
 public:
  explicit EmptyKernel(const std::string& module_path) : path_(module_path) {}
  ~EmptyKernel() {
    if (stream_ != nullptr) cuStreamDestroy(stream_);
    if (scratch_ != 0) cuMemFree(scratch_);
    if (module_ != nullptr) cuModuleUnload(module_);
  }
  EmptyKernel(const EmptyKernel&) = delete;
  EmptyKernel& operator=(const EmptyKernel&) = delete;

  void Load() {
    if (fn_ != nullptr) return;
    if (path_.empty()) Die("the launch rows need --module PATH (an image with fill_u32)");
    const std::vector<char> image = ReadFile(path_);
    CU(cuModuleLoadData(&module_, image.data()));
    CU(cuModuleGetFunction(&fn_, module_, "fill_u32"));
    // A real pointer although n = 0: backends may validate it.
    CU(cuMemAlloc(&scratch_, 4));
    CU(cuStreamCreate(&stream_, CU_STREAM_NON_BLOCKING));
  }

  void Launch() {
    CUdeviceptr p = scratch_;
    unsigned v = 0;
    int n = 0;
    void* args[] = {&p, &v, &n};
    CU(cuLaunchKernel(fn_, 1, 1, 1, 1, 1, 1, 0, stream_, args, nullptr));
  }

  CUstream stream() const { return stream_; }

 private:
  std::string path_;
  CUmodule module_ = nullptr;
  CUfunction fn_ = nullptr;
  CUdeviceptr scratch_ = 0;
  CUstream stream_ = nullptr;
};

// ---------------------------------------------------------------- rows

struct Result {
  double value;
  Params params;
};

class Runner {
 public:
  explicit Runner(const Options& o) : o_(o) {}

  // Runs fn as row `name` when selected and prints its line.
  void Row(const std::string& name, const char* unit, bool higher_is_better,
           const std::function<Result()>& fn) {
    if (!o_.Selected(name)) return;
    const std::string head = "{\"bench\":\"driver\",\"name\":" + JsonString(name) +
                             ",\"unit\":" + JsonString(unit) + ",\"value\":";
    const std::string better =
        std::string(",\"higher_is_better\":") + (higher_is_better ? "true" : "false");
    try {
      const Result r = fn();
      EmitLine(head + JsonNumber(r.value) + better + ",\"params\":" + r.params.Json() + "}");
      ++rows_;
    } catch (const CuError& e) {
      // The fake backend may lack a call; on a GPU every row must run.
      if (!o_.quick || e.result != CUDA_ERROR_NOT_SUPPORTED) {
        Die("row " + name + ": " + e.what);
      }
      EmitLine(head + "null" + better + ",\"params\":{},\"skipped\":" +
               JsonString("not supported by this backend: " + e.what) + "}");
      ++skipped_;
    }
  }

  int rows() const { return rows_; }
  int skipped() const { return skipped_; }

 private:
  const Options& o_;
  int rows_ = 0;
  int skipped_ = 0;
};

std::string SizeName(size_t bytes) {
  if (bytes >= (size_t{1} << 30) && bytes % (size_t{1} << 30) == 0) {
    return std::to_string(bytes >> 30) + "GiB";
  }
  if (bytes >= (size_t{1} << 20) && bytes % (size_t{1} << 20) == 0) {
    return std::to_string(bytes >> 20) + "MiB";
  }
  return std::to_string(bytes >> 10) + "KiB";
}

// Empty-kernel launches queued back to back, then one cuCtxSynchronize.
Result LaunchAsync(EmptyKernel& k, bool quick) {
  k.Load();
  const int launches = quick ? 200 : 200000;
  const int reps = quick ? 2 : 3;
  const int warmup = quick ? 20 : 2000;
  for (int i = 0; i < warmup; ++i) k.Launch();
  CU(cuCtxSynchronize());
  std::vector<double> rates;
  for (int r = 0; r < reps; ++r) {
    const double t0 = Now();
    for (int i = 0; i < launches; ++i) k.Launch();
    CU(cuCtxSynchronize());
    rates.push_back(launches / (Now() - t0));
  }
  Params p;
  p.Num("launches", launches)
      .Num("reps", reps)
      .Num("warmup", warmup)
      .Str("stat", "median over reps of launches / (time to queue them + one cuCtxSynchronize)")
      .Num("min", *std::min_element(rates.begin(), rates.end()))
      .Num("max", *std::max_element(rates.begin(), rates.end()));
  return {Median(rates), p};
}

// One launch followed by cuStreamSynchronize, timed one at a time.
Result LaunchSync(EmptyKernel& k, bool quick) {
  k.Load();
  const int iters = quick ? 20 : 5000;
  const int warmup = quick ? 5 : 500;
  for (int i = 0; i < warmup; ++i) {
    k.Launch();
    CU(cuStreamSynchronize(k.stream()));
  }
  std::vector<double> us;
  us.reserve(iters);
  for (int i = 0; i < iters; ++i) {
    const double t0 = Now();
    k.Launch();
    CU(cuStreamSynchronize(k.stream()));
    us.push_back((Now() - t0) * 1e6);
  }
  Params p;
  p.Num("iters", iters)
      .Num("warmup", warmup)
      .Str("stat", "median")
      .Num("p10", Quantile(us, 0.1))
      .Num("p90", Quantile(us, 0.9))
      .Num("p99", Quantile(us, 0.99));
  return {Median(us), p};
}

// A cuMemAlloc + cuMemFree pair, timed one pair at a time.
Result AllocFree(size_t bytes, bool quick) {
  const int iters = quick ? 20 : 2000;
  const int warmup = quick ? 5 : 100;
  auto pair = [&] {
    CUdeviceptr p = 0;
    CU(cuMemAlloc(&p, bytes));
    CU(cuMemFree(p));
  };
  for (int i = 0; i < warmup; ++i) pair();
  std::vector<double> us;
  us.reserve(iters);
  for (int i = 0; i < iters; ++i) {
    const double t0 = Now();
    pair();
    us.push_back((Now() - t0) * 1e6);
  }
  Params p;
  p.Num("bytes", static_cast<double>(bytes))
      .Num("iters", iters)
      .Num("warmup", warmup)
      .Str("stat", "median")
      .Num("p10", Quantile(us, 0.1))
      .Num("p90", Quantile(us, 0.9));
  return {Median(us), p};
}

// Synchronous cuMemcpyHtoD/DtoH of `bytes`. Copies run in batches, each
// ended by cuCtxSynchronize: a pageable HtoD may return before its DMA has
// finished, and the sync makes every batch include the whole transfer.
Result Memcpy(CUdeviceptr dev, bool to_device, bool pinned, size_t bytes, bool quick) {
  HostBuffer host(bytes, pinned);
  const size_t batch_bytes = size_t{256} << 20;
  const int per_batch =
      static_cast<int>(std::clamp<size_t>(batch_bytes / bytes, 1, quick ? 10 : 200));
  const int batches = quick ? 3 : 5;
  auto copy = [&] {
    if (to_device) {
      CU(cuMemcpyHtoD(dev, host.get(), bytes));
    } else {
      CU(cuMemcpyDtoH(host.get(), dev, bytes));
    }
  };
  for (int i = 0; i < per_batch; ++i) copy();  // warmup batch
  CU(cuCtxSynchronize());
  std::vector<double> gbps;
  for (int b = 0; b < batches; ++b) {
    const double t0 = Now();
    for (int i = 0; i < per_batch; ++i) copy();
    CU(cuCtxSynchronize());
    gbps.push_back(static_cast<double>(bytes) * per_batch / (Now() - t0) / 1e9);
  }
  Params p;
  p.Num("bytes", static_cast<double>(bytes))
      .Str("host", pinned ? "cuMemHostAlloc" : "malloc")
      .Num("copies_per_batch", per_batch)
      .Num("batches", batches)
      .Str("stat",
           "median over batches of bytes / (batch time incl. one cuCtxSynchronize); "
           "GB = 1e9 bytes")
      .Num("best", *std::max_element(gbps.begin(), gbps.end()));
  return {Median(gbps), p};
}

}  // namespace

int main(int argc, char** argv) {
  const Options o = ParseOptions(argc, argv);
  try {
    CU(cuInit(0));
    CUdevice dev;
    CU(cuDeviceGet(&dev, 0));
    CUcontext ctx;
    CU(cuDevicePrimaryCtxRetain(&ctx, dev));
    CU(cuCtxSetCurrent(ctx));

    char name[256] = {};
    CU(cuDeviceGetName(name, sizeof(name) - 1, dev));
    int driver_version = 0;
    CU(cuDriverGetVersion(&driver_version));
    EmitLine("{\"bench\":\"driver\",\"info\":{\"device\":" + JsonString(name) +
             ",\"driver_version\":" + std::to_string(driver_version) +
             ",\"quick\":" + (o.quick ? "true" : "false") + "}}");

    Runner run(o);
    {
      EmptyKernel k(o.module);
      run.Row("launch_async", "launches/s", true, [&] { return LaunchAsync(k, o.quick); });
      run.Row("launch_sync", "us", false, [&] { return LaunchSync(k, o.quick); });
    }
    run.Row("alloc_free_1MiB", "us", false, [&] { return AllocFree(size_t{1} << 20, o.quick); });

    std::vector<size_t> sizes = {size_t{4} << 10, size_t{64} << 10, size_t{1} << 20};
    if (!o.quick) {
      sizes.insert(sizes.end(), {size_t{16} << 20, size_t{256} << 20, size_t{1} << 30});
    }
    const struct {
      const char* name;
      bool to_device;
      bool pinned;
    } kinds[] = {{"h2d_pinned", true, true},
                 {"d2h_pinned", false, true},
                 {"h2d_pageable", true, false},
                 {"d2h_pageable", false, false}};
    size_t largest = 0;  // of the selected copies: the device buffer they share
    for (const auto& kind : kinds) {
      for (size_t s : sizes) {
        if (o.Selected(std::string("memcpy_") + kind.name + "_" + SizeName(s))) {
          largest = std::max(largest, s);
        }
      }
    }
    if (largest > 0) {
      DeviceBuffer dbuf(largest);
      for (const auto& kind : kinds) {
        for (size_t s : sizes) {
          run.Row(std::string("memcpy_") + kind.name + "_" + SizeName(s), "GB/s", true,
                  [&] { return Memcpy(dbuf.get(), kind.to_device, kind.pinned, s, o.quick); });
        }
      }
    }
    if (run.rows() + run.skipped() == 0) Die("no row matches --only");
    std::fprintf(stderr, "driver_bench: %d rows, %d skipped\n", run.rows(), run.skipped());
    CU(cuDevicePrimaryCtxRelease(dev));
  } catch (const CuError& e) {
    Die(e.what);
  }
  std::printf("bench done\n");
  std::fflush(stdout);
  return 0;
}
