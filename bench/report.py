#!/usr/bin/env python3
"""Turns the JSON lines of bench/ runs into a Markdown table of Wooly against native.

  report.py --native N.jsonl --shm S.jsonl --tcp T.jsonl [--meta KEY=VALUE ...]
            [--note TEXT ...] [--md-out bench.md] [--jsonl-out bench.jsonl]
  report.py bench.jsonl          re-render a combined file (records carry "mode")

Input lines that are not JSON objects are ignored (programs may print other
text); so are records without a name. A record is a row
  {"bench":..., "name":..., "unit":..., "value":..., "higher_is_better":..., "params":{...}}
optionally with "skipped": REASON or "error": REASON instead of a value, or an
information record {"bench":..., "info":{...}}. Rows missing from a run show
as "-". Needs only the Python standard library.
"""

import argparse
import fnmatch
import json
import statistics
import sys

MODES = ("native", "shm", "tcp")
LEGEND = ("ratio > 1.0 means Wooly is better than native: Wooly rate / native rate for "
          "rates (higher is better), native time / Wooly time for times (lower is better). "
          "\"wooly shm\" is the unix-socket endpoint, where the client negotiates the "
          "shared-memory channel when it has one (WOOLY_SHM=0 disables it); \"wooly tcp\" is "
          "gRPC on TCP loopback.")

# The targets: (row glob, mode, minimum ratio, wording).
TARGETS = [
    ("launch_async", "shm", 0.9, "async launch throughput >= 0.9x native"),
    ("launch_sync", "shm", 1 / 2.0, "launch + synchronize round trip <= 2.0x native time"),
    ("memcpy_*_pinned_1GiB", "shm", 0.9, "pinned 1 GiB copies >= 0.9x native"),
    ("memcpy_*_pageable_*", "shm", 1.0, "pageable copies >= 1.0x native"),
    ("tiny_op_add", "shm", 1 / 1.15, "PyTorch tiny op <= 1.15x native time"),
    ("matmul_bf16_8192", "shm", 0.98, "8192 bf16 matmul >= 0.98x native"),
    ("decode_b1", "shm", 0.95, "decode tokens/s >= 0.95x native (batch 1)"),
    ("decode_b16", "shm", 0.95, "decode tokens/s >= 0.95x native (batch 16)"),
    ("decode_b1", "tcp", 0.8, "decode over TCP >= 0.8x native (batch 1)"),
    ("decode_b16", "tcp", 0.8, "decode over TCP >= 0.8x native (batch 16)"),
]


class Row:
    def __init__(self, name):
        self.name = name
        self.unit = ""
        self.higher = None
        self.values = {m: [] for m in MODES}
        self.notes = {m: [] for m in MODES}  # ("skipped" | "error", reason)

    def value(self, mode):
        v = self.values[mode]
        return statistics.median(v) if v else None

    def ratio(self, mode):
        n, w = self.value("native"), self.value(mode)
        if n is None or w is None or n <= 0 or w <= 0 or self.higher is None:
            return None
        return w / n if self.higher else n / w


class Results:
    def __init__(self):
        self.rows = {}  # name -> Row, in order of first appearance
        self.info = {m: {} for m in MODES}
        self.records = []  # every accepted record, with "mode", for --jsonl-out
        self.ignored = 0

    def add_file(self, path, mode=None):
        try:
            f = open(path, encoding="utf-8", errors="replace")
        except OSError as e:
            print("report.py: cannot read %s: %s" % (path, e), file=sys.stderr)
            return
        with f:
            for line in f:
                line = line.strip()
                if not line.startswith("{"):
                    continue
                try:
                    rec = json.loads(line)
                except ValueError:
                    self.ignored += 1
                    continue
                if not isinstance(rec, dict):
                    self.ignored += 1
                    continue
                self.add(rec, mode or rec.get("mode"))

    def add(self, rec, mode):
        if mode not in MODES:
            self.ignored += 1
            return
        rec = dict(rec, mode=mode)
        if isinstance(rec.get("info"), dict):
            for k, v in rec["info"].items():
                self.info[mode].setdefault("%s.%s" % (rec.get("bench", "?"), k), v)
            self.records.append(rec)
            return
        name = rec.get("name")
        if not isinstance(name, str) or not name:
            self.ignored += 1
            return
        row = self.rows.setdefault(name, Row(name))
        if isinstance(rec.get("unit"), str) and rec["unit"]:
            row.unit = rec["unit"]
        if isinstance(rec.get("higher_is_better"), bool):
            row.higher = rec["higher_is_better"]
        value = rec.get("value")
        if rec.get("error"):
            row.notes[mode].append(("error", str(rec["error"])))
        elif rec.get("skipped"):
            row.notes[mode].append(("skipped", str(rec["skipped"])))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            row.values[mode].append(float(value))
        else:
            row.notes[mode].append(("error", "no value"))
        self.records.append(rec)


