"""The speech-to-text entity inside HA 2026.10 on the real server (tiny.en, Silero VAD).

Real parts only: the edge-inference-server subprocess with its default speech model, espeak-ng
speech, Mosquitto for the MQTT the integration needs, HA's stt, assist_pipeline, conversation
and input_boolean integrations. The Assist run goes audio → our STT → HA's default conversation
agent → a real entity turned on.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Generator
from pathlib import Path

import pytest
from homeassistant.components import conversation, stt
from homeassistant.components.assist_pipeline import (
    PipelineEvent,
    PipelineEventType,
    async_pipeline_from_audio_stream,
)
from homeassistant.components.assist_pipeline.models import PipelineStage
from homeassistant.components.assist_pipeline.pipeline import KEY_ASSIST_PIPELINE
from homeassistant.components.homeassistant.exposed_entities import async_expose_entity
from homeassistant.const import CONF_API_TOKEN, CONF_URL
from homeassistant.core import Context, HomeAssistant
from homeassistant.helpers import area_registry as ar
from homeassistant.helpers import entity_registry as er
from homeassistant.setup import async_setup_component
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.edge_inference.const import CONF_SERVER_ID, DOMAIN
from custom_components.edge_inference.stt import home_phrases
from tests.helpers.broker import free_port
from tests.helpers.server_process import ROOT, ServerProcess
from tests.helpers.speech_audio import normalise, pcm_of, silence

from .common import TOKEN

pytestmark = pytest.mark.skipif(
    not (ROOT / "speech_models" / "tiny.en").is_dir(),
    reason="scripts/setup installs speech_models/",
)
# espeak-ng's "turn on the kitchen lights" and "set the thermostat to 21 degrees", 16 kHz mono,
# made by tests/helpers/speech_audio.py and kept here: the HA test root has no espeak-ng.
SPEECH = ROOT / "tests" / "fixtures" / "speech"

METADATA = stt.SpeechMetadata(
    language="en",
    format=stt.AudioFormats.WAV,
    codec=stt.AudioCodecs.PCM,
    bit_rate=stt.AudioBitRates.BITRATE_16,
    sample_rate=stt.AudioSampleRates.SAMPLERATE_16000,
    channel=stt.AudioChannels.CHANNEL_MONO,
)


@pytest.fixture(scope="module")
def speech() -> dict[str, Path]:
    return {
        "kitchen_lights_16k_mono": SPEECH / "kitchen_lights.wav",
        "thermostat_16k_mono": SPEECH / "thermostat.wav",
    }


@pytest.fixture
def speech_server(tmp_path: Path, socket_enabled: None) -> Generator[ServerProcess]:
    server = ServerProcess(tmp_path / "speech_server", mqtt_port=None, token=TOKEN)
    server.start()
    yield server
    server.stop()


class Microphone:
    """HA's audio stream: a recording in 20 ms chunks, then 20 s of room silence at real-time
    pace: only the server's end-of-speech detection ends it before that."""

    def __init__(self, path: Path) -> None:
        frames, rate, channels = pcm_of(path)
        assert (rate, channels) == (16000, 1)
        self.speech = [frames[i : i + 640] for i in range(0, len(frames), 640)]
        self.silence = [silence(0.02, rate, channels)] * 1000
        self.sent = 0

    @property
    def total(self) -> int:
        return len(self.speech) + len(self.silence)

    async def stream(self) -> AsyncIterator[bytes]:
        for chunk in self.speech:
            self.sent += 1
            yield chunk
            await asyncio.sleep(0.005)
        for chunk in self.silence:
            self.sent += 1
            yield chunk
            await asyncio.sleep(0.02)


async def _setup(hass: HomeAssistant, server: ServerProcess) -> str:
    entry = MockConfigEntry(
        domain=DOMAIN,
        unique_id="test-server",
        title="Test server",
        data={CONF_URL: server.url, CONF_API_TOKEN: TOKEN, CONF_SERVER_ID: "test-server"},
    )
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    entity_id = er.async_get(hass).async_get_entity_id("stt", DOMAIN, "test-server_stt")
    assert entity_id is not None
    return entity_id


@pytest.fixture
async def home(hass: HomeAssistant, real_mqtt: MockConfigEntry) -> None:
    """Kitchen lights (an input_boolean) in the Kitchen area, exposed to Assist."""
    assert await async_setup_component(
        hass, "input_boolean", {"input_boolean": {"kitchen_lights": {"name": "Kitchen lights"}}}
    )
    assert await async_setup_component(hass, "intent", {})
    assert await async_setup_component(hass, "assist_pipeline", {})
    kitchen = ar.async_get(hass).async_create("Kitchen")
    ar.async_get(hass).async_create("Attic")
    er.async_get(hass).async_update_entity("input_boolean.kitchen_lights", area_id=kitchen.id)
    async_expose_entity(hass, conversation.DOMAIN, "input_boolean.kitchen_lights", True)
    await hass.async_block_till_done()


