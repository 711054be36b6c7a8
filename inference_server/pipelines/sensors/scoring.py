"""A user's scoring model for a series: the feature contract and the call through the backend.

A model of the model repository whose config.pbtxt says
`parameters { key: "task" value: { string_value: "sensor_anomaly" } }` scores a series in
place of the built-in rarity. It takes one FP32 input of `FEATURES` per observation (a batch:
[N, 8]) and gives one FP32 output of one score per observation in 0..1 ([N] or [N, 1]). The
features come from the built-in model, so a user's model needs no history of its own: a
scikit-learn classifier or isolation forest trained on them, exported with skl2onnx, fits.
It runs on the server's backend (onnxruntime in process, or Triton), like the detectors.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from ...backends.base import Backend, BackendError, UnknownModelError
from ...models.repository import ModelConfig
from . import model
from .model import F64
from .observations import ObservationError

TASK = "sensor_anomaly"
BUILT_IN = "rarity"  # the scorer a series has without a model of its own
FEATURES = (
    "value",
    "expected",  # the built-in model's expected value
    "residual",  # value - expected
    "z",  # residual in the built-in model's sigmas
    "rarity",  # log10 of the return period in days (the built-in score's input)
    "hours_since_previous",  # 0 for a series' first reading
    "hour_of_day",  # UTC, 0..24
    "day_of_week",  # UTC, 0 = Monday
)


def features(t: F64, v: F64, out: F64, last_t: float | None) -> npt.NDArray[np.float32]:
    """The FEATURES of each observation, from the built-in model's output rows."""
    previous = np.concatenate([[t[0] if last_t is None else last_t], t[:-1]])
    columns = (
        v,
        out[:, model.OUT_EXPECTED],
        v - out[:, model.OUT_EXPECTED],
        out[:, model.OUT_Z],
        out[:, model.OUT_RARITY],
        (t - previous) / 3600.0,
        (t % model.DAY_S) / 3600.0,
        (np.floor(t / model.DAY_S) + 3) % 7,  # epoch day 0 was a Thursday
    )
    return np.stack(columns, axis=1).astype(np.float32)


class SensorScorer:
    """Finds and runs users' scoring models."""

    def __init__(self, backend: Backend | None) -> None:
        self._backend = backend

    def names(self) -> list[str]:
        """The sensor scoring models the backend serves now."""
        models = self._backend.models() if self._backend else {}
        return sorted(n for n, c in models.items() if _is_sensor_model(c))

    def config(self, name: str) -> ModelConfig:
        """The model's config; 404 when the backend serves no sensor model of that name."""
        config = self._backend.models().get(name) if self._backend else None
        if config is None or not _is_sensor_model(config):
            raise ObservationError(
                404,
                "unknown_model",
                f"No sensor scoring model {name!r} in the model repository (one whose "
                f'config.pbtxt sets the parameter "task" to "{TASK}")',
            )
        return config

    async def score(self, config: ModelConfig, rows: npt.NDArray[np.float32]) -> F64:
        """One score per row, in chunks of the model's max_batch_size (config: from config())."""
        assert self._backend is not None  # config() found the model on it
        name = config.name
        step = config.max_batch_size if config.max_batch_size > 0 else len(rows)
        scores = []
        for start in range(0, len(rows), max(step, 1)):
            chunk = rows[start : start + step]
            try:
                outputs = await self._backend.infer(name, {config.inputs[0].name: chunk})
            except UnknownModelError as err:
                raise ObservationError(404, "unknown_model", str(err)) from None
            except BackendError as err:
                raise ObservationError(503, "model_unavailable", str(err)) from None
            wanted = config.outputs[0].name if config.outputs else next(iter(outputs), "")
            got = np.asarray(outputs.get(wanted, np.empty(0)), dtype=np.float64).reshape(-1)
            if got.shape != (len(chunk),):
                raise ObservationError(
                    503,
                    "model_failed",
                    f"{name} gave {got.size} scores for {len(chunk)} observations (one each)",
                )
            scores.append(got)
        return np.concatenate(scores)


def _is_sensor_model(config: ModelConfig) -> bool:
    return config.task == TASK and bool(config.inputs)
