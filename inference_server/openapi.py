"""The OpenAPI 3 description of the HTTP API, served at /api/v1/openapi.json.

Each route module describes its own routes next to where it registers them:

    app.add_routes([web.post("/api/v1/speech/transcribe", transcribe)])
    document(app, {"/api/v1/speech/transcribe": {"post": {...an OpenAPI operation...}}})

tests/server/test_openapi.py fails when a route is registered without a description (or the
other way round), and tests/server/test_fuzz.py fuzzes every operation described here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from . import __version__

OPENAPI_PATH = "/api/v1/openapi.json"
PathItems = Mapping[str, Mapping[str, Any]]
OPENAPI_PATHS: web.AppKey[dict[str, dict[str, Any]]] = web.AppKey("openapi_paths", dict)

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
        }
    },
}
_ERROR_TEXT = {
    400: "Bad request: a parameter or the body cannot be used",
    401: "Missing or wrong bearer token",
    404: "Not found",
    409: "Conflicts with what the server holds (e.g. an observation older than the last)",
    413: "The body or the image is too large",
    415: "Unsupported content type",
    503: "Overloaded or a backend is down; retry after Retry-After seconds",
}


def document(app: web.Application, paths: PathItems) -> None:
    """Add a route module's OpenAPI path items (path → method → operation) to the app's spec."""
    if OPENAPI_PATHS not in app:
        app[OPENAPI_PATHS] = {}
    registry = app[OPENAPI_PATHS]
    for path, item in paths.items():
        registry.setdefault(path, {}).update(item)


def errors(*statuses: int) -> dict[str, Any]:
    """`responses` entries for error statuses, all in the one JSON error shape."""
    return {str(s): {"$ref": f"#/components/responses/Error{s}"} for s in statuses}


def json_body(schema: Mapping[str, Any], description: str = "OK") -> dict[str, Any]:
    """A `responses` entry with a JSON body."""
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def operation_paths(app: web.Application) -> set[tuple[str, str]]:
    """(METHOD, path template) of every route registered on the app (HEAD twins left out)."""
    found = set()
    for route in app.router.routes():
        if route.method in ("HEAD", "*") or route.resource is None:
            continue
        # aiohttp writes `{name:regex}`; OpenAPI only knows `{name}`.
        template = re.sub(r"\{(\w+):[^}]*\}", r"{\1}", route.resource.canonical)
        found.add((route.method, template))
    return found


def build_document(app: web.Application) -> dict[str, Any]:
    paths = app.get(OPENAPI_PATHS, {})
    responses = {
        f"Error{status}": {
            "description": text,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
            **(
                {"headers": {"Retry-After": {"schema": {"type": "integer"}}}}
                if status == 503
                else {}
            ),
        }
        for status, text in _ERROR_TEXT.items()
    }
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "edge_inference",
            "version": __version__,
            "description": "Local AI for Home Assistant (docs/protocol.md).",
        },
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "paths": {path: dict(paths[path]) for path in sorted(paths)},
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {"Error": ERROR_SCHEMA},
            "responses": responses,
        },
    }


async def _openapi(request: web.Request) -> web.Response:
    return web.json_response(build_document(request.app))


def add_openapi_routes(app: web.Application) -> None:
    app.router.add_get(OPENAPI_PATH, _openapi)
    document(
        app,
        {
            OPENAPI_PATH: {
                "get": {
                    "summary": "This OpenAPI description",
                    "operationId": "openapi",
                    "responses": {"200": json_body({"type": "object"}), **errors(401)},
                }
            }
        },
    )
