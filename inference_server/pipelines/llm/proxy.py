"""The LLM pipeline: route an OpenAI chat completion to an upstream serving its model, with
failover, a priority queue per upstream, timeouts, and metrics from what streams back.

The upstream's bytes go to the client as they arrive (no re-encoding); the SSE lines are read
on the side only for the time to first token and llama-server's `timings`.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from prometheus_client import CollectorRegistry

from .metrics import LlmMetrics
from .priority import Priority, PriorityGate
from .upstreams import Upstream, UpstreamPool, UpstreamSpec

_LOGGER = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 5.0
# Idle connections are dropped before the upstream drops them: llama-server (cpp-httplib)
# closes a keep-alive connection after 5 s idle, and a request sent on it as it closes fails.
KEEPALIVE_S = 4.0
DEFAULT_SLOTS = 4  # upstreams that do not say how many requests they decode at once
# Failures that say the upstream is gone, not that the request was wrong.
_CONNECTION_ERRORS = (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError)


class LlmError(Exception):
    """An answer the client should get instead of a completion."""

    def __init__(
        self, status: int, code: str, message: str, *, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after


class StreamBroken(Exception):
    """The upstream failed after the stream had started: only an error event can follow."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class Reply:
    """An upstream's 200 answer, held with its slot until it is read or closed."""

    pipeline: LlmPipeline
    upstream: Upstream
    model: str
    response: aiohttp.ClientResponse
    started: float
    _finished: bool = field(default=False, init=False)

    async def read(self) -> bytes:
        """The whole non-streamed answer; records its metrics."""
        try:
            data: bytes = await self.response.read()
        except (*_CONNECTION_ERRORS, TimeoutError) as err:
            kind, message = self.pipeline.failed(self.upstream, self.model, err)
            raise LlmError(503, kind, message, retry_after=self.pipeline.retry_after) from None
        finally:
            self.close()
        elapsed = time.monotonic() - self.started
        self.pipeline.metrics.ttft.labels(self.upstream.name, self.model).observe(elapsed)
        try:
            body = json.loads(data)
        except ValueError:
            return data
        if isinstance(body, dict):
            self.pipeline.observe_usage(self.upstream, self.model, body, elapsed)
        return data

    async def chunks(self) -> AsyncGenerator[bytes]:
        """The SSE bytes as they come; raises StreamBroken if the upstream fails mid-way."""
        watcher = _SseWatcher()
        try:
            async for data in self.response.content.iter_any():
                yield data
                for event in watcher.feed(data):
                    self._observe_event(event, watcher)
        except (*_CONNECTION_ERRORS, TimeoutError) as err:
            kind, message = self.pipeline.failed(self.upstream, self.model, err)
            raise StreamBroken(kind, message) from None
        finally:
            self.close()
        if not watcher.done:
            # The connection closed cleanly but without [DONE]: the upstream died mid-answer.
            self.pipeline.metrics.errors.labels(
                self.upstream.name, self.model, "broken_stream"
            ).inc()
            raise StreamBroken("upstream_failed", "The upstream closed the stream mid-answer")

    def _observe_event(self, event: dict[str, Any], watcher: _SseWatcher) -> None:
        if not watcher.first_token_seen and _has_token(event):
            watcher.first_token_seen = True
            watcher.first_token_at = time.monotonic()
            self.pipeline.metrics.ttft.labels(self.upstream.name, self.model).observe(
                watcher.first_token_at - self.started
            )
        if "timings" in event or event.get("usage"):
            generating = time.monotonic() - (watcher.first_token_at or self.started)
            self.pipeline.observe_usage(self.upstream, self.model, event, generating)

    def close(self) -> None:
        if self._finished:
            return
        self._finished = True
        # close() (not release()) when unread: dropping the connection stops llama-server
        # generating for a client that went away.
        if self.response.content.at_eof():
            self.response.release()
        else:
            self.response.close()
        self.pipeline.release(self.upstream)


