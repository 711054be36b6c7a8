"""In-process backend: onnxruntime for ONNX, OpenCV DNN for Darknet cfg/weights.

Reads the same Triton-layout repository as Triton. Work runs in a thread pool so the event loop
never waits on a model. onnxruntime picks the fastest execution provider present (TensorRT,
CUDA, ROCm/MIGraphX) and falls back to the CPU.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from ..batching import DynamicBatcher
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
        # No CPU arena: it keeps the largest batch's buffers for good and grows with every new
        # shape (RSS crept up 7% per 1,200 requests); plain allocations are freed after a run.
        options.enable_cpu_mem_arena = False
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

    def __init__(
        self,
        repo: Path,
        *,
        providers: list[str] | None = None,
        threads: int = 2,
        rescan_s: float = 5.0,
        batching: bool = True,
        max_queue: int = 64,
        on_batch: Callable[[str, int], None] | None = None,
    ) -> None:
        self.repo = repo
        self._wanted_providers = providers
        self._configs: dict[str, ModelConfig] = {}
        self._models: dict[str, _OnnxModel | _DarknetModel] = {}
        self._failed: dict[str, float] = {}  # model → mtime of the files that failed to load
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="local-infer")
        self._ready = False
        self._rescan_s = rescan_s
        self._watch: asyncio.Task[None] | None = None
        self.batching = batching
        self.max_queue = max_queue
        self._on_batch = on_batch
        self._batchers: dict[str, DynamicBatcher] = {}

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._load_all)
        self._ready = True
        # A model copied into the repository later (or installed after a first start) is
        # picked up without a restart; cameras waiting for it start then.
        self._watch = asyncio.create_task(self._watch_repository(), name="local-models")

    async def stop(self) -> None:
        self._ready = False
        await self._close_batchers()
        if self._watch:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
        self._models.clear()
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def _watch_repository(self) -> None:
        loop = asyncio.get_running_loop()
        seen = await loop.run_in_executor(None, _signature, self.repo)
        while True:
            await asyncio.sleep(self._rescan_s)
            try:
                now = await loop.run_in_executor(None, _signature, self.repo)
                if now != seen:  # only a changed repository is parsed (and logged) again
                    seen = now
                    await loop.run_in_executor(self._executor, self._load_all)
            except Exception:  # an unreadable repository now may be fine later
                _LOGGER.exception("Rescanning %s failed", self.repo)

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

    async def infer_sample(self, model: str, inputs: Tensors) -> tuple[Tensors, float]:
        """Concurrent samples for a model run together, up to its max_batch_size."""
        if model not in self._models:
            raise UnknownModelError(f"model {model!r} is not loaded by the local backend")
        return await self._batcher(model).submit(inputs)

    def queue_depths(self) -> dict[str, int]:
        return {name: batcher.depth for name, batcher in self._batchers.items()}

    async def set_batching(self, enabled: bool) -> None:
        """Turn dynamic batching on or off (bench/vision.py compares both)."""
        await self._close_batchers()
        self.batching = enabled

    async def _close_batchers(self) -> None:
        batchers, self._batchers = list(self._batchers.values()), {}
        for batcher in batchers:
            await batcher.close()

    def _batcher(self, model: str) -> DynamicBatcher:
        batcher = self._batchers.get(model)
        if batcher is None:
            config = self._configs[model]
            batching = self.batching and config.max_batch_size > 1 and config.dynamic_batching

            async def run(inputs: Tensors) -> Tensors:
                return await self.infer(model, inputs)

            on_batch = self._on_batch

            # One worker: samples arriving during an inference already form the next batch,
            # so waiting max_queue_delay for more only delays a lone one (2 ms of 38 ms in
            # bench/vision.py).
            batcher = DynamicBatcher(
                run,
                max_batch=config.max_batch_size if batching else 1,
                max_delay_s=0.0,
                max_queue=self.max_queue,
                workers=1,
                on_batch=(lambda n: on_batch(model, n)) if on_batch else None,
            )
            self._batchers[model] = batcher
        return batcher

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
        """Load the repository's models not loaded yet (a failed one again once it changes)."""
        configs = load_repository(self.repo)
        new = {name: config for name, config in configs.items() if name not in self._models}
        if not new:
            return
        self._configs = {**self._configs, **configs}
        providers = self._providers()
        for name, config in new.items():
            if config.path is None:
                if self._failed.get(name) != -1.0:
                    _LOGGER.error("Model %s has no model file under %s", name, self.repo / name)
                self._failed[name] = -1.0
                continue
            mtime = _mtime(config.path)
            if self._failed.get(name) == mtime:
                continue
            try:
                self._models[name] = self._load(config, providers)
            except Exception as err:  # a broken model must not take the server down
                _LOGGER.error("Cannot load model %s: %s", name, err)
                self._failed[name] = mtime
                continue
            self._failed.pop(name, None)
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


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def _signature(repo: Path) -> frozenset[tuple[str, int, int]]:
    """Names, sizes and times of the repository's files (three levels: model/version/file)."""
    found = set()
    for pattern in ("*", "*/*", "*/*/*"):
        for path in repo.glob(pattern):
            with contextlib.suppress(OSError):
                stat = path.stat()
                found.add((str(path), stat.st_size, stat.st_mtime_ns))
    return frozenset(found)
