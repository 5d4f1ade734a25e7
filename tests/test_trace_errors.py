"""Bad input: each case gives one InputError line naming file, line/row and field, and what is wrong."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner

from harness.cli import main
from harness.errors import InputError
from harness.trace import load_trace

AZURE = "TIMESTAMP,ContextTokens,GeneratedTokens\n"
NATIVE = "arrival_s,input_tokens,output_tokens\n"


def _moon(**fields) -> str:
    record = {"timestamp": 0, "input_length": 600, "output_length": 5, "hash_ids": [0, 1], **fields}
    return json.dumps(record) + "\n"


CASES = {
    # name: (file name, content, expected fragments of the message)
    "unknown format": ("a.csv", "foo,bar\n1,2\n", ["line 1", "unknown trace format", "--format"]),
    "empty file": ("e.csv", "", ["empty file"]),
    "blank file": ("e.jsonl", "\n\n  \n", ["empty file"]),
    "header only": ("h.csv", AZURE, ["no requests"]),
    "missing column": ("m.csv", "arrival_s,input_tokens\n0,5\n", ["field 'output_tokens'", "missing required"]),
    "misspelt column": ("s.csv", "TIMESTAMP,ContxtTokens,GeneratedTokens\n2023-11-16 18:15:46.68,3,4\n",
                        ["field 'ContextTokens'", "'ContxtTokens': misspelt"]),
    "misspelt optional column": ("o.csv", "arrival_s,input_tokens,output_tokens,sesion_id\n0,1,1,a\n",
                                 ["field 'sesion_id'", "did you mean 'session_id'"]),
    "non-numeric length": ("n.csv", AZURE + "2023-11-16 18:15:46.68,3,4\n2023-11-16 18:15:47.00,abc,4\n",
                           ["line 3", "field 'ContextTokens'", "not an integer: 'abc'"]),
    "fractional length": ("f.csv", NATIVE + "0,1.5,3\n", ["line 2", "field 'input_tokens'", "not an integer"]),
    "negative length": ("g.csv", NATIVE + "0,10,3\n1,-5,3\n", ["line 3", "field 'input_tokens'", "negative (-5)"]),
    "NaN length": ("nan.csv", NATIVE + "0,nan,3\n", ["line 2", "field 'input_tokens'", "not an integer: 'nan'"]),
    "NaN arrival": ("nan2.csv", NATIVE + "nan,1,3\n", ["line 2", "field 'arrival_s'", "not a finite number"]),
    "NaN in JSON": ("nan.jsonl", '{"arrival_s": NaN, "input_tokens": 1, "output_tokens": 1}\n',
                    ["line 1", "not a finite number"]),
    "missing value": ("mv.csv", NATIVE + "0,1,3\n1,,3\n", ["line 3", "field 'input_tokens'", "missing value"]),
    "zero output native": ("z.csv", NATIVE + "0,10,0\n", ["line 2", "field 'output_tokens'", "zero"]),
    "zero output mooncake": ("z.jsonl", _moon() + _moon(output_length=0),
                             ["line 2", "field 'output_length'", "zero"]),
    "zero output azure": ("z2.csv", AZURE + "2023-11-16 18:15:46.68,3,0\n", ["line 2", "field 'GeneratedTokens'"]),
    "truncated JSON line": ("t.jsonl", _moon() + _moon()[:30], ["line 2", "not valid JSON"]),
    "wrong JSON type": ("w.jsonl", _moon() + _moon(hash_ids=[0, "x"]), ["line 2", "field 'hash_ids'", "'x'"]),
    "string length in JSON": ("w2.jsonl", _moon() + _moon(input_length="many"),
                              ["line 2", "field 'input_length'", "'many'"]),
    "not an object": ("arr.jsonl", _moon() + "[1, 2]\n", ["line 2", "is not of type 'object'"]),
    "integer beyond int64 in JSON": ("big.jsonl", '{"arrival_s": 0, "input_tokens": 1, "output_tokens": 1}\n'
                                     '{"arrival_s": 1, "input_tokens": 100000000000000000000000, "output_tokens": 1}\n',
                                     ["line 2", "field 'input_tokens'", "too large"]),
    "float beyond int64 in JSON": ("bigf.jsonl", '{"arrival_s": 0, "input_tokens": 1e30, "output_tokens": 1}\n',
                                   ["line 1", "field 'input_tokens'", "too large"]),
    "too long": ("l.csv", NATIVE + "0,20000000,5\n", ["line 2", "field 'input_tokens'", "larger than any model"]),
    "too long together": ("l2.csv", NATIVE + "0,9000000,2000000\n", ["line 2", "exceed", "context"]),
    "bad timestamp": ("b.csv", AZURE + "2023-11-16 18:15:46.68,3,4\nyesterday,3,4\n",
                      ["line 3", "field 'TIMESTAMP'", "'yesterday'"]),
    "negative arrival": ("na.csv", NATIVE + "-1,1,1\n", ["line 2", "field 'arrival_s'", "negative"]),
    "ragged line": ("r.csv", NATIVE + "0,1,1\n1,2,3,4\n", ["line 3", "expected 3 comma-separated fields, found 4"]),
    "duplicate id": ("d.csv", "request_id," + NATIVE + "a,0,1,1\na,1,1,1\n", ["line 3", "duplicate id 'a'"]),
    "blocks without size": ("bs.jsonl", '{"arrival_s": 0, "input_tokens": 5, "output_tokens": 1, '
                            '"prefix_blocks": [1]}\n', ["field 'block_size'", "required"]),
    "too many blocks": ("tm.csv", "arrival_s,input_tokens,output_tokens,prefix_blocks,block_size\n0,10,1,1 2,16\n",
                        ["line 2", "field 'prefix_blocks'", "exceed"]),
    "bad block list": ("bl.csv", "arrival_s,input_tokens,output_tokens,prefix_blocks,block_size\n0,10,1,1 x,16\n",
                       ["line 2", "field 'prefix_blocks'", "space-separated integers"]),
    "burstgpt total": ("bg.csv", "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n"
                       "5,ChatGPT,472,18,491,Conversation log\n", ["line 2", "field 'Total tokens'"]),
    # read as UTF-8, the columns were garbled: 'unknown trace format: columns [\ufffd\ufffda\x00r\x00...'
    "UTF-16": ("u16.csv", NATIVE.encode("utf-16") + "0,1,1\n".encode("utf-16-le"), ["UTF-16 or UTF-32 text",
                                                                                      "save it as UTF-8"]),
    "JSON array": ("arr.json", '[{"arrival_s": 0, "input_tokens": 5, "output_tokens": 3},\n'
                   ' {"arrival_s": 1, "input_tokens": 5, "output_tokens": 3}]\n', ["a JSON array, not JSON Lines"]),
    # the first of the two was used silently
    "column twice": ("twice.csv", "arrival_s,input_tokens,output_tokens,input_tokens\n0,1,1,500\n",
                     ["line 1", "field 'input_tokens'", "column given twice in the header"]),
    "mooncake in CSV": ("mc.csv", "timestamp,input_length,output_length,hash_ids\n0,1,1,0\n",
                        ["columns are those of a mooncake trace", "jsonl, but this file is csv"]),
}


def _write(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_names_file_line_and_field(tmp_path, case):
    name, content, fragments = CASES[case]
    path = _write(tmp_path, name, content)
    with pytest.raises(InputError) as info:
        load_trace(path)
    message = str(info.value)
    assert message.startswith(str(path)), message
    for fragment in fragments:
        assert fragment in message, message
    assert "\n" not in message


@pytest.mark.parametrize("case", ["non-numeric length", "truncated JSON line", "misspelt column", "empty file"])
def test_cli_bad_input_is_one_line_exit_2_and_no_output_file(tmp_path, case):
    name, content, fragments = CASES[case]
    path = _write(tmp_path, name, content)
    dest = tmp_path / "out.parquet"
    result = CliRunner().invoke(main, ["trace", "convert", str(path), str(dest)])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {path}"), result.output
    assert "Traceback" not in result.output
    assert not dest.exists() and list(tmp_path.iterdir()) == [path]


def test_broken_gzip_stream(tmp_path):
    packed = gzip.compress((NATIVE + "0,1,1\n" * 500).encode())
    path = _write(tmp_path, "x.csv.gz", packed[: len(packed) // 2])
    with pytest.raises(InputError, match="broken gzip stream"):
        load_trace(path)


def test_corrupt_parquet(tmp_path):
    path = _write(tmp_path, "x.parquet", b"PAR1" + b"\x00garbage" * 20)
    with pytest.raises(InputError, match="not a readable Parquet file"):
        load_trace(path)


def test_parquet_unsigned_length_beyond_int64_names_the_row(tmp_path):
    path = tmp_path / "u.parquet"
    pl.DataFrame({"arrival_s": [0.0, 1.0], "input_tokens": pl.Series([5, 2**63 + 5], dtype=pl.UInt64),
                  "output_tokens": [1, 1]}).write_parquet(path)
    with pytest.raises(InputError, match=r"row 2: field 'input_tokens': too large"):
        load_trace(path)


def test_parquet_nan_length_names_the_row(tmp_path):
    pl.DataFrame({"arrival_s": [0.0, 1.0], "input_tokens": [5.0, float("nan")], "output_tokens": [1, 1]}).write_parquet(
        tmp_path / "n.parquet")
    with pytest.raises(InputError, match=r"row 2: field 'input_tokens': not an integer: nan"):
        load_trace(tmp_path / "n.parquet")


def test_unknown_format_name_and_wrong_container(tmp_path):
    path = _write(tmp_path, "a.csv", NATIVE + "0,1,1\n")
    with pytest.raises(InputError, match="unknown format 'splitwise'"):
        load_trace(path, "splitwise")
    with pytest.raises(InputError, match="--format mooncake reads jsonl files, but this file is csv"):
        load_trace(path, "mooncake")
    azure_lines = _write(tmp_path, "a.jsonl", '{"TIMESTAMP": "2023-11-16 18:15:46", "ContextTokens": 3, '
                                              '"GeneratedTokens": 4}\n')
    with pytest.raises(InputError, match="the columns are those of an azure trace, which is csv, but this file is "
                                         "jsonl"):
        load_trace(azure_lines)


def test_missing_file_lists_bundled_names(tmp_path):
    with pytest.raises(InputError, match="not a bundled trace .*azure-conv"):
        load_trace(tmp_path / "nope.csv")


def test_decreasing_timestamps_sorted_with_a_count_or_rejected_when_strict(tmp_path):
    path = _write(tmp_path, "d.csv", "request_id," + NATIVE + "a,5,1,1\nb,3,1,1\nc,3,2,1\nd,9,1,1\ne,1,1,1\n")
    workload = load_trace(path)
    # Stable: b and c share a time and keep their file order.
    assert workload.requests["request_id"].to_list() == ["e", "b", "c", "a", "d"]
    assert workload.requests["arrival_s"].to_list() == [0.0, 2.0, 2.0, 4.0, 8.0]
    assert workload.notes == ("sorted 3 rows whose timestamps go backwards (first at line 3)",)
    with pytest.raises(InputError, match=r"line 3: field 'arrival_s': arrives before an earlier row \(3 rows"):
        load_trace(path, strict=True)


def test_cli_warns_about_sorting_on_stderr(tmp_path):
    path = _write(tmp_path, "d.csv", NATIVE + "5,1,1\n3,1,1\n")
    result = CliRunner().invoke(main, ["trace", "info", str(path), "--json"])
    assert result.exit_code == 0
    assert "warning:" in result.stderr and "sorted 1 rows" in result.stderr
    assert json.loads(result.stdout)["requests"] == 2
    strict = CliRunner().invoke(main, ["trace", "info", str(path), "--strict"])
    assert strict.exit_code == 2 and "line 3" in strict.output


def test_a_tar_archive_is_named_and_points_at_servegen_synthesis(tmp_path):
    import io
    import tarfile

    from click.testing import CliRunner

    from harness.cli import main

    archive = tmp_path / "stats.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        payload = b"0,1.5,1.0,Gamma,1,1\n"
        info = tarfile.TarInfo("data/reason/x/chunk-1-trace.csv")
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    result = CliRunner().invoke(main, ["trace", "info", str(archive)])
    assert result.exit_code == 2
    assert "tar archive" in result.output and "--servegen" in result.output and "Traceback" not in result.output


@pytest.mark.parametrize("arrivals, fragment", [
    # a subnormal span: the rate, and the goodput over it, overflow (a traceback writing summary.json)
    (["0", "1e-320"], "too short for a request rate"),
    # beyond 1e9 s a float's step outgrows a step time: latencies came out as 0
    (["0", "1e17"], "more than 1e+09 s"),
    (["0", "1.7e308"], "more than 1e+09 s"),
])
def test_arrival_spans_the_simulator_cannot_keep_are_named(tmp_path, arrivals, fragment):
    path = _write(tmp_path, "s.csv", NATIVE + "".join(f"{a},10,5\n" for a in arrivals))
    with pytest.raises(InputError) as info:
        load_trace(path)
    assert str(info.value).startswith(f"{path}: field 'arrival_s': the arrivals span ") and fragment in str(info.value)
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["replay", str(path), "--backend", "cloudmatrix384", "--quiet",
                                       "--out", str(out)])
    assert result.exit_code == 2 and "Traceback" not in result.output and fragment in result.output, result.output
    assert not out.exists()


@pytest.mark.parametrize("args, fragment", [
    (["trace", "info", "{trace}", "--time-scale", "1e-320"], "field '--time-scale': the arrivals span 2e-320 s"),
    (["trace", "info", "{trace}", "--time-scale", "6e8"], "field '--time-scale': the arrivals span 1.2e+09 s"),
    (["trace", "info", "{trace}", "--rate", "1e-20"], "field '--rate': the arrivals span 3e+20 s"),
    (["replay", "{trace}", "--time-scale", "1e-320", "--quiet", "--out", "{out}"], "field '--time-scale'"),
    (["trace", "synth", "{out}", "--requests", "100", "--rate", "1e-9"], "field '--rate': the arrivals span"),
    (["trace", "synth", "{out}", "--duration", "1e12", "--rate", "1e-10"], "field '--duration': the arrivals span"),
])
def test_shaping_or_synthesis_beyond_the_span_limits_is_refused(tmp_path, args, fragment):
    trace = _write(tmp_path, "t.csv", NATIVE + "0,10,5\n1,20,5\n2,30,5\n")
    out = tmp_path / "out.csv"
    result = CliRunner().invoke(main, [a.format(trace=trace, out=out) for a in args])
    assert result.exit_code == 2 and fragment in result.output and "Traceback" not in result.output, result.output
    assert not out.exists()


@pytest.mark.parametrize("column, values, message", [
    ("tenant", [[1], [2]], "field 'tenant': has type List(Int64), expected string"),
    ("model", [{"a": 1}, {"a": 2}], "field 'model': has type Struct({'a': Int64}), expected string"),
    ("tenant", [b"\xff\xfe", b"a"], "field 'tenant': has type Binary and cannot be read as text"),
    ("session_id", pl.Series([1, 2]).cast(pl.Duration), "field 'session_id': has type Duration"),
])
def test_parquet_label_columns_that_are_not_text_are_named(tmp_path, column, values, message):
    """A Parquet list, bytes that are not UTF-8 or a duration in a label column was a polars traceback (a struct
    was read as its printed form)."""
    path = tmp_path / "l.parquet"
    pl.DataFrame({"arrival_s": [0.0, 1.0], "input_tokens": [1, 2], "output_tokens": [1, 1],
                  column: values}).write_parquet(path)
    with pytest.raises(InputError) as info:
        load_trace(path)
    assert str(info.value).startswith(f"{path}: {message}"), str(info.value)


def test_parquet_labels_in_utf8_bytes_or_numbers_still_load(tmp_path):
    path = tmp_path / "l.parquet"
    pl.DataFrame({"arrival_s": [0.0, 1.0], "input_tokens": [1, 2], "output_tokens": [1, 1],
                  "tenant": [b"ok", b"a"], "session_id": [1, 2]}).write_parquet(path)
    requests = load_trace(path).requests
    assert requests["tenant"].to_list() == ["ok", "a"] and requests["session_id"].to_list() == ["1", "2"]


def test_block_ids_beyond_int64_are_named(tmp_path):
    """A Mooncake hash id or a Parquet UInt64 block id beyond int64 was a polars cast traceback."""
    path = _write(tmp_path, "b.jsonl", _moon(hash_ids=[1]) + _moon(hash_ids=[10**23]))
    with pytest.raises(InputError, match=r"line 2: field 'hash_ids': a block id beyond 9,223,372,036,854,775,807: "
                                         r"\[100000000000000000000000\]"):
        load_trace(path)
    pq = tmp_path / "b.parquet"
    pl.DataFrame({"arrival_s": [0.0, 1.0], "input_tokens": [100, 100], "output_tokens": [1, 1], "block_size": [16, 16],
                  "prefix_blocks": pl.Series([[1], [2**64 - 1]], dtype=pl.List(pl.UInt64))}).write_parquet(pq)
    with pytest.raises(InputError, match="row 2: field 'prefix_blocks': a block id beyond"):
        load_trace(pq)


def test_a_missing_block_id_past_the_schema_checked_rows_is_named(tmp_path):
    """jsonschema sees the first rows only; a null id inside row 3,000's list was counted as a block."""
    n = 3000
    pq = tmp_path / "n.parquet"
    pl.DataFrame({"arrival_s": [float(i) for i in range(n)], "input_tokens": [100] * n, "output_tokens": [1] * n,
                  "prefix_blocks": [[1, 2]] * (n - 1) + [[None, None]], "block_size": [16] * n}).write_parquet(pq)
    with pytest.raises(InputError, match="row 3000: field 'prefix_blocks': block ids must be non-negative integers"):
        load_trace(pq)


