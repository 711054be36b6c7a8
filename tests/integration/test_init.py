"""Setup, unload and the server device with a mocked server and mocked MQTT."""

from __future__ import annotations

import json
from typing import Any
from unittest.mock import patch

import pytest
from homeassistant.config_entries import ConfigEntryState, ConfigSubentry
from homeassistant.const import STATE_OFF, STATE_ON, STATE_UNAVAILABLE
from homeassistant.core import HomeAssistant
from homeassistant.helpers import device_registry as dr
from homeassistant.helpers import entity_registry as er
from homeassistant.helpers import issue_registry as ir
from pytest_homeassistant_custom_component.common import async_fire_mqtt_message
from pytest_homeassistant_custom_component.test_util.aiohttp import AiohttpClientMocker

from custom_components.edge_inference import async_remove_config_entry_device
from custom_components.edge_inference.const import DOMAIN
from custom_components.edge_inference.diagnostics import async_get_config_entry_diagnostics

from .conftest import (
    ANNOUNCE,
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
    # HA's mocked MQTT leaves its subscription cooldown timer behind.
    pytest.mark.parametrize("expected_lingering_timers", [True]),
]

SERVER = "edge_inference_on_kitchen_nuc"
CONNECTIVITY = f"binary_sensor.{SERVER}_connectivity"
STATS = {
    "time": 1.0,
    "uptime_s": 10,
    "requests": 3,
    "latency_ms": {
        "vision/other": {"p50": 99.0, "p95": 120.0},
        "vision/yolov3-tiny": {"p50": 42.5, "p95": 60.0},
    },
    "queue_depth": {"yolov3-tiny": 2, "other": 1, "bad": "x"},
    "backends": {"local": {"ready": True}, "triton": {"ready": False}},
}


def fire(hass: HomeAssistant, topic: str, payload: Any) -> None:
    """A message from the server on edge_inference/kitchen-nuc/<topic>."""
    text = payload if isinstance(payload, str) else json.dumps(payload)
    async_fire_mqtt_message(hass, f"edge_inference/kitchen-nuc/{topic}", text)


@pytest.mark.usefixtures("entity_registry_enabled_by_default")
async def test_server_entities(
    hass: HomeAssistant, mock_server: AiohttpClientMocker, caplog: pytest.LogCaptureFixture
) -> None:
    """Status, announce and stats drive the server's device."""
    entry = await async_setup_entry(hass)
    assert entry.state is ConfigEntryState.LOADED
    assert hass.states.get(CONNECTIVITY).state == STATE_ON
    assert hass.states.get(f"sensor.{SERVER}_inference_latency").state == "unknown"
    assert hass.states.get(f"sensor.{SERVER}_loaded_models").state == "1"
    assert hass.states.get(f"sensor.{SERVER}_backends").state == "degraded"

    fire(hass, "stats", STATS)
    await hass.async_block_till_done()
    assert hass.states.get(f"sensor.{SERVER}_inference_latency").state == "42.5"
    assert hass.states.get(f"sensor.{SERVER}_queue_depth").state == "3"
    assert hass.states.get(f"sensor.{SERVER}_backends").attributes["triton"] is False

    fire(hass, "stats", {"latency_ms": {"llm/x": {"p50": 7}}, "queue_depth": [], "backends": {}})
    await hass.async_block_till_done()
    assert hass.states.get(f"sensor.{SERVER}_inference_latency").state == "7.0"
    assert hass.states.get(f"sensor.{SERVER}_queue_depth").state == "unknown"
    assert hass.states.get(f"sensor.{SERVER}_backends").state == "degraded"  # from the info

    fire(hass, "stats", {"latency_ms": {"llm/x": "bad"}, "backends": {"local": {"ready": False}}})
    await hass.async_block_till_done()
    assert hass.states.get(f"sensor.{SERVER}_inference_latency").state == "unknown"
    assert hass.states.get(f"sensor.{SERVER}_backends").state == "unavailable"
    fire(hass, "stats", {"backends": {"local": {"ready": True}}})
    await hass.async_block_till_done()
    assert hass.states.get(f"sensor.{SERVER}_backends").state == "ready"

    # Offline: logged once, entities unavailable, connectivity off; back online likewise.
    fire(hass, "status", "offline")
    fire(hass, "status", "offline")
    await hass.async_block_till_done()
    assert hass.states.get(CONNECTIVITY).state == STATE_OFF
    assert hass.states.get(f"sensor.{SERVER}_loaded_models").state == STATE_UNAVAILABLE
    assert caplog.text.count("is offline") == 1
    fire(hass, "status", "online")
    await hass.async_block_till_done()
    assert hass.states.get(f"sensor.{SERVER}_loaded_models").state == "1"
    assert caplog.text.count("is back online") == 1

    # Garbage on the topics is ignored.
    fire(hass, "stats", "not json")
    fire(hass, "stats", "[1, 2]")
    await hass.async_block_till_done()
    assert hass.states.get(f"sensor.{SERVER}_loaded_models").state == "1"


