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

// The clients table: a header row ID PID NAME PRIORITY ALLOCATED STREAMS
// MODULES TRANSPORT, then one row per client; numbers right-aligned, columns
// two spaces apart, no trailing spaces. "No clients connected.\n" when empty.
std::string RenderClientsTable(
    const google::protobuf::RepeatedPtrField<wooly::v1::ClientInfo>& clients);

// The full `status` text: a "Key: value" block, a blank line, the table.
std::string RenderStatus(const wooly::v1::StatusReply& status);

// `status --json` and `clients --json`: pretty-printed JSON, newline-ended.
std::string StatusToJson(const wooly::v1::StatusReply& status);
std::string ClientsToJson(const wooly::v1::ListClientsReply& reply);

// A JSON string literal (with quotes) for UTF-8 text.
std::string JsonQuote(const std::string& text);

}  // namespace wooly::cli

#endif  // WOOLY_CLI_FORMAT_H_
