"""Request traces: formats, validation, shaping and synthesis, all into one columnar Workload."""

from harness.trace.workload import SCHEMA, Workload, canonical

__all__ = ["SCHEMA", "Workload", "canonical"]
