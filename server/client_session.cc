#include "wooly/server/client_session.h"

#include <cuda.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <exception>
#include <new>
#include <optional>
#include <span>
#include <utility>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "spdlog/spdlog.h"
#include "wooly/scheduler/stream_priority.h"
#include "wooly/server/cu_status.h"
#include "wooly/server/node_memory.h"
#include "wooly/server/share_control.h"

namespace wooly::server {
namespace {

using wire::Op;

// Launch attributes a client may send, and at most how many.
constexpr uint32_t kMaxLaunchAttributes = 64;
// Events used only to order streams need no timestamps.
constexpr uint32_t kSyncEventFlags = CU_EVENT_DISABLE_TIMING;

absl::Status BadPointer() {
  return CuError(CUDA_ERROR_INVALID_VALUE, "device range not owned by this client");
}
absl::Status BadHandle(const char* what) {
  return CuError(CUDA_ERROR_INVALID_HANDLE, absl::StrCat("unknown ", what, " handle"));
}

bool IsDefaultStream(uint64_t id) {
  // The per-thread stream is resolved by the client; should it arrive anyway
  // it is served by the client's default stream rather than refused.
  return id == wire::kStreamNull || id == wire::kStreamLegacy || id == wire::kStreamPerThread;
}

uint64_t ArgBytesNeeded(const std::vector<wire::ParamInfo>& layout) {
  uint64_t need = 0;
  for (const wire::ParamInfo& p : layout)
    need = std::max<uint64_t>(need, uint64_t{p.offset} + p.size);
  return need;
}

std::vector<uint8_t> ResultOnly(CUresult r) {
  std::vector<uint8_t> out(sizeof(int32_t));
  const int32_t v = static_cast<int32_t>(r);
  std::memcpy(out.data(), &v, sizeof(v));
  return out;
}

// [start, start + length) of one side of a 3D copy, with overflow checks.
// Returns false when the geometry is invalid or overflows.
bool DeviceExtent(uint64_t ptr, uint64_t x, uint64_t y, uint64_t z, uint64_t pitch,
                  uint64_t alloc_height, uint64_t width, uint64_t height, uint64_t depth,
                  uint64_t* start, uint64_t* length) {
  using u128 = unsigned __int128;
  if ((height > 1 || depth > 1) && u128{pitch} < u128{x} + width) {
    return false;  // rows would overlap
  }
  if (depth > 1 && u128{alloc_height} < u128{y} + height) return false;
  const u128 slice = u128{pitch} * alloc_height;
  const u128 first = u128{ptr} + x + u128{y} * pitch + u128{z} * slice;
  const u128 last_row =
      u128{ptr} + x + (u128{y} + height - 1) * pitch + (u128{z} + depth - 1) * slice;
  const u128 end = last_row + width;
  if (end > (u128{1} << 64) || first > end) return false;
  *start = static_cast<uint64_t>(first);
  *length = static_cast<uint64_t>(end - first);
  return true;
}

}  // namespace

ClientSession::ClientSession(const SessionEnv* env, uint64_t client_id, std::string transport,
                             std::string peer)
    : env_(env),
      backend_(env->backend),
      id_(client_id),
      transport_(std::move(transport)),
      peer_(std::move(peer)),
      connected_at_(env->clock ? env->clock() : absl::Now()) {
  absl::MutexLock lock(&stats_mu_);
  stats_.client_id = id_;
  stats_.transport = transport_;
  stats_.connected_unix_seconds = absl::ToUnixSeconds(connected_at_);
}

ClientSession::~ClientSession() { Close("session destroyed"); }

ClientStatus ClientSession::Snapshot() const {
  ClientStatus s;
  {
    absl::MutexLock lock(&stats_mu_);
    s = stats_;
  }
  s.kernels_launched = kernels_launched_.load(std::memory_order_relaxed);
  if (std::optional<TenantMemberInfo> m = env_->tenants->Member(id_)) {
    s.priority = m->policy.policy.priority;
    s.weight = m->policy.policy.weight;
    s.sm_floor = m->policy.policy.floor();
    s.sm_cap = m->policy.policy.cap();
    s.memory_limit = m->memory_limit;
  }
  if (env_->node_memory != nullptr) {
    const memory::ClientUsage usage = env_->node_memory->Usage(id_);
    s.memory_resident = usage.resident;
    s.memory_swapped_out = usage.swapped_out;
    s.memory_shared = usage.shared;
  }
  if (env_->share_control != nullptr) {
    const ClientShare share = env_->share_control->ShareOf(id_);
    s.target_share = share.target_share;
    s.measured_share = share.measured_share;
    s.measured_share_recent = share.measured_share_recent;
    s.busy_seconds = absl::ToDoubleSeconds(share.busy);
    s.queue_depth = static_cast<uint32_t>(std::max(share.queue_depth, 0));
  }
  // Live rather than published: an idle client is poisoned by another's fault.
  const uint64_t generation = context_generation_.load(std::memory_order_acquire);
  s.context_lost = generation != SharedContext::kUnbound && env_->context->IsLost(generation);
  if (s.context_lost) {
    // Its objects died with the context: it holds nothing on the GPU.
    s.bytes_allocated = 0;
    s.streams = 0;
    s.modules = 0;
    s.memory_resident = 0;
    s.memory_swapped_out = 0;
    s.memory_shared = 0;
  }
  return s;
}

std::string ClientSession::DescribeLocked(uint16_t op) const {
  return absl::StrCat("client ", id_, " ('", name_, "', pid ", pid_, ") ", wire::OpName(op));
}

void ClientSession::PublishStats() {
  uint32_t modules = static_cast<uint32_t>(libraries_.size());
  for (const auto& [id, m] : modules_) {
    if (m.library == 0) ++modules;
  }
  absl::MutexLock lock(&stats_mu_);
  stats_.pid = pid_;
  stats_.name = name_;
  stats_.priority = priority_;
  stats_.bytes_allocated = allocations_.TotalBytes() + MemExtBytes();
  stats_.streams = static_cast<uint32_t>(streams_.size() + (has_default_stream_ ? 1 : 0));
  stats_.modules = modules;
}

namespace {
// Requests that report an error left by an earlier request sent without a
// reply, as CUDA reports asynchronous errors at synchronization.
bool ReportsDeferredErrors(uint16_t op) {
  switch (static_cast<Op>(op)) {
    case Op::kStreamSynchronize:
    case Op::kStreamQuery:
    case Op::kEventSynchronize:
    case Op::kEventQuery:
    case Op::kCtxSynchronize:
      return true;
    default:
      return false;
  }
}

// Requests whose work reads or writes the client's device memory: with
// overcommit on, all its memory is made resident before them (node_memory.h).
bool TouchesDeviceMemory(uint16_t op) {
  switch (static_cast<Op>(op)) {
    case Op::kLaunchKernel:
    case Op::kMemcpyHtoD:
    case Op::kMemcpyDtoH:
    case Op::kMemcpyDtoD:
    case Op::kMemset:
    case Op::kMemcpy3D:
    case Op::kMemcpyHtoDShared:
    case Op::kMemcpyDtoHShared:
    case Op::kGraphLaunch:
    case Op::kDedupProbe:
    case Op::kDedupPublish:
      return true;
    default:
      return false;
  }
}

// Hot requests that change nothing status reports: they skip refreshing it.
bool LeavesStatsAlone(uint16_t op) {
  if (TouchesDeviceMemory(op)) return true;
  switch (static_cast<Op>(op)) {
    case Op::kEventRecord:
    case Op::kStreamWaitEvent:
      return true;
    default:
      return ReportsDeferredErrors(op);
  }
}
}  // namespace

void ClientSession::SetPendingFd(int fd) {
  absl::MutexLock lock(&mu_);
  if (pending_fd_ >= 0) ::close(pending_fd_);
  pending_fd_ = fd;
}

void ClientSession::set_transport(std::string transport) {
  absl::MutexLock lock(&stats_mu_);
  stats_.transport = std::move(transport);
}

ClientSession::Reply ClientSession::Handle(const wire::FrameHeader& header,
                                           absl::Span<const uint8_t> payload) {
  absl::MutexLock lock(&mu_);
  // A descriptor that came with this request and was not taken is closed.
  absl::Cleanup close_fd = [this]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
    if (pending_fd_ >= 0) ::close(pending_fd_);
    pending_fd_ = -1;
  };
  Reply reply;
  reply.op = static_cast<uint16_t>(header.op | wire::kReplyBit);
  reply.seq = header.seq;
  if (closed_) {
    reply.payload = ResultOnly(CUDA_ERROR_DEINITIALIZED);
    reply.close = true;
    return reply;
  }
  const uint16_t op = header.op;
  if (!hello_done()) {
    if (op == static_cast<uint16_t>(Op::kHello)) return HandleHello(header, payload);
    spdlog::warn("client {} ({}): {} before hello; closing", id_, peer_, wire::OpName(op));
    reply.payload = ResultOnly(CUDA_ERROR_NOT_INITIALIZED);
    reply.close = true;
    return reply;
  }

  if (observer() && op != static_cast<uint16_t>(Op::kTenantView) &&
      op != static_cast<uint16_t>(Op::kGoodbye)) {
    reply.payload = ResultOnly(CUDA_ERROR_NOT_PERMITTED);  // an NVML view holds nothing
    return reply;
  }
  Handler handler = nullptr;
  switch (static_cast<Op>(op)) {
    case Op::kHello:
      reply.payload = ResultOnly(CUDA_ERROR_INVALID_VALUE);  // said hello already
      return reply;
    case Op::kShmAttach:  // handled by the transport
      reply.payload = ResultOnly(CUDA_ERROR_NOT_SUPPORTED);
      return reply;
    case Op::kGoodbye:
      reply.payload = ResultOnly(CUDA_SUCCESS);
      reply.close = true;
      return reply;
#define WOOLY_OP(name)                  \
  case Op::k##name:                     \
    handler = &ClientSession::Op##name; \
    break;
      WOOLY_OP(MemAlloc)
      WOOLY_OP(MemFree)
      WOOLY_OP(MemGetInfo)
      WOOLY_OP(MemGetAddressRange)
      WOOLY_OP(TenantView)
      WOOLY_OP(MemcpyHtoD)
      WOOLY_OP(MemcpyDtoH)
      WOOLY_OP(MemcpyDtoD)
      WOOLY_OP(Memset)
      WOOLY_OP(Memcpy3D)
      WOOLY_SESSION_MEMORY_EXT_OPS(WOOLY_OP)
      WOOLY_SESSION_GRAPH_OPS(WOOLY_OP)
      WOOLY_OP(ModuleLoadData)
      WOOLY_OP(ModuleGetFunction)
      WOOLY_OP(ModuleGetGlobal)
      WOOLY_OP(ModuleUnload)
      WOOLY_OP(ModuleGetFunctionCount)
      WOOLY_OP(LibraryLoadData)
      WOOLY_OP(LibraryGetKernel)
      WOOLY_OP(LibraryGetModule)
      WOOLY_OP(LibraryGetGlobal)
      WOOLY_OP(LibraryUnload)
      WOOLY_OP(KernelGetFunction)
      WOOLY_OP(FuncGetAttribute)
      WOOLY_OP(FuncSetAttribute)
      WOOLY_OP(LaunchKernel)
      WOOLY_OP(StreamCreate)
      WOOLY_OP(StreamDestroy)
      WOOLY_OP(StreamSynchronize)
      WOOLY_OP(StreamQuery)
      WOOLY_OP(StreamWaitEvent)
      WOOLY_OP(EventCreate)
      WOOLY_OP(EventRecord)
      WOOLY_OP(EventSynchronize)
      WOOLY_OP(EventQuery)
      WOOLY_OP(EventElapsedTime)
      WOOLY_OP(EventDestroy)
      WOOLY_OP(CtxSynchronize)
      WOOLY_OP(ImageLoadCached)
      WOOLY_OP(HostShmRegister)
      WOOLY_OP(HostShmUnregister)
      WOOLY_OP(MemcpyHtoDShared)
      WOOLY_OP(MemcpyDtoHShared)
      WOOLY_OP(DedupProbe)
      WOOLY_OP(DedupPublish)
#undef WOOLY_OP
  }
  if (handler == nullptr) {  // unknown op, or a reply sent as a request
    spdlog::debug("client {}: unsupported op {}", id_, op);
    reply.payload = ResultOnly(CUDA_ERROR_NOT_SUPPORTED);
    return reply;
  }

