#!/usr/bin/env python3
"""One tenant of the scheduler benchmark (bench/sched_bench.sh, issue #5).

  decode  batch-1 greedy decode of a Llama-style model built from a config
          with random weights (fixed seed); reports per-step latency p50/p99.
  train   a training loop (transformer encoder, AdamW, bf16 autocast);
          reports steps per second.
  spin    back-to-back large bf16 matmuls; reports matmuls per second.

Every role waits for the start file (so tenants start together), runs for
--seconds after warm-up, and prints one JSON line. Plain PyTorch: run it
natively, under MPS, or through Wooly (LD_PRELOAD) unchanged.
"""
import argparse
import json
import os
import statistics
import sys
import time

import torch


def wait_for_start(path, role="", tag=""):
    """Says it is warm (PATH.ready.ROLE.TAG), then waits for PATH to exist."""
    if not path:
        return
    with open(f"{path}.ready.{role}.{tag}", "w"):
        pass
    while not os.path.exists(path):
        time.sleep(0.005)


def decode(args):
    starts = []
    # WOOLY_SCHED_STALL_MS: dump the Python stacks of a step that takes longer
    # (faulthandler's watchdog needs no GIL), to see where a tail comes from.
    stall_s = float(os.environ.get("WOOLY_SCHED_STALL_MS", "0")) / 1e3
    if stall_s > 0:
        import faulthandler
    from transformers import LlamaConfig, LlamaForCausalLM

    # PyTorch 2.11's default SDPA choice on the H100 loads and unloads about
    # 100 freshly built cuDNN libraries on every call at a new key length:
    # 61 ms per call natively, 750 ms through Wooly (bench/sdpa_probe.py,
    # docs/benchmarks.md). A decode server pins its attention kernels, so the
    # decoder uses flash / memory-efficient attention unless
    # WOOLY_SCHED_SDPA=default asks for PyTorch's own choice.
    if os.environ.get("WOOLY_SCHED_SDPA", "fixed") != "default":
        torch.backends.cuda.enable_cudnn_sdp(False)

    torch.manual_seed(0)
    cfg = LlamaConfig(hidden_size=2048, intermediate_size=5632, num_hidden_layers=16,
                      num_attention_heads=16, num_key_value_heads=16, vocab_size=32000,
                      max_position_embeddings=4096)
    model = LlamaForCausalLM(cfg).to(device="cuda", dtype=torch.bfloat16).eval()
    prompt = torch.randint(0, cfg.vocab_size, (1, 32), device="cuda")

    def run_steps(n, timings):
        with torch.inference_mode():
            out = model(input_ids=prompt, use_cache=True)
            pkv = out.past_key_values
            tok = out.logits[:, -1:].argmax(-1)
            torch.cuda.synchronize()
            for _ in range(n):
                t0 = time.perf_counter()
                if stall_s > 0:
                    faulthandler.dump_traceback_later(stall_s)
                out = model(input_ids=tok, past_key_values=pkv, use_cache=True)
                pkv = out.past_key_values
                tok = out.logits[:, -1:].argmax(-1)
                torch.cuda.synchronize()
                timings.append(time.perf_counter() - t0)
                if stall_s > 0:
                    faulthandler.cancel_dump_traceback_later()
                starts.append(t0)
                if len(timings) and args.deadline and time.perf_counter() > args.deadline:
                    return

    run_steps(20, [])  # warm-up
    wait_for_start(args.start_file, args.role, args.tag)
    steps = []
    starts.clear()
    t_begin = time.perf_counter()
    args.deadline = t_begin + args.seconds
    while time.perf_counter() < args.deadline:
        run_steps(256, steps)  # a fresh KV cache every 256 tokens
    ms = sorted(s * 1e3 for s in steps)
    p50 = statistics.median(ms)
    # The slowest steps and when they started: where a tail comes from.
    slow = sorted(((d * 1e3, t - t_begin) for d, t in zip(steps, starts[-len(steps):])),
                  reverse=True)[:20]
    return {"role": "decode", "steps": len(ms), "p50_ms": p50,
            "p99_ms": ms[min(len(ms) - 1, int(len(ms) * 0.99))], "max_ms": ms[-1],
            "mean_ms": statistics.fmean(ms), "tokens_per_s": len(ms) / args.seconds,
            "slowest": [[round(d, 2), round(t, 3)] for d, t in slow]}


def train(args):
    torch.manual_seed(0)
    layer = torch.nn.TransformerEncoderLayer(d_model=1024, nhead=16, dim_feedforward=4096,
                                             batch_first=True)
    model = torch.nn.TransformerEncoder(layer, num_layers=6).cuda()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.randn(16, 512, 1024, device="cuda")

    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = model(x).float().pow(2).mean()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    for _ in range(5):
        step()
    torch.cuda.synchronize()
    wait_for_start(args.start_file, args.role, args.tag)
    n = 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < args.seconds:
        step()
        n += 1
        if n % 4 == 0:
            torch.cuda.synchronize()
    torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    return {"role": "train", "steps": n, "steps_per_s": n / dt}


def spin(args):
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    wait_for_start(args.start_file, args.role, args.tag)
    n = 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < args.seconds:
        for _ in range(8):
            a @ b
        torch.cuda.synchronize()
        n += 8
    dt = time.perf_counter() - t0
    return {"role": "spin", "matmuls": n, "matmuls_per_s": n / dt}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("role", choices=["decode", "train", "spin"])
    p.add_argument("--seconds", type=float, default=15.0)
    p.add_argument("--start-file", default="")
    p.add_argument("--tag", default="")
    args = p.parse_args()
    args.deadline = None
    result = {"decode": decode, "train": train, "spin": spin}[args.role](args)
    result["tag"] = args.tag
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    sys.exit(main())
