"""Shared HA-side helpers: a file-backed test camera, real MQTT, the real server."""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import AsyncGenerator, Callable, Generator
from pathlib import Path
from typing import Any

import pytest
from homeassistant.components import mqtt
from homeassistant.components.camera import Camera, CameraEntityFeature
from homeassistant.core import HomeAssistant
from homeassistant.setup import async_setup_component
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    MockModule,
    MockPlatform,
    mock_integration,
    mock_platform,
)

from custom_components.edge_inference.const import DOMAIN
from tests.helpers.broker import MosquittoBroker
from tests.helpers.server_process import ROOT, ServerProcess

FIXTURES = ROOT / "tests" / "fixtures"
STREET_JPEG = FIXTURES / "images" / "street_people.jpg"
STREET_VIDEO = FIXTURES / "video" / "street.avi"
STREET_PNG = FIXTURES / "images" / "street_people.png"
ASTRONAUT_JPEG = FIXTURES / "images" / "astronaut.jpg"
TOKEN = "test-token"
SERVER_ID = "test-server"


def server_available() -> bool:
    """Whether the real server and its model can run here."""
    return (ROOT / "inference_server" / "__main__.py").exists() and (
        ROOT / "model_repository" / "yolov3-tiny"
    ).exists()


requires_server = pytest.mark.skipif(
    not server_available(), reason="inference_server or model_repository/yolov3-tiny missing"
)


class FileCamera(Camera):
    """A camera serving a committed JPEG; its stream source is a committed video."""

    _attr_has_entity_name = False

    def __init__(self, name: str, image: Path, stream_source: str | None) -> None:
        super().__init__()
        self._attr_name = name
        self._attr_unique_id = f"file_camera_{name}"
        self.image_path = image
        self._stream_source = stream_source
        if stream_source:
            self._attr_supported_features = CameraEntityFeature.STREAM

    async def async_camera_image(
        self, width: int | None = None, height: int | None = None
    ) -> bytes | None:
        return await self.hass.async_add_executor_job(self.image_path.read_bytes)

    async def stream_source(self) -> str | None:
        return self._stream_source


async def async_setup_test_cameras(
    hass: HomeAssistant, stream_sources: dict[str, str] | None = None
) -> dict[str, FileCamera]:
    """camera.street (snapshot + stream source) and camera.still (no stream source); more
    cameras with the street image and the given stream sources (name -> URL)."""
    cameras = {
        "camera.street": FileCamera("Street", STREET_JPEG, str(STREET_VIDEO)),
        "camera.still": FileCamera("Still", STREET_JPEG, None),
        "camera.empty": FileCamera("Empty", ASTRONAUT_JPEG, None),
    }
    for name, source in (stream_sources or {}).items():
        cameras[f"camera.{name.lower()}"] = FileCamera(name, STREET_JPEG, source)

    async def _setup_platform(
        hass: HomeAssistant, config: Any, add_entities: Callable[..., None], info: Any = None
    ) -> None:
        add_entities(list(cameras.values()))

    mock_integration(hass, MockModule("file_camera"))
    mock_platform(hass, "file_camera.camera", MockPlatform(async_setup_platform=_setup_platform))
    assert await async_setup_component(hass, "camera", {"camera": {"platform": "file_camera"}})
    await hass.async_block_till_done()
    return cameras


async def async_setup_real_mqtt(hass: HomeAssistant, port: int) -> MockConfigEntry:
    """HA's own MQTT integration, connected to a real Mosquitto."""
    entry = MockConfigEntry(
        domain=mqtt.DOMAIN,
        data={"broker": "127.0.0.1", "port": port, "discovery": True},
        version=1,
        minor_version=2,
    )
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    assert await mqtt.async_wait_for_mqtt_client(hass)
    await hass.async_block_till_done()
    return entry


async def async_wait_for(
    hass: HomeAssistant, predicate: Callable[[], bool], within: float = 20.0
) -> None:
    """Poll a condition while HA runs (real subprocesses answer in real time)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not predicate():
        if loop.time() > deadline:
            raise TimeoutError("condition not met in time")
        await asyncio.sleep(0.05)
        await hass.async_block_till_done()


@pytest.fixture(autouse=True)
async def ha_core(request: pytest.FixtureRequest) -> None:
    """HA's core integration, as in a home (conversation, a dependency, needs it)."""
    if "hass" in request.fixturenames:
        hass: HomeAssistant = request.getfixturevalue("hass")
        assert await async_setup_component(hass, "homeassistant", {})


@pytest.fixture(autouse=True)
def no_deprecations(caplog: pytest.LogCaptureFixture) -> Generator[None]:
    """Fail a test during which HA reports a deprecated use by this integration.

    HA's report_usage only logs for custom integrations (frame.py); Python's own
    DeprecationWarnings raised from our modules are errors too.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "error", category=DeprecationWarning, module=r"custom_components\.edge_inference"
        )
        yield
    reports = [
        record.getMessage()
        for when in ("setup", "call", "teardown")
        for record in caplog.get_records(when)
        if DOMAIN in record.getMessage()
        and (
            record.name == "homeassistant.helpers.frame"
            or "deprecat" in record.getMessage().lower()
        )
    ]
    if reports:
        pytest.fail("Home Assistant reported a deprecated use:\n" + "\n".join(reports))


@pytest.fixture
def broker(tmp_path: Path) -> Generator[MosquittoBroker]:
    """A real Mosquitto for one test."""
    broker = MosquittoBroker(tmp_path / "mosquitto")
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture
def server(tmp_path: Path, broker: MosquittoBroker) -> Generator[ServerProcess]:
    """The real server subprocess (CPU backend, real model) on the real broker."""
    if not server_available():
        pytest.skip("inference_server or model_repository/yolov3-tiny missing")
    server = ServerProcess(
        tmp_path / "server",
        mqtt_port=broker.port,
        token=TOKEN,
        server_id=SERVER_ID,
    )
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def real_mqtt(
    hass: HomeAssistant,
    socket_enabled: None,
    mock_hass_config: None,
    broker: MosquittoBroker,
) -> AsyncGenerator[MockConfigEntry]:
    """HA connected to the real broker."""
    entry = await async_setup_real_mqtt(hass, broker.port)
    yield entry
    await hass.config_entries.async_unload(entry.entry_id)
    await hass.async_block_till_done()
