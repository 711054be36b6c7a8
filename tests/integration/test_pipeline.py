"""Camera pipelines with a mocked server and mocked MQTT: both modes and their failures."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from homeassistant.const import STATE_OFF, STATE_ON, STATE_UNAVAILABLE
from homeassistant.core import HomeAssistant
from homeassistant.helpers import issue_registry as ir
from homeassistant.util import dt as dt_util
from pytest_homeassistant_custom_component.common import (
    async_fire_mqtt_message,
    async_fire_time_changed,
)
from pytest_homeassistant_custom_component.test_util.aiohttp import AiohttpClientMocker

from custom_components.edge_inference.const import DOMAIN

from .conftest import (
    ANNOTATED,
    DETECT,
    INFO,
    SNAPSHOT_SUB,
    STREAM_CAMERA,
    STREAM_SUB,
    URL,
    async_setup_entry,
    info,
    mock_proof,
    subentry,
)

pytestmark = [
    pytest.mark.usefixtures("mock_mqtt"),
    pytest.mark.parametrize("expected_lingering_timers", [True]),
]
CAMERA_URL = f"{URL}/api/v1/cameras/{STREAM_CAMERA}"


def fire(hass: HomeAssistant, topic: str, payload: Any) -> None:
    """A message from the server on edge_inference/kitchen-nuc/<topic>."""
    text = payload if isinstance(payload, str) else json.dumps(payload)
    async_fire_mqtt_message(hass, f"edge_inference/kitchen-nuc/{topic}", text)


def event(**changes: Any) -> dict[str, Any]:
    """A detection event of the stream camera."""
    return {
        "type": "new",
        "camera": STREAM_CAMERA,
        "event_id": f"{STREAM_CAMERA}-1-7",
        "track_id": 7,
        "label": "person",
        "score": 0.8,
        "box": [0.1, 0.2, 0.3, 0.4],
        "start_time": 1.0,
        "end_time": None,
        "time": 1.0,
        **changes,
    }


def state(hass: HomeAssistant, entity_id: str) -> str:
    """An entity's state."""
    current = hass.states.get(entity_id)
    assert current is not None, entity_id
    return current.state


def later(hass: HomeAssistant, seconds: float) -> None:
    """Move time on."""
    async_fire_time_changed(hass, dt_util.utcnow() + timedelta(seconds=seconds))


async def test_snapshot_mode(hass: HomeAssistant, mock_server: AiohttpClientMocker) -> None:
    """Counts, occupancy with its clear delay, the image, events and the pause switch."""
    entry = await async_setup_entry(hass, subentry(SNAPSHOT_SUB, "camera.still", "snapshot"))
    pipeline = entry.runtime_data.pipelines[SNAPSHOT_SUB]
    assert state(hass, "sensor.still_person_count") == "2"
    assert state(hass, "sensor.still_car_count") == "1"
    assert state(hass, "binary_sensor.still_person_occupancy") == STATE_ON
    assert pipeline.image == ANNOTATED
    assert state(hass, "image.still_last_detection") != "unknown"

    # Nobody any more: the count drops at once, occupancy clears after `clear_after`.
    mock_server.clear_requests()
    mock_server.get(f"{URL}/api/v1/info", json=INFO)
    mock_server.post(f"{URL}/api/v1/vision/detect", json={**DETECT, "detections": []})
    later(hass, 6)
    await hass.async_block_till_done(wait_background_tasks=True)
    assert state(hass, "sensor.still_person_count") == "0"
    assert state(hass, "binary_sensor.still_person_occupancy") == STATE_ON
    later(hass, 17)
    await hass.async_block_till_done(wait_background_tasks=True)
    assert state(hass, "binary_sensor.still_person_occupancy") == STATE_OFF
    assert pipeline.image == ANNOTATED  # the last detection stays

    # Paused: no polling; the switch's state survives in the pipeline.
    await hass.services.async_call(
        "switch", "turn_off", {"entity_id": "switch.still_detection"}, blocking=True
    )
    await hass.services.async_call(
        "switch", "turn_off", {"entity_id": "switch.still_detection"}, blocking=True
    )
    calls = len(mock_server.mock_calls)
    later(hass, 40)
    await hass.async_block_till_done(wait_background_tasks=True)
    assert len(mock_server.mock_calls) == calls
    assert state(hass, "switch.still_detection") == STATE_OFF


