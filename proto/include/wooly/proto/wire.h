// Wooly's framed command protocol, version 1.
//
// This is what libwooly (the injected libcuda.so.1) speaks to woolyd. It has
// no dependencies beyond the C++ standard library so that the client library
// stays self-contained (see docs/architecture.md, "Why the client does not
// link gRPC"). The gRPC Session service in wooly/v1/session.proto carries the
// very same frames as opaque bytes, so both transports share one encoding.
//
// A frame is a FrameHeader followed by `length` payload bytes. Requests carry
// an Op; the reply carries the same Op with kReplyBit set and a payload that
// starts with an int32 CUresult, followed, on success only, by the op's reply
// fields. All integers are little-endian. Handles (module, function, stream,
// event, library, kernel) are opaque 64-bit ids chosen by the server and are
// only meaningful within one session. Device pointers are real device
// addresses, so pointer arithmetic done by the application keeps working.
#ifndef WOOLY_PROTO_WIRE_H_
#define WOOLY_PROTO_WIRE_H_

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

namespace wooly::wire {

// Bumped on any incompatible change to frames or op payloads.
inline constexpr uint32_t kProtocolVersion = 1;
inline constexpr uint32_t kMagic = 0x594c4f57;  // "WOLY"
inline constexpr uint16_t kReplyBit = 0x8000;
// Largest payload either side accepts. Bulk copies are chunked below this.
inline constexpr uint32_t kMaxPayload = 256u << 20;
// Bulk copies are split into chunks of at most this many bytes.
inline constexpr uint64_t kCopyChunk = 64u << 20;

// Stream handle values with CUDA's own meaning; any other value is a
// server-issued stream id.
inline constexpr uint64_t kStreamNull = 0;       // the client's default stream
inline constexpr uint64_t kStreamLegacy = 1;     // CU_STREAM_LEGACY
inline constexpr uint64_t kStreamPerThread = 2;  // CU_STREAM_PER_THREAD (client resolves it)

// A request with this flag gets no reply: the client does not wait. Its
// error, if any, is reported by the next synchronizing command (stream,
// event or context synchronize or query), as CUDA reports asynchronous
// errors. Only ops whose reply carries no fields may be sent this way.
inline constexpr uint16_t kFlagNoReply = 0x1;

struct FrameHeader {
  uint32_t magic;
  uint16_t op;
  uint16_t flags;   // kFlag* bits
  uint32_t length;  // payload bytes after this header
  uint32_t seq;     // echoed in the reply
};
static_assert(sizeof(FrameHeader) == 16);

// Request payloads are listed after each op as (fields) -> (reply fields).
// "bytes" is a u64 length followed by the bytes; "str" is the same for text;
// "tail" is the rest of the payload, no length prefix.
enum class Op : uint16_t {
  // (u32 protocol_version, u32 pid, i32 priority, str client_name
  //  [, str pod, str namespace [, u32 n, n x (str key, str value)]])
  //   -> (u32 protocol_version, str server_version, u64 client_id, DeviceInfo)
  // The key/value pairs are the client's tenant settings, named as their
  // environment variables (WOOLY_TENANT, WOOLY_WEIGHT, WOOLY_SM_FLOOR,
  // WOOLY_SM_CAP, WOOLY_MEMORY_LIMIT, ...; docs/configuration.md), plus
  // "role" = "observer" for a session that only asks kTenantView (the NVML
  // view). Unknown keys are ignored.
  // A version mismatch is answered with CUDA_ERROR_NOT_SUPPORTED, a bad
  // setting with CUDA_ERROR_INVALID_VALUE; both are followed by a str
  // explaining it (the only error replies that carry a message).
  kHello = 1,
  kGoodbye = 2,  // () -> ()
  // Same-node transport switch, on a unix socket only (channel.h): the
  // client then sends the channel's memfd with SendFd. () -> (); after a
  // successful reply both sides use the shared-memory rings.
  kShmAttach = 3,
  // What the client's tenant has and uses (the NVML view): () ->
  //   (str tenant, u64 memory_limit (0: none), u64 memory_total (the limit,
  //    else the device's memory), u64 memory_used (the tenant's allocations),
  //    u64 device_total, u64 device_free, f64 measured_share (last second,
  //    0..1), f64 target_share (0..1), u64 busy_ns (GPU time since start),
  //    u32 n, n x (u32 pid, u64 bytes, str name))
  // pids are as each client reported them (its own pid namespace).
  kTenantView = 4,

