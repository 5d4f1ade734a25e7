"""Calibration tables (models/calibration/*.toml) and the fits made from them, memoised.

Every efficiency factor of the op cost model is fitted here from a published operator measurement, never from an
end-to-end result. Fits are deterministic closed forms (least squares or two-point), so they cost microseconds."""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from typing import Any

import numpy as np

from harness.errors import InputError
from harness.hardware.specfile import load_spec
from harness.hardware.units import parse_quantity


@dataclass(frozen=True)
class Table:
    id: str
    source: str
    columns: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...]
    params: dict[str, Any]
    note: str = ""

    def col(self, name: str) -> np.ndarray:
        i = self.columns.index(name)
        return np.array([r[i] for r in self.rows])


@functools.lru_cache(maxsize=None)
def tables(file: str) -> dict[str, Table]:
    d, path = load_spec("calibration", file)
    out = {}
    for t in d["tables"]:
        for i, r in enumerate(t["rows"]):
            if len(r) != len(t["columns"]):
                raise InputError(f"row {i + 1} has {len(r)} values for {len(t['columns'])} columns",
                                 path=str(path), where=f"table '{t['id']}'", field="rows")
        out[t["id"]] = Table(t["id"], t["source"], tuple(t["columns"]), tuple(map(tuple, t["rows"])),
                             t.get("params", {}), t.get("note", ""))
    return out


def table(file: str, table_id: str) -> Table:
    found = tables(file)
    if table_id not in found:
        raise InputError(f"unknown calibration table '{table_id}' (in {file}.toml: {', '.join(found)})",
                         field=table_id)
    return found[table_id]


# ---------------------------------------------------------------------------------------------------------------- GEMM

@dataclass(frozen=True)
class GemmFit:
    """t = overhead_s + sqrt(t_compute^2 + t_memory^2), t_compute = flops / (peak * eta_compute), t_memory =
    bytes / (hbm_bw * eta_memory): a GEMM's loads overlap its math partly, so near the ridge point it takes longer
    than either bound (a roofline's max) and less than their sum. The quadrature sum fits the measured tables
    better than either: held-out mean error on H100 BF16 6% against 10% for the sum and 8% for the max."""
    overhead_s: float
    eta_compute: float
    eta_memory: float


def gemm_model_s(flops, nbytes, overhead_s, eta_compute, eta_memory, peak: float, bw: float):
    """The GEMM time model (GemmFit); every argument may be an array (broadcast)."""
    return overhead_s + np.hypot(flops / (peak * eta_compute), nbytes / (bw * eta_memory))


def gemm_rows(t: Table) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(flops, bytes, measured seconds) of each row of a GEMM table (measured as TFLOPS, utilisation or time)."""
    p = t.params
    m, n, k, g = (t.col(c).astype(float) for c in ("m", "n", "k", "groups"))
    flops = 2 * m * n * k * g
    if "tflops" in t.columns:
        secs = flops / (t.col("tflops") * 1e12)
    elif "time_us" in t.columns:
        secs = t.col("time_us").astype(float) * 1e-6
    else:
        secs = flops / (t.col("utilisation") * parse_quantity(p["peak"], "compute"))
    nbytes = g * ((m * k + k * n) * p["in_bytes"] + m * n * p["out_bytes"])
    return flops, nbytes, secs


def fit_part(t: Table, fit: bool = True) -> Table:
    """The rows a table's fits use (fit=True) or holds out (fit=False): with a `model` column and a `fit_models`
    param, the fit models' rows are fitted and the other models' held out; otherwise every row is fitted."""
    models = t.params.get("fit_models")
    if models is None or "model" not in t.columns:
        return t if fit else dataclasses.replace(t, rows=())
    i = t.columns.index("model")
    return dataclasses.replace(t, rows=tuple(r for r in t.rows if (r[i] in models) == fit))


@functools.lru_cache(maxsize=None)
def gemm_fit(table_id: str) -> GemmFit:
    """Least squares in relative error over the table's fit rows; parameters given in params are held fixed."""
    t = fit_part(table("gemm", table_id))
    return _fit_gemm(t, dict(t.params))


_SHAPE_FIT_MIN_ROWS = 3  # three free parameters: a shape needs at least three measurements of its own


