"""Turn a request body into checked observation arrays, or say exactly what is wrong with it."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from typing import Any, NamedTuple

import numpy as np

from .model import F64

MAX_OBSERVATIONS = 100_000
SERIES_ID_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")
# Epoch seconds accepted: 2000-01-01 .. 2200-01-01 (milliseconds by mistake are caught).
MIN_T, MAX_T = 946_684_800.0, 7_258_118_400.0
MAX_UNIT_LEN = 32
MODEL_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")  # a model repository directory name


class Batch(NamedTuple):
    """One series' checked observations and what came with them."""

    t: F64
    v: F64
    unit: str | None = None
    model: str | None = None  # a scoring model of the repository to bind the series to


class ObservationError(ValueError):
    """The caller's mistake: an HTTP status, a code and a message naming the bad item."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


def check_series_id(series_id: str) -> None:
    if not SERIES_ID_RE.match(series_id):
        raise ObservationError(
            400, "invalid_series_id", "series_id: 1-128 characters of A-Z a-z 0-9 _ . : -"
        )


def parse_body(body: Any) -> Batch:
    """From {"observations": [{"t", "v"}...], "unit"?, "model"?}; t strictly increasing."""
    if not isinstance(body, dict) or not isinstance(body.get("observations"), list):
        raise ObservationError(
            400, "invalid_body", 'The body must be {"observations": [{"t": ..., "v": ...}]}'
        )
    unit = body.get("unit")
    if unit is not None and (not isinstance(unit, str) or len(unit) > MAX_UNIT_LEN):
        raise ObservationError(400, "invalid_unit", f"unit: a string of at most {MAX_UNIT_LEN}")
    model = body.get("model")
    if model is not None and (not isinstance(model, str) or not MODEL_NAME_RE.match(model)):
        raise ObservationError(
            400, "invalid_model", "model: 1-64 characters of A-Z a-z 0-9 _ . - (a model's name)"
        )
    items = body["observations"]
    if not items:
        raise ObservationError(400, "invalid_body", "observations is empty")
    if len(items) > MAX_OBSERVATIONS:
        raise ObservationError(
            413, "too_many_observations", f"At most {MAX_OBSERVATIONS} observations per request"
        )
    ts = np.empty(len(items), dtype=np.float64)
    vs = np.empty(len(items), dtype=np.float64)
    for i, item in enumerate(items):
        if not isinstance(item, dict) or "t" not in item or "v" not in item:
            raise ObservationError(400, "invalid_observation", f'observations[{i}]: needs "t", "v"')
        ts[i] = _parse_time(item["t"], i)
        vs[i] = _parse_value(item["v"], i)
    steps = np.diff(ts)
    if len(steps) and not np.all(steps > 0):
        i = int(np.argmax(steps <= 0)) + 1
        code = "duplicate_timestamp" if steps[i - 1] == 0 else "out_of_order"
        raise ObservationError(
            400, code, f"observations[{i}]: t must be later than the observation before it"
        )
    return Batch(ts, vs, unit, model)


def _parse_time(raw: Any, i: int) -> float:
    if isinstance(raw, bool):
        raise ObservationError(400, "invalid_timestamp", f"observations[{i}].t: not a time")
    if isinstance(raw, int | float):
        t = _to_float(raw)
    elif isinstance(raw, str):
        try:
            parsed = datetime.fromisoformat(raw)
        except ValueError:
            raise ObservationError(
                400, "invalid_timestamp", f"observations[{i}].t: {raw[:40]!r} is not ISO 8601"
            ) from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)  # documented: naive times are UTC
        t = parsed.timestamp()
    else:
        raise ObservationError(400, "invalid_timestamp", f"observations[{i}].t: not a time")
    if not math.isfinite(t) or not MIN_T <= t <= MAX_T:
        raise ObservationError(
            400,
            "invalid_timestamp",
            f"observations[{i}].t: epoch seconds between 2000 and 2200 (not milliseconds)",
        )
    return t


def _parse_value(raw: Any, i: int) -> float:
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise ObservationError(400, "invalid_value", f"observations[{i}].v: must be a number")
    v = _to_float(raw)
    if not math.isfinite(v):
        raise ObservationError(400, "invalid_value", f"observations[{i}].v: must be finite")
    return v


def _to_float(raw: float) -> float:
    try:
        return float(raw)
    except OverflowError:  # an integer beyond float range
        return math.inf