  kMemAlloc = 10,            // (u64 size) -> (u64 dptr)
  kMemFree = 11,             // (u64 dptr) -> ()
  kMemGetInfo = 12,          // () -> (u64 free, u64 total)
  kMemGetAddressRange = 13,  // (u64 dptr) -> (u64 base, u64 size)
  kMemcpyHtoD = 14,          // (u64 dst, u64 stream, u8 async, tail data) -> ()
  kMemcpyDtoH = 15,          // (u64 src, u64 size, u64 stream, u8 async) -> (tail data)
  kMemcpyDtoD = 16,          // (u64 dst, u64 src, u64 size, u64 stream, u8 async) -> ()
  // (u64 dst, u64 dst_pitch, u32 value, u8 elem_size(1,2,4), u64 width_elems,
  //  u64 height, u64 stream, u8 async) -> ()
  kMemset = 17,
  // Memcpy3D with host sides packed: (Copy3D, u64 stream, u8 async, tail
  // packed host source rows when src is host) -> (tail packed host rows when
  // dst is host). 2D copies are sent as 3D copies of depth 1.
  kMemcpy3D = 18,
  // Copies between device memory and the client's shared pinned memory
  // (kHostShmRegister), which woolyd maps at the same address: no data on
  // the wire. Both: (u64 device, u64 host, u64 size, u64 stream, u8 async
  //   [, u64 done, u32 seq]) -> ()
  // With `done` (4-aligned, in shared memory) the copy is waited for and
  // woolyd then stores its CUresult at done + 4 and `seq` at done, and wakes
  // a futex waiter on done: the client's pipelined pageable copies.
  kMemcpyHtoDShared = 19,
  kMemcpyDtoHShared = 20,
  // (u64 addr, u64 size) -> (); the memfd follows with SendFd. woolyd maps
  // it at `addr` and registers it with the driver (portable, mapped), so
  // the client's pinned memory is DMA-able and its device pointer is `addr`.
  kHostShmRegister = 21,
  kHostShmUnregister = 22,  // (u64 addr) -> ()
  // Loads a module (kind 0) or library (kind 1) from woolyd's module cache
  // by wire::ImageDigest: (u8 kind, u8 digest[32], u64 size) -> (u64 id).
  // CUDA_ERROR_FILE_NOT_FOUND: not cached; send the image with
  // kModuleLoadData/kLibraryLoadData, which also caches it.
  kImageLoadCached = 23,

  kModuleLoadData = 30,          // (bytes image) -> (u64 module)
  kModuleGetFunction = 31,       // (u64 module, str name) -> (u64 function, ParamLayout)
  kModuleGetGlobal = 32,         // (u64 module, str name) -> (u64 dptr, u64 size)
  kModuleUnload = 33,            // (u64 module) -> ()
  kLibraryLoadData = 34,         // (bytes image) -> (u64 library)
  kLibraryGetKernel = 35,        // (u64 library, str name) -> (u64 kernel, ParamLayout)
  kLibraryGetModule = 36,        // (u64 library) -> (u64 module)
  kLibraryGetGlobal = 37,        // (u64 library, str name) -> (u64 dptr, u64 size)
  kLibraryUnload = 38,           // (u64 library) -> ()
  kKernelGetFunction = 39,       // (u64 kernel) -> (u64 function, ParamLayout)
  kFuncGetAttribute = 40,        // (u64 function_or_kernel, i32 attrib) -> (i32 value)
  kFuncSetAttribute = 41,        // (u64 function_or_kernel, i32 attrib, i32 value) -> ()
  kModuleGetFunctionCount = 42,  // (u64 module) -> (u32 count)

