"""Streaming importer for PyTorch profiler / Kineto Chrome-trace JSON (`.json` or `.json.gz`).

Events are read one at a time with ijson and only the fields needed are kept, so memory stays a small
multiple of the number of GPU ops, not of the file size.

Dependencies built:
- stream order (implicit in the op graph);
- `cuda_sync` "Stream Wait Event" GPU events (newer Kineto): the first op launched on the waiting stream after
  the wait call depends on the last op launched on `wait_on_stream` before the recorded event (by correlation
  id, which grows with launch order);
- where a trace has no `cuda_sync` events, `cudaStreamWaitEvent` runtime calls: the next op launched after
  the call waits on the last op launched before it on another stream. Kineto does not record which event
  or stream the call names, so an edge that contradicts the recorded timeline (the dependency ending after
  the waiter started) cannot be real and is dropped; the count is kept in `meta["sync_edges_dropped"]`;
- SM capacity: kernels that each fill the device's SMs run one at a time across streams (`_sm_capacity_edges`).
Each op's release time is the end of its CPU launch call (`Op.release_s`): the GPU cannot start it earlier.
Launches are tied to GPU ops by `args.correlation` (the id the `ac2g` / `async_gpu` flow events carry) within
the device's host process. Streams are per device (`args.device`, else pid): a trace of several GPUs names them
"device:stream", and SM capacity is shared by one device's kernels only.
"""

from __future__ import annotations

import bisect
import gzip
import zlib
from pathlib import Path
from typing import BinaryIO

import ijson
import numpy as np

from harness.errors import InputError
from harness.jsonfile import GuardedReader
from harness.ops.graph import Op, OpGraph, stream_key

# A kernel with at least this many blocks per SM (grid / SM count) fills the SMs it is given (see
# _sm_capacity_edges).
SM_FILL_BLOCKS_PER_SM = 0.5
MIN_SM_SHARE = 0.05  # partial kernels beside a full one never leave it less than this (their grids can overlap)
INFERRED_WAIT_MIN_S = 10e-6  # idle beyond a kernel launch latency (a few microseconds) that needs a cause
SM_TAIL_SHARE = 0.1  # longest overlap of two such kernels still read as one draining while the next fills in
# Every phase of the Chrome Trace Event format; anything else is rejected.
PHASES = frozenset("BEXiIbneCstfPNODMVvRc()")
HOST_COPIES = {"HtoD": "copy_h2d", "DtoH": "copy_d2h"}
GPU_CATS = {"kernel": "kernel", "Kernel": "kernel", "gpu_memcpy": "memcpy", "Memcpy": "memcpy",
            "gpu_memset": "memset", "Memset": "memset"}
RUNTIME_CATS = frozenset({"cuda_runtime", "Runtime", "cuda_driver"})
ANNOTATION_CATS = frozenset({"user_annotation", "gpu_user_annotation"})
NCCL_DTYPE_BYTES = {"Float": 4, "Half": 2, "BFloat16": 2, "Double": 8, "Int": 4, "Long": 8, "Byte": 1,
                    "Char": 1, "Float8_e4m3fn": 1, "Float8_e5m2": 1, "Bool": 1}
# What a GPU event's args may tell about its work, and the type each must have
GPU_ARGS = {"Collective name": "string", "In msg nelems": "number", "dtype": "string", "Group size": "integer",
            "bytes": "number", "External id": "integer", "blocks per SM": "number"}
MM_OPS = frozenset({"aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::matmul", "aten::linear"})


def open_maybe_gzip(path: Path) -> BinaryIO:
    with open(path, "rb") as probe:
        magic = probe.read(2)
    return gzip.open(path, "rb") if magic == b"\x1f\x8b" else open(path, "rb")


def _first_char(path: Path) -> bytes:
    with open_maybe_gzip(path) as f:
        while True:
            c = f.read(1)
            if not c or not c.isspace():
                return c


def iter_events(path: Path):
    """Yield (index, event) from a Chrome trace (object with traceEvents, or bare array), with clear errors."""
    first = _first_char(path)
    if first not in (b"{", b"["):
        raise InputError("not a Chrome trace: expected a JSON object or array", path=str(path))
    prefix = "traceEvents.item" if first == b"{" else "item"
    index = -1
    try:
        with open_maybe_gzip(path) as f:
            events = ijson.items(GuardedReader(f, str(path)), prefix, use_float=True)
            for index, event in enumerate(events):  # noqa: B007
                yield index, event
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise InputError(f"truncated or corrupt gzip after event {index} ({exc})", path=str(path)) from None
    except ijson.common.JSONError as exc:
        # yajl's message runs on with lines of context and a pointer: its first line says what is wrong
        what = str(exc.args[0].decode(errors="replace") if isinstance(exc.args[0], bytes) else exc).splitlines()[0]
        where = f"after event {index}" if index >= 0 else "before the first event"
        raise InputError(f"malformed JSON {where}: {what}", path=str(path)) from None


