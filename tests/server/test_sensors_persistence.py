"""Learned state survives a SIGKILL of the real server in the middle of a stream of batches:
everything acknowledged is there after the restart, and an unacknowledged batch is all or
nothing."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import numpy as np
import requests

from tests.helpers.server_process import ServerProcess

from .conftest import TOKEN

AUTH = {"Authorization": f"Bearer {TOKEN}"}
BATCH = 500
START = 1_780_000_000.0


def batch_body(k: int) -> bytes:
    t = START + 60.0 * (k * BATCH + np.arange(BATCH))
    v = 20 + np.sin(t / 3600.0)
    return json.dumps(
        {"observations": [{"t": float(a), "v": float(b)} for a, b in zip(t, v, strict=True)]}
    ).encode()


def test_sigkill_mid_stream_loses_nothing_acknowledged(tmp_path: Path, model_repo: Path) -> None:
    server = ServerProcess(tmp_path / "server", mqtt_port=None, token=TOKEN, model_repo=model_repo)
    server.start()
    acknowledged = 0  # batches answered 200
    stop = threading.Event()

    def stream() -> None:
        nonlocal acknowledged
        session = requests.Session()
        for k in range(10_000):
            if stop.is_set():
                return
            try:
                response = session.post(
                    f"{server.url}/api/v1/sensors/sensor.kill/observations?results=none",
                    data=batch_body(k),
                    headers={**AUTH, "Content-Type": "application/json"},
                    timeout=10,
                )
            except requests.RequestException:
                return  # the server died under this request: not acknowledged
            assert response.status_code == 200, response.text
            acknowledged = k + 1

    streamer = threading.Thread(target=stream)
    streamer.start()
    deadline = time.monotonic() + 30
    while acknowledged < 20 and time.monotonic() < deadline:
        time.sleep(0.01)
    server.kill()  # SIGKILL while batches are in flight
    stop.set()
    streamer.join(timeout=20)
    assert acknowledged >= 20
    try:
        server.start()
        state = requests.get(
            f"{server.url}/api/v1/sensors/sensor.kill", headers=AUTH, timeout=10
        ).json()
        learned = state["observations"]
        # All acknowledged batches, plus at most the one in flight, and never part of a batch.
        assert learned in (acknowledged * BATCH, (acknowledged + 1) * BATCH)
        assert state["last"]["t"] == START + 60.0 * (learned - 1)
        # It goes on from where it was: the next batch is accepted, an old one refused.
        k = learned // BATCH
        headers = {**AUTH, "Content-Type": "application/json"}
        url = f"{server.url}/api/v1/sensors/sensor.kill/observations?results=none"
        assert requests.post(url, data=batch_body(k), headers=headers, timeout=10).ok
        old = requests.post(url, data=batch_body(k - 1), headers=headers, timeout=10)
        assert old.status_code == 409
    finally:
        server.stop()