  // (u64 function_or_kernel, u32 grid[3], u32 block[3], u32 shared_bytes,
  //  u64 stream, u32 n_attrs, n_attrs * (u32 id, u8 value[64]), bytes args)
  //  -> ()
  // args is the packed argument buffer, laid out by the ParamLayout.
  kLaunchKernel = 50,

  kStreamCreate = 60,       // (u32 flags, i32 priority) -> (u64 stream)
  kStreamDestroy = 61,      // (u64 stream) -> ()
  kStreamSynchronize = 62,  // (u64 stream) -> ()
  kStreamQuery = 63,        // (u64 stream) -> ()  CUDA_ERROR_NOT_READY while busy
  kStreamWaitEvent = 64,    // (u64 stream, u64 event, u32 flags) -> ()
  kEventCreate = 70,        // (u32 flags) -> (u64 event)
  kEventRecord = 71,        // (u64 event, u64 stream, u32 flags) -> ()
  kEventSynchronize = 72,   // (u64 event) -> ()
  kEventQuery = 73,         // (u64 event) -> ()
  kEventElapsedTime = 74,   // (u64 start, u64 end) -> (f32 ms)
  kEventDestroy = 75,       // (u64 event) -> ()
  kCtxSynchronize = 80,     // ([u8 skip_capturing_streams]) -> ()

  // --- 140-179: CUDA graphs and stream capture (payload helpers in
  // wire_graph.h: KernelNodeParams, NodeList). woolyd captures on its own
  // stream in relaxed mode; libwooly enforces the application's capture
  // modes (docs/graphs.md).
  kStreamBeginCapture = 140,  // (u64 stream, u32 mode) -> (u64 graph)
  // With discard = 1 the captured graph is destroyed (the client invalidated
  // the capture) and graph is 0.
  kStreamEndCapture = 141,  // (u64 stream, u8 discard) -> (u64 graph)
  // (u64 stream) -> (u32 status, u64 graph, NodeList deps)
  kStreamGetCaptureInfo = 142,
  kStreamUpdateCaptureDependencies = 143,  // (u64 stream, u32 flags, NodeIds) -> ()
  kGraphCreate = 144,                      // (u32 flags) -> (u64 graph)
  kGraphDestroy = 145,                     // (u64 graph) -> ()
  kGraphInstantiate = 146,                 // (u64 graph, u64 flags) -> (u64 exec)
  kGraphExecDestroy = 147,                 // (u64 exec) -> ()
  kGraphLaunch = 148,                      // (u64 exec, u64 stream) -> ()
  kGraphUpload = 149,                      // (u64 exec, u64 stream) -> ()
  kGraphGetNodes = 150,                    // (u64 graph) -> (NodeList)
  kGraphNodeGetDependencies = 151,         // (u64 node) -> (NodeList)
  kGraphKernelNodeGetParams = 152,         // (u64 node) -> (KernelNodeParams)
  kGraphKernelNodeSetParams = 153,         // (u64 node, KernelNodeParams) -> ()
  // (u64 graph, NodeIds deps, KernelNodeParams) -> (u64 node)
  kGraphAddKernelNode = 154,
  kGraphExecKernelNodeSetParams = 155,  // (u64 exec, u64 node, KernelNodeParams) -> ()
  kGraphDebugDotPrint = 156,            // (u64 graph, u32 flags) -> (str dot)

