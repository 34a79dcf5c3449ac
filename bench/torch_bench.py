#!/usr/bin/env python3
"""PyTorch rows of Wooly's benchmark suite (bench/README.md).

  torch_bench.py [--quick] [--only NAME[,NAME...]]
  torch_bench.py --first-result LABEL

Each row is one JSON line on stdout:
  {"bench":"torch","name":...,"unit":...,"value":...,"higher_is_better":...,"params":{...}}
(a row that cannot run carries "skipped" or "error" and value null), after one
{"bench":"torch","info":{...}} line. --only keeps the rows whose name equals a
NAME or starts with NAME + "_". --quick shrinks every size (a smoke run).

--first-result LABEL measures, in a fresh process, the time from the top of
this script (before torch is imported) to the first CUDA result,
torch.ones(1, device="cuda").sum().item(), and prints the rows
first_result_LABEL (all of it) and first_result_LABEL_after_import (without
the import of torch). bench/run.sh runs it once on an empty module cache
(cold) and again (warm).

The same script runs natively and through Wooly (LD_PRELOAD of Wooly's
libcuda.so.1); it does not know which. Timings are wall clock
(time.perf_counter) between torch.cuda.synchronize() calls, after warmup.
"""

import time

_T_TOP = time.monotonic()  # first thing: --first-result counts from here

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import re  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import traceback  # noqa: E402


def emit(name, unit, value, higher_is_better, params, skipped=None, error=None):
    rec = {"bench": "torch", "name": name, "unit": unit, "value": value,
           "higher_is_better": higher_is_better, "params": params}
    if skipped is not None:
        rec["value"] = None
        rec["skipped"] = skipped
    if error is not None:
        rec["value"] = None
        rec["error"] = error
    print(json.dumps(rec), flush=True)


class BenchError(Exception):
    """A row produced a wrong result; its timing would mean nothing."""


# ---------------------------------------------------------------- rows
# Each returns (value, params) or a list of (name, value, params) for rows
# that come in groups.

def tiny_op(torch, quick):
    """x.add_(1) on a small tensor: per-op cost when launches dominate."""
    numel = 1024
    ops = 200 if quick else 20000
    reps = 3 if quick else 5
    warmup = 20 if quick else 1000
    x = torch.zeros(numel, device="cuda", dtype=torch.float32)
    for _ in range(warmup):
        x.add_(1)
    torch.cuda.synchronize()
    per_op_us = []
    for _ in range(reps):
        t0 = time.perf_counter()
        for _ in range(ops):
            x.add_(1)
        torch.cuda.synchronize()
        per_op_us.append((time.perf_counter() - t0) / ops * 1e6)
    expected = float(warmup + reps * ops)  # exact in float32 (< 2**24)
    got = x[0].item()
    if got != expected or x.min().item() != expected:
        raise BenchError("x holds %r after the loop, expected %r" % (got, expected))
    return statistics.median(per_op_us), {
        "numel": numel, "dtype": "float32", "ops_per_rep": ops, "reps": reps, "warmup": warmup,
        "stat": "median over reps of (time for the ops + one synchronize) / ops",
        "min": min(per_op_us), "max": max(per_op_us)}


def matmul_bf16(torch, quick):
    """torch.matmul of two n x n bf16 matrices into a preallocated output."""
    n = 1024 if quick else 8192
    iters = 5 if quick else 50
    reps = 3 if quick else 5
    torch.manual_seed(0)
    a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    c = torch.empty(n, n, device="cuda", dtype=torch.bfloat16)
    for _ in range(3):
        torch.matmul(a, b, out=c)
    torch.cuda.synchronize()
    tflops = []
    for _ in range(reps):
        t0 = time.perf_counter()
        for _ in range(iters):
            torch.matmul(a, b, out=c)
        torch.cuda.synchronize()
        tflops.append(2.0 * n ** 3 * iters / (time.perf_counter() - t0) / 1e12)
    # A spot check against float32 on the CPU: the row must compute.
    ref = a[:4].float().cpu() @ b[:, :4].float().cpu()
    got = c[:4, :4].float().cpu()
    if not torch.allclose(got, ref, rtol=0.05, atol=0.05 * math.sqrt(n)):
        raise BenchError("matmul result differs from the float32 reference")
    return statistics.median(tflops), {
        "n": n, "dtype": "bfloat16", "iters_per_rep": iters, "reps": reps,
        "stat": "median over reps of 2*n^3*iters / (time + one synchronize)",
        "min": min(tflops), "max": max(tflops)}


