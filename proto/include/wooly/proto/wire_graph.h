// Payload pieces of the CUDA graph and stream-capture ops of wire.h (ops
// 140-179). Like wire.h, this has no dependencies beyond the C++ standard
// library (libwooly includes it).
//
// Graphs, graph nodes and executable graphs are opaque 64-bit ids issued by
// the server, like every other handle. A node id names one node of one graph
// and dies with that graph.
#ifndef WOOLY_PROTO_WIRE_GRAPH_H_
#define WOOLY_PROTO_WIRE_GRAPH_H_

#include <cstddef>
#include <cstdint>
#include <vector>

#include "wooly/proto/wire.h"

namespace wooly::wire {

// Most nodes one reply lists; far above what real graphs hold, and it keeps
// a malformed count from making the reader allocate much.
inline constexpr uint32_t kMaxGraphNodesPerList = 1u << 20;

// A kernel node's parameters: (u64 function_or_kernel, u32 grid[3],
// u32 block[3], u32 shared_bytes, bytes args). `function` is the id the
// client got from ModuleGetFunction, LibraryGetKernel or KernelGetFunction;
// `args` is the packed argument buffer laid out by its ParamLayout, as for
// kLaunchKernel.
struct KernelNodeParams {
  uint64_t function = 0;
  uint32_t grid[3] = {1, 1, 1};
  uint32_t block[3] = {1, 1, 1};
  uint32_t shared_bytes = 0;
  std::vector<uint8_t> args;
};

inline void PutKernelNodeParams(Writer& w, const KernelNodeParams& p) {
  w.Put<uint64_t>(p.function);
  for (uint32_t g : p.grid) w.Put<uint32_t>(g);
  for (uint32_t b : p.block) w.Put<uint32_t>(b);
  w.Put<uint32_t>(p.shared_bytes);
  w.PutBytes(p.args.data(), p.args.size());
}

inline KernelNodeParams GetKernelNodeParams(Reader& r) {
  KernelNodeParams p;
  p.function = r.Get<uint64_t>();
  for (uint32_t& g : p.grid) g = r.Get<uint32_t>();
  for (uint32_t& b : p.block) b = r.Get<uint32_t>();
  p.shared_bytes = r.Get<uint32_t>();
  uint64_t n = 0;
  const uint8_t* args = r.GetBytes(&n);
  if (r.ok() && n > 0) p.args.assign(args, args + n);
  return p;
}

// One entry of a node list: the node's id and its CUgraphNodeType.
struct GraphNodeRef {
  uint64_t node = 0;
  uint32_t type = 0;
};

// A node list: (u32 n, n * (u64 node, u32 type)).
inline void PutNodeList(Writer& w, const std::vector<GraphNodeRef>& nodes) {
  w.Put<uint32_t>(static_cast<uint32_t>(nodes.size()));
  for (const GraphNodeRef& n : nodes) w.Put<uint64_t>(n.node).Put<uint32_t>(n.type);
}

inline std::vector<GraphNodeRef> GetNodeList(Reader& r) {
  const uint32_t n = r.Get<uint32_t>();
  std::vector<GraphNodeRef> out;
  if (!r.ok() || n > kMaxGraphNodesPerList || n > r.remaining() / 12) {
    r.Fail();
    return out;
  }
  out.resize(n);
  for (GraphNodeRef& g : out) {
    g.node = r.Get<uint64_t>();
    g.type = r.Get<uint32_t>();
  }
  return out;
}

// A list of node ids: (u32 n, n * u64 node).
inline void PutNodeIds(Writer& w, const std::vector<uint64_t>& ids) {
  w.Put<uint32_t>(static_cast<uint32_t>(ids.size()));
  for (uint64_t id : ids) w.Put<uint64_t>(id);
}

inline std::vector<uint64_t> GetNodeIds(Reader& r) {
  const uint32_t n = r.Get<uint32_t>();
  std::vector<uint64_t> out;
  if (!r.ok() || n > kMaxGraphNodesPerList || n > r.remaining() / 8) {
    r.Fail();
    return out;
  }
  out.resize(n);
  for (uint64_t& id : out) id = r.Get<uint64_t>();
  return out;
}

}  // namespace wooly::wire

#endif  // WOOLY_PROTO_WIRE_GRAPH_H_
