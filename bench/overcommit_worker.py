#!/usr/bin/env python3
"""One tenant of the overcommit check (bench/overcommit_check.sh, issue #6).

Builds --gib GiB of bf16 weights from a fixed seed on the GPU, then takes
--turns turns at inference: it waits for the token file to name it, runs a
chain of matmuls through every weight, saves the output of its first turn
to --out, reports the time of each turn (the first command of a turn pays
for swapping this tenant's memory back in), and passes the token on.
Plain PyTorch: run it natively (the reference) or through Wooly unchanged.
"""
import argparse
import json
import os
import time

import torch


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--index", type=int, default=0)
    p.add_argument("--tenants", type=int, default=1)
    p.add_argument("--gib", type=float, default=32)
    p.add_argument("--turns", type=int, default=3)
    p.add_argument("--token", default="")
    p.add_argument("--pause", type=float, default=0.0,
                   help="seconds to wait after taking the token (lets the others turn idle)")
    p.add_argument("--out", required=True)
    a = p.parse_args()

    def wait_turn(turn):
        if not a.token:
            return
        want = f"{turn} {a.index}"
        while True:
            try:
                with open(a.token) as f:
                    if f.read().strip() == want:
                        break
            except FileNotFoundError:
                pass
            time.sleep(0.01)
        time.sleep(a.pause)

    def pass_turn(turn):
        if not a.token:
            return
        nxt = a.index + 1
        t = turn
        if nxt == a.tenants:
            nxt, t = 0, turn + 1
        tmp = f"{a.token}.{a.index}"
        with open(tmp, "w") as f:
            f.write(f"{t} {nxt}")
        os.replace(tmp, a.token)

    n = 8192
    per = n * n * 2  # one bf16 weight matrix
    count = max(1, int(a.gib * (1 << 30) // per))
    g = torch.Generator(device="cuda")
    g.manual_seed(1234 + a.index)
    x0 = torch.randn(16, n, device="cuda", dtype=torch.bfloat16, generator=g)
    times = []
    weights = []
    for turn in range(a.turns):
        wait_turn(turn)
        t0 = time.perf_counter()
        # The first command that reads this tenant's memory: through Wooly
        # it waits for the tenant's swap-in (issue #6 asks for its time).
        x0[0, 0].item()
        tin = time.perf_counter()
        if turn == 0:
            for _ in range(count):
                weights.append(torch.randn(n, n, device="cuda", dtype=torch.bfloat16,
                                           generator=g) * (1.0 / n ** 0.5))
        torch.cuda.synchronize()
        t1 = time.perf_counter()
        y = x0
        for w in weights:
            y = torch.tanh(y @ w)
        torch.cuda.synchronize()
        t2 = time.perf_counter()
        if turn == 0:
            torch.save(y.float().cpu(), a.out)
        else:
            first = torch.load(a.out)
            if not torch.equal(first, y.float().cpu()):
                print(json.dumps({"index": a.index, "error": f"turn {turn} differs from turn 0"}),
                      flush=True)
                return 1
        times.append({"turn": turn, "first_cmd_s": round(tin - t0, 4), "setup_s": round(t1 - tin, 4),
                      "infer_s": round(t2 - t1, 4)})
        pass_turn(turn)
    print(json.dumps({"index": a.index, "weights": count, "gib": round(count * per / (1 << 30), 2),
                      "turns": times}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