def train_step(torch, quick):
    """Forward, backward and AdamW step of a small nn.TransformerEncoder."""
    nn = torch.nn
    if quick:
        d_model, nhead, ffn, layers, batch, seq, steps, reps = 64, 4, 128, 2, 4, 16, 3, 2
    else:
        d_model, nhead, ffn, layers, batch, seq, steps, reps = 512, 8, 2048, 6, 32, 256, 20, 3
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(d_model, nhead, dim_feedforward=ffn, dropout=0.1,
                                       batch_first=True)
    model = nn.TransformerEncoder(layer, num_layers=layers, enable_nested_tensor=False).cuda()
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.randn(batch, seq, d_model, device="cuda")
    y = torch.randn(batch, seq, d_model, device="cuda")

    def step():
        opt.zero_grad(set_to_none=True)
        loss = nn.functional.mse_loss(model(x), y)
        loss.backward()
        opt.step()
        return loss

    for _ in range(3):
        step()
    torch.cuda.synchronize()
    ms = []
    loss = None
    for _ in range(reps):
        t0 = time.perf_counter()
        for _ in range(steps):
            loss = step()
        torch.cuda.synchronize()
        ms.append((time.perf_counter() - t0) / steps * 1e3)
    final = loss.item()
    if not math.isfinite(final):
        raise BenchError("training loss is %r" % final)
    return statistics.median(ms), {
        "d_model": d_model, "nhead": nhead, "ffn": ffn, "layers": layers, "batch": batch,
        "seq": seq, "dtype": "float32", "optimizer": "AdamW",
        "params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 2),
        "steps_per_rep": steps, "reps": reps,
        "stat": "median over reps of (time for the steps + one synchronize) / steps",
        "min": min(ms), "max": max(ms)}


def decode(torch, quick, batches):
    """Greedy generate with a KV cache from a Llama-style decoder with random
    weights built from a LlamaConfig (no download)."""
    from transformers import LlamaConfig, LlamaForCausalLM  # ImportError: skipped

    if quick:
        cfg = LlamaConfig(vocab_size=1024, hidden_size=128, intermediate_size=256,
                          num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                          max_position_embeddings=256)
        prompt_len, new_tokens, reps = 8, 8, 1
    else:
        # About 0.85 B parameters (1.7 GB in bf16).
        cfg = LlamaConfig(vocab_size=32000, hidden_size=2048, intermediate_size=5632,
                          num_hidden_layers=16, num_attention_heads=32, num_key_value_heads=4,
                          max_position_embeddings=2048)
        prompt_len, new_tokens, reps = 32, 128, 3
    torch.manual_seed(0)
    with torch.device("cuda"):  # initialize on the GPU: much faster than on the CPU
        model = LlamaForCausalLM(cfg)
    model.to(torch.bfloat16)
    model.eval()
    n_params = sum(p.numel() for p in model.parameters())
    # min_new_tokens keeps random weights from stopping early at EOS.
    gen = dict(do_sample=False, use_cache=True, pad_token_id=0,
               max_new_tokens=new_tokens, min_new_tokens=new_tokens)
    results = []
    for batch in batches:
        ids = torch.randint(3, cfg.vocab_size, (batch, prompt_len), device="cuda")
        mask = torch.ones_like(ids)
        with torch.inference_mode():
            # The first call at these lengths also builds kernels (PyTorch's
            # cuDNN attention compiles some at run time for each new key
            # length): reported as its own row, not as decode speed.
            t0 = time.perf_counter()
            out = model.generate(input_ids=ids, attention_mask=mask, **gen)
            torch.cuda.synchronize()
            first = batch * (out.shape[1] - prompt_len) / (time.perf_counter() - t0)
            results.append(("decode_b%d_first" % batch, first, {
                "batch": batch, "prompt_tokens": prompt_len, "new_tokens": new_tokens,
                "stat": "the first generate call at these lengths (prefill and run-time "
                        "kernel builds included)"}))
            rates = []
            for _ in range(reps):
                t0 = time.perf_counter()
                out = model.generate(input_ids=ids, attention_mask=mask, **gen)
                torch.cuda.synchronize()
                dt = time.perf_counter() - t0
                produced = out.shape[1] - prompt_len
                if produced != new_tokens or out.shape[0] != batch:
                    raise BenchError("generate returned shape %s, expected (%d, %d)" %
                                     (tuple(out.shape), batch, prompt_len + new_tokens))
                rates.append(batch * produced / dt)
        results.append(("decode_b%d" % batch, statistics.median(rates), {
            "batch": batch, "prompt_tokens": prompt_len, "new_tokens": new_tokens,
            "params_m": round(n_params / 1e6, 1), "dtype": "bfloat16",
            "layers": cfg.num_hidden_layers, "hidden": cfg.hidden_size,
            "attn": str(getattr(cfg, "_attn_implementation", "?")), "reps": reps,
            "stat": "median over reps of batch*new_tokens / generate time (prefill included), "
                    "after a first call of the same lengths (the _first row)",
            "min": min(rates), "max": max(rates)}))
    return results