MAX_ABS = 1e17  # beyond any timestamp (us since 1970: 1.7e15), duration, byte or element count a trace holds
_KINDS = {"number": "a number", "integer": "an integer", "object": "a JSON object", "string": "a string"}


def _field(obj: dict, key: str, kind: str, path: Path, index: int, prefix: str = ""):
    """obj[key] checked to be of `kind` (a key of _KINDS; numbers finite, within MAX_ABS), None where absent or
    null; anything else is one InputError naming the event and field (`prefix` + `key`, e.g. 'args.bytes')."""
    value = obj.get(key)
    if value is None:
        return None
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if number and kind in ("number", "integer") and not abs(value) <= MAX_ABS:
        problem = f"must be a number of magnitude at most {MAX_ABS:.0e}"
    elif kind == "number" and number:
        return float(value)
    elif kind == "integer" and number and float(value).is_integer():
        return int(value)
    elif (kind == "object" and isinstance(value, dict)) or (kind == "string" and isinstance(value, str)):
        return value
    else:
        problem = f"must be {_KINDS[kind]}"
    shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
    raise InputError(f"{problem}, got {shown}", path=str(path), where=f"event {index}", field=prefix + key)


def _num(event: dict, key: str, path: Path, index: int) -> float:
    value = _field(event, key, "number", path, index)
    if value is None:
        raise InputError("missing", path=str(path), where=f"event {index}", field=key)
    return value


def load_kineto(path: str | Path) -> OpGraph:
    path = Path(path)
    # GPU events carry their device (args.device, else pid) and stream; CPU events their host process (pid).
    # Correlation ids are unique only within one host process, so launches are keyed by (host pid, correlation).
    gpu: list[tuple] = []  # (ts_us, dur_us, (device, stream), name, correlation, device, args-subset)
    launch_ts: dict[tuple, float] = {}  # (host pid, correlation) -> CPU launch time (us)
    launch_end: dict[tuple, float] = {}  # (host pid, correlation) -> end of the CPU launch call (us)
    launch_tid: dict[tuple, object] = {}  # (host pid, correlation) -> launching CPU thread (host pid, tid)
    waits: list[tuple[tuple, object]] = []  # cudaStreamWaitEvent: ((host pid, correlation), CPU thread)
    syncs: list[tuple] = []  # cuda_sync stream waits: (device, stream, wait_on_stream, record corr, wait call corr)
    annotations: list[tuple[float, float, str]] = []  # CPU user annotations (ts, end, name)
    gpu_annotations: list[tuple[float, float, str, tuple]] = []  # (ts, end, name, (device, stream))
    shapes: dict[int, tuple[str, list]] = {}  # External id -> (op name, Input Dims) for matmul-like cpu ops
    count = 0
    for index, event in iter_events(path):
        count += 1
        if not isinstance(event, dict):
            raise InputError("event is not a JSON object", path=str(path), where=f"event {index}")
        ph = _field(event, "ph", "string", path, index)
        if ph is None:
            raise InputError("missing", path=str(path), where=f"event {index}", field="ph")
        if ph not in PHASES:
            raise InputError(f"unknown phase {ph!r}", path=str(path), where=f"event {index}", field="ph")
        if ph == "M":
            continue
        ts = _num(event, "ts", path, index)
        if ph != "X":
            continue
        dur = _num(event, "dur", path, index)
        if dur < 0:
            raise InputError(f"negative duration {dur}", path=str(path), where=f"event {index}", field="dur")
        cat = event.get("cat")
        args = _field(event, "args", "object", path, index) or {}
        pid = str(event.get("pid"))
        if cat in GPU_CATS:
            stream = args.get("stream", event.get("tid"))
            corr = _field(args, "correlation", "integer", path, index, "args.")
            extra = {k: _field(args, k, kind, path, index, "args.") for k, kind in GPU_ARGS.items()
                     if args.get(k) is not None}
            device = str(args.get("device", pid))
            gpu.append((ts, dur, (device, str(stream)), str(event.get("name", "")), -1 if corr is None else corr,
                        device, extra))
        elif cat in RUNTIME_CATS:
            corr = _field(args, "correlation", "integer", path, index, "args.")
            if corr is not None:
                key = (pid, corr)
                launch_ts[key] = ts
                launch_end[key] = ts + dur
                launch_tid[key] = (pid, str(event.get("tid")))
                if event.get("name") == "cudaStreamWaitEvent":
                    waits.append((key, launch_tid[key]))
        elif cat == "cuda_sync":
            if args.get("cuda_sync_kind") == "Stream Wait Event" and args.get("wait_on_stream", -1) != -1:
                record = _field(args, "wait_on_cuda_event_record_corr_id", "integer", path, index, "args.")
                wait = _field(args, "correlation", "integer", path, index, "args.")
                syncs.append((str(args.get("device", pid)), str(args.get("stream")), str(args["wait_on_stream"]),
                              -1 if record is None else record, -1 if wait is None else wait))
        elif cat == "user_annotation":
            annotations.append((ts, ts + dur, str(event.get("name", ""))))
        elif cat == "gpu_user_annotation":
            gpu_annotations.append((ts, ts + dur, str(event.get("name", "")),
                                    (str(args.get("device", pid)), str(event.get("tid")))))
        elif cat == "cpu_op" and event.get("name") in MM_OPS and "Input Dims" in args:
            ext = _field(args, "External id", "integer", path, index, "args.")
            if ext is not None:
                shapes[ext] = (event["name"], args["Input Dims"])
    if count == 0:
        raise InputError("no trace events", path=str(path))
    if not gpu:
        raise InputError("no GPU kernels in this trace (no events with cat 'kernel', 'gpu_memcpy' or 'gpu_memset')",
                         path=str(path))
    host = _host_of_devices(gpu, launch_ts)
    name = _stream_names({g[2] for g in gpu})
    gpu = [(ts, dur, name[s], n, (host.get(d, ""), corr), d, extra) for ts, dur, s, n, corr, d, extra in gpu]
    syncs = [(name.get((d, s)), name.get((d, w)), (host.get(d, ""), record), (host.get(d, ""), wait))
             for d, s, w, record, wait in syncs]
    gpu_annotations = [(ts, end, n, name.get(s)) for ts, end, n, s in gpu_annotations]
    return _build(path, gpu, launch_ts, launch_end, launch_tid, waits, syncs, annotations, gpu_annotations, shapes)