def fmt_value(v):
    if v is None:
        return None
    a = abs(v)
    if a >= 10000:
        return "{:,.0f}".format(v)
    if a >= 100:
        return "%.1f" % v
    if a >= 10:
        return "%.2f" % v
    return "%.3g" % v


def fmt_ratio(r):
    return "-" if r is None else "%.2fx" % r


def cell(row, mode):
    v = fmt_value(row.value(mode))
    if v is not None:
        return v
    if row.notes[mode]:
        return row.notes[mode][-1][0]
    return "-"


def render(res, meta, notes):
    out = ["# Wooly benchmarks", ""]
    for k, v in meta:
        out.append("- %s: %s" % (k, v))
    # What the benchmark programs themselves reported (device name, versions):
    # once when every run agrees, else per run.
    keys = sorted({k for m in MODES for k in res.info[m]})
    for k in keys:
        seen = [(m, res.info[m][k]) for m in MODES if k in res.info[m]]
        if len({json.dumps(v, sort_keys=True) for _, v in seen}) == 1:
            out.append("- %s: %s" % (k, seen[0][1]))
        else:
            out += ["- %s (%s run): %s" % (k, m, v) for m, v in seen]
    out += ["", LEGEND, ""]
    out.append("| row | native | wooly shm | ratio | wooly tcp | ratio |")
    out.append("|---|---:|---:|---:|---:|---:|")
    for row in res.rows.values():
        label = "%s (%s)" % (row.name, row.unit) if row.unit else row.name
        out.append("| %s | %s | %s | %s | %s | %s |" % (
            label, cell(row, "native"), cell(row, "shm"), fmt_ratio(row.ratio("shm")),
            cell(row, "tcp"), fmt_ratio(row.ratio("tcp"))))
    if not res.rows:
        out.append("| (no rows) | - | - | - | - | - |")

    # Why cells are empty.
    why = []
    for row in res.rows.values():
        for mode in MODES:
            if row.value(mode) is None and row.notes[mode]:
                kind, reason = row.notes[mode][-1]
                why.append("- %s (%s): %s: %s" % (row.name, mode, kind, reason[:300]))
    if why:
        out += ["", "Rows without a value:", ""] + why

    # The targets, when there is a native run to compare with.
    if any(row.value("native") is not None for row in res.rows.values()):
        out += ["", "Targets (ratio >= minimum):", ""]
        for pattern, mode, minimum, text in TARGETS:
            matched = [r for n, r in res.rows.items() if fnmatch.fnmatchcase(n, pattern)]
            if not matched:
                out.append("- %s: not measured" % text)
                continue
            for row in matched:
                r = row.ratio(mode)
                if r is None:
                    verdict = "not measured"
                else:
                    verdict = "%s (%s)" % (fmt_ratio(r), "met" if r >= minimum else "NOT MET")
                out.append("- %s: %s over %s, minimum %.2fx: %s" % (
                    text, row.name, mode, minimum, verdict))

    extra = list(notes)
    if res.ignored:
        extra.append("%d malformed or unknown input lines ignored" % res.ignored)
    if extra:
        out += ["", "Notes:", ""] + ["- " + n for n in extra]
    return "\n".join(out) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("combined", nargs="*", help="JSON lines whose records carry \"mode\"")
    for m in MODES:
        ap.add_argument("--" + m, action="append", default=[], metavar="FILE",
                        help="JSON lines of the %s run" % m)
    ap.add_argument("--meta", action="append", default=[], metavar="KEY=VALUE",
                    help="a header line (date, GPU, driver, ...)")
    ap.add_argument("--note", action="append", default=[], help="a note under the table")
    ap.add_argument("--md-out", help="also write the Markdown here")
    ap.add_argument("--jsonl-out", help="write every record, tagged with its mode, here")
    args = ap.parse_args()

    res = Results()
    for path in args.combined:
        res.add_file(path)
    for m in MODES:
        for path in getattr(args, m):
            res.add_file(path, m)

    meta = []
    for item in args.meta:
        k, sep, v = item.partition("=")
        meta.append((k, v) if sep else ("note", item))
    text = render(res, meta, args.note)
    sys.stdout.write(text)
    if args.md_out:
        with open(args.md_out, "w", encoding="utf-8") as f:
            f.write(text)
    if args.jsonl_out:
        with open(args.jsonl_out, "w", encoding="utf-8") as f:
            for rec in res.records:
                f.write(json.dumps(rec, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