  no_reply_ = (header.flags & wire::kFlagNoReply) != 0;
  queued_ = false;
  // Only a launch may go behind queued launches (OpLaunchKernel decides).
  if (op != static_cast<uint16_t>(Op::kLaunchKernel)) DrainPipelineLocked();

  // Trace level times each command from here (waiting for the context
  // included), for finding where a workload's time goes.
  const bool tracing = spdlog::should_log(spdlog::level::trace);
  const absl::Time trace_start = tracing ? absl::Now() : absl::InfinitePast();
  // Inside the shared context for the whole command. A client whose context
  // was lost gets its sticky error, as the native driver answers every call
  // in a faulted context, and nothing touches the GPU.
  SharedContext::Access access(env_->context, context_generation_.load(std::memory_order_relaxed));
  if (!access.ok()) {
    spdlog::debug("client {}: {} seq {} -> CUresult {} (context lost)", id_, wire::OpName(op),
                  header.seq, static_cast<int>(access.result()));
    reply.payload = ResultOnly(access.result());
    return reply;
  }
  // A synchronization ends the measurement batches first, so that their end
  // events are not recorded after the wait.
  if (sched_ != nullptr && ReportsDeferredErrors(op) && sched_->has_open_batch()) {
    sched_->CloseBatches();
  }
  wire::Reader in(payload.data(), payload.size());
  wire::Writer out;
  if (spare_reply_.capacity() > 0) out.Reuse(std::move(spare_reply_));
  out.Put<int32_t>(CUDA_SUCCESS);
  absl::Status status;
  // Overcommit: the client's memory is resident (swapped in first if need
  // be) and it stays a non-victim while the command is issued.
  bool node_busy = false;
  if (node_client_ && TouchesDeviceMemory(op)) {
    status = env_->node_memory->BeginKernel(id_);
    node_busy = status.ok();
  }
  if (status.ok()) {
    try {
      status = (this->*handler)(in, out);
    } catch (const std::bad_alloc&) {
      status = CuError(CUDA_ERROR_OUT_OF_MEMORY, "server out of host memory");
    } catch (const std::exception& e) {
      status = CuError(CUDA_ERROR_UNKNOWN, e.what());
    }
  }
  if (node_busy) env_->node_memory->EndCommand(id_);
  CUresult result = ToCuResult(status);
  const bool no_reply = (header.flags & wire::kFlagNoReply) != 0;
  if (no_reply && result != CUDA_SUCCESS) {
    spdlog::debug(
        "client {}: {} seq {} (no reply) -> CUresult {} ({}); reported at the next "
        "synchronization",
        id_, wire::OpName(op), header.seq, static_cast<int>(result), status.ToString());
    DrainPipelineLocked();  // an error of an earlier, queued launch comes first
    if (deferred_error_ == CUDA_SUCCESS) deferred_error_ = result;
  } else if (!no_reply && result == CUDA_SUCCESS && deferred_error_ != CUDA_SUCCESS &&
             ReportsDeferredErrors(op)) {
    result = deferred_error_;
    deferred_error_ = CUDA_SUCCESS;
    status = CuError(result, "an earlier asynchronous command failed");
  }
  // A sticky result faults the context; the access resets it on return, so
  // this reply goes out once the server can serve new sessions again.
  access.Observe(result, [&]() ABSL_NO_THREAD_SAFETY_ANALYSIS { return DescribeLocked(op); });
  if (result != CUDA_SUCCESS) {
    spdlog::debug("client {}: {} seq {} -> CUresult {} ({})", id_, wire::OpName(op), header.seq,
                  static_cast<int>(result), status.ToString());
    reply.payload = ResultOnly(result);
  } else {
    if (tracing) {
      spdlog::trace("client {}: {} seq {} ok in {} us ({} bytes)", id_, wire::OpName(op),
                    header.seq, absl::ToInt64Microseconds(absl::Now() - trace_start),
                    payload.size());
    }
    reply.payload = std::move(out.data());
  }
  // A queued launch is counted when it runs (RunPipelined).
  if (result == CUDA_SUCCESS && op == static_cast<uint16_t>(Op::kLaunchKernel) && !queued_) {
    kernels_launched_.fetch_add(1, std::memory_order_relaxed);
  }
  if (!LeavesStatsAlone(op)) PublishStats();
  return reply;
}

void ClientSession::RecycleReply(std::vector<uint8_t> payload) {
  // Only payloads worth keeping: bulk data up to one copy chunk.
  if (payload.capacity() < (size_t{1} << 20) || payload.capacity() > wire::kCopyChunk + 4096) {
    return;
  }
  absl::MutexLock lock(&mu_);
  if (payload.capacity() > spare_reply_.capacity()) spare_reply_ = std::move(payload);
}

ClientSession::Reply ClientSession::HandleHello(const wire::FrameHeader& header,
                                                absl::Span<const uint8_t> payload) {
  Reply reply;
  reply.op = static_cast<uint16_t>(header.op | wire::kReplyBit);
  reply.seq = header.seq;
  wire::Reader in(payload.data(), payload.size());
  // The version comes first and alone decides compatibility, so a client of
  // another version always gets this clear answer whatever follows it.
  const uint32_t version = in.Get<uint32_t>();
  if (!in.ok()) {
    reply.payload = ResultOnly(CUDA_ERROR_INVALID_VALUE);
    reply.close = true;
    return reply;
  }
  if (version != wire::kProtocolVersion) {
    const std::string message =
        absl::StrCat("wooly protocol version mismatch: the client speaks version ", version,
                     " but woolyd ", env_->server_version, " speaks version ",
                     wire::kProtocolVersion, "; use a libwooly and woolyd from the same release");
    spdlog::warn("client {} ({}): {}", id_, peer_, message);
    wire::Writer w;
    w.Put<int32_t>(CUDA_ERROR_NOT_SUPPORTED).PutStr(message);
    reply.payload = std::move(w.data());
    reply.close = true;
    return reply;
  }
  const uint32_t pid = in.Get<uint32_t>();
  const int32_t priority = in.Get<int32_t>();
  std::string name = in.GetStr();
  if (!in.ok()) {
    reply.payload = ResultOnly(CUDA_ERROR_INVALID_VALUE);
    reply.close = true;
    return reply;
  }
  if (name.size() > kMaxClientNameBytes) name.resize(kMaxClientNameBytes);
  // Optional since clients of this protocol version may omit them.
  std::string pod, pod_namespace;
  if (in.remaining() > 0) {
    pod = in.GetStr();
    pod_namespace = in.GetStr();
    if (!in.ok()) pod.clear(), pod_namespace.clear();
    if (pod.size() > kMaxClientNameBytes) pod.resize(kMaxClientNameBytes);
    if (pod_namespace.size() > kMaxClientNameBytes) pod_namespace.resize(kMaxClientNameBytes);
  }
  // The client's settings; the fixed priority field stands for
  // WOOLY_PRIORITY (the client validated it).
  scheduler::EnvMap env;
  env[scheduler::kEnvPriority] = std::to_string(scheduler::ClampClientPriority(priority));
  if (in.ok() && in.remaining() > 0) {
    const uint32_t n = in.Get<uint32_t>();
    for (uint32_t i = 0; in.ok() && i < n && i < 64; ++i) {
      std::string key = in.GetStr();
      std::string value = in.GetStr();
      if (in.ok() && key.size() <= 64 && value.size() <= 1024) env[key] = std::move(value);
    }
  }
  auto refuse = [&](const std::string& message, CUresult code = CUDA_ERROR_INVALID_VALUE) {
    spdlog::warn("client {} ({}): refused: {}", id_, peer_, message);
    wire::Writer w;
    w.Put<int32_t>(code).PutStr(message);
    reply.payload = std::move(w.data());
    reply.close = true;
    return reply;
  };
  absl::StatusOr<ClientSettings> settings = ParseClientSettings(env);
  if (!settings.ok()) {
    return refuse(absl::StrCat("bad client setting: ", settings.status().message()));
  }
  ClientIdentity who;
  who.client_id = id_;
  who.name = name;
  who.pid = pid;
  who.pod = pod;
  who.pod_namespace = pod_namespace;
  who.pid_namespace = peer_pid_namespace_;
  absl::StatusOr<std::unique_ptr<TenantMembership>> membership =
      env_->tenants->Join(who, *settings);
  if (!membership.ok()) {
    // ResourceExhausted: WOOLY_MEMORY_REQUIRED is more than the tenant can have.
    return refuse(std::string(membership.status().message()),
                  membership.status().code() == absl::StatusCode::kResourceExhausted
                      ? CUDA_ERROR_OUT_OF_MEMORY
                      : CUDA_ERROR_INVALID_VALUE);
  }
  membership_ = std::move(*membership);
  {
    absl::MutexLock stats_lock(&stats_mu_);
    stats_.pod = std::move(pod);
    stats_.pod_namespace = std::move(pod_namespace);
    stats_.tenant = membership_->tenant();
  }
  pid_ = pid;
  name_ = std::move(name);
  priority_ = membership_->policy().policy.priority;
  if (settings->observer) {
    // The NVML view: no stream, nothing on the GPU, not a client in status.
    observer_.store(true, std::memory_order_release);
    reply.payload = HelloAccepted();
    spdlog::debug("observer {} connected: pid {}, tenant '{}', {} {}", id_, pid_,
                  membership_->tenant(), transport_, peer_);
    return reply;
  }

  const int stream_priority = scheduler::StreamPriorityFor(
      priority_, env_->device.stream_priority_least, env_->device.stream_priority_greatest);
  // A context lost to an earlier fault is reset before new work starts in it
  // (this retries a reset that failed). Should another fault come between
  // the reset and the access, its reset is awaited once more.
  std::optional<SharedContext::Access> access;
  CUresult lost = CUDA_SUCCESS;
  for (int attempt = 0; attempt < 2 && !access; ++attempt) {
    if (absl::Status usable = env_->context->EnsureUsable(); !usable.ok()) {
      lost = ToCuResult(usable);
      break;
    }
    access.emplace(env_->context, SharedContext::kUnbound);
    if (!access->ok()) {
      lost = access->result();
      access.reset();
    }
  }
  if (!access) {
    spdlog::error(
        "client {} ({}): refused: the shared GPU context is lost ({}) and could not "
        "be reset",
        id_, peer_, CuResultName(lost));
    reply.payload = ResultOnly(lost);
    reply.close = true;
    return reply;
  }
  if (env_->share_control != nullptr) sched_ = env_->share_control->Join(id_);
  uint64_t placement = 0;
  absl::StatusOr<BackendHandle> stream = NewBackendStream(stream_priority, &placement);
  access->Observe(stream.status(), [&]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
    return DescribeLocked(static_cast<uint16_t>(Op::kHello));
  });
  if (!stream.ok()) {
    spdlog::error("client {} ({}): cannot create its default stream: {}", id_, peer_,
                  stream.status().ToString());
    reply.payload = ResultOnly(ToCuResult(stream.status()));
    reply.close = true;
    return reply;
  }
  default_stream_ = StreamRec{};
  default_stream_.backend = *stream;
  default_stream_.placement = placement;
  has_default_stream_ = true;
  // From here the client's objects live in this generation of the context.
  env_->context->Bind(access->generation());
  context_generation_.store(access->generation(), std::memory_order_release);
  PublishQuiesceStreamsLocked();
  if (env_->node_memory != nullptr) {
    memory::ClientOptions mo;
    mo.policy.priority = priority_;
    mo.policy.noswap = membership_->noswap();  // the client's, else the server default
    mo.dedup = membership_->dedup();
    // Resolved from [defaults], WOOLY_OVERCOMMIT_PERCENT, the policy file
    // and wooly-cli (tenants.h); later wooly-cli changes go through
    // Server::SetClientPolicy.
    mo.overcommit_percent = membership_->overcommit_percent();
    // Its cleanup (CloseLocked) runs once the generation is bound, so the
    // reservation is released even when this Hello fails below.
    if (absl::Status s = env_->node_memory->AddClient(
            id_, mo, [this]() ABSL_NO_THREAD_SAFETY_ANALYSIS { return QuiesceStreams(); });
        !s.ok()) {
      spdlog::error("client {} ({}): cannot set up its overcommitted memory: {}", id_, peer_,
                    s.ToString());
      reply.payload = ResultOnly(ToCuResult(s));
      reply.close = true;
      return reply;
    }
    node_client_ = true;
    node_dedup_ = mo.dedup;
  }

  reply.payload = HelloAccepted();
  PublishStats();
  spdlog::info("client {} connected: name '{}', pid {}, priority {} (stream priority {}), {} {}",
               id_, name_, pid_, priority_, stream_priority, transport_, peer_);
  return reply;
}

