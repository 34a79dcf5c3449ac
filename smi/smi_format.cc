#include "smi_format.h"

#include <algorithm>
#include <cstdio>
#include <string_view>

namespace wooly::smi {
namespace {

constexpr char kNA[] = "[N/A]";

// A query field: its canonical name, the unit shown in the header and after
// values ("" for none), and whether wooly-smi answers it (else "[N/A]").
struct Field {
  const char* name;
  const char* alias;
  const char* unit;
};

// --query-gpu fields wooly-smi answers.
constexpr Field kGpuFields[] = {
    {"timestamp", nullptr, ""},
    {"driver_version", nullptr, ""},
    {"count", nullptr, ""},
    {"name", "gpu_name", ""},
    {"index", nullptr, ""},
    {"uuid", "gpu_uuid", ""},
    {"pci.bus_id", "gpu_bus_id", ""},
    {"memory.total", nullptr, "MiB"},
    {"memory.used", nullptr, "MiB"},
    {"memory.free", nullptr, "MiB"},
    {"utilization.gpu", nullptr, "%"},
    {"temperature.gpu", nullptr, ""},
    {"power.draw", nullptr, "W"},
};

// Fields nvidia-smi knows that the Wooly view has no tenant answer for:
// accepted, answered "[N/A]" (nvidia-smi does the same for fields a GPU
// does not support).
constexpr Field kGpuFieldsNA[] = {
    {"vbios_version", nullptr, ""},
    {"serial", nullptr, ""},
    {"pci.domain", nullptr, ""},
    {"pci.bus", nullptr, ""},
    {"pci.device", nullptr, ""},
    {"pci.device_id", nullptr, ""},
    {"pci.sub_device_id", nullptr, ""},
    {"pcie.link.gen.current", nullptr, ""},
    {"pcie.link.gen.max", nullptr, ""},
    {"pcie.link.width.current", nullptr, ""},
    {"pcie.link.width.max", nullptr, ""},
    {"display_mode", nullptr, ""},
    {"display_active", nullptr, ""},
    {"persistence_mode", nullptr, ""},
    {"accounting.mode", nullptr, ""},
    {"driver_model.current", nullptr, ""},
    {"compute_mode", nullptr, ""},
    {"compute_cap", nullptr, ""},
    {"pstate", nullptr, ""},
    {"fan.speed", nullptr, "%"},
    {"memory.reserved", nullptr, "MiB"},
    {"utilization.memory", nullptr, "%"},
    {"temperature.memory", nullptr, ""},
    {"ecc.mode.current", nullptr, ""},
    {"power.limit", nullptr, "W"},
    {"power.max_limit", nullptr, "W"},
    {"enforced.power.limit", nullptr, "W"},
    {"power.management", nullptr, ""},
    {"clocks.sm", nullptr, "MHz"},
    {"clocks.mem", nullptr, "MHz"},
    {"clocks.gr", nullptr, "MHz"},
    {"clocks.max.sm", nullptr, "MHz"},
    {"clocks.max.mem", nullptr, "MHz"},
    {"clocks.max.gr", nullptr, "MHz"},
    {"mig.mode.current", nullptr, ""},
    {"mig.mode.pending", nullptr, ""},
};

constexpr Field kAppFields[] = {
    {"timestamp", nullptr, ""},   {"gpu_name", nullptr, ""},
    {"gpu_bus_id", nullptr, ""},  {"gpu_serial", nullptr, ""},
    {"gpu_uuid", nullptr, ""},    {"pid", nullptr, ""},
    {"process_name", "name", ""}, {"used_gpu_memory", "used_memory", "MiB"},
};

template <size_t N>
const Field* Find(const Field (&table)[N], std::string_view name) {
  for (const Field& f : table) {
    if (name == f.name || (f.alias != nullptr && name == f.alias)) return &f;
  }
  return nullptr;
}

const Field* FindGpuField(std::string_view name) {
  if (const Field* f = Find(kGpuFields, name)) return f;
  return Find(kGpuFieldsNA, name);
}

std::vector<std::string> Split(std::string_view s, char sep) {
  std::vector<std::string> out;
  size_t start = 0;
  while (true) {
    const size_t end = s.find(sep, start);
    std::string part(s.substr(start, end == std::string_view::npos ? end : end - start));
    // nvidia-smi tolerates blanks around names ("index, name").
    const size_t b = part.find_first_not_of(' ');
    const size_t e = part.find_last_not_of(' ');
    out.push_back(b == std::string::npos ? "" : part.substr(b, e - b + 1));
    if (end == std::string_view::npos) break;
    start = end + 1;
  }
  return out;
}

std::string Mib(uint64_t bytes) { return std::to_string(bytes >> 20); }

// Fits s into width columns, cut with "..." when too long.
std::string Cell(std::string s, size_t width, bool right) {
  if (s.size() > width) s = width > 3 ? s.substr(0, width - 3) + "..." : s.substr(0, width);
  const std::string pad(width - s.size(), ' ');
  return right ? pad + s : s + pad;
}

constexpr size_t kC1 = 41, kC2 = 24, kC3 = 22, kWide = kC1 + 1 + kC2 + 1 + kC3;

std::string Rule(char fill, bool columns) {
  const char edge = fill == '=' ? '|' : '+';
  if (!columns) return std::string(1, edge) + std::string(kWide, fill) + edge + "\n";
  return std::string(1, edge) + std::string(kC1, fill) + edge + std::string(kC2, fill) + edge +
         std::string(kC3, fill) + edge + "\n";
}

std::string Row3(const std::string& a, const std::string& b, const std::string& c) {
  return "|" + a + "|" + b + "|" + c + "|\n";
}

std::string Row1(const std::string& a) { return "|" + Cell(a, kWide, false) + "|\n"; }

std::string Opt(const std::optional<unsigned int>& v, const char* unit) {
  return v ? std::to_string(*v) + unit : "N/A";
}

std::string PowerWatts(unsigned int mw) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.2f", mw / 1000.0);
  return buf;
}

// One value of a --query-gpu field, without its unit.
std::string GpuValue(const Snapshot& s, const Gpu& g, size_t count, std::string_view f) {
  if (f == "timestamp") return s.query_timestamp.empty() ? kNA : s.query_timestamp;
  if (f == "driver_version") return s.driver_version.empty() ? kNA : s.driver_version;
  if (f == "count") return std::to_string(count);
  if (f == "name") return g.name;
  if (f == "index") return std::to_string(g.index);
  if (f == "uuid") return g.uuid.empty() ? kNA : g.uuid;
  if (f == "pci.bus_id") return g.bus_id.empty() ? kNA : g.bus_id;
  if (f == "memory.total") return g.memory_total ? Mib(*g.memory_total) : kNA;
  if (f == "memory.used") return g.memory_used ? Mib(*g.memory_used) : kNA;
  if (f == "memory.free") return g.memory_free ? Mib(*g.memory_free) : kNA;
  if (f == "utilization.gpu") return g.utilization_gpu ? std::to_string(*g.utilization_gpu) : kNA;
  if (f == "temperature.gpu") return g.temperature_c ? std::to_string(*g.temperature_c) : kNA;
  if (f == "power.draw") return g.power_mw ? PowerWatts(*g.power_mw) : kNA;
  return kNA;
}

std::string AppValue(const Snapshot* s, const Gpu& g, const Process& p, std::string_view f) {
  if (f == "timestamp") return s && !s->query_timestamp.empty() ? s->query_timestamp : kNA;
  if (f == "gpu_name") return g.name;
  if (f == "gpu_bus_id") return g.bus_id.empty() ? kNA : g.bus_id;
  if (f == "gpu_uuid") return g.uuid.empty() ? kNA : g.uuid;
  if (f == "pid") return std::to_string(p.pid);
  if (f == "process_name") return p.name.empty() ? kNA : p.name;
  if (f == "used_gpu_memory") return p.used_bytes ? Mib(*p.used_bytes) : kNA;
  return kNA;
}

std::string WithUnit(const std::string& v, const char* unit, bool units) {
  if (!units || *unit == '\0' || v == kNA) return v;
  return v + " " + unit;
}

std::string HeaderRow(const std::vector<std::string>& fields, const Options& o,
                      const Field* (*find)(std::string_view)) {
  std::string line;
  for (size_t i = 0; i < fields.size(); ++i) {
    const Field* f = find(fields[i]);
    if (i > 0) line += ", ";
    line += fields[i];
    if (o.units && f != nullptr && *f->unit != '\0') line += std::string(" [") + f->unit + "]";
  }
  return line + "\n";
}

const Field* FindAppField(std::string_view name) { return Find(kAppFields, name); }

std::string Unsupported(const std::string& opt) {
  return "wooly nvidia-smi: option " + opt +
         " is not supported (Wooly shows the tenant's view; see docs/nvml.md)\n";
}

// "--opt=value" or "--opt value"; false with *bad when the value is missing.
bool TakeValue(const std::vector<std::string>& args, size_t* i, const std::string& name,
               std::string* value) {
  const std::string& a = args[*i];
  if (a.size() > name.size() && a.compare(0, name.size() + 1, name + "=") == 0) {
    *value = a.substr(name.size() + 1);
    return true;
  }
  if (a == name && *i + 1 < args.size()) {
    *value = args[++*i];
    return true;
  }
  return false;
}

bool Is(const std::string& a, const std::string& name) {
  return a == name || a.compare(0, name.size() + 1, name + "=") == 0;
}

}  // namespace

