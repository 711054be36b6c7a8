"""Hostile and broken uploads against the real server: clear 4xx, bounded memory, admission."""

from __future__ import annotations

import asyncio
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from inference_server.pipelines.vision.bounded_decode import (
    decode_bounded,
    read_header,
    reduction_for,
)
from tests.helpers.server_process import ServerProcess

from .conftest import TOKEN, image_bytes
from .test_api import AUTH, JPEG, call, labels_of


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident memory (VmHWM): a spike shows even after it is freed."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def png_bomb(width: int, height: int) -> bytes:
    """A real, valid PNG of width x height black gray pixels: small on the wire, huge decoded."""
    compressor = zlib.compressobj(9)
    row = bytes(width + 1)  # filter byte 0, then the pixels
    chunks = [compressor.compress(row) for _ in range(height)]
    idat = b"".join(chunks) + compressor.flush()

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grayscale
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )


@pytest.fixture
def small_server(tmp_path: Path, model_repo: Path) -> Iterator[ServerProcess]:
    """One upload at a time, so admission control shows with two clients."""
    proc = ServerProcess(
        tmp_path / "server",
        mqtt_port=None,
        token=TOKEN,
        model_repo=model_repo,
        extra_args=["--max-uploads", "1", "--max-image-mp", "40"],
    )
    proc.start()
    yield proc
    proc.stop()


@pytest.mark.parametrize(
    "content_type",
    [
        "multipart/form-data",  # no boundary: was ValueError → 500
        "multipart/form-data; boundary=xyz",  # a boundary the body does not have
        "multipart/mixed",
    ],
)
async def test_malformed_multipart_is_400(api_server: ServerProcess, content_type: str) -> None:
    status, body, _ = await call(
        api_server,
        "POST",
        "/api/v1/vision/detect",
        headers={**AUTH, "Content-Type": content_type},
        data=image_bytes("street_people.jpg"),
    )
    assert (status, body["error"]["code"]) == (400, "bad_request")
    assert (await call(api_server, "GET", "/api/v1/health"))[0] == 200


@pytest.mark.parametrize("query", ["?min_score=nan", "?min_score=1e400", "?min_score=-inf"])
async def test_non_finite_numbers_are_400(api_server: ServerProcess, query: str) -> None:
    status, body, _ = await call(
        api_server, "POST", "/api/v1/vision/detect" + query, headers=JPEG, data=b"x"
    )
    assert (status, body["error"]["code"]) == (400, "invalid_parameter")


async def test_a_png_decompression_bomb_is_refused_from_its_header(
    small_server: ServerProcess,
) -> None:
    bomb = png_bomb(20_000, 20_000)  # 400 Mpx: 1.2 GB once decoded to BGR
    assert len(bomb) < 2_000_000
    before = peak_rss_mb(small_server.pid)
    for _ in range(3):
        status, body, _ = await call(
            small_server,
            "POST",
            "/api/v1/vision/detect",
            headers={**AUTH, "Content-Type": "image/png"},
            data=bomb,
        )
        assert (status, body["error"]["code"]) == (413, "image_too_large")
        assert "40,000,000 pixels" in body["error"]["message"]
    # Memory stays flat: the peak did not move by anything near one decoded image.
    assert peak_rss_mb(small_server.pid) - before < 100
    status, body, _ = await call(
        small_server, "POST", "/api/v1/vision/detect", headers=JPEG, data=image_bytes("coffee.jpg")
    )
    assert status == 200, body


