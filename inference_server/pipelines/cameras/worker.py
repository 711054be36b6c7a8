"""The camera worker: newest frame → gate → detect → track → events, counts and status.

One asyncio task per camera takes the reader's newest frame every 1/fps seconds. A `FrameGate`
decides per frame whether it is worth a detection (the default lets every frame through; a
motion gate plugs in here). The worker reports its state on the retained MQTT topic
`camera/<camera_id>/status` whenever it changes: running, stalled (no new frame for a while),
error (the source cannot be read, or detection fails, e.g. the model is not there yet: it keeps
retrying), stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import asdict
from typing import Any, Protocol

from ...metrics import Metrics
from ..vision import Detection, DetectOptions, VisionPipeline
from ..vision.annotate import annotate_jpeg
from ..vision.motion import MotionGate
from ..vision.preprocess import Image
from .reader import FrameReader
from .spec import CameraSpec, redact_source, redact_text
from .tracking import ObjectTracker, detection_floor

_LOGGER = logging.getLogger(__name__)

RUNNING, STALLED, ERROR, STOPPED = "running", "stalled", "error", "stopped"
MIN_STALL_S = 5.0  # no new frame for this long (or 5 periods, if longer) is a stall; under
# the 10 s network read timeout, so a hung camera shows `stalled` before the reader gives up


class Publish(Protocol):
    """Publish under the server's base topic; payload None clears a retained topic."""

    def __call__(
        self, suffix: str, payload: dict[str, Any] | None, qos: int, retain: bool = False
    ) -> None: ...


class FrameGate(Protocol):
    """Decides per frame whether it is worth a detection (e.g. only when something moved)."""

    def admit(self, frame: Image, frame_time: float) -> bool: ...


class EveryFrame:
    def admit(self, frame: Image, frame_time: float) -> bool:
        return True


