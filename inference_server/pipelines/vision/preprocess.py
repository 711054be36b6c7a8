"""Image decoding and each model's own input pre-processing.

Detector families disagree on what they were trained with: channel order (RGB/BGR), pixel scale
(0..1 or 0..255), mean/std, and how the image is fitted (centred letterbox, letterbox in the
top-left corner, or a plain resize). A model states its choice as config.pbtxt parameters, read
once into a `Preprocessing`; the pipeline applies it before any backend, so the local and the
Triton backend feed the network identical tensors.

| parameter | values | default |
|---|---|---|
| `color_order` | `RGB`, `BGR` | `RGB` |
| `input_scale` | pixel multiplier, e.g. `0.00392156862745098` (1/255) or `1` | 1/255 |
| `input_mean`, `input_std` | three numbers in the input's channel order, after scaling | 0 / 1 |
| `resize` | `letterbox` (centred), `letterbox_top_left`, `stretch` | `letterbox` |
| `pad_value` | letterbox fill, 0..255 | 114 |
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import cv2
import numpy as np
from numpy.typing import NDArray

Image = NDArray[np.uint8]
PAD_VALUE = 114  # Ultralytics' gray; the Darknet models are indifferent to it
RESIZE_MODES = ("letterbox", "letterbox_top_left", "stretch")


class InvalidImageError(ValueError):
    """Bytes that are not a decodable JPEG/PNG image."""


class PreprocessingError(ValueError):
    """config.pbtxt pre-processing parameters that cannot be used."""


@dataclass(frozen=True)
class Letterbox:
    """How an image was fitted into the network input, to map boxes back.

    input = original * scale + pad, per axis (scale_y defaults to scale_x: aspect kept).
    """

    scale: float
    pad_x: float
    pad_y: float
    width: int  # original image size
    height: int
    scale_y: float | None = None

    def to_image(self, xyxy: NDArray[np.float32]) -> NDArray[np.float32]:
        """[K, 4] x1, y1, x2, y2 in input pixels → 0..1 of the original image, clipped."""
        sy = self.scale if self.scale_y is None else self.scale_y
        x = (xyxy[:, 0::2] - self.pad_x) / (self.scale * self.width)
        y = (xyxy[:, 1::2] - self.pad_y) / (sy * self.height)
        boxes = np.column_stack([x[:, 0], y[:, 0], x[:, 1], y[:, 1]])
        return np.clip(boxes, 0.0, 1.0).astype(np.float32)


@dataclass(frozen=True)
class Preprocessing:
    """What a model expects as input; `from_parameters` reads it from config.pbtxt."""

    color_order: str = "RGB"
    scale: float = 1 / 255.0
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    resize: str = "letterbox"
    pad_value: float = PAD_VALUE

    @classmethod
    def from_parameters(cls, parameters: Mapping[str, str]) -> Preprocessing:
        """Raises PreprocessingError naming the parameter that is wrong."""
        order = parameters.get("color_order", "RGB").strip().upper()
        if order not in ("RGB", "BGR"):
            raise PreprocessingError(f"color_order must be RGB or BGR, not {order!r}")
        resize = parameters.get("resize", "letterbox").strip().lower()
        if resize not in RESIZE_MODES:
            raise PreprocessingError(
                f"resize must be one of {', '.join(RESIZE_MODES)}, not {resize!r}"
            )
        std = _triple(parameters, "input_std", (1.0, 1.0, 1.0))
        if any(v <= 0 for v in std):
            raise PreprocessingError("input_std values must be positive")
        pad_value = _number(parameters, "pad_value", PAD_VALUE)
        if not 0 <= pad_value <= 255:
            raise PreprocessingError("pad_value must be between 0 and 255")
        return cls(
            color_order=order,
            scale=_number(parameters, "input_scale", 1 / 255.0),
            mean=_triple(parameters, "input_mean", (0.0, 0.0, 0.0)),
            std=std,
            resize=resize,
            pad_value=pad_value,
        )

    def apply(self, image: Image, width: int, height: int) -> tuple[NDArray[np.float32], Letterbox]:
        """BGR image → NCHW float32 network input, and how it was fitted."""
        canvas, box = self._fit(image, width, height)
        # blobFromImageWithParams computes factor * (pixel - mean) per channel, after the
        # channel swap: (p * scale - mean) / std == (p - mean / scale) * (scale / std).
        params = cv2.dnn.Image2BlobParams(
            scalefactor=tuple(self.scale / s for s in self.std),
            size=(width, height),
            mean=tuple(m / self.scale for m in self.mean),
            swapRB=self.color_order == "RGB",
        )
        blob = np.asarray(cv2.dnn.blobFromImageWithParams(canvas, params), dtype=np.float32)
        return blob, box

    def _fit(self, image: Image, width: int, height: int) -> tuple[Image, Letterbox]:
        h, w = image.shape[:2]
        if self.resize == "stretch":
            resized = cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)
            box = Letterbox(width / w, 0, 0, w, h, scale_y=height / h)
            return np.asarray(resized, dtype=np.uint8), box
        scale = min(width / w, height / h)
        new_w, new_h = round(w * scale), round(h * scale)
        resized = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
        if self.resize == "letterbox_top_left":
            top = left = 0
        else:
            top, left = round((height - new_h) / 2 - 0.1), round((width - new_w) / 2 - 0.1)
        canvas = np.full((height, width, 3), self.pad_value, dtype=np.uint8)
        canvas[top : top + new_h, left : left + new_w] = resized
        return canvas, Letterbox(scale=scale, pad_x=left, pad_y=top, width=w, height=h)


def _number(parameters: Mapping[str, str], key: str, default: float) -> float:
    text = parameters.get(key)
    if text is None or not text.strip():
        return default
    try:
        value = float(text)
    except ValueError:
        raise PreprocessingError(f"{key} must be a number, not {text!r}") from None
    if not np.isfinite(value) or (key == "input_scale" and value <= 0):
        raise PreprocessingError(f"{key} must be a finite positive number, not {text!r}")
    return value


def _triple(
    parameters: Mapping[str, str], key: str, default: tuple[float, float, float]
) -> tuple[float, float, float]:
    text = parameters.get(key)
    if text is None or not text.strip():
        return default
    try:
        values = [float(v) for v in text.replace(",", " ").split()]
    except ValueError:
        raise PreprocessingError(f"{key} must be three numbers, not {text!r}") from None
    if len(values) != 3 or not all(np.isfinite(values)):
        raise PreprocessingError(f"{key} must be three numbers, not {text!r}")
    return values[0], values[1], values[2]


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


YOLO_DEFAULT = Preprocessing()


def letterbox(image: Image, width: int, height: int) -> tuple[NDArray[np.float32], Letterbox]:
    """The YOLO families' input: centred letterbox padded with 114, RGB in 0..1."""
    return YOLO_DEFAULT.apply(image, width, height)
