"""Camera stream mode: read a stream, detect at a set fps, track, publish events and counts.

A reader thread keeps only the newest frame (live streams must not lag behind); the detection
loop takes it every 1/fps seconds. Tracking is roboflow `trackers`' ByteTrack.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import cv2
import numpy as np
import supervision as sv
from trackers import ByteTrackTracker

from ..metrics import Metrics
from .vision import Detection, DetectOptions, VisionPipeline
from .vision.annotate import annotate_jpeg
from .vision.preprocess import Image

_LOGGER = logging.getLogger(__name__)

CAMERA_ID_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
STREAM_SCHEMES = ("rtsp", "rtsps", "rtmp", "http", "https", "file")
Publish = Callable[[str, dict[str, Any], int], None]  # topic suffix, payload, qos


@dataclass
class CameraSpec:
    source: str
    fps: float = 2.0
    model: str | None = None
    labels: list[str] = field(default_factory=list)
    min_score: float = 0.4
    name: str = ""
    end_after: float = 5.0  # seconds unseen before a track ends
    update_interval: float = 10.0

    @classmethod
    def parse(cls, data: dict[str, Any]) -> CameraSpec:
        """Validate an API body; ValueError names the bad field."""
        source = data.get("source")
        if not isinstance(source, str) or not source.strip():
            raise ValueError("source: a stream URL or file path is required")
        scheme = urlsplit(source).scheme.lower()
        if scheme and len(scheme) > 1 and scheme not in STREAM_SCHEMES:
            raise ValueError(f"source: scheme {scheme!r} is not one of {', '.join(STREAM_SCHEMES)}")
        labels = data.get("labels") or []
        if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
            raise ValueError("labels: a list of label names")
        spec = cls(source=source.strip(), labels=labels, name=str(data.get("name") or ""))
        for key in ("fps", "min_score", "end_after", "update_interval"):
            if data.get(key) is not None:
                try:
                    setattr(spec, key, float(data[key]))
                except (TypeError, ValueError):
                    raise ValueError(f"{key}: must be a number") from None
        if not 0.1 <= spec.fps <= 30:
            raise ValueError("fps: between 0.1 and 30")
        if not 0 <= spec.min_score <= 1:
            raise ValueError("min_score: between 0 and 1")
        if data.get("model") is not None and not isinstance(data["model"], str):
            raise ValueError("model: a model name")
        spec.model = data.get("model") or None
        return spec


def redact_source(source: str) -> str:
    """The source with any password replaced, for API answers and logs."""
    parts = urlsplit(source)
    if parts.password:
        netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
        return urlunsplit(parts._replace(netloc=netloc))
    return source


class FrameReader(threading.Thread):
    """Keeps the newest frame of a stream; reconnects with backoff; loops files."""

    def __init__(self, source: str) -> None:
        super().__init__(daemon=True, name=f"camera-reader-{redact_source(source)}")
        self.source = source.removeprefix("file://")
        self.is_file = not urlsplit(self.source).scheme or len(urlsplit(self.source).scheme) == 1
        self._latest: tuple[Image, float] | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.error: str | None = None

    def latest(self) -> tuple[Image, float] | None:
        with self._lock:
            return self._latest

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> None:
        backoff = 1.0
        while not self._stop.is_set():
            capture = cv2.VideoCapture(self.source)
            if not capture.isOpened():
                self.error = f"cannot open {redact_source(self.source)}"
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 30.0)
                continue
            self.error, backoff = None, 1.0
            # Files play at their own pace, as a live camera would.
            delay = 1.0 / (capture.get(cv2.CAP_PROP_FPS) or 10.0) if self.is_file else 0.0
            while not self._stop.is_set():
                ok, frame = capture.read()
                if not ok:
                    break  # end of file (loop it) or a dropped stream (reconnect)
                with self._lock:
                    self._latest = (np.asarray(frame, dtype=np.uint8), time.time())
                if delay:
                    self._stop.wait(delay)
            capture.release()
            if not self.is_file:
                self.error = f"stream {redact_source(self.source)} ended; reconnecting"
                self._stop.wait(backoff)


@dataclass
class _Track:
    event_id: str
    label: str
    score: float
    box: tuple[float, float, float, float]
    start_time: float
    last_seen: float
    last_sent: float


class CameraWorker:
    def __init__(
        self,
        camera_id: str,
        spec: CameraSpec,
        vision: VisionPipeline,
        publish: Publish,
        metrics: Metrics,
    ) -> None:
        self.camera_id = camera_id
        self.spec = spec
        self.options = DetectOptions(spec.model, tuple(spec.labels), spec.min_score)
        self.vision = vision
        self.publish = publish
        self.metrics = metrics
        self.frames = 0
        self.last_frame_time: float | None = None
        self.error: str | None = None
        self.counts: dict[str, int] = dict.fromkeys(spec.labels, 0)
        # The newest frame and its tracks; drawn and encoded only when a snapshot is asked for
        # (most frames are never looked at), then kept until the next frame.
        self._frame: tuple[Image, list[tuple[Detection, int]]] | None = None
        self._snapshot: bytes | None = None
        self._tracks: dict[int, _Track] = {}
        self._tracker = ByteTrackTracker(
            lost_track_buffer=max(1, round(spec.end_after * spec.fps)),
            frame_rate=spec.fps,
            track_activation_threshold=spec.min_score,
            high_conf_det_threshold=spec.min_score,
            minimum_consecutive_frames=2,
        )
        self._reader = FrameReader(spec.source)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._reader.start()
        self._task = asyncio.create_task(self._run(), name=f"camera-{self.camera_id}")
        self.publish(f"cameras/{self.camera_id}/counts", self._counts_payload(), 0)

    async def stop(self) -> None:
        self._reader.stop()
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for track_id in list(self._tracks):
            self._end(track_id, time.time())

    def state(self) -> dict[str, Any]:
        return {
            "camera_id": self.camera_id,
            **{k: v for k, v in asdict(self.spec).items() if k != "source"},
            "source": redact_source(self.spec.source),
            "running": self._task is not None and not self._task.done(),
            "frames": self.frames,
            "last_frame_time": self.last_frame_time,
            "error": self.error or self._reader.error,
            "counts": dict(self.counts),
        }

    async def _run(self) -> None:
        period = 1.0 / self.spec.fps
        last_frame_at = 0.0
        while True:
            started = time.monotonic()
            latest = self._reader.latest()
            if latest is not None and latest[1] != last_frame_at:
                last_frame_at = latest[1]
                try:
                    await self._process(latest[0], latest[1])
                    self.error = None
                except Exception as err:  # keep the camera alive through a backend outage
                    if self.error != str(err):
                        _LOGGER.warning("Camera %s: %s", self.camera_id, err)
                    self.error = str(err)
            await asyncio.sleep(max(0.0, period - (time.monotonic() - started)))

    async def _process(self, frame: Image, frame_time: float) -> None:
        result = await self.vision.detect_image(frame, self.options)
        self.frames += 1
        self.last_frame_time = frame_time
        self.metrics.camera_frames.labels(self.camera_id).inc()
        self._frame = (frame, self._track(result.detections, frame_time))
        self._snapshot = None
        counts = dict.fromkeys(self.spec.labels, 0)
        for detection in result.detections:
            counts[detection.label] = counts.get(detection.label, 0) + 1
        if counts != self.counts:
            self.counts = counts
            self.publish(f"cameras/{self.camera_id}/counts", self._counts_payload(), 0)

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

    def _track(self, detections: list[Detection], now: float) -> list[tuple[Detection, int]]:
        if detections:
            sv_in = sv.Detections(
                xyxy=np.array([d.box for d in detections], dtype=np.float32),
                confidence=np.array([d.score for d in detections], dtype=np.float32),
                class_id=np.array([d.class_id for d in detections], dtype=int),
                data={"index": np.arange(len(detections))},
            )
        else:
            sv_in = sv.Detections.empty()
        out = self._tracker.update(sv_in)
        tracked: list[tuple[Detection, int]] = []
        for i, track_id in enumerate(out.tracker_id if out.tracker_id is not None else []):
            if track_id < 0:
                continue
            detection = detections[int(out.data["index"][i])]
            tracked.append((detection, int(track_id)))
            self._seen(int(track_id), detection, now)
        for track_id, track in list(self._tracks.items()):
            if now - track.last_seen > self.spec.end_after:
                self._end(track_id, now)
        return tracked

    def _seen(self, track_id: int, detection: Detection, now: float) -> None:
        track = self._tracks.get(track_id)
        if track is None:
            track = _Track(
                event_id=f"{self.camera_id}-{int(now)}-{track_id}",
                label=detection.label,
                score=detection.score,
                box=detection.box,
                start_time=now,
                last_seen=now,
                last_sent=now,
            )
            self._tracks[track_id] = track
            self._send("new", track_id, track, now)
            return
        track.last_seen, track.box = now, detection.box
        better = detection.score > track.score + 0.05
        if (
            better
            or detection.label != track.label
            or now - track.last_sent >= self.spec.update_interval
        ):
            track.score, track.label = max(track.score, detection.score), detection.label
            track.last_sent = now
            self._send("update", track_id, track, now)

    def _end(self, track_id: int, now: float) -> None:
        track = self._tracks.pop(track_id)
        self._send("end", track_id, track, now, end_time=now)

    def _send(
        self, kind: str, track_id: int, track: _Track, now: float, end_time: float | None = None
    ) -> None:
        self.publish(
            "events",
            {
                "type": kind,
                "camera": self.camera_id,
                "event_id": track.event_id,
                "track_id": track_id,
                "label": track.label,
                "score": round(track.score, 4),
                "box": [round(v, 4) for v in track.box],
                "start_time": track.start_time,
                "end_time": end_time,
                "time": now,
            },
            1,
        )

    def _counts_payload(self) -> dict[str, Any]:
        return {"camera": self.camera_id, "counts": dict(self.counts), "time": time.time()}
