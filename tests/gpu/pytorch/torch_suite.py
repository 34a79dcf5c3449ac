#!/usr/bin/env python3
"""The PyTorch suite: named cases that run ordinary PyTorch code on the GPU and
save their results, so that a native run and a run through Wooly can be
compared (compare.py). scripts/pytorch-suite.sh runs it both ways.

    torch_suite.py OUTDIR [--cases a,b,...] [--log FILE] [--case-timeout SECONDS]

Prints "CASE <name> OK" or "CASE <name> ERROR <type>: <message>" per case;
tracebacks, warnings and faulthandler dumps go to the log file (default
OUTDIR/suite.log). One case failing never stops the others. Results and the
per-case status are written to OUTDIR (format: resultio.py).

Resuming: if OUTDIR already has a status.json, cases already finished are
skipped, and a case left "running" (the previous process crashed or was
killed in it) is recorded as an error; the rest run. The runner uses this to
carry on after a crash.

Determinism: each case seeds torch with a hash of its name, cuDNN is
deterministic with benchmarking off, torch.use_deterministic_algorithms(True,
warn_only=True), CUBLAS_WORKSPACE_CONFIG=:4096:8, fixed shapes. Tolerances per
case are in suite_table.py.
"""
import argparse
import ctypes
import faulthandler
import gc
import os
import sys
import time
import traceback
import warnings
import zlib

os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
faulthandler.enable()  # a crash while importing torch: stack to stderr (main() moves it to the log)

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import resultio  # noqa: E402
import suite_table  # noqa: E402

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

DEV = "cuda"
CASES = {}


def case(name):
    """Registers a case function under the name used in suite_table.py."""
    def deco(fn):
        assert name not in CASES, name
        CASES[name] = fn
        return fn
    return deco


def first_line(exc, limit=300):
    text = str(exc).strip().splitlines()
    text = text[0] if text else ""
    return text if len(text) <= limit else text[:limit - 3] + "..."


def randn(*shape, dtype=torch.float32, requires_grad=False):
    return torch.randn(*shape, device=DEV, dtype=dtype, requires_grad=requires_grad)


# ------------------------------------------------------------------- basics

@case("device_properties")
def _device_properties():
    p = torch.cuda.get_device_properties(0)
    r = {
        "device_count": torch.cuda.device_count(),
        "is_available": torch.cuda.is_available(),
        "current_device": torch.cuda.current_device(),
        "name": p.name,
        "get_device_name": torch.cuda.get_device_name(0),
        "total_memory": int(p.total_memory),
        "major": p.major,
        "minor": p.minor,
        "capability": list(torch.cuda.get_device_capability(0)),
        "multi_processor_count": p.multi_processor_count,
        "is_bf16_supported": torch.cuda.is_bf16_supported(),
        "cudnn_version": torch.backends.cudnn.version(),
    }
    for attr in ("uuid", "L2_cache_size", "max_threads_per_multi_processor", "regs_per_multiprocessor",
                 "warp_size", "shared_memory_per_block", "shared_memory_per_block_optin",
                 "shared_memory_per_multiprocessor", "pci_bus_id", "pci_device_id", "pci_domain_id",
                 "is_integrated", "is_multi_gpu_board"):
        v = getattr(p, attr, None)
        r[attr] = v if isinstance(v, (bool, int, float, str, type(None))) else str(v)
    return r


@case("tensor_creation")
def _tensor_creation():
    r = {
        "zeros": torch.zeros(3, 5, device=DEV),
        "ones_i32": torch.ones(7, dtype=torch.int32, device=DEV),
        "full_f64": torch.full((4, 4), 3.25, device=DEV, dtype=torch.float64),
        "arange": torch.arange(0, 1000, 3, device=DEV),
        "arange_f": torch.arange(-2.0, 2.0, 0.125, device=DEV),
        "linspace": torch.linspace(-1, 1, 101, device=DEV),
        "eye_f16": torch.eye(9, device=DEV, dtype=torch.float16),
        "from_list": torch.tensor([[1.5, -2.0], [3.0, 1e-3]], device=DEV),
        "from_cpu": torch.arange(256, dtype=torch.uint8).to(DEV),
        "rand": torch.rand(1000, device=DEV),
        "randn": randn(64, 64),
        "randn_bf16": randn(128, dtype=torch.bfloat16),
        "randint": torch.randint(-100, 100, (500,), device=DEV),
        "randperm": torch.randperm(1000, device=DEV),
        "normal": torch.empty(300, device=DEV).normal_(2.0, 0.5),
        "bernoulli": torch.bernoulli(torch.full((400,), 0.3, device=DEV)),
    }
    r["empty_like_filled"] = torch.empty_like(r["randn"]).fill_(7)
    x = randn(33)
    r["casts"] = {"f16": x.half(), "bf16": x.bfloat16(), "f64": x.double(),
                  "i64": (x * 100).long(), "bool": x > 0, "back_f32": x.half().float()}
    r["complex"] = torch.complex(x, -x)
    r["item"] = r["randn"][3, 4].item()
    r["tolist"] = r["randint"][:10].tolist()
    return r