  // --- 90-139: memory extensions (payload helpers in wire_memory_ext.h).
  // Stream-ordered allocator; pool 0 is the client's default pool.
  kMemAllocAsync = 90,        // (u64 size, u64 pool, u64 stream) -> (u64 dptr)
  kMemFreeAsync = 91,         // (u64 dptr, u64 stream) -> ()
  kMemPoolCreate = 92,        // (MemPoolProps) -> (u64 pool)
  kMemPoolDestroy = 93,       // (u64 pool) -> ()
  kMemPoolSetAttribute = 94,  // (u64 pool, i32 attr, u64 value) -> ()
  kMemPoolGetAttribute = 95,  // (u64 pool, i32 attr) -> (u64 value)
  kMemPoolTrimTo = 96,        // (u64 pool, u64 min_bytes_to_keep) -> ()
  // Virtual memory management.
  kMemGetAllocationGranularity = 100,  // (MemAllocProps, u32 option) -> (u64 granularity)
  kMemAddressReserve = 101,  // (u64 size, u64 alignment, u64 addr_hint, u64 flags) -> (u64 ptr)
  kMemAddressFree = 102,     // (u64 ptr, u64 size) -> ()
  kMemCreate = 103,          // (u64 size, MemAllocProps, u64 flags) -> (u64 handle)
  kMemRelease = 104,         // (u64 handle) -> ()
  kMemMap = 105,             // (u64 ptr, u64 size, u64 offset, u64 handle, u64 flags) -> ()
  kMemUnmap = 106,           // (u64 ptr, u64 size) -> ()
  // (u64 ptr, u64 size, u32 n, n * (i32 location_type, i32 location_id, u32 flags)) -> ()
  kMemSetAccess = 107,
  kMemGetAccess = 108,  // (i32 location_type, i32 location_id, u64 ptr) -> (u64 flags)
  kMemGetAllocationPropertiesFromHandle = 109,  // (u64 handle) -> (MemAllocProps)
  kMemRetainAllocationHandle = 110,             // (u64 addr) -> (u64 handle)
  // Occupancy.
  // (u64 function_or_kernel, u32 flags, u32 n, n * (i32 block_size, u64 dynamic_smem))
  //   -> (n * i32 blocks_per_sm)
  kOccupancyMaxActiveBlocks = 115,
  // (u64 function_or_kernel, u32 flags, i32 block_size_limit, u64 dynamic_smem, u32 n,
  //  n * (i32 block_size, u64 dynamic_smem)) -> (i32 min_grid_size, i32 block_size)
  // With n > 0 the table stands for the client's blockSizeToDynamicSMemSize callback.
  kOccupancyMaxPotentialBlockSize = 116,
  // (u64 function_or_kernel, i32 num_blocks, i32 block_size) -> (u64 bytes)
  kOccupancyAvailableDynamicSMem = 117,
  // (u64 function_or_kernel, u32 grid[3], u32 block[3], u32 shared_bytes, u32 n_attrs,
  //  n_attrs * (u32 id, u8 value[64])) -> (i32 clusters)
  kOccupancyMaxActiveClusters = 118,
  // Context limits and function cache configuration.
  kCtxGetLimit = 120,             // (i32 limit) -> (u64 value)
  kCtxSetLimit = 121,             // (i32 limit, u64 value) -> ()
  kFuncSetCacheConfig = 122,      // (u64 function_or_kernel, i32 config) -> ()
  kFuncSetSharedMemConfig = 123,  // (u64 function_or_kernel, i32 config) -> ()
  // Tensor maps: the 128-byte CUtensorMap the server's driver encoded.
  kTensorMapEncodeTiled = 125,     // (TensorMapTiled) -> (u8 map[128])
  kTensorMapEncodeIm2col = 126,    // (TensorMapIm2col) -> (u8 map[128])
  kTensorMapReplaceAddress = 127,  // (u8 map[128], u64 addr) -> (u8 map[128])
  // Weight dedup (WOOLY_DEDUP=1 with overcommit on; docs/memory.md), before
  // a host-to-device copy of whole chunks: for each chunk (va, the
  // wire::ContentDigests of the bytes the client is about to copy there; a
  // peer that computes another digest only ever misses) the server attaches the
  // chunk read-only to resident shared content the SERVER hashed to that
  // digest, and says so; the client then skips copying those chunks. Large
  // allocations are carved into chunk_bytes chunks from their base; an
  // entry that is not one whole chunk is answered 0. The client sends the
  // chunk size it assumes (0 to ask): on a mismatch, or with dedup
  // unavailable (reply chunk_bytes 0), nothing is attached (n = 0 in the
  // reply). Added without a version bump: an older woolyd answers
  // CUDA_ERROR_NOT_SUPPORTED, and the client then copies as usual.
  // (u64 chunk_bytes, u32 n, n x (u64 va, u8 digest[32]))
  //   -> (u64 chunk_bytes, u32 n, n x u8 attached)
  kDedupProbe = 128,
  // Weight dedup after an upload: the client copied whole chunks the usual
  // (fast, staged) way and asks the server to deduplicate them. For each
  // chunk the server waits for the client's work, reads the chunk back from
  // the device, hashes it itself and attaches it to identical resident
  // content (releasing its memory) or publishes it as new shared content.
  // Outcome per chunk: 0 stays private (not a whole chunk of a dedup
  // client, or no room), 1 published, 2 attached, 3 already shared. Added
  // without a version bump: an older woolyd answers CUDA_ERROR_NOT_SUPPORTED
  // and the client then sends whole chunks as single copies (kMemcpyHtoD).
  // (u64 chunk_bytes, u32 n, n x u64 va) -> (u32 n, n x u8 outcome)
  kDedupPublish = 129,
};

// Parameter layout of a kernel, as cuFuncGetParamInfo reports it:
// (u32 count, count * (u32 offset, u32 size)).
struct ParamInfo {
  uint32_t offset;
  uint32_t size;
};

// Device description sent once in the Hello reply and answered locally by
// the client afterwards: (str name, u8 uuid[16], u64 total_mem,
// i32 driver_version, u32 n_attrs, n_attrs * i32 attribute values indexed by
// CUdevice_attribute, i32 stream_priority_least, i32 stream_priority_greatest).
struct DeviceInfo {
  std::string name;
  uint8_t uuid[16] = {};
  uint64_t total_mem = 0;
  int32_t driver_version = 0;
  std::vector<int32_t> attributes;  // index = CUdevice_attribute value
  int32_t stream_priority_least = 0;
  int32_t stream_priority_greatest = 0;
};

// Memory kinds of a Copy3D side.
enum class MemKind : uint8_t { kHost = 1, kDevice = 2 };

// A 3D copy, CUDA_MEMCPY3D minus arrays. For a host side, `ptr` is unused on
// the wire: host rows travel packed (width_bytes per row, height*depth rows).
struct Copy3D {
  uint8_t src_kind;
  uint8_t dst_kind;
  uint64_t src_ptr, src_x_bytes, src_y, src_z, src_pitch, src_height;
  uint64_t dst_ptr, dst_x_bytes, dst_y, dst_z, dst_pitch, dst_height;
  uint64_t width_bytes, height, depth;
};

// Appends little-endian fields to a growing buffer.
class Writer {
 public:
  template <typename T>
  Writer& Put(T v) {
    static_assert(std::is_trivially_copyable_v<T>);
    const size_t at = buf_.size();
    buf_.resize(at + sizeof(T));
    std::memcpy(buf_.data() + at, &v, sizeof(T));
    return *this;
  }
  Writer& PutRaw(const void* p, size_t n) {
    const size_t at = buf_.size();
    buf_.resize(at + n);
    if (n) std::memcpy(buf_.data() + at, p, n);
    return *this;
  }
  Writer& PutBytes(const void* p, uint64_t n) {
    Put<uint64_t>(n);
    return PutRaw(p, n);
  }
  Writer& PutStr(std::string_view s) { return PutBytes(s.data(), s.size()); }

