"""Sweeps and capacity planning: many replays of one trace-and-backend setup each, run locally or on Ray.

- spec: sweep files (models/schema/sweep.json) -> points; point ids; knob checks
- knobs: what a point may set and how it becomes a replay plan
- worker: run one point (never raises); executors: local pool / Ray; store: resume store (OUT/points/)
- run: a sweep end to end; table: the one-row-per-point table and SLO verdicts
- search: monotone cheapest-feasible search; plan: `bench plan` on top of it
- report: HTML of a sweep or plan folder
"""

from harness.sweep.plan import Bounds, plan_deployments
from harness.sweep.run import run_sweep
from harness.sweep.search import cheapest_feasible
from harness.sweep.spec import expand, load_sweep

__all__ = ["Bounds", "cheapest_feasible", "expand", "load_sweep", "plan_deployments", "run_sweep"]