@case("elementwise_ops")
def _elementwise_ops():
    x = randn(4096)
    y = torch.rand(4096, device=DEV) + 0.5
    r = {
        "add": x + y, "sub": x - y, "mul": x * y, "div": x / y, "pow": y ** 1.7,
        "exp": x.exp(), "log": y.log(), "sqrt": y.sqrt(), "rsqrt": y.rsqrt(),
        "sin": x.sin(), "cos": x.cos(), "tanh": x.tanh(), "sigmoid": x.sigmoid(),
        "erf": torch.erf(x), "gelu": F.gelu(x), "gelu_tanh": F.gelu(x, approximate="tanh"),
        "silu": F.silu(x), "softplus": F.softplus(x), "relu": F.relu(x), "abs": x.abs(),
        "floor": (x * 10).floor(), "round": (x * 10).round(), "fmod": torch.fmod(x, 0.3),
        "remainder": torch.remainder(x, 0.3), "atan2": torch.atan2(x, y),
        "clamp": x.clamp(-0.5, 0.5), "where": torch.where(x > 0, x, y),
        "maximum": torch.maximum(x, y), "lerp": torch.lerp(x, y, 0.3),
        "addcmul": torch.addcmul(x, x, y, value=0.5),
        "gt": x > y, "eq": x.eq(x.round()), "isfinite": torch.isfinite(x / (x - x[0])),
    }
    a, b = randn(64, 1), randn(1, 32)
    r["broadcast"] = a * b + 1
    z = x.clone()
    z.mul_(2).add_(1).clamp_(max=2.0)
    r["inplace"] = z
    xh = x.half()
    r["half"] = (xh * xh + 1).exp_()
    r["bf16"] = (x.bfloat16() * 3).sigmoid()
    r["f64"] = x.double().exp() / 3.0
    i = torch.randint(-1000, 1000, (777,), device=DEV)
    r["int_ops"] = {"floordiv": torch.div(i, 3, rounding_mode="floor"), "mod": i % 7, "shl": i << 2,
                    "and": i & 0x5A, "xor": i ^ 0x33, "abs": i.abs()}
    return r


@case("reductions_indexing")
def _reductions_indexing():
    x = randn(256, 300)
    r = {"sum": x.sum(), "sum_dim": x.sum(1), "mean": x.mean(0), "std": x.std(1), "var": x.var(),
         "amax": x.amax(1), "argmax": x.argmax(1), "argmin": x.argmin(), "prod": (x[:4, :10] * 0.5 + 1).prod(1),
         "cumsum": x.cumsum(1), "logsumexp": x.logsumexp(1), "softmax": x.softmax(1),
         "log_softmax": x.log_softmax(0), "norm": x.norm(), "norm_dim": x.norm(dim=0)}
    mx = x.max(1)
    r["max_values"], r["max_indices"] = mx.values, mx.indices
    srt = x[0].sort()
    r["sort_values"], r["sort_indices"] = srt.values, srt.indices
    tk = x[1].topk(10)
    r["topk_values"], r["topk_indices"] = tk.values, tk.indices
    u, counts = torch.unique(torch.randint(0, 50, (1000,), device=DEV), return_counts=True)
    r["unique"], r["unique_counts"] = u, counts
    idx = torch.randint(0, 300, (256, 7), device=DEV)
    r["gather"] = x.gather(1, idx)
    r["index_select"] = x.index_select(0, torch.tensor([5, 3, 200, 0], device=DEV))
    r["masked_select"] = x.masked_select(x > 1.5)
    r["nonzero"] = (x > 2.5).nonzero()
    r["cat"] = torch.cat([x[:3], x[-2:]], 0)
    r["stack"] = torch.stack([x[0], x[1]], 1)
    r["transpose_copy"] = x.t().contiguous()
    r["strided_slice"] = x[::2, 5:100:3].clone()
    r["flip_roll"] = torch.roll(x.flip(0), 17, 1)[:8]
    r["any_all"] = [bool((x > 4).any().item()), bool((x > -10).all().item())]
    return r


# ------------------------------------------------------------------- matmul

def _matmuls(dtype):
    a, b = randn(256, 384, dtype=dtype), randn(384, 192, dtype=dtype)
    r = {"mm": a @ b,
         "mm_transposed": a.t().contiguous().t() @ b,
         "mv": a @ randn(384, dtype=dtype),
         "bmm": torch.bmm(randn(8, 64, 96, dtype=dtype), randn(8, 96, 48, dtype=dtype)),
         "odd_shapes": randn(17, 33, dtype=dtype) @ randn(33, 9, dtype=dtype)}
    c, p, q = randn(4, 32, 16, dtype=dtype), randn(4, 32, 24, dtype=dtype), randn(4, 24, 16, dtype=dtype)
    r["baddbmm"] = torch.baddbmm(c, p, q, beta=0.5, alpha=2.0)
    r["einsum"] = torch.einsum("bij,bjk->bik", p, q)
    return r


