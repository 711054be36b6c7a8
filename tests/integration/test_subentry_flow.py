"""The camera pipeline subentry flow."""

from __future__ import annotations

from typing import Any

import pytest
from homeassistant.config_entries import SOURCE_RECONFIGURE, SOURCE_USER
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from pytest_homeassistant_custom_component.common import MockConfigEntry
from pytest_homeassistant_custom_component.test_util.aiohttp import AiohttpClientMocker

from custom_components.edge_inference.const import DOMAIN, SUBENTRY_CAMERA

from .conftest import (
    ENTRY_DATA,
    INFO,
    SNAPSHOT_SUB,
    URL,
    async_setup_entry,
    mock_proof,
    pipeline_data,
    subentry,
)

pytestmark = [
    pytest.mark.usefixtures("mock_mqtt"),
    pytest.mark.parametrize("expected_lingering_timers", [True]),
]


def suggested(result: Any, field: str) -> Any:
    """The value a form suggests for one field."""
    key = next(k for k in result["data_schema"].schema if k == field)
    return key.description["suggested_value"]


async def start(hass: HomeAssistant, entry: MockConfigEntry, **context: Any) -> Any:
    """Start a camera subentry flow."""
    return await hass.config_entries.subentries.async_init(
        (entry.entry_id, SUBENTRY_CAMERA), context={"source": SOURCE_USER, **context}
    )


async def test_add_pipeline(hass: HomeAssistant, mock_server: AiohttpClientMocker) -> None:
    """Labels come from the server's model; a pipeline needs at least one."""
    entry = await async_setup_entry(hass)
    result = await start(hass, entry)
    assert result["type"] is FlowResultType.FORM
    schema = result["data_schema"].schema
    labels = next(v for k, v in schema.items() if k == "labels")
    assert [o["value"] if isinstance(o, dict) else o for o in labels.config["options"]] == [
        "person",
        "car",
        "dog",
    ]
    assert suggested(result, "fps") == 2
    result = await hass.config_entries.subentries.async_configure(
        result["flow_id"], pipeline_data("camera.still", "snapshot", labels=[])
    )
    assert result["errors"] == {"labels": "no_labels"}
    result = await hass.config_entries.subentries.async_configure(
        result["flow_id"], pipeline_data("camera.still", "snapshot", fps=5)
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["title"] == "Still"
    assert result["data"]["fps"] == 5
    assert result["data"]["motion_percent"] == 0.2  # not given: the server's default gate
    await hass.async_block_till_done()
    assert len(entry.runtime_data.pipelines) == 1

    # The same camera twice is refused.
    result = await start(hass, entry)
    result = await hass.config_entries.subentries.async_configure(
        result["flow_id"], pipeline_data("camera.still", "stream")
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "already_configured"


async def test_add_pipeline_unknown_camera_title(
    hass: HomeAssistant, mock_server: AiohttpClientMocker
) -> None:
    """A camera without a state is named by its entity id."""
    entry = await async_setup_entry(hass)
    result = await start(hass, entry)
    result = await hass.config_entries.subentries.async_configure(
        result["flow_id"], pipeline_data("camera.gone", "snapshot")
    )
    assert result["title"] == "camera.gone"


async def test_aborts(hass: HomeAssistant, aioclient_mock: AiohttpClientMocker) -> None:
    """An unloaded server, or one without vision, cannot take pipelines."""
    entry = MockConfigEntry(domain=DOMAIN, data=ENTRY_DATA, subentries_data=[])
    entry.add_to_hass(hass)
    result = await start(hass, entry)
    assert result["reason"] == "entry_not_loaded"

    mock_proof(aioclient_mock, server_id="no-vision")
    aioclient_mock.get(f"{URL}/api/v1/info", json={**INFO, "capabilities": {}})
    loaded = await async_setup_entry(hass, data={**ENTRY_DATA, "server_id": "no-vision"})
    result = await start(hass, loaded)
    assert result["reason"] == "no_vision"


async def test_reconfigure(hass: HomeAssistant, mock_server: AiohttpClientMocker) -> None:
    """Changing labels reloads the pipeline; no labels is an error."""
    # Stored before the fps setting existed: the form suggests the default.
    entry = await async_setup_entry(
        hass, subentry(SNAPSHOT_SUB, "camera.still", "snapshot", fps=None)
    )
    result = await start(hass, entry, source=SOURCE_RECONFIGURE, subentry_id=SNAPSHOT_SUB)
    assert result["step_id"] == "reconfigure"
    assert suggested(result, "fps") == 2
    assert suggested(result, "interval") == 5
    assert suggested(result, "motion_percent") == 0.2
    changes = {
        k: v
        for k, v in pipeline_data("camera.still", "stream", fps=4.5, motion_percent=0).items()
        if k != "camera_entity_id"
    }
    result = await hass.config_entries.subentries.async_configure(
        result["flow_id"], {**changes, "labels": []}
    )
    assert result["errors"] == {"labels": "no_labels"}
    result = await hass.config_entries.subentries.async_configure(
        result["flow_id"], {**changes, "labels": ["dog"]}
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "reconfigure_successful"
    await hass.async_block_till_done()
    assert entry.subentries[SNAPSHOT_SUB].data["fps"] == 4.5
    assert entry.subentries[SNAPSHOT_SUB].data["motion_percent"] == 0  # gate off
    assert entry.runtime_data.pipelines[SNAPSHOT_SUB].labels == ["dog"]
    assert hass.states.get("sensor.still_dog_count") is not None


async def test_reconfigure_not_loaded(hass: HomeAssistant) -> None:
    """A pipeline of an unloaded server cannot be changed."""
    entry = MockConfigEntry(
        domain=DOMAIN,
        data=ENTRY_DATA,
        subentries_data=[subentry(SNAPSHOT_SUB, "camera.still", "snapshot")],
    )
    entry.add_to_hass(hass)
    result = await start(hass, entry, source=SOURCE_RECONFIGURE, subentry_id=SNAPSHOT_SUB)
    assert result["reason"] == "entry_not_loaded"
