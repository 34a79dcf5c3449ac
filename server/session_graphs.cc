// ClientSession's CUDA graph and stream-capture ops (wire ops 140-179) and
// their part of cleanup; see session_graphs.h.
#include <cuda.h>

#include <algorithm>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "spdlog/spdlog.h"
#include "wooly/proto/wire_graph.h"
#include "wooly/server/client_session.h"
#include "wooly/server/cu_status.h"
#include "wooly/server/share_control.h"

namespace wooly::server {
namespace {

absl::Status BadHandle(const char* what) {
  return CuError(CUDA_ERROR_INVALID_HANDLE, absl::StrCat("unknown ", what, " handle"));
}

// The client ids that stand for CUDA's legacy stream (the per-thread stream
// is resolved by the client, and served by the default stream otherwise).
bool IsLegacyStream(uint64_t id) {
  return id == wire::kStreamNull || id == wire::kStreamLegacy || id == wire::kStreamPerThread;
}

// The id of the graph whose backend handle is `backend`, or 0.
uint64_t GraphIdFor(const SessionGraphs& g, BackendHandle backend) {
  for (const auto& [id, rec] : g.graphs) {
    if (rec.backend == backend) return id;
  }
  return 0;
}

// Forgets a graph and its node ids (the backend graph is already gone).
void DropGraphRecord(SessionGraphs& g, uint64_t graph_id) {
  auto it = g.graphs.find(graph_id);
  if (it == g.graphs.end()) return;
  for (const auto& [backend, node] : it->second.node_ids) g.nodes.erase(node);
  g.graphs.erase(it);
}

wire::KernelNodeParams ToWire(const KernelNodeParams& p, uint64_t function_id) {
  wire::KernelNodeParams w;
  w.function = function_id;
  std::copy(p.grid, p.grid + 3, w.grid);
  std::copy(p.block, p.block + 3, w.block);
  w.shared_bytes = p.shared_bytes;
  w.args = p.args;
  return w;
}

}  // namespace

// ------------------------------------------------------------------ helpers

bool ClientSession::StreamCapturing(BackendHandle stream) {
  if (graphs_.captures.empty()) return false;
  absl::StatusOr<CaptureInfo> info = backend_->StreamGetCaptureInfo(stream);
  return info.ok() && info->status != CU_STREAM_CAPTURE_STATUS_NONE;
}

absl::Status ClientSession::RefuseHostCopyWhileCapturing(uint64_t stream) {
  if (graphs_.captures.empty()) return absl::OkStatus();
  StreamRec* s = FindStream(stream);
  if (s == nullptr || !StreamCapturing(s->backend)) return absl::OkStatus();
  return CuError(CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED,
                 "host memory copies cannot be captured through Wooly");
}

void ClientSession::AbandonCaptureOn(uint64_t stream) {
  auto it = graphs_.captures.find(stream);
  if (it == graphs_.captures.end()) return;
  const uint64_t graph = it->second;
  graphs_.captures.erase(it);
  if (StreamRec* s = FindStream(stream)) {
    absl::StatusOr<BackendHandle> g = backend_->StreamEndCapture(s->backend);
    if (g.ok()) (void)backend_->GraphDestroy(*g);
  }
  DropGraphRecord(graphs_, graph);
}

void ClientSession::EndCapturesForClose() {
  std::vector<uint64_t> streams;
  for (const auto& [stream, graph] : graphs_.captures) streams.push_back(stream);
  for (uint64_t stream : streams) AbandonCaptureOn(stream);
}

void ClientSession::ReleaseGraphsForClose() {
  auto warn = [this](const char* what, const absl::Status& s) {
    if (!s.ok()) spdlog::warn("client {}: cleanup {} failed: {}", id_, what, s.ToString());
  };
  const size_t n_execs = graphs_.execs.size();
  const size_t n_graphs = graphs_.graphs.size();
  for (const auto& [id, e] : graphs_.execs) {
    warn("graph exec destroy", backend_->GraphExecDestroy(e.backend));
  }
  for (const auto& [id, g] : graphs_.graphs)
    warn("graph destroy", backend_->GraphDestroy(g.backend));
  graphs_.execs.clear();
  graphs_.graphs.clear();
  graphs_.nodes.clear();
  graphs_.captures.clear();
  if (n_execs + n_graphs > 0) {
    spdlog::info("client {}: released {} executable graphs and {} graphs", id_, n_execs, n_graphs);
  }
}

absl::StatusOr<KernelNodeParams> ClientSession::ToBackendKernelParams(
    const wire::KernelNodeParams& p) {
  absl::StatusOr<Callable> c = ResolveCallable(p.function);
  if (!c.ok()) return c.status();
  // As for launches: the backend reads parameters at the layout's offsets.
  if (p.args.size() < c->arg_bytes) {
    return CuError(CUDA_ERROR_INVALID_VALUE,
                   "argument buffer shorter than the kernel's parameters");
  }
  KernelNodeParams out;
  out.function = c->function;
  std::copy(p.grid, p.grid + 3, out.grid);
  std::copy(p.block, p.block + 3, out.block);
  out.shared_bytes = p.shared_bytes;
  out.args = p.args;
  return out;
}

absl::StatusOr<uint64_t> ClientSession::CallableIdFor(BackendHandle function) {
  for (const auto& [id, f] : functions_) {
    if (f.backend == function) return id;
  }
  for (const auto& [id, k] : kernels_) {
    if (k.backend_function == function || k.backend == function) return id;
  }
  // Every kernel node of this client's graphs runs one of its functions;
  // the function's module may have been unloaded since.
  return CuError(CUDA_ERROR_INVALID_VALUE, "the kernel node's function is no longer loaded");
}

absl::StatusOr<std::vector<wire::GraphNodeRef>> ClientSession::NodeRefs(
    uint64_t graph_id, const std::vector<BackendHandle>& nodes) {
  auto g = graphs_.graphs.find(graph_id);
  if (g == graphs_.graphs.end()) {
    if (nodes.empty()) return std::vector<wire::GraphNodeRef>();
    return CuError(CUDA_ERROR_UNKNOWN, "nodes of a graph the session does not know");
  }
  std::vector<wire::GraphNodeRef> out;
  out.reserve(nodes.size());
  for (BackendHandle n : nodes) {
    absl::StatusOr<uint32_t> type = backend_->GraphNodeGetType(n);
    if (!type.ok()) return type.status();
    uint64_t id = 0;
    if (auto it = g->second.node_ids.find(n); it != g->second.node_ids.end()) {
      id = it->second;
    } else {
      id = NewId();
      g->second.node_ids[n] = id;
      graphs_.nodes[id] = SessionGraphs::Node{n, graph_id};
    }
    out.push_back(wire::GraphNodeRef{id, *type});
  }
  return out;
}

// ------------------------------------------------------------------ capture

absl::Status ClientSession::OpStreamBeginCapture(wire::Reader& in, wire::Writer& out) {
  const uint64_t stream = in.Get<uint64_t>();
  const uint32_t mode = in.Get<uint32_t>();
  if (!in.ok()) return Malformed();
  if (mode > CU_STREAM_CAPTURE_MODE_RELAXED) return CuError(CUDA_ERROR_INVALID_VALUE, "mode");
  // The client's default stream stands for the legacy stream, which CUDA
  // never captures.
  if (IsLegacyStream(stream)) {
    return CuError(CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED, "the legacy stream cannot capture");
  }
  StreamRec* s = FindStream(stream);
  if (s == nullptr) return BadHandle("stream");
  if (absl::Status st = backend_->StreamBeginCapture(s->backend); !st.ok()) return st;
  absl::StatusOr<CaptureInfo> info = backend_->StreamGetCaptureInfo(s->backend);
  if (!info.ok() || info->status != CU_STREAM_CAPTURE_STATUS_ACTIVE || info->graph == 0) {
    absl::StatusOr<BackendHandle> g = backend_->StreamEndCapture(s->backend);
    if (g.ok()) (void)backend_->GraphDestroy(*g);
    return info.ok() ? CuError(CUDA_ERROR_UNKNOWN, "capture began without a graph") : info.status();
  }
  const uint64_t graph = NewId();
  SessionGraphs::Graph& rec = graphs_.graphs[graph];
  rec.backend = info->graph;
  rec.capture_stream = stream;
  graphs_.captures[stream] = graph;
  out.Put<uint64_t>(graph);
  return absl::OkStatus();
}

absl::Status ClientSession::OpStreamEndCapture(wire::Reader& in, wire::Writer& out) {
  const uint64_t stream = in.Get<uint64_t>();
  const bool discard = in.Get<uint8_t>() != 0;
  if (!in.ok()) return Malformed();
  StreamRec* s = FindStream(stream);
  if (s == nullptr) return BadHandle("stream");
  auto cap = graphs_.captures.find(stream);
  absl::StatusOr<BackendHandle> g = backend_->StreamEndCapture(s->backend);
  if (!g.ok()) {
    // An invalidated or unjoined capture ends anyway, and its graph is gone.
    if (cap != graphs_.captures.end()) {
      absl::StatusOr<CaptureInfo> info = backend_->StreamGetCaptureInfo(s->backend);
      if (info.ok() && info->status == CU_STREAM_CAPTURE_STATUS_NONE) {
        DropGraphRecord(graphs_, cap->second);
        graphs_.captures.erase(cap);
      }
    }
    return g.status();
  }
  uint64_t graph = 0;
  if (cap != graphs_.captures.end()) {
    graph = cap->second;
    graphs_.captures.erase(cap);
  } else {
    graph = NewId();  // not begun through this session: cannot happen, but keep it owned
  }
  SessionGraphs::Graph& rec = graphs_.graphs[graph];
  rec.backend = *g;
  rec.capture_stream = 0;
  if (discard) {
    (void)backend_->GraphDestroy(*g);
    DropGraphRecord(graphs_, graph);
    graph = 0;
  }
  out.Put<uint64_t>(graph);
  return absl::OkStatus();
}

absl::Status ClientSession::OpStreamGetCaptureInfo(wire::Reader& in, wire::Writer& out) {
  const uint64_t stream = in.Get<uint64_t>();
  if (!in.ok()) return Malformed();
  StreamRec* s = FindStream(stream);
  if (s == nullptr) return BadHandle("stream");
  absl::StatusOr<CaptureInfo> info = backend_->StreamGetCaptureInfo(s->backend);
  if (!info.ok()) return info.status();
  uint64_t graph = 0;
  std::vector<wire::GraphNodeRef> deps;
  if (info->status == CU_STREAM_CAPTURE_STATUS_ACTIVE) {
    graph = GraphIdFor(graphs_, info->graph);
    absl::StatusOr<std::vector<wire::GraphNodeRef>> refs = NodeRefs(graph, info->dependencies);
    if (!refs.ok()) return refs.status();
    deps = std::move(*refs);
  }
  out.Put<uint32_t>(info->status).Put<uint64_t>(graph);
  wire::PutNodeList(out, deps);
  return absl::OkStatus();
}

absl::Status ClientSession::OpStreamUpdateCaptureDependencies(wire::Reader& in, wire::Writer& out) {
  const uint64_t stream = in.Get<uint64_t>();
  const uint32_t flags = in.Get<uint32_t>();
  const std::vector<uint64_t> ids = wire::GetNodeIds(in);
  if (!in.ok()) return Malformed();
  StreamRec* s = FindStream(stream);
  if (s == nullptr) return BadHandle("stream");
  std::vector<BackendHandle> nodes;
  nodes.reserve(ids.size());
  for (uint64_t id : ids) {
    auto it = graphs_.nodes.find(id);
    if (it == graphs_.nodes.end()) return BadHandle("graph node");
    nodes.push_back(it->second.backend);
  }
  return backend_->StreamUpdateCaptureDependencies(s->backend, nodes, flags);
}

// ------------------------------------------------------------------- graphs

absl::Status ClientSession::OpGraphCreate(wire::Reader& in, wire::Writer& out) {
  const uint32_t flags = in.Get<uint32_t>();
  if (!in.ok()) return Malformed();
  absl::StatusOr<BackendHandle> g = backend_->GraphCreate(flags);
  if (!g.ok()) return g.status();
  const uint64_t id = NewId();
  graphs_.graphs[id].backend = *g;
  out.Put<uint64_t>(id);
  return absl::OkStatus();
}

absl::Status ClientSession::OpGraphDestroy(wire::Reader& in, wire::Writer& out) {
  const uint64_t graph = in.Get<uint64_t>();
  if (!in.ok()) return Malformed();
  auto it = graphs_.graphs.find(graph);
  if (it == graphs_.graphs.end()) return BadHandle("graph");
  if (it->second.capture_stream != 0) {
    return CuError(CUDA_ERROR_ILLEGAL_STATE, "the graph of a capture in progress");
  }
  if (absl::Status s = backend_->GraphDestroy(it->second.backend); !s.ok()) return s;
  DropGraphRecord(graphs_, graph);
  return absl::OkStatus();
}

absl::Status ClientSession::OpGraphInstantiate(wire::Reader& in, wire::Writer& out) {
  const uint64_t graph = in.Get<uint64_t>();
  const uint64_t flags = in.Get<uint64_t>();
  if (!in.ok()) return Malformed();
  auto it = graphs_.graphs.find(graph);
  if (it == graphs_.graphs.end()) return BadHandle("graph");
  absl::StatusOr<BackendHandle> e = backend_->GraphInstantiate(it->second.backend, flags);
  if (!e.ok()) return e.status();
  const uint64_t id = NewId();
  graphs_.execs[id] = SessionGraphs::Exec{*e, graph};
  out.Put<uint64_t>(id);
  return absl::OkStatus();
}

absl::Status ClientSession::OpGraphExecDestroy(wire::Reader& in, wire::Writer& out) {
  const uint64_t exec = in.Get<uint64_t>();
  if (!in.ok()) return Malformed();
  auto it = graphs_.execs.find(exec);
  if (it == graphs_.execs.end()) return BadHandle("graph exec");
  if (absl::Status s = backend_->GraphExecDestroy(it->second.backend); !s.ok()) return s;
  graphs_.execs.erase(it);
  return absl::OkStatus();
}

absl::Status ClientSession::OpGraphLaunch(wire::Reader& in, wire::Writer& out) {
  const uint64_t exec = in.Get<uint64_t>();
  const uint64_t stream = in.Get<uint64_t>();
  if (!in.ok()) return Malformed();
  auto it = graphs_.execs.find(exec);
  if (it == graphs_.execs.end()) return BadHandle("graph exec");
  absl::StatusOr<BackendHandle> st = StreamForWork(stream);
  if (!st.ok()) return st.status();
  // A graph counts as one launch for measurement.
  const bool measured = sched_ != nullptr && !StreamCapturing(*st);
  if (measured) sched_->BeginLaunch(*st);
  absl::Status launched = backend_->GraphLaunch(it->second.backend, *st);
  if (measured && launched.ok()) sched_->EndLaunch(*st);
  return launched;
}

absl::Status ClientSession::OpGraphUpload(wire::Reader& in, wire::Writer& out) {
  const uint64_t exec = in.Get<uint64_t>();
  const uint64_t stream = in.Get<uint64_t>();
  if (!in.ok()) return Malformed();
  auto it = graphs_.execs.find(exec);
  if (it == graphs_.execs.end()) return BadHandle("graph exec");
  absl::StatusOr<BackendHandle> st = StreamForWork(stream);
  if (!st.ok()) return st.status();
  return backend_->GraphUpload(it->second.backend, *st);
}

absl::Status ClientSession::OpGraphGetNodes(wire::Reader& in, wire::Writer& out) {
  const uint64_t graph = in.Get<uint64_t>();
  if (!in.ok()) return Malformed();
  auto it = graphs_.graphs.find(graph);
  if (it == graphs_.graphs.end()) return BadHandle("graph");
  absl::StatusOr<std::vector<BackendHandle>> nodes = backend_->GraphGetNodes(it->second.backend);
  if (!nodes.ok()) return nodes.status();
  absl::StatusOr<std::vector<wire::GraphNodeRef>> refs = NodeRefs(graph, *nodes);
  if (!refs.ok()) return refs.status();
  wire::PutNodeList(out, *refs);
  return absl::OkStatus();
}

absl::Status ClientSession::OpGraphNodeGetDependencies(wire::Reader& in, wire::Writer& out) {
  const uint64_t node = in.Get<uint64_t>();
  if (!in.ok()) return Malformed();
  auto it = graphs_.nodes.find(node);
  if (it == graphs_.nodes.end()) return BadHandle("graph node");
  const SessionGraphs::Node n = it->second;
  absl::StatusOr<std::vector<BackendHandle>> deps = backend_->GraphNodeGetDependencies(n.backend);
  if (!deps.ok()) return deps.status();
  absl::StatusOr<std::vector<wire::GraphNodeRef>> refs = NodeRefs(n.graph, *deps);
  if (!refs.ok()) return refs.status();
  wire::PutNodeList(out, *refs);
  return absl::OkStatus();
}

absl::Status ClientSession::OpGraphKernelNodeGetParams(wire::Reader& in, wire::Writer& out) {
  const uint64_t node = in.Get<uint64_t>();
  if (!in.ok()) return Malformed();
  auto it = graphs_.nodes.find(node);
  if (it == graphs_.nodes.end()) return BadHandle("graph node");
  absl::StatusOr<KernelNodeParams> p = backend_->GraphKernelNodeGetParams(it->second.backend);
  if (!p.ok()) return p.status();
  absl::StatusOr<uint64_t> fn = CallableIdFor(p->function);
  if (!fn.ok()) return fn.status();
  wire::PutKernelNodeParams(out, ToWire(*p, *fn));
  return absl::OkStatus();
}

absl::Status ClientSession::OpGraphKernelNodeSetParams(wire::Reader& in, wire::Writer& out) {
  const uint64_t node = in.Get<uint64_t>();
  const wire::KernelNodeParams p = wire::GetKernelNodeParams(in);
  if (!in.ok()) return Malformed();
  auto it = graphs_.nodes.find(node);
  if (it == graphs_.nodes.end()) return BadHandle("graph node");
  absl::StatusOr<KernelNodeParams> bp = ToBackendKernelParams(p);
  if (!bp.ok()) return bp.status();
  return backend_->GraphKernelNodeSetParams(it->second.backend, *bp);
}

absl::Status ClientSession::OpGraphAddKernelNode(wire::Reader& in, wire::Writer& out) {
  const uint64_t graph = in.Get<uint64_t>();
  const std::vector<uint64_t> dep_ids = wire::GetNodeIds(in);
  const wire::KernelNodeParams p = wire::GetKernelNodeParams(in);
  if (!in.ok()) return Malformed();
  auto g = graphs_.graphs.find(graph);
  if (g == graphs_.graphs.end()) return BadHandle("graph");
  std::vector<BackendHandle> deps;
  deps.reserve(dep_ids.size());
  for (uint64_t id : dep_ids) {
    auto it = graphs_.nodes.find(id);
    if (it == graphs_.nodes.end()) return BadHandle("graph node");
    if (it->second.graph != graph) {
      return CuError(CUDA_ERROR_INVALID_VALUE, "dependency from another graph");
    }
    deps.push_back(it->second.backend);
  }
  absl::StatusOr<KernelNodeParams> bp = ToBackendKernelParams(p);
  if (!bp.ok()) return bp.status();
  absl::StatusOr<BackendHandle> n = backend_->GraphAddKernelNode(g->second.backend, deps, *bp);
  if (!n.ok()) return n.status();
  absl::StatusOr<std::vector<wire::GraphNodeRef>> refs = NodeRefs(graph, {*n});
  if (!refs.ok()) return refs.status();
  out.Put<uint64_t>(refs->front().node);
  return absl::OkStatus();
}

absl::Status ClientSession::OpGraphExecKernelNodeSetParams(wire::Reader& in, wire::Writer& out) {
  const uint64_t exec = in.Get<uint64_t>();
  const uint64_t node = in.Get<uint64_t>();
  const wire::KernelNodeParams p = wire::GetKernelNodeParams(in);
  if (!in.ok()) return Malformed();
  auto e = graphs_.execs.find(exec);
  if (e == graphs_.execs.end()) return BadHandle("graph exec");
  auto n = graphs_.nodes.find(node);
  if (n == graphs_.nodes.end()) return BadHandle("graph node");
  if (n->second.graph != e->second.graph) {
    return CuError(CUDA_ERROR_INVALID_VALUE, "node not from the executable graph's graph");
  }
  absl::StatusOr<KernelNodeParams> bp = ToBackendKernelParams(p);
  if (!bp.ok()) return bp.status();
  return backend_->GraphExecKernelNodeSetParams(e->second.backend, n->second.backend, *bp);
}

absl::Status ClientSession::OpGraphDebugDotPrint(wire::Reader& in, wire::Writer& out) {
  const uint64_t graph = in.Get<uint64_t>();
  const uint32_t flags = in.Get<uint32_t>();
  if (!in.ok()) return Malformed();
  auto it = graphs_.graphs.find(graph);
  if (it == graphs_.graphs.end()) return BadHandle("graph");
  absl::StatusOr<std::string> dot = backend_->GraphDebugDotPrint(it->second.backend, flags);
  if (!dot.ok()) return dot.status();
  if (dot->size() > wire::kMaxPayload / 2) {
    return CuError(CUDA_ERROR_INVALID_VALUE, "graph description too large for one reply");
  }
  out.PutStr(*dot);
  return absl::OkStatus();
}

}  // namespace wooly::server
