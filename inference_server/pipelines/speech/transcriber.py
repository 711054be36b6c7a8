"""Whisper (faster-whisper on CTranslate2) behind a priority queue of its own.

One worker thread runs one decode at a time (CTranslate2 already spreads one decode over the
cores; two at once only make both late). Decodes wait in a heap, not a FIFO: a final text, which
somebody is waiting for, goes before the partial passes of other streams. Speech has its own
thread and queue, never the vision queue, so a busy camera never delays a spoken command.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .audio import WHISPER_RATE, Audio

_LOGGER = logging.getLogger(__name__)

# Whisper's encoder always sees a 30 s window, padded with silence, and on a CPU that encoder
# pass is most of the cost of a 3 s command. CTranslate2 encodes shorter windows just as well;
# below about 10 s the decoder no longer sees where the speech ends and starts repeating it, so
# commands get max(10 s, audio + 2 s). Measured with tiny.en on 2 cores (docs/benchmarks.md):
# about 5x faster per decode, the same words on our test sentences. faster-whisper pads inside
# its decode loop, so the window is set per decode through its pad_or_trim, in this worker
# thread only (thread-local; other callers keep 30 s).
MIN_WINDOW_FRAMES = 1000  # 100 feature frames per second
WINDOW_MARGIN_FRAMES = 200
FULL_WINDOW_FRAMES = 3000
_window = threading.local()


def _install_short_window() -> None:
    import faster_whisper.transcribe as fw_transcribe

    original = fw_transcribe.pad_or_trim
    if getattr(original, "edge_inference", False):
        return

    def pad_or_trim(array: Any, length: int = FULL_WINDOW_FRAMES, *, axis: int = -1) -> Any:
        frames = getattr(_window, "frames", None)
        return original(
            array, frames if frames and length == FULL_WINDOW_FRAMES else length, axis=axis
        )

    pad_or_trim.edge_inference = True  # type: ignore[attr-defined]
    fw_transcribe.pad_or_trim = pad_or_trim


def window_frames(samples: int) -> int:
    frames = samples // 160 + WINDOW_MARGIN_FRAMES
    return min(FULL_WINDOW_FRAMES, max(MIN_WINDOW_FRAMES, -(-frames // 100) * 100))


MULTILINGUAL_VOCABULARY = 51865
PRIORITY_FINAL = 0
PRIORITY_PARTIAL = 1


class QueueFullError(RuntimeError):
    """More decodes are waiting than the server accepts."""


class ModelUnavailableError(RuntimeError):
    """The speech model is not installed or failed to load."""


@dataclass(frozen=True)
class Segment:
    start: float
    end: float
    text: str

    def as_dict(self) -> dict[str, Any]:
        return {"start": round(self.start, 2), "end": round(self.end, 2), "text": self.text}


@dataclass(frozen=True)
class Transcript:
    text: str
    language: str
    segments: tuple[Segment, ...]
    duration_s: float
    timing_ms: dict[str, float] = field(default_factory=dict)

    @property
    def words(self) -> list[str]:
        return self.text.split()


@dataclass(frozen=True)
class DecodeRequest:
    audio: Audio
    language: str | None
    prompt: str | None = None
    beam_size: int = 5
    partial: bool = False  # a throwaway pass: always the short window


class WhisperModelInfo:
    """What the announce says about a model folder, read without loading it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.name = path.name
        # As CTranslate2 decides it: English-only Whisper vocabularies have 51864 tokens, the
        # multilingual ones 51865 and more (config.json lists language ids for both).
        with (path / "vocabulary.txt").open(encoding="utf-8") as vocabulary:
            self.multilingual = sum(1 for _ in vocabulary) >= MULTILINGUAL_VOCABULARY

    @property
    def languages(self) -> list[str]:
        if not self.multilingual:
            return ["en"]
        from faster_whisper.tokenizer import _LANGUAGE_CODES

        return sorted(_LANGUAGE_CODES)


