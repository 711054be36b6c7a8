"""The configured LLM upstreams (llama-server, vLLM, LiteLLM, Ollama's /v1): their models,
their health, and the loop that finds them again after they fail.

An upstream is given as `URL` (its models are read from `URL/v1/models`) or `NAME=URL` (it
serves the model NAME; the request's model is rewritten to the id the upstream reports).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

_LOGGER = logging.getLogger(__name__)

HEALTH_TIMEOUT_S = 5.0
# After this long down, the outage is logged as an error once (the alert); the announce and the
# edge_inference_llm_upstream_up gauge say it all along.
ALERT_AFTER_S = 60.0
NOT_CHECKED = "not checked yet"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$")


class UpstreamSpecError(ValueError):
    """An --llm-upstream value that cannot be used; the message says why."""


@dataclass(frozen=True)
class UpstreamSpec:
    url: str
    alias: str = ""  # "" = serve whatever /v1/models lists

    @classmethod
    def parse(cls, text: str) -> UpstreamSpec:
        text = text.strip()
        alias, sep, url = text.partition("=")
        if not sep:
            alias, url = "", text
        alias, url = alias.strip(), url.strip().rstrip("/")
        url = url.removesuffix("/v1")
        if not re.match(r"^https?://[^/\s]+", url):
            raise UpstreamSpecError(f"{text!r}: use URL or MODEL=URL with an http(s) URL")
        if sep and not _NAME_RE.match(alias):
            raise UpstreamSpecError(f"{text!r}: {alias!r} is not a usable model name")
        return cls(url, alias)


@dataclass
class Upstream:
    """One upstream server and what the last health check learned about it."""

    spec: UpstreamSpec
    name: str
    up: bool = False
    model_ids: tuple[str, ...] = ()  # as the upstream's /v1/models lists them
    slots: int | None = None  # llama-server's parallel slots (/props), when it tells
    last_error: str = NOT_CHECKED
    down_since: float = field(default_factory=time.monotonic)
    alerted: bool = False
    wake: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def url(self) -> str:
        return self.spec.url

    def models(self) -> tuple[str, ...]:
        """The model names clients use for this upstream."""
        if self.spec.alias:
            return (self.spec.alias,)
        return self.model_ids

    def upstream_model(self, requested: str) -> str:
        """The model id to send upstream for a client's model name."""
        if self.spec.alias and requested == self.spec.alias and len(self.model_ids) == 1:
            return self.model_ids[0]
        return requested

    def describe(self) -> dict[str, Any]:
        described: dict[str, Any] = {
            "ready": self.up,
            "url": self.url,
            "models": list(self.models()),
        }
        if not self.up:
            described["error"] = self.last_error
        return described


