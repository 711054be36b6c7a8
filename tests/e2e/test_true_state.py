"""What the entities show is true, with real parts: Mosquitto (stopped and restarted), the
server process (real model), HA 2026.10, and an HTTP MJPEG camera (an aiohttp app here,
serving the committed street image, as IP cameras serve MJPEG) whose frames can stop."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator

import pytest
from aiohttp import web
from homeassistant.const import STATE_ON, STATE_UNAVAILABLE
from homeassistant.core import HomeAssistant
from homeassistant.helpers import entity_registry as er
from pytest_homeassistant_custom_component.common import MockConfigEntry

from tests.helpers.broker import MosquittoBroker, free_port
from tests.helpers.server_process import ServerProcess
from tests.integration.common import (
    STREET_JPEG,
    async_setup_test_cameras,
    async_wait_for,
    requires_server,
)

from .test_camera_pipeline import (
    PEOPLE,
    async_add_pipeline,
    async_discover_and_confirm,
    record_events,
    server_get,
    state,
)

pytestmark = [requires_server, pytest.mark.usefixtures("socket_enabled")]


class MjpegCamera:
    """An HTTP MJPEG camera; `paused` stops its frames without closing the connection."""

    def __init__(self) -> None:
        self.jpeg = STREET_JPEG.read_bytes()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/video.mjpg"
        self.paused = False
        self._runner: web.AppRunner | None = None

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={"Content-Type": "multipart/x-mixed-replace; boundary=frame"}
        )
        await response.prepare(request)
        while True:
            if not self.paused:
                part = b"--frame\r\nContent-Type: image/jpeg\r\n"
                part += f"Content-Length: {len(self.jpeg)}\r\n\r\n".encode()
                await response.write(part + self.jpeg + b"\r\n")
            await asyncio.sleep(0.25)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/video.mjpg", self._stream)
        self._runner = web.AppRunner(app, shutdown_timeout=0.5)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


@pytest.fixture
async def ipcam() -> AsyncGenerator[MjpegCamera]:
    cam = MjpegCamera()
    await cam.start()
    yield cam
    await cam.stop()


def counting(hass: HomeAssistant, entity_id: str) -> bool:
    """A count of people in the street image (tracks over frames: the faintest may be
    confirmed or not, so not an exact number)."""
    value = state(hass, entity_id)
    return value is not None and value.isdigit() and PEOPLE - 2 <= int(value) <= PEOPLE


def server_frames(server: ServerProcess, camera_id: str) -> int:
    """Frames the server's camera worker has read (a new registration starts from 0)."""
    state = server_get(server, f"/cameras/{camera_id}")
    return int(state["frames"]) + int(state["frames_skipped"])  # detected + gated out


