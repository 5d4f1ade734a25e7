"""The committed calibration tables are what their extraction scripts make of the public data they cite."""

from __future__ import annotations

import importlib
import sys

import pytest

from harness.cost.calibration import table

SCRIPTS = [("vidur_gemm", "gemm", "h100-bf16-vidur"), ("vidur_memory_ops", "memory_ops", "h100-vidur"),
           ("vidur_nccl", "nccl", "h100-vidur-all-reduce")]


@pytest.mark.parametrize("script,file,table_id", SCRIPTS)
def test_vidur_tables_are_reproduced_by_their_scripts(script, file, table_id, shared_data, repo_root, monkeypatch):
    vidur = shared_data / "vidur-profiling"
    if not vidur.is_dir():
        pytest.skip("../shared/data/vidur-profiling is not present")
    monkeypatch.syspath_prepend(str(repo_root / "models" / "calibration" / "scripts"))
    module = importlib.import_module(script)
    try:
        made = [tuple(r) for r in module.rows(vidur)]
    finally:
        sys.modules.pop(script, None)
    assert made == [tuple(r) for r in table(file, table_id).rows]


def test_in_situ_attention_rows_are_reproduced_from_deepseeks_capture(shared_data, repo_root, monkeypatch):
    """The capture itself is unlicensed and stays in ../shared: the committed rows are what the script derives."""
    capture = shared_data / "deepseek-profile-data"
    if not (capture / "train.json.gz").is_file():
        pytest.skip("../shared/data/deepseek-profile-data/train.json.gz is not present (unlicensed; never bundled)")
    monkeypatch.syspath_prepend(str(repo_root / "models" / "calibration" / "scripts"))
    module = importlib.import_module("deepseek_attention")
    try:
        made = [tuple(r) for r in module.rows(capture)]
    finally:
        sys.modules.pop("deepseek_attention", None)
    assert made == [tuple(r) for r in table("attention", "h800-prefill-attention-in-situ").rows]