std::vector<uint8_t> ClientSession::HelloAccepted() {
  wire::Writer w;
  w.Put<int32_t>(CUDA_SUCCESS)
      .Put<uint32_t>(wire::kProtocolVersion)
      .PutStr(env_->server_version)
      .Put<uint64_t>(id_);
  wire::PutDeviceInfo(w, env_->device);
  hello_done_.store(true, std::memory_order_release);
  return std::move(w.data());
}

void ClientSession::Close(const std::string& reason) {
  absl::MutexLock lock(&mu_);
  CloseLocked(reason);
}

void ClientSession::CloseLocked(const std::string& reason) {
  if (closed_) return;
  closed_ = true;
  // Queued launches run (or fail) before anything is released.
  if (pipeline_ != nullptr) {
    pipeline_->Stop();
    pipeline_error_.store(CUDA_SUCCESS, std::memory_order_relaxed);
  }
  // Leaves its tenant (returning what it was charged) once released.
  absl::Cleanup leave = [this]() ABSL_NO_THREAD_SAFETY_ANALYSIS { membership_.reset(); };
  const uint64_t generation = context_generation_.load(std::memory_order_relaxed);
  if (generation == SharedContext::kUnbound) {
    // Never said hello (or was refused): it owns nothing on the GPU.
    PublishStats();
    spdlog::debug("connection {} ({} {}) closed before hello ({})", id_, transport_, peer_, reason);
    return;
  }
  std::string summary;
  CUresult lost = CUDA_SUCCESS;
  {
    SharedContext::Access access(env_->context, generation);
    // Measurement stops first; its events go with the rest.
    if (sched_) sched_->Release(access.ok());
    if (!access.ok()) {
      lost = access.result();
    } else if (!ReleaseAllLocked(access, &summary)) {
      lost = env_->context->LostResult(generation);
    }
    // Its objects died with the context (or are about to, with the reset
    // this access then runs as it closes): forget them, call nothing.
    if (lost != CUDA_SUCCESS) summary = DropAllLocked();
  }
  env_->context->Unbind(generation);
  if (sched_ && env_->share_control != nullptr) env_->share_control->Leave(id_);
  PublishStats();
  if (lost != CUDA_SUCCESS) {
    spdlog::info(
        "client {} ('{}', pid {}) disconnected ({}); its GPU state was lost with the shared "
        "context ({}), so nothing was released; dropped {}",
        id_, name_, pid_, reason, CuResultName(lost), summary);
  } else {
    spdlog::info("client {} ('{}', pid {}) disconnected ({}); released {}", id_, name_, pid_,
                 reason, summary);
  }
}

bool ClientSession::ReleaseAllLocked(SharedContext::Access& access, std::string* summary) {
  auto warn = [&](const char* what, const absl::Status& s) {
    if (s.ok()) return;
    spdlog::warn("client {}: cleanup {} failed: {}", id_, what, s.ToString());
    access.Observe(s, [&]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
      return absl::StrCat("client ", id_, " ('", name_, "', pid ", pid_, ") cleanup (", what, ")");
    });
  };
  // 0. Open stream captures (a capturing stream cannot be synchronized).
  EndCapturesForClose();
  // 1. Let queued work finish so nothing still uses what is released below.
  if (has_default_stream_)
    warn("synchronize", backend_->StreamSynchronize(default_stream_.backend));
  for (auto& [id, s] : streams_) warn("synchronize", backend_->StreamSynchronize(s.backend));
  // Nothing of it runs any more: another client's eviction need not wait
  // for these streams, which are destroyed below.
  {
    absl::MutexLock lock(&quiesce_mu_);
    quiesce_streams_.clear();
  }
  // A fault seen here (an asynchronous one, often this client's own last
  // kernel) means the context and everything below are gone.
  if (access.faulted()) return false;
  // 1b. Executable graphs and graphs.
  ReleaseGraphsForClose();
  // 2. Events, including the ones used to order streams.
  const size_t n_events = events_.size();
  for (auto& [id, e] : events_) warn("event destroy", backend_->EventDestroy(e));
  events_.clear();
  if (move_event_ != 0) warn("event destroy", backend_->EventDestroy(move_event_));
  move_event_ = 0;
  // 3. Streams.
  const size_t n_streams = streams_.size();
  for (auto& [id, s] : streams_) {
    if (s.sync_event) warn("event destroy", backend_->EventDestroy(s.sync_event));
    warn("stream destroy", backend_->StreamDestroy(s.backend));
  }
  streams_.clear();
  if (has_default_stream_) {
    if (default_stream_.sync_event) {
      warn("event destroy", backend_->EventDestroy(default_stream_.sync_event));
    }
    warn("stream destroy", backend_->StreamDestroy(default_stream_.backend));
    has_default_stream_ = false;
  }
  // 4. Modules (those a library owns go with it) and libraries.
  size_t n_modules = 0;
  for (auto& [id, m] : modules_) {
    if (m.library != 0) continue;
    ++n_modules;
    warn("module unload", backend_->ModuleUnload(m.backend));
  }
  modules_.clear();
  const size_t n_libraries = libraries_.size();
  for (auto& [id, l] : libraries_) warn("library unload", backend_->LibraryUnload(l.backend));
  libraries_.clear();
  functions_.clear();
  kernels_.clear();
  globals_.Clear();
  global_refs_.clear();
  // 5. Memory.
  const size_t n_allocations = allocations_.size();
  const uint64_t bytes = allocations_.TotalBytes();
  for (const memory::Range& r : allocations_.Ranges()) {
    if (!node_allocations_.contains(r.base)) warn("free", backend_->MemFree(r.base));
  }
  allocations_.Clear();
  LeaveNodeMemoryLocked();
  // 6. Mappings, allocation handles, reservations and pools.
  CloseMemoryExtLocked();
  // 7. Shared pinned memory (its copies finished with the streams).
  const size_t n_shared = shared_host_.size();
  ReleaseSharedHostLocked(/*unregister=*/true);
  *summary = absl::StrCat(n_allocations, " allocations (", bytes, " bytes), ", n_modules,
                          " modules, ", n_libraries, " libraries, ", n_streams + 1, " streams, ",
                          n_events, " events, ", n_shared, " shared host regions");
  return true;
}

std::string ClientSession::DropAllLocked() {
  size_t n_modules = 0;
  for (const auto& [id, m] : modules_) n_modules += m.library == 0;
  const std::string summary =
      absl::StrCat(allocations_.size(), " allocations (", allocations_.TotalBytes(), " bytes), ",
                   n_modules, " modules, ", libraries_.size(), " libraries, ",
                   streams_.size() + (has_default_stream_ ? 1 : 0), " streams, ", events_.size(),
                   " events, ", graphs_.graphs.size() + graphs_.execs.size(), " graphs");
  events_.clear();
  streams_.clear();
  default_stream_ = StreamRec{};
  has_default_stream_ = false;
  move_event_ = 0;
  modules_.clear();
  libraries_.clear();
  functions_.clear();
  kernels_.clear();
  globals_.Clear();
  global_refs_.clear();
  allocations_.Clear();
  {
    absl::MutexLock lock(&quiesce_mu_);
    quiesce_streams_.clear();
  }
  // Bookkeeping mostly: the device calls it makes in the lost context fail
  // and are counted (memory::NodeUsage::teardown_errors).
  LeaveNodeMemoryLocked();
  ReleaseSharedHostLocked(/*unregister=*/false);
  graphs_ = SessionGraphs{};
  mem_ext_.reset();  // bookkeeping only: its deleter calls nothing
  return summary;
}

