"""Trace shaping: cut and rescale a Workload in time. Applied in a fixed order: window, limit, time-scale, rate."""

from __future__ import annotations

import dataclasses
import math

import polars as pl

from harness.errors import InputError
from harness.trace.workload import Workload


def parse_window(text: str) -> tuple[float | None, float | None]:
    """"START:END" in seconds from the trace start; either side may be empty ("600:" or ":1200")."""
    start_text, sep, end_text = text.partition(":")
    if not sep:
        raise InputError(f"expected START:END in seconds, e.g. 600:1200, got {text!r}", field="--window")
    try:
        start = float(start_text) if start_text.strip() else None
        end = float(end_text) if end_text.strip() else None
    except ValueError:
        raise InputError(f"expected START:END in seconds, e.g. 600:1200, got {text!r}", field="--window") from None
    if any(x is not None and math.isnan(x) for x in (start, end)):   # every comparison with NaN is false
        raise InputError(f"START and END must be numbers of seconds, got {text!r}", field="--window")
    if (start is not None and start < 0) or (start is not None and end is not None and end <= start):
        raise InputError(f"need 0 <= START < END, got {text!r}", field="--window")
    return start, end


def mean_rate_req_s(requests: pl.DataFrame) -> float | None:
    """Requests per second over the span from first to last arrival; None when that span is zero."""
    arrival = requests.get_column("arrival_s")
    span = (arrival.max() - arrival.min()) if requests.height else 0.0
    return requests.height / span if span and span > 0 else None


# The longest span of arrivals: beyond about 4.5e9 s a float's steps exceed a microsecond, so step times of
# milliseconds added to an arrival vanish (latencies of 0). 1e9 s is about 31.7 years.
MAX_SPAN_S = 1e9


def span_problem(requests: pl.DataFrame) -> str | None:
    """What is wrong with the span from first to last arrival, or None: too long for float seconds to keep
    microseconds (MAX_SPAN_S), or so short (subnormal) that the mean rate overflows."""
    arrival = requests.get_column("arrival_s")
    span = float(arrival.max() - arrival.min()) if requests.height else 0.0
    if span > MAX_SPAN_S:
        return (f"the arrivals span {span:.3g} s, more than {MAX_SPAN_S:.0e} s (about 31 years), beyond which float "
                "seconds lose the microseconds a step takes")
    if span > 0 and not math.isfinite(requests.height / span):
        return f"the arrivals span {span:.3g} s, too short for a request rate (a float overflows)"
    return None


def shape(workload: Workload, *, limit: int | None = None, window: tuple[float | None, float | None] | str | None = None,
          time_scale: float | None = None, rate: float | None = None) -> Workload:
    """Keep arrivals in [START, END), then the first `limit`, then multiply arrival times by `time_scale`
    (0.1 = ten times denser), or rescale them so the mean rate is `rate` req/s. The first arrival is moved to 0."""
    if time_scale is not None and rate is not None:
        raise InputError("give either --time-scale or --rate, not both", field="--rate")
    if limit is not None and limit < 1:
        raise InputError(f"must be at least 1, got {limit}", field="--limit")
    if time_scale is not None and not time_scale > 0:
        raise InputError(f"must be a positive factor, got {time_scale}", field="--time-scale")
    if rate is not None and not rate > 0:
        raise InputError(f"must be a positive rate in req/s, got {rate}", field="--rate")
    frame = workload.requests
    if isinstance(window, str):
        window = parse_window(window)
    if window is not None:
        start, end = window
        if start is not None:
            frame = frame.filter(pl.col("arrival_s") >= start)
        if end is not None:
            frame = frame.filter(pl.col("arrival_s") < end)
        if frame.height == 0:
            raise InputError(f"no requests arrive in the window {start}:{end} "
                             f"(the trace spans 0 to {workload.requests['arrival_s'].max():.3f} s)", field="--window")
    if limit is not None:
        frame = frame.head(limit)
    frame = frame.with_columns(pl.col("arrival_s") - pl.col("arrival_s").first())
    if rate is not None:
        current = mean_rate_req_s(frame)
        if current is None:
            raise InputError("cannot rescale to a rate: all requests arrive at the same instant", field="--rate")
        time_scale = current / rate
    if time_scale is not None:
        frame = frame.with_columns(pl.col("arrival_s") * time_scale)
        if not math.isfinite(frame["arrival_s"].max()):
            option = "--rate" if rate is not None else "--time-scale"
            raise InputError("stretches the arrivals beyond any representable time (a float overflows)", field=option)
        problem = span_problem(frame)
        if problem is not None:
            raise InputError(f"{problem}, once rescaled", field="--rate" if rate is not None else "--time-scale")
    if frame is workload.requests:
        return workload
    return dataclasses.replace(workload, requests=frame)
