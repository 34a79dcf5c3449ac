#!/usr/bin/env python3
"""Compares the PyTorch suite's native results with the Wooly run's.

    compare.py [--details FILE] [--times] [--width N] [--labels A,B] NATIVE_DIR WOOLY_DIR

Prints one line per case that either run attempted, in run order:
    <name> PASS bitwise
    <name> PASS max_rel_err=<e> max_abs_err=<e>     (within the case's tolerance)
    <name> PASS same-error <Type>                   (expected-error cases only)
    <name> FAIL <why>
then "N passed, M failed". Exit status: 0 when every case passed (and there
was at least one), 1 otherwise, 2 on bad usage. Tolerances come from
suite_table.py. Needs only the Python standard library.
"""
import argparse
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import resultio  # noqa: E402
import suite_table  # noqa: E402

MAX_WHY = 220
LABELS = ["native", "wooly"]  # --labels: how the two runs are named in messages


def one_line(text, limit=MAX_WHY):
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def error_signature(error):
    """Exception type plus the message's first two sentences, numbers masked:
    enough to tell errors apart, stable against free-memory figures."""
    etype, _, msg = (error or "").partition(":")
    head = ". ".join(msg.strip().split(". ")[:2])
    return etype.strip(), re.sub(r"\d+(\.\d+)?", "#", head)


class Mismatch(Exception):
    pass


def flatten(tree, prefix=""):
    """(key, leaf) pairs; keys are dotted paths ('grads.0')."""
    if isinstance(tree, dict):
        for k in sorted(tree):
            yield from flatten(tree[k], "%s.%s" % (prefix, k) if prefix else k)
    elif isinstance(tree, list) and any(isinstance(v, (dict, list, resultio.Tensor)) for v in tree):
        for i, v in enumerate(tree):
            yield from flatten(v, "%s.%d" % (prefix, i) if prefix else str(i))
    else:
        yield prefix, tree


def short(value):
    if isinstance(value, resultio.Tensor):
        return "tensor(%s, %s)" % (value.dtype, value.shape)
    return one_line(repr(value), 80)


def compare_leaf(case, key, n, w):
    """Returns (bitwise, max_abs, max_rel) or raises Mismatch."""
    tol = suite_table.tolerance_for(case, key)
    if isinstance(n, resultio.Tensor) or isinstance(w, resultio.Tensor):
        if not (isinstance(n, resultio.Tensor) and isinstance(w, resultio.Tensor)):
            raise Mismatch("%s: %s %s, %s %s" % (key, LABELS[0], short(n), LABELS[1], short(w)))
        if n.dtype != w.dtype or n.shape != w.shape:
            raise Mismatch("%s: %s %s, %s %s" % (key, LABELS[0], short(n), LABELS[1], short(w)))
        if n.data == w.data:
            return True, 0.0, 0.0
        if not n.is_floating():
            try:
                nv, wv = n.values(), w.values()
                diff = sum(1 for a, b in zip(nv, wv) if a != b)
                raise Mismatch("%s: %s differs in %d of %d elements" % (key, n.dtype, diff, len(nv)))
            except ValueError:
                raise Mismatch("%s: %s bytes differ" % (key, n.dtype))
        nv, wv = n.values(), w.values()
        return _compare_floats(key, tol, nv, wv, from_bytes=True)
    if isinstance(n, float) and isinstance(w, float):
        if n == w or (n != n and w != w):
            return True, 0.0, 0.0
        return _compare_floats(key, tol, [n], [w])
    if _float_list(n) and _float_list(w) and len(n) == len(w):
        if n == w:
            return True, 0.0, 0.0
        return _compare_floats(key, tol, [float(v) for v in n], [float(v) for v in w])
    # ints, bools, strings, None, lists of other scalars: exact.
    if type(n) is not type(w) or n != w:
        raise Mismatch("%s: %s %s, %s %s" % (key, LABELS[0], short(n), LABELS[1], short(w)))
    return True, 0.0, 0.0