def test_a_servegen_file_that_is_no_archive_is_one_line(tmp_path):
    """tarfile's 'could not be opened' message lists each compression it tried on its own line."""
    junk = _write(tmp_path, "stats.tar.gz", b"\x00\x01 not an archive " * 40)
    result = CliRunner().invoke(main, ["trace", "synth", str(tmp_path / "o.csv"), "--requests", "5", "--rate", "1",
                                       "--servegen", str(junk)])
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1, result.output
    assert result.output.startswith(f"error: {junk}: not a ServeGen folder or readable tarball (")
    assert not (tmp_path / "o.csv").exists()


def test_a_pipe_or_device_is_named_not_read_twice(tmp_path):
    """A trace is read twice (a sniff of its head, then the parse): a pipe such as /dev/stdin came out as 'empty
    file' although it held requests, /dev/zero as an unknown format whose one column was 4 KB of NULs."""
    import os

    fifo = tmp_path / "t.csv"
    os.mkfifo(fifo)   # opening it for reading would wait for a writer forever
    for path in (Path("/dev/zero"), fifo):
        with pytest.raises(InputError) as info:
            load_trace(path)
        assert str(info.value) == (f"{path}: not a regular file (a pipe or a device); save the trace to a file and "
                                   "give its path")


def test_an_unknown_format_shows_a_printable_stub_of_each_column(tmp_path):
    """A file of NULs or binary without newlines printed its whole first line (up to 64 KB) in the message."""
    path = _write(tmp_path, "b.csv", b"\x00" * 5000 + b",x\n")
    with pytest.raises(InputError) as info:
        load_trace(path)
    assert "columns [" + "?" * 40 + "..., x]" in str(info.value) and len(str(info.value)) < 600
