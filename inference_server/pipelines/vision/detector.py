"""Object detection on any backend: pre-processing, decoding, filtering."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from ...backends.base import Backend, Tensors, UnknownModelError
from ...metrics import Metrics
from ...models.repository import ModelConfig
from .annotate import annotate_jpeg
from .decoders import Decoding, LayoutError, decode, guess_layout
from .preprocess import Image, Preprocessing, PreprocessingError, decode_image

_LOGGER = logging.getLogger(__name__)


class InvalidParameterError(ValueError):
    """A request parameter that cannot be used (unknown label, bad score)."""


@dataclass(frozen=True)
class Detection:
    label: str
    score: float
    box: tuple[float, float, float, float]  # x1, y1, x2, y2 in 0..1
    class_id: int

    def as_dict(self) -> dict[str, object]:
        return {
            "label": self.label,
            "score": round(self.score, 4),
            "box": [round(v, 4) for v in self.box],
        }


@dataclass(frozen=True)
class DetectOptions:
    model: str | None = None  # None: the server's default model
    labels: tuple[str, ...] = ()  # empty: every label
    min_score: float = 0.25
    annotate: bool = False


DEFAULTS = DetectOptions()


@dataclass(frozen=True)
class ModelInputOutput:
    """A model's pre-processing and output decoding, read once from its config.pbtxt."""

    parameters: dict[str, str]  # what they were read from (a Triton reload may change them)
    preprocessing: Preprocessing
    decoding: Decoding


@dataclass
class DetectionResult:
    model: str
    detections: list[Detection]
    width: int
    height: int
    timing_ms: dict[str, float] = field(default_factory=dict)
    annotated_jpeg: bytes | None = None


class VisionPipeline:
    def __init__(
        self,
        backend: Backend,
        metrics: Metrics,
        *,
        default_model: str,
    ) -> None:
        self.backend = backend
        self.metrics = metrics
        self.default_model = default_model
        self._io: dict[str, ModelInputOutput | None] = {}

    def models(self) -> dict[str, ModelConfig]:
        """Detection models whose config.pbtxt parameters we can follow."""
        return {
            n: c
            for n, c in self.backend.models().items()
            if c.task == "detection" and self._model_io(c) is not None
        }

    def _model_io(self, config: ModelConfig) -> ModelInputOutput | None:
        cached = self._io.get(config.name)
        if config.name in self._io and (cached is None or cached.parameters == config.parameters):
            return cached
        try:
            io: ModelInputOutput | None = ModelInputOutput(
                dict(config.parameters),
                Preprocessing.from_parameters(config.parameters),
                Decoding.from_parameters(config.parameters),
            )
        except (PreprocessingError, LayoutError) as err:
            _LOGGER.error("Not serving model %s: config.pbtxt parameters: %s", config.name, err)
            io = None
        self._io[config.name] = io
        return io

    def describe(self) -> dict[str, object]:
        models = self.models()
        default = self.default_model if self.default_model in models else next(iter(models), None)
        return {
            "default_model": default,
            "models": [
                {"name": n, "backend": self.backend.name, "labels": list(c.labels)}
                for n, c in models.items()
            ],
            "cameras": True,
            # Camera settings beyond the first protocol: an integration offers them when listed.
            "camera_options": ["motion_threshold", "detect_source"],
        }

    def queue_depths(self) -> dict[str, int]:
        return self.backend.queue_depths()

    def resolve(self, model: str | None) -> ModelConfig:
        models = self.models()
        name = model or self.default_model
        if name not in models and not model and models:
            name = next(iter(models))  # no default installed: any detector beats an error
        if name not in models:
            raise UnknownModelError(
                f"unknown model {name!r}; served: {', '.join(models) or 'none'}"
            )
        return models[name]

    def label_filter(self, config: ModelConfig, labels: Iterable[str] | None) -> set[int] | None:
        if not labels:
            return None
        wanted = {label.strip() for label in labels if label.strip()}
        unknown = wanted - set(config.labels)
        if unknown:
            raise InvalidParameterError(
                f"labels not known to {config.name}: {', '.join(sorted(unknown))}"
            )
        return {i for i, label in enumerate(config.labels) if label in wanted}

    async def detect_bytes(self, data: bytes, options: DetectOptions = DEFAULTS) -> DetectionResult:
        """Detect on JPEG/PNG bytes; options are validated before the image is decoded."""
        config, wanted = self._prepare(options)
        started = time.perf_counter()
        image = await asyncio.get_running_loop().run_in_executor(None, decode_image, data)
        decoded = time.perf_counter()
        result = await self._detect(config, image, wanted, options, started)
        result.timing_ms["decode"] = round((decoded - started) * 1000, 2)
        return result

    async def detect_image(
        self, image: Image, options: DetectOptions = DEFAULTS
    ) -> DetectionResult:
        """Detect on a decoded BGR frame (camera stream mode)."""
        config, wanted = self._prepare(options)
        return await self._detect(config, image, wanted, options, time.perf_counter())

    async def close(self) -> None:
        """Nothing of its own to release: batching lives in the backend that needs it."""

    def _prepare(self, options: DetectOptions) -> tuple[ModelConfig, set[int] | None]:
        if not 0.0 <= options.min_score <= 1.0:
            raise InvalidParameterError("min_score must be between 0 and 1")
        config = self.resolve(options.model)
        return config, self.label_filter(config, options.labels)

    async def _detect(
        self,
        config: ModelConfig,
        image: Image,
        wanted: set[int] | None,
        options: DetectOptions,
        started: float,
    ) -> DetectionResult:
        loop = asyncio.get_running_loop()
        io = self._model_io(config)
        assert io is not None  # models() only lists models with usable parameters
        _, height, width = config.inputs[0].dims[-3:]
        blob, box = await loop.run_in_executor(None, io.preprocessing.apply, image, width, height)
        outputs, queued = await self._infer(config, {config.inputs[0].name: blob})
        inferred = time.perf_counter()
        sample = [outputs[o.name][0].astype(np.float32) for o in config.outputs]
        layout = io.decoding.layout or guess_layout((1, *sample[0].shape), len(config.labels))
        raw = decode(
            sample,
            layout=layout,
            num_classes=len(config.labels),
            input_size=(width, height),
            box=box,
            min_score=options.min_score,
            iou=io.decoding.nms_iou,
            strides=io.decoding.strides,
        )
        detections = [
            Detection(
                label=config.labels[c],
                score=float(s),
                box=(float(b[0]), float(b[1]), float(b[2]), float(b[3])),
                class_id=int(c),
            )
            for b, s, c in zip(raw.boxes, raw.scores, raw.class_ids, strict=True)
            if wanted is None or int(c) in wanted
        ]
        result = DetectionResult(config.name, detections, box.width, box.height)
        if options.annotate:
            result.annotated_jpeg = await loop.run_in_executor(
                None, annotate_jpeg, image, detections
            )
        total = time.perf_counter() - started
        self.metrics.observe_latency("vision", config.name, total)
        result.timing_ms.update(
            queue=round(queued * 1000, 2),
            inference=round((inferred - started) * 1000 - queued * 1000, 2),
            total=round(total * 1000, 2),
        )
        return result

    async def _infer(self, config: ModelConfig, inputs: Tensors) -> tuple[Tensors, float]:
        """One sample through the backend (which batches if it needs to); errors counted."""
        try:
            return await self.backend.infer_sample(config.name, inputs)
        except Exception:
            self.metrics.backend_errors.labels(self.backend.name, config.name).inc()
            raise
