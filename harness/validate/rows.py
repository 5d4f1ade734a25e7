"""The rows of `bench validate`, one function per published table."""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import numpy as np

from harness.cost.calibration import (attention_overhead_fit, attention_rows, causal_attention_work, dispatch_fit,
                                     distinct_ranks, fit_part, gemm_fit, gemm_rows, gemm_shape_fits, memory_fit,
                                     memory_rows, nccl_curve, table)
from harness.cost.comm import collective_time_s, dispatch_time_s, interp_measured, transfer_time_s
from harness.cost.compute import attention_time_s, gemm_time_s, memory_time_s
from harness.hardware import load_hardware
from harness.hardware.specfile import load_spec
from harness.hardware.units import parse_quantity
from harness.llm import load_llm
from harness.step.deployment import check_deployment, load_deployment
from harness.step.estimate import estimate


def _row(id_: str, what: str, conditions: str, published: float, predicted: float, unit: str, kind: str,
         explain: dict[str, Any]) -> dict[str, Any]:
    return {"id": id_, "what": what, "conditions": conditions, "published": float(published),
            "predicted": float(predicted), "unit": unit, "error_pct": 100.0 * (float(predicted) / published - 1.0),
            "kind": kind, "explain": explain}


def _targets() -> dict[str, Any]:
    return load_spec("validation", "targets")[0]


def ub_rows() -> list[dict[str, Any]]:
    """UB micro-benchmarks (Table 1). Every figure is a spec input (the fabric's read/write x same-node/other-node
    paths, NPU to NPU in scale_up, NPU to CPU in host), so these rows check that each path reads its own figure and
    that latency + 512 B / bandwidth reproduces the 512-byte latency; they cannot test the model."""
    t = _targets()["ub"]
    hw = load_hardware("cloudmatrix384")
    rows = []
    for path, op, scope, gbps, lat_us in t["rows"]:
        same = scope == "intra"
        if path == "npu":
            bw, lat = hw.scale_up.path(op, same)
            used = (f"scale_up (UB) {op} path, peer in {'the same' if same else 'another'} node: "
                    f"{'one-sided reads' if op == 'read' else 'collectives, MoE dispatch/combine (writes into peers)'}")
        else:
            read = op == "read"
            if same:
                bw = hw.host_read_bytes_per_s if read else hw.host_write_bytes_per_s
                lat = hw.host_latency_s if read else hw.host_write_latency_s
            else:
                bw = hw.host_remote_read_bytes_per_s if read else hw.host_remote_write_bytes_per_s
                lat = hw.host_remote_latency_s if read else hw.host_remote_write_latency_s
            used = (f"host {op} path, CPU in {'the same' if same else 'another'} node: context-cache "
                    f"{'fetches' if read else 'write-backs'} mix 1/48 same-node with 47/48 other-node")
        kind = "spec input"
        cond = f"NPU to {path.upper()} {op}, {scope}-node, one die"
        rows.append(_row(f"ub.{path}.{op}.{scope}.bandwidth", "UB bandwidth", cond, gbps, bw / 1e9, "GB/s", kind,
                         {"model": used, "source": t["source"]}))
        pred_lat = float(transfer_time_s(512, bw, lat)) * 1e6
        rows.append(_row(f"ub.{path}.{op}.{scope}.latency", "UB 512-byte latency", cond, lat_us, pred_lat, "us",
                         kind, {"model": f"latency + 512 B / bandwidth; {used}", "source": t["source"]}))
    return rows


