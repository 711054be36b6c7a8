"""A spoofed retained announce on the real broker never gets the token (docs/protocol.md).

Real Mosquitto, the real server, HA 2026.10. The attacker is anyone who can publish on the
broker: it announces the real server's id with the URL of its own HTTP server (an aiohttp
app in this test: the attacker's program, nothing of ours is faked). Its best move is to
relay our challenge to the real server, rewritten for the real URL, and pass the answer off.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from homeassistant.components import mqtt
from homeassistant.const import CONF_URL
from homeassistant.core import HomeAssistant
from homeassistant.helpers import issue_registry as ir
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.edge_inference.const import DOMAIN, announce_topic
from tests.helpers.broker import free_port
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
    server_get,
    state,
)

pytestmark = [requires_server, pytest.mark.usefixtures("socket_enabled")]


class Impostor:
    """The attacker's HTTP server: records every request, relays the trust challenge."""

    def __init__(self, real_url: str) -> None:
        self.real_url = real_url
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.relayed: list[dict[str, Any]] = []
        self._runner: web.AppRunner | None = None

    async def _any(self, request: web.Request) -> web.Response:
        self.requests.append((request.method, request.path, dict(request.headers)))
        if request.path == "/api/v1/trust/proof":
            challenge = await request.json()
            # Relay it to the real server, for the URL that server will answer for.
            async with (
                aiohttp.ClientSession() as session,
                session.post(
                    f"{self.real_url}/api/v1/trust/proof",
                    json={**challenge, "url": self.real_url},
                ) as resp,
            ):
                answer = await resp.json()
            self.relayed.append(answer)
            return web.json_response(answer, status=resp.status)
        return web.json_response({"error": {"code": "x", "message": "gotcha"}}, status=500)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._any)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def tokens_seen(self) -> list[str]:
        return [
            headers["Authorization"]
            for _, _, headers in self.requests
            if "Authorization" in headers
        ]


@pytest.fixture
async def impostor(server: ServerProcess) -> AsyncGenerator[Impostor]:
    impostor = Impostor(server.url)
    await impostor.start()
    yield impostor
    await impostor.stop()


async def test_spoofed_announce_gets_no_token(
    hass: HomeAssistant,
    real_mqtt: MockConfigEntry,
    server: ServerProcess,
    impostor: Impostor,
) -> None:
    """The entry stays on the real server, a repair issue appears, the impostor gets nothing."""
    await async_setup_test_cameras(hass)
    entry = await async_discover_and_confirm(hass)
    await async_add_pipeline(hass, entry, "camera.still", "snapshot")
    await async_wait_for(hass, lambda: state(hass, "sensor.still_person_count") == str(PEOPLE))
    real_announce = await hass.async_add_executor_job(server_get, server, "/info")
    runtime = entry.runtime_data

    # The attacker's retained announce: the real id and name, its own URL.
    spoofed = {
        **real_announce,
        "name": "Spoofed name",
        "api": {"url": impostor.url, "urls": [impostor.url]},
    }
    await mqtt.async_publish(
        hass, announce_topic(SERVER_ID), json.dumps(spoofed), qos=1, retain=True
    )
    issue_id = f"unverified_url_{entry.entry_id}"
    await async_wait_for(
        hass, lambda: ir.async_get(hass).async_get_issue(DOMAIN, issue_id) is not None
    )
    issue = ir.async_get(hass).async_get_issue(DOMAIN, issue_id)
    assert issue is not None
    assert issue.translation_placeholders == {"name": entry.title, "url": impostor.url}

    # The challenge reached the impostor and was relayed; the real server's proof was for
    # its own URL, useless for the impostor's. No token ever went there.
    assert [path for _, path, _ in impostor.requests] == ["/api/v1/trust/proof"]
    assert impostor.relayed
    assert impostor.relayed[0]["server_id"] == SERVER_ID
    assert impostor.tokens_seen == []
    assert all(TOKEN not in json.dumps(h) for _, _, h in impostor.requests)

    # The entry did not move or reload, and its server name was not taken over.
    assert entry.data[CONF_URL] == server.url
    assert entry.runtime_data is runtime
    assert "Spoofed" not in entry.runtime_data.coordinator.data.info.get("name", "")
    assert not hass.config_entries.flow.async_progress_by_handler(DOMAIN)
    # The action still goes to the real server.
    detections = await async_detect_people_on_still(hass)
    assert len([d for d in detections if d["score"] >= 0.5]) == PEOPLE
    assert impostor.tokens_seen == []

    assert await hass.config_entries.async_unload(entry.entry_id)
    await hass.async_block_till_done()
