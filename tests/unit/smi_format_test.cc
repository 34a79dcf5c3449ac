// wooly-smi's argument parsing and output formats, with fake snapshots: no
// GPU, no NVML.
#include "smi_format.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace wooly::smi {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

constexpr uint64_t kMiB = 1ull << 20;

Snapshot Fake() {
  Snapshot s;
  s.wooly = true;
  s.marker = " (Wooly)";
  s.tenant = "a";
  s.driver_version = "580.65.06";
  s.cuda_version = 13000;
  s.timestamp = "Wed Nov 25 13:58:18 2026";
  s.query_timestamp = "2026/11/25 13:58:18.123";
  Gpu g;
  g.index = 0;
  g.name = "NVIDIA H100 80GB HBM3 (Wooly)";
  g.uuid = "GPU-12345678-1234-1234-1234-123456789abc";
  g.bus_id = "00000000:19:00.0";
  g.memory_total = 20480 * kMiB;
  g.memory_used = 6144 * kMiB;
  g.memory_free = 14336 * kMiB;
  g.utilization_gpu = 31;
  g.processes_known = true;
  g.processes.push_back({1234, 6144 * kMiB, "python"});
  g.processes.push_back({1300, std::nullopt, ""});
  s.gpus.push_back(g);
  return s;
}

Options Parse(std::vector<std::string> args) {
  ParseResult r = ParseArgs(args);
  EXPECT_TRUE(r.options.has_value()) << r.error;
  return r.options.value_or(Options{});
}

ParseResult ParseBad(std::vector<std::string> args) {
  ParseResult r = ParseArgs(args);
  EXPECT_FALSE(r.options.has_value());
  return r;
}

TEST(SmiArgsTest, ModesAndForms) {
  EXPECT_EQ(Parse({}).mode, Mode::kTable);
  EXPECT_EQ(Parse({"-L"}).mode, Mode::kList);
  EXPECT_EQ(Parse({"--list-gpus"}).mode, Mode::kList);
  EXPECT_EQ(Parse({"-q"}).mode, Mode::kQuery);
  EXPECT_EQ(Parse({"-h"}).mode, Mode::kHelp);
  EXPECT_EQ(Parse({"--help"}).mode, Mode::kHelp);
  EXPECT_EQ(Parse({"-x", "--help"}).mode, Mode::kHelp);  // help wins, like nvidia-smi

  Options o = Parse({"--query-gpu=index,name,memory.used", "--format=csv,noheader,nounits"});
  EXPECT_EQ(o.mode, Mode::kQueryGpu);
  EXPECT_EQ(o.fields, (std::vector<std::string>{"index", "name", "memory.used"}));
  EXPECT_FALSE(o.header);
  EXPECT_FALSE(o.units);

  o = Parse({"--query-gpu", "gpu_name, gpu_uuid", "--format", "csv"});
  EXPECT_EQ(o.fields, (std::vector<std::string>{"name", "uuid"}));  // aliases, blanks
  EXPECT_TRUE(o.header);
  EXPECT_TRUE(o.units);

  o = Parse({"--query-compute-apps=pid,process_name,used_memory", "--format=csv", "-i", "0"});
  EXPECT_EQ(o.mode, Mode::kQueryApps);
  EXPECT_EQ(o.fields, (std::vector<std::string>{"pid", "process_name", "used_gpu_memory"}));
  EXPECT_EQ(o.id, "0");
  EXPECT_EQ(Parse({"--id=GPU-1"}).id, "GPU-1");
}

TEST(SmiArgsTest, Errors) {
  ParseResult r = ParseBad({"--query-gpu=index,x", "--format=csv"});
  EXPECT_EQ(r.exit_code, kExitBadArgs);
  EXPECT_EQ(r.error, "Field \"x\" is not a valid field to query.\n");

  r = ParseBad({"-x"});
  EXPECT_EQ(r.exit_code, kExitBadArgs);
  EXPECT_EQ(r.error,
            "wooly nvidia-smi: option -x is not supported (Wooly shows the tenant's view; see "
            "docs/nvml.md)\n");
  EXPECT_THAT(ParseBad({"-pm", "1"}).error, HasSubstr("option -pm is not supported"));
  EXPECT_THAT(ParseBad({"--query-gpu=index"}).error, HasSubstr("\"--format\" is required"));
  EXPECT_THAT(ParseBad({"--query-gpu=index", "--format=json"}).error,
              HasSubstr("\"json\" is not a valid format option"));
  EXPECT_THAT(ParseBad({"--query-gpu=index", "--format=noheader"}).error,
              HasSubstr("not supported"));
  EXPECT_THAT(ParseBad({"-L", "-q"}).error, HasSubstr("not supported"));
  EXPECT_THAT(ParseBad({"--format=csv"}).error, HasSubstr("not supported"));
  EXPECT_EQ(ParseBad({"-i"}).exit_code, kExitBadArgs);
  EXPECT_EQ(ParseBad({"--query-compute-apps=pid,memory.used", "--format=csv"}).error,
            "Field \"memory.used\" is not a valid field to query.\n");
}

