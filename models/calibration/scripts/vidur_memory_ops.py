"""Extract the memory-bound operator rows of models/calibration/memory_ops.toml from Vidur's H100 profiles.

Reads ../shared/data/vidur-profiling/compute/h100/<org>/<model>/mlp.csv (microsoft/vidur, MIT; see NOTICE) and
prints TOML rows: (op, model, tokens, tp, bytes, time_us). Bytes are what each kernel must move through HBM:
  norm (input_layernorm, RMSNorm): read + write tokens x hidden in BF16          -> 4 B per element
  rope (attn_rope, in place on Q and K): read + write tokens x (q + kv heads / tp) x head_dim -> 4 B per element
  act  (mlp_act, SwiGLU): read gate and up, write the product, tokens x intermediate / tp    -> 6 B per element
Vidur's `add` is left out: at 4,096 tokens it reads as 112% of the HBM peak, so it is not a streaming
measurement (a fused or cache-resident add) and would overstate what element-wise kernels reach.

Usage: python models/calibration/scripts/vidur_memory_ops.py [../shared/data/vidur-profiling] > rows.toml
"""

from __future__ import annotations

import sys
from pathlib import Path

from vidur import profile_points

MODELS = ("meta-llama/Llama-2-70b-hf", "Qwen/Qwen-72B", "internlm/internlm-20b", "meta-llama/Llama-2-7b-hf")
TOKENS = (1, 16, 64, 256, 1024, 2048, 4096)
TP = (1, 8)


def rows(root: Path) -> list[tuple]:
    out = []
    for model in MODELS:
        for r in profile_points(root, model, TOKENS, TP):
            t, tp, h, heads, kv = (r[k] for k in ("num_tokens", "num_tensor_parallel_workers", "n_embd", "n_head",
                                                   "n_kv_head"))
            hd, inter = h // heads, r["n_expanded_embd"]
            moved = {"norm": ("input_layernorm", 4 * t * h),
                     "rope": ("attn_rope", 4 * t * (heads // tp + max(kv // tp, 1)) * hd),
                     "act": ("mlp_act", 6 * t * inter // tp)}
            for op, (column, nbytes) in moved.items():
                ms = r[f"time_stats.{column}.median"]
                out.append((op, model.split("/")[1], t, tp, nbytes, round(ms * 1000.0, 2)))
    return out


if __name__ == "__main__":
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/data/vidur-profiling")
    for op, model, t, tp, nbytes, us in rows(root):
        print(f'  ["{op}", "{model}", {t}, {tp}, {nbytes}, {us}],')