def dispatch_rows() -> list[dict[str, Any]]:
    llm = load_llm("deepseek-r1")
    rows = []
    for table_id, hw_name, label, precision in (
            ("cm384-ub", "cloudmatrix384", "CM384", "int8"),
            ("deepep-ll-h800", "h800-ib", "DeepEP on H800 (Feb 2025, pure RDMA)", "fp8"),
            ("deepep-ll-h800-nvlink", "h800-ib", "DeepEP on H800 (June 2025, NVLink in node)", "fp8")):
        t = table("dispatch_combine", table_id)
        hw = dataclasses.replace(load_hardware(hw_name), moe_low_latency_table=table_id)  # the kernel the table ran
        p = t.params
        for op in ("dispatch", "combine"):
            fit = dispatch_fit(table_id, op)
            for ep, us in zip(t.col("ep"), t.col(f"{op}_us")):
                pred = float(dispatch_time_s(p["tokens"], int(ep), hw, llm, op, precision)) * 1e6
                kind = "in-sample operator" if ep in p["fit_ep"] else "held-out operator"
                d = distinct_ranks(p["experts"], p["top_k"], int(ep))
                rows.append(_row(f"moe.{table_id}.{op}.ep{ep}", f"MoE {op} latency, {label}",
                                 f"EP{ep}, {p['tokens']} tokens per rank, top-{p['top_k']} of {p['experts']}",
                                 float(us), pred, "us", kind,
                                 {"model": "overhead(distinct ranks) + tokens x top-k x message bytes / fabric "
                                           "bandwidth" + ("; messages to the sender's node over NVLink, the rest "
                                                          "over the NIC, in parallel" if fit.local_bytes_per_s
                                                          else ""),
                                  "overhead_us": fit.overhead_s(d) * 1e6, "wire_gbps": fit.wire_bytes_per_s / 1e9,
                                  "local_wire_gbps": (fit.local_bytes_per_s or 0.0) / 1e9,
                                  "distinct_ranks_per_token": d, "fit_ep": p["fit_ep"], "source": t.source}))
    return rows


def mla_rows() -> list[dict[str, Any]]:
    t = table("attention", "mla")
    rows = []
    for hw_name, setting, achieved, peak, util in t.rows:
        hw = load_hardware(hw_name)
        regime, _, version = setting.partition(":")
        if version:
            pred = dict(hw.attention_compute_by_kernel)[version]
        else:
            pred = hw.attention_compute_eff if regime == "compute" else hw.attention_memory_eff
        label = f"MLA kernel {regime}-bound utilisation" + (f" ({version})" if version else "")
        rows.append(_row(f"mla.{hw_name}.{setting.replace(':', '.')}", label, f"{hw.chip_name}",
                         util * 100, pred * 100, "%", "spec input",
                         {"model": "attention_time_s uses this utilisation in the matching regime",
                          "source": t.source}))
    return rows


def attention_in_situ_rows() -> list[dict[str, Any]]:
    """Prefill attention on H800 in place (DeepSeek's capture): the mean forward kernel time against the model on
    the SMs each kernel had. The model's efficiency comes from FlashMLA's decode kernel, so this is held out."""
    t = table("attention", "h800-prefill-attention-in-situ")
    hw = load_hardware("h800-ib")
    tokens, heads, qk, v, share, us = (t.col(c) for c in ("tokens", "heads", "qk_dim", "v_dim", "sm_share", "time_us"))
    flops, nbytes = causal_attention_work(tokens, heads, qk, v)
    pred = np.array([float(attention_time_s(f, b, hw, "bf16", s)) for f, b, s in zip(flops, nbytes, share)])
    cond = (f"FlashAttention forward, {int(tokens[0]):,} causal tokens, {int(heads[0])} heads, head dims "
            f"{int(qk[0])}/{int(v[0])}, on {share.mean():.0%} of the SMs, mean of {len(us)} kernels")
    return [_row("attn.h800.prefill-in-situ", "MLA prefill attention kernel in place on H800", cond,
                 float(us.mean()), float(pred.mean()) * 1e6, "us", "held-out operator",
                 {"model": "attention_time_s at the FlashMLA compute utilisation on the kernel's share of the SMs",
                  "achieved_tflops_on_its_sms": float((flops / (us * 1e-6) / share).mean() / 1e12),
                  "source": t.source})]


MEASURED_CHIPS = (("h100", "h100-ib", "H100"), ("h200", "h200-ib", "H200"))  # (table prefix, hardware, label)


