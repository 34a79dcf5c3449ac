// What a ClientSession keeps for CUDA graphs and stream capture, and the
// list of its graph ops; the handlers are in session_graphs.cc.
//
// Ownership: every graph, executable graph and node id resolves only in the
// session that issued it (ids are server-wide unique). A node id belongs to
// one graph and goes away with it. When the client disconnects, its open
// captures are ended (their graphs destroyed) before its streams are
// synchronized, and its executable graphs and graphs are destroyed after.
//
// Capture: the session begins every capture in relaxed mode on its own
// backend stream (see gpu_backend.h); the origin streams of the captures in
// progress are recorded so that cleanup can end them and so that the
// legacy-stream emulation never orders a capturing stream with an event
// (which would pull foreign work into the capture).
//
// Thread safety: guarded by the owning session's mutex.
#ifndef WOOLY_SERVER_SESSION_GRAPHS_H_
#define WOOLY_SERVER_SESSION_GRAPHS_H_

#include <cstdint>
#include <map>

#include "wooly/proto/wire_graph.h"
#include "wooly/server/gpu_backend.h"

namespace wooly::server {

// The session's graph ops, for the dispatcher and the handler declarations.
#define WOOLY_SESSION_GRAPH_OPS(X)   \
  X(StreamBeginCapture)              \
  X(StreamEndCapture)                \
  X(StreamGetCaptureInfo)            \
  X(StreamUpdateCaptureDependencies) \
  X(GraphCreate)                     \
  X(GraphDestroy)                    \
  X(GraphInstantiate)                \
  X(GraphExecDestroy)                \
  X(GraphLaunch)                     \
  X(GraphUpload)                     \
  X(GraphGetNodes)                   \
  X(GraphNodeGetDependencies)        \
  X(GraphKernelNodeGetParams)        \
  X(GraphKernelNodeSetParams)        \
  X(GraphAddKernelNode)              \
  X(GraphExecKernelNodeSetParams)    \
  X(GraphDebugDotPrint)

struct SessionGraphs {
  struct Graph {
    Handle backend = 0;
    uint64_t capture_stream = 0;          // non-zero while a capture builds it
    std::map<Handle, uint64_t> node_ids;  // backend node -> node id, as handed out
  };
  struct Node {
    Handle backend = 0;
    uint64_t graph = 0;
  };
  struct Exec {
    Handle backend = 0;
    uint64_t graph = 0;  // the graph it was instantiated from
  };

  std::map<uint64_t, Graph> graphs;
  std::map<uint64_t, Node> nodes;
  std::map<uint64_t, Exec> execs;
  // Captures in progress: client stream id of the origin -> graph id.
  std::map<uint64_t, uint64_t> captures;
};

}  // namespace wooly::server

#endif  // WOOLY_SERVER_SESSION_GRAPHS_H_
