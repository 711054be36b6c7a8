"""Composition root: settings → backend → pipelines → MQTT presence, and their lifecycle."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from . import PROTOCOL_VERSION, __version__
from .admission import UploadSlots
from .backends.base import Backend
from .backends.local import LocalBackend
from .config import Settings, ensure_server_id
from .metrics import Metrics
from .mqtt import MqttPresence
from .pipelines.camera_registry import CameraRegistry
from .pipelines.llm import LlmPipeline, UpstreamSpec
from .pipelines.sensors import SensorPipeline
from .pipelines.speech import SpeechLimits, SpeechPipeline
from .pipelines.speech.wyoming_server import WyomingSttServer
from .pipelines.vision import VisionPipeline

_LOGGER = logging.getLogger(__name__)

STATS_TICK_S = 2.0


def make_backend(settings: Settings, metrics: Metrics) -> Backend:
    if settings.backend == "triton":
        from .backends.triton import TritonBackend

        return TritonBackend(
            settings.triton_url, local_repo=settings.model_repo, max_in_flight=settings.max_queue
        )
    return LocalBackend(
        settings.model_repo,
        batching=settings.batching,
        max_queue=settings.max_queue,
        on_batch=lambda model, size: metrics.batch_size.labels(model).observe(size),
    )


def advertised_url(settings: Settings) -> str:
    if settings.advertise_url:
        return settings.advertise_url.rstrip("/")
    host = settings.host
    if host in ("0.0.0.0", "::", ""):
        host = _primary_address()
    return f"http://{host}:{settings.port}"


def _primary_address() -> str:
    """The address other LAN hosts reach us on (a UDP connect sends no packet)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(("10.255.255.255", 1))
            return str(sock.getsockname()[0])
        except OSError:
            return socket.gethostbyname(socket.gethostname())