class LlmPipeline:
    def __init__(
        self,
        specs: list[UpstreamSpec],
        registry: CollectorRegistry,
        *,
        timeout: float = 120.0,
        health_interval: float = 10.0,
        max_queue: int = 64,
    ) -> None:
        self.pool = UpstreamPool(specs, interval=health_interval, on_checked=self._on_checked)
        self.metrics = LlmMetrics(registry)
        self.timeout = timeout
        self.max_queue = max_queue
        self.retry_after = min(health_interval, 5.0)
        self._gates = {
            u.name: PriorityGate(DEFAULT_SLOTS, self.metrics.queue_depth.labels(u.name).set)
            for u in self.pool.upstreams
        }
        self._session: aiohttp.ClientSession | None = None

    @property
    def configured(self) -> bool:
        return bool(self.pool.upstreams)

    async def start(self) -> None:
        if not self.configured:
            return
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(sock_connect=CONNECT_TIMEOUT_S, sock_read=self.timeout),
            connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=KEEPALIVE_S),
        )
        await self.pool.start(self._session)

    async def stop(self) -> None:
        await self.pool.stop()
        if self._session is not None:
            await self._session.close()
            self._session = None

    def models(self) -> list[dict[str, Any]]:
        """The OpenAI /v1/models list: every model an upstream serves or served."""
        return [
            {
                "id": model,
                "object": "model",
                "created": 0,
                "owned_by": "edge_inference",
                "ready": any(u.up for u in self.pool.serving(model)),
            }
            for model in self.pool.known_models()
        ]

    def describe(self) -> dict[str, Any]:
        """The `llm` capability of the announce (models named as every capability names them)."""
        return {
            "api": "/v1",
            "models": [{"name": m["id"], "ready": m["ready"]} for m in self.models()],
        }

    def backends(self) -> dict[str, dict[str, Any]]:
        return {f"llm:{u.name}": u.describe() for u in self.pool.upstreams}

    async def open(self, body: dict[str, Any], priority: Priority) -> Reply:
        """Send a chat completion to an upstream serving its model; fail over on failure."""
        started = time.monotonic()
        if not self.configured:
            raise LlmError(404, "unknown_model", "No LLM upstream is configured (--llm-upstream)")
        model = body.get("model") or self.pool.default_model()
        if model is None:
            raise LlmError(
                503, "upstream_unavailable", "No LLM upstream is up", retry_after=self.retry_after
            )
        candidates = self.pool.serving(model)
        if not candidates:
            known = ", ".join(self.pool.known_models()) or "none yet"
            raise LlmError(404, "unknown_model", f"No upstream serves {model!r} (models: {known})")
        tried: set[str] = set()
        failure = ("upstream_unavailable", f"No upstream serving {model!r} is up")
        while True:
            ready = [u for u in candidates if u.up and u.name not in tried]
            if not ready:
                raise LlmError(503, failure[0], failure[1], retry_after=self.retry_after)
            upstream = min(ready, key=lambda u: self._gates[u.name].load)
            gate = self._gates[upstream.name]
            if sum(self._gates[u.name].waiting for u in candidates) >= self.max_queue:
                raise LlmError(
                    503, "queue_full", "Too many LLM requests queued", retry_after=self.retry_after
                )
            await gate.acquire(priority)
            if not upstream.up:  # went down while we waited
                gate.release()
                continue
            tried.add(upstream.name)
            try:
                response = await self._post(upstream, model, body, priority)
            except _Retry as retry:
                gate.release()
                failure = (retry.code, retry.message)
                continue
            except BaseException:  # a refusal, or the client gone (cancelled): free the slot
                gate.release()
                raise
            return Reply(self, upstream, model, response, started)

    async def _post(
        self, upstream: Upstream, model: str, body: dict[str, Any], priority: Priority
    ) -> aiohttp.ClientResponse:
        assert self._session is not None
        payload = {**body, "model": upstream.upstream_model(model)}
        self.metrics.requests.labels(upstream.name, model, priority.name.lower()).inc()
        url = f"{upstream.url}/v1/chat/completions"
        try:
            try:
                response = await self._session.post(url, json=payload)
            except aiohttp.ServerDisconnectedError:
                # A kept-alive connection the upstream closed as the request went out (other
                # upstreams' idle timeouts differ from ours): nothing was answered, so once
                # more on a new connection before the upstream counts as down.
                _LOGGER.debug("%s closed a kept-alive connection; sending again", upstream.name)
                response = await self._session.post(url, json=payload)
        except (*_CONNECTION_ERRORS, TimeoutError) as err:
            code, message = self.failed(upstream, model, err)
            raise _Retry(code, message) from None
        if response.status == 200:
            return response
        text = await _read_quietly(response)
        upstream_error = _error_of(text)
        message = str(upstream_error.get("message") or text[:300] or response.reason)
        if response.status >= 500 or response.status == 429:
            self.metrics.errors.labels(upstream.name, model, "status").inc()
            if response.status == 503:  # llama-server while it loads a model
                self.pool.mark_down(upstream, f"answered 503: {message}")
            raise _Retry(
                "upstream_unavailable", f"{upstream.name} answered {response.status}: {message}"
            )
        self.metrics.errors.labels(upstream.name, model, "rejected").inc()
        raise LlmError(response.status, _client_code(upstream_error, response.status), message)

    def failed(self, upstream: Upstream, model: str, err: BaseException) -> tuple[str, str]:
        """Count an upstream failure; a lost connection also takes it out of the rotation."""
        if isinstance(err, TimeoutError):
            self.metrics.errors.labels(upstream.name, model, "timeout").inc()
            return "upstream_timeout", (
                f"{upstream.name} sent nothing for {self.timeout:g} s (--llm-timeout)"
            )
        self.metrics.errors.labels(upstream.name, model, "connect").inc()
        reason = str(err) or type(err).__name__
        self.pool.mark_down(upstream, reason)
        return "upstream_failed", f"{upstream.name} failed: {reason}"

    def observe_usage(
        self, upstream: Upstream, model: str, body: dict[str, Any], generating_s: float
    ) -> None:
        timings = body.get("timings")
        usage = body.get("usage")
        tokens: float | None = None
        rate: float | None = None
        if isinstance(timings, dict):
            tokens = _number(timings.get("predicted_n"))
            rate = _number(timings.get("predicted_per_second"))
        if tokens is None and isinstance(usage, dict):
            tokens = _number(usage.get("completion_tokens"))
        if rate is None and tokens and generating_s > 0:
            rate = tokens / generating_s
        if tokens:
            self.metrics.completion_tokens.labels(upstream.name, model).inc(tokens)
        if rate:
            self.metrics.tokens_per_second.labels(upstream.name, model).observe(rate)

    def release(self, upstream: Upstream) -> None:
        self._gates[upstream.name].release()

    def _on_checked(self, upstream: Upstream) -> None:
        self.metrics.upstream_up.labels(upstream.name).set(1 if upstream.up else 0)
        if upstream.slots:
            self._gates[upstream.name].resize(upstream.slots)


