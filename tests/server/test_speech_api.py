"""Speech-to-text on the real server process with the real tiny.en model and real speech
(espeak-ng sentences, the goforward.raw recording) at 16 kHz mono and 44.1 kHz stereo: HTTP
transcription, the live WebSocket stream, and the bad input the issue lists."""

from __future__ import annotations

import asyncio
import json
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.helpers.server_process import ServerProcess
from tests.helpers.speech_audio import (
    GOFORWARD_RAW,
    TRANSCRIPTS,
    make_speech,
    normalise,
    pcm_of,
    silence,
    tools_missing,
)

from .conftest import TOKEN

ROOT = Path(__file__).resolve().parents[2]
AUTH = {"Authorization": f"Bearer {TOKEN}"}
TRANSCRIBE = "/api/v1/speech/transcribe"
STREAM = "/api/v1/speech/stream"
MAX_STREAMS = 4

pytestmark = [
    pytest.mark.skipif(bool(tools_missing()), reason=f"scripts/setup installs {tools_missing()}"),
    pytest.mark.skipif(
        not (ROOT / "speech_models" / "tiny.en").is_dir(),
        reason="scripts/setup installs speech_models/",
    ),
]


@pytest.fixture(scope="module")
def speech(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_speech(tmp_path_factory.mktemp("speech"))


@pytest.fixture(scope="module")
def speech_server(
    tmp_path_factory: pytest.TempPathFactory, model_repo: Path
) -> Iterator[ServerProcess]:
    proc = ServerProcess(
        tmp_path_factory.mktemp("speech_server"),
        mqtt_port=None,
        token=TOKEN,
        model_repo=model_repo,
        extra_args=["--speech-max-streams", str(MAX_STREAMS), "--speech-max-audio-s", "60"],
    )
    proc.start()
    yield proc
    proc.stop()


async def post_audio(
    server: ServerProcess, data: bytes, content_type: str, query: str = ""
) -> tuple[int, dict[str, Any], dict[str, str]]:
    headers = {**AUTH, "Content-Type": content_type}
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{server.url}{TRANSCRIBE}{query}", data=data, headers=headers) as resp,
    ):
        body = await resp.json() if resp.content_type == "application/json" else {}
        return resp.status, body, dict(resp.headers)


def expected(name: str) -> str:
    return normalise(TRANSCRIPTS[name.rsplit("_", 2)[0]])


@pytest.mark.parametrize(
    "name",
    [
        "kitchen_lights_16k_mono",
        "kitchen_lights_44k_stereo",
        "thermostat_16k_mono",
        "thermostat_44k_stereo",
        "goforward_16k_mono",
        "goforward_44k_stereo",
    ],
)
async def test_wav_is_transcribed_exactly(
    speech_server: ServerProcess, speech: dict[str, Path], name: str
) -> None:
    status, body, _ = await post_audio(speech_server, speech[name].read_bytes(), "audio/wav")
    assert status == 200, body
    assert normalise(body["text"]) == expected(name)
    assert body["language"] == "en"
    assert body["segments"]
    assert normalise(" ".join(s["text"] for s in body["segments"])) == expected(name)
    assert body["timing_ms"]["decode"] > 0


async def test_raw_l16_recording_is_transcribed(speech_server: ServerProcess) -> None:
    status, body, _ = await post_audio(
        speech_server, GOFORWARD_RAW.read_bytes(), "audio/L16;rate=16000;channels=1"
    )
    assert status == 200, body
    assert normalise(body["text"]) == "go forward 10 meters"


async def test_raw_l16_stereo_44k_big_endian(
    speech_server: ServerProcess, speech: dict[str, Path]
) -> None:
    frames, rate, channels = pcm_of(speech["kitchen_lights_44k_stereo"])
    samples = struct.unpack(f"<{len(frames) // 2}h", frames)
    big = struct.pack(f">{len(samples)}h", *samples)
    status, body, _ = await post_audio(
        speech_server, big, f"audio/L16; rate={rate}; channels={channels}; endian=big"
    )
    assert status == 200, body
    assert normalise(body["text"]) == "turn on the kitchen lights"


