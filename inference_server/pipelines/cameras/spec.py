"""What a camera registration is: the validated spec, the source policy, credential redaction."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

CAMERA_ID_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
NETWORK_SCHEMES = ("rtsp", "rtsps", "rtmp", "http", "https")
# Query keys cameras put credentials in (Reolink `password=`, Dahua/Hikvision `pwd=`, tokens).
SECRET_KEYS = re.compile(r"(pass|pwd|secret|token|key|auth|sig)", re.IGNORECASE)
REDACTED = "***"


class SourceNotAllowedError(ValueError):
    """A local file source while local files are off, or outside the media root."""


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
    # Motion gating (pipelines/vision/motion.py), on by default as in Frigate: the share of the
    # frame that must change for a detection to run (0.2%: a person far off in a 16:9 frame);
    # 0 runs one on every frame.
    motion_threshold: float = 0.002
    # A lower-resolution stream of the same camera (a camera's "sub stream") read for motion and
    # detection instead of `source`: far less to decode.
    detect_source: str | None = None

    @classmethod
    def parse(cls, data: dict[str, Any], media_root: Path | None = None) -> CameraSpec:
        """Validate an API body; ValueError names the bad field. Nothing is started here."""
        source = data.get("source")
        if not isinstance(source, str) or not source.strip():
            raise ValueError("source: a stream URL or file path is required")
        source = source.strip()
        check_source(source, media_root)
        labels = data.get("labels") or []
        if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
            raise ValueError("labels: a list of label names")
        name = data.get("name") or ""
        if not isinstance(name, str):
            raise ValueError("name: a string")
        spec = cls(source=source, labels=labels, name=name)
        for key, low, high in (
            ("fps", 0.1, 30.0),
            ("min_score", 0.0, 1.0),
            ("end_after", 0.0, 3600.0),
            ("update_interval", 0.0, 86400.0),
            ("motion_threshold", 0.0, 1.0),
        ):
            if data.get(key) is not None:
                setattr(spec, key, _number(key, data[key], low, high))
        model = data.get("model")
        if model is not None and not isinstance(model, str):
            raise ValueError("model: a model name")
        spec.model = model or None
        detect_source = data.get("detect_source")
        if detect_source is not None:
            if not isinstance(detect_source, str):
                raise ValueError("detect_source: a stream URL or file path")
            detect_source = detect_source.strip()
            try:
                if detect_source:
                    check_source(detect_source, media_root)
            except ValueError as err:  # the same rules as source, named for this field
                raise type(err)(str(err).replace("source:", "detect_source:", 1)) from None
        spec.detect_source = detect_source or None
        return spec


def _number(key: str, value: Any, low: float, high: float) -> float:
    # bool is an int in Python; "fps": true is a mistake, not 1 fps.
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"{key}: must be a number")
    try:
        number = float(value)
    except (ValueError, OverflowError):
        raise ValueError(f"{key}: must be a number") from None
    # NaN passes every comparison and 1e400 parses to inf: refuse both before anything runs.
    if not math.isfinite(number) or not low <= number <= high:
        raise ValueError(f"{key}: between {low:g} and {high:g}")
    return number


def is_local_file(source: str) -> bool:
    scheme = urlsplit(source).scheme.lower()
    return not scheme or len(scheme) == 1 or scheme == "file"  # len 1: a Windows drive letter


def local_path(source: str) -> Path:
    return Path(source.removeprefix("file://")).expanduser()


def check_source(source: str, media_root: Path | None) -> None:
    """Network streams are fine; local files only under the media root (opt-in), since
    frames come back through /snapshot and the process may read files a caller must not."""
    if not is_local_file(source):
        scheme = urlsplit(source).scheme.lower()
        if scheme not in NETWORK_SCHEMES:
            raise ValueError(
                f"source: scheme {scheme!r} is not one of {', '.join(NETWORK_SCHEMES)}, file"
            )
        return
    if media_root is None:
        raise SourceNotAllowedError(
            "source: local files are off; start the server with --media-root DIR to allow "
            "files under DIR"
        )
    root = media_root.resolve()
    try:
        path = local_path(source).resolve()
    except (OSError, RuntimeError, ValueError):
        raise SourceNotAllowedError("source: not a usable file path") from None
    if not path.is_relative_to(root):
        raise SourceNotAllowedError(f"source: local files must be under the media root {root}")


def redact_source(source: str) -> str:
    """The source with any password or secret query value replaced, for API answers and logs."""
    try:
        parts = urlsplit(source)
        netloc = parts.netloc
        if "@" in netloc:
            user = parts.username or ""
            host = netloc.rsplit("@", 1)[1]
            netloc = f"{user}:{REDACTED}@{host}" if parts.password is not None else netloc
        query = parts.query
        if query:
            pairs = parse_qsl(query, keep_blank_values=True)
            query = urlencode(
                [(k, REDACTED if SECRET_KEYS.search(k) else v) for k, v in pairs], safe="*"
            )
        return urlunsplit(parts._replace(netloc=netloc, query=query))
    except ValueError:  # not a URL we can take apart: show nothing of it
        return REDACTED


def redact_text(text: str, source: str) -> str:
    """Any message (an OpenCV or backend error) with the source's secrets taken out."""
    redacted = redact_source(source)
    if redacted != source:
        text = text.replace(source, redacted)
    parts = urlsplit(source)
    secrets = [parts.password or ""] + [
        v for k, v in parse_qsl(parts.query) if SECRET_KEYS.search(k)
    ]
    for secret in secrets:
        if len(secret) >= 3:
            text = text.replace(secret, REDACTED)
    return text
