"""Detector accuracy beside speed: COCO mAP through the real server's HTTP API.

Run by hand from the repository root (Linux: it reads /proc):
    .venv/bin/python bench/accuracy.py [--images N] [--out docs/benchmarks.md]

Every catalogue model and YOLOv3-tiny is installed into a fresh repository (from the model
cache ../shared/models), one real server process serves them all, and each model sees the same
COCO val2017 images (../shared/data/coco_val2017_128) one request at a time over HTTP:
POST /api/v1/vision/detect?model=...&min_score=0.05 (the pipeline's candidate floor). The boxes
that come back are scored with pycocotools against COCO's own boxes: mAP50-95, mAP50 and
person AP50. Latency is the client's wall time per request (p50), CPU the server process's CPU
time per image. --out replaces only this bench's section of the file.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import datetime
import io
import json
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # a script run from a checkout: the packages are not installed
sys.path.insert(0, str(ROOT / "bench"))

from vision import machine  # noqa: E402

from inference_server.models.catalogue import CATALOGUE  # noqa: E402
from inference_server.models.install_default import install_default_models  # noqa: E402
from tests.helpers.server_process import ServerProcess  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "coco_val2017_128"
START, END = "<!-- bench:accuracy:start -->", "<!-- bench:accuracy:end -->"
TOKEN = "bench-token"
MIN_SCORE = 0.05
WARMUP = 3
TICK = os.sysconf("SC_CLK_TCK")
# COCO's category ids (1..90 with gaps) of the 80 contiguous classes, in order.
COCO_IDS = [
    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 27,
    28, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 46, 47, 48, 49, 50, 51, 52, 53,
    54, 55, 56, 57, 58, 59, 60, 61, 62, 63, 64, 65, 67, 70, 72, 73, 74, 75, 76, 77, 78, 79, 80,
    81, 82, 84, 85, 86, 87, 88, 89, 90,
]  # fmt: skip
PERSON = 1


@dataclasses.dataclass(frozen=True)
class Result:
    model: str
    input_size: int
    map50_95: float
    map50: float
    person_ap50: float
    p50_ms: float
    server_ms: float  # p50 of the pipeline's own timing_ms.total
    cpu_ms: float  # server CPU time per image
    others: float  # share of the machine's CPU other processes took meanwhile

    @property
    def quality(self) -> float:
        """Person counts twice: what a camera pipeline is watched for, most of the time."""
        return (self.map50_95 + 2 * self.person_ap50) / 3


def coco_scores(
    gt: COCO, detections: list[dict[str, Any]], image_ids: list[int]
) -> tuple[float, float, float]:
    """(mAP50-95, mAP50, person AP50) with pycocotools, its printout silenced."""
    if not detections:
        return 0.0, 0.0, 0.0
    with contextlib.redirect_stdout(io.StringIO()):
        dt = gt.loadRes(detections)
        every = COCOeval(gt, dt, "bbox")
        every.params.imgIds = image_ids
        every.evaluate()
        every.accumulate()
        every.summarize()
        person = COCOeval(gt, dt, "bbox")
        person.params.imgIds = image_ids
        person.params.catIds = [PERSON]
        person.evaluate()
        person.accumulate()
        person.summarize()
    return float(every.stats[0]), float(every.stats[1]), float(person.stats[1])


def cpu_ticks() -> tuple[int, int]:
    """(whole machine busy, this process's children: the server) in clock ticks."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    busy = sum(fields) - fields[3] - fields[4]
    ours = 0
    for children in Path("/proc/self/task").glob("*/children"):
        for pid in children.read_text().split():
            with contextlib.suppress(OSError):
                stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                ours += int(stat[11]) + int(stat[12])
    return busy, ours


@dataclasses.dataclass
class Tally:
    """One model's detections (COCO result format) and per-request measurements."""

    detections: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    latency_ms: list[float] = dataclasses.field(default_factory=list)
    server_ms: list[float] = dataclasses.field(default_factory=list)
    server_ticks: int = 0
    machine_ticks: int = 0
    wall_s: float = 0.0


async def detect(
    session: aiohttp.ClientSession,
    url: str,
    model: str,
    image: tuple[int, bytes, int, int],
    category: dict[str, int],
    tally: Tally | None,
) -> None:
    image_id, data, width, height = image
    endpoint = f"{url}/api/v1/vision/detect?model={model}&min_score={MIN_SCORE}"
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "image/jpeg"}
    busy0, ours0 = cpu_ticks()
    started = time.perf_counter()
    async with session.post(endpoint, data=data, headers=headers) as resp:
        resp.raise_for_status()
        body = await resp.json()
    elapsed = time.perf_counter() - started
    busy1, ours1 = cpu_ticks()
    if tally is None:  # warm-up
        return
    tally.latency_ms.append(elapsed * 1000)
    tally.server_ms.append(float(body["timing_ms"]["total"]))
    tally.server_ticks += ours1 - ours0
    tally.machine_ticks += busy1 - busy0
    tally.wall_s += elapsed
    for d in body["detections"][:100]:  # COCO counts at most 100 per image
        x1, y1, x2, y2 = d["box"]
        tally.detections.append(
            {
                "image_id": image_id,
                "category_id": category[d["label"]],
                "bbox": [x1 * width, y1 * height, (x2 - x1) * width, (y2 - y1) * height],
                "score": d["score"],
            }
        )


