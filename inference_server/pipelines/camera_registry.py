"""Camera registrations: create, replace, remove, persisted so a restart resumes them."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ..backends.base import UnknownModelError
from ..metrics import Metrics
from .cameras import CAMERA_ID_RE, CameraSpec, CameraWorker, Publish
from .vision import VisionPipeline

_LOGGER = logging.getLogger(__name__)


class UnknownCameraError(KeyError):
    """No camera is registered under this id."""


class CameraRegistry:
    def __init__(
        self,
        vision: VisionPipeline,
        publish: Publish,
        metrics: Metrics,
        data_dir: Path,
        *,
        media_root: Path | None = None,
    ) -> None:
        self.vision = vision
        self.publish = publish
        self.metrics = metrics
        self.media_root = media_root
        self.path = data_dir / "cameras.json"
        self.workers: dict[str, CameraWorker] = {}
        # One change at a time: two PUTs of one id must not both start a worker.
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        """Resume the cameras registered before a restart.

        A camera whose model is not served yet (Triton still booting, a model being copied in)
        starts anyway: its worker reports the error and keeps trying until the model is there.
        """
        try:
            saved: dict[str, Any] = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return
        except (OSError, ValueError) as err:
            _LOGGER.error("Ignoring unreadable %s: %s", self.path, err)
            return
        if not isinstance(saved, dict):
            _LOGGER.error("Ignoring %s: not a JSON object", self.path)
            return
        with contextlib.suppress(OSError):  # written world-readable by an older version
            os.chmod(self.path, 0o600)
        for camera_id, data in saved.items():
            try:
                spec = CameraSpec.parse(data, self.media_root)
                await self.register(camera_id, spec, persist=False, require_model=False)
            except (ValueError, LookupError, TypeError, AttributeError) as err:
                _LOGGER.error("Not resuming camera %s: %s", camera_id, err)

    async def stop(self) -> None:
        async with self._lock:
            workers = list(self.workers.values())
            self.workers.clear()
        # Each worker stops even when another fails to.
        results = await asyncio.gather(*(w.stop() for w in workers), return_exceptions=True)
        for worker, result in zip(workers, results, strict=True):
            if isinstance(result, BaseException):
                _LOGGER.error("Camera %s did not stop cleanly: %s", worker.camera_id, result)

    async def register(
        self,
        camera_id: str,
        spec: CameraSpec,
        *,
        persist: bool = True,
        require_model: bool = True,
    ) -> bool:
        """Start (or restart with the new spec) a camera; True when it is new.

        Everything is validated before the old worker (if any) is stopped.
        """
        if not CAMERA_ID_RE.match(camera_id):
            raise ValueError("camera_id: 1-64 characters of A-Z, a-z, 0-9, _, . and -")
        try:
            config = self.vision.resolve(spec.model)
            self.vision.label_filter(config, spec.labels)
        except UnknownModelError:
            if require_model:
                raise
            _LOGGER.warning("Camera %s waits for its model %s", camera_id, spec.model or "default")
        async with self._lock:
            old = self.workers.pop(camera_id, None)
            if old is not None:
                await old.stop()
            worker = CameraWorker(camera_id, spec, self.vision, self.publish, self.metrics)
            self.workers[camera_id] = worker
            worker.start()
            if persist:
                self._save()
        return old is None

    async def remove(self, camera_id: str) -> None:
        async with self._lock:
            worker = self.workers.pop(camera_id, None)
            if worker is None:
                raise UnknownCameraError(camera_id)
            await worker.stop()
            self._save()
        self.publish(f"camera/{camera_id}/status", None, 1, True)  # clear the retained status

    def get(self, camera_id: str) -> CameraWorker:
        try:
            return self.workers[camera_id]
        except KeyError:
            raise UnknownCameraError(camera_id) from None

    def _save(self) -> None:
        data = {cid: asdict(worker.spec) for cid, worker in self.workers.items()}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        # 0600: sources may carry camera passwords.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            json.dump(data, file, indent=2)
        os.chmod(tmp, 0o600)  # O_CREAT's mode does not apply to a file left from a crash
        os.replace(tmp, self.path)  # atomic: a crash never leaves half a file
