"""Measure kernel times on one Hopper GPU (an H100 or H200) for the GPU backend's calibration tables (run there).

What it times, each op inside a CUDA graph (as production decode runs), cycling through enough copies of its inputs
that weights and KV are read from HBM, not from the 50 MB L2; per-op time = graph replay time / ops in the graph
(so the gap between kernels in a graph is included, the CPU launch is not):
  copy      device-to-device copies (HBM efficiency of plain copies: the `memory` factor of the spec)
  floor     a one-element kernel (the smallest kernel time inside a graph) and the host time of a graph launch
  gemm      cuBLAS through torch.mm (BF16) and torch._scaled_mm (FP8 e4m3, BF16 out) at DeepSeek-V3 and
            Llama-3-70B linear-layer shapes, m tokens
  grouped   torch._grouped_mm (BF16) at DeepSeek-V3 expert shapes, `groups` experts of m tokens each
  memops    RMSNorm, SiLU-and-mul, residual add and per-token FP8 quantisation compiled by torch.compile (Triton),
            at DeepSeek-V3 and Llama widths
  attention torch SDPA (flash / cuDNN backends): GQA decode (Llama-3-70B heads) and causal prefill
  gemm_fp8_block  cuBLAS FP8 with DeepSeek-V3's block scales (1x128 activations, 128x128 weights), DeepSeek shapes
  grouped_fp8     torch._scaled_grouped_mm (FP8, row-wise scales) at DeepSeek-V3 expert shapes
  decode_extra    DeepSeek-V3 decode's absorbed MLA matmuls (torch.bmm over 128 heads) and its LM head, BF16

Usage (on the GPU machine): PYTHONUNBUFFERED=1 python3 models/calibration/scripts/h100_kernels.py OUT.json [sections]
Writes the JSON after every section, so a run cut short keeps what it measured.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
import traceback

import torch
import torch.nn.functional as F

DEV = "cuda"
L2_ROTATE_BYTES = 256 << 20      # inputs cycled per graph: five times the L2, so every op reads HBM
MAX_COPIES = 64
TARGET_GRAPH_S = 4e-3            # ops per graph: about this much GPU time
REPLAYS = 10

GEMM_SHAPES = {  # (n, k) of the linear layers, name
    (2112, 7168): "ds_qkv_a", (24576, 1536): "ds_q_b", (32768, 512): "ds_kv_b", (7168, 16384): "ds_o",
    (4096, 7168): "ds_expert_gate_up", (7168, 2048): "ds_expert_down", (18432 * 2, 7168): "ds_dense_gate_up",
    (10240, 8192): "llama70_qkv", (8192, 8192): "llama70_o", (57344, 8192): "llama70_gate_up",
    (8192, 28672): "llama70_down", (1280, 8192): "llama70_tp8_qkv", (7168, 8192): "llama70_tp8_gate_up",
    (8192, 3584): "llama70_tp8_down",
}
GEMM_M = (1, 16, 64, 128, 256, 512, 1024, 2048, 4096, 8192)


def copies_for(nbytes: int, cap: int = MAX_COPIES) -> int:
    """Input copies to cycle through so that one pass over them spills the L2 (at most `cap`)."""
    return max(1, min(cap, math.ceil(L2_ROTATE_BYTES / max(nbytes, 1))))


def _sync_time(fn, reps: int = REPLAYS) -> float:
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    times = []
    for _ in range(reps):
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) * 1e-3)
    times.sort()
    return times[len(times) // 2]


def graph_time(make_call, bytes_per_call: int, est_s: float) -> dict:
    """Median per-call seconds of `make_call(i)()` replayed in a CUDA graph, cycling through input copies."""
    copies = copies_for(bytes_per_call)
    calls = [make_call(i) for i in range(copies)]
    per_graph = max(copies, min(2000, math.ceil(TARGET_GRAPH_S / max(est_s, 1e-7))))
    per_graph = math.ceil(per_graph / copies) * copies
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for c in calls:          # warm-up: library handles, autotuning, lazy modules
            c()
    torch.cuda.current_stream().wait_stream(stream)
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for j in range(per_graph):
            calls[j % copies]()
    for _ in range(3):
        graph.replay()
    torch.cuda.synchronize()
    t = _sync_time(graph.replay)
    del graph
    return {"time_us": round(t / per_graph * 1e6, 3), "ops_per_graph": per_graph, "copies": copies}


def measure(rows: list, meta: dict, make_call, bytes_per_call: int, est_s: float, rate: tuple | None = None) -> None:
    """Append one row: meta plus the graph timing, or meta plus the error where the library refuses the case."""
    try:
        r = graph_time(make_call, bytes_per_call, est_s)
    except Exception as e:  # recorded, not fatal: one refused shape must not lose the section
        rows.append({**meta, "error": repr(e)[:300]})
        torch.cuda.synchronize()
        return
    if rate is not None:   # (name, amount per call, scale): e.g. ("tflops", flops, 1e12)
        r[rate[0]] = round(rate[1] / (r["time_us"] * 1e-6) / rate[2], 1)
    rows.append({**meta, **r})


def env() -> dict:
    p = torch.cuda.get_device_properties(0)
    smi = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,clocks.sm,clocks.max.sm,clocks.mem,"
                          "power.limit,temperature.gpu", "--format=csv,noheader"], capture_output=True, text=True)
    return {"torch": torch.__version__, "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version(),
            "gpu": p.name, "sms": p.multi_processor_count, "memory_bytes": p.total_memory,
            "l2_bytes": getattr(p, "L2_cache_size", None), "nvidia_smi": smi.stdout.strip(),
            "date": time.strftime("%Y-%m-%d")}


def copy_rows() -> list[dict]:
    rows = []
    for mib in (1, 4, 16, 64, 256, 1024):
        n = mib << 20
        srcs = [torch.randn(n // 2, device=DEV, dtype=torch.bfloat16) for _ in range(2 if mib >= 256 else
                                                                                       max(1, 256 // mib))]
        dsts = [torch.empty_like(s) for s in srcs]
        r = graph_time(lambda i: (lambda: dsts[i % len(dsts)].copy_(srcs[i % len(srcs)])), 2 * n, 2 * n / 3e12)
        rows.append({"bytes": n, **r, "gbps_rw": round(2 * n / (r["time_us"] * 1e-6) / 1e9, 1)})
        del srcs, dsts
    return rows


def floor_rows() -> dict:
    x = torch.zeros(1, device=DEV)
    small = graph_time(lambda i: (lambda: x.add_(1.0)), 0, 2e-6)
    out = {"one_element_kernel_in_graph_us": small["time_us"]}
    for nodes in (100, 1000, 3000):  # host-side cost of launching a graph of this many kernels
        g = torch.cuda.CUDAGraph()
        s = torch.cuda.Stream()
        with torch.cuda.stream(s):
            x.add_(1.0)
        torch.cuda.synchronize()
        with torch.cuda.graph(g):
            for _ in range(nodes):
                x.add_(1.0)
        g.replay()
        torch.cuda.synchronize()
        host = []
        for _ in range(20):
            t0 = time.perf_counter()
            g.replay()
            host.append(time.perf_counter() - t0)
            torch.cuda.synchronize()
        host.sort()
        dev = _sync_time(g.replay)
        out[f"graph_{nodes}_nodes"] = {"host_launch_us": round(host[len(host) // 2] * 1e6, 2),
                                       "device_us": round(dev * 1e6, 2)}
    return out


def _fp8(t: torch.Tensor) -> torch.Tensor:
    return t.clamp(-400, 400).to(torch.float8_e4m3fn)


def gemm_rows(dtype: str) -> list[dict]:
    rows = []
    peak = 989e12 if dtype == "bf16" else 1979e12
    for (n, k), name in GEMM_SHAPES.items():
        ws = None
        for m in GEMM_M:
            flops = 2 * m * n * k
            inb = 2 if dtype == "bf16" else 1
            wbytes = n * k * inb
            nbytes = wbytes + m * k * inb + m * n * 2
            copies = copies_for(nbytes)
            if ws is None or len(ws) < copies:
                ws = [(torch.randn(n, k, device=DEV, dtype=torch.bfloat16) * 0.05) for _ in range(copies)]
                if dtype == "fp8":
                    ws = [_fp8(w * 20) for w in ws]
            xs = [torch.randn(m, k, device=DEV, dtype=torch.bfloat16) for _ in range(copies)]
            if dtype == "bf16":
                def make(i):
                    a, b = xs[i % len(xs)], ws[i % len(ws)]
                    return lambda: torch.mm(a, b.t())
            else:
                xs = [_fp8(x) for x in xs]
                sa = torch.ones(m, 1, device=DEV, dtype=torch.float32)
                sb = torch.ones(1, n, device=DEV, dtype=torch.float32)

                def make(i):
                    a, b = xs[i % len(xs)], ws[i % len(ws)]
                    return lambda: torch._scaled_mm(a, b.t(), scale_a=sa, scale_b=sb, out_dtype=torch.bfloat16,
                                                    use_fast_accum=True)
            est = max(flops / (0.7 * peak), nbytes / 3e12) + 3e-6
            measure(rows, {"name": name, "m": m, "n": n, "k": k, "bytes": nbytes}, make, nbytes, est,
                    ("tflops", flops, 1e12))
            del xs
        del ws
        torch.cuda.empty_cache()
        print(f"  gemm {dtype} {name} done", flush=True)
    return rows


def grouped_rows() -> list[dict]:
    rows = []
    for (n, k), name in (((4096, 7168), "ds_expert_gate_up"), ((7168, 2048), "ds_expert_down")):
        for groups in (2, 4, 8, 16, 32):
            wbytes = groups * n * k * 2
            copies = copies_for(wbytes, 8)
            ws = [torch.randn(groups, n, k, device=DEV, dtype=torch.bfloat16) * 0.05 for _ in range(copies)]
            for m in (16, 32, 64, 128, 256, 512, 1024, 2048, 4096):
                if groups * m > 65536:
                    continue
                offs = torch.arange(1, groups + 1, device=DEV, dtype=torch.int32) * m
                xs = [torch.randn(groups * m, k, device=DEV, dtype=torch.bfloat16) for _ in range(copies)]

                def make(i):
                    a, b = xs[i % len(xs)], ws[i % len(ws)]
                    return lambda: torch._grouped_mm(a, b.transpose(-2, -1), offs=offs, out_dtype=torch.bfloat16)
                flops = 2 * groups * m * n * k
                nbytes = wbytes + groups * m * (k + n) * 2
                est = max(flops / (0.6 * 989e12), nbytes / 3e12) + 5e-6
                measure(rows, {"name": name, "groups": groups, "m": m, "n": n, "k": k, "bytes": nbytes}, make,
                        nbytes, est, ("tflops", flops, 1e12))
                del xs
            del ws
            torch.cuda.empty_cache()
        print(f"  grouped {name} done", flush=True)
    return rows


def _fp8_scaled(x: torch.Tensor, block: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """FP8 e4m3 values and float32 scales, one scale per (block[0] x block[1]) tile (DeepSeek-V3's recipe: 1 x 128
    for activations, 128 x 128 for weights)."""
    r, c = x.shape
    tiles = x.float().view(r // block[0], block[0], c // block[1], block[1])
    s = tiles.abs().amax(dim=(1, 3), keepdim=True).clamp(min=1e-6) / 448.0
    return (tiles / s).to(torch.float8_e4m3fn).view(r, c), s.view(r // block[0], c // block[1])


def _blockwise_mm():
    """(mm, fa, fw): mm(a, fa(sa), w, fw(sw)) -> bf16 for block-scaled FP8 (a: m x k, 1x128 scales; w: n x k,
    128x128 scales), or an error where this PyTorch has none. The scale layouts cuBLAS wants are tried in turn,
    each checked against BF16: a layout that runs but computes something else is refused."""
    from torch.nn.functional import ScalingType, SwizzleType, scaled_mm  # PyTorch 2.10+
    layouts = {"a outer-major, w as is": (lambda sa: sa.t().contiguous().t(), lambda sw: sw),
               "a outer-major, w transposed": (lambda sa: sa.t().contiguous().t(), lambda sw: sw.t()),
               "a outer-major, w transposed contiguous": (lambda sa: sa.t().contiguous().t(),
                                                          lambda sw: sw.t().contiguous()),
               "both as is": (lambda sa: sa, lambda sw: sw)}
    # blocks of very different magnitudes, so that a scale applied to the wrong block shows
    x = torch.randn(256, 1024, device=DEV) * torch.logspace(-2, 2, 8, device=DEV)[torch.randperm(8, device=DEV)
                                                                                  ].repeat_interleave(128)
    w = torch.randn(512, 1024, device=DEV) * torch.logspace(-3, 1, 4, device=DEV).repeat_interleave(128)[:, None]
    a, sa = _fp8_scaled(x, (1, 128))
    b, sb = _fp8_scaled(w, (128, 128))
    ref = x @ w.t()
    tried = []

    def mm(a, sa, w, sw):  # scales already in the layout found below
        return scaled_mm(a, w.t(), sa, ScalingType.BlockWise1x128, sw, ScalingType.BlockWise128x128,
                         swizzle_a=SwizzleType.NO_SWIZZLE, swizzle_b=SwizzleType.NO_SWIZZLE,
                         output_dtype=torch.bfloat16)
    for label, (fa, fw) in layouts.items():
        try:
            out = mm(a, fa(sa), b, fw(sb))
            torch.cuda.synchronize()
        except Exception as e:
            tried.append(f"{label}: {e!r}"[:200])
            continue
        err = float((out.float() - ref).norm() / ref.norm())
        if err < 0.05:
            print(f"  block-scaled FP8: {label}, relative error {err:.4f}; refused before it: {tried}", flush=True)
            return mm, fa, fw
        tried.append(f"{label}: relative error {err:.3f}")
    raise RuntimeError("no block-scaled FP8 layout worked: " + " | ".join(tried))


def gemm_fp8_block_rows() -> list[dict]:
    """DeepSeek-V3's FP8 recipe through cuBLAS (block scales), at the DeepSeek shapes: the nearest thing to DeepGEMM."""
    mm, fa, fw = _blockwise_mm()
    rows = []
    for (n, k), name in GEMM_SHAPES.items():
        if not name.startswith("ds_") or n % 128:   # whole 128 x 128 weight blocks only (N 2,112 is not)
            continue
        wbytes = n * k
        copies = copies_for(wbytes)
        ws = [_fp8_scaled(torch.randn(n, k, device=DEV, dtype=torch.bfloat16) * 0.05, (128, 128))
              for _ in range(copies)]
        ws = [(b, fw(sb)) for b, sb in ws]
        for m in GEMM_M:
            if m < 16:
                continue
            xs = [_fp8_scaled(torch.randn(m, k, device=DEV, dtype=torch.bfloat16), (1, 128)) for _ in range(copies)]
            xs = [(a, fa(sa)) for a, sa in xs]

            def make(i):
                (a, sa), (b, sb) = xs[i % len(xs)], ws[i % len(ws)]
                return lambda: mm(a, sa, b, sb)
            flops, nbytes = 2 * m * n * k, wbytes + m * k + m * n * 2
            measure(rows, {"name": name, "m": m, "n": n, "k": k, "bytes": nbytes}, make, nbytes,
                    max(flops / (0.7 * 1979e12), nbytes / 3e12) + 3e-6, ("tflops", flops, 1e12))
            del xs
        del ws
        torch.cuda.empty_cache()
    return rows


