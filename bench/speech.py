"""Speech-to-text for Assist: our server against wyoming-faster-whisper 3.8.1, in one run.

Same machine, same model files (speech_models/<model>), same compute type (int8), same CPU
threads, same audio: 20 commands of 3-8 s spoken by espeak-ng, sent at real-time pace in 20 ms
chunks, the systems taking turns utterance by utterance so background load hits both alike.

- wyoming-faster-whisper needs someone else to hear the end of speech (requires_external_vad):
  as in HA, the client keeps sending audio until HA's VAD would stop it (0.7 s of silence, HA's
  default `silence_seconds`), then sends audio-stop. Reported: latency from the end of speech,
  and the decode alone (from audio-stop).
- ours (WebSocket): the client just keeps sending the silence that follows; the server hears
  the end of speech itself and answers. Also: the client ending the stream itself at the end of
  speech ("ours, client end"), and the same with the home's names sent as phrases.
Latency = final text received - the moment the last speech sample was sent. WER with jiwer on
lower-cased text without punctuation. CPU = the server process's CPU seconds per utterance
(/proc/<pid>/stat), partial decodes included.

Setup once: python3.13 -m venv .venv-wyoming-fw &&
  .venv-wyoming-fw/bin/pip install wyoming-faster-whisper==3.8.1 'av<16'
(av 16+ removed an argument faster-whisper 1.2.1's decode_audio passes: with the av pip picks
today, wyoming-faster-whisper fails on every request.)
Run: .venv/bin/python bench/speech.py [--model tiny.en] [--utterances 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
import wave
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import jiwer
from wyoming.asr import Transcribe, Transcript
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.client import AsyncTcpClient
from wyoming.info import Describe

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.helpers.broker import free_port  # noqa: E402

RATE = 16000
CHUNK_S = 0.02
CHUNK_BYTES = int(RATE * CHUNK_S) * 2
HA_SILENCE_S = 0.7  # homeassistant.components.assist_pipeline.vad: silence_seconds
TOKEN = "bench-token-speech"
WFW_PYTHON = ROOT / ".venv-wyoming-fw" / "bin" / "python"

# (what is said, what a perfect transcript reads); names a home might have in the second half.
COMMANDS = [
    "turn on the kitchen lights and set them to half brightness",
    "set the thermostat in the living room to 21 degrees for the evening",
    "close the garage door and lock the front door please",
    "what is the temperature in the bedroom right now",
    "turn off all the lights on the ground floor except the hallway",
    "open the blinds in the office and turn on the desk lamp",
    "start the dishwasher tonight when the electricity is cheap",
    "is the back door locked and is the alarm armed for the night",
    "play some relaxing music in the bathroom while I take a bath",
    "set a timer for ten minutes and remind me to check the pasta",
    "turn the hallway lights on at sunset every day this week",
    "good night, turn everything off and lock all the doors",
    "turn on the Sonos speaker in the den and play the morning news",
    "set the Ecobee to heat mode and raise the temperature a little",
    "start the Roomba in the dining room after everybody has left",
    "dim the Hue lights in the nursery to the lowest setting",
    "turn off the Nanit camera in the baby room for the afternoon",
    "open the Somfy shutters on the terrace when the sun comes up",
    "switch on the Shelly plug in the workshop for the heater",
    "is the Aqara sensor in the attic still online and reporting",
]
PHRASES = [
    "Kitchen", "Living room", "Bedroom", "Office", "Bathroom", "Hallway", "Den", "Dining room",
    "Nursery", "Baby room", "Terrace", "Workshop", "Attic", "Ground floor", "Garage door",
    "Front door", "Back door", "Desk lamp", "Dishwasher", "Sonos speaker", "Ecobee", "Roomba",
    "Hue lights", "Nanit camera", "Somfy shutters", "Shelly plug", "Aqara sensor", "Blinds",
    "Thermostat", "Alarm",
]  # fmt: skip


@dataclass
class Utterance:
    text: str
    pcm: bytes  # 16 kHz mono s16le speech, silence trimmed

    @property
    def seconds(self) -> float:
        return len(self.pcm) / (2 * RATE)


@dataclass
class Result:
    latency_s: list[float] = field(default_factory=list)
    decode_s: list[float] = field(default_factory=list)
    cpu_s: list[float] = field(default_factory=list)
    hypotheses: list[str] = field(default_factory=list)
    references: list[str] = field(default_factory=list)


def make_utterances(folder: Path, count: int) -> list[Utterance]:
    made = []
    for i, text in enumerate(COMMANDS[:count]):
        raw, trimmed = folder / f"u{i}.wav", folder / f"u{i}_16k.wav"
        subprocess.run(["espeak-ng", "-v", "en", "-s", "120", "-w", str(raw), text], check=True)
        # 16 kHz mono, leading and trailing silence cut: the end of the file is the end of speech
        trim = ["silence", "1", "0.02", "0.5%", "reverse"] * 2
        subprocess.run(
            ["sox", str(raw), "-r", "16000", "-c", "1", "-b", "16", str(trimmed), *trim], check=True
        )
        with wave.open(str(trimmed), "rb") as reader:
            made.append(Utterance(text, reader.readframes(reader.getnframes())))
    return made


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def paced(chunks: list[bytes], send: Callable[[bytes], Awaitable[None]], t0: float) -> None:
    """Send chunk i at t0 + i * 20 ms, as a microphone delivers them."""
    for i, chunk in enumerate(chunks):
        delay = t0 + i * CHUNK_S - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        await send(chunk)


def split(pcm: bytes) -> list[bytes]:
    return [pcm[i : i + CHUNK_BYTES] for i in range(0, len(pcm), CHUNK_BYTES)]


async def run_wyoming(port: int, utt: Utterance) -> tuple[str, float, float]:
    """(text, latency from end of speech, decode time from audio-stop)."""
    silence = b"\x00" * int(HA_SILENCE_S * RATE) * 2
    async with AsyncTcpClient("127.0.0.1", port) as client:
        await client.write_event(Transcribe(language="en").event())
        await client.write_event(AudioStart(rate=RATE, width=2, channels=1).event())

        async def send(chunk: bytes) -> None:
            await client.write_event(
                AudioChunk(rate=RATE, width=2, channels=1, audio=chunk).event()
            )

        t0 = time.monotonic()
        speech = split(utt.pcm)
        await paced(speech + split(silence), send, t0)
        end_of_speech = t0 + len(speech) * CHUNK_S
        await client.write_event(AudioStop().event())
        stopped = time.monotonic()
        while True:
            event = await asyncio.wait_for(client.read_event(), 60)
            if event is None:
                raise RuntimeError("wyoming server closed the connection")
            if Transcript.is_type(event.type):
                done = time.monotonic()
                return Transcript.from_event(event).text, done - end_of_speech, done - stopped


async def run_websocket(
    url: str, utt: Utterance, *, client_end: bool, phrases: list[str] | None = None
) -> tuple[str, float, float]:
    """(text, latency from end of speech, time from the end of audio sent to the final)."""
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with (
        aiohttp.ClientSession(headers=headers) as session,
        session.ws_connect(url + "/api/v1/speech/stream") as ws,
    ):
        await ws.send_json({"type": "start", "language": "en", "rate": RATE, "phrases": phrases})
        ready = await ws.receive_json(timeout=30)
        assert ready["type"] == "ready", ready
        final: dict[str, Any] = {}
        final_at = asyncio.get_running_loop().create_future()

        async def read() -> None:
            async for msg in ws:
                data = json.loads(msg.data)
                if data["type"] in ("final", "error"):
                    final.update(data)
                    final_at.set_result(time.monotonic())
                    return

        reader = asyncio.create_task(read())
        t0 = time.monotonic()
        speech = split(utt.pcm)
        end_of_speech = t0 + len(speech) * CHUNK_S

        async def send(chunk: bytes) -> None:
            if not final_at.done() and not ws.closed:
                await ws.send_bytes(chunk)

        await paced(speech, send, t0)
        if client_end:
            await ws.send_json({"type": "end"})
        else:  # the room stays quiet: keep streaming silence until the server answers
            trailing = split(b"\x00" * 3 * RATE * 2)
            sender = asyncio.create_task(paced(trailing, send, end_of_speech))
            await asyncio.wait([final_at, sender], return_when=asyncio.FIRST_COMPLETED)
            sender.cancel()
        done = await asyncio.wait_for(final_at, 60)
        await reader
        if final.get("type") != "final":
            raise RuntimeError(f"no final text: {final}")
        return str(final["text"]), done - end_of_speech, done - max(end_of_speech, t0)


def normalise(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s']", " ", text.lower()).split())


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def start_ours(workdir: Path, model_dir: Path, *extra: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    ours_args = ["--host", "127.0.0.1", "--port", str(port), "--token", TOKEN, "--data-dir"]
    ours_args += [str(workdir / f"ours{port}"), "--speech-model-dir", str(model_dir.parent)]
    ours_args += ["--speech-model", model_dir.name, "--log-level", "warning", *extra]
    ours = subprocess.Popen(
        [str(ROOT / ".venv/bin/python"), "-m", "inference_server", *ours_args],
        cwd=ROOT,
        stdout=(workdir / f"ours{port}.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    return ours, f"http://127.0.0.1:{port}"


def start_servers(
    workdir: Path, model_dir: Path, threads: int
) -> tuple[subprocess.Popen[bytes], str, subprocess.Popen[bytes], int]:
    ours, url = start_ours(workdir, model_dir)
    wport = free_port()
    wfw_args = ["--uri", f"tcp://127.0.0.1:{wport}", "--model", str(model_dir), "--data-dir"]
    wfw_args += [str(workdir / "wfw"), "--stt-library", "faster-whisper", "--language", "en"]
    wfw_args += ["--beam-size", "5", "--compute-type", "int8", "--cpu-threads", str(threads)]
    wfw = subprocess.Popen(
        [str(WFW_PYTHON), "-m", "wyoming_faster_whisper", *wfw_args, "--local-files-only"],
        stdout=(workdir / "wfw.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    return ours, url, wfw, wport


async def wait_ready(url: str, wport: int) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            async with (
                aiohttp.ClientSession() as session,
                session.get(url + "/api/v1/health") as resp,
            ):
                ok = resp.status == 200
            async with AsyncTcpClient("127.0.0.1", wport) as client:
                await client.write_event(Describe().event())
                ok = ok and (await asyncio.wait_for(client.read_event(), 5)) is not None
            if ok:
                return
        except (OSError, aiohttp.ClientError, TimeoutError):
            pass
        await asyncio.sleep(0.5)
    raise TimeoutError("servers did not come up")


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    model_dir = (ROOT / "speech_models" / args.model).resolve()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        utterances = make_utterances(workdir, args.utterances)
        ours, url, wfw, wport = start_servers(workdir, model_dir, args.threads)
        # the same server with Whisper's own 30 s window for final decodes
        full, full_url = start_ours(workdir, model_dir, "--speech-short-window", "false")
        try:
            await wait_ready(url, wport)
            await wait_ready(full_url, wport)
            systems: dict[str, Callable[[Utterance], Awaitable[tuple[str, float, float]]]] = {
                "wyoming-faster-whisper 3.8.1 (HA VAD, 0.7 s)": lambda u: run_wyoming(wport, u),
                "ours, WebSocket, own VAD": lambda u: run_websocket(url, u, client_end=False),
                "ours, WebSocket, client ends": lambda u: run_websocket(url, u, client_end=True),
                "ours, own VAD + phrases": lambda u: run_websocket(
                    url, u, client_end=False, phrases=PHRASES
                ),
                "ours, own VAD, 30 s window": lambda u: run_websocket(
                    full_url, u, client_end=False
                ),
            }
            pids = dict.fromkeys(systems, ours.pid)
            pids[next(iter(systems))] = wfw.pid
            pids["ours, own VAD, 30 s window"] = full.pid
            for run in systems.values():  # warm-up: model load, first-call allocations
                await run(utterances[0])
            results = {name: Result() for name in systems}
            for i, utt in enumerate(utterances):
                for name, run in systems.items():
                    cpu0 = cpu_seconds(pids[name])
                    text, latency, decode = await run(utt)
                    await asyncio.sleep(0.3)  # let cancelled partial passes drain
                    result = results[name]
                    result.cpu_s.append(cpu_seconds(pids[name]) - cpu0)
                    result.latency_s.append(latency)
                    result.decode_s.append(decode)
                    result.hypotheses.append(normalise(text))
                    result.references.append(normalise(utt.text))
                    print(f"[{i:2}] {name:48} {latency:5.2f} s  {text!r}", file=sys.stderr)
        finally:
            for proc in (ours, wfw, full):
                proc.terminate()
                proc.wait(timeout=20)
    report: dict[str, Any] = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "model": args.model,
        "threads": args.threads,
        "utterances": len(utterances),
        "speech_s": [
            round(min(u.seconds for u in utterances), 1),
            round(max(u.seconds for u in utterances), 1),
        ],
        "systems": {},
    }
    for name, result in results.items():
        report["systems"][name] = {
            "latency_p50_s": round(statistics.median(result.latency_s), 3),
            "latency_p90_s": round(pct(result.latency_s, 0.9), 3),
            "after_audio_end_p50_s": round(statistics.median(result.decode_s), 3),
            "wer": round(jiwer.wer(result.references, result.hypotheses), 4),
            "cpu_s_per_utterance": round(statistics.mean(result.cpu_s), 2),
            "errors": [
                (ref, hyp)
                for ref, hyp in zip(result.references, result.hypotheses, strict=True)
                if ref != hyp
            ],
        }
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--model", default="tiny.en")
    parser.add_argument("--utterances", type=int, default=20)
    parser.add_argument("--threads", type=int, default=min(4, os.cpu_count() or 1))
    args = parser.parse_args()
    if not WFW_PYTHON.exists():
        raise SystemExit(f"missing {WFW_PYTHON}: see the setup line at the top of {__file__}")
    print(json.dumps(asyncio.run(bench(args)), indent=2))


if __name__ == "__main__":
    main()
