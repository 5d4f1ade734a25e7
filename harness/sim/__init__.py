"""The serving simulator: an event loop over prefill, KV handoff, decode and a context cache that asks a
ServingCosts object (harness/sim/costs.py) for every duration and capacity, and knows nothing about hardware."""

from harness.sim.config import SimConfig
from harness.sim.engine import simulate

__all__ = ["SimConfig", "simulate"]
