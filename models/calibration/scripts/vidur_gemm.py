"""Extract the BF16 GEMM rows of models/calibration/gemm.toml (table h100-bf16-vidur) from Vidur's H100 profiles.

Reads ../shared/data/vidur-profiling/compute/h100/<org>/<model>/mlp.csv (microsoft/vidur, MIT; see NOTICE) and
prints TOML rows: (model, op, tp, m, n, k, groups, time_us), the median time of each of a layer's four linear layers
(cuBLAS through PyTorch, BF16 in and out) with m = tokens and the layer's shape on one of `tp` tensor-parallel ranks:
  attn_pre_proj  (fused QKV):       n = (heads + 2 kv_heads) / tp x head_dim, k = hidden
  attn_post_proj (output):          n = hidden, k = heads / tp x head_dim
  mlp_up_proj    (fused gate + up):  n = 2 x intermediate / tp (gated MLP; 1 x otherwise), k = hidden
  mlp_down_proj:                    n = hidden, k = intermediate / tp

Usage: python models/calibration/scripts/vidur_gemm.py [../shared/data/vidur-profiling] > rows.toml
"""

from __future__ import annotations

import sys
from pathlib import Path

from vidur import profile_points

MODELS = ("meta-llama/Llama-2-70b-hf", "meta-llama/Llama-2-7b-hf", "Qwen/Qwen-72B",
          "codellama/CodeLlama-34b-Instruct-hf", "internlm/internlm-20b", "microsoft/phi-2")
TOKENS = (1, 16, 64, 256, 1024, 2048, 4096)
TP = (1, 2, 4, 8)


def rows(root: Path) -> list[tuple]:
    out = []
    for model in MODELS:
        for r in profile_points(root, model, TOKENS, TP):
            t, tp, h, heads, kv, inter, gated = (r[k] for k in (
                "num_tokens", "num_tensor_parallel_workers", "n_embd", "n_head", "n_kv_head", "n_expanded_embd",
                "use_gated_mlp"))
            hd = h // heads
            shapes = {"attn_pre_proj": ((heads // tp + 2 * max(kv // tp, 1)) * hd, h),
                      "attn_post_proj": (h, heads // tp * hd),
                      "mlp_up_proj": ((2 if gated else 1) * inter // tp, h),
                      "mlp_down_proj": (h, inter // tp)}
            for op, (n, k) in shapes.items():
                us = r[f"time_stats.{op}.median"] * 1000.0
                out.append((model.split("/")[1], op, tp, t, n, k, 1, round(us, 2)))
    return out


if __name__ == "__main__":
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/data/vidur-profiling")
    for model, op, tp, m, n, k, g, us in rows(root):
        print(f'  ["{model}", "{op}", {tp}, {m}, {n}, {k}, {g}, {us}],')