std::string CudaVersionText(int v) {
  if (v <= 0) return "N/A";
  return std::to_string(v / 1000) + "." + std::to_string((v % 1000) / 10);
}

ParseResult ParseArgs(const std::vector<std::string>& args) {
  ParseResult r;
  Options o;
  std::optional<Mode> mode;
  std::string mode_opt;
  std::optional<std::string> format;
  std::string fields_text;
  auto fail = [&](std::string text) {
    r.error = std::move(text);
    r.exit_code = kExitBadArgs;
    return r;
  };
  auto set_mode = [&](Mode m, const std::string& opt) {
    if (mode && *mode != m) return false;
    mode = m;
    mode_opt = opt;
    return true;
  };
  // Help wins over everything else on the line, as in nvidia-smi.
  for (const std::string& a : args) {
    if (a == "-h" || a == "--help") {
      o.mode = Mode::kHelp;
      r.options = o;
      return r;
    }
  }
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    std::string value;
    if (a == "-L" || a == "--list-gpus") {
      if (!set_mode(Mode::kList, a)) return fail(Unsupported(a + " with " + mode_opt));
    } else if (a == "-q" || a == "--query") {
      if (!set_mode(Mode::kQuery, a)) return fail(Unsupported(a + " with " + mode_opt));
    } else if (Is(a, "--query-gpu") || Is(a, "--query-compute-apps")) {
      const bool gpu = Is(a, "--query-gpu");
      const std::string name = gpu ? "--query-gpu" : "--query-compute-apps";
      if (!TakeValue(args, &i, name, &value) || value.empty()) {
        return fail("Option \"" + name + "\" needs a list of fields.\n");
      }
      if (!set_mode(gpu ? Mode::kQueryGpu : Mode::kQueryApps, name)) {
        return fail(Unsupported(name + " with " + mode_opt));
      }
      fields_text = value;
    } else if (Is(a, "--format")) {
      if (!TakeValue(args, &i, "--format", &value)) {
        return fail("Option \"--format\" needs a value (csv[,noheader][,nounits]).\n");
      }
      format = value;
    } else if (a == "-i" || Is(a, "--id")) {
      if (a == "-i") {
        if (i + 1 >= args.size()) return fail("Option \"-i\" needs a GPU index or UUID.\n");
        value = args[++i];
      } else if (!TakeValue(args, &i, "--id", &value)) {
        return fail("Option \"--id\" needs a GPU index or UUID.\n");
      }
      o.id = value;
    } else {
      return fail(Unsupported(a));
    }
  }
  o.mode = mode.value_or(Mode::kTable);
  const bool query = o.mode == Mode::kQueryGpu || o.mode == Mode::kQueryApps;
  if (query && !format) {
    return fail("Option \"--format\" is required with \"" + mode_opt +
                "\" (wooly nvidia-smi supports csv[,noheader][,nounits]).\n");
  }
  if (format) {
    if (!query) return fail(Unsupported("--format without --query-gpu/--query-compute-apps"));
    bool csv = false;
    for (const std::string& t : Split(*format, ',')) {
      if (t == "csv") {
        csv = true;
      } else if (t == "noheader") {
        o.header = false;
      } else if (t == "nounits") {
        o.units = false;
      } else {
        return fail("\"" + t + "\" is not a valid format option (csv, noheader, nounits).\n");
      }
    }
    if (!csv) return fail(Unsupported("--format=" + *format + " (only csv)"));
  }
  if (query) {
    for (const std::string& f : Split(fields_text, ',')) {
      const Field* field = o.mode == Mode::kQueryGpu ? FindGpuField(f) : FindAppField(f);
      if (field == nullptr) return fail("Field \"" + f + "\" is not a valid field to query.\n");
      o.fields.push_back(field->name);
    }
  }
  r.options = o;
  return r;
}

