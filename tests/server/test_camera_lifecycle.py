"""Camera registrations under stress: races, bad numbers, a model missing at boot, stalls,
empty files, and the retained per-camera status on MQTT. Real server, model, broker, OpenCV."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path
from typing import Any

import aiohttp
import cv2
import numpy as np
import pytest
from aiohttp import web

from inference_server.backends.local import LocalBackend
from inference_server.metrics import Metrics
from inference_server.pipelines.camera_registry import CameraRegistry
from inference_server.pipelines.cameras import CameraSpec, FrameReader
from inference_server.pipelines.vision import VisionPipeline
from tests.helpers.broker import MosquittoBroker, free_port
from tests.helpers.mqtt_watcher import MqttWatcher
from tests.helpers.server_process import ServerProcess

from .conftest import FIXTURES, TOKEN
from .test_cameras import CLIP, camera, poll_state, request

BASE = "edge_inference/test-server"


def reader_threads() -> list[threading.Thread]:
    return [
        t for t in threading.enumerate() if t.name.startswith("camera-reader-") and t.is_alive()
    ]


@pytest.fixture
async def registry(tmp_path: Path, model_repo: Path) -> Any:
    backend = LocalBackend(model_repo)
    await backend.start()
    vision = VisionPipeline(backend, Metrics(), default_model="yolov3-tiny")
    published: list[tuple[str, Any]] = []
    registry = CameraRegistry(
        vision,
        lambda suffix, payload, qos, retain=False: published.append((suffix, payload)),
        Metrics(),
        tmp_path,
        media_root=FIXTURES,
    )
    yield registry
    await registry.stop()
    await vision.close()
    await backend.stop()


async def test_concurrent_replacements_leave_exactly_one_worker(registry: CameraRegistry) -> None:
    spec = CameraSpec.parse(camera(), FIXTURES)
    await registry.register("street", spec)
    await asyncio.gather(*(registry.register("street", spec) for _ in range(3)))
    assert list(registry.workers) == ["street"]
    assert len(reader_threads()) == 1  # before: orphaned workers kept reading
    await registry.stop()
    assert reader_threads() == []  # readers are joined on stop


async def test_cameras_json_is_private(registry: CameraRegistry) -> None:
    await registry.register("street", CameraSpec.parse(camera(), FIXTURES))
    assert registry.path.stat().st_mode & 0o777 == 0o600
    registry.path.chmod(0o644)  # as an older version left it
    await registry.stop()
    await registry.start()
    assert registry.path.stat().st_mode & 0o777 == 0o600
    assert list(registry.workers) == ["street"]


def test_an_empty_video_file_is_not_reopened_in_a_hot_loop(tmp_path: Path) -> None:
    empty = tmp_path / "empty.avi"  # a valid container with no frame in it
    writer = cv2.VideoWriter(str(empty), cv2.VideoWriter.fourcc(*"MJPG"), 10, (64, 48))
    writer.release()
    reader = FrameReader(str(empty), max_backoff_s=30)
    reader.start()
    try:
        time.sleep(3.5)
        assert reader.opens <= 3  # 0 s, 1 s, 3 s; before: thousands
        assert reader.error is not None
    finally:
        reader.close()
    assert not reader.is_alive()


async def test_bad_numbers_are_refused_before_the_running_camera_is_touched(
    server: ServerProcess,
) -> None:
    assert (await request(server, "PUT", "/api/v1/cameras/street", camera()))[0] == 201
    running = await poll_state(server, "street", lambda s: s["frames"] > 0)
    for bad in ({"end_after": 1e400}, {"fps": float("nan")}, {"update_interval": -1}):
        status, body, _ = await request(server, "PUT", "/api/v1/cameras/street", camera(**bad))
        assert (status, body["error"]["code"]) == (400, "invalid_parameter"), (bad, body)
    # NaN as JSON text (Python's json accepts it)
    async with (
        aiohttp.ClientSession() as session,
        session.put(
            server.url + "/api/v1/cameras/street",
            headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
            data=json.dumps(camera()).replace('"fps": 4', '"fps": NaN'),
        ) as resp,
    ):
        assert resp.status == 400
    state = await poll_state(server, "street", lambda s: s["frames"] > running["frames"])
    assert state["state"] == "running"  # the old worker was never stopped


async def test_a_camera_whose_model_is_missing_at_boot_starts_when_it_appears(
    tmp_path: Path, model_repo: Path
) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    # Only another model at first (the server is up and healthy): the camera's arrives later.
    (repo / "yolox-nano").symlink_to(model_repo / "yolox-nano")
    data = tmp_path / "data"
    data.mkdir()
    saved = {"street": {**camera(), "model": "yolov3-tiny"}}
    (data / "cameras.json").write_text(json.dumps(saved))
    proc = ServerProcess(data, mqtt_port=None, token=TOKEN, model_repo=repo)
    proc.start()  # before: UnknownModelError escaped start-up and the server exited
    try:
        waiting = await poll_state(proc, "street", lambda s: s["error"] is not None)
        assert waiting["state"] == "error"
        assert "yolov3-tiny" in waiting["error"]
        (repo / "yolov3-tiny").symlink_to(model_repo / "yolov3-tiny")
        state = await poll_state(proc, "street", lambda s: s["frames"] > 0, within=60)
        assert state["error"] is None
        assert state["state"] == "running"
    finally:
        proc.stop()


class StallingMjpegCamera:
    """Sends a few frames, then keeps the connection open and sends nothing (a hung camera)."""

    def __init__(self, jpeg: bytes) -> None:
        self.jpeg = jpeg
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/video.mjpg"
        self.runner: web.AppRunner | None = None

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={"Content-Type": "multipart/x-mixed-replace; boundary=frame"}
        )
        await response.prepare(request)
        for _ in range(6):
            part = b"--frame\r\nContent-Type: image/jpeg\r\n"
            part += f"Content-Length: {len(self.jpeg)}\r\n\r\n".encode() + self.jpeg + b"\r\n"
            await response.write(part)
            await asyncio.sleep(0.2)
        await asyncio.sleep(120)
        return response

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/video.mjpg", self._stream)
        self.runner = web.AppRunner(app, shutdown_timeout=0.5)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


@pytest.fixture
async def stalling_camera() -> Any:
    cam = StallingMjpegCamera((FIXTURES / "images" / "street_people.jpg").read_bytes())
    await cam.start()
    yield cam
    await cam.stop()


def status_of(watcher: MqttWatcher, state: str, timeout: float = 40) -> dict[str, Any]:
    message = watcher.wait_for(
        f"{BASE}/camera/ipcam/status",
        lambda m: bool(m.payload) and json.loads(m.payload)["state"] == state,
        timeout=timeout,
    )
    return dict(json.loads(message.payload))


async def test_a_stalled_stream_is_reported_on_the_retained_status_topic(
    server: ServerProcess,
    watcher: MqttWatcher,
    broker: MosquittoBroker,
    stalling_camera: StallingMjpegCamera,
) -> None:
    status, _, _ = await request(
        server, "PUT", "/api/v1/cameras/ipcam", camera(source=stalling_camera.url, fps=2)
    )
    assert status == 201
    running = await asyncio.to_thread(status_of, watcher, "running")
    assert running["camera_id"] == "ipcam"
    assert running["error"] is None
    stalled = await asyncio.to_thread(status_of, watcher, "stalled")
    assert stalled["error"]
    assert stalled["last_frame_at"] is not None
    state = (await request(server, "GET", "/api/v1/cameras/ipcam"))[1]
    assert state["state"] in ("stalled", "error")  # error once the read times out
    # Retained: a client that connects now (Home Assistant after a restart) sees it.
    late = MqttWatcher(broker.port, f"{BASE}/camera/ipcam/status")
    try:
        message = await asyncio.to_thread(late.wait_for, f"{BASE}/camera/ipcam/status")
        assert message.retain
        assert json.loads(message.payload)["state"] in ("stalled", "error")
    finally:
        late.close()
    assert (await request(server, "DELETE", "/api/v1/cameras/ipcam"))[0] == 204
    cleared = await asyncio.to_thread(
        watcher.wait_for, f"{BASE}/camera/ipcam/status", lambda m: m.payload == b""
    )
    assert cleared.payload == b""


def test_a_frame_reader_on_a_real_clip_delivers_frames() -> None:
    reader = FrameReader(CLIP)
    reader.start()
    try:
        deadline = time.monotonic() + 10
        while reader.latest() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        latest = reader.latest()
        assert latest is not None
        assert isinstance(latest[0], np.ndarray)
        assert reader.error is None
    finally:
        reader.close()
    assert not reader.is_alive()
