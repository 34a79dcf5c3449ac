#include <gmock/gmock.h>
#include <google/protobuf/util/json_util.h>
#include <google/protobuf/util/message_differencer.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <utility>

#include "wooly/cli/format.h"

namespace wooly::cli {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

wooly::v1::StatusReply SampleStatus() {
  wooly::v1::StatusReply st;
  st.set_server_version("0.1.0");
  st.set_protocol_version(1);
  st.set_backend("cuda");
  st.set_gpu_name("NVIDIA H100 80GB HBM3");
  st.set_gpu_uuid("GPU-0a1b2c3d");
  st.set_total_memory_bytes(80ull << 30);
  st.set_used_memory_bytes(3ull << 29);  // 1.5 GiB
  st.set_free_memory_bytes((80ull << 30) - (3ull << 29));
  st.set_uptime_seconds(3723);
  st.add_listen_addresses("unix:/run/wooly/woolyd.sock");
  st.add_listen_addresses("tcp:0.0.0.0:7070");
  wooly::v1::ClientInfo* a = st.add_clients();
  a->set_client_id(1);
  a->set_pid(4242);
  a->set_name("train.py");
  a->set_priority(0);
  a->set_bytes_allocated(1ull << 30);
  a->set_streams(2);
  a->set_modules(3);
  a->set_transport("unix");
  a->set_connected_unix_seconds(1700000000);
  a->set_kernels_launched(123456);
  a->set_pod("trainer-0");
  a->set_pod_namespace("ml");
  a->set_tenant("ml/trainer-0");
  a->set_memory_limit_bytes(4ull << 30);
  a->set_weight(2);
  a->set_sm_floor(0.2);
  a->set_sm_cap(1);
  a->set_target_share(0.7);
  a->set_measured_share(0.6831);
  a->set_measured_share_recent(0.7);
  a->set_busy_seconds(83.5);
  a->set_queue_depth(3);
  wooly::v1::ClientInfo* b = st.add_clients();
  b->set_client_id(12);
  b->set_pid(7);
  b->set_name("eval \"quoted\"\n");
  b->set_priority(4);
  b->set_bytes_allocated(512);
  b->set_streams(0);
  b->set_modules(10);
  b->set_transport("tcp");
  b->set_tenant("pidns:4026531836");
  b->set_weight(0.5);
  b->set_sm_cap(0.125);
  b->set_target_share(0.3);
  b->set_measured_share(0.29);
  b->set_busy_seconds(1.234);
  return st;
}

TEST(CliFormat, Bytes) {
  EXPECT_EQ(FormatBytes(0), "0 B");
  EXPECT_EQ(FormatBytes(1023), "1023 B");
  EXPECT_EQ(FormatBytes(1024), "1.00 KiB");
  EXPECT_EQ(FormatBytes(1536), "1.50 KiB");
  EXPECT_EQ(FormatBytes(12ull << 20), "12.00 MiB");
  EXPECT_EQ(FormatBytes(3ull << 29), "1.50 GiB");
  EXPECT_EQ(FormatBytes(85899345920ull), "80.00 GiB");
  EXPECT_EQ(FormatBytes(1ull << 40), "1.00 TiB");
  // Just under a unit boundary rounds up into the next unit, not "1024.00".
  EXPECT_EQ(FormatBytes((1ull << 30) - 1), "1.00 GiB");
  EXPECT_EQ(FormatBytes(UINT64_MAX), "16.00 EiB");
}

TEST(CliFormat, Duration) {
  EXPECT_EQ(FormatDuration(0), "0s");
  EXPECT_EQ(FormatDuration(-5), "0s");
  EXPECT_EQ(FormatDuration(59), "59s");
  EXPECT_EQ(FormatDuration(63), "1m 03s");
  EXPECT_EQ(FormatDuration(3723), "1h 02m 03s");
  EXPECT_EQ(FormatDuration(4 * 86400 + 5 * 3600 + 6 * 60 + 7), "4d 05h 06m");
}

TEST(CliFormat, Sanitize) {
  EXPECT_EQ(Sanitize("plain", 32), "plain");
  EXPECT_EQ(Sanitize("a\nb\tc\x1b[31m", 32), "a?b?c?[31m");
  EXPECT_EQ(Sanitize("abcdefghij", 8), "abcde...");
  // Never cuts a UTF-8 sequence in half ("é" is two bytes).
  EXPECT_EQ(Sanitize("abcd\xc3\xa9xyz", 8), "abcd...");
}

TEST(CliFormat, ClientsTable) {
  const std::string table = RenderClientsTable(SampleStatus().clients());
  EXPECT_EQ(
      table,
      "ID   PID  NAME            PRIORITY  ALLOCATED  STREAMS  MODULES  TRANSPORT  TENANT"
      "            TARGET  MEASURED\n"
      " 1  4242  train.py               0   1.00 GiB        2        3  unix       ml/trainer-0"
      "       70.0%     68.3%\n"
      "12     7  eval \"quoted\"?         4      512 B        0       10  tcp        "
      "pidns:4026531836   30.0%     29.0%\n");
}

TEST(CliFormat, EmptyClientsTable) { EXPECT_EQ(RenderClientsTable({}), "No clients connected.\n"); }

TEST(CliFormat, ClientWithoutNameShowsDash) {
  wooly::v1::StatusReply st;
  st.add_clients()->set_client_id(3);
  EXPECT_THAT(RenderClientsTable(st.clients()), HasSubstr(" 3    0  -            0"));
}

TEST(CliFormat, StatusText) {
  const std::string text = RenderStatus(SampleStatus());
  EXPECT_EQ(text.substr(0, text.find("\n\n") + 2),
            "Server:    woolyd 0.1.0\n"
            "Protocol:  1\n"
            "Backend:   cuda\n"
            "GPU:       NVIDIA H100 80GB HBM3 (GPU-0a1b2c3d)\n"
            "Memory:    80.00 GiB total, 1.50 GiB used, 78.50 GiB free\n"
            "Uptime:    1h 02m 03s\n"
            "Listening: unix:/run/wooly/woolyd.sock\n"
            "           tcp:0.0.0.0:7070\n"
            "Clients:   2\n"
            "\n");
  EXPECT_THAT(text, HasSubstr("ID   PID  NAME"));
  EXPECT_THAT(text, Not(HasSubstr(" \n")));  // no trailing blanks
}

TEST(CliFormat, JsonQuote) {
  EXPECT_EQ(JsonQuote("a\"b\\c\n\x01"), "\"a\\\"b\\\\c\\n\\u0001\"");
  EXPECT_EQ(JsonQuote("caf\xc3\xa9"), "\"caf\xc3\xa9\"");
}

TEST(CliFormat, StatusJsonHasStableFieldNamesAndNumbers) {
  const std::string json = StatusToJson(SampleStatus());
  EXPECT_THAT(json, HasSubstr("\"server_version\": \"0.1.0\""));
  EXPECT_THAT(json, HasSubstr("\"protocol_version\": 1,"));
  EXPECT_THAT(json, HasSubstr("\"total_memory_bytes\": 85899345920,"));
  EXPECT_THAT(json, HasSubstr("\"listen_addresses\": [\"unix:/run/wooly/woolyd.sock\", "
                              "\"tcp:0.0.0.0:7070\"]"));
  EXPECT_THAT(json, HasSubstr("\"bytes_allocated\": 1073741824,"));
  EXPECT_THAT(json, HasSubstr("\"name\": \"eval \\\"quoted\\\"\\n\""));
  EXPECT_EQ(json.back(), '\n');
}

// The JSON is the proto's own JSON mapping (field names, values): parsing it
// back with protobuf gives the same message.
TEST(CliFormat, StatusJsonRoundTripsThroughProtobuf) {
  const wooly::v1::StatusReply st = SampleStatus();
  wooly::v1::StatusReply parsed;
  google::protobuf::util::JsonParseOptions opts;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(StatusToJson(st), &parsed, opts).ok());
  EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(st, parsed))
      << parsed.DebugString();
}

