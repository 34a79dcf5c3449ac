// FakeBackend's stream capture and CUDA graphs (see fake_backend.h): captured
// work becomes nodes of a graph, and launching an executable graph runs the
// nodes in order, through the backend's own memset, copy and launch paths.
#include <cuda.h>

#include <algorithm>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "wooly/fake/fake_backend.h"
#include "wooly/server/cu_status.h"

namespace wooly::fake {
namespace {

using server::CuError;
using server::Handle;

constexpr uint64_t kKnownInstantiateFlags =
    CUDA_GRAPH_INSTANTIATE_FLAG_AUTO_FREE_ON_LAUNCH | CUDA_GRAPH_INSTANTIATE_FLAG_UPLOAD |
    CUDA_GRAPH_INSTANTIATE_FLAG_DEVICE_LAUNCH | CUDA_GRAPH_INSTANTIATE_FLAG_USE_NODE_PRIORITY;

absl::Status Invalidated() {
  return CuError(CUDA_ERROR_STREAM_CAPTURE_INVALIDATED, "the capture was invalidated");
}

void AddUnique(std::vector<Handle>& to, const std::vector<Handle>& from) {
  for (Handle h : from) {
    if (std::find(to.begin(), to.end(), h) == to.end()) to.push_back(h);
  }
}

const char* NodeTypeName(uint32_t type) {
  switch (type) {
    case CU_GRAPH_NODE_TYPE_KERNEL:
      return "kernel";
    case CU_GRAPH_NODE_TYPE_MEMCPY:
      return "memcpy";
    case CU_GRAPH_NODE_TYPE_MEMSET:
      return "memset";
    case CU_GRAPH_NODE_TYPE_WAIT_EVENT:
      return "wait_event";
    case CU_GRAPH_NODE_TYPE_GRAPH:
      return "graph";
    default:
      return "node";
  }
}

}  // namespace

size_t FakeBackend::live_graphs() const {
  absl::MutexLock lock(&mu_);
  return graphs_.size();
}

size_t FakeBackend::live_graph_execs() const {
  absl::MutexLock lock(&mu_);
  return graph_execs_.size();
}

// ------------------------------------------------------------ capture state

FakeBackend::CaptureEdge* FakeBackend::CapturingLocked(Handle stream) {
  if (capturing_.empty()) return nullptr;
  auto it = capturing_.find(stream);
  return it == capturing_.end() ? nullptr : &it->second;
}

absl::Status FakeBackend::CaptureNodeLocked(Handle stream, GraphNode node) {
  CaptureEdge* edge = CapturingLocked(stream);
  Capture& capture = captures_.at(edge->origin);
  if (capture.invalidated) return Invalidated();
  node.deps = edge->leaves;
  const Handle h = NewHandle();
  graph_nodes_[h] = std::move(node);
  graphs_.at(capture.graph).nodes.push_back(h);
  edge->leaves = {h};
  return absl::OkStatus();
}

absl::Status FakeBackend::RefuseIfCapturingLocked(Handle stream) {
  CaptureEdge* edge = CapturingLocked(stream);
  if (edge == nullptr) return absl::OkStatus();
  Capture& capture = captures_.at(edge->origin);
  if (capture.invalidated) return Invalidated();
  capture.invalidated = true;
  return CuError(CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED, "operation not permitted while capturing");
}

absl::Status FakeBackend::RefuseIfEventCapturedLocked(Handle event) {
  auto it = captured_events_.find(event);
  if (it == captured_events_.end()) return absl::OkStatus();
  captures_.at(it->second.origin).invalidated = true;
  return CuError(CUDA_ERROR_CAPTURED_EVENT, "event recorded in a capture in progress");
}

absl::Status FakeBackend::CaptureEventRecordLocked(Handle event, Handle stream) {
  CaptureEdge* edge = CapturingLocked(stream);
  if (captures_.at(edge->origin).invalidated) return Invalidated();
  captured_events_[event] = *edge;
  return absl::OkStatus();
}

absl::Status FakeBackend::CaptureStreamWaitLocked(Handle stream, Handle event, uint32_t flags) {
  auto ev = captured_events_.find(event);
  CaptureEdge* edge = CapturingLocked(stream);
  if (edge == nullptr) {
    // Waiting on an event of a capture joins that capture.
    if (ev != captured_events_.end()) capturing_[stream] = ev->second;
    return absl::OkStatus();
  }
  Capture& capture = captures_.at(edge->origin);
  if (capture.invalidated) return Invalidated();
  if (ev != captured_events_.end()) {
    if (ev->second.origin == edge->origin) {
      AddUnique(edge->leaves, ev->second.leaves);
      return absl::OkStatus();
    }
    capture.invalidated = true;
    captures_.at(ev->second.origin).invalidated = true;
    return CuError(CUDA_ERROR_STREAM_CAPTURE_MERGE, "event of another capture");
  }
  if (flags & CU_EVENT_WAIT_EXTERNAL) {
    GraphNode n;
    n.type = CU_GRAPH_NODE_TYPE_WAIT_EVENT;
    n.event = event;
    return CaptureNodeLocked(stream, std::move(n));
  }
  capture.invalidated = true;
  return CuError(CUDA_ERROR_STREAM_CAPTURE_ISOLATION, "wait on an event outside the capture");
}

void FakeBackend::ForgetCaptureStreamLocked(Handle stream) {
  if (captures_.contains(stream)) {
    // Destroying the origin stream ends its capture; the graph goes with it.
    const Handle graph = captures_.at(stream).graph;
    EndCaptureLocked(stream);
    DestroyGraphLocked(graph);
    return;
  }
  capturing_.erase(stream);
}

void FakeBackend::ForgetCaptureEventLocked(Handle event) { captured_events_.erase(event); }

void FakeBackend::EndCaptureLocked(Handle origin) {
  std::erase_if(capturing_, [origin](const auto& e) { return e.second.origin == origin; });
  std::erase_if(captured_events_, [origin](const auto& e) { return e.second.origin == origin; });
  captures_.erase(origin);
}

void FakeBackend::DestroyGraphLocked(Handle graph) {
  auto it = graphs_.find(graph);
  if (it == graphs_.end()) return;
  for (Handle n : it->second.nodes) graph_nodes_.erase(n);
  graphs_.erase(it);
}

absl::Status FakeBackend::CheckKernelNodeLocked(const server::KernelNodeParams& params) {
  auto f = functions_.find(params.function);
  if (f == functions_.end()) return CuError(CUDA_ERROR_INVALID_HANDLE, "unknown function");
  std::optional<FakeKernel> k = FindFakeKernel(f->second.name);
  if (!k) return CuError(CUDA_ERROR_NOT_FOUND, "kernel unregistered");
  uint64_t need = 0;
  for (const wire::ParamInfo& p : k->params) {
    need = std::max<uint64_t>(need, uint64_t{p.offset} + p.size);
  }
  if (params.args.size() < need) {
    return CuError(CUDA_ERROR_INVALID_VALUE, "argument buffer shorter than the kernel's layout");
  }
  for (int i = 0; i < 3; ++i) {
    if (params.grid[i] == 0 || params.block[i] == 0) {
      return CuError(CUDA_ERROR_INVALID_VALUE, "zero launch dimension");
    }
  }
  return absl::OkStatus();
}

// ------------------------------------------------------------------ capture

absl::Status FakeBackend::StreamBeginCapture(Handle stream) {
  absl::MutexLock lock(&mu_);
  if (absl::Status s = CheckStream(stream); !s.ok()) return s;
  if (stream == 0) {
    return CuError(CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED, "the legacy stream cannot capture");
  }
  if (CapturingLocked(stream) != nullptr) {
    return CuError(CUDA_ERROR_ILLEGAL_STATE, "the stream is already capturing");
  }
  const Handle graph = NewHandle();
  graphs_[graph];
  captures_[stream] = Capture{graph, false};
  capturing_[stream] = CaptureEdge{stream, {}};
  return absl::OkStatus();
}

absl::StatusOr<Handle> FakeBackend::StreamEndCapture(Handle stream) {
  absl::MutexLock lock(&mu_);
  if (absl::Status s = CheckStream(stream); !s.ok()) return s;
  CaptureEdge* edge = CapturingLocked(stream);
  if (edge == nullptr) return CuError(CUDA_ERROR_ILLEGAL_STATE, "the stream is not capturing");
  if (edge->origin != stream) {
    return CuError(CUDA_ERROR_STREAM_CAPTURE_UNMATCHED, "the capture began on another stream");
  }
  const Capture capture = captures_.at(stream);
  // Every stream that joined must have been joined back: its last work must
  // be something the origin stream's last work depends on.
  std::set<Handle> reached;
  std::vector<Handle> todo = edge->leaves;
  while (!todo.empty()) {
    const Handle n = todo.back();
    todo.pop_back();
    if (!reached.insert(n).second) continue;
    const std::vector<Handle>& deps = graph_nodes_.at(n).deps;
    todo.insert(todo.end(), deps.begin(), deps.end());
  }
  bool unjoined = false;
  for (const auto& [s, e] : capturing_) {
    if (e.origin != stream || s == stream) continue;
    for (Handle leaf : e.leaves) unjoined |= !reached.contains(leaf);
  }
  EndCaptureLocked(stream);
  if (capture.invalidated || unjoined) {
    DestroyGraphLocked(capture.graph);
    if (capture.invalidated) return Invalidated();
    return CuError(CUDA_ERROR_STREAM_CAPTURE_UNJOINED, "a joined stream was not joined back");
  }
  return capture.graph;
}

absl::StatusOr<server::CaptureInfo> FakeBackend::StreamGetCaptureInfo(Handle stream) {
  absl::MutexLock lock(&mu_);
  if (absl::Status s = CheckStream(stream); !s.ok()) return s;
  server::CaptureInfo info;
  info.status = CU_STREAM_CAPTURE_STATUS_NONE;
  const CaptureEdge* edge = CapturingLocked(stream);
  if (edge == nullptr) return info;
  const Capture& capture = captures_.at(edge->origin);
  if (capture.invalidated) {
    info.status = CU_STREAM_CAPTURE_STATUS_INVALIDATED;
    return info;
  }
  info.status = CU_STREAM_CAPTURE_STATUS_ACTIVE;
  info.graph = capture.graph;
  info.dependencies = edge->leaves;
  return info;
}

absl::Status FakeBackend::StreamUpdateCaptureDependencies(Handle stream,
                                                          absl::Span<const Handle> nodes,
                                                          uint32_t flags) {
  absl::MutexLock lock(&mu_);
  if (absl::Status s = CheckStream(stream); !s.ok()) return s;
  CaptureEdge* edge = CapturingLocked(stream);
  if (edge == nullptr) return CuError(CUDA_ERROR_ILLEGAL_STATE, "the stream is not capturing");
  const Capture& capture = captures_.at(edge->origin);
  if (capture.invalidated) return Invalidated();
  const std::vector<Handle>& in_graph = graphs_.at(capture.graph).nodes;
  for (Handle n : nodes) {
    if (std::find(in_graph.begin(), in_graph.end(), n) == in_graph.end()) {
      return CuError(CUDA_ERROR_INVALID_VALUE, "node not in the capture's graph");
    }
  }
  const std::vector<Handle> list(nodes.begin(), nodes.end());
  if (flags == CU_STREAM_ADD_CAPTURE_DEPENDENCIES) {
    AddUnique(edge->leaves, list);
  } else if (flags == CU_STREAM_SET_CAPTURE_DEPENDENCIES) {
    edge->leaves = list;
  } else {
    return CuError(CUDA_ERROR_INVALID_VALUE, "flags");
  }
  return absl::OkStatus();
}

// ------------------------------------------------------------------- graphs

absl::StatusOr<Handle> FakeBackend::GraphCreate(uint32_t flags) {
  if (flags != 0) return CuError(CUDA_ERROR_INVALID_VALUE, "graph flags must be 0");
  absl::MutexLock lock(&mu_);
  const Handle h = NewHandle();
  graphs_[h];
  return h;
}

absl::Status FakeBackend::GraphDestroy(Handle graph) {
  absl::MutexLock lock(&mu_);
  if (!graphs_.contains(graph)) return CuError(CUDA_ERROR_INVALID_VALUE, "unknown graph");
  for (const auto& [origin, c] : captures_) {
    if (c.graph == graph) return CuError(CUDA_ERROR_ILLEGAL_STATE, "graph of a capture");
  }
  DestroyGraphLocked(graph);
  return absl::OkStatus();
}

absl::StatusOr<Handle> FakeBackend::GraphInstantiate(Handle graph, uint64_t flags) {
  if (flags & ~kKnownInstantiateFlags) return CuError(CUDA_ERROR_INVALID_VALUE, "flags");
  absl::MutexLock lock(&mu_);
  auto it = graphs_.find(graph);
  if (it == graphs_.end()) return CuError(CUDA_ERROR_INVALID_VALUE, "unknown graph");
  GraphExec exec;
  for (Handle n : it->second.nodes) exec.nodes.emplace_back(n, graph_nodes_.at(n));
  const Handle h = NewHandle();
  graph_execs_[h] = std::move(exec);
  return h;
}

absl::Status FakeBackend::GraphExecDestroy(Handle exec) {
  absl::MutexLock lock(&mu_);
  if (graph_execs_.erase(exec) == 0) return CuError(CUDA_ERROR_INVALID_VALUE, "unknown exec");
  return absl::OkStatus();
}

absl::Status FakeBackend::RunGraphNode(const GraphNode& n) {
  switch (n.type) {
    case CU_GRAPH_NODE_TYPE_KERNEL: {
      server::LaunchConfig config;
      std::copy(n.kernel.grid, n.kernel.grid + 3, config.grid);
      std::copy(n.kernel.block, n.kernel.block + 3, config.block);
      config.shared_bytes = n.kernel.shared_bytes;
      config.stream = 0;
      return LaunchKernel(n.kernel.function, config, n.kernel.args);
    }
    case CU_GRAPH_NODE_TYPE_MEMSET:
      return Memset(n.dst, n.pitch, n.value, n.elem_size, n.width, n.height, 0, true);
    case CU_GRAPH_NODE_TYPE_MEMCPY: {
      if (!n.is_3d) return MemcpyDtoD(n.dst, n.src, n.bytes, 0, true);
      server::Copy3DParams p;
      p.geometry = n.copy3d;
      return Memcpy3D(p, 0, true);
    }
    case CU_GRAPH_NODE_TYPE_GRAPH:
      for (const GraphNode& c : n.child) {
        if (absl::Status s = RunGraphNode(c); !s.ok()) return s;
      }
      return absl::OkStatus();
    default:  // waits and empty nodes: work here is synchronous
      return absl::OkStatus();
  }
}

absl::Status FakeBackend::GraphLaunch(Handle exec, Handle stream) {
  std::vector<GraphNode> nodes;
  {
    absl::MutexLock lock(&mu_);
    auto it = graph_execs_.find(exec);
    if (it == graph_execs_.end()) return CuError(CUDA_ERROR_INVALID_VALUE, "unknown exec");
    if (absl::Status s = CheckStream(stream); !s.ok()) return s;
    if (CapturingLocked(stream) != nullptr) {  // a child graph of the capture
      GraphNode n;
      n.type = CU_GRAPH_NODE_TYPE_GRAPH;
      for (const auto& [h, node] : it->second.nodes) n.child.push_back(node);
      return CaptureNodeLocked(stream, std::move(n));
    }
    for (const auto& [h, node] : it->second.nodes) nodes.push_back(node);
  }
  for (const GraphNode& n : nodes) {
    if (absl::Status s = RunGraphNode(n); !s.ok()) return s;
  }
  return absl::OkStatus();
}

absl::Status FakeBackend::GraphUpload(Handle exec, Handle stream) {
  absl::MutexLock lock(&mu_);
  if (!graph_execs_.contains(exec)) return CuError(CUDA_ERROR_INVALID_VALUE, "unknown exec");
  if (absl::Status s = CheckStream(stream); !s.ok()) return s;
  if (CapturingLocked(stream) != nullptr) return RefuseIfCapturingLocked(stream);
  return absl::OkStatus();
}

absl::StatusOr<std::vector<Handle>> FakeBackend::GraphGetNodes(Handle graph) {
  absl::MutexLock lock(&mu_);
  auto it = graphs_.find(graph);
  if (it == graphs_.end()) return CuError(CUDA_ERROR_INVALID_VALUE, "unknown graph");
  return it->second.nodes;
}

absl::StatusOr<uint32_t> FakeBackend::GraphNodeGetType(Handle node) {
  absl::MutexLock lock(&mu_);
  auto it = graph_nodes_.find(node);
  if (it == graph_nodes_.end()) return CuError(CUDA_ERROR_INVALID_VALUE, "unknown node");
  return it->second.type;
}

absl::StatusOr<std::vector<Handle>> FakeBackend::GraphNodeGetDependencies(Handle node) {
  absl::MutexLock lock(&mu_);
  auto it = graph_nodes_.find(node);
  if (it == graph_nodes_.end()) return CuError(CUDA_ERROR_INVALID_VALUE, "unknown node");
  return it->second.deps;
}

absl::StatusOr<server::KernelNodeParams> FakeBackend::GraphKernelNodeGetParams(Handle node) {
  absl::MutexLock lock(&mu_);
  auto it = graph_nodes_.find(node);
  if (it == graph_nodes_.end()) return CuError(CUDA_ERROR_INVALID_VALUE, "unknown node");
  if (it->second.type != CU_GRAPH_NODE_TYPE_KERNEL) {
    return CuError(CUDA_ERROR_INVALID_VALUE, "not a kernel node");
  }
  return it->second.kernel;
}

absl::Status FakeBackend::GraphKernelNodeSetParams(Handle node,
                                                   const server::KernelNodeParams& params) {
  absl::MutexLock lock(&mu_);
  auto it = graph_nodes_.find(node);
  if (it == graph_nodes_.end()) return CuError(CUDA_ERROR_INVALID_VALUE, "unknown node");
  if (it->second.type != CU_GRAPH_NODE_TYPE_KERNEL) {
    return CuError(CUDA_ERROR_INVALID_VALUE, "not a kernel node");
  }
  if (absl::Status s = CheckKernelNodeLocked(params); !s.ok()) return s;
  it->second.kernel = params;
  return absl::OkStatus();
}

absl::StatusOr<Handle> FakeBackend::GraphAddKernelNode(Handle graph,
                                                       absl::Span<const Handle> dependencies,
                                                       const server::KernelNodeParams& params) {
  absl::MutexLock lock(&mu_);
  auto g = graphs_.find(graph);
  if (g == graphs_.end()) return CuError(CUDA_ERROR_INVALID_VALUE, "unknown graph");
  for (Handle d : dependencies) {
    if (std::find(g->second.nodes.begin(), g->second.nodes.end(), d) == g->second.nodes.end()) {
      return CuError(CUDA_ERROR_INVALID_VALUE, "dependency not in the graph");
    }
  }
  if (absl::Status s = CheckKernelNodeLocked(params); !s.ok()) return s;
  GraphNode n;
  n.type = CU_GRAPH_NODE_TYPE_KERNEL;
  n.deps.assign(dependencies.begin(), dependencies.end());
  n.kernel = params;
  const Handle h = NewHandle();
  graph_nodes_[h] = std::move(n);
  g->second.nodes.push_back(h);
  return h;
}

absl::Status FakeBackend::GraphExecKernelNodeSetParams(Handle exec, Handle node,
                                                       const server::KernelNodeParams& params) {
  absl::MutexLock lock(&mu_);
  auto e = graph_execs_.find(exec);
  if (e == graph_execs_.end()) return CuError(CUDA_ERROR_INVALID_VALUE, "unknown exec");
  for (auto& [h, n] : e->second.nodes) {
    if (h != node) continue;
    if (n.type != CU_GRAPH_NODE_TYPE_KERNEL) {
      return CuError(CUDA_ERROR_INVALID_VALUE, "not a kernel node");
    }
    if (absl::Status s = CheckKernelNodeLocked(params); !s.ok()) return s;
    n.kernel = params;
    return absl::OkStatus();
  }
  return CuError(CUDA_ERROR_INVALID_VALUE, "node not in the executable graph");
}

absl::StatusOr<std::string> FakeBackend::GraphDebugDotPrint(Handle graph, uint32_t flags) {
  absl::MutexLock lock(&mu_);
  auto g = graphs_.find(graph);
  if (g == graphs_.end()) return CuError(CUDA_ERROR_INVALID_VALUE, "unknown graph");
  std::string dot = "digraph wooly_fake_graph {\n";
  const std::vector<Handle>& nodes = g->second.nodes;
  auto index = [&nodes](Handle h) {
    return std::find(nodes.begin(), nodes.end(), h) - nodes.begin();
  };
  for (size_t i = 0; i < nodes.size(); ++i) {
    const GraphNode& n = graph_nodes_.at(nodes[i]);
    std::string label = NodeTypeName(n.type);
    if (n.type == CU_GRAPH_NODE_TYPE_KERNEL) {
      if (auto f = functions_.find(n.kernel.function); f != functions_.end()) {
        absl::StrAppend(&label, " ", f->second.name);
      }
    }
    absl::StrAppend(&dot, "  n", i, " [label=\"", label, "\"];\n");
    for (Handle d : n.deps) absl::StrAppend(&dot, "  n", index(d), " -> n", i, ";\n");
  }
  dot += "}\n";
  return dot;
}

}  // namespace wooly::fake
