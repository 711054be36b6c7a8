"""The blueprints in blueprints/automation/edge_inference, run as automations in a test HA
against the integration's own entities: each fires when it should and stays quiet otherwise.

- Lights on detection: a stream pipeline whose counts and events arrive over MQTT (mocked
  server and MQTT, as in test_pipeline.py), the pipeline's real occupancy sensor, HA's real
  state trigger with its `for:` dwell, time and sun conditions. `light` services are recorded.
- Ask what a camera sees: a sentence to Assist (HA's conversation component) runs the
  integration's detect_objects action on a camera (mocked server) and speaks the counts.
- Notify on a sensor anomaly: the real server on a real Mosquitto, a sensor pipeline warmed
  from the recorder (as in test_sensor_pipeline.py), a spike fed in, the pipeline's real
  anomaly event entity. `notify.send_message` is recorded.
"""

from __future__ import annotations

import json
import shutil
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from homeassistant.components.recorder import Recorder
from homeassistant.const import CONF_API_TOKEN, CONF_URL, STATE_OFF, STATE_ON
from homeassistant.core import HomeAssistant, ServiceCall
from homeassistant.helpers import entity_registry as er
from homeassistant.setup import async_setup_component
from homeassistant.util import dt as dt_util
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    async_fire_mqtt_message,
    async_fire_time_changed,
    async_mock_service,
)
from pytest_homeassistant_custom_component.components.recorder.common import (
    async_wait_recording_done,
)
from pytest_homeassistant_custom_component.test_util.aiohttp import AiohttpClientMocker

from custom_components.edge_inference.const import CONF_SERVER_ID, DOMAIN
from custom_components.edge_inference.sensor_pipeline import (
    CONF_SENSORS,
    CONF_WARMUP_DAYS,
    SUBENTRY_SENSORS,
)
from tests.helpers.server_process import ServerProcess

from .common import ROOT, SERVER_ID, TOKEN, async_wait_for
from .conftest import STREAM_CAMERA, STREAM_SUB, async_setup_entry, subentry
from .test_sensor_pipeline import ATTRS, DAYS, FREEZER, _import_week_of_statistics, usual

BLUEPRINTS = ROOT / "blueprints" / "automation" / "edge_inference"
OCCUPANCY = "binary_sensor.street_person_occupancy"


def _install_blueprint(hass: HomeAssistant, name: str) -> str:
    """Where HA looks for it: <config>/blueprints/automation/edge_inference/<name>."""
    target = Path(hass.config.path("blueprints", "automation", "edge_inference"))
    target.mkdir(parents=True, exist_ok=True)
    shutil.copy(BLUEPRINTS / name, target / name)
    return f"edge_inference/{name}"


async def _automation(hass: HomeAssistant, name: str, inputs: dict[str, Any]) -> None:
    config = {"automation": {"use_blueprint": {"path": _install_blueprint(hass, name),
                                               "input": inputs}}}  # fmt: skip
    assert await async_setup_component(hass, "automation", config)
    await hass.async_block_till_done()
    assert hass.states.async_entity_ids("automation"), "the blueprint did not load"


def _counts(hass: HomeAssistant, people: int) -> None:
    async_fire_mqtt_message(
        hass,
        f"edge_inference/kitchen-nuc/cameras/{STREAM_CAMERA}/counts",
        json.dumps({"camera": STREAM_CAMERA, "counts": {"person": people}}),
    )


async def _later(hass: HomeAssistant, seconds: float) -> None:
    async_fire_time_changed(hass, dt_util.utcnow() + timedelta(seconds=seconds))
    await hass.async_block_till_done()


@pytest.mark.usefixtures("mock_mqtt")
@pytest.mark.parametrize("expected_lingering_timers", [True])
async def test_lights_on_detection(hass: HomeAssistant, mock_server: AiohttpClientMocker) -> None:
    await async_setup_entry(hass, subentry(STREAM_SUB, "camera.street", "stream", fps=5))
    assert hass.states.get(OCCUPANCY) is not None
    turn_on: list[ServiceCall] = async_mock_service(hass, "light", "turn_on")
    turn_off: list[ServiceCall] = async_mock_service(hass, "light", "turn_off")
    hass.states.async_set("sun.sun", "below_horizon")
    await _automation(
        hass,
        "lights_on_detection.yaml",
        {"occupancy": OCCUPANCY, "lights": {"entity_id": "light.porch"}, "dwell": 20,
         "only_when_dark": True, "off_after": 60},
    )  # fmt: skip

    # Someone passes by: the sensor is on for the pipeline's clear delay (10 s), shorter than
    # the dwell, so the lights stay off.
    _counts(hass, 1)
    await hass.async_block_till_done()
    assert hass.states.get(OCCUPANCY).state == STATE_ON  # type: ignore[union-attr]
    _counts(hass, 0)
    await _later(hass, 15)
    assert hass.states.get(OCCUPANCY).state == STATE_OFF  # type: ignore[union-attr]
    await _later(hass, 30)
    assert turn_on == []

    # Someone stays: after the dwell the lights go on; gone for a minute, they go off.
    _counts(hass, 2)
    await _later(hass, 10)
    assert turn_on == []
    _counts(hass, 2)
    await _later(hass, 21)
    assert [c.data["entity_id"] for c in turn_on] == [["light.porch"]]
    _counts(hass, 0)
    await _later(hass, 40)  # off after the clear delay, not yet gone for off_after
    assert hass.states.get(OCCUPANCY).state == STATE_OFF  # type: ignore[union-attr]
    assert turn_off == []
    await _later(hass, 80)
    assert [c.data["entity_id"] for c in turn_off] == [["light.porch"]]

    # Daylight: the sun condition keeps the lights off.
    hass.states.async_set("sun.sun", "above_horizon")
    _counts(hass, 1)
    await _later(hass, 5)
    _counts(hass, 1)
    await _later(hass, 25)
    assert hass.states.get(OCCUPANCY).state == STATE_ON  # type: ignore[union-attr]
    assert len(turn_on) == 1


