"""The OpenAPI description stays true: every registered route is described, and only those."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
from openapi_spec_validator import validate

from inference_server.app import create_app
from inference_server.config import Settings
from inference_server.openapi import build_document, operation_paths
from inference_server.server import Server
from tests.helpers.server_process import ServerProcess

from .conftest import TOKEN

METHODS = {"get", "put", "post", "delete", "patch", "head", "options"}


def described_operations(spec: dict[str, Any]) -> set[tuple[str, str]]:
    return {
        (method.upper(), path)
        for path, item in spec["paths"].items()
        for method in item
        if method in METHODS
    }


def test_every_route_is_described_and_every_description_is_a_route(tmp_path: Path) -> None:
    # The app as create_app builds it, with every module's routes (nothing is started).
    app = create_app(Server(Settings(token=TOKEN, data_dir=tmp_path, model_repo=tmp_path)))
    spec = build_document(app)
    registered = operation_paths(app)
    described = described_operations(spec)
    assert registered - described == set(), "routes without an OpenAPI description"
    assert described - registered == set(), "OpenAPI operations without a route"
    assert {("POST", "/api/v1/vision/detect"), ("GET", "/api/v1/openapi.json")} <= registered
    validate(spec)  # a valid OpenAPI 3 document


def test_operations_are_complete(tmp_path: Path) -> None:
    app = create_app(Server(Settings(token=TOKEN, data_dir=tmp_path, model_repo=tmp_path)))
    spec = build_document(app)
    ids = []
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            ids.append(operation["operationId"])
            assert operation.get("summary"), (method, path)
            # a success answer: 2xx, or 101 for a WebSocket upgrade
            success = [c for c in operation["responses"] if c.startswith("2") or c == "101"]
            assert success, (method, path)
            if operation.get("security") != []:  # every route but health needs the token
                assert "401" in operation["responses"], (method, path)
            for name in path.replace("}", "{").split("{")[1::2]:
                params = [p["name"] for p in operation.get("parameters", []) if p["in"] == "path"]
                assert name in params, (method, path, name)
    assert len(ids) == len(set(ids)), "operationIds must be unique"


async def test_the_running_server_serves_its_description(api_server: ServerProcess) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.get(api_server.url + "/api/v1/openapi.json") as resp:
            assert resp.status == 401  # like every route but health
        async with session.get(
            api_server.url + "/api/v1/openapi.json",
            headers={"Authorization": f"Bearer {TOKEN}"},
        ) as resp:
            assert resp.status == 200
            spec = await resp.json()
    assert spec["openapi"].startswith("3.")
    assert "/api/v1/cameras/{camera_id}" in spec["paths"]
    validate(spec)