async def bench(repo: Path, count: int) -> list[Result]:
    gt = COCO(str(DATA / "instances_val2017_128.json"))
    labels = (repo / "yolov3-tiny" / "labels.txt").read_text().splitlines()
    ids = sorted(gt.getImgIds())[:count]
    images = []
    for image_id in ids:
        info = gt.loadImgs(image_id)[0]
        data = (DATA / "images" / info["file_name"]).read_bytes()
        images.append((image_id, data, int(info["width"]), int(info["height"])))
    # The API answers labels; COCO wants its category ids. Every model has the same 80 labels.
    category = dict(zip(labels, COCO_IDS, strict=True))
    models = ["yolov3-tiny", *CATALOGUE]
    sizes = {name: entry.input_size for name, entry in CATALOGUE.items()} | {"yolov3-tiny": 416}
    results = []
    with tempfile.TemporaryDirectory() as data_dir:
        server = ServerProcess(Path(data_dir), mqtt_port=None, token=TOKEN, model_repo=repo)
        server.start(timeout=120)
        tallies = {model: Tally() for model in models}
        try:
            async with aiohttp.ClientSession() as session:
                for model in models:
                    for image in images[:WARMUP]:
                        await detect(session, server.url, model, image, category, None)
                # Models take turns on each image: a busy spell on the shared machine slows
                # them all alike instead of whichever model ran during it.
                for image in images:
                    for model in models:
                        await detect(session, server.url, model, image, category, tallies[model])
        finally:
            server.stop()
    cores = os.cpu_count() or 1
    for model, t in tallies.items():
        others = (t.machine_ticks - t.server_ticks) / max(t.wall_s * TICK * cores, 1)
        results.append(
            Result(
                model,
                sizes[model],
                *coco_scores(gt, t.detections, ids),
                p50_ms=statistics.median(t.latency_ms),
                server_ms=statistics.median(t.server_ms),
                cpu_ms=t.server_ticks / TICK * 1000 / len(images),
                others=min(max(others, 0.0), 1.0),
            )
        )
        print(results[-1], flush=True)
    return results


def report(results: list[Result], count: int, elapsed: float) -> str:
    date = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    base = next(r for r in results if r.model == "yolov3-tiny")
    lines = [
        START,
        "## Vision accuracy (bench/accuracy.py)",
        "",
        f"Measured {date}; the run took {elapsed:.0f} s. Machine (shared with other engineers' "
        "work during this run: latency is noisy, about ±20%):",
        *machine(),
        "",
        f"The first {count} images of COCO val2017 (../shared/data/coco_val2017_128, COCO's own "
        "boxes, no crowd regions), one request at a time through the real server over HTTP "
        f"(`min_score={MIN_SCORE}`, the pipeline's candidate floor; at most 100 boxes per image), "
        "scored with pycocotools. Latency: client wall time per request, p50 (upload, JPEG "
        "decode, pre-processing, inference, decoding, JSON); server: the pipeline's own "
        "`timing_ms.total`; CPU: the server's CPU time per image. Quality = (mAP50-95 + 2 x "
        "person AP50) / 3: the person class weighted most. YOLOv3-tiny's Darknet weights were "
        "trained on data that includes most of val2017, so its figures read high.",
        "",
        "```",
        f".venv/bin/python bench/accuracy.py --images {count} --out docs/benchmarks.md",
        "```",
        "",
        "| model | input | mAP50-95 | mAP50 | person AP50 | p50 ms | server ms | CPU ms/image "
        "| others | quality per 10 ms | latency vs YOLOv3-tiny |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| `{r.model}` | {r.input_size} | {r.map50_95:.3f} | {r.map50:.3f} "
            f"| {r.person_ap50:.3f} | {r.p50_ms:.1f} | {r.server_ms:.1f} | {r.cpu_ms:.0f} "
            f"| {r.others:.0%} | {r.quality / r.p50_ms * 10:.3f} | {r.p50_ms / base.p50_ms:.2f} |"
        )
    best = max(results, key=lambda r: r.quality / r.p50_ms)
    lines += [
        "",
        f"Best quality per millisecond: `{best.model}` (mAP50-95 {best.map50_95:.3f}, person "
        f"AP50 {best.person_ap50:.3f}, {best.p50_ms:.1f} ms, {best.p50_ms / base.p50_ms:.2f} of "
        "YOLOv3-tiny's latency in this run).",
        END,
    ]
    return "\n".join(lines) + "\n"


def write(out: Path, section: str) -> None:
    """Replace only this bench's section; the others stay as they are."""
    text = out.read_text() if out.exists() else "# Benchmarks\n\nRun by hand; see bench/.\n"
    pattern = re.compile(re.escape(START) + r".*?" + re.escape(END) + r"\n?", re.S)
    text, found = pattern.subn(lambda _: section, text, count=1)
    if not found:
        text = text.rstrip("\n") + "\n\n" + section
    out.write_text(text)


async def main() -> None:
    parser = argparse.ArgumentParser(description="COCO mAP and latency of every detector.")
    parser.add_argument("--images", type=int, default=128, help="how many of the 128 images")
    parser.add_argument("--out", type=Path, help="write the results into this markdown file")
    parser.add_argument("--repo", type=Path, help="model repository (default: a fresh one)")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON")
    args = parser.parse_args()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        repo = args.repo or Path(tmp) / "models"
        install_default_models(repo, models=list(CATALOGUE))
        results = await bench(repo, args.images)
    section = report(results, args.images, time.perf_counter() - started)
    if args.out:
        write(args.out, section)
    if args.json:
        args.json.write_text(json.dumps([dataclasses.asdict(r) for r in results], indent=1))
    print(section)


if __name__ == "__main__":
    asyncio.run(main())