def attention_sdpa_rows() -> list[dict[str, Any]]:
    """cuDNN attention timed on a lent H100 and H200 (calibration/attention.toml <chip>-sdpa-graph). The spec's fixed
    time per call is fitted to the H100's decode rows (in-sample); the H200's decode rows and every prefill row are
    held out. The first row per chip sets the fitted fixed time against the spec's."""
    rows = []
    for prefix, hw_name, label in MEASURED_CHIPS:
        table_id, hw = f"{prefix}-sdpa-graph", load_hardware(hw_name)
        t = table("attention", table_id)
        decode, flops, nbytes, secs = attention_rows(t)
        pred = np.asarray(attention_time_s(flops, nbytes, hw, "bf16"), float)
        fitted = attention_overhead_fit(table_id)
        own = prefix == "h100"
        expl = {"model": "attention_overhead + max(flops / (peak x attention_compute), bytes / (HBM x "
                         "attention_memory))", "attention_overhead_us": round(hw.attention_overhead_s * 1e6, 3),
                "attention_compute": hw.attention_compute_eff, "attention_memory": hw.attention_memory_eff,
                "mape_pct": {ph: float(100 * np.mean(np.abs(pred[m] / secs[m] - 1)))
                             for ph, m in (("decode", decode), ("prefill", ~decode))}, "source": t.source}
        rows.append(_row(f"attn.{prefix}-sdpa.overhead", "Attention kernel fixed time per call",
                         f"cuDNN GQA decode on one {label}, fitted to its {int(decode.sum())} decode rows",
                         fitted * 1e6, hw.attention_overhead_s * 1e6, "us",
                         "spec input" if own else "held-out operator", expl))
        c = {n: t.col(n) for n in ("batch", "q_len", "kv_len", "q_heads", "qk_dim", "v_dim")}
        for i in range(len(secs)):
            if decode[i]:
                rid = f"decode.b{c['batch'][i]}.kv{c['kv_len'][i]}"
                cond = f"GQA 64/8 heads x 128, batch {c['batch'][i]}, KV {c['kv_len'][i]:,}"
                kind = "in-sample operator" if own else "held-out operator"
            else:
                rid = f"prefill.h{c['q_heads'][i]}.s{c['q_len'][i]}"
                cond = (f"causal, {c['q_len'][i]:,} tokens, {c['q_heads'][i]} heads, head dims "
                        f"{c['qk_dim'][i]}/{c['v_dim'][i]}")
                kind = "held-out operator"
            rows.append(_row(f"attn.{prefix}-sdpa.{rid}", f"cuDNN attention on one {label}", cond, secs[i] * 1e6,
                             pred[i] * 1e6, "us", kind, expl))
    return rows


GRAPH_GEMM_SHOWN = ((1, 16), (1, 4096), (8, 32), (8, 512), (128, 64))  # (groups, m) of the measured rows listed


def gemm_graph_rows() -> list[dict[str, Any]]:
    """cuBLAS BF16 GEMMs timed in CUDA graphs on a lent H100 and H200 (DeepSeek-V3 and Llama-3-70B shapes, dense and
    grouped), against the BF16 curve fitted to Vidur's H100 profiles: every row held out. `explain` has the mean
    error over all of a chip's rows."""
    rows = []
    for prefix, hw_name, label in MEASURED_CHIPS:
        table_id, hw = f"{prefix}-bf16-graph", load_hardware(hw_name)
        t = table("gemm", table_id)
        _, _, secs = gemm_rows(t)
        c = {n: t.col(n) for n in ("shape", "m", "n", "k", "groups")}
        pred = np.array([float(gemm_time_s(m, int(n), int(k), "bf16", hw, int(g)))
                         for m, n, k, g in zip(c["m"], c["n"], c["k"], c["groups"])])
        err = pred / secs - 1
        expl = {"model": "the BF16 curve fitted to Vidur's H100 profiles (table h100-bf16-vidur)",
                "mape_pct": float(100 * np.mean(np.abs(err))), "mean_error_pct": float(100 * np.mean(err)),
                "rows": len(secs), "source": t.source}
        for i in range(len(secs)):
            g, m = int(c["groups"][i]), int(c["m"][i])
            if (g, m) in GRAPH_GEMM_SHOWN:
                grouped = f"{g} x " if g > 1 else ""
                rows.append(_row(f"gemm.{prefix}-bf16-graph.{c['shape'][i]}.{'g%d.' % g if g > 1 else ''}m{m}",
                                 f"BF16 {'grouped ' if g > 1 else ''}GEMM on one {label} (CUDA graph)",
                                 f"{c['shape'][i]}: {grouped}M{m} N{c['n'][i]} K{c['k'][i]}", secs[i] * 1e6,
                                 pred[i] * 1e6, "us", "held-out operator", expl))
    return rows


