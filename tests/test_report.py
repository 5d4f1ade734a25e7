"""The report model and HTML: numbers equal the saved results, bad inputs fail clearly, hostile text stays text."""

from __future__ import annotations

import json
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from harness.cli import main
from harness.errors import InputError
from harness.report import load_results, render_html, render_report
from harness.report.ops_model import merge_intervals
from harness.report.replay_model import HEADLINE, relative_diff, replay_model
from harness.report.series import bucket_mean, cdf_points, sample_indices
from harness.report.validation import by_table, fit_summary

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_report_sample import write_sample_results  # noqa: E402

HOSTILE = '<script>alert(1)</script><img src=x onerror="window.__pwned=1">'


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_sample_results(tmp_path_factory.mktemp("rep") / "run", n_requests=300)


@pytest.fixture(scope="module")
def html(results: Path) -> str:
    return render_html([load_results(results)])


class _Cells(HTMLParser):
    """Collects, per headline row (data-metric), the data-value of each cell; and the text of <h1>."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: dict[str, list[str]] = {}
        self._row: str | None = None
        self.h1 = ""
        self._in_h1 = False
        self.scripts = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "tr":
            self._row = a.get("data-metric")
            if self._row is not None:
                self.rows[self._row] = []
        elif tag == "td" and self._row is not None and "data-value" in a:
            self.rows[self._row].append(a["data-value"] or "")
        elif tag == "h1":
            self._in_h1 = True
        elif tag == "script":
            self.scripts += 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "h1":
            self._in_h1 = False
        if tag == "tr":
            self._row = None

    def handle_data(self, data: str) -> None:
        if self._in_h1:
            self.h1 += data


def _summaries(results: Path) -> list[dict]:
    run = json.loads((results / "run.json").read_text())
    return [json.loads((results / label / "summary.json").read_text()) for label in run["backends"]]


def _get(doc: dict, key: tuple[str, ...]):
    for k in key:
        doc = doc.get(k) if isinstance(doc, dict) else None
    return doc


def _shown(summaries: list[dict]) -> list:
    """The headline metrics a report shows: all but optional ones no backend has."""
    return [m for m in HEADLINE if not m.optional or any(_get(s, m.key) is not None for s in summaries)]


def test_headline_model_equals_summary_json(results: Path) -> None:
    model = replay_model(load_results(results))
    summaries = _summaries(results)
    rows = {r["metric"]: r for r in model["headline"]["rows"]}
    for metric in _shown(summaries):
        expected = [_get(s, metric.key) for s in summaries]
        assert rows[metric.label]["by_backend"] == expected, metric.label
        if metric.unit == "frac":  # shares differ in percentage points, not relatively
            assert rows[metric.label]["rel"] == [v - expected[0] for v in expected[1:]]
        elif metric.unit != "verdict":
            assert rows[metric.label]["rel"] == [relative_diff(v, expected[0]) for v in expected[1:]]
    assert model["rejections"]["totals"] == [s["requests_rejected"] for s in summaries]
    for row in model["rejections"]["rows"]:
        assert row["counts"] == [s["rejected_by_reason"].get(row["reason"], 0) for s in summaries]


def test_html_table_cells_carry_the_exact_summary_values(results: Path, html: str) -> None:
    cells = _Cells()
    cells.feed(html)
    summaries = _summaries(results)
    assert set(cells.rows) == {m.label for m in _shown(summaries)}
    for metric in _shown(summaries):
        shown = cells.rows[metric.label][: len(summaries)]
        assert [json.loads(v) for v in shown] == [_get(s, metric.key) for s in summaries], metric.label


def test_header_names_trace_backends_slo_seed_and_version(html: str) -> None:
    for expected in ("azure-conv", "cloudmatrix384", "h100-ib", "EP32", "int8", "≤ 2 s", "≤ 50 ms", "cmbench 0.1.0",
                     "2025-06-01T12:00:00Z", "context too long", "kv capacity"):
        assert expected in html


def test_report_is_a_pure_function_of_the_results(results: Path, tmp_path: Path) -> None:
    a = render_report([results], tmp_path / "a.html").read_bytes()
    b = render_report([results], tmp_path / "b.html").read_bytes()
    assert a == b


def test_no_network_references(html: str) -> None:
    # Only plotly's own bundled code may mention URLs; the page itself loads nothing.
    head, _, _ = html.partition('<script type="application/octet-stream"')
    assert "http://" not in head and "https://" not in head
    assert " src=" not in head and "<link" not in head


def test_hostile_names_render_as_text(tmp_path: Path) -> None:
    results = write_sample_results(tmp_path / "run", n_requests=60, trace_name=HOSTILE,
                                   labels=["cm", HOSTILE.replace("/", "|")])
    page = render_html([load_results(results)])
    cells = _Cells()
    cells.feed(page)
    assert cells.scripts == 3  # figures JSON, packed plotly, loader: ours only
    assert cells.h1 == f"Replay: {HOSTILE}"
    assert "<img" not in page and "onerror=\"window" not in page


@given(name=st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=40))
def test_any_trace_name_is_shown_verbatim_and_never_becomes_markup(tmp_path_factory, name: str) -> None:
    results = _shared_small(tmp_path_factory)
    run = json.loads((results / "run.json").read_text())
    run["trace"]["name"] = name
    (results / "run.json").write_text(json.dumps(run))
    cells = _Cells()
    cells.feed(render_html([load_results(results)]))
    assert cells.scripts == 3
    assert cells.h1 == f"Replay: {name}"


_SMALL: dict[str, Path] = {}


def _shared_small(factory: pytest.TempPathFactory) -> Path:
    if "p" not in _SMALL:
        _SMALL["p"] = write_sample_results(factory.mktemp("small") / "run", n_requests=30)
    return _SMALL["p"]


def test_twenty_thousand_request_comparison_fits_in_five_megabytes(tmp_path: Path) -> None:
    results = write_sample_results(tmp_path / "run", n_requests=20_000)
    out = render_report([results], tmp_path / "big.html")
    assert out.stat().st_size < 5_000_000


# --- bad input: one clear line naming file and field, exit 2, no output file --------------------------------------

def _bench(*args: str):
    return CliRunner().invoke(main, list(args))


def test_cli_writes_report(results: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.html"
    res = _bench("report", str(results), "-o", str(out))
    assert res.exit_code == 0, res.output
    assert out.is_file() and "wrote" in res.output


@pytest.mark.parametrize("damage, expect", [
    (lambda d: (d / "run.json").write_text("{\n  \"seed\": 1,\n  oops\n}"), ["run.json", "line 3", "not valid JSON"]),
    (lambda d: _edit(d / "run.json", lambda j: j["trace"].pop("requests")), ["run.json", "field 'trace.requests'"]),
    (lambda d: _edit(d / "run.json", lambda j: j.update(seed="seven")), ["run.json", "field 'seed'"]),
    (lambda d: _edit(d / "cloudmatrix384" / "summary.json", lambda j: j["ttft_s"].pop("p99")),
     ["summary.json", "field 'ttft_s.p99'", "missing"]),
    (lambda d: _edit(d / "h100-ib" / "summary.json", lambda j: j.update(chips=-3)), ["summary.json", "field 'chips'"]),
    (lambda d: pl.read_parquet(d / "h100-ib" / "requests.parquet").drop("ttft_s")
     .write_parquet(d / "h100-ib" / "requests.parquet"), ["requests.parquet", "field 'ttft_s'", "column missing"]),
    (lambda d: (d / "h100-ib" / "timeseries.parquet").write_bytes(b"not parquet"), ["timeseries.parquet", "Parquet"]),
    (lambda d: _edit(d / "run.json", lambda j: j.update(backends=["nope"])), ["run.json", "field 'backends'", "'nope'"]),
])
def test_bad_results_folder_is_one_clear_error(tmp_path: Path, damage, expect: list[str]) -> None:
    results = write_sample_results(tmp_path / "run", n_requests=20)
    damage(results)
    out = tmp_path / "r.html"
    res = _bench("report", str(results), "-o", str(out))
    assert res.exit_code == 2, res.output
    line = res.output.strip()
    assert line.startswith("error: ") and "\n" not in line and "Traceback" not in line
    for e in expect:
        assert e in line, (e, line)
    assert not out.exists() and list(tmp_path.glob("*.part")) == []


def _edit(path: Path, change) -> None:
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc))


@pytest.mark.parametrize("content, expect", [
    ('{"hello": 1}', "not a results file"),
    ("[]", "should be non-empty"),
    ('[{"id": "a", "published": 1, "predicted": 2, "unit": "s", "error_pct": 100},\n {"id": "b", "published": 1}]',
     "row 1: field 'predicted': missing"),
    ('[{"id": "a", "published": "x", "predicted": 2, "unit": "s", "error_pct": 1}]', "row 0: field 'published'"),
    ('{"trace": {"ops": 1, "streams": ["7"]}, "timelines": {"recorded": {"stream": ["7"], "start_s": [0, 1], '
     '"end_s": [1]}}}', "field 'timelines.recorded'"),
    ("", "not valid JSON"),
    ('[{"id": "a", "published": 1,\n  "predicted": NaN, "unit": "s", "error_pct": 1}]', "line 2: NaN is not a finite"),
    ('[{"id": "a", "published": Infinity, "predicted": 2, "unit": "s", "error_pct": 1}]', "Infinity is not a finite"),
    ('[{"id": "a", "published": 1e400, "predicted": 2, "unit": "s", "error_pct": 1}]', "1e400 is not a finite"),
])
def test_bad_or_unknown_json_is_one_clear_error(tmp_path: Path, content: str, expect: str) -> None:
    bad = tmp_path / "r.json"
    bad.write_text(content)
    res = _bench("report", str(bad), "-o", str(tmp_path / "r.html"))
    assert res.exit_code == 2
    assert expect in res.output and str(bad) in res.output
    assert not (tmp_path / "r.html").exists()


def test_folder_without_run_json_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no run.json"):
        load_results(tmp_path)


# --- kinds detected from content ----------------------------------------------------------------------------------

def test_kind_detection(results: Path, tmp_path: Path) -> None:
    val = tmp_path / "v.json"
    val.write_text(json.dumps([{"id": "x", "published": 10.0, "predicted": 11.0, "unit": "ms", "error_pct": 10.0}]))
    ops = tmp_path / "o.txt"  # the name says nothing; the content does
    ops.write_text(json.dumps({"trace": {"path": "t.json", "ops": 2, "streams": ["7"]},
                               "timelines": {"recorded": {"op": [0, 1], "stream": ["7", "7"], "start_s": [0.0, 1e-3],
                                                          "end_s": [1e-3, 3e-3]}}}))
    assert [load_results(p).kind for p in (results, results / "run.json", val, ops)] == \
        ["replay", "replay", "validation", "ops"]


# --- validation and op-trace sections -----------------------------------------------------------------------------

def test_validation_section_shows_rows_and_fit(tmp_path: Path) -> None:
    rows = [{"id": "decode", "published": 1943.0, "predicted": 1800.0, "unit": "tok/s", "error_pct": -7.36,
             "source": "paper §5"},
            {"id": HOSTILE, "published": 50.0, "predicted": 65.0, "unit": "ms", "error_pct": 30.0, "source": "x"}]
    val = tmp_path / "v.json"
    val.write_text(json.dumps(rows))
    page = render_html([load_results(val)])
    assert "-7.4%" in page and "+30.0%" in page and "paper §5" in page
    assert "<img" not in page
    s = fit_summary([-7.36, 30.0, None])
    assert s["rows"] == 3 and s["rows_with_error"] == 2
    assert s["mean_abs_error_pct"] == pytest.approx(18.68)
    assert s["max_abs_error_pct"] == 30.0 and s["within_10_pct"] == 0.5


_ROW_IDS = st.lists(st.sampled_from(["moe.cm384-ub", "gemm.h100", "e2e.cm384"]), min_size=1, max_size=30)


@given(_ROW_IDS, st.data())
def test_by_table_accounts_for_every_row_once(tables: list[str], data) -> None:
    rows = [{"id": f"{t}.r{i}", "error_pct": data.draw(st.one_of(st.none(), st.floats(-90, 90))),
             "ok": data.draw(st.booleans()), "kind": "held-out operator"} for i, t in enumerate(tables)]
    groups = by_table(rows)
    assert [g["table"] for g in groups] == list(dict.fromkeys(tables))   # first-seen order, one line each
    assert sum(g["rows"] for g in groups) == len(rows)
    for g in groups:
        mine = [r for r in rows if r["id"].startswith(g["table"] + ".")]
        assert g["rows"] == len(mine) and g["within_tolerance"] == sum(r["ok"] for r in mine)
        errs = [abs(r["error_pct"]) for r in mine if r["error_pct"] is not None]
        if errs:
            assert g["max_abs_error_pct"] == max(errs) and g["mean_abs_error_pct"] <= g["max_abs_error_pct"]
            assert abs(next(r for r in mine if r["id"] == g["worst_id"])["error_pct"]) == max(errs)
        else:
            assert g["worst_id"] is None and "max_abs_error_pct" not in g


def test_validation_rows_show_tolerance_as_one_readable_column(tmp_path: Path) -> None:
    """`bench validate`'s tolerance_pct and ok read as 'within ±10%' / 'outside ±5%', not as raw fields."""
    rows = [{"id": "a.b.c", "published": 1.0, "predicted": 1.05, "unit": "us", "error_pct": 5.0,
             "tolerance_pct": 10.0, "ok": True},
            {"id": "a.b.d", "published": 1.0, "predicted": 1.2, "unit": "us", "error_pct": 20.0,
             "tolerance_pct": 5.0, "ok": False},
            {"id": "a.b.e", "published": 1.0, "predicted": 1.0, "unit": "us", "error_pct": 0.0}]
    val = tmp_path / "v.json"
    val.write_text(json.dumps(rows))
    page = render_html([load_results(val)])
    table = page[page.index("<h3>Rows</h3>"):]
    assert "within ±10%" in table and "outside ±5%" in table
    assert "tolerance_pct" not in table and ">True<" not in table and ">False<" not in table