async def test_broker_lost_and_back(
    hass: HomeAssistant,
    real_mqtt: MockConfigEntry,
    broker: MosquittoBroker,
    server: ServerProcess,
    ipcam: MjpegCamera,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Mosquitto stops: pushed state (the server's connectivity, a stream pipeline) goes
    unavailable, a snapshot pipeline (HTTP) keeps its counts; all back when it returns."""
    await async_setup_test_cameras(hass, {"Ipcam": ipcam.url})
    entry = await async_discover_and_confirm(hass)
    await async_add_pipeline(hass, entry, "camera.still", "snapshot")
    await async_add_pipeline(hass, entry, "camera.ipcam", "stream", fps=2)
    await async_wait_for(
        hass, lambda: state(hass, "sensor.still_person_count") == str(PEOPLE), within=60
    )
    await async_wait_for(
        hass, lambda: state(hass, "binary_sensor.ipcam_person_occupancy") == STATE_ON, within=60
    )
    connectivity = next(
        e.entity_id
        for e in er.async_entries_for_config_entry(er.async_get(hass), entry.entry_id)
        if e.entity_id.endswith("_connectivity")
    )
    assert state(hass, connectivity) == STATE_ON

    # HA's MQTT client sends its birth message once discovery settles; a broker gone before
    # that leaves HA's own publish task failing, so stop the broker after it.
    def births() -> int:
        return sum(
            "birth message sent" in record.getMessage()
            for when in ("setup", "call")
            for record in caplog.get_records(when)
        )

    await async_wait_for(hass, lambda: births() >= 1, within=60)
    await hass.async_add_executor_job(broker.stop)
    await async_wait_for(hass, lambda: state(hass, connectivity) == STATE_UNAVAILABLE)
    assert state(hass, "binary_sensor.ipcam_person_occupancy") == STATE_UNAVAILABLE
    assert state(hass, "sensor.ipcam_person_count") == STATE_UNAVAILABLE
    assert state(hass, "sensor.still_person_count") == str(PEOPLE)

    await hass.async_add_executor_job(broker.start)
    await async_wait_for(hass, lambda: state(hass, connectivity) == STATE_ON, within=90)
    await async_wait_for(
        hass, lambda: state(hass, "binary_sensor.ipcam_person_occupancy") == STATE_ON
    )
    assert state(hass, "sensor.still_person_count") == str(PEOPLE)

    # Let HA's MQTT client finish its reconnect (its birth message) before it is unloaded.
    await async_wait_for(hass, lambda: births() >= 2, within=60)
    assert await hass.config_entries.async_unload(entry.entry_id)
    await hass.async_block_till_done()


async def test_stalled_camera_and_a_change_next_door(
    hass: HomeAssistant, real_mqtt: MockConfigEntry, server: ServerProcess, ipcam: MjpegCamera
) -> None:
    """A camera that stops delivering frames makes its counts unavailable until frames come
    back; changing another pipeline leaves this one's stream, tracks and events alone."""
    await async_setup_test_cameras(hass, {"Ipcam": ipcam.url})
    entry = await async_discover_and_confirm(hass)
    events = record_events(hass, "event.ipcam_detection")
    stream_id = await async_add_pipeline(hass, entry, "camera.ipcam", "stream", fps=2)
    camera_id = f"ha-{stream_id.lower()}"
    snapshot_id = await async_add_pipeline(hass, entry, "camera.still", "snapshot")
    await async_wait_for(hass, lambda: counting(hass, "sensor.ipcam_person_count"), within=60)
    await async_wait_for(
        hass, lambda: state(hass, "sensor.still_person_count") == str(PEOPLE), within=60
    )
    # The same image every frame: its tracks stay, so new `detected` events stop.
    settled = -1
    while settled != len(events):
        settled = len(events)
        await asyncio.sleep(3)
        await hass.async_block_till_done()
    assert settled >= PEOPLE
    stream = entry.runtime_data.pipelines[stream_id]
    frames = await hass.async_add_executor_job(server_frames, server, camera_id)

    # Change the snapshot pipeline: it restarts alone, with the new labels.
    hass.config_entries.async_update_subentry(
        entry,
        entry.subentries[snapshot_id],
        data={**entry.subentries[snapshot_id].data, "labels": ["person"], "interval": 2},
    )
    await async_wait_for(hass, lambda: state(hass, "sensor.still_car_count") is None)
    await async_wait_for(
        hass, lambda: state(hass, "sensor.still_person_count") == str(PEOPLE), within=60
    )
    await asyncio.sleep(3)
    await hass.async_block_till_done()
    assert entry.runtime_data.pipelines[stream_id] is stream
    assert len(events) == settled  # no repeated `detected` on the untouched pipeline
    assert await hass.async_add_executor_job(server_frames, server, camera_id) > frames
    assert counting(hass, "sensor.ipcam_person_count")
    assert er.async_get(hass).async_get("sensor.still_car_count") is None

    # The camera stops sending frames: the server reports it stalled, HA stops showing counts.
    ipcam.paused = True
    await async_wait_for(
        hass, lambda: state(hass, "sensor.ipcam_person_count") == STATE_UNAVAILABLE, within=40
    )
    assert state(hass, "binary_sensor.ipcam_person_occupancy") == STATE_UNAVAILABLE
    assert state(hass, "switch.ipcam_detection") == STATE_ON
    status = await hass.async_add_executor_job(server_get, server, f"/cameras/{camera_id}")
    assert status["state"] == "stalled"
    assert state(hass, "sensor.still_person_count") == str(PEOPLE)
    # Frames again: counts come back by themselves.
    ipcam.paused = False
    await async_wait_for(
        hass, lambda: state(hass, "binary_sensor.ipcam_person_occupancy") == STATE_ON, within=40
    )
    await async_wait_for(
        hass, lambda: state(hass, "sensor.ipcam_person_count") not in (None, STATE_UNAVAILABLE)
    )

    assert await hass.config_entries.async_unload(entry.entry_id)
    await hass.async_block_till_done()


async def test_renamed_camera_is_followed(
    hass: HomeAssistant, real_mqtt: MockConfigEntry, server: ServerProcess
) -> None:
    """The user renames the camera's entity id: the pipeline keeps detecting on it."""
    await async_setup_test_cameras(hass)
    entry = await async_discover_and_confirm(hass)
    subentry_id = await async_add_pipeline(hass, entry, "camera.still", "snapshot")
    await async_wait_for(
        hass, lambda: state(hass, "sensor.still_person_count") == str(PEOPLE), within=60
    )
    stored = entry.subentries[subentry_id].data["camera_entity_id"]
    assert stored == er.async_get(hass).async_get("camera.still").id

    er.async_get(hass).async_update_entity("camera.still", new_entity_id="camera.porch")
    await hass.async_block_till_done()
    pipeline = entry.runtime_data.pipelines[subentry_id]
    assert pipeline.camera_entity_id == "camera.porch"
    # Pause (counts to 0) and resume: the next detections come from the renamed camera.
    for service in ("turn_off", "turn_on"):
        await hass.services.async_call(
            "switch", service, {"entity_id": "switch.still_detection"}, blocking=True
        )
    fired = record_events(hass, "event.still_detection")
    await async_wait_for(
        hass, lambda: state(hass, "sensor.still_person_count") == str(PEOPLE), within=60
    )
    await async_wait_for(hass, lambda: any(e["label"] == "person" for e in fired))
    assert {e["camera"] for e in fired} == {"camera.porch"}
    assert pipeline.error is None
    diagnostics = json.dumps(pipeline.diagnostics())
    assert "camera.porch" in diagnostics

    assert await hass.config_entries.async_unload(entry.entry_id)
    await hass.async_block_till_done()
