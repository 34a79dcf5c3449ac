// woolyd's Prometheus endpoint: scraped over HTTP and parsed.
#include <httplib.h>

#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "gtest/gtest.h"
#include "server_test_client.h"
#include "wooly/fake/fake_backend.h"
#include "wooly/proto/wire.h"
#include "wooly/server/metrics.h"
#include "wooly/server/server.h"

namespace wooly::server {
namespace {

using wire::Op;
using wooly::testing::TestClient;

struct Sample {
  std::string name;
  std::map<std::string, std::string> labels;
  double value = 0;
};

// Parses the text format strictly enough to catch malformed output: every
// sample line is NAME[{k="v",...}] VALUE, every name was declared by a TYPE
// line first.
std::vector<Sample> Parse(const std::string& text, std::map<std::string, std::string>* types) {
  std::vector<Sample> out;
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    if (absl::StartsWith(line, "# TYPE ")) {
      std::vector<std::string> w = absl::StrSplit(line.substr(7), ' ');
      EXPECT_EQ(w.size(), 2u) << line;
      if (w.size() == 2) (*types)[w[0]] = w[1];
      continue;
    }
    if (absl::StartsWith(line, "# HELP ")) continue;
    Sample s;
    const size_t brace = line.find('{');
    const size_t space = line.rfind(' ');
    EXPECT_NE(space, absl::string_view::npos) << line;
    if (space == absl::string_view::npos) continue;
    s.name = std::string(line.substr(0, std::min(brace, space)));
    if (brace != absl::string_view::npos) {
      const size_t close = line.rfind('}');
      EXPECT_NE(close, absl::string_view::npos) << line;
      for (absl::string_view kv :
           absl::StrSplit(line.substr(brace + 1, close - brace - 1), "\",", absl::SkipEmpty())) {
        const size_t eq = kv.find("=\"");
        EXPECT_NE(eq, absl::string_view::npos) << line;
        std::string v(kv.substr(eq + 2));
        if (!v.empty() && v.back() == '"') v.pop_back();
        s.labels[std::string(kv.substr(0, eq))] = v;
      }
    }
    const std::string value(line.substr(space + 1));
    EXPECT_TRUE(value == "+Inf" || absl::SimpleAtod(value, &s.value)) << line;
    std::string base = s.name;
    for (const char* suffix : {"_bucket", "_sum", "_count"}) {
      if (absl::EndsWith(base, suffix) &&
          types->count(base.substr(0, base.size() - strlen(suffix)))) {
        base = base.substr(0, base.size() - strlen(suffix));
      }
    }
    EXPECT_TRUE(types->count(base)) << "no TYPE for " << s.name;
    EXPECT_TRUE(absl::StartsWith(s.name, "wooly_")) << s.name;
    out.push_back(std::move(s));
  }
  return out;
}

TEST(ServerMetricsTest, ScrapeShowsTenantsAndLatencies) {
  fake::FakeKernel noop;
  noop.name = "wooly_metrics_noop";
  noop.run = [](const fake::FakeLaunch&) { return absl::OkStatus(); };
  fake::RegisterFakeKernel(noop);

  const std::string dir = testing::MakeTempDir();
  ASSERT_FALSE(dir.empty());
  ServerOptions options;
  options.listen = {"unix:" + dir + "/woolyd.sock"};
  options.metrics_address = "127.0.0.1:0";
  absl::StatusOr<std::unique_ptr<Server>> server =
      Server::Start(options, std::make_unique<fake::FakeBackend>());
  ASSERT_TRUE(server.ok()) << server.status();
  const std::string metrics = (*server)->metrics_address();
  ASSERT_FALSE(metrics.empty());

  std::unique_ptr<TestClient> c = TestClient::Connect((*server)->listen_addresses()[0]);
  ASSERT_NE(c, nullptr);
  wire::Writer hello;
  hello.Put<uint32_t>(wire::kProtocolVersion).Put<uint32_t>(4242).Put<int32_t>(1);
  hello.PutStr("metrics \"test\"").PutStr("trainer-0").PutStr("ml");
  hello.Put<uint32_t>(2);
  hello.PutStr("WOOLY_TENANT").PutStr("team-a");
  hello.PutStr("WOOLY_MEMORY_LIMIT").PutStr("1GiB");
  ASSERT_EQ(c->Code(Op::kHello, hello), CUDA_SUCCESS);
  // A second client without a tenant name or a memory limit.
  std::unique_ptr<TestClient> other = TestClient::Connect((*server)->listen_addresses()[0]);
  ASSERT_NE(other, nullptr);
  ASSERT_EQ(other->Hello("other", 3), CUDA_SUCCESS);
  uint64_t module = 0, fn = 0, d = 0;
  ASSERT_EQ(c->LoadModule(fake::MakeFakeModuleImage({"wooly_metrics_noop"}), &module),
            CUDA_SUCCESS);
  ASSERT_EQ(c->GetFunction(module, "wooly_metrics_noop", &fn), CUDA_SUCCESS);
  ASSERT_EQ(c->MemAlloc(4096, &d), CUDA_SUCCESS);
  for (int i = 0; i < 3; ++i) ASSERT_EQ(c->Launch(fn, 1, 1, {}), CUDA_SUCCESS);

  const size_t colon = metrics.rfind(':');
  httplib::Client http(metrics.substr(0, colon), std::stoi(metrics.substr(colon + 1)));
  httplib::Result res = http.Get("/metrics");
  ASSERT_TRUE(res) << "scrape failed";
  EXPECT_EQ(res->status, 200);
  EXPECT_NE(res->get_header_value("Content-Type").find("text/plain"), std::string::npos);

  std::map<std::string, std::string> types;
  const std::vector<Sample> samples = Parse(res->body, &types);
  EXPECT_EQ(types["wooly_command_latency_seconds"], "histogram");
  EXPECT_EQ(types["wooly_tenant_kernels_launched_total"], "counter");
  std::map<std::string, const Sample*> tenant;
  std::map<std::string, const Sample*> other_tenant;
  double buckets_prev = -1, inf_bucket = -1, count = -1, clients = -1;
  for (const Sample& s : samples) {
    if (s.name == "wooly_clients_connected") clients = s.value;
    if (s.labels.count("client") && s.labels.at("client") == "other") {
      other_tenant[s.name] = &s;
    } else if (s.labels.count("client")) {
      tenant[s.name] = &s;
    }
    if (s.name == "wooly_command_latency_seconds_bucket") {
      EXPECT_GE(s.value, buckets_prev) << "buckets must be cumulative";
      buckets_prev = s.value;
      if (s.labels.at("le") == "+Inf") inf_bucket = s.value;
    }
    if (s.name == "wooly_command_latency_seconds_count") count = s.value;
  }
  EXPECT_EQ(clients, 2);
  EXPECT_EQ(inf_bucket, count);
  EXPECT_GE(count, 7);  // hello, load, function, alloc, 3 launches
  ASSERT_TRUE(tenant.count("wooly_tenant_kernels_launched_total"));
  const Sample& k = *tenant["wooly_tenant_kernels_launched_total"];
  EXPECT_EQ(k.value, 3);
  // The quotes in the client's name are escaped.
  EXPECT_NE(res->body.find("client=\"metrics \\\"test\\\"\""), std::string::npos);
  EXPECT_EQ(k.labels.at("pid"), "4242");
  EXPECT_EQ(k.labels.at("pod"), "trainer-0");
  EXPECT_EQ(k.labels.at("namespace"), "ml");
  ASSERT_TRUE(tenant.count("wooly_tenant_memory_allocated_bytes"));
  EXPECT_EQ(tenant["wooly_tenant_memory_allocated_bytes"]->value, 4096);

  // The scheduler's series: the usual labels plus the tenant.
  EXPECT_EQ(types["wooly_tenant_priority"], "gauge");
  EXPECT_EQ(types["wooly_tenant_sm_share_target_ratio"], "gauge");
  EXPECT_EQ(types["wooly_tenant_sm_share_measured_ratio"], "gauge");
  EXPECT_EQ(types["wooly_tenant_gpu_busy_seconds_total"], "counter");
  EXPECT_EQ(types["wooly_tenant_queue_depth"], "gauge");
  EXPECT_EQ(types["wooly_tenant_memory_limit_bytes"], "gauge");
  for (const char* name :
       {"wooly_tenant_priority", "wooly_tenant_sm_share_target_ratio",
        "wooly_tenant_sm_share_measured_ratio", "wooly_tenant_gpu_busy_seconds_total",
        "wooly_tenant_queue_depth", "wooly_tenant_memory_limit_bytes"}) {
    ASSERT_TRUE(tenant.count(name)) << name;
    const Sample& m = *tenant[name];
    EXPECT_EQ(m.labels.at("tenant"), "team-a") << name;
    EXPECT_EQ(m.labels.at("pid"), "4242") << name;
    EXPECT_EQ(m.labels.at("pod"), "trainer-0") << name;
    EXPECT_EQ(m.labels.at("namespace"), "ml") << name;
    EXPECT_EQ(m.labels.at("client_id"), k.labels.at("client_id")) << name;
    EXPECT_GE(m.value, 0) << name;
  }
  EXPECT_EQ(tenant["wooly_tenant_priority"]->value, 1);
  EXPECT_LE(tenant["wooly_tenant_sm_share_target_ratio"]->value, 1);
  EXPECT_LE(tenant["wooly_tenant_sm_share_measured_ratio"]->value, 1);
  EXPECT_EQ(tenant["wooly_tenant_memory_limit_bytes"]->value, 1ull << 30);
  // A tenant without a limit has no limit series; the others it has.
  EXPECT_EQ(other_tenant.count("wooly_tenant_memory_limit_bytes"), 0u);
  ASSERT_TRUE(other_tenant.count("wooly_tenant_priority"));
  EXPECT_EQ(other_tenant["wooly_tenant_priority"]->value, 3);
  EXPECT_NE(other_tenant["wooly_tenant_priority"]->labels.at("tenant"), "team-a");
  EXPECT_TRUE(other_tenant.count("wooly_tenant_sm_share_target_ratio"));

  // A runtime policy change shows in the next scrape.
  ASSERT_TRUE(
      (*server)->SetClientPolicy(std::stoull(k.labels.at("client_id")), "priority=0", false).ok());
  res = http.Get("/metrics");
  ASSERT_TRUE(res) << "scrape failed";
  types.clear();
  bool saw_new_priority = false;
  for (const Sample& s : Parse(res->body, &types)) {
    if (s.name == "wooly_tenant_priority" && s.labels.at("tenant") == "team-a") {
      EXPECT_EQ(s.value, 0);
      saw_new_priority = true;
    }
  }
  EXPECT_TRUE(saw_new_priority);

  c.reset();
  other.reset();
  server->reset();
  std::error_code ignored;
  std::filesystem::remove_all(dir, ignored);
}

// Without clients every family is still declared (the dashboard check relies
// on it), and none has samples.
TEST(ServerMetricsTest, FamiliesAreDeclaredWithoutClients) {
  StatusSnapshot snapshot;
  std::map<std::string, std::string> types;
  const std::vector<Sample> samples = Parse(RenderMetrics(snapshot, {}), &types);
  for (const char* name :
       {"wooly_tenant_priority", "wooly_tenant_sm_share_target_ratio",
        "wooly_tenant_sm_share_measured_ratio", "wooly_tenant_gpu_busy_seconds_total",
        "wooly_tenant_queue_depth", "wooly_tenant_memory_limit_bytes"}) {
    EXPECT_TRUE(types.count(name)) << name;
    for (const Sample& s : samples) EXPECT_NE(s.name, name);
  }
}

// Label values are escaped, and shares render as plain numbers.
TEST(ServerMetricsTest, SchedulerSeriesValues) {
  StatusSnapshot snapshot;
  ClientStatus c;
  c.client_id = 7;
  c.pid = 99;
  c.name = "decode";
  c.tenant = "ns/pod \"a\"";
  c.priority = 0;
  c.target_share = 0.3;
  c.measured_share = 0.25;
  c.busy_seconds = 12.5;
  c.queue_depth = 4;
  c.memory_limit = 2048;
  snapshot.clients.push_back(c);
  const std::string text = RenderMetrics(snapshot, {});
  EXPECT_NE(text.find("wooly_tenant_sm_share_target_ratio{client=\"decode\",client_id=\"7\","
                      "pid=\"99\",pod=\"\",namespace=\"\",tenant=\"ns/pod \\\"a\\\"\"} "),
            std::string::npos)
      << text;
  std::map<std::string, std::string> types;
  std::map<std::string, double> value;
  for (const Sample& s : Parse(text, &types)) value[s.name] = s.value;
  EXPECT_EQ(value["wooly_tenant_sm_share_target_ratio"], 0.3);
  EXPECT_EQ(value["wooly_tenant_sm_share_measured_ratio"], 0.25);
  EXPECT_EQ(value["wooly_tenant_gpu_busy_seconds_total"], 12.5);
  EXPECT_EQ(value["wooly_tenant_queue_depth"], 4);
  EXPECT_EQ(value["wooly_tenant_memory_limit_bytes"], 2048);
  EXPECT_EQ(value["wooly_tenant_priority"], 0);
}

TEST(ServerMetricsTest, BadAddressIsRefused) {
  EXPECT_FALSE(MetricsServer::Start("no-port", [] { return std::string(); }).ok());
  EXPECT_FALSE(MetricsServer::Start("127.0.0.1:99999", [] { return std::string(); }).ok());
}

}  // namespace
}  // namespace wooly::server
