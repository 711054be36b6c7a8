"""In-process backend: onnxruntime for ONNX, OpenCV DNN for Darknet cfg/weights.

Reads the same Triton-layout repository as Triton. Work runs in a thread pool so the event loop
never waits on a model. onnxruntime picks the fastest execution provider present (TensorRT,
CUDA, ROCm/MIGraphX) and falls back to the CPU.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from ..models.repository import (
    PLATFORM_DARKNET,
    PLATFORM_ONNX,
    ModelConfig,
    load_repository,
)
from .base import Backend, BackendError, Tensors, UnknownModelError

_LOGGER = logging.getLogger(__name__)

PREFERRED_PROVIDERS = (
    "TensorrtExecutionProvider",
    "CUDAExecutionProvider",
    "ROCMExecutionProvider",
    "MIGraphXExecutionProvider",
    "CPUExecutionProvider",
)


class _OnnxModel:
    def __init__(self, config: ModelConfig, providers: list[str]) -> None:
        import onnxruntime as ort

        assert config.path is not None
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Idle intra-op threads would busy-wait on the cores that decoding and HTTP need
        # (bench/vision.py: 5-7% less CPU per image, same latency).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(config.path), options, providers=providers)
        self.providers = self.session.get_providers()
        self.output_names = [o.name for o in self.session.get_outputs()]

    def run(self, inputs: Tensors) -> Tensors:
        results = self.session.run(self.output_names, dict(inputs))
        return {
            name: np.asarray(value) for name, value in zip(self.output_names, results, strict=True)
        }


class _DarknetModel:
    """OpenCV DNN on the original Darknet files; output rows [cx, cy, w, h (0..1), obj, cls*obj]."""

    def __init__(self, config: ModelConfig) -> None:
        import cv2

        assert config.path is not None
        weights = config.path.with_suffix(".weights")
        self.net = cv2.dnn.readNetFromDarknet(str(config.path), str(weights))
        self.out_names = self.net.getUnconnectedOutLayersNames()
        self.output_name = config.outputs[0].name if config.outputs else "output"
        self.providers = ["OpenCV-DNN-CPU"]
        self._lock = threading.Lock()  # cv2.dnn.Net is not thread-safe

    def run(self, inputs: Tensors) -> Tensors:
        blob = next(iter(inputs.values())).astype(np.float32)
        rows = []
        with self._lock:
            for sample in blob:
                self.net.setInput(sample[None])
                outs = self.net.forward(self.out_names)
                rows.append(np.concatenate([o.reshape(-1, o.shape[-1]) for o in outs], axis=0))
        return {self.output_name: np.stack(rows)}


class LocalBackend(Backend):
    name = "local"

    def __init__(self, repo: Path, *, providers: list[str] | None = None, threads: int = 2) -> None:
        self.repo = repo
        self._wanted_providers = providers
        self._configs: dict[str, ModelConfig] = {}
        self._models: dict[str, _OnnxModel | _DarknetModel] = {}
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="local-infer")
        self._ready = False

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._load_all)
        self._ready = True

    async def stop(self) -> None:
        self._ready = False
        self._models.clear()
        self._executor.shutdown(wait=False, cancel_futures=True)

    @property
    def ready(self) -> bool:
        return self._ready and bool(self._models)

    def models(self) -> Mapping[str, ModelConfig]:
        return {name: self._configs[name] for name in self._models}

    async def infer(self, model: str, inputs: Tensors) -> Tensors:
        runner = self._models.get(model)
        if runner is None:
            raise UnknownModelError(f"model {model!r} is not loaded by the local backend")
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, runner.run, inputs)
        except Exception as err:
            raise BackendError(f"local backend failed on {model}: {err}") from err

    def describe(self) -> dict[str, object]:
        providers = sorted({p for m in self._models.values() for p in m.providers})
        return {"ready": self.ready, "providers": providers}

    def _providers(self) -> list[str]:
        import onnxruntime as ort

        available = set(ort.get_available_providers())
        wanted = self._wanted_providers or list(PREFERRED_PROVIDERS)
        chosen = [p for p in wanted if p in available]
        return chosen or ["CPUExecutionProvider"]

    def _load_all(self) -> None:
        self._configs = load_repository(self.repo)
        providers = self._providers()
        for name, config in self._configs.items():
            if config.path is None:
                _LOGGER.error("Model %s has no model file under %s", name, self.repo / name)
                continue
            try:
                self._models[name] = self._load(config, providers)
            except Exception as err:  # a broken model must not take the server down
                _LOGGER.error("Cannot load model %s: %s", name, err)
                continue
            _LOGGER.info(
                "Loaded %s (%s) on %s", name, config.platform, self._models[name].providers
            )

    @staticmethod
    def _load(config: ModelConfig, providers: list[str]) -> Any:
        if config.platform == PLATFORM_ONNX:
            return _OnnxModel(config, providers)
        if config.platform == PLATFORM_DARKNET:
            return _DarknetModel(config)
        raise BackendError(f"platform {config.platform!r} is not supported by the local backend")
