#include <gmock/gmock.h>
#include <google/protobuf/util/json_util.h>
#include <google/protobuf/util/message_differencer.h>
#include <gtest/gtest.h>

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
  wooly::v1::ClientInfo* b = st.add_clients();
  b->set_client_id(12);
  b->set_pid(7);
  b->set_name("eval \"quoted\"\n");
  b->set_priority(4);
  b->set_bytes_allocated(512);
  b->set_streams(0);
  b->set_modules(10);
  b->set_transport("tcp");
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
  EXPECT_EQ(table,
            "ID   PID  NAME            PRIORITY  ALLOCATED  STREAMS  MODULES  TRANSPORT\n"
            " 1  4242  train.py               0   1.00 GiB        2        3  unix\n"
            "12     7  eval \"quoted\"?         4      512 B        0       10  tcp\n");
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

}  // namespace
}  // namespace wooly::cli