def grouped_fp8_rows() -> list[dict]:
    """torch._scaled_grouped_mm (FP8, row-wise scales) at DeepSeek-V3's expert shapes: a decode rank's few experts."""
    rows = []
    for (n, k), name in (((4096, 7168), "ds_expert_gate_up"), ((7168, 2048), "ds_expert_down")):
        for groups in (2, 4, 8, 32):
            wbytes = groups * n * k
            copies = copies_for(wbytes, 8)
            ws = [_fp8(torch.randn(groups, n, k, device=DEV, dtype=torch.bfloat16)) for _ in range(copies)]
            sb = torch.ones(groups, n, device=DEV, dtype=torch.float32)
            for m in (16, 32, 64, 128, 256, 512, 1024, 2048):
                offs = torch.arange(1, groups + 1, device=DEV, dtype=torch.int32) * m
                xs = [_fp8(torch.randn(groups * m, k, device=DEV, dtype=torch.bfloat16)) for _ in range(copies)]
                sa = torch.ones(groups * m, device=DEV, dtype=torch.float32)

                def make(i):
                    a, b = xs[i % len(xs)], ws[i % len(ws)]
                    return lambda: torch._scaled_grouped_mm(a, b.transpose(-2, -1), sa, sb, offs=offs,
                                                            out_dtype=torch.bfloat16, use_fast_accum=True)
                flops = 2 * groups * m * n * k
                nbytes = wbytes + groups * m * (k + 2 * n)
                measure(rows, {"name": name, "groups": groups, "m": m, "n": n, "k": k, "bytes": nbytes}, make,
                        nbytes, max(flops / (0.6 * 1979e12), nbytes / 3e12) + 5e-6, ("tflops", flops, 1e12))
                del xs
            del ws
            torch.cuda.empty_cache()
    return rows


