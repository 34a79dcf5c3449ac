#include "wooly/cli/format.h"

#include <algorithm>
#include <charconv>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <iterator>
#include <utility>
#include <vector>

namespace wooly::cli {
namespace {

std::string Printf(const char* fmt, auto... args) {
  char buf[128];
  std::snprintf(buf, sizeof(buf), fmt, args...);
  return buf;
}

enum class Align { kLeft, kRight };

struct Column {
  const char* header;
  Align align;
};

// Lays out rows under headers, columns two spaces apart, no trailing blanks.
std::string RenderTable(const std::vector<Column>& columns,
                        const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> width(columns.size());
  for (size_t c = 0; c < columns.size(); ++c) width[c] = std::string(columns[c].header).size();
  for (const auto& row : rows) {
    for (size_t c = 0; c < columns.size(); ++c) width[c] = std::max(width[c], row[c].size());
  }
  auto emit = [&](const std::vector<std::string>& cells, std::string* out) {
    std::string line;
    for (size_t c = 0; c < columns.size(); ++c) {
      const size_t pad = width[c] - cells[c].size();
      if (c > 0) line += "  ";
      if (columns[c].align == Align::kRight) line.append(pad, ' ');
      line += cells[c];
      if (columns[c].align == Align::kLeft) line.append(pad, ' ');
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    *out += line;
    *out += '\n';
  };
  std::string out;
  std::vector<std::string> headers;
  for (const Column& c : columns) headers.emplace_back(c.header);
  emit(headers, &out);
  for (const auto& row : rows) emit(row, &out);
  return out;
}

// A JSON object as (key, rendered value) pairs, in output order.
using JsonFields = std::vector<std::pair<const char*, std::string>>;

// `indent` is the indentation of the object's opening brace's line; nested
// values must have been rendered for indent + two spaces. Compact objects
// have no blanks at all.
std::string JsonObject(const JsonFields& fields, const std::string& indent, bool pretty) {
  std::string out = pretty ? "{\n" : "{";
  for (size_t i = 0; i < fields.size(); ++i) {
    if (pretty) out += indent + "  ";
    out += JsonQuote(fields[i].first);
    out += pretty ? ": " : ":";
    out += fields[i].second;
    if (i + 1 < fields.size()) out += ',';
    if (pretty) out += '\n';
  }
  out += pretty ? indent + "}" : "}";
  return out;
}

std::string JsonBool(bool b) { return b ? "true" : "false"; }

bool HasOvercommitMemory(const wooly::v1::ClientInfo& c) {
  return c.memory_resident_bytes() != 0 || c.memory_swapped_bytes() != 0 ||
         c.memory_shared_bytes() != 0;
}

// New keys go at the end: scripts may depend on the order of the old ones.
JsonFields ClientFields(const wooly::v1::ClientInfo& c) {
  JsonFields fields = {
      {"client_id", std::to_string(c.client_id())},
      {"pid", std::to_string(c.pid())},
      {"name", JsonQuote(c.name())},
      {"priority", std::to_string(c.priority())},
      {"bytes_allocated", std::to_string(c.bytes_allocated())},
      {"streams", std::to_string(c.streams())},
      {"modules", std::to_string(c.modules())},
      {"transport", JsonQuote(c.transport())},
      {"connected_unix_seconds", std::to_string(c.connected_unix_seconds())},
      {"context_lost", JsonBool(c.context_lost())},
      {"kernels_launched", std::to_string(c.kernels_launched())},
      {"pod", JsonQuote(c.pod())},
      {"pod_namespace", JsonQuote(c.pod_namespace())},
      {"tenant", JsonQuote(c.tenant())},
      {"memory_limit_bytes", std::to_string(c.memory_limit_bytes())},
      {"weight", JsonDouble(c.weight())},
      {"sm_floor", JsonDouble(c.sm_floor())},
      {"sm_cap", JsonDouble(c.sm_cap())},
      {"target_share", JsonDouble(c.target_share())},
      {"measured_share", JsonDouble(c.measured_share())},
      {"busy_seconds", JsonDouble(c.busy_seconds())},
      {"queue_depth", std::to_string(c.queue_depth())},
      {"measured_share_recent", JsonDouble(c.measured_share_recent())},
  };
  // Overcommit (docs/overcommit.md): only for clients that hold such memory.
  if (HasOvercommitMemory(c)) {
    fields.push_back({"memory_resident_bytes", std::to_string(c.memory_resident_bytes())});
    fields.push_back({"memory_swapped_bytes", std::to_string(c.memory_swapped_bytes())});
    fields.push_back({"memory_shared_bytes", std::to_string(c.memory_shared_bytes())});
  }
  return fields;
}

// The node's overcommit figures as the value of a key at `indent`.
std::string MemoryJson(const wooly::v1::MemoryStatus& m, const std::string& indent, bool pretty) {
  const JsonFields fields = {
      {"overcommit_enabled", JsonBool(m.overcommit_enabled())},
      {"overcommit_percent", std::to_string(m.overcommit_percent())},
      {"physical_bytes", std::to_string(m.physical_bytes())},
      {"admission_limit_bytes", std::to_string(m.admission_limit_bytes())},
      {"physical_used_bytes", std::to_string(m.physical_used_bytes())},
      {"admitted_bytes", std::to_string(m.admitted_bytes())},
      {"overcommitted_bytes", std::to_string(m.overcommitted_bytes())},
      {"resident_bytes", std::to_string(m.resident_bytes())},
      {"swapped_bytes", std::to_string(m.swapped_bytes())},
      {"host_pool_used_bytes", std::to_string(m.host_pool_used_bytes())},
      {"swap_out_bytes_total", std::to_string(m.swap_out_bytes_total())},
      {"swap_in_bytes_total", std::to_string(m.swap_in_bytes_total())},
      {"dedup_saved_bytes", std::to_string(m.dedup_saved_bytes())},
  };
  return JsonObject(fields, indent, pretty);
}

// The clients array as the value of a key at `indent`.
std::string ClientsJson(const google::protobuf::RepeatedPtrField<wooly::v1::ClientInfo>& clients,
                        const std::string& indent, bool pretty) {
  if (clients.empty()) return "[]";
  std::string out = pretty ? "[\n" : "[";
  for (int i = 0; i < clients.size(); ++i) {
    if (pretty) out += indent + "  ";
    out += JsonObject(ClientFields(clients[i]), indent + "  ", pretty);
    if (i + 1 < clients.size()) out += ',';
    if (pretty) out += '\n';
  }
  out += pretty ? indent + "]" : "]";
  return out;
}

std::string StatusJson(const wooly::v1::StatusReply& st, bool pretty) {
  std::string addresses = "[";
  for (int i = 0; i < st.listen_addresses().size(); ++i) {
    if (i > 0) addresses += pretty ? ", " : ",";
    addresses += JsonQuote(st.listen_addresses(i));
  }
  addresses += "]";
  JsonFields fields = {
      {"server_version", JsonQuote(st.server_version())},
      {"protocol_version", std::to_string(st.protocol_version())},
      {"backend", JsonQuote(st.backend())},
      {"gpu_name", JsonQuote(st.gpu_name())},
      {"gpu_uuid", JsonQuote(st.gpu_uuid())},
      {"total_memory_bytes", std::to_string(st.total_memory_bytes())},
      {"used_memory_bytes", std::to_string(st.used_memory_bytes())},
      {"free_memory_bytes", std::to_string(st.free_memory_bytes())},
      {"uptime_seconds", std::to_string(st.uptime_seconds())},
      {"context_resets", std::to_string(st.context_resets())},
      {"listen_addresses", addresses},
      {"clients", ClientsJson(st.clients(), "  ", pretty)},
  };
  if (st.memory().overcommit_enabled()) {
    fields.push_back({"memory", MemoryJson(st.memory(), "  ", pretty)});
  }
  return JsonObject(fields, "", pretty) + "\n";
}

// Sanitized text, or "-" when empty.
std::string TextOrDash(const std::string& text, size_t max_len) {
  return text.empty() ? "-" : Sanitize(text, max_len);
}

}  // namespace

std::string FormatBytes(uint64_t bytes) {
  static constexpr const char* kUnits[] = {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  if (bytes < 1024) return std::to_string(bytes) + " B";
  double v = static_cast<double>(bytes) / 1024.0;
  size_t u = 0;
  while (v >= 1024.0 && u + 1 < std::size(kUnits)) {
    v /= 1024.0;
    ++u;
  }
  // Rounding can reach 1024.00 of a unit; show it as 1.00 of the next.
  std::string s = Printf("%.2f", v);
  if (s == "1024.00" && u + 1 < std::size(kUnits)) {
    s = "1.00";
    ++u;
  }
  return s + " " + kUnits[u];
}

std::string FormatDuration(int64_t seconds) {
  if (seconds < 0) seconds = 0;
  const int64_t d = seconds / 86400;
  const int64_t h = seconds / 3600 % 24;
  const int64_t m = seconds / 60 % 60;
  const int64_t s = seconds % 60;
  if (d > 0) return Printf("%" PRId64 "d %02" PRId64 "h %02" PRId64 "m", d, h, m);
  if (h > 0) return Printf("%" PRId64 "h %02" PRId64 "m %02" PRId64 "s", h, m, s);
  if (m > 0) return Printf("%" PRId64 "m %02" PRId64 "s", m, s);
  return Printf("%" PRId64 "s", s);
}

std::string Sanitize(const std::string& text, size_t max_len) {
  std::string out;
  out.reserve(text.size());
  for (unsigned char ch : text) out += (ch < 0x20 || ch == 0x7f) ? '?' : static_cast<char>(ch);
  if (out.size() > max_len && max_len >= 3) {
    size_t cut = max_len - 3;
    // Do not split a UTF-8 sequence: back up to a lead byte.
    while (cut > 0 && (static_cast<unsigned char>(out[cut]) & 0xC0) == 0x80) --cut;
    out = out.substr(0, cut) + "...";
  }
  return out;
}

std::string RenderClientsTable(
    const google::protobuf::RepeatedPtrField<wooly::v1::ClientInfo>& clients) {
  if (clients.empty()) return "No clients connected.\n";
  std::vector<Column> columns = {
      {"ID", Align::kRight},       {"PID", Align::kRight},       {"NAME", Align::kLeft},
      {"PRIORITY", Align::kRight}, {"ALLOCATED", Align::kRight}, {"STREAMS", Align::kRight},
      {"MODULES", Align::kRight},  {"TRANSPORT", Align::kLeft},  {"TENANT", Align::kLeft},
      {"TARGET", Align::kRight},   {"MEASURED", Align::kRight},
  };
  // Only after a sticky error: which clients lost their GPU context.
  const bool any_lost =
      std::any_of(clients.begin(), clients.end(),
                  [](const wooly::v1::ClientInfo& c) { return c.context_lost(); });
  if (any_lost) columns.push_back({"CONTEXT", Align::kLeft});
  // Only with overcommit: where each client's memory is.
  const bool any_overcommit = std::any_of(clients.begin(), clients.end(), HasOvercommitMemory);
  if (any_overcommit) {
    columns.push_back({"RESIDENT", Align::kRight});
    columns.push_back({"SWAPPED", Align::kRight});
  }
  std::vector<std::vector<std::string>> rows;
  for (const wooly::v1::ClientInfo& c : clients) {
    rows.push_back({
        std::to_string(c.client_id()),
        std::to_string(c.pid()),
        c.name().empty() ? "-" : Sanitize(c.name(), 32),
        std::to_string(c.priority()),
        FormatBytes(c.bytes_allocated()),
        std::to_string(c.streams()),
        std::to_string(c.modules()),
        c.transport().empty() ? "-" : Sanitize(c.transport(), 16),
        TextOrDash(c.tenant(), 32),
        FormatShare(c.target_share()),
        FormatShare(c.measured_share()),
    });
    if (any_lost) rows.back().push_back(c.context_lost() ? "lost" : "ok");
    if (any_overcommit) {
      rows.back().push_back(FormatBytes(c.memory_resident_bytes()));
      rows.back().push_back(FormatBytes(c.memory_swapped_bytes()));
    }
  }
  return RenderTable(columns, rows);
}

std::string RenderStatus(const wooly::v1::StatusReply& st) {
  std::string out;
  auto line = [&out](const char* key, const std::string& value) {
    out += Printf("%-11s", key);
    out += value;
    out += '\n';
  };
  line("Server:", "woolyd " + Sanitize(st.server_version(), 64));
  line("Protocol:", std::to_string(st.protocol_version()));
  line("Backend:", Sanitize(st.backend(), 32));
  std::string gpu = Sanitize(st.gpu_name(), 128);
  if (!st.gpu_uuid().empty()) gpu += " (" + Sanitize(st.gpu_uuid(), 64) + ")";
  line("GPU:", gpu);
  line("Memory:", FormatBytes(st.total_memory_bytes()) + " total, " +
                      FormatBytes(st.used_memory_bytes()) + " used, " +
                      FormatBytes(st.free_memory_bytes()) + " free");
  if (st.memory().overcommit_enabled()) {
    const wooly::v1::MemoryStatus& m = st.memory();
    line("VRAM pool:", FormatBytes(m.physical_bytes()) + " physical (" +
                           FormatBytes(m.physical_used_bytes()) + " used), " +
                           FormatBytes(m.admitted_bytes()) + " admitted of " +
                           FormatBytes(m.admission_limit_bytes()) + " (+" +
                           std::to_string(m.overcommit_percent()) + "%), " +
                           FormatBytes(m.overcommitted_bytes()) + " overcommitted");
    line("Swap:", FormatBytes(m.swapped_bytes()) + " swapped out; " +
                      FormatBytes(m.swap_out_bytes_total()) + " out, " +
                      FormatBytes(m.swap_in_bytes_total()) + " in since start");
  }
  line("Uptime:", FormatDuration(st.uptime_seconds()));
  if (st.listen_addresses().empty()) {
    line("Listening:", "-");
  } else {
    for (int i = 0; i < st.listen_addresses().size(); ++i) {
      line(i == 0 ? "Listening:" : "", Sanitize(st.listen_addresses(i), 256));
    }
  }
  if (st.context_resets() > 0) {
    line("Resets:", std::to_string(st.context_resets()) +
                        " (GPU context reset after a sticky error; see the woolyd log)");
  }
  line("Clients:", std::to_string(st.clients().size()));
  out += '\n';
  out += RenderClientsTable(st.clients());
  return out;
}

std::string JsonQuote(const std::string& text) {
  std::string out = "\"";
  for (unsigned char ch : text) {
    switch (ch) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (ch < 0x20 || ch == 0x7f) {
          out += Printf("\\u%04x", static_cast<unsigned>(ch));
        } else {
          out += static_cast<char>(ch);
        }
    }
  }
  out += '"';
  return out;
}

std::string StatusToJson(const wooly::v1::StatusReply& st) { return StatusJson(st, true); }

std::string StatusToJsonLine(const wooly::v1::StatusReply& st) { return StatusJson(st, false); }

std::string ClientsToJson(const wooly::v1::ListClientsReply& reply) {
  return JsonObject({{"clients", ClientsJson(reply.clients(), "  ", true)}}, "", true) + "\n";
}

std::string JsonDouble(double v) {
  if (!std::isfinite(v)) return "null";
  char buf[64];
  const std::to_chars_result r = std::to_chars(buf, buf + sizeof(buf), v);
  return std::string(buf, r.ptr);
}

std::string FormatShare(double fraction) {
  if (!std::isfinite(fraction) || fraction < 0) fraction = 0;
  return Printf("%.1f%%", fraction * 100.0);
}

std::string FormatPolicyShare(double fraction) {
  if (!std::isfinite(fraction) || fraction < 0) fraction = 0;
  std::string s = Printf("%.2f", fraction * 100.0);
  while (s.back() == '0') s.pop_back();
  if (s.back() == '.') s.pop_back();
  return s + "%";
}

std::string FormatWeight(double weight) {
  if (!std::isfinite(weight)) return "?";
  return Printf("%.6g", weight);
}

std::string FormatGpuTime(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) seconds = 0;
  if (seconds < 59.995) return Printf("%.2fs", seconds);
  return FormatDuration(static_cast<int64_t>(seconds));
}

std::string RenderPolicy(const wooly::v1::ClientInfo& c) {
  std::string out;
  auto line = [&out](const char* key, const std::string& value) {
    out += Printf("%-11s", key);
    out += value;
    out += '\n';
  };
  line("Client:", std::to_string(c.client_id()) + " (" + TextOrDash(c.name(), 64) + ", pid " +
                      std::to_string(c.pid()) + ")");
  line("Tenant:", TextOrDash(c.tenant(), 128));
  line("Priority:", std::to_string(c.priority()) + " (0 highest .. 4 lowest)");
  line("Weight:", FormatWeight(c.weight()));
  line("Floor:", c.sm_floor() > 0 ? FormatPolicyShare(c.sm_floor()) + " of the SMs" : "none");
  line("Cap:", c.sm_cap() < 1 ? FormatPolicyShare(c.sm_cap()) + " of the SMs" : "none");
  return out;
}

std::string PolicyToJson(const wooly::v1::SetPolicyReply& reply) {
  return JsonObject({{"client", JsonObject(ClientFields(reply.client()), "  ", true)}}, "", true) +
         "\n";
}

std::string RenderTop(const wooly::v1::StatusReply& st, const TopView& view) {
  std::string out = "woolyd " + Sanitize(st.server_version(), 64) + " on " +
                    TextOrDash(st.gpu_name(), 128) + " (" + TextOrDash(st.backend(), 32) +
                    "), up " + FormatDuration(st.uptime_seconds()) + "; every " +
                    Printf("%g", view.interval_seconds) + "s";
  if (!view.clock.empty()) out += "; " + Sanitize(view.clock, 32);
  out += '\n';
  double target = 0, measured = 0;
  for (const wooly::v1::ClientInfo& c : st.clients()) {
    if (std::isfinite(c.target_share())) target += c.target_share();
    if (std::isfinite(c.measured_share())) measured += c.measured_share();
  }
  out +=
      "Memory: " + FormatBytes(st.used_memory_bytes()) + " used of " +
      FormatBytes(st.total_memory_bytes()) + "; clients: " + std::to_string(st.clients().size()) +
      "; SM share: " + FormatShare(target) + " target, " + FormatShare(measured) + " measured\n\n";
  if (st.clients().empty()) return out + "No clients connected.\n";

  std::vector<const wooly::v1::ClientInfo*> order;
  for (const wooly::v1::ClientInfo& c : st.clients()) order.push_back(&c);
  std::stable_sort(order.begin(), order.end(), [](const auto* a, const auto* b) {
    if (a->priority() != b->priority()) return a->priority() < b->priority();
    return a->client_id() < b->client_id();
  });
  const std::vector<Column> columns = {
      {"ID", Align::kRight},       {"NAME", Align::kLeft},      {"TENANT", Align::kLeft},
      {"PRI", Align::kRight},      {"WEIGHT", Align::kRight},   {"FLOOR/CAP", Align::kRight},
      {"TARGET", Align::kRight},   {"MEASURED", Align::kRight}, {"GPU-TIME", Align::kRight},
      {"QUEUE", Align::kRight},    {"MEMORY", Align::kRight},   {"LIMIT", Align::kRight},
      {"TRANSPORT", Align::kLeft},
  };
  std::vector<std::vector<std::string>> rows;
  for (const wooly::v1::ClientInfo* c : order) {
    const std::string floor = c->sm_floor() > 0 ? FormatPolicyShare(c->sm_floor()) : "-";
    const std::string cap = c->sm_cap() < 1 ? FormatPolicyShare(c->sm_cap()) : "-";
    rows.push_back({
        std::to_string(c->client_id()),
        TextOrDash(c->name(), 24),
        TextOrDash(c->tenant(), 24),
        std::to_string(c->priority()),
        FormatWeight(c->weight()),
        floor + "/" + cap,
        FormatShare(c->target_share()),
        FormatShare(c->measured_share()),
        FormatGpuTime(c->busy_seconds()),
        std::to_string(c->queue_depth()),
        FormatBytes(c->bytes_allocated()),
        c->memory_limit_bytes() > 0 ? FormatBytes(c->memory_limit_bytes()) : "-",
        TextOrDash(c->transport(), 16),
    });
    if (c->context_lost()) rows.back().back() += " (context lost)";
  }
  return out + RenderTable(columns, rows);
}

std::string FitWidth(const std::string& text, size_t width) {
  if (width == 0) return text;
  std::string out;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    const bool newline = end != std::string::npos;
    if (!newline) end = text.size();
    size_t len = end - start;
    if (len > width) {
      len = width;
      while (len > 0 && (static_cast<unsigned char>(text[start + len]) & 0xC0) == 0x80) --len;
    }
    out.append(text, start, len);
    if (newline) out += '\n';
    start = end + 1;
  }
  return out;
}

}  // namespace wooly::cli