std::string Usage() {
  return "wooly nvidia-smi: Wooly's nvidia-smi front-end (not NVIDIA's nvidia-smi).\n"
         "It shows this tenant's view of the GPU as Wooly's NVML library reports it:\n"
         "memory total = the tenant's limit, used = its own allocations, utilization =\n"
         "its measured SM share, processes = its own (docs/nvml.md).\n"
         "\n"
         "Usage: nvidia-smi [options]\n"
         "  (no option)                  the summary table\n"
         "  -L, --list-gpus              one line per GPU with its UUID\n"
         "  -q, --query                  the detailed report (main sections)\n"
         "  --query-gpu=FIELDS           index, name, uuid, pci.bus_id, driver_version,\n"
         "                               memory.total, memory.used, memory.free,\n"
         "                               utilization.gpu, temperature.gpu, power.draw,\n"
         "                               count, timestamp (other nvidia-smi fields: [N/A])\n"
         "  --query-compute-apps=FIELDS  pid, process_name, used_memory, gpu_uuid,\n"
         "                               gpu_name, gpu_bus_id, timestamp\n"
         "  --format=csv[,noheader][,nounits]   required with --query-*\n"
         "  -i, --id=ID                  only the GPU with this index or UUID\n"
         "  -h, --help                   this text\n"
         "Other nvidia-smi options are not supported (exit 2).\n";
}