def decode_extra_rows() -> list[dict]:
    """DeepSeek-V3 decode's other BF16 matmuls: the absorbed MLA products (per head: q_nope x W_UK, 128 x 512, and
    the latent output x W_UV, 512 x 128; torch.bmm over 128 heads) and the LM head (vocabulary 129,280 x 7,168)."""
    rows = []
    heads = 128
    for name, n, k in (("ds_q_absorb", 512, 128), ("ds_v_absorb", 128, 512)):
        wbytes = heads * n * k * 2
        copies = copies_for(wbytes)
        ws = [torch.randn(heads, k, n, device=DEV, dtype=torch.bfloat16) * 0.05 for _ in range(copies)]
        for m in (8, 16, 32, 64, 128, 256, 512):
            xs = [torch.randn(heads, m, k, device=DEV, dtype=torch.bfloat16) for _ in range(copies)]

            def make(i):
                a, b = xs[i % len(xs)], ws[i % len(ws)]
                return lambda: torch.bmm(a, b)
            flops, nbytes = 2 * heads * m * n * k, wbytes + heads * m * (n + k) * 2
            measure(rows, {"name": name, "groups": heads, "m": m, "n": n, "k": k, "bytes": nbytes}, make, nbytes,
                    max(flops / (0.6 * 989e12), nbytes / 3e12) + 3e-6, ("tflops", flops, 1e12))
            del xs
        del ws
    w = torch.randn(129280, 7168, device=DEV, dtype=torch.bfloat16) * 0.05
    for m in (16, 32, 64, 128, 256, 1024):
        x = torch.randn(m, 7168, device=DEV, dtype=torch.bfloat16)
        flops, nbytes = 2 * m * 129280 * 7168, 129280 * 7168 * 2 + m * (7168 + 129280) * 2
        measure(rows, {"name": "ds_lm_head", "groups": 1, "m": m, "n": 129280, "k": 7168, "bytes": nbytes},
                lambda i: (lambda: torch.mm(x, w.t())), nbytes, max(flops / (0.7 * 989e12), nbytes / 3e12),
                ("tflops", flops, 1e12))
    return rows


