// Memory entry points, forwarded to woolyd: allocation, every cuMemcpy and
// cuMemset variant (sync and async, legacy and per-thread default stream).
//
// Sync copies are ordered on the null stream (or, for _ptds entry points,
// the per-thread stream) and sent with async=0. Bulk host data travels in
// pieces of at most wire::kCopyChunk bytes, straight from and into the
// application's buffers.
#include <algorithm>
#include <atomic>
#include <cstring>
#include <thread>
#include <vector>

#include "alloc_arena.h"
#include "api.h"
#include "capture.h"
#include "copy3d.h"
#include "driver.h"
#include "log.h"
#include "memory_ext.h"
#include "staging.h"
#include "wooly/proto/content_digest.h"
#include "wooly/proto/defaults.h"

namespace wooly::client {
namespace {

constexpr uint64_t kChunk = wire::kCopyChunk;
// Pageable host-to-device copies from this size on use the shared staging
// slots; smaller ones travel inside the request, which costs less.
constexpr uint64_t kStagedMin = 256u << 10;

// Local allocation (alloc_arena.h): blocks up to this size come from arenas
// of kArenaBytes that woolyd allocates for the context.
constexpr uint64_t kArenaBlockMax = 1u << 20;
constexpr uint64_t kArenaBytes = 8u << 20;

bool LocalAllocWanted(uint64_t bytesize) {
  return bytesize <= kArenaBlockMax && wire::Setting("WOOLY_LOCAL_ALLOC") != "0";
}

// A block for `ctx` from its arenas, asking woolyd for a new arena when none
// has room; 0 when woolyd refuses one (the caller allocates directly then).
uint64_t LocalAlloc(Context* ctx, uint64_t bytesize) {
  if (const uint64_t p = Arenas().Allocate(bytesize, ctx); p != 0) return p;
  wire::Writer w;
  w.Put<uint64_t>(kArenaBytes);
  Reply reply;
  if (Rpc(wire::Op::kMemAlloc, w, &reply) != CUDA_SUCCESS) return 0;
  wire::Reader rd = reply.reader();
  const uint64_t base = rd.Get<uint64_t>();
  if (!rd.ok() || base == 0) {
    if (rd.ok()) Rpc(wire::Op::kMemFree, wire::Writer().Put<uint64_t>(base));
    return 0;
  }
  ReserveDeviceRange(base, kArenaBytes);
  Arenas().AddArena(base, kArenaBytes, ctx);
  return Arenas().Allocate(bytesize, ctx);
}

}  // namespace

CUresult FreeLocalBlock(uint64_t ptr) {
  // The driver's cuMemFree waits for the device; woolyd does that, in
  // order, before any later command, so the block is only reused after the
  // work already sent has finished. Posted first: another thread may take
  // the block as soon as it is back in the arena. During a capture only the
  // streams outside it are waited for: captured work has not run, and
  // waiting for a capturing stream would invalidate the capture.
  wire::Writer w;
  if (AnyCaptureInProgress()) w.Put<uint8_t>(1);
  if (CUresult r = Post(wire::Op::kCtxSynchronize, w); r != CUDA_SUCCESS) return r;
  Allocations().Remove(ptr);
  return Arenas().Free(ptr) ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
}

namespace {

CUresult AllocImpl(CUdeviceptr* dptr, size_t bytesize) {
  Context* ctx = nullptr;
  if (CUresult r = RequireContext(&ctx); r != CUDA_SUCCESS) return r;
  if (dptr == nullptr || bytesize == 0) return CUDA_ERROR_INVALID_VALUE;
  if (CUresult r = CaptureCheckUnsafeCall(); r != CUDA_SUCCESS) return r;
  if (LocalAllocWanted(bytesize)) {
    if (const uint64_t p = LocalAlloc(ctx, bytesize); p != 0) {
      // The block's own record: its range, buffer id and context (the
      // arena's pages are reserved already).
      Allocations().Insert(p, bytesize, AllocTable::Kind::kAlloc, ctx, /*reserve=*/false);
      *dptr = static_cast<CUdeviceptr>(p);
      return CUDA_SUCCESS;
    }
  }
  wire::Writer w;
  w.Put<uint64_t>(bytesize);
  Reply reply;
  if (CUresult r = Rpc(wire::Op::kMemAlloc, w, &reply); r != CUDA_SUCCESS) return r;
  wire::Reader rd = reply.reader();
  const uint64_t ptr = rd.Get<uint64_t>();
  if (!rd.ok()) return BadReply(wire::Op::kMemAlloc);
  Allocations().Insert(ptr, bytesize, AllocTable::Kind::kAlloc, ctx);
  *dptr = static_cast<CUdeviceptr>(ptr);
  return CUDA_SUCCESS;
}

CUresult FreeImpl(CUdeviceptr dptr) {
  if (CUresult r = RequireContext(); r != CUDA_SUCCESS) return r;
  if (CUresult r = CaptureCheckUnsafeCall(); r != CUDA_SUCCESS) return r;
  // Freeing NULL is a no-op (cudaFree(nullptr) reaches here; cuBLAS does it).
  if (dptr == 0) return CUDA_SUCCESS;
  if (Arenas().IsBlock(dptr)) return FreeLocalBlock(dptr);
  // Inside an arena but not a live block (freed twice, or an interior
  // pointer): refused here, since woolyd would free the whole arena.
  if (Arenas().InArena(dptr)) return CUDA_ERROR_INVALID_VALUE;
  wire::Writer w;
  w.Put<uint64_t>(dptr);
  // An allocation base we handed out is freed without waiting: woolyd frees
  // it in order after the work already sent.
  AllocTable::Record rec;
  if (Allocations().Find(dptr, &rec) && rec.base == dptr && rec.kind == AllocTable::Kind::kAlloc &&
      rec.owner != VmmOwner() && !MemRecords().FindPoolAllocation(dptr, rec.buffer_id, nullptr)) {
    if (CUresult r = Post(wire::Op::kMemFree, w); r != CUDA_SUCCESS) return r;
    Allocations().Remove(dptr);
    return CUDA_SUCCESS;
  }
  if (CUresult r = Rpc(wire::Op::kMemFree, w); r != CUDA_SUCCESS) {
    WLOG_DEBUG("cuMemFree(0x%llx) refused by woolyd", static_cast<unsigned long long>(dptr));
    return r;
  }
  Allocations().Remove(dptr);
  return CUDA_SUCCESS;
}

bool SharedHost(const void* p, uint64_t n) {
  return HostAllocations().SharedRange(reinterpret_cast<uint64_t>(p), n);
}

// A copy between device memory and pinned memory woolyd maps too: a DMA
// straight from or into the application's buffer, nothing sent. Async
// copies to a known range do not wait and land in stream order; sync copies
// complete before returning, as CUDA's do.
CUresult SharedCopy(wire::Op op, uint64_t device, const void* host, size_t n, uint64_t stream,
                    bool async) {
  wire::Writer w;
  w.Put<uint64_t>(device)
      .Put<uint64_t>(reinterpret_cast<uint64_t>(host))
      .Put<uint64_t>(n)
      .Put<uint64_t>(stream)
      .Put<uint8_t>(async ? 1 : 0);
  if (async && Allocations().ContainsRange(device, n)) return Post(op, w);
  return Rpc(op, w);
}

// A copy whose bytes cross the connection, waiting for woolyd's answers:
// kMemcpyHtoD from `from` or kMemcpyDtoH into `into` (the other is null), in
// pieces of kPipelineChunk with kPipelineWindow in flight, so that woolyd
// copies one piece on the GPU while another crosses the socket (the socket
// buffers are the pipeline's stage). The connection is held per batch of
// kChunk bytes, no longer than one unpipelined piece used to hold it.
CUresult PipelinedCopy(wire::Op op, uint64_t device, const uint8_t* from, uint8_t* into, uint64_t n,
                       uint64_t stream, bool async) {
  std::vector<PipelinedRequest> batch;
  for (uint64_t at = 0; at < n; at += kChunk) {
    const uint64_t end = std::min<uint64_t>(n, at + kChunk);
    batch.clear();
    for (uint64_t off = at; off < end; off += kPipelineChunk) {
      const uint64_t len = std::min<uint64_t>(kPipelineChunk, end - off);
      PipelinedRequest& q = batch.emplace_back();
      q.body.Put<uint64_t>(device + off);
      if (into != nullptr) {
        q.body.Put<uint64_t>(len);
        q.out_tail = into + off;
        q.out_tail_len = len;
      } else {
        q.tail = from + off;
        q.tail_len = len;
      }
      q.body.Put<uint64_t>(stream).Put<uint8_t>(async ? 1 : 0);
    }
    if (CUresult r = RpcPipelined(op, batch, kPipelineWindow); r != CUDA_SUCCESS) return r;
  }
  return CUDA_SUCCESS;
}

// `staged`: whether large pageable copies may go through the shared staging
// slots; a dedup upload sends whole chunks in the request instead, so that
// woolyd sees (and hashes) each chunk in one copy.
CUresult CopyHtoDTransfer(uint64_t dst, const void* src, size_t n, uint64_t stream, bool async,
                          bool staged) {
  if (SharedHost(src, n)) {
    return SharedCopy(wire::Op::kMemcpyHtoDShared, dst, src, n, stream, async);
  }
  if (CUresult r = CaptureCheckCopy(stream, async, /*host=*/true); r != CUDA_SUCCESS) return r;
  const bool known = Allocations().ContainsRange(dst, n);
  // Large pageable copies on the same node: pipelined through shared
  // staging slots (staging.h).
  if (staged && known && n >= kStagedMin && SharedMemoryChannel()) {
    if (CUresult r = StagedHtoD(dst, src, n, stream); r != CUDA_ERROR_NOT_SUPPORTED) return r;
  }
  // The bytes travel with the request, so the source may be reused at once:
  // to a range this process knows the copy is sent without waiting, as the
  // driver returns from a pageable copy once it has staged the data. Any
  // other range waits for woolyd's answers, pipelined.
  const uint8_t* p = static_cast<const uint8_t*>(src);
  if (!known) return PipelinedCopy(wire::Op::kMemcpyHtoD, dst, p, nullptr, n, stream, async);
  for (uint64_t off = 0; off < n; off += kChunk) {
    const uint64_t len = std::min<uint64_t>(kChunk, n - off);
    wire::Writer w;
    w.Put<uint64_t>(dst + off).Put<uint64_t>(stream).Put<uint8_t>(1);
    if (CUresult r = Post(wire::Op::kMemcpyHtoD, w, p + off, len); r != CUDA_SUCCESS) return r;
  }
  return CUDA_SUCCESS;
}

// Weight dedup (WOOLY_DEDUP=1; docs/memory.md): woolyd's chunk size, once
// asked (kDedupProbe); 0 when dedup is not available to this client (off,
// no overcommit, or an older woolyd), -1 before asking.
std::atomic<int64_t> g_dedup_chunk{-1};

bool DedupWanted() {
  static const bool wanted = wire::Setting("WOOLY_DEDUP") == "1";
  return wanted;
}

// The chunk size, asking woolyd the first time; 0: no dedup.
uint64_t DedupChunkBytes() {
  int64_t known = g_dedup_chunk.load(std::memory_order_relaxed);
  if (known >= 0) return static_cast<uint64_t>(known);
  wire::Writer w;
  w.Put<uint64_t>(0).Put<uint32_t>(0);
  Reply reply;
  uint64_t chunk = 0;
  if (Rpc(wire::Op::kDedupProbe, w, &reply) == CUDA_SUCCESS) {
    wire::Reader rd = reply.reader();
    chunk = rd.Get<uint64_t>();
    if (!rd.ok()) chunk = 0;
  }
  // NOT_SUPPORTED (an older woolyd) or anything else: no dedup.
  g_dedup_chunk.store(static_cast<int64_t>(chunk), std::memory_order_relaxed);
  return chunk;
}

// Whether woolyd deduplicates chunks after a staged upload (kDedupPublish):
// -1 not asked yet, 0 no (an older woolyd), 1 yes.
std::atomic<int> g_dedup_publish{-1};

// kDedupPublish for chunks just copied the usual way: the first time as a
// call, to learn whether woolyd has it; then posted, since the copy is
// done either way and only a device error (reported like any posted
// work's) would matter.
CUresult PublishChunks(uint64_t chunk, const std::vector<uint64_t>& vas) {
  wire::Writer w;
  w.Put<uint64_t>(chunk).Put<uint32_t>(static_cast<uint32_t>(vas.size()));
  for (uint64_t va : vas) w.Put<uint64_t>(va);
  if (g_dedup_publish.load(std::memory_order_relaxed) == 1) {
    return Post(wire::Op::kDedupPublish, w);
  }
  Reply reply;
  const CUresult r = Rpc(wire::Op::kDedupPublish, w, &reply);
  if (r == CUDA_ERROR_NOT_SUPPORTED) {
    g_dedup_publish.store(0, std::memory_order_relaxed);
    return CUDA_SUCCESS;  // these chunks stay private; later ones go whole
  }
  if (r == CUDA_SUCCESS) g_dedup_publish.store(1, std::memory_order_relaxed);
  return r;
}

// Threads that hash one dedup copy's chunks (wire::ProcessWorkerPool's).
unsigned DedupHashThreads() { return std::clamp(std::thread::hardware_concurrency(), 1u, 16u); }

// A host-to-device copy with dedup: hashes each whole chunk of the
// destination allocation the copy covers, asks woolyd to attach those
// already resident (kDedupProbe), and sends only the rest. Whole chunks it
// sends go the usual staged way and woolyd then reads them back, hashes and
// publishes them (kDedupPublish); an older woolyd gets them as single
// copies, which it hashes on arrival. CUDA_ERROR_NOT_SUPPORTED: not
// applicable, copy as usual.
CUresult DedupHtoD(uint64_t dst, const void* src, size_t n, uint64_t stream, bool async) {
  if (!DedupWanted() || n < wire::kCopyChunk || AnyCaptureInProgress()) {
    return CUDA_ERROR_NOT_SUPPORTED;
  }
  AllocTable::Record rec;
  if (!Allocations().Find(dst, &rec) || rec.kind != AllocTable::Kind::kAlloc ||
      dst + n > rec.base + rec.size) {
    return CUDA_ERROR_NOT_SUPPORTED;
  }
  const uint64_t chunk = DedupChunkBytes();
  if (chunk == 0 || n < chunk) return CUDA_ERROR_NOT_SUPPORTED;
  // Chunks are carved from the allocation's base.
  const uint64_t first = rec.base + (dst - rec.base + chunk - 1) / chunk * chunk;
  const uint8_t* p = static_cast<const uint8_t*>(src);
  std::vector<uint64_t> vas;
  std::vector<wire::DigestInput> inputs;
  for (uint64_t va = first; va + chunk <= dst + n; va += chunk) {
    vas.push_back(va);
    inputs.push_back({p + (va - dst), chunk});
  }
  if (vas.empty()) return CUDA_ERROR_NOT_SUPPORTED;
  // All chunks of the copy at once, over one thread budget (a 10 GiB load
  // is hashing-bound: ~5 s on one core). Threads live only for this call.
  const std::vector<wire::ContentDigest> digests = wire::ContentDigests(inputs, DedupHashThreads());
  wire::Writer w;
  w.Put<uint64_t>(chunk).Put<uint32_t>(static_cast<uint32_t>(vas.size()));
  for (size_t i = 0; i < vas.size(); ++i) {
    w.Put<uint64_t>(vas[i]).Put<wire::ContentDigest>(digests[i]);
  }
  Reply reply;
  if (CUresult r = Rpc(wire::Op::kDedupProbe, w, &reply); r != CUDA_SUCCESS) {
    if (r == CUDA_ERROR_NOT_SUPPORTED) g_dedup_chunk.store(0, std::memory_order_relaxed);
    return r;
  }
  wire::Reader rd = reply.reader();
  const uint64_t server_chunk = rd.Get<uint64_t>();
  const uint32_t answered = rd.Get<uint32_t>();
  std::vector<uint8_t> attached(vas.size(), 0);
  for (uint32_t i = 0; i < answered && i < attached.size(); ++i) attached[i] = rd.Get<uint8_t>();
  if (!rd.ok()) return BadReply(wire::Op::kDedupProbe);
  if (server_chunk != chunk) {
    g_dedup_chunk.store(static_cast<int64_t>(server_chunk), std::memory_order_relaxed);
  }
  // Send what was not attached, in address order: the head before the
  // first whole chunk, each chunk not attached, the tail after the last.
  const bool publish_after = g_dedup_publish.load(std::memory_order_relaxed) != 0;
  std::vector<uint64_t> published;
  uint64_t at = dst;  // start of the run not yet sent
  auto send = [&](uint64_t from, uint64_t to, bool whole_chunk) -> CUresult {
    if (to <= from) return CUDA_SUCCESS;
    const bool staged = !whole_chunk || publish_after;
    return CopyHtoDTransfer(from, p + (from - dst), to - from, stream, async, staged);
  };
  for (size_t i = 0; i < vas.size(); ++i) {
    if (CUresult r = send(at, vas[i], false); r != CUDA_SUCCESS) return r;
    if (!attached[i]) {
      if (CUresult r = send(vas[i], vas[i] + chunk, true); r != CUDA_SUCCESS) return r;
      if (publish_after) published.push_back(vas[i]);
    }
    at = vas[i] + chunk;
  }
  if (CUresult r = send(at, dst + n, false); r != CUDA_SUCCESS) return r;
  return published.empty() ? CUDA_SUCCESS : PublishChunks(chunk, published);
}

CUresult CopyHtoD(uint64_t dst, const void* src, size_t n, uint64_t stream, bool async) {
  if (n == 0) return CUDA_SUCCESS;
  if (src == nullptr) return CUDA_ERROR_INVALID_VALUE;
  if (CUresult r = DedupHtoD(dst, src, n, stream, async); r != CUDA_ERROR_NOT_SUPPORTED) {
    return r;
  }
  return CopyHtoDTransfer(dst, src, n, stream, async, /*staged=*/true);
}

CUresult CopyDtoH(void* dst, uint64_t src, size_t n, uint64_t stream, bool async) {
  if (n == 0) return CUDA_SUCCESS;
  if (dst == nullptr) return CUDA_ERROR_INVALID_VALUE;
  if (SharedHost(dst, n)) {
    return SharedCopy(wire::Op::kMemcpyDtoHShared, src, dst, n, stream, async);
  }
  if (CUresult r = CaptureCheckCopy(stream, async, /*host=*/true); r != CUDA_SUCCESS) return r;
  // Same node: woolyd DMAs into shared staging and we copy out, pipelined.
  if (SharedMemoryChannel() && Allocations().ContainsRange(src, n)) {
    if (CUresult r = StagedDtoH(dst, src, n, stream); r != CUDA_ERROR_NOT_SUPPORTED) return r;
  }
  return PipelinedCopy(wire::Op::kMemcpyDtoH, src, nullptr, static_cast<uint8_t*>(dst), n, stream,
                       async);
}

CUresult CopyDtoD(uint64_t dst, uint64_t src, size_t n, uint64_t stream, bool async) {
  if (n == 0) return CUDA_SUCCESS;
  if (CUresult r = CaptureCheckCopy(stream, async, /*host=*/false); r != CUDA_SUCCESS) return r;
  // Device-to-device copies never make the host wait natively.
  const bool post = Allocations().ContainsRange(dst, n) && Allocations().ContainsRange(src, n);
  for (uint64_t off = 0; off < n; off += kChunk) {
    const uint64_t len = std::min<uint64_t>(kChunk, n - off);
    wire::Writer w;
    w.Put<uint64_t>(dst + off)
        .Put<uint64_t>(src + off)
        .Put<uint64_t>(len)
        .Put<uint64_t>(stream)
        .Put<uint8_t>(async || post ? 1 : 0);
    const CUresult r = post ? Post(wire::Op::kMemcpyDtoD, w) : Rpc(wire::Op::kMemcpyDtoD, w);
    if (r != CUDA_SUCCESS) return r;
  }
  return CUDA_SUCCESS;
}

// The common prologue of copies and memsets: a usable context and the wire
// stream. Sync entry points pass a null stream.
CUresult Prologue(CUstream stream, bool ptds, uint64_t* id) {
  if (CUresult r = RequireContext(); r != CUDA_SUCCESS) return r;
  return ResolveStream(stream, ptds, id);
}

CUresult HtoD(CUdeviceptr dst, const void* src, size_t n, CUstream s, bool ptds, bool async) {
  uint64_t id = 0;
  if (CUresult r = Prologue(s, ptds, &id); r != CUDA_SUCCESS) return r;
  return CopyHtoD(dst, src, n, id, async);
}

CUresult DtoH(void* dst, CUdeviceptr src, size_t n, CUstream s, bool ptds, bool async) {
  uint64_t id = 0;
  if (CUresult r = Prologue(s, ptds, &id); r != CUDA_SUCCESS) return r;
  return CopyDtoH(dst, src, n, id, async);
}

CUresult DtoD(CUdeviceptr dst, CUdeviceptr src, size_t n, CUstream s, bool ptds, bool async) {
  uint64_t id = 0;
  if (CUresult r = Prologue(s, ptds, &id); r != CUDA_SUCCESS) return r;
  return CopyDtoD(dst, src, n, id, async);
}

// cuMemcpy/cuMemcpyAsync: unified addressing, classified by the allocation
// table (anything not in it is host memory).
CUresult Unified(CUdeviceptr dst, CUdeviceptr src, size_t n, CUstream s, bool ptds, bool async) {
  uint64_t id = 0;
  if (CUresult r = Prologue(s, ptds, &id); r != CUDA_SUCCESS) return r;
  const bool dst_dev = Allocations().Contains(dst);
  const bool src_dev = Allocations().Contains(src);
  if (dst_dev && src_dev) return CopyDtoD(dst, src, n, id, async);
  if (dst_dev) return CopyHtoD(dst, reinterpret_cast<const void*>(src), n, id, async);
  if (src_dev) return CopyDtoH(reinterpret_cast<void*>(dst), src, n, id, async);
  if (n == 0) return CUDA_SUCCESS;
  if (dst == 0 || src == 0) return CUDA_ERROR_INVALID_VALUE;
  std::memmove(reinterpret_cast<void*>(dst), reinterpret_cast<const void*>(src), n);
  return CUDA_SUCCESS;
}

CUresult Peer(CUdeviceptr dst, CUcontext dst_ctx, CUdeviceptr src, CUcontext src_ctx, size_t n,
              CUstream s, bool ptds, bool async) {
  if (!Initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  if (AsContext(dst_ctx) == nullptr || AsContext(src_ctx) == nullptr) {
    return CUDA_ERROR_INVALID_CONTEXT;
  }
  // One device: a peer copy is a device-to-device copy.
  return DtoD(dst, src, n, s, ptds, async);
}

// --- 2D / 3D

CUresult MakeSide(CUmemorytype type, const void* host, CUdeviceptr device, size_t x, size_t y,
                  size_t z, size_t pitch, size_t height, CopySide* out) {
  CopySide side;
  switch (type) {
    case CU_MEMORYTYPE_HOST:
      side.is_host = true;
      side.host = static_cast<uint8_t*>(const_cast<void*>(host));
      break;
    case CU_MEMORYTYPE_DEVICE:
      side.device = device;
      break;
    case CU_MEMORYTYPE_UNIFIED:
      if (Allocations().Contains(device)) {
        side.device = device;
      } else {
        side.is_host = true;
        side.host = reinterpret_cast<uint8_t*>(device);
      }
      break;
    case CU_MEMORYTYPE_ARRAY:
      return CUDA_ERROR_NOT_SUPPORTED;  // CUDA arrays are not forwarded
    default:
      return CUDA_ERROR_INVALID_VALUE;
  }
  if (side.is_host && side.host == nullptr) return CUDA_ERROR_INVALID_VALUE;
  side.x_bytes = x;
  side.y = y;
  side.z = z;
  side.pitch = pitch;
  side.height = height;
  *out = side;
  return CUDA_SUCCESS;
}

// Fills in what a copy may leave unspecified and rejects bad geometry.
CUresult CheckGeometry(CopySide* s, uint64_t width, uint64_t height, uint64_t depth) {
  if (height > 1 || depth > 1) {
    if (s->pitch < s->x_bytes + width) return CUDA_ERROR_INVALID_VALUE;
  } else if (s->pitch == 0) {
    s->pitch = s->x_bytes + width;
  }
  if (depth > 1) {
    if (s->height < s->y + height) return CUDA_ERROR_INVALID_VALUE;
  } else if (s->height == 0) {
    s->height = s->y + height;
  }
  return CUDA_SUCCESS;
}

CUresult Copy3DImpl(CopySpec spec, CUstream s, bool ptds, bool async) {
  uint64_t id = 0;
  if (CUresult r = Prologue(s, ptds, &id); r != CUDA_SUCCESS) return r;
  if (CUresult r = CheckGeometry(&spec.src, spec.width_bytes, spec.height, spec.depth);
      r != CUDA_SUCCESS) {
    return r;
  }
  if (CUresult r = CheckGeometry(&spec.dst, spec.width_bytes, spec.height, spec.depth);
      r != CUDA_SUCCESS) {
    return r;
  }
  if (spec.width_bytes == 0 || spec.height == 0 || spec.depth == 0) return CUDA_SUCCESS;
  if (spec.src.is_host && spec.dst.is_host) {
    CopyHostToHost(spec);
    return CUDA_SUCCESS;
  }
  if (CUresult r = CaptureCheckCopy(id, async, spec.src.is_host || spec.dst.is_host);
      r != CUDA_SUCCESS) {
    return r;
  }
  std::vector<uint8_t> buf;
  for (const CopySpec& piece : SplitCopy(spec, kChunk)) {
    const uint64_t bytes = HostBytes(piece);
    wire::Writer w;
    wire::PutCopy3D(w, ToWire(piece));
    w.Put<uint64_t>(id).Put<uint8_t>(async ? 1 : 0);
    CUresult r;
    if (piece.src.is_host) {
      buf.resize(bytes);
      PackHostRows(piece, buf.data());
      r = Rpc(wire::Op::kMemcpy3D, w, nullptr, buf.data(), buf.size());
    } else if (piece.dst.is_host) {
      buf.resize(bytes);
      Reply reply;
      r = Rpc(wire::Op::kMemcpy3D, w, &reply, nullptr, 0, buf.data(), buf.size());
      if (r == CUDA_SUCCESS) {
        if (!reply.fields.empty()) return BadReply(wire::Op::kMemcpy3D);
        UnpackHostRows(piece, buf.data());
      }
    } else {
      r = Rpc(wire::Op::kMemcpy3D, w);
    }
    if (r != CUDA_SUCCESS) return r;
  }
  return CUDA_SUCCESS;
}

CUresult Copy2D(const CUDA_MEMCPY2D* c, CUstream s, bool ptds, bool async) {
  if (!Initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  if (c == nullptr) return CUDA_ERROR_INVALID_VALUE;
  CopySpec spec;
  if (CUresult r = MakeSide(c->srcMemoryType, c->srcHost, c->srcDevice, c->srcXInBytes, c->srcY, 0,
                            c->srcPitch, 0, &spec.src);
      r != CUDA_SUCCESS) {
    return r;
  }
  if (CUresult r = MakeSide(c->dstMemoryType, c->dstHost, c->dstDevice, c->dstXInBytes, c->dstY, 0,
                            c->dstPitch, 0, &spec.dst);
      r != CUDA_SUCCESS) {
    return r;
  }
  spec.width_bytes = c->WidthInBytes;
  spec.height = c->Height;
  spec.depth = 1;
  return Copy3DImpl(spec, s, ptds, async);
}

CUresult Copy3D(const CUDA_MEMCPY3D* c, CUstream s, bool ptds, bool async) {
  if (!Initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  if (c == nullptr || c->reserved0 != nullptr || c->reserved1 != nullptr) {
    return CUDA_ERROR_INVALID_VALUE;
  }
  CopySpec spec;
  if (CUresult r = MakeSide(c->srcMemoryType, c->srcHost, c->srcDevice, c->srcXInBytes, c->srcY,
                            c->srcZ, c->srcPitch, c->srcHeight, &spec.src);
      r != CUDA_SUCCESS) {
    return r;
  }
  if (CUresult r = MakeSide(c->dstMemoryType, c->dstHost, c->dstDevice, c->dstXInBytes, c->dstY,
                            c->dstZ, c->dstPitch, c->dstHeight, &spec.dst);
      r != CUDA_SUCCESS) {
    return r;
  }
  spec.width_bytes = c->WidthInBytes;
  spec.height = c->Height;
  spec.depth = c->Depth;
  return Copy3DImpl(spec, s, ptds, async);
}

// --- memset

CUresult Memset(CUdeviceptr dst, size_t pitch, uint32_t value, uint8_t elem, size_t width,
                size_t height, CUstream s, bool ptds, bool async) {
  uint64_t id = 0;
  if (CUresult r = Prologue(s, ptds, &id); r != CUDA_SUCCESS) return r;
  if (dst % elem != 0) return CUDA_ERROR_INVALID_VALUE;
  if (height > 1 && (pitch < width * elem || pitch % elem != 0)) return CUDA_ERROR_INVALID_VALUE;
  if (width == 0 || height == 0) return CUDA_SUCCESS;
  if (CUresult r = CaptureCheckCopy(id, async, /*host=*/false); r != CUDA_SUCCESS) return r;
  wire::Writer w;
  w.Put<uint64_t>(dst)
      .Put<uint64_t>(height > 1 ? pitch : 0)
      .Put<uint32_t>(value)
      .Put<uint8_t>(elem)
      .Put<uint64_t>(width)
      .Put<uint64_t>(height)
      .Put<uint64_t>(id)
      .Put<uint8_t>(async ? 1 : 0);
  // Device memsets never make the host wait natively either: a range this
  // process knows is sent without waiting (and the server need not block).
  const uint64_t extent = (height - 1) * (height > 1 ? pitch : 0) + width * elem;
  if (Allocations().ContainsRange(dst, extent)) {
    w.data().back() = 1;  // async on the server
    return Post(wire::Op::kMemset, w);
  }
  return Rpc(wire::Op::kMemset, w);
}

}  // namespace

int DedupPublishStateForTesting() { return g_dedup_publish.load(std::memory_order_relaxed); }

}  // namespace wooly::client

using namespace wooly::client;  // NOLINT: the C entry points live at global scope
namespace wire = ::wooly::wire;

// --- allocation

WOOLY_EXPORT CUresult CUDAAPI cuMemAlloc_v2(CUdeviceptr* dptr, size_t bytesize) {
  WOOLY_API_BODY(return AllocImpl(dptr, bytesize););
}

WOOLY_EXPORT CUresult CUDAAPI cuMemFree_v2(CUdeviceptr dptr) {
  WOOLY_API_BODY(return FreeImpl(dptr););
}

WOOLY_EXPORT CUresult CUDAAPI cuMemGetInfo_v2(size_t* free, size_t* total) {
  WOOLY_API_BODY({
    if (CUresult r = RequireContext(); r != CUDA_SUCCESS) return r;
    Reply reply;
    if (CUresult r = Rpc(wire::Op::kMemGetInfo, wire::Writer(), &reply); r != CUDA_SUCCESS) {
      return r;
    }
    wire::Reader rd = reply.reader();
    const uint64_t f = rd.Get<uint64_t>();
    const uint64_t t = rd.Get<uint64_t>();
    if (!rd.ok()) return BadReply(wire::Op::kMemGetInfo);
    if (free != nullptr) *free = static_cast<size_t>(f);
    if (total != nullptr) *total = static_cast<size_t>(t);
    return CUDA_SUCCESS;
  });
}

WOOLY_EXPORT CUresult CUDAAPI cuMemGetAddressRange_v2(CUdeviceptr* pbase, size_t* psize,
                                                      CUdeviceptr dptr) {
  WOOLY_API_BODY({
    if (CUresult r = RequireContext(); r != CUDA_SUCCESS) return r;
    uint64_t base = 0, size = 0;
    AllocTable::Record rec;
    if (Allocations().Find(dptr, &rec)) {
      base = rec.base;
      size = rec.size;
    } else {
      // Not ours to answer (e.g. a global we were never asked about).
      wire::Writer w;
      w.Put<uint64_t>(dptr);
      Reply reply;
      if (CUresult r = Rpc(wire::Op::kMemGetAddressRange, w, &reply); r != CUDA_SUCCESS) return r;
      wire::Reader rd = reply.reader();
      base = rd.Get<uint64_t>();
      size = rd.Get<uint64_t>();
      if (!rd.ok()) return BadReply(wire::Op::kMemGetAddressRange);
    }
    if (pbase != nullptr) *pbase = static_cast<CUdeviceptr>(base);
    if (psize != nullptr) *psize = static_cast<size_t>(size);
    return CUDA_SUCCESS;
  });
}

// --- linear copies

WOOLY_EXPORT CUresult CUDAAPI cuMemcpy(CUdeviceptr dst, CUdeviceptr src, size_t ByteCount) {
  WOOLY_API_BODY(return Unified(dst, src, ByteCount, nullptr, false, false););
}
WOOLY_EXPORT CUresult CUDAAPI cuMemcpy_ptds(CUdeviceptr dst, CUdeviceptr src, size_t ByteCount) {
  WOOLY_API_BODY(return Unified(dst, src, ByteCount, nullptr, true, false););
}
WOOLY_EXPORT CUresult CUDAAPI cuMemcpyAsync(CUdeviceptr dst, CUdeviceptr src, size_t ByteCount,
                                            CUstream hStream) {
  WOOLY_API_BODY(return Unified(dst, src, ByteCount, hStream, false, true););
}
WOOLY_EXPORT CUresult CUDAAPI cuMemcpyAsync_ptsz(CUdeviceptr dst, CUdeviceptr src, size_t ByteCount,
                                                 CUstream hStream) {
  WOOLY_API_BODY(return Unified(dst, src, ByteCount, hStream, true, true););
}

WOOLY_EXPORT CUresult CUDAAPI cuMemcpyHtoD_v2(CUdeviceptr dstDevice, const void* srcHost,
                                              size_t ByteCount) {
  WOOLY_API_BODY(return HtoD(dstDevice, srcHost, ByteCount, nullptr, false, false););
}
WOOLY_EXPORT CUresult CUDAAPI cuMemcpyHtoD_v2_ptds(CUdeviceptr dstDevice, const void* srcHost,
                                                   size_t ByteCount) {
  WOOLY_API_BODY(return HtoD(dstDevice, srcHost, ByteCount, nullptr, true, false););
}
WOOLY_EXPORT CUresult CUDAAPI cuMemcpyDtoH_v2(void* dstHost, CUdeviceptr srcDevice,
                                              size_t ByteCount) {
  WOOLY_API_BODY(return DtoH(dstHost, srcDevice, ByteCount, nullptr, false, false););
}
WOOLY_EXPORT CUresult CUDAAPI cuMemcpyDtoH_v2_ptds(void* dstHost, CUdeviceptr srcDevice,
                                                   size_t ByteCount) {
  WOOLY_API_BODY(return DtoH(dstHost, srcDevice, ByteCount, nullptr, true, false););
}
WOOLY_EXPORT CUresult CUDAAPI cuMemcpyDtoD_v2(CUdeviceptr dstDevice, CUdeviceptr srcDevice,
                                              size_t ByteCount) {
  WOOLY_API_BODY(return DtoD(dstDevice, srcDevice, ByteCount, nullptr, false, false););
}
WOOLY_EXPORT CUresult CUDAAPI cuMemcpyDtoD_v2_ptds(CUdeviceptr dstDevice, CUdeviceptr srcDevice,
                                                   size_t ByteCount) {
  WOOLY_API_BODY(return DtoD(dstDevice, srcDevice, ByteCount, nullptr, true, false););
}

WOOLY_EXPORT CUresult CUDAAPI cuMemcpyHtoDAsync_v2(CUdeviceptr dstDevice, const void* srcHost,
                                                   size_t ByteCount, CUstream hStream) {
  WOOLY_API_BODY(return HtoD(dstDevice, srcHost, ByteCount, hStream, false, true););
}
WOOLY_EXPORT CUresult CUDAAPI cuMemcpyHtoDAsync_v2_ptsz(CUdeviceptr dstDevice, const void* srcHost,
                                                        size_t ByteCount, CUstream hStream) {
  WOOLY_API_BODY(return HtoD(dstDevice, srcHost, ByteCount, hStream, true, true););
}
WOOLY_EXPORT CUresult CUDAAPI cuMemcpyDtoHAsync_v2(void* dstHost, CUdeviceptr srcDevice,
                                                   size_t ByteCount, CUstream hStream) {
  WOOLY_API_BODY(return DtoH(dstHost, srcDevice, ByteCount, hStream, false, true););
}
WOOLY_EXPORT CUresult CUDAAPI cuMemcpyDtoHAsync_v2_ptsz(void* dstHost, CUdeviceptr srcDevice,
                                                        size_t ByteCount, CUstream hStream) {
  WOOLY_API_BODY(return DtoH(dstHost, srcDevice, ByteCount, hStream, true, true););
}
WOOLY_EXPORT CUresult CUDAAPI cuMemcpyDtoDAsync_v2(CUdeviceptr dstDevice, CUdeviceptr srcDevice,
                                                   size_t ByteCount, CUstream hStream) {
  WOOLY_API_BODY(return DtoD(dstDevice, srcDevice, ByteCount, hStream, false, true););
}
WOOLY_EXPORT CUresult CUDAAPI cuMemcpyDtoDAsync_v2_ptsz(CUdeviceptr dstDevice,
                                                        CUdeviceptr srcDevice, size_t ByteCount,
                                                        CUstream hStream) {
  WOOLY_API_BODY(return DtoD(dstDevice, srcDevice, ByteCount, hStream, true, true););
}

WOOLY_EXPORT CUresult CUDAAPI cuMemcpyPeer(CUdeviceptr dstDevice, CUcontext dstContext,
                                           CUdeviceptr srcDevice, CUcontext srcContext,
                                           size_t ByteCount) {
  WOOLY_API_BODY(
      return Peer(dstDevice, dstContext, srcDevice, srcContext, ByteCount, nullptr, false, false););
}
WOOLY_EXPORT CUresult CUDAAPI cuMemcpyPeer_ptds(CUdeviceptr dstDevice, CUcontext dstContext,
                                                CUdeviceptr srcDevice, CUcontext srcContext,
                                                size_t ByteCount) {
  WOOLY_API_BODY(
      return Peer(dstDevice, dstContext, srcDevice, srcContext, ByteCount, nullptr, true, false););
}
WOOLY_EXPORT CUresult CUDAAPI cuMemcpyPeerAsync(CUdeviceptr dstDevice, CUcontext dstContext,
                                                CUdeviceptr srcDevice, CUcontext srcContext,
                                                size_t ByteCount, CUstream hStream) {
  WOOLY_API_BODY(
      return Peer(dstDevice, dstContext, srcDevice, srcContext, ByteCount, hStream, false, true););
}
WOOLY_EXPORT CUresult CUDAAPI cuMemcpyPeerAsync_ptsz(CUdeviceptr dstDevice, CUcontext dstContext,
                                                     CUdeviceptr srcDevice, CUcontext srcContext,
                                                     size_t ByteCount, CUstream hStream) {
  WOOLY_API_BODY(
      return Peer(dstDevice, dstContext, srcDevice, srcContext, ByteCount, hStream, true, true););
}

// --- 2D / 3D copies

WOOLY_EXPORT CUresult CUDAAPI cuMemcpy2D_v2(const CUDA_MEMCPY2D* pCopy) {
  WOOLY_API_BODY(return Copy2D(pCopy, nullptr, false, false););
}
WOOLY_EXPORT CUresult CUDAAPI cuMemcpy2D_v2_ptds(const CUDA_MEMCPY2D* pCopy) {
  WOOLY_API_BODY(return Copy2D(pCopy, nullptr, true, false););
}
WOOLY_EXPORT CUresult CUDAAPI cuMemcpy2DUnaligned_v2(const CUDA_MEMCPY2D* pCopy) {
  WOOLY_API_BODY(return Copy2D(pCopy, nullptr, false, false););
}
WOOLY_EXPORT CUresult CUDAAPI cuMemcpy2DUnaligned_v2_ptds(const CUDA_MEMCPY2D* pCopy) {
  WOOLY_API_BODY(return Copy2D(pCopy, nullptr, true, false););
}
WOOLY_EXPORT CUresult CUDAAPI cuMemcpy2DAsync_v2(const CUDA_MEMCPY2D* pCopy, CUstream hStream) {
  WOOLY_API_BODY(return Copy2D(pCopy, hStream, false, true););
}
WOOLY_EXPORT CUresult CUDAAPI cuMemcpy2DAsync_v2_ptsz(const CUDA_MEMCPY2D* pCopy,
                                                      CUstream hStream) {
  WOOLY_API_BODY(return Copy2D(pCopy, hStream, true, true););
}
WOOLY_EXPORT CUresult CUDAAPI cuMemcpy3D_v2(const CUDA_MEMCPY3D* pCopy) {
  WOOLY_API_BODY(return Copy3D(pCopy, nullptr, false, false););
}
WOOLY_EXPORT CUresult CUDAAPI cuMemcpy3D_v2_ptds(const CUDA_MEMCPY3D* pCopy) {
  WOOLY_API_BODY(return Copy3D(pCopy, nullptr, true, false););
}
WOOLY_EXPORT CUresult CUDAAPI cuMemcpy3DAsync_v2(const CUDA_MEMCPY3D* pCopy, CUstream hStream) {
  WOOLY_API_BODY(return Copy3D(pCopy, hStream, false, true););
}
WOOLY_EXPORT CUresult CUDAAPI cuMemcpy3DAsync_v2_ptsz(const CUDA_MEMCPY3D* pCopy,
                                                      CUstream hStream) {
  WOOLY_API_BODY(return Copy3D(pCopy, hStream, true, true););
}

// --- memsets

#define WOOLY_MEMSET_1D(name, type, elem, ptds)                                        \
  WOOLY_EXPORT CUresult CUDAAPI name(CUdeviceptr dstDevice, type v, size_t N) {        \
    WOOLY_API_BODY(return Memset(dstDevice, 0, v, elem, N, 1, nullptr, ptds, false);); \
  }
#define WOOLY_MEMSET_1D_ASYNC(name, type, elem, ptds)                                       \
  WOOLY_EXPORT CUresult CUDAAPI name(CUdeviceptr dstDevice, type v, size_t N, CUstream s) { \
    WOOLY_API_BODY(return Memset(dstDevice, 0, v, elem, N, 1, s, ptds, true););             \
  }
#define WOOLY_MEMSET_2D(name, type, elem, ptds)                                                \
  WOOLY_EXPORT CUresult CUDAAPI name(CUdeviceptr dstDevice, size_t dstPitch, type v, size_t W, \
                                     size_t H) {                                               \
    WOOLY_API_BODY(return Memset(dstDevice, dstPitch, v, elem, W, H, nullptr, ptds, false););  \
  }
#define WOOLY_MEMSET_2D_ASYNC(name, type, elem, ptds)                                          \
  WOOLY_EXPORT CUresult CUDAAPI name(CUdeviceptr dstDevice, size_t dstPitch, type v, size_t W, \
                                     size_t H, CUstream s) {                                   \
    WOOLY_API_BODY(return Memset(dstDevice, dstPitch, v, elem, W, H, s, ptds, true););         \
  }

WOOLY_MEMSET_1D(cuMemsetD8_v2, unsigned char, 1, false)
WOOLY_MEMSET_1D(cuMemsetD8_v2_ptds, unsigned char, 1, true)
WOOLY_MEMSET_1D(cuMemsetD16_v2, unsigned short, 2, false)
WOOLY_MEMSET_1D(cuMemsetD16_v2_ptds, unsigned short, 2, true)
WOOLY_MEMSET_1D(cuMemsetD32_v2, unsigned int, 4, false)
WOOLY_MEMSET_1D(cuMemsetD32_v2_ptds, unsigned int, 4, true)
WOOLY_MEMSET_2D(cuMemsetD2D8_v2, unsigned char, 1, false)
WOOLY_MEMSET_2D(cuMemsetD2D8_v2_ptds, unsigned char, 1, true)
WOOLY_MEMSET_2D(cuMemsetD2D16_v2, unsigned short, 2, false)
WOOLY_MEMSET_2D(cuMemsetD2D16_v2_ptds, unsigned short, 2, true)
WOOLY_MEMSET_2D(cuMemsetD2D32_v2, unsigned int, 4, false)
WOOLY_MEMSET_2D(cuMemsetD2D32_v2_ptds, unsigned int, 4, true)
WOOLY_MEMSET_1D_ASYNC(cuMemsetD8Async, unsigned char, 1, false)
WOOLY_MEMSET_1D_ASYNC(cuMemsetD8Async_ptsz, unsigned char, 1, true)
WOOLY_MEMSET_1D_ASYNC(cuMemsetD16Async, unsigned short, 2, false)
WOOLY_MEMSET_1D_ASYNC(cuMemsetD16Async_ptsz, unsigned short, 2, true)
WOOLY_MEMSET_1D_ASYNC(cuMemsetD32Async, unsigned int, 4, false)
WOOLY_MEMSET_1D_ASYNC(cuMemsetD32Async_ptsz, unsigned int, 4, true)
WOOLY_MEMSET_2D_ASYNC(cuMemsetD2D8Async, unsigned char, 1, false)
WOOLY_MEMSET_2D_ASYNC(cuMemsetD2D8Async_ptsz, unsigned char, 1, true)
WOOLY_MEMSET_2D_ASYNC(cuMemsetD2D16Async, unsigned short, 2, false)
WOOLY_MEMSET_2D_ASYNC(cuMemsetD2D16Async_ptsz, unsigned short, 2, true)
WOOLY_MEMSET_2D_ASYNC(cuMemsetD2D32Async, unsigned int, 4, false)
WOOLY_MEMSET_2D_ASYNC(cuMemsetD2D32Async_ptsz, unsigned int, 4, true)
