"""Tracking and events: ByteTrack (roboflow `trackers`) over detections, tracks → MQTT events.

ByteTrack's settings are in its own units: `lost_track_buffer` counts 30 fps frames whatever the
stream's rate, so `end_after` seconds is `end_after * 30` of them, and each update carries the
frame's timestamp so a slow or uneven camera still keeps a track for `end_after` seconds. The
detector is asked for boxes down to `detection_floor`, below `min_score`, so ByteTrack's second,
low-confidence pass can keep a track through a frame where the object scores low; only boxes at
`min_score` or more start tracks. Counts are the live tracks per label, so they do not flap with
one missed detection.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import supervision as sv
from trackers import ByteTrackTracker

from ..vision import Detection
from .spec import CameraSpec

BYTETRACK_FPS = 30.0  # the unit of ByteTrack's lost_track_buffer
Emit = Callable[[dict[str, Any]], None]


def detection_floor(min_score: float) -> float:
    """The lowest score asked from the detector for the low-confidence pass."""
    return round(max(0.05, min_score / 2), 4)


@dataclass
class _Track:
    event_id: str
    label: str
    score: float
    box: tuple[float, float, float, float]
    start_time: float
    last_seen: float
    last_sent: float


class ObjectTracker:
    def __init__(self, camera_id: str, spec: CameraSpec, emit: Emit) -> None:
        self.camera_id = camera_id
        self.spec = spec
        self._emit = emit
        self._tracks: dict[int, _Track] = {}
        self._tracker = ByteTrackTracker(
            lost_track_buffer=max(1, round(spec.end_after * BYTETRACK_FPS)),
            frame_rate=spec.fps,
            track_activation_threshold=spec.min_score,
            high_conf_det_threshold=spec.min_score,
            minimum_consecutive_frames=2,
        )

    def update(self, detections: list[Detection], now: float) -> list[tuple[Detection, int]]:
        """Feed one frame's detections (scores down to detection_floor); the tracked ones."""
        if detections:
            sv_in = sv.Detections(
                xyxy=np.array([d.box for d in detections], dtype=np.float32),
                confidence=np.array([d.score for d in detections], dtype=np.float32),
                class_id=np.array([d.class_id for d in detections], dtype=int),
                data={"index": np.arange(len(detections))},
            )
        else:
            sv_in = sv.Detections.empty()
        out = self._tracker.update(sv_in, timestamp=now)
        tracked: list[tuple[Detection, int]] = []
        ids: list[int] = [] if out.tracker_id is None else [int(t) for t in out.tracker_id]
        for i, track_id in enumerate(ids):
            if track_id < 0:
                continue
            detection = detections[int(out.data["index"][i])]
            tracked.append((detection, int(track_id)))
            self._seen(int(track_id), detection, now)
        self.expire(now)
        return tracked

    def expire(self, now: float) -> bool:
        """End the tracks unseen for end_after seconds (also while no frame arrives)."""
        expired = [
            t for t, track in self._tracks.items() if now - track.last_seen > self.spec.end_after
        ]
        for track_id in expired:
            self._end(track_id, now)
        return bool(expired)

    def counts(self) -> dict[str, int]:
        """Live tracks per label (every watched label present, zero when none)."""
        counts = dict.fromkeys(self.spec.labels, 0)
        for track in self._tracks.values():
            counts[track.label] = counts.get(track.label, 0) + 1
        return counts

    def end_all(self, now: float | None = None) -> None:
        now = time.time() if now is None else now
        for track_id in list(self._tracks):
            self._end(track_id, now)

    def _seen(self, track_id: int, detection: Detection, now: float) -> None:
        track = self._tracks.get(track_id)
        if track is None:
            if detection.score < self.spec.min_score:
                return  # a low-confidence match never starts an event
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
            or (detection.label != track.label and detection.score >= self.spec.min_score)
            or now - track.last_sent >= self.spec.update_interval
        ):
            if detection.score >= self.spec.min_score:
                track.label = detection.label
            track.score = max(track.score, detection.score)
            track.last_sent = now
            self._send("update", track_id, track, now)

    def _end(self, track_id: int, now: float) -> None:
        track = self._tracks.pop(track_id)
        self._send("end", track_id, track, now, end_time=now)

    def _send(
        self, kind: str, track_id: int, track: _Track, now: float, end_time: float | None = None
    ) -> None:
        self._emit(
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
            }
        )
