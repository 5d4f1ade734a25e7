"""Where outputs may go: no command overwrites its own input or another of its outputs, a replay never deletes a
folder that is not its own, and a path the system refuses is one line naming it, not a traceback."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from harness.cli import main

FIXTURES = Path(__file__).parent / "fixtures"
OP_TRACE = FIXTURES / "ops" / "two_streams.json"
TRACE_CSV = "arrival_s,input_tokens,output_tokens\n0,100,10\n0.5,200,20\n1,300,5\n"


def bench(*args: str):
    return CliRunner().invoke(main, list(args))


def refused(result, field: str) -> bool:
    lines = [line for line in result.output.splitlines() if line.strip()]
    return (result.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error:") and field in lines[0]
            and "Traceback" not in result.output)


def test_replay_does_not_replace_a_folder_that_is_not_a_replay_output(tmp_path):
    keep = tmp_path / "notes"
    keep.mkdir()
    (keep / "notes.txt").write_text("mine")
    (keep / "t.csv").write_text(TRACE_CSV)
    result = bench("replay", str(keep / "t.csv"), "--out", str(keep), "--quiet")
    assert refused(result, "--out"), result.output
    assert sorted(p.name for p in keep.iterdir()) == ["notes.txt", "t.csv"]


def test_replay_replaces_its_own_earlier_output_and_keeps_a_report_beside_it(tmp_path):
    trace = tmp_path / "t.csv"
    trace.write_text(TRACE_CSV)
    out = tmp_path / "run"
    for _ in range(2):  # the second run replaces the first one's folder
        result = bench("replay", str(trace), "--out", str(out), "--report", str(out / "report.html"), "--quiet")
        assert result.exit_code == 0, result.output
    assert (out / "run.json").is_file() and (out / "report.html").is_file()


@pytest.mark.parametrize("where", ["cwd", "parent_of_cwd"])
def test_replay_refuses_the_working_folder(tmp_path, monkeypatch, where):
    work = tmp_path / "w"
    work.mkdir()
    (work / "t.csv").write_text(TRACE_CSV)
    monkeypatch.chdir(work)
    result = bench("replay", "t.csv", "--out", "." if where == "cwd" else "..", "--quiet")
    assert refused(result, "--out"), result.output
    assert (work / "t.csv").is_file()


def test_replay_refuses_a_report_that_is_one_of_its_own_files(tmp_path):
    trace = tmp_path / "t.csv"
    trace.write_text(TRACE_CSV)
    result = bench("replay", str(trace), "--out", str(tmp_path / "o"), "--report", str(tmp_path / "o" / "run.json"),
                   "--quiet")
    assert refused(result, "--report"), result.output
    assert not (tmp_path / "o").exists()


def test_output_equal_to_input_is_refused_and_the_input_kept(tmp_path):
    trace = tmp_path / "t.csv"
    trace.write_text(TRACE_CSV)
    assert refused(bench("trace", "convert", str(trace), str(trace)), "DEST")
    assert refused(bench("replay", str(trace), "--out", str(tmp_path / "o"), "--report", str(trace), "--quiet"),
                   "--report")
    assert trace.read_text() == TRACE_CSV
    ops = tmp_path / "ops.json"
    ops.write_bytes(OP_TRACE.read_bytes())
    assert refused(bench("ops", "replay", str(ops), "--out", str(ops)), "--out")
    assert refused(bench("ops", "replay", str(ops), "--out", str(tmp_path / "r.json"),
                         "--report", str(tmp_path / "r.json")), "--report")
    assert ops.read_bytes() == OP_TRACE.read_bytes() and not (tmp_path / "r.json").exists()


def test_report_does_not_write_into_the_results_it_reads(tmp_path):
    trace = tmp_path / "t.csv"
    trace.write_text(TRACE_CSV)
    out = tmp_path / "run"
    assert bench("replay", str(trace), "--out", str(out), "--quiet").exit_code == 0
    before = (out / "run.json").read_text()
    assert refused(bench("report", str(out), "-o", str(out / "run.json")), "--out")
    assert (out / "run.json").read_text() == before
    assert bench("report", str(out), "-o", str(out / "report.html")).exit_code == 0


@pytest.mark.parametrize("command", [
    lambda d: ("trace", "convert", "azure-conv", f"{d}/o.csv", "--limit", "5"),
    lambda d: ("ops", "export", "--deployment", "cm384-decode", "--batch", "8", "--kv-len", "512", "--out", f"{d}/o.json"),
    lambda d: ("ops", "replay", str(OP_TRACE), "--out", f"{d}/o.json"),
    lambda d: ("replay", "azure-conv", "--limit", "5", "--quiet", "--out", f"{d}/o"),
])
def test_an_output_below_a_file_is_one_line_naming_it(tmp_path, command):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    result = bench(*command(str(blocker / "sub")))
    assert refused(result, "is a file, not a folder"), result.output
    assert blocker.read_text() == "x"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere: an unwritable folder cannot be made")
def test_an_unwritable_folder_is_one_line_naming_the_path(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        result = bench("trace", "convert", "azure-conv", str(locked / "o.csv"), "--limit", "5")
        assert refused(result, str(locked / "o.csv")), result.output
    finally:
        locked.chmod(0o700)


BUNDLED = Path(__file__).parent.parent / "traces" / "azure_conv_2023.csv.gz"


@pytest.mark.parametrize("args", [
    ("trace", "convert", "azure-conv", str(BUNDLED)),  # the input given by its short name
    ("trace", "synth", str(BUNDLED), "--requests", "10", "--rate", "1", "--lengths-from", "azure-conv"),
    ("trace", "synth", str(BUNDLED), "--requests", "10", "--rate", "1"),  # not an input, still package data
    ("ops", "export", "--deployment", "cm384-decode", "--out", str(BUNDLED)),
])
def test_no_command_writes_over_a_bundled_trace(args):
    before = BUNDLED.stat().st_mtime_ns, BUNDLED.stat().st_size
    result = bench(*args)
    assert refused(result, "DEST" if args[0] == "trace" else "--out"), result.output
    assert (BUNDLED.stat().st_mtime_ns, BUNDLED.stat().st_size) == before


def test_a_sweep_or_plan_folder_re_renders_its_report_and_is_not_overwritten(tmp_path):
    out = tmp_path / "plan"
    assert bench("plan", "azure-conv", "--limit", "60", "--backend", "cloudmatrix384", "--max-prefill", "1",
                 "--max-decode", "1", "--out", str(out), "--quiet").exit_code == 0
    again = bench("report", str(out), "-o", str(out / "again.html"))
    assert again.exit_code == 0, again.output
    assert (out / "again.html").read_text(encoding="utf-8").lstrip().lower().startswith("<!doctype html")
    before = (out / "plan.json").read_bytes()
    assert refused(bench("report", str(out), "-o", str(out / "plan.json")), "--out")
    assert (out / "plan.json").read_bytes() == before


@pytest.mark.parametrize("owner, marker, command", [
    ("replay", "run.json", "sweep"), ("replay", "run.json", "plan"),
    ("plan", "plan.json", "sweep"), ("sweep", "sweep.json", "plan"),
])
def test_a_sweep_or_plan_leaves_another_commands_folder_alone(tmp_path, owner, marker, command):
    """A sweep or plan wrote into a replay's folder (which the next replay there replaced whole, deleting them) or
    into each other's (a second report.html over the first)."""
    trace = tmp_path / "t.csv"
    trace.write_text(TRACE_CSV, encoding="utf-8")
    out = tmp_path / "out"
    out.mkdir()
    (out / marker).write_text("{}", encoding="utf-8")
    if command == "sweep":
        sweep = tmp_path / "s.toml"
        sweep.write_text('name = "s"\n[trace]\npath = "t.csv"\n[[backend]]\nbackend = "cloudmatrix384"\n',
                         encoding="utf-8")
        args = ["sweep", str(sweep)]
    else:
        args = ["plan", str(trace), "--backend", "cloudmatrix384", "--max-prefill", "1", "--max-decode", "1"]
    result = bench(*args, "--quiet", "--out", str(out))
    assert refused(result, "--out"), result.output
    assert f"({marker})" in result.output and sorted(p.name for p in out.iterdir()) == [marker]
