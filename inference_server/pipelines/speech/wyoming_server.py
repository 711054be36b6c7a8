"""The speech pipeline over the Wyoming protocol (the `wyoming` package), on its own TCP port.

HA's Wyoming integration and voice satellites speak it: describe → info; transcribe, then
audio-start / audio-chunk* / audio-stop → transcript. We announce `requires_external_vad:
false`: the transcript is sent the moment our VAD hears the end of speech, without waiting for
audio-stop (HA's Wyoming STT returns as soon as a transcript arrives). With
`supports_transcript_streaming`, partial text goes out as transcript-start, transcript-chunk
(the newly agreed words) and transcript-stop before the final transcript.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from wyoming.asr import Transcribe, Transcript, TranscriptChunk, TranscriptStart, TranscriptStop
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.error import Error
from wyoming.event import Event, async_read_event
from wyoming.info import AsrModel, AsrProgram, Attribution, Describe, Info
from wyoming.server import AsyncEventHandler, AsyncTcpServer

from ... import __version__
from .audio import SAMPLE_WIDTH, InvalidAudioError, PcmFormat
from .endpointing import EndpointOptions
from .pipeline import SpeechPipeline, StreamLimitError, UnsupportedLanguageError
from .stream import Partial, SpeechStream, StreamOptions
from .transcriber import ModelUnavailableError, QueueFullError
from .vocabulary import InvalidPhrasesError, clean_phrases

_LOGGER = logging.getLogger(__name__)

IDLE_TIMEOUT_S = 5.0  # no event for this long while audio is streaming: the stream is dropped
# Wyoming's vad_sensitivity → silence that ends a command (HA's own segmenter uses about these).
END_SILENCE_S = {"aggressive": 0.3, "default": 0.5, "relaxed": 1.0}


def wyoming_info(pipeline: SpeechPipeline) -> Info:
    described = pipeline.describe()
    attribution = Attribution(
        name="OpenAI Whisper on SYSTRAN faster-whisper",
        url="https://github.com/SYSTRAN/faster-whisper",
    )
    return Info(
        asr=[
            AsrProgram(
                name="edge-inference",
                description="Streaming Whisper speech-to-text with its own end-of-speech VAD",
                attribution=attribution,
                installed=True,
                version=__version__,
                models=[
                    AsrModel(
                        name=str(described["model"]),
                        description=f"Whisper {described['model']} (faster-whisper)",
                        attribution=attribution,
                        installed=True,
                        languages=list(described["languages"]),
                        version=None,
                    )
                ],
                supports_transcript_streaming=True,
                requires_external_vad=False,
            )
        ]
    )


class SttEventHandler(AsyncEventHandler):
    """One Wyoming connection: any number of transcribe → audio → transcript rounds."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, pipeline: SpeechPipeline
    ) -> None:
        super().__init__(reader, writer)
        self.pipeline = pipeline
        self._request = Transcribe()
        self._stream: SpeechStream | None = None
        self._reserved = False
        self._answered = False
        self._streaming_started = False
        self._sent_words = 0

    async def run(self) -> None:
        """The base loop, with a read timeout while a stream holds one of the server's slots."""
        try:
            while True:
                timeout = IDLE_TIMEOUT_S if self._reserved else None
                try:
                    event = await asyncio.wait_for(async_read_event(self.reader), timeout)
                except TimeoutError:
                    await self._error("timeout", f"No audio for {IDLE_TIMEOUT_S:g} s")
                    break
                if event is None or not await self.handle_event(event):
                    break
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client went away mid-stream
        finally:
            await self.disconnect()
            self.writer.close()

    async def handle_event(self, event: Event) -> bool:
        if Describe.is_type(event.type):
            await self.write_event(wyoming_info(self.pipeline).event())
        elif Transcribe.is_type(event.type):
            self._request = Transcribe.from_event(event)
        elif AudioStart.is_type(event.type):
            return await self._start(AudioStart.from_event(event))
        elif AudioChunk.is_type(event.type):
            if self._stream is not None and not self._answered:
                chunk = AudioChunk.from_event(event)
                if await self._stream.feed(chunk.audio):
                    return await self._answer()
        elif AudioStop.is_type(event.type):
            ok = True
            if self._stream is not None and not self._answered:
                ok = await self._answer()
            await self._end_stream()
            return ok
        return True

    async def disconnect(self) -> None:
        await self._end_stream()

    async def _start(self, start: AudioStart) -> bool:
        await self._end_stream()
        request = self._request
        self._request = Transcribe()  # a transcribe event covers one utterance
        try:
            if start.width != SAMPLE_WIDTH:
                raise InvalidAudioError(f"{8 * start.width}-bit audio; send 16-bit PCM")
            fmt = PcmFormat(rate=start.rate, channels=start.channels)
            language = self.pipeline.language(request.language)
            phrases = clean_phrases(
                [*(request.transcript_names or []), *(request.transcript_terms or [])]
            )
            self.pipeline.reserve_stream()
        except (InvalidAudioError, UnsupportedLanguageError, InvalidPhrasesError) as err:
            await self._error("bad_request", str(err))
            return False
        except StreamLimitError as err:
            await self._error("too_many_streams", str(err))
            return False
        self._reserved = True
        sensitivity = str(getattr(request.vad_sensitivity, "value", request.vad_sensitivity))
        options = StreamOptions(
            pcm=fmt,
            language=language,
            prompt=self.pipeline.prompt(phrases),
            endpoint=EndpointOptions(end_silence_s=END_SILENCE_S.get(sensitivity, 0.5)),
        )
        self._stream = self.pipeline.new_stream(options, self._on_partial)
        self._answered = False
        self._streaming_started = False
        return True

    async def _on_partial(self, partial: Partial) -> None:
        if self._answered:
            return
        if not self._streaming_started:
            self._streaming_started = True
            self._sent_words = 0
            await self.write_event(TranscriptStart(language=self._language()).event())
        words = partial.stable.split()
        if len(words) > self._sent_words:
            new = " ".join(words[self._sent_words :])
            prefix = " " if self._sent_words else ""
            self._sent_words = len(words)
            await self.write_event(TranscriptChunk(text=prefix + new).event())

    async def _answer(self) -> bool:
        assert self._stream is not None
        self._answered = True
        try:
            result = await self._stream.finish(reason="audio_stop")
        except QueueFullError:
            await self._error("queue_full", "Too many speech requests queued")
            return False
        except ModelUnavailableError as err:
            await self._error("speech_unavailable", str(err))
            return False
        if self._streaming_started:
            await self.write_event(TranscriptStop().event())
        await self.write_event(Transcript(text=result.text, language=result.language).event())
        return True

    def _language(self) -> str | None:
        return self._stream.options.language if self._stream is not None else None

    async def _end_stream(self) -> None:
        if self._stream is not None:
            await self._stream.close()
            self._stream = None
        if self._reserved:
            self._reserved = False
            self.pipeline.release_stream()

    async def _error(self, code: str, text: str) -> None:
        with contextlib.suppress(ConnectionError):
            await self.write_event(Error(text=text, code=code).event())


class WyomingSttServer:
    """Starts and stops the TCP listener; one handler per connection."""

    def __init__(self, pipeline: SpeechPipeline, host: str, port: int) -> None:
        self.pipeline = pipeline
        self._server = AsyncTcpServer(host, port)

    async def start(self) -> None:
        await self._server.start(lambda r, w: SttEventHandler(r, w, self.pipeline))
        _LOGGER.info("Wyoming speech-to-text on tcp://%s:%s", self._server.host, self._server.port)

    async def stop(self) -> None:
        await self._server.stop()