TEST(SmiFormatTest, HeaderLineSaysWoolyView) {
  Snapshot s = Fake();
  EXPECT_EQ(HeaderLine(s), "Wooly view of NVIDIA H100 80GB HBM3 (tenant a)");
  s.tenant.clear();
  EXPECT_EQ(HeaderLine(s), "Wooly view of NVIDIA H100 80GB HBM3");
  s.marker.clear();  // WOOLY_NVML_MARKER= : the name has no marker to strip
  s.gpus[0].name = "NVIDIA H100 80GB HBM3";
  EXPECT_EQ(HeaderLine(s), "Wooly view of NVIDIA H100 80GB HBM3");
  s.wooly = false;
  EXPECT_THAT(HeaderLine(s), StartsWith("NVML view of NVIDIA H100 80GB HBM3 (not Wooly"));
}

TEST(SmiFormatTest, List) {
  Snapshot s = Fake();
  EXPECT_EQ(FormatList(s.gpus),
            "GPU 0: NVIDIA H100 80GB HBM3 (Wooly) (UUID: "
            "GPU-12345678-1234-1234-1234-123456789abc)\n");
}

TEST(SmiFormatTest, QueryGpuCsv) {
  Snapshot s = Fake();
  Options o =
      Parse({"--query-gpu=index,name,uuid,driver_version,memory.total,memory.used,"
             "memory.free,utilization.gpu,count",
             "--format=csv"});
  EXPECT_EQ(FormatQueryGpu(s, s.gpus, o),
            "index, name, uuid, driver_version, memory.total [MiB], memory.used [MiB], "
            "memory.free [MiB], utilization.gpu [%], count\n"
            "0, NVIDIA H100 80GB HBM3 (Wooly), GPU-12345678-1234-1234-1234-123456789abc, "
            "580.65.06, 20480 MiB, 6144 MiB, 14336 MiB, 31 %, 1\n");
  o = Parse(
      {"--query-gpu=memory.total,memory.used,utilization.gpu", "--format=csv,noheader,nounits"});
  EXPECT_EQ(FormatQueryGpu(s, s.gpus, o), "20480, 6144, 31\n");
  o = Parse({"--query-gpu=memory.used", "--format=csv,noheader"});
  EXPECT_EQ(FormatQueryGpu(s, s.gpus, o), "6144 MiB\n");
}

TEST(SmiFormatTest, QueryGpuUnansweredFieldsAreNA) {
  Snapshot s = Fake();
  Options o = Parse(
      {"--query-gpu=index,temperature.gpu,power.draw,pstate,utilization.memory", "--format=csv"});
  EXPECT_EQ(FormatQueryGpu(s, s.gpus, o),
            "index, temperature.gpu, power.draw [W], pstate, utilization.memory [%]\n"
            "0, [N/A], [N/A], [N/A], [N/A]\n");
  s.gpus[0].temperature_c = 34;
  s.gpus[0].power_mw = 69630;
  o = Parse({"--query-gpu=temperature.gpu,power.draw", "--format=csv,noheader"});
  EXPECT_EQ(FormatQueryGpu(s, s.gpus, o), "34, 69.63 W\n");
  s.gpus[0].memory_total.reset();
  o = Parse({"--query-gpu=memory.total", "--format=csv,noheader"});
  EXPECT_EQ(FormatQueryGpu(s, s.gpus, o), "[N/A]\n");
}