def _with_fp32_precision(precision, dtype):
    torch.set_float32_matmul_precision(precision)
    try:
        r = _matmuls(dtype)
        r["precision"] = torch.get_float32_matmul_precision()
        return r
    finally:
        torch.set_float32_matmul_precision("highest")


@case("matmul_fp32")
def _matmul_fp32():
    return _with_fp32_precision("highest", torch.float32)


@case("matmul_tf32")
def _matmul_tf32():
    return _with_fp32_precision("high", torch.float32)


@case("matmul_fp16")
def _matmul_fp16():
    return _matmuls(torch.float16)


@case("matmul_bf16")
def _matmul_bf16():
    return _matmuls(torch.bfloat16)


@case("cublaslt_epilogues")
def _cublaslt_epilogues():
    r = {}
    a16, w16, bias16 = randn(128, 256, dtype=torch.float16), randn(256, 64, dtype=torch.float16), \
        randn(64, dtype=torch.float16)
    r["addmm_bias_fp16"] = torch.addmm(bias16, a16, w16)
    abf, wbf, biasbf = a16.bfloat16(), w16.bfloat16(), bias16.bfloat16()
    r["addmm_bias_bf16"] = torch.addmm(biasbf, abf, wbf)
    act = getattr(torch, "_addmm_activation", None)
    if act is not None:
        r["addmm_gelu_fp16"] = act(bias16, a16, w16, use_gelu=True)
        r["addmm_relu_bf16"] = act(biasbf, abf, wbf)
    x = randn(32, 256, dtype=torch.bfloat16, requires_grad=True)
    lin = nn.Linear(256, 128).to(DEV, torch.bfloat16)
    y = F.linear(x, lin.weight, lin.bias)
    y.float().square().sum().backward()
    r["linear_bf16"], r["linear_bf16_dx"] = y, x.grad
    r["linear_bf16_dw"], r["linear_bf16_db"] = lin.weight.grad, lin.bias.grad
    r["linear_fp32"] = F.linear(randn(64, 100), randn(50, 100), randn(50))
    return r


@case("cublaslt_preferred")
def _cublaslt_preferred():
    pref = getattr(torch.backends.cuda, "preferred_blas_library", None)
    if pref is None:
        return {"status": "n/a: no torch.backends.cuda.preferred_blas_library"}
    previous = pref()
    r = {}
    try:
        pref("cublaslt")
        r["status"] = str(pref())
        for dtype in (torch.float32, torch.float16, torch.bfloat16):
            tag = str(dtype).replace("torch.", "")
            a, b, bias = randn(96, 160, dtype=dtype), randn(160, 80, dtype=dtype), randn(80, dtype=dtype)
            r["mm_" + tag] = a @ b
            r["addmm_" + tag] = torch.addmm(bias, a, b)
            r["bmm_" + tag] = torch.bmm(randn(3, 40, 24, dtype=dtype), randn(3, 24, 56, dtype=dtype))
    finally:
        pref(previous)
    return r


@case("scaled_mm_fp8")
def _scaled_mm_fp8():
    if not hasattr(torch, "_scaled_mm") or not hasattr(torch, "float8_e4m3fn"):
        return {"status": "n/a: no torch._scaled_mm"}
    a = (randn(64, 128) * 0.5).to(torch.float8_e4m3fn)
    b = (randn(96, 128) * 0.5).to(torch.float8_e4m3fn).t()  # column-major, as cuBLASLt wants
    sa, sb = torch.tensor(0.5, device=DEV), torch.tensor(2.0, device=DEV)
    r = {"a_bits": a.view(torch.uint8)}
    try:
        out = torch._scaled_mm(a, b, scale_a=sa, scale_b=sb, out_dtype=torch.bfloat16)
        if isinstance(out, tuple):
            out = out[0]
        torch.cuda.synchronize()
    except RuntimeError as e:
        r["status"] = "unavailable: %s: %s" % (type(e).__name__, first_line(e, 160))
        return r
    r["status"], r["out"] = "ok", out
    return r


# ------------------------------------------------------------------- cuDNN

