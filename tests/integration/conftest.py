"""HA-only fixtures (tests/conftest.py is shared with the server's venv, without HA)."""

from __future__ import annotations

import base64
import copy
import secrets
from collections.abc import AsyncGenerator, Awaitable, Callable, Generator
from typing import Any
from unittest.mock import AsyncMock, PropertyMock, patch

import pytest
from homeassistant.const import CONF_API_TOKEN, CONF_URL
from homeassistant.core import HomeAssistant
from pytest_homeassistant_custom_component.common import MockConfigEntry
from pytest_homeassistant_custom_component.test_util.aiohttp import (
    AiohttpClientMocker,
    AiohttpClientMockResponse,
)
from yarl import URL as YarlURL

import custom_components.edge_inference  # noqa: F401  (the plugin finds it importable)
from custom_components.edge_inference.const import (
    CONF_CAMERA_ENTITY_ID,
    CONF_CLEAR_AFTER,
    CONF_FPS,
    CONF_INTERVAL,
    CONF_LABELS,
    CONF_MIN_SCORE,
    CONF_MODE,
    CONF_SERVER_ID,
    DOMAIN,
    SUBENTRY_CAMERA,
)
from custom_components.edge_inference.trust import proof

from .common import (  # noqa: F401
    async_setup_test_cameras,
    broker,
    ha_core,
    no_deprecations,
    real_mqtt,
    server,
)

URL = "http://127.0.0.1:8765"
INFO: dict[str, Any] = {
    "protocol": 1,
    "server_id": "kitchen-nuc",
    "name": "Edge inference on kitchen-nuc",
    "version": "0.1.0",
    "auth": "bearer",
    "capabilities": {
        "vision": {
            "default_model": "yolov3-tiny",
            "models": [
                {"name": "yolov3-tiny", "backend": "local", "labels": ["person", "car", "dog"]}
            ],
            "cameras": True,
        }
    },
    "backends": {"local": {"ready": True}, "triton": {"ready": False}},
}
ANNOUNCE: dict[str, Any] = {**INFO, "api": {"url": URL, "urls": [URL]}}
ANNOTATED = b"\xff\xd8annotated"
DETECT: dict[str, Any] = {
    "model": "yolov3-tiny",
    "detections": [
        {"label": "person", "score": 0.9, "box": [0.1, 0.2, 0.3, 0.4]},
        {"label": "person", "score": 0.6, "box": [0.5, 0.2, 0.6, 0.4]},
        {"label": "car", "score": 0.7, "box": [0.0, 0.5, 0.4, 0.9]},
        {"label": "broken"},
    ],
    "image": {"width": 768, "height": 576},
    "timing_ms": {"total": 50.0},
    "annotated_jpeg": base64.b64encode(ANNOTATED).decode(),
}
SNAPSHOT_SUB = "01SNAPSHOTSUB"
STREAM_SUB = "01STREAMSUB"
STREAM_CAMERA = "ha-01streamsub"
ENTRY_DATA = {CONF_URL: URL, CONF_API_TOKEN: "secret", CONF_SERVER_ID: "kitchen-nuc"}


def pipeline_data(camera: str, mode: str, **changes: Any) -> dict[str, Any]:
    """A camera pipeline subentry's data."""
    return {
        CONF_CAMERA_ENTITY_ID: camera,
        CONF_LABELS: ["person", "car", "dog"],
        CONF_MIN_SCORE: 0.5,
        CONF_MODE: mode,
        CONF_INTERVAL: 5,
        CONF_FPS: 2,
        CONF_CLEAR_AFTER: 10,
        **changes,
    }


def subentry(subentry_id: str, camera: str, mode: str, **changes: Any) -> dict[str, Any]:
    """A stored camera subentry; a change to None leaves that key out (older versions)."""
    data = {k: v for k, v in pipeline_data(camera, mode, **changes).items() if v is not None}
    return {
        "data": data,
        "subentry_id": subentry_id,
        "subentry_type": SUBENTRY_CAMERA,
        "title": camera.split(".")[1].capitalize(),
        "unique_id": camera,
    }


def info(**changes: Any) -> dict[str, Any]:
    """A copy of INFO with changes."""
    return {**copy.deepcopy(INFO), **changes}


@pytest.fixture(autouse=True)
def auto_enable_custom_integrations(enable_custom_integrations: None) -> None:
    """Let HA load custom_components/edge_inference."""


