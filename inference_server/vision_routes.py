"""HTTP route for object detection on an uploaded image, and its OpenAPI description."""

from __future__ import annotations

import base64
from typing import Any

from aiohttp import BodyPartReader, web

from .backends.base import BackendError, UnknownModelError
from .batching import QueueFullError
from .errors import ApiError
from .openapi import document, errors, json_body
from .pipelines.vision.detector import DetectOptions, InvalidParameterError
from .pipelines.vision.preprocess import InvalidImageError
from .server import SERVER_KEY

IMAGE_TYPES = ("image/jpeg", "image/png", "image/jpg", "application/octet-stream")
RETRY_AFTER_S = 1.0
DETECT_PATH = "/api/v1/vision/detect"


def add_vision_routes(app: web.Application) -> None:
    app.router.add_post(DETECT_PATH, detect)
    document(app, {DETECT_PATH: {"post": _DETECT_SPEC}})


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


_BINARY = {"schema": {"type": "string", "format": "binary"}}
_BOX = {"type": "array", "items": {"type": "number"}, "minItems": 4, "maxItems": 4}
_DETECTION = {
    "type": "object",
    "required": ["label", "score", "box"],
    "properties": {
        "label": {"type": "string"},
        "score": {"type": "number"},
        "box": {**_BOX, "description": "[x1, y1, x2, y2] in 0..1 of the image"},
    },
}
_DETECT_SPEC: dict[str, Any] = {
    "summary": "Detect objects in a JPEG or PNG image",
    "operationId": "detect",
    "parameters": [
        {"name": "model", "in": "query", "schema": {"type": "string"}},
        {
            "name": "labels",
            "in": "query",
            "description": "comma-separated labels to keep",
            "schema": {"type": "string"},
        },
        {
            "name": "min_score",
            "in": "query",
            "schema": {"type": "number", "minimum": 0, "maximum": 1},
        },
        {"name": "annotate", "in": "query", "schema": {"type": "boolean"}},
    ],
    "requestBody": {
        "required": True,
        "content": {
            "image/jpeg": _BINARY,
            "image/png": _BINARY,
            "application/octet-stream": _BINARY,
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"image": {"type": "string", "format": "binary"}},
                }
            },
        },
    },
    "responses": {
        "200": json_body(
            {
                "type": "object",
                "required": ["model", "detections", "image", "timing_ms"],
                "properties": {
                    "model": {"type": "string"},
                    "detections": {"type": "array", "items": _DETECTION},
                    "image": {
                        "type": "object",
                        "properties": {
                            "width": {"type": "integer"},
                            "height": {"type": "integer"},
                        },
                    },
                    "timing_ms": {"type": "object", "additionalProperties": {"type": "number"}},
                    "annotated_jpeg": {"type": "string", "format": "byte"},
                },
            }
        ),
        **errors(400, 401, 404, 413, 415, 503),
    },
}
