"""Every real format loads from the real files in ../shared/data and from the bundled copies, with statistics that
match values computed independently here (plain Python over the raw files) and the SOURCE.md figures."""

from __future__ import annotations

import csv
import gzip
import json
import math
import statistics
from datetime import datetime
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from harness.trace import load_trace, resolve_trace_path, trace_stats

FIXTURES = Path(__file__).parent / "fixtures" / "traces"


def _azure_independent(path: Path) -> dict:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", newline="") as fh:
        rows = list(csv.DictReader(fh))
    # 7 fractional digits (100 ns): datetime keeps 6, so add the 7th digit by hand.
    stamps = [datetime.strptime(r["TIMESTAMP"][:26], "%Y-%m-%d %H:%M:%S.%f").timestamp() + int(r["TIMESTAMP"][26:] or 0)
              * 1e-7 for r in rows]
    gaps = [b - a for a, b in zip(stamps, stamps[1:])]
    return {"requests": len(rows), "duration_s": stamps[-1] - stamps[0],
            "cv": statistics.pstdev(gaps) / statistics.fmean(gaps),
            "input_mean": statistics.fmean(int(r["ContextTokens"]) for r in rows),
            "output_max": max(int(r["GeneratedTokens"]) for r in rows)}


def _mooncake_independent(path: Path) -> dict:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as fh:
        records = [json.loads(line) for line in fh if line.strip()]
    seen: set[int] = set()
    hits = total = 0
    for rec in records:  # arrival order = file order (the file is sorted; ties keep file order)
        run = 0
        for block in rec["hash_ids"]:
            if block not in seen:
                break
            run += 1
        hits += run
        total += len(rec["hash_ids"])
        seen.update(rec["hash_ids"])
    return {"requests": len(records), "duration_s": (records[-1]["timestamp"] - records[0]["timestamp"]) / 1000,
            "hit_ratio": hits / total, "blocks_total": total,
            "input_mean": statistics.fmean(r["input_length"] for r in records)}


@pytest.mark.parametrize("name, rows, rate, cv", [("conv", 19_366, 5.53, 1.09), ("code", 8_819, 2.57, 13.2)])
def test_azure_real_file_matches_independent_stats(shared_data, name, rows, rate, cv):
    path = shared_data / "azure-llm-2023" / f"AzureLLMInferenceTrace_{name}.csv"
    stats = trace_stats(load_trace(path))
    expected = _azure_independent(path)
    assert stats["format"] == "azure"
    assert stats["requests"] == expected["requests"] == rows
    assert stats["duration_s"] == pytest.approx(expected["duration_s"], abs=1e-6)
    assert stats["inter_arrival_s"]["cv"] == pytest.approx(expected["cv"], rel=1e-6)  # epoch floats keep ~0.2 us
    assert stats["input_tokens"]["mean"] == pytest.approx(expected["input_mean"])
    assert stats["output_tokens"]["max"] == expected["output_max"]
    # The SOURCE.md figures, to their printed precision.
    assert round(stats["rate_req_s"], 2) == rate
    assert round(stats["inter_arrival_s"]["cv"], 2 if cv < 10 else 1) == cv


def test_mooncake_real_file_matches_independent_stats(shared_data):
    path = shared_data / "mooncake-fast25" / "conversation_trace.jsonl"
    workload = load_trace(path)
    stats = trace_stats(workload)
    expected = _mooncake_independent(path)
    assert stats["format"] == "mooncake" and workload.block_size == 512
    assert stats["requests"] == expected["requests"] == 12_031
    assert stats["duration_s"] == pytest.approx(expected["duration_s"])
    assert stats["input_tokens"]["mean"] == pytest.approx(expected["input_mean"])
    assert stats["prefix_reuse"]["blocks_total"] == expected["blocks_total"] == 288_500
    assert stats["prefix_reuse"]["blocks_unique"] == 182_790
    assert stats["prefix_reuse"]["block_hit_ratio"] == pytest.approx(expected["hit_ratio"], abs=1e-12)
    assert round(stats["prefix_reuse"]["block_hit_ratio"], 3) == 0.366
    # Quantised stamps: ties keep file order and stay simultaneous (1,180 distinct instants).
    assert stats["distinct_arrival_times"] == 1_180
    assert workload.requests["request_id"].to_list()[:3] == ["0", "1", "2"]


@pytest.mark.parametrize("short, real", [
    ("azure-conv", "azure-llm-2023/AzureLLMInferenceTrace_conv.csv"),
    ("azure-code", "azure-llm-2023/AzureLLMInferenceTrace_code.csv"),
    ("mooncake-conv", "mooncake-fast25/conversation_trace.jsonl"),
])
def test_bundled_copy_equals_real_file(shared_data, short, real):
    bundled = load_trace(short)
    original = load_trace(shared_data / real)
    assert_frame_equal(bundled.requests, original.requests)
    assert bundled.block_size == original.block_size


