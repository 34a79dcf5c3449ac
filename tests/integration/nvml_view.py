#!/usr/bin/env python3
"""The NVML view against a real woolyd (woolyd-fake): two tenants, each a
process that allocates through Wooly's libcuda.so.1 and then asks Wooly's
libnvidia-ml.so.1 (both loaded with ctypes, as pynvml does), must each see
only their own limit, use and process.

  nvml_view.py --server build/tests/fake/woolyd-fake --client-dir build/client \
      --nvml-dir build/nvml [--transport unix|tcp]

Every wait is bounded; exit status 0 on success, 1 on any failure.
"""

import argparse
import ctypes
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

MiB = 1 << 20
STEP_TIMEOUT_S = 60
TENANTS = {  # name: (WOOLY_MEMORY_LIMIT, its value in bytes, bytes to allocate)
    "a": ("1GiB", 1024 * MiB, 256 * MiB),
    "b": ("512MiB", 512 * MiB, 96 * MiB),
}


class Memory(ctypes.Structure):
    _fields_ = [("total", ctypes.c_ulonglong), ("free", ctypes.c_ulonglong),
                ("used", ctypes.c_ulonglong)]


class Utilization(ctypes.Structure):
    _fields_ = [("gpu", ctypes.c_uint), ("memory", ctypes.c_uint)]


class ProcessInfo(ctypes.Structure):  # nvmlProcessInfo_t (v2/v3)
    _fields_ = [("pid", ctypes.c_uint), ("usedGpuMemory", ctypes.c_ulonglong),
                ("gpuInstanceId", ctypes.c_uint), ("computeInstanceId", ctypes.c_uint)]


def child(client_dir, alloc):
    """One tenant process: allocate, report, query NVML on "go", exit on "exit"."""
    cuda = ctypes.CDLL(os.path.join(client_dir, "libcuda.so.1"))
    dev, ctx, ptr = ctypes.c_int(), ctypes.c_void_p(), ctypes.c_ulonglong()
    for call, args in (("cuInit", (0,)), ("cuDeviceGet", (ctypes.byref(dev), 0)),
                       ("cuDevicePrimaryCtxRetain", (ctypes.byref(ctx), dev)),
                       ("cuCtxSetCurrent", (ctx,)),
                       ("cuMemAlloc_v2", (ctypes.byref(ptr), ctypes.c_size_t(alloc)))):
        r = getattr(cuda, call)(*args)
        if r != 0:
            print("ERROR %s returned %d" % (call, r), flush=True)
            return 1
    free, total = ctypes.c_size_t(), ctypes.c_size_t()
    cuda.cuMemGetInfo_v2(ctypes.byref(free), ctypes.byref(total))
    print("ALLOCATED", flush=True)
    if sys.stdin.readline().strip() != "go":
        return 1

    out = {"pid": os.getpid(), "cu_total": total.value, "cu_free": free.value}
    nvml = ctypes.CDLL("libnvidia-ml.so.1")  # found through LD_LIBRARY_PATH
    with open("/proc/self/maps") as f:
        out["libs"] = sorted({l.split()[-1] for l in f if "libnvidia-ml" in l})
    out["init"] = nvml.nvmlInit_v2()
    handle = ctypes.c_void_p()
    out["handle"] = nvml.nvmlDeviceGetHandleByIndex_v2(0, ctypes.byref(handle))
    name = ctypes.create_string_buffer(96)
    out["name_rc"] = nvml.nvmlDeviceGetName(handle, name, 96)
    out["name"] = name.value.decode()
    mem = Memory()
    out["mem_rc"] = nvml.nvmlDeviceGetMemoryInfo(handle, ctypes.byref(mem))
    out["total"], out["used"], out["free"] = mem.total, mem.used, mem.free
    util = Utilization()
    out["util_rc"] = nvml.nvmlDeviceGetUtilizationRates(handle, ctypes.byref(util))
    out["util"] = util.gpu
    count = ctypes.c_uint(8)
    procs = (ProcessInfo * 8)()
    out["procs_rc"] = nvml.nvmlDeviceGetComputeRunningProcesses_v3(handle, ctypes.byref(count),
                                                                   procs)
    out["procs"] = [[procs[i].pid, procs[i].usedGpuMemory] for i in range(count.value)]
    out["shutdown"] = nvml.nvmlShutdown()
    print("RESULT " + json.dumps(out), flush=True)
    if sys.stdin.readline().strip() != "exit":
        return 1
    cuda.cuMemFree_v2(ptr)
    return 0


