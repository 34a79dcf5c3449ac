#!/usr/bin/env python3
"""Per-call time of scaled_dot_product_attention at decode shapes (query
length 1, key length growing by one per call), per SDPA backend. A new key
length is a new shape, which some backends (cuDNN) answer by building and
loading new kernels. Run it natively and through Wooly and compare."""
import contextlib
import statistics
import sys
import time

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

heads, dim = 16, 128
q = torch.randn(1, heads, 1, dim, device="cuda", dtype=torch.bfloat16)
backends = [("default", None), ("cudnn", SDPBackend.CUDNN_ATTENTION),
            ("efficient", SDPBackend.EFFICIENT_ATTENTION), ("flash", SDPBackend.FLASH_ATTENTION),
            ("math", SDPBackend.MATH)]
only = sys.argv[2].split(",") if len(sys.argv) > 2 else None
for name, backend in backends:
    if only and name not in only:
        continue
    ms = []
    try:
        for length in range(64, 64 + int(sys.argv[1] if len(sys.argv) > 1 else 40)):
            k = torch.randn(1, heads, length, dim, device="cuda", dtype=torch.bfloat16)
            v = torch.randn_like(k)
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            with sdpa_kernel(backend) if backend else contextlib.nullcontext():
                F.scaled_dot_product_attention(q, k, v)
            torch.cuda.synchronize()
            ms.append((time.perf_counter() - t0) * 1e3)
    except RuntimeError as e:
        print(f"{name:10s} failed: {str(e).splitlines()[0][:100]}")
        continue
    print(f"{name:10s} median {statistics.median(ms):8.3f} ms  max {max(ms):8.2f} ms  "
          f"calls over 20 ms: {sum(m > 20 for m in ms)}/{len(ms)}  first {ms[0]:.1f} ms", flush=True)
