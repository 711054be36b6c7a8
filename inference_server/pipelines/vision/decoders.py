"""Decoders for the detector output layouts users bring, then class-aware NMS.

Layouts (the model's config.pbtxt parameter `output_layout`, else guessed from the shape of a
single output):
- `yolov5`: [N, boxes, 5 + C]: cx, cy, w, h (input pixels), objectness, class probabilities.
  YOLOv5/v7 ONNX exports and our Darknet converter.
- `yolov8`: [N, 4 + C, boxes]: cx, cy, w, h (input pixels), class scores, no objectness.
  YOLOv8, v9 and v11 ONNX exports.
- `darknet`: [N, boxes, 5 + C] from OpenCV DNN: cx, cy, w, h in 0..1 of the input,
  objectness, class scores already multiplied by objectness.
- `yolox`, `picodet`, `nanodet`, `detr`: see heads.py.
Parameters beside it: `nms_iou` (else the family's own), `strides` (e.g. "8,16,32").
NMS is OpenCV's batched (class-aware) NMSBoxesBatched rather than our own.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import cv2
import numpy as np
from numpy.typing import NDArray

from . import heads
from .preprocess import Letterbox

LAYOUTS = ("yolov5", "yolov8", "darknet", "yolox", "picodet", "nanodet", "detr")
NMS_IOU = 0.45
# Each family's upstream NMS threshold; DETR needs none (one query, one object).
FAMILY_NMS_IOU = {"yolox": 0.65, "picodet": 0.6, "nanodet": 0.6, "detr": None}
# Candidates below this never reach NMS, whatever the caller's min_score: keeps NMS cheap.
CANDIDATE_FLOOR = 0.05


class LayoutError(ValueError):
    """An output tensor that matches no known layout."""


@dataclass(frozen=True)
class RawDetections:
    boxes: NDArray[np.float32]  # [K, 4] x1, y1, x2, y2 in 0..1 of the original image
    scores: NDArray[np.float32]  # [K]
    class_ids: NDArray[np.int64]  # [K]


@dataclass(frozen=True)
class Decoding:
    """How to read one model's outputs; `from_parameters` reads config.pbtxt once."""

    layout: str | None  # None: guess from the output shape (single-output YOLO models)
    nms_iou: float | None = NMS_IOU  # None: no NMS
    strides: tuple[int, ...] | None = None  # None: the family's own

    @classmethod
    def from_parameters(cls, parameters: Mapping[str, str]) -> Decoding:
        layout = parameters.get("output_layout") or None
        if layout is not None and layout not in LAYOUTS:
            raise LayoutError(f"unknown output layout {layout!r} (known: {', '.join(LAYOUTS)})")
        iou = FAMILY_NMS_IOU.get(layout or "", NMS_IOU)
        if parameters.get("nms_iou"):
            try:
                iou = float(parameters["nms_iou"])
            except ValueError:
                raise LayoutError(
                    f"nms_iou must be a number, not {parameters['nms_iou']!r}"
                ) from None
            if not 0.0 < iou <= 1.0:
                raise LayoutError("nms_iou must be in (0, 1]")
        strides = None
        if parameters.get("strides"):
            try:
                strides = tuple(int(s) for s in parameters["strides"].replace(",", " ").split())
            except ValueError:
                raise LayoutError(
                    f"strides must be integers, not {parameters['strides']!r}"
                ) from None
            if not strides or min(strides) <= 0:
                raise LayoutError("strides must be positive integers")
        return cls(layout=layout, nms_iou=iou, strides=strides)


def guess_layout(shape: tuple[int, ...], num_classes: int) -> str:
    """yolov5 or yolov8 from a [N, a, b] output shape."""
    if len(shape) == 3:
        if shape[2] == 5 + num_classes:
            return "yolov5"
        if shape[1] == 4 + num_classes:
            return "yolov8"
    raise LayoutError(f"cannot tell the YOLO layout of an output shaped {shape}")