@pytest.fixture
def entity_registry_enabled_by_default() -> Generator[None]:
    """Enable the entities that are disabled by default."""
    with patch(
        "homeassistant.helpers.entity.Entity.entity_registry_enabled_default",
        return_value=True,
        new_callable=PropertyMock,
    ):
        yield


def proof_answer(
    token: str = "secret", server_id: str = "kitchen-nuc"
) -> Callable[[str, YarlURL, Any], Awaitable[AiohttpClientMockResponse]]:
    """A server's answer to the trust challenge, holding `token` (the real one's is e2e)."""

    async def _answer(method: str, url: YarlURL, data: Any) -> AiohttpClientMockResponse:
        server_nonce = secrets.token_hex(16)
        signed = proof(token, data["nonce"], server_nonce, server_id, data["url"])
        return AiohttpClientMockResponse(
            method, url, json={"server_id": server_id, "nonce": server_nonce, "proof": signed}
        )

    return _answer


def mock_proof(
    aioclient_mock: AiohttpClientMocker,
    url: str = URL,
    token: str = "secret",
    server_id: str = "kitchen-nuc",
) -> None:
    """The server at `url` proves it holds `token`."""
    aioclient_mock.post(f"{url}/api/v1/trust/proof", side_effect=proof_answer(token, server_id))


def token_requests(aioclient_mock: AiohttpClientMocker, url: str) -> list[str]:
    """Requests that carried a bearer token to `url`."""
    return [
        f"{method} {called}"
        for method, called, _, headers in aioclient_mock.mock_calls
        if str(called).startswith(url) and "Authorization" in (headers or {})
    ]


@pytest.fixture
def mock_info(aioclient_mock: AiohttpClientMocker) -> AiohttpClientMocker:
    """A server at URL that accepts TOKEN."""
    mock_proof(aioclient_mock)
    aioclient_mock.get(f"{URL}/api/v1/info", json=INFO)
    return aioclient_mock


@pytest.fixture
def mock_setup_entry() -> Generator[AsyncMock]:
    """Flow tests stop before the entry is set up."""
    with patch(
        "custom_components.edge_inference.async_setup_entry", return_value=True
    ) as mock_setup:
        yield mock_setup


@pytest.fixture
async def mock_mqtt(hass: HomeAssistant, mqtt_mock: Any) -> AsyncGenerator[Any]:
    """HA's mocked MQTT, unloaded after the test.

    Its subscription cooldown timer lingers: modules using it set
    `expected_lingering_timers` (see LINGERING below).
    """
    yield mqtt_mock
    for entry in hass.config_entries.async_entries("mqtt"):
        await hass.config_entries.async_unload(entry.entry_id)
    await hass.async_block_till_done()


@pytest.fixture
def mock_server(aioclient_mock: AiohttpClientMocker) -> AiohttpClientMocker:
    """A server at URL: trust proof, info, detection and the camera API."""
    mock_proof(aioclient_mock)
    aioclient_mock.get(f"{URL}/api/v1/info", json=INFO)
    aioclient_mock.post(f"{URL}/api/v1/vision/detect", json=DETECT)
    camera = f"{URL}/api/v1/cameras/{STREAM_CAMERA}"
    aioclient_mock.put(camera, status=201, json={"camera_id": STREAM_CAMERA})
    aioclient_mock.get(f"{camera}/snapshot", content=ANNOTATED)
    aioclient_mock.get(camera, json={"camera_id": STREAM_CAMERA})
    aioclient_mock.delete(camera, status=204)
    return aioclient_mock


async def async_setup_entry(
    hass: HomeAssistant, *subentries: dict[str, Any], data: dict[str, Any] | None = None
) -> MockConfigEntry:
    """Test cameras, then an entry (with camera subentries) set up against mocks."""
    await async_setup_test_cameras(hass)
    entry = MockConfigEntry(
        domain=DOMAIN,
        unique_id="kitchen-nuc",
        title="Kitchen",
        data=data or ENTRY_DATA,
        subentries_data=list(subentries),
    )
    entry.add_to_hass(hass)
    await hass.config_entries.async_setup(entry.entry_id)
    # The first snapshot of each pipeline runs as a background task.
    await hass.async_block_till_done(wait_background_tasks=True)
    return entry
