"""Regression gates: golden-result bookkeeping, the speed comparison, and the real gates on this checkout."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from harness.cli import main
from harness.gate import golden, speed
from harness.paths import shared_data_dir

REPO = Path(__file__).resolve().parent.parent


def _golden(values: dict[str, float], tol: float = 0.01) -> dict:
    return {"values": {k: {"value": v, "rel_tol": tol} for k, v in values.items()}, "history": []}


def test_unchanged_results_pass_and_moved_ones_fail():
    g = _golden({"a": 100.0, "b": 2.0})
    assert not any(m.failed for m in golden.compare(g, {"a": 100.0, "b": 2.0}))
    rows = {m.id: m for m in golden.compare(g, {"a": 100.5, "b": 2.1})}
    assert not rows["a"].failed          # 0.5% within 1%
    assert rows["b"].failed              # 5% beyond 1%


def test_new_and_vanished_results_fail():
    rows = {m.id: m for m in golden.compare(_golden({"gone": 1.0}), {"new": 1.0})}
    assert rows["gone"].failed and rows["new"].failed


@given(old=st.floats(1e-3, 1e6), change=st.floats(-0.5, 0.5))
def test_failure_is_exactly_the_tolerance_test(old, change):
    new = old * (1 + change)
    [m] = golden.compare(_golden({"x": old}, tol=0.05), {"x": new})
    assert m.failed == (abs(new - old) / old > 0.05)


def test_update_records_reason_and_old_and_new_values(tmp_path):
    path = tmp_path / "g.json"
    golden.update_golden(path, golden.load_golden(path, must_exist=False), {"x": 1.0}, "first")
    golden.update_golden(path, golden.load_golden(path), {"x": 2.0}, "model change")
    data = json.loads(path.read_text())
    assert data["values"]["x"]["value"] == 2.0
    assert [h["reason"] for h in data["history"]] == ["first", "model change"]
    assert data["history"][-1]["changes"] == [{"id": "x", "old": 1.0, "new": 2.0}]


def test_update_without_reason_is_refused(tmp_path):
    result = CliRunner().invoke(main, ["gate", "--update", "--golden", str(tmp_path / "g.json")])
    assert result.exit_code == 2 and "reason" in result.output and not (tmp_path / "g.json").exists()


@pytest.mark.parametrize("content, message", [
    (b"{not json", "not valid JSON"),
    (b"\xcc\xcc", "not a text file"),
    (b'{"values": {"a": {"value": "abc"}}}', "field 'values.a.value': 'abc' is not of type 'number'"),
    (b'{"values": {"a": {}}}', "field 'values.a': 'value' is a required property"),
    (b'{"values": {"a": {"value": 1, "rel_tol": -1}}}', "field 'values.a.rel_tol'"),
    (b'{"values": {"a": {"value": NaN}}}', "line 1: NaN is not a finite number"),
    (None, "no such golden file"),
])
def test_a_broken_or_missing_golden_file_is_a_clear_error(tmp_path, content, message):
    bad = tmp_path / "g.json"
    if content is not None:
        bad.write_bytes(content)
    result = CliRunner().invoke(main, ["gate", "--golden", str(bad)])
    assert result.exit_code == 2 and "g.json" in result.output and message in result.output, result.output
    assert "Traceback" not in result.output


def test_a_gate_that_checks_nothing_is_refused():
    result = CliRunner().invoke(main, ["gate", "--no-results", "--no-speed"])
    assert result.exit_code == 2 and "nothing to check" in result.output


def test_the_committed_golden_results_hold():
    """The CI result gate: every fixed scenario still predicts its golden value."""
    result = CliRunner().invoke(main, ["gate", "--json"])
    report = json.loads(result.stdout)
    assert not report["failed"], [r for r in report["results"] if r["failed"]]
    assert result.exit_code == 0 and report["results_checked"] > 100


def test_a_five_percent_change_in_a_cost_constant_is_caught():
    """An injected 5% drop in the 910C's HBM bandwidth moves decode predictions past their tolerance."""
    result = CliRunner().invoke(main, ["gate", "--json", "--set", "cloudmatrix384.chip.hbm_bandwidth=1.52TB/s"])
    report = json.loads(result.stdout)
    assert result.exit_code == 1 and report["failed"]
    assert any(r["failed"] and r["id"].startswith("estimate/cm384-decode") for r in report["results"])


