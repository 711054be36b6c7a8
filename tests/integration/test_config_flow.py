"""Config flow: MQTT and add-on discovery, manual setup, reauth, reconfigure."""

from __future__ import annotations

import json
from typing import Any
from unittest.mock import AsyncMock, patch

import pytest
from homeassistant.config_entries import SOURCE_HASSIO, SOURCE_MQTT, SOURCE_USER
from homeassistant.const import CONF_API_TOKEN, CONF_URL
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.helpers import issue_registry as ir
from homeassistant.helpers.service_info.hassio import HassioServiceInfo
from homeassistant.helpers.service_info.mqtt import MqttServiceInfo
from pytest_homeassistant_custom_component.common import MockConfigEntry
from pytest_homeassistant_custom_component.test_util.aiohttp import AiohttpClientMocker

from custom_components.edge_inference.const import CONF_SERVER_ID, DOMAIN

from .conftest import ANNOUNCE, INFO, URL, info, mock_proof, token_requests

pytestmark = pytest.mark.usefixtures("mock_setup_entry")


@pytest.fixture(autouse=True)
def server_holds_secret(aioclient_mock: AiohttpClientMocker) -> None:
    """The server at URL holds the token `secret` and proves it."""
    mock_proof(aioclient_mock)


ENTRY_DATA = {CONF_URL: URL, CONF_API_TOKEN: "secret", CONF_SERVER_ID: "kitchen-nuc"}


def mqtt_info(payload: Any, topic: str = "edge_inference/kitchen-nuc/announce") -> MqttServiceInfo:
    """A discovery message as HA's MQTT integration hands it over."""
    return MqttServiceInfo(
        topic=topic,
        payload=payload if isinstance(payload, str) else json.dumps(payload),
        qos=1,
        retain=True,
        subscribed_topic="edge_inference/+/announce",
        timestamp=0,
    )


def hassio_info(config: dict[str, Any]) -> HassioServiceInfo:
    """A discovery from the add-on, token included."""
    return HassioServiceInfo(
        config=config, name="Edge Inference", slug="edge_inference", uuid="1234"
    )


def existing_entry(hass: HomeAssistant, **data: Any) -> MockConfigEntry:
    """A configured kitchen-nuc."""
    entry = MockConfigEntry(
        domain=DOMAIN,
        unique_id="kitchen-nuc",
        title="Edge inference on kitchen-nuc",
        data={**ENTRY_DATA, **data},
    )
    entry.add_to_hass(hass)
    return entry


async def test_user_flow(hass: HomeAssistant, mock_info: AiohttpClientMocker) -> None:
    """URL and token give an entry named after the server, keyed by its id."""
    result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": SOURCE_USER})
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "user"
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_URL: f"{URL}/", CONF_API_TOKEN: "secret"}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["title"] == "Edge inference on kitchen-nuc"
    assert result["data"] == ENTRY_DATA
    assert result["result"].unique_id == "kitchen-nuc"
    # The proof first, without the token; only then the token.
    assert mock_info.mock_calls[0][1].path == "/api/v1/trust/proof"
    assert "Authorization" not in (mock_info.mock_calls[0][3] or {})
    assert mock_info.mock_calls[1][3]["Authorization"] == "Bearer secret"


@pytest.mark.parametrize(
    ("mock_kwargs", "error"),
    [
        (
            {"status": 401, "json": {"error": {"code": "unauthorized", "message": "no"}}},
            "invalid_auth",
        ),
        ({"status": 503, "json": {"error": {"code": "backend_unavailable"}}}, "cannot_connect"),
        ({"exc": TimeoutError()}, "cannot_connect"),
        ({"status": 200, "text": "not json"}, "cannot_connect"),
        ({"status": 200, "json": ["a list"]}, "cannot_connect"),
        ({"status": 200, "json": {"name": "no id"}}, "cannot_connect"),
        ({"status": 404, "text": "plain"}, "unknown"),
    ],
)
async def test_user_flow_errors(
    hass: HomeAssistant,
    aioclient_mock: AiohttpClientMocker,
    mock_kwargs: dict[str, Any],
    error: str,
) -> None:
    """Each failure shows an error and the form again; fixing it finishes the flow."""
    aioclient_mock.get(f"{URL}/api/v1/info", **mock_kwargs)
    result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": SOURCE_USER})
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_URL: URL, CONF_API_TOKEN: "secret"}
    )
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {"base": error}

    aioclient_mock.clear_requests()
    mock_proof(aioclient_mock)
    aioclient_mock.get(f"{URL}/api/v1/info", json=INFO)
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_URL: URL, CONF_API_TOKEN: "secret"}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY


async def test_user_flow_unexpected_error(hass: HomeAssistant) -> None:
    """A bug while testing the server shows `unknown`."""
    result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": SOURCE_USER})
    with patch(
        "custom_components.edge_inference.config_flow.async_validate",
        side_effect=RuntimeError("boom"),
    ):
        result = await hass.config_entries.flow.async_configure(
            result["flow_id"], {CONF_URL: URL, CONF_API_TOKEN: "secret"}
        )
    assert result["errors"] == {"base": "unknown"}


async def test_user_flow_already_configured(
    hass: HomeAssistant, mock_info: AiohttpClientMocker
) -> None:
    """The same server twice aborts (and takes the new URL)."""
    entry = existing_entry(hass, url="http://old:1")
    result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": SOURCE_USER})
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_URL: URL, CONF_API_TOKEN: "secret"}
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "already_configured"
    assert entry.data[CONF_URL] == URL


async def test_mqtt_discovery(hass: HomeAssistant, mock_info: AiohttpClientMocker) -> None:
    """An announce starts a flow; the user confirms with the token."""
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_MQTT}, data=mqtt_info(ANNOUNCE)
    )
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "discovery_confirm"
    assert result["description_placeholders"] == {"name": INFO["name"], "url": URL}

    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_API_TOKEN: "secret"}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["data"] == ENTRY_DATA


async def test_mqtt_discovery_bad_token_then_good(
    hass: HomeAssistant, aioclient_mock: AiohttpClientMocker
) -> None:
    """A token the server cannot prove it holds is never sent; the right one works."""
    aioclient_mock.get(f"{URL}/api/v1/info", json=INFO)
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_MQTT}, data=mqtt_info(ANNOUNCE)
    )
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_API_TOKEN: "wrong"}
    )
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {"base": "unverified_server"}
    assert token_requests(aioclient_mock, URL) == []
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_API_TOKEN: "secret"}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY


async def test_mqtt_discovery_of_another_server_id(
    hass: HomeAssistant, aioclient_mock: AiohttpClientMocker
) -> None:
    """A URL whose server proves the token under another id gets no token either."""
    aioclient_mock.clear_requests()
    mock_proof(aioclient_mock, server_id="impostor")
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_MQTT}, data=mqtt_info(ANNOUNCE)
    )
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_API_TOKEN: "secret"}
    )
    assert result["errors"] == {"base": "unverified_server"}
    assert token_requests(aioclient_mock, URL) == []


@pytest.mark.parametrize(
    "answer",
    [
        {"status": 404, "json": {"error": {"code": "not_found", "message": "old server"}}},
        {"status": 200, "json": {"server_id": "kitchen-nuc", "nonce": "ab" * 16, "proof": "0"}},
        {"status": 200, "json": {"server_id": "kitchen-nuc", "nonce": "short", "proof": "0"}},
        {"status": 200, "json": ["not", "an", "object"]},
        {"status": 200, "text": "not json"},
    ],
)
async def test_user_flow_without_a_proof(
    hass: HomeAssistant, aioclient_mock: AiohttpClientMocker, answer: dict[str, Any]
) -> None:
    """No valid proof, no token: also for an address the user typed."""
    aioclient_mock.clear_requests()
    aioclient_mock.post(f"{URL}/api/v1/trust/proof", **answer)
    aioclient_mock.get(f"{URL}/api/v1/info", json=INFO)
    result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": SOURCE_USER})
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_URL: URL, CONF_API_TOKEN: "secret"}
    )
    assert result["errors"] == {"base": "unverified_server"}
    assert token_requests(aioclient_mock, URL) == []


async def test_mqtt_discovery_wrong_server(
    hass: HomeAssistant, aioclient_mock: AiohttpClientMocker
) -> None:
    """The URL answers with another server id."""
    aioclient_mock.get(f"{URL}/api/v1/info", json=info(server_id="other"))
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_MQTT}, data=mqtt_info(ANNOUNCE)
    )
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_API_TOKEN: "secret"}
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "wrong_server"


@pytest.mark.parametrize(
    ("payload", "topic"),
    [
        ("not json", "edge_inference/kitchen-nuc/announce"),
        ("", "edge_inference/kitchen-nuc/announce"),
        ({"server_id": "kitchen-nuc"}, "edge_inference/kitchen-nuc/announce"),
        ({**ANNOUNCE, "server_id": 7}, "edge_inference/kitchen-nuc/announce"),
        (ANNOUNCE, "edge_inference/another/announce"),
    ],
)
async def test_mqtt_discovery_invalid(hass: HomeAssistant, payload: Any, topic: str) -> None:
    """Unreadable announces abort."""
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_MQTT}, data=mqtt_info(payload, topic)
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "invalid_discovery_info"


