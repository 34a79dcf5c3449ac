// Streams, events and context synchronization. Creation, destruction and
// anything that waits are forwarded; stream properties are local.
#include <algorithm>

#include "api.h"
#include "capture.h"
#include "driver.h"
#include "resources.h"

namespace wooly::client {
namespace {

// cuStreamGetId of the legacy default stream.
constexpr unsigned long long kLegacyStreamUniqueId = 1;

CUresult SendId(wire::Op op, uint64_t id) {
  wire::Writer w;
  w.Put<uint64_t>(id);
  return Rpc(op, w);
}

CUresult CreateStream(CUstream* ph, unsigned flags, int priority) {
  Context* ctx = nullptr;
  if (CUresult r = RequireContext(&ctx); r != CUDA_SUCCESS) return r;
  if (ph == nullptr) return CUDA_ERROR_INVALID_VALUE;
  if ((flags & ~static_cast<unsigned>(CU_STREAM_NON_BLOCKING)) != 0) {
    return CUDA_ERROR_INVALID_VALUE;
  }
  // Like the driver, clamp to [greatest, least] (greatest is numerically lower).
  const int least = Device().stream_priority_least;
  const int greatest = Device().stream_priority_greatest;
  priority = std::clamp(priority, std::min(least, greatest), std::max(least, greatest));
  wire::Writer w;
  w.Put<uint32_t>(flags).Put<int32_t>(priority);
  Reply reply;
  if (CUresult r = Rpc(wire::Op::kStreamCreate, w, &reply); r != CUDA_SUCCESS) return r;
  wire::Reader rd = reply.reader();
  const uint64_t id = rd.Get<uint64_t>();
  if (!rd.ok()) return BadReply(wire::Op::kStreamCreate);
  Stream* s = new Stream();
  s->id = id;
  s->flags = flags;
  s->priority = priority;
  s->ctx = ctx;
  s->unique_id = NextStreamUniqueId();
  Track(s);
  *ph = reinterpret_cast<CUstream>(s);
  return CUDA_SUCCESS;
}

CUresult DestroyStream(CUstream h) {
  if (!Initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  Stream* s = As<Stream>(h, Tag::kStream);
  if (s == nullptr) return CUDA_ERROR_INVALID_HANDLE;
  if (CUresult r = SendId(wire::Op::kStreamDestroy, s->id); r != CUDA_SUCCESS) return r;
  CaptureForgetStream(s->id);
  Untrack(s);
  Destroy(s);
  return CUDA_SUCCESS;
}

CUresult StreamOp(wire::Op op, CUstream h, bool ptds) {
  if (CUresult r = RequireContext(); r != CUDA_SUCCESS) return r;
  uint64_t id = 0;
  if (CUresult r = ResolveStream(h, ptds, &id); r != CUDA_SUCCESS) return r;
  if (CUresult r = CaptureCheckWork(id); r != CUDA_SUCCESS) return r;
  return SendId(op, id);
}

CUresult WaitEvent(CUstream h, CUevent ev, unsigned flags, bool ptds) {
  if (CUresult r = RequireContext(); r != CUDA_SUCCESS) return r;
  Event* e = AsEvent(ev);
  if (e == nullptr) return CUDA_ERROR_INVALID_HANDLE;
  uint64_t id = 0;
  if (CUresult r = ResolveStream(h, ptds, &id); r != CUDA_SUCCESS) return r;
  if (CUresult r = CaptureCheckWork(id); r != CUDA_SUCCESS) return r;
  wire::Writer w;
  w.Put<uint64_t>(id).Put<uint64_t>(e->id).Put<uint32_t>(flags);
  if (CUresult r = Post(wire::Op::kStreamWaitEvent, w); r != CUDA_SUCCESS) return r;
  CaptureNoteStreamWait(h, id, e->id);  // may join the stream to a capture
  return CUDA_SUCCESS;
}

// The stream object behind a handle for property queries: null for the
// legacy stream, the per-thread stream for CU_STREAM_PER_THREAD (and for a
// null handle in _ptsz entry points).
CUresult StreamForQuery(CUstream h, bool ptds, Stream** out) {
  if (!Initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  *out = nullptr;
  if (h == CU_STREAM_LEGACY || (h == nullptr && !ptds)) return CUDA_SUCCESS;
  if (h == nullptr || h == CU_STREAM_PER_THREAD) return PerThreadStream(out);
  *out = As<Stream>(h, Tag::kStream);
  return *out != nullptr ? CUDA_SUCCESS : CUDA_ERROR_INVALID_HANDLE;
}

// Priority and flags of special streams need no server stream.
bool IsSpecial(CUstream h) {
  return h == nullptr || h == CU_STREAM_LEGACY || h == CU_STREAM_PER_THREAD;
}

CUresult GetPriority(CUstream h, int* priority, bool ptds) {
  if (!Initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  if (priority == nullptr) return CUDA_ERROR_INVALID_VALUE;
  if (IsSpecial(h)) {
    *priority = 0;
    return CUDA_SUCCESS;
  }
  Stream* s = As<Stream>(h, Tag::kStream);
  if (s == nullptr) return CUDA_ERROR_INVALID_HANDLE;
  *priority = s->priority;
  return CUDA_SUCCESS;
}

CUresult GetFlags(CUstream h, unsigned* flags, bool ptds) {
  if (!Initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  if (flags == nullptr) return CUDA_ERROR_INVALID_VALUE;
  if (IsSpecial(h)) {
    *flags = CU_STREAM_DEFAULT;
    return CUDA_SUCCESS;
  }
  Stream* s = As<Stream>(h, Tag::kStream);
  if (s == nullptr) return CUDA_ERROR_INVALID_HANDLE;
  *flags = s->flags;
  return CUDA_SUCCESS;
}

CUresult GetCtx(CUstream h, CUcontext* pctx, bool ptds) {
  if (!Initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  if (pctx == nullptr) return CUDA_ERROR_INVALID_VALUE;
  Context* ctx = nullptr;
  if (!IsSpecial(h)) {
    Stream* s = As<Stream>(h, Tag::kStream);
    if (s == nullptr) return CUDA_ERROR_INVALID_HANDLE;
    ctx = s->ctx;
  }
  if (ctx == nullptr) {
    // Special streams belong to whatever context is current.
    if (CUresult r = RequireContext(&ctx); r != CUDA_SUCCESS) return r;
  }
  *pctx = reinterpret_cast<CUcontext>(ctx);
  return CUDA_SUCCESS;
}

CUresult GetDevice(CUstream h, CUdevice* device, bool ptds) {
  if (!Initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  if (device == nullptr) return CUDA_ERROR_INVALID_VALUE;
  if (!IsSpecial(h) && As<Stream>(h, Tag::kStream) == nullptr) return CUDA_ERROR_INVALID_HANDLE;
  *device = 0;
  return CUDA_SUCCESS;
}

CUresult GetId(CUstream h, unsigned long long* id, bool ptds) {
  if (id == nullptr) return CUDA_ERROR_INVALID_VALUE;
  Stream* s = nullptr;
  if (CUresult r = StreamForQuery(h, ptds, &s); r != CUDA_SUCCESS) return r;
  *id = s != nullptr ? s->unique_id : kLegacyStreamUniqueId;
  return CUDA_SUCCESS;
}

// --- events

CUresult CreateEvent(CUevent* ph, unsigned flags) {
  Context* ctx = nullptr;
  if (CUresult r = RequireContext(&ctx); r != CUDA_SUCCESS) return r;
  if (ph == nullptr) return CUDA_ERROR_INVALID_VALUE;
  const unsigned known =
      CU_EVENT_DEFAULT | CU_EVENT_BLOCKING_SYNC | CU_EVENT_DISABLE_TIMING | CU_EVENT_INTERPROCESS;
  if ((flags & ~known) != 0) return CUDA_ERROR_INVALID_VALUE;
  // An interprocess event must have timing disabled.
  if ((flags & CU_EVENT_INTERPROCESS) && !(flags & CU_EVENT_DISABLE_TIMING)) {
    return CUDA_ERROR_INVALID_VALUE;
  }
  wire::Writer w;
  w.Put<uint32_t>(flags);
  Reply reply;
  if (CUresult r = Rpc(wire::Op::kEventCreate, w, &reply); r != CUDA_SUCCESS) return r;
  wire::Reader rd = reply.reader();
  const uint64_t id = rd.Get<uint64_t>();
  if (!rd.ok()) return BadReply(wire::Op::kEventCreate);
  Event* e = new Event();
  e->id = id;
  e->flags = flags;
  e->ctx = ctx;
  Track(e);
  *ph = reinterpret_cast<CUevent>(e);
  return CUDA_SUCCESS;
}

CUresult RecordEvent(CUevent ev, CUstream h, unsigned flags, bool ptds) {
  if (CUresult r = RequireContext(); r != CUDA_SUCCESS) return r;
  Event* e = AsEvent(ev);
  if (e == nullptr) return CUDA_ERROR_INVALID_HANDLE;
  uint64_t id = 0;
  if (CUresult r = ResolveStream(h, ptds, &id); r != CUDA_SUCCESS) return r;
  if (CUresult r = CaptureCheckWork(id); r != CUDA_SUCCESS) return r;
  wire::Writer w;
  w.Put<uint64_t>(e->id).Put<uint64_t>(id).Put<uint32_t>(flags);
  if (CUresult r = Post(wire::Op::kEventRecord, w); r != CUDA_SUCCESS) return r;
  CaptureNoteEventRecord(e->id, id);
  return CUDA_SUCCESS;
}

CUresult EventOp(wire::Op op, CUevent ev) {
  if (!Initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  Event* e = AsEvent(ev);
  if (e == nullptr) return CUDA_ERROR_INVALID_HANDLE;
  // Querying or waiting for an event is a potentially unsafe call.
  if (CUresult r = CaptureCheckUnsafeCall(); r != CUDA_SUCCESS) return r;
  return SendId(op, e->id);
}

CUresult ElapsedTime(float* ms, CUevent start, CUevent end) {
  if (!Initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  if (ms == nullptr) return CUDA_ERROR_INVALID_VALUE;
  Event* a = AsEvent(start);
  Event* b = AsEvent(end);
  if (a == nullptr || b == nullptr) return CUDA_ERROR_INVALID_HANDLE;
  wire::Writer w;
  w.Put<uint64_t>(a->id).Put<uint64_t>(b->id);
  Reply reply;
  if (CUresult r = Rpc(wire::Op::kEventElapsedTime, w, &reply); r != CUDA_SUCCESS) return r;
  wire::Reader rd = reply.reader();
  const float v = rd.Get<float>();
  if (!rd.ok()) return BadReply(wire::Op::kEventElapsedTime);
  *ms = v;
  return CUDA_SUCCESS;
}

CUresult DestroyEvent(CUevent ev) {
  if (!Initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  Event* e = AsEvent(ev);
  if (e == nullptr) return CUDA_ERROR_INVALID_HANDLE;
  if (CUresult r = SendId(wire::Op::kEventDestroy, e->id); r != CUDA_SUCCESS) return r;
  CaptureForgetEvent(e->id);
  Untrack(e);
  Destroy(e);
  return CUDA_SUCCESS;
}

CUresult CtxSynchronize(CUcontext ctx) {
  if (ctx == nullptr) {
    if (CUresult r = RequireContext(); r != CUDA_SUCCESS) return r;
  } else {
    if (!Initialized()) return CUDA_ERROR_NOT_INITIALIZED;
    if (!ContextUsable(AsContext(ctx))) return CUDA_ERROR_INVALID_CONTEXT;
  }
  if (CUresult r = CaptureCheckCtxSynchronize(); r != CUDA_SUCCESS) return r;
  return Rpc(wire::Op::kCtxSynchronize, wire::Writer());
}

}  // namespace
}  // namespace wooly::client

using namespace wooly::client;  // NOLINT: the C entry points live at global scope
namespace wire = ::wooly::wire;

// --- streams

WOOLY_EXPORT CUresult CUDAAPI cuStreamCreate(CUstream* phStream, unsigned int Flags) {
  WOOLY_API_BODY(return CreateStream(phStream, Flags, 0););
}
WOOLY_EXPORT CUresult CUDAAPI cuStreamCreateWithPriority(CUstream* phStream, unsigned int flags,
                                                         int priority) {
  WOOLY_API_BODY(return CreateStream(phStream, flags, priority););
}
WOOLY_EXPORT CUresult CUDAAPI cuStreamDestroy(CUstream hStream) {
  WOOLY_API_BODY(return DestroyStream(hStream););
}
WOOLY_EXPORT CUresult CUDAAPI cuStreamDestroy_v2(CUstream hStream) {
  WOOLY_API_BODY(return DestroyStream(hStream););
}
WOOLY_EXPORT CUresult CUDAAPI cuStreamSynchronize(CUstream hStream) {
  WOOLY_API_BODY(return StreamOp(wire::Op::kStreamSynchronize, hStream, false););
}
WOOLY_EXPORT CUresult CUDAAPI cuStreamSynchronize_ptsz(CUstream hStream) {
  WOOLY_API_BODY(return StreamOp(wire::Op::kStreamSynchronize, hStream, true););
}
WOOLY_EXPORT CUresult CUDAAPI cuStreamQuery(CUstream hStream) {
  WOOLY_API_BODY(return StreamOp(wire::Op::kStreamQuery, hStream, false););
}
WOOLY_EXPORT CUresult CUDAAPI cuStreamQuery_ptsz(CUstream hStream) {
  WOOLY_API_BODY(return StreamOp(wire::Op::kStreamQuery, hStream, true););
}
WOOLY_EXPORT CUresult CUDAAPI cuStreamWaitEvent(CUstream hStream, CUevent hEvent,
                                                unsigned int Flags) {
  WOOLY_API_BODY(return WaitEvent(hStream, hEvent, Flags, false););
}
WOOLY_EXPORT CUresult CUDAAPI cuStreamWaitEvent_ptsz(CUstream hStream, CUevent hEvent,
                                                     unsigned int Flags) {
  WOOLY_API_BODY(return WaitEvent(hStream, hEvent, Flags, true););
}

WOOLY_EXPORT CUresult CUDAAPI cuStreamGetPriority(CUstream hStream, int* priority) {
  WOOLY_API_BODY(return GetPriority(hStream, priority, false););
}
WOOLY_EXPORT CUresult CUDAAPI cuStreamGetPriority_ptsz(CUstream hStream, int* priority) {
  WOOLY_API_BODY(return GetPriority(hStream, priority, true););
}
WOOLY_EXPORT CUresult CUDAAPI cuStreamGetFlags(CUstream hStream, unsigned int* flags) {
  WOOLY_API_BODY(return GetFlags(hStream, flags, false););
}
WOOLY_EXPORT CUresult CUDAAPI cuStreamGetFlags_ptsz(CUstream hStream, unsigned int* flags) {
  WOOLY_API_BODY(return GetFlags(hStream, flags, true););
}
WOOLY_EXPORT CUresult CUDAAPI cuStreamGetCtx(CUstream hStream, CUcontext* pctx) {
  WOOLY_API_BODY(return GetCtx(hStream, pctx, false););
}
WOOLY_EXPORT CUresult CUDAAPI cuStreamGetCtx_ptsz(CUstream hStream, CUcontext* pctx) {
  WOOLY_API_BODY(return GetCtx(hStream, pctx, true););
}
WOOLY_EXPORT CUresult CUDAAPI cuStreamGetDevice(CUstream hStream, CUdevice* device) {
  WOOLY_API_BODY(return GetDevice(hStream, device, false););
}
WOOLY_EXPORT CUresult CUDAAPI cuStreamGetDevice_ptsz(CUstream hStream, CUdevice* device) {
  WOOLY_API_BODY(return GetDevice(hStream, device, true););
}
WOOLY_EXPORT CUresult CUDAAPI cuStreamGetId(CUstream hStream, unsigned long long* streamId) {
  WOOLY_API_BODY(return GetId(hStream, streamId, false););
}
WOOLY_EXPORT CUresult CUDAAPI cuStreamGetId_ptsz(CUstream hStream, unsigned long long* streamId) {
  WOOLY_API_BODY(return GetId(hStream, streamId, true););
}

// --- events

WOOLY_EXPORT CUresult CUDAAPI cuEventCreate(CUevent* phEvent, unsigned int Flags) {
  WOOLY_API_BODY(return CreateEvent(phEvent, Flags););
}
WOOLY_EXPORT CUresult CUDAAPI cuEventRecord(CUevent hEvent, CUstream hStream) {
  WOOLY_API_BODY(return RecordEvent(hEvent, hStream, CU_EVENT_RECORD_DEFAULT, false););
}
WOOLY_EXPORT CUresult CUDAAPI cuEventRecord_ptsz(CUevent hEvent, CUstream hStream) {
  WOOLY_API_BODY(return RecordEvent(hEvent, hStream, CU_EVENT_RECORD_DEFAULT, true););
}
WOOLY_EXPORT CUresult CUDAAPI cuEventRecordWithFlags(CUevent hEvent, CUstream hStream,
                                                     unsigned int flags) {
  WOOLY_API_BODY(return RecordEvent(hEvent, hStream, flags, false););
}
WOOLY_EXPORT CUresult CUDAAPI cuEventRecordWithFlags_ptsz(CUevent hEvent, CUstream hStream,
                                                          unsigned int flags) {
  WOOLY_API_BODY(return RecordEvent(hEvent, hStream, flags, true););
}
WOOLY_EXPORT CUresult CUDAAPI cuEventSynchronize(CUevent hEvent) {
  WOOLY_API_BODY(return EventOp(wire::Op::kEventSynchronize, hEvent););
}
WOOLY_EXPORT CUresult CUDAAPI cuEventQuery(CUevent hEvent) {
  WOOLY_API_BODY(return EventOp(wire::Op::kEventQuery, hEvent););
}
WOOLY_EXPORT CUresult CUDAAPI cuEventElapsedTime(float* pMilliseconds, CUevent hStart,
                                                 CUevent hEnd) {
  WOOLY_API_BODY(return ElapsedTime(pMilliseconds, hStart, hEnd););
}
WOOLY_EXPORT CUresult CUDAAPI cuEventElapsedTime_v2(float* pMilliseconds, CUevent hStart,
                                                    CUevent hEnd) {
  WOOLY_API_BODY(return ElapsedTime(pMilliseconds, hStart, hEnd););
}
WOOLY_EXPORT CUresult CUDAAPI cuEventDestroy(CUevent hEvent) {
  WOOLY_API_BODY(return DestroyEvent(hEvent););
}
WOOLY_EXPORT CUresult CUDAAPI cuEventDestroy_v2(CUevent hEvent) {
  WOOLY_API_BODY(return DestroyEvent(hEvent););
}

// --- context synchronization

WOOLY_EXPORT CUresult CUDAAPI cuCtxSynchronize(void) {
  WOOLY_API_BODY(return CtxSynchronize(nullptr););
}
WOOLY_EXPORT CUresult CUDAAPI cuCtxSynchronize_v2(CUcontext ctx) {
  WOOLY_API_BODY(return CtxSynchronize(ctx););
}
