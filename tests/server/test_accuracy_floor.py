"""The default detector keeps its COCO accuracy through the real server's HTTP API.

A pre-processing or decoder change that loses accuracy (wrong channel order, a box shifted by
the letterbox, a stride off by one) fails here: mAP50-95 and AP75 score box geometry, not only
labels. Images and COCO's own boxes come from ../shared/data/coco_val2017_128 (skipped, saying
so, where that folder is absent). bench/accuracy.py measures the same on all 128 images.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from inference_server.models.install_default import DEFAULT_MODEL
from tests.helpers.server_process import ServerProcess

from .conftest import TOKEN

DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "coco_val2017_128"
IMAGES = 24  # the first 24 images: 196 boxes of 28 classes, 87 of them people
# yolox-nano measured 0.425 mAP50-95, 0.448 AP75 and 0.652 person AP50 on these through the
# API (2026-12-03). The floors leave room for onnxruntime/OpenCV versions, not for a broken
# pipeline: boxes shifted by 2 pixels give 0.388 mAP50-95, BGR read as RGB 0.392, a centred
# letterbox instead of YOLOX's top-left one 0.407 (measured in-process on the same images).
FLOORS = {"map50_95": 0.40, "ap75": 0.42, "person_ap50": 0.60}
COCO_IDS = [
    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 27,
    28, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 46, 47, 48, 49, 50, 51, 52, 53,
    54, 55, 56, 57, 58, 59, 60, 61, 62, 63, 64, 65, 67, 70, 72, 73, 74, 75, 76, 77, 78, 79, 80,
    81, 82, 84, 85, 86, 87, 88, 89, 90,
]  # fmt: skip

pytestmark = pytest.mark.skipif(
    not (DATA / "instances_val2017_128.json").is_file(),
    reason=f"COCO images absent: {DATA} (the data folder beside the checkout) is not there",
)


def coco_eval(
    gt: Any, detections: list[dict[str, Any]], image_ids: list[int], cats: list[int] | None
) -> Any:
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        evaluation = COCOeval(gt, gt.loadRes(detections), "bbox")
        evaluation.params.imgIds = image_ids
        if cats:
            evaluation.params.catIds = cats
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return evaluation.stats


async def test_default_model_map_stays_above_its_floor(api_server: ServerProcess) -> None:
    from pycocotools.coco import COCO

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(DATA / "instances_val2017_128.json"))
    image_ids = sorted(gt.getImgIds())[:IMAGES]
    detections: list[dict[str, Any]] = []
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "image/jpeg"}
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{api_server.url}/api/v1/info", headers=headers) as resp:
            info = await resp.json()
        vision = info["capabilities"]["vision"]
        assert vision["default_model"] == DEFAULT_MODEL
        labels = next(m["labels"] for m in vision["models"] if m["name"] == DEFAULT_MODEL)
        category = dict(zip(labels, COCO_IDS, strict=True))
        for image_id in image_ids:
            meta = gt.loadImgs(image_id)[0]
            body = (DATA / "images" / meta["file_name"]).read_bytes()
            async with session.post(
                f"{api_server.url}/api/v1/vision/detect?min_score=0.05",
                data=body,
                headers=headers,
            ) as resp:
                assert resp.status == 200, await resp.text()
                result = json.loads(await resp.read())
            assert result["model"] == DEFAULT_MODEL
            w, h = meta["width"], meta["height"]
            assert result["image"] == {"width": w, "height": h}
            for d in result["detections"][:100]:
                x1, y1, x2, y2 = d["box"]
                detections.append(
                    {
                        "image_id": image_id,
                        "category_id": category[d["label"]],
                        "bbox": [x1 * w, y1 * h, (x2 - x1) * w, (y2 - y1) * h],
                        "score": d["score"],
                    }
                )
    every = coco_eval(gt, detections, image_ids, None)
    person = coco_eval(gt, detections, image_ids, [1])
    measured = {"map50_95": every[0], "ap75": every[2], "person_ap50": person[1]}
    for key, floor in FLOORS.items():
        assert measured[key] >= floor, f"{key} {measured[key]:.3f} < {floor} ({measured})"