async def test_mqtt_discovery_unsupported_protocol(hass: HomeAssistant) -> None:
    """A server speaking protocol 2 is not offered."""
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_MQTT}, data=mqtt_info({**ANNOUNCE, "protocol": 2})
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "unsupported_protocol"


async def test_mqtt_discovery_updates_url(
    hass: HomeAssistant, aioclient_mock: AiohttpClientMocker
) -> None:
    """A known server announcing a new URL moves its entry once it proved the token there."""
    entry = existing_entry(hass, url="http://127.0.0.1:1")
    issue_id = f"unverified_url_{entry.entry_id}"
    ir.async_create_issue(
        hass,
        DOMAIN,
        issue_id,
        is_fixable=False,
        severity=ir.IssueSeverity.WARNING,
        translation_key="unverified_url",
    )
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_MQTT}, data=mqtt_info(ANNOUNCE)
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "already_configured"
    assert entry.data[CONF_URL] == URL
    assert token_requests(aioclient_mock, URL) == []
    assert ir.async_get(hass).async_get_issue(DOMAIN, issue_id) is None


async def test_spoofed_announce_raises_an_issue(
    hass: HomeAssistant, aioclient_mock: AiohttpClientMocker
) -> None:
    """An announce of a known id with a URL whose server cannot prove the token: the entry
    stays, the token is not sent, the user gets a repair issue."""
    entry = existing_entry(hass)
    spoofed = "http://192.0.2.66:8765"
    mock_proof(aioclient_mock, url=spoofed, token="guess")
    result = await hass.config_entries.flow.async_init(
        DOMAIN,
        context={"source": SOURCE_MQTT},
        data=mqtt_info({**ANNOUNCE, "api": {"url": spoofed, "urls": [spoofed]}}),
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "unverified_server"
    assert entry.data == ENTRY_DATA
    assert token_requests(aioclient_mock, spoofed) == []
    issue = ir.async_get(hass).async_get_issue(DOMAIN, f"unverified_url_{entry.entry_id}")
    assert issue is not None
    assert issue.translation_placeholders == {"name": entry.title, "url": spoofed}


async def test_announced_url_not_answering(
    hass: HomeAssistant, aioclient_mock: AiohttpClientMocker
) -> None:
    """Nothing answers at the announced URL (after a few tries): the entry stays."""
    entry = existing_entry(hass)
    gone = "http://192.0.2.67:8765"
    aioclient_mock.post(f"{gone}/api/v1/trust/proof", exc=TimeoutError())
    with patch("custom_components.edge_inference.trust.CONNECT_RETRY_S", 0):
        result = await hass.config_entries.flow.async_init(
            DOMAIN,
            context={"source": SOURCE_MQTT},
            data=mqtt_info({**ANNOUNCE, "api": {"url": gone, "urls": [gone]}}),
        )
    assert result["reason"] == "cannot_connect"
    assert entry.data == ENTRY_DATA
    proofs = [c for c in aioclient_mock.mock_calls if str(c[1]).startswith(gone)]
    assert len(proofs) == 5


async def test_hassio_discovery(hass: HomeAssistant, mock_info: AiohttpClientMocker) -> None:
    """The add-on hands over host, port and token; the user only confirms."""
    result = await hass.config_entries.flow.async_init(
        DOMAIN,
        context={"source": SOURCE_HASSIO},
        data=hassio_info({"host": "127.0.0.1", "port": 8765, "token": "secret"}),
    )
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "hassio_confirm"
    result = await hass.config_entries.flow.async_configure(result["flow_id"], {})
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["data"] == ENTRY_DATA


async def test_hassio_discovery_updates_entry(
    hass: HomeAssistant, mock_info: AiohttpClientMocker
) -> None:
    """A known add-on with a new URL or token updates the entry."""
    entry = existing_entry(hass, url="http://old:1", api_token="old")
    result = await hass.config_entries.flow.async_init(
        DOMAIN,
        context={"source": SOURCE_HASSIO},
        data=hassio_info({"url": URL, "token": "secret"}),
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "already_configured"
    assert entry.data == ENTRY_DATA


async def test_hassio_discovery_without_a_proof(
    hass: HomeAssistant, aioclient_mock: AiohttpClientMocker
) -> None:
    """The add-on's token goes nowhere before the server at its URL proved it holds it."""
    aioclient_mock.clear_requests()
    mock_proof(aioclient_mock, token="another")
    aioclient_mock.get(f"{URL}/api/v1/info", json=INFO)
    result = await hass.config_entries.flow.async_init(
        DOMAIN,
        context={"source": SOURCE_HASSIO},
        data=hassio_info({"host": "127.0.0.1", "port": 8765, "token": "secret"}),
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "unverified_server"
    assert token_requests(aioclient_mock, URL) == []


async def test_hassio_discovery_invalid(hass: HomeAssistant) -> None:
    """A discovery without a token aborts."""
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_HASSIO}, data=hassio_info({"host": "x", "port": 1})
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "invalid_discovery_info"


async def test_hassio_discovery_cannot_connect(
    hass: HomeAssistant, aioclient_mock: AiohttpClientMocker
) -> None:
    """An add-on that does not answer aborts."""
    aioclient_mock.get(f"{URL}/api/v1/info", exc=TimeoutError())
    result = await hass.config_entries.flow.async_init(
        DOMAIN,
        context={"source": SOURCE_HASSIO},
        data=hassio_info({"host": "127.0.0.1", "port": 8765, "token": "secret"}),
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "cannot_connect"


async def test_hassio_confirm_cannot_connect(
    hass: HomeAssistant, aioclient_mock: AiohttpClientMocker
) -> None:
    """The add-on went away between discovery and confirmation."""
    aioclient_mock.get(f"{URL}/api/v1/info", json=INFO)
    result = await hass.config_entries.flow.async_init(
        DOMAIN,
        context={"source": SOURCE_HASSIO},
        data=hassio_info({"host": "127.0.0.1", "port": 8765, "token": "secret"}),
    )
    aioclient_mock.clear_requests()
    mock_proof(aioclient_mock)
    aioclient_mock.get(f"{URL}/api/v1/info", status=401)
    result = await hass.config_entries.flow.async_configure(result["flow_id"], {})
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "invalid_auth"


async def test_reauth(hass: HomeAssistant, aioclient_mock: AiohttpClientMocker) -> None:
    """A new token replaces the rejected one; a wrong one shows an error."""
    entry = existing_entry(hass)
    aioclient_mock.get(f"{URL}/api/v1/info", status=401)
    result = await entry.start_reauth_flow(hass)
    assert result["step_id"] == "reauth_confirm"
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_API_TOKEN: "still-wrong"}
    )
    assert result["errors"] == {"base": "unverified_server"}

    aioclient_mock.clear_requests()
    mock_proof(aioclient_mock, token="new")
    aioclient_mock.get(f"{URL}/api/v1/info", json=INFO)
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_API_TOKEN: "new"}
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "reauth_successful"
    assert entry.data[CONF_API_TOKEN] == "new"


