#!/usr/bin/env python3
"""One process of the weight dedup check (bench/dedup_check.sh, issue #6).

--gen: builds the weights once, on the CPU, from a fixed seed: --gib GiB of
bf16 as 8192x8192 matrices (128 MiB each), every matrix different, written
to --data (raw bytes) with an exact reference checksum per matrix in --ref.
Values are finite (sign and 8 random bits, exponent 2^-7 or 2^-6), so
every bit pattern is a plain number.

Otherwise (a tenant, or the native reference run): loads --data into
ordinary host memory, uploads every matrix with .cuda() (a pageable
host-to-device copy), reports the upload time, then checksums each matrix
on the GPU and compares with --ref. With --sync DIR it takes part in the
script's sequence: writes ready.I once CUDA is up and the weights are in
host memory, uploads when go.I appears, writes loaded.I (its upload
figures) and holds its weights until check appears, then checksums.
Plain PyTorch: runs natively or through Wooly unchanged. Prints one JSON
line on stdout.
"""
import argparse
import concurrent.futures
import json
import mmap
import os
import sys
import time
import warnings

import torch

N = 8192  # matrix side: one 128 MiB bf16 matrix
NN = N * N
MAT_BYTES = NN * 2
# bf16 bit patterns: keep the sign, the lowest exponent bit and the 7
# mantissa bits of a random 16-bit word (0x80FF), set the exponent to 120.
MASK_KEEP = -32513  # 0x80FF as int16
MASK_SET = 0x3C00


def checksum(m):
    """Exact integer checksum of one matrix (int16 view, N x N), on its
    device: row sums weighted by row number plus column sums weighted by
    column number. Integer arithmetic, so CPU and GPU agree bit for bit,
    and a moved row, column or element changes it."""
    x = m.view(torch.int16).view(N, N)
    ra = torch.arange(1, N + 1, dtype=torch.int64, device=x.device)
    ca = torch.arange(N, dtype=torch.int64, device=x.device) * 3 + 1
    rows = x.sum(dim=1, dtype=torch.int64)
    cols = x.sum(dim=0, dtype=torch.int64)
    return [int((rows * ra).sum().item()), int((cols * ca).sum().item())]


def count_for(gib):
    return max(1, int(gib * (1 << 30) // MAT_BYTES))


def gen(a):
    count = count_for(a.gib)
    total = count * MAT_BYTES
    t0 = time.perf_counter()
    tmp = a.data + ".tmp"
    f = open(tmp, "w+b")
    f.truncate(total)
    # A shared mapping of the file: writes go straight to it.
    mm = mmap.mmap(f.fileno(), total)
    flat = torch.frombuffer(mm, dtype=torch.int16)

    def one(i):
        g = torch.Generator().manual_seed(a.seed * 1000003 + i)
        m = flat[i * NN:(i + 1) * NN]
        # 64-bit draws (a quarter of the calls of 16-bit ones); every bit
        # that MASK_KEEP keeps is uniform.
        try:
            torch.randint(-(1 << 62), 1 << 62, (NN // 4,), dtype=torch.int64, generator=g,
                          out=m.view(torch.int64))
        except RuntimeError:  # a torch that refuses the range: [0, 2^63)
            m.view(torch.int64).random_(generator=g)
        m.bitwise_and_(MASK_KEEP).bitwise_or_(MASK_SET)
        return checksum(m)

    threads = max(1, min(16, os.cpu_count() or 1))
    torch.set_num_threads(1)  # parallel over matrices instead
    with concurrent.futures.ThreadPoolExecutor(threads) as ex:
        sums = list(ex.map(one, range(count)))
    del flat, mm  # unmapped once the tensor lets go of it; the file keeps the bytes
    f.close()
    os.replace(tmp, a.data)
    with open(a.ref, "w") as f:
        json.dump({"n": N, "count": count, "seed": a.seed, "bytes": total, "checksums": sums}, f)
    print(json.dumps({"gen": True, "count": count, "gib": round(total / (1 << 30), 3),
                      "gen_s": round(time.perf_counter() - t0, 2), "threads": threads}),
          flush=True)
    return 0


def wait_for(path, timeout=3600.0):
    t0 = time.monotonic()
    while not os.path.exists(path):
        if time.monotonic() - t0 > timeout:
            raise TimeoutError(f"waiting for {path}")
        time.sleep(0.005)


def put(path, obj):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f)
    os.replace(tmp, path)


def run(a):
    with open(a.ref) as f:
        ref = json.load(f)
    count = ref["count"]
    out = {"index": a.index, "label": a.label, "count": count,
           "gib": round(count * MAT_BYTES / (1 << 30), 3)}
    sync = (lambda name: os.path.join(a.sync, name)) if a.sync else None

    t0 = time.perf_counter()
    torch.zeros(1, device="cuda")
    torch.cuda.synchronize()
    out["init_s"] = round(time.perf_counter() - t0, 3)
    out["device"] = torch.cuda.get_device_name(0)

    # Ordinary (anonymous, pageable) host memory, as after loading a model.
    t0 = time.perf_counter()
    with open(a.data, "rb") as f:
        mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "the buffer is not writable": only read here
        mapped = torch.frombuffer(mm, dtype=torch.int16, count=count * NN)
    flat = mapped.clone()
    del mapped, mm  # the mapping goes once the tensor lets go of it
    host = [flat[i * NN:(i + 1) * NN].view(torch.bfloat16).view(N, N) for i in range(count)]
    out["host_load_s"] = round(time.perf_counter() - t0, 3)

    # Warm the pageable copy path with less than one dedup chunk (so it
    # never takes part in dedup), and give the memory back.
    warm = torch.full((16 << 20,), 7, dtype=torch.int16)
    warm.cuda()
    torch.cuda.synchronize()
    torch.cuda.empty_cache()

    if sync:
        put(sync(f"ready.{a.index}"), {"index": a.index})
        wait_for(sync(f"go.{a.index}"))

    torch.cuda.synchronize()
    t0 = time.perf_counter()
    dev = [m.cuda() for m in host]
    torch.cuda.synchronize()
    up = time.perf_counter() - t0
    out["upload_s"] = round(up, 4)
    out["upload_gbps"] = round(count * MAT_BYTES / up / 1e9, 2)
    out["torch_reserved_gib"] = round(torch.cuda.memory_reserved() / (1 << 30), 3)

    if sync:
        put(sync(f"loaded.{a.index}"), out)
        wait_for(sync("check"))

    t0 = time.perf_counter()
    bad = []
    for i, m in enumerate(dev):
        got = checksum(m)
        if got != ref["checksums"][i]:
            bad.append({"matrix": i, "got": got, "want": ref["checksums"][i]})
    torch.cuda.synchronize()
    out["check_s"] = round(time.perf_counter() - t0, 3)
    out["checksums_ok"] = count - len(bad)
    out["checksums_bad"] = len(bad)
    if bad:
        out["first_bad"] = bad[:3]
    print(json.dumps(out), flush=True)
    if sync:
        put(sync(f"done.{a.index}"), out)
    return 0 if not bad else 2


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--gen", action="store_true", help="build --data and --ref, then exit")
    p.add_argument("--data", required=True)
    p.add_argument("--ref", required=True)
    p.add_argument("--gib", type=float, default=10)
    p.add_argument("--seed", type=int, default=20260)
    p.add_argument("--index", type=int, default=0)
    p.add_argument("--label", default="wooly")
    p.add_argument("--sync", default="", help="directory of the script's sequence files")
    a = p.parse_args()
    return gen(a) if a.gen else run(a)


if __name__ == "__main__":
    sys.exit(main())