@case("conv2d_cudnn")
def _conv2d_cudnn():
    r = {"cudnn_available": torch.backends.cudnn.is_available()}
    conv = nn.Conv2d(8, 16, 3, padding=1).to(DEV)
    x = randn(4, 8, 32, 32, requires_grad=True)
    y = conv(x)
    y.backward(torch.randn_like(y))
    r.update(out=y, dx=x.grad, dw=conv.weight.grad, db=conv.bias.grad)
    conv2 = nn.Conv2d(16, 32, 5, stride=2, padding=2, bias=False).to(DEV, torch.float16)
    conv2 = conv2.to(memory_format=torch.channels_last)
    x2 = randn(2, 16, 28, 28, dtype=torch.float16).to(memory_format=torch.channels_last).requires_grad_()
    y2 = conv2(x2)
    y2.float().sum().backward()
    r.update(out_cl_fp16=y2, dx_cl_fp16=x2.grad, dw_cl_fp16=conv2.weight.grad)
    depthwise = nn.Conv2d(8, 8, 3, groups=8, padding=1).to(DEV)
    r["depthwise"] = depthwise(randn(2, 8, 20, 20))
    return r


# ------------------------------------------------------------------- autocast

def _small_convnet():
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Flatten(),
                         nn.Linear(8 * 16 * 16, 10)).to(DEV)


@case("autocast_bf16")
def _autocast_bf16():
    model = _small_convnet()
    x, target = randn(4, 3, 16, 16), torch.randint(0, 10, (4,), device=DEV)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        out = model(x)
        loss = F.cross_entropy(out, target)
    loss.backward()
    return {"out": out, "out_dtype": str(out.dtype), "loss": loss.item(),
            "grads": [p.grad for p in model.parameters()]}


@case("autocast_fp16_gradscaler")
def _autocast_fp16_gradscaler():
    model = _small_convnet()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    scaler = torch.amp.GradScaler("cuda") if hasattr(torch, "amp") and hasattr(torch.amp, "GradScaler") \
        else torch.cuda.amp.GradScaler()
    losses, outs = [], []
    for _ in range(3):
        x, target = randn(4, 3, 16, 16), torch.randint(0, 10, (4,), device=DEV)
        with torch.autocast("cuda", dtype=torch.float16):
            out = model(x)
            loss = F.cross_entropy(out, target)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.detach())
        outs.append(out.detach())
    return {"losses": torch.stack(losses), "outs": outs, "out_dtype": str(outs[0].dtype),
            "scale": float(scaler.get_scale()), "params": [p.detach() for p in model.parameters()]}


# ------------------------------------------------------------------- attention

def _sdpa(backend_name):
    from torch.nn.attention import SDPBackend, sdpa_kernel
    backend = getattr(SDPBackend, backend_name, None)
    if backend is None:
        return {"status": "n/a: no SDPBackend.%s" % backend_name}
    shape = (2, 4, 128, 64)
    q, k, v = (randn(*shape, dtype=torch.float16, requires_grad=True) for _ in range(3))
    grad = randn(*shape, dtype=torch.float16)
    try:
        with sdpa_kernel([backend]), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "backend not available because ..." noise
            out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            out.backward(grad)
        torch.cuda.synchronize()
    except RuntimeError as e:
        return {"status": "unavailable: %s: %s" % (type(e).__name__, first_line(e, 160))}
    return {"status": "ok", "out": out, "dq": q.grad, "dk": k.grad, "dv": v.grad}


@case("sdpa_math")
def _sdpa_math():
    return _sdpa("MATH")


@case("sdpa_flash")
def _sdpa_flash():
    return _sdpa("FLASH_ATTENTION")


@case("sdpa_efficient")
def _sdpa_efficient():
    return _sdpa("EFFICIENT_ATTENTION")


@case("sdpa_cudnn")
def _sdpa_cudnn():
    return _sdpa("CUDNN_ATTENTION")


# ------------------------------------------------------------------- training

class SmallCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16)
        self.conv2, self.bn2 = nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32)
        self.fc = nn.Linear(32, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 2)  # non-overlapping: deterministic bwd
        x = F.relu(self.bn2(self.conv2(x)))
        return self.fc(x.mean(dim=(2, 3)))


@case("train_cnn_adamw")
def _train_cnn_adamw():
    model = SmallCNN().to(DEV)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-2)
    xs, ys = randn(8, 16, 3, 32, 32), torch.randint(0, 10, (8, 16), device=DEV)
    losses = []
    for step in range(50):
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(xs[step % 8]), ys[step % 8])
        loss.backward()
        opt.step()
        losses.append(loss.detach())
    return {"losses": torch.stack(losses), "conv1_weight": model.conv1.weight.detach(),
            "fc_weight": model.fc.weight.detach(), "bn1_running_mean": model.bn1.running_mean,
            "bn2_running_var": model.bn2.running_var}


class TinyLM(nn.Module):
    def __init__(self, vocab=100, d=64, seq=32):
        super().__init__()
        self.emb = nn.Embedding(vocab, d)
        self.pos = nn.Parameter(torch.randn(seq, d) * 0.02)
        layer = nn.TransformerEncoderLayer(d, 4, 128, dropout=0.1, batch_first=True)
        self.enc = nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=False)
        self.head = nn.Linear(d, vocab)
        self.register_buffer("mask", nn.Transformer.generate_square_subsequent_mask(seq), persistent=False)

    def forward(self, ids):
        h = self.emb(ids) + self.pos[: ids.shape[1]]
        return self.head(self.enc(h, mask=self.mask, is_causal=True))