async def test_reauth_wrong_server(
    hass: HomeAssistant, aioclient_mock: AiohttpClientMocker
) -> None:
    """The URL now answers as another server."""
    entry = existing_entry(hass)
    aioclient_mock.clear_requests()
    mock_proof(aioclient_mock, token="new", server_id="other")
    aioclient_mock.get(f"{URL}/api/v1/info", json=info(server_id="other"))
    result = await entry.start_reauth_flow(hass)
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_API_TOKEN: "new"}
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "wrong_server"


async def test_reconfigure(hass: HomeAssistant, aioclient_mock: AiohttpClientMocker) -> None:
    """URL and token change; an unreachable URL shows an error first.

    (Another host, not only another port: the HTTP mock matches URLs without the port.)"""
    entry = existing_entry(hass)
    aioclient_mock.post("http://10.0.0.9:9999/api/v1/trust/proof", exc=TimeoutError())
    mock_proof(aioclient_mock, url="http://127.0.0.2:8766", token="new")
    aioclient_mock.get("http://127.0.0.2:8766/api/v1/info", json=INFO)
    result = await entry.start_reconfigure_flow(hass)
    assert result["step_id"] == "reconfigure"
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_URL: "http://10.0.0.9:9999", CONF_API_TOKEN: "x"}
    )
    assert result["errors"] == {"base": "cannot_connect"}
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_URL: "http://127.0.0.2:8766", CONF_API_TOKEN: "new"}
    )
    assert result.get("errors") is None, (result, aioclient_mock.mock_calls)
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "reconfigure_successful"
    assert entry.data[CONF_URL] == "http://127.0.0.2:8766"
    assert entry.data[CONF_API_TOKEN] == "new"


async def test_reconfigure_wrong_server(
    hass: HomeAssistant, aioclient_mock: AiohttpClientMocker
) -> None:
    """Pointing an entry at another server aborts."""
    entry = existing_entry(hass)
    aioclient_mock.get(f"{URL}/api/v1/info", json=info(server_id="other"))
    result = await entry.start_reconfigure_flow(hass)
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_URL: URL, CONF_API_TOKEN: "secret"}
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "wrong_server"


async def test_setup_entry_is_called(
    hass: HomeAssistant, mock_info: AiohttpClientMocker, mock_setup_entry: AsyncMock
) -> None:
    """The created entry is set up."""
    result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": SOURCE_USER})
    await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_URL: URL, CONF_API_TOKEN: "secret"}
    )
    await hass.async_block_till_done()
    assert len(mock_setup_entry.mock_calls) == 1
