"""The harness's own step op graph (harness.step.step_ops) as an op graph, for `bench ops export`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from harness.ops.graph import CATEGORIES, Op, OpGraph


def graph_from_step_ops(step_ops: Sequence[Any], meta: dict | None = None) -> OpGraph:
    """StepOps (name, category, stream, microbatch, layer, start_s, duration_s, flops, bytes_moved,
    bytes_sent, deps) to an op graph. Ops are ordered by start within each stream (CUDA FIFO semantics);
    deps given as op names or indices are remapped to the new positions."""
    order = sorted(range(len(step_ops)), key=lambda i: (step_ops[i].start_s, i))
    new_index = {old: new for new, old in enumerate(order)}
    by_name = {step_ops[old].name: new for new, old in enumerate(order)}
    ops = []
    for old in order:
        s = step_ops[old]
        deps = sorted({new_index[d] if isinstance(d, int) else by_name[d] for d in (s.deps or ())})
        ops.append(Op(name=str(s.name), stream=str(s.stream), duration_s=float(s.duration_s),
                      category=s.category if s.category in CATEGORIES else "other", start_s=float(s.start_s),
                      deps=deps, flops=float(s.flops or 0), bytes_moved=float(s.bytes_moved or 0),
                      bytes_sent=float(s.bytes_sent or 0), layer=int(s.layer if s.layer is not None else -1),
                      annotation=f"mb{s.microbatch}" if getattr(s, "microbatch", None) is not None else "",
                      **_cost_inputs(getattr(s, "inputs", None))))
    return OpGraph(ops, {"format": "native", **(meta or {})})


def _cost_inputs(inputs: dict | None) -> dict[str, Any]:
    """The step model's cost inputs of an op (StepOp.inputs) as op-graph fields, so that re-timing the exported
    graph on its own hardware prices every op as the step model did."""
    if not inputs:
        return {}
    out: dict[str, Any] = {key: inputs[key] for key in ("precision", "rows", "kernel", "gemm", "moe") if key in inputs}
    if inputs.get("share", 1.0) < 1.0:
        out["sm_share"] = inputs["share"]
    if "ranks" in inputs:
        out["group_ranks"] = inputs["ranks"]
    return out


def export_step(deployment: str, batch: float | None = None, kv_len: int | None = None, tokens: int | None = None,
                prompt_len: int | None = None, overrides: Sequence[str] = ()) -> tuple[OpGraph, float]:
    """The step op graph of a deployment at an operating point (missing values: the deployment's own), and the
    step model's step time for it. Decode: `batch` requests per chip at `kv_len`; prefill: `tokens` per chip of
    prompts of `prompt_len`."""
    from harness.errors import InputError
    from harness.step import decode_work, load_deployment, prefill_work, step_ops, step_time_s
    from harness.step.estimate import deployment_fields
    from harness.step.schedule import as_run

    dep = load_deployment(deployment, overrides)
    if dep.phase == "decode":
        if tokens is not None or prompt_len is not None:
            raise InputError(f"'{deployment}' is a decode deployment: use --batch / --kv-len", field="--tokens")
        point = {"batch_per_chip": batch or dep.batch_per_chip, "kv_len": kv_len or dep.kv_len}

        def work_of(d):
            return decode_work(d, point["batch_per_chip"], point["kv_len"])
    else:
        if batch is not None or kv_len is not None:
            raise InputError(f"'{deployment}' is a prefill deployment: use --tokens / --prompt-len", field="--batch")
        point = {"tokens_per_chip": tokens or dep.tokens_per_chip, "prompt_len": prompt_len or dep.prompt_len}

        def work_of(d):
            return prefill_work(d, point["tokens_per_chip"], point["prompt_len"])
    dep = as_run(dep, work_of)
    work = work_of(dep)
    # how the step ran (its microbatches as run: one where they would not shorten it), as `bench estimate` says
    meta = {**deployment_fields(dep, dep.eplb), "microbatches": dep.microbatches, "split_hbm": dep.split_hbm,
            **point, "step_time_s": float(step_time_s(dep, work))}
    return graph_from_step_ops(step_ops(dep, work), meta), meta["step_time_s"]