@case("train_transformer_adamw")
def _train_transformer_adamw():
    from torch.nn.attention import SDPBackend, sdpa_kernel
    model = TinyLM().to(DEV)
    try:
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True)
        fused = True
    except (TypeError, RuntimeError):
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        fused = False
    ids = torch.randint(0, 100, (8, 16, 33), device=DEV)
    losses = []
    # The MATH backend: deterministic backward, so the curve must match bit for bit
    # (the other SDPA backends are checked by the sdpa_* cases).
    with sdpa_kernel([SDPBackend.MATH]):
        for step in range(50):
            batch = ids[step % 8]
            opt.zero_grad(set_to_none=True)
            logits = model(batch[:, :-1])
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1))
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            losses.append(loss.detach())
    return {"losses": torch.stack(losses), "fused_adamw": fused, "head_weight": model.head.weight.detach(),
            "emb_weight": model.emb.weight.detach()}


@case("hf_gpt2_tiny_train")
def _hf_gpt2_tiny_train():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # built from a config: nothing to download
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from transformers import GPT2Config, GPT2LMHeadModel
    kwargs = dict(vocab_size=128, n_positions=64, n_embd=64, n_layer=2, n_head=4,
                  resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    try:
        cfg = GPT2Config(attn_implementation="eager", **kwargs)
    except TypeError:
        cfg = GPT2Config(**kwargs)
    model = GPT2LMHeadModel(cfg).to(DEV)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(10):
        ids = torch.randint(0, 128, (4, 32), device=DEV)
        out = model(input_ids=ids, labels=ids)
        out.loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(out.loss.detach())
    model.eval()
    with torch.no_grad():
        logits = model(input_ids=torch.arange(32, device=DEV).unsqueeze(0)).logits
    return {"losses": torch.stack(losses), "eval_logits": logits}


# ------------------------------------------------------------------- CUDA graphs

@case("cuda_graph_capture_replay")
def _cuda_graph_capture_replay():
    model = nn.Sequential(nn.Linear(64, 128), nn.GELU(), nn.Linear(128, 32)).to(DEV)
    static_in = randn(16, 64)

    def step(x):
        return model(x) + 0.01 * torch.rand_like(x[:, :32])  # graph-safe RNG too

    with torch.no_grad():
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(3):
                step(static_in)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            static_out = step(static_in)
        outs = []
        for _ in range(5):
            static_in.copy_(randn(16, 64))
            graph.replay()
            outs.append(static_out.clone())
        torch.cuda.synchronize()
        deterministic_part = model(static_in)
    graph.reset()
    return {"replays": torch.stack(outs), "eager_model_out": deterministic_part}


@case("make_graphed_callables")
def _make_graphed_callables():
    mod = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 8)).to(DEV)
    opt = torch.optim.SGD(mod.parameters(), lr=0.1)
    graphed = torch.cuda.make_graphed_callables(mod, (randn(8, 32),))
    losses = []
    for _ in range(10):
        inp, target = randn(8, 32), randn(8, 8)
        opt.zero_grad(set_to_none=True)
        loss = F.mse_loss(graphed(inp), target)
        loss.backward()
        opt.step()
        losses.append(loss.detach())
    return {"losses": torch.stack(losses), "params": [p.detach() for p in mod.parameters()]}


# ------------------------------------------------------------------- compile / Triton

@case("torch_compile")
def _torch_compile():
    import torch._dynamo
    torch._dynamo.reset()
    try:
        from torch._inductor import metrics
        metrics.reset()
    except Exception:  # noqa: BLE001 - the kernel count is informative only
        metrics = None

    def f(x, y):
        return F.gelu(x @ y + 1.0).sum(dim=-1) * torch.sin(x).mean()

    cf = torch.compile(f, mode="default", fullgraph=True)
    x, y = randn(64, 128), randn(128, 96)
    r = {"f": cf(x, y), "f_again": cf(x * 2, y)}

    mod = nn.Sequential(nn.LayerNorm(64), nn.Linear(64, 128), nn.GELU(), nn.Linear(128, 16)).to(DEV)
    cmod = torch.compile(mod, mode="default")
    inp = randn(32, 64, requires_grad=True)
    out = cmod(inp)
    loss = out.pow(2).mean()
    loss.backward()
    r.update(module_out=out, module_loss=loss.item(), module_dinp=inp.grad,
             module_grads=[p.grad for p in mod.parameters()])
    count = getattr(metrics, "generated_kernel_count", None) if metrics is not None else None
    r["generated_kernels_positive"] = "unknown" if count is None else count > 0
    return r