// ---------------------------------------------------------------- ownership

bool ClientSession::OwnsRange(DevPtr ptr, uint64_t size) const {
  return allocations_.Contains(ptr, size) || globals_.Contains(ptr, size) ||
         OwnsMappedRange(ptr, size);
}

absl::Status ClientSession::CheckRange(DevPtr ptr, uint64_t size) const {
  return OwnsRange(ptr, size) ? absl::OkStatus() : BadPointer();
}

ClientSession::StreamRec* ClientSession::FindStream(uint64_t id) {
  if (IsDefaultStream(id)) return has_default_stream_ ? &default_stream_ : nullptr;
  auto it = streams_.find(id);
  return it == streams_.end() ? nullptr : &it->second;
}

absl::Status ClientSession::OrderAfter(StreamRec& waiter, StreamRec& signaler) {
  DrainPipelineLocked();  // the record must follow the signaler's queued launches
  if (signaler.sync_event == 0) {
    absl::StatusOr<BackendHandle> e = backend_->EventCreate(kSyncEventFlags);
    if (!e.ok()) return e.status();
    signaler.sync_event = *e;
  }
  if (absl::Status s = backend_->EventRecord(signaler.sync_event, signaler.backend, 0); !s.ok()) {
    return s;
  }
  return backend_->StreamWaitEvent(waiter.backend, signaler.sync_event, 0);
}

absl::StatusOr<BackendHandle> ClientSession::StreamForWork(uint64_t id) {
  // CUDA's legacy stream waits for all earlier work of the blocking streams,
  // and blocking streams wait for earlier legacy-stream work. Every backend
  // stream is non-blocking, so that rule is replayed here with events, only
  // when the other side has issued work since the last ordering.
  if (IsDefaultStream(id)) {
    if (!has_default_stream_) return BadHandle("stream");
    for (auto& [sid, s] : streams_) {
      if (!s.blocking || s.epoch == s.seen_by_default) continue;
      // Ordering behind a capturing stream would join the legacy stream to
      // its capture; CUDA refuses such an implicit join.
      if (StreamCapturing(s.backend)) {
        return CuError(CUDA_ERROR_STREAM_CAPTURE_IMPLICIT, "legacy stream joins a capture");
      }
      if (absl::Status st = OrderAfter(default_stream_, s); !st.ok()) return st;
      s.seen_by_default = s.epoch;
    }
    MoveToPlacement(default_stream_);
    ++default_stream_.epoch;
    return default_stream_.backend;
  }
  auto it = streams_.find(id);
  if (it == streams_.end()) return BadHandle("stream");
  StreamRec& s = it->second;
  MoveToPlacement(s);
  // A capturing stream's work is recorded, not run: it waits for nothing,
  // and an event wait would cross the capture's boundary.
  if (s.blocking && default_stream_.epoch != s.seen_default_epoch && !StreamCapturing(s.backend)) {
    if (absl::Status st = OrderAfter(s, default_stream_); !st.ok()) return st;
    s.seen_default_epoch = default_stream_.epoch;
  }
  ++s.epoch;
  return s.backend;
}

absl::StatusOr<BackendHandle> ClientSession::NewBackendStream(int32_t priority,
                                                              uint64_t* placement) {
  // The scheduler decides where a client's streams run, and at which CUDA
  // priority: tenants compete by their policy, not by what they ask for.
  *placement = 0;
  if (sched_ == nullptr) return backend_->StreamCreate(CU_STREAM_NON_BLOCKING, priority);
  const Placement p = sched_->placement();
  *placement = p.generation;
  if (p.partition != 0) {
    return backend_->PartitionStreamCreate(p.partition, CU_STREAM_NON_BLOCKING, p.stream_priority);
  }
  return backend_->StreamCreate(CU_STREAM_NON_BLOCKING, p.stream_priority);
}

void ClientSession::MoveToPlacement(StreamRec& s) {
  if (sched_ == nullptr || s.placement == sched_->placement_generation()) return;
  // A capturing stream records rather than runs: it moves after its capture.
  if (StreamCapturing(s.backend)) return;
  DrainPipelineLocked();  // the move's record must follow the queued launches
  uint64_t placement = 0;
  absl::StatusOr<BackendHandle> fresh = NewBackendStream(0, &placement);
  // Even on failure: the stream stays where it is until the next change.
  s.placement = placement;
  if (!fresh.ok()) {
    spdlog::warn("client {}: cannot move a stream to its scheduler placement: {}", id_,
                 fresh.status().ToString());
    return;
  }
  if (move_event_ == 0) {
    absl::StatusOr<BackendHandle> e = backend_->EventCreate(CU_EVENT_DISABLE_TIMING);
    if (!e.ok()) {
      (void)backend_->StreamDestroy(*fresh);
      return;
    }
    move_event_ = *e;
  }
  if (!backend_->EventRecord(move_event_, s.backend, 0).ok() ||
      !backend_->StreamWaitEvent(*fresh, move_event_, 0).ok()) {
    (void)backend_->StreamDestroy(*fresh);
    return;
  }
  sched_->CloseBatch(s.backend);
  const BackendHandle old = s.backend;
  s.backend = *fresh;
  // The fresh stream waits for the old one's work, so quiescing it covers
  // both; the old one leaves the quiesce list before it is destroyed.
  PublishQuiesceStreamsLocked();
  // The driver keeps the old stream until its work is done.
  (void)backend_->StreamDestroy(old);
}

void ClientSession::DrainPipelineLocked() {
  if (pipeline_ == nullptr) return;
  pipeline_->Drain();
  const int32_t e = pipeline_error_.exchange(CUDA_SUCCESS, std::memory_order_acq_rel);
  if (e != CUDA_SUCCESS && deferred_error_ == CUDA_SUCCESS) {
    deferred_error_ = static_cast<CUresult>(e);
  }
}

void ClientSession::RunPipelined(absl::FunctionRef<LaunchPipeline::Job*()> next) {
  // One context access per burst; the session thread holds its own.
  SharedContext::Access access(env_->context, context_generation_.load(std::memory_order_relaxed));
  while (LaunchPipeline::Job* job = next()) {
    CUresult result = access.result();
    if (access.ok()) {
      if (job->measured) sched_->BeginLaunch(job->config.stream);
      const absl::Status status = backend_->LaunchKernel(
          job->function, job->config, absl::MakeConstSpan(job->args.data(), job->args.size()));
      if (job->measured && status.ok()) {
        sched_->EndLaunch(job->config.stream, job->function, job->config);
      }
      result = ToCuResult(status);
      access.Observe(result, [this] { return absl::StrCat("client ", id_, " LaunchKernel"); });
      if (!status.ok()) {
        spdlog::debug(
            "client {}: LaunchKernel (pipelined) -> {}; reported at the next "
            "synchronization",
            id_, status.ToString());
      }
    }
    if (result == CUDA_SUCCESS) {
      kernels_launched_.fetch_add(1, std::memory_order_relaxed);
    } else {
      int32_t expected = CUDA_SUCCESS;
      pipeline_error_.compare_exchange_strong(expected, result, std::memory_order_acq_rel);
    }
  }
}

bool ClientSession::HasOpenBatch() const {
  if (sched_ == nullptr) return false;
  // Queued launches open a batch once they run.
  const LaunchPipeline* p = pipeline_view_.load(std::memory_order_acquire);
  return sched_->has_open_batch() || (p != nullptr && p->Busy());
}

void ClientSession::Admit(const std::atomic<bool>& stopping) {
  if (sched_ != nullptr && hello_done()) sched_->Admit(stopping);
}

void ClientSession::OnIdle() {
  if (!HasOpenBatch()) return;
  absl::MutexLock lock(&mu_);
  if (closed_) return;
  DrainPipelineLocked();
  SharedContext::Access access(env_->context, context_generation_.load(std::memory_order_relaxed));
  if (access.ok()) sched_->CloseBatches();
}

absl::StatusOr<BackendHandle> ClientSession::EventFor(uint64_t id) const {
  auto it = events_.find(id);
  if (it == events_.end()) return BadHandle("event");
  return it->second;
}

absl::StatusOr<ClientSession::Callable> ClientSession::ResolveCallable(uint64_t id) {
  if (auto f = functions_.find(id); f != functions_.end()) {
    return Callable{f->second.backend, f->second.arg_bytes};
  }
  auto k = kernels_.find(id);
  if (k == kernels_.end()) return BadHandle("function");
  return Callable{k->second.backend_function, k->second.arg_bytes};
}

absl::StatusOr<uint64_t> ClientSession::NewFunction(BackendHandle backend, uint64_t owner) {
  absl::StatusOr<std::vector<wire::ParamInfo>> layout = backend_->FuncGetParamLayout(backend);
  if (!layout.ok()) return layout.status();
  const uint64_t id = NewId();
  FunctionRec& f = functions_[id];
  f.backend = backend;
  f.owner = owner;
  f.arg_bytes = ArgBytesNeeded(*layout);
  f.layout = std::move(*layout);
  return id;
}

absl::Status ClientSession::RegisterGlobal(const GlobalInfo& g, std::set<DevPtr>& owner_globals) {
  if (g.size == 0 || owner_globals.contains(g.ptr)) return absl::OkStatus();
  if (std::optional<memory::Range> r = globals_.FindExact(g.ptr)) {
    if (r->size != g.size) {
      return CuError(CUDA_ERROR_UNKNOWN, "backend reported a global overlapping another");
    }
    ++global_refs_[g.ptr];
  } else {
    if (!globals_.Insert(g.ptr, g.size)) {
      return CuError(CUDA_ERROR_UNKNOWN, "backend reported a global overlapping another");
    }
    global_refs_[g.ptr] = 1;
  }
  owner_globals.insert(g.ptr);
  return absl::OkStatus();
}

void ClientSession::ReleaseGlobals(std::set<DevPtr>& owner_globals) {
  for (DevPtr p : owner_globals) {
    auto it = global_refs_.find(p);
    if (it == global_refs_.end()) continue;
    if (--it->second == 0) {
      global_refs_.erase(it);
      globals_.Erase(p);
    }
  }
  owner_globals.clear();
}

void ClientSession::DropFunctionsOf(uint64_t owner) {
  std::erase_if(functions_, [owner](const auto& f) { return f.second.owner == owner; });
}

void ClientSession::DropModuleRecord(uint64_t module_id) {
  auto it = modules_.find(module_id);
  if (it == modules_.end()) return;
  ReleaseGlobals(it->second.globals);
  DropFunctionsOf(module_id);
  modules_.erase(it);
}

