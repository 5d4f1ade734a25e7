"""Properties: any valid trace round-trips through save/convert unchanged; any corruption of a valid file gives a
clean InputError (exit 2 on the CLI), never a traceback."""

from __future__ import annotations

import gzip
import math
from pathlib import Path

import numpy as np
import polars as pl
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from harness.cli import main
from harness.errors import InputError
from harness.trace import SCHEMA, Workload, canonical, load_trace, save_trace

CONTAINERS = ["csv", "jsonl", "parquet", "csv.gz", "jsonl.gz"]
_TEXT = st.text(st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp")), min_size=1, max_size=12)
_SETTINGS = settings(suppress_health_check=[HealthCheck.function_scoped_fixture])


@st.composite
def workloads(draw) -> Workload:
    n = draw(st.integers(1, 25))
    gaps = draw(st.lists(st.floats(0, 1e4, allow_nan=False, allow_infinity=False), min_size=n - 1, max_size=n - 1))
    arrival = np.concatenate(([0.0], np.cumsum(gaps))) if gaps else np.zeros(1)
    block_size = draw(st.sampled_from([None, 1, 16, 512]))
    rows = []
    for i in range(n):
        input_tokens = draw(st.integers(1, 200_000))
        blocks = None
        if block_size is not None and draw(st.booleans()):
            count = draw(st.integers(1, min(8, math.ceil(input_tokens / block_size))))
            blocks = draw(st.lists(st.integers(0, 2**40), min_size=count, max_size=count))
        rows.append({"request_id": None, "arrival_s": float(arrival[i]), "input_tokens": input_tokens,
                     "output_tokens": draw(st.integers(1, 100_000)), "prefix_blocks": blocks,
                     "session_id": draw(st.none() | _TEXT), "tenant": draw(st.none() | _TEXT),
                     "model": draw(st.none() | _TEXT)})
    ids = draw(st.lists(_TEXT, min_size=n, max_size=n, unique=True))
    for row, rid in zip(rows, ids):
        row["request_id"] = rid
    frame = canonical(pl.DataFrame(rows, schema=SCHEMA))
    has_blocks = frame["prefix_blocks"].null_count() < n
    return Workload(requests=frame, name="t", block_size=block_size if has_blocks else None)


@_SETTINGS
@given(workload=workloads(), container=st.sampled_from(CONTAINERS))
def test_valid_trace_round_trips_unchanged(tmp_path, workload, container):
    path = save_trace(workload, tmp_path / f"trace.{container}")
    loaded = load_trace(path)
    assert_frame_equal(loaded.requests, workload.requests)
    assert loaded.block_size == workload.block_size
    assert loaded.notes == ()


@_SETTINGS
@given(workload=workloads(), container=st.sampled_from(CONTAINERS))
def test_convert_command_round_trips(tmp_path, workload, container):
    first = save_trace(workload, tmp_path / "first.parquet")
    second = tmp_path / f"second.{container}"
    result = CliRunner().invoke(main, ["trace", "convert", str(first), str(second)])
    assert result.exit_code == 0, result.output
    assert_frame_equal(load_trace(second).requests, workload.requests)


def _valid_files(root: Path) -> dict[str, bytes]:
    fixtures = Path(__file__).parent / "fixtures" / "traces"
    workload = load_trace(fixtures / "burstgpt_sample.csv")
    with_blocks = Workload(requests=workload.requests.with_columns(
        pl.int_ranges(0, pl.col("input_tokens") // 512 + 1).alias("prefix_blocks")), name="b", block_size=512)
    out = {"burstgpt.csv": (fixtures / "burstgpt_sample.csv").read_bytes()}
    for container in ("csv", "jsonl", "parquet"):
        out[f"native.{container}"] = save_trace(with_blocks, root / f"n.{container}").read_bytes()
    out["azure.csv"] = (b"TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.6805900,374,44\n"
                        b"2023-11-16 18:15:50.9951690,396,109\n2023-11-16 18:15:51.2224670,879,55\n")
    out["mooncake.jsonl"] = (b'{"timestamp": 0, "input_length": 6758, "output_length": 500, "hash_ids": '
                             b'[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13]}\n'
                             b'{"timestamp": 3000, "input_length": 600, "output_length": 3, "hash_ids": [0, 14]}\n')
    return out


_MUTATIONS = st.sampled_from(["truncate", "flip", "insert", "delete", "duplicate-line"])


@_SETTINGS
@given(data=st.data(), name=st.sampled_from(["burstgpt.csv", "native.csv", "native.jsonl", "native.parquet",
                                             "azure.csv", "mooncake.jsonl"]),
       mutation=_MUTATIONS, compress=st.booleans())
def test_any_corruption_gives_a_clean_error(tmp_path, data, name, mutation, compress):
    original = _valid_files(tmp_path)[name]
    if compress:
        original = gzip.compress(original, mtime=0)
    at = data.draw(st.integers(0, len(original) - 1))
    if mutation == "truncate":
        corrupt = original[:at]
    elif mutation == "flip":
        corrupt = original[:at] + bytes([original[at] ^ data.draw(st.integers(1, 255))]) + original[at + 1:]
    elif mutation == "insert":
        corrupt = original[:at] + data.draw(st.binary(min_size=1, max_size=8)) + original[at:]
    elif mutation == "delete":
        corrupt = original[:at] + original[at + data.draw(st.integers(1, 16)):]
    else:
        lines = original.split(b"\n")
        pick = data.draw(st.integers(0, len(lines) - 1))
        corrupt = b"\n".join(lines[: pick + 1] + [lines[pick][::-1]] + lines[pick + 1:])
    path = tmp_path / ("corrupt." + name + (".gz" if compress else ""))
    path.write_bytes(corrupt)
    try:
        load_trace(path)
    except InputError as exc:
        assert str(exc).startswith(str(path)) and "\n" not in str(exc)
    dest = tmp_path / "out.jsonl"
    dest.unlink(missing_ok=True)  # tmp_path is shared by hypothesis' examples
    result = CliRunner().invoke(main, ["trace", "convert", str(path), str(dest)])
    assert result.exit_code in (0, 2), result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert dest.exists() == (result.exit_code == 0)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".part")]
