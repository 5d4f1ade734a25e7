"""Regression gates: speed (pytest-benchmark, normalised by a calibration benchmark) and results (golden files)."""
