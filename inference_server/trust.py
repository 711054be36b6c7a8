"""Proof of the token without the token: `POST /api/v1/trust/proof` (no auth; docs/protocol.md).

Anyone on the shared MQTT broker can announce a server id with their own URL. Before the
integration sends its bearer token to a URL it learnt that way, it asks the server there for
a proof: HMAC-SHA256 keyed with the token over both nonces, the server id and that URL. Only
a server holding the same token can answer it, and the token never crosses the wire.

The URL is part of the proof and the server answers only for URLs that are its own, so a
spoofed server cannot relay the challenge to the real one and pass its answer off.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
import secrets
import socket
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from .errors import ApiError
from .openapi import document, errors, json_body
from .server import SERVER_KEY, Server

TRUST_PROOF = "/api/v1/trust/proof"
PROOF_CONTEXT = b"edge-inference-proof/1"
_NONCE_RE = re.compile(r"^[0-9a-f]{32,128}$")
_LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1"})


def proof(token: str, client_nonce: str, server_nonce: str, server_id: str, url: str) -> str:
    """The HMAC both sides compute; each field on its own line so none can run into another."""
    message = b"\n".join(
        [PROOF_CONTEXT, *(s.encode() for s in (client_nonce, server_nonce, server_id, url))]
    )
    return hmac.new(token.encode(), message, hashlib.sha256).hexdigest()


def add_trust_routes(app: web.Application) -> None:
    app.router.add_post(TRUST_PROOF, trust_proof)
    document(app, _PATHS)


async def trust_proof(request: web.Request) -> web.Response:
    try:
        body = await request.json()
    except ValueError as err:
        raise ApiError(400, "invalid_json", "The body must be a JSON object") from err
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_json", "The body must be a JSON object")
    nonce, url = body.get("nonce"), body.get("url")
    if not isinstance(nonce, str) or not _NONCE_RE.match(nonce):
        raise ApiError(400, "invalid_nonce", "nonce: 32 to 128 lowercase hex digits")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise ApiError(400, "invalid_url", "url: the http(s) base URL you reached this server at")
    server = request.app[SERVER_KEY]
    url = url.rstrip("/")
    if not _is_own_url(server, url):
        raise ApiError(
            400,
            "url_not_served",
            "This server does not serve that URL (set --advertise-url to the URL clients use)",
        )
    server_nonce = secrets.token_hex(16)
    return web.json_response(
        {
            "server_id": server.server_id,
            "nonce": server_nonce,
            "proof": proof(server.settings.token, nonce, server_nonce, server.server_id, url),
        }
    )


def _is_own_url(server: Server, url: str) -> bool:
    """The advertised URL(s), or this host by address or name on the port we listen on."""
    advertised = server.announce()["api"]["urls"]
    if url in advertised:
        return True
    try:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return False
    host = (parts.hostname or "").lower()
    if port != server.settings.port or not host:
        return False
    return host in _own_hosts(server)


def _own_hosts(server: Server) -> set[str]:
    hosts = set(_LOOPBACK)
    for url in server.announce()["api"]["urls"]:
        if name := urlsplit(url).hostname:
            hosts.add(name.lower())
    if server.settings.host not in ("", "0.0.0.0", "::"):
        hosts.add(server.settings.host.lower())
    name = socket.gethostname().lower()  # no getfqdn: it may wait on DNS
    hosts |= {name, f"{name}.local"}
    return {_normal(h) for h in hosts}


def _normal(host: str) -> str:
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return host


_PROOF_RESPONSE: dict[str, Any] = {
    "type": "object",
    "required": ["server_id", "nonce", "proof"],
    "properties": {
        "server_id": {"type": "string"},
        "nonce": {"type": "string", "description": "the server's own nonce (hex)"},
        "proof": {
            "type": "string",
            "description": "hex HMAC-SHA256(token, 'edge-inference-proof/1' LF client nonce "
            "LF server nonce LF server_id LF url)",
        },
    },
}
_PATHS = {
    TRUST_PROOF: {
        "post": {
            "summary": "Prove this server holds the caller's token, without the token",
            "operationId": "trustProof",
            "security": [],
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "required": ["nonce", "url"],
                            "properties": {
                                "nonce": {"type": "string", "pattern": "^[0-9a-f]{32,128}$"},
                                "url": {"type": "string"},
                            },
                        }
                    }
                },
            },
            "responses": {"200": json_body(_PROOF_RESPONSE), **errors(400)},
        }
    }
}