async def test_snapshot_errors(
    hass: HomeAssistant, aioclient_mock: AiohttpClientMocker, caplog: pytest.LogCaptureFixture
) -> None:
    """Server errors are logged once, make counts and occupancy unavailable, and recover;
    a rejected token starts one reauth and stops the polling."""
    mock_proof(aioclient_mock)
    aioclient_mock.get(f"{URL}/api/v1/info", json=INFO)
    aioclient_mock.post(f"{URL}/api/v1/vision/detect", status=503, headers={"Retry-After": "1"})
    entry = await async_setup_entry(
        hass,
        subentry(SNAPSHOT_SUB, "camera.still", "snapshot"),
        subentry("01MISSING", "camera.missing", "snapshot"),
    )
    later(hass, 6)
    await hass.async_block_till_done(wait_background_tasks=True)
    pipeline = entry.runtime_data.pipelines[SNAPSHOT_SUB]
    assert pipeline.error is not None
    assert caplog.text.count("Camera pipeline Still: ") == 1
    assert entry.runtime_data.pipelines["01MISSING"].error is not None
    # Nothing stale shown as current; the pipeline's switch stays usable.
    assert state(hass, "sensor.still_person_count") == STATE_UNAVAILABLE
    assert state(hass, "binary_sensor.still_person_occupancy") == STATE_UNAVAILABLE
    assert state(hass, "switch.still_detection") == STATE_ON

    aioclient_mock.clear_requests()
    mock_proof(aioclient_mock)
    aioclient_mock.get(f"{URL}/api/v1/info", json=INFO)
    aioclient_mock.post(f"{URL}/api/v1/vision/detect", json=DETECT)
    later(hass, 12)
    await hass.async_block_till_done(wait_background_tasks=True)
    assert pipeline.error is None
    assert "Camera pipeline Still works again" in caplog.text
    assert state(hass, "sensor.still_person_count") == "2"
    assert state(hass, "binary_sensor.still_person_occupancy") == STATE_ON

    # Offline: no polling at all.
    fire(hass, "status", "offline")
    await hass.async_block_till_done(wait_background_tasks=True)
    calls = len(aioclient_mock.mock_calls)
    later(hass, 24)
    await hass.async_block_till_done(wait_background_tasks=True)
    assert len(aioclient_mock.mock_calls) == calls
    fire(hass, "status", "online")

    aioclient_mock.clear_requests()
    aioclient_mock.post(f"{URL}/api/v1/vision/detect", status=401)
    later(hass, 36)
    await hass.async_block_till_done(wait_background_tasks=True)
    assert ir.async_get(hass).async_get_issue(DOMAIN, f"token_rejected_{entry.entry_id}")
    flows = hass.config_entries.flow.async_progress_by_handler(DOMAIN)
    assert [f["context"]["source"] for f in flows] == ["reauth"]
    # Once: the rejected token is not sent again on every tick.
    rejected = len(aioclient_mock.mock_calls)
    assert caplog.text.count("rejected the token") == 1
    later(hass, 48)
    later(hass, 60)
    await hass.async_block_till_done(wait_background_tasks=True)
    assert len(aioclient_mock.mock_calls) == rejected
    assert caplog.text.count("rejected the token") == 1
    assert len(hass.config_entries.flow.async_progress_by_handler(DOMAIN)) == 1


