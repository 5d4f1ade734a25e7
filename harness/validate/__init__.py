"""`bench validate`: reproduce published numbers and report the error of each prediction.

validation_rows() -> list[dict] with id, what, conditions, published, predicted, unit, error_pct, kind,
tolerance_pct, ok, explain. `kind` says how much a row proves: "in-sample operator" (the efficiency curve was
fitted to this very row), "held-out operator" (same table, not used by the fit), "spec input" (the number is
in a spec file; the row checks the cost function reads it back), "uniform-fabric assumption" (the model has one
value where the table has an intra- and an inter-node one), "not modelled" (the model never uses that path: UB
reads between NPUs), "end-to-end prediction" (nothing was fitted to it)."""

from harness.validate.rows import explain, validation_rows

__all__ = ["explain", "validation_rows"]
