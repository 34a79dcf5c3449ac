#!/usr/bin/env python3
"""CI checks of the PyTorch suite's plumbing (no torch, no GPU): compare.py on
synthetic result directories, and the case table against torch_suite.py."""
import array
import ast
import contextlib
import io
import os
import struct
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import compare  # noqa: E402
import resultio  # noqa: E402
import suite_table  # noqa: E402


def f32(values):
    return resultio.Blob("float32", [len(values)], array.array("f", values).tobytes())


def f16(values):
    return resultio.Blob("float16", [len(values)], struct.pack("<%de" % len(values), *values))


def bf16(values):
    words = array.array("I", array.array("f", values).tobytes())
    return resultio.Blob("bfloat16", [len(values)], array.array("H", (w >> 16 for w in words)).tobytes())


def i64(values):
    return resultio.Blob("int64", [len(values)], array.array("q", values).tobytes())


class Run:
    """Builds one synthetic run directory."""

    def __init__(self, root, name):
        self.dir = os.path.join(root, name)
        os.makedirs(self.dir)
        self.status = {"meta": {}, "order": [], "cases": {}}

    def ok(self, case, values):
        resultio.write_case(self.dir, case, values)
        self.status["order"].append(case)
        self.status["cases"][case] = {"status": "ok", "seconds": 0.5}
        resultio.write_status(self.dir, self.status)
        return self

    def error(self, case, error):
        self.status["order"].append(case)
        self.status["cases"][case] = {"status": "error", "error": error}
        resultio.write_status(self.dir, self.status)
        return self

    def running(self, case):
        self.status["order"].append(case)
        self.status["cases"][case] = {"status": "running"}
        resultio.write_status(self.dir, self.status)
        return self


class CompareTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.native = Run(self.tmp.name, "native")
        self.wooly = Run(self.tmp.name, "wooly")

    def tearDown(self):
        self.tmp.cleanup()

    def compare(self, *extra):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            rc = compare.main([self.native.dir, self.wooly.dir] + list(extra))
        lines = out.getvalue().splitlines()
        return rc, {ln.split()[0]: ln for ln in lines[:-1]}, lines[-1]

    def test_bitwise_pass(self):
        vals = {"out": f32([1.0, 2.5, float("nan")]), "n": 3, "name": "H100", "flag": True,
                "nested": {"xs": [f16([1.0, -2.0]), bf16([0.5, 3.0])], "loss": 0.25}, "ids": i64([1, 2])}
        self.native.ok("matmul_fp16", vals)
        self.wooly.ok("matmul_fp16", vals)
        rc, lines, last = self.compare()
        self.assertEqual(rc, 0)
        self.assertRegex(lines["matmul_fp16"], r"^matmul_fp16 +PASS bitwise$")
        self.assertEqual(last, "1 passed, 0 failed")

    def test_bitwise_case_rejects_tiny_difference(self):
        self.native.ok("matmul_fp32", {"out": f32([1.0, 2.0])})
        self.wooly.ok("matmul_fp32", {"out": f32([1.0, 2.0000002])})
        rc, lines, last = self.compare()
        self.assertEqual(rc, 1)
        self.assertIn("FAIL out: not bitwise (1 of 2 elements differ; max_rel_err=", lines["matmul_fp32"])
        self.assertEqual(last, "0 passed, 1 failed")

    def test_tolerance_case(self):
        self.native.ok("torch_compile", {"f": f32([1.0, 100.0]), "loss": 0.5})
        self.wooly.ok("torch_compile", {"f": f32([1.00001, 100.0]), "loss": 0.5})
        rc, lines, _ = self.compare()
        self.assertEqual(rc, 0)
        self.assertRegex(lines["torch_compile"], r"PASS max_rel_err=1e-05 max_abs_err=1e-05$")

    def test_tolerance_exceeded(self):
        self.native.ok("torch_compile", {"f": f32([1.0, 100.0])})
        self.wooly.ok("torch_compile", {"f": f32([1.0, 100.5])})
        rc, lines, _ = self.compare()
        self.assertEqual(rc, 1)
        self.assertIn("f: 1 of 2 elements outside rtol=0.0001 atol=1e-05", lines["torch_compile"])

    def test_per_key_tolerance(self):
        self.native.ok("sdpa_flash", {"status": "ok", "out": f16([1.0, 2.0]), "dq": f16([1.0, 2.0])})
        self.wooly.ok("sdpa_flash", {"status": "ok", "out": f16([1.0, 2.0]), "dq": f16([1.0, 2.001953125])})
        rc, lines, _ = self.compare()
        self.assertEqual(rc, 0, lines)
        self.assertIn("PASS max_rel_err=", lines["sdpa_flash"])
        # ... but the output itself is bitwise.
        self.native.ok("sdpa_math", {"out": f16([1.0])})
        self.wooly.ok("sdpa_math", {"out": f16([1.0009765625])})
        rc, lines, _ = self.compare()
        self.assertIn("FAIL out: not bitwise", lines["sdpa_math"])

    def test_float_list_uses_tolerance(self):
        self.native.ok("hf_gpt2_tiny_train", {"losses": [4.0, 3.5]})
        self.wooly.ok("hf_gpt2_tiny_train", {"losses": [4.0, 3.5000001]})
        rc, lines, _ = self.compare()
        self.assertEqual(rc, 0, lines)

    def test_exact_values(self):
        self.native.ok("memory_stats", {"after_a": 4096, "ok": True, "s": "x"})
        self.wooly.ok("memory_stats", {"after_a": 4608, "ok": True, "s": "x"})
        rc, lines, _ = self.compare()
        self.assertEqual(rc, 1)
        self.assertIn("after_a: native 4096, wooly 4608", lines["memory_stats"])

    def test_type_shape_dtype_and_keys(self):
        self.native.ok("matmul_bf16", {"a": f32([1.0, 2.0]), "b": 1})
        self.wooly.ok("matmul_bf16", {"a": f32([1.0]), "b": 1})
        self.native.ok("matmul_tf32", {"a": f32([1.0])})
        self.wooly.ok("matmul_tf32", {"a": f16([1.0])})
        self.native.ok("elementwise_ops", {"a": 1, "b": 2})
        self.wooly.ok("elementwise_ops", {"a": 1})
        self.native.ok("tensor_creation", {"a": i64([1, 2, 3])})
        self.wooly.ok("tensor_creation", {"a": i64([1, 5, 3])})
        rc, lines, last = self.compare()
        self.assertEqual(rc, 1)
        self.assertIn("tensor(float32, [2]), wooly tensor(float32, [1])", lines["matmul_bf16"])
        self.assertIn("wooly tensor(float16", lines["matmul_tf32"])
        self.assertIn("result keys differ: native only ['b']", lines["elementwise_ops"])
        self.assertIn("int64 differs in 1 of 3 elements", lines["tensor_creation"])
        self.assertEqual(last, "0 passed, 4 failed")

    def test_errors_and_crashes(self):
        self.native.ok("conv2d_cudnn", {"a": 1})
        self.wooly.error("conv2d_cudnn", "RuntimeError: CUDA error: operation not supported")
        self.native.ok("triton_kernel", {"a": 1})
        self.wooly.running("triton_kernel")
        self.native.ok("cuda_event_timing", {"a": 1})
        self.native.error("matmul_fp32", "RuntimeError: boom")
        self.wooly.ok("matmul_fp32", {"a": 1})
        rc, lines, last = self.compare()
        self.assertEqual(rc, 1)
        self.assertIn("FAIL wooly: ERROR RuntimeError: CUDA error: operation not supported", lines["conv2d_cudnn"])
        self.assertIn("FAIL wooly: did not finish", lines["triton_kernel"])
        self.assertIn("FAIL wooly: not run", lines["cuda_event_timing"])
        self.assertIn("FAIL native: ERROR RuntimeError: boom", lines["matmul_fp32"])
        self.assertEqual(last, "0 passed, 4 failed")

    def test_expected_error(self):
        oom = ("OutOfMemoryError: CUDA out of memory. Tried to allocate 37252.90 GiB. GPU 0 has a total "
               "capacity of 79.19 GiB of which %s GiB is free.")
        self.native.error("oom_uncaught", oom % "78.50")
        self.wooly.error("oom_uncaught", oom % "60.25")
        # The same error in a case that does not expect one still fails.
        self.native.error("matmul_fp16", "RuntimeError: x")
        self.wooly.error("matmul_fp16", "RuntimeError: x")
        rc, lines, last = self.compare()
        self.assertRegex(lines["oom_uncaught"], r"PASS same-error OutOfMemoryError$")
        self.assertIn("FAIL both runs: ERROR RuntimeError: x", lines["matmul_fp16"])
        self.assertEqual(rc, 1)
        self.assertEqual(last, "1 passed, 1 failed")

    def test_expected_error_different(self):
        self.native.error("oom_uncaught", "OutOfMemoryError: CUDA out of memory. Tried to allocate 1 GiB")
        self.wooly.error("oom_uncaught", "RuntimeError: CUDA error: invalid argument")
        rc, lines, _ = self.compare()
        self.assertEqual(rc, 1)
        self.assertIn("FAIL errors differ", lines["oom_uncaught"])

    def test_nan_positions(self):
        self.native.ok("elementwise_ops", {"a": f32([float("nan"), 1.0])})
        self.wooly.ok("elementwise_ops", {"a": f32([1.0, float("nan")])})
        rc, lines, _ = self.compare()
        self.assertIn("NaN/inf positions differ", lines["elementwise_ops"])

    def test_no_results(self):
        rc, _, last = self.compare()
        self.assertEqual(rc, 1)
        self.assertEqual(last, "0 passed, 1 failed")

    def test_details_and_times(self):
        self.native.ok("matmul_fp16", {"out": f32([1.0])})
        self.wooly.ok("matmul_fp16", {"out": f32([1.0])})
        details = os.path.join(self.tmp.name, "details.txt")
        rc, lines, _ = self.compare("--details", details, "--times")
        self.assertEqual(rc, 0)
        self.assertIn("[native 0.5s, wooly 0.5s]", lines["matmul_fp16"])
        with open(details) as f:
            text = f.read()
        self.assertIn("out", text)
        self.assertIn("1 passed, 0 failed", text)


