#include "grpc_services.h"

#include <cstring>
#include <string>

#include "absl/strings/str_cat.h"
#include "spdlog/spdlog.h"

namespace wooly::server::internal {
namespace {

void FillClient(const ClientStatus& c, wooly::v1::ClientInfo* out) {
  out->set_client_id(c.client_id);
  out->set_pid(c.pid);
  out->set_name(c.name);
  out->set_priority(c.priority);
  out->set_bytes_allocated(c.bytes_allocated);
  out->set_streams(c.streams);
  out->set_modules(c.modules);
  out->set_transport(c.transport);
  out->set_connected_unix_seconds(c.connected_unix_seconds);
  out->set_context_lost(c.context_lost);
  out->set_kernels_launched(c.kernels_launched);
  out->set_pod(c.pod);
  out->set_pod_namespace(c.pod_namespace);
  out->set_tenant(c.tenant);
  out->set_memory_limit_bytes(c.memory_limit);
  out->set_weight(c.weight);
  out->set_sm_floor(c.sm_floor);
  out->set_sm_cap(c.sm_cap);
  out->set_target_share(c.target_share);
  out->set_measured_share(c.measured_share);
  out->set_measured_share_recent(c.measured_share_recent);
  out->set_busy_seconds(c.busy_seconds);
  out->set_queue_depth(c.queue_depth);
  out->set_memory_resident_bytes(c.memory_resident);
  out->set_memory_swapped_bytes(c.memory_swapped_out);
  out->set_memory_shared_bytes(c.memory_shared);
}

}  // namespace

grpc::Status AdminService::GetStatus(grpc::ServerContext* context,
                                     const wooly::v1::StatusRequest* request,
                                     wooly::v1::StatusReply* reply) {
  const StatusSnapshot s = server_->Status();
  reply->set_server_version(s.server_version);
  reply->set_protocol_version(s.protocol_version);
  reply->set_gpu_name(s.gpu_name);
  reply->set_gpu_uuid(s.gpu_uuid);
  reply->set_total_memory_bytes(s.total_memory_bytes);
  reply->set_used_memory_bytes(s.used_memory_bytes);
  reply->set_free_memory_bytes(s.free_memory_bytes);
  reply->set_backend(s.backend);
  for (const std::string& a : s.listen_addresses) reply->add_listen_addresses(a);
  reply->set_uptime_seconds(s.uptime_seconds);
  reply->set_context_resets(s.context_resets);
  if (s.memory.enabled) {
    const memory::NodeUsage& n = s.memory.node;
    wooly::v1::MemoryStatus* m = reply->mutable_memory();
    m->set_overcommit_enabled(true);
    m->set_overcommit_percent(s.memory.overcommit_percent);
    m->set_physical_bytes(n.physical_bytes);
    m->set_admission_limit_bytes(n.admission_limit);
    m->set_physical_used_bytes(n.physical_used);
    m->set_admitted_bytes(n.allocated);
    m->set_overcommitted_bytes(n.overcommitted);
    m->set_resident_bytes(n.resident);
    m->set_swapped_bytes(n.swapped_out);
    m->set_host_pool_used_bytes(n.host_pool_used);
    m->set_swap_out_bytes_total(n.swap_out_bytes);
    m->set_swap_in_bytes_total(n.swap_in_bytes);
    m->set_dedup_saved_bytes(n.dedup_saved);
  }
  for (const ClientStatus& c : s.clients) FillClient(c, reply->add_clients());
  return grpc::Status::OK;
}

grpc::Status AdminService::SetPolicy(grpc::ServerContext* context,
                                     const wooly::v1::SetPolicyRequest* request,
                                     wooly::v1::SetPolicyReply* reply) {
  const absl::Status s =
      server_->SetClientPolicy(request->client_id(), request->assignments(), request->reset());
  if (!s.ok()) {
    const grpc::StatusCode code =
        absl::IsNotFound(s) ? grpc::StatusCode::NOT_FOUND : grpc::StatusCode::INVALID_ARGUMENT;
    return grpc::Status(code, std::string(s.message()));
  }
  for (const ClientStatus& c : server_->Clients()) {
    if (c.client_id == request->client_id()) FillClient(c, reply->mutable_client());
  }
  return grpc::Status::OK;
}

grpc::Status AdminService::ListClients(grpc::ServerContext* context,
                                       const wooly::v1::ListClientsRequest* request,
                                       wooly::v1::ListClientsReply* reply) {
  for (const ClientStatus& c : server_->Clients()) FillClient(c, reply->add_clients());
  return grpc::Status::OK;
}

grpc::Status SessionService::Hello(grpc::ServerContext* context,
                                   const wooly::v1::HelloRequest* request,
                                   wooly::v1::HelloReply* reply) {
  if (request->protocol_version() != wire::kProtocolVersion) {
    return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                        absl::StrCat("wooly protocol version mismatch: the client speaks version ",
                                     request->protocol_version(), " but woolyd ", kServerVersion,
                                     " speaks version ", wire::kProtocolVersion));
  }
  // A probe: the session itself (and its client id) starts with the wire
  // Hello at the head of a Commands stream, so client_id is 0 here.
  reply->set_protocol_version(wire::kProtocolVersion);
  reply->set_server_version(kServerVersion);
  reply->set_client_id(0);
  reply->set_gpu_name(server_->device_info().name);
  reply->set_total_memory_bytes(server_->device_info().total_mem);
  return grpc::Status::OK;
}

grpc::Status SessionService::Commands(
    grpc::ServerContext* context,
    grpc::ServerReaderWriter<wooly::v1::Frame, wooly::v1::Frame>* stream) {
  // Commands bind the thread to the GPU context themselves (shared_context.h).
  std::shared_ptr<ClientSession> session = server_->OpenSession("grpc", context->peer());
  std::string reason = "stream ended";
  grpc::Status result = grpc::Status::OK;
  wooly::v1::Frame in;
  wooly::v1::Frame out;
  while (stream->Read(&in)) {
    const std::string& data = in.data();
    wire::FrameHeader h;
    if (data.size() < sizeof(h)) {
      result = grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "frame shorter than its header");
      reason = "malformed frame";
      break;
    }
    std::memcpy(&h, data.data(), sizeof(h));
    const uint32_t limit = session->hello_done() ? wire::kMaxPayload + 4096 : kMaxPreHelloPayload;
    if (h.magic != wire::kMagic || h.length != data.size() - sizeof(h) || h.length > limit) {
      result = grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "malformed frame header");
      reason = "malformed frame header";
      break;
    }
    ClientSession::Reply r = session->Handle(
        h,
        absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(data.data()) + sizeof(h), h.length));
    const wire::FrameHeader rh{wire::kMagic, r.op, 0, static_cast<uint32_t>(r.payload.size()),
                               r.seq};
    std::string* bytes = out.mutable_data();
    bytes->resize(sizeof(rh) + r.payload.size());
    std::memcpy(bytes->data(), &rh, sizeof(rh));
    if (!r.payload.empty())
      std::memcpy(bytes->data() + sizeof(rh), r.payload.data(), r.payload.size());
    if (!stream->Write(out)) {
      reason = "stream broken";
      break;
    }
    if (r.close) {
      reason = r.op == (static_cast<uint16_t>(wire::Op::kGoodbye) | wire::kReplyBit)
                   ? "goodbye"
                   : "closed by server";
      break;
    }
  }
  if (context->IsCancelled()) reason = "stream cancelled";
  server_->EndSession(session, reason);
  return result;
}

}  // namespace wooly::server::internal