@functools.lru_cache(maxsize=None)
def gemm_shape_fits(table_id: str) -> dict[tuple[int, int], GemmFit]:
    """One fit per (n, k) shape that has at least three rows: how a shape's output tiles fill the chip's cores
    (tile and wave quantisation) depends on N and K, so each measured shape keeps its own efficiencies."""
    t = fit_part(table("gemm", table_id))
    n, k = t.col("n").astype(int), t.col("k").astype(int)
    out = {}
    for shape in sorted(set(zip(n.tolist(), k.tolist()))):
        sel = [r for r, nn, kk in zip(t.rows, n, k) if (nn, kk) == shape]
        if len(sel) >= _SHAPE_FIT_MIN_ROWS:
            out[shape] = _fit_gemm(dataclasses.replace(t, rows=tuple(sel)), dict(t.params))
    return out


_ETA_COARSE = np.linspace(0.30, 1.0, 36)   # efficiencies tried first (steps of 0.02), then refined near the best
_ETA_REFINE = np.linspace(-0.02, 0.02, 17)  # around the coarse optimum, in steps of 0.0025


def _fit_gemm(t: Table, p: dict[str, Any]) -> GemmFit:
    """eta_compute and eta_memory on a fixed grid, coarse then fine (deterministic), the overhead in closed form
    (least squares in relative error, >= 0), minimising the squared relative error over the rows; parameters
    given in params (eta_memory, overhead) are held fixed."""
    peak, bw = parse_quantity(p["peak"], "compute"), parse_quantity(p["hbm_bandwidth"], "bandwidth")
    flops, nbytes, secs = gemm_rows(t)
    fixed_m = float(p["eta_memory"]) if "eta_memory" in p else None
    fixed_o = parse_quantity(p["overhead"], "time") if "overhead" in p else None

    def search(etas_c: np.ndarray, etas_m: np.ndarray) -> tuple[float, float, float]:
        eta_c, eta_m = etas_c[:, None, None], etas_m[None, :, None]
        x = gemm_model_s(flops, nbytes, 0.0, eta_c, eta_m, peak, bw)                 # (eta_c, eta_m, row)
        w = 1.0 / secs**2
        o = (np.full(x.shape[:2], fixed_o) if fixed_o is not None
             else np.maximum(((secs - x) * w).sum(axis=2) / w.sum(), 0.0))
        err = (((o[..., None] + x - secs) / secs) ** 2).sum(axis=2)
        i, j = np.unravel_index(int(np.argmin(err)), err.shape)
        return float(o[i, j]), float(etas_c[i]), float(etas_m[j])

    grid_m = np.array([fixed_m]) if fixed_m is not None else _ETA_COARSE
    _, c0, m0 = search(_ETA_COARSE, grid_m)
    fine_m = np.array([fixed_m]) if fixed_m is not None else np.clip(m0 + _ETA_REFINE, 0.05, 1.0)
    return GemmFit(*search(np.clip(c0 + _ETA_REFINE, 0.05, 1.0), fine_m))


# ------------------------------------------------------------------------------------------------- dispatch / combine

def distinct_ranks(experts: int, top_k: int, ranks: int) -> float:
    """Expected number of ranks a token's top-k experts land on, with experts spread evenly over `ranks`
    (uniform routing: the probability a rank is missed is the chance all k picks avoid its experts)."""
    per = experts / ranks
    miss = 1.0
    for i in range(top_k):
        miss *= max(experts - per - i, 0.0) / (experts - i)
    return min(ranks * (1.0 - miss), float(top_k), float(ranks))  # more ranks than experts: one per pick


def wire_time_s(nbytes, ep: int, ranks_per_node: int, bytes_per_s: float, local_bytes_per_s: float | None = None):
    """Time on the wire of a low-latency dispatch/combine's messages. With a local path (NVLink), the messages for
    ranks in the sender's node (a share min(ranks_per_node, ep) / ep: experts spread evenly) go over it while the
    rest go over the main fabric at the same time; without one, every message goes over the main fabric."""
    nbytes = np.asarray(nbytes, float)
    if local_bytes_per_s is None:
        return nbytes / bytes_per_s
    local = min(ranks_per_node, ep) / ep
    return np.maximum(nbytes * local / local_bytes_per_s, nbytes * (1.0 - local) / bytes_per_s)