TEST(CliFormat, EmptyStatusJsonIsComplete) {
  const std::string json = StatusToJson(wooly::v1::StatusReply());
  // Every field is present even at its default, so scripts need no defaults.
  for (const char* f : {"server_version", "protocol_version", "backend", "gpu_name", "gpu_uuid",
                        "total_memory_bytes", "used_memory_bytes", "free_memory_bytes",
                        "uptime_seconds", "listen_addresses", "clients"}) {
    EXPECT_THAT(json, HasSubstr(std::string("\"") + f + "\": ")) << f;
  }
  EXPECT_THAT(json, HasSubstr("\"clients\": []"));
}

TEST(CliFormat, ClientsJsonRoundTrips) {
  wooly::v1::ListClientsReply reply;
  *reply.mutable_clients() = SampleStatus().clients();
  const std::string json = ClientsToJson(reply);
  EXPECT_EQ(json.rfind("{\n  \"clients\": [\n    {\n      \"client_id\": 1,", 0), 0u) << json;
  wooly::v1::ListClientsReply parsed;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(json, &parsed).ok());
  EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(reply, parsed));
  EXPECT_EQ(ClientsToJson({}), "{\n  \"clients\": []\n}\n");
}

TEST(CliFormat, ClientsTableShowsLostContexts) {
  wooly::v1::StatusReply st = SampleStatus();
  st.mutable_clients(1)->set_context_lost(true);
  const std::string table = RenderClientsTable(st.clients());
  EXPECT_THAT(table, HasSubstr("MEASURED  CONTEXT\n"));
  EXPECT_THAT(table, HasSubstr("68.3%  ok\n"));
  EXPECT_THAT(table, HasSubstr("29.0%  lost\n"));
}

