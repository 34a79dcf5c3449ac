// Modules, libraries, functions and kernels. Loading and lookups are
// forwarded; a function's or kernel's parameter layout arrives with it and is
// cached in the client object, so parameter queries (and launches) never ask
// woolyd again. Names, owning module/library and parameter info are local.
#include <dlfcn.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "api.h"
#include "driver.h"
#include "image_size.h"
#include "log.h"
#include "occupancy.h"
#include "resources.h"
#include "wooly/proto/sha256.h"

namespace wooly::client {
namespace {

// Reads a whole file; false when it cannot be opened or read.
bool ReadFile(const char* path, std::vector<uint8_t>* out) {
  FILE* f = std::fopen(path, "rb");
  if (f == nullptr) return false;
  out->clear();
  uint8_t buf[1 << 16];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), f)) > 0) out->insert(out->end(), buf, buf + n);
  const bool ok = !std::ferror(f);
  std::fclose(f);
  return ok;
}

// The bytes to send for a module file: binaries as they are, text with the
// NUL terminator the driver expects of PTX.
CUresult FileImage(const char* path, std::vector<uint8_t>* bytes, ImageSpan* span) {
  if (path == nullptr) return CUDA_ERROR_INVALID_VALUE;
  if (!ReadFile(path, bytes)) return CUDA_ERROR_FILE_NOT_FOUND;
  const bool binary = bytes->size() >= 4 && ((*bytes)[0] == 0x7f && (*bytes)[1] == 'E' &&
                                             (*bytes)[2] == 'L' && (*bytes)[3] == 'F');
  uint32_t magic = 0;
  if (bytes->size() >= 4) std::memcpy(&magic, bytes->data(), 4);
  if (!binary && magic != kFatbinMagic) {
    if (bytes->empty() || bytes->back() != 0) bytes->push_back(0);
  }
  if (bytes->empty()) return CUDA_ERROR_INVALID_IMAGE;
  span->data = bytes->data();
  span->size = bytes->size();
  return CUDA_SUCCESS;
}

// Load options are not sent to woolyd (its driver loads with defaults), so
// only the option arrays are checked: libcudart passes library options
// without a value array.
CUresult CheckLoadOptions(unsigned num_jit, const CUjit_option* jit, unsigned num_lib,
                          const CUlibraryOption* lib) {
  if (num_jit > 0 && jit == nullptr) return CUDA_ERROR_INVALID_VALUE;
  if (num_lib > 0 && lib == nullptr) return CUDA_ERROR_INVALID_VALUE;
  for (unsigned i = 0; i < num_jit; ++i) {
    WLOG_DEBUG("JIT option %d ignored", static_cast<int>(jit[i]));
  }
  for (unsigned i = 0; i < num_lib; ++i) {
    WLOG_DEBUG("library load option %d ignored", static_cast<int>(lib[i]));
  }
  return CUDA_SUCCESS;
}

CUresult MemoryImage(const void* image, ImageSpan* span) {
  if (image == nullptr) return CUDA_ERROR_INVALID_VALUE;
  if (!DetermineImage(image, span)) return CUDA_ERROR_INVALID_IMAGE;
  return CUDA_SUCCESS;
}

// Images from this size on are looked up in woolyd's module cache first.
// Over the shared-memory channel sending an image costs less than
// digesting it below one digest piece (4 MiB, hashed on one thread): the
// probe would only add time, as for the hundreds of small libraries cuDNN
// builds at run time.
constexpr size_t kCachedImageMin = 64u << 10;
constexpr size_t kCachedImageMinShm = wire::kImageDigestChunk;

