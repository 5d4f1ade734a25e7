"""Print the calibration-table rows kept from a kernel-timing file written by h100_kernels.py.

  gemm       rows of gemm.toml tables <chip>-bf16-graph: (shape, m, n, k, groups, time_us), cuBLAS BF16 dense GEMMs,
             torch._grouped_mm expert GEMMs, and where timed DeepSeek decode's absorbed-MLA bmm and LM head
  attention  rows of attention.toml tables <chip>-sdpa-graph: the cuDNN SDPA rows (GQA decode, causal prefill)

The FA2 (SDPA flash), cuBLAS FP8, torch.compile element-wise and copy rows stay in the JSON only (see
models/README.md, "Kernel timings measured on a lent GPU", for why each is not a table).

Usage: python models/calibration/scripts/measured_rows.py models/calibration/measured/h100-kernels-DATE.json gemm
"""

from __future__ import annotations

import json
import sys


def gemm(d: dict) -> list[tuple]:
    grouped = d["grouped"] + d.get("decode_extra", [])   # decode_extra: absorbed-MLA bmm (128 heads), LM head
    return ([(r["name"], r["m"], r["n"], r["k"], 1, r["time_us"]) for r in d["gemm_bf16"]]
            + [(r["name"], r["m"], r["n"], r["k"], r["groups"], r["time_us"]) for r in grouped])


def attention(d: dict) -> list[tuple]:
    out = []
    for r in d["attention"]:
        if r.get("backend") != "cudnn" or "time_us" not in r:
            continue
        if r["kind"] == "gqa_decode":
            out.append(("decode", r["batch"], 1, r["kv_len"], r["q_heads"], r["kv_heads"], r["head_dim"],
                        r["head_dim"], r["time_us"]))
        else:
            out.append(("prefill", 1, r["seq"], r["seq"], r["heads"], r["heads"], r["qk_dim"], r["v_dim"],
                        r["time_us"]))
    return out


if __name__ == "__main__":
    data = json.load(open(sys.argv[1]))
    for row in {"gemm": gemm, "attention": attention}[sys.argv[2]](data):
        print(f"  {json.dumps(list(row))},")
