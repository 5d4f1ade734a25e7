"""Sweeps end to end on a bundled trace with the real cost model: the same table whatever runs it (1 worker, 2 local
workers, Ray), resume recomputes nothing, failed points are recorded and the sweep goes on, the report renders."""

from __future__ import annotations

import json
import os
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner
from polars.testing import assert_frame_equal

from harness.sweep.run import run_sweep
from harness.sweep.spec import expand, load_sweep

SWEEP = """
name = "tiny"
seed = 1
slo = "ttft=0.5s,tpot=50ms"

[trace]
path = "azure-conv"
limit = 120
rate = 150.0

[grid]
prefill_instances = [1, 2]

[[backend]]
backend = "cloudmatrix384"
[backend.grid]
batch_cap = [1, 96]

[[backend]]
backend = "h800-ib"
[[backend.points]]
routing = "round-robin"
[[backend.points]]
"decode.ep" = 7
"""
# 4 cloudmatrix384 points, 4 h800 points of which 2 fail (EP 7 does not divide 144 ranks).


@pytest.fixture(scope="module")
def sweep_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("sweep") / "tiny.toml"
    path.write_text(SWEEP, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def serial(sweep_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("serial")
    table, meta = run_sweep(load_sweep(sweep_file), out, jobs=1, show_progress=False)
    return out, table, meta


def test_table_has_one_row_per_point_with_knobs_metrics_and_verdict(serial):
    out, table, meta = serial
    assert table.height == 8 and meta["points"] == 8 and meta["computed"] == 8
    assert table.get_column("point").to_list() == list(range(8))
    assert_frame_equal(pl.read_parquet(out / "sweep.parquet"), table)
    ok = table.filter(pl.col("status") == "ok")
    assert ok.height == 6
    # Instance counts from the knobs reach the replay: chips = prefill x 16 + decode x 160 on CloudMatrix384.
    cm = ok.filter(pl.col("label") == "cloudmatrix384")
    assert (cm.get_column("chips") == cm.get_column("knob:prefill_instances") * 16 + 160).all()
    # The verdict agrees with the p99 columns and the SLO.
    for r in ok.iter_rows(named=True):
        assert r["meets_slo"] == (r["slo_ttft_s"] <= 0.5 and r["slo_tpot_ms"] <= 50.0
                                  and r["requests_rejected"] <= 0.01 * r["requests_total"])
    # A decode batch cap of 1 per chip must not be faster than 96 (same prefill count).
    cap = cm.filter(pl.col("knob:prefill_instances") == 2).sort("knob:batch_cap")
    assert cap.get_column("tpot_ms_p99")[0] >= cap.get_column("tpot_ms_p99")[1] * 0.999 or \
        cap.get_column("e2e_s_p99")[0] >= cap.get_column("e2e_s_p99")[1]


def test_failed_points_are_recorded_and_the_sweep_goes_on(serial):
    out, table, meta = serial
    failed = table.filter(pl.col("status") == "failed")
    assert failed.height == 2 and meta["failed"] == 2
    assert all("ep" in e for e in failed.get_column("error").to_list())
    assert failed.get_column("output_tokens_per_s_per_chip").null_count() == 2
    assert not failed.get_column("meets_slo").any()


def test_resume_recomputes_nothing_and_finishes_a_killed_sweep(serial, sweep_file, tmp_path):
    out, table, _ = serial
    sweep = load_sweep(sweep_file)
    stamps = {p: p.stat().st_mtime_ns for p in (out / "points").glob("*.json")}
    again, meta = run_sweep(sweep, out, jobs=1, show_progress=False, report=False)
    assert meta["computed"] == 0 and meta["reused"] == 8
    assert {p: p.stat().st_mtime_ns for p in (out / "points").glob("*.json")} == stamps
    assert_frame_equal(again, table)
    # A sweep killed after 3 points: only the other 5 run on resume, and the table is the same.
    partial = tmp_path / "partial"
    (partial / "points").mkdir(parents=True)
    for p in expand(sweep)[:3]:
        (partial / "points" / f"{p['id']}.json").write_bytes((out / "points" / f"{p['id']}.json").read_bytes())
    (partial / "points" / ".x.json.part").write_text("{ half a file")   # an interrupted atomic write
    resumed, meta = run_sweep(sweep, partial, jobs=1, show_progress=False, report=False)
    assert meta["computed"] == 5 and meta["reused"] == 3
    assert_frame_equal(resumed, table)
    # --retry-failed reruns exactly the failed points.
    _, meta = run_sweep(sweep, partial, jobs=1, show_progress=False, report=False, retry_failed=True)
    assert meta["computed"] == 2


def test_two_local_workers_give_the_same_table(serial, sweep_file, tmp_path):
    _, table, _ = serial
    parallel, meta = run_sweep(load_sweep(sweep_file), tmp_path, jobs=2, show_progress=False, report=False)
    assert meta["computed"] == 8
    assert_frame_equal(parallel, table)


def test_ray_gives_the_same_table(serial, sweep_file, tmp_path):
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'cmbench[ray]')")
    _, table, _ = serial
    try:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    except Exception as exc:  # e.g. no shared memory in a sandbox
        pytest.skip(f"cannot start a local Ray cluster here: {exc}")
    try:
        on_ray, meta = run_sweep(load_sweep(sweep_file), tmp_path, executor="ray", jobs=2, show_progress=False,
                                 report=False)
    finally:
        ray.shutdown()
    assert meta["computed"] == 8 and meta["executor"] == "ray"
    assert_frame_equal(on_ray, table)


def test_report_shows_best_points_pareto_and_failures(serial):
    out, table, _ = serial
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "Best point per backend under the SLO" in html and "Pareto" in html
    figures = json.loads(html.split('<script type="application/json" id="figures">')[1].split("</script>")[0])
    pareto = [f for f in figures if "pareto-tpot" in f["id"]][0]
    plotted = sum(len(t["x"]) for t in pareto["data"] if t["mode"] == "markers")
    assert plotted == table.filter(pl.col("status") == "ok").height
    # Heat map over the two knobs of the cloudmatrix384 backend.
    assert any("heat" in f["id"] for f in figures)
    assert "does not divide" in html or "ep" in html
    # Metric columns read with units; each head's title names its sweep.parquet column.
    assert '<th title="tpot_ms_p99">p99 TPOT (ms)</th>' in html and ">output_tokens_per_s_per_chip<" not in html


def test_cli_sweep_prints_a_summary_and_json(serial, sweep_file):
    out, _, _ = serial
    result = CliRunner().invoke(__import__("harness.cli", fromlist=["main"]).main,
                                ["sweep", str(sweep_file), "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    assert "8 points (0 run, 8 reused, 2 failed" in result.output
    result = CliRunner().invoke(__import__("harness.cli", fromlist=["main"]).main,
                                ["sweep", str(sweep_file), "--out", str(out), "--json", "--no-report"])
    assert json.loads(result.output)["reused"] == 8


def test_bundled_example_sweep_files_load():
    examples = Path(__file__).resolve().parents[1] / "models" / "sweeps"
    files = sorted(examples.glob("*.toml"))
    assert files
    for f in files:
        assert expand(load_sweep(f))
    assert os.path.getsize(files[0]) > 0


def test_a_worker_running_other_code_refuses_the_point(sweep_file):
    from harness.sweep.worker import run_point
    point = dict(expand(load_sweep(sweep_file))[0], harness="digest of some other checkout")
    record = run_point(point)
    assert record["status"] == "failed" and "changed since this sweep started" in record["error"]
    assert record["transient"]   # never saved to the store, so the point runs again next time


def test_heat_map_axes_order_quantities_by_value():
    """A knob swept over "50 GB/s" ... "196 GB/s" reads left to right by bandwidth, not as text."""
    from harness.sweep.report import _sort_key
    values = ["135 GB/s", "196 GB/s", "50 GB/s", "98 GB/s", "1 TB/s"]
    assert sorted(values, key=_sort_key) == ["50 GB/s", "98 GB/s", "135 GB/s", "196 GB/s", "1 TB/s"]
    assert sorted(["b", 2, "a", 1.5], key=_sort_key) == [1.5, 2, "a", "b"]


def test_best_point_is_the_cheapest_deployment_then_the_one_with_most_slo_headroom():
    """At a fixed offered load, $ per token of equal-size deployments differs by drain time only: it must not pick
    the winner over a deployment that costs less per hour or keeps more headroom under the SLO."""
    from harness.sweep.report import best_per_backend
    table = pl.DataFrame({
        "label": ["cm"] * 4, "point": [0, 1, 2, 3], "meets_slo": [True, True, True, False],
        "cost_per_hour_usd": [460.8, 460.8, 500.0, 100.0], "slo_margin": [0.10, 0.40, 0.90, -0.2],
        "cost_per_million_output_tokens": [3.40, 3.50, 2.0, 1.0]})
    assert best_per_backend(table)[0]["row"]["point"] == 1
    assert best_per_backend(table.filter(pl.col("point") != 1))[0]["row"]["point"] == 0
    assert best_per_backend(table.filter(pl.col("point") == 3))[0]["row"] is None


def test_a_point_beyond_the_chip_bound_fails_instead_of_running_for_hours(tmp_path, monkeypatch):
    """`bench replay` refuses more than 1,000,000 chips per backend; a sweep point's prefill_instances (or a huge
    prefill_per_decode) went straight to the simulator and ran for hours."""
    import harness.sweep.worker as worker

    def must_not_run(*args, **kwargs):
        raise AssertionError("the point was simulated")

    monkeypatch.setattr(worker, "run_backend", must_not_run)
    (tmp_path / "t.csv").write_text("arrival_s,input_tokens,output_tokens\n0,10,5\n1,20,5\n", encoding="utf-8")
    path = tmp_path / "big.toml"
    path.write_text('name = "big"\n[trace]\npath = "t.csv"\n[grid]\nprefill_per_decode = [1e7]\n'
                    '[[backend]]\nbackend = "cloudmatrix384"\n', encoding="utf-8")
    table, meta = run_sweep(load_sweep(path), tmp_path / "out", jobs=1, show_progress=False, report=False)
    assert meta["failed"] == 1
    error = table.get_column("error")[0]
    assert "cloudmatrix384 would have 160,000,160 chips; a backend may have at most 1,000,000" in error, error