def _host_of_devices(gpu: list[tuple], launches: dict[tuple, float]) -> dict[str, str]:
    """Each device's host process: the one whose launches' correlation ids match most of the device's kernels
    (a process's correlation ids are its own: two ranks' traces merged into one file reuse them); on a tie, one
    no other device took (devices and hosts in order: rank i's process drives device i)."""
    hosts: dict[int, list[str]] = {}
    for pid, corr in launches:
        hosts.setdefault(corr, []).append(pid)
    votes: dict[str, dict[str, int]] = {}
    for g in gpu:
        for pid in hosts.get(g[4], ()):
            tally = votes.setdefault(g[2][0], {})
            tally[pid] = tally.get(pid, 0) + 1
    out: dict[str, str] = {}
    for device in sorted(votes, key=stream_key):
        tally = votes[device]
        best = sorted((h for h in tally if tally[h] == max(tally.values())), key=stream_key)
        out[device] = next((h for h in best if h not in out.values()), best[0])
    return out


def _stream_names(streams: set[tuple[str, str]]) -> dict[tuple[str, str], str]:
    """(device, stream) -> the stream's name: its number on a single device, "device:stream" across several."""
    if len({d for d, _ in streams}) == 1:
        return {(d, s): s for d, s in streams}
    return {(d, s): f"{d}:{s}" for d, s in streams}


