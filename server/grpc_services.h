// The gRPC services of woolyd (wooly.v1.Admin and wooly.v1.Session), served
// on the admin endpoint. Private to the server library.
#ifndef WOOLY_SERVER_GRPC_SERVICES_H_
#define WOOLY_SERVER_GRPC_SERVICES_H_

#include "wooly/server/server.h"
#include "wooly/v1/admin.grpc.pb.h"
#include "wooly/v1/session.grpc.pb.h"

namespace wooly::server::internal {

// Status and client listing for wooly-cli and monitoring. `server` must
// outlive the service. Thread-safe.
class AdminService final : public wooly::v1::Admin::Service {
 public:
  explicit AdminService(Server* server) : server_(server) {}
  grpc::Status GetStatus(grpc::ServerContext* context, const wooly::v1::StatusRequest* request,
                         wooly::v1::StatusReply* reply) override;
  grpc::Status ListClients(grpc::ServerContext* context,
                           const wooly::v1::ListClientsRequest* request,
                           wooly::v1::ListClientsReply* reply) override;
  grpc::Status SetPolicy(grpc::ServerContext* context, const wooly::v1::SetPolicyRequest* request,
                         wooly::v1::SetPolicyReply* reply) override;

 private:
  Server* const server_;
};

// The session service: Hello checks the protocol version; Commands carries
// wire frames, one session per stream, dispatched by the same
// ClientSession::Handle as the socket transport. Thread-safe.
class SessionService final : public wooly::v1::Session::Service {
 public:
  explicit SessionService(Server* server) : server_(server) {}
  grpc::Status Hello(grpc::ServerContext* context, const wooly::v1::HelloRequest* request,
                     wooly::v1::HelloReply* reply) override;
  grpc::Status Commands(
      grpc::ServerContext* context,
      grpc::ServerReaderWriter<wooly::v1::Frame, wooly::v1::Frame>* stream) override;

 private:
  Server* const server_;
};

}  // namespace wooly::server::internal

#endif  // WOOLY_SERVER_GRPC_SERVICES_H_