@pytest.mark.parametrize("short, fmt, rows", [("azure-conv", "azure", 19_366), ("azure-code", "azure", 8_819),
                                              ("mooncake-conv", "mooncake", 12_031),
                                              ("synthetic-reasoning", "native", 2_000)])
def test_bundled_traces_load_by_short_name_and_by_path(short, fmt, rows):
    by_name = load_trace(short)
    by_path = load_trace(resolve_trace_path(short))
    assert by_name.source_format == fmt and len(by_name) == rows
    assert_frame_equal(by_name.requests, by_path.requests)
    first = by_name.requests["arrival_s"]
    assert first[0] == 0.0 and first.is_sorted()


def test_bundled_mooncake_reuse_ratio_without_shared_data():
    assert round(trace_stats(load_trace("mooncake-conv"))["prefix_reuse"]["block_hit_ratio"], 3) == 0.366


def test_burstgpt_fixture_drops_failed_requests_and_maps_columns():
    path = FIXTURES / "burstgpt_sample.csv"
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    served = [r for r in rows if int(r["Response tokens"]) > 0]
    workload = load_trace(path)
    assert workload.source_format == "burstgpt"
    assert len(workload) == len(served) == 13
    assert workload.notes == ("dropped 3 failed requests (0 response tokens)",)
    frame = workload.requests
    assert frame["input_tokens"].to_list() == [int(r["Request tokens"]) for r in served]
    assert frame["model"].to_list() == [r["Model"] for r in served]
    assert frame["tenant"].to_list() == [r["Log Type"] for r in served]
    assert frame["arrival_s"].to_list() == [float(r["Timestamp"]) - 5.0 for r in served]


def test_azure_2024_layout_with_utc_offset(tmp_path):
    path = tmp_path / "azure2024.csv"
    path.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n"
                    "2024-05-10 00:00:00.009930+00:00,1024,17\n"
                    "2024-05-10 00:00:00+00:00,2048,3\n"  # unsorted and without a fraction, as pandas may write
                    "2024-05-10 00:00:01.5+00:00,300,40\n")
    workload = load_trace(path)
    assert workload.source_format == "azure"
    assert workload.requests["arrival_s"].to_list() == pytest.approx([0.0, 0.00993, 1.5])
    assert workload.requests["input_tokens"].to_list() == [2048, 1024, 300]
    assert workload.notes and "sorted 1 rows" in workload.notes[0]


@pytest.mark.parametrize("container", ["csv", "jsonl", "parquet"])
def test_gzip_variants_load_the_same(tmp_path, container):
    source = load_trace(FIXTURES / "burstgpt_sample.csv")
    from harness.trace import save_trace

    plain = save_trace(source, tmp_path / f"t.{container}")
    packed = tmp_path / f"t.{container}.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    assert_frame_equal(load_trace(plain).requests, load_trace(packed).requests)


def test_format_override_and_detection_agree():
    path = FIXTURES / "burstgpt_sample.csv"
    assert_frame_equal(load_trace(path, "burstgpt").requests, load_trace(path).requests)


def test_mooncake_timestamps_are_milliseconds(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text('{"timestamp": 1000, "input_length": 600, "output_length": 5, "hash_ids": [0, 1]}\n'
                    '{"timestamp": 4000, "input_length": 100, "output_length": 9, "hash_ids": [0]}\n')
    workload = load_trace(path)
    assert workload.requests["arrival_s"].to_list() == [0.0, 3.0]
    assert workload.requests["prefix_blocks"].to_list() == [[0, 1], [0]]
    assert math.isclose(trace_stats(workload)["prefix_reuse"]["block_hit_ratio"], 1 / 3)


def test_native_parquet_keeps_all_optional_columns(tmp_path):
    frame = pl.DataFrame({"request_id": ["a", "b"], "arrival_s": [2.0, 2.5], "input_tokens": [700, 20],
                          "output_tokens": [1, 2], "session_id": ["s", "s"], "prefix_blocks": [[4, 5], [4]],
                          "block_size": [512, 512], "tenant": ["t", None], "model": ["m", "m"]})
    frame.write_parquet(tmp_path / "n.parquet")
    workload = load_trace(tmp_path / "n.parquet")
    assert workload.block_size == 512
    assert workload.requests["arrival_s"].to_list() == [0.0, 0.5]  # first arrival shifted to 0
    assert workload.requests["tenant"].to_list() == ["t", None]