def _lying_wav(data: bytes) -> bytes:
    lying = bytearray(data)
    data_at = lying.index(b"data")
    (size,) = struct.unpack_from("<I", lying, data_at + 4)
    struct.pack_into("<I", lying, data_at + 4, size * 4)  # claims 4x the audio it holds
    return bytes(lying)


@pytest.mark.parametrize(
    ("case", "status", "code"),
    [
        ("lying_header", 400, "invalid_audio"),
        ("truncated", 400, "invalid_audio"),
        ("empty_wav_body", 400, "empty_audio"),
        ("empty_l16", 400, "empty_audio"),
        ("header_only", 400, "empty_audio"),
        ("odd_l16", 400, "invalid_audio"),
        ("bad_rate", 400, "invalid_audio"),
        ("not_audio", 415, "unsupported_media_type"),
        ("not_a_wav", 400, "invalid_audio"),
        ("ten_minutes", 413, "audio_too_long"),
        ("german_for_english_model", 400, "invalid_parameter"),
    ],
)
async def test_bad_audio_gets_a_clear_error(
    speech_server: ServerProcess, speech: dict[str, Path], case: str, status: int, code: str
) -> None:
    wav = speech["kitchen_lights_16k_mono"].read_bytes()
    header = wav[: wav.index(b"data") + 8]
    header_only = header[:-4] + struct.pack("<I", 0)
    ten_minutes = silence(600, 16000, 1)  # 19.2 MB: under the body limit, over the audio limit
    cases: dict[str, tuple[bytes, str, str]] = {
        "lying_header": (_lying_wav(wav), "audio/wav", ""),
        "truncated": (wav[: len(wav) // 3], "audio/wav", ""),
        "empty_wav_body": (b"", "audio/wav", ""),
        "empty_l16": (b"", "audio/L16;rate=16000", ""),
        "header_only": (header_only, "audio/wav", ""),
        "odd_l16": (b"\x00" * 1001, "audio/L16;rate=16000", ""),
        "bad_rate": (b"\x00" * 1000, "audio/L16;rate=3", ""),
        "not_audio": (b"hello", "text/plain", ""),
        "not_a_wav": (b"ID3\x04" + b"\x00" * 400, "audio/wav", ""),
        "ten_minutes": (ten_minutes, "audio/L16;rate=16000;channels=1", ""),
        "german_for_english_model": (wav, "audio/wav", "?language=de"),
    }
    data, content_type, query = cases[case]
    got, body, _ = await post_audio(speech_server, data, content_type, query)
    assert got == status, body
    assert body["error"]["code"] == code
    assert body["error"]["message"]


async def _stream(
    server: ServerProcess,
    frames: bytes,
    start: dict[str, Any],
    *,
    pace_s: float = 0.02,
    end_message: bool = False,
) -> list[dict[str, Any]]:
    """Send frames in 20 ms chunks (sleeping pace_s between them); every server message."""
    rate, channels = start.get("rate", 16000), start.get("channels", 1)
    step = int(rate * 0.02) * 2 * channels
    messages: list[dict[str, Any]] = []
    async with (
        aiohttp.ClientSession(headers=AUTH) as session,
        session.ws_connect(server.url + STREAM) as ws,
    ):
        await ws.send_json({"type": "start", **start})
        messages.append(await ws.receive_json(timeout=30))
        assert messages[0]["type"] == "ready", messages

        async def read() -> None:
            async for msg in ws:
                if msg.type == aiohttp.WSMsgType.TEXT:
                    messages.append(json.loads(msg.data))

        reader = asyncio.create_task(read())
        for i in range(0, len(frames), step):
            if ws.closed or reader.done():
                break
            await ws.send_bytes(frames[i : i + step])
            await asyncio.sleep(pace_s)
        if end_message and not ws.closed:
            await ws.send_json({"type": "end"})
        await asyncio.wait_for(reader, 60)
    return messages


async def test_stream_ends_itself_at_end_of_speech_with_exact_text(
    speech_server: ServerProcess, speech: dict[str, Path]
) -> None:
    frames, rate, channels = pcm_of(speech["thermostat_44k_stereo"])
    frames += silence(3.0, rate, channels)  # more than the VAD needs: it must not wait for it
    start = {"language": "en", "rate": rate, "channels": channels}
    messages = await _stream(speech_server, frames, start, pace_s=0.005)
    final = messages[-1]
    assert final["type"] == "final", messages
    assert final["reason"] == "vad"
    assert normalise(final["text"]) == "set the thermostat to 21 degrees"
    # ended by the VAD well before the 3 s of silence were all sent
    assert final["duration_s"] < len(frames) / (2 * channels * rate) - 1.0


async def test_stream_sends_partials_that_the_final_text_extends(
    speech_server: ServerProcess, speech: dict[str, Path]
) -> None:
    one, rate, _ = pcm_of(speech["kitchen_lights_16k_mono"])
    two, _, _ = pcm_of(speech["thermostat_16k_mono"])
    frames = one + two + one + silence(1.0, rate, 1)  # about 6 s of speech at real-time pace
    messages = await _stream(speech_server, frames, {"rate": rate})
    partials = [m for m in messages if m["type"] == "partial"]
    final = messages[-1]
    assert final["type"] == "final", messages
    assert partials, messages
    assert all(p["text"] for p in partials)
    # the final text comes from its own beam-search pass, so it is checked on its own
    assert normalise(final["text"]).startswith("turn on the kitchen lights")


async def test_client_may_end_the_stream(
    speech_server: ServerProcess, speech: dict[str, Path]
) -> None:
    frames, rate, _ = pcm_of(speech["goforward_16k_mono"])
    # the recording ends in 0.5 s of silence: a long end_silence keeps the VAD from ending first
    start = {"rate": rate, "language": "en-US", "end_silence_ms": 3000}
    messages = await _stream(speech_server, frames, start, pace_s=0.002, end_message=True)
    final = messages[-1]
    assert final["type"] == "final", messages
    assert final["reason"] == "client"
    assert normalise(final["text"]) == "go forward 10 meters"


async def test_silence_only_ends_with_empty_text(speech_server: ServerProcess) -> None:
    messages = await _stream(speech_server, silence(9.0, 16000, 1), {"rate": 16000}, pace_s=0)
    final = messages[-1]
    assert final == {**final, "type": "final", "text": "", "reason": "no_speech"}


async def test_a_stream_that_goes_silent_times_out(speech_server: ServerProcess) -> None:
    async with (
        aiohttp.ClientSession(headers=AUTH) as session,
        session.ws_connect(speech_server.url + STREAM) as ws,
    ):
        await ws.send_json({"type": "start", "rate": 16000})
        assert (await ws.receive_json(timeout=30))["type"] == "ready"
        await ws.send_bytes(silence(0.2, 16000, 1))
        message = await ws.receive_json(timeout=20)  # the server's idle timeout is 5 s
        assert message["type"] == "error"
        assert message["error"]["code"] == "timeout"
        closing = await ws.receive(timeout=10)
        assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)


@pytest.mark.parametrize(
    ("first", "code"),
    [
        (b"\x00\x00" * 160, "bad_request"),
        ({"type": "start", "language": "de"}, "bad_request"),
        ({"type": "start", "rate": 100}, "bad_request"),
        ({"type": "start", "phrases": "kitchen"}, "bad_request"),
        ({"type": "hello"}, "bad_request"),
    ],
)
async def test_bad_start_messages_get_an_error(
    speech_server: ServerProcess, first: bytes | dict[str, Any], code: str
) -> None:
    async with (
        aiohttp.ClientSession(headers=AUTH) as session,
        session.ws_connect(speech_server.url + STREAM) as ws,
    ):
        if isinstance(first, bytes):
            await ws.send_bytes(first)
        else:
            await ws.send_json(first)
        message = await ws.receive_json(timeout=10)
        assert message["type"] == "error"
        assert message["error"]["code"] == code


async def test_stream_route_without_websocket_upgrade_is_a_400(
    speech_server: ServerProcess,
) -> None:
    async with (
        aiohttp.ClientSession(headers=AUTH) as session,
        session.get(speech_server.url + STREAM) as resp,
    ):
        assert resp.status == 400
        assert (await resp.json())["error"]["code"] == "websocket_required"


async def test_streams_beyond_the_limit_get_503_and_slots_come_back(
    speech_server: ServerProcess, speech: dict[str, Path]
) -> None:
    async with aiohttp.ClientSession(headers=AUTH) as session:
        attempts = await asyncio.gather(
            *(session.ws_connect(speech_server.url + STREAM) for _ in range(20)),
            return_exceptions=True,
        )
        opened = [a for a in attempts if isinstance(a, aiohttp.ClientWebSocketResponse)]
        refused = [a for a in attempts if isinstance(a, aiohttp.WSServerHandshakeError)]
        assert len(opened) == MAX_STREAMS
        assert len(refused) == 20 - MAX_STREAMS
        assert all(r.status == 503 for r in refused)
        assert all(r.headers and int(r.headers["Retry-After"]) >= 1 for r in refused)
        # clients that vanish mid-stream (no end, no close handshake) give their slot back
        for ws in opened:
            await ws.send_json({"type": "start", "rate": 16000})
            await ws.send_bytes(silence(0.5, 16000, 1))
        for ws in opened:
            ws._response.connection.transport.abort()  # type: ignore[union-attr]
    frames, rate, _ = pcm_of(speech["kitchen_lights_16k_mono"])
    for _ in range(20):  # the server notices the dropped connections within moments
        try:
            messages = await _stream(
                speech_server, frames, {"rate": rate}, pace_s=0.002, end_message=True
            )
            break
        except aiohttp.WSServerHandshakeError:
            await asyncio.sleep(0.5)
    else:
        pytest.fail("stream slots were not released after the clients disconnected")
    assert normalise(messages[-1]["text"]) == "turn on the kitchen lights"


async def test_server_still_healthy_after_all_of_the_above(
    speech_server: ServerProcess, speech: dict[str, Path]
) -> None:
    assert speech_server.running
    async with aiohttp.ClientSession(headers=AUTH) as session:
        async with session.get(speech_server.url + "/api/v1/info") as resp:
            info = await resp.json()
        stt = info["capabilities"]["stt"]
        assert stt["model"] == "tiny.en"
        assert stt["languages"] == ["en"]
        assert stt["streaming"] is True
    status, body, _ = await post_audio(
        speech_server, speech["thermostat_16k_mono"].read_bytes(), "audio/wav"
    )
    assert status == 200
    assert normalise(body["text"]) == "set the thermostat to 21 degrees"


@pytest.fixture
def base_server(tmp_path: Path, model_repo: Path) -> Iterator[ServerProcess]:
    if not (ROOT / "speech_models" / "base" / "model.bin").is_file():
        pytest.skip("scripts/setup installs speech_models/base (joined from its two parts)")
    proc = ServerProcess(
        tmp_path / "base_server",
        mqtt_port=None,
        token=TOKEN,
        model_repo=model_repo,
        extra_args=["--speech-model", "base"],
    )
    proc.start()
    yield proc
    proc.stop()


async def test_multilingual_base_model_detects_the_language(
    base_server: ServerProcess, speech: dict[str, Path]
) -> None:
    status, body, _ = await post_audio(
        base_server, speech["goforward_16k_mono"].read_bytes(), "audio/wav"
    )
    assert status == 200, body
    assert body["model"] == "base"
    assert body["language"] == "en"  # detected: no language was given
    assert normalise(body["text"]) == "go forward 10 meters"
    status, body, _ = await post_audio(
        base_server, speech["kitchen_lights_44k_stereo"].read_bytes(), "audio/wav", "?language=en"
    )
    assert status == 200, body
    assert normalise(body["text"]) == "turn on the kitchen lights"
    async with (
        aiohttp.ClientSession(headers=AUTH) as session,
        session.get(base_server.url + "/api/v1/info") as resp,
    ):
        stt = (await resp.json())["capabilities"]["stt"]
    assert stt["model"] == "base"
    assert {"en", "de", "fr", "nl"} <= set(stt["languages"])
