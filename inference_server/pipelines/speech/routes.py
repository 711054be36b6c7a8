"""HTTP routes of the speech pipeline: whole-file transcription and the live WebSocket stream.

WebSocket protocol (`GET /api/v1/speech/stream`, bearer token as for every route):
  client → {"type": "start", "language": "en", "rate": 16000, "channels": 1,
            "phrases": ["Kitchen", "Office lamp"], "end_silence_ms": 500}     (all optional)
  server → {"type": "ready", "model": ..., "language": ..., "prompt_phrases": n}
  client → binary frames of 16-bit little-endian PCM at that rate, as captured
  server → {"type": "partial", "text", "stable", "unstable"}  while the user speaks
  client → {"type": "end"}   (optional: the server also hears the end of speech itself)
  server → {"type": "final", "text", "language", "segments", "reason", "timing_ms"}, then closes
  server → {"type": "error", "error": {"code", "message"}}, then closes (bad start message,
            no audio for IDLE_TIMEOUT_S, ...)
More streams than --speech-max-streams get a 503 with Retry-After before the upgrade.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

from aiohttp import WSMsgType, web

from ...errors import ApiError
from ...openapi import document, errors, json_body
from ...server import SERVER_KEY
from .audio import (
    InvalidAudioError,
    PcmFormat,
    parse_l16_type,
    parse_wav,
    pcm_to_float,
    to_whisper_rate,
)
from .endpointing import EndpointOptions
from .pipeline import (
    AudioTooLongError,
    SpeechPipeline,
    SpeechUnavailableError,
    StreamLimitError,
    UnsupportedLanguageError,
)
from .stream import Partial, SpeechStream, StreamOptions
from .transcriber import ModelUnavailableError, QueueFullError, Transcript
from .vocabulary import InvalidPhrasesError, clean_phrases

_LOGGER = logging.getLogger(__name__)

TRANSCRIBE_PATH = "/api/v1/speech/transcribe"
STREAM_PATH = "/api/v1/speech/stream"
WAV_TYPES = ("audio/wav", "audio/x-wav", "audio/wave", "audio/vnd.wave")
IDLE_TIMEOUT_S = 5.0  # a stream with no audio for this long is ended with an error
START_TIMEOUT_S = 10.0
MAX_FRAME_BYTES = 1 << 20


def add_speech_routes(app: web.Application) -> None:
    app.router.add_post(TRANSCRIBE_PATH, transcribe)
    app.router.add_get(STREAM_PATH, stream)
    document(app, {TRANSCRIBE_PATH: {"post": _TRANSCRIBE_SPEC}, STREAM_PATH: {"get": _STREAM_SPEC}})


def _pipeline(request: web.Request) -> SpeechPipeline:
    pipeline = request.app[SERVER_KEY].speech
    if not pipeline.available:
        raise ApiError(
            503, "speech_unavailable", "No speech model is installed on this server", retry_after=60
        )
    return pipeline


async def transcribe(request: web.Request) -> web.Response:
    started = time.perf_counter()
    pipeline = _pipeline(request)
    try:
        language = pipeline.language(request.query.get("language"))
        phrases = [p for p in request.query.get("phrases", "").split(",") if p.strip()]
        prompt = pipeline.prompt(clean_phrases(phrases))
    except (UnsupportedLanguageError, InvalidPhrasesError) as err:
        raise ApiError(400, "invalid_parameter", str(err)) from None
    fmt, frames = await _read_audio(request)
    if not frames:
        raise ApiError(400, "empty_audio", "The request holds no audio")
    seconds = fmt.seconds(len(frames))
    if seconds > pipeline.limits.max_audio_s:
        raise ApiError(
            413, "audio_too_long", str(AudioTooLongError(seconds, pipeline.limits.max_audio_s))
        )
    loop = asyncio.get_running_loop()
    audio = await loop.run_in_executor(
        None, lambda: to_whisper_rate(pcm_to_float(frames, fmt), fmt.rate)
    )
    prepared = time.perf_counter()
    try:
        result = await pipeline.transcribe(audio, language, prompt)
    except InvalidAudioError as err:
        raise ApiError(400, "invalid_audio", str(err)) from None
    except QueueFullError:
        raise ApiError(
            503, "queue_full", "Too many speech requests queued", retry_after=1
        ) from None
    except (ModelUnavailableError, SpeechUnavailableError) as err:
        raise ApiError(503, "speech_unavailable", str(err), retry_after=30) from None
    body = _transcript_body(result)
    body["timing_ms"] = {
        **result.timing_ms,
        "prepare": round((prepared - started) * 1000, 1),
        "total": round((time.perf_counter() - started) * 1000, 1),
    }
    body["model"] = pipeline.model_path.name
    return web.json_response(body)


async def _read_audio(request: web.Request) -> tuple[PcmFormat, bytes]:
    mime, params = _content_type(request.headers.get("Content-Type", ""))
    data = await request.read()
    try:
        if mime in WAV_TYPES or (mime == "application/octet-stream" and data[:4] == b"RIFF"):
            if not data:
                return PcmFormat(16000), b""
            return parse_wav(data)
        if mime == "audio/l16":
            fmt = parse_l16_type(params)
            if len(data) % fmt.frame_bytes:
                raise InvalidAudioError(
                    f"{len(data)} bytes is not a whole number of {fmt.channels}-channel "
                    "16-bit frames"
                )
            return fmt, data
    except InvalidAudioError as err:
        raise ApiError(400, "invalid_audio", str(err)) from None
    raise ApiError(
        415,
        "unsupported_media_type",
        f"Send audio/wav or audio/L16;rate=...;channels=..., not {mime or 'nothing'}",
    )


def _content_type(header: str) -> tuple[str, dict[str, str]]:
    mime, *rest = header.split(";")
    params: dict[str, str] = {}
    for item in rest:
        key, _, value = item.partition("=")
        params[key.strip().lower()] = value.strip().strip('"')
    return mime.strip().lower(), params


def _transcript_body(result: Transcript) -> dict[str, Any]:
    return {
        "text": result.text,
        "language": result.language,
        "duration_s": round(result.duration_s, 3),
        "segments": [s.as_dict() for s in result.segments],
    }


async def stream(request: web.Request) -> web.StreamResponse:
    pipeline = _pipeline(request)
    ws = web.WebSocketResponse(max_msg_size=MAX_FRAME_BYTES, heartbeat=30)
    if not ws.can_prepare(request).ok:
        raise ApiError(400, "websocket_required", "Open this route as a WebSocket")
    try:
        pipeline.reserve_stream()
    except StreamLimitError as err:
        raise ApiError(503, "too_many_streams", str(err), retry_after=2) from None
    session: SpeechStream | None = None
    try:
        await ws.prepare(request)
        session = await _start(ws, pipeline)
        if session is not None:
            await _run(ws, session)
    finally:
        if session is not None:
            await session.close()
        pipeline.release_stream()
        if not ws.closed:
            await ws.close()
    return ws


async def _start(ws: web.WebSocketResponse, pipeline: SpeechPipeline) -> SpeechStream | None:
    try:
        msg = await ws.receive(timeout=START_TIMEOUT_S)
    except TimeoutError:
        await _fail(ws, "timeout", f"No start message within {START_TIMEOUT_S:g} s")
        return None
    if msg.type != WSMsgType.TEXT:
        if msg.type == WSMsgType.BINARY:
            await _fail(ws, "bad_request", "Send the start message (JSON) before audio")
        return None
    try:
        start = json.loads(msg.data)
        if not isinstance(start, dict) or start.get("type") != "start":
            raise ValueError('the first message must be {"type": "start", ...}')
        language = pipeline.language(start.get("language"))
        fmt = PcmFormat(rate=int(start.get("rate", 16000)), channels=int(start.get("channels", 1)))
        phrases = clean_phrases(start.get("phrases"))
        end_silence = float(start.get("end_silence_ms", 500)) / 1000
        if not 0.1 <= end_silence <= 3.0:
            raise ValueError("end_silence_ms must be between 100 and 3000")
    except (ValueError, TypeError) as err:
        await _fail(ws, "bad_request", str(err))
        return None
    prompt = pipeline.prompt(phrases)

    async def on_partial(partial: Partial) -> None:
        if not ws.closed:
            await ws.send_json(
                {
                    "type": "partial",
                    "text": partial.text,
                    "stable": partial.stable,
                    "unstable": partial.unstable,
                }
            )

    options = StreamOptions(
        pcm=fmt,
        language=language,
        prompt=prompt,
        endpoint=EndpointOptions(end_silence_s=end_silence),
    )
    session = pipeline.new_stream(options, on_partial)
    await ws.send_json(
        {
            "type": "ready",
            "model": pipeline.model_path.name,
            "language": language,
            "prompt_phrases": 0 if prompt is None else len(phrases),
        }
    )
    return session


async def _run(ws: web.WebSocketResponse, session: SpeechStream) -> None:
    while True:
        try:
            msg = await ws.receive(timeout=IDLE_TIMEOUT_S)
        except TimeoutError:
            await _fail(ws, "timeout", f"No audio for {IDLE_TIMEOUT_S:g} s")
            return
        if msg.type == WSMsgType.BINARY:
            if await session.feed(msg.data):
                break
        elif msg.type == WSMsgType.TEXT:
            if _message_type(msg.data) != "end":
                await _fail(ws, "bad_request", 'Only binary audio or {"type": "end"} may follow')
                return
            break
        else:  # close, error: the client is gone
            return
    try:
        result = await session.finish()
    except QueueFullError:
        await _fail(ws, "queue_full", "Too many speech requests queued")
        return
    except ModelUnavailableError as err:
        await _fail(ws, "speech_unavailable", str(err))
        return
    if not ws.closed:
        await ws.send_json(
            {
                "type": "final",
                **_transcript_body(result),
                "reason": session.reason,
                "timing_ms": result.timing_ms,
            }
        )


def _message_type(data: str) -> object:
    try:
        message = json.loads(data)
    except ValueError:
        return None
    return message.get("type") if isinstance(message, dict) else None


async def _fail(ws: web.WebSocketResponse, code: str, message: str) -> None:
    if not ws.closed:
        await ws.send_json({"type": "error", "error": {"code": code, "message": message}})
        await ws.close(code=1008 if code != "queue_full" else 1013)


_AUDIO_BODY = {"schema": {"type": "string", "format": "binary"}}
_SEGMENT = {
    "type": "object",
    "properties": {
        "start": {"type": "number"},
        "end": {"type": "number"},
        "text": {"type": "string"},
    },
}
_TRANSCRIBE_SPEC: dict[str, Any] = {
    "summary": "Transcribe a WAV file or raw 16-bit PCM (any rate and channel count)",
    "operationId": "speech_transcribe",
    "parameters": [
        {
            "name": "language",
            "in": "query",
            "description": "ISO 639-1 code (en, de, ...); empty: the model's own or detected",
            "schema": {"type": "string"},
        },
        {
            "name": "phrases",
            "in": "query",
            "description": "comma-separated names to bias towards (Whisper's prompt)",
            "schema": {"type": "string"},
        },
    ],
    "requestBody": {
        "required": True,
        "content": {
            "audio/wav": _AUDIO_BODY,
            "audio/L16": _AUDIO_BODY,
            "application/octet-stream": _AUDIO_BODY,
        },
    },
    "responses": {
        "200": json_body(
            {
                "type": "object",
                "required": ["text", "language", "segments", "timing_ms"],
                "properties": {
                    "text": {"type": "string"},
                    "language": {"type": "string"},
                    "model": {"type": "string"},
                    "duration_s": {"type": "number"},
                    "segments": {"type": "array", "items": _SEGMENT},
                    "timing_ms": {"type": "object", "additionalProperties": {"type": "number"}},
                },
            }
        ),
        **errors(400, 401, 413, 415, 503),
    },
}
_STREAM_SPEC: dict[str, Any] = {
    "summary": "Live speech-to-text over a WebSocket (protocol in docs/protocol.md)",
    "operationId": "speech_stream",
    "responses": {
        "101": {"description": "Switching to the WebSocket protocol"},
        **errors(400, 401, 503),
    },
}