// ------------------------------------------------------------------- memory

absl::Status ClientSession::ChargeMemory(uint64_t bytes) {
  if (membership_ == nullptr || membership_->ReserveMemory(bytes)) return absl::OkStatus();
  return CuError(CUDA_ERROR_OUT_OF_MEMORY,
                 absl::StrCat("tenant '", membership_->tenant(), "' memory limit of ",
                              membership_->tenant_limit(), " bytes reached (",
                              membership_->tenant_used(), " in use)"));
}

void ClientSession::UnchargeMemory(uint64_t bytes) {
  if (membership_ != nullptr) membership_->ReleaseMemory(bytes);
}

void ClientSession::PublishQuiesceStreamsLocked() {
  std::vector<BackendHandle> streams;
  if (has_default_stream_) streams.push_back(default_stream_.backend);
  for (const auto& [id, s] : streams_) streams.push_back(s.backend);
  absl::MutexLock lock(&quiesce_mu_);
  quiesce_streams_ = std::move(streams);
}

absl::Status ClientSession::QuiesceStreams() {
  absl::MutexLock lock(&quiesce_mu_);
  for (BackendHandle s : quiesce_streams_) {
    if (absl::Status st = backend_->StreamSynchronize(s); !st.ok()) return st;
  }
  return absl::OkStatus();
}

absl::Status ClientSession::PrepareNodeWriteLocked(DevPtr dst, uint64_t size) {
  // Only a dedup client's chunks are ever shared.
  if (!node_dedup_ || !env_->node_memory->TouchesShared(id_, dst, size)) {
    return absl::OkStatus();
  }
  if (absl::Status s = QuiesceStreams(); !s.ok()) return s;
  return env_->node_memory->PrepareWrite(id_, dst, size);
}

absl::Status ClientSession::OpDedupProbe(wire::Reader& in, wire::Writer& out) {
  const uint64_t assumed = in.Get<uint64_t>();
  const uint32_t n = in.Get<uint32_t>();
  if (!in.ok()) return Malformed();
  constexpr size_t kEntry = sizeof(uint64_t) + sizeof(memory::ContentHash);
  if (in.remaining() != uint64_t{n} * kEntry) return Malformed();
  const uint64_t chunk = node_dedup_ ? env_->node_memory->chunk_bytes() : 0;
  out.Put<uint64_t>(chunk);
  if (chunk == 0 || assumed != chunk) {
    out.Put<uint32_t>(0);  // the client asked for the size, or assumed another
    return absl::OkStatus();
  }
  std::vector<std::pair<uint64_t, memory::ContentHash>> entries(n);
  for (auto& [va, digest] : entries) {
    va = in.Get<uint64_t>();
    digest = in.Get<memory::ContentHash>();
  }
  if (!in.ok()) return Malformed();
  // Attaching changes the mapping behind the client's addresses.
  if (n > 0) {
    if (absl::Status s = QuiesceStreams(); !s.ok()) return s;
  }
  out.Put<uint32_t>(n);
  for (const auto& [va, digest] : entries) {
    bool attached = false;
    if (CheckRange(va, chunk).ok()) {
      absl::StatusOr<bool> a = env_->node_memory->AttachByDigest(id_, va, chunk, digest);
      // Not a whole chunk, or no room: the client uploads it as usual.
      attached = a.ok() && *a;
    }
    out.Put<uint8_t>(attached ? 1 : 0);
  }
  return absl::OkStatus();
}

absl::Status ClientSession::OpDedupPublish(wire::Reader& in, wire::Writer& out) {
  const uint64_t chunk = in.Get<uint64_t>();
  const uint32_t n = in.Get<uint32_t>();
  if (!in.ok() || in.remaining() != uint64_t{n} * sizeof(uint64_t)) return Malformed();
  std::vector<uint64_t> vas(n);
  for (uint64_t& va : vas) va = in.Get<uint64_t>();
  if (!in.ok()) return Malformed();
  const bool usable = node_dedup_ && chunk == env_->node_memory->chunk_bytes();
  // The copies into these chunks must have landed, and nothing of this
  // client may write them while they are read back and hashed.
  if (usable && n > 0) {
    if (absl::Status s = QuiesceStreams(); !s.ok()) return s;
  }
  out.Put<uint32_t>(n);
  for (uint64_t va : vas) {
    uint8_t outcome = 0;
    if (usable && CheckRange(va, chunk).ok()) {
      absl::StatusOr<memory::OfferOutcome> o = env_->node_memory->PublishChunk(id_, va, chunk);
      if (o.ok()) {
        switch (*o) {
          case memory::OfferOutcome::kPublished:
            outcome = 1;
            break;
          case memory::OfferOutcome::kAttached:
            outcome = 2;
            break;
          case memory::OfferOutcome::kAlreadyShared:
            outcome = 3;
            break;
          case memory::OfferOutcome::kUploadedPrivate:
            break;
        }
      } else if (!absl::IsInvalidArgument(o.status()) && !absl::IsResourceExhausted(o.status()) &&
                 !absl::IsFailedPrecondition(o.status())) {
        return o.status();  // a device error
      }
    }
    out.Put<uint8_t>(outcome);
  }
  return absl::OkStatus();
}

void ClientSession::LeaveNodeMemoryLocked() {
  if (!node_client_) return;
  node_client_ = false;
  node_dedup_ = false;
  node_allocations_.clear();
  if (absl::Status s = env_->node_memory->RemoveClient(id_); !s.ok()) {
    spdlog::warn("client {}: releasing its overcommitted memory: {}", id_, s.ToString());
  }
}

absl::Status ClientSession::OpMemAlloc(wire::Reader& in, wire::Writer& out) {
  const uint64_t size = in.Get<uint64_t>();
  if (!in.ok()) return Malformed();
  if (node_client_) {
    if (size == 0) return CuError(CUDA_ERROR_INVALID_VALUE, "cuMemAlloc of 0 bytes");
    if (absl::Status s = ChargeMemory(size); !s.ok()) return s;
    absl::StatusOr<memory::Allocation> a = env_->node_memory->Allocate(id_, size);
    if (!a.ok()) {
      UnchargeMemory(size);
      return a.status();
    }
    if (!allocations_.Insert(a->va, size)) {
      spdlog::error("client {}: overcommit returned overlapping allocation {:#x}+{}", id_, a->va,
                    size);
      (void)env_->node_memory->Free(id_, a->va);
      UnchargeMemory(size);
      return CuError(CUDA_ERROR_UNKNOWN, "overlapping allocation");
    }
    node_allocations_.insert(a->va);
    out.Put<uint64_t>(a->va);
    return absl::OkStatus();
  }
  if (absl::Status s = ChargeMemory(size); !s.ok()) return s;
  absl::StatusOr<DevPtr> p = backend_->MemAlloc(size);
  if (!p.ok()) {
    UnchargeMemory(size);
    return p.status();
  }
  if (!allocations_.Insert(*p, size)) {
    // A broken backend, not client input: refuse rather than track it wrongly.
    spdlog::error("client {}: backend returned overlapping allocation {:#x}+{}", id_, *p, size);
    (void)backend_->MemFree(*p);
    UnchargeMemory(size);
    return CuError(CUDA_ERROR_UNKNOWN, "overlapping allocation");
  }
  out.Put<uint64_t>(*p);
  return absl::OkStatus();
}

absl::Status ClientSession::OpMemFree(wire::Reader& in, wire::Writer& out) {
  const DevPtr p = in.Get<uint64_t>();
  if (!in.ok()) return Malformed();
  return FreeAllocationLocked(p, nullptr);
}

absl::Status ClientSession::FreeAllocationLocked(DevPtr p, const BackendHandle* stream) {
  std::optional<memory::Range> r = allocations_.FindExact(p);
  if (!r) return CuError(CUDA_ERROR_INVALID_VALUE, "not an allocation");
  if (node_allocations_.contains(p)) {
    // Overcommitted memory (node_memory.h) is not the driver's to free, and
    // its GPU work may still read it: CUDA's cuMemFree waits for the device
    // too, and cuMemFreeAsync for the stream's earlier work.
    absl::Status done = stream != nullptr ? backend_->StreamSynchronize(*stream) : QuiesceStreams();
    if (!done.ok()) return done;
    if (absl::Status s = env_->node_memory->Free(id_, p); !s.ok()) return s;
    node_allocations_.erase(p);
  } else if (absl::Status s =
                 stream != nullptr ? backend_->MemFreeAsync(p, *stream) : backend_->MemFree(p);
             !s.ok()) {
    return s;
  }
  allocations_.Erase(p);
  UnchargeMemory(r->size);
  return absl::OkStatus();
}

absl::Status ClientSession::OpMemGetInfo(wire::Reader& in, wire::Writer& out) {
  absl::StatusOr<MemInfo> m = backend_->MemGetInfo();
  if (!m.ok()) return m.status();
  uint64_t free = m->free, total = m->total;
  // A tenant with a limit sees the limit as the device's memory, as under a
  // native driver on a card of that size.
  if (const uint64_t limit = membership_ ? membership_->tenant_limit() : 0; limit != 0) {
    const uint64_t used = membership_->tenant_used();
    total = limit;
    free = std::min<uint64_t>(m->free, used >= limit ? 0 : limit - used);
  }
  out.Put<uint64_t>(free).Put<uint64_t>(total);
  return absl::OkStatus();
}

absl::Status ClientSession::OpTenantView(wire::Reader& in, wire::Writer& out) {
  absl::StatusOr<MemInfo> m = backend_->MemGetInfo();
  if (!m.ok()) return m.status();
  const std::string tenant = membership_ ? membership_->tenant() : std::string();
  TenantSummary summary = env_->tenants->Summary(tenant);
  double measured = 0, target = 0;
  absl::Duration busy;
  if (env_->share_control != nullptr) {
    for (const TenantProcess& p : summary.processes) {
      const ClientShare share = env_->share_control->ShareOf(p.client_id);
      measured += share.measured_share;
      target += share.target_share;
      busy += share.busy;
    }
  }
  out.PutStr(tenant)
      .Put<uint64_t>(summary.memory_limit)
      .Put<uint64_t>(summary.memory_limit != 0 ? summary.memory_limit : m->total)
      .Put<uint64_t>(summary.memory_used)
      .Put<uint64_t>(m->total)
      .Put<uint64_t>(m->free)
      .Put<double>(std::min(measured, 1.0))
      .Put<double>(std::min(target, 1.0))
      .Put<uint64_t>(static_cast<uint64_t>(absl::ToInt64Nanoseconds(busy)))
      .Put<uint32_t>(static_cast<uint32_t>(summary.processes.size()));
  for (const TenantProcess& p : summary.processes) {
    out.Put<uint32_t>(p.pid).Put<uint64_t>(p.bytes).PutStr(p.name);
  }
  return absl::OkStatus();
}

