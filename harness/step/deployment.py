"""Deployments: one prefill or decode instance of an LLM on a backend (models/deployments/*.toml), or one described
inline on the command line (`inline_deployment`), which copies the backend's standard deployment of that phase and
changes only what the user gave."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from dataclasses import dataclass

from harness.errors import InputError
from harness.hardware import Hardware, load_hardware
from harness.hardware.specfile import _read, line_of, load_spec, spec_names, split_overrides
from harness.hardware.units import parse_quantity
from harness.llm import BYTES, LLM, load_llm


@dataclass(frozen=True)
class Deployment:
    name: str
    description: str
    hardware: Hardware
    llm: LLM
    phase: str                       # "prefill" | "decode"
    chips: int
    ep: int
    dp: int
    tp: int
    precision: str                   # GEMM precision
    attention_precision: str
    kv_cache_precision: str
    microbatches: int
    overlap: str                     # "split-cores" | "comm-stream" | "engines"
    stream_share_attention: float    # split-cores: share of matrix cores of the attention stream
    stream_share_moe: float
    comm_compute_share: float        # share of compute taken by communication kernels (GPU SMs)
    mtp_draft_tokens: int
    mtp_accept: float
    redundant_experts: int
    shared_expert_placement: str     # "every-rank" | "dedicated"
    shared_expert_ranks: int
    eplb: str                        # "default" | "perfect"
    memory_reserve_bytes: float
    launch_overlapped: bool
    prefill_token_budget_per_chip: int
    batch_per_chip: float
    kv_len: int
    tokens_per_chip: int
    prompt_len: int
    # RMSNorm, RoPE and activation quantisation run inside the attention projections' kernel (CloudMatrix-Infer's
    # fused MLA prolog), not as element-wise ops of their own
    fused_attention_prolog: bool = False
    # split-cores: each stream also gets only its cores' share of the HBM bandwidth (a what-if bound on contention;
    # off by default: no measurement says how HBM bandwidth scales with the cores issuing loads)
    split_hbm: bool = False
    # "auto": a step runs its microbatches only where they shorten it (schedule.as_run); "always": every step does
    microbatching: str = "auto"
    # how a TP group splits attention (see ops.attention_block): "replicated" (Megatron) or "staged" (SP/TP hybrid)
    attention_tp: str = "replicated"
    # the attention kernel version this deployment ran, when not the hardware spec's current one (a key of the
    # spec's chip.efficiency.attention_compute_by_kernel); None: the spec's attention_compute
    attention_kernel: str | None = None
    # the low-latency dispatch/combine kernel version it ran, when not the spec's current one (a key of the spec's
    # moe_comm.low_latency_by_kernel); None: the spec's moe_comm.low_latency
    dispatch_kernel: str | None = None

    @property
    def ranks(self) -> int:
        return self.chips * self.hardware.ranks_per_chip

    @property
    def tokens_per_step(self) -> float:
        """Tokens produced per decode step per request: 1 + expected accepted drafts."""
        return 1.0 + self.mtp_draft_tokens * self.mtp_accept

    def kv_bytes_per_token(self) -> int:
        """KV cache bytes per token as this deployment keeps it: every layer's, plus the MTP module's own when it
        drafts (the draft attends over the whole context in the module's layer)."""
        layers = self.llm.layers + (self.llm.mtp_modules if self.mtp_draft_tokens else 0)
        return layers * self.llm.kv_elems_per_token_layer() * BYTES[self.kv_cache_precision]

    def replace(self, **changes) -> Deployment:
        return dataclasses.replace(self, **changes)


def check_deployment(dep: Deployment, path: str) -> Deployment:
    hw = dep.hardware
    for name in ("tp", "ep", "dp"):  # tp first: an inline dp is derived from it (0 when tp exceeds the ranks)
        x = getattr(dep, name)
        if x < 1 or dep.ranks % x:
            raise InputError(f"{name} ({x}) must divide the {dep.ranks} ranks ({dep.chips} chips x "
                             f"{hw.ranks_per_chip} per chip)", path=path, field=name)
    if dep.dp * dep.tp != dep.ranks:
        raise InputError(f"dp x tp must equal the {dep.ranks} ranks of the instance (got {dep.dp} x {dep.tp})",
                         path=path, field="dp")
    llm = dep.llm
    if llm.heads % dep.tp or (llm.attention == "gqa" and llm.kv_heads % dep.tp and dep.tp % llm.kv_heads):
        kv = f" and {llm.kv_heads} KV heads" if llm.attention == "gqa" else ""
        raise InputError(f"tp ({dep.tp}) must split {llm.name}'s {llm.heads} attention heads{kv} evenly", path=path,
                         field="tp")
    if dep.chips > hw.chips and hw.kind == "supernode":
        raise InputError(f"{dep.chips} chips do not fit in one {hw.name} ({hw.chips} chips)", path=path, field="chips")
    hw.peak(dep.precision)
    if dep.mtp_draft_tokens and not dep.llm.mtp_modules:
        raise InputError(f"mtp_draft_tokens = {dep.mtp_draft_tokens} needs an MTP module, and {dep.llm.name} has "
                         "none (set mtp_draft_tokens = 0)", path=path, field="mtp_draft_tokens")
    for what, ran, versions, listed_in in (
            ("attention", dep.attention_kernel, hw.attention_compute_by_kernel,
             "chip.efficiency.attention_compute_by_kernel"),
            ("dispatch", dep.dispatch_kernel, hw.moe_low_latency_by_kernel, "moe_comm.low_latency_by_kernel")):
        if ran is not None and ran not in dict(versions):
            have = ", ".join(k for k, _ in versions) or "none"
            raise InputError(f"{what} kernel '{ran}' is not in {hw.name}'s {listed_in} (it has: {have})", path=path,
                             field=f"{what}_kernel")
    if dep.overlap == "split-cores" and dep.stream_share_attention + dep.stream_share_moe > 1.0001:
        raise InputError("stream shares add up to more than 1", path=path, field="stream_share")
    return dep


@functools.lru_cache(maxsize=256)
def _load(name: str, sets: tuple[str, ...]) -> Deployment:
    _, _, raw = _read("deployment", name)
    hw_name, llm_name = raw.get("hardware", ""), raw.get("llm", "")
    groups = split_overrides(sets, [name, hw_name, llm_name])
    d, path = load_spec("deployment", name, groups[name])
    for kind, ref in (("hardware", d["hardware"]), ("llm", d["llm"])):
        if ref not in spec_names(kind):  # an unknown reference is this file's error; a broken spec is its own
            raise InputError(f"unknown {kind} '{ref}' (available: {', '.join(spec_names(kind))})",
                             path=str(path), where=f"line {line_of(path.read_text(), [kind])}", field=kind)
    hw = load_hardware(d["hardware"], groups.get(d["hardware"], ()))
    llm = load_llm(d["llm"], groups.get(d["llm"], ()))
    op = d["operating_point"]
    share = d.get("stream_share", {"attention": 1.0, "moe": 1.0})
    dep = Deployment(
        name=d["name"], description=d["description"], hardware=hw, llm=llm, phase=d["phase"], chips=d["chips"],
        ep=d["ep"], dp=d["dp"], tp=d["tp"], precision=d["precision"], attention_precision=d["attention_precision"],
        kv_cache_precision=d["kv_cache_precision"], microbatches=d["microbatches"], overlap=d["overlap"],
        stream_share_attention=share["attention"], stream_share_moe=share["moe"],
        comm_compute_share=d.get("comm_compute_share", 0.0), mtp_draft_tokens=d["mtp_draft_tokens"],
        mtp_accept=d["mtp_accept"], redundant_experts=d["redundant_experts"],
        shared_expert_placement=d["shared_expert_placement"], shared_expert_ranks=d.get("shared_expert_ranks", 0),
        eplb=d["eplb"], memory_reserve_bytes=parse_quantity(d["memory_reserve"], "size"),
        launch_overlapped=d["launch_overlapped"], fused_attention_prolog=d.get("fused_attention_prolog", False),
        split_hbm=d.get("split_hbm", False), attention_tp=d.get("attention_tp", "replicated"),
        microbatching=d.get("microbatching", "auto"),
        attention_kernel=d.get("attention_kernel"), dispatch_kernel=d.get("dispatch_kernel"),
        prefill_token_budget_per_chip=d.get("prefill_token_budget_per_chip", op.get("tokens_per_chip", 16384)),
        batch_per_chip=float(op.get("batch_per_chip", 1)), kv_len=op.get("kv_len", 4096),
        tokens_per_chip=op.get("tokens_per_chip", 16384), prompt_len=op.get("prompt_len", 4096),
    )
    return check_deployment(dep, str(path))


def load_deployment(name: str, overrides: Sequence[str] = ()) -> Deployment:
    """Load models/deployments/<name>.toml. `overrides` are `--set SPEC.path=value` strings; SPEC is this
    deployment, its hardware or its LLM."""
    return _load(name, tuple(overrides))


def standard_deployment(hardware: str, phase: str) -> str:
    """The backend's standard deployment of a phase: the shortest-named deployment file on that hardware."""
    found = []
    for n in spec_names("deployment"):
        _, _, raw = _read("deployment", n)
        if raw.get("hardware") == hardware and raw.get("phase") == phase:
            found.append(n)
    if not found:
        raise InputError(f"no {phase} deployment on hardware '{hardware}' to start from; write one in "
                         "models/deployments/", field="hardware")
    return min(found, key=lambda n: (len(n), n))


def inline_deployment(hardware: str, llm: str, phase: str, chips: int, ep: int | None = None,
                      tp: int = 1, dp: int | None = None, precision: str | None = None,
                      overrides: Sequence[str] = ()) -> Deployment:
    """A deployment described on the command line: the standard one of that backend and phase, with the given
    LLM and parallelism, no MTP, microbatching on, default EPLB. What only fits the template's MoE model does not
    carry over: a dense model reserves no SMs for all-to-all kernels and runs replicated TP (staged TP would leave
    the dense FFN unsplit); redundant experts are at most one per rank (DeepSeek's EP32 prefill has one per GPU),
    none without EP."""
    base_name = standard_deployment(hardware, phase)
    base_llm = _read("deployment", base_name)[2].get("llm")
    # Each --set goes to the spec it names; the template deployment's own LLM is not in use unless it is `llm`.
    in_use = (base_name, hardware, llm)
    spec_of = {o: o.split("=", 1)[0].split(".", 1)[0].strip() for o in overrides}
    for o, spec in spec_of.items():
        if spec not in in_use:
            raise InputError(f"--set {o!r}: '{spec}' is not one of the specs in use ({', '.join(in_use)})",
                             field="--set")
    base = load_deployment(base_name, [o for o in overrides if spec_of[o] != llm or llm == base_llm])
    llm_spec = load_llm(llm, split_overrides([o for o in overrides if spec_of[o] == llm], [llm])[llm])
    ranks = chips * base.hardware.ranks_per_chip
    dep = base.replace(
        name=f"inline:{hardware}/{llm}/{phase}/{chips}", description="described on the command line",
        llm=llm_spec, chips=chips, ep=ep or ranks, tp=tp, dp=dp or ranks // tp,
        precision=precision or base.hardware.default_precision, mtp_draft_tokens=0, mtp_accept=0.0,
        microbatches=2, eplb="default", attention_kernel=None, dispatch_kernel=None,
        redundant_experts=min(base.redundant_experts, ep or ranks) if llm_spec.routed_experts and (ep or ranks) > 1
        else 0,
        shared_expert_placement="every-rank" if llm_spec.shared_experts == 0 else base.shared_expert_placement,
    )
    if not llm_spec.routed_experts:
        dep = dep.replace(comm_compute_share=0.0, attention_tp="replicated")
    if dep.shared_expert_placement == "dedicated":
        dep = dep.replace(shared_expert_placement="every-rank", shared_expert_ranks=0)
    return check_deployment(dep, "--chips/--ep/--tp/--dp")