async def test_entity_streams_speech_and_the_server_ends_it(
    hass: HomeAssistant, home: None, speech_server: ServerProcess, speech: dict[str, Path]
) -> None:
    entity_id = await _setup(hass, speech_server)
    entity = stt.async_get_speech_to_text_entity(hass, entity_id)
    assert entity is not None
    assert entity.supported_languages == ["en"]
    assert entity.audio_processing.requires_external_vad is False
    assert entity.check_metadata(METADATA)
    mic = Microphone(speech["thermostat_16k_mono"])
    result = await entity.internal_async_process_audio_stream(METADATA, mic.stream())
    assert result.result == stt.SpeechResultState.SUCCESS
    assert result.text is not None
    assert normalise(result.text) == "set the thermostat to 21 degrees"
    # the server heard the end of speech: the 20 s of silence were not needed
    assert mic.sent < mic.total


async def test_phrases_are_the_homes_exposed_names(hass: HomeAssistant, home: None) -> None:
    phrases = home_phrases(hass)
    # areas holding an exposed entity first, then entity names, then the other areas
    assert phrases.index("Kitchen") < phrases.index("Kitchen lights") < phrases.index("Attic")


async def test_server_down_is_an_error_result(
    hass: HomeAssistant, home: None, speech_server: ServerProcess, speech: dict[str, Path]
) -> None:
    entity_id = await _setup(hass, speech_server)
    entity = stt.async_get_speech_to_text_entity(hass, entity_id)
    assert entity is not None
    speech_server.stop()
    try:
        mic = Microphone(speech["kitchen_lights_16k_mono"])
        result = await entity.internal_async_process_audio_stream(METADATA, mic.stream())
        assert result.result == stt.SpeechResultState.ERROR
        assert result.text is None
    finally:
        speech_server.start()


async def test_assist_pipeline_from_audio_turns_on_the_lights(
    hass: HomeAssistant, home: None, speech_server: ServerProcess, speech: dict[str, Path]
) -> None:
    entity_id = await _setup(hass, speech_server)
    pipeline = await hass.data[KEY_ASSIST_PIPELINE].pipeline_store.async_create_item(
        {
            "conversation_engine": conversation.HOME_ASSISTANT_AGENT,
            "conversation_language": "en",
            "language": "en",
            "name": "Local voice",
            "stt_engine": entity_id,
            "stt_language": "en",
            "tts_engine": None,
            "tts_language": None,
            "tts_voice": None,
            "wake_word_entity": None,
            "wake_word_id": None,
        }
    )
    assert hass.states.get("input_boolean.kitchen_lights").state == "off"  # type: ignore[union-attr]
    events: list[PipelineEvent] = []
    mic = Microphone(speech["kitchen_lights_16k_mono"])
    await async_pipeline_from_audio_stream(
        hass,
        context=Context(),
        event_callback=events.append,
        stt_metadata=METADATA,
        stt_stream=mic.stream(),
        pipeline_id=pipeline.id,
        start_stage=PipelineStage.STT,
        end_stage=PipelineStage.INTENT,
    )
    await hass.async_block_till_done()
    kinds = [e.type for e in events]
    assert PipelineEventType.ERROR not in kinds, events
    stt_end = next(e for e in events if e.type == PipelineEventType.STT_END)
    assert stt_end.data is not None
    assert normalise(stt_end.data["stt_output"]["text"]) == "turn on the kitchen lights"
    assert hass.states.get("input_boolean.kitchen_lights").state == "on"  # type: ignore[union-attr]


@pytest.fixture
def wyoming_server(tmp_path: Path, socket_enabled: None) -> Generator[ServerProcess]:
    port = free_port()
    server = ServerProcess(
        tmp_path / "wyoming_server",
        mqtt_port=None,
        token=TOKEN,
        extra_args=["--wyoming-port", str(port)],
    )
    server.wyoming_port = port  # type: ignore[attr-defined]
    server.start()
    yield server
    server.stop()


async def test_has_wyoming_integration_transcribes_through_our_port(
    hass: HomeAssistant, wyoming_server: ServerProcess, speech: dict[str, Path]
) -> None:
    entry = MockConfigEntry(
        domain="wyoming",
        data={"host": "127.0.0.1", "port": wyoming_server.wyoming_port},  # type: ignore[attr-defined]
    )
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    entity_id = next(
        e.entity_id
        for e in er.async_entries_for_config_entry(er.async_get(hass), entry.entry_id)
        if e.domain == "stt"
    )
    entity = stt.async_get_speech_to_text_entity(hass, entity_id)
    assert entity is not None
    assert entity.supported_languages == ["en"]
    assert entity.audio_processing.requires_external_vad is False
    for name, text in (
        ("kitchen_lights_16k_mono", "turn on the kitchen lights"),
        ("thermostat_16k_mono", "set the thermostat to 21 degrees"),
    ):
        mic = Microphone(speech[name])
        result = await entity.internal_async_process_audio_stream(METADATA, mic.stream())
        assert result.result == stt.SpeechResultState.SUCCESS
        # (HA's Wyoming client writes audio without waiting for the server, so how much of the
        # trailing silence it sent says nothing here)
        assert normalise(result.text or "") == text
    assert await hass.config_entries.async_unload(entry.entry_id)
