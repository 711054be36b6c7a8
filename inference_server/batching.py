"""Dynamic batching behind a bounded queue, one batcher per model.

Concurrent requests for a model wait up to `max_delay_s` (Triton's max_queue_delay) to be run
together, at most `max_batch` at a time. The queue is bounded: when it is full the caller gets
QueueFullError (the API answers 503 + Retry-After) instead of the server growing without limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import numpy as np

from .backends.base import BackendError, Tensors

RunBatch = Callable[[Tensors], Awaitable[Tensors]]


class QueueFullError(Exception):
    """The model's queue is full; try again shortly."""


class BatcherClosedError(BackendError):
    """The batcher was closed (the server is stopping) before this request ran."""


@dataclass
class _Pending:
    inputs: Tensors
    future: asyncio.Future[Tensors]
    enqueued: float
    queued_s: float = 0.0


class DynamicBatcher:
    def __init__(
        self,
        run: RunBatch,
        *,
        max_batch: int,
        max_delay_s: float,
        max_queue: int,
        workers: int = 1,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        self._run = run
        self.max_batch = max(1, max_batch)
        self.max_delay_s = max(0.0, max_delay_s)
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue(maxsize=max_queue)
        self._workers_wanted = max(1, workers)
        self._workers: list[asyncio.Task[None]] = []
        self._on_batch = on_batch
        self._closed = False

    @property
    def depth(self) -> int:
        return self._queue.qsize()

    async def submit(self, inputs: Tensors) -> tuple[Tensors, float]:
        """Run one sample (leading dim 1); returns its outputs and the seconds it queued."""
        if not self._workers:
            self._workers = [
                asyncio.create_task(self._work(), name="batcher")
                for _ in range(self._workers_wanted)
            ]
        if self._closed:
            raise BatcherClosedError("the server is shutting down")
        pending = _Pending(inputs, asyncio.get_running_loop().create_future(), time.perf_counter())
        try:
            self._queue.put_nowait(pending)
        except asyncio.QueueFull:
            raise QueueFullError from None
        outputs = await pending.future
        return outputs, pending.queued_s

    async def close(self) -> None:
        """Stop the workers; every caller still waiting gets BatcherClosedError, none hangs."""
        self._closed = True
        for task in self._workers:
            task.cancel()
        for task in self._workers:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._workers = []
        while not self._queue.empty():
            _fail(self._queue.get_nowait())

    async def _collect(self, batch: list[_Pending]) -> list[_Pending]:
        """Fill `batch` (owned by the caller, so a cancelled wait loses no request)."""
        batch.append(await self._queue.get())
        deadline = time.perf_counter() + self.max_delay_s
        while len(batch) < self.max_batch:
            if not self._queue.empty():
                batch.append(self._queue.get_nowait())
                continue
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(self._queue.get(), remaining))
            except TimeoutError:
                break
        # A caller that went away (client disconnect) is not worth computing for.
        return [item for item in batch if not item.future.done()]

    async def _work(self) -> None:
        batch: list[_Pending] = []
        try:
            while True:
                batch = []
                batch = await self._collect(batch)
                if batch:
                    await self._run_batch(batch)
        except asyncio.CancelledError:
            for item in batch:  # taken from the queue, never answered: answer now
                _fail(item)
            raise

    async def _run_batch(self, batch: list[_Pending]) -> None:
        started = time.perf_counter()
        for item in batch:
            item.queued_s = started - item.enqueued
        if self._on_batch:
            self._on_batch(len(batch))
        try:
            outputs = await self._run(_stack([item.inputs for item in batch]))
        except Exception as err:  # every waiting caller gets the backend's error
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(err)
            return
        offset = 0
        for item in batch:
            size = next(iter(item.inputs.values())).shape[0]
            if not item.future.done():
                item.future.set_result(
                    {name: value[offset : offset + size] for name, value in outputs.items()}
                )
            offset += size


def _fail(item: _Pending) -> None:
    if not item.future.done():
        item.future.set_exception(BatcherClosedError("the server is shutting down"))


def _stack(samples: list[Tensors]) -> Tensors:
    if len(samples) == 1:
        return samples[0]
    return {name: np.concatenate([s[name] for s in samples], axis=0) for name in samples[0]}