async def test_announce_updates_models_and_protocol_issue(
    hass: HomeAssistant, mock_server: AiohttpClientMocker
) -> None:
    """A new announce updates the models; another protocol raises a repair issue."""
    entry = await async_setup_entry(hass)
    issues = ir.async_get(hass)
    models = [*ANNOUNCE["capabilities"]["vision"]["models"], {"name": "yolov8n", "labels": []}]
    announce = {**ANNOUNCE, "capabilities": {"vision": {"models": models}, "stt": "odd"}}
    fire(hass, "announce", announce)
    fire(hass, "announce", {**announce, "server_id": "someone-else", "protocol": 9})
    await hass.async_block_till_done()
    assert hass.states.get(f"sensor.{SERVER}_loaded_models").state == "2"
    assert issues.async_get_issue(DOMAIN, f"incompatible_protocol_{entry.entry_id}") is None

    fire(hass, "announce", {**ANNOUNCE, "protocol": 2})
    await hass.async_block_till_done()
    assert issues.async_get_issue(DOMAIN, f"incompatible_protocol_{entry.entry_id}") is not None
    fire(hass, "announce", ANNOUNCE)
    await hass.async_block_till_done()
    assert issues.async_get_issue(DOMAIN, f"incompatible_protocol_{entry.entry_id}") is None


async def test_announce_renames_the_server_device(
    hass: HomeAssistant, mock_server: AiohttpClientMocker
) -> None:
    """Name and version follow the server's announces; one for another URL is ignored."""
    entry = await async_setup_entry(hass)
    devices = dr.async_get(hass)
    device = devices.async_get_device_by_identifier((DOMAIN, "kitchen-nuc"), entry.entry_id)
    assert device is not None
    assert (device.name, device.sw_version) == (INFO["name"], "0.1.0")

    fire(hass, "announce", {**ANNOUNCE, "name": "Garage box", "version": "0.2.0"})
    await hass.async_block_till_done()
    device = devices.async_get(device.id)
    assert device is not None
    assert (device.name, device.sw_version) == ("Garage box", "0.2.0")

    spoofed = "http://192.0.2.66:8765"
    mock_proof(mock_server, url=spoofed, token="a-guess")
    elsewhere = {"url": spoofed, "urls": [spoofed]}
    fire(hass, "announce", {**ANNOUNCE, "name": "Spoofed", "version": "6.6.6", "api": elsewhere})
    await hass.async_block_till_done()
    # HA's MQTT discovery hands it to the config flow too, which refuses the move.
    assert ir.async_get(hass).async_get_issue(DOMAIN, f"unverified_url_{entry.entry_id}")
    assert entry.data["url"] == URL
    device = devices.async_get(device.id)
    assert device is not None
    assert (device.name, device.sw_version) == ("Garage box", "0.2.0")
    assert entry.runtime_data.coordinator.data.info["name"] == "Garage box"


@pytest.mark.parametrize(
    ("mock_kwargs", "state"),
    [
        ({"status": 401}, ConfigEntryState.SETUP_ERROR),
        ({"exc": TimeoutError()}, ConfigEntryState.SETUP_RETRY),
        (
            {"status": 400, "json": {"error": {"code": "bad_request", "message": "x"}}},
            ConfigEntryState.SETUP_RETRY,
        ),
    ],
)
async def test_setup_fails(
    hass: HomeAssistant,
    aioclient_mock: AiohttpClientMocker,
    mock_kwargs: dict[str, Any],
    state: ConfigEntryState,
) -> None:
    """A rejected token asks for reauth; an unreachable server retries."""
    mock_proof(aioclient_mock)
    aioclient_mock.get(f"{URL}/api/v1/info", **mock_kwargs)
    entry = await async_setup_entry(hass)
    assert entry.state is state
    issue = ir.async_get(hass).async_get_issue(DOMAIN, f"token_rejected_{entry.entry_id}")
    assert (issue is not None) == (state is ConfigEntryState.SETUP_ERROR)
    if issue is not None:
        flows = hass.config_entries.flow.async_progress_by_handler(DOMAIN)
        assert [f["context"]["source"] for f in flows] == ["reauth"]
        # Removing the entry removes its issues.
        await hass.config_entries.async_remove(entry.entry_id)
        assert (
            ir.async_get(hass).async_get_issue(DOMAIN, f"token_rejected_{entry.entry_id}") is None
        )


async def test_setup_protocol_mismatch(
    hass: HomeAssistant, aioclient_mock: AiohttpClientMocker
) -> None:
    """A server speaking another protocol still loads, with a repair issue."""
    mock_proof(aioclient_mock)
    aioclient_mock.get(f"{URL}/api/v1/info", json={**INFO, "protocol": 3})
    entry = await async_setup_entry(hass)
    assert entry.state is ConfigEntryState.LOADED
    assert ir.async_get(hass).async_get_issue(DOMAIN, f"incompatible_protocol_{entry.entry_id}")


