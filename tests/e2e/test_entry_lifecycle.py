"""Manual setup, reauth, reconfigure and a clean unload against the real server."""

from __future__ import annotations

from typing import Any

import pytest
from homeassistant.components.mqtt.models import DATA_MQTT
from homeassistant.config_entries import SOURCE_RECONFIGURE, SOURCE_USER, ConfigEntryState
from homeassistant.const import CONF_API_TOKEN, CONF_URL
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.helpers import issue_registry as ir
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.edge_inference.const import DOMAIN
from tests.helpers.server_process import ServerProcess
from tests.integration.common import (
    SERVER_ID,
    TOKEN,
    async_setup_test_cameras,
    async_wait_for,
    requires_server,
)

from .test_camera_pipeline import async_add_pipeline, server_get

pytestmark = [requires_server, pytest.mark.usefixtures("socket_enabled")]


def our_subscriptions(hass: HomeAssistant) -> list[str]:
    """Topics HA's MQTT client is subscribed to for this server."""
    return sorted(
        sub.topic
        for sub in hass.data[DATA_MQTT].client.subscriptions
        if sub.topic.startswith(f"edge_inference/{SERVER_ID}/")
    )


async def test_manual_setup_reauth_reconfigure_unload(
    hass: HomeAssistant, real_mqtt: MockConfigEntry, server: ServerProcess
) -> None:
    """The token is checked by the real server at every step."""
    await async_setup_test_cameras(hass)
    # Manual setup; with a wrong token the server cannot prove it holds it: never sent.
    result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": SOURCE_USER})
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_URL: server.url, CONF_API_TOKEN: "wrong-token"}
    )
    assert result["errors"] == {"base": "unverified_server"}
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_URL: server.url, CONF_API_TOKEN: TOKEN}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    await hass.async_block_till_done()
    entry: Any = result["result"]
    assert entry.unique_id == SERVER_ID
    assert entry.state is ConfigEntryState.LOADED
    # The retained announce of a configured server starts no second flow.
    await hass.async_block_till_done(wait_background_tasks=True)
    assert not hass.config_entries.flow.async_progress_by_handler(DOMAIN)

    # The server no longer takes the entry's token: reauth and a repair issue.
    hass.config_entries.async_update_entry(entry, data={**entry.data, CONF_API_TOKEN: "old-token"})
    await hass.config_entries.async_reload(entry.entry_id)
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.SETUP_ERROR
    issues = ir.async_get(hass)
    assert issues.async_get_issue(DOMAIN, f"token_rejected_{entry.entry_id}") is not None
    flows = hass.config_entries.flow.async_progress_by_handler(DOMAIN)
    assert [f["context"]["source"] for f in flows] == ["reauth"]
    result = await hass.config_entries.flow.async_configure(
        flows[0]["flow_id"], {CONF_API_TOKEN: TOKEN}
    )
    assert result["reason"] == "reauth_successful"
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.LOADED
    assert issues.async_get_issue(DOMAIN, f"token_rejected_{entry.entry_id}") is None

    # Reconfigure: same server, same token, URL with a trailing slash.
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_RECONFIGURE, "entry_id": entry.entry_id}
    )
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_URL: f"{server.url}/", CONF_API_TOKEN: TOKEN}
    )
    assert result["reason"] == "reconfigure_successful"
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.LOADED

    # A stream pipeline, then an unload that leaves nothing behind.
    await async_add_pipeline(hass, entry, "camera.street", "stream")
    assert len((await hass.async_add_executor_job(server_get, server, "/cameras"))["cameras"]) == 1
    camera_id = next(iter(entry.runtime_data.pipelines.values())).camera_id
    assert our_subscriptions(hass) == [
        f"edge_inference/{SERVER_ID}/announce",
        f"edge_inference/{SERVER_ID}/camera/{camera_id}/status",
        f"edge_inference/{SERVER_ID}/cameras/{camera_id}/counts",
        f"edge_inference/{SERVER_ID}/events",
        f"edge_inference/{SERVER_ID}/stats",
        f"edge_inference/{SERVER_ID}/status",
    ]
    assert await hass.config_entries.async_unload(entry.entry_id)
    await hass.async_block_till_done()
    await async_wait_for(hass, lambda: not our_subscriptions(hass))
    assert (await hass.async_add_executor_job(server_get, server, "/cameras"))["cameras"] == []
