"""Triton's model repository layout, read the way Triton reads it.

`<repo>/<model>/config.pbtxt`, `<repo>/<model>/<version>/<file>`, labels through an output's
`label_filename`. config.pbtxt is parsed with Triton's own protobuf schema (triton_schema.py,
no tritonclient needed) so a repository that loads in Triton loads here, and vice versa.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from google.protobuf import text_format
from google.protobuf.message import Message

from .triton_schema import DATA_TYPES, ModelConfigMessage

_LOGGER = logging.getLogger(__name__)

# Platforms/backends the local backend can run itself.
PLATFORM_ONNX = "onnxruntime_onnx"
PLATFORM_DARKNET = "opencv_darknet"  # ours: cfg + weights read by OpenCV DNN
DEFAULT_FILENAMES = {PLATFORM_ONNX: "model.onnx", PLATFORM_DARKNET: "model.cfg"}

_DTYPES = {
    DATA_TYPES["TYPE_FP32"]: "float32",
    DATA_TYPES["TYPE_FP16"]: "float16",
    DATA_TYPES["TYPE_UINT8"]: "uint8",
    DATA_TYPES["TYPE_INT32"]: "int32",
    DATA_TYPES["TYPE_INT64"]: "int64",
}


class ModelConfigError(ValueError):
    """A model directory or config.pbtxt that cannot be used."""


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: str
    dims: tuple[int, ...]  # without the batch dimension when max_batch_size > 0


@dataclass(frozen=True)
class ModelConfig:
    """What a pipeline and a backend need to know about one model."""

    name: str
    platform: str
    max_batch_size: int
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    labels: tuple[str, ...] = ()
    max_queue_delay_ms: float = 0.0
    dynamic_batching: bool = False
    parameters: dict[str, str] = field(default_factory=dict)
    path: Path | None = None  # the model file of the newest version, when on disk
    version: str = "1"

    @property
    def task(self) -> str:
        """`detection` unless config.pbtxt says otherwise (parameters { key: "task" })."""
        return self.parameters.get("task", "detection")


def parse_config(text: str, *, model_dir: Path | None = None) -> ModelConfig:
    """Parse config.pbtxt text into a ModelConfig (labels read relative to model_dir)."""
    proto = ModelConfigMessage()
    try:
        text_format.Parse(text, proto)
    except text_format.ParseError as err:
        raise ModelConfigError(f"config.pbtxt: {err}") from err
    name = proto.name or (model_dir.name if model_dir else "")
    if not name:
        raise ModelConfigError("config.pbtxt has no name")
    return from_proto(proto, name=name, model_dir=model_dir)


def from_proto(proto: Message, *, name: str, model_dir: Path | None = None) -> ModelConfig:
    """Build a ModelConfig from Triton's ModelConfig message (also what Triton returns)."""
    cfg: Any = proto  # generated message: fields are read by name
    labels: tuple[str, ...] = ()
    for out in cfg.output:
        if out.label_filename and model_dir is not None:
            labels = read_labels(model_dir / out.label_filename)
    platform = cfg.platform or cfg.backend
    path = None
    version = "1"
    if model_dir is not None:
        version, path = _newest_version(
            model_dir, cfg.default_model_filename or DEFAULT_FILENAMES.get(platform, "model.onnx")
        )
    return ModelConfig(
        name=name,
        platform=platform,
        max_batch_size=int(cfg.max_batch_size),
        inputs=tuple(_tensor(t) for t in cfg.input),
        outputs=tuple(_tensor(t) for t in cfg.output),
        labels=labels,
        dynamic_batching=cfg.HasField("dynamic_batching"),
        max_queue_delay_ms=cfg.dynamic_batching.max_queue_delay_microseconds / 1000.0,
        parameters={k: v.string_value for k, v in cfg.parameters.items()},
        path=path,
        version=version,
    )


def read_labels(path: Path) -> tuple[str, ...]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as err:
        raise ModelConfigError(f"cannot read labels {path}: {err}") from err
    return tuple(line.strip() for line in lines if line.strip())


def load_repository(repo: Path) -> dict[str, ModelConfig]:
    """Every loadable model under repo; a broken model is logged and skipped, not fatal."""
    models: dict[str, ModelConfig] = {}
    if not repo.is_dir():
        _LOGGER.warning("Model repository %s does not exist", repo)
        return models
    for model_dir in sorted(p for p in repo.iterdir() if p.is_dir()):
        config_file = model_dir / "config.pbtxt"
        if not config_file.is_file():
            continue
        try:
            config = parse_config(config_file.read_text(encoding="utf-8"), model_dir=model_dir)
        except (ModelConfigError, OSError) as err:
            _LOGGER.error("Skipping model %s: %s", model_dir.name, err)
            continue
        models[config.name] = config
    return models


def _tensor(spec: Any) -> TensorSpec:
    return TensorSpec(
        name=spec.name, dtype=_DTYPES.get(spec.data_type, "float32"), dims=tuple(spec.dims)
    )


def _newest_version(model_dir: Path, filename: str) -> tuple[str, Path | None]:
    versions = sorted(
        (int(p.name), p) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit()
    )
    if not versions:
        return "1", None
    number, version_dir = versions[-1]
    candidate = version_dir / filename
    return str(number), candidate if candidate.exists() else None
