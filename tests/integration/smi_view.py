#!/usr/bin/env python3
"""wooly-smi (Wooly's nvidia-smi front-end) against a real woolyd
(woolyd-fake) and the built libnvidia-ml.so.1: two tenants allocate through
Wooly's libcuda.so.1; `nvidia-smi` run as tenant a must show a's limit, use
and process only, in each supported output, and say it is Wooly's view.

  smi_view.py --server build/tests/fake/woolyd-fake --client-dir build/client \
      --nvml-dir build/nvml --smi build/smi/nvidia-smi [--transport unix|tcp]

Reuses nvml_view.py's tenant processes. Every wait is bounded; exit status 0
on success, 1 on any failure.
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import nvml_view  # noqa: E402

MiB = 1 << 20
STEP_TIMEOUT_S = 60


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--server", required=True)
    ap.add_argument("--client-dir", required=True)
    ap.add_argument("--nvml-dir", required=True)
    ap.add_argument("--smi", required=True, help="the nvidia-smi link to wooly-smi")
    ap.add_argument("--transport", choices=["unix", "tcp"], default="unix")
    args = ap.parse_args()
    failures = []

    def check(what, ok, detail):
        print("%-44s %s (%s)" % (what, "PASS" if ok else "FAIL", detail))
        if not ok:
            failures.append(what)

    def env_for(endpoint, tenant, limit):
        env = harness.client_env(args.client_dir, endpoint, {
            "WOOLY_TENANT": tenant, "WOOLY_MEMORY_LIMIT": limit,
            "WOOLY_NVML_CACHE_MS": "0", "WOOLY_CLIENT_NAME": "smi-view-" + tenant})
        env["LD_LIBRARY_PATH"] = args.nvml_dir + ":" + env["LD_LIBRARY_PATH"]
        return env

    def smi(env, *argv):
        p = subprocess.run([args.smi] + list(argv), env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, timeout=STEP_TIMEOUT_S)
        return p.returncode, p.stdout

    try:
        with harness.Woolyd(args.server) as server:
            endpoint = server.endpoint(args.transport)
            procs, results = {}, {}
            try:
                for t, (limit, _, alloc) in nvml_view.TENANTS.items():
                    procs[t] = subprocess.Popen(
                        ["timeout", "-k", "5", str(3 * STEP_TIMEOUT_S), sys.executable,
                         nvml_view.__file__, "--client-dir", args.client_dir,
                         "--child", str(alloc)],
                        env=env_for(endpoint, t, limit), stdin=subprocess.PIPE,
                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                for t, p in procs.items():
                    line = nvml_view.read_line(p, "ALLOCATED")
                    if line != "ALLOCATED":
                        raise harness.HarnessError("tenant %s: %s\n%s" %
                                                   (t, line or "no output", server.log_tail()))
                for t, p in procs.items():  # what the tenant itself sees through NVML
                    p.stdin.write("go\n")
                    p.stdin.flush()
                    line = nvml_view.read_line(p, "RESULT ")
                    if not line.startswith("RESULT "):
                        raise harness.HarnessError("tenant %s: %s" % (t, line or "no result"))
                    results[t] = json.loads(line[len("RESULT "):])

                a, b = results["a"], results["b"]
                env = env_for(endpoint, "a", nvml_view.TENANTS["a"][0])
                total_mib, used_mib = a["total"] // MiB, a["used"] // MiB

                rc, out = smi(env)
                print(out)
                check("table: exit 0", rc == 0, rc)
                check("table: says Wooly view, tenant a",
                      "Wooly view of " in out and "(tenant a)" in out, out.splitlines()[:2])
                check("table: a's used / total",
                      re.search(r"\b%dMiB /\s+%dMiB" % (used_mib, total_mib), out) is not None,
                      (used_mib, total_mib))
                check("table: a's pid, not b's",
                      re.search(r"\b%d\s+C\s" % a["pid"], out) is not None and
                      re.search(r"\b%d\s+C\s" % b["pid"], out) is None, (a["pid"], b["pid"]))

                rc, out = smi(env, "-L")
                check("-L: GPU 0 with marker and UUID",
                      rc == 0 and re.match(r"^GPU 0: .* \(Wooly\) \(UUID: GPU-[0-9a-f-]+\)\n$",
                                           out) is not None, out.strip())

                rc, out = smi(env, "--query-gpu=index,name,memory.total,memory.used,memory.free,"
                              "utilization.gpu,count,temperature.gpu",
                              "--format=csv,noheader,nounits")
                f = [x.strip() for x in out.strip().split(",")]
                check("--query-gpu: exit 0, 8 values", rc == 0 and len(f) == 8, out.strip())
                if len(f) == 8:
                    check("--query-gpu: index, marker name", f[0] == "0" and
                          f[1] == a["name"], f[:2])
                    check("--query-gpu: total/used/free = NVML's",
                          f[2:5] == [str(total_mib), str(used_mib), str(a["free"] // MiB)],
                          f[2:5])
                    check("--query-gpu: utilization, count, N/A temp",
                          0 <= int(f[5]) <= 100 and f[6] == "1" and f[7] == "[N/A]", f[5:])

                rc, out = smi(env, "--query-gpu=memory.total", "--format=csv")
                check("--query-gpu: header and units",
                      rc == 0 and out == "memory.total [MiB]\n%d MiB\n" % total_mib, out)

                rc, out = smi(env, "--query-compute-apps=pid,process_name,used_memory",
                              "--format=csv,noheader,nounits")
                rows = [[x.strip() for x in l.split(",")] for l in out.strip().splitlines()]
                check("--query-compute-apps: a's process only",
                      rc == 0 and len(rows) == 1 and rows[0][0] == str(a["pid"]) and
                      int(rows[0][2]) == a["procs"][0][1] // MiB and rows[0][1] != "",
                      rows)

                rc, out = smi(env, "-q")
                check("-q: log with a's memory",
                      rc == 0 and "NVSMI LOG" in out and
                      re.search(r"Total\s+: %d MiB" % total_mib, out) is not None and
                      re.search(r"Process ID\s+: %d\n" % a["pid"], out) is not None, rc)

                rc, out = smi(env, "--query-gpu=bogus", "--format=csv")
                check("invalid field: exit 2", rc == 2 and
                      out == 'Field "bogus" is not a valid field to query.\n', (rc, out.strip()))
                rc, out = smi(env, "-x")
                check("unsupported option: exit 2",
                      rc == 2 and "option -x is not supported" in out, (rc, out.strip()))

                # Tenant b sees its own figures.
                rc, out = smi(env_for(endpoint, "b", nvml_view.TENANTS["b"][0]),
                              "--query-gpu=memory.total,memory.used", "--format=csv,noheader,nounits")
                check("tenant b: its own total/used",
                      rc == 0 and out.strip() == "%d, %d" % (b["total"] // MiB, b["used"] // MiB),
                      out.strip())

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

        # No NVML library at all: hand over to the next nvidia-smi on PATH,
        # skipping wooly-smi's own directory.
        tmp = tempfile.mkdtemp(prefix="smi-real-")
        try:
            real = os.path.join(tmp, "nvidia-smi")
            with open(real, "w") as fh:
                fh.write("#!/bin/sh\necho \"REAL NVIDIA-SMI $*\"\n")
            os.chmod(real, 0o755)
            env = dict(os.environ)
            env.pop("LD_PRELOAD", None)
            env["LD_LIBRARY_PATH"] = tmp
            env["PATH"] = os.path.dirname(os.path.abspath(args.smi)) + ":" + tmp + ":/usr/bin:/bin"
            p = subprocess.run(["nvidia-smi", "-L"], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, timeout=STEP_TIMEOUT_S)
            check("no Wooly NVML: hands over to the real one",
                  p.returncode == 0 and p.stdout == "REAL NVIDIA-SMI -L\n", p.stdout.strip())
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    except harness.HarnessError as e:
        print("FAIL: %s" % e)
        return 1
    except (OSError, ValueError, subprocess.TimeoutExpired) as e:
        print("FAIL: %r" % e)
        return 1
    if failures:
        print("FAIL: %d checks failed" % len(failures))
        return 1
    print("PASS smi_view (%s)" % args.transport)
    return 0


if __name__ == "__main__":
    sys.exit(main())