def _float_list(v):
    return (isinstance(v, list) and any(isinstance(x, float) for x in v) and
            all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v))


def _compare_floats(key, tol, nv, wv, from_bytes=False):
    max_abs, max_rel, nan_mm, inf_mm = resultio.float_errors(nv, wv)
    errs = "max_rel_err=%.3g max_abs_err=%.3g" % (max_rel, max_abs)
    if nan_mm or inf_mm:
        raise Mismatch("%s: NaN/inf positions differ (%d NaN, %d inf; %s)" % (key, nan_mm, inf_mm, errs))
    if max_abs == 0.0:
        if not from_bytes:
            return True, 0.0, 0.0  # equal values (NaN where NaN)
        if tol[0] == "bitwise":
            raise Mismatch("%s: bytes differ, values equal (signed zeros or NaN payloads)" % key)
        return False, 0.0, 0.0
    if tol[0] == "bitwise":
        ndiff = sum(1 for a, b in zip(nv, wv) if a != b and not (a != a and b != b))
        raise Mismatch("%s: not bitwise (%d of %d elements differ; %s)" % (key, ndiff, len(nv), errs))
    _, rtol, atol = tol
    bad = resultio.within(nv, wv, rtol, atol)
    if bad:
        raise Mismatch("%s: %d of %d elements outside rtol=%g atol=%g (%s)" % (key, bad, len(nv), rtol, atol, errs))
    return False, max_abs, max_rel


def compare_values(case, n_tree, w_tree, details):
    n_leaves, w_leaves = dict(flatten(n_tree)), dict(flatten(w_tree))
    if set(n_leaves) != set(w_leaves):
        only_n = sorted(set(n_leaves) - set(w_leaves))
        only_w = sorted(set(w_leaves) - set(n_leaves))
        raise Mismatch("result keys differ: %s only %s, %s only %s" % (
            LABELS[0], only_n[:4], LABELS[1], only_w[:4]))
    all_bitwise, max_abs, max_rel, failures = True, 0.0, 0.0, []
    for key in sorted(n_leaves):
        try:
            bitwise, a, r = compare_leaf(case, key, n_leaves[key], w_leaves[key])
            shown = "bitwise" if bitwise else "max_rel_err=%.3g max_abs_err=%.3g" % (r, a)
            if not isinstance(n_leaves[key], resultio.Tensor):
                shown += "  = " + short(n_leaves[key])
            details.append("    %-28s %s" % (key, shown))
        except Mismatch as e:
            failures.append(str(e))
            details.append("    %-28s FAIL %s" % (key, e))
            continue
        all_bitwise &= bitwise
        max_abs, max_rel = max(max_abs, a), max(max_rel, r)
    if failures:
        more = " (+%d more keys)" % (len(failures) - 1) if len(failures) > 1 else ""
        raise Mismatch(failures[0] + more)
    if all_bitwise:
        return "bitwise"
    return "max_rel_err=%.3g max_abs_err=%.3g" % (max_rel, max_abs)


NO_RESULTS = {"status": "no-results"}


def run_state(status, case):
    if status is None:
        return NO_RESULTS
    return status.get("cases", {}).get(case)


def describe_state(which, state):
    if state is None:
        return "%s: not run (the run stopped before this case: crash or time limit)" % which
    if state is NO_RESULTS:
        return "%s: no results at all (the run died before its first case; see its log)" % which
    if state.get("status") == "running":
        return "%s: did not finish (crashed, hung or was killed in this case; see the log)" % which
    return "%s: ERROR %s" % (which, state.get("error", "?"))


