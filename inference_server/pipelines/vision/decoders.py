"""Decoders for the output layouts YOLO users bring, then class-aware NMS.

Layouts (the model's config.pbtxt parameter `output_layout`, else guessed from the shape):
- `yolov5`: [N, boxes, 5 + C]: cx, cy, w, h (input pixels), objectness, class probabilities.
  YOLOv5/v7 ONNX exports and our Darknet converter.
- `yolov8`: [N, 4 + C, boxes]: cx, cy, w, h (input pixels), class scores, no objectness.
  YOLOv8, v9 and v11 ONNX exports.
- `darknet`: [N, boxes, 5 + C] from OpenCV DNN: cx, cy, w, h in 0..1 of the input,
  objectness, class scores already multiplied by objectness.
NMS is OpenCV's batched (class-aware) NMSBoxesBatched rather than our own.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from numpy.typing import NDArray

from .preprocess import Letterbox

LAYOUTS = ("yolov5", "yolov8", "darknet")
NMS_IOU = 0.45
# Candidates below this never reach NMS, whatever the caller's min_score: keeps NMS cheap.
CANDIDATE_FLOOR = 0.05


class LayoutError(ValueError):
    """An output tensor that matches no known layout."""


@dataclass(frozen=True)
class RawDetections:
    boxes: NDArray[np.float32]  # [K, 4] x1, y1, x2, y2 in 0..1 of the original image
    scores: NDArray[np.float32]  # [K]
    class_ids: NDArray[np.int64]  # [K]


def guess_layout(shape: tuple[int, ...], num_classes: int) -> str:
    """yolov5 or yolov8 from a [N, a, b] output shape."""
    if len(shape) == 3:
        if shape[2] == 5 + num_classes:
            return "yolov5"
        if shape[1] == 4 + num_classes:
            return "yolov8"
    raise LayoutError(f"cannot tell the YOLO layout of an output shaped {shape}")


def decode(
    output: NDArray[np.float32],
    *,
    layout: str,
    num_classes: int,
    input_size: tuple[int, int],
    box: Letterbox,
    min_score: float,
    iou: float = NMS_IOU,
) -> RawDetections:
    """One sample's output ([boxes, ...], no batch dim) to NMS-ed detections."""
    width, height = input_size
    if layout == "yolov8":
        rows = output.T  # [boxes, 4 + C]
        xywh, class_scores = rows[:, :4], rows[:, 4 : 4 + num_classes]
    elif layout in ("yolov5", "darknet"):
        xywh, class_scores = output[:, :4], output[:, 5 : 5 + num_classes]
        if layout == "yolov5":
            class_scores = class_scores * output[:, 4:5]
        else:
            xywh = xywh * np.array([width, height, width, height], dtype=np.float32)
    else:
        raise LayoutError(f"unknown output layout {layout!r} (known: {', '.join(LAYOUTS)})")
    class_ids = class_scores.argmax(axis=1)
    scores = class_scores[np.arange(len(class_ids)), class_ids]
    keep = scores >= max(min_score, CANDIDATE_FLOOR)
    xywh, scores, class_ids = xywh[keep], scores[keep], class_ids[keep]
    if len(scores) == 0:
        return _empty()
    # NMS on top-left x, y, w, h in input pixels, as OpenCV expects.
    tlwh = np.column_stack([xywh[:, 0] - xywh[:, 2] / 2, xywh[:, 1] - xywh[:, 3] / 2, xywh[:, 2:4]])
    picked = np.asarray(
        cv2.dnn.NMSBoxesBatched(
            tlwh.tolist(), scores.tolist(), class_ids.tolist(), max(min_score, CANDIDATE_FLOOR), iou
        ),
        dtype=np.int64,
    ).reshape(-1)
    tlwh, scores, class_ids = tlwh[picked], scores[picked], class_ids[picked]
    # Undo the letterbox, then normalise to 0..1 of the original image.
    x1 = (tlwh[:, 0] - box.pad_x) / box.scale
    y1 = (tlwh[:, 1] - box.pad_y) / box.scale
    x2 = x1 + tlwh[:, 2] / box.scale
    y2 = y1 + tlwh[:, 3] / box.scale
    boxes = np.column_stack([x1 / box.width, y1 / box.height, x2 / box.width, y2 / box.height])
    order = np.argsort(-scores)
    return RawDetections(
        boxes=np.clip(boxes, 0.0, 1.0).astype(np.float32)[order],
        scores=scores.astype(np.float32)[order],
        class_ids=class_ids.astype(np.int64)[order],
    )


def _empty() -> RawDetections:
    return RawDetections(
        boxes=np.zeros((0, 4), np.float32),
        scores=np.zeros((0,), np.float32),
        class_ids=np.zeros((0,), np.int64),
    )
