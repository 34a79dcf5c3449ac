#include "wooly/server/metrics.h"

#include <httplib.h>

#include <cmath>
#include <cstdio>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "wooly/server/server.h"

namespace wooly::server {
namespace {

// Label values escape backslash, double quote and newline.
std::string Escape(const std::string& v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    if (c == '\\' || c == '"') {
      out += '\\';
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

std::string Num(double v) {
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.17g", v);
  return buf;
}

void Header(std::string& out, const char* name, const char* type, const char* help) {
  absl::StrAppend(&out, "# HELP ", name, " ", help, "\n# TYPE ", name, " ", type, "\n");
}

std::string TenantLabels(const ClientStatus& c) {
  return absl::StrCat("client=\"", Escape(c.name), "\",client_id=\"", c.client_id, "\",pid=\"",
                      c.pid, "\",pod=\"", Escape(c.pod), "\",namespace=\"", Escape(c.pod_namespace),
                      "\"");
}

// The scheduler's series add the client's tenant (tenants.h) to the labels.
std::string SchedulerLabels(const ClientStatus& c) {
  return absl::StrCat(TenantLabels(c), ",tenant=\"", Escape(c.tenant), "\"");
}

// Shares and times are doubles; a client that has not run yet reads 0, never
// NaN.
double Finite(double v) { return std::isfinite(v) ? v : 0.0; }

// Per-client series of the scheduler (issue #5) and the tenant's memory
// limit. Every family's HELP/TYPE is written even without clients, so
// dashboards and scrapers see what exists.
void RenderSchedulerSeries(const StatusSnapshot& s, std::string& out) {
  Header(out, "wooly_tenant_priority", "gauge",
         "The client's effective scheduling priority, 0 (highest) to 4.");
  for (const ClientStatus& c : s.clients) {
    absl::StrAppend(&out, "wooly_tenant_priority{", SchedulerLabels(c), "} ", c.priority, "\n");
  }
  Header(out, "wooly_tenant_sm_share_target_ratio", "gauge",
         "Share of the GPU's SMs the scheduler assigns the client now (0 to 1).");
  for (const ClientStatus& c : s.clients) {
    absl::StrAppend(&out, "wooly_tenant_sm_share_target_ratio{", SchedulerLabels(c), "} ",
                    Num(Finite(c.target_share)), "\n");
  }
  Header(out, "wooly_tenant_sm_share_measured_ratio", "gauge",
         "Share of the GPU's SMs the client's kernels used over the last second (0 to 1).");
  for (const ClientStatus& c : s.clients) {
    absl::StrAppend(&out, "wooly_tenant_sm_share_measured_ratio{", SchedulerLabels(c), "} ",
                    Num(Finite(c.measured_share)), "\n");
  }
  Header(out, "wooly_tenant_gpu_busy_seconds_total", "counter",
         "Seconds of GPU time the client's kernels ran since it connected (measured around its "
         "launch batches).");
  for (const ClientStatus& c : s.clients) {
    absl::StrAppend(&out, "wooly_tenant_gpu_busy_seconds_total{", SchedulerLabels(c), "} ",
                    Num(Finite(c.busy_seconds)), "\n");
  }
  Header(out, "wooly_tenant_queue_depth", "gauge",
         "Kernels the client launched that the GPU has not finished.");
  for (const ClientStatus& c : s.clients) {
    absl::StrAppend(&out, "wooly_tenant_queue_depth{", SchedulerLabels(c), "} ", c.queue_depth,
                    "\n");
  }
  Header(out, "wooly_tenant_memory_limit_bytes", "gauge",
         "Device memory limit of the client's tenant (only tenants with a limit).");
  for (const ClientStatus& c : s.clients) {
    if (c.memory_limit == 0) continue;
    absl::StrAppend(&out, "wooly_tenant_memory_limit_bytes{", SchedulerLabels(c), "} ",
                    c.memory_limit, "\n");
  }
}

// VRAM overcommit (node_memory.h), only when it is on.
void RenderOvercommitSeries(const StatusSnapshot& s, std::string& out) {
  Header(out, "wooly_tenant_memory_resident_bytes", "gauge",
         "A tenant's overcommitted device memory that is resident on the GPU.");
  for (const ClientStatus& c : s.clients) {
    absl::StrAppend(&out, "wooly_tenant_memory_resident_bytes{", TenantLabels(c), "} ",
                    c.memory_resident, "\n");
  }
  Header(out, "wooly_tenant_memory_swapped_bytes", "gauge",
         "A tenant's device memory swapped out to the pinned host pool.");
  for (const ClientStatus& c : s.clients) {
    absl::StrAppend(&out, "wooly_tenant_memory_swapped_bytes{", TenantLabels(c), "} ",
                    c.memory_swapped_out, "\n");
  }
  Header(out, "wooly_tenant_memory_shared_bytes", "gauge",
         "A tenant's device memory mapped onto deduplicated chunks.");
  for (const ClientStatus& c : s.clients) {
    absl::StrAppend(&out, "wooly_tenant_memory_shared_bytes{", TenantLabels(c), "} ",
                    c.memory_shared, "\n");
  }
  const memory::NodeUsage& n = s.memory.node;
  Header(out, "wooly_memory_physical_bytes", "gauge",
         "Device memory set aside for clients' overcommitted allocations.");
  absl::StrAppend(&out, "wooly_memory_physical_bytes ", n.physical_bytes, "\n");
  Header(out, "wooly_memory_physical_used_bytes", "gauge",
         "Device memory held by clients' chunks now.");
  absl::StrAppend(&out, "wooly_memory_physical_used_bytes ", n.physical_used, "\n");
  Header(out, "wooly_memory_admission_limit_bytes", "gauge",
         "Most device memory woolyd admits in all (physical plus the overcommit percentage).");
  absl::StrAppend(&out, "wooly_memory_admission_limit_bytes ", n.admission_limit, "\n");
  Header(out, "wooly_memory_admitted_bytes", "gauge", "Device memory admitted to all clients.");
  absl::StrAppend(&out, "wooly_memory_admitted_bytes ", n.allocated, "\n");
  Header(out, "wooly_memory_overcommitted_bytes", "gauge",
         "Admitted device memory beyond the physical memory.");
  absl::StrAppend(&out, "wooly_memory_overcommitted_bytes ", n.overcommitted, "\n");
  Header(out, "wooly_memory_swapped_bytes", "gauge",
         "Clients' device memory held in the pinned host pool.");
  absl::StrAppend(&out, "wooly_memory_swapped_bytes ", n.swapped_out, "\n");
  Header(out, "wooly_memory_dedup_saved_bytes", "gauge",
         "Device memory saved by weight deduplication.");
  absl::StrAppend(&out, "wooly_memory_dedup_saved_bytes ", n.dedup_saved, "\n");
  Header(out, "wooly_swap_out_bytes_total", "counter", "Bytes swapped out to the host pool.");
  absl::StrAppend(&out, "wooly_swap_out_bytes_total ", n.swap_out_bytes, "\n");
  Header(out, "wooly_swap_in_bytes_total", "counter", "Bytes swapped back into device memory.");
  absl::StrAppend(&out, "wooly_swap_in_bytes_total ", n.swap_in_bytes, "\n");
}

}  // namespace

void LatencyHistogram::Observe(double seconds) {
  size_t i = 0;
  while (i < kBounds.size() && seconds > kBounds[i]) ++i;
  counts_[i].fetch_add(1, std::memory_order_relaxed);
  sum_ns_.fetch_add(static_cast<uint64_t>(std::max(0.0, seconds) * 1e9), std::memory_order_relaxed);
}

LatencyHistogram::Snapshot LatencyHistogram::Take() const {
  Snapshot s;
  for (size_t i = 0; i < counts_.size(); ++i) {
    s.counts[i] = counts_[i].load(std::memory_order_relaxed);
    s.count += s.counts[i];
  }
  s.sum_seconds = static_cast<double>(sum_ns_.load(std::memory_order_relaxed)) / 1e9;
  return s;
}

std::string RenderMetrics(const StatusSnapshot& s, const LatencyHistogram::Snapshot& latency) {
  std::string out;
  Header(out, "wooly_clients_connected", "gauge", "Clients past Hello.");
  absl::StrAppend(&out, "wooly_clients_connected ", s.clients.size(), "\n");
  Header(out, "wooly_device_memory_physical_bytes", "gauge", "Device memory of the GPU.");
  absl::StrAppend(&out, "wooly_device_memory_physical_bytes ", s.total_memory_bytes, "\n");
  Header(out, "wooly_device_memory_used_bytes", "gauge",
         "Device memory in use on the GPU (all processes).");
  absl::StrAppend(&out, "wooly_device_memory_used_bytes ", s.used_memory_bytes, "\n");
  Header(out, "wooly_tenant_memory_allocated_bytes", "gauge",
         "Device memory a tenant holds through woolyd.");
  for (const ClientStatus& c : s.clients) {
    absl::StrAppend(&out, "wooly_tenant_memory_allocated_bytes{", TenantLabels(c), "} ",
                    c.bytes_allocated, "\n");
  }
  Header(out, "wooly_tenant_kernels_launched_total", "counter", "Kernels a tenant launched.");
  for (const ClientStatus& c : s.clients) {
    absl::StrAppend(&out, "wooly_tenant_kernels_launched_total{", TenantLabels(c), "} ",
                    c.kernels_launched, "\n");
  }
  Header(out, "wooly_tenant_context_lost", "gauge",
         "1 when the tenant lost its GPU state to a fault in the shared context.");
  for (const ClientStatus& c : s.clients) {
    absl::StrAppend(&out, "wooly_tenant_context_lost{", TenantLabels(c), "} ",
                    c.context_lost ? 1 : 0, "\n");
  }
  RenderSchedulerSeries(s, out);
  if (s.memory.enabled) RenderOvercommitSeries(s, out);
  Header(out, "wooly_context_resets_total", "counter",
         "Resets of the shared GPU context after a sticky error.");
  absl::StrAppend(&out, "wooly_context_resets_total ", s.context_resets, "\n");
  Header(out, "wooly_uptime_seconds", "gauge", "Seconds since this woolyd worker started.");
  absl::StrAppend(&out, "wooly_uptime_seconds ", s.uptime_seconds, "\n");
  Header(out, "wooly_command_latency_seconds", "histogram",
         "Time woolyd spent on each command, from reading it to finishing it.");
  uint64_t cumulative = 0;
  for (size_t i = 0; i < latency.counts.size(); ++i) {
    cumulative += latency.counts[i];
    const double le =
        i < LatencyHistogram::kBounds.size() ? LatencyHistogram::kBounds[i] : HUGE_VAL;
    absl::StrAppend(&out, "wooly_command_latency_seconds_bucket{le=\"", Num(le), "\"} ", cumulative,
                    "\n");
  }
  absl::StrAppend(&out, "wooly_command_latency_seconds_sum ", Num(latency.sum_seconds), "\n");
  absl::StrAppend(&out, "wooly_command_latency_seconds_count ", latency.count, "\n");
  return out;
}

struct MetricsServer::Impl {
  httplib::Server http;
};

bool ParseHostPort(const std::string& text, std::string* host, int* port) {
  const size_t colon = text.rfind(':');
  int p = -1;
  if (colon == std::string::npos || colon == 0 || !absl::SimpleAtoi(text.substr(colon + 1), &p) ||
      p < 0 || p > 65535) {
    return false;
  }
  *host = text.substr(0, colon);
  *port = p;
  return true;
}

absl::StatusOr<std::unique_ptr<MetricsServer>> MetricsServer::Start(
    const std::string& address, std::function<std::string()> render) {
  std::string host;
  int port = -1;
  if (!ParseHostPort(address, &host, &port)) {
    return absl::InvalidArgumentError(
        absl::StrCat("metrics address must be HOST:PORT, got '", address, "'"));
  }
  std::unique_ptr<MetricsServer> m(new MetricsServer());
  m->impl_ = std::make_unique<Impl>();
  m->impl_->http.Get("/metrics", [render](const httplib::Request&, httplib::Response& res) {
    res.set_content(render(), "text/plain; version=0.0.4; charset=utf-8");
  });
  const int bound = port == 0 ? m->impl_->http.bind_to_any_port(host.c_str())
                              : (m->impl_->http.bind_to_port(host.c_str(), port) ? port : -1);
  if (bound < 0) {
    return absl::UnavailableError(absl::StrCat("cannot listen for metrics on ", address));
  }
  m->address_ = absl::StrCat(host, ":", bound);
  Impl* impl = m->impl_.get();
  m->thread_ = std::thread([impl] { impl->http.listen_after_bind(); });
  return m;
}

MetricsServer::~MetricsServer() {
  if (impl_) impl_->http.stop();
  if (thread_.joinable()) thread_.join();
}

}  // namespace wooly::server
