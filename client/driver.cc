#include "driver.h"

#include <pthread.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <vector>

#include "alloc_arena.h"
#include "api.h"
#include "capture.h"
#include "log.h"
#include "occupancy.h"
#include "resources.h"
#include "wooly/proto/defaults.h"

namespace wooly::client {

namespace internal {
std::atomic<bool> g_initialized{false};
std::atomic<const wire::DeviceInfo*> g_device{nullptr};
}  // namespace internal

namespace {

using internal::g_device;
using internal::g_initialized;

// Process-wide objects are heap-allocated and never freed (see driver.h).
std::mutex& InitMutex() {
  static std::mutex* mu = new std::mutex();
  return *mu;
}
std::atomic<Connection*> g_conn{nullptr};
std::atomic<uint64_t> g_fork_generation{0};
std::atomic<int> g_driver_version{0};
std::atomic<unsigned long long> g_next_ctx_id{2};  // 1 is the primary context
std::atomic<unsigned long long> g_next_stream_id{16};
std::atomic<int> g_primary_refcount{0};

AllocTable& Allocs() {
  static AllocTable* t = new AllocTable();
  return *t;
}

ArenaAllocator& ArenasImpl() {
  static ArenaAllocator* a = new ArenaAllocator();  // never destroyed
  return *a;
}

// Forgets every arena and gives back its address-space reservation (the
// device memory is woolyd's to free with the session).
void DropArenas() {
  for (const ArenaAllocator::Arena& a : ArenasImpl().Clear()) UnreserveDeviceRange(a.base, a.size);
}

Context* Primary() {
  static Context* const c = [] {
    Context* p = new Context();
    p->device = 0;
    p->id = 1;
    p->primary = true;
    return p;
  }();
  return c;
}

// --- per-thread state

struct ThreadContexts {
  std::vector<Context*> stack;
};
thread_local ThreadContexts t_contexts;

// The per-thread default stream, destroyed with its thread.
struct ThreadStream {
  Stream* stream = nullptr;
  uint64_t generation = 0;
  ~ThreadStream() {
    if (stream == nullptr) return;
    if (generation == g_fork_generation.load() && g_conn.load() != nullptr) {
      wire::Writer w;
      w.Put<uint64_t>(stream->id);
      Rpc(wire::Op::kStreamDestroy, w);  // best effort: the thread is leaving
    }
    Destroy(stream);
  }
};
thread_local ThreadStream t_stream;

// --- fork

void ForkPrepare() {
  LockResourcesForFork();
  Allocs().LockForFork();
  ArenasImpl().LockForFork();
}

void ForkParent() {
  ArenasImpl().UnlockAfterForkInParent();
  Allocs().UnlockAfterForkInParent();
  UnlockResourcesAfterForkInParent();
}

void ForkChild() {
  Allocs().ResetLockAfterForkInChild();
  ArenasImpl().ResetLockAfterForkInChild();
  ResetResourcesLockAfterForkInChild();
  g_fork_generation.fetch_add(1);
  // The parent's session, allocations and objects are not the child's.
  if (Connection* old = g_conn.load()) {
    g_conn.store(old->ForkChild().release());
    // `old` is leaked on purpose: its mutex may be held by a thread that
    // does not exist in the child.
  }
  Allocs().Clear();
  DropArenas();
  ForgetAllResources();
  // The forking thread's per-thread stream belonged to the parent.
  t_stream.stream = nullptr;
}

}  // namespace

CUresult Initialize(unsigned flags) {
  if (flags != 0) return CUDA_ERROR_INVALID_VALUE;
  if (g_initialized.load(std::memory_order_acquire)) return CUDA_SUCCESS;
  std::lock_guard<std::mutex> lock(InitMutex());
  if (g_initialized.load(std::memory_order_acquire)) return CUDA_SUCCESS;

  const std::string endpoint = wire::DefaultSessionEndpoint();
  auto conn = std::make_unique<Connection>(endpoint, IdentityFromEnvironment());
  SessionInfo info;
  std::string error;
  const CUresult r = conn->Start(&info, &error);
  if (r == CUDA_ERROR_NO_DEVICE) {
    WLOG_ERROR("cannot reach woolyd at %s (%s); is it running? Set %s to its endpoint",
               endpoint.c_str(), error.c_str(), wire::kEnvServer);
    return r;
  }
  if (r == CUDA_ERROR_SYSTEM_DRIVER_MISMATCH) {
    WLOG_ERROR("woolyd at %s rejected this client: %s (libwooly protocol version %u)",
               endpoint.c_str(), error.c_str(), wire::kProtocolVersion);
    return r;
  }
  if (r != CUDA_SUCCESS) {
    WLOG_ERROR("connecting to woolyd at %s failed: %s", endpoint.c_str(), error.c_str());
    return r;
  }
  if (g_device.load() == nullptr) {
    // The device never changes for the life of the process (a reconnect
    // after fork reaches the same woolyd), so it is published only once.
    g_device.store(new wire::DeviceInfo(std::move(info.device)), std::memory_order_release);
  }
  g_driver_version.store(Device().driver_version > 0 ? Device().driver_version : CUDA_VERSION);
  static std::once_flag atfork_once;
  std::call_once(atfork_once, [] { pthread_atfork(ForkPrepare, ForkParent, ForkChild); });
  g_conn.store(conn.release(), std::memory_order_release);
  g_initialized.store(true, std::memory_order_release);
  return CUDA_SUCCESS;
}

int DriverVersion() {
  const int v = g_driver_version.load(std::memory_order_relaxed);
  return v > 0 ? v : CUDA_VERSION;
}

CUresult Rpc(wire::Op op, const wire::Writer& body, Reply* reply, const void* tail, size_t tail_len,
             void* out_tail, size_t out_tail_len) {
  Connection* c = g_conn.load(std::memory_order_acquire);
  if (c == nullptr) return CUDA_ERROR_NOT_INITIALIZED;
  const CUresult r = c->Call(op, body, reply, tail, tail_len, out_tail, out_tail_len);
  CaptureNoteResult(r);  // woolyd's driver may have invalidated a capture
  return r;
}

CUresult RpcPipelined(wire::Op op, std::span<const PipelinedRequest> requests, size_t window) {
  Connection* c = g_conn.load(std::memory_order_acquire);
  if (c == nullptr) return CUDA_ERROR_NOT_INITIALIZED;
  const CUresult r = c->CallPipelined(op, requests, window);
  CaptureNoteResult(r);
  return r;
}

namespace {
// Runs at exit (and at dlclose, which never happens to a libcuda).
__attribute__((destructor)) void SayGoodbye() {
  PrintApiStats();
  if (Connection* c = g_conn.load(std::memory_order_acquire)) {
    c->PrintStats();
    c->GoodbyeAtExit();
  }
}

bool AsyncEnabled() {
  static const bool on = [] {
    return wire::Setting(wire::kEnvAsync) != "0";  // env, then client config
  }();
  return on;
}
}  // namespace

CUresult Post(wire::Op op, const wire::Writer& body, const void* tail, size_t tail_len) {
  // While a capture is in progress every call waits: woolyd's answer may
  // invalidate the capture, which the application must see at the call.
  if (!AsyncEnabled() || AnyCaptureInProgress()) return Rpc(op, body, nullptr, tail, tail_len);
  Connection* c = g_conn.load(std::memory_order_acquire);
  if (c == nullptr) return CUDA_ERROR_NOT_INITIALIZED;
  return c->Post(op, body, tail, tail_len);
}

CUresult RpcWithFd(wire::Op op, const wire::Writer& body, int fd) {
  Connection* c = g_conn.load(std::memory_order_acquire);
  if (c == nullptr) return CUDA_ERROR_NOT_INITIALIZED;
  return c->CallWithFd(op, body, fd);
}

bool ConnectionAlive() {
  Connection* c = g_conn.load(std::memory_order_acquire);
  return c != nullptr && c->PeerAlive();
}

bool SharedMemoryChannel() {
  Connection* c = g_conn.load(std::memory_order_acquire);
  return c != nullptr && c->shared_memory();
}

CUresult BadReply(wire::Op op) {
  WLOG_ERROR("woolyd sent a malformed %s reply", wire::OpName(static_cast<uint16_t>(op)));
  return CUDA_ERROR_UNKNOWN;
}

AllocTable& Allocations() { return Allocs(); }
ArenaAllocator& Arenas() { return ArenasImpl(); }

uint64_t ForkGeneration() { return g_fork_generation.load(std::memory_order_relaxed); }

// --- contexts

Context* PrimaryContext() { return Primary(); }
int PrimaryRefcount() { return g_primary_refcount.load(std::memory_order_acquire); }
void PrimaryRetain() { g_primary_refcount.fetch_add(1, std::memory_order_acq_rel); }
int PrimaryRelease() {
  int cur = g_primary_refcount.load();
  while (cur > 0 && !g_primary_refcount.compare_exchange_weak(cur, cur - 1)) {
  }
  return cur > 0 ? cur - 1 : -1;
}
void PrimaryResetCount() { g_primary_refcount.store(0); }

Context* NewContext(unsigned flags) {
  Context* c = new Context();
  c->device = 0;
  c->id = g_next_ctx_id.fetch_add(1);
  c->primary = false;
  c->flags.store(flags);
  return c;
}

void RetireContext(Context* ctx) { ctx->tag.store(Tag::kDead); }

bool ContextUsable(const Context* ctx) {
  if (ctx == nullptr || !ctx->Is(Tag::kContext)) return false;
  return !ctx->primary || g_primary_refcount.load(std::memory_order_acquire) > 0;
}

Context* CurrentContext() {
  const std::vector<Context*>& s = t_contexts.stack;
  return s.empty() ? nullptr : s.back();
}

void SetCurrentContext(Context* ctx) {
  std::vector<Context*>& s = t_contexts.stack;
  if (ctx == nullptr) {
    if (!s.empty()) s.pop_back();
  } else if (s.empty()) {
    s.push_back(ctx);
  } else {
    s.back() = ctx;
  }
}

void PushContext(Context* ctx) { t_contexts.stack.push_back(ctx); }

Context* PopContext() {
  std::vector<Context*>& s = t_contexts.stack;
  if (s.empty()) return nullptr;
  Context* c = s.back();
  s.pop_back();
  return c;
}

void RemoveFromStack(Context* ctx) {
  std::vector<Context*>& s = t_contexts.stack;
  s.erase(std::remove(s.begin(), s.end(), ctx), s.end());
}

CUresult RequireContext(Context** out) {
  if (!Initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  Context* c = CurrentContext();
  if (c == nullptr) return CUDA_ERROR_INVALID_CONTEXT;
  if (!ContextUsable(c)) {
    return c->Is(Tag::kContext) ? CUDA_ERROR_INVALID_CONTEXT : CUDA_ERROR_CONTEXT_IS_DESTROYED;
  }
  if (out != nullptr) *out = c;
  return CUDA_SUCCESS;
}

// --- streams

CUresult PerThreadStream(Stream** out) {
  ThreadStream& ts = t_stream;
  const uint64_t gen = g_fork_generation.load(std::memory_order_relaxed);
  if (ts.stream != nullptr && ts.generation == gen) {
    *out = ts.stream;
    return CUDA_SUCCESS;
  }
  if (ts.stream != nullptr) {  // created before a fork: the parent's
    Destroy(ts.stream);
    ts.stream = nullptr;
  }
  // The per-thread default stream synchronizes with the legacy stream like
  // any blocking stream, so it is an ordinary stream with default flags.
  wire::Writer w;
  w.Put<uint32_t>(CU_STREAM_DEFAULT).Put<int32_t>(0);
  Reply reply;
  CUresult r = Rpc(wire::Op::kStreamCreate, w, &reply);
  if (r != CUDA_SUCCESS) return r;
  wire::Reader rd = reply.reader();
  const uint64_t id = rd.Get<uint64_t>();
  if (!rd.ok()) return BadReply(wire::Op::kStreamCreate);
  Stream* s = new Stream();
  s->id = id;
  s->flags = CU_STREAM_DEFAULT;
  s->priority = 0;
  s->ctx = nullptr;  // not owned by a context: it lives as long as its thread
  s->unique_id = NextStreamUniqueId();
  ts.stream = s;
  ts.generation = gen;
  *out = s;
  return CUDA_SUCCESS;
}

CUresult ResolveStream(CUstream stream, bool ptds, uint64_t* id) {
  if (stream == nullptr && !ptds) {
    *id = wire::kStreamNull;
    return CUDA_SUCCESS;
  }
  if (stream == CU_STREAM_LEGACY) {
    *id = wire::kStreamLegacy;
    return CUDA_SUCCESS;
  }
  if (stream == nullptr || stream == CU_STREAM_PER_THREAD) {
    Stream* s = nullptr;
    CUresult r = PerThreadStream(&s);
    if (r != CUDA_SUCCESS) return r;
    *id = s->id;
    return CUDA_SUCCESS;
  }
  Stream* s = As<Stream>(stream, Tag::kStream);
  if (s == nullptr) return CUDA_ERROR_INVALID_HANDLE;
  *id = s->id;
  return CUDA_SUCCESS;
}

unsigned long long NextStreamUniqueId() { return g_next_stream_id.fetch_add(1); }

void ResetForTesting() {
  std::lock_guard<std::mutex> lock(InitMutex());
  g_initialized.store(false);
  if (Connection* c = g_conn.exchange(nullptr)) delete c;
  g_device.store(nullptr);  // the old one is leaked: a racing reader may hold it
  g_primary_refcount.store(0);
  Primary()->tag.store(Tag::kContext);
  Primary()->flags.store(0);
  t_contexts.stack.clear();
  if (t_stream.stream != nullptr) {
    Destroy(t_stream.stream);
    t_stream.stream = nullptr;
  }
  Allocs().Clear();
  DropArenas();
  ForgetAllResources();
  InvalidateLimitCache();
  InvalidateOccupancyCache();
}

}  // namespace wooly::client
