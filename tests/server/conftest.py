"""Real parts for the server tests: Mosquitto, the server subprocess, the default model."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from inference_server.models.install_default import install_default_models
from tests.helpers.broker import MosquittoBroker
from tests.helpers.mqtt_watcher import MqttWatcher
from tests.helpers.server_process import DEFAULT_REPO, ServerProcess

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
TOKEN = "test-token"


@pytest.fixture(scope="session")
def model_repo() -> Path:
    install_default_models(DEFAULT_REPO)  # idempotent; scripts/setup already did it
    return DEFAULT_REPO


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[MosquittoBroker]:
    broker = MosquittoBroker(tmp_path / "broker")
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture
def watcher(broker: MosquittoBroker) -> Iterator[MqttWatcher]:
    watcher = MqttWatcher(broker.port)
    yield watcher
    watcher.close()


@pytest.fixture
def server(tmp_path: Path, broker: MosquittoBroker, model_repo: Path) -> Iterator[ServerProcess]:
    """A server connected to the test broker (function scope: tests kill it)."""
    proc = ServerProcess(
        tmp_path / "server", mqtt_port=broker.port, token=TOKEN, model_repo=model_repo
    )
    proc.start()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def api_server(
    tmp_path_factory: pytest.TempPathFactory, model_repo: Path
) -> Iterator[ServerProcess]:
    """One server without MQTT for the HTTP tests of a module."""
    proc = ServerProcess(
        tmp_path_factory.mktemp("api"),
        mqtt_port=None,
        token=TOKEN,
        model_repo=model_repo,
        extra_args=["--max-body-mb", "20"],
    )
    proc.start()
    yield proc
    proc.stop()


def image_bytes(name: str) -> bytes:
    return (FIXTURES / "images" / name).read_bytes()
