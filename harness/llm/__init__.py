"""LLM architectures as data: `load_llm(name)` -> `LLM`, with the derived sizes the cost model needs."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

from harness.errors import InputError
from harness.hardware.specfile import load_spec

__all__ = ["LLM", "load_llm"]

BYTES = {"bf16": 2, "fp8": 1, "int8": 1}


@dataclass(frozen=True)
class LLM:
    name: str
    description: str
    layers: int
    dense_layers: int
    hidden: int
    vocab: int
    max_context: int
    dense_ffn_intermediate: int
    attention: str                   # "mla" or "gqa"
    heads: int
    kv_heads: int                    # gqa; 1 for MLA (latent shared by all heads)
    head_dim: int                    # gqa head dim
    q_lora_rank: int
    kv_lora_rank: int
    qk_nope_dim: int
    qk_rope_dim: int
    v_head_dim: int
    routed_experts: int              # 0: dense model
    shared_experts: int
    top_k: int
    expert_intermediate: int
    mtp_modules: int

    @property
    def moe_layers(self) -> int:
        return self.layers - self.dense_layers if self.routed_experts else 0

    def kv_elems_per_token_layer(self) -> int:
        if self.attention == "mla":
            return self.kv_lora_rank + self.qk_rope_dim
        return 2 * self.kv_heads * self.head_dim

    def kv_bytes_per_token(self, precision: str = "bf16") -> int:
        """KV cache bytes per token over all layers (DeepSeek-V3 in BF16: 70,272 B)."""
        return self.layers * self.kv_elems_per_token_layer() * BYTES[precision]

    def attention_params(self) -> int:
        """Weights of one attention block (projections only)."""
        h, H = self.hidden, self.heads
        if self.attention == "mla":
            qk = self.qk_nope_dim + self.qk_rope_dim
            return (h * self.q_lora_rank + self.q_lora_rank * H * qk + h * (self.kv_lora_rank + self.qk_rope_dim)
                    + self.kv_lora_rank * H * (self.qk_nope_dim + self.v_head_dim) + H * self.v_head_dim * h)
        return h * (H + 2 * self.kv_heads) * self.head_dim + H * self.head_dim * h

    def head_parallel_params(self) -> int:
        """The part of `attention_params` split over heads: MLA's up-projections (q_b, kv_b); GQA's QKV."""
        H = self.heads
        if self.attention == "mla":
            return (self.q_lora_rank * H * (self.qk_nope_dim + self.qk_rope_dim)
                    + self.kv_lora_rank * H * (self.qk_nope_dim + self.v_head_dim))
        return self.hidden * (H + 2 * self.kv_heads) * self.head_dim

    def expert_params(self) -> int:
        return 3 * self.hidden * self.expert_intermediate

    def dense_ffn_params(self) -> int:
        return 3 * self.hidden * self.dense_ffn_intermediate


def _check_consistent(d: dict, path) -> None:
    """Relations between fields that a schema cannot state; each names the field to fix."""
    a, m = d["attention"], d.get("moe", {})
    rules = [
        ("dense_layers", d["dense_layers"] <= d["layers"], f"must not exceed layers ({d['layers']})"),
        ("moe.top_k", m.get("top_k", 0) <= m.get("routed_experts", 0),
         f"must not exceed moe.routed_experts ({m.get('routed_experts', 0)})"),
        ("moe.top_groups", m.get("top_groups", 0) <= m.get("groups", 0), f"must not exceed moe.groups ({m.get('groups', 0)})"),
        ("attention.kv_heads", a["kind"] == "mla" or a["heads"] % a["kv_heads"] == 0,
         f"must divide attention.heads ({a['heads']})"),
    ]
    for field_, ok, message in rules:
        if not ok:
            raise InputError(message, path=str(path), field=field_)


@functools.lru_cache(maxsize=64)
def _load(name: str, overrides: tuple[tuple[str, str], ...]) -> LLM:
    d, path = load_spec("llm", name, overrides)
    a, m = d["attention"], d.get("moe", {})
    mla = a["kind"] == "mla"
    _check_consistent(d, path)
    return LLM(
        name=d["name"], description=d["description"], layers=d["layers"], dense_layers=d["dense_layers"],
        hidden=d["hidden"], vocab=d["vocab"], max_context=d["max_context"],
        dense_ffn_intermediate=d["dense_ffn_intermediate"], attention=a["kind"], heads=a["heads"],
        kv_heads=1 if mla else a["kv_heads"], head_dim=0 if mla else a["head_dim"],
        q_lora_rank=a.get("q_lora_rank", 0), kv_lora_rank=a.get("kv_lora_rank", 0),
        qk_nope_dim=a.get("qk_nope_dim", 0), qk_rope_dim=a.get("qk_rope_dim", 0), v_head_dim=a.get("v_head_dim", 0),
        routed_experts=m.get("routed_experts", 0), shared_experts=m.get("shared_experts", 0),
        top_k=m.get("top_k", 0), expert_intermediate=m.get("expert_intermediate", 0),
        mtp_modules=d.get("mtp_modules", 0),
    )


def load_llm(name: str, overrides: Sequence[tuple[str, str]] = ()) -> LLM:
    """Load models/llm/<name>.toml."""
    return _load(name, tuple(overrides))