  const std::vector<uint8_t>& data() const { return buf_; }
  std::vector<uint8_t>& data() { return buf_; }
  size_t size() const { return buf_.size(); }
  void Clear() { buf_.clear(); }
  // Starts over in `buffer`'s storage (its contents are dropped): a large
  // buffer reused across messages spares an allocation and its page faults.
  void Reuse(std::vector<uint8_t> buffer) {
    buf_ = std::move(buffer);
    buf_.clear();
  }

 private:
  std::vector<uint8_t> buf_;
};

// Reads fields from a payload with bounds checks. A failed read latches
// !ok(); callers check ok() once after reading everything, so malformed
// input from a peer never reads out of bounds.
class Reader {
 public:
  Reader(const void* p, size_t n) : p_(static_cast<const uint8_t*>(p)), end_(p_ + n) {}

  template <typename T>
  T Get() {
    static_assert(std::is_trivially_copyable_v<T>);
    T v{};
    if (!ok_ || static_cast<size_t>(end_ - p_) < sizeof(T)) {
      ok_ = false;
      return v;
    }
    std::memcpy(&v, p_, sizeof(T));
    p_ += sizeof(T);
    return v;
  }
  // Returns a pointer into the payload, or nullptr (and !ok()) when short.
  const uint8_t* GetRaw(size_t n) {
    if (!ok_ || static_cast<size_t>(end_ - p_) < n) {
      ok_ = false;
      return nullptr;
    }
    const uint8_t* at = p_;
    p_ += n;
    return at;
  }
  // A length-prefixed byte run; sets *n to its length.
  const uint8_t* GetBytes(uint64_t* n) {
    *n = Get<uint64_t>();
    if (!ok_ || *n > static_cast<uint64_t>(end_ - p_)) {
      ok_ = false;
      *n = 0;
      return nullptr;
    }
    return GetRaw(static_cast<size_t>(*n));
  }
  std::string GetStr() {
    uint64_t n = 0;
    const uint8_t* p = GetBytes(&n);
    return p ? std::string(reinterpret_cast<const char*>(p), n) : std::string();
  }
  // The unread rest of the payload (the "tail").
  const uint8_t* rest() const { return p_; }
  size_t remaining() const { return static_cast<size_t>(end_ - p_); }
  bool ok() const { return ok_; }
  void Fail() { ok_ = false; }

