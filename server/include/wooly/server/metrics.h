// Prometheus metrics of woolyd: a command-latency histogram fed by the
// connection threads, the text exposition of a StatusSnapshot, and an HTTP
// endpoint (cpp-httplib) serving GET /metrics.
//
// Names follow Prometheus conventions: `wooly_` prefix, `_bytes` for sizes,
// `_seconds` for durations, `_total` for counters. Per-tenant series carry
// the labels client (name), client_id, pid, pod and namespace (the last two
// empty unless the client's environment names them).
//
// Only what woolyd measures is exported; SM shares, swap and dedup metrics
// come with the scheduler and memory work (issues #5, #6).
//
// Thread safety: LatencyHistogram is lock-free; MetricsServer's methods may
// be called from any thread.
#ifndef WOOLY_SERVER_METRICS_H_
#define WOOLY_SERVER_METRICS_H_

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"

namespace wooly::server {

struct StatusSnapshot;

class LatencyHistogram {
 public:
  // Upper bounds in seconds; a last +Inf bucket is implied.
  static constexpr std::array<double, 12> kBounds = {1e-5,   2.5e-5, 5e-5, 1e-4, 2.5e-4, 1e-3,
                                                     2.5e-3, 1e-2,   0.1,  1.0,  10.0,   60.0};
  struct Snapshot {
    std::array<uint64_t, kBounds.size() + 1> counts{};  // per bucket, not cumulative
    double sum_seconds = 0;
    uint64_t count = 0;
  };
  void Observe(double seconds);
  Snapshot Take() const;

 private:
  std::array<std::atomic<uint64_t>, kBounds.size() + 1> counts_{};
  std::atomic<uint64_t> sum_ns_{0};
};

// Splits "host:port" (port 0..65535); false for anything else.
bool ParseHostPort(const std::string& text, std::string* host, int* port);

// The exposition text (format 0.0.4) for `s` and `latency`.
std::string RenderMetrics(const StatusSnapshot& s, const LatencyHistogram::Snapshot& latency);

// GET /metrics on `address` ("host:port", port 0 picks one), answered with
// `render()` on the server's own thread.
class MetricsServer {
 public:
  static absl::StatusOr<std::unique_ptr<MetricsServer>> Start(const std::string& address,
                                                              std::function<std::string()> render);
  ~MetricsServer();  // stops serving
  // "host:port" actually bound.
  const std::string& address() const { return address_; }

 private:
  MetricsServer() = default;
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::thread thread_;
  std::string address_;
};

}  // namespace wooly::server

#endif  // WOOLY_SERVER_METRICS_H_
