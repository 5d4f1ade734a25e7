"""Seeded synthetic traces: Poisson or Gamma arrivals at a rate, sampled lengths, optional shared prefixes and sessions.

Prefix blocks model what a prefix cache can reuse, with the same chain meaning as Mooncake's hash ids:
- shared prefix: each request starts with one of `prefix_groups` system prompts of `prefix_tokens` tokens; its
  whole blocks carry the group's ids;
- sessions: a multi-turn conversation's prompt is the whole history (earlier prompts and answers) plus the new
  user turn, so turn k repeats every whole block of the conversation so far. A block that is only partly filled
  gets an id of its own.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from harness.errors import InputError
from harness.trace.checks import max_context_tokens
from harness.trace.lengths import LengthSampler, Paired, parse_length
from harness.trace.shape import MAX_SPAN_S, span_problem
from harness.trace.workload import Workload, canonical

ARRIVALS = ("poisson", "gamma")


def arrival_times(rng: np.random.Generator, n: int | None, duration_s: float | None, rate: float,
                  arrival: str = "poisson", cv: float = 1.0) -> np.ndarray:
    """Arrival times starting at 0.0: renewal process with exponential (Poisson) or Gamma gaps of the given CV."""
    if arrival not in ARRIVALS:
        raise InputError(f"unknown arrival process {arrival!r}; choose {' or '.join(ARRIVALS)}", field="--arrival")
    if not rate > 0:
        raise InputError(f"must be a positive rate in req/s, got {rate}", field="--rate")
    if arrival == "gamma" and not cv > 0:
        raise InputError(f"the Gamma CV must be positive, got {cv}", field="--cv")
    shape_k = 1.0 if arrival == "poisson" else 1.0 / cv ** 2

    def gaps(k: int) -> np.ndarray:
        return rng.gamma(shape_k, 1.0 / (rate * shape_k), size=k)

    if n is not None:
        return np.concatenate(([0.0], np.cumsum(gaps(n - 1)))) if n > 0 else np.zeros(0)
    times = np.concatenate(([0.0], np.cumsum(gaps(int(duration_s * rate * 1.1) + 16))))
    while times[-1] < duration_s:  # rare: the draw fell short of the duration
        times = np.concatenate((times, times[-1] + np.cumsum(gaps(int(duration_s * rate * 0.2) + 16))))
    return times[times < duration_s]


MAX_REQUESTS = 100_000_000  # a sanity bound: ten times the largest replay benchmarked, about 4 GB of columns
MIN_CV, MAX_CV = 1e-3, 1e3  # gamma arrivals: shape 1/cv^2 stays a finite, positive float


def synthesize(n_requests: int | None = None, *, duration_s: float | None = None, rate: float,
               arrival: str = "poisson", cv: float = 1.0, input: LengthSampler | str | int = 1024,  # noqa: A002
               output: LengthSampler | str | int = 256, lengths=None, seed: int = 0,
               prefix_tokens: int = 0, prefix_groups: int = 1, session_turns: float | None = None,
               open_sessions: int = 8, block_size: int = 512, name: str = "synthetic") -> Workload:
    """A synthetic Workload of `n_requests` requests (or all arrivals within `duration_s`).

    `input`/`output`: a LengthSampler, a spec string (see lengths.parse_length) or a token count; `lengths`, when
    given, is a joint sampler (lengths.Empirical / servegen_lengths) that replaces both. With `prefix_tokens` each
    prompt starts with one of `prefix_groups` shared prefixes (added to the sampled input). With `session_turns`,
    requests form multi-turn sessions of that mean length (geometric), about `open_sessions` interleaved at a time;
    the sampled input is then the new user turn, appended to the history.
    """
    if (n_requests is None) == (duration_s is None):
        raise InputError("give exactly one of a request count and a duration", field="--requests")
    if n_requests is not None and n_requests < 1:
        raise InputError(f"must be at least 1, got {n_requests}", field="--requests")
    if duration_s is not None and not duration_s > 0:
        raise InputError(f"must be positive, got {duration_s}", field="--duration")
    if prefix_tokens < 0 or prefix_groups < 1 or block_size < 1 or open_sessions < 1:
        raise InputError("prefix tokens >= 0, prefix groups >= 1, sessions >= 1 and block size >= 1 are required",
                         field="--prefix-tokens")
    if session_turns is not None and not session_turns >= 1:
        raise InputError(f"mean turns per session must be at least 1, got {session_turns}", field="--session-turns")
    if prefix_tokens > max_context_tokens():
        raise InputError(f"{prefix_tokens:,} tokens is beyond any model's context ({max_context_tokens():,})",
                         field="--prefix-tokens")
    if not MIN_CV <= cv <= MAX_CV:
        raise InputError(f"must be between {MIN_CV:g} and {MAX_CV:g}, got {cv:g}", field="--cv")
    expected = n_requests if n_requests is not None else duration_s * rate
    if expected > MAX_REQUESTS:
        raise InputError(f"about {expected:,.0f} requests; a synthetic trace holds at most {MAX_REQUESTS:,}",
                         field="--requests" if n_requests is not None else "--duration")
    rng = np.random.default_rng(seed)
    arrival_s = arrival_times(rng, n_requests, duration_s, rate, arrival, cv)
    if arrival_s.size and not np.isfinite(arrival_s[-1]):
        raise InputError(f"{rate:g} req/s spaces arrivals beyond any representable time", field="--rate")
    problem = span_problem(pl.DataFrame({"arrival_s": arrival_s}))
    if problem is not None:   # the trace written would not load
        too_long = duration_s is not None and duration_s > MAX_SPAN_S
        raise InputError(problem, field="--duration" if too_long else "--rate")
    n = arrival_s.size
    if n == 0:
        raise InputError(f"no request arrives within {duration_s} s at {rate} req/s", field="--duration")
    sampler = lengths or Paired(_sampler(input, "--input"), _sampler(output, "--output"))
    new_input, output_tokens = sampler.sample(rng, n)
    columns: dict[str, object] = {"request_id": np.arange(n).astype(str), "arrival_s": arrival_s,
                                  "output_tokens": output_tokens}
    block_size_out = None
    if prefix_tokens or session_turns:
        session = _sessions(rng, n, session_turns, open_sessions) if session_turns else np.arange(n)
        frame = _with_prefix_blocks(rng, session, new_input, output_tokens, prefix_tokens, prefix_groups, block_size)
        columns["input_tokens"] = frame["input_tokens"].to_numpy()
        columns["prefix_blocks"] = frame["prefix_blocks"]
        if session_turns:
            columns["session_id"] = np.char.add("s", session.astype(str))
        block_size_out = block_size
    else:
        columns["input_tokens"] = new_input
    requests = canonical(pl.DataFrame(columns))
    too_long = (requests["input_tokens"] + requests["output_tokens"] > max_context_tokens()).arg_true()
    if too_long.len():
        raise InputError(f"request {int(too_long[0])} would exceed {max_context_tokens():,} tokens of context; "
                         "use shorter lengths or fewer turns per session",
                         field="--session-turns" if session_turns else "--input")
    return Workload(requests=requests, name=name, block_size=block_size_out, source_format="synthetic")


def _sampler(spec: LengthSampler | str | int, option: str) -> LengthSampler:
    return spec if hasattr(spec, "sample") else parse_length(spec, option=option)


def _sessions(rng: np.random.Generator, n: int, mean_turns: float, open_sessions: int) -> np.ndarray:
    """Session index per arrival slot: geometric turn counts; turn j of session s is placed at s + j*open_sessions
    in slot order, so about `open_sessions` conversations interleave and each session's turns arrive in order."""
    # At most n sessions of at most n turns are ever needed (a huge mean would otherwise allocate n x mean slots).
    turns = np.minimum(rng.geometric(1.0 / mean_turns, size=n), n)
    session = np.repeat(np.arange(n), turns)
    turn = np.arange(session.size) - np.repeat(np.cumsum(turns) - turns, turns)
    order = np.argsort(session + turn * open_sessions, kind="stable")[:n]
    return session[order]


