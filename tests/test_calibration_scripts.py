"""The committed calibration tables are what their extraction scripts make of the public data they cite."""

from __future__ import annotations

import importlib
import sys

import pytest

from harness.cost.calibration import table

# (script, its function, calibration file, table id, which of the table's rows it makes)
SCRIPTS = [("vidur_gemm", "rows", "gemm", "h100-bf16-vidur", None),
           ("vidur_memory_ops", "rows", "memory_ops", "h100-vidur", None),
           ("vidur_nccl", "rows", "nccl", "h100-vidur-all-reduce", None),
           ("vidur_nccl", "p2p_rows", "nccl", "nccl-h100-8", "send_recv"),
           ("vidur_nccl", "p2p_rows", "nccl", "nccl-h200-8", "send_recv")]


def _made(script: str, func: str, data, repo_root, monkeypatch) -> list[tuple]:
    monkeypatch.syspath_prepend(str(repo_root / "models" / "calibration" / "scripts"))
    module = importlib.import_module(script)
    try:
        return [tuple(r) for r in getattr(module, func)(data)]
    finally:
        sys.modules.pop(script, None)


@pytest.mark.parametrize("script,func,file,table_id,op", SCRIPTS, ids=[f"{s[3]}-{s[1]}" for s in SCRIPTS])
def test_vidur_tables_are_reproduced_by_their_scripts(script, func, file, table_id, op, shared_data, repo_root,
                                                      monkeypatch):
    vidur = shared_data / "vidur-profiling"
    if not vidur.is_dir():
        pytest.skip("../shared/data/vidur-profiling is not present")
    made = _made(script, func, vidur, repo_root, monkeypatch)
    assert made == [tuple(r) for r in table(file, table_id).rows if op is None or r[0] == op]


def test_in_situ_attention_rows_are_reproduced_from_deepseeks_capture(shared_data, repo_root, monkeypatch):
    """The capture itself is unlicensed and stays in ../shared: the committed rows are what the script derives."""
    capture = shared_data / "deepseek-profile-data"
    if not (capture / "train.json.gz").is_file():
        pytest.skip("../shared/data/deepseek-profile-data/train.json.gz is not present (unlicensed; never bundled)")
    made = _made("deepseek_attention", "rows", capture, repo_root, monkeypatch)
    assert made == [tuple(r) for r in table("attention", "h800-prefill-attention-in-situ").rows]


@pytest.mark.parametrize("chip", ["h100", "h200"])
@pytest.mark.parametrize("kind,file,table_id", [("gemm", "gemm", "{chip}-bf16-graph"),
                                                 ("attention", "attention", "{chip}-sdpa-graph")])
def test_measured_gpu_tables_are_the_committed_kernel_timings(chip, kind, file, table_id, repo_root, monkeypatch):
    """The tables timed on a lent GPU are what measured_rows.py makes of the raw timing files kept beside them."""
    import json
    measured = repo_root / "models" / "calibration" / "measured"
    raw = json.loads((measured / f"{chip}-kernels-2026-11-24.json").read_text())
    made = _made("measured_rows", kind, raw, repo_root, monkeypatch)
    assert made == [tuple(r) for r in table(file, table_id.format(chip=chip)).rows]


@pytest.mark.parametrize("hardware, chip", [("h100-ib", "h100"), ("h800-ib", "h100"), ("h200-ib", "h200")])
def test_gpu_hbm_capacity_is_what_the_lent_gpu_reported(hardware, chip, repo_root):
    """The specs hold the bytes CUDA reported on the lent GPUs (the marketed 80 / 141 GB are about 6% fewer)."""
    import json

    from harness.hardware import load_hardware
    measured = json.loads((repo_root / f"models/calibration/measured/{chip}-kernels-2026-11-24.json").read_text())
    assert load_hardware(hardware).hbm_bytes == measured["env"]["memory_bytes"]
