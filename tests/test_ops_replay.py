"""DAG replay properties, native-format round trips, and the replay command's JSON result."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from harness.cli import main
from harness.errors import InputError
from harness.ops.graph import CATEGORIES, Op, OpGraph
from harness.ops.load import load_op_trace
from harness.ops.native import from_dict, load_native, save_native, to_dict
from harness.ops.replay import busy_union_s, replay

FIXTURE = Path(__file__).parent / "fixtures" / "ops" / "two_streams.json"


@st.composite
def dags(draw, with_starts: bool = False) -> OpGraph:
    n = draw(st.integers(1, 30))
    streams = draw(st.integers(1, 4))
    ops = []
    for i in range(n):
        deps = draw(st.lists(st.integers(0, i - 1), max_size=3, unique=True)) if i else []
        ops.append(Op(name=f"k{i}", stream=str(draw(st.integers(0, streams - 1))),
                      duration_s=draw(st.floats(0, 1e-3, allow_nan=False)),
                      category=draw(st.sampled_from(CATEGORIES)), deps=deps,
                      flops=draw(st.sampled_from([0.0, 1e9])), annotation=draw(st.sampled_from(["", "attn(F)"])),
                      gemm=draw(st.none() | st.tuples(st.floats(0, 1e5), st.floats(1, 1e5), st.floats(1, 1e5),
                                                      st.integers(1, 64).map(float))),
                      precision=draw(st.sampled_from([None, "bf16", "fp8", "int8"])),
                      rows=draw(st.none() | st.floats(0, 1e6)), kernel=draw(st.sampled_from([None, "norm", "rope"])),
                      moe=draw(st.none() | st.fixed_dictionaries(
                          {"tokens": st.floats(0, 1e4), "ep": st.integers(1, 512),
                           "kernel": st.sampled_from(["low_latency", "bulk"])},
                          optional={"shared_expert_messages": st.booleans()}))))
    if with_starts:
        for op in ops:
            op.start_s = draw(st.floats(0, 1e-2, allow_nan=False))
    return OpGraph(ops, {"format": "native"})


@given(dags())
def test_span_between_longest_stream_and_sum_of_durations(graph):
    tl = replay(graph)
    dur = np.array([op.duration_s for op in graph.ops])
    streams = np.array([op.stream for op in graph.ops])
    longest_stream = max(dur[streams == s].sum() for s in set(streams))
    assert longest_stream - 1e-12 <= tl.span_s <= dur.sum() + 1e-12


@given(dags())
def test_replay_respects_every_dependency_and_stream_order(graph):
    tl = replay(graph)
    last: dict[str, int] = {}
    for i, op in enumerate(graph.ops):
        for d in op.deps + ([last[op.stream]] if op.stream in last else []):
            assert tl.start_s[i] >= tl.end_s[d] - 1e-15
        last[op.stream] = i
    # The critical path ends at the last-finishing op and is a chain of binding predecessors.
    assert tl.end_s[tl.critical_path[-1]] == pytest.approx(tl.end_s.max())


@given(dags(with_starts=True))
def test_native_round_trip_preserves_the_graph(graph):
    back = from_dict(json.loads(json.dumps(to_dict(graph))), "mem")
    assert len(back.ops) == len(graph.ops)
    for a, b in zip(graph.ops, back.ops):
        assert (a.name, a.stream, a.category, sorted(a.deps), a.flops, a.annotation) == \
               (b.name, b.stream, b.category, sorted(b.deps), b.flops, b.annotation)
        assert (a.gemm, a.precision, a.rows, a.kernel, a.moe) == (b.gemm, b.precision, b.rows, b.kernel, b.moe)
        assert b.duration_s == pytest.approx(a.duration_s, abs=1e-15)
        assert b.start_s == pytest.approx(a.start_s, abs=1e-15)
    assert replay(back).span_s == pytest.approx(replay(graph).span_s, abs=1e-12)


def test_kineto_to_native_file_round_trip_replays_identically(tmp_path):
    g = load_op_trace(FIXTURE)
    path = tmp_path / "g.optrace.json"
    save_native(g, path)
    back = load_op_trace(path)
    assert back.meta["format"] == "kineto" and [o.category for o in back.ops] == [o.category for o in g.ops]
    assert [o.deps for o in back.ops] == [o.deps for o in g.ops]
    r1 = json.loads(CliRunner().invoke(main, ["ops", "replay", str(FIXTURE), "--json"]).output)
    r2 = json.loads(CliRunner().invoke(main, ["ops", "replay", str(path), "--json"]).output)
    assert r2["identity"]["replayed_span_s"] == pytest.approx(r1["identity"]["replayed_span_s"])


@pytest.mark.parametrize("mutate, needle", [
    (lambda d: d["ops"][1].update(duration_us=-1), "op 1: field 'duration_us'"),
    (lambda d: d["ops"][1].update(duration_us=float("nan")), "NaN is not a finite number"),
    (lambda d: d["ops"][1].update(flops=float("inf")), "Infinity is not a finite number"),
    (lambda d: d["ops"][0].update(category="matmul"), "op 0: field 'category'"),
    (lambda d: d["ops"][2].update(deps=[99]), "op 2: field 'deps': refers to unknown"),
    (lambda d: d["ops"][1].update(id=5), "op 1: field 'id'"),
    (lambda d: d.update(format="other"), "format"),
    (lambda d: d["ops"][1].update(gemm={"m": -1, "n": 7168, "k": 2048}), "op 1: field 'gemm'"),
    (lambda d: d["ops"][1].update(gemm={"m": 64, "n": 7168}), "op 1: field 'gemm'"),
    (lambda d: d["ops"][1].update(moe={"tokens": 128, "kernel": "bulk"}), "op 1: field 'moe'"),
    (lambda d: d["ops"][1].update(precision="fp4"), "op 1: field 'precision'"),
    (lambda d: d["ops"][1].update(kernel="softmax"), "op 1: field 'kernel'"),
])
def test_native_bad_input(tmp_path, mutate, needle):
    data = to_dict(load_op_trace(FIXTURE))
    mutate(data)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(InputError, match=needle):
        load_native(path)


def test_native_cycle_is_reported(tmp_path):
    data = to_dict(OpGraph([Op("a", "0", 1e-6), Op("b", "1", 1e-6, deps=[0])]))
    data["ops"][0]["deps"] = [1]
    path = tmp_path / "cyc.json"
    path.write_text(json.dumps(data))
    res = CliRunner().invoke(main, ["ops", "replay", str(path)])
    assert res.exit_code == 2 and "cycle" in res.output


def test_busy_union():
    s, e = np.array([0.0, 1.0, 5.0]), np.array([2.0, 3.0, 6.0])
    assert busy_union_s(s, e) == pytest.approx(4.0)


def test_replay_json_result_keys(tmp_path):
    out = tmp_path / "r.json"
    res = CliRunner().invoke(main, ["ops", "replay", str(FIXTURE), "--identity", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert f"wrote {out}" in res.output          # says where the result went, as every writing command does
    r = json.loads(out.read_text())
    assert r["identity"]["within_1pct"] and r["identity"]["recorded_span_s"] == pytest.approx(905e-6)
    rec = r["recorded"]
    assert rec["per_category_s"]["gemm"] == pytest.approx(300e-6)
    assert rec["critical_path"]["op_list"][-1]["category"] == "moe_dispatch"
    assert len(r["timelines"]["recorded"]["start_s"]) == 6
    assert 0 <= rec["overlap_ratio"] <= 1 and 0 <= rec["comm_overlap_ratio"] <= 1


def test_replay_json_matches_the_report_schema(repo_root):
    import jsonschema

    schema = json.loads((repo_root / "harness" / "report" / "schemas" / "ops.schema.json").read_text())
    r = json.loads(CliRunner().invoke(main, ["ops", "replay", str(FIXTURE), "--json"]).output)
    jsonschema.validate(r, schema)
    assert r["timelines"]["recorded"]["category"][0] == "attention"


def test_names_from_inputs_print_as_they_are(tmp_path):
    """Terminal output is not markup: a kernel or file name with `[red]` or `[/x]` in it prints verbatim (rich
    would drop the first and raise on the second)."""
    d = json.loads(FIXTURE.read_text())
    kernel = next(e for e in d["traceEvents"] if e.get("cat") == "kernel")
    kernel["name"] = "mystery[/x]kernel[bold]"
    path = tmp_path / "[red]trace.json"
    path.write_text(json.dumps(d))
    res = CliRunner().invoke(main, ["ops", "replay", str(path)])
    assert res.exit_code == 0, res.output
    assert "[red]trace.json" in res.output and "mystery[/x]kernel[bold]" in res.output


def test_a_native_trace_named_gz_is_written_and_read_gzipped(tmp_path):
    g = load_op_trace(FIXTURE)
    path = tmp_path / "g.optrace.json.gz"
    save_native(g, path)
    assert path.read_bytes()[:2] == b"\x1f\x8b"
    back = load_op_trace(path)
    assert [(o.name, o.deps) for o in back.ops] == [(o.name, o.deps) for o in g.ops]
    assert [o.duration_s for o in back.ops] == pytest.approx([o.duration_s for o in g.ops], rel=1e-12)
    path.write_bytes(path.read_bytes()[:40])  # truncated: one line, no traceback
    with pytest.raises(InputError, match="g.optrace.json.gz"):
        load_op_trace(path)


def test_replay_output_names_what_it_prints(tmp_path):
    """The overlap row says what it computes, the recording's critical path says it is the identity replay's, and
    --target alone warns once, with a count, that the ops it cannot price keep their recorded time."""
    out = tmp_path / "r.json"
    res = CliRunner().invoke(main, ["ops", "replay", str(FIXTURE), "--target", "h100-ib", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "op time hidden by overlap" in res.output and "overlap ratio" not in res.output
    assert "(summed op time - busy time) / summed op time" in res.output
    assert "critical path (identity replay of the recording):" in res.output
    assert "critical path (recorded)" not in res.output
    warnings = [line for line in res.output.splitlines() if line.startswith("warning:")]
    # attention, gemm, dispatch and norm have no work in the fixture; 'other' and the unknown kernel never do
    assert warnings == [next(w for w in warnings if "--target without --source: 5 of 6 ops the target cannot "
                                                  "price" in w)]
    assert "keep their recorded time" in warnings[0]
    res = CliRunner().invoke(main, ["ops", "replay", str(FIXTURE), "--target", "h100-ib", "--source", "h100-ib"])
    assert res.exit_code == 0 and "warning:" not in res.output


def test_overlap_is_never_negative(tmp_path):
    """One op after another: nothing overlaps, but the union of [0.1, 0.1 + 0.2) s rounds above 0.2 s; it printed
    -0.0%."""
    events = [{"ph": "X", "cat": "kernel", "name": "gemm_a", "pid": 0, "tid": 7, "ts": 0, "dur": 1,
               "args": {"stream": 7, "correlation": 1}},
              {"ph": "X", "cat": "kernel", "name": "gemm_b", "pid": 0, "tid": 7, "ts": 100000, "dur": 200000,
               "args": {"stream": 7, "correlation": 2}}]
    path = tmp_path / "t.json"
    path.write_text(json.dumps({"traceEvents": events}))
    out = tmp_path / "r.json"
    res = CliRunner().invoke(main, ["ops", "replay", str(path), "--out", str(out)])
    assert res.exit_code == 0 and "-0.0%" not in res.output
    assert json.loads(out.read_text())["recorded"]["overlap_ratio"] == 0.0


def test_retiming_an_exported_graph_on_its_own_hardware_notes_the_core_share(tmp_path):
    graph = tmp_path / "g.json"
    res = CliRunner().invoke(main, ["ops", "export", "--deployment", "cm384-decode", "--out", str(graph)])
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(main, ["ops", "replay", str(graph), "--target", "cloudmatrix384"])
    assert res.exit_code == 0, res.output
    notes = [line for line in res.output.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and "the target gets the whole chip" in notes[0] and "core share" in notes[0]
    res = CliRunner().invoke(main, ["ops", "replay", str(graph), "--target", "h100-ib"])
    assert "note:" not in res.output
