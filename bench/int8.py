"""Int8: onnxruntime static quantisation of a detector, calibrated on our own frames.

Run by hand from the repository root:
    .venv/bin/python bench/int8.py nanodet-m-320 yolox-nano

QDQ, per-channel int8 weights, uint8 activations, MinMax calibration on the street clip's 40
frames and the fixture photos (never the COCO images it is scored on); the prediction convs
and everything after them stay float. Each model is converted to opset 13 first (per-channel
QDQ needs it). Then fp32 and int8 take turns on the 128 COCO images (../shared/data), scored
with pycocotools; latency is onnxruntime's run alone, 2 threads, batch 1. Prints one line per
variant; docs/benchmarks.md (the accuracy section) keeps the figures.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import onnx
import onnxruntime as ort
from onnx import version_converter
from onnxruntime.quantization import (
    CalibrationDataReader,
    QuantFormat,
    QuantType,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from accuracy import COCO_IDS, DATA  # noqa: E402

from inference_server.models.catalogue import CATALOGUE, CatalogueModel  # noqa: E402
from inference_server.models.install_default import install_catalogue_model  # noqa: E402
from inference_server.pipelines.vision.decoders import Decoding, decode  # noqa: E402
from inference_server.pipelines.vision.preprocess import Preprocessing, decode_image  # noqa: E402

FIXTURES = ROOT / "tests" / "fixtures"


def own_frames() -> list[np.typing.NDArray[np.uint8]]:
    frames = []
    capture = cv2.VideoCapture(str(FIXTURES / "video" / "street.avi"))
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(np.asarray(frame, np.uint8))
    capture.release()
    frames += [decode_image(p.read_bytes()) for p in sorted((FIXTURES / "images").glob("*.jpg"))]
    return frames


class Frames(CalibrationDataReader):  # type: ignore[misc]
    def __init__(self, entry: CatalogueModel) -> None:
        prep = Preprocessing.from_parameters(entry.parameters)
        size = entry.input_size
        self._feeds = iter([{entry.input_name: prep.apply(f, size, size)[0]} for f in own_frames()])

    def get_next(self) -> dict[str, Any] | None:
        return next(self._feeds, None)


def head_nodes(model: onnx.ModelProto) -> list[str]:
    """The last conv on each path to an output, and every node after it."""
    producer = {out: node for node in model.graph.node for out in node.output}
    keep, stack, seen = [], [o.name for o in model.graph.output], set()
    while stack:
        node = producer.get(stack.pop())
        if node is None or node.name in seen:
            continue
        seen.add(node.name)
        keep.append(node.name)
        if node.op_type != "Conv":
            stack.extend(node.input)
    return keep


def quantize(fp32: Path, entry: CatalogueModel, work: Path) -> Path:
    model = onnx.load(str(fp32))
    if max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) < 13:
        model = version_converter.convert_version(model, 13)
    v13, pre, int8 = work / "v13.onnx", work / "pre.onnx", work / "int8.onnx"
    onnx.save(model, str(v13))
    quant_pre_process(str(v13), str(pre), skip_symbolic_shape=True)
    quantize_static(
        str(pre),
        str(int8),
        Frames(entry),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        nodes_to_exclude=head_nodes(onnx.load(str(pre))),
    )
    return int8


def evaluate(entry: CatalogueModel, variants: dict[str, Path]) -> None:
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(DATA / "instances_val2017_128.json"))
    ids = sorted(gt.getImgIds())
    prep, dec = (
        Preprocessing.from_parameters(entry.parameters),
        Decoding.from_parameters(entry.parameters),
    )
    assert dec.layout is not None
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = 2
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    sessions = {k: ort.InferenceSession(str(p), options) for k, p in variants.items()}
    times: dict[str, list[float]] = {k: [] for k in sessions}
    results: dict[str, list[dict[str, Any]]] = {k: [] for k in sessions}
    size = entry.input_size
    for image_id in ids:
        meta = gt.loadImgs(image_id)[0]
        image = decode_image((DATA / "images" / meta["file_name"]).read_bytes())
        blob, box = prep.apply(image, size, size)
        for name, session in sessions.items():  # turns: both see the same machine load
            started = time.perf_counter()
            outputs = session.run(None, {entry.input_name: blob})
            times[name].append(time.perf_counter() - started)
            raw = decode(
                [o[0] for o in outputs],
                layout=dec.layout,
                num_classes=80,
                input_size=(size, size),
                box=box,
                min_score=0.05,
                iou=dec.nms_iou,
                strides=dec.strides,
            )
            w, h = meta["width"], meta["height"]
            for b, s, c in zip(raw.boxes[:100], raw.scores, raw.class_ids, strict=False):
                results[name].append(
                    {
                        "image_id": image_id,
                        "category_id": COCO_IDS[int(c)],
                        "bbox": [b[0] * w, b[1] * h, (b[2] - b[0]) * w, (b[3] - b[1]) * h],
                        "score": float(s),
                    }
                )
    for name in sessions:
        stats = []
        for cats in (None, [1]):
            with contextlib.redirect_stdout(io.StringIO()):
                ev = COCOeval(gt, gt.loadRes(results[name]), "bbox")
                ev.params.imgIds = ids
                if cats:
                    ev.params.catIds = cats
                ev.evaluate()
                ev.accumulate()
                ev.summarize()
            stats.append(ev.stats)
        print(
            f"{entry.name} {name}: mAP50-95 {stats[0][0]:.3f}, mAP50 {stats[0][1]:.3f}, "
            f"person AP50 {stats[1][1]:.3f}, {np.median(times[name]) * 1000:.1f} ms median",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description="Static int8 quantisation, scored on COCO.")
    parser.add_argument("models", nargs="+", choices=list(CATALOGUE))
    args = parser.parse_args()
    for name in args.models:
        entry = CATALOGUE[name]
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            install_catalogue_model(work / "repo", entry)
            fp32 = work / "repo" / name / "1" / "model.onnx"
            evaluate(entry, {"fp32": fp32, "int8": quantize(fp32, entry, work)})


if __name__ == "__main__":
    main()