class UpstreamPool:
    """Health checks per upstream, with a faster retry while one is down."""

    def __init__(
        self,
        specs: list[UpstreamSpec],
        *,
        interval: float = 10.0,
        on_checked: Callable[[Upstream], None] | None = None,
    ) -> None:
        self.interval = interval
        self.upstreams = [
            Upstream(spec, name) for spec, name in zip(specs, _names(specs), strict=True)
        ]
        self._on_checked = on_checked
        self._session: aiohttp.ClientSession | None = None
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self, session: aiohttp.ClientSession) -> None:
        self._session = session
        # A first check before serving, so a healthy upstream is usable on the first request.
        await asyncio.gather(*(self.check(u) for u in self.upstreams))
        self._tasks = [
            asyncio.create_task(self._watch(u), name=f"llm-upstream-{u.name}")
            for u in self.upstreams
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    def serving(self, model: str) -> list[Upstream]:
        """Every upstream that serves `model`, up or not."""
        return [u for u in self.upstreams if model in u.models()]

    def known_models(self) -> list[str]:
        seen: dict[str, None] = {}
        for upstream in self.upstreams:
            seen.update(dict.fromkeys(upstream.models()))
        return list(seen)

    def default_model(self) -> str | None:
        """The first model of the first upstream that is up (for requests naming none)."""
        for upstream in self.upstreams:
            if upstream.up and upstream.models():
                return upstream.models()[0]
        return None

    def mark_down(self, upstream: Upstream, reason: str) -> None:
        """A request saw the upstream fail: stop routing to it and re-check it now."""
        if upstream.up or upstream.last_error == NOT_CHECKED:
            _LOGGER.warning("LLM upstream %s (%s) is down: %s", upstream.name, upstream.url, reason)
            upstream.up = False
            upstream.down_since = time.monotonic()
            upstream.alerted = False
        upstream.last_error = reason
        upstream.wake.set()

    async def check(self, upstream: Upstream) -> None:
        await self._check(upstream)
        if self._on_checked is not None:
            self._on_checked(upstream)

    async def _check(self, upstream: Upstream) -> None:
        assert self._session is not None
        timeout = aiohttp.ClientTimeout(total=HEALTH_TIMEOUT_S)
        try:
            async with self._session.get(f"{upstream.url}/v1/models", timeout=timeout) as resp:
                if resp.status != 200:
                    raise _CheckFailed(f"/v1/models answered {resp.status}")
                body = await resp.json(content_type=None)
            ids = tuple(
                str(m["id"])
                for m in body.get("data", [])
                if isinstance(m, dict) and isinstance(m.get("id"), str)
            )
            if not ids and not upstream.spec.alias:
                raise _CheckFailed("/v1/models lists no model")
            if upstream.slots is None:
                upstream.slots = await self._slots(upstream)
        except (aiohttp.ClientError, TimeoutError, ValueError, AttributeError, _CheckFailed) as err:
            self.mark_down(upstream, str(err) or type(err).__name__)
            return
        upstream.model_ids = ids
        upstream.last_error = ""
        if not upstream.up:
            _LOGGER.info(
                "LLM upstream %s (%s) is up: %s", upstream.name, upstream.url, ", ".join(ids)
            )
            upstream.up = True

    async def _slots(self, upstream: Upstream) -> int | None:
        """llama-server says how many requests it decodes at once; others do not."""
        assert self._session is not None
        timeout = aiohttp.ClientTimeout(total=HEALTH_TIMEOUT_S)
        try:
            async with self._session.get(f"{upstream.url}/props", timeout=timeout) as resp:
                if resp.status != 200:
                    return None
                slots = (await resp.json(content_type=None)).get("total_slots")
        except (aiohttp.ClientError, TimeoutError, ValueError, AttributeError):
            return None
        return slots if isinstance(slots, int) and slots > 0 else None

    async def _watch(self, upstream: Upstream) -> None:
        """The recovery loop: check on the interval; while down, retry with backoff from 1 s."""
        backoff = 1.0
        while True:
            delay = self.interval if upstream.up else backoff
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(upstream.wake.wait(), delay)
            upstream.wake.clear()
            await self.check(upstream)
            if upstream.up:
                backoff = 1.0
                continue
            backoff = min(backoff * 2, self.interval)
            down_for = time.monotonic() - upstream.down_since
            if down_for > ALERT_AFTER_S and not upstream.alerted:
                upstream.alerted = True
                _LOGGER.error(
                    "LLM upstream %s (%s) has been down for %.0f s: %s",
                    upstream.name,
                    upstream.url,
                    down_for,
                    upstream.last_error,
                )


class _CheckFailed(Exception):
    pass


def _names(specs: list[UpstreamSpec]) -> list[str]:
    """Stable labels for metrics and the announce: host:port, numbered when one repeats."""
    hosts = [spec.url.split("://", 1)[1].split("/", 1)[0] for spec in specs]
    return [
        h if hosts.count(h) == 1 else f"{h}#{hosts[:i].count(h) + 1}" for i, h in enumerate(hosts)
    ]
