"""Request traces: formats, validation, shaping and synthesis, all into one columnar Workload."""

from harness.trace.bundled import bundled_traces, resolve_trace_path
from harness.trace.load import load_trace
from harness.trace.save import save_trace
from harness.trace.shape import shape
from harness.trace.stats import trace_stats
from harness.trace.synth import synthesize
from harness.trace.workload import SCHEMA, Workload, canonical

__all__ = ["SCHEMA", "Workload", "bundled_traces", "canonical", "load_trace", "resolve_trace_path", "save_trace",
           "shape", "synthesize", "trace_stats"]