async def test_setup_without_mqtt(hass: HomeAssistant, mock_server: AiohttpClientMocker) -> None:
    """No MQTT client: retry later."""
    with patch("custom_components.edge_inference.async_wait_for_mqtt_client", return_value=False):
        entry = await async_setup_entry(hass)
    assert entry.state is ConfigEntryState.SETUP_RETRY


async def test_subentry_changes_apply_one_by_one(
    hass: HomeAssistant, mock_server: AiohttpClientMocker
) -> None:
    """Pipelines start, restart and stop alone: no reload, the other pipeline untouched."""
    entry = await async_setup_entry(hass, subentry(SNAPSHOT_SUB, "camera.still", "snapshot"))
    runtime = entry.runtime_data
    still = runtime.pipelines[SNAPSHOT_SUB]
    assert hass.states.get("sensor.still_person_count").state == "2"
    detects = sum(1 for call in mock_server.mock_calls if "detect" in str(call[1]))

    hass.config_entries.async_add_subentry(
        entry,
        ConfigSubentry(
            data=pipeline_data("camera.empty", "snapshot"),
            subentry_type="camera",
            title="Empty",
            unique_id="camera.empty",
        ),
    )
    await hass.async_block_till_done(wait_background_tasks=True)
    assert entry.runtime_data is runtime
    assert len(runtime.pipelines) == 2
    assert runtime.pipelines[SNAPSHOT_SUB] is still
    assert hass.states.get("sensor.empty_person_count") is not None
    assert hass.states.get("switch.empty_detection").state == STATE_ON
    # Only the new pipeline took a first snapshot.
    assert sum(1 for call in mock_server.mock_calls if "detect" in str(call[1])) == detects + 1

    # A changed pipeline restarts alone; a dropped label's entities leave the registry,
    # a new one's arrive.
    empty_id = next(s for s in entry.subentries if s != SNAPSHOT_SUB)
    entities = er.async_get(hass)
    assert entities.async_get("sensor.empty_dog_count") is not None
    still_state = hass.states.get("binary_sensor.still_person_occupancy")
    hass.config_entries.async_update_subentry(
        entry,
        entry.subentries[empty_id],
        data=pipeline_data("camera.empty", "snapshot", labels=["person", "cat"], min_score=0.7),
    )
    await hass.async_block_till_done(wait_background_tasks=True)
    assert entry.runtime_data is runtime
    assert runtime.pipelines[empty_id].min_score == 0.7
    assert entities.async_get("sensor.empty_dog_count") is None
    assert hass.states.get("sensor.empty_dog_count") is None
    assert hass.states.get("sensor.empty_cat_count") is not None
    assert hass.states.get("sensor.empty_person_count") is not None
    assert runtime.pipelines[SNAPSHOT_SUB] is still
    assert still.counts == {"person": 2, "car": 1, "dog": 0}
    assert hass.states.get("binary_sensor.still_person_occupancy") == still_state

    devices = dr.async_get(hass)
    server = devices.async_get_device_by_identifier((DOMAIN, "kitchen-nuc"), entry.entry_id)
    pipeline = devices.async_get_device_by_identifier((DOMAIN, empty_id), entry.entry_id)
    assert server is not None
    assert pipeline is not None
    assert pipeline.via_device_id == server.id
    assert pipeline.entry_type is dr.DeviceEntryType.SERVICE
    assert not await async_remove_config_entry_device(hass, entry, pipeline)
    assert not await async_remove_config_entry_device(hass, entry, server)

    hass.config_entries.async_remove_subentry(entry, empty_id)
    await hass.async_block_till_done(wait_background_tasks=True)
    assert entry.runtime_data is runtime
    assert list(runtime.pipelines) == [SNAPSHOT_SUB]
    # The pipeline's device and entities went with its subentry.
    assert devices.async_get_device_by_identifier((DOMAIN, empty_id), entry.entry_id) is None
    assert hass.states.get("sensor.empty_person_count") is None
    assert await async_remove_config_entry_device(hass, entry, pipeline)
    assert hass.states.get("sensor.still_person_count").state == "2"


async def test_diagnostics(hass: HomeAssistant, mock_server: AiohttpClientMocker) -> None:
    """The token is redacted; the server and pipelines are there."""
    entry = await async_setup_entry(hass, subentry(SNAPSHOT_SUB, "camera.still", "snapshot"))
    await hass.async_block_till_done()
    diagnostics = await async_get_config_entry_diagnostics(hass, entry)
    assert diagnostics["entry"]["data"]["api_token"] == "**REDACTED**"
    assert diagnostics["server"]["info"]["server_id"] == "kitchen-nuc"
    assert diagnostics["server"]["online"] is True
    pipeline = diagnostics["pipelines"][SNAPSHOT_SUB]
    assert pipeline["mode"] == "snapshot"
    assert pipeline["counts"] == {"person": 2, "car": 1, "dog": 0}
    assert "secret" not in json.dumps(diagnostics)
