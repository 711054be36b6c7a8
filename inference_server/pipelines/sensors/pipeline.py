"""The sensors pipeline: one model per series, learned state committed before each answer.

Concurrent batches for different series share one SQLite transaction (group commit): each
request waits for the commit that holds its series, so 500 sensors posting at once cost a few
fsyncs, not 500. Batches for one series run one after the other (a lock per series).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge

from ...backends.base import Backend
from . import model
from .model import F64, KIND_NAMES, ModelParams
from .observations import Batch, ObservationError
from .scoring import BUILT_IN, SensorScorer, features
from .storage import SensorStore, SeriesRow

_LOGGER = logging.getLogger(__name__)

# Batches this large learn in a worker thread (the kernel releases the GIL).
THREAD_BATCH = 2000
# Anomaly events are published only for observations this recent: a warm start from days of
# history must not page anyone about last week.
EVENT_MAX_AGE_S = 600.0
MAX_HORIZON_S = 7 * model.DAY_S
MAX_FORECAST_POINTS = 500

Publish = Callable[[str, dict[str, Any], int], None]


class SensorMetrics:
    """Prometheus counters of what the models saw (on the server's registry)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.observations = Counter(
            "edge_inference_sensor_observations", "Observations learned", registry=registry
        )
        self.anomalies = Counter(
            "edge_inference_sensor_anomalies",
            "Anomaly episodes started, by kind",
            ["kind"],
            registry=registry,
        )
        self.series = Gauge("edge_inference_sensor_series", "Series learned", registry=registry)

    def count(self, out: F64) -> None:
        self.observations.inc(len(out))
        starts = out[out[:, model.OUT_EVENT] == model.EVENT_START, model.OUT_KIND]
        if not starts.size:  # the usual case; np.unique costs more than the model's update
            return
        for kind, n in zip(*np.unique(starts.astype(np.int64), return_counts=True), strict=True):
            self.anomalies.labels(KIND_NAMES[int(kind)]).inc(int(n))


class UnknownSeriesError(KeyError):
    """No such series has been learned."""


@dataclass
class ObserveResult:
    series_id: str
    t: F64
    v: F64
    out: F64
    row: SeriesRow

    def rows(self, only_anomalies: bool = False) -> list[dict[str, Any]]:
        out = self.out
        kinds = out[:, model.OUT_KIND].astype(np.int64)
        picked = np.flatnonzero(kinds) if only_anomalies else range(len(self.t))
        return [_row(self.t[i], self.v[i], out[i], int(kinds[i])) for i in picked]


def _row(t: float, v: float, out: F64, kind: int) -> dict[str, Any]:
    return {
        "t": float(t),
        "v": float(v),
        "score": round(float(out[model.OUT_SCORE]), 4),
        "anomaly": kind != model.KIND_NONE,
        "kind": KIND_NAMES[kind] if kind else None,
        "direction": _direction(out[model.OUT_DIRECTION]) if kind else None,
        "expected": float(out[model.OUT_EXPECTED]),
        "lower": float(out[model.OUT_LOWER]),
        "upper": float(out[model.OUT_UPPER]),
    }


def _direction(value: float) -> str | None:
    return "up" if value > 0 else ("down" if value < 0 else None)


@dataclass
class _Pending:
    rows: dict[str, SeriesRow] = field(default_factory=dict)
    done: asyncio.Future[None] | None = None


