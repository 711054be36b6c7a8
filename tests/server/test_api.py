"""The HTTP API of the real server process, on the real model and real images."""

from __future__ import annotations

import asyncio
import base64
from collections import Counter
from collections.abc import Iterator
from typing import Any

import aiohttp
import cv2
import numpy as np
import pytest

from inference_server.models.install_default import install_default_models
from tests.helpers.server_process import ServerProcess

from .conftest import TOKEN, image_bytes

AUTH = {"Authorization": f"Bearer {TOKEN}"}
JPEG = {**AUTH, "Content-Type": "image/jpeg"}


async def call(
    server: ServerProcess,
    method: str,
    path: str,
    *,
    headers: dict[str, str] | None = None,
    data: Any = None,
) -> tuple[int, dict[str, Any], dict[str, str]]:
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, server.url + path, headers=headers, data=data) as resp,
    ):
        body = await resp.json() if resp.content_type == "application/json" else {}
        return resp.status, body, dict(resp.headers)


def labels_of(body: dict[str, Any]) -> Counter[str]:
    return Counter(d["label"] for d in body["detections"])


async def test_health_needs_no_token(api_server: ServerProcess) -> None:
    status, body, _ = await call(api_server, "GET", "/api/v1/health")
    assert status == 200
    assert body["status"] == "ok"
    assert body["backends"]["local"]["ready"] is True


async def test_info_lists_the_default_model(api_server: ServerProcess) -> None:
    status, body, _ = await call(api_server, "GET", "/api/v1/info", headers=AUTH)
    assert status == 200
    assert body["protocol"] == 1
    vision = body["capabilities"]["vision"]
    assert vision["default_model"] == "yolox-nano"
    models = {m["name"]: m for m in vision["models"]}
    assert "person" in models["yolox-nano"]["labels"]
    assert len(models["yolox-nano"]["labels"]) == 80
    assert models["yolox-nano"]["labels"] == models["yolov3-tiny"]["labels"]


@pytest.mark.parametrize(
    ("path", "method"),
    [
        ("/api/v1/info", "GET"),
        ("/api/v1/vision/detect", "POST"),
        ("/metrics", "GET"),
        ("/api/v1/cameras", "GET"),
    ],
)
@pytest.mark.parametrize(
    "header", [None, "Bearer wrong-token", "Basic dGVzdA==", f"bearer {TOKEN}x"]
)
async def test_missing_or_wrong_token_is_401(
    api_server: ServerProcess, path: str, method: str, header: str | None
) -> None:
    headers = {"Authorization": header} if header else {}
    status, body, resp_headers = await call(api_server, method, path, headers=headers)
    assert status == 401
    assert body["error"]["code"] == "unauthorized"
    assert resp_headers["WWW-Authenticate"] == "Bearer"


async def test_detects_people_on_a_street(api_server: ServerProcess) -> None:
    status, body, _ = await call(
        api_server,
        "POST",
        "/api/v1/vision/detect",
        headers=JPEG,
        data=image_bytes("street_people.jpg"),
    )
    assert status == 200, body
    assert body["model"] == "yolox-nano"
    assert labels_of(body)["person"] >= 4
    assert body["image"] == {"width": 768, "height": 576}
    for det in body["detections"]:
        x1, y1, x2, y2 = det["box"]
        assert 0 <= x1 < x2 <= 1
        assert 0 <= y1 < y2 <= 1
        assert 0.25 <= det["score"] <= 1
    assert set(body["timing_ms"]) >= {"decode", "queue", "inference", "total"}


async def test_detects_people_in_a_png(api_server: ServerProcess) -> None:
    status, body, _ = await call(
        api_server,
        "POST",
        "/api/v1/vision/detect",
        headers={**AUTH, "Content-Type": "image/png"},
        data=image_bytes("street_people.png"),
    )
    assert status == 200, body
    assert labels_of(body)["person"] >= 3
    assert body["image"] == {"width": 512, "height": 384}


async def test_detects_the_coffee_cup(api_server: ServerProcess) -> None:
    status, body, _ = await call(
        api_server, "POST", "/api/v1/vision/detect", headers=JPEG, data=image_bytes("coffee.jpg")
    )
    assert status == 200, body
    # yolox-nano (the default) also sees the table the cup stands on, rightly.
    assert set(labels_of(body)) == {"cup", "diningtable"}


async def test_label_filter_min_score_and_annotation(api_server: ServerProcess) -> None:
    status, body, _ = await call(
        api_server,
        "POST",
        "/api/v1/vision/detect?labels=car&min_score=0.5&annotate=true",
        headers=JPEG,
        data=image_bytes("street_people.jpg"),
    )
    assert status == 200, body
    assert set(labels_of(body)) == {"car"}
    assert all(d["score"] >= 0.5 for d in body["detections"])
    annotated = cv2.imdecode(np.frombuffer(base64.b64decode(body["annotated_jpeg"]), np.uint8), 1)
    assert annotated is not None
    assert annotated.shape == (576, 768, 3)
    original = cv2.imdecode(np.frombuffer(image_bytes("street_people.jpg"), np.uint8), 1)
    assert original is not None
    assert np.abs(annotated.astype(int) - original.astype(int)).max() > 100  # boxes were drawn


async def test_multipart_upload(api_server: ServerProcess) -> None:
    form = aiohttp.FormData()
    form.add_field(
        "image", image_bytes("street_people.jpg"), filename="f.jpg", content_type="image/jpeg"
    )
    status, body, _ = await call(
        api_server, "POST", "/api/v1/vision/detect", headers=AUTH, data=form
    )
    assert status == 200, body
    assert labels_of(body)["person"] >= 4