@dataclass(frozen=True)
class DispatchFit:
    """A low-latency dispatch/combine kernel's cost beyond moving its bytes over the wire, as a function of the EP
    size through d, the distinct ranks a token's top-k experts land on: overhead_s(d) = fixed_s + per_rank_s * d."""
    fixed_s: float
    per_rank_s: float
    wire_bytes_per_s: float  # the fabric bandwidth the table was measured on
    local_bytes_per_s: float | None = None  # its in-node path's, for kernels that have one

    def overhead_s(self, distinct: float) -> float:
        return max(self.fixed_s + self.per_rank_s * distinct, 0.0)


@functools.lru_cache(maxsize=None)
def dispatch_fit(table_id: str, op: str) -> DispatchFit:
    """Two-point fit of `op` ('dispatch' or 'combine') at the table's fit_ep sizes; other rows are held out.

    Every (token, expert) pair is one message: the tables' per-rank bandwidth columns give the same bytes at every
    EP size (tokens x top-k x message), so the latency's growth with EP is not bytes. What the wire does not
    explain (measured latency less the bytes' wire time over the measured fabrics, wire_time_s) is the kernel's
    overhead per call; it grows with EP like the distinct ranks per token (saturating once experts outnumber picks)."""
    t = table("dispatch_combine", table_id)
    p = t.params
    ep, us = list(t.col("ep")), t.col(f"{op}_us")
    wire = parse_quantity(p["fabric_bandwidth"], "bandwidth")
    local = parse_quantity(p["local_fabric_bandwidth"], "bandwidth") if "local_fabric" in p else None
    nbytes = p["tokens"] * p["top_k"] * p[f"{op}_bytes_per_token"]
    (e1, r1), (e2, r2) = ((e, float(us[ep.index(e)]) * 1e-6
                           - float(wire_time_s(nbytes, e, p.get("ranks_per_node", 1), wire, local)))
                          for e in p["fit_ep"])
    d1, d2 = (distinct_ranks(p["experts"], p["top_k"], e) for e in (e1, e2))
    per_rank = (r2 - r1) / (d2 - d1)
    return DispatchFit(r1 - per_rank * d1, per_rank, wire, local)


# ------------------------------------------------------------------------------------------------------------- NCCL

@functools.lru_cache(maxsize=None)
def nccl_curve(table_id: str, op: str) -> tuple[np.ndarray, np.ndarray]:
    """(size_bytes, time_s) of one collective in a NCCL table, sorted by size."""
    t = table("nccl", table_id)
    ops, size, us = t.col("op"), t.col("size_bytes").astype(float), t.col("time_us").astype(float)
    sel = ops == op
    if not sel.any():
        raise InputError(f"NCCL table '{table_id}' has no '{op}' rows", field="collectives")
    order = np.argsort(size[sel])
    size, us = size[sel][order], us[sel][order]
    # a curve needs two sizes to have a slope beyond the largest, and one time per size
    if len(size) < 2 or np.any(np.diff(size) <= 0) or np.any(size <= 0) or np.any(us <= 0):
        raise InputError(f"NCCL table '{table_id}': the '{op}' rows need two or more distinct positive sizes, "
                         f"each with one positive time (got sizes {size.tolist()})", field="rows")
    return size, us * 1e-6


# ------------------------------------------------------------------------------------------------------ attention

def causal_attention_work(tokens, heads, qk_dim, v_dim) -> tuple[np.ndarray, np.ndarray]:
    """(flops, bytes) of one causal sequence's attention kernel, MHA layout, BF16: q, k, v read and o written once."""
    tokens, heads, qk_dim, v_dim = (np.asarray(x, float) for x in (tokens, heads, qk_dim, v_dim))
    return (2 * heads * (qk_dim + v_dim) * tokens * (tokens + 1) / 2,
            2 * tokens * heads * 2 * (qk_dim + v_dim))