 private:
  const uint8_t* p_;
  const uint8_t* end_;
  bool ok_ = true;
};

inline void PutParamLayout(Writer& w, const std::vector<ParamInfo>& params) {
  w.Put<uint32_t>(static_cast<uint32_t>(params.size()));
  for (const ParamInfo& p : params) w.Put<uint32_t>(p.offset).Put<uint32_t>(p.size);
}

inline std::vector<ParamInfo> GetParamLayout(Reader& r) {
  const uint32_t n = r.Get<uint32_t>();
  std::vector<ParamInfo> out;
  if (!r.ok() || n > 4096) {  // CUDA caps kernel parameters at 32 KiB
    r.Fail();
    return out;
  }
  out.reserve(n);
  for (uint32_t i = 0; i < n && r.ok(); ++i) {
    ParamInfo p;
    p.offset = r.Get<uint32_t>();
    p.size = r.Get<uint32_t>();
    out.push_back(p);
  }
  return out;
}

inline void PutDeviceInfo(Writer& w, const DeviceInfo& d) {
  w.PutStr(d.name).PutRaw(d.uuid, 16).Put<uint64_t>(d.total_mem).Put<int32_t>(d.driver_version);
  w.Put<uint32_t>(static_cast<uint32_t>(d.attributes.size()));
  for (int32_t a : d.attributes) w.Put<int32_t>(a);
  w.Put<int32_t>(d.stream_priority_least).Put<int32_t>(d.stream_priority_greatest);
}

inline DeviceInfo GetDeviceInfo(Reader& r) {
  DeviceInfo d;
  d.name = r.GetStr();
  if (const uint8_t* u = r.GetRaw(16)) std::memcpy(d.uuid, u, 16);
  d.total_mem = r.Get<uint64_t>();
  d.driver_version = r.Get<int32_t>();
  const uint32_t n = r.Get<uint32_t>();
  if (!r.ok() || n > 4096) {
    r.Fail();
    return d;
  }
  d.attributes.resize(n);
  for (uint32_t i = 0; i < n; ++i) d.attributes[i] = r.Get<int32_t>();
  d.stream_priority_least = r.Get<int32_t>();
  d.stream_priority_greatest = r.Get<int32_t>();
  return d;
}

inline void PutCopy3D(Writer& w, const Copy3D& c) { w.Put(c); }
inline Copy3D GetCopy3D(Reader& r) { return r.Get<Copy3D>(); }

// Name of an op for logs; "?" for unknown values.
const char* OpName(uint16_t op);

}  // namespace wooly::wire

#endif  // WOOLY_PROTO_WIRE_H_