def _build(path, gpu, launch_ts, launch_end, launch_tid, waits, syncs, annotations, gpu_annotations,
           shapes) -> OpGraph:
    gpu.sort(key=lambda g: (g[0], g[4]))
    t0 = gpu[0][0]
    ops: list[Op] = []
    for ts, dur, stream, name, corr, _device, extra in gpu:
        op = Op(name=name, stream=stream, duration_s=dur * 1e-6, start_s=(ts - t0) * 1e-6)
        if corr in launch_end:
            # Integer-microsecond timestamps: a kernel seen to start just before its launch call returned
            # (rounding) is released at its start, never later.
            op.release_s = (min(launch_end[corr], ts) - t0) * 1e-6
        _work_from_args(op, extra, shapes)
        blocks_per_sm = float(extra.get("blocks per SM") or 0.0)
        if 0.0 < blocks_per_sm < 1.0:   # launched on part of the chip: a GEMM on 112 of 132 SMs runs at 112/132
            op.sm_share = blocks_per_sm
        ops.append(op)
    bps = [float(g[6].get("blocks per SM") or 0.0) for g in gpu]
    # SMs are shared by the kernels of one device only
    per_device = [[b if g[5] == device else 0.0 for b, g in zip(bps, gpu)] for device in {g[5] for g in gpu}]
    for b in per_device:
        _shares_left_by_partial_kernels(ops, b)
    corr = [g[4] for g in gpu]
    _annotate(ops, gpu, launch_ts, annotations, gpu_annotations)
    dropped = _sync_from_cuda_sync(ops, corr, syncs) if syncs else _sync_from_wait_calls(ops, corr, waits, launch_tid)
    sync_edges = sum(len(o.deps) for o in ops)
    sm_edges = sum(_sm_capacity_edges(ops, [x >= SM_FILL_BLOCKS_PER_SM for x in b]) for b in per_device)
    meta = {"format": "kineto", "source": str(path), "sync_edges": sync_edges, "sync_edges_dropped": dropped,
            "sm_edges": sm_edges, "inferred_wait_edges": _inferred_waits(ops),
            "launch_release_ops": sum(op.release_s is not None for op in ops)}
    return OpGraph(ops, meta)


def _shares_left_by_partial_kernels(ops: list[Op], blocks_per_sm: list[float]) -> None:
    """A kernel whose grid fills the chip (a block per SM or more) gets only the SMs that kernels with a partial
    grid (under a block per SM, e.g. DeepEP's 20-block all-to-all holding 20 of 132 SMs for its whole run) leave
    free while it runs: its sm_share is one minus their time-averaged SM fraction over its run. (Kernels of one
    stream never overlap, so every partial kernel running beside it is on another stream.)"""
    part = [(ops[i].start_s, ops[i].start_s + ops[i].duration_s, b)
            for i, b in enumerate(blocks_per_sm) if 0.0 < b < 1.0 and ops[i].duration_s > 0]
    if not part:
        return
    # held(t): the SM fraction partial kernels hold, a step function; cum(t) its integral from the first event
    edges = sorted([(s, f) for s, _, f in part] + [(e, -f) for _, e, f in part])
    t = np.array([x for x, _ in edges])
    held = np.cumsum([f for _, f in edges])          # after each event
    cum = np.concatenate([[0.0], np.cumsum(held[:-1] * np.diff(t))])

    def integral(x: np.ndarray) -> np.ndarray:
        k = np.clip(np.searchsorted(t, x, side="right") - 1, 0, len(t) - 1)
        return np.where(x <= t[0], 0.0, cum[k] + held[k] * (x - t[k]))

    full = [i for i, b in enumerate(blocks_per_sm) if b >= 1.0 and ops[i].duration_s > 0]
    if not full:
        return
    lo = np.array([ops[i].start_s for i in full])
    dur = np.array([ops[i].duration_s for i in full])
    share = np.maximum(1.0 - (integral(lo + dur) - integral(lo)) / dur, MIN_SM_SHARE)
    for i, x in zip(full, share):
        ops[i].sm_share = min(float(x), 1.0)


def _work_from_args(op: Op, extra: dict, shapes: dict) -> None:
    """Work the trace states: NCCL message sizes, memcpy bytes, matmul shapes of the launching CPU op."""
    op.collective = extra.get("Collective name", "")
    if "In msg nelems" in extra:
        size = NCCL_DTYPE_BYTES.get(str(extra.get("dtype")), 0)
        op.bytes_sent = float(extra["In msg nelems"]) * size
        op.group_ranks = int(extra.get("Group size") or 0)
    if "bytes" in extra:
        op.bytes_moved = float(extra["bytes"])
        # CUDA names a copy's direction ("Memcpy HtoD (Pinned -> Device)"): host copies cross the host link, not HBM
        direction = op.name.split(" (")[0].removeprefix("Memcpy ")
        op.kernel = HOST_COPIES.get(direction, op.kernel)
        if direction == "DtoD":  # read and written in HBM (specs' copy efficiency is measured on read + write)
            op.bytes_moved *= 2
        if op.name.startswith("Memcpy PtoP"):  # a peer copy crosses the fabric: priced as a send
            op.bytes_sent, op.group_ranks = op.bytes_moved, 2
    ext = extra.get("External id")
    if ext is not None and int(ext) in shapes:
        op.flops = _matmul_flops(*shapes[int(ext)])


