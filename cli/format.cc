#include "wooly/cli/format.h"

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <iterator>
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

void AppendClientJson(const wooly::v1::ClientInfo& c, const std::string& indent, std::string* out) {
  const std::string in = indent + "  ";
  *out += indent + "{\n";
  *out += in + "\"client_id\": " + std::to_string(c.client_id()) + ",\n";
  *out += in + "\"pid\": " + std::to_string(c.pid()) + ",\n";
  *out += in + "\"name\": " + JsonQuote(c.name()) + ",\n";
  *out += in + "\"priority\": " + std::to_string(c.priority()) + ",\n";
  *out += in + "\"bytes_allocated\": " + std::to_string(c.bytes_allocated()) + ",\n";
  *out += in + "\"streams\": " + std::to_string(c.streams()) + ",\n";
  *out += in + "\"modules\": " + std::to_string(c.modules()) + ",\n";
  *out += in + "\"transport\": " + JsonQuote(c.transport()) + ",\n";
  *out += in + "\"connected_unix_seconds\": " + std::to_string(c.connected_unix_seconds()) + ",\n";
  *out += in + "\"context_lost\": " + (c.context_lost() ? "true" : "false") + "\n";
  *out += indent + "}";
}

void AppendClientsJson(const google::protobuf::RepeatedPtrField<wooly::v1::ClientInfo>& clients,
                       const std::string& indent, std::string* out) {
  if (clients.empty()) {
    *out += "[]";
    return;
  }
  *out += "[\n";
  for (int i = 0; i < clients.size(); ++i) {
    AppendClientJson(clients[i], indent + "  ", out);
    *out += i + 1 < clients.size() ? ",\n" : "\n";
  }
  *out += indent + "]";
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
      {"MODULES", Align::kRight},  {"TRANSPORT", Align::kLeft},
  };
  // Only after a sticky error: which clients lost their GPU context.
  const bool any_lost =
      std::any_of(clients.begin(), clients.end(),
                  [](const wooly::v1::ClientInfo& c) { return c.context_lost(); });
  if (any_lost) columns.push_back({"CONTEXT", Align::kLeft});
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
    });
    if (any_lost) rows.back().push_back(c.context_lost() ? "lost" : "ok");
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

std::string StatusToJson(const wooly::v1::StatusReply& st) {
  std::string out = "{\n";
  out += "  \"server_version\": " + JsonQuote(st.server_version()) + ",\n";
  out += "  \"protocol_version\": " + std::to_string(st.protocol_version()) + ",\n";
  out += "  \"backend\": " + JsonQuote(st.backend()) + ",\n";
  out += "  \"gpu_name\": " + JsonQuote(st.gpu_name()) + ",\n";
  out += "  \"gpu_uuid\": " + JsonQuote(st.gpu_uuid()) + ",\n";
  out += "  \"total_memory_bytes\": " + std::to_string(st.total_memory_bytes()) + ",\n";
  out += "  \"used_memory_bytes\": " + std::to_string(st.used_memory_bytes()) + ",\n";
  out += "  \"free_memory_bytes\": " + std::to_string(st.free_memory_bytes()) + ",\n";
  out += "  \"uptime_seconds\": " + std::to_string(st.uptime_seconds()) + ",\n";
  out += "  \"context_resets\": " + std::to_string(st.context_resets()) + ",\n";
  out += "  \"listen_addresses\": [";
  for (int i = 0; i < st.listen_addresses().size(); ++i) {
    if (i > 0) out += ", ";
    out += JsonQuote(st.listen_addresses(i));
  }
  out += "],\n";
  out += "  \"clients\": ";
  AppendClientsJson(st.clients(), "  ", &out);
  out += "\n}\n";
  return out;
}

std::string ClientsToJson(const wooly::v1::ListClientsReply& reply) {
  std::string out = "{\n  \"clients\": ";
  AppendClientsJson(reply.clients(), "  ", &out);
  out += "\n}\n";
  return out;
}

}  // namespace wooly::cli