std::string BaseName(const Snapshot& s, const Gpu& g) {
  const std::string& m = s.marker;
  if (!m.empty() && g.name.size() >= m.size() &&
      g.name.compare(g.name.size() - m.size(), m.size(), m) == 0) {
    return g.name.substr(0, g.name.size() - m.size());
  }
  return g.name;
}

std::string HeaderLine(const Snapshot& s) {
  std::string what = s.gpus.empty() ? std::string("no GPU") : BaseName(s, s.gpus[0]);
  if (s.gpus.size() > 1) what += " and " + std::to_string(s.gpus.size() - 1) + " more";
  if (!s.wooly) return "NVML view of " + what + " (not Wooly's NVML library: plain NVML figures)";
  std::string line = "Wooly view of " + what;
  if (!s.tenant.empty()) line += " (tenant " + s.tenant + ")";
  return line;
}

bool SelectGpus(const Snapshot& s, const std::optional<std::string>& id, std::vector<Gpu>* out) {
  out->clear();
  for (const Gpu& g : s.gpus) {
    if (!id || *id == std::to_string(g.index) || *id == g.uuid ||
        (!g.bus_id.empty() && *id == g.bus_id)) {
      out->push_back(g);
    }
  }
  return !out->empty() || (!id && s.gpus.empty());
}

