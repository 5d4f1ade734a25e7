"""Compute and memory op costs: pure functions of (op shape, hardware). Inputs may be numpy arrays (vectorised).

gemm_time_s(m, n, k, precision, hw, groups=1, compute_share=1.0) -> seconds
    m: rows (tokens) per group, n: output columns, k: inner dim. Model fitted per chip from its GEMM table
    (models/calibration/gemm.toml): overhead + hypot(flops / (peak * eta_c), bytes / (hbm_bw * eta_m)); shapes the
    table measured at three or more sizes have their own fit (calibration.gemm_shape_fits), and a GEMM is never
    faster than one of them that is no larger nor slower than one that is no smaller.
attention_time_s(flops, bytes_moved, hw, precision="bf16", compute_share=1.0) -> seconds
    roofline with the chip's measured MLA utilisation in each regime.
mla_decode_work / mla_prefill_work / gqa_work -> (flops, bytes_moved) of the attention core.
memory_time_s(bytes_moved, hw, kind="elementwise") -> seconds for norms and element-wise ops (HBM-bound): the
    chip's measured kernel curve for that kind (floor + bytes / min(bw * eta, rows * per-row bandwidth),
    calibration/memory_ops.toml) where its spec names one, else bytes at the chip's flat memory efficiency.
"""

from __future__ import annotations

import functools

import numpy as np

from harness.cost.calibration import GemmFit, gemm_fit, gemm_model_s, gemm_shape_fits, memory_fit
from harness.hardware import Hardware
from harness.llm import BYTES, LLM


def gemm_time_s(m, n, k, precision: str | None, hw: Hardware, groups: int = 1,
                compute_share: float = 1.0, out_bytes: int = 2):
    """One (grouped) GEMM of `groups` x [m x k] @ [k x n]; m may be an array. m = 0 costs nothing.
    precision None: the chip's default inference precision.

    Measured shapes bound it: never faster than a measured shape no larger than this one (in N and K), never
    slower than one no smaller; between those bounds the fit over all rows of the chip's table. A measured shape
    thus costs its own fit (tile and wave quantisation differ by N and K), and more work is never faster."""
    precision = precision or hw.default_precision
    table_id = hw.gemm_table(precision)
    m = np.asarray(m, dtype=float)
    peak, bw, b = hw.peak(precision) * compute_share, hw.hbm_bytes_per_s, BYTES[precision]
    t = _fit_time_s(gemm_fit(table_id), m, n, k, groups, peak, bw, b, out_bytes)
    ceilings, floors = _shape_bounds(table_id, float(n), float(k))
    if ceilings is not None:
        t = np.minimum(t, _shapes_time_s(ceilings, m, groups, peak, bw, b, out_bytes).min(axis=-1))
    if floors is not None:
        t = np.maximum(t, _shapes_time_s(floors, m, groups, peak, bw, b, out_bytes).max(axis=-1))
    return np.where(m > 0, t, 0.0)


def _fit_time_s(fit: GemmFit, m, n, k, groups, peak: float, bw: float, in_bytes: int, out_bytes: int):
    flops = 2.0 * m * n * k * groups
    nbytes = groups * ((m * k + k * n) * in_bytes + m * n * out_bytes)
    return gemm_model_s(flops, nbytes, fit.overhead_s, fit.eta_compute, fit.eta_memory, peak, bw)


@functools.lru_cache(maxsize=4096)
def _shape_bounds(table_id: str, n: float, k: float) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Rows (n0, k0, overhead, eta_c, eta_m) of the measured shapes no smaller than (n, k), and of those no larger."""
    fits = gemm_shape_fits(table_id)
    rows = np.array([(n0, k0, f.overhead_s, f.eta_compute, f.eta_memory) for (n0, k0), f in fits.items()], float)
    if not len(rows):
        return None, None
    ge = rows[(rows[:, 0] >= n) & (rows[:, 1] >= k)]
    le = rows[(rows[:, 0] <= n) & (rows[:, 1] <= k)]
    return (ge if len(ge) else None), (le if len(le) else None)


def _shapes_time_s(shapes: np.ndarray, m, groups, peak: float, bw: float, in_bytes: int, out_bytes: int):
    """Each measured shape's fit at its own (n0, k0), for every m: shape on the last axis."""
    m = np.asarray(m, float)[..., None]
    n, k, o, eta_c, eta_m = shapes.T
    flops = 2.0 * m * n * k * groups
    nbytes = groups * ((m * k + k * n) * in_bytes + m * n * out_bytes)
    return gemm_model_s(flops, nbytes, o, eta_c, eta_m, peak, bw)


def gemm_work(m, n: int, k: int, precision: str, groups: int = 1, out_bytes: int = 2):
    m = np.asarray(m, dtype=float)
    return 2.0 * m * n * k * groups, groups * ((m * k + k * n) * BYTES[precision] + m * n * out_bytes)


