"""Bad op traces and rule files: one clear line naming file, event and field; exit code 2; no output file."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from harness.cli import main

FIXTURE = Path(__file__).parent / "fixtures" / "ops" / "two_streams.json"
KERNEL = {"ph": "X", "cat": "kernel", "name": "gemm", "pid": 0, "tid": 7, "ts": 10, "dur": 5,
          "args": {"stream": 7, "correlation": 1}}


def _run(path: Path, *extra: str):
    out = path.parent / "result.json"
    res = CliRunner().invoke(main, ["ops", "replay", str(path), "--out", str(out), *extra])
    return res, out


def _write(tmp_path: Path, events, name="t.json") -> Path:
    p = tmp_path / name
    p.write_text(json.dumps({"traceEvents": events}))
    return p


@pytest.mark.parametrize("event, needle", [
    ({k: v for k, v in KERNEL.items() if k != "ph"}, "event 1: field 'ph': missing"),
    ({k: v for k, v in KERNEL.items() if k != "ts"}, "event 1: field 'ts': missing"),
    ({k: v for k, v in KERNEL.items() if k != "dur"}, "event 1: field 'dur': missing"),
    ({**KERNEL, "dur": -3}, "event 1: field 'dur': negative duration"),
    ({**KERNEL, "ph": "Z"}, "event 1: field 'ph': unknown phase 'Z'"),
    ({**KERNEL, "ts": "soon"}, "event 1: field 'ts': must be a number"),
    ("not an object", "event 1: event is not a JSON object"),
    ({**KERNEL, "ph": ["X"]}, "event 1: field 'ph': must be a string, got ['X']"),
    ({**KERNEL, "args": [1, 2]}, "event 1: field 'args': must be a JSON object, got [1, 2]"),
    ({**KERNEL, "args": {"stream": 7, "correlation": "abc"}}, "event 1: field 'args.correlation': must be an "
     "integer, got 'abc'"),
    ({**KERNEL, "args": {"stream": 7, "bytes": "many"}}, "event 1: field 'args.bytes': must be a number, got 'many'"),
    ({**KERNEL, "args": {"stream": 7, "In msg nelems": [4]}}, "event 1: field 'args.In msg nelems': must be a number"),
    ({**KERNEL, "args": {"stream": 7, "Group size": 2.5}}, "event 1: field 'args.Group size': must be an integer"),
    ({**KERNEL, "args": {"stream": 7, "blocks per SM": "x"}}, "event 1: field 'args.blocks per SM': must be a number"),
    ({**KERNEL, "args": {"stream": 7, "External id": "q"}}, "event 1: field 'args.External id': must be an integer"),
    ({"ph": "X", "cat": "cuda_sync", "ts": 1, "dur": 0, "args": {"cuda_sync_kind": "Stream Wait Event",
      "stream": 7, "wait_on_stream": 8, "wait_on_cuda_event_record_corr_id": "abc"}},
     "event 1: field 'args.wait_on_cuda_event_record_corr_id': must be an integer, got 'abc'"),
    ({**KERNEL, "ts": -1.7e308}, "event 1: field 'ts': must be a number of magnitude at most 1e+17, got -1.7e+308"),
    ({**KERNEL, "dur": 1e300}, "event 1: field 'dur': must be a number of magnitude at most 1e+17, got 1e+300"),
])
def test_bad_events(tmp_path, event, needle):
    path = _write(tmp_path, [KERNEL, event])
    res, out = _run(path)
    assert res.exit_code == 2
    assert res.output.startswith(f"error: {path}: {needle}")
    assert str(path) in res.output and res.output.count("\n") == 1
    assert "Traceback" not in res.output and not out.exists()


_ANY_JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=3),
                         lambda inner: st.lists(inner, max_size=2) | st.dictionaries(st.text(max_size=2), inner,
                                                                                     max_size=2), max_leaves=4)


@given(st.sampled_from(["correlation", "stream", "device", "bytes", "In msg nelems", "dtype", "Group size",
                        "External id", "blocks per SM", "Collective name"]), _ANY_JSON,
       st.sampled_from(["kernel", "gpu_memcpy", "cuda_runtime", "cuda_sync", "cpu_op"]))
def test_hostile_args_give_exit_0_or_2(tmp_path_factory, key, value, cat):
    event = {**KERNEL, "cat": cat, "name": "aten::mm", "args": {**KERNEL["args"], key: value, "Input Dims": value,
                                                              "cuda_sync_kind": "Stream Wait Event",
                                                              "wait_on_stream": value,
                                                              "wait_on_cuda_event_record_corr_id": value}}
    path = _write(tmp_path_factory.mktemp("h"), [KERNEL, event])
    res = CliRunner().invoke(main, ["ops", "replay", str(path), "--json"])
    assert res.exit_code in (0, 2), res.output
    assert res.exception is None or isinstance(res.exception, SystemExit)


def test_no_gpu_kernels(tmp_path):
    path = _write(tmp_path, [{"ph": "X", "cat": "cpu_op", "name": "aten::mm", "ts": 1, "dur": 2}])
    res, _ = _run(path)
    assert res.exit_code == 2 and "no GPU kernels" in res.output


def test_malformed_json_names_last_good_event(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('{"traceEvents": [' + json.dumps(KERNEL) + ", {\"ph\": \"X\", ")
    res, out = _run(path)
    assert res.exit_code == 2 and not out.exists()
    assert res.output == f"error: {path}: malformed JSON after event 0: parse error: premature EOF\n"
    path.write_bytes(b'{"traceEvents": [{"ph": "X", "name": "caf\xe9"}]}')
    res, out = _run(path)
    assert res.output == f"error: {path}: malformed JSON before the first event: lexical error: invalid bytes in " \
        "UTF8 string.\n"


def test_truncated_gzip(tmp_path):
    blob = gzip.compress(FIXTURE.read_bytes())
    path = tmp_path / "cut.json.gz"
    path.write_bytes(blob[: len(blob) // 2])
    res, out = _run(path)
    assert res.exit_code == 2 and "truncated or corrupt gzip" in res.output and str(path) in res.output
    assert "Traceback" not in res.output and not out.exists()


def test_missing_file(tmp_path):
    res, _ = _run(tmp_path / "nope.json")
    assert res.exit_code == 2 and "file not found" in res.output


def test_bad_rule_file(tmp_path):
    rules = tmp_path / "r.toml"
    rules.write_text('[[rule]]\ncategory = "gemm"\npattern = "("\n')
    res, _ = _run(FIXTURE.parent / FIXTURE.name, "--rules", str(rules))
    assert res.exit_code == 2 and "rule 1: field 'pattern': bad regular expression" in res.output
    rules.write_text('[[rule]]\ncategory = "matmul"\npattern = "x"\n')
    res, _ = _run(FIXTURE, "--rules", str(rules))
    assert res.exit_code == 2 and "field 'category'" in res.output
    rules.write_text("rule = 5\n")
    res, _ = _run(FIXTURE, "--rules", str(rules))
    assert res.exit_code == 2 and "field 'rule': 'rule' must be an array of tables" in res.output, res.output


def test_user_rules_override_and_classify_unknown_kernel(tmp_path):
    rules = tmp_path / "r.toml"
    rules.write_text('[[rule]]\ncategory = "elementwise"\npattern = "my_custom"\n')
    res = CliRunner().invoke(main, ["ops", "replay", str(FIXTURE), "--rules", str(rules), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["classification"]["unclassified"] == []


@given(st.binary(max_size=200))
def test_hostile_bytes_never_traceback(tmp_path_factory, blob):
    path = tmp_path_factory.mktemp("h") / "x.json"
    path.write_bytes(blob)
    res = CliRunner().invoke(main, ["ops", "replay", str(path), "--json"])
    assert res.exit_code == 2, res.output
    assert res.exception is None or isinstance(res.exception, SystemExit)


@given(st.lists(st.fixed_dictionaries({
    "ph": st.sampled_from(["X", "i", "s", "f", "M", "Q", 3]),
    "cat": st.sampled_from(["kernel", "cpu_op", "cuda_runtime", "gpu_memcpy"]),
    "ts": st.one_of(st.integers(-5, 100), st.floats(allow_nan=False, allow_infinity=False), st.none()),
    "dur": st.one_of(st.integers(-5, 100), st.none(), st.text(max_size=2)),
}), max_size=6))
def test_hostile_events_give_exit_0_or_2(tmp_path_factory, events):
    path = tmp_path_factory.mktemp("h") / "x.json"
    path.write_text(json.dumps({"traceEvents": [{k: v for k, v in e.items() if v is not None} for e in events]}))
    res = CliRunner().invoke(main, ["ops", "replay", str(path), "--json"])
    assert res.exit_code in (0, 2), res.output
    assert res.exception is None or isinstance(res.exception, SystemExit)


DEEP = 2000  # past the guard (100) and past json's recursion limit (1000)


@pytest.mark.parametrize("text", [
    '{"traceEvents": [' + "[" * DEEP + "]" * DEEP + "]}",  # Kineto: ijson's path strings grew quadratically
    '{"traceEvents": [{"ph": "X", "args": ' + '{"a": ' * DEEP + "1" + "}" * DEEP + "}]}",
    '{"workload_graph": [{"Id": 1, "x": ' + "[" * DEEP + "]" * DEEP + "}]}",  # Chakra: RecursionError
    '{"format": "cmbench-op-trace", "version": 1, "ops": ' + "[" * DEEP + "]" * DEEP + "}",  # native
])
def test_deep_nesting_is_one_line(tmp_path, text):
    path = tmp_path / "deep.json"
    path.write_text(text)
    res, out = _run(path)
    assert res.exit_code == 2 and res.output == f"error: {path}: nesting deeper than 100 levels of [ and {{ " \
        "(no trace nests that deep)\n", res.output
    assert not out.exists()


def _depth(value) -> int:
    if isinstance(value, dict):
        return 1 + max(map(_depth, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(_depth, value), default=0)
    return 0


_JSON = st.recursive(st.none() | st.integers() | st.text(alphabet='"\\[]{}ab'),
                     lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(alphabet='"\\[{a'), inner,
                                                                                 max_size=3), max_leaves=30)


@given(_JSON, st.lists(st.integers(1, 7), min_size=1, max_size=20))
def test_depth_guard_counts_brackets_outside_strings(value, cuts):
    """Brackets and escaped quotes inside strings, and strings split across reads anywhere, do not fool it."""
    from harness import jsonfile
    from harness.errors import InputError

    blob = json.dumps(value).encode()
    for limit in {_depth(value), max(_depth(value) - 1, 0)}:
        guard, pos, refused = jsonfile.DepthGuard("x"), 0, False
        try:
            with pytest.MonkeyPatch.context() as mp:
                mp.setattr(jsonfile, "MAX_DEPTH", limit)
                while pos < len(blob):
                    step = cuts[pos % len(cuts)]
                    guard.feed(blob[pos:pos + step])
                    pos += step
        except InputError:
            refused = True
        assert refused == (limit < _depth(value))


def _chakra(tmp_path, *changes) -> Path:
    nodes = [{"Id": 1, "Name": "gemm_1", "NodeType": 4, "runtime": 10, "data_deps": [], "is_cpu_op": False},
             {"Id": 2, "Name": "gemm_2", "NodeType": 4, "runtime": 10, "data_deps": [1], "is_cpu_op": False}]
    for i, change in changes:
        nodes[i].update(change)
    path = tmp_path / "chakra.json"
    path.write_text(json.dumps({"workload_graph": nodes}))
    return path


@pytest.mark.parametrize("changes, needle", [
    ([(1, {"data_deps": 1})], "node 1 (Id 2): field 'data_deps': must be a list of node Ids, got 1"),
    ([(1, {"data_deps": None})], "node 1 (Id 2): field 'data_deps': must be a list of node Ids, got None"),
    ([(1, {"ctrlDeps": [[1]]})], "node 1 (Id 2): field 'ctrlDeps': must be a list of node Ids, got [[1]]"),
    ([(1, {"data_deps": [2]})], "node 1 (Id 2): field 'data_deps': depends on itself"),
    ([(1, {"Id": 1})], "node 1: field 'Id': Id 1 is also node 0's"),
    ([(0, {"Id": [1]})], "node 0: field 'Id': must be an integer, got [1]"),
    ([(1, {"Id": "b"})], "node 1: field 'Id': must be an integer, got 'b'"),
    ([(0, {"is_cpu_op": "false"})], "node 0: field 'is_cpu_op': must be true or false, got 'false'"),
    ([(0, {"runtime": 1e300})], "node 0: field 'runtime': must be a number from 0 to 1e+17 (microseconds)"),
    ([(0, {"data_deps": [2]})], "node Id 1: field 'deps': dependencies form a cycle"),
])
def test_bad_chakra_nodes(tmp_path, changes, needle):
    path = _chakra(tmp_path, *changes)
    res, out = _run(path)
    assert res.exit_code == 2 and res.output.startswith(f"error: {path}: {needle}"), res.output
    assert res.output.count("\n") == 1 and not out.exists()


def test_chakra_deps_on_missing_nodes_are_dropped_and_counted(tmp_path):
    """A Chakra file cut out of a larger trace keeps deps on nodes left behind: they are dropped with a warning
    and a count in the result, the edges inside the file kept."""
    path = _chakra(tmp_path, (0, {"ctrlDeps": [99]}), (1, {"data_deps": [1, 98], "ctrlDeps": [99]}))
    res, out = _run(path, "--json")
    assert res.exit_code == 0, res.output
    assert f"warning: {path}: dropped 3 dependencies on node Ids not in the file" in res.output
    result = json.loads(out.read_text())
    assert result["trace"]["dangling_deps"] == 3
    assert result["replayed"]["span_s"] == pytest.approx(20e-6)  # gemm_2 still waits for gemm_1


@pytest.mark.parametrize("blob, needle", [
    (b'{"workload_graph": [{"Id": 1, "Name": "caf\xe9", "NodeType": 4}]}', "not UTF-8 text"),
    (b'{"workload_graph": [{"Id": 1, "Name": "k", "NodeType": 4, "runtime": Infinity}]}',
     "line 1: Infinity is not a finite number"),
])
def test_chakra_bytes_and_numbers(tmp_path, blob, needle):
    path = tmp_path / "chakra.json"
    path.write_bytes(blob)
    res, out = _run(path)
    assert res.exit_code == 2 and res.output == f"error: {path}: {needle}\n" and not out.exists()


CONVERT = "not supported: convert it with Chakra's tools to Chakra JSON ({\"workload_graph\": [...]})"


@pytest.mark.parametrize("name, blob, message", [
    ("et.json", b'{"schema": "1.0.2-chakra.0.0.4", "pid": 1, "nodes": [{"id": 2, "name": "x"}]}',
     f"a PyTorch host execution trace (JSON with 'nodes' and 'schema', schema 1.0.2-chakra.0.0.4), {CONVERT}"),
    ("chakra.0.et", b'^\x12\x10\n\x06schema\xea\x01\x051.0.1\x12\t\n\x03pid',
     f"a Chakra execution trace in protobuf (.et), {CONVERT}"),
    ("g.json", b'{"format": "cmbench-op-trace", "version": 1, "ops": []}', "field 'ops': no ops (the list is empty)"),
])
def test_unsupported_or_empty_op_traces_say_what_they_are(tmp_path, name, blob, message):
    """Chakra's host-trace and protobuf encodings were 'no trace events' / 'not a Chrome trace'; an empty native op
    list replayed as a 0 ms span."""
    path = tmp_path / name
    path.write_bytes(blob)
    res, out = _run(path)
    assert res.exit_code == 2 and res.output == f"error: {path}: {message}\n" and not out.exists()


@pytest.mark.parametrize("option", ["--source", "--target"])
def test_an_unknown_hardware_names_its_option(option):
    res = CliRunner().invoke(main, ["ops", "replay", str(FIXTURE), option, "nope"])
    assert res.exit_code == 2 and res.output.startswith(f"error: field '{option}': unknown hardware 'nope' "), res.output


def test_a_failing_report_leaves_no_result_file(tmp_path, monkeypatch):
    from harness.errors import InputError
    from harness.report import render

    def broken(results):
        raise InputError("cannot render")

    monkeypatch.setattr(render, "render_html", broken)
    out, report = tmp_path / "o.json", tmp_path / "r.html"
    res = CliRunner().invoke(main, ["ops", "replay", str(FIXTURE), "--out", str(out), "--report", str(report)])
    assert res.exit_code == 2 and "cannot render" in res.output
    assert not out.exists() and not report.exists()


def test_export_refuses_an_absurd_batch_and_non_finite_graphs(tmp_path):
    from harness.errors import InputError
    from harness.ops.graph import Op, OpGraph
    from harness.ops.native import save_native

    out = tmp_path / "g.json"
    res = CliRunner().invoke(main, ["ops", "export", "--deployment", "h800-decode", "--batch", "1e300",
                                    "--out", str(out)])
    assert res.exit_code == 2 and "--batch" in res.output and not out.exists()
    with pytest.raises(InputError, match="non-finite"):
        save_native(OpGraph([Op("k", "7", float("nan"))]), out)
    assert not out.exists()
    # an export bench ops replay would refuse (times beyond 1e17 us) is not written either
    res = CliRunner().invoke(main, ["ops", "export", "--deployment", "cm384-prefill", "--prompt-len", "1" + "0" * 17,
                                    "--out", str(out)])
    assert res.exit_code == 2 and "beyond the 1e+17 us an op trace may hold; not written" in res.output, res.output
    assert not out.exists()


def test_native_deps_written_as_whole_floats_are_op_ids(tmp_path):
    """JSON Schema's integers include 1.0, so `"deps": [1.0]` passes validation; it was then a list index and a
    TypeError traceback. It names op 1, as `1` would."""
    ops = [{"id": 0, "name": "a", "category": "gemm", "stream": "s", "duration_us": 1.5, "deps": [1.0]},
           {"id": 1, "name": "b", "category": "gemm", "stream": "t", "duration_us": 2}]
    path = tmp_path / "g.json"
    path.write_text(json.dumps({"format": "cmbench-op-trace", "version": 1, "ops": ops}))
    res, out = _run(path, "--json")
    assert res.exit_code == 0 and "Traceback" not in res.output, res.output
    assert json.loads(out.read_text())["replayed"]["span_s"] == pytest.approx(3.5e-6)   # b, then a after it


@pytest.mark.parametrize("change, needle", [
    ({"duration_us": 1e308}, "op 1: field 'duration_us': 1e+308 is greater than the maximum of 1e+17"),
    ({"start_us": 1e300}, "op 1: field 'start_us': 1e+300 is greater than the maximum of 1e+17"),
    ({"release": 1e300}, "meta release_us 1: field 'release_us': must be a number of magnitude at most 1e+17"),
])
def test_native_times_beyond_any_trace_are_refused_like_kinetos(tmp_path, change, needle):
    """Kineto events refuse times beyond 1e17 us; native ops took 1e308 and printed 300-digit spans, or failed
    --identity on their own rounding."""
    ops = [{"id": 0, "name": "a", "category": "gemm", "stream": "s", "duration_us": 1.5, "start_us": 0},
           {"id": 1, "name": "b", "category": "gemm", "stream": "s", "duration_us": 2, "start_us": 2}]
    ops[1].update({k: v for k, v in change.items() if k != "release"})
    doc = {"format": "cmbench-op-trace", "version": 1, "ops": ops}
    if "release" in change:
        doc["meta"] = {"release_us": [0, change["release"]]}
    path = tmp_path / "g.json"
    path.write_text(json.dumps(doc))
    res, out = _run(path)
    assert res.exit_code == 2 and res.output.startswith(f"error: {path}: {needle}"), res.output
    assert not out.exists()


def test_a_work_table_without_re_timing_is_refused_not_ignored(tmp_path):
    """--work only prices ops for --source/--target; without them any value, even a table that does not exist, was
    accepted and silently unused."""
    trace = tmp_path / "t.json"
    trace.write_bytes(FIXTURE.read_bytes())
    res, out = _run(trace, "--work", "no-such-table")
    assert res.exit_code == 2 and not out.exists(), res.output
    assert res.output == "error: field '--work': a work table prices ops for re-timing; add --source or --target\n"
    res, out = _run(trace, "--work", "none")
    assert res.exit_code == 0 and out.exists(), res.output