def _rms(x, w):
    v = x.float()
    return (v * torch.rsqrt(v.pow(2).mean(-1, keepdim=True) + 1e-6) * w.float()).to(x.dtype)


def _silu_mul(x):
    g, u = x.chunk(2, dim=-1)
    return F.silu(g.float()).to(x.dtype) * u


def _add(x, y):
    return x + y


def _quant(x):  # per-token, 1 x 128 groups (DeepSeek-V3's activation quantisation)
    g = x.float().view(x.shape[0], -1, 128)
    s = g.abs().amax(-1, keepdim=True).clamp(min=1e-4) / 448.0
    return (g / s).to(torch.float8_e4m3fn).view(x.shape), s.squeeze(-1)


def memop_rows() -> list[dict]:
    rms, silu, add, quant = (torch.compile(f, dynamic=True) for f in (_rms, _silu_mul, _add, _quant))
    rows = []
    ops = [  # (op, width, fn builder, bytes per token)
        ("norm", 7168, lambda x, w: (lambda: rms(x, w)), 7168 * 4),
        ("norm", 1536, lambda x, w: (lambda: rms(x, w)), 1536 * 4),
        ("norm", 8192, lambda x, w: (lambda: rms(x, w)), 8192 * 4),
        ("act", 2 * 2048, lambda x, w: (lambda: silu(x)), 2048 * 6),
        ("act", 2 * 18432, lambda x, w: (lambda: silu(x)), 18432 * 6),
        ("act", 2 * 28672, lambda x, w: (lambda: silu(x)), 28672 * 6),
        ("add", 7168, lambda x, w: (lambda: add(x, x)), 7168 * 6),
        ("quant", 7168, lambda x, w: (lambda: quant(x)), 7168 * 3),
        ("quant", 2048, lambda x, w: (lambda: quant(x)), 2048 * 3),
    ]
    for op, width, build, per_token in ops:
        for tokens in (1, 16, 64, 256, 1024, 4096, 16384):
            nbytes = tokens * per_token
            copies = copies_for(nbytes)
            xs = [torch.randn(tokens, width, device=DEV, dtype=torch.bfloat16) for _ in range(copies)]
            w = torch.randn(width, device=DEV, dtype=torch.bfloat16)
            measure(rows, {"op": op, "width": width, "tokens": tokens, "bytes": nbytes},
                    lambda i: build(xs[i % len(xs)], w), nbytes, nbytes / 2.5e12 + 2e-6, ("gbps", nbytes, 1e9))
            del xs
        print(f"  memop {op} {width} done", flush=True)
    return rows


