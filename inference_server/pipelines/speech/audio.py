"""Audio in: WAV or raw 16-bit PCM → float32 mono at Whisper's 16 kHz.

WAV headers are read with the standard library's `wave` (RIFF parsing, WAVE_FORMAT_EXTENSIBLE)
and checked against the body, so a header that lies about its length or format is refused
instead of transcribed as noise. Resampling is soxr's (the SoX resampler): whole buffers with
`soxr.resample`, live streams with `soxr.ResampleStream`, which keeps its filter state between
chunks so chunk edges leave no clicks.
"""

from __future__ import annotations

import io
import wave
from dataclasses import dataclass

import numpy as np
import soxr
from numpy.typing import NDArray

WHISPER_RATE = 16000
MIN_RATE = 8000
MAX_RATE = 192000
MAX_CHANNELS = 8
SAMPLE_WIDTH = 2  # 16-bit PCM is all HA, Wyoming and every capture stack send

Audio = NDArray[np.float32]


class InvalidAudioError(ValueError):
    """Audio that cannot be used; the message says why (a 400 for the caller)."""


@dataclass(frozen=True)
class PcmFormat:
    rate: int
    channels: int = 1
    big_endian: bool = False

    def __post_init__(self) -> None:
        if not MIN_RATE <= self.rate <= MAX_RATE:
            raise InvalidAudioError(
                f"sample rate {self.rate} Hz is outside {MIN_RATE}..{MAX_RATE} Hz"
            )
        if not 1 <= self.channels <= MAX_CHANNELS:
            raise InvalidAudioError(f"{self.channels} channels; 1..{MAX_CHANNELS} are accepted")

    @property
    def frame_bytes(self) -> int:
        return SAMPLE_WIDTH * self.channels

    def seconds(self, nbytes: int) -> float:
        return nbytes / (self.frame_bytes * self.rate)


def parse_wav(data: bytes) -> tuple[PcmFormat, bytes]:
    """The format and PCM frames of a WAV file; refuses truncated or inconsistent files."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise InvalidAudioError("not a WAV file (no RIFF/WAVE header)")
    try:
        with wave.open(io.BytesIO(data), "rb") as reader:
            rate, channels, width = (
                reader.getframerate(),
                reader.getnchannels(),
                reader.getsampwidth(),
            )
            declared = reader.getnframes()
            if width != SAMPLE_WIDTH:
                raise InvalidAudioError(f"{8 * width}-bit WAV; send 16-bit PCM")
            if channels < 1:
                raise InvalidAudioError("WAV header says 0 channels")
            frames = reader.readframes(declared)
    except (wave.Error, EOFError) as err:
        raise InvalidAudioError(f"unreadable WAV header: {err or 'truncated'}") from None
    fmt = PcmFormat(rate=rate, channels=channels)
    if len(frames) < declared * fmt.frame_bytes:
        raise InvalidAudioError(
            f"truncated WAV: the header announces {declared * fmt.frame_bytes} bytes of audio, "
            f"the body holds {len(frames)}"
        )
    return fmt, frames


def parse_l16_type(params: dict[str, str]) -> PcmFormat:
    """`audio/L16;rate=16000;channels=1[;endian=big]` parameters → a PcmFormat.

    Little-endian unless `endian=big`: that is what HA, Wyoming and sound cards produce (RFC 3551
    defines L16 as big-endian; such senders add the parameter).
    """
    try:
        rate = int(params.get("rate", WHISPER_RATE))
        channels = int(params.get("channels", 1))
    except ValueError:
        raise InvalidAudioError("rate and channels must be integers") from None
    endian = params.get("endian", "little").lower()
    if endian not in ("little", "big"):
        raise InvalidAudioError("endian must be little or big")
    return PcmFormat(rate=rate, channels=channels, big_endian=endian == "big")


def pcm_to_float(frames: bytes, fmt: PcmFormat) -> Audio:
    """Interleaved 16-bit PCM → float32 mono in [-1, 1] at the source rate."""
    usable = len(frames) - len(frames) % fmt.frame_bytes
    samples = np.frombuffer(frames[:usable], dtype=">i2" if fmt.big_endian else "<i2")
    audio = samples.astype(np.float32) / 32768.0
    if fmt.channels > 1:
        audio = audio.reshape(-1, fmt.channels).mean(axis=1, dtype=np.float32)
    return audio


def to_whisper_rate(audio: Audio, rate: int) -> Audio:
    if rate == WHISPER_RATE or audio.size == 0:
        return audio
    return np.asarray(soxr.resample(audio, rate, WHISPER_RATE, quality="HQ"), dtype=np.float32)


class StreamDecoder:
    """Live PCM chunks of any size → 16 kHz float32 mono, a partial frame kept for the next."""

    def __init__(self, fmt: PcmFormat) -> None:
        self.fmt = fmt
        self._carry = b""
        self._resampler = (
            None
            if fmt.rate == WHISPER_RATE
            else soxr.ResampleStream(fmt.rate, WHISPER_RATE, 1, dtype="float32", quality="HQ")
        )

    def push(self, chunk: bytes, *, last: bool = False) -> Audio:
        data = self._carry + chunk
        usable = len(data) - len(data) % self.fmt.frame_bytes
        self._carry = data[usable:]
        audio = pcm_to_float(data[:usable], self.fmt)
        if self._resampler is None:
            return audio
        return np.asarray(self._resampler.resample_chunk(audio, last=last), dtype=np.float32)
