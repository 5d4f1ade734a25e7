"""Extract the in-place FlashAttention forward rows of models/calibration/attention.toml (table
h800-prefill-attention-in-situ) from DeepSeek's H800 capture.

Reads ../shared/data/deepseek-profile-data/train.json.gz (deepseek-ai/profile-data; no licence, so only these
derived figures are kept, never the file) through the harness's own Kineto loader and prints TOML rows:
(kernel, tokens, heads, qk_dim, v_dim, sm_share, time_us) for each forward attention kernel. The capture is
DeepSeek-V3 training at 4K tokens per sequence, TP1 (its README): un-absorbed MLA, causal, 128 heads, query/key
head dim 192 and value head dim 128 (the kernel's template <192, 128>), the shape of MLA prefill. sm_share is the
share of the 132 SMs the kernel had beside DeepEP's partial-grid kernels (harness.ops.kineto).

Usage: python models/calibration/scripts/deepseek_attention.py [../shared/data/deepseek-profile-data] > rows.toml
"""

from __future__ import annotations

import sys
from pathlib import Path

from harness.ops.load import load_op_trace

KERNEL = "flash::compute_attn_ws<Flash_fwd_kernel_traits<192, 128"
SHAPE = (4096, 128, 192, 128)  # tokens, heads, qk_dim, v_dim (capture README; kernel template)


def rows(root: Path) -> list[tuple]:
    graph = load_op_trace(root / "train.json.gz")
    return [("flash_fwd", *SHAPE, round(op.sm_share, 4), round(op.duration_s * 1e6, 1))
            for op in graph.ops if KERNEL in op.name]


if __name__ == "__main__":
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/data/deepseek-profile-data")
    for r in rows(root):
        print("  [" + ", ".join(f'"{x}"' if isinstance(x, str) else str(x) for x in r) + "],")
