"""Token-length samplers for synthetic traces: fixed, uniform, lognormal, empirical (from a trace) or ServeGen.

Every sampler draws input and output lengths together (`sample(rng, n) -> (input, output)`), so an empirical or
ServeGen source keeps whatever correlation its data has; the parametric ones draw the two independently.
"""

from __future__ import annotations

import ast
import json
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from harness.errors import InputError
from harness.trace.checks import max_context_tokens


class LengthSampler(Protocol):
    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray: ...


@dataclass(frozen=True)
class Constant:
    tokens: int

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return np.full(n, self.tokens, dtype=np.int64)


@dataclass(frozen=True)
class Uniform:
    low: int
    high: int  # inclusive

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return rng.integers(self.low, self.high + 1, size=n, dtype=np.int64)


@dataclass(frozen=True)
class LogNormal:
    """Lognormal with the given mean and coefficient of variation, rounded to whole tokens (at least 1)."""

    mean: float
    cv: float

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        sigma2 = np.log1p(self.cv ** 2)
        mu = np.log(self.mean) - sigma2 / 2
        # Capped at the longest context a trace may hold: the far tail of a large CV would overflow int64.
        draws = np.minimum(np.rint(rng.lognormal(mu, np.sqrt(sigma2), size=n)), max_context_tokens())
        return np.maximum(1, draws).astype(np.int64)


def parse_length(text: str | int, *, option: str) -> LengthSampler:
    """"512" / "const:512", "uniform:LO:HI", "lognormal:MEAN:CV"."""
    if isinstance(text, int):
        return _checked(Constant(text), option)
    kind, _, rest = str(text).partition(":")
    args = rest.split(":") if rest else []
    usage = "expected N, const:N, uniform:LO:HI or lognormal:MEAN:CV"
    try:
        if not rest and kind.strip().isdigit():
            return _checked(Constant(int(kind)), option)
        if kind == "const" and len(args) == 1:
            return _checked(Constant(int(args[0])), option)
        if kind == "uniform" and len(args) == 2:
            return _checked(Uniform(int(args[0]), int(args[1])), option)
        if kind == "lognormal" and len(args) == 2:
            return _checked(LogNormal(float(args[0]), float(args[1])), option)
    except ValueError:
        pass
    raise InputError(f"{usage}, got {text!r}", field=option)


def _checked(sampler: LengthSampler, option: str) -> LengthSampler:
    top = max_context_tokens()
    ok = {Constant: lambda s: 1 <= s.tokens <= top, Uniform: lambda s: 1 <= s.low <= s.high <= top,
          LogNormal: lambda s: 1 <= s.mean <= top and 0 <= s.cv <= 100}[type(sampler)](sampler)
    if not ok:
        raise InputError(f"lengths must be 1 to {top:,} tokens (LO <= HI; lognormal CV 0 to 100): {sampler}",
                         field=option)
    return sampler


