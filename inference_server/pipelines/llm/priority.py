"""Voice before batch: a per-upstream slot gate whose waiters are served by priority.

llama-server decodes a fixed number of requests at once (its slots) and queues the rest in
arrival order. We keep the queue on our side instead, so a spoken command waiting behind a
long AI Task summary goes next rather than last.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Callable
from enum import IntEnum


class Priority(IntEnum):
    VOICE = 0  # someone is waiting for the answer to be spoken
    INTERACTIVE = 1  # the default: a chat or an API client
    BATCH = 2  # AI Task, summaries: nobody is listening yet

    @classmethod
    def parse(cls, text: str | None) -> Priority:
        if not text:
            return cls.INTERACTIVE
        try:
            return cls[text.strip().upper()]
        except KeyError:
            raise ValueError(
                f"priority must be one of {', '.join(p.name.lower() for p in cls)}"
            ) from None


class PriorityGate:
    """At most `limit` holders; waiters are admitted by (priority, arrival)."""

    def __init__(self, limit: int, on_waiting: Callable[[int], None] | None = None) -> None:
        self.limit = limit
        self._on_waiting = on_waiting  # told the number waiting whenever it changes
        self.active = 0
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    @property
    def waiting(self) -> int:
        return sum(1 for _, _, fut in self._waiters if not fut.done())

    @property
    def load(self) -> float:
        """Holders and waiters per slot: the router sends a request to the least loaded."""
        return (self.active + self.waiting) / self.limit

    async def acquire(self, priority: Priority) -> None:
        if self.active < self.limit and not self.waiting:
            self.active += 1
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (int(priority), next(self._order), fut))
        self._changed()
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self.release()  # admitted just as the caller gave up: pass the slot on
            self._changed()
            raise

    def release(self) -> None:
        self.active -= 1
        self._admit()

    def resize(self, limit: int) -> None:
        self.limit = max(1, limit)
        self._admit()

    def _admit(self) -> None:
        admitted = False
        while self._waiters and self.active < self.limit:
            _, _, fut = heapq.heappop(self._waiters)
            if not fut.done():
                self.active += 1
                fut.set_result(None)
                admitted = True
        if admitted:
            self._changed()

    def _changed(self) -> None:
        if self._on_waiting is not None:
            self._on_waiting(self.waiting)
