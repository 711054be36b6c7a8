"""Remote backend: NVIDIA Triton Inference Server over KServe v2 (gRPC, or HTTP as a fallback).

Triton may be down when we start, restart under us, or be slow: none of that raises out of
`start()`. A background task re-checks readiness every few seconds and reloads the model configs
when Triton comes back, so the server recovers without a restart of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Awaitable, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import numpy as np
from google.protobuf import json_format
from tritonclient.grpc import model_config_pb2
from tritonclient.utils import InferenceServerException, np_to_triton_dtype

from ..batching import QueueFullError
from ..models.repository import ModelConfig, ModelConfigError, from_proto, read_labels
from .base import Backend, BackendError, Tensors, UnknownModelError

_LOGGER = logging.getLogger(__name__)

DEFAULT_PORTS = {"grpc": 8001, "http": 8000}
_SCHEMES = {"grpc": "grpc", "grpcs": "grpc", "http": "http", "https": "http"}
# gRPC statuses that mean "Triton is not there", as opposed to "this request was bad".
_DOWN_STATUSES = {"StatusCode.UNAVAILABLE", "StatusCode.CANCELLED"}


def parse_url(url: str, protocol: str | None = None) -> tuple[str, str, bool]:
    """`grpc://h:8001`, `http://h:8000`, `https://…` or `h:port` → (protocol, host:port, ssl)."""
    parts = urlsplit(url if "://" in url else f"{protocol or 'grpc'}://{url}")
    scheme = parts.scheme.lower()
    chosen = protocol or _SCHEMES.get(scheme)
    if chosen not in DEFAULT_PORTS or scheme not in _SCHEMES or not parts.hostname:
        raise ValueError(
            f"unsupported Triton URL {url!r} (use grpc://host:8001 or http://host:8000)"
        )
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return chosen, f"{host}:{parts.port or DEFAULT_PORTS[chosen]}", scheme in ("grpcs", "https")


class TritonBackend(Backend):
    """Models served by one Triton.

    models: names to serve (None: every READY model in Triton's repository index).
    local_repo: a local copy of Triton's repository, only read for label files.
    timeout_s bounds one inference; recheck_s is the readiness poll while all is quiet.
    """

    name = "triton"

    def __init__(
        self,
        url: str,
        *,
        protocol: str | None = None,
        models: Sequence[str] | None = None,
        timeout_s: float = 10.0,
        local_repo: Path | None = None,
        recheck_s: float = 5.0,
        check_timeout_s: float = 3.0,
        max_in_flight: int = 64,
    ) -> None:
        self.protocol, self._address, self._ssl = parse_url(url, protocol)
        # Shown in announce/health: rebuilt from parts so user:password@ never leaks.
        self.url = f"{self.protocol}{'s' if self._ssl else ''}://{self._address}"
        self.timeout_s = timeout_s
        # Triton queues and batches on its side; we only bound how many we send at once.
        self.max_in_flight = max_in_flight
        self._in_flight: dict[str, int] = {}
        self._wanted = list(models) if models is not None else None
        self._local_repo = local_repo
        self._recheck_s = recheck_s
        # Health probes are cheap: one that does not answer this fast means Triton is hung.
        self._check_timeout_s = check_timeout_s
        self._client: Any = None
        self._retired: list[tuple[float, Any]] = []  # (close after, client)
        self._configs: dict[str, ModelConfig] = {}
        self._ready_models: set[str] = set()
        self._wake = asyncio.Event()
        self._monitor_task: asyncio.Task[None] | None = None

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        await self._check()
        if not self.ready:
            _LOGGER.warning(
                "Triton at %s is not ready yet; retrying every %ss", self.url, self._recheck_s
            )
        self._monitor_task = asyncio.create_task(self._monitor(), name="triton-monitor")

    async def stop(self) -> None:
        if self._monitor_task is not None:
            self._monitor_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._monitor_task
            self._monitor_task = None
        self._ready_models.clear()
        self._mark_down(BackendError("stopped"))
        await self._close_retired(everything=True)

    @property
    def ready(self) -> bool:
        return bool(self._ready_models)

    def models(self) -> Mapping[str, ModelConfig]:
        # Last known configs stay listed while Triton is down: the capability is still ours,
        # the backend is just not ready (health says so).
        return dict(self._configs)

    def describe(self) -> dict[str, object]:
        return {"ready": self.ready, "url": self.url}

    # -- inference -------------------------------------------------------------------------

    async def infer_sample(self, model: str, inputs: Tensors) -> tuple[Tensors, float]:
        """Straight to Triton (its dynamic batcher batches concurrent samples)."""
        if sum(self._in_flight.values()) >= self.max_in_flight:
            raise QueueFullError
        self._in_flight[model] = self._in_flight.get(model, 0) + 1
        try:
            return await self.infer(model, inputs), 0.0
        finally:
            self._in_flight[model] -= 1

    def queue_depths(self) -> dict[str, int]:
        return dict(self._in_flight)

    async def infer(self, model: str, inputs: Tensors) -> Tensors:
        config = self._servable(model)
        mod = self._module()
        specs = {spec.name: spec for spec in config.inputs}
        request = []
        for name, array in inputs.items():
            spec = specs.get(name)
            data = np.ascontiguousarray(array, dtype=spec.dtype if spec else None)
            tensor = mod.InferInput(name, list(data.shape), np_to_triton_dtype(data.dtype))
            tensor.set_data_from_numpy(data)
            request.append(tensor)
        # HTTP returns JSON numbers unless outputs are asked for as binary.
        outputs = None
        if self.protocol == "http" and config.outputs:
            outputs = [mod.InferRequestedOutput(o.name, binary_data=True) for o in config.outputs]
        try:
            async with asyncio.timeout(self.timeout_s):
                result = await self._connect().infer(model, request, outputs=outputs)
        except TimeoutError as err:
            self._wake.set()  # slow or gone? let the monitor find out now
            raise BackendError(
                f"Triton at {self.url} did not answer {model!r} within {self.timeout_s:g}s"
            ) from err
        except asyncio.CancelledError as err:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # our caller cancelled us
            # gRPC raises CancelledError when its channel is closed under the call.
            self._wake.set()
            raise BackendError(f"Triton at {self.url} dropped the request to {model!r}") from err
        except InferenceServerException as err:
            self._wake.set()  # e.g. the model was unloaded: re-check now
            if err.status() in _DOWN_STATUSES:
                self._mark_down(err)
                raise BackendError(f"Triton at {self.url} is unreachable: {err.message()}") from err
            raise BackendError(f"Triton failed on {model!r}: {err.message()}") from err
        except (OSError, aiohttp.ClientError) as err:  # the HTTP client's connection errors
            self._mark_down(err)
            self._wake.set()
            raise BackendError(f"Triton at {self.url} is unreachable: {err}") from err
        response = result.get_response()
        names = (
            [o["name"] for o in response["outputs"]]
            if isinstance(response, dict)
            else [o.name for o in response.outputs]
        )
        # Copies: gRPC arrays are read-only views of the response buffer.
        return {name: np.array(result.as_numpy(name)) for name in names}

    def _servable(self, model: str) -> ModelConfig:
        if model in self._ready_models:
            return self._configs[model]
        known = model in self._configs or (self._wanted is not None and model in self._wanted)
        if known or (not self.ready and self._wanted is None):
            self._wake.set()
            raise BackendError(f"Triton at {self.url} is not ready to serve {model!r}")
        raise UnknownModelError(f"model {model!r} is not served by Triton at {self.url}")

    # -- readiness -------------------------------------------------------------------------

    async def _monitor(self) -> None:
        # Failing requests wake the monitor early, but never more than once per `gap`.
        gap = min(1.0, self._recheck_s)
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._recheck_s - gap):
                    await self._wake.wait()
            self._wake.clear()
            try:
                await self._close_retired()
                await self._check()
            except Exception:  # the monitor must never die
                _LOGGER.exception("Triton readiness check failed unexpectedly")
            await asyncio.sleep(gap)

    async def _check(self) -> None:
        """Cheap probe while ready; a full reload (index + configs) after being down."""
        was_ready = self.ready
        try:
            if was_ready:
                await self._probe()
            else:
                await self._reload()
        except (InferenceServerException, BackendError, OSError, aiohttp.ClientError) as err:
            self._mark_down(err)
            return
        if self.ready and not was_ready:
            _LOGGER.info(
                "Triton at %s is ready: %s", self.url, ", ".join(sorted(self._ready_models))
            )

    async def _probe(self) -> None:
        client = self._connect()
        if not await self._quick(client.is_server_ready()):
            raise BackendError("Triton reports it is not ready")
        for name in list(self._configs):
            if await self._quick(client.is_model_ready(name)):
                self._ready_models.add(name)
            else:
                self._ready_models.discard(name)

    async def _reload(self) -> None:
        client = self._connect()
        if not await self._quick(client.is_server_ready()):
            raise BackendError("Triton reports it is not ready")
        names = self._wanted if self._wanted is not None else await self._index(client)
        configs: dict[str, ModelConfig] = {}
        for name in names:
            if not await self._quick(client.is_model_ready(name)):
                _LOGGER.warning("Triton model %s is not ready", name)
                continue
            try:
                configs[name] = await self._load_config(client, name)
            except ModelConfigError as err:
                _LOGGER.error("Skipping Triton model %s: %s", name, err)
        self._configs = configs
        self._ready_models = set(configs)

    async def _index(self, client: Any) -> list[str]:
        if self.protocol == "grpc":
            index = await self._quick(client.get_model_repository_index(as_json=True))
            entries = index.get("models", [])
        else:
            entries = await self._quick(client.get_model_repository_index())
        return sorted({str(e["name"]) for e in entries if e.get("state") == "READY"})

    async def _load_config(self, client: Any, name: str) -> ModelConfig:
        if self.protocol == "grpc":
            proto = (await self._quick(client.get_model_config(name))).config
        else:
            raw = await self._quick(client.get_model_config(name))
            try:
                proto = json_format.ParseDict(
                    raw, model_config_pb2.ModelConfig(), ignore_unknown_fields=True
                )
            except json_format.ParseError as err:
                raise ModelConfigError(f"unreadable config from Triton: {err}") from err
        config = from_proto(proto, name=name)
        return dataclasses.replace(config, labels=self._labels(config, proto))

    def _labels(self, config: ModelConfig, proto: Any) -> tuple[str, ...]:
        """Triton never serves label files: read them from a local copy of the repository,
        else from a comma separated `labels` parameter in config.pbtxt."""
        if self._local_repo is not None:
            filenames = [o.label_filename for o in proto.output if o.label_filename]
            for filename in [*filenames, "labels.txt"]:
                path = self._local_repo / config.name / filename
                if path.is_file():
                    return read_labels(path)
        raw = config.parameters.get("labels", "")
        return tuple(label.strip() for label in raw.split(",") if label.strip())

    async def _quick[T](self, call: Awaitable[T]) -> T:
        async with asyncio.timeout(self._check_timeout_s):
            return await call

    def _mark_down(self, err: BaseException) -> None:
        detail = str(err) or f"no answer ({type(err).__name__})"
        if self.ready:
            _LOGGER.warning("Triton at %s is down: %s", self.url, detail)
        else:
            _LOGGER.debug("Triton at %s still down: %s", self.url, detail)
        self._ready_models.clear()
        # A fresh channel on the next check: gRPC's own reconnect backoff grows to minutes.
        # The old one is closed later, so requests still on it end by their own timeout.
        if self._client is not None:
            self._retired.append((time.monotonic() + self.timeout_s, self._client))
            self._client = None

    async def _close_retired(self, everything: bool = False) -> None:
        now = time.monotonic()
        due = [c for t, c in self._retired if everything or t <= now]
        self._retired = [(t, c) for t, c in self._retired if not (everything or t <= now)]
        for client in due:
            with contextlib.suppress(Exception):
                await client.close()

    # -- clients ---------------------------------------------------------------------------

    def _module(self) -> Any:
        if self.protocol == "grpc":
            import tritonclient.grpc as grpcclient

            return grpcclient
        import tritonclient.http as httpclient

        return httpclient

    def _connect(self) -> Any:
        if self._client is None:
            if self.protocol == "grpc":
                import tritonclient.grpc.aio as grpc_aio

                self._client = grpc_aio.InferenceServerClient(self._address, ssl=self._ssl)
            else:
                import tritonclient.http.aio as http_aio

                self._client = http_aio.InferenceServerClient(
                    self._address, ssl=self._ssl, conn_timeout=self.timeout_s
                )
        return self._client