@pytest.mark.usefixtures("mock_mqtt")
@pytest.mark.parametrize("expected_lingering_timers", [True])
async def test_lights_on_detection_outside_the_time_window(
    hass: HomeAssistant, mock_server: AiohttpClientMocker
) -> None:
    await async_setup_entry(hass, subentry(STREAM_SUB, "camera.street", "stream", fps=5))
    turn_on: list[ServiceCall] = async_mock_service(hass, "light", "turn_on")
    now = dt_util.now()
    window = [(now + timedelta(hours=h)).strftime("%H:%M:%S") for h in (2, 3)]
    await _automation(
        hass,
        "lights_on_detection.yaml",
        {"occupancy": OCCUPANCY, "lights": {"entity_id": "light.porch"}, "dwell": 0,
         "after": window[0], "before": window[1], "only_when_dark": False, "off_after": 0},
    )  # fmt: skip
    _counts(hass, 1)
    await _later(hass, 2)
    assert hass.states.get(OCCUPANCY).state == STATE_ON  # type: ignore[union-attr]
    assert turn_on == []


@pytest.fixture
def mock_recorder_before_hass(recorder_db_url: str) -> None:
    """The recorder's database is prepared before hass starts (HA's recorder test pattern)."""


@pytest.mark.timeout(180)
@pytest.mark.usefixtures("mock_recorder_before_hass")
async def test_notify_on_sensor_anomaly(
    recorder_mock: Recorder,
    hass: HomeAssistant,
    real_mqtt: MockConfigEntry,
    server: ServerProcess,
) -> None:
    await _import_week_of_statistics(hass)
    hass.states.async_set(FREEZER, f"{usual(time.time()):.2f}", ATTRS)
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
    subentry_id = next(iter(entry.subentries))
    event_entity = er.async_get(hass).async_get_entity_id(
        "event", DOMAIN, f"{subentry_id}_sensor_anomaly_event_{FREEZER}"
    )
    assert event_entity is not None
    sent: list[ServiceCall] = async_mock_service(hass, "notify", "send_message")
    await _automation(
        hass,
        "notify_on_sensor_anomaly.yaml",
        {"anomaly_event": event_entity, "notifier": "notify.phone", "cooldown": 0},
    )

    # A usual reading: nothing. The door left open (+6 °C at once): one message.
    hass.states.async_set(FREEZER, f"{usual(time.time()):.2f}", ATTRS)
    await hass.async_block_till_done(wait_background_tasks=True)
    assert sent == []
    before = hass.states.get(event_entity)
    spike = usual(time.time()) + 6
    hass.states.async_set(FREEZER, f"{spike:.2f}", ATTRS)
    # The event first (the server's detection), then the message (the blueprint).
    await async_wait_for(hass, lambda: hass.states.get(event_entity) != before, within=40)
    fired = hass.states.get(event_entity)
    assert fired is not None
    await async_wait_for(hass, lambda: len(sent) == 1)
    kind, expected = fired.attributes["kind"], float(fired.attributes["expected"])
    assert kind == "spike"
    call = sent[0]
    assert call.data["entity_id"] == ["notify.phone"]
    assert call.data["title"].endswith(": spike")
    assert f"reads {fired.attributes['v']} (up)" in call.data["message"]
    assert f"expected about {round(expected, 1)}" in call.data["message"]
    assert "Freezer" in call.data["message"]
    assert await hass.config_entries.async_unload(entry.entry_id)


@pytest.mark.usefixtures("mock_mqtt")
@pytest.mark.parametrize("expected_lingering_timers", [True])
async def test_ask_what_a_camera_sees(
    hass: HomeAssistant, mock_server: AiohttpClientMocker
) -> None:
    """A sentence to Assist runs detect_objects on the camera and answers with the counts
    (the mocked server returns 2 persons at 0.9 and 0.6, a car at 0.7, and a broken entry)."""
    await async_setup_entry(hass)
    assert await async_setup_component(hass, "homeassistant", {})
    assert await async_setup_component(hass, "conversation", {})
    await _automation(
        hass,
        "ask_what_a_camera_sees.yaml",
        {"camera": "camera.street", "min_score": 0.5},
    )

    async def ask(text: str) -> str:
        result = await hass.services.async_call(
            "conversation", "process", {"text": text}, blocking=True, return_response=True
        )
        assert result is not None
        return str(result["response"]["speech"]["plain"]["speech"])

    assert await ask("what do you see on the driveway") == "I see 1 car and 2 persons."
    detects = [c for c in mock_server.mock_calls if "/vision/detect" in str(c[1])]
    assert len(detects) == 1
    assert await ask("what is the weather like") != "I see 1 car and 2 persons."
    assert len([c for c in mock_server.mock_calls if "/vision/detect" in str(c[1])]) == 1
