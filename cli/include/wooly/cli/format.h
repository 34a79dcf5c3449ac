// Human-readable and JSON renderings of woolyd's admin replies. Pure
// functions of their inputs, so tests can check the exact text.
//
// JSON field names are the proto field names of wooly/v1/admin.proto
// (snake_case) and are part of wooly-cli's interface: scripts may rely on
// them. Integers are JSON numbers (byte counts stay below 2^53, so they are
// exact in every JSON reader). See cli/README.md for the full shape.
#ifndef WOOLY_CLI_FORMAT_H_
#define WOOLY_CLI_FORMAT_H_

#include <cstdint>
#include <string>

#include "wooly/v1/admin.pb.h"

namespace wooly::cli {

// "512 B", "1.50 KiB", "12.00 MiB", "79.11 GiB", "1.20 TiB" (binary units,
// two decimals above bytes).
std::string FormatBytes(uint64_t bytes);

// "42s", "5m 03s", "2h 05m 09s", "3d 04h 12m". Negative input reads as 0s.
std::string FormatDuration(int64_t seconds);

// Makes client-supplied text safe for a terminal: control characters become
// '?', and text longer than `max_len` is cut with "...".
std::string Sanitize(const std::string& text, size_t max_len);

// A share (a fraction of the GPU's SMs) as a percentage with one decimal:
// 0.305 -> "30.5%". Non-finite or negative input reads as 0.
std::string FormatShare(double fraction);

// A floor or cap as written in a policy: 0.2 -> "20%", 0.125 -> "12.5%"
// (at most two decimals, trailing zeros dropped).
std::string FormatPolicyShare(double fraction);

// A weight: 1 -> "1", 0.5 -> "0.5", 2.25 -> "2.25" (up to 6 significant
// digits).
std::string FormatWeight(double weight);

// GPU busy time: "0.00s", "12.34s" below a minute, else as FormatDuration.
std::string FormatGpuTime(double seconds);

// The clients table: a header row ID PID NAME PRIORITY ALLOCATED STREAMS
// MODULES TRANSPORT TENANT TARGET MEASURED, then one row per client; numbers
// right-aligned, columns two spaces apart, no trailing spaces. TARGET and
// MEASURED are the scheduler's SM shares. A CONTEXT column follows when a
// client lost its context. "No clients connected.\n" when empty.
std::string RenderClientsTable(
    const google::protobuf::RepeatedPtrField<wooly::v1::ClientInfo>& clients);

// The full `status` text: a "Key: value" block, a blank line, the table.
std::string RenderStatus(const wooly::v1::StatusReply& status);

// `status --json` and `clients --json`: pretty-printed JSON, newline-ended.
std::string StatusToJson(const wooly::v1::StatusReply& status);
std::string ClientsToJson(const wooly::v1::ListClientsReply& reply);
// `top --json`: StatusToJson's object on one line (JSON Lines), newline-ended.
std::string StatusToJsonLine(const wooly::v1::StatusReply& status);

// `policy`: the client's resulting policy as a "Key: value" block (floor and
// cap "none" when unset), and `policy --json`: {"client": {...}} with the
// client object of `clients --json`.
std::string RenderPolicy(const wooly::v1::ClientInfo& client);
std::string PolicyToJson(const wooly::v1::SetPolicyReply& reply);

// What `top` shows besides the server's reply.
struct TopView {
  double interval_seconds = 1.0;
  std::string clock;  // local wall time, e.g. "12:04:05"; empty: not shown
};

// One `top` screen: two summary lines (server, GPU, memory, summed shares), a
// blank line, then a table with one row per client ordered by priority, then
// client id: ID NAME TENANT PRI WEIGHT FLOOR/CAP TARGET MEASURED GPU-TIME
// QUEUE MEMORY LIMIT TRANSPORT. FLOOR/CAP and LIMIT show "-" when unset.
std::string RenderTop(const wooly::v1::StatusReply& status, const TopView& view);

// Cuts every line of `text` to at most `width` bytes (0: no limit), never in
// the middle of a UTF-8 sequence; for redrawing a terminal without wrapping.
std::string FitWidth(const std::string& text, size_t width);

// A JSON number for a double: the shortest text that reads back as the same
// value ("0.3", "1", "1e-07"); "null" when it is not finite.
std::string JsonDouble(double v);

// A JSON string literal (with quotes) for UTF-8 text.
std::string JsonQuote(const std::string& text);

}  // namespace wooly::cli

#endif  // WOOLY_CLI_FORMAT_H_
