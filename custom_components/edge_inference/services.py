"""Action `edge_inference.detect_objects`: detect in camera images or an image file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import probatio as vol
from homeassistant.components import camera
from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import (
    HomeAssistant,
    ServiceCall,
    ServiceResponse,
    SupportsResponse,
    callback,
)
from homeassistant.exceptions import HomeAssistantError, ServiceValidationError
from homeassistant.helpers import config_validation as cv
from homeassistant.helpers.service import async_extract_entity_ids
from homeassistant.helpers.typing import VolDictType

from .client import DetectResult, EdgeInferenceError, InvalidAuth
from .const import DOMAIN
from .models import EdgeInferenceConfigEntry

SERVICE_DETECT_OBJECTS = "detect_objects"
ATTR_CONFIG_ENTRY_ID = "config_entry_id"
ATTR_IMAGE_FILE = "image_file"
ATTR_LABELS = "labels"
ATTR_MIN_SCORE = "min_score"
ATTR_SNAPSHOT_PATH = "snapshot_path"

DETECT_FIELDS: VolDictType = {
    **cv.ENTITY_SERVICE_FIELDS,
    vol.Optional(ATTR_CONFIG_ENTRY_ID): cv.string,
    vol.Optional(ATTR_IMAGE_FILE): cv.string,
    vol.Optional(ATTR_LABELS): vol.All(cv.ensure_list, [cv.string]),
    vol.Optional(ATTR_MIN_SCORE): vol.All(vol.Coerce(float), vol.Range(min=0, max=1)),
    vol.Optional(ATTR_SNAPSHOT_PATH): cv.string,
}
DETECT_SCHEMA = vol.Schema(DETECT_FIELDS)


@callback
def async_setup_services(hass: HomeAssistant) -> None:
    """Register the integration's actions (once, in async_setup)."""
    hass.services.async_register(
        DOMAIN,
        SERVICE_DETECT_OBJECTS,
        _async_detect_objects,
        schema=DETECT_SCHEMA,
        supports_response=SupportsResponse.OPTIONAL,
    )


def _entry(hass: HomeAssistant, entry_id: str | None) -> EdgeInferenceConfigEntry:
    """The server to ask: the one named, else the only (or first) loaded one."""
    if entry_id is not None:
        entry: EdgeInferenceConfigEntry | None = hass.config_entries.async_get_entry(entry_id)
        if entry is None or entry.domain != DOMAIN:
            raise ServiceValidationError(
                translation_domain=DOMAIN,
                translation_key="unknown_server",
                translation_placeholders={"entry_id": entry_id},
            )
        if entry.state is not ConfigEntryState.LOADED:
            raise ServiceValidationError(
                translation_domain=DOMAIN,
                translation_key="server_not_loaded",
                translation_placeholders={"name": entry.title},
            )
        return entry
    loaded: list[EdgeInferenceConfigEntry] = hass.config_entries.async_loaded_entries(DOMAIN)
    if not loaded:
        raise ServiceValidationError(translation_domain=DOMAIN, translation_key="no_server")
    return loaded[0]


def _allowed_path(hass: HomeAssistant, path: str) -> Path:
    if not hass.config.is_allowed_path(path):
        raise ServiceValidationError(
            translation_domain=DOMAIN,
            translation_key="path_not_allowed",
            translation_placeholders={"path": path},
        )
    return Path(path)


async def _async_images(hass: HomeAssistant, call: ServiceCall) -> list[tuple[str, bytes, str]]:
    """(source, image, content type) for each camera and the image file."""
    images: list[tuple[str, bytes, str]] = []
    cameras = sorted(
        entity_id
        for entity_id in await async_extract_entity_ids(call)
        if entity_id.startswith("camera.")
    )
    for entity_id in cameras:
        try:
            image = await camera.async_get_image(hass, entity_id, timeout=10)
        except HomeAssistantError as err:
            raise HomeAssistantError(
                translation_domain=DOMAIN,
                translation_key="camera_error",
                translation_placeholders={"entity_id": entity_id, "error": str(err)},
            ) from err
        images.append((entity_id, image.content, image.content_type))
    if file := call.data.get(ATTR_IMAGE_FILE):
        path = _allowed_path(hass, file)
        try:
            content = await hass.async_add_executor_job(path.read_bytes)
        except OSError as err:
            raise ServiceValidationError(
                translation_domain=DOMAIN,
                translation_key="file_not_readable",
                translation_placeholders={"path": file, "error": str(err)},
            ) from err
        ctype = "image/png" if path.suffix.lower() == ".png" else "image/jpeg"
        images.append((file, content, ctype))
    if not images:
        raise ServiceValidationError(translation_domain=DOMAIN, translation_key="no_image")
    return images


async def _async_detect(
    entry: EdgeInferenceConfigEntry,
    image: bytes,
    content_type: str,
    call: ServiceCall,
    *,
    annotate: bool,
) -> DetectResult:
    client = entry.runtime_data.client
    try:
        return await client.async_detect(
            image,
            content_type=content_type,
            labels=call.data.get(ATTR_LABELS),
            min_score=call.data.get(ATTR_MIN_SCORE),
            annotate=annotate,
        )
    except InvalidAuth as err:
        entry.async_start_reauth(call.hass)
        raise HomeAssistantError(translation_domain=DOMAIN, translation_key="invalid_auth") from err
    except EdgeInferenceError as err:
        raise HomeAssistantError(
            translation_domain=DOMAIN,
            translation_key="detect_failed",
            translation_placeholders={"error": str(err)},
        ) from err


async def _async_detect_objects(call: ServiceCall) -> ServiceResponse:
    hass = call.hass
    entry = _entry(hass, call.data.get(ATTR_CONFIG_ENTRY_ID))
    snapshot: Path | None = None
    if ATTR_SNAPSHOT_PATH in call.data:
        snapshot = _allowed_path(hass, call.data[ATTR_SNAPSHOT_PATH])
    images = await _async_images(hass, call)
    if snapshot is not None and len(images) > 1:
        raise ServiceValidationError(
            translation_domain=DOMAIN, translation_key="snapshot_needs_one_image"
        )
    results: dict[str, Any] = {}
    for source, content, ctype in images:
        result = await _async_detect(entry, content, ctype, call, annotate=snapshot is not None)
        results[source] = result.as_dict()
        if snapshot is not None and result.annotated_jpeg is not None:
            await hass.async_add_executor_job(_write, snapshot, result.annotated_jpeg)
            results[source]["snapshot_path"] = str(snapshot)
    return {"results": results}


def _write(path: Path, content: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
