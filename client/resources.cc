#include "resources.h"

#include <mutex>
#include <new>
#include <unordered_set>
#include <vector>

#include "alloc_arena.h"
#include "capture.h"
#include "driver.h"
#include "log.h"
#include "occupancy.h"

namespace wooly::client {
namespace {

struct Registry {
  std::mutex mu;
  std::unordered_set<Stream*> streams;
  std::unordered_set<Event*> events;
  std::unordered_set<Module*> modules;
  std::unordered_set<Library*> libraries;
};

Registry& Reg() {
  static Registry* r = new Registry();  // never destroyed: see driver.h
  return *r;
}

template <typename T>
std::vector<T*> TakeOwnedBy(std::unordered_set<T*>& set, const Context* ctx) {
  std::vector<T*> out;
  for (auto it = set.begin(); it != set.end();) {
    if ((*it)->ctx == ctx) {
      out.push_back(*it);
      it = set.erase(it);
    } else {
      ++it;
    }
  }
  return out;
}

void LogFailure(const char* what, CUresult r) {
  if (r != CUDA_SUCCESS) WLOG_WARN("%s while destroying a context failed: CUresult %d", what, r);
}

CUresult SimpleRpc(wire::Op op, uint64_t id) {
  wire::Writer w;
  w.Put<uint64_t>(id);
  return Rpc(op, w);
}

}  // namespace

void Track(Stream* s) {
  std::lock_guard<std::mutex> l(Reg().mu);
  Reg().streams.insert(s);
}
void Track(Event* e) {
  std::lock_guard<std::mutex> l(Reg().mu);
  Reg().events.insert(e);
}
void Track(Module* m) {
  std::lock_guard<std::mutex> l(Reg().mu);
  Reg().modules.insert(m);
}
void Track(Library* lib) {
  std::lock_guard<std::mutex> l(Reg().mu);
  Reg().libraries.insert(lib);
}
bool Untrack(Stream* s) {
  std::lock_guard<std::mutex> l(Reg().mu);
  return Reg().streams.erase(s) != 0;
}
bool Untrack(Event* e) {
  std::lock_guard<std::mutex> l(Reg().mu);
  return Reg().events.erase(e) != 0;
}
bool Untrack(Module* m) {
  std::lock_guard<std::mutex> l(Reg().mu);
  return Reg().modules.erase(m) != 0;
}
bool Untrack(Library* lib) {
  std::lock_guard<std::mutex> l(Reg().mu);
  return Reg().libraries.erase(lib) != 0;
}

void DestroyModuleTree(Module* m) {
  Allocations().RemoveOwnedBy(m);
  {
    std::lock_guard<std::mutex> l(m->mu);
    for (auto& [name, f] : m->functions) Destroy(f);
    m->functions.clear();
  }
  Destroy(m);
}

void DestroyLibraryTree(Library* lib) {
  Allocations().RemoveOwnedBy(lib);
  Module* module = nullptr;
  {
    std::lock_guard<std::mutex> l(lib->mu);
    for (auto& [name, k] : lib->kernels) {
      if (k->function != nullptr) Destroy(k->function);
      Destroy(k);
    }
    lib->kernels.clear();
    module = lib->module;
    lib->module = nullptr;
  }
  if (module != nullptr) DestroyModuleTree(module);
  Destroy(lib);
}

void ReleaseContextResources(Context* ctx) {
  InvalidateLimitCache();  // a context torn down starts from default limits
  std::vector<Stream*> streams;
  std::vector<Event*> events;
  std::vector<Module*> modules;
  std::vector<Library*> libraries;
  {
    std::lock_guard<std::mutex> l(Reg().mu);
    streams = TakeOwnedBy(Reg().streams, ctx);
    events = TakeOwnedBy(Reg().events, ctx);
    modules = TakeOwnedBy(Reg().modules, ctx);
    libraries = TakeOwnedBy(Reg().libraries, ctx);
  }
  std::vector<AllocTable::Record> allocs = Allocations().RemoveOwnedBy(ctx);
  // Blocks of the context's arenas are not woolyd's allocations: the arenas
  // are (alloc_arena.h).
  const std::vector<ArenaAllocator::Arena> arenas = Arenas().RemoveOwner(ctx);
  std::erase_if(allocs, [&arenas](const AllocTable::Record& r) {
    for (const ArenaAllocator::Arena& a : arenas) {
      if (r.base >= a.base && r.base - a.base < a.size) return true;
    }
    return false;
  });
  if (streams.empty() && events.empty() && modules.empty() && libraries.empty() && allocs.empty() &&
      arenas.empty()) {
    return;
  }
  // Like the driver, finish outstanding work before tearing things down.
  LogFailure("cuCtxSynchronize", Rpc(wire::Op::kCtxSynchronize, wire::Writer()));
  for (Stream* s : streams) {
    LogFailure("cuStreamDestroy", SimpleRpc(wire::Op::kStreamDestroy, s->id));
    CaptureForgetStream(s->id);  // woolyd abandons a capture begun on it
    Destroy(s);
  }
  for (Event* e : events) {
    LogFailure("cuEventDestroy", SimpleRpc(wire::Op::kEventDestroy, e->id));
    Destroy(e);
  }
  for (Library* lib : libraries) {
    LogFailure("cuLibraryUnload", UnloadLibrary(lib));
    DestroyLibraryTree(lib);
  }
  for (Module* m : modules) {
    LogFailure("cuModuleUnload", SimpleRpc(wire::Op::kModuleUnload, m->id));
    DestroyModuleTree(m);
  }
  for (const AllocTable::Record& r : allocs) {
    LogFailure("cuMemFree", SimpleRpc(wire::Op::kMemFree, r.base));
  }
  for (const ArenaAllocator::Arena& a : arenas) {
    LogFailure("cuMemFree", SimpleRpc(wire::Op::kMemFree, a.base));
    UnreserveDeviceRange(a.base, a.size);
  }
}

Callable* FindCallableById(uint64_t id) {
  // Holding the registry lock keeps every module and library alive (unload
  // untracks them first); their own locks are taken inside it, never the
  // other way round.
  std::lock_guard<std::mutex> l(Reg().mu);
  auto in_module = [id](Module* m) -> Callable* {
    std::lock_guard<std::mutex> ml(m->mu);
    for (auto& [name, f] : m->functions) {
      if (f->id == id) return f;
    }
    return nullptr;
  };
  for (Module* m : Reg().modules) {
    if (Callable* c = in_module(m)) return c;
  }
  for (Library* lib : Reg().libraries) {
    std::lock_guard<std::mutex> ll(lib->mu);
    for (auto& [name, k] : lib->kernels) {
      if (k->id == id) return k;
      if (k->function != nullptr && k->function->id == id) return k->function;
    }
    if (lib->module != nullptr) {
      if (Callable* c = in_module(lib->module)) return c;
    }
  }
  return nullptr;
}

void LockResourcesForFork() { Reg().mu.lock(); }
void UnlockResourcesAfterForkInParent() { Reg().mu.unlock(); }
// Only the forking thread exists in the child; a fresh mutex is the one way
// to be sure no stale owner is recorded.
void ResetResourcesLockAfterForkInChild() { new (&Reg().mu) std::mutex(); }

void ForgetAllResources() {
  std::lock_guard<std::mutex> l(Reg().mu);
  Reg().streams.clear();
  Reg().events.clear();
  Reg().modules.clear();
  Reg().libraries.clear();
}

}  // namespace wooly::client