// Sends an image with kModuleLoadData or kLibraryLoadData; returns the id.
CUresult SendImage(wire::Op op, const ImageSpan& span, uint64_t* id) {
  if (span.size > wire::kMaxPayload - 64) {
    WLOG_ERROR("module image of %zu bytes exceeds the %u-byte frame limit", span.size,
               wire::kMaxPayload);
    return CUDA_ERROR_INVALID_VALUE;
  }
  Reply reply;
  using Clock = std::chrono::steady_clock;
  const auto us = [](Clock::time_point a) {
    return static_cast<long>(
        std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - a).count());
  };
  const Clock::time_point t0 = Clock::now();
  // Large images are named by their digest first: woolyd loads them from
  // its module cache when any process on the node has sent them before.
  if (span.size >= (SharedMemoryChannel() ? kCachedImageMinShm : kCachedImageMin)) {
    const unsigned threads = std::clamp(std::thread::hardware_concurrency() / 2, 1u, 8u);
    const wire::Sha256Hash digest = wire::ImageDigest(span.data, span.size, threads);
    const uint8_t* b = static_cast<const uint8_t*>(span.data);
    WLOG_DEBUG(
        "image of %zu bytes (starts %02x%02x%02x%02x), digest %02x%02x%02x%02x, hashed in "
        "%ld us",
        span.size, b[0], b[1], b[2], b[3], digest[0], digest[1], digest[2], digest[3], us(t0));
    wire::Writer q;
    q.Put<uint8_t>(op == wire::Op::kLibraryLoadData ? 1 : 0)
        .PutRaw(digest.data(), digest.size())
        .Put<uint64_t>(span.size);
    const CUresult r = Rpc(wire::Op::kImageLoadCached, q, &reply);
    if (r == CUDA_SUCCESS) {
      wire::Reader rd = reply.reader();
      *id = rd.Get<uint64_t>();
      return rd.ok() ? CUDA_SUCCESS : BadReply(wire::Op::kImageLoadCached);
    }
    if (r != CUDA_ERROR_FILE_NOT_FOUND) return r;  // cached, but it failed to load
  }
  // "bytes image": the length in the body, the bytes as the tail, no copy.
  wire::Writer w;
  w.Put<uint64_t>(span.size);
  if (CUresult r = Rpc(op, w, &reply, span.data, span.size); r != CUDA_SUCCESS) return r;
  wire::Reader rd = reply.reader();
  *id = rd.Get<uint64_t>();
  if (!rd.ok()) return BadReply(op);
  WLOG_DEBUG("image of %zu bytes sent and loaded in %ld us", span.size, us(t0));
  return CUDA_SUCCESS;
}

CUresult LoadModule(CUmodule* module, const ImageSpan& span) {
  Context* ctx = nullptr;
  if (CUresult r = RequireContext(&ctx); r != CUDA_SUCCESS) return r;
  uint64_t id = 0;
  if (CUresult r = SendImage(wire::Op::kModuleLoadData, span, &id); r != CUDA_SUCCESS) return r;
  Module* m = new Module();
  m->id = id;
  m->ctx = ctx;
  Track(m);
  *module = reinterpret_cast<CUmodule>(m);
  return CUDA_SUCCESS;
}

// Registers a library without sending it (see Library in objects.h): the
// caller's bytes are used later when `preserved`, else they are copied now.
CUresult LoadLibrary(CUlibrary* library, const ImageSpan& span, bool preserved,
                     std::vector<uint8_t>* bytes = nullptr) {
  // Libraries are context-independent: they need cuInit, not a context, and
  // are released only by cuLibraryUnload.
  if (span.size > wire::kMaxPayload - 64) {
    WLOG_ERROR("library image of %zu bytes exceeds the %u-byte frame limit", span.size,
               wire::kMaxPayload);
    return CUDA_ERROR_INVALID_VALUE;
  }
  Library* lib = new Library();
  {
    std::lock_guard<std::mutex> l(lib->load_mu);
    if (bytes != nullptr && span.data == bytes->data()) {
      lib->owned = std::move(*bytes);
      lib->pending = lib->owned.data();
    } else if (preserved) {
      lib->pending = span.data;
    } else {
      lib->owned.assign(span.data, span.data + span.size);
      lib->pending = lib->owned.data();
    }
    lib->pending_size = span.size;
  }
  lib->ctx = nullptr;
  Track(lib);
  *library = reinterpret_cast<CUlibrary>(lib);
  return CUDA_SUCCESS;
}

}  // namespace

CUresult LibraryId(Library* lib, uint64_t* id) {
  if (lib->loaded.load(std::memory_order_acquire)) {
    *id = lib->id;
    return CUDA_SUCCESS;
  }
  std::lock_guard<std::mutex> l(lib->load_mu);
  if (!lib->loaded.load(std::memory_order_relaxed)) {
    ImageSpan span;
    span.data = lib->pending;
    span.size = lib->pending_size;
    uint64_t server_id = 0;
    if (CUresult r = SendImage(wire::Op::kLibraryLoadData, span, &server_id); r != CUDA_SUCCESS) {
      return r;  // still pending: a later call tries again
    }
    WLOG_DEBUG("library of %zu bytes sent on first use", span.size);
    lib->id = server_id;
    lib->pending = nullptr;
    lib->owned = std::vector<uint8_t>();
    lib->loaded.store(true, std::memory_order_release);
  }
  *id = lib->id;
  return CUDA_SUCCESS;
}

CUresult UnloadLibrary(Library* lib) {
  std::lock_guard<std::mutex> l(lib->load_mu);
  if (!lib->loaded.load(std::memory_order_relaxed)) return CUDA_SUCCESS;  // never sent
  wire::Writer w;
  w.Put<uint64_t>(lib->id);
  return Rpc(wire::Op::kLibraryUnload, w);
}

