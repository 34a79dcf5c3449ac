#!/usr/bin/env python3
"""Decode tokens/s of the bench/ Llama-style decoder (torch_bench.py's
decode row) at one batch size, with switches to narrow down where time goes.
Run it natively and through Wooly (with WOOLY_CLIENT_STATS=1 for the round
trips the client paid) and compare:

  decode_probe.py BATCH [--tokens N] [--reps N] [--no-cudnn-sdp] [--math-sdp]
"""
import argparse
import statistics
import time

import torch
from transformers import LlamaConfig, LlamaForCausalLM

ap = argparse.ArgumentParser()
ap.add_argument("batch", type=int)
ap.add_argument("--tokens", type=int, default=128)
ap.add_argument("--reps", type=int, default=2)
ap.add_argument("--no-cudnn-sdp", action="store_true", help="turn off the cuDNN SDPA backend")
ap.add_argument("--math-sdp", action="store_true", help="only the math SDPA backend")
args = ap.parse_args()
if args.no_cudnn_sdp:
    torch.backends.cuda.enable_cudnn_sdp(False)
if args.math_sdp:
    torch.backends.cuda.enable_cudnn_sdp(False)
    torch.backends.cuda.enable_flash_sdp(False)
    torch.backends.cuda.enable_mem_efficient_sdp(False)
cfg = LlamaConfig(vocab_size=32000, hidden_size=2048, intermediate_size=5632,
                  num_hidden_layers=16, num_attention_heads=32, num_key_value_heads=4,
                  max_position_embeddings=2048)
torch.manual_seed(0)
with torch.device("cuda"):
    model = LlamaForCausalLM(cfg)
model.to(torch.bfloat16).eval()
prompt = 32
ids = torch.randint(3, cfg.vocab_size, (args.batch, prompt), device="cuda")
gen = dict(do_sample=False, use_cache=True, pad_token_id=0)
with torch.inference_mode():
    # A first call of the same lengths (it builds cuDNN's run-time kernels),
    # timed apart from the warm calls, as torch_bench.py's decode rows do.
    t0 = time.perf_counter()
    model.generate(input_ids=ids, attention_mask=torch.ones_like(ids),
                   max_new_tokens=args.tokens, min_new_tokens=args.tokens, **gen)
    torch.cuda.synchronize()
    first = args.batch * args.tokens / (time.perf_counter() - t0)
    rates = []
    for _ in range(args.reps):
        t0 = time.perf_counter()
        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids),
                             max_new_tokens=args.tokens, min_new_tokens=args.tokens, **gen)
        torch.cuda.synchronize()
        rates.append(args.batch * (out.shape[1] - prompt) / (time.perf_counter() - t0))
print("decode_probe batch %d%s%s: %.1f tokens/s warm (median of %s); first call %.1f" % (
    args.batch, " no-cudnn-sdp" if args.no_cudnn_sdp else "", " math-sdp" if args.math_sdp else "",
    statistics.median(rates), ", ".join("%.1f" % r for r in rates), first), flush=True)