def _matmul_flops(name: str, dims: list) -> float:
    """2mnk of the launching matmul; 0 where its Input Dims do not read as shapes."""
    try:
        if name in ("aten::addmm", "aten::baddbmm"):
            dims = dims[1:]
        a, b = dims[0], dims[1]
        if name == "aten::linear":  # weight is (out, in)
            flops = 2.0 * _prod(a) * b[0]
        elif len(a) == 3 and len(b) == 3:
            flops = 2.0 * a[0] * a[1] * a[2] * b[2]
        else:
            flops = 2.0 * _prod(a) * b[-1]
    except (LookupError, TypeError):
        return 0.0
    return flops if isinstance(flops, float) and 0.0 <= flops <= MAX_ABS * MAX_ABS else 0.0


def _prod(xs) -> float:
    out = 1.0
    for x in xs:
        out *= x
    return out


def _annotate(ops, gpu, launch_ts, annotations, gpu_annotations) -> None:
    """Innermost user annotation around each op's launch (CPU), else around the op itself (GPU, same stream)."""
    occurrence: dict[str, int] = {}
    ordinal: dict[tuple[float, str], int] = {}
    for ts, _end, name in sorted(annotations):
        ordinal[(ts, name)] = occurrence.get(name, 0)
        occurrence[name] = ordinal[(ts, name)] + 1
    order = sorted(range(len(ops)), key=lambda i: launch_ts.get(gpu[i][4], float("inf")))
    spans = sorted(annotations)
    stack: list[tuple[float, float, str]] = []
    j = 0
    for i in order:
        t = launch_ts.get(gpu[i][4])
        if t is None:
            continue
        while j < len(spans) and spans[j][0] <= t:
            stack.append(spans[j])
            j += 1
        # Innermost = latest-starting annotation still open at t.
        for ts, end, name in reversed(stack):
            if end >= t:
                ops[i].annotation = name
                ops[i].layer = ordinal[(ts, name)]
                break
        while stack and stack[-1][1] < t:
            stack.pop()
    for ts, end, name, stream in gpu_annotations:
        for op, g in zip(ops, gpu):
            if not op.annotation and op.stream == stream and ts <= g[0] <= end:
                op.annotation = name


def _by_stream(ops: list[Op], corr: list[int]) -> dict[str, tuple[list[int], list[int]]]:
    """Per stream: op indices and their correlation ids, in launch (correlation) order."""
    streams: dict[str, list[int]] = {}
    for i, op in enumerate(ops):
        streams.setdefault(op.stream, []).append(i)
    out = {}
    for s, idx in streams.items():
        idx.sort(key=lambda i: corr[i])
        out[s] = (idx, [corr[i] for i in idx])
    return out


def _consistent(ops: list[Op], dep: int, waiter: int) -> bool:
    # Integer-microsecond timestamps: allow one microsecond of rounding.
    return ops[dep].start_s + ops[dep].duration_s <= ops[waiter].start_s + 1e-6


def _add_dep(ops: list[Op], dep: int, waiter: int) -> bool:
    if dep == waiter or ops[dep].stream == ops[waiter].stream:
        return True
    if not _consistent(ops, dep, waiter):
        return False
    if dep not in ops[waiter].deps:
        ops[waiter].deps.append(dep)
    return True


def _sync_from_cuda_sync(ops, corr, syncs) -> int:
    """The first op launched on the waiting stream after the cudaStreamWaitEvent call (by correlation: the GPU may
    run far behind the CPU, so not by time) depends on the last op launched on `wait_on_stream` before the event
    was recorded."""
    per_stream = _by_stream(ops, corr)
    dropped = 0
    for stream, wait_on, record_corr, wait_corr in syncs:
        if stream not in per_stream or wait_on not in per_stream:
            continue
        idx, corrs = per_stream[stream]
        k = bisect.bisect_right(corrs, wait_corr)
        if k == len(idx):
            continue
        widx, wcorr = per_stream[wait_on]
        m = bisect.bisect_left(wcorr, record_corr) - 1
        if m < 0:
            continue
        dropped += not _add_dep(ops, widx[m], idx[k])
    return dropped