absl::Status ClientSession::OpMemGetAddressRange(wire::Reader& in, wire::Writer& out) {
  const DevPtr p = in.Get<uint64_t>();
  if (!in.ok()) return Malformed();
  std::optional<memory::Range> r = allocations_.Find(p);
  if (!r) r = globals_.Find(p);
  // What the native driver answers for an address it did not allocate.
  if (!r) return CuError(CUDA_ERROR_NOT_FOUND, "address not in an allocation");
  out.Put<uint64_t>(r->base).Put<uint64_t>(r->size);
  return absl::OkStatus();
}

absl::Status ClientSession::OpMemcpyHtoD(wire::Reader& in, wire::Writer& out) {
  const DevPtr dst = in.Get<uint64_t>();
  const uint64_t stream = in.Get<uint64_t>();
  const bool async = in.Get<uint8_t>() != 0;
  if (!in.ok()) return Malformed();
  const uint64_t size = in.remaining();
  if (size == 0) return absl::OkStatus();
  if (absl::Status s = CheckRange(dst, size); !s.ok()) return s;
  if (absl::Status s = RefuseHostCopyWhileCapturing(stream); !s.ok()) return s;
  absl::StatusOr<BackendHandle> st = StreamForWork(stream);
  if (!st.ok()) return st.status();
  if (node_dedup_ && env_->node_memory->IsWholeDedupChunk(id_, dst, size)) {
    // A whole chunk: the server hashes what it received and shares it with
    // identical resident content, or publishes it (node_memory.h). The copy
    // runs at once, so the client's earlier work must be done with it.
    if (absl::Status s = QuiesceStreams(); !s.ok()) return s;
    absl::StatusOr<memory::OfferOutcome> o = env_->node_memory->UploadChunk(
        id_, dst, std::span<const uint8_t>(in.rest(), static_cast<size_t>(size)));
    return o.status();
  }
  if (absl::Status s = PrepareNodeWriteLocked(dst, size); !s.ok()) return s;
  return backend_->MemcpyHtoD(dst, in.rest(), size, *st, async);
}

absl::Status ClientSession::OpMemcpyDtoH(wire::Reader& in, wire::Writer& out) {
  const DevPtr src = in.Get<uint64_t>();
  const uint64_t size = in.Get<uint64_t>();
  const uint64_t stream = in.Get<uint64_t>();
  const bool async = in.Get<uint8_t>() != 0;
  if (!in.ok()) return Malformed();
  if (size > wire::kMaxPayload - sizeof(int32_t)) {
    return CuError(CUDA_ERROR_INVALID_VALUE, "copy larger than one reply; chunk it");
  }
  if (size == 0) return absl::OkStatus();
  if (absl::Status s = CheckRange(src, size); !s.ok()) return s;
  if (absl::Status s = RefuseHostCopyWhileCapturing(stream); !s.ok()) return s;
  absl::StatusOr<BackendHandle> st = StreamForWork(stream);
  if (!st.ok()) return st.status();
  const size_t at = out.size();
  out.data().resize(at + size);
  return backend_->MemcpyDtoH(out.data().data() + at, src, size, *st, async);
}

absl::Status ClientSession::OpMemcpyDtoD(wire::Reader& in, wire::Writer& out) {
  const DevPtr dst = in.Get<uint64_t>();
  const DevPtr src = in.Get<uint64_t>();
  const uint64_t size = in.Get<uint64_t>();
  const uint64_t stream = in.Get<uint64_t>();
  const bool async = in.Get<uint8_t>() != 0;
  if (!in.ok()) return Malformed();
  if (size == 0) return absl::OkStatus();
  if (absl::Status s = CheckRange(dst, size); !s.ok()) return s;
  if (absl::Status s = CheckRange(src, size); !s.ok()) return s;
  absl::StatusOr<BackendHandle> st = StreamForWork(stream);
  if (!st.ok()) return st.status();
  if (absl::Status s = PrepareNodeWriteLocked(dst, size); !s.ok()) return s;
  return backend_->MemcpyDtoD(dst, src, size, *st, async);
}

absl::Status ClientSession::OpMemset(wire::Reader& in, wire::Writer& out) {
  const DevPtr dst = in.Get<uint64_t>();
  const uint64_t pitch = in.Get<uint64_t>();
  const uint32_t value = in.Get<uint32_t>();
  const uint8_t elem = in.Get<uint8_t>();
  const uint64_t width = in.Get<uint64_t>();
  const uint64_t height = in.Get<uint64_t>();
  const uint64_t stream = in.Get<uint64_t>();
  const bool async = in.Get<uint8_t>() != 0;
  if (!in.ok()) return Malformed();
  if (elem != 1 && elem != 2 && elem != 4) {
    return CuError(CUDA_ERROR_INVALID_VALUE, "memset element size must be 1, 2 or 4");
  }
  if (width == 0 || height == 0) return absl::OkStatus();
  uint64_t row_bytes = 0;
  uint64_t extent = 0;
  if (__builtin_mul_overflow(width, uint64_t{elem}, &row_bytes)) return BadPointer();
  if (height == 1) {
    extent = row_bytes;
  } else {
    if (pitch < row_bytes) return CuError(CUDA_ERROR_INVALID_VALUE, "pitch below row width");
    if (__builtin_mul_overflow(height - 1, pitch, &extent) ||
        __builtin_add_overflow(extent, row_bytes, &extent)) {
      return BadPointer();
    }
  }
  if (absl::Status s = CheckRange(dst, extent); !s.ok()) return s;
  absl::StatusOr<BackendHandle> st = StreamForWork(stream);
  if (!st.ok()) return st.status();
  if (absl::Status s = PrepareNodeWriteLocked(dst, extent); !s.ok()) return s;
  return backend_->Memset(dst, pitch, value, elem, width, height, *st, async);
}

absl::Status ClientSession::OpMemcpy3D(wire::Reader& in, wire::Writer& out) {
  wire::Copy3D g = wire::GetCopy3D(in);
  const uint64_t stream = in.Get<uint64_t>();
  const bool async = in.Get<uint8_t>() != 0;
  if (!in.ok()) return Malformed();
  constexpr auto kHost = static_cast<uint8_t>(wire::MemKind::kHost);
  constexpr auto kDevice = static_cast<uint8_t>(wire::MemKind::kDevice);
  const bool src_host = g.src_kind == kHost;
  const bool dst_host = g.dst_kind == kHost;
  if ((g.src_kind != kHost && g.src_kind != kDevice) ||
      (g.dst_kind != kHost && g.dst_kind != kDevice) || (src_host && dst_host)) {
    return CuError(CUDA_ERROR_INVALID_VALUE, "memcpy3D memory kinds");
  }
  uint64_t packed = 0;
  if (__builtin_mul_overflow(g.width_bytes, g.height, &packed) ||
      __builtin_mul_overflow(packed, g.depth, &packed)) {
    return CuError(CUDA_ERROR_INVALID_VALUE, "memcpy3D extent overflows");
  }
  if (src_host && in.remaining() != packed) {
    return CuError(CUDA_ERROR_INVALID_VALUE, "memcpy3D host data does not match the extent");
  }
  if (dst_host && packed > wire::kMaxPayload - sizeof(int32_t)) {
    return CuError(CUDA_ERROR_INVALID_VALUE, "memcpy3D larger than one reply; chunk it");
  }
  if (packed == 0) return absl::OkStatus();
  // Host sides travel packed; describe them that way to the backend.
  if (src_host) {
    g.src_ptr = g.src_x_bytes = g.src_y = g.src_z = 0;
    g.src_pitch = g.width_bytes;
    g.src_height = g.height;
  } else {
    uint64_t start = 0, length = 0;
    if (!DeviceExtent(g.src_ptr, g.src_x_bytes, g.src_y, g.src_z, g.src_pitch, g.src_height,
                      g.width_bytes, g.height, g.depth, &start, &length)) {
      return CuError(CUDA_ERROR_INVALID_VALUE, "memcpy3D source geometry");
    }
    if (absl::Status s = CheckRange(start, length); !s.ok()) return s;
  }
  if (dst_host) {
    g.dst_ptr = g.dst_x_bytes = g.dst_y = g.dst_z = 0;
    g.dst_pitch = g.width_bytes;
    g.dst_height = g.height;
  } else {
    uint64_t start = 0, length = 0;
    if (!DeviceExtent(g.dst_ptr, g.dst_x_bytes, g.dst_y, g.dst_z, g.dst_pitch, g.dst_height,
                      g.width_bytes, g.height, g.depth, &start, &length)) {
      return CuError(CUDA_ERROR_INVALID_VALUE, "memcpy3D destination geometry");
    }
    if (absl::Status s = CheckRange(start, length); !s.ok()) return s;
    if (absl::Status s = PrepareNodeWriteLocked(start, length); !s.ok()) return s;
  }
  if (src_host || dst_host) {
    if (absl::Status s = RefuseHostCopyWhileCapturing(stream); !s.ok()) return s;
  }
  absl::StatusOr<BackendHandle> st = StreamForWork(stream);
  if (!st.ok()) return st.status();
  Copy3DParams params;
  params.geometry = g;
  if (src_host) params.src_host = in.rest();
  if (dst_host) {
    const size_t at = out.size();
    out.data().resize(at + packed);
    params.dst_host = out.data().data() + at;
  }
  return backend_->Memcpy3D(params, *st, async);
}

// ------------------------------------------------------ modules and libraries

absl::Status ClientSession::OpModuleLoadData(wire::Reader& in, wire::Writer& out) {
  uint64_t n = 0;
  const uint8_t* image = in.GetBytes(&n);
  if (!in.ok()) return Malformed();
  absl::Status s = LoadImage(/*library=*/false, absl::MakeConstSpan(image, n), out);
  if (s.ok()) RememberImage(absl::MakeConstSpan(image, n));
  return s;
}

absl::Status ClientSession::OpModuleGetFunction(wire::Reader& in, wire::Writer& out) {
  const uint64_t module = in.Get<uint64_t>();
  const std::string name = in.GetStr();
  if (!in.ok()) return Malformed();
  auto it = modules_.find(module);
  if (it == modules_.end()) return BadHandle("module");
  uint64_t fid = 0;
  if (auto f = it->second.functions.find(name); f != it->second.functions.end()) {
    fid = f->second;
  } else {
    absl::StatusOr<BackendHandle> h = backend_->ModuleGetFunction(it->second.backend, name);
    if (!h.ok()) return h.status();
    absl::StatusOr<uint64_t> id = NewFunction(*h, module);
    if (!id.ok()) return id.status();
    fid = *id;
    it->second.functions[name] = fid;
  }
  out.Put<uint64_t>(fid);
  wire::PutParamLayout(out, functions_.at(fid).layout);
  return absl::OkStatus();
}

