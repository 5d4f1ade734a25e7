"""Re-timing framework: work inversion and source/target bookkeeping, with an explicit analytic cost function
(the framework is independent of which cost model answers; the real one lives in harness.cost)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from harness.ops.export import graph_from_step_ops
from harness.ops.load import load_op_trace
from harness.ops.retime import invert, retime

FIXTURE = Path(__file__).parent / "fixtures" / "ops" / "two_streams.json"


class Roofline:
    """time = latency + work / rate per backend: monotone in work, as every cost function must be."""

    rates = {"slow": 1e12, "fast": 4e12}

    def load(self, name):
        return self.rates[name]

    def time_s(self, category, work, rate):
        return 1e-6 + (work.flops + work.bytes_moved + work.bytes_sent) / rate


@given(st.floats(3e-6, 1.0))
def test_invert_finds_the_work_that_takes_the_time(target):
    f = lambda x: 2e-6 + x / 3e11  # noqa: E731
    assert f(invert(f, target)) == pytest.approx(target, rel=1e-6)


@given(st.sampled_from(["gemm-bf16", "gemm-fp8", "norm", "rope", "copy"]), st.floats(1e-7, 0.5))
def test_invert_finds_the_work_of_real_cost_curves(kind, target):
    """The cost model's own curves are kinked (measured-shape bounds, per-row caps, floors): the inversion must still
    land on the recorded time whenever some work takes it."""
    from harness.cost import gemm_time_s, memory_time_s
    from harness.hardware import load_hardware
    hw = load_hardware("h100-ib")
    if kind.startswith("gemm"):
        def f(x):
            edge = max(x / 2.0, 1.0) ** (1.0 / 3.0)
            return float(gemm_time_s(edge, edge, edge, kind[5:], hw))
    else:
        def f(x):
            return float(memory_time_s(x, hw, kind, 4096))
    w = invert(f, target)
    if f(0.0) >= target:
        assert w == 0.0
    elif f(1e-3) > target:  # a kernel's fixed time: the least work already takes longer
        assert w < 1e-3
    else:
        assert f(w) == pytest.approx(target, rel=1e-6)


def test_invert_below_fixed_latency_is_zero_work():
    assert invert(lambda x: 5e-6 + x, 1e-6) == 0.0


def test_same_backend_reproduces_recorded_times_and_faster_target_shrinks():
    g = load_op_trace(FIXTURE)
    rec = np.array([op.duration_s for op in g.ops])
    same = retime(g, "slow", "slow", adapter=Roofline())
    # Memcpy has its bytes in the trace (independent estimate); the rest are inferred from the source rate.
    assert same.work_sources["copy"] == {"trace": 1}
    assert same.work_sources["other"] == {"recorded": 1}
    inferred = ~same.independent
    assert np.allclose(same.target_s[inferred], rec[inferred], rtol=1e-6)
    fast = retime(g, "slow", "fast", adapter=Roofline())
    assert np.all(fast.target_s[:5] < rec[:5]) and fast.target_s[5] == rec[5]
    mape = fast.mape_per_category(rec)
    assert set(mape) == {"copy"} and mape["copy"]["ops"] == 1


@dataclass
class StepOp:
    name: str
    category: str
    stream: str
    microbatch: int
    layer: int
    start_s: float
    duration_s: float
    flops: float
    bytes_moved: float
    bytes_sent: float
    deps: list


def test_step_ops_become_a_replayable_graph():
    steps = [StepOp("combine", "moe_combine", "comm", 0, 0, 3e-6, 1e-6, 0, 0, 1e6, ["mlp"]),
             StepOp("attn", "attention", "compute", 0, 0, 0.0, 1e-6, 1e9, 0, 0, []),
             StepOp("mlp", "grouped_gemm", "compute", 0, 0, 1e-6, 2e-6, 1e9, 0, 0, ["attn"])]
    g = graph_from_step_ops(steps)
    assert [op.name for op in g.ops] == ["attn", "mlp", "combine"]
    assert g.ops[2].deps == [1] and g.ops[2].annotation == "mb0"


class ShareRoofline(Roofline):
    """As Roofline, with compute work slowed by the share of the chip the op gets (as harness.cost does)."""

    def time_s(self, category, work, rate):
        return 1e-6 + (work.flops / work.compute_share + work.bytes_moved + work.bytes_sent) / rate


def test_a_kernel_on_part_of_the_chip_is_timed_on_that_part_on_the_source_only():
    """Kineto's `blocks per SM` below 1 (a persistent GEMM on 112 of 132 SMs) is the share the source ran it on;
    the target, whose communication has engines of its own, gives the kernel the whole chip."""
    from harness.ops.graph import Op, OpGraph

    whole = Op("gemm_a", "7", 10e-6, "gemm", start_s=0.0, flops=9e6)
    part = Op("gemm_b", "7", 10e-6, "gemm", start_s=20e-6, flops=9e6, sm_share=0.5)
    rt = retime(OpGraph([whole, part]), "slow", "slow", adapter=ShareRoofline())
    assert rt.source_s[1] - 1e-6 == pytest.approx(2 * (rt.source_s[0] - 1e-6))   # half the SMs: twice the time
    assert rt.target_s[1] == pytest.approx(rt.target_s[0])                          # the target gets the whole chip


def test_a_full_grid_kernel_gets_the_sms_partial_kernels_beside_it_leave(tmp_path):
    """DeepEP's all-to-all holds 20 of 132 SMs (a 20-block grid) on its own stream for its whole run: a kernel
    with a full grid running beside it gets the other 112, time-averaged over its run. A partial kernel on the
    same stream cannot run beside it, and a partial kernel keeps its own launched share."""
    import json

    def k(name, ts, dur, stream, bps, corr):
        return {"ph": "X", "cat": "kernel", "name": name, "ts": ts, "dur": dur, "pid": 0, "tid": stream,
                "args": {"stream": stream, "correlation": corr, "blocks per SM": bps}}
    trace = {"traceEvents": [
        k("deepep_combine", 0, 100, 27, 20 / 132, 1),
        k("attn_fwd", 10, 40, 7, 31.0, 2),            # wholly beside the combine
        k("gemm_fill", 80, 40, 7, 4.0, 3),            # half its run beside it
        k("gemm_persistent", 130, 10, 7, 112 / 132, 4),
        k("same_stream_partial", 150, 100, 7, 0.5, 5),
        k("after", 260, 10, 27, 2.0, 6)]}            # nothing beside it
    path = tmp_path / "t.json"
    path.write_text(json.dumps(trace))
    share = {op.name: op.sm_share for op in load_op_trace(path).ops}
    assert share["attn_fwd"] == pytest.approx(112 / 132)
    assert share["gemm_fill"] == pytest.approx(1 - 0.5 * 20 / 132)
    assert share["gemm_persistent"] == pytest.approx(112 / 132) and share["after"] == 1.0
    assert share["deepep_combine"] == pytest.approx(20 / 132)


def test_kineto_blocks_per_sm_below_one_becomes_the_ops_sm_share(tmp_path):
    import json

    trace = {"traceEvents": [
        {"ph": "X", "cat": "kernel", "name": "gemm_persistent", "ts": 0, "dur": 10, "pid": 0, "tid": 7,
         "args": {"stream": 7, "correlation": 1, "blocks per SM": 0.8484849}},
        {"ph": "X", "cat": "kernel", "name": "gemm_full", "ts": 20, "dur": 10, "pid": 0, "tid": 7,
         "args": {"stream": 7, "correlation": 2, "blocks per SM": 3.0}}]}
    path = tmp_path / "t.json"
    path.write_text(json.dumps(trace))
    g = load_op_trace(path)
    assert [op.sm_share for op in g.ops] == [pytest.approx(0.8484849), 1.0]


def test_a_device_to_device_copy_reads_and_writes_its_bytes(tmp_path):
    """Kineto's `bytes` of a DtoD memcpy is the copy's size; HBM carries it twice (read + write). The lent H100 timed a
    256 MiB DtoD copy in a CUDA graph at 179.7 us (calibration/measured/h100-kernels-2026-11-24.json), which the
    spec's copy efficiency was fitted to: the re-timed copy must land there, not at half of it."""
    import json

    size = 256 * 2**20
    trace = {"traceEvents": [
        {"ph": "X", "cat": "gpu_memcpy", "name": "Memcpy DtoD (Device -> Device)", "ts": 0, "dur": 180, "pid": 0,
         "tid": 7, "args": {"stream": 7, "correlation": 1, "bytes": size}},
        {"ph": "X", "cat": "gpu_memset", "name": "Memset (Device)", "ts": 200, "dur": 90, "pid": 0, "tid": 7,
         "args": {"stream": 7, "correlation": 2, "bytes": size}}]}
    path = tmp_path / "t.json"
    path.write_text(json.dumps(trace))
    g = load_op_trace(path)
    assert [op.bytes_moved for op in g.ops] == [2 * size, size]   # a memset only writes
    rt = retime(g, None, "h100-ib")
    assert rt.target_s[0] == pytest.approx(179.7e-6, rel=0.01)
    from harness.hardware import load_hardware
    floor = load_hardware("h100-ib").kernel_floor_s              # each kernel's fixed time, then the bytes
    assert rt.target_s[0] - floor == pytest.approx(2 * (rt.target_s[1] - floor))
