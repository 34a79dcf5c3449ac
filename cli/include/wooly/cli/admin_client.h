// A small synchronous client for woolyd's gRPC Admin service
// (wooly/v1/admin.proto).
#ifndef WOOLY_CLI_ADMIN_CLIENT_H_
#define WOOLY_CLI_ADMIN_CLIENT_H_

#include <string>

#include "absl/status/statusor.h"
#include "wooly/v1/admin.pb.h"

namespace wooly::cli {

// Converts a Wooly endpoint ("unix:/p", "/p", "tcp:h:p", "h:p") into a gRPC
// target ("unix:/p", "h:p", "[v6]:p").
absl::StatusOr<std::string> GrpcTarget(const std::string& endpoint);

// Each call first checks that the endpoint accepts connections (so the error
// names the real cause, e.g. a missing socket file), then makes the RPC with
// a deadline of `timeout_ms`. UNAVAILABLE means woolyd could not be reached;
// other codes come from the server. Messages are one line.
absl::StatusOr<wooly::v1::StatusReply> FetchStatus(const std::string& endpoint, int timeout_ms);
absl::StatusOr<wooly::v1::ListClientsReply> FetchClients(const std::string& endpoint,
                                                         int timeout_ms);
// SetPolicy: NOT_FOUND for an unknown client and INVALID_ARGUMENT for a bad
// assignment, with woolyd's message; UNIMPLEMENTED from a woolyd older than
// the call.
absl::StatusOr<wooly::v1::SetPolicyReply> SetPolicy(const std::string& endpoint,
                                                    const wooly::v1::SetPolicyRequest& request,
                                                    int timeout_ms);

}  // namespace wooly::cli

#endif  // WOOLY_CLI_ADMIN_CLIENT_H_