TEST(SmiFormatTest, QueryComputeApps) {
  Snapshot s = Fake();
  Options o = Parse({"--query-compute-apps=pid,process_name,used_memory", "--format=csv"});
  EXPECT_EQ(FormatQueryApps(s, s.gpus, o),
            "pid, process_name, used_gpu_memory [MiB]\n"
            "1234, python, 6144 MiB\n"
            "1300, [N/A], [N/A]\n");
  o = Parse({"--query-compute-apps=pid,gpu_uuid,used_gpu_memory", "--format=csv,noheader,nounits"});
  EXPECT_EQ(FormatQueryApps(s, s.gpus, o),
            "1234, GPU-12345678-1234-1234-1234-123456789abc, 6144\n"
            "1300, GPU-12345678-1234-1234-1234-123456789abc, [N/A]\n");
  s.gpus[0].processes.clear();
  o = Parse({"--query-compute-apps=pid", "--format=csv"});
  EXPECT_EQ(FormatQueryApps(s, s.gpus, o), "pid\n");
}

TEST(SmiFormatTest, TableHasTheFamiliarParts) {
  Snapshot s = Fake();
  const std::string t = FormatTable(s, s.gpus);
  EXPECT_THAT(t, StartsWith("Wed Nov 25 13:58:18 2026\n"
                            "Wooly view of NVIDIA H100 80GB HBM3 (tenant a)\n+---"));
  EXPECT_THAT(t, HasSubstr("Driver Version: 580.65.06"));
  EXPECT_THAT(t, HasSubstr("CUDA Version: 13.0"));
  EXPECT_THAT(t, HasSubstr("NVIDIA H100 80GB HBM3 (Wooly)"));
  EXPECT_THAT(t, HasSubstr("6144MiB /  20480MiB"));
  EXPECT_THAT(t, HasSubstr("31% |"));
  EXPECT_THAT(t, HasSubstr("Processes (this tenant's):"));
  EXPECT_THAT(t, HasSubstr("1234      C   python"));
  EXPECT_THAT(t, HasSubstr("6144MiB |"));
  // Every line of the boxes is equally wide.
  size_t pos = 0;
  while ((pos = t.find('\n', pos)) != std::string::npos) {
    const size_t next = t.find('\n', pos + 1);
    if (next == std::string::npos) break;
    const std::string line = t.substr(pos + 1, next - pos - 1);
    if (!line.empty() && (line[0] == '|' || line[0] == '+')) {
      EXPECT_EQ(line.size(), 91u) << line;
    }
    pos = next;
  }

  s.gpus[0].processes.clear();
  EXPECT_THAT(FormatTable(s, s.gpus), HasSubstr("No running processes found"));
  s.gpus[0].name = std::string(120, 'N');  // cut to fit, the box stays intact
  EXPECT_THAT(FormatTable(s, s.gpus), HasSubstr("NNN..."));
}

TEST(SmiFormatTest, DetailedQuery) {
  Snapshot s = Fake();
  const std::string q = FormatQuery(s, s.gpus);
  EXPECT_THAT(q, HasSubstr("==============NVSMI LOG=============="));
  EXPECT_THAT(q, HasSubstr("Wooly view of NVIDIA H100 80GB HBM3 (tenant a)"));
  EXPECT_THAT(q, HasSubstr("Driver Version                            : 580.65.06\n"));
  EXPECT_THAT(
      q, HasSubstr("    Product Name                          : NVIDIA H100 80GB HBM3 (Wooly)\n"));
  EXPECT_THAT(q, HasSubstr("GPU UUID                              : GPU-12345678"));
  EXPECT_THAT(q, HasSubstr("        Total                             : 20480 MiB\n"));
  EXPECT_THAT(q, HasSubstr("        Used                              : 6144 MiB\n"));
  EXPECT_THAT(q, HasSubstr("        Gpu                               : 31 %\n"));
  EXPECT_THAT(q, HasSubstr("        Process ID                        : 1234\n"));
  EXPECT_THAT(q, HasSubstr("            Used GPU Memory               : 6144 MiB\n"));
}

TEST(SmiFormatTest, SelectGpus) {
  Snapshot s = Fake();
  std::vector<Gpu> out;
  EXPECT_TRUE(SelectGpus(s, std::nullopt, &out));
  EXPECT_EQ(out.size(), 1u);
  EXPECT_TRUE(SelectGpus(s, "0", &out));
  EXPECT_TRUE(SelectGpus(s, "GPU-12345678-1234-1234-1234-123456789abc", &out));
  EXPECT_FALSE(SelectGpus(s, "1", &out));
  EXPECT_TRUE(out.empty());
}

TEST(SmiFormatTest, CudaVersionText) {
  EXPECT_EQ(CudaVersionText(13000), "13.0");
  EXPECT_EQ(CudaVersionText(12080), "12.8");
  EXPECT_EQ(CudaVersionText(0), "N/A");
}

}  // namespace
}  // namespace wooly::smi
