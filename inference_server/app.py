"""The aiohttp application: middlewares, the small server routes, and each module's routes.

Route modules register their routes and describe them for OpenAPI (inference_server/openapi.py).
"""

from __future__ import annotations

import asyncio
import logging
import time

from aiohttp import web

from . import __version__
from .auth import auth_middleware
from .camera_routes import add_camera_routes
from .errors import Handler, error_middleware
from .llm_routes import add_llm_routes
from .openapi import add_openapi_routes, document, errors, json_body
from .pipelines.sensors import add_sensor_routes
from .pipelines.speech.routes import add_speech_routes
from .server import SERVER_KEY, Server
from .trust import add_trust_routes
from .vision_routes import add_vision_routes

_LOGGER = logging.getLogger(__name__)

__all__ = ["SERVER_KEY", "create_app"]


def create_app(server: Server) -> web.Application:
    app = web.Application(
        client_max_size=server.settings.max_body_bytes,
        # Metrics outermost: it counts the status the caller really got (errors included).
        middlewares=[_metrics_middleware, error_middleware, auth_middleware(server.settings.token)],
    )
    app[SERVER_KEY] = server
    app.add_routes(
        [
            web.get("/api/v1/health", health),
            web.get("/api/v1/info", info),
            web.get("/metrics", metrics),
        ]
    )
    document(app, _PATHS)
    add_openapi_routes(app)
    add_vision_routes(app)
    add_camera_routes(app)
    add_speech_routes(app)
    add_sensor_routes(app, server.sensors)
    add_llm_routes(app)
    add_trust_routes(app)

    async def on_startup(app: web.Application) -> None:
        await app[SERVER_KEY].start()

    async def on_cleanup(app: web.Application) -> None:
        await app[SERVER_KEY].stop()

    app.on_startup.append(on_startup)
    app.on_cleanup.append(on_cleanup)
    return app


@web.middleware
async def _metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    status = 500
    started = time.monotonic()
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as err:  # redirects and the like pass the error middleware
        status = err.status
        raise
    except asyncio.CancelledError:
        status = 499  # the client went away (nginx's code for it)
        raise
    finally:
        route = request.match_info.route.resource
        name = route.canonical if route is not None else "unmatched"
        request.app[SERVER_KEY].metrics.requests.labels(name, str(status)).inc()
        request.app[SERVER_KEY].metrics.request_seconds.labels(name).observe(
            time.monotonic() - started
        )


async def health(request: web.Request) -> web.Response:
    server = request.app[SERVER_KEY]
    backends = server.public_backends()  # no token here: readiness only, no URLs
    ready = [b.get("ready") for b in backends.values()]
    status = "ok" if all(ready) else "degraded"
    body = {"status": status, "version": __version__, "backends": backends}
    return web.json_response(body, status=200 if any(ready) else 503)


async def info(request: web.Request) -> web.Response:
    return web.json_response(request.app[SERVER_KEY].info())


async def metrics(request: web.Request) -> web.Response:
    body, content_type = request.app[SERVER_KEY].metrics.render()
    return web.Response(body=body, headers={"Content-Type": content_type})


_PATHS = {
    "/api/v1/health": {
        "get": {
            "summary": "Liveness and backend readiness (no token needed)",
            "operationId": "health",
            "security": [],
            "responses": {
                "200": json_body(
                    {
                        "type": "object",
                        "required": ["status", "backends"],
                        "properties": {
                            "status": {"type": "string", "enum": ["ok", "degraded"]},
                            "version": {"type": "string"},
                            "backends": {"type": "object"},
                        },
                    }
                ),
                **errors(503),
            },
        }
    },
    "/api/v1/info": {
        "get": {
            "summary": "Server id, version, capabilities and models (the announce without URLs)",
            "operationId": "info",
            "responses": {"200": json_body({"type": "object"}), **errors(401)},
        }
    },
    "/metrics": {
        "get": {
            "summary": "Prometheus metrics",
            "operationId": "metrics",
            "responses": {
                "200": {
                    "description": "Prometheus text",
                    "content": {"text/plain": {"schema": {}}},
                },
                **errors(401),
            },
        }
    },
}
