// The client-side objects behind CUgraph, CUgraphNode and CUgraphExec (see
// objects.h for the tag scheme).
//
// Ownership: a Graph owns its GraphNode objects (one per server node id,
// created the first time the node is reported and kept until the graph is
// destroyed), so the same CUgraphNode comes back for the same node. A
// GraphExec owns nothing client-side. Graphs and execs are not owned by a
// context: CUDA lets them outlive the context they were made in.
// Thread safety: ids and types are immutable; a Graph's node map and a
// node's parameter storage are guarded by their mutexes.
#ifndef WOOLY_CLIENT_GRAPH_OBJECTS_H_
#define WOOLY_CLIENT_GRAPH_OBJECTS_H_

#include <cstdint>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "objects.h"

namespace wooly::client {

inline constexpr Tag kGraphTag = static_cast<Tag>(0x46524757);      // "WGRF"
inline constexpr Tag kGraphNodeTag = static_cast<Tag>(0x444e4757);  // "WGND"
inline constexpr Tag kGraphExecTag = static_cast<Tag>(0x58454757);  // "WGEX"

struct Graph;

struct GraphNode : Object {
  GraphNode() : Object(kGraphNodeTag) {}
  uint64_t id = 0;
  Graph* graph = nullptr;
  uint32_t type = 0;  // CUgraphNodeType
  // What cuGraphKernelNodeGetParams last returned points here; valid until
  // the next call for this node or the graph's destruction.
  std::mutex mu;
  std::vector<uint64_t> param_storage;  // guarded by mu
  std::vector<void*> param_pointers;    // guarded by mu
};

struct Graph : Object {
  Graph() : Object(kGraphTag) {}
  uint64_t id = 0;
  std::mutex mu;
  std::unordered_map<uint64_t, GraphNode*> nodes;  // by server id; guarded by mu
};

struct GraphExec : Object {
  GraphExec() : Object(kGraphExecTag) {}
  uint64_t id = 0;
};

inline Graph* AsGraph(CUgraph h) { return As<Graph>(h, kGraphTag); }
inline GraphNode* AsGraphNode(CUgraphNode h) { return As<GraphNode>(h, kGraphNodeTag); }
inline GraphExec* AsGraphExec(CUgraphExec h) { return As<GraphExec>(h, kGraphExecTag); }

}  // namespace wooly::client

#endif  // WOOLY_CLIENT_GRAPH_OBJECTS_H_
