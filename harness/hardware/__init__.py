"""Hardware backends as data: `load_hardware(name, overrides=())` -> `Hardware` (SI units, per rank).

A rank is what runs one EP/DP rank: one die of an Ascend 910C, one GPU. `ranks_per_chip` turns per-rank figures
into the per-chip (per NPU package / per GPU) figures that users and papers quote."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from harness.hardware.specfile import list_models, load_spec
from harness.hardware.units import parse_quantity

__all__ = ["Fabric", "Hardware", "list_models", "load_hardware"]


@dataclass(frozen=True)
class Fabric:
    name: str
    domain_chips: int
    bandwidth_bytes_per_s: float     # per rank, each way
    latency_s: float
    collectives: str                 # "alpha-beta" or a NCCL table id in models/calibration/nccl.toml
    # Where the fabric is measured per path (CloudMatrix384 UB, Table 1): reads and same-node peers apart from the
    # figure above (writes to a peer in another node). None: the figure above holds for that path too.
    read_bandwidth_bytes_per_s: float | None = None
    read_latency_s: float | None = None
    intra_node_bandwidth_bytes_per_s: float | None = None
    intra_node_latency_s: float | None = None
    intra_node_read_bandwidth_bytes_per_s: float | None = None
    intra_node_read_latency_s: float | None = None

    def path(self, op: str, same_node: bool) -> tuple[float, float]:
        """(bytes/s, latency s) of one rank's `op` ("read" or "write") with a peer in the same node or another."""
        bw, lat = self.bandwidth_bytes_per_s, self.latency_s
        if op == "read":
            bw, lat = _or(self.read_bandwidth_bytes_per_s, bw), _or(self.read_latency_s, lat)
            if same_node:
                bw = _or(self.intra_node_read_bandwidth_bytes_per_s, bw)
                lat = _or(self.intra_node_read_latency_s, lat)
        elif same_node:
            bw, lat = _or(self.intra_node_bandwidth_bytes_per_s, bw), _or(self.intra_node_latency_s, lat)
        return bw, lat


def _or(value: float | None, default: float) -> float:
    return default if value is None else value


@dataclass(frozen=True)
class Hardware:
    name: str
    description: str
    kind: str
    chips: int
    chips_per_node: int
    default_precision: str
    cost_per_chip_hour_usd: float
    chip_name: str
    ranks_per_chip: int
    matrix_cores: int
    vector_cores: int
    hbm_bytes: float                 # per rank
    hbm_bytes_per_s: float           # per rank
    peak_flops: tuple[tuple[str, float], ...]   # (precision, flop/s per rank)
    gemm_tables: tuple[tuple[str, str], ...]    # (precision, calibration table id)
    attention_compute_eff: float
    attention_memory_eff: float
    memory_eff: float
    scale_up: Fabric
    scale_out: Fabric
    host_uniform: bool
    host_read_bytes_per_s: float
    host_write_bytes_per_s: float
    host_latency_s: float            # reads (and writes, unless host_write_latency_s differs) in the same node
    host_remote_read_bytes_per_s: float
    host_remote_write_bytes_per_s: float
    host_remote_latency_s: float
    dram_per_node_bytes: float
    ssd_per_node_bytes: float
    ssd_read_bytes_per_s: float      # SSD tier: one fetch's path from the drives (or volume) to host memory
    ssd_latency_s: float
    object_store_bytes_per_s: float
    moe_low_latency_table: str
    moe_bulk_efficiency: float       # bulk all-to-all bandwidth over its fabric's (scale_up: rank scope; scale_out: node)
    moe_bulk_scope: str
    graph_launch_s: float
    host_write_latency_s: float = 0.0
    host_remote_write_latency_s: float = 0.0
    memory_ops_table: str | None = None  # calibration table of measured element-wise kernels (memory_ops.toml)
    attention_compute_by_kernel: tuple[tuple[str, float], ...] = ()  # other attention-kernel versions' utilisation
    moe_low_latency_by_kernel: tuple[tuple[str, str], ...] = ()  # other dispatch/combine kernel versions' tables
    attention_overhead_s: float = 0.0  # fixed time of one attention kernel call (0 where none is measured)
    kernel_floor_s: float = 0.0      # device time of the smallest kernel in a graph: a copy's fixed cost (0: unmeasured)

    def peak(self, precision: str) -> float:
        """Dense peak flop/s per rank at `precision`; a precision the chip lacks is an error, not a silent fallback."""
        for p, v in self.peak_flops:
            if p == precision:
                return v
        from harness.errors import InputError
        have = ", ".join(p for p, _ in self.peak_flops)
        raise InputError(f"{self.chip_name} has no {precision} peak (it has: {have})", path=self.name,
                         field="precision")

    def gemm_table(self, precision: str) -> str:
        for p, t in self.gemm_tables:
            if p == precision:
                return t
        return self.gemm_tables[0][1]  # same kernel-efficiency curve, other peak (documented in the spec)

    @property
    def ranks_per_node(self) -> int:
        return self.chips_per_node * self.ranks_per_chip


def _fabric(d: dict[str, Any]) -> Fabric:
    def opt(key: str, kind: str) -> float | None:
        return parse_quantity(d[key], kind) if key in d else None

    return Fabric(d["name"], d["domain_chips"], parse_quantity(d["bandwidth"], "bandwidth"),
                  parse_quantity(d["latency"], "time"), d["collectives"],
                  opt("read_bandwidth", "bandwidth"), opt("read_latency", "time"),
                  opt("intra_node_bandwidth", "bandwidth"), opt("intra_node_latency", "time"),
                  opt("intra_node_read_bandwidth", "bandwidth"), opt("intra_node_read_latency", "time"))


