"""Tracking through the real CameraWorker and the real ByteTrack, on scripted detections.

The detector is scripted (a fake): which frames miss an object, and by how much its score drops,
must be exact for these properties, and a real model on a real clip cannot be told to miss.
Everything after the detector (worker, ObjectTracker, roboflow trackers' ByteTrack, events,
counts) is the real code.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from inference_server.metrics import Metrics
from inference_server.pipelines.cameras import CameraSpec, CameraWorker
from inference_server.pipelines.vision import Detection, DetectionResult, DetectOptions

FRAME = np.zeros((48, 64, 3), dtype=np.uint8)
Box = tuple[float, ...]
Script = list[list[tuple[str, float, Box]]]
PERSON: Box = (0.20, 0.20, 0.40, 0.90)
CAR: Box = (0.60, 0.50, 0.95, 0.80)


class ScriptedVision:
    """detect_image returns the next scripted frame's detections (filtered like the real one)."""

    def __init__(self, frames: Script) -> None:
        self.frames = frames
        self.asked: list[DetectOptions] = []

    async def detect_image(self, image: Any, options: DetectOptions) -> DetectionResult:
        self.asked.append(options)
        script = self.frames.pop(0)
        detections = [
            Detection(
                label,
                score,
                (box[0], box[1], box[2], box[3]),
                class_id=0 if label == "person" else 2,
            )
            for label, score, box in script
            if score >= options.min_score
        ]
        return DetectionResult("scripted", detections, 64, 48)


class Recorder:
    def __init__(self) -> None:
        self.messages: list[tuple[str, dict[str, Any] | None]] = []

    def __call__(
        self, suffix: str, payload: dict[str, Any] | None, qos: int, retain: bool = False
    ) -> None:
        self.messages.append((suffix, payload))

    def events(self, kind: str | None = None) -> list[dict[str, Any]]:
        return [
            p
            for s, p in self.messages
            if s == "events" and p is not None and (kind is None or p["type"] == kind)
        ]

    def counts(self) -> list[dict[str, int]]:
        return [p["counts"] for s, p in self.messages if s.endswith("/counts") and p is not None]


def moved(box: tuple[float, ...], dx: float) -> tuple[float, ...]:
    return (box[0] + dx, box[1], box[2] + dx, box[3])


async def run_frames(
    frames: Script, *, fps: float = 2.0
) -> tuple[Recorder, ScriptedVision, CameraWorker]:
    spec = CameraSpec(
        source="rtsp://camera.invalid/stream",
        fps=fps,
        labels=["person", "car"],
        min_score=0.5,
        end_after=5.0,
    )
    vision = ScriptedVision(list(frames))
    recorder = Recorder()
    worker = CameraWorker("drive", spec, vision, recorder, Metrics())  # type: ignore[arg-type]
    t = 1_700_000_000.0
    for _ in range(len(frames)):
        await worker.process_frame(FRAME, t)
        t += 1 / fps
    return recorder, vision, worker


async def test_one_new_event_per_object_across_missed_frames_at_2_fps() -> None:
    person: list[tuple[str, float, Box]] = [("person", 0.8, PERSON)]
    car: list[tuple[str, float, Box]] = [("car", 0.9, CAR)]
    # person and car for 2 s, both missed for 1.5 s (3 frames), back for 2 s, then gone.
    script = [person + car] * 4 + [[]] * 3 + [person + car] * 4 + [[]] * 14
    recorder, _, worker = await run_frames(script)
    news = recorder.events("new")
    assert sorted(e["label"] for e in news) == ["car", "person"]  # before: a second `new` each
    ends = recorder.events("end")
    assert sorted(e["label"] for e in ends) == ["car", "person"]
    # every event of one object carries one event id
    for new in news:
        assert {e["event_id"] for e in recorder.events() if e["track_id"] == new["track_id"]} == {
            new["event_id"]
        }
    # an end comes end_after (5 s) after the object was last seen, not at the first miss
    last_seen = 1_700_000_000.0 + 10 * 0.5
    assert all(e["end_time"] - last_seen > 5.0 for e in ends)
    assert worker.counts == {"person": 0, "car": 0}


async def test_counts_come_from_tracks_and_do_not_flap_with_one_missed_frame() -> None:
    person: list[tuple[str, float, Box]] = [("person", 0.8, PERSON)]
    script = [person] * 3 + [[]] + [person] * 2 + [[]] + [person] * 2
    recorder, _, _ = await run_frames(script)
    person_counts = [c["person"] for c in recorder.counts()]
    assert person_counts == [1]  # confirmed once; the missed frames change nothing


async def test_low_confidence_detections_keep_a_track_alive() -> None:
    # The person scores under min_score (0.5) for 4 frames (2 s) while walking: ByteTrack's
    # second pass keeps the track, so there is no end and no second `new`.
    script: Script = (
        [[("person", 0.8, moved(PERSON, 0.01 * i))] for i in range(3)]
        + [[("person", 0.3, moved(PERSON, 0.01 * i))] for i in range(3, 7)]
        + [[("person", 0.8, moved(PERSON, 0.01 * i))] for i in range(7, 10)]
    )
    recorder, vision, _ = await run_frames(script, fps=2.0)
    assert vision.asked[0].min_score < 0.3  # the detector is asked for the low boxes too
    assert len(recorder.events("new")) == 1
    assert recorder.events("end") == []


@pytest.mark.parametrize("fps", [0.5, 2.0, 10.0])
async def test_a_track_survives_end_after_seconds_of_misses_at_any_fps(fps: float) -> None:
    person: list[tuple[str, float, Box]] = [("person", 0.8, PERSON)]
    gap = int(4.0 * fps) - 1  # missed frames: 4 s between sightings, under end_after (5 s)
    script = [person] * 3 + [[]] * gap + [person] * 3
    recorder, _, _ = await run_frames(script, fps=fps)
    assert len(recorder.events("new")) == 1
    assert recorder.events("end") == []


async def test_a_still_scene_keeps_its_tracks_between_gated_detections() -> None:
    """Motion gating: a parked car seen at first, then a minute of frames the gate leaves out
    (nothing moved), then the 30 s heartbeat detections: one `new`, no `end`, a steady count."""
    car: list[tuple[str, float, Box]] = [("car", 0.9, CAR)]
    recorder, vision, worker = await run_frames([car] * 3)
    t = 1_700_000_000.0 + 3 * 0.5
    for second in range(60):
        for _ in range(2):  # 2 fps, all gated out
            worker.hold_frame(t)
            t += 0.5
        if second % 30 == 29:  # the gate's heartbeat: a real detection
            vision.frames.append(car)
            await worker.process_frame(FRAME, t)
            t += 0.5
    assert len(recorder.events("new")) == 1
    assert recorder.events("end") == []
    assert worker.counts == {"person": 0, "car": 1}
    # The stream then drops: no frame at all, so the car ends end_after (5 s) later.
    assert not worker.tracker.expire(t + 4.0)
    assert worker.tracker.expire(t + 6.0)
    assert worker.tracker.counts() == {"person": 0, "car": 0}
    assert len(recorder.events("end")) == 1
