"""Op cost functions: pure functions of (op, hardware spec), vectorised over numpy arrays.

    gemm_time_s(m, n, k, precision, hw, groups=1, compute_share=1.0, out_bytes=2) -> s
    attention_time_s(flops, bytes_moved, hw, precision="bf16", compute_share=1.0) -> s
    mla_decode_work(llm, requests, q_per_request, kv_len, kv_precision) -> (flops, bytes)
    mla_prefill_work(llm, new_tokens, cached_tokens, kv_precision="bf16") -> (flops, bytes)
    gqa_work(llm, new_tokens, context, kv_precision="bf16", decode=False) -> (flops, bytes)
    memory_time_s(bytes_moved, hw) -> s                      (norms, element-wise, copies in HBM)
    collective_time_s(kind, bytes_per_rank, ranks, hw) -> s  (all_reduce, all_gather, all_to_all, reduce_scatter)
    dispatch_time_s(tokens, ep, hw, llm, op, precision, shared_dedicated=False) -> s   (op: dispatch | combine)
    bulk_all_to_all_time_s(tokens, ep, hw, llm, op, precision) -> (s, bytes_sent)
    transfer_time_s(nbytes, bytes_per_s, latency_s) -> s
    host_path(hw, op, remote) -> (bytes/s, latency s)          (context-cache DRAM; op: read | write)
    ssd_read_s(nbytes, hw, readers_per_node=1) -> s           (SSD cache tier into each of a node's ranks)
`hw` is a harness.hardware.Hardware (load_hardware(name)); `llm` a harness.llm.LLM (load_llm(name)).
Weight loading needs a deployment (which weights each rank holds): harness.step.loading."""

from harness.cost.comm import (bulk_all_to_all_time_s, collective_time_s, dispatch_time_s, host_path, ssd_read_s,
                               transfer_time_s)
from harness.cost.compute import (attention_time_s, gemm_time_s, gqa_work, memory_time_s, mla_decode_work,
                                  mla_prefill_work)

__all__ = ["attention_time_s", "bulk_all_to_all_time_s", "collective_time_s", "dispatch_time_s", "gemm_time_s",
           "gqa_work", "host_path", "ssd_read_s", "memory_time_s", "mla_decode_work", "mla_prefill_work", "transfer_time_s"]
