"""Camera stream mode, by concern: spec (what a registration is), reader (frames), tracking
(ByteTrack and events), worker (the per-camera loop and its status)."""

from .reader import FrameReader
from .spec import CAMERA_ID_RE, CameraSpec, SourceNotAllowedError, redact_source
from .tracking import ObjectTracker
from .worker import CameraWorker, EveryFrame, FrameGate, Publish

__all__ = [
    "CAMERA_ID_RE",
    "CameraSpec",
    "CameraWorker",
    "EveryFrame",
    "FrameGate",
    "FrameReader",
    "ObjectTracker",
    "Publish",
    "SourceNotAllowedError",
    "redact_source",
]
