"""cmbench: trace-driven replay harness for LLM serving on CloudMatrix384 and GPU clusters."""

__version__ = "0.1.0"