def gemm_rows_validate() -> list[dict[str, Any]]:
    rows = []
    for table_id, hw_name, precision in (("ascend910c-int8-grouped", "cloudmatrix384", "int8"),
                                         ("deepgemm-fp8-h800", "h800-ib", "fp8")):
        t = table("gemm", table_id)
        hw = load_hardware(hw_name)
        flops, _, secs = gemm_rows(t)
        m, n, k, g = (t.col(c) for c in ("m", "n", "k", "groups"))
        for i in range(len(t.rows)):
            pred_s = float(gemm_time_s(m[i], int(n[i]), int(k[i]), precision, hw, int(g[i])))
            shapes = gemm_shape_fits(table_id)
            fit = shapes.get((int(n[i]), int(k[i]))) or gemm_fit(table_id)
            expl = {"model": "overhead + flops / (peak x eta_compute) + bytes / (hbm_bw x eta_memory); the slowest "
                             "of the all-rows fit and the fits of measured shapes no larger than this one",
                    "own_shape_fit": (int(n[i]), int(k[i])) in shapes,
                    "overhead_us": fit.overhead_s * 1e6, "eta_compute": fit.eta_compute,
                    "eta_memory": fit.eta_memory, "all_rows_fit": vars(gemm_fit(table_id)), "source": t.source}
            cond = f"{g[i]} x M{m[i]} N{n[i]} K{k[i]}"
            if "tflops" in t.columns:
                rows.append(_row(f"gemm.{table_id}.{i + 1}", "DeepGEMM FP8 throughput on H800", cond,
                                 flops[i] / secs[i] / 1e12, flops[i] / pred_s / 1e12, "TFLOPS", "in-sample operator",
                                 expl))
            else:
                peak = parse_quantity(t.params["peak"], "compute")
                rows.append(_row(f"gemm.{table_id}.{i + 1}", "INT8 grouped GEMM utilisation, one 910C die", cond,
                                 100 * flops[i] / secs[i] / peak, 100 * flops[i] / pred_s / peak, "%",
                                 "in-sample operator", expl))
    return rows


BF16_GEMM_SHOWN = ((1, 16), (1, 256), (1, 4096))  # (TP, tokens) of the held-out rows listed (the mean covers all)


def bf16_gemm_rows() -> list[dict[str, Any]]:
    """BF16 GEMMs (cuBLAS) on H100 (Vidur): fitted on two models' linear layers, these are the other models' layers
    (other hidden and intermediate sizes, GQA and MHA), held out. `explain` has the mean error over every
    held-out row."""
    table_id, hw = "h100-bf16-vidur", load_hardware("h100-ib")
    t = fit_part(table("gemm", table_id), fit=False)
    flops, _, secs = gemm_rows(t)
    cols = {c: t.col(c) for c in ("model", "op", "tp", "m", "n", "k")}
    pred = np.array([float(gemm_time_s(m, int(n), int(k), "bf16", hw))
                     for m, n, k in zip(cols["m"], cols["n"], cols["k"])])
    fit = gemm_fit(table_id)
    expl = {"model": "overhead + flops / (peak x eta_compute) + bytes / (hbm_bw x eta_memory); the slowest of the "
                     "all-rows fit and the fits of measured shapes no larger than this one",
            "all_rows_fit": vars(fit), "held_out_mape_pct": float(100 * np.mean(np.abs(pred / secs - 1))),
            "held_out_rows": len(secs), "fit_models": t.params["fit_models"], "source": t.source}
    rows = []
    for i in range(len(secs)):
        tp, m = int(cols["tp"][i]), int(cols["m"][i])
        if (tp, m) in BF16_GEMM_SHOWN:
            rows.append(_row(f"gemm.h100-bf16.{cols['model'][i]}.{cols['op'][i]}.{m}", "BF16 GEMM on one H100",
                             f"{cols['model'][i]} {cols['op'][i]}, M{m} N{cols['n'][i]} K{cols['k'][i]}, TP{tp}",
                             secs[i] * 1e6, pred[i] * 1e6, "us", "held-out operator", expl))
    return rows


P2P_SHOWN = (2048, 1048576, 16777216, 67108864)  # sizes of the send_recv rows listed (Vidur, 15 measured)


