"""HTTP routes of the sensors pipeline (docs/protocol.md, "Sensors")."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from ...errors import ApiError
from ...openapi import document, errors, json_body
from .observations import (
    MAX_OBSERVATIONS,
    MODEL_NAME_RE,
    ObservationError,
    check_series_id,
    parse_body,
)
from .pipeline import SensorPipeline, StoreUnavailableError, UnknownSeriesError

SENSORS_KEY: web.AppKey[SensorPipeline] = web.AppKey("sensors", SensorPipeline)
SERIES_LIST = "/api/v1/sensors"
SERIES = "/api/v1/sensors/{series_id}"
OBSERVATIONS = "/api/v1/sensors/{series_id}/observations"
BATCH = "/api/v1/sensors/observations"
# 100,000 observations as JSON fit in about 5 MiB; a larger body is refused before parsing.
MAX_BODY_BYTES = 8 * 1024 * 1024
RESULTS_MODES = ("all", "anomalies", "none")


def add_sensor_routes(app: web.Application, pipeline: SensorPipeline) -> None:
    app[SENSORS_KEY] = pipeline
    app.add_routes(
        [
            web.get(SERIES_LIST, list_series),
            web.post(OBSERVATIONS, post_observations),
            web.post(BATCH, post_batch),
            web.get(SERIES, get_series),
            web.delete(SERIES, delete_series),
        ]
    )
    document(app, _PATHS)


async def list_series(request: web.Request) -> web.Response:
    return web.json_response({"series": request.app[SENSORS_KEY].series_ids()})


async def post_observations(request: web.Request) -> web.Response:
    pipeline = request.app[SENSORS_KEY]
    series_id = request.match_info["series_id"]
    results = request.query.get("results", "all")
    try:
        check_series_id(series_id)
        if results not in RESULTS_MODES:
            raise ObservationError(400, "invalid_parameter", "results: all, anomalies or none")
        batch = parse_body(await _read_json(request))
        result = await pipeline.observe(series_id, batch)
    except ObservationError as err:
        raise ApiError(err.status, err.code, str(err)) from None
    except StoreUnavailableError as err:
        raise ApiError(503, "store_unavailable", str(err), retry_after=5) from None
    body: dict[str, Any] = {
        "series_id": series_id,
        "accepted": len(batch.t),
        "state": pipeline.describe_series(result.row),
    }
    if results != "none":
        body["results"] = result.rows(only_anomalies=results == "anomalies")
    return web.json_response(body)


async def post_batch(request: web.Request) -> web.Response:
    """Many series in one request: bad input refuses all; a conflict is per series."""
    pipeline = request.app[SENSORS_KEY]
    results = request.query.get("results", "all")
    try:
        if results not in RESULTS_MODES:
            raise ObservationError(400, "invalid_parameter", "results: all, anomalies or none")
        body = await _read_json(request)
        if not isinstance(body, dict) or not isinstance(body.get("series"), dict):
            raise ObservationError(
                400, "invalid_body", 'The body must be {"series": {"<id>": {"observations": []}}}'
            )
        parsed = {}
        for series_id, item in body["series"].items():
            check_series_id(series_id)
            try:
                parsed[series_id] = parse_body(item)
            except ObservationError as err:
                raise ObservationError(err.status, err.code, f"{series_id}: {err}") from None
        if sum(len(batch.t) for batch in parsed.values()) > MAX_OBSERVATIONS:
            raise ObservationError(
                413, "too_many_observations", f"At most {MAX_OBSERVATIONS} observations per request"
            )
    except ObservationError as err:
        raise ApiError(err.status, err.code, str(err)) from None
    try:  # learned together: one SQLite transaction holds them all
        outcomes = await pipeline.observe_many(parsed)
    except StoreUnavailableError as err:
        raise ApiError(503, "store_unavailable", str(err), retry_after=5) from None
    answer: dict[str, Any] = {}
    for series_id, outcome in outcomes.items():
        if isinstance(outcome, ObservationError):
            answer[series_id] = {"error": {"code": outcome.code, "message": str(outcome)}}
        else:
            entry: dict[str, Any] = {"accepted": len(outcome.t)}
            if results != "none":
                entry["results"] = outcome.rows(only_anomalies=results == "anomalies")
            answer[series_id] = entry
    return web.json_response({"series": answer})


async def get_series(request: web.Request) -> web.Response:
    pipeline = request.app[SENSORS_KEY]
    series_id = request.match_info["series_id"]
    try:
        horizon = float(request.query.get("horizon", "3600"))
        points = int(request.query.get("points", "12"))
    except ValueError:
        raise ApiError(400, "invalid_parameter", "horizon and points must be numbers") from None
    try:
        return web.json_response(pipeline.state(series_id, horizon, points))
    except UnknownSeriesError:
        raise ApiError(404, "unknown_series", f"No series {series_id!r}") from None
    except ObservationError as err:
        raise ApiError(err.status, err.code, str(err)) from None


async def delete_series(request: web.Request) -> web.Response:
    series_id = request.match_info["series_id"]
    try:
        await request.app[SENSORS_KEY].reset(series_id)
    except UnknownSeriesError:
        raise ApiError(404, "unknown_series", f"No series {series_id!r}") from None
    return web.Response(status=204)


async def _read_json(request: web.Request) -> Any:
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise ObservationError(413, "payload_too_large", f"At most {MAX_BODY_BYTES} bytes")
    data = bytearray()
    while chunk := await request.content.read(65536):  # chunked bodies have no length
        data += chunk
        if len(data) > MAX_BODY_BYTES:
            raise ObservationError(413, "payload_too_large", f"At most {MAX_BODY_BYTES} bytes")
    try:
        return json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        raise ObservationError(400, "invalid_json", "The body is not valid JSON") from None


_SERIES_ID = {
    "name": "series_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": "^[A-Za-z0-9_.:-]{1,128}$"},
    "description": "Any stable name, e.g. the HA entity id",
}
_OBSERVATIONS_SCHEMA = {
    "type": "object",
    "required": ["observations"],
    "properties": {
        "observations": {
            "type": "array",
            "minItems": 1,
            "maxItems": 100000,
            "items": {
                "type": "object",
                "required": ["t", "v"],
                "properties": {
                    "t": {
                        "oneOf": [{"type": "number"}, {"type": "string", "format": "date-time"}],
                        "description": "epoch seconds or ISO 8601 (naive = UTC); increasing",
                    },
                    "v": {"type": "number"},
                },
            },
        },
        "unit": {"type": "string", "maxLength": 32},
        "model": {
            "type": "string",
            "pattern": MODEL_NAME_RE.pattern,
            "description": "a sensor_anomaly model of the model repository that scores this "
            "series from now on, in place of the built-in rarity score",
        },
    },
}
_STATE_SCHEMA = {
    "type": "object",
    "properties": {
        "series_id": {"type": "string"},
        "unit": {"type": "string", "nullable": True},
        "observations": {"type": "integer"},
        "anomaly": {"type": "object"},
        "missing_data": {"type": "boolean"},
        "model": {"type": "object"},
        "forecast": {"type": "array", "items": {"type": "object"}},
    },
}
_PATHS: dict[str, dict[str, Any]] = {
    SERIES_LIST: {
        "get": {
            "summary": "Every learned series",
            "operationId": "listSensorSeries",
            "responses": {
                "200": json_body({"type": "object", "properties": {"series": {"type": "array"}}}),
                **errors(401),
            },
        }
    },
    OBSERVATIONS: {
        "post": {
            "summary": "Learn observations; anomaly score, flag and expected value for each",
            "operationId": "postSensorObservations",
            "parameters": [
                _SERIES_ID,
                {
                    "name": "results",
                    "in": "query",
                    "schema": {"type": "string", "enum": list(RESULTS_MODES)},
                    "description": "per-observation results to return (a warm start: none)",
                },
            ],
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": _OBSERVATIONS_SCHEMA}},
            },
            "responses": {
                "200": json_body(
                    {
                        "type": "object",
                        "properties": {
                            "accepted": {"type": "integer"},
                            "results": {"type": "array", "items": {"type": "object"}},
                            "state": _STATE_SCHEMA,
                        },
                    }
                ),
                **errors(400, 401, 404, 409, 413, 503),
            },
        }
    },
    BATCH: {
        "post": {
            "summary": "Learn observations of many series in one request (one transaction)",
            "operationId": "postSensorBatch",
            "parameters": [
                {
                    "name": "results",
                    "in": "query",
                    "schema": {"type": "string", "enum": list(RESULTS_MODES)},
                }
            ],
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "required": ["series"],
                            "properties": {
                                "series": {
                                    "type": "object",
                                    "additionalProperties": _OBSERVATIONS_SCHEMA,
                                }
                            },
                        }
                    }
                },
            },
            "responses": {
                "200": json_body(
                    {
                        "type": "object",
                        "properties": {"series": {"type": "object"}},
                        "description": "per series: accepted and results, or error (409s)",
                    }
                ),
                **errors(400, 401, 413, 503),
            },
        }
    },
    SERIES: {
        "get": {
            "summary": "A series' learned state and its forecast",
            "operationId": "getSensorSeries",
            "parameters": [
                _SERIES_ID,
                {"name": "horizon", "in": "query", "schema": {"type": "number"}},
                {"name": "points", "in": "query", "schema": {"type": "integer"}},
            ],
            "responses": {"200": json_body(_STATE_SCHEMA), **errors(400, 401, 404)},
        },
        "delete": {
            "summary": "Forget a series (start learning again)",
            "operationId": "deleteSensorSeries",
            "parameters": [_SERIES_ID],
            "responses": {"204": {"description": "Forgotten"}, **errors(401, 404)},
        },
    },
}
