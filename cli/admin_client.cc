#include "wooly/cli/admin_client.h"

#include <errno.h>
#include <grpcpp/grpcpp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <memory>

#include "absl/status/status.h"
#include "wooly/proto/socket.h"
#include "wooly/v1/admin.grpc.pb.h"

namespace wooly::cli {
namespace {

// Fails with UNAVAILABLE and the OS's reason when nothing accepts
// connections at `ep`; gRPC's own message for that is vague.
absl::Status Probe(const wire::Endpoint& ep) {
  std::string reason;
  const int fd = wire::Connect(ep, &reason);
  if (fd < 0) {
    struct stat st;
    if (ep.is_unix && ::stat(ep.path.c_str(), &st) != 0 && errno == ENOENT) {
      reason = "no socket at " + ep.path + " (is woolyd running?)";
    }
    return absl::UnavailableError(reason);
  }
  ::close(fd);
  return absl::OkStatus();
}

absl::Status FromGrpc(const grpc::Status& s) {
  std::string msg = s.error_message();
  for (char& c : msg) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  switch (s.error_code()) {
    case grpc::StatusCode::UNAVAILABLE:
      return absl::UnavailableError(msg);
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return absl::UnavailableError("no answer before the deadline (is it woolyd's admin socket?)");
    case grpc::StatusCode::UNIMPLEMENTED:
      return absl::UnimplementedError("the server does not implement wooly.v1.Admin: " + msg);
    default:
      return absl::Status(static_cast<absl::StatusCode>(s.error_code()), msg);
  }
}

// Resolves the endpoint, probes it and opens a stub.
absl::StatusOr<std::unique_ptr<wooly::v1::Admin::Stub>> Connect(const std::string& endpoint) {
  wire::Endpoint ep;
  std::string error;
  if (!wire::ParseEndpoint(endpoint, &ep, &error)) return absl::InvalidArgumentError(error);
  if (absl::Status s = Probe(ep); !s.ok()) return s;
  absl::StatusOr<std::string> target = GrpcTarget(endpoint);
  if (!target.ok()) return target.status();
  grpc::ChannelArguments args;
  // The admin endpoint is local or explicitly named: never go through a proxy.
  args.SetInt(GRPC_ARG_ENABLE_HTTP_PROXY, 0);
  auto channel = grpc::CreateCustomChannel(*target, grpc::InsecureChannelCredentials(), args);
  return wooly::v1::Admin::NewStub(channel);
}

void SetDeadline(grpc::ClientContext* ctx, int timeout_ms) {
  ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(timeout_ms));
}

}  // namespace

absl::StatusOr<std::string> GrpcTarget(const std::string& endpoint) {
  wire::Endpoint ep;
  std::string error;
  if (!wire::ParseEndpoint(endpoint, &ep, &error)) return absl::InvalidArgumentError(error);
  if (ep.is_unix) return "unix:" + ep.path;
  if (ep.host.find(':') != std::string::npos) {
    return "[" + ep.host + "]:" + std::to_string(ep.port);
  }
  return ep.host + ":" + std::to_string(ep.port);
}

absl::StatusOr<wooly::v1::StatusReply> FetchStatus(const std::string& endpoint, int timeout_ms) {
  auto stub = Connect(endpoint);
  if (!stub.ok()) return stub.status();
  grpc::ClientContext ctx;
  SetDeadline(&ctx, timeout_ms);
  wooly::v1::StatusReply reply;
  grpc::Status s = (*stub)->GetStatus(&ctx, wooly::v1::StatusRequest(), &reply);
  if (!s.ok()) return FromGrpc(s);
  return reply;
}

absl::StatusOr<wooly::v1::ListClientsReply> FetchClients(const std::string& endpoint,
                                                         int timeout_ms) {
  auto stub = Connect(endpoint);
  if (!stub.ok()) return stub.status();
  grpc::ClientContext ctx;
  SetDeadline(&ctx, timeout_ms);
  wooly::v1::ListClientsReply reply;
  grpc::Status s = (*stub)->ListClients(&ctx, wooly::v1::ListClientsRequest(), &reply);
  if (!s.ok()) return FromGrpc(s);
  return reply;
}

absl::StatusOr<wooly::v1::SetPolicyReply> SetPolicy(const std::string& endpoint,
                                                    const wooly::v1::SetPolicyRequest& request,
                                                    int timeout_ms) {
  auto stub = Connect(endpoint);
  if (!stub.ok()) return stub.status();
  grpc::ClientContext ctx;
  SetDeadline(&ctx, timeout_ms);
  wooly::v1::SetPolicyReply reply;
  grpc::Status s = (*stub)->SetPolicy(&ctx, request, &reply);
  if (!s.ok()) return FromGrpc(s);
  return reply;
}

}  // namespace wooly::cli
