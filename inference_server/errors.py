"""The one JSON error shape of the HTTP API, and the middleware that guarantees it."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

_LOGGER = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ApiError(Exception):
    """An error the caller should see: status, machine code, human message."""

    def __init__(
        self, status: int, code: str, message: str, *, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after


def error_response(
    status: int, code: str, message: str, *, retry_after: float | None = None
) -> web.Response:
    headers = {}
    if retry_after is not None:
        headers["Retry-After"] = str(max(1, round(retry_after)))
    if status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    return web.json_response(
        {"error": {"code": code, "message": message}}, status=status, headers=headers
    )


# aiohttp's own HTTP errors (404 route, 405, 413 body too large) mapped to our codes.
_HTTP_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as err:
        return error_response(err.status, err.code, err.message, retry_after=err.retry_after)
    except web.HTTPException as err:
        if err.status < 400:
            raise
        code = _HTTP_CODES.get(err.status, "http_error")
        message = err.reason
        if err.status == 413:
            message = "Request body is larger than the server accepts"
        return error_response(err.status, code, message)
    except Exception:
        _LOGGER.exception("Unhandled error on %s %s", request.method, request.path)
        return error_response(500, "internal_error", "Internal server error (see server log)")
