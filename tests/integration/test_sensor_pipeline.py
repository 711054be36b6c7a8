"""A sensor pipeline on HA 2026.10 with the real server, warmed up from the real recorder.

Real parts: HA's recorder (in-memory SQLite) holding a week of hourly long-term statistics and
a few recorded states of a freezer thermometer, the edge-inference-server subprocess on a real
Mosquitto, the integration set up from a config entry with a sensor pipeline subentry.
"""

from __future__ import annotations

import math
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from homeassistant.components.recorder import Recorder
from homeassistant.components.recorder.models import (
    StatisticData,
    StatisticMeanType,
    StatisticMetaData,
)
from homeassistant.components.recorder.statistics import async_import_statistics
from homeassistant.config_entries import SOURCE_USER, SubentryFlowResult
from homeassistant.const import CONF_API_TOKEN, CONF_NAME, CONF_URL, STATE_OFF, STATE_ON
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.helpers import entity_registry as er
from homeassistant.util import dt as dt_util
from pytest_homeassistant_custom_component.common import MockConfigEntry
from pytest_homeassistant_custom_component.components.recorder.common import (
    async_wait_recording_done,
)

from custom_components.edge_inference.const import CONF_SERVER_ID, DOMAIN
from custom_components.edge_inference.sensor_pipeline import (
    CONF_SCORING_MODEL,
    CONF_SENSORS,
    CONF_WARMUP_DAYS,
    SUBENTRY_SENSORS,
)
from tests.helpers.broker import MosquittoBroker
from tests.helpers.sensor_models import NIGHT_WATCH, repository_with_night_watch
from tests.helpers.server_process import DEFAULT_REPO, ServerProcess

from .common import SERVER_ID, TOKEN, async_wait_for

FREEZER = "sensor.freezer"
ATTRS = {"unit_of_measurement": "°C", "state_class": "measurement", "friendly_name": "Freezer"}
DAYS = 7


@pytest.fixture(autouse=True)
def mock_recorder_before_hass(recorder_db_url: str) -> None:
    """The recorder's database is prepared before hass starts (HA's recorder test pattern)."""


def usual(t: float) -> float:
    """A freezer at -18 °C that is a degree warmer in the afternoons."""
    return -18.0 + math.sin(2 * math.pi * (t / 86400 - 0.3))


async def _import_week_of_statistics(hass: HomeAssistant) -> int:
    now = dt_util.utcnow().replace(minute=0, second=0, microsecond=0)
    rows: list[StatisticData] = []
    for hour in range(DAYS * 24 - 1, 1, -1):  # all inside the warm-up window
        start = now - timedelta(hours=hour)
        mean = usual(start.timestamp() + 1800) + 0.05 * math.sin(hour * 1.7)  # a little noise
        rows.append(StatisticData(start=start, mean=mean, min=mean - 0.1, max=mean + 0.1))
    metadata = StatisticMetaData(
        mean_type=StatisticMeanType.ARITHMETIC,
        has_sum=False,
        name="Freezer",
        source="recorder",
        statistic_id=FREEZER,
        unit_class="temperature",
        unit_of_measurement="°C",
    )
    async_import_statistics(hass, metadata, rows)
    await async_wait_recording_done(hass)
    return len(rows)


