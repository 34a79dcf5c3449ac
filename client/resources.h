// Which context owns which streams, events, modules and libraries, so that
// destroying a context (cuCtxDestroy, the last cuDevicePrimaryCtxRelease,
// cuDevicePrimaryCtxReset) releases what was created in it, as the real
// driver does. Allocations are tracked by the AllocTable with the context
// as owner.
//
// Thread safety: all functions are thread-safe. No lock here is held while
// talking to woolyd.
#ifndef WOOLY_CLIENT_RESOURCES_H_
#define WOOLY_CLIENT_RESOURCES_H_

#include "objects.h"

namespace wooly::client {

void Track(Stream* s);
void Track(Event* e);
void Track(Module* m);
void Track(Library* l);
// Stops tracking; returns false when the object was not tracked (already
// released by another thread or by a context teardown).
bool Untrack(Stream* s);
bool Untrack(Event* e);
bool Untrack(Module* m);
bool Untrack(Library* l);

// Frees the client objects of a module (its functions) / library (its
// kernels, their functions, its module) and forgets their globals. Does not
// talk to woolyd.
void DestroyModuleTree(Module* m);
void DestroyLibraryTree(Library* l);

// (api_module.cc) The server id of `lib`, sending the library to woolyd
// first if it has not been yet; the error of that load otherwise.
CUresult LibraryId(Library* lib, uint64_t* id);
// (api_module.cc) Unloads `lib` on woolyd if it was ever sent there.
CUresult UnloadLibrary(Library* lib);

// Synchronizes, then destroys/unloads/frees everything `ctx` owns on woolyd
// and client-side. Errors from woolyd are logged, not returned: the context
// is going away regardless.
void ReleaseContextResources(Context* ctx);

// The function or kernel object with server id `id` among the loaded
// modules and libraries, or nullptr (for graph kernel nodes, whose
// parameters name the function by id).
Callable* FindCallableById(uint64_t id);

// pthread_atfork support (see driver.cc).
void LockResourcesForFork();
void UnlockResourcesAfterForkInParent();
void ResetResourcesLockAfterForkInChild();
// In the child: forget every tracked object (they belong to the parent's
// session). The objects stay allocated: the application may still hold them.
void ForgetAllResources();

}  // namespace wooly::client

#endif  // WOOLY_CLIENT_RESOURCES_H_
