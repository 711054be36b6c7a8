"""Motion gating for camera streams: detect only when something moved.

As Frigate does it: each frame is shrunk to a small gray image, compared with a slowly updated
background, and the share of pixels that changed decides. At 160 px wide this costs about a
millisecond against tens for a detection, so a quiet camera costs almost nothing but decoding.

A gate says yes to the first frame (nothing is known yet), to the first frame after a gap in
the stream (a camera that dropped and came back: what it shows now is unknown), to every frame
while the picture moves, for `hold_s` after it stops (so tracks see the object leave or settle),
and once every `heartbeat_s` regardless (a car parked before the server started is counted).
"""

from __future__ import annotations

import time

import cv2
import numpy as np
from numpy.typing import NDArray

from .preprocess import Image

WIDTH = 160  # the motion image's width; its height keeps the frame's aspect
PIXEL_DELTA = 25  # gray levels a pixel must change by to count as moved (sensor noise is less)
BACKGROUND_ALPHA = 0.1  # how fast the background follows the scene (light changes, shadows)
STREAM_GAP_S = 5.0  # no frame for this long: the stream dropped, so learn the scene anew


class MotionGate:
    """`admit(frame, t)`: whether this frame is worth a detection.

    threshold: the share of the motion image that must change (0.002 = 0.2%, about 40 of the
    19,200 pixels of a 16:9 frame); 0 admits every frame.
    """

    def __init__(self, threshold: float, *, hold_s: float = 2.0, heartbeat_s: float = 30.0) -> None:
        self.threshold = threshold
        self.hold_s = hold_s
        self.heartbeat_s = heartbeat_s
        self._background: NDArray[np.float32] | None = None
        self._last_motion = -float("inf")
        self._last_admitted = -float("inf")
        self._last_frame = -float("inf")
        self.admitted = 0
        self.skipped = 0
        self.last_motion_share = 0.0

    def motion_share(self, frame: Image) -> float:
        """The share of the downscaled frame that differs from the background; learns it."""
        h, w = frame.shape[:2]
        small = cv2.resize(
            frame, (WIDTH, max(1, round(h * WIDTH / w))), interpolation=cv2.INTER_AREA
        )
        gray = cv2.GaussianBlur(cv2.cvtColor(small, cv2.COLOR_BGR2GRAY), (5, 5), 0)
        if self._background is None or self._background.shape != gray.shape:
            self._background = gray.astype(np.float32)
            return 1.0  # nothing to compare with: treat as motion
        delta = cv2.absdiff(gray, cv2.convertScaleAbs(self._background))
        share = float(np.count_nonzero(delta > PIXEL_DELTA)) / delta.size
        cv2.accumulateWeighted(gray, self._background, BACKGROUND_ALPHA)
        return share

    def admit(self, frame: Image, frame_time: float) -> bool:
        if self.threshold <= 0:
            self.admitted += 1
            return True
        now = time.monotonic()
        if now - self._last_frame > STREAM_GAP_S:
            self._background = None  # the tracks expired meanwhile: look again
        self._last_frame = now
        self.last_motion_share = self.motion_share(frame)
        if self.last_motion_share >= self.threshold:
            self._last_motion = now
        admit = (
            now - self._last_motion <= self.hold_s or now - self._last_admitted >= self.heartbeat_s
        )
        if admit:
            self._last_admitted = now
            self.admitted += 1
        else:
            self.skipped += 1
        return admit
