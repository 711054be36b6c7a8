"""Home Assistant latency: server announce → discovery flow, camera frame → occupancy `on`.

Run by hand from the repository root:
    .venv/bin/python bench/ha_latency.py [--runs N] [--out docs/benchmarks.md]

All real and set up as a user would, by scripts/demo.py's `Demo` (broker, server, HA onboarded
through its API, config flows, subentries). Snapshot mode: the demo's `local_file` camera; stream
mode: a `generic` camera on an MJPEG server in this process. t0/t1: see the section it writes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import itertools
import os
import platform
import random
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import paho.mqtt.client as mqtt
from aiohttp import web
from paho.mqtt.enums import CallbackAPIVersion

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # a script run from a checkout: scripts/ and tests/ are not installed

from scripts.demo import Demo, log  # noqa: E402
from tests.helpers.broker import free_port, wait_for_port  # noqa: E402

IMAGES = ROOT / "tests/fixtures/images"
EMPTY, PEOPLE = (IMAGES / "coffee.jpg").read_bytes(), (IMAGES / "street_people.jpg").read_bytes()
SNAPSHOT_INTERVAL = 1.0  # s; the subentry flow's minimum, so snapshot runs are quick
STREAM_PERIOD = 0.5  # s; the pipeline's default of 2 detections per second in stream mode
MJPEG_FPS = 10.0
START, END = "<!-- bench:ha:start -->", "<!-- bench:ha:end -->"
READING = "Reading (by hand, of the run above):"


class MjpegServer:
    """A camera on 127.0.0.1: MJPEG (multipart/x-mixed-replace) and a still of `frame`."""

    def __init__(self, frame: bytes) -> None:
        self.frame = frame
        self._changed = asyncio.Event()
        self.url = f"http://127.0.0.1:{free_port()}"

    def show(self, frame: bytes) -> None:
        # Wake every stream now, so a new scene is not held back by up to one frame period.
        self.frame = frame
        self._changed.set()
        self._changed = asyncio.Event()

    async def start(self) -> web.AppRunner:
        app = web.Application()
        app.router.add_get("/still.jpg", self._still)
        app.router.add_get("/stream.mjpg", self._stream)
        runner = web.AppRunner(app, shutdown_timeout=1)  # streams never end by themselves
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", int(self.url.rsplit(":", 1)[1])).start()
        return runner

    async def _still(self, _request: web.Request) -> web.Response:
        return web.Response(body=self.frame, content_type="image/jpeg")

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        resp.content_type = "multipart/x-mixed-replace; boundary=frame"
        await resp.prepare(request)
        with contextlib.suppress(ConnectionError):  # the reader went away
            while True:
                part = f"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: {len(self.frame)}"
                await resp.write(f"{part}\r\n\r\n".encode() + self.frame + b"\r\n")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), 1 / MJPEG_FPS)
        return resp


class AnnounceClock:
    """A separate MQTT client, subscribed before any server starts: when each announce arrives."""

    def __init__(self, port: int) -> None:
        self.arrived: dict[str, float] = {}
        subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="ha-latency-bench")
        self.client.on_message = lambda _c, _u, msg: self._on(msg.topic)
        self.client.on_subscribe = lambda *_: subscribed.set()
        self.client.connect("127.0.0.1", port)
        self.client.subscribe("edge_inference/+/announce", qos=1)
        self.client.loop_start()
        subscribed.wait(10)

    def _on(self, topic: str) -> None:
        self.arrived.setdefault(topic, time.monotonic())


class States:
    """Entity states as HA's websocket pushes them, with the monotonic time of each change."""

    def __init__(self) -> None:
        self.current: dict[str, tuple[str, float]] = {}  # entity_id: (state, since)
        self._cond = asyncio.Condition()

    async def follow(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        await ws.send_json({"id": 1, "type": "subscribe_events", "event_type": "state_changed"})
        async for msg in ws:
            data = msg.json()
            if data.get("type") == "event" and (new := data["event"]["data"]["new_state"]):
                async with self._cond:
                    self.current[new["entity_id"]] = (new["state"], time.monotonic())
                    self._cond.notify_all()

    async def wait_for(self, entity_id: str, state: str, after: float = 0.0) -> float:
        """When entity_id became `state` (already, or later), but not before `after`."""

        def reached() -> bool:
            seen = self.current.get(entity_id)
            return seen is not None and seen[0] == state and seen[1] >= after

        async with self._cond:  # a TimeoutError here: see homeassistant.log (--keep)
            await asyncio.wait_for(self._cond.wait_for(reached), 60)
            return self.current[entity_id][1]


@dataclass
class Bench:
    demo: Demo
    session: aiohttp.ClientSession
    runs: int
    states: States = field(default_factory=States)
    entry_id: str = ""

    async def time_discovery(self) -> tuple[list[float], list[float]]:
        """Announce → flow, with a fresh server id per run; returns the times and start-ups."""
        demo, clock = self.demo, AnnounceClock(self.demo.broker.port)
        ws = await demo.open_websocket(self.session)
        ids = itertools.count(1)  # HA refuses a reused message id on one websocket
        delays, startups = [], []
        for run in range(self.runs):
            server_id, spawned = f"bench{run}", time.monotonic()
            server = demo.start_server(server_id, wait=False)
            topic = f"edge_inference/{server_id}/announce"
            while True:  # 2025.4 has no subscription to flows: poll
                await ws.send_json({"id": next(ids), "type": "config_entries/flow/progress"})
                flows = (await ws.receive_json())["result"]
                if ours := [f for f in flows if f["context"].get("unique_id") == server_id]:
                    break
                if server.poll() is not None:
                    raise RuntimeError(f"the server exited; see {demo.work}/server-{server_id}.log")
                # HA takes milliseconds: once the announce is out, poll back to back (the
                # resolution is one websocket round trip); before it, every 20 ms will do.
                await asyncio.sleep(0 if topic in clock.arrived else 0.02)
            seen = time.monotonic()
            while topic not in clock.arrived:  # noqa: ASYNC110 (HA can beat our paho thread)
                await asyncio.sleep(0.001)
            delays.append(max(0.0, seen - clock.arrived[topic]))
            startups.append(clock.arrived[topic] - spawned)
            log(f"discovery {run + 1}/{self.runs}: {delays[-1] * 1000:.0f} ms after the announce")
            flow_path = f"/api/config/config_entries/flow/{ours[0]['flow_id']}"
            if run < self.runs - 1:
                await demo.api(self.session, "DELETE", flow_path)  # abort: leave no flows behind
                demo.stop_process(server)
        # The last server stays, confirmed, for the camera pipelines (confirming reads its info).
        await asyncio.to_thread(wait_for_port, demo.server_port, 60)
        self.entry_id = await demo.confirm_discovery(self.session, ours[0]["flow_id"])
        await ws.close()
        clock.client.loop_stop()
        return delays, startups

    async def time_occupancy(
        self, camera: str, mode: str, show: Callable[[bytes], None], period: float
    ) -> list[float]:
        """A pipeline on `camera`; per run, an empty scene until `off`, then people until `on`."""
        await self.demo.add_camera_pipeline(self.session, self.entry_id, {
            "camera_entity_id": camera, "labels": ["person"], "min_score": 0.4, "mode": mode,
            "interval": SNAPSHOT_INTERVAL, "fps": 1 / STREAM_PERIOD,
            "clear_after": 0,  # off at once: quick runs
        })  # fmt: skip
        entity_id = f"binary_sensor.{camera.removeprefix('camera.')}_person_occupancy"
        delays = []
        for run in range(self.runs):
            show(EMPTY)
            await self.states.wait_for(entity_id, "off")
            # A random phase against the snapshot timer / the server's sampling, so the runs
            # cover the whole wait for the next tick (0..period), not one point of it.
            await asyncio.sleep(0.2 + random.uniform(0, period))
            started = time.monotonic()
            show(PEOPLE)
            delays.append(await self.states.wait_for(entity_id, "on", after=started) - started)
            log(f"{entity_id} {run + 1}/{self.runs}: on after {delays[-1] * 1000:.0f} ms")
        return delays

    async def time_detect(self) -> list[float]:
        """The server's detect of the same frame over HTTP: the inference share of the paths."""
        url = f"http://127.0.0.1:{self.demo.server_port}/api/v1/vision/detect"
        headers = {"Authorization": f"Bearer {self.demo.token}", "Content-Type": "image/jpeg"}
        query, delays = {"labels": "person", "min_score": "0.4"}, []
        for _ in range(self.runs):
            started = time.monotonic()
            async with self.session.post(url, params=query, data=PEOPLE, headers=headers) as resp:
                await resp.read()
            delays.append(time.monotonic() - started)
        return delays

    async def add_generic_camera(self, url: str) -> str:
        """A `generic` camera through its config flow (which test-plays the stream with PyAV)."""
        demo, session, path = self.demo, self.session, "/api/config/config_entries/flow"
        before = {s["entity_id"] for s in await demo.api(session, "GET", "/api/states")}
        flow = await demo.api(session, "POST", path, {"handler": "generic"})
        step = await demo.api(session, "POST", f"{path}/{flow['flow_id']}", {
            "still_image_url": f"{url}/still.jpg", "stream_source": f"{url}/stream.mjpg",
            "framerate": 2, "verify_ssl": False,
        })  # fmt: skip
        assert step.get("step_id") == "user_confirm", step  # a failed test returns to `user`
        confirm = {"confirmed_ok": True}
        result = await demo.api(session, "POST", f"{path}/{flow['flow_id']}", confirm)
        assert result["type"] == "create_entry", result
        for _ in range(100):
            states = await demo.api(session, "GET", "/api/states")
            if new := sorted({s["entity_id"] for s in states} - before):
                return str(new[0])  # the one new entity: nothing else is set up meanwhile
            await asyncio.sleep(0.1)
        raise TimeoutError("the generic camera entity did not appear")


async def run(demo: Demo, runs: int) -> dict[str, list[float]]:
    demo.start_broker()
    demo.start_home_assistant()
    async with aiohttp.ClientSession() as session:
        await demo.onboard(session)
        await demo.add_mqtt(session)
        await asyncio.sleep(2)  # HA's MQTT client connects and subscribes after the flow ends
        bench, results = Bench(demo, session, runs), {}
        results["discovery"], results["startup"] = await bench.time_discovery()
        follower = asyncio.create_task(bench.states.follow(await demo.open_websocket(session)))

        def show_file(frame: bytes) -> None:
            demo.frame.with_suffix(".tmp").write_bytes(frame)
            os.replace(demo.frame.with_suffix(".tmp"), demo.frame)  # HA never reads half a file

        show_file(EMPTY)
        results["snapshot"] = await bench.time_occupancy(
            "camera.demo_street", "snapshot", show_file, SNAPSHOT_INTERVAL
        )
        # Pause it (its switch) so that it does not compete with the stream runs for the cores.
        await demo.api(session, "POST", "/api/services/switch/turn_off",
                       {"entity_id": "switch.demo_street_detection"})  # fmt: skip
        mjpeg = MjpegServer(EMPTY)
        runner = await mjpeg.start()
        camera = await bench.add_generic_camera(mjpeg.url)
        results["stream"] = await bench.time_occupancy(camera, "stream", mjpeg.show, STREAM_PERIOD)
        results["detect"] = await bench.time_detect()
        follower.cancel()
        await runner.cleanup()
    return results


def machine() -> str:
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    cpu = next((x.split(":", 1)[1].strip() for x in cpuinfo if x.startswith("model name")), "?")
    meminfo = Path("/proc/meminfo").read_text().splitlines()
    mem_kb = int(next(x.split()[1] for x in meminfo if x.startswith("MemTotal")))
    return f"{cpu}, {os.cpu_count()} cores, {mem_kb / 2**20:.0f} GiB RAM, {platform.platform()}"


def write(out: Path, results: dict[str, list[float]], runs: int, load: str) -> str:
    """Replace our section of `out`, keeping its hand-written reading; returns the section."""
    med = {k: statistics.median(v) * 1000 for k, v in results.items()}
    p90 = {k: sorted(v)[round(0.9 * (len(v) - 1))] * 1000 for k, v in results.items()}
    rows = [
        ("Announce → discovery flow listed in HA", "discovery", "one fresh server id per run"),
        ("Frame → occupancy `on`, snapshot mode", "snapshot",
         f"interval {SNAPSHOT_INTERVAL:g} s, `local_file` camera"),
        ("Frame → occupancy `on`, stream mode", "stream",
         f"server samples {1 / STREAM_PERIOD:g} fps; `generic` camera, {MJPEG_FPS:g} fps MJPEG"),
        ("(reference) server detect over HTTP, same frame", "detect", "yolov3-tiny, CPU"),
        ("(reference) server spawn → announce", "startup", "process start, model load"),
    ]  # fmt: skip
    table = "\n".join(
        f"| {label} | {med[k]:.0f} | {p90[k]:.0f} | {max(results[k]) * 1000:.0f} "
        f"| {len(results[k])} | {note} |"
        for label, k, note in rows
    )
    date = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    # Re-read right before writing: other benches write their own sections of this file.
    old = out.read_text(encoding="utf-8") if out.exists() else "# Benchmarks\n"
    # The reading is written by hand after a run: a rerun keeps it (check that it still holds).
    reading = old[old.index(READING) : old.index(END)] if READING in old else f"{READING}\n"
    text = f"""{START}
## Home Assistant latency (bench/ha_latency.py)

Machine: {machine()}; load average before the run {load}.
Date: {date}. Home Assistant 2025.4 (.venv-ha), Mosquitto and the server, all on loopback.
Command: `.venv/bin/python bench/ha_latency.py --runs {runs}`

| path (times in ms) | median | p90 | max | runs | setting |
|---|---|---|---|---|---|
{table}

Discovery: t0 = the retained announce reaches a separate MQTT client, t1 = HA's websocket
`config_entries/flow/progress` lists the flow (polled back to back once the announce is out).
Occupancy: t0 = the bench swaps an empty scene for one with people (at a random phase against
the snapshot timer or the server's sampling), t1 = HA's websocket delivers the
`binary_sensor.*_person_occupancy` `state_changed` to `on`; `clear_after: 0`.

{reading}{END}"""
    if START in old and END in old:
        new = old[: old.index(START)] + text + old[old.index(END) + len(END) :]
    else:
        new = old.rstrip("\n") + "\n\n" + text + "\n"
    out.write_text(new, encoding="utf-8")
    return text


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10, help="runs per measured path")
    parser.add_argument("--ha-port", type=int, default=free_port())
    parser.add_argument("--out", type=Path, default=ROOT / "docs/benchmarks.md")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs)")
    args = parser.parse_args()
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    work = Path(tempfile.mkdtemp(prefix="edge-inference-ha-bench-"))
    demo = Demo(work, args.ha_port, free_port())
    log(f"Working in {work}; load average {load}")
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # `timeout`/kill: clean up too
    try:
        results = asyncio.run(run(demo, args.runs))
    finally:
        demo.stop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print(write(args.out, results, args.runs, load))
    return 0


if __name__ == "__main__":
    sys.exit(main())
