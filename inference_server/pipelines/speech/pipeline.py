"""The speech pipeline: one Whisper model, whole-file transcription and live streams, limits."""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .audio import WHISPER_RATE, Audio, InvalidAudioError
from .stream import PartialCallback, SpeechStream, StreamOptions
from .transcriber import (
    PRIORITY_FINAL,
    DecodeRequest,
    ModelUnavailableError,
    Transcriber,
    Transcript,
    WhisperModelInfo,
)
from .vocabulary import PromptBuilder

_LOGGER = logging.getLogger(__name__)


class SpeechUnavailableError(RuntimeError):
    """No speech model is installed."""


class StreamLimitError(RuntimeError):
    """As many live streams as the server accepts are already open."""


class UnsupportedLanguageError(ValueError):
    """The model does not speak this language."""


@dataclass(frozen=True)
class SpeechLimits:
    max_audio_s: float = 60.0  # one HTTP transcription
    max_streams: int = 4  # live streams at once
    max_queue: int = 16  # decodes waiting


class SpeechPipeline:
    def __init__(
        self,
        model_dir: Path,
        model: str,
        limits: SpeechLimits | None = None,
        *,
        short_window: bool = True,
    ) -> None:
        self.limits = limits or SpeechLimits()
        self.model_path = model_dir / model
        self.info: WhisperModelInfo | None = None
        self.transcriber: Transcriber | None = None
        self.prompts: PromptBuilder | None = None
        self.streams = 0
        if (self.model_path / "model.bin").is_file():
            self.info = WhisperModelInfo(self.model_path)
            self.transcriber = Transcriber(
                self.info, max_queue=self.limits.max_queue, short_window=short_window
            )
            self.prompts = PromptBuilder(self.model_path)
        else:
            _LOGGER.warning(
                "No speech model at %s: run `python -m inference_server.models.install_speech "
                "--dir %s` (speech-to-text is off)",
                self.model_path,
                model_dir,
            )

    @property
    def available(self) -> bool:
        return self.transcriber is not None

    async def start(self) -> None:
        """Load the model in the background, so the first command does not wait for it."""
        if self.transcriber is not None:
            # A failure is logged by the transcriber; requests then answer 503.
            with contextlib.suppress(ModelUnavailableError):
                await self.transcriber.load()

    async def close(self) -> None:
        if self.transcriber is not None:
            self.transcriber.close()

    def describe(self) -> dict[str, Any]:
        info = self._require().info
        return {
            "model": info.name,
            "models": [{"name": info.name, "languages": info.languages}],
            "languages": info.languages,
            "streaming": True,
            "vad": True,
            "max_audio_s": self.limits.max_audio_s,
            "max_streams": self.limits.max_streams,
        }

    def language(self, requested: str | None) -> str | None:
        """The language to decode with: None means detect (multilingual models only)."""
        info = self._require().info
        if not requested:
            return None if info.multilingual else "en"
        code = requested.split("-")[0].split("_")[0].lower()  # HA sends "en-US"
        if code not in info.languages:
            raise UnsupportedLanguageError(
                f"language {requested!r} is not supported by model {info.name} "
                f"({', '.join(info.languages[:10])}{'...' if len(info.languages) > 10 else ''})"
            )
        return code

    def prompt(self, phrases: list[str]) -> str | None:
        assert self.prompts is not None
        return self.prompts.build(phrases) if phrases else None

    async def transcribe(
        self, audio: Audio, language: str | None, prompt: str | None = None
    ) -> Transcript:
        transcriber = self._require()
        seconds = audio.size / WHISPER_RATE
        if audio.size == 0:
            raise InvalidAudioError("the audio is empty")
        if seconds > self.limits.max_audio_s:
            raise AudioTooLongError(seconds, self.limits.max_audio_s)
        request = DecodeRequest(audio, language, prompt)
        return await transcriber.transcribe(request, priority=PRIORITY_FINAL)

    def reserve_stream(self) -> None:
        """Count one more live stream, or refuse beyond max_streams (release_stream() after)."""
        self._require()
        if self.streams >= self.limits.max_streams:
            raise StreamLimitError(f"{self.streams} speech streams are open (the limit)")
        self.streams += 1

    def release_stream(self) -> None:
        self.streams = max(0, self.streams - 1)

    def new_stream(
        self, options: StreamOptions, on_partial: PartialCallback | None = None
    ) -> SpeechStream:
        return SpeechStream(self._require(), options, on_partial)

    def _require(self) -> Transcriber:
        if self.transcriber is None:
            raise SpeechUnavailableError(f"no speech model installed at {self.model_path}")
        return self.transcriber


class AudioTooLongError(ValueError):
    def __init__(self, seconds: float, limit: float) -> None:
        super().__init__(f"{seconds:.1f} s of audio; at most {limit:g} s per request")
        self.seconds = seconds
        self.limit = limit
