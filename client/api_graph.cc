// CUDA graphs and stream capture (docs/graphs.md). Capture status, capture
// ids and the capture modes are answered locally from the capture registry
// (capture.h); beginning and ending captures and every graph call go to
// woolyd, which runs the real capture on its own stream.
#include <cstdio>
#include <cstring>
#include <unordered_map>
#include <vector>

#include "api.h"
#include "capture.h"
#include "driver.h"
#include "graph_objects.h"
#include "log.h"
#include "param_pack.h"
#include "resources.h"
#include "wooly/proto/wire_graph.h"

namespace wooly::client {
namespace {

// --- graph objects

// Graph objects of captures in progress that cuStreamGetCaptureInfo handed
// out, by server graph id, so that cuStreamEndCapture returns the same one.
struct CaptureGraphs {
  std::mutex mu;
  std::unordered_map<uint64_t, Graph*> graphs;
};
CaptureGraphs& PendingGraphs() {
  static CaptureGraphs* g = new CaptureGraphs();  // never destroyed: see driver.h
  return *g;
}

Graph* NewGraph(uint64_t id) {
  Graph* g = new Graph();
  g->id = id;
  return g;
}

void DestroyGraphObject(Graph* g) {
  {
    std::lock_guard<std::mutex> l(g->mu);
    for (auto& [id, n] : g->nodes) Destroy(n);
    g->nodes.clear();
  }
  Destroy(g);
}

// The Graph object of a capture's graph, created on first use.
Graph* PendingGraph(uint64_t id) {
  CaptureGraphs& p = PendingGraphs();
  std::lock_guard<std::mutex> l(p.mu);
  Graph*& g = p.graphs[id];
  if (g == nullptr) g = NewGraph(id);
  return g;
}

// Removes and returns a capture's Graph object (nullptr if none was made).
Graph* TakePendingGraph(uint64_t id) {
  CaptureGraphs& p = PendingGraphs();
  std::lock_guard<std::mutex> l(p.mu);
  auto it = p.graphs.find(id);
  if (it == p.graphs.end()) return nullptr;
  Graph* g = it->second;
  p.graphs.erase(it);
  return g;
}

// The node object of a server node of `g`.
GraphNode* NodeFor(Graph* g, const wire::GraphNodeRef& ref) {
  std::lock_guard<std::mutex> l(g->mu);
  GraphNode*& n = g->nodes[ref.node];
  if (n == nullptr) {
    n = new GraphNode();
    n->id = ref.node;
    n->graph = g;
    n->type = ref.type;
  }
  return n;
}

// Node lists are returned through arrays that stay valid until the calling
// thread's next such call.
thread_local std::vector<CUgraphNode> t_node_list;
thread_local std::vector<CUgraphEdgeData> t_edge_list;

// Copies a node list into the application's (nodes, count) pair with the
// driver's rules: a null array asks for the count; otherwise up to *count
// entries are filled, the rest of the array is nulled, and *count becomes
// the number filled.
void FillNodeArray(const std::vector<GraphNode*>& list, CUgraphNode* nodes, CUgraphEdgeData* edges,
                   size_t* count) {
  if (nodes == nullptr) {
    *count = list.size();
    return;
  }
  const size_t n = std::min(*count, list.size());
  for (size_t i = 0; i < *count; ++i) {
    nodes[i] = i < n ? reinterpret_cast<CUgraphNode>(list[i]) : nullptr;
    if (edges != nullptr) std::memset(&edges[i], 0, sizeof(edges[i]));
  }
  *count = n;
}

CUresult SendId(wire::Op op, uint64_t id) {
  wire::Writer w;
  w.Put<uint64_t>(id);
  return Rpc(op, w);
}

// Reads a NodeList reply into node objects of `g`.
CUresult ReadNodes(const Reply& reply, wire::Op op, Graph* g, std::vector<GraphNode*>* out) {
  wire::Reader rd = reply.reader();
  const std::vector<wire::GraphNodeRef> refs = wire::GetNodeList(rd);
  if (!rd.ok()) return BadReply(op);
  out->clear();
  for (const wire::GraphNodeRef& r : refs) out->push_back(NodeFor(g, r));
  return CUDA_SUCCESS;
}

bool IsLegacyHandle(CUstream h, bool ptds) {
  return h == CU_STREAM_LEGACY || (h == nullptr && !ptds);
}

bool ValidMode(int mode) {
  return mode == CU_STREAM_CAPTURE_MODE_GLOBAL || mode == CU_STREAM_CAPTURE_MODE_THREAD_LOCAL ||
         mode == CU_STREAM_CAPTURE_MODE_RELAXED;
}

// After woolyd answered with a capture error, asks it which captures its
// driver invalidated.
void RefreshIfStale() {
  if (!internal::g_capture_state_stale.exchange(false, std::memory_order_acq_rel)) return;
  for (const CaptureView& v : Captures().InProgress()) {
    if (v.status != CU_STREAM_CAPTURE_STATUS_ACTIVE) continue;
    wire::Writer w;
    w.Put<uint64_t>(v.origin);
    Reply reply;
    if (Rpc(wire::Op::kStreamGetCaptureInfo, w, &reply) != CUDA_SUCCESS) continue;
    wire::Reader rd = reply.reader();
    const uint32_t status = rd.Get<uint32_t>();
    if (rd.ok() && status != CU_STREAM_CAPTURE_STATUS_ACTIVE) Captures().Invalidate(v.id);
  }
}

// --- capture

CUresult BeginCapture(CUstream h, int mode, bool ptds) {
  if (CUresult r = RequireContext(); r != CUDA_SUCCESS) return r;
  if (!ValidMode(mode)) return CUDA_ERROR_INVALID_VALUE;
  // The legacy stream cannot capture (woolyd would capture its stand-in).
  if (IsLegacyHandle(h, ptds)) return CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED;
  uint64_t id = 0;
  if (CUresult r = ResolveStream(h, ptds, &id); r != CUDA_SUCCESS) return r;
  wire::Writer w;
  w.Put<uint64_t>(id).Put<uint32_t>(static_cast<uint32_t>(mode));
  Reply reply;
  if (CUresult r = Rpc(wire::Op::kStreamBeginCapture, w, &reply); r != CUDA_SUCCESS) return r;
  wire::Reader rd = reply.reader();
  const uint64_t graph = rd.Get<uint64_t>();
  if (!rd.ok()) return BadReply(wire::Op::kStreamBeginCapture);
  Captures().Begin(id, StreamHandleIsBlocking(h), static_cast<CUstreamCaptureMode>(mode),
                   ThreadToken(), graph);
  return CUDA_SUCCESS;
}

CUresult EndCapture(CUstream h, CUgraph* out, bool ptds) {
  if (CUresult r = RequireContext(); r != CUDA_SUCCESS) return r;
  if (out == nullptr) return CUDA_ERROR_INVALID_VALUE;
  uint64_t id = 0;
  if (CUresult r = ResolveStream(h, ptds, &id); r != CUDA_SUCCESS) return r;
  const CaptureView v = Captures().Query(id);
  const bool origin = v.status != CU_STREAM_CAPTURE_STATUS_NONE && v.origin == id;
  bool discard = false;
  if (origin) {
    if (v.mode != CU_STREAM_CAPTURE_MODE_RELAXED && v.thread != ThreadToken()) {
      return CUDA_ERROR_STREAM_CAPTURE_WRONG_THREAD;
    }
    discard = v.status == CU_STREAM_CAPTURE_STATUS_INVALIDATED;
  }
  wire::Writer w;
  w.Put<uint64_t>(id).Put<uint8_t>(discard ? 1 : 0);
  Reply reply;
  const CUresult r = Rpc(wire::Op::kStreamEndCapture, w, &reply);
  const bool ended = r == CUDA_SUCCESS || r == CUDA_ERROR_STREAM_CAPTURE_INVALIDATED ||
                     r == CUDA_ERROR_STREAM_CAPTURE_UNJOINED;
  if (origin && ended) Captures().End(v.id);
  if (r != CUDA_SUCCESS) {
    if (origin && ended) {
      if (Graph* g = TakePendingGraph(v.graph)) DestroyGraphObject(g);
      *out = nullptr;
    }
    return r;
  }
  wire::Reader rd = reply.reader();
  const uint64_t graph = rd.Get<uint64_t>();
  if (!rd.ok()) return BadReply(wire::Op::kStreamEndCapture);
  Graph* pending = origin ? TakePendingGraph(v.graph) : nullptr;
  if (discard || graph == 0) {
    if (pending != nullptr) DestroyGraphObject(pending);
    *out = nullptr;
    return CUDA_ERROR_STREAM_CAPTURE_INVALIDATED;
  }
  if (pending != nullptr && pending->id != graph) {
    DestroyGraphObject(pending);
    pending = nullptr;
  }
  *out = reinterpret_cast<CUgraph>(pending != nullptr ? pending : NewGraph(graph));
  return CUDA_SUCCESS;
}

// The capture `h` takes part in, answered locally. Sets *legacy_blocked for
// the legacy stream while a blocking stream captures (IMPLICIT).
CUresult QueryCapture(CUstream h, bool ptds, CaptureView* v, uint64_t* stream_id) {
  if (CUresult r = RequireContext(); r != CUDA_SUCCESS) return r;
  *v = CaptureView();
  if (IsLegacyHandle(h, ptds)) {
    *stream_id = 0;
    if (AnyCaptureInProgress() && Captures().LegacyStreamBlocked()) {
      return CUDA_ERROR_STREAM_CAPTURE_IMPLICIT;
    }
    return CUDA_SUCCESS;
  }
  if (!AnyCaptureInProgress()) {
    // Nothing captures: only the handle needs checking, and the per-thread
    // stream need not be created for that.
    if (h != nullptr && h != CU_STREAM_PER_THREAD && As<Stream>(h, Tag::kStream) == nullptr) {
      return CUDA_ERROR_INVALID_HANDLE;
    }
    *stream_id = 0;
    return CUDA_SUCCESS;
  }
  RefreshIfStale();
  if (CUresult r = ResolveStream(h, ptds, stream_id); r != CUDA_SUCCESS) return r;
  *v = Captures().Query(*stream_id);
  return CUDA_SUCCESS;
}

CUresult IsCapturing(CUstream h, CUstreamCaptureStatus* status, bool ptds) {
  if (status == nullptr) return CUDA_ERROR_INVALID_VALUE;
  CaptureView v;
  uint64_t id = 0;
  if (CUresult r = QueryCapture(h, ptds, &v, &id); r != CUDA_SUCCESS) return r;
  *status = v.status;
  return CUDA_SUCCESS;
}

CUresult GetCaptureInfo(CUstream h, CUstreamCaptureStatus* status, cuuint64_t* id_out,
                        CUgraph* graph_out, const CUgraphNode** deps_out,
                        const CUgraphEdgeData** edges_out, size_t* num_deps_out, bool ptds) {
  if (status == nullptr) return CUDA_ERROR_INVALID_VALUE;
  CaptureView v;
  uint64_t stream = 0;
  if (CUresult r = QueryCapture(h, ptds, &v, &stream); r != CUDA_SUCCESS) return r;
  *status = v.status;
  if (v.status == CU_STREAM_CAPTURE_STATUS_NONE) return CUDA_SUCCESS;
  if (id_out != nullptr) *id_out = v.id;
  if (v.status != CU_STREAM_CAPTURE_STATUS_ACTIVE) return CUDA_SUCCESS;
  if (graph_out != nullptr) *graph_out = reinterpret_cast<CUgraph>(PendingGraph(v.graph));
  if (deps_out == nullptr && num_deps_out == nullptr && edges_out == nullptr) {
    return CUDA_SUCCESS;
  }
  // The stream's current dependencies are the server's to tell.
  wire::Writer w;
  w.Put<uint64_t>(stream);
  Reply reply;
  if (CUresult r = Rpc(wire::Op::kStreamGetCaptureInfo, w, &reply); r != CUDA_SUCCESS) return r;
  wire::Reader rd = reply.reader();
  rd.Get<uint32_t>();
  rd.Get<uint64_t>();
  const std::vector<wire::GraphNodeRef> refs = wire::GetNodeList(rd);
  if (!rd.ok()) return BadReply(wire::Op::kStreamGetCaptureInfo);
  Graph* g = PendingGraph(v.graph);
  t_node_list.clear();
  for (const wire::GraphNodeRef& r : refs) {
    t_node_list.push_back(reinterpret_cast<CUgraphNode>(NodeFor(g, r)));
  }
  t_edge_list.assign(refs.size(), CUgraphEdgeData{});
  if (deps_out != nullptr) *deps_out = t_node_list.empty() ? nullptr : t_node_list.data();
  if (edges_out != nullptr) *edges_out = t_edge_list.empty() ? nullptr : t_edge_list.data();
  if (num_deps_out != nullptr) *num_deps_out = t_node_list.size();
  return CUDA_SUCCESS;
}

CUresult ExchangeMode(CUstreamCaptureMode* mode) {
  if (mode == nullptr || !ValidMode(*mode)) return CUDA_ERROR_INVALID_VALUE;
  const CUstreamCaptureMode previous = ThreadCaptureMode();
  SetThreadCaptureMode(*mode);
  *mode = previous;
  return CUDA_SUCCESS;
}

CUresult UpdateCaptureDependencies(CUstream h, CUgraphNode* deps, const CUgraphEdgeData* edges,
                                   size_t n, unsigned flags, bool ptds) {
  if (CUresult r = RequireContext(); r != CUDA_SUCCESS) return r;
  if (n > 0 && deps == nullptr) return CUDA_ERROR_INVALID_VALUE;
  if (edges != nullptr) {
    const CUgraphEdgeData zero{};
    for (size_t i = 0; i < n; ++i) {
      if (std::memcmp(&edges[i], &zero, sizeof(zero)) != 0) {
        WLOG_WARN("cuStreamUpdateCaptureDependencies_v2: edge data is not supported");
        return CUDA_ERROR_NOT_SUPPORTED;
      }
    }
  }
  uint64_t id = 0;
  if (CUresult r = ResolveStream(h, ptds, &id); r != CUDA_SUCCESS) return r;
  if (CUresult r = CaptureCheckWork(id); r != CUDA_SUCCESS) return r;
  std::vector<uint64_t> ids;
  for (size_t i = 0; i < n; ++i) {
    GraphNode* node = AsGraphNode(deps[i]);
    if (node == nullptr) return CUDA_ERROR_INVALID_VALUE;
    ids.push_back(node->id);
  }
  wire::Writer w;
  w.Put<uint64_t>(id).Put<uint32_t>(flags);
  wire::PutNodeIds(w, ids);
  return Rpc(wire::Op::kStreamUpdateCaptureDependencies, w);
}

// --- graphs

CUresult CreateGraph(CUgraph* out, unsigned flags) {
  if (!Initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  if (out == nullptr) return CUDA_ERROR_INVALID_VALUE;
  wire::Writer w;
  w.Put<uint32_t>(flags);
  Reply reply;
  if (CUresult r = Rpc(wire::Op::kGraphCreate, w, &reply); r != CUDA_SUCCESS) return r;
  wire::Reader rd = reply.reader();
  const uint64_t id = rd.Get<uint64_t>();
  if (!rd.ok()) return BadReply(wire::Op::kGraphCreate);
  *out = reinterpret_cast<CUgraph>(NewGraph(id));
  return CUDA_SUCCESS;
}

CUresult DestroyGraph(CUgraph h) {
  if (!Initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  Graph* g = AsGraph(h);
  if (g == nullptr) return CUDA_ERROR_INVALID_VALUE;
  if (CUresult r = SendId(wire::Op::kGraphDestroy, g->id); r != CUDA_SUCCESS) return r;
  DestroyGraphObject(g);
  return CUDA_SUCCESS;
}

CUresult Upload(GraphExec* e, CUstream h, bool ptds, wire::Op op) {
  uint64_t id = 0;
  if (CUresult r = ResolveStream(h, ptds, &id); r != CUDA_SUCCESS) return r;
  if (CUresult r = CaptureCheckWork(id); r != CUDA_SUCCESS) return r;
  wire::Writer w;
  w.Put<uint64_t>(e->id).Put<uint64_t>(id);
  return op == wire::Op::kGraphLaunch ? Post(op, w) : Rpc(op, w);
}

CUresult Instantiate(CUgraphExec* out, CUgraph h, uint64_t flags) {
  if (!Initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  if (out == nullptr) return CUDA_ERROR_INVALID_VALUE;
  Graph* g = AsGraph(h);
  if (g == nullptr) return CUDA_ERROR_INVALID_VALUE;
  wire::Writer w;
  w.Put<uint64_t>(g->id).Put<uint64_t>(flags);
  Reply reply;
  if (CUresult r = Rpc(wire::Op::kGraphInstantiate, w, &reply); r != CUDA_SUCCESS) return r;
  wire::Reader rd = reply.reader();
  const uint64_t id = rd.Get<uint64_t>();
  if (!rd.ok()) return BadReply(wire::Op::kGraphInstantiate);
  GraphExec* e = new GraphExec();
  e->id = id;
  *out = reinterpret_cast<CUgraphExec>(e);
  return CUDA_SUCCESS;
}

CUresult InstantiateLegacy(CUgraphExec* out, CUgraph h, CUgraphNode* error_node, char* log,
                           size_t log_size) {
  const CUresult r = Instantiate(out, h, 0);
  if (error_node != nullptr) *error_node = nullptr;
  // The instantiation log is the server's; there is nothing to add here.
  if (log != nullptr && log_size > 0) log[0] = '\0';
  return r;
}

CUresult InstantiateWithParams(CUgraphExec* out, CUgraph h, CUDA_GRAPH_INSTANTIATE_PARAMS* params,
                               bool ptds) {
  if (!Initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  if (params == nullptr) return CUDA_ERROR_INVALID_VALUE;
  params->hErrNode_out = nullptr;
  // The upload is a separate request: cuGraphInstantiateWithFlags refuses
  // the flag.
  const bool upload = (params->flags & CUDA_GRAPH_INSTANTIATE_FLAG_UPLOAD) != 0;
  CUresult r = Instantiate(out, h, params->flags & ~uint64_t{CUDA_GRAPH_INSTANTIATE_FLAG_UPLOAD});
  if (r == CUDA_SUCCESS && upload) {
    r = Upload(AsGraphExec(*out), params->hUploadStream, ptds, wire::Op::kGraphUpload);
  }
  params->result_out =
      r == CUDA_SUCCESS ? CUDA_GRAPH_INSTANTIATE_SUCCESS : CUDA_GRAPH_INSTANTIATE_ERROR;
  return r;
}

CUresult DestroyExec(CUgraphExec h) {
  if (!Initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  GraphExec* e = AsGraphExec(h);
  if (e == nullptr) return CUDA_ERROR_INVALID_VALUE;
  if (CUresult r = SendId(wire::Op::kGraphExecDestroy, e->id); r != CUDA_SUCCESS) return r;
  Destroy(e);
  return CUDA_SUCCESS;
}

CUresult LaunchOrUpload(CUgraphExec h, CUstream stream, bool ptds, wire::Op op) {
  if (CUresult r = RequireContext(); r != CUDA_SUCCESS) return r;
  GraphExec* e = AsGraphExec(h);
  if (e == nullptr) return CUDA_ERROR_INVALID_VALUE;
  return Upload(e, stream, ptds, op);
}

CUresult GetNodes(CUgraph h, CUgraphNode* nodes, size_t* count) {
  if (!Initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  Graph* g = AsGraph(h);
  if (g == nullptr || count == nullptr) return CUDA_ERROR_INVALID_VALUE;
  Reply reply;
  if (CUresult r = Rpc(wire::Op::kGraphGetNodes, wire::Writer().Put<uint64_t>(g->id), &reply);
      r != CUDA_SUCCESS) {
    return r;
  }
  std::vector<GraphNode*> list;
  if (CUresult r = ReadNodes(reply, wire::Op::kGraphGetNodes, g, &list); r != CUDA_SUCCESS) {
    return r;
  }
  FillNodeArray(list, nodes, nullptr, count);
  return CUDA_SUCCESS;
}

CUresult NodeType(CUgraphNode h, CUgraphNodeType* type) {
  if (!Initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  GraphNode* n = AsGraphNode(h);
  if (n == nullptr || type == nullptr) return CUDA_ERROR_INVALID_VALUE;
  *type = static_cast<CUgraphNodeType>(n->type);
  return CUDA_SUCCESS;
}

CUresult NodeDependencies(CUgraphNode h, CUgraphNode* deps, CUgraphEdgeData* edges, size_t* count) {
  if (!Initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  GraphNode* n = AsGraphNode(h);
  if (n == nullptr || count == nullptr) return CUDA_ERROR_INVALID_VALUE;
  Reply reply;
  if (CUresult r =
          Rpc(wire::Op::kGraphNodeGetDependencies, wire::Writer().Put<uint64_t>(n->id), &reply);
      r != CUDA_SUCCESS) {
    return r;
  }
  std::vector<GraphNode*> list;
  if (CUresult r = ReadNodes(reply, wire::Op::kGraphNodeGetDependencies, n->graph, &list);
      r != CUDA_SUCCESS) {
    return r;
  }
  FillNodeArray(list, deps, edges, count);
  return CUDA_SUCCESS;
}

// --- kernel nodes (CUDA_KERNEL_NODE_PARAMS v1 and v2 share their leading
// fields; v2 adds the kernel and the context)

template <typename Params>
CUfunction FunctionOf(const Params& p) {
  if constexpr (requires { p.kern; }) {
    if (p.func == nullptr && p.kern != nullptr) return reinterpret_cast<CUfunction>(p.kern);
  }
  return p.func;
}

template <typename Params>
CUresult ToWire(const Params* p, wire::KernelNodeParams* out) {
  if (p == nullptr) return CUDA_ERROR_INVALID_VALUE;
  Callable* c = AsCallable(FunctionOf(*p));
  if (c == nullptr) return CUDA_ERROR_INVALID_VALUE;
  if (CUresult r = PackKernelParams(c->layout, p->kernelParams, p->extra, &out->args);
      r != CUDA_SUCCESS) {
    return r;
  }
  out->function = c->id;
  out->grid[0] = p->gridDimX;
  out->grid[1] = p->gridDimY;
  out->grid[2] = p->gridDimZ;
  out->block[0] = p->blockDimX;
  out->block[1] = p->blockDimY;
  out->block[2] = p->blockDimZ;
  out->shared_bytes = p->sharedMemBytes;
  return CUDA_SUCCESS;
}

template <typename Params>
CUresult KernelNodeGetParams(CUgraphNode h, Params* out) {
  if (!Initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  GraphNode* n = AsGraphNode(h);
  if (n == nullptr || out == nullptr) return CUDA_ERROR_INVALID_VALUE;
  if (n->type != CU_GRAPH_NODE_TYPE_KERNEL) return CUDA_ERROR_INVALID_VALUE;
  Reply reply;
  if (CUresult r =
          Rpc(wire::Op::kGraphKernelNodeGetParams, wire::Writer().Put<uint64_t>(n->id), &reply);
      r != CUDA_SUCCESS) {
    return r;
  }
  wire::Reader rd = reply.reader();
  const wire::KernelNodeParams p = wire::GetKernelNodeParams(rd);
  if (!rd.ok()) return BadReply(wire::Op::kGraphKernelNodeGetParams);
  // The application gets its own function (or kernel) object back.
  Callable* c = FindCallableById(p.function);
  if (c == nullptr) return CUDA_ERROR_INVALID_VALUE;
  std::memset(out, 0, sizeof(*out));
  out->func = reinterpret_cast<CUfunction>(c);
  if constexpr (requires { out->kern; }) {
    Context* ctx = CurrentContext();
    out->ctx = reinterpret_cast<CUcontext>(ctx != nullptr ? ctx : PrimaryContext());
  }
  out->gridDimX = p.grid[0];
  out->gridDimY = p.grid[1];
  out->gridDimZ = p.grid[2];
  out->blockDimX = p.block[0];
  out->blockDimY = p.block[1];
  out->blockDimZ = p.block[2];
  out->sharedMemBytes = p.shared_bytes;
  // kernelParams points at a copy of each argument the node keeps.
  std::lock_guard<std::mutex> l(n->mu);
  n->param_storage.assign((p.args.size() + sizeof(uint64_t) - 1) / sizeof(uint64_t), 0);
  if (!p.args.empty()) std::memcpy(n->param_storage.data(), p.args.data(), p.args.size());
  n->param_pointers.clear();
  auto* base = reinterpret_cast<uint8_t*>(n->param_storage.data());
  for (const wire::ParamInfo& info : c->layout) {
    if (uint64_t{info.offset} + info.size > p.args.size()) {
      return BadReply(wire::Op::kGraphKernelNodeGetParams);
    }
    n->param_pointers.push_back(base + info.offset);
  }
  out->kernelParams = n->param_pointers.empty() ? nullptr : n->param_pointers.data();
  out->extra = nullptr;
  return CUDA_SUCCESS;
}

template <typename Params>
CUresult KernelNodeSetParams(CUgraphNode h, const Params* params) {
  if (!Initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  GraphNode* n = AsGraphNode(h);
  if (n == nullptr) return CUDA_ERROR_INVALID_VALUE;
  if (n->type != CU_GRAPH_NODE_TYPE_KERNEL) return CUDA_ERROR_INVALID_VALUE;
  wire::KernelNodeParams p;
  if (CUresult r = ToWire(params, &p); r != CUDA_SUCCESS) return r;
  wire::Writer w;
  w.Put<uint64_t>(n->id);
  wire::PutKernelNodeParams(w, p);
  return Rpc(wire::Op::kGraphKernelNodeSetParams, w);
}

template <typename Params>
CUresult AddKernelNode(CUgraphNode* out, CUgraph h, const CUgraphNode* deps, size_t n_deps,
                       const Params* params) {
  if (!Initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  Graph* g = AsGraph(h);
  if (out == nullptr || g == nullptr || (n_deps > 0 && deps == nullptr)) {
    return CUDA_ERROR_INVALID_VALUE;
  }
  std::vector<uint64_t> ids;
  for (size_t i = 0; i < n_deps; ++i) {
    GraphNode* d = AsGraphNode(deps[i]);
    if (d == nullptr || d->graph != g) return CUDA_ERROR_INVALID_VALUE;
    ids.push_back(d->id);
  }
  wire::KernelNodeParams p;
  if (CUresult r = ToWire(params, &p); r != CUDA_SUCCESS) return r;
  wire::Writer w;
  w.Put<uint64_t>(g->id);
  wire::PutNodeIds(w, ids);
  wire::PutKernelNodeParams(w, p);
  Reply reply;
  if (CUresult r = Rpc(wire::Op::kGraphAddKernelNode, w, &reply); r != CUDA_SUCCESS) return r;
  wire::Reader rd = reply.reader();
  const uint64_t id = rd.Get<uint64_t>();
  if (!rd.ok()) return BadReply(wire::Op::kGraphAddKernelNode);
  *out =
      reinterpret_cast<CUgraphNode>(NodeFor(g, wire::GraphNodeRef{id, CU_GRAPH_NODE_TYPE_KERNEL}));
  return CUDA_SUCCESS;
}

template <typename Params>
CUresult ExecKernelNodeSetParams(CUgraphExec he, CUgraphNode hn, const Params* params) {
  if (!Initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  GraphExec* e = AsGraphExec(he);
  GraphNode* n = AsGraphNode(hn);
  if (e == nullptr || n == nullptr) return CUDA_ERROR_INVALID_VALUE;
  if (n->type != CU_GRAPH_NODE_TYPE_KERNEL) return CUDA_ERROR_INVALID_VALUE;
  wire::KernelNodeParams p;
  if (CUresult r = ToWire(params, &p); r != CUDA_SUCCESS) return r;
  wire::Writer w;
  w.Put<uint64_t>(e->id).Put<uint64_t>(n->id);
  wire::PutKernelNodeParams(w, p);
  return Rpc(wire::Op::kGraphExecKernelNodeSetParams, w);
}

CUresult DebugDotPrint(CUgraph h, const char* path, unsigned flags) {
  if (!Initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  Graph* g = AsGraph(h);
  if (g == nullptr || path == nullptr) return CUDA_ERROR_INVALID_VALUE;
  wire::Writer w;
  w.Put<uint64_t>(g->id).Put<uint32_t>(flags);
  Reply reply;
  if (CUresult r = Rpc(wire::Op::kGraphDebugDotPrint, w, &reply); r != CUDA_SUCCESS) return r;
  wire::Reader rd = reply.reader();
  const std::string dot = rd.GetStr();
  if (!rd.ok()) return BadReply(wire::Op::kGraphDebugDotPrint);
  // The file is the application's, written where it runs.
  std::FILE* f = std::fopen(path, "w");
  if (f == nullptr) return CUDA_ERROR_OPERATING_SYSTEM;
  const bool ok = std::fwrite(dot.data(), 1, dot.size(), f) == dot.size();
  return std::fclose(f) == 0 && ok ? CUDA_SUCCESS : CUDA_ERROR_OPERATING_SYSTEM;
}

}  // namespace
}  // namespace wooly::client

using namespace wooly::client;  // NOLINT: the C entry points live at global scope
namespace wire = ::wooly::wire;

// --- capture

WOOLY_EXPORT CUresult CUDAAPI cuStreamBeginCapture(CUstream hStream) {
  WOOLY_API_BODY(return BeginCapture(hStream, CU_STREAM_CAPTURE_MODE_GLOBAL, false););
}
WOOLY_EXPORT CUresult CUDAAPI cuStreamBeginCapture_ptsz(CUstream hStream) {
  WOOLY_API_BODY(return BeginCapture(hStream, CU_STREAM_CAPTURE_MODE_GLOBAL, true););
}
WOOLY_EXPORT CUresult CUDAAPI cuStreamBeginCapture_v2(CUstream hStream, CUstreamCaptureMode mode) {
  WOOLY_API_BODY(return BeginCapture(hStream, mode, false););
}
WOOLY_EXPORT CUresult CUDAAPI cuStreamBeginCapture_v2_ptsz(CUstream hStream,
                                                           CUstreamCaptureMode mode) {
  WOOLY_API_BODY(return BeginCapture(hStream, mode, true););
}
WOOLY_EXPORT CUresult CUDAAPI cuStreamEndCapture(CUstream hStream, CUgraph* phGraph) {
  WOOLY_API_BODY(return EndCapture(hStream, phGraph, false););
}
WOOLY_EXPORT CUresult CUDAAPI cuStreamEndCapture_ptsz(CUstream hStream, CUgraph* phGraph) {
  WOOLY_API_BODY(return EndCapture(hStream, phGraph, true););
}
WOOLY_EXPORT CUresult CUDAAPI cuStreamIsCapturing(CUstream hStream,
                                                  CUstreamCaptureStatus* captureStatus) {
  WOOLY_API_BODY(return IsCapturing(hStream, captureStatus, false););
}
WOOLY_EXPORT CUresult CUDAAPI cuStreamIsCapturing_ptsz(CUstream hStream,
                                                       CUstreamCaptureStatus* captureStatus) {
  WOOLY_API_BODY(return IsCapturing(hStream, captureStatus, true););
}
WOOLY_EXPORT CUresult CUDAAPI cuStreamGetCaptureInfo(CUstream hStream,
                                                     CUstreamCaptureStatus* captureStatus_out,
                                                     cuuint64_t* id_out) {
  WOOLY_API_BODY(return GetCaptureInfo(hStream, captureStatus_out, id_out, nullptr, nullptr,
                                       nullptr, nullptr, false););
}
WOOLY_EXPORT CUresult CUDAAPI cuStreamGetCaptureInfo_ptsz(CUstream hStream,
                                                          CUstreamCaptureStatus* captureStatus_out,
                                                          cuuint64_t* id_out) {
  WOOLY_API_BODY(return GetCaptureInfo(hStream, captureStatus_out, id_out, nullptr, nullptr,
                                       nullptr, nullptr, true););
}
WOOLY_EXPORT CUresult CUDAAPI cuStreamGetCaptureInfo_v2(CUstream hStream,
                                                        CUstreamCaptureStatus* captureStatus_out,
                                                        cuuint64_t* id_out, CUgraph* graph_out,
                                                        const CUgraphNode** dependencies_out,
                                                        size_t* numDependencies_out) {
  WOOLY_API_BODY(return GetCaptureInfo(hStream, captureStatus_out, id_out, graph_out,
                                       dependencies_out, nullptr, numDependencies_out, false););
}
WOOLY_EXPORT CUresult CUDAAPI cuStreamGetCaptureInfo_v2_ptsz(
    CUstream hStream, CUstreamCaptureStatus* captureStatus_out, cuuint64_t* id_out,
    CUgraph* graph_out, const CUgraphNode** dependencies_out, size_t* numDependencies_out) {
  WOOLY_API_BODY(return GetCaptureInfo(hStream, captureStatus_out, id_out, graph_out,
                                       dependencies_out, nullptr, numDependencies_out, true););
}
WOOLY_EXPORT CUresult CUDAAPI cuStreamGetCaptureInfo_v3(CUstream hStream,
                                                        CUstreamCaptureStatus* captureStatus_out,
                                                        cuuint64_t* id_out, CUgraph* graph_out,
                                                        const CUgraphNode** dependencies_out,
                                                        const CUgraphEdgeData** edgeData_out,
                                                        size_t* numDependencies_out) {
  WOOLY_API_BODY(return GetCaptureInfo(hStream, captureStatus_out, id_out, graph_out,
                                       dependencies_out, edgeData_out, numDependencies_out,
                                       false););
}
WOOLY_EXPORT CUresult CUDAAPI cuStreamGetCaptureInfo_v3_ptsz(
    CUstream hStream, CUstreamCaptureStatus* captureStatus_out, cuuint64_t* id_out,
    CUgraph* graph_out, const CUgraphNode** dependencies_out, const CUgraphEdgeData** edgeData_out,
    size_t* numDependencies_out) {
  WOOLY_API_BODY(return GetCaptureInfo(hStream, captureStatus_out, id_out, graph_out,
                                       dependencies_out, edgeData_out, numDependencies_out, true););
}
WOOLY_EXPORT CUresult CUDAAPI cuThreadExchangeStreamCaptureMode(CUstreamCaptureMode* mode) {
  WOOLY_API_BODY(return ExchangeMode(mode););
}
WOOLY_EXPORT CUresult CUDAAPI cuStreamUpdateCaptureDependencies(CUstream hStream,
                                                                CUgraphNode* dependencies,
                                                                size_t numDependencies,
                                                                unsigned int flags) {
  WOOLY_API_BODY(return UpdateCaptureDependencies(hStream, dependencies, nullptr, numDependencies,
                                                  flags, false););
}
WOOLY_EXPORT CUresult CUDAAPI cuStreamUpdateCaptureDependencies_ptsz(CUstream hStream,
                                                                     CUgraphNode* dependencies,
                                                                     size_t numDependencies,
                                                                     unsigned int flags) {
  WOOLY_API_BODY(return UpdateCaptureDependencies(hStream, dependencies, nullptr, numDependencies,
                                                  flags, true););
}
WOOLY_EXPORT CUresult CUDAAPI cuStreamUpdateCaptureDependencies_v2(
    CUstream hStream, CUgraphNode* dependencies, const CUgraphEdgeData* dependencyData,
    size_t numDependencies, unsigned int flags) {
  WOOLY_API_BODY(return UpdateCaptureDependencies(hStream, dependencies, dependencyData,
                                                  numDependencies, flags, false););
}
WOOLY_EXPORT CUresult CUDAAPI cuStreamUpdateCaptureDependencies_v2_ptsz(
    CUstream hStream, CUgraphNode* dependencies, const CUgraphEdgeData* dependencyData,
    size_t numDependencies, unsigned int flags) {
  WOOLY_API_BODY(return UpdateCaptureDependencies(hStream, dependencies, dependencyData,
                                                  numDependencies, flags, true););
}

// --- graphs

WOOLY_EXPORT CUresult CUDAAPI cuGraphCreate(CUgraph* phGraph, unsigned int flags) {
  WOOLY_API_BODY(return CreateGraph(phGraph, flags););
}
WOOLY_EXPORT CUresult CUDAAPI cuGraphDestroy(CUgraph hGraph) {
  WOOLY_API_BODY(return DestroyGraph(hGraph););
}
WOOLY_EXPORT CUresult CUDAAPI cuGraphInstantiate(CUgraphExec* phGraphExec, CUgraph hGraph,
                                                 CUgraphNode* phErrorNode, char* logBuffer,
                                                 size_t bufferSize) {
  WOOLY_API_BODY(
      return InstantiateLegacy(phGraphExec, hGraph, phErrorNode, logBuffer, bufferSize););
}
WOOLY_EXPORT CUresult CUDAAPI cuGraphInstantiate_v2(CUgraphExec* phGraphExec, CUgraph hGraph,
                                                    CUgraphNode* phErrorNode, char* logBuffer,
                                                    size_t bufferSize) {
  WOOLY_API_BODY(
      return InstantiateLegacy(phGraphExec, hGraph, phErrorNode, logBuffer, bufferSize););
}
WOOLY_EXPORT CUresult CUDAAPI cuGraphInstantiateWithFlags(CUgraphExec* phGraphExec, CUgraph hGraph,
                                                          unsigned long long flags) {
  WOOLY_API_BODY(return Instantiate(phGraphExec, hGraph, flags););
}
WOOLY_EXPORT CUresult CUDAAPI cuGraphInstantiateWithParams(
    CUgraphExec* phGraphExec, CUgraph hGraph, CUDA_GRAPH_INSTANTIATE_PARAMS* instantiateParams) {
  WOOLY_API_BODY(return InstantiateWithParams(phGraphExec, hGraph, instantiateParams, false););
}
WOOLY_EXPORT CUresult CUDAAPI cuGraphInstantiateWithParams_ptsz(
    CUgraphExec* phGraphExec, CUgraph hGraph, CUDA_GRAPH_INSTANTIATE_PARAMS* instantiateParams) {
  WOOLY_API_BODY(return InstantiateWithParams(phGraphExec, hGraph, instantiateParams, true););
}
WOOLY_EXPORT CUresult CUDAAPI cuGraphExecDestroy(CUgraphExec hGraphExec) {
  WOOLY_API_BODY(return DestroyExec(hGraphExec););
}
WOOLY_EXPORT CUresult CUDAAPI cuGraphLaunch(CUgraphExec hGraphExec, CUstream hStream) {
  WOOLY_API_BODY(return LaunchOrUpload(hGraphExec, hStream, false, wire::Op::kGraphLaunch););
}
WOOLY_EXPORT CUresult CUDAAPI cuGraphLaunch_ptsz(CUgraphExec hGraphExec, CUstream hStream) {
  WOOLY_API_BODY(return LaunchOrUpload(hGraphExec, hStream, true, wire::Op::kGraphLaunch););
}
WOOLY_EXPORT CUresult CUDAAPI cuGraphUpload(CUgraphExec hGraphExec, CUstream hStream) {
  WOOLY_API_BODY(return LaunchOrUpload(hGraphExec, hStream, false, wire::Op::kGraphUpload););
}
WOOLY_EXPORT CUresult CUDAAPI cuGraphUpload_ptsz(CUgraphExec hGraphExec, CUstream hStream) {
  WOOLY_API_BODY(return LaunchOrUpload(hGraphExec, hStream, true, wire::Op::kGraphUpload););
}
WOOLY_EXPORT CUresult CUDAAPI cuGraphGetNodes(CUgraph hGraph, CUgraphNode* nodes,
                                              size_t* numNodes) {
  WOOLY_API_BODY(return GetNodes(hGraph, nodes, numNodes););
}
WOOLY_EXPORT CUresult CUDAAPI cuGraphNodeGetType(CUgraphNode hNode, CUgraphNodeType* type) {
  WOOLY_API_BODY(return NodeType(hNode, type););
}
WOOLY_EXPORT CUresult CUDAAPI cuGraphNodeGetDependencies(CUgraphNode hNode,
                                                         CUgraphNode* dependencies,
                                                         size_t* numDependencies) {
  WOOLY_API_BODY(return NodeDependencies(hNode, dependencies, nullptr, numDependencies););
}
WOOLY_EXPORT CUresult CUDAAPI cuGraphNodeGetDependencies_v2(CUgraphNode hNode,
                                                            CUgraphNode* dependencies,
                                                            CUgraphEdgeData* edgeData,
                                                            size_t* numDependencies) {
  WOOLY_API_BODY(return NodeDependencies(hNode, dependencies, edgeData, numDependencies););
}
WOOLY_EXPORT CUresult CUDAAPI cuGraphKernelNodeGetParams(CUgraphNode hNode,
                                                         CUDA_KERNEL_NODE_PARAMS_v1* nodeParams) {
  WOOLY_API_BODY(return KernelNodeGetParams(hNode, nodeParams););
}
WOOLY_EXPORT CUresult CUDAAPI cuGraphKernelNodeGetParams_v2(CUgraphNode hNode,
                                                            CUDA_KERNEL_NODE_PARAMS* nodeParams) {
  WOOLY_API_BODY(return KernelNodeGetParams(hNode, nodeParams););
}
WOOLY_EXPORT CUresult CUDAAPI
cuGraphKernelNodeSetParams(CUgraphNode hNode, const CUDA_KERNEL_NODE_PARAMS_v1* nodeParams) {
  WOOLY_API_BODY(return KernelNodeSetParams(hNode, nodeParams););
}
WOOLY_EXPORT CUresult CUDAAPI
cuGraphKernelNodeSetParams_v2(CUgraphNode hNode, const CUDA_KERNEL_NODE_PARAMS* nodeParams) {
  WOOLY_API_BODY(return KernelNodeSetParams(hNode, nodeParams););
}
WOOLY_EXPORT CUresult CUDAAPI cuGraphAddKernelNode(CUgraphNode* phGraphNode, CUgraph hGraph,
                                                   const CUgraphNode* dependencies,
                                                   size_t numDependencies,
                                                   const CUDA_KERNEL_NODE_PARAMS_v1* nodeParams) {
  WOOLY_API_BODY(
      return AddKernelNode(phGraphNode, hGraph, dependencies, numDependencies, nodeParams););
}
WOOLY_EXPORT CUresult CUDAAPI cuGraphAddKernelNode_v2(CUgraphNode* phGraphNode, CUgraph hGraph,
                                                      const CUgraphNode* dependencies,
                                                      size_t numDependencies,
                                                      const CUDA_KERNEL_NODE_PARAMS* nodeParams) {
  WOOLY_API_BODY(
      return AddKernelNode(phGraphNode, hGraph, dependencies, numDependencies, nodeParams););
}
WOOLY_EXPORT CUresult CUDAAPI cuGraphExecKernelNodeSetParams(
    CUgraphExec hGraphExec, CUgraphNode hNode, const CUDA_KERNEL_NODE_PARAMS_v1* nodeParams) {
  WOOLY_API_BODY(return ExecKernelNodeSetParams(hGraphExec, hNode, nodeParams););
}
WOOLY_EXPORT CUresult CUDAAPI cuGraphExecKernelNodeSetParams_v2(
    CUgraphExec hGraphExec, CUgraphNode hNode, const CUDA_KERNEL_NODE_PARAMS* nodeParams) {
  WOOLY_API_BODY(return ExecKernelNodeSetParams(hGraphExec, hNode, nodeParams););
}
WOOLY_EXPORT CUresult CUDAAPI cuGraphDebugDotPrint(CUgraph hGraph, const char* path,
                                                   unsigned int flags) {
  WOOLY_API_BODY(return DebugDotPrint(hGraph, path, flags););
}
