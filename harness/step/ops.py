"""The op chain of one microbatch through one layer of a deployment: what runs, on which role, for how long.

Everything here is vectorised: token counts and KV lengths may be numpy arrays (many batch compositions at once).
Roles map to streams in `streams.py`; `schedule.py` turns chains into a timed graph."""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from harness.cost.calibration import distinct_ranks
from harness.cost.comm import bulk_all_to_all_time_s, collective_time_s, dispatch_bytes, dispatch_time_s
from harness.cost.compute import (attention_time_s, gemm_time_s, gemm_work, gqa_work, memory_time_s,
                                  mla_decode_work)
from harness.hardware import Hardware
from harness.llm import BYTES
from harness.step.deployment import Deployment
from harness.step.streams import stream_of

HEAD_PRECISION = "bf16"  # LM head, gate and the absorbed MLA matmuls stay in BF16 (paper Sec. 4.4; DeepSeek Day 6)


@dataclass
class OpSpec:
    name: str
    category: str
    role: str                        # "attn", "ffn" or "comm"
    duration_s: Any                  # float or array
    flops: Any = 0.0
    bytes_moved: Any = 0.0
    bytes_sent: Any = 0.0
    # What the cost model priced it from, beyond flops and bytes (GEMM shape, precision, compute share, kernel kind
    # and rows, MoE tokens and EP, group size): an exported op graph carries it, so a re-timing prices it alike.
    inputs: dict | None = None


@dataclass
class Work:
    """One microbatch on one rank. Decode: `requests` each with `q` query tokens over `kv_len` cached tokens.
    Prefill: `tokens` new tokens in `pieces` prompts; `attn_flops`/`attn_bytes` the attention-core work,
    `kv_tokens` the new + cached tokens whose K/V are up-projected. `expert_tokens`: the tokens per rank the routed
    experts see, when the step's prompts load the attention ranks unevenly (None: `tokens`, an even step)."""
    tokens: Any
    requests: Any = 0.0
    kv_len: Any = 0.0
    q: float = 1.0
    pieces: Any = 0.0
    attn_flops: Any = 0.0
    attn_bytes: Any = 0.0
    kv_tokens: Any = 0.0
    expert_tokens: Any = None


def _hw(dep: Deployment, role: str) -> Hardware:
    """The chip as an op of `role` sees it: running the deployment's attention kernel version; with `split_hbm`, a
    split-cores stream gets its share of HBM too."""
    share = stream_of(dep, role, "gemm")[1]
    if not dep.split_hbm or dep.overlap != "split-cores" or share >= 1.0:
        share = 1.0
    if share == 1.0 and dep.attention_kernel is None:
        return dep.hardware
    return _as_run(dep.hardware, share, dep.attention_kernel)


@functools.lru_cache(maxsize=64)
def _as_run(hw: Hardware, hbm_share: float, attention_kernel: str | None) -> Hardware:
    eff = dict(hw.attention_compute_by_kernel)[attention_kernel] if attention_kernel else hw.attention_compute_eff
    return dataclasses.replace(hw, hbm_bytes_per_s=hw.hbm_bytes_per_s * hbm_share, attention_compute_eff=eff)


@functools.lru_cache(maxsize=64)
def _with_dispatch_kernel(hw: Hardware, kernel: str | None) -> Hardware:
    if kernel is None:
        return hw
    return dataclasses.replace(hw, moe_low_latency_table=dict(hw.moe_low_latency_by_kernel)[kernel])


def _gemm(dep: Deployment, name: str, role: str, m, n: int, k: int, precision: str, groups: int = 1) -> OpSpec:
    share = stream_of(dep, role, "gemm")[1]
    f, b = gemm_work(m, n, k, precision, groups)
    cat = "grouped_gemm" if groups > 1 else "gemm"
    return OpSpec(name, cat, role, gemm_time_s(m, n, k, precision, _hw(dep, role), groups, share), f, b,
                  inputs={"gemm": (m, n, k, groups), "precision": precision, "share": share})


def _mem(dep: Deployment, name: str, category: str, role: str, rows, row_bytes: float,
         kind: str | None = None) -> OpSpec:
    """An HBM-bound op over `rows` tokens (or token-expert pairs) of `row_bytes` each; `kind` picks the measured
    kernel curve it moves bytes like (default: its category)."""
    rows = np.asarray(rows, float)
    nbytes = rows * row_bytes
    return OpSpec(name, category, role, memory_time_s(nbytes, _hw(dep, role), kind or category, rows), 0.0, nbytes,
                  inputs={"rows": rows, "kernel": kind or category})


