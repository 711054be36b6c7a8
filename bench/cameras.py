"""What a camera costs: server CPU per 1080p H.264 stream, motion gating off and on.

Run by hand from the repository root (Linux: it reads /proc):
    .venv/bin/python bench/cameras.py [--seconds 30] [--out docs/benchmarks.md]

A 30 s, 15 fps clip is encoded with libx264 (PyAV) from the street fixture, upscaled to
1920x1080 and, for the detect-stream case, 640x360: the first half a still scene (nobody
there, as a home camera is most of the time), the second half people walking. One real server
process reads N copies of it as cameras at the default detection rate (2/s) and the default
model; its CPU time over one loop of the clip, divided by N, is the cost per camera.
--out replaces only this bench's section of the file.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime
import os
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import av
import cv2
import numpy as np
import numpy.typing as npt

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # a script run from a checkout: the packages are not installed
sys.path.insert(0, str(ROOT / "bench"))

from vision import machine  # noqa: E402

from inference_server.pipelines.cameras.spec import CameraSpec  # noqa: E402
from tests.helpers.server_process import ServerProcess  # noqa: E402

START, END = "<!-- bench:cameras:start -->", "<!-- bench:cameras:end -->"
TOKEN = "bench-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
CLIP = ROOT / "tests" / "fixtures" / "video" / "street.avi"
FPS, SECONDS = 15, 30
MOTION_THRESHOLD = 0.002
TICK = os.sysconf("SC_CLK_TCK")
CORES = os.cpu_count() or 1


@dataclasses.dataclass(frozen=True)
class Case:
    cameras: int
    stream: str  # "1080p" or "1080p + 360p detect stream"
    gating: bool
    cpu_per_camera: float  # cores
    detections_per_camera_s: float
    others: float  # share of the machine other processes took meanwhile


def make_clip(path: Path, width: int, height: int) -> None:
    """Still first half, moving second half; H.264 (libx264), a key frame every 2 s."""
    capture = cv2.VideoCapture(str(CLIP))
    frames: list[npt.NDArray[np.uint8]] = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(
            np.asarray(cv2.resize(frame, (width, height), interpolation=cv2.INTER_LINEAR), np.uint8)
        )
    capture.release()
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "veryfast", "g": str(2 * FPS), "crf": "23"}
        half = SECONDS * FPS // 2
        # The clip is 5 fps: each of its frames shown 3 times makes 15 fps of real motion.
        sequence = [frames[0]] * half + [frames[(i // 3) % len(frames)] for i in range(half)]
        for image in sequence:
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="bgr24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def cpu_ticks() -> tuple[int, int]:
    """(whole machine busy, this process's children: the server) in clock ticks."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    busy = sum(fields) - fields[3] - fields[4]
    ours = 0
    for children in Path("/proc/self/task").glob("*/children"):
        for pid in children.read_text().split():
            try:
                stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            ours += int(stat[11]) + int(stat[12])
    return busy, ours


async def call(session: aiohttp.ClientSession, method: str, url: str, body: Any = None) -> Any:
    async with session.request(method, url, headers=AUTH, json=body) as resp:
        if resp.status >= 400:
            raise RuntimeError(f"{method} {url}: {resp.status} {await resp.text()}")
        return await resp.json() if resp.content_length else None


async def run_case(
    server: ServerProcess,
    media: Path,
    cameras: int,
    detect_stream: bool,
    gating: bool,
    seconds: float,
) -> Case:
    async with aiohttp.ClientSession() as session:
        for i in range(cameras):
            body: dict[str, Any] = {
                "source": str(media / "main_1080p.mp4"),
                "motion_threshold": MOTION_THRESHOLD if gating else 0,
                "labels": ["person", "car"],
            }
            if detect_stream:
                body["detect_source"] = str(media / "sub_360p.mp4")
            await call(session, "PUT", f"{server.url}/api/v1/cameras/cam{i}", body)
        await asyncio.sleep(5)  # readers open, the model warms up
        frames0 = [
            (await call(session, "GET", f"{server.url}/api/v1/cameras/cam{i}"))["frames"]
            for i in range(cameras)
        ]
        busy0, ours0 = cpu_ticks()
        started = time.monotonic()
        await asyncio.sleep(seconds)
        busy1, ours1 = cpu_ticks()
        wall = time.monotonic() - started
        frames1 = [
            (await call(session, "GET", f"{server.url}/api/v1/cameras/cam{i}"))["frames"]
            for i in range(cameras)
        ]
        for i in range(cameras):
            await call(session, "DELETE", f"{server.url}/api/v1/cameras/cam{i}")
    ours = (ours1 - ours0) / TICK / wall
    others = max(0.0, (busy1 - busy0 - (ours1 - ours0)) / TICK / wall / CORES)
    detections = sum(b - a for a, b in zip(frames0, frames1, strict=True)) / wall / cameras
    stream = "1080p + 360p detect stream" if detect_stream else "1080p"
    return Case(cameras, stream, gating, ours / cameras, detections, min(others, 1.0))


async def bench(seconds: float, counts: list[int]) -> tuple[list[Case], float]:
    with tempfile.TemporaryDirectory() as tmp:
        media = Path(tmp)
        make_clip(media / "main_1080p.mp4", 1920, 1080)
        make_clip(media / "sub_360p.mp4", 640, 360)
        server = ServerProcess(media / "data", mqtt_port=None, token=TOKEN, media_root=media)
        server.start(timeout=120)
        try:
            _, idle0 = cpu_ticks()
            await asyncio.sleep(5)
            idle = (cpu_ticks()[1] - idle0) / TICK / 5  # the server doing nothing
            cases = []
            for cameras in counts:
                for detect_stream, gating in ((False, False), (False, True), (True, True)):
                    case = await run_case(server, media, cameras, detect_stream, gating, seconds)
                    print(case, flush=True)
                    cases.append(case)
        finally:
            server.stop()
    return cases, idle


def report(cases: list[Case], idle: float, seconds: float, elapsed: float) -> str:
    date = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    default_fps = CameraSpec(source="x").fps
    lines = [
        START,
        "## Cameras (bench/cameras.py)",
        "",
        f"Measured {date}; the run took {elapsed:.0f} s. Machine (shared with other engineers' "
        "work during this run, see the last column):",
        *machine(),
        "",
        f"A {SECONDS} s H.264 clip at {FPS} fps (libx264 veryfast, a key frame every 2 s), "
        "first half a still street, second half people walking, as 1920x1080 and as a 640x360 "
        f"detect stream; the default model and detection rate ({default_fps:g}/s); each case "
        f"measured over {seconds:.0f} s (one loop of the clip). CPU: the server process's CPU "
        f"time per camera, in cores (the idle server, {idle:.3f} cores, not subtracted). "
        f"Motion gating: `motion_threshold` {MOTION_THRESHOLD} (0.2% of a 160 px wide gray "
        "image changed), 2 s hold after motion, a detection every 30 s regardless. Frames are "
        "grabbed (demuxed and decoded: H.264 frames depend on the ones before, so none can be "
        "skipped) but converted to BGR only at twice the detection rate.",
        "",
        "```",
        f".venv/bin/python bench/cameras.py --seconds {seconds:.0f} --out docs/benchmarks.md",
        "```",
        "",
        "| cameras | stream read | motion gating | CPU per camera (cores) | detections/s per "
        "camera | others |",
        "|---:|---|---|---:|---:|---:|",
    ]
    for c in cases:
        lines.append(
            f"| {c.cameras} | {c.stream} | {'on' if c.gating else 'off'} "
            f"| {c.cpu_per_camera:.3f} | {c.detections_per_camera_s:.2f} | {c.others:.0%} |"
        )
    lines.append("")
    for stream in ("1080p", "1080p + 360p detect stream"):
        one = next((c for c in cases if c.cameras == 1 and c.gating and c.stream == stream), None)
        if one:
            lines.append(
                f"- {stream}, gating on: {one.cpu_per_camera:.3f} cores per camera, so 2 cores "
                f"hold about {int(2 / one.cpu_per_camera)} such cameras by CPU time alone."
            )
    lines.append(END)
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
    parser = argparse.ArgumentParser(description="CPU per camera, motion gating off and on.")
    parser.add_argument("--seconds", type=float, default=SECONDS, help="measured per case")
    parser.add_argument("--cameras", type=int, nargs="+", default=[1, 8], help="camera counts")
    parser.add_argument("--out", type=Path, help="write the results into this markdown file")
    args = parser.parse_args()
    started = time.perf_counter()
    cases, idle = await bench(args.seconds, args.cameras)
    section = report(cases, idle, args.seconds, time.perf_counter() - started)
    if args.out:
        write(args.out, section)
    print(section)


if __name__ == "__main__":
    asyncio.run(main())
