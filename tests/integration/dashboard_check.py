#!/usr/bin/env python3
"""The Grafana dashboard uses only metrics woolyd exports: starts woolyd-fake
with --metrics, scrapes it, and checks every wooly_* name in the dashboard's
queries against the scrape.

  dashboard_check.py --server woolyd-fake --dashboard deploy/grafana/wooly-dashboard.json
"""

import argparse
import json
import os
import re
import sys
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--server", required=True)
    ap.add_argument("--dashboard", required=True)
    args = ap.parse_args()
    with open(args.dashboard) as f:
        dash = json.load(f)
    used = set()
    for p in dash["panels"]:
        for t in p.get("targets", []):
            used.update(re.findall(r"\bwooly_[a-z_]+", t["expr"]))
    with harness.Woolyd(args.server, args=["--metrics", "127.0.0.1:0"]) as server:
        if not server.metrics:
            print("FAIL: woolyd wrote no metrics address")
            return 1
        with urllib.request.urlopen("http://%s/metrics" % server.metrics, timeout=20) as r:
            text = r.read().decode()
    exported = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            name, kind = line.split()[2:4]
            exported.add(name)
            if kind == "histogram":
                exported.update(name + s for s in ("_bucket", "_sum", "_count"))
    missing = sorted(used - exported)
    if missing:
        print("FAIL: the dashboard uses metrics woolyd does not export: %s" % ", ".join(missing))
        return 1
    print("PASS dashboard_check (%d metrics used, all exported)" % len(used))
    return 0


if __name__ == "__main__":
    sys.exit(main())