@pytest.fixture(scope="module")
def darknet_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A repository with the Darknet original beside its ONNX conversion (only when asked)."""
    repo = tmp_path_factory.mktemp("darknet_repo")
    install_default_models(repo, models=(), with_darknet=True)
    proc = ServerProcess(
        tmp_path_factory.mktemp("darknet"), mqtt_port=None, token=TOKEN, model_repo=repo
    )
    proc.start()
    yield proc
    proc.stop()


async def test_darknet_original_and_onnx_agree_through_the_api(
    darknet_server: ServerProcess,
) -> None:
    results = []
    for model in ("yolov3-tiny", "yolov3-tiny-darknet"):
        status, body, _ = await call(
            darknet_server,
            "POST",
            f"/api/v1/vision/detect?model={model}&min_score=0.3",
            headers=JPEG,
            data=image_bytes("street_people.jpg"),
        )
        assert status == 200, body
        results.append(body["detections"])
    onnx, darknet = results
    assert [d["label"] for d in onnx] == [d["label"] for d in darknet]
    for a, b in zip(onnx, darknet, strict=True):
        assert a["score"] == pytest.approx(b["score"], abs=0.02)
        assert np.allclose(a["box"], b["box"], atol=0.01)


JPEG_BYTES = image_bytes("street_people.jpg")


@pytest.mark.parametrize(
    ("query", "headers", "data", "status", "code"),
    [
        ("", JPEG, b"", 400, "invalid_image"),
        ("", JPEG, b"\xff\xd8\xff\xe0 not really a jpeg", 400, "invalid_image"),
        ("", JPEG, JPEG_BYTES[: len(JPEG_BYTES) // 2], 400, "invalid_image"),
        ("", JPEG, b"GIF89a" + bytes(100), 400, "invalid_image"),
        ("", {**AUTH, "Content-Type": "text/plain"}, b"hello", 415, "unsupported_media_type"),
        ("", {**AUTH, "Content-Type": "application/json"}, b"{}", 415, "unsupported_media_type"),
        ("?model=nope", JPEG, JPEG_BYTES, 404, "unknown_model"),
        ("?labels=unicorn", JPEG, JPEG_BYTES, 400, "invalid_parameter"),
        ("?min_score=high", JPEG, JPEG_BYTES, 400, "invalid_parameter"),
        ("?min_score=2", JPEG, JPEG_BYTES, 400, "invalid_parameter"),
    ],
)
async def test_bad_input_gets_a_clear_4xx(
    api_server: ServerProcess,
    query: str,
    headers: dict[str, str],
    data: bytes,
    status: int,
    code: str,
) -> None:
    got, body, _ = await call(
        api_server, "POST", "/api/v1/vision/detect" + query, headers=headers, data=data
    )
    assert (got, body["error"]["code"]) == (status, code)
    assert body["error"]["message"]
    assert (await call(api_server, "GET", "/api/v1/health"))[0] == 200


async def test_a_50mb_body_is_413_and_the_server_keeps_serving(api_server: ServerProcess) -> None:
    huge = bytes(50 * 1024 * 1024)
    status, body, _ = await call(
        api_server, "POST", "/api/v1/vision/detect", headers=JPEG, data=huge
    )
    assert status == 413
    assert body["error"]["code"] == "payload_too_large"
    form = aiohttp.FormData()
    form.add_field("image", huge, filename="big.jpg", content_type="image/jpeg")
    status, body, _ = await call(
        api_server, "POST", "/api/v1/vision/detect", headers=AUTH, data=form
    )
    assert status == 413
    status, body, _ = await call(
        api_server, "POST", "/api/v1/vision/detect", headers=JPEG, data=JPEG_BYTES
    )
    assert status == 200


async def test_unknown_route_and_method(api_server: ServerProcess) -> None:
    status, body, _ = await call(api_server, "GET", "/api/v1/nothing", headers=AUTH)
    assert (status, body["error"]["code"]) == (404, "not_found")
    status, body, _ = await call(api_server, "DELETE", "/api/v1/info", headers=AUTH)
    assert (status, body["error"]["code"]) == (405, "method_not_allowed")


async def test_concurrent_requests_are_batched_and_counted(api_server: ServerProcess) -> None:
    async def one() -> int:
        # yolov3-tiny: the default (yolox-nano) is exported with a fixed batch of 1.
        path = "/api/v1/vision/detect?model=yolov3-tiny"
        return (await call(api_server, "POST", path, headers=JPEG, data=JPEG_BYTES))[0]

    statuses = await asyncio.gather(*(one() for _ in range(12)))
    assert statuses == [200] * 12
    async with (
        aiohttp.ClientSession() as session,
        session.get(api_server.url + "/metrics", headers=AUTH) as resp,
    ):
        text = await resp.text()
    assert resp.status == 200
    assert 'edge_inference_inference_seconds_count{model="yolov3-tiny",pipeline="vision"}' in text
    batch_sum = next(
        float(line.split()[-1])
        for line in text.splitlines()
        if line.startswith('edge_inference_batch_size_sum{model="yolov3-tiny"}')
    )
    batch_count = next(
        float(line.split()[-1])
        for line in text.splitlines()
        if line.startswith('edge_inference_batch_size_count{model="yolov3-tiny"}')
    )
    assert batch_count < batch_sum  # at least one backend call carried more than one image
