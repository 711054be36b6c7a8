"""Raw outputs of the anchor-free detector families → candidate boxes in input pixels.

- `yolox`: YOLOX [boxes, 5 + C]; box offsets relative to a grid per stride (8, 16, 32):
  cx = (p0 + gx)·s, cy = (p1 + gy)·s, w = exp(p2)·s, h = exp(p3)·s; objectness and class
  scores already through a sigmoid; score = obj x cls.
- `picodet`, `nanodet`: GFL heads, one class-score tensor [HW, C] (sigmoid applied) and one
  box tensor [HW, 4·(R+1)] per stride; each box side is a distribution over R+1 bins
  (softmax, expectation, x stride) from the anchor centre: (i + 0.5)·s for PicoDet,
  i·s + (s - 1)/2 for NanoDet. Outputs are matched to strides by their sizes, never by name
  (NanoDet-m 320's export names them wrongly).
- `detr`: DETR, RT-DETR, D-FINE, RF-DETR exports without the post-processor: boxes [Q, 4]
  cx, cy, w, h in 0..1 of the input and class logits [Q, C] (sigmoid), or [Q, C + 1] with a
  trailing no-object class (the original DETR: softmax). One box per query: no NMS.

Each returns (x1y1x2y2 [K, 4] in input pixels, scores [K], class ids [K]) for the candidates
at or above `floor`, so the expensive part (box decoding) only runs on those.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
from numpy.typing import NDArray

Candidates = tuple[NDArray[np.float32], NDArray[np.float32], NDArray[np.int64]]
YOLOX_STRIDES = (8, 16, 32)
GFL_STRIDES = (8, 16, 32, 64)


class HeadError(ValueError):
    """Outputs whose shapes do not fit the declared layout."""


def yolox(
    output: NDArray[np.float32],
    *,
    num_classes: int,
    input_size: tuple[int, int],
    floor: float,
    strides: Sequence[int] = YOLOX_STRIDES,
) -> Candidates:
    grid, grid_strides = _yolox_grid(input_size, tuple(strides))
    if output.ndim != 2 or output.shape[0] != len(grid) or output.shape[1] < 5 + num_classes:
        raise HeadError(
            f"yolox output {output.shape} does not fit a {input_size} input with strides "
            f"{tuple(strides)} ({len(grid)} boxes x {5 + num_classes})"
        )
    class_scores = output[:, 5 : 5 + num_classes] * output[:, 4:5]
    class_ids, scores, keep = _best(class_scores, floor)
    raw, s = output[keep, :4], grid_strides[keep]
    centre = (raw[:, :2] + grid[keep]) * s
    half = np.exp(np.minimum(raw[:, 2:4], 20.0)) * s / 2  # clamp: exp of garbage overflows
    return np.hstack([centre - half, centre + half]).astype(np.float32), scores, class_ids


@lru_cache(maxsize=16)
def _yolox_grid(
    input_size: tuple[int, int], strides: tuple[int, ...]
) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """Grid cells (gx, gy) row by row per stride, and each cell's stride, as YOLOX lays out."""
    width, height = input_size
    cells, cell_strides = [], []
    for s in strides:
        gy, gx = np.mgrid[0 : height // s, 0 : width // s]
        cells.append(np.column_stack([gx.ravel(), gy.ravel()]))
        cell_strides.append(np.full((gx.size, 1), s))
    return (
        np.concatenate(cells).astype(np.float32),
        np.concatenate(cell_strides).astype(np.float32),
    )


def gfl(
    outputs: Sequence[NDArray[np.float32]],
    *,
    num_classes: int,
    input_size: tuple[int, int],
    floor: float,
    centre_offset: str,
    strides: Sequence[int] = GFL_STRIDES,
) -> Candidates:
    """PicoDet (centre_offset `half_stride`) and NanoDet (`nanodet`) heads."""
    width, height = input_size
    tensors = [o.reshape(-1, o.shape[-1]) for o in outputs]
    scores_by_size = {t.shape[0]: t for t in tensors if t.shape[1] == num_classes}
    boxes_by_size = {
        t.shape[0]: t for t in tensors if t.shape[1] != num_classes and t.shape[1] % 4 == 0
    }
    boxes, scores, class_ids = [], [], []
    for s in strides:
        cols, rows = math.ceil(width / s), math.ceil(height / s)
        cls, reg = scores_by_size.get(cols * rows), boxes_by_size.get(cols * rows)
        if cls is None or reg is None:
            continue
        level_ids, level_scores, keep = _best(cls, floor)
        index = np.flatnonzero(keep)
        x, y = (index % cols).astype(np.float32), (index // cols).astype(np.float32)
        if centre_offset == "nanodet":
            cx, cy = x * s + (s - 1) / 2, y * s + (s - 1) / 2
        else:
            cx, cy = (x + 0.5) * s, (y + 0.5) * s
        ltrb = _distribution_expectation(reg[keep]) * s
        boxes.append(
            np.column_stack([cx - ltrb[:, 0], cy - ltrb[:, 1], cx + ltrb[:, 2], cy + ltrb[:, 3]])
        )
        scores.append(level_scores)
        class_ids.append(level_ids)
    if not boxes:
        raise HeadError(
            f"GFL outputs {[t.shape for t in tensors]} match no stride of {tuple(strides)} "
            f"for a {width}x{height} input"
        )
    return (
        np.concatenate(boxes).astype(np.float32),
        np.concatenate(scores).astype(np.float32),
        np.concatenate(class_ids).astype(np.int64),
    )


def _distribution_expectation(reg: NDArray[np.float32]) -> NDArray[np.float32]:
    """[K, 4·(R+1)] bin logits → [K, 4] expected distances in strides (GFL / DFL)."""
    bins = reg.reshape(len(reg), 4, reg.shape[1] // 4)
    bins = np.exp(bins - bins.max(axis=2, keepdims=True))
    bins /= bins.sum(axis=2, keepdims=True)
    return np.asarray(bins @ np.arange(bins.shape[2]), dtype=np.float32)


def detr(
    outputs: Sequence[NDArray[np.float32]],
    *,
    num_classes: int,
    input_size: tuple[int, int],
    floor: float,
) -> Candidates:
    width, height = input_size
    tensors = [o.reshape(-1, o.shape[-1]) for o in outputs]
    box_tensors = [t for t in tensors if t.shape[1] == 4]
    logit_tensors = [t for t in tensors if t.shape[1] in (num_classes, num_classes + 1)]
    if len(box_tensors) != 1 or len(logit_tensors) != 1:
        raise HeadError(
            f"detr wants one [Q, 4] box and one [Q, {num_classes}] logit output, got "
            f"{[t.shape for t in tensors]}"
        )
    cxcywh, logits = box_tensors[0], logit_tensors[0].astype(np.float32)
    if logits.shape[1] == num_classes + 1:  # original DETR: softmax with a no-object class
        probs = np.exp(logits - logits.max(axis=1, keepdims=True))
        class_scores = np.asarray(
            (probs / probs.sum(axis=1, keepdims=True))[:, :num_classes], dtype=np.float32
        )
    else:
        class_scores = np.asarray(1.0 / (1.0 + np.exp(-logits)), dtype=np.float32)
    class_ids, scores, keep = _best(class_scores, floor)
    c = cxcywh[keep] * np.array([width, height, width, height], dtype=np.float32)
    xyxy = np.column_stack(
        [c[:, 0] - c[:, 2] / 2, c[:, 1] - c[:, 3] / 2, c[:, 0] + c[:, 2] / 2, c[:, 1] + c[:, 3] / 2]
    )
    return xyxy.astype(np.float32), scores, class_ids


def _best(
    class_scores: NDArray[np.float32], floor: float
) -> tuple[NDArray[np.int64], NDArray[np.float32], NDArray[np.bool_]]:
    """Each row's best class and score, for the rows at or above floor; and the row mask."""
    class_ids = class_scores.argmax(axis=1)
    scores = np.take_along_axis(class_scores, class_ids[:, None], axis=1)[:, 0]
    keep = scores >= floor
    return class_ids[keep].astype(np.int64), scores[keep].astype(np.float32), keep