def compare_case(case, n_dir, w_dir, n_state, w_state, details):
    """Returns (passed, text)."""
    spec = suite_table.BY_NAME.get(case, suite_table.Case(case))
    n_ok = n_state is not None and n_state.get("status") == "ok"
    w_ok = w_state is not None and w_state.get("status") == "ok"
    if not (n_ok and w_ok):
        n_err = n_state is not None and n_state.get("status") == "error"
        w_err = w_state is not None and w_state.get("status") == "error"
        if n_err and w_err and spec.expect_error:
            ns, ws = error_signature(n_state.get("error")), error_signature(w_state.get("error"))
            if ns == ws:
                return True, "same-error %s" % ns[0]
            return False, "errors differ: native %s; wooly %s" % (
                one_line(n_state.get("error"), 100), one_line(w_state.get("error"), 100))
        if spec.expect_error and n_err and not w_err:
            return False, "%s (%s raised the expected %s)" % (
                describe_state(LABELS[1], w_state), LABELS[0], error_signature(n_state.get("error"))[0])
        if not n_ok and not w_ok:
            if n_err and w_err and error_signature(n_state.get("error")) == error_signature(w_state.get("error")):
                return False, "both runs: ERROR %s" % n_state.get("error")
            return False, "%s; %s" % (describe_state(LABELS[0], n_state), describe_state(LABELS[1], w_state))
        if not n_ok:
            return False, describe_state(LABELS[0], n_state)
        return False, describe_state(LABELS[1], w_state)
    try:
        n_tree = resultio.read_case(n_dir, case)
        w_tree = resultio.read_case(w_dir, case)
    except (OSError, ValueError) as e:
        return False, "cannot read results: %s" % e
    try:
        return True, compare_values(case, n_tree, w_tree, details)
    except Mismatch as e:
        return False, str(e)


def _secs(state):
    return "%.1fs" % state["seconds"] if state and "seconds" in state else "-"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("native_dir")
    ap.add_argument("wooly_dir")
    ap.add_argument("--details", help="also write per-key results to this file")
    ap.add_argument("--times", action="store_true", help="append native/wooly seconds to each line")
    ap.add_argument("--width", type=int, default=10, help="pad case names to at least this width")
    ap.add_argument("--labels", default="native,wooly", help="names of the two runs in messages")
    args = ap.parse_args(argv)
    LABELS[:] = (args.labels.split(",") + ["b"])[:2]

    n_status = resultio.read_status(args.native_dir)
    w_status = resultio.read_status(args.wooly_dir)
    if n_status is None and w_status is None:
        print("no results in %s or %s" % (args.native_dir, args.wooly_dir))
        print("0 passed, 1 failed")
        return 1

    # Run order: the suite's, then anything unknown in the order it ran.
    requested = []
    for st in (n_status, w_status):
        if st:
            for c in st.get("order", []) + list(st.get("cases", {})):
                if c not in requested:
                    requested.append(c)
    order = [c.name for c in suite_table.CASES if c.name in requested]
    order += [c for c in requested if c not in suite_table.BY_NAME]

    width = max([len(c) for c in order] + [args.width])
    passed = failed = 0
    lines, details = [], []
    for case in order:
        n_state, w_state = run_state(n_status, case), run_state(w_status, case)
        case_details = []
        ok, text = compare_case(case, args.native_dir, args.wooly_dir, n_state, w_state, case_details)
        line = "%-*s %s %s" % (width, case, "PASS" if ok else "FAIL", text if ok else one_line(text))
        if args.times:
            line += "  [%s %s, %s %s]" % (LABELS[0], _secs(n_state), LABELS[1], _secs(w_state))
        lines.append(line)
        details.append("%-*s %s %s  [%s %s, %s %s]" % (
            width, case, "PASS" if ok else "FAIL", text, LABELS[0], _secs(n_state), LABELS[1], _secs(w_state)))
        details.extend(case_details)
        passed += ok
        failed += not ok
    if not order:
        lines.append("no cases were run")
        failed = max(failed, 1)
    for line in lines:
        print(line)
    summary = "%d passed, %d failed" % (passed, failed)
    print(summary)
    if args.details:
        with open(args.details, "w") as f:
            for st, which in ((n_status, LABELS[0]), (w_status, LABELS[1])):
                if st:
                    f.write("%s: %s\n" % (which, st.get("meta", {})))
            f.write("\n".join(details) + "\n" + summary + "\n")
    return 0 if failed == 0 and passed > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
