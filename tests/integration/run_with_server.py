#!/usr/bin/env python3
"""Starts woolyd(-fake), runs one program through Wooly's libcuda.so.1 over
the chosen transport, stops the server.

  run_with_server.py --server build/tests/fake/woolyd-fake \
      --client-dir build/client --transport tcp --expect "PASS vector_add" \
      -- build/tests/programs/vector_add build/tests/kernels/test_kernels.fake

Exit status: the program's, or 1 when the server misbehaved or the expected
line is missing.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--server", required=True)
    ap.add_argument("--client-dir", required=True,
                    help="directory holding Wooly's libcuda.so.1")
    ap.add_argument("--transport", choices=["unix", "tcp"], default="unix")
    ap.add_argument("--expect", help="a line the program's output must contain")
    ap.add_argument("--timeout", type=int, default=300)
    ap.add_argument("program", nargs=argparse.REMAINDER)
    args = ap.parse_args()
    prog = args.program[1:] if args.program[:1] == ["--"] else args.program
    if not prog:
        ap.error("no program given")
    if not os.path.exists(os.path.join(args.client_dir, "libcuda.so.1")):
        print("FAIL: no libcuda.so.1 in %s" % args.client_dir)
        return 1

    try:
        with harness.Woolyd(args.server) as server:
            endpoint = server.endpoint(args.transport)
            print("server ready: %s" % endpoint)
            rc, out = harness.run_program(prog, harness.client_env(args.client_dir, endpoint),
                                          args.timeout)
            sys.stdout.write(out)
            if not server.alive():
                print("FAIL: the server died while the program ran\n" + server.log_tail())
                return 1
            if rc != 0:
                print("FAIL: program exited with %d\n%s" % (rc, server.log_tail()))
                return rc if 0 < rc < 256 else 1
            if args.expect and args.expect not in out.splitlines():
                print("FAIL: expected line %r missing" % args.expect)
                return 1
    except harness.HarnessError as e:
        print("FAIL: %s" % e)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