class Server:
    def __init__(self, settings: Settings, backend: Backend | None = None) -> None:
        self.settings = settings
        self.server_id = ensure_server_id(settings)
        self.name = settings.name or f"Edge inference on {socket.gethostname()}"
        self.metrics = Metrics()
        self.metrics.queue_limit.set(settings.max_queue)
        self.uploads = UploadSlots(settings.max_uploads)
        self.backend = backend or make_backend(settings, self.metrics)
        self.vision = VisionPipeline(
            self.backend, self.metrics, default_model=settings.default_model
        )
        self.mqtt = MqttPresence(settings, self.server_id) if settings.mqtt_host else None
        self.llm = LlmPipeline(
            [UpstreamSpec.parse(u) for u in settings.llm_upstream],
            self.metrics.registry,
            timeout=settings.llm_timeout,
            health_interval=settings.llm_health_interval,
            max_queue=settings.max_queue,
        )
        self.speech = SpeechPipeline(
            settings.speech_model_dir,
            settings.speech_model,
            SpeechLimits(
                max_audio_s=settings.speech_max_audio_s, max_streams=settings.speech_max_streams
            ),
            short_window=settings.speech_short_window,
        )
        self.wyoming = (
            WyomingSttServer(self.speech, settings.host, settings.wyoming_port)
            if settings.wyoming_port and self.speech.available
            else None
        )
        self._speech_load: asyncio.Task[None] | None = None
        self.sensors = SensorPipeline(
            settings.data_dir, self._publish, registry=self.metrics.registry, backend=self.backend
        )
        self.cameras = CameraRegistry(
            self.vision,
            self._publish,
            self.metrics,
            settings.data_dir,
            media_root=Path(settings.media_root).expanduser() if settings.media_root else None,
        )
        self._stats_task: asyncio.Task[None] | None = None
        self._url: str | None = None  # resolved once, off the event loop (start)

    async def start(self) -> None:
        # Finding our LAN address may block on DNS: never on the event loop, never per announce.
        self._url = await asyncio.get_running_loop().run_in_executor(
            None, advertised_url, self.settings
        )
        await self.backend.start()
        await self.llm.start()
        if not self.vision.models():
            _LOGGER.warning(
                "No detection model in %s: run `python -m inference_server.models.install_default "
                "--repo %s`",
                self.settings.model_repo,
                self.settings.model_repo,
            )
        if self.mqtt:
            self.mqtt.set_announce(self.announce())
            self.mqtt.start()
        await self.cameras.start()
        await self.sensors.start()
        # The Whisper model loads in its own thread meanwhile; requests wait for it if early.
        if self.settings.speech_preload:
            self._speech_load = asyncio.create_task(self.speech.start(), name="speech-load")
        if self.wyoming:
            await self.wyoming.start()
        self._stats_task = asyncio.create_task(self._stats_loop(), name="stats")

    async def stop(self) -> None:
        """Every step runs even when an earlier one fails (a half-stopped server leaks)."""
        if self._stats_task:
            self._stats_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._stats_task
        steps: list[tuple[str, Callable[[], Awaitable[object]]]] = [
            ("cameras", self.cameras.stop),
            ("sensors", self.sensors.stop),
            ("vision", self.vision.close),
            ("backend", self.backend.stop),
            ("llm", self.llm.stop),
            ("speech", self._stop_speech),
        ]
        if self.mqtt:
            mqtt = self.mqtt
            steps.insert(
                2, ("mqtt", lambda: asyncio.get_running_loop().run_in_executor(None, mqtt.stop))
            )
        for name, step in steps:
            try:
                await step()
            except Exception:
                _LOGGER.exception("Stopping %s failed; stopping the rest", name)

    async def _stop_speech(self) -> None:
        if self.wyoming:
            await self.wyoming.stop()
        await self.speech.close()

    def backends(self) -> dict[str, Any]:
        return {self.backend.name: self.backend.describe(), **self.llm.backends()}

    def capabilities(self) -> dict[str, Any]:
        capabilities = {"vision": self.vision.describe()} if self.vision.models() else {}
        if self.llm.configured:
            capabilities["llm"] = self.llm.describe()
        if self.speech.available:
            capabilities["stt"] = self.speech.describe()
            if self.wyoming:
                capabilities["stt"]["wyoming_port"] = self.settings.wyoming_port
        capabilities["sensors"] = self.sensors.describe()
        return capabilities

    def info(self) -> dict[str, Any]:
        return {
            "protocol": PROTOCOL_VERSION,
            "server_id": self.server_id,
            "name": self.name,
            "version": __version__,
            "capabilities": self.capabilities(),
            "backends": self.backends(),
        }

    def announce(self) -> dict[str, Any]:
        url = self._url or self.settings.advertise_url.rstrip("/")
        return {
            **self.info(),
            # The broker is shared with every device in the house: readiness only, no URLs.
            "backends": self.public_backends(),
            "api": {"url": url, "urls": [url]},
            "auth": "bearer",
        }

    def public_backends(self) -> dict[str, Any]:
        """Each backend's readiness and nothing else (for health, the announce and stats)."""
        return {name: {"ready": bool(d.get("ready"))} for name, d in self.backends().items()}

    def stats(self) -> dict[str, Any]:
        return {
            "time": time.time(),
            "uptime_s": round(time.time() - self.metrics.started, 1),
            "latency_ms": self.metrics.latency_summary(),
            "queue_depth": self.vision.queue_depths(),
            "backends": self.public_backends(),
            "cameras": {cid: w.frames for cid, w in self.cameras.workers.items()},
        }

    def _publish(
        self, suffix: str, payload: dict[str, Any] | None, qos: int, retain: bool = False
    ) -> None:
        if self.mqtt:
            self.mqtt.publish(suffix, payload, qos=qos, retain=retain)

    async def _stats_loop(self) -> None:
        """Readiness gauges and announce refresh every few seconds; stats on their interval."""
        next_stats = 0.0
        while True:
            try:
                next_stats = self._stats_tick(next_stats)
            except Exception:  # one bad tick must not end readiness and announces for good
                _LOGGER.exception("Stats update failed; trying again")
            await asyncio.sleep(STATS_TICK_S)

    def _stats_tick(self, next_stats: float) -> float:
        for name, described in self.backends().items():
            self.metrics.backend_ready.labels(name).set(1 if described.get("ready") else 0)
        for model, depth in self.vision.queue_depths().items():
            self.metrics.queue_depth.labels(model).set(depth)
        if self.mqtt:
            self.mqtt.set_announce(self.announce())  # publishes only when it changed
            if time.monotonic() >= next_stats:
                next_stats = time.monotonic() + self.settings.stats_interval
                self.mqtt.publish("stats", self.stats())
        return next_stats


# The running Server, for route handlers (request.app[SERVER_KEY]).
SERVER_KEY: web.AppKey[Server] = web.AppKey("server", Server)
