"""Check that the server at a URL holds our token before the token goes there.

Anyone who can publish on the MQTT broker can announce a known server id with a URL of
their own. The token therefore goes to no URL until the server there has answered a
challenge (`POST /api/v1/trust/proof`, no token sent): HMAC-SHA256 keyed with the token
over our nonce, its nonce, its server id and the URL we asked. docs/protocol.md, "Trust".
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import re
import secrets

import aiohttp

from .client import API, REQUEST_TIMEOUT, CannotConnect, EdgeInferenceError

PROOF_PATH = f"{API}/trust/proof"
PROOF_CONTEXT = b"edge-inference-proof/1"
_HEX_RE = re.compile(r"^[0-9a-f]{32,128}$")
# A server announces itself on MQTT a moment before its HTTP port answers.
CONNECT_ATTEMPTS = 5
CONNECT_RETRY_S = 2.0


class UnverifiedServer(EdgeInferenceError):
    """The server at the URL did not prove that it holds the token."""


def proof(token: str, client_nonce: str, server_nonce: str, server_id: str, url: str) -> str:
    """The HMAC both sides compute; each field on its own line."""
    message = b"\n".join(
        [PROOF_CONTEXT, *(s.encode() for s in (client_nonce, server_nonce, server_id, url))]
    )
    return hmac.new(token.encode(), message, hashlib.sha256).hexdigest()


async def async_verify_server(
    session: aiohttp.ClientSession, url: str, token: str, server_id: str | None = None
) -> str:
    """Return the server id proven at `url`; the token is not sent.

    Raises CannotConnect when nothing (or a broken server) answers there, and
    UnverifiedServer when the answer is not a proof of this token (and this server id).
    """
    url = url.rstrip("/")
    nonce = secrets.token_hex(16)
    try:
        async with session.post(
            f"{url}{PROOF_PATH}",
            json={"nonce": nonce, "url": url},
            timeout=REQUEST_TIMEOUT,
            allow_redirects=False,
        ) as resp:
            status = resp.status
            body = await resp.read()
    except (TimeoutError, aiohttp.ClientError) as err:
        raise CannotConnect(f"trust proof at {url}: {err!r}") from err
    if status >= 500:
        raise CannotConnect(f"trust proof at {url}: HTTP {status}")
    try:
        answer = json.loads(body) if status == 200 else None
    except ValueError:
        answer = None
    if status != 200 or not isinstance(answer, dict):
        raise UnverifiedServer(f"{url} gave no proof (HTTP {status})")
    proven_id, server_nonce, given = (
        answer.get("server_id"),
        answer.get("nonce"),
        answer.get("proof"),
    )
    if not (
        isinstance(proven_id, str)
        and isinstance(server_nonce, str)
        and _HEX_RE.match(server_nonce)
        and isinstance(given, str)
    ):
        raise UnverifiedServer(f"{url} gave a malformed proof")
    expected = proof(token, nonce, server_nonce, proven_id, url)
    if not hmac.compare_digest(expected, given):
        raise UnverifiedServer(f"the server at {url} does not hold this token")
    if server_id is not None and proven_id != server_id:
        raise UnverifiedServer(f"{url} is server {proven_id}, not {server_id}")
    return proven_id


async def async_verify_server_retrying(
    session: aiohttp.ClientSession, url: str, token: str, server_id: str | None = None
) -> str:
    """`async_verify_server`, retried a few times while nothing answers at the URL yet."""
    for attempt in range(CONNECT_ATTEMPTS):
        try:
            return await async_verify_server(session, url, token, server_id)
        except CannotConnect:
            if attempt == CONNECT_ATTEMPTS - 1:
                raise
            await asyncio.sleep(CONNECT_RETRY_S)
    raise AssertionError("unreachable")  # pragma: no cover