async def test_stream_mode(hass: HomeAssistant, mock_server: AiohttpClientMocker) -> None:
    """The server runs the stream; counts and events come over MQTT."""
    entry = await async_setup_entry(hass, subentry(STREAM_SUB, "camera.street", "stream", fps=5))
    pipeline = entry.runtime_data.pipelines[STREAM_SUB]
    assert pipeline.mode == "stream"
    assert pipeline.registered
    put = next(c for c in mock_server.mock_calls if c[0] == "PUT")
    assert put[2]["source"].endswith("street.avi")
    assert put[2]["labels"] == ["person", "car", "dog"]
    assert put[2]["fps"] == 5

    events: list[dict[str, Any]] = []
    hass.bus.async_listen("state_changed", lambda e: events.append(e.data))
    fire(
        hass,
        f"cameras/{STREAM_CAMERA}/counts",
        {"camera": STREAM_CAMERA, "counts": {"person": 3, "car": "x"}},
    )
    fire(hass, f"cameras/{STREAM_CAMERA}/counts", {"camera": STREAM_CAMERA, "counts": "bad"})
    fire(hass, "events", event())
    fire(hass, "events", event(camera="other"))
    fire(hass, "events", event(label="cat"))
    fire(hass, "events", event(type="new", box="bad"))
    fire(hass, "events", event(type="end"))
    await hass.async_block_till_done(wait_background_tasks=True)
    assert state(hass, "sensor.street_person_count") == "3"
    assert state(hass, "sensor.street_car_count") == "0"
    assert state(hass, "binary_sensor.street_person_occupancy") == STATE_ON
    detection = hass.states.get("event.street_detection")
    assert detection is not None
    assert detection.attributes["event_id"] == f"{STREAM_CAMERA}-1-7"
    assert detection.attributes["track_id"] == 7
    assert pipeline.image == ANNOTATED

    # The server says the source stalled: counts and occupancy go unavailable, the switch
    # and the event entity stay; frames again bring them back by themselves.
    status = f"camera/{STREAM_CAMERA}/status"
    stalled = {"camera_id": STREAM_CAMERA, "state": "stalled", "error": "no frame for 10 s"}
    fire(hass, status, {**stalled, "camera_id": "another"})
    await hass.async_block_till_done()
    assert state(hass, "sensor.street_person_count") == "3"
    fire(hass, status, stalled)
    await hass.async_block_till_done()
    assert state(hass, "sensor.street_person_count") == STATE_UNAVAILABLE
    assert state(hass, "binary_sensor.street_person_occupancy") == STATE_UNAVAILABLE
    assert state(hass, "switch.street_detection") == STATE_ON
    assert pipeline.diagnostics()["source_state"] == "stalled"
    fire(hass, status, {**stalled, "state": "running", "error": None})
    await hass.async_block_till_done()
    assert state(hass, "sensor.street_person_count") == "3"

    # HA loses the broker: pushed state is unavailable, the server's connectivity unknown.
    connectivity = "binary_sensor.edge_inference_on_kitchen_nuc_connectivity"
    assert state(hass, connectivity) == STATE_ON
    coordinator = entry.runtime_data.coordinator
    coordinator._on_mqtt_connection(False)  # what HA's MQTT client signals on disconnect
    await hass.async_block_till_done()
    assert state(hass, "sensor.street_person_count") == STATE_UNAVAILABLE
    assert state(hass, connectivity) == STATE_UNAVAILABLE
    coordinator._on_mqtt_connection(True)
    await hass.async_block_till_done()
    assert state(hass, "sensor.street_person_count") == "3"
    assert state(hass, connectivity) == STATE_ON

    # The server restarted: the camera is checked and registered again if it is gone.
    mock_server.clear_requests()
    mock_server.get(f"{URL}/api/v1/info", json=INFO)
    mock_server.get(CAMERA_URL, status=404, json={"error": {"code": "unknown_camera"}})
    mock_server.get(f"{CAMERA_URL}/snapshot", status=404, json={"error": {"code": "no_snapshot"}})
    mock_server.put(CAMERA_URL, status=201, json={})
    mock_server.delete(CAMERA_URL, status=500)
    fire(hass, "status", "offline")
    fire(hass, "status", "online")
    await hass.async_block_till_done(wait_background_tasks=True)
    assert [c[0] for c in mock_server.mock_calls] == ["GET", "PUT"]
    assert mock_server.mock_calls[1][2]["fps"] == 5
    fire(hass, "events", event(type="update"))
    await hass.async_block_till_done(wait_background_tasks=True)
    assert pipeline.image == ANNOTATED

    # Pause: the server's stream is removed (a failing delete is only logged).
    await hass.services.async_call(
        "switch", "turn_off", {"entity_id": "switch.street_detection"}, blocking=True
    )
    assert not pipeline.registered
    assert state(hass, "sensor.street_person_count") == "0"
    fire(hass, "events", event())
    await hass.async_block_till_done(wait_background_tasks=True)
    assert len(events) > 0


