"""Sensor pipeline: warm each monitored sensor's model from the recorder, then stream changes.

At start, for each sensor the server does not know up to now: hourly means from the
recorder's long-term statistics for the part of the warm-up period the state history no
longer covers, then every recorded state change, sent in large batches (`results=none`).
Afterwards each state change is one observation; its result (score, anomaly kind, expected
value and interval) feeds the entities, and the start of an anomaly fires their event.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, Final

from homeassistant.components.recorder import history
from homeassistant.components.recorder.statistics import statistics_during_period
from homeassistant.config_entries import ConfigSubentry
from homeassistant.const import ATTR_UNIT_OF_MEASUREMENT
from homeassistant.core import (
    CALLBACK_TYPE,
    Event,
    EventStateChangedData,
    HomeAssistant,
    State,
    callback,
)
from homeassistant.helpers.event import async_track_state_change_event
from homeassistant.helpers.recorder import get_instance
from homeassistant.util import dt as dt_util

from .client import EdgeInferenceClient, EdgeInferenceError, RequestError

_LOGGER = logging.getLogger(__name__)

SUBENTRY_SENSORS: Final = "sensor_pipeline"
CONF_SENSORS: Final = "sensors"
CONF_WARMUP_DAYS: Final = "warmup_days"
CONF_SCORING_MODEL: Final = "scoring_model"  # a user's model on the server, else its rarity
DEFAULT_WARMUP_DAYS: Final = 7
EVENT_ANOMALY: Final = "anomaly"
WARMUP_BATCH: Final = 20_000
BUILT_IN_SCORER: Final = "rarity"  # what the server calls its own score
FORECAST_EVERY_S: Final = 300.0
FORECAST_HORIZON_S: Final = 3600
FORECAST_POINTS: Final = 6


def numeric(state: State | None) -> float | None:
    """The state as a finite number, or None (unknown, unavailable, text)."""
    if state is None:
        return None
    try:
        value = float(state.state)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


class SensorPipeline:
    """One sensor pipeline subentry: the monitored sensors and their latest results."""

    def __init__(
        self, hass: HomeAssistant, client: EdgeInferenceClient, subentry: ConfigSubentry
    ) -> None:
        """Keep the subentry's settings; nothing runs before async_start."""
        self.hass = hass
        self.client = client
        self.subentry_id = subentry.subentry_id
        self.title = subentry.title
        self.sensors: list[str] = list(subentry.data[CONF_SENSORS])
        self.warmup_days = float(subentry.data.get(CONF_WARMUP_DAYS, DEFAULT_WARMUP_DAYS))
        self.scoring_model: str | None = subentry.data.get(CONF_SCORING_MODEL) or None
        self.results: dict[str, dict[str, Any]] = {}
        self.forecasts: dict[str, list[dict[str, float]]] = {}
        self.units: dict[str, str | None] = {}
        for entity_id in self.sensors:
            state = hass.states.get(entity_id)
            self.units[entity_id] = (
                state.attributes.get(ATTR_UNIT_OF_MEASUREMENT) if state is not None else None
            )
        self.warmed: dict[str, int] = {}  # observations sent at warm-up, per sensor
        self._forecast_at: dict[str, float] = {}
        self._listeners: list[CALLBACK_TYPE] = []
        self._anomaly_listeners: dict[str, list[Callable[[dict[str, Any]], None]]] = {}
        self._unsubscribe: CALLBACK_TYPE | None = None

    @callback
    def async_add_listener(self, listener: CALLBACK_TYPE) -> CALLBACK_TYPE:
        """Call listener when any result changes."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    @callback
    def async_add_anomaly_listener(
        self, entity_id: str, listener: Callable[[dict[str, Any]], None]
    ) -> CALLBACK_TYPE:
        """Call listener with the result when an anomaly of this sensor starts."""
        listeners = self._anomaly_listeners.setdefault(entity_id, [])
        listeners.append(listener)
        return lambda: listeners.remove(listener)

    async def async_start(self) -> None:
        """Warm up every sensor, then follow their state changes."""
        for entity_id in self.sensors:
            try:
                await self._async_warm_up(entity_id)
            except EdgeInferenceError as err:
                _LOGGER.warning("Warm-up of %s failed (it learns from now on): %s", entity_id, err)
        self._unsubscribe = async_track_state_change_event(
            self.hass, self.sensors, self._async_state_changed
        )

    async def async_stop(self) -> None:
        """Stop following the sensors; the server keeps what it learned."""
        if self._unsubscribe:
            self._unsubscribe()
            self._unsubscribe = None

    async def _async_warm_up(self, entity_id: str) -> None:
        if (state := self.hass.states.get(entity_id)) is not None:
            self.units[entity_id] = state.attributes.get(ATTR_UNIT_OF_MEASUREMENT)
        known = await self.client.async_get_series(entity_id)
        scorer = (known or {}).get("model", {}).get("scorer")  # None from servers before 2026-12
        if known and (
            known.get("unit") != self.units[entity_id]
            or (scorer is not None and scorer != (self.scoring_model or BUILT_IN_SCORER))
        ):
            # The sensor changed unit, or the pipeline its scoring model: start over.
            await self.client.async_delete_series(entity_id)
            known = None
        last_t = float(known["last"]["t"]) if known else -math.inf
        start = dt_util.utcnow() - timedelta(days=self.warmup_days)
        observations = [o for o in await self._async_history(entity_id, start) if o["t"] > last_t]
        self.warmed[entity_id] = len(observations)
        for i in range(0, len(observations), WARMUP_BATCH):
            await self.client.async_post_observations(
                entity_id,
                observations[i : i + WARMUP_BATCH],
                unit=self.units[entity_id],
                model=self.scoring_model,
                results="none",
            )
        _LOGGER.debug("Warmed %s with %d observations", entity_id, len(observations))
        if observations or known:
            await self._async_refresh_forecast(entity_id)

    async def _async_history(self, entity_id: str, start: datetime) -> list[dict[str, float]]:
        """Hourly means where only long-term statistics remain, then every state change."""
        if "recorder" not in self.hass.config.components:
            return []  # no history kept: the model learns from now on
        recorder = get_instance(self.hass)
        changes = await recorder.async_add_executor_job(
            lambda: history.state_changes_during_period(
                self.hass,
                start,
                None,
                entity_id,
                no_attributes=True,
                include_start_time_state=False,
            )
        )
        states = [
            {"t": s.last_changed.timestamp(), "v": v}
            for s in changes.get(entity_id, [])
            if (v := numeric(s)) is not None
        ]
        first_state = states[0]["t"] if states else math.inf
        stats = await recorder.async_add_executor_job(
            statistics_during_period,
            self.hass,
            start,
            None,
            {entity_id},
            "hour",
            None,
            {"mean"},
        )
        hourly = [
            {"t": row["start"] + 1800.0, "v": mean}
            for row in stats.get(entity_id, [])
            if (mean := row.get("mean")) is not None and row["start"] + 1800.0 < first_state
        ]
        merged = hourly + states
        # One observation per time: the server wants strictly increasing times.
        unique: list[dict[str, float]] = []
        for o in merged:
            if not unique or o["t"] > unique[-1]["t"]:
                unique.append(o)
        return unique

    async def _async_state_changed(self, event: Event[EventStateChangedData]) -> None:
        new_state = event.data["new_state"]
        value = numeric(new_state)
        if new_state is None or value is None:
            return
        entity_id = new_state.entity_id
        t = new_state.last_changed.timestamp()
        unit = new_state.attributes.get(ATTR_UNIT_OF_MEASUREMENT)
        try:
            if unit != self.units.get(entity_id):
                # A new unit (°F for °C): what was learned no longer applies; learn anew.
                await self.client.async_delete_series(entity_id)
                self.units[entity_id] = unit
                self.results.pop(entity_id, None)
                self.forecasts.pop(entity_id, None)
                self._forecast_at.pop(entity_id, None)
            answer = await self.client.async_post_observations(
                entity_id,
                [{"t": t, "v": value}],
                unit=self.units.get(entity_id),
                model=self.scoring_model,
            )
        except RequestError as err:
            if err.status == 409 and err.code == "stale_observation":
                return  # already learned (a restart replayed it)
            _LOGGER.warning("%s: the server refused %s: %s", entity_id, value, err)
            return
        except EdgeInferenceError as err:
            _LOGGER.debug("%s: server unreachable: %s", entity_id, err)
            return
        result = answer["results"][0]
        started = result["anomaly"] and not self.results.get(entity_id, {}).get("anomaly")
        self.results[entity_id] = result
        if t - self._forecast_at.get(entity_id, 0.0) > FORECAST_EVERY_S:
            await self._async_refresh_forecast(entity_id)
        if started:
            for listener in list(self._anomaly_listeners.get(entity_id, [])):
                listener(result)
        self._notify()

    async def _async_refresh_forecast(self, entity_id: str) -> None:
        try:
            state = await self.client.async_get_series(
                entity_id, horizon=FORECAST_HORIZON_S, points=FORECAST_POINTS
            )
        except EdgeInferenceError:
            return
        if state is None:
            return
        self.forecasts[entity_id] = state.get("forecast", [])
        self._forecast_at[entity_id] = dt_util.utcnow().timestamp()
        if entity_id not in self.results and state.get("forecast"):
            # Before the first live reading: the model's view of now.
            first = state["forecast"][0]
            anomaly = state.get("anomaly", {})
            self.results[entity_id] = {
                "t": first["t"],
                "v": state["last"]["v"],
                "score": anomaly.get("peak_score") or 0.0,
                "anomaly": bool(anomaly.get("active")),
                "kind": anomaly.get("kind"),
                "direction": anomaly.get("direction"),
                "expected": first["v"],
                "lower": first["lower"],
                "upper": first["upper"],
            }
        self._notify()

    @callback
    def _notify(self) -> None:
        for listener in list(self._listeners):
            listener()