ROWS = [
    # (row name, unit, higher is better, function)
    ("tiny_op_add", "us", False, tiny_op),
    ("matmul_bf16_8192", "TFLOP/s", True, matmul_bf16),
    ("train_step_transformer", "ms", False, train_step),
]
DECODE_BATCHES = (1, 16)


def selected(name, only):
    return not only or any(name == t or name.startswith(t + "_") for t in only)


# ---------------------------------------------------------------- modes

def first_result(label):
    t_import = time.monotonic()
    import torch
    t_imported = time.monotonic()
    value = torch.ones(1, device="cuda").sum().item()
    t_result = time.monotonic()
    if value != 1.0:
        emit("first_result_" + label, "ms", None, False, {},
             error="torch.ones(1).sum() gave %r" % value)
        return 1
    params = {"import_torch_ms": round((t_imported - t_import) * 1e3, 2),
              "before_import_ms": round((t_import - _T_TOP) * 1e3, 2),
              "torch": torch.__version__,
              "from": "top of torch_bench.py (after interpreter start-up)"}
    emit("first_result_" + label, "ms", (t_result - _T_TOP) * 1e3, False, params)
    emit("first_result_%s_after_import" % label, "ms", (t_result - t_imported) * 1e3, False,
         {"from": "after import torch", "torch": torch.__version__})
    return 0


def run_rows(quick, only):
    import torch

    if not torch.cuda.is_available():
        print("torch_bench: torch.cuda.is_available() is False", file=sys.stderr)
        return 1
    info = {"torch": torch.__version__, "cuda": torch.version.cuda,
            "device": torch.cuda.get_device_name(0), "quick": quick}
    try:
        import transformers
        info["transformers"] = transformers.__version__
    except ImportError:
        info["transformers"] = None
    print(json.dumps({"bench": "torch", "info": info}), flush=True)

    failed = 0
    ran = 0
    for name, unit, higher, fn in ROWS:
        if not selected(name, only):
            continue
        ran += 1
        try:
            value, params = fn(torch, quick)
            emit(name, unit, value, higher, params)
        except Exception as e:  # report the row, go on with the next
            traceback.print_exc()
            emit(name, unit, None, higher, {}, error="%s: %s" % (type(e).__name__, e))
            failed += 1
        torch.cuda.empty_cache()

    batches = [b for b in DECODE_BATCHES if selected("decode_b%d" % b, only)]
    if batches:
        ran += 1
        try:
            for name, value, params in decode(torch, quick, batches):
                emit(name, "tokens/s", value, True, params)
        except ImportError as e:
            for b in batches:
                emit("decode_b%d" % b, "tokens/s", None, True, {},
                     skipped="cannot import transformers: %s" % e)
        except Exception as e:
            traceback.print_exc()
            for b in batches:
                emit("decode_b%d" % b, "tokens/s", None, True, {},
                     error="%s: %s" % (type(e).__name__, e))
            failed += 1
    if ran == 0:
        print("torch_bench: no row matches --only %s" % ",".join(only), file=sys.stderr)
        return 2
    return 1 if failed else 0


def main():
    ap = argparse.ArgumentParser(description="PyTorch rows of bench/ (JSON lines on stdout)")
    ap.add_argument("--quick", action="store_true", help="tiny sizes (a smoke run)")
    ap.add_argument("--only", default="", help="rows named NAME or starting with NAME_")
    ap.add_argument("--first-result", metavar="LABEL",
                    help="time to the first CUDA result; rows first_result_LABEL*")
    args = ap.parse_args()
    if args.first_result is not None:
        if not re.fullmatch(r"[a-z0-9_]+", args.first_result):
            ap.error("LABEL must be lower-case letters, digits and _")
        return first_result(args.first_result)
    only = [t for t in args.only.split(",") if t]
    return run_rows(args.quick, only)


if __name__ == "__main__":
    sys.exit(main())