@case("triton_kernel")
def _triton_kernel():
    import triton_kernels
    x, y = randn(98_432), randn(98_432)
    rows = randn(100, 781)
    return {"vector_add": triton_kernels.vector_add(x, y), "row_softmax": triton_kernels.row_softmax(rows)}


# ------------------------------------------------------------------- streams, events, copies

@case("cuda_event_timing")
def _cuda_event_timing():
    a = randn(1024, 1024)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(20):
        a = torch.tanh(a @ a * 1e-3)
    end.record()
    end.synchronize()
    ms = start.elapsed_time(end)
    plain = torch.cuda.Event()
    plain.record()
    plain.synchronize()
    return {"elapsed_positive": ms > 0, "end_query": end.query(), "plain_query": plain.query(), "result": a}


@case("two_streams_wait")
def _two_streams_wait():
    s1 = torch.cuda.Stream()
    s2 = torch.cuda.Stream(priority=-1)
    a = randn(512, 512)
    s1.wait_stream(torch.cuda.current_stream())  # `a` was made on the current stream
    with torch.cuda.stream(s1):
        x = a
        for _ in range(30):
            x = torch.tanh(x @ a * 0.01)
        done = torch.cuda.Event()
        done.record(s1)
    s2.wait_stream(s1)
    with torch.cuda.stream(s2):
        y = x * 2 + 1
    s3 = torch.cuda.Stream()
    done.wait(s3)
    with torch.cuda.stream(s3):
        z = x.sum(0)
    x.record_stream(s2)
    x.record_stream(s3)
    torch.cuda.current_stream().wait_stream(s2)
    torch.cuda.current_stream().wait_stream(s3)
    torch.cuda.synchronize()
    return {"y": y, "z": z, "s1_query": s1.query(), "s2_priority_lower_or_equal": s2.priority <= s1.priority}


@case("pinned_nonblocking_copy")
def _pinned_nonblocking_copy():
    host = torch.randn(1 << 20).pin_memory()
    r = {"host_pinned": host.is_pinned()}
    dev = host.to(DEV, non_blocking=True)
    res = dev * 3 + 1
    back = torch.empty(res.shape, dtype=res.dtype, pin_memory=True)
    r["back_pinned"] = back.is_pinned()
    back.copy_(res, non_blocking=True)
    pageable = torch.arange(4096, dtype=torch.float32)
    dev2 = pageable.to(DEV, non_blocking=True)
    side = torch.cuda.Stream()
    with torch.cuda.stream(side):
        host2 = torch.empty(1000, pin_memory=True).copy_(torch.linspace(0, 1, 1000))
        dev3 = host2.to(DEV, non_blocking=True) * 2
    torch.cuda.current_stream().wait_stream(side)
    torch.cuda.synchronize()
    r.update(back=back.clone(), pageable_roundtrip=dev2.cpu(), side_stream=dev3.cpu())
    return r


@case("dataloader_pin_memory_workers")
def _dataloader_pin_memory_workers():
    from torch.utils.data import DataLoader, TensorDataset
    data = torch.arange(256 * 8, dtype=torch.float32).reshape(256, 8)
    labels = torch.arange(256) % 5
    ds = TensorDataset(data, labels)
    # "fork" explicitly: the workers are forked from a process that has
    # already initialised CUDA (and, through Wooly, holds a session).
    common = dict(batch_size=32, num_workers=2, pin_memory=True, multiprocessing_context="fork", timeout=60)
    sums, pinned = [], []
    for xb, yb in DataLoader(ds, shuffle=False, **common):
        pinned.append(bool(xb.is_pinned()))
        xg, yg = xb.to(DEV, non_blocking=True), yb.to(DEV, non_blocking=True)
        sums.append((xg * 2).sum(dim=1) + yg)
    gen = torch.Generator().manual_seed(1234)
    order = [yb for _, yb in DataLoader(ds, shuffle=True, generator=gen, **common)]
    torch.cuda.synchronize()
    return {"pinned": pinned, "sums": torch.cat(sums), "shuffled_labels": torch.cat(order)}


# ------------------------------------------------------------------- memory

def _quiesce():
    gc.collect()
    torch.cuda.synchronize()
    torch.cuda.empty_cache()


