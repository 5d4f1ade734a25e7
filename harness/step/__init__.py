"""Step model: the op graph of one forward step of a deployment, scheduled onto its streams.

    load_deployment(name, overrides=()) -> Deployment          (models/deployments/<name>.toml)
    inline_deployment(hardware, llm, phase, chips, ep=None, tp=1, dp=None, precision=None) -> Deployment
    decode_work(dep, batch_per_chip, kv_len, mtp_draft_tokens=None) -> StepWork
    prefill_work(dep, tokens_per_chip, prompt_len, cached_len=0) -> StepWork
    step_ops(dep, work, eplb=None) -> list[StepOp]   (name, category, stream, microbatch, layer, start_s,
                                                       duration_s, flops, bytes_moved, bytes_sent, deps)
    step_time_s(dep, work, eplb=None) -> seconds (vectorised over arrays in `work`)
    as_run(dep, work_of, eplb=None) -> Deployment      (microbatches only where they shorten the step)
    build_serving_costs(...) in harness.step.serving (ServingCosts for the simulator)."""

from harness.step.deployment import Deployment, inline_deployment, load_deployment, standard_deployment
from harness.step.memory import max_batch_per_chip, memory_plan
from harness.step.schedule import (CATEGORIES, StepOp, StepWork, as_run, decode_work, makespan_s, prefill_work,
                                   step_ops, step_time_s)

__all__ = ["CATEGORIES", "Deployment", "StepOp", "StepWork", "as_run", "decode_work", "inline_deployment",
           "load_deployment", "makespan_s", "max_batch_per_chip", "memory_plan", "prefill_work",
           "standard_deployment", "step_ops", "step_time_s"]