def test_speed_comparison_fails_a_2x_slowdown_and_passes_noise():
    base = {"ratios": {"replay": 10.0, "load": 2.0}}
    assert not any(r.failed for r in speed.compare_speed(base, {"replay": 12.0, "load": 2.5}))  # 1.2x, 1.25x noise
    rows = {r.name: r for r in speed.compare_speed(base, {"replay": 20.0, "load": 2.0})}
    assert rows["replay"].failed and rows["replay"].slowdown == pytest.approx(2.0)
    assert not rows["load"].failed


def test_normalising_by_the_calibration_cancels_a_uniformly_slower_machine():
    fast = {speed.CALIBRATION: 0.01, "replay": 0.5}
    slow = {speed.CALIBRATION: 0.03, "replay": 1.5}   # the whole machine 3x slower
    assert speed.normalised(fast) == pytest.approx(speed.normalised(slow))


def test_the_speed_gate_runs_the_real_benchmarks_against_the_baseline(tmp_path):
    """Plumbing of `bench gate --speed`: a real benchmark run, normalised and compared with a baseline."""
    baseline = tmp_path / "baseline.json"
    runner = CliRunner()
    first = runner.invoke(main, ["gate", "--no-results", "--speed", "-k", "calibration or step",
                                 "--baseline", str(baseline), "--update", "--reason", "test"])
    assert first.exit_code == 0, first.output
    ratios = json.loads(baseline.read_text())["ratios"]
    assert ratios and all(v > 0 for v in ratios.values())
    again = runner.invoke(main, ["gate", "--no-results", "--speed", "-k", "calibration or step",
                                 "--baseline", str(baseline), "--json", "--margin", "3"])
    assert again.exit_code == 0, again.output
    assert {r["name"] for r in json.loads(again.stdout)["speed"]} == set(ratios)


def test_the_committed_speed_baseline_holds():
    """The CI speed gate: the non-slow benchmarks, normalised by the calibration run, against baseline.json."""
    result = CliRunner().invoke(main, ["gate", "--no-results", "--speed", "--json"])
    report = json.loads(result.stdout)
    slow = [(r["name"], round(r["slowdown"], 2)) for r in report["speed"] if r["failed"]]
    assert result.exit_code == 0 and not slow, slow
    baseline = json.loads((REPO / "tests" / "benchmarks" / "baseline.json").read_text())["ratios"]
    measured = {r["name"] for r in report["speed"] if r["slowdown"] is not None}
    needs_shared = set() if shared_data_dir() else {"test_gate_ops_parse_and_retime"}   # skips without ../shared
    assert measured <= set(baseline) and set(baseline) - measured <= needs_shared


@pytest.mark.parametrize("content, message", [
    (b"\xc1\xff binary", "not a text file"),
    (b"[1]", "must be a JSON object with 'ratios' and 'margins'"),
    (b'{"ratios": [1]}', "field 'ratios': must be an object of benchmark names to numbers"),
    (b'{"ratios": {"test_x": "fast"}}', "field 'ratios.test_x': must be a positive number, got 'fast'"),
    (b'{"margins": {"test_x": 0}}', "field 'margins.test_x': must be a positive number, got 0"),
    (b'{"ratios": {"test_x": NaN}}', "NaN is not a finite number"),
])
def test_a_bad_speed_baseline_is_named_before_any_benchmark_runs(tmp_path, content, message):
    """Bytes that are not UTF-8 were a UnicodeDecodeError traceback; JSON of the wrong shape ran every benchmark
    and then died in an AttributeError or TypeError."""
    path = tmp_path / "baseline.json"
    from harness.errors import InputError

    path.write_bytes(content)
    with pytest.raises(InputError) as info:
        speed.load_baseline(path)
    assert str(info.value).startswith(str(path)) and message in str(info.value), str(info.value)
    if content.startswith(b"\xc1"):
        result = CliRunner().invoke(main, ["gate", "--no-results", "--speed", "--baseline", str(path)])
        assert result.exit_code == 2 and result.output == f"error: {path}: {message}\n", result.output


def test_a_probe_that_fails_after_printing_a_note_passes_on_its_error_alone(tmp_path):
    """bench gate --set printed "error: note: equal-chips: ..." and the real error on a second line: the failing
    replay probe's notes were taken for its error message."""
    from harness.errors import InputError
    from harness.gate.probes import _bench_json

    trace = tmp_path / "t.csv"
    trace.write_text("arrival_s,input_tokens,output_tokens\n0,10,5\n1,20,5\n", encoding="utf-8")
    with pytest.raises(InputError) as info:
        _bench_json(["replay", str(trace), "--quiet", "--json", "--out", str(tmp_path / "o"),
                     "--set", "cloudmatrix384.chip.hbm_bandwidth=1e-300 TB/s"])
    assert str(info.value).startswith("the run reaches ") and "\n" not in str(info.value), str(info.value)