class DecodeTest(unittest.TestCase):
    def test_dtypes(self):
        self.assertEqual(resultio.Tensor("float16", [2], f16([1.5, -2.0]).data).values(), [1.5, -2.0])
        self.assertEqual(resultio.Tensor("bfloat16", [2], bf16([0.5, 3.0]).data).values(), [0.5, 3.0])
        self.assertEqual(resultio.Tensor("int64", [2], i64([-1, 7]).data).values(), [-1, 7])
        self.assertEqual(resultio.Tensor("float32", [1], f32([0.25]).data).values(), [0.25])


class TableTest(unittest.TestCase):
    def test_table_matches_suite_functions(self):
        with open(os.path.join(HERE, "torch_suite.py")) as f:
            tree = ast.parse(f.read())
        registered = []
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef):
                for deco in node.decorator_list:
                    if (isinstance(deco, ast.Call) and getattr(deco.func, "id", None) == "case"
                            and deco.args and isinstance(deco.args[0], ast.Constant)):
                        registered.append(deco.args[0].value)
        self.assertEqual(len(registered), len(set(registered)), "a case is registered twice")
        self.assertEqual(sorted(registered), sorted(c.name for c in suite_table.CASES))

    def test_tolerances_are_well_formed(self):
        for c in suite_table.CASES:
            for tol in [c.tol] + list(c.keys.values()):
                self.assertIn(tol[0], ("bitwise", "close"), c.name)
                if tol[0] == "close":
                    self.assertGreater(tol[1] + tol[2], 0, c.name)
        self.assertEqual(suite_table.tolerance_for("sdpa_flash", "dq"), suite_table.close(2e-2, 2e-3))
        self.assertEqual(suite_table.tolerance_for("sdpa_flash", "out"), suite_table.BITWISE)
        self.assertEqual(suite_table.tolerance_for("unknown", "x"), suite_table.BITWISE)


if __name__ == "__main__":
    unittest.main()
