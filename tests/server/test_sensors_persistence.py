"""Learned state survives a SIGKILL of the real server in the middle of a stream of batches:
everything acknowledged is there after the restart, and an unacknowledged batch is all or
nothing."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path

import numpy as np
import requests

from inference_server.pipelines.sensors import model
from inference_server.pipelines.sensors.storage import SensorStore, SeriesRow
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


def test_state_stored_by_the_previous_version_is_loaded(tmp_path: Path) -> None:
    """A row written before the rarity tables existed (schema 1's shorter vector) is read
    back with its learned level and curve, and learning goes on from it."""
    t = START + 300.0 * np.arange(2000, dtype=np.float64)
    v = 20 + np.sin(t / 3600.0)
    params = model.ModelParams().as_array()
    state = model.new_state()
    model.update(state, t, v, params)
    store = SensorStore(tmp_path / "sensors.sqlite3")
    store.save([SeriesRow("sensor.old", "°C", state[: model.STATE_SIZE_V1].copy())], 0.0)
    store.close()

    loaded = SensorStore(tmp_path / "sensors.sqlite3").load_all()["sensor.old"]
    assert loaded.unit == "°C"
    assert loaded.state.shape == (model.STATE_SIZE,)
    assert loaded.state[model.S_COUNT] == 2000
    later = t[-1] + 300.0 * np.arange(1, 4, dtype=np.float64)
    out = model.update(loaded.state, later, 20 + np.sin(later / 3600.0), params)
    assert np.all(out[:, model.OUT_KIND] == model.KIND_NONE)


def test_database_of_the_previous_version_is_opened(tmp_path: Path) -> None:
    """A sensors.sqlite3 made before scoring models (no `scorer` column) opens, keeps its
    rows, and stores a scorer from then on."""
    path = tmp_path / "sensors.sqlite3"
    old = sqlite3.connect(path)
    old.execute(
        "CREATE TABLE series (series_id TEXT PRIMARY KEY, unit TEXT, schema INTEGER NOT NULL,"
        " state BLOB NOT NULL, updated REAL NOT NULL)"
    )
    old.execute(
        "INSERT INTO series VALUES (?, ?, 1, ?, 0)",
        ("sensor.old", "W", model.new_state().tobytes()),
    )
    old.commit()
    old.close()

    store = SensorStore(path)
    assert store.load_all()["sensor.old"].scorer is None
    store.save([SeriesRow("sensor.old", "W", model.new_state(), "night_watch")], 1.0)
    store.close()
    assert SensorStore(path).load_all()["sensor.old"].scorer == "night_watch"