absl::Status ClientSession::OpModuleGetGlobal(wire::Reader& in, wire::Writer& out) {
  const uint64_t module = in.Get<uint64_t>();
  const std::string name = in.GetStr();
  if (!in.ok()) return Malformed();
  auto it = modules_.find(module);
  if (it == modules_.end()) return BadHandle("module");
  absl::StatusOr<GlobalInfo> g = backend_->ModuleGetGlobal(it->second.backend, name);
  if (!g.ok()) return g.status();
  // A library's module shares the library's globals; register under the
  // module either way, released when the module (or its library) goes.
  if (absl::Status s = RegisterGlobal(*g, it->second.globals); !s.ok()) return s;
  out.Put<uint64_t>(g->ptr).Put<uint64_t>(g->size);
  return absl::OkStatus();
}

absl::Status ClientSession::OpModuleUnload(wire::Reader& in, wire::Writer& out) {
  const uint64_t module = in.Get<uint64_t>();
  if (!in.ok()) return Malformed();
  auto it = modules_.find(module);
  if (it == modules_.end()) return BadHandle("module");
  if (it->second.library != 0) {
    return CuError(CUDA_ERROR_NOT_PERMITTED, "module belongs to a library; unload the library");
  }
  if (absl::Status s = backend_->ModuleUnload(it->second.backend); !s.ok()) return s;
  DropModuleRecord(module);
  return absl::OkStatus();
}

absl::Status ClientSession::OpModuleGetFunctionCount(wire::Reader& in, wire::Writer& out) {
  const uint64_t module = in.Get<uint64_t>();
  if (!in.ok()) return Malformed();
  auto it = modules_.find(module);
  if (it == modules_.end()) return BadHandle("module");
  absl::StatusOr<uint32_t> n = backend_->ModuleGetFunctionCount(it->second.backend);
  if (!n.ok()) return n.status();
  out.Put<uint32_t>(*n);
  return absl::OkStatus();
}

absl::Status ClientSession::OpLibraryLoadData(wire::Reader& in, wire::Writer& out) {
  uint64_t n = 0;
  const uint8_t* image = in.GetBytes(&n);
  if (!in.ok()) return Malformed();
  absl::Status s = LoadImage(/*library=*/true, absl::MakeConstSpan(image, n), out);
  if (s.ok()) RememberImage(absl::MakeConstSpan(image, n));
  return s;
}

absl::Status ClientSession::OpLibraryGetKernel(wire::Reader& in, wire::Writer& out) {
  const uint64_t library = in.Get<uint64_t>();
  const std::string name = in.GetStr();
  if (!in.ok()) return Malformed();
  auto it = libraries_.find(library);
  if (it == libraries_.end()) return BadHandle("library");
  uint64_t kid = 0;
  if (auto k = it->second.kernels.find(name); k != it->second.kernels.end()) {
    kid = k->second;
  } else {
    absl::StatusOr<BackendHandle> kernel = backend_->LibraryGetKernel(it->second.backend, name);
    if (!kernel.ok()) return kernel.status();
    // Launches and attributes need the kernel's function in our context.
    absl::StatusOr<BackendHandle> f = backend_->KernelGetFunction(*kernel);
    if (!f.ok()) return f.status();
    absl::StatusOr<std::vector<wire::ParamInfo>> layout = backend_->FuncGetParamLayout(*f);
    if (!layout.ok()) return layout.status();
    kid = NewId();
    KernelRec& rec = kernels_[kid];
    rec.backend = *kernel;
    rec.library = library;
    rec.backend_function = *f;
    rec.arg_bytes = ArgBytesNeeded(*layout);
    rec.layout = std::move(*layout);
    it->second.kernels[name] = kid;
  }
  out.Put<uint64_t>(kid);
  wire::PutParamLayout(out, kernels_.at(kid).layout);
  return absl::OkStatus();
}

absl::Status ClientSession::OpLibraryGetModule(wire::Reader& in, wire::Writer& out) {
  const uint64_t library = in.Get<uint64_t>();
  if (!in.ok()) return Malformed();
  auto it = libraries_.find(library);
  if (it == libraries_.end()) return BadHandle("library");
  if (it->second.module == 0) {
    absl::StatusOr<BackendHandle> m = backend_->LibraryGetModule(it->second.backend);
    if (!m.ok()) return m.status();
    const uint64_t id = NewId();
    ModuleRec& rec = modules_[id];
    rec.backend = *m;
    rec.library = library;
    it->second.module = id;
  }
  out.Put<uint64_t>(it->second.module);
  return absl::OkStatus();
}

absl::Status ClientSession::OpLibraryGetGlobal(wire::Reader& in, wire::Writer& out) {
  const uint64_t library = in.Get<uint64_t>();
  const std::string name = in.GetStr();
  if (!in.ok()) return Malformed();
  auto it = libraries_.find(library);
  if (it == libraries_.end()) return BadHandle("library");
  absl::StatusOr<GlobalInfo> g = backend_->LibraryGetGlobal(it->second.backend, name);
  if (!g.ok()) return g.status();
  if (absl::Status s = RegisterGlobal(*g, it->second.globals); !s.ok()) return s;
  out.Put<uint64_t>(g->ptr).Put<uint64_t>(g->size);
  return absl::OkStatus();
}

absl::Status ClientSession::OpLibraryUnload(wire::Reader& in, wire::Writer& out) {
  const uint64_t library = in.Get<uint64_t>();
  if (!in.ok()) return Malformed();
  auto it = libraries_.find(library);
  if (it == libraries_.end()) return BadHandle("library");
  if (absl::Status s = backend_->LibraryUnload(it->second.backend); !s.ok()) return s;
  LibraryRec& lib = it->second;
  if (lib.module != 0) DropModuleRecord(lib.module);
  ReleaseGlobals(lib.globals);
  DropFunctionsOf(library);
  std::erase_if(kernels_, [library](const auto& k) { return k.second.library == library; });
  libraries_.erase(it);
  return absl::OkStatus();
}

absl::Status ClientSession::OpKernelGetFunction(wire::Reader& in, wire::Writer& out) {
  const uint64_t kernel = in.Get<uint64_t>();
  if (!in.ok()) return Malformed();
  auto it = kernels_.find(kernel);
  if (it == kernels_.end()) return BadHandle("kernel");
  KernelRec& k = it->second;
  if (k.function == 0) {
    // Owned by the library, so it goes when the library is unloaded.
    const uint64_t id = NewId();
    FunctionRec& f = functions_[id];
    f.backend = k.backend_function;
    f.owner = k.library;
    f.layout = k.layout;
    f.arg_bytes = k.arg_bytes;
    k.function = id;
  }
  out.Put<uint64_t>(k.function);
  wire::PutParamLayout(out, k.layout);
  return absl::OkStatus();
}

absl::Status ClientSession::OpFuncGetAttribute(wire::Reader& in, wire::Writer& out) {
  const uint64_t fn = in.Get<uint64_t>();
  const int32_t attribute = in.Get<int32_t>();
  if (!in.ok()) return Malformed();
  absl::StatusOr<Callable> c = ResolveCallable(fn);
  if (!c.ok()) return c.status();
  absl::StatusOr<int32_t> v = backend_->FuncGetAttribute(c->function, attribute);
  if (!v.ok()) return v.status();
  out.Put<int32_t>(*v);
  return absl::OkStatus();
}

absl::Status ClientSession::OpFuncSetAttribute(wire::Reader& in, wire::Writer& out) {
  const uint64_t fn = in.Get<uint64_t>();
  const int32_t attribute = in.Get<int32_t>();
  const int32_t value = in.Get<int32_t>();
  if (!in.ok()) return Malformed();
  absl::StatusOr<Callable> c = ResolveCallable(fn);
  if (!c.ok()) return c.status();
  return backend_->FuncSetAttribute(c->function, attribute, value);
}

// ------------------------------------------------------------------ launches

absl::Status ClientSession::OpLaunchKernel(wire::Reader& in, wire::Writer& out) {
  const uint64_t fn = in.Get<uint64_t>();
  LaunchConfig config;
  for (uint32_t& g : config.grid) g = in.Get<uint32_t>();
  for (uint32_t& b : config.block) b = in.Get<uint32_t>();
  config.shared_bytes = in.Get<uint32_t>();
  const uint64_t stream = in.Get<uint64_t>();
  const uint32_t n_attrs = in.Get<uint32_t>();
  if (!in.ok() || n_attrs > kMaxLaunchAttributes) return Malformed();
  config.attributes.reserve(n_attrs);
  for (uint32_t i = 0; i < n_attrs; ++i) {
    LaunchAttribute a;
    a.id = in.Get<uint32_t>();
    const uint8_t* value = in.GetRaw(sizeof(a.value));
    if (!in.ok()) return Malformed();
    std::memcpy(a.value, value, sizeof(a.value));
    config.attributes.push_back(a);
  }
  uint64_t n_args = 0;
  const uint8_t* args = in.GetBytes(&n_args);
  if (!in.ok()) return Malformed();

  absl::StatusOr<Callable> c = ResolveCallable(fn);
  if (!c.ok()) return c.status();
  // The backend reads parameters at the layout's offsets; never let it read
  // past what the client sent. The argument VALUES are not inspected: device
  // pointers inside them are passed to the kernel unchecked.
  if (n_args < c->arg_bytes) {
    return CuError(CUDA_ERROR_INVALID_VALUE,
                   "argument buffer shorter than the kernel's parameters");
  }
  // Attributes that carry handles or pointers are translated or checked;
  // value-only ones pass through; unknown ones are refused.
  std::vector<LaunchAttribute> attrs;
  for (LaunchAttribute& a : config.attributes) {
    switch (a.id) {
      case CU_LAUNCH_ATTRIBUTE_IGNORE:
        continue;
      case CU_LAUNCH_ATTRIBUTE_ACCESS_POLICY_WINDOW: {
        uint64_t base = 0, bytes = 0;
        std::memcpy(&base, a.value, 8);
        std::memcpy(&bytes, a.value + 8, 8);
        if (bytes != 0 && !OwnsRange(base, bytes)) return BadPointer();
        break;
      }
      case CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_EVENT:
      case CU_LAUNCH_ATTRIBUTE_LAUNCH_COMPLETION_EVENT: {
        uint64_t event = 0;
        std::memcpy(&event, a.value, 8);
        absl::StatusOr<BackendHandle> e = EventFor(event);
        if (!e.ok()) return e.status();
        const BackendHandle h = *e;
        std::memcpy(a.value, &h, 8);
        break;
      }
      case CU_LAUNCH_ATTRIBUTE_COOPERATIVE:
      case CU_LAUNCH_ATTRIBUTE_SYNCHRONIZATION_POLICY:
      case CU_LAUNCH_ATTRIBUTE_CLUSTER_DIMENSION:
      case CU_LAUNCH_ATTRIBUTE_CLUSTER_SCHEDULING_POLICY_PREFERENCE:
      case CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION:
      case CU_LAUNCH_ATTRIBUTE_PRIORITY:
      case CU_LAUNCH_ATTRIBUTE_MEM_SYNC_DOMAIN_MAP:
      case CU_LAUNCH_ATTRIBUTE_MEM_SYNC_DOMAIN:
      case CU_LAUNCH_ATTRIBUTE_PREFERRED_CLUSTER_DIMENSION:
      case CU_LAUNCH_ATTRIBUTE_DEVICE_UPDATABLE_KERNEL_NODE:
      case CU_LAUNCH_ATTRIBUTE_PREFERRED_SHARED_MEMORY_CARVEOUT:
      case CU_LAUNCH_ATTRIBUTE_NVLINK_UTIL_CENTRIC_SCHEDULING:
        break;
      default:
        return CuError(CUDA_ERROR_INVALID_VALUE, absl::StrCat("launch attribute ", a.id));
    }
    attrs.push_back(a);
  }
  config.attributes = std::move(attrs);
  // Posted launches go to the pipeline's thread, except while a capture is
  // open (the stream's capture state decides how work is recorded) and for
  // overcommitted clients (their memory must stay resident until the
  // driver has the launch; NodeMemory brackets each command).
  // Only worth it when more commands wait behind this one (or launches are
  // queued already): a lone launch followed by a wait runs faster here.
  const bool pipelined =
      no_reply_ && env_->launch_pipeline && graphs_.captures.empty() && !node_client_ &&
      (more_input_.load(std::memory_order_relaxed) || (pipeline_ != nullptr && pipeline_->Busy()));
  if (!pipelined) DrainPipelineLocked();
  absl::StatusOr<BackendHandle> st = StreamForWork(stream);
  if (!st.ok()) return st.status();
  config.stream = *st;
  if (pipelined) {
    if (pipeline_ == nullptr) {
      pipeline_ = std::make_unique<LaunchPipeline>(
          [this](absl::FunctionRef<LaunchPipeline::Job*()> next) { RunPipelined(next); });
      pipeline_view_.store(pipeline_.get(), std::memory_order_release);
    }
    LaunchPipeline::Job& job = pipeline_->Slot();
    job.function = c->function;
    job.config = std::move(config);
    job.args.assign(args, args + n_args);
    job.measured = sched_ != nullptr;
    pipeline_->Submit();
    queued_ = true;
    return absl::OkStatus();
  }
  // Measured unless captured (an event would join the capture's graph).
  const bool measured = sched_ != nullptr && !StreamCapturing(*st);
  if (measured) sched_->BeginLaunch(*st);
  absl::Status launched =
      backend_->LaunchKernel(c->function, config, absl::MakeConstSpan(args, n_args));
  if (measured && launched.ok()) sched_->EndLaunch(*st, c->function, config);
  return launched;
}

