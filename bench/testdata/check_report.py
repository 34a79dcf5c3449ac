#!/usr/bin/env python3
"""CI check (label bench) that bench/report.py formats a canned run: the table's
header, ratio orientation (> 1.0 means Wooly is better), missing, skipped and
failed cells, and the targets list. Usage: check_report.py path/to/report.py"""

import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

EXPECT = [
    "| row | native | wooly shm | ratio | wooly tcp | ratio |",
    # rate: Wooly / native
    "| launch_async (launches/s) | 400,000 | 360,000 | 0.90x | 200,000 | 0.50x |",
    # time: native / Wooly
    "| launch_sync (us) | 10.00 | 40.00 | 0.25x | 50.00 | 0.20x |",
    # no tcp row at all
    "| memcpy_h2d_pinned_1GiB (GB/s) | 54.00 | 27.00 | 0.50x | - | - |",
    "| decode_b1 (tokens/s) | skipped | skipped | - | - | - |",
    "| train_step | - | - | - | error | - |",
    "| train_step_transformer (ms) | 25.50 | - | - | - | - |",
    "- driver.device: Test GPU",
    "- async launch throughput >= 0.9x native: launch_async over shm, minimum 0.90x: 0.90x (met)",
    "- launch + synchronize round trip <= 2.0x native time: launch_sync over shm, "
    "minimum 0.50x: 0.25x (NOT MET)",
    "- decode_b1 (shm): skipped: transformers is not installed",
    "- train_step (tcp): error: exit 1: out of memory",
    "- 1 malformed or unknown input lines ignored",
    "- GPU: Test GPU",
]


def main():
    report = sys.argv[1]
    p = subprocess.run([sys.executable, report, os.path.join(HERE, "sample.jsonl"),
                        "--meta", "GPU=Test GPU"],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
    out = p.stdout.decode("utf-8", "replace")
    lines = out.splitlines()
    missing = [e for e in EXPECT if e not in lines]
    if p.returncode != 0 or missing:
        print(out)
        print("FAIL: report.py exited %d; missing lines:" % p.returncode)
        for m in missing:
            print("  " + m)
        return 1
    print("PASS report")
    return 0


if __name__ == "__main__":
    sys.exit(main())
