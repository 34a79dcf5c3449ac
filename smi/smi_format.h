// wooly-smi: Wooly's nvidia-smi front-end (docs/nvml.md, "nvidia-smi").
//
// This header holds the pure part: the data one run shows (a Snapshot,
// filled from NVML by nvml_source.h), the parsing of the command line, and
// the formatting of every output. Nothing here touches NVML or the
// environment, so the unit tests drive it with fake data.
// All functions are thread-compatible (no shared state).
#ifndef WOOLY_SMI_SMI_FORMAT_H_
#define WOOLY_SMI_SMI_FORMAT_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace wooly::smi {

// nvidia-smi's exit codes that wooly-smi mimics.
inline constexpr int kExitOk = 0;
inline constexpr int kExitBadArgs = 2;     // invalid or unsupported argument
inline constexpr int kExitNoGpu = 6;       // -i names no such GPU
inline constexpr int kExitNvmlFailed = 9;  // the library did not initialize

struct Process {
  unsigned int pid = 0;
  std::optional<uint64_t> used_bytes;  // unset: the library did not say
  std::string name;                    // empty: unknown
};

struct Gpu {
  unsigned int index = 0;
  std::string name;  // as NVML reports it (with Wooly's marker)
  std::string uuid;
  std::string bus_id;                                              // empty: unknown
  std::optional<uint64_t> memory_total, memory_used, memory_free;  // bytes
  std::optional<unsigned int> utilization_gpu;                     // percent
  std::optional<unsigned int> temperature_c;
  std::optional<unsigned int> power_mw;
  bool processes_known = false;
  std::vector<Process> processes;
};

struct Snapshot {
  bool wooly = false;           // the library is Wooly's NVML view
  std::string marker;           // the name marker to strip in the header (" (Wooly)")
  std::string tenant;           // WOOLY_TENANT (else POD_NAME); empty: not named
  std::string driver_version;   // empty: unknown
  int cuda_version = 0;         // 13000 for 13.0; 0: unknown
  std::string timestamp;        // "Wed Nov 25 13:58:18 2026"
  std::string query_timestamp;  // "2026/11/25 13:58:18.123" (timestamp field)
  std::vector<Gpu> gpus;
};

enum class Mode { kTable, kList, kQueryGpu, kQueryApps, kQuery, kHelp };

struct Options {
  Mode mode = Mode::kTable;
  std::vector<std::string> fields;  // canonical names, for kQueryGpu/kQueryApps
  bool header = true;
  bool units = true;
  std::optional<std::string> id;  // -i/--id: index or UUID
};

// Either options, or the text to print and the exit status to return.
struct ParseResult {
  std::optional<Options> options;
  std::string error;
  int exit_code = kExitOk;
};

// args excludes argv[0].
ParseResult ParseArgs(const std::vector<std::string>& args);

std::string Usage();

// "NVIDIA H100 80GB HBM3 (Wooly)" without the marker.
std::string BaseName(const Snapshot& s, const Gpu& g);
// "Wooly view of NVIDIA H100 80GB HBM3 (tenant a)".
std::string HeaderLine(const Snapshot& s);

// The GPUs -i selects (all when unset); false when it names none.
bool SelectGpus(const Snapshot& s, const std::optional<std::string>& id, std::vector<Gpu>* out);

std::string FormatTable(const Snapshot& s, const std::vector<Gpu>& gpus);
std::string FormatList(const std::vector<Gpu>& gpus);
std::string FormatQueryGpu(const Snapshot& s, const std::vector<Gpu>& gpus, const Options& o);
std::string FormatQueryApps(const Snapshot& s, const std::vector<Gpu>& gpus, const Options& o);
std::string FormatQuery(const Snapshot& s, const std::vector<Gpu>& gpus);

// "13.0" for 13000, "N/A" for 0.
std::string CudaVersionText(int v);

}  // namespace wooly::smi

#endif  // WOOLY_SMI_SMI_FORMAT_H_
