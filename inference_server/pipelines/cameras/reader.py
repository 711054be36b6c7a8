"""The frame reader: a thread that keeps only the newest frame of a stream.

Live streams must not lag behind, so older frames are dropped. Files play at their own frame
rate and loop, as a live camera would. A source that cannot be opened, or opens but yields no
frame (an empty or broken file, a stream that accepts and sends nothing), is retried with
backoff, never in a hot loop.
"""

from __future__ import annotations

import threading
import time

import cv2
import numpy as np

from ..vision.preprocess import Image
from .spec import is_local_file, local_path, redact_source

MAX_BACKOFF_S = 30.0
JOIN_TIMEOUT_S = 5.0
NETWORK_TIMEOUT_MS = 10_000


class FrameReader(threading.Thread):
    """Keeps the newest frame of a stream; reconnects with backoff; loops files."""

    def __init__(
        self, source: str, *, max_backoff_s: float = MAX_BACKOFF_S, retrieve_every_s: float = 0.0
    ) -> None:
        super().__init__(daemon=True, name=f"camera-reader-{redact_source(source)}")
        self.is_file = is_local_file(source)
        self.source = str(local_path(source)) if self.is_file else source
        self._shown = redact_source(source)
        self._max_backoff_s = max_backoff_s
        # Every frame is grabbed (the stream must be drained, and H.264 frames depend on the
        # ones before), but converted to BGR only this often: the worker samples at its fps.
        self._retrieve_every_s = retrieve_every_s
        self.grabbed = 0
        self.retrieved = 0
        self._latest: tuple[Image, float] | None = None
        self._lock = threading.Lock()
        self._stop_event = threading.Event()
        self.error: str | None = None
        self.opens = 0  # how often the source was opened (tests and diagnostics)

    def latest(self) -> tuple[Image, float] | None:
        with self._lock:
            return self._latest

    def stop(self) -> None:
        self._stop_event.set()

    def close(self, timeout: float = JOIN_TIMEOUT_S) -> None:
        """Stop and wait for the thread (an RTSP open can block a while in FFmpeg)."""
        self.stop()
        if self.is_alive():
            self.join(timeout)

    def run(self) -> None:
        backoff = 1.0
        while not self._stop_event.is_set():
            frames = self._play_once()
            if self._stop_event.is_set():
                break
            if frames > 0:
                backoff = 1.0
                if self.is_file:
                    continue  # end of file: loop it at once
                self.error = f"stream {self._shown} ended; reconnecting"
            # Nothing came (cannot open, or opened and gave no frame): wait before retrying.
            self._stop_event.wait(backoff)
            backoff = min(backoff * 2, self._max_backoff_s)

    def _play_once(self) -> int:
        """Open the source and read until it ends; the number of frames it gave."""
        self.opens += 1
        # A hung camera must not block the reader for good (FFmpeg waits forever by default).
        timeouts = [] if self.is_file else [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, NETWORK_TIMEOUT_MS]
        timeouts += [] if self.is_file else [cv2.CAP_PROP_READ_TIMEOUT_MSEC, NETWORK_TIMEOUT_MS]
        capture = cv2.VideoCapture(self.source, cv2.CAP_ANY, timeouts)
        try:
            if not capture.isOpened():
                self.error = f"cannot open {self._shown}"
                return 0
            # Files play at their own pace, as a live camera would.
            fps = capture.get(cv2.CAP_PROP_FPS)
            delay = 1.0 / fps if self.is_file and 0 < fps < 1000 else 0.1 if self.is_file else 0.0
            frames = 0
            last_retrieved = -float("inf")
            while not self._stop_event.is_set():
                if not capture.grab():
                    break  # end of file (loop it) or a dropped stream (reconnect)
                frames += 1
                self.grabbed += 1
                now = time.monotonic()
                if now - last_retrieved < self._retrieve_every_s:
                    if delay:
                        self._stop_event.wait(delay)
                    continue
                ok, frame = capture.retrieve()
                if not ok or frame is None:
                    break
                last_retrieved = now
                self.retrieved += 1
                self.error = None
                with self._lock:
                    self._latest = (np.asarray(frame, dtype=np.uint8), time.time())
                if delay:
                    self._stop_event.wait(delay)
            if frames == 0:
                self.error = f"{self._shown} opened but gave no frame"
            return frames
        finally:
            capture.release()