class CameraWorker:
    def __init__(
        self,
        camera_id: str,
        spec: CameraSpec,
        vision: VisionPipeline,
        publish: Publish,
        metrics: Metrics,
        *,
        gate: FrameGate | None = None,
        reader: FrameReader | None = None,
    ) -> None:
        self.camera_id = camera_id
        self.spec = spec
        # Boxes below min_score feed ByteTrack's low-confidence pass (tracking.py).
        self.options = DetectOptions(
            spec.model, tuple(spec.labels), detection_floor(spec.min_score)
        )
        self.vision = vision
        self.publish = publish
        self.metrics = metrics
        self.gate: FrameGate = gate or (
            MotionGate(spec.motion_threshold) if spec.motion_threshold > 0 else EveryFrame()
        )
        self.frames = 0
        self.last_frame_time: float | None = None
        self.error: str | None = None
        self.tracker = ObjectTracker(camera_id, spec, self._emit_event)
        self.counts: dict[str, int] = self.tracker.counts()
        # The newest frame and its tracks; drawn and encoded only when a snapshot is asked for
        # (most frames are never looked at), then kept until the next frame.
        self._frame: tuple[Image, list[tuple[Detection, int]]] | None = None
        self._last_detections: list[Detection] = []  # what a gated-out frame still shows
        self._snapshot: bytes | None = None
        self._reader = reader or FrameReader(
            spec.detect_source or spec.source, retrieve_every_s=0.5 / spec.fps
        )
        self._task: asyncio.Task[None] | None = None
        self._started = time.time()
        self._status: tuple[str, str | None] | None = None
        self.stall_after = max(MIN_STALL_S, 5.0 / spec.fps)

    def start(self) -> None:
        self._started = time.time()
        self._reader.start()
        self._task = asyncio.create_task(self._run(), name=f"camera-{self.camera_id}")
        self._publish_counts()

    async def stop(self) -> None:
        """Stop the loop, join the reader, end open tracks, report `stopped`."""
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._reader.stop()
        await asyncio.get_running_loop().run_in_executor(None, self._reader.close)
        self.tracker.end_all()
        self._report(STOPPED, None)

    @property
    def reader(self) -> FrameReader:
        return self._reader

    def status(self) -> tuple[str, str | None]:
        """(state, error) now."""
        if self._task is None or self._task.done():
            return STOPPED, None
        if self.error:
            return ERROR, self.error
        if self._reader.error:  # set while the source cannot be read, cleared by a frame
            return ERROR, self._reader.error
        latest = self._reader.latest()
        last = latest[1] if latest else None
        if time.time() - (last or self._started) > self.stall_after:
            return STALLED, f"no frame for more than {self.stall_after:g} s"
        return RUNNING, None

    def state(self) -> dict[str, Any]:
        state, error = self.status()
        return {
            "camera_id": self.camera_id,
            **{k: v for k, v in asdict(self.spec).items() if k not in ("source", "detect_source")},
            "source": redact_source(self.spec.source),
            "detect_source": redact_source(self.spec.detect_source)
            if self.spec.detect_source
            else None,
            "frames_skipped": getattr(self.gate, "skipped", 0),  # gated out: nothing moved
            "running": state in (RUNNING, STALLED),
            "state": state,
            "frames": self.frames,
            "last_frame_time": self.last_frame_time,
            "error": error,
            "counts": dict(self.counts),
        }

    async def process_frame(self, frame: Image, frame_time: float) -> None:
        """Detect, track, publish events and counts for one frame."""
        result = await self.vision.detect_image(frame, self.options)
        self.frames += 1
        self.last_frame_time = frame_time
        self.metrics.camera_frames.labels(self.camera_id).inc()
        self._last_detections = result.detections
        self._frame = (frame, self.tracker.update(result.detections, frame_time))
        self._snapshot = None
        self._update_counts()

    def hold_frame(self, frame_time: float) -> None:
        """A frame the gate left out (nothing moved): the objects are where they were, so the
        tracks see the last detections again instead of expiring while the scene stands still
        (a parked car stays one event, and a dropped stream ends tracks end_after later)."""
        self.tracker.update(self._last_detections, frame_time)
        self._update_counts()

    def _update_counts(self) -> None:
        counts = self.tracker.counts()
        if counts != self.counts:
            self.counts = counts
            self._publish_counts()

    async def snapshot(self) -> bytes | None:
        """JPEG of the newest processed frame with its tracks; None before the first frame."""
        latest = self._frame
        if self._snapshot is not None or latest is None:
            return self._snapshot
        frame, tracked = latest
        jpeg = await asyncio.get_running_loop().run_in_executor(
            None, annotate_jpeg, frame, [d for d, _ in tracked], [t for _, t in tracked]
        )
        if self._frame is latest:  # a newer frame may have arrived while encoding
            self._snapshot = jpeg
        return jpeg

    async def _run(self) -> None:
        period = 1.0 / self.spec.fps
        last_frame_at = 0.0
        while True:
            started = time.monotonic()
            latest = self._reader.latest()
            if latest is not None and latest[1] != last_frame_at:
                last_frame_at = latest[1]
                try:
                    if self.gate.admit(latest[0], latest[1]):
                        await self.process_frame(latest[0], latest[1])
                    else:
                        self.hold_frame(latest[1])
                    self.error = None
                except Exception as err:  # keep the camera alive through a backend outage
                    message = redact_text(str(err), self.spec.source)
                    if self.error != message:
                        _LOGGER.warning("Camera %s: %s", self.camera_id, message)
                    self.error = message
            elif self.tracker.expire(time.time()):
                # No new frame (a dropped stream): objects last seen long ago are gone.
                self._update_counts()
            self._report(*self.status())
            await asyncio.sleep(max(0.0, period - (time.monotonic() - started)))

    def _report(self, state: str, error: str | None) -> None:
        if (state, error) == self._status:
            return
        self._status = (state, error)
        latest = self._reader.latest()
        self.publish(
            f"camera/{self.camera_id}/status",
            {
                "camera_id": self.camera_id,
                "state": state,
                "error": error,
                "last_frame_at": latest[1] if latest else None,
            },
            1,
            True,
        )

    def _emit_event(self, event: dict[str, Any]) -> None:
        self.publish("events", event, 1)

    def _publish_counts(self) -> None:
        self.publish(
            f"cameras/{self.camera_id}/counts",
            {"camera": self.camera_id, "counts": dict(self.counts), "time": time.time()},
            0,
        )