def read_line(proc, prefix):
    """The child's next line starting with prefix (bounded by the child's
    own timeout: it is killed when the test times out)."""
    for line in proc.stdout:
        if line.startswith(prefix) or line.startswith("ERROR"):
            return line.rstrip("\n")
    return ""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--server")
    ap.add_argument("--client-dir", required=True)
    ap.add_argument("--nvml-dir")
    ap.add_argument("--transport", choices=["unix", "tcp"], default="unix")
    ap.add_argument("--child", type=int, help=argparse.SUPPRESS)  # bytes to allocate
    args = ap.parse_args()
    if args.child is not None:
        return child(args.client_dir, args.child)

    failures = []

    def check(what, ok, detail):
        print("%-40s %s (%s)" % (what, "PASS" if ok else "FAIL", detail))
        if not ok:
            failures.append(what)

    try:
        with harness.Woolyd(args.server) as server:
            endpoint = server.endpoint(args.transport)
            procs = {}
            try:
                for t, (limit, _, alloc) in TENANTS.items():
                    env = harness.client_env(args.client_dir, endpoint, {
                        "WOOLY_TENANT": t, "WOOLY_MEMORY_LIMIT": limit,
                        "WOOLY_NVML_CACHE_MS": "0", "WOOLY_CLIENT_NAME": "nvml-view-" + t})
                    env["LD_LIBRARY_PATH"] = args.nvml_dir + ":" + env["LD_LIBRARY_PATH"]
                    procs[t] = subprocess.Popen(
                        ["timeout", "-k", "5", str(3 * STEP_TIMEOUT_S), sys.executable,
                         os.path.abspath(__file__), "--client-dir", args.client_dir,
                         "--child", str(alloc)],
                        env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                        stderr=subprocess.STDOUT, text=True)
                # Both hold their memory before either asks.
                for t, p in procs.items():
                    line = read_line(p, "ALLOCATED")
                    if line != "ALLOCATED":
                        raise harness.HarnessError("tenant %s: %s\n%s" %
                                                   (t, line or "no output", server.log_tail()))
                results = {}
                for t, p in procs.items():
                    p.stdin.write("go\n")
                    p.stdin.flush()
                    line = read_line(p, "RESULT ")
                    if not line.startswith("RESULT "):
                        raise harness.HarnessError("tenant %s: %s\n%s" %
                                                   (t, line or "no result", server.log_tail()))
                    results[t] = json.loads(line[len("RESULT "):])
                for p in procs.values():
                    p.stdin.write("exit\n")
                    p.stdin.flush()
                for t, p in procs.items():
                    rc = p.wait(timeout=STEP_TIMEOUT_S)
                    check("tenant %s exited cleanly" % t, rc == 0, "exit %d" % rc)
            finally:
                for p in procs.values():
                    if p.poll() is None:
                        p.kill()
                        p.wait()

            for t, r in results.items():
                _, limit, alloc = TENANTS[t]
                print("tenant %s: %s" % (t, json.dumps(r)))
                ours = [os.path.realpath(l) for l in r["libs"]]
                check("%s loaded Wooly's NVML" % t,
                      ours and all(os.path.dirname(l) == os.path.realpath(args.nvml_dir)
                                   for l in ours), ours)
                check("%s calls succeeded" % t,
                      all(r[k] == 0 for k in ("init", "handle", "name_rc", "mem_rc", "util_rc",
                                              "procs_rc", "shutdown")),
                      {k: r[k] for k in ("init", "handle", "name_rc", "mem_rc", "util_rc",
                                         "procs_rc", "shutdown")})
                check("%s name carries the marker" % t, r["name"].endswith(" (Wooly)"), r["name"])
                check("%s total = its limit" % t, r["total"] == limit, r["total"])
                check("%s used = its allocation" % t, alloc <= r["used"] <= alloc + 16 * MiB,
                      r["used"])
                check("%s free = total - used" % t, r["free"] <= r["total"] - r["used"],
                      r["free"])
                check("%s cuMemGetInfo total = its limit" % t, r["cu_total"] == limit,
                      r["cu_total"])
                check("%s processes: only its own" % t,
                      [p[0] for p in r["procs"]] == [r["pid"]] and r["procs"][0][1] >= alloc,
                      r["procs"])
                check("%s utilization in 0..100" % t, 0 <= r["util"] <= 100, r["util"])
    except harness.HarnessError as e:
        print("FAIL: %s" % e)
        return 1
    except (OSError, ValueError, subprocess.TimeoutExpired) as e:
        print("FAIL: %r" % e)
        return 1
    if failures:
        print("FAIL: %d checks failed" % len(failures))
        return 1
    print("PASS nvml_view (%s)" % args.transport)
    return 0


if __name__ == "__main__":
    sys.exit(main())
