"""A configured server that comes back at a new URL is followed, with real parts."""

from __future__ import annotations

import re
import urllib.request
from collections.abc import Generator

import pytest
from homeassistant.config_entries import ConfigEntryState
from homeassistant.const import CONF_URL, STATE_OFF, STATE_ON, STATE_UNAVAILABLE
from homeassistant.core import HomeAssistant
from homeassistant.helpers import entity_registry as er
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.edge_inference.const import DOMAIN
from tests.helpers.broker import MosquittoBroker
from tests.helpers.server_process import ServerProcess
from tests.integration.common import (
    SERVER_ID,
    TOKEN,
    async_setup_test_cameras,
    async_wait_for,
    requires_server,
)

from .test_camera_pipeline import (
    PEOPLE,
    async_add_pipeline,
    async_detect_people_on_still,
    async_discover_and_confirm,
    state,
)

pytestmark = [requires_server, pytest.mark.usefixtures("socket_enabled")]

DETECT_OK = re.compile(
    r'^edge_inference_requests_total\{route="/api/v1/vision/detect",status="200"\} (\S+)$',
    re.MULTILINE,
)


def detections_served(server: ServerProcess) -> int:
    """How many detections the server answered with 200 (its /metrics; blocking)."""
    request = urllib.request.Request(
        f"{server.url}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    with urllib.request.urlopen(request, timeout=5) as resp:
        match = DETECT_OK.search(resp.read().decode())
    return int(float(match.group(1))) if match else 0


@pytest.fixture
def moved_server(broker: MosquittoBroker, server: ServerProcess) -> Generator[ServerProcess]:
    """The same server (id, token, data dir) on another port, advertising that port."""
    moved = ServerProcess(
        server.data_dir,
        mqtt_port=broker.port,
        token=TOKEN,
        server_id=SERVER_ID,
    )
    assert moved.url != server.url
    yield moved
    moved.stop()


async def test_server_moves_to_a_new_url(
    hass: HomeAssistant,
    real_mqtt: MockConfigEntry,
    server: ServerProcess,
    moved_server: ServerProcess,
) -> None:
    """Its retained announce updates and reloads the entry; no flow is left for the user."""
    await async_setup_test_cameras(hass)
    entry = await async_discover_and_confirm(hass)
    assert entry.data[CONF_URL] == server.url
    await async_add_pipeline(hass, entry, "camera.still", "snapshot")
    await async_wait_for(hass, lambda: state(hass, "sensor.still_person_count") == str(PEOPLE))
    entity_ids = sorted(
        e.entity_id for e in er.async_entries_for_config_entry(er.async_get(hass), entry.entry_id)
    )
    connectivity = next(e for e in entity_ids if e.endswith("_connectivity"))
    assert state(hass, connectivity) == STATE_ON

    # The server goes away (a clean stop publishes `offline`) ...
    await hass.async_add_executor_job(server.stop)
    await async_wait_for(hass, lambda: state(hass, connectivity) == STATE_OFF)
    assert state(hass, "sensor.still_person_count") == STATE_UNAVAILABLE
    runtime_before = entry.runtime_data

    # ... and comes back on another port: its new announce moves the entry there.
    await hass.async_add_executor_job(moved_server.start)
    await async_wait_for(hass, lambda: entry.data[CONF_URL] == moved_server.url)
    await async_wait_for(
        hass,
        lambda: (
            entry.state is ConfigEntryState.LOADED
            and getattr(entry, "runtime_data", None) is not runtime_before
        ),
    )
    assert entry.runtime_data.client.url == moved_server.url
    await async_wait_for(hass, lambda: state(hass, connectivity) == STATE_ON)
    await async_wait_for(hass, lambda: state(hass, "sensor.still_person_count") == str(PEOPLE))

    # Nothing for the user to do: one entry, no discovery flow, the same entities.
    await hass.async_block_till_done(wait_background_tasks=True)
    assert not hass.config_entries.flow.async_progress_by_handler(DOMAIN)
    assert hass.config_entries.async_entries(DOMAIN) == [entry]
    assert (
        sorted(
            e.entity_id
            for e in er.async_entries_for_config_entry(er.async_get(hass), entry.entry_id)
        )
        == entity_ids
    )

    # The action goes to the new URL too, which served the pipeline's detections.
    detections = await async_detect_people_on_still(hass)
    assert len([d for d in detections if d["score"] >= 0.5]) == PEOPLE
    assert await hass.async_add_executor_job(detections_served, moved_server) >= 2
    assert entry.data[CONF_URL] == moved_server.url

    assert await hass.config_entries.async_unload(entry.entry_id)
    await hass.async_block_till_done()