def test_validation_section_shows_a_line_per_table(tmp_path: Path) -> None:
    rows = [{"id": "moe.cm384-ub.dispatch.ep8", "published": 116.0, "predicted": 120.0, "unit": "us",
             "error_pct": 3.45, "ok": True},
            {"id": "moe.cm384-ub.combine.ep8", "published": 118.0, "predicted": 90.0, "unit": "us",
             "error_pct": -23.7, "ok": False},
            {"id": f"e2e.{HOSTILE}", "published": 50.0, "predicted": 65.0, "unit": "ms", "error_pct": 30.0}]
    val = tmp_path / "v.json"
    val.write_text(json.dumps(rows))
    page = render_html([load_results(val)])
    table = page[page.index("<h3>By table</h3>"):page.index("<h3>Rows</h3>")]
    assert "moe.cm384-ub" in table and 'data-value="23.7"' in table and "moe.cm384-ub.combine.ep8" in table
    assert HOSTILE not in page and "&lt;script&gt;" in table


def test_ops_section_from_a_real_kineto_trace(shared_data: Path, tmp_path: Path) -> None:
    from harness.ops.analysis import analyse
    from harness.ops.load import load_op_trace

    trace = shared_data / "hta-kineto-samples" / "timeline_analysis__sampled_rank-0.json.gz"
    doc = analyse(load_op_trace(str(trace), "auto", ()), None, None)
    path = tmp_path / "ops.json"
    path.write_text(json.dumps(doc))
    page = render_html([load_results(path)])
    assert "timeline_analysis__sampled_rank-0.json.gz" in page
    for cat, seconds in doc["recorded"]["per_category_s"].items():
        assert f'data-value="{json.dumps(seconds * 1e3)}"' in page, cat