async def test_an_image_far_larger_than_the_model_is_decoded_reduced(
    api_server: ServerProcess,
) -> None:
    original = cv2.imdecode(np.frombuffer(image_bytes("street_people.jpg"), np.uint8), 1)
    assert original is not None
    large = cv2.resize(original, (768 * 4, 576 * 4), interpolation=cv2.INTER_CUBIC)
    ok, jpeg = cv2.imencode(".jpg", large, [cv2.IMWRITE_JPEG_QUALITY, 92])
    assert ok
    status, body, _ = await call(
        api_server, "POST", "/api/v1/vision/detect", headers=JPEG, data=jpeg.tobytes()
    )
    assert status == 200, body
    assert body["image"] == {"width": 3072, "height": 2304}  # the size sent, not decoded
    _, small, _ = await call(
        api_server,
        "POST",
        "/api/v1/vision/detect",
        headers=JPEG,
        data=image_bytes("street_people.jpg"),
    )
    # the same scene at 16x the pixels finds the same people
    assert abs(labels_of(body)["person"] - labels_of(small)["person"]) <= 1
    assert labels_of(body)["person"] >= 4


async def test_uploads_past_the_bound_get_503_before_their_body_is_read(
    small_server: ServerProcess,
) -> None:
    # A slow client holds the only upload slot: headers sent, body trickling.
    reader, writer = await asyncio.open_connection("127.0.0.1", small_server.port)
    writer.write(
        (
            "POST /api/v1/vision/detect HTTP/1.1\r\nHost: x\r\n"
            f"Authorization: Bearer {TOKEN}\r\nContent-Type: image/jpeg\r\n"
            "Content-Length: 5000000\r\n\r\n"
        ).encode()
        + b"\xff\xd8" * 10
    )
    await writer.drain()
    await asyncio.sleep(0.5)
    try:
        status, body, headers = await call(
            small_server, "POST", "/api/v1/vision/detect", headers=JPEG, data=bytes(10_000_000)
        )
        assert (status, body["error"]["code"]) == (503, "busy")
        assert int(headers["Retry-After"]) >= 1
    finally:
        writer.close()
        await writer.wait_closed()
    # The slot comes back when the slow client goes away.
    for _ in range(50):
        status, body, _ = await call(
            small_server,
            "POST",
            "/api/v1/vision/detect",
            headers=JPEG,
            data=image_bytes("coffee.jpg"),
        )
        if status != 503:
            break
        await asyncio.sleep(0.1)
    assert status == 200, body
    del reader


async def test_metrics_count_the_status_callers_got(api_server: ServerProcess) -> None:
    assert (await call(api_server, "GET", "/api/v1/info"))[0] == 401
    assert (await call(api_server, "GET", "/api/v1/nothing", headers=AUTH))[0] == 404
    assert (
        await call(api_server, "POST", "/api/v1/vision/detect?model=nope", headers=JPEG, data=b"x")
    )[0] == 404
    async with asyncio.timeout(10):
        import aiohttp

        async with (
            aiohttp.ClientSession() as session,
            session.get(api_server.url + "/metrics", headers=AUTH) as resp,
        ):
            text = await resp.text()
    assert 'edge_inference_requests_total{route="/api/v1/info",status="401"}' in text
    assert 'edge_inference_requests_total{route="unmatched",status="404"}' in text
    assert 'edge_inference_requests_total{route="/api/v1/vision/detect",status="404"}' in text
    assert 'status="500"' not in text


def test_reduced_decoding_keeps_twice_the_model_input() -> None:
    original = cv2.imdecode(np.frombuffer(image_bytes("street_people.jpg"), np.uint8), 1)
    assert original is not None
    photo = cv2.resize(original, (4000, 3000))
    ok, jpeg = cv2.imencode(".jpg", photo)
    assert ok
    data = jpeg.tobytes()
    header = read_header(data, 40_000_000)
    assert (header.format, header.width, header.height) == ("JPEG", 4000, 3000)
    factor = reduction_for(header, 416, 416)
    assert factor == 4  # 1000 x 750: still over twice the 416 x 312 letterboxed image
    assert decode_bounded(data, header, factor).shape == (750, 1000, 3)
    small = read_header(image_bytes("coffee.jpg"), 40_000_000)
    assert reduction_for(small, 416, 416) == 1
