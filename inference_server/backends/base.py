"""The one interface every backend implements: run tensors, nothing else.

Pipelines own pre/post-processing; a backend only knows model names, tensors and readiness.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping

import numpy as np
from numpy.typing import NDArray

from ..models.repository import ModelConfig

Tensors = dict[str, NDArray[np.generic]]


class BackendError(Exception):
    """The backend could not run a request (it is down, or the model failed)."""


class UnknownModelError(BackendError):
    """The backend does not serve this model."""


class Backend(ABC):
    """Runs models by name. Implementations must be safe to call concurrently."""

    name: str

    @abstractmethod
    async def start(self) -> None:
        """Connect or load; must not raise when the backend is merely down (set not ready)."""

    @abstractmethod
    async def stop(self) -> None:
        """Release sessions and connections."""

    @property
    @abstractmethod
    def ready(self) -> bool:
        """Whether requests can be served right now."""

    @abstractmethod
    def models(self) -> Mapping[str, ModelConfig]:
        """The models this backend serves, by name."""

    @abstractmethod
    async def infer(self, model: str, inputs: Tensors) -> Tensors:
        """Run one (possibly batched) request; the first dimension is the batch."""

    async def infer_sample(self, model: str, inputs: Tensors) -> tuple[Tensors, float]:
        """Run one sample (leading dimension 1): its outputs and the seconds it queued.

        Batching belongs to the backend that needs it: the local one batches concurrent
        samples in front of onnxruntime; Triton batches on its side, so samples go straight in.
        """
        return await self.infer(model, inputs), 0.0

    def queue_depths(self) -> dict[str, int]:
        """Samples waiting per model (stats and metrics)."""
        return {}

    def describe(self) -> dict[str, object]:
        """What the announce and health routes say about this backend (no secrets)."""
        return {"ready": self.ready}