std::string FormatTable(const Snapshot& s, const std::vector<Gpu>& gpus) {
  std::string t;
  if (!s.timestamp.empty()) t += s.timestamp + "\n";
  t += HeaderLine(s) + "\n";
  t += Rule('-', false);
  const std::string title = s.wooly ? "WOOLY-SMI (nvidia-smi front-end)" : "WOOLY-SMI (plain NVML)";
  std::string top = " " + Cell(title, 34, false) + "Driver Version: " +
                    Cell(s.driver_version.empty() ? "N/A" : s.driver_version, 15, false) +
                    "CUDA Version: " + CudaVersionText(s.cuda_version);
  t += Row1(top);
  t += Rule('-', true);
  t += Row3(Cell(" GPU  Name", kC1, false), Cell(" Bus-Id", kC2, false),
            Cell("GPU-Util ", kC3, true));
  t += Row3(Cell(" Temp   Pwr:Usage", kC1, false), Cell("Memory-Usage ", kC2, true),
            Cell("", kC3, false));
  t += Rule('=', true);
  for (size_t i = 0; i < gpus.size(); ++i) {
    const Gpu& g = gpus[i];
    std::string idx = std::to_string(g.index);
    t += Row3(Cell(" " + Cell(idx, 3, true) + "  " + g.name, kC1, false),
              Cell(" " + (g.bus_id.empty() ? std::string("N/A") : g.bus_id), kC2, false),
              Cell(Opt(g.utilization_gpu, "%") + " ", kC3, true));
    std::string temp = g.temperature_c ? std::to_string(*g.temperature_c) + "C" : "N/A";
    std::string pwr = g.power_mw ? std::to_string(*g.power_mw / 1000) + "W" : "N/A";
    std::string mem = (g.memory_used ? Mib(*g.memory_used) + "MiB" : std::string("N/A")) + " / " +
                      Cell(g.memory_total ? Mib(*g.memory_total) + "MiB" : "N/A", 9, true);
    t += Row3(Cell(" " + Cell(temp, 4, true) + "   " + pwr, kC1, false), Cell(mem + " ", kC2, true),
              Cell("", kC3, false));
    t += Rule('-', true);
  }
  if (s.wooly) {
    t += "  Memory: the tenant's limit (total) and its own use; GPU-Util: its measured SM share.\n";
  }
  t += "\n";
  t += Rule('-', false);
  t += Row1(s.wooly ? " Processes (this tenant's):" : " Processes:");
  t += Row1("  GPU        PID   Type   Process name" + std::string(40, ' ') + "GPU Memory");
  t += Row1(std::string(78, ' ') + "Usage");
  t += Rule('=', false);
  bool any = false;
  for (const Gpu& g : gpus) {
    if (!g.processes_known) {
      t += Row1("  " + Cell(std::to_string(g.index), 3, true) + "  process list not available");
      any = true;
      continue;
    }
    for (const Process& p : g.processes) {
      std::string used = p.used_bytes ? Mib(*p.used_bytes) + "MiB" : "N/A";
      t += Row1("  " + Cell(std::to_string(g.index), 3, true) + " " +
                Cell(std::to_string(p.pid), 10, true) + "      C   " +
                Cell(p.name.empty() ? "N/A" : p.name, 49, false) + Cell(used, 13, true));
      any = true;
    }
  }
  if (!any) t += Row1("  No running processes found");
  t += Rule('-', false);
  return t;
}

std::string FormatList(const std::vector<Gpu>& gpus) {
  std::string t;
  for (const Gpu& g : gpus) {
    t += "GPU " + std::to_string(g.index) + ": " + g.name + " (UUID: " + g.uuid + ")\n";
  }
  return t;
}