def _sync_from_wait_calls(ops, corr, waits, launch_tid) -> int:
    """cudaStreamWaitEvent without GPU-side sync records: infer the edge from launch order on the same thread.
    Kineto does not say which stream waits or which event, so two readings are tried, each kept only where the
    recorded timeline agrees with it: (a) the next op launched waits for the last op launched before the call
    on another stream (event recorded earlier, wait issued on the stream launched next); (b) the next op
    launched on another stream than the last one waits for that last op (event recorded right after it, wait
    issued on the other stream)."""
    threads: dict[object, list[int]] = {}
    for i in sorted(range(len(ops)), key=lambda i: corr[i]):
        threads.setdefault(launch_tid.get(corr[i]), []).append(i)
    corrs = {tid: [corr[i] for i in idx] for tid, idx in threads.items()}
    dropped = 0
    for wait_corr, tid in waits:
        order = threads.get(tid, [])
        k = bisect.bisect_right(corrs.get(tid, []), wait_corr)
        if k == len(order) or k == 0:
            continue
        found = False
        for dep, waiter in (_reading_a(ops, order, k), _reading_b(ops, order, k)):
            if dep is not None and waiter is not None:
                found |= _add_dep(ops, dep, waiter)
        dropped += not found
    return dropped


def _reading_a(ops, order, k):
    waiter = order[k]
    m = k - 1
    while m >= 0 and ops[order[m]].stream == ops[waiter].stream:
        m -= 1
    if m < 0:
        return None, None
    # The event may have been recorded earlier than the wait call: walk back on that stream to the
    # latest op consistent with the recorded timeline.
    stream = ops[order[m]].stream
    while m >= 0 and (ops[order[m]].stream != stream or not _consistent(ops, order[m], waiter)):
        m -= 1
    return (order[m], waiter) if m >= 0 else (None, None)


def _reading_b(ops, order, k):
    dep = order[k - 1]
    w = k
    while w < len(order) and ops[order[w]].stream == ops[dep].stream:
        w += 1
    return (dep, order[w]) if w < len(order) else (None, None)


def _sm_capacity_edges(ops: list[Op], fills: list[bool]) -> int:
    """Kernels whose grid has at least half a block per SM (Kineto's `blocks per SM` = grid blocks / SMs) may
    take every SM they can get: then the next such kernel, on another stream, can only start as the first one's
    blocks drain. Each such kernel gets the previous one (in recorded start order) as a dependency when the
    recording shows exactly that: the two overlapped by at most the drain tail (SM_TAIL_SHARE of the shorter
    one). Pairs that ran side by side for longer evidently fit on the device together and get no edge. The
    replay ignores the tail overlap. Returns the edges added."""
    added = 0
    prev = -1
    for i in sorted((i for i, f in enumerate(fills) if f), key=lambda i: ops[i].start_s):
        if prev >= 0 and ops[prev].stream != ops[i].stream and prev not in ops[i].deps:
            overlap = ops[prev].start_s + ops[prev].duration_s - ops[i].start_s
            if overlap <= max(1e-6, SM_TAIL_SHARE * min(ops[prev].duration_s, ops[i].duration_s)):
                ops[i].deps.append(prev)
                added += 1
        prev = i
    return added


def _inferred_waits(ops: list[Op]) -> int:
    """A cross-stream event wait Kineto did not tie to its streams (e.g. the wait was issued from another CPU
    thread than the launch): an op that sat idle for more than INFERRED_WAIT_MIN_S after it was ready (stream
    predecessor and deps ended, launch returned) while an op on another stream ended in that window is taken
    to have waited for the latest such op. Evidence is timing only, so these edges are counted apart
    (`meta["inferred_wait_edges"]`). Returns the edges added."""
    ends = sorted((op.start_s + op.duration_s, i) for i, op in enumerate(ops))
    keys = [e for e, _ in ends]
    last_end: dict[str, float] = {}
    added = 0
    for i, op in enumerate(ops):
        ready = max([last_end.get(op.stream, 0.0), op.release_s if op.release_s is not None else 0.0]
                    + [ops[d].start_s + ops[d].duration_s for d in op.deps])
        last_end[op.stream] = op.start_s + op.duration_s
        if op.start_s - ready <= INFERRED_WAIT_MIN_S:
            continue
        k = bisect.bisect_right(keys, op.start_s + 1e-6) - 1
        while k >= 0 and keys[k] > ready and ops[ends[k][1]].stream == op.stream:
            k -= 1
        if k >= 0 and keys[k] > ready and ends[k][1] not in op.deps:
            op.deps.append(ends[k][1])
            added += 1
    return added
