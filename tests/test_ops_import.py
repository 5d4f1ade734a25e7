"""Op-trace import: Kineto (hand-written fixture and real captures), Chakra JSON, classification coverage."""

from __future__ import annotations

import tarfile
from pathlib import Path

import numpy as np
import pytest

from harness.ops.classify import unclassified
from harness.ops.load import load_op_trace
from harness.ops.replay import predecessors, recorded_gaps_s, replay

FIXTURE = Path(__file__).parent / "fixtures" / "ops" / "two_streams.json"


def _identity_error(graph) -> float:
    preds = predecessors(graph)
    tl = replay(graph, None, recorded_gaps_s(graph, preds), preds)
    rec = graph.recorded_span_s()
    return (tl.span_s - rec) / rec


def test_fixture_ops_streams_categories_and_work():
    g = load_op_trace(FIXTURE)
    assert [op.stream for op in g.ops] == ["7", "7", "27", "7", "7", "7"]
    assert [op.category for op in g.ops] == ["attention", "gemm", "moe_dispatch", "norm", "copy", "other"]
    assert g.recorded_span_s() == pytest.approx(905e-6)
    assert g.ops[4].bytes_moved == 1048576
    assert g.ops[0].annotation == "attn(F)" and g.ops[2].annotation == "dispatch(F)"
    # cudaStreamWaitEvent between the GEMM launch and the dispatch launch: dispatch waits on the GEMM.
    assert 1 in g.ops[2].deps


def test_fixture_unclassified_kernels_are_listed_not_dropped():
    g = load_op_trace(FIXTURE)
    missing = unclassified(g)
    assert [r["name"] for r in missing] == ["my_custom_unknown_kernel"]
    assert len(g.ops) == 6  # still replayed


def test_fixture_identity_replay_is_exact():
    assert abs(_identity_error(load_op_trace(FIXTURE))) < 1e-9


def test_dropping_the_sync_edge_lets_dispatch_start_early():
    g = load_op_trace(FIXTURE)
    with_dep = replay(g).start_s[2]
    g.ops[2].deps.clear()
    assert replay(g).start_s[2] < with_dep


def _real_kineto(shared_data: Path) -> list[Path]:
    return [shared_data / "deepseek-profile-data" / "train.json.gz",
            *sorted((shared_data / "hta-kineto-samples").glob("*.json.gz"))]


def test_identity_on_every_real_kineto_trace(shared_data):
    for path in _real_kineto(shared_data):
        g = load_op_trace(path)
        assert abs(_identity_error(g)) <= 0.01, path.name


def test_train_capture_structure_and_classification(shared_data):
    g = load_op_trace(shared_data / "deepseek-profile-data" / "train.json.gz")
    kernels = [op for op in g.ops]
    assert len(kernels) == 963 + 12 + 8  # kernels + memsets + memcpys (SOURCE.md counts)
    assert set(g.streams()) == {"7", "23", "27"}
    assert g.recorded_span_s() == pytest.approx(129.0e-3, rel=0.01)
    total = sum(op.duration_s for op in g.ops)
    share = sum(r["time_s"] for r in unclassified(g)) / total
    print(f"train.json unclassified share: {share:.3%}")
    assert share < 0.01
    cat_time = {}
    for op in g.ops:
        cat_time[op.category] = cat_time.get(op.category, 0.0) + op.duration_s
    # SOURCE.md: DeepEP dispatch/combine/notify kernels are 113.0 ms of 244.0 ms summed kernel time.
    assert cat_time["moe_dispatch"] + cat_time["moe_combine"] == pytest.approx(113.4e-3, rel=0.01)
    # Compute waits on communication: the DAG has cross-stream edges from sync calls.
    assert g.meta["sync_edges"] > 0
    assert {op.annotation for op in g.ops} >= {"attn(F)", "mlp(B)", "dispatch(F)", "combine(B)"}


def test_chakra_json_replays_within_dag_bounds(shared_data, tmp_path):
    with tarfile.open(shared_data / "chakra-samples" / "json_trace.tar.gz") as tar:
        tar.extractall(tmp_path, filter="data")
    g = load_op_trace(tmp_path / "jsonData" / "chakra.0.json")
    assert len(g.ops) == 1216
    assert g.recorded_span_s() is None
    tl = replay(g)
    dur = np.array([op.duration_s for op in g.ops])
    assert max(dur[[op.stream == s for op in g.ops]].sum() for s in g.streams()) <= tl.span_s + 1e-12
    assert tl.span_s <= dur.sum() + 1e-12
    assert sum(op.category == "all_reduce" for op in g.ops) == 5
