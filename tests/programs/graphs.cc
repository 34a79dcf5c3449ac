// graphs: CUDA graphs through stream capture and by hand.
//  - capture on a stream with a second stream forked and joined through
//    events (the second stream joins the capture), status and capture-info
//    answers during the capture, the captured graph's nodes and kernel node
//    parameters (read, changed in the graph, changed in the executable
//    graph), instantiate, launch N times, check the results;
//  - illegal operations during a capture and what they do to it: a stream
//    synchronize, a potentially unsafe call in global mode (and the same call
//    allowed after cuThreadExchangeStreamCaptureMode(RELAXED)), the legacy
//    stream while a blocking stream captures;
//  - a graph built with cuGraphAddKernelNode, its dependencies, and
//    cuGraphDebugDotPrint.
// Everything printed is deterministic, for the native-vs-Wooly comparison.
#include <cuda.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "common.h"

using namespace wooly_test;

namespace {

constexpr int kN = 4096;
constexpr unsigned kBlock = 256;
constexpr int kLaunches = 5;

const char* StatusName(CUstreamCaptureStatus s) {
  switch (s) {
    case CU_STREAM_CAPTURE_STATUS_NONE:
      return "NONE";
    case CU_STREAM_CAPTURE_STATUS_ACTIVE:
      return "ACTIVE";
    case CU_STREAM_CAPTURE_STATUS_INVALIDATED:
      return "INVALIDATED";
    default:
      return "?";
  }
}

const char* NodeTypeName(CUgraphNodeType t) {
  switch (t) {
    case CU_GRAPH_NODE_TYPE_KERNEL:
      return "kernel";
    case CU_GRAPH_NODE_TYPE_MEMCPY:
      return "memcpy";
    case CU_GRAPH_NODE_TYPE_MEMSET:
      return "memset";
    case CU_GRAPH_NODE_TYPE_EMPTY:
      return "empty";
    case CU_GRAPH_NODE_TYPE_EVENT_RECORD:
      return "event_record";
    case CU_GRAPH_NODE_TYPE_WAIT_EVENT:
      return "wait_event";
    default:
      return "other";
  }
}

std::string Capturing(CUstream s) {
  CUstreamCaptureStatus status = CU_STREAM_CAPTURE_STATUS_NONE;
  const CUresult r = cuStreamIsCapturing(s, &status);
  if (r != CUDA_SUCCESS) return ResultName(r);
  return StatusName(status);
}

cuuint64_t CaptureId(CUstream s) {
  CUstreamCaptureStatus status = CU_STREAM_CAPTURE_STATUS_NONE;
  cuuint64_t id = 0;
  CHECK_CU(cuStreamGetCaptureInfo(s, &status, &id, nullptr, nullptr, nullptr, nullptr));
  return status == CU_STREAM_CAPTURE_STATUS_NONE ? 0 : id;
}

std::vector<CUgraphNode> Nodes(CUgraph g) {
  size_t n = 0;
  CHECK_CU(cuGraphGetNodes(g, nullptr, &n));
  std::vector<CUgraphNode> nodes(n);
  if (n > 0) CHECK_CU(cuGraphGetNodes(g, nodes.data(), &n));
  CHECK_TRUE(n == nodes.size(), "cuGraphGetNodes count changed");
  return nodes;
}

CUgraphNodeType TypeOf(CUgraphNode n) {
  CUgraphNodeType t;
  CHECK_CU(cuGraphNodeGetType(n, &t));
  return t;
}

CUgraphNode KernelNodeOf(CUgraph g, CUfunction f) {
  for (CUgraphNode n : Nodes(g)) {
    if (TypeOf(n) != CU_GRAPH_NODE_TYPE_KERNEL) continue;
    CUDA_KERNEL_NODE_PARAMS p;
    CHECK_CU(cuGraphKernelNodeGetParams(n, &p));
    if (p.func == f) return n;
  }
  Fail("no kernel node runs the expected function");
}

}  // namespace