TEST(CliFormat, Shares) {
  EXPECT_EQ(FormatShare(0), "0.0%");
  EXPECT_EQ(FormatShare(0.305), "30.5%");
  EXPECT_EQ(FormatShare(1), "100.0%");
  EXPECT_EQ(FormatShare(-0.1), "0.0%");
  EXPECT_EQ(FormatShare(std::nan("")), "0.0%");
  EXPECT_EQ(FormatPolicyShare(0.2), "20%");
  EXPECT_EQ(FormatPolicyShare(0.125), "12.5%");
  EXPECT_EQ(FormatPolicyShare(0.3333), "33.33%");
  EXPECT_EQ(FormatPolicyShare(1), "100%");
  EXPECT_EQ(FormatPolicyShare(0), "0%");
}

TEST(CliFormat, WeightsAndGpuTime) {
  EXPECT_EQ(FormatWeight(1), "1");
  EXPECT_EQ(FormatWeight(0.5), "0.5");
  EXPECT_EQ(FormatWeight(2.25), "2.25");
  EXPECT_EQ(FormatGpuTime(0), "0.00s");
  EXPECT_EQ(FormatGpuTime(1.234), "1.23s");
  EXPECT_EQ(FormatGpuTime(59.99), "59.99s");
  EXPECT_EQ(FormatGpuTime(59.999), "59s");  // not "60.00s"
  EXPECT_EQ(FormatGpuTime(83.5), "1m 23s");
  EXPECT_EQ(FormatGpuTime(-3), "0.00s");
}

TEST(CliFormat, JsonDoubles) {
  EXPECT_EQ(JsonDouble(0), "0");
  EXPECT_EQ(JsonDouble(1), "1");
  EXPECT_EQ(JsonDouble(0.3), "0.3");
  EXPECT_EQ(JsonDouble(0.6831), "0.6831");
  EXPECT_EQ(JsonDouble(1e-7), "1e-07");
  EXPECT_EQ(JsonDouble(std::nan("")), "null");
  EXPECT_EQ(JsonDouble(HUGE_VAL), "null");
}

TEST(CliFormat, ClientJsonHasTheSchedulerFields) {
  const std::string json = StatusToJson(SampleStatus());
  // The old keys keep their order; the new ones follow context_lost.
  EXPECT_THAT(json, HasSubstr("\"connected_unix_seconds\": 1700000000,\n"
                              "      \"context_lost\": false,\n"
                              "      \"kernels_launched\": 123456,\n"
                              "      \"pod\": \"trainer-0\",\n"
                              "      \"pod_namespace\": \"ml\",\n"
                              "      \"tenant\": \"ml/trainer-0\",\n"
                              "      \"memory_limit_bytes\": 4294967296,\n"
                              "      \"weight\": 2,\n"
                              "      \"sm_floor\": 0.2,\n"
                              "      \"sm_cap\": 1,\n"
                              "      \"target_share\": 0.7,\n"
                              "      \"measured_share\": 0.6831,\n"
                              "      \"busy_seconds\": 83.5,\n"
                              "      \"queue_depth\": 3,\n"
                              "      \"measured_share_recent\": 0.7\n"
                              "    }"));
}

TEST(CliFormat, StatusJsonLineIsOneLineAndRoundTrips) {
  const wooly::v1::StatusReply st = SampleStatus();
  const std::string line = StatusToJsonLine(st);
  ASSERT_FALSE(line.empty());
  EXPECT_EQ(line.back(), '\n');
  EXPECT_EQ(std::count(line.begin(), line.end(), '\n'), 1);
  EXPECT_EQ(line.rfind("{\"server_version\":\"0.1.0\",\"protocol_version\":1,", 0), 0u) << line;
  wooly::v1::StatusReply parsed;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(line, &parsed).ok()) << line;
  EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(st, parsed))
      << parsed.DebugString();
  EXPECT_EQ(StatusToJsonLine(wooly::v1::StatusReply()).find("\"clients\":[]}"),
            StatusToJsonLine(wooly::v1::StatusReply()).size() - 14);
}

