"""Memory under sustained load: 50 clients for 10 minutes against a real server process.

Each client keeps one connection (as Home Assistant's shared session does) and posts real COCO
images back to back; a 503 (busy or queue_full) is honoured by waiting its Retry-After. The
server's resident memory is sampled every minute. Goals (issue 7): growth under 5% from the end
of the first minute to the end, idle and peak RSS reported against 280 MB / 1 GB.

    .venv/bin/python bench/soak.py --clients 50 --minutes 10 --json /tmp/soak.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.helpers.server_process import DEFAULT_REPO, ServerProcess  # noqa: E402

TOKEN = "bench-soak-token"
COCO = Path("/work/shared/data/coco_val2017_128/images")


def memory_mb(pid: int, key: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def load_images(limit: int) -> list[bytes]:
    files = sorted(COCO.rglob("*.jpg"))[:limit] if COCO.exists() else []
    files = files or sorted((ROOT / "tests/fixtures/images").glob("*.jpg"))
    return [f.read_bytes() for f in files]


async def client(
    url: str,
    images: list[bytes],
    offset: int,
    until: float,
    statuses: Counter[int],
    latencies: list[float],
) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "image/jpeg"}
    connector = aiohttp.TCPConnector(limit=1)
    async with aiohttp.ClientSession(connector=connector) as session:
        i = offset
        while time.monotonic() < until:
            started = time.perf_counter()
            try:
                async with session.post(
                    url + "/api/v1/vision/detect", data=images[i % len(images)], headers=headers
                ) as resp:
                    await resp.read()
                    statuses[resp.status] += 1
                    if resp.status == 503:
                        await asyncio.sleep(float(resp.headers.get("Retry-After", "1")))
                    elif resp.status == 200:
                        latencies.append(time.perf_counter() - started)
            except aiohttp.ClientError:
                statuses[0] += 1
                await asyncio.sleep(1)
            i += 1


async def soak(args: argparse.Namespace) -> dict[str, object]:
    images = load_images(args.images)
    with tempfile.TemporaryDirectory() as tmp:
        server = ServerProcess(Path(tmp), mqtt_port=None, token=TOKEN, model_repo=DEFAULT_REPO)
        await asyncio.to_thread(server.start)
        try:
            await asyncio.sleep(5)  # settled after start-up
            idle = memory_mb(server.pid, "VmRSS")
            statuses: Counter[int] = Counter()
            latencies: list[float] = []
            started = time.monotonic()
            until = started + args.minutes * 60
            tasks = [
                asyncio.create_task(client(server.url, images, k * 7, until, statuses, latencies))
                for k in range(args.clients)
            ]
            samples = []
            for minute in range(1, args.minutes + 1):
                await asyncio.sleep(max(0.0, started + minute * 60 - time.monotonic()))
                rss = memory_mb(server.pid, "VmRSS")
                samples.append({"minute": minute, "rss_mb": round(rss), "ok": statuses[200]})
                print(f"minute {minute}: RSS {rss:.0f} MB, {statuses[200]} answered", flush=True)
            await asyncio.gather(*tasks)
            peak = memory_mb(server.pid, "VmHWM")
            alive = server.running
        finally:
            await asyncio.to_thread(server.stop)
    first, last = samples[0]["rss_mb"], samples[-1]["rss_mb"]
    ordered = sorted(latencies)
    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.machine()}, {args.cpus} CPU cores",
        "clients": args.clients,
        "minutes": args.minutes,
        "images": len(images),
        "idle_rss_mb": round(idle),
        "peak_rss_mb": round(peak),
        "samples": samples,
        "growth_after_first_minute_pct": round((last - first) / first * 100, 1),
        "statuses": dict(sorted(statuses.items())),
        "answered_per_s": round(statuses[200] / (args.minutes * 60), 1),
        "latency_ms": {
            "p50": round(statistics.median(ordered) * 1000) if ordered else None,
            "p95": round(ordered[int(len(ordered) * 0.95)] * 1000) if ordered else None,
        },
        "alive": alive,
    }


def main() -> int:
    import os

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--minutes", type=int, default=10)
    parser.add_argument("--images", type=int, default=128)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    args.cpus = os.cpu_count()
    result = asyncio.run(soak(args))
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
