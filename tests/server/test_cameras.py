"""Camera stream mode on the real server: a real clip, real model, tracking, MQTT events."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import cv2
import numpy as np
import pytest
from aiohttp import web

from tests.helpers.broker import free_port
from tests.helpers.mqtt_watcher import MqttWatcher
from tests.helpers.server_process import ServerProcess

from .conftest import FIXTURES, TOKEN

AUTH = {"Authorization": f"Bearer {TOKEN}"}
CLIP = str(FIXTURES / "video" / "street.avi")
BASE = "edge_inference/test-server"


async def request(
    server: ServerProcess, method: str, path: str, body: Any = None
) -> tuple[int, Any, bytes]:
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, server.url + path, headers=AUTH, json=body) as resp,
    ):
        raw = await resp.read()
        parsed = json.loads(raw) if resp.content_type == "application/json" else None
        return resp.status, parsed, raw


def camera(**overrides: Any) -> dict[str, Any]:
    return {
        "source": CLIP,
        "fps": 4,
        "labels": ["person", "car"],
        "min_score": 0.4,
        "name": "Street",
        **overrides,
    }


async def test_stream_mode_tracks_people_and_publishes(
    server: ServerProcess, watcher: MqttWatcher
) -> None:
    status, state, _ = await request(server, "PUT", "/api/v1/cameras/street", camera())
    assert status == 201, state
    assert state["running"] is True
    assert state["labels"] == ["person", "car"]

    new = json.loads(
        watcher.wait_for(
            f"{BASE}/events", lambda m: json.loads(m.payload)["type"] == "new", timeout=30
        ).payload
    )
    assert new["camera"] == "street"
    assert new["label"] in ("person", "car")
    assert new["score"] >= 0.4
    assert new["event_id"].startswith("street-")
    assert all(0 <= v <= 1 for v in new["box"])

    counts = watcher.wait_for(
        f"{BASE}/cameras/street/counts",
        lambda m: json.loads(m.payload)["counts"].get("person", 0) >= 2,
        timeout=30,
    )
    assert set(json.loads(counts.payload)["counts"]) >= {"person", "car"}

    status, _, jpeg = await request(server, "GET", "/api/v1/cameras/street/snapshot")
    assert status == 200
    frame = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert frame is not None
    assert frame.shape == (288, 384, 3)

    status, state, _ = await request(server, "GET", "/api/v1/cameras/street")
    assert status == 200
    assert state["frames"] >= 2
    assert state["error"] is None

    # Removing the camera ends its open tracks and stops it.
    removed = time.monotonic()
    status, _, _ = await request(server, "DELETE", "/api/v1/cameras/street")
    assert status == 204
    end = json.loads(
        watcher.wait_for(
            f"{BASE}/events", lambda m: json.loads(m.payload)["type"] == "end", after=removed
        ).payload
    )
    assert end["end_time"] is not None
    assert (await request(server, "GET", "/api/v1/cameras/street"))[0] == 404
    assert (await request(server, "GET", "/api/v1/cameras"))[1] == {"cameras": []}


async def test_registrations_survive_a_restart(server: ServerProcess) -> None:
    status, _, _ = await request(server, "PUT", "/api/v1/cameras/porch", camera(fps=1))
    assert status == 201
    status, state, _ = await request(server, "PUT", "/api/v1/cameras/porch", camera(fps=2))
    assert status == 200  # replaced, not duplicated
    assert state["fps"] == 2
    server.kill()
    server.start()
    status, state, _ = await request(server, "GET", "/api/v1/cameras/porch")
    assert status == 200
    assert state["fps"] == 2
    assert state["running"] is True


async def test_source_password_is_never_returned(server: ServerProcess) -> None:
    body = camera(source="rtsp://admin:hunter22@127.0.0.1:1/stream")
    status, state, raw = await request(server, "PUT", "/api/v1/cameras/secret", body)
    assert status == 201
    assert state["source"] == "rtsp://admin:***@127.0.0.1:1/stream"
    listing = (await request(server, "GET", "/api/v1/cameras"))[2]
    assert b"hunter22" not in raw + listing
    assert (await request(server, "GET", "/api/v1/cameras/secret/snapshot"))[1]["error"][
        "code"
    ] == "no_snapshot"


@pytest.mark.parametrize(
    ("camera_id", "body", "status", "code"),
    [
        ("c1", {}, 400, "invalid_parameter"),
        ("c1", {"source": "gopher://x"}, 400, "invalid_parameter"),
        ("c1", {"source": CLIP, "fps": 0}, 400, "invalid_parameter"),
        ("c1", {"source": CLIP, "fps": "fast"}, 400, "invalid_parameter"),
        ("c1", {"source": CLIP, "labels": ["unicorn"]}, 400, "invalid_parameter"),
        ("c1", {"source": CLIP, "labels": "person"}, 400, "invalid_parameter"),
        ("c1", {"source": CLIP, "model": "nope"}, 404, "unknown_model"),
        ("c1", [1, 2], 400, "invalid_json"),
        ("bad id!", {"source": CLIP}, 400, "invalid_parameter"),
    ],
)
async def test_bad_registrations_are_refused(
    server: ServerProcess, camera_id: str, body: Any, status: int, code: str
) -> None:
    got, answer, _ = await request(server, "PUT", f"/api/v1/cameras/{camera_id}", body)
    assert (got, answer["error"]["code"]) == (status, code)
    assert (await request(server, "GET", "/api/v1/cameras"))[1] == {"cameras": []}


async def test_invalid_json_body(server: ServerProcess) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.put(
            server.url + "/api/v1/cameras/c1",
            headers={**AUTH, "Content-Type": "application/json"},
            data=b"{not json",
        ) as resp,
    ):
        assert resp.status == 400
        assert (await resp.json())["error"]["code"] == "invalid_json"
    assert (await request(server, "DELETE", "/api/v1/cameras/c1"))[1]["error"][
        "code"
    ] == "unknown_camera"


def test_unreadable_source_reports_an_error(tmp_path: Path) -> None:
    from inference_server.pipelines.cameras import FrameReader

    reader = FrameReader(str(tmp_path / "missing.mp4"))
    reader.start()
    try:
        deadline = time.monotonic() + 10
        while reader.error is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert reader.error is not None
        assert "cannot open" in reader.error
        assert reader.latest() is None
    finally:
        reader.stop()


class MjpegCamera:
    """An HTTP MJPEG camera (multipart/x-mixed-replace), as many IP cameras serve."""

    def __init__(self, jpeg: bytes, port: int) -> None:
        self.jpeg, self.port = jpeg, port
        self.url = f"http://127.0.0.1:{port}/video.mjpg"
        self._runner: web.AppRunner | None = None

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={"Content-Type": "multipart/x-mixed-replace; boundary=frame"}
        )
        await response.prepare(request)
        while True:
            part = b"--frame\r\nContent-Type: image/jpeg\r\n"
            part += f"Content-Length: {len(self.jpeg)}\r\n\r\n".encode() + self.jpeg + b"\r\n"
            await response.write(part)
            await asyncio.sleep(0.2)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/video.mjpg", self._stream)
        self._runner = web.AppRunner(app, shutdown_timeout=0.5)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


async def poll_state(
    server: ServerProcess,
    camera_id: str,
    until: Callable[[dict[str, Any]], bool],
    within: float = 30,
) -> dict[str, Any]:
    deadline = time.monotonic() + within
    while True:
        state = (await request(server, "GET", f"/api/v1/cameras/{camera_id}"))[1]
        if until(state):
            return dict(state)
        if time.monotonic() > deadline:
            raise TimeoutError(f"camera state never matched: {state}")
        await asyncio.sleep(0.2)


async def test_an_mjpeg_camera_that_drops_and_comes_back(server: ServerProcess) -> None:
    mjpeg = MjpegCamera((FIXTURES / "images" / "street_people.jpg").read_bytes(), free_port())
    await mjpeg.start()
    try:
        status, _, _ = await request(
            server, "PUT", "/api/v1/cameras/ipcam", camera(source=mjpeg.url, fps=2)
        )
        assert status == 201
        state = await poll_state(server, "ipcam", lambda s: s["counts"].get("person", 0) >= 4)
        assert state["error"] is None
        await mjpeg.stop()  # the camera reboots
        down = await poll_state(server, "ipcam", lambda s: s["error"] is not None)
        assert "127.0.0.1" in down["error"]
        await mjpeg.start()
        back = await poll_state(
            server,
            "ipcam",
            lambda s: (
                s["error"] is None and s["frames"] > down["frames"] and s["counts"]["person"] >= 4
            ),  # counts are confirmed tracks: two frames in
            60,
        )
        assert back["state"] == "running"
    finally:
        await mjpeg.stop()
