"""The long fuzz run: at least 100,000 requests against a real server process.

Rounds of Schemathesis cases from the server's own OpenAPI description (every operation,
positive and negative, a new seed each round) and raw mutations of a real image upload, until
the request count is reached. The property is the suite's (tests/server/test_fuzz.py): no 5xx
but 503, every error in the JSON shape, and the server alive and healthy at the end.

    .venv/bin/python bench/fuzz.py --requests 100000 --json /tmp/fuzz.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.helpers.api_fuzz import FuzzReport, fuzz_operations, mutate_uploads  # noqa: E402
from tests.helpers.server_process import DEFAULT_REPO, ServerProcess  # noqa: E402

TOKEN = "bench-fuzz-token"


def rss_mb(pid: int, key: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--examples", type=int, default=300, help="cases per operation and mode")
    parser.add_argument("--mutations", type=int, default=1500, help="raw uploads per round")
    parser.add_argument("--json", type=Path, help="write the result here too (after each round)")
    parser.add_argument("--minutes", type=float, default=0, help="stop after this long (0: never)")
    args = parser.parse_args()

    image = (ROOT / "tests/fixtures/images/street_people.jpg").read_bytes()
    with tempfile.TemporaryDirectory() as tmp:
        server = ServerProcess(Path(tmp), mqtt_port=None, token=TOKEN, model_repo=DEFAULT_REPO)
        server.start()
        started = time.monotonic()
        idle_rss = rss_mb(server.pid)
        report = FuzzReport()
        seed = 0
        try:
            deadline = started + args.minutes * 60 if args.minutes else float("inf")
            while (
                report.requests < args.requests and server.running and time.monotonic() < deadline
            ):
                seed += 1
                fuzz_operations(server.url, TOKEN, examples=args.examples, report=report, seed=seed)
                mutate_uploads(
                    server.url, TOKEN, image, count=args.mutations, report=report, seed=seed
                )
                print(
                    f"round {seed}: {report.requests} requests, "
                    f"{len(report.violations)} violations, RSS {rss_mb(server.pid):.0f} MB",
                    flush=True,
                )
                if args.json:  # a run cut short still leaves its numbers
                    args.json.write_text(json.dumps(_result(report, server, started, idle_rss)))
            result = _result(report, server, started, idle_rss)
        finally:
            server.stop()
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    ok = not result["violations"] and result["alive"] and result["health_after"] == 200
    return 0 if ok else 1


def _result(
    report: FuzzReport, server: ServerProcess, started: float, idle_rss: float
) -> dict[str, object]:
    alive = server.running
    try:
        health = requests.get(server.url + "/api/v1/health", timeout=10).status_code
    except requests.RequestException:
        health = 0
    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores",
        "requests": report.requests,
        "unsendable": report.unsendable,
        "seconds": round(time.monotonic() - started),
        "statuses": dict(sorted(report.statuses.items())),
        "violations": report.violations,
        "alive": alive,
        "health_after": health,
        "rss_mb": {
            "idle": round(idle_rss),
            "end": round(rss_mb(server.pid)) if alive else None,
            "peak": round(rss_mb(server.pid, "VmHWM")) if alive else None,
        },
    }


if __name__ == "__main__":
    sys.exit(main())
