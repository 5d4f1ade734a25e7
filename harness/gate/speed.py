"""Speed gate: run the pytest-benchmark suite and compare medians with a committed baseline.

Shared CI machines are noisy and differ in speed, so every benchmark median is divided by the median of a
calibration benchmark measured in the same run (`test_calibration` in tests/benchmarks) before comparing with the
baseline's ratio. A benchmark fails when its normalised time grows by more than the margin: 1.5x sits well above the
run-to-run noise of the normalised ratio seen on 2-core machines (README, "Regression gates") and well below the 2x
of a real slowdown. A benchmark that looks slower is re-run twice before it fails (`confirmed_ratios`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from harness.errors import InputError
from harness.jsonfile import loads_finite

CALIBRATION = "test_calibration"
DEFAULT_MARGIN = 1.5


@dataclass(frozen=True)
class SpeedRow:
    name: str
    baseline_ratio: float | None   # benchmark median / calibration median in the baseline
    current_ratio: float | None
    margin: float

    @property
    def slowdown(self) -> float | None:
        if self.baseline_ratio is None or self.current_ratio is None:
            return None
        return self.current_ratio / self.baseline_ratio

    @property
    def failed(self) -> bool:
        return self.slowdown is not None and self.slowdown > self.margin


def repo_root() -> Path:
    root = Path(__file__).resolve().parents[2]
    if not (root / "tests" / "benchmarks").is_dir():
        raise InputError("the speed gate runs from a source checkout (tests/benchmarks not found)")
    return root


def run_benchmarks(json_out: Path, *, keyword: str | None = None, include_slow: bool = False) -> dict:
    """Run tests/benchmarks with timing enabled; return pytest-benchmark's JSON."""
    root = repo_root()
    cmd = [sys.executable, "-m", "pytest", "tests/benchmarks", "-q", "-p", "no:cacheprovider",
           "--benchmark-enable", "--benchmark-only", f"--benchmark-json={json_out}"]
    if include_slow:
        cmd.append("--runslow")
    if keyword:
        cmd += ["-k", keyword]
    env = dict(os.environ, PYTHONHASHSEED="0")
    proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True)
    if proc.returncode not in (0,) or not json_out.exists():
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise RuntimeError(f"benchmark run failed (exit {proc.returncode}):\n{tail}")
    return json.loads(json_out.read_text())


def medians(bench_json: dict) -> dict[str, float]:
    return {b["name"]: float(b["stats"]["median"]) for b in bench_json.get("benchmarks", [])}


def normalised(meds: dict[str, float]) -> dict[str, float]:
    calib = meds.get(CALIBRATION)
    if not calib:
        raise RuntimeError(f"the benchmark run has no '{CALIBRATION}' result to normalise by")
    return {name: m / calib for name, m in meds.items() if name != CALIBRATION}


def confirmed_ratios(first: dict[str, float], baseline: dict, margin: float, json_dir: Path,
                     retries: int = 2) -> dict[str, float]:
    """Re-run (with the calibration) every benchmark that looks slower than its margin, keeping each one's best
    normalised ratio: a real slowdown shows in every run, a burst of load from elsewhere does not."""
    ratios = dict(first)
    for attempt in range(retries):
        suspects = [r.name for r in compare_speed(baseline, ratios, margin) if r.failed]
        if not suspects:
            break
        keyword = " or ".join([CALIBRATION, *sorted({n.split("[", 1)[0] for n in suspects})])
        again = normalised(medians(run_benchmarks(json_dir / f"retry{attempt}.json", keyword=keyword)))
        ratios.update({n: min(ratios[n], again[n]) for n in suspects if n in again})
    return ratios


def load_baseline(path: Path) -> dict:
    """The speed baseline: {"ratios": {benchmark: ratio}, "margins": {benchmark: margin}, ...}; a missing file is an
    empty one (about to be created with --update). Anything else that is not one is an InputError, before any
    benchmark runs."""
    if not path.exists():
        return {"ratios": {}, "margins": {}}
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise InputError("not a text file", path=str(path)) from None
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror or exc}", path=str(path)) from None
    data = loads_finite(text, str(path))
    if not isinstance(data, dict):
        raise InputError("must be a JSON object with 'ratios' and 'margins'", path=str(path))
    for key in ("ratios", "margins"):
        table = data.get(key, {})
        if not isinstance(table, dict):
            raise InputError(f"must be an object of benchmark names to numbers, got {table!r}", path=str(path),
                             field=key)
        for name, value in table.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise InputError(f"must be a positive number, got {value!r}", path=str(path), field=f"{key}.{name}")
    return data


def compare_speed(baseline: dict, current_ratios: dict[str, float], margin: float = DEFAULT_MARGIN) -> list[SpeedRow]:
    base = baseline.get("ratios", {})
    margins = baseline.get("margins", {})
    return [SpeedRow(name, base.get(name), current_ratios.get(name), float(margins.get(name, margin)))
            for name in sorted(set(base) | set(current_ratios))]
