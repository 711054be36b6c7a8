"""The only module that speaks HTTP to an inference server (docs/protocol.md)."""

from __future__ import annotations

import base64
import contextlib
import json
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=30)
API = "/api/v1"
CHAT_PATH = "/v1/chat/completions"  # OpenAI-compatible, proxied to the server's LLM upstreams
PRIORITY_HEADER = "X-Edge-Inference-Priority"
# An answer may take long to generate; what must not last is silence between its chunks.
CHAT_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=120)


class EdgeInferenceError(Exception):
    """Base error of the client."""


class CannotConnect(EdgeInferenceError):
    """The server cannot be reached, or answered with a server-side error."""


class InvalidAuth(EdgeInferenceError):
    """The server rejected the token."""


class Unavailable(CannotConnect):
    """The server answered 503: its LLM upstream is down or busy (retry later)."""

    def __init__(self, code: str, message: str) -> None:
        """Keep the protocol's error code and message."""
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class RequestError(EdgeInferenceError):
    """The server refused the request (4xx other than 401)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        """Keep the protocol's error code and message."""
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class Detection:
    """One detected object; box is [x1, y1, x2, y2] in 0..1 of the image."""

    label: str
    score: float
    box: list[float]

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        return {"label": self.label, "score": self.score, "box": list(self.box)}


