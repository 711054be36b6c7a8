"""Motion gating and the detect stream: a still scene costs no detections, a moving one does.

The gate is checked on the real street clip's frames; the camera settings on the real server
with real video files (a still scene written here, the street clip) and the real model.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import cv2
import numpy as np
import pytest

from inference_server.pipelines.vision import motion
from inference_server.pipelines.vision.motion import STREAM_GAP_S, MotionGate
from tests.helpers.server_process import ServerProcess

from .conftest import FIXTURES, TOKEN

AUTH = {"Authorization": f"Bearer {TOKEN}"}
CLIP = FIXTURES / "video" / "street.avi"
THRESHOLD = 0.002


def clip_frames() -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(CLIP))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    assert len(frames) >= 20
    return frames


def test_still_frames_are_gated_out_moving_ones_are_not() -> None:
    frames = clip_frames()
    still = MotionGate(THRESHOLD, hold_s=0.0, heartbeat_s=3600)
    assert still.admit(frames[0], 0.0)  # the first frame: nothing known yet
    rng = np.random.default_rng(0)
    for i in range(10):  # the same scene with sensor noise
        noisy = np.clip(frames[0] + rng.normal(0, 3, frames[0].shape), 0, 255).astype(np.uint8)
        assert not still.admit(noisy, float(i))
    assert (still.admitted, still.skipped) == (1, 10)

    moving = MotionGate(THRESHOLD, hold_s=0.0, heartbeat_s=3600)
    admitted = [moving.admit(frame, float(i)) for i, frame in enumerate(frames)]
    # People walk through the whole clip: nearly every frame differs from the background.
    assert sum(admitted) >= 0.8 * len(frames)


def test_hold_heartbeat_and_off() -> None:
    frame = clip_frames()[0]
    assert all(MotionGate(0.0).admit(frame, 0.0) for _ in range(3))  # 0: gating off
    held = MotionGate(THRESHOLD, hold_s=60.0, heartbeat_s=3600)
    assert all(held.admit(frame, 0.0) for _ in range(3))  # within hold_s of the first frame
    beating = MotionGate(THRESHOLD, hold_s=0.0, heartbeat_s=0.0)
    assert all(beating.admit(frame, 0.0) for _ in range(3))  # a heartbeat every time


def test_the_first_frame_after_a_stream_gap_is_admitted(monkeypatch: pytest.MonkeyPatch) -> None:
    """A camera that dropped and came back showing the same still scene is looked at again
    (its tracks expired during the gap; gating on the old background would count nothing)."""
    frame = clip_frames()[0]
    clock = [100.0]
    monkeypatch.setattr(motion, "time", type("Clock", (), {"monotonic": lambda: clock[0]}))
    gate = MotionGate(THRESHOLD, hold_s=0.0, heartbeat_s=3600)
    assert gate.admit(frame, 0.0)
    clock[0] += 1.0
    assert not gate.admit(frame, 1.0)  # still: gated out
    clock[0] += STREAM_GAP_S + 1.0
    assert gate.admit(frame, 2.0)  # after the gap
    clock[0] += 0.5
    assert not gate.admit(frame, 3.0)  # and still again


def write_still_video(path: Path, frame: np.ndarray, seconds: float = 20, fps: float = 5) -> None:
    writer = cv2.VideoWriter(
        str(path), cv2.VideoWriter.fourcc(*"MJPG"), fps, (frame.shape[1], frame.shape[0])
    )
    for _ in range(int(seconds * fps)):
        writer.write(frame)
    writer.release()


@pytest.fixture(scope="module")
def media_server(
    tmp_path_factory: pytest.TempPathFactory, model_repo: Path
) -> Iterator[ServerProcess]:
    media = tmp_path_factory.mktemp("media")
    shutil.copyfile(CLIP, media / "street.avi")
    write_still_video(media / "still.avi", clip_frames()[0])
    proc = ServerProcess(
        tmp_path_factory.mktemp("srv"),
        mqtt_port=None,
        token=TOKEN,
        model_repo=model_repo,
        media_root=media,
    )
    proc.start()
    yield proc
    proc.stop()


async def call(server: ServerProcess, method: str, path: str, body: Any = None) -> Any:
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, server.url + path, headers=AUTH, json=body) as resp,
    ):
        raw = await resp.read()
        return resp.status, json.loads(raw) if raw else None


async def wait_state(server: ServerProcess, camera: str, done: Any, within: float = 30) -> Any:
    deadline = time.monotonic() + within
    while True:
        _, state = await call(server, "GET", f"/api/v1/cameras/{camera}")
        if done(state) or time.monotonic() > deadline:
            return state
        await asyncio.sleep(0.5)


async def test_gated_camera_detects_only_when_the_scene_moves(
    media_server: ServerProcess,
) -> None:
    media = media_server.args[media_server.args.index("--media-root") + 1]
    for camera, video in (("still", "still.avi"), ("street", "street.avi")):
        body = {"source": f"{media}/{video}", "fps": 5, "motion_threshold": THRESHOLD}
        status, state = await call(media_server, "PUT", f"/api/v1/cameras/{camera}", body)
        assert status == 201, state
        assert state["motion_threshold"] == THRESHOLD
    street = await wait_state(media_server, "street", lambda s: s["frames"] >= 8)
    still = await wait_state(media_server, "still", lambda s: s["frames_skipped"] >= 8)
    assert street["frames"] >= 8
    assert still["frames_skipped"] >= 8
    # The first frame, and the 2 s hold after it (the first frame counts as motion).
    assert still["frames"] <= 12
    for camera in ("still", "street"):
        await call(media_server, "DELETE", f"/api/v1/cameras/{camera}")


async def test_detect_stream_is_read_instead_of_the_main_stream(
    media_server: ServerProcess,
) -> None:
    media = media_server.args[media_server.args.index("--media-root") + 1]
    body = {
        # The main stream is never opened: the detect stream is what the worker reads.
        "source": "rtsp://admin:hunter22@192.0.2.1/main",
        "detect_source": f"{media}/street.avi",
        "fps": 5,
        "labels": ["person"],
    }
    status, state = await call(media_server, "PUT", "/api/v1/cameras/sub", body)
    assert status == 201, state
    state = await wait_state(media_server, "sub", lambda s: s["counts"].get("person", 0) >= 1)
    assert state["counts"]["person"] >= 1
    assert state["error"] is None
    assert state["detect_source"] == f"{media}/street.avi"
    assert "hunter22" not in json.dumps(state)
    await call(media_server, "DELETE", "/api/v1/cameras/sub")


@pytest.mark.parametrize(
    "overrides",
    [
        {"motion_threshold": 2},
        {"motion_threshold": "lots"},
        {"detect_source": "/etc/passwd"},
        {"detect_source": "gopher://cam/sub"},
        {"detect_source": 5},
    ],
)
async def test_bad_motion_settings_are_400(
    media_server: ServerProcess, overrides: dict[str, Any]
) -> None:
    body = {"source": "rtsp://192.0.2.1/main", **overrides}
    status, error = await call(media_server, "PUT", "/api/v1/cameras/bad", body)
    assert 400 <= status < 500, error
    assert next(iter(overrides)) in error["error"]["message"] or "media root" in str(error).lower()
