"""Real speech for the speech tests: espeak-ng sentences and Debian's goforward.raw recording.

Made at test time (espeak-ng, sox and pocketsphinx-testdata come from apt via scripts/setup),
each in two forms: 16 kHz mono and 44.1 kHz stereo.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import wave
from pathlib import Path

GOFORWARD_RAW = Path("/usr/share/pocketsphinx/test/data/goforward.raw")  # 16 kHz s16le mono

# (file stem, text, espeak-ng voice). The default British voice reads these clearly enough for
# tiny.en to get every word; the US voice's "set the thermostat" comes out as "That's the...".
# At espeak's default 175 words a minute "to 21" sits on a knife edge ("at 21" in some decodes:
# CTranslate2's int8 decode is not bit-stable across calls); at 140 both words win clearly.
WORDS_PER_MINUTE = 140
SENTENCES = {
    "kitchen_lights": ("turn on the kitchen lights", "en"),
    "thermostat": ("set the thermostat to 21 degrees", "en"),
}
TRANSCRIPTS = {
    **{stem: text for stem, (text, _) in SENTENCES.items()},
    "goforward": "go forward 10 meters",
}


def tools_missing() -> list[str]:
    missing = [tool for tool in ("espeak-ng", "sox") if shutil.which(tool) is None]
    if not GOFORWARD_RAW.is_file():
        missing.append("pocketsphinx-testdata")
    return missing


def normalise(text: str) -> str:
    """Case and punctuation out, so "Set the thermostat to 21 degrees." compares equal."""
    return " ".join(re.sub(r"[^\w\s']", " ", text.lower()).split())


def make_speech(folder: Path) -> dict[str, Path]:
    """`<stem>_16k_mono.wav` and `<stem>_44k_stereo.wav` for every sentence and goforward."""
    folder.mkdir(parents=True, exist_ok=True)
    made: dict[str, Path] = {}
    sources: dict[str, Path] = {}
    for stem, (text, voice) in SENTENCES.items():
        source = folder / f"{stem}_espeak.wav"
        subprocess.run(
            ["espeak-ng", "-v", voice, "-s", str(WORDS_PER_MINUTE), "-w", str(source), text],
            check=True,
        )
        sources[stem] = source
    goforward = folder / "goforward_source.wav"
    raw_format = ["-t", "raw", "-r", "16000", "-e", "signed", "-b", "16", "-c", "1"]
    subprocess.run(["sox", *raw_format, str(GOFORWARD_RAW), str(goforward)], check=True)
    sources["goforward"] = goforward
    for stem, source in sources.items():
        for name, rate, channels in (("16k_mono", 16000, 1), ("44k_stereo", 44100, 2)):
            target = folder / f"{stem}_{name}.wav"
            subprocess.run(
                ["sox", str(source), "-r", str(rate), "-c", str(channels), "-b", "16", str(target)],
                check=True,
            )
            made[f"{stem}_{name}"] = target
    return made


def pcm_of(path: Path) -> tuple[bytes, int, int]:
    """(frames, rate, channels) of a 16-bit WAV."""
    with wave.open(str(path), "rb") as reader:
        return reader.readframes(reader.getnframes()), reader.getframerate(), reader.getnchannels()


def silence(seconds: float, rate: int, channels: int) -> bytes:
    return b"\x00\x00" * int(seconds * rate) * channels