def attention_rows(t: Table) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(is_decode, flops, bytes, seconds) of each row of a measured attention table. decode: `batch` requests, one
    query each, over kv_len cached tokens (each KV head's K and V read once, BF16); prefill: `batch` causal
    sequences of q_len tokens."""
    c = {name: t.col(name).astype(float) for name in
         ("batch", "q_len", "kv_len", "q_heads", "kv_heads", "qk_dim", "v_dim", "time_us")}
    decode = t.col("phase") == "decode"
    dims = c["qk_dim"] + c["v_dim"]
    causal_flops, causal_bytes = causal_attention_work(c["q_len"], c["q_heads"], c["qk_dim"], c["v_dim"])
    flops = c["batch"] * np.where(decode, 2 * c["q_heads"] * dims * c["kv_len"], causal_flops)
    nbytes = c["batch"] * np.where(decode, 2 * c["kv_len"] * c["kv_heads"] * dims, causal_bytes)
    return decode, flops, nbytes, c["time_us"] * 1e-6


@functools.lru_cache(maxsize=None)
def attention_overhead_fit(table_id: str) -> float:
    """Fixed seconds per attention call: least squares in relative error over the table's decode rows (memory-bound:
    a few flops per byte), their streaming time at the table's eta_memory held fixed. Closed form, never < 0."""
    t = table("attention", table_id)
    decode, _, nbytes, secs = attention_rows(t)
    stream = nbytes[decode] / (parse_quantity(t.params["hbm_bandwidth"], "bandwidth") * t.params["eta_memory"])
    return fixed_time_fit(secs[decode], stream)


def fixed_time_fit(secs, busy_s) -> float:
    """The constant c >= 0 minimising the squared relative error of c + busy_s against the measured secs."""
    secs, busy_s = np.asarray(secs, float), np.asarray(busy_s, float)
    w = 1.0 / secs**2
    return max(float(((secs - busy_s) * w).sum() / w.sum()), 0.0)


# ------------------------------------------------------------------------------------------------ memory-bound ops

@dataclass(frozen=True)
class MemoryFit:
    """t = floor_s + bytes / min(hbm_bw * eta, rows * row_bytes_per_s), per kernel: an element-wise kernel works on
    its rows (tokens) in parallel, each streaming at most row_bytes_per_s, until the chip's HBM caps it."""
    floor_s: float
    eta: float
    row_bytes_per_s: float

    def time_s(self, nbytes, rows, hbm_bytes_per_s: float):
        bw = np.minimum(hbm_bytes_per_s * self.eta, np.asarray(rows, float) * self.row_bytes_per_s)
        return self.floor_s + np.asarray(nbytes, float) / bw


def memory_rows(t: Table, op: str, fit: bool | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(bytes, rows, seconds, model names) of one op kind's rows; fit True: only the fit models, False: held out."""
    col = {c: i for i, c in enumerate(t.columns)}
    sel = [r for r in (t if fit is None else fit_part(t, fit)).rows if r[col["op"]] == op]
    return (np.array([float(r[col["bytes"]]) for r in sel]), np.array([float(r[col["tokens"]]) for r in sel]),
            np.array([float(r[col["time_us"]]) * 1e-6 for r in sel]), np.array([r[col["model"]] for r in sel]))


_ETA_GRID = np.linspace(0.05, 1.0, 96)
_ROW_BW_GRID = np.geomspace(1e8, 1e12, 401)  # bytes/s one row (token) of an element-wise kernel can stream


@functools.lru_cache(maxsize=None)
def memory_fit(table_id: str, op: str) -> MemoryFit:
    """Mean relative error minimised over the fit models' rows of `op` (norm, rope, act): eta and the per-row
    bandwidth on fixed grids (deterministic), the floor in closed form (least squares in relative error, >= 0)."""
    t = table("memory_ops", table_id)
    nbytes, rows, secs, _ = memory_rows(t, op, fit=True)
    if not len(secs):
        raise InputError(f"memory-op table '{table_id}' has no '{op}' rows for its fit models", field="rows")
    hbm = parse_quantity(t.params["hbm_bandwidth"], "bandwidth")
    w2 = 1.0 / secs**2
    best = (np.inf, 0.0, 1.0, 1.0)
    for row_bw in _ROW_BW_GRID:
        x = nbytes / np.minimum(hbm * _ETA_GRID[:, None], rows * row_bw)        # (eta, row)
        floor = np.maximum(((secs - x) * w2).sum(axis=1) / w2.sum(), 0.0)
        err = (np.abs(floor[:, None] + x - secs) / secs).mean(axis=1)
        k = int(np.argmin(err))
        if err[k] < best[0]:
            best = (float(err[k]), float(floor[k]), float(_ETA_GRID[k]), float(row_bw))
    return MemoryFit(best[1], best[2], best[3])
