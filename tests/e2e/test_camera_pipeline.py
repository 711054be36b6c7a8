"""Discovery to detection with real parts: Mosquitto, the server subprocess, HA."""

from __future__ import annotations

import json
import urllib.request
from typing import Any

import pytest
from homeassistant.config_entries import SOURCE_USER, ConfigEntry, ConfigEntryState
from homeassistant.const import CONF_API_TOKEN, STATE_OFF, STATE_ON, STATE_UNAVAILABLE
from homeassistant.core import Event, EventStateChangedData, HomeAssistant, callback
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.helpers import entity_registry as er
from homeassistant.helpers.event import async_track_state_change_event
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.edge_inference.const import DOMAIN, SUBENTRY_CAMERA
from tests.helpers.server_process import ServerProcess
from tests.integration.common import (
    SERVER_ID,
    TOKEN,
    async_setup_test_cameras,
    async_wait_for,
    requires_server,
)

pytestmark = [requires_server, pytest.mark.usefixtures("socket_enabled")]

# street_people.jpg: seven people (the faintest at 0.508), a car, and a truck that yolox-nano
# (the default detector, CPU) also calls a car at 0.57; no dog at min_score 0.5.
PEOPLE = 7


async def async_detect_people_on_still(hass: HomeAssistant) -> list[dict[str, Any]]:
    """The detect_objects action on camera.still, as an automation would call it."""
    response = await hass.services.async_call(
        DOMAIN,
        "detect_objects",
        {"entity_id": "camera.still", "labels": ["person"]},
        blocking=True,
        return_response=True,
    )
    assert response is not None
    return list(response["results"]["camera.still"]["detections"])