std::string FormatQueryGpu(const Snapshot& s, const std::vector<Gpu>& gpus, const Options& o) {
  std::string t;
  if (o.header) t += HeaderRow(o.fields, o, FindGpuField);
  for (const Gpu& g : gpus) {
    for (size_t i = 0; i < o.fields.size(); ++i) {
      const Field* f = FindGpuField(o.fields[i]);
      if (i > 0) t += ", ";
      t += WithUnit(GpuValue(s, g, s.gpus.size(), o.fields[i]), f->unit, o.units);
    }
    t += "\n";
  }
  return t;
}

std::string FormatQueryApps(const Snapshot& s, const std::vector<Gpu>& gpus, const Options& o) {
  std::string t;
  if (o.header) t += HeaderRow(o.fields, o, FindAppField);
  for (const Gpu& g : gpus) {
    for (const Process& p : g.processes) {
      for (size_t i = 0; i < o.fields.size(); ++i) {
        const Field* f = FindAppField(o.fields[i]);
        if (i > 0) t += ", ";
        t += WithUnit(AppValue(&s, g, p, o.fields[i]), f->unit, o.units);
      }
      t += "\n";
    }
  }
  return t;
}

std::string FormatQuery(const Snapshot& s, const std::vector<Gpu>& gpus) {
  auto kv = [](int indent, const std::string& k, const std::string& v) {
    std::string key = std::string(indent, ' ') + k;
    return Cell(key, 42, false) + ": " + v + "\n";
  };
  auto mib = [](const std::optional<uint64_t>& b) { return b ? Mib(*b) + " MiB" : "N/A"; };
  std::string t = "\n==============NVSMI LOG==============\n\n";
  t += HeaderLine(s) + "\n";
  if (s.wooly) t += "(Wooly's nvidia-smi front-end: the tenant's view, see docs/nvml.md)\n";
  t += "\n";
  t += kv(0, "Timestamp", s.timestamp.empty() ? "N/A" : s.timestamp);
  t += kv(0, "Driver Version", s.driver_version.empty() ? "N/A" : s.driver_version);
  t += kv(0, "CUDA Version", CudaVersionText(s.cuda_version));
  t += "\n";
  t += kv(0, "Attached GPUs", std::to_string(s.gpus.size()));
  for (const Gpu& g : gpus) {
    t += "GPU " + (g.bus_id.empty() ? std::to_string(g.index) : g.bus_id) + "\n";
    t += kv(4, "Product Name", g.name);
    t += kv(4, "GPU UUID", g.uuid.empty() ? "N/A" : g.uuid);
    t += "    FB Memory Usage\n";
    t += kv(8, "Total", mib(g.memory_total));
    t += kv(8, "Used", mib(g.memory_used));
    t += kv(8, "Free", mib(g.memory_free));
    t += "    Utilization\n";
    t += kv(8, "Gpu", g.utilization_gpu ? std::to_string(*g.utilization_gpu) + " %" : "N/A");
    t += kv(8, "Memory", "N/A");
    t += "    Temperature\n";
    t += kv(8, "GPU Current Temp",
            g.temperature_c ? std::to_string(*g.temperature_c) + " C" : "N/A");
    t += "    Power Readings\n";
    t += kv(8, "Power Draw", g.power_mw ? PowerWatts(*g.power_mw) + " W" : "N/A");
    if (!g.processes_known) {
      t += kv(4, "Processes", "N/A");
    } else if (g.processes.empty()) {
      t += kv(4, "Processes", "None");
    } else {
      t += "    Processes\n";
      for (const Process& p : g.processes) {
        t += kv(8, "Process ID", std::to_string(p.pid));
        t += kv(12, "Type", "C");
        t += kv(12, "Name", p.name.empty() ? "N/A" : p.name);
        t += kv(12, "Used GPU Memory", mib(p.used_bytes));
      }
    }
    t += "\n";
  }
  return t;
}

}  // namespace wooly::smi