def attention_time_s(flops, bytes_moved, hw: Hardware, precision: str = "bf16", compute_share: float = 1.0):
    """Attention core: the kernel's fixed time plus compute- or memory-bound time at the chip's measured
    attention-kernel utilisation. No work costs nothing."""
    f, b = np.asarray(flops, float), np.asarray(bytes_moved, float)
    busy = np.maximum(f / (hw.peak(precision) * compute_share * hw.attention_compute_eff),
                      b / (hw.hbm_bytes_per_s * hw.attention_memory_eff))
    return np.where((f > 0) | (b > 0), hw.attention_overhead_s + busy, 0.0)


# Which measured kernel an element-wise op moves its bytes like: a per-token reduction then a write (norms,
# activation quantisation) like RMSNorm, in-place rotation like RoPE, plain streaming element-wise like SwiGLU.
MEMORY_KINDS = {"norm": "norm", "quant": "norm", "rope": "rope", "elementwise": "act", "act": "act"}


def memory_time_s(bytes_moved, hw: Hardware, kind: str = "elementwise", rows=np.inf):
    """`kind`: norm, quant, rope, elementwise / act, or copy (copies keep the flat efficiency, the HBM share a large
    copy reached, plus the hardware's measured smallest-kernel time: no kernel table measures them). `rows`: the
    tokens (or token-expert pairs) the kernel works on in parallel; unknown: no cap. Zero bytes cost nothing."""
    b = np.asarray(bytes_moved, float)
    measured = MEMORY_KINDS.get(kind)
    if hw.memory_ops_table is None or measured is None:  # a kernel's fixed device time, then the copy rate
        return np.where(b > 0, hw.kernel_floor_s + b / (hw.hbm_bytes_per_s * hw.memory_eff), 0.0)
    fit = memory_fit(hw.memory_ops_table, measured)
    return np.where(b > 0, fit.time_s(b, np.maximum(rows, 1.0), hw.hbm_bytes_per_s), 0.0)


def mla_decode_work(llm: LLM, requests, q_per_request: float, kv_len, kv_precision: str):
    """Absorbed MLA (MQA-like: every head reads the one latent KV): per layer, `requests` each with
    `q_per_request` query tokens attending to `kv_len` cached tokens."""
    req, kv = np.asarray(requests, float), np.asarray(kv_len, float)
    d_qk = llm.kv_lora_rank + llm.qk_rope_dim
    flops = 2.0 * req * q_per_request * llm.heads * (d_qk + llm.kv_lora_rank) * kv
    nbytes = req * kv * d_qk * BYTES[kv_precision]
    return flops, nbytes


def causal_pairs(new_tokens, cached_tokens):
    """(query, key) pairs of one prompt piece: causal over its new tokens, full over its cached prefix."""
    new, cached = np.asarray(new_tokens, float), np.asarray(cached_tokens, float)
    return new * cached + new * (new + 1) / 2


def mla_prefill_work(llm: LLM, new_tokens, cached_tokens, kv_precision: str = "bf16"):
    """Un-absorbed MLA (MHA-like, 128 heads of 192/128 dims) over one prompt piece."""
    return prefill_attention_work(llm, new_tokens, cached_tokens, causal_pairs(new_tokens, cached_tokens),
                                  kv_precision)


def prefill_attention_work(llm: LLM, new_tokens, cached_tokens, pairs, kv_precision: str = "bf16"):
    """Attention-core (flops, bytes) of prefill from token totals and (query, key) pair totals: flops follow
    the pairs, bytes the tokens, so sums over many pieces give the work of all of them."""
    new, cached, pairs = (np.asarray(x, float) for x in (new_tokens, cached_tokens, pairs))
    if llm.attention == "mla":
        flops = 2.0 * llm.heads * (llm.qk_nope_dim + llm.qk_rope_dim + llm.v_head_dim) * pairs
        d_qk = llm.kv_lora_rank + llm.qk_rope_dim
        nbytes = (new + cached) * d_qk * BYTES[kv_precision] + new * llm.heads * (
            llm.qk_nope_dim + llm.qk_rope_dim + llm.v_head_dim) * 2 * 2
        return flops, nbytes
    flops = 4.0 * llm.heads * llm.head_dim * pairs
    return flops, (cached + new) * 2 * llm.kv_heads * llm.head_dim * BYTES[kv_precision]


def gqa_work(llm: LLM, new_tokens, context, kv_precision: str = "bf16", decode: bool = False):
    """GQA attention: decode (`new_tokens` requests, one query each, over `context` cached tokens) or prefill
    (one causal piece of `new_tokens` after `context` cached tokens)."""
    new, ctx = np.asarray(new_tokens, float), np.asarray(context, float)
    if not decode:
        return prefill_attention_work(llm, new, ctx, causal_pairs(new, ctx), kv_precision)
    flops = 4.0 * llm.heads * llm.head_dim * new * ctx
    return flops, new * ctx * 2 * llm.kv_heads * llm.head_dim * BYTES[kv_precision]
