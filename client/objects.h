// The client-side objects behind CUDA's opaque handles.
//
// CUcontext, CUmodule, CUfunction, CUlibrary, CUkernel, CUstream and CUevent
// handed to the application are pointers to these objects. Each starts with
// a tag so that a handle of the wrong kind (or a destroyed one) is rejected
// cheaply before anything goes to woolyd; woolyd still checks that the ids
// inside belong to this client.
//
// Ownership: contexts live for the whole process (a destroyed context keeps
// its memory with its tag cleared, because other threads may still hold it
// on their context stacks). Modules own their functions, libraries own their
// kernels and the module cuLibraryGetModule returned; streams, events,
// modules and libraries are owned by the context that created them (see
// resources.h) and deleted when destroyed, unloaded, or when their context
// goes away.
// Thread safety: ids, names and layouts are immutable after creation; the
// caches (name -> function/kernel) are guarded by each owner's mutex.
#ifndef WOOLY_CLIENT_OBJECTS_H_
#define WOOLY_CLIENT_OBJECTS_H_

#include <cuda.h>

#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "wooly/proto/wire.h"

namespace wooly::client {

enum class Tag : uint32_t {
  kContext = 0x58544357,   // "WCTX"
  kModule = 0x444f4d57,    // "WMOD"
  kFunction = 0x434e4657,  // "WFNC"
  kLibrary = 0x42494c57,   // "WLIB"
  kKernel = 0x4e524b57,    // "WKRN"
  kStream = 0x4d525357,    // "WSRM"
  kEvent = 0x54564557,     // "WEVT"
  kDead = 0xdeaddead,
};

struct Object {
  explicit Object(Tag t) : tag(t) {}
  std::atomic<Tag> tag;
  bool Is(Tag t) const { return tag.load(std::memory_order_relaxed) == t; }
};

struct Library;
struct Module;
struct Kernel;

struct Context : Object {
  Context() : Object(Tag::kContext) {}
  CUdevice device = 0;
  unsigned long long id = 0;
  bool primary = false;
  std::atomic<unsigned> flags{0};
};

// What functions and kernels share: the server id, the name and the
// parameter layout that came with them (never re-fetched).
struct Callable : Object {
  explicit Callable(Tag t) : Object(t) {}
  uint64_t id = 0;
  std::string name;
  std::vector<wire::ParamInfo> layout;
  // cuFuncGetAttribute answers, kept because PyTorch asks the same ones
  // thousands of times. Only this client sets attributes of its functions,
  // and a set forgets the attribute here (api_module.cc).
  std::mutex attr_mu;
  std::unordered_map<int, int> attrs;  // guarded by attr_mu
  // The value this client last set per attribute, so that setting it again
  // (PyTorch does so before many launches) needs no round trip.
  std::unordered_map<int, int> set_values;  // guarded by attr_mu
};

struct Function : Callable {
  Function() : Callable(Tag::kFunction) {}
  Module* module = nullptr;  // null for a function from cuKernelGetFunction
  Kernel* kernel = nullptr;  // set for a function from cuKernelGetFunction
};

struct Kernel : Callable {
  Kernel() : Callable(Tag::kKernel) {}
  Library* library = nullptr;
  Function* function = nullptr;  // cached cuKernelGetFunction result; guarded by library->mu
};

struct Module : Object {
  Module() : Object(Tag::kModule) {}
  uint64_t id = 0;
  Context* ctx = nullptr;
  Library* library = nullptr;  // set when this is a library's module
  std::mutex mu;
  std::unordered_map<std::string, Function*> functions;  // guarded by mu
};

// A library is sent to woolyd only when something needs it there (a kernel,
// its module or a global): libcudart registers every fatbin of a process
// (thousands for PyTorch) and most are never used. Until then `pending`
// names the image: the caller's bytes when it promised to keep them
// (CU_LIBRARY_BINARY_IS_PRESERVED), else `owned`. Use LibraryId() for the
// server id.
struct Library : Object {
  Library() : Object(Tag::kLibrary) {}
  std::mutex load_mu;                // held while sending; taken before mu, never inside it
  std::atomic<bool> loaded{false};   // id is valid once this is true (release/acquire)
  uint64_t id = 0;                   // written under load_mu before `loaded`
  const uint8_t* pending = nullptr;  // guarded by load_mu; the image to send
  size_t pending_size = 0;           // guarded by load_mu
  std::vector<uint8_t> owned;        // guarded by load_mu; a copy when not preserved
  Context* ctx = nullptr;
  std::mutex mu;
  std::unordered_map<std::string, Kernel*> kernels;  // guarded by mu
  Module* module = nullptr;                          // guarded by mu
};

struct Stream : Object {
  Stream() : Object(Tag::kStream) {}
  uint64_t id = 0;
  unsigned flags = 0;
  int priority = 0;
  Context* ctx = nullptr;
  unsigned long long unique_id = 0;
};

struct Event : Object {
  Event() : Object(Tag::kEvent) {}
  uint64_t id = 0;
  unsigned flags = 0;
  Context* ctx = nullptr;
};

// The object behind a handle when it carries tag `T::kTag`-equivalent `t`,
// else nullptr. Null handles give nullptr.
template <typename T>
T* As(void* handle, Tag t) {
  if (handle == nullptr) return nullptr;
  T* obj = static_cast<T*>(static_cast<Object*>(handle));
  return obj->Is(t) ? obj : nullptr;
}

inline Context* AsContext(CUcontext h) { return As<Context>(h, Tag::kContext); }
inline Module* AsModule(CUmodule h) { return As<Module>(h, Tag::kModule); }
inline Library* AsLibrary(CUlibrary h) { return As<Library>(h, Tag::kLibrary); }
inline Kernel* AsKernel(CUkernel h) { return As<Kernel>(h, Tag::kKernel); }
inline Event* AsEvent(CUevent h) { return As<Event>(h, Tag::kEvent); }
// A CUfunction may also be a CUkernel cast to CUfunction, as CUDA allows.
inline Callable* AsCallable(CUfunction h) {
  if (h == nullptr) return nullptr;
  Object* o = static_cast<Object*>(static_cast<void*>(h));
  if (o->Is(Tag::kFunction) || o->Is(Tag::kKernel)) return static_cast<Callable*>(o);
  return nullptr;
}
inline Function* AsFunction(CUfunction h) { return As<Function>(h, Tag::kFunction); }

// Marks an object dead and frees it.
template <typename T>
void Destroy(T* obj) {
  obj->tag.store(Tag::kDead, std::memory_order_relaxed);
  delete obj;
}

}  // namespace wooly::client

#endif  // WOOLY_CLIENT_OBJECTS_H_
