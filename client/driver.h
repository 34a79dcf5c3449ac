// libwooly's process-wide state: initialization and the connection to
// woolyd, the device description from the Hello, the context model with its
// per-thread context stacks, the allocation table, and fork handling.
//
// Thread safety: everything here may be used from any thread. The hot
// queries (Initialized, Device, CurrentContext, the primary context's state)
// take no locks and allocate nothing. Process-wide objects are created once
// and never destroyed, so threads still running during exit never see them
// torn down.
#ifndef WOOLY_CLIENT_DRIVER_H_
#define WOOLY_CLIENT_DRIVER_H_

#include <cuda.h>

#include <atomic>
#include <cstdint>
#include <string>

#include "alloc_table.h"
#include "connection.h"
#include "objects.h"
#include "wooly/proto/wire.h"

namespace wooly::client {

namespace internal {
extern std::atomic<bool> g_initialized;
extern std::atomic<const wire::DeviceInfo*> g_device;
}  // namespace internal

// --- lifecycle

// cuInit: connects to woolyd ($WOOLY_SERVER or wire::DefaultSessionEndpoint())
// and says Hello once. Returns CUDA_ERROR_INVALID_VALUE for flags != 0,
// CUDA_ERROR_NO_DEVICE when woolyd cannot be reached,
// CUDA_ERROR_SYSTEM_DRIVER_MISMATCH on a protocol version mismatch. A failed
// cuInit may be retried.
CUresult Initialize(unsigned flags);

inline bool Initialized() { return internal::g_initialized.load(std::memory_order_acquire); }
// The device woolyd serves; only valid once Initialized().
inline const wire::DeviceInfo& Device() {
  return *internal::g_device.load(std::memory_order_acquire);
}
// The driver version to report: the server's, or CUDA_VERSION before cuInit.
int DriverVersion();

// --- forwarding

// Sends one request to woolyd (see Connection::Call).
CUresult Rpc(wire::Op op, const wire::Writer& body, Reply* reply = nullptr,
             const void* tail = nullptr, size_t tail_len = 0, void* out_tail = nullptr,
             size_t out_tail_len = 0);
// Sends requests with several in flight (see Connection::CallPipelined).
CUresult RpcPipelined(wire::Op op, std::span<const PipelinedRequest> requests, size_t window);
// Sends a request whose reply has no fields without waiting for it: for
// calls CUDA runs asynchronously. Its error is reported by the next
// synchronizing call. Behaves as Rpc when $WOOLY_ASYNC=0.
CUresult Post(wire::Op op, const wire::Writer& body, const void* tail = nullptr,
              size_t tail_len = 0);
// Rpc that also passes file descriptor `fd` (kept by the caller).
CUresult RpcWithFd(wire::Op op, const wire::Writer& body, int fd);
// False once the connection to woolyd is gone.
bool ConnectionAlive();
// True when the session runs over the same-node shared-memory channel.
bool SharedMemoryChannel();
// Logs a successful reply whose fields do not parse and returns
// CUDA_ERROR_UNKNOWN.
CUresult BadReply(wire::Op op);

// The device memory this process knows about.
AllocTable& Allocations();

// Incremented in the child of every fork(): per-thread state created before
// the fork belongs to the parent's session.
uint64_t ForkGeneration();

// --- contexts

// The device's primary context (one object for the life of the process).
Context* PrimaryContext();
// Retain count of the primary context; it is active while this is > 0.
int PrimaryRefcount();
// Retain/release bookkeeping; Release returns the count after the release
// (-1 when it was not retained).
void PrimaryRetain();
int PrimaryRelease();
void PrimaryResetCount();

// A new client-side context (cuCtxCreate); all contexts map onto the one
// context woolyd runs this client in.
Context* NewContext(unsigned flags);
// Marks a context destroyed (its memory stays valid, see objects.h).
void RetireContext(Context* ctx);
// True when `ctx` is a live context that work may be issued to: not
// destroyed, and for the primary context, retained.
bool ContextUsable(const Context* ctx);

// The calling thread's context stack.
Context* CurrentContext();             // top, or nullptr
void SetCurrentContext(Context* ctx);  // replaces the top (pops for nullptr)
void PushContext(Context* ctx);
Context* PopContext();  // nullptr when empty
// Removes every occurrence of `ctx` from the calling thread's stack.
void RemoveFromStack(Context* ctx);

// For calls that need a current context: CUDA_ERROR_NOT_INITIALIZED before
// cuInit, CUDA_ERROR_INVALID_CONTEXT without a usable current context.
CUresult RequireContext(Context** out = nullptr);

// --- streams

// Resolves an application stream handle to a wire stream id. `ptds` is true
// for the per-thread-default-stream entry points (_ptds/_ptsz), where a null
// stream means the calling thread's per-thread stream. Returns
// CUDA_ERROR_INVALID_HANDLE for a handle that is not a live stream.
CUresult ResolveStream(CUstream stream, bool ptds, uint64_t* id);
// The calling thread's per-thread default stream, created on first use and
// destroyed when the thread exits.
CUresult PerThreadStream(Stream** out);
// A process-unique id for cuStreamGetId.
unsigned long long NextStreamUniqueId();

// --- testing

// Forgets initialization and the connection so a test can cuInit again (the
// old connection is closed). Not thread-safe; tests only.
void ResetForTesting();
// Whether woolyd took weight-dedup chunks after their upload
// (kDedupPublish): -1 not asked yet, 0 no, 1 yes (api_memory.cc).
int DedupPublishStateForTesting();

}  // namespace wooly::client

#endif  // WOOLY_CLIENT_DRIVER_H_