def server_get(server: ServerProcess, path: str) -> Any:
    """GET a JSON route of the real server (blocking: run in the executor)."""
    request = urllib.request.Request(
        f"{server.url}/api/v1{path}", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    with urllib.request.urlopen(request, timeout=5) as resp:
        return json.load(resp)


async def async_discover_and_confirm(hass: HomeAssistant) -> ConfigEntry[Any]:
    """The retained announce starts a flow; confirming with the token makes the entry."""
    await async_wait_for(
        hass, lambda: bool(hass.config_entries.flow.async_progress_by_handler(DOMAIN))
    )
    flow = hass.config_entries.flow.async_progress_by_handler(DOMAIN)[0]
    assert flow["step_id"] == "discovery_confirm"
    assert flow["context"]["unique_id"] == SERVER_ID
    result = await hass.config_entries.flow.async_configure(
        flow["flow_id"], {CONF_API_TOKEN: TOKEN}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    await hass.async_block_till_done()
    entry = result["result"]
    assert entry.state is ConfigEntryState.LOADED
    return entry


async def async_add_pipeline(
    hass: HomeAssistant, entry: ConfigEntry[Any], camera: str, mode: str, fps: float = 2
) -> str:
    """Add a camera pipeline through the subentry flow; returns the subentry id."""
    result = await hass.config_entries.subentries.async_init(
        (entry.entry_id, SUBENTRY_CAMERA), context={"source": SOURCE_USER}
    )
    assert result["type"] is FlowResultType.FORM
    result = await hass.config_entries.subentries.async_configure(
        result["flow_id"],
        {
            "camera_entity_id": camera,
            "labels": ["person", "car", "dog"],
            "min_score": 0.5,
            "mode": mode,
            "interval": 1,
            "fps": fps,
            "clear_after": 1,
        },
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    await hass.async_block_till_done()
    await async_wait_for(hass, lambda: entry.state is ConfigEntryState.LOADED)
    # The subentry keeps the camera's registry id; its unique id is the entity id it had.
    return next(sid for sid, sub in entry.subentries.items() if sub.unique_id == camera)


def record_events(hass: HomeAssistant, entity_id: str) -> list[dict[str, Any]]:
    """The attributes of each event an event entity fires from now on."""
    fired: list[dict[str, Any]] = []

    @callback
    def _record(event: Event[EventStateChangedData]) -> None:
        if (new := event.data["new_state"]) and new.attributes.get("event_type"):
            fired.append(dict(new.attributes))

    async_track_state_change_event(hass, entity_id, _record)
    return fired


def state(hass: HomeAssistant, entity_id: str) -> str | None:
    """An entity's state, None while it does not exist."""
    current = hass.states.get(entity_id)
    return current.state if current else None


async def test_snapshot_pipeline(
    hass: HomeAssistant, real_mqtt: MockConfigEntry, server: ServerProcess
) -> None:
    """Discovery, a snapshot pipeline, the action, the server killed and back, unload."""
    await async_setup_test_cameras(hass)
    entry = await async_discover_and_confirm(hass)
    assert state(hass, "binary_sensor.edge_inference_on_vm_connectivity") in (STATE_ON, None)

    fired = record_events(hass, "event.still_detection")
    await async_add_pipeline(hass, entry, "camera.still", "snapshot")
    await async_wait_for(hass, lambda: state(hass, "sensor.still_person_count") == str(PEOPLE))
    assert state(hass, "sensor.still_car_count") == "2"
    assert state(hass, "sensor.still_dog_count") == "0"
    assert state(hass, "binary_sensor.still_person_occupancy") == STATE_ON
    assert state(hass, "binary_sensor.still_car_occupancy") == STATE_ON
    assert state(hass, "binary_sensor.still_dog_occupancy") == STATE_OFF
    assert state(hass, "switch.still_detection") == STATE_ON

    # One `detected` per label that appeared, with its best detection.
    assert sorted(e["label"] for e in fired) == ["car", "person"]
    person = next(e for e in fired if e["label"] == "person")
    assert person["event_type"] == "detected"
    assert person["score"] > 0.7
    assert len(person["box"]) == 4
    assert person["camera"] == "camera.still"

    image_state = hass.states.get("image.still_last_detection")
    assert image_state is not None
    assert image_state.state not in ("unknown", STATE_UNAVAILABLE)
    image_entity = hass.data["entity_components"]["image"].get_entity("image.still_last_detection")
    image = await image_entity.async_image()
    assert image is not None
    assert image[:2] == b"\xff\xd8"

    detections = await async_detect_people_on_still(hass)
    assert len([d for d in detections if d["score"] >= 0.5]) == PEOPLE
    assert {d["label"] for d in detections} == {"person"}

    # The server dies: its last will makes every entity unavailable ...
    server.kill()
    await async_wait_for(
        hass, lambda: state(hass, "sensor.still_person_count") == STATE_UNAVAILABLE
    )
    assert state(hass, "binary_sensor.still_person_occupancy") == STATE_UNAVAILABLE
    connectivity = [
        e.entity_id
        for e in er.async_entries_for_config_entry(er.async_get(hass), entry.entry_id)
        if e.entity_id.endswith("_connectivity")
    ]
    assert state(hass, connectivity[0]) == STATE_OFF
    # ... and they come back by themselves when it restarts.
    await hass.async_add_executor_job(server.start)
    await async_wait_for(
        hass, lambda: state(hass, "sensor.still_person_count") == str(PEOPLE), within=30
    )
    assert state(hass, connectivity[0]) == STATE_ON

    # Pausing clears the counts; resuming detects again.
    await hass.services.async_call(
        "switch", "turn_off", {"entity_id": "switch.still_detection"}, blocking=True
    )
    assert state(hass, "sensor.still_person_count") == "0"
    await hass.services.async_call(
        "switch", "turn_on", {"entity_id": "switch.still_detection"}, blocking=True
    )
    await async_wait_for(hass, lambda: state(hass, "sensor.still_person_count") == str(PEOPLE))

    assert await hass.config_entries.async_unload(entry.entry_id)
    await hass.async_block_till_done()
    assert state(hass, "sensor.still_person_count") == STATE_UNAVAILABLE


async def test_stream_pipeline(
    hass: HomeAssistant, real_mqtt: MockConfigEntry, server: ServerProcess
) -> None:
    """A stream pipeline registers the camera's source on the server and follows its events."""
    await async_setup_test_cameras(hass)
    entry = await async_discover_and_confirm(hass)
    fired = record_events(hass, "event.street_detection")
    subentry_id = await async_add_pipeline(hass, entry, "camera.street", "stream", fps=4)
    camera_id = f"ha-{subentry_id.lower()}"

    cameras = await hass.async_add_executor_job(server_get, server, "/cameras")
    assert [c["camera_id"] for c in cameras["cameras"]] == [camera_id]
    camera = await hass.async_add_executor_job(server_get, server, f"/cameras/{camera_id}")
    assert camera["fps"] == 4

    await async_wait_for(
        hass, lambda: state(hass, "binary_sensor.street_person_occupancy") == STATE_ON, within=60
    )
    await async_wait_for(
        hass, lambda: int(state(hass, "sensor.street_person_count") or 0) > 0, within=30
    )
    await async_wait_for(hass, lambda: any(e["label"] == "person" for e in fired), within=60)
    person = next(e for e in fired if e["label"] == "person")
    assert person["event_type"] == "detected"
    assert person["score"] >= 0.5
    assert person["event_id"].startswith(camera_id)
    await async_wait_for(
        hass,
        lambda: state(hass, "image.street_last_detection") not in (None, "unknown"),
        within=30,
    )

    # Unloading removes the registration on the server.
    assert await hass.config_entries.async_unload(entry.entry_id)
    await hass.async_block_till_done()
    cameras = await hass.async_add_executor_job(server_get, server, "/cameras")
    assert cameras["cameras"] == []


async def test_stream_without_source_falls_back(
    hass: HomeAssistant, real_mqtt: MockConfigEntry, server: ServerProcess
) -> None:
    """A camera without a stream source is polled with snapshots instead."""
    await async_setup_test_cameras(hass)
    entry = await async_discover_and_confirm(hass)
    subentry_id = await async_add_pipeline(hass, entry, "camera.still", "stream")
    await async_wait_for(hass, lambda: state(hass, "sensor.still_person_count") == str(PEOPLE))
    assert entry.runtime_data.pipelines[subentry_id].mode == "snapshot"
    cameras = await hass.async_add_executor_job(server_get, server, "/cameras")
    assert cameras["cameras"] == []
