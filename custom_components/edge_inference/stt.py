"""Speech-to-text entity: HA's microphone audio streamed live to the server's WebSocket.

The server decodes while the user speaks and hears the end of speech itself (Silero VAD), so
`audio_processing` tells the Assist pipeline not to run its own VAD: the answer comes as soon as
the server has the final text, and the rest of HA's stream is left unread. The names of exposed
entities, areas and floors go along as phrases, so Whisper spells them as this home does; they
are read afresh for every utterance, so renamed or newly exposed things count at once.
HA 2026.10 has no way to show partial text, so only the final text is returned.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterable
from typing import Any

import aiohttp
from homeassistant.components import conversation, stt
from homeassistant.components.homeassistant.exposed_entities import async_should_expose
from homeassistant.components.stt.models import SpeechAudioProcessing
from homeassistant.core import HomeAssistant
from homeassistant.helpers import area_registry as ar
from homeassistant.helpers import entity_registry as er
from homeassistant.helpers import floor_registry as fr
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .client import EdgeInferenceClient, EdgeInferenceError
from .coordinator import EdgeInferenceCoordinator
from .entity import EdgeInferenceEntity
from .models import EdgeInferenceConfigEntry

_LOGGER = logging.getLogger(__name__)

PARALLEL_UPDATES = 0  # the server limits its streams and answers 503 beyond them
RATE = 16000
MAX_PHRASES = 300  # the server keeps what fits its prompt budget, in this order
FINAL_TIMEOUT_S = 30.0


async def async_setup_entry(
    hass: HomeAssistant,
    entry: EdgeInferenceConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """One speech-to-text entity when the server announces the stt capability."""
    coordinator = entry.runtime_data.coordinator
    if stt_capability(coordinator):
        async_add_entities([EdgeInferenceSttEntity(coordinator, entry.runtime_data.client)])


def stt_capability(coordinator: EdgeInferenceCoordinator) -> dict[str, Any]:
    capabilities = coordinator.data.info.get("capabilities") or {}
    described = capabilities.get("stt")
    return described if isinstance(described, dict) else {}


def home_phrases(hass: HomeAssistant) -> list[str]:
    """Areas and floors holding an exposed entity, then exposed entity names and aliases."""
    entities = er.async_get(hass)
    areas = ar.async_get(hass)
    floors = fr.async_get(hass)
    used_areas: list[str] = []
    names: list[str] = []
    for state in hass.states.async_all():
        if not async_should_expose(hass, conversation.DOMAIN, state.entity_id):
            continue
        names.append(state.name)
        entry = entities.async_get(state.entity_id)
        if entry is None:
            continue
        names.extend(alias for alias in entry.aliases if isinstance(alias, str))
        area = areas.async_get_area(entry.area_id) if entry.area_id else None
        if area is not None:
            used_areas.append(area.name)
            floor = floors.async_get_floor(area.floor_id) if area.floor_id else None
            if floor is not None:
                used_areas.append(floor.name)
    others = [a.name for a in areas.async_list_areas()] + [
        f.name for f in floors.async_list_floors()
    ]
    ordered = dict.fromkeys(n.strip() for n in [*used_areas, *names, *others] if n.strip())
    return list(ordered)[:MAX_PHRASES]


class EdgeInferenceSttEntity(EdgeInferenceEntity, stt.SpeechToTextEntity):
    """The server's Whisper, streaming, with its own end-of-speech detection."""

    _attr_translation_key = "speech_to_text"

    def __init__(self, coordinator: EdgeInferenceCoordinator, client: EdgeInferenceClient) -> None:
        """Unique id: server id and `stt`."""
        super().__init__(coordinator, "stt")
        self.client = client

    @property
    def supported_languages(self) -> list[str]:
        """The languages of the server's speech model, from its announce."""
        return [str(code) for code in stt_capability(self.coordinator).get("languages") or []]

    @property
    def supported_formats(self) -> list[stt.AudioFormats]:
        """Raw PCM as HA captures it."""
        return [stt.AudioFormats.WAV]

    @property
    def supported_codecs(self) -> list[stt.AudioCodecs]:
        """16-bit PCM."""
        return [stt.AudioCodecs.PCM]

    @property
    def supported_bit_rates(self) -> list[stt.AudioBitRates]:
        """16 bits per sample."""
        return [stt.AudioBitRates.BITRATE_16]

    @property
    def supported_sample_rates(self) -> list[stt.AudioSampleRates]:
        """16 kHz, HA's rate (the server resamples any other)."""
        return [stt.AudioSampleRates.SAMPLERATE_16000]

    @property
    def supported_channels(self) -> list[stt.AudioChannels]:
        """Mono."""
        return [stt.AudioChannels.CHANNEL_MONO]

    @property
    def audio_processing(self) -> SpeechAudioProcessing:
        """The server detects the end of speech itself."""
        return SpeechAudioProcessing(
            requires_external_vad=False,
            prefers_auto_gain_enabled=True,
            prefers_noise_reduction_enabled=True,
        )

    async def async_process_audio_stream(
        self, metadata: stt.SpeechMetadata, stream: AsyncIterable[bytes]
    ) -> stt.SpeechResult:
        """Stream the audio as it comes; the final text ends it."""
        start = {
            "type": "start",
            "language": metadata.language,
            "rate": RATE,
            "channels": 1,
            "phrases": home_phrases(self.hass),
        }
        try:
            async with self.client.async_speech_stream(start) as ws:
                ready = await ws.receive_json(timeout=FINAL_TIMEOUT_S)
                if ready.get("type") != "ready":
                    _LOGGER.warning("Speech stream refused: %s", ready.get("error"))
                    return stt.SpeechResult(None, stt.SpeechResultState.ERROR)
                upload = asyncio.create_task(_upload(ws, stream))
                try:
                    final = await asyncio.wait_for(_final(ws), FINAL_TIMEOUT_S)
                finally:
                    upload.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await upload
        except (EdgeInferenceError, TimeoutError, aiohttp.ClientError, ValueError) as err:
            _LOGGER.warning("Speech-to-text on %s failed: %s", self.client.url, err)
            return stt.SpeechResult(None, stt.SpeechResultState.ERROR)
        if final.get("type") != "final":
            _LOGGER.warning("Speech-to-text on %s failed: %s", self.client.url, final.get("error"))
            return stt.SpeechResult(None, stt.SpeechResultState.ERROR)
        return stt.SpeechResult(str(final.get("text", "")), stt.SpeechResultState.SUCCESS)


async def _upload(ws: aiohttp.ClientWebSocketResponse, stream: AsyncIterable[bytes]) -> None:
    """HA's audio as it arrives; when HA's stream ends first, ask for the final text."""
    async for chunk in stream:
        if ws.closed:
            return
        await ws.send_bytes(chunk)
    if not ws.closed:
        await ws.send_json({"type": "end"})


async def _final(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    """The final (or error) message; partial ones are skipped."""
    async for msg in ws:
        if msg.type != aiohttp.WSMsgType.TEXT:
            continue
        data = json.loads(msg.data)
        if isinstance(data, dict) and data.get("type") in ("final", "error"):
            return data
    return {"type": "error", "error": {"code": "closed", "message": "connection closed"}}