@dataclass(frozen=True, slots=True)
class DetectResult:
    """The answer of `POST /vision/detect`."""

    model: str
    detections: list[Detection]
    width: int | None = None
    height: int | None = None
    timing_ms: dict[str, float] = field(default_factory=dict)
    annotated_jpeg: bytes | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly form (without the image)."""
        return {
            "model": self.model,
            "detections": [d.as_dict() for d in self.detections],
            "image": {"width": self.width, "height": self.height},
            "timing_ms": dict(self.timing_ms),
        }


def parse_detections(items: Iterable[Any]) -> list[Detection]:
    """Detections from protocol JSON, skipping malformed items."""
    result = []
    for item in items:
        try:
            box = [float(v) for v in item["box"]]
            result.append(Detection(str(item["label"]), float(item["score"]), box))
        except (KeyError, TypeError, ValueError):
            continue
    return result


class EdgeInferenceClient:
    """A small async client for one server, on HA's shared aiohttp session."""

    def __init__(self, session: aiohttp.ClientSession, url: str, token: str) -> None:
        """Keep the session, the base URL and the bearer token."""
        self._session = session
        self.url = url.rstrip("/")
        self._token = token

    async def _request(
        self,
        method: str,
        path: str,
        *,
        auth: bool = True,
        params: dict[str, str] | None = None,
        json_body: Any = None,
        data: bytes | None = None,
        content_type: str | None = None,
    ) -> tuple[int, bytes, str]:
        headers = {}
        if auth:
            headers["Authorization"] = f"Bearer {self._token}"
        if content_type:
            headers["Content-Type"] = content_type
        try:
            async with self._session.request(
                method,
                f"{self.url}{API}{path}",
                headers=headers,
                params=params,
                json=json_body,
                data=data,
                timeout=REQUEST_TIMEOUT,
            ) as resp:
                body = await resp.read()
                status = resp.status
                ctype = resp.content_type
        except (TimeoutError, aiohttp.ClientError) as err:
            raise CannotConnect(f"{method} {path}: {err!r}") from err
        if status == 401:
            raise InvalidAuth(_error_message(body) or "unauthorized")
        if status >= 500:
            raise CannotConnect(f"{method} {path}: HTTP {status} {_error_message(body)}")
        if status >= 400:
            code, message = _error_parts(body)
            raise RequestError(status, code, message)
        return status, body, ctype

    async def _json(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        _, body, _ = await self._request(method, path, **kwargs)
        try:
            data = _loads(body)
        except ValueError as err:
            raise CannotConnect(f"{method} {path}: not JSON") from err
        if not isinstance(data, dict):
            raise CannotConnect(f"{method} {path}: not a JSON object")
        return data

    async def async_health(self) -> dict[str, Any]:
        """`GET /health` (no token)."""
        return await self._json("GET", "/health", auth=False)

    async def async_info(self) -> dict[str, Any]:
        """`GET /info`: server id, name, protocol, capabilities, backends."""
        return await self._json("GET", "/info")

    async def async_detect(
        self,
        image: bytes,
        *,
        content_type: str = "image/jpeg",
        labels: Iterable[str] | None = None,
        min_score: float | None = None,
        model: str | None = None,
        annotate: bool = False,
    ) -> DetectResult:
        """`POST /vision/detect` with a raw image body."""
        params: dict[str, str] = {}
        if labels:
            params["labels"] = ",".join(labels)
        if min_score is not None:
            params["min_score"] = str(min_score)
        if model:
            params["model"] = model
        if annotate:
            params["annotate"] = "true"
        data = await self._json(
            "POST", "/vision/detect", params=params, data=image, content_type=content_type
        )
        image_info = data.get("image") or {}
        annotated = data.get("annotated_jpeg")
        return DetectResult(
            model=str(data.get("model", "")),
            detections=parse_detections(data.get("detections") or []),
            width=image_info.get("width"),
            height=image_info.get("height"),
            timing_ms=dict(data.get("timing_ms") or {}),
            annotated_jpeg=base64.b64decode(annotated) if annotated else None,
        )

    async def async_put_camera(
        self,
        camera_id: str,
        *,
        source: str,
        name: str,
        labels: list[str],
        min_score: float,
        fps: float,
        model: str | None = None,
        motion_threshold: float | None = None,
    ) -> dict[str, Any]:
        """`PUT /cameras/{id}`: register (or replace) a stream on the server."""
        payload: dict[str, Any] = {
            "source": source,
            "name": name,
            "labels": labels,
            "min_score": min_score,
            "fps": fps,
            "model": model,
        }
        if motion_threshold is not None:
            payload["motion_threshold"] = motion_threshold
        return await self._json("PUT", f"/cameras/{camera_id}", json_body=payload)

    async def async_get_camera(self, camera_id: str) -> dict[str, Any]:
        """`GET /cameras/{id}`: the camera's state on the server."""
        return await self._json("GET", f"/cameras/{camera_id}")

    async def async_delete_camera(self, camera_id: str) -> None:
        """`DELETE /cameras/{id}`; a camera the server does not know is fine."""
        try:
            await self._request("DELETE", f"/cameras/{camera_id}")
        except RequestError as err:
            if err.status != 404:
                raise

    async def async_post_observations(
        self,
        series_id: str,
        observations: list[dict[str, float]],
        *,
        unit: str | None,
        model: str | None = None,
        results: str = "all",
    ) -> dict[str, Any]:
        """`POST /sensors/{id}/observations`: learn readings; a result for each."""
        body: dict[str, Any] = {"observations": observations}
        if unit:
            body["unit"] = unit
        if model:
            body["model"] = model
        return await self._json(
            "POST",
            f"/sensors/{series_id}/observations",
            params={"results": results},
            json_body=body,
        )

    async def async_get_series(
        self, series_id: str, *, horizon: int = 3600, points: int = 1
    ) -> dict[str, Any] | None:
        """`GET /sensors/{id}`: what the server learned and its forecast; None if unknown."""
        try:
            return await self._json(
                "GET",
                f"/sensors/{series_id}",
                params={"horizon": str(horizon), "points": str(points)},
            )
        except RequestError as err:
            if err.status == 404:
                return None
            raise

    async def async_delete_series(self, series_id: str) -> None:
        """`DELETE /sensors/{id}`: forget what was learned; an unknown series is fine."""
        try:
            await self._request("DELETE", f"/sensors/{series_id}")
        except RequestError as err:
            if err.status != 404:
                raise

    async def async_camera_snapshot(self, camera_id: str) -> bytes | None:
        """Latest annotated JPEG of a registered camera; None before the first frame."""
        try:
            _, body, _ = await self._request("GET", f"/cameras/{camera_id}/snapshot")
        except RequestError as err:
            if err.status == 404:
                return None
            raise
        return body

    @contextlib.asynccontextmanager
    async def async_speech_stream(
        self, start: dict[str, Any]
    ) -> AsyncIterator[aiohttp.ClientWebSocketResponse]:
        """`GET /speech/stream` (WebSocket), start message sent; the caller sends audio."""
        try:
            async with self._session.ws_connect(
                f"{self.url}{API}/speech/stream",
                headers={"Authorization": f"Bearer {self._token}"},
                # No heartbeat: an utterance is bounded by the caller's final-text timeout, and
                # aiohttp re-arms the heartbeat timer on data that arrives during the close.
                timeout=aiohttp.ClientWSTimeout(ws_close=5),
            ) as ws:
                await ws.send_json(start)
                yield ws
        except aiohttp.WSServerHandshakeError as err:
            if err.status == 401:
                raise InvalidAuth("unauthorized") from err
            raise CannotConnect(f"speech stream: HTTP {err.status} {err.message}") from err
        except (TimeoutError, aiohttp.ClientError) as err:
            raise CannotConnect(f"speech stream: {err!r}") from err

    async def async_chat(self, body: dict[str, Any], *, priority: str) -> dict[str, Any]:
        """`POST /v1/chat/completions`, not streamed: the whole completion."""
        try:
            async with self._session.post(
                f"{self.url}{CHAT_PATH}",
                json={**body, "stream": False},
                headers=self._chat_headers(priority),
                timeout=CHAT_TIMEOUT,
            ) as resp:
                data = await resp.read()
                _raise_for_chat_status(resp.status, data)
        except (TimeoutError, aiohttp.ClientError) as err:
            raise CannotConnect(f"POST {CHAT_PATH}: {err!r}") from err
        try:
            answer = _loads(data)
        except ValueError as err:
            raise CannotConnect(f"POST {CHAT_PATH}: not JSON") from err
        if not isinstance(answer, dict):
            raise CannotConnect(f"POST {CHAT_PATH}: not a JSON object")
        return answer

    async def async_chat_stream(
        self, body: dict[str, Any], *, priority: str
    ) -> AsyncIterator[dict[str, Any]]:
        """`POST /v1/chat/completions`, streamed: each server-sent event as it arrives."""
        try:
            async with self._session.post(
                f"{self.url}{CHAT_PATH}",
                json={**body, "stream": True},
                headers=self._chat_headers(priority),
                timeout=CHAT_TIMEOUT,
            ) as resp:
                if resp.status != 200:
                    _raise_for_chat_status(resp.status, await resp.read())
                async for raw in resp.content:
                    line = raw.strip()
                    if not line.startswith(b"data:"):
                        continue
                    payload = line[5:].strip()
                    if payload == b"[DONE]":
                        return
                    try:
                        event = _loads(payload)
                    except ValueError:
                        continue
                    if isinstance(event, dict) and isinstance(event.get("error"), dict):
                        # The upstream failed mid-answer (the server ends the stream so).
                        error = event["error"]
                        raise Unavailable(
                            str(error.get("code", "upstream_failed")), str(error.get("message"))
                        )
                    if isinstance(event, dict):
                        yield event
        except (TimeoutError, aiohttp.ClientError) as err:
            raise CannotConnect(f"POST {CHAT_PATH}: {err!r}") from err
        raise CannotConnect(f"POST {CHAT_PATH}: the stream ended before [DONE]")

    def _chat_headers(self, priority: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._token}", PRIORITY_HEADER: priority}


def _raise_for_chat_status(status: int, body: bytes) -> None:
    if status == 200:
        return
    if status == 401:
        raise InvalidAuth(_error_message(body) or "unauthorized")
    code, message = _error_parts(body)
    if status == 503:
        raise Unavailable(code, message)
    if status >= 500:
        raise CannotConnect(f"POST {CHAT_PATH}: HTTP {status} {code}: {message}")
    raise RequestError(status, code, message)


def _loads(body: bytes) -> Any:
    return json.loads(body)


def _error_parts(body: bytes) -> tuple[str, str]:
    try:
        error = _loads(body)["error"]
        return str(error.get("code", "error")), str(error.get("message", ""))
    except (ValueError, KeyError, TypeError, AttributeError):
        return "error", body[:200].decode("utf-8", "replace")


def _error_message(body: bytes) -> str:
    code, message = _error_parts(body)
    return f"{code}: {message}" if message else code
