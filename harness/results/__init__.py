"""Replay results: per-request tables, summary metrics, time series, and writing them to an output folder."""