def test_ops_section_shows_the_edges_a_result_has_and_names_its_measures(tmp_path: Path) -> None:
    """The card read `idle_anchor_edges`, which no result has; the overlap column and the recording's critical path
    are named for what they are."""
    from harness.ops.analysis import analyse
    from harness.ops.load import load_op_trace

    doc = analyse(load_op_trace(Path(__file__).parent / "fixtures" / "ops" / "two_streams.json"), None, None)
    doc["trace"].update(sm_edges=3, inferred_wait_edges=4)
    doc["recorded"]["overlap_ratio"] = -1e-17  # a result saved before overlap was clamped at 0
    path = tmp_path / "ops.json"
    path.write_text(json.dumps(doc))
    page = render_html([load_results(path)])
    assert "<dt>SM-capacity edges</dt><dd>3</dd>" in page and "<dt>inferred-wait edges</dt><dd>4</dd>" in page
    assert "op time hidden by overlap" in page and "-0.0%" not in page
    assert "critical path (identity replay of the recording)" in page


# --- downsampling keeps what the plots show -----------------------------------------------------------------------

@given(st.lists(st.floats(0, 1e6, allow_nan=False), min_size=1, max_size=3000), st.integers(2, 500))
def test_cdf_points_bounded_monotone_and_exact_at_the_ends(values: list[float], k: int) -> None:
    x, y = cdf_points(np.array(values), max_points=k)
    assert len(x) == len(y) == min(len(values), k)
    assert np.all(np.diff(x) >= 0) and np.all(np.diff(y) >= 0)
    assert x[0] == min(values) and x[-1] == max(values) and y[-1] == 1.0