def nccl_rows() -> list[dict[str, Any]]:
    """The NCCL curve is used as measured (linear between measured sizes), so these rows are in-sample:
    they check collective_time_s's size and bus-factor bookkeeping. `explain` gives the leave-one-out value
    (the row predicted from the other sizes) as the uncertainty between measured sizes."""
    rows = []
    for table_id, hw_name in (("nccl-h100-8", "h100-ib"), ("nccl-h200-8", "h200-ib")):
        t = table("nccl", table_id)
        hw = load_hardware(hw_name)
        for op, size, us in t.rows:
            if table_id == "nccl-h200-8" and op != "all_reduce":
                continue  # those rows repeat the H100 ones
            if op == "send_recv" and size not in P2P_SHOWN:
                continue
            xs, ys = nccl_curve(table_id, op)
            keep = xs != size
            loo_us = float(interp_measured(xs[keep], ys[keep], size)) * 1e6
            per_rank = size / (8 if op == "all_gather" else 1)
            in_us = float(collective_time_s(op, per_rank, 8, hw)) * 1e6
            gpus = "2 GPUs (point to point)" if op == "send_recv" else "8 GPUs"
            rows.append(_row(f"nccl.{table_id}.{op}.{size}", f"NCCL {op.replace('_', '-')} inside one node",
                             f"{gpus}, {size:,} bytes", us, in_us, "us", "in-sample operator",
                             {"model": "linear interpolation of the measured curve",
                              "leave_one_out_us": loo_us, "source": t.source}))
    return rows


NCCL_HELD_OUT_SHOWN = (4194304, 16777216, 67108864)  # sizes of the Vidur rows listed per GPU count


def nccl_held_out_rows() -> list[dict[str, Any]]:
    """NCCL all-reduce on 2, 4 and 8 H100s in one node (Vidur), predicted from the 8-GPU nccl-tests curve: checks the
    interpolation between that curve's five sizes and the bus-factor scaling to fewer GPUs. Rows below the table's
    `compare_from_bytes` time Vidur's harness (a size-independent floor), so the means leave them out and say so."""
    t = table("nccl", "h100-vidur-all-reduce")
    hw = load_hardware("h100-ib")
    n, size, us = (t.col(c).astype(float) for c in ("ranks", "size_bytes", "time_us"))
    pred = np.array([float(collective_time_s("all_reduce", s, int(r), hw)) for r, s in zip(n, size)]) * 1e6
    err = np.abs(pred / us - 1)
    big = size >= t.params["compare_from_bytes"]
    expl = {"model": "the nccl-h100-8 all-reduce curve, linear between its sizes, at size x bus factor(ranks) / "
                     "bus factor(8)",
            "held_out_mape_pct": float(100 * err[big].mean()), "held_out_rows": int(big.sum()),
            "by_ranks_mape_pct": {int(r): float(100 * err[big & (n == r)].mean()) for r in np.unique(n)},
            "below_compare_size_mape_pct": float(100 * err[~big].mean()), "note": t.note, "source": t.source}
    return [_row(f"nccl.h100-vidur.all_reduce.{int(r)}gpu.{int(s)}", "NCCL all-reduce inside one node (held out)",
                 f"{int(r)} x H100, {int(s):,} bytes", u, p, "us", "held-out operator", expl)
            for r, s, u, p in zip(n, size, us, pred) if s in NCCL_HELD_OUT_SHOWN]


MEMOPS_SHOWN_TOKENS = (16, 256, 4096)  # of the held-out rows, TP1 at these sizes are listed (the mean covers all)


def memops_rows() -> list[dict[str, Any]]:
    """Element-wise kernels on H100 (Vidur): the curve is fitted on one model's rows; these are other models'
    rows (other hidden sizes, heads, intermediate sizes), held out. `explain` has the mean error over every
    held-out row of that kernel."""
    hw = load_hardware("h100-ib")
    t = table("memory_ops", "h100-vidur")
    rows = []
    for op in ("norm", "rope", "act"):
        nbytes, n, secs, models = memory_rows(t, op, fit=False)
        pred = memory_time_s(nbytes, hw, op, n)
        fit = memory_fit("h100-vidur", op)
        expl = {"model": "floor + bytes / min(HBM x eta, tokens x per-row bandwidth)",
                "fit": {"floor_us": fit.floor_s * 1e6, "eta": fit.eta, "row_gbps": fit.row_bytes_per_s / 1e9},
                "held_out_mape_pct": float(100 * np.mean(np.abs(pred / secs - 1))),
                "held_out_rows": len(secs), "source": t.source}
        tp = np.array([r[t.columns.index("tp")] for r in t.rows
                       if r[t.columns.index("op")] == op and r[t.columns.index("model")] not in t.params["fit_models"]])
        for i in np.flatnonzero((tp == 1) & np.isin(n, MEMOPS_SHOWN_TOKENS)):
            rows.append(_row(f"memops.h100.{op}.{models[i]}.{int(n[i])}", f"{op} kernel on one H100",
                             f"{models[i]}, {int(n[i]):,} tokens, TP1, {nbytes[i] / 1e6:,.2f} MB", secs[i] * 1e6,
                             float(pred[i]) * 1e6, "us", "held-out operator", expl))
    return rows


