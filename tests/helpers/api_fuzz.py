"""Property-based fuzzing of every operation in the server's own OpenAPI description.

Schemathesis turns each operation into a Hypothesis strategy: schema-conforming cases
(positive) and cases that break the schema (negative: wrong types, out-of-range numbers,
missing bodies, odd media types). On top, raw mutations of a real image upload (truncated,
bit-flipped, wrong or missing multipart boundary, odd content types) reach the decoders, which
schema-driven generation seldom does. The property: no 5xx but 503 (with Retry-After), every
error in the JSON shape, and the process alive. Shared by tests/server/test_fuzz.py (bounded)
and bench/fuzz.py (the long run).
"""

from __future__ import annotations

import json
import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

Response = Any  # requests ships no type hints

OPENAPI_PATH = "/api/v1/openapi.json"
MUTATION_PATH = "/api/v1/vision/detect"


@dataclass
class FuzzReport:
    requests: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    violations: list[str] = field(default_factory=list)
    unsendable: int = 0  # cases the HTTP client itself refused to send

    def record(self, method: str, url: str, response: Response) -> None:
        self.requests += 1
        self.statuses[response.status_code] += 1
        problem = check_response(response)
        if problem and len(self.violations) < 50:
            self.violations.append(f"{method} {url} -> {response.status_code}: {problem}")


def check_response(response: Response) -> str | None:
    """What is wrong with an answer, or None."""
    status = response.status_code
    if status >= 500 and status != 503:
        return f"server error {response.text[:300]}"
    if status == 503 and "Retry-After" not in response.headers:
        return "503 without Retry-After"
    if status >= 400 and response.request.method != "HEAD":
        try:
            error = json.loads(response.content)["error"]
        except (ValueError, KeyError, TypeError):
            return f"error body is not the JSON error shape: {response.content[:200]!r}"
        if not (isinstance(error.get("code"), str) and isinstance(error.get("message"), str)):
            return f"error body lacks code/message: {error}"
    return None


def load_schema(base_url: str, token: str) -> Any:
    spec = requests.get(
        base_url + OPENAPI_PATH, headers={"Authorization": f"Bearer {token}"}, timeout=10
    ).json()
    return schemathesis.openapi.from_dict(spec)


def fuzz_operations(
    base_url: str, token: str, *, examples: int, report: FuzzReport, seed: int = 0
) -> None:
    """Each operation, positive and negative, `examples` cases each."""
    schema = load_schema(base_url, token)
    session = requests.Session()
    auth = {"Authorization": f"Bearer {token}"}
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @settings(
                max_examples=examples,
                deadline=None,
                database=None,
                derandomize=seed == 0,
                suppress_health_check=list(HealthCheck),
            )
            @given(case=operation.as_strategy(generation_mode=mode))
            def run(case: Any) -> None:
                try:
                    response = case.call(
                        base_url=base_url, session=session, headers=auth, timeout=60
                    )
                except (requests.exceptions.InvalidHeader, requests.exceptions.InvalidURL):
                    report.unsendable += 1
                    return
                except (ValueError, UnicodeError):
                    report.unsendable += 1
                    return
                report.record(case.method, case.formatted_path, response)

            try:
                run()
            except Unsatisfiable:  # nothing to break in an operation without inputs
                continue


def mutate_uploads(
    base_url: str, token: str, image: bytes, *, count: int, report: FuzzReport, seed: int = 0
) -> None:
    """Raw mutations of a real JPEG upload: the inputs behind the 500s the issue reported."""
    rng = random.Random(seed)
    session = requests.Session()
    auth = {"Authorization": f"Bearer {token}"}
    content_types = [
        "image/jpeg",
        "image/png",
        "application/octet-stream",
        "multipart/form-data",  # no boundary
        "multipart/form-data; boundary=",
        "multipart/form-data; boundary=xyz",
        "multipart/mixed; boundary=abc",
        "text/plain",
        "",
        "application/json",
    ]
    for _ in range(count):
        body = bytearray(image)
        kind = rng.randrange(6)
        if kind == 0:  # truncated
            body = body[: rng.randrange(len(body))]
        elif kind == 1:  # flipped bytes
            for _ in range(rng.randrange(1, 50)):
                body[rng.randrange(len(body))] = rng.randrange(256)
        elif kind == 2:  # random bytes
            body = bytearray(rng.randbytes(rng.randrange(0, 4096)))
        elif kind == 3:  # a multipart body with a broken structure
            boundary = "xyz"
            body = bytearray(
                f"--{boundary}\r\nContent-Disposition: form-data; name=image; filename=a.jpg"
                "\r\n\r\n".encode()
                + bytes(body[: rng.randrange(len(body))])
                + (b"\r\n--xyz--\r\n" if rng.random() < 0.5 else b"")
            )
        elif kind == 4:  # a header-only image with absurd dimensions
            body = bytearray(_png_header(rng.randrange(1, 100_000), rng.randrange(1, 100_000)))
        query = rng.choice(
            [
                "",
                "?min_score=nan",
                "?min_score=1e400",
                "?labels=%00",
                "?model=../../etc",
                "?annotate=1",
            ]
        )
        headers = {**auth, "Content-Type": rng.choice(content_types)}
        try:
            response = session.post(
                base_url + MUTATION_PATH + query, data=bytes(body), headers=headers, timeout=60
            )
        except (requests.exceptions.InvalidHeader, ValueError):
            report.unsendable += 1
            continue
        report.record("POST", MUTATION_PATH + query, response)


def _png_header(width: int, height: int) -> bytes:
    """The start of a PNG that declares width x height (the decompression-bomb shape)."""
    import struct
    import zlib

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    return (
        b"\x89PNG\r\n\x1a\n"
        + struct.pack(">I", len(ihdr))
        + chunk
        + struct.pack(">I", zlib.crc32(chunk))
        + struct.pack(">I", 0)
        + b"IDAT"
        + struct.pack(">I", zlib.crc32(b"IDAT"))
    )