@given(st.integers(0, 100_000), st.integers(2, 3000))
def test_sample_indices_bounded_sorted_and_cover_both_ends(n: int, k: int) -> None:
    idx = sample_indices(n, k)
    assert len(idx) == min(n, k)
    assert np.all(np.diff(idx) > 0)
    if n:
        assert idx[0] == 0 and idx[-1] == n - 1


def test_bucket_mean_keeps_the_mean_of_each_group() -> None:
    frame = pl.DataFrame({"t_s": np.arange(1000.0), "v": np.arange(1000.0) * 2})
    small = bucket_mean(frame, max_rows=100)
    assert small.height == 100
    assert small.get_column("v").mean() == pytest.approx(frame.get_column("v").mean())


@given(st.lists(st.tuples(st.floats(0, 100), st.floats(0, 10)), min_size=1, max_size=60))
def test_merge_intervals_is_the_union(intervals: list[tuple[float, float]]) -> None:
    s = np.array([a for a, _ in intervals])
    e = s + np.array([d for _, d in intervals])
    ms, me = merge_intervals(s, e, 0.0)
    assert np.all(ms[1:] > me[:-1])  # disjoint and sorted
    grid = np.linspace(0, 111, 2221)
    inside = ((grid[:, None] >= s) & (grid[:, None] < e)).any(axis=1)
    merged = ((grid[:, None] >= ms) & (grid[:, None] < me)).any(axis=1)
    assert np.array_equal(inside, merged)


@given(st.floats(-1e9, 1e9), st.floats(-1e9, 1e9))
def test_relative_diff(value: float, base: float) -> None:
    r = relative_diff(value, base)
    if base == 0:
        assert r is None
    elif r is None:  # only when the ratio overflows a float
        assert abs(value - base) / abs(base) == float("inf")
    else:
        assert r * abs(base) + base == pytest.approx(value, rel=1e-9, abs=1e-6)
    assert relative_diff(None, base) is None