def _headline_deployment(h: dict[str, Any]):
    """The headline's deployment as the measurement ran it (its attention and dispatch kernel versions, when the
    target names them)."""
    dep = load_deployment(h["deployment"])
    ran = {k: h[k] for k in ("attention_kernel", "dispatch_kernel") if k in h}
    return check_deployment(dep.replace(**ran), f"targets.toml, headline {h['id']}") if ran else dep


@functools.lru_cache(maxsize=None)
def _headline_estimate(hid: str) -> dict[str, Any]:
    h = next(h for h in _targets()["headline"] if h["id"] == hid)
    return estimate(_headline_deployment(h), h.get("batch_per_chip"), h.get("kv_len"), h.get("tokens_per_chip"),
                    h.get("prompt_len"), h.get("eplb", "default"))


def headline_rows() -> list[dict[str, Any]]:
    rows = []
    for h in _targets().get("headline", []):
        est = _headline_estimate(h["id"])
        rows.append(_row(h["id"], h["what"], h["conditions"], h["published"], est[h["metric"]], h["unit"],
                         "end-to-end prediction", {"source": h["source"], "estimate": est}))
    return rows


def _switches(dep) -> list[tuple[str, str, dict[str, Any], str | None]]:
    """(mechanism, what switching it off means, deployment changes, eplb) for the mechanisms this deployment uses."""
    out = []
    if dep.microbatches > 1:
        out.append(("two-microbatch overlap", "one microbatch, everything in order", {"microbatches": 1}, None))
    if dep.mtp_draft_tokens and dep.phase == "decode":
        out.append(("MTP draft token", "no MTP module, 1 token per step", {"mtp_draft_tokens": 0, "mtp_accept": 0.0},
                    None))
    elif dep.mtp_draft_tokens:
        out.append(("MTP module over the prompt (the draft's KV)", "no MTP module", {"mtp_draft_tokens": 0}, None))
    if dep.overlap == "split-cores" and dep.microbatches > 1:
        out.append(("cube-core split between the streams", "each stream gets the whole die",
                    {"stream_share_attention": 1.0, "stream_share_moe": 1.0}, None))
    if dep.comm_compute_share > 0:
        out.append(("SMs held by communication kernels", "compute keeps every SM", {"comm_compute_share": 0.0}, None))
    if dep.launch_overlapped:
        out.append(("graph launches overlapped", "naive launches: CPU gap per graph", {"launch_overlapped": False},
                    None))
    return out


def _headline_predictor(h: dict[str, Any]):
    """(deployment, eplb, predict): predict(changes, eplb) is the headline's metric with the deployment changed."""
    dep = _headline_deployment(h)
    eplb = h.get("eplb", "default")
    args = (h.get("batch_per_chip"), h.get("kv_len"), h.get("tokens_per_chip"), h.get("prompt_len"))

    def predict(changes: dict[str, Any], with_eplb: str | None = None) -> float:
        return estimate(dep.replace(**changes), *args, with_eplb or eplb)[h["metric"]]
    return dep, eplb, predict


def mechanisms(h: dict[str, Any]) -> list[dict[str, Any]]:
    """How each modelled mechanism moves one headline: the prediction with that mechanism switched off."""
    dep, eplb, predict = _headline_predictor(h)
    base = predict({})
    switches = _switches(dep)
    if eplb == "default":
        switches.append(("expert-load imbalance (routing noise after EPLB)", "perfectly balanced experts", {},
                         "perfect"))
    out = []
    for name, off, changes, eplb_off in switches:
        other = predict(changes, eplb_off)
        out.append({"mechanism": name, "switched_off": off, "prediction_without": other,
                    "effect_pct": 100.0 * (base / other - 1.0)})
    return out


