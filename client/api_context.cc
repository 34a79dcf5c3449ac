// The context model, answered locally: the primary context
// (cuDevicePrimaryCtx*), extra client-side contexts (cuCtxCreate/Destroy),
// and the per-thread context stack. Every context maps onto the one context
// woolyd runs this client in; a context only scopes which resources its
// destruction releases.
#include "api.h"
#include "driver.h"
#include "export_tables.h"
#include "resources.h"

namespace wooly::client {
namespace {

// The CUDA 3.2+ context ABI, which is what the real driver reports.
constexpr unsigned kContextApiVersion = 3020;

CUresult CheckDevice(CUdevice dev) {
  if (!Initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  if (dev != 0) return CUDA_ERROR_INVALID_DEVICE;
  return CUDA_SUCCESS;
}

bool ValidContextFlags(unsigned flags) {
  const unsigned sched = flags & CU_CTX_SCHED_MASK;
  if (sched != CU_CTX_SCHED_AUTO && sched != CU_CTX_SCHED_SPIN && sched != CU_CTX_SCHED_YIELD &&
      sched != CU_CTX_SCHED_BLOCKING_SYNC) {
    return false;
  }
  return (flags & ~static_cast<unsigned>(CU_CTX_FLAGS_MASK)) == 0;
}

// `ctx`, or the current context when null. CUDA_ERROR_INVALID_CONTEXT when
// there is none or it is not a context.
CUresult ContextOrCurrent(CUcontext ctx, Context** out) {
  if (!Initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  Context* c = ctx != nullptr ? AsContext(ctx) : CurrentContext();
  if (c == nullptr || !c->Is(Tag::kContext)) return CUDA_ERROR_INVALID_CONTEXT;
  *out = c;
  return CUDA_SUCCESS;
}

CUresult PrimaryRelease(CUdevice dev) {
  if (CUresult r = CheckDevice(dev); r != CUDA_SUCCESS) return r;
  const int left = wooly::client::PrimaryRelease();
  if (left < 0) return CUDA_ERROR_INVALID_CONTEXT;  // not retained
  if (left == 0) {
    // Context-local-storage destructors first: they may still use the context.
    RunContextLocalDestructors(PrimaryContext());
    ReleaseContextResources(PrimaryContext());
  }
  return CUDA_SUCCESS;
}

CUresult PrimarySetFlags(CUdevice dev, unsigned flags) {
  if (CUresult r = CheckDevice(dev); r != CUDA_SUCCESS) return r;
  if (!ValidContextFlags(flags)) return CUDA_ERROR_INVALID_VALUE;
  PrimaryContext()->flags.store(flags);
  return CUDA_SUCCESS;
}

CUresult PrimaryReset(CUdevice dev) {
  if (CUresult r = CheckDevice(dev); r != CUDA_SUCCESS) return r;
  RunContextLocalDestructors(PrimaryContext());
  ReleaseContextResources(PrimaryContext());
  PrimaryResetCount();
  PrimaryContext()->flags.store(0);
  return CUDA_SUCCESS;
}

CUresult CtxDestroy(CUcontext ctx) {
  if (!Initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  Context* c = AsContext(ctx);
  if (c == nullptr) return CUDA_ERROR_INVALID_CONTEXT;
  // The primary context is released with cuDevicePrimaryCtxRelease.
  if (c->primary) return CUDA_ERROR_INVALID_CONTEXT;
  RunContextLocalDestructors(c);
  ReleaseContextResources(c);
  RemoveFromStack(c);
  RetireContext(c);
  return CUDA_SUCCESS;
}

CUresult CtxPush(CUcontext ctx) {
  if (!Initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  if (ctx == nullptr) return CUDA_ERROR_INVALID_VALUE;
  Context* c = AsContext(ctx);
  if (c == nullptr) return CUDA_ERROR_INVALID_CONTEXT;
  PushContext(c);
  return CUDA_SUCCESS;
}

CUresult CtxPop(CUcontext* pctx) {
  if (!Initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  if (CurrentContext() == nullptr) return CUDA_ERROR_INVALID_CONTEXT;
  Context* c = PopContext();
  if (pctx != nullptr) *pctx = reinterpret_cast<CUcontext>(c);
  return CUDA_SUCCESS;
}

CUresult CtxGetDevice(CUdevice* device, CUcontext ctx) {
  if (!Initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  if (device == nullptr) return CUDA_ERROR_INVALID_VALUE;
  Context* c = nullptr;
  if (ctx == nullptr) {
    if (CUresult r = RequireContext(&c); r != CUDA_SUCCESS) return r;
  } else {
    c = AsContext(ctx);
    if (c == nullptr) return CUDA_ERROR_INVALID_CONTEXT;
  }
  *device = c->device;
  return CUDA_SUCCESS;
}

}  // namespace
}  // namespace wooly::client

using namespace wooly::client;  // NOLINT: the C entry points live at global scope
namespace wire = ::wooly::wire;

WOOLY_EXPORT CUresult CUDAAPI cuDevicePrimaryCtxRetain(CUcontext* pctx, CUdevice dev) {
  WOOLY_API_BODY({
    if (CUresult r = CheckDevice(dev); r != CUDA_SUCCESS) return r;
    if (pctx == nullptr) return CUDA_ERROR_INVALID_VALUE;
    PrimaryRetain();
    *pctx = reinterpret_cast<CUcontext>(PrimaryContext());
    return CUDA_SUCCESS;
  });
}

WOOLY_EXPORT CUresult CUDAAPI cuDevicePrimaryCtxRelease(CUdevice dev) {
  WOOLY_API_BODY(return PrimaryRelease(dev););
}
WOOLY_EXPORT CUresult CUDAAPI cuDevicePrimaryCtxRelease_v2(CUdevice dev) {
  WOOLY_API_BODY(return PrimaryRelease(dev););
}

WOOLY_EXPORT CUresult CUDAAPI cuDevicePrimaryCtxGetState(CUdevice dev, unsigned int* flags,
                                                         int* active) {
  WOOLY_API_BODY({
    if (CUresult r = CheckDevice(dev); r != CUDA_SUCCESS) return r;
    if (flags == nullptr || active == nullptr) return CUDA_ERROR_INVALID_VALUE;
    *flags = PrimaryContext()->flags.load(std::memory_order_relaxed);
    *active = PrimaryRefcount() > 0 ? 1 : 0;
    return CUDA_SUCCESS;
  });
}

WOOLY_EXPORT CUresult CUDAAPI cuDevicePrimaryCtxSetFlags(CUdevice dev, unsigned int flags) {
  WOOLY_API_BODY(return PrimarySetFlags(dev, flags););
}
WOOLY_EXPORT CUresult CUDAAPI cuDevicePrimaryCtxSetFlags_v2(CUdevice dev, unsigned int flags) {
  WOOLY_API_BODY(return PrimarySetFlags(dev, flags););
}

WOOLY_EXPORT CUresult CUDAAPI cuDevicePrimaryCtxReset(CUdevice dev) {
  WOOLY_API_BODY(return PrimaryReset(dev););
}
WOOLY_EXPORT CUresult CUDAAPI cuDevicePrimaryCtxReset_v2(CUdevice dev) {
  WOOLY_API_BODY(return PrimaryReset(dev););
}

WOOLY_EXPORT CUresult CUDAAPI cuCtxCreate_v4(CUcontext* pctx, CUctxCreateParams* params,
                                             unsigned int flags, CUdevice dev) {
  WOOLY_API_BODY({
    if (CUresult r = CheckDevice(dev); r != CUDA_SUCCESS) return r;
    if (pctx == nullptr) return CUDA_ERROR_INVALID_VALUE;
    if (!ValidContextFlags(flags)) return CUDA_ERROR_INVALID_VALUE;
    if (params != nullptr && (params->numExecAffinityParams > 0 || params->cigParams != nullptr)) {
      // Execution affinity and CIG need a context of their own on the GPU.
      return CUDA_ERROR_NOT_SUPPORTED;
    }
    Context* c = NewContext(flags);
    PushContext(c);
    *pctx = reinterpret_cast<CUcontext>(c);
    return CUDA_SUCCESS;
  });
}

WOOLY_EXPORT CUresult CUDAAPI cuCtxDestroy(CUcontext ctx) {
  WOOLY_API_BODY(return CtxDestroy(ctx););
}
WOOLY_EXPORT CUresult CUDAAPI cuCtxDestroy_v2(CUcontext ctx) {
  WOOLY_API_BODY(return CtxDestroy(ctx););
}

WOOLY_EXPORT CUresult CUDAAPI cuCtxGetCurrent(CUcontext* pctx) {
  WOOLY_API_BODY({
    if (!Initialized()) return CUDA_ERROR_NOT_INITIALIZED;
    if (pctx == nullptr) return CUDA_ERROR_INVALID_VALUE;
    *pctx = reinterpret_cast<CUcontext>(CurrentContext());
    return CUDA_SUCCESS;
  });
}

WOOLY_EXPORT CUresult CUDAAPI cuCtxSetCurrent(CUcontext ctx) {
  WOOLY_API_BODY({
    if (!Initialized()) return CUDA_ERROR_NOT_INITIALIZED;
    Context* c = nullptr;
    if (ctx != nullptr) {
      c = AsContext(ctx);
      if (c == nullptr) return CUDA_ERROR_INVALID_CONTEXT;
    }
    SetCurrentContext(c);
    return CUDA_SUCCESS;
  });
}

WOOLY_EXPORT CUresult CUDAAPI cuCtxPushCurrent(CUcontext ctx) {
  WOOLY_API_BODY(return CtxPush(ctx););
}
WOOLY_EXPORT CUresult CUDAAPI cuCtxPushCurrent_v2(CUcontext ctx) {
  WOOLY_API_BODY(return CtxPush(ctx););
}

WOOLY_EXPORT CUresult CUDAAPI cuCtxPopCurrent(CUcontext* pctx) {
  WOOLY_API_BODY(return CtxPop(pctx););
}
WOOLY_EXPORT CUresult CUDAAPI cuCtxPopCurrent_v2(CUcontext* pctx) {
  WOOLY_API_BODY(return CtxPop(pctx););
}

WOOLY_EXPORT CUresult CUDAAPI cuCtxGetDevice(CUdevice* device) {
  WOOLY_API_BODY(return CtxGetDevice(device, nullptr););
}
WOOLY_EXPORT CUresult CUDAAPI cuCtxGetDevice_v2(CUdevice* device, CUcontext ctx) {
  WOOLY_API_BODY(return CtxGetDevice(device, ctx););
}

WOOLY_EXPORT CUresult CUDAAPI cuCtxGetApiVersion(CUcontext ctx, unsigned int* version) {
  WOOLY_API_BODY({
    Context* c = nullptr;
    if (CUresult r = ContextOrCurrent(ctx, &c); r != CUDA_SUCCESS) return r;
    if (version == nullptr) return CUDA_ERROR_INVALID_VALUE;
    *version = kContextApiVersion;
    return CUDA_SUCCESS;
  });
}

WOOLY_EXPORT CUresult CUDAAPI cuCtxGetFlags(unsigned int* flags) {
  WOOLY_API_BODY({
    Context* c = nullptr;
    if (CUresult r = RequireContext(&c); r != CUDA_SUCCESS) return r;
    if (flags == nullptr) return CUDA_ERROR_INVALID_VALUE;
    *flags = c->flags.load(std::memory_order_relaxed);
    return CUDA_SUCCESS;
  });
}

WOOLY_EXPORT CUresult CUDAAPI cuCtxGetId(CUcontext ctx, unsigned long long* ctxId) {
  WOOLY_API_BODY({
    Context* c = nullptr;
    if (CUresult r = ContextOrCurrent(ctx, &c); r != CUDA_SUCCESS) return r;
    if (ctxId == nullptr) return CUDA_ERROR_INVALID_VALUE;
    *ctxId = c->id;
    return CUDA_SUCCESS;
  });
}

WOOLY_EXPORT CUresult CUDAAPI cuCtxGetStreamPriorityRange(int* leastPriority,
                                                          int* greatestPriority) {
  WOOLY_API_BODY({
    if (CUresult r = RequireContext(); r != CUDA_SUCCESS) return r;
    if (leastPriority != nullptr) *leastPriority = Device().stream_priority_least;
    if (greatestPriority != nullptr) *greatestPriority = Device().stream_priority_greatest;
    return CUDA_SUCCESS;
  });
}