def decode(
    outputs: NDArray[np.float32] | Sequence[NDArray[np.float32]],
    *,
    layout: str,
    num_classes: int,
    input_size: tuple[int, int],
    box: Letterbox,
    min_score: float,
    iou: float | None = NMS_IOU,
    strides: Sequence[int] | None = None,
) -> RawDetections:
    """One sample's outputs (no batch dim; in config order) to NMS-ed detections.

    A single array is the one output of a single-output model.
    """
    tensors = [outputs] if isinstance(outputs, np.ndarray) else list(outputs)
    floor = max(min_score, CANDIDATE_FLOOR)
    try:
        if layout in ("yolov5", "yolov8", "darknet"):
            xyxy, scores, class_ids = _yolo(tensors[0], layout, num_classes, input_size, floor)
        elif layout == "yolox":
            xyxy, scores, class_ids = heads.yolox(
                tensors[0],
                num_classes=num_classes,
                input_size=input_size,
                floor=floor,
                strides=strides or heads.YOLOX_STRIDES,
            )
        elif layout in ("picodet", "nanodet"):
            xyxy, scores, class_ids = heads.gfl(
                tensors,
                num_classes=num_classes,
                input_size=input_size,
                floor=floor,
                centre_offset="nanodet" if layout == "nanodet" else "half_stride",
                strides=strides or heads.GFL_STRIDES,
            )
        elif layout == "detr":
            xyxy, scores, class_ids = heads.detr(
                tensors, num_classes=num_classes, input_size=input_size, floor=floor
            )
        else:
            raise LayoutError(f"unknown output layout {layout!r} (known: {', '.join(LAYOUTS)})")
    except heads.HeadError as err:
        raise LayoutError(str(err)) from err
    if len(scores) == 0:
        return _empty()
    if iou is not None:
        picked = _nms(xyxy, scores, class_ids, floor, iou)
        xyxy, scores, class_ids = xyxy[picked], scores[picked], class_ids[picked]
    order = np.argsort(-scores, kind="stable")
    return RawDetections(
        boxes=box.to_image(xyxy)[order],
        scores=scores.astype(np.float32)[order],
        class_ids=class_ids.astype(np.int64)[order],
    )


def _yolo(
    output: NDArray[np.float32],
    layout: str,
    num_classes: int,
    input_size: tuple[int, int],
    floor: float,
) -> heads.Candidates:
    width, height = input_size
    if layout == "yolov8":
        rows = output.T  # [boxes, 4 + C]
        xywh, class_scores = rows[:, :4], rows[:, 4 : 4 + num_classes]
    else:
        xywh, class_scores = output[:, :4], output[:, 5 : 5 + num_classes]
        if layout == "yolov5":
            class_scores = class_scores * output[:, 4:5]
        else:
            xywh = xywh * np.array([width, height, width, height], dtype=np.float32)
    class_ids = class_scores.argmax(axis=1)
    scores = class_scores[np.arange(len(class_ids)), class_ids]
    keep = scores >= floor
    xywh = xywh[keep]
    xyxy = np.column_stack([xywh[:, :2] - xywh[:, 2:4] / 2, xywh[:, :2] + xywh[:, 2:4] / 2])
    return (
        xyxy.astype(np.float32),
        scores[keep].astype(np.float32),
        class_ids[keep].astype(np.int64),
    )


def _nms(
    xyxy: NDArray[np.float32],
    scores: NDArray[np.float32],
    class_ids: NDArray[np.int64],
    floor: float,
    iou: float,
) -> NDArray[np.int64]:
    # OpenCV wants top-left x, y, w, h.
    tlwh = np.column_stack([xyxy[:, :2], xyxy[:, 2:4] - xyxy[:, :2]])
    return np.asarray(
        cv2.dnn.NMSBoxesBatched(tlwh.tolist(), scores.tolist(), class_ids.tolist(), floor, iou),
        dtype=np.int64,
    ).reshape(-1)


def _empty() -> RawDetections:
    return RawDetections(
        boxes=np.zeros((0, 4), np.float32),
        scores=np.zeros((0,), np.float32),
        class_ids=np.zeros((0,), np.int64),
    )