def _open_choices(dep) -> list[tuple[str, str, dict[str, Any]]]:
    """(choice the sources leave open, another plausible value, deployment changes) for this deployment."""
    out = []
    if dep.attention_tp == "staged":
        for tp in sorted({2, 8, dep.ranks} - {dep.tp}):
            if dep.ranks % tp == 0:
                out.append(("TP degree of the staged SP/TP attention", f"tp = {tp}", {"tp": tp, "dp": dep.ranks // tp}))
    if dep.overlap == "split-cores" and dep.microbatches > 1 and not dep.split_hbm:
        out.append(("HBM bandwidth under the core split", "each stream gets its cores' share",
                    {"split_hbm": True, "microbatching": "always"}))
    return out


def open_choices(h: dict[str, Any]) -> list[dict[str, Any]]:
    """What one headline would be under other values of the choices the sources do not publish: the spread a
    reader should allow for. None of these is fitted; the deployment file keeps its documented value."""
    dep, _, predict = _headline_predictor(h)
    out = []
    for name, value, changes in _open_choices(dep):
        pred = predict(changes)
        out.append({"choice": name, "value": value, "prediction": pred,
                    "error_pct": 100.0 * (pred / h["published"] - 1.0)})
    return out


def hbm_overlap_excess_s(ops, hw) -> float:
    """Not in the schedule: streams that overlap each get the whole HBM bandwidth. This sums, over every pair of
    overlapping ops on different streams, the bytes their joint demand asks beyond the bandwidth, in seconds: an
    upper bound on what sharing HBM could add to the step."""
    bw = hw.hbm_bytes_per_s * hw.memory_eff
    mem = [o for o in ops if o.duration_s > 0 and o.bytes_moved > 0 and o.category not in ("moe_dispatch",
                                                                                            "moe_combine")]
    extra = 0.0
    for i, a in enumerate(mem):
        for b in mem[i + 1:]:
            if a.stream == b.stream:
                continue
            t = min(a.end_s, b.end_s) - max(a.start_s, b.start_s)
            if t > 0:
                extra += max(a.bytes_moved / a.duration_s + b.bytes_moved / b.duration_s - bw, 0.0) * t / bw
    return extra


def validation_rows() -> list[dict[str, Any]]:
    rows = (ub_rows() + dispatch_rows() + mla_rows() + attention_in_situ_rows() + attention_sdpa_rows()
            + gemm_rows_validate() + bf16_gemm_rows() + gemm_graph_rows() + nccl_rows() + nccl_held_out_rows()
            + memops_rows() + headline_rows())
    tg = _targets()
    default = float(tg.get("default_tolerance_pct", 10.0))
    tol = tg.get("tolerances", {})
    for r in rows:
        match = max((k for k in tol if r["id"].startswith(k)), key=len, default=None)
        r["tolerance_pct"] = float(tol[match]) if match else default
        r["ok"] = bool(abs(r["error_pct"]) <= r["tolerance_pct"])
    return rows


def explain(row_id: str) -> dict[str, Any]:
    """One row with its breakdown; a headline row also lists how each mechanism moves it."""
    for r in validation_rows():
        if r["id"] == row_id:
            for h in _targets().get("headline", []):
                if h["id"] == row_id:
                    r["explain"]["mechanisms"] = mechanisms(h)
                    r["explain"]["open_choices"] = open_choices(h)
                    dep = load_deployment(h["deployment"])
                    if dep.microbatches > 1 and dep.overlap == "split-cores":
                        from harness.step.schedule import decode_work, step_ops
                        ops = step_ops(dep, decode_work(dep, h.get("batch_per_chip") or dep.batch_per_chip,
                                                        h.get("kv_len") or dep.kv_len), h.get("eplb"))
                        r["explain"]["hbm_sharing_bound_ms"] = hbm_overlap_excess_s(ops, dep.hardware) * 1e3
            return r
    from harness.errors import InputError
    raise InputError(f"no validation row '{row_id}' (see `bench validate` for the ids)", field="--explain")
