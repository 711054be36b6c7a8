"""The speech pipeline's parts on real audio and the real model files: WAV checks, the Silero
VAD endpointer, local agreement, the phrase prompt budget."""

from __future__ import annotations

import io
import struct
import wave
from pathlib import Path

import numpy as np
import pytest

from inference_server.config import ConfigError, load_settings
from inference_server.pipelines.speech.agreement import LocalAgreement
from inference_server.pipelines.speech.audio import (
    WHISPER_RATE,
    InvalidAudioError,
    PcmFormat,
    StreamDecoder,
    parse_wav,
    pcm_to_float,
    to_whisper_rate,
)
from inference_server.pipelines.speech.endpointing import Endpointer
from inference_server.pipelines.speech.vocabulary import (
    InvalidPhrasesError,
    PromptBuilder,
    clean_phrases,
)
from tests.helpers.speech_audio import make_speech, pcm_of, silence, tools_missing

SPEECH_MODEL = Path(__file__).resolve().parents[2] / "speech_models" / "tiny.en"

pytestmark = pytest.mark.skipif(
    bool(tools_missing()), reason=f"scripts/setup installs {tools_missing()}"
)


@pytest.fixture(scope="module")
def speech(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_speech(tmp_path_factory.mktemp("speech"))


def wav_bytes(frames: bytes, rate: int = 16000, channels: int = 1) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as writer:
        writer.setnchannels(channels)
        writer.setsampwidth(2)
        writer.setframerate(rate)
        writer.writeframes(frames)
    return buffer.getvalue()


def test_wav_round_trip_keeps_format_and_frames(speech: dict[str, Path]) -> None:
    data = speech["thermostat_44k_stereo"].read_bytes()
    fmt, frames = parse_wav(data)
    assert (fmt.rate, fmt.channels) == (44100, 2)
    assert frames == pcm_of(speech["thermostat_44k_stereo"])[0]


def test_truncated_wav_is_refused(speech: dict[str, Path]) -> None:
    data = speech["kitchen_lights_16k_mono"].read_bytes()
    with pytest.raises(InvalidAudioError, match="truncated"):
        parse_wav(data[: len(data) // 2])


def test_wav_header_with_an_impossible_rate_is_refused() -> None:
    data = bytearray(wav_bytes(silence(0.5, 16000, 1)))
    struct.pack_into("<I", data, 24, 3)  # sample rate field: 3 Hz
    with pytest.raises(InvalidAudioError, match="sample rate"):
        parse_wav(bytes(data))


def test_not_a_wav_and_8_bit_wav_are_refused() -> None:
    with pytest.raises(InvalidAudioError, match="RIFF"):
        parse_wav(b"ID3" + b"\x00" * 100)
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(1)
        writer.setframerate(16000)
        writer.writeframes(b"\x80" * 1600)
    with pytest.raises(InvalidAudioError, match="8-bit"):
        parse_wav(buffer.getvalue())


def test_streamed_resampling_matches_whole_file_resampling(speech: dict[str, Path]) -> None:
    frames, rate, channels = pcm_of(speech["goforward_44k_stereo"])
    fmt = PcmFormat(rate, channels)
    whole = to_whisper_rate(pcm_to_float(frames, fmt), rate)
    decoder = StreamDecoder(fmt)
    step = 1411  # odd on purpose: chunks that split frames
    parts = [decoder.push(frames[i : i + step]) for i in range(0, len(frames), step)]
    parts.append(decoder.push(b"", last=True))
    streamed = np.concatenate(parts)
    assert abs(streamed.size - whole.size) <= 2
    n = min(streamed.size, whole.size)
    assert np.sqrt(np.mean((streamed[:n] - whole[:n]) ** 2)) < 1e-3


def _endpointer_after(audio: np.ndarray) -> Endpointer:
    endpointer = Endpointer()
    for i in range(0, audio.size, 320):  # 20 ms chunks, as a microphone sends them
        endpointer.feed(audio[i : i + 320])
    return endpointer


def test_vad_hears_speech_and_its_end_in_a_real_recording(speech: dict[str, Path]) -> None:
    frames, _, _ = pcm_of(speech["goforward_16k_mono"])
    audio = pcm_to_float(frames + silence(1.0, 16000, 1), PcmFormat(16000))
    endpointer = _endpointer_after(audio)
    assert endpointer.started
    assert endpointer.ended
    # "go forward ten meters" ends about 2.3 s into the 2.8 s recording
    assert 1.8 < endpointer.speech_end_s < 2.9


def test_vad_hears_no_speech_in_silence_and_has_not_ended_mid_sentence(
    speech: dict[str, Path],
) -> None:
    quiet = _endpointer_after(np.zeros(WHISPER_RATE * 3, dtype=np.float32))
    assert not quiet.started
    assert not quiet.ended
    frames, _, _ = pcm_of(speech["thermostat_16k_mono"])
    audio = pcm_to_float(frames, PcmFormat(16000))
    mid = _endpointer_after(audio[: audio.size // 2])
    assert mid.started
    assert not mid.ended


def test_local_agreement_commits_only_what_two_passes_share() -> None:
    agreement = LocalAgreement()
    assert agreement.insert(["turn", "on"]) == []
    # words compare without case and punctuation; the newest spelling is kept
    assert agreement.insert(["Turn", "on", "the", "kitch"]) == ["Turn", "on"]
    assert agreement.unstable_text == "the kitch"
    assert agreement.insert(["turn", "on", "the", "kitchen", "lights."]) == ["the"]
    assert agreement.stable_text == "Turn on the"
    # a pass that rewrites committed words never takes them back
    assert agreement.insert(["return", "of", "the", "kitchen"]) == []
    assert agreement.stable_text == "Turn on the"


@pytest.mark.skipif(not SPEECH_MODEL.is_dir(), reason="scripts/setup installs speech_models/")
def test_prompt_keeps_phrase_order_and_stays_within_the_token_budget() -> None:
    builder = PromptBuilder(SPEECH_MODEL, budget=30)
    phrases = clean_phrases(
        ["Kitchen", "kitchen", "Living  room", *[f"Lamp {i}" for i in range(50)]]
    )
    assert phrases[:3] == ["Kitchen", "Living room", "Lamp 0"]
    prompt = builder.build(phrases)
    assert prompt is not None
    assert prompt.startswith("Kitchen, Living room, Lamp 0, Lamp 1")
    assert builder.count(" " + prompt) <= 30
    # one more phrase would not have fitted
    names = prompt.rstrip(".").split(", ")
    longer = ", ".join([*names, phrases[len(names)]]) + "."
    assert builder.count(" " + longer) > 30
    assert builder.build([]) is None


def test_phrases_must_be_a_list_of_short_strings() -> None:
    with pytest.raises(InvalidPhrasesError):
        clean_phrases("kitchen")
    with pytest.raises(InvalidPhrasesError):
        clean_phrases([3])
    with pytest.raises(InvalidPhrasesError):
        clean_phrases(["x" * 500])


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--wyoming-port", "70000"], "--wyoming-port"),
        (["--speech-max-streams", "0"], "--speech-max-streams"),
        (["--speech-max-audio-s", "-1"], "--speech-max-audio-s"),
    ],
)
def test_bad_speech_settings_are_refused_by_name(argv: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(["--token", "long-enough-token", *argv], env={})


def test_speech_settings_from_the_environment() -> None:
    env = {"EDGE_INFERENCE_WYOMING_PORT": "10300", "EDGE_INFERENCE_SPEECH_MODEL": "base"}
    settings = load_settings(["--token", "long-enough-token"], env=env)
    assert settings.wyoming_port == 10300
    assert settings.speech_model == "base"
    assert settings.speech_short_window is True