class _Retry(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class _SseWatcher:
    """Splits the byte stream into SSE `data:` events for the metrics."""

    def __init__(self) -> None:
        self._buffer = b""
        self.first_token_seen = False
        self.first_token_at: float | None = None
        self.done = False

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        self._buffer += data
        *lines, self._buffer = self._buffer.split(b"\n")
        events = []
        for line in lines:
            if not line.startswith(b"data:"):
                continue
            payload = line[5:].strip()
            if payload == b"[DONE]":
                self.done = True
                continue
            # After the first token only the closing events (timings, usage) are worth parsing.
            if self.first_token_seen and b'"timings"' not in payload and b'"usage"' not in payload:
                continue
            try:
                event = json.loads(payload)
            except ValueError:
                continue
            if isinstance(event, dict):
                if "error" in event:
                    self.done = True  # the upstream ended the stream with its own error event
                events.append(event)
        return events


def _has_token(event: dict[str, Any]) -> bool:
    for choice in event.get("choices") or ():
        delta = choice.get("delta") if isinstance(choice, dict) else None
        if isinstance(delta, dict) and (
            delta.get("content") or delta.get("tool_calls") or delta.get("reasoning_content")
        ):
            return True
    return False


def _error_of(text: str) -> dict[str, Any]:
    try:
        body = json.loads(text)
    except ValueError:
        return {}
    error = body.get("error") if isinstance(body, dict) else None
    return error if isinstance(error, dict) else {}


def _client_code(upstream_error: dict[str, Any], status: int) -> str:
    """Our error code for an upstream's 4xx: OpenAI's name for a context overflow."""
    kind = str(upstream_error.get("type") or "")
    if kind == "exceed_context_size_error" or "context" in str(upstream_error.get("message", "")):
        return "context_length_exceeded"
    code = upstream_error.get("code")
    if isinstance(code, str) and code:
        return code
    return kind or {400: "bad_request", 404: "not_found", 413: "payload_too_large"}.get(
        status, "upstream_rejected"
    )


async def _read_quietly(response: aiohttp.ClientResponse) -> str:
    try:
        data: bytes = await response.read()
        return data.decode("utf-8", "replace")
    except (*_CONNECTION_ERRORS, TimeoutError):
        return ""
    finally:
        response.release()


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
