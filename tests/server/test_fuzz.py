"""Fuzz every route of the real server from its OpenAPI description (bounded; bench/fuzz.py
runs the long version): no 5xx but 503, every error in the JSON shape, healthy afterwards."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.helpers.api_fuzz import FuzzReport, fuzz_operations, mutate_uploads
from tests.helpers.server_process import ServerProcess

from .conftest import TOKEN, image_bytes

AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def fuzz_server(tmp_path: Path, model_repo: Path) -> Iterator[ServerProcess]:
    proc = ServerProcess(tmp_path / "server", mqtt_port=None, token=TOKEN, model_repo=model_repo)
    proc.start()
    yield proc
    proc.stop()


@pytest.mark.timeout(300)
def test_every_route_survives_fuzzing(fuzz_server: ServerProcess) -> None:
    report = FuzzReport()
    fuzz_operations(fuzz_server.url, TOKEN, examples=30, report=report)
    mutate_uploads(
        fuzz_server.url, TOKEN, image_bytes("street_people.jpg"), count=150, report=report
    )
    assert report.violations == []
    assert report.requests > 500
    assert any(400 <= status < 500 for status in report.statuses)  # it did reach the errors
    assert fuzz_server.running
    health = requests.get(fuzz_server.url + "/api/v1/health", timeout=10)
    assert health.status_code == 200
    # and it still does its job
    detect = requests.post(
        fuzz_server.url + "/api/v1/vision/detect",
        data=image_bytes("street_people.jpg"),
        headers={**AUTH, "Content-Type": "image/jpeg"},
        timeout=30,
    )
    assert detect.status_code == 200
    assert any(d["label"] == "person" for d in detect.json()["detections"])
