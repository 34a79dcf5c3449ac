"""The PyTorch suite's case table: every case, in run order, with the
tolerance that compare.py applies between the native run and the Wooly run.

Pure Python (no torch), so that compare.py and the CI checks can import it.

Tolerances apply to floating-point values (tensors and Python floats):
  BITWISE          the bytes must be identical. Used wherever the operation
                   is deterministic on one GPU: same kernels, same inputs,
                   same launch order give the same bits. Wooly runs the same
                   kernels on the same GPU, so anything else is a bug (or a
                   different kernel choice, e.g. because a device attribute
                   or the free memory reported through Wooly differs).
  close(rtol, atol) |wooly - native| <= atol + rtol * |native| elementwise
                   (as torch.allclose), NaN where NaN, equal infinities.
                   Only for operations that are not bit-reproducible even
                   natively (atomics in backward passes, autotuning).
Integers, bools, strings and None are always compared exactly.
`keys` overrides the case's tolerance for result keys starting with a prefix.
`expect_error`: the case raises on purpose; identical errors (same exception
type and message head) in both runs pass.
"""
from typing import NamedTuple

BITWISE = ("bitwise",)


def close(rtol, atol=0.0):
    return ("close", float(rtol), float(atol))


class Case(NamedTuple):
    name: str
    tol: tuple = BITWISE
    keys: dict = {}
    expect_error: bool = False
    what: str = ""


# SDPA backward passes may accumulate with atomics (order not reproducible).
_SDPA_GRADS = {"dq": close(2e-2, 2e-3), "dk": close(2e-2, 2e-3), "dv": close(2e-2, 2e-3)}

CASES = [
    Case("device_properties", what="name, total memory, capability, SM count, UUID, device_count"),
    Case("tensor_creation", what="zeros/ones/full/arange/linspace/eye/tensor(list)/rand*/randperm/dtype casts"),
    Case("elementwise_ops", what="arithmetic, transcendental, comparisons, where, clamp, in-place, broadcasting"),
    Case("reductions_indexing", what="sum/mean/max/argmax/cumsum/sort/topk/unique, gather, masked_select, nonzero, cat"),
    Case("matmul_fp32", what="cuBLAS sgemm (float32 matmul precision 'highest'), bmm, transposed operands"),
    Case("matmul_tf32", what="cuBLAS with TF32 (float32 matmul precision 'high')"),
    Case("matmul_fp16", what="cuBLAS hgemm, bmm"),
    Case("matmul_bf16", what="cuBLAS bf16 gemm, bmm"),
    Case("cublaslt_epilogues", what="addmm fp16 with bias, _addmm_activation (GELU epilogue), F.linear bf16/fp32"),
    Case("cublaslt_preferred", what="matmuls with torch.backends.cuda.preferred_blas_library('cublaslt')"),
    Case("scaled_mm_fp8", what="torch._scaled_mm float8_e4m3fn (Hopper cuBLASLt); 'unavailable' must match"),
    Case("conv2d_cudnn", what="Conv2d fwd+bwd through cuDNN, fp32 NCHW and fp16 channels_last"),
    Case("autocast_bf16", what="autocast bf16 forward + backward of a conv/linear net"),
    Case("autocast_fp16_gradscaler", what="autocast fp16 + GradScaler, 3 optimizer steps"),
    Case("sdpa_math", what="scaled_dot_product_attention, MATH backend, fwd + bwd"),
    Case("sdpa_flash", keys=_SDPA_GRADS, what="SDPA FLASH_ATTENTION backend; grads within tolerance"),
    Case("sdpa_efficient", keys=_SDPA_GRADS, what="SDPA EFFICIENT_ATTENTION backend; grads within tolerance"),
    Case("sdpa_cudnn", keys=_SDPA_GRADS, what="SDPA CUDNN_ATTENTION backend; grads within tolerance"),
    Case("train_cnn_adamw", what="50 AdamW steps of a small CNN (conv, batchnorm, maxpool): loss curve"),
    Case("train_transformer_adamw",
         what="50 fused-AdamW steps of a 2-layer nn.TransformerEncoder LM (MATH SDPA): loss curve"),
    Case("hf_gpt2_tiny_train", tol=close(1e-4, 1e-6),
         what="a tiny transformers GPT-2 built from a config (no download), 10 AdamW steps"),
    Case("cuda_graph_capture_replay", what="torch.cuda.CUDAGraph capture, 5 replays with new inputs"),
    Case("make_graphed_callables", what="torch.cuda.make_graphed_callables MLP, 10 SGD steps"),
    Case("torch_compile", tol=close(1e-4, 1e-5),
         what="torch.compile (Inductor -> Triton), function + module fwd/bwd; autotuning may reorder sums"),
    Case("triton_kernel", what="hand-written @triton.jit vector add and row softmax"),
    Case("cuda_event_timing", what="Event(enable_timing=True): elapsed_time > 0 (value not compared), query"),
    Case("two_streams_wait", what="two streams (one high priority) ordered by wait_stream and an event"),
    Case("pinned_nonblocking_copy", what="pin_memory(), non_blocking H2D/D2H copies, synchronize"),
    Case("dataloader_pin_memory_workers",
         what="DataLoader(num_workers=2, pin_memory=True), workers forked after CUDA init"),
    Case("memory_stats", what="memory_allocated deltas for known allocations, max_memory_allocated, mem_get_info relations"),
    Case("memory_fraction", what="set_per_process_memory_fraction: allocation above the fraction raises OutOfMemoryError"),
    Case("out_of_memory", what="torch.empty(10**13) raises torch.cuda.OutOfMemoryError; the process keeps working"),
    Case("oom_uncaught", expect_error=True,
         what="an OutOfMemoryError left to propagate out of the case (expected error, same in both runs)"),
]

BY_NAME = {c.name: c for c in CASES}
assert len(BY_NAME) == len(CASES), "duplicate case names"


def tolerance_for(case_name, key):
    """The tolerance for one result key (longest matching prefix wins)."""
    spec = BY_NAME.get(case_name)
    if spec is None:
        return BITWISE
    best, best_len = spec.tol, -1
    for prefix, tol in spec.keys.items():
        if key.startswith(prefix) and len(prefix) > best_len:
            best, best_len = tol, len(prefix)
    return best


def describe(tol):
    if tol[0] == "bitwise":
        return "bitwise"
    return "rtol=%g atol=%g" % (tol[1], tol[2])