TEST(CliFormat, PolicyText) {
  const wooly::v1::StatusReply st = SampleStatus();
  EXPECT_EQ(RenderPolicy(st.clients(0)),
            "Client:    1 (train.py, pid 4242)\n"
            "Tenant:    ml/trainer-0\n"
            "Priority:  0 (0 highest .. 4 lowest)\n"
            "Weight:    2\n"
            "Floor:     20% of the SMs\n"
            "Cap:       none\n");
  EXPECT_EQ(RenderPolicy(st.clients(1)),
            "Client:    12 (eval \"quoted\"?, pid 7)\n"
            "Tenant:    pidns:4026531836\n"
            "Priority:  4 (0 highest .. 4 lowest)\n"
            "Weight:    0.5\n"
            "Floor:     none\n"
            "Cap:       12.5% of the SMs\n");
}

TEST(CliFormat, PolicyJsonRoundTrips) {
  wooly::v1::SetPolicyReply reply;
  *reply.mutable_client() = SampleStatus().clients(0);
  const std::string json = PolicyToJson(reply);
  EXPECT_EQ(json.rfind("{\n  \"client\": {\n    \"client_id\": 1,\n", 0), 0u) << json;
  EXPECT_EQ(json.back(), '\n');
  wooly::v1::SetPolicyReply parsed;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(json, &parsed).ok()) << json;
  EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(reply, parsed));
}

TEST(CliFormat, TopScreen) {
  TopView view;
  view.interval_seconds = 0.5;
  view.clock = "12:04:05";
  EXPECT_EQ(RenderTop(SampleStatus(), view),
            "woolyd 0.1.0 on NVIDIA H100 80GB HBM3 (cuda), up 1h 02m 03s; every 0.5s; 12:04:05\n"
            "Memory: 1.50 GiB used of 80.00 GiB; clients: 2; SM share: 100.0% target, 97.3% "
            "measured\n"
            "\n"
            "ID  NAME            TENANT            PRI  WEIGHT  FLOOR/CAP  TARGET  MEASURED  "
            "GPU-TIME  QUEUE    MEMORY     LIMIT  TRANSPORT\n"
            " 1  train.py        ml/trainer-0        0       2      20%/-   70.0%     68.3%    "
            "1m 23s      3  1.00 GiB  4.00 GiB  unix\n"
            "12  eval \"quoted\"?  pidns:4026531836    4     0.5    -/12.5%   30.0%     29.0%     "
            "1.23s      0     512 B         -  tcp\n");
}

TEST(CliFormat, TopOrdersByPriorityThenId) {
  wooly::v1::StatusReply st;
  for (auto [id, priority] : {std::pair{9, 2}, std::pair{3, 4}, std::pair{5, 2}, std::pair{8, 0}}) {
    wooly::v1::ClientInfo* c = st.add_clients();
    c->set_client_id(id);
    c->set_priority(priority);
    c->set_name("c" + std::to_string(id));
  }
  const std::string screen = RenderTop(st, TopView{});
  const size_t c8 = screen.find(" c8 "), c5 = screen.find(" c5 "), c9 = screen.find(" c9 "),
               c3 = screen.find(" c3 ");
  ASSERT_NE(c3, std::string::npos) << screen;
  EXPECT_LT(c8, c5);
  EXPECT_LT(c5, c9);
  EXPECT_LT(c9, c3);
  // No clock: the header has none; no trailing blanks anywhere.
  EXPECT_THAT(screen, HasSubstr("every 1s\n"));
  EXPECT_THAT(screen, Not(HasSubstr(" \n")));
}

TEST(CliFormat, TopWithoutClients) {
  wooly::v1::StatusReply st;
  st.set_server_version("0.1.0");
  st.set_backend("fake");
  st.set_gpu_name("Fake GPU");
  EXPECT_EQ(RenderTop(st, TopView{}),
            "woolyd 0.1.0 on Fake GPU (fake), up 0s; every 1s\n"
            "Memory: 0 B used of 0 B; clients: 0; SM share: 0.0% target, 0.0% measured\n"
            "\n"
            "No clients connected.\n");
}

TEST(CliFormat, FitWidth) {
  EXPECT_EQ(FitWidth("abcdef\nab\n", 0), "abcdef\nab\n");
  EXPECT_EQ(FitWidth("abcdef\nab\n", 4), "abcd\nab\n");
  EXPECT_EQ(FitWidth("abcdef", 3), "abc");
  EXPECT_EQ(FitWidth("\n\n", 3), "\n\n");
  // Never splits "é" (two bytes).
  EXPECT_EQ(FitWidth("ab\xc3\xa9z\n", 3), "ab\n");
}

}  // namespace
}  // namespace wooly::cli