def _quant(dep: Deployment, name: str, role: str, rows, width: int) -> list[OpSpec]:
    """Per-token dynamic activation quantisation before an 8-bit GEMM: read BF16, write 8-bit (W8A8, paper
    Sec. 4.4; DeepSeek's per_token_cast_to_fp8 kernels). Nothing at 16-bit precision."""
    if BYTES[dep.precision] != 1:
        return []
    return [_mem(dep, name, "elementwise", role, rows, width * 3.0, "quant")]


def _moe_all_to_all(dep: Deployment, kind: str, t, hw, llm, precision: str, dedicated: bool) -> OpSpec:
    """MoE dispatch or combine: decode uses the low-latency kernels (per-message latency matters; the version the
    deployment ran), prefill the bulk all-to-all (bandwidth matters)."""
    if dep.phase == "decode":
        hw = _with_dispatch_kernel(hw, dep.dispatch_kernel)
        time_s = dispatch_time_s(t, dep.ep, hw, llm, kind, precision, dedicated)
        sent = dispatch_bytes(t, hw, llm, kind, precision, dedicated)
    else:
        time_s, sent = bulk_all_to_all_time_s(t, dep.ep, hw, llm, kind, precision)
    moe = {"tokens": t, "ep": dep.ep, "kernel": "low_latency" if dep.phase == "decode" else "bulk",
           "shared_expert_messages": dedicated}
    return OpSpec(f"moe_{kind}", f"moe_{kind}", "comm", time_s, 0.0, sent, sent,
                  inputs={"moe": moe, "precision": precision})


def _attention(dep: Deployment, flops, nbytes) -> OpSpec:
    share = stream_of(dep, "attn", "attention")[1]
    return OpSpec("attention", "attention", "attn",
                  attention_time_s(flops, nbytes, _hw(dep, "attn"), dep.attention_precision, share), flops, nbytes,
                  inputs={"precision": dep.attention_precision, "share": share})