def _with_prefix_blocks(rng: np.random.Generator, session: np.ndarray, new_input: np.ndarray,
                        output_tokens: np.ndarray, prefix_tokens: int, prefix_groups: int,
                        block_size: int) -> pl.DataFrame:
    n = session.size
    shared_blocks = prefix_tokens // block_size
    frame = pl.DataFrame({"row": np.arange(n), "session": session, "new": new_input, "out": output_tokens,
                          "group": rng.integers(0, prefix_groups, size=n)})
    # History before this turn: every earlier turn's new input and answer in the same session.
    history = (pl.col("new") + pl.col("out")).cum_sum().over("session") - (pl.col("new") + pl.col("out"))
    frame = frame.with_columns(history.alias("history"))
    # The session's own token stream starts after the whole shared-prefix blocks.
    frame = frame.with_columns(
        (pl.col("new") + pl.col("history") + prefix_tokens).alias("input_tokens"),
        (pl.col("new") + pl.col("history") + prefix_tokens - shared_blocks * block_size).alias("stream"))
    frame = frame.with_columns((pl.col("stream") // block_size).alias("full"),
                               (pl.col("stream") % block_size > 0).alias("partial"))
    # Ids: [shared prefix ids | per-session stream ids | one fresh id per partial block].
    session_span = frame.group_by("session").agg(pl.col("full").max()).sort("session")
    base = prefix_groups * shared_blocks
    offsets = dict(zip(session_span["session"].to_list(),
                       (base + np.cumsum(session_span["full"].to_numpy()) - session_span["full"].to_numpy()).tolist()))
    partial_base = base + int(session_span["full"].sum())
    frame = frame.with_columns(
        pl.col("session").replace_strict(offsets, return_dtype=pl.Int64).alias("offset"),
        (pl.col("partial").cast(pl.Int64).cum_sum() - 1 + partial_base).alias("partial_id"))
    shared = pl.int_ranges(0, shared_blocks, dtype=pl.Int64) + pl.col("group") * shared_blocks
    stream = pl.int_ranges(0, pl.col("full"), dtype=pl.Int64) + pl.col("offset")
    tail = pl.when(pl.col("partial")).then(pl.concat_list(pl.col("partial_id"))).otherwise(
        pl.lit([], dtype=pl.List(pl.Int64)))
    return frame.select("input_tokens", pl.concat_list(shared, stream, tail).alias("prefix_blocks"))
