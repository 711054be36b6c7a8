"""Admission control: a bound on requests with a body in progress, taken before the body is read.

Bodies are read whole into memory (up to --max-body-mb each), then decoded: without a bound, 50
clients uploading at once hold 50 bodies and 50 decoded images. Past the bound a request is
answered 503 + Retry-After at once, before its body is read, so memory stays bounded under
any load. Route modules with uploads use it: `with server.uploads.claim(): ...`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from .errors import ApiError

RETRY_AFTER_S = 1.0


class UploadSlots:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_use = 0  # only touched on the event loop: no lock needed

    @contextmanager
    def claim(self) -> Iterator[None]:
        if self.in_use >= self.limit:
            raise ApiError(
                503,
                "busy",
                f"{self.limit} uploads are already in progress; retry shortly",
                retry_after=RETRY_AFTER_S,
            )
        self.in_use += 1
        try:
            yield
        finally:
            self.in_use -= 1