int main(int argc, char** argv) {
  Init(argc, argv, "graphs");
  CUmodule mod = LoadModule(argv[1]);
  CUfunction saxpy, copy, fill;
  CHECK_CU(cuModuleGetFunction(&saxpy, mod, "saxpy"));
  CHECK_CU(cuModuleGetFunction(&copy, mod, "copy_u32"));
  CHECK_CU(cuModuleGetFunction(&fill, mod, "fill_u32"));

  DeviceBuffer x(kN * sizeof(float)), y(kN * sizeof(float));
  DeviceBuffer c(kN * sizeof(unsigned)), d(kN * sizeof(unsigned));
  std::vector<float> hx(kN), hy(kN);
  std::vector<unsigned> hu(kN);
  for (int i = 0; i < kN; ++i) hx[i] = static_cast<float>(i % 100);
  CHECK_CU(cuMemcpyHtoD(x.get(), hx.data(), kN * sizeof(float)));
  CHECK_CU(cuMemsetD32(y.get(), 0, kN));
  CHECK_CU(cuMemsetD32(c.get(), 0, kN));
  CHECK_CU(cuMemsetD32(d.get(), 0, kN));

  CUstream s1, s2;
  CHECK_CU(cuStreamCreate(&s1, CU_STREAM_NON_BLOCKING));
  CHECK_CU(cuStreamCreate(&s2, CU_STREAM_NON_BLOCKING));
  CUevent fork, join;
  CHECK_CU(cuEventCreate(&fork, CU_EVENT_DISABLE_TIMING));
  CHECK_CU(cuEventCreate(&join, CU_EVENT_DISABLE_TIMING));

  // ------------------------------------------------ capture with two streams
  std::printf("before capture: s1 %s, legacy %s\n", Capturing(s1).c_str(),
              Capturing(CU_STREAM_LEGACY).c_str());
  CHECK_CU(cuStreamBeginCapture(s1, CU_STREAM_CAPTURE_MODE_GLOBAL));
  std::printf("capturing: s1 %s, s2 %s\n", Capturing(s1).c_str(), Capturing(s2).c_str());
  const cuuint64_t id1 = CaptureId(s1);
  std::printf("capture id nonzero: %s\n", id1 != 0 ? "yes" : "no");

  CUdeviceptr px = x.get(), py = y.get(), pc = c.get(), pd = d.get();
  int n = kN;
  float a = 2.0f;
  void* saxpy_args[] = {&a, &px, &py, &n};
  void* copy_args[] = {&pc, &pd, &n};
  CHECK_CU(cuMemsetD32Async(c.get(), 7, kN, s1));
  CHECK_CU(
      cuLaunchKernel(saxpy, Blocks(kN, kBlock), 1, 1, kBlock, 1, 1, 0, s1, saxpy_args, nullptr));
  CHECK_CU(cuEventRecord(fork, s1));
  CHECK_CU(cuStreamWaitEvent(s2, fork, 0));
  std::printf("after the fork: s2 %s, same capture id: %s\n", Capturing(s2).c_str(),
              CaptureId(s2) == id1 ? "yes" : "no");
  CHECK_CU(cuLaunchKernel(copy, Blocks(kN, kBlock), 1, 1, kBlock, 1, 1, 0, s2, copy_args, nullptr));
  CHECK_CU(cuEventRecord(join, s2));
  CHECK_CU(cuStreamWaitEvent(s1, join, 0));

  CUstreamCaptureStatus status;
  cuuint64_t id = 0;
  CUgraph capture_graph = nullptr;
  const CUgraphNode* deps = nullptr;
  size_t num_deps = 0;
  CHECK_CU(cuStreamGetCaptureInfo(s1, &status, &id, &capture_graph, &deps, nullptr, &num_deps));
  std::printf("capture info: %s, graph %s, %zu dependencies after the join\n", StatusName(status),
              capture_graph != nullptr ? "set" : "null", num_deps);
  for (size_t i = 0; i < num_deps; ++i) {
    std::printf("  dependency %zu: %s\n", i, NodeTypeName(TypeOf(deps[i])));
  }

  CUgraph graph = nullptr;
  CHECK_CU(cuStreamEndCapture(s1, &graph));
  CHECK_TRUE(graph != nullptr, "no graph from cuStreamEndCapture");
  std::printf("ended: graph %s, same graph as during the capture: %s\n",
              graph != nullptr ? "set" : "null", graph == capture_graph ? "yes" : "no");
  std::printf("after capture: s1 %s, s2 %s\n", Capturing(s1).c_str(), Capturing(s2).c_str());
  // Nothing ran during the capture.
  CHECK_CU(cuMemcpyDtoH(hu.data(), d.get(), kN * sizeof(unsigned)));
  for (int i = 0; i < kN; ++i) CHECK_TRUE(hu[i] == 0, "captured work ran");
  std::printf("captured work did not run: yes\n");

  const std::vector<CUgraphNode> nodes = Nodes(graph);
  std::printf("captured graph: %zu nodes\n", nodes.size());
  for (size_t i = 0; i < nodes.size(); ++i) {
    std::printf("  node %zu: %s\n", i, NodeTypeName(TypeOf(nodes[i])));
  }
  CUgraphNode saxpy_node = KernelNodeOf(graph, saxpy);
  CUgraphNode copy_node = KernelNodeOf(graph, copy);
  size_t n_copy_deps = 0;
  CHECK_CU(cuGraphNodeGetDependencies(copy_node, nullptr, nullptr, &n_copy_deps));
  std::vector<CUgraphNode> copy_deps(n_copy_deps);
  if (n_copy_deps > 0)
    CHECK_CU(cuGraphNodeGetDependencies(copy_node, copy_deps.data(), nullptr, &n_copy_deps));
  std::printf("copy node depends on the saxpy node: %s\n",
              n_copy_deps == 1 && copy_deps[0] == saxpy_node ? "yes" : "no");

  // Kernel node parameters: read them, then change a in the graph.
  CUDA_KERNEL_NODE_PARAMS kp;
  CHECK_CU(cuGraphKernelNodeGetParams(saxpy_node, &kp));
  float read_a = 0;
  std::memcpy(&read_a, kp.kernelParams[0], sizeof(read_a));
  CUdeviceptr read_y = 0;
  std::memcpy(&read_y, kp.kernelParams[2], sizeof(read_y));
  int read_n = 0;
  std::memcpy(&read_n, kp.kernelParams[3], sizeof(read_n));
  std::printf("saxpy node: func matches %s, grid %u, block %u, a %.1f, y matches %s, n %d\n",
              kp.func == saxpy ? "yes" : "no", kp.gridDimX, kp.blockDimX, read_a,
              read_y == y.get() ? "yes" : "no", read_n);
  a = 3.0f;
  kp.kernelParams = saxpy_args;
  kp.extra = nullptr;
  CHECK_CU(cuGraphKernelNodeSetParams(saxpy_node, &kp));

  CUgraphExec exec = nullptr;
  CHECK_CU(cuGraphInstantiateWithFlags(&exec, graph, 0));
  CHECK_CU(cuGraphUpload(exec, s1));
  for (int i = 0; i < kLaunches; ++i) CHECK_CU(cuGraphLaunch(exec, s1));
  CHECK_CU(cuStreamSynchronize(s1));
  CHECK_CU(cuMemcpyDtoH(hy.data(), y.get(), kN * sizeof(float)));
  CHECK_CU(cuMemcpyDtoH(hu.data(), d.get(), kN * sizeof(unsigned)));
  for (int i = 0; i < kN; ++i) {
    CHECK_TRUE(hy[i] == 3.0f * kLaunches * hx[i],
               "y after the launches, element " + std::to_string(i));
    CHECK_TRUE(hu[i] == 7, "d after the launches, element " + std::to_string(i));
  }
  std::printf("%d launches: y = %d * x, d = 7: ok\n", kLaunches, 3 * kLaunches);

  // Changing the executable graph's node leaves the graph alone.
  a = 1.0f;
  CHECK_CU(cuGraphExecKernelNodeSetParams(exec, saxpy_node, &kp));
  CHECK_CU(cuGraphLaunch(exec, s1));
  CHECK_CU(cuStreamSynchronize(s1));
  CHECK_CU(cuMemcpyDtoH(hy.data(), y.get(), kN * sizeof(float)));
  for (int i = 0; i < kN; ++i) {
    CHECK_TRUE(hy[i] == (3.0f * kLaunches + 1.0f) * hx[i], "y after the exec update");
  }
  CUDA_KERNEL_NODE_PARAMS again;
  CHECK_CU(cuGraphKernelNodeGetParams(saxpy_node, &again));
  float graph_a = 0;
  std::memcpy(&graph_a, again.kernelParams[0], sizeof(graph_a));
  std::printf("exec update: y = %d * x; the graph's node still has a %.1f\n", 3 * kLaunches + 1,
              graph_a);
  CHECK_CU(cuGraphExecDestroy(exec));
  CHECK_CU(cuGraphDestroy(graph));

  // ------------------------------------------------ illegal during a capture
  unsigned v = 1;
  void* fill_args[] = {&pd, &v, &n};
  CHECK_CU(cuStreamBeginCapture(s1, CU_STREAM_CAPTURE_MODE_GLOBAL));
  CHECK_CU(cuLaunchKernel(fill, Blocks(kN, kBlock), 1, 1, kBlock, 1, 1, 0, s1, fill_args, nullptr));
  std::printf("synchronize a capturing stream: %s\n", ResultName(cuStreamSynchronize(s1)).c_str());
  std::printf("  then: s1 %s\n", Capturing(s1).c_str());
  graph = reinterpret_cast<CUgraph>(1);
  const CUresult ended = cuStreamEndCapture(s1, &graph);
  std::printf("  end capture: %s, graph %s\n", ResultName(ended).c_str(),
              graph == nullptr ? "null" : "set");
  std::printf("  after: s1 %s\n", Capturing(s1).c_str());

  // cuMemAlloc is potentially unsafe: refused in global mode...
  CHECK_CU(cuStreamBeginCapture(s1, CU_STREAM_CAPTURE_MODE_GLOBAL));
  CUdeviceptr scratch = 0;
  std::printf("cuMemAlloc during a global capture: %s\n",
              ResultName(cuMemAlloc(&scratch, 256)).c_str());
  graph = nullptr;
  std::printf("  end capture: %s\n", ResultName(cuStreamEndCapture(s1, &graph)).c_str());
  // ...and allowed once the thread relaxes its mode.
  CHECK_CU(cuStreamBeginCapture(s1, CU_STREAM_CAPTURE_MODE_GLOBAL));
  CUstreamCaptureMode mode = CU_STREAM_CAPTURE_MODE_RELAXED;
  CHECK_CU(cuThreadExchangeStreamCaptureMode(&mode));
  std::printf("previous thread mode global: %s\n",
              mode == CU_STREAM_CAPTURE_MODE_GLOBAL ? "yes" : "no");
  const CUresult alloc = cuMemAlloc(&scratch, 256);
  std::printf("cuMemAlloc in relaxed mode: %s\n", ResultName(alloc).c_str());
  if (alloc == CUDA_SUCCESS) CHECK_CU(cuMemFree(scratch));
  CHECK_CU(cuThreadExchangeStreamCaptureMode(&mode));
  CHECK_CU(cuLaunchKernel(fill, Blocks(kN, kBlock), 1, 1, kBlock, 1, 1, 0, s1, fill_args, nullptr));
  graph = nullptr;
  std::printf("  end capture: %s\n", ResultName(cuStreamEndCapture(s1, &graph)).c_str());
  if (graph != nullptr) CHECK_CU(cuGraphDestroy(graph));

  // The legacy stream may not be used while a blocking stream captures.
  CUstream blocking;
  CHECK_CU(cuStreamCreate(&blocking, CU_STREAM_DEFAULT));
  CHECK_CU(cuStreamBeginCapture(blocking, CU_STREAM_CAPTURE_MODE_RELAXED));
  std::printf("legacy stream query during a blocking capture: %s\n",
              Capturing(CU_STREAM_LEGACY).c_str());
  std::printf("legacy stream memset during a blocking capture: %s\n",
              ResultName(cuMemsetD32Async(c.get(), 1, kN, nullptr)).c_str());
  graph = nullptr;
  std::printf("  end capture: %s\n", ResultName(cuStreamEndCapture(blocking, &graph)).c_str());
  if (graph != nullptr) CHECK_CU(cuGraphDestroy(graph));
  std::printf(
      "capturing the legacy stream: %s\n",
      ResultName(cuStreamBeginCapture(CU_STREAM_LEGACY, CU_STREAM_CAPTURE_MODE_GLOBAL)).c_str());
  std::printf("ending a capture that never began: %s\n",
              ResultName(cuStreamEndCapture(s2, &graph)).c_str());
  CHECK_CU(cuStreamDestroy(blocking));

  // ------------------------------------------------------ a graph by hand
  CUgraph manual;
  CHECK_CU(cuGraphCreate(&manual, 0));
  v = 9;
  CUDA_KERNEL_NODE_PARAMS fp;
  std::memset(&fp, 0, sizeof(fp));
  fp.func = fill;
  fp.gridDimX = Blocks(kN, kBlock);
  fp.gridDimY = fp.gridDimZ = 1;
  fp.blockDimX = kBlock;
  fp.blockDimY = fp.blockDimZ = 1;
  fp.kernelParams = fill_args;
  CUgraphNode fill_node, copy_back;
  CHECK_CU(cuGraphAddKernelNode(&fill_node, manual, nullptr, 0, &fp));
  CUDA_KERNEL_NODE_PARAMS cp = fp;
  cp.func = copy;
  void* back_args[] = {&pd, &pc, &n};
  cp.kernelParams = back_args;
  CHECK_CU(cuGraphAddKernelNode(&copy_back, manual, &fill_node, 1, &cp));
  v = 0;  // the node keeps the value it was given
  size_t nd = 0;
  CHECK_CU(cuGraphNodeGetDependencies(copy_back, nullptr, nullptr, &nd));
  CUgraphNode dep = nullptr;
  if (nd == 1) CHECK_CU(cuGraphNodeGetDependencies(copy_back, &dep, nullptr, &nd));
  std::printf("manual graph: %zu nodes, copy depends on fill: %s\n", Nodes(manual).size(),
              nd == 1 && dep == fill_node ? "yes" : "no");
  CUgraphExec manual_exec;
  CHECK_CU(cuGraphInstantiateWithFlags(&manual_exec, manual, 0));
  CHECK_CU(cuGraphLaunch(manual_exec, s2));
  CHECK_CU(cuStreamSynchronize(s2));
  CHECK_CU(cuMemcpyDtoH(hu.data(), c.get(), kN * sizeof(unsigned)));
  for (int i = 0; i < kN; ++i) CHECK_TRUE(hu[i] == 9, "manual graph result");
  std::printf("manual graph result: c = 9: ok\n");
  char path[] = "/tmp/wooly-graphs-dot-XXXXXX";
  const int fd = mkstemp(path);
  CHECK_TRUE(fd >= 0, "mkstemp");
  close(fd);
  CHECK_CU(cuGraphDebugDotPrint(manual, path, 0));
  std::FILE* f = std::fopen(path, "r");
  CHECK_TRUE(f != nullptr, "dot file missing");
  const bool non_empty = std::fgetc(f) != EOF;
  std::fclose(f);
  std::remove(path);
  std::printf("dot file written: %s\n", non_empty ? "yes" : "no");
  CHECK_CU(cuGraphExecDestroy(manual_exec));
  CHECK_CU(cuGraphDestroy(manual));

  CHECK_CU(cuEventDestroy(fork));
  CHECK_CU(cuEventDestroy(join));
  CHECK_CU(cuStreamDestroy(s1));
  CHECK_CU(cuStreamDestroy(s2));
  CHECK_CU(cuModuleUnload(mod));
  Pass();
  return 0;
}
