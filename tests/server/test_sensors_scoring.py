"""A series scored by a user's ONNX model from the model repository, through the real server.

The model (tests/helpers/sensor_models.py) scores 1 for any reading between 02:00 and 03:00
UTC and 0 otherwise, a rule the built-in rarity would never make ("the garage door moves at
night").
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests

from tests.helpers.sensor_models import NIGHT_WATCH, repository_with_night_watch
from tests.helpers.server_process import ServerProcess

from .conftest import TOKEN

AUTH = {"Authorization": f"Bearer {TOKEN}"}
DAY = 86400.0
START = 1_780_000_000.0 - 1_780_000_000.0 % DAY  # midnight UTC
MODEL = NIGHT_WATCH


@pytest.fixture(scope="module")
def scored_server(
    tmp_path_factory: pytest.TempPathFactory, model_repo: Path
) -> Iterator[ServerProcess]:
    repo = repository_with_night_watch(tmp_path_factory.mktemp("repo"), model_repo)
    server = ServerProcess(
        tmp_path_factory.mktemp("server"), mqtt_port=None, token=TOKEN, model_repo=repo
    )
    server.start()
    yield server
    server.stop()


def post(server: ServerProcess, series: str, body: dict[str, Any]) -> requests.Response:
    return requests.post(
        f"{server.url}/api/v1/sensors/{series}/observations",
        data=json.dumps(body),
        headers={**AUTH, "Content-Type": "application/json"},
        timeout=60,
    )


def readings(days: float, start: float = START) -> list[dict[str, float]]:
    rng = np.random.default_rng(7)
    t = start + 600.0 * np.arange(int(days * DAY / 600))
    v = 20 + np.sin(2 * np.pi * t / DAY) + rng.normal(0, 0.05, len(t))
    return [{"t": float(a), "v": float(b)} for a, b in zip(t, v, strict=True)]


def test_the_users_model_decides_the_score(scored_server: ServerProcess) -> None:
    response = post(scored_server, "sensor.garage", {"observations": readings(3), "model": MODEL})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["state"]["model"]["scorer"] == MODEL
    after_warmup = body["results"][60:]
    flagged = [r for r in after_warmup if r["anomaly"]]
    hours = {int((r["t"] % DAY) // 3600) for r in flagged}
    assert hours == {2}, hours  # every flag is the model's night hour, and only that
    assert all(r["kind"] == "model" and r["score"] == 1.0 for r in flagged)
    assert all(r["score"] == 0.0 for r in after_warmup if not r["anomaly"])

    # Later batches keep the model without naming it again; a restart keeps it too.
    later = readings(0.2, START + 3 * DAY)
    again = post(scored_server, "sensor.garage", {"observations": later})
    assert again.status_code == 200, again.text
    assert again.json()["state"]["model"]["scorer"] == MODEL
    scored_server.stop()
    scored_server.start()
    state = requests.get(
        f"{scored_server.url}/api/v1/sensors/sensor.garage", headers=AUTH, timeout=10
    )
    assert state.json()["model"]["scorer"] == MODEL


def test_unknown_or_other_models_are_refused(scored_server: ServerProcess) -> None:
    one = {"observations": readings(0.01)}
    missing = post(scored_server, "sensor.a", {**one, "model": "no_such_model"})
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "unknown_model"
    detector = post(scored_server, "sensor.a", {**one, "model": "yolox-nano"})  # not a sensor model
    assert detector.status_code == 404
    bad_name = post(scored_server, "sensor.a", {**one, "model": "../etc"})
    assert bad_name.status_code == 400
    assert bad_name.json()["error"]["code"] == "invalid_model"
    # Nothing was learned from the refused batches.
    assert (
        requests.get(
            f"{scored_server.url}/api/v1/sensors/sensor.a", headers=AUTH, timeout=10
        ).status_code
        == 404
    )

    first = post(scored_server, "sensor.b", {**one, "model": MODEL})
    assert first.status_code == 200
    other = post(
        scored_server, "sensor.b", {"observations": readings(0.01, START + DAY), "model": "x"}
    )
    assert other.status_code == 409
    assert other.json()["error"]["code"] == "model_mismatch"


def test_a_removed_model_leaves_the_rarity_to_score(tmp_path: Path, model_repo: Path) -> None:
    """The model a series is bound to is taken out of the repository: the series keeps
    learning (no reading refused), scored by the built-in rarity, and stays bound."""
    repo = repository_with_night_watch(tmp_path / "repo", model_repo)
    server = ServerProcess(tmp_path / "server", mqtt_port=None, token=TOKEN, model_repo=repo)
    server.start()
    try:
        bound = post(server, "sensor.door", {"observations": readings(1), "model": MODEL})
        assert bound.status_code == 200, bound.text
        server.stop()
        shutil.rmtree(repo / MODEL)
        server.start()
        later = post(server, "sensor.door", {"observations": readings(1, START + DAY)})
        assert later.status_code == 200, later.text
        body = later.json()
        assert body["state"]["model"]["scorer"] == MODEL
        assert not any(r["kind"] == "model" for r in body["results"])  # 02:00 is not flagged
        named = post(
            server, "sensor.door", {"observations": readings(0.1, START + 2 * DAY), "model": MODEL}
        )
        assert named.status_code == 404
    finally:
        server.stop()
