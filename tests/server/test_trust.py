"""POST /api/v1/trust/proof on the real server process: a proof of the token, without it."""

from __future__ import annotations

import secrets
from typing import Any

import aiohttp
import pytest

from inference_server.trust import proof
from tests.helpers.server_process import ServerProcess

from .conftest import TOKEN


async def ask(server: ServerProcess, body: Any) -> tuple[int, dict[str, Any]]:
    """The challenge as the integration sends it: no Authorization header."""
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{server.url}/api/v1/trust/proof", json=body) as resp,
    ):
        return resp.status, await resp.json()


async def test_proof_of_the_same_token(api_server: ServerProcess) -> None:
    """The answer is the HMAC of the caller's token; a fresh server nonce each time."""
    nonce = secrets.token_hex(16)
    status, body = await ask(api_server, {"nonce": nonce, "url": api_server.url})
    assert status == 200
    assert body["server_id"] == api_server.server_id
    expected = proof(TOKEN, nonce, body["nonce"], api_server.server_id, api_server.url)
    assert body["proof"] == expected
    assert (
        proof("another-token", nonce, body["nonce"], api_server.server_id, api_server.url)
        != (body["proof"])
    )
    assert TOKEN not in str(body)
    _, again = await ask(api_server, {"nonce": nonce, "url": api_server.url + "/"})
    assert again["nonce"] != body["nonce"]
    assert again["proof"] == proof(
        TOKEN, nonce, again["nonce"], api_server.server_id, api_server.url
    )


async def test_own_host_names_are_accepted(api_server: ServerProcess) -> None:
    """The server's address by another name on its port (what a user may type)."""
    url = api_server.url.replace("127.0.0.1", "localhost")
    status, body = await ask(api_server, {"nonce": "ab" * 16, "url": url})
    assert status == 200
    assert body["proof"] == proof(TOKEN, "ab" * 16, body["nonce"], api_server.server_id, url)


@pytest.mark.parametrize(
    ("body", "code"),
    [
        # A spoofed server relaying the challenge for its own URL gets nothing to pass off.
        ({"nonce": "ab" * 16, "url": "http://192.0.2.66:8765"}, "url_not_served"),
        ({"nonce": "ab" * 16, "url": "http://127.0.0.1:1"}, "url_not_served"),
        ({"nonce": "ab" * 16, "url": "ftp://127.0.0.1"}, "invalid_url"),
        ({"nonce": "ab" * 16}, "invalid_url"),
        ({"nonce": "short", "url": "http://127.0.0.1"}, "invalid_nonce"),
        ({"nonce": "AB" * 16, "url": "http://127.0.0.1"}, "invalid_nonce"),
        ({"url": "http://127.0.0.1"}, "invalid_nonce"),
        (["not", "an", "object"], "invalid_json"),
    ],
)
async def test_bad_challenges_are_400(api_server: ServerProcess, body: Any, code: str) -> None:
    status, answer = await ask(api_server, body)
    assert status == 400
    assert answer["error"]["code"] == code


async def test_not_json_is_400(api_server: ServerProcess) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{api_server.url}/api/v1/trust/proof", data=b"{nope") as resp,
    ):
        assert resp.status == 400
        assert (await resp.json())["error"]["code"] == "invalid_json"
