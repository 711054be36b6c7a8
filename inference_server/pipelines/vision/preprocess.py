"""Image decoding and letterboxing (the YOLO families' own pre-processing)."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from numpy.typing import NDArray

Image = NDArray[np.uint8]
PAD_VALUE = 114  # Ultralytics' gray; the Darknet models are indifferent to it


class InvalidImageError(ValueError):
    """Bytes that are not a decodable JPEG/PNG image."""


@dataclass(frozen=True)
class Letterbox:
    """How an image was fitted into the network input, to map boxes back."""

    scale: float
    pad_x: float
    pad_y: float
    width: int  # original image size
    height: int


def decode_image(data: bytes) -> Image:
    """BGR image from JPEG/PNG bytes; raises InvalidImageError for anything else."""
    if not data:
        raise InvalidImageError("the body is empty")
    buffer = np.frombuffer(data, dtype=np.uint8)
    decoded = cv2.imdecode(buffer, cv2.IMREAD_COLOR)
    if decoded is None or decoded.size == 0:
        raise InvalidImageError("the body is not a decodable JPEG or PNG image")
    image: Image = np.asarray(decoded, dtype=np.uint8)
    if _truncated_jpeg(data):
        # libjpeg fills a truncated JPEG with gray and only warns; refuse it instead of
        # detecting on half an image.
        raise InvalidImageError("the JPEG image is truncated")
    return image


def _truncated_jpeg(data: bytes) -> bool:
    return data[:2] == b"\xff\xd8" and b"\xff\xd9" not in data[-64:]


def letterbox(image: Image, width: int, height: int) -> tuple[NDArray[np.float32], Letterbox]:
    """Scale keeping aspect ratio, pad to width x height; NCHW float32 RGB in 0..1."""
    h, w = image.shape[:2]
    scale = min(width / w, height / h)
    new_w, new_h = round(w * scale), round(h * scale)
    resized = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    pad_x, pad_y = (width - new_w) / 2, (height - new_h) / 2
    top, left = round(pad_y - 0.1), round(pad_x - 0.1)
    canvas = np.full((height, width, 3), PAD_VALUE, dtype=np.uint8)
    canvas[top : top + new_h, left : left + new_w] = resized
    blob = np.asarray(cv2.dnn.blobFromImage(canvas, 1 / 255.0, swapRB=True), dtype=np.float32)
    return blob, Letterbox(scale=scale, pad_x=left, pad_y=top, width=w, height=h)
