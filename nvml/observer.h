// The NVML view's own session with woolyd: a plain blocking socket that says
// Hello as an "observer" (settings role=observer, plus the tenant settings
// from the environment so that woolyd files it under the same tenant as the
// CUDA clients of this container) and then only asks kTenantView. No shared
// memory channel, no batching: NVML queries are rare and small.
//
// Thread safety: none; the caller (session.h) serializes all use.
#ifndef WOOLY_NVML_OBSERVER_H_
#define WOOLY_NVML_OBSERVER_H_

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "wooly/proto/wire.h"

namespace wooly::nvml {

// One process of the tenant, as kTenantView reports it.
struct TenantProcess {
  uint32_t pid = 0;  // in the reporting client's pid namespace
  uint64_t bytes = 0;
  std::string name;
};

// The kTenantView reply (wire.h documents the fields).
struct TenantView {
  std::string tenant;
  uint64_t memory_limit = 0;  // 0: none
  uint64_t memory_total = 0;
  uint64_t memory_used = 0;
  uint64_t device_total = 0;
  uint64_t device_free = 0;
  double measured_share = 0;  // 0..1
  double target_share = 0;    // 0..1
  uint64_t busy_ns = 0;
  std::vector<TenantProcess> processes;
};

// What the observer says about itself in Hello.
struct HelloIdentity {
  uint32_t pid = 0;
  int32_t priority = 2;
  std::string name;
  std::string pod;
  std::string pod_namespace;
  std::vector<std::pair<std::string, std::string>> settings;
};

// The identity from the environment, as libwooly builds it (client name,
// priority, pod and namespace), with settings role=observer plus
// WOOLY_TENANT and WOOLY_MEMORY_LIMIT when they are set.
HelloIdentity ObserverIdentityFromEnvironment();

// Hello's request payload (wire.h, Op::kHello) with the settings block.
wire::Writer BuildHello(const HelloIdentity& id);

// Parses kTenantView's reply fields (after the CUresult). False when
// malformed; processes are capped at 65536 entries.
bool ParseTenantView(wire::Reader& r, TenantView* out);

// Why Connect failed.
enum class ConnectFailure {
  kNone,
  kUnreachable,      // bad endpoint, or nothing listens there
  kVersionMismatch,  // woolyd speaks another protocol version
  kRefused,          // woolyd answered Hello with an error (a bad setting, ...)
  kBroken,           // the connection broke or the reply was malformed
};

class Observer {
 public:
  Observer() = default;
  ~Observer();  // closes the socket without a Goodbye
  Observer(const Observer&) = delete;
  Observer& operator=(const Observer&) = delete;

  // Connects to `endpoint` and says Hello. On success fills *device and
  // *server_version; on failure returns the reason with a message in *error.
  ConnectFailure Connect(const std::string& endpoint, const HelloIdentity& id,
                         wire::DeviceInfo* device, std::string* server_version, std::string* error);

  // One request. Returns false when the connection broke (it is then
  // closed); otherwise *result is the reply's CUresult and *payload holds
  // the reply fields after it.
  bool Call(wire::Op op, const wire::Writer& body, int32_t* result, std::vector<uint8_t>* payload);

  // Says Goodbye (best effort) and closes.
  void Goodbye();
  // Closes without a word: the socket was inherited across fork() and
  // belongs to the parent's session.
  void Abandon();

  bool connected() const { return fd_ >= 0; }
  bool is_unix() const { return is_unix_; }
  // The process that opened the connection.
  pid_t owner_pid() const { return owner_pid_; }

 private:
  void Close();

  int fd_ = -1;
  bool is_unix_ = true;
  pid_t owner_pid_ = 0;
  uint32_t seq_ = 0;
};

}  // namespace wooly::nvml

#endif  // WOOLY_NVML_OBSERVER_H_