def attention_rows() -> list[dict]:
    from torch.nn.attention import SDPBackend, sdpa_kernel
    rows = []
    backends = {"flash": SDPBackend.FLASH_ATTENTION, "cudnn": SDPBackend.CUDNN_ATTENTION}
    # GQA decode, Llama-3-70B on one GPU: 64 query heads, 8 KV heads, head dim 128; one query token
    for bname, backend in backends.items():
        for batch in (1, 8, 32, 64, 128):
            for kv in (1024, 4096, 16384):
                if batch * kv > 128 * 4096 * 2:
                    continue
                kvbytes = 2 * batch * kv * 8 * 128 * 2
                copies = copies_for(kvbytes, 16)
                q = torch.randn(batch, 64, 1, 128, device=DEV, dtype=torch.bfloat16)
                ks = [torch.randn(batch, 8, kv, 128, device=DEV, dtype=torch.bfloat16) for _ in range(copies)]
                vs = [torch.randn(batch, 8, kv, 128, device=DEV, dtype=torch.bfloat16) for _ in range(copies)]

                def make(i):
                    k, v = ks[i % copies], vs[i % copies]

                    def call():
                        with sdpa_kernel(backend):
                            return F.scaled_dot_product_attention(q, k, v, enable_gqa=True)
                    return call
                measure(rows, {"kind": "gqa_decode", "backend": bname, "batch": batch, "kv_len": kv, "q_heads": 64,
                               "kv_heads": 8, "head_dim": 128, "kv_bytes": kvbytes}, make, kvbytes,
                        kvbytes / 2.5e12 + 5e-6, ("gbps", kvbytes, 1e9))
                del ks, vs
        print(f"  attention decode {bname} done", flush=True)
    # causal prefill: Llama (64 heads, d 128, MHA layout) and DeepSeek MLA un-absorbed (128 heads, qk 192, v 128)
    for bname, backend in backends.items():
        for heads, dqk, dv in ((64, 128, 128), (128, 192, 128)):
            for seq in (1024, 4096, 8192, 16384):
                q = torch.randn(1, heads, seq, dqk, device=DEV, dtype=torch.bfloat16)
                k = torch.randn(1, heads, seq, dqk, device=DEV, dtype=torch.bfloat16)
                v = torch.randn(1, heads, seq, dv, device=DEV, dtype=torch.bfloat16)
                flops = 2 * heads * seq * seq * (dqk + dv) / 2    # causal: half the square

                def make(i):
                    def call():
                        with sdpa_kernel(backend):
                            return F.scaled_dot_product_attention(q, k, v, is_causal=True)
                    return call
                measure(rows, {"kind": "prefill_causal", "backend": bname, "seq": seq, "heads": heads, "qk_dim": dqk,
                               "v_dim": dv}, make, 1 << 40, flops / 4e14, ("tflops", flops, 1e12))
        print(f"  attention prefill {bname} done", flush=True)
    return rows


SECTIONS = {"env": env, "copy": copy_rows, "floor": floor_rows, "gemm_bf16": lambda: gemm_rows("bf16"),
            "gemm_fp8": lambda: gemm_rows("fp8"), "grouped": grouped_rows, "memops": memop_rows,
            "attention": attention_rows, "gemm_fp8_block": gemm_fp8_block_rows, "grouped_fp8": grouped_fp8_rows,
            "decode_extra": decode_extra_rows}


def main() -> None:
    out_path = sys.argv[1]
    wanted = sys.argv[2:] or list(SECTIONS)
    torch.manual_seed(0)
    result: dict = {}
    for name in wanted:
        t0 = time.time()
        try:
            result[name] = SECTIONS[name]()
        except Exception:
            result[name] = {"error": traceback.format_exc()[-2000:]}
        print(f"{name}: {time.time() - t0:.1f} s", flush=True)
        with open(out_path, "w") as f:
            json.dump(result, f, indent=1)
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
