"""The Wyoming protocol port of the real server (client: the `wyoming` package, as HA's Wyoming
integration uses it) and the port in the MQTT announce on a real Mosquitto."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from wyoming.asr import Transcribe, Transcript, TranscriptChunk, TranscriptStart, TranscriptStop
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.client import AsyncTcpClient
from wyoming.error import Error
from wyoming.event import Event
from wyoming.info import Describe, Info

from tests.helpers.broker import MosquittoBroker, free_port
from tests.helpers.mqtt_watcher import MqttWatcher
from tests.helpers.server_process import ServerProcess
from tests.helpers.speech_audio import make_speech, normalise, pcm_of, silence, tools_missing

from .conftest import TOKEN

ROOT = Path(__file__).resolve().parents[2]

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
def wyoming_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MosquittoBroker]:
    broker = MosquittoBroker(tmp_path_factory.mktemp("broker"))
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture(scope="module")
def wyoming_server(
    tmp_path_factory: pytest.TempPathFactory, model_repo: Path, wyoming_broker: MosquittoBroker
) -> Iterator[ServerProcess]:
    port = free_port()
    proc = ServerProcess(
        tmp_path_factory.mktemp("wyoming_server"),
        mqtt_port=wyoming_broker.port,
        token=TOKEN,
        model_repo=model_repo,
        extra_args=["--wyoming-port", str(port), "--speech-max-streams", "2"],
    )
    proc.wyoming_port = port  # type: ignore[attr-defined]
    proc.start()
    yield proc
    proc.stop()


def port_of(server: ServerProcess) -> int:
    return int(server.wyoming_port)  # type: ignore[attr-defined]


async def transcribe(
    server: ServerProcess, path: Path, *, trailing_silence: float = 1.5, stop: bool = True
) -> list[Event]:
    """One Wyoming round as HA's Wyoming STT does it; every event until the transcript."""
    frames, rate, channels = pcm_of(path)
    frames += silence(trailing_silence, rate, channels)
    step = int(rate * 0.02) * 2 * channels
    events: list[Event] = []
    async with AsyncTcpClient("127.0.0.1", port_of(server)) as client:
        await client.write_event(
            Transcribe(language="en", transcript_names=["Kitchen", "Thermostat"]).event()
        )
        await client.write_event(AudioStart(rate=rate, width=2, channels=channels).event())

        async def read() -> None:
            while (event := await client.read_event()) is not None:
                events.append(event)
                if Transcript.is_type(event.type) or Error.is_type(event.type):
                    return

        reader = asyncio.create_task(read())
        for i in range(0, len(frames), step):
            if reader.done():
                break  # the server heard the end of speech: no need to send the rest
            chunk = AudioChunk(rate=rate, width=2, channels=channels, audio=frames[i : i + step])
            await client.write_event(chunk.event())
            await asyncio.sleep(0.005)
        if stop and not reader.done():
            await client.write_event(AudioStop().event())
        await asyncio.wait_for(reader, 60)
    return events


async def test_describe_says_streaming_asr_with_its_own_vad(wyoming_server: ServerProcess) -> None:
    async with AsyncTcpClient("127.0.0.1", port_of(wyoming_server)) as client:
        await client.write_event(Describe().event())
        event = await asyncio.wait_for(client.read_event(), 10)
    assert event is not None
    info = Info.from_event(event)
    (asr,) = info.asr
    assert asr.supports_transcript_streaming is True
    assert asr.requires_external_vad is False
    assert asr.installed
    assert asr.models[0].name == "tiny.en"
    assert asr.models[0].languages == ["en"]


@pytest.mark.parametrize("name", ["kitchen_lights_16k_mono", "thermostat_44k_stereo"])
async def test_transcript_arrives_before_audio_stop(
    wyoming_server: ServerProcess, speech: dict[str, Path], name: str
) -> None:
    events = await transcribe(wyoming_server, speech[name], trailing_silence=3.0)
    transcript = Transcript.from_event(events[-1])
    expected = {
        "kitchen": "turn on the kitchen lights",
        "thermostat": "set the thermostat to 21 degrees",
    }
    assert normalise(transcript.text) == expected[name.split("_", maxsplit=1)[0]]
    # streaming events, when partials were ready in time, come as a well-formed group first
    kinds = [e.type for e in events[:-1]]
    if kinds:
        assert TranscriptStart.is_type(kinds[0])
        assert TranscriptStop.is_type(kinds[-1])
        chunks = "".join(
            TranscriptChunk.from_event(e).text for e in events if TranscriptChunk.is_type(e.type)
        )
        assert normalise(transcript.text).startswith(normalise(chunks))


async def test_audio_stop_ends_a_stream_without_trailing_silence(
    wyoming_server: ServerProcess, speech: dict[str, Path]
) -> None:
    events = await transcribe(wyoming_server, speech["goforward_16k_mono"], trailing_silence=0)
    assert normalise(Transcript.from_event(events[-1]).text) == "go forward 10 meters"


async def test_streams_beyond_the_limit_get_an_error_event(wyoming_server: ServerProcess) -> None:
    clients = [AsyncTcpClient("127.0.0.1", port_of(wyoming_server)) for _ in range(3)]
    for client in clients:
        await client.connect()
    try:
        for client in clients:
            await client.write_event(AudioStart(rate=16000, width=2, channels=1).event())
        refused = await asyncio.wait_for(clients[2].read_event(), 10)
        assert refused is not None
        assert Error.from_event(refused).code == "too_many_streams"
    finally:
        for client in clients:
            await client.disconnect()


async def test_announce_carries_the_wyoming_port(
    wyoming_server: ServerProcess, wyoming_broker: MosquittoBroker
) -> None:
    watcher = MqttWatcher(wyoming_broker.port)
    try:
        announce = await asyncio.to_thread(
            watcher.wait_for,
            "edge_inference/test-server/announce",
            lambda m: "stt" in json.loads(m.payload)["capabilities"],
        )
    finally:
        watcher.close()
    stt = json.loads(announce.payload)["capabilities"]["stt"]
    assert stt["wyoming_port"] == port_of(wyoming_server)
    assert stt["languages"] == ["en"]
