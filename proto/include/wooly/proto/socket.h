// Blocking stream-socket helpers for the framed protocol (wire.h): address
// parsing, connect/listen for unix and TCP sockets, and whole-frame I/O.
// No dependencies beyond libc, so the client library can use them.
// Thread safety: the functions are reentrant; a file descriptor must not be
// written (or read) by two threads at once.
#ifndef WOOLY_PROTO_SOCKET_H_
#define WOOLY_PROTO_SOCKET_H_

#include <cstdint>
#include <string>
#include <vector>

#include "wooly/proto/wire.h"

namespace wooly::wire {

// A parsed endpoint: "unix:/run/wooly/woolyd.sock", "/abs/path" (unix),
// "tcp:127.0.0.1:7070" or "127.0.0.1:7070" (TCP).
struct Endpoint {
  bool is_unix = true;
  std::string path;  // unix
  std::string host;  // tcp
  uint16_t port = 0;
};

// Returns false and sets *error for malformed text.
bool ParseEndpoint(const std::string& text, Endpoint* out, std::string* error);
std::string FormatEndpoint(const Endpoint& ep);

// Returns a connected fd, or -1 with *error set. The fd is close-on-exec.
int Connect(const Endpoint& ep, std::string* error);
// Returns a listening fd, or -1 with *error set. For a unix endpoint any
// stale socket file is replaced and the file gets `mode` permissions.
int Listen(const Endpoint& ep, unsigned mode, std::string* error);

// Writes header + body + tail as one frame (writev, restarting on EINTR and
// short writes). Returns false on a broken connection.
bool WriteFrame(int fd, uint16_t op, uint32_t seq, const void* body, size_t body_len,
                const void* tail = nullptr, size_t tail_len = 0);

// Reads exactly n bytes. Returns false on EOF or error.
bool ReadFull(int fd, void* p, size_t n);

// Reads one frame header and checks magic and size limit. Returns false on
// EOF, error, or a malformed header (the peer is then to be dropped).
bool ReadHeader(int fd, FrameHeader* h);

}  // namespace wooly::wire

#endif  // WOOLY_PROTO_SOCKET_H_