def _series(server: ServerProcess) -> dict[str, Any]:
    response = requests.get(
        f"{server.url}/api/v1/sensors/{FREEZER}",
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


@pytest.mark.timeout(120)
async def test_warm_up_from_the_recorder_then_stream_and_fire_anomalies(
    recorder_mock: Recorder,
    hass: HomeAssistant,
    real_mqtt: MockConfigEntry,
    server: ServerProcess,
) -> None:
    hourly = await _import_week_of_statistics(hass)
    # A few recorded states of today: they follow the statistics in the warm-up.
    for offset in (0.3, 0.2, 0.1):
        hass.states.async_set(FREEZER, f"{usual(time.time()) + offset:.2f}", ATTRS)
        await hass.async_block_till_done()
    await async_wait_recording_done(hass)

    entry = MockConfigEntry(
        domain=DOMAIN,
        unique_id=SERVER_ID,
        title="Server",
        data={CONF_URL: server.url, CONF_API_TOKEN: TOKEN, CONF_SERVER_ID: SERVER_ID},
        subentries_data=[
            {
                "data": {CONF_SENSORS: [FREEZER], CONF_WARMUP_DAYS: DAYS},
                "subentry_type": SUBENTRY_SENSORS,
                "title": "Kitchen sensors",
                "unique_id": None,
            }
        ],
    )
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done(wait_background_tasks=True)

    # The server learned the week of hourly means and the recorded states.
    learned = _series(server)
    assert learned["observations"] == hourly + 3
    assert learned["unit"] == "°C"
    assert learned["model"]["daily_seasonality"] is True

    registry = er.async_get(hass)
    subentry_id = next(iter(entry.subentries))

    def entity(key: str, platform: str) -> str:
        entity_id = registry.async_get_entity_id(platform, DOMAIN, f"{subentry_id}_{key}_{FREEZER}")
        assert entity_id is not None, key
        return entity_id

    problem = entity("sensor_anomaly", "binary_sensor")
    score = entity("anomaly_score", "sensor")
    expected = entity("expected_value", "sensor")
    event = entity("sensor_anomaly_event", "event")
    assert hass.states.get(problem).attributes["device_class"] == "problem"  # type: ignore[union-attr]
    expected_state = hass.states.get(expected)
    assert expected_state is not None
    assert expected_state.attributes["unit_of_measurement"] == "°C"
    assert len(expected_state.attributes["forecast"]) == 6
    assert abs(float(expected_state.state) - usual(time.time())) < 1.0

    # A usual reading streams in: no problem, the expected value follows the daily curve.
    hass.states.async_set(FREEZER, f"{usual(time.time()):.2f}", ATTRS)
    await async_wait_for(hass, lambda: _state(hass, problem) == STATE_OFF)
    lower = hass.states.get(expected).attributes["lower"]  # type: ignore[union-attr]
    upper = hass.states.get(expected).attributes["upper"]  # type: ignore[union-attr]
    assert lower < usual(time.time()) < upper
    assert float(_state(hass, score)) < 0.5

    # The door stays open: +6 °C at once is a spike, and the event fires with its kind.
    hass.states.async_set(FREEZER, f"{usual(time.time()) + 6:.2f}", ATTRS)
    await async_wait_for(hass, lambda: _state(hass, problem) == STATE_ON)
    assert float(_state(hass, score)) > 0.5
    fired = hass.states.get(event)
    assert fired is not None
    assert fired.attributes["event_type"] == "anomaly"
    assert fired.attributes["kind"] == "spike"
    assert fired.attributes["direction"] == "up"
    assert hass.states.get(problem).attributes["kind"] == "spike"  # type: ignore[union-attr]

    # The sensor switches to Fahrenheit: what was learned in °C is dropped, learning starts over.
    hass.states.async_set(FREEZER, "0.5", {**ATTRS, "unit_of_measurement": "°F"})
    await async_wait_for(hass, lambda: _series_unit(server) == "°F")
    assert _series(server)["observations"] == 1
    await async_wait_for(hass, lambda: _state(hass, expected) != "")
    assert hass.states.get(expected).attributes["unit_of_measurement"] == "°F"  # type: ignore[union-attr]

    assert await hass.config_entries.async_unload(entry.entry_id)


def _series_unit(server: ServerProcess) -> str | None:
    response = requests.get(
        f"{server.url}/api/v1/sensors/{FREEZER}",
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=10,
    )
    return response.json().get("unit") if response.status_code == 200 else None


async def _server_entry_and_sensor_flow(
    hass: HomeAssistant, server: ServerProcess
) -> tuple[MockConfigEntry, SubentryFlowResult]:
    """The server's entry, set up, and the first form of a new sensor pipeline subentry."""
    entry = MockConfigEntry(
        domain=DOMAIN,
        unique_id=SERVER_ID,
        title="Server",
        data={CONF_URL: server.url, CONF_API_TOKEN: TOKEN, CONF_SERVER_ID: SERVER_ID},
    )
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    result = await hass.config_entries.subentries.async_init(
        (entry.entry_id, SUBENTRY_SENSORS), context={"source": SOURCE_USER}
    )
    return entry, result


def _state(hass: HomeAssistant, entity_id: str) -> str:
    state = hass.states.get(entity_id)
    return state.state if state is not None else ""


@pytest.mark.timeout(120)
async def test_subentry_flow_takes_numeric_sensors_and_adds_their_entities(
    recorder_mock: Recorder,
    hass: HomeAssistant,
    real_mqtt: MockConfigEntry,
    server: ServerProcess,
) -> None:
    hass.states.async_set(FREEZER, "-18.2", ATTRS)
    hass.states.async_set("sensor.weather", "sunny", {"friendly_name": "Weather"})
    entry, result = await _server_entry_and_sensor_flow(hass, server)
    assert result["type"] is FlowResultType.FORM
    assert CONF_SCORING_MODEL not in result["data_schema"].schema  # this server has none
    result = await hass.config_entries.subentries.async_configure(
        result["flow_id"],
        {CONF_NAME: "Kitchen", CONF_SENSORS: [FREEZER, "sensor.weather"], CONF_WARMUP_DAYS: 3},
    )
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {CONF_SENSORS: "not_numeric"}
    result = await hass.config_entries.subentries.async_configure(
        result["flow_id"], {CONF_NAME: "Kitchen", CONF_SENSORS: [FREEZER], CONF_WARMUP_DAYS: 3}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["title"] == "Kitchen"
    assert result["data"] == {CONF_SENSORS: [FREEZER], CONF_WARMUP_DAYS: 3}
    await hass.async_block_till_done(wait_background_tasks=True)

    # The entry reloaded with the pipeline: its entities are there and the server knows the
    # sensor (warmed from the one recorded state, then streaming).
    subentry_id = next(iter(entry.subentries))
    registry = er.async_get(hass)
    problem = registry.async_get_entity_id(
        "binary_sensor", DOMAIN, f"{subentry_id}_sensor_anomaly_{FREEZER}"
    )
    assert problem is not None
    hass.states.async_set(FREEZER, "-18.1", ATTRS)
    await async_wait_for(hass, lambda: _state(hass, problem) in (STATE_ON, STATE_OFF))
    assert _series(server)["observations"] >= 1
    assert await hass.config_entries.async_unload(entry.entry_id)


@pytest.mark.timeout(120)
async def test_a_scoring_model_of_the_server_is_offered_and_used(
    recorder_mock: Recorder,
    hass: HomeAssistant,
    real_mqtt: MockConfigEntry,
    broker: MosquittoBroker,
    tmp_path: Path,
) -> None:
    """A server with a sensor model in its repository: the subentry flow offers it, and the
    pipeline's sensors are then scored by it on the server."""
    repo = repository_with_night_watch(tmp_path / "repo", DEFAULT_REPO)
    server = ServerProcess(
        tmp_path / "server",
        mqtt_port=broker.port,
        token=TOKEN,
        server_id=SERVER_ID,
        model_repo=repo,
    )
    server.start()
    try:
        hass.states.async_set(FREEZER, "-18.2", ATTRS)
        entry, result = await _server_entry_and_sensor_flow(hass, server)
        assert CONF_SCORING_MODEL in result["data_schema"].schema
        result = await hass.config_entries.subentries.async_configure(
            result["flow_id"],
            {
                CONF_NAME: "Garage",
                CONF_SENSORS: [FREEZER],
                CONF_WARMUP_DAYS: 1,
                CONF_SCORING_MODEL: NIGHT_WATCH,
            },
        )
        assert result["type"] is FlowResultType.CREATE_ENTRY
        assert result["data"][CONF_SCORING_MODEL] == NIGHT_WATCH
        await hass.async_block_till_done(wait_background_tasks=True)
        assert _series(server)["model"]["scorer"] == NIGHT_WATCH
        assert await hass.config_entries.async_unload(entry.entry_id)
    finally:
        server.stop()
