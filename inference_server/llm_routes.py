"""HTTP routes of the OpenAI-compatible LLM proxy (/v1/chat/completions, /v1/models)."""

from __future__ import annotations

import contextlib
import json
from typing import Any

from aiohttp import web

from .errors import ApiError
from .openapi import document, errors, json_body
from .pipelines.llm import LlmError, Priority, StreamBroken
from .server import SERVER_KEY

CHAT_PATH = "/v1/chat/completions"
MODELS_PATH = "/v1/models"
# Set by the integration: `voice` for Assist, `batch` for AI Task; absent means interactive.
PRIORITY_HEADER = "X-Edge-Inference-Priority"
UPSTREAM_HEADER = "X-Edge-Inference-Upstream"


def add_llm_routes(app: web.Application) -> None:
    app.router.add_post(CHAT_PATH, chat_completions)
    app.router.add_get(MODELS_PATH, list_models)
    document(app, {CHAT_PATH: {"post": _CHAT_SPEC}, MODELS_PATH: {"get": _MODELS_SPEC}})


async def list_models(request: web.Request) -> web.Response:
    return web.json_response({"object": "list", "data": request.app[SERVER_KEY].llm.models()})


async def chat_completions(request: web.Request) -> web.StreamResponse:
    llm = request.app[SERVER_KEY].llm
    body = await _chat_body(request)
    try:
        priority = Priority.parse(request.headers.get(PRIORITY_HEADER))
    except ValueError as err:
        raise ApiError(400, "invalid_parameter", f"{PRIORITY_HEADER}: {err}") from None
    try:
        reply = await llm.open(body, priority)
        if not body.get("stream"):
            data = await reply.read()
            return web.Response(
                body=data,
                content_type="application/json",
                headers={UPSTREAM_HEADER: reply.upstream.name},
            )
    except LlmError as err:
        raise ApiError(err.status, err.code, err.message, retry_after=err.retry_after) from None
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            UPSTREAM_HEADER: reply.upstream.name,
        }
    )
    try:
        await response.prepare(request)
        async with contextlib.aclosing(reply.chunks()) as chunks:
            try:
                async for chunk in chunks:
                    await response.write(chunk)
            except StreamBroken as err:
                # Headers are gone: an OpenAI client raises on an event carrying `error`.
                event = {"error": {"code": err.code, "message": err.message}}
                await response.write(b"data: " + json.dumps(event).encode() + b"\n\n")
        await response.write_eof()
    except ConnectionResetError:
        pass  # the client went away; closing the reply stopped the upstream's generation
    finally:
        reply.close()
    return response


async def _chat_body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ApiError(400, "invalid_json", "The body is not valid JSON") from None
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_json", "The body must be a JSON object")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ApiError(400, "invalid_parameter", "messages must be a non-empty list")
    if not all(isinstance(m, dict) for m in messages):
        raise ApiError(400, "invalid_parameter", "each message must be a JSON object")
    if body.get("model") is not None and not isinstance(body["model"], str):
        raise ApiError(400, "invalid_parameter", "model must be a string")
    if not isinstance(body.get("stream", False), bool):
        raise ApiError(400, "invalid_parameter", "stream must be true or false")
    return body


_PRIORITY_PARAM = {
    "name": PRIORITY_HEADER,
    "in": "header",
    "required": False,
    "description": "voice (Assist) goes before interactive (the default) and batch (AI Task)",
    "schema": {"type": "string", "enum": [p.name.lower() for p in Priority]},
}
_CHAT_SPEC: dict[str, Any] = {
    "summary": "OpenAI chat completion, routed to an LLM upstream serving the model",
    "operationId": "chat_completions",
    "parameters": [_PRIORITY_PARAM],
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["messages"],
                    "properties": {
                        "model": {"type": "string"},
                        "messages": {"type": "array", "minItems": 1, "items": {"type": "object"}},
                        "stream": {"type": "boolean"},
                        "tools": {"type": "array", "items": {"type": "object"}},
                        "response_format": {"type": "object"},
                        "max_tokens": {"type": "integer"},
                        "temperature": {"type": "number"},
                    },
                }
            }
        },
    },
    "responses": {
        "200": {
            "description": "The completion (JSON), or server-sent events when stream is true; "
            "an upstream that fails mid-stream ends it with an event carrying `error`",
            "content": {
                "application/json": {"schema": {"type": "object"}},
                "text/event-stream": {"schema": {"type": "string"}},
            },
        },
        **errors(400, 401, 404, 413, 503),
    },
}
_MODELS_SPEC: dict[str, Any] = {
    "summary": "The models the LLM upstreams serve (OpenAI list)",
    "operationId": "list_llm_models",
    "responses": {
        "200": json_body(
            {
                "type": "object",
                "required": ["object", "data"],
                "properties": {
                    "object": {"type": "string"},
                    "data": {"type": "array", "items": {"type": "object"}},
                },
            }
        ),
        **errors(401),
    },
}