@case("memory_stats")
def _memory_stats():
    _quiesce()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    r = {}
    a = torch.empty(1000, dtype=torch.float32, device=DEV)       # 4000 B -> 4096 (512-byte rounding)
    r["after_a"] = torch.cuda.memory_allocated() - base
    b = torch.empty(1 << 20, dtype=torch.uint8, device=DEV)       # 1 MiB
    r["after_b"] = torch.cuda.memory_allocated() - base
    c = torch.empty(3 * (1 << 20) + 1, dtype=torch.uint8, device=DEV)
    r["after_c"] = torch.cuda.memory_allocated() - base
    del b
    r["after_del_b"] = torch.cuda.memory_allocated() - base
    r["peak"] = torch.cuda.max_memory_allocated() - base
    r["reserved_ge_allocated"] = torch.cuda.memory_reserved() >= torch.cuda.memory_allocated()
    del a, c
    r["after_del_all"] = torch.cuda.memory_allocated() - base

    total_props = torch.cuda.get_device_properties(0).total_memory
    free, total = torch.cuda.mem_get_info()
    r["total_equals_props"] = total == total_props
    r["free_le_total"] = 0 < free <= total
    big = torch.empty(1 << 30, dtype=torch.uint8, device=DEV)
    torch.cuda.synchronize()
    free2, total2 = torch.cuda.mem_get_info()
    r["free_dropped_by_1GiB"] = free - free2 >= (1 << 30)
    r["total_unchanged"] = total2 == total
    r["after_big"] = torch.cuda.memory_allocated() - base
    r["peak_after_big"] = torch.cuda.max_memory_allocated() - base
    del big
    _quiesce()
    free3, _ = torch.cuda.mem_get_info()
    r["free_recovered_after_empty_cache"] = free3 - free2 >= (1 << 30)
    return r


@case("memory_fraction")
def _memory_fraction():
    _quiesce()
    total = torch.cuda.get_device_properties(0).total_memory
    r = {}
    torch.cuda.set_per_process_memory_fraction(0.05)
    try:
        ok = torch.empty(int(total * 0.02), dtype=torch.uint8, device=DEV)
        r["within_fraction"] = "ok"
        del ok
        try:
            torch.empty(int(total * 0.10), dtype=torch.uint8, device=DEV)
            r["above_fraction"] = "no error"
        except torch.cuda.OutOfMemoryError as e:
            r["above_fraction"] = type(e).__name__
        r["small_after"] = torch.arange(10, device=DEV).sum().item()
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)
        _quiesce()
    big = torch.empty(int(total * 0.10), dtype=torch.uint8, device=DEV)
    r["above_after_reset"] = "ok"
    del big
    return r


@case("out_of_memory")
def _out_of_memory():
    _quiesce()
    base = torch.cuda.memory_allocated()
    r = {}
    for attempt in ("first", "second"):
        try:
            torch.empty(10 ** 13, device=DEV)
            r[attempt] = "no error"
        except torch.cuda.OutOfMemoryError as e:
            r[attempt] = type(e).__name__
            r[attempt + "_is_runtime_error"] = isinstance(e, RuntimeError)
            r[attempt + "_message_head"] = ". ".join(str(e).split(". ")[:2])[:200]
    r["allocated_delta"] = torch.cuda.memory_allocated() - base
    # The process keeps working: kernels, cuBLAS and an allocation.
    x = torch.ones(1000, device=DEV) * 3
    r["sum_after"] = x.sum().item()
    a, b = randn(128, 128), randn(128, 128)
    r["matmul_after"] = a @ b
    r["alloc_after"] = torch.empty(64 << 20, dtype=torch.uint8, device=DEV).fill_(1).sum().item()
    return r


@case("oom_uncaught")
def _oom_uncaught():
    torch.empty(10 ** 13, device=DEV)  # raises torch.cuda.OutOfMemoryError
    return {"status": "no error"}


# ------------------------------------------------------------------- runner

