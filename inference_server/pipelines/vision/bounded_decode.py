"""Decoding uploads within bounds: the pixel count is read from the image header before any
pixel is decoded (a 1.5 MB PNG can declare 40,000 x 40,000 pixels: 4.8 GB once decoded), and
images far larger than the model input are decoded at 1/2, 1/4 or 1/8 scale.

Pillow reads only the header on `Image.open` (it decodes lazily), so the check costs
microseconds. OpenCV's IMREAD_REDUCED_* flags make libjpeg scale in the DCT, so a 12 MP photo
for a 416 x 416 model never exists at full size in memory (PNG and WebP are decoded whole, then
scaled: the pixel limit is what bounds them).
"""

from __future__ import annotations

import io
import struct
import warnings
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image as PILImage

from .preprocess import Image, InvalidImageError

FORMATS = ("JPEG", "PNG", "WEBP", "BMP")
_REDUCED = {
    2: cv2.IMREAD_REDUCED_COLOR_2,
    4: cv2.IMREAD_REDUCED_COLOR_4,
    8: cv2.IMREAD_REDUCED_COLOR_8,
}


class ImageTooLargeError(ValueError):
    """The image declares more pixels than the server decodes."""


@dataclass(frozen=True)
class ImageHeader:
    format: str
    width: int
    height: int


def read_header(data: bytes, max_pixels: int) -> ImageHeader:
    """Format and size from the header alone; refuses what is not an image or too large."""
    if not data:
        raise InvalidImageError("the body is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PILImage.DecompressionBombWarning)
            with PILImage.open(io.BytesIO(data)) as probe:
                header = ImageHeader(str(probe.format), *probe.size)
    except PILImage.DecompressionBombError:
        raise ImageTooLargeError(
            f"the image has more than {max_pixels:,} pixels, the most this server decodes"
        ) from None
    except (OSError, ValueError, SyntaxError, TypeError, IndexError, struct.error):
        raise InvalidImageError("the body is not a JPEG or PNG image") from None
    if header.format not in FORMATS:
        raise InvalidImageError(f"{header.format} images are not supported; send JPEG or PNG")
    if header.width <= 0 or header.height <= 0:
        raise InvalidImageError("the image declares no pixels")
    if header.width * header.height > max_pixels:
        raise ImageTooLargeError(
            f"the image is {header.width} x {header.height} pixels; this server decodes at most "
            f"{max_pixels:,} (--max-image-mp)"
        )
    return header


def reduction_for(header: ImageHeader, input_width: int, input_height: int) -> int:
    """The largest of 1, 2, 4, 8 that still leaves twice the letterboxed size (no loss)."""
    scale = min(input_width / header.width, input_height / header.height)
    factor = 1
    for candidate in (2, 4, 8):
        if candidate <= 1 / (2 * scale):
            factor = candidate
    return factor


def decode_bounded(data: bytes, header: ImageHeader, reduction: int = 1) -> Image:
    """BGR pixels of an image whose header passed `read_header`."""
    flag = _REDUCED.get(reduction, cv2.IMREAD_COLOR)
    try:
        decoded = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), flag)
    except cv2.error:
        decoded = None
    if decoded is None or decoded.size == 0:
        raise InvalidImageError("the image data is broken or incomplete")
    if header.format == "JPEG" and b"\xff\xd9" not in data[-64:]:
        # libjpeg fills a truncated JPEG with gray and only warns: refuse half an image.
        raise InvalidImageError("the JPEG image is truncated")
    return np.asarray(decoded, dtype=np.uint8)