// --------------------------------------------------------- streams and events

absl::Status ClientSession::OpStreamCreate(wire::Reader& in, wire::Writer& out) {
  const uint32_t flags = in.Get<uint32_t>();
  const int32_t priority = in.Get<int32_t>();
  if (!in.ok()) return Malformed();
  if (flags & ~uint32_t{CU_STREAM_NON_BLOCKING}) {
    return CuError(CUDA_ERROR_INVALID_VALUE, "stream flags");
  }
  // Always non-blocking in the shared context; see StreamForWork.
  uint64_t placement = 0;
  absl::StatusOr<BackendHandle> h = NewBackendStream(priority, &placement);
  if (!h.ok()) return h.status();
  const uint64_t id = NewId();
  StreamRec& s = streams_[id];
  s.backend = *h;
  s.placement = placement;
  s.blocking = (flags & CU_STREAM_NON_BLOCKING) == 0;
  // Only default-stream work issued from now on must be ordered before it.
  s.seen_default_epoch = default_stream_.epoch;
  PublishQuiesceStreamsLocked();
  out.Put<uint64_t>(id);
  return absl::OkStatus();
}

absl::Status ClientSession::OpStreamDestroy(wire::Reader& in, wire::Writer& out) {
  const uint64_t id = in.Get<uint64_t>();
  if (!in.ok()) return Malformed();
  auto it = streams_.find(id);
  if (it == streams_.end()) return BadHandle("stream");
  AbandonCaptureOn(id);
  const BackendHandle backend = it->second.backend;
  if (node_client_) {
    // Overcommit quiesces a client through its live streams only: let this
    // one's work finish before it leaves that list.
    if (absl::Status s = backend_->StreamSynchronize(backend); !s.ok()) return s;
    absl::MutexLock lock(&quiesce_mu_);
    std::erase(quiesce_streams_, backend);
  }
  if (absl::Status s = backend_->StreamDestroy(backend); !s.ok()) {
    PublishQuiesceStreamsLocked();
    return s;
  }
  if (it->second.sync_event) (void)backend_->EventDestroy(it->second.sync_event);
  streams_.erase(it);
  return absl::OkStatus();
}

absl::Status ClientSession::OpStreamSynchronize(wire::Reader& in, wire::Writer& out) {
  const uint64_t id = in.Get<uint64_t>();
  if (!in.ok()) return Malformed();
  // Synchronizing the legacy stream also waits for the blocking streams'
  // earlier work, as it does natively.
  if (IsDefaultStream(id)) {
    absl::StatusOr<BackendHandle> h = StreamForWork(id);
    if (!h.ok()) return h.status();
    return backend_->StreamSynchronize(*h);
  }
  StreamRec* s = FindStream(id);
  if (s == nullptr) return BadHandle("stream");
  return backend_->StreamSynchronize(s->backend);
}

absl::Status ClientSession::OpStreamQuery(wire::Reader& in, wire::Writer& out) {
  const uint64_t id = in.Get<uint64_t>();
  if (!in.ok()) return Malformed();
  StreamRec* s = FindStream(id);
  if (s == nullptr) return BadHandle("stream");
  return backend_->StreamQuery(s->backend);
}

absl::Status ClientSession::OpStreamWaitEvent(wire::Reader& in, wire::Writer& out) {
  const uint64_t stream = in.Get<uint64_t>();
  const uint64_t event = in.Get<uint64_t>();
  const uint32_t flags = in.Get<uint32_t>();
  if (!in.ok()) return Malformed();
  absl::StatusOr<BackendHandle> e = EventFor(event);
  if (!e.ok()) return e.status();
  if (FindStream(stream) == nullptr) return BadHandle("stream");
  absl::StatusOr<BackendHandle> st = StreamForWork(stream);
  if (!st.ok()) return st.status();
  return backend_->StreamWaitEvent(*st, *e, flags);
}

absl::Status ClientSession::OpEventCreate(wire::Reader& in, wire::Writer& out) {
  const uint32_t flags = in.Get<uint32_t>();
  if (!in.ok()) return Malformed();
  absl::StatusOr<BackendHandle> h = backend_->EventCreate(flags);
  if (!h.ok()) return h.status();
  const uint64_t id = NewId();
  events_[id] = *h;
  out.Put<uint64_t>(id);
  return absl::OkStatus();
}

absl::Status ClientSession::OpEventRecord(wire::Reader& in, wire::Writer& out) {
  const uint64_t event = in.Get<uint64_t>();
  const uint64_t stream = in.Get<uint64_t>();
  const uint32_t flags = in.Get<uint32_t>();
  if (!in.ok()) return Malformed();
  absl::StatusOr<BackendHandle> e = EventFor(event);
  if (!e.ok()) return e.status();
  if (FindStream(stream) == nullptr) return BadHandle("stream");
  absl::StatusOr<BackendHandle> st = StreamForWork(stream);
  if (!st.ok()) return st.status();
  return backend_->EventRecord(*e, *st, flags);
}

absl::Status ClientSession::OpEventSynchronize(wire::Reader& in, wire::Writer& out) {
  const uint64_t event = in.Get<uint64_t>();
  if (!in.ok()) return Malformed();
  absl::StatusOr<BackendHandle> e = EventFor(event);
  if (!e.ok()) return e.status();
  return backend_->EventSynchronize(*e);
}

absl::Status ClientSession::OpEventQuery(wire::Reader& in, wire::Writer& out) {
  const uint64_t event = in.Get<uint64_t>();
  if (!in.ok()) return Malformed();
  absl::StatusOr<BackendHandle> e = EventFor(event);
  if (!e.ok()) return e.status();
  return backend_->EventQuery(*e);
}

absl::Status ClientSession::OpEventElapsedTime(wire::Reader& in, wire::Writer& out) {
  const uint64_t start = in.Get<uint64_t>();
  const uint64_t end = in.Get<uint64_t>();
  if (!in.ok()) return Malformed();
  absl::StatusOr<BackendHandle> s = EventFor(start);
  if (!s.ok()) return s.status();
  absl::StatusOr<BackendHandle> e = EventFor(end);
  if (!e.ok()) return e.status();
  absl::StatusOr<float> ms = backend_->EventElapsedTime(*s, *e);
  if (!ms.ok()) return ms.status();
  out.Put<float>(*ms);
  return absl::OkStatus();
}

absl::Status ClientSession::OpEventDestroy(wire::Reader& in, wire::Writer& out) {
  const uint64_t event = in.Get<uint64_t>();
  if (!in.ok()) return Malformed();
  auto it = events_.find(event);
  if (it == events_.end()) return BadHandle("event");
  if (absl::Status s = backend_->EventDestroy(it->second); !s.ok()) return s;
  events_.erase(it);
  return absl::OkStatus();
}

absl::Status ClientSession::OpCtxSynchronize(wire::Reader& in, wire::Writer& out) {
  // Optional flag (libwooly's local cuMemFree during a capture): wait for
  // the streams that are not capturing only. Their work is all that can
  // still touch memory, and synchronizing a capturing stream would
  // invalidate the application's capture.
  const bool skip_capturing = in.remaining() != 0 && in.Get<uint8_t>() != 0;
  if (!in.ok() || in.remaining() != 0) return Malformed();
  // Only this client's streams: the context is shared, and waiting for
  // other clients' work would couple unrelated processes.
  absl::Status first;
  auto note = [&first](absl::Status s) {
    if (first.ok() && !s.ok()) first = std::move(s);
  };
  auto sync = [&](BackendHandle stream) {
    if (skip_capturing) {
      absl::StatusOr<CaptureInfo> info = backend_->StreamGetCaptureInfo(stream);
      if (!info.ok()) return note(info.status());
      if (info->status != CU_STREAM_CAPTURE_STATUS_NONE) return;
    }
    note(backend_->StreamSynchronize(stream));
  };
  if (has_default_stream_) sync(default_stream_.backend);
  for (auto& [id, s] : streams_) sync(s.backend);
  return first;
}

}  // namespace wooly::server
