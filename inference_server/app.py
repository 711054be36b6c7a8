"""HTTP routes only: parse the request, call a pipeline, shape the answer (docs/protocol.md)."""

from __future__ import annotations

import base64
import json
import logging
import time
from typing import Any

from aiohttp import BodyPartReader, web

from . import __version__
from .auth import auth_middleware
from .backends.base import BackendError, UnknownModelError
from .batching import QueueFullError
from .errors import ApiError, Handler, error_middleware
from .pipelines.camera_registry import UnknownCameraError
from .pipelines.cameras import CameraSpec, CameraWorker
from .pipelines.vision.detector import DetectOptions, InvalidParameterError
from .pipelines.vision.preprocess import InvalidImageError
from .server import Server

_LOGGER = logging.getLogger(__name__)

SERVER_KEY: web.AppKey[Server] = web.AppKey("server", Server)
IMAGE_TYPES = ("image/jpeg", "image/png", "image/jpg", "application/octet-stream")
RETRY_AFTER_S = 1.0


def create_app(server: Server) -> web.Application:
    app = web.Application(
        client_max_size=server.settings.max_body_bytes,
        middlewares=[error_middleware, _metrics_middleware, auth_middleware(server.settings.token)],
    )
    app[SERVER_KEY] = server
    app.add_routes(
        [
            web.get("/api/v1/health", health),
            web.get("/api/v1/info", info),
            web.post("/api/v1/vision/detect", detect),
            web.get("/api/v1/cameras", list_cameras),
            web.put("/api/v1/cameras/{camera_id}", put_camera),
            web.get("/api/v1/cameras/{camera_id}", get_camera),
            web.delete("/api/v1/cameras/{camera_id}", delete_camera),
            web.get("/api/v1/cameras/{camera_id}/snapshot", camera_snapshot),
            web.get("/metrics", metrics),
        ]
    )

    async def on_startup(app: web.Application) -> None:
        await app[SERVER_KEY].start()

    async def on_cleanup(app: web.Application) -> None:
        await app[SERVER_KEY].stop()

    app.on_startup.append(on_startup)
    app.on_cleanup.append(on_cleanup)
    return app


@web.middleware
async def _metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    response: web.StreamResponse | None = None
    try:
        response = await handler(request)
        return response
    finally:
        route = request.match_info.route.resource
        name = route.canonical if route is not None else "unmatched"
        status = response.status if response is not None else 500
        request.app[SERVER_KEY].metrics.requests.labels(name, str(status)).inc()


async def health(request: web.Request) -> web.Response:
    server = request.app[SERVER_KEY]
    backends = server.backends()
    ready = [b.get("ready") for b in backends.values()]
    status = "ok" if all(ready) else "degraded"
    body = {"status": status, "version": __version__, "backends": backends}
    return web.json_response(body, status=200 if any(ready) else 503)


async def info(request: web.Request) -> web.Response:
    return web.json_response(request.app[SERVER_KEY].info())


async def metrics(request: web.Request) -> web.Response:
    body, content_type = request.app[SERVER_KEY].metrics.render()
    return web.Response(body=body, headers={"Content-Type": content_type})


async def detect(request: web.Request) -> web.Response:
    server = request.app[SERVER_KEY]
    query = request.query
    labels = [x for x in query.get("labels", "").split(",") if x.strip()]
    min_score = _float_param(query, "min_score", 0.25)
    annotate = query.get("annotate", "false").lower() in ("1", "true", "yes")
    data = await _read_image_body(request)
    try:
        options = DetectOptions(query.get("model") or None, tuple(labels), min_score, annotate)
        result = await server.vision.detect_bytes(data, options)
    except InvalidImageError as err:
        raise ApiError(400, "invalid_image", str(err)) from None
    except (InvalidParameterError, ValueError) as err:
        raise ApiError(400, "invalid_parameter", str(err)) from None
    except UnknownModelError as err:
        raise ApiError(404, "unknown_model", str(err)) from None
    except QueueFullError:
        raise ApiError(
            503, "queue_full", "Too many requests queued; retry shortly", retry_after=RETRY_AFTER_S
        ) from None
    except BackendError as err:
        raise ApiError(503, "backend_unavailable", str(err), retry_after=5) from None
    body: dict[str, Any] = {
        "model": result.model,
        "detections": [d.as_dict() for d in result.detections],
        "image": {"width": result.width, "height": result.height},
        "timing_ms": result.timing_ms,
    }
    if result.annotated_jpeg is not None:
        body["annotated_jpeg"] = base64.b64encode(result.annotated_jpeg).decode()
    return web.json_response(body)


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
        created = await server.cameras.register(camera_id, CameraSpec.parse(body))
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


def _float_param(query: Any, name: str, default: float) -> float:
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise ApiError(400, "invalid_parameter", f"{name} must be a number") from None


async def _read_image_body(request: web.Request) -> bytes:
    content_type = request.content_type.lower()
    if content_type.startswith("multipart/"):
        limit = request.app[SERVER_KEY].settings.max_body_bytes
        reader = await request.multipart()
        async for part in reader:
            if isinstance(part, BodyPartReader) and (
                part.filename or part.name in ("image", "file")
            ):
                data = bytearray()
                while chunk := await part.read_chunk():
                    data += chunk
                    if len(data) > limit:  # multipart streams past client_max_size
                        raise ApiError(413, "payload_too_large", "The image part is too large")
                return bytes(data)
        raise ApiError(400, "bad_request", "The multipart body has no image part")
    if content_type not in IMAGE_TYPES:
        raise ApiError(
            415,
            "unsupported_media_type",
            f"Send image/jpeg, image/png or multipart/form-data, not {content_type or 'nothing'}",
        )
    return await request.read()
