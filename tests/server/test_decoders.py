"""The YOLO output layouts decode to the same detections (real model output, re-laid out)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from inference_server.pipelines.vision.decoders import LayoutError, decode, guess_layout
from inference_server.pipelines.vision.preprocess import Letterbox, decode_image, letterbox

from .conftest import image_bytes

NUM_CLASSES = 80


@pytest.fixture(scope="module")
def v5_output(model_repo: Path) -> tuple[np.ndarray, object]:
    """YOLOv5-layout output of the real converted YOLOv3-tiny on a street frame."""
    session = ort.InferenceSession(str(model_repo / "yolov3-tiny/1/model.onnx"))
    blob, box = letterbox(decode_image(image_bytes("street_people.jpg")), 416, 416)
    return session.run(None, {"images": blob})[0][0], box


def detections(
    output: np.ndarray, layout: str, box: object
) -> list[tuple[int, float, tuple[float, ...]]]:
    raw = decode(
        output,
        layout=layout,
        num_classes=NUM_CLASSES,
        input_size=(416, 416),
        box=box,  # type: ignore[arg-type]
        min_score=0.3,
    )
    return [
        (int(c), round(float(s), 4), tuple(np.round(b, 4)))
        for b, s, c in zip(raw.boxes, raw.scores, raw.class_ids, strict=True)
    ]


def test_yolov8_layout_matches_yolov5(v5_output: tuple[np.ndarray, object]) -> None:
    output, box = v5_output
    expected = detections(output, "yolov5", box)
    assert len(expected) >= 5
    # YOLOv8/v9/v11: [4 + C, boxes], class scores without objectness.
    v8 = np.concatenate([output[:, :4], output[:, 5:] * output[:, 4:5]], axis=1).T
    assert guess_layout((1, *v8.shape), NUM_CLASSES) == "yolov8"
    assert detections(np.ascontiguousarray(v8), "yolov8", box) == expected


def test_darknet_layout_matches_yolov5(v5_output: tuple[np.ndarray, object]) -> None:
    output, box = v5_output
    # OpenCV DNN: boxes in 0..1 of the input, class scores already times objectness.
    darknet = np.concatenate(
        [output[:, :4] / 416, output[:, 4:5], output[:, 5:] * output[:, 4:5]], axis=1
    )
    assert detections(darknet, "darknet", box) == detections(output, "yolov5", box)


def test_guess_layout_and_unknown_shapes() -> None:
    assert guess_layout((1, 2535, 85), 80) == "yolov5"
    assert guess_layout((1, 84, 8400), 80) == "yolov8"
    with pytest.raises(LayoutError):
        guess_layout((1, 10, 10), 80)
    with pytest.raises(LayoutError):
        decode(
            np.zeros((10, 85), np.float32),
            layout="ssd",
            num_classes=80,
            input_size=(416, 416),
            box=Letterbox(1.0, 0, 0, 416, 416),
            min_score=0.3,
        )


def test_nothing_above_threshold_is_an_empty_result(v5_output: tuple[np.ndarray, object]) -> None:
    output, box = v5_output
    raw = decode(
        output,
        layout="yolov5",
        num_classes=80,
        input_size=(416, 416),
        box=box,  # type: ignore[arg-type]
        min_score=1.0,
    )
    assert raw.boxes.shape == (0, 4)
