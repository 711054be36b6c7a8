"""The detect_objects action with a mocked server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import HomeAssistantError, ServiceValidationError
from homeassistant.setup import async_setup_component
from pytest_homeassistant_custom_component.common import MockConfigEntry
from pytest_homeassistant_custom_component.test_util.aiohttp import AiohttpClientMocker

from custom_components.edge_inference.const import DOMAIN

from .common import ASTRONAUT_JPEG, STREET_PNG, async_setup_test_cameras
from .conftest import ANNOTATED, DETECT, INFO, URL, async_setup_entry, mock_proof

pytestmark = [
    pytest.mark.usefixtures("mock_mqtt"),
    pytest.mark.parametrize("expected_lingering_timers", [True]),
]


async def detect(hass: HomeAssistant, **data: Any) -> Any:
    """Call the action and return its response."""
    return await hass.services.async_call(
        DOMAIN, "detect_objects", data, blocking=True, return_response=True
    )


@pytest.fixture
def allowed(hass: HomeAssistant, tmp_path: Path) -> Path:
    """A folder in allowlist_external_dirs with a PNG and a JPEG."""
    hass.config.allowlist_external_dirs = {str(tmp_path)}
    (tmp_path / "astronaut.jpg").write_bytes(ASTRONAUT_JPEG.read_bytes())
    (tmp_path / "street.png").write_bytes(STREET_PNG.read_bytes())
    return tmp_path


async def test_detect_cameras_and_file(
    hass: HomeAssistant, mock_server: AiohttpClientMocker, allowed: Path
) -> None:
    """Cameras and a file give one result each; labels and min_score are passed on."""
    entry = await async_setup_entry(hass)
    response = await detect(
        hass,
        entity_id=["camera.still", "camera.empty"],
        image_file=str(allowed / "street.png"),
        labels="person",
        min_score=0.4,
        config_entry_id=entry.entry_id,
    )
    results = response["results"]
    assert list(results) == ["camera.empty", "camera.still", str(allowed / "street.png")]
    assert results["camera.still"]["detections"][0] == DETECT["detections"][0]
    assert results["camera.still"]["image"] == {"width": 768, "height": 576}
    posts = [c for c in mock_server.mock_calls if c[1].path.endswith("/detect")]
    assert dict(posts[0][1].query) == {"labels": "person", "min_score": "0.4"}
    assert posts[2][3]["Content-Type"] == "image/png"


async def test_detect_saves_snapshot(
    hass: HomeAssistant, mock_server: AiohttpClientMocker, allowed: Path
) -> None:
    """An annotated snapshot is saved where asked."""
    await async_setup_entry(hass)
    target = allowed / "out" / "annotated.jpg"
    response = await detect(hass, entity_id="camera.still", snapshot_path=str(target))
    assert target.read_bytes() == ANNOTATED
    assert response["results"]["camera.still"]["snapshot_path"] == str(target)
    post = next(c for c in mock_server.mock_calls if c[1].path.endswith("/detect"))
    assert post[1].query["annotate"] == "true"


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({}, "no_image"),
        ({"image_file": "/etc/passwd"}, "path_not_allowed"),
        ({"image_file": "{tmp}/missing.jpg"}, "file_not_readable"),
        ({"entity_id": "camera.still", "snapshot_path": "/root/x.jpg"}, "path_not_allowed"),
        (
            {"entity_id": ["camera.still", "camera.empty"], "snapshot_path": "{tmp}/x.jpg"},
            "snapshot_needs_one_image",
        ),
        ({"config_entry_id": "nope", "entity_id": "camera.still"}, "unknown_server"),
    ],
)
async def test_detect_validation_errors(
    hass: HomeAssistant,
    mock_server: AiohttpClientMocker,
    allowed: Path,
    data: dict[str, Any],
    key: str,
) -> None:
    """The caller's mistakes are translated validation errors."""
    await async_setup_entry(hass)
    data = {k: v.format(tmp=allowed) if isinstance(v, str) else v for k, v in data.items()}
    with pytest.raises(ServiceValidationError) as err:
        await detect(hass, **data)
    assert err.value.translation_key == key


async def test_detect_no_server(hass: HomeAssistant) -> None:
    """Without a loaded server the action explains why."""
    await async_setup_test_cameras(hass)
    entry = MockConfigEntry(domain=DOMAIN, data={})
    entry.add_to_hass(hass)
    assert await async_setup_component(hass, DOMAIN, {})
    with pytest.raises(ServiceValidationError) as err:
        await detect(hass, entity_id="camera.still")
    assert err.value.translation_key == "no_server"
    with pytest.raises(ServiceValidationError) as err:
        await detect(hass, entity_id="camera.still", config_entry_id=entry.entry_id)
    assert err.value.translation_key == "server_not_loaded"


@pytest.mark.parametrize(
    ("mock_kwargs", "key"),
    [
        ({"status": 401}, "invalid_auth"),
        (
            {"status": 503, "json": {"error": {"code": "queue_full", "message": "busy"}}},
            "detect_failed",
        ),
    ],
)
async def test_detect_server_errors(
    hass: HomeAssistant,
    aioclient_mock: AiohttpClientMocker,
    mock_kwargs: dict[str, Any],
    key: str,
) -> None:
    """Server failures are translated HomeAssistantErrors."""
    mock_proof(aioclient_mock)
    aioclient_mock.get(f"{URL}/api/v1/info", json=INFO)
    aioclient_mock.post(f"{URL}/api/v1/vision/detect", **mock_kwargs)
    await async_setup_entry(hass)
    with pytest.raises(HomeAssistantError) as err:
        await detect(hass, entity_id="camera.still")
    assert err.value.translation_key == key


async def test_detect_camera_error(hass: HomeAssistant, mock_server: AiohttpClientMocker) -> None:
    """A camera without an image is a translated error."""
    await async_setup_entry(hass)
    with pytest.raises(HomeAssistantError) as err:
        await detect(hass, entity_id="camera.missing")
    assert err.value.translation_key == "camera_error"