namespace {

// The JIT runs in woolyd, which reports no logs: leave the caller's log
// outputs empty rather than uninitialized.
void ClearJitOutputs(unsigned n, const CUjit_option* options, void** values) {
  if (options == nullptr || values == nullptr) return;
  for (unsigned i = 0; i < n; ++i) {
    switch (options[i]) {
      case CU_JIT_INFO_LOG_BUFFER:
      case CU_JIT_ERROR_LOG_BUFFER: {
        const CUjit_option size_opt = options[i] == CU_JIT_INFO_LOG_BUFFER
                                          ? CU_JIT_INFO_LOG_BUFFER_SIZE_BYTES
                                          : CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES;
        for (unsigned j = 0; j < n; ++j) {
          if (options[j] == size_opt && reinterpret_cast<uintptr_t>(values[j]) > 0 &&
              values[i] != nullptr) {
            static_cast<char*>(values[i])[0] = '\0';
          }
        }
        break;
      }
      case CU_JIT_WALL_TIME: {
        const float zero = 0.0f;
        std::memcpy(&values[i], &zero, sizeof(zero));
        break;
      }
      default:
        break;
    }
  }
  // Sizes are in/out: report that nothing was written. Done last so the
  // buffer loop above still sees the caller's sizes.
  for (unsigned i = 0; i < n; ++i) {
    if (options[i] == CU_JIT_INFO_LOG_BUFFER_SIZE_BYTES ||
        options[i] == CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES) {
      values[i] = nullptr;
    }
  }
}

CUresult ReadCallable(Reply& reply, wire::Op op, uint64_t* id, std::vector<wire::ParamInfo>* lay) {
  wire::Reader rd = reply.reader();
  *id = rd.Get<uint64_t>();
  *lay = wire::GetParamLayout(rd);
  if (!rd.ok()) return BadReply(op);
  return CUDA_SUCCESS;
}

// Looks `name` up in `cache` (guarded by `mu`); on a miss asks woolyd with
// `op` (owner id + name) and caches the new object, which `init` completes.
// Two threads missing at once both ask: the same server id comes back and the
// first insert wins.
template <typename T, typename Init>
CUresult CachedCallable(std::mutex& mu, std::unordered_map<std::string, T*>& cache, wire::Op op,
                        uint64_t owner_id, const char* name, Init init, T** out) {
  {
    std::lock_guard<std::mutex> l(mu);
    auto it = cache.find(name);
    if (it != cache.end()) {
      *out = it->second;
      return CUDA_SUCCESS;
    }
  }
  wire::Writer w;
  w.Put<uint64_t>(owner_id).PutStr(name);
  Reply reply;
  if (CUresult r = Rpc(op, w, &reply); r != CUDA_SUCCESS) return r;
  T* obj = new T();
  if (CUresult r = ReadCallable(reply, op, &obj->id, &obj->layout); r != CUDA_SUCCESS) {
    delete obj;
    return r;
  }
  obj->name = name;
  init(obj);
  std::lock_guard<std::mutex> l(mu);
  auto [it, inserted] = cache.emplace(name, obj);
  if (!inserted) delete obj;
  *out = it->second;
  return CUDA_SUCCESS;
}

CUresult GetFunction(CUfunction* hfunc, CUmodule hmod, const char* name) {
  if (CUresult r = RequireContext(); r != CUDA_SUCCESS) return r;
  if (hfunc == nullptr || name == nullptr) return CUDA_ERROR_INVALID_VALUE;
  Module* m = AsModule(hmod);
  if (m == nullptr) return CUDA_ERROR_INVALID_HANDLE;
  Function* f = nullptr;
  if (CUresult r = CachedCallable(
          m->mu, m->functions, wire::Op::kModuleGetFunction, m->id, name,
          [m](Function* fn) { fn->module = m; }, &f);
      r != CUDA_SUCCESS) {
    return r;
  }
  *hfunc = reinterpret_cast<CUfunction>(f);
  return CUDA_SUCCESS;
}

CUresult GetGlobal(wire::Op op, uint64_t owner_id, const void* owner, CUdeviceptr* dptr,
                   size_t* bytes, const char* name) {
  wire::Writer w;
  w.Put<uint64_t>(owner_id).PutStr(name);
  Reply reply;
  if (CUresult r = Rpc(op, w, &reply); r != CUDA_SUCCESS) return r;
  wire::Reader rd = reply.reader();
  const uint64_t ptr = rd.Get<uint64_t>();
  const uint64_t size = rd.Get<uint64_t>();
  if (!rd.ok()) return BadReply(op);
  // Known globals make cuMemcpy classification and address ranges local.
  Allocations().Insert(ptr, size, AllocTable::Kind::kGlobal, owner);
  if (dptr != nullptr) *dptr = static_cast<CUdeviceptr>(ptr);
  if (bytes != nullptr) *bytes = static_cast<size_t>(size);
  return CUDA_SUCCESS;
}

// The module of a library, fetched once.
CUresult LibraryModule(Library* lib, Module** out) {
  {
    std::lock_guard<std::mutex> l(lib->mu);
    if (lib->module != nullptr) {
      *out = lib->module;
      return CUDA_SUCCESS;
    }
  }
  uint64_t lib_id = 0;
  if (CUresult r = LibraryId(lib, &lib_id); r != CUDA_SUCCESS) return r;
  wire::Writer w;
  w.Put<uint64_t>(lib_id);
  Reply reply;
  if (CUresult r = Rpc(wire::Op::kLibraryGetModule, w, &reply); r != CUDA_SUCCESS) return r;
  wire::Reader rd = reply.reader();
  const uint64_t id = rd.Get<uint64_t>();
  if (!rd.ok()) return BadReply(wire::Op::kLibraryGetModule);
  Module* m = new Module();
  m->id = id;
  m->ctx = nullptr;
  m->library = lib;
  std::lock_guard<std::mutex> l(lib->mu);
  if (lib->module != nullptr) {
    delete m;
  } else {
    lib->module = m;
  }
  *out = lib->module;
  return CUDA_SUCCESS;
}

CUresult GetKernel(CUkernel* pKernel, CUlibrary library, const char* name) {
  if (!Initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  if (pKernel == nullptr || name == nullptr) return CUDA_ERROR_INVALID_VALUE;
  Library* lib = AsLibrary(library);
  if (lib == nullptr) return CUDA_ERROR_INVALID_HANDLE;
  Kernel* k = nullptr;
  uint64_t lib_id = 0;
  if (CUresult r = LibraryId(lib, &lib_id); r != CUDA_SUCCESS) return r;
  if (CUresult r = CachedCallable(
          lib->mu, lib->kernels, wire::Op::kLibraryGetKernel, lib_id, name,
          [lib](Kernel* kn) { kn->library = lib; }, &k);
      r != CUDA_SUCCESS) {
    return r;
  }
  *pKernel = reinterpret_cast<CUkernel>(k);
  return CUDA_SUCCESS;
}

CUresult KernelGetFunction(CUfunction* pFunc, CUkernel kernel) {
  if (CUresult r = RequireContext(); r != CUDA_SUCCESS) return r;
  if (pFunc == nullptr) return CUDA_ERROR_INVALID_VALUE;
  Kernel* k = AsKernel(kernel);
  if (k == nullptr) return CUDA_ERROR_INVALID_HANDLE;
  Library* lib = k->library;
  {
    std::lock_guard<std::mutex> l(lib->mu);
    if (k->function != nullptr) {
      *pFunc = reinterpret_cast<CUfunction>(k->function);
      return CUDA_SUCCESS;
    }
  }
  wire::Writer w;
  w.Put<uint64_t>(k->id);
  Reply reply;
  if (CUresult r = Rpc(wire::Op::kKernelGetFunction, w, &reply); r != CUDA_SUCCESS) return r;
  Function* f = new Function();
  if (CUresult r = ReadCallable(reply, wire::Op::kKernelGetFunction, &f->id, &f->layout);
      r != CUDA_SUCCESS) {
    delete f;
    return r;
  }
  f->name = k->name;
  f->kernel = k;
  std::lock_guard<std::mutex> l(lib->mu);
  if (k->function != nullptr) {
    delete f;
  } else {
    k->function = f;
  }
  *pFunc = reinterpret_cast<CUfunction>(k->function);
  return CUDA_SUCCESS;
}

CUresult ParamInfo(const Callable* c, size_t index, size_t* offset, size_t* size) {
  if (!Initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  if (c == nullptr) return CUDA_ERROR_INVALID_HANDLE;
  if (index >= c->layout.size()) return CUDA_ERROR_INVALID_VALUE;
  if (offset != nullptr) *offset = c->layout[index].offset;
  if (size != nullptr) *size = c->layout[index].size;
  return CUDA_SUCCESS;
}

// The other face of the same driver function: a kernel's function, or the
// kernel a function came from (null when there is none).
Callable* Twin(Callable* c) {
  if (c->Is(Tag::kFunction)) return static_cast<Function*>(c)->kernel;
  Kernel* k = static_cast<Kernel*>(c);
  std::lock_guard<std::mutex> l(k->library->mu);
  return k->function;
}

CUresult FuncGetAttribute(int* pi, int attrib, Callable* c) {
  if (pi == nullptr) return CUDA_ERROR_INVALID_VALUE;
  {
    std::lock_guard<std::mutex> l(c->attr_mu);
    if (auto it = c->attrs.find(attrib); it != c->attrs.end()) {
      *pi = it->second;
      return CUDA_SUCCESS;
    }
  }
  wire::Writer w;
  w.Put<uint64_t>(c->id).Put<int32_t>(attrib);
  Reply reply;
  if (CUresult r = Rpc(wire::Op::kFuncGetAttribute, w, &reply); r != CUDA_SUCCESS) return r;
  wire::Reader rd = reply.reader();
  const int32_t v = rd.Get<int32_t>();
  if (!rd.ok()) return BadReply(wire::Op::kFuncGetAttribute);
  std::lock_guard<std::mutex> l(c->attr_mu);
  c->attrs[attrib] = v;
  *pi = v;
  return CUDA_SUCCESS;
}

CUresult FuncSetAttribute(int attrib, int value, Callable* c) {
  {
    std::lock_guard<std::mutex> l(c->attr_mu);
    if (auto it = c->set_values.find(attrib); it != c->set_values.end() && it->second == value) {
      return CUDA_SUCCESS;  // already set to this by this client
    }
  }
  wire::Writer w;
  w.Put<uint64_t>(c->id).Put<int32_t>(attrib).Put<int32_t>(value);
  const CUresult r = Rpc(wire::Op::kFuncSetAttribute, w);
  // Whatever happened, the attribute is read from woolyd next time, for
  // this object and its twin (the driver may round what was set).
  for (Callable* o : {c, Twin(c)}) {
    if (o == nullptr) continue;
    std::lock_guard<std::mutex> l(o->attr_mu);
    o->attrs.erase(attrib);
    if (r == CUDA_SUCCESS) {
      o->set_values[attrib] = value;
    } else {
      o->set_values.erase(attrib);
    }
  }
  InvalidateOccupancyCache();  // e.g. the carveout changes occupancy
  return r;
}

}  // namespace
}  // namespace wooly::client

using namespace wooly::client;  // NOLINT: the C entry points live at global scope
namespace wire = ::wooly::wire;

// --- modules

WOOLY_EXPORT CUresult CUDAAPI cuModuleLoad(CUmodule* module, const char* fname) {
  WOOLY_API_BODY({
    if (CUresult r = RequireContext(); r != CUDA_SUCCESS) return r;
    if (module == nullptr) return CUDA_ERROR_INVALID_VALUE;
    std::vector<uint8_t> bytes;
    ImageSpan span;
    if (CUresult r = FileImage(fname, &bytes, &span); r != CUDA_SUCCESS) return r;
    return LoadModule(module, span);
  });
}

WOOLY_EXPORT CUresult CUDAAPI cuModuleLoadData(CUmodule* module, const void* image) {
  WOOLY_API_BODY({
    if (CUresult r = RequireContext(); r != CUDA_SUCCESS) return r;
    if (module == nullptr) return CUDA_ERROR_INVALID_VALUE;
    ImageSpan span;
    if (CUresult r = MemoryImage(image, &span); r != CUDA_SUCCESS) return r;
    return LoadModule(module, span);
  });
}

WOOLY_EXPORT CUresult CUDAAPI cuModuleLoadDataEx(CUmodule* module, const void* image,
                                                 unsigned int numOptions, CUjit_option* options,
                                                 void** optionValues) {
  WOOLY_API_BODY({
    if (CUresult r = RequireContext(); r != CUDA_SUCCESS) return r;
    if (module == nullptr) return CUDA_ERROR_INVALID_VALUE;
    if (numOptions > 0 && (options == nullptr || optionValues == nullptr)) {
      return CUDA_ERROR_INVALID_VALUE;
    }
    ImageSpan span;
    if (CUresult r = MemoryImage(image, &span); r != CUDA_SUCCESS) return r;
    if (CUresult r = LoadModule(module, span); r != CUDA_SUCCESS) return r;
    ClearJitOutputs(numOptions, options, optionValues);
    return CUDA_SUCCESS;
  });
}

WOOLY_EXPORT CUresult CUDAAPI cuModuleLoadFatBinary(CUmodule* module, const void* fatCubin) {
  WOOLY_API_BODY({
    if (CUresult r = RequireContext(); r != CUDA_SUCCESS) return r;
    if (module == nullptr) return CUDA_ERROR_INVALID_VALUE;
    ImageSpan span;
    if (CUresult r = MemoryImage(fatCubin, &span); r != CUDA_SUCCESS) return r;
    return LoadModule(module, span);
  });
}

WOOLY_EXPORT CUresult CUDAAPI cuModuleGetFunction(CUfunction* hfunc, CUmodule hmod,
                                                  const char* name) {
  WOOLY_API_BODY(return GetFunction(hfunc, hmod, name););
}

WOOLY_EXPORT CUresult CUDAAPI cuModuleGetGlobal_v2(CUdeviceptr* dptr, size_t* bytes, CUmodule hmod,
                                                   const char* name) {
  WOOLY_API_BODY({
    if (CUresult r = RequireContext(); r != CUDA_SUCCESS) return r;
    if (name == nullptr) return CUDA_ERROR_INVALID_VALUE;
    Module* m = AsModule(hmod);
    if (m == nullptr) return CUDA_ERROR_INVALID_HANDLE;
    // A library's module shares its globals with the library.
    const void* owner = m->library != nullptr ? static_cast<const void*>(m->library) : m;
    return GetGlobal(wire::Op::kModuleGetGlobal, m->id, owner, dptr, bytes, name);
  });
}

WOOLY_EXPORT CUresult CUDAAPI cuModuleUnload(CUmodule hmod) {
  WOOLY_API_BODY({
    if (!Initialized()) return CUDA_ERROR_NOT_INITIALIZED;
    Module* m = AsModule(hmod);
    if (m == nullptr) return CUDA_ERROR_INVALID_HANDLE;
    wire::Writer w;
    w.Put<uint64_t>(m->id);
    if (CUresult r = Rpc(wire::Op::kModuleUnload, w); r != CUDA_SUCCESS) return r;
    if (Library* lib = m->library) {
      std::lock_guard<std::mutex> l(lib->mu);
      if (lib->module == m) lib->module = nullptr;
    } else {
      Untrack(m);
    }
    DestroyModuleTree(m);
    return CUDA_SUCCESS;
  });
}

WOOLY_EXPORT CUresult CUDAAPI cuModuleGetFunctionCount(unsigned int* count, CUmodule mod) {
  WOOLY_API_BODY({
    if (!Initialized()) return CUDA_ERROR_NOT_INITIALIZED;
    if (count == nullptr) return CUDA_ERROR_INVALID_VALUE;
    Module* m = AsModule(mod);
    if (m == nullptr) return CUDA_ERROR_INVALID_HANDLE;
    wire::Writer w;
    w.Put<uint64_t>(m->id);
    Reply reply;
    if (CUresult r = Rpc(wire::Op::kModuleGetFunctionCount, w, &reply); r != CUDA_SUCCESS) {
      return r;
    }
    wire::Reader rd = reply.reader();
    const uint32_t n = rd.Get<uint32_t>();
    if (!rd.ok()) return BadReply(wire::Op::kModuleGetFunctionCount);
    *count = n;
    return CUDA_SUCCESS;
  });
}

// --- libraries

WOOLY_EXPORT CUresult CUDAAPI cuLibraryLoadData(CUlibrary* library, const void* code,
                                                CUjit_option* jitOptions, void** jitOptionsValues,
                                                unsigned int numJitOptions,
                                                CUlibraryOption* libraryOptions,
                                                void** libraryOptionValues,
                                                unsigned int numLibraryOptions) {
  void* const caller = __builtin_return_address(0);
  WOOLY_API_BODY({
    if (!Initialized()) return CUDA_ERROR_NOT_INITIALIZED;
    if (library == nullptr) return CUDA_ERROR_INVALID_VALUE;
    if (LogEnabled(LogLevel::kDebug)) {
      // Which shared object loads libraries, and how many: libcudart inside
      // each library registers its fatbins, cuDNN loads what it builds.
      Dl_info info{};
      const void* data = code;
      WLOG_DEBUG("cuLibraryLoadData from %s: image at %p, %u library options",
                 dladdr(caller, &info) != 0 && info.dli_fname != nullptr ? info.dli_fname : "?",
                 data, numLibraryOptions);
    }
    if (CUresult r = CheckLoadOptions(numJitOptions, jitOptions, numLibraryOptions, libraryOptions);
        r != CUDA_SUCCESS) {
      return r;
    }
    ImageSpan span;
    if (CUresult r = MemoryImage(code, &span); r != CUDA_SUCCESS) return r;
    // libcudart passes this option without a value array: its presence is
    // the promise that `code` stays valid until cuLibraryUnload.
    bool preserved = false;
    for (unsigned i = 0; i < numLibraryOptions; ++i) {
      if (libraryOptions[i] == CU_LIBRARY_BINARY_IS_PRESERVED) {
        preserved = libraryOptionValues == nullptr || libraryOptionValues[i] != nullptr;
      }
    }
    if (CUresult r = LoadLibrary(library, span, preserved); r != CUDA_SUCCESS) {
      WLOG_DEBUG("cuLibraryLoadData: image kind %d, %zu bytes, %u JIT and %u library options",
                 static_cast<int>(span.kind), span.size, numJitOptions, numLibraryOptions);
      return r;
    }
    ClearJitOutputs(numJitOptions, jitOptions, jitOptionsValues);
    return CUDA_SUCCESS;
  });
}

WOOLY_EXPORT CUresult CUDAAPI cuLibraryLoadFromFile(
    CUlibrary* library, const char* fileName, CUjit_option* jitOptions, void** jitOptionsValues,
    unsigned int numJitOptions, CUlibraryOption* libraryOptions, void** libraryOptionValues,
    unsigned int numLibraryOptions) {
  WOOLY_API_BODY({
    if (!Initialized()) return CUDA_ERROR_NOT_INITIALIZED;
    if (library == nullptr) return CUDA_ERROR_INVALID_VALUE;
    if (CUresult r = CheckLoadOptions(numJitOptions, jitOptions, numLibraryOptions, libraryOptions);
        r != CUDA_SUCCESS) {
      return r;
    }
    std::vector<uint8_t> bytes;
    ImageSpan span;
    if (CUresult r = FileImage(fileName, &bytes, &span); r != CUDA_SUCCESS) return r;
    if (CUresult r = LoadLibrary(library, span, false, &bytes); r != CUDA_SUCCESS) return r;
    ClearJitOutputs(numJitOptions, jitOptions, jitOptionsValues);
    return CUDA_SUCCESS;
  });
}

WOOLY_EXPORT CUresult CUDAAPI cuLibraryGetKernel(CUkernel* pKernel, CUlibrary library,
                                                 const char* name) {
  WOOLY_API_BODY(return GetKernel(pKernel, library, name););
}

WOOLY_EXPORT CUresult CUDAAPI cuLibraryGetModule(CUmodule* pMod, CUlibrary library) {
  WOOLY_API_BODY({
    if (!Initialized()) return CUDA_ERROR_NOT_INITIALIZED;
    if (pMod == nullptr) return CUDA_ERROR_INVALID_VALUE;
    Library* lib = AsLibrary(library);
    if (lib == nullptr) return CUDA_ERROR_INVALID_HANDLE;
    Module* m = nullptr;
    if (CUresult r = LibraryModule(lib, &m); r != CUDA_SUCCESS) return r;
    *pMod = reinterpret_cast<CUmodule>(m);
    return CUDA_SUCCESS;
  });
}

WOOLY_EXPORT CUresult CUDAAPI cuLibraryGetGlobal(CUdeviceptr* dptr, size_t* bytes,
                                                 CUlibrary library, const char* name) {
  WOOLY_API_BODY({
    if (!Initialized()) return CUDA_ERROR_NOT_INITIALIZED;
    if (name == nullptr) return CUDA_ERROR_INVALID_VALUE;
    Library* lib = AsLibrary(library);
    if (lib == nullptr) return CUDA_ERROR_INVALID_HANDLE;
    uint64_t lib_id = 0;
    if (CUresult r = LibraryId(lib, &lib_id); r != CUDA_SUCCESS) return r;
    return GetGlobal(wire::Op::kLibraryGetGlobal, lib_id, lib, dptr, bytes, name);
  });
}

WOOLY_EXPORT CUresult CUDAAPI cuLibraryUnload(CUlibrary library) {
  WOOLY_API_BODY({
    if (!Initialized()) return CUDA_ERROR_NOT_INITIALIZED;
    Library* lib = AsLibrary(library);
    if (lib == nullptr) return CUDA_ERROR_INVALID_HANDLE;
    if (CUresult r = UnloadLibrary(lib); r != CUDA_SUCCESS) return r;
    Untrack(lib);
    DestroyLibraryTree(lib);
    return CUDA_SUCCESS;
  });
}

WOOLY_EXPORT CUresult CUDAAPI cuKernelGetFunction(CUfunction* pFunc, CUkernel kernel) {
  WOOLY_API_BODY(return KernelGetFunction(pFunc, kernel););
}

// --- local queries

WOOLY_EXPORT CUresult CUDAAPI cuFuncGetParamInfo(CUfunction func, size_t paramIndex,
                                                 size_t* paramOffset, size_t* paramSize) {
  WOOLY_API_BODY(return ParamInfo(AsCallable(func), paramIndex, paramOffset, paramSize););
}

WOOLY_EXPORT CUresult CUDAAPI cuKernelGetParamInfo(CUkernel kernel, size_t paramIndex,
                                                   size_t* paramOffset, size_t* paramSize) {
  WOOLY_API_BODY(return ParamInfo(AsKernel(kernel), paramIndex, paramOffset, paramSize););
}

WOOLY_EXPORT CUresult CUDAAPI cuFuncGetModule(CUmodule* hmod, CUfunction hfunc) {
  WOOLY_API_BODY({
    if (!Initialized()) return CUDA_ERROR_NOT_INITIALIZED;
    if (hmod == nullptr) return CUDA_ERROR_INVALID_VALUE;
    Callable* c = AsCallable(hfunc);
    if (c == nullptr) return CUDA_ERROR_INVALID_HANDLE;
    Library* lib = nullptr;
    if (c->Is(Tag::kFunction)) {
      Function* f = static_cast<Function*>(c);
      if (f->module != nullptr) {
        *hmod = reinterpret_cast<CUmodule>(f->module);
        return CUDA_SUCCESS;
      }
      lib = f->kernel->library;
    } else {
      lib = static_cast<Kernel*>(c)->library;
    }
    // A kernel's function lives in its library's module.
    Module* m = nullptr;
    if (CUresult r = LibraryModule(lib, &m); r != CUDA_SUCCESS) return r;
    *hmod = reinterpret_cast<CUmodule>(m);
    return CUDA_SUCCESS;
  });
}

WOOLY_EXPORT CUresult CUDAAPI cuFuncGetName(const char** name, CUfunction hfunc) {
  WOOLY_API_BODY({
    if (!Initialized()) return CUDA_ERROR_NOT_INITIALIZED;
    if (name == nullptr) return CUDA_ERROR_INVALID_VALUE;
    Callable* c = AsCallable(hfunc);
    if (c == nullptr) return CUDA_ERROR_INVALID_HANDLE;
    *name = c->name.c_str();
    return CUDA_SUCCESS;
  });
}

WOOLY_EXPORT CUresult CUDAAPI cuKernelGetName(const char** name, CUkernel hfunc) {
  WOOLY_API_BODY({
    if (!Initialized()) return CUDA_ERROR_NOT_INITIALIZED;
    if (name == nullptr) return CUDA_ERROR_INVALID_VALUE;
    Kernel* k = AsKernel(hfunc);
    if (k == nullptr) return CUDA_ERROR_INVALID_HANDLE;
    *name = k->name.c_str();
    return CUDA_SUCCESS;
  });
}

WOOLY_EXPORT CUresult CUDAAPI cuKernelGetLibrary(CUlibrary* pLib, CUkernel kernel) {
  WOOLY_API_BODY({
    if (!Initialized()) return CUDA_ERROR_NOT_INITIALIZED;
    if (pLib == nullptr) return CUDA_ERROR_INVALID_VALUE;
    Kernel* k = AsKernel(kernel);
    if (k == nullptr) return CUDA_ERROR_INVALID_HANDLE;
    *pLib = reinterpret_cast<CUlibrary>(k->library);
    return CUDA_SUCCESS;
  });
}

// --- attributes

WOOLY_EXPORT CUresult CUDAAPI cuFuncGetAttribute(int* pi, CUfunction_attribute attrib,
                                                 CUfunction hfunc) {
  WOOLY_API_BODY({
    if (!Initialized()) return CUDA_ERROR_NOT_INITIALIZED;
    Callable* c = AsCallable(hfunc);
    if (c == nullptr) return CUDA_ERROR_INVALID_HANDLE;
    return FuncGetAttribute(pi, attrib, c);
  });
}

WOOLY_EXPORT CUresult CUDAAPI cuFuncSetAttribute(CUfunction hfunc, CUfunction_attribute attrib,
                                                 int value) {
  WOOLY_API_BODY({
    if (!Initialized()) return CUDA_ERROR_NOT_INITIALIZED;
    Callable* c = AsCallable(hfunc);
    if (c == nullptr) return CUDA_ERROR_INVALID_HANDLE;
    return FuncSetAttribute(attrib, value, c);
  });
}

WOOLY_EXPORT CUresult CUDAAPI cuKernelGetAttribute(int* pi, CUfunction_attribute attrib,
                                                   CUkernel kernel, CUdevice dev) {
  WOOLY_API_BODY({
    if (!Initialized()) return CUDA_ERROR_NOT_INITIALIZED;
    if (dev != 0) return CUDA_ERROR_INVALID_DEVICE;
    Kernel* k = AsKernel(kernel);
    if (k == nullptr) return CUDA_ERROR_INVALID_HANDLE;
    return FuncGetAttribute(pi, attrib, k);
  });
}

WOOLY_EXPORT CUresult CUDAAPI cuKernelSetAttribute(CUfunction_attribute attrib, int val,
                                                   CUkernel kernel, CUdevice dev) {
  WOOLY_API_BODY({
    if (!Initialized()) return CUDA_ERROR_NOT_INITIALIZED;
    if (dev != 0) return CUDA_ERROR_INVALID_DEVICE;
    Kernel* k = AsKernel(kernel);
    if (k == nullptr) return CUDA_ERROR_INVALID_HANDLE;
    return FuncSetAttribute(attrib, val, k);
  });
}
