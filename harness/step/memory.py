"""HBM per rank: weights, reserve, and the KV cache that fits in the rest (largest batch at a KV length)."""

from __future__ import annotations

from dataclasses import dataclass

from harness.errors import InputError
from harness.llm import BYTES, LLM
from harness.step.deployment import Deployment


@dataclass(frozen=True)
class MemoryPlan:
    weights_bytes: float             # per rank
    reserve_bytes: float
    kv_bytes: float                  # left for the KV cache, per rank
    kv_bytes_per_token: int          # whole model, at the deployment's KV precision
    kv_split: int                    # ranks of a TP group that share one token's KV (GQA heads split; MLA: 1)
    tp: int

    @property
    def kv_tokens_per_rank(self) -> int:
        """Tokens of KV one rank holds (each costs kv_bytes_per_token / kv_split here)."""
        return max(int(self.kv_bytes * self.kv_split // self.kv_bytes_per_token), 0)

    @property
    def kv_tokens_per_rank_of_instance(self) -> float:
        """Distinct tokens of KV per rank of the instance: a TP group of tp ranks holds its tokens once per
        kv_split-way shard (MLA's latent is replicated on every TP rank)."""
        return self.kv_tokens_per_rank / self.tp


def weights_per_rank_bytes(dep: Deployment) -> float:
    """Attention replicated over DP (split over TP), dense FFN replicated, experts spread over EP, embedding and
    LM head in BF16 on every rank (split over TP: vocabulary-parallel), the MTP module like one more MoE layer.
    Staged TP splits only the head-parallel up-projections; the rest runs on a rank's own tokens with all weights."""
    llm = dep.llm
    experts_here = 0
    if llm.routed_experts:
        dedicated = dep.shared_expert_placement == "dedicated"
        routed_ranks = dep.ep - (dep.shared_expert_ranks if dedicated else 0)
        experts_here = -(-(llm.routed_experts + dep.redundant_experts) // routed_ranks)
        if not dedicated:
            experts_here += llm.shared_experts
    return _weights_bytes(llm, dep.precision, dep.tp, experts_here, dep.tp > 1 and dep.attention_tp == "staged")


def model_bytes(llm: LLM, precision: str) -> float:
    """Every distinct weight once (what a checkpoint holds, the MTP module included)."""
    return _weights_bytes(llm, precision, 1, llm.routed_experts + llm.shared_experts)


def _weights_bytes(llm: LLM, precision: str, tp: int, experts_here: int, staged: bool = False) -> float:
    """GEMM weights at `precision` (attention and dense FFN split `tp` ways, or under staged TP only the attention's
    head-parallel part; `experts_here` experts per MoE layer), router, embedding and LM head in BF16."""
    b = BYTES[precision]
    if staged:
        split = llm.head_parallel_params()
        attn = (llm.attention_params() - split + split / tp) * b
        dense = llm.dense_ffn_params() * b
        vocab_tp = 1
    else:
        attn = llm.attention_params() / tp * b
        dense = llm.dense_ffn_params() / tp * b
        vocab_tp = tp
    total = llm.layers * attn + (llm.dense_layers if llm.routed_experts else llm.layers) * dense
    if llm.routed_experts:
        moe_layers = llm.moe_layers + llm.mtp_modules
        total += moe_layers * (experts_here * llm.expert_params() * b + llm.hidden * llm.routed_experts * 2)
        total += llm.mtp_modules * (attn + 2 * llm.hidden * llm.hidden * 2)
    total += 2 * llm.vocab * llm.hidden * 2 / vocab_tp
    return float(total)


def memory_plan(dep: Deployment) -> MemoryPlan:
    w = weights_per_rank_bytes(dep)
    kv = dep.hardware.hbm_bytes - w - dep.memory_reserve_bytes
    split = min(dep.tp, dep.llm.kv_heads) if dep.llm.attention == "gqa" else 1
    return MemoryPlan(w, dep.memory_reserve_bytes, max(kv, 0.0), dep.kv_bytes_per_token(),
                      split, dep.tp)


def max_batch_per_chip(dep: Deployment, kv_len: float) -> int:
    """Largest decode batch per chip whose KV (kv_len tokens each) fits next to the weights."""
    plan = memory_plan(dep)
    return int(plan.kv_tokens_per_rank_of_instance / max(kv_len, 1) * dep.hardware.ranks_per_chip)


def check_weights_fit(dep: Deployment) -> None:
    """Refuse, naming the chips, a deployment whose weights alone leave no HBM for a KV cache."""
    plan = memory_plan(dep)
    if plan.kv_bytes <= 0:
        raise InputError(f"{dep.name}'s weights ({plan.weights_bytes / 1e9:.1f} GB per rank) and reserve "
                         f"({plan.reserve_bytes / 1e9:.1f} GB) leave no HBM for a KV cache "
                         f"({dep.hardware.hbm_bytes / 1e9:.0f} GB per rank): split them further (--tp, --ep) "
                         "or over more chips", field="--chips")
