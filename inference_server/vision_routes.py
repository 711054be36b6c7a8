"""HTTP route for object detection on an uploaded image, and its OpenAPI description."""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError

from .backends.base import BackendError, UnknownModelError
from .batching import QueueFullError
from .errors import ApiError
from .openapi import document, errors, json_body
from .pipelines.vision.bounded_decode import (
    ImageTooLargeError,
    decode_bounded,
    read_header,
    reduction_for,
)
from .pipelines.vision.detector import DetectOptions, InvalidParameterError
from .pipelines.vision.preprocess import InvalidImageError
from .server import SERVER_KEY

_LOGGER = logging.getLogger(__name__)

IMAGE_TYPES = ("image/jpeg", "image/png", "image/jpg", "application/octet-stream")
RETRY_AFTER_S = 1.0
DETECT_PATH = "/api/v1/vision/detect"


def add_vision_routes(app: web.Application) -> None:
    app.router.add_post(DETECT_PATH, detect)
    document(app, {DETECT_PATH: {"post": _DETECT_SPEC}})


async def detect(request: web.Request) -> web.Response:
    server = request.app[SERVER_KEY]
    settings = server.settings
    query = request.query
    labels = [x for x in query.get("labels", "").split(",") if x.strip()]
    min_score = _float_param(query, "min_score", 0.25)
    annotate = query.get("annotate", "false").lower() in ("1", "true", "yes")
    options = DetectOptions(query.get("model") or None, tuple(labels), min_score, annotate)
    with _api_errors():  # the parameters are checked before the body is read
        if not 0.0 <= min_score <= 1.0:  # also NaN
            raise InvalidParameterError("min_score must be between 0 and 1")
        config = server.vision.resolve(options.model)
        server.vision.label_filter(config, options.labels)
    with server.uploads.claim():
        if (request.content_length or 0) > settings.max_body_bytes:
            raise ApiError(
                413, "payload_too_large", "Request body is larger than the server accepts"
            )
        data = await _read_image_body(request)
        with _api_errors():
            async with asyncio.timeout(settings.request_timeout):
                started = time.perf_counter()
                header = read_header(data, int(settings.max_image_mp * 1_000_000))
                height, width = config.inputs[0].dims[-2:]
                reduction = reduction_for(header, width, height) if width > 0 < height else 1
                image = await asyncio.get_running_loop().run_in_executor(
                    None, decode_bounded, data, header, reduction
                )
                del data  # the body is not needed past decoding
                decoded = time.perf_counter()
                result = await server.vision.detect_image(image, options)
    result.timing_ms["decode"] = round((decoded - started) * 1000, 2)
    body: dict[str, Any] = {
        "model": result.model,
        "detections": [d.as_dict() for d in result.detections],
        # boxes are relative, so a reduced decode changes nothing but the pixels we spent
        "image": {"width": header.width, "height": header.height},
        "timing_ms": result.timing_ms,
    }
    if result.annotated_jpeg is not None:
        body["annotated_jpeg"] = base64.b64encode(result.annotated_jpeg).decode()
    return web.json_response(body)


@contextmanager
def _api_errors() -> Iterator[None]:
    """The pipeline's exceptions as the API's errors; backend details stay in the log."""
    try:
        yield
    except InvalidImageError as err:
        raise ApiError(400, "invalid_image", str(err)) from None
    except ImageTooLargeError as err:
        raise ApiError(413, "image_too_large", str(err)) from None
    except (InvalidParameterError, ValueError) as err:
        raise ApiError(400, "invalid_parameter", str(err)) from None
    except UnknownModelError as err:
        raise ApiError(404, "unknown_model", str(err)) from None
    except QueueFullError:
        raise ApiError(
            503, "queue_full", "Too many requests queued; retry shortly", retry_after=RETRY_AFTER_S
        ) from None
    except TimeoutError:
        raise ApiError(
            503, "timeout", "The request took longer than the server allows", retry_after=5
        ) from None
    except BackendError as err:
        # The backend's own text may name hosts and paths: log it, tell the caller less.
        _LOGGER.warning("Detection failed: %s", err)
        raise ApiError(
            503, "backend_unavailable", "The model backend is unavailable", retry_after=5
        ) from None


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
        try:
            return await _read_multipart_image(request)
        except (ValueError, LookupError, AssertionError, HttpProcessingError):
            # aiohttp's reader raises these for a missing or wrong boundary, a cut body...
            raise ApiError(400, "bad_request", "The multipart body is malformed") from None
    if content_type not in IMAGE_TYPES:
        raise ApiError(
            415,
            "unsupported_media_type",
            f"Send image/jpeg, image/png or multipart/form-data, not {content_type or 'nothing'}",
        )
    return await request.read()


async def _read_multipart_image(request: web.Request) -> bytes:
    limit = request.app[SERVER_KEY].settings.max_body_bytes
    reader = await request.multipart()
    async for part in reader:
        if isinstance(part, BodyPartReader) and (part.filename or part.name in ("image", "file")):
            data = bytearray()
            while chunk := await part.read_chunk():
                data += chunk
                if len(data) > limit:  # multipart streams past client_max_size
                    raise ApiError(413, "payload_too_large", "The image part is too large")
            return bytes(data)
    raise ApiError(400, "bad_request", "The multipart body has no image part")


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