def gqa_kv_read_factor(dep: Deployment) -> float:
    """KV bytes a rank reads over those of its own tokens' requests: a TP group's tp ranks attend over all the group's
    tokens with kv_heads / tp KV heads each, or with one replicated KV head once tp exceeds kv_heads."""
    kv = dep.llm.kv_heads
    return dep.tp * max(kv // dep.tp, 1) / kv


def _tp_collective(dep: Deployment, name: str, kind: str, bytes_per_rank) -> OpSpec:
    return OpSpec(name, kind, "comm", collective_time_s(kind, bytes_per_rank, dep.tp, dep.hardware), 0.0,
                  bytes_per_rank, bytes_per_rank, inputs={"ranks": dep.tp})


def attention_block(dep: Deployment, w: Work) -> list[OpSpec]:
    """Attention of one microbatch. With tp > 1 the heads are split over a TP group of tp ranks, which works on all
    of the group's tokens. `replicated` (Megatron, vLLM/SGLang): every rank holds all the group's tokens, runs the
    down-projections on all of them, and sums o_proj's partial results with an all-reduce. `staged` (CloudMatrix-Infer
    prefill, reference section 2): down-projections on the rank's own tokens (sequence parallel), an all-gather of
    their outputs, head-parallel up-projections and attention, an all-to-all back to the tokens' owners, and o_proj
    on own tokens with all heads."""
    llm, p, tp = dep.llm, dep.precision, dep.tp
    h = llm.hidden
    own = np.asarray(w.tokens, float)
    t = own * tp                                         # the TP group's tokens: head-parallel work covers them all
    staged = tp > 1 and dep.attention_tp == "staged"
    pre = own if staged else t                           # tokens before the head-parallel part (and after it)
    fused = dep.fused_attention_prolog  # norms, RoPE, quantisation inside the projection kernels: no ops of their own
    ops = [] if fused else [_mem(dep, "attn_norm", "norm", "attn", pre, h * 4),
                            *_quant(dep, "attn_quant", "attn", pre, h)]
    if llm.attention == "mla":
        H = llm.heads // tp
        qk = llm.qk_nope_dim + llm.qk_rope_dim
        latent = llm.q_lora_rank + llm.kv_lora_rank + llm.qk_rope_dim
        ops.append(_gemm(dep, "qkv_a_proj", "attn", pre, latent, h, p))
        if not fused:
            ops.append(_mem(dep, "q_kv_norm", "norm", "attn", pre, (llm.q_lora_rank + llm.kv_lora_rank) * 4))
        if staged:  # the normalised BF16 latents of the group's tokens reach every rank of it
            ops.append(_tp_collective(dep, "tp_all_gather", "all_gather", own * latent * 2))
        if not fused:
            ops += _quant(dep, "q_quant", "attn", t, llm.q_lora_rank)
        ops.append(_gemm(dep, "q_b_proj", "attn", t, H * qk, llm.q_lora_rank, p))
        if not fused:  # RoPE on the query's and the new key's rotary dims, in place (BF16 read + write)
            ops.append(_mem(dep, "rope", "elementwise", "attn", t, (H + 1) * llm.qk_rope_dim * 4, "rope"))
        if dep.phase == "decode":
            ops.append(_gemm(dep, "q_absorb", "attn", t, llm.kv_lora_rank, llm.qk_nope_dim, HEAD_PRECISION, H))
            f, b = mla_decode_work(llm, np.asarray(w.requests, float) * tp, w.q, w.kv_len, dep.kv_cache_precision)
            f = f / tp
        else:
            kv_t = np.asarray(w.kv_tokens, float) * tp
            if not fused:
                ops += _quant(dep, "kv_quant", "attn", kv_t, llm.kv_lora_rank)
            ops.append(_gemm(dep, "kv_b_proj", "attn", kv_t, H * (llm.qk_nope_dim + llm.v_head_dim),
                             llm.kv_lora_rank, p))
            f, b = np.asarray(w.attn_flops, float), np.asarray(w.attn_bytes, float)
        ops.append(_attention(dep, f, b))
        if dep.phase == "decode":
            ops.append(_gemm(dep, "v_absorb", "attn", t, llm.v_head_dim, llm.kv_lora_rank, HEAD_PRECISION, H))
        head_out = llm.v_head_dim
    else:
        H, KV = llm.heads // tp, max(llm.kv_heads // tp, 1)
        if staged:  # the normalised BF16 hidden states of the group's tokens reach every rank of it
            ops.append(_tp_collective(dep, "tp_all_gather", "all_gather", own * h * 2))
        ops.append(_gemm(dep, "qkv_proj", "attn", t, (H + 2 * KV) * llm.head_dim, h, p))
        if not fused:
            ops.append(_mem(dep, "rope", "elementwise", "attn", t, (H + KV) * llm.head_dim * 4, "rope"))
        if dep.phase == "decode":
            f, b = gqa_work(llm, np.asarray(w.requests, float), w.kv_len, dep.kv_cache_precision, decode=True)
            b = b * gqa_kv_read_factor(dep)
        else:
            f, b = np.asarray(w.attn_flops, float), np.asarray(w.attn_bytes, float)
        ops.append(_attention(dep, f, b))
        head_out = llm.head_dim
    if staged:  # each rank's heads go back to the tokens' owners; o_proj then runs on own tokens with all heads
        ops.append(_tp_collective(dep, "tp_all_to_all", "all_to_all", own * llm.heads * head_out * 2))
        ops += _quant(dep, "o_quant", "attn", own, llm.heads * head_out)
        ops.append(_gemm(dep, "o_proj", "attn", own, h, llm.heads * head_out, p))
    else:
        ops += _quant(dep, "o_quant", "attn", t, H * head_out)
        ops.append(_gemm(dep, "o_proj", "attn", t, h, H * head_out, p))
        if tp > 1:
            ops.append(_tp_collective(dep, "tp_all_reduce", "all_reduce", t * h * 2))
    ops.append(_mem(dep, "attn_residual", "elementwise", "attn", pre, h * 6))
    return ops


def imbalance(dep: Deployment, pairs_per_rank, eplb: str):
    """Load of the busiest expert rank over the mean. `perfect`: 1. `default`: EPLB balances expert popularity
    (redundant copies), what remains is multinomial routing noise; the busiest of R ranks with Poisson load L
    carries about L + sqrt(2 L ln R) (balls-into-bins maximum load, Raab & Steger 1998)."""
    lam = np.asarray(pairs_per_rank, float)
    if eplb == "perfect" or dep.ep <= 1:
        return np.ones_like(lam)
    return 1.0 + np.sqrt(2.0 * math.log(dep.ep) / np.maximum(lam, 1e-9))


def ffn_block(dep: Deployment, w: Work, moe: bool, eplb: str) -> list[OpSpec]:
    llm, hw, p = dep.llm, dep.hardware, dep.precision
    h = llm.hidden
    # dense FFN under replicated TP: every rank holds the group's tokens and a shard of the intermediate dim
    # (all-reduce after); staged attention hands own tokens back, so the dense FFN runs per rank
    tp = 1 if (moe or dep.attention_tp == "staged") else dep.tp
    t = np.asarray(w.tokens, float) * tp
    ops = [_mem(dep, "ffn_norm", "norm", "ffn", t, h * 4)]
    if not moe:
        i = llm.dense_ffn_intermediate // tp
        ops += _quant(dep, "ffn_quant", "ffn", t, h)
        ops += [_gemm(dep, "ffn_gate_up", "ffn", t, 2 * i, h, p),
                _mem(dep, "ffn_act", "elementwise", "ffn", t, i * 6), _gemm(dep, "ffn_down", "ffn", t, h, i, p)]
        if tp > 1:
            ops.append(_tp_collective(dep, "tp_all_reduce", "all_reduce", t * h * 2))
        ops.append(_mem(dep, "ffn_residual", "elementwise", "ffn", t, h * 6))
        return ops
    i, k = llm.expert_intermediate, llm.top_k
    ops.append(_gemm(dep, "gate", "ffn", t, llm.routed_experts, h, HEAD_PRECISION))
    dedicated = dep.shared_expert_placement == "dedicated" and llm.shared_experts > 0
    bulk = dep.phase != "decode"  # decode's low-latency kernels quantise, lay out and reduce tokens themselves
    if bulk:
        ops += _quant(dep, "moe_quant", "ffn", t, h)
    ops.append(_moe_all_to_all(dep, "dispatch", t, hw, llm, p, dedicated))
    if llm.shared_experts and not dedicated:
        ops += [_gemm(dep, "shared_gate_up", "ffn", t, 2 * i * llm.shared_experts, h, p),
                _gemm(dep, "shared_down", "ffn", t, h, i * llm.shared_experts, p)]
    routed_ranks = dep.ep - (dep.shared_expert_ranks if dedicated else 0)
    # the busiest rank sends and gets back its own tokens (t); the experts see every rank's tokens, spread
    spread = t if w.expert_tokens is None else np.asarray(w.expert_tokens, float)
    per_rank = spread * k * dep.ep / routed_ranks                # token-expert pairs a routed rank receives
    load = per_rank * imbalance(dep, per_rank, eplb)
    if dedicated:  # shared-expert ranks get every token of their share of the ranks; the slower kind sets the pace
        load = np.maximum(load, spread * dep.ep / max(dep.shared_expert_ranks, 1) * llm.shared_experts)
    g = max(round((llm.routed_experts + dep.redundant_experts) / routed_ranks), 1)
    m = load / g
    if bulk:  # received tokens copied into expert-contiguous rows (DeepSeek's expand kernel; CM's vector cores)
        ops.append(_mem(dep, "moe_permute", "copy", "ffn", load, h * BYTES[p] * 2, "elementwise"))
    ops += [_gemm(dep, "experts_gate_up", "ffn", m, 2 * i, h, p, g),
            _mem(dep, "experts_act", "elementwise", "ffn", load, i * 6),
            _gemm(dep, "experts_down", "ffn", m, h, i, p, g)]
    ops.append(_moe_all_to_all(dep, "combine", t, hw, llm, p, dedicated))
    if bulk:  # each token's returned BF16 partial sums (one per rank it went to) weighted and added
        d = distinct_ranks(llm.routed_experts, k, dep.ep)
        ops.append(_mem(dep, "moe_unpermute", "elementwise", "ffn", t, h * 2 * (d + 1)))
    ops.append(_mem(dep, "ffn_residual", "elementwise", "ffn", t, h * 6))
    return ops


def head_block(dep: Deployment, tokens, name: str = "lm_head") -> list[OpSpec]:
    """Final norm and LM head over `tokens` rows per rank. Under replicated TP the head is vocabulary-parallel
    (Megatron, vLLM): each rank scores the group's rows over its slice of the vocabulary, then the logits are
    gathered."""
    h, vocab = dep.llm.hidden, dep.llm.vocab
    t = np.asarray(tokens, float)
    if dep.tp > 1 and dep.attention_tp == "replicated":
        rows, cols = t * dep.tp, -(-vocab // dep.tp)
        return [_mem(dep, f"{name}_norm", "norm", "ffn", rows, h * 4),
                _gemm(dep, name, "ffn", rows, cols, h, HEAD_PRECISION),
                _tp_collective(dep, f"{name}_gather", "all_gather", rows * cols * 2)]
    return [_mem(dep, f"{name}_norm", "norm", "ffn", t, h * 4), _gemm(dep, name, "ffn", t, vocab, h, HEAD_PRECISION)]


def mtp_proj(dep: Deployment, tokens) -> list[OpSpec]:
    """The MTP module's input projection: [hidden; embedding] (2h) -> h, before its transformer layer."""
    h = dep.llm.hidden
    return [_mem(dep, "mtp_norm", "norm", "attn", tokens, h * 8),
            _gemm(dep, "mtp_eh_proj", "attn", tokens, h, 2 * h, HEAD_PRECISION)]