class SensorPipeline:
    def __init__(
        self,
        data_dir: Path,
        publish: Publish | None = None,
        params: ModelParams | None = None,
        registry: CollectorRegistry | None = None,
        backend: Backend | None = None,
    ) -> None:
        self.params = params or ModelParams()
        self._scorer = SensorScorer(backend)
        self._orphaned: set[str] = set()  # series whose scoring model is missing (warned once)
        self._metrics = SensorMetrics(registry or CollectorRegistry())
        self._p = self.params.as_array()
        self._path = data_dir / "sensors.sqlite3"
        self._store: SensorStore | None = None
        self._publish = publish
        self._series: dict[str, SeriesRow] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._pending = _Pending()
        self._writer: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()

    async def start(self) -> None:
        self._store = store = await asyncio.to_thread(SensorStore, self._path)
        self._series = await asyncio.to_thread(store.load_all)
        self._metrics.series.set(len(self._series))
        # Compile (or load from numba's cache) before the first request needs it.
        await asyncio.to_thread(model.update, model.new_state(), np.zeros(0), np.zeros(0), self._p)
        self._writer = asyncio.create_task(self._write_loop(), name="sensor-store")
        _LOGGER.info("Sensors: %d series loaded from %s", len(self._series), self._path)

    async def stop(self) -> None:
        if self._writer:
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
        if self._store:
            await asyncio.to_thread(self._store.close)

    def describe(self) -> dict[str, Any]:
        # Stable on purpose: the announce is re-published whenever this changes.
        return {
            "kinds": list(KIND_NAMES[1:]),
            "max_horizon_s": MAX_HORIZON_S,
            "models": self._scorer.names(),
        }

    def series_ids(self) -> list[str]:
        return sorted(self._series)

    async def observe(self, series_id: str, batch: Batch) -> ObserveResult:
        """Learn a batch and commit it; raises ObservationError for the documented conflicts."""
        outcome = (await self.observe_many({series_id: batch}))[series_id]
        if isinstance(outcome, ObservationError):
            raise outcome
        return outcome

    async def observe_many(
        self, batches: dict[str, Batch]
    ) -> dict[str, ObserveResult | ObservationError]:
        """Learn batches of many series and commit them in one transaction.

        A series whose batch conflicts with what it learned gets its ObservationError; the
        others are learned. The locks are taken in name order, so two calls never deadlock.
        """
        self._started()
        outcomes: dict[str, ObserveResult | ObservationError] = {}
        async with contextlib.AsyncExitStack() as locks:
            for series_id in sorted(batches):
                await locks.enter_async_context(self._locks.setdefault(series_id, asyncio.Lock()))
            rows = []
            for series_id, batch in batches.items():
                t, v = batch.t, batch.v
                try:
                    row = self._checked_row(series_id, batch)
                    scorer = batch.model or row.scorer
                    state = row.state.copy()
                    scores = (
                        await self._user_scores(series_id, scorer, state, batch) if scorer else None
                    )
                except ObservationError as err:
                    outcomes[series_id] = err
                    continue
                out = await self._learn(state, t, v, scores)
                new_row = SeriesRow(series_id, row.unit or batch.unit, state, scorer)
                rows.append(new_row)
                outcomes[series_id] = ObserveResult(series_id, t, v, out, new_row)
            if rows:
                await self._commit(rows)
            for new_row in rows:
                self._series[new_row.series_id] = new_row
            self._metrics.series.set(len(self._series))
        for outcome in outcomes.values():
            if isinstance(outcome, ObserveResult):
                self._metrics.count(outcome.out)
                self._publish_events(outcome.series_id, outcome.t, outcome.v, outcome.out)
        return outcomes

    async def _learn(self, state: F64, t: F64, v: F64, scores: F64 | None) -> F64:
        if len(t) >= THREAD_BATCH:
            return await asyncio.to_thread(model.update, state, t, v, self._p, scores)
        return model.update(state, t, v, self._p, scores)

    async def _user_scores(
        self, series_id: str, scorer: str, state: F64, batch: Batch
    ) -> F64 | None:
        """The user's model's scores: the built-in model runs on a copy for the features.

        A model the series is bound to but the repository no longer has (not one this request
        names) leaves the built-in rarity to score, so no reading is refused for it."""
        t, v = batch.t, batch.v
        try:
            config = self._scorer.config(scorer)  # 404 before any work
        except ObservationError:
            if batch.model is not None:
                raise
            if series_id not in self._orphaned:
                self._orphaned.add(series_id)
                _LOGGER.warning(
                    "Sensors: %s is bound to the scoring model %s, which the model repository "
                    "does not have now: the built-in rarity scores it until the model is back",
                    series_id,
                    scorer,
                )
            return None
        self._orphaned.discard(series_id)
        out = await self._learn(state.copy(), t, v, None)
        last_t = float(state[model.S_LAST_T]) if state[model.S_COUNT] > 0 else None
        return await self._scorer.score(config, features(t, v, out, last_t))

    def _checked_row(self, series_id: str, batch: Batch) -> SeriesRow:
        t, unit = batch.t, batch.unit
        row = self._series.get(series_id)
        if row is None:
            return SeriesRow(series_id, unit, model.new_state())
        if batch.model is not None and row.scorer is not None and batch.model != row.scorer:
            raise ObservationError(
                409,
                "model_mismatch",
                f"{series_id} is scored by {row.scorer!r}, not {batch.model!r}: DELETE it to "
                "start over with another model",
            )
        if unit is not None and row.unit is not None and unit != row.unit:
            raise ObservationError(
                409,
                "unit_mismatch",
                f"{series_id} is learned in {row.unit!r}, not {unit!r}: DELETE it to start "
                "over in the new unit",
            )
        last_t = row.state[model.S_LAST_T]
        if row.state[model.S_COUNT] > 0 and t[0] <= last_t:
            raise ObservationError(
                409,
                "stale_observation",
                f"t={t[0]:.3f} is not after the last learned observation t={last_t:.3f}; "
                "send only newer ones",
            )
        return row

    async def reset(self, series_id: str) -> None:
        async with self._locks.setdefault(series_id, asyncio.Lock()):
            if series_id not in self._series:
                raise UnknownSeriesError(series_id)
            await asyncio.to_thread(self._started().delete, series_id)
            del self._series[series_id]
            self._orphaned.discard(series_id)
            self._metrics.series.set(len(self._series))

    def state(self, series_id: str, horizon_s: float = 3600.0, points: int = 12) -> dict[str, Any]:
        row = self._series.get(series_id)
        if row is None:
            raise UnknownSeriesError(series_id)
        body = self.describe_series(row)
        body["forecast"] = self.forecast(row, horizon_s, points)
        return body

    def forecast(self, row: SeriesRow, horizon_s: float, points: int) -> list[dict[str, float]]:
        if not 0 < horizon_s <= MAX_HORIZON_S or not 1 <= points <= MAX_FORECAST_POINTS:
            raise ObservationError(
                400,
                "invalid_parameter",
                f"horizon: 1..{int(MAX_HORIZON_S)} s, points: 1..{MAX_FORECAST_POINTS}",
            )
        start = max(row.state[model.S_LAST_T], time.time())
        ts = start + horizon_s * np.arange(1, points + 1) / points
        rows = model.expected_at(row.state, ts, self._p)
        return [
            {"t": float(t), "v": float(r[0]), "lower": float(r[1]), "upper": float(r[2])}
            for t, r in zip(ts, rows, strict=True)
        ]

    def describe_series(self, row: SeriesRow) -> dict[str, Any]:
        s = row.state
        kind = int(s[model.S_KIND])
        typical = float(s[model.S_DT])
        last_t = float(s[model.S_LAST_T])
        span = last_t - float(s[model.S_FIRST_T])
        silent = time.time() - last_t
        missing = typical > 0 and silent > max(
            self.params.gap_factor * typical, self.params.gap_min_s
        )
        return {
            "series_id": row.series_id,
            "unit": row.unit,
            "observations": int(s[model.S_COUNT]),
            "last": {"t": last_t, "v": float(s[model.S_LAST_V])},
            "anomaly": {
                "active": kind != model.KIND_NONE,
                "kind": KIND_NAMES[kind] if kind else None,
                "direction": _direction(s[model.S_DIRECTION]) if kind else None,
                "since": float(s[model.S_SINCE]) if kind else None,
                "peak_score": round(float(s[model.S_PEAK]), 4) if kind else None,
            },
            "missing_data": bool(missing),
            "model": {
                "level": float(s[model.S_LEVEL]),
                "trend_per_hour": float(s[model.S_TREND]),
                "sigma": model.scale_sigma(s),
                "typical_interval_s": typical,
                "learning": bool(s[model.S_COUNT] < self.params.warmup),
                "daily_seasonality": bool(span >= model.DAY_S),
                "weekly_seasonality": bool(span >= model.WEEK_S),
                "scorer": row.scorer or BUILT_IN,
            },
        }

    def _started(self) -> SensorStore:
        if self._store is None:
            raise StoreUnavailableError("the sensors pipeline has not started")
        return self._store

    async def _commit(self, rows: list[SeriesRow]) -> None:
        """Queue the rows for the next transaction and wait until they are on disk."""
        pending = self._pending
        if pending.done is None:
            pending.done = asyncio.get_running_loop().create_future()
        for row in rows:
            pending.rows[row.series_id] = row
        done = pending.done
        self._wake.set()
        await asyncio.shield(done)

    async def _write_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            batch, self._pending = self._pending, _Pending()
            if batch.done is None:
                continue
            try:
                rows = list(batch.rows.values())
                await asyncio.to_thread(self._started().save, rows, time.time())
            except Exception as err:
                _LOGGER.exception("Sensors: could not write learned state")
                batch.done.set_exception(StoreUnavailableError(str(err)))
            else:
                batch.done.set_result(None)

    def _publish_events(self, series_id: str, t: F64, v: F64, out: F64) -> None:
        if self._publish is None:
            return
        events = out[:, model.OUT_EVENT]
        recent = time.time() - EVENT_MAX_AGE_S
        for i in np.flatnonzero(events):
            if t[i] < recent:
                continue
            started = events[i] == model.EVENT_START
            kind = int(out[i, model.OUT_KIND if started else model.OUT_ENDED])
            payload = {
                "type": "anomaly",
                "event": "new" if started else "end",
                "series_id": series_id,
                **_row(t[i], v[i], out[i], kind),
                "anomaly": bool(started),
            }
            self._publish("events", payload, 1)


class StoreUnavailableError(RuntimeError):
    """The learned state could not be committed (disk full, read-only data dir)."""
