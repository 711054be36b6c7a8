"""Bearer-token auth for every route but health."""

from __future__ import annotations

import hmac

from aiohttp import web

from .errors import ApiError, Handler

# The trust proof answers before the caller may send its token (inference_server/trust.py).
PUBLIC_PATHS = frozenset({"/api/v1/health", "/api/v1/trust/proof"})


def auth_middleware(token: str) -> web.middleware:  # type: ignore[valid-type]
    expected = f"Bearer {token}".encode()

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path not in PUBLIC_PATHS:
            given = request.headers.get("Authorization", "").encode()
            # Constant-time compare: the token is the only thing guarding the LAN API.
            if not hmac.compare_digest(given, expected):
                raise ApiError(401, "unauthorized", "Missing or wrong bearer token")
        return await handler(request)

    return middleware