@functools.lru_cache(maxsize=256)
def _load(name: str, overrides: tuple[tuple[str, str], ...]) -> Hardware:
    d, path = load_spec("hardware", name, overrides)
    c, h, q = d["chip"], d["host"], parse_quantity
    _check_tables(d, path)
    return Hardware(
        name=d["name"], description=d["description"], kind=d["kind"], chips=d["chips"],
        chips_per_node=d["chips_per_node"], default_precision=d["default_precision"],
        cost_per_chip_hour_usd=float(d["cost_per_chip_hour_usd"]), chip_name=c["name"],
        ranks_per_chip=c["ranks_per_chip"], matrix_cores=c["matrix_cores"], vector_cores=c["vector_cores"],
        hbm_bytes=q(c["hbm_capacity"], "size"), hbm_bytes_per_s=q(c["hbm_bandwidth"], "bandwidth"),
        peak_flops=tuple((p, q(v, "compute")) for p, v in c["peak"].items()),
        gemm_tables=tuple(c["efficiency"]["gemm"].items()),
        attention_compute_eff=c["efficiency"]["attention_compute"],
        attention_memory_eff=c["efficiency"]["attention_memory"], memory_eff=c["efficiency"]["memory"],
        memory_ops_table=c["efficiency"].get("memory_ops"),
        attention_compute_by_kernel=tuple(c["efficiency"].get("attention_compute_by_kernel", {}).items()),
        attention_overhead_s=q(c["efficiency"].get("attention_overhead", "0 us"), "time"),
        scale_up=_fabric(d["scale_up"]), scale_out=_fabric(d["scale_out"]), host_uniform=h["uniform"],
        host_read_bytes_per_s=q(h["read_bandwidth"], "bandwidth"),
        host_write_bytes_per_s=q(h["write_bandwidth"], "bandwidth"), host_latency_s=q(h["latency"], "time"),
        host_remote_read_bytes_per_s=q(h["remote_read_bandwidth"], "bandwidth"),
        host_remote_write_bytes_per_s=q(h["remote_write_bandwidth"], "bandwidth"),
        host_remote_latency_s=q(h["remote_latency"], "time"), dram_per_node_bytes=q(h["dram_per_node"], "size"),
        ssd_per_node_bytes=q(h["ssd_per_node"], "size"), ssd_read_bytes_per_s=q(h["ssd_read_bandwidth"], "bandwidth"),
        ssd_latency_s=q(h["ssd_latency"], "time"),
        host_write_latency_s=q(h.get("write_latency", h["latency"]), "time"),
        host_remote_write_latency_s=q(h.get("remote_write_latency", h["remote_latency"]), "time"),
        object_store_bytes_per_s=q(d["storage"]["object_store_bandwidth"], "bandwidth"),
        moe_low_latency_table=d["moe_comm"]["low_latency"],
        moe_low_latency_by_kernel=tuple(d["moe_comm"].get("low_latency_by_kernel", {}).items()),
        moe_bulk_efficiency=float(d["moe_comm"]["bulk_efficiency"]), moe_bulk_scope=d["moe_comm"]["bulk_scope"],
        graph_launch_s=q(d["launch"]["graph_launch"], "time"),
        kernel_floor_s=q(d["launch"].get("kernel_floor", "0 s"), "time"),
    )


def _check_tables(d: dict[str, Any], path) -> None:
    """A spec naming an unknown calibration table (GEMM, element-wise kernels, a fabric's NCCL curve) fails on
    load, naming the field. Held-out NCCL tables (no `op` column) are not curves a fabric can use."""
    from harness.cost.calibration import tables  # imported here: harness.cost imports this module
    from harness.errors import InputError
    eff = d["chip"]["efficiency"]
    named = [("gemm", f"chip.efficiency.gemm.{p}", t) for p, t in eff["gemm"].items()]
    if eff.get("memory_ops") is not None:
        named.append(("memory_ops", "chip.efficiency.memory_ops", eff["memory_ops"]))
    named += [("nccl", f"{f}.collectives", d[f]["collectives"]) for f in ("scale_up", "scale_out")
              if d[f]["collectives"] != "alpha-beta"]
    named.append(("dispatch_combine", "moe_comm.low_latency", d["moe_comm"]["low_latency"]))
    named += [("dispatch_combine", f"moe_comm.low_latency_by_kernel.{k}", t)
              for k, t in d["moe_comm"].get("low_latency_by_kernel", {}).items()]
    for file, field, table_id in named:
        known = [i for i, t in tables(file).items() if file != "nccl" or "op" in t.columns]
        if table_id not in known:
            extra = "'alpha-beta' or " if file == "nccl" else ""
            raise InputError(f"unknown {file.replace('_', '-')} table '{table_id}' (calibration/{file}.toml has: "
                             f"{extra}{', '.join(known)})", path=str(path), field=field)


def load_hardware(name: str, overrides: Sequence[tuple[str, str]] = ()) -> Hardware:
    """Load models/hardware/<name>.toml with `(dotted.path, value)` overrides applied before validation."""
    return _load(name, tuple(overrides))