class Transcriber:
    """Loads the model once (lazily, off the event loop) and runs prioritised decodes."""

    def __init__(
        self,
        model: WhisperModelInfo,
        *,
        max_queue: int,
        cpu_threads: int = 0,
        short_window: bool = True,
    ) -> None:
        self.info = model
        self.short_window = short_window
        self.max_queue = max_queue
        self.cpu_threads = cpu_threads or min(4, os.cpu_count() or 1)
        self._model: Any = None
        self._load_error: str | None = None
        self._heap: list[tuple[int, int, Callable[[], None]]] = []
        self._order = itertools.count()
        self._wake = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="whisper", daemon=True)
        self._thread.start()

    @property
    def ready(self) -> bool:
        return self._model is not None

    @property
    def queued(self) -> int:
        return len(self._heap)

    async def load(self) -> None:
        """Load now (in the worker thread, before any decode); safe to call many times."""
        if self._model is None and self._load_error is None:
            await self._submit(PRIORITY_FINAL, lambda: None, bounded=False)

    def count_tokens(self, text: str) -> int:
        """Tokens of text in this model's own tokenizer (for the prompt budget)."""
        model = self._require_model()
        return len(model.hf_tokenizer.encode(text, add_special_tokens=False).ids)

    async def transcribe(self, request: DecodeRequest, *, priority: int) -> Transcript:
        return await self._submit(priority, lambda: self._decode(request))

    def submit(self, request: DecodeRequest, *, priority: int) -> asyncio.Task[Transcript]:
        """transcribe() as a task; cancelling it drops the decode if it has not started."""
        return asyncio.ensure_future(self.transcribe(request, priority=priority))

    def close(self) -> None:
        with self._wake:
            self._closed = True
            self._wake.notify()

    async def _submit[T](self, priority: int, job: Callable[[], T], *, bounded: bool = True) -> T:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()

        def run() -> None:
            if future.cancelled():  # its caller gave up (speech resumed, client left)
                return
            try:
                self._ensure_loaded()
                result = job()
            except BaseException as err:  # handed to the awaiting coroutine
                loop.call_soon_threadsafe(_set_exception, future, err)
            else:
                loop.call_soon_threadsafe(_set_result, future, result)

        with self._wake:
            if bounded and len(self._heap) >= self.max_queue:
                raise QueueFullError("too many speech decodes waiting")
            heapq.heappush(self._heap, (priority, next(self._order), run))
            self._wake.notify()
        return await future

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._heap and not self._closed:
                    self._wake.wait()
                if self._closed:
                    return
                _, _, job = heapq.heappop(self._heap)
            job()

    def _ensure_loaded(self) -> None:
        if self._model is not None:
            return
        if self._load_error is not None:
            raise ModelUnavailableError(self._load_error)
        started = time.perf_counter()
        try:
            from faster_whisper import WhisperModel

            _install_short_window()
            self._model = WhisperModel(
                str(self.info.path),
                device="cpu",
                compute_type="int8",
                cpu_threads=self.cpu_threads,
                local_files_only=True,
            )
        except Exception as err:
            self._load_error = f"speech model {self.info.name} failed to load: {err}"
            _LOGGER.error("%s", self._load_error)
            raise ModelUnavailableError(self._load_error) from err
        _LOGGER.info(
            "Speech model %s loaded in %.1f s", self.info.name, time.perf_counter() - started
        )

    def _require_model(self) -> Any:
        if self._model is None:
            raise ModelUnavailableError(f"speech model {self.info.name} is not loaded yet")
        return self._model

    def _decode(self, request: DecodeRequest) -> Transcript:
        model = self._require_model()
        started = time.perf_counter()
        short = self.short_window or request.partial
        _window.frames = window_frames(request.audio.size) if short else None
        segments, info = model.transcribe(
            request.audio,
            language=request.language,
            beam_size=request.beam_size,
            initial_prompt=request.prompt,
            condition_on_previous_text=False,
            # Commands are short: one 30 s window, no timestamp tokens to decode.
            without_timestamps=True,
            vad_filter=False,
        )
        try:
            found = tuple(Segment(s.start, s.end, s.text.strip()) for s in segments)
        finally:
            _window.frames = None
        decode_ms = (time.perf_counter() - started) * 1000
        text = " ".join(s.text for s in found if s.text).strip()
        return Transcript(
            text=text,
            language=str(info.language),
            segments=found,
            duration_s=request.audio.size / WHISPER_RATE,
            timing_ms={"decode": round(decode_ms, 1)},
        )


def _set_result[T](future: asyncio.Future[T], result: T) -> None:
    if not future.done():
        future.set_result(result)


def _set_exception(future: asyncio.Future[Any], err: BaseException) -> None:
    if not future.done():
        future.set_exception(err)
