"""Camera registrations: create, replace, remove, persisted so a restart resumes them."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ..metrics import Metrics
from .cameras import CAMERA_ID_RE, CameraSpec, CameraWorker, Publish
from .vision import VisionPipeline

_LOGGER = logging.getLogger(__name__)


class UnknownCameraError(KeyError):
    """No camera is registered under this id."""


class CameraRegistry:
    def __init__(
        self, vision: VisionPipeline, publish: Publish, metrics: Metrics, data_dir: Path
    ) -> None:
        self.vision = vision
        self.publish = publish
        self.metrics = metrics
        self.path = data_dir / "cameras.json"
        self.workers: dict[str, CameraWorker] = {}

    async def start(self) -> None:
        """Resume the cameras registered before a restart."""
        try:
            saved: dict[str, Any] = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return
        except (OSError, ValueError) as err:
            _LOGGER.error("Ignoring unreadable %s: %s", self.path, err)
            return
        for camera_id, data in saved.items():
            try:
                await self.register(camera_id, CameraSpec.parse(data), persist=False)
            except (ValueError, LookupError) as err:
                _LOGGER.error("Not resuming camera %s: %s", camera_id, err)

    async def stop(self) -> None:
        for worker in self.workers.values():
            await worker.stop()
        self.workers.clear()

    async def register(self, camera_id: str, spec: CameraSpec, *, persist: bool = True) -> bool:
        """Start (or restart with the new spec) a camera; True when it is new."""
        if not CAMERA_ID_RE.match(camera_id):
            raise ValueError("camera_id: 1-64 characters of A-Z, a-z, 0-9, _, . and -")
        config = self.vision.resolve(spec.model)  # unknown model: error before anything starts
        self.vision.label_filter(config, spec.labels)
        created = camera_id not in self.workers
        if not created:
            await self.workers.pop(camera_id).stop()
        worker = CameraWorker(camera_id, spec, self.vision, self.publish, self.metrics)
        self.workers[camera_id] = worker
        worker.start()
        if persist:
            self._save()
        return created

    async def remove(self, camera_id: str) -> None:
        worker = self.workers.pop(camera_id, None)
        if worker is None:
            raise UnknownCameraError(camera_id)
        await worker.stop()
        self._save()

    def get(self, camera_id: str) -> CameraWorker:
        try:
            return self.workers[camera_id]
        except KeyError:
            raise UnknownCameraError(camera_id) from None

    def _save(self) -> None:
        data = {cid: asdict(worker.spec) for cid, worker in self.workers.items()}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2), encoding="utf-8")
        os.replace(tmp, self.path)  # atomic: a crash never leaves half a file
