"""Annotated JPEGs of detections, drawn with supervision's annotators."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import cv2
import numpy as np
import supervision as sv

from .preprocess import Image

if TYPE_CHECKING:
    from .detector import Detection

_BOXES = sv.BoxAnnotator(thickness=2)
_LABELS = sv.LabelAnnotator(text_scale=0.5, text_padding=4)
JPEG_QUALITY = 85


def annotate_jpeg(
    image: Image, detections: Sequence[Detection], track_ids: Sequence[int] | None = None
) -> bytes:
    """JPEG of the image with a box and 'label score' (and track id) per detection."""
    scene = image.copy()
    if detections:
        h, w = image.shape[:2]
        xyxy = np.array([d.box for d in detections], dtype=np.float32) * [w, h, w, h]
        sv_detections = sv.Detections(
            xyxy=xyxy,
            confidence=np.array([d.score for d in detections], dtype=np.float32),
            class_id=np.array([d.class_id for d in detections], dtype=int),
        )
        names = [f"{d.label} {d.score:.2f}" for d in detections]
        if track_ids is not None:
            names = [f"#{t} {n}" for t, n in zip(track_ids, names, strict=True)]
        scene = _BOXES.annotate(scene, sv_detections)
        scene = _LABELS.annotate(scene, sv_detections, labels=names)
    ok, encoded = cv2.imencode(".jpg", scene, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return encoded.tobytes()
