"""HTTP routes for camera registrations (stream mode), and their OpenAPI description."""

from __future__ import annotations

import json
import time
from typing import Any

from aiohttp import web

from .backends.base import UnknownModelError
from .errors import ApiError
from .openapi import document, errors, json_body
from .pipelines.camera_registry import UnknownCameraError
from .pipelines.cameras import CameraSpec, CameraWorker, SourceNotAllowedError
from .server import SERVER_KEY

CAMERAS = "/api/v1/cameras"
CAMERA = "/api/v1/cameras/{camera_id}"
SNAPSHOT = "/api/v1/cameras/{camera_id}/snapshot"


def add_camera_routes(app: web.Application) -> None:
    app.add_routes(
        [
            web.get(CAMERAS, list_cameras),
            web.put(CAMERA, put_camera),
            web.get(CAMERA, get_camera),
            web.delete(CAMERA, delete_camera),
            web.get(SNAPSHOT, camera_snapshot),
        ]
    )
    document(app, _PATHS)


async def list_cameras(request: web.Request) -> web.Response:
    workers = request.app[SERVER_KEY].cameras.workers
    return web.json_response({"cameras": [w.state() for w in workers.values()]})


async def put_camera(request: web.Request) -> web.Response:
    server = request.app[SERVER_KEY]
    camera_id = request.match_info["camera_id"]
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ApiError(400, "invalid_json", "The body is not valid JSON") from None
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_json", "The body must be a JSON object")
    try:
        spec = CameraSpec.parse(body, server.cameras.media_root)
        created = await server.cameras.register(camera_id, spec)
    except SourceNotAllowedError as err:
        raise ApiError(400, "source_not_allowed", str(err)) from None
    except UnknownModelError as err:
        raise ApiError(404, "unknown_model", str(err)) from None
    except ValueError as err:
        raise ApiError(400, "invalid_parameter", str(err)) from None
    return web.json_response(server.cameras.get(camera_id).state(), status=201 if created else 200)


async def get_camera(request: web.Request) -> web.Response:
    return web.json_response(_camera(request).state())


async def delete_camera(request: web.Request) -> web.Response:
    camera_id = request.match_info["camera_id"]
    try:
        await request.app[SERVER_KEY].cameras.remove(camera_id)
    except UnknownCameraError:
        raise ApiError(404, "unknown_camera", f"No camera {camera_id!r}") from None
    return web.Response(status=204)


async def camera_snapshot(request: web.Request) -> web.Response:
    worker = _camera(request)
    snapshot = await worker.snapshot()
    if snapshot is None:
        raise ApiError(404, "no_snapshot", "No frame has been processed yet")
    return web.Response(
        body=snapshot,
        content_type="image/jpeg",
        headers={
            "Last-Modified": time.strftime(
                "%a, %d %b %Y %H:%M:%S GMT", time.gmtime(worker.last_frame_time or 0)
            )
        },
    )


def _camera(request: web.Request) -> CameraWorker:
    camera_id = request.match_info["camera_id"]
    try:
        return request.app[SERVER_KEY].cameras.get(camera_id)
    except UnknownCameraError:
        raise ApiError(404, "unknown_camera", f"No camera {camera_id!r}") from None


_CAMERA_ID = {
    "name": "camera_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": "^[A-Za-z0-9_.-]{1,64}$"},
}
_SPEC_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["source"],
    "properties": {
        "source": {
            "type": "string",
            "description": "rtsp://, http(s):// MJPEG/HLS, or a file under --media-root",
        },
        "fps": {"type": "number", "minimum": 0.1, "maximum": 30},
        "model": {"type": "string", "nullable": True},
        "labels": {"type": "array", "items": {"type": "string"}},
        "min_score": {"type": "number", "minimum": 0, "maximum": 1},
        "name": {"type": "string"},
        "end_after": {"type": "number", "minimum": 0},
        "update_interval": {"type": "number", "minimum": 0},
        "motion_threshold": {
            "type": "number",
            "minimum": 0,
            "maximum": 1,
            "description": "share of the frame that must change for a detection to run "
            "(default 0.002; 0: every frame)",
        },
        "detect_source": {
            "type": "string",
            "nullable": True,
            "description": "a lower-resolution stream of the same camera, read for motion "
            "and detection instead of source",
        },
    },
}
_STATE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["camera_id", "source", "running", "frames", "counts"],
    "properties": {
        "camera_id": {"type": "string"},
        "source": {"type": "string", "description": "with any credentials replaced by ***"},
        "running": {"type": "boolean"},
        "frames": {"type": "integer"},
        "frames_skipped": {"type": "integer", "description": "frames gated out: no motion"},
        "detect_source": {"type": "string", "nullable": True},
        "last_frame_time": {"type": "number", "nullable": True},
        "error": {"type": "string", "nullable": True},
        "counts": {"type": "object", "additionalProperties": {"type": "integer"}},
    },
}
_PATHS: dict[str, dict[str, Any]] = {
    CAMERAS: {
        "get": {
            "summary": "Every registered camera",
            "operationId": "listCameras",
            "responses": {
                "200": json_body({"type": "object", "properties": {"cameras": {"type": "array"}}}),
                **errors(401),
            },
        }
    },
    CAMERA: {
        "put": {
            "summary": "Register or replace a camera (stream mode)",
            "operationId": "putCamera",
            "parameters": [_CAMERA_ID],
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": _SPEC_SCHEMA}},
            },
            "responses": {
                "200": json_body(_STATE_SCHEMA, "Replaced"),
                "201": json_body(_STATE_SCHEMA, "Created"),
                **errors(400, 401, 404, 413),
            },
        },
        "get": {
            "summary": "A camera's state",
            "operationId": "getCamera",
            "parameters": [_CAMERA_ID],
            "responses": {"200": json_body(_STATE_SCHEMA), **errors(401, 404)},
        },
        "delete": {
            "summary": "Stop and forget a camera",
            "operationId": "deleteCamera",
            "parameters": [_CAMERA_ID],
            "responses": {"204": {"description": "Removed"}, **errors(401, 404)},
        },
    },
    SNAPSHOT: {
        "get": {
            "summary": "The newest processed frame with its tracks drawn",
            "operationId": "cameraSnapshot",
            "parameters": [_CAMERA_ID],
            "responses": {
                "200": {"description": "JPEG", "content": {"image/jpeg": {"schema": {}}}},
                **errors(401, 404),
            },
        }
    },
}