@dataclass(frozen=True)
class Paired:
    """Independent input and output samplers."""

    input: LengthSampler
    output: LengthSampler

    def sample(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        return self.input.sample(rng, n), self.output.sample(rng, n)


@dataclass(frozen=True)
class Empirical:
    """Resample (input, output) pairs of a real trace with replacement."""

    input: np.ndarray
    output: np.ndarray

    def sample(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        pick = rng.integers(0, len(self.input), size=n)
        return self.input[pick], self.output[pick]


@dataclass(frozen=True)
class WindowPMFs:
    """ServeGen: per (client, 10-minute window) length PMFs, weighted by that window's expected request count.

    Sampling picks a window by weight, then draws input and output from that window's PMFs, as ServeGen's own
    generator does for a window; so shifts of the length mix over the day are kept.
    """

    weights: np.ndarray                                        # one per window, sums to 1
    input: list[tuple[np.ndarray, np.ndarray]]                 # (values, probabilities) per window
    output: list[tuple[np.ndarray, np.ndarray]]

    def sample(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        window = rng.choice(len(self.weights), size=n, p=self.weights)
        inp = np.empty(n, dtype=np.int64)
        out = np.empty(n, dtype=np.int64)
        for w in np.unique(window):
            rows = np.flatnonzero(window == w)
            for target, (values, probs) in ((inp, self.input[w]), (out, self.output[w])):
                target[rows] = rng.choice(values, size=rows.size, p=probs)
        return np.maximum(inp, 1), np.maximum(out, 1)


SERVEGEN_WINDOW_S = 600  # each trace-CSV line is a 600-s window (ServeGen README)


def servegen_lengths(path: str | Path, client: str | None = None) -> WindowPMFs:
    """Length PMFs of one ServeGen client (`chunk-<client>`), or of all clients in a category, from a release
    tarball or an unpacked data folder (e.g. servegen_reason_deepseek-r1.tar.gz)."""
    path = Path(path)
    traces: dict[str, bytes] = {}
    datasets: dict[str, bytes] = {}
    for name, data in _servegen_files(path):
        stem = Path(name).name
        if stem.endswith("-trace.csv"):
            traces[stem[: -len("-trace.csv")]] = data
        elif stem.endswith("-dataset.json"):
            datasets[stem[: -len("-dataset.json")]] = data
    chunks = sorted(set(traces) & set(datasets))
    if client is not None:
        wanted = client if client.startswith("chunk-") else f"chunk-{client}"
        if wanted not in chunks:
            shown = ", ".join(c.removeprefix("chunk-") for c in chunks[:20])
            raise InputError(f"no client {client!r} with both a trace and a dataset file (clients: {shown}...)",
                             path=str(path), field="--client")
        chunks = [wanted]
    if not chunks:
        raise InputError("no ServeGen chunk-N-trace.csv / chunk-N-dataset.json pairs found", path=str(path))
    weights, inputs, outputs = [], [], []
    for chunk in chunks:
        rates = _window_rates(traces[chunk], path, chunk)
        try:
            windows = json.loads(datasets[chunk])
        except json.JSONDecodeError as exc:
            raise InputError(f"{chunk}-dataset.json is not valid JSON ({exc.msg})", path=str(path)) from None
        for stamp, fields in windows.items():
            rate = rates.get(int(float(stamp)), 0.0)
            if rate <= 0 or "input_tokens" not in fields or "output_tokens" not in fields:
                continue
            weights.append(rate * SERVEGEN_WINDOW_S)
            inputs.append(_pmf(fields["input_tokens"], path, chunk, stamp))
            outputs.append(_pmf(fields["output_tokens"], path, chunk, stamp))
    if not weights:
        raise InputError("the selected ServeGen clients have no window with both a rate and length PMFs",
                         path=str(path))
    w = np.asarray(weights)
    return WindowPMFs(weights=w / w.sum(), input=inputs, output=outputs)


def _servegen_files(path: Path) -> Iterator[tuple[str, bytes]]:
    if path.is_dir():
        for file in sorted(path.rglob("chunk-*")):
            yield file.name, file.read_bytes()
        return
    try:
        with tarfile.open(path) as tar:
            for member in tar:
                if member.isfile() and Path(member.name).name.startswith("chunk-"):
                    yield member.name, tar.extractfile(member).read()
    except (tarfile.TarError, OSError, EOFError) as exc:
        detail = " ".join(str(exc).split())   # tarfile's message runs over several lines
        raise InputError(f"not a ServeGen folder or readable tarball ({detail})", path=str(path)) from None


def _window_rates(data: bytes, path: Path, chunk: str) -> dict[int, float]:
    rates = {}
    for number, line in enumerate(data.decode("utf-8", errors="replace").splitlines(), start=1):
        parts = line.split(",")
        if not line.strip():
            continue
        try:
            rates[int(float(parts[0]))] = float(parts[1])
        except (ValueError, IndexError):
            raise InputError("expected 'timestamp,rate,cv,pattern,arg1,arg2'", path=str(path),
                             where=f"{chunk}-trace.csv line {number}") from None
    return rates


def _pmf(text: str, path: Path, chunk: str, stamp: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        table = ast.literal_eval(text)  # python-dict strings {value: probability}; literal_eval, never eval
        values = np.fromiter((int(v) for v in table), dtype=np.int64)
        probs = np.fromiter((float(p) for p in table.values()), dtype=np.float64)
    except (ValueError, SyntaxError, TypeError, AttributeError):
        raise InputError("length PMF is not a {tokens: probability} dict", path=str(path),
                         where=f"{chunk}-dataset.json window {stamp}") from None
    if probs.size == 0 or probs.sum() <= 0 or (probs < 0).any():
        raise InputError("length PMF has no positive probability", path=str(path),
                         where=f"{chunk}-dataset.json window {stamp}")
    return values, probs / probs.sum()
