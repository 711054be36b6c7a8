"""One live utterance: audio in as it is captured, partial text while the user speaks, the final
text as soon as they stop.

- While speech goes on, the audio so far is re-decoded every `partial_interval_s` of new audio
  (greedy, at partial priority) and LocalAgreement turns the passes into stable partial text.
- When the VAD first hears `early_silence_s` of silence, a final-quality decode (beam 5) of
  everything so far starts at once. If the silence lasts to `end_silence_s`, that decode is
  the final text: it has been running during the wait, so the answer comes almost as the
  endpoint is reached. If speech resumes, the early decode is dropped.
- The final text comes from its own beam-search decode of all the audio, so it may still
  correct a word a partial showed (the partials are greedy passes).
- The client may end the stream itself; the same early decode is reused when still valid.
Transport (WebSocket, Wyoming) lives elsewhere; this class only sees bytes and callbacks.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import numpy as np

from .agreement import LocalAgreement
from .audio import WHISPER_RATE, PcmFormat, StreamDecoder
from .endpointing import Endpointer, EndpointOptions
from .transcriber import (
    PRIORITY_FINAL,
    PRIORITY_PARTIAL,
    DecodeRequest,
    QueueFullError,
    Transcriber,
    Transcript,
)

MIN_PARTIAL_AUDIO_S = 1.0


@dataclass(frozen=True)
class StreamOptions:
    pcm: PcmFormat
    language: str | None = None
    prompt: str | None = None
    endpoint: EndpointOptions = field(default_factory=EndpointOptions)
    partial_interval_s: float = 0.5
    max_audio_s: float = 30.0  # one Whisper window
    no_speech_s: float = 8.0  # audio without any speech before the stream gives up
    beam_size: int = 5


@dataclass(frozen=True)
class Partial:
    stable: str  # committed by local agreement; never changes
    unstable: str  # the latest pass's tail; may still change

    @property
    def text(self) -> str:
        return f"{self.stable} {self.unstable}".strip()


PartialCallback = Callable[[Partial], Awaitable[None]]


class SpeechStream:
    def __init__(
        self,
        transcriber: Transcriber,
        options: StreamOptions,
        on_partial: PartialCallback | None = None,
    ) -> None:
        self.transcriber = transcriber
        self.options = options
        self.on_partial = on_partial
        self.decoder = StreamDecoder(options.pcm)
        self.endpointer = Endpointer(options.endpoint)
        self.agreement = LocalAgreement()
        self._audio = np.zeros(int(options.max_audio_s * WHISPER_RATE), dtype=np.float32)
        self.samples = 0
        self.reason = ""  # why the stream ended: vad, client, max_duration, no_speech
        self._partial_task: asyncio.Task[None] | None = None
        self._last_partial_at = 0
        self._last_partial_decode_s = 0.0
        self._early: asyncio.Task[Transcript] | None = None
        self._early_speech_windows = -1
        self.ended_at: float | None = None  # monotonic time the end was detected

    @property
    def seconds(self) -> float:
        return self.samples / WHISPER_RATE

    async def feed(self, chunk: bytes) -> bool:
        """Add captured audio; True when the stream is over and finish() should be called."""
        if self.reason:
            return True
        audio = self.decoder.push(chunk)
        room = self._audio.size - self.samples
        if audio.size >= room:
            audio = audio[:room]
            self.reason = "max_duration"
        self._audio[self.samples : self.samples + audio.size] = audio
        self.samples += audio.size
        self.endpointer.feed(audio)
        vad = self.endpointer
        if not self.reason:
            if vad.ended:
                self.reason = "vad"
            elif not vad.started and self.seconds >= self.options.no_speech_s:
                self.reason = "no_speech"
        if self.reason:
            self.ended_at = time.monotonic()
            return True
        if self._early is not None and vad.speech_windows != self._early_speech_windows:
            self._early.cancel()  # speech resumed: that decode missed the rest
            self._early = None
        if vad.pausing and self._early is None:
            self._early_speech_windows = vad.speech_windows
            self._early = self._decode(self.options.beam_size, PRIORITY_FINAL)
        elif vad.started and vad.silence_s == 0:
            # only while the user is speaking: a pass started as they stop would hold up the
            # final decode (one decode runs at a time)
            self._maybe_partial()
        return False

    async def finish(self, reason: str = "client") -> Transcript:
        """The final text: the early decode when no speech came after it, else a decode now."""
        self.reason = self.reason or reason
        if self.ended_at is None:
            self.ended_at = time.monotonic()
        if self._partial_task is not None:
            self._partial_task.cancel()
        if self.endpointer.speech_windows == 0:
            # Nothing was said: Whisper would invent "Thank you." for silence.
            return Transcript("", self.options.language or "", (), self.seconds, {"decode": 0.0})
        early = self._early
        self._early = None
        if early is not None and self.endpointer.speech_windows == self._early_speech_windows:
            transcript = await early
        else:
            if early is not None:
                early.cancel()
            transcript = await self._decode(self.options.beam_size, PRIORITY_FINAL)
        waited = (time.monotonic() - self.ended_at) * 1000
        return Transcript(
            transcript.text,
            transcript.language,
            transcript.segments,
            transcript.duration_s,
            {**transcript.timing_ms, "after_end": round(waited, 1)},
        )

    async def close(self) -> None:
        """Drop pending decodes (the client left)."""
        for task in (self._partial_task, self._early):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    def _decode(self, beam_size: int, priority: int) -> asyncio.Task[Transcript]:
        # The final decode starts afresh rather than from the committed words (Whisper's
        # decoder prefix): two early passes on the first half second can agree on a sentence
        # without its first word, and a prefix would make that final.
        # A final decode sees the speech and early_silence_s after it, however late the end
        # was noticed: the early decode (started at that silence) and a later one get the same
        # input, so load cannot change the text, and Whisper (tiny.en most) does not fill a
        # long trailing silence with a repeat of the command.
        end = self.samples
        if priority == PRIORITY_FINAL and self.endpointer.speech_windows:
            tail_s = self.options.endpoint.early_silence_s
            end = min(end, round((self.endpointer.speech_end_s + tail_s) * WHISPER_RATE))
        request = DecodeRequest(
            self._audio[:end].copy(),
            self.options.language,
            self.options.prompt,
            beam_size,
            partial=priority == PRIORITY_PARTIAL,
        )
        return self.transcriber.submit(request, priority=priority)

    def _maybe_partial(self) -> None:
        # At most about half the decoder's time on partials: on a slow CPU they come less often.
        seconds = max(self.options.partial_interval_s, 2 * self._last_partial_decode_s)
        interval = int(seconds * WHISPER_RATE)
        if self.samples < MIN_PARTIAL_AUDIO_S * WHISPER_RATE:
            return  # too little audio: passes would agree on a clipped first word
        if self.samples - self._last_partial_at < interval:
            return
        if self._partial_task is not None and not self._partial_task.done():
            return  # one pass at a time per stream; the next covers the audio that came since
        self._last_partial_at = self.samples
        self._partial_task = asyncio.create_task(self._partial_pass())

    async def _partial_pass(self) -> None:
        try:
            transcript = await self._decode(1, PRIORITY_PARTIAL)
        except QueueFullError:
            return  # partials are optional: skip this pass when decodes pile up
        self._last_partial_decode_s = transcript.timing_ms.get("decode", 0.0) / 1000
        if self.reason:
            return  # the final text is on its way; a partial now would only confuse
        before = (self.agreement.stable_text, self.agreement.unstable_text)
        self.agreement.insert(transcript.words)
        after = (self.agreement.stable_text, self.agreement.unstable_text)
        if self.on_partial is not None and after != before:
            await self.on_partial(Partial(*after))