def to_blobs(value):
    if isinstance(value, torch.Tensor):
        t = value.detach()
        if t.device.type != "cpu":
            t = t.cpu()
        t = t.resolve_conj().resolve_neg().contiguous()
        n = t.numel() * t.element_size()
        data = ctypes.string_at(t.data_ptr(), n) if n else b""
        return resultio.Blob(str(t.dtype).replace("torch.", ""), tuple(t.shape), data)
    if isinstance(value, dict):
        return {str(k): to_blobs(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_blobs(v) for v in value]
    if isinstance(value, (torch.dtype, torch.device)):
        return str(value)
    return value


def mapped_libcuda():
    """Paths of every libcuda.so* (or Wooly library) mapped into this process."""
    paths = []
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                parts = line.split()
                if (len(parts) >= 6 and ("/libcuda.so" in parts[-1] or "/libwooly" in parts[-1])
                        and parts[-1] not in paths):
                    paths.append(parts[-1])
    except OSError:
        pass
    return paths


class Runner:
    def __init__(self, outdir, log, case_timeout):
        self.outdir, self.log, self.case_timeout = outdir, log, case_timeout
        self.status = resultio.read_status(outdir) or {"meta": {}, "order": [], "cases": {}}

    def save(self):
        resultio.write_status(self.outdir, self.status)

    def logline(self, text):
        self.log.write(text + "\n")
        self.log.flush()

    def resume(self):
        for name, st in self.status["cases"].items():
            if st.get("status") == "running":
                st["status"] = "error"
                st["error"] = ("Crash: the process died, hung past the per-case limit or was killed "
                               "during this case (see the log)")
                print("CASE %s ERROR %s" % (name, st["error"]), flush=True)
                self.logline("=== %s: marked as crashed by a resumed run" % name)
        self.save()

    def init_cuda(self):
        meta = self.status.setdefault("meta", {})
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
        torch.use_deterministic_algorithms(True, warn_only=True)
        meta.update(torch=torch.__version__, cuda=torch.version.cuda, python=sys.version.split()[0])
        try:
            torch.zeros(1, device=DEV)
            torch.cuda.synchronize()
            meta["device"] = torch.cuda.get_device_name(0)
        except Exception as e:  # noqa: BLE001 - every case will report its own error too
            meta["init_error"] = "%s: %s" % (type(e).__name__, first_line(e))
            print("INIT ERROR %s" % meta["init_error"], flush=True)
            self.logline("=== init\n" + traceback.format_exc())
        libs = mapped_libcuda()
        meta["libcuda"] = libs
        print("SUITE torch=%s cuda=%s python=%s device=%s pid=%d" % (
            meta["torch"], meta["cuda"], meta["python"], meta.get("device", "?"), os.getpid()), flush=True)
        print("LIBCUDA %s" % (" ".join(libs) or "none"), flush=True)
        self.save()

    def run_case(self, name):
        st = {"status": "running"}
        self.status["cases"][name] = st
        self.save()
        self.logline("=== BEGIN %s (pid %d)" % (name, os.getpid()))
        # A hang is dumped to the log with every thread's stack, then the
        # process exits; a resumed run records the case as crashed.
        if self.case_timeout > 0:
            faulthandler.dump_traceback_later(self.case_timeout, exit=True, file=self.log)
        t0 = time.monotonic()
        try:
            fn = CASES.get(name)
            if fn is None:
                raise NotImplementedError("case %s has no function in torch_suite.py" % name)
            torch.manual_seed(zlib.crc32(name.encode()) & 0x7FFFFFFF)
            values = fn()
            torch.cuda.synchronize()  # errors of asynchronous work belong to this case
            resultio.write_case(self.outdir, name, to_blobs(values))
            st["status"] = "ok"
            line = "CASE %s OK" % name
        except Exception as e:  # noqa: BLE001 - one case must not stop the others
            st["status"] = "error"
            st["error"] = "%s: %s" % (type(e).__name__, first_line(e))
            self.logline("=== ERROR in %s\n%s" % (name, traceback.format_exc()))
            line = "CASE %s ERROR %s" % (name, st["error"])
        finally:
            faulthandler.cancel_dump_traceback_later()
            st["seconds"] = round(time.monotonic() - t0, 3)
            values = None
            try:
                _quiesce()
            except Exception as e:  # noqa: BLE001
                self.logline("=== cleanup after %s: %s: %s" % (name, type(e).__name__, first_line(e)))
            self.save()
        print(line, flush=True)
        self.logline("=== END %s: %s (%.2fs)" % (name, st["status"], st["seconds"]))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("outdir")
    ap.add_argument("--cases", default="", help="comma-separated subset (default: all, in table order)")
    ap.add_argument("--log", help="log file for tracebacks and warnings (default OUTDIR/suite.log)")
    ap.add_argument("--case-timeout", type=float, default=float(os.environ.get("WOOLY_TORCH_CASE_TIMEOUT", 120)),
                    help="seconds before a hung case is dumped and the process exits (0: never)")
    args = ap.parse_args(argv)

    names = [c.name for c in suite_table.CASES]
    if args.cases.strip():
        wanted = [c.strip() for c in args.cases.split(",") if c.strip()]
        unknown = [c for c in wanted if c not in suite_table.BY_NAME]
        if unknown:
            print("unknown case(s): %s; known: %s" % (", ".join(unknown), ", ".join(names)))
            return 2
        names = [n for n in names if n in wanted]
    missing = [n for n in names if n not in CASES]
    if missing:
        print("suite_table.py lists cases without a function: %s" % ", ".join(missing))

    os.makedirs(args.outdir, exist_ok=True)
    log = open(args.log or os.path.join(args.outdir, "suite.log"), "a", buffering=1)
    faulthandler.enable(file=log, all_threads=True)

    def to_log(message, category, filename, lineno, file=None, line=None):
        log.write(warnings.formatwarning(message, category, filename, lineno, line))
    warnings.showwarning = to_log

    runner = Runner(args.outdir, log, args.case_timeout)
    runner.status["order"] = names
    runner.resume()
    runner.init_cuda()
    for name in names:
        if runner.status["cases"].get(name, {}).get("status") in ("ok", "error"):
            continue
        runner.run_case(name)
    print("LIBCUDA-END %s" % (" ".join(mapped_libcuda()) or "none"), flush=True)
    print("DONE", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