async def test_stream_default_fps(hass: HomeAssistant, mock_server: AiohttpClientMocker) -> None:
    """A pipeline stored before the fps setting existed registers at 2 fps."""
    await async_setup_entry(hass, subentry(STREAM_SUB, "camera.street", "stream", fps=None))
    put = next(c for c in mock_server.mock_calls if c[0] == "PUT")
    assert put[2]["fps"] == 2
    # This server does not list motion_threshold among its camera options: not sent.
    assert "motion_threshold" not in put[2]


@pytest.mark.parametrize(("stored", "sent"), [(None, 0.002), (1.5, 0.015), (0, 0.0)])
async def test_stream_motion_gate(
    hass: HomeAssistant, aioclient_mock: AiohttpClientMocker, stored: float | None, sent: float
) -> None:
    """A server that takes `motion_threshold` gets the pipeline's setting (% of the picture,
    sent as a share); a pipeline stored before the setting existed gets 0.2%."""
    mock_proof(aioclient_mock)
    vision = {**INFO["capabilities"]["vision"], "camera_options": ["motion_threshold"]}
    aioclient_mock.get(f"{URL}/api/v1/info", json=info(capabilities={"vision": vision}))
    aioclient_mock.put(CAMERA_URL, status=201, json={"camera_id": STREAM_CAMERA})
    aioclient_mock.get(CAMERA_URL, json={"camera_id": STREAM_CAMERA})
    aioclient_mock.delete(CAMERA_URL, status=204)
    await async_setup_entry(
        hass, subentry(STREAM_SUB, "camera.street", "stream", motion_percent=stored)
    )
    put = next(c for c in aioclient_mock.mock_calls if c[0] == "PUT")
    assert put[2]["motion_threshold"] == pytest.approx(sent)


async def test_stream_registration_fails(
    hass: HomeAssistant, aioclient_mock: AiohttpClientMocker
) -> None:
    """A refused registration is an error of the pipeline; 401 starts reauth."""
    mock_proof(aioclient_mock)
    aioclient_mock.get(f"{URL}/api/v1/info", json=INFO)
    aioclient_mock.put(CAMERA_URL, status=400, json={"error": {"code": "bad_request"}})
    entry = await async_setup_entry(hass, subentry(STREAM_SUB, "camera.street", "stream"))
    pipeline = entry.runtime_data.pipelines[STREAM_SUB]
    assert not pipeline.registered
    assert pipeline.error is not None

    aioclient_mock.clear_requests()
    mock_proof(aioclient_mock)
    aioclient_mock.get(f"{URL}/api/v1/info", json=INFO)
    aioclient_mock.put(CAMERA_URL, status=401)
    await hass.services.async_call(
        "switch", "turn_off", {"entity_id": "switch.street_detection"}, blocking=True
    )
    await hass.services.async_call(
        "switch", "turn_on", {"entity_id": "switch.street_detection"}, blocking=True
    )
    flows = hass.config_entries.flow.async_progress_by_handler(DOMAIN)
    assert [f["context"]["source"] for f in flows] == ["reauth"]


async def test_paused_pipeline_restored(
    hass: HomeAssistant, mock_server: AiohttpClientMocker
) -> None:
    """A pipeline paused before a restart stays paused and registers nothing."""
    entry = await async_setup_entry(hass, subentry(STREAM_SUB, "camera.street", "stream"))
    await hass.services.async_call(
        "switch", "turn_off", {"entity_id": "switch.street_detection"}, blocking=True
    )
    await hass.config_entries.async_reload(entry.entry_id)
    await hass.async_block_till_done(wait_background_tasks=True)
    pipeline = entry.runtime_data.pipelines[STREAM_SUB]
    assert not pipeline.enabled
    assert not pipeline.registered
    assert state(hass, "switch.street_detection") == STATE_OFF
